#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: root_volume
short_description: A persistent EBS root volume for spot instances, found by name, attached safely
version_added: 0.1.0
description:
  - Manages the EBS volume that a spot instance boots into through the P(parkingspot.ec2.root_pivot#role) shim,
    so system state survives interruptions.
  - The volume is identified by its C(Name) tag, which must be unique. Two volumes with the same name are an
    error that lists both; the module never guesses which one holds the data.
  - A new volume is created from O(snapshot_id), from the root-device snapshot of O(image_id), or empty with
    O(size).
  - B(Single-writer guard.) The module never takes the volume away from a pending, running, stopping or
    shutting-down instance. It detaches it from a stopped or terminated instance only with O(force_detach=true).
  - B(Zones.) An EBS volume can only be attached in its own availability zone. When the volume's zone differs
    from the zone of O(instance_id) (or O(zone)), O(zone_mismatch=fail) stops before any write;
    O(zone_mismatch=migrate) snapshots the volume, creates a copy in the target zone with the same tags, tags the
    old volume C(parkingspot:superseded-by=<new id>) and deletes the migration snapshot. Every step leaves tags
    behind, so a migration that was interrupted is finished by the next run instead of starting over.
  - Old volumes are deleted only with O(delete_superseded=true).
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  name:
    description:
      - Value of the C(Name) tag that identifies the volume.
      - 1 to 256 characters without control characters; matched exactly (C(*) and C(?) are no wildcards).
    type: str
    required: true
  state:
    description:
      - C(present) makes sure the volume exists (in O(zone) or the zone of O(instance_id) when given).
      - C(attached) also attaches it to O(instance_id) at O(device_name).
      - C(detached) makes sure it exists and is attached to no instance.
      - C(absent) deletes the volume, its superseded copies and leftover migration snapshots.
    type: str
    default: present
    choices: [present, attached, detached, absent]
  snapshot_id:
    description: Create the volume from this snapshot. Only used when the volume does not exist yet.
    type: str
  image_id:
    description:
      - Create the volume from the snapshot behind the root device of this AMI. Only used when the volume does
        not exist yet.
    type: str
  size:
    description:
      - Size in GiB of a new volume. Required when neither O(snapshot_id) nor O(image_id) is given; with them it
        may only grow the volume beyond the snapshot's size.
      - An existing volume is never resized; a warning says so when its size differs.
    type: int
  volume_type:
    description: EBS volume type of a new volume.
    type: str
    default: gp3
    choices: [gp2, gp3, io1, io2, st1, sc1, standard]
  encrypted:
    description: Encrypt a new volume (volumes from encrypted snapshots are always encrypted).
    type: bool
    default: false
  kms_key_id:
    description: KMS key for an encrypted new volume. Requires O(encrypted=true).
    type: str
  zone:
    description:
      - Availability zone of a new volume, or the zone an existing volume must be in.
      - When O(instance_id) is given, its zone is used, and O(zone) must be the same if set.
    type: str
  instance_id:
    description: The instance that uses the volume. Required with O(state=attached).
    type: str
  device_name:
    description:
      - Device name given to EC2 when attaching. On Nitro instances the volume appears as an NVMe device whatever
        the name; the shim finds it by its serial (RV(volume.nvme_serial)).
    type: str
    default: /dev/sdf
  zone_mismatch:
    description: What to do when the volume is in another zone than the instance (or O(zone)).
    type: str
    default: fail
    choices: [fail, migrate]
  delete_superseded:
    description: Delete volumes this name's migrations superseded (only when no instance holds them).
    type: bool
    default: false
  force_detach:
    description:
      - Allow detaching the volume from a stopped or terminated instance (to attach it elsewhere, migrate it,
        leave it detached or delete it). Never detaches from a live instance.
    type: bool
    default: false
  wait:
    description:
      - Wait until a new volume is available and an attach or detach has completed.
      - With O(state=attached), also wait until a pending or stopping O(instance_id) runs or has stopped, since EC2
        attaches volumes only to running or stopped instances. Without O(wait) such an instance fails the run.
      - Migrations and attaching a just-created volume always wait.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for each of those steps.
    type: int
    default: 300
  tags:
    description:
      - Tags for the volume; on an existing volume, missing or different values are set (compared as text).
      - Keys starting with C(parkingspot:) or C(aws:) are refused; C(Name) is always O(name).
      - When omitted, the tags of an existing volume are left as they are.
    type: dict
  purge_tags:
    description:
      - Remove tags from an existing volume that are not in O(tags). Has no effect when O(tags) is omitted.
      - C(Name) and tags whose keys start with C(parkingspot:) or C(aws:) are never removed.
    type: bool
    default: true
extends_documentation_fragment:
  - parkingspot.ec2.aws
notes:
  - Supports check mode (the result predicts what would change, without a write call) and diff mode.
  - Bad input, a name that is not unique, a zone mismatch with O(zone_mismatch=fail) and a refusal of the
    single-writer guard all fail before any write call.
"""

EXAMPLES = r"""
- name: A persistent root for the dev box, created from the AMI's root snapshot
  parkingspot.ec2.root_volume:
    name: dev-box-root
    image_id: ami-0123456789abcdef0
    size: 30
    zone: eu-west-1a
    encrypted: true
    tags:
      team: platform

- name: Attach it to the new spot instance, moving it to the instance's zone if it has to
  parkingspot.ec2.root_volume:
    name: dev-box-root
    state: attached
    instance_id: "{{ spot.instances[0].instance_id }}"
    zone_mismatch: migrate
    delete_superseded: true
  register: root

- name: Free it from the old instance that the spot service stopped
  parkingspot.ec2.root_volume:
    name: dev-box-root
    state: detached
    force_detach: true

- name: Remove the volume, old copies and migration snapshots
  parkingspot.ec2.root_volume:
    name: dev-box-root
    state: absent
"""

RETURN = r"""
volume:
  description: The volume after the run (in check mode, as predicted). Empty after O(state=absent).
  returned: always
  type: dict
  contains:
    volume_id:
      description: Volume id (null in check mode for a volume that would be created).
      type: str
      sample: vol-0123456789abcdef0
    zone:
      description: Availability zone.
      type: str
      sample: eu-west-1a
    state:
      description: EBS state (creating, available, in-use).
      type: str
      sample: in-use
    size:
      description: Size in GiB.
      type: int
      sample: 30
    volume_type:
      description: Volume type.
      type: str
      sample: gp3
    encrypted:
      description: Whether the volume is encrypted.
      type: bool
      sample: true
    attachment:
      description: The attachment (instance_id, device, state), or null when detached.
      type: dict
      sample: {instance_id: i-0a1b2c3d4e5f60718, device: /dev/sdf, state: attached}
    nvme_serial:
      description: Serial of the NVMe device on Nitro instances (the id without the dash); what the shim looks for.
      type: str
      sample: vol0123456789abcdef0
    tags:
      description: Tags as a dict.
      type: dict
      sample: {Name: ci-cache-root, team: build}
superseded:
  description: Ids of older copies of this volume left by migrations that still exist.
  returned: always
  type: list
  sample: [vol-0aaaabbbbccccdddd]
  elements: str
actions:
  description: The writes the run made (or, in check mode, would make), in order.
  returned: always
  type: list
  sample:
    - "create vol-0123456789abcdef0 in eu-west-1a"
    - "attach vol-0123456789abcdef0 to i-0a1b2c3d4e5f60718 as /dev/sdf"
  elements: str
"""


from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _root_volume
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import MAX_WAIT_SECONDS
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range

MAX_SIZE_GIB = 65536  # the largest EBS volume (64 TiB)


def validate(params):
    """What the argument spec cannot check, before any call."""
    _identity.check_module_params(params)
    if params["size"] is not None:
        check_range(params["size"], "size", 1, MAX_SIZE_GIB, "GiB")
    check_range(params["wait_timeout"], "wait_timeout", 1, MAX_WAIT_SECONDS, "seconds")
    if params["kms_key_id"] and not params["encrypted"]:
        raise InputError("kms_key_id", "requires encrypted: true")
    if not params["device_name"].startswith("/dev/"):
        raise InputError("device_name", "must be a device path such as /dev/sdf, got %s" % params["device_name"])
    if params["state"] == "attached" and not params["instance_id"]:
        # required_if refuses a missing instance_id; this refuses an empty one (instance_id: "" or null).
        raise InputError("instance_id", "must not be empty with state: attached")


def do(module):
    validate(module.params)
    client = module.client("ec2")
    module.exit_json(**_root_volume.reconcile(module, client, module.params))


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "attached", "detached", "absent"]),
        snapshot_id=dict(type="str"),
        image_id=dict(type="str"),
        size=dict(type="int"),
        volume_type=dict(type="str", default="gp3", choices=["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"]),
        encrypted=dict(type="bool", default=False),
        kms_key_id=dict(type="str"),
        zone=dict(type="str"),
        instance_id=dict(type="str"),
        device_name=dict(type="str", default="/dev/sdf"),
        zone_mismatch=dict(type="str", default="fail", choices=["fail", "migrate"]),
        delete_superseded=dict(type="bool", default=False),
        force_detach=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=300),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("snapshot_id", "image_id")],
        required_if=[("state", "attached", ["instance_id"])],
    )
    _module.run(module, do)


if __name__ == "__main__":
    main()
