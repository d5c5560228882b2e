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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import boto3
from moto.server import ThreadedMotoServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
REGION = "eu-west-1"
QUEUE = "parkingspot-spot-events"

STAND_IN = """---
- name: Stand-in for the pool keeper, records what it was asked to do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Record the pools and the triggering event
      ansible.builtin.lineinfile:
        path: "{{ lookup('ansible.builtin.env', 'PARKINGSPOT_EDA_E2E_OUT') }}"
        line: "{{ {'pools': parkingspot_pool_names, 'instance': ansible_eda.event.instance_id} | to_json }}"
        create: true
        mode: "0600"
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def collection_tree(base):
    """A collections dir holding parkingspot.ec2 with the real EDA parts and a stand-in keeper."""
    root = os.path.join(base, "ansible_collections", "parkingspot", "ec2")
    os.makedirs(os.path.join(root, "playbooks"))
    for name in ("galaxy.yml", "meta", "extensions"):
        os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
    with open(os.path.join(root, "playbooks", "runner_pool.yml"), "w") as handle:
        handle.write(STAND_IN)
    return base


def main():
    rulebook_cmd = os.environ.get("ANSIBLE_RULEBOOK") or shutil.which("ansible-rulebook")
    if not rulebook_cmd:
        print("ansible-rulebook not found: set ANSIBLE_RULEBOOK", file=sys.stderr)
        return 2
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = tempfile.mkdtemp(prefix="parkingspot-eda-e2e-")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        ANSIBLE_COLLECTIONS_PATH=collection_tree(work),
        PARKINGSPOT_EDA_E2E_OUT=os.path.join(work, "runs.jsonl"),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_NOCOLOR="1",
        # ansible-rulebook runs ansible-galaxy and ansible-playbook from its own installation.
        PATH=os.path.dirname(os.path.abspath(rulebook_cmd)) + os.pathsep + os.environ.get("PATH", ""),
    )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    failures = []
    process = None
    log = None
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

        with open(os.path.join(work, "inventory.yml"), "w") as handle:
            python = os.path.join(os.path.dirname(os.path.abspath(rulebook_cmd)), "python")
            handle.write(
                "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                f"      ansible_python_interpreter: {python}\n"
            )
        with open(os.path.join(work, "vars.yml"), "w") as handle:
            handle.write(f"parkingspot_eda_region: {REGION}\nparkingspot_eda_queue_name: {QUEUE}\n")
        log = open(os.path.join(work, "rulebook.log"), "w")  # noqa: SIM115 - the child writes it until the end
        started = time.monotonic()
        process = subprocess.Popen(
            [
                rulebook_cmd,
                "-r",
                "parkingspot.ec2.spot_interruptions",
                "-i",
                "inventory.yml",
                "--vars",
                "vars.yml",
                "-v",
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        runs_file = env["PARKINGSPOT_EDA_E2E_OUT"]

        def runs():
            if not os.path.exists(runs_file):
                return []
            with open(runs_file) as handle:
                return [json.loads(line) for line in handle if line.strip()]

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.poll() is None and len(runs()) < 2:
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
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        server.stop()
        if log is not None:
            log.close()
    with open(os.path.join(work, "rulebook.log")) as handle:
        output = handle.read()
    if f"{stray}: no parkingspot:pool tag" not in output:
        failures.append("no log line for the instance outside any pool")
    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    if failures:
        print(output[-6000:], file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("rulebook end-to-end: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
