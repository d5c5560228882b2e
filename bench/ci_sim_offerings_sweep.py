"""bench/ci_sim_offerings.py over every AWS preemption x availability pair of the data set.

Usage (from the collection root, with the collection importable, e.g.
``make bench B=ci_sim_offerings_sweep``):

    python bench/ci_sim_offerings_sweep.py [--traces DIR] [--seeds 1,2,3,4,5] [--offerings 3]
        [--pairs N --pairs-seed S] [--on-demand-base 1] [--cooldown-minutes 15]
        [--rebalance-lead-minutes 0] [--rebalance-share 0.5] [--json] [ci_sim options after --]

A run is one (preemption file, availability file) pair and one seed: the pair is offering 0,
the other ``--offerings - 1`` offerings are drawn (seeded by the seed and the pair, without
repetition) from the remaining AWS files. Every pair of the cross product is run unless
``--pairs N`` asks for a seeded sample of N pairs (``--pairs-seed``). The baseline of discount
and wait is the on-demand-only pool on the same job stream (it does not depend on traces).

One Markdown row per run: jobs lost, effective discount, the on-demand lane's cost, p95 wait
against on-demand-only, and whether some offering could be launched >= 90% of the time; then
which of the issue's targets held over all runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings as offerings_sim

UP_THRESHOLD = 0.9
DISCOUNT_TARGET = 0.6
WAIT_TARGET = 1.2


def pairs(traces, count=0, pairs_seed=1):
    """Every (preemption, availability) pair, or a seeded sample of ``count`` of them, in file order."""
    every = list(itertools.product(offerings_sim.AWS_PREEMPTION, offerings_sim.aws_availability(traces)))
    if count and count < len(every):
        chosen = set(random.Random(f"{pairs_seed}-pairs").sample(range(len(every)), count))
        every = [pair for k, pair in enumerate(every) if k in chosen]
    return every


def draw_others(pair, seed, n_offerings, availability_files):
    """The preemption and availability files of offerings 1..n-1 for this pair and seed."""
    rng = random.Random(f"{seed}-{pair[0]}-{pair[1]}")
    pre = rng.sample([p for p in offerings_sim.AWS_PREEMPTION if p != pair[0]], n_offerings - 1)
    avail = rng.sample([a for a in availability_files if a != pair[1]], n_offerings - 1)
    return [pair[0]] + pre, [pair[1]] + avail


def run_one(cfg, jobs, base_res, pair, options, availability_files):
    preemption, availability = draw_others(pair, cfg["seed"], options["offerings"], availability_files)
    offerings = offerings_sim.build_offerings(cfg, preemption, availability)
    sim = offerings_sim.OfferingsSim(
        cfg,
        jobs,
        offerings,
        options["base"],
        options["cooldown"],
        rebalance_lead=options["rebalance_lead"],
        rebalance_share=options["rebalance_share"],
    )
    res = offerings_sim.compare(sim.run(), base_res)
    any_up, best_up = offerings_sim.uptime(offerings, sim.horizon)
    return {
        "seed": cfg["seed"],
        "pair": list(pair),
        "preemption": preemption,
        "availability": availability,
        "any_offering_up": any_up,
        "best_offering_up": best_up,
        "lost": offerings_sim.lost(res),
        "result": res,
    }


def sweep(config, seeds, chosen_pairs, options):
    availability_files = offerings_sim.aws_availability(config["traces"])
    runs = []
    for seed in seeds:
        # Each offering reads its own availability file; the on-demand baseline reads none of it.
        cfg = ci_sim.validate_config(dict(config, seed=seed, availability=availability_files[0]))
        jobs = ci_sim.job_stream(cfg)
        base_res = offerings_sim.on_demand_only(cfg, jobs)
        for pair in chosen_pairs:
            runs.append(run_one(cfg, jobs, base_res, pair, options, availability_files))
    return runs


def targets(runs):
    """Which of the issue's targets held over ``runs``."""
    launchable = [r for r in runs if r["best_offering_up"] >= UP_THRESHOLD]
    ratios = [r["result"]["wait_p95_vs_on_demand"] for r in runs if r["result"]["wait_p95_vs_on_demand"] is not None]
    return {
        "runs": len(runs),
        "jobs_lost": sum(r["lost"] for r in runs),
        "runs_with_a_loss": sum(1 for r in runs if r["lost"]),
        "runs_launchable_90": len(launchable),
        "runs_launchable_90_below_60pct": sum(
            1 for r in launchable if r["result"]["effective_discount"] < DISCOUNT_TARGET
        ),
        "discount_min": min(r["result"]["effective_discount"] for r in runs),
        "discount_max": max(r["result"]["effective_discount"] for r in runs),
        "lane_cost_usd_max": max(r["result"]["lane_cost_usd"] for r in runs),
        "wait_p95_ratio_max": max(ratios) if ratios else None,
        "runs_wait_above_1_2": sum(1 for x in ratios if x > WAIT_TARGET),
        "jobs_cut_by_interruption": sum(r["result"]["jobs_cut_by_interruption"] for r in runs),
        "rebalance_warned_instances": sum(r["result"].get("rebalance_warned_instances", 0) for r in runs),
        "rebalance_warned_then_interrupted": sum(r["result"].get("rebalance_warned_then_interrupted", 0) for r in runs),
    }


