# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""root_volume against moto in-process: volumes, snapshots and attachments in the EC2 API, and the calls made.

moto gaps worked around here: moto accepts attaching a volume to an instance in another zone (AWS refuses), so
the zone tests assert the module refused before any write; moto completes snapshots and volumes at once, so the
"never available" case runs against botocore's Stubber (see test_root_volume_stubbed.py).
"""

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _root_volume
from ansible_collections.parkingspot.ec2.plugins.modules import root_volume

NAME = "dev-root"
SUPERSEDED = "parkingspot:superseded-by"
MIGRATED_FROM = "parkingspot:migrated-from"


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(_root_volume, "POLL_INTERVAL", 0.01)


def volumes_named(ec2, name=NAME):
    found = ec2.describe_volumes(Filters=[{"Name": "tag:Name", "Values": [name]}])["Volumes"]
    return sorted(found, key=lambda v: v["VolumeId"])


def tags_of(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def launch(ec2, image_id, zone="us-east-1a"):
    reservation = ec2.run_instances(
        ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone}
    )
    return reservation["Instances"][0]["InstanceId"]


def attached_to(ec2, volume_id):
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [(a["InstanceId"], a["Device"]) for a in volume["Attachments"] if a["State"] == "attached"]


def migration_snapshots(ec2):
    snapshots = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return [s for s in snapshots if "parkingspot:migration-source" in tags_of(s)]


# --- create, idempotency, check mode -----------------------------------------


def test_create_from_image_root_snapshot_then_rerun_changes_nothing(ec2, image_id, run_module, api_calls):
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    root_snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    args = {"name": NAME, "image_id": image_id, "zone": "us-east-1a", "size": 20, "tags": {"team": "build"}}

    first = run_module(root_volume, args)
    assert first["changed"] is True
    volumes = volumes_named(ec2)
    assert len(volumes) == 1
    created = volumes[0]
    assert created["SnapshotId"] == root_snapshot
    assert created["AvailabilityZone"] == "us-east-1a"
    assert created["Size"] == 20
    assert created["VolumeType"] == "gp3"
    assert tags_of(created) == {"Name": NAME, "team": "build"}
    assert first["volume"]["volume_id"] == created["VolumeId"]
    assert first["volume"]["nvme_serial"] == created["VolumeId"].replace("-", "")
    assert first["volume"]["attachment"] is None
    assert api_calls.writes() == ["CreateVolume"]
    assert first["diff"]["before"] == {"exists": False}

    api_calls.clear()
    second = run_module(root_volume, args)
    assert second["changed"] is False
    assert api_calls.writes() == []
    assert second["volume"]["volume_id"] == created["VolumeId"]
    assert second["diff"]["before"] == second["diff"]["after"]
    assert len(volumes_named(ec2)) == 1


def test_create_from_snapshot_id_and_empty_volume(ec2, run_module):
    base = ec2.create_volume(AvailabilityZone="us-east-1a", Size=5)
    snapshot = ec2.create_snapshot(VolumeId=base["VolumeId"])["SnapshotId"]
    from_snapshot = run_module(root_volume, {"name": "a", "snapshot_id": snapshot, "zone": "us-east-1b"})
    assert from_snapshot["changed"] is True
    assert volumes_named(ec2, "a")[0]["SnapshotId"] == snapshot
    assert volumes_named(ec2, "a")[0]["AvailabilityZone"] == "us-east-1b"

    empty = run_module(root_volume, {"name": "b", "size": 8, "zone": "us-east-1a", "volume_type": "gp2"})
    assert empty["volume"]["size"] == 8
    assert volumes_named(ec2, "b")[0]["VolumeType"] == "gp2"


def test_check_mode_predicts_create_without_writes(ec2, image_id, run_module, api_calls):
    result = run_module(root_volume, {"name": NAME, "image_id": image_id, "zone": "us-east-1a"}, check_mode=True)
    assert result["changed"] is True
    assert result["actions"] == ["create volume dev-root in us-east-1a"]
    assert result["volume"]["zone"] == "us-east-1a"
    assert result["volume"]["volume_id"] is None
    assert result["diff"]["after"]["exists"] is True
    assert api_calls.writes() == []
    assert volumes_named(ec2) == []


def test_without_purge_missing_tags_are_added_never_removed(ec2, run_module):
    run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a", "tags": {"a": "1"}})
    result = run_module(root_volume, {"name": NAME, "tags": {"b": "2"}, "purge_tags": False})
    assert result["changed"] is True
    assert tags_of(volumes_named(ec2)[0]) == {"Name": NAME, "a": "1", "b": "2"}


def test_purge_tags_removes_user_tags_but_never_reserved_ones(ec2, run_module):
    run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a", "tags": {"a": "1", "n": 2}})
    volume_id = volumes_named(ec2)[0]["VolumeId"]
    ec2.create_tags(Resources=[volume_id], Tags=[{"Key": "parkingspot:migrated-from", "Value": "vol-0"}])
    again = run_module(root_volume, {"name": NAME, "tags": {"a": "1", "n": 2}})
    assert again["changed"] is False  # 2 and "2" are the same tag value
    result = run_module(root_volume, {"name": NAME, "tags": {"b": True}})
    assert result["changed"] is True
    assert tags_of(volumes_named(ec2)[0]) == {"Name": NAME, "b": "True", "parkingspot:migrated-from": "vol-0"}


# --- bad input: a clear message naming the option, no write ------------------


@pytest.mark.parametrize(
    "args, option, message",
    [
        ({"size": 0, "zone": "us-east-1a"}, "size", "size: must be from 1 to 65536 GiB, got 0"),
        ({"size": 4, "zone": "us-east-1a", "kms_key_id": "alias/x"}, "kms_key_id", "kms_key_id: requires encrypted"),
        ({"size": 4, "zone": "us-east-1a", "device_name": "sdf"}, "device_name", "device_name: must be a device path"),
        ({"state": "attached", "size": 4}, None, "state is attached but all of the following are missing: instance_id"),
        ({"state": "attached", "size": 4, "instance_id": ""}, "instance_id", "instance_id: must not be empty"),
        ({"size": 4}, "zone", "zone: (or instance_id) is required"),
        ({"zone": "us-east-1a"}, "size", "size: is required"),
        (
            {"zone": "us-east-1a", "snapshot_id": "snap-0000000000000000f"},
            "snapshot_id",
            "snapshot_id: snap-0000000000000000f",
        ),
        ({"zone": "us-east-1a", "image_id": "ami-00000000"}, None, "image_id ami-00000000"),
        (
            {"zone": "us-east-1a", "size": 4, "wait_timeout": 0},
            "wait_timeout",
            "wait_timeout: must be from 1 to 86400 seconds",
        ),
        (
            {"zone": "us-east-1a", "size": 4, "instance_id": "i-0000000000000000f"},
            "instance_id",
            "instance_id: i-0000000000000000f was not found",
        ),
    ],
)
def test_bad_input_fails_naming_the_option_without_writes(ec2, run_module, api_calls, args, option, message):
    result = run_module(root_volume, dict(args, name=NAME))
    assert result.get("failed") is True
    assert message in result["msg"]
    if option:
        assert result.get("option") == option
    assert api_calls.writes() == []
    assert volumes_named(ec2) == []


def test_image_size_smaller_than_snapshot_is_refused(ec2, image_id, run_module, api_calls):
    result = run_module(root_volume, {"name": NAME, "image_id": image_id, "zone": "us-east-1a", "size": 1})
    assert result["failed"] is True
    assert "size: 1 is smaller than" in result["msg"]
    assert result["option"] == "size"
    assert api_calls.writes() == []


def test_snapshot_and_image_are_mutually_exclusive(ec2, image_id, run_module):
    result = run_module(root_volume, {"name": NAME, "image_id": image_id, "snapshot_id": "snap-1", "zone": "x"})
    assert result["failed"] is True
    assert "snapshot_id" in result["msg"] and "image_id" in result["msg"]


def test_zone_option_disagreeing_with_instance_is_refused(ec2, image_id, run_module, api_calls):
    instance = launch(ec2, image_id, "us-east-1a")
    args = {"name": NAME, "size": 4, "zone": "us-east-1b", "instance_id": instance, "state": "attached"}
    api_calls.clear()
    result = run_module(root_volume, args)
    assert result["failed"] is True
    assert "zone us-east-1b differs from the zone us-east-1a" in result["msg"]
    assert api_calls.writes() == []


# --- uniqueness -------------------------------------------------------------


def test_duplicate_names_fail_listing_both_ids(ec2, run_module, api_calls):
    spec = [{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": NAME}]}]
    one = ec2.create_volume(AvailabilityZone="us-east-1a", Size=4, TagSpecifications=spec)["VolumeId"]
    two = ec2.create_volume(AvailabilityZone="us-east-1b", Size=4, TagSpecifications=spec)["VolumeId"]
    api_calls.clear()
    result = run_module(root_volume, {"name": NAME, "state": "absent"})
    assert result["failed"] is True
    assert "not unique" in result["msg"]
    assert one in result["msg"] and two in result["msg"]
    assert api_calls.writes() == []
    assert len(volumes_named(ec2)) == 2


# --- attach / detach and the single-writer guard -------------------------------


def test_attach_twice_and_check_mode(ec2, image_id, run_module, api_calls):
    instance = launch(ec2, image_id, "us-east-1a")
    args = {"name": NAME, "size": 4, "state": "attached", "instance_id": instance}
    api_calls.clear()

    check = run_module(root_volume, args, check_mode=True)
    assert check["changed"] is True
    assert check["volume"]["attachment"]["instance_id"] == instance
    assert api_calls.writes() == []

    first = run_module(root_volume, args)
    assert first["changed"] is True
    volume_id = first["volume"]["volume_id"]
    assert attached_to(ec2, volume_id) == [(instance, "/dev/sdf")]
    assert first["volume"]["zone"] == "us-east-1a"
    assert first["volume"]["attachment"] == {"instance_id": instance, "device": "/dev/sdf", "state": "attached"}

    api_calls.clear()
    second = run_module(root_volume, args)
    assert second["changed"] is False
    assert api_calls.writes() == []


def test_never_steals_from_a_running_instance(ec2, image_id, run_module, api_calls):
    holder = launch(ec2, image_id)
    other = launch(ec2, image_id)
    volume_id = run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})[
        "volume"
    ]["volume_id"]
    api_calls.clear()
    for extra in ({}, {"force_detach": True}):
        result = run_module(root_volume, dict(name=NAME, state="attached", instance_id=other, **extra))
        assert result["failed"] is True
        assert "which is running" in result["msg"] and holder in result["msg"]
    detach = run_module(root_volume, {"name": NAME, "state": "detached", "force_detach": True})
    assert detach["failed"] is True
    absent = run_module(root_volume, {"name": NAME, "state": "absent", "force_detach": True})
    assert absent["failed"] is True
    assert api_calls.writes() == []
    assert attached_to(ec2, volume_id) == [(holder, "/dev/sdf")]


def test_stopped_holder_needs_force_detach_then_volume_moves(ec2, image_id, run_module, api_calls):
    holder = launch(ec2, image_id)
    other = launch(ec2, image_id)
    volume_id = run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})[
        "volume"
    ]["volume_id"]
    ec2.stop_instances(InstanceIds=[holder])
    api_calls.clear()

    refused = run_module(root_volume, {"name": NAME, "state": "attached", "instance_id": other})
    assert refused["failed"] is True
    assert "force_detach: true" in refused["msg"]
    assert api_calls.writes() == []
    assert attached_to(ec2, volume_id) == [(holder, "/dev/sdf")]

    moved = run_module(root_volume, {"name": NAME, "state": "attached", "instance_id": other, "force_detach": True})
    assert moved["changed"] is True
    assert api_calls.writes() == ["DetachVolume", "AttachVolume"]
    assert attached_to(ec2, volume_id) == [(other, "/dev/sdf")]


def test_terminated_holder_is_released_with_force_detach(ec2, image_id, run_module, monkeypatch):
    holder = launch(ec2, image_id)
    other = launch(ec2, image_id)
    run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})
    # moto detaches volumes when an instance terminates; AWS may still show the attachment for a while.
    # Present the holder as terminated while the attachment remains, which is the case the guard handles.
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws

    real = _aws.describe_instances_by_ids

    def terminated_holder(client, ids):
        return [dict(i, state="terminated") if i["instance_id"] == holder else i for i in real(client, ids)]

    monkeypatch.setattr(_aws, "describe_instances_by_ids", terminated_holder)
    moved = run_module(root_volume, {"name": NAME, "state": "attached", "instance_id": other, "force_detach": True})
    assert moved["changed"] is True
    assert attached_to(ec2, moved["volume"]["volume_id"]) == [(other, "/dev/sdf")]


def test_detached_state(ec2, image_id, run_module, api_calls):
    holder = launch(ec2, image_id)
    volume_id = run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})[
        "volume"
    ]["volume_id"]
    ec2.stop_instances(InstanceIds=[holder])
    check = run_module(root_volume, {"name": NAME, "state": "detached", "force_detach": True}, check_mode=True)
    assert check["changed"] is True and check["volume"]["attachment"] is None
    assert attached_to(ec2, volume_id) == [(holder, "/dev/sdf")]
    done = run_module(root_volume, {"name": NAME, "state": "detached", "force_detach": True})
    assert done["changed"] is True
    assert attached_to(ec2, volume_id) == []
    api_calls.clear()
    again = run_module(root_volume, {"name": NAME, "state": "detached", "force_detach": True})
    assert again["changed"] is False
    assert api_calls.writes() == []


def test_attach_to_terminated_instance_is_refused(ec2, image_id, run_module, api_calls):
    instance = launch(ec2, image_id)
    ec2.terminate_instances(InstanceIds=[instance])
    api_calls.clear()
    result = run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": instance})
    assert result["failed"] is True
    assert "is terminated" in result["msg"]
    assert api_calls.writes() == []


# --- zones and migration -------------------------------------------------------


def test_zone_mismatch_fails_by_default_before_any_write(ec2, image_id, run_module, api_calls):
    run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a"})
    instance = launch(ec2, image_id, "us-east-1b")
    api_calls.clear()
    # moto would accept this cross-zone attach; AWS refuses it, so the module must check first.
    result = run_module(root_volume, {"name": NAME, "state": "attached", "instance_id": instance})
    assert result["failed"] is True
    assert "zone us-east-1a" in result["msg"] and "zone_mismatch: migrate" in result["msg"]
    assert api_calls.writes() == []
    assert attached_to(ec2, volumes_named(ec2)[0]["VolumeId"]) == []


def test_migrate_to_instance_zone_then_rerun(ec2, image_id, run_module, api_calls):
    source = run_module(root_volume, {"name": NAME, "size": 6, "zone": "us-east-1a", "tags": {"team": "x"}})
    source_id = source["volume"]["volume_id"]
    instance = launch(ec2, image_id, "us-east-1b")
    args = {"name": NAME, "state": "attached", "instance_id": instance, "zone_mismatch": "migrate"}
    api_calls.clear()

    check = run_module(root_volume, args, check_mode=True)
    assert check["changed"] is True
    assert check["volume"]["zone"] == "us-east-1b"
    assert api_calls.writes() == []

    moved = run_module(root_volume, args)
    assert moved["changed"] is True
    assert api_calls.writes() == ["CreateSnapshot", "CreateVolume", "CreateTags", "DeleteSnapshot", "AttachVolume"]
    new_id = moved["volume"]["volume_id"]
    assert new_id != source_id
    assert moved["volume"]["zone"] == "us-east-1b"
    assert moved["superseded"] == [source_id]
    by_id = {v["VolumeId"]: v for v in volumes_named(ec2)}
    assert tags_of(by_id[new_id]) == {"Name": NAME, "team": "x", MIGRATED_FROM: source_id}
    assert tags_of(by_id[source_id])[SUPERSEDED] == new_id
    assert by_id[new_id]["Size"] == 6
    assert attached_to(ec2, new_id) == [(instance, "/dev/sdf")]
    assert migration_snapshots(ec2) == []

    api_calls.clear()
    again = run_module(root_volume, args)
    assert again["changed"] is False
    assert api_calls.writes() == []
    assert again["volume"]["volume_id"] == new_id

    cleaned = run_module(root_volume, dict(args, delete_superseded=True))
    assert cleaned["changed"] is True
    assert cleaned["actions"] == ["delete volume %s" % source_id]
    assert cleaned["superseded"] == []
    assert [v["VolumeId"] for v in volumes_named(ec2)] == [new_id]


def test_migrate_refuses_when_source_is_used_by_a_running_instance(ec2, image_id, run_module, api_calls):
    holder = launch(ec2, image_id, "us-east-1a")
    run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})
    target = launch(ec2, image_id, "us-east-1b")
    api_calls.clear()
    result = run_module(
        root_volume,
        {"name": NAME, "state": "attached", "instance_id": target, "zone_mismatch": "migrate", "force_detach": True},
    )
    assert result["failed"] is True
    assert "which is running" in result["msg"]
    assert api_calls.writes() == []
    assert migration_snapshots(ec2) == []


def test_migration_resumes_after_interruption_with_snapshot_only(ec2, image_id, run_module, api_calls):
    source_id = run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a"})["volume"]["volume_id"]
    # A previous run was interrupted right after its snapshot call.
    ec2.create_snapshot(
        VolumeId=source_id,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "Name", "Value": NAME},
                    {"Key": "parkingspot:migration-source", "Value": source_id},
                    {"Key": "parkingspot:migration-zone", "Value": "us-east-1c"},
                ],
            }
        ],
    )
    api_calls.clear()
    result = run_module(root_volume, {"name": NAME, "zone": "us-east-1c", "zone_mismatch": "migrate"})
    assert result["changed"] is True
    # The existing snapshot is reused: no second CreateSnapshot.
    assert api_calls.writes() == ["CreateVolume", "CreateTags", "DeleteSnapshot"]
    assert result["volume"]["zone"] == "us-east-1c"
    assert migration_snapshots(ec2) == []
    active = [v for v in volumes_named(ec2) if SUPERSEDED not in tags_of(v)]
    assert [v["VolumeId"] for v in active] == [result["volume"]["volume_id"]]


def test_migration_resumes_after_interruption_with_new_volume_untagged_source(ec2, run_module, api_calls):
    source_id = run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a"})["volume"]["volume_id"]
    snapshot = ec2.create_snapshot(
        VolumeId=source_id,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "parkingspot:migration-source", "Value": source_id},
                    {"Key": "parkingspot:migration-zone", "Value": "us-east-1b"},
                ],
            }
        ],
    )["SnapshotId"]
    copy_id = ec2.create_volume(
        AvailabilityZone="us-east-1b",
        SnapshotId=snapshot,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [{"Key": "Name", "Value": NAME}, {"Key": MIGRATED_FROM, "Value": source_id}],
            }
        ],
    )["VolumeId"]
    api_calls.clear()
    # Two volumes carry the name, but one names the other as its source: not a duplicate, a migration to finish.
    result = run_module(root_volume, {"name": NAME, "zone": "us-east-1b", "zone_mismatch": "migrate"})
    assert result["changed"] is True
    assert api_calls.writes() == ["CreateTags", "DeleteSnapshot"]
    assert result["volume"]["volume_id"] == copy_id
    by_id = {v["VolumeId"]: v for v in volumes_named(ec2)}
    assert tags_of(by_id[source_id])[SUPERSEDED] == copy_id
    assert migration_snapshots(ec2) == []


# --- absent -----------------------------------------------------------------------


def test_absent_deletes_volume_and_superseded_copies_twice(ec2, image_id, run_module, api_calls):
    run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a"})
    run_module(root_volume, {"name": NAME, "zone": "us-east-1b", "zone_mismatch": "migrate"})
    assert len(volumes_named(ec2)) == 2

    check = run_module(root_volume, {"name": NAME, "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert len(volumes_named(ec2)) == 2

    gone = run_module(root_volume, {"name": NAME, "state": "absent"})
    assert gone["changed"] is True
    assert gone["volume"] == {}
    assert api_calls.count("DeleteVolume") == 2
    assert volumes_named(ec2) == []

    api_calls.clear()
    again = run_module(root_volume, {"name": NAME, "state": "absent"})
    assert again["changed"] is False
    assert api_calls.writes() == []


def test_absent_detaches_from_stopped_instance_only_with_force_detach(ec2, image_id, run_module, api_calls):
    holder = launch(ec2, image_id)
    run_module(root_volume, {"name": NAME, "size": 4, "state": "attached", "instance_id": holder})
    ec2.stop_instances(InstanceIds=[holder])
    refused = run_module(root_volume, {"name": NAME, "state": "absent"})
    assert refused["failed"] is True and "force_detach" in refused["msg"]
    assert len(volumes_named(ec2)) == 1
    done = run_module(root_volume, {"name": NAME, "state": "absent", "force_detach": True})
    assert done["changed"] is True
    assert volumes_named(ec2) == []


# --- a volume that never becomes available (botocore Stubber: moto creates volumes at once) ----------


@pytest.fixture
def stubbed(aws_credentials, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

    client = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(client)
    monkeypatch.setattr(AnsibleAWSModule, "client", lambda self, *args, **kwargs: client)
    with stub:
        yield stub


def _raw_volume(state):
    return {
        "VolumeId": "vol-0123456789abcdef0",
        "AvailabilityZone": "us-east-1a",
        "State": state,
        "Size": 4,
        "VolumeType": "gp3",
        "Encrypted": False,
        "Attachments": [],
        "Tags": [{"Key": "Name", "Value": NAME}],
    }


def test_volume_stuck_creating_times_out_saying_what_remains(stubbed, run_module, api_calls, monkeypatch):
    monkeypatch.setattr(_root_volume, "POLL_INTERVAL", 0.3)
    stubbed.add_response("describe_volumes", {"Volumes": []})
    stubbed.add_response("create_volume", _raw_volume("creating"))
    for _attempt in range(12):
        stubbed.add_response("describe_volumes", {"Volumes": [_raw_volume("creating")]})
    result = run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a", "wait_timeout": 1})
    assert result["failed"] is True
    assert "vol-0123456789abcdef0 is still creating after 1s" in result["msg"]
    assert "it remains (tagged Name=dev-root) and the next run continues with it" in result["msg"]
    assert api_calls.writes() == ["CreateVolume"]
    # Polled several times until the deadline, not once and not forever.
    assert 2 <= api_calls.count("DescribeVolumes") - 1 <= 6


def test_volume_in_error_state_is_deleted_and_nothing_remains(stubbed, run_module, api_calls):
    stubbed.add_response("describe_volumes", {"Volumes": []})
    stubbed.add_response("create_volume", _raw_volume("creating"))
    stubbed.add_response("describe_volumes", {"Volumes": [_raw_volume("error")]})
    stubbed.add_response("delete_volume", {}, {"VolumeId": "vol-0123456789abcdef0"})
    result = run_module(root_volume, {"name": NAME, "size": 4, "zone": "us-east-1a", "wait_timeout": 5})
    assert result["failed"] is True
    assert "went into state error" in result["msg"] and "nothing remains" in result["msg"]
    assert api_calls.writes() == ["CreateVolume", "DeleteVolume"]
    stubbed.assert_no_pending_responses()


def test_resumed_run_waits_for_a_volume_a_previous_run_left_creating(stubbed, run_module, api_calls, monkeypatch):
    monkeypatch.setattr(_root_volume, "POLL_INTERVAL", 0.01)
    stubbed.add_response("describe_volumes", {"Volumes": [_raw_volume("creating")]})
    stubbed.add_response("describe_volumes", {"Volumes": [_raw_volume("creating")]})
    stubbed.add_response("describe_volumes", {"Volumes": [_raw_volume("available")]})
    result = run_module(root_volume, {"name": NAME, "zone": "us-east-1a", "state": "detached", "wait_timeout": 5})
    assert api_calls.writes() == []
    assert result["changed"] is False
    assert result["volume"]["state"] == "available"
    assert api_calls.count("DescribeVolumes") == 3
    stubbed.assert_no_pending_responses()
