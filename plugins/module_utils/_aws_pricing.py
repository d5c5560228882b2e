# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The read-only AWS calls behind spot_price_info and spot_usage_report that the EC2 call
layer (_aws.py) does not already make: price history, zones and the spot data feed in S3.

One tiny function per call, with amazon.aws's jittered-backoff retry and an error handler
that turns botocore errors into ``AnsibleAWSError``. List calls use paginators and return
the page count too, so callers can report how many requests they made.
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

PAGE_SIZE = 1000


class AnsibleSpotPricingError(AnsibleAWSError):
    pass


class SpotPricingErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleSpotPricingError


class DataFeedErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleSpotPricingError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code("NoSuchKey")


def _paginate(client, operation, result_key, **params):
    records, pages = [], 0
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(**params):
        pages += 1
        records.extend(page.get(result_key, []))
    return records, pages


@SpotPricingErrorHandler.common_error_handler("describe spot price history")
@AWSRetry.jittered_backoff()
def describe_spot_price_history(client, **params):
    """All price records matching ``params`` (one request per page); returns ``(records, pages)``."""
    params.setdefault("PaginationConfig", {"PageSize": PAGE_SIZE})
    return _paginate(client, "describe_spot_price_history", "SpotPriceHistory", **params)


@SpotPricingErrorHandler.common_error_handler("describe availability zones")
@AWSRetry.jittered_backoff()
def describe_availability_zones(client, **params):
    return client.describe_availability_zones(**params)["AvailabilityZones"]


@DataFeedErrorHandler.common_error_handler("list spot data feed files in bucket {bucket}")
@AWSRetry.jittered_backoff()
def list_datafeed_objects(client, bucket, prefix=""):
    """Objects under ``prefix`` in the data feed bucket; returns ``(objects, pages)``."""
    return _paginate(client, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix)


@DataFeedErrorHandler.list_error_handler("read spot data feed file {key}", None)
@AWSRetry.jittered_backoff()
def get_datafeed_object(client, bucket, key):
    """The bytes of one data feed file, or None when it vanished between list and get."""
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()
