# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The persistent root volume: one run of ``root_volume`` (``reconcile``), finding the volume by name,
the single-writer guard, waits and zone migration.

Identity is the ``Name`` tag. A volume tagged ``parkingspot:superseded-by`` is an
old copy left by a migration and never counts as the volume. A migration leaves
tags behind at every step, so a run that was interrupted is finished by the next:

1. snapshot of the source, tagged ``parkingspot:migration-source=<vol>`` and
   ``parkingspot:migration-zone=<zone>``;
2. new volume in the target zone from that snapshot, with the source's tags plus
   ``parkingspot:migrated-from=<vol>``;
3. source tagged ``parkingspot:superseded-by=<new vol>``;
4. the migration snapshot deleted (no copies left behind), and the source too
   when ``delete_superseded`` is set.

``reconcile`` reads what exists under the name and the instance, then ensures the
state asked for. Every write goes through ``Executor.act`` so check mode records
the same actions without making a call.
"""

from __future__ import annotations

import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_volumes
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_SUPERSEDED_BY

TAG_NAME = "Name"
TAG_MIGRATED_FROM = "parkingspot:migrated-from"
TAG_MIGRATION_SOURCE = "parkingspot:migration-source"
TAG_MIGRATION_ZONE = "parkingspot:migration-zone"
# Tags that describe one particular volume's history: never copied to a new volume.
HISTORY_TAGS = (TAG_SUPERSEDED_BY, TAG_MIGRATED_FROM)

# Instance states in which a volume is not written to any more.
QUIET_STATES = ("stopped", "terminated")
# States of instance_id accepted with state: attached; pending and stopping must first become running or stopped.
USABLE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped")
# AttachVolume: "Attaches an EBS volume to a running or stopped instance" (EC2 API reference).
ATTACHABLE_INSTANCE_STATES = ("running", "stopped")

POLL_INTERVAL = 2.0


class Found:
    """What exists under one name: the volume, an unfinished migration target, and superseded copies."""

    def __init__(self, current=None, target=None, superseded=None):
        self.current: Optional[Dict[str, Any]] = current
        self.target: Optional[Dict[str, Any]] = target
        self.superseded: List[Dict[str, Any]] = superseded or []


def read(client, name: str) -> Found:
    volumes = _aws_volumes.find_volumes(client, {TAG_NAME: name})
    superseded = [v for v in volumes if TAG_SUPERSEDED_BY in v["tags"]]
    active = [v for v in volumes if TAG_SUPERSEDED_BY not in v["tags"]]
    if not active:
        return Found(superseded=superseded)
    if len(active) == 1:
        return Found(current=active[0], superseded=superseded)
    if len(active) == 2:
        first, second = active
        # An interrupted migration: the copy names its source, the source is not yet marked superseded.
        if first["tags"].get(TAG_MIGRATED_FROM) == second["volume_id"]:
            return Found(current=second, target=first, superseded=superseded)
        if second["tags"].get(TAG_MIGRATED_FROM) == first["volume_id"]:
            return Found(current=first, target=second, superseded=superseded)
    listing = ", ".join("%s (%s, %s)" % (v["volume_id"], v["zone"], v["state"]) for v in active)
    raise ParkingSpotError(
        message="name %s is not unique: %d volumes carry Name=%s: %s. Rename or delete all but one of them."
        % (name, len(active), name, listing)
    )


class Executor:
    """Carries out the writes of one run (in check mode only records them), waits on the API, guards and migrates."""

    def __init__(self, client, check_mode: bool, wait_timeout: int, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.check_mode = check_mode
        self.wait_timeout = wait_timeout
        self.sleep = sleep
        self.actions: List[str] = []
        self.warnings: List[str] = []

    def act(self, description: str, call: Callable[[], Any]) -> Any:
        self.actions.append(description)
        if self.check_mode:
            return None
        return call()

    def wait(self, check: Callable[[], Any]) -> Any:
        return _lifecycle.wait_for(check, self.wait_timeout, interval=POLL_INTERVAL, sleep=self.sleep)

    # --- waits -------------------------------------------------------------

    def wait_volume(self, volume_id: str, predicate: Callable[[Dict[str, Any]], bool]) -> Optional[Dict[str, Any]]:
        def check():
            volume = _aws_volumes.get_volume(self.client, volume_id)
            return volume if volume and (predicate(volume) or volume["state"] == "error") else None

        return self.wait(check)

    def wait_available(self, volume: Dict[str, Any], created_here: bool) -> Dict[str, Any]:
        """Wait until a volume is available; on failure say exactly what remains."""
        if self.check_mode or volume["state"] in ("available", "in-use"):
            return volume
        ready = self.wait_volume(volume["volume_id"], lambda v: v["state"] in ("available", "in-use"))
        if ready and ready["state"] != "error":
            return ready
        latest = ready or _aws_volumes.get_volume(self.client, volume["volume_id"]) or volume
        if latest["state"] == "error" and created_here:
            _aws_volumes.delete_volume(self.client, volume["volume_id"])
            raise ParkingSpotError(
                message="volume %s went into state error while being created; it was deleted, nothing remains"
                % volume["volume_id"]
            )
        raise ParkingSpotError(
            message="volume %s is still %s after %ds; it remains (tagged Name=%s) and the next run continues with it"
            % (volume["volume_id"], latest["state"], self.wait_timeout, volume["tags"].get(TAG_NAME))
        )

    def wait_attached(self, volume_id: str, instance_id: str) -> Dict[str, Any]:
        def attached(volume):
            att = volume.get("attachment")
            return bool(att and att["instance_id"] == instance_id and att["state"] == "attached")

        done = self.wait_volume(volume_id, attached)
        if not done or not attached(done):
            raise ParkingSpotError(
                message="volume %s was not attached to %s within %ds; the attachment request stays with EC2"
                % (volume_id, instance_id, self.wait_timeout)
            )
        return done

    def wait_detached(self, volume_id: str) -> Dict[str, Any]:
        done = self.wait_volume(volume_id, lambda v: v["attachment"] is None and v["state"] == "available")
        if not done or done["attachment"] is not None:
            raise ParkingSpotError(
                message="volume %s was not detached within %ds; it is still attached" % (volume_id, self.wait_timeout)
            )
        return done

    def wait_snapshot(self, snapshot: Dict[str, Any], purpose: str) -> Dict[str, Any]:
        if self.check_mode or snapshot["state"] == "completed":
            return snapshot

        def check():
            latest = _aws_volumes.get_snapshot(self.client, snapshot["snapshot_id"])
            return latest if latest and latest["state"] in ("completed", "error") else None

        done = self.wait(check)
        if not done or done["state"] != "completed":
            raise ParkingSpotError(
                message="snapshot %s for %s is %s after %ds; it remains tagged, so the next run resumes from it"
                % (snapshot["snapshot_id"], purpose, done["state"] if done else "still pending", self.wait_timeout)
            )
        return done

    # --- the single-writer guard ------------------------------------------

    def release(self, volume: Dict[str, Any], force_detach: bool, keep_on: Optional[str] = None) -> Dict[str, Any]:
        """Make sure no instance other than ``keep_on`` can write to ``volume``, detaching when allowed.

        Detaches only from a stopped or terminated instance and only with force_detach; never from a
        pending, running, stopping or shutting-down one. Raises before any write when refused.
        """
        att = volume.get("attachment")
        if not att or att["instance_id"] == keep_on:
            return volume
        holders = _aws.describe_instances_by_ids(self.client, [att["instance_id"]])
        holder_state = holders[0]["state"] if holders else "terminated"
        if holder_state not in QUIET_STATES:
            raise ParkingSpotError(
                message="volume %s is attached to instance %s, which is %s: refusing to take it from a live instance"
                " (stop the instance first)" % (volume["volume_id"], att["instance_id"], holder_state)
            )
        if not force_detach:
            raise ParkingSpotError(
                message="volume %s is attached to instance %s (%s); set force_detach: true to detach it"
                % (volume["volume_id"], att["instance_id"], holder_state)
            )
        self.act(
            "detach %s from %s" % (volume["volume_id"], att["instance_id"]),
            lambda: _aws_volumes.detach_volume(self.client, volume["volume_id"], InstanceId=att["instance_id"]),
        )
        if self.check_mode:
            return dict(volume, attachment=None, state="available")
        return self.wait_detached(volume["volume_id"])

    # --- migration ---------------------------------------------------------

    def migrate(self, found: Found, zone: str, force_detach: bool) -> Dict[str, Any]:
        """Copy ``found.current`` into ``zone`` through a tagged snapshot; resumes what a previous run began."""
        source = found.current
        target = found.target
        if target is None:
            source = self.release(source, force_detach)
            marks = {TAG_MIGRATION_SOURCE: source["volume_id"], TAG_MIGRATION_ZONE: zone}
            snapshots = _aws_volumes.find_snapshots(self.client, marks)
            if snapshots:
                snapshot = snapshots[0]
            else:
                snapshot_tags = dict(marks, **{TAG_NAME: source["tags"].get(TAG_NAME, "")})
                snapshot = self.act(
                    "snapshot %s for zone %s" % (source["volume_id"], zone),
                    lambda: _aws_volumes.create_snapshot(
                        self.client,
                        source["volume_id"],
                        "ParkingSpot migration of %s to %s" % (source["volume_id"], zone),
                        snapshot_tags,
                    ),
                ) or {"snapshot_id": None, "state": "pending"}
            snapshot = self.wait_snapshot(snapshot, "the migration of %s to %s" % (source["volume_id"], zone))
            tags = {k: v for k, v in source["tags"].items() if k not in HISTORY_TAGS}
            tags[TAG_MIGRATED_FROM] = source["volume_id"]
            created = self.act(
                "create volume in %s from the snapshot of %s" % (zone, source["volume_id"]),
                lambda: _aws_volumes.create_volume(
                    self.client,
                    zone,
                    tags,
                    SnapshotId=snapshot["snapshot_id"],
                    VolumeType=source["volume_type"],
                    Size=source["size"],
                    Iops=source["iops"] if source["volume_type"] in ("io1", "io2", "gp3") else None,
                    Throughput=source["throughput"] if source["volume_type"] == "gp3" else None,
                    Encrypted=source["encrypted"] or None,
                    KmsKeyId=source["kms_key_id"] if source["encrypted"] else None,
                ),
            )
            target = created or predicted_volume(None, zone, source["size"], source["volume_type"], tags)
        target = self.wait_available(target, created_here=found.target is None)
        self.act(
            "tag %s superseded by %s" % (source["volume_id"], target["volume_id"]),
            lambda: _aws.create_tags(self.client, [source["volume_id"]], {TAG_SUPERSEDED_BY: target["volume_id"]}),
        )
        self.clean_migration_snapshots(source["volume_id"])
        superseded = dict(source, tags=dict(source["tags"], **{TAG_SUPERSEDED_BY: str(target["volume_id"])}))
        found.current, found.target = target, None
        found.superseded.append(superseded)
        return target

    def clean_migration_snapshots(self, source_id: Optional[str]) -> None:
        if not source_id:
            return
        for snapshot in _aws_volumes.find_snapshots(self.client, {TAG_MIGRATION_SOURCE: source_id}):
            self.act(
                "delete migration snapshot %s" % snapshot["snapshot_id"],
                lambda s=snapshot: _aws_volumes.delete_snapshot(self.client, s["snapshot_id"]),
            )

    def delete(self, volume: Dict[str, Any]) -> None:
        self.act(
            "delete volume %s" % volume["volume_id"],
            lambda: _aws_volumes.delete_volume(self.client, volume["volume_id"]),
        )


def predicted_volume(volume_id, zone, size, volume_type, tags, encrypted=False, snapshot_id=None) -> Dict[str, Any]:
    """The volume a create call would return: what check mode reports."""
    return {
        "volume_id": volume_id,
        "zone": zone,
        "state": "available",
        "size": size,
        "volume_type": volume_type,
        "iops": None,
        "throughput": None,
        "encrypted": bool(encrypted),
        "kms_key_id": None,
        "snapshot_id": snapshot_id,
        "attachment": None,
        "nvme_serial": _aws_volumes.nvme_serial(volume_id),
        "tags": dict(tags),
    }


def summary(volume: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """What --diff shows for a volume."""
    if not volume:
        return {"exists": False}
    att = volume.get("attachment") or {}
    return {
        "exists": True,
        "volume_id": volume["volume_id"],
        "zone": volume["zone"],
        "attached_to": att.get("instance_id"),
        "device": att.get("device"),
        "tags": volume["tags"],
    }


# --- one run ---------------------------------------------------------------


def read_instance(client, params):
    """The instance named by instance_id, checked before any write; None without instance_id."""
    if not params["instance_id"]:
        return None
    found = _aws.describe_instances_by_ids(client, [params["instance_id"]])
    if not found:
        raise InputError("instance_id", "%s was not found" % params["instance_id"])
    instance = found[0]
    if params["state"] == "attached" and instance["state"] not in USABLE_INSTANCE_STATES:
        raise ParkingSpotError(
            message="instance_id %s is %s: a volume can only be attached to a live instance"
            % (instance["instance_id"], instance["state"])
        )
    if params["state"] == "attached" and params["wait"] and instance["state"] not in ATTACHABLE_INSTANCE_STATES:
        instance = wait_attachable(client, instance, params["wait_timeout"])
    if params["zone"] and params["zone"] != instance["zone"]:
        raise ParkingSpotError(
            message="zone %s differs from the zone %s of instance_id %s; leave zone unset or make them agree"
            % (params["zone"], instance["zone"], instance["instance_id"])
        )
    return instance


def wait_attachable(client, instance, timeout):
    """Wait until a pending or stopping instance runs or has stopped: EC2 attaches only then."""

    def check():
        found = _aws.describe_instances_by_ids(client, [instance["instance_id"]])
        return found[0] if found and found[0]["state"] in ATTACHABLE_INSTANCE_STATES + ("terminated",) else None

    done = _lifecycle.wait_for(check, timeout)
    if done is None or done["state"] not in ATTACHABLE_INSTANCE_STATES:
        raise ParkingSpotError(
            message="instance_id %s did not become running or stopped within %ds (%s): EC2 attaches volumes only"
            " then" % (instance["instance_id"], timeout, done["state"] if done else instance["state"])
        )
    return done


def creation_source(client, params):
    """SnapshotId/Size/VolumeType for a new volume, checked before the create call."""
    source = {"SnapshotId": None, "Size": params["size"], "VolumeType": params["volume_type"]}
    if params["snapshot_id"]:
        snapshot = _aws_volumes.get_snapshot(client, params["snapshot_id"])
        if not snapshot:
            raise InputError("snapshot_id", "%s was not found" % params["snapshot_id"])
        source["SnapshotId"] = snapshot["snapshot_id"]
    elif params["image_id"]:
        root = _aws_volumes.image_root_snapshot(client, params["image_id"])
        source["SnapshotId"] = root["snapshot_id"]
        if params["size"] is not None and root["size"] and params["size"] < root["size"]:
            raise InputError(
                "size",
                "%d is smaller than the %d GiB root snapshot of image_id %s"
                % (params["size"], root["size"], params["image_id"]),
            )
    elif params["size"] is None:
        raise InputError("size", "is required to create volume %s without snapshot_id or image_id" % params["name"])
    return source


def ensure_present(executor, params, found, zone):
    """The volume exists, in ``zone`` when one is required. Returns it (predicted in check mode)."""
    if found.target is not None:
        # A previous run stopped half-way through a migration: finish it before anything else.
        executor.migrate(found, found.target["zone"], params["force_detach"])
    volume = found.current
    tags = dict(params["tags"] or {}, **{TAG_NAME: params["name"]})
    if volume is None:
        if not zone:
            raise InputError("zone", "(or instance_id) is required to create volume %s" % params["name"])
        source = creation_source(executor.client, params)
        created = executor.act(
            "create volume %s in %s" % (params["name"], zone),
            lambda: _aws_volumes.create_volume(
                executor.client,
                zone,
                tags,
                Encrypted=params["encrypted"] or None,
                KmsKeyId=params["kms_key_id"],
                **source,
            ),
        )
        volume = created or predicted_volume(
            None, zone, source["Size"], source["VolumeType"], tags, params["encrypted"], source["SnapshotId"]
        )
        if params["wait"] or params["state"] == "attached":
            volume = executor.wait_available(volume, created_here=True)
        found.current = volume
        return volume
    if volume["state"] == "creating" and (params["wait"] or params["state"] == "attached"):
        # Left creating by an earlier run (or someone else): wait for it rather than create another.
        volume = executor.wait_available(volume, created_here=False)
    if volume["state"] == "error":
        raise ParkingSpotError(
            message="volume %s (Name=%s) is in state error; remove it with state: absent and run again"
            % (volume["volume_id"], params["name"])
        )
    if zone and volume["zone"] != zone:
        if params["zone_mismatch"] == "fail":
            raise ParkingSpotError(
                message="volume %s is in zone %s but zone %s is required; set zone_mismatch: migrate to copy it there"
                % (volume["volume_id"], volume["zone"], zone)
            )
        volume = executor.migrate(found, zone, params["force_detach"])
    if params["size"] is not None and volume["size"] is not None and params["size"] != volume["size"]:
        executor.warnings.append(
            "volume %s is %d GiB, not %d: existing volumes are not resized"
            % (volume["volume_id"], volume["size"], params["size"])
        )
    current = {k: v for k, v in volume["tags"].items() if not _identity.is_reserved(k)}
    if params["tags"] is None:  # tags not given: only the name is put right, nothing is purged
        current = {TAG_NAME: current.get(TAG_NAME)} if TAG_NAME in current else {}
    missing, purge = compare_aws_tags(current, tags, purge_tags=params["purge_tags"])
    if missing:
        executor.act(
            "tag %s with %s" % (volume["volume_id"], ", ".join(sorted(missing))),
            lambda: _aws.create_tags(executor.client, [volume["volume_id"]], missing),
        )
        volume = dict(volume, tags=dict(volume["tags"], **missing))
    if purge:
        executor.act(
            "untag %s: %s" % (volume["volume_id"], ", ".join(sorted(purge))),
            lambda: _aws.delete_tags(executor.client, [volume["volume_id"]], purge),
        )
        volume = dict(volume, tags={k: v for k, v in volume["tags"].items() if k not in purge})
    found.current = volume
    return volume


def ensure_attached(executor, params, found, instance):
    volume = ensure_present(executor, params, found, instance["zone"])
    att = volume.get("attachment")
    if att and att["instance_id"] == instance["instance_id"]:
        if att["device"] != params["device_name"]:
            executor.warnings.append(
                "volume %s is attached to %s as %s, not %s; left as it is"
                % (volume["volume_id"], instance["instance_id"], att["device"], params["device_name"])
            )
        return volume
    if instance["state"] not in ATTACHABLE_INSTANCE_STATES:
        raise ParkingSpotError(
            message="instance_id %s is %s: EC2 attaches volumes only to running or stopped instances; set wait: true"
            " to wait for it" % (instance["instance_id"], instance["state"])
        )
    volume = executor.release(volume, params["force_detach"], keep_on=instance["instance_id"])
    executor.act(
        "attach %s to %s as %s" % (volume["volume_id"], instance["instance_id"], params["device_name"]),
        lambda: _aws_volumes.attach_volume(
            executor.client, params["device_name"], instance["instance_id"], volume["volume_id"]
        ),
    )
    attachment = {"instance_id": instance["instance_id"], "device": params["device_name"], "state": "attached"}
    if executor.check_mode:
        return dict(volume, attachment=attachment, state="in-use")
    if params["wait"]:
        return executor.wait_attached(volume["volume_id"], instance["instance_id"])
    return volume


def ensure_detached(executor, params, found, zone):
    volume = ensure_present(executor, params, found, zone)
    if not volume.get("attachment"):
        return volume
    released = executor.release(volume, params["force_detach"])
    return released


def ensure_absent(executor, params, found):
    doomed = [v for v in [found.current, found.target] + found.superseded if v]
    # Every guard is checked before the first write, so a refusal leaves everything as it was.
    for volume in doomed:
        _guard_only(executor, volume, params["force_detach"])
    for volume in doomed:
        executor.release(volume, params["force_detach"])
        executor.delete(volume)
    # Migration snapshots carry the name too: also those of source volumes that are already gone.
    for snapshot in _aws_volumes.find_snapshots(executor.client, {TAG_NAME: params["name"]}):
        if TAG_MIGRATION_SOURCE in snapshot["tags"]:
            executor.act(
                "delete migration snapshot %s" % snapshot["snapshot_id"],
                lambda s=snapshot: _aws_volumes.delete_snapshot(executor.client, s["snapshot_id"]),
            )
    found.current, found.target, found.superseded = None, None, []
    return None


def _guard_only(executor, volume, force_detach):
    check = Executor(executor.client, check_mode=True, wait_timeout=executor.wait_timeout)
    check.release(volume, force_detach)


def delete_superseded(executor, params, found):
    kept = []
    for old in found.superseded:
        if old.get("attachment"):
            try:
                _guard_only(executor, old, params["force_detach"])
            except ParkingSpotError as e:
                executor.warnings.append("superseded volume %s kept: %s" % (old["volume_id"], e.message))
                kept.append(old)
                continue
            executor.release(old, params["force_detach"])
        executor.delete(old)
    found.superseded = kept


def reconcile(module, client, params: Dict[str, Any]) -> Dict[str, Any]:
    """One run of ``root_volume`` on validated ``params``; returns the result the module exits with.

    Reads what carries the name and the instance, then ensures ``state``. In check mode the executor
    only records the writes, and the result predicts the run.
    """
    executor = Executor(client, module.check_mode, params["wait_timeout"])
    found = read(client, params["name"])
    before = summary(found.current)
    instance = read_instance(client, params) if params["state"] != "absent" else None
    zone = instance["zone"] if instance else params["zone"]

    if params["state"] == "absent":
        volume = ensure_absent(executor, params, found)
    elif params["state"] == "attached":
        volume = ensure_attached(executor, params, found, instance)
    elif params["state"] == "detached":
        volume = ensure_detached(executor, params, found, zone)
    else:
        volume = ensure_present(executor, params, found, zone)
    if params["delete_superseded"] and params["state"] != "absent":
        delete_superseded(executor, params, found)

    changed = bool(executor.actions)
    if changed and not module.check_mode and volume and volume["volume_id"]:
        volume = _aws_volumes.get_volume(client, volume["volume_id"]) or volume
    for warning in executor.warnings:
        module.warn(warning)
    return dict(
        changed=changed,
        volume=volume or {},
        superseded=sorted(v["volume_id"] for v in found.superseded),
        actions=executor.actions,
        diff=dict(before=before, after=summary(volume)),
    )
