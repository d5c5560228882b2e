# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One reconcile of a pool in three steps: read, plan (pure), act.

``reconcile`` is ``read_pool`` and ``read_facts``, then ``make_plan``, then ``act``
(``launch_planned``, ``drain_planned``). Shared by ``spot_pool`` (identity tag
``parkingspot:pool``) and ``spot_block`` (identity tag ``parkingspot:block``);
``spot_pools`` (``_fleet``) takes the same steps for many pools, with one read for all
and batched writes. The inputs are checked once, before any of them, by
``_pool_options.pool_inputs`` / ``block_inputs`` (with ``validate_inputs``,
``validate_pool_launch`` and ``utc`` from here). The cost of a reconcile that changes
nothing is one paginated DescribeInstances per 1000 instances, plus at most one
DescribeInstanceTypes and quota reads when quotas are set.

Order of the writes: terminate what the plan ends, launch spot (fall back to
on-demand or an ASG on a capacity error), then tag the instances to drain with
a lease, drain them and terminate them. Launches carry an EC2 client token
derived from the pool, its live instances and the launch, so two runs that see
the same pool and plan the same launch make EC2 launch it once.
"""

from __future__ import annotations

import base64
import datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils import _drain
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _offerings
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._defaults import DRAIN_TIMEOUT_SECONDS
from ansible_collections.parkingspot.ec2.plugins.module_utils._defaults import RENEW_BEFORE_MINUTES
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import MAX_COUNT
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_DRAIN_DEADLINE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_EXPIRES_AT
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_LANE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_STATE

# Upper bounds of numeric options: far beyond any real pool, low enough that time arithmetic cannot overflow.
MAX_MINUTES = 366 * 24 * 60  # a lease or renewal margin of at most a year
MAX_DRAIN_SECONDS = 86400
MAX_VCPUS = 10_000_000

# Instance state reasons that mean the cloud took the instance back.
SPOT_INTERRUPTION_REASONS = _aws.SPOT_INTERRUPTION_REASONS

FALLBACK_ARGUMENT_SPEC = dict(
    type="dict",
    default={},
    options=dict(
        enabled=dict(type="bool", default=False),
        max=dict(type="int", default=0),
        on_errors=dict(type="list", elements="str", default=list(_planner.DEFAULT_FALLBACK_ERRORS)),
        asg_name=dict(type="str"),
    ),
)

DRAIN_ARGUMENT_SPEC = dict(
    type="dict",
    default={},
    options=dict(
        command=dict(type="str"),
        kubectl=dict(type="bool", default=False),
        kubectl_path=dict(type="str", default="kubectl"),
        timeout=dict(type="int", default=DRAIN_TIMEOUT_SECONDS),
    ),
)


# --- the on-instance lease backstop ------------------------------------------------


def backstop_script(expires_at: str) -> str:
    """Shell user data that powers the instance off at its lease end (shutdown behaviour: terminate)."""
    end = _planner.parse_time(expires_at)
    epoch = int(end.timestamp())
    return (
        "#!/bin/sh\n"
        "# ParkingSpot lease backstop: this instance's lease ends at %s.\n"
        "# It powers off then, even if no keeper ever runs again; EC2 terminates it on shutdown.\n"
        "end=%d\n"
        "left=$(( end - $(date +%%s) ))\n"
        'if [ "$left" -le 60 ]; then shutdown -h now; else shutdown -h "+$(( left / 60 ))"; fi\n' % (expires_at, epoch)
    )


def combine_user_data(parts: List[str]) -> str:
    """One user data for cloud-init from several scripts (MIME multipart when more than one)."""
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    message = MIMEMultipart(boundary="==parkingspot-user-data==")
    for index, text in enumerate(parts):
        subtype = "x-shellscript" if text.startswith("#!") else "cloud-config"
        if text.startswith("#cloud-config"):
            subtype = "cloud-config"
        part = MIMEText(text, subtype, "utf-8")
        part.add_header("Content-Disposition", "attachment", filename="part-%d" % index)
        message.attach(part)
    return message.as_string()


# --- idempotency ---------------------------------------------------------------------


def client_token(pool_key: str, market: str, count: int, instances: List[Dict[str, Any]], now_bucket: str) -> str:
    """The seed of the EC2 client token of one planned launch.

    It hashes the pool, the market, the count and the ids of every instance the
    run saw (terminated ones included: EC2 lists them for about an hour). Two runs
    that read the same pool and plan the same launch send the same token and EC2
    performs the launch once; after any change to the pool, even instances
    vanishing, the token differs. ``now_bucket`` (the minute) separates launches
    further apart in time. The token sent is derived from this seed and the whole
    request (``_launch.derive_token``): a lease's expiry tag and backstop change by
    the second, and EC2 refuses a token reused with other parameters.
    """
    return _launch.token_seed([pool_key, market, str(count), now_bucket], [i["instance_id"] for i in instances])


# --- inputs: checked once, before any call ------------------------------------------


def validate_inputs(params, count_option="desired"):
    """Names, tags, numbers and the drain command of spot_pool / spot_block, before any AWS call."""
    _identity.check_module_params(params)
    check_range(params[count_option], count_option, 0, MAX_COUNT)
    for index, window in enumerate(params.get("schedule") or []):
        if isinstance(window, dict) and isinstance(window.get("desired"), int):
            check_range(window["desired"], "schedule[%d].desired" % index, 0, MAX_COUNT)
    if params.get("duration_minutes") is not None:
        check_range(params["duration_minutes"], "duration_minutes", 1, MAX_MINUTES, "minutes")
    check_range(params["renew_before_minutes"], "renew_before_minutes", 0, MAX_MINUTES, "minutes")
    drain = params.get("drain") or {}
    if drain.get("timeout") is not None:
        check_range(drain["timeout"], "drain.timeout", 0, MAX_DRAIN_SECONDS, "seconds")
    fallback = params.get("on_demand_fallback") or {}
    if fallback.get("max") is not None:
        check_range(fallback["max"], "on_demand_fallback.max", 0, MAX_COUNT)
    if fallback.get("asg_name") is not None:
        _identity.check_name(fallback["asg_name"], "on_demand_fallback.asg_name")
    quota = params.get("quota") or {}
    for key in ("max_vcpus", "per_owner_max_vcpus"):
        if quota.get(key) is not None:
            check_range(quota[key], "quota.%s" % key, 0, MAX_VCPUS)
    if quota.get("owner_tag") is not None:
        _identity.check_tags({quota["owner_tag"]: ""}, "quota.owner_tag")
    _drain.check_command(drain)


def validate_pool_launch(params):
    """Launch settings a pool cannot use, refused before any call."""
    if params.get("api") == "request_spot_instances":
        raise InputError(
            "api",
            "request_spot_instances cannot keep a pool: its instances carry no tags at launch, so the next run"
            " would not see them and launch again; use auto, run_instances or fleet",
        )


def utc(now: Optional[str]) -> datetime.datetime:
    """The ``now`` option as an aware UTC datetime (the current time when empty); ``InputError`` if bad."""
    try:
        return check_time(_planner.parse_now(now), "now")
    except OverflowError as e:
        raise InputError("now", "%r is out of the range of times ParkingSpot can plan with" % now) from e


# --- reading -------------------------------------------------------------------------


def read_pool(client, identity: Dict[str, str]) -> List[Dict[str, Any]]:
    """The pool's instances in every state (terminated ones stay visible for about an hour)."""
    return _aws.describe_instances_by_tags(client, identity, states=_aws.ALL_STATES)


