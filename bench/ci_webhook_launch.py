# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook -> launch call, end to end on loopback: the issue #17 target.

Signed GitHub ``workflow_job`` (queued) deliveries at --rate for --seconds go into the real
``ci_webhook`` source, loaded in-process and driven by bench/ci_webhook_load.py. Every event the
source emits starts a keeper run for its pool the way extensions/eda/rulebooks/ci_queue.yml does:
``ansible-playbook playbooks/runner_pool.yml`` with ``parkingspot_pool_names: [pool]`` and
``parkingspot_demand: {queued, busy, retries, counted_at}`` as extra vars, the pools in the
inventory. The keeper talks to moto behind the strict counting proxy (tools/ec2_proxy.py), whose
``/_proxy/calls`` log gives the time of every RunInstances / CreateFleet and the instances it
launched for which pool. moto runs with its tag lookup indexed (tools/with_moto.py
``indexed_tags``): its own lookup makes DescribeInstances quadratic in the instances held, which
the 50 jobs/s run would measure instead of the keeper. The keepers' lock and launch journal
(``run_lock``) live in a directory of this run only. moto and the proxy run in a process of their
own (the script starts itself again under tools/with_moto.py), as EC2 would: in the bench's
process their CPU work would hold up the source's event loop; ``--same-process`` keeps them here.

How the runs are started (--strategy):
  parallel    the default, what ci_queue.yml does (``execution_strategy: parallel``): every event
              starts its playbook at once; the keeper serializes the runs of one pool
  sequential  ansible-rulebook's default for a ruleset: one action at a time, the next event
              waits until the running playbook ends

Reported, per queued job (the k-th job sent for a pool):
  covered       webhook sent -> the first launch call, at or after it, that brings the pool's
                launched instances to k or more (the launch that gives this job its runner)
  first after   webhook sent -> the first launch call of its pool at or after it (a lower bound)
