"""bench/ci_sim.py with offerings: each offering its own preemption and availability trace.

Usage (from the collection root, with the collection importable, e.g. ``make bench B=ci_sim_offerings``):

    python bench/ci_sim_offerings.py [--traces DIR] [--seeds 1,2,3,4,5] [--offerings 3]
                                     [--on-demand-base 1] [--cooldown-minutes 15] [--retry-lane]
                                     [--queue] [ci_sim options after --]

For every seed, ``--offerings`` preemption traces and as many availability traces are drawn
(seeded, without repetition) from every AWS file of the data set; offering k (one instance
type in subnet k) is interrupted by the falls of its own preemption trace and can be launched
only while its own availability trace is above 0. The policy ``parkingspot-offerings`` is the
keeper with this issue's features, planned by the keeper's own pure planner:

- the next launch leaves out offerings with an interruption in the last ``--cooldown-minutes``
  (rebuilt every run from the instances listed, terminated ones for an hour, as the keeper does);
- a launch goes to the available offering with the most capacity in its trace (a stand-in for
  price-capacity-optimized with equal prices); a refused offering is retried on the others in
  the same run, then the on-demand fallback;
- ``--on-demand-base`` runners are kept on-demand in their own lane; a job cut by an
  interruption is re-run only on an on-demand runner (the lane or a fallback runner).
- ``--retry-lane`` (spot_pool ``demand.retries``): a re-run runs only on a lane runner, and the
  keeper, run by the re-run's queued webhook after ``queue_delay_seconds``, launches one on-demand
  lane runner for each queued re-run beyond the idle lane runners; lane runners go again by the
  scale-in rule of queue-driven pools (idle ``queue_idle_minutes``), which then also protects the
  pool's other busy and recently idle runners, as the module does whenever ``demand`` is given.

- ``--queue``: the pool is sized by the simulated CI queue as ci_sim's ``parkingspot-queue``
  (spot_pool ``demand``; floor and idle time from ``--queue-floor`` / ``--queue-idle-minutes``
  after ``--``), the policy ``parkingspot-offerings-queue``.

The policies of ci_sim run on the first offering's traces only (one market, as before), on the
same job stream, for comparison. The traces carry no rebalance recommendations: ``OfferingsSim``
can announce a share of the interruptions a lead time before (``rebalance_lead``, 0 = off; used
by bench/ci_sim_offerings_sweep.py). One Markdown row per seed; ``--json`` prints everything;
``--html-dir`` writes one chart per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import ON_DEMAND_TABLE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_INTERRUPTED
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_LANE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REBALANCE

POLICY = "parkingspot-offerings"
# The same pool sized by the simulated CI queue (ci_sim's parkingspot-queue sizing): --queue.
QUEUE_POLICY = "parkingspot-offerings-queue"
HOUR = 3600

# Every AWS trace of the data set (relative to --traces).
AWS_PREEMPTION = [
    "preemption/1-node/aws-04-19-2023/us-east-1b_intel_64.json",
    "preemption/1-node/aws-04-19-2023/us-east-1c_intel_64.json",
    "preemption/1-node/aws-04-19-2023/us-east-1d_intel_64.json",
    "preemption/1-node/aws-04-22-2023/us-east-1c_v100_1.json",
    "preemption/1-node/aws-04-22-2023/us-east-1f_v100_1.json",
    "preemption/1-node/aws-04-22-2023/us-west-2b_v100_1.json",
    "preemption/1-node/aws-04-22-2023/us-west-2c_v100_1.json",
    "preemption/4-node/aws-08-03-2023/us-east-1f_v100_1.json",
    "preemption/4-node/aws-08-03-2023/us-east-2a_v100_1.json",
    "preemption/4-node/aws-08-03-2023/us-west-2c_v100_1.json",
]
AWS_AVAILABILITY_DIRS = [
    "availability/1-node/aws-02-15-2023",
    "availability/1-node/aws-10-26-2022",
    "availability/16-node/aws-08-27-2023",
]


def check_options(offerings, base, cooldown, least=1):
    """SimError naming the option when ``--offerings`` (``least`` or more), ``--on-demand-base`` or
    ``--cooldown-minutes`` is out of range."""
    if not least <= offerings <= len(AWS_PREEMPTION):
        raise ci_sim.SimError(f"--offerings: must be between {least} and {len(AWS_PREEMPTION)}, got {offerings}")
    if base < 0:
        raise ci_sim.SimError(f"--on-demand-base: must be 0 or more, got {base}")
    if cooldown < 0:
        raise ci_sim.SimError(f"--cooldown-minutes: must be 0 or more, got {cooldown}")


def aws_availability(traces):
    found = []
    for folder in AWS_AVAILABILITY_DIRS:
        path = os.path.join(traces, folder)
        if os.path.isdir(path):
            found += sorted(folder + "/" + name for name in os.listdir(path) if name.endswith(".json"))
    if not found:
        raise ci_sim.SimError(f"traces: no AWS availability traces under {traces}")
    return found


class OfferingsSim(ci_sim.Sim):
    """The keeper with offerings, an on-demand lane and retries that never land on spot again."""

    def __init__(self, cfg, jobs, offerings, base, cooldown, rebalance_lead=0, rebalance_share=0.5, queue=False):
        super().__init__(cfg, "parkingspot", jobs, [], offerings[0]["availability"])
        self.policy = QUEUE_POLICY if queue else POLICY
        self.queue_driven = queue
        self.offerings = offerings
        self.base = base
        self.cooldown = cooldown
        self.offering_of = {}
        self.ended_recently = []  # (ended, iid): what DescribeInstances still lists
        self.stats.update(offering_retries=0, offering_exclusions=0, lane_launches=0, retries_waiting_for_lane=0)
        # demand.retries (cfg retry_lane): one on-demand lane runner per queued re-run beyond the
        # idle lane runners; re-runs run only on lane runners.
        self.retry_lane = bool(cfg["retry_lane"])
        self.idle_tags = self.retry_lane or queue
        # Rebalance recommendations: a share of the interruptions is announced ``rebalance_lead``
        # seconds before, to the instances that interruption will hit (see rebalance()).
        self.rebalance_lead = rebalance_lead
        self.warned = {}  # (offering, drop time) -> ids warned for that interruption
        self.rebalance_log = []  # (signal time, ids warned)
        self.stats.update(rebalance_signals=0, rebalance_warned_instances=0, rebalance_warned_then_interrupted=0)
        signal_rng = random.Random(f"{cfg['seed']}-rebalance")
        for k, offering in enumerate(offerings):
            for t, count in offering["drops"]:
                self.push(t, ci_sim.TRACE_DROP, (k, count))
                if rebalance_lead > 0 and t - rebalance_lead >= 0 and signal_rng.random() < rebalance_share:
                    self.push(t - rebalance_lead, ci_sim.TRACE_DROP, ("rebalance", k, count, t))

    def subnet(self, k):
        return "subnet-%d" % k

    def planner_view(self):
        view = super().planner_view()
        for entry in view:
            entry["subnet_id"] = self.subnet(self.offering_of.get(entry["instance_id"], 0))
        self.ended_recently = [(e, iid) for e, iid in self.ended_recently if self.now - e < HOUR]
        for _ended, iid in self.ended_recently:
            inst = self.instances[iid]
            view.append(
                {
                    "instance_id": iid,
                    "state": "terminated",
                    "launch_time": self.dt(inst.launched),
                    "instance_type": self.cfg["instance_type"],
                    "subnet_id": self.subnet(self.offering_of.get(iid, 0)),
                    "market": inst.market,
                    "tags": dict(inst.tags),
                }
            )
        return view

    def on_reconcile(self, t, why):
        cfg = self.cfg
        now, desired = self.run_started(t, why)
        offerings = [
            {"instance_type": cfg["instance_type"], "subnet_id": self.subnet(k)} for k in range(len(self.offerings))
        ]
        view = self.planner_view()
        desired, protected, retries = self.sizing(view, now, desired)
        self.stats["planner_calls"] += 1
        plan = _planner.plan_pool(
            view,
            now,
            desired,
            fallback=self.fallback,
            drain_timeout_seconds=cfg["drain_timeout_seconds"],
            on_demand_base=self.base,
            offerings=offerings,
            offering_cooldown_minutes=self.cooldown,
            rebalance="replace" if self.rebalance_lead > 0 else "ignore",
            protected=protected,
            retries=retries,
        )
        self.stats["offering_exclusions"] += len(plan["offerings"]["excluded"])
        if plan["terminate"]:
            self.stats["terminate_calls"] += 1
            for iid in plan["terminate"]:
                self.end_instance(t, iid, "drain_deadline")
        if plan["launch"]["spot"]:
            # As _keeper.launch_spot: the plan's offerings, a refused one dropped, the rest retried.
            left = [int(o["subnet_id"].split("-")[1]) for o in plan["offerings"]["launch"]]
            launched = False
            attempts = 0
            while left and not launched:
                self.stats["spot_launch_calls"] += 1
                attempts += 1
                up = [k for k in left if self.offerings[k]["availability"].spot_ok(t)]
                if up:
                    best = max(up, key=lambda k: (self.capacity(k, t), -k))
                    self.launch_on(t, "spot", plan["launch"]["spot"], best)
                    launched = True
                else:
                    # One CreateFleet over every offering left: each refuses; nothing is left to retry on.
                    self.stats["spot_launch_failures"] += 1
                    left = []
            self.stats["offering_retries"] += max(0, attempts - 1)
            if not launched:
                self.stats["planner_calls"] += 1
                plan = _planner.plan_fallback(plan, 0, ci_sim.ICE)
        if plan["launch"]["on_demand"]:
            self.stats["on_demand_launch_calls"] += 1
            self.launch_on(t, "on-demand", plan["launch"]["on_demand"], None)
        if plan["launch"].get("on_demand_base"):
            self.stats["on_demand_launch_calls"] += 1
            self.stats["lane_launches"] += plan["launch"]["on_demand_base"]
            self.launch_on(t, "on-demand", plan["launch"]["on_demand_base"], None, lane=True)
        for entry in plan["drain"]:
            self.start_drain(t, entry["instance_id"], _planner.parse_time(entry["deadline"]))

    def capacity(self, k, t):
        gap, values = self.offerings[k]["availability"].trace
        return values[(self.offerings[k]["availability"].offset + t // gap) % len(values)]

    def launch_on(self, t, market, count, offering, lane=False):
        first = self.counter
        self.launch(t, market, count, None)
        for n in range(first + 1, self.counter + 1):
            iid = f"i-{n:08d}"
            self.offering_of[iid] = offering if offering is not None else 0
            if lane:
                self.instances[iid].tags[TAG_LANE] = "on-demand"

    def running_on(self, k, t):
        return [
            iid
            for iid in self.alive
            if self.instances[iid].market == "spot"
            and self.offering_of.get(iid) == k
            and self.instances[iid].noticed is None
            and t >= self.instances[iid].ready_at
        ]

    def rebalance(self, t, k, count, drop_t):
        """EC2's rebalance recommendation for the instances the interruption at ``drop_t`` will hit.

        What the watcher's rebalance hook does: tag the instance; EDA runs the keeper, which with
        ``rebalance: replace`` launches the replacement first and then drains the warned one.
        """
        running = [iid for iid in self.running_on(k, t) if TAG_REBALANCE not in self.instances[iid].tags]
        chosen = sorted(self.rng.sample(running, min(count, len(running))))
        self.stats["rebalance_signals"] += 1
        self.stats["rebalance_warned_instances"] += len(chosen)
        self.warned[(k, drop_t)] = chosen
        self.rebalance_log.append((t, chosen))
        for iid in chosen:
            self.instances[iid].tags[TAG_REBALANCE] = _planner.format_time(self.dt(t))
        if chosen:
            self.push(t + self.cfg["event_delay_seconds"], ci_sim.RECONCILE, "rebalance")

    def on_drop(self, t, count):
        # Here a drop is (offering, count): only that offering's instances are interrupted.
        if count[0] == "rebalance":
            self.rebalance(t, *count[1:])
            return
        k, count = count
        running = self.running_on(k, t)
        # The warned instances still running are hit first; the rest of the count falls on other
        # instances of the offering (draining early does not make EC2 reclaim less).
        warned = [iid for iid in self.warned.pop((k, t), []) if iid in running][:count]
        self.stats["rebalance_warned_then_interrupted"] += len(warned)
        others = [iid for iid in running if iid not in warned]
        chosen = sorted(warned + self.rng.sample(others, min(count - len(warned), len(others))))
        self.stats["trace_notices_missed"] += count - len(chosen)
        for iid in chosen:
            self.on_notice(t, iid)

    def on_notice(self, t, iid):
        fresh = self.instances[iid].noticed is None and self.instances[iid].ended is None
        super().on_notice(t, iid)
        if fresh:
            # What tag_instance.sh writes: the notice time, which the offerings memory reads.
            self.instances[iid].tags[TAG_INTERRUPTED] = _planner.format_time(self.dt(t))

    def end_instance(self, t, iid, why):
        if self.instances[iid].ended is None:
            self.ended_recently.append((t, iid))
        super().end_instance(t, iid, why)

    def dispatch(self, t):
        if not self.queue:
            return
        idle = self.idle_runners(t)
        waiting = []
        while self.queue and idle:
            index = self.queue.pop(0)
            record = self.jobs[index]
            on_demand = [k for k, inst in enumerate(idle) if inst.market == "on-demand"]
            if record["retry"] and self.retry_lane:
                # The re-run asks for the lane's label (docs/keeper-planning.md): lane runners only.
                lane = [k for k, inst in enumerate(idle) if inst.tags.get(TAG_LANE) == "on-demand"]
                if not lane:
                    self.stats["retries_waiting_for_lane"] += 1
                    waiting.append(index)
                    continue
                pick = lane[0]
            elif record["retry"] and self.base == 0:
                # Without a lane a re-run takes an on-demand runner when there is one, else spot.
                pick = on_demand[0] if on_demand else 0
            elif record["retry"]:
                if not on_demand:
                    # A re-run never lands on spot again: it waits for an on-demand runner.
                    self.stats["retries_waiting_for_lane"] += 1
                    waiting.append(index)
                    continue
                pick = on_demand[0]
            else:
                # First attempts take spot runners first, keeping the lane free for re-runs.
                spot = [k for k, inst in enumerate(idle) if inst.market == "spot"]
                pick = spot[0] if spot else on_demand[0]
            self.start_job(t, idle.pop(pick), index)
        self.queue[:0] = waiting

    def result(self):
        out = super().result()
        price = ON_DEMAND_TABLE[self.cfg["instance_type"]][3]
        lane_seconds = 0
        for inst in self.instances.values():
            if inst.tags.get(TAG_LANE) == "on-demand":
                end = inst.ended if inst.ended is not None else self.horizon
                lane_seconds += max(60, end - inst.launched)
        out["lane_instance_hours"] = round(lane_seconds / HOUR, 4)
        out["lane_cost_usd"] = round(lane_seconds * price / HOUR, 6)
        return out


def build_offerings(cfg, preemption, availability):
    """One offering per (preemption, availability) file pair."""
    offerings = []
    for pre, avail in zip(preemption, availability):
        drops = ci_sim.trace_drops(cfg, *ci_sim.load_trace(cfg["traces"], pre, "preemption"))
        offerings.append(
            {
                "preemption": pre,
                "availability_file": avail,
                "drops": drops,
                "availability": ci_sim.Availability(dict(cfg, availability=avail)),
            }
        )
    return offerings


def on_demand_only(cfg, jobs):
    """The on-demand-only pool on ``jobs``: the baseline of discount and wait (no trace needed)."""
    return ci_sim.Sim(cfg, "on-demand", jobs, [], ci_sim.Availability(cfg)).run()


def compare(res, base_res):
    res["effective_discount"] = round(1 - res["cost_usd"] / base_res["cost_usd"], 6)
    res["wait_p95_vs_on_demand"] = (
        round(res["wait_seconds"]["p95"] / base_res["wait_seconds"]["p95"], 4)
        if base_res["wait_seconds"]["p95"]
        else None
    )
    return res


def uptime(offerings, horizon):
    """(share of minutes some offering can be launched, share of the best single offering)."""
    minutes = range(0, horizon, 60)
    any_up = sum(1 for t in minutes if any(o["availability"].spot_ok(t) for o in offerings)) / len(minutes)
    best_up = max(sum(1 for t in minutes if o["availability"].spot_ok(t)) / len(minutes) for o in offerings)
    return round(any_up, 4), round(best_up, 4)


def draw(cfg, n_offerings):
    """The seed's offerings: ``n_offerings`` preemption and availability traces, drawn without
    repetition from every AWS file of the data set (the same for every run of the seed)."""
    rng = random.Random(f"{cfg['seed']}-offerings")
    preemption = rng.sample(AWS_PREEMPTION, n_offerings)
    return preemption, rng.sample(aws_availability(cfg["traces"]), n_offerings)


def simulate(config, n_offerings, base, cooldown, queue=False):
    """One run of the offerings pool (queue-driven with ``queue``) for ``config``'s seed."""
    cfg = ci_sim.validate_config(config)
    offerings = build_offerings(cfg, *draw(cfg, n_offerings))
    return OfferingsSim(cfg, ci_sim.job_stream(cfg), offerings, base, cooldown, queue=queue).run()


