"""API calls and wall time of keeping a pool: parkingspot.ec2.spot_pool vs amazon.aws.ec2_instance.

For pools of N instances, on one local EC2 API (moto) behind the counting proxy
(tools/ec2_proxy.py), each tool runs through ansible-playbook, as users run it:

  create     the pool from nothing
  no-change  a second run with nothing to do (what a 5-minute schedule pays all day)
  replace    10% of the instances terminated behind the tool's back, then a run

amazon.aws keeps the pool with ``ec2_instance`` ``exact_count`` and a launch
template that asks for the spot market. Calls are counted per API action where
they cross the wire. Seconds are noisy here; compare the call counts.

Usage: make bench B=pool_api_calls ARGS="--sizes 10,100,1000"
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

from with_moto import fake_credentials_env  # noqa: E402  pylint: disable=wrong-import-position
from with_moto import start_local_ec2  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/parkingspot.ec2.aws: {{region: us-east-1, endpoint_url: "{url}"}}
    group/amazon.aws.aws: {{region: us-east-1, endpoint_url: "{url}"}}
  tasks:
    - name: keep the pool
{task}
"""

TASKS = {
    "parkingspot.ec2.spot_pool": """      parkingspot.ec2.spot_pool:
        name: bench
        desired: {n}
        launch_template: {{name: bench}}
        instance_type: m6i.large
        subnet_id: {subnet}
""",
    "amazon.aws.ec2_instance": """      amazon.aws.ec2_instance:
        launch_template: {{name: bench-spot}}
        instance_type: m6i.large
        vpc_subnet_id: {subnet}
        exact_count: {n}
        filters: {{"tag:bench": "aws", instance-state-name: [pending, running]}}
        tags: {{bench: aws}}
        wait: false
""",
}


def request(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def fixtures(direct):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=direct, region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="bench", LaunchTemplateData={"ImageId": image})
    ec2.create_launch_template(
        LaunchTemplateName="bench-spot",
        LaunchTemplateData={"ImageId": image, "InstanceMarketOptions": {"MarketType": "spot"}},
    )
    subnet = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])[0]
    return ec2, subnet


def live_ids(ec2):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return sorted(i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"])


def run(tool, n, proxy_url, subnet, env, workdir):
    path = os.path.join(workdir, "play.yml")
    with open(path, "w") as handle:
        handle.write(PLAYBOOK.format(url=proxy_url, task=TASKS[tool].format(n=n, subnet=subnet)))
    request(proxy_url + "/_proxy/reset", "POST")
    started = time.monotonic()
    done = subprocess.run(
        ["ansible-playbook", path], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    elapsed = time.monotonic() - started
    if done.returncode:
        sys.stderr.write(done.stdout.decode()[-3000:])
        raise SystemExit("%s failed for N=%d" % (tool, n))
    counts = request(proxy_url + "/_proxy/counts")
    return {"calls": sum(counts.values()), "by_action": counts, "seconds": round(elapsed, 1)}


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--tools", default=",".join(TASKS))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    # The baseline (amazon.aws ec2_instance) is measured as it runs against moto: strict rules off.
    direct, proxy_url, _state, stop = start_local_ec2(strict=False)
    env = fake_credentials_env(direct)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    results = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for n in [int(x) for x in args.sizes.split(",")]:
                for tool in args.tools.split(","):
                    request(direct + "/moto-api/reset", "POST")
                    ec2, subnet = fixtures(direct)
                    row = {"tool": tool, "n": n}
                    row["create"] = run(tool, n, proxy_url, subnet, env, workdir)
                    row["no_change"] = run(tool, n, proxy_url, subnet, env, workdir)
                    victims = live_ids(ec2)[: max(1, n // 10)]
                    ec2.terminate_instances(InstanceIds=victims)
                    row["replace"] = run(tool, n, proxy_url, subnet, env, workdir)
                    row["live_after"] = len(live_ids(ec2))
                    results.append(row)
                    print(json.dumps(row, sort_keys=True), flush=True)
    finally:
        stop()
    print()
    print("| tool | N | create: calls (s) | no-change: calls (s) | replace 10%: calls (s) | CreateTags | live after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in results:
        tags = sum(row[k]["by_action"].get("CreateTags", 0) for k in ("create", "no_change", "replace"))
        print(
            "| %s | %d | %d (%.1f) | %d (%.1f) | %d (%.1f) | %d | %d |"
            % (
                row["tool"],
                row["n"],
                row["create"]["calls"],
                row["create"]["seconds"],
                row["no_change"]["calls"],
                row["no_change"]["seconds"],
                row["replace"]["calls"],
                row["replace"]["seconds"],
                tags,
                row["live_after"],
            )
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
