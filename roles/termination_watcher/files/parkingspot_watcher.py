# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ParkingSpot termination watcher.

Polls the EC2 instance metadata service (IMDSv2 only) for spot interruption notices,
rebalance recommendations, scheduled maintenance and Auto Scaling lifecycle changes.
On a notice it flips its health endpoint to 503, runs the hooks in the hooks directory in
name order within a deadline taken from the notice, once per notice lifecycle; when the
notice is withdrawn, canceled or completed it runs the hooks' undo scripts and answers 200
again. Optionally posts a webhook; exposes Prometheus metrics. Standard library only; runs
on Python 3.8 and later.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not any("https:" in arg for arg in sys.argv[1:]):
    # With no https URL to talk to, keep OpenSSL out of the process: http.client imports ssl
    # whenever it can, and that alone adds about 6 MiB of resident memory. Hooks are separate
    # processes and are not affected.
    sys.modules.setdefault("ssl", None)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import socketserver  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from datetime import datetime  # noqa: E402
from datetime import timezone  # noqa: E402

LOG = logging.getLogger("parkingspot-watcher")

EVENTS = ("interruption", "rebalance", "maintenance", "lifecycle")
RESPONSES = ("drain", "notify", "ignore")
DEFAULT_RESPONSES = {"interruption": "drain", "lifecycle": "drain", "rebalance": "notify", "maintenance": "notify"}
PATHS = {
    "interruption": "/latest/meta-data/spot/instance-action",
    "rebalance": "/latest/meta-data/events/recommendations/rebalance",
    "maintenance": "/latest/meta-data/events/maintenance/scheduled",
    "lifecycle": "/latest/meta-data/autoscaling/target-lifecycle-state",
}
# instance-action is read on every poll; one secondary path per poll keeps the steady rate
# at two requests per poll. Lifecycle (which also drains) comes round twice as often.
SECONDARY_ROTATION = ("lifecycle", "rebalance", "lifecycle", "maintenance")
TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
IGNORED_SUFFIXES = (".timeout", ".undo", ".disabled", ".conf", ".md", ".txt", "~")
IDENTITY_PATH = "/latest/dynamic/instance-identity/document"
# A hook that starts with no time left before the notice's end still gets this long.
LATE_HOOK_SECONDS = 2.0
TIMEOUT_MARKER = "parkingspot-timeout:"


class _Closed(Exception):
    """The server closed the connection."""


class IMDSError(Exception):
    """A metadata request failed; kind is a short label used in metrics."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------- event sources
# A source turns one IMDS answer into an observation (state, info): state is "present",
# "absent", "completed" or "canceled"; info holds the notice's action, its time ("at", epoch
# seconds, or None when IMDS gives none) and, for scheduled events, the event id.

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ABSENT = ("absent", None)


def parse_iso(value):
    """Parse an IMDS ISO 8601 UTC time ('2017-09-18T08:22:00Z') to epoch seconds."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_maintenance_time(value):
    """Parse the scheduled-events layout ('2 Jan 2006 15:04:05 GMT', day without a leading zero)."""
    parts = value.split()
    if len(parts) != 5 or parts[4] != "GMT" or parts[1] not in MONTHS:
        raise ValueError(f"not a scheduled-event time: {value!r}")
    hour, minute, second = (int(p) for p in parts[3].split(":"))
    month = MONTHS.index(parts[1]) + 1
    return datetime(int(parts[2]), month, int(parts[0]), hour, minute, second, tzinfo=timezone.utc).timestamp()


def format_iso(epoch):
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_source(kind, status, body):
    """One IMDS answer of one notice kind as an observation. Raises ValueError on a payload it cannot read."""
    if status == 404 or not body.strip():
        return ABSENT
    if kind == "interruption":
        data = json.loads(body)
        if not isinstance(data, dict) or "action" not in data or "time" not in data:
            raise ValueError("instance-action without action/time")
        return "present", {"action": str(data["action"]), "at": parse_iso(str(data["time"]))}
    if kind == "rebalance":
        data = json.loads(body)
        if not isinstance(data, dict) or "noticeTime" not in data:
            raise ValueError("rebalance recommendation without noticeTime")
        return "present", {"action": "rebalance", "at": parse_iso(str(data["noticeTime"]))}
    if kind == "maintenance":
        data = json.loads(body)
        if not isinstance(data, list):
            raise ValueError("scheduled maintenance is not a list")
        events = [e for e in data if isinstance(e, dict)]
        active = [e for e in events if e.get("State", "active") == "active"]
        if active:
            first = min(active, key=lambda e: parse_maintenance_time(str(e.get("NotBefore", ""))))
            return "present", {
                "action": str(first.get("Code", "maintenance")),
                "at": parse_maintenance_time(str(first["NotBefore"])),
                "event_id": str(first.get("EventId", "")),
            }
        states = {e.get("State") for e in events}
        # Completed and canceled events stay listed for a while after they end.
        if "completed" in states:
            return "completed", None
        if "canceled" in states:
            return "canceled", None
        return ABSENT
    if kind == "lifecycle":
        if body.strip() == "Terminated":
            return "present", {"action": "terminate", "at": None}
        return ABSENT  # InService, Warmed:*, Pending...
    raise ValueError(f"unknown event {kind}")


