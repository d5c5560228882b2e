# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end tests: the real watcher process against the fake IMDSv2 server."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from fake_imds import INSTANCE_ACTION
from fake_imds import FakeIMDS
from watcher_harness import free_port
from watcher_harness import metric
from watcher_harness import read_hook_log
from watcher_harness import wait_until
from watcher_harness import write_hook


def parse_stamp(stamp):
    return int(time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)


def drain_episode(tmp_path):
    state = json.loads((tmp_path / "state" / "notices.json").read_text())
    assert state["version"] == 2
    return state["episodes"]["drain"]


def test_notice_flips_health_runs_hooks_once_in_order_and_survives_restart(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "20-second", "exit 0")
    write_hook(hooks, "10-first", "exit 0")
    write_hook(hooks, "30-third", "exit 0")
    (tmp_path / "hooks" / "05-not-executable").write_text("#!/bin/sh\nexit 1\n")
    watcher = watcher_factory(imds.url, "--safety-margin", "15")
    assert watcher.health() == (200, {"status": "ok"})
    stamp = imds.set_instance_action("terminate", time.time() + 120)

    assert wait_until(lambda: watcher.health()[0] == 503, timeout=3)
    status, body = watcher.health()
    assert body["status"] == "terminating" and body["event"] == "interruption" and body["action"] == "terminate"
    assert body["notice_time"] == stamp
    assert wait_until(lambda: len(read_hook_log(log)) == 3, timeout=5), watcher.output()
    runs = read_hook_log(log)
    assert [r["hook"] for r in runs] == ["10-first", "20-second", "30-third"]
    for run in runs:
        assert run["event"] == "interruption" and run["action"] == "terminate" and run["phase"] == "drain"
        assert run["notice_time"] == stamp
        assert int(run["deadline"]) == parse_stamp(stamp) - 15
        assert 90 <= int(run["left"]) <= 105
        assert run["instance"] == "i-0123456789abcdef0"

    def results():
        return {name: rec["result"] for name, rec in drain_episode(tmp_path)["hooks"].items()}

    wait_until(lambda: "started" not in results().values(), timeout=3)
    assert results() == {
        "10-first": "ok",
        "20-second": "ok",
        "30-third": "ok",
    }

    # Several more polls: still exactly one run per hook.
    time.sleep(1.0)
    assert len(read_hook_log(log)) == 3
    code, took = watcher.terminate()
    assert code == 0 and took < 3

    # Restart with the same state: 503 straight away (before any poll), hooks not run again.
    imds.set_fault("500")
    again = watcher_factory(imds.url, "--safety-margin", "15")
    assert again.health()[0] == 503
    imds.set_fault(None)
    assert wait_until(lambda: metric(again.metrics(), "parkingspot_watcher_notices_total", event="interruption") == 1)
    time.sleep(1.0)
    assert len(read_hook_log(log)) == 3
    assert "restored drain lifecycle in state done" in again.output()


def test_imdsv2_only_one_token_one_connection_two_requests_per_poll(imds, watcher_factory):
    watcher = watcher_factory(imds.url, "--poll-interval", "0.1")
    time.sleep(2.0)
    requests = imds.snapshot()
    gets = [r for r in requests if r["method"] == "GET"]
    puts = [r for r in requests if r["method"] == "PUT"]
    assert len(puts) == 1
    assert gets and all(r["token"] == "valid" for r in gets)
    assert len({r["client"] for r in requests}) == 1
    polls = metric(watcher.metrics(), "parkingspot_watcher_imds_requests_total")
    metadata_gets = [r for r in gets if not r["path"].endswith(("/instance-id", "/document"))]
    assert len(metadata_gets) >= 10
    # instance-action every poll plus one secondary path: two GETs per poll.
    paths = [r["path"] for r in metadata_gets]
    assert paths.count(INSTANCE_ACTION) == pytest.approx(len(paths) / 2, abs=1)
    assert polls >= len(requests) - 2


def test_token_is_refreshed_before_it_expires(imds, watcher_factory):
    watcher_factory(imds.url, "--token-ttl", "2", "--poll-interval", "0.1")
    time.sleep(4.5)
    requests = imds.snapshot()
    assert sum(1 for r in requests if r["method"] == "PUT") >= 3
    assert [r for r in requests if r["status"] == 401] == []


def test_expired_token_is_refetched_on_401(imds, watcher_factory):
    watcher = watcher_factory(imds.url)
    time.sleep(0.5)
    with imds.lock:
        imds.tokens.clear()  # IMDS forgets the token (e.g. restarted): next GET gets 401
    imds.set_instance_action()
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=3)
    requests = imds.snapshot()
    assert any(r["status"] == 401 for r in requests)
    assert sum(1 for r in requests if r["method"] == "PUT") == 2
    assert all(r["token"] != "none" for r in requests if r["method"] == "GET")


