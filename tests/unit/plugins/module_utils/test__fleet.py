# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Batched writes across pools: one call per 1000 ids, and a failed batch fails only the pool at fault."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.parkingspot.ec2.plugins.module_utils import _fleet
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError


class FakeEC2:
    """Terminates what it is asked to, except ids listed in ``refuse`` (the whole call then fails)."""

    def __init__(self, refuse=()):
        self.refuse = set(refuse)
        self.calls = []

    def terminate_instances(self, InstanceIds):
        self.calls.append(list(InstanceIds))
        bad = sorted(self.refuse & set(InstanceIds))
        if bad:
            error = {"Error": {"Code": "OperationNotPermitted", "Message": "%s is protected" % bad[0]}}
            raise ClientError(error, "TerminateInstances")


def runs(*names):
    return {index: _fleet.PoolRun(index, name) for index, name in enumerate(names)}


def test_terminations_of_many_pools_share_calls_of_1000_ids():
    client = FakeEC2()
    pools = runs("a", "b", "c")
    ids = {0: ["i-a%04d" % k for k in range(700)], 1: ["i-b%04d" % k for k in range(700)], 2: []}
    _fleet.terminate_phase(client, pools, ids)
    assert [len(c) for c in client.calls] == [1000, 400]
    assert [len(pools[k].actions["terminated"]) for k in (0, 1, 2)] == [700, 700, 0]
    assert all(run.ok for run in pools.values())


def test_a_failed_batch_is_made_again_pool_by_pool():
    client = FakeEC2(refuse={"i-b0001"})
    pools = runs("a", "b", "c")
    _fleet.terminate_phase(client, pools, {0: ["i-a0001", "i-a0002"], 1: ["i-b0001"], 2: ["i-c0001"]})
    assert client.calls[0] == ["i-a0001", "i-a0002", "i-b0001", "i-c0001"]
    assert sorted(client.calls[1:]) == [["i-a0001", "i-a0002"], ["i-b0001"], ["i-c0001"]]
    assert pools[0].actions["terminated"] == ["i-a0001", "i-a0002"]
    assert pools[2].actions["terminated"] == ["i-c0001"]
    assert pools[1].actions["terminated"] == []
    assert not pools[1].ok and "i-b0001 is protected" in pools[1].error
    assert pools[0].ok and pools[2].ok


def test_a_failed_pool_gets_no_further_writes():
    client = FakeEC2()
    pools = runs("a", "b")
    pools[1].fail("launch refused")
    _fleet.terminate_phase(client, pools, {0: ["i-a1"], 1: ["i-b1"]})
    assert client.calls == [["i-a1"]]


@pytest.mark.parametrize(
    "pools_arg, message",
    [
        ("ci", "pools: must be a list"),
        (["ci"], "pools[0]: must be a dict"),
        ([{"name": ""}], "pools[0].name: every pool needs a name"),
        ([{"name": "a"}, {"name": "b"}, {"name": "a"}], "pools[2].name: pool 'a' is listed twice (also pools[0])"),
    ],
)
def test_prepare_refuses_pools_it_cannot_tell_apart(pools_arg, message):
    with pytest.raises(InputError) as raised:
        _fleet.prepare(pools_arg)
    assert message in str(raised.value)
    assert str(raised.value).startswith(raised.value.option + ": ")


def test_prepare_keeps_a_bad_pool_to_itself():
    prepared = _fleet.prepare(
        [{"name": "a", "desired": "many"}, {"name": "b", "desired": 0}, {"name": "c", "schedule": [{"days": ["mon"]}]}]
    )
    assert [run.ok for run in prepared] == [False, True, False]
    assert "pools[0] (a):" in prepared[0].error and "desired" in prepared[0].error
    assert "start" in prepared[2].error
    assert prepared[1].params["market"] == "spot" and prepared[1].desired == 0


def tagged(ec2, pools):
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for pool in pools:
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": pool}]}],
        )
    asked = []
    ec2.meta.events.register(
        "provide-client-params.ec2.DescribeInstances", lambda params, **kw: asked.append(params.get("Filters"))
    )
    return asked


def test_a_run_reads_its_own_pools_by_exact_escaped_name(ec2):
    asked = tagged(ec2, ["ci*", "ci-arm", "web"])
    by_pool = _fleet.read_all(ec2, ["ci*"])
    assert {"Name": "tag:parkingspot:pool", "Values": ["ci\\*"]} in asked[0]
    assert {k: len(v) for k, v in by_pool.items()} == {"ci*": 1}


def test_more_pools_than_one_filter_takes_read_by_tag_key(ec2):
    asked = tagged(ec2, ["pool-7", "other"])
    names = ["pool-%d" % n for n in range(_fleet.NAME_FILTER_LIMIT + 1)]
    by_pool = _fleet.read_all(ec2, names)
    assert {"Name": "tag-key", "Values": ["parkingspot:pool"]} in asked[0]
    assert list(by_pool) == ["pool-7"]
