# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_pools through ansible-playbook against the local EC2 API, calls counted by the proxy.

Three pools are kept in one task: a run with nothing to do costs one DescribeInstances for
all of them; a broken pool is reported in ``failed`` while the others are kept, and the
task fails (ansible-core turns the module's ``failed`` into the task's failure flag; the
messages per pool come through as ``failed_pools``).
"""

import boto3
import pytest
from local_ec2 import DIRECT
from local_ec2 import counts
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import outcome
from local_ec2 import proxy
from local_ec2 import run_playbook
from local_ec2 import start_play
from local_ec2 import tags

pytestmark = needs_local_ec2


@pytest.fixture
def ec2():
    return fresh_ec2("runner")


def by_pool(ec2):
    held = {}
    for instance in instances(ec2).values():
        name = tags(instance)["parkingspot:pool"]
        held[name] = held.get(name, 0) + 1
    return held


def pool(name, desired, **extra):
    return dict(name=name, desired=desired, launch_template={"name": "runner"}, instance_type="m6i.large", **extra)


def keep(tmp_path, pools):
    proxy("/_proxy/reset")
    code, result, output = outcome(*start_play(tmp_path, "play", "spot_pools", {"pools": pools}, must_pass=True))
    return code, result, counts(), output


def test_three_pools_one_read_when_nothing_changes(ec2, tmp_path):
    pools = [pool("ci-a", 2), pool("ci-b", 3), pool("ci-c", 1)]
    code, created, calls, output = keep(tmp_path, pools)
    assert code == 0, output[-3000:]
    assert created["changed"] is True and created["failed"] is False and created["failed_pools"] == {}
    assert by_pool(ec2) == {"ci-a": 2, "ci-b": 3, "ci-c": 1}
    assert calls == {"DescribeInstances": 1, "RunInstances": 3}

    code, again, calls, output = keep(tmp_path, pools)
    assert code == 0, output[-3000:]
    assert again["changed"] is False
    assert calls == {"DescribeInstances": 1}
    assert {name: p["pool"]["capacity"] for name, p in again["pools"].items()} == {"ci-a": 2, "ci-b": 3, "ci-c": 1}


def test_a_broken_pool_is_reported_and_the_others_are_kept(ec2, tmp_path):
    keep(tmp_path, [pool("ci-a", 1), pool("ci-b", 1)])
    victims = sorted(instances(ec2, "ci-a"))
    ec2.terminate_instances(InstanceIds=victims)  # the cloud takes ci-a's instance back
    pools = [
        pool("ci-a", 1),
        pool("ci-broken", 2, on_demand_fallback={"enabled": True, "asg_name": "no-such-group"}),
        pool("ci-b", 2),
        pool("ci-typo", 1, desird=4),
    ]
    code, result, calls, output = keep(tmp_path, pools)
    assert code != 0, "the task must fail when a pool failed"
    assert result["failed"] is True
    assert sorted(result["failed_pools"]) == ["ci-broken", "ci-typo"]
    assert "no auto scaling group named no-such-group" in result["failed_pools"]["ci-broken"]
    assert "desird" in result["failed_pools"]["ci-typo"]
    assert "2 of 4 pool(s) could not be kept" in result["msg"]
    # The others were kept in the same run: ci-a replaced, ci-b grown, nothing for the broken ones.
    assert by_pool(ec2) == {"ci-a": 1, "ci-b": 2}
    assert result["pools"]["ci-a"]["changed"] is True and result["pools"]["ci-b"]["changed"] is True
    assert calls["DescribeInstances"] == 1
    assert calls["RunInstances"] == 2


def run_keeper(tmp_path, pools):
    """playbooks/runner_pool.yml over ``pools``, as a schedule runs it; the proxy's counts after it."""
    proxy("/_proxy/reset")
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": pools})
    return code, counts(), output


def test_runner_pool_reads_once_per_region_when_nothing_changes(ec2, tmp_path):
    pools = [pool("ci-a", 2), pool("ci-b", 1), dict(pool("ci-c", 1), region="us-east-1")]
    code, calls, output = run_keeper(tmp_path, pools)
    assert code == 0, output[-3000:]
    assert by_pool(ec2) == {"ci-a": 2, "ci-b": 1, "ci-c": 1}
    assert calls == {"DescribeInstances": 1, "RunInstances": 3}, calls

    code, calls, output = run_keeper(tmp_path, pools)
    assert code == 0, output[-3000:]
    # One region (one pool names it, the others inherit it): one read and one module run for all three.
    assert calls == {"DescribeInstances": 1}, calls
    # The keeping task's items, labelled by region: one module run for the three pools.
    runs = [line for line in output.splitlines() if "(item=us-east-1:" in line]
    assert runs == ["ok: [localhost] => (item=us-east-1: ci-a, ci-b, ci-c)"], output[-3000:]
    assert "template for task args is unsafe" not in output
    assert by_pool(ec2) == {"ci-a": 2, "ci-b": 1, "ci-c": 1}


def test_runner_pool_keeps_each_region_apart_and_a_broken_account_fails_alone(ec2, tmp_path):
    west = boto3.client("ec2", endpoint_url=DIRECT, region_name="us-west-2")
    image = west.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    west.create_launch_template(LaunchTemplateName="runner", LaunchTemplateData={"ImageId": image})
    pools = [
        pool("ci-east", 1),
        dict(pool("ci-west", 2), region="us-west-2"),
        # An account whose credentials cannot be found: its run fails as a whole.
        dict(pool("ci-ghost", 1), profile="parkingspot-no-such-profile"),
    ]
    code, calls, output = run_keeper(tmp_path, pools)
    assert code != 0, output[-3000:]
    failures = [line for line in output.splitlines() if '"msg": "pool ' in line]
    assert len(failures) == 1 and '"msg": "pool ci-ghost failed: ' in failures[0], output[-3000:]
    assert by_pool(ec2) == {"ci-east": 1}
    assert by_pool(west) == {"ci-west": 2}
    # One read for each region that could be read; none for the account without credentials.
    assert calls == {"DescribeInstances": 2, "RunInstances": 2}, calls
