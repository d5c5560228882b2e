# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of the spot_interruptions event source: pure parsing, then against a moto server.

moto gaps worked around here: EC2 never emits interruption or rebalance events in moto, so
the tests post the documented EventBridge event shapes with PutEvents themselves (moto then
routes them through the rule to the SQS target, as EventBridge does); moto does not enforce
the queue policy, so policy scoping is checked in the setup playbook test, not here.
"""

import asyncio
import json

import boto3
import botocore.stub
import pytest

from ansible_collections.parkingspot.ec2.extensions.eda.plugins.event_source import spot_interruptions as src
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL

INTERRUPTION = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"


def test_pool_tag_is_the_collections_pool_tag():
    # The source keeps its own copy (ansible-rulebook loads it outside the collection's package).
    assert src.POOL_TAG == TAG_POOL


def envelope(detail_type, detail, **extra):
    event = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-25T10:00:00Z",
        "region": "eu-west-1",
        "resources": [f"arn:aws:ec2:eu-west-1a:instance/{detail.get('instance-id')}"],
        "detail": detail,
    }
    event.update(extra)
    return json.dumps(event)


class ListQueue:
    """Stands in for the rulebook's asyncio queue and records what was put."""

    def __init__(self, fail_on=None):
        self.events = []
        self.fail_on = fail_on

    async def put(self, event):
        if self.fail_on is not None and len(self.events) == self.fail_on:
            raise RuntimeError("rulebook queue closed")
        self.events.append(event)


# --- pure parsing ----------------------------------------------------------------------------


def test_normalise_interruption_warning():
    event = src.normalise(envelope(INTERRUPTION, {"instance-id": "i-0abc1234def567890", "instance-action": "stop"}))
    assert event["instance_id"] == "i-0abc1234def567890"
    assert event["action"] == "interruption"
    assert event["instance_action"] == "stop"
    assert event["time"] == "2026-11-25T10:00:00Z"
    assert event["region"] == "eu-west-1"
    assert event["detail_type"] == INTERRUPTION
    assert event["pool"] is None
    assert event["raw"]["detail"]["instance-action"] == "stop"


def test_normalise_rebalance_and_state_change():
    rebalance = src.normalise(envelope(REBALANCE, {"instance-id": "i-0abc1234def567890"}))
    assert (rebalance["action"], rebalance["instance_action"], rebalance["state"]) == ("rebalance", None, None)
    change = src.normalise(envelope(STATE_CHANGE, {"instance-id": "i-0abc1234def567890", "state": "shutting-down"}))
    assert (change["action"], change["state"]) == ("state_change", "shutting-down")


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("null", "not a JSON object"),
        (envelope(INTERRUPTION, {"instance-id": "i-0abc1234def567890"}, source="my.app"), "source"),
        (envelope("EC2 AMI Available", {"instance-id": "i-0abc1234def567890"}), "detail-type"),
        (json.dumps({"source": "aws.ec2", "detail-type": REBALANCE, "detail": "i-1"}), "detail is missing"),
        (envelope(REBALANCE, {}), "instance-id"),
        (envelope(REBALANCE, {"instance-id": "vol-0abc1234def567890"}), "instance-id"),
        (
            envelope(INTERRUPTION, {"instance-id": "i-0abc1234def567890", "instance-action": "explode"}),
            "instance-action",
        ),
        (envelope(STATE_CHANGE, {"instance-id": "i-0abc1234def567890"}), "detail.state"),
    ],
)
def test_normalise_rejects_malformed(body, reason):
    with pytest.raises(src.MalformedMessage, match=reason):
        src.normalise(body)


@pytest.mark.parametrize(
    "args, option",
    [
        ({}, "queue_name or queue_url"),
        ({"queue_name": "q", "queue_url": "http://x/q"}, "mutually exclusive"),
        ({"queue_name": "q", "wait_time_seconds": 21}, "wait_time_seconds"),
        ({"queue_name": "q", "wait_time_seconds": "soon"}, "wait_time_seconds"),
        ({"queue_name": "q", "max_messages": 0}, "max_messages"),
        ({"queue_name": "q", "max_polls": True}, "max_polls"),
        ({"queue_name": "q", "lookup_pool": "yes"}, "lookup_pool"),
        ({"queue_name": "q", "access_key": "AKIA"}, "secret_key"),
        ({"queue_name": "q", "delay": 3}, "unsupported argument.*delay"),
    ],
)
def test_bad_arguments_name_the_option(args, option):
    with pytest.raises(src.ArgumentError, match=option):
        asyncio.run(src.main(ListQueue(), args))


