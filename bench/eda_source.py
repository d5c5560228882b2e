# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the spot_interruptions event source against a local moto server.

Two measurements:
  burst    EVENTS events (interruption, rebalance, state change) for INSTANCES instances in
           POOLS pools are posted through EventBridge, then drained; reports API calls by
           operation and per event, and the drain rate.
  latency  one event at a time is posted while the source is long-polling; reports the time
           from PutEvents returning to the event reaching the rulebook queue.

    python bench/eda_source.py [--events 300] [--instances 30] [--pools 3] [--samples 20]

Needs moto[server] and boto3. Prints a Markdown block for docs/benchmarks.md.
"""

import argparse
import asyncio
import collections
import importlib.util
import json
import logging
import os
import socket
import statistics
import sys
import time

import boto3
from moto.server import ThreadedMotoServer

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "extensions", "eda", "plugins", "event_source", "spot_interruptions.py")
REGION = "eu-west-1"
QUEUE = "parkingspot-spot-events"


def load_source():
    spec = importlib.util.spec_from_file_location("spot_interruptions", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Counting:
    """Rulebook queue stand-in: counts events and stamps arrival times."""

    def __init__(self):
        self.events = []
        self.arrived = asyncio.Event()

    async def put(self, event):
        self.events.append((time.monotonic(), event))
        self.arrived.set()


def setup(endpoint, instances, pools):
    session = boto3.session.Session(region_name=REGION)
    sqs = session.client("sqs", endpoint_url=endpoint)
    events = session.client("events", endpoint_url=endpoint)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=QUEUE, EventPattern=json.dumps({"source": ["aws.ec2"]}))
    events.put_targets(Rule=QUEUE, Targets=[{"Id": "sqs", "Arn": arn}])
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids = []
    per_pool = instances // pools
    for n in range(pools):
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": f"pool-{n}"}]}]
        reservation = ec2.run_instances(
            ImageId=image, InstanceType="t3.micro", MinCount=per_pool, MaxCount=per_pool, TagSpecifications=tags
        )
        ids += [i["InstanceId"] for i in reservation["Instances"]]
    return events, ids


def entry(kind, instance_id):
    if kind == 0:
        detail_type, detail = "EC2 Spot Instance Interruption Warning", {"instance-action": "terminate"}
    elif kind == 1:
        detail_type, detail = "EC2 Instance Rebalance Recommendation", {}
    else:
        detail_type, detail = "EC2 Instance State-change Notification", {"state": "shutting-down"}
    detail["instance-id"] = instance_id
    return {"Source": "aws.ec2", "DetailType": detail_type, "Detail": json.dumps(detail)}


def make_source(module, endpoint, wait):
    settings = module.parse_args({"queue_name": QUEUE, "endpoint_url": endpoint, "wait_time_seconds": wait})
    source = module.SpotInterruptionSource(settings, session=boto3.session.Session(region_name=REGION))
    calls = collections.Counter()
    for client in (source.sqs, source.ec2):
        client.meta.events.register("before-call.*.*", lambda model, **kw: calls.update([model.name]))
    return source, calls


async def run_until(source, queue, count, timeout):
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(source.run(queue))
    delete = source._delete

    def delete_then_stop(messages):
        # The source deletes a batch after handing its events to the queue. Stop it right after
        # the delete that finishes the burst, before it polls again: stopping it when the last
        # event arrives would sometimes cancel that delete, and waiting longer adds a receive.
        delete(messages)
        if source.stats["deleted"] + source.stats["delete_errors"] >= count:
            loop.call_soon_threadsafe(task.cancel)

    source._delete = delete_then_stop
    deadline = time.monotonic() + timeout
    while len(queue.events) < count and time.monotonic() < deadline and not task.done():
        queue.arrived.clear()
        try:
            await asyncio.wait_for(queue.arrived.wait(), 0.5)
        except asyncio.TimeoutError:  # noqa: UP041 - not the builtin before Python 3.11
            pass
    await asyncio.wait([task], timeout=max(0.0, deadline - time.monotonic()))
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def burst(module, endpoint, events_client, ids, total):
    entries = [entry(n % 3, ids[n % len(ids)]) for n in range(total)]
    for start in range(0, total, 10):
        response = events_client.put_events(Entries=entries[start : start + 10])
        assert response["FailedEntryCount"] == 0
    source, calls = make_source(module, endpoint, wait=1)
    queue = Counting()
    started = time.monotonic()
    asyncio.run(run_until(source, queue, total, timeout=120))
    elapsed = time.monotonic() - started
    return len(queue.events), elapsed, calls, source.stats


def latency(module, endpoint, events_client, ids, samples):
    source, _calls = make_source(module, endpoint, wait=20)
    queue = Counting()
    delays = []

    async def measure():
        task = asyncio.ensure_future(source.run(queue))
        await asyncio.sleep(0.5)
        for n in range(samples):
            seen = len(queue.events)
            await asyncio.to_thread(events_client.put_events, Entries=[entry(1, ids[n % len(ids)])])
            posted = time.monotonic()
            while len(queue.events) == seen:
                queue.arrived.clear()
                await asyncio.wait_for(queue.arrived.wait(), 30)
            delays.append(queue.events[-1][0] - posted)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(measure())
    return delays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--pools", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        module = load_source()
        events_client, ids = setup(endpoint, args.instances, args.pools)
        got, elapsed, calls, stats = burst(module, endpoint, events_client, ids, args.events)
        delays = latency(module, endpoint, events_client, ids, args.samples)
    finally:
        server.stop()
    if got != args.events:
        print(f"only {got} of {args.events} events arrived", file=sys.stderr)
        return 1
    total_calls = sum(calls.values())
    naive = args.events * 3  # receive one at a time, one DescribeTags and one DeleteMessage per event
    quantiles = statistics.quantiles(delays, n=20)
    print(f"### burst: {args.events} events, {len(ids)} instances, {args.pools} pools")
    print()
    print("| operation | calls |")
    print("| --- | --- |")
    for name, count in sorted(calls.items()):
        print(f"| {name} | {count} |")
    print(f"| **total** | **{total_calls}** ({total_calls / args.events:.2f} per event) |")
    print()
    print(f"- drained in {elapsed:.2f} s ({args.events / elapsed:.0f} events/s), malformed {stats['malformed']}")
    print(f"- a source with one receive, one DescribeTags and one DeleteMessage per message would make {naive}")
    print()
    print(f"### latency: PutEvents returned -> event on the rulebook queue, {len(delays)} samples, long poll 20 s")
    print()
    print(
        f"- median {statistics.median(delays) * 1000:.0f} ms, p95 {quantiles[18] * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
