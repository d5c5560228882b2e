# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Keep many pools in one run (``spot_pools``): one read for all, a plan per pool, batched writes.

The cost of a run that changes nothing is one paginated DescribeInstances per 1000
instances of *all* pools of the account and region (``tag-key`` filter on
``parkingspot:pool``), instead of one read and one module start per pool. The instances
are split by exact equality of their pool tag, so a pool named ``ci*`` never sees the
instances of ``ci-arm``.

Each pool is read and planned by the steps ``spot_pool`` takes (``_keeper.read_facts``,
``_keeper.make_plan``). The writes of all pools are then made in phases, in the order
``spot_pool`` makes them for one pool: terminate what the plans end (one
TerminateInstances per 1000 ids of all pools), launch per pool and offering group
(``_keeper.launch_planned``, with the on-demand or ASG fallback), tag the instances to
drain (one CreateTags per tag set and 1000 ids), drain (``_keeper.drain_planned``),
terminate the drained. Every write waits for
a token of its EC2 bucket first (``_pacing``).

A pool's error (bad options, a launch refused, a drain that cannot be tagged) is kept
with that pool and reported in ``failed``; the other pools go on. When a batched write
fails, it is made again pool by pool so that only the pool at fault fails.
"""

from __future__ import annotations

import functools
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils import _pacing
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _pool_options
from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_DRAIN_DEADLINE
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_STATE

# EC2 takes at most 200 values in one filter (FilterLimitExceeded beyond).
NAME_FILTER_LIMIT = 200
# How long a run waits for a pool's lock to keep the read it made after acting (refresh_reads).
REFRESH_WAIT_SECONDS = 5


class PoolRun:
    """One pool's part of the run: its inputs, what was read and planned, what was done, its error."""

    def __init__(self, index: int, name: Optional[str]):
        self.index = index
        self.name = name
        self.params: Dict[str, Any] = {}
        self.now = None
        self.desired = 0
        self.window = None
        self.inputs: Dict[str, Any] = {}
        self.validated: Dict[str, Any] = {}
        self.read_at = 0.0
        self.reused_read = False
        self.refresh_guard: Optional[int] = None
        self.instances: List[Dict[str, Any]] = []
        self.facts: Dict[str, Any] = {}
        self.plan: Optional[Dict[str, Any]] = None
        self.actions: Dict[str, Any] = _keeper.new_actions()
        self.error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message


def error_message(exc: BaseException) -> str:
    """One line for ``failed``: our message, and the AWS error behind it if any."""
    if isinstance(exc, AnsibleAWSError):
        text = exc.message or "AWS error"
        inner = getattr(exc, "exception", None)
        if inner is not None and str(inner) not in text:
            text = "%s: %s" % (text, inner)
        return text
    return str(exc)


def guarded(run: PoolRun, step: Callable[[], Any]) -> None:
    """Run one pool's step; its error stays with the pool."""
    if not run.ok:
        return
    try:
        step()
    except (AnsibleAWSError, ValueError) as e:
        run.fail(error_message(e))


# --- inputs ----------------------------------------------------------------------------


def prepare(raw_pools: List[Any]) -> List[PoolRun]:
    """Validate every pool with spot_pool's argument spec; no AWS call.

    Options that do not form a list of named pools, or two pools of one name, fail the
    whole run (it could not tell the pools apart). Any other bad option fails only its
    pool, with a message that names the pool and the option.
    """
    if not isinstance(raw_pools, list):
        raise InputError("pools", "must be a list of spot_pool option dicts")
    runs: List[PoolRun] = []
    seen: Dict[str, int] = {}
    for index, raw in enumerate(raw_pools):
        if not isinstance(raw, dict):
            raise InputError("pools[%d]" % index, "must be a dict of spot_pool options, got %r" % (raw,))
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise InputError("pools[%d].name" % index, "every pool needs a name")
        if name in seen:
            raise InputError(
                "pools[%d].name" % index,
                "pool %r is listed twice (also pools[%d]); each pool once per run" % (name, seen[name]),
            )
        seen[name] = index
        runs.append(PoolRun(index, name))
    validator = ArgumentSpecValidator(_pool_options.pool_argument_spec())
    for run, raw in zip(runs, raw_pools):
        checked = validator.validate(raw)
        if checked.error_messages:
            run.fail("pools[%d] (%s): %s" % (run.index, run.name, "; ".join(checked.error_messages)))
            continue

        guarded(run, functools.partial(set_inputs, run, checked.validated_parameters))
    return runs


