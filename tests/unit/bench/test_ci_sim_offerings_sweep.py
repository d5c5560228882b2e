# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offerings sweep and rebalance signals on tiny hand-made traces."""

import json

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings
from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings_sweep as sweep
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REBALANCE

DAY = {"days": 1.0, "seed": 7}
HOUR = 3600


def write(tmp_path, name, gap, values):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": values}))
    return name


def availability_dirs(tmp_path, per_dir=2):
    """A data set with ``per_dir`` availability files in every AWS folder the sweep reads."""
    names = []
    for folder in ci_sim_offerings.AWS_AVAILABILITY_DIRS:
        for k in range(per_dir):
            names.append(write(tmp_path, f"{folder}/zone-{k}.json", 3600, [1] * 25))
    return names


def test_every_pair_of_the_cross_product_is_run_unless_a_sample_is_asked_for(tmp_path):
    names = availability_dirs(tmp_path)
    every = sweep.pairs(str(tmp_path))
    assert len(every) == len(ci_sim_offerings.AWS_PREEMPTION) * len(names)
    assert len(set(every)) == len(every)
    assert {a for _p, a in every} == set(names)
    sample = sweep.pairs(str(tmp_path), 7, pairs_seed=3)
    assert len(sample) == 7 and set(sample) <= set(every)
    assert sample == sweep.pairs(str(tmp_path), 7, pairs_seed=3)
    assert sample != sweep.pairs(str(tmp_path), 7, pairs_seed=4)


def test_the_pair_is_offering_0_and_the_others_do_not_repeat_it(tmp_path):
    names = availability_dirs(tmp_path)
    pair = (ci_sim_offerings.AWS_PREEMPTION[2], names[1])
    for seed in range(1, 6):
        pre, avail = sweep.draw_others(pair, seed, 3, names)
        assert (pre[0], avail[0]) == pair
        assert len(set(pre)) == 3 and len(set(avail)) == 3
    assert sweep.draw_others(pair, 1, 3, names) == sweep.draw_others(pair, 1, 3, names)


def test_targets_count_losses_discounts_and_waits():
    def row(lost, discount, up, ratio):
        return {
            "lost": lost,
            "best_offering_up": up,
            "result": {
                "effective_discount": discount,
                "wait_p95_vs_on_demand": ratio,
                "lane_cost_usd": 28.5,
                "jobs_cut_by_interruption": 2,
                "rebalance_warned_instances": 1,
            },
        }

    summary = sweep.targets([row(0, 0.65, 0.95, 1.0), row(2, 0.55, 0.92, 1.3), row(0, 0.40, 0.5, None)])
    assert summary["jobs_lost"] == 2 and summary["runs_with_a_loss"] == 1
    assert summary["runs_launchable_90"] == 2 and summary["runs_launchable_90_below_60pct"] == 1
    assert summary["wait_p95_ratio_max"] == 1.3 and summary["runs_wait_above_1_2"] == 1
    assert summary["discount_min"] == 0.40
    assert summary["jobs_cut_by_interruption"] == 6 and summary["rebalance_warned_instances"] == 3