# ---------------------------------------------------------------------------- lifecycle
# One episode per phase ("drain", or the event name of a notify response): detected ->
# draining -> done, and from any of these to withdrawn (the cause went away or was canceled
# before its time) or completed (the cause completed, or went away after its time: the
# instance outlived it, e.g. after a maintenance reboot). Every kind that maps to the phase
# joins the same episode, and a new time for a kind already in it moves the deadline: the
# hooks of an episode run once. These functions only change plain dicts; the Watcher does
# the I/O.

ACTIVE = ("detected", "draining", "done")


def make_cause(kind, info, first_seen, budget, margin):
    """One cause's times: 'at' (the notice's own), 'end' (when the instance goes), 'deadline' (end - margin)."""
    at = info.get("at")
    if kind == "interruption":
        end = at
    elif kind == "lifecycle":
        at = first_seen
        end = first_seen + budget
    else:  # rebalance, maintenance: a budget from the notice, or from when we saw it if that is later
        end = max(at, first_seen) + budget
    return {
        "action": info["action"],
        "at": at,
        "notice_time": format_iso(at),
        "event_id": info.get("event_id", ""),
        "first_seen": first_seen,
        "end": end,
        "deadline": end - margin,
        "confirmed": True,
    }


def primary_cause(episode):
    """(kind, cause) of the cause that ends first."""
    return min(episode["causes"].items(), key=lambda item: (item[1]["end"], item[0]))


def _refresh(episode):
    _kind, cause = primary_cause(episode)
    episode["end"] = cause["end"]
    episode["deadline"] = cause["deadline"]


def end_reason(state, episode, cause, now):
    """completed when IMDS says so, or when the cause went away after its time or after a reboot
    that came since it was detected; withdrawn otherwise (and on cancel)."""
    if state == "canceled":
        return "withdrawn"
    if state == "completed" or now >= cause["end"] or episode.get("rebooted"):
        return "completed"
    return "withdrawn"


def observe(episode, kind, state, info, now, budget, margin):
    """Fold one observation into a phase's episode. Returns (episode, effect); effect is None or one of
    detected, joined, moved, confirmed, left, withdrawn, completed."""
    present = state == "present"
    if episode is None or episode["state"] not in ACTIVE:
        if not present:
            return episode, None
        episode = {
            "phase": None,
            "state": "detected",
            "detected": now,
            "causes": {kind: make_cause(kind, info, now, budget, margin)},
            "hooks": {},
            "undo": {},
        }
        _refresh(episode)
        return episode, "detected"
    cause = episode["causes"].get(kind)
    if present:
        if cause is None:
            episode["causes"][kind] = make_cause(kind, info, now, budget, margin)
            _refresh(episode)
            return episode, "joined"
        fresh = make_cause(kind, info, cause["first_seen"], budget, margin)
        confirmed = cause["confirmed"]
        changed = any(fresh[k] != cause[k] for k in ("action", "at", "event_id", "end"))
        episode["causes"][kind] = fresh
        _refresh(episode)
        if not confirmed:
            return episode, "confirmed"
        return episode, ("moved" if changed else None)
    if cause is None:
        return episode, None
    if len(episode["causes"]) > 1:
        del episode["causes"][kind]
        _refresh(episode)
        return episode, "left"
    # The last cause stays in the ended episode: its undo scripts are told what it was.
    episode["state"] = end_reason(state, episode, cause, now)
    episode["ended"] = now
    episode["undo_done"] = False
    return episode, episode["state"]


def shows_503(episode, now, grace):
    """An active drain answers 503; one restored from the state file only until grace past its end,
    unless a poll has seen its cause again."""
    if episode is None or episode["state"] not in ACTIVE:
        return False
    if any(c["confirmed"] for c in episode["causes"].values()):
        return True
    return now < episode["end"] + grace


def hook_window(episode, now):
    """(deadline, seconds left) for a hook starting now: the deadline less the safety margin while it
    lies ahead, else whatever is left before the notice's end (a notice that came late still runs its
    hooks, in order, with the time there is)."""
    deadline = episode["deadline"] if episode["deadline"] > now else episode["end"]
    return deadline, max(0.0, deadline - now)


def hook_environment(episode, identity, lifecycle, now, timeout):
    """The PARKINGSPOT_* variables of a hook or undo run; every time is RFC3339 except the epoch DEADLINE."""
    kind, cause = primary_cause(episode)
    deadline, left = hook_window(episode, now)
    return {
        "PARKINGSPOT_EVENT": kind,
        "PARKINGSPOT_EVENTS": ",".join(sorted(episode["causes"])),
        "PARKINGSPOT_ACTION": cause["action"],
        "PARKINGSPOT_PHASE": episode["phase"],
        "PARKINGSPOT_LIFECYCLE": lifecycle,
        "PARKINGSPOT_NOTICE_TIME": cause["notice_time"],
        "PARKINGSPOT_DETECTED_TIME": format_iso(episode["detected"]),
        "PARKINGSPOT_END_TIME": format_iso(episode["end"]),
        "PARKINGSPOT_DEADLINE": str(int(deadline)),
        "PARKINGSPOT_DEADLINE_TIME": format_iso(deadline),
        "PARKINGSPOT_SECONDS_LEFT": str(int(left)),
        "PARKINGSPOT_HOOK_TIMEOUT": str(int(timeout)),
        "PARKINGSPOT_INSTANCE_ID": identity.get("instance_id", ""),
        "PARKINGSPOT_INSTANCE_TYPE": identity.get("instance_type", ""),
        "PARKINGSPOT_AVAILABILITY_ZONE": identity.get("zone", ""),
        "PARKINGSPOT_REGION": identity.get("region", ""),
        "PARKINGSPOT_PRIVATE_IP": identity.get("private_ip", ""),
    }


