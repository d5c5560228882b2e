# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 call layer: batching, throttling retried, capacity errors surfaced, shapes."""

import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws


@pytest.fixture
def sleeps(monkeypatch):
    """Record the retry back-off instead of sleeping it."""
    from ansible_collections.amazon.aws.plugins.module_utils import cloud

    slept = []
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    return slept


@pytest.fixture
def client(aws_credentials):
    return boto3.client("ec2", region_name="us-east-1")


def test_terminate_goes_in_batches_of_1000(client):
    ids = ["i-%017x" % n for n in range(2500)] + ["i-%017x" % 5]  # one duplicate
    with Stubber(client) as stub:
        for start, size in ((0, 1000), (1000, 1000), (2000, 500)):
            expected = {"InstanceIds": sorted(set(ids))[start : start + size]}
            stub.add_response("terminate_instances", {"TerminatingInstances": []}, expected)
        assert _aws.terminate_instances(client, ids) == 3
        stub.assert_no_pending_responses()


def test_throttling_is_retried(client, sleeps):
    with Stubber(client) as stub:
        stub.add_client_error("run_instances", "RequestLimitExceeded", http_status_code=503)
        stub.add_client_error("run_instances", "Throttling", http_status_code=400)
        stub.add_response("run_instances", {"Instances": [{"InstanceId": "i-1", "State": {"Name": "pending"}}]})
        launched = _aws.run_instances(client, ImageId="ami-12345678", MinCount=1, MaxCount=1)
    assert [i["instance_id"] for i in launched] == ["i-1"]
    assert len(sleeps) == 2


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "MaxSpotInstanceCountExceeded"])
def test_capacity_errors_are_not_retried_but_surfaced(client, sleeps, code):
    with Stubber(client) as stub:
        stub.add_client_error("run_instances", code, http_status_code=500 if code.startswith("Insufficient") else 400)
        with pytest.raises(AnsibleAWSError) as raised:
            _aws.run_instances(client, ImageId="ami-12345678", MinCount=1, MaxCount=1)
    assert _aws.error_code(raised.value) == code
    assert sleeps == []


def test_instance_shape_is_snake_case_with_tag_dict():
    raw = {
        "InstanceId": "i-1",
        "State": {"Name": "running"},
        "InstanceType": "m6i.large",
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "InstanceLifecycle": "spot",
        "SpotInstanceRequestId": "sir-1",
        "StateReason": {"Code": "Server.SpotInstanceTermination"},
        "Tags": [{"Key": "parkingspot:pool", "Value": "ci"}],
    }
    shaped = _aws.normalize_instance(raw)
    assert shaped["market"] == "spot" and shaped["zone"] == "us-east-1a"
    assert shaped["tags"] == {"parkingspot:pool": "ci"}
    assert shaped["state_reason"] == "Server.SpotInstanceTermination"
    assert _aws.normalize_instance({"InstanceId": "i-2"})["market"] == "on-demand"


@pytest.mark.parametrize(
    "instance_type, code",
    [
        ("m6i.large", "L-34B43A08"),
        ("g5.xlarge", "L-3819A6DF"),
        ("p4d.24xlarge", "L-7212CCBC"),
        ("inf2.xlarge", "L-B5D1601B"),
    ],
)
def test_spot_quota_codes_by_family(instance_type, code):
    assert _aws.spot_quota_code(instance_type) == code
