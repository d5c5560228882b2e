#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_block
short_description: Time-boxed spot capacity ("spot blocks") enforced by the collection
version_added: 0.1.0
description:
  - AWS stopped selling spot blocks (C(BlockDurationMinutes)) at the end of 2022. This module gives the same
    promise on today's spot market, a lease of O(duration_minutes) per instance, and enforces it itself.
  - Each instance carries C(parkingspot:block=<name>) and C(parkingspot:expires-at) (ISO 8601 UTC). In
    O(mode=emulated) it also gets an on-instance backstop, user data that powers it off at the lease end with
    instance-initiated shutdown behaviour C(terminate), so a block never outlives its lease even if no
    controller ever runs again.
  - Each run keeps O(count) leases. A lease within O(renew_before_minutes) of its end gets its replacement
    launched first and keeps serving until it ends; an ended lease is terminated.
  - O(mode=native) passes C(BlockDurationMinutes) instead, for EC2-compatible clouds that still honour it.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  name:
    description:
      - Identity of the blocks; tag C(parkingspot:block) carries it.
      - 1 to 256 characters without control characters; matched exactly (C(*) and C(?) are no wildcards).
    type: str
    required: true
  state:
    description: C(present) keeps O(count) leases; C(absent) terminates every block of this name.
    type: str
    default: present
    choices: [present, absent]
  count:
    description: Number of leases to keep.
    type: int
    default: 1
  duration_minutes:
    description: Length of each lease. With O(mode=native) one of 60, 120, 180, 240, 300 or 360.
    type: int
    required: true
  renew_before_minutes:
    description:
      - A lease this close to its end gets its replacement launched.
      - Make it at least as long as your longest job, so no job is cut at a lease end.
    type: int
    default: 20
  mode:
    description:
      - C(emulated) enforces leases with tags and the on-instance backstop.
      - C(native) passes BlockDurationMinutes to the cloud.
    type: str
    default: emulated
    choices: [emulated, native]
  now:
    description: Plan as of this time (ISO 8601 with a zone) instead of the current time.
    type: str
extends_documentation_fragment:
  - parkingspot.ec2.launch
  - parkingspot.ec2.aws
notes:
  - Supports check mode and diff mode.
  - Blocks launch through RunInstances, one call per instance type/subnet group, because the backstop is user data.
  - Your own O(user_data) is kept; it is combined with the backstop into a MIME multipart document for cloud-init.
"""

EXAMPLES = r"""
- name: Four three-hour build machines, renewed 20 minutes before their lease ends
  parkingspot.ec2.spot_block:
    name: release-build
    count: 4
    duration_minutes: 180
    launch_template:
      name: ci-runner
    instance_type: c6i.2xlarge
  register: blocks

- name: Show the leases
  ansible.builtin.debug:
    msg: "{{ blocks.blocks | map(attribute='remaining_minutes') | list }}"
"""

RETURN = r"""
blocks:
  description: The leases after the run (in check mode, as they stand).
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance that holds the lease.
      type: str
      sample: i-0a1b2c3d4e5f60718
    expires_at:
      description: Lease end, ISO 8601 UTC.
      type: str
      sample: "2030-01-07T14:00:00Z"
    remaining_minutes:
      description: Whole minutes left.
      type: int
      sample: 95
    status:
      description: C(active), C(expiring) (replacement launched) or C(expired).
      type: str
      sample: active
launched:
  description: Ids of the instances launched by this run.
  returned: always
  type: list
  sample: [i-0a1b2c3d4e5f60719]
  elements: str
terminated:
  description: Ids of the instances terminated by this run.
  returned: always
  type: list
  sample: [i-0123456789abcdef0]
  elements: str
plan:
  description: The planner's output, with one line per decision in C(reasons).
  returned: always
  type: dict
  sample:
    now: "2030-01-07T12:25:00Z"
    market: block
    desired: 2
    changed: true
    launch: {spot: 1, on_demand: 0, expires_at: "2030-01-07T15:25:00Z"}
    terminate: []
    renew: [i-0123456789abcdef0]
    reasons:
      - "desired 2, capacity 2 (2 spot, 0 on-demand): launching 1 block, 0 on-demand"
      - "i-0123456789abcdef0 expires at 2030-01-07T12:40:00Z: renewing"
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _pool_options
from ansible_collections.parkingspot.ec2.plugins.module_utils._defaults import RENEW_BEFORE_MINUTES
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_BLOCK


def do(module):
    inputs = _pool_options.block_inputs(module.params)
    params, now, desired = inputs["params"], inputs["now"], inputs["desired"]
    client = module.client("ec2")
    _instances, plan, actions = _keeper.reconcile(
        module,
        client,
        pool_key="block:%s" % params["name"],
        identity={TAG_BLOCK: params["name"]},
        params=params,
        desired=desired,
        market="block",
        now=now,
        block_mode=params["mode"],
    )
    if not module.check_mode and plan["changed"]:
        after = _planner.pool_status(
            _keeper.read_pool(client, {TAG_BLOCK: params["name"]}), now, "block", params["renew_before_minutes"]
        )
        blocks = after["blocks"]
    else:
        blocks = plan["blocks"]
    module.exit_json(
        changed=plan["changed"],
        blocks=blocks,
        launched=actions["launched"],
        terminated=actions["terminated"],
        plan=plan,
        diff=_planner.plan_diff(plan),
    )


def main():
    argument_spec = dict(
        _identity.NAMED_COUNT_ARGUMENT_SPEC,
        duration_minutes=dict(type="int", required=True),
        renew_before_minutes=dict(type="int", default=RENEW_BEFORE_MINUTES),
        mode=dict(type="str", default="emulated", choices=["emulated", "native"]),
        now=dict(type="str"),
    )
    argument_spec.update(_launch.LAUNCH_ARGUMENT_SPEC)
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
