# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spot_request service's own decisions: the launch token seed, retagging, renewal and the surplus.

The whole runs (launch, wait, clean up) are driven through the module in
tests/unit/plugins/modules/test_spot_request.py and test_strict_ec2.py.
"""

import datetime
import hashlib

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _spot_request

NOW = datetime.datetime(2026, 11, 30, 10, 0, 5, tzinfo=datetime.timezone.utc)
TAG = "parkingspot:request"


class Module:
    """What the service asks of the module: check mode and warnings."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class NoClient:
    """A client the test expects never to be called."""

    def __getattr__(self, name):
        raise AssertionError("unexpected AWS call %s" % name)


@pytest.fixture
def writes(monkeypatch):
    """The write calls of the call layer, recorded instead of sent."""
    calls = []

    def record(name):
        def call(client, ids, *args):
            calls.append((name, sorted(ids)) + tuple(args))
            return 1

        return call

    for name in ("create_tags", "delete_tags", "cancel_spot_requests", "terminate_instances"):
        monkeypatch.setattr(_aws, name, record(name))
    return calls


def instance(instance_id, state="running", tags=None, launch_time="2026-11-30T09:00:00Z", request_id=None):
    return {
        "instance_id": instance_id,
        "state": state,
        "launch_time": launch_time,
        "spot_instance_request_id": request_id,
        "tags": dict({TAG: "runners"}, **(tags or {})),
    }


def request(request_id, state="open", instance_id=None):
    return {"spot_instance_request_id": request_id, "state": state, "instance_id": instance_id}


def params(**extra):
    settings = dict(name="runners", count=1, tags=None, purge_tags=True, renew_expired=False, wait=False)
    settings.update(extra)
    return settings


# --- the launch token seed ---------------------------------------------------------------------


def test_launch_token_seed_is_the_name_count_minute_and_every_id_seen():
    seed = _spot_request.launch_token("runners", 2, [instance("i-a")], [request("sir-b")], NOW, gone=["i-gone"])
    expected = hashlib.sha256(b"runners|2|2026-11-30T10:00|i-a|i-gone|sir-b").hexdigest()
    assert seed == expected


def test_launch_token_ignores_order_and_seconds_but_not_what_was_seen():
    instances = [instance("i-a"), instance("i-b")]
    seed = _spot_request.launch_token("runners", 1, instances, [], NOW)
    assert seed == _spot_request.launch_token("runners", 1, instances[::-1], [], NOW.replace(second=59))
    others = {
        _spot_request.launch_token("runners", 2, instances, [], NOW),
        _spot_request.launch_token("other", 1, instances, [], NOW),
        _spot_request.launch_token("runners", 1, instances[:1], [], NOW),
        _spot_request.launch_token("runners", 1, instances, [request("sir-a")], NOW),
        _spot_request.launch_token("runners", 1, instances, [], NOW.replace(minute=1)),
        # An instance interrupted since: the relaunch is a new launch, not a replay of the first.
        _spot_request.launch_token("runners", 1, instances, [], NOW, gone=["i-c"]),
    }
    assert seed not in others and len(others) == 6


# --- retagging -----------------------------------------------------------------------------------


def test_retag_groups_instances_needing_the_same_change(writes):
    instances = [
        instance("i-a", tags={"team": "build"}),
        instance("i-b", tags={"team": "build"}),
        instance("i-c", tags={"team": "build", "old": "x"}),
        instance("i-d", tags={"team": "build", "cost": "ci"}),
    ]
    wanted = {TAG: "runners", "team": "build", "cost": "ci"}
    changed = _spot_request.retag(Module(), NoClient(), instances, wanted, True, True)
    assert changed == ["i-a", "i-b", "i-c"]
    assert writes == [
        ("create_tags", ["i-a", "i-b"], {"cost": "ci"}),
        ("create_tags", ["i-c"], {"cost": "ci"}),
        ("delete_tags", ["i-c"], ("old",)),
    ]


def test_retag_compares_values_as_text_and_never_purges_reserved_keys(writes):
    instances = [instance("i-a", tags={"size": "2", "parkingspot:market": "spot", "aws:x": "y"})]
    assert _spot_request.retag(Module(), NoClient(), instances, {TAG: "runners", "size": 2}, True, True) == []
    assert writes == []


