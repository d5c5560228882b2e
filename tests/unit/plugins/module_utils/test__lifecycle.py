# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for launched capacity on a fake clock, and cleaning up when it does not come (moto)."""

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_returns_the_first_truthy_answer():
    clock = Clock()
    answers = iter([None, [], ["ready"]])
    assert _lifecycle.wait_for(lambda: next(answers), 10, interval=2, clock=clock, sleep=clock.sleep) == ["ready"]
    assert clock.sleeps == [2, 2]


def test_wait_for_gives_up_before_passing_the_timeout():
    clock = Clock()
    assert _lifecycle.wait_for(lambda: None, 5, interval=2, clock=clock, sleep=clock.sleep) is None
    assert clock.sleeps == [2, 2] and clock.now <= 5


def test_newest_first_breaks_ties_by_id():
    instances = [
        {"instance_id": "i-a", "launch_time": "2026-11-23T08:00:00+00:00"},
        {"instance_id": "i-c", "launch_time": "2026-11-23T09:00:00+00:00"},
        {"instance_id": "i-b", "launch_time": "2026-11-23T09:00:00+00:00"},
    ]
    assert [i["instance_id"] for i in _lifecycle.newest_first(instances)] == ["i-c", "i-b", "i-a"]


def test_wait_running_and_terminated(ec2, image_id):
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2)["Instances"]]
    running = _lifecycle.wait_running(ec2, ids, 5, interval=0.01)
    assert sorted(i["instance_id"] for i in running) == sorted(ids)
    assert _lifecycle.wait_running(ec2, [], 5) == []
    ec2.terminate_instances(InstanceIds=ids)
    assert _lifecycle.wait_terminated(ec2, ids, 5, interval=0.01) is True


def test_wait_fulfilled_returns_active_requests(ec2, image_id):
    requests = ec2.request_spot_instances(
        InstanceCount=2, LaunchSpecification={"ImageId": image_id, "InstanceType": "t3.micro"}
    )["SpotInstanceRequests"]
    ids = [r["SpotInstanceRequestId"] for r in requests]
    done = _lifecycle.wait_fulfilled(ec2, ids, 5, interval=0.01)
    assert sorted(r["spot_instance_request_id"] for r in done) == sorted(ids)
    assert all(r["instance_id"] for r in done)


def test_clean_up_and_fail_leaves_nothing_behind_and_says_so(ec2, image_id):
    (request,) = ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": image_id, "InstanceType": "t3.micro"}
    )["SpotInstanceRequests"]
    rid = request["SpotInstanceRequestId"]
    iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    with pytest.raises(_aws.ParkingSpotError) as raised:
        _lifecycle.clean_up_and_fail(ec2, "wait_timeout: 1 of 2 instances running", [rid], [iid])
    assert raised.value.message == (
        f"wait_timeout: 1 of 2 instances running; cleaned up: cancelled spot requests {rid}; terminated instances {iid}"
    )
    (instance,) = _aws.describe_instances_by_ids(ec2, [iid])
    assert instance["state"] in ("shutting-down", "terminated")
    # moto drops cancelled requests from describe (AWS keeps them as cancelled).
    assert [r for r in _aws.describe_spot_requests(ec2, request_ids=[rid]) if r["state"] != "cancelled"] == []


def test_clean_up_with_nothing_to_clean_still_fails():
    with pytest.raises(_aws.ParkingSpotError, match=r"^nothing came; cleaned up: nothing to clean up$"):
        _lifecycle.clean_up_and_fail(None, "nothing came", [], [])
