"""The keeper's pure planner: plain data in, plain data out."""

from __future__ import annotations

import datetime
import json
import random

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import is_fallback_error
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import lease_end
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import parse_now
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import parse_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_diff
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_fallback
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_pool
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import pool_status
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import validate_block_options

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
VCPUS = {"m5.large": 2, "m5.xlarge": 4, "c5.2xlarge": 8}


def at(minutes):
    """NOW shifted by ``minutes`` (negative = in the past)."""
    return NOW + datetime.timedelta(minutes=minutes)


def inst(iid, state="running", age=60, market="spot", itype="m5.large", mark=None, **tags):
    """An instance as the module hands it over; keyword tags use ``_`` for ``-``, ``mark`` is parkingspot:state."""
    if mark:
        tags["state"] = mark
    return {
        "instance_id": iid,
        "state": state,
        "launch_time": at(-age),
        "instance_type": itype,
        "subnet_id": "subnet-1",
        "zone": "eu-west-1a",
        "market": market,
        "tags": {"parkingspot:pool": "ci", **{"parkingspot:" + k.replace("_", "-"): v for k, v in tags.items()}},
    }


def block(iid, expires_in, **kw):
    return inst(iid, expires_at=format_time(at(expires_in)), **kw)


def drain_ids(plan):
    return [d["instance_id"] for d in plan["drain"]]


def plan(instances, desired, **kw):
    kw.setdefault("now", NOW)
    return plan_pool(instances, desired=desired, **kw)


BLOCK = {"market": "block", "duration_minutes": 60, "renew_before_minutes": 20, "drain_timeout_seconds": 300}


# ------------------------------------------------------------------ basics


def test_empty_pool_launches_desired():
    p = plan([], 3)
    assert p["launch"] == {"spot": 3, "on_demand": 0}
    assert p["changed"] is True
    assert p["drain"] == [] and p["terminate"] == []
    assert p["reasons"][0] == "desired 3, capacity 0 (0 spot, 0 on-demand): launching 3 spot, 0 on-demand"
    assert p["now"] == "2026-11-23T08:00:00Z"


def test_steady_pool_changes_nothing():
    p = plan([inst("i-1"), inst("i-2", state="pending"), inst("i-3")], 3)
    assert p["launch"] == {"spot": 0, "on_demand": 0}
    assert p["changed"] is False
    assert p["counts"]["capacity"] == 3
    assert p["counts"]["by_state"]["running"] == 2 and p["counts"]["by_state"]["pending"] == 1
    assert p["counts"]["by_market"] == {"spot": 3, "on_demand": 0}


def test_plan_is_json_and_independent_of_input_order():
    pool = [
        inst(f"i-{n:02d}", age=n, busy="true" if n % 3 == 0 else "false", expires_at=format_time(at(n)))
        for n in range(1, 30)
    ] + [inst("i-99", state="terminated", interrupted="true"), inst("i-98", market="on-demand")]
    first = plan(pool, 12, **BLOCK)
    shuffled = list(pool)
    random.Random(4).shuffle(shuffled)
    second = plan(shuffled, 12, **BLOCK)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert json.loads(json.dumps(first)) == first


# ------------------------------------------------------------------ interruptions, stops, notices


def test_interrupted_instances_are_replaced_and_counted():
    pool = [
        inst("i-1"),
        inst("i-2"),
        inst("i-3", state="terminated", interrupted="true"),
        inst("i-4", state="shutting-down"),
        inst("i-5", state="terminated"),
    ]
    p = plan(pool, 4, interrupted_ids=["i-4"])
    assert p["launch"]["spot"] == 2
    assert p["counts"]["interrupted"] == 2
    assert p["counts"]["by_state"]["terminated"] == 2
    assert p["counts"]["by_state"]["shutting_down"] == 1
    assert p["terminate"] == []  # already gone: nothing to call
    assert "i-3 is terminated after an interruption: replaced" in p["reasons"]


def test_interruption_notice_launches_replacement_without_terminating():
    p = plan([inst("i-1"), inst("i-2", interrupted="2026-11-23T07:59:00Z")], 2)
    assert p["launch"]["spot"] == 1
    assert p["terminate"] == [] and p["drain"] == []
    assert p["counts"]["capacity"] == 1


def test_stopped_instance_is_terminated_and_replaced():
    p = plan([inst("i-1"), inst("i-2", state="stopped")], 2)
    assert p["terminate"] == ["i-2"]
    assert p["launch"]["spot"] == 1


