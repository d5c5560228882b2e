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


def index_ec2_tags():
    """Make moto's tag lookup for one EC2 resource a dictionary read; returns a function that undoes it.

    Why: moto's ``TaggedEC2Resource.get_tags`` asks ``describe_tags`` for a ``resource-id``
    filter, which turns the id into a pattern and tries it on every tag of every resource. Each
    instance described costs a pass over all tags, so describing N tagged instances is quadratic:
    a DescribeInstances of 1500 tagged instances out of 3000 took 8 s, and the benches that
    launch thousands measured moto more than the keeper.

    The replacement reads the one id from the backend's ``tags`` dict (with ``get``: no entry is
    added to that defaultdict) and returns what moto returns: one dict per tag, in the resource's
    tag order, with ``resource_type`` derived from the id as moto derives it. An id holding a
    pattern character (which moto would match as a pattern) takes moto's own way. It patches the
    class, so it holds for every moto backend in this process until undone.
    """
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE
    from moto.ec2.utils import get_prefix

    original = TaggedEC2Resource.get_tags
    if getattr(original, "parkingspot_indexed", False):
        return lambda: None

    def get_tags(self):
        resource_id = self.id
        if not resource_id:
            return []
        if any(char in resource_id for char in "*?[\\"):
            return original(self)
        tags = self.ec2_backend.tags.get(resource_id)
        if not tags:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
            for key, value in list(tags.items())
        ]

    get_tags.parkingspot_indexed = True
    TaggedEC2Resource.get_tags = get_tags

    def undo():
        TaggedEC2Resource.get_tags = original

    return undo


def start_local_ec2(strict=True, port=0, indexed_tags=False):
    """moto in this process on 127.0.0.1, behind the counting proxy (tools/ec2_proxy.py).

    ``indexed_tags``: replace moto's quadratic tag lookup with a dictionary read
    (``index_ec2_tags``), for runs that hold thousands of tagged instances; undone by ``stop``.

    Returns ``(direct, proxy_url, state, stop)``: moto's own URL, the proxy's URL, the proxy's
    state and a function that stops both.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    unindex = index_ec2_tags() if indexed_tags else (lambda: None)
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    direct = "http://127.0.0.1:%d" % port
    proxy, url, state = ec2_proxy.start(direct, strict=strict)

    def stop():
        proxy.shutdown()
        server.stop()
        unindex()

    return direct, url, state, stop


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--lenient", action="store_true", help="turn the proxy's strict EC2 rules off (docs/ec2-contracts.md)"
    )
    parser.add_argument(
        "--indexed-tags",
        action="store_true",
        help="read moto's EC2 tags from an index (index_ec2_tags): for runs that hold thousands of instances",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    direct, url, _state, stop = start_local_ec2(strict=not args.lenient, port=args.port, indexed_tags=args.indexed_tags)
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
