# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run each built-in hook with fake aws/kubectl/systemctl/pgrep/sync on PATH and check what they were asked."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "roles", "cleanup_hooks", "files", "builtin"))
INSTANCE = "i-0123456789abcdef0"

# Fake commands: each logs "<name> <args>" and acts on small counter files in $FAKE_STATE.
FAKES = {
    "aws": """
echo "aws $*" >> "$FAKE_LOG"
case "$*" in *describe-addresses*) printf '%s\\n' "$FAKE_AWS_DESCRIBE" ;; esac
exit "${FAKE_AWS_RC:-0}"
""",
    "kubectl": """
echo "kubectl $*" >> "$FAKE_LOG"
exit "${FAKE_KUBECTL_RC:-0}"
""",
    "systemctl": """
echo "systemctl $*" >> "$FAKE_LOG"
case "$1" in
  is-active)
    n=$(cat "$FAKE_STATE/active" 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ]; then
      [ "$n" -lt 1000 ] && echo $((n - 1)) > "$FAKE_STATE/active"
      exit 0
    fi
    exit 3 ;;
  list-units) [ -n "${FAKE_UNITS:-}" ] && printf '%s\\n' "$FAKE_UNITS" ;;
esac
exit 0
""",
    "pgrep": """
echo "pgrep $*" >> "$FAKE_LOG"
n=$(cat "$FAKE_STATE/worker" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$FAKE_STATE/worker"; exit 0; fi
exit 1
""",
    "sync": """
echo "sync $*" >> "$FAKE_LOG"
""",
    "hostname": """
echo "ip-10-0-0-7.ec2.internal"
""",
}


