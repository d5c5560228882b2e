# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The queue-driven policy of the CI simulator (spot_pool demand/scaling), synthetic mode."""

import json

from ansible_collections.parkingspot.ec2.bench import ci_sim

DAY = {"days": 1.0, "seed": 7, "synthetic": True}


def test_queue_policy_follows_the_queue_and_never_drains_a_busy_runner(monkeypatch):
    drained_busy = []
    drained = []
    original = ci_sim.Sim.start_drain

    def watch(self, t, iid, deadline):
        if self.policy == ci_sim.QUEUE_POLICY and self.instances[iid].ended is None:
            drained.append(iid)
            if self.instances[iid].job is not None:
                drained_busy.append(iid)
        return original(self, t, iid, deadline)

    monkeypatch.setattr(ci_sim.Sim, "start_drain", watch)
    report = ci_sim.simulate(dict(DAY, interrupt_rate=0.0, spot_availability=1.0), ("parkingspot", ci_sim.QUEUE_POLICY))
    schedule, queue = report["results"]["parkingspot"], report["results"][ci_sim.QUEUE_POLICY]
    assert drained and drained_busy == []
    assert queue["jobs"]["arrived"] > 0
    assert queue["jobs_lost_to_interruption"] == queue["jobs_lost_other"] == 0
    assert queue["jobs"]["unfinished_at_end"] <= 1  # a job arriving in the last minute
    assert queue["event_reconciles"] > 0  # runs on queue changes, not only on the schedule tick
    # Sized by the queue rather than the clock: fewer runner-hours and shorter waits here.
    assert queue["cost_usd"] < schedule["cost_usd"]
    assert queue["wait_seconds"]["p95"] < schedule["wait_seconds"]["p95"]


def test_queue_policy_is_selectable_but_not_a_default():
    assert ci_sim.QUEUE_POLICY not in ci_sim.POLICIES
    assert ci_sim.main(["--synthetic", "--days", "0.2", "--policies", "parkingspot-queue"]) == 0


def test_retry_lane_runs_re_runs_only_on_lane_runners(monkeypatch):
    on_spot = []
    original = ci_sim.Sim.dispatch

    def watch(self, t):
        before = {iid: self.instances[iid].job for iid in self.alive}
        original(self, t)
        for iid in self.alive:
            inst = self.instances[iid]
            if inst.job is not None and before.get(iid) is None and self.jobs[inst.job]["attempts"] > 1:
                if inst.tags.get(ci_sim.TAG_LANE) != "on-demand":
                    on_spot.append(iid)

    monkeypatch.setattr(ci_sim.Sim, "dispatch", watch)
    cfg = dict(DAY, days=2.0, interrupt_rate=0.3, spot_availability=0.7, retry_lane=True)
    report = ci_sim.simulate(cfg, ("parkingspot", ci_sim.QUEUE_POLICY))
    for policy in ("parkingspot", ci_sim.QUEUE_POLICY):
        res = report["results"][policy]
        assert res["jobs_cut_by_interruption"] > 0 and res["lane_launches"] > 0
        assert res["jobs_lost_to_interruption"] == 0
        assert 0 < res["lane_cost_usd"] < res["cost_usd"]
    assert on_spot == []


def test_retry_lane_is_off_by_default_and_a_flag():
    assert ci_sim.default_config()["retry_lane"] is False
    assert ci_sim.config_from_args(ci_sim.parse_args(["--retry-lane"]))["retry_lane"] is True


def test_on_demand_runners_wait_their_own_idle_time():
    # spot_pool's scaling.on_demand_idle_minutes (default 0): with outages, fallback runners go as
    # soon as they are idle instead of after queue_idle_minutes, so the pool pays fewer on-demand hours.
    assert ci_sim.default_config()["queue_on_demand_idle_minutes"] == 0
    cfg = dict(DAY, days=2.0, interrupt_rate=0.05, spot_availability=0.7)
    hours = {}
    for od_idle in (0, 10):
        res = ci_sim.simulate(dict(cfg, queue_on_demand_idle_minutes=od_idle), (ci_sim.QUEUE_POLICY,))
        hours[od_idle] = res["results"][ci_sim.QUEUE_POLICY]["instance_hours"]["on_demand"]
    assert 0 < hours[0] < hours[10]


def test_queue_compare_searches_on_demand_idle_times(capsys):
    from ansible_collections.parkingspot.ec2.bench import ci_sim_queue_compare

    argv = ["--peak", "4", "--offpeak", "1", "--floors", "0", "--idle", "5", "--on-demand-idle", "0,5", "--json"]
    assert ci_sim_queue_compare.main(argv + ["--", "--synthetic", "--days", "0.3"]) == 0
    out = capsys.readouterr().out
    runs = json.loads(out)[0]["queue_runs"]
    assert sorted(r["on_demand_idle_minutes"] for r in runs) == [0, 5]
    assert ci_sim_queue_compare.main(["--on-demand-idle", "x"]) == 2


def test_queue_compare_at_budgets_takes_the_cheapest_of_each_that_keeps_to_the_budget():
    from ansible_collections.parkingspot.ec2.bench import ci_sim_queue_compare

    def run(cost, wait, lost=0, **options):
        return dict(options, cost_usd=cost, wait_p95=wait, lost=lost)

    result = {
        "queue_runs": [run(50.0, 90, floor=1, idle_minutes=10), run(45.0, 120, floor=0, idle_minutes=5)],
        "schedule_runs": [
            run(70.0, 20, desired=4, peak_desired=16),
            run(60.0, 100, desired=3, peak_desired=12),
            run(40.0, 80, lost=2, desired=2, peak_desired=8),  # loses jobs: never counts
        ],
    }
    rows = ci_sim_queue_compare.at_budgets(result, [60, 100, 150])
    assert [(r["queue"] and r["queue"]["cost_usd"], r["schedule"]["cost_usd"]) for r in rows] == [
        (None, 70.0),
        (50.0, 60.0),
        (45.0, 60.0),
    ]
    assert [r["saving"] for r in rows] == ["-", "16.7%", "25.0%"]
    text = ci_sim_queue_compare.budgets_markdown(result, [100])
    assert "| 100 | floor 1, idle 10: 50.00, 90 | 3 / 12: 60.00, 100 | 16.7% |" in text


def test_queue_compare_sets_the_schedule_against_the_cheapest_queue_run(capsys):
    from ansible_collections.parkingspot.ec2.bench import ci_sim_queue_compare

    argv = ["--peak", "2,4", "--offpeak", "1", "--floors", "0,1", "--idle", "0,5"]
    rest = ["--", "--synthetic", "--days", "0.3"]
    assert ci_sim_queue_compare.main(argv + ["--json"] + rest) == 0
    result = json.loads(capsys.readouterr().out)[0]
    fits = [r for r in result["queue_runs"] if r["lost"] == 0]
    best = result["cheapest_queue"]
    assert best in fits and best["cost_usd"] == min(r["cost_usd"] for r in fits)
    against = result["schedule_at_cheapest_queue_wait"]
    if against is not None:
        assert against["wait_p95"] <= best["wait_p95"] and against["lost"] == 0
        slower = [r for r in result["schedule_runs"] if r["cost_usd"] < against["cost_usd"] and r["lost"] == 0]
        assert all(r["wait_p95"] > best["wait_p95"] for r in slower)
    assert ci_sim_queue_compare.main(argv + rest) == 0
    text = capsys.readouterr().out
    assert f"| queue: cheapest of all | floor {best['floor']}, idle {best['idle_minutes']} min" in text
    assert f"- at the cheapest queue's p95 ({best['wait_p95']} s): " in text
