# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every request shape _launch builds, checked against botocore's EC2 service model.

Two models: the installed (pinned) botocore's, and the oldest botocore requirements.txt allows,
whose wheel is fetched from the package index into .build/ at test time (pip's cache makes that a
copy after the first time). Every member must be known and every required one present. Older
botocore releases lack the fleet overrides KeyName, IamInstanceProfile and MetadataOptions, which
is why the floor is where it is; with such a botocore installed anyway, the collection refuses a
diversified launch before any call (checked on the installed model with those members taken out).
"""

import copy
import datetime
import gzip
import json
import os
import subprocess
import sys
import types
import zipfile

import pytest

botocore = pytest.importorskip("botocore")
from botocore.loaders import Loader  # noqa: E402
from botocore.model import ServiceModel  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch  # noqa: E402
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def requirement_floor(name):
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        for line in handle:
            package, sep, low = line.partition(">=")
            if sep and package.strip() == name:
                return low.strip()
    raise AssertionError("requirements.txt gives no floor for %s" % name)


FLOOR = requirement_floor("botocore")
FLEET_ONLY_NEWER = {"KeyName", "IamInstanceProfile", "MetadataOptions"}

BASE = {
    "image_id": "ami-0123456789abcdef0",
    "instance_type": "m6i.large",
    "subnet_id": "subnet-0123456789abcdef0",
    "security_group_ids": ["sg-0123456789abcdef0"],
    "key_name": "ci",
    "iam_instance_profile": "arn:aws:iam::123456789012:instance-profile/ci",
    "user_data": "#!/bin/sh\necho hi\n",
    "max_price": "0.25",
    "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 2},
    "request_type": "persistent",
    "interruption_behavior": "stop",
    "valid_until": "2030-01-01T00:00:00Z",
    "allocation_strategy": "price-capacity-optimized",
}
FLEET = dict(
    BASE,
    image_id=None,
    instance_type=None,
    subnet_id=None,
    security_group_ids=[],
    user_data=None,
    request_type="one-time",
    interruption_behavior="terminate",
    valid_until=None,
    launch_template={"name": "ci-runner", "version": "$Latest"},
    instance_types=["m6i.large", "m6a.large"],
    subnet_ids=["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
)
TAGS = {"parkingspot:pool": "ci", "team": "build"}


def shapes():
    """(operation, request) for every shape the builders make."""
    yield "RunInstances", _launch.build_run_instances(BASE, 3, TAGS, market="spot", client_token="seed")
    yield "RunInstances", _launch.build_run_instances(BASE, 3, TAGS, market="on-demand", client_token="seed")
    yield (
        "RunInstances",
        _launch.build_run_instances(
            dict(BASE, request_type="one-time", interruption_behavior="terminate", valid_until=None),
            2,
            TAGS,
            market="spot",
            client_token="seed",
            user_data="#!/bin/sh\nshutdown -h +60\n",
            shutdown_behavior="terminate",
            block_minutes=60,
            instance_type="c6i.large",
            subnet_id="subnet-0fedcba9876543210",
        ),
    )
    yield (
        "RunInstances",
        _launch.build_run_instances(
            dict(BASE, image_id=None, launch_template={"id": "lt-0123456789abcdef0"}, iam_instance_profile="ci"),
            1,
            TAGS,
            client_token="seed",
        ),
    )
    yield "CreateFleet", _launch.build_create_fleet(FLEET, 4, TAGS, market="spot", client_token="seed")
    yield "CreateFleet", _launch.build_create_fleet(FLEET, 4, TAGS, market="on-demand", client_token="seed")
    yield "RequestSpotInstances", _launch.build_request_spot_instances(BASE, 2, TAGS, client_token="seed")


def errors(model, operation, request):
    report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
    return report.generate_report() if report.has_errors() else ""


def installed_model():
    return botocore.session.get_session().get_service_model("ec2")


def floor_model():
    """The EC2 service model of botocore FLOOR, from its wheel (downloaded once into .build/)."""
    target = os.path.join(ROOT, ".build", "botocore-floor")
    wheel = os.path.join(target, "botocore-%s-py3-none-any.whl" % FLOOR)
    if not os.path.exists(wheel):
        os.makedirs(target, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", target, "botocore==%s" % FLOOR],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if done.returncode or not os.path.exists(wheel):
            pytest.fail(
                "cannot check request shapes against the oldest supported botocore %s: pip could not download its"
                " wheel into %s:\n%s" % (FLOOR, target, done.stdout.decode(errors="replace")[-1500:])
            )
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        name = "botocore/data/ec2/2016-11-15/service-2.json"
        data = archive.read(name + ".gz") if name + ".gz" in names else archive.read(name)
        if name + ".gz" in names:
            data = gzip.decompress(data)
    return ServiceModel(json.loads(data), service_name="ec2")


def takes_fleet_overrides(model):
    """Whether the model's CreateFleet overrides have the members newer botocore releases added."""
    configs = model.operation_model("CreateFleet").input_shape.members["LaunchTemplateConfigs"]
    overrides = configs.member.members["Overrides"].member
    return FLEET_ONLY_NEWER <= set(overrides.members)


