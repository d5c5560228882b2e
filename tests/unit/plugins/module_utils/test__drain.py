# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain runner with real processes: a recording command, a failing one, a hanging one, fake kubectl."""

import stat
import sys

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _drain

INSTANCE = {"instance_id": "i-0abc", "private_dns_name": "ip-10-0-0-5.ec2.internal"}


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!%s\n%s\n" % (sys.executable, body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_command_gets_placeholders_and_environment(tmp_path):
    record = tmp_path / "record"
    cmd = script(
        tmp_path,
        "drain",
        "import os, sys\nopen(%r, 'w').write(' '.join(sys.argv[1:]) + '|' + os.environ['PARKINGSPOT_INSTANCE_ID'])"
        % str(record),
    )
    (outcome,) = _drain.run_drains({"command": "%s {instance_id} {private_dns_name}" % cmd, "timeout": 10}, [INSTANCE])
    assert outcome["status"] == "drained"
    assert record.read_text() == "i-0abc ip-10-0-0-5.ec2.internal|i-0abc"


def test_failing_and_hanging_commands_are_reported(tmp_path):
    failing = script(tmp_path, "fail", "import sys\nprint('runner busy')\nsys.exit(3)")
    (failed,) = _drain.run_drains({"command": str(failing), "timeout": 10}, [INSTANCE])
    assert failed["status"] == "failed"
    assert "exited 3" in failed["detail"] and "runner busy" in failed["detail"]

    hanging = script(tmp_path, "hang", "import time\ntime.sleep(30)")
    (slow,) = _drain.run_drains({"command": str(hanging), "timeout": 0.5}, [INSTANCE])
    assert slow["status"] == "timeout"


def test_missing_command_is_a_failure_not_a_crash(tmp_path):
    (outcome,) = _drain.run_drains({"command": str(tmp_path / "nope"), "timeout": 5}, [INSTANCE])
    assert outcome["status"] == "failed"


def test_kubectl_cordons_then_drains_the_node(tmp_path):
    log = tmp_path / "kubectl.log"
    script(tmp_path, "kubectl", "import sys\nopen(%r, 'a').write(' '.join(sys.argv[1:]) + '\\n')" % str(log))
    drain = {"kubectl": True, "kubectl_path": str(tmp_path / "kubectl"), "timeout": 60}
    outcomes = _drain.run_drains(drain, [INSTANCE, {"instance_id": "i-0def", "private_dns_name": "ip-10-0-0-6"}])
    assert [o["status"] for o in outcomes] == ["drained", "drained"]
    lines = sorted(log.read_text().splitlines())
    assert "cordon ip-10-0-0-5.ec2.internal" in lines
    assert "drain ip-10-0-0-5.ec2.internal --ignore-daemonsets --delete-emptydir-data --timeout=60s" in lines
    assert len(lines) == 4


def test_no_drain_configured_skips():
    assert _drain.run_drains(None, [INSTANCE]) == [
        {"instance_id": "i-0abc", "status": "skipped", "detail": "no drain configured"}
    ]


@pytest.mark.parametrize(
    "command, argv",
    [
        ("pause {instance_id}", ["pause", "i-0abc"]),
        ("echo ${HOME} $PATH {pool}", ["echo", "${HOME}", "$PATH", "{pool}"]),
        (
            "kubectl get node {private_dns_name} -o jsonpath='{.status.phase}'",
            ["kubectl", "get", "node", "ip-10-0-0-5.ec2.internal", "-o", "jsonpath={.status.phase}"],
        ),
        ('sh -c "echo {instance_id} {{x}} }{"', ["sh", "-c", "echo i-0abc {{x}} }{"]),
        ("run --id={instance_id}/{instance_id}", ["run", "--id=i-0abc/i-0abc"]),
    ],
)
def test_only_the_documented_placeholders_change(command, argv):
    assert _drain.drain_argv({"command": command}, INSTANCE) == [argv]


def test_values_are_never_split_or_interpreted():
    instance = {"instance_id": "i-1", "private_dns_name": "a b'c {instance_id}"}
    assert _drain.drain_argv({"command": "x {private_dns_name}"}, instance) == [["x", "a b'c {instance_id}"]]


@pytest.mark.parametrize("command", ["echo 'unbalanced {instance_id}", 'echo "x', "   ", "a\\"])
def test_bad_templates_are_refused_before_any_run(command):
    if not command.strip():
        with pytest.raises(_drain.DrainCommandError, match="drain.command: is empty"):
            _drain.check_command({"command": command})
        return
    with pytest.raises(_drain.DrainCommandError, match="^drain.command: cannot be split"):
        _drain.check_command({"command": command})


def test_check_command_renders_a_sample():
    assert _drain.check_command({"command": "pause {instance_id}"}) == ["pause", "i-0123456789abcdef0"]
    assert _drain.check_command({}) is None
    assert _drain.check_command({"kubectl": True}) is None
