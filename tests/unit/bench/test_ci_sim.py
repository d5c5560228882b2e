# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CI simulator in synthetic mode (and on tiny hand-made traces): no public traces needed."""

import json

import pytest

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_chart

# One working day and the night after it: peak window, scale-down, quiet hours.
DAY = {"days": 1.0, "seed": 7}


def run(**overrides):
    config = dict(DAY, synthetic=True)
    config.update(overrides)
    return ci_sim.simulate(config)


def test_no_interruptions_cost_exactly_the_spot_discount():
    report = run(interrupt_rate=0.0, spot_availability=1.0)
    od, keeper = report["results"]["on-demand"], report["results"]["parkingspot"]
    assert keeper["notices"] == 0
    assert keeper["instance_hours"]["on_demand"] == 0
    # Same plans, same boot times: the keeper runs exactly the on-demand pool's hours, on spot.
    assert keeper["instance_hours"]["spot"] == od["instance_hours"]["on_demand"] > 0
    assert keeper["cost_usd"] == pytest.approx(od["cost_usd"] * (1 - 0.65), abs=1e-5)
    assert keeper["effective_discount"] == pytest.approx(0.65, abs=1e-6)
    assert keeper["wait_seconds"] == od["wait_seconds"]


def test_discount_follows_the_configured_spot_price():
    report = run(interrupt_rate=0.0, spot_availability=1.0, spot_discount=0.5)
    assert report["results"]["naive-spot"]["effective_discount"] == pytest.approx(0.5, abs=1e-6)


def test_spot_never_available_costs_what_on_demand_costs():
    report = run(interrupt_rate=0.5, spot_availability=0.0)
    od, keeper = report["results"]["on-demand"], report["results"]["parkingspot"]
    assert keeper["instance_hours"]["spot"] == 0
    assert keeper["spot_launch_failures"] > 0
    assert keeper["cost_usd"] == pytest.approx(od["cost_usd"], abs=1e-6)
    assert keeper["effective_discount"] == pytest.approx(0.0, abs=1e-6)
    # Without a fallback nothing ever runs.
    naive = report["results"]["naive-spot"]
    assert naive["cost_usd"] == 0 and naive["jobs"]["completed"] == 0


def test_same_seed_gives_byte_identical_results():
    config = dict(DAY, synthetic=True, interrupt_rate=0.3, spot_availability=0.8)
    first = ci_sim.dumps(ci_sim.simulate(config))
    second = ci_sim.dumps(ci_sim.simulate(dict(config)))
    assert first == second
    other = ci_sim.dumps(ci_sim.simulate(dict(config, seed=8)))
    assert other != first


def test_keeper_never_loses_a_job_that_fits_in_the_notice():
    # Every job is shorter than the 2-minute notice, so a drained runner always finishes it.
    config = dict(
        synthetic=True,
        interrupt_rate=1.0,
        spot_availability=0.8,
        job_median_minutes=1.0,
        job_max_minutes=1.5,
        peak_rate=200.0,
    )
    results = run(**config)["results"]
    keeper = results["parkingspot"]
    assert keeper["notices"] > 20
    assert keeper["jobs_cut_by_interruption"] == 0
    assert keeper["jobs_lost_to_interruption"] == 0
    assert keeper["jobs"]["retried"] == 0
    # The same interruptions cost the naive pool builds: its runners take jobs until the end.
    naive = results["naive-spot"]
    assert naive["notices"] > 20
    assert naive["jobs_lost_to_interruption"] > 0


def test_jobs_cut_by_an_interruption_are_run_again():
    results = run(interrupt_rate=1.0, spot_availability=1.0, job_median_minutes=20.0)["results"]
    keeper = results["parkingspot"]
    assert keeper["jobs_cut_by_interruption"] > 0
    # A cut job runs once more; only a second cut loses it.
    assert keeper["jobs"]["retried"] >= keeper["jobs_cut_by_interruption"] - keeper["jobs_lost_to_interruption"]
    assert keeper["jobs_lost_to_interruption"] < keeper["jobs_cut_by_interruption"]
    naive = results["naive-spot"]
    assert naive["jobs_lost_to_interruption"] == naive["jobs_cut_by_interruption"] > 0
    assert naive["jobs"]["retried"] == 0


def test_event_driven_reconcile_runs_on_every_notice():
    results = run(interrupt_rate=0.5, spot_availability=1.0)["results"]
    keeper, naive = results["parkingspot"], results["naive-spot"]
    assert keeper["event_reconciles"] == keeper["notices"] > 0
    assert naive["event_reconciles"] == 0
    assert keeper["reconciles"] == 288 + keeper["event_reconciles"]  # one tick every 5 minutes


