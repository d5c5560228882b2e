# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The strict proxy refuses what EC2 refuses and moto accepts, and plays what moto cannot (docs/ec2-contracts.md)."""

import base64

import pytest

botocore_exceptions = pytest.importorskip("botocore.exceptions")
ClientError = botocore_exceptions.ClientError


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture
def template(strict_ec2):
    strict_ec2.direct.create_launch_template(
        LaunchTemplateName="proxy-runner", LaunchTemplateData={"ImageId": strict_ec2.image_id()}
    )
    return {"LaunchTemplateName": "proxy-runner", "Version": "$Default"}


def run(api, count=1, **extra):
    params = dict(ImageId=api.image_id(), InstanceType="t3.micro", MinCount=count, MaxCount=count)
    params.update(extra)
    return api.client.run_instances(**params)["Instances"]


def fleet(api, template, count, market="spot"):
    capacity = {"TotalTargetCapacity": count, "DefaultTargetCapacityType": market}
    capacity["SpotTargetCapacity" if market == "spot" else "OnDemandTargetCapacity"] = count
    return api.client.create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": template, "Overrides": [{"InstanceType": "t3.micro"}]}],
        TargetCapacitySpecification=capacity,
    )


def test_more_than_200_filter_values_are_refused(strict_ec2):
    ids = ["i-%017x" % n for n in range(201)]
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
    assert code_of(excinfo) == "FilterLimitExceeded"
    found = strict_ec2.client.describe_instances(Filters=[{"Name": "instance-id", "Values": ids[:200]}])
    assert found["Reservations"] == []


def test_legacy_user_data_must_be_base64(strict_ec2):
    spec = {"ImageId": strict_ec2.image_id(), "InstanceType": "t3.micro", "UserData": "#!/bin/sh\necho hi\n"}
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.request_spot_instances(InstanceCount=1, LaunchSpecification=spec)
    assert code_of(excinfo) == "InvalidParameterValue"
    assert "BASE64" in excinfo.value.response["Error"]["Message"]
    assert strict_ec2.direct.describe_spot_instance_requests()["SpotInstanceRequests"] == []
    spec["UserData"] = base64.b64encode(spec["UserData"].encode()).decode()
    made = strict_ec2.client.request_spot_instances(InstanceCount=1, LaunchSpecification=spec)
    assert len(made["SpotInstanceRequests"]) == 1


def test_a_client_token_reused_with_other_parameters_is_refused(strict_ec2):
    first = run(strict_ec2, ClientToken="token-1")
    again = run(strict_ec2, ClientToken="token-1")
    assert [i["InstanceId"] for i in again] == [i["InstanceId"] for i in first]
    with pytest.raises(ClientError) as excinfo:
        run(strict_ec2, ClientToken="token-1", UserData="other")
    assert code_of(excinfo) == "IdempotentParameterMismatch"
    assert len(strict_ec2.live()) == 1


@pytest.mark.parametrize(
    "tag",
    [{"Key": "k" * 129, "Value": "v"}, {"Key": "k", "Value": "v" * 257}, {"Key": "aws:mine", "Value": "v"}],
    ids=["key-129", "value-257", "aws-prefix"],
)
def test_tags_ec2_refuses_are_refused(strict_ec2, tag):
    with pytest.raises(ClientError) as excinfo:
        run(strict_ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [tag]}])
    assert code_of(excinfo) == "InvalidParameterValue"
    assert strict_ec2.live() == []
    instance = run(strict_ec2)[0]["InstanceId"]
    with pytest.raises(ClientError):
        strict_ec2.client.create_tags(Resources=[instance], Tags=[tag])
    run(strict_ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k" * 128, "Value": "v" * 256}]}])


def test_attach_needs_a_running_or_stopped_instance(strict_ec2):
    strict_ec2.play("/_proxy/consistency?pending=30")
    instance = run(strict_ec2)[0]
    zone = instance["Placement"]["AvailabilityZone"]
    volume = strict_ec2.direct.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    shown = strict_ec2.client.describe_instances(InstanceIds=[instance["InstanceId"]])
    assert shown["Reservations"][0]["Instances"][0]["State"]["Name"] == "pending"
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.attach_volume(VolumeId=volume, InstanceId=instance["InstanceId"], Device="/dev/sdf")
    assert code_of(excinfo) == "IncorrectState"
    assert strict_ec2.direct.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"] == []
    other = run(strict_ec2)[0]["InstanceId"]
    strict_ec2.direct.terminate_instances(InstanceIds=[other])
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.attach_volume(VolumeId=volume, InstanceId=other, Device="/dev/sdf")
    assert code_of(excinfo) == "IncorrectState"


def test_new_ids_are_invisible_for_a_while(strict_ec2):
    strict_ec2.play("/_proxy/consistency?invisible=30")
    instance = run(strict_ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}])
    instance_id = instance[0]["InstanceId"]
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.describe_instances(InstanceIds=[instance_id])
    assert code_of(excinfo) == "InvalidInstanceID.NotFound"
    assert instance_id in excinfo.value.response["Error"]["Message"]
    filtered = strict_ec2.client.describe_instances(Filters=[{"Name": "tag:k", "Values": ["v"]}])
    assert filtered["Reservations"] == []
    assert [i["InstanceId"] for i in strict_ec2.live(k="v")] == [instance_id]  # moto itself has it
    strict_ec2.play("/_proxy/consistency?invisible=0")
    assert strict_ec2.client.describe_instances(InstanceIds=[instance_id])["Reservations"]


