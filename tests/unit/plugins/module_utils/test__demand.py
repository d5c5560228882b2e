# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Queue-driven pool size and scale-in (pure): plain data in, plain data out."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_pool
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SCALING = {"max": 20}


def at(minutes):
    return NOW + datetime.timedelta(minutes=minutes)


def runner(iid, age=60, busy=None, idle_for=None, state="running", market="spot", lane=False):
    tags = {"parkingspot:pool": "ci"}
    if busy is not None:
        tags["parkingspot:busy"] = "true" if busy else "false"
    if idle_for is not None:
        tags["parkingspot:idle-since"] = format_time(at(-idle_for))
    if market == "on-demand":
        tags["parkingspot:market"] = "on-demand"
    if lane:
        tags["parkingspot:lane"] = "on-demand"
    return {"instance_id": iid, "state": state, "launch_time": at(-age), "market": market, "tags": tags}


def checked(demand=None, scaling=None, floors=(0,)):
    """A queue-driven pool's demand (``queued`` given) unless ``demand`` says otherwise."""
    return _demand.validate({"queued": 0} if demand is None else demand, dict(SCALING, **(scaling or {})), floors)


# ------------------------------------------------------------------ size


def test_target_is_busy_plus_queued_within_bounds():
    demand, scaling = checked({"queued": 3, "busy": 2})
    assert _demand.target(0, demand, scaling) == 5
    assert _demand.target(8, demand, scaling) == 8  # the schedule floor wins
    demand, scaling = checked({"queued": 50, "busy": 2})
    assert _demand.target(0, demand, scaling) == 20  # capped at max


def test_per_job_fractions_round_up():
    demand, scaling = checked({"queued": 3}, {"per_job": 0.5})
    assert _demand.target(0, demand, scaling) == 2
    demand, scaling = checked({"queued": 2}, {"per_job": 0.5})
    assert _demand.target(0, demand, scaling) == 1
    demand, scaling = checked({"queued": 2}, {"per_job": 2})
    assert _demand.target(0, demand, scaling) == 4


def test_defaults_fill_in():
    _counts, scaling = checked()
    assert scaling == {
        "scope": "pool",
        "max": 20,
        "per_job": 1,
        "idle_minutes": 10,
        "min_running_minutes": 5,
        "on_demand_idle_minutes": 0,
    }


@pytest.mark.parametrize(
    "demand, scaling, floors, option",
    [
        ({"queued": -1}, {}, (0,), "demand.queued"),
        ({"busy": "x"}, {}, (0,), "demand.busy"),
        ({"waiting": 1}, {}, (0,), "demand"),
        ({"queued": 0}, {"max": None}, (0,), "scaling.max"),
        ({"busy": 1}, {"max": None}, (0,), "scaling.max"),
        ({}, {"max": 3}, (2, 5), "scaling.max"),
        ({"retries": 1}, {"max": 3}, (2, 5), "scaling.max"),
        ({}, {"per_job": 0}, (0,), "scaling.per_job"),
        ({}, {"per_job": True}, (0,), "scaling.per_job"),
        ({}, {"idle_minutes": -1}, (0,), "scaling.idle_minutes"),
        ({}, {"min_running_minutes": 1.5}, (0,), "scaling.min_running_minutes"),
        ({}, {"on_demand_idle_minutes": -1}, (0,), "scaling.on_demand_idle_minutes"),
        ({}, {"on_demand_idle_minutes": "x"}, (0,), "scaling.on_demand_idle_minutes"),
        ({}, {"cooldown": 1}, (0,), "scaling"),
    ],
)
def test_bad_input_names_the_option(demand, scaling, floors, option):
    with pytest.raises(InputError) as info:
        _demand.validate(demand, dict(SCALING, **scaling), floors)
    assert info.value.option == option
    assert str(info.value).startswith(option + ":")


@settings(max_examples=300, deadline=None)
@given(
    queued=st.integers(0, 10_000),
    busy=st.integers(0, 10_000),
    floor=st.integers(0, 100),
    extra=st.integers(0, 100),
    per_job=st.one_of(st.integers(1, 5), st.floats(0.01, 5, allow_nan=False)),
)
def test_target_never_below_floor_nor_above_max(queued, busy, floor, extra, per_job):
    demand, scaling = checked({"queued": queued, "busy": busy}, {"max": floor + extra, "per_job": per_job}, (floor,))
    size = _demand.target(floor, demand, scaling)
    assert floor <= size <= floor + extra
    # Every busy runner and queued job is covered whenever max allows it.
    if busy + queued * per_job <= floor + extra:
        assert size >= busy + queued * per_job - 1e-6


