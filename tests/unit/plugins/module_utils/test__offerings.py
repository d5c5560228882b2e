# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offerings memory, the on-demand lane and rebalance replacement in the pure planner."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils import _offerings
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_fallback
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_pool

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TYPES = ["m6i.large", "m7i.large", "c6i.large"]
SUBNETS = ["subnet-a", "subnet-b"]
OFFERINGS = [{"instance_type": t, "subnet_id": s} for t in TYPES for s in SUBNETS]


def at(minutes):
    return NOW + datetime.timedelta(minutes=minutes)


def inst(iid, state="running", itype="m6i.large", subnet="subnet-a", market="spot", reason=None, **tags):
    return {
        "instance_id": iid,
        "state": state,
        "launch_time": at(-120),
        "instance_type": itype,
        "subnet_id": subnet,
        "market": market,
        "state_reason": reason,
        "tags": {"parkingspot:pool": "ci", **{"parkingspot:" + k.replace("_", "-"): v for k, v in tags.items()}},
    }


def interrupted(iid, minutes_ago, itype="m6i.large", subnet="subnet-a"):
    return inst(iid, "terminated", itype, subnet, interrupted=format_time(at(-minutes_ago)))


def plan(instances, desired, **kw):
    kw.setdefault("now", NOW)
    kw.setdefault("offerings", OFFERINGS)
    return plan_pool(instances, desired=desired, **kw)


def keys(offerings):
    return {(o["instance_type"], o["subnet_id"]) for o in offerings}


# ------------------------------------------------------------------ offerings memory


def test_offerings_of_is_types_by_subnets_in_order():
    params = {"instance_types": ["a", "b"], "subnet_ids": ["s1", "s2"]}
    assert [_offerings.key(o) for o in _offerings.offerings_of(params)] == [
        ("a", "s1"),
        ("a", "s2"),
        ("b", "s1"),
        ("b", "s2"),
    ]
    assert _offerings.offerings_of({"instance_type": "a"}) == [{"instance_type": "a", "subnet_id": None}]


def test_recent_interruption_leaves_its_offering_out():
    p = plan([interrupted("i-1", 5)], 1)
    assert ("m6i.large", "subnet-a") not in keys(p["offerings"]["launch"])
    assert keys(p["offerings"]["launch"]) == keys(OFFERINGS) - {("m6i.large", "subnet-a")}
    [out] = p["offerings"]["excluded"]
    assert out["reason"] == "interruption of i-1" and out["at"] == format_time(at(-5))
    assert any("left out of the next launch" in r for r in p["reasons"])


def test_interruption_older_than_the_cooldown_is_forgotten():
    assert keys(plan([interrupted("i-1", 16)], 1)["offerings"]["launch"]) == keys(OFFERINGS)
    assert len(plan([interrupted("i-1", 16)], 1, offering_cooldown_minutes=30)["offerings"]["excluded"]) == 1
    assert plan([interrupted("i-1", 1)], 1, offering_cooldown_minutes=0)["offerings"]["excluded"] == []


def test_state_reason_alone_marks_an_interruption_and_its_time_comes_from_the_transition():
    old = inst("i-1", "terminated", reason="Server.SpotInstanceTermination")
    old["state_transition_reason"] = "Service initiated (2026-11-23 07:00:00 GMT)"
    fresh = inst("i-2", "terminated", itype="c6i.large", reason="Server.SpotInstanceTermination")
    p = plan([old, fresh], 1)
    # i-1 an hour ago: forgotten; i-2 has no readable time: taken as recent.
    assert keys(p["offerings"]["excluded"]) == {("c6i.large", "subnet-a")}


def test_user_terminations_and_on_demand_instances_do_not_count():
    user = inst("i-1", "terminated", reason="Client.UserInitiatedShutdown")
    od = inst("i-2", "terminated", market="on-demand", reason="Server.InternalError")
    assert plan([user, od], 1)["offerings"]["excluded"] == []


