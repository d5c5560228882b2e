"""shellcheck -s sh over the init shim and the shell scripts that test it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(os.path.abspath(__file__)).parent
COLLECTION = HERE.parents[3]
SCRIPTS = [
    COLLECTION / "roles" / "root_pivot" / "files" / "parkingspot-root-pivot",
    HERE / "shim_harness.sh",
    COLLECTION / "tests" / "boot" / "run.sh",
]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt: shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    proc = subprocess.run(
        ["shellcheck", "-s", "sh", "-S", "style", str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shim_is_posix_sh_without_set_e():
    text = SCRIPTS[0].read_text()
    assert text.startswith("#!/bin/sh\n")
    code = [line.split("#", 1)[0] for line in text.splitlines()[1:]]
    assert not any("set -e" in line for line in code)
    assert os.access(SCRIPTS[0], os.X_OK)
