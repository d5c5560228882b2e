# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Operating-hours windows for the pool keeper (pure, stdlib only).

A schedule is a list of windows ``{days, start, end, desired}`` read as wall-clock
times in one IANA time zone.  Rules (also in docs/keeper-planning.md):

* ``start``/``end`` are ``"HH:MM"`` strings, 00:00 to 23:59.
* ``end`` later than ``start``: the window covers ``[start, end)`` on each listed day.
* ``end`` earlier than ``start``: the window crosses midnight.  It opens on each listed
  day at ``start`` and closes the next day at ``end`` (a Friday 22:00-02:00 window
  covers Saturday 00:00-02:00).  ``end: "00:00"`` therefore means "until midnight".
* ``end`` equal to ``start`` is an error (ambiguous: empty or 24 hours).
* When several windows cover the same moment, the first one in the list wins.
* Outside every window the pool keeps the ``default`` count (the ``desired`` option).
* Windows follow the wall clock, so they keep their local hours across DST changes.  On
  the spring-forward day a window that would open inside the skipped hour opens when the
  clock jumps; on the fall-back day the repeated hour is inside a window both times.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

try:
    import zoneinfo
except ImportError:  # pragma: no cover - Python < 3.9 has no zoneinfo
    zoneinfo = None

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
_WINDOW_KEYS = ("days", "start", "end", "desired")
_TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def validate_desired(value, option="desired"):
    """Return ``value`` as a non-negative int or raise InputError naming ``option``."""
    if isinstance(value, bool):
        raise InputError(option, f"must be a whole number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not re.match(r"^-?[0-9]+$", text):
            raise InputError(option, f"must be a whole number, got {value!r}")
        value = int(text)
    if not isinstance(value, int):
        raise InputError(option, f"must be a whole number, got {value!r}")
    if value < 0:
        raise InputError(option, f"must be 0 or more, got {value}")
    return value


def parse_hhmm(value, option):
    """Return minutes after midnight for an ``"HH:MM"`` string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(option, f'must be a time as "HH:MM", got {value!r}')
    if isinstance(value, int) or value.strip().isdigit():
        # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080.
        raise InputError(
            option,
            f'must be a time as "HH:MM", got the number {value}; quote the time in YAML '
            "(an unquoted 18:00 is read as 1080)",
        )
    match = _TIME_RE.match(value.strip())
    if not match:
        raise InputError(option, f'must be a time as "HH:MM" between 00:00 and 23:59, got {value!r}')
    return int(match.group(1)) * 60 + int(match.group(2))


def _format_minutes(minutes):
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_days(value, option):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InputError(option, "must be a list of day names ({}), got {!r}".format(", ".join(DAYS), value))
    if not value:
        raise InputError(option, "must list at least one day")
    days = set()
    for day in value:
        name = day.strip().lower() if isinstance(day, str) else day
        if isinstance(name, str) and name in _FULL_DAYS:
            name = _FULL_DAYS[name]
        if name not in DAYS:
            raise InputError(option, "unknown day {!r} (use {})".format(day, ", ".join(DAYS)))
        days.add(DAYS.index(name))
    return days


def validate_timezone(name, option="timezone"):
    """Return a tzinfo for an IANA zone name (``UTC`` when ``name`` is empty)."""
    if name is None or name == "":
        return datetime.timezone.utc
    if not isinstance(name, str):
        raise InputError(option, f"must be an IANA time zone name such as Europe/Berlin, got {name!r}")
    if zoneinfo is None:  # pragma: no cover
        raise InputError(option, "time zones need Python 3.9 or later (zoneinfo)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise InputError(
            option,
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin "
            "(install tzdata if the system has no zone database)",
        ) from e


def validate_schedule(windows, option="schedule"):
    """Check the ``schedule`` option and return normalised windows.

    Each returned window is a dict with ``index``, ``days`` (sorted day names),
    ``start``/``end`` (``"HH:MM"``), ``start_minute``/``end_minute``, ``crosses_midnight``
    and ``desired``.
    """
    if windows is None:
        return []
    if not isinstance(windows, (list, tuple)):
        raise InputError(option, f"must be a list of windows, got {windows!r}")
    result = []
    for index, window in enumerate(windows):
        path = f"{option}[{index}]"
        if not isinstance(window, dict):
            raise InputError(path, "must be a dict with keys {}, got {!r}".format(", ".join(_WINDOW_KEYS), window))
        unknown = sorted(set(window) - set(_WINDOW_KEYS))
        if unknown:
            raise InputError(path, "unknown key(s) {}; allowed: {}".format(", ".join(unknown), ", ".join(_WINDOW_KEYS)))
        missing = [key for key in _WINDOW_KEYS if window.get(key) is None]
        if missing:
            raise InputError(path, "missing required key(s) {}".format(", ".join(missing)))
        days = _parse_days(window["days"], path + ".days")
        start = parse_hhmm(window["start"], path + ".start")
        end = parse_hhmm(window["end"], path + ".end")
        if start == end:
            raise InputError(
                path,
                f"start and end are both {_format_minutes(start)}; a window needs a length (end before start means "
                "it crosses midnight)",
            )
        desired = validate_desired(window["desired"], path + ".desired")
        result.append(
            {
                "index": index,
                "days": [DAYS[d] for d in sorted(days)],
                "start": _format_minutes(start),
                "end": _format_minutes(end),
                "start_minute": start,
                "end_minute": end,
                "crosses_midnight": end < start,
                "desired": desired,
            }
        )
    return result


def _covers(window, weekday, minute):
    days = [DAYS.index(d) for d in window["days"]]
    start, end = window["start_minute"], window["end_minute"]
    if not window["crosses_midnight"]:
        return weekday in days and start <= minute < end
    if weekday in days and minute >= start:
        return True
    return (weekday - 1) % 7 in days and minute < end


def desired_at(now, default, windows, tz):
    """Return ``(count, window)`` for the aware datetime ``now``.

    ``windows`` is the output of :func:`validate_schedule`; ``tz`` a tzinfo (see
    :func:`validate_timezone`).  ``window`` is a plain dict describing the window in force
    (``index``, ``days``, ``start``, ``end``, ``desired``, ``local_time``) or None when the
    ``default`` applies.  ``now`` (aware) and ``default`` (a count of 0 or more) are trusted:
    the module boundary checked them (``_keeper.utc``, ``_keeper.validate_inputs``).
    """
    local = now.astimezone(tz)
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    for window in windows:
        if _covers(window, weekday, minute):
            info = {key: window[key] for key in ("index", "days", "start", "end", "desired")}
            info["days"] = list(info["days"])
            info["local_time"] = "{} {:02d}:{:02d} {}".format(
                DAYS[weekday], local.hour, local.minute, local.tzname() or ""
            ).strip()
            return window["desired"], info
    return default, None
