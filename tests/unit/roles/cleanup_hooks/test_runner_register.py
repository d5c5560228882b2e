# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""runner_register.sh with fake aws, curl, runuser, config.sh/run.sh, gitlab-runner, systemctl and
shutdown on PATH: what each is asked, and that the secret never reaches the output or argv."""

import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "..", "roles", "cleanup_hooks", "files", "builtin", "runner_register.sh")
)
INSTANCE = "i-0abc0abc0abc0abc0"
SECRET = "ghp_SECRETsecretSECRET"

FAKES = {
    # ssm get-parameter prints the secret; create-tags is logged.
    "aws": 'echo "aws $*" >> "$FAKE_LOG"; case "$*" in *get-parameter*) printf "%s\\n" "$FAKE_SECRET";; '
    '*describe-tags*) printf "%s\\n" "${FAKE_LANE:-None}";; esac',
    # The registration-token POST reads its Authorization header from stdin.
    "curl": (
        'echo "curl $*" >> "$FAKE_LOG"; [ -n "${FAKE_CURL_FAIL:-}" ] && exit 22; case "$*" in *registration-token*) '
        'cat > "$FAKE_STATE/curl-stdin"; printf \'{"token": "REG123", "expires_at": "x"}\';; '
        '*generate-jitconfig*) cat > "$FAKE_STATE/curl-stdin"; '
        'printf \'{"runner": {"id": 23, "name": "r"}, "encoded_jit_config": "eyJKSVQiOjF9=="}\';; *) exit 22;; esac'
    ),
    "runuser": 'echo "runuser $*" >> "$FAKE_LOG"; while [ "$1" != "--" ]; do shift; done; shift; exec "$@"',
    "gitlab-runner": (
        'echo "gitlab-runner $* CI_SERVER_TOKEN=${CI_SERVER_TOKEN:-} RT=${REGISTRATION_TOKEN:-}" >> "$FAKE_LOG"'
    ),
    "systemctl": 'echo "systemctl $*" >> "$FAKE_LOG"',
    "shutdown": 'echo "shutdown $*" >> "$FAKE_LOG"',
}


@pytest.fixture
def env(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name, body in FAKES.items():
        (fakebin / name).write_text("#!/bin/sh\n" + body + "\n")
        (fakebin / name).chmod(0o755)
    runner = tmp_path / "runner"
    runner.mkdir()
    for name in ("config.sh", "run.sh"):
        (runner / name).write_text('#!/bin/sh\necho "%s $*" >> "$FAKE_LOG"\n' % name)
        (runner / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("date", "dirname", "sh", "printf", "cat", "sed"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, tools / tool)
    return {
        "PATH": f"{fakebin}:{tools}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(state),
        "FAKE_SECRET": SECRET,
        "PARKINGSPOT_INSTANCE_ID": INSTANCE,
        "PS_TOKEN_PARAMETER": "/ci/github-token",
        "PS_RUNNER_LABELS": "self-hosted,linux,x64",
        "PS_RUNNER_DIR": str(runner),
    }


def run(env, kind, **extra):
    return subprocess.run(
        [SCRIPT, kind], env=dict(env, **extra), capture_output=True, text=True, timeout=30, check=False
    )


def calls(env):
    if not os.path.exists(env["FAKE_LOG"]):
        return []
    with open(env["FAKE_LOG"]) as handle:
        return [line.rstrip("\n") for line in handle]


def test_github_registers_an_ephemeral_runner_with_the_pool_labels(env):
    proc = run(env, "github", PS_GITHUB_URL="https://github.com/example/app/", PS_SHUTDOWN_AFTER_JOB="true")
    assert proc.returncode == 0, proc.stderr
    log = calls(env)
    assert (
        log[0]
        == "aws ssm get-parameter --name /ci/github-token --with-decryption --query Parameter.Value --output text"
    )
    assert "https://api.github.com/repos/example/app/actions/runners/registration-token" in log[1]
    config = next(line for line in log if line.startswith("config.sh"))
    assert config == (
        f"config.sh --unattended --url https://github.com/example/app --token REG123 --name {INSTANCE} "
        "--labels self-hosted,linux,x64 --ephemeral --disableupdate --replace"
    )
    assert any(line.startswith("run.sh") for line in log)
    assert "Key=parkingspot:busy,Value=false" in next(line for line in log if "create-tags" in line)
    assert log[-1] == "shutdown -h now"
    # The secret went to curl on stdin only: not in any argv, not in the output.
    with open(os.path.join(env["FAKE_STATE"], "curl-stdin")) as handle:
        assert handle.read() == f"Authorization: Bearer {SECRET}\n"
    assert all(SECRET not in line for line in log)
    assert SECRET not in proc.stderr + proc.stdout
    with open(os.path.join(env["PS_RUNNER_DIR"], ".env")) as handle:
        assert "ACTIONS_RUNNER_HOOK_JOB_STARTED=" in handle.read()


def test_github_organisation_url(env):
    assert run(env, "github", PS_GITHUB_URL="https://github.com/example").returncode == 0
    assert "/orgs/example/actions/runners/registration-token" in calls(env)[1]
    assert not any(line.startswith("shutdown") for line in calls(env))


def test_gitlab_authentication_token_goes_in_the_environment(env):
    proc = run(env, "gitlab", PS_GITLAB_URL="https://gitlab.example.com", FAKE_SECRET="glrt-abc")
    assert proc.returncode == 0, proc.stderr
    register = next(line for line in calls(env) if line.startswith("gitlab-runner"))
    assert register.startswith(
        f"gitlab-runner register --non-interactive --url https://gitlab.example.com --name {INSTANCE} --executor shell"
    )
    assert "--pre-build-script" in register and "runner_busy.sh busy" in register
    assert register.endswith("CI_SERVER_TOKEN=glrt-abc RT=")
    assert "--tag-list" not in register  # tags live on the runner in GitLab with these tokens
    assert calls(env)[-1] == "systemctl start gitlab-runner"


def test_gitlab_legacy_registration_token_sets_the_tags(env):
    proc = run(env, "gitlab", PS_GITLAB_URL="https://gitlab.example.com", PS_GITLAB_EXECUTOR="docker")
    assert proc.returncode == 0, proc.stderr
    register = next(line for line in calls(env) if line.startswith("gitlab-runner"))
    assert "--tag-list self-hosted,linux,x64" in register and "--pre-build-script" not in register
    assert register.endswith(f"RT={SECRET}")


@pytest.mark.parametrize(
    "kind, extra, message",
    [
        ("svn", {}, "usage"),
        ("github", {"PS_TOKEN_PARAMETER": ""}, "PS_TOKEN_PARAMETER is required"),
        ("github", {}, "PS_GITHUB_URL is required"),
        ("gitlab", {}, "PS_GITLAB_URL is required"),
        ("github", {"PS_GITHUB_URL": "https://github.com/x", "FAKE_SECRET": ""}, "could not read the SSM parameter"),
    ],
)
def test_missing_settings_are_named(env, kind, extra, message):
    proc = run(env, kind, **extra)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not any(line.startswith(("config.sh", "gitlab-runner")) for line in calls(env))


def test_github_refusal_stops_before_config(env):
    proc = run(env, "github", PS_GITHUB_URL="https://github.com/x", FAKE_CURL_FAIL="1")
    assert proc.returncode == 1
    assert "GitHub refused a registration token for orgs/x" in proc.stderr
    assert not any(line.startswith(("config.sh", "run.sh")) for line in calls(env))
    assert SECRET not in proc.stderr


@pytest.mark.parametrize("lane, expected", [("on-demand", "self-hosted,linux,x64,on-demand,retry"), ("None", None)])
def test_runners_in_the_on_demand_lane_get_its_labels(env, lane, expected):
    proc = run(
        env, "github", PS_GITHUB_URL="https://github.com/example", PS_ON_DEMAND_LABELS="on-demand,retry", FAKE_LANE=lane
    )
    assert proc.returncode == 0, proc.stderr
    log = calls(env)
    assert any("describe-tags" in line and f"Name=resource-id,Values={INSTANCE}" in line for line in log)
    config = next(line for line in log if line.startswith("config.sh"))
    assert f"--labels {expected or 'self-hosted,linux,x64'} --ephemeral" in config


def test_gitlab_legacy_registration_gets_the_lane_tags(env):
    proc = run(
        env,
        "gitlab",
        PS_GITLAB_URL="https://gitlab.example.com",
        PS_ON_DEMAND_LABELS="on-demand",
        FAKE_LANE="on-demand",
        FAKE_SECRET="legacy-registration",
    )
    assert proc.returncode == 0, proc.stderr
    register = next(line for line in calls(env) if line.startswith("gitlab-runner register"))
    assert "--tag-list self-hosted,linux,x64,on-demand " in register


def test_github_jit_runner_starts_from_a_one_use_configuration(env):
    proc = run(env, "github", PS_GITHUB_URL="https://github.com/example/app", PS_GITHUB_JIT="true")
    assert proc.returncode == 0, proc.stderr
    log = calls(env)
    post = next(line for line in log if line.startswith("curl"))
    assert post.endswith("https://api.github.com/repos/example/app/actions/runners/generate-jitconfig")
    body = post.split("--data ", 1)[1].split(" https://", 1)[0]
    assert json.loads(body) == {
        "name": INSTANCE,
        "runner_group_id": 1,
        "labels": ["self-hosted", "linux", "x64"],
        "work_folder": "_work",
    }
    assert not any(line.startswith("config.sh") for line in log)
    assert "run.sh --jitconfig eyJKSVQiOjF9==" in log
    assert "Key=parkingspot:busy,Value=false" in next(line for line in log if "create-tags" in line)
    with open(os.path.join(env["FAKE_STATE"], "curl-stdin")) as handle:
        assert handle.read() == f"Authorization: Bearer {SECRET}\n"
    assert all(SECRET not in line for line in log)
    assert SECRET not in proc.stderr + proc.stdout and "eyJKSVQiOjF9" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"PS_RUNNER_LABELS": ""}, "PS_RUNNER_LABELS: a JIT runner needs"),
        ({"PS_RUNNER_LABELS": 'linux,"x"'}, "PS_RUNNER_LABELS: a JIT runner needs"),
        ({"PS_RUNNER_LABELS": "linux,,x64"}, "PS_RUNNER_LABELS: a JIT runner needs"),
        ({"PS_RUNNER_GROUP_ID": "1;x"}, "PS_RUNNER_GROUP_ID must be a number"),
    ],
)
def test_github_jit_refuses_labels_it_cannot_send_before_asking_github(env, extra, message):
    proc = run(env, "github", PS_GITHUB_URL="https://github.com/example", PS_GITHUB_JIT="true", **extra)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not any(line.startswith(("curl", "run.sh")) for line in calls(env))


def test_github_jit_refusal_starts_nothing(env):
    proc = run(env, "github", PS_GITHUB_URL="https://github.com/x", PS_GITHUB_JIT="true", FAKE_CURL_FAIL="1")
    assert proc.returncode == 1
    assert "GitHub refused a JIT runner configuration for orgs/x" in proc.stderr
    assert not any(line.startswith(("config.sh", "run.sh")) for line in calls(env))
