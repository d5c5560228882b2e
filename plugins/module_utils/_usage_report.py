# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One usage report (``spot_usage_report``): read, build the rows, write the two files.

The reads: one paginated DescribeInstances for the pools and, with unpooled spot, one for spot
instances; one DescribeSpotInstanceRequests; with a data feed, one listing of the feed bucket and
one GetObject per file inside the window; one DescribeSpotPriceHistory for every type and zone of
the spot instances the feed does not cover. Instances and requests are turned into the normalised
shape of ``_aws`` as they are read; rows, totals and price integration are pure (``_usage``), the
CSV and HTML text and the atomic local writes are in ``_report_html``. Nothing is written in check
mode.
"""

from __future__ import annotations

import datetime
import os
import re

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_pricing
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_s3
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _report_html as report_html
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage as usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import to_utc

# Data feed file names: <account>.<YYYY>-<MM>-<DD>-<HH>.<n>.<id>.gz (the hour the file covers).
FEED_NAME = re.compile(r"\.(\d{4})-(\d{2})-(\d{2})-(\d{2})\.\d+\.[^./]+\.gz$")
# EC2 keeps 90 days of spot price history.
PRICE_HISTORY_DAYS = 90
S3_CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


# --- the shapes the report reads --------------------------------------------------------------


def report_instance(raw):
    """``_aws.normalize_instance`` plus ``platform``: the ``PlatformDetails`` its spot price is published under."""
    return dict(_aws.normalize_instance(raw), platform=raw.get("PlatformDetails"))


def report_request(raw):
    """``_aws.normalize_spot_request`` plus ``status_update_time``: when its status last changed (UTC)."""
    updated = (raw.get("Status") or {}).get("UpdateTime")
    return dict(_aws.normalize_spot_request(raw), status_update_time=to_utc(updated) if updated else None)


# --- reads ------------------------------------------------------------------------------------


def read_instances(client, pools, include_unpooled):
    """The instances of ``pools`` (every pool when empty) and, with ``include_unpooled``, spot outside pools."""
    if pools:
        pool_filter = _identity.names_filter(TAG_POOL, pools)
    else:
        pool_filter = {"Name": "tag-key", "Values": [TAG_POOL]}
    raw = _aws.describe_instances_raw(client, Filters=[pool_filter], MaxResults=_aws.BATCH)
    pooled = [report_instance(i) for i in raw]
    if pools:
        wanted = set(pools)
        pooled = [i for i in pooled if i["tags"].get(TAG_POOL) in wanted]
    if include_unpooled:
        spot_filter = {"Name": "instance-lifecycle", "Values": ["spot"]}
        raw = _aws.describe_instances_raw(client, Filters=[spot_filter], MaxResults=_aws.BATCH)
        pooled += [i for i in (report_instance(r) for r in raw) if TAG_POOL not in i["tags"]]
    return pooled


def related_requests(requests, instance_ids, pools):
    """The requests of the reported instances, and those tagged with a reported pool."""
    keep = []
    for req in requests:
        pool = req["tags"].get(TAG_POOL)
        if req.get("instance_id") in instance_ids or (pool and (not pools or pool in pools)):
            keep.append(req)
    return keep


def read_requests(client, instance_ids, pools):
    return related_requests([report_request(r) for r in _aws.describe_spot_requests_raw(client)], instance_ids, pools)


def read_datafeed(s3, bucket, prefix, start, end):
    """Records of the feed files whose hour lies in the window (from an hour before ``start``), and stats."""
    objects, _pages = _aws_pricing.list_datafeed_objects(s3, bucket, prefix)
    records, skipped, files = [], [], 0
    earliest = start - datetime.timedelta(hours=1)
    for obj in sorted(objects, key=lambda o: o["Key"]):
        match = FEED_NAME.search(obj["Key"])
        if not match:
            continue
        hour = datetime.datetime(*(int(g) for g in match.groups()), tzinfo=datetime.timezone.utc)
        if hour < earliest or hour > end:
            continue
        body = _aws_pricing.get_datafeed_object(s3, bucket, obj["Key"])
        if body is None:
            continue
        files += 1
        recs, bad = usage.parse_datafeed(body, obj["Key"])
        records += [r for r in recs if earliest <= r["timestamp"] <= end]
        skipped += bad
    stats = {"files": files, "records": len(records), "skipped": len(skipped), "skipped_lines": skipped[:20]}
    return records, stats


def read_prices(client, instances, feed_ids, now):
    """One price history query for the spot instances the data feed does not cover."""
    spot = [i for i in instances if i["market"] == "spot" and i["instance_id"] not in feed_ids]
    if not spot:
        return []
    oldest = now - datetime.timedelta(days=PRICE_HISTORY_DAYS)
    start = max(min(to_utc(i["launch_time"]) for i in spot), oldest)
    zones = sorted({i["zone"] for i in spot} - {None})
    query = {
        "InstanceTypes": sorted({i["instance_type"] for i in spot}),
        "ProductDescriptions": sorted({usage.platform_of(i) for i in spot} & set(usage.PRICED_PLATFORMS))
        or [usage.LINUX],
        "StartTime": start,
        "EndTime": now,
    }
    if zones:
        query["Filters"] = [{"Name": "availability-zone", "Values": zones}]
    records, _pages = _aws_pricing.describe_spot_price_history(client, **query)
    return records


# --- the report -------------------------------------------------------------------------------


def in_window(row, start, now):
    if row["start"] and to_utc(row["start"]) > now:
        return False
    return not (row["end"] and to_utc(row["end"]) < start)


def build(ec2, s3, params, start, now):
    """Read everything and build the report: rows, groups, totals, requests, data feed stats."""
    pools = params["pools"]
    include_unpooled = params["include_unpooled_spot"]
    if include_unpooled is None:
        include_unpooled = not pools
    instances = read_instances(ec2, pools, include_unpooled)
    requests = read_requests(ec2, {i["instance_id"] for i in instances}, pools)
    feed_records, feed_stats = [], None
    if params["datafeed_bucket"]:
        feed_records, feed_stats = read_datafeed(s3, params["datafeed_bucket"], params["datafeed_prefix"], start, now)
        if pools:  # feed lines carry no tags: keep only the instances of the chosen pools
            wanted = {i["instance_id"] for i in instances}
            feed_records = [r for r in feed_records if r["instance_id"] in wanted]
    feed_ids = {r["instance_id"] for r in feed_records}
    prices = read_prices(ec2, instances, feed_ids, now)
    rows = usage.usage_rows(
        instances, requests, prices, now, params["owner_tag"], params["on_demand_prices"], feed_records
    )
    rows = [r for r in rows if in_window(r, start, now)]
    rows.sort(key=lambda r: (r["pool"] or "", r["owner"] or "", r["start"] or "", r["instance_id"]))
    groups = usage.summarize(rows)
    return {
        "title": params["title"],
        "window_start": start,
        "window_end": now,
        "generated_at": format_time(now),
        "rows": rows,
        "groups": groups,
        "totals": usage.totals(groups),
        "spot_requests": usage.request_rows(requests, now),
        "datafeed": feed_stats,
    }


# --- writing the files ------------------------------------------------------------------------


def upload(s3, dest, contents, check_mode):
    """Upload both files under the prefix of ``dest``; when the second upload fails, the first
    object this run wrote is deleted again, so a failed run leaves no half-new pair behind."""
    bucket, prefix = _aws_s3.parse_url(dest)
    keys = {"csv": prefix + report_html.CSV_NAME, "html": prefix + report_html.HTML_NAME}
    files = {kind: f"s3://{bucket}/{key}" for kind, key in keys.items()}
    if check_mode:
        return True, files
    written = []
    try:
        for kind in ("csv", "html"):
            body = contents[kind].encode("utf-8")
            _aws_s3.put_report_object(s3, bucket, keys[kind], body, S3_CONTENT_TYPES[kind])
            written.append(keys[kind])
    except _aws.AnsibleEC2Error:
        for key in written:
            _aws_s3.delete_report_object(s3, bucket, key)
        raise
    return True, files


def write_local(dest, contents, check_mode):
    """Replace both files in the directory ``dest`` when their content changes (in check mode: say
    whether it would)."""
    files = {"csv": os.path.join(dest, report_html.CSV_NAME), "html": os.path.join(dest, report_html.HTML_NAME)}
    if check_mode:
        changed = False
        for kind, path in files.items():
            try:
                with open(path, encoding="utf-8") as handle:
                    changed |= handle.read() != contents[kind]
            except OSError:
                changed = True
        return changed, files
    if not os.path.isdir(dest):
        os.makedirs(dest, mode=0o755)
    # Both files or neither: a failure leaves the previous pair in place.
    changed = report_html.write_all_if_changed({files[kind]: contents[kind] for kind in files})
    return changed, files


def write_files(s3, dest, report, check_mode):
    """Render the CSV and HTML text and write it to ``dest`` (a directory or an S3 URL): ``(changed, files)``."""
    contents = {"csv": report_html.render_csv(report["rows"]), "html": report_html.render_html(report)}
    try:
        if _aws_s3.is_url(dest):
            return upload(s3, dest, contents, check_mode)
        return write_local(dest, contents, check_mode)
    except OSError as e:
        raise InputError("dest", f"cannot write the report: {e}") from e


# --- the entry point --------------------------------------------------------------------------


def write(module, ec2, s3, params, now):
    """Build the report over the ``lookback_hours`` before ``now`` and write it to ``dest`` (if any).

    ``s3`` is needed only with ``datafeed_bucket`` or an S3 ``dest``. Returns the module result.
    """
    start = now - datetime.timedelta(hours=params["lookback_hours"])
    report = build(ec2, s3, params, start, now)
    changed, files = False, {}
    if params["dest"]:
        changed, files = write_files(s3, params["dest"], report, module.check_mode)
    return {
        "changed": changed,
        "summary": report["groups"],
        "totals": report["totals"],
        "instances": report["rows"],
        "spot_requests": report["spot_requests"],
        "datafeed": report["datafeed"],
        "files": files,
        "window": {"start": format_time(start), "end": format_time(now)},
    }