def lazy_client(module, service: str) -> Callable[[], Any]:
    """A function giving the module's ``service`` client, made on the first call and then kept."""
    made: Dict[str, Any] = {}

    def get():
        if "client" not in made:
            made["client"] = module.client(service)
        return made["client"]

    return get


def read_facts(module, client, params, instances, asg_client: Callable[[], Any]) -> Dict[str, Any]:
    """What the plan needs beside the pool's instances: ``quota`` and ``vcpus`` (``_quota.quota_inputs``,
    no call without quotas) and ``asg_capacity``, the fallback group's desired capacity (one
    DescribeAutoScalingGroups through ``asg_client()``; None without an ASG fallback)."""
    facts = dict(_quota.quota_inputs(module, client, params, instances), asg_capacity=None)
    fallback = params.get("on_demand_fallback") or {}
    asg_name = fallback.get("asg_name") if fallback.get("enabled") else None
    if asg_name:
        group = _aws.describe_asg(asg_client(), asg_name)
        if group is None:
            raise InputError("on_demand_fallback.asg_name", "no auto scaling group named %s" % asg_name)
        facts["asg_capacity"] = int(group["DesiredCapacity"])
    return facts


# --- planning ------------------------------------------------------------------------


def drain_options(params, pool_key: str) -> Dict[str, Any]:
    """The pool's ``drain`` option as ``_drain`` takes it (the pool name reaches the drain command)."""
    return dict(params.get("drain") or {}, pool=pool_key)


