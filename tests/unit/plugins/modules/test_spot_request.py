# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_request against moto in-process: effects in the EC2 API and the calls made."""

import datetime
import time

import pytest

from ansible_collections.parkingspot.ec2.plugins.modules import spot_request

TAG = "parkingspot:request"


def live(ec2, name):
    pages = ec2.describe_instances(
        Filters=[
            {"Name": "tag:%s" % TAG, "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    return sorted(i["InstanceId"] for r in pages["Reservations"] for i in r["Instances"])


@pytest.fixture
def base(image_id):
    return {"name": "runners", "image_id": image_id, "instance_type": "t3.micro", "tags": {"team": "build"}}


def test_create_then_rerun_is_unchanged_without_writes(ec2, base, run_module, api_calls):
    first = run_module(spot_request, dict(base, count=2))
    assert first["changed"] is True
    assert first["actions"]["launch"] == 2
    ids = live(ec2, "runners")
    assert len(ids) == 2
    assert sorted(first["actions"]["launched"]) == ids
    # Tagged at launch, with IMDSv2 required and the spot market.
    described = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
    for instance in described:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags == {TAG: "runners", "team": "build"}
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["InstanceLifecycle"] == "spot"
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag:%s" % TAG, "Values": ["runners"]}])["Volumes"]
    assert len(volumes) == 2
    assert api_calls.count("RunInstances") == 1
    assert api_calls.count("CreateTags") == 0

    api_calls.clear()
    second = run_module(spot_request, dict(base, count=2))
    assert second["changed"] is False
    assert api_calls.writes() == []
    assert sorted(i["instance_id"] for i in second["instances"]) == ids
    assert second["diff"]["before"] == second["diff"]["after"]


def test_check_mode_predicts_without_writes(ec2, base, run_module, api_calls):
    result = run_module(spot_request, dict(base, count=3), check_mode=True)
    assert result["changed"] is True
    assert result["actions"]["launch"] == 3
    assert result["diff"] == {"before": {"count": 0, "instance_ids": []}, "after": {"count": 3, "instance_ids": []}}
    assert api_calls.writes() == []
    assert live(ec2, "runners") == []


def test_scale_up_and_down_terminates_newest_first(ec2, base, run_module):
    run_module(spot_request, dict(base, count=1))
    oldest = live(ec2, "runners")
    time.sleep(1.1)  # launch times have one-second resolution: make "newest" unambiguous
    grown = run_module(spot_request, dict(base, count=3))
    assert grown["actions"]["launch"] == 2
    assert len(live(ec2, "runners")) == 3

    check = run_module(spot_request, dict(base, count=1), check_mode=True)
    assert len(check["actions"]["terminated"]) == 2
    assert len(live(ec2, "runners")) == 3

    shrunk = run_module(spot_request, dict(base, count=1))
    assert shrunk["changed"] is True
    assert live(ec2, "runners") == oldest
    assert oldest[0] not in shrunk["actions"]["terminated"]


def test_absent_twice(ec2, base, run_module, api_calls):
    run_module(spot_request, dict(base, count=2))
    gone = run_module(spot_request, dict(name="runners", state="absent"))
    assert gone["changed"] is True
    assert len(gone["actions"]["terminated"]) == 2
    assert live(ec2, "runners") == []
    api_calls.clear()
    again = run_module(spot_request, dict(name="runners", state="absent"))
    assert again["changed"] is False
    assert api_calls.writes() == []


def test_absent_keeps_instances_when_asked(ec2, base, run_module):
    run_module(spot_request, dict(base, count=1))
    result = run_module(spot_request, dict(name="runners", state="absent", terminate_instances=False))
    assert result["actions"]["terminated"] == []
    assert len(live(ec2, "runners")) == 1


def test_persistent_stop_and_valid_until_reach_the_api(ec2, base, run_module, api_calls):
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = dict(base, request_type="persistent", interruption_behavior="stop", valid_until=until)
    result = run_module(spot_request, args)
    assert result["changed"] is True
    (params,) = [p for name, p in api_calls.calls if name == "RunInstances"]
    options = params["InstanceMarketOptions"]["SpotOptions"]
    assert options["SpotInstanceType"] == "persistent"
    assert options["InstanceInterruptionBehavior"] == "stop"
    assert options["ValidUntil"].strftime("%Y-%m-%dT%H:%M:%SZ") == until
    resource_types = {spec["ResourceType"] for spec in params["TagSpecifications"]}
    assert resource_types == {"instance", "volume", "spot-instances-request"}


def test_tags_reach_existing_instances_in_one_call(ec2, base, run_module, api_calls):
    run_module(spot_request, dict(base, count=3))
    api_calls.clear()
    result = run_module(spot_request, dict(base, count=3, tags={"team": "build", "cost": "ci"}))
    assert result["changed"] is True
    assert len(result["actions"]["tagged"]) == 3
    assert api_calls.count("CreateTags") == 1
    for instance_id in live(ec2, "runners"):
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
        assert {t["Key"]: t["Value"] for t in tags}["cost"] == "ci"


def test_wait_returns_running_instances(ec2, base, run_module):
    result = run_module(spot_request, dict(base, count=2, wait=True, wait_timeout=30))
    assert result["changed"] is True
    assert {i["state"] for i in result["instances"]} == {"running"}


def test_fleet_launch_with_template_diversifies(ec2, image_id, run_module, api_calls):
    ec2.create_launch_template(LaunchTemplateName="runner-lt", LaunchTemplateData={"ImageId": image_id})
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    args = dict(
        name="fleet",
        count=3,
        launch_template={"name": "runner-lt"},
        instance_types=["t3.micro", "t3a.micro"],
        subnet_ids=subnets,
    )
    result = run_module(spot_request, args)
    assert result["changed"] is True
    assert len(live(ec2, "fleet")) == 3
    assert api_calls.count("CreateFleet") == 1 and api_calls.count("RunInstances") == 0
    (params,) = [p for name, p in api_calls.calls if name == "CreateFleet"]
    assert params["Type"] == "instant"
    assert params["SpotOptions"]["AllocationStrategy"] == "price-capacity-optimized"
    assert len(params["LaunchTemplateConfigs"][0]["Overrides"]) == 4
    api_calls.clear()
    assert run_module(spot_request, args)["changed"] is False
    assert api_calls.writes() == []


def test_legacy_api_tags_instances_in_one_batch(ec2, base, run_module, api_calls):
    result = run_module(spot_request, dict(base, count=2, api="request_spot_instances", wait=True, wait_timeout=30))
    assert result["changed"] is True
    assert any("cannot set metadata_options" in str(w) for w in result.get("warnings", []))
    assert api_calls.count("RequestSpotInstances") == 1
    assert api_calls.count("CreateTags") == 1
    assert len(live(ec2, "runners")) == 2
    api_calls.clear()
    again = run_module(spot_request, dict(base, count=2, api="request_spot_instances"))
    assert again["changed"] is False
    assert api_calls.writes() == []


@pytest.mark.parametrize(
    "override, message",
    [
        ({"count": -1}, "count: must be from 0 to 10000, got -1"),
        (
            {"valid_until": "2001-01-01T00:00:00Z", "request_type": "persistent", "interruption_behavior": "stop"},
            "valid_until: 2001-01-01T00:00:00Z is in the past",
        ),
        ({"valid_until": "2099-01-01T00:00:00Z"}, "valid_until: applies to persistent requests only"),
        (
            {"valid_until": "tomorrow", "request_type": "persistent", "interruption_behavior": "stop"},
            "valid_until: 'tomorrow' is not an ISO 8601",
        ),
        (
            {"valid_until": "0001-01-01T00:30:00+01:00", "request_type": "persistent", "interruption_behavior": "stop"},
            "valid_until: '0001-01-01T00:30:00+01:00' is out of the range",
        ),
        ({"tags": {"parkingspot:pool": "ci"}}, "tags: tag key 'parkingspot:pool' is reserved"),
        ({"name": "x" * 257}, "name: is 257 characters long; at most 256"),
        ({"interruption_behavior": "explode"}, "interruption_behavior"),
        ({"launch_template": {"name": "x"}}, "launch_template: mutually exclusive with image_id"),
        ({"image_id": None}, "one of launch_template or image_id is required"),
        ({"max_price": "-0.1"}, "max_price: '-0.1' is not a positive decimal"),
        ({"max_price": "cheap"}, "max_price: 'cheap' is not a positive decimal"),
        ({"request_type": "persistent"}, "request_type=persistent needs interruption_behavior stop or hibernate"),
        ({"interruption_behavior": "stop"}, "only allowed with request_type=persistent"),
        ({"instance_types": ["t3.micro", "t3.small"], "instance_type": None}, "set launch_template"),
        (
            {"api": "request_spot_instances", "launch_template": {"name": "x"}, "image_id": None},
            "api: request_spot_instances cannot use launch_template",
        ),
    ],
)
def test_bad_input_fails_before_any_write(ec2, base, run_module, api_calls, override, message):
    args = dict(base, **override)
    args = {k: v for k, v in args.items() if v is not None}
    result = run_module(spot_request, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert api_calls.writes() == []
    assert live(ec2, "runners") == []


@pytest.mark.parametrize(
    "override, option",
    [
        ({"launch_template": {"name": "x"}}, "launch_template"),
        ({"image_id": None}, "launch_template"),
        ({"max_price": "cheap"}, "max_price"),
        ({"instance_types": ["t3.micro", "t3.small"]}, "instance_types"),
        ({"request_type": "persistent"}, "interruption_behavior"),
        ({"instance_types": ["t3.micro", "t3.small"], "instance_type": None}, "launch_template"),
        ({"valid_until": "2099-01-01T00:00:00Z"}, "valid_until"),
        ({"quota": {"owner_tag": "owner", "per_owner_max_vcpus": 6}}, "quota.per_owner_max_vcpus"),
    ],
)
def test_launch_refusals_name_the_option(ec2, base, run_module, api_calls, override, option):
    args = {k: v for k, v in dict(base, **override).items() if v is not None}
    result = run_module(spot_request, args)
    assert result["failed"] is True and result["option"] == option
    assert result["msg"].startswith(option + ": ")
    assert api_calls.writes() == []


def test_owner_quota_fails_before_any_write(ec2, base, image_id, run_module, api_calls):
    # Another workload of the same owner already holds 2 x t3.micro = 4 vCPUs.
    ec2.run_instances(
        ImageId=image_id,
        InstanceType="t3.micro",
        MinCount=2,
        MaxCount=2,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "build"}]}],
    )
    quota = {"owner_tag": "team", "per_owner_max_vcpus": 6}
    api_calls.clear()
    refused = run_module(spot_request, dict(base, count=2, quota=quota))
    assert refused["failed"] is True
    assert "owner build may use 6 vCPUs, uses 4, asking 4 more" in refused["msg"]
    assert api_calls.writes() == []
    assert live(ec2, "runners") == []
    allowed = run_module(spot_request, dict(base, count=1, quota=quota))
    assert allowed["changed"] is True
    assert len(live(ec2, "runners")) == 1


