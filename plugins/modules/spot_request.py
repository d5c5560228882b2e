#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_request
short_description: Keep an exact number of EC2 spot instances by name
version_added: 0.1.0
description:
  - Spot capacity identified by O(name). Every spot request, instance and volume it creates carries the tag
    C(parkingspot:request=<name>), so the module finds its own capacity again and a second identical run
    changes nothing and makes no write call.
  - Launches through RunInstances with InstanceMarketOptions for one instance type, CreateFleet C(type=instant)
    when O(instance_types) or O(subnet_ids) diversify, and RequestSpotInstances only with
    O(api=request_spot_instances).
  - Changing O(count) launches or terminates only the difference; the newest instances go first.
  - With O(wait), the module polls every 1.5 seconds. When O(wait_timeout) passes, it cancels what is still
    unfulfilled and terminates what it launched in this run before failing, so nothing is left behind.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  name:
    description:
      - Identity of the request. Tag C(parkingspot:request) carries it.
      - 1 to 256 characters without control characters; matched exactly (C(*) and C(?) are no wildcards).
    type: str
    required: true
  state:
    description: C(present) keeps O(count) live instances; C(absent) cancels the requests and terminates instances.
    type: str
    default: present
    choices: [present, absent]
  count:
    description: Exact number of live (pending, running, stopping or stopped) instances.
    type: int
    default: 1
  wait:
    description: Wait until every instance runs (C(present)) or is terminated (C(absent)).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait. On timeout unfulfilled requests are cancelled and this run's instances terminated.
    type: int
    default: 300
  terminate_instances:
    description: With O(state=absent), also terminate the instances of the cancelled requests.
    type: bool
    default: true
  renew_expired:
    description:
      - Persistent requests whose O(valid_until) has passed are no longer re-evaluated by EC2; their stopped
        instances can never start again. With C(true), such instances are terminated, the expired requests
        cancelled, and O(count) is met with fresh requests (give a new O(valid_until)). Running instances of an
        expired request keep running.
      - With C(false), expired requests are reported in RV(expired_requests) with a warning.
    type: bool
    default: false
  purge_tags:
    description:
      - Remove tags from existing instances that are not in O(tags). Has no effect when O(tags) is omitted.
      - Tags whose keys start with C(parkingspot:) or C(aws:) are never removed.
    type: bool
    default: true
  quota:
    description:
      - vCPU limits checked before any launch. A launch that would pass one fails before any write call, with a
        message giving the quota, the use and the ask.
    type: dict
    default: {}
    suboptions:
      max_vcpus:
        description: Most vCPUs this request may hold.
        type: int
      owner_tag:
        description: Tag key naming the owner; its value is taken from O(tags).
        type: str
      per_owner_max_vcpus:
        description: Most vCPUs all live instances carrying the owner's tag may hold (pools and requests together).
        type: int
      check_account_quota:
        description: Check the account's spot vCPU quota (Service Quotas) against the spot instances running.
        type: bool
        default: false
extends_documentation_fragment:
  - parkingspot.ec2.launch
  - parkingspot.ec2.launch.SPOT
  - parkingspot.ec2.aws
