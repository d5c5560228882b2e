"""A counting, fault-injecting and strict HTTP proxy in front of the local EC2 API (moto).

ParkingSpot's demo and benchmarks run Ansible modules in their own processes, so
API calls are counted where they cross the wire: every request is forwarded to
moto and its action (``Action=`` of the query protocol, or ``X-Amz-Target``) is
counted. It can also refuse spot launches with a capacity error, as AWS does when
a spot pool is empty, which moto never does.

Strict mode (on unless ``start(..., strict=False)``) refuses what EC2 refuses and
moto accepts, and plays on demand what EC2 does and moto cannot. Every rule and
the text it comes from is listed in docs/ec2-contracts.md; in short:

  refused   more than 200 filter values in one call (FilterLimitExceeded); a legacy
            RequestSpotInstances LaunchSpecification.UserData that is not base64;
            a ClientToken seen before with other parameters (IdempotentParameterMismatch);
            tag keys over 128 / values over 256 characters, keys starting ``aws:``;
            AttachVolume to an instance that is not running or stopped (IncorrectState)
  played    instant fleets that return ``Errors`` beside (or instead of) ``Instances``;
            launched ids invisible to Describe/CreateTags for a few seconds; launched
            instances ``pending`` for a few seconds; any capacity error code; a spot
            price history (moto's is one placeholder price from 2006, and none for some zones)

Control endpoints (not forwarded):
  GET  /_proxy/counts             {"Action": n, ...}
  GET  /_proxy/calls[?since=T]    every forwarded call (after wall-clock time T), in order:
        [{"at": epoch seconds it arrived, "action": A, "status": S}, ...]; a launch that
        succeeded (RunInstances, CreateFleet) also has "instances" (ids launched) and "tags"
        (its TagSpecification tags, e.g. "parkingspot:pool")
  POST /_proxy/reset              clear the counts, client tokens and every played behaviour
  POST /_proxy/spot?available=0[&code=C][&limit=K]
        available=0: refuse spot launches with error code C (default
        InsufficientInstanceCapacity; 1 accepts them again). limit=K: a spot launch gets
        at most K instances (RunInstances with MinCount > K fails with C; an instant
        fleet gets K and ``Errors`` for the rest). An instant fleet is refused the way
        EC2 refuses it: HTTP 200, no instances, the error in ``Errors``.
  POST /_proxy/fleet?instances=K&code=C[&message=M]
        every instant fleet (spot or on-demand) launches at most K instances and reports
        the shortfall in ``Errors`` with code C (a capacity or a configuration code)
  POST /_proxy/offering?instance_type=T&subnet_id=S&available=0
        refuse spot launches on one offering (type x subnet; either may be omitted to match
        all; available=1 accepts them again): RunInstances fails with
        InsufficientInstanceCapacity, an instant fleet whose overrides name a refused offering
        launches nothing and reports each refused override in ``Errors`` (harsher than EC2,
        whose fleet would go on to the other overrides)
  GET  /_proxy/refused            the offerings refused so far, [[type, subnet], ...]
  POST /_proxy/consistency?invisible=S&pending=S
        ids launched from now on stay invisible to DescribeInstances/CreateTags for S
        seconds (InvalidInstanceID.NotFound when asked by id, left out of filtered
        results), and are ``pending`` for S seconds (AttachVolume refused meanwhile)
  POST /_proxy/delay?action=A&seconds=S   hold every A request S seconds before forwarding it
  POST /_proxy/spot-price?instance_type=T&zone=Z&price=P[&at=ISO][&product=D]
        add one price change (USD per instance-hour) at time ``at`` (default: now) to the
        series of T x Z x D (D defaults to ``Linux/UNIX``); repeat it to build a curve. While
        any price is played the proxy answers DescribeSpotPriceHistory itself from the played
        series, as EC2 does: InstanceTypes, ProductDescriptions, AvailabilityZone and the
        filters availability-zone, instance-type, product-description and spot-price (with
        ``*`` and ``?`` wildcards) all narrow the answer; StartTime..EndTime cuts each series,
        keeping the last change at or before StartTime (the price in force at the start);
        MaxResults and NextToken page it (1000 a page unless asked). Records come oldest
        first. AvailabilityZoneId and the availability-zone-id and timestamp filters are
        refused as not played, an unknown filter as EC2 refuses it. ``reset`` clears the series.

moto ignores EC2 client tokens; AWS does not. The proxy gives RunInstances,
CreateFleet and RequestSpotInstances their AWS meaning: a repeated ClientToken
returns the first call's response instead of launching again (requests with one
token are serialised) and, in strict mode, a token reused with other parameters
is refused.
"""

