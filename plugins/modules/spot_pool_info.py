#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_pool_info
short_description: Status of ParkingSpot pools
version_added: 0.1.0
description:
  - Counts by state and market, leases with their remaining minutes, drains in progress and vCPU use of pools kept
    by M(parkingspot.ec2.spot_pool).
  - One paginated, tag-filtered DescribeInstances per 1000 instances for all pools together, plus one
    DescribeInstanceTypes for the vCPU counts.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  names:
    description:
      - Pools to report on; all pools when empty.
      - Each name is matched exactly (C(*) and C(?) are no wildcards); 1 to 256 characters without control
        characters.
    type: list
    elements: str
    default: []
  now:
    description: Report as of this time (ISO 8601 with a zone) instead of the current time.
    type: str
extends_documentation_fragment:
  - parkingspot.ec2.aws
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Status of every pool
  parkingspot.ec2.spot_pool_info:
  register: pools

- name: Pools with instances draining
  ansible.builtin.debug:
    msg: "{{ pools.pools | selectattr('counts.draining', 'gt', 0) | map(attribute='name') | list }}"
"""

RETURN = r"""
pools:
  description: One entry per pool, sorted by name (empty list when there is none).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pool name.
      type: str
      sample: ci-linux
    market:
      description: C(block) when the pool holds leases, else C(spot).
      type: str
      sample: spot
    counts:
      description: Instances by state and market, capacity, draining, expiring and interrupted counts.
      type: dict
      sample:
        by_state: {pending: 0, running: 18, stopping: 0, stopped: 0, shutting_down: 0, terminated: 1}
        by_market: {spot: 16, on_demand: 2}
        capacity: 17
        draining: 1
        expiring: 0
        interrupted: 1
    blocks:
      description: Leases with instance_id, expires_at, remaining_minutes and status.
      type: list
      sample: []
      elements: dict
    draining:
      description: Drains in progress with their deadline.
      type: list
      sample: [{instance_id: i-0fedcba9876543210, deadline: "2030-01-07T12:40:00Z"}]
      elements: dict
    vcpus_used:
      description: vCPUs of the pool's live instances.
      type: int
      sample: 72
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_EXPIRES_AT
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL


def read_pools(client, names):
    """Instances of the named pools (or of every pool), grouped by pool name."""
    if names:
        pool_filter = [_identity.names_filter(TAG_POOL, names)]
    else:
        pool_filter = [{"Name": "tag-key", "Values": [TAG_POOL]}]
    instances = _aws.describe_instances_by_tags(client, {}, states=_aws.ALL_STATES, filters=pool_filter)
    if names:
        instances = _identity.keep_named(instances, TAG_POOL, names)
    pools = {name: [] for name in names}
    for instance in instances:
        pools.setdefault(instance["tags"].get(TAG_POOL), []).append(instance)
    return pools


def do(module):
    _identity.check_names(module.params["names"])
    now = _keeper.utc(module.params["now"])
    client = module.client("ec2")
    pools = read_pools(client, module.params["names"])
    types = {i["instance_type"] for members in pools.values() for i in members}
    vcpus = _aws.instance_type_vcpus(client, types)
    result = []
    for name in sorted(pools):
        members = pools[name]
        market = "block" if any(TAG_EXPIRES_AT in i["tags"] for i in members) else "spot"
        status = _planner.pool_status(members, now, market=market, vcpus=vcpus)
        result.append(dict(status, name=name, market=market))
    module.exit_json(changed=False, pools=result)


def main():
    argument_spec = dict(
        names=dict(type="list", elements="str", default=[]),
        now=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