notes:
  - Supports check mode (the result predicts the launch or termination without a write call) and diff mode.
  - O(tags) are reconciled on existing instances too (values compared as text, so C(2) and C("2") are the same
    tag); with O(purge_tags=true) other user tags are removed. Keys starting C(parkingspot:) or C(aws:) are
    refused in O(tags) and never purged.
  - O(name) is matched exactly, never as a pattern (see the collection's C(docs/security.md)).
"""

EXAMPLES = r"""
- name: Keep two spot build runners from a launch template
  parkingspot.ec2.spot_request:
    name: ci-runners
    count: 2
    launch_template:
      name: ci-runner
    tags:
      team: build
    wait: true

- name: A persistent spot instance that stops (keeping its root volume) when interrupted
  parkingspot.ec2.spot_request:
    name: dev-box
    image_id: ami-0123456789abcdef0
    instance_type: m6i.large
    subnet_id: subnet-0123456789abcdef0
    iam_instance_profile: dev-box
    request_type: persistent
    interruption_behavior: stop
    valid_until: "2027-01-31T18:00:00Z"

- name: Diversify over types and zones with CreateFleet
  parkingspot.ec2.spot_request:
    name: batch
    count: 10
    launch_template:
      id: lt-0123456789abcdef0
    instance_types: [c6i.xlarge, c6a.xlarge, c7i.xlarge]
    subnet_ids: [subnet-aaaa1111, subnet-bbbb2222]

- name: Cancel the requests and terminate their instances
  parkingspot.ec2.spot_request:
    name: ci-runners
    state: absent
"""

RETURN = r"""
spot_requests:
  description: Spot requests of this name that are open, active or disabled (RunInstances creates one per instance).
expired_requests:
  description:
    - Persistent requests of this name whose validity has ended (EC2 no longer relaunches them).
    - Each has the keys of RV(spot_requests).
  returned: always
  type: list
  sample:
    - {spot_instance_request_id: sir-0f0e0d0c, state: active, valid_until: "2029-12-31T00:00:00+00:00", expired: true}
  elements: dict
instances:
  description: Live instances of this name after the run (in check mode, the ones that would remain).
actions:
  description: What the run did (or, in check mode, would do).
  returned: always
  type: dict
  contains:
    launch:
      description: Number of instances launched.
      type: int
      sample: 1
    launched:
      description: Ids of the instances launched (empty in check mode).
      type: list
      sample: [i-0a1b2c3d4e5f60718]
      elements: str
    terminated:
      description: Ids of the instances terminated.
      type: list
      sample: []
      elements: str
    cancelled:
      description: Ids of the spot requests cancelled.
      type: list
      sample: []
      elements: str
    tagged:
      description: Ids of existing instances whose tags were added, changed or purged.
      type: list
      sample: []
      elements: str
    renewed:
      description: Ids of expired persistent requests replaced by this run.
      type: list
      sample: []
      elements: str
    errors:
      description:
        - What an instant fleet could not launch (C(code), C(message), C(lifecycle), C(instance_type),
          C(subnet_id)). A launch that gets none of its instances fails the run with these; one that gets some
          warns, or with O(wait) terminates what it launched and fails.
      type: list
      elements: dict
extends_documentation_fragment:
  - parkingspot.ec2.shapes.requests
  - parkingspot.ec2.shapes.instances
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils import _spot_request
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import MAX_COUNT
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import MAX_WAIT_SECONDS
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range


def _validate(params, now):
    _identity.check_module_params(params)
    check_range(params["count"], "count", 0, MAX_COUNT)
    check_range(params["wait_timeout"], "wait_timeout", 1, MAX_WAIT_SECONDS, "seconds")
    if params["state"] == "present" and params["count"] > 0:
        _launch.validate_launch(params, now)


def do(module):
    params = module.params
    now = _launch.utcnow()
    _validate(params, now)
    if params["api"] == "request_spot_instances" and params["state"] == "present":
        module.warn(
            "api=request_spot_instances cannot set metadata_options: IMDSv2 is required only if the AMI or the"
            " account's instance metadata defaults require it"
        )
    client = module.client("ec2")
    module.exit_json(**_spot_request.reconcile(module, client, params, now))


def main():
    argument_spec = dict(
        _identity.NAMED_COUNT_ARGUMENT_SPEC,
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        terminate_instances=dict(type="bool", default=True),
        quota=_quota.QUOTA_ARGUMENT_SPEC,
        renew_expired=dict(type="bool", default=False),
        purge_tags=dict(type="bool", default=True),
    )
    argument_spec.update(_launch.LAUNCH_ARGUMENT_SPEC)
    argument_spec.update(_launch.SPOT_ARGUMENT_SPEC)
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
