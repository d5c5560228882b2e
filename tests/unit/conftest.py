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


@pytest.fixture
def ec2(aws_credentials):
    """An in-process EC2 API (moto) and a client on it."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


@pytest.fixture
def image_id(ec2):
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


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