def without_fleet_overrides(model):
    """``model`` as botocore releases before the floor had it: no KeyName, IamInstanceProfile and
    MetadataOptions in CreateFleet's launch template overrides."""
    data = copy.deepcopy(Loader().load_service_model("ec2", "service-2", model.api_version))
    members = data["shapes"]["FleetLaunchTemplateOverridesRequest"]["members"]
    for member in FLEET_ONLY_NEWER:
        members.pop(member)
    return ServiceModel(data, service_name="ec2")


def check_every_shape(model):
    """Every shape is valid for ``model``, and the fleet check lets every fleet shape through."""
    assert takes_fleet_overrides(model)
    client = types.SimpleNamespace(meta=types.SimpleNamespace(service_model=model))
    for operation, request in shapes():
        if operation == "CreateFleet":
            _launch.check_fleet_model(client, request)
        assert errors(model, operation, request) == "", operation


def test_every_shape_matches_the_installed_model():
    check_every_shape(installed_model())


def test_every_shape_matches_the_oldest_supported_model():
    check_every_shape(floor_model())


def test_an_older_botocore_refuses_a_diversified_launch_before_the_call():
    model = without_fleet_overrides(installed_model())
    assert not takes_fleet_overrides(model)
    client = types.SimpleNamespace(meta=types.SimpleNamespace(service_model=model))
    fleets = [request for operation, request in shapes() if operation == "CreateFleet"]
    assert fleets
    for request in fleets:
        with pytest.raises(ParkingSpotError) as excinfo:
            _launch.check_fleet_model(client, request)
        message = excinfo.value.message
        assert "metadata_options" in message and "key_name" in message and "iam_instance_profile" in message
        # Without those overrides the rest of the request is what that model takes.
        for config in request["LaunchTemplateConfigs"]:
            for override in config["Overrides"]:
                for member in FLEET_ONLY_NEWER:
                    override.pop(member, None)
        assert errors(model, "CreateFleet", request) == ""


def test_client_tokens_fit_and_follow_the_request():
    requests = [request for _operation, request in shapes()]
    tokens = [request["ClientToken"] for request in requests]
    assert all(0 < len(token) <= 64 and token.isascii() for token in tokens)
    assert len(set(tokens)) == len(tokens)
    again = _launch.build_run_instances(BASE, 3, TAGS, market="spot", client_token="seed")
    assert again["ClientToken"] == tokens[0]
    changed = _launch.build_run_instances(BASE, 3, dict(TAGS, other="x"), market="spot", client_token="seed")
    assert changed["ClientToken"] != tokens[0]


def test_legacy_user_data_is_base64_and_spot_asks_min_count_one():
    legacy = _launch.build_request_spot_instances(BASE, 2, TAGS)
    import base64

    assert base64.b64decode(legacy["LaunchSpecification"]["UserData"]).decode() == BASE["user_data"]
    spot = _launch.build_run_instances(BASE, 3, TAGS, market="spot")
    assert (spot["MinCount"], spot["MaxCount"]) == (1, 3)
    on_demand = _launch.build_run_instances(BASE, 3, TAGS, market="on-demand")
    assert (on_demand["MinCount"], on_demand["MaxCount"]) == (3, 3)
    assert isinstance(spot["InstanceMarketOptions"]["SpotOptions"]["ValidUntil"], datetime.datetime)
