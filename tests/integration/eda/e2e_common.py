# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the rulebook end-to-end runs share: a collection tree whose keeper playbook is a stand-in
that records what it was asked, and ansible-rulebook started on one of the collection's rulebooks.

The real rulebooks, event sources and meta/runtime.yml are linked into the tree; only
playbooks/runner_pool.yml is replaced, so a run checks the wiring (which pools, which demand,
how often), not the keeper itself.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = "PARKINGSPOT_EDA_E2E_OUT"

STAND_IN = """---
- name: Stand-in for the pool keeper, records what it was asked to do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Record what the rulebook passed
      ansible.builtin.lineinfile:
        path: "{{ lookup('ansible.builtin.env', '%s') }}"
        line: "{{ %s | to_json }}"
        create: true
        mode: "0600"
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rulebook_command():
    """ANSIBLE_RULEBOOK, else ansible-rulebook on PATH; None (with a message) when neither is there."""
    command = os.environ.get("ANSIBLE_RULEBOOK") or shutil.which("ansible-rulebook")
    if not command:
        print("ansible-rulebook not found: set ANSIBLE_RULEBOOK", file=sys.stderr)
    return command


class Rulebook:
    """A work directory with the collection tree, an inventory for ansible-rulebook's own Python,
    and the rulebook's process once ``start`` ran. ``record`` is the Jinja expression each
    stand-in keeper run writes as one JSON line (``runs`` reads them back)."""

    def __init__(self, work, command, record):
        self.work, self.command = work, command
        self.runs_file = os.path.join(work, "runs.jsonl")
        self.log_path = os.path.join(work, "rulebook.log")
        self.process = None
        self._log = None
        root = os.path.join(work, "ansible_collections", "parkingspot", "ec2")
        os.makedirs(os.path.join(root, "playbooks"))
        for name in ("galaxy.yml", "meta", "extensions"):
            os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
        with open(os.path.join(root, "playbooks", "runner_pool.yml"), "w") as handle:
            handle.write(STAND_IN % (OUT, record))
        python = os.path.join(os.path.dirname(os.path.abspath(command)), "python")
        with open(os.path.join(work, "inventory.yml"), "w") as handle:
            handle.write(
                "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                f"      ansible_python_interpreter: {python}\n"
            )

    def env(self, **extra):
        """This environment for the rulebook: the tree as the collections path, the record file,
        and ansible-rulebook's own ansible-playbook first on PATH."""
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=self.work,
            ANSIBLE_LOCALHOST_WARNING="0",
            ANSIBLE_NOCOLOR="1",
            PATH=os.path.dirname(os.path.abspath(self.command)) + os.pathsep + os.environ.get("PATH", ""),
            **{OUT: self.runs_file},
        )
        env.update(extra)
        return env

    def start(self, rulebook, variables, env):
        """Run ``parkingspot.ec2.<rulebook>`` with ``variables`` (written as the --vars file)."""
        with open(os.path.join(self.work, "vars.yml"), "w") as handle:
            json.dump(variables, handle)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the child writes it until stop()
        self.process = subprocess.Popen(
            [self.command, "-r", "parkingspot.ec2." + rulebook, "-i", "inventory.yml", "--vars", "vars.yml", "-v"],
            cwd=self.work,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def running(self):
        return self.process is not None and self.process.poll() is None

    def runs(self):
        """What the stand-in keeper recorded, one entry per run."""
        if not os.path.exists(self.runs_file):
            return []
        with open(self.runs_file) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def stop(self):
        """Stop the rulebook as Ctrl-C would (killed if it does not end in 20 s); its log."""
        if self.running():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path) as handle:
            return handle.read()

    def verdict(self, name, failures, output):
        """Print the failures (with the log's tail) and return the exit code; the work directory
        goes when every check passed."""
        for failure in failures:
            print("FAIL:", failure, file=sys.stderr)
        if failures:
            print(output[-6000:], file=sys.stderr)
            return 1
        shutil.rmtree(self.work, ignore_errors=True)
        print(f"{name} end-to-end: all checks passed")
        return 0
