# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers and fixtures that run the real watcher daemon as a subprocess against the fake IMDS."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fake_imds import FakeIMDS  # noqa: E402

ROLE = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "roles", "termination_watcher"))
WATCHER = os.path.join(ROLE, "files", "parkingspot_watcher.py")


def find_python38():
    """A working Python 3.8 found at run time: on PATH, else under pyenv (shims are verified, not trusted)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    pyenv = sorted(glob.glob(os.path.join(root, "versions", "3.8*", "bin", "python")))
    candidates = [shutil.which("python3.8")] + pyenv
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return candidate
    return None


def interpreters():
    params = [pytest.param(sys.executable, id=f"py{sys.version_info[0]}{sys.version_info[1]}")]
    py38 = find_python38()
    params.append(
        pytest.param(
            py38,
            id="py38",
            marks=pytest.mark.skipif(
                py38 is None, reason="no Python 3.8 interpreter (python3.8 on PATH or pyenv 3.8.x) found"
            ),
        )
    )
    return params


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=3.0):
    """(status, body text); HTTP errors are results, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def metric(text, name, **labels):
    """Value of one Prometheus sample in text, 0.0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _sep, value = line.rpartition(" ")
        base, _sep, label_part = series.partition("{")
        if base != name:
            continue
        got = ",".join(sorted(label_part.rstrip("}").split(","))) if label_part else ""
        if got == want:
            return float(value)
    return 0.0


class WatcherProcess:
    def __init__(self, python, imds_url, workdir, extra, port=None):
        self.port = port or free_port()
        self.hooks_dir = os.path.join(workdir, "hooks")
        self.state_dir = os.path.join(workdir, "state")
        os.makedirs(self.hooks_dir, exist_ok=True)
        self.log_path = os.path.join(workdir, f"watcher-{self.port}-{time.monotonic_ns()}.log")
        self.argv = [
            python,
            WATCHER,
            "--imds-url",
            imds_url,
            "--health-address",
            "127.0.0.1",
            "--health-port",
            str(self.port),
            "--hooks-dir",
            self.hooks_dir,
            "--state-dir",
            self.state_dir,
            "--poll-interval",
            "0.2",
            "--imds-timeout",
            "0.5",
            "--error-log-interval",
            "0.5",
        ] + list(extra)
        self.proc = None

    @property
    def health_url(self):
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def metrics_url(self):
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            ok = wait_until(self._answers, timeout=10)
            assert ok, f"watcher did not answer on {self.health_url}:\n{self.output()}"
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"watcher exited {self.proc.returncode}:\n{self.output()}")
        try:
            http_get(self.health_url, timeout=0.5)
            return True
        except OSError:
            return False

    def health(self):
        status, body = http_get(self.health_url)
        return status, json.loads(body)

    def metrics(self):
        return http_get(self.metrics_url)[1]

    def output(self):
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def terminate(self, timeout=5.0):
        """SIGTERM; returns (exit code, seconds it took)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "timeout"
        self.log.close()
        return code, time.monotonic() - started


@pytest.fixture(params=interpreters())
def python(request):
    return request.param


@pytest.fixture
def imds():
    fake = FakeIMDS().start()
    yield fake
    fake.stop()


@pytest.fixture
def watcher_factory(python, tmp_path):
    started = []

    def make(imds_url, *extra, start=True, port=None):
        proc = WatcherProcess(python, imds_url, str(tmp_path), extra, port=port)
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        if proc.proc is None or proc.proc.poll() is not None:
            continue  # never started, or exited on its own (asserted by the test itself)
        code, took = proc.terminate()
        assert code in (0, None), f"watcher exit code {code} on SIGTERM:\n{proc.output()}"
        assert took < 5.0


def write_hook(directory, name, body, timeout=None):
    """A /bin/sh hook that appends one JSON line with its environment to $HOOK_LOG, then runs body."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    log = os.path.join(
        os.path.dirname(directory.rstrip("/")) if directory.endswith(".d") else directory, "..", "hooks.log"
    )
    log = os.path.normpath(log)
    fields = {
        "hook": name,
        "event": "$PARKINGSPOT_EVENT",
        "action": "$PARKINGSPOT_ACTION",
        "phase": "$PARKINGSPOT_PHASE",
        "notice_time": "$PARKINGSPOT_NOTICE_TIME",
        "deadline": "$PARKINGSPOT_DEADLINE",
        "left": "$PARKINGSPOT_SECONDS_LEFT",
        "instance": "$PARKINGSPOT_INSTANCE_ID",
        "events": "$PARKINGSPOT_EVENTS",
        "lifecycle": "$PARKINGSPOT_LIFECYCLE",
        "deadline_time": "$PARKINGSPOT_DEADLINE_TIME",
        "detected_time": "$PARKINGSPOT_DETECTED_TIME",
        "end_time": "$PARKINGSPOT_END_TIME",
        "timeout": "$PARKINGSPOT_HOOK_TIMEOUT",
        "instance_type": "$PARKINGSPOT_INSTANCE_TYPE",
        "zone": "$PARKINGSPOT_AVAILABILITY_ZONE",
        "region": "$PARKINGSPOT_REGION",
        "private_ip": "$PARKINGSPOT_PRIVATE_IP",
        "started": "$(date +%s.%N)",
        "pid": "$$",
    }
    line = json.dumps(fields).replace('"', '\\"')
    script = f'#!/bin/sh\necho "{line}" >> {log}\n{body}\n'
    with open(path, "w") as handle:
        handle.write(script)
    os.chmod(path, 0o755)
    if timeout is not None:
        with open(path + ".timeout", "w") as handle:
            handle.write(str(timeout))
    return log


def read_hook_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
