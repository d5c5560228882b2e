# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the termination watcher against the fake IMDSv2 server.

Measures, for the ParkingSpot watcher and for a SeeSpot-style 5 s poller on the same fake IMDS:
  * reaction latency from the notice appearing in IMDS to (a) health 503 and (b) first hook start,
    over N notices, each at a random phase of the poll cycle (a fresh process per notice, since a
    notice is final for the process that saw it);
  * idle CPU (share of one core), peak RSS and IMDS requests per second over an idle window;
  * the cost of a /metrics scrape (wall time at the client, CPU time of the watcher), ParkingSpot only.

Usage: python3 bench/watcher_latency.py [--notices 100] [--baseline-notices 20] [--idle-seconds 120] [--scrapes 500]
Prints a Markdown table and writes JSON to bench/results/watcher_latency.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "roles", "termination_watcher"))

from fake_imds import FakeIMDS  # noqa: E402

WATCHER = os.path.join(ROOT, "roles", "termination_watcher", "files", "parkingspot_watcher.py")
BASELINE = os.path.join(HERE, "seespot_baseline.py")
HOOK = '#!/bin/sh\ndate +%s.%N >> "{log}"\n'


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_status(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


PYTHON = sys.executable


def start(kind, imds_url, port, workdir, interval):
    hooks = os.path.join(workdir, "hooks")
    os.makedirs(hooks, exist_ok=True)
    log = os.path.join(workdir, "hook.log")
    with open(os.path.join(hooks, "10-stamp"), "w") as handle:
        handle.write(HOOK.format(log=log))
    os.chmod(os.path.join(hooks, "10-stamp"), 0o755)
    if kind == "parkingspot":
        argv = [
            PYTHON,
            WATCHER,
            "--imds-url",
            imds_url,
            "--health-address",
            "127.0.0.1",
            "--health-port",
            str(port),
            "--hooks-dir",
            hooks,
            "--state-dir",
            os.path.join(workdir, "state"),
            "--poll-interval",
            str(interval),
            "--log-level",
            "ERROR",
        ]
    else:
        argv = [PYTHON, BASELINE, imds_url, str(port), hooks, str(interval)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while health_status(port) != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{kind} did not start")
        time.sleep(0.01)
    return proc, log


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_notice(kind, fake, interval, index):
    """Latencies (to 503, to first hook start) in seconds for one notice."""
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        fake.clear_notices()
        proc, log = start(kind, fake.url, port, workdir, interval)
        try:
            time.sleep(random.uniform(0, interval))  # random phase relative to the poll cadence
            fake.set_instance_action("terminate", time.time() + 120 + index)
            appeared = fake.changed_at[fake_path()]
            t503 = None
            limit = time.monotonic() + interval * 3 + 5
            while t503 is None and time.monotonic() < limit:
                if health_status(port) == 503:
                    t503 = time.time()
                else:
                    time.sleep(0.002)
            hook_start = None
            while hook_start is None and time.monotonic() < limit:
                if os.path.exists(log):
                    with open(log) as handle:
                        first = handle.readline().strip()
                    if first:
                        hook_start = float(first)
                        break
                time.sleep(0.005)
        finally:
            stop(proc)
            fake.clear_notices()
    if t503 is None or hook_start is None:
        raise RuntimeError(f"{kind}: notice {index} not seen in time")
    return t503 - appeared, hook_start - appeared


def fake_path():
    from fake_imds import INSTANCE_ACTION

    return INSTANCE_ACTION


def percentile(values, pct):
    """Nearest-rank percentile (with 100 samples, p99 is the second largest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def scrape_cost(pid, port, count):
    """Wall ms per /metrics scrape (p50, p99) and watcher CPU ms per scrape, over count scrapes."""
    if not count:
        return {}
    url = f"http://127.0.0.1:{port}/metrics"
    ticks = os.sysconf("SC_CLK_TCK")
    walls, size = [], 0
    cpu0 = cpu_ticks(pid)
    for _scrape in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=2) as resp:
            size = len(resp.read())
        walls.append((time.perf_counter() - started) * 1000)
    cpu = (cpu_ticks(pid) - cpu0) / ticks * 1000 / count
    return {
        "scrape_p50_ms": statistics.median(walls),
        "scrape_p99_ms": percentile(walls, 99),
        "scrape_cpu_ms": cpu,
        "scrape_bytes": size,
    }


def idle(kind, fake, interval, seconds, scrapes=0):
    """CPU share of one core, peak RSS (MiB) and IMDS requests/s over an idle window; then the scrape cost."""
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc, _log = start(kind, fake.url, port, workdir, interval)
        try:
            time.sleep(min(3.0, seconds / 10))  # let it settle (imports, first token)
            ticks = os.sysconf("SC_CLK_TCK")
            cpu0, wall0, req0 = cpu_ticks(proc.pid), time.monotonic(), len(fake.snapshot())
            peak = 0.0
            end = wall0 + seconds
            while time.monotonic() < end:
                peak = max(peak, rss_mib(proc.pid))
                time.sleep(1.0)
            cpu1, wall1, req1 = cpu_ticks(proc.pid), time.monotonic(), len(fake.snapshot())
            scrape = scrape_cost(proc.pid, port, scrapes)
            scrape["rss_after_scrapes_mib"] = rss_mib(proc.pid) if scrapes else None
        finally:
            stop(proc)
    wall = wall1 - wall0
    return {
        **scrape,
        "cpu_percent": 100.0 * (cpu1 - cpu0) / ticks / wall,
        "rss_mib": peak,
        "imds_requests_per_s": (req1 - req0) / wall,
        "seconds": round(wall, 1),
    }


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def summarize(samples):
    to503 = [s[0] * 1000 for s in samples]
    tohook = [s[1] * 1000 for s in samples]
    return {
        "n": len(samples),
        "p50_503_ms": statistics.median(to503),
        "p99_503_ms": percentile(to503, 99),
        "max_503_ms": max(to503),
        "p50_hook_ms": statistics.median(tohook),
        "p99_hook_ms": percentile(tohook, 99),
        "max_hook_ms": max(tohook),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=100)
    parser.add_argument("--baseline-notices", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--baseline-interval", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--scrapes", type=int, default=500, help="/metrics scrapes after the idle window")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs both watchers")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "watcher_latency.json"))
    args = parser.parse_args(argv)
    random.seed(args.seed)
    global PYTHON
    PYTHON = args.python
    version = subprocess.run(
        [PYTHON, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    fake = FakeIMDS().start()
    results = {"python": version, "interval": args.interval}
    try:
        for kind, count, interval in (
            ("parkingspot", args.notices, args.interval),
            ("seespot-style", args.baseline_notices, args.baseline_interval),
        ):
            samples = [one_notice(kind, fake, interval, i) for i in range(count)]
            fake.reset_requests()
            summary = summarize(samples)
            scrapes = args.scrapes if kind == "parkingspot" else 0
            summary.update(idle(kind, fake, interval, args.idle_seconds, scrapes))
            summary["interval"] = interval
            results[kind] = summary
            print(f"{kind}: {json.dumps(summary)}", file=sys.stderr)
    finally:
        fake.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"Python {version}")
    print(
        "| watcher | poll s | notices | 503 p50 / p99 / max ms | first hook p50 / p99 / max ms "
        "| idle CPU % of a core | RSS MiB | IMDS req/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("parkingspot", "seespot-style"):
        r = results[kind]
        print(
            f"| {kind} | {r['interval']:g} | {r['n']} | {r['p50_503_ms']:.0f} / {r['p99_503_ms']:.0f} / "
            f"{r['max_503_ms']:.0f} | {r['p50_hook_ms']:.0f} / {r['p99_hook_ms']:.0f} / {r['max_hook_ms']:.0f} | "
            f"{r['cpu_percent']:.3f} | {r['rss_mib']:.1f} | {r['imds_requests_per_s']:.2f} |"
        )
    r = results["parkingspot"]
    if args.scrapes:
        print(
            f"\n/metrics scrape ({args.scrapes}x, {r['scrape_bytes']} bytes): wall p50 {r['scrape_p50_ms']:.2f} ms, "
            f"p99 {r['scrape_p99_ms']:.2f} ms; watcher CPU {r['scrape_cpu_ms']:.2f} ms per scrape; "
            f"RSS after the scrapes {r['rss_after_scrapes_mib']:.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
