# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The launch modules against the strict EC2 (tools/ec2_proxy.py in front of moto, docs/ec2-contracts.md).

Each test plays what EC2 does and moto does not (refusals, partial instant fleets, late visibility,
capacity codes) and checks the effect in the API: what was launched, what is left, what the run said.
"""

import base64
import email

import pytest

from ansible_collections.parkingspot.ec2.plugins.modules import root_volume
from ansible_collections.parkingspot.ec2.plugins.modules import spot_block
from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool
from ansible_collections.parkingspot.ec2.plugins.modules import spot_pools
from ansible_collections.parkingspot.ec2.plugins.modules import spot_request

NOW = "2026-11-30T10:00:05Z"


@pytest.fixture
def api(strict_ec2):
    strict_ec2.direct.create_launch_template(
        LaunchTemplateName="strict-runner",
        LaunchTemplateData={
            "ImageId": strict_ec2.image_id(),
            "UserData": base64.b64encode(b"#!/bin/sh\necho template-own-script\n").decode(),
        },
    )
    subnets = strict_ec2.direct.describe_subnets()["Subnets"]
    strict_ec2.subnets = [s["SubnetId"] for s in subnets[:2]]
    return strict_ec2


def args(strict, **extra):
    return dict(dict(endpoint_url=strict.url, region="us-east-1"), **extra)


def fleet_args(api, **extra):
    return args(
        api,
        launch_template={"name": "strict-runner"},
        instance_types=["t3.micro", "t3a.micro"],
        subnet_ids=api.subnets,
        **extra,
    )


def markets(api, tag, name):
    return sorted(i_tags(i).get("parkingspot:market", "?") for i in api.live(**{tag: name}))


def i_tags(instance):
    return {t["Key"]: t["Value"] for t in instance.get("Tags") or []}


# --- spot_request ----------------------------------------------------------------------


def test_legacy_user_data_reaches_ec2_base64_encoded(api, run_module):
    result = run_module(
        spot_request,
        args(
            api,
            name="legacy",
            image_id=api.image_id(),
            instance_type="t3.micro",
            api="request_spot_instances",
            user_data="#!/bin/sh\necho hello\n",
        ),
    )
    assert result.get("failed") is not True, result.get("msg")
    assert api.state.refusals.get("InvalidParameterValue") is None
    assert len(api.direct.describe_spot_instance_requests()["SpotInstanceRequests"]) == 1


def test_fleet_carries_imdsv2_key_and_profile_and_max_price_per_instance(api, run_module, api_calls):
    result = run_module(
        spot_request,
        fleet_args(api, name="diverse", count=2, key_name="ci", iam_instance_profile="ci-runner", max_price="0.05"),
    )
    assert result["changed"] is True and len(api.live(**{"parkingspot:request": "diverse"})) == 2
    (call,) = [params for name, params in api_calls.calls if name == "CreateFleet"]
    overrides = call["LaunchTemplateConfigs"][0]["Overrides"]
    assert len(overrides) == 4
    for override in overrides:
        assert override["MetadataOptions"]["HttpTokens"] == "required"
        assert override["KeyName"] == "ci"
        assert override["IamInstanceProfile"] == {"Name": "ci-runner"}
        assert override["MaxPrice"] == "0.05"
    assert "MaxTotalPrice" not in call["SpotOptions"]


@pytest.mark.parametrize("option", [{"security_group_ids": ["sg-0123456789abcdef0"]}, {"user_data": "#!/bin/sh\n"}])
def test_fleet_refuses_what_it_cannot_carry_before_any_write(api, run_module, api_calls, option):
    result = run_module(spot_request, fleet_args(api, name="diverse", count=2, **option))
    assert result["failed"] is True
    assert list(option)[0] in result["msg"] and "CreateFleet" in result["msg"]
    assert api_calls.writes() == []


def test_fleet_that_launches_nothing_fails_with_its_errors(api, run_module):
    api.play("/_proxy/fleet?instances=0&code=InvalidSubnetID.NotFound&message=The+subnet+does+not+exist")
    result = run_module(spot_request, fleet_args(api, name="diverse", count=2))
    assert result["failed"] is True
    assert "InvalidSubnetID.NotFound" in result["msg"]
    assert api.live() == []


def test_partial_fleet_with_wait_cleans_up_and_fails(api, run_module):
    api.play("/_proxy/fleet?instances=1&code=InsufficientInstanceCapacity")
    result = run_module(spot_request, fleet_args(api, name="diverse", count=3, wait=True, wait_timeout=30))
    assert result["failed"] is True
    assert "launched 1 of 3" in result["msg"] and "InsufficientInstanceCapacity" in result["msg"]
    assert api.live() == []


def test_partial_fleet_without_wait_keeps_what_came_and_reports_the_errors(api, run_module):
    api.play("/_proxy/fleet?instances=1&code=InsufficientInstanceCapacity")
    result = run_module(spot_request, fleet_args(api, name="diverse", count=3))
    assert result["changed"] is True
    assert [e["code"] for e in result["actions"]["errors"]] == ["InsufficientInstanceCapacity"]
    assert len(api.live()) == 1
    assert any("launched 1 of 3" in str(w) for w in result.get("warnings", []))


def test_wait_on_more_than_200_ids_not_yet_visible(api, run_module):
    api.play("/_proxy/consistency?invisible=2")
    result = run_module(
        spot_request,
        args(api, name="big", image_id=api.image_id(), instance_type="t3.micro", count=201, wait=True, wait_timeout=60),
    )
    assert result.get("failed") is not True, result.get("msg")
    assert len(result["actions"]["launched"]) == 201
    assert len(api.live(**{"parkingspot:request": "big"})) == 201
    assert api.state.refusals.get("FilterLimitExceeded") is None


def test_a_second_run_that_cannot_see_the_first_launch_launches_nothing(api, run_module, api_calls, monkeypatch):
    """Same name, count and view of the pool in the same minute: the client token makes EC2 launch once."""
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch

    minute = _launch.utcnow().replace(second=0, microsecond=0)
    monkeypatch.setattr(_launch, "utcnow", lambda: minute)
    api.play("/_proxy/consistency?invisible=60")  # the second run reads an API that does not show them yet
    request = args(api, name="twice", image_id=api.image_id(), instance_type="t3.micro", count=2)
    first = run_module(spot_request, request)
    second = run_module(spot_request, request)
    assert second.get("failed") is not True, second.get("msg")
    assert len(api.live(**{"parkingspot:request": "twice"})) == 2
    assert sorted(second["actions"]["launched"]) == sorted(first["actions"]["launched"])
    tokens = [params.get("ClientToken") for name, params in api_calls.calls if name == "RunInstances"]
    assert len(tokens) == 2 and tokens[0] and tokens[0] == tokens[1]


@pytest.mark.parametrize(
    "module, tag", [(spot_request, "parkingspot:request"), (spot_pool, "parkingspot:pool")], ids=["request", "pool"]
)
def test_a_relaunch_after_an_interruption_in_the_same_minute_is_a_new_launch(api, run_module, monkeypatch, module, tag):
    """EC2 answers a repeated token with the instance it made then, even when that one is terminated now."""
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch

    minute = _launch.utcnow().replace(second=0, microsecond=0)
    monkeypatch.setattr(_launch, "utcnow", lambda: minute)
    if module is spot_request:
        request = args(api, name="cut", image_id=api.image_id(), instance_type="t3.micro", wait=True, wait_timeout=5)
    else:
        request = pool(api, name="cut", desired=1, image_id=api.image_id(), instance_type="t3.micro")
        request["now"] = minute.strftime("%Y-%m-%dT%H:%M:%SZ")
    first = run_module(module, request)
    assert first.get("failed") is not True, first.get("msg")
    interrupted = [i["InstanceId"] for i in api.live(**{tag: "cut"})]
    assert len(interrupted) == 1
    api.direct.terminate_instances(InstanceIds=interrupted)
    second = run_module(module, request)
    assert second.get("failed") is not True, second.get("msg")
    now_live = [i["InstanceId"] for i in api.live(**{tag: "cut"})]
    assert len(now_live) == 1 and now_live != interrupted


# --- the keeper ----------------------------------------------------------------------------


def pool(api, **extra):
    settings = dict(name="ci", desired=2, now=NOW, on_demand_fallback={"enabled": True, "max": 5})
    settings.update(extra)
    return args(api, **settings)


def fleet_pool(api, **extra):
    # moto's CreateFleet needs an instance type in every override (EC2 would take the template's).
    return pool(
        api, launch_template={"name": "strict-runner"}, instance_type="t3.micro", subnet_ids=api.subnets, **extra
    )


def test_pool_counts_fleet_instances_from_the_response(api, run_module):
    api.play("/_proxy/consistency?invisible=30")
    result = run_module(spot_pool, fleet_pool(api))
    assert result.get("failed") is not True, result.get("msg")
    assert result["pool"]["fallback"]["error"] is None
    assert markets(api, "parkingspot:pool", "ci") == ["spot", "spot"]


def test_pool_fails_on_a_configuration_error_instead_of_falling_back(api, run_module):
    api.play("/_proxy/fleet?instances=0&code=InvalidAMIID.Malformed&message=Invalid+id")
    result = run_module(spot_pool, fleet_pool(api))
    assert result["failed"] is True
    assert "InvalidAMIID.Malformed" in result["msg"]
    assert api.live() == []


def test_pool_falls_back_on_a_fleet_capacity_error_and_keeps_on_demand_fleet_errors(api, run_module):
    api.play("/_proxy/spot?available=0")
    api.play("/_proxy/fleet?instances=1&code=InsufficientInstanceCapacity")
    result = run_module(spot_pool, fleet_pool(api))
    assert result.get("failed") is not True, result.get("msg")
    assert result["pool"]["fallback"]["error"] == "InsufficientInstanceCapacity"
    assert [e["code"] for e in result["pool"]["fallback"]["errors"]] == ["InsufficientInstanceCapacity"]
    assert markets(api, "parkingspot:pool", "ci") == ["on-demand"]
    assert any("on-demand fallback launched 1 of 2" in str(w) for w in result.get("warnings", []))


def test_pool_falls_back_on_unfulfillable_capacity_by_default(api, run_module):
    api.play("/_proxy/spot?available=0&code=UnfulfillableCapacity")
    result = run_module(spot_pool, pool(api, image_id=api.image_id(), instance_type="t3.micro"))
    assert result.get("failed") is not True, result.get("msg")
    assert result["pool"]["fallback"]["error"] == "UnfulfillableCapacity"
    assert markets(api, "parkingspot:pool", "ci") == ["on-demand", "on-demand"]


def test_pool_takes_the_spot_ec2_can_give_and_plans_the_rest(api, run_module):
    api.play("/_proxy/spot?limit=1")
    result = run_module(spot_pool, pool(api, image_id=api.image_id(), instance_type="t3.micro", desired=3))
    assert result.get("failed") is not True, result.get("msg")
    assert markets(api, "parkingspot:pool", "ci") == ["on-demand", "on-demand", "spot"]


# --- leases ------------------------------------------------------------------------------------


def block_args(api, now):
    return args(api, name="build", count=1, duration_minutes=60, now=now, launch_template={"name": "strict-runner"})


def test_lease_keeps_the_template_user_data_after_its_backstop(api, run_module):
    result = run_module(spot_block, block_args(api, NOW))
    assert result.get("failed") is not True, result.get("msg")
    (instance,) = api.live(**{"parkingspot:block": "build"})
    encoded = api.direct.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    text = base64.b64decode(encoded["UserData"]["Value"]).decode()
    parts = [
        p.get_payload(decode=True).decode() for p in email.message_from_string(text).walk() if not p.is_multipart()
    ]
    assert "lease backstop" in parts[0] and "template-own-script" in parts[1]


def test_block_pools_of_spot_pools_keep_the_template_user_data_too(api, run_module):
    """spot_pools launches through the keeper's one launch step: its leases carry the same user data."""
    pool = {
        "name": "blocks",
        "market": "block",
        "desired": 1,
        "duration_minutes": 60,
        "now": NOW,
        "launch_template": {"name": "strict-runner"},
    }
    result = run_module(spot_pools, args(api, pools=[pool]))
    assert result.get("failed_pools") == {}, result
    (instance,) = api.live(**{"parkingspot:pool": "blocks"})
    encoded = api.direct.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    text = base64.b64decode(encoded["UserData"]["Value"]).decode()
    parts = [
        p.get_payload(decode=True).decode() for p in email.message_from_string(text).walk() if not p.is_multipart()
    ]
    assert "lease backstop" in parts[0] and "template-own-script" in parts[1]