def test_stopping_instance_is_not_capacity_and_left_alone():
    p = plan([inst("i-1"), inst("i-2", state="stopping")], 2)
    assert p["launch"]["spot"] == 1
    assert p["terminate"] == [] and p["drain"] == []


# ------------------------------------------------------------------ surplus and drains


def test_surplus_drains_idle_first_then_newest():
    pool = [
        inst("i-old-idle", age=300),
        inst("i-new-idle", age=10),
        inst("i-newest-busy", age=1, busy="true"),
        inst("i-mid-idle", age=100),
        inst("i-old-busy", age=400, busy="true"),
    ]
    p = plan(pool, 1, drain_timeout_seconds=900)
    # Four must go: the three idle ones (newest first), then the newest busy one.
    assert drain_ids(p) == sorted(["i-new-idle", "i-mid-idle", "i-old-idle", "i-newest-busy"])
    assert all(d["deadline"] == "2026-11-23T08:15:00Z" for d in p["drain"])
    assert p["launch"]["spot"] == 0
    p2 = plan(pool, 3)
    assert drain_ids(p2) == ["i-mid-idle", "i-new-idle"]


def test_drain_in_progress_is_not_capacity_and_not_restarted():
    pool = [inst("i-1"), inst("i-2"), inst("i-3", mark="draining", drain_deadline="2026-11-23T08:05:00Z")]
    p = plan(pool, 2)
    assert p["drain"] == [] and p["terminate"] == []
    assert p["draining"] == [{"instance_id": "i-3", "deadline": "2026-11-23T08:05:00Z"}]
    assert p["counts"]["draining"] == 1 and p["counts"]["capacity"] == 2
    assert p["changed"] is False
    # Desired went up while it drains: replacement capacity is launched, the drain goes on.
    assert plan(pool, 3)["launch"]["spot"] == 1


def test_drain_lease_expired_terminates_even_if_busy():
    pool = [inst("i-1", mark="draining", drain_deadline="2026-11-23T07:59:59Z", busy="true"), inst("i-2")]
    p = plan(pool, 1)
    assert p["terminate"] == ["i-1"]
    assert p["drain"] == []


def test_drain_deadline_is_exclusive_at_the_second():
    pool = [inst("i-1", mark="draining", drain_deadline="2026-11-23T08:00:00Z")]
    assert plan(pool, 0)["terminate"] == ["i-1"]
    pool = [inst("i-1", mark="draining", drain_deadline="2026-11-23T08:00:01Z")]
    assert plan(pool, 0)["terminate"] == []


def test_finished_drain_is_terminated():
    p = plan([inst("i-1", mark="drained"), inst("i-2")], 1)
    assert p["terminate"] == ["i-1"]
    assert p["launch"]["spot"] == 0


def test_draining_without_deadline_is_drained_again_with_a_fresh_lease():
    p = plan([inst("i-1", mark="draining", drain_deadline="soon")], 0, drain_timeout_seconds=120)
    assert p["drain"] == [{"instance_id": "i-1", "deadline": "2026-11-23T08:02:00Z"}]
    assert p["terminate"] == []


# ------------------------------------------------------------------ blocks


def test_block_statuses_and_remaining_minutes():
    pool = [block("i-a", 45), block("i-e", 15), block("i-x", -1), block("i-edge", 20)]
    p = plan(pool, 2, **BLOCK)
    by_id = {b["instance_id"]: b for b in p["blocks"]}
    assert by_id["i-a"] == {
        "instance_id": "i-a",
        "expires_at": "2026-11-23T08:45:00Z",
        "remaining_minutes": 45,
        "status": "active",
    }
    assert by_id["i-e"]["status"] == "expiring" and by_id["i-e"]["remaining_minutes"] == 15
    assert by_id["i-edge"]["status"] == "expiring"  # exactly renew_before_minutes away
    assert by_id["i-x"] == {
        "instance_id": "i-x",
        "expires_at": "2026-11-23T07:59:00Z",
        "remaining_minutes": 0,
        "status": "expired",
    }
    assert [b["instance_id"] for b in p["blocks"]] == ["i-x", "i-e", "i-edge", "i-a"]  # by expiry


def test_expiring_block_is_renewed_launch_first():
    p = plan([block("i-a", 45), block("i-e", 15)], 2, **BLOCK)
    assert p["renew"] == ["i-e"]
    assert p["launch"] == {"spot": 1, "on_demand": 0, "expires_at": "2026-11-23T09:00:00Z"}
    assert p["drain"] == [] and p["terminate"] == []  # the old one keeps serving
    # Next run: the replacement exists, so nothing more is launched and the old one still serves.
    p2 = plan([block("i-a", 45), block("i-e", 10), block("i-new", 55, age=1)], 2, **BLOCK)
    assert p2["launch"]["spot"] == 0
    assert p2["renew"] == ["i-e"] and p2["drain"] == []


