"""Schedule windows: validation messages, midnight crossing, DST days (plain data only)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import DAYS
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import desired_at
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_desired
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_schedule
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_timezone

UTC = datetime.timezone.utc
BERLIN = validate_timezone("Europe/Berlin")
NEW_YORK = validate_timezone("America/New_York")


def local(tz, *args):
    """An aware datetime at a wall-clock time in ``tz`` (2026-11-23 is a Monday)."""
    return datetime.datetime(*args, tzinfo=tz)


def utc(*args):
    return datetime.datetime(*args, tzinfo=UTC)


WORKDAYS = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00", "desired": 10}]
FRIDAY_NIGHT = [{"days": ["fri"], "start": "22:00", "end": "02:00", "desired": 3}]


# ------------------------------------------------------------------ validation


def test_window_is_normalised():
    windows = validate_schedule([{"days": ["Friday", "MON", "mon"], "start": "8:05", "end": "18:00", "desired": "4"}])
    assert windows == [
        {
            "index": 0,
            "days": ["mon", "fri"],
            "start": "08:05",
            "end": "18:00",
            "start_minute": 485,
            "end_minute": 1080,
            "crosses_midnight": False,
            "desired": 4,
        }
    ]


def test_no_schedule_is_an_empty_list():
    assert validate_schedule(None) == []
    assert validate_schedule([]) == []


@pytest.mark.parametrize(
    "schedule, message",
    [
        (
            [WORKDAYS[0], {"days": ["mondy"], "start": "08:00", "end": "09:00", "desired": 1}],
            "schedule[1].days: unknown day 'mondy' (use mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            [{"days": [], "start": "08:00", "end": "09:00", "desired": 1}],
            "schedule[0].days: must list at least one day",
        ),
        ([{"days": "mon", "start": "08:00", "end": "09:00", "desired": 1}], "schedule[0].days: must be a list"),
        ([{"days": [1], "start": "08:00", "end": "09:00", "desired": 1}], "schedule[0].days: unknown day 1"),
        ([{"days": ["mon"], "start": "24:00", "end": "09:00", "desired": 1}], "schedule[0].start: must be a time"),
        ([{"days": ["mon"], "start": "08:60", "end": "09:00", "desired": 1}], "schedule[0].start: must be a time"),
        ([{"days": ["mon"], "start": "08:00", "end": "9h", "desired": 1}], "schedule[0].end: must be a time"),
        ([{"days": ["mon"], "start": "08:00", "end": 1080, "desired": 1}], "quote the time in YAML"),
        (
            [{"days": ["mon"], "start": "08:00", "end": "08:00", "desired": 1}],
            "schedule[0]: start and end are both 08:00",
        ),
        (
            [{"days": ["mon"], "start": "08:00", "end": "09:00", "desired": -1}],
            "schedule[0].desired: must be 0 or more",
        ),
        (
            [{"days": ["mon"], "start": "08:00", "end": "09:00", "desired": True}],
            "schedule[0].desired: must be a whole",
        ),
        ([{"days": ["mon"], "start": "08:00", "end": "09:00", "desired": "x"}], "schedule[0].desired: must be a whole"),
        ([{"days": ["mon"], "start": "08:00", "end": "09:00"}], "schedule[0]: missing required key(s) desired"),
        (
            [{"days": ["mon"], "start": "08:00", "end": "09:00", "desired": 1, "timezone": "UTC"}],
            "schedule[0]: unknown key(s) timezone",
        ),
        (["mon 08:00-09:00"], "schedule[0]: must be a dict"),
        ({"days": ["mon"]}, "schedule: must be a list of windows"),
    ],
)
def test_bad_schedule_names_the_option(schedule, message):
    with pytest.raises(InputError) as err:
        validate_schedule(schedule)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_error_option_attribute_is_the_path():
    with pytest.raises(InputError) as err:
        validate_schedule([WORKDAYS[0], {"days": ["mondy"], "start": "08:00", "end": "09:00", "desired": 1}])
    assert err.value.option == "schedule[1].days"
    assert str(err.value) == "schedule[1].days: unknown day 'mondy' (use mon, tue, wed, thu, fri, sat, sun)"


@pytest.mark.parametrize("value, expected", [(0, 0), (7, 7), ("12", 12), (" 3 ", 3)])
def test_validate_desired_accepts_whole_numbers(value, expected):
    assert validate_desired(value) == expected


@pytest.mark.parametrize("value", [-1, "-2", True, 1.5, None, "ten"])
def test_validate_desired_rejects(value):
    with pytest.raises(InputError) as err:
        validate_desired(value)
    assert str(err.value).startswith("desired: must be")


def test_validate_desired_uses_given_option_name():
    with pytest.raises(InputError, match=r"^pool\.desired: must be 0 or more, got -5$"):
        validate_desired(-5, option="pool.desired")


def test_timezones():
    assert validate_timezone(None) is UTC
    assert validate_timezone("") is UTC
    assert str(validate_timezone("Europe/Berlin")) == "Europe/Berlin"
    for bad in ("Europe/Berlinn", "../../etc/passwd", "Mars/Olympus", 5):
        with pytest.raises(InputError) as err:
            validate_timezone(bad)
        assert str(err.value).startswith("timezone: ")


# ------------------------------------------------------------------ desired_at


@pytest.mark.parametrize(
    "when, expected",
    [
        (utc(2026, 11, 23, 7, 59), 2),  # Monday before opening
        (utc(2026, 11, 23, 8, 0), 10),  # opening minute is inside
        (utc(2026, 11, 23, 17, 59), 10),
        (utc(2026, 11, 23, 18, 0), 2),  # end is exclusive
        (utc(2026, 11, 28, 12, 0), 2),  # Saturday
    ],
)
def test_plain_window(when, expected):
    windows = validate_schedule(WORKDAYS)
    count, window = desired_at(when, 2, windows, UTC)
    assert count == expected
    assert (window is not None) == (expected == 10)


def test_window_info_is_plain_data():
    count, window = desired_at(utc(2026, 11, 23, 9, 30), 0, validate_schedule(WORKDAYS), BERLIN)
    assert count == 10
    assert window == {
        "index": 0,
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "08:00",
        "end": "18:00",
        "desired": 10,
        "local_time": "mon 10:30 CET",
    }


@pytest.mark.parametrize(
    "when, expected",
    [
        (utc(2026, 11, 27, 21, 59), 0),  # Fri before start
        (utc(2026, 11, 27, 22, 0), 3),  # Fri start
        (utc(2026, 11, 27, 23, 59), 3),
        (utc(2026, 11, 28, 0, 0), 3),  # Sat after midnight: still Friday's window
        (utc(2026, 11, 28, 1, 59), 3),
        (utc(2026, 11, 28, 2, 0), 0),  # Sat end
        (utc(2026, 11, 27, 1, 0), 0),  # Fri early morning: Thursday is not listed
        (utc(2026, 11, 28, 22, 30), 0),  # Sat evening
    ],
)
def test_window_crossing_midnight(when, expected):
    count, _window = desired_at(when, 0, validate_schedule(FRIDAY_NIGHT), UTC)
    assert count == expected


def test_sunday_night_window_spills_into_monday():
    windows = validate_schedule([{"days": ["sun"], "start": "22:00", "end": "06:00", "desired": 5}])
    assert desired_at(utc(2026, 11, 30, 5, 59), 1, windows, UTC)[0] == 5  # Monday 05:59
    assert desired_at(utc(2026, 11, 30, 6, 0), 1, windows, UTC)[0] == 1
    assert desired_at(utc(2026, 11, 23, 5, 0), 1, windows, UTC)[0] == 5  # also the Monday before


def test_end_at_midnight_means_until_midnight():
    windows = validate_schedule([{"days": ["mon"], "start": "18:00", "end": "00:00", "desired": 4}])
    assert windows[0]["crosses_midnight"] is True
    assert desired_at(utc(2026, 11, 23, 23, 59), 0, windows, UTC)[0] == 4
    assert desired_at(utc(2026, 11, 24, 0, 0), 0, windows, UTC)[0] == 0


def test_first_matching_window_wins():
    windows = validate_schedule(
        [
            {"days": ["mon"], "start": "12:00", "end": "13:00", "desired": 1},
            {"days": ["mon"], "start": "08:00", "end": "18:00", "desired": 10},
        ]
    )
    assert desired_at(utc(2026, 11, 23, 12, 30), 0, windows, UTC)[:1] == (1,)
    count, window = desired_at(utc(2026, 11, 23, 13, 0), 0, windows, UTC)
    assert (count, window["index"]) == (10, 1)


def test_window_uses_the_zone_not_utc():
    windows = validate_schedule(WORKDAYS)
    # 07:30 UTC is 08:30 in Berlin in winter (UTC+1): open there, not in UTC.
    assert desired_at(utc(2026, 11, 23, 7, 30), 0, windows, BERLIN)[0] == 10
    assert desired_at(utc(2026, 11, 23, 7, 30), 0, windows, UTC)[0] == 0
    # 12:30 UTC is 07:30 in New York (UTC-5): closed there.
    assert desired_at(utc(2026, 11, 23, 12, 30), 0, windows, NEW_YORK)[0] == 0


def test_dst_spring_forward_keeps_local_hours():
    # Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29 at 01:00 UTC.
    windows = validate_schedule([{"days": ["sun"], "start": "08:00", "end": "18:00", "desired": 6}])
    # One week earlier 06:30 UTC is 07:30 local: closed.  On the DST day it is 08:30 local: open.
    assert desired_at(utc(2026, 3, 22, 6, 30), 0, windows, BERLIN)[0] == 0
    assert desired_at(utc(2026, 3, 29, 6, 30), 0, windows, BERLIN)[0] == 6
    # Closing follows the wall clock too: 16:00 UTC is 18:00 local after the change.
    assert desired_at(utc(2026, 3, 29, 15, 59), 0, windows, BERLIN)[0] == 6
    assert desired_at(utc(2026, 3, 29, 16, 0), 0, windows, BERLIN)[0] == 0


def test_dst_window_starting_in_the_skipped_hour_opens_at_the_jump():
    windows = validate_schedule([{"days": ["sun"], "start": "02:30", "end": "04:00", "desired": 2}])
    assert desired_at(utc(2026, 3, 29, 0, 59), 0, windows, BERLIN)[0] == 0  # 01:59 CET
    count, window = desired_at(utc(2026, 3, 29, 1, 0), 0, windows, BERLIN)  # 03:00 CEST
    assert count == 2
    assert window["local_time"] == "sun 03:00 CEST"


def test_dst_fall_back_repeated_hour_is_inside_both_times():
    # Berlin goes from UTC+2 back to UTC+1 on Sunday 2026-10-25 at 01:00 UTC (03:00 -> 02:00).
    windows = validate_schedule([{"days": ["sun"], "start": "02:00", "end": "03:00", "desired": 1}])
    assert desired_at(utc(2026, 10, 24, 23, 59), 0, windows, BERLIN)[0] == 0  # 01:59 CEST
    assert desired_at(utc(2026, 10, 25, 0, 30), 0, windows, BERLIN)[0] == 1  # 02:30 CEST
    assert desired_at(utc(2026, 10, 25, 1, 30), 0, windows, BERLIN)[0] == 1  # 02:30 CET
    assert desired_at(utc(2026, 10, 25, 2, 0), 0, windows, BERLIN)[0] == 0  # 03:00 CET


def test_dst_new_york_overnight_window():
    # New York springs forward on Sunday 2026-03-08 (02:00 -> 03:00 EDT).
    windows = validate_schedule([{"days": ["sat"], "start": "22:00", "end": "06:00", "desired": 4}])
    # 05:59 EDT on Sunday is 09:59 UTC; 06:00 EDT is 10:00 UTC.
    assert desired_at(utc(2026, 3, 8, 9, 59), 0, windows, NEW_YORK)[0] == 4
    assert desired_at(utc(2026, 3, 8, 10, 0), 0, windows, NEW_YORK)[0] == 0
    # A week before (EST, UTC-5) 10:30 UTC is 05:30 local: still open.
    assert desired_at(utc(2026, 3, 1, 10, 30), 0, windows, NEW_YORK)[0] == 4


# ------------------------------------------------------------------ property


def _covered_by_brute_force(days, start, end, weekday, minute):
    """Walk the window minute by minute from each listed day's start (an independent rule)."""
    length = (end - start) % 1440
    for day in days:
        day_index = DAYS.index(day)
        offset = (weekday - day_index) % 7 * 1440 + minute - start
        if 0 <= offset < length or 0 <= offset + 7 * 1440 < length:
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(
    days=st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True),
    start=st.integers(0, 1439),
    end=st.integers(0, 1439),
    weekday=st.integers(0, 6),
    minute=st.integers(0, 1439),
)
def test_membership_matches_brute_force(days, start, end, weekday, minute):
    if start == end:
        return
    window = {"days": days, "start": f"{start // 60:02d}:{start % 60:02d}", "end": f"{end // 60:02d}:{end % 60:02d}"}
    windows = validate_schedule([dict(window, desired=9)])
    when = utc(2026, 11, 23) + datetime.timedelta(days=weekday, minutes=minute)  # 2026-11-23 is a Monday
    assert desired_at(when, 0, windows, UTC)[0] == (
        9 if _covered_by_brute_force(days, start, end, weekday, minute) else 0
    )
