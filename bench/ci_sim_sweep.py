"""Run bench/ci_sim.py over several traces and seeds: how much the result depends on the input.

Usage (from the collection root, with the collection importable, e.g. ``make bench B=ci_sim_sweep``):

    python bench/ci_sim_sweep.py [--traces DIR] [--seeds 1,2,3] [--preemption FILE ...]
                                 [--availability FILE ...] [ci_sim options after --]

For every (preemption trace, availability trace) pair and every seed, all four policies run on
the same input; one Markdown row per pair gives the median over the seeds and, in brackets,
the lowest and highest value.  Lost-job counts are totals over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from ansible_collections.parkingspot.ec2.bench import ci_sim

PREEMPTION = [
    "preemption/1-node/aws-04-19-2023/us-east-1b_intel_64.json",
    "preemption/1-node/aws-04-19-2023/us-east-1c_intel_64.json",
    "preemption/1-node/aws-04-19-2023/us-east-1d_intel_64.json",
]
AVAILABILITY = [
    "availability/1-node/aws-02-15-2023/us-west-2b_v100_1.json",
    "availability/1-node/aws-02-15-2023/us-west-2a_v100_1.json",
    "availability/1-node/aws-02-15-2023/us-east-2b_v100_1.json",
    "availability/1-node/aws-02-15-2023/us-east-1c_v100_1.json",
]


def spread(values, fmt):
    values = sorted(values)
    mid = statistics.median(values)
    return f"{fmt(mid)} ({fmt(values[0])}-{fmt(values[-1])})"


def pct(value):
    return f"{value * 100:.1f}%"


def ratio(value):
    return f"{value:.2f}x"


def short(path):
    return path.rsplit("/", 1)[-1].replace(".json", "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--traces", default=ci_sim.DEFAULT_TRACES)
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--preemption", action="append")
    p.add_argument("--availability", action="append")
    p.add_argument("rest", nargs="*", help="further ci_sim options (after --)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        seeds = ci_sim.whole_numbers(args.seeds, "--seeds")
    except ci_sim.SimError as e:
        print(e, file=sys.stderr)
        return 2
    base = ci_sim.config_from_args(ci_sim.parse_args(args.rest))
    print(
        "| preemption | availability | spot unavailable h | notices | parkingspot discount | parkingspot lost "
        "| parkingspot p95 vs on-demand | naive lost | naive p95 vs on-demand | blocks discount | blocks lost "
        "| blocks p95 vs on-demand |"
    )
    print("|" + " --- |" * 12)
    for pre in args.preemption or PREEMPTION:
        for avail in args.availability or AVAILABILITY:
            runs = []
            for seed in seeds:
                config = dict(base, traces=args.traces, preemption=[pre], availability=avail, seed=seed)
                try:
                    runs.append(ci_sim.simulate(config))
                except ci_sim.SimError as e:
                    print(f"ci_sim_sweep: {e}", file=sys.stderr)
                    return 2
            res = [r["results"] for r in runs]

            def col(policy, key, fmt, res=res):
                return spread([r[policy][key] or 0 for r in res], fmt)

            def lost(policy, res=res):
                return str(sum(r[policy]["jobs_lost_to_interruption"] + r[policy]["jobs_lost_other"] for r in res))

            print(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                    short(pre),
                    short(avail),
                    runs[0]["inputs"]["spot_unavailable_hours"],
                    spread([r["parkingspot"]["notices"] for r in res], str),
                    col("parkingspot", "effective_discount", pct),
                    lost("parkingspot"),
                    col("parkingspot", "wait_p95_vs_on_demand", ratio),
                    lost("naive-spot"),
                    col("naive-spot", "wait_p95_vs_on_demand", ratio),
                    col("parkingspot-blocks", "effective_discount", pct),
                    lost("parkingspot-blocks"),
                    col("parkingspot-blocks", "wait_p95_vs_on_demand", ratio),
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