def test_expiring_block_drains_when_within_drain_timeout():
    p = plan([block("i-a", 45), block("i-e", 4), block("i-new", 55)], 2, **BLOCK)
    assert p["drain"] == [{"instance_id": "i-e", "deadline": "2026-11-23T08:04:00Z"}]
    assert p["launch"]["spot"] == 0


def test_expired_block_is_terminated_even_while_busy_or_draining():
    pool = [
        block("i-x", -1, busy="true"),
        block("i-y", 0, mark="draining", drain_deadline="2026-11-23T09:00:00Z"),
        block("i-a", 50),
    ]
    p = plan(pool, 3, **BLOCK)
    assert p["terminate"] == ["i-x", "i-y"]
    assert p["launch"]["spot"] == 2


def test_block_without_lease_tag_is_drained_and_replaced():
    p = plan([inst("i-nolease"), block("i-a", 50)], 2, **BLOCK)
    assert drain_ids(p) == ["i-nolease"]
    assert p["launch"]["spot"] == 1


def test_shrinking_pool_drains_expiring_blocks_too():
    pool = [block("i-a", 50), block("i-b", 40), block("i-e", 15)]
    p = plan(pool, 1, **BLOCK)
    assert drain_ids(p) == ["i-a", "i-e"]  # i-a is the newest of the two active ones
    expiring = [d for d in p["drain"] if d["instance_id"] == "i-e"][0]
    assert expiring["deadline"] == "2026-11-23T08:05:00Z"  # drain timeout, before the lease end
    assert p["renew"] == []


def test_lease_tag_is_honoured_in_a_spot_pool():
    p = plan([block("i-x", -5), inst("i-1")], 2)
    assert p["terminate"] == ["i-x"]
    assert p["launch"]["spot"] == 1


def _apply(pool, p, now, duration, counter):
    """Play a plan against a fake cloud: terminate, launch, then mark drains (drain command fails)."""
    by_id = {i["instance_id"]: i for i in pool}
    for iid in p["terminate"]:
        by_id[iid]["state"] = "terminated"
    for _launch in range(p["launch"]["spot"]):
        counter[0] += 1
        new = inst(f"i-{counter[0]:04d}", state="pending", age=0)
        new["launch_time"] = now
        new["tags"]["parkingspot:expires-at"] = lease_end(now, duration)
        pool.append(new)
    for d in p["drain"]:
        by_id[d["instance_id"]]["tags"]["parkingspot:state"] = "draining"
        by_id[d["instance_id"]]["tags"]["parkingspot:drain-deadline"] = d["deadline"]
    for i in pool:
        if i["state"] == "pending" and i["launch_time"] < now:
            i["state"] = "running"


def test_block_pool_through_three_hours():
    """Every 5 minutes for 3 hours: the pool never serves past a lease and never runs short."""
    pool, counter, launches = [], [0], 0
    for step in range(37):
        now = NOW + datetime.timedelta(minutes=5 * step)
        p = plan_pool(pool, now=now, desired=3, **BLOCK)
        launches += p["launch"]["spot"]
        _apply(pool, p, now, 60, counter)
        live = [i for i in pool if i["state"] != "terminated"]
        for i in live:
            assert parse_time(i["tags"]["parkingspot:expires-at"]) > now, "a block outlived its lease"
        serving = [i for i in live if i["tags"].get("parkingspot:state") != "draining"]
        assert len(serving) >= 3
        assert len(live) <= 6  # at most one replacement per slot at a time
    # 3 slots renewed roughly every 40 minutes (60 - 20) over 180 minutes.
    assert 12 <= launches <= 18


# ------------------------------------------------------------------ fallback and switch back


FALLBACK = {"enabled": True, "max": 3}


def test_fallback_error_patterns():
    assert is_fallback_error("InsufficientInstanceCapacity")
    assert is_fallback_error("InsufficientCapacityOnHost")
    assert is_fallback_error("MaxSpotInstanceCountExceeded")
    assert not is_fallback_error("UnauthorizedOperation")
    assert not is_fallback_error("")
    assert not is_fallback_error(None)
    assert is_fallback_error("Throttling", ["Thrott*"])
    assert not is_fallback_error("InsufficientInstanceCapacity", ["SpotMaxPriceTooLow"])


