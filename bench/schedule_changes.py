"""When a pool's desired count changes next: the schedule's boundaries as UTC instants.

Not used by the modules (a reconcile only asks what is desired *now*, ``_schedule.desired_at``);
kept beside the benchmarks as a tool to look ahead in a schedule, for example to pick the
simulated times of a demo or to check DST days, and tested in tests/unit/bench.
"""

from __future__ import annotations

import datetime

from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import DAYS
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import desired_at


def _instants(naive, tz):
    """UTC instants at which the wall clock of ``tz`` reaches ``naive``.

    Usually one; two on a fall-back day (the repeated hour); in a spring-forward gap the
    moment the clock jumps past it.
    """
    utc = datetime.timezone.utc
    found = set()
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=tz, fold=fold).astimezone(utc)
        if candidate.astimezone(tz).replace(tzinfo=None) == naive:
            found.add(candidate)
    if found:
        return sorted(found)
    # In a gap: search the first minute whose wall time is at or after ``naive``.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(utc)
    high = naive.replace(tzinfo=tz, fold=0).astimezone(utc)
    low, high = min(low, high), max(low, high)
    while high - low > datetime.timedelta(minutes=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return [high.replace(second=0, microsecond=0)]


def next_change(now, default, windows, tz, horizon_days=8):
    """When the desired count changes next after ``now``.

    Returns ``{"at": ISO 8601 UTC, "desired": n, "window": index or None}`` or None when the
    count never changes within ``horizon_days`` (for example without windows).
    """
    current, window = desired_at(now, default, windows, tz)
    current_key = (current, window["index"] if window else None)
    local_day = now.astimezone(tz).date()
    candidates = set()
    for offset in range(-1, horizon_days + 1):
        day = local_day + datetime.timedelta(days=offset)
        for win in windows:
            if DAYS[day.weekday()] not in win["days"]:
                continue
            midnight = datetime.datetime.combine(day, datetime.time())
            start = midnight + datetime.timedelta(minutes=win["start_minute"])
            end = midnight + datetime.timedelta(minutes=win["end_minute"])
            if win["crosses_midnight"]:
                end += datetime.timedelta(days=1)
            for naive in (start, end):
                candidates.update(_instants(naive, tz))
    utc = datetime.timezone.utc
    for instant in sorted(c for c in candidates if c > now):
        count, win = desired_at(instant, default, windows, tz)
        if (count, win["index"] if win else None) != current_key:
            return {
                "at": instant.astimezone(utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "desired": count,
                "window": win["index"] if win else None,
            }
    return None
