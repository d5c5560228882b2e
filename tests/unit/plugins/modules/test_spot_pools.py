# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_pools against moto in-process: many pools in one run, one read, per-pool failures."""

import os
import time

import pytest

from ansible_collections.parkingspot.ec2.plugins.modules import spot_pools

POOL_TAG = "parkingspot:pool"


def live(ec2, states=("pending", "running")):
    """Instance id -> pool name of every pool instance in ``states``."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag-key", "Values": [POOL_TAG]}, {"Name": "instance-state-name", "Values": list(states)}]
    )
    found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}[POOL_TAG] for i in found}


def by_pool(ec2):
    counts = {}
    for name in live(ec2).values():
        counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.fixture
def launch(image_id):
    return {"image_id": image_id, "instance_type": "t3.micro"}


def pools(launch, **desired):
    return [dict(launch, name=name.replace("_", "-"), desired=count) for name, count in desired.items()]


def test_create_then_no_change_costs_one_read_for_all_pools(ec2, launch, run_module, api_calls):
    args = {"pools": pools(launch, ci_a=2, ci_b=3, ci_c=1)}
    created = run_module(spot_pools, args)
    assert created["changed"] is True
    assert created["failed"] == {} and created["failed_pools"] == {}
    assert api_calls.count("DescribeInstances") == 1
    assert api_calls.count("RunInstances") == 3  # one launch call per pool (one offering group each)
    assert by_pool(ec2) == {"ci-a": 2, "ci-b": 3, "ci-c": 1}
    assert created["pacing"]["writes"] == {"RunInstances": 3}
    assert sorted(created["pools"]) == ["ci-a", "ci-b", "ci-c"]
    assert len(created["pools"]["ci-b"]["pool"]["launched"]) == 3

    api_calls.clear()
    again = run_module(spot_pools, args)
    assert again["changed"] is False
    assert api_calls.names() == ["DescribeInstances"]
    assert all(not p["changed"] for p in again["pools"].values())
    assert again["diff"] == []
    assert again["pacing"]["waited_seconds"] == 0


def test_check_mode_plans_every_pool_without_writes(ec2, launch, run_module, api_calls):
    result = run_module(spot_pools, {"pools": pools(launch, ci_a=2, ci_b=4)}, check_mode=True)
    assert result["changed"] is True
    assert result["pools"]["ci-a"]["pool"]["would_launch"] == 2
    assert result["pools"]["ci-b"]["plan"]["launch"] == {"spot": 4, "on_demand": 0}
    assert api_calls.writes() == []
    assert live(ec2) == {}
    headers = sorted(d["before_header"] for d in result["diff"])
    assert headers == ["pool ci-a", "pool ci-b"]


def test_terminations_of_all_pools_go_in_one_call(ec2, launch, run_module, api_calls):
    run_module(spot_pools, {"pools": pools(launch, ci_a=3, ci_b=3, ci_c=2)})
    api_calls.clear()
    shrunk = run_module(spot_pools, {"pools": pools(launch, ci_a=1, ci_b=1, ci_c=2)})
    assert shrunk["changed"] is True
    assert shrunk["pools"]["ci-c"]["changed"] is False
    assert by_pool(ec2) == {"ci-a": 1, "ci-b": 1, "ci-c": 2}
    # No drain configured: the surplus of both pools is tagged in one CreateTags and ended in one call.
    assert api_calls.count("TerminateInstances") == 1
    assert api_calls.count("CreateTags") == 1
    (terminate,) = [p for name, p in api_calls.calls if name == "TerminateInstances"]
    assert len(terminate["InstanceIds"]) == 4


def test_pools_are_split_by_exact_name(ec2, launch, run_module):
    run_module(spot_pools, {"pools": pools(launch, ci=1)})
    star = dict(launch, name="ci*", desired=2)
    result = run_module(spot_pools, {"pools": [star, dict(launch, name="ci", desired=1)]})
    assert result["pools"]["ci"]["changed"] is False
    assert result["pools"]["ci*"]["pool"]["capacity"] == 0
    assert by_pool(ec2) == {"ci": 1, "ci*": 2}


def test_a_refused_launch_fails_only_its_pool(ec2, launch, run_module, capacity_errors):
    good = dict(launch, name="good", desired=2)
    spot_only = dict(launch, name="spot-only", desired=2)  # no fallback: stays short, not failed
    capacity_errors["spot"] = False
    capacity_errors["code"] = "UnauthorizedOperation"  # not a capacity error: the launch fails
    result = run_module(spot_pools, {"pools": [spot_only, good]})
    assert sorted(result["failed"]) == ["good", "spot-only"]
    assert "UnauthorizedOperation" in result["failed"]["good"]
    assert "2 of 2 pool(s) could not be kept" in result["msg"]


def test_one_bad_pool_does_not_stop_the_others(ec2, launch, run_module, api_calls):
    bad = dict(launch, name="bad", desired=1, instance_types=["t3.small"])  # with instance_type: refused
    typo = dict(launch, name="typo", desired=1, desird=3)
    absent_fallback = dict(launch, name="neg", desired=1, on_demand_fallback={"max": -1})
    result = run_module(spot_pools, {"pools": [bad, dict(launch, name="good", desired=2), typo, absent_fallback]})
    assert by_pool(ec2) == {"good": 2}
    assert sorted(result["failed"]) == ["bad", "neg", "typo"]
    assert result["failed_pools"] == result["failed"]
    assert "instance_types: mutually exclusive with instance_type" in result["failed"]["bad"]
    assert "desird" in result["failed"]["typo"] and "pools[2] (typo)" in result["failed"]["typo"]
    assert "on_demand_fallback.max" in result["failed"]["neg"]
    assert sorted(result["pools"]) == ["good"]
    assert result["changed"] is True


def test_connection_options_inside_a_pool_are_refused(ec2, launch, run_module):
    result = run_module(spot_pools, {"pools": [dict(launch, name="ci", desired=1, region="eu-west-1")]})
    assert "region" in result["failed"]["ci"]
    assert live(ec2) == {}


@pytest.mark.parametrize(
    "pools_arg, message",
    [
        ([{"name": "ci", "desired": 1}, {"name": "ci", "desired": 2}], "pools[1].name: pool 'ci' is listed twice"),
        ([{"desired": 1}], "pools[0].name: every pool needs a name"),
    ],
)
def test_pools_that_cannot_be_told_apart_fail_before_any_call(ec2, run_module, api_calls, pools_arg, message):
    result = run_module(spot_pools, {"pools": pools_arg})
    assert result["failed"] is True
    assert message in result["msg"]
    assert result["option"] == message.split(":")[0]
    assert api_calls.names() == []


def test_interrupted_instances_are_replaced_in_each_pool(ec2, launch, run_module, api_calls):
    run_module(spot_pools, {"pools": pools(launch, ci_a=4, ci_b=4)})
    held = live(ec2)
    victims = [sorted(i for i, p in held.items() if p == name)[0] for name in ("ci-a", "ci-b")]
    ec2.terminate_instances(InstanceIds=victims)
    api_calls.clear()
    result = run_module(spot_pools, {"pools": pools(launch, ci_a=4, ci_b=4)})
    assert api_calls.names() == ["DescribeInstances", "RunInstances", "RunInstances"]
    assert by_pool(ec2) == {"ci-a": 4, "ci-b": 4}
    assert not set(victims) & set(live(ec2))
    assert [len(result["pools"][n]["pool"]["launched"]) for n in ("ci-a", "ci-b")] == [1, 1]


def test_absent_pool_is_emptied_beside_kept_ones(ec2, launch, run_module):
    run_module(spot_pools, {"pools": pools(launch, ci_a=2, ci_b=2)})
    result = run_module(
        spot_pools, {"pools": [dict(launch, name="ci-a", state="absent"), dict(launch, name="ci-b", desired=2)]}
    )
    assert by_pool(ec2) == {"ci-b": 2}
    assert len(result["pools"]["ci-a"]["pool"]["terminated"]) == 2


def test_launches_wait_for_runinstances_tokens(ec2, launch, run_module, monkeypatch):
    """Seven pools to launch: five RunInstances from the burst, then one every half second.

    The run's buckets get a clock that only moves when the run sleeps for tokens, so the
    time moto takes per call refills nothing and the waits are exact.
    """
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _pacing

    slept = []
    clock = {"now": 0.0}

    def sleep(seconds):
        slept.append(seconds)
        clock["now"] += seconds

    real_pacer = _pacing.Pacer
    monkeypatch.setattr(_pacing, "Pacer", lambda: real_pacer(lambda: clock["now"], sleep))
    seven = [dict(launch, name="ci-%d" % k, desired=1) for k in range(7)]
    result = run_module(spot_pools, {"pools": seven})
    assert by_pool(ec2) == {"ci-%d" % k: 1 for k in range(7)}
    assert result["pacing"]["writes"] == {"RunInstances": 7}
    assert slept == [pytest.approx(0.5), pytest.approx(0.5)]
    assert result["pacing"]["waited_by_action"]["RunInstances"] == pytest.approx(1.0)
    assert result["pacing"]["waited_seconds"] == pytest.approx(1.0)


def test_queue_driven_pool_is_sized_by_its_demand(ec2, launch, run_module):
    queue = dict(launch, name="ci-queue", desired=1, demand={"queued": 3, "busy": 0}, scaling={"max": 4})
    result = run_module(spot_pools, {"pools": [queue, dict(launch, name="ci-fixed", desired=1)]})
    assert result["failed"] == {}
    assert by_pool(ec2) == {"ci-queue": 3, "ci-fixed": 1}
    assert result["pools"]["ci-queue"]["pool"]["desired"] == 3
    assert "demand" in result["pools"]["ci-queue"]["pool"]
    assert "demand" not in result["pools"]["ci-fixed"]["pool"]


def test_asg_fallback_raises_then_lowers_the_group_of_its_pool(
    ec2, launch, run_module, capacity_errors, fallback_group
):
    desired = fallback_group
    fallback = {"enabled": True, "max": 3, "asg_name": "ci-on-demand"}
    args = {"pools": [dict(launch, name="ci-asg", desired=2, on_demand_fallback=fallback), *pools(launch, ci=1)]}
    capacity_errors["spot"] = False
    short = run_module(spot_pools, args)
    assert short["failed"] == {}
    assert short["pools"]["ci-asg"]["pool"]["fallback"]["error"] == "InsufficientInstanceCapacity"
    assert short["pools"]["ci-asg"]["pool"]["fallback"]["asg_desired"] == 2
    assert desired() == 2
    assert live(ec2) == {}  # the ASG's instances are not the pool's

    capacity_errors["spot"] = True
    run_module(spot_pools, args)  # spot replacements launch; the ASG keeps serving until they run
    run_module(spot_pools, args)
    assert desired() == 0
    assert by_pool(ec2) == {"ci-asg": 2, "ci": 1}


def test_drains_run_for_the_surplus_of_each_pool(ec2, launch, run_module, api_calls, tmp_path):
    log = tmp_path / "drained"
    drain = {"command": "sh -c 'echo {instance_id} >> %s'" % log}
    run_module(spot_pools, {"pools": pools(launch, ci_a=2, ci_b=2)})
    api_calls.clear()
    shrunk = run_module(spot_pools, {"pools": [dict(p, drain=drain) for p in pools(launch, ci_a=1, ci_b=1)]})
    outcomes = [shrunk["pools"][name]["pool"]["drain_outcomes"] for name in ("ci-a", "ci-b")]
    assert [[o["status"] for o in pool] for pool in outcomes] == [["drained"], ["drained"]]
    drained = sorted(pool[0]["instance_id"] for pool in outcomes)
    assert sorted(log.read_text().split()) == drained
    assert by_pool(ec2) == {"ci-a": 1, "ci-b": 1}
    assert not set(drained) & set(live(ec2))
    # One drain tag call and one termination call for both pools.
    assert api_calls.count("CreateTags") == 1 and api_calls.count("TerminateInstances") == 1


# --- run_lock.reuse_read_seconds: runs of a burst plan launches from the last read


def test_a_run_soon_after_a_read_launches_from_it_without_reading(ec2, launch, run_module, api_calls):
    lock = {"reuse_read_seconds": 30}
    first = run_module(spot_pools, {"pools": pools(launch, ci_a=2, ci_b=1), "run_lock": lock})
    assert first["pools"]["ci-a"]["reused_read"] is False and by_pool(ec2) == {"ci-a": 2, "ci-b": 1}
    api_calls.clear()
    grown = run_module(spot_pools, {"pools": pools(launch, ci_a=5, ci_b=1), "run_lock": lock})
    assert "DescribeInstances" not in api_calls.names()
    assert grown["pools"]["ci-a"]["reused_read"] is True
    assert len(grown["pools"]["ci-a"]["pool"]["launched"]) == 3 and grown["pools"]["ci-b"]["changed"] is False
    assert by_pool(ec2) == {"ci-a": 5, "ci-b": 1}
    # What the earlier runs launched is in the reused read: a third run launches nothing more.
    api_calls.clear()
    again = run_module(spot_pools, {"pools": pools(launch, ci_a=5, ci_b=1), "run_lock": lock})
    assert again["changed"] is False and api_calls.names() == []
    assert by_pool(ec2) == {"ci-a": 5, "ci-b": 1}


def test_a_read_is_stamped_and_aged_on_the_run_lock_s_clock(ec2, launch, run_module, api_calls, monkeypatch):
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock

    # A lock clock far from the wall clock: a read stamped on the wall clock would look 1000 s old.
    real = _run_lock.RunLocks.__init__

    def skewed(self, *args, **kwargs):
        real(self, *args, **dict(kwargs, clock=lambda: time.time() + 1000))

    monkeypatch.setattr(_run_lock.RunLocks, "__init__", skewed)
    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": lock})
    api_calls.clear()
    grown = run_module(spot_pools, {"pools": pools(launch, ci_a=2), "run_lock": lock})
    assert grown["pools"]["ci-a"]["reused_read"] is True and api_calls.names() == ["RunInstances"]


def test_a_plan_that_would_shrink_a_pool_is_made_again_from_a_new_read(ec2, launch, run_module, api_calls):
    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=3), "run_lock": lock})
    api_calls.clear()
    shrunk = run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": lock})
    assert api_calls.count("DescribeInstances") == 1
    assert shrunk["pools"]["ci-a"]["reused_read"] is False
    assert len(shrunk["pools"]["ci-a"]["pool"]["terminated"]) == 2 and by_pool(ec2) == {"ci-a": 1}
    # A run that terminated forgets its read: the next one reads.
    api_calls.clear()
    run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": lock})
    assert api_calls.count("DescribeInstances") == 1


def test_without_reuse_every_run_reads_and_check_mode_never_reuses(ec2, launch, run_module, api_calls):
    run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": {"reuse_read_seconds": 30}})
    api_calls.clear()
    run_module(spot_pools, {"pools": pools(launch, ci_a=1)})
    assert api_calls.count("DescribeInstances") == 1
    api_calls.clear()
    what_if = run_module(
        spot_pools, {"pools": pools(launch, ci_a=4), "run_lock": {"reuse_read_seconds": 30}}, check_mode=True
    )
    assert api_calls.count("DescribeInstances") == 1 and what_if["pools"]["ci-a"]["reused_read"] is False


@pytest.mark.parametrize("bad", [-1, 2.5, "soon"])
def test_a_bad_reuse_read_seconds_is_refused_before_any_call(ec2, launch, run_module, api_calls, bad):
    result = run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": {"reuse_read_seconds": bad}})
    assert result.get("failed") is True and "reuse_read_seconds" in result["msg"]
    assert api_calls.names() == []


def age_kept_read(cache_home, seconds):
    """Make the kept read of every pool ``seconds`` older (the run lock's .view files)."""
    import glob
    import json as _json

    for path in glob.glob(os.path.join(cache_home, "parkingspot", "keeper", "*.view")):
        with open(path) as handle:
            view = _json.load(handle)
        view["read_at"] -= seconds
        with open(path, "w") as handle:
            _json.dump(view, handle)
    return glob.glob(os.path.join(cache_home, "parkingspot", "keeper", "*.view"))


def test_an_old_read_is_used_for_launches_and_read_again_after_them(ec2, launch, run_module, api_calls):
    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=2), "run_lock": lock})
    assert age_kept_read(os.environ["XDG_CACHE_HOME"], 40)  # older than 30 s, younger than 60 s
    api_calls.clear()
    grown = run_module(spot_pools, {"pools": pools(launch, ci_a=4), "run_lock": lock})
    assert grown["pools"]["ci-a"]["reused_read"] is True and len(grown["pools"]["ci-a"]["pool"]["launched"]) == 2
    # The launch first, from the old read; then one read, after the lock was let go, kept for the next runs.
    assert api_calls.names() == ["RunInstances", "DescribeInstances"]
    api_calls.clear()
    again = run_module(spot_pools, {"pools": pools(launch, ci_a=5), "run_lock": lock})
    assert api_calls.names() == ["RunInstances"] and again["pools"]["ci-a"]["reused_read"] is True
    assert by_pool(ec2) == {"ci-a": 5}