def test_two_step_fallback_moves_the_shortfall_to_on_demand():
    first = plan([inst("i-1")], 5, fallback=FALLBACK)
    assert first["launch"] == {"spot": 4, "on_demand": 0}
    second = plan_fallback(first, 1, "InsufficientInstanceCapacity")
    assert second["launch"] == {"spot": 1, "on_demand": 3}
    assert second["fallback"]["error"] == "InsufficientInstanceCapacity"
    assert second["clipped"] == []
    assert first["launch"] == {"spot": 4, "on_demand": 0}  # the first plan is not modified
    assert "spot launch failed with InsufficientInstanceCapacity after 1 of 4: 3 instance(s) short" in second["reasons"]


def test_fallback_is_capped_by_max_including_existing_on_demand():
    pool = [
        inst("i-1"),
        inst("i-od1", market="on-demand"),
        inst("i-od2", market="on-demand", mark="draining", drain_deadline="2026-11-23T09:00:00Z"),
    ]
    first = plan(pool, 6, fallback=FALLBACK)
    second = plan_fallback(first, 0, "InsufficientInstanceCapacity")
    # two on-demand instances already live (one draining) -> one more allowed
    assert second["launch"] == {"spot": 0, "on_demand": 1}
    assert second["clipped"] == [
        {"quota": "on_demand_fallback.max", "market": "on-demand", "asked": 4, "allowed": 1, "limit": 3, "used": 2}
    ]


def test_fallback_disabled_launches_nothing_and_says_so():
    second = plan_fallback(plan([], 2), 0, "InsufficientInstanceCapacity")
    assert second["launch"] == {"spot": 0, "on_demand": 0}
    assert second["changed"] is False
    assert any("fallback is disabled" in r for r in second["reasons"])


def test_spot_unavailable_up_front_plans_on_demand():
    p = plan([inst("i-1")], 3, fallback=FALLBACK, spot_available=False)
    assert p["launch"] == {"spot": 0, "on_demand": 2}


def test_spot_unavailable_surplus_drains_idle_on_demand_first():
    pool = [
        inst("i-s", age=5),
        inst("i-od", market="on-demand", age=50),
        inst("i-busy-od", market="on-demand", age=1, busy="true"),
    ]
    assert drain_ids(plan(pool, 2, fallback=FALLBACK, spot_available=False)) == ["i-od"]
    assert drain_ids(plan(pool, 1, fallback=FALLBACK, spot_available=False)) == ["i-od", "i-s"]


def test_switch_back_launches_spot_before_draining_on_demand():
    od = [inst(f"i-od{n}", market="on-demand", age=n * 10) for n in range(1, 4)]
    # Run 1: spot works again.  3 spot replacements are launched; on-demand keeps serving.
    p1 = plan([inst("i-s1"), inst("i-s2")] + od, 5, fallback=FALLBACK)
    assert p1["launch"] == {"spot": 3, "on_demand": 0}
    assert p1["drain"] == [] and p1["replace_on_demand"] == []
    # Run 2: one replacement still pending -> only two on-demand instances may go (newest first).
    spot = [inst(f"i-s{n}") for n in range(1, 5)] + [inst("i-s5", state="pending")]
    p2 = plan(spot + od, 5, fallback=FALLBACK)
    assert p2["launch"]["spot"] == 0
    assert p2["replace_on_demand"] == ["i-od1", "i-od2"]
    assert drain_ids(p2) == ["i-od1", "i-od2"]
    # Run 3: all spot running -> the last on-demand instance is drained.
    spot[-1]["state"] = "running"
    p3 = plan(spot + od[2:], 5, fallback=FALLBACK)
    assert drain_ids(p3) == ["i-od3"] == p3["replace_on_demand"]


def test_spot_launch_failing_during_switch_back_keeps_on_demand():
    od = [inst(f"i-od{n}", market="on-demand") for n in range(1, 4)]
    first = plan([inst("i-s1")] + od, 4, fallback=FALLBACK)
    assert first["launch"]["spot"] == 3 and first["drain"] == []
    second = plan_fallback(first, 0, "InsufficientInstanceCapacity")
    # 3 on-demand already live and max is 3: nothing more, and none of them is drained.
    assert second["launch"] == {"spot": 0, "on_demand": 0}
    assert second["drain"] == []


# ------------------------------------------------------------------ quotas


QUOTA_ARGS = {"vcpus": VCPUS, "launch_instance_types": ["m5.large"]}