FAULT_KINDS = [
    ("500", "token_status"),
    ("500get", "server"),
    ("garbage", "parse"),
    ("slow", "token_timeout"),
    ("reset", "connection"),
    ("401", "unauthorized"),
]


@pytest.mark.parametrize("fault,kind", FAULT_KINDS)
def test_imds_faults_are_survived(imds, watcher_factory, fault, kind):
    imds.set_fault(fault, slow_seconds=1.5)
    watcher = watcher_factory(imds.url)
    if fault == "garbage":
        imds.set_instance_action()
    time.sleep(1.5)
    # Health keeps answering quickly and stays 200: a broken IMDS is no termination notice.
    started = time.monotonic()
    assert watcher.health()[0] == 200
    assert time.monotonic() - started < 1.0
    assert watcher.proc.poll() is None
    assert metric(watcher.metrics(), "parkingspot_watcher_imds_errors_total", kind=kind) >= 1, watcher.output()
    if fault == "slow":
        assert "HttpPutResponseHopLimit" in watcher.output()
    if fault == "401":
        puts = sum(1 for r in imds.snapshot() if r["method"] == "PUT")
        polls = 1.5 / 0.2 + 3
        assert puts <= 2 * polls  # one retry per request, no tight loop
    assert all(r["token"] != "none" for r in imds.snapshot() if r["method"] == "GET")
    imds.set_fault(None)
    imds.set_instance_action()
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=5), watcher.output()


def test_connection_refused_then_recovers(watcher_factory):
    port = free_port()
    watcher = watcher_factory(f"http://127.0.0.1:{port}")
    time.sleep(1.0)
    assert watcher.health()[0] == 200
    assert metric(watcher.metrics(), "parkingspot_watcher_imds_errors_total", kind="refused") >= 2
    fake = FakeIMDS(port=port).start()
    try:
        fake.set_instance_action()
        assert wait_until(lambda: watcher.health()[0] == 503, timeout=5), watcher.output()
    finally:
        fake.stop()


def test_failing_and_hanging_hooks_do_not_stop_the_rest(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-fails", "exit 3")
    write_hook(hooks, "20-hangs", "sleep 60 &\necho $! > " + str(tmp_path / "child.pid") + "\nwait", timeout=1)
    write_hook(hooks, "30-runs", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_instance_action()
    assert wait_until(lambda: len(read_hook_log(log)) == 3, timeout=8), watcher.output()
    assert wait_until(lambda: 'hook_runs_total{hook="30-runs"' in watcher.metrics(), timeout=3)
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="10-fails", result="failed") == 1
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="20-hangs", result="timeout") == 1
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="30-runs", result="ok") == 1
    assert 0.9 <= metric(text, "parkingspot_watcher_hook_duration_seconds", hook="20-hangs") < 3.5
    child = int((tmp_path / "child.pid").read_text())
    assert wait_until(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), timeout=3)
    assert watcher.health()[0] == 503


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except OSError:
        return True


def test_deadline_clamps_hook_timeout_and_late_hooks_still_run(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-slow", "sleep 30")
    write_hook(hooks, "20-late", "exit 0")
    watcher = watcher_factory(imds.url, "--safety-margin", "10", "--hook-timeout", "60")
    imds.set_instance_action("terminate", time.time() + 13)  # deadline about 3 s away
    late_ok = 'parkingspot_watcher_hook_runs_total{hook="20-late",result="ok"}'
    assert wait_until(lambda: late_ok in watcher.metrics(), timeout=10), watcher.output()
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="10-slow", result="timeout") == 1
    assert metric(text, "parkingspot_watcher_hook_duration_seconds", hook="10-slow") < 5
    # Past the deadline the next hook still runs, with the time left before the notice itself.
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="20-late", result="ok") == 1
    runs = read_hook_log(log)
    assert [r["hook"] for r in runs] == ["10-slow", "20-late"]
    assert 5 <= int(runs[1]["left"]) <= 11


def test_rebalance_runs_its_own_phase_and_keeps_health(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-drain", "exit 0")
    write_hook(os.path.join(hooks, "rebalance.d"), "10-prepare", "exit 0")
    watcher = watcher_factory(imds.url)
    stamp = imds.set_rebalance()
    assert wait_until(lambda: len(read_hook_log(log)) == 1, timeout=5), watcher.output()
    (run,) = read_hook_log(log)
    assert run["hook"] == "10-prepare" and run["phase"] == "rebalance" and run["notice_time"] == stamp
    assert watcher.health()[0] == 200
    time.sleep(1.0)
    assert len(read_hook_log(log)) == 1


def test_rebalance_can_be_configured_to_drain(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "rebalance=drain")
    imds.set_rebalance()
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=5)
    assert wait_until(lambda: len(read_hook_log(log)) == 1, timeout=5)
    assert watcher.health()[1]["event"] == "rebalance"


