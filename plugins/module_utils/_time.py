# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Times as ParkingSpot reads and writes them: aware UTC datetimes, ISO 8601 with ``Z`` in tags."""

from __future__ import annotations

import datetime

UTC = datetime.timezone.utc


def to_utc(value):
    """A datetime or an ISO 8601 / data-feed style string as an aware UTC datetime; naive means UTC.

    Raises ValueError on text that is not a time.
    """
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(" UTC"):
            text = text[: -len(" UTC")]
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_time(value):
    """Strict reading of a tag or option value: an aware UTC datetime, or None unless it has a zone."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(UTC) if value.tzinfo is not None and value.utcoffset() is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if not text.endswith(("Z", "z")) and not any(sign in text[10:] for sign in "+-"):
        return None
    try:
        return to_utc(text)
    except ValueError:
        return None


def format_time(value):
    """ISO 8601 UTC with a ``Z`` suffix and whole seconds, the tag format (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