import base64
import binascii
import datetime
import hashlib
import http.client
import http.server
import json
import math
import re
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import Counter

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
FILTER_VALUE_LIMIT = 200
TAG_KEY_LIMIT = 128
TAG_VALUE_LIMIT = 256
TOKEN_ACTIONS = ("RunInstances", "CreateFleet", "RequestSpotInstances")
ATTACHABLE_STATES = ("running", "stopped")

CAPACITY_MESSAGES = {
    "InsufficientInstanceCapacity": "There is no Spot capacity available that matches your request.",
    "UnfulfillableCapacity": "Unable to fulfill capacity due to your request configuration.",
    "MaxSpotInstanceCountExceeded": "Max spot instance count exceeded",
}


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_xml(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code><Message>%s</Message>'
        "</Error></Errors><RequestID>parkingspot-proxy</RequestID></Response>" % (code, _escape(message))
    )


CAPACITY_ERROR = error_xml("InsufficientInstanceCapacity", CAPACITY_MESSAGES["InsufficientInstanceCapacity"])


class Refusal(Exception):
    """What EC2 answers instead of doing the call: an HTTP 400 with an EC2 error code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class ProxyState:
    def __init__(self, upstream, strict=True):
        parsed = urllib.parse.urlsplit(upstream)
        self.host, self.port = parsed.hostname, parsed.port
        self.strict = strict
        self.counts = Counter()
        self.refused = 0
        self.delays = {}
        self.lock = threading.Lock()
        self.tokens = {}
        self.token_params = {}
        self.token_locks = {}
        self.refusals = Counter()
        self.calls = []
        self.reset_behaviour()

    def reset_behaviour(self):
        self.spot_available = True
        self.spot_code = "InsufficientInstanceCapacity"
        self.spot_limit = None
        self.fleet_limit = None
        self.fleet_code = None
        self.fleet_message = None
        self.invisible_seconds = 0.0
        self.pending_seconds = 0.0
        self.launched = {}  # instance id -> monotonic launch time (only while consistency is played)
        self.refused_offerings = set()
        self.refused_log = []
        self.spot_prices = {}  # (instance type, zone, product) -> {time: USD per hour}, while played

    def token_lock(self, token):
        with self.lock:
            return self.token_locks.setdefault(token, threading.Lock())

    def invisible(self, instance_id, now=None):
        launched = self.launched.get(instance_id)
        return launched is not None and (now or time.monotonic()) - launched < self.invisible_seconds

    def pending(self, instance_id, now=None):
        launched = self.launched.get(instance_id)
        return launched is not None and (now or time.monotonic()) - launched < self.pending_seconds


def _action(headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return (fields.get("Action") or ["?"])[0]


def _fields(body):
    """The query-protocol parameters of a request body, in order (empty for JSON protocols)."""
    return urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def _is_spot_launch(action, body):
    text = urllib.parse.unquote_plus(body.decode("utf-8", "replace"))
    if action == "RunInstances":
        return "InstanceMarketOptions.MarketType=spot" in text
    if action == "CreateFleet":
        return "DefaultTargetCapacityType=spot" in text
    return action == "RequestSpotInstances"


def _client_token(action, body):
    if action not in TOKEN_ACTIONS:
        return None
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get("ClientToken") or [None])[0]
    return "%s:%s" % (action, token) if token else None


def _token_params(fields):
    return sorted((k, v) for k, v in fields if k != "ClientToken")


# --- the strict rules: what EC2 refuses and moto accepts ---------------------------

_FILTER_VALUE = re.compile(r"^Filter\.\d+\.Value\.\d+$")
_TAG_FIELD = re.compile(r"^(?:TagSpecification\.\d+\.)?Tag\.\d+\.(Key|Value)$")


def check_request(action, fields):
    """Raise :class:`Refusal` for a request EC2 would refuse; the rules of docs/ec2-contracts.md."""
    values = sum(1 for key, _value in fields if _FILTER_VALUE.match(key))
    if values > FILTER_VALUE_LIMIT:
        raise Refusal(
            "FilterLimitExceeded",
            "The maximum number of filter values specified on a single call is %d (got %d)"
            % (FILTER_VALUE_LIMIT, values),
        )
    for key, value in fields:
        match = _TAG_FIELD.match(key)
        if not match:
            continue
        if match.group(1) == "Key":
            if len(value) > TAG_KEY_LIMIT:
                raise Refusal("InvalidParameterValue", "Tag key exceeds the maximum length of 128 characters")
            if value.lower().startswith("aws:"):
                raise Refusal("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
        elif len(value) > TAG_VALUE_LIMIT:
            raise Refusal("InvalidParameterValue", "Tag value exceeds the maximum length of 256 characters")
    if action == "RequestSpotInstances":
        for key, value in fields:
            if key == "LaunchSpecification.UserData":
                try:
                    base64.b64decode(value.encode("ascii"), validate=True)
                except (binascii.Error, UnicodeEncodeError, ValueError):
                    raise Refusal("InvalidParameterValue", "Invalid BASE64 encoding of user data")


# --- rewriting moto's XML ----------------------------------------------------------------


def _tag(name, ns=EC2_NS):
    return "{%s}%s" % (ns, name) if ns else name


def _namespace(root):
    return root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""


def _serialize(root):
    ET.register_namespace("", _namespace(root))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def launched_ids(action, data):
    """Instance ids in a RunInstances or CreateFleet response."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    ns = _namespace(root)
    if action == "RunInstances":
        return [e.text for e in root.iter(_tag("instanceId", ns))]
    ids = []
    for group in root.iter(_tag("fleetInstanceSet", ns)):
        for item in group.iter(_tag("instanceIds", ns)):
            ids += [e.text for e in item.findall(_tag("item", ns))]
    return ids