# ---------------------------------------------------------------------------- helpers


def parse_responses(items):
    """Parse ['rebalance=drain', ...] into a full event -> response map."""
    result = dict(DEFAULT_RESPONSES)
    for item in items or ():
        event, sep, response = item.partition("=")
        event, response = event.strip(), response.strip()
        if not sep or event not in EVENTS or response not in RESPONSES:
            events, responses = "|".join(EVENTS), "|".join(RESPONSES)
            raise ValueError(f"--on expects EVENT=RESPONSE (EVENT: {events}; RESPONSE: {responses}), got {item!r}")
        result[event] = response
    return result


def phase_for(kind, responses):
    """The phase a notice kind feeds: "drain", its own notify phase, or None when ignored."""
    response = responses[kind]
    if response == "ignore":
        return None
    return "drain" if response == "drain" else kind


def parse_identity(body):
    """The fields hooks and webhooks carry, from the instance identity document."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("identity document is not an object")
    fields = {
        "instance_id": "instanceId",
        "instance_type": "instanceType",
        "zone": "availabilityZone",
        "region": "region",
        "private_ip": "privateIp",
    }
    return {ours: str(data[theirs]) for ours, theirs in fields.items() if data.get(theirs)}


def boot_time():
    """When the machine booted (epoch seconds), or 0 when unknown."""
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


def list_hooks(directory):
    """Executable regular files in directory, in name order (hidden and helper files skipped)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    hooks = []
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
            continue
        if os.path.isfile(path) and os.access(path, os.X_OK):
            hooks.append(path)
    return hooks


def hook_timeout(path, default):
    """A hook's own timeout: '<hook>.timeout' file, else a 'parkingspot-timeout: N' comment."""
    try:
        with open(path + ".timeout") as handle:
            return max(1.0, float(handle.read().strip()))
    except (OSError, ValueError):
        pass
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return default
    for line in head.splitlines():
        if TIMEOUT_MARKER in line:
            try:
                return max(1.0, float(line.split(TIMEOUT_MARKER, 1)[1].split()[0]))
            except (IndexError, ValueError):
                return default
    return default


