# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Python integration tests share: the local EC2 API and keeper plays.

The API is moto behind the counting, fault-playing proxy of tools/ec2_proxy.py (``MOTO_URL``;
moto itself at ``MOTO_DIRECT_URL``), started by ``make integration``. A keeper play is one task
of a parkingspot.ec2 module run by ``ansible-playbook`` as a user runs it, its registered result
written to a JSON file the test reads.
"""

import json
import os
import subprocess
import urllib.request

import boto3
import pytest

PROXY = os.environ.get("MOTO_URL")
DIRECT = os.environ.get("MOTO_DIRECT_URL")
REGION = "us-east-1"
LIVE = ("pending", "running")

needs_local_ec2 = pytest.mark.skipif(
    not (PROXY and DIRECT), reason="needs the local EC2 API (run through make integration)"
)


def proxy(path, method="POST"):
    """Call the proxy's control API (``/_proxy/...``); its JSON answer."""
    request = urllib.request.Request(PROXY + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def counts():
    """EC2 calls through the proxy since its last reset, by action."""
    return proxy("/_proxy/counts", method="GET")


def fresh_ec2(*templates):
    """An empty EC2 (moto reset, the proxy's counts, client tokens and played faults cleared) with
    a launch template of each name; a boto3 client on moto itself, which no played fault reaches."""
    urllib.request.urlopen(urllib.request.Request(DIRECT + "/moto-api/reset", method="POST", data=b""), timeout=30)
    # The proxy remembers client tokens as EC2 does: a launch that repeats an earlier test's
    # request would get that test's instances, which the reset above removed.
    proxy("/_proxy/reset")
    client = boto3.client("ec2", endpoint_url=DIRECT, region_name=REGION)
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for name in templates:
        client.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": image})
    return client


def instances(client, pool=None, states=LIVE, pools_only=True):
    """The instances of ``pool`` (of any pool when None; any instance at all without
    ``pools_only``) in ``states``, by id."""
    filters = [{"Name": "instance-state-name", "Values": list(states)}]
    if pool is None:
        if pools_only:
            filters.append({"Name": "tag-key", "Values": ["parkingspot:pool"]})
    else:
        filters.append({"Name": "tag:parkingspot:pool", "Values": [pool]})
    pages = client.get_paginator("describe_instances").paginate(Filters=filters)
    return {i["InstanceId"]: i for p in pages for r in p["Reservations"] for i in r["Instances"]}


def tags(item):
    """The tags of an instance, a request or a volume as EC2 describes it, as a dict."""
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def env_without_local_ec2():
    """This environment without this tier's EC2 API, for a command that starts its own."""
    return {k: v for k, v in os.environ.items() if k not in ("MOTO_URL", "MOTO_DIRECT_URL")}


def write_play(tmp_path, name, module, args, check=False, must_pass=False):
    """Write a play of one ``parkingspot.ec2.<module>`` task against the proxy; (play, result file).

    ``must_pass``: the task's failure does not stop the play before its result is written; a last
    task fails the play then, so the exit code still tells.
    """
    task = {"parkingspot.ec2." + module: dict({"region": REGION, "endpoint_url": PROXY}, **args), "register": "result"}
    if check:
        task["check_mode"] = True
    out = tmp_path / ("%s.json" % name)
    tasks = [task, {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)}}]
    if must_pass:
        task["ignore_errors"] = True
        tasks.append({"name": "Fail when the task failed", "ansible.builtin.assert": {"that": "result is not failed"}})
    play = tmp_path / ("%s.yml" % name)
    # JSON is YAML: no quoting of the arguments to get wrong.
    play.write_text(json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]))
    return play, out


def start_play(tmp_path, name, module, args, **options):
    """Start the play in a session of its own (so a test can kill it); (process, result file)."""
    play, out = write_play(tmp_path, name, module, args, **options)
    process = subprocess.Popen(
        ["ansible-playbook", str(play)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, out


def outcome(process, out, timeout=240):
    """Wait for a started play: (exit code, registered result or None if none was written, output)."""
    output = process.communicate(timeout=timeout)[0].decode()
    return process.returncode, (json.loads(out.read_text()) if out.exists() else None), output


def finish(process, out, timeout=240):
    """Wait for a started play; it must succeed. Its registered result."""
    code, result, output = outcome(process, out, timeout)
    assert code == 0, output[-3000:]
    return result


def run_play(tmp_path, name, module, args, **options):
    """Run the play to its end; it must succeed. Its registered result."""
    return finish(*start_play(tmp_path, name, module, args, **options))


PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "playbooks")


def run_playbook(name, *variables, timeout=240):
    """One of the collection's playbooks against the proxy, each of ``variables`` (a dict, or
    ``-e`` text such as ``@file``) given with ``-e``; (exit code, output)."""
    command = ["ansible-playbook", os.path.join(PLAYBOOKS, name)]
    for item in ({"parkingspot_endpoint_url": PROXY, "parkingspot_region": REGION},) + variables:
        command += ["-e", json.dumps(item) if isinstance(item, dict) else item]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=timeout)
    return done.returncode, done.stdout.decode()


def run_spot(client, count, instance_tags):
    """``count`` spot instances with ``instance_tags``, made on moto directly (another team's)."""
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    client.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in instance_tags.items()]}
        ],
    )
