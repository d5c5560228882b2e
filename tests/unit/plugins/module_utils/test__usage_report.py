# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The usage report service: its reads, shapes and filters (the whole run is driven through the
module on moto in tests/unit/plugins/modules/test_spot_usage_report.py)."""

import datetime
import gzip

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage_report

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 1, 7, 12, tzinfo=UTC)


def raw_instance(iid, platform=None, **extra):
    raw = {
        "InstanceId": iid,
        "InstanceType": "m5.large",
        "InstanceLifecycle": "spot",
        "LaunchTime": NOW - datetime.timedelta(hours=2),
        "Placement": {"AvailabilityZone": "us-east-1a"},
    }
    if platform:
        raw["PlatformDetails"] = platform
    raw.update(extra)
    return raw


def test_price_history_is_read_for_every_priced_platform(monkeypatch):
    asked = {}

    def history(client, **query):
        asked.update(query)
        return [], 1

    monkeypatch.setattr(_usage_report._aws_pricing, "describe_spot_price_history", history)
    platforms = {"i-1": None, "i-2": "Windows", "i-3": "Red Hat BYOL Linux"}
    instances = [_usage_report.report_instance(raw_instance(iid, platform)) for iid, platform in platforms.items()]
    _usage_report.read_prices(None, instances, set(), NOW)
    assert asked["ProductDescriptions"] == ["Linux/UNIX", "Windows"]


def test_report_shapes_are_the_normalised_ones_plus_what_only_the_report_needs():
    raw = raw_instance("i-1", "Windows", Tags=[{"Key": "parkingspot:pool", "Value": "ci"}])
    instance = _usage_report.report_instance(raw)
    assert instance == dict(_aws.normalize_instance(raw), platform="Windows")
    assert instance["tags"] == {"parkingspot:pool": "ci"} and instance["market"] == "spot"
    assert _usage_report.report_instance(raw_instance("i-2"))["platform"] is None

    changed = datetime.datetime(2030, 1, 7, 9, 30, 0, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    raw_request = {"SpotInstanceRequestId": "sir-1", "State": "closed", "Status": {"Code": "x", "UpdateTime": changed}}
    request = _usage_report.report_request(raw_request)
    assert request == dict(_aws.normalize_spot_request(raw_request), status_update_time=changed.astimezone(UTC))
    assert _usage_report.report_request({"SpotInstanceRequestId": "sir-2"})["status_update_time"] is None


def test_related_requests_are_those_of_the_instances_and_of_the_pools():
    def request(rid, instance_id=None, pool=None):
        tags = [{"Key": "parkingspot:pool", "Value": pool}] if pool else []
        return _usage_report.report_request({"SpotInstanceRequestId": rid, "InstanceId": instance_id, "Tags": tags})

    requests = [request("sir-i", "i-1"), request("sir-ci", pool="ci"), request("sir-web", pool="web"), request("sir-x")]
    kept = _usage_report.related_requests(requests, {"i-1"}, ["ci"])
    assert [r["spot_instance_request_id"] for r in kept] == ["sir-i", "sir-ci"]
    kept = _usage_report.related_requests(requests, set(), None)
    assert [r["spot_instance_request_id"] for r in kept] == ["sir-ci", "sir-web"]


def test_rows_in_the_window_started_before_its_end_and_ended_after_its_start():
    start = NOW - datetime.timedelta(hours=24)

    def row(begin, end=None):
        return {"start": begin, "end": end}

    assert _usage_report.in_window(row("2030-01-06T00:00:00Z"), start, NOW)  # still running
    assert _usage_report.in_window(row("2030-01-06T00:00:00Z", "2030-01-06T12:00:00Z"), start, NOW)
    assert not _usage_report.in_window(row("2030-01-06T00:00:00Z", "2030-01-06T11:59:59Z"), start, NOW)
    assert not _usage_report.in_window(row("2030-01-07T12:00:01Z"), start, NOW)


def test_read_datafeed_reads_only_the_files_of_the_window(monkeypatch):
    def feed(hour, charge):
        line = f"{hour}\tUSE1-SpotUsage:m5.large\tRunInstances\ti-1\tsir-1\t0.1 USD\t0.02 USD\t{charge} USD\t1\n"
        return gzip.compress(line.encode())

    objects = {
        "p/123.2030-01-06-10.001.ab.gz": feed("2030-01-06 10:00:00 UTC", "0.02"),  # before the window's first hour
        "p/123.2030-01-06-11.001.ab.gz": feed("2030-01-06 11:00:00 UTC", "0.01"),
        "p/123.2030-01-07-12.001.ab.gz": feed("2030-01-07 12:00:00 UTC", "0.02"),
        "p/123.2030-01-07-13.001.ab.gz": feed("2030-01-07 13:00:00 UTC", "0.02"),  # after now
        "p/123.2030-01-07-11.001.ab.gz": None,  # listed, then gone
        "p/notes.txt": b"not a feed file",
    }
    read = []

    def get(client, bucket, key):
        read.append(key)
        return objects[key]

    monkeypatch.setattr(
        _usage_report._aws_pricing, "list_datafeed_objects", lambda c, b, p: ([{"Key": k} for k in objects], 1)
    )
    monkeypatch.setattr(_usage_report._aws_pricing, "get_datafeed_object", get)
    records, stats = _usage_report.read_datafeed(None, "feed", "p/", NOW - datetime.timedelta(hours=24), NOW)
    assert read == ["p/123.2030-01-06-11.001.ab.gz", "p/123.2030-01-07-11.001.ab.gz", "p/123.2030-01-07-12.001.ab.gz"]
    assert [r["charge"] for r in records] == [0.01, 0.02]
    assert stats == {"files": 2, "records": 2, "skipped": 0, "skipped_lines": []}
