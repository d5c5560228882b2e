# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import datetime

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _pricing
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import ON_DEMAND_TABLE
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import on_demand_price

T0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)


def rec(itype, zone, price, minutes):
    return {
        "InstanceType": itype,
        "AvailabilityZone": zone,
        "SpotPrice": f"{price:.6f}",
        "Timestamp": T0 + datetime.timedelta(minutes=minutes),
    }


@pytest.mark.parametrize(
    "values,fraction,expected",
    [
        ([1.0], 0.9, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([0.0, 10.0], 0.9, 9.0),
    ],
)
def test_percentile_interpolates(values, fraction, expected):
    assert _pricing.percentile(values, fraction) == pytest.approx(expected)


def test_stats_per_type_and_zone():
    records = [
        rec("m5.large", "us-east-1a", 0.040, 0),
        rec("m5.large", "us-east-1a", 0.030, 60),
        rec("m5.large", "us-east-1a", 0.050, 120),
        rec("m5.large", "us-east-1a", 0.035, 180),  # newest: current
        rec("m5.large", "us-east-1b", 0.045, 10),
    ]
    shapes = {"m5.large": {"vcpus": 2, "memory_gib": 8.0}}
    stats = _pricing.price_stats(records, shapes)
    assert [(s["instance_type"], s["zone"]) for s in stats] == [("m5.large", "us-east-1a"), ("m5.large", "us-east-1b")]
    a = stats[0]
    assert a["current"] == 0.035
    assert a["current_at"] == "2024-05-01T03:00:00Z"
    assert (a["min"], a["max"], a["samples"]) == (0.03, 0.05, 4)
    assert a["median"] == pytest.approx(0.0375)
    assert a["p90"] == pytest.approx(0.047)
    assert a["price_per_vcpu"] == pytest.approx(0.0175)
    assert a["price_per_gib"] == pytest.approx(0.035 / 8)
    assert a["on_demand_price"] == 0.096 and a["on_demand_source"] == "table"
    assert a["savings_vs_on_demand_pct"] == pytest.approx(63.5, abs=0.05)
    assert stats[1]["samples"] == 1 and stats[1]["volatility"] == 0.0


def test_shapes_fall_back_to_table_and_unknown_type_has_no_per_vcpu():
    stats = _pricing.price_stats([rec("c6g.large", "z1", 0.03, 0), rec("x9.weird", "z1", 0.5, 0)])
    by_type = {s["instance_type"]: s for s in stats}
    assert by_type["c6g.large"]["vcpus"] == 2
    assert by_type["x9.weird"]["price_per_vcpu"] is None
    assert by_type["x9.weird"]["on_demand_price"] is None and by_type["x9.weird"]["on_demand_source"] is None


def test_user_on_demand_price_wins_and_says_so():
    stats = _pricing.price_stats([rec("m5.large", "z1", 0.05, 0)], on_demand_overrides={"m5.large": 0.1})
    assert stats[0]["on_demand_price"] == 0.1 and stats[0]["on_demand_source"] == "user"
    assert on_demand_price("m5.large") == (0.096, "table")


def test_recommendations_rank_by_p90_per_vcpu_with_reasons():
    records = [
        # c5.large zone a: cheapest now but spiky
        rec("c5.large", "a", 0.020, 0),
        rec("c5.large", "a", 0.080, 60),
        rec("c5.large", "a", 0.019, 120),
        # m5.xlarge zone b: flat 0.05 for 4 vCPU = 0.0125 per vCPU
        rec("m5.xlarge", "b", 0.050, 0),
        rec("m5.xlarge", "b", 0.050, 60),
        rec("m5.xlarge", "b", 0.050, 120),
        # m5.large zone c: 0.04 / 2 = 0.02 per vCPU, a bit noisy
        rec("m5.large", "c", 0.040, 0),
        rec("m5.large", "c", 0.042, 60),
    ]
    recs = _pricing.recommend(_pricing.price_stats(records), limit=3)
    assert [(r["rank"], r["instance_type"], r["zone"]) for r in recs] == [
        (1, "m5.xlarge", "b"),
        (2, "m5.large", "c"),
        (3, "c5.large", "a"),
    ]  # the spiky zone ranks last
    assert "lowest p90 per vCPU" in recs[0]["reasons"]
    assert "least volatile" in recs[0]["reasons"]
    assert "cheapest per vCPU" in recs[2]["reasons"]  # 0.019 / 2 = 0.0095 now
    assert "least volatile" not in recs[2]["reasons"]
    assert recs[0]["reason"].startswith("lowest p90 per vCPU; ")
    assert len(_pricing.recommend(_pricing.price_stats(records), limit=1)) == 1


def test_select_instance_types_by_attributes():
    shapes = {
        "m5.large": {"vcpus": 2, "memory_gib": 8.0, "architectures": ["x86_64"]},
        "m5.xlarge": {"vcpus": 4, "memory_gib": 16.0, "architectures": ["x86_64"]},
        "m6g.xlarge": {"vcpus": 4, "memory_gib": 16.0, "architectures": ["arm64"]},
        "c5.xlarge": {"vcpus": 4, "memory_gib": 8.0, "architectures": ["x86_64"]},
    }
    assert _pricing.select_instance_types(shapes, min_vcpus=4, min_memory_gib=16) == ["m5.xlarge", "m6g.xlarge"]
    assert _pricing.select_instance_types(shapes, min_vcpus=4, architecture="arm64") == ["m6g.xlarge"]
    assert _pricing.select_instance_types(shapes, max_vcpus=2) == ["m5.large"]


def test_shape_from_describe_instance_types_entry():
    info = {
        "InstanceType": "m5.large",
        "VCpuInfo": {"DefaultVCpus": 2},
        "MemoryInfo": {"SizeInMiB": 8192},
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
    }
    assert _pricing.shape_from_instance_type_info(info) == {"vcpus": 2, "memory_gib": 8.0, "architectures": ["x86_64"]}


@pytest.mark.parametrize("value", [0, -1, None, 2161])
def test_bad_lookback_names_the_option(value):
    with pytest.raises(InputError) as err:
        _pricing.validate_lookback(value)
    assert err.value.option == "lookback_hours"
    assert str(err.value).startswith("lookback_hours: ")


def test_missing_instance_types_keeps_request_order():
    assert _pricing.missing_instance_types(["x.1", "m5.large", "y.2"], {"m5.large": {}}) == ["x.1", "y.2"]


def test_table_rows_are_sane():
    for name, (vcpus, mem, arch, price) in ON_DEMAND_TABLE.items():
        assert vcpus >= 1 and mem > 0 and arch in ("x86_64", "arm64") and 0 < price < 2, name
