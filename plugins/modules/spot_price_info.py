#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spot_price_info
short_description: Spot price statistics and recommendations per instance type and zone
version_added: 0.1.0
description:
  - Reads the EC2 spot price history of the last O(lookback_hours) for the chosen instance types
    in the chosen availability zones (or every zone of the region) and returns, per instance type
    and zone, the current, minimum, median, 90th percentile and maximum price, the number of
    samples, the price per vCPU and per GiB of memory, and the on-demand price when known.
  - Returns a ranked list of RV(recommendations) saying where spot is cheapest for the work and why.
  - Price history is read with one paginated DescribeSpotPriceHistory query for all types and zones
    (one request per page of up to 1000 records), never one request per type or zone.
  - On-demand prices come from a table shipped with the collection (us-east-1 Linux list prices,
    see RV(prices[].on_demand_source)) or from O(on_demand_prices). The AWS Pricing API is not used.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  instance_types:
    description:
      - Instance types to compare, for example V(m5.large).
      - Unknown instance types fail the module with an error naming this option.
      - At least one of O(instance_types) and O(instance_requirements) is required. When both are
        given, the requirements filter this list.
    type: list
    elements: str
  instance_requirements:
    description:
      - Choose instance types by attributes instead of (or in addition to) naming them.
      - Without O(instance_types) every current-generation type of the region that matches is compared.
    type: dict
    suboptions:
      min_vcpus:
        description: Minimum number of vCPUs.
        type: int
      max_vcpus:
        description: Maximum number of vCPUs.
        type: int
      min_memory_gib:
        description: Minimum memory in GiB.
        type: float
      architecture:
        description: Processor architecture.
        type: str
        choices: [x86_64, arm64, i386]
  zones:
    description:
      - Availability zone names to compare. All zones of the region when omitted.
      - Zones the region does not have fail the module with an error naming this option.
    type: list
    elements: str
  lookback_hours:
    description:
      - How many hours of price history to read, from 1 to 2160 (EC2 keeps 90 days).
    type: int
    default: 24
  product_description:
    description:
      - The product description of the price history, for example V(Linux/UNIX) or V(Windows).
    type: str
    default: Linux/UNIX
  on_demand_prices:
    description:
      - On-demand price per instance-hour in USD by instance type. Overrides and extends the
        shipped table; use it outside us-east-1 or for types the table lacks.
    type: dict
  max_recommendations:
    description:
      - Length of the RV(recommendations) list. V(0) returns no recommendations.
    type: int
    default: 5
notes:
  - Statistics are over samples (price changes), not time-weighted. The volatility is the
    coefficient of variation of the samples (population standard deviation divided by the mean).
  - Recommendations are ranked by the 90th percentile price per vCPU, so a zone that is cheap now
    but often spikes ranks below a slightly dearer, stable one.
  - Supports check mode; the module never changes anything.
extends_documentation_fragment:
  - parkingspot.ec2.aws
"""

EXAMPLES = r"""
- name: Where is spot cheapest for our runner types?
  parkingspot.ec2.spot_price_info:
    region: eu-west-1
    instance_types: [m5.large, m6i.large, c6i.xlarge, m6g.large]
    lookback_hours: 72
  register: spot_prices

- name: Show the best three choices
  ansible.builtin.debug:
    msg: "{{ item.instance_type }} in {{ item.zone }}: {{ item.reason }}"
  loop: "{{ spot_prices.recommendations[:3] }}"

- name: Any arm64 type with at least 4 vCPUs and 16 GiB in two zones
  parkingspot.ec2.spot_price_info:
    instance_requirements:
      min_vcpus: 4
      min_memory_gib: 16
      architecture: arm64
    zones: [us-east-1a, us-east-1b]
    on_demand_prices:
      m7g.xlarge: 0.1632