def test_defaults_filled_in():
    settings = src.parse_args({"queue_name": "q"})
    assert settings["wait_time_seconds"] == 20
    assert settings["max_messages"] == 10
    assert settings["lookup_pool"] is True
    assert settings["max_polls"] is None


def test_pool_cache_expires():
    now = [100.0]
    cache = src.PoolCache(ttl=30, clock=lambda: now[0])
    cache.put("i-1", "ci")
    cache.put("i-2", None)
    assert cache.get("i-1") == (True, "ci")
    assert cache.get("i-2") == (True, None)
    now[0] = 131.0
    assert cache.get("i-1") == (False, None)


# --- against moto ------------------------------------------------------------------------------


def make_queue_and_rule(aws, name="parkingspot-spot-events"):
    sqs = aws.client("sqs")
    events = aws.client("events")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.ec2"], "detail-type": [INTERRUPTION, REBALANCE, STATE_CHANGE]}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "sqs", "Arn": arn}])
    return url


_IMAGE = []  # moto's stock images survive a reset and listing them takes a second: read once


def launch(aws, count, tags):
    ec2 = aws.client("ec2")
    if not _IMAGE:
        _IMAGE.append(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    image = _IMAGE[0]
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    reservation = ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=spec,
    )
    return [i["InstanceId"] for i in reservation["Instances"]]


def put_ec2_event(aws, detail_type, detail):
    response = aws.client("events").put_events(
        Entries=[
            {
                "Source": "aws.ec2",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "Resources": [f"arn:aws:ec2:{aws.region}:123456789012:instance/{detail['instance-id']}"],
            }
        ]
    )
    assert response["FailedEntryCount"] == 0


def messages_left(aws, url):
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run_source(aws, queue, **args):
    settings = {"queue_name": "parkingspot-spot-events", "region": aws.region, "endpoint_url": aws.endpoint}
    settings.update({"wait_time_seconds": 1, "max_polls": 2})
    settings.update(args)
    return asyncio.run(src.main(queue, settings))


def test_events_from_eventbridge_are_yielded_with_pool_and_deleted(aws):
    url = make_queue_and_rule(aws)
    pool_a, pool_b = launch(aws, 2, {"parkingspot:pool": "ci-small", "Name": "runner"})
    (stray,) = launch(aws, 1, {})
    put_ec2_event(aws, INTERRUPTION, {"instance-id": pool_a, "instance-action": "terminate"})
    put_ec2_event(aws, REBALANCE, {"instance-id": pool_b})
    put_ec2_event(aws, STATE_CHANGE, {"instance-id": stray, "state": "shutting-down"})
    assert messages_left(aws, url) == 3

    queue = ListQueue()
    stats = run_source(aws, queue)

    got = {(e["instance_id"], e["action"], e["pool"], e["instance_action"], e["state"]) for e in queue.events}
    assert got == {
        (pool_a, "interruption", "ci-small", "terminate", None),
        (pool_b, "rebalance", "ci-small", None, None),
        (stray, "state_change", None, None, "shutting-down"),
    }
    assert all(e["region"] == aws.region and e["time"] for e in queue.events)
    assert stats["yielded"] == 3 and stats["malformed"] == 0 and stats["deleted"] == 3
    assert messages_left(aws, url) == 0


def test_malformed_messages_are_skipped_counted_and_removed(aws):
    url = make_queue_and_rule(aws)
    (instance,) = launch(aws, 1, {"parkingspot:pool": "ci-large"})
    sqs = aws.client("sqs")
    for body in ("{broken", json.dumps(["a"]), envelope(REBALANCE, {"instance-id": "nope"})):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    put_ec2_event(aws, INTERRUPTION, {"instance-id": instance, "instance-action": "hibernate"})

    queue = ListQueue()
    stats = run_source(aws, queue)

    assert [(e["instance_id"], e["pool"], e["instance_action"]) for e in queue.events] == [
        (instance, "ci-large", "hibernate")
    ]
    assert stats["malformed"] == 3
    assert stats["received"] == 4
    assert messages_left(aws, url) == 0


