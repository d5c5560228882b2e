# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The linear planner gives exactly the plans of the planner it replaced, on random pools.

``frozen_planner.py`` beside this file is the planner as it was before it was made linear;
both get the same random pools and options, and must return equal plans (or fail with the
same message), for ``plan_pool``, ``plan_fallback`` after it and ``pool_status``.
"""

from __future__ import annotations

import datetime
import importlib.util
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner

_HERE = os.path.dirname(os.path.abspath(__file__))
_SPEC = importlib.util.spec_from_file_location("parkingspot_frozen_planner", os.path.join(_HERE, "frozen_planner.py"))
frozen = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(frozen)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
VCPUS = {"m5.large": 2, "m5.xlarge": 4}


def _time_value(minutes, form):
    when = NOW + datetime.timedelta(minutes=minutes)
    if form == "text":
        return _planner.format_time(when)
    if form == "offset":
        return when.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()
    return when


# Few distinct minutes, so instances share launch times and lease ends as launch batches do,
# plus the odd value that is no time at all.
minutes = st.integers(min_value=-300, max_value=300)
time_values = st.one_of(
    st.builds(_time_value, minutes, st.sampled_from(["datetime", "text", "offset"])),
    st.sampled_from(["", "garbage", "2026-11-23T08:00:00", None]),
)


@st.composite
def instances(draw, index):
    tags = {"parkingspot:pool": "ci"}
    if draw(st.booleans()):
        tags["parkingspot:expires-at"] = draw(time_values)
    mark = draw(st.sampled_from([None, None, "draining", "drained", "other"]))
    if mark:
        tags["parkingspot:state"] = mark
        if mark == "draining" and draw(st.booleans()):
            tags["parkingspot:drain-deadline"] = draw(time_values)
    if draw(st.booleans()):
        tags["parkingspot:busy"] = draw(st.sampled_from(["true", "True", "false", "yes"]))
    if draw(st.integers(0, 9)) == 0:
        tags["parkingspot:interrupted"] = "true"
    market = draw(st.sampled_from(["spot", "spot", "on-demand", None]))
    if market is None and draw(st.booleans()):
        tags["parkingspot:market"] = "on-demand"
    return {
        "instance_id": "i-%05d" % index,
        "state": draw(st.sampled_from(_planner.STATES + ("running", "running", "running"))),
        "launch_time": _time_value(-draw(st.integers(0, 400)), draw(st.sampled_from(["datetime", "text"]))),
        "instance_type": draw(st.sampled_from(sorted(VCPUS))),
        "market": market,
        "tags": tags,
    }


@st.composite
def pools(draw):
    size = draw(st.integers(0, 40))
    ids = draw(st.permutations(range(size)))
    return [draw(instances(i)) for i in ids]


@st.composite
def options(draw):
    opts = {"market": draw(st.sampled_from(["spot", "block"]))}
    if opts["market"] == "block" or draw(st.booleans()):
        opts["duration_minutes"] = draw(st.sampled_from([60, 120, 45]))
        opts["renew_before_minutes"] = draw(st.sampled_from([0, 20, 30]))
        opts["mode"] = draw(st.sampled_from(["emulated", "native"]))
    else:
        opts["renew_before_minutes"] = draw(st.sampled_from([0, 20]))
    opts["fallback"] = {"enabled": draw(st.booleans()), "max": draw(st.integers(0, 10))}
    if draw(st.booleans()):
        opts["fallback"]["asg_capacity"] = draw(st.integers(0, 5))
    opts["spot_available"] = draw(st.booleans())
    opts["drain_timeout_seconds"] = draw(st.sampled_from([0, 300, 600, 7200]))
    if draw(st.booleans()):
        opts["quota"] = {
            "max_vcpus": draw(st.one_of(st.none(), st.integers(0, 80))),
            "per_owner_max_vcpus": draw(st.one_of(st.none(), st.integers(0, 80))),
            "owner_used_vcpus": draw(st.integers(0, 20)),
            "account_available_vcpus": draw(st.one_of(st.none(), st.integers(0, 80))),
        }
        opts["vcpus"] = VCPUS
        opts["launch_instance_types"] = draw(st.lists(st.sampled_from(sorted(VCPUS)), min_size=1, max_size=2))
    return opts


# Keys that features added after the frozen planner put into every plan (offerings memory,
# rebalance replacement). Left at their defaults they must not change anything else, so they are
# checked on their own and compared without them.
LATER_KEYS = ("rebalance", "offerings")


def _outcome(func, *args, **kwargs):
    try:
        return ("plan", func(*args, **kwargs))
    except ValueError as exc:
        return ("error", str(exc))


def _without_later_keys(outcome):
    kind, plan = outcome
    if kind != "plan":
        return outcome
    assert plan.get("rebalance", []) == [], "no instance asked for a rebalance replacement"
    return kind, {key: value for key, value in plan.items() if key not in LATER_KEYS}


@settings(max_examples=400, deadline=None)
@given(
    pools(),
    st.integers(0, 30),
    options(),
    st.lists(st.integers(0, 40), max_size=5),
    st.integers(0, 30),
    st.lists(st.integers(0, 40), max_size=8),
)
def test_same_plans_as_the_frozen_planner(pool, desired, opts, interrupted, launched, protected):
    interrupted_ids = ["i-%05d" % i for i in interrupted]
    opts = dict(opts, protected=["i-%05d" % i for i in protected])
    now = NOW + datetime.timedelta(seconds=7)
    new = _outcome(_planner.plan_pool, pool, now, desired, interrupted_ids=interrupted_ids, **opts)
    old = _outcome(frozen.plan_pool, pool, now, desired, interrupted_ids=interrupted_ids, **opts)
    assert _without_later_keys(new) == old
    if new[0] == "plan":
        asked = new[1]["launch"]["spot"]
        done = min(launched, asked)
        second = _outcome(_planner.plan_fallback, new[1], done, "InsufficientInstanceCapacity")
        expected = _outcome(frozen.plan_fallback, old[1], done, "InsufficientInstanceCapacity")
        assert _without_later_keys(second) == expected
        assert _planner.plan_diff(new[1]) == frozen.plan_diff(old[1])


@settings(max_examples=200, deadline=None)
@given(pools(), st.sampled_from(["spot", "block"]), st.sampled_from([0, 20, 60]))
def test_same_status_as_the_frozen_planner(pool, market, renew):
    new = _outcome(_planner.pool_status, pool, NOW, market, renew, vcpus=VCPUS)
    old = _outcome(frozen.pool_status, pool, NOW, market, renew, vcpus=VCPUS)
    assert new == old


def test_plan_fallback_leaves_the_first_plan_alone():
    pool = [
        {"instance_id": "i-%d" % k, "state": "running", "launch_time": NOW, "market": "spot", "tags": {}}
        for k in range(3)
    ]
    first = _planner.plan_pool(pool, NOW, 6, fallback={"enabled": True, "max": 5})
    before = repr(first)
    second = _planner.plan_fallback(first, 1, "InsufficientInstanceCapacity")
    assert repr(first) == before
    assert second["launch"] == {"spot": 1, "on_demand": 2}
