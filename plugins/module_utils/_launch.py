# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Launch settings shared by spot_request, spot_block and spot_pool.

One argument spec, one validation and one translation into EC2 launch calls:
RunInstances with InstanceMarketOptions (one type), CreateFleet type=instant
(several types or subnets), or RequestSpotInstances (``api: request_spot_instances``,
for EC2-compatible clouds). Validation raises ``InputError`` naming the
option, before any call.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import json
from decimal import Decimal
from decimal import InvalidOperation
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _time
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

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
    """ISO 8601 to an aware UTC datetime; naive values are taken as UTC. ``InputError`` naming ``option`` if bad."""
    try:
        return _time.to_utc(value)
    except OverflowError as e:
        raise InputError(option, "%r is out of the range of representable times" % value) from e
    except (ValueError, TypeError) as e:
        raise InputError(option, "%r is not an ISO 8601 date and time" % value) from e


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def choose_api(params: Dict[str, Any]) -> str:
    if params["api"] != "auto":
        return params["api"]
    if len(params.get("instance_types") or []) > 1 or len(params.get("subnet_ids") or []) > 1:
        return "fleet"
    return "run_instances"


def validate_launch(params: Dict[str, Any], now: datetime.datetime, spot: bool = True, block: bool = False) -> None:
    """Reject unusable launch settings, before any call, with an ``InputError`` naming the option to change.

    ``block``: the launch goes through RunInstances per instance type and subnet (a lease's
    backstop is user data), so the settings a fleet cannot carry are fine there.
    """
    template = params.get("launch_template")
    if template and params.get("image_id"):
        raise InputError("launch_template", "mutually exclusive with image_id: give one of them")
    if not template and not params.get("image_id"):
        raise InputError("launch_template", "one of launch_template or image_id is required to launch instances")
    if template and bool(template.get("id")) == bool(template.get("name")):
        raise InputError("launch_template", "give exactly one of id or name")
    if params.get("image_id") and not (params.get("instance_type") or params.get("instance_types")):
        raise InputError("instance_type", "required with image_id (or give instance_types)")
    if params.get("instance_type") and params.get("instance_types"):
        raise InputError("instance_types", "mutually exclusive with instance_type")
    if params.get("subnet_id") and params.get("subnet_ids"):
        raise InputError("subnet_ids", "mutually exclusive with subnet_id")
    if params.get("max_price") is not None:
        try:
            price = Decimal(str(params["max_price"]))
        except InvalidOperation:
            price = Decimal(0)
        if not price.is_finite() or price <= 0:
            raise InputError("max_price", "%r is not a positive decimal" % params["max_price"])
    hop_limit = (params.get("metadata_options") or {}).get("http_put_response_hop_limit")
    if hop_limit is not None and not 1 <= hop_limit <= 64:
        raise InputError("metadata_options.http_put_response_hop_limit", "must be between 1 and 64")

    api = choose_api(params)
    if api == "request_spot_instances" and template:
        raise InputError("api", "request_spot_instances cannot use launch_template: give image_id")
    if api == "fleet" and not template:
        raise InputError(
            "launch_template",
            "instance_types/subnet_ids diversify through CreateFleet, which launches from a launch template:"
            " set launch_template",
        )
    if api == "fleet" and not block:
        # CreateFleet's launch template overrides have no security groups, user data or metadata tags.
        for option in ("security_group_ids", "user_data"):
            if params.get(option):
                raise InputError(
                    option,
                    "cannot reach instances launched by CreateFleet (instance_types/subnet_ids or api: fleet): its"
                    " launch template overrides have no such field; put it in the launch template or launch one"
                    " instance type in one subnet",
                )
        if (params.get("metadata_options") or {}).get("instance_metadata_tags") == "enabled":
            raise InputError(
                "metadata_options.instance_metadata_tags",
                "cannot reach instances launched by CreateFleet: set it in the launch template",
            )
    if not spot:
        return
    request_type = params.get("request_type", "one-time")
    behavior = params.get("interruption_behavior", "terminate")
    if behavior not in ("terminate", "stop", "hibernate"):
        raise InputError("interruption_behavior", "unknown value %r" % behavior)
    if request_type == "persistent" and behavior == "terminate" and api != "request_spot_instances":
        raise InputError(
            "interruption_behavior",
            "request_type=persistent needs interruption_behavior stop or hibernate with RunInstances"
            " (AWS refuses persistent spot that terminates); set interruption_behavior: stop",
        )
    if request_type == "one-time" and behavior != "terminate":
        raise InputError(
            "interruption_behavior",
            "%s is only allowed with request_type=persistent" % behavior,
        )
    if request_type == "persistent" and api == "fleet":
        raise InputError(
            "request_type",
            "persistent cannot be combined with instance_types/subnet_ids (instant fleets are"
            " one-time): use one instance type, or api: request_spot_instances",
        )
    if params.get("valid_until"):
        if request_type != "persistent":
            raise InputError("valid_until", "applies to persistent requests only (request_type=persistent)")
        if parse_time(params["valid_until"], "valid_until") <= now:
            raise InputError("valid_until", "%s is in the past" % params["valid_until"])


