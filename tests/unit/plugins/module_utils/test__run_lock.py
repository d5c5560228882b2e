# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The keeper's run lock: one run of a pool at a time, the newest demand, the launch journal."""

import os
import stat

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def locks(tmp_path, clock=None, timeout=0, scope=("us-east-1", None, None)):
    return _run_lock.RunLocks(str(tmp_path), timeout, scope, clock=clock or Clock())


def test_a_second_run_cannot_take_a_held_pool_and_fails_naming_the_option(tmp_path):
    first, second = locks(tmp_path), locks(tmp_path, timeout=0)
    first.take("ci")
    with pytest.raises(ParkingSpotError) as e:
        second.take("ci")
    assert "run_lock" in e.value.message and "ci" in e.value.message
    second.take("other")  # another pool is free
    first.release("ci")
    second.take("ci")
    second.release_all()
    assert second.held == {}


def test_the_lock_is_per_pool_and_scope(tmp_path):
    east, west = locks(tmp_path), locks(tmp_path, scope=("us-west-2", None, None))
    east.take("ci")
    west.take("ci")  # same name in another region: another pool
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".lock")]) == 2


def test_the_lock_waits_for_a_release_within_the_timeout(tmp_path):
    import threading

    first = locks(tmp_path)
    first.take("ci")
    threading.Timer(0.2, first.release, args=("ci",)).start()
    waiting = _run_lock.RunLocks(str(tmp_path), 5, ("us-east-1", None, None))
    waiting.take("ci")
    assert "ci" in waiting.held


