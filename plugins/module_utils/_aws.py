# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The AWS calls ParkingSpot makes (EC2, Service Quotas, Auto Scaling), one small function each.

This is the one call layer: every function is wrapped by ``SpotErrorHandler``
(botocore errors become ``AnsibleEC2Error``, the one AWS error type the modules
catch) and by ``AWSRetry.jittered_backoff`` (throttling is retried with jitter).
``_aws_volumes.py`` (EBS volumes, snapshots, images) and ``_aws_pricing.py``
(price history, zones, the spot data feed in S3) are built the same way from the
same pieces; they are separate files so that each feature's IAM policy can be
derived from the files it uses (docs/iam/actions.yml). Launch calls deliberately do *not* retry capacity errors: the
callers decide what an ``InsufficientInstanceCapacity`` means (fall back to
on-demand, cancel, fail).

Describe calls are paginated with ``MaxResults=1000`` and filtered by tag on the
server side, so reading a pool of N instances costs ceil(N/1000) calls.
"""

from __future__ import annotations

import re
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.ec2 import AnsibleEC2Error
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity

try:
    from botocore.exceptions import ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

# Largest batch EC2 accepts for instance id lists and MaxResults.
BATCH = 1000
# EC2 refuses a call with more than 200 values across its filters (FilterLimitExceeded).
FILTER_VALUES = 200

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
ALL_STATES = LIVE_STATES + ["shutting-down", "terminated"]
OPEN_REQUEST_STATES = ["open", "active", "disabled"]
# Instance state reasons that mean the cloud took a spot instance back (terminated, or stopped).
SPOT_INTERRUPTION_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")


class ParkingSpotError(AnsibleEC2Error):
    """An error ParkingSpot raises itself: bad input, a timeout, an unsafe action."""


class SpotErrorHandler(AWSErrorHandler):
    """The one error handler. A subclass lists in ``MISSING`` the error codes that mean "not there":
    its list handlers then return their default and its deletion handlers ``False``."""

    _CUSTOM_EXCEPTION = AnsibleEC2Error
    MISSING: tuple = ()

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code(list(cls.MISSING))


def error_code(exc: BaseException) -> Optional[str]:
    """The AWS error code behind an exception raised by this layer, if any."""
    inner = getattr(exc, "exception", None) or exc
    if isinstance(inner, ClientError):
        return inner.response.get("Error", {}).get("Code")
    return None


def chunks(items: List[Any], size: int = BATCH) -> Iterable[List[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def paginate(client, operation: str, result_key: str, **params) -> tuple:
    """Every record of a paginated call and the number of pages (requests) it took."""
    records, pages = [], 0
    for page in client.get_paginator(operation).paginate(**params):
        pages += 1
        records.extend(page.get(result_key, []))
    return records, pages


def tag_filters(tags: Dict[str, str]) -> List[Dict[str, Any]]:
    """Filters matching every tag in ``tags`` literally (values escaped: ``*`` and ``?`` are no wildcards)."""
    return _identity.tag_filters(tags)


def tag_specifications(resource_types: Iterable[str], tags: Dict[str, str]) -> List[Dict[str, Any]]:
    tag_list = [{"Key": key, "Value": str(value)} for key, value in sorted(tags.items())]
    return [{"ResourceType": resource_type, "Tags": tag_list} for resource_type in resource_types]


# --- reads -------------------------------------------------------------------


@SpotErrorHandler.list_error_handler("describe instances", [])
@AWSRetry.jittered_backoff()
def describe_instances_raw(client, **params) -> List[Dict[str, Any]]:
    """Instances as EC2 returns them, out of their reservations, every page (pass MaxResults=1000)."""
    paginator = client.get_paginator("describe_instances")
    pages = paginator.paginate(**params).build_full_result()
    return [instance for reservation in pages.get("Reservations", []) for instance in reservation["Instances"]]


def describe_instances_by_tags(client, tags: Dict[str, str], states: Optional[List[str]] = None, filters=None):
    """Instances carrying every tag in ``tags`` exactly, in ``states`` (default: live ones)."""
    all_filters = tag_filters(tags) + list(filters or [])
    all_filters.append({"Name": "instance-state-name", "Values": list(states or LIVE_STATES)})
    found = [normalize_instance(i) for i in describe_instances_raw(client, Filters=all_filters, MaxResults=BATCH)]
    return _identity.keep_exact(found, tags)


@SpotErrorHandler.common_error_handler("describe instances")
@AWSRetry.jittered_backoff()
def _describe_instances_by_id_batch(client, instance_ids: List[str]) -> List[Dict[str, Any]]:
    # InstanceIds takes no MaxResults: EC2 answers every id of the call.
    pages = client.get_paginator("describe_instances").paginate(InstanceIds=instance_ids).build_full_result()
    return [instance for reservation in pages.get("Reservations", []) for instance in reservation["Instances"]]


def _error_message(exc: BaseException) -> str:
    inner = getattr(exc, "exception", None) or exc
    if isinstance(inner, ClientError):
        return inner.response.get("Error", {}).get("Message") or ""
    return str(exc)


def describe_instances_by_ids(client, instance_ids: List[str]) -> List[Dict[str, Any]]:
    """Instances by id, 1000 ids a call (``InstanceIds``, not a filter: filters take 200 values).

    EC2 is eventually consistent: an id a launch has just returned may not be visible yet,
    and EC2 then fails the whole call with InvalidInstanceID.NotFound naming it. Such ids are
    left out of the answer (the caller sees them missing and may ask again later).
    """
    found: List[Dict[str, Any]] = []
    for batch in chunks(sorted(set(instance_ids))):
        while batch:
            try:
                found.extend(_describe_instances_by_id_batch(client, batch))
                break
            except AnsibleEC2Error as e:
                if error_code(e) != "InvalidInstanceID.NotFound":
                    raise
                unknown = set(re.findall(r"i-[0-9a-f]+", _error_message(e))) & set(batch)
                if not unknown:
                    raise
                batch = [instance_id for instance_id in batch if instance_id not in unknown]
    return [normalize_instance(i) for i in found]


@SpotErrorHandler.list_error_handler("describe spot instance requests", [])
@AWSRetry.jittered_backoff()
def describe_spot_requests_raw(client, **params) -> List[Dict[str, Any]]:
    paginator = client.get_paginator("describe_spot_instance_requests")
    return paginator.paginate(**params).build_full_result().get("SpotInstanceRequests", [])


def describe_spot_requests(client, filters: Optional[List[Dict[str, Any]]] = None, request_ids=None):
    """Spot requests matching ``filters``; with ``request_ids``, only those (one call per 200 ids)."""
    if not request_ids:
        return [normalize_spot_request(r) for r in describe_spot_requests_raw(client, Filters=list(filters or []))]
    found = []
    used = sum(len(f.get("Values") or []) for f in filters or [])
    for batch in chunks(sorted(set(request_ids)), max(1, FILTER_VALUES - used)):
        wanted = list(filters or []) + [{"Name": "spot-instance-request-id", "Values": batch}]
        found.extend(describe_spot_requests_raw(client, Filters=wanted))
    return [normalize_spot_request(r) for r in found]


# --- writes ------------------------------------------------------------------


@SpotErrorHandler.common_error_handler("run instances")
@AWSRetry.jittered_backoff()
def run_instances(client, **params) -> List[Dict[str, Any]]:
    return [normalize_instance(i) for i in client.run_instances(**params)["Instances"]]


@SpotErrorHandler.common_error_handler("create fleet")
@AWSRetry.jittered_backoff()
def create_fleet(client, **params) -> Dict[str, Any]:
    """An instant fleet: what it launched and what it could not (HTTP 200 with ``Errors`` beside ``Instances``).

    The launched instances are taken from the response itself: reading them back by id
    would miss the ones EC2 does not show yet.
    """
    response = client.create_fleet(**params)
    instances = []
    for group in response.get("Instances", []):
        overrides = (group.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
        for instance_id in group.get("InstanceIds", []):
            instances.append(
                {
                    "instance_id": instance_id,
                    "instance_type": group.get("InstanceType") or overrides.get("InstanceType"),
                    "subnet_id": overrides.get("SubnetId"),
                    "market": "spot" if group.get("Lifecycle") == "spot" else "on-demand",
                }
            )
    errors = []
    for e in response.get("Errors", []):
        overrides = (e.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
        errors.append(
            {
                "code": e.get("ErrorCode"),
                "message": e.get("ErrorMessage"),
                "lifecycle": e.get("Lifecycle"),
                "instance_type": overrides.get("InstanceType"),
                "subnet_id": overrides.get("SubnetId"),
            }
        )
    return {
        "fleet_id": response.get("FleetId"),
        "instance_ids": [i["instance_id"] for i in instances],
        "instances": instances,
        "errors": errors,
    }


@SpotErrorHandler.common_error_handler("request spot instances")
@AWSRetry.jittered_backoff()
def request_spot_instances(client, **params) -> List[Dict[str, Any]]:
    return [normalize_spot_request(r) for r in client.request_spot_instances(**params)["SpotInstanceRequests"]]


@SpotErrorHandler.common_error_handler("cancel spot instance requests")
@AWSRetry.jittered_backoff()
def _cancel_spot_requests(client, request_ids: List[str]) -> None:
    client.cancel_spot_instance_requests(SpotInstanceRequestIds=request_ids)


def in_batches(call, client, ids: List[str], *args) -> int:
    """Call ``call(client, batch, *args)`` for every 1000 distinct ids; returns the number of calls."""
    batches = list(chunks(sorted(set(ids))))
    for batch in batches:
        call(client, batch, *args)
    return len(batches)


def cancel_spot_requests(client, request_ids: List[str]) -> int:
    """Cancel requests in batches; returns the number of calls made."""
    return in_batches(_cancel_spot_requests, client, request_ids)


@SpotErrorHandler.common_error_handler("terminate instances")
@AWSRetry.jittered_backoff(catch_extra_error_codes=["IncorrectInstanceState"])
def _terminate(client, instance_ids: List[str]) -> None:
    client.terminate_instances(InstanceIds=instance_ids)


def terminate_instances(client, instance_ids: List[str]) -> int:
    """Terminate in batches of 1000 ids; returns the number of calls made."""
    return in_batches(_terminate, client, instance_ids)


@SpotErrorHandler.common_error_handler("tag resources")
@AWSRetry.jittered_backoff(catch_extra_error_codes=["InvalidInstanceID.NotFound"])
def _create_tags(client, resource_ids: List[str], tags: List[Dict[str, str]]) -> None:
    client.create_tags(Resources=resource_ids, Tags=tags)


def create_tags(client, resource_ids: List[str], tags: Dict[str, str]) -> int:
    """Put the same tags on many resources: one call per 1000 ids, never one per resource."""
    tag_list = [{"Key": key, "Value": str(value)} for key, value in sorted(tags.items())]
    return in_batches(_create_tags, client, resource_ids, tag_list)


@SpotErrorHandler.common_error_handler("untag resources")
@AWSRetry.jittered_backoff(catch_extra_error_codes=["InvalidInstanceID.NotFound"])
def _delete_tags(client, resource_ids: List[str], keys: List[Dict[str, str]]) -> None:
    client.delete_tags(Resources=resource_ids, Tags=keys)


def delete_tags(client, resource_ids: List[str], keys: Iterable[str]) -> int:
    """Remove the tag keys from many resources: one call per 1000 ids."""
    key_list = [{"Key": key} for key in sorted(set(keys))]
    return in_batches(_delete_tags, client, resource_ids, key_list)


# --- shapes ------------------------------------------------------------------


def _iso(value) -> Optional[str]:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def tag_dict(tags) -> Dict[str, str]:
    """EC2's ``[{"Key", "Value"}]`` as a plain dict (a dict passes through)."""
    if isinstance(tags, dict):
        return dict(tags)
    return boto3_tag_list_to_ansible_dict(tags or [])