def request_tags(fields):
    """The tags of a request's TagSpecifications (or Tag.N), as one dict."""
    pairs = {}
    for key, value in fields:
        match = _TAG_FIELD.match(key)
        if match:
            pairs.setdefault(key.rsplit(".", 1)[0], {})[match.group(1)] = value
    return {pair["Key"]: pair.get("Value", "") for pair in pairs.values() if "Key" in pair}


def rewrite_describe(data, state, now):
    """Leave out instances not yet visible and show young ones as pending."""
    root = ET.fromstring(data)
    ns = _namespace(root)
    for reservations in root.iter(_tag("reservationSet", ns)):
        for reservation in list(reservations.findall(_tag("item", ns))):
            instances = reservation.find(_tag("instancesSet", ns))
            if instances is None:
                continue
            for instance in list(instances.findall(_tag("item", ns))):
                instance_id = instance.findtext(_tag("instanceId", ns))
                if state.invisible(instance_id, now):
                    instances.remove(instance)
                elif state.pending(instance_id, now):
                    status = instance.find(_tag("instanceState", ns))
                    if status is not None and status.findtext(_tag("name", ns)) == "running":
                        status.find(_tag("code", ns)).text = "0"
                        status.find(_tag("name", ns)).text = "pending"
            if not instances.findall(_tag("item", ns)):
                reservations.remove(reservation)
    return _serialize(root)


def launch_offerings(action, fields):
    """The (instance type, subnet) pairs a RunInstances or CreateFleet names."""
    if action == "RunInstances":
        return [(_field(fields, "InstanceType"), _field(fields, "SubnetId"))]
    pairs = {}
    for name, value in fields:
        parts = name.split(".")
        if len(parts) == 5 and parts[0] == "LaunchTemplateConfigs" and parts[2] == "Overrides":
            pairs.setdefault((parts[1], int(parts[3])), {})[parts[4]] = value
    return [(pairs[k].get("InstanceType"), pairs[k].get("SubnetId")) for k in sorted(pairs)]


def offering_refused(state, offering):
    instance_type, subnet_id = offering
    return any(
        (r_type is None or r_type == instance_type) and (r_subnet is None or r_subnet == subnet_id)
        for r_type, r_subnet in state.refused_offerings
    )