def run(config, seed, n_offerings, base, cooldown, queue=False):
    """One seed: the offerings policy and ci_sim's policies on the same job stream."""
    cfg = ci_sim.validate_config(dict(config, seed=seed))
    preemption, availability = draw(cfg, n_offerings)
    offerings = build_offerings(cfg, preemption, availability)
    single = ci_sim.simulate(dict(config, seed=seed, preemption=[preemption[0]], availability=availability[0]))
    jobs = ci_sim.job_stream(cfg)
    sim = OfferingsSim(cfg, jobs, offerings, base, cooldown, queue=queue)
    res = compare(sim.run(), single["results"]["on-demand"])
    any_up, best_up = uptime(offerings, sim.horizon)
    return {
        "seed": seed,
        "preemption": preemption,
        "availability": availability,
        "any_offering_up": any_up,
        "best_offering_up": best_up,
        "offerings": res,
        "single_market": single["results"],
        "series": {"samples": sim.samples, "notices": sim.notice_times},
        "single_market_series": single["series"],
        "days": cfg["days"],
    }


def chart_report(r):
    """The run in the shape ci_sim_chart.render reads: the offerings policy first, then ci_sim's."""
    inputs = {
        "seed": r["seed"],
        "days": r["days"],
        "preemption": ", ".join(short(x) for x in r["preemption"]),
        "availability": ", ".join(short(x) for x in r["availability"]),
        "any_offering_up": r["any_offering_up"],
        "best_offering_up": r["best_offering_up"],
    }
    results = dict({POLICY: r["offerings"]}, **r["single_market"])
    series = dict({POLICY: r["series"]}, **{"single-market " + k: v for k, v in r["single_market_series"].items()})
    return {"inputs": inputs, "results": results, "series": series}