def test_retag_without_user_tags_only_puts_the_identity_tag_right(writes):
    instances = [instance("i-a", tags={"team": "build"}), dict(instance("i-b"), tags={})]
    changed = _spot_request.retag(Module(), NoClient(), instances, {TAG: "runners"}, False, True)
    assert changed == ["i-b"]
    assert writes == [("create_tags", ["i-b"], {TAG: "runners"})]


def test_retag_in_check_mode_names_the_instances_and_writes_nothing(writes):
    instances = [instance("i-a", tags={"team": "old"})]
    assert _spot_request.retag(Module(check_mode=True), NoClient(), instances, {"team": "new"}, True, True) == ["i-a"]
    assert writes == []


# --- expired persistent requests -----------------------------------------------------------------


EXPIRED = [request("sir-x", state="active", instance_id="i-stopped"), request("sir-y", state="closed")]


def test_expired_requests_only_warn_without_renew_expired(writes):
    module = Module()
    instances = [instance("i-stopped", state="stopped")]
    actions = _spot_request._no_actions()
    assert _spot_request.renew_expired(module, NoClient(), params(), instances, EXPIRED, actions) == instances
    assert actions == _spot_request._no_actions()
    assert module.warnings == [
        "persistent spot requests sir-x, sir-y of runners have expired; set renew_expired: true to replace them"
    ]
    assert writes == []


def test_renewal_cancels_open_expired_requests_then_terminates_their_stopped_instances(writes):
    instances = [
        instance("i-stopped", state="stopped"),
        instance("i-by-request", state="stopping", request_id="sir-y"),
        instance("i-running", request_id="sir-x"),
        instance("i-other", state="stopped"),
    ]
    actions = _spot_request._no_actions()
    live = _spot_request.renew_expired(Module(), NoClient(), params(renew_expired=True), instances, EXPIRED, actions)
    assert [i["instance_id"] for i in live] == ["i-running", "i-other"]
    assert actions["renewed"] == ["sir-x", "sir-y"]
    assert actions["cancelled"] == ["sir-x"]
    assert actions["terminated"] == ["i-by-request", "i-stopped"]
    assert writes == [
        ("cancel_spot_requests", ["sir-x"]),
        ("terminate_instances", ["i-by-request", "i-stopped"]),
    ]


# --- the surplus ---------------------------------------------------------------------------------


def test_surplus_drops_unfulfilled_requests_first_then_the_newest_instances():
    instances = [
        instance("i-old", launch_time="2026-11-30T08:00:00Z"),
        instance("i-new", launch_time="2026-11-30T09:30:00Z", request_id="sir-new"),
        instance("i-mid", launch_time="2026-11-30T09:00:00Z"),
    ]
    requests = [request("sir-open"), request("sir-new", state="active", instance_id="i-new")]
    actions = _spot_request.ensure_present(
        Module(check_mode=True), NoClient(), params(count=1), instances, requests, [], NOW
    )
    assert actions["cancelled"] == ["sir-new", "sir-open"]
    assert actions["terminated"] == ["i-mid", "i-new"]
    assert actions["launch"] == 0 and actions["launched"] == []


def test_open_requests_count_as_capacity():
    requests = [request("sir-open")]
    actions = _spot_request.ensure_present(
        Module(check_mode=True), NoClient(), params(count=2), [instance("i-a")], requests, [], NOW
    )
    assert actions == _spot_request._no_actions()


# --- reading -------------------------------------------------------------------------------------


def test_read_current_keeps_terminated_instances_apart_as_gone(ec2, image_id):
    tags = [{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "runners"}]}]
    launched = ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, TagSpecifications=tags)["Instances"]
    ids = sorted(i["InstanceId"] for i in launched)
    ec2.terminate_instances(InstanceIds=ids[:1])
    instances, requests, expired, gone = _spot_request.read_current(ec2, "runners", NOW)
    assert [i["instance_id"] for i in instances] == ids[1:]
    assert gone == ids[:1]
    assert requests == [] and expired == []
