# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Waiting for launched capacity, and cleaning up when it does not come.

Shared by every module that launches: poll every ``interval`` seconds (not the
15 s of the AWS waiters), and on timeout cancel what is unfulfilled and
terminate what this run launched before raising, so a failed run leaves
nothing behind.
"""

from __future__ import annotations

import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError

POLL_INTERVAL = 1.5


def newest_first(instances: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Instances ordered newest launch first (ties broken by id, for a stable choice)."""
    return sorted(instances, key=lambda i: (i.get("launch_time") or "", i["instance_id"]), reverse=True)


def wait_for(
    check: Callable[[], Optional[Any]],
    timeout: float,
    interval: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Optional[Any]:
    """Call ``check`` until it returns something truthy or ``timeout`` seconds pass; None on timeout."""
    deadline = clock() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if clock() + interval > deadline:
            return None
        sleep(interval)


def wait_running(client, instance_ids: List[str], timeout: float, **kwargs) -> Optional[List[Dict[str, Any]]]:
    """Wait until every instance runs; returns them, or None on timeout."""
    wanted = set(instance_ids)

    def check():
        found = _aws.describe_instances_by_ids(client, sorted(wanted))
        running = [i for i in found if i["state"] == "running"]
        return running if {i["instance_id"] for i in running} == wanted else None

    if not wanted:
        return []
    return wait_for(check, timeout, **kwargs)


def wait_terminated(client, instance_ids: List[str], timeout: float, **kwargs) -> bool:
    wanted = set(instance_ids)

    def check():
        found = _aws.describe_instances_by_ids(client, sorted(wanted))
        return all(i["state"] == "terminated" for i in found)

    return not wanted or bool(wait_for(check, timeout, **kwargs))


def wait_fulfilled(client, request_ids: List[str], timeout: float, **kwargs) -> Optional[List[Dict[str, Any]]]:
    """Wait until legacy spot requests are active with an instance; returns the requests or None."""

    def check():
        found = _aws.describe_spot_requests(client, request_ids=request_ids)
        done = [r for r in found if r["state"] == "active" and r.get("instance_id")]
        return done if len(done) == len(set(request_ids)) else None

    if not request_ids:
        return []
    return wait_for(check, timeout, **kwargs)


def cancel_and_terminate(client, request_ids: List[str], instance_ids: List[str]) -> None:
    """Cancel spot requests, then terminate instances (no call for an empty list).

    The requests go first: a persistent request would relaunch an instance terminated before it.
    """
    if request_ids:
        _aws.cancel_spot_requests(client, request_ids)
    if instance_ids:
        _aws.terminate_instances(client, instance_ids)


def clean_up_and_fail(client, what: str, request_ids: List[str], instance_ids: List[str]) -> None:
    """Cancel this run's requests and terminate its instances, then raise with a message saying so."""
    cancel_and_terminate(client, request_ids, instance_ids)
    done = []
    if request_ids:
        done.append("cancelled spot requests %s" % ", ".join(sorted(request_ids)))
    if instance_ids:
        done.append("terminated instances %s" % ", ".join(sorted(instance_ids)))
    raise ParkingSpotError(message="%s; cleaned up: %s" % (what, "; ".join(done) if done else "nothing to clean up"))
