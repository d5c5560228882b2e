"""A trace-driven CI simulation of the pool keeper: what spot saves and what it costs in builds.

Usage (from the collection root, with the collection importable, e.g. ``make bench B=ci_sim``):

    python bench/ci_sim.py [--traces DIR] [--preemption FILE ...] [--availability FILE]
                           [--synthetic --interrupt-rate R --spot-availability F]
                           [--days D] [--seed S] [--html OUT.html] [--json]

Four policies run on the same job stream (same seed) and the same interruption/capacity
input; a Markdown table of cost, effective discount, jobs cut/lost and job wait goes to
stdout (``--json`` prints the full results instead).  The pool is planned by the keeper's
own pure planner (``plan_pool``, ``plan_fallback``, ``is_fallback_error``) on every schedule
tick and, for the ParkingSpot policies, on every interruption notice; the count in force comes
from the keeper's ``desired_at``.  What the module would do with each plan (terminate, launch
spot, fall back to on-demand, drain) is carried out on simulated instances in the order
``_keeper.reconcile`` uses.  docs/economics.md describes the model and the trace mapping.

Deterministic: seeded ``random.Random`` streams, simulated time only, sorted iteration.
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import json
import math
import os
import random
import sys

from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _schedule
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import ON_DEMAND_TABLE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_BUSY
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_DRAIN_DEADLINE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_EXPIRES_AT
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_IDLE_SINCE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_INTERRUPTED
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_LANE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_STATE

UTC = datetime.timezone.utc
DEFAULT_TRACES = os.path.join("..", "shared", "data", "spot-traces")
DEFAULT_PREEMPTION = ["preemption/1-node/aws-04-19-2023/us-east-1b_intel_64.json"]
DEFAULT_AVAILABILITY = "availability/1-node/aws-02-15-2023/us-west-2a_v100_1.json"
ICE = "InsufficientInstanceCapacity"
POLICIES = ("on-demand", "naive-spot", "parkingspot", "parkingspot-blocks")
# Queue-driven spot pool (spot_pool demand/scaling): run on request with --policies.
QUEUE_POLICY = "parkingspot-queue"
ALL_POLICIES = POLICIES + (QUEUE_POLICY,)

# Event kinds in the order they run when they fall on the same second.
READY, TERMINATE, JOB_END, NOTICE, TRACE_DROP, RECONCILE, ARRIVAL, SAMPLE = range(8)
HANDLERS = ("ready", "terminate", "job_end", "notice", "drop", "reconcile", "arrival", "sample")


class SimError(ValueError):
    """Bad simulator input; the message names the option."""


def whole_numbers(text, option):
    """``"1,2,3"`` as ``[1, 2, 3]`` (for the sweeps' list options); SimError naming ``option`` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise SimError(f"{option}: must be comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise SimError(f"{option}: at least one value is needed")
    return values


def default_config():
    """Every knob of the simulation with its default (the command-line options map onto these)."""
    return {
        "seed": 1,
        "days": 7.0,
        "start": "2023-05-01T00:00:00Z",  # a Monday; the AWS CPU preemption trace starts that day
        "instance_type": "c6i.xlarge",
        "spot_discount": 0.65,
        # jobs: a Poisson stream whose hourly rate has a working-hours peak (UTC, Mon-Fri)
        "peak_rate": 50.0,
        "offpeak_rate": 4.0,
        "peak_start_hour": 8,
        "peak_end_hour": 18,
        "job_median_minutes": 8.0,
        "job_sigma": 0.8,
        "job_max_minutes": 45.0,
        # pool: the keeper's schedule (a window in UTC) and launch/boot behaviour
        "desired": 3,
        "peak_desired": 12,
        "window_start": "07:45",
        "window_end": "18:15",
        "boot_min_seconds": 60,
        "boot_max_seconds": 90,
        "tick_seconds": 300,
        "event_delay_seconds": 30,
        "notice_seconds": 120,
        "watcher_delay_seconds": 2,
        "drain_timeout_seconds": 3600,
        "fallback_max": None,  # None: the peak desired count
        "block_minutes": 120,
        "renew_before_minutes": 20,
        # _keeper.reconcile tags on-demand fallback instances without a lease even in a block
        # pool (the planner then drains them on its next run); True gives them the lease the
        # planner asked for, as docs/keeper-planning.md describes.
        "on_demand_lease": True,
        # interruptions and capacity
        "synthetic": False,
        "interrupt_rate": 0.0,  # notices per running spot instance-hour (synthetic mode)
        "spot_availability": 1.0,  # fraction of time spot launches succeed (synthetic mode)
        "outage_minutes": 30.0,  # mean length of a synthetic capacity outage
        "traces": DEFAULT_TRACES,
        "preemption": list(DEFAULT_PREEMPTION),
        "availability": DEFAULT_AVAILABILITY,
        "trace_offset_hours": 0.0,
        "sample_seconds": 600,
        # the queue-driven policy: floor, max and timings of spot_pool's demand/scaling; webhook
        # -> keeper run delay (debounce window plus the keeper's start)
        "queue_floor": 1,
        "queue_max": None,  # None: twice the peak desired count
        "queue_idle_minutes": 10,
        "queue_min_running_minutes": 5,
        # scaling.on_demand_idle_minutes (the module's default; set it to queue_idle_minutes for the
        # rule before on-demand runners had an idle time of their own)
        "queue_on_demand_idle_minutes": 0,
        "queue_delay_seconds": 15,
        # spot_pool demand.retries: re-runs go only to on-demand lane runners, launched for them
        # while they wait (keeper policies parkingspot and parkingspot-queue); a queued re-run
        # reaches the keeper like a queued job, after queue_delay_seconds.
        "retry_lane": False,
    }


def queue_scaling(cfg):
    """spot_pool's ``scaling`` option as the simulated queue-driven pool (and retry lane) sets it."""
    return {
        "max": cfg["queue_max"] if cfg["queue_max"] is not None else 2 * cfg["peak_desired"],
        "idle_minutes": cfg["queue_idle_minutes"],
        "min_running_minutes": cfg["queue_min_running_minutes"],
        "on_demand_idle_minutes": cfg["queue_on_demand_idle_minutes"],
    }


def validate_config(config):
    """Check every option before anything runs; return a copy with derived values."""
    cfg = dict(default_config())
    unknown = sorted(set(config) - set(cfg))
    if unknown:
        raise SimError("unknown option(s): {}".format(", ".join(unknown)))
    cfg.update(config)

    def number(name, low=None, high=None, whole=False):
        value = cfg[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
            raise SimError(f"{name}: must be a {'whole ' if whole else ''}number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise SimError(f"{name}: must be between {low} and {high}, got {value}")

    for name in ("peak_rate", "offpeak_rate", "interrupt_rate"):
        number(name, low=0)
    for name in ("days", "job_median_minutes", "job_sigma", "job_max_minutes", "outage_minutes"):
        number(name, low=1e-9)
    number("spot_discount", 0, 0.99)
    number("spot_availability", 0, 1)
    number("trace_offset_hours", low=0)
    for name in ("peak_start_hour", "peak_end_hour"):
        number(name, 0, 24, whole=True)
    for name in ("seed", "desired", "peak_desired", "boot_min_seconds", "watcher_delay_seconds", "notice_seconds"):
        number(name, low=0, whole=True)
    for name in ("tick_seconds", "sample_seconds", "boot_max_seconds", "event_delay_seconds"):
        number(name, low=1, whole=True)
    number("drain_timeout_seconds", low=0, whole=True)
    for name in ("queue_floor", "queue_idle_minutes", "queue_min_running_minutes", "queue_on_demand_idle_minutes"):
        number(name, low=0, whole=True)
    for name in ("synthetic", "on_demand_lease", "retry_lane"):
        if not isinstance(cfg[name], bool):
            raise SimError(f"{name}: must be true or false, got {cfg[name]!r}")
    if cfg["boot_max_seconds"] < cfg["boot_min_seconds"]:
        raise SimError("boot_max_seconds: must not be less than boot_min_seconds")
    if cfg["instance_type"] not in ON_DEMAND_TABLE:
        raise SimError(
            "instance_type: no on-demand price for {!r}; known: {}".format(
                cfg["instance_type"], ", ".join(sorted(ON_DEMAND_TABLE))
            )
        )
    start = _planner.parse_time(cfg["start"])
    if start is None:
        raise SimError(f"start: must be an ISO 8601 time with a zone, got {cfg['start']!r}")
    cfg["start_dt"] = start
    if cfg["fallback_max"] is None:
        cfg["fallback_max"] = max(cfg["desired"], cfg["peak_desired"])
    number("fallback_max", low=0, whole=True)
    try:
        cfg["windows"] = _schedule.validate_schedule(
            [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": cfg["window_start"],
                    "end": cfg["window_end"],
                    "desired": cfg["peak_desired"],
                }
            ],
            option="window",
        )
        _planner.validate_block_options(cfg["block_minutes"], cfg["renew_before_minutes"])
    except ValueError as e:
        raise SimError(str(e)) from None
    return cfg


# ------------------------------------------------------------------ inputs shared by all policies


def job_stream(cfg):
    """``[(arrival_second, duration_seconds)]`` for the whole run, from its own seeded stream."""
    rng = random.Random(f"{cfg['seed']}-jobs")
    horizon = int(cfg["days"] * 86400)
    start = cfg["start_dt"]
    top = max(cfg["peak_rate"], cfg["offpeak_rate"])
    jobs = []
    if top <= 0:
        return jobs
    t = 0.0
    # Thinning: candidates at the top rate, each kept with probability rate(t) / top.
    while True:
        t += rng.expovariate(top / 3600.0)
        if t >= horizon:
            return jobs
        keep = rng.random()
        moment = start + datetime.timedelta(seconds=t)
        peak = moment.weekday() < 5 and cfg["peak_start_hour"] <= moment.hour < cfg["peak_end_hour"]
        rate = cfg["peak_rate"] if peak else cfg["offpeak_rate"]
        minutes = min(cfg["job_max_minutes"], cfg["job_median_minutes"] * math.exp(rng.gauss(0, cfg["job_sigma"])))
        if keep < rate / top:
            jobs.append((int(t), max(1, int(minutes * 60))))


def load_trace(traces_dir, name, option):
    path = os.path.join(traces_dir, name)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        gap = int(data["metadata"]["gap_seconds"])
        values = [int(v) for v in data["data"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SimError(f"{option}: cannot read trace {path}: {e}") from None
    if gap < 1 or not values:
        raise SimError(f"{option}: trace {path} has no data")
    return gap, values


def trace_drops(cfg, gap, values):
    """``[(second, count)]``: each fall of the trace value is that many interruption notices.

    The trace is read from ``trace_offset_hours`` on and repeats when the run is longer.
    """
    horizon = int(cfg["days"] * 86400)
    offset = int(cfg["trace_offset_hours"] * 3600 // gap)
    drops = []
    k = 1
    while k * gap < horizon:
        before = values[(offset + k - 1) % len(values)]
        after = values[(offset + k) % len(values)]
        if after < before:
            drops.append((k * gap, before - after))
        k += 1
    return drops


class Availability:
    """Whether a spot launch succeeds at a given second."""

    def __init__(self, cfg):
        self.trace = None
        self.outages = []
        if not cfg["synthetic"]:
            self.trace = load_trace(cfg["traces"], cfg["availability"], "availability")
            self.offset = int(cfg["trace_offset_hours"] * 3600 // self.trace[0])
            return
        self.always = cfg["spot_availability"] >= 1.0
        self.never = cfg["spot_availability"] <= 0.0
        if self.always or self.never:
            return
        # Alternating up/down periods (exponential lengths) with the asked share of uptime.
        rng = random.Random(f"{cfg['seed']}-capacity")
        down = cfg["outage_minutes"] * 60
        up = down * cfg["spot_availability"] / (1 - cfg["spot_availability"])
        t, horizon = 0.0, cfg["days"] * 86400
        while t < horizon:
            t += rng.expovariate(1 / up)
            length = rng.expovariate(1 / down)
            self.outages.append((int(t), int(t + length)))
            t += length

    def spot_ok(self, t):
        if self.trace is not None:
            gap, values = self.trace
            return values[(self.offset + t // gap) % len(values)] != 0
        if self.always or self.never:
            return self.always
        return not any(a <= t < b for a, b in self.outages)

    def unavailable_seconds(self, horizon):
        return sum(1 for t in range(0, horizon, 60) if not self.spot_ok(t)) * 60


# ------------------------------------------------------------------ the simulation of one policy


class Instance:
    __slots__ = (
        "id",
        "market",
        "launched",
        "ready_at",
        "ended",
        "job",
        "tags",
        "noticed",
        "stop_accepting",
        "expires",
        "draining",
        "idle_since",
        "job_started",
        "busy_seconds",
    )

    def __init__(self, iid, market, launched, ready_at, expires):
        self.id, self.market, self.launched, self.ready_at = iid, market, launched, ready_at
        self.ended = None
        self.job = None
        self.tags = {TAG_MARKET: market}
        self.noticed = None
        self.stop_accepting = None
        self.expires = expires
        self.draining = None
        self.idle_since = None
        self.job_started = None
        self.busy_seconds = 0
        if expires is not None:
            self.tags[TAG_EXPIRES_AT] = expires[1]


class Sim:
    """One policy over the shared job stream and interruption/capacity input."""

    def __init__(self, cfg, policy, jobs, drops, availability):
        if policy not in ALL_POLICIES:
            raise SimError("policy: must be one of {}, got {!r}".format(", ".join(ALL_POLICIES), policy))
        self.cfg, self.policy = cfg, policy
        self.keeper = policy.startswith("parkingspot")
        self.market = "block" if policy == "parkingspot-blocks" else "spot"
        self.fallback = {"enabled": policy != "naive-spot", "max": cfg["fallback_max"]}
        if policy == "on-demand":
            self.fallback["max"] = 10**6
        self.availability = availability
        # The k-th launch boots equally fast under every policy, so identical plans cost the same.
        self.boot_rng = random.Random(f"{cfg['seed']}-boot")
        self.rng = random.Random(f"{cfg['seed']}-interruptions")
        self.horizon = int(cfg["days"] * 86400)
        self.tz = datetime.timezone.utc
        self.heap = []
        self.seq = 0
        self.instances = {}
        self.alive = []  # ids, in launch order
        self.counter = 0
        self.queue = []  # job ids waiting, in order
        self.jobs = [
            {"arrival": a, "duration": d, "attempts": 0, "started": None, "done": None, "retry": False} for a, d in jobs
        ]
        self.stats = {
            "notices": 0,
            "trace_notices_missed": 0,
            "jobs_cut_by_interruption": 0,
            "jobs_lost_to_interruption": 0,
            "jobs_cut_by_lease": 0,
            "jobs_cut_by_drain_deadline": 0,
            "jobs_lost_other": 0,
            "reconciles": 0,
            "event_reconciles": 0,
            "planner_calls": 0,
            "spot_launch_calls": 0,
            "spot_launch_failures": 0,
            "on_demand_launch_calls": 0,
            "launched_spot": 0,
            "launched_on_demand": 0,
            "terminate_calls": 0,
            "drains": 0,
        }
        self.samples = []
        self.notice_times = []
        self.queue_run_pending = False
        # The retry lane (cfg retry_lane) of the keeper policies that plan with a schedule or the queue.
        self.retry_lane = bool(cfg["retry_lane"]) and policy in ("parkingspot", QUEUE_POLICY)
        # Runners carry runner_busy.sh's idle tags when a scale-in rule reads them.
        # Sized by the simulated queue (spot_pool demand.queued / demand.busy).
        self.queue_driven = policy == QUEUE_POLICY
        self.idle_tags = self.queue_driven or self.retry_lane
        if self.retry_lane:
            self.stats.update(lane_launches=0, retries_waiting_for_lane=0)
        for index, (arrival, _duration) in enumerate(jobs):
            self.push(arrival, ARRIVAL, index)
        for t in range(0, self.horizon, cfg["tick_seconds"]):
            self.push(t, RECONCILE, "tick")
        for t in range(0, self.horizon, cfg["sample_seconds"]):
            self.push(t, SAMPLE, None)
        if policy != "on-demand" and not cfg["synthetic"]:
            for t, count in drops:
                self.push(t, TRACE_DROP, count)

    # -------------------------------------------------------------- plumbing

    def push(self, t, kind, data):
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, data))

    def dt(self, t):
        return self.cfg["start_dt"] + datetime.timedelta(seconds=t)

    def run(self):
        while self.heap:
            t, kind, _seq, data = heapq.heappop(self.heap)
            if t >= self.horizon:
                break
            self.now = t
            getattr(self, "on_" + HANDLERS[kind])(t, data)
            self.dispatch(t)
        return self.result()

    # -------------------------------------------------------------- the keeper

    def planner_view(self):
        out = []
        for iid in self.alive:
            inst = self.instances[iid]
            tags = dict(inst.tags)
            if inst.job is not None:
                tags[TAG_BUSY] = "true"
            elif self.idle_tags and inst.idle_since is not None:
                # What runner_busy.sh writes when a job ends.
                tags[TAG_BUSY] = "false"
                tags[TAG_IDLE_SINCE] = _planner.format_time(self.dt(inst.idle_since))
            out.append(
                {
                    "instance_id": iid,
                    "state": "running" if self.now >= inst.ready_at else "pending",
                    "launch_time": self.dt(inst.launched),
                    "instance_type": self.cfg["instance_type"],
                    "market": inst.market,
                    "tags": tags,
                }
            )
        return out

    def run_started(self, t, why):
        """A keeper run starts at ``t`` (``why``: tick, queue, interruption): counted, and the
        debounce window it answers closed. Returns the run's time and the schedule's count."""
        self.stats["reconciles"] += 1
        if why != "tick":
            self.stats["event_reconciles"] += 1
        if why == "queue":
            self.queue_run_pending = False
        now = self.dt(t)
        desired, _window = _schedule.desired_at(now, self.cfg["desired"], self.cfg["windows"], self.tz)
        return now, desired

    def sizing(self, view, now, desired):
        """What spot_pool's ``demand`` makes of the run: (desired, protected ids, retries).

        A queue-driven pool is sized by the simulated queue from its floor; with the retry lane
        (``demand.retries``: queued re-runs, never in ``queued``; ``busy`` counts every running
        job, re-runs on lane runners too, as the ci_webhook source reports it) a schedule pool keeps
        its size and the scale-in rule guards the lane's runners alone (scope "lane").
        """
        cfg = self.cfg
        retries = sum(1 for j in self.queue if self.jobs[j]["retry"]) if self.retry_lane else None
        if self.queue_driven:
            busy = sum(1 for iid in self.alive if self.instances[iid].job is not None)
            queued = sum(1 for j in self.queue if not (self.retry_lane and self.jobs[j]["retry"]))
            demand, scaling = _demand.validate(
                {"queued": queued, "busy": busy}, queue_scaling(cfg), [cfg["queue_floor"]]
            )
            desired = _demand.target(cfg["queue_floor"], demand, scaling)
        elif self.retry_lane:
            demand, scaling = _demand.validate({"retries": retries}, queue_scaling(cfg), [desired])
            desired = _demand.target(desired, demand, scaling)
        else:
            return desired, None, None
        return desired, _demand.protected_ids(view, now, scaling), retries

    def on_reconcile(self, t, why):
        cfg = self.cfg
        now, desired = self.run_started(t, why)
        view = self.planner_view()
        desired, protected, retries = self.sizing(view, now, desired)
        self.stats["planner_calls"] += 1
        plan = _planner.plan_pool(
            view,
            now,
            desired,
            market=self.market,
            duration_minutes=cfg["block_minutes"] if self.market == "block" else None,
            renew_before_minutes=cfg["renew_before_minutes"],
            fallback=self.fallback,
            # The keeper always tries spot first; the on-demand-only pool is the planner's
            # "spot unavailable" path with an unlimited fallback.
            spot_available=self.policy != "on-demand",
            drain_timeout_seconds=cfg["drain_timeout_seconds"],
            protected=protected,
            retries=retries,
        )
        # The order of _keeper.reconcile: terminate, launch spot (fall back), drain.
        if plan["terminate"]:
            self.stats["terminate_calls"] += 1
            for iid in plan["terminate"]:
                self.end_instance(t, iid, "drain_deadline")
        expires = plan["launch"].get("expires_at")
        if plan["launch"]["spot"]:
            self.stats["spot_launch_calls"] += 1
            if self.availability.spot_ok(t):
                self.launch(t, "spot", plan["launch"]["spot"], expires)
            else:
                self.stats["spot_launch_failures"] += 1
                if _planner.is_fallback_error(ICE):
                    self.stats["planner_calls"] += 1
                    plan = _planner.plan_fallback(plan, 0, ICE)
        if plan["launch"]["on_demand"]:
            self.stats["on_demand_launch_calls"] += 1
            self.launch(t, "on-demand", plan["launch"]["on_demand"], expires if cfg["on_demand_lease"] else None)
        if plan["launch"].get("on_demand_base"):
            self.stats["on_demand_launch_calls"] += 1
            self.stats["lane_launches"] += plan["launch"]["on_demand_base"]
            first = self.counter
            self.launch(t, "on-demand", plan["launch"]["on_demand_base"], None)
            for n in range(first + 1, self.counter + 1):
                self.instances[f"i-{n:08d}"].tags[TAG_LANE] = "on-demand"
        for entry in plan["drain"]:
            self.start_drain(t, entry["instance_id"], _planner.parse_time(entry["deadline"]))

    def launch(self, t, market, count, expires_at):
        for _unused in range(count):
            self.counter += 1
            iid = f"i-{self.counter:08d}"
            boot = self.boot_rng.randint(self.cfg["boot_min_seconds"], self.cfg["boot_max_seconds"])
            expires = None
            if expires_at is not None:
                end = _planner.parse_time(expires_at)
                expires = (int((end - self.cfg["start_dt"]).total_seconds()), expires_at)
            inst = Instance(iid, market, t, t + boot, expires)
            self.instances[iid] = inst
            self.alive.append(iid)
            self.stats["launched_" + market.replace("-", "_")] += 1
            self.push(t + boot, READY, iid)
            if expires is not None:
                # The on-instance backstop powers the instance off at its lease end.
                self.push(max(expires[0], t), TERMINATE, (iid, "lease"))

    def start_drain(self, t, iid, deadline):
        inst = self.instances[iid]
        if inst.ended is not None:
            return
        self.stats["drains"] += 1
        inst.draining = int((deadline - self.cfg["start_dt"]).total_seconds())
        inst.tags[TAG_STATE] = "draining"
        inst.tags[TAG_DRAIN_DEADLINE] = _planner.format_time(deadline)
        if inst.job is None:
            # The drain command returns at once on an idle runner; the keeper terminates it.
            self.end_instance(t, iid, "drained")

    # -------------------------------------------------------------- instances and interruptions

    def on_ready(self, t, iid):
        inst = self.instances[iid]
        if inst.ended is None and inst.market == "spot" and self.cfg["synthetic"] and self.cfg["interrupt_rate"] > 0:
            wait = self.rng.expovariate(self.cfg["interrupt_rate"] / 3600.0)
            if t + wait < self.horizon:
                self.push(t + int(wait), NOTICE, iid)

    def on_drop(self, t, count):
        running = [
            iid
            for iid in self.alive
            if self.instances[iid].market == "spot"
            and self.instances[iid].noticed is None
            and t >= self.instances[iid].ready_at
        ]
        chosen = sorted(self.rng.sample(running, min(count, len(running))))
        self.stats["trace_notices_missed"] += count - len(chosen)
        for iid in chosen:
            self.on_notice(t, iid)

    def on_notice(self, t, iid):
        inst = self.instances[iid]
        if inst.ended is not None or inst.noticed is not None:
            return
        self.stats["notices"] += 1
        self.notice_times.append(t)
        inst.noticed = t
        self.push(t + self.cfg["notice_seconds"], TERMINATE, (iid, "interruption"))
        if self.keeper:
            # The watcher's hooks stop the runner and mark the instance; EDA runs the keeper.
            inst.stop_accepting = t + self.cfg["watcher_delay_seconds"]
            inst.tags[TAG_INTERRUPTED] = "true"
            self.push(t + self.cfg["event_delay_seconds"], RECONCILE, "interruption")

    def on_terminate(self, t, data):
        iid, why = data
        self.end_instance(t, iid, why)

    def end_instance(self, t, iid, why):
        inst = self.instances[iid]
        if inst.ended is not None:
            return
        inst.ended = t
        self.alive.remove(iid)
        job = self.stop_job(t, inst)
        if job is None:
            return
        if why == "interruption":
            self.stats["jobs_cut_by_interruption"] += 1
            retry = self.keeper
        elif why == "lease":
            self.stats["jobs_cut_by_lease"] += 1
            retry = True
        else:
            self.stats["jobs_cut_by_drain_deadline"] += 1
            retry = True
        record = self.jobs[job]
        if retry and record["attempts"] < 2:
            record["retry"] = True
            self.queue.insert(0, job)
            if self.retry_lane:
                self.retry_queued(t)
        elif why == "interruption":
            self.stats["jobs_lost_to_interruption"] += 1
        else:
            self.stats["jobs_lost_other"] += 1

    # -------------------------------------------------------------- jobs

    def on_arrival(self, t, index):
        self.queue.append(index)
        self.queue_changed(t)

    def queue_changed(self, t):
        """The queue-driven policy: a webhook reaches the keeper once per debounce window."""
        if self.queue_driven and not self.queue_run_pending:
            self.queue_run_pending = True
            self.push(t + self.cfg["queue_delay_seconds"], RECONCILE, "queue")

    def retry_queued(self, t):
        """A re-run queued: the CI system's webhook (GitHub run_attempt > 1, GitLab retries_count)
        reaches the keeper after the debounce, as a queued job does."""
        if not self.queue_run_pending:
            self.queue_run_pending = True
            self.push(t + self.cfg["queue_delay_seconds"], RECONCILE, "queue")

    def lane_ids(self):
        return {iid for iid in self.alive if self.instances[iid].tags.get(TAG_LANE) == "on-demand"}

    def on_job_end(self, t, data):
        iid, index = data
        inst = self.instances[iid]
        if inst.job != index or inst.ended is not None:
            return  # the job was cut before it could finish
        self.stop_job(t, inst)
        inst.idle_since = t
        self.jobs[index]["done"] = t
        self.queue_changed(t)
        if inst.draining is not None:
            self.end_instance(t, iid, "drained")

    def on_sample(self, t, _data):
        spot = sum(1 for iid in self.alive if self.instances[iid].market == "spot")
        self.samples.append((t, spot, len(self.alive) - spot, len(self.queue)))

    def idle_runners(self, t):
        idle = []
        for iid in self.alive:
            inst = self.instances[iid]
            if inst.job is not None or t < inst.ready_at or inst.draining is not None:
                continue
            if inst.stop_accepting is not None and t >= inst.stop_accepting:
                continue
            idle.append(inst)
        return idle

    def dispatch(self, t):
        if not self.queue:
            return
        idle = self.idle_runners(t)
        waiting = []
        while self.queue and idle:
            index = self.queue.pop(0)
            record = self.jobs[index]
            pick = 0
            lane = [k for k, inst in enumerate(idle) if inst.tags.get(TAG_LANE) == "on-demand"]
            if self.retry_lane and record["retry"]:
                # The re-run asks for the lane's label: it waits for a lane runner.
                if not lane:
                    self.stats["retries_waiting_for_lane"] += 1
                    waiting.append(index)
                    continue
                pick = lane[0]
            elif self.retry_lane and len(lane) < len(idle):
                # First attempts take the pool's runners; the lane's label is for re-runs, but a
                # lane runner also serves the pool's label when nothing else is idle.
                pick = next(k for k in range(len(idle)) if k not in lane)
            elif record["retry"]:
                # A re-run goes to on-demand capacity when the pool has fallen back.
                pick = next((k for k, inst in enumerate(idle) if inst.market == "on-demand"), 0)
            self.start_job(t, idle.pop(pick), index)
        self.queue[:0] = waiting

    def start_job(self, t, inst, index):
        """``inst`` takes job ``index`` at ``t``; its end is scheduled."""
        record = self.jobs[index]
        inst.job = index
        inst.job_started = t
        record["attempts"] += 1
        if record["started"] is None:
            record["started"] = t
        self.push(t + record["duration"], JOB_END, (inst.id, index))

    def stop_job(self, t, inst):
        """The runner's job ends or is cut at ``t``: its busy time is counted. Returns the job (or None)."""
        job = inst.job
        if job is not None:
            inst.busy_seconds += t - inst.job_started
        inst.job = None
        return job

    def billed_seconds(self):
        """Per market, the billed seconds (per-second billing, 60 s minimum) split into boot, busy
        (running a job) and idle: boot is launch to ready, idle the rest of the billed time (a
        runner up with no job, or draining). Jobs still running at the end count as busy up to it."""
        split = {m: {"billed": 0, "boot": 0, "busy": 0, "idle": 0} for m in ("spot", "on-demand")}
        for iid in sorted(self.instances):
            inst = self.instances[iid]
            end = inst.ended if inst.ended is not None else self.horizon
            billed = max(60, end - inst.launched)
            boot = min(inst.ready_at, end) - inst.launched
            busy = inst.busy_seconds + (end - inst.job_started if inst.job is not None else 0)
            part = split[inst.market]
            part["billed"] += billed
            part["boot"] += boot
            part["busy"] += busy
            part["idle"] += billed - boot - busy
        return split

    # -------------------------------------------------------------- results

    def result(self):
        cfg = self.cfg
        price = ON_DEMAND_TABLE[cfg["instance_type"]][3]
        prices = {"spot": price * (1 - cfg["spot_discount"]), "on-demand": price}
        billed = self.billed_seconds()
        seconds = {m: part["billed"] for m, part in billed.items()}
        cost = sum(seconds[m] * prices[m] / 3600 for m in seconds)
        waits = sorted(j["started"] - j["arrival"] for j in self.jobs if j["started"] is not None)
        done = sum(1 for j in self.jobs if j["done"] is not None)
        split = {
            m.replace("-", "_"): {k: round(part[k] / 3600, 4) for k in ("boot", "busy", "idle")}
            for m, part in billed.items()
        }
        out = {
            "policy": self.policy,
            "cost_usd": round(cost, 6),
            "instance_hours": {m.replace("-", "_"): round(s / 3600, 4) for m, s in sorted(seconds.items())},
            "runner_hours": split,
            "idle_runner_hours": round(sum(p["idle"] for p in split.values()), 4),
            "jobs": {
                "arrived": len(self.jobs),
                "completed": done,
                "retried": sum(1 for j in self.jobs if j["retry"]),
                "unfinished_at_end": len(self.jobs) - done,
            },
            "wait_seconds": {
                "p50": percentile(waits, 50),
                "p95": percentile(waits, 95),
                "max": waits[-1] if waits else 0,
            },
        }
        out.update(self.stats)
        if self.retry_lane:
            lane = [i for i in self.instances.values() if i.tags.get(TAG_LANE) == "on-demand"]
            lane_seconds = sum(max(60, (i.ended if i.ended is not None else self.horizon) - i.launched) for i in lane)
            out["lane_instance_hours"] = round(lane_seconds / 3600, 4)
            out["lane_cost_usd"] = round(lane_seconds * price / 3600, 6)
        return out


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ------------------------------------------------------------------ running every policy


def simulate(config, policies=POLICIES):
    """Run ``policies`` on the same inputs; returns a JSON-ready dict (see ``--json``)."""
    cfg = validate_config(config)
    jobs = job_stream(cfg)
    drops = []
    if not cfg["synthetic"]:
        if not cfg["preemption"]:
            raise SimError("preemption: at least one preemption trace is needed (or --synthetic)")
        for name in cfg["preemption"]:
            drops += trace_drops(cfg, *load_trace(cfg["traces"], name, "preemption"))
        drops.sort()
    availability = Availability(cfg)
    results = {}
    series = {}
    for policy in policies:
        sim = Sim(cfg, policy, jobs, drops, availability)
        results[policy] = sim.run()
        series[policy] = {"samples": sim.samples, "notices": sim.notice_times}
    base = results.get("on-demand")
    for res in results.values():
        res["effective_discount"] = round(1 - res["cost_usd"] / base["cost_usd"], 6) if base else None
        res["wait_p95_vs_on_demand"] = (
            round(res["wait_seconds"]["p95"] / base["wait_seconds"]["p95"], 4)
            if base and base["wait_seconds"]["p95"]
            else None
        )
    horizon = int(cfg["days"] * 86400)
    inputs = {
        "seed": cfg["seed"],
        "days": cfg["days"],
        "mode": "synthetic" if cfg["synthetic"] else "traces",
        "jobs": len(jobs),
        "trace_drops": sum(c for _t, c in drops),
        "spot_unavailable_hours": round(availability.unavailable_seconds(horizon) / 3600, 2),
        "instance_type": cfg["instance_type"],
        "on_demand_price": ON_DEMAND_TABLE[cfg["instance_type"]][3],
        "spot_discount": cfg["spot_discount"],
    }
    if not cfg["synthetic"]:
        inputs["preemption"] = list(cfg["preemption"])
        inputs["availability"] = cfg["availability"]
    else:
        inputs["interrupt_rate"] = cfg["interrupt_rate"]
        inputs["spot_availability"] = cfg["spot_availability"]
    if QUEUE_POLICY in policies:
        inputs["queue_floor"] = cfg["queue_floor"]
        inputs["queue_idle_minutes"] = cfg["queue_idle_minutes"]
    return {"inputs": inputs, "results": results, "series": series}


def markdown(report):
    rows = [
        "| policy | cost USD | effective discount | spot h | on-demand h | notices "
        "| jobs cut: interruption / lease / drain deadline | re-run | jobs lost: interruption / other "
        "| wait p50 s | wait p95 s | p95 vs on-demand | spot launch failures | idle runner h |",
        "|" + " --- |" * 14,
    ]
    for name in ALL_POLICIES:
        r = report["results"].get(name)
        if r is None:
            continue
        ratio = r["wait_p95_vs_on_demand"]
        rows.append(
            (
                "| {} | {:.2f} | {} | {:.1f} | {:.1f} | {} | {} / {} / {} | {} | {} / {} | {} | {} | {} | {} | {:.1f} |"
            ).format(
                name,
                r["cost_usd"],
                "-" if r["effective_discount"] is None else f"{r['effective_discount'] * 100:.1f}%",
                r["instance_hours"]["spot"],
                r["instance_hours"]["on_demand"],
                r["notices"],
                r["jobs_cut_by_interruption"],
                r["jobs_cut_by_lease"],
                r["jobs_cut_by_drain_deadline"],
                r["jobs"]["retried"],
                r["jobs_lost_to_interruption"],
                r["jobs_lost_other"],
                r["wait_seconds"]["p50"],
                r["wait_seconds"]["p95"],
                "-" if ratio is None else f"{ratio:.2f}x",
                r["spot_launch_failures"],
                r["idle_runner_hours"],
            )
        )
    return "\n".join(rows) + "\n"


def parse_args(argv):
    d = default_config()
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--traces", default=d["traces"], help="directory of the spot traces (default: %(default)s)")
    p.add_argument("--preemption", action="append", help="preemption trace, relative to --traces (repeatable)")
    p.add_argument("--availability", default=d["availability"], help="availability trace, relative to --traces")
    p.add_argument("--trace-offset-hours", type=float, default=d["trace_offset_hours"])
    p.add_argument("--synthetic", action="store_true", help="Poisson interruptions and outages instead of traces")
    p.add_argument("--interrupt-rate", type=float, default=d["interrupt_rate"], help="per spot instance-hour")
    p.add_argument("--spot-availability", type=float, default=d["spot_availability"], help="fraction 0..1")
    p.add_argument("--outage-minutes", type=float, default=d["outage_minutes"])
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--days", type=float, default=d["days"])
    p.add_argument("--instance-type", default=d["instance_type"])
    p.add_argument("--spot-discount", type=float, default=d["spot_discount"])
    p.add_argument("--peak-rate", type=float, default=d["peak_rate"], help="jobs/hour, weekdays in peak hours")
    p.add_argument("--offpeak-rate", type=float, default=d["offpeak_rate"], help="jobs/hour otherwise")
    p.add_argument("--desired", type=int, default=d["desired"], help="runners outside the window")
    p.add_argument("--peak-desired", type=int, default=d["peak_desired"], help="runners in the weekday window")
    p.add_argument("--job-median-minutes", type=float, default=d["job_median_minutes"])
    p.add_argument("--job-max-minutes", type=float, default=d["job_max_minutes"])
    p.add_argument("--block-minutes", type=int, default=d["block_minutes"])
    p.add_argument("--renew-before-minutes", type=int, default=d["renew_before_minutes"])
    p.add_argument(
        "--on-demand-without-lease",
        action="store_true",
        help="block pools: launch on-demand fallback instances without a lease (the keeper before 0.1.0's fix)",
    )
    p.add_argument("--drain-timeout", type=int, default=d["drain_timeout_seconds"])
    p.add_argument("--notice-seconds", type=int, default=d["notice_seconds"])
    p.add_argument(
        "--policies", default=",".join(POLICIES), help="comma-separated subset of " + ", ".join(ALL_POLICIES)
    )
    p.add_argument(
        "--retry-lane",
        action="store_true",
        help="parkingspot and parkingspot-queue: re-runs only on on-demand lane runners launched for them",
    )
    p.add_argument("--queue-floor", type=int, default=d["queue_floor"], help="parkingspot-queue: the floor")
    p.add_argument(
        "--queue-idle-minutes",
        type=int,
        default=d["queue_idle_minutes"],
        help="parkingspot-queue: scaling.idle_minutes",
    )
    p.add_argument("--html", help="write the chart (self-contained HTML) to this path")
    p.add_argument("--json", action="store_true", help="print the full results as JSON")
    return p.parse_args(argv)


def config_from_args(args):
    return {
        "traces": args.traces,
        "preemption": args.preemption or list(DEFAULT_PREEMPTION),
        "availability": args.availability,
        "trace_offset_hours": args.trace_offset_hours,
        "synthetic": args.synthetic,
        "interrupt_rate": args.interrupt_rate,
        "spot_availability": args.spot_availability,
        "outage_minutes": args.outage_minutes,
        "seed": args.seed,
        "days": args.days,
        "instance_type": args.instance_type,
        "spot_discount": args.spot_discount,
        "peak_rate": args.peak_rate,
        "offpeak_rate": args.offpeak_rate,
        "desired": args.desired,
        "peak_desired": args.peak_desired,
        "job_median_minutes": args.job_median_minutes,
        "job_max_minutes": args.job_max_minutes,
        "block_minutes": args.block_minutes,
        "renew_before_minutes": args.renew_before_minutes,
        "drain_timeout_seconds": args.drain_timeout,
        "notice_seconds": args.notice_seconds,
        "queue_floor": args.queue_floor,
        "queue_idle_minutes": args.queue_idle_minutes,
        "on_demand_lease": not args.on_demand_without_lease,
        "retry_lane": args.retry_lane,
    }


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    policies = tuple(p for p in args.policies.split(",") if p)
    bad = sorted(set(policies) - set(ALL_POLICIES))
    if bad:
        print("--policies: unknown policy {}; use {}".format(", ".join(bad), ", ".join(ALL_POLICIES)), file=sys.stderr)
        return 2
    try:
        report = simulate(config_from_args(args), policies)
    except SimError as e:
        print(f"ci_sim: {e}", file=sys.stderr)
        return 2
    if args.html:
        from ansible_collections.parkingspot.ec2.bench import ci_sim_chart

        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(ci_sim_chart.render(report))
    if args.json:
        print(dumps(report))
    else:
        print(summary(report))
    return 0


def dumps(report):
    return json.dumps(report, sort_keys=True, indent=1)


def summary(report):
    inputs = report["inputs"]
    lines = ["Inputs: " + ", ".join(f"{k}={inputs[k]}" for k in sorted(inputs)), "", markdown(report)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
