# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offerings, the on-demand lane and rebalance replacement against the local EC2 API.

Real ansible-playbook runs of spot_pool through the counting proxy of tools/ec2_proxy.py
(MOTO_URL), which refuses spot launches on chosen offerings as AWS does when one
instance type in one zone runs out (moto never refuses). Interruptions are made here as
the cloud and the watcher would leave them: the instance terminated, tagged
``parkingspot:interrupted=<notice time>``.
"""

import datetime

import pytest
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import proxy
from local_ec2 import run_play
from local_ec2 import tags

pytestmark = needs_local_ec2

TYPES = ["m6i.large", "m7i.large"]
WRITES = ("RunInstances", "CreateFleet", "TerminateInstances", "CreateTags")


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ec2():
    yield fresh_ec2("offers-runner")
    proxy("/_proxy/reset")


@pytest.fixture
def subnets(ec2):
    found = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
    return [found[0]["SubnetId"], found[1]["SubnetId"]]


def live(ec2):
    return instances(ec2, "offers")


def offering(instance):
    return (instance["InstanceType"], instance["SubnetId"])


def keeper(tmp_path, subnets, now, desired=3, base=0, rebalance="ignore", fallback=True):
    args = {
        "name": "offers",
        "desired": desired,
        "on_demand_base": base,
        "rebalance": rebalance,
        "on_demand_fallback": {"enabled": fallback, "max": 3},
        "launch_template": {"name": "offers-runner"},
        "instance_types": TYPES,
        "subnet_ids": subnets,
        "now": iso(now),
    }
    return run_play(tmp_path, "pool", "spot_pool", args)


def test_capacity_error_on_one_offering_is_retried_on_the_others_in_the_same_run(ec2, subnets, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    empty = (TYPES[0], subnets[0])
    proxy("/_proxy/offering?instance_type=%s&subnet_id=%s&available=0" % empty)
    result = keeper(tmp_path, subnets, now)
    assert result["changed"] is True
    runners = live(ec2)
    assert len(runners) == 3 and sorted(result["pool"]["launched"]) == sorted(runners)
    # All of them on spot, none on the empty offering, no on-demand fallback needed.
    assert all(i.get("InstanceLifecycle") == "spot" for i in runners.values())
    assert empty not in {offering(i) for i in runners.values()}
    assert result["pool"]["fallback"]["on_demand_launched"] == 0
    refused = result["pool"]["offerings"]["capacity_errors"]
    assert [(r["instance_type"], r["subnet_id"]) for r in refused] == [empty]
    assert proxy("/_proxy/refused", "GET") == [list(empty)]
    assert proxy("/_proxy/counts", "GET")["CreateFleet"] == 2

    # A run that changes nothing still costs one DescribeInstances and no write.
    proxy("/_proxy/reset")
    again = keeper(tmp_path, subnets, now)
    assert again["changed"] is False
    counts = proxy("/_proxy/counts", "GET")
    assert counts.get("DescribeInstances") == 1, counts
    assert not any(counts.get(action) for action in WRITES), counts


def test_an_interrupted_offering_is_left_out_of_the_replacement_launch(ec2, subnets, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    keeper(tmp_path, subnets, now, desired=2)
    runners = live(ec2)
    victim_id, victim = sorted(runners.items())[0]
    hit = offering(victim)
    # The cloud takes the instance back; the watcher tagged it with the notice time.
    ec2.create_tags(Resources=[victim_id], Tags=[{"Key": "parkingspot:interrupted", "Value": iso(now)}])
    ec2.terminate_instances(InstanceIds=[victim_id])
    later = now + datetime.timedelta(minutes=5)
    result = keeper(tmp_path, subnets, later, desired=2)
    [new_id] = result["pool"]["launched"]
    assert offering(live(ec2)[new_id]) != hit
    excluded = {(o["instance_type"], o["subnet_id"]) for o in result["pool"]["offerings"]["excluded"]}
    assert excluded == {hit}


def test_on_demand_base_holds_while_spot_is_refused(ec2, subnets, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    proxy("/_proxy/spot?available=0")
    result = keeper(tmp_path, subnets, now, desired=3, base=1, fallback=False)
    runners = live(ec2)
    assert len(runners) == 1 and result["pool"]["launched"] == list(runners)
    [lane] = runners.values()
    assert lane.get("InstanceLifecycle") != "spot"
    assert tags(lane)["parkingspot:market"] == "on-demand" and tags(lane)["parkingspot:lane"] == "on-demand"

    # Spot comes back: two spot runners join; the lane runner stays.
    proxy("/_proxy/spot?available=1")
    result = keeper(tmp_path, subnets, now + datetime.timedelta(minutes=5), desired=3, base=1, fallback=False)
    runners = live(ec2)
    assert len(runners) == 3 and lane["InstanceId"] in runners and result["pool"]["terminated"] == []
    assert sum(1 for i in runners.values() if i.get("InstanceLifecycle") == "spot") == 2


def test_rebalance_replace_launches_first_then_drains(ec2, subnets, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    keeper(tmp_path, subnets, now, desired=2, rebalance="replace")
    before = live(ec2)
    tagged = sorted(before)[0]
    ec2.create_tags(Resources=[tagged], Tags=[{"Key": "parkingspot:rebalance", "Value": iso(now)}])
    result = keeper(tmp_path, subnets, now + datetime.timedelta(minutes=1), desired=2, rebalance="replace")
    assert len(result["pool"]["launched"]) == 1 and result["pool"]["terminated"] == [tagged]
    after = live(ec2)
    assert tagged not in after and len(after) == 2

    # With ignore, the recommendation is left alone.
    other = sorted(after)[0]
    ec2.create_tags(Resources=[other], Tags=[{"Key": "parkingspot:rebalance", "Value": iso(now)}])
    result = keeper(tmp_path, subnets, now + datetime.timedelta(minutes=2), desired=2)
    assert result["changed"] is False and other in live(ec2)
