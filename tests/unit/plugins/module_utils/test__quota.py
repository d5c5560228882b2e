# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Account spot quotas: the right quota per family, the default when the applied value is unreadable,
open requests counted with running instances."""

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.modules import spot_request


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
