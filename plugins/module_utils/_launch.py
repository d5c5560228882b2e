# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Launch settings shared by spot_request, spot_block and spot_pool.

One argument spec, one validation and one translation into EC2 launch calls:
RunInstances with InstanceMarketOptions (one type), CreateFleet type=instant
(several types or subnets), or RequestSpotInstances (``api: request_spot_instances``,
for EC2-compatible clouds). Validation raises ``ParkingSpotError`` naming the
option, before any write call.
"""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal
from decimal import InvalidOperation
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _time
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError

LAUNCH_ARGUMENT_SPEC: Dict[str, Any] = dict(
    launch_template=dict(
        type="dict",
        options=dict(
            id=dict(type="str"),
            name=dict(type="str"),
            version=dict(type="str", default="$Default"),
        ),
    ),
    image_id=dict(type="str"),
    instance_type=dict(type="str"),
    instance_types=dict(type="list", elements="str", default=[]),
    subnet_id=dict(type="str"),
    subnet_ids=dict(type="list", elements="str", default=[]),
    security_group_ids=dict(type="list", elements="str", default=[]),
    key_name=dict(type="str", no_log=False),
    iam_instance_profile=dict(type="str"),
    user_data=dict(type="str"),
    allocation_strategy=dict(
        type="str",
        default="price-capacity-optimized",
        choices=["price-capacity-optimized", "capacity-optimized", "lowest-price", "diversified"],
    ),
    max_price=dict(type="str"),
    metadata_options=dict(
        type="dict",
        default={},
        options=dict(
            http_tokens=dict(type="str", default="required", choices=["required", "optional"]),
            http_endpoint=dict(type="str", default="enabled", choices=["enabled", "disabled"]),
            http_put_response_hop_limit=dict(type="int", default=2),
            instance_metadata_tags=dict(type="str", default="disabled", choices=["enabled", "disabled"]),
        ),
    ),
    tags=dict(type="dict"),
    api=dict(type="str", default="auto", choices=["auto", "run_instances", "fleet", "request_spot_instances"]),
)

SPOT_ARGUMENT_SPEC: Dict[str, Any] = dict(
    request_type=dict(type="str", default="one-time", choices=["one-time", "persistent"]),
    interruption_behavior=dict(type="str", default="terminate", choices=["terminate", "stop", "hibernate"]),
    valid_until=dict(type="str"),
)

RESOURCE_TAG_TYPES = ("instance", "volume")


def parse_time(value: str, option: str) -> datetime.datetime:
    """ISO 8601 to an aware UTC datetime; naive values are taken as UTC."""
    try:
        return _time.to_utc(value)
    except OverflowError:
        raise ParkingSpotError(message="%s: %r is out of the range of representable times" % (option, value))
    except (ValueError, TypeError):
        raise ParkingSpotError(message="%s: %r is not an ISO 8601 date and time" % (option, value))


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def choose_api(params: Dict[str, Any]) -> str:
    if params["api"] != "auto":
        return params["api"]
    if len(params.get("instance_types") or []) > 1 or len(params.get("subnet_ids") or []) > 1:
        return "fleet"
    return "run_instances"


def validate_launch(params: Dict[str, Any], now: datetime.datetime, spot: bool = True) -> None:
    """Reject unusable launch settings with a message naming the option."""
    template = params.get("launch_template")
    if template and params.get("image_id"):
        raise ParkingSpotError(message="launch_template and image_id are mutually exclusive: give one of them")
    if not template and not params.get("image_id"):
        raise ParkingSpotError(message="one of launch_template or image_id is required to launch instances")
    if template and bool(template.get("id")) == bool(template.get("name")):
        raise ParkingSpotError(message="launch_template: give exactly one of id or name")
    if params.get("image_id") and not (params.get("instance_type") or params.get("instance_types")):
        raise ParkingSpotError(message="instance_type (or instance_types) is required with image_id")
    if params.get("instance_type") and params.get("instance_types"):
        raise ParkingSpotError(message="instance_type and instance_types are mutually exclusive")
    if params.get("subnet_id") and params.get("subnet_ids"):
        raise ParkingSpotError(message="subnet_id and subnet_ids are mutually exclusive")
    if params.get("max_price") is not None:
        try:
            price = Decimal(str(params["max_price"]))
        except InvalidOperation:
            price = Decimal(0)
        if not price.is_finite() or price <= 0:
            raise ParkingSpotError(message="max_price: %r is not a positive decimal" % params["max_price"])
    hop_limit = (params.get("metadata_options") or {}).get("http_put_response_hop_limit")
    if hop_limit is not None and not 1 <= hop_limit <= 64:
        raise ParkingSpotError(message="metadata_options.http_put_response_hop_limit must be between 1 and 64")

    api = choose_api(params)
    if api == "request_spot_instances" and template:
        raise ParkingSpotError(message="api=request_spot_instances cannot use launch_template: give image_id")
    if api == "fleet" and not template:
        raise ParkingSpotError(
            message="instance_types/subnet_ids diversify through CreateFleet, which launches from a launch template:"
            " set launch_template"
        )
    if not spot:
        return
    request_type = params.get("request_type", "one-time")
    behavior = params.get("interruption_behavior", "terminate")
    if behavior not in ("terminate", "stop", "hibernate"):
        raise ParkingSpotError(message="interruption_behavior: unknown value %r" % behavior)
    if request_type == "persistent" and behavior == "terminate" and api != "request_spot_instances":
        raise ParkingSpotError(
            message="request_type=persistent needs interruption_behavior stop or hibernate with RunInstances"
            " (AWS refuses persistent spot that terminates); set interruption_behavior: stop"
        )
    if request_type == "one-time" and behavior != "terminate":
        raise ParkingSpotError(
            message="interruption_behavior=%s is only allowed with request_type=persistent" % behavior
        )
    if request_type == "persistent" and api == "fleet":
        raise ParkingSpotError(
            message="request_type=persistent cannot be combined with instance_types/subnet_ids (instant fleets are"
            " one-time): use one instance type, or api: request_spot_instances"
        )
    if params.get("valid_until"):
        if request_type != "persistent":
            raise ParkingSpotError(message="valid_until applies to persistent requests only (request_type=persistent)")
        if parse_time(params["valid_until"], "valid_until") <= now:
            raise ParkingSpotError(message="valid_until: %s is in the past" % params["valid_until"])


def _template_spec(template: Dict[str, Any]) -> Dict[str, str]:
    spec = {"Version": template.get("version") or "$Default"}
    if template.get("id"):
        spec["LaunchTemplateId"] = template["id"]
    else:
        spec["LaunchTemplateName"] = template["name"]
    return spec


def _metadata_options(params: Dict[str, Any]) -> Dict[str, Any]:
    options = params.get("metadata_options") or {}
    return {
        "HttpTokens": options.get("http_tokens") or "required",
        "HttpEndpoint": options.get("http_endpoint") or "enabled",
        "HttpPutResponseHopLimit": options.get("http_put_response_hop_limit") or 2,
        "InstanceMetadataTags": options.get("instance_metadata_tags") or "disabled",
    }


def _instance_profile(value: Optional[str]) -> Dict[str, str]:
    return {"Arn": value} if value.startswith("arn:") else {"Name": value}


def spot_options(params: Dict[str, Any], block_minutes: Optional[int] = None) -> Dict[str, Any]:
    options: Dict[str, Any] = {
        "SpotInstanceType": params.get("request_type") or "one-time",
        "InstanceInterruptionBehavior": params.get("interruption_behavior") or "terminate",
    }
    if params.get("max_price"):
        options["MaxPrice"] = str(params["max_price"])
    if params.get("valid_until"):
        options["ValidUntil"] = parse_time(params["valid_until"], "valid_until")
    if block_minutes:
        options["BlockDurationMinutes"] = block_minutes
    return options


def _instance_settings(
    params: Dict[str, Any],
    instance_type: Optional[str] = None,
    subnet_id: Optional[str] = None,
    user_data: Optional[str] = None,
) -> Dict[str, Any]:
    """The per-instance launch fields RunInstances and RequestSpotInstances' LaunchSpecification share."""
    settings: Dict[str, Any] = {}
    if params.get("image_id"):
        settings["ImageId"] = params["image_id"]
    chosen_type = instance_type or params.get("instance_type") or (params.get("instance_types") or [None])[0]
    if chosen_type:
        settings["InstanceType"] = chosen_type
    chosen_subnet = subnet_id or params.get("subnet_id") or (params.get("subnet_ids") or [None])[0]
    if chosen_subnet:
        settings["SubnetId"] = chosen_subnet
    if params.get("security_group_ids"):
        settings["SecurityGroupIds"] = list(params["security_group_ids"])
    if params.get("key_name"):
        settings["KeyName"] = params["key_name"]
    if params.get("iam_instance_profile"):
        settings["IamInstanceProfile"] = _instance_profile(params["iam_instance_profile"])
    data = user_data if user_data is not None else params.get("user_data")
    if data:
        settings["UserData"] = data
    return settings


