"""make demo: keep a CI runner pool through a simulated working day on a local EC2 API.

Starts moto in this process on a free 127.0.0.1 port behind the counting proxy
(tools/ec2_proxy.py), creates what a pool needs (a launch template, the default VPC's
subnets), runs playbooks/demo.yml, which tells the day step by step, and stops the servers.

moto stamps launch and termination times with its own clock; here that clock is the story's:
each step of the playbook moves it (POST <clock>/clock?at=ISO-8601) so the usage report charts
the simulated day, not the half minute it took. The terminal shows the story and a summary; the
playbook's full output goes to demo-output/demo.log.

moto's spot price history is a placeholder, so the proxy plays one (POST /_proxy/spot-price) for
the demo's instance types in the zones of its subnets, every hour of the day: a share of the
on-demand price of the collection's shipped table with a small hourly variation (SPOT_SHARE,
HOURLY_VARIATION below). The usage report prices the day's spot hours from it.
"""

import datetime
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from with_moto import fake_credentials_env  # noqa: E402  pylint: disable=wrong-import-position
from with_moto import start_local_ec2  # noqa: E402  pylint: disable=wrong-import-position


def fixtures(url):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    # A Linux image, as CI runners use: the report prices each instance by its platform, and the local
    # API's first stock image is a Windows one.
    linux = [{"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}]
    images = ec2.describe_images(Owners=["amazon"], Filters=linux)["Images"]
    image = sorted(images or ec2.describe_images(Owners=["amazon"])["Images"], key=lambda i: i["ImageId"])[0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="ci-runner",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "m6i.large",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    subnets = sorted(
        (s["SubnetId"], s["AvailabilityZone"]) for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]
    )
    return {
        "image_id": image,
        "subnet_ids": [s for s, _zone in subnets[:2]],
        "demo_zones": [z for _s, z in subnets[:2]],
    }


# The played spot price: this share of the shipped on-demand price, the 65% discount that
# bench/ci_sim.py assumes by default (docs/economics.md), moved hour by hour by one of these
# fractions in turn (a zone starts three steps later than the one before it).
SPOT_SHARE = 0.35
HOURLY_VARIATION = (0.0, 0.02, 0.04, 0.02, 0.0, -0.02, -0.04, -0.02)


def demo_instance_types():
    """The instance types the pools of playbooks/demo.yml launch."""
    import yaml

    with open(os.path.join(os.path.dirname(HERE), "playbooks", "demo.yml")) as handle:
        play = yaml.safe_load(handle)[0]
    types = set()
    for pool in play["vars"]["parkingspot_pools"]:
        types.update(pool.get("instance_types") or [pool["instance_type"]])
    return sorted(types)


def shipped_on_demand_prices():
    """The collection's shipped on-demand table (a file without imports, loaded from the checkout)."""
    path = os.path.join(os.path.dirname(HERE), "plugins", "module_utils", "_ondemand_prices.py")
    spec = importlib.util.spec_from_file_location("parkingspot_ondemand_prices", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def play_spot_prices(proxy_url, day, instance_types, zones):
    """Play an hourly spot price through ``day`` for each type x zone; returns what the playbook tells."""
    table = shipped_on_demand_prices()
    bases = []
    for instance_type in instance_types:
        on_demand = table.on_demand_price(instance_type)[0]
        if on_demand is None:
            raise RuntimeError("%s is not in the shipped on-demand table: no spot price to play" % instance_type)
        bases.append("%s: %.4f against %.4f USD/h" % (instance_type, on_demand * SPOT_SHARE, on_demand))
        for index, zone in enumerate(zones):
            for hour in range(24):
                price = on_demand * SPOT_SHARE * (1 + HOURLY_VARIATION[(hour + 3 * index) % len(HOURLY_VARIATION)])
                query = urllib.parse.urlencode(
                    {
                        "instance_type": instance_type,
                        "zone": zone,
                        "price": "%.6f" % price,
                        "at": "%sT%02d:00:00Z" % (day, hour),
                    }
                )
                request = urllib.request.Request(proxy_url + "/_proxy/spot-price?" + query, method="POST", data=b"")
                urllib.request.urlopen(request, timeout=10).close()
    return {
        "share_pct": round(SPOT_SHARE * 100),
        "variation_pct": round(max(abs(v) for v in HOURLY_VARIATION) * 100),
        "bases": bases,
        "zones": zones,
    }


class StoryClock:
    """moto's clock, moved by the story: utcnow() = the time set last + the real time since then."""

    def __init__(self):
        import moto.core.utils
        import moto.ec2.models  # noqa: F401  (load every EC2 model before its clock is replaced)

        self.real = moto.core.utils.utcnow
        self.offset = datetime.timedelta(0)
        replaced = 0
        for name, module in list(sys.modules.items()):
            if name.startswith("moto") and getattr(module, "utcnow", None) is self.real:
                module.utcnow = self.utcnow
                replaced += 1
        if not replaced:
            raise RuntimeError("moto's clock (moto.core.utils.utcnow) was not found")

    def utcnow(self):
        return self.real() + self.offset

    def set(self, when):
        """Move the clock to ``when`` (aware or naive UTC datetime)."""
        if when.tzinfo is not None:
            when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        self.offset = when - self.real()

    def serve(self):
        """A control endpoint on a free 127.0.0.1 port: POST /clock?at=2030-01-07T08:00:00Z."""
        clock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                url = urllib.parse.urlparse(self.path)
                at = urllib.parse.parse_qs(url.query).get("at", [""])[0]
                try:
                    if url.path != "/clock":
                        raise ValueError("unknown path %s" % url.path)
                    clock.set(datetime.datetime.fromisoformat(at.replace("Z", "+00:00")))
                except ValueError as exc:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(str(exc).encode())
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, "http://127.0.0.1:%d" % server.server_address[1]


# What the terminal shows of the playbook's output: the story and the summaries, under headings.
SHOWN_TASKS = {
    "Tell the story at": None,
    "Show the pools at the end of the day": "End of the day",
    "Show the pools at": None,
    "Say what the report": "Usage report of the day (demo-output/usage-report.html)",
    "Show the usage report": None,
}


def tell(line, state, out):
    """Echo the messages of the shown tasks; everything goes to the log regardless."""
    task = re.match(r"^TASK \[(.*)\]", line)
    if task:
        state["task"] = task.group(1)
        state["shown"] = False
        for prefix, heading in SHOWN_TASKS.items():
            if state["task"].startswith(prefix):
                state["shown"] = True
                if heading:
                    out.write("\n%s\n" % heading)
                break
        return
    if line.startswith(("fatal:", "failed:", "ERROR", "[ERROR]")):
        out.write(line)
        return
    if not state.get("shown"):
        return
    msg = re.match(r'^\s*"msg": (".*")\s*,?\s*$', line)
    if msg:
        text = json.loads(msg.group(1))
        at = re.search(r"at (\d\d:\d\d)$", state["task"])
        if state["task"].startswith("Tell the story") and at:
            out.write("\n%s  %s\n" % (at.group(1), text))
        else:
            out.write("       %s\n" % text)
        out.flush()


def run_playbook(argv, env, log_path):
    state = {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            tell(line, state, sys.stdout)
        return proc.wait()


def main():
    started = time.monotonic()
    clock = StoryClock()
    clock_server, clock_url = clock.serve()
    upstream, proxy_url, state, stop_local_ec2 = start_local_ec2()
    out_dir = os.path.join(os.path.dirname(HERE), "demo-output")
    os.makedirs(out_dir, exist_ok=True)
    try:
        env = fake_credentials_env(upstream)
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        extra = fixtures(upstream)
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        prices = play_spot_prices(proxy_url, day, demo_instance_types(), extra["demo_zones"])
        extra.update(
            demo_day=day,
            demo_prices=prices,
            parkingspot_endpoint_url=proxy_url,
            parkingspot_region="us-east-1",
            demo_output=out_dir,
            demo_clock_url=clock_url,
        )
        log_path = os.path.join(out_dir, "demo.log")
        print("Local EC2 API on %s (calls counted through %s); its clock follows the story" % (upstream, proxy_url))
        print("The playbook's full output: %s" % log_path, flush=True)
        env["ANSIBLE_NOCOLOR"] = "1"
        code = run_playbook(
            ["ansible-playbook", os.path.join("playbooks", "demo.yml"), "-e", json.dumps(extra)], env, log_path
        )
        if code:
            print("\nThe demo playbook failed (exit %d); the end of %s:" % (code, log_path))
            with open(log_path) as log:
                print("".join(log.readlines()[-40:]))
        with urllib.request.urlopen(proxy_url + "/_proxy/counts", timeout=10) as response:
            counts = json.loads(response.read())
        print(
            "\nEC2 API calls through the day (keeper, status reads and the simulated events): %d" % sum(counts.values())
        )
        for action, count in sorted(counts.items()):
            print("  %-28s %d" % (action, count))
        print("Spot launches refused by the simulated capacity outage: %d" % state.refused)
        print("Demo finished in %.0f s; usage report in %s" % (time.monotonic() - started, out_dir))
        return code
    finally:
        clock_server.shutdown()
        stop_local_ec2()


if __name__ == "__main__":
    sys.exit(main())
