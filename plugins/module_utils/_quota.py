# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""vCPU quotas: the pool's own limit, a per-owner limit across pools and requests, the account's spot quota.

Read with as few calls as possible: nothing without quotas; otherwise one
DescribeInstances per scope (owner, account), one DescribeInstanceTypes for
every type involved and one GetServiceQuota per quota code.
"""

from __future__ import annotations

from typing import Any
from typing import Dict
from typing import List

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

QUOTA_ARGUMENT_SPEC = dict(
    type="dict",
    default={},
    options=dict(
        max_vcpus=dict(type="int"),
        owner_tag=dict(type="str"),
        per_owner_max_vcpus=dict(type="int"),
        check_account_quota=dict(type="bool", default=False),
    ),
)


def launch_types(params: Dict[str, Any]) -> List[str]:
    return sorted(set(params.get("instance_types") or [])) or (
        [params["instance_type"]] if params.get("instance_type") else []
    )


def account_quota(module, client, code: str) -> float:
    """The account's value of a spot vCPU quota; AWS's default when the applied value cannot be read.

    GetServiceQuota fails for a quota never changed in some accounts and regions (NoSuchResource)
    or without the permission; the default is then the best known limit, and the run says so.
    """
    try:
        return _aws.get_ec2_quota(client, code)
    except _aws.AnsibleEC2Error as e:
        reason = _aws.error_code(e) or str(e)
    value = _aws.get_ec2_default_quota(client, code)
    module.warn(
        "quota.check_account_quota: GetServiceQuota for %s failed (%s); using the AWS default of %g vCPUs"
        % (code, reason, value)
    )
    return value


def quota_inputs(module, client, params, instances) -> Dict[str, Any]:
    """Quota numbers for the planner, read with as few calls as possible (none without quotas)."""
    quota = params.get("quota") or {}
    wanted = quota.get("max_vcpus") is not None or quota.get("per_owner_max_vcpus") is not None
    wanted = wanted or quota.get("check_account_quota")
    if not wanted:
        return {"quota": {}, "vcpus": {}}
    types = launch_types(params)
    if not types:
        raise InputError("quota", "vCPU quotas need instance_type or instance_types to count vCPUs")
    owner_used = 0
    owner_instances = []
    if quota.get("per_owner_max_vcpus") is not None:
        key = quota.get("owner_tag")
        owner = (params.get("tags") or {}).get(key) if key else None
        if not key or owner is None:
            raise InputError(
                "quota.per_owner_max_vcpus", "needs quota.owner_tag and that tag in tags to know the owner"
            )
        owner_instances = _aws.describe_instances_by_tags(
            client, {key: owner}, states=["pending", "running", "stopping"]
        )
    account_instances = []
    open_requests = []
    available = None
    if quota.get("check_account_quota"):
        account_instances = [
            i
            for i in _aws.describe_instances_by_tags(client, {}, states=["pending", "running", "stopping"])
            if i["market"] == "spot"
        ]
        # The spot vCPU quota counts requested spot instances too: open requests not yet fulfilled.
        open_requests = [
            r
            for r in _aws.describe_spot_requests(client, filters=[{"Name": "state", "Values": ["open"]}])
            if not r.get("instance_id") and r.get("instance_type")
        ]
    all_types = set(types) | {
        i["instance_type"] for i in instances + owner_instances + account_instances + open_requests
    }
    vcpus = _aws.instance_type_vcpus(client, all_types)
    unknown = sorted(t for t in types if t not in vcpus)
    if unknown:
        option = "instance_types" if params.get("instance_types") else "instance_type"
        raise InputError(option, "unknown instance type(s) %s" % ", ".join(unknown))
    if owner_instances:
        pool_ids = {i["instance_id"] for i in instances}
        owner_used = sum(vcpus.get(i["instance_type"], 0) for i in owner_instances if i["instance_id"] not in pool_ids)
    if quota.get("check_account_quota"):
        sq = module.client("service-quotas")
        codes = sorted({_aws.spot_quota_code(t) for t in types})
        limit = min(account_quota(module, sq, code) for code in codes)
        used = sum(
            vcpus.get(i["instance_type"], 0)
            for i in account_instances + open_requests
            if _aws.spot_quota_code(i["instance_type"]) in codes
        )
        available = max(0, int(limit) - used)
    return {
        "quota": {
            "max_vcpus": quota.get("max_vcpus"),
            "per_owner_max_vcpus": quota.get("per_owner_max_vcpus"),
            "owner_used_vcpus": owner_used,
            "account_available_vcpus": available,
        },
        "vcpus": vcpus,
    }


def check_request(module, client, params, instances: List[Dict[str, Any]], launch: int) -> Dict[str, Any]:
    """For spot_request: fail before any write when ``launch`` more instances would pass a quota."""
    facts = quota_inputs(module, client, params, instances)
    quota = facts["quota"]
    if not quota or launch <= 0:
        return {}
    each = max(facts["vcpus"][t] for t in launch_types(params))
    ask = each * launch
    own = sum(facts["vcpus"].get(i["instance_type"], 0) for i in instances if i["state"] in _aws.LIVE_STATES)
    if quota.get("max_vcpus") is not None and own + ask > quota["max_vcpus"]:
        raise ParkingSpotError(
            message="quota.max_vcpus: %d vCPUs allowed, %d in use by %s, asking %d more"
            % (quota["max_vcpus"], own, params["name"], ask)
        )
    if quota.get("per_owner_max_vcpus") is not None:
        used = quota["owner_used_vcpus"] + own
        if used + ask > quota["per_owner_max_vcpus"]:
            owner = params["tags"].get(params["quota"]["owner_tag"])
            raise ParkingSpotError(
                message="quota.per_owner_max_vcpus: owner %s may use %d vCPUs, uses %d, asking %d more"
                % (owner, quota["per_owner_max_vcpus"], used, ask)
            )
    available = quota.get("account_available_vcpus")
    if available is not None and ask > available:
        raise ParkingSpotError(
            message="quota.check_account_quota: the account's spot vCPU quota leaves %d vCPUs, asking %d"
            % (available, ask)
        )
    return {"vcpus_asked": ask, "vcpus_in_use": own}