def instance_market(raw: Dict[str, Any]) -> str:
    """``spot`` or ``on-demand`` for an instance as EC2 describes it."""
    if raw.get("InstanceLifecycle") == "spot" or (raw.get("InstanceMarketOptions") or {}).get("MarketType") == "spot":
        return "spot"
    return "on-demand"


def normalize_instance(raw: Dict[str, Any]) -> Dict[str, Any]:
    """The snake_case shape every ParkingSpot module returns for an instance."""
    placement = raw.get("Placement") or {}
    state_reason = raw.get("StateReason") or {}
    return {
        "instance_id": raw["InstanceId"],
        "state": (raw.get("State") or {}).get("Name"),
        "instance_type": raw.get("InstanceType"),
        "image_id": raw.get("ImageId"),
        "launch_time": _iso(raw.get("LaunchTime")),
        "zone": placement.get("AvailabilityZone"),
        "subnet_id": raw.get("SubnetId"),
        "private_dns_name": raw.get("PrivateDnsName") or None,
        "private_ip_address": raw.get("PrivateIpAddress"),
        "market": instance_market(raw),
        "spot_instance_request_id": raw.get("SpotInstanceRequestId"),
        "state_reason": state_reason.get("Code"),
        "state_transition_reason": raw.get("StateTransitionReason") or None,
        "tags": tag_dict(raw.get("Tags")),
    }