@pytest.fixture
def env(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name, body in FAKES.items():
        path = fakebin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    # Only the fakes and the basic tools the hooks use (date, awk, sleep, dirname, cat).
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("date", "awk", "sleep", "dirname", "cat", "sh", "printf"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, tools / tool)
    return {
        "PATH": f"{fakebin}:{tools}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(state),
        "PARKINGSPOT_INSTANCE_ID": INSTANCE,
        "PARKINGSPOT_NOTICE_TIME": "2026-01-01T10:02:00Z",
        "PARKINGSPOT_DEADLINE": str(int(time.time()) + 100),
        "PARKINGSPOT_HOOK_TIMEOUT": "60",
        "PS_POLL_SECONDS": "0.1",
    }


def run(hook, env, **extra):
    merged = dict(env, **extra)
    started = time.monotonic()
    proc = subprocess.run(
        [os.path.join(BUILTIN, hook + ".sh")], env=merged, capture_output=True, text=True, timeout=30, check=False
    )
    proc.took = time.monotonic() - started
    return proc


def calls(env):
    if not os.path.exists(env["FAKE_LOG"]):
        return []
    with open(env["FAKE_LOG"]) as handle:
        return [line.rstrip("\n") for line in handle]


def set_counter(env, name, value):
    with open(os.path.join(env["FAKE_STATE"], name), "w") as handle:
        handle.write(str(value))


@pytest.mark.parametrize(
    "hook,unit,signal",
    [("gitlab_runner", "gitlab-runner", "SIGQUIT"), ("buildkite_agent", "buildkite-agent", "SIGTERM")],
)
def test_runner_gets_graceful_signal_then_stop_after_job(env, hook, unit, signal):
    set_counter(env, "active", 4)  # active at the first check and for three waits
    proc = run(hook, env)
    assert proc.returncode == 0, proc.stderr
    log = calls(env)
    assert log[0] == f"systemctl is-active --quiet {unit}"
    assert log[1] == f"systemctl kill --kill-who=main --signal={signal} {unit}"
    assert log[-1] == f"systemctl stop {unit}"
    assert log.count(f"systemctl is-active --quiet {unit}") == 5
    assert "finished its work" in proc.stderr


def test_runner_busy_past_the_deadline_is_stopped_at_the_deadline(env):
    set_counter(env, "active", 1000)  # never finishes
    proc = run("gitlab_runner", env, PARKINGSPOT_DEADLINE=str(int(time.time()) + 3), PS_END_MARGIN="1")
    assert proc.returncode == 0, proc.stderr
    assert 0.5 <= proc.took <= 4
    assert calls(env)[-1] == "systemctl stop gitlab-runner"
    assert "still busy at the deadline" in proc.stderr


def test_runner_hook_uses_its_own_timeout_when_shorter(env):
    set_counter(env, "active", 1000)
    proc = run("buildkite_agent", env, PARKINGSPOT_HOOK_TIMEOUT="3", PS_END_MARGIN="1")
    assert proc.took <= 4
    assert calls(env)[-1] == "systemctl stop buildkite-agent"


def test_inactive_runner_is_left_alone(env):
    proc = run("gitlab_runner", env, PS_GITLAB_RUNNER_UNIT="gitlab-runner-2")
    assert proc.returncode == 0
    assert calls(env) == ["systemctl is-active --quiet gitlab-runner-2"]


def test_github_runner_waits_for_running_job_then_stops_units(env):
    set_counter(env, "worker", 3)
    units = "actions.runner.org-repo.r1.service loaded active running GitHub Actions Runner"
    proc = run("github_runner", env, FAKE_UNITS=units)
    assert proc.returncode == 0, proc.stderr
    log = calls(env)
    assert log[0].startswith("systemctl list-units --type=service --state=active")
    assert log.count("pgrep -f Runner.Worker") == 4
    assert log[-1] == "systemctl stop actions.runner.org-repo.r1.service"


def test_github_runner_without_units_does_nothing(env):
    proc = run("github_runner", env)
    assert proc.returncode == 0
    assert not any("stop" in call for call in calls(env))


def test_kubectl_cordons_and_drains_this_node_within_the_deadline(env, tmp_path):
    proc = run("kubectl_drain", env, PS_KUBECONFIG="/etc/kubernetes/kubelet.conf")
    assert proc.returncode == 0, proc.stderr
    cordon, drain = calls(env)
    assert cordon == "kubectl cordon ip-10-0-0-7.ec2.internal"
    assert drain.startswith("kubectl drain ip-10-0-0-7.ec2.internal --ignore-daemonsets --delete-emptydir-data --force")
    timeout = int(drain.rsplit("--timeout=", 1)[1].rstrip("s"))
    assert 50 <= timeout <= 57  # hook timeout 60 s less the 3 s margin


def test_kubectl_failing_cordon_fails_the_hook(env):
    proc = run("kubectl_drain", env, FAKE_KUBECTL_RC="1", PS_NODE_NAME="node-a")
    assert proc.returncode == 1
    assert calls(env) == ["kubectl cordon node-a"]


def test_elb_deregister_calls_every_target_group(env):
    prefix = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup"
    arns = f"{prefix}/a/1 {prefix}/b/2"
    proc = run("elb_deregister", env, PS_TARGET_GROUP_ARNS=arns, PS_TARGET_PORT="8080", PS_AWS_REGION="eu-west-1")
    assert proc.returncode == 0, proc.stderr
    assert calls(env) == [
        f"aws --region eu-west-1 elbv2 deregister-targets --target-group-arn {arn} --targets Id={INSTANCE},Port=8080"
        for arn in arns.split()
    ]


def test_elb_deregister_reports_failure_and_needs_arns(env):
    proc = run("elb_deregister", env, PS_TARGET_GROUP_ARNS="arn:x", FAKE_AWS_RC="255")
    assert proc.returncode == 1
    assert calls(env) == [f"aws elbv2 deregister-targets --target-group-arn arn:x --targets Id={INSTANCE}"]
    os.unlink(env["FAKE_LOG"])
    proc = run("elb_deregister", env)
    assert proc.returncode == 2 and "PS_TARGET_GROUP_ARNS" in proc.stderr
    assert calls(env) == []


def test_aws_hooks_without_the_cli_say_so(env, tmp_path):
    os.unlink(tmp_path / "bin" / "aws")
    for hook in ("elb_deregister", "tag_instance", "eip_handoff", "rebalance_tag"):
        proc = run(hook, env, PS_TARGET_GROUP_ARNS="arn:x", PS_EIP_ALLOCATION_ID="eipalloc-1")
        assert proc.returncode == 127 and "aws not found" in proc.stderr


def test_eip_moves_to_standby_only_when_held_here(env):
    describe = f"{INSTANCE}\teipassoc-1"
    proc = run(
        "eip_handoff",
        env,
        PS_EIP_ALLOCATION_ID="eipalloc-1",
        PS_EIP_STANDBY_INSTANCE_ID="i-standby",
        FAKE_AWS_DESCRIBE=describe,
    )
    assert proc.returncode == 0, proc.stderr
    assert calls(env)[1] == (
        "aws ec2 associate-address --allocation-id eipalloc-1 --instance-id i-standby --allow-reassociation"
    )
    os.unlink(env["FAKE_LOG"])
    proc = run("eip_handoff", env, PS_EIP_ALLOCATION_ID="eipalloc-1", FAKE_AWS_DESCRIBE=describe)
    assert calls(env)[1] == "aws ec2 disassociate-address --association-id eipassoc-1"
    os.unlink(env["FAKE_LOG"])
    proc = run(
        "eip_handoff",
        env,
        PS_EIP_ALLOCATION_ID="eipalloc-1",
        PS_EIP_STANDBY_INSTANCE_ID="i-standby",
        FAKE_AWS_DESCRIBE="i-other\teipassoc-9",
    )
    assert proc.returncode == 0
    assert len(calls(env)) == 1 and "describe-addresses --allocation-ids eipalloc-1" in calls(env)[0]


def test_fs_sync_syncs(env):
    proc = run("fs_sync", env)
    assert proc.returncode == 0
    assert calls(env) == ["sync "]


def test_tag_instance_tags_with_the_notice_time(env):
    proc = run("tag_instance", env)
    assert proc.returncode == 0, proc.stderr
    assert calls(env) == [
        f"aws ec2 create-tags --resources {INSTANCE} --tags Key=parkingspot:interrupted,Value=2026-01-01T10:02:00Z"
    ]


def test_rebalance_tag_marks_the_instance_for_replacement(env):
    proc = run("rebalance_tag", env, PARKINGSPOT_ACTION="rebalance", PS_AWS_REGION="eu-west-1")
    assert proc.returncode == 0, proc.stderr
    assert calls(env) == [
        f"aws --region eu-west-1 ec2 create-tags --resources {INSTANCE} "
        "--tags Key=parkingspot:rebalance,Value=2026-01-01T10:02:00Z"
    ]


def test_rebalance_tag_leaves_other_notices_alone(env):
    proc = run("rebalance_tag", env, PARKINGSPOT_ACTION="terminate")
    assert proc.returncode == 0 and calls(env) == []


def test_tag_instance_needs_the_instance_id(env):
    proc = run("tag_instance", env, PARKINGSPOT_INSTANCE_ID="")
    assert proc.returncode == 2 and calls(env) == []


def test_shell_hooks_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian package shellcheck)")
    scripts = sorted(glob.glob(os.path.join(BUILTIN, "*.sh")))
    assert len(scripts) == 15
    argv = [shellcheck, "-s", "sh", "-x", "-P", "SCRIPTDIR"] + scripts
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------------------- undo scripts (PARKINGSPOT_LIFECYCLE)