def test_account_spot_quota_is_checked(ec2, base, run_module, api_calls, spot_vcpu_quota):
    spot_vcpu_quota["value"] = 4.0
    refused = run_module(spot_request, dict(base, count=3, quota={"check_account_quota": True}))
    assert refused["failed"] is True
    assert "leaves 4 vCPUs, asking 6" in refused["msg"]
    assert spot_vcpu_quota["asked"] == ["L-34B43A08"]
    assert api_calls.writes() == []
    fits = run_module(spot_request, dict(base, count=2, quota={"check_account_quota": True}))
    assert fits["changed"] is True and len(live(ec2, "runners")) == 2


def test_own_vcpu_limit_counts_what_the_request_holds(ec2, base, run_module):
    run_module(spot_request, dict(base, count=1, quota={"max_vcpus": 4}))
    refused = run_module(spot_request, dict(base, count=3, quota={"max_vcpus": 4}))
    assert "quota.max_vcpus: 4 vCPUs allowed, 2 in use by runners, asking 4 more" in refused["msg"]
    assert len(live(ec2, "runners")) == 1


def expire_in_moto(request_id):
    """moto never ends a persistent request at ValidUntil (AWS does): age it in moto's own store."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    request = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].spot_instance_requests[request_id]
    request.valid_until = "2020-01-01T00:00:00.000Z"
    request._status_code = "schedule-expired"


def test_expired_persistent_request_is_reported_then_renewed(ec2, base, run_module, api_calls):
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = dict(
        base,
        api="request_spot_instances",
        request_type="persistent",
        interruption_behavior="stop",
        valid_until=until,
        wait=True,
        wait_timeout=30,
    )
    created = run_module(spot_request, args)
    (request,) = created["spot_requests"]
    (instance_id,) = live(ec2, "runners")
    expire_in_moto(request["spot_instance_request_id"])
    ec2.stop_instances(InstanceIds=[instance_id])  # interrupted with stop; EC2 will never restart it now

    api_calls.clear()
    reported = run_module(spot_request, dict(args, wait=False))
    assert reported["changed"] is False and api_calls.writes() == []
    assert [r["spot_instance_request_id"] for r in reported["expired_requests"]] == [
        request["spot_instance_request_id"]
    ]
    assert any("renew_expired" in str(w) for w in reported.get("warnings", [])), sorted(reported)

    check = run_module(spot_request, dict(args, wait=False, renew_expired=True), check_mode=True)
    assert check["actions"]["terminated"] == [instance_id] and check["actions"]["launch"] == 1
    assert api_calls.writes() == []

    renewed = run_module(spot_request, dict(args, renew_expired=True))
    assert renewed["changed"] is True
    assert renewed["actions"]["renewed"] == [request["spot_instance_request_id"]]
    assert renewed["actions"]["terminated"] == [instance_id]
    (fresh,) = live(ec2, "runners")
    assert fresh != instance_id
    assert api_calls.count("RequestSpotInstances") == 1


def test_wait_timeout_terminates_what_this_run_launched(ec2, base, run_module, monkeypatch):
    """Instances that never reach running (EC2 stuck in pending): cleaned up, then a clear failure."""
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle

    real = _aws.describe_instances_by_ids
    monkeypatch.setattr(_lifecycle, "POLL_INTERVAL", 0.2)
    monkeypatch.setattr(
        _aws, "describe_instances_by_ids", lambda client, ids: [dict(i, state="pending") for i in real(client, ids)]
    )
    result = run_module(spot_request, dict(base, count=2, wait=True, wait_timeout=1))
    assert result["failed"] is True
    assert "were not running within 1s; cleaned up: terminated instances i-" in result["msg"]
    assert live(ec2, "runners") == []


def test_wait_timeout_cancels_unfulfilled_requests(ec2, base, run_module, monkeypatch):
    """Legacy requests that stay open (no capacity): cancelled before the module fails."""
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle

    real = _aws.describe_spot_requests
    monkeypatch.setattr(_lifecycle, "POLL_INTERVAL", 0.2)

    def still_open(client, filters=None, request_ids=None):
        found = real(client, filters=filters, request_ids=request_ids)
        return [dict(r, state="open", instance_id=None) for r in found] if request_ids else found

    monkeypatch.setattr(_aws, "describe_spot_requests", still_open)
    result = run_module(spot_request, dict(base, count=1, api="request_spot_instances", wait=True, wait_timeout=1))
    assert result["failed"] is True
    assert "were not fulfilled within 1s; cleaned up: cancelled spot requests sir-" in result["msg"]
    assert (
        ec2.describe_spot_instance_requests(Filters=[{"Name": "state", "Values": ["open", "active"]}])[
            "SpotInstanceRequests"
        ]
        == []
    )