def test_a_read_older_than_twice_the_reuse_is_read_before_planning(ec2, launch, run_module, api_calls):
    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=2), "run_lock": lock})
    age_kept_read(os.environ["XDG_CACHE_HOME"], 61)
    api_calls.clear()
    grown = run_module(spot_pools, {"pools": pools(launch, ci_a=3), "run_lock": lock})
    assert api_calls.names() == ["DescribeInstances", "RunInstances"]
    assert grown["pools"]["ci-a"]["reused_read"] is False and by_pool(ec2) == {"ci-a": 3}


def test_while_another_run_reads_the_pool_again_the_old_read_serves_without_a_second_read(
    ec2, launch, run_module, api_calls
):
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock

    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=2), "run_lock": lock})
    age_kept_read(os.environ["XDG_CACHE_HOME"], 40)
    other = _run_lock.from_module(FakeModule(lock))
    guard = other.begin_refresh("ci-a")  # another run is reading ci-a again right now
    assert guard is not None
    try:
        api_calls.clear()
        grown = run_module(spot_pools, {"pools": pools(launch, ci_a=3), "run_lock": lock})
    finally:
        other.end_refresh(guard)
    assert api_calls.names() == ["RunInstances"] and grown["pools"]["ci-a"]["reused_read"] is True
    assert by_pool(ec2) == {"ci-a": 3}


class FakeModule:
    """What _run_lock.from_module reads of a module: the run lock of spot_pools' default connection."""

    def __init__(self, run_lock):
        self.params = {"run_lock": run_lock, "region": "us-east-1", "endpoint_url": None, "profile": None}
        self.check_mode = False

    def warn(self, text):
        raise AssertionError(text)


def test_a_failed_renewing_read_never_fails_the_run_that_launched(ec2, launch, run_module, api_calls, monkeypatch):
    import botocore.client
    from botocore.exceptions import ClientError

    lock = {"reuse_read_seconds": 30}
    run_module(spot_pools, {"pools": pools(launch, ci_a=1), "run_lock": lock})
    age_kept_read(os.environ["XDG_CACHE_HOME"], 40)
    real = botocore.client.BaseClient._make_api_call

    def no_reads(self, operation_name, api_params):
        if operation_name == "DescribeInstances":
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, operation_name)
        return real(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", no_reads)
    grown = run_module(spot_pools, {"pools": pools(launch, ci_a=2), "run_lock": lock})
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", real)
    assert grown["failed"] == {} and len(grown["pools"]["ci-a"]["pool"]["launched"]) == 1
    assert by_pool(ec2) == {"ci-a": 2}