@pytest.mark.parametrize(
    "hook,extra,expected",
    [
        ("gitlab_runner", {}, ["systemctl start gitlab-runner"]),
        ("buildkite_agent", {"PS_BUILDKITE_AGENT_UNIT": "bk"}, ["systemctl start bk"]),
        (
            "github_runner",
            {"PS_GITHUB_RUNNER_UNIT": "actions.runner.a actions.runner.b"},
            [
                "systemctl start actions.runner.a",
                "systemctl start actions.runner.b",
            ],
        ),
        ("github_runner", {}, []),
        ("kubectl_drain", {"PS_NODE_NAME": "node-a"}, ["kubectl uncordon node-a"]),
        (
            "elb_deregister",
            {"PS_TARGET_GROUP_ARNS": "arn:x", "PS_TARGET_PORT": "80"},
            [f"aws elbv2 register-targets --target-group-arn arn:x --targets Id={INSTANCE},Port=80"],
        ),
        ("eip_handoff", {"PS_EIP_ALLOCATION_ID": "eipalloc-1"}, []),
        ("tag_instance", {}, []),
        ("fs_sync", {}, []),
    ],
)
@pytest.mark.parametrize("lifecycle", ["withdrawn", "completed"])
def test_undo_puts_back_what_the_hook_did_and_others_do_nothing(env, hook, extra, expected, lifecycle):
    proc = run(hook, env, PARKINGSPOT_LIFECYCLE=lifecycle, **extra)
    assert proc.returncode == 0, proc.stderr
    assert calls(env) == expected


def test_hooks_run_normally_while_draining(env):
    proc = run("kubectl_drain", env, PARKINGSPOT_LIFECYCLE="draining", PS_NODE_NAME="node-a")
    assert proc.returncode == 0
    assert calls(env)[0] == "kubectl cordon node-a"


