# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end run of extensions/eda/rulebooks/spot_interruptions.yml under ansible-rulebook.

EventBridge (moto server) -> SQS -> spot_interruptions source -> rulebook -> run_playbook.
The keeper playbook is replaced by a stand-in that records the pools it was asked to
reconcile, so this checks the wiring (which pools, how often), not the keeper itself.

Needs: this interpreter with moto[server] and boto3; ANSIBLE_RULEBOOK (default: ansible-rulebook
on PATH) installed with boto3 and ansible-core beside it, and Java 17 for its rule engine.
Exit code 0 when every check passed.
"""

import json
import logging
import os
import sys
import tempfile
import time

import boto3
from e2e_common import Rulebook
from e2e_common import free_port
from e2e_common import rulebook_command
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
QUEUE = "parkingspot-spot-events"


def main():
    rulebook_cmd = rulebook_command()
    if not rulebook_cmd:
        return 2
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rulebook = Rulebook(
        tempfile.mkdtemp(prefix="parkingspot-eda-e2e-"),
        rulebook_cmd,
        "{'pools': parkingspot_pool_names, 'instance': ansible_eda.event.instance_id}",
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = rulebook.env(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
    )
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    failures = []
    try:
        session = boto3.session.Session(region_name=REGION)
        sqs = session.client("sqs", endpoint_url=endpoint)
        events = session.client("events", endpoint_url=endpoint)
        ec2 = session.client("ec2", endpoint_url=endpoint)

        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=QUEUE, EventPattern=json.dumps({"source": ["aws.ec2"]}))
        events.put_targets(Rule=QUEUE, Targets=[{"Id": "sqs", "Arn": arn}])

        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

        def launch(count, pool):
            tags = [{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": pool}]}] if pool else []
            reservation = ec2.run_instances(
                ImageId=image, InstanceType="t3.micro", MinCount=count, MaxCount=count, TagSpecifications=tags
            )
            return [i["InstanceId"] for i in reservation["Instances"]]

        small = launch(2, "ci-small")
        (large,) = launch(1, "ci-large")
        (stray,) = launch(1, None)

        def put(detail_type, detail):
            events.put_events(Entries=[{"Source": "aws.ec2", "DetailType": detail_type, "Detail": json.dumps(detail)}])

        put("EC2 Spot Instance Interruption Warning", {"instance-id": small[0], "instance-action": "terminate"})
        put("EC2 Instance Rebalance Recommendation", {"instance-id": small[1]})
        put("EC2 Spot Instance Interruption Warning", {"instance-id": large, "instance-action": "stop"})
        put("EC2 Instance Rebalance Recommendation", {"instance-id": stray})
        put("EC2 Instance State-change Notification", {"instance-id": large, "state": "stopping"})

        started = time.monotonic()
        rulebook.start(
            "spot_interruptions", {"parkingspot_eda_region": REGION, "parkingspot_eda_queue_name": QUEUE}, env
        )
        runs = rulebook.runs

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and rulebook.running() and len(runs()) < 2:
            time.sleep(0.5)
        first_two = time.monotonic() - started
        # Give a wrongly unthrottled third run time to show up.
        time.sleep(8)
        got = runs()
        pools = sorted(tuple(run["pools"]) for run in got)
        if pools != [("ci-large",), ("ci-small",)]:
            failures.append(f"keeper runs {got}, expected one for ci-large and one for ci-small")
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        left = sum(int(v) for v in attributes.values())
        if left:
            failures.append(f"{left} message(s) left in the queue")
        print(f"rulebook: {len(got)} keeper run(s) {pools}; first two within {first_two:.1f} s of start")
    finally:
        output = rulebook.stop()
        server.stop()
    if f"{stray}: no parkingspot:pool tag" not in output:
        failures.append("no log line for the instance outside any pool")
    return rulebook.verdict("rulebook", failures, output)


if __name__ == "__main__":
    sys.exit(main())