def offering_options(params):
    """The planner options of the offerings memory, the on-demand lane and rebalance (spot_pool and spot_pools)."""
    return dict(
        on_demand_base=params.get("on_demand_base") or 0,
        rebalance=params.get("rebalance") or "ignore",
        offerings=_offerings.offerings_of(params),
        offering_cooldown_minutes=params.get("offering_cooldown_minutes", _offerings.DEFAULT_COOLDOWN_MINUTES),
        # Queued re-runs (demand.retries) get on-demand lane runners; without demand no retry lane.
        retries=(params["demand"].get("retries") or 0) if params.get("demand") is not None else None,
    )


def make_plan(params, instances, facts, *, pool_key, desired, market, now, block_mode="emulated", scaling=None):
    """The plan of one reconcile from what ``read_pool`` and ``read_facts`` returned; no call.

    With ``scaling`` (a queue-driven pool) only runners idle and old enough may be drained to shrink it.
    """
    fallback = params.get("on_demand_fallback") or {}
    planner_fallback = {"enabled": bool(fallback.get("enabled")), "max": fallback.get("max") or 0}
    if facts["asg_capacity"] is not None:
        planner_fallback["asg_capacity"] = facts["asg_capacity"]
    drain = drain_options(params, pool_key)
    return _planner.plan_pool(
        instances,
        now,
        desired,
        market=market,
        duration_minutes=params.get("duration_minutes"),
        renew_before_minutes=params.get("renew_before_minutes", RENEW_BEFORE_MINUTES),
        fallback=planner_fallback,
        quota=facts["quota"],
        vcpus=facts["vcpus"],
        launch_instance_types=_quota.launch_types(params),
        # Without a drain there is nothing to wait for: leases run to their end.
        drain_timeout_seconds=drain.get("timeout", DRAIN_TIMEOUT_SECONDS) if _drain.configured(drain) else 0,
        mode=block_mode,
        protected=_demand.protected_ids(instances, now, scaling) if scaling else None,
        interrupted_ids=[i["instance_id"] for i in instances if i.get("state_reason") in SPOT_INTERRUPTION_REASONS],
        **offering_options(params),
    )


# --- acting --------------------------------------------------------------------------


def new_actions() -> Dict[str, Any]:
    """What the act steps did, before they start (``summarize`` reads it)."""
    return {
        "launched": [],
        "launched_instances": [],
        "terminated": [],
        "drained": [],
        "fallback_error": None,
        "fallback_errors": [],
        "drain_outcomes": [],
        "capacity_errors": [],
    }


def _instance_tags(base_tags: Dict[str, str], market: str, expires_at: Optional[str]) -> Dict[str, str]:
    tags = dict(base_tags)
    tags[TAG_MARKET] = market
    if expires_at:
        tags[TAG_EXPIRES_AT] = expires_at
    return tags