def test_the_newest_counts_win_and_older_offers_never_replace_them(tmp_path):
    run = locks(tmp_path)
    older = {"queued": 2, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:01.5Z"}
    newer = {"queued": 9, "busy": 1, "retries": 0, "counted_at": "2026-12-02T10:00:03.25+00:00"}
    run.offer("ci", newer)
    run.offer("ci", older)
    assert run.newest("ci", older) == newer
    assert run.newest("ci", newer) is newer
    plain = {"queued": 1, "busy": 0, "retries": 0}
    run.offer("ci", plain)  # no counted_at: nothing to order, nothing offered
    assert run.newest("ci", plain) is plain
    assert run.newest("other", older) is older


def test_entering_a_run_offers_its_counts_holds_the_lock_and_plans_with_the_newest(tmp_path):
    older = {"queued": 2, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:01Z"}
    newer = {"queued": 9, "busy": 1, "retries": 0, "counted_at": "2026-12-02T10:00:03Z"}
    first, second = locks(tmp_path), locks(tmp_path)
    assert first.enter("ci", older) is older
    assert "ci" in first.held
    with pytest.raises(ParkingSpotError):
        second.enter("ci", newer)  # the lock is held: it fails, but offered its counts first
    assert first.newest("ci", older) == newer
    first.release_all()
    assert locks(tmp_path).enter("ci", older) == newer  # a stale run plans with the newest counts


def test_a_launch_missing_from_the_read_is_planned_as_pending_for_the_grace_time(tmp_path):
    clock = Clock()
    run = locks(tmp_path, clock)
    run.record(
        "ci", [{"instance_id": "i-1", "market": "spot", "tags": {"parkingspot:market": "spot"}}, {"instance_id": "i-2"}]
    )
    clock.now += 5
    missing = run.unseen("ci", ["i-2"])
    assert [m["instance_id"] for m in missing] == ["i-1"]
    assert missing[0]["state"] == "pending"
    assert missing[0]["tags"] == {"parkingspot:pool": "ci", "parkingspot:market": "spot"}
    assert missing[0]["launch_time"] == "2027-01-15T08:00:00Z"
    clock.now += _run_lock.GRACE_SECONDS
    assert run.unseen("ci", []) == []
    # Old entries are dropped from the file when the next launch is journaled.
    run.record("ci", [{"instance_id": "i-3"}])
    assert [m["instance_id"] for m in run.unseen("ci", [])] == ["i-3"]


def test_a_torn_state_file_starts_again(tmp_path):
    run = locks(tmp_path)
    run.record("ci", [{"instance_id": "i-1"}])
    state = [n for n in os.listdir(tmp_path) if n.endswith(".state")][0]
    (tmp_path / state).write_text("{not json")
    assert run.unseen("ci", []) == []
    run.offer("ci", {"queued": 1, "counted_at": "2026-12-02T10:00:00Z"})
    assert run.newest("ci", {"queued": 0, "counted_at": "2026-12-02T09:00:00Z"})["queued"] == 1


class FakeModule:
    def __init__(self, run_lock=None, check_mode=False):
        self.params = {"run_lock": run_lock or {}, "region": "us-east-1", "endpoint_url": None, "profile": None}
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def test_from_module_makes_a_private_directory(tmp_path):
    where = tmp_path / "locks"
    got = _run_lock.from_module(FakeModule({"dir": str(where), "timeout_seconds": 3}))
    assert got.dir == str(where) and got.timeout == 3
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700


def test_from_module_defaults_under_the_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _run_lock.from_module(FakeModule()).dir == str(tmp_path / "cache" / "parkingspot" / "keeper")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _run_lock.from_module(FakeModule()).dir == str(tmp_path / "home" / ".cache" / "parkingspot" / "keeper")


def test_check_mode_and_enabled_false_take_no_lock(tmp_path):
    assert _run_lock.from_module(FakeModule({"dir": str(tmp_path)}, check_mode=True)) is None
    assert _run_lock.from_module(FakeModule({"dir": str(tmp_path), "enabled": False})) is None


def test_an_unusable_directory_fails_when_given_and_warns_by_default(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError) as e:
        _run_lock.from_module(FakeModule({"dir": str(blocker / "locks")}))
    assert e.value.option == "run_lock.dir"
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    module = FakeModule()
    assert _run_lock.from_module(module) is None
    assert module.warnings and "takes no lock" in module.warnings[0]


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_a_bad_timeout_is_refused_naming_it(tmp_path, bad):
    with pytest.raises(InputError) as e:
        _run_lock.from_module(FakeModule({"dir": str(tmp_path), "timeout_seconds": bad}))
    assert e.value.option == "run_lock.timeout_seconds"


def test_a_kept_read_is_reused_by_the_lock_holder_until_it_is_too_old(tmp_path):
    clock = Clock()
    run = _run_lock.RunLocks(str(tmp_path), 0, ("us-east-1", None, None), clock=clock, reuse_read_seconds=30)
    instances = [{"instance_id": "i-1", "state": "running", "tags": {"parkingspot:pool": "ci"}}]
    run.keep_view("ci", clock.now, instances)  # not held: nothing kept
    run.take("ci")
    assert run.view("ci") is None
    run.keep_view("ci", clock.now - 5, instances)
    assert run.view("ci") == (clock.now - 5, instances)
    other = _run_lock.RunLocks(str(tmp_path), 0, ("us-east-1", None, None), clock=clock, reuse_read_seconds=30)
    assert other.view("ci") is None  # only the holder of the lock reads it
    clock.now += 25
    assert run.view("ci") is None  # read 30 s ago
    run.keep_view("ci", clock.now, instances)
    run.forget_view("ci")
    assert run.view("ci") is None
    run.forget_view("ci")  # forgetting twice is fine


def test_no_read_is_reused_when_reuse_is_off(tmp_path):
    run = locks(tmp_path)
    run.take("ci")
    run.keep_view("ci", run.clock(), [])
    assert run.view("ci") is None


def test_a_damaged_kept_read_is_not_reused(tmp_path):
    clock = Clock()
    run = _run_lock.RunLocks(str(tmp_path), 0, ("us-east-1", None, None), clock=clock, reuse_read_seconds=30)
    run.take("ci")
    run.keep_view("ci", clock.now, [])
    view = [n for n in os.listdir(tmp_path) if n.endswith(".view")][0]
    (tmp_path / view).write_text('{"read_at": "soon"}')
    assert run.view("ci") is None