def test_the_only_offering_stays_even_when_interrupted():
    only = [{"instance_type": "m6i.large", "subnet_id": "subnet-a"}]
    p = plan([interrupted("i-1", 1)], 1, offerings=only)
    assert p["offerings"]["launch"] == only and p["offerings"]["excluded"] == []


def test_capacity_errors_of_this_run_count_like_interruptions():
    events = _offerings.recent_events(
        [], NOW, 15, [{"instance_type": "m7i.large", "subnet_id": "subnet-b", "code": "InsufficientInstanceCapacity"}]
    )
    launch, excluded = _offerings.choose(OFFERINGS, events)
    assert keys(excluded) == {("m7i.large", "subnet-b")}
    assert len(launch) == len(OFFERINGS) - 1


def test_fleet_errors_without_an_override_name_every_offering_asked():
    asked = OFFERINGS[:2]
    got = _offerings.fleet_error_offerings([{"code": "InsufficientInstanceCapacity"}], asked)
    assert keys(got) == keys(asked) and {g["code"] for g in got} == {"InsufficientInstanceCapacity"}


def test_bad_cooldown_names_the_option():
    with pytest.raises(InputError, match="offering_cooldown_minutes"):
        plan([], 1, offering_cooldown_minutes=-1)


events_strategy = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(SUBNETS), st.integers(min_value=0, max_value=60)),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, cooldown=st.integers(min_value=0, max_value=60), n=st.integers(1, len(OFFERINGS)))
def test_property_recently_interrupted_offerings_are_left_out_unless_none_is_left(events, cooldown, n):
    offerings = OFFERINGS[:n]
    pool = [interrupted("i-%d" % k, ago, t, s) for k, (t, s, ago) in enumerate(events)]
    p = plan(pool, 2, offerings=offerings, offering_cooldown_minutes=cooldown)
    recent = {(t, s) for t, s, ago in events if cooldown and ago <= cooldown}
    launch = keys(p["offerings"]["launch"])
    if keys(offerings) <= recent:
        assert launch == keys(offerings)
    else:
        assert launch == keys(offerings) - recent
        assert launch  # never empty while the pool has offerings


# ------------------------------------------------------------------ rebalance: replace


def test_rebalance_tagged_instance_is_replaced_and_drained():
    pool = [inst("i-1"), inst("i-2", rebalance="2026-11-23T07:59:00Z")]
    p = plan(pool, 2, rebalance="replace")
    assert p["launch"]["spot"] == 1
    assert [d["instance_id"] for d in p["drain"]] == ["i-2"]
    assert p["rebalance"] == ["i-2"]


def test_rebalance_ignore_leaves_the_tagged_instance_serving():
    pool = [inst("i-1"), inst("i-2", rebalance="2026-11-23T07:59:00Z")]
    p = plan(pool, 2)
    assert p["launch"]["spot"] == 0 and p["drain"] == [] and not p["changed"]


def test_rebalance_tagged_instance_already_draining_is_left_to_its_drain():
    pool = [inst("i-1"), inst("i-2", rebalance="x")]
    pool[1]["tags"]["parkingspot:state"] = "draining"
    pool[1]["tags"]["parkingspot:drain-deadline"] = format_time(at(5))
    p = plan(pool, 2, rebalance="replace")
    assert p["drain"] == [] and p["launch"]["spot"] == 1


@settings(max_examples=200, deadline=None)
@given(
    tagged=st.lists(st.booleans(), max_size=8),
    desired=st.integers(min_value=0, max_value=8),
)
def test_property_rebalanced_instances_are_replaced_before_they_drain(tagged, desired):
    pool = [inst("i-%d" % k, rebalance="t") if flag else inst("i-%d" % k) for k, flag in enumerate(tagged)]
    p = plan(pool, desired, rebalance="replace")
    rebalanced = {"i-%d" % k for k, flag in enumerate(tagged) if flag}
    drained = {d["instance_id"] for d in p["drain"]}
    assert rebalanced <= drained
    # Capacity after the run (what is kept plus what is launched first) meets desired
    # without counting a single rebalanced instance.
    kept = p["counts"]["kept"]
    assert kept + p["launch"]["spot"] >= desired
    assert kept <= len(tagged) - len(rebalanced)