def short(path):
    folder, name = path.rsplit("/", 2)[-2:]
    return folder.replace("aws-", "") + "/" + name.replace(".json", "")


def lost(r):
    return r["jobs_lost_to_interruption"] + r["jobs_lost_other"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--traces", default=ci_sim.DEFAULT_TRACES)
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--offerings", type=int, default=3)
    p.add_argument("--on-demand-base", type=int, default=1)
    p.add_argument("--cooldown-minutes", type=int, default=15)
    p.add_argument("--retry-lane", action="store_true", help="re-runs only on on-demand lane runners launched for them")
    p.add_argument(
        "--queue",
        action="store_true",
        help="size the offerings pool by the CI queue (ci_sim's parkingspot-queue; --queue-* options after --)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--html-dir", help="write one chart (self-contained HTML) per seed into this directory")
    p.add_argument("rest", nargs="*", help="further ci_sim options (after --)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        seeds = ci_sim.whole_numbers(args.seeds, "--seeds")
        check_options(args.offerings, args.on_demand_base, args.cooldown_minutes)
    except ci_sim.SimError as e:
        print(e, file=sys.stderr)
        return 2
    config = dict(ci_sim.config_from_args(ci_sim.parse_args(args.rest)), traces=args.traces)
    config["retry_lane"] = config["retry_lane"] or args.retry_lane
    runs = []
    try:
        for seed in seeds:
            runs.append(run(config, seed, args.offerings, args.on_demand_base, args.cooldown_minutes, args.queue))
    except ci_sim.SimError as e:
        print(f"ci_sim_offerings: {e}", file=sys.stderr)
        return 2
    if args.html_dir:
        from ansible_collections.parkingspot.ec2.bench import ci_sim_chart

        os.makedirs(args.html_dir, exist_ok=True)
        for r in runs:
            with open(os.path.join(args.html_dir, f"offerings-seed-{r['seed']}.html"), "w", encoding="utf-8") as f:
                f.write(ci_sim_chart.render(chart_report(r)))
    if args.json:
        for r in runs:
            r.pop("series")
            r.pop("single_market_series")
        print(json.dumps(runs, sort_keys=True, indent=1))
        return 0
    print(
        "| seed | preemption traces | availability traces | any offering up | best offering up | offerings discount "
        "| lane cost USD (of total) | offerings lost | offerings p95 vs on-demand | single-market parkingspot discount "
        "| single-market lost | single-market p95 vs on-demand |"
    )
    print("|" + " --- |" * 12)
    for r in runs:
        o, s = r["offerings"], r["single_market"]["parkingspot"]
        print(
            "| {} | {} | {} | {:.1f}% | {:.1f}% | {:.1f}% | {:.2f} ({:.2f}) | {} | {} | {:.1f}% | {} | {} |".format(
                r["seed"],
                ", ".join(short(x) for x in r["preemption"]),
                ", ".join(short(x) for x in r["availability"]),
                r["any_offering_up"] * 100,
                r["best_offering_up"] * 100,
                o["effective_discount"] * 100,
                o["lane_cost_usd"],
                o["cost_usd"],
                lost(o),
                "-" if o["wait_p95_vs_on_demand"] is None else f"{o['wait_p95_vs_on_demand']:.2f}x",
                s["effective_discount"] * 100,
                lost(s),
                "-" if s["wait_p95_vs_on_demand"] is None else f"{s['wait_p95_vs_on_demand']:.2f}x",
            )
        )
    discounts = [r["offerings"]["effective_discount"] for r in runs]
    print()
    print(
        "offerings policy: median discount {:.1f}%, jobs lost in total {}".format(
            statistics.median(discounts) * 100, sum(lost(r["offerings"]) for r in runs)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