and p50 / p95 / max of both; the most events of one pool the source emitted within any one
debounce window (each starts a keeper run; must be <= 1), counted on the times the bench received
them; the largest spawn delay (event -> its ansible-playbook process started: process start-up
under load, and in sequential mode the wait behind earlier runs); instances launched per pool
against the pool's final demand (more is a double launch); what one keeper run costs
(ansible-playbook start-up against the module's EC2 calls).

    python bench/ci_webhook_launch.py [--rate 50] [--seconds 60] [--pools 2] [--debounce 2]
        [--strategy parallel|sequential]

Needs moto[server] and boto3 (started in-process) and the collection on ANSIBLE_COLLECTIONS_PATH:
    make bench B=ci_webhook_launch ARGS="--rate 50 --seconds 60"
Prints a Markdown block for docs/benchmarks.md.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOK = os.path.join(HERE, "..", "playbooks", "runner_pool.yml")
TEMPLATE = "bench-runner"
POOL_TAG = "parkingspot:pool"
# ci_queue.yml's default parkingspot_run_lock (parkingspot_ci_run_lock unset).
RULEBOOK_REUSE_READ_SECONDS = 30
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import ci_webhook_load  # noqa: E402  pylint: disable=wrong-import-position
from ci_webhook_load import event_demands  # noqa: E402  pylint: disable=wrong-import-position

# ------------------------------------------------------------------ pure helpers


def launch_latencies(sent, launches):
    """Seconds from each job's webhook to the launch that covers it, and to the first launch after it.

    ``sent``: ``[(time, pool), ...]`` one per queued job; ``launches``: ``[(time, pool, new), ...]``
    launch calls with the number of instances they launched that no earlier call had. The k-th
    job of a pool (in sending order) is covered by the first launch at or after its sending that
    brings the pool's launched instances to k or more. Returns two lists in the order of
    ``sent``: covered and first-after latencies, None where no such launch happened.
    """
    by_pool = {}
    for at, pool, new in sorted(launches, key=lambda launch: launch[0]):
        total = by_pool.setdefault(pool, [])
        total.append((at, (total[-1][1] if total else 0) + new))
    seen, covered, first = {}, [], []
    for at, pool in sent:
        seen[pool] = seen.get(pool, 0) + 1
        after = [(t, total) for t, total in by_pool.get(pool, []) if t >= at]
        first.append(after[0][0] - at if after else None)
        hit = next((t for t, total in after if total >= seen[pool]), None)
        covered.append(None if hit is None else hit - at)
    return covered, first


def most_runs_in_a_window(starts, window):
    """The most keeper runs that started within any ``window`` seconds (a half-open interval)."""
    starts = sorted(starts)
    most, low = 0, 0
    for high, at in enumerate(starts):
        while starts[low] <= at - window:
            low += 1
        most = max(most, high - low + 1)
    return most


def smallest_gap(events):
    """The smallest time between two events as the keeper received them (NaN for fewer than two)."""
    times = sorted(at for at, _event in events)
    return min((b - a for a, b in zip(times, times[1:])), default=float("nan"))


def runs_per_window(events, window):
    """Per pool, the most events the source emitted within any ``window`` seconds.

    ``events``: ``[(time, event), ...]`` as the keeper received them. Each event starts one keeper
    run, so this is the runs started per window as the rulebook asked for them, free of the
    jitter of process start-up (reported apart as the spawn delay).
    """
    times = {}
    for at, event in events:
        for pool in event_demands(event):
            times.setdefault(pool, []).append(at)
    return {pool: most_runs_in_a_window(starts, window) for pool, starts in times.items()}


def keeper_extra_vars(event):
    """The extra vars the rule of extensions/eda/rulebooks/ci_queue.yml gives runner_pool.yml.

    A combined event (``combine_pools``, what the rulebook uses) names its pools and gives each its
    demand; an event of one pool (``--per-pool-events``) gives the pool and its demand.
    """
    if "demands" in event:
        return {
            "parkingspot_pool_names": list(event["pools"]),
            "parkingspot_demands": event["demands"],
            "parkingspot_run_lock": {"reuse_read_seconds": RULEBOOK_REUSE_READ_SECONDS},
        }
    demand = event["demand"]
    return {
        "parkingspot_pool_names": [event["pool"]],
        "parkingspot_demand": {
            "queued": demand["queued"],
            "busy": demand["busy"],
            "retries": demand.get("retries", 0),
            "counted_at": demand["counted_at"],
        },
    }


def by_slice(sent, latencies, width=10.0):
    """The p95 of ``latencies`` per ``width`` seconds of sending time, as text (where in the run the tail is)."""
    if not sent:
        return "-"
    start = sent[0][0]
    slices = {}
    for (at, _pool), latency in zip(sent, latencies):
        slices.setdefault(int((at - start) // width), []).append(latency)
    return ", ".join(
        "%d-%d s %.1f" % (k * width, (k + 1) * width, percentiles(v)[1]) for k, v in sorted(slices.items())
    )


def percentiles(values):
    """(p50, p95, max) of the values that are not None; NaNs when there are too few."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return (values[0],) * 3 if values else (float("nan"),) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], max(values)


# ------------------------------------------------------------------ the run


def http(url, method="GET"):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


class Keeper:
    """Starts ansible-playbook runner_pool.yml for each event, as the ci_queue rulebook's rule does."""

    def __init__(self, inventory, env, strategy):
        self.inventory = inventory
        self.env = env
        self.strategy = strategy
        self.events = []  # (monotonic time, event): what bench/ci_webhook_load.py reads
        self.runs = []
        self.tasks = []
        self.backlog = asyncio.Queue()
        self.worker = None

    async def put(self, event):
        at = time.monotonic()  # when the source emitted it
        self.events.append((at, event))
        if self.strategy == "parallel":
            self.tasks.append(asyncio.get_running_loop().create_task(self.run(event, at)))
            return
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self.work())
        self.backlog.put_nowait((event, at))

    async def work(self):
        while True:
            event, at = await self.backlog.get()
            try:
                await self.run(event, at)
            finally:
                self.backlog.task_done()

    async def run(self, event, at):
        extra = keeper_extra_vars(event)
        command = [playbook_command(), "-i", self.inventory, PLAYBOOK, "-e", json.dumps(extra)]
        record = {"pools": extra["parkingspot_pool_names"], "event_at": at, "start": time.time()}
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.env
        )
        record["spawn_delay"] = time.monotonic() - at
        output = (await process.communicate())[0]
        record.update(end=time.time(), rc=process.returncode)
        if process.returncode:
            record["tail"] = output.decode("utf-8", "replace")[-1500:]
        self.runs.append(record)

    async def drain(self):
        if self.worker is not None:
            await self.backlog.join()
            self.worker.cancel()
        await asyncio.gather(*self.tasks)


def playbook_command():
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return beside if os.path.exists(beside) else "ansible-playbook"


def write_inventory(workdir, args, proxy_url):
    jobs_per_pool = -(-args.rate * args.seconds // args.pools)
    pools = [
        {
            "name": "pool-%d" % n,
            "desired": 0,
            "scaling": {"max": jobs_per_pool + 1},
            "launch_template": {"name": TEMPLATE},
            "instance_type": "m6i.large",
        }
        for n in range(args.pools)
    ]
    inventory = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "vars": {
                "parkingspot_pools": pools,
                "parkingspot_region": "us-east-1",
                "parkingspot_endpoint_url": proxy_url,
            },
        }
    }
    path = os.path.join(workdir, "inventory.json")
    with open(path, "w") as handle:
        json.dump(inventory, handle)
    return path


