"""Time the keeper's pure planner on synthetic pools (no AWS, no network).

Usage: python3 bench/planner_bench.py [--repeat R] [--sizes 10,100,1000,10000] [--baseline FILE]

Prints a Markdown table: for each pool size N, the median and worst wall time and the median
CPU time (``time.process_time``: what a busy shared machine disturbs least) of one
``plan_pool`` call over R runs, for a pool that needs nothing (steady) and for a busy pool
(leases expiring and expired, drains in progress and overdue, interruptions, on-demand
fallback instances to replace, quotas).  Also times the ``plan_fallback`` second step.

``--baseline FILE`` also times another copy of the planner (for example the frozen copy in
tests/unit/plugins/module_utils/frozen_planner.py), interleaved run by run with this one so
that both see the same machine load, and checks that both return the same plans.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import time

from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL


def load_planner():
    from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner

    return _planner


NOW = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=datetime.timezone.utc)


def steady_pool(planner, n):
    return [
        {
            "instance_id": f"i-{k:017x}",
            "state": "running",
            "launch_time": NOW - datetime.timedelta(minutes=k % 30),
            "instance_type": "m5.large",
            "subnet_id": f"subnet-{k % 3}",
            "zone": f"eu-west-1{'abc'[k % 3]}",
            "market": "spot",
            "tags": {
                TAG_POOL: "ci",
                planner.TAG_EXPIRES_AT: planner.lease_end(NOW - datetime.timedelta(minutes=k % 30), 60),
            },
        }
        for k in range(n)
    ]


def busy_pool(planner, n):
    pool = []
    for k in range(n):
        age = k % 70
        tags = {
            TAG_POOL: "ci",
            planner.TAG_EXPIRES_AT: planner.lease_end(NOW - datetime.timedelta(minutes=age), 60),
        }
        state, market = "running", "spot"
        if k % 10 == 1:
            state, tags[planner.TAG_INTERRUPTED] = "terminated", "true"
        elif k % 10 == 2:
            tags[planner.TAG_STATE] = "draining"
            tags[planner.TAG_DRAIN_DEADLINE] = planner.format_time(NOW + datetime.timedelta(minutes=(k % 7) - 3))
        elif k % 10 == 3:
            market = "on-demand"
        elif k % 10 == 4:
            tags[planner.TAG_BUSY] = "true"
        pool.append(
            {
                "instance_id": f"i-{k:017x}",
                "state": state,
                "launch_time": NOW - datetime.timedelta(minutes=age),
                "instance_type": "m5.large" if k % 2 else "m5.xlarge",
                "subnet_id": f"subnet-{k % 3}",
                "zone": "eu-west-1a",
                "market": market,
                "tags": tags,
            }
        )
    return pool


# Keys of features added after the frozen copy was taken (offerings memory, rebalance replacement).
# At their defaults they change nothing else, so plans are compared without them, as
# tests/unit/plugins/module_utils/test__planner_equivalence.py does.
LATER_KEYS = ("rebalance", "offerings")


def comparable(plan):
    if plan.get("rebalance", []):
        raise SystemExit("a bench pool asked for a rebalance replacement; the frozen planner has none")
    return {key: value for key, value in plan.items() if key not in LATER_KEYS}


def load_baseline(path):
    spec = importlib.util.spec_from_file_location("parkingspot_baseline_planner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(repeat, funcs, *args, **kwargs):
    """Run each of ``funcs`` ``repeat`` times, interleaved; per func (median ms, worst ms, median CPU ms, result)."""
    wall = [[] for _func in funcs]
    cpu = [[] for _func in funcs]
    results = [None for _func in funcs]
    for _run in range(repeat):
        for index, func in enumerate(funcs):
            start, start_cpu = time.perf_counter(), time.process_time()
            results[index] = func(*args, **kwargs)
            cpu[index].append((time.process_time() - start_cpu) * 1000.0)
            wall[index].append((time.perf_counter() - start) * 1000.0)
    return [(statistics.median(w), max(w), statistics.median(c), r) for w, c, r in zip(wall, cpu, results, strict=True)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--baseline", help="another copy of _planner.py to time beside this one")
    args = parser.parse_args(argv)
    planners = [("planner", load_planner())]
    if args.baseline:
        planners.append(("baseline", load_baseline(args.baseline)))
    planner = planners[0][1]
    block = {"market": "block", "duration_minutes": 60, "renew_before_minutes": 20, "drain_timeout_seconds": 300}
    quota = {"max_vcpus": 100000, "per_owner_max_vcpus": 100000, "owner_used_vcpus": 0}
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU(s); {args.repeat} runs each"
    )
    print()
    print("| N | case | planner | median ms | worst ms | median CPU ms | launch | drain | terminate |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")

    def rows(n, case, measured, describe):
        plans = [comparable(m[3]) for m in measured]
        if any(p != plans[0] for p in plans):
            raise SystemExit(f"N={n} {case}: the planners disagree")
        for (name, _module), (med, worst, cpu, plan) in zip(planners, measured, strict=True):
            print(f"| {n} | {case} | {name} | {med:.2f} | {worst:.2f} | {cpu:.2f} | {describe(plan)} |")

    def counts(plan):
        launch = plan["launch"]["spot"] + plan["launch"]["on_demand"]
        return f"{launch} | {len(plan['drain'])} | {len(plan['terminate'])}"

    for n in (int(x) for x in args.sizes.split(",")):
        steady = steady_pool(planner, n)
        measured = timed(args.repeat, [m.plan_pool for _name, m in planners], steady, NOW, n, **block)
        rows(n, "steady block pool", measured, counts)
        busy = busy_pool(planner, n)
        kwargs = dict(
            block,
            fallback={"enabled": True, "max": n},
            quota=quota,
            vcpus={"m5.large": 2, "m5.xlarge": 4},
            launch_instance_types=["m5.large"],
        )
        measured = timed(args.repeat, [m.plan_pool for _name, m in planners], busy, NOW, n, **kwargs)
        rows(n, "busy block pool, quotas", measured, counts)
        plan = measured[0][3]
        measured = timed(
            args.repeat, [m.plan_fallback for _name, m in planners], plan, 0, "InsufficientInstanceCapacity"
        )
        rows(n, "plan_fallback after it", measured, lambda p: f"{p['launch']['on_demand']} on-demand | - | -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
