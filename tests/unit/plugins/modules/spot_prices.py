# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Realistic spot price history for tests that otherwise run against moto.

moto's DescribeSpotPriceHistory returns one constant price (0.00001) per type and zone with a
2006 timestamp and never paginates, so it can test neither statistics nor paging. This fake
answers DescribeSpotPriceHistory on every botocore client created while it is installed, from
records the test provides, honouring InstanceTypes, ProductDescriptions, the availability-zone
filter, StartTime/EndTime (plus the record in effect at StartTime, as EC2 does), MaxResults and
NextToken. Every other call still goes to moto. It counts the requests it answered.
"""

import contextlib
import datetime

import botocore.handlers
from botocore.awsrequest import AWSResponse

UTC = datetime.timezone.utc


def _utc(value):
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class FakePriceHistory:
    def __init__(self, records):
        self.records = [dict(r, Timestamp=_utc(r["Timestamp"])) for r in records]
        self.requests = []

    def _capture(self, params, context, **_kwargs):
        context["parkingspot_api_params"] = dict(params)

    def _answer(self, context, **_kwargs):
        params = context.get("parkingspot_api_params", {})
        self.requests.append(params)
        types = set(params.get("InstanceTypes") or [])
        products = set(params.get("ProductDescriptions") or [])
        zones = set()
        for flt in params.get("Filters") or []:
            if flt["Name"] == "availability-zone":
                zones.update(flt["Values"])
        start = _utc(params["StartTime"]) if params.get("StartTime") else None
        end = _utc(params["EndTime"]) if params.get("EndTime") else None
        chosen = [
            r
            for r in self.records
            if (not types or r["InstanceType"] in types)
            and (not products or r["ProductDescription"] in products)
            and (not zones or r["AvailabilityZone"] in zones)
            and (end is None or r["Timestamp"] <= end)
        ]
        if start is not None:
            in_window = [r for r in chosen if r["Timestamp"] >= start]
            before = {}
            for r in chosen:
                if r["Timestamp"] < start:
                    key = (r["InstanceType"], r["AvailabilityZone"], r["ProductDescription"])
                    if key not in before or before[key]["Timestamp"] < r["Timestamp"]:
                        before[key] = r
            chosen = in_window + list(before.values())
        chosen.sort(key=lambda r: (r["Timestamp"], r["InstanceType"], r["AvailabilityZone"]), reverse=True)
        offset = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 1000)
        page = chosen[offset : offset + size]
        body = {"SpotPriceHistory": page, "ResponseMetadata": {"HTTPStatusCode": 200}}
        if offset + size < len(chosen):
            body["NextToken"] = str(offset + size)
        return AWSResponse("https://ec2.fake", 200, {}, None), body

    @contextlib.contextmanager
    def installed(self):
        entries = [
            ("before-parameter-build.ec2.DescribeSpotPriceHistory", self._capture),
            ("before-call.ec2.DescribeSpotPriceHistory", self._answer),
        ]
        botocore.handlers.BUILTIN_HANDLERS.extend(entries)
        try:
            yield self
        finally:
            for entry in entries:
                botocore.handlers.BUILTIN_HANDLERS.remove(entry)


def price_series(instance_type, zone, prices, start, step_minutes=60, product="Linux/UNIX"):
    """Records for one type and zone: ``prices[i]`` takes effect at ``start + i * step``."""
    return [
        {
            "InstanceType": instance_type,
            "AvailabilityZone": zone,
            "ProductDescription": product,
            "SpotPrice": f"{price:.6f}",
            "Timestamp": start + datetime.timedelta(minutes=step_minutes * i),
        }
        for i, price in enumerate(prices)
    ]
