#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: spot_request
short_description: Keep an exact number of EC2 spot instances by name
version_added: 0.1.0
description:
  - Spot capacity identified by O(name). Every spot request, instance and volume it creates carries the tag
    C(parkingspot:request=<name>), so the module finds its own capacity again and a second identical run
    changes nothing and makes no write call.
  - Launches through RunInstances with InstanceMarketOptions for one instance type, CreateFleet C(type=instant)
    when O(instance_types) or O(subnet_ids) diversify, and RequestSpotInstances only with
    O(api=request_spot_instances).
  - Changing O(count) launches or terminates only the difference; the newest instances go first.
  - With O(wait), the module polls every 1.5 seconds. When O(wait_timeout) passes, it cancels what is still
    unfulfilled and terminates what it launched in this run before failing, so nothing is left behind.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  name:
    description:
      - Identity of the request. Tag C(parkingspot:request) carries it.
      - 1 to 256 characters without control characters; matched exactly (C(*) and C(?) are no wildcards).
    type: str
    required: true
  state:
    description: C(present) keeps O(count) live instances; C(absent) cancels the requests and terminates instances.
    type: str
    default: present
    choices: [present, absent]
  count:
    description: Exact number of live (pending, running, stopping or stopped) instances.
    type: int
    default: 1
  wait:
    description: Wait until every instance runs (C(present)) or is terminated (C(absent)).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait. On timeout unfulfilled requests are cancelled and this run's instances terminated.
    type: int
    default: 300
  terminate_instances:
    description: With O(state=absent), also terminate the instances of the cancelled requests.
    type: bool
    default: true
  renew_expired:
    description:
      - Persistent requests whose O(valid_until) has passed are no longer re-evaluated by EC2; their stopped
        instances can never start again. With C(true), such instances are terminated, the expired requests
        cancelled, and O(count) is met with fresh requests (give a new O(valid_until)). Running instances of an
        expired request keep running.
      - With C(false), expired requests are reported in RV(expired_requests) with a warning.
    type: bool
    default: false
  purge_tags:
    description:
      - Remove tags from existing instances that are not in O(tags). Has no effect when O(tags) is omitted.
      - Tags whose keys start with C(parkingspot:) or C(aws:) are never removed.
    type: bool
    default: true
  quota:
    description:
      - vCPU limits checked before any launch. A launch that would pass one fails before any write call, with a
        message giving the quota, the use and the ask.
    type: dict
    default: {}
    suboptions:
      max_vcpus:
        description: Most vCPUs this request may hold.
        type: int
      owner_tag:
        description: Tag key naming the owner; its value is taken from O(tags).
        type: str
      per_owner_max_vcpus:
        description: Most vCPUs all live instances carrying the owner's tag may hold (pools and requests together).
        type: int
      check_account_quota:
        description: Check the account's spot vCPU quota (Service Quotas) against the spot instances running.
        type: bool
        default: false
extends_documentation_fragment:
  - parkingspot.ec2.launch
  - parkingspot.ec2.launch.SPOT
  - parkingspot.ec2.aws