def build_run_instances(
    params: Dict[str, Any],
    count: int,
    tags: Dict[str, str],
    market: str = "spot",
    client_token: Optional[str] = None,
    user_data: Optional[str] = None,
    shutdown_behavior: Optional[str] = None,
    block_minutes: Optional[int] = None,
    instance_type: Optional[str] = None,
    subnet_id: Optional[str] = None,
) -> Dict[str, Any]:
    """RunInstances arguments for ``count`` instances, tagged at launch."""
    kwargs: Dict[str, Any] = {"MinCount": count, "MaxCount": count, "MetadataOptions": _metadata_options(params)}
    if params.get("launch_template"):
        kwargs["LaunchTemplate"] = _template_spec(params["launch_template"])
    kwargs.update(_instance_settings(params, instance_type, subnet_id, user_data))
    if shutdown_behavior:
        kwargs["InstanceInitiatedShutdownBehavior"] = shutdown_behavior
    if market == "spot":
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options(params, block_minutes)}
        resource_types = RESOURCE_TAG_TYPES + ("spot-instances-request",)
    else:
        resource_types = RESOURCE_TAG_TYPES
    kwargs["TagSpecifications"] = _aws.tag_specifications(resource_types, tags)
    if client_token:
        kwargs["ClientToken"] = client_token
    return kwargs


