# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Draining instances before they are terminated.

A drain is either a user command run on the controller (it gets the instance id
and private DNS name as arguments placeholders and in its environment) or
``kubectl cordon`` + ``kubectl drain`` of the node.

The command is split into arguments like a shell would split it (quotes group
words) but no shell runs it: only the placeholders in ``PLACEHOLDERS`` are
replaced, inside each argument, and every other brace, ``$`` or backslash reaches
the program as written (a kubectl ``jsonpath='{.status.phase}'`` stays intact).
``check_command`` renders the command for a sample instance so that a command
that cannot be split fails the run before anything is tagged or terminated. Drains of one run happen in
parallel, each bounded by the drain timeout; an instance whose drain fails or
times out is still terminated: the lease it carries says when.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils._defaults import DRAIN_TIMEOUT_SECONDS
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

MAX_PARALLEL_DRAINS = 16
PLACEHOLDERS = ("instance_id", "private_dns_name")
SAMPLE_INSTANCE = {"instance_id": "i-0123456789abcdef0", "private_dns_name": "ip-10-0-0-1.ec2.internal"}


class DrainCommandError(InputError):
    """A drain command that cannot be rendered: bad input of the option ``drain.command``."""

    def __init__(self, message):
        super().__init__("drain.command", message)


def split_command(command: str) -> List[str]:
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise DrainCommandError("cannot be split into arguments (%s): %s" % (e, command)) from e
    if not argv:
        raise DrainCommandError("is empty")
    return argv


def render_argument(part: str, values: Dict[str, str]) -> str:
    """Replace the documented ``{field}`` placeholders in one argument; nothing else changes."""
    for field in PLACEHOLDERS:
        part = part.replace("{%s}" % field, values[field])
    return part


def check_command(drain: Optional[Dict[str, Any]]) -> Optional[List[str]]:
    """The command rendered for a sample instance, or DrainCommandError; None without a command."""
    command = (drain or {}).get("command")
    if not command:
        return None
    if "\x00" in command:
        raise DrainCommandError("must not contain NUL characters")
    return [render_argument(part, SAMPLE_INSTANCE) for part in split_command(command)]


def drain_argv(drain: Dict[str, Any], instance: Dict[str, Any]) -> List[List[str]]:
    """The commands that drain one instance, in order."""
    node = instance.get("private_dns_name") or instance["instance_id"]
    if drain.get("kubectl"):
        kubectl = drain.get("kubectl_path") or "kubectl"
        return [
            [kubectl, "cordon", node],
            [
                kubectl,
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=%ds" % int(drain.get("timeout") or 0),
            ],
        ]
    command = drain.get("command")
    if not command:
        return []
    values = {"instance_id": instance["instance_id"], "private_dns_name": instance.get("private_dns_name") or ""}
    return [[render_argument(part, values) for part in split_command(command)]]


def _run_one(drain: Dict[str, Any], instance: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    # A drain never runs past the instance's own deadline (its lease, or the drain lease).
    timeout = min(timeout, float(instance.get("drain_seconds") or timeout))
    env = dict(
        os.environ,
        PARKINGSPOT_INSTANCE_ID=instance["instance_id"],
        PARKINGSPOT_PRIVATE_DNS_NAME=instance.get("private_dns_name") or "",
        PARKINGSPOT_POOL=str(drain.get("pool") or ""),
    )
    outcome = {"instance_id": instance["instance_id"], "status": "drained", "detail": ""}
    for argv in drain_argv(drain, instance):
        try:
            # Drains run in parallel threads with a per-drain timeout, which run_command cannot give.
            done = subprocess.run(  # pylint: disable=ansible-bad-function
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return dict(outcome, status="timeout", detail="%s did not finish within %ss" % (argv[0], timeout))
        except OSError as e:
            return dict(outcome, status="failed", detail="%s: %s" % (argv[0], e))
        if done.returncode != 0:
            tail = done.stdout.decode("utf-8", "replace").strip()[-300:]
            return dict(outcome, status="failed", detail="%s exited %d: %s" % (argv[0], done.returncode, tail))
    return outcome


def configured(drain: Optional[Dict[str, Any]]) -> bool:
    return bool(drain and (drain.get("command") or drain.get("kubectl")))


def run_drains(drain: Optional[Dict[str, Any]], instances: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Drain every instance in parallel; one outcome per instance, in instance id order."""
    if not instances:
        return []
    if not configured(drain):
        skipped = {"status": "skipped", "detail": "no drain configured"}
        return [dict(skipped, instance_id=i["instance_id"]) for i in instances]
    timeout = float(drain.get("timeout") or DRAIN_TIMEOUT_SECONDS)
    ordered = sorted(instances, key=lambda i: i["instance_id"])
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DRAINS, len(ordered))) as pool:
        return list(pool.map(lambda instance: _run_one(drain, instance, timeout), ordered))
