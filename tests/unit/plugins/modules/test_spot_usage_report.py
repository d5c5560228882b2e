# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""spot_usage_report against moto in-process (EC2 and S3).

Worked around moto gaps, each on purpose:
- price history comes from ``spot_prices.FakePriceHistory`` (moto returns a constant price);
- moto does not implement the ``instance-lifecycle`` filter: the test maps it onto moto's
  instance attribute ``lifecycle`` so the module's real filter is exercised;
- moto never interrupts: interruptions are simulated by terminating instances and tagging them
  ``parkingspot:interrupted`` (and, for the request-status path, by setting the status code on
  moto's stored spot request);
- moto has no spot data feed: the tests write feed files in the documented format into a bucket.
"""

import csv
import datetime
import gzip
import os

import boto3
import pytest
from moto import mock_aws
from moto.ec2 import utils as moto_ec2_utils

from ansible_collections.parkingspot.ec2.plugins.modules import spot_usage_report
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import FakePriceHistory
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import price_series
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.utils import run_module

UTC = datetime.timezone.utc
REGION = "us-east-1"
ZONE = "us-east-1a"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(moto_ec2_utils.filter_dict_attribute_mapping, "instance-lifecycle", "lifecycle")
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION), boto3.client("s3", region_name=REGION)


def launch(ec2, image, tags=None, spot=True, itype="m5.large"):
    kwargs = {
        "ImageId": image,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceType": itype,
        "Placement": {"AvailabilityZone": ZONE},
    }
    if spot:
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot"}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    inst = ec2.run_instances(**kwargs)["Instances"][0]
    return inst["InstanceId"], inst["LaunchTime"].astimezone(UTC)


def feed_file(lines):
    header = (
        "#Version: 1.0\n#Fields: Timestamp UsageType Operation InstanceID MyBidID MyMaxPrice MarketPrice "
        "Charge Version\n"
    )
    return gzip.compress((header + "".join(line + "\n" for line in lines)).encode())


@pytest.fixture
def fleet(aws, find_image):
    ec2, s3 = aws
    image = find_image(ec2)
    ids = {}
    ids["ci1"], launched = launch(ec2, image, {"parkingspot:pool": "ci"})
    ids["ci2"], _t = launch(ec2, image, {"parkingspot:pool": "ci"})
    ids["ci_gone"], _t = launch(ec2, image, {"parkingspot:pool": "ci"})
    ids["ci_od"], _t = launch(ec2, image, {"parkingspot:pool": "ci", "parkingspot:market": "on-demand"}, spot=False)
    ids["team"], _t = launch(ec2, image, {"owner": "team-a"})
    ids["nobody"], _t = launch(ec2, image)
    ids["plain_od"], _t = launch(ec2, image, {"Name": "not spot, not pooled"}, spot=False)
    ec2.terminate_instances(InstanceIds=[ids["ci_gone"]])
    ec2.create_tags(Resources=[ids["ci_gone"]], Tags=[{"Key": "parkingspot:interrupted", "Value": "true"}])
    now = launched + datetime.timedelta(hours=2)
    prices = FakePriceHistory(price_series("m5.large", ZONE, [0.04, 0.03], launched - datetime.timedelta(hours=1)))
    return ec2, s3, ids, now, prices


def test_report_groups_costs_and_files(fleet, tmp_path):
    _ec2, _s3, ids, now, prices = fleet
    dest = tmp_path / "report"
    args = {"now": now.isoformat(), "lookback_hours": 24, "dest": str(dest), "region": REGION}
    with prices.installed():
        res = run_module(spot_usage_report.main, args)
    assert res["exit_code"] == 0, res
    assert res["changed"] is True
    rows = {r["instance_id"]: r for r in res["instances"]}
    assert set(rows) == {ids[k] for k in ("ci1", "ci2", "ci_gone", "ci_od", "team", "nobody")}
    groups = {(g["kind"], g["name"]): g for g in res["summary"]}
    assert set(groups) == {("pool", "ci"), ("owner", "team-a"), ("owner", "(no owner)")}
    ci = groups[("pool", "ci")]
    assert (ci["instances"], ci["spot"], ci["on_demand"], ci["interrupted"], ci["running"]) == (4, 3, 1, 1, 3)
    gone = rows[ids["ci_gone"]]
    assert gone["interrupted"] is True and gone["interruption_source"] == "tag"
    assert gone["end_source"] == "state_transition_reason" and gone["running"] is False
    run1 = rows[ids["ci1"]]
    assert run1["running"] is True and run1["hours"] == pytest.approx(2.0, abs=0.01)
    assert run1["cost_source"] == "price_history"
    assert run1["cost"] == pytest.approx(0.03 * 2, abs=0.001)  # 0.03 took effect at launch
    assert run1["on_demand_cost"] == pytest.approx(0.096 * 2, abs=0.002)
    assert rows[ids["ci_od"]]["market"] == "on-demand" and rows[ids["ci_od"]]["savings"] == 0
    assert len(prices.requests) == 1  # one price query for every type and zone
    # the files
    with open(dest / "usage-report.csv", encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert sorted(r["instance_id"] for r in csv_rows) == sorted(rows)
    page = (dest / "usage-report.html").read_text(encoding="utf-8")
    assert page.count("<tr") == (1 + 3) + (1 + 6) + 1  # header + 3 groups, header + 6 instances, requests header
    assert 'id="chart-pool-size"' in page and 'data-series="spot"' in page
    assert res["files"] == {"csv": str(dest / "usage-report.csv"), "html": str(dest / "usage-report.html")}

    # same inputs again: nothing changes; check mode predicts the same
    with prices.installed():
        again = run_module(spot_usage_report.main, args)
        checked = run_module(spot_usage_report.main, args, check_mode=True)
    assert again["changed"] is False and checked["changed"] is False
    assert again["summary"] == res["summary"]


def test_check_mode_writes_nothing(fleet, tmp_path):
    _ec2, _s3, _ids, now, prices = fleet
    dest = tmp_path / "new"
    with prices.installed():
        res = run_module(spot_usage_report.main, {"now": now.isoformat(), "dest": str(dest)}, check_mode=True)
    assert res["exit_code"] == 0 and res["changed"] is True
    assert not dest.exists()


def test_pools_filter_and_owner_tag(fleet):
    _ec2, _s3, ids, now, prices = fleet
    with prices.installed():
        res = run_module(spot_usage_report.main, {"pools": ["ci"], "now": now.isoformat()})
    assert {r["instance_id"] for r in res["instances"]} == {ids[k] for k in ("ci1", "ci2", "ci_gone", "ci_od")}
    with prices.installed():
        res = run_module(
            spot_usage_report.main,
            {"pools": ["ci"], "include_unpooled_spot": True, "owner_tag": "Name", "now": now.isoformat()},
        )
    names = {(g["kind"], g["name"]) for g in res["summary"]}
    assert names == {("pool", "ci"), ("owner", "(no owner)")}


def test_datafeed_charges_and_malformed_lines(fleet):
    _ec2, s3, ids, now, prices = fleet
    s3.create_bucket(Bucket="feed")
    hour = (now - datetime.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    stamp = hour.strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        (
            f"{stamp}\tUSE1-SpotUsage:m5.large\tRunInstances:SV050\t{ids['ci1']}\tsir-1\t0.096 USD\t0.030 USD\t"
            "0.030 USD\t1"
        ),
        (
            f"{stamp}\tUSE1-SpotUsage:m5.large\tRunInstances:SV050\ti-0feedonly000000\tsir-2\t0.096 USD\t0.030 USD\t"
            "0.015 USD\t1"
        ),
        "garbage without tabs",
        f"{stamp}\tUSE1-SpotUsage:m5.large\tRunInstances\t{ids['ci2']}\tsir-3\t0.096 USD\tn/a USD\t0.01 USD\t1",
    ]
    key = f"feed/123456789012.{hour.strftime('%Y-%m-%d-%H')}.001.abcd1234.gz"
    s3.put_object(Bucket="feed", Key=key, Body=feed_file(lines))
    old = f"feed/123456789012.{(hour - datetime.timedelta(days=30)).strftime('%Y-%m-%d-%H')}.001.abcd1234.gz"
    s3.put_object(Bucket="feed", Key=old, Body=feed_file(lines[:1]))
    with prices.installed():
        res = run_module(
            spot_usage_report.main,
            {"now": now.isoformat(), "lookback_hours": 24, "datafeed_bucket": "feed", "datafeed_prefix": "feed/"},
        )
    assert res["exit_code"] == 0, res
    assert res["datafeed"]["files"] == 1  # the 30-day-old file is outside the window and never read
    assert res["datafeed"]["records"] == 2 and res["datafeed"]["skipped"] == 2
    assert {s["line"] for s in res["datafeed"]["skipped_lines"]} == {5, 6}
    rows = {r["instance_id"]: r for r in res["instances"]}
    assert rows[ids["ci1"]]["cost"] == 0.03 and rows[ids["ci1"]]["cost_source"] == "datafeed"
    assert rows[ids["ci2"]]["cost_source"] == "price_history"
    assert rows["i-0feedonly000000"]["pool"] == "(data feed only)" and rows["i-0feedonly000000"]["hours"] == 0.5


def test_interruption_from_spot_request_status_and_persistent_validity(aws, find_image):
    ec2, _s3 = aws
    image = find_image(ec2)
    past = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    req = ec2.request_spot_instances(
        InstanceCount=1,
        Type="persistent",
        ValidUntil=past,
        LaunchSpecification={"ImageId": image, "InstanceType": "m5.large"},
        TagSpecifications=[
            {"ResourceType": "spot-instances-request", "Tags": [{"Key": "parkingspot:pool", "Value": "ci"}]}
        ],
    )["SpotInstanceRequests"][0]
    described = ec2.describe_spot_instance_requests()["SpotInstanceRequests"][0]
    iid = described["InstanceId"]
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "parkingspot:pool", "Value": "ci"}])
    # moto never interrupts: set the status EC2 would show after a capacity interruption
    from moto.ec2.models import ec2_backends

    backend = ec2_backends["123456789012"][REGION]
    backend.spot_instance_requests[req["SpotInstanceRequestId"]]._status_code = "instance-terminated-no-capacity"
    ec2.terminate_instances(InstanceIds=[iid])
    now = datetime.datetime.now(UTC) + datetime.timedelta(minutes=30)
    res = run_module(spot_usage_report.main, {"now": now.isoformat(), "lookback_hours": 2})
    assert res["exit_code"] == 0, res
    row = next(r for r in res["instances"] if r["instance_id"] == iid)
    assert row["interrupted"] is True and row["interruption_source"] == "spot_request_status"
    assert row["request_type"] == "persistent" and row["valid_until"] == "2020-01-01T00:00:00Z"
    request = next(r for r in res["spot_requests"] if r["spot_request_id"] == req["SpotInstanceRequestId"])
    assert request["expired"] is True and request["re_evaluated"] is False


@pytest.mark.parametrize(
    "args,option",
    [
        ({"lookback_hours": 0}, "lookback_hours"),
        ({"now": "yesterday"}, "now"),
        ({"pools": [""]}, "pools"),
        ({"on_demand_prices": {"m5.large": -1}}, "on_demand_prices"),
    ],
)
def test_bad_input_names_the_option(aws, args, option):
    res = run_module(spot_usage_report.main, args)
    assert res["exit_code"] == 1 and res["option"] == option and res["msg"].startswith(option + ":"), res


def test_dest_not_writable_fails_before_reading(aws, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for dest in (blocker, blocker / "below"):
        res = run_module(spot_usage_report.main, {"dest": str(dest)})
        assert res["exit_code"] == 1 and res["option"] == "dest" and res["msg"].startswith("dest:"), res
    assert blocker.read_text() == "not a directory"
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        res = run_module(spot_usage_report.main, {"dest": str(locked)})
        assert res["option"] == "dest" and "not writable" in res["msg"]
        assert os.listdir(locked) == []


def test_missing_datafeed_bucket_is_a_clear_error(aws):
    res = run_module(spot_usage_report.main, {"datafeed_bucket": "no-such-bucket"})
    assert res["exit_code"] == 1 and "no-such-bucket" in res["msg"], res


# --- dest as an S3 URL ---------------------------------------------------------------------------


def bucket_keys(s3, bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_s3_dest_uploads_both_files_under_the_prefix(fleet):
    _ec2, s3, ids, now, prices = fleet
    s3.create_bucket(Bucket="reports")
    args = {"now": now.isoformat(), "lookback_hours": 24, "dest": "s3://reports/spot/nightly/"}
    with prices.installed():
        res = run_module(spot_usage_report.main, args)
    assert res["exit_code"] == 0, res
    assert res["changed"] is True
    assert res["files"] == {
        "csv": "s3://reports/spot/nightly/usage-report.csv",
        "html": "s3://reports/spot/nightly/usage-report.html",
    }
    assert bucket_keys(s3, "reports") == ["spot/nightly/usage-report.csv", "spot/nightly/usage-report.html"]
    csv_obj = s3.get_object(Bucket="reports", Key="spot/nightly/usage-report.csv")
    html_obj = s3.get_object(Bucket="reports", Key="spot/nightly/usage-report.html")
    assert csv_obj["ContentType"].split(";")[0] == "text/csv"
    assert html_obj["ContentType"].split(";")[0] == "text/html"
    csv_rows = list(csv.DictReader(csv_obj["Body"].read().decode("utf-8").splitlines()))
    assert {r["instance_id"] for r in csv_rows} == {r["instance_id"] for r in res["instances"]}
    assert ids["ci1"] in {r["instance_id"] for r in csv_rows}
    assert 'id="chart-pool-size"' in html_obj["Body"].read().decode("utf-8")


def test_s3_dest_bucket_root(fleet):
    _ec2, s3, _ids, now, prices = fleet
    s3.create_bucket(Bucket="reports")
    with prices.installed():
        res = run_module(spot_usage_report.main, {"now": now.isoformat(), "dest": "s3://reports"})
    assert res["exit_code"] == 0, res
    assert bucket_keys(s3, "reports") == ["usage-report.csv", "usage-report.html"]
    assert res["files"]["csv"] == "s3://reports/usage-report.csv"


def test_s3_dest_check_mode_writes_nothing(fleet):
    _ec2, s3, _ids, now, prices = fleet
    s3.create_bucket(Bucket="reports")
    with prices.installed():
        res = run_module(spot_usage_report.main, {"now": now.isoformat(), "dest": "s3://reports/x"}, check_mode=True)
    assert res["exit_code"] == 0 and res["changed"] is True, res
    assert res["files"] == {"csv": "s3://reports/x/usage-report.csv", "html": "s3://reports/x/usage-report.html"}
    assert bucket_keys(s3, "reports") == []


@pytest.mark.parametrize(
    "dest", ["s3://", "s3:///prefix", "s3://Upper-Case", "s3://ab", "s3://bad..dots", "s3://-dash", "s3://10.0.0.1"]
)
def test_s3_dest_bad_url_fails_before_any_call(aws, monkeypatch, dest):
    calls = []

    def no_client(self, *args, **kwargs):
        calls.append(args)
        raise AssertionError("no AWS client may be created for a bad dest")

    monkeypatch.setattr(spot_usage_report.AnsibleAWSModule, "client", no_client)
    res = run_module(spot_usage_report.main, {"dest": dest})
    assert res["exit_code"] == 1 and res["option"] == "dest" and res["msg"].startswith("dest:"), res
    assert calls == []


def test_s3_dest_failing_second_upload_leaves_nothing(fleet, monkeypatch):
    _ec2, s3, _ids, now, prices = fleet
    s3.create_bucket(Bucket="reports")
    real_put = spot_usage_report._aws_s3.put_report_object
    attempted = []

    def put(client, bucket, key, body, content_type):
        attempted.append(key)
        if key.endswith(".html"):
            # the real call against a bucket that does not exist: a genuine AWS error through the handler
            return real_put(client, "no-such-bucket-for-html", key, body, content_type)
        return real_put(client, bucket, key, body, content_type)

    monkeypatch.setattr(spot_usage_report._aws_s3, "put_report_object", put)
    with prices.installed():
        res = run_module(spot_usage_report.main, {"now": now.isoformat(), "dest": "s3://reports/p"})
    assert res["exit_code"] == 1, res
    assert attempted == ["p/usage-report.csv", "p/usage-report.html"]
    assert "usage-report.html" in res["msg"]
    assert bucket_keys(s3, "reports") == []  # the CSV written first was deleted again
