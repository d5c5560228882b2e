# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writes paced inside EC2's token buckets instead of answered by throttling retries.

EC2 meters every action with a token bucket per account and region: a call takes a
token, the bucket refills at a fixed rate, an empty bucket answers
``RequestLimitExceeded``. Retrying with backoff works, but every throttled call also
costs the other tools of the account (they share the buckets), and a keeper of fifty
pools that launches, tags and terminates for all of them in one run would hit the small
RunInstances bucket (5 calls, 2 per second) at once. So the keeper keeps its own copy of
the documented buckets and waits for a token before each write: it never sends a call
the bucket would refuse, as far as its own calls go.

The buckets start full (the documented burst) and know nothing of other clients in the
account; the retry layer in ``_aws.py`` still answers throttling caused by them.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import Optional
from typing import Tuple

# Documented EC2 request buckets (burst, refill per second) of the writes the keeper makes.
# Actions without a bucket of their own share the "mutating" category bucket.
EC2_WRITE_BUCKETS: Dict[str, Tuple[float, float]] = {
    "RunInstances": (5, 2),
    "TerminateInstances": (100, 5),
    "CreateTags": (100, 10),
    "mutating": (50, 5),
}
# RunInstances also has a resource bucket: instances launched (1000, 2 per second).
RUN_INSTANCES_RESOURCE_BUCKET: Tuple[float, float] = (1000, 2)

# Client methods paced, with the bucket that meters them.
_PACED_METHODS = {
    "run_instances": "RunInstances",
    "terminate_instances": "TerminateInstances",
    "create_tags": "CreateTags",
    "create_fleet": "mutating",
    "request_spot_instances": "mutating",
    "cancel_spot_instance_requests": "mutating",
}


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; ``take`` waits until there are enough."""

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        if capacity <= 0 or rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and refill rate")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(capacity)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def take(self, tokens: float = 1) -> float:
        """Take ``tokens``, first waiting for them if needed; returns the seconds waited.

        More tokens than the capacity (one RunInstances of more than 1000 instances) wait
        for a full bucket's worth plus the rest, and leave the bucket empty.
        """
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return 0.0
            wait = (tokens - self._tokens) / self.rate
            self._sleep(wait)
            self._refill()
            self._tokens = max(0.0, self._tokens - tokens)
            return wait


class Pacer:
    """The keeper's buckets for one run, and how long it waited for each action's tokens."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep=time.sleep, buckets=None):
        limits = dict(EC2_WRITE_BUCKETS if buckets is None else buckets)
        self.buckets = {name: TokenBucket(burst, rate, clock, sleep) for name, (burst, rate) in limits.items()}
        burst, rate = RUN_INSTANCES_RESOURCE_BUCKET
        self.instances = TokenBucket(burst, rate, clock, sleep)
        self.waited: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}

    def take(self, action: str, instances: int = 0) -> float:
        bucket = action if action in self.buckets else "mutating"
        waited = self.buckets[bucket].take(1)
        if action == "RunInstances" and instances:
            waited += self.instances.take(instances)
        self.waited[action] = self.waited.get(action, 0.0) + waited
        self.calls[action] = self.calls.get(action, 0) + 1
        return waited

    def report(self) -> Dict[str, Any]:
        """The ``pacing`` result: writes made per action and seconds waited for tokens."""
        return {
            "waited_seconds": round(sum(self.waited.values()), 3),
            "waited_by_action": {k: round(v, 3) for k, v in sorted(self.waited.items())},
            "writes": dict(sorted(self.calls.items())),
        }


def _action_and_instances(method: str, kwargs: Dict[str, Any]) -> Tuple[str, int]:
    action = {"create_fleet": "CreateFleet", "request_spot_instances": "RequestSpotInstances"}.get(method)
    if method == "run_instances":
        return "RunInstances", int(kwargs.get("MaxCount") or 0)
    if method == "cancel_spot_instance_requests":
        return "CancelSpotInstanceRequests", 0
    return action or _PACED_METHODS[method], 0


class PacedClient:
    """An EC2 client whose write methods first wait for a token of their bucket.

    Everything else (reads, paginators, ``exceptions``) is the wrapped client's own, so
    the call layer in ``_aws.py`` works on it unchanged. A retried call takes a token
    again, as it does at EC2.
    """

    def __init__(self, client, pacer: Optional[Pacer] = None):
        self._client = client
        self.pacer = pacer or Pacer()

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if name not in _PACED_METHODS:
            return attribute

        def paced(*args, **kwargs):
            action, instances = _action_and_instances(name, kwargs)
            self.pacer.take(action, instances)
            return attribute(*args, **kwargs)

        return paced