def http_call(url, timeout, method="GET", body=None, headers=None):
    """One HTTP(S) request without urllib.request (which pulls in much more of the stdlib); returns the
    status. http.client (and the email package under it) is imported only when a URL is configured;
    its errors come out as OSError."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


class RateLimitedLog:
    """Logs the first occurrence of a message key, then at most once per interval with a count."""

    def __init__(self, interval=60.0):
        self.interval = interval
        self.seen = {}

    def warning(self, key, message, *args):
        now = time.monotonic()
        last, count = self.seen.get(key, (None, 0))
        if last is None or now - last >= self.interval:
            suffix = f" ({count} similar messages suppressed)" if count else ""
            LOG.warning(message + suffix, *args)
            self.seen[key] = (now, 0)
        else:
            self.seen[key] = (last, count + 1)

    def clear(self, key):
        self.seen.pop(key, None)


# ---------------------------------------------------------------------------- metrics


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.counters = {}
        self.gauges = {}

    def inc(self, name, labels=(), value=1.0):
        with self.lock:
            key = (name, tuple(labels))
            self.counters[key] = self.counters.get(key, 0.0) + value

    def set(self, name, labels=(), value=0.0):
        with self.lock:
            self.gauges[(name, tuple(labels))] = value

    def get(self, name, labels=()):
        with self.lock:
            key = (name, tuple(labels))
            return self.counters.get(key, self.gauges.get(key, 0.0))

    def render(self):
        lines = []
        with self.lock:
            items = [(k, v, "counter") for k, v in self.counters.items()]
            items += [(k, v, "gauge") for k, v in self.gauges.items()]
        typed = set()
        for (name, labels), value, kind in sorted(items, key=lambda i: (i[0][0], i[0][1])):
            if name not in typed:
                lines.append(f"# TYPE {name} {kind}")
                typed.add(name)
            label_text = ",".join(
                '{}="{}"'.format(k, str(v).replace("\\", "\\\\").replace('"', '\\"')) for k, v in labels
            )
            lines.append("{}{} {}".format(name, f"{{{label_text}}}" if label_text else "", repr(float(value))))
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- IMDS client


class IMDSClient:
    """IMDSv2 client: one token, refreshed before it expires, one kept-alive connection."""

    def __init__(self, base_url, timeout, token_ttl, metrics):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"--imds-url must be an http:// URL, got {base_url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.timeout = timeout
        self.token_ttl = token_ttl
        self.metrics = metrics
        self.conn = None
        self.buffer = b""
        self.token = None
        self.token_expires = 0.0
        self.lock = threading.Lock()  # the poll loop and the hook worker share one connection

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.buffer = b""

    # The metadata client speaks the small part of HTTP/1.1 that IMDS needs over one socket.
    # http.client parses every header block with the email package, which made polling cost
    # about 0.45 ms of CPU per request; this costs a fraction of that (see docs/benchmarks.md).
    def _request(self, method, path, headers):
        self.metrics.inc("parkingspot_watcher_imds_requests_total")
        reused = self.conn is not None
        try:
            try:
                return self._exchange(method, path, headers)
            except _Closed:
                if not reused:
                    raise
                self.close()  # the kept-alive connection was closed by the server: one fresh try
                return self._exchange(method, path, headers)
        except ConnectionRefusedError as exc:
            self.close()
            raise IMDSError("refused", f"connection refused by {self.host}:{self.port}: {exc}")
        except _Closed:
            self.close()
            raise IMDSError("connection", f"{method} {path}: connection closed without a response")
        except socket.timeout:
            self.close()
            raise IMDSError("timeout", f"{method} {path} timed out after {self.timeout:.1f}s")
        except OSError as exc:
            self.close()
            raise IMDSError("connection", f"{method} {path} failed: {exc}")
        except ValueError as exc:
            self.close()
            raise IMDSError("protocol", f"{method} {path}: bad HTTP response: {exc}")

    def _exchange(self, method, path, headers):
        if self.conn is None:
            self.conn = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.buffer = b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Content-Length: 0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _sep, rest = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"status line {status_line[:80]!r}")
        fields = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            raise ValueError("chunked responses are not expected from IMDS")
        self.buffer = rest
        if "content-length" in fields:
            length = int(fields["content-length"])
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        else:  # no length: the body ends when the server closes the connection
            try:
                while True:
                    self._fill()
            except _Closed:
                pass
            body, self.buffer = self.buffer, b""
            fields["connection"] = "close"
        if fields.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.close()
        return int(parts[1]), body.decode("utf-8", "replace")

    def _fill(self):
        chunk = self.conn.recv(65536)
        if not chunk:
            raise _Closed()
        self.buffer += chunk

    def _fetch_token(self):
        try:
            status, body = self._request("PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(self.token_ttl)})
        except IMDSError as exc:
            if exc.kind == "timeout":
                raise IMDSError(
                    "token_timeout",
                    "IMDSv2 token request timed out; if this runs in a container or "
                    "behind a proxy, the instance's metadata hop limit (HttpPutResponseHopLimit) is "
                    "probably too low: raise it to 2",
                )
            raise
        if status != 200 or not body.strip():
            if status == 403:
                raise IMDSError(
                    "token_forbidden",
                    "IMDS refused the token request (403): is the metadata "
                    "service disabled for this instance (HttpEndpoint=disabled)?",
                )
            raise IMDSError("token_status", f"IMDSv2 token request answered HTTP {status}")
        self.token = body.strip()
        # Refresh at 80% of the TTL (at least one second early) so a poll never uses a dying token.
        self.token_expires = time.monotonic() + max(0.5, min(self.token_ttl * 0.8, self.token_ttl - 1))
        self.metrics.inc("parkingspot_watcher_imds_tokens_total")

    def get(self, path):
        """GET a metadata path with a valid token; returns (status, body). Never sends a tokenless GET."""
        with self.lock:
            return self._get(path)

    def _get(self, path):
        for attempt in (1, 2):
            if self.token is None or time.monotonic() >= self.token_expires:
                self._fetch_token()
            status, body = self._request("GET", path, {TOKEN_HEADER: self.token})
            if status == 401:
                self.token = None
                if attempt == 1:
                    continue
                raise IMDSError("unauthorized", f"GET {path} answered 401 even with a fresh token")
            if status >= 500:
                raise IMDSError("server", f"GET {path} answered HTTP {status}")
            if status not in (200, 404):
                raise IMDSError("status", f"GET {path} answered HTTP {status}")
            return status, body
        raise IMDSError("unauthorized", "unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------- state


class StateStore:
    """The episodes, in one JSON file written atomically (version 2; older files are ignored)."""

    HISTORY = 20

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, "notices.json") if directory else None

    def load(self):
        empty = {"version": 2, "episodes": {}, "history": []}
        if not self.path or not os.path.exists(self.path):
            return empty
        try:
            with open(self.path) as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            LOG.warning("state file %s unreadable (%s); starting with empty state", self.path, exc)
            return empty
        if not isinstance(loaded, dict) or loaded.get("version") != 2 or not isinstance(loaded.get("episodes"), dict):
            LOG.warning("state file %s has an older layout; starting with empty state", self.path)
            return empty
        loaded.setdefault("history", [])
        return loaded

    def save(self, data):
        if not self.path:
            return
        tmp = os.path.join(self.directory, f".notices.{os.getpid()}.tmp")
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
                json.dump(data, handle, sort_keys=True)
            # write + rename is atomic for other processes, which is what "at most once across a
            # watcher restart" needs; no fsync: it can stall the first hook for a second on a busy
            # disk, and after a machine crash the notice that started the hooks is gone anyway.
            os.replace(tmp, self.path)
        except OSError as exc:
            LOG.error("cannot write state file %s: %s", self.path, exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------------- the watcher


class Watcher:
    def __init__(self, args):
        self.args = args
        self.responses = parse_responses(args.on)
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.imds = IMDSClient(args.imds_url, args.imds_timeout, args.token_ttl, self.metrics)
        self.store = StateStore(args.state_dir)
        self.work = queue.Queue()
        self.lock = threading.Lock()  # guards self.state (episodes are changed by the poll loop and the worker)
        self.identity = {"instance_id": args.instance_id} if args.instance_id else {}
        self.identity_read = False
        self.ignored = {}
        self.counted = set()
        self.current_proc = None
        self.last_poll = 0.0
        self.errlog = RateLimitedLog(args.error_log_interval)
        self.rotation = 0
        self.state = self.store.load()
        self._restore()

    def _restore(self):
        """Episodes from the state file: active ones wait for a poll to confirm their causes; ended ones
        whose undo scripts did not finish get them run again (each undo script still runs once)."""
        booted = boot_time()
        for phase, episode in list(self.state["episodes"].items()):
            try:
                self._restore_one(phase, episode, booted)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                LOG.warning("state file: %s lifecycle unreadable (%s); dropped", phase, exc)
                self.state["episodes"].pop(phase, None)
        self._gauges()

    def _restore_one(self, phase, episode, booted):
        missing = [k for k in ("state", "detected", "hooks", "undo") if k not in episode]
        for cause in episode["causes"].values():  # what health, hooks and undo scripts read
            missing += [k for k in ("action", "notice_time", "at", "end", "deadline") if k not in cause]
        if missing:
            raise ValueError("missing " + ", ".join(sorted(set(missing))))
        for kind in list(episode["causes"]):
            if kind not in EVENTS or phase_for(kind, self.responses) != phase:
                del episode["causes"][kind]  # --on changed since: that kind feeds another phase now
        if not episode["causes"]:
            del self.state["episodes"][phase]
            return
        _refresh(episode)
        if episode["state"] in ACTIVE:
            episode["rebooted"] = episode.get("rebooted") or booted > episode["detected"]
            for cause in episode["causes"].values():
                cause["confirmed"] = False
            LOG.warning(
                "restored %s lifecycle in state %s (%s) from %s; waiting for IMDS to confirm it",
                phase,
                episode["state"],
                ",".join(sorted(episode["causes"])),
                self.store.path,
            )
        elif not episode.get("undo_done", True):
            self.work.put(("undo", episode))

    def _gauges(self):
        with self.lock:
            drain = self.state["episodes"].get("drain")
            terminating = shows_503(drain, time.time(), self.args.restore_grace)
        self.metrics.set("parkingspot_watcher_terminating", value=1 if terminating else 0)

    # -- health state
    def health(self):
        """(status, body dict) for the health endpoint."""
        now = time.time()
        with self.lock:
            drain = self.state["episodes"].get("drain")
            if shows_503(drain, now, self.args.restore_grace):
                kind, cause = primary_cause(drain)
                body = {
                    "status": "terminating",
                    "state": drain["state"],
                    "event": kind,
                    "events": sorted(drain["causes"]),
                    "action": cause["action"],
                    "notice_time": cause["notice_time"],
                    "deadline": format_iso(drain["deadline"]),
                    "reason": f"{kind} notice seen",
                }
                return 503, body
        if not self.args.app_health_url:
            return 200, {"status": "ok"}
        try:
            code = http_call(self.args.app_health_url, self.args.app_health_timeout)
        except (OSError, ValueError) as exc:
            return 503, {"status": "unhealthy", "reason": f"application health check failed: {exc}"}
        if 200 <= code < 300:
            return 200, {"status": "ok", "app_status": code}
        return 503, {"status": "unhealthy", "reason": f"application health answered {code}", "app_status": code}

    def render_metrics(self):
        self._gauges()  # a restored drain stops answering 503 when its grace runs out, with no event
        if self.last_poll:
            self.metrics.set("parkingspot_watcher_last_poll_age_seconds", value=round(time.time() - self.last_poll, 3))
        return self.metrics.render()

    # -- event sources
    def ensure_identity(self):
        """Instance id, type, zone, region and private IP from the identity document, read once."""
        if self.identity_read:
            return
        try:
            status, body = self.imds.get(IDENTITY_PATH)
            if status == 200:
                self.identity.update(parse_identity(body))
                if self.args.instance_id:
                    self.identity["instance_id"] = self.args.instance_id
            elif not self.identity.get("instance_id"):
                status, body = self.imds.get("/latest/meta-data/instance-id")
                if status == 200:
                    self.identity["instance_id"] = body.strip()
            self.identity_read = True
        except (IMDSError, ValueError) as exc:
            self.errlog.warning("identity", "cannot read the instance identity yet: %s", exc)

    def poll_event(self, kind):
        now = time.time()
        try:
            status, body = self.imds.get(PATHS[kind])
        except IMDSError as exc:
            self.metrics.inc("parkingspot_watcher_imds_errors_total", (("kind", exc.kind),))
            self.errlog.warning("imds:" + exc.kind, "IMDS error on %s: %s", kind, exc)
            return
        self.errlog.clear("imds:refused")
        try:
            state, info = read_source(kind, status, body)
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.inc("parkingspot_watcher_imds_errors_total", (("kind", "parse"),))
            self.errlog.warning("parse:" + kind, "cannot understand %s payload %r: %s", kind, body[:200], exc)
            return
        self.on_observation(kind, state, info, now)

    def poll_once(self):
        self.poll_event("interruption")
        kind = SECONDARY_ROTATION[self.rotation % len(SECONDARY_ROTATION)]
        self.rotation += 1
        self.poll_event(kind)
        self.last_poll = time.time()
        self.metrics.set("parkingspot_watcher_last_poll_timestamp_seconds", value=self.last_poll)
        if not self.identity_read:
            self.ensure_identity()

    def poll_loop(self):
        interval = self.args.poll_interval
        self.ensure_identity()
        next_tick = time.monotonic()
        while not self.stop.is_set():
            self.poll_once()
            next_tick += interval
            now = time.monotonic()
            if next_tick < now:  # fell behind (slow IMDS): keep the cadence, skip missed ticks
                next_tick += ((now - next_tick) // interval + 1) * interval
            self.stop.wait(next_tick - now)

    # -- lifecycle
    def on_observation(self, kind, state, info, now):
        phase = phase_for(kind, self.responses)
        if phase is None:
            self._ignored(kind, state == "present", info)
            return
        with self.lock:
            episode = self.state["episodes"].get(phase)
            if episode is not None and episode["state"] not in ACTIVE and state == "present":
                self.state["history"] = (self.state["history"] + [episode])[-StateStore.HISTORY :]
                episode = None
            episode, effect = observe(
                episode, kind, state, info, now, self.args.default_budget, self.args.safety_margin
            )
            if effect is None:
                return
            episode["phase"] = phase
            self.state["episodes"][phase] = episode
            self.store.save(self.state)
            lifecycle = episode["state"]
        self.on_effect(phase, kind, effect, episode, lifecycle, now)

    def on_effect(self, phase, kind, effect, episode, lifecycle, now):
        labels = (("event", kind),)
        if effect in ("detected", "joined", "confirmed") and (id(episode), kind) not in self.counted:
            self.counted.add((id(episode), kind))
            self.metrics.inc("parkingspot_watcher_notices_total", labels)
        if effect == "moved":
            self.metrics.inc("parkingspot_watcher_notice_updates_total", labels)
            # DEBUG: AWS's metadata mock moves the time on every request, i.e. every poll.
            LOG.debug("%s notice moved: %s lifecycle deadline now %s", kind, phase, format_iso(episode["deadline"]))
            return
        cause = episode["causes"][kind] if kind in episode["causes"] else primary_cause(episode)[1]
        LOG.warning(
            "%s notice %s: action=%s time=%s phase=%s lifecycle=%s (%.0fs before the deadline)",
            kind,
            effect,
            cause["action"],
            cause["notice_time"],
            phase,
            lifecycle,
            episode["deadline"] - now,
        )
        if effect in ("detected", "withdrawn", "completed"):
            self.metrics.inc("parkingspot_watcher_lifecycle_total", (("phase", phase), ("state", lifecycle)))
        self._gauges()
        if effect == "detected" or (effect == "confirmed" and lifecycle in ("detected", "draining")):
            self.work.put(("run", episode))
        if effect in ("detected", "withdrawn", "completed") and self.args.webhook_url:
            threading.Thread(target=self.send_webhook, args=(episode, lifecycle), daemon=True).start()
        if effect in ("withdrawn", "completed"):
            self.work.put(("undo", episode))

    def _ignored(self, kind, present, info):
        if present and not self.ignored.get(kind):
            self.metrics.inc("parkingspot_watcher_notices_total", (("event", kind),))
            LOG.warning("%s notice (action=%s) ignored (--on %s=ignore)", kind, info["action"], kind)
        self.ignored[kind] = present

    # -- actions
    def worker_loop(self):
        while not self.stop.is_set():
            item = self.work.get()
            if item is None:  # shutdown
                return
            op, episode = item
            self.ensure_identity()
            if op == "run":
                self.run_hooks(episode)
            else:
                self.run_undo(episode)

    def hooks_dir(self, phase):
        if phase == "drain":
            return self.args.hooks_dir
        return os.path.join(self.args.hooks_dir, f"{phase}.d")

    def run_hooks(self, episode):
        with self.lock:
            if episode["state"] not in ("detected", "draining"):
                return
            episode["state"] = "draining"
            self.store.save(self.state)
        self.metrics.inc("parkingspot_watcher_lifecycle_total", (("phase", episode["phase"]), ("state", "draining")))
        for path in list_hooks(self.hooks_dir(episode["phase"])):
            name = os.path.basename(path)
            if self.stop.is_set():
                return
            with self.lock:
                lifecycle = episode["state"]
                done = episode["hooks"].get(name)
                deadline, left = hook_window(episode, time.time())
            if lifecycle != "draining":
                LOG.warning("%s lifecycle %s; hook %s and the rest not run", episode["phase"], lifecycle, name)
                return
            if done:
                LOG.info("hook %s already ran for this notice (%s); not running it again", name, done["result"])
                continue
            own = hook_timeout(path, self.args.hook_timeout)
            timeout = min(own, max(LATE_HOOK_SECONDS, left))
            if time.time() > episode["deadline"]:
                LOG.warning("inside the safety margin: hook %s gets %.0fs (%.0fs left)", name, timeout, left)
            self.run_hook(episode, path, name, timeout, "draining", episode["hooks"])
        with self.lock:
            if episode["state"] == "draining":
                episode["state"] = "done"
                self.store.save(self.state)
                done = True
            else:
                done = False
        if done:
            self.metrics.inc("parkingspot_watcher_lifecycle_total", (("phase", episode["phase"]), ("state", "done")))

    def run_undo(self, episode):
        """The '<hook>.undo' scripts of the hooks that ran, in reverse order, each at most once."""
        directory = self.hooks_dir(episode["phase"])
        with self.lock:
            ran = sorted(episode["hooks"], reverse=True)
            lifecycle = episode["state"]
        for name in ran:
            path = os.path.join(directory, name + ".undo")
            if self.stop.is_set():
                return
            if name + ".undo" in episode["undo"] or not (os.path.isfile(path) and os.access(path, os.X_OK)):
                continue
            timeout = hook_timeout(path, self.args.hook_timeout)
            self.run_hook(episode, path, name + ".undo", timeout, lifecycle, episode["undo"])
        with self.lock:
            episode["undo_done"] = True
            self.store.save(self.state)

    def run_hook(self, episode, path, name, timeout, lifecycle, records):
        with self.lock:
            env = dict(os.environ)
            env.update(hook_environment(episode, self.identity, lifecycle, time.time(), timeout))
            # Record the start before running: a hook runs at most once per lifecycle, even if we die now.
            records[name] = {"result": "started", "started": time.time()}
            self.store.save(self.state)
        started = time.monotonic()
        self.metrics.set("parkingspot_watcher_hook_last_start_timestamp_seconds", (("hook", name),), time.time())
        LOG.warning("running hook %s (%s; timeout %.0fs)", name, lifecycle, timeout)
        try:
            proc = subprocess.Popen(
                [path], env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), start_new_session=True, cwd="/"
            )
        except OSError as exc:
            LOG.error("hook %s could not start: %s", name, exc)
            self._record(records, name, "failed", None, 0.0)
            return
        self.current_proc = proc
        result = None
        while result is None:
            try:
                proc.wait(timeout=0.1)
                if proc.returncode == 0:
                    result = "ok"
                else:
                    result = "interrupted" if self.stop.is_set() else "failed"
            except subprocess.TimeoutExpired:
                if self.stop.is_set():
                    result = "interrupted"
                elif time.monotonic() - started >= timeout:
                    result = "timeout"
        if result in ("timeout", "interrupted"):
            kill_group(proc)
        self.current_proc = None
        duration = time.monotonic() - started
        level = logging.INFO if result == "ok" else logging.ERROR
        LOG.log(level, "hook %s %s (exit %s) after %.1fs", name, result, proc.returncode, duration)
        self._record(records, name, result, proc.returncode, duration)

    def _record(self, records, name, result, returncode, duration):
        with self.lock:
            records[name] = {"result": result, "rc": returncode, "duration": round(duration, 3)}
            self.store.save(self.state)
        self.metrics.inc("parkingspot_watcher_hook_runs_total", (("hook", name), ("result", result)))
        self.metrics.set("parkingspot_watcher_hook_duration_seconds", (("hook", name),), duration)
        self.metrics.inc("parkingspot_watcher_hook_seconds_total", (("hook", name),), duration)

    def send_webhook(self, episode, lifecycle):
        with self.lock:
            kind, cause = primary_cause(episode)
            payload = {
                "event": kind,
                "events": sorted(episode["causes"]),
                "action": cause["action"],
                "notice_time": cause["notice_time"],
                "deadline": format_iso(episode["deadline"]),
                "phase": episode["phase"],
                "lifecycle": lifecycle,
            }
        payload.update(self.identity)
        data = json.dumps(payload).encode()
        for attempt in range(3):
            headers = {"Content-Type": "application/json"}
            try:
                status = http_call(self.args.webhook_url, self.args.webhook_timeout, "POST", data, headers)
                if 200 <= status < 300:
                    self.metrics.inc("parkingspot_watcher_webhook_total", (("result", "ok"),))
                    return
                LOG.warning("webhook attempt %d answered HTTP %d", attempt + 1, status)
            except (OSError, ValueError) as exc:
                LOG.warning("webhook attempt %d failed: %s", attempt + 1, exc)
            if self.stop.wait(2**attempt):
                break
        self.metrics.inc("parkingspot_watcher_webhook_total", (("result", "failed"),))

    def shutdown(self):
        self.stop.set()
        self.work.put(None)
        proc = self.current_proc
        if proc is not None and proc.poll() is None:
            kill_group(proc)
        self.imds.close()


def kill_group(proc):
    """Stop a hook and its children: SIGTERM, then SIGKILL after two seconds."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------- HTTP endpoint


