# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to read and write times across the collection."""

import datetime

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _time

EXPECTED = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00 UTC", "2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00"],
)
def test_to_utc_reads_every_form_we_meet(text):
    assert _time.to_utc(text) == EXPECTED


def test_to_utc_rejects_garbage():
    with pytest.raises(ValueError):
        _time.to_utc("tomorrow")


@pytest.mark.parametrize("text", ["2024-05-01T10:00:00", "", "soon", None, datetime.datetime(2024, 5, 1, 10)])
def test_parse_time_is_strict_about_zones(text):
    assert _time.parse_time(text) is None


def test_parse_time_and_format_time_round_trip():
    parsed = _time.parse_time("2024-05-01T12:00:00.5+02:00")
    assert parsed == EXPECTED.replace(microsecond=500000)
    assert _time.format_time(parsed) == "2024-05-01T10:00:00Z"
    assert _time.format_time(None) is None