def startup_seconds(workdir, env, times=3):
    """Wall time of ansible-playbook on a one-task play: the start-up every keeper run pays."""
    import subprocess

    play = os.path.join(workdir, "noop.yml")
    with open(play, "w") as handle:
        handle.write("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    - meta: noop\n")
    spent = []
    for _attempt in range(times):
        began = time.monotonic()
        subprocess.run([playbook_command(), "-i", "localhost,", play], env=env, capture_output=True, check=True)
        spent.append(time.monotonic() - began)
    return statistics.median(spent)


def run_cost(runs, calls):
    """Per sequential run: start -> first EC2 call, first -> last EC2 call, last call -> end (seconds)."""
    parts = []
    for run in runs:
        inside = [c["at"] for c in calls if run["start"] <= c["at"] <= run["end"]]
        if inside:
            parts.append((inside[0] - run["start"], inside[-1] - inside[0], run["end"] - inside[-1]))
    return parts


def nothing():
    """Stop nothing: tools/with_moto.py stops what it started."""


def measure(args):
    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    import boto3
    from with_moto import fake_credentials_env
    from with_moto import start_local_ec2

    if os.environ.get("MOTO_URL") and os.environ.get("MOTO_DIRECT_URL"):
        # Started by main() under tools/with_moto.py: the EC2 side in a process of its own.
        direct, proxy_url, stop = os.environ["MOTO_DIRECT_URL"], os.environ["MOTO_URL"], nothing
    else:
        direct, proxy_url, _state, stop = start_local_ec2(indexed_tags=True)
    env = fake_credentials_env(proxy_url)
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    try:
        ec2 = boto3.client("ec2", endpoint_url=direct, region_name="us-east-1")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.create_launch_template(LaunchTemplateName=TEMPLATE, LaunchTemplateData={"ImageId": image})
        with tempfile.TemporaryDirectory() as workdir:
            # The keepers' run locks and launch journal: this run's own, never an earlier run's.
            env["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")
            startup = startup_seconds(workdir, env)
            keeper = Keeper(write_inventory(workdir, args, proxy_url), env, args.strategy)
            src = ci_webhook_load.load_source()
            wall = time.time() - time.monotonic()
            began = time.time()

            async def go():
                outcome = await ci_webhook_load.run(args, src, keeper)
                await keeper.drain()
                return outcome

            source, _queue, sent, statuses, _elapsed = asyncio.run(go())
            elapsed = time.time() - began
        calls = http(proxy_url + "/_proxy/calls?since=%f" % began)
        live = {}
        for page in ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    pool = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get(POOL_TAG)
                    live[pool] = live.get(pool, 0) + 1
    finally:
        stop()
    sent = sorted((at + wall, pool) for at, pool in sent)
    return {
        "source": source,
        "keeper": keeper,
        "sent": sent,
        "statuses": statuses,
        "calls": calls,
        "live": live,
        "startup": startup,
        "elapsed": elapsed,
    }


