# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_pool against moto in-process: the pool in the EC2 API after each run, and the calls made."""

import base64

import pytest

from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool

POOL_TAG = "parkingspot:pool"


def pool_instances(ec2, name, states=("pending", "running")):
    pages = ec2.describe_instances(
        Filters=[
            {"Name": "tag:%s" % POOL_TAG, "Values": [name]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    found = [i for r in pages["Reservations"] for i in r["Instances"]]
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in found}


@pytest.fixture
def pool(image_id):
    return {"name": "ci", "image_id": image_id, "instance_type": "t3.micro", "tags": {"team": "build"}}


def test_create_then_no_change_costs_one_describe(ec2, pool, run_module, api_calls):
    created = run_module(spot_pool, dict(pool, desired=3))
    assert created["changed"] is True
    held = pool_instances(ec2, "ci")
    assert len(held) == 3
    assert {tags["parkingspot:market"] for tags in held.values()} == {"spot"}
    assert api_calls.count("RunInstances") == 1
    assert api_calls.count("CreateTags") == 0

    api_calls.clear()
    again = run_module(spot_pool, dict(pool, desired=3))
    assert again["changed"] is False
    assert api_calls.names() == ["DescribeInstances"]
    assert again["diff"]["before"] == again["diff"]["after"]


def test_check_mode_plans_without_writes(ec2, pool, run_module, api_calls):
    result = run_module(spot_pool, dict(pool, desired=4), check_mode=True)
    assert result["changed"] is True
    assert result["pool"]["would_launch"] == 4
    assert result["plan"]["launch"] == {"spot": 4, "on_demand": 0}
    assert api_calls.writes() == []
    assert pool_instances(ec2, "ci") == {}


def test_interrupted_instances_are_replaced(ec2, pool, run_module):
    run_module(spot_pool, dict(pool, desired=4))
    victims = sorted(pool_instances(ec2, "ci"))[:2]
    ec2.terminate_instances(InstanceIds=victims)  # the cloud takes two back
    result = run_module(spot_pool, dict(pool, desired=4))
    assert result["changed"] is True
    assert len(result["pool"]["launched"]) == 2
    held = pool_instances(ec2, "ci")
    assert len(held) == 4 and not set(victims) & set(held)


def test_schedule_and_now_drive_the_desired_count(ec2, pool, run_module):
    schedule = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00", "desired": 3}]
    args = dict(pool, desired=1, schedule=schedule, timezone="Europe/Berlin")
    monday_morning = run_module(spot_pool, dict(args, now="2026-11-30T09:00:00+01:00"))
    assert monday_morning["pool"]["desired"] == 3
    assert monday_morning["pool"]["window"]["start"] == "08:00"
    assert len(pool_instances(ec2, "ci")) == 3
    evening = run_module(spot_pool, dict(args, now="2026-11-30T19:30:00+01:00"))
    assert evening["pool"]["desired"] == 1
    assert evening["pool"]["window"] is None
    assert len(evening["pool"]["terminated"]) == 2
    assert len(pool_instances(ec2, "ci")) == 1


def test_surplus_is_drained_with_the_command_then_terminated(ec2, pool, run_module, tmp_path):
    run_module(spot_pool, dict(pool, desired=3))
    log = tmp_path / "drained"
    drain = {"command": "sh -c 'echo {instance_id} >> %s'" % log, "timeout": 30}
    result = run_module(spot_pool, dict(pool, desired=1, drain=drain))
    drained = sorted(log.read_text().split())
    assert len(drained) == 2
    assert sorted(result["pool"]["terminated"]) == drained
    terminated = pool_instances(ec2, "ci", states=("shutting-down", "terminated"))
    assert set(drained) <= set(terminated)
    assert all(terminated[i]["parkingspot:state"] == "draining" for i in drained)


def test_capacity_error_falls_back_on_demand_then_back_to_spot(ec2, pool, run_module, capacity_errors):
    args = dict(pool, desired=2, on_demand_fallback={"enabled": True, "max": 2})
    capacity_errors["spot"] = False
    fell_back = run_module(spot_pool, args)
    assert fell_back["changed"] is True
    assert fell_back["pool"]["fallback"]["error"] == "InsufficientInstanceCapacity"
    held = pool_instances(ec2, "ci")
    assert sorted(t["parkingspot:market"] for t in held.values()) == ["on-demand", "on-demand"]
    assert capacity_errors["refused"] == 1  # capacity errors are not retried: the fallback answers them

    capacity_errors["spot"] = True
    spot_back = run_module(spot_pool, args)
    assert spot_back["plan"]["launch"]["spot"] == 2
    held = pool_instances(ec2, "ci")
    markets = sorted(t["parkingspot:market"] for t in held.values())
    # Launch first: the on-demand instances keep serving until the spot replacements run.
    assert markets.count("spot") == 2
    settled = run_module(spot_pool, args)
    assert sorted(settled["pool"]["terminated"]) == sorted(
        i for i, t in held.items() if t["parkingspot:market"] == "on-demand"
    )
    assert sorted(t["parkingspot:market"] for t in pool_instances(ec2, "ci").values()) == ["spot", "spot"]


def test_fallback_respects_its_maximum(ec2, pool, run_module, capacity_errors):
    capacity_errors["spot"] = False
    result = run_module(spot_pool, dict(pool, desired=3, on_demand_fallback={"enabled": True, "max": 1}))
    assert len(pool_instances(ec2, "ci")) == 1
    assert result["pool"]["clipped"]


def test_quota_clips_launches(ec2, pool, run_module):
    result = run_module(spot_pool, dict(pool, desired=5, quota={"max_vcpus": 4}))  # t3.micro has 2 vCPUs
    assert len(pool_instances(ec2, "ci")) == 2
    assert result["pool"]["clipped"][0]["quota"] == "quota.max_vcpus"


def test_block_market_tags_leases_and_installs_the_backstop(ec2, pool, run_module, api_calls):
    args = dict(pool, desired=2, market="block", duration_minutes=120, now="2026-11-30T09:00:00Z")
    result = run_module(spot_pool, args)
    held = pool_instances(ec2, "ci")
    assert {t["parkingspot:expires-at"] for t in held.values()} == {"2026-11-30T11:00:00Z"}
    (params,) = [p for name, p in api_calls.calls if name == "RunInstances"]
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"
    user_data = base64.b64decode(params["UserData"]).decode()  # botocore encodes it in place
    assert "shutdown -h" in user_data and "2026-11-30T11:00:00Z" in user_data
    assert [b["status"] for b in result["pool"]["blocks"]] == []
    renewing = run_module(spot_pool, dict(args, now="2026-11-30T10:50:00Z"))
    assert sorted(b["status"] for b in renewing["pool"]["blocks"]) == ["expiring", "expiring"]
    assert len(renewing["pool"]["launched"]) == 2
    assert renewing["pool"]["terminated"] == []  # the old leases keep serving until they end
    assert len(pool_instances(ec2, "ci")) == 4
    expired = run_module(spot_pool, dict(args, now="2026-11-30T11:00:30Z"))
    assert sorted(expired["pool"]["terminated"]) == sorted(held)
    assert len(pool_instances(ec2, "ci")) == 2


def test_absent_twice(ec2, pool, run_module, api_calls):
    run_module(spot_pool, dict(pool, desired=2))
    gone = run_module(spot_pool, dict(name="ci", state="absent"))
    assert gone["changed"] is True
    assert pool_instances(ec2, "ci") == {}
    api_calls.clear()
    assert run_module(spot_pool, dict(name="ci", state="absent"))["changed"] is False
    assert api_calls.writes() == []


@pytest.mark.parametrize(
    "override, message",
    [
        ({"market": "blocks"}, "value of market must be one of: spot, block, got: blocks"),
        ({"on_demand_fallback": {"enabled": "maybe"}}, "unable to convert to bool"),
        ({"rebalance": "maybe"}, "value of rebalance must be one of: ignore, replace, got: maybe"),
        ({"schedule": [{"days": ["mondy"], "start": "08:00", "end": "18:00", "desired": 2}]}, "mondy"),
        ({"schedule": [{"days": ["mon"], "start": "08:00", "end": "08:00", "desired": 2}]}, "schedule[0]"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"market": "block", "duration_minutes": None}, "duration_minutes"),
        ({"market": "block", "duration_minutes": 30, "renew_before_minutes": 40}, "renew_before_minutes"),
        ({"now": "monday"}, "now"),
        ({"image_id": None}, "one of launch_template or image_id is required"),
        ({"api": "request_spot_instances"}, "api: request_spot_instances cannot keep a pool"),
    ],
)
def test_bad_input_fails_before_any_write(ec2, pool, run_module, api_calls, override, message):
    args = {k: v for k, v in dict(dict(pool, desired=2), **override).items() if v is not None}
    result = run_module(spot_pool, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert api_calls.writes() == []


@pytest.mark.parametrize(
    "override, option",
    [
        ({"schedule": [{"days": ["mon"], "start": "08:00", "end": "08:00", "desired": 2}]}, "schedule[0]"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"now": "monday"}, "now"),
        ({"on_demand_base": -1}, "on_demand_base"),
        ({"on_demand_fallback": {"enabled": True, "max": -1}}, "on_demand_fallback.max"),
        ({"quota": {"max_vcpus": -3}}, "quota.max_vcpus"),
        ({"demand": {"queued": 3}}, "scaling.max"),
        ({"drain": {"command": "echo 'open"}}, "drain.command"),
    ],
)
def test_bad_input_failure_carries_the_option(ec2, pool, run_module, api_calls, override, option):
    result = run_module(spot_pool, dict(pool, desired=2, **override))
    assert result["failed"] is True
    assert result["option"] == option and result["msg"].startswith(option + ": ")
    assert api_calls.writes() == []


@pytest.mark.parametrize(
    "desired, message",
    [
        (-1, "desired: must be from 0 to 10000, got -1"),
        (True, "desired: must be a whole number from 0 to 10000, got True"),
    ],
)
def test_bad_desired_is_refused_at_the_boundary(ec2, pool, run_module, api_calls, desired, message):
    # The only check of desired: the schedule and the planner take the count as it was checked here.
    result = run_module(spot_pool, dict(pool, desired=desired))
    assert result["failed"] is True
    assert result["option"] == "desired" and result["msg"] == message
    assert api_calls.names() == []


def test_block_pool_fallback_instances_are_leases_too(ec2, pool, run_module, capacity_errors, api_calls):
    args = dict(pool, desired=2, market="block", duration_minutes=120, on_demand_fallback={"enabled": True, "max": 2})
    capacity_errors["spot"] = False
    run_module(spot_pool, dict(args, now="2026-11-30T09:00:00Z"))
    held = pool_instances(ec2, "ci")
    assert sorted(t["parkingspot:market"] for t in held.values()) == ["on-demand", "on-demand"]
    assert {t["parkingspot:expires-at"] for t in held.values()} == {"2026-11-30T11:00:00Z"}
    (params,) = [p for name, p in api_calls.calls if name == "RunInstances" and "InstanceMarketOptions" not in p]
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert "shutdown -h" in base64.b64decode(params["UserData"]).decode()
    # The next run keeps them: a lease in a block pool is not drained for lack of a tag.
    steady = run_module(spot_pool, dict(args, now="2026-11-30T09:05:00Z"))
    assert steady["pool"]["terminated"] == [] and steady["plan"]["drain"] == []


def test_asg_fallback_raises_then_lowers_the_group(ec2, pool, run_module, capacity_errors, fallback_group):
    desired = fallback_group
    args = dict(pool, desired=2, on_demand_fallback={"enabled": True, "max": 3, "asg_name": "ci-on-demand"})
    capacity_errors["spot"] = False
    short = run_module(spot_pool, args)
    assert short["pool"]["fallback"]["error"] == "InsufficientInstanceCapacity"
    assert desired() == 2
    assert pool_instances(ec2, "ci") == {}  # the ASG's instances are not the pool's

    capacity_errors["spot"] = True
    run_module(spot_pool, args)  # spot replacements launch; the ASG keeps serving until they run
    run_module(spot_pool, args)
    assert desired() == 0
    assert sorted(t["parkingspot:market"] for t in pool_instances(ec2, "ci").values()) == ["spot", "spot"]


def test_asg_fallback_names_a_missing_group(ec2, pool, run_module, api_calls):
    args = dict(pool, desired=1, on_demand_fallback={"enabled": True, "max": 1, "asg_name": "nope"})
    result = run_module(spot_pool, args)
    assert result["failed"] is True and "on_demand_fallback.asg_name: no auto scaling group named nope" in result["msg"]
    assert result["option"] == "on_demand_fallback.asg_name"
    assert api_calls.writes() == []


# ------------------------------------------------------------------ queue-driven pools


def test_demand_sizes_the_pool_and_scale_in_spares_busy_runners(ec2, pool, run_module):
    args = dict(pool, desired=1, scaling={"max": 6, "idle_minutes": 10, "min_running_minutes": 5})
    first = run_module(spot_pool, dict(args, demand={"queued": 4, "busy": 0}))
    assert first["pool"]["desired"] == 4
    assert first["pool"]["demand"] == {
        "queued": 4,
        "busy": 0,
        "retries": 0,
        "floor": 1,
        "max": 6,
        "per_job": 1,
        "target": 4,
    }
    held = sorted(pool_instances(ec2, "ci"))
    assert len(held) == 4
    ec2.create_tags(Resources=held[:2], Tags=[{"Key": "parkingspot:busy", "Value": "true"}])
    # The queue is empty and the count says nothing runs, but two runners are tagged busy: only the
    # two idle ones go, although the floor is 1.
    later = "2099-01-01T00:00:00Z"
    shrunk = run_module(spot_pool, dict(args, demand={"queued": 0, "busy": 0}, now=later))
    assert shrunk["pool"]["desired"] == 1
    assert sorted(shrunk["pool"]["terminated"]) == held[2:]
    assert sorted(pool_instances(ec2, "ci")) == held[:2]


def test_retries_alone_keep_the_schedule_size_and_need_no_scaling(ec2, pool, run_module):
    # A schedule pool that only wants the retry lane: no queued, no busy, no scaling.max.
    result = run_module(spot_pool, dict(pool, desired=2, demand={"retries": 1}))
    assert result.get("failed") is not True, result.get("msg")
    assert result["pool"]["desired"] == 2
    assert result["pool"]["demand"]["max"] is None and result["pool"]["demand"]["target"] == 2
    held = pool_instances(ec2, "ci")
    assert sorted(tags["parkingspot:market"] for tags in held.values()) == ["on-demand", "spot", "spot"]
    lane = [tags for tags in held.values() if tags.get("parkingspot:lane") == "on-demand"]
    assert len(lane) == 1 and lane[0]["parkingspot:market"] == "on-demand"


def test_demand_without_scaling_max_fails_before_any_write(ec2, pool, run_module, api_calls):
    result = run_module(spot_pool, dict(pool, desired=1, demand={"queued": 3}))
    assert result["failed"] is True
    assert "scaling.max" in result["msg"]
    assert api_calls.writes() == []
    assert pool_instances(ec2, "ci") == {}
