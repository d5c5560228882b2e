# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offerings simulation on tiny hand-made traces: per-offering capacity and interruptions,
the on-demand lane, re-runs only on on-demand."""

import json

import pytest

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings

DAY = {"days": 1.0, "seed": 7}


def trace(tmp_path, name, gap, values):
    path = tmp_path / name
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": values}))
    return name


def offering(cfg, tmp_path, name, up, falls=()):
    """An offering whose availability is ``up`` all day and whose preemption trace falls at ``falls`` (hours)."""
    values = [1] * 25
    for hour in falls:
        values[hour] = 0
    pre = trace(tmp_path, name + "-pre.json", 3600, values)
    avail = trace(tmp_path, name + "-avail.json", 3600, [1 if up else 0] * 25)
    drops = ci_sim.trace_drops(cfg, *ci_sim.load_trace(str(tmp_path), pre, "preemption"))
    return {"drops": drops, "availability": ci_sim.Availability(dict(cfg, availability=avail))}


def simulate(tmp_path, offerings_spec, base=1, cooldown=15):
    cfg = ci_sim.validate_config(dict(DAY, traces=str(tmp_path)))
    offerings = [offering(cfg, tmp_path, "o%d" % k, *spec) for k, spec in enumerate(offerings_spec)]
    sim = ci_sim_offerings.OfferingsSim(cfg, ci_sim.job_stream(cfg), offerings, base, cooldown)
    return sim, sim.run()


def test_an_unavailable_offering_is_skipped_without_on_demand_fallback(tmp_path):
    sim, res = simulate(tmp_path, [(False,), (True,)])
    spot = [iid for iid, inst in sim.instances.items() if inst.market == "spot"]
    assert spot and all(sim.offering_of[iid] == 1 for iid in spot)
    assert res["spot_launch_failures"] == 0
    # On-demand: the lane runner only.
    on_demand = [inst for inst in sim.instances.values() if inst.market == "on-demand"]
    assert len(on_demand) == 1 and on_demand[0].tags["parkingspot:lane"] == "on-demand"
    assert res["lane_instance_hours"] > 23


def test_when_no_offering_is_available_the_fallback_launches_on_demand(tmp_path):
    sim, res = simulate(tmp_path, [(False,), (False,)])
    assert res["spot_launch_failures"] > 0 and res["launched_spot"] == 0
    assert res["launched_on_demand"] > 1  # the lane and the fallback


def test_an_interrupted_offering_is_left_out_and_reruns_go_to_on_demand(tmp_path):
    # Offering 0 is interrupted at 10:00 and 11:00 (peak hours); offering 1 never.
    sim, res = simulate(tmp_path, [(True, (10, 11)), (True,)])
    assert res["notices"] > 0 and res["offering_exclusions"] > 0
    assert res["jobs_lost_to_interruption"] + res["jobs_lost_other"] == 0
    # Every spot instance launched in the cooldown after a fall went to offering 1.
    for iid, inst in sim.instances.items():
        if inst.market == "spot" and 10 * 3600 < inst.launched < 10 * 3600 + 15 * 60:
            assert sim.offering_of[iid] == 1
    # No re-run ran on spot: every job cut by an interruption finished on an on-demand runner.
    assert all(j["done"] is not None for j in sim.jobs if j["retry"])


def test_retry_lane_without_a_base_launches_on_demand_only_for_re_runs(tmp_path):
    cfg = ci_sim.validate_config(dict(DAY, traces=str(tmp_path), retry_lane=True))
    # Offering 0 is interrupted every other hour from 9:00 to 17:00 (peak hours); offering 1 never.
    falls = (9, 11, 13, 15, 17)
    offerings = [offering(cfg, tmp_path, "o0", True, falls), offering(cfg, tmp_path, "o1", True)]
    sim = ci_sim_offerings.OfferingsSim(cfg, ci_sim.job_stream(cfg), offerings, 0, 15)
    res = sim.run()
    assert res["jobs_cut_by_interruption"] > 0
    assert res["jobs_lost_to_interruption"] + res["jobs_lost_other"] == 0
    lane = [inst for inst in sim.instances.values() if inst.tags.get("parkingspot:lane") == "on-demand"]
    # No lane around the clock: lane runners are launched after the first cut, and scaled in.
    assert lane and min(inst.launched for inst in lane) >= 9 * 3600
    assert res["lane_instance_hours"] < 12
    assert all(j["done"] is not None for j in sim.jobs if j["retry"])


def test_the_queue_driven_pool_on_offerings_follows_the_queue_and_keeps_busy_runners(tmp_path, monkeypatch):
    drained_busy = []
    original = ci_sim_offerings.OfferingsSim.start_drain

    def watch(self, t, iid, deadline):
        if self.instances[iid].ended is None and self.instances[iid].job is not None:
            drained_busy.append(iid)
        return original(self, t, iid, deadline)

    monkeypatch.setattr(ci_sim_offerings.OfferingsSim, "start_drain", watch)
    cfg = ci_sim.validate_config(dict(DAY, traces=str(tmp_path), queue_floor=0, queue_idle_minutes=0))
    runs = {}
    for queue in (False, True):
        offerings = [offering(cfg, tmp_path, "o%d" % k, up) for k, up in enumerate((False, True))]
        sim = ci_sim_offerings.OfferingsSim(cfg, ci_sim.job_stream(cfg), offerings, 0, 15, queue=queue)
        runs[queue] = (sim, sim.run())
    sim, res = runs[True]
    assert sim.policy == ci_sim_offerings.QUEUE_POLICY and res["event_reconciles"] > 0
    assert drained_busy == [] and res["jobs_lost_to_interruption"] + res["jobs_lost_other"] == 0
    # Spot only where it can be launched; sized by the queue, it idles less and costs less.
    assert all(sim.offering_of[i] == 1 for i, inst in sim.instances.items() if inst.market == "spot")
    schedule = runs[False][1]
    assert res["idle_runner_hours"] < schedule["idle_runner_hours"] and res["cost_usd"] < schedule["cost_usd"]


def test_queue_compare_runs_both_pools_on_the_offerings(tmp_path, monkeypatch):
    from ansible_collections.parkingspot.ec2.bench import ci_sim_queue_compare

    cfg = ci_sim.validate_config(dict(DAY, traces=str(tmp_path)))
    names = [offering(cfg, tmp_path, "o%d" % k, True) and "o%d" % k for k in range(2)]
    monkeypatch.setattr(
        ci_sim_offerings, "draw", lambda cfg, n: ([n + "-pre.json" for n in names], [n + "-avail.json" for n in names])
    )
    seen = []
    real = ci_sim_offerings.OfferingsSim.run

    def spy(self):
        seen.append((self.policy, len(self.offerings), self.base))
        return real(self)

    monkeypatch.setattr(ci_sim_offerings.OfferingsSim, "run", spy)
    argv = ["--peak", "4", "--offpeak", "1", "--floors", "0", "--idle", "0", "--offerings", "2", "--json"]
    rest = [
        "--traces",
        str(tmp_path),
        "--preemption",
        "o0-pre.json",
        "--availability",
        "o0-avail.json",
        "--days",
        "0.5",
    ]
    assert ci_sim_queue_compare.main(argv + ["--"] + rest) == 0
    assert sorted(set(seen)) == [(ci_sim_offerings.POLICY, 2, 0), (ci_sim_offerings.QUEUE_POLICY, 2, 0)]
    assert ci_sim_queue_compare.main(["--offerings", "99"]) == 2


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--offerings", "0"], "--offerings: must be between 1 and"),
        (["--on-demand-base", "-1"], "--on-demand-base: must be 0 or more, got -1"),
        (["--cooldown-minutes", "-3"], "--cooldown-minutes: must be 0 or more, got -3"),
    ],
)
def test_the_offerings_scripts_name_a_bad_option(argv, words, capsys):
    from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings_sweep
    from ansible_collections.parkingspot.ec2.bench import ci_sim_queue_compare

    assert ci_sim_offerings.main(argv) == 2
    assert words in capsys.readouterr().err
    assert ci_sim_offerings_sweep.main(argv) == 2
    assert words in capsys.readouterr().err
    if argv[0] != "--offerings":  # 0 offerings is the compare's single market
        assert ci_sim_queue_compare.main(argv + ["--offerings", "2"]) == 2
        assert words in capsys.readouterr().err