def _shortfall(launched, count, errors, on_errors, what):
    """Why a launch came back short: a fallback code, or an error raised for what no fallback can fix.

    Capacity codes (``on_errors``) move the shortfall to on-demand; any other code an instant
    fleet reports (a bad image or subnet, a missing permission) is a configuration error that
    on-demand would meet too, so it is raised naming the codes. A short RunInstances (MinCount 1)
    reports nothing: EC2 gave what capacity it had.
    """
    if len(launched) >= count:
        return None
    capacity = [e["code"] for e in errors if _planner.is_fallback_error(e["code"], on_errors)]
    if capacity:
        return capacity[0]
    if errors:
        raise ParkingSpotError(
            message="%s launched %d of %d instances%s; EC2 reported: %s"
            % (
                what,
                len(launched),
                count,
                " (%s)" % ", ".join(sorted(i["instance_id"] for i in launched)) if launched else "",
                _launch.describe_errors(errors),
            )
        )
    return "InsufficientInstanceCapacity"


def _spot_attempt(client, params, count, tags, block, token, offerings, on_errors):
    """One spot launch over ``offerings``. Returns (instances, refused offerings with their error code).

    Several offerings go through one CreateFleet (price-capacity-optimized picks among them);
    one offering, a block or ``api: run_instances`` go through RunInstances (pools refuse the
    legacy RequestSpotInstances API, see ``validate_pool_launch``).
    """
    if not block and len(offerings) > 1 and _launch.choose_api(params) == "fleet":
        outcome = _launch.launch(client, params, count, tags, market="spot", client_token=token, offerings=offerings)
        launched = outcome["instances"]
        refused = []
        code = _shortfall(launched, count, outcome["errors"], on_errors, "the spot launch")
        if code:
            capacity = [e for e in outcome["errors"] if _planner.is_fallback_error(e["code"], on_errors)]
            named = _offerings.fleet_error_offerings(capacity, offerings)
            refused = [dict(o, code=o.get("code") or code) for o in named]
        return launched, refused
    offering = offerings[0]
    extra = dict(instance_type=offering.get("instance_type"), subnet_id=offering.get("subnet_id"))
    if block:
        extra.update(
            user_data=block.get("user_data"), shutdown_behavior="terminate", block_minutes=block.get("native_minutes")
        )
    kwargs = _launch.build_run_instances(params, count, tags, market="spot", client_token=token, **extra)
    launched = _aws.run_instances(client, **kwargs)
    # RunInstances gives what capacity the offering had (MinCount 1): a short launch emptied it.
    refused = [dict(offering, code="InsufficientInstanceCapacity")] if len(launched) < count else []
    return launched, refused


def launch_spot(client, params, count, tags, block, token, on_errors, offerings=None):
    """Launch ``count`` spot (or block) instances over the plan's offerings.

    Returns ``(instances, fallback_error_code or None, capacity_errors)``. When an offering
    refuses with a capacity error, the rest of the count is retried in the same run on the
    offerings not yet refused (the refused ones are remembered in ``capacity_errors``);
    only when none is left does the caller fall back to on-demand.
    """
    remaining_offerings = list(offerings or _offerings.offerings_of(params))
    launched: List[Dict[str, Any]] = []
    capacity_errors: List[Dict[str, Any]] = []
    last_code = None
    attempt = 0
    while remaining_offerings and len(launched) < count:
        # Each attempt launches a different set: it needs its own client token.
        attempt_token = token if attempt == 0 else "%s-%d" % (token[:60], attempt)
        attempt += 1
        batch = remaining_offerings
        fleet = not block and len(batch) > 1 and _launch.choose_api(params) == "fleet"
        if not fleet:
            batch = remaining_offerings[:1]
        try:
            got, refused = _spot_attempt(
                client, params, count - len(launched), tags, block, attempt_token, batch, on_errors
            )
        except _aws.AnsibleEC2Error as e:
            code = _aws.error_code(e)
            if not _planner.is_fallback_error(code, on_errors):
                raise
            got, refused = [], [dict(o, code=code) for o in batch]
        launched += got
        refused = [r for r in refused if _planner.is_fallback_error(r.get("code"), on_errors)] or (
            [] if len(launched) >= count else [dict(o, code="InsufficientInstanceCapacity") for o in batch]
        )
        for entry in refused:
            last_code = entry.get("code") or last_code
            capacity_errors.append(entry)
        gone = {_offerings.key(r) for r in refused}
        remaining_offerings = [o for o in remaining_offerings if _offerings.key(o) not in gone]
        if not fleet and len(launched) < count and batch and _offerings.key(batch[0]) not in gone:
            remaining_offerings = remaining_offerings[1:]
    short = len(launched) < count
    return launched, (last_code or "InsufficientInstanceCapacity") if short else None, capacity_errors