def template_spec(template: Dict[str, Any]) -> Dict[str, str]:
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


def _fleet_metadata_options(params: Dict[str, Any]) -> Dict[str, Any]:
    options = _metadata_options(params)
    options.pop("InstanceMetadataTags")  # not a member of FleetInstanceMetadataOptionsRequest
    return options


def token_seed(parts: List[str], seen_ids: List[str]) -> str:
    """The seed of a launch's client token: what names the launch, then the ids of all the run saw.

    ``parts`` name the launch (its owner, count and minute); ``seen_ids`` are the instances (and
    requests) the run read, terminated ones included, in any order. Two runs that see the same
    capacity and plan the same launch in the same minute get the same seed, so EC2 launches once;
    any change to what they saw gives a new one. The token sent is ``derive_token(seed, call)``.
    """
    text = "|".join(list(parts) + sorted(seen_ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derive_token(seed: str, kwargs: Dict[str, Any]) -> str:
    """The ClientToken of one launch call: its caller's seed and every other parameter of the call.

    EC2 refuses a token it has seen with other parameters (IdempotentParameterMismatch), so the
    token changes whenever the call does (tags, user data, counts) and stays the same for the
    same call: a retried or repeated identical launch happens once.
    """
    body = json.dumps({k: v for k, v in kwargs.items() if k != "ClientToken"}, sort_keys=True, default=str)
    return hashlib.sha256(("%s\n%s" % (seed, body)).encode("utf-8")).hexdigest()[:64]


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


def _encoded_user_data(text: str) -> str:
    """RequestSpotInstances takes user data already base64-encoded (botocore encodes it for RunInstances only)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


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
    """RunInstances arguments for up to ``count`` instances, tagged at launch.

    Spot asks for MinCount 1: EC2 launches what it can up to ``count`` instead of nothing
    when it is one instance short; the caller counts what came and plans the rest.
    ``client_token`` is a seed: the token sent is derived from it and the whole request.
    """
    minimum = 1 if market == "spot" else count
    kwargs: Dict[str, Any] = {"MinCount": minimum, "MaxCount": count, "MetadataOptions": _metadata_options(params)}
    if params.get("launch_template"):
        kwargs["LaunchTemplate"] = template_spec(params["launch_template"])
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
        kwargs["ClientToken"] = derive_token(client_token, kwargs)
    return kwargs


def _fleet_override(params: Dict[str, Any], instance_type: Optional[str], subnet_id: Optional[str], market: str):
    """One launch template override: where to launch, plus the per-instance settings an instant fleet takes."""
    override: Dict[str, Any] = {}
    if instance_type:
        override["InstanceType"] = instance_type
    if subnet_id:
        override["SubnetId"] = subnet_id
    if market == "spot" and params.get("max_price"):
        # Per instance and hour, as RunInstances' MaxPrice; SpotOptions.MaxTotalPrice would cap the whole fleet.
        override["MaxPrice"] = str(params["max_price"])
    override["MetadataOptions"] = _fleet_metadata_options(params)
    if params.get("key_name"):
        override["KeyName"] = params["key_name"]
    if params.get("iam_instance_profile"):
        override["IamInstanceProfile"] = _instance_profile(params["iam_instance_profile"])
    return override


def build_create_fleet(
    params: Dict[str, Any], count: int, tags: Dict[str, str], market: str = "spot", client_token=None, offerings=None
) -> Dict[str, Any]:
    """CreateFleet type=instant arguments: one override per (instance type, subnet).

    ``offerings`` (``[{instance_type, subnet_id}]``) narrows the overrides to those pairs.
    """
    types = params.get("instance_types") or [params.get("instance_type")]
    subnets = params.get("subnet_ids") or [params.get("subnet_id")]
    pairs = itertools.product(types, subnets)
    if offerings is not None:
        pairs = [(o.get("instance_type"), o.get("subnet_id")) for o in offerings]
    overrides = [_fleet_override(params, t, n, market) for t, n in pairs]
    kwargs: Dict[str, Any] = {
        "Type": "instant",
        "LaunchTemplateConfigs": [
            {"LaunchTemplateSpecification": template_spec(params["launch_template"]), "Overrides": overrides}
        ],
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": count,
            "DefaultTargetCapacityType": "spot" if market == "spot" else "on-demand",
        },
        "TagSpecifications": _aws.tag_specifications(("instance", "volume", "fleet"), tags),
    }
    if market == "spot":
        kwargs["SpotOptions"] = {
            "AllocationStrategy": params.get("allocation_strategy") or "price-capacity-optimized",
            "InstanceInterruptionBehavior": params.get("interruption_behavior") or "terminate",
        }
        kwargs["TargetCapacitySpecification"]["SpotTargetCapacity"] = count
    else:
        kwargs["TargetCapacitySpecification"]["OnDemandTargetCapacity"] = count
    if client_token:
        kwargs["ClientToken"] = derive_token(client_token, kwargs)
    return kwargs


def check_fleet_model(client, kwargs: Dict[str, Any]) -> None:
    """Refuse, before the call, fleet overrides the installed botocore cannot send.

    KeyName, IamInstanceProfile and MetadataOptions joined the instant-fleet overrides in
    botocore releases newer than the oldest one this collection supports; without them a
    diversified launch would silently fall back to whatever the template says (IMDSv1 included).
    """
    shape = client.meta.service_model.shape_for("FleetLaunchTemplateOverridesRequest")
    known = set(shape.members)
    missing = sorted({k for c in kwargs["LaunchTemplateConfigs"] for o in c["Overrides"] for k in o} - known)
    if missing:
        options = {
            "MetadataOptions": "metadata_options",
            "KeyName": "key_name",
            "IamInstanceProfile": "iam_instance_profile",
        }
        raise ParkingSpotError(
            message="this botocore's CreateFleet has no %s in launch template overrides, so %s cannot reach a"
            " diversified launch; upgrade botocore (and boto3)"
            % (", ".join(missing), ", ".join(options.get(m, m) for m in missing))
        )


def build_request_spot_instances(
    params: Dict[str, Any], count: int, tags: Dict[str, str], client_token: Optional[str] = None
) -> Dict[str, Any]:
    """RequestSpotInstances arguments (legacy API, kept for EC2-compatible clouds)."""
    spec = _instance_settings(params)
    if spec.get("UserData"):
        spec["UserData"] = _encoded_user_data(spec["UserData"])
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
        kwargs["ClientToken"] = derive_token(client_token, kwargs)
    return kwargs


def launch(
    client,
    params: Dict[str, Any],
    count: int,
    tags: Dict[str, str],
    market: str = "spot",
    client_token: Optional[str] = None,
    offerings: Optional[List[Dict[str, Any]]] = None,
    **run_extra: Any,
) -> Dict[str, Any]:
    """Launch up to ``count`` instances with one write call.

    Returns ``instances`` (what EC2 reported at launch: count these, do not read them back),
    ``spot_requests`` (legacy API only), ``errors`` (what an instant fleet could not launch,
    HTTP 200 beside its instances) and ``api``. ``client_token`` seeds the request's token.
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
        kwargs = build_create_fleet(params, count, tags, market, client_token, offerings)
        check_fleet_model(client, kwargs)
        fleet = _aws.create_fleet(client, **kwargs)
        result["errors"] = fleet["errors"]
        result["instances"] = fleet["instances"]
    else:
        result["spot_requests"] = _aws.request_spot_instances(
            client, **build_request_spot_instances(params, count, tags, client_token)
        )
    return result


def describe_errors(errors: List[Dict[str, Any]]) -> str:
    """CreateFleet errors in one line: code, message and where (type, subnet)."""
    seen = []
    for error in errors:
        where = "/".join(x for x in (error.get("instance_type"), error.get("subnet_id")) if x)
        text = "%s: %s%s" % (error.get("code"), error.get("message"), " (%s)" % where if where else "")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def request_instance_ids(spot_requests: List[Dict[str, Any]]) -> List[str]:
    return sorted(r["instance_id"] for r in spot_requests if r.get("instance_id"))
