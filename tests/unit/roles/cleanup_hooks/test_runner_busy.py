# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""runner_busy.sh and the GitHub job hooks with a fake aws and a fake IMDSv2 curl on PATH."""

import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "roles", "cleanup_hooks", "files", "builtin"))
INSTANCE = "i-0fedcba9876543210"

FAKE_AWS = """#!/bin/sh
echo "aws $*" >> "$FAKE_LOG"
exit "${FAKE_AWS_RC:-0}"
"""
# IMDSv2: the token PUT must carry a TTL; the instance id needs the token.
FAKE_CURL = """#!/bin/sh
echo "curl $*" >> "$FAKE_LOG"
case "$*" in
  *"-X PUT"*ttl-seconds*api/token*) printf 'TOKEN42' ;;
  *"X-aws-ec2-metadata-token: TOKEN42"*instance-id*) printf '%s' "$FAKE_INSTANCE" ;;
  *) exit 22 ;;
esac
"""


@pytest.fixture
def env(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name, body in (("aws", FAKE_AWS), ("curl", FAKE_CURL)):
        (fakebin / name).write_text(body)
        (fakebin / name).chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("date", "dirname", "sh", "printf", "cat"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, tools / tool)
    return {"PATH": f"{fakebin}:{tools}", "FAKE_LOG": str(tmp_path / "calls.log"), "FAKE_INSTANCE": INSTANCE}


def run(script, env, *args, **extra):
    return subprocess.run(
        [os.path.join(BUILTIN, script + ".sh"), *args],
        env=dict(env, **extra),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def aws_calls(env):
    if not os.path.exists(env["FAKE_LOG"]):
        return []
    with open(env["FAKE_LOG"]) as handle:
        return [line.strip() for line in handle if line.startswith("aws ")]


def test_busy_tags_the_instance_from_imds(env):
    proc = run("runner_busy", env, "busy")
    assert proc.returncode == 0, proc.stderr
    assert aws_calls(env) == [f"aws ec2 create-tags --resources {INSTANCE} --tags Key=parkingspot:busy,Value=true"]


def test_idle_tags_busy_false_and_idle_since(env):
    proc = run("runner_busy", env, "idle", PARKINGSPOT_INSTANCE_ID="i-0000000000000aaaa", PS_AWS_REGION="eu-west-1")
    assert proc.returncode == 0, proc.stderr
    (call,) = aws_calls(env)
    assert re.fullmatch(
        r"aws --region eu-west-1 ec2 create-tags --resources i-0000000000000aaaa --tags "
        r"Key=parkingspot:busy,Value=false Key=parkingspot:idle-since,Value=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        call,
    )


@pytest.mark.parametrize("script, state", [("github_job_started", "true"), ("github_job_completed", "false")])
def test_github_job_hooks_name_the_state(env, script, state):
    proc = run(script, env)
    assert proc.returncode == 0, proc.stderr
    assert f"Key=parkingspot:busy,Value={state}" in aws_calls(env)[0]


def test_failures_never_fail_the_job(env):
    assert run("runner_busy", env, "busy", FAKE_AWS_RC="255").returncode == 0
    proc = run("runner_busy", env, "busy", FAKE_INSTANCE="")
    assert proc.returncode == 0 and "no instance id" in proc.stderr
    assert len(aws_calls(env)) == 1  # nothing tagged without an instance id
    proc = run("runner_busy", env, "sideways")
    assert proc.returncode == 0 and "usage" in proc.stderr
