"""Fleet-scale keeping: spot_pools (one run for all pools) vs one spot_pool per pool vs amazon.aws.

Measured side by side in one run, on one local EC2 API (moto) behind the counting proxy
(tools/ec2_proxy.py), every tool through ansible-playbook as users run it:

  small      P pools x N instances (default 50 x 20): a no-change run and a run after 10% of
             the instances were interrupted, for ``spot_pools`` (one task) and for one
             ``spot_pool`` task per pool (what playbooks/runner_pool.yml did before
             spot_pools: a loop over the pools, one module start each)
  aws        amazon.aws ``ec2_instance`` ``exact_count`` for the same pools: measured on
             ``--aws-pools`` of them, multiplied up to P (the per-pool cost is independent
             of the other pools; the result says which numbers are measured)
  big        P pools x ``--big-size`` instances (default 50 x 200 = 10,000), set up straight on
             moto: no-change run of both
  bigstub    the same 10,000 instances with EC2 answered from memory in-process (no moto): the
             calls and this collection's own time, spot_pools vs spot_pool per pool (module
             starts not included: in-process)
  planner    the pure planner on 10,000 instances (bench/planner_bench.py's busy pool)
  throttle   a token-bucket model of EC2's documented limits (no moto): 12 overlapping
             schedules, each a run every minute over its own 50 pools, for an hour;
             throttled calls of spot_pools vs amazon.aws at the same work

Usage: make bench B=fleet_bench ARGS="--parts small,aws,big,planner,throttle"
"""

import argparse
import heapq
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)

from with_moto import fake_credentials_env  # noqa: E402  pylint: disable=wrong-import-position
from with_moto import start_local_ec2  # noqa: E402  pylint: disable=wrong-import-position

PLAY_HEAD = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/parkingspot.ec2.aws: {{region: us-east-1, endpoint_url: "{url}"}}
    group/amazon.aws.aws: {{region: us-east-1, endpoint_url: "{url}"}}
  vars_files: [pools.json]
  tasks:
"""

TASKS = {
    # One task, one module start, every pool.
    "spot_pools": """    - parkingspot.ec2.spot_pools:
        pools: "{{ pools }}"
""",
    # What runner_pool.yml did before spot_pools: one spot_pool task per pool.
    "spot_pool per pool": """    - parkingspot.ec2.spot_pool: "{{ item }}"
      loop: "{{ pools }}"
      loop_control: {label: "{{ item.name }}"}
""",
    "amazon.aws ec2_instance": """    - amazon.aws.ec2_instance:
        launch_template: {name: bench-spot}
        instance_type: m6i.large
        vpc_subnet_id: "{{ subnet }}"
        exact_count: "{{ item.desired }}"
        filters: {"tag:bench-pool": "{{ item.name }}", instance-state-name: [pending, running]}
        tags: {bench-pool: "{{ item.name }}"}
        wait: false
      loop: "{{ pools }}"
      loop_control: {label: "{{ item.name }}"}
