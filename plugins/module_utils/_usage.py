# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Spot usage accounting (pure: plain data in, plain data out).

Turns instances and spot requests in the normalised shape of ``_aws`` (``normalize_instance`` /
``normalize_spot_request``, plus ``platform`` and ``status_update_time``, see
``_usage_report.report_instance`` / ``report_request``), DescribeSpotPriceHistory records and spot
data feed lines into per-instance usage rows and per-pool / per-owner summaries.
"""

from __future__ import annotations

import datetime
import gzip
import re

from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import SPOT_INTERRUPTION_REASONS
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import on_demand_price
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_INTERRUPTED
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import to_utc

# Spot request status codes that mean the cloud took the instance away.
INTERRUPTION_STATUS_CODES = frozenset(
    (
        "instance-terminated-by-price",
        "instance-terminated-no-capacity",
        "instance-terminated-capacity-oversubscribed",
        "instance-terminated-launch-group-constraint",
        "instance-terminated-by-experiment",
        "instance-stopped-by-price",
        "instance-stopped-no-capacity",
        "instance-stopped-capacity-oversubscribed",
        "instance-stopped-by-experiment",
        "instance-hibernated-by-price",
        "instance-hibernated-no-capacity",
        "instance-hibernated-capacity-oversubscribed",
    )
)
_FALSE_WORDS = ("", "0", "false", "no", "off")
_ENDED_STATES = ("shutting-down", "terminated", "stopping", "stopped")
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
UNTAGGED_OWNER = "(no owner)"
FEED_ONLY_POOL = "(data feed only)"

DATAFEED_FIELDS = (
    "Timestamp",
    "UsageType",
    "Operation",
    "InstanceID",
    "MyBidID",
    "MyMaxPrice",
    "MarketPrice",
    "Charge",
    "Version",
)


def transition_time(reason):
    """The time inside a StateTransitionReason such as ``User initiated (2024-05-01 10:00:00 GMT)``."""
    match = _TRANSITION_TIME.search(reason or "")
    return to_utc(match.group(1)) if match else None


# The platforms (an instance's ``platform``, DescribeInstances ``PlatformDetails``) whose spot price
# history EC2 publishes under the same name as a ``ProductDescription``. Instances of any other
# platform (a BYOL image, Windows with SQL Server, ...) are left unpriced rather than priced as Linux/UNIX.
LINUX = "Linux/UNIX"
PRICED_PLATFORMS = (LINUX, "Red Hat Enterprise Linux", "SUSE Linux", "Windows")


def platform_of(instance):
    return instance.get("platform") or LINUX


def price_timelines(records):
    """``{(instance_type, zone, product): [(time, price), ...]}`` sorted by time."""
    timelines = {}
    for rec in records:
        key = (rec["InstanceType"], rec["AvailabilityZone"], rec.get("ProductDescription") or LINUX)
        timelines.setdefault(key, []).append((to_utc(rec["Timestamp"]), float(rec["SpotPrice"])))
    for points in timelines.values():
        points.sort()
    return timelines


def integrate_price(points, start, end):
    """Cost of one instance-hour price curve over ``[start, end]``: ``(usd, approximate)``.

    The price of a point holds until the next point. Before the first known point the first
    price is assumed and the result is flagged approximate.
    """
    if not points or end <= start:
        return (0.0 if points else None), False
    approximate = start < points[0][0]
    total = 0.0
    for idx, (at, price) in enumerate(points):
        seg_start = max(start, at) if idx else start
        seg_end = points[idx + 1][0] if idx + 1 < len(points) else end
        seg_end = min(seg_end, end)
        if seg_end > seg_start:
            total += price * (seg_end - seg_start).total_seconds() / 3600.0
    return total, approximate


def interruption(instance, request=None):
    """``(interrupted, source)``: tag first, then state reason, then spot request status."""
    tags = instance["tags"]
    if TAG_INTERRUPTED in tags and str(tags[TAG_INTERRUPTED]).strip().lower() not in _FALSE_WORDS:
        return True, "tag"
    if instance.get("state_reason") in SPOT_INTERRUPTION_REASONS:
        return True, "state_reason"
    if request and request.get("status_code") in INTERRUPTION_STATUS_CODES:
        return True, "spot_request_status"
    return False, None


def _end_of(instance, request, feed):
    if (instance.get("state") or "running") not in _ENDED_STATES:
        return None, None
    when = transition_time(instance.get("state_transition_reason"))
    if when:
        return when, "state_transition_reason"
    request = request or {}
    if request.get("status_update_time") and request.get("status_code") != "fulfilled":
        return to_utc(request["status_update_time"]), "spot_request_status"
    if feed:
        return feed["last"] + datetime.timedelta(hours=1), "datafeed"
    return None, "unknown"


def request_validity(request_type, state, status_code, valid_until, now):
    """(expired, re_evaluated) of a spot request: does EC2 still relaunch a persistent one?"""
    valid_until = to_utc(valid_until) if valid_until else None
    expired = bool(valid_until and valid_until <= now) or status_code == "schedule-expired"
    persistent = request_type == "persistent"
    return expired, persistent and not expired and state in ("open", "active", "disabled")


def with_validity(request, now):
    """A spot request in ``_aws``'s shape plus ``expired`` and ``re_evaluated`` at ``now``.

    The request shape every module returns (``spot_request``, ``spot_request_info``).
    """
    expired, re_evaluated = request_validity(
        request["type"], request["state"], request["status_code"], request["valid_until"], now
    )
    return dict(request, expired=expired, re_evaluated=re_evaluated)


def with_age(instance, now):
    """An instance in ``_aws``'s shape plus ``age_hours``: hours since its launch at ``now`` (0 without one).

    The instance shape every module returns (``spot_request``, ``spot_request_info``).
    """
    launched = to_utc(instance["launch_time"]) if instance.get("launch_time") else now
    return dict(instance, age_hours=round((now - launched).total_seconds() / 3600.0, 2))


def request_rows(spot_requests, now):
    """Spot requests with their validity: persistent ones say whether EC2 still re-evaluates them."""
    rows = []
    for req in spot_requests:
        valid_until = to_utc(req["valid_until"]) if req.get("valid_until") else None
        state = req.get("state")
        expired, re_evaluated = request_validity(req.get("type"), state, req.get("status_code"), valid_until, now)
        rows.append(
            {
                "spot_request_id": req.get("spot_instance_request_id"),
                "request_type": req.get("type"),
                "state": state,
                "status_code": req.get("status_code"),
                "instance_id": req.get("instance_id"),
                "valid_until": format_time(valid_until),
                "expired": expired,
                "re_evaluated": re_evaluated,
                "tags": dict(req["tags"]),
            }
        )
    return sorted(rows, key=lambda r: r["spot_request_id"] or "")


def _new_row(pool, owner, instance_id):
    return {
        "pool": pool,
        "owner": owner,
        "instance_id": instance_id,
        "market": "spot",
        "instance_type": None,
        "platform": LINUX,
        "zone": None,
        "state": None,
        "start": None,
        "end": None,
        "end_source": None,
        "running": False,
        "hours": None,
        "interrupted": False,
        "interruption_source": None,
        "spot_request_id": None,
        "request_type": None,
        "valid_until": None,
        "cost": None,
        "cost_source": None,
        "cost_approximate": False,
        "on_demand_price": None,
        "on_demand_cost": None,
        "savings": None,
        "savings_pct": None,
        "feed_charge": None,
        "feed_hours": None,
    }


def usage_rows(
    instances, spot_requests, price_records, now, owner_tag="owner", on_demand_overrides=None, feed_records=None
):
    """One row per instance (plus instances seen only in the data feed)."""
    now = to_utc(now)
    by_request = {r.get("spot_instance_request_id"): r for r in spot_requests or []}
    by_instance = {r["instance_id"]: r for r in spot_requests or [] if r.get("instance_id")}
    timelines = price_timelines(price_records or [])
    feed = summarize_feed(feed_records or [])
    rows = []
    for inst in instances:
        tags = inst["tags"]
        iid = inst["instance_id"]
        request = by_request.get(inst.get("spot_instance_request_id")) or by_instance.get(iid)
        row = _new_row(tags.get(TAG_POOL), tags.get(owner_tag) or UNTAGGED_OWNER, iid)
        row["market"] = inst["market"]
        if tags.get(TAG_MARKET) == "on-demand":
            row["market"] = "on-demand"
        row["instance_type"] = inst.get("instance_type")
        row["platform"] = platform_of(inst)
        row["zone"] = inst.get("zone")
        row["state"] = inst.get("state")
        start = to_utc(inst["launch_time"])
        end, end_source = _end_of(inst, request, feed.get(iid))
        row["start"], row["end"], row["end_source"] = format_time(start), format_time(end), end_source
        row["running"] = end is None and end_source is None
        row["interrupted"], row["interruption_source"] = interruption(inst, request)
        if request:
            row["spot_request_id"] = request.get("spot_instance_request_id")
            row["request_type"] = request.get("type")
            row["valid_until"] = format_time(to_utc(request["valid_until"])) if request.get("valid_until") else None
        if end is None and end_source == "unknown":
            rows.append(row)
            continue
        stop = end or now
        hours = max((stop - start).total_seconds(), 0.0) / 3600.0
        row["hours"] = round(hours, 4)
        _price_row(
            row,
            hours,
            timelines.get((row["instance_type"], row["zone"], row["platform"])),
            start,
            stop,
            feed.get(iid),
            on_demand_overrides,
        )
        rows.append(row)
    seen = {r["instance_id"] for r in rows}
    for iid, info in sorted(feed.items()):
        if iid in seen:
            continue
        row = _new_row(FEED_ONLY_POOL, UNTAGGED_OWNER, iid)
        row["instance_type"] = info["instance_type"]
        row["spot_request_id"] = info["request_id"]
        row["start"], row["end"], row["end_source"] = (
            format_time(info["first"]),
            format_time(info["last"] + datetime.timedelta(hours=1)),
            "datafeed",
        )
        row["hours"] = round(info["hours"], 4)
        _price_row(row, info["hours"], None, None, None, info, on_demand_overrides)
        rows.append(row)
    return rows


def _price_row(row, hours, points, start, stop, feed_info, overrides):
    od_price, source = on_demand_price(row["instance_type"], overrides)
    if row["platform"] != LINUX and source != "user":
        od_price = None  # the built-in table holds Linux/UNIX prices only
    row["on_demand_price"] = od_price
    row["on_demand_cost"] = round(od_price * hours, 6) if od_price is not None else None
    if feed_info:
        row["feed_charge"] = round(feed_info["charge"], 6)
        row["feed_hours"] = round(feed_info["hours"], 4)
    if row["market"] == "on-demand":
        row["cost"], row["cost_source"] = row["on_demand_cost"], "on_demand_price" if od_price is not None else None
    elif feed_info:
        row["cost"], row["cost_source"] = round(feed_info["charge"], 6), "datafeed"
    elif points:
        cost, approximate = integrate_price(points, start, stop)
        row["cost"], row["cost_source"], row["cost_approximate"] = round(cost, 6), "price_history", approximate
    if row["cost"] is not None and row["on_demand_cost"] is not None:
        row["savings"] = round(row["on_demand_cost"] - row["cost"], 6)
        row["savings_pct"] = round(100.0 * row["savings"] / row["on_demand_cost"], 1) if row["on_demand_cost"] else 0.0


_COUNTS = ("instances", "running", "spot", "on_demand", "interrupted", "unpriced")
_AMOUNTS = ("hours", "cost", "on_demand_cost", "savings")


def _empty_totals():
    return dict({name: 0 for name in _COUNTS}, **{name: 0.0 for name in _AMOUNTS})


def _finish(totals_):
    """Round the amounts and add the savings percentage."""
    for name in _AMOUNTS:
        totals_[name] = round(totals_[name], 4)
    cost = totals_["on_demand_cost"]
    totals_["savings_pct"] = round(100.0 * totals_["savings"] / cost, 1) if cost else None
    return totals_


def summarize(rows):
    """Totals per pool and, for spot instances outside any pool, per owner tag value."""
    groups = {}
    for row in rows:
        key = ("pool", row["pool"]) if row["pool"] else ("owner", row["owner"])
        g = groups.setdefault(key, dict(_empty_totals(), kind=key[0], name=key[1]))
        g["instances"] += 1
        g["running"] += 1 if row["running"] else 0
        g["spot" if row["market"] == "spot" else "on_demand"] += 1
        g["interrupted"] += 1 if row["interrupted"] else 0
        g["hours"] += row["hours"] or 0.0
        if row["cost"] is None or row["on_demand_cost"] is None:
            g["unpriced"] += 1
            continue
        g["cost"] += row["cost"]
        g["on_demand_cost"] += row["on_demand_cost"]
        g["savings"] += row["savings"]
    return [_finish(groups[key]) for key in sorted(groups)]


def totals(groups):
    total = _empty_totals()
    for g in groups:
        for name in total:
            total[name] += g[name]
    return _finish(total)


# --- spot data feed -------------------------------------------------------------------------


def _usd(text):
    value, _sep, unit = text.strip().partition(" ")
    if unit and unit.strip().upper() != "USD":
        raise ValueError(f"unexpected currency {unit!r}")
    return float(value)


def parse_datafeed(content, source="feed"):
    """Parse one spot data feed file (bytes, gzip bytes or text).

    Returns ``(records, skipped)``: ``skipped`` lists ``{"source", "line", "reason"}`` for every
    malformed line; such lines are never fatal.
    """
    if isinstance(content, bytes):
        if content[:2] == b"\x1f\x8b":
            try:
                content = gzip.decompress(content)
            except (OSError, EOFError) as exc:
                return [], [{"source": source, "line": 0, "reason": f"bad gzip data: {exc}"}]
        content = content.decode("utf-8", errors="replace")
    fields = list(DATAFEED_FIELDS)
    records, skipped = [], []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                fields = line[len("#Fields:") :].split()
            continue
        parts = line.split("\t")
        if len(parts) != len(fields):
            skipped.append(
                {
                    "source": source,
                    "line": number,
                    "reason": f"expected {len(fields)} tab-separated fields, got {len(parts)}",
                }
            )
            continue
        raw = dict(zip(fields, (p.strip() for p in parts)))
        try:
            usage_type = raw["UsageType"]
            record = {
                "timestamp": to_utc(raw["Timestamp"]),
                "usage_type": usage_type,
                "instance_type": usage_type.split(":", 1)[1] if ":" in usage_type else "m1.small",
                "operation": raw.get("Operation"),
                "instance_id": raw["InstanceID"],
                "request_id": raw.get("MyBidID"),
                "max_price": _usd(raw["MyMaxPrice"]) if raw.get("MyMaxPrice") else None,
                "market_price": _usd(raw["MarketPrice"]),
                "charge": _usd(raw["Charge"]),
                "version": raw.get("Version"),
            }
            if not record["instance_id"].startswith("i-"):
                raise ValueError(f"bad instance id {record['instance_id']!r}")
            if record["charge"] < 0 or record["market_price"] < 0:
                raise ValueError("negative price")
        except (KeyError, ValueError, TypeError) as exc:
            skipped.append({"source": source, "line": number, "reason": str(exc) or type(exc).__name__})
            continue
        records.append(record)
    return records, skipped


def summarize_feed(records):
    """Per instance: total charge, billed hours (charge / market price), first and last hour."""
    out = {}
    for rec in records:
        info = out.setdefault(
            rec["instance_id"],
            {
                "charge": 0.0,
                "hours": 0.0,
                "first": rec["timestamp"],
                "last": rec["timestamp"],
                "instance_type": rec["instance_type"],
                "request_id": rec["request_id"],
            },
        )
        info["charge"] += rec["charge"]
        info["hours"] += rec["charge"] / rec["market_price"] if rec["market_price"] > 0 else 1.0
        info["first"] = min(info["first"], rec["timestamp"])
        info["last"] = max(info["last"], rec["timestamp"])
    return out