def test_on_demand_policy_is_never_interrupted():
    od = run(interrupt_rate=2.0, spot_availability=0.5)["results"]["on-demand"]
    assert od["notices"] == 0 and od["instance_hours"]["spot"] == 0
    assert od["launched_spot"] == 0 and od["launched_on_demand"] > 0


def test_blocks_are_renewed_and_cut_only_at_lease_ends():
    results = run(interrupt_rate=0.0, spot_availability=1.0, block_minutes=60, renew_before_minutes=20)["results"]
    blocks = results["parkingspot-blocks"]
    plain = results["parkingspot"]
    # Leases end and are renewed: more launches, more instance-hours than the plain spot pool.
    assert blocks["launched_spot"] > plain["launched_spot"]
    assert blocks["instance_hours"]["spot"] > plain["instance_hours"]["spot"]
    assert blocks["jobs_cut_by_interruption"] == 0


def write_trace(path, gap, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": values}))


def test_trace_mapping(tmp_path):
    # Preemption: 2 -> 0 at 12:00 (two notices), 1 -> 0 at 15:00 (one); availability: no spot 12:00-13:00.
    hour = 3600
    pre = [2] * 12 + [0] * 2 + [1] + [0] * 9
    avail = [1] * 12 + [0] + [1] * 11
    write_trace(tmp_path / "preemption" / "p.json", hour, pre)
    write_trace(tmp_path / "availability" / "a.json", hour, avail)
    config = dict(DAY, traces=str(tmp_path), preemption=["preemption/p.json"], availability="availability/a.json")
    report = ci_sim.simulate(config)
    assert report["inputs"]["trace_drops"] == 3
    assert report["inputs"]["spot_unavailable_hours"] == 1.0
    keeper = report["results"]["parkingspot"]
    assert keeper["notices"] == 3
    assert sorted(report["series"]["parkingspot"]["notices"]) == [12 * hour, 12 * hour, 15 * hour]
    # The replacements for the 12:00 notices fail with InsufficientInstanceCapacity and fall back.
    assert keeper["spot_launch_failures"] >= 1
    assert keeper["launched_on_demand"] >= 1 and keeper["instance_hours"]["on_demand"] > 0
    assert report["results"]["naive-spot"]["launched_on_demand"] == 0


def test_trace_repeats_when_the_run_is_longer(tmp_path):
    write_trace(tmp_path / "p.json", 3600, [1] * 5 + [0])
    write_trace(tmp_path / "a.json", 3600, [1])
    report = ci_sim.simulate(dict(DAY, traces=str(tmp_path), preemption=["p.json"], availability="a.json"))
    assert report["inputs"]["trace_drops"] == 4  # hours 5, 11, 17, 23


@pytest.mark.parametrize(
    "override, option",
    [
        ({"spot_discount": 1.5}, "spot_discount"),
        ({"instance_type": "x9.huge"}, "instance_type"),
        ({"boot_min_seconds": 100, "boot_max_seconds": 50}, "boot_max_seconds"),
        ({"window_start": "25:00"}, "window"),
        ({"block_minutes": 10, "renew_before_minutes": 20}, "renew_before_minutes"),
        ({"days": 0}, "days"),
        ({"synthetic": "yes"}, "synthetic"),
        ({"colour": "red"}, "colour"),
        ({"queue_idle_minutes": -1}, "queue_idle_minutes"),
        ({"queue_floor": 1.5}, "queue_floor"),
    ],
)
def test_bad_input_names_the_option(override, option):
    with pytest.raises(ci_sim.SimError, match=option):
        ci_sim.simulate(dict(dict(DAY, synthetic=True), **override))


def test_missing_trace_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "chart.html"
    rc = ci_sim.main(["--traces", str(tmp_path / "nowhere"), "--days", "1", "--html", str(out)])
    assert rc == 2
    assert "preemption: cannot read trace" in capsys.readouterr().err
    assert not out.exists()


def test_command_line_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "chart.html"
    args = ["--synthetic", "--interrupt-rate", "0.3", "--spot-availability", "0.9", "--days", "1", "--html", str(out)]
    assert ci_sim.main(args) == 0
    table = capsys.readouterr().out
    for policy in ci_sim.POLICIES:
        assert f"| {policy} |" in table
    page = out.read_text()
    assert page.count("<svg") == 4
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert ci_sim.main(args[:-2] + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["results"]) == set(ci_sim.POLICIES)


def test_chart_of_a_week_stays_small():
    report = run(days=7.0, interrupt_rate=0.2, spot_availability=0.9)
    assert len(ci_sim_chart.render(report).encode()) < 300_000


def test_unknown_policy_is_refused(capsys):
    assert ci_sim.main(["--synthetic", "--policies", "parkingspot,cheapest"]) == 2
    assert "--policies: unknown policy cheapest" in capsys.readouterr().err


def test_sweep_prints_one_row_per_trace_pair(tmp_path, capsys):
    from ansible_collections.parkingspot.ec2.bench import ci_sim_sweep

    write_trace(tmp_path / "p1.json", 3600, [3] * 10 + [1] * 14)
    write_trace(tmp_path / "a1.json", 3600, [1] * 20 + [0] * 4)
    write_trace(tmp_path / "a2.json", 3600, [0] * 24)
    argv = ["--traces", str(tmp_path), "--seeds", "1,2", "--preemption", "p1.json"]
    argv += ["--availability", "a1.json", "--availability", "a2.json", "--", "--days", "1"]
    assert ci_sim_sweep.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| p1 |")]
    assert [row.split(" | ")[1] for row in rows] == ["a1", "a2"]
    # Spot never available in a2: the keeper's pool is all on-demand, no discount.
    assert rows[1].split(" | ")[2] == "24.0" and rows[1].split(" | ")[4] == "0.0% (0.0%-0.0%)"


def test_list_options_are_whole_numbers_naming_the_option():
    assert ci_sim.whole_numbers("1,2,,3", "--seeds") == [1, 2, 3]
    with pytest.raises(ci_sim.SimError, match="^--seeds: must be comma-separated whole numbers, got '1,x'$"):
        ci_sim.whole_numbers("1,x", "--seeds")
    with pytest.raises(ci_sim.SimError, match="^--renew: at least one value is needed$"):
        ci_sim.whole_numbers(",", "--renew")


@pytest.mark.parametrize("module", ["ci_sim_sweep", "ci_sim_offerings", "ci_sim_offerings_sweep"])
def test_sweeps_refuse_bad_seeds_before_simulating(module, capsys):
    import importlib

    sweep = importlib.import_module("ansible_collections.parkingspot.ec2.bench." + module)
    assert sweep.main(["--seeds", "1,one"]) == 2
    assert "--seeds: must be comma-separated whole numbers" in capsys.readouterr().err


def test_runner_hours_split_billed_time_into_boot_busy_and_idle(monkeypatch):
    sims = {}
    original = ci_sim.Sim.result

    def keep(self):
        sims[self.policy] = self
        return original(self)

    monkeypatch.setattr(ci_sim.Sim, "result", keep)
    config = {"days": 1.0, "seed": 3, "synthetic": True, "interrupt_rate": 0.05, "spot_availability": 1.0}
    report = ci_sim.simulate(config, ("parkingspot", ci_sim.QUEUE_POLICY))
    for name, res in report["results"].items():
        split = res["runner_hours"]
        for market in ("spot", "on_demand"):
            part = split[market]
            assert min(part.values()) >= 0
            assert abs(sum(part.values()) - res["instance_hours"][market]) < 0.01
        # Every finished job's run is busy time; cut runs add to it, never take away.
        sim = sims[name]
        finished = sum(j["duration"] for j in sim.jobs if j["done"] is not None) / 3600
        busy = split["spot"]["busy"] + split["on_demand"]["busy"]
        assert busy >= finished - 0.01
        assert res["jobs_cut_by_interruption"] > 0
        assert res["idle_runner_hours"] == round(split["spot"]["idle"] + split["on_demand"]["idle"], 4)
    # A pool sized by its queue keeps fewer runners idle than one sized by the clock.
    results = report["results"]
    assert results[ci_sim.QUEUE_POLICY]["idle_runner_hours"] < results["parkingspot"]["idle_runner_hours"]
    assert "| idle runner h |" in ci_sim.markdown(report)


def test_queue_options_from_the_command_line(capsys):
    argv = ["--synthetic", "--days", "0.3", "--policies", "parkingspot-queue", "--json"]
    runs = {}
    for idle in (0, 10):
        assert ci_sim.main(argv + ["--queue-floor", "0", "--queue-idle-minutes", str(idle)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["inputs"]["queue_floor"] == 0 and report["inputs"]["queue_idle_minutes"] == idle
        runs[idle] = report["results"]["parkingspot-queue"]
    # Draining idle runners at once leaves fewer idle runner-hours than keeping them 10 minutes.
    assert runs[0]["idle_runner_hours"] < runs[10]["idle_runner_hours"]
