#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_request_info
short_description: Describe spot requests and their instances
version_added: 0.1.0
description:
  - The administrator's view of spot capacity. Finds spot requests by ParkingSpot name, by request state and by
    any EC2 filter, and the instances behind them.
  - Reads are paginated and filtered on the server side; nothing is ever written.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  names:
    description:
      - Only requests and instances whose C(parkingspot:request) tag is exactly one of these names (C(*) and C(?)
        are no wildcards here); 1 to 256 characters each, without control characters.
    type: list
    elements: str
    default: []
  states:
    description: Only spot requests in these states.
    type: list
    elements: str
    choices: [open, active, closed, cancelled, failed, disabled]
    default: []
  filters:
    description:
      - EC2 filters for DescribeSpotInstanceRequests, as a dict of filter name to value or list of values,
        for example C(tag:team) or C(launch.instance-type).
      - These are passed to EC2 as given, in EC2's own filter syntax, where C(*) and C(?) are wildcards (escape
        them as C(\*) and C(\?) to match them literally). Only O(names) are escaped by the module.
    type: dict
    default: {}
  include_instances:
    description: Also describe the instances (spot instances tagged with O(names), and those of matched requests).
    type: bool
    default: true
  instance_filters:
    description:
      - EC2 filters for DescribeInstances, as a dict. When given, the spot instances matching them are returned
        too, for example C(tag:owner=build) to find a team's spot fleet whatever launched it.
      - Passed to EC2 as given, wildcards included, like O(filters).
    type: dict
    default: {}
extends_documentation_fragment:
  - parkingspot.ec2.aws
notes:
  - Supports check mode.
  - Spot instances launched with RunInstances each have a spot request; with O(names) both are found through the
    name tag, which ParkingSpot puts on requests, instances and volumes at launch.
"""

EXAMPLES = r"""
- name: Everything the ci-runners request holds
  parkingspot.ec2.spot_request_info:
    names: [ci-runners]
  register: runners

- name: Open persistent requests of the build team
  parkingspot.ec2.spot_request_info:
    states: [open, active]
    filters:
      type: persistent
      "tag:team": build
    include_instances: false
"""

RETURN = r"""
spot_requests:
  description: Matching spot requests (empty list when none match).
instances:
  description: Matching instances (empty list when none match or O(include_instances=false)).
extends_documentation_fragment:
  - parkingspot.ec2.shapes.requests
  - parkingspot.ec2.shapes.instances
"""

import datetime

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.transformation import ansible_dict_to_boto3_filter_list
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REQUEST


def request_filters(params):
    filters = ansible_dict_to_boto3_filter_list(params["filters"])
    if params["names"]:
        filters.append(_identity.names_filter(TAG_REQUEST, params["names"]))
    if params["states"]:
        filters.append({"Name": "state", "Values": sorted(params["states"])})
    return filters


def find_instances(client, params, requests):
    found = {}
    if params["instance_filters"]:
        filters = ansible_dict_to_boto3_filter_list(params["instance_filters"])
        matched = _aws.describe_instances_by_tags(client, {}, states=_aws.ALL_STATES, filters=filters)
        found.update((i["instance_id"], i) for i in matched if i["market"] == "spot")
    if params["names"]:
        tagged = _aws.describe_instances_by_tags(
            client, {}, states=_aws.ALL_STATES, filters=[_identity.names_filter(TAG_REQUEST, params["names"])]
        )
        tagged = _identity.keep_named(tagged, TAG_REQUEST, params["names"])
        found.update((i["instance_id"], i) for i in tagged)
    wanted = sorted({r["instance_id"] for r in requests if r.get("instance_id")} - set(found))
    if wanted:
        found.update((i["instance_id"], i) for i in _aws.describe_instances_by_ids(client, wanted))
    return [found[key] for key in sorted(found)]


def do(module):
    params = module.params
    _identity.check_names(params["names"])
    client = module.client("ec2")
    requests = _aws.describe_spot_requests(client, filters=request_filters(params))
    if params["names"]:
        requests = _identity.keep_named(requests, TAG_REQUEST, params["names"])
    requests.sort(key=lambda r: r["spot_instance_request_id"])
    now = datetime.datetime.now(datetime.timezone.utc)
    instances = find_instances(client, params, requests) if params["include_instances"] else []
    module.exit_json(
        changed=False,
        spot_requests=[_usage.with_validity(r, now) for r in requests],
        instances=[_usage.with_age(i, now) for i in instances],
    )


def main():
    argument_spec = dict(
        names=dict(type="list", elements="str", default=[]),
        states=dict(
            type="list",
            elements="str",
            default=[],
            choices=["open", "active", "closed", "cancelled", "failed", "disabled"],
        ),
        filters=dict(type="dict", default={}),
        include_instances=dict(type="bool", default=True),
        instance_filters=dict(type="dict", default={}),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
