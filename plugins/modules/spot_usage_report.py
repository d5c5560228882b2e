#!/usr/bin/python
# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spot_usage_report
short_description: Spot and on-demand usage per pool and owner, with cost against on-demand
version_added: 0.1.0
description:
  - Reports, for the pools named in O(pools) (every pool when omitted), each instance's market,
    type, zone, start, end (or still running), hours including the partial last hour, whether the
    cloud interrupted it, its estimated cost and what it would have cost on-demand.
  - Spot instances outside any pool are grouped by the value of their O(owner_tag) tag.
  - An instance counts as interrupted when it carries the C(parkingspot:interrupted) tag, when its
    state reason is C(Server.SpotInstanceTermination) or C(Server.SpotInstanceShutdown) (the reasons
    the pool keeper counts too), or when its spot request status is one of the
    C(instance-terminated-*), C(instance-stopped-*) or C(instance-hibernated-*) interruption codes.
  - Spot cost is the spot price history in effect over the instance's life (time-weighted), or the
    actual charge from the spot data feed when O(datafeed_bucket) is given and has the instance.
    On-demand prices come from the shipped us-east-1 table or O(on_demand_prices).
  - With O(dest), writes C(usage-report.csv) and C(usage-report.html) there. The HTML page is
    self-contained (no scripts, no external assets) with a table and charts of pool size over time
    by market, interruptions over time, and cost against on-demand.
  - Reads with paginated, tag-filtered describe calls; one DescribeSpotPriceHistory query covers all
    instance types and zones.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  pools:
    description:
      - Pool names (the C(parkingspot:pool) tag), each matched exactly (C(*) and C(?) are no wildcards). Every
        pool when omitted.
    type: list
    elements: str
  include_unpooled_spot:
    description:
      - Also report spot instances without a pool tag, grouped by O(owner_tag).
      - Defaults to V(true) when O(pools) is omitted and V(false) when it is given.
    type: bool
  owner_tag:
    description: Tag key whose value names the owner of a spot instance outside any pool.
    type: str
    default: owner
  lookback_hours:
    description:
      - The report window ends at O(now) and starts this many hours earlier. Instances that ended
        before the window are left out. From 1 to 87840 (ten years).
      - EC2 lists terminated instances for about an hour only; use the data feed for older usage.
    type: int
    default: 168
  now:
    description:
      - End of the window as ISO 8601 (default the current time). Running instances are counted up to it.
    type: str
  dest:
    description:
      - Directory to write C(usage-report.csv) and C(usage-report.html) into; created when missing.
      - Files are replaced atomically and only when their content changes, both or neither; when one cannot be
        written, the previous pair stays.
      - CSV cells that begin with C(=), C(+), C(-) or C(@) (text a spreadsheet would run as a formula) are
        written with a leading C(') as OWASP recommends; numbers stay numbers.
      - Checked before anything is read; an unwritable O(dest) fails with an error naming it.
      - May instead be an S3 URL, C(s3://bucket) or C(s3://bucket/prefix) (where AWX users can reach the files
        after the job's container is gone). Both files are then uploaded with C(PutObject) under the prefix
        (C(text/csv) and C(text/html), UTF-8), server-side encryption left to the bucket's default. When the
        second upload fails, the first object this run wrote is deleted again (S3 has no atomic rename, so a
        previous pair under the same prefix is not kept; enable bucket versioning to keep history).
        Every run uploads, so C(changed) is always true, in check mode too. The URL is checked before any call
        (a missing or invalid bucket name fails naming O(dest)); write access shows only at upload time.
    type: path
  title:
    description: Title of the HTML page.
    type: str
    default: Spot usage report
  datafeed_bucket:
    description:
      - S3 bucket of the account's spot instance data feed. Its files (the documented tab-separated
        format, gzip-compressed) give the actual hourly charges. Malformed lines are skipped and counted.
    type: str
  datafeed_prefix:
    description: Key prefix of the data feed files in O(datafeed_bucket).
    type: str
    default: ""
  on_demand_prices:
    description:
      - On-demand price per instance-hour in USD by instance type, overriding the shipped table.
    type: dict
notes:
  - Supports check mode; in check mode nothing is written and C(changed) says whether the files would change
    (always true for an S3 O(dest)).
  - An S3 O(dest) needs C(s3:PutObject) and C(s3:DeleteObject) on the report keys (see C(docs/iam/reports.json)).
  - Costs are estimates; the data feed charge is the closest to the bill.
extends_documentation_fragment:
  - parkingspot.ec2.aws
"""

EXAMPLES = r"""
- name: Weekly usage report of the CI pools
  parkingspot.ec2.spot_usage_report:
    pools: [ci-linux, ci-arm]
    lookback_hours: 168
    dest: /srv/reports/spot
  register: usage

- name: Who is using how much spot, and what did it save?
  ansible.builtin.debug:
    msg: "{{ item.kind }} {{ item.name }}: {{ item.hours }} h, saved {{ item.savings }} USD ({{ item.savings_pct }}%)"
  loop: "{{ usage.summary }}"

- name: Whole account, with the spot data feed for exact charges
  parkingspot.ec2.spot_usage_report:
    owner_tag: team
    datafeed_bucket: example-spot-datafeed
    datafeed_prefix: feed/
    dest: /srv/reports/spot-all

- name: Nightly report into S3 (AWX jobs run in throw-away containers)
  parkingspot.ec2.spot_usage_report:
    lookback_hours: 24
    dest: s3://example-reports/parkingspot/nightly
  register: usage

- name: Where the files went
  ansible.builtin.debug:
    msg: "{{ usage.files.html }}"  # s3://example-reports/parkingspot/nightly/usage-report.html
"""

RETURN = r"""
summary:
  description: One entry per pool (V(kind=pool)) and per owner of spot instances outside pools (V(kind=owner)).
  returned: always
  type: list
  elements: dict
  contains:
    kind: {description: V(pool) or V(owner)., type: str, sample: pool}
    name: {description: Pool name or owner tag value., type: str, sample: ci-linux}
    instances: {description: Instances in the window., type: int, sample: 42}
    running: {description: Still running at O(now)., type: int, sample: 18}
    spot: {description: Spot instances., type: int, sample: 38}
    on_demand: {description: On-demand instances., type: int, sample: 4}
    interrupted: {description: Instances the cloud interrupted., type: int, sample: 3}
    hours: {description: Instance-hours including partial hours., type: float, sample: 251.5}
    cost: {description: Estimated cost in USD., type: float, sample: 21.37}
    on_demand_cost: {description: The same hours at on-demand prices., type: float, sample: 51.3}
    savings: {description: The on-demand cost minus the cost., type: float, sample: 29.93}
    savings_pct: {description: Savings in percent of the on-demand cost., type: float, sample: 58.3}
    unpriced:
      description: Instances without a known price or end time (left out of the cost sums).
      type: int
      sample: 0
totals:
  description: The sums over RV(summary).
  returned: always
  type: dict
  sample:
    {instances: 42, running: 18, spot: 38, on_demand: 4, interrupted: 3, unpriced: 0,
     hours: 251.5, cost: 21.37, on_demand_cost: 51.3, savings: 29.93, savings_pct: 58.3}
instances:
  description: One row per instance, the same columns as the CSV file.
  returned: always
  type: list
  elements: dict
  sample:
    - pool: ci
      owner: "(no owner)"
      instance_id: i-0123456789abcdef0
      market: spot
      instance_type: m5.large
      zone: us-east-1a
      state: terminated
      start: "2024-05-01T01:00:00Z"
      end: "2024-05-01T03:15:00Z"
      running: false
      hours: 2.25
      interrupted: true
      interruption_source: tag
      cost: 0.065
      cost_source: price_history
      on_demand_cost: 0.216
      savings: 0.151
spot_requests:
  description: Spot requests of the reported instances and pools, with their validity.
  returned: always
  type: list
  elements: dict
  contains:
    spot_request_id: {description: Request ID., type: str, sample: sir-0123456789abcdef0}
    request_type: {description: V(one-time) or V(persistent)., type: str, sample: one-time}
    state:
      description: 'EC2 request state: open, active, closed, cancelled, disabled or failed.'
      type: str
      sample: active
    status_code: {description: EC2 request status code., type: str, sample: instance-terminated-no-capacity}
    instance_id: {description: The instance of the request or null., type: str, sample: i-0a1b2c3d4e5f60718}
    valid_until: {description: End of validity (ISO 8601 UTC) or null., type: str, sample: null}
    expired: {description: The request is past its validity., type: bool, sample: false}
    re_evaluated:
      description: A persistent request that EC2 still re-evaluates (open, active or disabled, and not expired).
      type: bool
      sample: false
    tags: {description: Request tags as a plain dict., type: dict, sample: {"parkingspot:pool": ci-linux}}
datafeed:
  description: What was read from the data feed (null without O(datafeed_bucket)).
  returned: always
  type: dict
  contains:
    files: {description: Files read., type: int, sample: 2}
    records: {description: Valid lines., type: int, sample: 118}
    skipped: {description: Malformed lines skipped., type: int, sample: 1}
    skipped_lines:
      description: The first 20 skipped lines, each with file (source), line number and reason.
      type: list
      sample: [{source: "spot-feed/2030-01-07-12.001.gz", line: 7, reason: "expected 9 tab-separated fields, got 4"}]
files:
  description:
    - Paths written (or that would be written) under O(dest); empty without O(dest).
    - C(s3://bucket/key) URLs when O(dest) is an S3 URL.
  returned: always
  type: dict
  sample: {csv: /var/tmp/report/usage-report.csv, html: /var/tmp/report/usage-report.html}
window:
  description: Start and end of the report window (ISO 8601 UTC).
  returned: always
  type: dict
  sample: {start: "2030-01-06T12:00:00Z", end: "2030-01-07T12:00:00Z"}
"""

import datetime

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws_s3
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils import _module
from ansible_collections.parkingspot.ec2.plugins.module_utils import _report_html as report_html
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage_report
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._pricing import validate_prices
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import to_utc

_MAX_LOOKBACK_HOURS = 10 * 366 * 24


def validate(params):
    """Check every option before any client or read; returns the end of the report window (``now``)."""
    check_range(params["lookback_hours"], "lookback_hours", 1, _MAX_LOOKBACK_HOURS, "hours")
    try:
        now = to_utc(params["now"]) if params["now"] else datetime.datetime.now(datetime.timezone.utc)
    except (ValueError, OverflowError) as e:
        raise InputError("now", f"not an ISO 8601 time: {params['now']!r}") from e
    check_time(now, "now")
    if not params["owner_tag"]:
        raise InputError("owner_tag", "must not be empty")
    if params["pools"] is not None and not [p for p in params["pools"] if p]:
        raise InputError("pools", "must name at least one pool (omit it for all pools)")
    _identity.check_names(params["pools"], "pools")
    validate_prices(params["on_demand_prices"])
    if _aws_s3.is_url(params["dest"]):
        try:
            _aws_s3.parse_url(params["dest"])
        except ValueError as exc:
            raise InputError("dest", str(exc)) from exc
    elif params["dest"]:
        try:
            report_html.check_dest(params["dest"])
        except ValueError as exc:
            raise InputError("dest", str(exc).split(": ", 1)[1]) from exc
    return now


def do(module):
    params = module.params
    now = validate(params)
    ec2 = module.client("ec2")
    s3 = module.client("s3") if params["datafeed_bucket"] or _aws_s3.is_url(params["dest"]) else None
    module.exit_json(**_usage_report.write(module, ec2, s3, params, now))


def main():
    argument_spec = {
        "pools": {"type": "list", "elements": "str"},
        "include_unpooled_spot": {"type": "bool"},
        "owner_tag": {"type": "str", "default": "owner"},
        "lookback_hours": {"type": "int", "default": 168},
        "now": {"type": "str"},
        "dest": {"type": "path"},
        "title": {"type": "str", "default": "Spot usage report"},
        "datafeed_bucket": {"type": "str"},
        "datafeed_prefix": {"type": "str", "default": ""},
        "on_demand_prices": {"type": "dict"},
    }
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    _module.run(module, do)


if __name__ == "__main__":
    main()
