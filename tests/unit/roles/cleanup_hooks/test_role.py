# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cleanup_hooks role on localhost into temporary directories: undo scripts and the webhook hook
are installed, idempotently, and the installed webhook and its undo post to a local receiver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(os.path.abspath(__file__)).parent
COLLECTION = HERE.parents[3]


def _ansible_playbook():
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


def _skip_reason():
    if _ansible_playbook() is None:
        return "ansible-playbook is not installed"
    if os.geteuid() != 0:
        return "needs root (the role sets owner root on the files it writes)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


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
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\nstdout_callback = default\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n"
        "    - role: parkingspot.ec2.cleanup_hooks\n"
    )

    def run(**role_vars):
        extra = tmp_path / "vars.json"
        extra.write_text(json.dumps(role_vars))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(cfg),
            ANSIBLE_COLLECTIONS_PATH=collections_path,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_PIPELINING="true",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        cmd = [_ansible_playbook(), "-i", "localhost,", str(playbook), "-e", f"@{extra}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
        out = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", out)
        assert proc.returncode == 0, out
        return int(recap.group(1)), out

    return run


class _Receiver:
    def __init__(self):
        self.bodies, self.headers = [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                receiver.headers.append(dict(self.headers))
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_undo_scripts_and_the_webhook_hook_are_installed_and_work(play, tmp_path):
    hooks, lib = tmp_path / "hooks.d", tmp_path / "lib"
    secret_url = tmp_path / "webhook-url"
    receiver = _Receiver()
    secret_url.write_text(receiver.url + "\n")
    secret_url.chmod(0o600)
    hook_list = [
        {
            "name": "notify",
            "order": 1,
            "builtin": "webhook",
            "undo": True,
            "settings": {"url_file": str(secret_url), "headers": {"X-Team": "ci"}, "python": sys.executable},
        },
        {"name": "stop", "order": 20, "content": "#!/bin/sh\nexit 0\n", "undo_content": "#!/bin/sh\necho undo\n"},
        {"name": "sync", "order": 90, "builtin": "fs_sync"},
    ]
    role_vars = {"cleanup_hooks_dir": str(hooks), "cleanup_hooks_lib_dir": str(lib), "cleanup_hooks_list": hook_list}
    changed, out = play(**role_vars)
    assert changed > 0
    assert (lib / "webhook.py").is_file() and os.access(lib / "webhook.sh", os.X_OK)
    for name in ("01-notify", "01-notify.undo", "20-stop", "20-stop.undo", "90-sync"):
        assert os.access(hooks / name, os.X_OK), name
    assert not (hooks / "90-sync.undo").exists()
    assert (hooks / "20-stop.undo").read_text() == "#!/bin/sh\necho undo\n"
    wrapper = (hooks / "01-notify").read_text()
    assert receiver.url not in wrapper  # the URL stays in its own file
    assert """PS_HEADERS='{"X-Team": "ci"}'""" in wrapper
    assert play(**role_vars)[0] == 0  # idempotent

    env = dict(
        os.environ,
        PARKINGSPOT_INSTANCE_ID="i-0123456789abcdef0",
        PARKINGSPOT_EVENT="maintenance",
        PARKINGSPOT_ACTION="system-reboot",
        PARKINGSPOT_LIFECYCLE="draining",
        PARKINGSPOT_DEADLINE_TIME="2026-12-01T21:00:00Z",
        PARKINGSPOT_HOOK_TIMEOUT="10",
    )
    assert subprocess.run([str(hooks / "01-notify")], env=env, check=False, timeout=30).returncode == 0
    env["PARKINGSPOT_LIFECYCLE"] = "completed"
    assert subprocess.run([str(hooks / "01-notify.undo")], env=env, check=False, timeout=30).returncode == 0
    assert [b["lifecycle"] for b in receiver.bodies] == ["draining", "completed"]
    assert receiver.bodies[0]["deadline"] == "2026-12-01T21:00:00Z" and receiver.headers[0]["X-Team"] == "ci"

    # Dropping the undo settings removes the undo scripts.
    hook_list[0]["undo"] = False
    del hook_list[1]["undo_content"]
    assert play(**role_vars)[0] > 0
    assert not (hooks / "01-notify.undo").exists() and not (hooks / "20-stop.undo").exists()
    assert (hooks / "01-notify").exists() and (hooks / "20-stop").exists()
    receiver.server.shutdown()