# ------------------------------------------------------------------ who may go


def test_idle_since_comes_from_the_tag_else_launch():
    assert _demand.idle_since(runner("i-1", age=60, busy=False, idle_for=3)) == at(-3)
    assert _demand.idle_since(runner("i-1", age=60)) == at(-60)
    assert _demand.idle_since(runner("i-1", age=60, busy=False)) == at(-60)
    assert _demand.idle_since(runner("i-1", age=5, busy=False, idle_for=30)) == at(-5)  # skewed tag
    assert _demand.idle_since(runner("i-1", busy=True, idle_for=30)) is None


def test_scale_in_rules():
    _counts, scaling = checked()
    assert _demand.may_scale_in(runner("i-1", age=60, busy=False, idle_for=15), NOW, scaling)
    assert not _demand.may_scale_in(runner("i-1", age=60, busy=False, idle_for=5), NOW, scaling)  # idle briefly
    assert not _demand.may_scale_in(runner("i-1", age=60, busy=True, idle_for=50), NOW, scaling)  # busy
    assert not _demand.may_scale_in(runner("i-1", age=3), NOW, dict(scaling, idle_minutes=0))  # too young
    assert not _demand.may_scale_in(runner("i-1", age=60, state="pending"), NOW, scaling)
    assert _demand.may_scale_in(runner("i-1", age=11), NOW, scaling)  # never reported: idle since launch


def test_planner_keeps_busy_and_young_runners_when_shrinking():
    pool = [
        runner("i-busy", busy=True),
        runner("i-fresh-idle", age=60, busy=False, idle_for=2),
        runner("i-young", age=2),
        runner("i-idle-a", busy=False, idle_for=30),
        runner("i-idle-b", busy=False, idle_for=45),
    ]
    _counts, scaling = checked()
    protected = _demand.protected_ids(pool, NOW, scaling)
    assert protected == ["i-busy", "i-fresh-idle", "i-young"]
    plan = plan_pool(pool, NOW, 0, protected=protected)
    assert sorted(d["instance_id"] for d in plan["drain"]) == ["i-idle-a", "i-idle-b"]
    plan = plan_pool(pool, NOW, 4, protected=protected)
    assert [d["instance_id"] for d in plan["drain"]] == ["i-idle-a"]
    assert plan["launch"]["spot"] == 0


_runner = st.builds(
    lambda n, age, busy, idle, state, market: dict(
        runner("i-%04d" % n, age=age, busy=busy, idle_for=idle, state=state), market=market
    ),
    st.integers(0, 9999),
    st.integers(0, 120),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.integers(0, 120)),
    st.sampled_from(["pending", "running", "running", "running"]),
    st.sampled_from(["spot", "spot", "spot", "on-demand"]),
)
_runners = st.lists(_runner, max_size=40, unique_by=lambda i: i["instance_id"])


def check_scale_in_bounds(pool, plan, scaling, floor, top):
    """What every queue-driven plan keeps to; returns the ids the plan drains or terminates.

    Never a busy runner, nor one the scale-in rule keeps; never below the floor; spot launches
    never above ``top`` (``scaling.max``). While spot works, on-demand fallback runners are kept
    until their spot replacements run (launch before drain), so spot is counted alone.
    """
    gone = {d["instance_id"] for d in plan["drain"]} | set(plan["terminate"])
    by_id = {i["instance_id"]: i for i in pool}
    for iid in gone:
        assert by_id[iid]["tags"].get("parkingspot:busy") != "true", iid
        assert _demand.may_scale_in(by_id[iid], NOW, scaling), iid
    launched = plan["launch"]["spot"] + plan["launch"]["on_demand"] + plan["launch"].get("on_demand_base", 0)
    assert len(pool) - len(gone) + launched >= floor
    if plan["launch"]["spot"]:
        spot_after = sum(1 for i in pool if i["market"] == "spot" and i["instance_id"] not in gone)
        assert spot_after + plan["launch"]["spot"] <= top
    return gone