# ------------------------------------------------------------------ on_demand_base


def lane(iid, **kw):
    return inst(iid, market="on-demand", lane="on-demand", **kw)


def test_on_demand_base_launches_its_lane():
    p = plan([], 3, on_demand_base=1)
    assert p["launch"]["spot"] == 2 and p["launch"]["on_demand"] == 0 and p["launch"]["on_demand_base"] == 1
    assert p["desired"] == 3 and p["changed"]


def test_on_demand_base_is_kept_while_spot_is_plentiful():
    pool = [lane("i-od"), inst("i-1"), inst("i-2")]
    p = plan(pool, 3, on_demand_base=1)
    assert not p["changed"] and p["drain"] == [] and p["launch"]["on_demand_base"] == 0


def test_fallback_instances_are_not_the_lane():
    # A fallback on-demand runner (no lane tag) is drained once spot covers the rest; the lane stays.
    pool = [lane("i-od"), inst("i-fb", market="on-demand"), inst("i-1"), inst("i-2")]
    p = plan(pool, 3, on_demand_base=1, fallback={"enabled": True, "max": 2})
    assert [d["instance_id"] for d in p["drain"]] == ["i-fb"]


def test_on_demand_base_never_exceeds_desired():
    p = plan([lane("i-od1"), lane("i-od2")], 1, on_demand_base=2)
    assert len(p["drain"]) == 1 and p["launch"]["spot"] == 0


def test_spot_fallback_does_not_count_the_lane_launch_as_missing():
    p = plan([], 3, on_demand_base=1, fallback={"enabled": True, "max": 5})
    after = plan_fallback(p, 0, "InsufficientInstanceCapacity")
    assert after["launch"]["on_demand"] == 2 and after["launch"]["on_demand_base"] == 1


spot_outcome = st.sampled_from(["running", "terminated-interrupted", "notice", "stopped", "pending"])


def spot_instances(outcomes):
    """Spot instances s-0, s-1, ... in the given outcomes (a state, an interruption or a notice)."""
    pool = []
    for k, outcome in enumerate(outcomes):
        if outcome == "terminated-interrupted":
            pool.append(inst("s-%d" % k, "terminated", reason="Server.SpotInstanceTermination"))
        elif outcome == "notice":
            pool.append(inst("s-%d" % k, interrupted=format_time(at(-1))))
        else:
            pool.append(inst("s-%d" % k, outcome))
    return pool


@settings(max_examples=200, deadline=None)
@given(
    spot=st.lists(spot_outcome, max_size=6),
    lane_states=st.lists(st.sampled_from(["running", "pending", "terminated", "stopped"]), max_size=4),
    base=st.integers(min_value=1, max_value=4),
    desired=st.integers(min_value=0, max_value=8),
    spot_launched=st.integers(min_value=0, max_value=8),
)
def test_property_on_demand_base_holds_under_every_spot_outcome(spot, lane_states, base, desired, spot_launched):
    pool = spot_instances(spot)
    pool += [lane("l-%d" % k, state=s) for k, s in enumerate(lane_states)]
    p = plan(pool, desired, on_demand_base=base, fallback={"enabled": True, "max": 2})
    # Whatever spot does next (all, some or none of its launch succeeds):
    launched = min(spot_launched, p["launch"]["spot"])
    final = plan_fallback(p, launched, "InsufficientInstanceCapacity") if launched < p["launch"]["spot"] else p
    target = min(base, desired)
    live_lane = [i for i in pool if i["instance_id"].startswith("l-") and i["state"] in ("running", "pending")]
    lane_after = len(live_lane) - sum(1 for d in final["drain"] if d["instance_id"].startswith("l-"))
    lane_after += final["launch"].get("on_demand_base", 0)
    assert lane_after == target
    # The lane is never drained to make room for spot, and spot never replaces it.
    if len(live_lane) <= target:
        assert not any(d["instance_id"].startswith("l-") for d in final["drain"])


