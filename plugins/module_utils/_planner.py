# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure planning for the pool keeper: plain data in, plain data out, no AWS calls.

One reconcile is two steps:

1. ``plan_pool(...)`` works out, from the pool's instances and ``now``, what to launch,
   drain and terminate.  The caller terminates first, then launches, then tags and runs
   the drains.
2. If the spot launch fails with an error that ``is_fallback_error`` accepts (or launches
   fewer instances than asked), the caller passes the plan, the number it did launch and
   the error code to ``plan_fallback(...)``, which returns the same plan with the shortfall
   moved to ``launch.on_demand`` (capped by the fallback maximum and the pool quotas).

The rules are described for users in docs/keeper-planning.md.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch

from ansible_collections.parkingspot.ec2.plugins.module_utils import _offerings
from ansible_collections.parkingspot.ec2.plugins.module_utils._demand import in_lane
from ansible_collections.parkingspot.ec2.plugins.module_utils._demand import market as market_of
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_BUSY
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_DRAIN_DEADLINE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_EXPIRES_AT
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_INTERRUPTED
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REBALANCE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_STATE
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import parse_time

STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
MARKETS = ("spot", "on-demand")
POOL_MARKETS = ("spot", "block")
DEFAULT_FALLBACK_ERRORS = (
    "InsufficientInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "InsufficientCapacity*",
    "UnfulfillableCapacity",
)
NATIVE_BLOCK_DURATIONS = (60, 120, 180, 240, 300, 360)

_UTC = datetime.timezone.utc
_GONE = ("shutting-down", "terminated")


# ---------------------------------------------------------------- time helpers


def parse_now(value, option="now"):
    """The ``now`` option: current UTC time when empty, else an ISO 8601 time with a zone."""
    if value is None or value == "":
        return datetime.datetime.now(_UTC)
    parsed = parse_time(value)
    if parsed is None:
        raise InputError(
            option, f"must be an ISO 8601 time with a time zone such as 2026-11-23T08:00:00Z, got {value!r}"
        )
    return parsed


def lease_end(now, duration_minutes):
    """The ``parkingspot:expires-at`` value for a block launched at ``now``."""
    return format_time(now + datetime.timedelta(minutes=duration_minutes))