# The endpoint speaks just enough HTTP/1.1 for load balancer checks and Prometheus (GET/HEAD, one
# request per connection) on socketserver: http.server would bring the email package and about
# 2.4 MiB of resident memory with it (see docs/benchmarks.md), for request parsing this does not need.
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
MAX_HEADER_LINES = 100


class HealthServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(watcher):
    args = watcher.args

    class Handler(socketserver.StreamRequestHandler):
        timeout = 5  # a client that sends nothing is dropped after 5 s

        def handle(self):
            try:
                request_line = self.rfile.readline(8192).decode("latin-1")
                for _header in range(MAX_HEADER_LINES):  # headers are read and not needed
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        break
            except OSError:
                return
            parts = request_line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                return self._send(400, {"status": "bad request"})
            method, target = parts[0], parts[1]
            head = method == "HEAD"
            if method not in ("GET", "HEAD"):
                return self._send(405, {"status": "method not allowed"})
            path = urllib.parse.urlsplit(target).path
            if path == args.health_path:
                status, body = watcher.health()
                return self._send(status, body, head=head)
            if path == args.metrics_path:
                return self._send(200, watcher.render_metrics(), "text/plain; version=0.0.4", head)
            return self._send(404, {"status": "not found"}, head=head)

        def _send(self, status, body, content_type="application/json", head=False):
            if not isinstance(body, str):
                body = json.dumps(body, sort_keys=True) + "\n"
            data = body.encode()
            lines = [
                f"HTTP/1.1 {status} {REASONS[status]}",
                "Server: parkingspot-watcher",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(data)}",
                "Cache-Control: no-store",
                "Connection: close",
            ]
            try:
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else data))
            except OSError:
                pass  # the client went away

    return Handler


