"""The queue-driven pool against the schedule at the same p95 wait (bench/ci_sim.py, issue #17).

Usage (from the collection root, with the collection importable, e.g.
``make bench B=ci_sim_queue_compare``):

    python bench/ci_sim_queue_compare.py [--seeds 1] [--peak 12,14,16,20,24] [--offpeak 3,4,6]
        [--floors 0,1] [--idle 5,10] [--on-demand-idle 0] [--retry-lane] [--budgets 60,120]
        [--offerings 3 [--on-demand-base 0] [--cooldown-minutes 15]] [ci_sim options after --]

For every seed, on the same jobs and traces:

1. ``parkingspot-queue`` runs with each floor x idle_minutes x on_demand_idle_minutes (the
   module's default 0 unless ``--on-demand-idle`` lists others); ``parkingspot`` runs with the
   default schedule (``--desired`` off-peak, ``--peak-desired`` in the window).
2. Schedule searched to the queue's wait: every off-peak x peak size of the schedule runs, and
   the cheapest whose p95 wait is at most the queue policy's p95 (default queue options) is the
   schedule "at the same p95". None may reach it; then the table says so.
3. Queue tuned to the schedule's wait: the cheapest queue option set whose p95 is at most the
   default schedule's p95.
4. Schedule searched to the cheapest queue's wait: the cheapest queue run of all (losing no
   job), and the cheapest schedule whose p95 is at most that run's.

``--offerings K`` runs both pools on K offerings, each with its own traces, drawn per seed as
bench/ci_sim_offerings.py draws them (the schedule pool ``parkingspot-offerings``, the queue pool
``parkingspot-offerings-queue``), instead of ci_sim's one market.

``--retry-lane`` gives the queue policy the retry lane (spot_pool ``demand.retries``),
``--schedule-retry-lane`` the schedule policy too. A run that loses a job never counts as
reaching a wait. One Markdown
table per seed; ``--json`` prints every run.
"""

from __future__ import annotations

import argparse
import json
import sys

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_offerings

QUEUE = ci_sim.QUEUE_POLICY
SCHEDULE = "parkingspot"


def brief(res, **labels):
    return dict(
        labels,
        cost_usd=round(res["cost_usd"], 2),
        wait_p95=res["wait_seconds"]["p95"],
        lost=res["jobs_lost_to_interruption"] + res["jobs_lost_other"],
        spot_h=res["instance_hours"]["spot"],
        on_demand_h=res["instance_hours"]["on_demand"],
        idle_h=res["idle_runner_hours"],
        lane_cost_usd=round(res.get("lane_cost_usd", 0.0), 2),
    )


def cheapest(runs, wait_limit):
    fits = [r for r in runs if r["wait_p95"] <= wait_limit and r["lost"] == 0]
    return min(fits, key=lambda r: (r["cost_usd"], r["wait_p95"])) if fits else None


def single_market(cfg, queue):
    """One run of ci_sim's queue or schedule policy."""
    name = QUEUE if queue else SCHEDULE
    return ci_sim.simulate(cfg, (name,))["results"][name]


def with_offerings(n_offerings, base, cooldown):
    """Runs on ``n_offerings`` offerings (bench/ci_sim_offerings.py): the schedule pool, or with
    ``queue`` the same pool sized by the queue, both with an on-demand lane of ``base``."""

    def run(cfg, queue):
        return ci_sim_offerings.simulate(cfg, n_offerings, base, cooldown, queue=queue)

    return run