@settings(max_examples=300, deadline=None)
@given(
    pool=_runners,
    queued=st.integers(0, 60),
    busy=st.integers(0, 60),
    floor=st.integers(0, 10),
    extra=st.integers(0, 40),
    idle=st.integers(0, 30),
    min_running=st.integers(0, 30),
    spot=st.booleans(),
)
def test_plan_never_drains_a_busy_runner_and_lands_within_bounds(
    pool, queued, busy, floor, extra, idle, min_running, spot
):
    demand, scaling = checked(
        {"queued": queued, "busy": busy},
        {"max": floor + extra, "idle_minutes": idle, "min_running_minutes": min_running},
        (floor,),
    )
    size = _demand.target(floor, demand, scaling)
    protected = _demand.protected_ids(pool, NOW, scaling)
    plan = plan_pool(pool, NOW, size, protected=protected, spot_available=spot, fallback={"enabled": True, "max": 1000})
    gone = check_scale_in_bounds(pool, plan, scaling, floor, floor + extra)
    launched = plan["launch"]["spot"] + plan["launch"]["on_demand"]
    after = len(pool) - len(gone) + launched
    if plan["launch"]["on_demand"]:
        assert after <= floor + extra
    # Enough spot runners for the target: nothing is launched (on-demand fallback runners are
    # replaced by spot ones, so only spot counts here).
    if spot and sum(1 for i in pool if i["market"] == "spot") >= size:
        assert launched == 0


def test_retries_are_counted_apart_and_do_not_size_the_pool():
    demand, scaling = _demand.validate({"queued": 2, "busy": 1, "retries": 3}, {"max": 10}, (0,))
    assert demand == {"queued": 2, "busy": 1, "retries": 3}
    assert _demand.target(0, demand, scaling) == 3
    assert _demand.summary(0, demand, scaling, 3)["retries"] == 3


def test_bad_retries_names_the_key():
    with pytest.raises(InputError, match="demand.retries"):
        _demand.validate({"retries": -1}, {"max": 3}, (0,))


@pytest.mark.parametrize("bad", ["yesterday", "2026-12-02T10:00:00", "", 5])
def test_counted_at_must_be_a_time_with_a_zone(bad):
    with pytest.raises(InputError) as info:
        _demand.validate({"queued": 1, "counted_at": bad}, {"max": 3}, (0,))
    assert info.value.option == "demand.counted_at"


def test_counted_at_orders_runs_and_does_not_size_the_pool():
    demand, scaling = _demand.validate({"queued": 2, "counted_at": "2026-12-02T10:00:00.25Z"}, {"max": 5}, (0,))
    assert demand == {"queued": 2, "busy": 0, "retries": 0}
    assert _demand.target(0, demand, scaling) == 2


# ------------------------------------------------------------------ re-runs only


def lane_runner(iid, **kwargs):
    inst = runner(iid, **kwargs)
    inst["market"] = "on-demand"
    inst["tags"].update({"parkingspot:market": "on-demand", "parkingspot:lane": "on-demand"})
    return inst


def test_retries_alone_keep_the_floor_and_need_no_max():
    demand, scaling = _demand.validate({"retries": 2}, {"max": None}, (4,))
    assert scaling["scope"] == "lane" and scaling["max"] is None
    assert demand == {"queued": 0, "busy": 0, "retries": 2}
    assert _demand.target(4, demand, scaling) == 4
    assert _demand.summary(4, demand, scaling, 4)["max"] is None
    # Either sizing key makes it a queue-driven pool again.
    for sizing in ({"queued": 0, "retries": 2}, {"busy": 3}):
        assert _demand.validate(sizing, {"max": 9}, (4,))[1]["scope"] == "pool"


def test_retries_alone_guard_only_the_lane():
    pool = [
        runner("i-spot-busy", busy=True),
        runner("i-spot-fresh", age=2),
        dict(runner("i-fallback", busy=False, idle_for=2), market="on-demand"),
        lane_runner("i-lane-busy", busy=True),
        lane_runner("i-lane-fresh", busy=False, idle_for=2),
        lane_runner("i-lane-idle", busy=False, idle_for=30),
    ]
    # On-demand runners waiting as long as spot ones, so that only the scope tells the two apart.
    same = {"on_demand_idle_minutes": 10}
    _demand_only, lane = _demand.validate({"retries": 0}, same, (0,))
    assert _demand.protected_ids(pool, NOW, lane) == ["i-lane-busy", "i-lane-fresh"]
    _counts, whole = checked(scaling=same)
    assert _demand.protected_ids(pool, NOW, whole) == [
        "i-fallback",
        "i-lane-busy",
        "i-lane-fresh",
        "i-spot-busy",
        "i-spot-fresh",
    ]


