# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The root volume service on moto: identity by Name, an interrupted migration recognised, the
single-writer guard, check mode recording actions without a write call, and ``reconcile`` as the
module calls it (the module tests in test_root_volume.py drive every state through ``main()``)."""

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


# --- reconcile: one run, called as the module calls it ---------------------------


class FakeModule:
    def __init__(self, check_mode):
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


def params(**given):
    """The module's options with their defaults, as ``validate`` hands them on."""
    defaults = dict(
        name="root",
        state="present",
        snapshot_id=None,
        image_id=None,
        size=None,
        volume_type="gp3",
        encrypted=False,
        kms_key_id=None,
        zone=None,
        instance_id=None,
        device_name="/dev/sdf",
        zone_mismatch="fail",
        delete_superseded=False,
        force_detach=False,
        wait=True,
        wait_timeout=5,
        tags=None,
        purge_tags=True,
    )
    return dict(defaults, **given)


def test_reconcile_in_check_mode_predicts_a_create_without_writing(ec2, api_calls):
    module = FakeModule(check_mode=True)
    result = _root_volume.reconcile(module, ec2, params(size=4, zone="us-east-1a"))
    assert result["changed"] is True
    assert result["actions"] == ["create volume root in us-east-1a"]
    assert result["volume"]["volume_id"] is None and result["volume"]["zone"] == "us-east-1a"
    assert result["superseded"] == []
    assert result["diff"]["before"] == {"exists": False}
    assert api_calls.writes() == []


def test_reconcile_reports_its_warnings_through_the_module(ec2, api_calls):
    vid = volume(ec2, "root")
    api_calls.clear()
    module = FakeModule(check_mode=False)
    result = _root_volume.reconcile(module, ec2, params(size=4))
    assert result["changed"] is False and result["actions"] == []
    assert result["volume"]["volume_id"] == vid
    assert module.warnings == ["volume %s is 8 GiB, not 4: existing volumes are not resized" % vid]
    assert api_calls.writes() == []
