# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When the desired count changes next: openings, closings, midnight and DST days (plain data only)."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.bench.schedule_changes import next_change
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import DAYS
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import desired_at
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_schedule
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_timezone

UTC = datetime.timezone.utc
BERLIN = validate_timezone("Europe/Berlin")
WORKDAYS = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00", "desired": 10}]
FRIDAY_NIGHT = [{"days": ["fri"], "start": "22:00", "end": "02:00", "desired": 3}]


def utc(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def test_next_change_opening_and_closing():
    windows = validate_schedule(WORKDAYS)
    assert next_change(utc(2026, 11, 23, 6, 0), 2, windows, BERLIN) == {
        "at": "2026-11-23T07:00:00Z",  # 08:00 CET
        "desired": 10,
        "window": 0,
    }
    assert next_change(utc(2026, 11, 23, 7, 0), 2, windows, BERLIN) == {
        "at": "2026-11-23T17:00:00Z",  # 18:00 CET
        "desired": 2,
        "window": None,
    }
    # Friday evening: next change is Monday morning.
    assert next_change(utc(2026, 11, 27, 18, 0), 2, windows, BERLIN)["at"] == "2026-11-30T07:00:00Z"


def test_next_change_skips_boundaries_that_change_nothing():
    windows = validate_schedule(
        [
            {"days": ["mon"], "start": "08:00", "end": "12:00", "desired": 5},
            {"days": ["mon"], "start": "12:00", "end": "18:00", "desired": 5},
        ]
    )
    # 12:00 switches window (index 0 -> 1): reported, since the window in force changes.
    assert next_change(utc(2026, 11, 23, 9, 0), 0, windows, UTC)["at"] == "2026-11-23T12:00:00Z"
    assert next_change(utc(2026, 11, 23, 9, 0), 0, [], UTC) is None


def test_next_change_across_midnight():
    windows = validate_schedule(FRIDAY_NIGHT)
    assert next_change(utc(2026, 11, 27, 23, 0), 0, windows, UTC) == {
        "at": "2026-11-28T02:00:00Z",
        "desired": 0,
        "window": None,
    }


def test_next_change_in_a_dst_gap_is_the_jump():
    windows = validate_schedule([{"days": ["sun"], "start": "02:30", "end": "04:00", "desired": 2}])
    assert next_change(utc(2026, 3, 29, 0, 0), 0, windows, BERLIN) == {
        "at": "2026-03-29T01:00:00Z",  # 02:00 CET -> 03:00 CEST
        "desired": 2,
        "window": 0,
    }


def test_next_change_on_fall_back_day():
    windows = validate_schedule([{"days": ["sun"], "start": "02:00", "end": "03:00", "desired": 1}])
    # 02:00 CEST is 00:00 UTC; the window ends at 03:00 CET (02:00 UTC), two hours later.
    assert next_change(utc(2026, 10, 24, 23, 0), 0, windows, BERLIN)["at"] == "2026-10-25T00:00:00Z"
    assert next_change(utc(2026, 10, 25, 0, 0), 0, windows, BERLIN)["at"] == "2026-10-25T02:00:00Z"


@settings(max_examples=25, deadline=None)
@given(
    days=st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True),
    start=st.integers(0, 95).map(lambda q: q * 15),
    end=st.integers(0, 95).map(lambda q: q * 15),
    offset_minutes=st.integers(0, 7 * 1440),
)
def test_next_change_is_the_first_change_minute_by_minute(days, start, end, offset_minutes):
    if start == end:
        return
    window = {"days": days, "start": f"{start // 60:02d}:{start % 60:02d}", "end": f"{end // 60:02d}:{end % 60:02d}"}
    windows = validate_schedule([dict(window, desired=4)])
    # A week around Berlin's spring-forward day, so some cases cross the DST change.
    now = utc(2026, 3, 25) + datetime.timedelta(minutes=offset_minutes)
    found = next_change(now, 1, windows, BERLIN)
    assert found is not None  # a weekly window always changes within 8 days
    change = datetime.datetime.strptime(found["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    current = desired_at(now, 1, windows, BERLIN)[0]
    assert desired_at(change, 1, windows, BERLIN)[0] == found["desired"] != current
    minute = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    while minute < change:
        assert desired_at(minute, 1, windows, BERLIN)[0] == current, minute
        minute += datetime.timedelta(minutes=1)