def launch_on_demand(client, params, count, tags, token, block=None):
    """Launch the on-demand shortfall. In a block pool it is a lease too: tagged and backstopped.

    Returns (instances, errors): what an on-demand instant fleet could not launch is kept and
    reported, never dropped.
    """
    if not block and _launch.choose_api(params) == "fleet":
        outcome = _launch.launch(client, params, count, tags, market="on-demand", client_token=token)
        return outcome["instances"], outcome["errors"]
    extra = {}
    if block and block.get("user_data"):
        extra = dict(user_data=block["user_data"], shutdown_behavior="terminate")
    kwargs = _launch.build_run_instances(params, count, tags, market="on-demand", client_token=token, **extra)
    return _aws.run_instances(client, **kwargs), []


def block_user_data(client, params, expires_at):
    """The user data of a lease: the backstop, then the user's own script.

    RunInstances' UserData replaces the launch template's, so without ``user_data`` the
    template's own is read (one call, only when launching) and kept after the backstop.
    """
    own = params.get("user_data") or ""
    if not own and params.get("launch_template"):
        template = _launch.template_spec(params["launch_template"])
        encoded = _aws.launch_template_data(client, **template).get("UserData")
        if encoded:
            try:
                own = base64.b64decode(encoded).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as e:
                raise ParkingSpotError(
                    message="launch_template %s: its user data is not UTF-8 text, so the lease backstop cannot be"
                    " added to it; give user_data explicitly"
                    % (params["launch_template"].get("name") or params["launch_template"].get("id"))
                ) from e
    return combine_user_data([backstop_script(expires_at), own])


def tag_drains(client, plan_drains: List[Dict[str, Any]]) -> int:
    """Mark instances as draining with their lease deadline: one call per distinct deadline."""
    calls = 0
    by_deadline: Dict[str, List[str]] = {}
    for entry in plan_drains:
        by_deadline.setdefault(entry["deadline"], []).append(entry["instance_id"])
    for deadline, ids in sorted(by_deadline.items()):
        calls += _aws.create_tags(client, ids, {TAG_STATE: "draining", TAG_DRAIN_DEADLINE: deadline})
    return calls


def note_launched(actions, launched, tags) -> None:
    """Record launched instances: their ids in ``launched``, and in ``launched_instances`` each with
    the tags it was launched with (a fleet's answer has none), for the run lock's journal."""
    actions["launched"] += sorted(i["instance_id"] for i in launched)
    actions["launched_instances"] += [dict(i, tags=dict(tags, **(i.get("tags") or {}))) for i in launched]


def launch_lane(client, params, plan, pool_key, instances, bucket, base_tags, actions):
    """Launch the on-demand lane's runners the plan asks for; records them in ``actions``.

    They carry the lane tag so the runner hooks register them with the label retried jobs
    ask for (docs/keeper-planning.md).
    """
    count = plan["launch"].get("on_demand_base") or 0
    if not count:
        return
    token = client_token(pool_key, "on-demand-base", count, instances, bucket)
    tags = dict(_instance_tags(base_tags, "on-demand", None), **{TAG_LANE: "on-demand"})
    launched, _errors = launch_on_demand(client, params, count, tags, token)
    note_launched(actions, launched, tags)


def hold_rebalance(plan, planned_launches, launched):
    """Replace first, then drain: with no replacement launched, a recommended instance keeps serving."""
    if not plan.get("rebalance") or not planned_launches or launched:
        return plan
    held = set(plan["rebalance"])
    return dict(plan, drain=[d for d in plan["drain"] if d["instance_id"] not in held])