def test_retries_alone_let_a_fallback_runner_go_once_spot_is_back():
    # A schedule pool of 2: spot is back, and the on-demand fallback runner became idle 2 minutes ago.
    pool = [
        runner("i-spot-a"),
        runner("i-spot-b"),
        dict(runner("i-fallback", busy=False, idle_for=2), market="on-demand"),
    ]
    fallback = {"enabled": True, "max": 2}
    _demand_only, lane = _demand.validate({"retries": 0}, {}, (2,))
    plan = plan_pool(pool, NOW, 2, fallback=fallback, protected=_demand.protected_ids(pool, NOW, lane), retries=0)
    assert [d["instance_id"] for d in plan["drain"]] == ["i-fallback"]
    # A queue-driven pool keeps it until it has been idle for on_demand_idle_minutes (0 by default:
    # it goes too), when that is as long as idle_minutes the way it keeps spot runners.
    _counts, whole = checked(scaling={"on_demand_idle_minutes": 10}, floors=(2,))
    plan = plan_pool(pool, NOW, 2, fallback=fallback, protected=_demand.protected_ids(pool, NOW, whole), retries=0)
    assert plan["drain"] == []
    _counts, whole = checked(floors=(2,))
    plan = plan_pool(pool, NOW, 2, fallback=fallback, protected=_demand.protected_ids(pool, NOW, whole), retries=0)
    assert [d["instance_id"] for d in plan["drain"]] == ["i-fallback"]


# ------------------------------------------------------------------ on-demand runners (on_demand_idle_minutes)


def od(iid, **kw):
    return runner(iid, market="on-demand", **kw)


def test_on_demand_runner_waits_its_own_idle_time():
    _counts, scaling = checked()
    assert _demand.may_scale_in(od("i-od", busy=False, idle_for=1), NOW, scaling)  # default 0
    assert not _demand.may_scale_in(runner("i-spot", busy=False, idle_for=1), NOW, scaling)
    assert not _demand.may_scale_in(od("i-od", busy=True, idle_for=30), NOW, scaling)  # busy: never
    assert not _demand.may_scale_in(od("i-od", age=3), NOW, scaling)  # min_running_minutes still holds
    assert not _demand.may_scale_in(od("i-od", state="pending"), NOW, scaling)
    _counts, scaling = checked(scaling={"on_demand_idle_minutes": 10})
    assert not _demand.may_scale_in(od("i-od", busy=False, idle_for=5), NOW, scaling)
    assert _demand.may_scale_in(od("i-od", busy=False, idle_for=10), NOW, scaling)


def test_market_comes_from_the_instance_else_its_tag():
    tagged_only = od("i-od", busy=False, idle_for=1)
    del tagged_only["market"]
    assert _demand.market(tagged_only) == "on-demand"
    assert _demand.market({"tags": {}}) == "spot"
    _counts, scaling = checked()
    assert _demand.required_idle_minutes(tagged_only, scaling) == 0
    assert _demand.required_idle_minutes(runner("i-1"), scaling) == 10


def test_fallback_runner_goes_once_idle_when_spot_covers_the_target():
    # Spot came back: three spot replacements run (recently launched, so protected), the three
    # fallback runners are no longer needed. The idle ones go now, the busy one after its job.
    pool = [
        runner("i-s1", age=6),
        runner("i-s2", age=6),
        runner("i-s3", age=6),
        od("i-od-busy", busy=True),
        od("i-od-idle1", busy=False, idle_for=1),
        od("i-od-idle30", busy=False, idle_for=30),
    ]
    _counts, scaling = checked()
    protected = _demand.protected_ids(pool, NOW, scaling)
    assert protected == ["i-od-busy", "i-s1", "i-s2", "i-s3"]
    plan = plan_pool(pool, NOW, 3, protected=protected, fallback={"enabled": True, "max": 5})
    assert sorted(d["instance_id"] for d in plan["drain"]) == ["i-od-idle1", "i-od-idle30"]
    assert plan["launch"] == {"spot": 0, "on_demand": 0}
    # With on_demand_idle_minutes as long as idle_minutes only the long-idle one goes, as before.
    _counts, scaling = checked(scaling={"on_demand_idle_minutes": 10})
    plan = plan_pool(pool, NOW, 3, protected=_demand.protected_ids(pool, NOW, scaling))
    assert [d["instance_id"] for d in plan["drain"]] == ["i-od-idle30"]


def test_scale_in_takes_idle_on_demand_before_recently_idle_spot():
    # Without spot capacity (the fallback path) the queue asks for fewer: of two runners idle two
    # minutes, the on-demand one goes and the spot one is kept for idle_minutes.
    pool = [runner("i-spot", busy=False, idle_for=2), od("i-od", busy=False, idle_for=2), runner("i-busy", busy=True)]
    _counts, scaling = checked()
    protected = _demand.protected_ids(pool, NOW, scaling)
    for spot in (True, False):
        plan = plan_pool(pool, NOW, 1, protected=protected, spot_available=spot, fallback={"enabled": True, "max": 5})
        assert [d["instance_id"] for d in plan["drain"]] == ["i-od"]