def test_a_sweep_on_a_small_data_set_runs_every_pair_and_seed(tmp_path, capsys):
    availability_dirs(tmp_path, per_dir=1)
    for name in ci_sim_offerings.AWS_PREEMPTION:
        write(tmp_path, name, HOUR, [3] * 10 + [1] + [3] * 14)
    rc = sweep.main(["--traces", str(tmp_path), "--seeds", "1,2", "--pairs", "2", "--json", "--", "--days", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["runs"]) == 4
    assert {r["seed"] for r in out["runs"]} == {1, 2}
    assert all(r["best_offering_up"] == 1.0 for r in out["runs"])
    assert out["targets"]["runs"] == 4 and out["targets"]["jobs_lost"] == sum(r["lost"] for r in out["runs"])


def test_bad_options_are_refused_with_their_name(tmp_path, capsys):
    assert sweep.main(["--traces", str(tmp_path), "--rebalance-lead-minutes", "-1"]) == 2
    assert "--rebalance-lead-minutes" in capsys.readouterr().err
    assert sweep.main(["--traces", str(tmp_path), "--rebalance-share", "2"]) == 2
    assert "--rebalance-share" in capsys.readouterr().err
    assert sweep.main(["--traces", str(tmp_path), "--pairs", "-3"]) == 2
    assert "--pairs" in capsys.readouterr().err


def simulate_rebalance(tmp_path, lead, share=1.0):
    """One offering interrupted 5 at a time at 10:00, 12:00, 14:00 and 16:00; always launchable."""
    cfg = ci_sim.validate_config(dict(DAY, traces=str(tmp_path)))
    values = [5] * 25
    for hour in (10, 12, 14, 16):
        values[hour] = 0
    pre = write(tmp_path, "pre.json", HOUR, values)
    avail = write(tmp_path, "avail.json", HOUR, [1] * 25)
    offerings = ci_sim_offerings.build_offerings(cfg, [pre], [avail])
    sim = ci_sim_offerings.OfferingsSim(
        cfg, ci_sim.job_stream(cfg), offerings, 1, 15, rebalance_lead=lead, rebalance_share=share
    )
    return sim, sim.run()


def test_without_a_lead_time_no_rebalance_signal_arrives(tmp_path):
    sim, res = simulate_rebalance(tmp_path, 0)
    assert res["rebalance_signals"] == 0 and sim.rebalance_log == []
    assert not any(TAG_REBALANCE in inst.tags for inst in sim.instances.values())
    assert res["notices"] > 0


def test_a_warned_instance_is_replaced_then_drained_before_its_interruption(tmp_path):
    lead = 10 * 60
    sim, res = simulate_rebalance(tmp_path, lead)
    # Every interruption of the trace was announced, lead seconds before.
    assert [t for t, _ids in sim.rebalance_log] == [h * HOUR - lead for h in (10, 12, 14, 16)]
    assert res["rebalance_warned_instances"] > 0
    reacted = sim.cfg["event_delay_seconds"]
    for t, warned in sim.rebalance_log:
        if not warned:
            continue
        for iid in warned:
            inst = sim.instances[iid]
            assert TAG_REBALANCE in inst.tags
            # Drained by the keeper run the signal triggered: idle ones are gone at once.
            assert inst.draining is not None or (inst.ended is not None and inst.ended <= t + reacted)
        # ...and that same run launched the replacements (a tick at the signal's second runs it at once).
        launched = [i for i in sim.instances.values() if t <= i.launched <= t + reacted]
        assert len(launched) >= len(warned)
    assert res["jobs_lost_to_interruption"] + res["jobs_lost_other"] == 0


def test_a_share_of_0_sends_no_signal_and_a_share_between_picks_some(tmp_path):
    _sim, res = simulate_rebalance(tmp_path, 600, share=0.0)
    assert res["rebalance_signals"] == 0
    sim, res = simulate_rebalance(tmp_path, 600, share=1.0)
    assert res["rebalance_signals"] == 4


def test_the_offerings_run_writes_one_chart_per_seed(tmp_path):
    data = tmp_path / "data"
    names = availability_dirs(data, per_dir=1)
    for name in ci_sim_offerings.AWS_PREEMPTION:
        write(data, name, HOUR, [3] * 10 + [1] + [3] * 14)
    out = tmp_path / "charts"
    rc = ci_sim_offerings.main(
        [
            "--traces",
            str(data),
            "--seeds",
            "1,2",
            "--html-dir",
            str(out),
            "--",
            "--days",
            "1",
            "--availability",
            names[0],
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["offerings-seed-1.html", "offerings-seed-2.html"]
    page = (out / "offerings-seed-1.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert ci_sim_offerings.POLICY in page and "single-market parkingspot" in page


def test_the_grouped_view_lists_exactly_the_runs_that_miss_a_target():
    def row(avail, seed, lost, discount, up, ratio):
        return {
            "seed": seed,
            "pair": ["preemption/1-node/aws-04-19-2023/a.json", f"availability/1-node/aws-02-15-2023/{avail}.json"],
            "lost": lost,
            "best_offering_up": up,
            "result": {
                "effective_discount": discount,
                "wait_p95_vs_on_demand": ratio,
                "lane_cost_usd": 1.0,
                "cost_usd": 10.0,
                "jobs_cut_by_interruption": 0,
            },
        }

    runs = [
        row("z1", 1, 0, 0.65, 0.95, 1.0),  # meets every target
        row("z1", 2, 1, 0.65, 0.95, 1.0),  # a job lost
        row("z2", 1, 0, 0.55, 0.91, 1.0),  # launchable >= 90% but below 60%
        row("z2", 2, 0, 0.55, 0.50, 1.0),  # below 60% but not launchable: no miss
        row("z2", 3, 0, 0.70, 0.50, 1.25),  # p95 above 1.2x
    ]
    text = sweep.grouped(runs, sweep.targets(runs))
    assert "runs that miss a target: 3" in text
    missed = [line for line in text.splitlines() if line.startswith("| 04-19-2023/a |")]
    assert [tuple(line.split(" | ")[1:3]) for line in missed] == [
        ("02-15-2023/z1", "2"),
        ("02-15-2023/z2", "1"),
        ("02-15-2023/z2", "3"),
    ]
    group_rows = [line for line in text.splitlines() if line.startswith("| 02-15-2023/z")]
    assert len(group_rows) == 2
    assert group_rows[0].split(" | ")[1:4] == ["2", "95.0-95.0%", "2"]
