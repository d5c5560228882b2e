"""A counting, fault-injecting HTTP proxy in front of the local EC2 API (moto).

ParkingSpot's demo and benchmarks run Ansible modules in their own processes, so
API calls are counted where they cross the wire: every request is forwarded to
moto and its action (``Action=`` of the query protocol, or ``X-Amz-Target``) is
counted. It can also refuse spot launches with a capacity error, as AWS does when
a spot pool is empty, which moto never does.

Control endpoints (not forwarded):
  GET  /_proxy/counts             {"Action": n, ...}
  POST /_proxy/reset              clear the counts and the client tokens seen
  POST /_proxy/spot?available=0   refuse spot RunInstances/CreateFleet (1 accepts them again)
  POST /_proxy/delay?action=A&seconds=S   hold every A request S seconds before forwarding it

moto ignores EC2 client tokens; AWS does not. The proxy gives RunInstances and
CreateFleet their AWS meaning: a repeated ClientToken returns the first call's
response instead of launching again (requests with one token are serialised).
"""

import http.client
import http.server
import json
import threading
import time
import urllib.parse
from collections import Counter

CAPACITY_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>'
    "<Message>There is no Spot capacity available that matches your request.</Message></Error></Errors>"
    "<RequestID>parkingspot-proxy</RequestID></Response>"
)


class ProxyState:
    def __init__(self, upstream):
        parsed = urllib.parse.urlsplit(upstream)
        self.host, self.port = parsed.hostname, parsed.port
        self.counts = Counter()
        self.spot_available = True
        self.refused = 0
        self.delays = {}
        self.lock = threading.Lock()
        self.tokens = {}
        self.token_locks = {}

    def token_lock(self, token):
        with self.lock:
            return self.token_locks.setdefault(token, threading.Lock())


def _action(headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return (fields.get("Action") or ["?"])[0]


def _is_spot_launch(action, body):
    text = urllib.parse.unquote_plus(body.decode("utf-8", "replace"))
    if action == "RunInstances":
        return "InstanceMarketOptions.MarketType=spot" in text
    if action == "CreateFleet":
        return "DefaultTargetCapacityType=spot" in text
    return action == "RequestSpotInstances"


def _client_token(action, body):
    if action not in ("RunInstances", "CreateFleet"):
        return None
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get("ClientToken") or [None])[0]
    return "%s:%s" % (action, token) if token else None


def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, code, body, content_type="application/json"):
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _control(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/_proxy/counts":
                with state.lock:
                    return self._reply(200, json.dumps(dict(state.counts), sort_keys=True))
            if url.path == "/_proxy/reset":
                with state.lock:
                    state.counts.clear()
                    state.tokens.clear()
                return self._reply(200, "{}")
            if url.path == "/_proxy/delay":
                query = urllib.parse.parse_qs(url.query)
                state.delays[query["action"][0]] = float(query.get("seconds", ["0"])[0])
                return self._reply(200, json.dumps(state.delays))
            if url.path == "/_proxy/spot":
                query = urllib.parse.parse_qs(url.query)
                state.spot_available = (query.get("available") or ["1"])[0] not in ("0", "false", "no")
                return self._reply(200, json.dumps({"spot_available": state.spot_available}))
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
            with state.lock:
                state.counts[action] += 1
            if not state.spot_available and _is_spot_launch(action, body):
                with state.lock:
                    state.refused += 1
                return self._reply(400, CAPACITY_ERROR, "text/xml")
            if state.delays.get(action):
                time.sleep(state.delays[action])
            token = _client_token(action, body)
            if token:
                with state.token_lock(token):
                    if token in state.tokens:
                        status, headers, data = state.tokens[token]
                    else:
                        status, headers, data = self._upstream(body)
                        if status == 200:  # a failed call does not use up its token
                            state.tokens[token] = (status, headers, data)
            else:
                status, headers, data = self._upstream(body)
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _upstream(self, body):
            connection = http.client.HTTPConnection(state.host, state.port, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
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


def start(upstream):
    """Start the proxy on a free 127.0.0.1 port; returns (server, url, state)."""
    state = ProxyState(upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1], state
