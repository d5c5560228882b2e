# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baseline for bench/watcher_latency.py: a SeeSpot-style watcher.

Behaves like SeeSpot: polls the spot notice every 5 s with a plain sleep, flips a health
endpoint to 503 and runs the cleanup scripts once. It uses an IMDSv2 token only because the
fake metadata server refuses IMDSv1 (SeeSpot itself used IMDSv1). Not for production use.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer


def main(argv):
    imds, port, hooks_dir, interval = argv[0], int(argv[1]), argv[2], float(argv[3]) if len(argv) > 3 else 5.0
    state = {"terminating": False}
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            status = 503 if state["terminating"] else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            put = urllib.request.Request(
                f"{imds}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
            )
            token = urllib.request.urlopen(put, timeout=2).read().decode()
            get = urllib.request.Request(
                f"{imds}/latest/meta-data/spot/instance-action", headers={"X-aws-ec2-metadata-token": token}
            )
            body = urllib.request.urlopen(get, timeout=2).read()
            json.loads(body)
            if not state["terminating"]:
                state["terminating"] = True
                for name in sorted(os.listdir(hooks_dir)):
                    subprocess.call([os.path.join(hooks_dir, name)])
        except (urllib.error.URLError, OSError, ValueError):
            pass
        stop.wait(interval)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