def normalize_spot_request(raw: Dict[str, Any]) -> Dict[str, Any]:
    status = raw.get("Status") or {}
    spec = raw.get("LaunchSpecification") or {}
    return {
        "spot_instance_request_id": raw["SpotInstanceRequestId"],
        "state": raw.get("State"),
        "status_code": status.get("Code"),
        "status_message": status.get("Message"),
        "type": raw.get("Type"),
        "instance_id": raw.get("InstanceId"),
        "instance_type": spec.get("InstanceType"),
        "image_id": spec.get("ImageId"),
        "zone": raw.get("LaunchedAvailabilityZone"),
        "create_time": _iso(raw.get("CreateTime")),
        "valid_until": _iso(raw.get("ValidUntil")),
        "interruption_behavior": raw.get("InstanceInterruptionBehavior"),
        "max_price": raw.get("SpotPrice"),
        "tags": boto3_tag_list_to_ansible_dict(raw.get("Tags") or []),
    }


# --- capacity facts: vCPUs per type, account quotas, ASG fallback -------------------


@SpotErrorHandler.list_error_handler("describe instance types", [])
@AWSRetry.jittered_backoff()
def describe_instance_types_raw(client, **params) -> List[Dict[str, Any]]:
    paginator = client.get_paginator("describe_instance_types")
    return paginator.paginate(**params).build_full_result().get("InstanceTypes", [])


