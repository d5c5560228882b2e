# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watcher's pure parts with plain data: reading IMDS answers and folding them into an episode."""

from __future__ import annotations

import importlib.util
import json

import pytest
from watcher_harness import WATCHER

_spec = importlib.util.spec_from_file_location("parkingspot_watcher_under_test", WATCHER)
w = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(w)

NOW = 1_800_000_000.0


def present(at=None, action="terminate", event_id=""):
    return "present", {"action": action, "at": at, "event_id": event_id}


def test_maintenance_layout_has_no_leading_zero_and_is_utc():
    assert w.parse_maintenance_time("1 Dec 2026 20:30:09 GMT") == 1796157009.0
    assert w.parse_maintenance_time("21 Jan 2019 09:00:43 GMT") == 1548061243.0
    with pytest.raises(ValueError):
        w.parse_maintenance_time("2026-12-01T20:30:09Z")


def test_read_source_for_each_kind():
    events = [
        {"Code": "system-reboot", "State": "completed", "NotBefore": "1 Dec 2026 20:30:09 GMT", "EventId": "a"},
        {"Code": "instance-stop", "State": "active", "NotBefore": "2 Dec 2026 20:30:09 GMT", "EventId": "b"},
    ]
    state, info = w.read_source("maintenance", 200, json.dumps(events, indent="\t"))
    assert state == "present" and info["action"] == "instance-stop" and info["event_id"] == "b"
    assert w.read_source("maintenance", 200, json.dumps(events[:1]))[0] == "completed"
    canceled = [dict(events[1], State="canceled")]
    assert w.read_source("maintenance", 200, json.dumps(canceled))[0] == "canceled"
    assert w.read_source("maintenance", 200, "[]")[0] == "absent"
    assert w.read_source("lifecycle", 200, "InService")[0] == "absent"
    assert w.read_source("lifecycle", 200, "Terminated")[0] == "present"
    assert w.read_source("interruption", 404, "")[0] == "absent"
    state, info = w.read_source("interruption", 200, '{"action": "hibernate", "time": "2026-12-01T20:30:09Z"}')
    assert (state, info["action"], info["at"]) == ("present", "hibernate", 1796157009.0)
    with pytest.raises(ValueError):
        w.read_source("interruption", 200, '{"action": "terminate"}')


def test_time_updates_move_the_deadline_and_a_second_kind_joins():
    ep, effect = w.observe(None, "interruption", *present(NOW + 120), NOW, 120, 10)
    assert effect == "detected" and ep["deadline"] == NOW + 110
    ep["state"] = "draining"
    ep, effect = w.observe(ep, "interruption", *present(NOW + 125), NOW + 5, 120, 10)
    assert effect == "moved" and ep["deadline"] == NOW + 115 and ep["state"] == "draining"
    ep, effect = w.observe(ep, "interruption", *present(NOW + 125), NOW + 6, 120, 10)
    assert effect is None
    ep, effect = w.observe(ep, "lifecycle", *present(None), NOW + 7, 60, 10)
    assert effect == "joined" and ep["end"] == NOW + 67  # the earliest end wins
    ep, effect = w.observe(ep, "lifecycle", "absent", None, NOW + 8, 60, 10)
    assert effect == "left" and ep["state"] == "draining" and ep["end"] == NOW + 125


@pytest.mark.parametrize(
    "state,when,reason",
    [
        ("canceled", 10, "withdrawn"),
        ("completed", 10, "completed"),
        ("absent", 10, "withdrawn"),
        ("absent", 500, "completed"),
    ],
)
def test_how_an_episode_ends(state, when, reason):
    ep, _effect = w.observe(None, "maintenance", *present(NOW - 600, "system-reboot"), NOW, 120, 10)
    assert ep["end"] == NOW + 120  # max(NotBefore, now) + budget
    ep, effect = w.observe(ep, "maintenance", state, None, NOW + when, 120, 10)
    assert effect == reason and ep["state"] == reason
    again, effect = w.observe(ep, "maintenance", state, None, NOW + when + 1, 120, 10)
    assert effect is None


def test_a_reboot_since_detection_means_completed():
    ep, _effect = w.observe(None, "interruption", *present(NOW + 120, "stop"), NOW, 120, 10)
    ep["rebooted"] = True
    assert w.observe(ep, "interruption", "absent", None, NOW + 30, 120, 10)[1] == "completed"


def test_restored_episode_shows_503_until_grace_unless_confirmed():
    ep, _effect = w.observe(None, "interruption", *present(NOW + 120), NOW, 120, 10)
    ep["causes"]["interruption"]["confirmed"] = False
    assert w.shows_503(ep, NOW + 200, 300)
    assert not w.shows_503(ep, NOW + 421, 300)
    ep, effect = w.observe(ep, "interruption", *present(NOW + 120), NOW + 421, 120, 10)
    assert effect == "confirmed" and w.shows_503(ep, NOW + 421, 300)


def test_hook_window_inside_the_safety_margin():
    ep, _effect = w.observe(None, "interruption", *present(NOW + 5, "hibernate"), NOW, 120, 30)
    assert w.hook_window(ep, NOW) == (NOW + 5, 5.0)
    ep, _effect = w.observe(None, "interruption", *present(NOW + 120), NOW, 120, 30)
    assert w.hook_window(ep, NOW) == (NOW + 90, 90.0)
    assert w.hook_window(ep, NOW + 100) == (NOW + 120, 20.0)
