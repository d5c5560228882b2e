# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks the AWS state left by playbooks/eda_setup.yml (run by run.sh against moto).

verify.py present   queue policy, rule, target, and which events actually reach the queue
verify.py nothing   neither queue nor rule exists
"""

import asyncio
import importlib.util
import json
import os
import sys

import boto3

NAME = "parkingspot-spot-events"
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "..", "extensions", "eda", "plugins", "event_source", "spot_interruptions.py")


def client(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def check(condition, message):
    if not condition:
        raise SystemExit(f"verify: {message}")


def queue_names():
    return [url.rsplit("/", 1)[-1] for url in client("sqs").list_queues().get("QueueUrls", [])]


def rule_names():
    return [rule["Name"] for rule in client("events").list_rules().get("Rules", [])]


def put(detail_type, detail):
    response = client("events").put_events(
        Entries=[{"Source": "aws.ec2", "DetailType": detail_type, "Detail": json.dumps(detail)}]
    )
    check(response["FailedEntryCount"] == 0, f"put_events failed: {response}")


def load_source():
    spec = importlib.util.spec_from_file_location("spot_interruptions", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verify_present():
    sqs, events = client("sqs"), client("events")
    account = client("sts").get_caller_identity()["Account"]
    url = sqs.get_queue_url(QueueName=NAME)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    rule_arn = f"arn:aws:events:{os.environ['AWS_DEFAULT_REGION']}:{account}:rule/{NAME}"
    check(attributes["ReceiveMessageWaitTimeSeconds"] == "20", "long polling not enabled on the queue")
    check(attributes["VisibilityTimeout"] == "60", "visibility timeout not set")
    policy = json.loads(attributes["Policy"])
    check(len(policy["Statement"]) == 1, f"expected one policy statement: {policy}")
    statement = policy["Statement"][0]
    check(statement["Principal"] == {"Service": "events.amazonaws.com"}, f"principal is {statement['Principal']}")
    check(statement["Action"] in ("sqs:SendMessage", ["sqs:SendMessage"]), f"action is {statement['Action']}")
    check(statement["Resource"] == queue_arn, f"resource is {statement['Resource']}, not {queue_arn}")
    check(statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}, f"condition {statement['Condition']}")
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    check(tags.get("parkingspot:component") == "eda", f"queue tags {tags}")

    rule = events.describe_rule(Name=NAME)
    check(rule["State"] == "ENABLED", f"rule state {rule['State']}")
    check(rule["Arn"] == rule_arn, f"rule ARN {rule['Arn']}")
    targets = events.list_targets_by_rule(Rule=NAME)["Targets"]
    check([t["Arn"] for t in targets] == [queue_arn], f"targets {targets}")

    # Delivery through the real rule: two of these five events must not reach the queue.
    put(
        "EC2 Spot Instance Interruption Warning", {"instance-id": "i-0aaaaaaaaaaaaaaa1", "instance-action": "terminate"}
    )
    put("EC2 Instance Rebalance Recommendation", {"instance-id": "i-0aaaaaaaaaaaaaaa2"})
    put("EC2 Instance State-change Notification", {"instance-id": "i-0aaaaaaaaaaaaaaa3", "state": "terminated"})
    put("EC2 Instance State-change Notification", {"instance-id": "i-0aaaaaaaaaaaaaaa4", "state": "running"})
    put("EC2 AMI Available", {"instance-id": "i-0aaaaaaaaaaaaaaa5"})

    class Collect:
        def __init__(self):
            self.events = []

        async def put(self, event):
            self.events.append(event)

    collected = Collect()
    stats = asyncio.run(
        load_source().main(
            collected,
            {
                "queue_name": NAME,
                "endpoint_url": os.environ["AWS_ENDPOINT_URL"],
                "wait_time_seconds": 1,
                "max_polls": 2,
                "lookup_pool": False,
            },
        )
    )
    got = sorted((e["instance_id"], e["action"]) for e in collected.events)
    want = [
        ("i-0aaaaaaaaaaaaaaa1", "interruption"),
        ("i-0aaaaaaaaaaaaaaa2", "rebalance"),
        ("i-0aaaaaaaaaaaaaaa3", "state_change"),
    ]
    check(got == want, f"events through the rule: {got}, expected {want}")
    check(stats["malformed"] == 0, f"malformed: {stats}")
    print(f"verify present: policy, rule, target and delivery ok ({len(got)} events)")


def verify_nothing():
    check(NAME not in queue_names(), f"queue {NAME} exists")
    check(NAME not in rule_names(), f"rule {NAME} exists")
    print("verify nothing: no queue, no rule")


if __name__ == "__main__":
    {"present": verify_present, "nothing": verify_nothing}[sys.argv[1]]()
