# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the unit tests: moto in-process, module runner, API call recorder."""

import json

import pytest


@pytest.fixture
def aws_credentials(monkeypatch):
    """Throw-away credentials so botocore never looks for real ones."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(autouse=True)
def keeper_cache(monkeypatch, tmp_path):
    """Each test its own keeper lock and journal directory (spot_pool's ``run_lock``).

    moto starts every test from nothing, while a journal kept in the real cache would make the
    next test plan instances of an earlier one as launched but not yet visible.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def run_instances_up_to_max_count(monkeypatch):
    """moto launches MinCount instances; EC2 launches as many as it can up to MaxCount.

    Spot launches ask for MinCount 1 and MaxCount N, so without this every in-process test
    would see one instance where EC2 (with capacity) gives N. tools/ec2_proxy.py does the
    same for the tests that run against moto as a server.
    """
    try:
        import botocore.client
    except ImportError:
        return
    original = botocore.client.BaseClient._make_api_call

    def up_to_max(self, operation_name, api_params):
        in_process = "amazonaws.com" in (self.meta.endpoint_url or "")  # not the strict proxy, which does it itself
        if (
            in_process
            and operation_name == "RunInstances"
            and api_params.get("MaxCount", 0) > api_params.get("MinCount", 0)
        ):
            # In place, as botocore's own handlers change it (tests read UserData back from the recorded call).
            api_params["MinCount"] = api_params["MaxCount"]
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", up_to_max)


@pytest.fixture
def ec2(aws_credentials):
    """An in-process EC2 API (moto) and a client on it."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


# moto's first stock image. moto lists about 1300 stock images and serialising all of them costs
# about a second per call, so tests ask for this one by id (and fall back to the list when a moto
# release no longer has it).
MOTO_IMAGE = "ami-03cf127a"


def first_image(client):
    """The id of one image the EC2 API behind ``client`` can launch."""
    found = client.describe_images(Filters=[{"Name": "image-id", "Values": [MOTO_IMAGE]}])["Images"]
    return (found or client.describe_images(Owners=["amazon"])["Images"])[0]["ImageId"]


@pytest.fixture
def image_id(ec2):
    return first_image(ec2)


@pytest.fixture
def find_image():
    """:func:`first_image`, for tests whose EC2 client is not the ``ec2`` fixture."""
    return first_image


class CallLog:
    """Every AWS API call made through botocore while the fixture is active."""

    WRITE_PREFIXES = (
        "Run",
        "Create",
        "Terminate",
        "Cancel",
        "Request",
        "Delete",
        "Modify",
        "Attach",
        "Detach",
        "Stop",
        "Start",
        "Copy",
        "Put",
        "Update",
        "Associate",
        "Disassociate",
        "Register",
        "Deregister",
    )

    def __init__(self):
        self.calls = []

    def names(self):
        return [call[0] for call in self.calls]

    def writes(self):
        return [name for name in self.names() if name.startswith(self.WRITE_PREFIXES)]

    def count(self, name):
        return self.names().count(name)

    def clear(self):
        self.calls = []


@pytest.fixture
def api_calls(monkeypatch):
    import botocore.client

    log = CallLog()
    original = botocore.client.BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        log.calls.append((operation_name, api_params))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return log


@pytest.fixture
def run_module(capsys):
    """Drive a module's main() with arguments; returns its JSON result (``failed`` set on failure)."""
    from ansible.module_utils.testing import patch_module_args

    def runner(module, args, check_mode=False, diff=True):
        full = dict(args)
        full.setdefault("region", "us-east-1")
        full["_ansible_check_mode"] = check_mode
        full["_ansible_diff"] = diff
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                module.main()
        out = capsys.readouterr().out
        return json.loads(out)

    return runner


@pytest.fixture
def capacity_errors(monkeypatch):
    """Make EC2 refuse spot launches with a capacity error, as AWS does when a pool is empty.

    moto never runs out of capacity, so the fault is injected at botocore's call layer:
    the module's own retry and fallback code sees exactly what AWS would send.
    ``state["spot"] = False`` turns spot capacity off; ``state["refused"]`` counts refusals.
    """
    import botocore.client
    from botocore.exceptions import ClientError

    state = {"spot": True, "code": "InsufficientInstanceCapacity", "refused": 0}
    original = botocore.client.BaseClient._make_api_call

    def maybe_refuse(self, operation_name, api_params):
        spot = (api_params.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
        if operation_name == "RunInstances" and spot and not state["spot"]:
            state["refused"] += 1
            error = {"Error": {"Code": state["code"], "Message": "There is no Spot capacity available."}}
            raise ClientError(error, operation_name)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", maybe_refuse)
    return state


@pytest.fixture
def fallback_group(ec2, image_id):
    """An Auto Scaling group ``ci-on-demand`` (desired 0, at most 5) for ``on_demand_fallback.asg_name``.

    Returns a function that reads the group's desired capacity.
    """
    import boto3

    ec2.create_launch_template(LaunchTemplateName="od-runner", LaunchTemplateData={"ImageId": image_id})
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:1]
    asg = boto3.client("autoscaling", region_name="us-east-1")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="ci-on-demand",
        LaunchTemplate={"LaunchTemplateName": "od-runner"},
        MinSize=0,
        MaxSize=5,
        DesiredCapacity=0,
        AvailabilityZones=zones,
    )

    def desired():
        return asg.describe_auto_scaling_groups(AutoScalingGroupNames=["ci-on-demand"])["AutoScalingGroups"][0][
            "DesiredCapacity"
        ]

    return desired


