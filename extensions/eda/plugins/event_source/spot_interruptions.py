# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event source: EC2 spot interruption events from an SQS queue fed by EventBridge.

Long-polls the queue, turns each EventBridge envelope into a flat event and puts it on the
ansible-rulebook queue.  A message is deleted from SQS only after its event was put on the
rulebook queue (at-least-once delivery: a crash between the two repeats the event, it never
loses it).  Messages that are not one of the three EC2 events below are counted, logged and
deleted so they cannot come back forever; they never stop the source.

Events yielded (one dict per message)::

    instance_id     i-0123456789abcdef0
    pool            value of the instance's parkingspot:pool tag, or None when unknown
    action          interruption | rebalance | state_change
    instance_action terminate | stop | hibernate (interruption warnings), else None
    state           new instance state (state-change notifications), else None
    time            event time from EventBridge (ISO 8601 UTC)
    region          region of the event
    detail_type     EventBridge detail-type
    raw             the EventBridge event as received

Arguments (ansible-rulebook source arguments)::

    queue_name | queue_url   the SQS queue (one of them is required)
    region                   AWS region (default: from the environment / profile)
    profile                  AWS profile name
    endpoint_url             alternative endpoint for SQS and EC2 (private clouds, tests)
    access_key, secret_key, session_token
                             explicit credentials; by default the usual boto3 chain
                             (environment, assumed role, instance profile) is used
    wait_time_seconds        SQS long-poll duration, 0-20 (default 20)
    max_messages             messages per receive, 1-10 (default 10)
    visibility_timeout       seconds a received message stays hidden (default 60)
    lookup_pool              describe the instance's tags to find its pool (default true)
    pool_cache_seconds       how long a tag lookup is reused (default 300)
    max_polls                stop after this many receive calls (default: run forever;
                             for one-shot runs and tests)

Example rulebook source::

    sources:
      - parkingspot.ec2.spot_interruptions:
          region: eu-west-1
          queue_name: parkingspot-spot-events
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

LOG = logging.getLogger("parkingspot.ec2.spot_interruptions")

# The same value as TAG_POOL in plugins/module_utils/_tags.py: ansible-rulebook loads this file by
# path, outside the collection's package, so it cannot import it (a unit test keeps them equal).
POOL_TAG = "parkingspot:pool"

DETAIL_TYPES = {
    "EC2 Spot Instance Interruption Warning": "interruption",
    "EC2 Instance Rebalance Recommendation": "rebalance",
    "EC2 Instance State-change Notification": "state_change",
}

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
INSTANCE_ACTIONS = ("terminate", "stop", "hibernate")

DEFAULTS = {
    "wait_time_seconds": 20,
    "max_messages": 10,
    "visibility_timeout": 60,
    "lookup_pool": True,
    "pool_cache_seconds": 300,
    "max_polls": None,
}

KNOWN_ARGS = {
    "queue_name",
    "queue_url",
    "region",
    "profile",
    "endpoint_url",
    "access_key",
    "secret_key",
    "session_token",
} | set(DEFAULTS)

# Back-off after a failed receive: doubles from the first value up to the second.
ERROR_BACKOFF = (1.0, 30.0)


class MalformedMessage(ValueError):
    """The message body is not an EC2 event this source understands."""


class ArgumentError(ValueError):
    """A source argument is missing or invalid; the message names the argument."""


def _int_arg(args: dict, name: str, low: int, high: int | None) -> int | None:
    value = args.get(name, DEFAULTS[name])
    if value is None:
        return None
    if isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        upper = "" if high is None else f" and {high}"
        raise ArgumentError(f"{name} must be between {low}{upper}, got {number}")
    return number


def parse_args(args: dict | None) -> dict:
    """Validate the rulebook arguments and return them with defaults filled in."""
    args = dict(args or {})
    unknown = sorted(set(args) - KNOWN_ARGS)
    if unknown:
        raise ArgumentError(f"unsupported argument(s): {', '.join(unknown)}")
    if not args.get("queue_name") and not args.get("queue_url"):
        raise ArgumentError("one of queue_name or queue_url is required")
    if args.get("queue_name") and args.get("queue_url"):
        raise ArgumentError("queue_name and queue_url are mutually exclusive")
    if bool(args.get("access_key")) != bool(args.get("secret_key")):
        raise ArgumentError("access_key and secret_key must be given together")
    settings = {key: args.get(key) for key in KNOWN_ARGS - set(DEFAULTS)}
    settings["wait_time_seconds"] = _int_arg(args, "wait_time_seconds", 0, 20)
    settings["max_messages"] = _int_arg(args, "max_messages", 1, 10)
    settings["visibility_timeout"] = _int_arg(args, "visibility_timeout", 0, 43200)
    settings["pool_cache_seconds"] = _int_arg(args, "pool_cache_seconds", 0, None)
    settings["max_polls"] = _int_arg(args, "max_polls", 1, None)
    lookup = args.get("lookup_pool", DEFAULTS["lookup_pool"])
    if not isinstance(lookup, bool):
        raise ArgumentError(f"lookup_pool must be true or false, got {lookup!r}")
    settings["lookup_pool"] = lookup
    return settings