def build_create_fleet(
    params: Dict[str, Any], count: int, tags: Dict[str, str], market: str = "spot", client_token=None
) -> Dict[str, Any]:
    """CreateFleet type=instant arguments: one override per (instance type, subnet)."""
    types = params.get("instance_types") or [params.get("instance_type")]
    subnets = params.get("subnet_ids") or [params.get("subnet_id")]
    overrides = []
    for instance_type, subnet_id in itertools.product(types, subnets):
        override = {}
        if instance_type:
            override["InstanceType"] = instance_type
        if subnet_id:
            override["SubnetId"] = subnet_id
        overrides.append(override)
    kwargs: Dict[str, Any] = {
        "Type": "instant",
        "LaunchTemplateConfigs": [
            {"LaunchTemplateSpecification": _template_spec(params["launch_template"]), "Overrides": overrides}
        ],
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": count,
            "DefaultTargetCapacityType": "spot" if market == "spot" else "on-demand",
        },
        "TagSpecifications": _aws.tag_specifications(("instance", "fleet"), tags),
    }
    if market == "spot":
        kwargs["SpotOptions"] = {
            "AllocationStrategy": params.get("allocation_strategy") or "price-capacity-optimized",
            "InstanceInterruptionBehavior": params.get("interruption_behavior") or "terminate",
        }
        kwargs["TargetCapacitySpecification"]["SpotTargetCapacity"] = count
        if params.get("max_price"):
            kwargs["SpotOptions"]["MaxTotalPrice"] = str(Decimal(str(params["max_price"])) * count)
    else:
        kwargs["TargetCapacitySpecification"]["OnDemandTargetCapacity"] = count
    if client_token:
        kwargs["ClientToken"] = client_token
    return kwargs


def build_request_spot_instances(
    params: Dict[str, Any], count: int, tags: Dict[str, str], client_token: Optional[str] = None
) -> Dict[str, Any]:
    """RequestSpotInstances arguments (legacy API, kept for EC2-compatible clouds)."""
    spec = _instance_settings(params)
    kwargs: Dict[str, Any] = {
        "InstanceCount": count,
        "Type": params.get("request_type") or "one-time",
        "LaunchSpecification": spec,
        "InstanceInterruptionBehavior": params.get("interruption_behavior") or "terminate",
        "TagSpecifications": _aws.tag_specifications(("spot-instances-request",), tags),
    }
    if params.get("max_price"):
        kwargs["SpotPrice"] = str(params["max_price"])
    if params.get("valid_until"):
        kwargs["ValidUntil"] = parse_time(params["valid_until"], "valid_until")
    if client_token:
        kwargs["ClientToken"] = client_token
    return kwargs


def launch(
    client,
    params: Dict[str, Any],
    count: int,
    tags: Dict[str, str],
    market: str = "spot",
    client_token: Optional[str] = None,
    **run_extra: Any,
) -> Dict[str, Any]:
    """Launch ``count`` instances with one write call (plus one CreateTags for the legacy API).

    Returns ``instances`` (what EC2 reported at launch), ``spot_requests``
    (legacy API only), ``errors`` (CreateFleet partial failures) and ``api``.
    """
    api = choose_api(params)
    if market != "spot" and api == "request_spot_instances":
        api = "run_instances"  # on-demand capacity never goes through spot requests
    result: Dict[str, Any] = {"api": api, "instances": [], "spot_requests": [], "errors": []}
    if count <= 0:
        return result
    if api == "run_instances":
        kwargs = build_run_instances(params, count, tags, market=market, client_token=client_token, **run_extra)
        result["instances"] = _aws.run_instances(client, **kwargs)
    elif api == "fleet":
        fleet = _aws.create_fleet(client, **build_create_fleet(params, count, tags, market, client_token))
        result["errors"] = fleet["errors"]
        if fleet["instance_ids"]:
            result["instances"] = _aws.describe_instances_by_ids(client, fleet["instance_ids"])
    else:
        result["spot_requests"] = _aws.request_spot_instances(
            client, **build_request_spot_instances(params, count, tags, client_token)
        )
    return result


def request_instance_ids(spot_requests: List[Dict[str, Any]]) -> List[str]:
    return sorted(r["instance_id"] for r in spot_requests if r.get("instance_id"))
