"""Run a command against a local EC2 API (moto) started on a free 127.0.0.1 port.

Usage: python tools/with_moto.py [--port N] -- COMMAND [ARGS...]

The command sees MOTO_URL (the endpoint, through the counting, fault-injecting and
strict proxy of tools/ec2_proxy.py: it refuses what EC2 refuses, unless --lenient),
MOTO_DIRECT_URL (moto itself) and throw-away credentials in its environment; both servers stop when the command ends,
whatever its exit code.
"""

import argparse
import logging
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ec2_proxy  # noqa: E402  pylint: disable=wrong-import-position


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_credentials_env(url):
    env = dict(os.environ)
    env.update(
        MOTO_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        AWS_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    return env


def start_local_ec2(strict=True, port=0):
    """moto in this process on 127.0.0.1, behind the counting proxy (tools/ec2_proxy.py).

    Returns ``(direct, proxy_url, state, stop)``: moto's own URL, the proxy's URL, the proxy's
    state and a function that stops both.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    direct = "http://127.0.0.1:%d" % port
    proxy, url, state = ec2_proxy.start(direct, strict=strict)

    def stop():
        proxy.shutdown()
        server.stop()

    return direct, url, state, stop


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--lenient", action="store_true", help="turn the proxy's strict EC2 rules off (docs/ec2-contracts.md)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    direct, url, _state, stop = start_local_ec2(strict=not args.lenient, port=args.port)
    print(
        "local EC2 API (moto) on %s, through the %s proxy on %s"
        % (direct, "lenient" if args.lenient else "strict", url),
        flush=True,
    )
    try:
        return subprocess.call(command, env=dict(fake_credentials_env(url), MOTO_DIRECT_URL=direct))
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
