# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""EBS volume, snapshot and image calls used by root_volume.

Built like every call in ``_aws.py``: one tiny function per call, ``SpotErrorHandler``
(whose subclasses here name the "not found" codes that make a describe return
nothing and a delete return False) and ``AWSRetry.jittered_backoff``. Above the
calls: the filters ParkingSpot uses and the snake_case shape it returns.
"""

from __future__ import annotations

from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import AnsibleEC2Error
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import SpotErrorHandler

# Volume states that still hold data (deleting/deleted ones are gone for our purposes).
PRESENT_VOLUME_STATES = ["creating", "available", "in-use", "error"]


class _VolumeErrorHandler(SpotErrorHandler):
    MISSING = ("InvalidVolume.NotFound",)


class _SnapshotErrorHandler(SpotErrorHandler):
    MISSING = ("InvalidSnapshot.NotFound",)


class _ImageErrorHandler(SpotErrorHandler):
    MISSING = ("InvalidAMIID.Unavailable",)


# --- calls ---------------------------------------------------------------------------


@_VolumeErrorHandler.list_error_handler("describe volumes", [])
@AWSRetry.jittered_backoff()
def describe_volumes(client, **params) -> List[Dict[str, Any]]:
    return client.get_paginator("describe_volumes").paginate(**params).build_full_result()["Volumes"]


@_VolumeErrorHandler.common_error_handler("create volume")
@AWSRetry.jittered_backoff()
def _create_volume(client, **params) -> Dict[str, Any]:
    return client.create_volume(**params)


@_VolumeErrorHandler.common_error_handler("attach volume {volume_id} to {instance_id}")
@AWSRetry.jittered_backoff()
def attach_volume(client, device: str, instance_id: str, volume_id: str) -> Dict[str, Any]:
    return client.attach_volume(Device=device, InstanceId=instance_id, VolumeId=volume_id)


@_VolumeErrorHandler.common_error_handler("detach volume {volume_id}")
@AWSRetry.jittered_backoff()
def detach_volume(client, volume_id: str, **params) -> Dict[str, Any]:
    return client.detach_volume(VolumeId=volume_id, **params)


@_VolumeErrorHandler.deletion_error_handler("delete volume {volume_id}")
@AWSRetry.jittered_backoff()
def delete_volume(client, volume_id: str) -> bool:
    client.delete_volume(VolumeId=volume_id)
    return True


@_SnapshotErrorHandler.list_error_handler("describe snapshots", {})
@AWSRetry.jittered_backoff()
def describe_snapshots(client, **params) -> Dict[str, Any]:
    return client.describe_snapshots(**params)


@_SnapshotErrorHandler.common_error_handler("create snapshot of {volume_id}")
# A volume takes one snapshot request at a time: that refusal needs a much longer back-off.
@AWSRetry.jittered_backoff(catch_extra_error_codes=["SnapshotCreationPerVolumeRateExceeded"], delay=15)
def _create_snapshot(client, volume_id: str, **params) -> Dict[str, Any]:
    return client.create_snapshot(VolumeId=volume_id, **params)


@_SnapshotErrorHandler.deletion_error_handler("delete snapshot {snapshot_id}")
@AWSRetry.jittered_backoff()
def delete_snapshot(client, snapshot_id: str) -> bool:
    client.delete_snapshot(SnapshotId=snapshot_id)
    return True


@_ImageErrorHandler.list_error_handler("describe images", [])
@AWSRetry.jittered_backoff()
def describe_images(client, **params) -> List[Dict[str, Any]]:
    return client.get_paginator("describe_images").paginate(**params).build_full_result()["Images"]


# --- shapes and lookups --------------------------------------------------------------


def nvme_serial(volume_id: Optional[str]) -> Optional[str]:
    """The NVMe serial a Nitro instance shows for an EBS volume: the id without its dash."""
    return volume_id.replace("-", "") if volume_id else None


def normalize_volume(raw: Dict[str, Any]) -> Dict[str, Any]:
    attachments = [a for a in raw.get("Attachments") or [] if a.get("State") in ("attaching", "attached", "busy")]
    attachment = None
    if attachments:
        first = attachments[0]
        attachment = {"instance_id": first.get("InstanceId"), "device": first.get("Device"), "state": first["State"]}
    return {
        "volume_id": raw["VolumeId"],
        "zone": raw.get("AvailabilityZone"),
        "state": raw.get("State"),
        "size": raw.get("Size"),
        "volume_type": raw.get("VolumeType"),
        "iops": raw.get("Iops"),
        "throughput": raw.get("Throughput"),
        "encrypted": bool(raw.get("Encrypted")),
        "kms_key_id": raw.get("KmsKeyId"),
        "snapshot_id": raw.get("SnapshotId") or None,
        "attachment": attachment,
        "nvme_serial": nvme_serial(raw["VolumeId"]),
        "tags": boto3_tag_list_to_ansible_dict(raw.get("Tags") or []),
    }


def normalize_snapshot(raw: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "snapshot_id": raw["SnapshotId"],
        "volume_id": raw.get("VolumeId"),
        "state": raw.get("State"),
        "progress": raw.get("Progress"),
        "tags": boto3_tag_list_to_ansible_dict(raw.get("Tags") or []),
    }


def find_volumes(client, tags: Dict[str, str]) -> List[Dict[str, Any]]:
    """Volumes carrying every tag in ``tags`` exactly that still exist; one paginated, filtered call."""
    filters = _aws.tag_filters(tags) + [{"Name": "status", "Values": PRESENT_VOLUME_STATES}]
    raw = describe_volumes(client, Filters=filters, MaxResults=500)
    volumes = _identity.keep_exact([normalize_volume(v) for v in raw], tags)
    return sorted(volumes, key=lambda v: v["volume_id"])


def get_volume(client, volume_id: str) -> Optional[Dict[str, Any]]:
    """One volume by id, or None when it does not exist (any more)."""
    raw = describe_volumes(client, VolumeIds=[volume_id])
    volumes = [normalize_volume(v) for v in raw or []]
    return volumes[0] if volumes and volumes[0]["state"] in PRESENT_VOLUME_STATES else None


def create_volume(client, zone: str, tags: Dict[str, str], **params: Any) -> Dict[str, Any]:
    """Create a volume tagged at creation (never an untagged moment)."""
    params = {k: v for k, v in params.items() if v is not None}
    raw = _create_volume(
        client,
        AvailabilityZone=zone,
        TagSpecifications=_aws.tag_specifications(["volume"], tags),
        **params,
    )
    return normalize_volume(raw)


def find_snapshots(client, tags: Dict[str, str]) -> List[Dict[str, Any]]:
    """Snapshots this account owns carrying every tag in ``tags`` exactly (pending or completed)."""
    filters = _aws.tag_filters(tags) + [{"Name": "status", "Values": ["pending", "completed"]}]
    snapshots = describe_snapshots_all(client, OwnerIds=["self"], Filters=filters, MaxResults=SNAPSHOT_PAGE)
    found = _identity.keep_exact([normalize_snapshot(s) for s in snapshots], tags)
    return sorted(found, key=lambda s: s["snapshot_id"])


# DescribeSnapshots pages hold at most 1000 snapshots; every page is read.
SNAPSHOT_PAGE = 1000


@_aws.SpotErrorHandler.list_error_handler("describe snapshots", [])
@AWSRetry.jittered_backoff()
def describe_snapshots_all(client, **params) -> List[Dict[str, Any]]:
    return _aws.paginate(client, "describe_snapshots", "Snapshots", **params)[0]


def get_snapshot(client, snapshot_id: str) -> Optional[Dict[str, Any]]:
    raw = describe_snapshots(client, SnapshotIds=[snapshot_id])
    snapshots = raw.get("Snapshots", []) if isinstance(raw, dict) else []
    return normalize_snapshot(snapshots[0]) if snapshots else None


def create_snapshot(client, volume_id: str, description: str, tags: Dict[str, str]) -> Dict[str, Any]:
    raw = _create_snapshot(
        client,
        volume_id,
        Description=description,
        TagSpecifications=_aws.tag_specifications(["snapshot"], tags),
    )
    return normalize_snapshot(raw)


def image_root_snapshot(client, image_id: str) -> Dict[str, Any]:
    """The snapshot behind an AMI's root device, with its size and volume type."""
    try:
        images = describe_images(client, ImageIds=[image_id])
    except AnsibleEC2Error as e:
        if _aws.error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"):
            raise ParkingSpotError(message="image_id %s was not found (%s)" % (image_id, _aws.error_code(e))) from e
        raise
    if not images:
        raise ParkingSpotError(message="image_id %s was not found" % image_id)
    image = images[0]
    root_device = image.get("RootDeviceName")
    for mapping in image.get("BlockDeviceMappings") or []:
        ebs = mapping.get("Ebs") or {}
        if mapping.get("DeviceName") == root_device and ebs.get("SnapshotId"):
            return {
                "snapshot_id": ebs["SnapshotId"],
                "size": ebs.get("VolumeSize"),
                "volume_type": ebs.get("VolumeType"),
            }
    raise ParkingSpotError(
        message="image_id %s has no EBS snapshot behind its root device %s (instance-store AMI?)"
        % (image_id, root_device)
    )
