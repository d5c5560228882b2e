# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Queue-driven pool size (pure, stdlib only): how many runners the CI queue asks for, and which
runners may go when it asks for fewer.

* Size: ``clamp(busy + ceil(queued * per_job), floor, max)``. The floor is the count the
  pool keeps anyway (``desired`` or the schedule window in force), so the schedule becomes
  a floor and the queue only ever adds to it.
* Scale-in: only a runner that is idle (tag ``parkingspot:busy`` not ``true``) for at least
  ``idle_minutes`` and has run for at least ``min_running_minutes`` may be drained. A busy
  runner is never chosen, whatever the counts say: the pool then stays above its target
  until the job ends. An on-demand runner (a fallback or retry lane runner) waits
  ``on_demand_idle_minutes`` instead (0 by default): it costs about three times a spot
  runner, so the pool's spare idle capacity is kept on spot, and an on-demand fallback
  runner leaves as soon as it is idle once spot runners cover the target.
* Re-runs: ``retries`` counts queued re-runs apart from ``queued``. They never size the spot
  pool; the keeper passes them to the planner, which keeps one on-demand lane runner for each
  re-run no idle lane runner can take (a retry lane that exists only while re-runs wait).
* Only re-runs: a ``demand`` without ``queued`` and ``busy`` asks for the retry lane alone. The
  pool keeps its ``desired`` / schedule size, ``scaling.max`` is optional, and the scale-in rule
  guards the lane's runners only: the others come and go as in a schedule pool (drained by
  the ``drain`` hooks, which wait for a running job), so on-demand fallback runners are not kept
  for ``idle_minutes`` after spot is back.
* Idle since: the built-in CI hooks write ``parkingspot:idle-since`` (ISO 8601 UTC) when
  they set ``parkingspot:busy=false``. Without a valid ``idle-since`` (hooks not installed,
  or a runner that never took a job) the launch time stands in, so a runner that never
  reports is still drained once it is ``idle_minutes`` old.

The rules are described for users in docs/queue-driven-pools.md.
"""

from __future__ import annotations

import datetime
import math

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_BUSY
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_IDLE_SINCE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_LANE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import parse_time

DEFAULT_PER_JOB = 1
DEFAULT_IDLE_MINUTES = 10
DEFAULT_MIN_RUNNING_MINUTES = 5
# On-demand runners are not kept idle: see may_scale_in.
DEFAULT_ON_DEMAND_IDLE_MINUTES = 0
# ``retries``: queued re-runs (jobs being retried). They are not in ``queued`` and do not size the
# spot pool: the planner puts one on-demand lane runner under each (planner ``retries``).
DEMAND_KEYS = ("queued", "busy", "retries")
# ``queued`` / ``busy`` given: the queue sizes the pool. Neither given: only the retry lane.
SIZING_KEYS = ("queued", "busy")
# The argument spec of spot_pool's two options; each default lives here. ``queued`` and ``busy``
# have no default so that a demand of re-runs alone can be told from a queue of 0 (both read as 0).
DEMAND_ARGUMENT_SPEC = dict(
    type="dict",
    options=dict(
        queued=dict(type="int"),
        busy=dict(type="int"),
        retries=dict(type="int", default=0),
        counted_at=dict(type="str"),
    ),
)
SCALING_ARGUMENT_SPEC = dict(
    type="dict",
    default={},
    options=dict(
        max=dict(type="int"),
        per_job=dict(type="float", default=DEFAULT_PER_JOB),
        idle_minutes=dict(type="int", default=DEFAULT_IDLE_MINUTES),
        min_running_minutes=dict(type="int", default=DEFAULT_MIN_RUNNING_MINUTES),
        on_demand_idle_minutes=dict(type="int", default=DEFAULT_ON_DEMAND_IDLE_MINUTES),
    ),
)
SCALING_KEYS = ("max", "per_job", "idle_minutes", "min_running_minutes", "on_demand_idle_minutes")


def _count(value, option):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(option, f"must be a whole number, got {value!r}")
    if value < 0:
        raise InputError(option, f"must be 0 or more, got {value}")
    return value


def validate(demand, scaling, floors=(0,)):
    """Check ``demand`` and ``scaling``; return them as plain dicts with defaults filled in.

    ``floors`` are every count the pool may keep as its floor (``desired`` and each window's
    ``desired``): ``scaling.max`` below any of them would make the pool both below its floor
    and above its maximum at some hour, so it is refused now rather than at that hour.
    """
    demand = dict(demand or {})
    unknown = sorted(set(demand) - set(DEMAND_KEYS) - {"counted_at"})
    if unknown:
        raise InputError("demand", "unknown key(s) {}".format(", ".join(unknown)))
    if demand.get("counted_at") is not None and parse_time(demand["counted_at"]) is None:
        raise InputError(
            "demand.counted_at",
            f"must be an ISO 8601 time with a zone, e.g. 2026-12-02T10:00:00.5Z, got {demand['counted_at']!r}",
        )
    sizing = any(demand.get(key) is not None for key in SIZING_KEYS)
    demand = {key: _count(demand.get(key) or 0, "demand." + key) for key in DEMAND_KEYS}
    scaling = dict(scaling or {})
    unknown = sorted(set(scaling) - set(SCALING_KEYS))
    if unknown:
        raise InputError("scaling", "unknown key(s) {}".format(", ".join(unknown)))
    if scaling.get("max") is None and sizing:
        raise InputError(
            "scaling.max", "is required with demand.queued or demand.busy: the most runners the queue may ask for"
        )
    top = None if scaling.get("max") is None else _count(scaling["max"], "scaling.max")
    highest_floor = max([0] + [f for f in floors if f is not None])
    if top is not None and top < highest_floor:
        raise InputError(
            "scaling.max", f"{top} is less than the floor {highest_floor} (desired or a schedule window's desired)"
        )
    per_job = scaling.get("per_job")
    per_job = DEFAULT_PER_JOB if per_job is None else per_job
    if isinstance(per_job, bool) or not isinstance(per_job, (int, float)) or not math.isfinite(per_job) or per_job <= 0:
        raise InputError("scaling.per_job", f"must be a number greater than 0, got {per_job!r}")
    idle = scaling.get("idle_minutes")
    running = scaling.get("min_running_minutes")
    on_demand_idle = scaling.get("on_demand_idle_minutes")
    return demand, {
        # "pool": the queue sizes the pool and the scale-in rule guards every runner;
        # "lane": re-runs only, the rule guards the on-demand lane's runners alone.
        "scope": "pool" if sizing else "lane",
        "max": top,
        "per_job": per_job,
        "idle_minutes": _count(DEFAULT_IDLE_MINUTES if idle is None else idle, "scaling.idle_minutes"),
        "min_running_minutes": _count(
            DEFAULT_MIN_RUNNING_MINUTES if running is None else running, "scaling.min_running_minutes"
        ),
        "on_demand_idle_minutes": _count(
            DEFAULT_ON_DEMAND_IDLE_MINUTES if on_demand_idle is None else on_demand_idle,
            "scaling.on_demand_idle_minutes",
        ),
    }


def target(floor, demand, scaling):
    """The pool size the queue asks for, never below ``floor`` nor above ``scaling['max']``.

    ``demand`` and ``scaling`` are the outputs of ``validate`` and ``floor`` a count checked at
    the module boundary. Partial runners round up: a queued job never waits because of
    ``per_job`` rounding.
    """
    if scaling.get("scope") == "lane":
        return floor
    wanted = demand["busy"] + int(math.ceil(demand["queued"] * scaling["per_job"] - 1e-9))
    return min(max(wanted, floor), scaling["max"]) if floor <= scaling["max"] else floor


def idle_since(instance):
    """When the runner last became idle: ``parkingspot:idle-since``, else its launch time.

    None for a busy runner.
    """
    tags = instance.get("tags") or {}
    if str(tags.get(TAG_BUSY, "")).lower() == "true":
        return None
    since = parse_time(tags.get(TAG_IDLE_SINCE))
    launched = parse_time(instance.get("launch_time"))
    if since is None:
        return launched
    # A clock-skewed tag from before the launch says nothing the launch time does not.
    return max(since, launched) if launched is not None else since


def market(instance):
    """The runner's market as every reader takes it: ``market``, else the tag ``parkingspot:market``, else spot."""
    tags = instance.get("tags") or {}
    return instance.get("market") or tags.get(TAG_MARKET) or "spot"


