# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/with_moto.py: the indexed tag lookup answers exactly what moto's own lookup answers."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("moto")

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models.core import TaggedEC2Resource  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
_path = list(sys.path)
try:
    spec = importlib.util.spec_from_file_location("with_moto", ROOT / "tools" / "with_moto.py")
    with_moto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(with_moto)
finally:
    sys.path[:] = _path  # with_moto puts tools/ first to import ec2_proxy


@pytest.fixture
def backend(ec2):
    return ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


@pytest.fixture
def moto_get_tags():
    """moto's own lookup, and the indexed one installed for the test (undone after it)."""
    original = TaggedEC2Resource.get_tags
    undo = with_moto.index_ec2_tags()
    try:
        assert TaggedEC2Resource.get_tags is not original
        yield original
    finally:
        undo()
    assert TaggedEC2Resource.get_tags is original


def tagged(resource_type, **tags):
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def resources(backend):
    instances = [i for r in backend.reservations.values() for i in r.instances]
    return instances + list(backend.volumes.values()) + [g for vpc in backend.groups.values() for g in vpc.values()]


def assert_same(backend, moto_get_tags):
    checked = 0
    for resource in resources(backend):
        assert resource.get_tags() == moto_get_tags(resource), resource.id
        checked += 1
    return checked


def test_instances_volumes_and_untagged_resources_get_the_same_tags(ec2, backend, image_id, moto_get_tags):
    ec2.run_instances(
        ImageId=image_id,
        MinCount=3,
        MaxCount=3,
        TagSpecifications=tagged("instance", **{"parkingspot:pool": "ci", "Name": "runner", "b": "2", "a": "1"}),
    )
    ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2)  # no tags
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=tagged("volume", Name="root"))
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)
    keys_before = set(backend.tags)
    assert assert_same(backend, moto_get_tags) >= 7
    tags = [i.get_tags() for r in backend.reservations.values() for i in r.instances]
    assert [t["key"] for t in tags[0]] == ["parkingspot:pool", "Name", "b", "a"]  # the order they were given
    assert {t["resource_type"] for t in tags[0]} == {"instance"}
    assert tags[-1] == []
    assert set(backend.tags) == keys_before  # asking for an untagged resource adds no entry


def test_the_same_tags_after_create_and_delete(ec2, backend, image_id, moto_get_tags):
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=image_id, MinCount=2, MaxCount=2, TagSpecifications=tagged("instance", keep="yes", drop="x")
        )["Instances"]
    ]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    ec2.create_tags(Resources=ids + [volume], Tags=[{"Key": "added", "Value": "1"}, {"Key": "keep", "Value": "no"}])
    assert_same(backend, moto_get_tags)
    ec2.delete_tags(Resources=[ids[0]], Tags=[{"Key": "drop"}])
    ec2.delete_tags(Resources=[ids[1]], Tags=[{"Key": "added", "Value": "not this value"}])
    ec2.delete_tags(Resources=[volume], Tags=[{"Key": "added"}, {"Key": "keep"}])
    assert_same(backend, moto_get_tags)
    volumes = {v.id: v for v in backend.volumes.values()}
    assert volumes[volume].get_tags() == []


def test_describe_and_tag_filters_answer_the_same(ec2, image_id, moto_get_tags):
    for pool in ("a", "b", "a"):
        ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, TagSpecifications=tagged("instance", pool=pool))
    ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)
    filters = [{"Name": "tag:pool", "Values": ["a"]}]
    indexed = ec2.describe_instances(), ec2.describe_instances(Filters=filters)
    patched = TaggedEC2Resource.get_tags
    TaggedEC2Resource.get_tags = moto_get_tags  # moto's own for the second reading
    try:
        plain = ec2.describe_instances(), ec2.describe_instances(Filters=filters)
    finally:
        TaggedEC2Resource.get_tags = patched
    for mine, theirs in zip(indexed, plain):
        mine.pop("ResponseMetadata")
        theirs.pop("ResponseMetadata")
        assert mine == theirs
    assert sum(len(r["Instances"]) for r in indexed[1]["Reservations"]) == 4


def test_an_id_is_matched_whole_and_patterns_go_moto_s_way(backend, moto_get_tags):
    backend.create_tags(["i-0abc"], {"short": "1"})
    backend.create_tags(["i-0abcd"], {"long": "2"})
    backend.create_tags(["i-0ab*"], {"pattern": "3"})

    def resource(resource_id):
        fake = TaggedEC2Resource()
        fake.id, fake.ec2_backend = resource_id, backend
        return fake

    for resource_id in ("i-0abc", "i-0abcd", "i-0ab*", "i-none", ""):
        assert resource(resource_id).get_tags() == moto_get_tags(resource(resource_id)), resource_id
    assert [t["key"] for t in resource("i-0abc").get_tags()] == ["short"]
    assert "i-none" not in backend.tags


def test_indexing_twice_is_harmless():
    original = TaggedEC2Resource.get_tags
    undo = with_moto.index_ec2_tags()
    try:
        patched = TaggedEC2Resource.get_tags
        with_moto.index_ec2_tags()()  # a second call changes nothing, and neither does its undo
        assert TaggedEC2Resource.get_tags is patched
    finally:
        undo()
    assert TaggedEC2Resource.get_tags is original


CLIENT_SCRIPT = """
import os, sys, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["MOTO_URL"], region_name="us-east-1")
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
pool = sys.argv[1]  # moto's state lives as long as the test process: one pool per run
spec = [{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": pool}]}]
ec2.run_instances(ImageId=image, MinCount=3, MaxCount=3, InstanceType="t3.micro", TagSpecifications=spec)
pages = ec2.describe_instances(Filters=[{"Name": "tag:parkingspot:pool", "Values": [pool]}])["Reservations"]
found = [i for r in pages for i in r["Instances"] if {"Key": "parkingspot:pool", "Value": pool} in i["Tags"]]
sys.exit(0 if len(found) == 3 else 3)
"""


@pytest.mark.parametrize("flag", [True, False])
def test_the_command_line_flag_indexes_tags_for_the_command_only(monkeypatch, flag):
    original = TaggedEC2Resource.get_tags
    seen = []
    call = with_moto.subprocess.call

    def watch(command, env):
        seen.append(getattr(TaggedEC2Resource.get_tags, "parkingspot_indexed", False))
        return call(command, env=env)

    monkeypatch.setattr(with_moto.subprocess, "call", watch)
    argv = (["--indexed-tags"] if flag else []) + ["--", sys.executable, "-c", CLIENT_SCRIPT, f"ci-{flag}"]
    assert with_moto.main(argv) == 0  # the command's own tagged launch and filtered read worked
    assert seen == [flag]
    assert TaggedEC2Resource.get_tags is original  # undone when the command ends