# ---------------------------------------------------------------------------- main


def build_parser():
    p = argparse.ArgumentParser(prog="parkingspot-watcher", description=__doc__.splitlines()[0])
    p.add_argument("--imds-url", default="http://169.254.169.254", help="metadata service base URL")
    p.add_argument("--imds-timeout", type=float, default=2.0, help="seconds per metadata request")
    p.add_argument("--token-ttl", type=int, default=21600, help="IMDSv2 token lifetime in seconds")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--health-address", default="0.0.0.0", help="address the health endpoint listens on")
    p.add_argument("--health-port", type=int, default=8686)
    p.add_argument("--health-path", default="/health")
    p.add_argument("--metrics-path", default="/metrics")
    p.add_argument("--app-health-url", default="", help="application health URL proxied by the health endpoint")
    p.add_argument("--app-health-timeout", type=float, default=2.0)
    p.add_argument("--hooks-dir", default="/etc/parkingspot/hooks.d")
    p.add_argument("--state-dir", default="/var/lib/parkingspot-watcher")
    p.add_argument("--hook-timeout", type=float, default=60.0, help="default per-hook timeout in seconds")
    p.add_argument(
        "--safety-margin",
        type=float,
        default=10.0,
        help="seconds before the notice time by which all hooks must have finished",
    )
    p.add_argument(
        "--default-budget",
        type=float,
        default=120.0,
        help="hook budget for notices without a termination time (rebalance, lifecycle)",
    )
    p.add_argument(
        "--restore-grace",
        type=float,
        default=300.0,
        help="after a restart, a saved drain answers 503 until IMDS confirms or ends it, "
        "but not longer than this past the notice's end",
    )
    p.add_argument(
        "--on",
        action="append",
        default=[],
        metavar="EVENT=RESPONSE",
        help="response to an event: drain (503 + hooks), notify (hooks in <hooks-dir>/<event>.d), "
        "ignore; defaults: interruption=drain lifecycle=drain rebalance=notify maintenance=notify",
    )
    p.add_argument("--webhook-url", default="")
    p.add_argument("--webhook-timeout", type=float, default=5.0)
    p.add_argument("--instance-id", default="", help="override the instance id (read from IMDS by default)")
    p.add_argument("--error-log-interval", type=float, default=60.0, help="seconds between repeated error logs")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def validate(args):
    problems = []
    if args.poll_interval <= 0 or args.poll_interval > 60:
        problems.append("--poll-interval must be in (0, 60] seconds")
    if not 0 < args.health_port < 65536:
        problems.append("--health-port must be 1..65535")
    for name in ("health_path", "metrics_path"):
        if not getattr(args, name).startswith("/"):
            problems.append("--{} must start with /".format(name.replace("_", "-")))
    if args.health_path == args.metrics_path:
        problems.append("--health-path and --metrics-path must differ")
    if not 1 <= args.token_ttl <= 21600:
        problems.append("--token-ttl must be 1..21600 seconds")
    for name in ("imds_timeout", "app_health_timeout", "hook_timeout", "webhook_timeout"):
        if getattr(args, name) <= 0:
            problems.append("--{} must be positive".format(name.replace("_", "-")))
    if args.safety_margin < 0:
        problems.append("--safety-margin must not be negative")
    try:
        parse_responses(args.on)
    except ValueError as exc:
        problems.append(str(exc))
    for name in ("app_health_url", "webhook_url"):
        value = getattr(args, name)
        if value and urllib.parse.urlsplit(value).scheme not in ("http", "https"):
            problems.append("--{} must be an http(s) URL".format(name.replace("_", "-")))
    if urllib.parse.urlsplit(args.imds_url).scheme != "http":
        problems.append("--imds-url must be an http:// URL")
    return problems


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level), format="%(levelname)s %(message)s")
    problems = validate(args)
    if problems:
        for problem in problems:
            LOG.error("invalid option: %s", problem)
        return 2
    if args.state_dir:
        try:
            os.makedirs(args.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            LOG.error("--state-dir %s cannot be created: %s", args.state_dir, exc)
            return 2
    watcher = Watcher(args)
    try:
        server = HealthServer((args.health_address, args.health_port), make_handler(watcher))
    except OSError as exc:
        LOG.error("cannot listen on %s:%d (--health-port): %s", args.health_address, args.health_port, exc)
        return 2

    def on_signal(signum, _frame):
        watcher.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    worker = threading.Thread(target=watcher.worker_loop, daemon=True)
    worker.start()
    LOG.info(
        "watching %s every %.2fs; health on %s:%d%s; hooks in %s",
        args.imds_url,
        args.poll_interval,
        args.health_address,
        args.health_port,
        args.health_path,
        args.hooks_dir,
    )
    try:
        watcher.poll_loop()
    finally:
        watcher.shutdown()
        server.shutdown()
        server.server_close()
        worker.join(timeout=5)
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