""",
}


def request(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=600) as response:
        return json.loads(response.read() or b"{}")


def fixtures(direct):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=direct, region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="bench", LaunchTemplateData={"ImageId": image})
    ec2.create_launch_template(
        LaunchTemplateName="bench-spot",
        LaunchTemplateData={"ImageId": image, "InstanceMarketOptions": {"MarketType": "spot"}},
    )
    subnet = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])[0]
    return ec2, subnet


def pool_list(count, size, subnet):
    return [
        {
            "name": "bench-%02d" % k,
            "desired": size,
            "launch_template": {"name": "bench"},
            "instance_type": "m6i.large",
            "subnet_id": subnet,
        }
        for k in range(count)
    ]


def live_by_tag(ec2, key):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
            {"Name": "tag-key", "Values": [key]},
        ],
        MaxResults=1000,
    )
    held = {}
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                held.setdefault(tags[key], []).append(instance["InstanceId"])
    return held


def interrupt(ec2, key, share):
    """Terminate ``share`` of every pool's instances behind the tools' backs (the cloud took them)."""
    victims = []
    for ids in live_by_tag(ec2, key).values():
        victims += sorted(ids)[: max(1, int(len(ids) * share))]
    for start in range(0, len(victims), 1000):
        ec2.terminate_instances(InstanceIds=victims[start : start + 1000])
    return len(victims)


class Runner:
    def __init__(self, proxy_url, env, workdir):
        self.proxy_url, self.env, self.workdir = proxy_url, env, workdir

    def run(self, tool, pools, subnet):
        with open(os.path.join(self.workdir, "pools.json"), "w") as handle:
            json.dump({"pools": pools, "subnet": subnet}, handle)
        path = os.path.join(self.workdir, "play.yml")
        with open(path, "w") as handle:
            handle.write(PLAY_HEAD.format(url=self.proxy_url) + TASKS[tool])
        request(self.proxy_url + "/_proxy/reset", "POST")
        started = time.monotonic()
        done = subprocess.run(
            ["ansible-playbook", path], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
        )
        elapsed = time.monotonic() - started
        if done.returncode:
            sys.stderr.write(done.stdout.decode()[-3000:])
            raise SystemExit("%s failed" % tool)
        counts = request(self.proxy_url + "/_proxy/counts")
        starts = 1 if tool == "spot_pools" else len(pools)
        row = {"calls": sum(counts.values()), "by_action": counts, "seconds": round(elapsed, 1), "starts": starts}
        print(json.dumps({"tool": tool, **row}, sort_keys=True), flush=True)
        return row


def small(args, runner, direct):
    results = {}
    request(direct + "/moto-api/reset", "POST")
    ec2, subnet = fixtures(direct)
    pools = pool_list(args.pools, args.size, subnet)
    results["create spot_pools"] = runner.run("spot_pools", pools, subnet)
    results["no-change spot_pools"] = runner.run("spot_pools", pools, subnet)
    results["no-change spot_pool per pool"] = runner.run("spot_pool per pool", pools, subnet)
    results["interrupted"] = interrupt(ec2, "parkingspot:pool", 0.1)
    results["10% interrupted spot_pools"] = runner.run("spot_pools", pools, subnet)
    interrupt(ec2, "parkingspot:pool", 0.1)
    results["10% interrupted spot_pool per pool"] = runner.run("spot_pool per pool", pools, subnet)
    held = live_by_tag(ec2, "parkingspot:pool")
    results["live after"] = sum(len(v) for v in held.values())
    return results


def aws(args, runner, direct):
    """amazon.aws on a fresh API holding only its own pools (moto's calls cost more with every instance held)."""
    results = {}
    request(direct + "/moto-api/reset", "POST")
    ec2, subnet = fixtures(direct)
    some = pool_list(args.pools, args.size, subnet)[: args.aws_pools]
    results["create (measured)"] = runner.run("amazon.aws ec2_instance", some, subnet)
    results["no-change (measured)"] = runner.run("amazon.aws ec2_instance", some, subnet)
    interrupt(ec2, "bench-pool", 0.1)
    results["10% interrupted (measured)"] = runner.run("amazon.aws ec2_instance", some, subnet)
    results["pools measured"] = len(some)
    return results


def big(args, runner, direct):
    results = {}
    request(direct + "/moto-api/reset", "POST")
    ec2, subnet = fixtures(direct)
    pools = pool_list(args.pools, args.big_size, subnet)
    # Set up straight on moto, not measured: through the keeper, 10,000 launches would wait
    # for RunInstances' resource bucket (1000 instances, then 2 per second: 75 minutes).
    started = time.monotonic()
    for spec in pools:
        tags = [{"Key": "parkingspot:pool", "Value": spec["name"]}, {"Key": "parkingspot:market", "Value": "spot"}]
        ec2.run_instances(
            LaunchTemplate={"LaunchTemplateName": "bench"},
            InstanceType="m6i.large",
            SubnetId=subnet,
            MinCount=spec["desired"],
            MaxCount=spec["desired"],
            InstanceMarketOptions={"MarketType": "spot"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
    results["setup seconds (direct, not measured)"] = round(time.monotonic() - started, 1)
    results["no-change spot_pools"] = runner.run("spot_pools", pools, subnet)
    if not args.big_skip_per_pool:
        results["no-change spot_pool per pool"] = runner.run("spot_pool per pool", pools, subnet)
    return results


class StubEC2:
    """DescribeInstances answered from memory, 1000 instances a page, filtered on tag-key or pool tag values.

    For the 10,000-instance case: moto's DescribeInstances costs seconds per call per 1000
    instances held, so it cannot time this collection's own work at that size here.
    """

    def __init__(self, pools, size):
        import datetime

        launched = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.timezone.utc)
        self.instances = []
        for p in range(pools):
            for k in range(size):
                self.instances.append(
                    {
                        "InstanceId": "i-%08x%08x" % (p, k),
                        "State": {"Name": "running"},
                        "InstanceType": "m6i.large",
                        "LaunchTime": launched,
                        "InstanceLifecycle": "spot",
                        "Placement": {"AvailabilityZone": "us-east-1a"},
                        "SubnetId": "subnet-1",
                        "Tags": [
                            {"Key": "parkingspot:pool", "Value": "bench-%02d" % p},
                            {"Key": "parkingspot:market", "Value": "spot"},
                        ],
                    }
                )
        self.calls = {}
        self.cpu_seconds = 0.0

    def answer(self, operation, params):
        started = time.process_time()
        try:
            return self._answer(operation, params)
        finally:
            self.cpu_seconds += time.process_time() - started

    def _answer(self, operation, params):
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if operation != "DescribeInstances":
            raise AssertionError("a no-change run made a %s call" % operation)
        matching = self.instances
        for spec in params.get("Filters", []):
            if spec["Name"] == "tag-key":
                matching = [i for i in matching if any(t["Key"] in spec["Values"] for t in i["Tags"])]
            elif spec["Name"].startswith("tag:"):
                key = spec["Name"][4:]
                matching = [
                    i for i in matching if any(t["Key"] == key and t["Value"] in spec["Values"] for t in i["Tags"])
                ]
        start = int(params.get("NextToken") or 0)
        size = params.get("MaxResults") or 1000
        page = {"Reservations": [{"Instances": matching[start : start + size]}]}
        if start + size < len(matching):
            page["NextToken"] = str(start + size)
        return page


def big_stub(args):
    """spot_pools vs one spot_pool per pool on 10,000 instances, in-process, EC2 answered from memory."""
    import contextlib
    import io

    import botocore.client
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool
    from ansible_collections.parkingspot.ec2.plugins.modules import spot_pools

    stub = StubEC2(args.pools, args.big_size)
    original = botocore.client.BaseClient._make_api_call
    botocore.client.BaseClient._make_api_call = lambda self, op, params: stub.answer(op, params)
    pools = [
        {"name": "bench-%02d" % k, "desired": args.big_size, "image_id": "ami-1", "instance_type": "m6i.large"}
        for k in range(args.pools)
    ]

    def run(module, params):
        out = io.StringIO()
        with patch_module_args(dict(params, region="us-east-1")), contextlib.redirect_stdout(out):
            try:
                module.main()
            except SystemExit:
                pass
        result = json.loads(out.getvalue())
        assert not result.get("changed") and not result.get("msg"), result.get("msg")

    results = {}
    try:
        for label, work in (
            ("spot_pools", lambda: run(spot_pools, {"pools": pools})),
            ("spot_pool per pool", lambda: [run(spot_pool, p) for p in pools]),
        ):
            stub.calls, stub.cpu_seconds = {}, 0.0
            start, start_cpu = time.perf_counter(), time.process_time()
            work()
            results[label] = {
                "calls": dict(stub.calls),
                "seconds": round(time.perf_counter() - start, 2),
                "cpu_seconds": round(time.process_time() - start_cpu, 2),
                "cpu_seconds_without_the_stub": round(time.process_time() - start_cpu - stub.cpu_seconds, 2),
                "module_starts": 1 if label == "spot_pools" else len(pools),
            }
            print(json.dumps({"big (stub)": label, **results[label]}), flush=True)
    finally:
        botocore.client.BaseClient._make_api_call = original
    return results


def planner(args):
    import planner_bench

    from ansible_collections.parkingspot.ec2.plugins.module_utils import _planner

    busy = planner_bench.busy_pool(_planner, 10000)
    kwargs = dict(
        market="block",
        duration_minutes=60,
        renew_before_minutes=20,
        drain_timeout_seconds=300,
        fallback={"enabled": True, "max": 10000},
        quota={"max_vcpus": 100000, "per_owner_max_vcpus": 100000, "owner_used_vcpus": 0},
        vcpus={"m5.large": 2, "m5.xlarge": 4},
        launch_instance_types=["m5.large"],
    )
    wall, cpu = [], []
    for _call in range(args.planner_repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        _planner.plan_pool(busy, planner_bench.NOW, 10000, **kwargs)
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(wall), 1), "median_cpu_ms": round(statistics.median(cpu), 1)}


# --- the throttling model -------------------------------------------------------------------

# EC2's documented request buckets (burst, refill per second), shared by the whole account.
ACCOUNT_BUCKETS = {
    "describe": (100, 20),
    "RunInstances": (5, 2),
    "TerminateInstances": (100, 5),
    "CreateTags": (100, 10),
}


class Bucket:
    def __init__(self, burst, rate):
        self.burst, self.rate, self.tokens, self.stamp = burst, rate, float(burst), 0.0

    def refill(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now):
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_for(self, now):
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


def keeper_run(pools, size, interrupted_pools, pages):
    """The calls of one spot_pools run: (action, seconds before it, paced by the run's own buckets)."""
    calls = [("describe", 0.0, False)] * pages
    calls += [("RunInstances", 0.0, True)] * interrupted_pools
    return calls


def aws_run(pools, size, interrupted_pools, module_start):
    """The calls of one run of amazon.aws ec2_instance exact_count over the pools (measured: 2N+2 per pool)."""
    calls = []
    for k in range(pools):
        calls.append(("describe", module_start, False))
        calls += [("describe", 0.0, False)] * (2 * size + 1)
        if k < interrupted_pools:
            calls.append(("RunInstances", 0.0, False))
    return calls


def simulate(tool, args):
    """Throttled calls in an hour of 12 schedules, each starting a run of its own 50 pools every minute.

    A call takes ``latency`` seconds. A throttled call is retried after a jittered exponential
    backoff (as botocore and AWSRetry do). spot_pools paces its writes with its own copy of the
    buckets (it cannot see the other schedules' calls); amazon.aws does not pace.
    """
    rng = random.Random(7)
    account = {name: Bucket(*limits) for name, limits in ACCOUNT_BUCKETS.items()}
    accounts_instances = args.schedules * args.sim_pools * args.sim_size
    pages = math.ceil(accounts_instances / 1000)  # the tag-key read sees every pool of the account
    events = []
    seq = 0
    for schedule in range(args.schedules):
        offset = schedule * 60.0 / args.schedules
        for minute in range(args.sim_minutes):
            if tool == "spot_pools":
                calls = keeper_run(args.sim_pools, args.sim_size, args.sim_interrupted, pages)
                start_delay = args.module_start
            else:
                calls = aws_run(args.sim_pools, args.sim_size, args.sim_interrupted, args.module_start)
                start_delay = 0.0
            own = {name: Bucket(*limits) for name, limits in ACCOUNT_BUCKETS.items()}
            state = {"calls": calls, "index": 0, "attempt": 0, "own": own}
            heapq.heappush(events, (offset + minute * 60.0 + start_delay, seq, state))
            seq += 1
    throttled = total = 0
    while events:
        now, _seq, state = heapq.heappop(events)
        if state["index"] >= len(state["calls"]):
            continue
        action, before, paced = state["calls"][state["index"]]
        if before and state["attempt"] == 0 and not state.get("waited"):
            state["waited"] = True
            heapq.heappush(events, (now + before, _seq, state))
            continue
        if paced:
            wait = state["own"][action].wait_for(now)
            if wait > 0:
                heapq.heappush(events, (now + wait, _seq, state))
                continue
            state["own"][action].take(now)
        total += 1
        if account[action].take(now):
            state["index"] += 1
            state["attempt"] = 0
            state["waited"] = False
            heapq.heappush(events, (now + args.latency, _seq, state))
        else:
            throttled += 1
            state["attempt"] += 1
            backoff = min(20.0, 0.1 * 2 ** state["attempt"]) * rng.uniform(0.5, 1.0)
            heapq.heappush(events, (now + args.latency + backoff, _seq, state))
    return {"calls": total, "throttled": throttled}


def render(results):
    """Markdown tables of a run's results (also from a saved --json file with --render)."""
    lines = []

    def row(label, entry):
        actions = ", ".join("%s %d" % kv for kv in sorted(entry["by_action"].items()))
        lines.append(
            "| %s | %d | %s | %d | %.1f |" % (label, entry["calls"], actions, entry["starts"], entry["seconds"])
        )

    small = results.get("small")
    if small:
        lines += ["| run (moto, through ansible-playbook) | calls | by action | module starts | seconds |"]
        lines += ["|---|---:|---|---:|---:|"]
        for key in sorted(k for k in small if isinstance(small[k], dict)):
            row(key, small[key])
        lines += [
            "",
            "instances interrupted before each 10%% run: %s; live after: %s"
            % (small["interrupted"], small["live after"]),
        ]
        lines += [""]
    aws_part = results.get("aws")
    if aws_part:
        pools = aws_part["pools measured"]
        scale = results["args"]["pools"] / pools
        lines += [
            "| amazon.aws ec2_instance, %d pools measured | calls | by action | module starts | seconds |" % pools
        ]
        lines += ["|---|---:|---|---:|---:|"]
        for key in ("create (measured)", "no-change (measured)", "10% interrupted (measured)"):
            row(key, aws_part[key])
        for key in ("no-change (measured)", "10% interrupted (measured)"):
            entry = aws_part[key]
            lines.append(
                "| %s x %g = %d pools (extrapolated) | %d | | %d | %.0f |"
                % (
                    key.replace(" (measured)", ""),
                    scale,
                    results["args"]["pools"],
                    entry["calls"] * scale,
                    entry["starts"] * scale,
                    entry["seconds"] * scale,
                )
            )
        lines += [""]
    stub = results.get("big (stub)")
    if stub:
        lines += [
            "| 10,000 instances, EC2 answered in-process | calls | module starts | seconds | CPU s"
            " | CPU s without the stub |"
        ]
        lines += ["|---|---|---:|---:|---:|---:|"]
        for key, entry in sorted(stub.items()):
            calls = ", ".join("%s %d" % kv for kv in sorted(entry["calls"].items()))
            lines.append(
                "| %s | %s | %d | %.2f | %.2f | %.2f |"
                % (
                    key,
                    calls,
                    entry["module_starts"],
                    entry["seconds"],
                    entry["cpu_seconds"],
                    entry["cpu_seconds_without_the_stub"],
                )
            )
        lines += [""]
    if results.get("planner"):
        lines += [
            "planner, 10,000 instances (busy pool): median %(median_ms)s ms wall, %(median_cpu_ms)s ms CPU"
            % results["planner"],
            "",
        ]
    if results.get("throttle"):
        lines += [
            "| throttling model, 12 schedules x 50 pools, one hour | call attempts | throttled |",
            "|---|---:|---:|",
        ]
        for key, entry in sorted(results["throttle"].items()):
            lines.append("| %s | %d | %d |" % (key, entry["calls"], entry["throttled"]))
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="small,aws,bigstub,planner,throttle")
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--big-size", type=int, default=200)
    parser.add_argument("--big-skip-per-pool", action="store_true")
    parser.add_argument("--aws-pools", type=int, default=5)
    parser.add_argument("--planner-repeat", type=int, default=20)
    parser.add_argument("--schedules", type=int, default=12)
    parser.add_argument("--sim-pools", type=int, default=50)
    parser.add_argument("--sim-size", type=int, default=20)
    parser.add_argument("--sim-minutes", type=int, default=60)
    parser.add_argument("--sim-interrupted", type=int, default=0, help="pools with an interruption per run")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per API call in the model")
    parser.add_argument("--module-start", type=float, default=1.5, help="seconds per module start in the model")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--render", help="print the tables of a saved --json file and stop")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as handle:
            print(render(json.load(handle)))
        return 0
    parts = args.parts.split(",")
    results = {"args": vars(args)}
    if any(p in parts for p in ("small", "aws", "big")):
        direct, proxy_url, _state, stop = start_local_ec2()
        env = fake_credentials_env(direct)
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        try:
            with tempfile.TemporaryDirectory() as workdir:
                runner = Runner(proxy_url, env, workdir)
                if "small" in parts:
                    results["small"] = small(args, runner, direct)
                if "aws" in parts:
                    results["aws"] = aws(args, runner, direct)
                if "big" in parts:
                    results["big"] = big(args, runner, direct)
        finally:
            stop()
    if "bigstub" in parts:
        results["big (stub)"] = big_stub(args)
    if "planner" in parts:
        results["planner"] = planner(args)
    if "throttle" in parts:
        results["throttle"] = {tool: simulate(tool, args) for tool in ("spot_pools", "amazon.aws ec2_instance")}
    print(json.dumps(results, indent=1, sort_keys=True))
    print()
    print(render(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
