# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A queue-driven pool against the local EC2 API: queued jobs raise it, scale-in drains only idle runners.

Real ansible-playbook runs of spot_pool (MOTO_URL, through the counting proxy of
tools/ec2_proxy.py). The runners' ``parkingspot:busy`` / ``parkingspot:idle-since`` tags are
written here as the built-in CI hooks would write them; ``now`` moves the keeper an hour
ahead so the runners are past ``min_running_minutes``.
"""

import datetime

import pytest
from local_ec2 import counts
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import run_play
from local_ec2 import run_playbook
from local_ec2 import tags

pytestmark = needs_local_ec2


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ec2():
    return fresh_ec2("queue-runner")


STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")


def live(ec2):
    return sorted(instances(ec2, "queue"))


def keeper(tmp_path, demand, now, check=False):
    args = {
        "name": "queue",
        "desired": 1,
        "demand": demand,
        "scaling": {"max": 5, "idle_minutes": 10, "min_running_minutes": 5},
        "launch_template": {"name": "queue-runner"},
        "instance_type": "m6i.large",
        "now": iso(now),
    }
    return run_play(tmp_path, "pool", "spot_pool", args, check=check)


def test_queued_jobs_raise_the_pool_and_scale_in_keeps_busy_runners(ec2, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    raised = keeper(tmp_path, {"queued": 4, "busy": 0}, now)
    assert raised["changed"] is True
    assert raised["pool"]["demand"]["target"] == 4
    runners = live(ec2)
    assert len(runners) == 4 and sorted(raised["pool"]["launched"]) == runners
    again = keeper(tmp_path, {"queued": 4, "busy": 0}, now)
    assert again["changed"] is False and live(ec2) == runners

    # More queued jobs than scaling.max allows: the pool stops at 5.
    capped = keeper(tmp_path, {"queued": 9, "busy": 0}, now, check=True)
    assert capped["pool"]["desired"] == 5 and capped["pool"]["would_launch"] == 1
    assert live(ec2) == runners

    # An hour on, the queue is empty and one job runs. Runner states as the hooks left them:
    busy, idle_long, idle_briefly, silent = runners
    later = now + datetime.timedelta(hours=1)
    ec2.create_tags(Resources=[busy], Tags=[{"Key": "parkingspot:busy", "Value": "true"}])
    for iid, idle_for in ((idle_long, 30), (idle_briefly, 2)):
        ec2.create_tags(
            Resources=[iid],
            Tags=[
                {"Key": "parkingspot:busy", "Value": "false"},
                {"Key": "parkingspot:idle-since", "Value": iso(later - datetime.timedelta(minutes=idle_for))},
            ],
        )
    shrunk = keeper(tmp_path, {"queued": 0, "busy": 1}, later)
    assert shrunk["pool"]["desired"] == 1
    # Target 1, yet two stay: the busy runner and the one idle for only 2 minutes.
    assert sorted(shrunk["pool"]["terminated"]) == sorted([idle_long, silent])
    assert live(ec2) == sorted([busy, idle_briefly])

    # Ten minutes later the briefly idle runner may go too; the busy one still never does.
    final = keeper(tmp_path, {"queued": 0, "busy": 1}, later + datetime.timedelta(minutes=10))
    assert final["pool"]["terminated"] == [idle_briefly]
    assert live(ec2) == [busy]


def lane_runners(ec2):
    return sorted(iid for iid, i in instances(ec2, "queue").items() if tags(i).get("parkingspot:lane") == "on-demand")


def test_a_queued_re_run_gets_an_on_demand_lane_runner_that_goes_when_idle(ec2, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    first = keeper(tmp_path, {"queued": 0, "busy": 0, "retries": 1}, now)
    assert first["pool"]["demand"]["retries"] == 1
    lane = lane_runners(ec2)
    assert len(lane) == 1 and len(live(ec2)) == 2  # the floor of 1 on spot, the re-run's runner on-demand
    assert tags(instances(ec2, "queue")[lane[0]])["parkingspot:market"] == "on-demand"
    assert keeper(tmp_path, {"queued": 0, "busy": 0, "retries": 1}, now)["changed"] is False
    # The re-run ran and ended 30 minutes ago: its runner is idle past idle_minutes and goes.
    later = now + datetime.timedelta(hours=1)
    ec2.create_tags(
        Resources=lane,
        Tags=[
            {"Key": "parkingspot:busy", "Value": "false"},
            {"Key": "parkingspot:idle-since", "Value": iso(later - datetime.timedelta(minutes=30))},
        ],
    )
    done = keeper(tmp_path, {"queued": 0, "busy": 0}, later)
    assert done["pool"]["terminated"] == lane
    assert lane_runners(ec2) == [] and len(live(ec2)) == 1


def test_runner_pool_applies_the_rulebooks_demand_to_the_named_pool_only(ec2, tmp_path):
    # What the ci_queue rulebook sends: one pool's name and its demand, as extra vars.
    pools = [
        {"name": "queue", "desired": 1, "scaling": {"max": 5}, "launch_template": {"name": "queue-runner"}},
        {"name": "other", "desired": 1, "scaling": {"max": 5}, "launch_template": {"name": "queue-runner"}},
    ]
    demand = {"queued": 3, "busy": 0}
    code, output = run_pools(
        {"parkingspot_pools": pools, "parkingspot_pool_names": ["queue"], "parkingspot_demand": demand}
    )
    assert code == 0, output[-2000:]
    assert len(live(ec2)) == 3
    assert instances(ec2, "other", states=STATES) == {}, "the pool the rulebook did not name was not run"


def run_pools(extra):
    """playbooks/runner_pool.yml with the rulebook's extra vars; (exit code, output)."""
    return run_playbook("runner_pool.yml", extra)


