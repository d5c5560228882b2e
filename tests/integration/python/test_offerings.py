# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offerings, the on-demand lane and rebalance replacement against the local EC2 API.

Real ansible-playbook runs of spot_pool through the counting proxy of tools/ec2_proxy.py
(MOTO_URL), which refuses spot launches on chosen offerings as AWS does when one
instance type in one zone runs out (moto never refuses). Interruptions are made here as
the cloud and the watcher would leave them: the instance terminated, tagged
``parkingspot:interrupted=<notice time>``.
"""

import datetime
import json
import os
import subprocess
import urllib.request

import boto3
import pytest

PROXY = os.environ.get("MOTO_URL")
DIRECT = os.environ.get("MOTO_DIRECT_URL")
pytestmark = pytest.mark.skipif(not (PROXY and DIRECT), reason="needs the local EC2 API (run through make integration)")

TYPES = ["m6i.large", "m7i.large"]
WRITES = ("RunInstances", "CreateFleet", "TerminateInstances", "CreateTags")

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - parkingspot.ec2.spot_pool:
        region: us-east-1
        endpoint_url: "{url}"
        name: offers
        desired: {desired}
        on_demand_base: {base}
        rebalance: {rebalance}
        on_demand_fallback: {{enabled: {fallback}, max: 3}}
        launch_template: {{name: offers-runner}}
        instance_types: {types}
        subnet_ids: {subnets}
        now: "{now}"
      register: result
    - ansible.builtin.copy:
        content: "{{{{ result | to_json }}}}"
        dest: "{out}"
"""


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def proxy(path, method="POST"):
    request = urllib.request.Request(PROXY + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode())


@pytest.fixture
def ec2():
    urllib.request.urlopen(urllib.request.Request(DIRECT + "/moto-api/reset", method="POST", data=b""), timeout=30)
    proxy("/_proxy/reset")
    client = boto3.client("ec2", endpoint_url=DIRECT, region_name="us-east-1")
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    client.create_launch_template(LaunchTemplateName="offers-runner", LaunchTemplateData={"ImageId": image})
    yield client
    proxy("/_proxy/spot?available=1")
    proxy("/_proxy/reset")


@pytest.fixture
def subnets(ec2):
    found = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
    return [found[0]["SubnetId"], found[1]["SubnetId"]]


def live(ec2):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:parkingspot:pool", "Values": ["offers"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return {i["InstanceId"]: i for p in pages for r in p["Reservations"] for i in r["Instances"]}


def offering(instance):
    return (instance["InstanceType"], instance["SubnetId"])


def tags(instance):
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def keeper(tmp_path, subnets, now, desired=3, base=0, rebalance="ignore", fallback=True):
    play = tmp_path / "pool.yml"
    out = tmp_path / "result.json"
    play.write_text(
        PLAY.format(
            url=PROXY,
            desired=desired,
            base=base,
            rebalance=rebalance,
            fallback=str(fallback).lower(),
            types=json.dumps(TYPES),
            subnets=json.dumps(subnets),
            now=iso(now),
            out=out,
        )
    )
    done = subprocess.run(
        ["ansible-playbook", str(play)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=240
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    return json.loads(out.read_text())


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
