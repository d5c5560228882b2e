# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Spot price statistics and recommendations (pure: plain data in, plain data out).

Input records are what DescribeSpotPriceHistory returns (``InstanceType``,
``AvailabilityZone``, ``SpotPrice`` as a string, ``Timestamp``). Each record is a price
change: the price holds from its timestamp until the next record of the same
(instance type, zone). Statistics are taken over the samples; the current price is the
newest sample.
"""

from __future__ import annotations

import math

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import on_demand_price
from ansible_collections.parkingspot.ec2.plugins.module_utils._ondemand_prices import table_shape
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import to_utc


def percentile(sorted_values, fraction):
    """Percentile with linear interpolation between closest ranks (``fraction`` in 0..1)."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * fraction
    low = math.floor(pos)
    high = math.ceil(pos)
    if low == high:
        return sorted_values[int(pos)]
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _round(value, digits=6):
    return None if value is None else round(value, digits)


def shape_from_instance_type_info(info):
    """Reduce one DescribeInstanceTypes entry to ``{"vcpus", "memory_gib", "architectures"}``."""
    return {
        "vcpus": info.get("VCpuInfo", {}).get("DefaultVCpus"),
        "memory_gib": round(info.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024.0, 3),
        "architectures": list(info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])),
    }


def validate_lookback(lookback_hours):
    if lookback_hours is None or lookback_hours < 1:
        raise InputError("lookback_hours", f"must be at least 1 (got {lookback_hours})")
    if lookback_hours > 90 * 24:
        raise InputError("lookback_hours", "EC2 keeps 90 days of spot price history: at most 2160")


def validate_prices(prices, option="on_demand_prices"):
    """Each price a finite positive number (``nan`` and ``inf`` are refused), else an error naming ``option``."""
    for name, value in (prices or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
            raise InputError(option, f"price for {name} must be a finite positive number, got {value!r}")


def missing_instance_types(requested, shapes):
    """Requested instance types DescribeInstanceTypes did not know, in request order."""
    return [t for t in requested if t not in shapes]


def select_instance_types(shapes, min_vcpus=None, max_vcpus=None, min_memory_gib=None, architecture=None):
    """Instance types whose shape satisfies the attribute filters, sorted by name."""
    chosen = []
    for name, shape in shapes.items():
        vcpus = shape.get("vcpus") or 0
        if min_vcpus is not None and vcpus < min_vcpus:
            continue
        if max_vcpus is not None and vcpus > max_vcpus:
            continue
        if min_memory_gib is not None and (shape.get("memory_gib") or 0) < min_memory_gib:
            continue
        if architecture and architecture not in shape.get("architectures", []):
            continue
        chosen.append(name)
    return sorted(chosen)


def price_stats(records, shapes=None, on_demand_overrides=None):
    """Statistics per (instance type, zone).

    ``shapes`` maps instance type to ``{"vcpus", "memory_gib"}`` (from DescribeInstanceTypes);
    the shipped table fills gaps. Returns a list sorted by instance type then zone.
    """
    shapes = shapes or {}
    groups = {}
    for rec in records:
        key = (rec["InstanceType"], rec["AvailabilityZone"])
        groups.setdefault(key, []).append((to_utc(rec["Timestamp"]), float(rec["SpotPrice"])))

    result = []
    for itype, zone in sorted(groups):
        samples = sorted(groups[(itype, zone)])
        prices = sorted(price for _at, price in samples)
        current_at, current = samples[-1]
        mean = sum(prices) / len(prices)
        variance = sum((p - mean) ** 2 for p in prices) / len(prices)
        volatility = math.sqrt(variance) / mean if mean > 0 else 0.0
        shape = shapes.get(itype) or table_shape(itype) or {}
        vcpus = shape.get("vcpus")
        memory = shape.get("memory_gib")
        od_price, od_source = on_demand_price(itype, on_demand_overrides)
        p90 = percentile(prices, 0.9)
        result.append(
            {
                "instance_type": itype,
                "zone": zone,
                "current": _round(current),
                "current_at": format_time(current_at),
                "min": _round(prices[0]),
                "median": _round(percentile(prices, 0.5)),
                "p90": _round(p90),
                "max": _round(prices[-1]),
                "mean": _round(mean),
                "samples": len(prices),
                "volatility": _round(volatility, 4),
                "vcpus": vcpus,
                "memory_gib": memory,
                "price_per_vcpu": _round(current / vcpus) if vcpus else None,
                "p90_per_vcpu": _round(p90 / vcpus) if vcpus else None,
                "price_per_gib": _round(current / memory) if memory else None,
                "on_demand_price": od_price,
                "on_demand_source": od_source,
                "savings_vs_on_demand_pct": (round(100.0 * (1 - current / od_price), 1) if od_price else None),
            }
        )
    return result


def recommend(stats, limit=5):
    """Rank (instance type, zone) candidates.

    The rank key is the p90 price per vCPU (what a pool pays most of the time, so a cheap
    but spiky zone does not win on one low sample), then volatility, then current price per
    vCPU. Candidates without a vCPU count cannot be compared and are left out. Each entry
    carries ``reasons``: ``cheapest per vCPU`` (lowest current price per vCPU),
    ``least volatile`` (lowest coefficient of variation), ``lowest p90 per vCPU`` (rank 1),
    and the saving against on-demand when known.
    """
    candidates = [s for s in stats if s.get("price_per_vcpu") is not None]
    if not candidates:
        return []
    cheapest = min(s["price_per_vcpu"] for s in candidates)
    calmest = min(s["volatility"] for s in candidates)
    ranked = sorted(
        candidates,
        key=lambda s: (s["p90_per_vcpu"], s["volatility"], s["price_per_vcpu"], s["instance_type"], s["zone"]),
    )
    out = []
    for rank, s in enumerate(ranked[: max(limit, 0)], start=1):
        reasons = []
        if rank == 1:
            reasons.append("lowest p90 per vCPU")
        if s["price_per_vcpu"] == cheapest:
            reasons.append("cheapest per vCPU")
        if s["volatility"] == calmest:
            reasons.append("least volatile")
        if s.get("savings_vs_on_demand_pct") is not None:
            reasons.append(f"{s['savings_vs_on_demand_pct']}% below on-demand ({s['on_demand_source']})")
        if not reasons:
            reasons.append(f"p90 {s['p90_per_vcpu']} USD per vCPU-hour")
        out.append(
            {
                "rank": rank,
                "instance_type": s["instance_type"],
                "zone": s["zone"],
                "current": s["current"],
                "price_per_vcpu": s["price_per_vcpu"],
                "p90_per_vcpu": s["p90_per_vcpu"],
                "volatility": s["volatility"],
                "reasons": reasons,
                "reason": "; ".join(reasons),
            }
        )
    return out
