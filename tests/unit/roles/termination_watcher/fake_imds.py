# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small IMDSv2 server for tests and benchmarks.

Token PUT with TTL, 401 for GETs without a token or with an expired/unknown one, 404 for
absent notices, settable notice payloads and fault injection (500, garbage, slow, reset,
401 storm). Every request is recorded. Usable in-process (FakeIMDS) or as a script with an
HTTP control API under /_fake/ (used by the role scenarios).
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
FAULTS = (None, "500", "500get", "garbage", "slow", "reset", "401")


class FakeIMDS:
    def __init__(self, host="127.0.0.1", port=0, instance_id="i-0123456789abcdef0"):
        self.lock = threading.Lock()
        self.paths = {INSTANCE_ID: instance_id}
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
        when = when if when is not None else time.time() + 120
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        self.set(INSTANCE_ACTION, json.dumps({"action": action, "time": stamp}))
        return stamp

    def set_rebalance(self, when=None):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when if when is not None else time.time()))
        self.set(REBALANCE, json.dumps({"noticeTime": stamp}))
        return stamp

    def set_scheduled(self, code="system-reboot", when=None, event_id="instance-event-0123456789abcdef0"):
        when = when if when is not None else time.time() + 3600
        stamp = time.strftime("%d %b %Y %H:%M:%S GMT", time.gmtime(when))
        event = {
            "NotBefore": stamp,
            "Code": code,
            "Description": "scheduled reboot",
            "EventId": event_id,
            "NotAfter": stamp,
            "State": "active",
        }
        self.set(SCHEDULED, json.dumps([event]))
        return stamp

    def set_lifecycle(self, state):
        self.set(LIFECYCLE, state)

    def clear_notices(self):
        for path in (INSTANCE_ACTION, REBALANCE, SCHEDULED, LIFECYCLE):
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
            expires = self.tokens.get(token)
        if expires is None:
            return "unknown"
        return "valid" if time.monotonic() < expires else "expired"

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
                fake.tokens[token] = time.monotonic() + ttl
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
                body = fake.paths.get(self.path)
            if state != "valid" or fault == "401":
                self._record(401, state)
                return self._reply(401, "unauthorized")
            if fault == "garbage" and self.path != INSTANCE_ID:
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
