# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small IMDSv2 server for tests and benchmarks.

It plays the documented behaviour of AWS's amazon-ec2-metadata-mock (written from its
documentation and observed answers, no code taken from it):

* token PUT needs X-aws-ec2-metadata-token-ttl-seconds in 1..21600, else 400; a GET with no,
  an unknown or an expired token (age >= TTL, after which it is forgotten) gets 401;
* spot/instance-action and spot/termination-time: with no fixed time, the time is recomputed on
  every request (now + 2 minutes); the rebalance noticeTime likewise (now);
* events/maintenance/scheduled: a list of events (pretty-printed JSON) with NotBefore/NotAfter/
  NotBeforeDeadline in the layout "2 Jan 2006 15:04:05 GMT" and State active|completed|canceled;
* autoscaling/target-lifecycle-state: "InService", turning "Terminated" (at once or after a delay);
* dynamic/instance-identity/document.

On top: run-time changes (withdraw, cancel, complete) and fault injection (500, garbage, slow,
reset, 401 storm). Every request is recorded. Usable in-process (FakeIMDS) or as a script with
an HTTP control API under /_fake/ (used by the role scenarios).
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

INSTANCE_ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"
SCHEDULED = "/latest/meta-data/events/maintenance/scheduled"
LIFECYCLE = "/latest/meta-data/autoscaling/target-lifecycle-state"
INSTANCE_ID = "/latest/meta-data/instance-id"
TERMINATION_TIME = "/latest/meta-data/spot/termination-time"
IDENTITY = "/latest/dynamic/instance-identity/document"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc3339(when):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def event_time(when):
    """The scheduled-events layout, Go's "2 Jan 2006 15:04:05 GMT" (day without a leading zero)."""
    t = time.gmtime(when)
    return f"{t.tm_mday} {MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"


FAULTS = (None, "500", "500get", "garbage", "slow", "reset", "401")


class FakeIMDS:
    def __init__(self, host="127.0.0.1", port=0, instance_id="i-0123456789abcdef0"):
        self.lock = threading.Lock()
        identity = {
            "accountId": "123456789012",
            "architecture": "x86_64",
            "availabilityZone": "us-east-1a",
            "imageId": "ami-0123456789abcdef0",
            "instanceId": instance_id,
            "instanceType": "m5.large",
            "privateIp": "10.0.0.7",
            "region": "us-east-1",
        }
        self.paths = {INSTANCE_ID: instance_id, IDENTITY: json.dumps(identity, indent="\t")}
        self.events = []
        self.tokens = {}
        self.requests = []
        self.fault = None
        self.slow_seconds = 3.0
        self.changed_at = {}
        self.server = ThreadingHTTPServer((host, port), _make_handler(self))
        self.server.daemon_threads = True
        self.thread = None

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # -- state
    def set(self, path, body):
        """Serve body (str) at path; None removes it (404)."""
        with self.lock:
            if body is None:
                self.paths.pop(path, None)
            else:
                self.paths[path] = body
            self.changed_at[path] = time.time()

    def set_instance_action(self, action="terminate", when=None):
        """A spot notice with a fixed time (default: two minutes from now)."""
        stamp = rfc3339(when if when is not None else time.time() + 120)
        self.set(INSTANCE_ACTION, json.dumps({"action": action, "time": stamp}, indent="\t"))
        self.set(TERMINATION_TIME, stamp)
        return stamp

    def mock_spot(self, action="terminate"):
        """The mock's default spot notice: its time is now + 2 minutes, recomputed on every request."""

        def instance_action():
            return json.dumps({"action": action, "time": rfc3339(time.time() + 120)}, indent="\t")

        self.set(INSTANCE_ACTION, instance_action)
        self.set(TERMINATION_TIME, lambda: rfc3339(time.time() + 120))

    def withdraw_spot(self):
        self.set(INSTANCE_ACTION, None)
        self.set(TERMINATION_TIME, None)

    def set_rebalance(self, when=None):
        stamp = rfc3339(when if when is not None else time.time())
        self.set(REBALANCE, json.dumps({"noticeTime": stamp}, indent="\t"))
        return stamp

    def mock_rebalance(self):
        """The mock's default rebalance recommendation: noticeTime is the time of each request."""
        self.set(REBALANCE, lambda: json.dumps({"noticeTime": rfc3339(time.time())}, indent="\t"))

    def set_scheduled(
        self, code="system-reboot", when=None, event_id="instance-event-0123456789abcdef0", state="active", hours=2
    ):
        """One scheduled event; the mock's default has NotBefore in the past (the window is open)."""
        when = when if when is not None else time.time() + 3600
        event = {
            "Code": code,
            "Description": "The instance is scheduled for " + code,
            "State": state,
            "EventId": event_id,
            "NotBefore": event_time(when),
            "NotAfter": event_time(when + hours * 3600),
            "NotBeforeDeadline": event_time(when + 24 * 3600),
        }
        with self.lock:
            self.events = [event]
        self._publish_events()
        return event["NotBefore"]

    def set_event_state(self, state, event_id=None):
        """Run-time change of an event's State: completed (after the reboot) or canceled."""
        with self.lock:
            for event in self.events:
                if event_id is None or event["EventId"] == event_id:
                    event["State"] = state
        self._publish_events()

    def _publish_events(self):
        with self.lock:
            body = json.dumps(self.events, indent="\t") if self.events else None
        self.set(SCHEDULED, body)

    def set_lifecycle(self, state, after=None):
        """The ASG target lifecycle state; with after=N, InService now and Terminated N seconds later."""
        if after is None:
            self.set(LIFECYCLE, state)
            return
        turn = time.time() + after
        self.set(LIFECYCLE, lambda: "Terminated" if time.time() >= turn else "InService")

    def clear_notices(self):
        with self.lock:
            self.events = []
        for path in (INSTANCE_ACTION, TERMINATION_TIME, REBALANCE, SCHEDULED, LIFECYCLE):
            self.set(path, None)

    def set_fault(self, fault, slow_seconds=3.0):
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self.lock:
            self.fault = fault
            self.slow_seconds = slow_seconds

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def reset_requests(self):
        with self.lock:
            self.requests = []

    # -- request handling (called by the handler)
    def token_state(self, token):
        if token is None:
            return "none"
        with self.lock:
            issued = self.tokens.get(token)
            if issued is None:
                return "unknown"
            created, ttl = issued
            if int(time.monotonic() - created) >= ttl:
                del self.tokens[token]  # the mock forgets an expired token: a later use is "unknown"
                return "expired"
        return "valid"

    def record(self, **entry):
        entry["time"] = time.time()
        with self.lock:
            self.requests.append(entry)


