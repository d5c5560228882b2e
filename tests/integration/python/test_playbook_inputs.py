# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks fail closed on careless or hostile input, before any write call.

Against the local EC2 API behind the counting proxy: two neighbouring teams' capacity exists
first; each refused run must leave it exactly as it was (same instances, same tags) and the
proxy must have seen no write call.
"""

import os

import pytest
from local_ec2 import counts
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import proxy
from local_ec2 import run_playbook
from local_ec2 import run_spot
from local_ec2 import tags

pytestmark = needs_local_ec2
WRITE_PREFIXES = ("Run", "Create", "Terminate", "Delete", "Modify", "Cancel", "Request", "Stop")


def writes():
    return {name: n for name, n in counts().items() if name.startswith(WRITE_PREFIXES)}


def snapshot(client):
    """Every live instance with its tags: what a refused run must leave alone."""
    return {iid: tags(i) for iid, i in instances(client, pools_only=False).items()}


@pytest.fixture(scope="module")
def world():
    """Two teams' spot capacity, made once: every test compares against its own snapshot."""
    client = fresh_ec2("runner")
    for team, count in (("team-a", 2), ("team-b", 1)):
        run_spot(client, count, {"owner": team, "parkingspot:pool": team})
    return client


@pytest.fixture
def ec2(world):
    proxy("/_proxy/reset")
    return world


def pool(name, desired=1):
    return {"name": name, "desired": desired, "launch_template": {"name": "runner"}, "instance_type": "t3.micro"}


def test_duplicate_pool_names_are_refused(ec2):
    before = snapshot(ec2)
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": [pool("team-a", 2), pool("team-a", 2)]})
    assert code != 0
    assert "pool names must be unique" in output and "repeated: team-a" in output, output[-2000:]
    assert writes() == {}
    assert snapshot(ec2) == before


def test_a_pool_name_given_as_a_string_is_one_exact_name(ec2):
    # "team" is a substring of "team-a": as a list of characters or a substring test it would match.
    pools = [pool("team", 1), pool("team-a", 2), pool("a", 1)]
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": pools}, "parkingspot_pool_names=team-a")
    assert code == 0, output[-2000:]
    assert writes() == {}, "team-a already has its 2 instances: nothing to do"
    assert "team" not in [t.get("parkingspot:pool") for t in snapshot(ec2).values()]


def test_an_unknown_pool_name_fails_with_the_known_names(ec2):
    before = snapshot(ec2)
    pools = [pool("team-a", 0), pool("team-b", 0)]
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": pools}, {"parkingspot_pool_names": ["team-*"]})
    assert code != 0
    assert "unknown: team-*" in output and "known: team-a, team-b" in output, output[-2000:]
    assert writes() == {}
    assert snapshot(ec2) == before


@pytest.mark.parametrize(
    "variables",
    [
        ["parkingspot_admin_owner=*", "confirm=yes"],
        ["parkingspot_admin_owner=team-?", "confirm=yes"],
        ["parkingspot_admin_owner=team-a\\", "confirm=yes"],
        ["parkingspot_admin_pool=team*", "confirm=yes"],
        ["parkingspot_admin_owner_tag=own*", "parkingspot_admin_owner=team-a", "confirm=yes"],
    ],
)
def test_admin_refuses_wildcards(ec2, variables):
    before = snapshot(ec2)
    code, output = run_playbook("admin_spot.yml", *variables)
    assert code != 0
    assert "must be an exact name" in output, output[-2000:]
    assert counts() == {}, "refused before anything is read"
    assert snapshot(ec2) == before


@pytest.mark.parametrize("age", ["2h", "", "-1", "true"])
def test_admin_refuses_an_age_that_is_not_a_number(ec2, age):
    before = snapshot(ec2)
    code, output = run_playbook(
        "admin_spot.yml", "parkingspot_admin_owner=team-a", "confirm=yes", {"parkingspot_admin_min_age_hours": age}
    )
    assert code != 0
    assert "parkingspot_admin_min_age_hours must be a number of hours" in output, output[-2000:]
    assert counts() == {}
    assert snapshot(ec2) == before


def test_admin_min_age_in_hours_keeps_new_instances(ec2):
    before = snapshot(ec2)
    code, output = run_playbook(
        "admin_spot.yml", "parkingspot_admin_owner=team-a", "confirm=yes", {"parkingspot_admin_min_age_hours": 2}
    )
    assert code == 0, output[-2000:]
    assert "terminated 0 instance(s)" in output
    assert writes() == {}
    assert snapshot(ec2) == before


@pytest.mark.parametrize(
    "pools, message",
    [
        ({"team-a": pool("team-a")}, "parkingspot_pools must be a list"),
        ("team-a", "parkingspot_pools must be a list"),
        ([pool("team-a"), {"desired": 3}], "not so for item(s) 1"),
    ],
)
def test_a_pool_list_of_the_wrong_shape_is_refused(ec2, pools, message):
    before = snapshot(ec2)
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": pools})
    assert code != 0
    assert message in output, output[-2000:]
    assert writes() == {}
    assert snapshot(ec2) == before


def test_an_unsupported_pool_option_fails_that_pool_only(ec2):
    pools = [dict(pool("team-x"), access_key="AKIA-IN-A-POOL"), pool("team-b", 1)]
    code, output = run_playbook("runner_pool.yml", {"parkingspot_pools": pools})
    assert code != 0
    assert "pool team-x failed: parkingspot_pools: pool team-x has unsupported option(s) access_key" in output
    assert writes() == {}, "team-b already has its instance; team-x is refused before any call"
    assert "team-x" not in [t.get("parkingspot:pool") for t in snapshot(ec2).values()]


def test_usage_report_refuses_wildcard_pool_names(ec2, tmp_path):
    dest = str(tmp_path / "report")
    variables = {"parkingspot_report_dest": dest, "parkingspot_report_pools": "team-*"}
    code, output = run_playbook("usage_report.yml", variables)
    assert code != 0
    assert "parkingspot_report_pools must be a list of exact pool names" in output, output[-2000:]
    assert counts() == {}
    assert not os.path.exists(dest)


def test_usage_report_reads_one_pool_given_as_a_string(ec2, tmp_path):
    dest = str(tmp_path / "report")
    code, output = run_playbook(
        "usage_report.yml",
        {"parkingspot_report_dest": dest, "parkingspot_report_pools": "team-a", "parkingspot_report_lookback_hours": 1},
    )
    assert code == 0, output[-2000:]
    with open(os.path.join(dest, "usage-report.csv"), encoding="utf-8") as handle:
        text = handle.read()
    assert "team-a" in text and "team-b" not in text
    assert writes() == {}
