# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load test of the ci_webhook event source on loopback: signed GitHub workflow_job deliveries at a
steady rate, each on a new HTTP connection, spread over several pools.

Reports, per job, the time from sending its webhook to the first event for its pool sent after
it (the event that carries it): p50 / p95 / max; events per pool and the smallest gap between two
events of one pool (must not be below the debounce window); jobs lost (final demand vs sent).

    python bench/ci_webhook_load.py [--rate 50] [--seconds 60] [--pools 2] [--debounce 2]

stdlib only. Prints a Markdown block for docs/benchmarks.md.
"""

import argparse
import asyncio
import hashlib
import hmac
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "extensions", "eda", "plugins", "event_source", "ci_webhook.py")
SECRET = b"bench-secret"


def load_source():
    spec = importlib.util.spec_from_file_location("ci_webhook", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_demands(event):
    """``{pool: demand}`` of a source event, combined (``pools``, ``demands``) or of a pool (``pool``, ``demand``)."""
    if "demands" in event:
        return event["demands"]
    return {event["pool"]: event["demand"]}


class TimedQueue:
    def __init__(self):
        self.events = []

    async def put(self, event):
        self.events.append((time.monotonic(), event))


async def deliver(port, job_id, labels):
    body = json.dumps(
        {
            "action": "queued",
            "workflow_job": {"id": job_id, "run_id": job_id // 3, "status": "queued", "labels": labels},
            "repository": {"full_name": "example/app"},
        }
    ).encode()
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=%s\r\n"
        "Content-Length: %d\r\n\r\n" % (uuid.uuid4(), hmac.new(SECRET, body, hashlib.sha256).hexdigest(), len(body))
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return int(response.split(b" ")[1])


async def run(args, src, queue=None):
    """Send the deliveries; ``queue`` gets the source's events (default: a TimedQueue that keeps them)."""
    pools = [{"name": "pool-%d" % n, "labels": ["self-hosted", "pool-%d" % n]} for n in range(args.pools)]
    source = src.CIWebhookSource(
        src.parse_args(
            {
                "pools": pools,
                "github_secret": SECRET.decode(),
                "port": 0,
                "debounce_seconds": args.debounce,
                "combine_pools": not args.per_pool_events,
            }
        )
    )
    queue = TimedQueue() if queue is None else queue
    port = await source.start(queue)
    total = args.rate * args.seconds
    sent, statuses, tasks = [], [], []
    start = time.monotonic()

    async def one(n, pool):
        before = time.monotonic()
        statuses.append(await deliver(port, 10_000_000 + n, ["self-hosted", pool]))
        sent.append((before, pool))

    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
        tasks.append(asyncio.get_running_loop().create_task(one(n, "pool-%d" % (n % args.pools))))
    await asyncio.gather(*tasks)
    await asyncio.sleep(args.debounce + 0.5)
    source.server.close()
    await source.server.wait_closed()
    return source, queue, sent, statuses, time.monotonic() - start


def add_load_options(parser):
    """The load both webhook benchmarks send: deliveries per second, for how long, to how many pools."""
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--pools", type=int, default=2)
    parser.add_argument("--debounce", type=float, default=2.0)
    parser.add_argument(
        "--per-pool-events",
        action="store_true",
        help="one event per pool and window (the source's default) instead of one per window for every pool "
        "that changed (combine_pools, what the ci_queue rulebooks use)",
    )


def load_title(args):
    """The load both webhook benchmarks print in their title."""
    return "%d queued jobs/s for %d s, %d pools, debounce %.1f s, %s" % (
        args.rate,
        args.seconds,
        args.pools,
        args.debounce,
        "an event per pool" if args.per_pool_events else "pools combined",
    )


def main(argv):
    parser = argparse.ArgumentParser()
    add_load_options(parser)
    args = parser.parse_args(argv)
    src = load_source()
    source, queue, sent, statuses, elapsed = asyncio.run(run(args, src))
    latencies = []
    for at, pool in sent:
        latencies.append(next(t for t, e in queue.events if pool in event_demands(e) and t >= at) - at)
    cuts = statistics.quantiles(latencies, n=100)
    per_pool, gaps, lost = {}, [], 0
    for n in range(args.pools):
        pool = "pool-%d" % n
        times = [t for t, e in queue.events if pool in event_demands(e)]
        per_pool[pool] = len(times)
        gaps += [b - a for a, b in zip(times, times[1:])]
        final = [event_demands(e)[pool] for _t, e in queue.events if pool in event_demands(e)][-1]["queued"]
        lost += sum(1 for _at, p in sent if p == pool) - final
    print("### ci_webhook: %s" % load_title(args))
    print()
    print("Machine: %s, Python %s." % (platform.machine(), platform.python_version()))
    print()
    print("| measure | value |")
    print("| --- | --- |")
    print("| deliveries | %d (%d accepted, HTTP %s) |" % (len(sent), source.accepted, sorted(set(statuses))))
    print("| webhook -> event p50 / p95 / max | %.2f / %.2f / %.2f s |" % (cuts[49], cuts[94], max(latencies)))
    print("| events per pool | %s over %.1f s |" % (", ".join("%s %d" % kv for kv in per_pool.items()), elapsed))
    print("| smallest gap between two events of one pool | %.2f s |" % min(gaps or [float("nan")]))
    print("| jobs lost (sent - final queued) | %d |" % lost)
    print("| refused | %s |" % {k: v for k, v in source.refused.items() if v})
    ok = cuts[94] <= 5.0 and lost == 0 and min(gaps or [args.debounce]) >= args.debounce - 0.05
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