def _make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _reply(self, status, body, content_type="text/plain"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, status, token_state="-"):
            fake.record(
                method=self.command, path=self.path, status=status, token=token_state, client=self.client_address
            )

        def _fault(self):
            """Apply the configured fault; True when the request has been answered (or dropped)."""
            with fake.lock:
                fault, slow = fake.fault, fake.slow_seconds
            if fault == "slow":
                time.sleep(slow)
                return False
            if fault == "reset":
                self._record("reset")
                self.close_connection = True
                self.connection.close()
                return True
            if fault == "500" or (fault == "500get" and self.command == "GET"):
                self._record(500)
                self._reply(500, "internal error")
                return True
            return False

        def do_PUT(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.startswith("/_fake/"):
                return self._control(raw)
            if self.path != "/latest/api/token":
                self._record(405)
                return self._reply(405, "method not allowed")
            if self._fault():
                return None
            try:
                ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= 21600:
                self._record(400)
                return self._reply(400, "bad ttl")
            token = secrets.token_urlsafe(24)
            with fake.lock:
                fake.tokens[token] = (time.monotonic(), ttl)
            self._record(200)
            return self._reply(200, token)

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/_fake/"):
                return self._control(None)
            if self._fault():
                return None
            state = fake.token_state(self.headers.get("X-aws-ec2-metadata-token"))
            with fake.lock:
                fault = fake.fault
                body = fake.paths.get(self.path.rstrip("/") or "/")
            if callable(body):
                body = body()
            if state != "valid" or fault == "401":
                self._record(401, state)
                return self._reply(401, "unauthorized")
            if fault == "garbage" and self.path not in (INSTANCE_ID, IDENTITY):
                self._record(200, state)
                return self._reply(200, '{"action": "terminate", "time": ')
            if body is None:
                self._record(404, state)
                return self._reply(404, "not found")
            self._record(200, state)
            return self._reply(200, body)

        def _control(self, raw):
            """GET /_fake/requests; PUT /_fake/state {"set": {path: body|null}, "fault": ..., "notice": {...}}."""
            if self.command == "GET" and self.path == "/_fake/requests":
                return self._reply(200, json.dumps(fake.snapshot()), "application/json")
            if self.command == "PUT" and self.path == "/_fake/state":
                try:
                    spec = json.loads(raw or b"{}")
                    for path, body in spec.get("set", {}).items():
                        fake.set(path, body)
                    if "fault" in spec:
                        fake.set_fault(spec["fault"], spec.get("slow_seconds", 3.0))
                    if spec.get("instance_action"):
                        fake.set_instance_action(spec["instance_action"], spec.get("when"))
                    if spec.get("mock_spot"):
                        fake.mock_spot(spec["mock_spot"])
                    if spec.get("withdraw_spot"):
                        fake.withdraw_spot()
                    if spec.get("scheduled"):
                        fake.set_scheduled(spec["scheduled"], spec.get("when"))
                    if spec.get("event_state"):
                        fake.set_event_state(spec["event_state"])
                    if spec.get("clear"):
                        fake.clear_notices()
                except (ValueError, AttributeError) as exc:
                    return self._reply(400, str(exc))
                return self._reply(200, "ok")
            return self._reply(404, "not found")

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake IMDSv2 server with a control API under /_fake/")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--instance-id", default="i-0123456789abcdef0")
    args = parser.parse_args(argv)
    fake = FakeIMDS(args.bind, args.port, args.instance_id)
    print(f"listening on {args.bind}:{fake.port}", flush=True)
    try:
        fake.server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