def offering_errors_xml(offerings, code, message):
    """A CreateFleet ``errorSet`` with one error per refused override."""
    items = "".join(
        "<item><launchTemplateAndOverrides><overrides><instanceType>%s</instanceType><subnetId>%s</subnetId>"
        "</overrides></launchTemplateAndOverrides><lifecycle>spot</lifecycle><errorCode>%s</errorCode>"
        "<errorMessage>%s</errorMessage></item>" % (_escape(t or ""), _escape(s or ""), code, _escape(message))
        for t, s in offerings
    )
    return "<errorSet>%s</errorSet>" % items


def _first_override(fields):
    spec = {}
    overrides = {}
    for key, value in fields:
        if key.startswith("LaunchTemplateConfigs.1.LaunchTemplateSpecification."):
            spec[key.rsplit(".", 1)[1]] = value
        if key.startswith("LaunchTemplateConfigs.1.Overrides.1.") and key.count(".") == 4:
            overrides[key.rsplit(".", 1)[1]] = value
    return spec, overrides


def fleet_errors_xml(fields, lifecycle, code, message):
    """A CreateFleet ``errorSet`` with one error for the first override (EC2 reports one per failed attempt)."""
    spec, overrides = _first_override(fields)

    def lower(name):
        return name[0].lower() + name[1:]

    spec_xml = "".join("<%s>%s</%s>" % (lower(k), _escape(v), lower(k)) for k, v in sorted(spec.items()))
    over_xml = "".join("<%s>%s</%s>" % (lower(k), _escape(v), lower(k)) for k, v in sorted(overrides.items()))
    item = (
        "<item><launchTemplateAndOverrides><launchTemplateSpecification>%s</launchTemplateSpecification>"
        "<overrides>%s</overrides></launchTemplateAndOverrides><lifecycle>%s</lifecycle><errorCode>%s</errorCode>"
        "<errorMessage>%s</errorMessage></item>" % (spec_xml, over_xml, lifecycle, code, _escape(message))
    )
    return "<errorSet>%s</errorSet>" % item


def add_fleet_errors(data, errors_xml):
    root = ET.fromstring(data)
    ns = _namespace(root)
    for old in root.findall(_tag("errorSet", ns)):
        root.remove(old)
    errors = ET.fromstring(errors_xml.replace("<errorSet>", '<errorSet xmlns="%s">' % ns, 1))
    root.append(errors)
    return _serialize(root)


def empty_fleet_xml(errors_xml):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<CreateFleetResponse xmlns="%s"><requestId>%s</requestId>'
        "<fleetId>fleet-%s</fleetId>%s<fleetInstanceSet/></CreateFleetResponse>"
        % (EC2_NS, uuid.uuid4(), uuid.uuid4(), errors_xml)
    ).encode("utf-8")


# --- spot price history, played ----------------------------------------------------------

LINUX = "Linux/UNIX"
PRICE_PAGE_SIZE = 1000
# Filters of DescribeSpotPriceHistory (service model, ``Filters``) that the proxy matches, and the
# request member each one reads in a played record.
PRICE_FILTERS = {
    "availability-zone": "AvailabilityZone",
    "instance-type": "InstanceType",
    "product-description": "ProductDescription",
    "spot-price": "SpotPrice",
}
# Known to EC2 but not played: refused by name rather than silently ignored.
UNPLAYED_PRICE_FILTERS = ("availability-zone-id", "timestamp")


def parse_time(text):
    """An ISO 8601 time as botocore sends it (``2030-01-07T08:00:00Z``, optional fraction) -> aware UTC."""
    when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def format_time(when):
    """EC2's timestamp format: milliseconds and ``Z``."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (when.microsecond // 1000)


def played_price(arg):
    """The series key, time and price of one ``POST /_proxy/spot-price``; ValueError names what is wrong."""
    instance_type, zone = arg("instance_type"), arg("zone")
    if not instance_type or not zone:
        raise ValueError("instance_type and zone are required")
    try:
        price = float(arg("price", ""))
    except ValueError:
        raise ValueError("price must be a number (USD per instance-hour)") from None
    if not math.isfinite(price) or price <= 0:
        raise ValueError("price must be a positive number (USD per instance-hour)")
    if arg("at"):
        at = parse_time(arg("at"))  # ValueError for a bad time
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return (instance_type, zone, arg("product") or LINUX), at, price


def _wildcard(pattern):
    """An EC2 filter value as a regular expression: ``*`` any run, ``?`` one character, ``\\`` escapes."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _members(fields, prefix):
    """The values of a query-protocol list (``prefix.1``, ``prefix.2``, ...) in order."""
    found = []
    for key, value in fields:
        head, _dot, index = key.rpartition(".")
        if head == prefix and index.isdigit():
            found.append((int(index), value))
    return [value for _index, value in sorted(found)]