def test_interruption_can_be_ignored(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "interruption=ignore")
    imds.set_instance_action()
    assert wait_until(lambda: metric(watcher.metrics(), "parkingspot_watcher_notices_total", event="interruption"))
    time.sleep(0.5)
    assert watcher.health()[0] == 200 and read_hook_log(log) == []


def test_lifecycle_terminated_drains_but_inservice_does_not(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_lifecycle("InService")
    time.sleep(1.5)
    assert watcher.health()[0] == 200
    imds.set_lifecycle("Terminated")
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=5)
    assert wait_until(lambda: len(read_hook_log(log)) == 1, timeout=5)
    assert read_hook_log(log)[0]["event"] == "lifecycle"


def test_scheduled_maintenance_runs_maintenance_hooks(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks" / "maintenance.d"), "10-note", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_scheduled("system-reboot")
    assert wait_until(lambda: len(read_hook_log(log)) == 1, timeout=5), watcher.output()
    assert read_hook_log(log)[0]["action"] == "system-reboot"
    assert watcher.health()[0] == 200


class _App:
    """A tiny application health endpoint whose answer the test controls."""

    def __init__(self):
        self.status, self.delay = 200, 0.0
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                time.sleep(app.delay)
                self.send_response(app.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ready"


def test_health_proxies_the_application(imds, watcher_factory):
    app = _App()
    watcher = watcher_factory(imds.url, "--app-health-url", app.url, "--app-health-timeout", "0.5")
    assert watcher.health() == (200, {"status": "ok", "app_status": 200})
    app.status = 500
    status, body = watcher.health()
    assert status == 503 and body["status"] == "unhealthy" and body["app_status"] == 500
    app.status, app.delay = 200, 2.0
    started = time.monotonic()
    assert watcher.health()[0] == 503
    assert time.monotonic() - started < 1.5
    app.delay = 0.0
    app.server.shutdown()
    app.server.server_close()
    status, body = watcher.health()
    assert status == 503 and "failed" in body["reason"]


def test_webhook_receives_the_notice(imds, watcher_factory):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        watcher = watcher_factory(imds.url, "--webhook-url", f"http://127.0.0.1:{server.server_address[1]}/hook")
        stamp = imds.set_instance_action("stop")
        assert wait_until(lambda: received, timeout=5)
        content_type, payload = received[0]
        assert content_type == "application/json"
        assert payload["event"] == "interruption" and payload["action"] == "stop"
        assert payload["notice_time"] == stamp and payload["instance_id"] == "i-0123456789abcdef0"
        assert wait_until(lambda: metric(watcher.metrics(), "parkingspot_watcher_webhook_total", result="ok") == 1)
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_endpoint_and_unknown_paths(imds, watcher_factory):
    watcher = watcher_factory(imds.url, "--health-path", "/ready", "--metrics-path", "/prom")
    time.sleep(0.5)
    from watcher_harness import http_get

    status, text = http_get(f"http://127.0.0.1:{watcher.port}/prom")
    assert status == 200
    assert "# TYPE parkingspot_watcher_imds_requests_total counter" in text
    assert time.time() - metric(text, "parkingspot_watcher_last_poll_timestamp_seconds") < 2
    assert metric(text, "parkingspot_watcher_terminating") == 0
    assert http_get(f"http://127.0.0.1:{watcher.port}/ready")[0] == 200
    assert http_get(f"http://127.0.0.1:{watcher.port}/health")[0] == 404


def test_sigterm_exits_zero_promptly_while_a_hook_hangs(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-hang", "sleep 60")
    watcher = watcher_factory(imds.url)
    imds.set_instance_action()
    assert wait_until(lambda: read_hook_log(log), timeout=5)
    pid = read_hook_log(log)[0]["pid"]
    code, took = watcher.terminate()
    assert code == 0 and took < 4
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=3)
    assert drain_episode(tmp_path)["hooks"]["10-hang"]["result"] == "interrupted"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--poll-interval", "0"], "--poll-interval"),
        (["--health-port", "70000"], "--health-port"),
        (["--on", "flood=drain"], "--on expects"),
        (["--imds-url", "https://169.254.169.254"], "--imds-url"),
        (["--token-ttl", "0"], "--token-ttl"),
        (["--health-path", "health"], "--health-path"),
    ],
)
def test_bad_options_fail_with_a_clear_message(watcher_factory, tmp_path, args, message):
    proc = watcher_factory("http://127.0.0.1:9", *args, start=False)
    proc.start(wait=False)
    assert proc.proc.wait(timeout=10) == 2
    assert message in proc.output()
    assert not (tmp_path / "state").exists()


def test_health_port_in_use_is_reported(imds, watcher_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        proc = watcher_factory(imds.url, start=False, port=sock.getsockname()[1])
        proc.start(wait=False)
        assert proc.proc.wait(timeout=10) == 2
    assert "--health-port" in proc.output()
