# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two keeper runs at once, a run killed mid-launch, a run killed mid-drain.

Real ansible-playbook processes against the local EC2 API (MOTO_URL, through the
proxy of tools/ec2_proxy.py, which gives EC2 client tokens their AWS meaning and
can hold a call back so a run can be killed in the middle of it).
"""

import os
import signal
import time

import pytest
from local_ec2 import counts
from local_ec2 import finish
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import proxy
from local_ec2 import run_play
from local_ec2 import start_play
from local_ec2 import tags

pytestmark = needs_local_ec2

NOW = "2026-11-30T10:00:00Z"
RUNNER = {"launch_template": {"name": "race-runner"}, "instance_type": "m6i.large"}


@pytest.fixture
def ec2():
    proxy("/_proxy/delay?action=RunInstances&seconds=0")
    return fresh_ec2("race-runner")


def live(ec2, states=("pending", "running")):
    return {iid: tags(i) for iid, i in instances(ec2, "race", states).items()}


def start(tmp_path, name, desired, now=NOW, drain=None):
    args = dict(RUNNER, name="race", desired=desired, now=now, drain=drain or {})
    return start_play(tmp_path, name, "spot_pool", args)


def descendants(pid):
    """Every process below ``pid``: Ansible's workers start sessions of their own, so the run's
    process group alone does not hold the module that is doing the work."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill(process):
    """Kill a run as a crash or an OOM kill would: the playbook and every process it started."""
    victims = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


@pytest.mark.parametrize("round_", range(4))
def test_two_concurrent_runs_launch_the_pool_once(ec2, tmp_path, round_):
    first = start(tmp_path, "a", 3)
    second = start(tmp_path, "b", 3)
    results = [finish(*first), finish(*second)]
    held = live(ec2)
    assert len(held) == 3, "round %d: %d instances for desired 3" % (round_, len(held))
    assert all(tags["parkingspot:pool"] == "race" for tags in held.values())
    launched = set(results[0]["pool"]["launched"]) | set(results[1]["pool"]["launched"])
    assert launched <= set(held)
    settled = finish(*start(tmp_path, "c", 3))
    assert settled["changed"] is False


def test_a_run_killed_mid_launch_converges(ec2, tmp_path):
    proxy("/_proxy/delay?action=RunInstances&seconds=6")
    victim = start(tmp_path, "killed", 3)
    deadline = time.monotonic() + 60
    while not counts().get("RunInstances") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts().get("RunInstances") == 1, "the run never reached RunInstances"
    kill(victim[0])  # killed while its launch is held back by the proxy
    proxy("/_proxy/delay?action=RunInstances&seconds=0")
    # The next run sees an empty pool and plans the same launch: same client token.
    follower = finish(*start(tmp_path, "next", 3))
    time.sleep(7)  # the killed run's held-back call reaches the API now
    held = live(ec2)
    assert len(held) == 3, "killed launch plus next run left %d instances" % len(held)
    # Either the follower reached RunInstances first and its call, with the killed run's client
    # token, returned the same three instances, or (on a slow machine) the held-back call had
    # already landed and the follower found the pool full. Never a second set of instances.
    assert set(follower["pool"]["launched"]) <= set(held)
    assert finish(*start(tmp_path, "again", 3))["changed"] is False


def test_a_run_killed_mid_drain_leaves_a_lease_that_expires(ec2, tmp_path):
    finish(*start(tmp_path, "up", 2))
    drain = {"command": "sleep 60", "timeout": 120}
    victim = start(tmp_path, "draining", 1, drain=drain)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        marked = [i for i, tags in live(ec2).items() if tags.get("parkingspot:state") == "draining"]
        if marked:
            break
        time.sleep(0.5)
    kill(victim[0])
    assert len(marked) == 1
    # A later run inside the drain lease leaves the draining instance alone and launches nothing.
    within = finish(*start(tmp_path, "within", 1, now="2026-11-30T10:01:00Z", drain=drain))
    assert within["pool"]["launched"] == [] and within["pool"]["terminated"] == []
    assert marked[0] in live(ec2)
    # Once the lease has passed, any run terminates it: nothing drains forever.
    after = finish(*start(tmp_path, "after", 1, now="2026-11-30T10:03:00Z", drain=drain))
    assert after["pool"]["terminated"] == marked
    assert len(live(ec2)) == 1


# --- runs of one pool that overlap (the ci_queue rulebook's parallel runs): run_lock


def start_queue(tmp_path, name, queued, counted_at, run_lock=None):
    demand = {"queued": queued, "busy": 0, "counted_at": counted_at}
    args = dict(RUNNER, name="race", desired=0, demand=demand, scaling={"max": 20}, run_lock=run_lock or {})
    return start_play(tmp_path, name, "spot_pool", args)