# ---------------------------------------------------------------- webhook


class _Receiver:
    """Records POSTs; answers with the next status of a list (the last one repeats)."""

    def __init__(self, statuses=(204,)):
        import threading
        from http.server import BaseHTTPRequestHandler
        from http.server import ThreadingHTTPServer

        self.requests, self.statuses = [], list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"line": self.requestline, "headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=(204,)):
        made.append(_Receiver(statuses))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def notice_env(env):
    import sys

    return dict(
        env,
        PS_PYTHON=sys.executable,
        PS_RETRIES="3",
        PARKINGSPOT_EVENT="interruption",
        PARKINGSPOT_EVENTS="interruption,lifecycle",
        PARKINGSPOT_ACTION="stop",
        PARKINGSPOT_PHASE="drain",
        PARKINGSPOT_LIFECYCLE="draining",
        PARKINGSPOT_DEADLINE_TIME="2026-01-01T10:01:50Z",
        PARKINGSPOT_INSTANCE_TYPE="m5.large",
        PARKINGSPOT_AVAILABILITY_ZONE="eu-west-1a",
        PARKINGSPOT_REGION="eu-west-1",
        PARKINGSPOT_PRIVATE_IP="10.0.0.7",
    )


def test_webhook_default_body_is_slack_compatible_and_complete(notice_env, receiver):
    hook = receiver()
    proc = run("webhook", notice_env, PS_URL=hook.base + "/services/T000/B000/secret")
    assert proc.returncode == 0, proc.stderr
    (request,) = hook.requests
    assert request["line"].startswith("POST /services/T000/B000/secret ")
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body["text"].startswith(f"{INSTANCE} (m5.large eu-west-1a 10.0.0.7): interruption notice, action stop")
    expected = {
        "instance_id": INSTANCE,
        "instance_type": "m5.large",
        "zone": "eu-west-1a",
        "region": "eu-west-1",
        "private_ip": "10.0.0.7",
        "event": "interruption",
        "action": "stop",
        "deadline": "2026-01-01T10:01:50Z",
        "notice_time": "2026-01-01T10:02:00Z",
    }
    assert {k: body[k] for k in expected} == expected
    assert "secret" not in proc.stderr  # the URL is never logged


def test_webhook_template_headers_file_and_undo(notice_env, receiver, tmp_path):
    hook = receiver()
    headers_file = tmp_path / "headers"
    headers_file.write_text("Authorization: Bearer s3cr3t\n")
    url_file = tmp_path / "url"
    url_file.write_text(hook.base + "/notify\n")
    template = json.dumps({"summary": '${instance_id} ${action} "${lifecycle}"', "tags": ["${region}"], "n": 1})
    proc = run(
        "webhook",
        notice_env,
        PS_URL_FILE=str(url_file),
        PS_TEMPLATE=template,
        PS_HEADERS=json.dumps({"X-Team": "ci"}),
        PS_HEADERS_FILE=str(headers_file),
        PARKINGSPOT_LIFECYCLE="withdrawn",
    )
    assert proc.returncode == 0, proc.stderr
    (request,) = hook.requests
    assert json.loads(request["body"]) == {"summary": f'{INSTANCE} stop "withdrawn"', "tags": ["eu-west-1"], "n": 1}
    assert request["headers"]["Authorization"] == "Bearer s3cr3t" and request["headers"]["X-Team"] == "ci"
    assert "s3cr3t" not in proc.stderr


def test_webhook_goes_through_the_proxy(notice_env, receiver):
    proxy = receiver()
    proc = run("webhook", notice_env, PS_URL="http://hooks.example.invalid/x", PS_PROXY=proxy.base)
    assert proc.returncode == 0, proc.stderr
    (request,) = proxy.requests
    assert request["line"].startswith("POST http://hooks.example.invalid/x ")


def test_webhook_retries_server_errors_but_not_client_errors(notice_env, receiver):
    flaky = receiver([500, 502, 200])
    proc = run("webhook", notice_env, PS_URL=flaky.base + "/x")
    assert proc.returncode == 0, proc.stderr
    assert len(flaky.requests) == 3
    refused = receiver([403])
    proc = run("webhook", notice_env, PS_URL=refused.base + "/x")
    assert proc.returncode == 1 and len(refused.requests) == 1


def test_webhook_needs_a_url(notice_env):
    proc = run("webhook", notice_env)
    assert proc.returncode == 2 and "PS_URL" in proc.stderr
