# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Count the AWS requests (and time) of spot_price_info and spot_usage_report.

Runs the modules in-process against moto; spot price history is served by the tests' paging
fake (moto's own is a constant). Every request any botocore client makes is counted by
operation name. Run from the collection root with the collections path on PYTHONPATH:

    PYTHONPATH=<dir holding ansible_collections> python bench/pricing_requests.py
"""

import collections
import datetime
import os
import sys
import tempfile
import time

import boto3
import botocore.handlers
from moto import mock_aws
from moto.ec2 import utils as moto_ec2_utils

from ansible_collections.parkingspot.ec2.plugins.modules import spot_price_info
from ansible_collections.parkingspot.ec2.plugins.modules import spot_usage_report
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import FakePriceHistory
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import price_series
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.utils import run_module

UTC = datetime.timezone.utc
TYPES = [
    "m5.large",
    "m5.xlarge",
    "m6i.large",
    "m6i.xlarge",
    "c5.large",
    "c5.xlarge",
    "c6i.large",
    "c6i.xlarge",
    "m6g.large",
    "c6g.large",
]
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]


class Counter:
    def __init__(self):
        self.calls = collections.Counter()

    def __call__(self, model, **_kwargs):
        self.calls[model.name] += 1

    def __enter__(self):
        self.entry = ("before-parameter-build", self)  # fires for every request, even answered ones
        botocore.handlers.BUILTIN_HANDLERS.append(self.entry)
        return self

    def __exit__(self, *exc):
        botocore.handlers.BUILTIN_HANDLERS.remove(self.entry)


def bench_price_info(hours):
    now = datetime.datetime.now(UTC)
    records = []
    for itype in TYPES:
        for zone in ZONES:
            records += price_series(
                itype,
                zone,
                [0.03 + (hash((itype, zone, i)) % 20) / 1000 for i in range(hours)],
                now - datetime.timedelta(hours=hours - 1),
            )
    fake = FakePriceHistory(records)
    with mock_aws(), fake.installed(), Counter() as counter:
        started = time.perf_counter()
        res = run_module(
            spot_price_info.main, {"instance_types": TYPES, "lookback_hours": hours, "region": "us-east-1"}
        )
        elapsed = time.perf_counter() - started
    assert res["exit_code"] == 0, res
    return {
        "records": len(records),
        "pairs": len(TYPES) * len(ZONES),
        "calls": dict(counter.calls),
        "total": sum(counter.calls.values()),
        "naive_min": len(TYPES) * len(ZONES),
        "seconds": elapsed,
    }


def bench_usage(instances):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
        for start in range(0, instances, 100):
            count = min(100, instances - start)
            ec2.run_instances(
                ImageId=image,
                MinCount=count,
                MaxCount=count,
                InstanceType="m5.large",
                Placement={"AvailabilityZone": "us-east-1a"},
                InstanceMarketOptions={"MarketType": "spot"},
                TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": "ci"}]}],
            )
        now = datetime.datetime.now(UTC) + datetime.timedelta(hours=3)
        fake = FakePriceHistory(
            price_series("m5.large", "us-east-1a", [0.03, 0.04, 0.035], now - datetime.timedelta(hours=4))
        )
        with fake.installed(), Counter() as counter:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as dest:
                res = run_module(spot_usage_report.main, {"now": now.isoformat(), "region": "us-east-1", "dest": dest})
                elapsed = time.perf_counter() - started
    assert res["exit_code"] == 0 and res["totals"]["instances"] == instances, res
    return {
        "instances": instances,
        "calls": dict(counter.calls),
        "total": sum(counter.calls.values()),
        "seconds": elapsed,
    }


def main():
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    # moto lacks the instance-lifecycle filter the report uses for unpooled spot
    moto_ec2_utils.filter_dict_attribute_mapping["instance-lifecycle"] = "lifecycle"
    print("## spot_price_info: 10 types x 6 zones, one price change per hour")
    print("| lookback h | records | AWS requests (by operation) | total | one-query-per-pair minimum | seconds |")
    print("|---|---|---|---|---|---|")
    for hours in (24, 168, 720):
        r = bench_price_info(hours)
        calls = ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items()))
        print(f"| {hours} | {r['records']} | {calls} | {r['total']} | {r['naive_min']} | {r['seconds']:.2f} |")
    print()
    print("## spot_usage_report: one pool of spot instances, unpooled spot included, CSV + HTML written")
    print("| instances | AWS requests (by operation) | total | seconds |")
    print("|---|---|---|---|")
    for count in (10, 100, 500):
        r = bench_usage(count)
        calls = ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items()))
        print(f"| {r['instances']} | {calls} | {r['total']} | {r['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
