# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A notice's whole life, as AWS's metadata mock plays it: the real watcher against the fake IMDS.

One case per item of the lifecycle issue: time updates, maintenance inside its window, cancel,
reboot, a notice inside the safety margin, two kinds at once, uniform times; then withdrawal with
undo scripts, restarts mid-drain, IMDS faults during a drain and the metrics."""

from __future__ import annotations

import json
import os
import re
import time

from watcher_harness import metric
from watcher_harness import read_hook_log
from watcher_harness import wait_until
from watcher_harness import write_hook

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def epoch(stamp):
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


def state(tmp_path):
    return json.loads((tmp_path / "state" / "notices.json").read_text())


def hooks_of(log, suffix=""):
    return [r["hook"] for r in read_hook_log(log) if r["hook"].endswith(suffix)]


# ---------------------------------------------------------------- Seen 1: time updates


def test_recomputed_notice_times_move_the_deadline_and_never_rerun_hooks(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-stop-runner", "exit 0")
    write_hook(os.path.join(hooks, "rebalance.d"), "10-prepare", "exit 0")
    watcher = watcher_factory(imds.url, "--poll-interval", "0.1")
    imds.mock_spot("stop")  # the mock's defaults: both times recomputed on every request
    imds.mock_rebalance()
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=3)
    first_deadline = watcher.health()[1]["deadline"]
    time.sleep(4.0)  # about 40 polls, each with a new instance-action time
    assert sorted(hooks_of(log)) == ["10-prepare", "10-stop-runner"], watcher.output()
    status, body = watcher.health()
    assert status == 503 and body["state"] == "done" and body["action"] == "stop"
    assert epoch(body["deadline"]) >= epoch(first_deadline) + 2  # moved with the notice
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_notice_updates_total", event="interruption") >= 2
    assert metric(text, "parkingspot_watcher_notices_total", event="interruption") == 1
    assert metric(text, "parkingspot_watcher_notices_total", event="rebalance") == 1
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="10-stop-runner", result="ok") == 1
    saved = state(tmp_path)["episodes"]["drain"]
    assert epoch(body["deadline"]) - 1 <= saved["deadline"] <= epoch(body["deadline"]) + 2


# ---------------------------------------------------------------- Seen 2: inside the maintenance window


def test_maintenance_inside_its_window_runs_hooks_with_a_budget_from_now(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "maintenance=drain", "--default-budget", "120", "--safety-margin", "10")
    before = time.time()
    imds.set_scheduled("system-reboot", when=time.time() - 600)  # NotBefore has passed
    assert wait_until(lambda: hooks_of(log) == ["10-drain"], timeout=5), watcher.output()
    (run,) = read_hook_log(log)
    # deadline = max(NotBefore, now) + budget - margin
    assert before + 110 - 2 <= int(run["deadline"]) <= time.time() + 110 + 1
    assert 100 <= int(run["left"]) <= 110
    assert "deadline passed" not in watcher.output()
    assert watcher.health()[0] == 503


# ---------------------------------------------------------------- Seen 3: cancel


def test_canceled_maintenance_returns_health_to_200_and_runs_undo(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-deregister", "exit 0")
    write_hook(hooks, "10-deregister.undo", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "maintenance=drain")
    imds.set_scheduled("system-reboot", when=time.time() + 3600)
    assert wait_until(lambda: hooks_of(log) == ["10-deregister"], timeout=5)
    assert watcher.health()[0] == 503
    imds.set_event_state("canceled")
    assert wait_until(lambda: watcher.health()[0] == 200, timeout=5), watcher.output()
    assert wait_until(lambda: "10-deregister.undo" in hooks_of(log), timeout=5)
    undo = read_hook_log(log)[-1]
    assert undo["lifecycle"] == "withdrawn" and undo["event"] == "maintenance" and undo["action"] == "system-reboot"
    assert state(tmp_path)["episodes"]["drain"]["state"] == "withdrawn"
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_lifecycle_total", phase="drain", state="withdrawn") == 1
    assert metric(text, "parkingspot_watcher_terminating") == 0
    time.sleep(1.0)  # the canceled event stays listed: nothing more happens
    assert hooks_of(log) == ["10-deregister", "10-deregister.undo"]


# ---------------------------------------------------------------- Seen 4: after the reboot


def test_after_the_reboot_a_completed_event_clears_the_restored_503(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-stop-agent", "exit 0")
    write_hook(hooks, "10-stop-agent.undo", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "maintenance=drain")
    imds.set_scheduled("system-reboot", when=time.time() - 60)
    assert wait_until(lambda: hooks_of(log) == ["10-stop-agent"], timeout=5)
    assert wait_until(lambda: state(tmp_path)["episodes"]["drain"]["state"] == "done", timeout=3)
    assert watcher.terminate()[0] == 0
    # The reboot: the event is now completed, and a new watcher process starts from the state file.
    imds.set_event_state("completed")
    imds.set_fault("500")
    again = watcher_factory(imds.url, "--on", "maintenance=drain")
    assert again.health()[0] == 503  # restored, before IMDS answers
    imds.set_fault(None)
    assert wait_until(lambda: again.health()[0] == 200, timeout=5), again.output()
    assert wait_until(lambda: "10-stop-agent.undo" in hooks_of(log), timeout=5)
    assert read_hook_log(log)[-1]["lifecycle"] == "completed"
    assert state(tmp_path)["episodes"]["drain"]["state"] == "completed"
    assert hooks_of(log) == ["10-stop-agent", "10-stop-agent.undo"]
    # A third start (another reboot): stays 200, nothing runs again.
    assert again.terminate()[0] == 0
    third = watcher_factory(imds.url, "--on", "maintenance=drain")
    assert third.health()[0] == 200
    time.sleep(1.0)
    assert third.health()[0] == 200 and len(read_hook_log(log)) == 2


def test_a_saved_drain_whose_notice_is_gone_after_restart_does_not_stay_503(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url, "--on", "maintenance=drain", "--default-budget", "1", "--restore-grace", "0")
    imds.set_scheduled("system-reboot", when=time.time() - 60)
    assert wait_until(lambda: hooks_of(log) == ["10-drain"], timeout=5)
    assert watcher.terminate()[0] == 0
    imds.clear_notices()  # the event is no longer listed at all
    imds.set_fault("500")  # and IMDS is not answering yet: the saved end + grace has passed
    time.sleep(1.2)
    again = watcher_factory(imds.url, "--on", "maintenance=drain", "--default-budget", "1", "--restore-grace", "0")
    assert again.health()[0] == 200
    imds.set_fault(None)
    assert wait_until(lambda: state(tmp_path)["episodes"]["drain"]["state"] == "completed", timeout=5)
    assert again.health()[0] == 200


# ---------------------------------------------------------------- Seen 5: closer than the safety margin


def test_a_notice_inside_the_safety_margin_still_runs_every_hook_in_order(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "30-third", "exit 0")
    write_hook(hooks, "10-first", "sleep 0.3")
    write_hook(hooks, "20-second", "exit 0")
    watcher = watcher_factory(imds.url, "--safety-margin", "30")
    stamp = imds.set_instance_action("hibernate", time.time() + 5)  # no two-minute warning
    assert wait_until(lambda: len(read_hook_log(log)) == 3, timeout=5), watcher.output()
    runs = read_hook_log(log)
    assert [r["hook"] for r in runs] == ["10-first", "20-second", "30-third"]
    for run in runs:
        assert int(run["deadline"]) == int(epoch(stamp))  # the notice time itself: nothing else is left
        assert 0 <= int(run["left"]) <= 5 and int(run["timeout"]) <= 5
    assert float(runs[0]["started"]) < float(runs[1]["started"]) < float(runs[2]["started"])
    assert "inside the safety margin" in watcher.output()


# ---------------------------------------------------------------- Seen 6: two kinds at once


def test_spot_notice_and_asg_terminated_together_drain_once(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-drain", "sleep 0.5")
    write_hook(hooks, "10-drain.undo", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_lifecycle("Terminated")
    imds.mock_spot("terminate")
    assert wait_until(lambda: watcher.health()[1].get("events") == ["interruption", "lifecycle"], timeout=5)
    time.sleep(1.5)
    assert hooks_of(log) == ["10-drain"]
    assert set(read_hook_log(log)[0]["events"].split(",")) <= {"interruption", "lifecycle"}
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_notices_total", event="interruption") == 1
    assert metric(text, "parkingspot_watcher_notices_total", event="lifecycle") == 1
    assert metric(text, "parkingspot_watcher_lifecycle_total", phase="drain", state="detected") == 1
    # One cause leaving is not the end of the drain.
    imds.withdraw_spot()
    time.sleep(1.0)
    status, body = watcher.health()
    assert status == 503 and body["events"] == ["lifecycle"]
    assert hooks_of(log) == ["10-drain"]


# ---------------------------------------------------------------- Seen 7: uniform times


def test_every_time_in_a_hook_environment_is_rfc3339(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks" / "maintenance.d"), "10-note", "exit 0")
    watcher = watcher_factory(imds.url)
    raw = imds.set_scheduled("instance-stop", when=1796157009)  # "1 Dec 2026 20:30:09 GMT"
    assert raw == "1 Dec 2026 20:30:09 GMT"
    assert wait_until(lambda: read_hook_log(log), timeout=5), watcher.output()
    (run,) = read_hook_log(log)
    assert run["notice_time"] == "2026-12-01T20:30:09Z"
    for key in ("notice_time", "deadline_time", "detected_time", "end_time"):
        assert RFC3339.match(run[key]), (key, run[key])
    assert run["deadline"].isdigit()  # PARKINGSPOT_DEADLINE stays epoch seconds for shell arithmetic
    assert (run["instance_type"], run["zone"], run["region"], run["private_ip"]) == (
        "m5.large",
        "us-east-1a",
        "us-east-1",
        "10.0.0.7",
    )


# ---------------------------------------------------------------- withdrawal, undo, restarts


def test_withdrawn_spot_notice_runs_undo_in_reverse_once_and_a_new_notice_drains_again(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-deregister", "exit 0")
    write_hook(hooks, "20-stop-agent", "exit 0")
    write_hook(hooks, "30-no-undo", "exit 0")
    write_hook(hooks, "10-deregister.undo", "exit 0")
    write_hook(hooks, "20-stop-agent.undo", "exit 4")
    watcher = watcher_factory(imds.url)
    imds.set_instance_action("stop", time.time() + 120)
    assert wait_until(lambda: len(read_hook_log(log)) == 3, timeout=5)
    imds.withdraw_spot()
    assert wait_until(lambda: watcher.health()[0] == 200, timeout=3)
    assert wait_until(lambda: len(read_hook_log(log)) == 5, timeout=5), watcher.output()
    assert hooks_of(log)[3:] == ["20-stop-agent.undo", "10-deregister.undo"]
    text = watcher.metrics()
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="20-stop-agent.undo", result="failed") == 1
    time.sleep(0.6)
    assert len(read_hook_log(log)) == 5  # undo once
    imds.set_instance_action("terminate", time.time() + 120)  # a new notice: a new drain
    assert wait_until(lambda: len(read_hook_log(log)) == 8, timeout=5)
    assert hooks_of(log)[5:] == ["10-deregister", "20-stop-agent", "30-no-undo"]
    saved = state(tmp_path)
    assert saved["episodes"]["drain"]["causes"]["interruption"]["action"] == "terminate"
    assert [e["state"] for e in saved["history"]] == ["withdrawn"]


def test_restart_mid_drain_runs_each_hook_at_most_once(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-first", "exit 0")
    write_hook(hooks, "20-hangs", "sleep 60")
    write_hook(hooks, "30-third", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_instance_action("terminate", time.time() + 120)
    assert wait_until(lambda: len(read_hook_log(log)) == 2, timeout=5)
    assert watcher.terminate()[0] == 0  # killed while 20-hangs runs
    again = watcher_factory(imds.url)
    assert again.health()[0] == 503
    assert wait_until(lambda: len(read_hook_log(log)) == 3, timeout=5), again.output()
    assert hooks_of(log) == ["10-first", "20-hangs", "30-third"]
    assert "already ran for this notice" in again.output()
    assert wait_until(lambda: state(tmp_path)["episodes"]["drain"]["state"] == "done", timeout=3)


def test_imds_errors_during_a_drain_are_not_a_withdrawal(imds, watcher_factory, tmp_path):
    hooks = str(tmp_path / "hooks")
    log = write_hook(hooks, "10-drain", "exit 0")
    write_hook(hooks, "10-drain.undo", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.mock_spot("terminate")
    assert wait_until(lambda: hooks_of(log) == ["10-drain"], timeout=5)
    for fault in ("500get", "slow", "garbage", "reset", "401"):
        imds.set_fault(fault, slow_seconds=1.0)
        time.sleep(1.0)
        assert watcher.health()[0] == 503, fault
    imds.set_fault(None)
    time.sleep(0.6)
    assert watcher.health()[0] == 503
    assert hooks_of(log) == ["10-drain"]
    assert metric(watcher.metrics(), "parkingspot_watcher_imds_errors_total", kind="server") >= 1


def test_asg_lifecycle_inservice_turns_terminated(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_lifecycle("InService", after=1.5)
    time.sleep(1.0)
    assert watcher.health()[0] == 200
    assert wait_until(lambda: watcher.health()[0] == 503, timeout=3)
    assert wait_until(lambda: hooks_of(log) == ["10-drain"], timeout=3)
    assert read_hook_log(log)[0]["event"] == "lifecycle" and read_hook_log(log)[0]["action"] == "terminate"


def test_notify_phase_lifecycle_and_its_undo(imds, watcher_factory, tmp_path):
    directory = str(tmp_path / "hooks" / "rebalance.d")
    log = write_hook(directory, "10-prepare", "exit 0")
    write_hook(directory, "10-prepare.undo", "exit 0")
    watcher = watcher_factory(imds.url, "--poll-interval", "0.1")
    imds.mock_rebalance()
    assert wait_until(lambda: hooks_of(log) == ["10-prepare"], timeout=5)
    time.sleep(1.0)
    assert hooks_of(log) == ["10-prepare"] and watcher.health()[0] == 200
    imds.set(imds_paths()["rebalance"], None)
    assert wait_until(lambda: hooks_of(log) == ["10-prepare", "10-prepare.undo"], timeout=5)
    assert read_hook_log(log)[-1]["phase"] == "rebalance"


def imds_paths():
    from fake_imds import REBALANCE

    return {"rebalance": REBALANCE}


# ---------------------------------------------------------------- metrics


def test_metrics_are_valid_prometheus_text(imds, watcher_factory, tmp_path):
    log = write_hook(str(tmp_path / "hooks"), "10-drain", "exit 0")
    watcher = watcher_factory(imds.url)
    imds.set_instance_action()
    assert wait_until(lambda: read_hook_log(log), timeout=5)
    assert wait_until(lambda: 'hook_runs_total{hook="10-drain"' in watcher.metrics(), timeout=3)
    text = watcher.metrics()
    sample = re.compile(r'^[a-z_:][a-z0-9_:]*(\{([a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*)?\})? -?[0-9.e+-]+$')
    typed = set()
    for line in text.strip().splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge") and name not in typed
            typed.add(name)
        else:
            assert sample.match(line), line
            assert line.split("{")[0].split(" ")[0] in typed
    assert metric(text, "parkingspot_watcher_notices_total", event="interruption") == 1
    assert metric(text, "parkingspot_watcher_hook_runs_total", hook="10-drain", result="ok") == 1
    assert metric(text, "parkingspot_watcher_hook_seconds_total", hook="10-drain") > 0
    assert 0 <= metric(text, "parkingspot_watcher_last_poll_age_seconds") < 3.0
    assert metric(text, "parkingspot_watcher_terminating") == 1
    done = 'parkingspot_watcher_lifecycle_total{phase="drain",state="done"} 1.0'
    assert wait_until(lambda: done in watcher.metrics(), timeout=2)


def test_unreadable_or_old_state_files_start_clean(imds, watcher_factory, tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    old = {"notices": {"interruption:terminate:2026": {"response": "drain", "deadline": time.time() + 100}}}
    broken = {"version": 2, "episodes": {"drain": {"state": "done", "causes": {"interruption": {"action": "x"}}}}}
    for content in (json.dumps(old), json.dumps(broken), "{not json"):
        (state_dir / "notices.json").write_text(content)
        watcher = watcher_factory(imds.url)
        assert watcher.health()[0] == 200, watcher.output()
        assert watcher.terminate()[0] == 0