def markdown(runs, summary):
    lines = [
        "| preemption (offering 0) | availability (offering 0) | seed | best offering up | >= 90% | "
        "discount | lane cost USD (of total) | lost | p95 vs on-demand |",
        "|" + " --- |" * 9,
    ]
    for r in runs:
        o = r["result"]
        lines.append(
            "| {} | {} | {} | {:.1f}% | {} | {:.1f}% | {:.2f} ({:.2f}) | {} | {} |".format(
                offerings_sim.short(r["pair"][0]),
                offerings_sim.short(r["pair"][1]),
                r["seed"],
                r["best_offering_up"] * 100,
                "yes" if r["best_offering_up"] >= UP_THRESHOLD else "no",
                o["effective_discount"] * 100,
                o["lane_cost_usd"],
                o["cost_usd"],
                r["lost"],
                "-" if o["wait_p95_vs_on_demand"] is None else f"{o['wait_p95_vs_on_demand']:.2f}x",
            )
        )
    s = summary
    lines += [
        "",
        f"runs: {s['runs']}; jobs lost: {s['jobs_lost']} (in {s['runs_with_a_loss']} runs)",
        "discount: {:.1f}%-{:.1f}%; runs with an offering up >= 90%: {}, of them below 60%: {}".format(
            s["discount_min"] * 100,
            s["discount_max"] * 100,
            s["runs_launchable_90"],
            s["runs_launchable_90_below_60pct"],
        ),
        "lane cost: at most {:.2f} USD; p95 wait vs on-demand: at most {}, runs above 1.2x: {}".format(
            s["lane_cost_usd_max"],
            "-" if s["wait_p95_ratio_max"] is None else f"{s['wait_p95_ratio_max']:.2f}x",
            s["runs_wait_above_1_2"],
        ),
        "jobs cut by an interruption: {}; instances warned by a rebalance signal: {}, of them interrupted: {}".format(
            s["jobs_cut_by_interruption"], s["rebalance_warned_instances"], s["rebalance_warned_then_interrupted"]
        ),
    ]
    return "\n".join(lines)