# ------------------------------------------------------------------ retry lane (demand.retries)


def test_queued_re_run_launches_an_on_demand_lane_runner_without_a_base():
    pool = [inst("i-1"), inst("i-2")]
    p = plan(pool, 2, retries=1)
    assert p["launch"]["on_demand_base"] == 1 and p["launch"]["spot"] == 0 and p["launch"]["on_demand"] == 0
    assert p["on_demand_base"]["retries"] == 1 and p["on_demand_base"]["target"] == 1


def test_idle_lane_runner_takes_the_re_run():
    p = plan([lane("i-od", busy="false"), inst("i-1")], 2, on_demand_base=1, retries=1)
    assert p["launch"]["on_demand_base"] == 0 and p["on_demand_base"]["target"] == 1


def test_re_runs_beyond_the_busy_lane_get_their_own_runners():
    p = plan([lane("i-od", busy="true"), inst("i-1")], 2, on_demand_base=1, retries=2)
    assert p["launch"]["on_demand_base"] == 2 and p["on_demand_base"]["target"] == 3
    assert p["launch"]["spot"] == 0


def test_retry_lane_is_not_planned_without_re_runs_or_lane_runners():
    pool = [inst("i-1"), inst("i-2")]
    assert plan(pool, 2, retries=0) == plan(pool, 2)


def test_retry_lane_scales_in_only_what_is_not_protected():
    pool = [lane("i-od1", busy="true"), lane("i-od2", busy="false"), inst("i-1")]
    p = plan(pool, 1, retries=0, protected=["i-od1"])
    assert [d["instance_id"] for d in p["drain"]] == ["i-od2"]
    p = plan(pool, 1, retries=0, protected=["i-od1", "i-od2"])
    assert p["drain"] == []


def test_bad_retries_names_the_option():
    with pytest.raises(InputError, match="demand.retries"):
        plan([], 1, retries=-1)


@settings(max_examples=200, deadline=None)
@given(
    spot=st.lists(spot_outcome, max_size=6),
    lane_busy=st.lists(st.sampled_from(["true", "false"]), max_size=4),
    base=st.integers(min_value=0, max_value=3),
    desired=st.integers(min_value=0, max_value=8),
    retries=st.integers(min_value=0, max_value=5),
    spot_launched=st.integers(min_value=0, max_value=8),
)
def test_property_retry_lane_never_below_base_and_never_on_spot(spot, lane_busy, base, desired, retries, spot_launched):
    pool = spot_instances(spot)
    pool += [lane("l-%d" % k, busy=b) for k, b in enumerate(lane_busy)]
    busy_ids = ["l-%d" % k for k, b in enumerate(lane_busy) if b == "true"]
    without = plan(pool, desired, on_demand_base=base, fallback={"enabled": True, "max": 2}, protected=busy_ids)
    p = plan(
        pool, desired, on_demand_base=base, fallback={"enabled": True, "max": 2}, protected=busy_ids, retries=retries
    )
    launched = min(spot_launched, p["launch"]["spot"])
    final = plan_fallback(p, launched, "InsufficientInstanceCapacity") if launched < p["launch"]["spot"] else p
    lane_after = len(lane_busy) - sum(1 for d in final["drain"] if d["instance_id"].startswith("l-"))
    lane_after += final["launch"].get("on_demand_base", 0)
    # Never below the base; every queued re-run has an idle or new lane runner (busy ones are never drained).
    assert lane_after >= min(base, desired)
    if retries:
        assert lane_after >= len(busy_ids) + retries
    assert not any(d["instance_id"] in busy_ids for d in final["drain"])
    # A re-run is never planned onto spot: the spot side is planned exactly as without re-runs.
    assert p["launch"]["spot"] == without["launch"]["spot"]
    assert p["launch"]["on_demand"] == without["launch"]["on_demand"]
