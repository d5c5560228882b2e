# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""spot_price_info against moto in-process.

moto answers DescribeInstanceTypes and DescribeAvailabilityZones. Price history comes from
``spot_prices.FakePriceHistory`` (realistic prices, real paging) because moto's own
DescribeSpotPriceHistory returns a constant 0.00001 and never pages.
"""

import datetime

import pytest
from moto import mock_aws

from ansible_collections.parkingspot.ec2.plugins.modules import spot_price_info
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import FakePriceHistory
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.spot_prices import price_series
from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.utils import run_module

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
START = NOW - datetime.timedelta(hours=47)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def history():
    records = []
    # m5.large: cheap in 1a but spiky, calm in 1b
    records += price_series("m5.large", "us-east-1a", [0.030, 0.031, 0.090, 0.029] * 12, START)
    records += price_series("m5.large", "us-east-1b", [0.036] * 48, START)
    # c5.xlarge: 4 vCPU, 0.064 = 0.016 per vCPU, flat
    records += price_series("c5.xlarge", "us-east-1a", [0.064, 0.065] * 24, START)
    records += price_series("c5.xlarge", "us-east-1b", [0.066, 0.068] * 24, START)
    # an old record outside a 24 h lookback and a Windows price that must be ignored
    records += price_series("c5.xlarge", "us-east-1c", [0.5], START - datetime.timedelta(days=10))
    records += price_series("m5.large", "us-east-1a", [1.0] * 3, START, product="Windows")
    return records


def test_statistics_and_recommendations():
    fake = FakePriceHistory(history())
    with fake.installed():
        res = run_module(
            spot_price_info.main,
            {"instance_types": ["m5.large", "c5.xlarge"], "lookback_hours": 48, "zones": ["us-east-1a", "us-east-1b"]},
        )
    assert res["exit_code"] == 0 and res["changed"] is False, res
    prices = {(p["instance_type"], p["zone"]): p for p in res["prices"]}
    assert set(prices) == {
        ("m5.large", "us-east-1a"),
        ("m5.large", "us-east-1b"),
        ("c5.xlarge", "us-east-1a"),
        ("c5.xlarge", "us-east-1b"),
    }
    spiky = prices[("m5.large", "us-east-1a")]
    assert spiky["samples"] == 48 and spiky["current"] == 0.029 and spiky["max"] == 0.09 and spiky["min"] == 0.029
    assert spiky["p90"] == pytest.approx(0.09)
    assert spiky["vcpus"] == 2 and spiky["memory_gib"] == 8.0  # from moto's DescribeInstanceTypes
    assert spiky["on_demand_price"] == 0.096 and spiky["on_demand_source"] == "table"
    assert prices[("c5.xlarge", "us-east-1a")]["price_per_vcpu"] == pytest.approx(0.065 / 4)
    assert prices[("m5.large", "us-east-1b")]["volatility"] == 0.0
    recs = res["recommendations"]
    assert [(r["instance_type"], r["zone"]) for r in recs] == [
        ("c5.xlarge", "us-east-1a"),
        ("c5.xlarge", "us-east-1b"),
        ("m5.large", "us-east-1b"),
        ("m5.large", "us-east-1a"),
    ]
    assert "lowest p90 per vCPU" in recs[0]["reasons"]
    assert "least volatile" in recs[2]["reasons"]
    assert "cheapest per vCPU" in recs[3]["reasons"]  # 0.029 / 2 now, but p90 ranks it last
    # one query for all types and zones
    assert res["price_history_requests"] == 1 and len(fake.requests) == 1
    assert sorted(fake.requests[0]["InstanceTypes"]) == ["c5.xlarge", "m5.large"]
    assert res["missing"] == []


def test_price_history_is_paginated_one_request_per_page():
    records = price_series(
        "m5.large",
        "us-east-1a",
        [0.03 + (i % 7) / 1000 for i in range(2500)],
        NOW - datetime.timedelta(minutes=2499),
        step_minutes=1,
    )
    fake = FakePriceHistory(records)
    with fake.installed():
        res = run_module(spot_price_info.main, {"instance_types": ["m5.large"], "lookback_hours": 48})
    assert res["exit_code"] == 0, res
    assert res["price_history_requests"] == 3 == len(fake.requests)
    assert res["prices"][0]["samples"] == 2500
    assert [r.get("NextToken") for r in fake.requests] == [None, "1000", "2000"]


def test_lookback_window_reaches_only_requested_hours():
    fake = FakePriceHistory(history())
    with fake.installed():
        res = run_module(spot_price_info.main, {"instance_types": ["c5.xlarge"], "lookback_hours": 24})
    assert res["exit_code"] == 0, res
    by_zone = {p["zone"]: p for p in res["prices"]}
    # 24 hourly samples in the window plus the one in effect at its start; the 10-day-old 1c
    # price is still "in effect" (EC2 returns it too) so it shows as a single sample
    assert by_zone["us-east-1a"]["samples"] == 25
    assert by_zone["us-east-1c"]["samples"] == 1


def test_attribute_filters_choose_types():
    records = price_series("m6g.xlarge", "us-east-1a", [0.05, 0.06], START)
    fake = FakePriceHistory(records)
    with fake.installed():
        res = run_module(
            spot_price_info.main,
            {
                "instance_types": ["m5.large", "m6g.large", "m6g.xlarge", "c6g.2xlarge"],
                "instance_requirements": {"min_vcpus": 4, "min_memory_gib": 16, "architecture": "arm64"},
                "zones": ["us-east-1a"],
                "lookback_hours": 48,
                "on_demand_prices": {"m6g.xlarge": 0.2},
            },
        )
    assert res["exit_code"] == 0, res
    # m5.large is x86_64, m6g.large has 2 vCPU; c6g.2xlarge (8 vCPU, 16 GiB) matches but has no price
    assert res["instance_types"] == ["c6g.2xlarge", "m6g.xlarge"]
    assert res["missing"] == [{"instance_type": "c6g.2xlarge", "zone": "us-east-1a"}]
    assert res["prices"][0]["on_demand_price"] == 0.2 and res["prices"][0]["on_demand_source"] == "user"
    assert res["recommendations"][0]["instance_type"] == "m6g.xlarge"


def test_type_without_prices_is_reported_missing():
    fake = FakePriceHistory(price_series("m5.large", "us-east-1a", [0.03], START))
    with fake.installed():
        res = run_module(
            spot_price_info.main,
            {"instance_types": ["m5.large", "c5.large"], "zones": ["us-east-1a"], "lookback_hours": 48},
        )
    assert res["exit_code"] == 0, res
    assert res["missing"] == [{"instance_type": "c5.large", "zone": "us-east-1a"}]


def test_check_mode_gives_the_same_answer():
    fake = FakePriceHistory(history())
    with fake.installed():
        normal = run_module(spot_price_info.main, {"instance_types": ["m5.large"], "lookback_hours": 48})
        checked = run_module(
            spot_price_info.main, {"instance_types": ["m5.large"], "lookback_hours": 48}, check_mode=True
        )
    assert checked["exit_code"] == 0
    assert checked["prices"] == normal["prices"] and checked["recommendations"] == normal["recommendations"]


@pytest.mark.parametrize(
    "args,option,needle",
    [
        ({"instance_types": ["m5.large", "m5.bogus"]}, "instance_types", "m5.bogus"),
        ({"instance_types": ["m5.large"], "lookback_hours": 0}, "lookback_hours", "at least 1"),
        ({"instance_types": ["m5.large"], "lookback_hours": 5000}, "lookback_hours", "2160"),
        ({"instance_types": ["m5.large"], "zones": ["us-east-1a", "mars-1a"]}, "zones", "mars-1a"),
        ({"instance_types": ["m5.large"], "max_recommendations": -1}, "max_recommendations", "0 or more"),
        ({"instance_types": ["m5.large"], "on_demand_prices": {"m5.large": "free"}}, "on_demand_prices", "m5.large"),
        (
            {"instance_requirements": {"min_vcpus": 512, "architecture": "arm64"}},
            "instance_requirements",
            "no instance",
        ),
    ],
)
def test_bad_input_fails_naming_the_option_before_reading_prices(args, option, needle):
    fake = FakePriceHistory(history())
    with fake.installed():
        res = run_module(spot_price_info.main, args)
    assert res["exit_code"] == 1 and res.failed
    assert res["msg"].startswith(option + ":") and needle in res["msg"], res["msg"]
    assert res["option"] == option
    assert fake.requests == []


def test_neither_types_nor_requirements_is_rejected():
    res = run_module(spot_price_info.main, {"zones": ["us-east-1a"]})
    assert res["exit_code"] == 1
    assert "instance_types" in res["msg"] and "instance_requirements" in res["msg"]