"""

RETURN = r"""
prices:
  description: Statistics per instance type and zone, sorted by instance type then zone.
  returned: always
  type: list
  elements: dict
  contains:
    instance_type: {description: Instance type., type: str, sample: m5.large}
    zone: {description: Availability zone., type: str, sample: us-east-1a}
    current: {description: Newest price in the window (USD per hour)., type: float, sample: 0.0351}
    current_at: {description: Time of the newest price (ISO 8601 UTC)., type: str, sample: "2024-05-01T10:00:00Z"}
    min: {description: Lowest price in the window., type: float, sample: 0.0312}
    median: {description: Median price., type: float, sample: 0.0365}
    p90: {description: 90th percentile price., type: float, sample: 0.0401}
    max: {description: Highest price in the window., type: float, sample: 0.0433}
    mean: {description: Mean of the samples., type: float, sample: 0.0368}
    samples: {description: Number of price records., type: int, sample: 17}
    volatility: {description: Coefficient of variation of the samples (0 = flat)., type: float, sample: 0.041}
    vcpus: {description: Default vCPU count., type: int, sample: 2}
    memory_gib: {description: Memory in GiB., type: float, sample: 8.0}
    price_per_vcpu: {description: Current price per vCPU-hour., type: float, sample: 0.0091}
    p90_per_vcpu: {description: 90th percentile price per vCPU-hour., type: float, sample: 0.01}
    price_per_gib: {description: Current price per GiB-hour., type: float, sample: 0.0046}
    on_demand_price: {description: 'On-demand price per hour, null when unknown.', type: float, sample: 0.096}
    on_demand_source:
      description: Where O(on_demand_prices) came from, V(table) (shipped us-east-1 table), V(user) or null.
      type: str
      sample: table
    savings_vs_on_demand_pct: {description: Current saving against on-demand in percent., type: float, sample: 63.4}
recommendations:
  description: Ranked (instance type, zone) choices, best first.
  returned: always
  type: list
  elements: dict
  contains:
    rank: {description: 1 is best., type: int, sample: 1}
    instance_type: {description: Instance type., type: str, sample: c6a.xlarge}
    zone: {description: Availability zone., type: str, sample: eu-west-1b}
    current: {description: Current price., type: float, sample: 0.0362}
    price_per_vcpu: {description: Current price per vCPU-hour., type: float, sample: 0.0091}
    p90_per_vcpu: {description: 90th percentile price per vCPU-hour (the rank key)., type: float, sample: 0.01}
    volatility: {description: Coefficient of variation., type: float, sample: 0.08}
    reasons:
      description: Why it is here, for example V(cheapest per vCPU), V(least volatile), V(lowest p90 per vCPU).
      type: list
      sample: ["lowest p90 per vCPU", "least volatile"]
      elements: str
    reason: {description: The reasons joined with semicolons., type: str, sample: "lowest p90 per vCPU; least volatile"}
instance_types:
  description: The instance types that were compared.
  returned: always
  type: list
  sample: [c6i.xlarge, c6a.xlarge, c7i.xlarge]
  elements: str
missing:
  description: Instance type and zone pairs asked for that had no price in the window (not offered as spot there).
  returned: always
  type: list
  sample: [{instance_type: c7i.xlarge, zone: eu-west-1c}]
  elements: dict
window:
  description: The price history window read.
  returned: always
  type: dict
  contains:
    start: {description: Start (ISO 8601 UTC)., type: str, sample: "2030-01-06T12:00:00Z"}
    end: {description: End (ISO 8601 UTC)., type: str, sample: "2030-01-07T12:00:00Z"}
on_demand_table:
  description: Which shipped table on-demand prices marked V(table) come from.
  returned: always
  type: str
  sample: "parkingspot shipped table: us-east-1 Linux on-demand list prices (USD/hour), checked 2024"
price_history_requests:
  description: Number of DescribeSpotPriceHistory requests made (one per page).
  returned: always
  type: int
  sample: 1