def launch_planned(
    module,
    client,
    params,
    plan,
    actions,
    *,
    pool_key,
    identity,
    market,
    instances,
    now,
    block_mode="emulated",
    asg_client=None,
    asg_capacity=None,
):
    """Carry out a plan's launches: spot by offering group, then the on-demand or ASG fallback and the
    on-demand lane. One place for spot_pool, spot_block and every pool of spot_pools.

    With an ASG fallback, ``asg_client()`` gives the Auto Scaling client that sets the group's
    capacity (``asg_capacity``, from ``read_facts``). Records what happened in ``actions`` and
    returns the plan as the launches left it (after a fallback, rebalance held).
    """
    fallback = params.get("on_demand_fallback") or {}
    asg_name = fallback.get("asg_name") if fallback.get("enabled") else None
    set_asg = None
    if asg_name:

        def set_asg(desired_capacity):
            _aws.set_asg_desired(asg_client(), asg_name, desired_capacity)

    base_tags = dict(params.get("tags") or {}, **identity)
    expires_at = plan["launch"].get("expires_at")
    block = None
    if market == "block":
        block = {"native_minutes": params.get("duration_minutes") if block_mode == "native" else None}
        if block_mode == "emulated":
            block["user_data"] = block_user_data(client, params, expires_at)
    bucket = _planner.format_time(now)[:16]
    planned_launches = plan["launch"]["spot"] + plan["launch"]["on_demand"]
    if plan["launch"]["spot"]:
        token = client_token(pool_key, market, plan["launch"]["spot"], instances, bucket)
        tags = _instance_tags(base_tags, "spot", expires_at)
        launched, error, refused = launch_spot(
            client,
            params,
            plan["launch"]["spot"],
            tags,
            block,
            token,
            fallback.get("on_errors"),
            offerings=plan["offerings"]["launch"],
        )
        actions["capacity_errors"] = refused
        note_launched(actions, launched, tags)
        if error:
            actions["fallback_error"] = error
            plan = _planner.plan_fallback(plan, len(launched), error)
    if plan["launch"]["on_demand"]:
        if set_asg is not None:
            set_asg(plan["fallback"]["asg_desired"])
        else:
            token = client_token(pool_key, "on-demand", plan["launch"]["on_demand"], instances, bucket)
            tags = _instance_tags(base_tags, "on-demand", expires_at)
            launched, errors = launch_on_demand(client, params, plan["launch"]["on_demand"], tags, token, block)
            note_launched(actions, launched, tags)
            actions["fallback_errors"] = errors
            if errors:
                module.warn(
                    "the on-demand fallback launched %d of %d instances: %s"
                    % (len(launched), plan["launch"]["on_demand"], _launch.describe_errors(errors))
                )
    elif set_asg is not None and plan["fallback"]["asg_desired"] != asg_capacity:
        set_asg(plan["fallback"]["asg_desired"])
    launch_lane(client, params, plan, pool_key, instances, bucket, base_tags, actions)
    plan = hold_rebalance(plan, planned_launches, actions["launched"])
    return plan


def drain_planned(params, plan, instances, now, actions, *, pool_key, tagged=None) -> List[str]:
    """Drain the plan's instances, each until its deadline; returns the drained ids to terminate.

    ``tagged`` (spot_pools) limits the drains to the instances whose drain tag was written; None:
    every drain of the plan. Records the outcomes in ``actions``.
    """
    by_id = {i["instance_id"]: i for i in instances}
    targets = []
    for entry in plan["drain"]:
        if tagged is not None and entry["instance_id"] not in tagged:
            continue
        seconds = (_planner.parse_time(entry["deadline"]) - now).total_seconds()
        targets.append(dict(by_id[entry["instance_id"]], drain_seconds=max(1.0, seconds)))
    outcomes = _drain.run_drains(drain_options(params, pool_key), targets)
    actions["drain_outcomes"] = outcomes
    actions["drained"] = [o["instance_id"] for o in outcomes]
    return actions["drained"]


