# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The root volume service on moto: identity by Name, an interrupted migration recognised, the
single-writer guard, and check mode recording actions without a write call."""

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _root_volume
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError


def volume(ec2, name, zone="us-east-1a", **tags):
    tag_list = [{"Key": "Name", "Value": name}] + [{"Key": k, "Value": v} for k, v in tags.items()]
    return ec2.create_volume(
        AvailabilityZone=zone, Size=8, TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list}]
    )["VolumeId"]


def test_read_finds_the_one_volume_and_its_superseded_copies(ec2):
    old = volume(ec2, "root", **{"parkingspot:superseded-by": "vol-new"})
    current = volume(ec2, "root")
    volume(ec2, "other")
    found = _root_volume.read(ec2, "root")
    assert found.current["volume_id"] == current and found.target is None
    assert [v["volume_id"] for v in found.superseded] == [old]
    assert found.current["nvme_serial"] == current.replace("-", "")


def test_read_recognises_an_interrupted_migration(ec2):
    source = volume(ec2, "root")
    copy = volume(ec2, "root", zone="us-east-1b", **{"parkingspot:migrated-from": source})
    found = _root_volume.read(ec2, "root")
    assert (found.current["volume_id"], found.target["volume_id"]) == (source, copy)


def test_two_unrelated_volumes_with_one_name_are_refused(ec2):
    first, second = volume(ec2, "root"), volume(ec2, "root", zone="us-east-1b")
    with pytest.raises(ParkingSpotError) as raised:
        _root_volume.read(ec2, "root")
    assert raised.value.message.startswith("name root is not unique: 2 volumes carry Name=root: ")
    assert first in raised.value.message and second in raised.value.message


def test_nothing_under_a_name(ec2):
    found = _root_volume.read(ec2, "none")
    assert found.current is None and found.target is None and found.superseded == []


def test_check_mode_records_without_calling(ec2):
    executor = _root_volume.Executor(ec2, check_mode=True, wait_timeout=5)
    called = []
    assert executor.act("delete vol-1", lambda: called.append(1)) is None
    assert executor.actions == ["delete vol-1"] and called == []


def test_release_refuses_a_live_holder_before_any_write(ec2, image_id, api_calls):
    iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": "us-east-1a"})[
        "Instances"
    ][0]["InstanceId"]
    vid = volume(ec2, "root")
    ec2.attach_volume(Device="/dev/sdf", InstanceId=iid, VolumeId=vid)
    current = _root_volume.read(ec2, "root").current
    api_calls.clear()
    executor = _root_volume.Executor(ec2, check_mode=False, wait_timeout=5)
    with pytest.raises(ParkingSpotError, match="refusing to take it from a live instance"):
        executor.release(current, force_detach=True)
    assert api_calls.writes() == [] and executor.actions == []


def test_release_from_a_stopped_holder_needs_force_detach(ec2, image_id):
    iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": "us-east-1a"})[
        "Instances"
    ][0]["InstanceId"]
    vid = volume(ec2, "root")
    ec2.attach_volume(Device="/dev/sdf", InstanceId=iid, VolumeId=vid)
    ec2.stop_instances(InstanceIds=[iid])
    current = _root_volume.read(ec2, "root").current
    executor = _root_volume.Executor(ec2, check_mode=False, wait_timeout=5, sleep=lambda s: None)
    with pytest.raises(ParkingSpotError, match="set force_detach: true"):
        executor.release(current, force_detach=False)
    released = executor.release(current, force_detach=True)
    assert released["attachment"] is None and released["state"] == "available"
    assert executor.actions == ["detach %s from %s" % (vid, iid)]