notes:
  - Supports check mode (the result predicts the launch or termination without a write call) and diff mode.
  - O(tags) are reconciled on existing instances too (values compared as text, so C(2) and C("2") are the same
    tag); with O(purge_tags=true) other user tags are removed. Keys starting C(parkingspot:) or C(aws:) are
    refused in O(tags) and never purged.
  - O(name) is matched exactly, never as a pattern (see the collection's C(docs/security.md)).
"""

EXAMPLES = r"""
- name: Keep two spot build runners from a launch template
  parkingspot.ec2.spot_request:
    name: ci-runners
    count: 2
    launch_template:
      name: ci-runner
    tags:
      team: build
    wait: true

- name: A persistent spot instance that stops (keeping its root volume) when interrupted
  parkingspot.ec2.spot_request:
    name: dev-box
    image_id: ami-0123456789abcdef0
    instance_type: m6i.large
    subnet_id: subnet-0123456789abcdef0
    iam_instance_profile: dev-box
    request_type: persistent
    interruption_behavior: stop
    valid_until: "2027-01-31T18:00:00Z"

- name: Diversify over types and zones with CreateFleet
  parkingspot.ec2.spot_request:
    name: batch
    count: 10
    launch_template:
      id: lt-0123456789abcdef0
    instance_types: [c6i.xlarge, c6a.xlarge, c7i.xlarge]
    subnet_ids: [subnet-aaaa1111, subnet-bbbb2222]

- name: Cancel the requests and terminate their instances
  parkingspot.ec2.spot_request:
    name: ci-runners
    state: absent
"""

RETURN = r"""
spot_requests:
  description: Spot requests of this name that are open, active or disabled (RunInstances creates one per instance).
  returned: always
  type: list
  elements: dict
  contains:
    spot_instance_request_id:
      description: Request id.
      type: str
      sample: sir-0a1b2c3d
    state:
      description: open, active, disabled, closed, cancelled or failed.
      type: str
      sample: active
    status_code:
      description: The request's status code, for example C(fulfilled).
      type: str
      sample: fulfilled
    instance_id:
      description: The instance that fulfils the request.
      type: str
      sample: i-0a1b2c3d4e5f60718
    valid_until:
      description: End of a persistent request.
      type: str
      sample: "2030-01-31T00:00:00Z"
    tags:
      description: Tags as a dict.
      type: dict
      sample: {"parkingspot:request": build-cache}
expired_requests:
  description: Persistent requests of this name whose validity has ended (EC2 no longer relaunches them).
  returned: always
  type: list
  sample: [{spot_instance_request_id: sir-0f0e0d0c, state: active, valid_until: "2029-12-31T00:00:00Z"}]
  elements: dict
instances:
  description: Live instances of this name after the run (in check mode, the ones that would remain).
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: Instance id.
      type: str
      sample: i-0a1b2c3d4e5f60718
    state:
      description: Instance state name.
      type: str
      sample: running
    instance_type:
      description: Instance type.
      type: str
      sample: c6i.xlarge
    zone:
      description: Availability zone.
      type: str
      sample: eu-west-1a
    market:
      description: C(spot) or C(on-demand).
      type: str
      sample: spot
    launch_time:
      description: ISO 8601 launch time.
      type: str
      sample: "2030-01-07T07:00:12Z"
    tags:
      description: Tags as a dict.
      type: dict
      sample: {"parkingspot:request": build-cache, team: build}
actions:
  description: What the run did (or, in check mode, would do).
  returned: always
  type: dict
  contains:
    launch:
      description: Number of instances launched.
      type: int
      sample: 1
    launched:
      description: Ids of the instances launched (empty in check mode).
      type: list
      sample: [i-0a1b2c3d4e5f60718]
      elements: str
    terminated:
      description: Ids of the instances terminated.
      type: list
      sample: []
      elements: str
    cancelled:
      description: Ids of the spot requests cancelled.
      type: list
      sample: []
      elements: str
    tagged:
      description: Ids of existing instances whose tags were added, changed or purged.
      type: list
      sample: []
      elements: str
    renewed:
      description: Ids of expired persistent requests replaced by this run.
      type: list
      sample: []
      elements: str
    errors:
      description:
        - What an instant fleet could not launch (C(code), C(message), C(lifecycle), C(instance_type),
          C(subnet_id)). A launch that gets none of its instances fails the run with these; one that gets some
          warns, or with O(wait) terminates what it launched and fails.
      type: list
      elements: dict
"""

import hashlib

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REQUEST

MAX_COUNT = 10000
MAX_WAIT_SECONDS = 86400


def read_current(client, name, now):
    """Live instances, open requests, expired persistent requests and the ids of gone instances.

    Gone (shutting-down or terminated) instances still listed by EC2 only seed the launch token:
    a launch after an interruption must not repeat the token of the launch that made the
    interrupted instance, or EC2 answers with that instance again.
    """
    identity = {TAG_REQUEST: name}
    requests = []
    expired = []
    found = _aws.describe_spot_requests(client, filters=_aws.tag_filters(identity))
    for request in _identity.keep_exact(found, identity):
        is_expired, _re_evaluated = _usage.request_validity(
            request["type"], request["state"], request["status_code"], request["valid_until"], now
        )
        if is_expired and request["type"] == "persistent":
            expired.append(request)
        elif request["state"] in _aws.OPEN_REQUEST_STATES:
            requests.append(request)
    every = _aws.describe_instances_by_tags(client, identity, states=_aws.ALL_STATES)
    known = {i["instance_id"] for i in every}
    # Instances of legacy requests do not inherit the request's tags: find them through the request.
    untagged = [r["instance_id"] for r in requests if r.get("instance_id") and r["instance_id"] not in known]
    if untagged:
        every += _aws.describe_instances_by_ids(client, untagged)
    instances = [i for i in every if i["state"] in _aws.LIVE_STATES]
    gone = sorted(i["instance_id"] for i in every if i["state"] not in _aws.LIVE_STATES)
    return instances, requests, expired, gone


def renew_expired(module, client, params, instances, expired, actions):
    """Persistent requests past their validity: EC2 no longer relaunches or restarts their instances.

    With ``renew_expired``, their stopped instances (which cannot be started again) are terminated
    and the expired requests cancelled, so the count is met with fresh requests. Running ones keep
    running. Returns the instances still counted as live.
    """
    if not expired:
        return instances
    ids = {r["spot_instance_request_id"] for r in expired}
    owned = {r["instance_id"] for r in expired if r.get("instance_id")}
    stale = [
        i
        for i in instances
        if i["state"] in ("stopping", "stopped")
        and (i["instance_id"] in owned or i.get("spot_instance_request_id") in ids)
    ]
    if not params["renew_expired"]:
        module.warn(
            "persistent spot requests %s of %s have expired; set renew_expired: true to replace them"
            % (", ".join(sorted(ids)), params["name"])
        )
        return instances
    actions["renewed"] = sorted(ids)
    actions["terminated"] = sorted(i["instance_id"] for i in stale)
    open_ids = sorted(r["spot_instance_request_id"] for r in expired if r["state"] in _aws.OPEN_REQUEST_STATES)
    actions["cancelled"] = open_ids
    if not module.check_mode:
        if open_ids:
            _aws.cancel_spot_requests(client, open_ids)
        if actions["terminated"]:
            _aws.terminate_instances(client, actions["terminated"])
    gone = set(actions["terminated"])
    return [i for i in instances if i["instance_id"] not in gone]


def _validate(params, now):
    _identity.check_module_params(params)
    check_range(params["count"], "count", 0, MAX_COUNT)
    check_range(params["wait_timeout"], "wait_timeout", 1, MAX_WAIT_SECONDS, "seconds")
    if params["state"] == "present" and params["count"] > 0:
        _launch.validate_launch(params, now)


def _pending_requests(requests):
    return [r for r in requests if r["state"] == "open" and not r.get("instance_id")]


def launch_token(name, count, instances, requests, now, gone=()):
    """The client token seed of a launch: the name, the count, everything this run saw, the minute.

    A retried call (throttling, a timeout, an InternalError) or a second run that saw the same
    capacity launches once; the token sent also covers the whole request (``_launch.derive_token``).
    ``gone`` (ids of terminated instances EC2 still lists) makes a relaunch after an interruption
    within the same minute a new launch rather than a replay of the one that was interrupted.
    """
    seen = sorted(
        [i["instance_id"] for i in instances] + [r["spot_instance_request_id"] for r in requests] + list(gone)
    )
    text = "|".join([name, str(count), now.strftime("%Y-%m-%dT%H:%M")] + seen)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ensure_present(module, client, params, instances, requests, expired=(), now=None, gone=()):
    name = params["name"]
    now = now or _launch.utcnow()
    tags = dict(params["tags"] or {}, **{TAG_REQUEST: name})
    actions = dict(launch=0, launched=[], terminated=[], cancelled=[], tagged=[], renewed=[], errors=[])
    instances = renew_expired(module, client, params, instances, list(expired), actions)
    pending = _pending_requests(requests)
    have = len(instances) + len(pending)
    missing = params["count"] - have

    actions["tagged"] = retag(module, client, instances, tags, params["tags"] is not None, params["purge_tags"])

    if missing > 0:
        actions["launch"] = missing
        _quota.check_request(module, client, params, instances, missing)
        if not module.check_mode:
            token = launch_token(name, missing, instances, requests, now, gone)
            outcome = _launch.launch(client, params, missing, tags, client_token=token)
            launched_ids = sorted(i["instance_id"] for i in outcome["instances"])
            new_requests = outcome["spot_requests"]
            actions["errors"] = outcome["errors"]
            short = len(launched_ids) + len(new_requests) < missing
            if short and not launched_ids and not new_requests:
                raise ParkingSpotError(
                    message="spot launch for %s launched none of %d instances%s"
                    % (
                        name,
                        missing,
                        ": " + _launch.describe_errors(outcome["errors"]) if outcome["errors"] else "",
                    )
                )
            if short and params["wait"]:
                _lifecycle.clean_up_and_fail(
                    client,
                    "spot launch for %s launched %d of %d instances%s"
                    % (
                        name,
                        len(launched_ids),
                        missing,
                        ": " + _launch.describe_errors(outcome["errors"]) if outcome["errors"] else "",
                    ),
                    [],
                    launched_ids,
                )
            if short:
                module.warn(
                    "spot launch for %s launched %d of %d instances%s; the next run launches the rest"
                    % (
                        name,
                        len(launched_ids),
                        missing,
                        ": " + _launch.describe_errors(outcome["errors"]) if outcome["errors"] else "",
                    )
                )
            if params["wait"]:
                new_request_ids = [r["spot_instance_request_id"] for r in new_requests]
                fulfilled = _lifecycle.wait_fulfilled(client, new_request_ids, params["wait_timeout"])
                if fulfilled is None:
                    partial = _aws.describe_spot_requests(client, request_ids=new_request_ids)
                    _lifecycle.clean_up_and_fail(
                        client,
                        "spot requests %s were not fulfilled within %ds" % (name, params["wait_timeout"]),
                        new_request_ids,
                        _launch.request_instance_ids(partial),
                    )
                new_requests = fulfilled
            request_instances = _launch.request_instance_ids(new_requests)
            if request_instances:
                # RequestSpotInstances cannot tag instances at launch: one batched call for all of them.
                _aws.create_tags(client, request_instances, tags)
            launched_ids = sorted(set(launched_ids) | set(request_instances))
            actions["launched"] = launched_ids
            if params["wait"] and launched_ids:
                if _lifecycle.wait_running(client, launched_ids, params["wait_timeout"]) is None:
                    _lifecycle.clean_up_and_fail(
                        client,
                        "instances of %s were not running within %ds" % (name, params["wait_timeout"]),
                        [r["spot_instance_request_id"] for r in new_requests],
                        launched_ids,
                    )
    elif missing < 0:
        surplus = -missing
        # Unfulfilled requests go first, then the newest instances.
        drop_requests = pending[:surplus]
        drop_instances = _lifecycle.newest_first(instances)[: surplus - len(drop_requests)]
        cancel = [r["spot_instance_request_id"] for r in drop_requests]
        cancel += [i["spot_instance_request_id"] for i in drop_instances if i.get("spot_instance_request_id")]
        dropped = sorted(i["instance_id"] for i in drop_instances)
        actions["cancelled"] = sorted(set(actions["cancelled"]) | set(cancel))
        actions["terminated"] = sorted(set(actions["terminated"]) | set(dropped))
        if not module.check_mode:
            # A persistent request would relaunch a terminated instance: cancel first.
            if cancel:
                _aws.cancel_spot_requests(client, cancel)
            if dropped:
                _aws.terminate_instances(client, dropped)
    changed = bool(
        actions["launch"] or actions["terminated"] or actions["cancelled"] or actions["tagged"] or actions["renewed"]
    )
    return changed, actions


def ensure_absent(module, client, params, instances, requests, expired=()):
    actions = dict(launch=0, launched=[], terminated=[], cancelled=[], tagged=[], renewed=[], errors=[])
    cancel = {r["spot_instance_request_id"] for r in requests}
    cancel |= {i["spot_instance_request_id"] for i in instances if i.get("spot_instance_request_id")}
    actions["cancelled"] = sorted(cancel)
    if params["terminate_instances"]:
        actions["terminated"] = sorted(i["instance_id"] for i in instances)
    if not module.check_mode:
        if cancel:
            _aws.cancel_spot_requests(client, sorted(cancel))
        if actions["terminated"]:
            _aws.terminate_instances(client, actions["terminated"])
            if params["wait"] and not _lifecycle.wait_terminated(client, actions["terminated"], params["wait_timeout"]):
                raise ParkingSpotError(
                    message="instances %s were not terminated within %ds"
                    % (", ".join(actions["terminated"]), params["wait_timeout"])
                )
    return bool(actions["cancelled"] or actions["terminated"]), actions


def retag(module, client, instances, tags, manage_user_tags, purge_tags):
    """Bring existing instances' tags to ``tags`` (compared as text); reserved keys are never purged.

    Without user tags given (``manage_user_tags`` false) only the identity tag is put right. Instances
    needing the same change share one CreateTags / DeleteTags call. Returns the ids changed.
    """
    changes = {}
    for instance in instances:
        current = instance["tags"]
        to_set, to_unset = {}, []
        if manage_user_tags:
            user_current = {k: v for k, v in current.items() if not _identity.is_reserved(k)}
            user_wanted = {k: v for k, v in tags.items() if not _identity.is_reserved(k)}
            to_set, to_unset = compare_aws_tags(user_current, user_wanted, purge_tags=purge_tags)
        to_set.update({k: v for k, v in tags.items() if _identity.is_reserved(k) and current.get(k) != v})
        if to_set or to_unset:
            key = (tuple(sorted(to_set.items())), tuple(sorted(to_unset)))
            changes.setdefault(key, []).append(instance["instance_id"])
    if not module.check_mode:
        for (to_set, to_unset), ids in sorted(changes.items()):
            if to_set:
                _aws.create_tags(client, ids, dict(to_set))
            if to_unset:
                _aws.delete_tags(client, ids, to_unset)
    return sorted(iid for ids in changes.values() for iid in ids)


def _summary(instances):
    return {"count": len(instances), "instance_ids": sorted(i["instance_id"] for i in instances)}


def do(module):
    params = module.params
    now = _launch.utcnow()
    _validate(params, now)
    if params["api"] == "request_spot_instances" and params["state"] == "present":
        module.warn(
            "api=request_spot_instances cannot set metadata_options: IMDSv2 is required only if the AMI or the"
            " account's instance metadata defaults require it"
        )
    client = module.client("ec2")
    instances, requests, expired, gone = read_current(client, params["name"], now)
    before = _summary(instances)

    if params["state"] == "present":
        changed, actions = ensure_present(module, client, params, instances, requests, expired, now, gone)
    else:
        changed, actions = ensure_absent(module, client, params, instances, requests, expired)

    if module.check_mode or not changed:
        dropped = set(actions["terminated"])
        after_instances = [i for i in instances if i["instance_id"] not in dropped]
        after_requests = [r for r in requests if r["spot_instance_request_id"] not in set(actions["cancelled"])]
        after = _summary(after_instances)
        after["count"] += actions["launch"]
    else:
        after_instances, after_requests, expired, _gone = read_current(client, params["name"], now)
        after = _summary(after_instances)
    module.exit_json(
        changed=changed,
        spot_requests=after_requests,
        expired_requests=expired,
        instances=after_instances,
        actions=actions,
        diff=dict(before=before, after=after),
    )


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        count=dict(type="int", default=1),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        terminate_instances=dict(type="bool", default=True),
        quota=_quota.QUOTA_ARGUMENT_SPEC,
        renew_expired=dict(type="bool", default=False),
        purge_tags=dict(type="bool", default=True),
    )
    argument_spec.update(_launch.LAUNCH_ARGUMENT_SPEC)
    argument_spec.update(_launch.SPOT_ARGUMENT_SPEC)
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