def _minutes_left(now, until):
    return max(0, int((until - now).total_seconds() // 60))


class _Times:
    """``parse_time`` and ``format_time`` remembered for one plan.

    A pool's instances share a few launch times and lease ends (each launch call starts a
    batch of them), and parsing or formatting a time costs more than the rest of the
    per-instance work together: remembering each distinct value keeps a plan linear with a
    small constant (see bench/planner_bench.py).
    """

    def __init__(self):
        self._parsed = {}
        self._formatted = {}

    def parse(self, value):
        try:
            return self._parsed[value]
        except KeyError:
            parsed = self._parsed[value] = parse_time(value)
            return parsed
        except TypeError:  # not hashable: not a time either, parse_time says so
            return parse_time(value)

    def format(self, value):
        try:
            return self._formatted[value]
        except KeyError:
            text = self._formatted[value] = format_time(value)
            return text


# ---------------------------------------------------------------- validation


def _whole(value, option, minimum=0, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(option, f"must be a whole number, got {value!r}")
    if value < minimum:
        raise InputError(option, f"must be {minimum} or more, got {value}")
    return value


def validate_block_options(duration_minutes, renew_before_minutes=20, mode="emulated"):
    """Check the block lease options; return ``(duration_minutes, renew_before_minutes)``.

    ``mode: native`` passes BlockDurationMinutes to the cloud, which only accepts
    60 to 360 in steps of 60.  The emulated lease takes any positive length that is
    longer than the renewal margin (otherwise every block would be renewed at once).
    """
    if mode not in ("emulated", "native"):
        raise InputError("mode", f"must be emulated or native, got {mode!r}")
    if duration_minutes is None:
        raise InputError("duration_minutes", "is required for blocks")
    duration = _whole(duration_minutes, "duration_minutes", minimum=1)
    renew = _whole(renew_before_minutes, "renew_before_minutes", minimum=0)
    if mode == "native" and duration not in NATIVE_BLOCK_DURATIONS:
        raise InputError(
            "duration_minutes",
            "{} is not allowed with mode native; use one of {}".format(
                duration, ", ".join(str(d) for d in NATIVE_BLOCK_DURATIONS)
            ),
        )
    if renew >= duration:
        raise InputError(
            "renew_before_minutes",
            f"{renew} must be less than duration_minutes ({duration})",
        )
    return duration, renew


def is_fallback_error(code, on_errors=None):
    """True when the error ``code`` is one the pool falls back on (``*`` wildcards allowed)."""
    patterns = DEFAULT_FALLBACK_ERRORS if on_errors is None else on_errors
    return bool(code) and any(fnmatch.fnmatchcase(code, pattern) for pattern in patterns)


def _validate_instance(index, inst, seen, times=None):
    # The option path is only built for an error: this runs once per instance of the pool.
    def path(field=""):
        return f"instances[{index}]" + field

    if not isinstance(inst, dict):
        raise InputError(path(), f"must be a dict, got {inst!r}")
    iid = inst.get("instance_id")
    if not isinstance(iid, str) or not iid:
        raise InputError(path(".instance_id"), "must be a non-empty string")
    if iid in seen:
        raise InputError(path(".instance_id"), f"{iid} is listed twice")
    seen.add(iid)
    state = inst.get("state")
    if state not in STATES:
        raise InputError(path(".state"), "must be one of {}, got {!r}".format(", ".join(STATES), state))
    launched = (times or _Times()).parse(inst.get("launch_time"))
    if launched is None:
        raise InputError(
            path(".launch_time"), "must be an aware date and time, got {!r}".format(inst.get("launch_time"))
        )
    tags = inst.get("tags") or {}
    if not isinstance(tags, dict):
        raise InputError(path(".tags"), f"must be a dict, got {tags!r}")
    market = market_of(inst)
    if market not in MARKETS:
        raise InputError(path(".market"), f"must be spot or on-demand, got {market!r}")
    busy = tags.get(TAG_BUSY)
    return {
        "id": iid,
        "state": state,
        "launched": launched,
        "type": inst.get("instance_type"),
        "market": market,
        "tags": tags,
        "busy": busy is not None and (busy == "true" or str(busy).lower() == "true"),
    }


def _validate_quota(quota):
    quota = dict(quota or {})
    known = ("max_vcpus", "per_owner_max_vcpus", "owner_used_vcpus", "account_available_vcpus")
    unknown = sorted(set(quota) - set(known))
    if unknown:
        raise InputError("quota", "unknown key(s) {}".format(", ".join(unknown)))
    # The two limits are options checked at the module boundary; the usage numbers were read.
    out = {key: quota.get(key) for key in known}
    for key in ("owner_used_vcpus", "account_available_vcpus"):
        out[key] = _whole(out[key], "quota." + key, allow_none=True)
    if out["owner_used_vcpus"] is None:
        out["owner_used_vcpus"] = 0
    return out


def _validate_fallback(fallback):
    # ``enabled`` and ``max`` are options checked at the module boundary; the ASG's capacity was read.
    fallback = dict(fallback or {})
    asg = _whole(fallback.get("asg_capacity"), "on_demand_fallback.asg_name", allow_none=True)
    return {"enabled": fallback.get("enabled", False), "max": fallback.get("max", 0), "asg_capacity": asg}


# ---------------------------------------------------------------- planning


def _key(name):
    """Result keys are snake_case (``on-demand`` -> ``on_demand``)."""
    return name.replace("-", "_")


def _by_market(instances):
    return {_key(m): sum(1 for i in instances if i["market"] == m) for m in MARKETS}


def _surplus_key(inst):
    """Order in which surplus instances are drained: idle first, on-demand first, newest first."""
    return (inst["busy"], inst["market"] != "on-demand", -inst["launched"].timestamp(), inst["id"])


def _first(instances, count):
    """The first ``count`` instances in drain order; no sort when none or all of them go."""
    if count <= 0:
        return []
    if count >= len(instances):
        return list(instances)
    return sorted(instances, key=_surplus_key)[:count]


def _vcpus_of(instance_type, vcpus, option):
    count = vcpus.get(instance_type)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(option, f"no vCPU count for instance type {instance_type!r}")
    return count


def _clip(want, market, each, limits, clipped, reasons):
    """Reduce ``want`` launches to what each ``(name, limit, used)`` vCPU limit allows."""
    allowed = want
    for name, limit, used in limits:
        if limit is None or allowed == 0:
            continue
        available = max(0, limit - used)
        fits = available // each
        if fits < allowed:
            clipped.append(
                {
                    "quota": name,
                    "market": market,
                    "asked": allowed,
                    "allowed": fits,
                    "limit_vcpus": limit,
                    "used_vcpus": used,
                    "vcpus_per_instance": each,
                }
            )
            reasons.append(
                f"{name}: {allowed} {market} launch(es) need {allowed * each} vCPUs "
                f"but only {available} of {limit} are free; launching {fits}"
            )
            allowed = fits
    return allowed


def _fallback_cap(want, fallback, od_live, clipped, reasons):
    if want == 0:
        return 0
    if not fallback["enabled"]:
        reasons.append(f"on-demand fallback is disabled: the pool stays {want} short until spot works again")
        return 0
    room = max(0, fallback["max"] - od_live)
    if room < want:
        clipped.append(
            {
                "quota": "on_demand_fallback.max",
                "market": "on-demand",
                "asked": want,
                "allowed": room,
                "limit": fallback["max"],
                "used": od_live,
            }
        )
        reasons.append(
            "on_demand_fallback.max: {} on-demand instance(s) wanted, {} already in the pool, "
            "max {}; launching {}".format(want, od_live, fallback["max"], room)
        )
        return room
    return want


def _lease(lease, now, renew_before_minutes, fmt):
    """A lease end's status at ``now``, its tag text and the whole minutes left (all None without one)."""
    if lease is None:
        return None, None, None, None
    left = (lease - now).total_seconds()
    status = "expired" if left <= 0 else ("expiring" if left <= (renew_before_minutes or 0) * 60 else "active")
    return lease, status, fmt(lease), _minutes_left(now, lease)


def _classify(pool, now, market, renew_before_minutes, default_deadline, interrupted_ids, times=None):
    """Sort the pool's instances into what each one needs (shared by plan_pool and pool_status)."""
    times = times or _Times()
    parse, fmt = times.parse, times.format
    reasons = []
    terminate = {}  # id -> reason
    drain = {}  # id -> (deadline, reason)
    draining = []  # drains in progress
    capacity = []
    expiring = []
    blocks = []
    state_counts = dict.fromkeys(STATES, 0)
    interrupted = 0
    leases = {}  # tag value -> (lease end, status, its text, minutes left): one computation per lease end

    for inst in pool:
        iid, state, tags = inst["id"], inst["state"], inst["tags"]
        state_counts[state] += 1
        was_interrupted = iid in interrupted_ids or TAG_INTERRUPTED in tags
        if state in _GONE:
            if was_interrupted:
                interrupted += 1
                reasons.append(f"{iid} is {state} after an interruption: replaced")
            continue
        if state == "stopped":
            terminate[iid] = "stopped: it no longer serves, terminating it"
            if was_interrupted:
                interrupted += 1
            continue
        if state == "stopping":
            reasons.append(f"{iid} is stopping: not counted as capacity")
            continue
        lease_tag = tags.get(TAG_EXPIRES_AT)
        try:
            lease, status, lease_text, lease_minutes = leases[lease_tag]
        except KeyError:
            lease, status, lease_text, lease_minutes = leases[lease_tag] = _lease(
                parse(lease_tag), now, renew_before_minutes, fmt
            )
        except TypeError:  # an unhashable tag value is no time
            lease, status, lease_text, lease_minutes = None, None, None, None
        if lease is not None:
            if market == "block" or TAG_EXPIRES_AT in tags:
                blocks.append(
                    {
                        "instance_id": iid,
                        "expires_at": lease_text,
                        "remaining_minutes": lease_minutes,
                        "status": status,
                    }
                )
        mark = tags.get(TAG_STATE)
        if mark == "drained":
            terminate[iid] = "drained: terminating it"
        elif status == "expired":
            terminate[iid] = f"lease ended at {fmt(lease)}: terminating it"
        elif mark == "draining":
            deadline = parse(tags.get(TAG_DRAIN_DEADLINE))
            if deadline is None:
                drain[iid] = (default_deadline, "draining without a valid drain deadline: restarting its drain")
            elif now >= deadline:
                terminate[iid] = f"drain deadline {fmt(deadline)} passed: terminating it"
            else:
                draining.append({"instance_id": iid, "deadline": fmt(deadline)})
                reasons.append(f"{iid} is draining until {fmt(deadline)}: waiting")
        elif was_interrupted:
            interrupted += 1
            reasons.append(f"{iid} received an interruption notice: not counted as capacity, replaced")
        elif market == "block" and lease is None:
            drain[iid] = (default_deadline, f"has no valid {TAG_EXPIRES_AT} tag in a block pool: draining it")
        elif status == "expiring":
            expiring.append((inst, lease))
        else:
            capacity.append(inst)

    return {
        "reasons": reasons,
        "terminate": terminate,
        "drain": drain,
        "draining": draining,
        "capacity": capacity,
        "expiring": expiring,
        "blocks": blocks,
        "by_state": {_key(state): count for state, count in state_counts.items()},
        "interrupted": interrupted,
    }


def plan_pool(
    instances,
    now,
    desired,
    market="spot",
    duration_minutes=None,
    renew_before_minutes=20,
    fallback=None,
    spot_available=True,
    quota=None,
    vcpus=None,
    launch_instance_types=None,
    drain_timeout_seconds=600,
    interrupted_ids=None,
    mode="emulated",
    protected=None,
    on_demand_base=0,
    rebalance="ignore",
    offerings=None,
    offering_cooldown_minutes=_offerings.DEFAULT_COOLDOWN_MINUTES,
    retries=None,
):
    """Plan one reconcile of a pool.  See the module docstring and docs/keeper-planning.md.

    ``mode`` is the block mode (emulated|native); it only changes which durations are allowed.
    ``protected`` are ids never drained to shrink the pool (busy runners of a queue-driven pool,
    see _demand.py); the pool then stays above ``desired`` until they may go.
    ``on_demand_base`` runners are kept on-demand in their own lane (see ``_plan_with_base``);
    ``rebalance: replace`` replaces instances tagged ``parkingspot:rebalance`` before draining them;
    ``offerings`` (``[{instance_type, subnet_id}]``) are narrowed for the next launch (``_offerings``).
    ``retries`` (queued re-runs, None: no retry lane) grows the lane by one on-demand runner for each
    re-run that no idle lane runner can take (``_lane_target``).

    The options that the module boundary checks (``_pool_options.pool_inputs``, ``_keeper.validate_inputs``)
    are trusted: ``now`` (aware), ``desired``, ``market``, ``rebalance``, ``fallback`` ``enabled`` and
    ``max``, the ``quota`` limits. What was read from AWS (``instances``, the ASG capacity, the vCPU
    usage) and the options checked there for a present pool only are checked here.
    """
    if on_demand_base or _retry_lane_in_use(instances, retries):
        return _plan_with_base(
            instances,
            now,
            desired,
            on_demand_base,
            dict(
                market=market,
                duration_minutes=duration_minutes,
                renew_before_minutes=renew_before_minutes,
                fallback=fallback,
                spot_available=spot_available,
                quota=quota,
                vcpus=vcpus,
                launch_instance_types=launch_instance_types,
                drain_timeout_seconds=drain_timeout_seconds,
                interrupted_ids=interrupted_ids,
                mode=mode,
                protected=protected,
                rebalance=rebalance,
                offerings=offerings,
                offering_cooldown_minutes=offering_cooldown_minutes,
            ),
            retries,
        )
    now = parse_time(now)
    if market == "block":
        duration_minutes, renew_before_minutes = validate_block_options(duration_minutes, renew_before_minutes, mode)
    drain_timeout = _whole(drain_timeout_seconds, "drain.timeout")
    fallback = _validate_fallback(fallback)
    quota = _validate_quota(quota)
    if not isinstance(spot_available, bool):
        raise InputError("spot_available", "must be true or false")
    if not isinstance(instances, (list, tuple)):
        raise InputError("instances", "must be a list")
    interrupted_ids = set(interrupted_ids or ())
    protected = set(protected or ())
    seen = set()
    times = _Times()
    pool = sorted((_validate_instance(i, inst, seen, times) for i, inst in enumerate(instances)), key=lambda x: x["id"])
    rebalance_ids = _rebalance_ids(pool, rebalance)
    interrupted_ids |= rebalance_ids
    quota_set = any(quota[k] is not None for k in ("max_vcpus", "per_owner_max_vcpus", "account_available_vcpus"))
    vcpus = dict(vcpus or {})
    launch_types = sorted(set(launch_instance_types or ()))
    each = 1
    if quota_set:
        if not launch_types:
            raise InputError("vcpus", "quotas need the instance type(s) the pool launches")
        each = max(_vcpus_of(t, vcpus, "vcpus") for t in launch_types)

    default_deadline = now + datetime.timedelta(seconds=drain_timeout)
    seen_state = _classify(pool, now, market, renew_before_minutes, default_deadline, interrupted_ids, times)
    reasons, terminate, drain = seen_state["reasons"], seen_state["terminate"], seen_state["drain"]
    draining, capacity, expiring = seen_state["draining"], seen_state["capacity"], seen_state["expiring"]
    blocks, by_state, interrupted = seen_state["blocks"], seen_state["by_state"], seen_state["interrupted"]
    renew = []

    # The pool shrinks when there is surplus capacity of the kind it keeps: then expiring
    # blocks are not needed to bridge a renewal.  On-demand fallback instances do not count
    # while spot works, since they are only kept until spot replacements run.
    if spot_available:
        shrinking = sum(1 for i in capacity if i["market"] == "spot") > desired
    else:
        shrinking = len(capacity) > desired
    for inst, lease in expiring:
        left = (lease - now).total_seconds()
        if shrinking:
            drain[inst["id"]] = (
                min(lease, default_deadline),
                f"lease ends at {times.format(lease)} and the pool is shrinking: draining it",
            )
        elif left <= drain_timeout:
            drain[inst["id"]] = (
                lease,
                f"lease ends at {times.format(lease)}, within the drain timeout: draining it "
                "(its replacement is counted as capacity)",
            )
        else:
            renew.append(inst["id"])
            reasons.append(
                "{} lease ends at {} (within renew_before_minutes): replacement launched first, "
                "it keeps serving until then".format(inst["id"], times.format(lease))
            )

    spot_cap = [i for i in capacity if i["market"] == "spot"]
    od_cap = [i for i in capacity if i["market"] == "on-demand"]
    # With an ASG fallback its on-demand capacity is a count, not instances: it is given
    # back first (the ASG picks which instance to scale in).
    asg = fallback["asg_capacity"] or 0
    asg_release = 0
    replace_on_demand = []
    launch_spot = launch_od = 0
    if spot_available:
        candidates = [i for i in spot_cap if i["id"] not in protected] if protected else spot_cap
        surplus = _first(candidates, len(spot_cap) - desired)
        for inst in surplus:
            drain[inst["id"]] = (default_deadline, f"surplus (desired {desired}): draining it")
        drained = {i["id"] for i in surplus}
        spot_running = sum(1 for i in spot_cap if i["state"] == "running" and i["id"] not in drained)
        od_keep = max(0, min(len(od_cap) + asg, desired - spot_running))
        asg_release = min(asg, len(od_cap) + asg - od_keep)
        od_release = len(od_cap) + asg - od_keep - asg_release
        if asg_release:
            reasons.append(
                f"fallback ASG capacity {asg} -> {asg - asg_release}: {spot_running} spot running for desired {desired}"
            )
        for inst in _first([i for i in od_cap if i["id"] not in protected], od_release):
            replace_on_demand.append(inst["id"])
            drain[inst["id"]] = (
                default_deadline,
                f"on-demand fallback no longer needed ({spot_running} spot running for desired {desired}): draining it",
            )
        if od_keep:
            reasons.append(f"keeping {od_keep} on-demand fallback instance(s) until spot replacements are running")
        launch_spot = max(0, desired - len(spot_cap))
    else:
        asg_release = min(asg, max(0, len(capacity) + asg - desired))
        if asg_release:
            reasons.append(f"surplus (desired {desired}): fallback ASG capacity {asg} -> {asg - asg_release}")
        candidates = [i for i in capacity if i["id"] not in protected] if protected else capacity
        surplus = _first(candidates, len(capacity) + asg - asg_release - desired)
        for inst in surplus:
            drain[inst["id"]] = (default_deadline, f"surplus (desired {desired}): draining it")
        launch_od = max(0, desired - len(capacity) - asg)

    _drain_rebalanced(drain, terminate, rebalance_ids, default_deadline)

    # vCPU arithmetic: everything that still runs after this plan's terminations.
    live_before = [i for i in pool if i["state"] in ("pending", "running", "stopping")]
    live = [i for i in live_before if i["id"] not in terminate]
    od_live = sum(1 for i in live if i["market"] == "on-demand") + asg - asg_release
    quota_use = {"vcpus_per_instance": each}
    if quota_set:
        used = sum(_vcpus_of(i["type"], vcpus, "vcpus") for i in live)
        quota_use.update(
            {
                "pool_used_vcpus": used,
                "max_vcpus": quota["max_vcpus"],
                "owner_used_vcpus": quota["owner_used_vcpus"],
                "per_owner_max_vcpus": quota["per_owner_max_vcpus"],
                "account_available_vcpus": quota["account_available_vcpus"],
            }
        )
    clipped = []
    pool_limits = []
    if quota_set:
        pool_limits = [
            ("quota.max_vcpus", quota["max_vcpus"], quota_use["pool_used_vcpus"]),
            ("quota.per_owner_max_vcpus", quota["per_owner_max_vcpus"], quota["owner_used_vcpus"]),
        ]
    spot_word = "block" if market == "block" else "spot"
    if launch_spot:
        account = [("quota.check_account_quota", quota["account_available_vcpus"], 0)] if quota_set else []
        launch_spot = _clip(launch_spot, spot_word, each, pool_limits + account, clipped, reasons)
    if launch_od:
        reasons.append(f"spot capacity unavailable: {launch_od} instance(s) short")
        launch_od = _fallback_cap(launch_od, fallback, od_live, clipped, reasons)
        launch_od = _clip(launch_od, "on-demand", each, pool_limits, clipped, reasons)

    # A drain never runs past the instance's lease: the lease ends the instance anyway.
    by_id = {i["id"]: i for i in pool}
    drain_list = []
    for iid in sorted(drain):
        deadline = drain[iid][0]
        lease = times.parse(by_id[iid]["tags"].get(TAG_EXPIRES_AT))
        if lease is not None and lease < deadline:
            deadline = lease
        drain_list.append({"instance_id": iid, "deadline": times.format(deadline)})
    for iid in sorted(drain):
        reasons.append(f"{iid} {drain[iid][1]}")
    for iid in sorted(terminate):
        reasons.append(f"{iid} {terminate[iid]}")
    in_asg = f", {asg} in the fallback ASG" if fallback["asg_capacity"] is not None else ""
    summary = (
        f"desired {desired}, capacity {len(capacity) + asg} ({len(spot_cap)} spot, {len(od_cap)} on-demand{in_asg}): "
        f"launching {launch_spot} {spot_word}, {launch_od} on-demand"
    )
    counts = {
        "by_state": by_state,
        "by_market": _by_market(live_before),
        "terminating": _by_market([i for i in live_before if i["id"] in terminate]),
        "capacity": len(capacity) + asg,
        "kept": len(capacity) + asg - asg_release - sum(1 for i in capacity if i["id"] in drain),
        "draining": len(draining),
        "expiring": len(expiring),
        "interrupted": interrupted,
    }
    launch = {"spot": launch_spot, "on_demand": launch_od}
    if market == "block":
        launch["expires_at"] = lease_end(now, duration_minutes)
    plan = {
        "now": format_time(now),
        "market": market,
        "desired": desired,
        "counts": counts,
        "launch": launch,
        "drain": drain_list,
        "draining": draining,
        "terminate": sorted(terminate),
        "renew": sorted(renew),
        "replace_on_demand": sorted(replace_on_demand),
        "clipped": clipped,
        "blocks": sorted(blocks, key=lambda b: (b["expires_at"], b["instance_id"])),
        "quota": quota_use,
        "fallback": {
            "enabled": fallback["enabled"],
            "max": fallback["max"],
            "on_demand_in_pool": od_live,
            "spot_available": spot_available,
            "error": None,
            "asg_capacity": fallback["asg_capacity"],
            "asg_desired": None if fallback["asg_capacity"] is None else asg - asg_release + launch_od,
        },
        "reasons": [summary] + reasons,
        "rebalance": sorted(rebalance_ids),
    }
    try:
        plan["offerings"] = _offerings.plan_offerings(instances, now, list(offerings or []), offering_cooldown_minutes)
    except ValueError as e:
        raise InputError("offering_cooldown_minutes", str(e).split(": ", 1)[-1]) from e
    plan["reasons"] += [
        "offering {} / {} left out of the next launch: {} at {}".format(
            o["instance_type"], o["subnet_id"], o["reason"], o["at"]
        )
        for o in plan["offerings"]["excluded"]
    ]
    plan["changed"] = _changed(plan)
    return plan


# ---------------------------------------------------------------- rebalance and the on-demand lane


def _rebalance_ids(pool, rebalance):
    """Live instances with a rebalance recommendation that ``rebalance: replace`` acts on."""
    if rebalance != "replace":
        return set()
    return {
        i["id"]
        for i in pool
        if i["state"] in ("pending", "running")
        and TAG_REBALANCE in i["tags"]
        and i["tags"].get(TAG_STATE) not in ("draining", "drained")
    }


def _drain_rebalanced(drain, terminate, rebalance_ids, deadline):
    """Drain instances with a rebalance recommendation; the caller launches before it drains.

    They were left out of the capacity (like an interruption notice), so this plan already
    launches their replacements.
    """
    for iid in sorted(rebalance_ids):
        if iid not in terminate and iid not in drain:
            drain[iid] = (deadline, "has a rebalance recommendation: replacement launched first, draining it")


def _retry_lane_in_use(instances, retries):
    """The retry lane is planned while re-runs wait or lane runners are left to scale in."""
    if retries is None:
        return False
    if _whole(retries, "demand.retries"):
        return True
    return isinstance(instances, (list, tuple)) and any(isinstance(i, dict) and in_lane(i) for i in instances)


def _lane_busy(lane):
    """Live lane runners running a job (tag ``parkingspot:busy=true``), not draining."""
    count = 0
    for inst in lane:
        tags = inst.get("tags") or {}
        if inst.get("state") not in ("pending", "running") or tags.get(TAG_STATE) in ("draining", "drained"):
            continue
        if str(tags.get(TAG_BUSY, "")).lower() == "true":
            count += 1
    return count


def _lane_target(base, lane, retries):
    """How many runners the on-demand lane keeps: the base, and while re-runs wait, one per re-run
    beyond the idle lane runners (``busy + retries``). A re-run is never planned onto spot: the
    lane only ever launches on-demand."""
    retries = _whole(retries or 0, "demand.retries")
    if not retries:
        return base
    return max(base, _lane_busy(lane) + retries)


def _plan_with_base(instances, now, desired, on_demand_base, options, retries=None):
    """``on_demand_base``: N on-demand runners kept in their own lane whatever spot does.

    Like an ASG's OnDemandBaseCapacity the base is part of ``desired`` (at most ``desired``
    runners are on-demand base). The lane (on-demand instances tagged ``parkingspot:lane=on-demand``)
    is planned as a pool of its own that only launches on-demand; the rest of the pool is
    planned as before for ``desired - base``. Spot outcomes (interruptions, capacity errors,
    the fallback) touch only the rest, so the lane holds under every one of them.

    ``retries`` (queued re-runs) add lane runners beyond the base while they wait; they are on top
    of ``desired`` and go again, like any lane surplus, through the scale-in rule (``protected``).
    """
    base = min(_whole(on_demand_base, "on_demand_base"), desired)
    if not isinstance(instances, (list, tuple)):
        raise InputError("instances", "must be a list")
    lane = [i for i in instances if isinstance(i, dict) and in_lane(i)]
    rest = [i for i in instances if not (isinstance(i, dict) and in_lane(i))]
    target = _lane_target(base, lane, retries)
    main = plan_pool(rest, now, desired - base, **options)
    lane_options = dict(options, market="spot", fallback={"enabled": True, "max": target}, spot_available=False)
    lane_options.update(quota=None, vcpus=None, launch_instance_types=None, rebalance="ignore")
    lane_plan = plan_pool(lane, now, target, **lane_options)
    return _merge_lane(main, lane_plan, desired, base, retries, target)


def _merge_lane(main, lane, desired, base, retries=None, target=None):
    plan = copy.deepcopy(main)
    plan["desired"] = desired
    counts, other = plan["counts"], lane["counts"]
    for name in ("by_state", "by_market", "terminating"):
        for k, v in other[name].items():
            counts[name][k] = counts[name].get(k, 0) + v
    for name in ("capacity", "kept", "draining", "expiring", "interrupted"):
        counts[name] += other[name]
    plan["launch"]["on_demand_base"] = lane["launch"]["on_demand"]
    plan["drain"] = sorted(plan["drain"] + lane["drain"], key=lambda d: d["instance_id"])
    plan["draining"] = plan["draining"] + lane["draining"]
    plan["terminate"] = sorted(plan["terminate"] + lane["terminate"])
    plan["on_demand_base"] = {
        "base": base,
        "in_lane": other["capacity"],
        "launch": lane["launch"]["on_demand"],
        "drain": [d["instance_id"] for d in lane["drain"]],
    }
    reason = f"on_demand_base {base}: {other['capacity']} on-demand runner(s) in the lane, "
    if retries is not None:
        plan["on_demand_base"].update(retries=retries, target=target)
        reason += f"{retries} re-run(s) waiting, lane target {target}, "
    plan["reasons"] += [reason + f"launching {lane['launch']['on_demand']}"] + lane["reasons"][1:]
    plan["changed"] = _changed(plan)
    return plan


def pool_status(instances, now, market="spot", renew_before_minutes=20, vcpus=None, interrupted_ids=None):
    """What ``spot_pool_info`` reports for one pool: no desired count, no decisions.

    Returns ``counts`` (by state and market, capacity, draining, expiring, interrupted),
    ``blocks`` (leases with remaining minutes), ``draining`` (drains in progress with their
    deadline) and ``vcpus_used`` (None unless ``vcpus`` covers every live instance type).
    """
    now = parse_time(now)
    if now is None:
        raise InputError("now", "must be an aware date and time")
    if market not in POOL_MARKETS:
        raise InputError("market", f"must be spot or block, got {market!r}")
    renew_before_minutes = _whole(renew_before_minutes, "renew_before_minutes")
    if not isinstance(instances, (list, tuple)):
        raise InputError("instances", "must be a list")
    seen = set()
    times = _Times()
    pool = sorted((_validate_instance(i, inst, seen, times) for i, inst in enumerate(instances)), key=lambda x: x["id"])
    state = _classify(pool, now, market, renew_before_minutes, now, set(interrupted_ids or ()), times)
    live = [i for i in pool if i["state"] in ("pending", "running", "stopping")]
    vcpus = vcpus or {}
    used = None
    if vcpus and all(i["type"] in vcpus for i in live):
        used = sum(vcpus[i["type"]] for i in live)
    return {
        "counts": {
            "by_state": state["by_state"],
            "by_market": _by_market(live),
            "capacity": len(state["capacity"]),
            "draining": len(state["draining"]),
            "expiring": len(state["expiring"]),
            "interrupted": state["interrupted"],
        },
        "blocks": sorted(state["blocks"], key=lambda b: (b["expires_at"], b["instance_id"])),
        "draining": state["draining"],
        "vcpus_used": used,
    }


def plan_diff(plan):
    """Before/after counts of a plan, for ``--diff``."""
    counts = plan["counts"]
    launched = plan["launch"]["spot"] + plan["launch"]["on_demand"]
    before = {
        "desired": plan["desired"],
        "capacity": counts["capacity"],
        "spot": counts["by_market"]["spot"],
        "on_demand": counts["by_market"]["on_demand"],
        "draining": counts["draining"],
    }
    gone = counts["terminating"]
    after = {
        "desired": plan["desired"],
        "capacity": counts["kept"] + launched + plan["launch"].get("on_demand_base", 0),
        "spot": counts["by_market"]["spot"] - gone["spot"] + plan["launch"]["spot"],
        "on_demand": counts["by_market"]["on_demand"]
        - gone["on_demand"]
        + plan["launch"]["on_demand"]
        + plan["launch"].get("on_demand_base", 0),
        "draining": counts["draining"] + len(plan["drain"]),
    }
    return {"before": before, "after": after}


def _changed(plan):
    asg = plan["fallback"]
    return bool(
        plan["launch"]["spot"]
        or plan["launch"]["on_demand"]
        or plan["launch"].get("on_demand_base")
        or plan["drain"]
        or plan["terminate"]
        or asg["asg_desired"] != asg["asg_capacity"]
    )


def plan_fallback(plan, launched_spot, error):
    """Second step after a spot launch that fell short with a fallback error.

    Returns a new plan: ``launch.spot`` becomes what was launched, the shortfall moves to
    ``launch.on_demand`` (capped by ``on_demand_fallback.max`` and the pool's vCPU quotas,
    which now also count the spot instances just launched).
    """
    asked = plan["launch"]["spot"]
    launched_spot = _whole(launched_spot, "launched_spot")
    if launched_spot > asked:
        raise InputError("launched_spot", f"{launched_spot} is more than the {asked} planned")
    # A copy of the parts this step changes; the per-instance lists are shared, never changed.
    new = dict(plan)
    for key in ("launch", "fallback"):
        new[key] = dict(plan[key])
    for key in ("clipped", "reasons"):
        new[key] = list(plan[key])
    # What the pool still lacks: spot launches may also have been meant to replace on-demand
    # instances that keep serving, so count from the capacity the plan keeps.
    # The on-demand lane's launches are planned already: they are not part of the shortfall.
    base_launch = plan["launch"].get("on_demand_base", 0)
    shortfall = max(0, plan["desired"] - plan["counts"]["kept"] - launched_spot - base_launch)
    new["launch"]["spot"] = launched_spot
    new["fallback"]["error"] = error
    new["fallback"]["spot_available"] = False
    if launched_spot == asked:
        return new
    reasons = [f"spot launch failed with {error} after {launched_spot} of {asked}: {shortfall} instance(s) short"]
    fallback = {"enabled": plan["fallback"]["enabled"], "max": plan["fallback"]["max"]}
    want = _fallback_cap(shortfall, fallback, plan["fallback"]["on_demand_in_pool"], new["clipped"], reasons)
    quota = plan["quota"]
    if "pool_used_vcpus" in quota and want:
        each = quota["vcpus_per_instance"]
        extra = launched_spot * each
        limits = [
            ("quota.max_vcpus", quota["max_vcpus"], quota["pool_used_vcpus"] + extra),
            ("quota.per_owner_max_vcpus", quota["per_owner_max_vcpus"], quota["owner_used_vcpus"] + extra),
        ]
        want = _clip(want, "on-demand", each, limits, new["clipped"], reasons)
    new["launch"]["on_demand"] += want
    if new["fallback"]["asg_desired"] is not None:
        new["fallback"]["asg_desired"] += want
    if want:
        reasons.append(f"launching {want} on-demand fallback instance(s) tagged {TAG_MARKET}=on-demand")
    new["reasons"].extend(reasons)
    new["changed"] = _changed(new)
    return new
