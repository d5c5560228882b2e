# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One run of spot_request: read the capacity of a name, then renew, retag, launch or drop.

Capacity belongs to a name through the tag ``parkingspot:request=<name>``; instances of legacy
requests, which do not inherit the request's tags, are found through their request. A run that
changes nothing reads the requests and the instances once and writes nothing.

Order of the writes: expired persistent requests are cancelled and their stopped instances
terminated (with ``renew_expired``), existing instances are retagged (one call per distinct
change), then either the shortfall is launched with one call or the surplus is dropped
(unfulfilled requests first, then the newest instances; requests are cancelled before their
instances end). A launch carries a client token seeded by what the run saw (``launch_token``).
With ``wait``, a launch that is short or does not run in time is cleaned up before the run fails
(``_lifecycle``). Check mode writes nothing and predicts the result from what was read.
"""

from __future__ import annotations

from typing import Any
from typing import Dict
from typing import List

from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _launch
from ansible_collections.parkingspot.ec2.plugins.module_utils import _lifecycle
from ansible_collections.parkingspot.ec2.plugins.module_utils import _quota
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_REQUEST

# --- reading -------------------------------------------------------------------------


def read_current(client, name, now):
    """Live instances, open requests, expired persistent requests and the ids of gone instances.

    Instances and requests come in the shape the module returns (``_usage.with_age`` /
    ``_usage.with_validity`` at ``now``).

    Gone (shutting-down or terminated) instances still listed by EC2 only seed the launch token:
    a launch after an interruption must not repeat the token of the launch that made the
    interrupted instance, or EC2 answers with that instance again.
    """
    identity = {TAG_REQUEST: name}
    requests = []
    expired = []
    found = _aws.describe_spot_requests(client, filters=_aws.tag_filters(identity))
    for request in _identity.keep_exact(found, identity):
        request = _usage.with_validity(request, now)
        if request["expired"] and request["type"] == "persistent":
            expired.append(request)
        elif request["state"] in _aws.OPEN_REQUEST_STATES:
            requests.append(request)
    every = _aws.describe_instances_by_tags(client, identity, states=_aws.ALL_STATES)
    known = {i["instance_id"] for i in every}
    # Instances of legacy requests do not inherit the request's tags: find them through the request.
    untagged = [r["instance_id"] for r in requests if r.get("instance_id") and r["instance_id"] not in known]
    if untagged:
        every += _aws.describe_instances_by_ids(client, untagged)
    instances = [_usage.with_age(i, now) for i in every if i["state"] in _aws.LIVE_STATES]
    gone = sorted(i["instance_id"] for i in every if i["state"] not in _aws.LIVE_STATES)
    return instances, requests, expired, gone


def pending_requests(requests: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Open requests without an instance yet: they count towards ``count`` as if launched."""
    return [r for r in requests if r["state"] == "open" and not r.get("instance_id")]


def launch_token(name, count, instances, requests, now, gone=()):
    """The client token seed of a launch: the name, the count, the minute, everything this run saw.

    A retried call (throttling, a timeout, an InternalError) or a second run that saw the same
    capacity launches once; the token sent also covers the whole request (``_launch.derive_token``).
    ``gone`` (ids of terminated instances EC2 still lists) makes a relaunch after an interruption
    within the same minute a new launch rather than a replay of the one that was interrupted.
    """
    seen = [i["instance_id"] for i in instances] + [r["spot_instance_request_id"] for r in requests] + list(gone)
    return _launch.token_seed([name, str(count), now.strftime("%Y-%m-%dT%H:%M")], seen)


# --- acting --------------------------------------------------------------------------


def _no_actions() -> Dict[str, Any]:
    return dict(launch=0, launched=[], terminated=[], cancelled=[], tagged=[], renewed=[], errors=[])


def renew_expired(module, client, params, instances, expired, actions):
    """Persistent requests past their validity: EC2 no longer relaunches or restarts their instances.

    With ``renew_expired``, their stopped instances (which cannot be started again) are terminated
    and the expired requests cancelled, so the count is met with fresh requests. Running ones keep
    running. Without it, the run warns. Returns the instances still counted as live.
    """
    if not expired:
        return instances
    ids = {r["spot_instance_request_id"] for r in expired}
    if not params["renew_expired"]:
        module.warn(
            "persistent spot requests %s of %s have expired; set renew_expired: true to replace them"
            % (", ".join(sorted(ids)), params["name"])
        )
        return instances
    owned = {r["instance_id"] for r in expired if r.get("instance_id")}
    stale = [
        i
        for i in instances
        if i["state"] in ("stopping", "stopped")
        and (i["instance_id"] in owned or i.get("spot_instance_request_id") in ids)
    ]
    actions["renewed"] = sorted(ids)
    actions["terminated"] = sorted(i["instance_id"] for i in stale)
    actions["cancelled"] = sorted(
        r["spot_instance_request_id"] for r in expired if r["state"] in _aws.OPEN_REQUEST_STATES
    )
    if not module.check_mode:
        _lifecycle.cancel_and_terminate(client, actions["cancelled"], actions["terminated"])
    gone = set(actions["terminated"])
    return [i for i in instances if i["instance_id"] not in gone]


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


def _launched_text(name, launched, missing, errors):
    return "spot launch for %s launched %d of %d instances%s" % (name, launched, missing, _errors_text(errors))


def _errors_text(errors):
    return ": " + _launch.describe_errors(errors) if errors else ""