def _filters(fields):
    """``Filter.N.Name`` / ``Filter.N.Value.M`` -> ``[(name, [values])]``."""
    names, values = {}, {}
    for key, value in fields:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "Filter" and parts[2] == "Name":
            names[int(parts[1])] = value
        elif len(parts) == 4 and parts[0] == "Filter" and parts[2] == "Value":
            values.setdefault(int(parts[1]), []).append((int(parts[3]), value))
    return [(names[n], [v for _m, v in sorted(values.get(n, []))]) for n in sorted(names)]


def _price_token(fields):
    """What a NextToken is bound to: the request without its pagination members."""
    kept = sorted((k, v) for k, v in fields if k not in ("NextToken", "MaxResults"))
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def price_history(played, fields):
    """Answer DescribeSpotPriceHistory from played series: ``(records, next_token)``.

    ``played`` is ``{(instance_type, zone, product): {time: price}}``. Each series is cut to
    [StartTime, EndTime] and starts with the price in force at StartTime, the last change at or
    before it, as EC2 documents for this call. No StartTime: from the first played
    point; no EndTime: to the last. Records are in chronological order (oldest first), then by
    type, zone and product.
    """
    if _field(fields, "DryRun", "false").lower() == "true":
        raise Refusal("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
    if _field(fields, "AvailabilityZoneId"):
        raise Refusal("InvalidParameterValue", "AvailabilityZoneId is not played by the ParkingSpot proxy")
    wanted = []  # (request member, [patterns]): a record must match one pattern of each
    for member, prefix in (("InstanceType", "InstanceType"), ("ProductDescription", "ProductDescription")):
        values = _members(fields, prefix)
        if values:
            wanted.append((member, [re.compile(re.escape(v) + r"\Z") for v in values]))
    if _field(fields, "AvailabilityZone"):
        wanted.append(("AvailabilityZone", [re.compile(re.escape(_field(fields, "AvailabilityZone")) + r"\Z")]))
    for name, values in _filters(fields):
        if name in UNPLAYED_PRICE_FILTERS:
            raise Refusal("InvalidParameterValue", "The filter '%s' is not played by the ParkingSpot proxy" % name)
        if name not in PRICE_FILTERS:
            raise Refusal("InvalidParameterValue", "The filter '%s' is invalid" % name)
        wanted.append((PRICE_FILTERS[name], [_wildcard(v) for v in values]))
    try:
        start = parse_time(_field(fields, "StartTime")) if _field(fields, "StartTime") else None
        end = parse_time(_field(fields, "EndTime")) if _field(fields, "EndTime") else None
    except ValueError as exc:
        raise Refusal("InvalidParameterValue", "Invalid time: %s" % exc) from None
    if start and end and start > end:
        raise Refusal("InvalidParameterValue", "StartTime must not be later than EndTime")
    records = []
    for (instance_type, zone, product), series in played.items():
        points = sorted(series.items())
        kept = [(at, price) for at, price in points if (start is None or at > start) and (end is None or at <= end)]
        in_force = [(at, price) for at, price in points if start is not None and at <= start]
        if in_force:
            kept.insert(0, in_force[-1])
        for at, price in kept:
            record = {
                "InstanceType": instance_type,
                "AvailabilityZone": zone,
                "ProductDescription": product,
                "SpotPrice": "%.6f" % price,
                "Timestamp": at,
            }
            if all(any(p.match(record[member]) for p in patterns) for member, patterns in wanted):
                records.append(record)
    records.sort(key=lambda r: (r["Timestamp"], r["InstanceType"], r["AvailabilityZone"], r["ProductDescription"]))
    try:
        size = int(_field(fields, "MaxResults", PRICE_PAGE_SIZE))
    except ValueError:
        size = 0
    if size < 1:
        raise Refusal("InvalidParameterValue", "MaxResults must be a positive integer")
    offset, token = 0, _field(fields, "NextToken")
    if token:
        try:
            bound, offset = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            offset = int(offset)
        except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
            bound = None
        if bound != _price_token(fields) or not 0 <= offset <= len(records):
            raise Refusal("InvalidParameterValue", "The NextToken is not valid for this request")
    page = records[offset : offset + size]
    following = None
    if offset + size < len(records):
        following = base64.urlsafe_b64encode(json.dumps([_price_token(fields), offset + size]).encode()).decode()
    return page, following


def price_history_xml(records, next_token):
    """A DescribeSpotPriceHistory response with the element names of the service model."""
    items = "".join(
        "<item><instanceType>%s</instanceType><productDescription>%s</productDescription><spotPrice>%s</spotPrice>"
        "<timestamp>%s</timestamp><availabilityZone>%s</availabilityZone></item>"
        % (
            _escape(r["InstanceType"]),
            _escape(r["ProductDescription"]),
            r["SpotPrice"],
            format_time(r["Timestamp"]),
            _escape(r["AvailabilityZone"]),
        )
        for r in records
    )
    token = "<nextToken>%s</nextToken>" % next_token if next_token else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeSpotPriceHistoryResponse xmlns="%s"><requestId>%s</requestId>'
        "<spotPriceHistorySet>%s</spotPriceHistorySet>%s</DescribeSpotPriceHistoryResponse>"
        % (EC2_NS, uuid.uuid4(), items, token)
    ).encode("utf-8")


