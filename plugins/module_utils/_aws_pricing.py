# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The read-only calls behind spot_price_info and spot_usage_report: price history, zones and
the spot data feed in S3.

Built like every call in ``_aws.py`` from its pieces: ``SpotErrorHandler`` (one error type,
``AnsibleEC2Error``), ``AWSRetry.jittered_backoff`` and ``paginate``, which also returns the
page count so the modules can report how many requests they made.
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws


@_aws.SpotErrorHandler.common_error_handler("describe spot price history")
@AWSRetry.jittered_backoff()
def describe_spot_price_history(client, **params):
    """All price records matching ``params`` (one request per page); returns ``(records, pages)``."""
    params.setdefault("PaginationConfig", {"PageSize": _aws.BATCH})
    return _aws.paginate(client, "describe_spot_price_history", "SpotPriceHistory", **params)


@_aws.SpotErrorHandler.common_error_handler("describe availability zones")
@AWSRetry.jittered_backoff()
def describe_availability_zones(client, **params):
    return client.describe_availability_zones(**params)["AvailabilityZones"]


class _S3ObjectErrorHandler(_aws.SpotErrorHandler):
    MISSING = ("NoSuchKey",)


@_S3ObjectErrorHandler.common_error_handler("list spot data feed files in bucket {bucket}")
@AWSRetry.jittered_backoff()
def list_datafeed_objects(client, bucket, prefix=""):
    """Objects under ``prefix`` in the data feed bucket; returns ``(objects, pages)``."""
    return _aws.paginate(client, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix)


@_S3ObjectErrorHandler.list_error_handler("read spot data feed file {key}", None)
@AWSRetry.jittered_backoff()
def get_datafeed_object(client, bucket, key):
    """The bytes of one data feed file, or None when it vanished between list and get."""
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()
