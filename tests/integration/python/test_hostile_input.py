# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile and careless input against the local EC2 API: a name means exactly itself.

Every module runs in this process (its ``main()``, as Ansible would run it) against the moto
server behind the counting proxy of tools/ec2_proxy.py, so each test knows exactly which API
calls a run made. Two neighbouring teams own pools, blocks, requests and volumes; every test
checks that they are untouched afterwards (same ids, same tags), and that a refused input made
no write call (for names, tags and numbers: no call at all).

moto (5.2) reads ``\\*`` and ``\\?`` in filter values as EC2 documents, but not ``\\\\`` (a name with
a backslash is not found by its escaped filter), and it reads ``[...]`` as a character class, which
EC2 does not. The exact comparison after every read is what keeps such names to themselves here.
"""

import os
import sys

import pytest
from local_ec2 import PROXY
from local_ec2 import counts
from local_ec2 import fresh_ec2
from local_ec2 import needs_local_ec2
from local_ec2 import proxy
from local_ec2 import tags

pytestmark = needs_local_ec2

for _path in reversed((os.environ.get("ANSIBLE_COLLECTIONS_PATH") or "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)


def _shared(method):
    """botocore reloads the EC2 model (megabytes of JSON) for every module run's new session; share it."""
    cache = {}

    def cached(self, *args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = method(self, *args, **kwargs)
        return cache[key]

    return cached


botocore_loaders = pytest.importorskip("botocore.loaders")
botocore_loaders.Loader.load_service_model = _shared(botocore_loaders.Loader.load_service_model)
botocore_loaders.Loader.load_data = _shared(botocore_loaders.Loader.load_data)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import assume  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

if PROXY:
    from ansible_collections.parkingspot.ec2.plugins.modules import root_volume  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_block  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool_info  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_price_info  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_request  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_request_info  # noqa: E402
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_usage_report  # noqa: E402
    from ansible_collections.parkingspot.ec2.tests.unit.plugins.modules.utils import run_module  # noqa: E402

    MODULES = {
        m.__name__.rsplit(".", 1)[-1]: m
        for m in (
            root_volume,
            spot_block,
            spot_pool,
            spot_pool_info,
            spot_price_info,
            spot_request,
            spot_request_info,
            spot_usage_report,
        )
    }

NOW = "2026-11-30T10:00:00Z"
WRITE_PREFIXES = ("Run", "Create", "Terminate", "Cancel", "Request", "Delete", "Modify", "Attach", "Detach")
NEIGHBOURS = {
    "pools": ["team-a", "team-b"],
    "blocks": ["bok", "boa"],
    "requests": ["svc-a", "svc-b"],
    "volumes": ["team-x-root", "proj-1-root"],
}
QUICK = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def writes(calls):
    return {action: n for action, n in calls.items() if action.startswith(WRITE_PREFIXES)}


def run(module, args, check_mode=False):
    """Run one module against the proxy; returns (result, API calls by action)."""
    proxy("/_proxy/reset")
    result = run_module(module.main, dict(args, region="us-east-1", endpoint_url=PROXY), check_mode=check_mode)
    return result, counts()


def run_result(module, args, check_mode=False):
    return run(module, args, check_mode)[0]


def world(ec2):
    """Everything in the account that matters here: instances, requests and volumes with their tags."""
    instances = {
        i["InstanceId"]: (i["State"]["Name"], tags(i))
        for page in ec2.get_paginator("describe_instances").paginate()
        for r in page["Reservations"]
        for i in r["Instances"]
    }
    requests = {
        r["SpotInstanceRequestId"]: (r["State"], tags(r))
        for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    }
    volumes = {v["VolumeId"]: (v["State"], tags(v)) for v in ec2.describe_volumes()["Volumes"]}
    return {"instances": instances, "requests": requests, "volumes": volumes}


def launch_args(**extra):
    return dict(launch_template={"name": "runner"}, instance_type="t3.micro", **extra)


@pytest.fixture(scope="module")
def neighbours():
    """Two teams' pools, blocks, requests and volumes, made through the modules themselves."""
    ec2 = fresh_ec2("runner")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for name in NEIGHBOURS["pools"]:
        done = run_result(spot_pool, launch_args(name=name, desired=1, now=NOW, tags={"team": name}))
        assert done["changed"] is True, done
    for name in NEIGHBOURS["blocks"]:
        done = run_result(spot_block, launch_args(name=name, count=1, duration_minutes=120, now=NOW))
        assert done["changed"] is True, done
    for name in NEIGHBOURS["requests"]:
        done = run_result(spot_request, launch_args(name=name, count=1, tags={"team": name}))
        assert done["changed"] is True, done
    for name in NEIGHBOURS["volumes"]:
        done = run_result(root_volume, dict(name=name, size=1, zone="us-east-1a", tags={"team": name}))
        assert done["changed"] is True, done
    before = world(ec2)
    assert len([s for s, _t in before["instances"].values() if s in ("pending", "running")]) == 6
    assert sorted(t["Name"] for _s, t in before["volumes"].values() if "Name" in t) == sorted(NEIGHBOURS["volumes"])
    return ec2, image, before


def untouched(neighbours):
    ec2, _image, before = neighbours
    now = world(ec2)
    for kind in ("instances", "requests", "volumes"):
        for key, value in before[kind].items():
            assert now[kind].get(key) == value, "%s %s changed: %r -> %r" % (kind, key, value, now[kind].get(key))


# --- the cases seen ------------------------------------------------------------------


def test_pool_wildcard_name_launches_its_own_instance_and_nothing_else(neighbours):
    args = launch_args(name="team-*", desired=1, now=NOW)
    first, calls = run(spot_pool, args)
    assert first["changed"] is True and len(first["pool"]["launched"]) == 1
    assert first["pool"]["terminated"] == [] and "TerminateInstances" not in calls
    again, calls = run(spot_pool, args)
    assert again["changed"] is False
    assert calls == {"DescribeInstances": 1}  # a no-change reconcile stays one call
    gone, calls = run(spot_pool, dict(args, state="absent"))
    assert gone["pool"]["terminated"] == first["pool"]["launched"]
    untouched(neighbours)


@pytest.mark.parametrize(
    "module, args",
    [
        ("spot_pool", {"name": "team-?", "state": "absent", "now": NOW}),
        ("spot_pool", {"name": "team-*", "state": "absent", "now": NOW}),
        ("spot_request", {"name": "svc-*", "state": "absent"}),
        ("spot_block", {"name": "bo?", "state": "absent", "duration_minutes": 120, "now": NOW}),
        ("root_volume", {"name": "proj-?-root", "state": "absent"}),
        ("root_volume", {"name": "team-x-*", "state": "absent"}),
    ],
)
def test_wildcard_names_reach_nothing(neighbours, module, args):
    result, calls = run(MODULES[module], args)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert writes(calls) == {}
    untouched(neighbours)


def test_block_check_mode_plans_nothing_for_a_neighbour(neighbours):
    result, calls = run(spot_block, launch_args(name="bo?", count=1, duration_minutes=120, now=NOW), check_mode=True)
    assert result["plan"]["terminate"] == [] and result["plan"]["drain"] == []
    assert result["blocks"] == []
    assert writes(calls) == {}


def test_root_volume_wildcard_name_is_a_new_volume(neighbours):
    ec2 = neighbours[0]
    created = run_result(root_volume, dict(name="team-x-*", size=1, zone="us-east-1a"))
    assert created["changed"] is True
    assert created["volume"]["volume_id"] not in neighbours[2]["volumes"]
    assert created["volume"]["tags"] == {"Name": "team-x-*"}
    run(root_volume, dict(name="team-x-*", state="absent"))
    assert ec2.describe_volumes(VolumeIds=list(neighbours[2]["volumes"]))["Volumes"]
    untouched(neighbours)


def test_info_modules_read_only_the_exact_names(neighbours):
    pools = run_result(spot_pool_info, {"names": ["team-*", "team-?"], "now": NOW})
    assert [p["name"] for p in pools["pools"]] == ["team-*", "team-?"]
    assert all(p["counts"]["capacity"] == 0 for p in pools["pools"])
    exact = run_result(spot_pool_info, {"names": ["team-a"], "now": NOW})
    assert [p["counts"]["capacity"] for p in exact["pools"]] == [1]
    requests = run_result(spot_request_info, {"names": ["svc-*", "svc-?"]})
    assert requests["spot_requests"] == [] and requests["instances"] == []
    mine = run_result(spot_request_info, {"names": ["svc-a"]})
    assert {i["tags"]["parkingspot:request"] for i in mine["instances"]} == {"svc-a"}
    asked = ["team-?", "team-*", "team-[ab]"]
    report = run_result(spot_usage_report, {"pools": asked, "lookback_hours": 24})
    assert {row["pool"] for row in report["instances"]} <= set(asked)  # a pool named team-* may exist by now
    control = run_result(spot_usage_report, {"pools": ["team-a"], "lookback_hours": 24})
    assert [row["pool"] for row in control["instances"]] == ["team-a"]


def test_free_form_filters_stay_in_ec2_syntax(neighbours):
    """spot_request_info's own filters are the user's EC2 filters: wildcards there are wildcards."""
    found = run_result(spot_request_info, {"instance_filters": {"tag:parkingspot:request": "svc-*"}})
    assert sorted(i["tags"]["parkingspot:request"] for i in found["instances"]) == ["svc-a", "svc-b"]


# --- reserved keys, names, numbers: refused before any call --------------------------


@pytest.mark.parametrize(
    "module, args, option, words",
    [
        ("spot_pool", launch_args(name="p", desired=2, tags={"parkingspot:state": "drained"}), "tags", "reserved"),
        ("spot_pool", launch_args(name="p", desired=2, tags={"parkingspot:interrupted": "x"}), "tags", "reserved"),
        ("spot_request", launch_args(name="r", tags={"parkingspot:pool": "team-a"}), "tags", "reserved"),
        ("spot_request", launch_args(name="r", tags={"aws:cloudformation:stack": "x"}), "tags", "reserved"),
        ("spot_block", launch_args(name="b", duration_minutes=60, tags={"PARKINGSPOT:block": "bok"}), "tags", ""),
        ("root_volume", {"name": "v", "size": 1, "zone": "us-east-1a", "tags": {"parkingspot:x": "1"}}, "tags", ""),
        ("spot_pool", launch_args(name="", desired=1), "name", "empty"),
        ("spot_pool", launch_args(name="p" * 257, desired=1), "name", "at most 256"),
        ("spot_request", launch_args(name="a\nb"), "name", "control"),
        ("root_volume", {"name": "x" * 257, "size": 1, "zone": "us-east-1a"}, "name", "256"),
        ("spot_pool_info", {"names": ["ok", ""]}, "names[1]", "empty"),
        ("spot_request_info", {"names": ["\x00"]}, "names[0]", "control"),
        ("spot_usage_report", {"pools": ["y" * 300]}, "pools[0]", "256"),
        ("spot_pool", launch_args(name="p", desired=1, now="0001-01-01T00:00:00Z"), "now", "between"),
        ("spot_pool", launch_args(name="p", desired=1, now="0001-01-01T00:30:00+01:00"), "now", "range"),
        ("spot_pool", launch_args(name="p", desired=10**9), "desired", "10000"),
        ("spot_pool", launch_args(name="p", market="block", duration_minutes=10**12), "duration_minutes", "minutes"),
        ("spot_pool", launch_args(name="p", drain={"timeout": 10**9}), "drain.timeout", "86400"),
        ("spot_block", launch_args(name="b", duration_minutes=10**10), "duration_minutes", "minutes"),
        ("spot_request", launch_args(name="r", count=10**7), "count", "10000"),
        ("spot_request", launch_args(name="r", wait_timeout=10**12), "wait_timeout", "86400"),
        ("root_volume", {"name": "v", "size": 10**9, "zone": "us-east-1a"}, "size", "65536"),
        ("spot_usage_report", {"lookback_hours": 10**9}, "lookback_hours", "87840"),
        ("spot_usage_report", {"now": "0001-01-01T00:00:00Z"}, "now", "between"),
        ("spot_usage_report", {"on_demand_prices": {"t3.micro": "nan"}}, "on_demand_prices", "finite"),
        ("spot_price_info", {"instance_types": ["t3.micro"], "on_demand_prices": {"t3.micro": "inf"}}, "", "finite"),
        ("spot_pool", launch_args(name="p", desired=1, drain={"command": "echo 'oops {instance_id}"}), "drain", ""),
    ],
)
def test_refused_before_any_call(neighbours, module, args, option, words):
    result, calls = run(MODULES[module], args)
    assert result.get("failed") is True, result
    assert result["msg"].startswith(option), result["msg"]
    assert words in result["msg"]
    assert calls == {}, calls  # not a single call: nothing can have been touched


# --- drains: only the placeholders change ----------------------------------------------


def test_drain_command_passes_shell_text_through(neighbours, tmp_path):
    log = tmp_path / "argv.log"
    command = (
        "sh -c 'for a; do echo \"$a\"; done >> %s' drain {instance_id} ${HOME} "
        "jsonpath='{.status.phase}' \"{private_dns_name}\" {unknown} $$" % log
    )
    up = run_result(spot_pool, launch_args(name="drainer", desired=1, now=NOW))
    (instance_id,) = up["pool"]["launched"]
    down, calls = run(spot_pool, launch_args(name="drainer", desired=0, now=NOW, drain={"command": command}))
    assert down["pool"]["drain_outcomes"][0]["status"] == "drained", down["pool"]["drain_outcomes"]
    lines = log.read_text().splitlines()
    assert lines[0] == instance_id
    assert lines[1:3] == ["${HOME}", "jsonpath={.status.phase}"]
    assert lines[3].startswith("ip-")
    assert lines[4:] == ["{unknown}", "$$"]
    assert calls["TerminateInstances"] == 1
    untouched(neighbours)


def test_bad_drain_template_changes_nothing(neighbours):
    ec2 = neighbours[0]
    up = run_result(spot_pool, launch_args(name="drainer2", desired=1, now=NOW))
    (instance_id,) = up["pool"]["launched"]
    bad, calls = run(
        spot_pool, launch_args(name="drainer2", desired=0, now=NOW, drain={"command": 'echo "{instance_id}'})
    )
    assert bad["failed"] is True and bad["msg"].startswith("drain.command")
    assert calls == {}
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = reservation["Instances"][0]
    assert instance["State"]["Name"] in ("pending", "running")
    assert "parkingspot:state" not in tags(instance)
    run(spot_pool, launch_args(name="drainer2", state="absent", now=NOW))


# --- tag values are text; purge_tags -------------------------------------------------


def test_numeric_and_boolean_tag_values_are_idempotent(neighbours):
    args = launch_args(name="typed", count=1, tags={"n": 2, "ok": True, "ratio": 0.5})
    first = run_result(spot_request, args)
    assert first["changed"] is True
    again, calls = run(spot_request, args)
    assert again["changed"] is False
    assert writes(calls) == {}
    (instance,) = again["instances"]
    assert {k: instance["tags"][k] for k in ("n", "ok", "ratio")} == {"n": "2", "ok": "True", "ratio": "0.5"}
    run(spot_request, dict(args, state="absent"))
    untouched(neighbours)


def test_purge_tags_keeps_reserved_keys(neighbours):
    ec2 = neighbours[0]
    args = launch_args(name="purged", count=1, tags={"team": "z"})
    first = run_result(spot_request, args)
    (instance_id,) = first["actions"]["launched"]
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[{"Key": "stray", "Value": "1"}, {"Key": "parkingspot:busy", "Value": "true"}],
    )
    kept, calls = run(spot_request, dict(args, purge_tags=False))
    assert kept["changed"] is False and writes(calls) == {}
    purged, calls = run(spot_request, args)
    assert purged["changed"] is True and writes(calls) == {"DeleteTags": 1}
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    left = tags(reservation["Instances"][0])
    assert "stray" not in left
    assert left["parkingspot:busy"] == "true" and left["parkingspot:request"] == "purged"
    run(spot_request, dict(args, state="absent"))
    untouched(neighbours)


