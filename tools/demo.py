"""make demo: keep a CI runner pool through a simulated working day on a local EC2 API.

Starts moto on a free 127.0.0.1 port behind the counting proxy (tools/ec2_proxy.py),
creates what a pool needs (a launch template, the default VPC's subnets), runs
playbooks/demo.yml, which tells the day step by step, and stops the servers.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ec2_proxy  # noqa: E402  pylint: disable=wrong-import-position
from with_moto import fake_credentials_env  # noqa: E402  pylint: disable=wrong-import-position


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fixtures(url):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="ci-runner",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "m6i.large",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"])[:2]
    return {"image_id": image, "subnet_ids": subnets}


def main():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    started = time.monotonic()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    upstream = "http://127.0.0.1:%d" % port
    proxy, proxy_url, state = ec2_proxy.start(upstream)
    out_dir = os.path.join(os.path.dirname(HERE), "demo-output")
    os.makedirs(out_dir, exist_ok=True)
    try:
        env = fake_credentials_env(upstream)
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        extra = fixtures(upstream)
        extra.update(parkingspot_endpoint_url=proxy_url, parkingspot_region="us-east-1", demo_output=out_dir)
        print("Local EC2 API on %s (calls counted through %s)" % (upstream, proxy_url), flush=True)
        code = subprocess.call(
            ["ansible-playbook", os.path.join("playbooks", "demo.yml"), "-e", json.dumps(extra)],
            env=env,
        )
        with urllib.request.urlopen(proxy_url + "/_proxy/counts", timeout=10) as response:
            counts = json.loads(response.read())
        print("\nEC2 API calls made by the keeper through the day: %d" % sum(counts.values()))
        for action, count in sorted(counts.items()):
            print("  %-28s %d" % (action, count))
        print("Spot launches refused by the simulated capacity outage: %d" % state.refused)
        print("Demo finished in %.0f s; usage report in %s" % (time.monotonic() - started, out_dir))
        return code
    finally:
        proxy.shutdown()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