def required_idle_minutes(instance, scaling):
    """How long the runner must be idle before scale-in may drain it.

    ``idle_minutes`` keeps a spot runner for a queue that comes back soon. An on-demand runner
    waits ``on_demand_idle_minutes`` (default 0): it costs about three times a spot runner, and
    when the queue comes back the pool launches again (spot first). Once spot runners cover the
    target, this is what lets an on-demand fallback runner go as soon as its job ends, rather
    than take the next job that a spot runner is idle for.
    """
    if market(instance) == "on-demand":
        return scaling.get("on_demand_idle_minutes", DEFAULT_ON_DEMAND_IDLE_MINUTES)
    return scaling["idle_minutes"]


def may_scale_in(instance, now, scaling):
    """True when the runner may be drained because the queue asks for fewer runners."""
    if instance.get("state") != "running":
        return False
    launched = parse_time(instance.get("launch_time"))
    since = idle_since(instance)
    if launched is None or since is None:
        return False
    ran = now - launched
    idle = now - since
    return ran >= datetime.timedelta(minutes=scaling["min_running_minutes"]) and idle >= datetime.timedelta(
        minutes=required_idle_minutes(instance, scaling)
    )


def in_lane(instance):
    """A runner of the on-demand lane (tags ``parkingspot:market`` and ``parkingspot:lane`` on-demand)."""
    tags = instance.get("tags") or {}
    return market(instance) == "on-demand" and tags.get(TAG_LANE) == "on-demand"


def protected_ids(instances, now, scaling):
    """Ids of the pool's instances that scale-in must leave alone (busy, too young, idle too briefly).

    With re-runs only (``scaling['scope'] == 'lane'``) the rule guards the lane's runners alone.
    """
    guarded = [i for i in instances if in_lane(i)] if scaling.get("scope") == "lane" else instances
    return sorted(i["instance_id"] for i in guarded if not may_scale_in(i, now, scaling))


def summary(floor, demand, scaling, size):
    """The ``pool.demand`` result."""
    return {
        "queued": demand["queued"],
        "busy": demand["busy"],
        "retries": demand.get("retries", 0),
        "floor": floor,
        "max": scaling["max"],
        "per_job": scaling["per_job"],
        "target": size,
    }