def _set_field(fields, name, value):
    return [(k, str(value) if k == name else v) for k, v in fields]


def _field(fields, name, default=None):
    for key, value in fields:
        if key == name:
            return value
    return default


def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, code, body, content_type="application/json"):
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _control(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)

            def arg(name, default=None):
                return (query.get(name) or [default])[0]

            if url.path == "/_proxy/counts":
                with state.lock:
                    return self._reply(200, json.dumps(dict(state.counts), sort_keys=True))
            if url.path == "/_proxy/calls":
                since = float(arg("since", "0"))
                with state.lock:
                    return self._reply(200, json.dumps([c for c in state.calls if c["at"] >= since]))
            if url.path == "/_proxy/refusals":
                with state.lock:
                    return self._reply(200, json.dumps(dict(state.refusals), sort_keys=True))
            if url.path == "/_proxy/reset":
                with state.lock:
                    state.counts.clear()
                    state.calls.clear()
                    state.refusals.clear()
                    state.tokens.clear()
                    state.token_params.clear()
                    state.reset_behaviour()
                return self._reply(200, "{}")
            if url.path == "/_proxy/delay":
                state.delays[arg("action")] = float(arg("seconds", "0"))
                return self._reply(200, json.dumps(state.delays))
            if url.path == "/_proxy/spot":
                state.spot_available = arg("available", "1") not in ("0", "false", "no")
                state.spot_code = arg("code", "InsufficientInstanceCapacity")
                state.spot_limit = int(arg("limit")) if arg("limit") is not None else None
                return self._reply(200, json.dumps({"spot_available": state.spot_available, "limit": state.spot_limit}))
            if url.path == "/_proxy/fleet":
                state.fleet_limit = int(arg("instances")) if arg("instances") is not None else None
                state.fleet_code = arg("code", "InsufficientInstanceCapacity")
                state.fleet_message = arg("message") or CAPACITY_MESSAGES.get(state.fleet_code, state.fleet_code)
                return self._reply(200, json.dumps({"instances": state.fleet_limit, "code": state.fleet_code}))
            if url.path == "/_proxy/offering":
                pair = (arg("instance_type"), arg("subnet_id"))
                with state.lock:
                    if arg("available", "0") in ("0", "false", "no"):
                        state.refused_offerings.add(pair)
                    else:
                        state.refused_offerings.discard(pair)
                    return self._reply(200, json.dumps(sorted(map(list, state.refused_offerings), key=str)))
            if url.path == "/_proxy/spot-price":
                try:
                    key, at, price = played_price(arg)
                except ValueError as exc:
                    return self._reply(400, json.dumps({"error": str(exc)}))
                with state.lock:
                    state.spot_prices.setdefault(key, {})[at] = price
                    points = sum(len(series) for series in state.spot_prices.values())
                    return self._reply(200, json.dumps({"series": len(state.spot_prices), "points": points}))
            if url.path == "/_proxy/refused":
                with state.lock:
                    return self._reply(200, json.dumps(state.refused_log))
            if url.path == "/_proxy/consistency":
                state.invisible_seconds = float(arg("invisible", "0"))
                state.pending_seconds = float(arg("pending", "0"))
                return self._reply(200, json.dumps({"invisible": state.invisible_seconds}))
            return self._reply(404, "{}")

        def _forward(self):
            if self.path.startswith("/_proxy/"):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                return self._control()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            action = _action(self.headers, body)
            call = {"at": time.time(), "action": action}
            with state.lock:
                state.counts[action] += 1
                state.calls.append(call)
            fields = [] if self.headers.get("X-Amz-Target") else _fields(body)
            try:
                status, headers, data = self._handle(action, body, fields)
            except Refusal as refusal:
                with state.lock:
                    state.refusals[refusal.code] += 1
                    call["status"] = 400
                return self._reply(400, error_xml(refusal.code, refusal.message), "text/xml")
            with state.lock:
                call["status"] = status
                if status == 200 and action in ("RunInstances", "CreateFleet"):
                    call["instances"] = launched_ids(action, data)
                    call["tags"] = request_tags(fields)
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, action, body, fields):
            if state.strict:
                check_request(action, fields)
                self._check_visibility(action, fields)
            if state.delays.get(action):
                time.sleep(state.delays[action])
            token = _client_token(action, body)
            if not token:
                return self._call(action, body, fields)
            with state.token_lock(token):
                if token in state.tokens:
                    if state.strict and state.token_params[token] != _token_params(fields):
                        raise Refusal(
                            "IdempotentParameterMismatch",
                            "The client token you have provided is associated with a resource that is already"
                            " deleted or was created with other parameters",
                        )
                    return state.tokens[token]
                outcome = self._call(action, body, fields)
                if outcome[0] == 200:  # a failed call does not use up its token
                    state.tokens[token] = outcome
                    state.token_params[token] = _token_params(fields)
                return outcome

        def _check_visibility(self, action, fields):
            if action not in ("DescribeInstances", "CreateTags", "AttachVolume"):
                return
            now = time.monotonic()
            named = [v for k, v in fields if re.match(r"^(InstanceId(\.\d+)?|ResourceId\.\d+)$", k)]
            hidden = sorted(i for i in named if state.invisible(i, now))
            if hidden:
                raise Refusal(
                    "InvalidInstanceID.NotFound",
                    "The instance ID%s '%s' do%s not exist"
                    % ("s" if len(hidden) > 1 else "", ", ".join(hidden), "" if len(hidden) > 1 else "es"),
                )
            if action == "AttachVolume":
                instance_id = _field(fields, "InstanceId")
                current = "pending" if state.pending(instance_id, now) else self._instance_state(instance_id)
                if current is not None and current not in ATTACHABLE_STATES:
                    raise Refusal("IncorrectState", "Instance '%s' is not 'running'." % instance_id)

        def _instance_state(self, instance_id):
            query = urllib.parse.urlencode(
                {"Action": "DescribeInstances", "Version": "2016-11-15", "InstanceId.1": instance_id}
            ).encode()
            status, _headers, data = self._upstream(query)
            if status != 200:
                return None
            root = ET.fromstring(data)
            ns = _namespace(root)
            found = root.find(".//%s/%s" % (_tag("instanceState", ns), _tag("name", ns)))
            return found.text if found is not None else None

        def _call(self, action, body, fields):
            if action == "DescribeSpotPriceHistory" and state.spot_prices:
                with state.lock:
                    played = {key: dict(series) for key, series in state.spot_prices.items()}
                records, next_token = price_history(played, fields)
                return 200, [("Content-Type", "text/xml")], price_history_xml(records, next_token)
            spot = _is_spot_launch(action, body)
            if spot and state.refused_offerings and action in ("RunInstances", "CreateFleet"):
                hit = [o for o in launch_offerings(action, fields) if offering_refused(state, o)]
                if hit:
                    code = "InsufficientInstanceCapacity"
                    message = CAPACITY_MESSAGES.get(code, code)
                    with state.lock:
                        state.refused += 1
                        state.refused_log += [list(o) for o in hit]
                    if action == "RunInstances":
                        return 400, [("Content-Type", "text/xml")], error_xml(code, message).encode()
                    return 200, [("Content-Type", "text/xml")], empty_fleet_xml(offering_errors_xml(hit, code, message))
            if not state.spot_available and spot and not (state.strict and self._instant(action, fields)):
                with state.lock:
                    state.refused += 1
                message = CAPACITY_MESSAGES.get(state.spot_code, state.spot_code)
                return 400, [("Content-Type", "text/xml")], error_xml(state.spot_code, message).encode()
            if action == "RunInstances":
                minimum = int(_field(fields, "MinCount", "1"))
                maximum = int(_field(fields, "MaxCount", "1"))
                if spot and state.spot_limit is not None:
                    if minimum > state.spot_limit:
                        message = CAPACITY_MESSAGES.get(state.spot_code, state.spot_code)
                        return 400, [("Content-Type", "text/xml")], error_xml(state.spot_code, message).encode()
                    maximum = min(maximum, state.spot_limit)
                if minimum != maximum:
                    # EC2 launches what it can up to MaxCount; moto launches MinCount, so both get it.
                    fields = _set_field(_set_field(fields, "MaxCount", maximum), "MinCount", maximum)
                    body = urllib.parse.urlencode(fields).encode()
            if action == "CreateFleet" and self._instant(action, fields):
                return self._instant_fleet(body, fields, spot)
            status, headers, data = self._upstream(body)
            if status == 200 and action == "RunInstances":
                self._note_launch(action, data)
            if status == 200 and action == "DescribeInstances" and state.launched:
                data = rewrite_describe(data, state, time.monotonic())
            return status, headers, data

        def _instant(self, action, fields):
            return action == "CreateFleet" and _field(fields, "Type") == "instant"

        def _instant_fleet(self, body, fields, spot):
            wanted = int(_field(fields, "TargetCapacitySpecification.TotalTargetCapacity", "0"))
            limit, code, message = None, None, None
            if state.fleet_limit is not None:
                limit, code, message = state.fleet_limit, state.fleet_code, state.fleet_message
            if spot and (not state.spot_available or state.spot_limit is not None):
                spot_limit = 0 if not state.spot_available else state.spot_limit
                if limit is None or spot_limit < limit:
                    limit, code = spot_limit, state.spot_code
                    message = CAPACITY_MESSAGES.get(code, code)
            if limit is None or limit >= wanted:
                status, headers, data = self._upstream(body)
                if status == 200:
                    self._note_launch("CreateFleet", data)
                return status, headers, data
            lifecycle = "spot" if spot else "on-demand"
            errors = fleet_errors_xml(fields, lifecycle, code, message)
            if limit <= 0:
                return 200, [("Content-Type", "text/xml")], empty_fleet_xml(errors)
            for name in (
                "TargetCapacitySpecification.TotalTargetCapacity",
                "TargetCapacitySpecification.SpotTargetCapacity",
                "TargetCapacitySpecification.OnDemandTargetCapacity",
            ):
                if _field(fields, name) is not None:
                    fields = _set_field(fields, name, min(int(_field(fields, name)), limit))
            status, headers, data = self._upstream(urllib.parse.urlencode(fields).encode())
            if status != 200:
                return status, headers, data
            self._note_launch("CreateFleet", data)
            return status, headers, add_fleet_errors(data, errors)

        def _note_launch(self, action, data):
            if not (state.invisible_seconds or state.pending_seconds):
                return
            now = time.monotonic()
            with state.lock:
                for instance_id in launched_ids(action, data):
                    state.launched[instance_id] = now

        def _upstream(self, body):
            connection = http.client.HTTPConnection(state.host, state.port, timeout=300)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "content-length")
            }
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = [
                (key, value)
                for key, value in response.getheaders()
                if key.lower() not in ("transfer-encoding", "connection", "content-length")
            ]
            connection.close()
            return response.status, kept, data

        do_GET = _forward
        do_POST = _forward
        do_PUT = _forward
        do_DELETE = _forward
        do_HEAD = _forward

    return Handler


def start(upstream, strict=True):
    """Start the proxy on a free 127.0.0.1 port; returns (server, url, state)."""
    state = ProxyState(upstream, strict=strict)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1], state