def grouped(runs, summary):
    """The runs grouped by offering 0's availability file, and every run that misses a target."""
    lines = [
        "| availability (offering 0) | runs | best offering up | runs >= 90% | discount median (range) "
        "| discount when >= 90% (range) | lost | p95 vs on-demand, max |",
        "|" + " --- |" * 8,
    ]
    groups = {}
    for r in runs:
        groups.setdefault(r["pair"][1], []).append(r)

    def span(values):
        if not values:
            return "-"
        values = sorted(values)
        return "{:.1f}% ({:.1f}-{:.1f}%)".format(statistics.median(values) * 100, values[0] * 100, values[-1] * 100)

    for name in sorted(groups):
        group = groups[name]
        ups = sorted(r["best_offering_up"] for r in group)
        ratios = [r["result"]["wait_p95_vs_on_demand"] for r in group if r["result"]["wait_p95_vs_on_demand"]]
        lines.append(
            "| {} | {} | {:.1f}-{:.1f}% | {} | {} | {} | {} | {} |".format(
                offerings_sim.short(name),
                len(group),
                ups[0] * 100,
                ups[-1] * 100,
                sum(1 for u in ups if u >= UP_THRESHOLD),
                span([r["result"]["effective_discount"] for r in group]),
                span([r["result"]["effective_discount"] for r in group if r["best_offering_up"] >= UP_THRESHOLD]),
                sum(r["lost"] for r in group),
                f"{max(ratios):.2f}x" if ratios else "-",
            )
        )
    misses = [
        r
        for r in runs
        if r["lost"]
        or (r["best_offering_up"] >= UP_THRESHOLD and r["result"]["effective_discount"] < DISCOUNT_TARGET)
        or (r["result"]["wait_p95_vs_on_demand"] or 0) > WAIT_TARGET
    ]
    lines += ["", f"runs that miss a target: {len(misses)}"]
    lines += markdown(misses, summary).split("\n")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--traces", default=ci_sim.DEFAULT_TRACES)
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--offerings", type=int, default=3)
    p.add_argument("--pairs", type=int, default=0, help="a seeded sample of this many pairs (0: every pair)")
    p.add_argument("--pairs-seed", type=int, default=1)
    p.add_argument("--on-demand-base", type=int, default=1)
    p.add_argument("--cooldown-minutes", type=int, default=15)
    p.add_argument("--rebalance-lead-minutes", type=float, default=0.0)
    p.add_argument("--rebalance-share", type=float, default=0.5)
    p.add_argument("--retry-lane", action="store_true", help="re-runs only on on-demand lane runners launched for them")
    p.add_argument("--json", action="store_true")
    p.add_argument("--grouped", action="store_true", help="one row per availability file, then the runs that miss")
    p.add_argument("rest", nargs="*", help="further ci_sim options (after --)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        seeds = ci_sim.whole_numbers(args.seeds, "--seeds")
        offerings_sim.check_options(args.offerings, args.on_demand_base, args.cooldown_minutes)
    except ci_sim.SimError as e:
        print(e, file=sys.stderr)
        return 2
    if args.pairs < 0:
        print(f"--pairs: must be 0 (every pair) or more, got {args.pairs}", file=sys.stderr)
        return 2
    if args.rebalance_lead_minutes < 0:
        print(f"--rebalance-lead-minutes: must be 0 (off) or more, got {args.rebalance_lead_minutes}", file=sys.stderr)
        return 2
    if not 0 <= args.rebalance_share <= 1:
        print(f"--rebalance-share: must be between 0 and 1, got {args.rebalance_share}", file=sys.stderr)
        return 2
    options = {
        "offerings": args.offerings,
        "base": args.on_demand_base,
        "cooldown": args.cooldown_minutes,
        "rebalance_lead": int(args.rebalance_lead_minutes * 60),
        "rebalance_share": args.rebalance_share,
    }
    try:
        config = dict(ci_sim.config_from_args(ci_sim.parse_args(args.rest)), traces=args.traces)
        config["retry_lane"] = config["retry_lane"] or args.retry_lane
        runs = sweep(config, seeds, pairs(args.traces, args.pairs, args.pairs_seed), options)
    except ci_sim.SimError as e:
        print(f"ci_sim_offerings_sweep: {e}", file=sys.stderr)
        return 2
    summary = targets(runs)
    if args.json:
        print(json.dumps({"runs": runs, "targets": summary}, sort_keys=True, indent=1))
    elif args.grouped:
        print(grouped(runs, summary))
    else:
        print(markdown(runs, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
