# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Offerings memory for the keeper: pure, no AWS calls, no state of its own.

An offering is one (instance type, subnet) pair a pool may launch into. EC2 takes
spot capacity back and refuses it per offering, not per pool, so an offering that
interrupted one of the pool's instances, or refused a launch, a few minutes ago is
likely to do it again. The keeper keeps no state between runs: what it remembers is
what the one DescribeInstances it already makes shows (EC2 lists terminated instances
for about an hour, with their state reason and tags), plus the capacity errors of the
run in progress. Offerings with such an event in the last ``cooldown_minutes`` are left
out of the next launch, unless nothing else is left (as Karpenter's unavailable
offerings cache does, but rebuilt from the API on every run).
"""

from __future__ import annotations

import datetime
import itertools
import re

from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_INTERRUPTED
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import parse_time

DEFAULT_COOLDOWN_MINUTES = 15

# Instance state reasons that mean the cloud took a spot instance back.
INTERRUPTION_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")

# StateTransitionReason carries the time of the change, e.g. "Service initiated (2026-11-23 08:00:00 GMT)".
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) GMT\)")


def offerings_of(params):
    """The offerings a pool's launch settings allow, in the order the user listed them."""
    types = list(params.get("instance_types") or [params.get("instance_type")])
    subnets = list(params.get("subnet_ids") or [params.get("subnet_id")])
    return [{"instance_type": t, "subnet_id": s} for t, s in itertools.product(types, subnets)]


def key(offering):
    return (offering.get("instance_type"), offering.get("subnet_id"))


def _matches(offering, instance_type, subnet_id):
    """An event on (type, subnet) concerns an offering; an offering without a type or subnet matches any."""
    o_type, o_subnet = key(offering)
    if o_type and instance_type and o_type != instance_type:
        return False
    if o_subnet and subnet_id and o_subnet != subnet_id:
        return False
    return True


def interruption_time(instance):
    """When the cloud took ``instance`` back, or ``None`` when it did not.

    The watcher's tag (``parkingspot:interrupted=<notice time>``) gives the time of the
    notice; a terminated instance's state reason says it was interrupted and its
    transition reason, when present, says when. An interruption whose time cannot be
    read is returned as ``datetime.max`` (taken as recent: EC2 lists it for about an hour).
    """
    tags = instance.get("tags") or {}
    tagged = TAG_INTERRUPTED in tags
    by_reason = instance.get("state_reason") in INTERRUPTION_REASONS
    if not (tagged or by_reason):
        return None
    when = parse_time(tags.get(TAG_INTERRUPTED)) if tagged else None
    if when is None:
        match = _TRANSITION_TIME.search(instance.get("state_transition_reason") or "")
        if match:
            when = parse_time("%sT%sZ" % match.groups())
    return when or datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)


def recent_events(instances, now, cooldown_minutes=DEFAULT_COOLDOWN_MINUTES, capacity_errors=()):
    """Events within the cooldown: ``[{instance_type, subnet_id, reason, at}]``, oldest first.

    ``capacity_errors`` are this run's refusals, ``{instance_type, subnet_id, code}``.
    """
    since = now - datetime.timedelta(minutes=cooldown_minutes)
    events = []
    for inst in instances:
        if inst.get("market", "spot") != "spot" and TAG_INTERRUPTED not in (inst.get("tags") or {}):
            continue
        when = interruption_time(inst)
        if when is None or when < since:
            continue
        events.append(
            {
                "instance_type": inst.get("instance_type"),
                "subnet_id": inst.get("subnet_id"),
                "reason": "interruption of %s" % inst["instance_id"],
                "at": format_time(min(when, now)),
            }
        )
    for error in capacity_errors:
        events.append(
            {
                "instance_type": error.get("instance_type"),
                "subnet_id": error.get("subnet_id"),
                "reason": "capacity error %s in this run" % (error.get("code") or "InsufficientInstanceCapacity"),
                "at": format_time(now),
            }
        )
    return sorted(events, key=lambda e: (e["at"], e["reason"]))


def choose(offerings, events):
    """Split ``offerings`` into those to launch and those left out.

    Returns ``(launch, excluded)``: ``excluded`` lists each left-out offering with the
    reason. When every offering has a recent event, all of them stay in the launch
    (a launch that may fail beats no launch) and ``excluded`` is empty.
    """
    launch, excluded = [], []
    for offering in offerings:
        hits = [e for e in events if _matches(offering, e["instance_type"], e["subnet_id"])]
        if hits:
            excluded.append(dict(offering, reason=hits[-1]["reason"], at=hits[-1]["at"]))
        else:
            launch.append(dict(offering))
    if not launch:
        return [dict(o) for o in offerings], []
    return launch, excluded


def plan_offerings(instances, now, offerings, cooldown_minutes=DEFAULT_COOLDOWN_MINUTES, capacity_errors=()):
    """The planner's view: ``{"launch": [...], "excluded": [...], "cooldown_minutes": n}``."""
    if isinstance(cooldown_minutes, bool) or not isinstance(cooldown_minutes, int) or cooldown_minutes < 0:
        raise ValueError("offering_cooldown_minutes: must be a whole number, 0 or more, got %r" % (cooldown_minutes,))
    # A cooldown of 0 forgets past interruptions; this run's capacity errors still count.
    events = recent_events(instances if cooldown_minutes else [], now, cooldown_minutes, capacity_errors)
    launch, excluded = choose(offerings, events)
    return {"launch": launch, "excluded": excluded, "cooldown_minutes": cooldown_minutes}


def fleet_error_offerings(errors, asked):
    """The offerings a CreateFleet's errors name; errors without an override name every offering asked."""
    named = [e for e in errors if e.get("instance_type") or e.get("subnet_id")]
    if not named:
        return [dict(o, code=(errors[0].get("code") if errors else None)) for o in asked]
    return [
        {"instance_type": e.get("instance_type"), "subnet_id": e.get("subnet_id"), "code": e.get("code")} for e in named
    ]