def act(
    module,
    client,
    params,
    plan,
    instances,
    facts,
    *,
    pool_key,
    identity,
    market,
    now,
    block_mode,
    asg_client,
    locks=None,
):
    """Carry out one pool's plan: terminate, launch (``launch_planned``), tag the drains, drain, terminate
    the drained. Returns the plan as the launches left it and the actions.

    ``locks`` (``_run_lock``): the launches are journaled and the pool's lock let go before the drains.
    """
    actions = new_actions()
    if plan["terminate"]:
        _aws.terminate_instances(client, plan["terminate"])
        actions["terminated"] += plan["terminate"]
    try:
        plan = launch_planned(
            module,
            client,
            params,
            plan,
            actions,
            pool_key=pool_key,
            identity=identity,
            market=market,
            instances=instances,
            now=now,
            block_mode=block_mode,
            asg_client=asg_client,
            asg_capacity=facts["asg_capacity"],
        )
        if plan["drain"]:
            tag_drains(client, plan["drain"])
    finally:
        # Whatever was launched before an error is journaled too.
        if locks is not None:
            locks.record(pool_key, actions["launched_instances"])
            locks.release(pool_key)
    if plan["drain"]:
        drained = drain_planned(params, plan, instances, now, actions, pool_key=pool_key)
        _aws.terminate_instances(client, drained)
        actions["terminated"] += drained
    actions["terminated"] = sorted(set(actions["terminated"]))
    return plan, actions


# --- one reconcile -------------------------------------------------------------------


def reconcile(
    module,
    client,
    *,
    pool_key,
    identity,
    params,
    desired,
    market,
    now,
    block_mode="emulated",
    window=None,
    scaling=None,
    locks=None,
):
    """Read, plan and (unless in check mode or nothing changes) act; returns ``(instances, plan, actions)``.

    spot_pools makes the same steps for many pools, with one read and batched writes (``_fleet``).
    ``locks`` (``_run_lock``, held for ``pool_key`` by the caller): instances launched by earlier runs
    that the read misses are added as pending, and this run's launches are journaled (``act``).
    """
    asg_client = lazy_client(module, "autoscaling")
    instances = read_pool(client, identity)
    if locks is not None:
        instances += locks.unseen(pool_key, [i["instance_id"] for i in instances])
    facts = read_facts(module, client, params, instances, asg_client)
    plan = make_plan(
        params,
        instances,
        facts,
        pool_key=pool_key,
        desired=desired,
        market=market,
        now=now,
        block_mode=block_mode,
        scaling=scaling,
    )
    if module.check_mode or not plan["changed"]:
        return instances, plan, new_actions()
    plan, actions = act(
        module,
        client,
        params,
        plan,
        instances,
        facts,
        pool_key=pool_key,
        identity=identity,
        market=market,
        now=now,
        block_mode=block_mode,
        asg_client=asg_client,
        locks=locks,
    )
    return instances, plan, actions


def summarize(plan, actions, window, check_mode):
    """The ``pool`` result: counts, what was launched/terminated/drained, the window in force."""
    counts = plan["counts"]
    return {
        "desired": plan["desired"],
        "market": plan["market"],
        "capacity": counts["capacity"],
        "counts": {"by_state": counts["by_state"], "by_market": counts["by_market"]},
        "interrupted": counts["interrupted"],
        "launched": actions["launched"],
        "would_launch": (
            plan["launch"]["spot"] + plan["launch"]["on_demand"] + plan["launch"].get("on_demand_base", 0)
            if check_mode
            else 0
        ),
        "terminated": actions["terminated"],
        "draining": sorted(
            set([d["instance_id"] for d in plan["drain"]] + [d["instance_id"] for d in plan["draining"]])
        ),
        "drain_outcomes": actions["drain_outcomes"],
        "fallback": {
            "on_demand_launched": plan["launch"]["on_demand"],
            "error": actions["fallback_error"],
            "errors": actions.get("fallback_errors") or [],
            "asg_desired": plan["fallback"]["asg_desired"],
        },
        "clipped": plan["clipped"],
        "blocks": plan["blocks"],
        "offerings": dict(plan.get("offerings") or {}, capacity_errors=actions.get("capacity_errors") or []),
        "window": window,
    }