def normalise(body: str) -> dict:
    """Turn one SQS message body (an EventBridge event) into a flat event.

    Raises MalformedMessage for anything that is not one of the three EC2 events.
    """
    try:
        event = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise MalformedMessage("body is not a JSON object")
    if event.get("source") != "aws.ec2":
        raise MalformedMessage(f"source is {event.get('source')!r}, expected 'aws.ec2'")
    detail_type = event.get("detail-type")
    action = DETAIL_TYPES.get(detail_type) if isinstance(detail_type, str) else None
    if action is None:
        raise MalformedMessage(f"unsupported detail-type {detail_type!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedMessage("detail is missing or not an object")
    instance_id = detail.get("instance-id")
    if not isinstance(instance_id, str) or not INSTANCE_ID.match(instance_id):
        raise MalformedMessage(f"detail.instance-id {instance_id!r} is not an instance id")

    instance_action = None
    state = None
    if action == "interruption":
        instance_action = detail.get("instance-action")
        if instance_action not in INSTANCE_ACTIONS:
            raise MalformedMessage(f"detail.instance-action {instance_action!r} is not one of {INSTANCE_ACTIONS}")
    elif action == "state_change":
        state = detail.get("state")
        if not isinstance(state, str) or not state:
            raise MalformedMessage("detail.state is missing")

    return {
        "instance_id": instance_id,
        "pool": None,
        "action": action,
        "instance_action": instance_action,
        "state": state,
        "time": event.get("time") if isinstance(event.get("time"), str) else None,
        "region": event.get("region") if isinstance(event.get("region"), str) else None,
        "detail_type": detail_type,
        "raw": event,
    }


class PoolCache:
    """instance id -> pool name (or None when the instance has no pool tag), with expiry."""

    def __init__(self, ttl: float, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[str | None, float]] = {}

    def get(self, instance_id: str) -> tuple[bool, str | None]:
        entry = self._entries.get(instance_id)
        if entry is None or entry[1] <= self.clock():
            self._entries.pop(instance_id, None)
            return False, None
        return True, entry[0]

    def put(self, instance_id: str, pool: str | None) -> None:
        if self.ttl > 0:
            self._entries[instance_id] = (pool, self.clock() + self.ttl)


class SpotInterruptionSource:
    """The polling loop, kept apart from main() so tests can read its counters."""

    def __init__(self, settings: dict, session=None):
        self.settings = settings
        self.session = session if session is not None else _make_session(settings)
        client_args = {}
        if settings.get("endpoint_url"):
            client_args["endpoint_url"] = settings["endpoint_url"]
        self.sqs = self.session.client("sqs", **client_args)
        self.ec2 = self.session.client("ec2", **client_args) if settings["lookup_pool"] else None
        self.cache = PoolCache(settings["pool_cache_seconds"])
        self.queue_url = settings.get("queue_url")
        self.stats = {
            "polls": 0,
            "received": 0,
            "yielded": 0,
            "malformed": 0,
            "deleted": 0,
            "receive_errors": 0,
            "delete_errors": 0,
            "tag_lookups": 0,
            "tag_lookup_errors": 0,
        }

    # --- AWS calls (blocking; run in a worker thread) -------------------------------------
    def _resolve_queue_url(self) -> str:
        if not self.queue_url:
            self.queue_url = self.sqs.get_queue_url(QueueName=self.settings["queue_name"])["QueueUrl"]
        return self.queue_url

    def _receive(self) -> list:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.settings["max_messages"],
            WaitTimeSeconds=self.settings["wait_time_seconds"],
            VisibilityTimeout=self.settings["visibility_timeout"],
        )
        return response.get("Messages", [])

    def _delete(self, messages: list) -> None:
        if not messages:
            return
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        failed = response.get("Failed", [])
        self.stats["deleted"] += len(entries) - len(failed)
        if failed:
            # The messages come back after the visibility timeout: a repeat, never a loss.
            self.stats["delete_errors"] += len(failed)
            LOG.warning("could not delete %d message(s): %s", len(failed), failed)

    def _lookup_pools(self, instance_ids: list) -> dict:
        """One DescribeTags call for all instance ids not in the cache."""
        found = {}
        missing = []
        for instance_id in sorted(set(instance_ids)):
            hit, pool = self.cache.get(instance_id)
            if hit:
                found[instance_id] = pool
            else:
                missing.append(instance_id)
        if not missing or self.ec2 is None:
            return found
        self.stats["tag_lookups"] += 1
        try:
            paginator = self.ec2.get_paginator("describe_tags")
            pages = paginator.paginate(
                Filters=[
                    {"Name": "resource-id", "Values": missing},
                    {"Name": "key", "Values": [POOL_TAG]},
                ]
            )
            tagged = {}
            for page in pages:
                for tag in page.get("Tags", []):
                    tagged[tag["ResourceId"]] = tag["Value"]
        except Exception as exc:  # noqa: BLE001 - any AWS/network fault: yield without a pool
            self.stats["tag_lookup_errors"] += 1
            LOG.warning("pool lookup for %s failed, events go out without a pool: %s", missing, exc)
            return found
        for instance_id in missing:
            pool = tagged.get(instance_id)
            self.cache.put(instance_id, pool)
            found[instance_id] = pool
        return found

    # --- the loop -------------------------------------------------------------------------
    async def run(self, queue) -> dict:
        await asyncio.to_thread(self._resolve_queue_url)
        LOG.info("listening on %s", self.queue_url)
        backoff = ERROR_BACKOFF[0]
        max_polls = self.settings["max_polls"]
        while max_polls is None or self.stats["polls"] < max_polls:
            self.stats["polls"] += 1
            try:
                messages = await asyncio.to_thread(self._receive)
            except Exception as exc:  # noqa: BLE001 - keep listening through faults
                self.stats["receive_errors"] += 1
                LOG.warning("receive from %s failed (retrying in %.0f s): %s", self.queue_url, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, ERROR_BACKOFF[1])
                continue
            backoff = ERROR_BACKOFF[0]
            if messages:
                await self._handle(queue, messages)
        return dict(self.stats)

    async def _handle(self, queue, messages: list) -> None:
        self.stats["received"] += len(messages)
        events = []
        done = []
        for message in messages:
            try:
                events.append((message, normalise(message.get("Body"))))
            except MalformedMessage as exc:
                self.stats["malformed"] += 1
                LOG.warning(
                    "skipping malformed message %s (%s); %d so far",
                    message.get("MessageId"),
                    exc,
                    self.stats["malformed"],
                )
                done.append(message)
        wanted = [event["instance_id"] for _message, event in events]
        pools = await asyncio.to_thread(self._lookup_pools, wanted) if wanted else {}
        for message, event in events:
            event["pool"] = pools.get(event["instance_id"])
            await queue.put(event)
            self.stats["yielded"] += 1
            done.append(message)
        try:
            await asyncio.to_thread(self._delete, done)
        except Exception as exc:  # noqa: BLE001 - undeleted messages are redelivered later
            self.stats["delete_errors"] += len(done)
            LOG.warning("delete failed, %d message(s) will be redelivered: %s", len(done), exc)


def _make_session(settings: dict):
    import boto3  # imported here so argument errors are reported even without boto3

    kwargs = {}
    if settings.get("profile"):
        kwargs["profile_name"] = settings["profile"]
    if settings.get("region"):
        kwargs["region_name"] = settings["region"]
    if settings.get("access_key"):
        kwargs["aws_access_key_id"] = settings["access_key"]
        kwargs["aws_secret_access_key"] = settings["secret_key"]
        if settings.get("session_token"):
            kwargs["aws_session_token"] = settings["session_token"]
    return boto3.session.Session(**kwargs)


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> dict:
    """ansible-rulebook entry point."""
    source = SpotInterruptionSource(parse_args(args))
    return await source.run(queue)


if __name__ == "__main__":  # pragma: no cover - manual use: print events from a queue

    class _PrintQueue:
        async def put(self, event):
            print(json.dumps({k: v for k, v in event.items() if k != "raw"}))

    import sys

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {"queue_name": sys.argv[1], "max_polls": 1}))