def set_inputs(run: PoolRun, params: Dict[str, Any]) -> None:
    """Prepare the pool's inputs from its validated options (``_pool_options.pool_inputs``)."""
    run.validated = params
    run.inputs = _pool_options.pool_inputs(params)
    run.params, run.now = run.inputs["params"], run.inputs["now"]
    run.desired, run.window = run.inputs["desired"], run.inputs["window"]


# --- reading and planning ------------------------------------------------------------


def read_all(client, names: Optional[List[str]] = None) -> Dict[str, List[Dict[str, Any]]]:
    """The instances of the pools ``names`` (None: of every pool of the account and region), in
    every state, by exact pool name.

    Up to ``NAME_FILTER_LIMIT`` names are asked for by a ``tag:parkingspot:pool`` filter of their
    escaped values, so a run of one pool does not read every other pool; more names than one filter
    takes read every pool (``tag-key`` filter). Either way the split is by exact equality.
    """
    if names and len(set(names)) <= NAME_FILTER_LIMIT:
        filters = [_identity.names_filter(TAG_POOL, names)]
    else:
        filters = [{"Name": "tag-key", "Values": [TAG_POOL]}]
    found = _aws.describe_instances_by_tags(client, {}, states=_aws.ALL_STATES, filters=filters)
    wanted = set(names) if names else None
    by_pool: Dict[str, List[Dict[str, Any]]] = {}
    for instance in found:
        pool = instance["tags"].get(TAG_POOL)
        if wanted is None or pool in wanted:
            by_pool.setdefault(pool, []).append(instance)
    return by_pool


def plan_one(module, client, run: PoolRun, asg_client: Callable[[], Any]) -> None:
    """The pool's facts and plan, by the steps ``_keeper.reconcile`` takes for spot_pool."""
    run.facts = _keeper.read_facts(module, client, run.params, run.instances, asg_client)
    run.plan = _keeper.make_plan(
        run.params,
        run.instances,
        run.facts,
        pool_key=run.name,
        desired=run.desired,
        market=run.params["market"],
        now=run.now,
        scaling=run.inputs.get("scaling"),
    )


# --- batched writes --------------------------------------------------------------------


def batched(client, call, ids_by_run: Dict[int, List[str]], runs: Dict[int, PoolRun], *args) -> Dict[int, List[str]]:
    """``call(client, ids, *args)`` for the ids of many pools, 1000 ids a call.

    A failed batch is made again pool by pool, so only the pool at fault fails. Returns,
    per pool, the ids the call succeeded for.
    """
    owner = {iid: key for key, ids in ids_by_run.items() for iid in ids if runs[key].ok}
    done: Dict[int, List[str]] = {}
    for batch in _aws.chunks(sorted(owner)):
        try:
            call(client, batch, *args)
        except AnsibleAWSError:
            keys = sorted({owner[iid] for iid in batch})
            if len(keys) == 1:
                runs[keys[0]].fail(_retry_alone(client, call, batch, args))
                continue
            for key in keys:
                alone = [iid for iid in batch if owner[iid] == key]
                error = _retry_alone(client, call, alone, args)
                if error:
                    runs[key].fail(error)
                else:
                    done.setdefault(key, []).extend(alone)
            continue
        for iid in batch:
            done.setdefault(owner[iid], []).append(iid)
    return done


