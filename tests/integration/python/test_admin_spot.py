# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/admin_spot.yml against the local EC2 API: show first, terminate only with confirm=true."""

import json
import os
import subprocess
import urllib.request

import boto3
import pytest

PROXY = os.environ.get("MOTO_URL")
DIRECT = os.environ.get("MOTO_DIRECT_URL")
pytestmark = pytest.mark.skipif(not (PROXY and DIRECT), reason="needs the local EC2 API (run through make integration)")
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "playbooks", "admin_spot.yml")


@pytest.fixture
def ec2():
    urllib.request.urlopen(urllib.request.Request(DIRECT + "/moto-api/reset", method="POST", data=b""), timeout=30)
    client = boto3.client("ec2", endpoint_url=DIRECT, region_name="us-east-1")
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for owner, count in (("build", 2), ("web", 1)):
        client.run_instances(
            ImageId=image,
            InstanceType="t3.micro",
            MinCount=count,
            MaxCount=count,
            InstanceMarketOptions={"MarketType": "spot"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": owner}]}],
        )
    return client


def running(ec2):
    pages = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    found = [i for r in pages["Reservations"] for i in r["Instances"]]
    return sorted({t["Key"]: t["Value"] for t in i["Tags"]}["owner"] for i in found)


def admin(*extra):
    variables = {"parkingspot_endpoint_url": PROXY, "parkingspot_region": "us-east-1"}
    command = ["ansible-playbook", PLAYBOOK, "-e", json.dumps(variables)]
    for item in extra:
        command += ["-e", item]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout.decode()


def test_without_confirm_it_only_shows(ec2):
    code, output = admin("parkingspot_admin_owner=build")
    assert code == 0, output[-2000:]
    assert "would terminate 2 instance(s)" in output
    assert running(ec2) == ["build", "build", "web"]


def test_with_confirm_only_the_selection_goes(ec2):
    code, output = admin("parkingspot_admin_owner=build", "confirm=true")
    assert code == 0, output[-2000:]
    assert "terminated 2 instance(s)" in output
    assert running(ec2) == ["web"]


def test_confirm_without_a_selection_is_refused(ec2):
    code, output = admin("confirm=true")
    assert code != 0
    assert "Refusing to terminate every spot instance" in output
    assert running(ec2) == ["build", "build", "web"]
