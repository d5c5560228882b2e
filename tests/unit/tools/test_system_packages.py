# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/system-packages: installs what is missing, or fails at once naming it and the command.

The script runs from a copy beside its own package list, with a PATH of fakes only: dpkg-query
answers from a set of "installed" packages, id says who we are, apt-get and sudo record their
arguments in a log file.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tools" / "system-packages"


def _fake(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def box(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(SCRIPT, tools / "system-packages")
    (tools / "system-packages.txt").write_text(
        "# test list\nalpha   # the first\nbeta\n\ngamma delta # two on a line\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("awk", "dirname", "env", "sh", "true"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    log = tmp_path / "log"
    installed = tmp_path / "installed"
    installed.write_text("alpha\n")
    _fake(
        bin_dir / "dpkg-query",
        'for last; do :; done\nif grep -qx "$last" %s; then printf "install ok installed"; else exit 1; fi\n'
        % installed,
    )
    os.symlink(shutil.which("grep"), bin_dir / "grep")
    _fake(bin_dir / "apt-get", 'echo "apt-get $*" >> %s\n' % log)

    def run(*args, uid=1000, sudo=None):
        _fake(bin_dir / "id", "echo %d\n" % uid)
        if sudo is not None:
            _fake(
                bin_dir / "sudo", 'if [ "$1" = -n ]; then shift; [ %d = 0 ] || exit 1; fi\n"$@"\n' % (0 if sudo else 1)
            )
        elif (bin_dir / "sudo").exists():
            (bin_dir / "sudo").unlink()
        started = time.monotonic()
        proc = subprocess.run(
            ["sh", str(tools / "system-packages"), *args],
            env={"PATH": str(bin_dir)},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        proc.seconds = time.monotonic() - started
        proc.installs = log.read_text().splitlines() if log.exists() else []
        return proc

    run.installed = installed
    return run


def test_nothing_missing_is_silent_and_installs_nothing(box):
    box.installed.write_text("alpha\nbeta\ngamma\ndelta\n")
    proc = box()
    assert proc.returncode == 0 and proc.stderr == "" and proc.installs == []


def test_not_root_without_sudo_fails_fast_naming_the_packages_and_the_command(box):
    proc = box(uid=1000)
    assert proc.returncode == 2
    assert "missing: beta gamma delta" in proc.stderr
    assert "apt-get install -y --no-install-recommends beta gamma delta" in proc.stderr
    assert proc.installs == [] and proc.seconds < 5


def test_root_installs_only_the_missing_packages(box):
    proc = box(uid=0)
    assert proc.returncode == 0, proc.stderr
    assert proc.installs == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends beta gamma delta"]


def test_not_root_uses_sudo_when_it_needs_no_password(box):
    proc = box(uid=1000, sudo=True)
    assert proc.returncode == 0, proc.stderr
    assert "with sudo" in proc.stderr
    assert proc.installs[-1] == "apt-get install -y -qq --no-install-recommends beta gamma delta"


def test_sudo_that_wants_a_password_without_a_terminal_fails_with_the_command(box):
    proc = box(uid=1000, sudo=False)
    assert proc.returncode == 2 and proc.installs == []
    assert "as root run: apt-get update && apt-get install -y --no-install-recommends beta gamma delta" in proc.stderr


def test_check_only_reports(box):
    proc = box("--check", uid=0)
    assert proc.returncode == 1 and proc.installs == []
    assert "missing: beta gamma delta" in proc.stderr