def _retry_alone(client, call, ids, args) -> Optional[str]:
    try:
        call(client, ids, *args)
    except AnsibleAWSError as e:
        return error_message(e)
    return None


def _terminate_call(client, ids):
    _aws.terminate_instances(client, ids)


def _tag_call(client, ids, tags):
    _aws.create_tags(client, ids, tags)


def terminate_phase(client, runs: Dict[int, PoolRun], ids_by_run: Dict[int, List[str]]) -> None:
    done = batched(client, _terminate_call, ids_by_run, runs)
    for key, ids in done.items():
        runs[key].actions["terminated"] = sorted(set(runs[key].actions["terminated"]) | set(ids))


def launch_phase(module, client, run: PoolRun, asg_client: Callable[[], Any]) -> None:
    """The pool's launches, as spot_pool makes them (``_keeper.launch_planned``)."""
    run.plan = _keeper.launch_planned(
        module,
        client,
        run.params,
        run.plan,
        run.actions,
        pool_key=run.name,
        identity={TAG_POOL: run.name},
        market=run.params["market"],
        instances=run.instances,
        now=run.now,
        asg_client=asg_client,
        asg_capacity=run.facts["asg_capacity"],
    )


def tag_drains_phase(client, runs: Dict[int, PoolRun]) -> Dict[int, set]:
    """Tag every drain of every pool (one CreateTags per deadline and 1000 ids); returns the tagged ids per pool."""
    by_deadline: Dict[str, Dict[int, List[str]]] = {}
    for key, run in runs.items():
        for entry in run.plan["drain"]:
            by_deadline.setdefault(entry["deadline"], {}).setdefault(key, []).append(entry["instance_id"])
    tagged: Dict[int, set] = {}
    for deadline, ids_by_run in sorted(by_deadline.items()):
        tags = {TAG_STATE: "draining", TAG_DRAIN_DEADLINE: deadline}
        for key, ids in batched(client, _tag_call, ids_by_run, runs, tags).items():
            tagged.setdefault(key, set()).update(ids)
    return tagged


def drain_phase(runs: Dict[int, PoolRun], tagged: Dict[int, set]) -> Dict[int, List[str]]:
    """Drain the tagged instances of every pool; returns, per pool, the drained instances to terminate."""
    to_terminate: Dict[int, List[str]] = {}
    for key, run in runs.items():
        if not run.ok or not run.plan["drain"]:
            continue
        to_terminate[key] = _keeper.drain_planned(
            run.params, run.plan, run.instances, run.now, run.actions, pool_key=run.name, tagged=tagged.get(key, set())
        )
    return to_terminate


def lock_pools(locks: Optional[_run_lock.RunLocks], ready: Dict[int, PoolRun]) -> None:
    """Offer each pool's demand, take the pools' locks (in name order), then plan with the newest demand.

    A pool whose lock is not free in time, or whose newest demand is not valid, fails alone.
    """
    if locks is None:
        return
    # Every pool's demand is offered before this run waits for any lock.
    for run in ready.values():
        guarded(run, lambda run=run: locks.offer(run.name, run.validated.get("demand")))
    for run in sorted(ready.values(), key=lambda run: run.name):
        if run.ok:
            guarded(run, functools.partial(enter_pool, locks, run))


def enter_pool(locks: _run_lock.RunLocks, run: PoolRun) -> None:
    """Hold the pool's run lock and plan it with the newest demand any run offered."""
    own = run.validated.get("demand")
    newest = locks.enter(run.name, own)
    if newest is not own:
        set_inputs(run, dict(run.validated, demand=newest))


# --- the run -------------------------------------------------------------------------------