def test_idle_retry_lane_runner_goes_when_no_re_run_waits():
    pool = [od("i-lane", busy=False, idle_for=1, lane=True), od("i-lane-busy", busy=True, lane=True), runner("i-1")]
    _counts, scaling = checked()
    plan = plan_pool(pool, NOW, 1, protected=_demand.protected_ids(pool, NOW, scaling), retries=0)
    assert [d["instance_id"] for d in plan["drain"]] == ["i-lane"]
    assert plan["launch"]["on_demand_base"] == 0


_any_runner = st.builds(
    lambda n, age, busy, idle, state, kind: runner(
        "i-%04d" % n,
        age=age,
        busy=busy,
        idle_for=idle,
        state=state,
        market="spot" if kind == "spot" else "on-demand",
        lane=kind == "lane",
    ),
    st.integers(0, 9999),
    st.integers(0, 120),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.integers(0, 120)),
    st.sampled_from(["pending", "running", "running", "running"]),
    st.sampled_from(["spot", "spot", "on-demand", "lane"]),
)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(_any_runner, max_size=30, unique_by=lambda i: i["instance_id"]),
    queued=st.integers(0, 40),
    busy=st.integers(0, 40),
    retries=st.integers(0, 5),
    floor=st.integers(0, 10),
    extra=st.integers(0, 30),
    idle=st.integers(0, 30),
    on_demand_idle=st.integers(0, 30),
    min_running=st.integers(0, 30),
    spot=st.booleans(),
)
def test_property_on_demand_idle_time_keeps_the_bounds_and_never_drains_busy(
    pool, queued, busy, retries, floor, extra, idle, on_demand_idle, min_running, spot
):
    demand, scaling = checked(
        {"queued": queued, "busy": busy, "retries": retries},
        {
            "max": floor + extra,
            "idle_minutes": idle,
            "min_running_minutes": min_running,
            "on_demand_idle_minutes": on_demand_idle,
        },
        (floor,),
    )
    size = _demand.target(floor, demand, scaling)
    protected = _demand.protected_ids(pool, NOW, scaling)
    plan = plan_pool(
        pool,
        NOW,
        size,
        protected=protected,
        spot_available=spot,
        fallback={"enabled": True, "max": 1000},
        retries=retries,
    )
    gone = check_scale_in_bounds(pool, plan, scaling, floor, floor + extra)
    # Spot runners cover the target: every on-demand fallback runner that may go, goes now
    # (replaced by spot), and without waiting re-runs so does every such lane runner.
    spot_runners = [i for i in pool if i["market"] == "spot"]
    if spot and all(i["state"] == "running" for i in spot_runners) and len(spot_runners) >= size:
        for inst in pool:
            fallback = inst["market"] == "on-demand" and "parkingspot:lane" not in inst["tags"]
            if fallback and _demand.may_scale_in(inst, NOW, scaling):
                assert inst["instance_id"] in gone, inst["instance_id"]
    if not retries:
        for inst in pool:
            if "parkingspot:lane" in inst["tags"] and _demand.may_scale_in(inst, NOW, scaling):
                assert inst["instance_id"] in gone, inst["instance_id"]
    # An idle on-demand runner is held by the idle rule only for on_demand_idle_minutes.
    for inst in pool:
        if inst["market"] == "on-demand" and inst["instance_id"] in protected:
            since = _demand.idle_since(inst)
            assert (
                inst["state"] != "running"
                or since is None
                or NOW - inst["launch_time"] < datetime.timedelta(minutes=min_running)
                or NOW - since < datetime.timedelta(minutes=on_demand_idle)
            )


@settings(max_examples=300, deadline=None)
@given(pool=_runners, idle=st.integers(0, 30), min_running=st.integers(0, 30))
def test_property_same_idle_time_for_both_markets_is_the_former_rule(pool, idle, min_running):
    # on_demand_idle_minutes = idle_minutes protects exactly what the one rule for every market did.
    _counts, scaling = checked(
        scaling={"idle_minutes": idle, "min_running_minutes": min_running, "on_demand_idle_minutes": idle}
    )
    as_spot = [dict(i, market="spot", tags=dict(i["tags"], **{"parkingspot:market": "spot"})) for i in pool]
    assert _demand.protected_ids(pool, NOW, scaling) == _demand.protected_ids(as_spot, NOW, scaling)