"""

import datetime

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_pricing
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import ON_DEMAND_TABLE_SOURCE
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import missing_instance_types
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import price_stats
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import recommend
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import select_instance_types
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import shape_from_instance_type_info
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import validate_lookback
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import validate_prices
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time


def validate(params):
    """Fail on bad input before any AWS call."""
    validate_lookback(params["lookback_hours"])
    if params["max_recommendations"] < 0:
        raise InputError("max_recommendations", "must be 0 or more")
    validate_prices(params["on_demand_prices"])
    req = params["instance_requirements"] or {}
    for key in ("min_vcpus", "max_vcpus"):
        if req.get(key) is not None and req[key] < 1:
            raise InputError(f"instance_requirements.{key}", "must be at least 1")
    if req.get("min_vcpus") and req.get("max_vcpus") and req["min_vcpus"] > req["max_vcpus"]:
        raise InputError("instance_requirements", "min_vcpus is larger than max_vcpus")
    if params["instance_types"] is not None and not [t for t in params["instance_types"] if t]:
        raise InputError("instance_types", "must name at least one instance type")


def resolve_instance_types(client, params):
    """``{type: shape}`` for the types to compare; unknown names fail naming ``instance_types``."""
    wanted = params["instance_types"]
    req = params["instance_requirements"] or {}
    if wanted:
        infos = _aws.describe_instance_types_raw(client, Filters=[{"Name": "instance-type", "Values": wanted}])
    else:
        infos = _aws.describe_instance_types_raw(client, Filters=[{"Name": "current-generation", "Values": ["true"]}])
    shapes = {i["InstanceType"]: shape_from_instance_type_info(i) for i in infos}
    if wanted:
        unknown = missing_instance_types(wanted, shapes)
        if unknown:
            raise InputError("instance_types", f"unknown instance type(s) in this region: {', '.join(unknown)}")
    if req:
        chosen = select_instance_types(
            shapes, req.get("min_vcpus"), req.get("max_vcpus"), req.get("min_memory_gib"), req.get("architecture")
        )
        if not chosen:
            raise InputError("instance_requirements", "no instance type matches these requirements")
        shapes = {name: shapes[name] for name in chosen}
    return shapes


def resolve_zones(client, zones):
    if not zones:
        return None
    known = {z["ZoneName"] for z in _aws_pricing.describe_availability_zones(client, AllAvailabilityZones=True)}
    unknown = [z for z in zones if z not in known]
    if unknown:
        raise InputError("zones", f"unknown availability zone(s) in this region: {', '.join(unknown)}")
    return list(zones)


def do(module):
    params = module.params
    validate(params)
    client = module.client("ec2")
    shapes = resolve_instance_types(client, params)
    zones = resolve_zones(client, params["zones"])
    end = datetime.datetime.now(datetime.timezone.utc)
    start = end - datetime.timedelta(hours=params["lookback_hours"])
    query = {
        "InstanceTypes": sorted(shapes),
        "ProductDescriptions": [params["product_description"]],
        "StartTime": start,
        "EndTime": end,
    }
    if zones:
        query["Filters"] = [{"Name": "availability-zone", "Values": zones}]
    records, pages = _aws_pricing.describe_spot_price_history(client, **query)
    stats = price_stats(records, shapes, params["on_demand_prices"])
    seen = {(s["instance_type"], s["zone"]) for s in stats}
    missing = []
    if zones:
        missing = [{"instance_type": t, "zone": z} for t in sorted(shapes) for z in zones if (t, z) not in seen]
    else:
        priced_types = {t for t, _z in seen}
        missing = [{"instance_type": t, "zone": None} for t in sorted(shapes) if t not in priced_types]
    module.exit_json(
        changed=False,
        prices=stats,
        recommendations=recommend(stats, params["max_recommendations"]),
        instance_types=sorted(shapes),
        missing=missing,
        window={"start": format_time(start), "end": format_time(end)},
        on_demand_table=ON_DEMAND_TABLE_SOURCE,
        price_history_requests=pages,
    )


def main():
    argument_spec = {
        "instance_types": {"type": "list", "elements": "str"},
        "instance_requirements": {
            "type": "dict",
            "options": {
                "min_vcpus": {"type": "int"},
                "max_vcpus": {"type": "int"},
                "min_memory_gib": {"type": "float"},
                "architecture": {"type": "str", "choices": ["x86_64", "arm64", "i386"]},
            },
        },
        "zones": {"type": "list", "elements": "str"},
        "lookback_hours": {"type": "int", "default": 24},
        "product_description": {"type": "str", "default": "Linux/UNIX"},
        "on_demand_prices": {"type": "dict"},
        "max_recommendations": {"type": "int", "default": 5},
    }
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        required_one_of=[["instance_types", "instance_requirements"]],
        supports_check_mode=True,
    )
    _module.run(module, do)


if __name__ == "__main__":
    main()
