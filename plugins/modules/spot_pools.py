#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_pools
short_description: Keep many spot pools of one account and region in one run
version_added: 0.2.0
description:
  - Reconciles every pool of O(pools) in one module run, each exactly as M(parkingspot.ec2.spot_pool) would, for
    the cost of one. It reads with one paginated DescribeInstances per 1000 instances of all pools together
    (filtered on the exact names of its pools in the tag C(parkingspot:pool); on the tag key alone beyond 200
    pools, the most values one EC2 filter takes), instead of one read and one module start per pool.
  - The instances read are split by exact equality of their C(parkingspot:pool) tag, then each pool is planned
    with the same planner as M(parkingspot.ec2.spot_pool).
  - "Writes are batched across pools: the terminations of all pools go in one TerminateInstances per 1000 ids,
    the drain marks in one CreateTags per tag set and 1000 ids; launches are one call per pool and offering group
    (instance type and subnet), as in M(parkingspot.ec2.spot_pool)."
  - Every write first waits for a token of its EC2 request bucket (RunInstances 5 burst and 2 per second, with
    its resource bucket of 1000 instances and 2 per second; TerminateInstances 100 and 5; CreateTags 100 and 10;
    other writes 50 and 5), so a run that has much to do paces itself instead of being throttled. The time spent
    waiting is returned in RV(pacing).
  - One pool's error (bad options, a refused launch, a failed tag or termination) never stops another pool. It is
    reported in RV(failed_pools) under the pool's name, and then the task fails after every other pool was kept.
    Options that cannot be told apart by pool (not a list of dicts, a pool without a name, a name given twice)
    fail the whole run before any call.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  pools:
    description:
      - The pools, each a dict of the options of M(parkingspot.ec2.spot_pool) (C(name), C(desired),
        C(schedule), C(market), launch options, C(on_demand_fallback), C(drain), C(quota), C(now) and so on),
        validated as that module validates them.
      - AWS connection options are not allowed inside a pool; they are options of this module and apply to every
        pool. Keep one task per account and region.
      - Each pool name at most once.
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - parkingspot.ec2.aws
  - parkingspot.ec2.run_lock
notes:
  - Supports check mode (returns every pool's plan without a write call) and diff mode (counts before and after,
    one entry per changed pool).
  - Drains run on the controller pool after pool; a pool with a long C(drain.timeout) delays the pools
    after it.
seealso:
  - module: parkingspot.ec2.spot_pool
"""

EXAMPLES = r"""
# parkingspot_pools comes from the inventory, for example inventory/group_vars/all/parkingspot.yml:
# a list of pools, each a dict of parkingspot.ec2.spot_pool options with a unique name.
- name: Keep every pool of the inventory in one run
  parkingspot.ec2.spot_pools:
    region: eu-central-1
    pools: "{{ parkingspot_pools }}"
  register: kept

- name: A pool given inline, four ARM runners at all hours
  parkingspot.ec2.spot_pools:
    region: eu-central-1
    pools:
      - name: ci-arm
        desired: 4
        launch_template: {name: ci-runner-arm}
        instance_type: c7g.xlarge

- name: One task per region (pools_by_region maps a region to its list of pools)
  parkingspot.ec2.spot_pools:
    region: "{{ item.key }}"
    pools: "{{ item.value }}"
  loop: "{{ pools_by_region | dict2items }}"
  loop_control:
    label: "{{ item.key }}"
  register: kept_by_region

- name: What would every pool do on Monday at 08:00?
  parkingspot.ec2.spot_pools:
    pools: "{{ parkingspot_pools | map('combine', {'now': '2026-11-30T08:00:00+01:00'}) | list }}"
  check_mode: true
  register: what_if
"""

RETURN = r"""
pools:
  description:
    - Per pool name, what M(parkingspot.ec2.spot_pool) returns for it (C(changed), C(pool), C(plan) and C(diff)).
    - A pool whose options were refused has no entry here, only in RV(failed). A pool that failed after it was
      planned has its entry, with what was done before the error, and C(failed_message).
    - C(reused_read) is true when the pool was planned from the last read of an earlier run on this controller
      instead of a new DescribeInstances (O(run_lock.reuse_read_seconds)).
  returned: always
  type: dict
  sample:
    ci-linux:
      changed: false
      reused_read: false
      pool: {name: ci-linux, desired: 2, capacity: 2, launched: [], terminated: []}
      plan: {launch: {spot: 0, on_demand: 0}, changed: false}
      diff: {before: {desired: 2, capacity: 2}, after: {desired: 2, capacity: 2}}
failed:
  description:
    - Per pool name, why the pool could not be kept in this run. Empty when every pool was kept.
    - ansible-core reads C(failed) as the task's failure flag and turns it into a boolean on the controller (true
      when a pool failed, and the task fails after every other pool was kept); RV(failed_pools) carries the same
      messages through. Use C(ignore_errors) or C(failed_when) to go on after a failed pool.
  returned: always
  type: dict
  sample:
    ci-gpu: "instance_types: mutually exclusive with instance_type"
failed_pools:
  description: The same as RV(failed), under a name that reaches registered variables as it is.
  returned: always
  type: dict
  sample:
    ci-gpu: "instance_types: mutually exclusive with instance_type"
pacing:
  description: Writes made per action and the seconds this run waited for EC2 request tokens before them.
  returned: always
  type: dict
  contains:
    waited_seconds:
      description: Seconds waited in total.
      type: float
    waited_by_action:
      description: Seconds waited per action.
      type: dict
    writes:
      description: Write calls made per action (retries included).
      type: dict
msg:
  description: How many pools failed, when some did.
  returned: when a pool failed
  type: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _fleet
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock


def do(module):
    result = _fleet.keep_pools(module, module.params["pools"], locks=_run_lock.from_module(module))
    if result["failed"]:
        result["msg"] = "%d of %d pool(s) could not be kept: %s" % (
            len(result["failed"]),
            len(module.params["pools"]),
            ", ".join(sorted(result["failed"])),
        )
    module.exit_json(**result)


def main():
    argument_spec = dict(
        pools=dict(type="list", elements="dict", required=True), run_lock=_run_lock.RUN_LOCK_ARGUMENT_SPEC
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