def pool_count(ec2, name):
    return len(instances(ec2, name))


def test_runner_pool_applies_a_demand_per_pool_in_one_run(ec2, tmp_path):
    # What the ci_queue rulebook sends for a window in which two pools changed: their names and a
    # demand for each, kept by one run (one module start for both).
    pools = [
        {"name": name, "desired": 0, "scaling": {"max": 5}, "launch_template": {"name": "queue-runner"}}
        for name in ("queue", "other", "idle")
    ]
    demands = {
        "queue": {"queued": 3, "busy": 0, "counted_at": "2026-12-02T10:00:00.5Z"},
        "other": {"queued": 1, "busy": 1, "counted_at": "2026-12-02T10:00:00.5Z"},
    }
    code, output = run_pools(
        {"parkingspot_pools": pools, "parkingspot_pool_names": ["queue", "other"], "parkingspot_demands": demands}
    )
    assert code == 0, output[-2000:]
    assert (pool_count(ec2, "queue"), pool_count(ec2, "other"), pool_count(ec2, "idle")) == (3, 2, 0)


@pytest.mark.parametrize(
    "demands, names, words",
    [
        ({"nosuch": {"queued": 1}}, ["queue"], "not pools of this run: nosuch"),
        ({"other": {"queued": 1}}, ["queue"], "not pools of this run: other"),
        ([{"queued": 1}], ["queue"], "got list"),
        ({"queue": 3}, ["queue"], "must map pool names"),
    ],
)
def test_runner_pool_refuses_demands_for_pools_outside_the_run(ec2, tmp_path, demands, names, words):
    pools = [
        {"name": name, "desired": 0, "scaling": {"max": 5}, "launch_template": {"name": "queue-runner"}}
        for name in ("queue", "other")
    ]
    code, output = run_pools(
        {"parkingspot_pools": pools, "parkingspot_pool_names": names, "parkingspot_demands": demands}
    )
    assert code != 0 and words in output, output[-2000:]
    assert pool_count(ec2, "queue") == 0 and pool_count(ec2, "other") == 0


def describe_calls():
    return counts().get("DescribeInstances", 0)


def test_runner_pool_passes_the_run_lock_and_a_burst_reuses_its_read(ec2, tmp_path):
    # What the ci_queue rulebook sends with each event: the pools' demands and run_lock
    # {reuse_read_seconds: 30}; the second run of the burst launches from the first run's read.
    pools = [{"name": "queue", "desired": 0, "scaling": {"max": 9}, "launch_template": {"name": "queue-runner"}}]

    def event(queued, second):
        demands = {"queue": {"queued": queued, "busy": 0, "counted_at": "2026-12-02T10:00:0%d.5Z" % second}}
        return {
            "parkingspot_pools": pools,
            "parkingspot_pool_names": ["queue"],
            "parkingspot_demands": demands,
            "parkingspot_run_lock": {"reuse_read_seconds": 30},
        }

    code, output = run_pools(event(2, 1))
    assert code == 0, output[-2000:]
    reads = describe_calls()
    code, output = run_pools(event(5, 3))
    assert code == 0, output[-2000:]
    assert describe_calls() == reads, "the second run of the burst read the pool again"
    assert pool_count(ec2, "queue") == 5
    # An unknown run_lock key fails the run before any call.
    code, output = run_pools(dict(event(6, 5), parkingspot_run_lock={"reuse": 30}))
    assert code != 0 and "run_lock" in output
    assert pool_count(ec2, "queue") == 5