def keep_pools(
    module, raw_pools: List[Any], pacer: Optional[_pacing.Pacer] = None, locks: Optional[_run_lock.RunLocks] = None
) -> Dict[str, Any]:
    """Reconcile every pool of ``raw_pools``; returns the module result (without ``diff``'s list).

    ``locks`` (``_run_lock``, None in check mode) are held from the read until the launches and
    drain tags are made; the drains run after they are let go. A pool whose last read on this
    controller is recent enough (``run_lock.reuse_read_seconds``) is planned from it instead of
    being read again, as long as its plan only launches (``plan_pools``).
    """
    runs = prepare(raw_pools)
    pacer = pacer or _pacing.Pacer()
    by_key = {run.index: run for run in runs}
    ready = {key: run for key, run in by_key.items() if run.ok}
    asg_client = _keeper.lazy_client(module, "autoscaling")
    acting: Dict[int, PoolRun] = {}
    if ready:
        client = _pacing.PacedClient(module.client("ec2"), pacer)
        try:
            lock_pools(locks, ready)
            ready = {key: run for key, run in ready.items() if run.ok}
            plan_pools(module, client, ready, locks, asg_client)
            acting = {k: r for k, r in ready.items() if r.ok and r.plan["changed"]}
            tagged: Dict[int, set] = {}
            if acting and not module.check_mode:
                terminate_phase(client, acting, {k: r.plan["terminate"] for k, r in acting.items()})
                for run in acting.values():
                    guarded(run, lambda run=run: launch_phase(module, client, run, asg_client))
                    if locks is not None and run.actions["launched_instances"]:
                        locks.record(run.name, run.actions["launched_instances"])
                tagged = tag_drains_phase(client, acting)
            if locks is not None:
                for run in ready.values():
                    keep_view(locks, run)
        finally:
            if locks is not None:
                locks.release_all()
        if locks is not None:
            refresh_reads(client, locks, list(ready.values()))
        if acting and not module.check_mode:
            terminate_phase(client, acting, drain_phase(acting, tagged))
    return results(runs, module.check_mode, pacer)


def _only_launches(plan: Dict[str, Any]) -> bool:
    """A plan that terminates or drains nothing: safe to make from a reused read (see ``plan_pools``)."""
    return not plan["terminate"] and not plan["drain"]


def plan_pools(module, client, ready: Dict[int, PoolRun], locks, asg_client) -> None:
    """Read the pools (or reuse a recent read) and plan each.

    A reused read is the instances the last run of the pool planned with, plus what it launched.
    It may miss what happened since (an interruption, a runner that shut itself down) but holds
    everything this controller launched, so a plan made from it never launches twice; it may
    launch too little until the next read. Busy tags and interruptions are not trusted from it: a
    plan that would terminate or drain anything is made again from a fresh read.

    A read younger than ``run_lock.reuse_read_seconds`` is reused. An older one (up to twice that
    age) is reused too while one run reads the pool again: the first run to find it old takes the
    pool's refresh guard and reads after it acted, without the lock (``refresh_reads``), so the
    runs of the next windows do not wait for a read of thousands of instances.
    """
    reused = {}
    if locks is not None:
        for key, run in ready.items():
            view = locks.view(run.name, max_age=2 * locks.reuse)
            if view is None:
                continue
            if locks.clock() - view[0] >= locks.reuse:
                guard = locks.begin_refresh(run.name)
                if guard is not None:
                    run.refresh_guard = guard
            reused[key] = view
    to_read = {key: run for key, run in ready.items() if key not in reused}
    for attempt in range(2):
        # Stamped on the run lock's clock, on which every age of a kept read is judged.
        read_at = locks.clock() if locks is not None else time.time()
        instances = read_all(client, sorted(run.name for run in to_read.values())) if to_read else {}
        for run in to_read.values():
            run.instances = instances.get(run.name, [])
            run.read_at, run.reused_read = read_at, False
            if locks is not None:
                run.instances += locks.unseen(run.name, [i["instance_id"] for i in run.instances])
        if attempt == 0:
            for key, (read_at, view) in reused.items():
                run = ready[key]
                run.instances, run.read_at, run.reused_read = view, read_at, True
        planned = to_read if attempt else ready
        for run in planned.values():
            guarded(run, lambda run=run: plan_one(module, client, run, asg_client))
        to_read = {k: r for k, r in ready.items() if r.ok and r.reused_read and not _only_launches(r.plan)}
        if not to_read:
            return


