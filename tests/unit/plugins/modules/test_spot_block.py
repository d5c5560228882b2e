# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_block against moto in-process: leases tagged, backstop installed, renewed first, ended on time."""

import base64
import email

import pytest

from ansible_collections.parkingspot.ec2.plugins.modules import spot_block

BLOCK_TAG = "parkingspot:block"


def blocks(ec2, name="build"):
    pages = ec2.describe_instances(
        Filters=[
            {"Name": "tag:%s" % BLOCK_TAG, "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    found = [i for r in pages["Reservations"] for i in r["Instances"]]
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]} for i in found}


@pytest.fixture
def block(image_id):
    return {"name": "build", "image_id": image_id, "instance_type": "t3.micro", "duration_minutes": 60}


def test_lease_lifecycle(ec2, block, run_module, api_calls):
    start = run_module(spot_block, dict(block, count=2, now="2026-11-30T09:00:00Z", user_data="#!/bin/sh\necho mine\n"))
    assert start["changed"] is True
    held = blocks(ec2)
    assert {t["parkingspot:expires-at"] for t in held.values()} == {"2026-11-30T10:00:00Z"}
    assert sorted(b["status"] for b in start["blocks"]) == ["active", "active"]
    (params,) = [p for name, p in api_calls.calls if name == "RunInstances"]
    document = email.message_from_string(base64.b64decode(params["UserData"]).decode())
    assert document.get_content_type() == "multipart/mixed"
    parts = [part.get_payload(decode=True).decode() for part in document.get_payload()]
    assert "shutdown -h" in parts[0] and "2026-11-30T10:00:00Z" in parts[0]
    assert parts[1] == "#!/bin/sh\necho mine\n"
    assert all(part.get_content_type() == "text/x-shellscript" for part in document.get_payload())
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert "BlockDurationMinutes" not in params["InstanceMarketOptions"]["SpotOptions"]

    api_calls.clear()
    steady = run_module(spot_block, dict(block, count=2, now="2026-11-30T09:30:00Z"))
    assert steady["changed"] is False and api_calls.writes() == []
    assert sorted(b["remaining_minutes"] for b in steady["blocks"]) == [30, 30]

    renew = run_module(spot_block, dict(block, count=2, now="2026-11-30T09:45:00Z"), check_mode=True)
    assert renew["plan"]["launch"]["spot"] == 2 and renew["plan"]["renew"] == sorted(held)
    assert len(blocks(ec2)) == 2  # check mode launched nothing

    run_module(spot_block, dict(block, count=2, now="2026-11-30T09:45:00Z"))
    assert len(blocks(ec2)) == 4  # replacements first; the old leases still serve
    ended = run_module(spot_block, dict(block, count=2, now="2026-11-30T10:00:10Z"))
    assert sorted(ended["terminated"]) == sorted(held)
    remaining = blocks(ec2)
    assert len(remaining) == 2 and not set(held) & set(remaining)


def test_native_mode_passes_block_duration(ec2, block, run_module, api_calls):
    run_module(spot_block, dict(block, count=1, mode="native", duration_minutes=120))
    (params,) = [p for name, p in api_calls.calls if name == "RunInstances"]
    assert params["InstanceMarketOptions"]["SpotOptions"]["BlockDurationMinutes"] == 120
    assert "UserData" not in params


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mode": "native", "duration_minutes": 90}, "90 is not allowed with mode native"),
        ({"duration_minutes": 10, "renew_before_minutes": 20}, "renew_before_minutes"),
        ({"count": -2}, "count: must be from 0 to 10000, got -2"),
        ({"now": "soon"}, "now: must be an ISO 8601 time with a time zone such as 2026-11-23T08:00:00Z, got 'soon'"),
        ({"api": "request_spot_instances"}, "api: request_spot_instances cannot keep a pool"),
    ],
)
def test_bad_input_fails_before_any_write(ec2, block, run_module, api_calls, override, message):
    result = run_module(spot_block, dict(block, **override))
    assert result["failed"] is True and message in result["msg"]
    assert result["msg"].startswith(result["option"] + ": ")
    assert api_calls.writes() == []
    assert blocks(ec2) == {}


def test_absent_ends_every_lease(ec2, block, run_module):
    run_module(spot_block, dict(block, count=2))
    gone = run_module(spot_block, dict(block, state="absent"))
    assert len(gone["terminated"]) == 2 and blocks(ec2) == {}
    assert run_module(spot_block, dict(block, state="absent"))["changed"] is False
