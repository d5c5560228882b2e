# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""S3 writes of the usage report (``spot_usage_report`` with an ``s3://`` ``dest``).

Built like every call in ``_aws.py``: ``SpotErrorHandler`` (one error type, ``AnsibleEC2Error``)
and ``AWSRetry.jittered_backoff``. A separate file so that the reports policy can be derived
from it (docs/iam/actions.yml).
"""

from __future__ import annotations

import re

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws

# S3 bucket naming rules: 3 to 63 characters, lower-case letters, digits, dots and hyphens,
# beginning and ending with a letter or digit, no "..", not shaped like an IP address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def is_url(dest):
    """True when a report ``dest`` names S3 (``s3://...``) rather than a local directory."""
    return bool(dest) and dest.startswith("s3://")


def parse_url(url):
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``; the prefix is empty or ends with ``/``.

    Raises ``ValueError`` (without the option name) when the URL names no valid bucket.
    """
    rest = url[len("s3://") :]
    bucket, _sep, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket (expected s3://bucket or s3://bucket/prefix)")
    if not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket) or ".-" in bucket or "-." in bucket:
        raise ValueError(
            f"{bucket!r} is not a valid S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens,"
            " beginning and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    return bucket, (prefix + "/") if prefix else ""


@_aws.SpotErrorHandler.common_error_handler("write s3://{bucket}/{key}")
@AWSRetry.jittered_backoff()
def put_report_object(client, bucket, key, body, content_type):
    """Write one report file; server-side encryption is the bucket's default."""
    return client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


class _S3DeleteErrorHandler(_aws.SpotErrorHandler):
    MISSING = ("NoSuchKey",)


@_S3DeleteErrorHandler.deletion_error_handler("delete s3://{bucket}/{key}")
@AWSRetry.jittered_backoff()
def delete_report_object(client, bucket, key):
    """Remove a report file this run wrote (rollback); True when the call succeeded."""
    client.delete_object(Bucket=bucket, Key=key)
    return True