def report(args, result):
    keeper, sent, calls = result["keeper"], result["sent"], result["calls"]
    seen, launches = set(), []
    for call in calls:
        if "instances" in call:
            new = [i for i in call["instances"] if i not in seen]
            seen.update(new)
            launches.append((call["at"], call["tags"].get(POOL_TAG), len(new)))
    covered, first = launch_latencies(sent, launches)
    pools = ["pool-%d" % n for n in range(args.pools)]
    final = {pool: 0 for pool in pools}
    for _at, event in keeper.events:
        final.update({pool: demand["queued"] for pool, demand in event_demands(event).items()})
    launched = {pool: sum(new for _at, p, new in launches if p == pool) for pool in pools}
    windows = dict.fromkeys(pools, 0)
    windows.update(runs_per_window(keeper.events, args.debounce))
    spawn = max((r["spawn_delay"] for r in keeper.runs), default=float("nan"))
    durations = [r["end"] - r["start"] for r in keeper.runs]
    failed = [r for r in keeper.runs if r["rc"]]
    double = {pool: launched[pool] - final[pool] for pool in pools if launched[pool] > final[pool]}
    c50, c95, cmax = percentiles(covered)
    f50, f95, fmax = percentiles(first)
    lines = [
        "### ci_webhook -> launch call: %s, %s keeper runs" % (ci_webhook_load.load_title(args), args.strategy),
        "",
        "Machine: %s, %d CPUs, Python %s; moto (tag lookup indexed) behind the strict counting proxy on loopback%s."
        % (
            platform.machine(),
            os.cpu_count() or 0,
            platform.python_version(),
            ", in this process" if args.same_process else ", in a process of their own",
        ),
        "",
        "| measure | value |",
        "| --- | --- |",
        "| deliveries | %d (%d accepted, HTTP %s) |"
        % (len(sent), result["source"].accepted, sorted(set(result["statuses"]))),
        "| events (keeper runs started) | %d, %d failed; whole run %.1f s |"
        % (len(keeper.runs), len(failed), result["elapsed"]),
        "| webhook -> launch covering the job, p50 / p95 / max | %.2f / %.2f / %.2f s |" % (c50, c95, cmax),
        "| webhook -> first launch of its pool after it, p50 / p95 / max | %.2f / %.2f / %.2f s |" % (f50, f95, fmax),
        "| webhook -> launch covering the job, p95 by 10 s of sending | %s |" % by_slice(sent, covered),
        "| jobs without a launch covering them | %d |" % sum(1 for c in covered if c is None),
        "| most keeper runs of one pool started within one debounce window (source's event times) | %s |"
        % ", ".join("%s %d" % kv for kv in windows.items()),
        "| smallest gap between two events (as received) | %.3f s |" % smallest_gap(keeper.events),
        "| largest spawn delay (event -> its ansible-playbook process started) | %.2f s |" % spawn,
        "| instances launched / final queued demand | %s |"
        % ", ".join("%s %d / %d" % (pool, launched[pool], final[pool]) for pool in pools),
        "| double launches (instances above demand) | %s |" % (double or "none"),
        "| instances in moto per pool | %s |"
        % ", ".join("%s %d" % kv for kv in sorted(result["live"].items(), key=str)),
        "| launch calls | %s |"
        % ", ".join(
            "%s %d" % (a, sum(1 for c in calls if c["action"] == a and "instances" in c))
            for a in ("RunInstances", "CreateFleet")
        ),
        "| keeper run wall time p50 / p95 / max | %.2f / %.2f / %.2f s |" % percentiles(durations),
        "| ansible-playbook start-up (one-task play, median of 3) | %.2f s |" % result["startup"],
    ]
    if args.strategy == "sequential":
        parts = run_cost(keeper.runs, calls)
        if parts:
            lines.append(
                "| one keeper run: start -> first EC2 call / EC2 calls / last call -> end (medians) | "
                "%.2f / %.2f / %.2f s |" % tuple(statistics.median(p[i] for p in parts) for i in range(3))
            )
    for run in failed[:1]:
        lines += ["", "First failed keeper run (%s):" % ", ".join(run["pools"]), "", "```", run["tail"], "```"]
    print("\n".join(lines))
    ok = c95 <= 5.0 and max(windows.values() or [0]) <= 1 and not double and not failed
    return 0 if ok else 1


def parse_args(argv):
    parser = argparse.ArgumentParser()
    ci_webhook_load.add_load_options(parser)
    parser.add_argument("--strategy", choices=("parallel", "sequential"), default="parallel")
    parser.add_argument(
        "--same-process", action="store_true", help="run moto and the proxy in this process (as before 2026-12-02)"
    )
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if not args.same_process and not os.environ.get("MOTO_URL"):
        # moto and the proxy in a process of their own (tools/with_moto.py), as EC2 is: in this
        # process their CPU work would hold up the source's event loop and skew its timing.
        tool = os.path.join(HERE, "..", "tools", "with_moto.py")
        this = os.path.abspath(__file__)
        return subprocess.call([sys.executable, tool, "--indexed-tags", "--", sys.executable, this] + argv)
    return report(args, measure(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