def instance_type_vcpus(client, instance_types: Iterable[str]) -> Dict[str, int]:
    """Default vCPUs of each instance type: one paginated call for all of them."""
    wanted = sorted(set(t for t in instance_types if t))
    if not wanted:
        return {}
    found = describe_instance_types_raw(client, InstanceTypes=wanted)
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in found}


# Service Quotas codes of the EC2 spot vCPU quotas, by instance family. Families with a
# quota of their own are matched by their whole prefix first (dl1 is not a D, trn1 not a T).
SPOT_QUOTA_CODES = {
    "standard": "L-34B43A08",  # All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests
    "dl": "L-85EED4F7",  # All DL Spot Instance Requests
    "f": "L-88CF9481",  # All F Spot Instance Requests
    "g": "L-3819A6DF",  # All G and VT Spot Instance Requests
    "vt": "L-3819A6DF",
    "inf": "L-B5D1601B",  # All Inf Spot Instance Requests
    "p": "L-7212CCBC",  # All P Spot Instance Requests
    "trn": "L-6B0D517C",  # All Trn Spot Instance Requests
    "x": "L-E3A00192",  # All X Spot Instance Requests
}
_WHOLE_PREFIX_FAMILIES = ("inf", "trn", "dl", "vt")


def spot_quota_code(instance_type: str) -> str:
    family = re.match(r"[a-z]+", instance_type or "")
    letters = family.group(0) if family else ""
    for prefix in _WHOLE_PREFIX_FAMILIES:
        if letters.startswith(prefix):
            return SPOT_QUOTA_CODES[prefix]
    return SPOT_QUOTA_CODES.get(letters[:1], SPOT_QUOTA_CODES["standard"])


@SpotErrorHandler.common_error_handler("read service quota {quota_code}")
@AWSRetry.jittered_backoff()
def get_ec2_quota(client, quota_code: str) -> float:
    return float(client.get_service_quota(ServiceCode="ec2", QuotaCode=quota_code)["Quota"]["Value"])


@SpotErrorHandler.common_error_handler("read the default of service quota {quota_code}")
@AWSRetry.jittered_backoff()
def get_ec2_default_quota(client, quota_code: str) -> float:
    return float(client.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=quota_code)["Quota"]["Value"])


@SpotErrorHandler.common_error_handler("describe launch template versions")
@AWSRetry.jittered_backoff()
def launch_template_data(client, **template) -> Dict[str, Any]:
    """LaunchTemplateData of one template version (``LaunchTemplateId`` or ``LaunchTemplateName``, ``Version``)."""
    params = {k: v for k, v in template.items() if k in ("LaunchTemplateId", "LaunchTemplateName")}
    params["Versions"] = [template.get("Version") or "$Default"]
    versions = client.describe_launch_template_versions(**params)["LaunchTemplateVersions"]
    return versions[0].get("LaunchTemplateData") or {} if versions else {}


@SpotErrorHandler.common_error_handler("describe auto scaling group {name}")
@AWSRetry.jittered_backoff()
def describe_asg(client, name: str) -> Optional[Dict[str, Any]]:
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


@SpotErrorHandler.common_error_handler("set the desired capacity of {name}")
@AWSRetry.jittered_backoff()
def set_asg_desired(client, name: str, desired: int) -> None:
    client.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired, HonorCooldown=False)
