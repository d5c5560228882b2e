# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cleanup_hooks role on localhost with its directories under a temporary path.

Check mode writes nothing and predicts the real run; a configured host converges in check mode
with nothing to change; the hooks directory follows the watcher's published fact, then the shared
parkingspot_hooks_dir; bad input is refused by the argument spec before anything is written.
(The role on a booted systemd host, with the watcher: tests/roles/.)
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTION = Path(os.path.abspath(__file__)).parents[4]


def _ansible_playbook():
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


pytestmark = pytest.mark.skipif(
    _ansible_playbook() is None or os.geteuid() != 0,
    reason="needs ansible-playbook and root (the role sets owner root on the files it writes)",
)


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    if COLLECTION.parent.name == "parkingspot" and COLLECTION.parents[1].name == "ansible_collections":
        return str(COLLECTION.parents[2])
    base = tmp_path_factory.mktemp("collections")
    (base / "ansible_collections" / "parkingspot").mkdir(parents=True)
    (base / "ansible_collections" / "parkingspot" / "ec2").symlink_to(COLLECTION)
    return str(base)


@pytest.fixture
def play(tmp_path, collections_path):
    def run(check=False, pre_facts=None, **role_vars):
        role_vars.setdefault("cleanup_hooks_lib_dir", str(tmp_path / "lib"))
        tasks = []
        if pre_facts:
            tasks.append({"name": "Facts an earlier role left", "ansible.builtin.set_fact": pre_facts})
        tasks.append(
            {"name": "Run the role", "ansible.builtin.include_role": {"name": "parkingspot.ec2.cleanup_hooks"}}
        )
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            json.dumps(
                [
                    {
                        "hosts": "localhost",
                        "connection": "local",
                        "gather_facts": False,
                        "vars": role_vars,
                        "tasks": tasks,
                    }
                ]
            )
        )
        argv = [
            _ansible_playbook(),
            "-i",
            "localhost,",
            "-e",
            "ansible_python_interpreter=" + sys.executable,
            str(playbook),
        ] + (["--check", "--diff"] if check else [])
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_STDOUT_CALLBACK="default")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
        out = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", out)
        return proc.returncode, int(recap.group(1)) if recap else None, out

    return run


HOOKS = [
    {"name": "record", "order": 10, "timeout": 5, "content": "#!/bin/sh\necho hi\n"},
    {"name": "fs-sync", "order": 90, "builtin": "fs_sync"},
]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")) if Path(root).exists() else []


def test_check_mode_on_a_fresh_host_writes_nothing_then_a_configured_host_has_nothing_to_change(play, tmp_path):
    hooks = tmp_path / "hooks"
    rc, changed, out = play(check=True, cleanup_hooks_dir=str(hooks), cleanup_hooks_list=HOOKS)
    assert rc == 0, out
    assert changed > 0 and "90-fs-sync" in out
    assert not hooks.exists() and not (tmp_path / "lib").exists()

    rc, _changed, out = play(cleanup_hooks_dir=str(hooks), cleanup_hooks_list=HOOKS)
    assert rc == 0, out
    assert {"10-record", "10-record.timeout", "90-fs-sync", "90-fs-sync.timeout"} <= set(_tree(hooks))

    rc, changed, out = play(check=True, cleanup_hooks_dir=str(hooks), cleanup_hooks_list=HOOKS)
    assert rc == 0 and changed == 0, out


def test_hooks_go_where_the_watcher_reads_then_to_the_shared_directory(play, tmp_path):
    watcher_dir, shared_dir = tmp_path / "watcher", tmp_path / "shared"
    rc, _changed, out = play(
        pre_facts={"termination_watcher_published_hooks_dir": str(watcher_dir)},
        parkingspot_hooks_dir=str(shared_dir),
        cleanup_hooks_list=HOOKS[:1],
    )
    assert rc == 0, out
    assert "10-record" in _tree(watcher_dir) and not shared_dir.exists()

    rc, _changed, out = play(parkingspot_hooks_dir=str(shared_dir), cleanup_hooks_list=HOOKS[:1])
    assert rc == 0, out
    assert "10-record" in _tree(shared_dir)


@pytest.mark.parametrize(
    "hook, message",
    [
        ({"name": "two", "builtin": "fs_sync", "content": "x"}, "mutually exclusive: builtin|script|template|content"),
        ({"name": "none"}, "state is present but any of the following are missing: builtin, script, template, content"),
        ({"name": "x", "builtin": "fs_sync", "phase": "later"}, "value of phase must be one of"),
        ({"name": "a b", "builtin": "fs_sync"}, "cleanup_hooks_list item a b: needs a name"),
        ({"name": "lb", "builtin": "elb_deregister"}, "elb_deregister needs settings.target_group_arns"),
    ],
)
def test_bad_hooks_are_refused_naming_the_option_before_anything_is_written(play, tmp_path, hook, message):
    hooks = tmp_path / "hooks"
    rc, _changed, out = play(cleanup_hooks_dir=str(hooks), cleanup_hooks_list=[hook])
    assert rc != 0
    assert message in out and "cleanup_hooks_list" in out
    assert not hooks.exists() and not (tmp_path / "lib").exists()
