# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import datetime
import gzip

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._usage_report import report_instance
from ansible_collections.parkingspot.ec2.plugins.module_utils._usage_report import report_request

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
NOW = T0 + datetime.timedelta(hours=10)


def at(hours):
    return T0 + datetime.timedelta(hours=hours)


def instance(
    iid,
    hours_start,
    state="running",
    tags=None,
    lifecycle="spot",
    itype="m5.large",
    zone="us-east-1a",
    reason=None,
    transition="",
    request_id=None,
    platform=None,
):
    """An instance as EC2 describes it, in the normalised shape the report reads."""
    inst = {
        "InstanceId": iid,
        "InstanceType": itype,
        "Placement": {"AvailabilityZone": zone},
        "LaunchTime": at(hours_start),
        "State": {"Name": state},
        "StateTransitionReason": transition,
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    }
    if lifecycle:
        inst["InstanceLifecycle"] = lifecycle
    if reason:
        inst["StateReason"] = {"Code": reason, "Message": reason}
    if request_id:
        inst["SpotInstanceRequestId"] = request_id
    if platform:
        inst["PlatformDetails"] = platform
    return report_instance(inst)


PRICES = [
    {"InstanceType": "m5.large", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.040", "Timestamp": at(-1)},
    {"InstanceType": "m5.large", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.020", "Timestamp": at(2)},
]


def test_integrate_price_is_time_weighted():
    points = _usage.price_timelines(PRICES)[("m5.large", "us-east-1a", "Linux/UNIX")]
    cost, approx = _usage.integrate_price(points, at(1), at(3.5))
    assert cost == pytest.approx(0.040 * 1 + 0.020 * 1.5)
    assert approx is False
    cost, approx = _usage.integrate_price(points, at(-3), at(-2))
    assert cost == pytest.approx(0.040) and approx is True


def test_transition_time_parsed():
    assert _usage.transition_time("User initiated (2024-05-01 03:30:00 GMT)") == at(3.5)
    assert _usage.transition_time("Service initiated") is None


def test_running_spot_instance_cost_partial_hours_and_savings():
    rows = _usage.usage_rows([instance("i-1", 1, tags={"parkingspot:pool": "ci"})], [], PRICES, NOW)
    row = rows[0]
    assert (row["pool"], row["market"], row["running"], row["end"]) == ("ci", "spot", True, None)
    assert row["hours"] == 9.0
    assert row["cost"] == pytest.approx(0.04 + 0.02 * 8)
    assert row["cost_source"] == "price_history"
    assert row["on_demand_cost"] == pytest.approx(0.096 * 9)
    assert row["savings"] == pytest.approx(0.096 * 9 - 0.2)


def test_each_platform_is_priced_from_its_own_history_and_never_as_linux():
    windows = instance("i-win", 1, platform="Windows")
    byol = instance("i-byol", 1, platform="Red Hat BYOL Linux")
    history = PRICES + [
        {
            "InstanceType": "m5.large",
            "AvailabilityZone": "us-east-1a",
            "ProductDescription": "Windows",
            "SpotPrice": "0.100",
            "Timestamp": at(-1),
        }
    ]
    rows = {r["instance_id"]: r for r in _usage.usage_rows([windows, byol], [], history, NOW)}
    assert rows["i-win"]["platform"] == "Windows"
    assert rows["i-win"]["cost"] == pytest.approx(0.100 * 9)
    # The built-in on-demand table is Linux/UNIX: no Windows figure from it, so no made-up savings.
    assert rows["i-win"]["on_demand_price"] is None and rows["i-win"]["savings"] is None
    # A platform without a spot price history of its own stays unpriced.
    assert rows["i-byol"]["cost"] is None and rows["i-byol"]["on_demand_price"] is None
    # A price the user gives for the type is used whatever the platform.
    given = _usage.usage_rows([windows], [], history, NOW, on_demand_overrides={"m5.large": 0.188})
    assert given[0]["on_demand_price"] == pytest.approx(0.188)


def test_terminated_instance_partial_last_hour_from_transition_reason():
    inst = instance(
        "i-2",
        1,
        state="terminated",
        tags={"parkingspot:pool": "ci"},
        transition="User initiated (2024-05-01 03:15:00 GMT)",
    )
    row = _usage.usage_rows([inst], [], PRICES, NOW)[0]
    assert row["end"] == "2024-05-01T03:15:00Z" and row["end_source"] == "state_transition_reason"
    assert row["hours"] == 2.25 and row["running"] is False
    assert row["cost"] == pytest.approx(0.04 + 0.02 * 1.25)


@pytest.mark.parametrize(
    "inst_kwargs,request_status,source",
    [
        ({"tags": {"parkingspot:interrupted": "2024-05-01T02:00:00Z"}}, None, "tag"),
        ({"reason": "Server.SpotInstanceTermination"}, None, "state_reason"),
        # A spot instance stopped by the cloud (stop behaviour) counts as the keeper counts it.
        ({"reason": "Server.SpotInstanceShutdown"}, None, "state_reason"),
        ({}, "instance-terminated-by-price", "spot_request_status"),
        ({}, "instance-terminated-no-capacity", "spot_request_status"),
        ({}, "instance-terminated-capacity-oversubscribed", "spot_request_status"),
    ],
)
def test_interruption_sources(inst_kwargs, request_status, source):
    inst = instance("i-3", 1, state="terminated", request_id="sir-3", **inst_kwargs)
    requests = []
    if request_status:
        requests.append(
            report_request(
                {
                    "SpotInstanceRequestId": "sir-3",
                    "InstanceId": "i-3",
                    "Type": "one-time",
                    "State": "closed",
                    "Status": {"Code": request_status, "UpdateTime": at(4)},
                }
            )
        )
    row = _usage.usage_rows([inst], requests, PRICES, NOW)[0]
    assert row["interrupted"] is True and row["interruption_source"] == source


def test_not_interrupted_when_tag_says_false_or_user_terminated():
    inst = instance(
        "i-4",
        1,
        state="terminated",
        tags={"parkingspot:interrupted": "false"},
        reason="Client.UserInitiatedShutdown",
        transition="User initiated (2024-05-01 02:00:00 GMT)",
    )
    row = _usage.usage_rows([inst], [], PRICES, NOW)[0]
    assert row["interrupted"] is False and row["interruption_source"] is None


def test_end_from_spot_request_update_time_when_reason_has_no_time():
    inst = instance("i-5", 1, state="terminated", request_id="sir-5", transition="Service initiated")
    req = report_request(
        {
            "SpotInstanceRequestId": "sir-5",
            "Type": "one-time",
            "State": "closed",
            "Status": {"Code": "instance-terminated-by-price", "UpdateTime": at(1.5)},
        }
    )
    row = _usage.usage_rows([inst], [req], PRICES, NOW)[0]
    assert row["end_source"] == "spot_request_status" and row["hours"] == 0.5
    assert row["spot_request_id"] == "sir-5"


def test_unknown_end_is_reported_not_guessed():
    inst = instance("i-6", 1, state="terminated", transition="Service initiated")
    row = _usage.usage_rows([inst], [], PRICES, NOW)[0]
    assert row["end_source"] == "unknown" and row["hours"] is None and row["cost"] is None
    groups = _usage.summarize([row])
    assert groups[0]["unpriced"] == 1


def test_on_demand_fallback_instance_by_market_tag():
    inst = instance("i-7", 0, lifecycle=None, tags={"parkingspot:pool": "ci", "parkingspot:market": "on-demand"})
    row = _usage.usage_rows([inst], [], PRICES, NOW)[0]
    assert row["market"] == "on-demand"
    assert row["cost"] == row["on_demand_cost"] == pytest.approx(0.96) and row["savings"] == 0


def test_summary_per_pool_and_owner_for_untagged_spot():
    insts = [
        instance("i-a", 0, tags={"parkingspot:pool": "ci"}),
        instance(
            "i-b",
            0,
            tags={"parkingspot:pool": "ci", "parkingspot:interrupted": "yes"},
            state="terminated",
            transition="User initiated (2024-05-01 01:00:00 GMT)",
        ),
        instance("i-c", 0, tags={"team": "data"}),
        instance("i-d", 0),
    ]
    rows = _usage.usage_rows(insts, [], PRICES, NOW, owner_tag="team")
    groups = {(g["kind"], g["name"]): g for g in _usage.summarize(rows)}
    assert set(groups) == {("pool", "ci"), ("owner", "data"), ("owner", "(no owner)")}
    ci = groups[("pool", "ci")]
    assert (ci["instances"], ci["running"], ci["interrupted"], ci["hours"]) == (2, 1, 1, 11.0)
    assert ci["savings_pct"] > 50
    total = _usage.totals(list(groups.values()))
    assert total["instances"] == 4 and total["hours"] == 31.0


def test_request_rows_validity():
    reqs = [
        {"SpotInstanceRequestId": "sir-old", "Type": "persistent", "State": "open", "ValidUntil": at(5)},
        {"SpotInstanceRequestId": "sir-live", "Type": "persistent", "State": "active", "ValidUntil": at(48)},
        {"SpotInstanceRequestId": "sir-once", "Type": "one-time", "State": "active"},
    ]
    rows = {r["spot_request_id"]: r for r in _usage.request_rows([report_request(r) for r in reqs], NOW)}
    assert rows["sir-old"]["expired"] is True and rows["sir-old"]["re_evaluated"] is False
    assert rows["sir-live"]["expired"] is False and rows["sir-live"]["re_evaluated"] is True
    assert rows["sir-live"]["valid_until"] == "2024-05-03T00:00:00Z"
    assert rows["sir-once"]["re_evaluated"] is False


def test_with_validity_adds_the_validity_and_keeps_the_request():
    expired = {"type": "persistent", "state": "active", "status_code": "fulfilled", "valid_until": at(5).isoformat()}
    assert _usage.with_validity(expired, NOW) == dict(expired, expired=True, re_evaluated=False)
    schedule_expired = dict(expired, valid_until=None, status_code="schedule-expired")
    assert _usage.with_validity(schedule_expired, NOW)["expired"] is True
    live = dict(expired, valid_until=None, state="disabled")
    assert _usage.with_validity(live, NOW) == dict(live, expired=False, re_evaluated=True)
    assert "expired" not in expired  # a new dict, the request read stays as it was


def test_with_age_in_hours_since_launch_to_two_decimals():
    launched = {"instance_id": "i-1", "launch_time": at(1).isoformat()}
    assert _usage.with_age(launched, at(3) + datetime.timedelta(seconds=36)) == dict(launched, age_hours=2.01)
    assert _usage.with_age({"instance_id": "i-2", "launch_time": None}, NOW)["age_hours"] == 0.0


FEED = (
    "#Version: 1.0\n"
    "#Fields: Timestamp UsageType Operation InstanceID MyBidID MyMaxPrice MarketPrice Charge Version\n"
    "2024-05-01 00:00:00 UTC\tUSE1-SpotUsage:m5.large\tRunInstances:SV050\ti-feed1\tsir-f1\t0.096 USD\t0.030 USD\t"
    "0.030 USD\t1\n"
    "2024-05-01 01:00:00 UTC\tUSE1-SpotUsage:m5.large\tRunInstances:SV050\ti-feed1\tsir-f1\t0.096 USD\t0.030 USD\t"
    "0.015 USD\t1\n"
    "this line is garbage\n"
    "2024-05-01 02:00:00 UTC\tUSE1-SpotUsage:m5.large\tRunInstances\ti-feed1\tsir-f1\t0.096 USD\tabc USD\t0.1 USD\t1\n"
    "2024-13-01 02:00:00 UTC\tUSE1-SpotUsage:m5.large\tRunInstances\ti-feed1\tsir-f1\t0.096 USD\t0.03 USD\t0.1 USD\t1\n"
    "2024-05-01 02:00:00 UTC\tUSE1-SpotUsage:c5.large\tRunInstances\ti-1\tsir-1\t\t0.020 USD\t0.020 USD\t1\n"
    "\n"
)


def test_datafeed_parse_skips_and_counts_malformed_lines():
    records, skipped = _usage.parse_datafeed(FEED, "f1")
    assert [r["instance_id"] for r in records] == ["i-feed1", "i-feed1", "i-1"]
    assert records[0]["instance_type"] == "m5.large" and records[0]["market_price"] == 0.03
    assert records[2]["max_price"] is None
    assert [s["line"] for s in skipped] == [5, 6, 7]
    assert "fields" in skipped[0]["reason"]


def test_datafeed_gzip_and_field_order_from_header():
    text = (
        "#Version: 1.0\n#Fields: InstanceID Timestamp UsageType Operation MyBidID MyMaxPrice MarketPrice Charge "
        "Version\ni-9\t2024-05-01 00:00:00 UTC\tSpotUsage:c5.large\tRunInstances\tsir-9\t0.1 USD\t0.02 USD\t"
        "0.02 USD\t1\n"
    )
    records, skipped = _usage.parse_datafeed(gzip.compress(text.encode()), "f.gz")
    assert skipped == [] and records[0]["instance_id"] == "i-9" and records[0]["charge"] == 0.02
    records, skipped = _usage.parse_datafeed(b"\x1f\x8bnot really gzip", "bad.gz")
    assert records == [] and len(skipped) == 1


def test_datafeed_charge_overrides_estimate_and_feed_only_instances_are_rows():
    records, _skipped = _usage.parse_datafeed(FEED)
    inst = instance("i-1", 1, itype="c5.large")
    rows = {r["instance_id"]: r for r in _usage.usage_rows([inst], [], [], NOW, feed_records=records)}
    assert rows["i-1"]["cost"] == 0.02 and rows["i-1"]["cost_source"] == "datafeed"
    feed_only = rows["i-feed1"]
    assert feed_only["pool"] == _usage.FEED_ONLY_POOL
    assert feed_only["hours"] == 1.5  # a full hour and a half hour from the charge
    assert feed_only["cost"] == pytest.approx(0.045)
    assert feed_only["on_demand_cost"] == pytest.approx(0.096 * 1.5)