def test_lease_runs_in_the_same_minute_send_different_tokens(api, run_module):
    """Expiry tag and backstop change by the second: the same client token would be refused by EC2."""
    api.play("/_proxy/consistency?invisible=60")  # the second run does not see the first one's lease yet
    first = run_module(spot_block, block_args(api, "2026-11-30T10:00:05Z"))
    assert first.get("failed") is not True, first.get("msg")
    second = run_module(spot_block, block_args(api, "2026-11-30T10:00:40Z"))
    assert second.get("failed") is not True, second.get("msg")
    assert api.state.refusals.get("IdempotentParameterMismatch") is None


# --- root volumes -------------------------------------------------------------------------------


def test_attach_waits_for_a_pending_instance(api, run_module):
    api.play("/_proxy/consistency?pending=3")
    instance = api.client.run_instances(ImageId=api.image_id(), InstanceType="t3.micro", MinCount=1, MaxCount=1)
    instance_id = instance["Instances"][0]["InstanceId"]
    result = run_module(
        root_volume, args(api, name="root", size=8, state="attached", instance_id=instance_id, wait_timeout=60)
    )
    assert result.get("failed") is not True, result.get("msg")
    assert api.state.refusals.get("IncorrectState") is None
    volume = api.direct.describe_volumes(VolumeIds=[result["volume"]["volume_id"]])["Volumes"][0]
    assert [a["InstanceId"] for a in volume["Attachments"]] == [instance_id]


def test_attach_without_wait_names_the_pending_state(api, run_module):
    api.play("/_proxy/consistency?pending=60")
    instance = api.client.run_instances(ImageId=api.image_id(), InstanceType="t3.micro", MinCount=1, MaxCount=1)
    instance_id = instance["Instances"][0]["InstanceId"]
    result = run_module(
        root_volume, args(api, name="root", size=8, state="attached", instance_id=instance_id, wait=False)
    )
    assert result["failed"] is True
    assert "is pending" in result["msg"] and "wait" in result["msg"]
    assert api.state.refusals.get("IncorrectState") is None
