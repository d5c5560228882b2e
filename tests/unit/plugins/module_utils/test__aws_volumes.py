# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The call layer's conventions, checked on the volume, price and data feed calls: one error type,
"not found" answered with a default, throttling retried, messages that name what failed."""

import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.amazon.aws.plugins.module_utils.ec2 import AnsibleEC2Error
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_pricing
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_volumes


@pytest.fixture
def sleeps(monkeypatch):
    from ansible_collections.amazon.aws.plugins.module_utils import cloud

    slept = []
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    return slept


@pytest.fixture
def ec2(aws_credentials):
    return boto3.client("ec2", region_name="us-east-1")


@pytest.fixture
def s3(aws_credentials):
    return boto3.client("s3", region_name="us-east-1")


def test_a_missing_volume_reads_as_none(ec2):
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_volumes", "InvalidVolume.NotFound")
        assert _aws_volumes.get_volume(ec2, "vol-0123456789abcdef0") is None
        stub.assert_no_pending_responses()


def test_deleting_what_is_gone_is_false_not_an_error(ec2):
    with Stubber(ec2) as stub:
        stub.add_client_error("delete_volume", "InvalidVolume.NotFound")
        stub.add_client_error("delete_snapshot", "InvalidSnapshot.NotFound")
        stub.add_response("delete_volume", {}, {"VolumeId": "vol-2"})
        assert _aws_volumes.delete_volume(ec2, "vol-1") is False
        assert _aws_volumes.delete_snapshot(ec2, "snap-1") is False
        assert _aws_volumes.delete_volume(ec2, "vol-2") is True


def test_volume_errors_are_the_one_error_type_and_name_the_volume(ec2, sleeps):
    with Stubber(ec2) as stub:
        stub.add_client_error("attach_volume", "VolumeInUse", http_status_code=400)
        with pytest.raises(AnsibleEC2Error) as raised:
            _aws_volumes.attach_volume(ec2, "/dev/sdf", "i-0abc", "vol-0def")
    assert raised.value.message == "Failed to attach volume vol-0def to i-0abc"
    assert _aws.error_code(raised.value) == "VolumeInUse"
    assert sleeps == []


def test_volume_calls_retry_throttling(ec2, sleeps):
    with Stubber(ec2) as stub:
        stub.add_client_error("detach_volume", "RequestLimitExceeded", http_status_code=503)
        stub.add_response("detach_volume", {"VolumeId": "vol-1", "State": "detaching"})
        assert _aws_volumes.detach_volume(ec2, "vol-1")["State"] == "detaching"
    assert len(sleeps) == 1


def test_an_unknown_image_names_the_option(ec2):
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_images", "InvalidAMIID.NotFound")
        with pytest.raises(_aws.ParkingSpotError) as raised:
            _aws_volumes.image_root_snapshot(ec2, "ami-12345678")
    assert raised.value.message == "image_id ami-12345678 was not found (InvalidAMIID.NotFound)"
    assert _aws.error_code(raised.value.__cause__) == "InvalidAMIID.NotFound"


def test_price_history_counts_its_pages(ec2):
    record = {"InstanceType": "m6i.large", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.05"}
    with Stubber(ec2) as stub:
        stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [record], "NextToken": "t"})
        stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [record, record], "NextToken": ""})
        records, pages = _aws_pricing.describe_spot_price_history(ec2, InstanceTypes=["m6i.large"])
    assert (len(records), pages) == (3, 2)


def test_a_datafeed_file_that_vanished_reads_as_none(s3):
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        assert _aws_pricing.get_datafeed_object(s3, "feed", "a.gz") is None


def test_datafeed_errors_name_the_bucket(s3):
    with Stubber(s3) as stub:
        stub.add_client_error("list_objects_v2", "AccessDenied", http_status_code=403)
        with pytest.raises(AnsibleEC2Error) as raised:
            _aws_pricing.list_datafeed_objects(s3, "my-feed-bucket", "spot/")
    # The bucket in the message needs amazon.aws >= 11.3.0 (placeholders in handler descriptions).
    assert raised.value.message == "Failed to list spot data feed files in bucket my-feed-bucket"


def test_snapshot_lookup_reads_every_page(ec2):
    # EC2 returns at most 1000 snapshots a page: a named snapshot on the second page must be found.
    def snap(sid, name):
        return {"SnapshotId": sid, "VolumeId": "vol-1", "State": "completed", "Tags": [{"Key": "Name", "Value": name}]}

    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", {"Snapshots": [snap("snap-1", "other")], "NextToken": "page-2"})
        stub.add_response("describe_snapshots", {"Snapshots": [snap("snap-2", "root-a")]})
        found = _aws_volumes.find_snapshots(ec2, {"Name": "root-a"})
        stub.assert_no_pending_responses()
    assert [s["snapshot_id"] for s in found] == ["snap-2"]
