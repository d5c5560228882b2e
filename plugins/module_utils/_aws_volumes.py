# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""EBS volume, snapshot and image calls used by root_volume.

The calls themselves come from amazon.aws (``module_utils/ec2.py``: error handler
plus jittered-backoff retry each); this file only adds the filters ParkingSpot
uses and the snake_case shape it returns.
"""

from __future__ import annotations

from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.amazon.aws.plugins.module_utils import ec2 as aws_ec2
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError

# Volume states that still hold data (deleting/deleted ones are gone for our purposes).
PRESENT_VOLUME_STATES = ["creating", "available", "in-use", "error"]

attach_volume = aws_ec2.attach_volume
detach_volume = aws_ec2.detach_volume
delete_volume = aws_ec2.delete_volume
delete_snapshot = aws_ec2.delete_snapshot


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
    raw = aws_ec2.describe_volumes(client, Filters=filters, MaxResults=500)
    volumes = _identity.keep_exact([normalize_volume(v) for v in raw], tags)
    return sorted(volumes, key=lambda v: v["volume_id"])


def get_volume(client, volume_id: str) -> Optional[Dict[str, Any]]:
    """One volume by id, or None when it does not exist (any more)."""
    raw = aws_ec2.describe_volumes(client, VolumeIds=[volume_id])
    volumes = [normalize_volume(v) for v in raw or []]
    return volumes[0] if volumes and volumes[0]["state"] in PRESENT_VOLUME_STATES else None


def create_volume(client, zone: str, tags: Dict[str, str], **params: Any) -> Dict[str, Any]:
    """Create a volume tagged at creation (never an untagged moment)."""
    params = {k: v for k, v in params.items() if v is not None}
    raw = aws_ec2.create_volume(
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
    paginator = client.get_paginator("describe_snapshots")
    return paginator.paginate(**params).build_full_result().get("Snapshots", [])


def get_snapshot(client, snapshot_id: str) -> Optional[Dict[str, Any]]:
    raw = aws_ec2.describe_snapshots(client, SnapshotIds=[snapshot_id])
    snapshots = raw.get("Snapshots", []) if isinstance(raw, dict) else []
    return normalize_snapshot(snapshots[0]) if snapshots else None


def create_snapshot(client, volume_id: str, description: str, tags: Dict[str, str]) -> Dict[str, Any]:
    raw = aws_ec2.create_snapshot(
        client,
        volume_id,
        Description=description,
        TagSpecifications=_aws.tag_specifications(["snapshot"], tags),
    )
    return normalize_snapshot(raw)


def image_root_snapshot(client, image_id: str) -> Dict[str, Any]:
    """The snapshot behind an AMI's root device, with its size and volume type."""
    try:
        images = aws_ec2.describe_images(client, ImageIds=[image_id])
    except aws_ec2.AnsibleEC2Error as e:
        if _aws.error_code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"):
            raise ParkingSpotError(message="image_id %s was not found (%s)" % (image_id, _aws.error_code(e)))
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