def test_message_is_not_deleted_when_the_rulebook_queue_refuses_it(aws):
    url = make_queue_and_rule(aws)
    (instance,) = launch(aws, 1, {"parkingspot:pool": "ci-small"})
    put_ec2_event(aws, REBALANCE, {"instance-id": instance})

    with pytest.raises(RuntimeError, match="queue closed"):
        run_source(aws, ListQueue(fail_on=0), visibility_timeout=0)

    assert messages_left(aws, url) == 1
    # The next listener receives it (at-least-once delivery).
    queue = ListQueue()
    run_source(aws, queue, max_polls=1)
    assert [e["instance_id"] for e in queue.events] == [instance]
    assert messages_left(aws, url) == 0


def test_pool_lookups_are_batched_and_cached(aws):
    make_queue_and_rule(aws)
    instances = launch(aws, 4, {"parkingspot:pool": "ci-small"})
    for instance in instances:
        put_ec2_event(aws, REBALANCE, {"instance-id": instance})

    settings = src.parse_args(
        {"queue_name": "parkingspot-spot-events", "endpoint_url": aws.endpoint, "wait_time_seconds": 1, "max_polls": 3}
    )
    source = src.SpotInterruptionSource(settings, session=boto3.session.Session(region_name=aws.region))
    calls = []
    source.ec2.meta.events.register("provide-client-params.ec2.DescribeTags", lambda params, **kw: calls.append(params))
    queue = ListQueue()

    async def two_rounds():
        await source.run(queue)
        # Same instances again: answered from the cache, no further DescribeTags.
        for instance in instances:
            put_ec2_event(aws, INTERRUPTION, {"instance-id": instance, "instance-action": "terminate"})
        source.settings["max_polls"] = source.stats["polls"] + 3
        await source.run(queue)

    asyncio.run(two_rounds())

    assert len(queue.events) == 8
    assert all(e["pool"] == "ci-small" for e in queue.events)
    assert len(calls) == source.stats["tag_lookups"]
    # moto returns up to 10 messages per receive, so 4 events need 1 or 2 lookups, never 4.
    assert 1 <= len(calls) <= 2
    assert sorted(v for c in calls for f in c["Filters"] if f["Name"] == "resource-id" for v in f["Values"]) == sorted(
        instances
    )


def test_pool_lookup_failure_still_yields_the_event(aws):
    make_queue_and_rule(aws)
    (instance,) = launch(aws, 1, {"parkingspot:pool": "ci-small"})
    put_ec2_event(aws, INTERRUPTION, {"instance-id": instance, "instance-action": "terminate"})
    settings = src.parse_args(
        {"queue_name": "parkingspot-spot-events", "endpoint_url": aws.endpoint, "wait_time_seconds": 1, "max_polls": 1}
    )
    source = src.SpotInterruptionSource(settings, session=boto3.session.Session(region_name=aws.region))
    stubber = botocore.stub.Stubber(source.ec2)
    stubber.add_client_error("describe_tags", "UnauthorizedOperation", http_status_code=403)
    queue = ListQueue()
    with stubber:
        asyncio.run(source.run(queue))
    assert [(e["instance_id"], e["pool"]) for e in queue.events] == [(instance, None)]
    assert source.stats["tag_lookup_errors"] == 1
    assert source.stats["deleted"] == 1


def test_receive_errors_are_survived(aws, monkeypatch):
    monkeypatch.setattr(src, "ERROR_BACKOFF", (0.01, 0.02))
    url = make_queue_and_rule(aws)
    (instance,) = launch(aws, 1, {"parkingspot:pool": "ci-small"})
    put_ec2_event(aws, REBALANCE, {"instance-id": instance})
    settings = src.parse_args({"queue_url": url, "endpoint_url": aws.endpoint, "wait_time_seconds": 1, "max_polls": 3})
    source = src.SpotInterruptionSource(settings, session=boto3.session.Session(region_name=aws.region))
    real_receive = source.sqs.receive_message
    failures = iter([ConnectionError("reset by peer"), RuntimeError("garbage reply")])

    def flaky_receive(**kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_receive(**kwargs)

    monkeypatch.setattr(source.sqs, "receive_message", flaky_receive)
    queue = ListQueue()
    stats = asyncio.run(source.run(queue))
    assert stats["receive_errors"] == 2
    assert [e["instance_id"] for e in queue.events] == [instance]
    assert messages_left(aws, url) == 0


def test_unknown_queue_fails_at_start(aws):
    with pytest.raises(Exception, match="NonExistentQueue|does not exist"):
        run_source(aws, ListQueue(), queue_name="no-such-queue")
