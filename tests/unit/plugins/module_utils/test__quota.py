# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vCPU quotas on moto: nothing read without quotas, the pool and owner limits, clear refusals; the right
account quota per family, the default when the applied value is unreadable, open requests counted."""

import pytest

from ansible_collections.amazon.aws.plugins.module_utils.ec2 import AnsibleEC2Error
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.modules import spot_request


class Module:
    """The one thing _quota asks of a module: a client (only for Service Quotas)."""

    def client(self, name):
        raise AssertionError("no Service Quotas call expected, asked for %s" % name)


def launch(ec2, image_id, count, itype="t3.micro", **tags):
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    ec2.run_instances(ImageId=image_id, InstanceType=itype, MinCount=count, MaxCount=count, TagSpecifications=spec)
    return _aws.describe_instances_by_tags(ec2, tags)


def test_without_quotas_nothing_is_read(ec2, api_calls):
    assert _quota.quota_inputs(Module(), ec2, {"quota": {}}, []) == {"quota": {}, "vcpus": {}}
    assert api_calls.names() == []


def test_launch_types_prefers_the_list():
    assert _quota.launch_types({"instance_types": ["m5.large", "c5.large", "m5.large"]}) == ["c5.large", "m5.large"]
    assert _quota.launch_types({"instance_type": "t3.micro"}) == ["t3.micro"]
    assert _quota.launch_types({}) == []


def test_quotas_need_an_instance_type(ec2):
    with pytest.raises(InputError, match=r"^quota: vCPU quotas need instance_type") as raised:
        _quota.quota_inputs(Module(), ec2, {"quota": {"max_vcpus": 4}}, [])
    assert raised.value.option == "quota"


def test_pool_limit_refuses_before_any_write(ec2, image_id, api_calls):
    pool = launch(ec2, image_id, 2, **{"parkingspot:request": "build"})  # t3.micro: 2 vCPUs each
    params = {"name": "build", "instance_type": "t3.micro", "quota": {"max_vcpus": 6}}
    api_calls.clear()
    with pytest.raises(ParkingSpotError) as raised:
        _quota.check_request(Module(), ec2, params, pool, 2)
    assert raised.value.message == "quota.max_vcpus: 6 vCPUs allowed, 4 in use by build, asking 4 more"
    assert api_calls.writes() == []
    assert _quota.check_request(Module(), ec2, params, pool, 1) == {"vcpus_asked": 2, "vcpus_in_use": 4}


def test_owner_limit_counts_the_owners_other_instances(ec2, image_id):
    launch(ec2, image_id, 3, owner="team-a")  # elsewhere, 6 vCPUs
    params = {
        "name": "build",
        "instance_type": "t3.micro",
        "tags": {"owner": "team-a"},
        "quota": {"owner_tag": "owner", "per_owner_max_vcpus": 8},
    }
    facts = _quota.quota_inputs(Module(), ec2, params, [])
    assert facts["quota"]["owner_used_vcpus"] == 6 and facts["vcpus"]["t3.micro"] == 2
    with pytest.raises(ParkingSpotError, match=r"^quota.per_owner_max_vcpus: owner team-a may use 8 vCPUs, uses 6"):
        _quota.check_request(Module(), ec2, params, [], 2)


def test_owner_limit_needs_the_owner_tag(ec2):
    params = {"instance_type": "t3.micro", "tags": {}, "quota": {"owner_tag": "owner", "per_owner_max_vcpus": 8}}
    with pytest.raises(InputError, match=r"^quota.per_owner_max_vcpus: needs quota.owner_tag") as raised:
        _quota.quota_inputs(Module(), ec2, params, [])
    assert raised.value.option == "quota.per_owner_max_vcpus"


def test_unknown_instance_type_fails_the_describe(ec2, api_calls):
    # EC2 (and moto) refuse the whole DescribeInstanceTypes call with InvalidInstanceType, so the
    # failure is the call's, before any write; quota_inputs' own "unknown instance type" check only
    # fires if EC2 leaves a type out of its answer.
    params = {"instance_type": "zz9.huge", "quota": {"max_vcpus": 4}}
    with pytest.raises(AnsibleEC2Error) as raised:
        _quota.quota_inputs(Module(), ec2, params, [])
    assert _aws.error_code(raised.value) == "InvalidInstanceType"
    assert raised.value.message == "Failed to describe instance types"
    assert api_calls.writes() == []


@pytest.mark.parametrize(
    "instance_type, code",
    [
        ("dl1.24xlarge", "L-85EED4F7"),
        ("dl2q.24xlarge", "L-85EED4F7"),
        ("trn1.32xlarge", "L-6B0D517C"),
        ("trn1n.32xlarge", "L-6B0D517C"),
        ("trn2.48xlarge", "L-6B0D517C"),
        ("d3.xlarge", "L-34B43A08"),
        ("t3.micro", "L-34B43A08"),
        ("inf2.xlarge", "L-B5D1601B"),
        ("g5.xlarge", "L-3819A6DF"),
        ("vt1.3xlarge", "L-3819A6DF"),
        ("p4d.24xlarge", "L-7212CCBC"),
        ("x2idn.16xlarge", "L-E3A00192"),
        ("f1.2xlarge", "L-88CF9481"),
    ],
)
def test_spot_quota_code_by_family(instance_type, code):
    assert _aws.spot_quota_code(instance_type) == code


@pytest.fixture
def quota_api(monkeypatch):
    """GetServiceQuota fails (as for a quota never changed, or without permission); the default answers.

    ``state["open"]`` lists instance types of open (unfulfilled) spot requests, which moto never keeps.
    """
    import botocore.client
    from botocore.exceptions import ClientError

    state = {"default": 4.0, "asked": [], "open": []}
    original = botocore.client.BaseClient._make_api_call

    def answer(self, operation_name, api_params):
        if operation_name == "GetServiceQuota":
            state["asked"].append(operation_name)
            raise ClientError({"Error": {"Code": "NoSuchResourceException", "Message": "no"}}, operation_name)
        if operation_name == "GetAWSDefaultServiceQuota":
            state["asked"].append(operation_name)
            return {"Quota": {"QuotaCode": api_params["QuotaCode"], "Value": state["default"]}}
        if operation_name == "DescribeSpotInstanceRequests" and state["open"]:
            filters = {f["Name"]: f["Values"] for f in api_params.get("Filters") or []}
            if filters.get("state") == ["open"]:
                return {
                    "SpotInstanceRequests": [
                        {
                            "SpotInstanceRequestId": "sir-open%d" % n,
                            "State": "open",
                            "LaunchSpecification": {"InstanceType": t},
                        }
                        for n, t in enumerate(state["open"])
                    ]
                }
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", answer)
    return state


@pytest.fixture
def base(image_id):
    return {"name": "q", "image_id": image_id, "instance_type": "t3.micro", "quota": {"check_account_quota": True}}


def test_unreadable_quota_falls_back_to_the_default_and_says_so(ec2, base, run_module, quota_api):
    result = run_module(spot_request, dict(base, count=2))
    assert result.get("failed") is not True, result.get("msg")
    assert quota_api["asked"] == ["GetServiceQuota", "GetAWSDefaultServiceQuota"]
    assert any("using the AWS default of 4 vCPUs" in str(w) for w in result.get("warnings", []))
    refused = run_module(spot_request, dict(base, count=3))
    assert refused["failed"] is True and "leaves 0 vCPUs, asking 2" in refused["msg"]


def test_open_spot_requests_count_against_the_quota(ec2, base, run_module, quota_api):
    quota_api["open"] = ["t3.micro"]
    refused = run_module(spot_request, dict(base, count=2))
    assert refused["failed"] is True
    assert "leaves 2 vCPUs, asking 4" in refused["msg"]
