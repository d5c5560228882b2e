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


# --- spot price history, played -------------------------------------------------------------

UTC = __import__("datetime").timezone.utc


def at(hour, minute=0):
    import datetime

    return datetime.datetime(2030, 1, 7, hour, minute, tzinfo=UTC)


def play_prices(api, instance_type, zone, prices, product=None):
    """One played price per hour from 00:00: ``prices[h]`` at ``h``:00."""
    for hour, price in enumerate(prices):
        path = "/_proxy/spot-price?instance_type=%s&zone=%s&price=%s&at=2030-01-07T%02d:00:00Z" % (
            instance_type,
            zone,
            price,
            hour,
        )
        if product:
            path += "&product=" + product.replace(" ", "+").replace("/", "%2F")
        answer = api.play(path)
    return answer


def seen(records):
    return [(r["InstanceType"], r["AvailabilityZone"], r["SpotPrice"], r["Timestamp"]) for r in records]


def test_without_played_prices_the_history_is_moto_s(strict_ec2):
    def years():
        history = strict_ec2.client.describe_spot_price_history(InstanceTypes=["t3.micro"])["SpotPriceHistory"]
        return {r["Timestamp"].year for r in history}

    assert years() == {2006}
    play_prices(strict_ec2, "t3.micro", "us-east-1a", [0.004])
    assert years() == {2030}
    strict_ec2.play("/_proxy/reset")
    assert years() == {2006}


def test_played_prices_are_cut_to_the_window_with_the_price_in_force_at_its_start(strict_ec2):
    assert play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.031, 0.032, 0.033, 0.034]) == {
        "series": 1,
        "points": 4,
    }
    play_prices(strict_ec2, "m6i.large", "us-east-1b", [0.041, 0.042, 0.043, 0.044])
    play_prices(strict_ec2, "c6i.large", "us-east-1a", [0.051, 0.052, 0.053, 0.054])
    history = strict_ec2.client.describe_spot_price_history(
        InstanceTypes=["m6i.large"],
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}],
        StartTime=at(1, 30),
        EndTime=at(2, 30),
    )
    # 01:00 is the price in force at 01:30; 00:00 was replaced before the window, 03:00 is after it.
    assert seen(history["SpotPriceHistory"]) == [
        ("m6i.large", "us-east-1a", "0.032000", at(1)),
        ("m6i.large", "us-east-1a", "0.033000", at(2)),
    ]
    assert history["SpotPriceHistory"][0]["ProductDescription"] == "Linux/UNIX"
    assert "NextToken" not in history or not history["NextToken"]
    on_the_hour = strict_ec2.client.describe_spot_price_history(
        InstanceTypes=["m6i.large", "c6i.large"], AvailabilityZone="us-east-1a", StartTime=at(3), EndTime=at(3)
    )
    assert seen(on_the_hour["SpotPriceHistory"]) == [
        ("c6i.large", "us-east-1a", "0.054000", at(3)),
        ("m6i.large", "us-east-1a", "0.034000", at(3)),
    ]
    everything = strict_ec2.client.describe_spot_price_history()["SpotPriceHistory"]
    assert len(everything) == 12
    assert [r["Timestamp"] for r in everything] == sorted(r["Timestamp"] for r in everything)
    wildcard = [{"Name": "instance-type", "Values": ["m6i.*"]}, {"Name": "spot-price", "Values": ["0.04?000"]}]
    assert len(strict_ec2.client.describe_spot_price_history(Filters=wildcard)["SpotPriceHistory"]) == 4


def test_played_prices_are_per_product_description(strict_ec2):
    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.03])
    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.12], product="Windows")
    by_parameter = strict_ec2.client.describe_spot_price_history(ProductDescriptions=["Windows"])
    assert [r["SpotPrice"] for r in by_parameter["SpotPriceHistory"]] == ["0.120000"]
    by_filter = strict_ec2.client.describe_spot_price_history(
        Filters=[{"Name": "product-description", "Values": ["Linux/UNIX"]}]
    )
    assert [r["SpotPrice"] for r in by_filter["SpotPriceHistory"]] == ["0.030000"]
    assert strict_ec2.client.describe_spot_price_history(ProductDescriptions=["SUSE Linux"])["SpotPriceHistory"] == []


def test_played_prices_are_paged_and_a_token_belongs_to_its_query(strict_ec2):
    import json
    import urllib.request

    from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_pricing

    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.03 + n / 10000 for n in range(24)])
    records, pages = _aws_pricing.describe_spot_price_history(
        strict_ec2.client, InstanceTypes=["m6i.large"], StartTime=at(0), PaginationConfig={"PageSize": 10}
    )
    assert pages == 3
    assert [r["Timestamp"] for r in records] == [at(h) for h in range(24)]
    with urllib.request.urlopen(strict_ec2.url + "/_proxy/counts", timeout=30) as response:
        assert json.loads(response.read())["DescribeSpotPriceHistory"] == 3
    first = strict_ec2.client.describe_spot_price_history(InstanceTypes=["m6i.large"], MaxResults=5)
    assert len(first["SpotPriceHistory"]) == 5 and first["NextToken"]
    following = strict_ec2.client.describe_spot_price_history(
        InstanceTypes=["m6i.large"], MaxResults=5, NextToken=first["NextToken"]
    )
    assert following["SpotPriceHistory"][0]["Timestamp"] == at(5)
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.describe_spot_price_history(InstanceTypes=["c6i.large"], NextToken=first["NextToken"])
    assert code_of(excinfo) == "InvalidParameterValue"


def test_the_usage_report_query_gets_the_price_in_force_at_the_first_launch(strict_ec2):
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage_report

    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.031, 0.032, 0.033, 0.034, 0.035])
    play_prices(strict_ec2, "m6i.large", "us-east-1c", [0.091] * 5)
    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.5] * 5, product="Windows")
    instance = {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "m6i.large",
        "InstanceLifecycle": "spot",
        "LaunchTime": at(1, 20),
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "PlatformDetails": "Linux/UNIX",
    }
    records = _usage_report.read_prices(strict_ec2.client, [_usage_report.report_instance(instance)], set(), at(3, 30))
    assert seen(records) == [
        ("m6i.large", "us-east-1a", "0.032000", at(1)),
        ("m6i.large", "us-east-1a", "0.033000", at(2)),
        ("m6i.large", "us-east-1a", "0.034000", at(3)),
    ]


def test_what_is_not_played_is_refused_by_name(strict_ec2):
    import urllib.error

    play_prices(strict_ec2, "m6i.large", "us-east-1a", [0.03])
    for filters in ([{"Name": "availability-zone-id", "Values": ["use1-az1"]}], [{"Name": "colour", "Values": ["x"]}]):
        with pytest.raises(ClientError) as excinfo:
            strict_ec2.client.describe_spot_price_history(Filters=filters)
        assert code_of(excinfo) == "InvalidParameterValue"
        assert filters[0]["Name"] in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        strict_ec2.client.describe_spot_price_history(StartTime=at(2), EndTime=at(1))
    assert code_of(excinfo) == "InvalidParameterValue"
    for bad in ("price=-1", "price=abc", "price=nan", "price=0.1&at=yesterday"):
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            strict_ec2.play("/_proxy/spot-price?instance_type=m6i.large&zone=us-east-1a&" + bad)
        assert excinfo.value.code == 400