def refresh_reads(client, locks, runs: List[PoolRun]) -> None:
    """Read again, after the locks were let go, the pools whose reused read was old
    (``plan_pools``), and keep the new read for the next runs.

    Made without the pool's lock, the read holds up no run; what other runs launched while it was
    made is added from the journal. What they terminated or drained meanwhile may still show as
    running: plans made from it may then launch too little, never too much, and a plan that would
    terminate or drain reads anew.
    """
    guarded_runs = [run for run in runs if run.refresh_guard is not None]
    try:
        stale = [run for run in guarded_runs if run.ok and run.reused_read]
        if not stale:
            return
        read_at = locks.clock()
        try:
            instances = read_all(client, sorted(run.name for run in stale))
        except AnsibleAWSError:
            return  # the pools were kept; their next runs read them again
        for run in stale:
            try:
                locks.take(run.name, timeout=REFRESH_WAIT_SECONDS)
            except AnsibleAWSError:
                continue  # the pool stays busy: a later run reads it again
            try:
                kept = locks.view(run.name, max_age=2 * locks.reuse)
                if kept is None or kept[0] < read_at:
                    fresh = instances.get(run.name, [])
                    locks.keep_view(
                        run.name, read_at, fresh + locks.unseen(run.name, [i["instance_id"] for i in fresh])
                    )
            finally:
                locks.release(run.name)
    finally:
        for run in guarded_runs:
            locks.end_refresh(run.refresh_guard)
            run.refresh_guard = None


def keep_view(locks, run: PoolRun) -> None:
    """After acting: keep the pool's read for the next runs when this run only launched (or did
    nothing), else forget it so that the next run reads."""
    if not run.ok or run.plan is None or not _only_launches(run.plan) or run.actions["terminated"]:
        locks.forget_view(run.name)
        return
    launched = locks.pending(run.name, run.actions["launched_instances"])
    locks.keep_view(run.name, run.read_at, run.instances + launched)


def _done_something(run: PoolRun) -> bool:
    return bool(run.actions["launched"] or run.actions["terminated"] or run.actions["drained"])


def results(runs: List[PoolRun], check_mode: bool, pacer: _pacing.Pacer) -> Dict[str, Any]:
    pools: Dict[str, Any] = {}
    failed: Dict[str, str] = {}
    diffs = []
    for run in runs:
        if not run.ok:
            failed[run.name] = run.error
        if run.plan is None:
            continue
        changed = run.plan["changed"] if run.ok or check_mode else _done_something(run)
        pool = _keeper.summarize(run.plan, run.actions, run.window, check_mode)
        pool["name"] = run.name
        if run.inputs.get("demand") is not None:
            inputs = run.inputs
            pool["demand"] = _demand.summary(inputs["floor"], inputs["demand"], inputs["scaling"], run.desired)
        diff = _planner.plan_diff(run.plan)
        pools[run.name] = {
            "changed": changed,
            "pool": pool,
            "plan": run.plan,
            "diff": diff,
            "reused_read": run.reused_read,
        }
        if not run.ok:
            pools[run.name]["failed_message"] = run.error
        if changed:
            diffs.append(dict(diff, before_header="pool %s" % run.name, after_header="pool %s" % run.name))
    return {
        "changed": any(p["changed"] for p in pools.values()),
        "pools": pools,
        "failed": failed,
        # ansible-core turns "failed" into the task's failure flag; this name keeps the messages.
        "failed_pools": dict(failed),
        "pacing": pacer.report(),
        "diff": diffs,
    }