def launch_missing(module, client, params, missing, tags, token, actions):
    """Launch ``missing`` instances with one call and, with ``wait``, wait until they run.

    A launch that gets nothing fails the run; a short one warns (the next run launches the rest),
    or with ``wait`` terminates what it launched and fails. Instances of legacy requests, which
    cannot be tagged at launch, are tagged in one batched call.
    """
    name = params["name"]
    outcome = _launch.launch(client, params, missing, tags, client_token=token)
    launched_ids = sorted(i["instance_id"] for i in outcome["instances"])
    new_requests = outcome["spot_requests"]
    actions["errors"] = outcome["errors"]
    short = len(launched_ids) + len(new_requests) < missing
    if short and not launched_ids and not new_requests:
        raise ParkingSpotError(
            message="spot launch for %s launched none of %d instances%s"
            % (name, missing, _errors_text(outcome["errors"]))
        )
    if short and params["wait"]:
        _lifecycle.clean_up_and_fail(
            client, _launched_text(name, len(launched_ids), missing, outcome["errors"]), [], launched_ids
        )
    if short:
        module.warn(
            "%s; the next run launches the rest" % _launched_text(name, len(launched_ids), missing, outcome["errors"])
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


def drop_surplus(module, client, surplus, instances, pending, actions):
    """End ``surplus`` of the capacity: unfulfilled requests first, then the newest instances."""
    drop_requests = pending[:surplus]
    drop_instances = _lifecycle.newest_first(instances)[: surplus - len(drop_requests)]
    cancel = [r["spot_instance_request_id"] for r in drop_requests]
    cancel += [i["spot_instance_request_id"] for i in drop_instances if i.get("spot_instance_request_id")]
    dropped = sorted(i["instance_id"] for i in drop_instances)
    actions["cancelled"] = sorted(set(actions["cancelled"]) | set(cancel))
    actions["terminated"] = sorted(set(actions["terminated"]) | set(dropped))
    if not module.check_mode:
        _lifecycle.cancel_and_terminate(client, cancel, dropped)


def ensure_present(module, client, params, instances, requests, expired, now, gone=()):
    """Keep ``count`` live instances (open requests count); returns the actions taken."""
    tags = dict(params["tags"] or {}, **{TAG_REQUEST: params["name"]})
    actions = _no_actions()
    instances = renew_expired(module, client, params, instances, list(expired), actions)
    pending = pending_requests(requests)
    missing = params["count"] - (len(instances) + len(pending))
    actions["tagged"] = retag(module, client, instances, tags, params["tags"] is not None, params["purge_tags"])
    if missing > 0:
        actions["launch"] = missing
        _quota.check_request(module, client, params, instances, missing)
        if not module.check_mode:
            token = launch_token(params["name"], missing, instances, requests, now, gone)
            launch_missing(module, client, params, missing, tags, token, actions)
    elif missing < 0:
        drop_surplus(module, client, -missing, instances, pending, actions)
    return actions


def ensure_absent(module, client, params, instances, requests):
    """Cancel every request of the name and (with ``terminate_instances``) terminate its instances."""
    actions = _no_actions()
    cancel = {r["spot_instance_request_id"] for r in requests}
    cancel |= {i["spot_instance_request_id"] for i in instances if i.get("spot_instance_request_id")}
    actions["cancelled"] = sorted(cancel)
    if params["terminate_instances"]:
        actions["terminated"] = sorted(i["instance_id"] for i in instances)
    if not module.check_mode:
        _lifecycle.cancel_and_terminate(client, actions["cancelled"], actions["terminated"])
        if actions["terminated"] and params["wait"]:
            if not _lifecycle.wait_terminated(client, actions["terminated"], params["wait_timeout"]):
                raise ParkingSpotError(
                    message="instances %s were not terminated within %ds"
                    % (", ".join(actions["terminated"]), params["wait_timeout"])
                )
    return actions


def _changed(actions) -> bool:
    return bool(
        actions["launch"] or actions["terminated"] or actions["cancelled"] or actions["tagged"] or actions["renewed"]
    )


# --- one run -------------------------------------------------------------------------


def _summary(instances):
    return {"count": len(instances), "instance_ids": sorted(i["instance_id"] for i in instances)}


def reconcile(module, client, params, now):
    """One run of spot_request with validated ``params``; returns the result the module exits with.

    ``module`` gives check mode and warnings. In check mode, or when nothing changed, the result
    is predicted from the first read; otherwise the capacity is read again after the writes.
    """
    instances, requests, expired, gone = read_current(client, params["name"], now)
    before = _summary(instances)
    if params["state"] == "present":
        actions = ensure_present(module, client, params, instances, requests, expired, now, gone)
    else:
        actions = ensure_absent(module, client, params, instances, requests)
    did_change = _changed(actions)
    if module.check_mode or not did_change:
        dropped = set(actions["terminated"])
        cancelled = set(actions["cancelled"])
        after_instances = [i for i in instances if i["instance_id"] not in dropped]
        after_requests = [r for r in requests if r["spot_instance_request_id"] not in cancelled]
        after = _summary(after_instances)
        after["count"] += actions["launch"]
    else:
        after_instances, after_requests, expired, _gone = read_current(client, params["name"], now)
        after = _summary(after_instances)
    return dict(
        changed=did_change,
        spot_requests=after_requests,
        expired_requests=expired,
        instances=after_instances,
        actions=actions,
        diff=dict(before=before, after=after),
    )