def test_instant_fleet_partial_errors_beside_instances(strict_ec2, template):
    strict_ec2.play("/_proxy/fleet?instances=1&code=InsufficientInstanceCapacity")
    response = fleet(strict_ec2, template, 3)
    ids = [i for group in response["Instances"] for i in group["InstanceIds"]]
    assert len(ids) == 1 and len(strict_ec2.live()) == 1
    assert [e["ErrorCode"] for e in response["Errors"]] == ["InsufficientInstanceCapacity"]
    assert response["Errors"][0]["LaunchTemplateAndOverrides"]["Overrides"]["InstanceType"] == "t3.micro"


def test_unfulfillable_capacity_refuses_runinstances_and_empties_a_fleet(strict_ec2, template):
    strict_ec2.play("/_proxy/spot?available=0&code=UnfulfillableCapacity")
    with pytest.raises(ClientError) as excinfo:
        run(strict_ec2, InstanceMarketOptions={"MarketType": "spot"})
    assert code_of(excinfo) == "UnfulfillableCapacity"
    response = fleet(strict_ec2, template, 2)
    assert response["Instances"] == [] and response["Errors"][0]["ErrorCode"] == "UnfulfillableCapacity"
    assert strict_ec2.live() == []
    assert len(fleet(strict_ec2, template, 1, market="on-demand")["Instances"]) == 1


def test_spot_limit_gives_partial_runinstances(strict_ec2):
    strict_ec2.play("/_proxy/spot?available=1&limit=2")
    with pytest.raises(ClientError) as excinfo:
        run(strict_ec2, count=3, InstanceMarketOptions={"MarketType": "spot"})
    assert code_of(excinfo) == "InsufficientInstanceCapacity"
    launched = run(strict_ec2, count=1, MaxCount=3, InstanceMarketOptions={"MarketType": "spot"})
    assert len(launched) == 2


def test_calls_log_every_call_and_what_a_launch_launched(strict_ec2):
    import json
    import time
    import urllib.request

    before = time.time()
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": "ci"}]}]
    launched = [i["InstanceId"] for i in run(strict_ec2, count=2, TagSpecifications=tags)]
    strict_ec2.client.describe_instances(InstanceIds=launched)
    with urllib.request.urlopen(strict_ec2.url + "/_proxy/calls?since=%f" % before, timeout=30) as response:
        calls = json.loads(response.read())
    assert [c["action"] for c in calls] == ["RunInstances", "DescribeInstances"]
    assert all(c["at"] >= before and c["status"] == 200 for c in calls)
    assert sorted(calls[0]["instances"]) == sorted(launched)
    assert calls[0]["tags"] == {"parkingspot:pool": "ci"}
    assert "instances" not in calls[1]
    strict_ec2.play("/_proxy/reset")
    with urllib.request.urlopen(strict_ec2.url + "/_proxy/calls", timeout=30) as response:
        assert json.loads(response.read()) == []