def test_pool_max_vcpus_clips_launches():
    pool = [inst("i-1", itype="m5.xlarge"), inst("i-2")]  # 4 + 2 vCPUs
    p = plan(pool, 10, quota={"max_vcpus": 13}, **QUOTA_ARGS)
    assert p["launch"]["spot"] == 3
    assert p["clipped"] == [
        {
            "quota": "quota.max_vcpus",
            "market": "spot",
            "asked": 8,
            "allowed": 3,
            "limit_vcpus": 13,
            "used_vcpus": 6,
            "vcpus_per_instance": 2,
        }
    ]
    assert p["quota"]["pool_used_vcpus"] == 6


def test_owner_quota_clips_launches():
    p = plan([], 4, quota={"per_owner_max_vcpus": 20, "owner_used_vcpus": 16}, **QUOTA_ARGS)
    assert p["launch"]["spot"] == 2
    assert [c["quota"] for c in p["clipped"]] == ["quota.per_owner_max_vcpus"]


def test_account_quota_clips_spot_but_not_on_demand():
    p = plan([], 4, quota={"account_available_vcpus": 3}, fallback=FALLBACK, **QUOTA_ARGS)
    assert p["launch"]["spot"] == 1
    assert p["clipped"][0]["quota"] == "quota.check_account_quota"
    assert p["clipped"][0]["allowed"] == 1
    # The one spot launch fails too: the whole shortfall goes on-demand, up to the fallback max.
    second = plan_fallback(p, 0, "MaxSpotInstanceCountExceeded")
    assert second["launch"] == {"spot": 0, "on_demand": 3}
    assert [c["quota"] for c in second["clipped"]] == ["quota.check_account_quota", "on_demand_fallback.max"]


def test_quotas_clip_in_turn_and_each_is_reported():
    quota = {"max_vcpus": 16, "per_owner_max_vcpus": 10, "owner_used_vcpus": 2, "account_available_vcpus": 4}
    p = plan([], 10, quota=quota, **QUOTA_ARGS)
    assert p["launch"]["spot"] == 2
    assert [(c["quota"], c["asked"], c["allowed"]) for c in p["clipped"]] == [
        ("quota.max_vcpus", 10, 8),
        ("quota.per_owner_max_vcpus", 8, 4),
        ("quota.check_account_quota", 4, 2),
    ]


def test_fallback_on_demand_counts_spot_just_launched_against_pool_quota():
    p = plan([], 6, quota={"max_vcpus": 8}, fallback={"enabled": True, "max": 10}, **QUOTA_ARGS)
    assert p["launch"]["spot"] == 4
    second = plan_fallback(p, 3, "InsufficientInstanceCapacity")
    assert second["launch"] == {"spot": 3, "on_demand": 1}  # 3*2 used, 2 vCPUs left


def test_terminations_in_the_plan_free_quota():
    pool = [inst("i-old", state="stopped", itype="c5.2xlarge"), inst("i-1")]
    p = plan(pool, 4, quota={"max_vcpus": 8}, **QUOTA_ARGS)
    assert p["terminate"] == ["i-old"]
    assert p["launch"]["spot"] == 3
    assert p["clipped"] == []


def test_largest_launch_type_is_used_for_quota():
    p = plan([], 4, quota={"max_vcpus": 16}, vcpus=VCPUS, launch_instance_types=["m5.large", "m5.xlarge"])
    assert p["launch"]["spot"] == 4
    p = plan([], 5, quota={"max_vcpus": 16}, vcpus=VCPUS, launch_instance_types=["m5.large", "m5.xlarge"])
    assert p["launch"]["spot"] == 4 and p["clipped"][0]["vcpus_per_instance"] == 4