def overlapping_runs(tmp_path, run_lock):
    """Three runs for growing counts, started together; every launch call held 3 s by the proxy so
    that, without the lock, each run reads the pool before any other run's launch has landed."""
    proxy("/_proxy/delay?action=RunInstances&seconds=3")
    runs = [
        start_queue(tmp_path, "q%d" % n, queued, "2026-12-02T10:00:0%d.25Z" % n, run_lock)
        for n, queued in enumerate((4, 6, 8))
    ]
    results = [finish(*run) for run in runs]
    proxy("/_proxy/delay?action=RunInstances&seconds=0")
    return results


def test_overlapping_runs_for_growing_counts_launch_the_newest_count_once(ec2, tmp_path):
    results = overlapping_runs(tmp_path, {})
    held = live(ec2)
    assert len(held) == 8, "%d instances for a newest demand of 8" % len(held)
    launched = [set(r["pool"]["launched"]) for r in results]
    assert sum(len(ids) for ids in launched) == 8 and set().union(*launched) == set(held)
    # Whichever run took the lock last planned with the newest counts.
    assert all(r["pool"]["demand"]["queued"] in (4, 6, 8) for r in results)
    assert max(r["pool"]["demand"]["queued"] for r in results) == 8
    assert finish(*start_queue(tmp_path, "settled", 8, "2026-12-02T10:00:09Z"))["changed"] is False


def test_without_the_lock_overlapping_runs_launch_twice(ec2, tmp_path):
    """The control: the same runs with run_lock off each launch what they found missing."""
    overlapping_runs(tmp_path, {"enabled": False})
    assert len(live(ec2)) > 8


def test_a_run_for_older_counts_plans_with_the_newest(ec2, tmp_path):
    newest = finish(*start_queue(tmp_path, "new", 6, "2026-12-02T10:00:05Z"))
    assert len(newest["pool"]["launched"]) == 6
    stale = finish(*start_queue(tmp_path, "old", 2, "2026-12-02T10:00:01Z"))
    assert stale["pool"]["demand"]["queued"] == 6 and stale["pool"]["desired"] == 6
    assert stale["changed"] is False and len(live(ec2)) == 6


def test_launches_the_api_does_not_show_yet_are_not_launched_again(ec2, tmp_path):
    proxy("/_proxy/consistency?invisible=30&pending=0")
    try:
        first = finish(*start_queue(tmp_path, "first", 3, "2026-12-02T10:00:01Z"))
        assert len(first["pool"]["launched"]) == 3
        second = finish(*start_queue(tmp_path, "second", 4, "2026-12-02T10:00:03Z"))
    finally:
        proxy("/_proxy/consistency?invisible=0&pending=0")
    # moto itself (not through the proxy, which still hides the new ids) holds what was launched.
    assert len(second["pool"]["launched"]) == 1
    assert len(live(ec2)) == 4


def test_without_the_journal_a_hidden_launch_is_made_again(ec2, tmp_path):
    """The control: with run_lock off the second run finds the pool empty and launches 4."""
    proxy("/_proxy/consistency?invisible=30&pending=0")
    try:
        finish(*start_queue(tmp_path, "first", 3, "2026-12-02T10:00:01Z", {"enabled": False}))
        second = finish(*start_queue(tmp_path, "second", 4, "2026-12-02T10:00:03Z", {"enabled": False}))
    finally:
        proxy("/_proxy/consistency?invisible=0&pending=0")
    assert len(second["pool"]["launched"]) == 4
    assert len(live(ec2)) == 7


def keep_pools(tmp_path, name, desired, run_lock=None):
    args = {"pools": [dict(RUNNER, name="race", desired=desired)], "run_lock": run_lock or {}}
    return run_play(tmp_path, name, "spot_pools", args)["pools"]["race"]


def test_spot_pools_does_not_launch_again_what_the_api_does_not_show_yet(ec2, tmp_path):
    proxy("/_proxy/consistency?invisible=30&pending=0")
    try:
        assert len(keep_pools(tmp_path, "first", 3)["pool"]["launched"]) == 3
        second = keep_pools(tmp_path, "second", 4)
    finally:
        proxy("/_proxy/consistency?invisible=0&pending=0")
    assert second["reused_read"] is False and len(second["pool"]["launched"]) == 1
    assert len(live(ec2)) == 4


def test_spot_pools_reuses_a_recent_read_only_for_launches(ec2, tmp_path):
    lock = {"reuse_read_seconds": 60}
    keep_pools(tmp_path, "first", 2, lock)
    reads = counts().get("DescribeInstances", 0)
    grown = keep_pools(tmp_path, "grown", 5, lock)
    assert grown["reused_read"] is True and len(grown["pool"]["launched"]) == 3
    assert counts().get("DescribeInstances", 0) == reads, "a run within the reuse time read the pool again"
    shrunk = keep_pools(tmp_path, "shrunk", 1, lock)
    assert shrunk["reused_read"] is False and len(shrunk["pool"]["terminated"]) == 4
    assert len(live(ec2)) == 1