def compare(config, seed, peaks, offpeaks, floors, idles, schedule_lane=False, on_demand_idles=(0,), run=None):
    run = run or single_market
    base_cfg = dict(config, seed=seed)
    # The queue's bounds stay those of the default schedule whatever schedule is searched.
    queue_max = base_cfg.get("queue_max") or 2 * ci_sim.default_config()["peak_desired"]
    on_demand = ci_sim.simulate(base_cfg, ("on-demand",))["results"]["on-demand"]
    # The schedule runs without the retry lane unless asked: it loses no job without it on the
    # default traces, and with it (demand given) the scale-in rule protects its runners too.
    queue_runs = []
    for floor in floors:
        for idle in idles:
            for od_idle in on_demand_idles:
                cfg = dict(
                    base_cfg,
                    queue_floor=floor,
                    queue_idle_minutes=idle,
                    queue_on_demand_idle_minutes=od_idle,
                    queue_max=queue_max,
                )
                res = run(cfg, True)
                queue_runs.append(brief(res, floor=floor, idle_minutes=idle, on_demand_idle_minutes=od_idle))
    schedule_runs = []
    for off in offpeaks:
        for peak in peaks:
            if peak < off:
                continue
            cfg = dict(base_cfg, desired=off, peak_desired=peak, queue_max=queue_max, retry_lane=schedule_lane)
            res = run(cfg, False)
            schedule_runs.append(brief(res, desired=off, peak_desired=peak))
    d = ci_sim.default_config()
    default_queue = next(
        (
            r
            for r in queue_runs
            if r["floor"] == d["queue_floor"]
            and r["idle_minutes"] == d["queue_idle_minutes"]
            and r["on_demand_idle_minutes"] == d["queue_on_demand_idle_minutes"]
        ),
        queue_runs[0],
    )
    default_schedule = next(
        (
            r
            for r in schedule_runs
            if r["desired"] == base_cfg.get("desired", d["desired"])
            and r["peak_desired"] == base_cfg.get("peak_desired", d["peak_desired"])
        ),
        None,
    )
    best_queue = cheapest(queue_runs, float("inf"))
    return {
        "seed": seed,
        "on_demand_cost_usd": round(on_demand["cost_usd"], 2),
        "on_demand_wait_p95": on_demand["wait_seconds"]["p95"],
        "queue_runs": queue_runs,
        "schedule_runs": schedule_runs,
        "default_queue": default_queue,
        "default_schedule": default_schedule,
        "schedule_at_queue_wait": cheapest(schedule_runs, default_queue["wait_p95"]),
        "queue_at_schedule_wait": cheapest(queue_runs, default_schedule["wait_p95"]) if default_schedule else None,
        "cheapest_queue": best_queue,
        "schedule_at_cheapest_queue_wait": cheapest(schedule_runs, best_queue["wait_p95"]) if best_queue else None,
    }


def at_budgets(result, budgets):
    """Per p95 budget (seconds): the cheapest queue run and the cheapest schedule run that keep to it
    and lose no job, from the runs searched; the saving is theirs."""
    rows = []
    for budget in budgets:
        queue = cheapest(result["queue_runs"], budget)
        schedule = cheapest(result["schedule_runs"], budget)
        rows.append({"budget": budget, "queue": queue, "schedule": schedule, "saving": saving(queue, schedule)})
    return rows


def budgets_markdown(result, budgets):
    lines = [
        "",
        "| p95 budget s | cheapest queue: options, USD, p95 s | cheapest schedule: sizes, USD, p95 s | saving |",
        "| --- | --- | --- | --- |",
    ]
    for entry in at_budgets(result, budgets):
        q, s = entry["queue"], entry["schedule"]
        qtext = f"floor {q['floor']}, idle {q['idle_minutes']}: {q['cost_usd']:.2f}, {q['wait_p95']}" if q else "none"
        stext = f"{s['desired']} / {s['peak_desired']}: {s['cost_usd']:.2f}, {s['wait_p95']}" if s else "none"
        lines.append(f"| {entry['budget']} | {qtext} | {stext} | {entry['saving']} |")
    return "\n".join(lines)


def saving(queue, schedule):
    if not queue or not schedule:
        return "-"
    return f"{1 - queue['cost_usd'] / schedule['cost_usd']:.1%}"


def row(name, r):
    if r is None:
        return f"| {name} | none reaches it | - | - | - | - | - | - |"
    opts = (
        f"floor {r['floor']}, idle {r['idle_minutes']} min, on-demand idle {r['on_demand_idle_minutes']} min"
        if "floor" in r
        else f"{r['desired']} off-peak, {r['peak_desired']} in the window"
    )
    return (
        f"| {name} | {opts} | {r['cost_usd']:.2f} | {r['wait_p95']} | {r['lost']} | "
        f"{r['spot_h']:.1f} / {r['on_demand_h']:.1f} | {r['idle_h']:.1f} | {r['lane_cost_usd']:.2f} |"
    )


