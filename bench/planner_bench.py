"""Time the keeper's pure planner on synthetic pools (no AWS, no network).

Usage: python3 bench/planner_bench.py [--repeat R] [--sizes 10,100,1000,10000]

Prints a Markdown table: for each pool size N, the median and worst wall time of one
``plan_pool`` call over R runs, for a pool that needs nothing (steady) and for a busy pool
(leases expiring and expired, drains in progress and overdue, interruptions, on-demand
fallback instances to replace, quotas).  Also times the ``plan_fallback`` second step.
"""

from __future__ import annotations

import argparse
import datetime
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


def timed(repeat, func, *args, **kwargs):
    samples = []
    result = None
    for _run in range(repeat):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples), max(samples), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    args = parser.parse_args(argv)
    planner = load_planner()
    block = {"market": "block", "duration_minutes": 60, "renew_before_minutes": 20, "drain_timeout_seconds": 300}
    quota = {"max_vcpus": 100000, "per_owner_max_vcpus": 100000, "owner_used_vcpus": 0}
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU(s); {args.repeat} runs each"
    )
    print()
    print("| N | case | median ms | worst ms | launch | drain | terminate |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        steady = steady_pool(planner, n)
        med, worst, plan = timed(args.repeat, planner.plan_pool, steady, NOW, n, **block)
        row = (plan["launch"]["spot"] + plan["launch"]["on_demand"], len(plan["drain"]), len(plan["terminate"]))
        print(f"| {n} | steady block pool | {med:.2f} | {worst:.2f} | {row[0]} | {row[1]} | {row[2]} |")
        busy = busy_pool(planner, n)
        kwargs = dict(
            block,
            fallback={"enabled": True, "max": n},
            quota=quota,
            vcpus={"m5.large": 2, "m5.xlarge": 4},
            launch_instance_types=["m5.large"],
        )
        med, worst, plan = timed(args.repeat, planner.plan_pool, busy, NOW, n, **kwargs)
        row = (plan["launch"]["spot"] + plan["launch"]["on_demand"], len(plan["drain"]), len(plan["terminate"]))
        print(f"| {n} | busy block pool, quotas | {med:.2f} | {worst:.2f} | {row[0]} | {row[1]} | {row[2]} |")
        med, worst, second = timed(args.repeat, planner.plan_fallback, plan, 0, "InsufficientInstanceCapacity")
        print(
            f"| {n} | plan_fallback after it | {med:.2f} | {worst:.2f} | "
            f"{second['launch']['on_demand']} on-demand | - | - |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
