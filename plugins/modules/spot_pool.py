#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_pool
short_description: Keep a pool of spot (or time-boxed) instances at its desired size
version_added: 0.1.0
description:
  - One reconcile of a pool per run; made to be run every few minutes by a schedule (AWX, cron).
  - Reads the pool (instances tagged C(parkingspot:pool=<name>)) with paginated, tag-filtered DescribeInstances
    calls, never one call per instance, so a run that changes nothing costs one call per 1000 instances.
  - Works out the desired count for O(now) from O(desired) or the O(schedule) windows, plans with a pure function
    (launch, renew, drain, terminate, fall back), then acts in batches. The rules are in the collection's
    C(docs/keeper-planning.md).
  - Interrupted or terminated instances are replaced. Surplus instances are drained (idle first, then newest
    first) and terminated. With O(market=block) each instance is a lease of O(duration_minutes) that is renewed
    before it ends and that the instance itself enforces (see M(parkingspot.ec2.spot_block)).
  - When a spot launch fails with one of O(on_demand_fallback.on_errors), the shortfall is launched on-demand
    (tag C(parkingspot:market=on-demand)) or the desired capacity of O(on_demand_fallback.asg_name) is raised.
    Later runs replace fallback capacity with spot when spot works again, launching before draining.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  name:
    description:
      - Pool name; tag C(parkingspot:pool) carries it.
      - 1 to 256 characters without control characters; matched exactly (C(*) and C(?) are no wildcards).
    type: str
    required: true
  state:
    description: C(present) keeps the pool; C(absent) drains and terminates every instance of it.
    type: str
    default: present
    choices: [present, absent]
  desired:
    description: Number of instances outside any O(schedule) window.
    type: int
    default: 0
  schedule:
    description:
      - Operating-hours windows. The first window that covers O(now) gives the desired count.
      - A window whose O(schedule[].end) is earlier than its O(schedule[].start) crosses midnight; it belongs to
        the day it starts on.
    type: list
    elements: dict
    default: []
    suboptions:
      days:
        description: Days the window starts on (mon, tue, wed, thu, fri, sat, sun).
        type: list
        elements: str
        required: true
      start:
        description: Start, C(HH:MM) local time in O(timezone).
        type: str
        required: true
      end:
        description: End, C(HH:MM) local time in O(timezone).
        type: str
        required: true
      desired:
        description: Desired count while the window is in force.
        type: int
        required: true
  timezone:
    description: IANA time zone of the schedule, for example C(Europe/Berlin).
    type: str
    default: UTC
  market:
    description: C(spot) instances, or C(block) time-boxed spot leases of O(duration_minutes).
    type: str
    default: spot
    choices: [spot, block]
  duration_minutes:
    description: Lease length of each instance with O(market=block).
    type: int
  renew_before_minutes:
    description:
      - With O(market=block), a lease this close to its end gets its replacement launched.
      - Make it at least as long as your longest job, so no job is cut at a lease end.
    type: int
    default: 20
  on_demand_fallback:
    description: What to do when spot capacity is not available.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Launch the shortfall on-demand.
        type: bool
        default: false
      max:
        description: Most on-demand instances the pool may hold.
        type: int
        default: 0
      on_errors:
        description:
          - Launch error codes that trigger the fallback (C(*) wildcards allowed). Only these move a shortfall to
            on-demand; any other code an instant fleet reports (a bad image or subnet, a missing permission) fails
            the run with the codes, since on-demand would meet it too.
          - A spot RunInstances that launches fewer instances than asked (EC2 gives what capacity it has) counts as
            C(InsufficientInstanceCapacity).
        type: list
        elements: str
        default:
          - InsufficientInstanceCapacity
          - MaxSpotInstanceCountExceeded
          - SpotMaxPriceTooLow
          - InsufficientCapacity*
          - UnfulfillableCapacity
      asg_name:
        description: Raise the desired capacity of this auto scaling group instead of launching instances.
        type: str
  on_demand_base:
    description:
      - On-demand runners the pool keeps whatever spot does (as an auto scaling group's C(OnDemandBaseCapacity)).
        They are part of the desired count (at most the desired count of them), are tagged
        C(parkingspot:market=on-demand) and C(parkingspot:lane=on-demand), and are never replaced by spot.
      - The built-in runner registration hook gives them a label of their own so CI systems can send retried jobs
        there; see the collection's C(docs/keeper-planning.md).
    type: int
    default: 0
  rebalance:
    description:
      - What a rebalance recommendation does. V(replace) launches a replacement for every instance tagged
        C(parkingspot:rebalance) (the cleanup_hooks role's C(rebalance_tag) hook sets it) and then drains it,
        as EC2 Auto Scaling's capacity rebalancing does. V(ignore) leaves such instances serving until the cloud
        interrupts them.
    type: str
    default: ignore
    choices: [ignore, replace]
  offering_cooldown_minutes:
    description:
      - Offerings (instance type x subnet of O(instance_types) and O(subnet_ids)) that interrupted one of the
        pool's instances, or refused a launch, within these minutes are left out of the next launch unless
        nothing else is left. Interruptions are read from the instances the reconcile lists anyway (EC2 lists
        terminated instances for about an hour), so this costs no API call.
      - When a launch is refused with a capacity error, the rest of it is retried on the offerings not yet
        refused in the same run before the on-demand fallback.
      - V(0) forgets past interruptions (this run's capacity errors still count).
    type: int
    default: 15
  drain:
    description: How an instance is drained before it is terminated.
    type: dict
    default: {}
    suboptions:
      command:
        description:
          - Command run on the controller; C({instance_id}) and C({private_dns_name}) are replaced, and the
            environment has C(PARKINGSPOT_INSTANCE_ID), C(PARKINGSPOT_PRIVATE_DNS_NAME) and C(PARKINGSPOT_POOL).
          - It is split into arguments like shell words (quotes group) but no shell runs it; every other brace,
            C($) and quote reaches the program as written. Use C(sh -c '...') for shell expansion.
          - A command that cannot be split (an unbalanced quote) fails the run before any AWS call.
          - A non-zero exit or a timeout is reported; the instance is terminated all the same.
        type: str
      kubectl:
        description: Cordon and drain the node (named by the instance's private DNS name) with kubectl.
        type: bool
        default: false
      kubectl_path:
        description: The kubectl executable.
        type: str
        default: kubectl
      timeout:
        description:
          - Seconds a drain may take. Instances are tagged C(parkingspot:state=draining) with a deadline so a
            concurrent or later run leaves them alone until then and terminates them after.
        type: int
        default: 600
  quota:
    description: vCPU limits; launches are clipped to what they allow and the result says so in C(pool.clipped).
    type: dict
    default: {}
    suboptions:
      max_vcpus:
        description: Most vCPUs the pool may hold.
        type: int
      owner_tag:
        description: Tag key naming the owner (its value is taken from O(tags)).
        type: str
      per_owner_max_vcpus:
        description: Most vCPUs all instances of that owner may hold, in every pool.
        type: int
      check_account_quota:
        description: Also respect the account's spot vCPU quota read from Service Quotas.
        type: bool
        default: false
  demand:
    description:
      - What the CI queue asks for, from the C(parkingspot.ec2.ci_queue) lookup or the C(ci_webhook) event source.
      - When given, the pool is sized C(clamp(busy + queued * per_job, floor, scaling.max)), where the floor is
        O(desired) or the O(schedule) window in force, and only runners idle for O(scaling.idle_minutes) (on-demand
        runners O(scaling.on_demand_idle_minutes)) and running for O(scaling.min_running_minutes) are drained to shrink
        it; a busy runner (tag C(parkingspot:busy=true)) never is. See the collection's C(docs/queue-driven-pools.md).
      - With O(demand.queued) or O(demand.busy), O(scaling.max) is required.
      - With neither (only O(demand.retries)), the queue does not size the pool, which keeps its O(desired) or
        O(schedule) count; only the on-demand lane's runners follow the O(scaling) idle rule, and O(scaling.max) may
        be left out.
    type: dict
    suboptions:
      queued:
        description: Jobs waiting for a runner of this pool (counted as 0 when only O(demand.busy) is given).
        type: int
      busy:
        description: Jobs running on runners of this pool (counted as 0 when only O(demand.queued) is given).
        type: int
      retries:
        description:
          - Re-runs (retried jobs) waiting for a runner, not counted in O(demand.queued). They never size the spot part
            of the pool; the keeper keeps one on-demand runner in the on-demand lane (tags
            C(parkingspot:market=on-demand), C(parkingspot:lane=on-demand)) for each re-run that no idle lane runner can
            take, on top of O(on_demand_base), and scales those runners in by the O(scaling) idle rule. Send re-runs to
            the lane's label so they never run on spot again (the C(docs/keeper-planning.md) of the collection).
          - The C(ci_webhook) event source counts them from GitHub C(workflow_job.run_attempt) and GitLab
            C(retries_count).
        type: int
        default: 0
      counted_at:
        description:
          - When these counts were taken (ISO 8601 with a zone, fractions of a second allowed), as the C(ci_webhook)
            event source sends it.
          - Orders overlapping keeper runs of the pool on one controller (O(run_lock)), which plan with the newest
            counts any of them was started for, so a run started for older counts cannot shrink what a newer one
            asked for. Without it a run plans with its own counts.
        type: str
  scaling:
    description: Bounds and timings of a queue-driven pool (used with O(demand)).
    type: dict
    default: {}
    suboptions:
      max:
        description:
          - Most runners the queue may ask for; at least O(desired) and every window's desired.
          - Required when O(demand.queued) or O(demand.busy) is given.
        type: int
      per_job:
        description: Runners launched per queued job (fractions round up).
        type: float
        default: 1
      idle_minutes:
        description:
          - A runner idle this long may be drained. Idle since the tag C(parkingspot:idle-since) the CI hooks write,
            else since its launch.
        type: int
        default: 10
      min_running_minutes:
        description: A runner is never drained to shrink the pool before it has run this long.
        type: int
        default: 5
      on_demand_idle_minutes:
        description:
          - An on-demand runner (an O(on_demand_fallback) runner, or a retry lane runner of O(demand.retries)) idle this
            long may be drained, instead of O(scaling.idle_minutes). O(scaling.min_running_minutes) still applies.
          - With the default V(0) an on-demand runner the pool no longer needs goes at the first run that finds it
            idle; so a fallback runner leaves as soon as its job ends once spot runners cover the target, and the
            pool's idle spare capacity stays on spot, which costs about a third. If the queue comes back the pool
            launches again, spot first. Set it to O(scaling.idle_minutes) to keep on-demand runners as long as spot
            ones.
        type: int
        default: 0
  now:
    description:
      - Plan as of this time (ISO 8601 with a zone) instead of the current time, for what-if questions in check
        mode ("what would the pool do on Monday at 08:00") and for tests.
    type: str
extends_documentation_fragment:
  - parkingspot.ec2.launch
  - parkingspot.ec2.aws
  - parkingspot.ec2.run_lock
notes:
  - Supports check mode (returns the plan without a write call) and diff mode (counts before and after).
"""

EXAMPLES = r"""
- name: Keep CI runners during office hours, two at night
  parkingspot.ec2.spot_pool:
    name: ci-linux
    desired: 2
    timezone: Europe/Berlin
    schedule:
      - days: [mon, tue, wed, thu, fri]
        start: "07:00"
        end: "19:00"
        desired: 20
    launch_template:
      name: ci-runner
    instance_types: [c6i.xlarge, c6a.xlarge, c7i.xlarge]
    subnet_ids: [subnet-aaaa1111, subnet-bbbb2222]
    on_demand_fallback:
      enabled: true
      max: 5
    drain:
      command: /usr/local/bin/pause-runner {private_dns_name}
      timeout: 900
    tags:
      team: build

- name: Follow the CI queue, with the office-hours schedule as the floor
  parkingspot.ec2.spot_pool:
    name: ci-linux
    desired: 0
    schedule:
      - days: [mon, tue, wed, thu, fri]
        start: "07:00"
        end: "19:00"
        desired: 4
    demand: "{{ lookup('parkingspot.ec2.ci_queue', 'github', repos=['example/app'], labels=['self-hosted', 'linux']) }}"
    scaling:
      max: 40
      idle_minutes: 10
    launch_template:
      name: ci-runner

- name: What would the office-hours pool do on Monday at 08:00 in Berlin?
  parkingspot.ec2.spot_pool:
    name: ci-linux
    now: "2026-11-30T08:00:00+01:00"
    desired: 2
    timezone: Europe/Berlin
    schedule: [{days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00", desired: 20}]
    launch_template: {name: ci-runner}
  check_mode: true
  register: what_if

- name: Time-boxed runners (three-hour leases, renewed 20 minutes before they end)
  parkingspot.ec2.spot_pool:
    name: ci-blocks
    desired: 4
    market: block
    duration_minutes: 180
    launch_template:
      name: ci-runner
    instance_type: m6i.large
"""

RETURN = r"""
pool:
  description: The pool after the run (in check mode, as planned).
  returned: always
  type: dict
  contains:
    name:
      description: The pool's name (its C(parkingspot:pool) tag value).
      type: str
      sample: ci-linux
    market:
      description: The pool's market, C(spot) or C(block).
      type: str
      sample: spot
    desired:
      description: Desired count in force at O(now).
      type: int
      sample: 20
    capacity:
      description: Instances counted as serving capacity before the run.
      type: int
      sample: 18
    counts:
      description: Instances before the run, by state and by market (live instances only).
      type: dict
      contains:
        by_state:
          description: Count per instance state; every state is present.
          type: dict
          sample: {pending: 0, running: 18, stopping: 0, stopped: 0, shutting_down: 1, terminated: 2}
        by_market:
          description: Live instances per market.
          type: dict
          sample: {spot: 16, on_demand: 2}
      sample: {by_state: {pending: 0, running: 18, stopping: 0, stopped: 0, shutting_down: 1, terminated: 2},
               by_market: {spot: 16, on_demand: 2}}
    interrupted:
      description: Instances of the pool that were interrupted (tagged C(parkingspot:interrupted) or reported by AWS).
      type: int
      sample: 2
    launched:
      description: Ids of instances launched by this run.
      type: list
      elements: str
      sample: [i-0a1b2c3d4e5f60718, i-0a1b2c3d4e5f60719]
    would_launch:
      description: In check mode, the number of instances the run would launch; 0 otherwise.
      type: int
      sample: 0
    terminated:
      description: Ids of instances terminated by this run.
      type: list
      elements: str
      sample: [i-0123456789abcdef0]
    draining:
      description: Ids of instances drained in this run or still draining.
      type: list
      elements: str
      sample: [i-0fedcba9876543210]
    drain_outcomes:
      description: What the drain did for each instance drained by this run.
      type: list
      elements: dict
      contains:
        instance_id:
          description: The instance.
          type: str
        status:
          description: C(drained), C(failed), C(timeout) or C(skipped).
          type: str
        detail:
          description: The command's output or error, empty when it drained cleanly.
          type: str
      sample: [{instance_id: i-0fedcba9876543210, status: drained, detail: ""}]
    fallback:
      description: The on-demand fallback of this run.
      type: dict
      contains:
        on_demand_launched:
          description: On-demand instances launched (or planned in check mode) by this run.
          type: int
        error:
          description: The spot launch error that caused the fallback, or null.
          type: str
        asg_desired:
          description: The fallback Auto Scaling group's desired capacity after the run, or null without one.
          type: int
        errors:
          description:
            - What an on-demand instant fleet could not launch (C(code), C(message), C(instance_type), C(subnet_id));
              empty when everything launched.
          type: list
          elements: dict
      sample: {on_demand_launched: 2, error: InsufficientInstanceCapacity, asg_desired: null, errors: []}
    clipped:
      description: Launches reduced by a quota, with the quota, what was asked and what was allowed.
      type: list
      elements: dict
      sample: [{quota: quota.max_vcpus, market: spot, asked: 4, allowed: 2, limit_vcpus: 64}]
    blocks:
      description: With market block, each lease's instance_id, expires_at, remaining_minutes and status.
      type: list
      elements: dict
      sample:
        - {instance_id: i-0a1b2c3d4e5f60718, expires_at: "2030-01-07T14:00:00Z", remaining_minutes: 95, status: active}
    offerings:
      description:
        - C(launch), the offerings (instance_type, subnet_id) the next launch may use; C(excluded), those left
          out with the C(reason) and time C(at); C(cooldown_minutes); C(capacity_errors), the offerings that
          refused a launch in this run with their error C(code).
      type: dict
      sample:
        launch: [{instance_type: m7i.large, subnet_id: subnet-0b1c2d3e}]
        excluded:
          - instance_type: m6i.large
            subnet_id: subnet-0a1b2c3d
            reason: interruption of i-0a1b2c3d4e5f60718
            at: "2030-01-07T13:58:00Z"
        cooldown_minutes: 15
        capacity_errors: []
    window:
      description: The schedule window in force, or null when O(desired) applies.
      type: dict
      contains:
        index:
          description: Position of the window in O(schedule).
          type: int
        days:
          description: The window's days.
          type: list
          elements: str
        start:
          description: Local start time, C(HH:MM).
          type: str
        end:
          description: Local end time, C(HH:MM).
          type: str
        desired:
          description: The window's desired count.
          type: int
        local_time:
          description: The day and time in O(timezone) at O(now).
          type: str
      sample: {index: 0, days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00", desired: 20,
               local_time: "mon 08:00 CET"}
    demand:
      description: With O(demand), the queued, busy and retries counts, the floor, the max, per_job and the target size.
      type: dict
      returned: when O(demand) is given
      sample: {queued: 6, busy: 3, floor: 2, max: 20, per_job: 1, target: 9}
plan:
  description: The planner's output for this run.
  returned: always
  type: dict
  contains:
    now:
      description: The time the plan is for (O(now), or the current time), ISO 8601 UTC.
      type: str
    market:
      description: The pool's market.
      type: str
    desired:
      description: Desired count in force.
      type: int
    changed:
      description: Whether the plan writes anything.
      type: bool
    counts:
      description: >-
        Instances before the run: C(by_state), C(by_market), C(terminating) (per market), C(capacity),
        C(kept), C(draining), C(expiring), C(interrupted).
      type: dict
    launch:
      description: Instances to launch, C(spot) and C(on_demand); with market block also the leases' C(expires_at).
      type: dict
    drain:
      description: Instances to drain now, each with its C(instance_id) and drain C(deadline).
      type: list
      elements: dict
    draining:
      description: Instances already draining, each with its C(instance_id) and C(deadline).
      type: list
      elements: dict
    terminate:
      description: Ids of instances to terminate.
      type: list
      elements: str
    renew:
      description: Ids of block leases renewed (replaced) before they expire.
      type: list
      elements: str
    replace_on_demand:
      description: Ids of on-demand fallback instances replaced by spot now that spot launches again.
      type: list
      elements: str
    clipped:
      description: Launches reduced by a quota.
      type: list
      elements: dict
    blocks:
      description: With market block, the leases.
      type: list
      elements: dict
    quota:
      description: vCPU use against the configured quotas (C(vcpus_per_instance), and the limits when set).
      type: dict
    fallback:
      description: >-
        The fallback's state: C(enabled), C(max), C(on_demand_in_pool), C(spot_available), C(error),
        C(asg_capacity), C(asg_desired).
      type: dict
    reasons:
      description: One line per decision, the summary first.
      type: list
      elements: str
  sample:
    now: "2030-01-07T07:00:00Z"
    market: spot
    desired: 20
    changed: true
    counts: {by_state: {pending: 0, running: 18, stopping: 0, stopped: 0, shutting_down: 0, terminated: 0},
             by_market: {spot: 18, on_demand: 0}, terminating: {spot: 0, on_demand: 0}, capacity: 18, kept: 18,
             draining: 0, expiring: 0, interrupted: 0}
    launch: {spot: 2, on_demand: 0}
    drain: []
    draining: []
    terminate: []
    renew: []
    replace_on_demand: []
    clipped: []
    blocks: []
    quota: {vcpus_per_instance: 4}
    fallback: {enabled: true, max: 5, on_demand_in_pool: 0, spot_available: true, error: null, asg_capacity: null,
               asg_desired: null}
    reasons: ["desired 20, capacity 18 (18 spot, 0 on-demand): launching 2 spot, 0 on-demand"]
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _demand
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner
from ansible_collections.parkingspot.ec2.plugins.module_utils import _pool_options
from ansible_collections.parkingspot.ec2.plugins.module_utils import _run_lock
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL


def do(module):
    inputs = _pool_options.pool_inputs(module.params)
    name = inputs["params"]["name"]
    locks = _run_lock.from_module(module)
    try:
        if locks is not None:
            demand = module.params.get("demand")
            newest = locks.enter(name, demand)
            if newest is not demand:
                inputs = _pool_options.pool_inputs(dict(module.params, demand=newest))
        params, now, desired, window = inputs["params"], inputs["now"], inputs["desired"], inputs["window"]
        client = module.client("ec2")
        instances, plan, actions = _keeper.reconcile(
            module,
            client,
            pool_key=name,
            identity={TAG_POOL: name},
            params=params,
            desired=desired,
            market=params["market"],
            now=now,
            window=window,
            scaling=inputs["scaling"],
            locks=locks,
        )
    finally:
        if locks is not None:
            locks.release_all()
    pool = _keeper.summarize(plan, actions, window, module.check_mode)
    pool["name"] = name
    if inputs["demand"] is not None:
        pool["demand"] = _demand.summary(inputs["floor"], inputs["demand"], inputs["scaling"], desired)
    module.exit_json(changed=plan["changed"], pool=pool, plan=plan, diff=_planner.plan_diff(plan))


def main():
    argument_spec = _pool_options.pool_argument_spec()
    argument_spec["run_lock"] = _run_lock.RUN_LOCK_ARGUMENT_SPEC
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