def markdown(result):
    q, s = result["default_queue"], result["default_schedule"]
    best = result["cheapest_queue"]
    lines = [
        f"Seed {result['seed']}: on-demand only {result['on_demand_cost_usd']:.2f} USD, "
        f"p95 wait {result['on_demand_wait_p95']} s",
        "",
        "| run | options | cost USD | wait p95 s | lost | spot h / on-demand h | idle runner h | lane cost USD |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        row("queue (default options)", q),
        row("schedule (default)", s),
        row("schedule: cheapest with p95 <= the queue's", result["schedule_at_queue_wait"]),
        row("queue: cheapest with p95 <= the schedule's", result["queue_at_schedule_wait"]),
        row("queue: cheapest of all", best),
        row("schedule: cheapest with p95 <= that queue's", result["schedule_at_cheapest_queue_wait"]),
        "",
        f"- queue vs default schedule: {saving(q, s)} less cost",
        f"- at the queue's p95 ({q['wait_p95']} s): {saving(q, result['schedule_at_queue_wait'])} less cost",
        f"- at the schedule's p95 ({s['wait_p95'] if s else '-'} s): "
        f"{saving(result['queue_at_schedule_wait'], s)} less cost",
        f"- at the cheapest queue's p95 ({best['wait_p95'] if best else '-'} s): "
        f"{saving(best, result['schedule_at_cheapest_queue_wait'])} less cost",
    ]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--seeds", default="1")
    p.add_argument("--peak", default="12,14,16,20,24", help="schedule sizes in the window to search")
    p.add_argument("--offpeak", default="3,4,6", help="schedule sizes outside the window to search")
    p.add_argument("--floors", default="0,1", help="queue floors to try")
    p.add_argument("--idle", default="5,10", help="queue idle_minutes to try")
    p.add_argument("--on-demand-idle", default="0", help="queue on_demand_idle_minutes to try")
    p.add_argument("--retry-lane", action="store_true", help="the queue policy sends re-runs to the retry lane")
    p.add_argument("--schedule-retry-lane", action="store_true", help="the schedule policy too")
    p.add_argument(
        "--budgets",
        default="",
        help="p95 waits (s): for each, the cheapest queue and the cheapest schedule that keep to it",
    )
    p.add_argument(
        "--offerings",
        type=int,
        default=0,
        help="run both pools on this many offerings, each with its own traces (bench/ci_sim_offerings.py); "
        "0: one market, ci_sim's policies",
    )
    p.add_argument("--on-demand-base", type=int, default=0, help="with --offerings: the on-demand lane's size")
    p.add_argument("--cooldown-minutes", type=int, default=15, help="with --offerings: offering_cooldown_minutes")
    p.add_argument("--json", action="store_true")
    p.add_argument("rest", nargs="*", help="further ci_sim options (after --)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        seeds = ci_sim.whole_numbers(args.seeds, "--seeds")
        peaks = ci_sim.whole_numbers(args.peak, "--peak")
        offpeaks = ci_sim.whole_numbers(args.offpeak, "--offpeak")
        floors = ci_sim.whole_numbers(args.floors, "--floors")
        idles = ci_sim.whole_numbers(args.idle, "--idle")
        od_idles = ci_sim.whole_numbers(args.on_demand_idle, "--on-demand-idle")
        config = ci_sim.config_from_args(ci_sim.parse_args(args.rest))
        config["retry_lane"] = config["retry_lane"] or args.retry_lane
        lane = args.schedule_retry_lane
        budgets = ci_sim.whole_numbers(args.budgets, "--budgets") if args.budgets else []
        ci_sim_offerings.check_options(args.offerings, args.on_demand_base, args.cooldown_minutes, least=0)
        if args.offerings:
            run = with_offerings(args.offerings, args.on_demand_base, args.cooldown_minutes)
        else:
            run = single_market
        results = [compare(config, seed, peaks, offpeaks, floors, idles, lane, od_idles, run) for seed in seeds]
    except ci_sim.SimError as e:
        print(f"ci_sim_queue_compare: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, sort_keys=True, indent=1))
    else:
        print("\n\n".join(markdown(r) + (budgets_markdown(r, budgets) if budgets else "") for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