def test_quota_needs_vcpu_counts():
    with pytest.raises(InputError, match=r"^vcpus: no vCPU count for instance type 't3.nano'$"):
        plan([inst("i-1", itype="t3.nano")], 2, quota={"max_vcpus": 8}, **QUOTA_ARGS)
    with pytest.raises(InputError, match=r"^vcpus: quotas need the instance type"):
        plan([], 2, quota={"max_vcpus": 8}, vcpus=VCPUS)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"market": "block"}, "duration_minutes: is required for blocks"),
        ({"market": "block", "duration_minutes": 0}, "duration_minutes: must be 1 or more"),
        (
            {"market": "block", "duration_minutes": 20},
            "renew_before_minutes: 20 must be less than duration_minutes (20)",
        ),
        (
            {"market": "block", "duration_minutes": 90, "mode": "native"},
            "duration_minutes: 90 is not allowed with mode",
        ),
        ({"drain_timeout_seconds": -5}, "drain.timeout: must be 0 or more"),
        ({"quota": {"max_vcpu": 3}}, "quota: unknown key(s) max_vcpu"),
        ({"instances": [{"instance_id": "i-1"}]}, "instances[0].state: must be one of"),
        ({"instances": [dict(inst("i-1"), launch_time=datetime.datetime(2026, 1, 1))]}, "instances[0].launch_time"),
        ({"instances": [inst("i-1"), inst("i-1")]}, "instances[1].instance_id: i-1 is listed twice"),
        ({"instances": [inst("i-1", market="reserved")]}, "instances[0].market: must be spot or on-demand"),
    ],
)
def test_bad_input_names_the_option(kwargs, message):
    args = {"instances": [], "now": NOW, "desired": 1}
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        plan_pool(**args)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("minutes", [60, 120, 180, 240, 300, 360])
def test_native_block_durations_allowed(minutes):
    assert validate_block_options(minutes, 20, "native") == (minutes, 20)


@pytest.mark.parametrize("minutes", [30, 90, 361, 420, 45])
def test_native_block_durations_rejected(minutes):
    with pytest.raises(InputError, match=rf"^duration_minutes: {minutes} is not allowed with mode native"):
        validate_block_options(minutes, 20, "native")


def test_emulated_blocks_take_any_length_above_the_margin():
    assert validate_block_options(90, 20, "emulated") == (90, 20)
    with pytest.raises(InputError, match=r"^mode: must be emulated or native"):
        validate_block_options(90, 20, "virtual")


def test_plan_fallback_rejects_more_than_planned():
    with pytest.raises(InputError, match=r"^launched_spot: 5 is more than the 2 planned$"):
        plan_fallback(plan([], 2), 5, "InsufficientInstanceCapacity")


