"""Which ``renew_before_minutes`` loses no job: bench/ci_sim.py's block policy over renewal margins.

Usage (from the collection root, with the collection importable, e.g.
``make bench B=ci_sim_renew_sweep``):

    python bench/ci_sim_renew_sweep.py [--renew 20,30,40,45,50] [--seeds 1,2,3] [ci_sim options after --]

For every margin and seed, ``parkingspot-blocks`` and ``on-demand`` run on the same input (the
default job mix unless ci_sim options say otherwise). One Markdown row per margin: jobs cut at a
lease end, jobs lost (any cause), effective discount (median, lowest-highest over the seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from ansible_collections.parkingspot.ec2.bench import ci_sim

POLICY = "parkingspot-blocks"


def sweep(config, margins, seeds):
    rows = []
    for margin in margins:
        runs = []
        for seed in seeds:
            report = ci_sim.simulate(dict(config, seed=seed, renew_before_minutes=margin), ("on-demand", POLICY))
            runs.append(report["results"][POLICY])
        rows.append(
            {
                "renew_before_minutes": margin,
                "jobs_cut_by_lease": sum(r["jobs_cut_by_lease"] for r in runs),
                "jobs_lost": sum(r["jobs_lost_to_interruption"] + r["jobs_lost_other"] for r in runs),
                "jobs_lost_other": sum(r["jobs_lost_other"] for r in runs),
                "discounts": [r["effective_discount"] for r in runs],
            }
        )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--renew", default="20,30,40,44,45,46,50")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--json", action="store_true")
    p.add_argument("rest", nargs="*", help="further ci_sim options (after --)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        margins = ci_sim.whole_numbers(args.renew, "--renew")
        seeds = ci_sim.whole_numbers(args.seeds, "--seeds")
        config = ci_sim.config_from_args(ci_sim.parse_args(args.rest))
        rows = sweep(config, margins, seeds)
    except ci_sim.SimError as e:
        print(f"ci_sim_renew_sweep: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, sort_keys=True, indent=1))
        return 0
    print(
        f"longest job: {config['job_max_minutes']:g} min, blocks of {config['block_minutes']} min, seeds {args.seeds}"
    )
    print()
    print("| renew_before_minutes | jobs cut at a lease end | jobs lost (lease/drain) | jobs lost (all) | discount |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        d = sorted(row["discounts"])
        print(
            "| {} | {} | {} | {} | {:.1f}% ({:.1f}-{:.1f}%) |".format(
                row["renew_before_minutes"],
                row["jobs_cut_by_lease"],
                row["jobs_lost_other"],
                row["jobs_lost"],
                statistics.median(d) * 100,
                d[0] * 100,
                d[-1] * 100,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
