# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The options of one pool: one argument spec and one preparation for spot_pool and spot_pools.

``spot_pool`` takes these options at the top level; ``spot_pools`` takes a list of them
(``pools``) and validates each item with the same spec, so a pool means the same thing
in both modules. ``spot_block`` keeps a pool of leases with options of its own; its
preparation (``block_inputs``) shares the first and the last step of ``pool_inputs``.
"""

from __future__ import annotations

from typing import Any
from typing import Dict

from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils import _schedule
from ansible_collections.parkingspot.ec2.plugins.module_utils._defaults import RENEW_BEFORE_MINUTES
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError


def pool_argument_spec() -> Dict[str, Any]:
    """The options of one pool (without the AWS connection options); a fresh dict on every call."""
    spec: Dict[str, Any] = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        desired=dict(type="int", default=0),
        schedule=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                days=dict(type="list", elements="str", required=True),
                start=dict(type="str", required=True),
                end=dict(type="str", required=True),
                desired=dict(type="int", required=True),
            ),
        ),
        timezone=dict(type="str", default="UTC"),
        market=dict(type="str", default="spot", choices=["spot", "block"]),
        duration_minutes=dict(type="int"),
        renew_before_minutes=dict(type="int", default=RENEW_BEFORE_MINUTES),
        on_demand_fallback=_keeper.FALLBACK_ARGUMENT_SPEC,
        drain=_keeper.DRAIN_ARGUMENT_SPEC,
        quota=_quota.QUOTA_ARGUMENT_SPEC,
        demand=_demand.DEMAND_ARGUMENT_SPEC,
        scaling=_demand.SCALING_ARGUMENT_SPEC,
        on_demand_base=dict(type="int", default=0),
        rebalance=dict(type="str", default="ignore", choices=["ignore", "replace"]),
        offering_cooldown_minutes=dict(type="int", default=15),
        now=dict(type="str"),
    )
    spec.update(_launch.LAUNCH_ARGUMENT_SPEC)
    return spec


def desired_now(params, now):
    """The desired count and window in force at ``now``; ``InputError`` names the option at fault.

    ``desired``, ``drain.timeout`` and ``on_demand_fallback.max`` were range-checked by
    ``_keeper.validate_inputs`` already.
    """
    tz = _schedule.validate_timezone(params["timezone"])
    windows = _schedule.validate_schedule(params["schedule"])
    if params["market"] == "block":
        _planner.validate_block_options(params["duration_minutes"], params["renew_before_minutes"])
    for option in ("on_demand_base", "offering_cooldown_minutes"):
        if params.get(option) is not None and params[option] < 0:
            raise InputError(option, "must be 0 or more")
    return _schedule.desired_at(now, params["desired"], windows, tz)


def queue_demand(params):
    """The validated ``demand`` and ``scaling`` of a queue-driven pool; ``InputError`` names the option."""
    floors = [params["desired"]] + [w.get("desired") for w in params["schedule"] or []]
    return _demand.validate(params["demand"], params["scaling"], floors)


def _checked_now(params, count_option):
    """First step of every preparation: names, tags and numbers (``_keeper.validate_inputs``), then ``now``."""
    _keeper.validate_inputs(params, count_option)
    return _keeper.utc(params["now"])


def _check_launch(params, now, desired, block):
    """Last step: launch settings a pool cannot use, then (when it launches) the launch shape."""
    _keeper.validate_pool_launch(params)
    if desired > 0:
        _launch.validate_launch(params, now, block=block)


def pool_inputs(params: Dict[str, Any]) -> Dict[str, Any]:
    """Validated inputs of one pool's reconcile, as spot_pool prepares them.

    Returns ``params``, ``now``, ``desired``, ``window`` and, for a queue-driven pool,
    ``floor``, ``demand`` and ``scaling`` (else None). Everything wrong with the options is
    raised here, before any call, as ``InputError`` carrying the option (the launch checks too:
    ``_launch.validate_launch``, ``_keeper.validate_pool_launch``).
    ``state: absent`` wants nothing and never falls back.
    """
    now = _checked_now(params, "desired")
    out = {"params": params, "now": now, "desired": 0, "window": None, "floor": None, "demand": None, "scaling": None}
    if params["state"] == "absent":
        out["params"] = dict(params, on_demand_fallback=dict(params["on_demand_fallback"], enabled=False))
        return out
    out["desired"], out["window"] = desired_now(params, now)
    if params.get("demand") is not None:
        out["floor"] = out["desired"]
        out["demand"], out["scaling"] = queue_demand(params)
        out["desired"] = _demand.target(out["floor"], out["demand"], out["scaling"])
    _check_launch(params, now, out["desired"], block=params.get("market") == "block")
    return out


def block_inputs(params: Dict[str, Any]) -> Dict[str, Any]:
    """Validated inputs of one spot_block reconcile: ``params``, ``now`` and ``desired``.

    ``desired`` is ``count`` (0 for ``state: absent``). As in ``pool_inputs`` everything wrong
    with the options is raised before any call, as ``InputError`` carrying the option; the lease
    options (``mode`` too) are checked whatever the state.
    """
    now = _checked_now(params, "count")
    _planner.validate_block_options(params["duration_minutes"], params["renew_before_minutes"], params["mode"])
    desired = params["count"] if params["state"] == "present" else 0
    _check_launch(params, now, desired, block=True)
    return {"params": params, "now": now, "desired": desired}