def test_time_helpers():
    assert parse_time("2026-11-23T08:00:00Z") == NOW
    assert parse_time("2026-11-23T09:00:00+01:00") == NOW
    assert parse_time("2026-11-23T08:00:00") is None  # no zone: not trusted
    assert parse_time("tomorrow") is None
    assert lease_end(NOW, 90) == "2026-11-23T09:30:00Z"
    assert format_time(
        datetime.datetime(2026, 11, 23, 9, 0, 0, 999, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    ) == ("2026-11-23T08:00:00Z")


# ------------------------------------------------------------------ properties

_instance = st.builds(
    lambda n, state, age, busy, market: inst(
        f"i-{n:03d}", state=state, age=age, market=market, **({"busy": "true"} if busy else {})
    ),
    st.integers(0, 999),
    st.sampled_from(["pending", "running", "running", "running", "stopped", "terminated"]),
    st.integers(0, 600),
    st.booleans(),
    st.sampled_from(["spot", "spot", "on-demand"]),
)
_pools = st.lists(_instance, max_size=40, unique_by=lambda i: i["instance_id"])


@settings(max_examples=200, deadline=None)
@given(pool=_pools, desired=st.integers(0, 50), spot=st.booleans(), fmax=st.integers(0, 10))
def test_never_launches_beyond_desired(pool, desired, spot, fmax):
    p = plan(pool, desired, spot_available=spot, fallback={"enabled": True, "max": fmax})
    # No leases, drains or quotas here: capacity is what is pending or running.
    live = [i for i in pool if i["state"] in ("pending", "running")]
    assert p["counts"]["capacity"] == len(live)
    if spot:
        # Spot replaces on-demand fallback too, so only spot capacity counts against desired.
        expected = {"spot": max(0, desired - sum(1 for i in live if i["market"] == "spot")), "on_demand": 0}
    else:
        room = max(0, fmax - sum(1 for i in live if i["market"] == "on-demand"))
        expected = {"spot": 0, "on_demand": min(max(0, desired - len(live)), room)}
    assert p["launch"] == expected
    assert p["launch"]["spot"] == 0 or spot
    od_live = sum(
        1
        for i in pool
        if i["market"] == "on-demand"
        and i["state"] in ("pending", "running", "stopping")
        and i["instance_id"] not in p["terminate"]
    )
    assert p["launch"]["on_demand"] <= max(0, fmax - od_live)
    acted = drain_ids(p) + p["terminate"]
    assert len(acted) == len(set(acted))  # nothing is both drained and terminated
    assert set(acted) <= {i["instance_id"] for i in pool}


@settings(max_examples=200, deadline=None)
@given(pool=_pools, desired=st.integers(0, 40))
def test_busy_never_drained_while_idle_surplus_remains(pool, desired):
    spot_only = [dict(i, market="spot") for i in pool]
    p = plan(spot_only, desired)
    drained = set(drain_ids(p))
    serving = [i for i in spot_only if i["state"] in ("pending", "running")]
    busy_drained = any(i["tags"].get("parkingspot:busy") == "true" for i in serving if i["instance_id"] in drained)
    idle_kept = any(i["tags"].get("parkingspot:busy") != "true" for i in serving if i["instance_id"] not in drained)
    assert not (busy_drained and idle_kept)
    # Drains plus launches land exactly on desired.
    assert len(serving) - len(drained) + p["launch"]["spot"] == desired


# ------------------------------------------------------------------ fallback through an ASG

ASG = {"enabled": True, "max": 4}


def test_asg_fallback_raises_desired_capacity():
    first = plan([inst("i-1")], 4, fallback=dict(ASG, asg_capacity=0))
    assert first["fallback"]["asg_desired"] == 0 and first["changed"] is True
    second = plan_fallback(first, 0, "InsufficientInstanceCapacity")
    assert second["launch"] == {"spot": 0, "on_demand": 3}
    assert second["fallback"]["asg_desired"] == 3


def test_asg_fallback_counts_towards_max_and_capacity():
    p = plan([inst("i-1")], 8, fallback=dict(ASG, asg_capacity=3), spot_available=False)
    assert p["counts"]["capacity"] == 4
    assert p["launch"]["on_demand"] == 1  # max 4, 3 already in the ASG
    assert p["fallback"]["asg_desired"] == 4


def test_asg_capacity_is_given_back_as_spot_runs():
    # 2 spot running, ASG holds 3, desired 4: one ASG instance is no longer needed.
    pool = [inst("i-1"), inst("i-2"), inst("i-3", state="pending"), inst("i-4", state="pending")]
    p = plan(pool, 4, fallback=dict(ASG, asg_capacity=3))
    assert p["fallback"]["asg_desired"] == 2
    assert p["launch"]["spot"] == 0 and p["drain"] == []
    assert p["changed"] is True
    for i in pool:
        i["state"] = "running"
    p = plan(pool, 4, fallback=dict(ASG, asg_capacity=2))
    assert p["fallback"]["asg_desired"] == 0


def test_asg_steady_is_unchanged():
    p = plan([inst("i-1")], 3, fallback=dict(ASG, asg_capacity=2), spot_available=False)
    assert p["changed"] is False
    assert p["fallback"]["asg_desired"] == 2


def test_asg_shrinks_first_when_desired_drops_without_spot():
    p = plan([inst("i-1"), inst("i-2", age=5)], 1, fallback=dict(ASG, asg_capacity=2), spot_available=False)
    assert p["fallback"]["asg_desired"] == 0
    assert drain_ids(p) == ["i-2"]


# ------------------------------------------------------------------ status for spot_pool_info


def test_pool_status_reports_without_deciding():
    pool = [
        block("i-a", 45),
        block("i-e", 10),
        block("i-d", 30, mark="draining", drain_deadline="2026-11-23T08:03:00Z", itype="m5.xlarge"),
        inst("i-od", market="on-demand", expires_at=format_time(at(50))),
        inst("i-gone", state="terminated", interrupted="true"),
    ]
    status = pool_status(pool, NOW, market="block", vcpus=VCPUS)
    assert status["counts"] == {
        "by_state": {
            "pending": 0,
            "running": 4,
            "stopping": 0,
            "stopped": 0,
            "shutting_down": 0,
            "terminated": 1,
        },
        "by_market": {"spot": 3, "on_demand": 1},
        "capacity": 2,
        "draining": 1,
        "expiring": 1,
        "interrupted": 1,
    }
    assert [(b["instance_id"], b["remaining_minutes"], b["status"]) for b in status["blocks"]] == [
        ("i-e", 10, "expiring"),
        ("i-d", 30, "active"),
        ("i-a", 45, "active"),
        ("i-od", 50, "active"),
    ]
    assert status["draining"] == [{"instance_id": "i-d", "deadline": "2026-11-23T08:03:00Z"}]
    assert status["vcpus_used"] == 2 + 2 + 4 + 2
    assert pool_status(pool, NOW, market="block")["vcpus_used"] is None
    with pytest.raises(InputError, match=r"^market: must be spot or block"):
        pool_status(pool, NOW, market="fleet")


# ------------------------------------------------------------------ property: terminations always have a cause

_tagged_instance = st.builds(
    lambda n, state, age, lease, mark, deadline, busy: inst(
        f"i-{n:03d}",
        state=state,
        age=age,
        mark=mark,
        **({"expires_at": format_time(at(lease))} if lease is not None else {}),
        **({"drain_deadline": format_time(at(deadline))} if deadline is not None else {}),
        **({"busy": "true"} if busy else {}),
    ),
    st.integers(0, 999),
    st.sampled_from(["pending", "running", "running", "stopping", "stopped", "shutting-down", "terminated"]),
    st.integers(0, 300),
    st.one_of(st.none(), st.integers(-30, 90)),
    st.sampled_from([None, None, "draining", "drained"]),
    st.one_of(st.none(), st.integers(-10, 10)),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(_tagged_instance, max_size=30, unique_by=lambda i: i["instance_id"]),
    desired=st.integers(0, 30),
    market=st.sampled_from(["spot", "block"]),
    timeout=st.sampled_from([0, 300, 3600]),
)
def test_terminations_have_a_cause_and_leases_are_never_outlived(pool, desired, market, timeout):
    kwargs = {**BLOCK, "market": market, "drain_timeout_seconds": timeout}
    p = plan(pool, desired, **kwargs)
    by_id = {i["instance_id"]: i for i in pool}
    for iid in p["terminate"]:
        i = by_id[iid]
        tags = i["tags"]
        lease = parse_time(tags.get("parkingspot:expires-at"))
        deadline = parse_time(tags.get("parkingspot:drain-deadline"))
        assert (
            i["state"] == "stopped"
            or tags.get("parkingspot:state") == "drained"
            or (lease is not None and lease <= NOW)
            or (tags.get("parkingspot:state") == "draining" and deadline is not None and deadline <= NOW)
        ), iid
    for i in pool:
        lease = parse_time(i["tags"].get("parkingspot:expires-at"))
        if i["state"] in ("pending", "running") and lease is not None and lease <= NOW:
            assert i["instance_id"] in p["terminate"]
    for d in p["drain"]:
        lease = parse_time(by_id[d["instance_id"]]["tags"].get("parkingspot:expires-at"))
        if lease is not None:
            assert parse_time(d["deadline"]) <= lease
    assert not set(p["terminate"]) & {i["instance_id"] for i in pool if i["state"] in ("terminated", "shutting-down")}


# ------------------------------------------------------------------ diff and the now option


def test_plan_diff_before_after():
    pool = [
        inst("i-1"),
        inst("i-2", state="stopped"),
        inst("i-od", market="on-demand"),
        block("i-x", -1),
        inst("i-d", mark="draining", drain_deadline="2026-11-23T08:10:00Z"),
    ]
    p = plan(pool, 4)
    assert p["terminate"] == ["i-2", "i-x"]
    assert p["launch"]["spot"] == 3
    assert plan_diff(p) == {
        "before": {"desired": 4, "capacity": 2, "spot": 3, "on_demand": 1, "draining": 1},
        # i-x (running, expired) leaves; i-2 was stopped so it was not live; 3 spot launched.
        "after": {"desired": 4, "capacity": 5, "spot": 5, "on_demand": 1, "draining": 1},
    }
    p = plan([inst("i-1"), inst("i-2", age=5)], 1)
    assert plan_diff(p)["after"] == {"desired": 1, "capacity": 1, "spot": 2, "on_demand": 0, "draining": 1}


def test_parse_now():
    assert parse_now("2026-11-23T09:00:00+01:00") == NOW
    assert parse_now("2026-11-23T08:00:00Z") == NOW
    before = datetime.datetime.now(UTC)
    assert before <= parse_now(None) <= datetime.datetime.now(UTC)
    for bad in ("2026-11-23T08:00:00", "monday 8am"):
        with pytest.raises(InputError, match=r"^now: must be an ISO 8601 time with a time zone"):
            parse_now(bad)


def test_reasons_explain_every_decision():
    pool = [
        block("i-e", 15),
        block("i-x", -1),
        inst("i-s", state="stopped"),
        block("i-sur1", 50, age=1),
        block("i-sur2", 50, age=2),
        inst("i-d", mark="draining", drain_deadline="2026-11-23T07:00:00Z"),
    ]
    p = plan(pool, 1, **BLOCK)
    decided = set(drain_ids(p)) | set(p["terminate"]) | set(p["renew"])
    assert decided == {"i-e", "i-x", "i-s", "i-sur1", "i-d"}
    for iid in decided:
        assert any(line.startswith(iid + " ") for line in p["reasons"]), iid