@pytest.fixture
def spot_vcpu_quota(monkeypatch):
    """Answer Service Quotas' GetServiceQuota for the EC2 spot vCPU quotas (moto has none for EC2).

    Set ``quota["value"]``; ``quota["asked"]`` records the quota codes read.
    """
    import botocore.client

    quota = {"value": 0.0, "asked": []}
    original = botocore.client.BaseClient._make_api_call

    def answer(self, operation_name, api_params):
        if operation_name == "GetServiceQuota" and api_params.get("ServiceCode") == "ec2":
            quota["asked"].append(api_params["QuotaCode"])
            return {"Quota": {"QuotaCode": api_params["QuotaCode"], "Value": quota["value"]}}
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", answer)
    return quota


class StrictEC2:
    """moto as a server behind the project's strict proxy (tools/ec2_proxy.py), as the integration tests run it.

    ``url`` is the endpoint modules get (``endpoint_url``); ``direct`` is a boto3 client on moto itself, for
    setting up and checking what the API holds; ``play(path)`` posts to a control endpoint of the proxy.
    """

    def __init__(self, url, direct_url, state):
        import boto3

        self.url = url
        self.state = state
        self.direct = boto3.client("ec2", endpoint_url=direct_url, region_name="us-east-1")
        self.client = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")

    def play(self, path):
        import urllib.request

        request = urllib.request.Request(self.url + path, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    _image = None

    def image_id(self):
        # moto's stock images survive a reset and listing them is slow: read once per session.
        if StrictEC2._image is None:
            StrictEC2._image = first_image(self.direct)
        return StrictEC2._image

    def live(self, **tags):
        filters = [{"Name": "tag:%s" % k, "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]})
        pages = self.direct.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


@pytest.fixture(scope="session")
def _strict_servers():
    import logging
    import os
    import socket
    import sys

    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
    sys.path.insert(0, tools)
    try:
        import ec2_proxy
    finally:
        sys.path.remove(tools)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    direct = "http://127.0.0.1:%d" % port
    proxy, url, state = ec2_proxy.start(direct, strict=True)
    yield url, direct, state
    proxy.shutdown()
    server.stop()


@pytest.fixture
def strict_ec2(_strict_servers, aws_credentials):
    """A fresh, strict local EC2 API (see :class:`StrictEC2`)."""
    import urllib.request

    url, direct, state = _strict_servers
    urllib.request.urlopen(urllib.request.Request(direct + "/moto-api/reset", method="POST", data=b""), timeout=30)
    api = StrictEC2(url, direct, state)
    api.play("/_proxy/reset")
    return api
