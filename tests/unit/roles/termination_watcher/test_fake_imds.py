# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test IMDS keeps to the metadata mock's documented behaviour, so the watcher tests mean something."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from fake_imds import IDENTITY
from fake_imds import INSTANCE_ACTION
from fake_imds import LIFECYCLE
from fake_imds import REBALANCE
from fake_imds import SCHEDULED
from fake_imds import TERMINATION_TIME


def call(fake, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def token(fake, ttl="60"):
    status, body = call(fake, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    assert status == 200
    return body


@pytest.mark.parametrize("ttl", [None, "", "0", "-1", "21601", "abc"])
def test_token_ttl_outside_1_to_21600_is_400(imds, ttl):
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    assert call(imds, "PUT", "/latest/api/token", headers)[0] == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_token_ttl_bounds_are_accepted(imds, ttl):
    assert token(imds, ttl)


def test_missing_unknown_and_expired_tokens_get_401(imds):
    assert call(imds, "GET", IDENTITY)[0] == 401
    assert call(imds, "GET", IDENTITY, {"X-aws-ec2-metadata-token": "nope"})[0] == 401
    short = token(imds, "1")
    assert call(imds, "GET", IDENTITY, {"X-aws-ec2-metadata-token": short})[0] == 200
    time.sleep(1.05)
    assert call(imds, "GET", IDENTITY, {"X-aws-ec2-metadata-token": short})[0] == 401
    assert imds.token_state(short) == "unknown"  # forgotten once expired


def test_spot_times_are_recomputed_per_request_unless_fixed(imds):
    auth = {"X-aws-ec2-metadata-token": token(imds)}
    assert call(imds, "GET", INSTANCE_ACTION, auth)[0] == 404
    imds.mock_spot("stop")
    first = json.loads(call(imds, "GET", INSTANCE_ACTION, auth)[1])
    time.sleep(1.1)
    second = json.loads(call(imds, "GET", INSTANCE_ACTION, auth)[1])
    assert first["action"] == "stop" and first["time"] != second["time"]
    assert call(imds, "GET", TERMINATION_TIME, auth)[1] == second["time"]
    imds.mock_rebalance()
    notice = json.loads(call(imds, "GET", REBALANCE, auth)[1])["noticeTime"]
    assert abs(time.mktime(time.strptime(notice, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone - time.time()) < 2
    fixed = imds.set_instance_action("terminate", time.time() + 30)
    time.sleep(1.1)
    assert json.loads(call(imds, "GET", INSTANCE_ACTION, auth)[1])["time"] == fixed


def test_scheduled_events_layout_and_states(imds):
    auth = {"X-aws-ec2-metadata-token": token(imds)}
    imds.set_scheduled("system-reboot", when=1767225600)  # 2026-01-01 00:00:00 UTC
    (event,) = json.loads(call(imds, "GET", SCHEDULED, auth)[1])
    assert event["NotBefore"] == "1 Jan 2026 00:00:00 GMT"
    assert event["State"] == "active" and event["Code"] == "system-reboot" and event["EventId"]
    assert set(event) == {"Code", "Description", "State", "EventId", "NotBefore", "NotAfter", "NotBeforeDeadline"}
    for state in ("canceled", "completed"):
        imds.set_event_state(state)
        assert json.loads(call(imds, "GET", SCHEDULED, auth)[1])[0]["State"] == state


def test_asg_target_lifecycle_goes_inservice_then_terminated(imds):
    auth = {"X-aws-ec2-metadata-token": token(imds)}
    imds.set_lifecycle("InService", after=0.5)
    assert call(imds, "GET", LIFECYCLE, auth) == (200, "InService")
    time.sleep(0.6)
    assert call(imds, "GET", LIFECYCLE, auth) == (200, "Terminated")