# --- any hostile name -----------------------------------------------------------------

TAKEN = {name for names in NEIGHBOURS.values() for name in names}
NASTY = st.sampled_from(
    ["*", "?", "\\", "\\*", "team-*", "team-?", "*-a", "svc-?", "bo?", "???", "team-[ab]", "%", "team-a ", " team-a"]
)
TEXT = st.text(alphabet=st.sampled_from("*?\\[]-_ .%/é€👀\u202eteamsvcbok"), min_size=0, max_size=12)
LONG = st.sampled_from(["t" * 256, "t" * 257, "*" * 256, "?" * 257])
HOSTILE = st.one_of(NASTY, TEXT, LONG)


def _valid(name):
    return 1 <= len(name) <= 256 and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def _check(result, calls, name, option="name"):
    if _valid(name):
        assert result.get("failed") is not True, result
        assert result["changed"] is False
        assert writes(calls) == {}
    else:
        assert result.get("failed") is True
        assert result["msg"].startswith(option)
        assert calls == {}


@QUICK
@given(name=HOSTILE)
def test_any_hostile_name_leaves_the_neighbours_alone(neighbours, name):
    assume(name not in TAKEN)
    for module, args in (
        (spot_pool, {"state": "absent", "now": NOW}),
        (spot_block, {"state": "absent", "duration_minutes": 120, "now": NOW}),
        (spot_request, {"state": "absent"}),
        (root_volume, {"state": "absent"}),
    ):
        result, calls = run(module, dict(args, name=name))
        _check(result, calls, name)
    pools, calls = run(spot_pool_info, {"names": [name], "now": NOW})
    _check(pools, calls, name, "names[0]")
    if _valid(name):
        assert [p["counts"]["capacity"] for p in pools["pools"]] == [0]
    requests, calls = run(spot_request_info, {"names": [name]})
    _check(requests, calls, name, "names[0]")
    if _valid(name):
        assert requests["spot_requests"] == [] and requests["instances"] == []
    untouched(neighbours)


@QUICK
@given(name=st.one_of(NASTY, TEXT))
def test_hostile_pool_names_plan_only_for_themselves(neighbours, name):
    assume(name not in TAKEN and _valid(name))
    result, calls = run(spot_pool, launch_args(name=name, desired=1, now=NOW), check_mode=True)
    assert result["changed"] is True and result["pool"]["would_launch"] == 1
    assert result["plan"]["terminate"] == [] and result["plan"]["drain"] == []
    assert writes(calls) == {}
    untouched(neighbours)
