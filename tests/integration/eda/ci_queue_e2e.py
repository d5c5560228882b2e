# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end run of extensions/eda/rulebooks/ci_queue.yml under ansible-rulebook, offline.

Signed GitHub workflow_job and GitLab job deliveries (the sample payloads of the unit tests) are
posted to the ci_webhook source on 127.0.0.1 -> rulebook -> run_playbook. The keeper playbook is
replaced by a stand-in that records the pool and the demand it was given, so this checks the
wiring (which pool, which demand, how often), not the keeper itself.

Needs ANSIBLE_RULEBOOK (default: ansible-rulebook on PATH) with ansible-core beside it, and
Java 17 for its rule engine. Exit code 0 when every check passed.
"""

import hashlib
import hmac
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from e2e_common import ROOT
from e2e_common import Rulebook
from e2e_common import free_port
from e2e_common import rulebook_command

DATA = os.path.join(ROOT, "tests", "unit", "extensions", "eda", "plugins", "event_source", "data")
SECRET = "e2e-github-secret"
TOKEN = "e2e-gitlab-token"


def sample(name):
    with open(os.path.join(DATA, name)) as handle:
        return json.load(handle)


def post(port, body, headers):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def github(port, action, job_id, labels, secret=SECRET):
    payload = sample("github_workflow_job.json")
    payload["action"] = action
    payload["workflow_job"].update(id=job_id, status=action, labels=labels)
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }
    return post(port, body, headers)


def gitlab(port, status, job_id, tags):
    payload = sample("gitlab_job.json")
    payload.update(build_status=status, build_id=job_id, build_tags=tags)
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Job Hook",
        "X-Gitlab-Token": TOKEN,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
    }
    return post(port, json.dumps(payload).encode(), headers)


def wait_listening(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    return None


def main():
    rulebook_cmd = rulebook_command()
    if not rulebook_cmd:
        return 2
    port = free_port()
    rulebook = Rulebook(
        tempfile.mkdtemp(prefix="parkingspot-ci-queue-e2e-"),
        rulebook_cmd,
        "{'pools': parkingspot_pool_names, 'demands': parkingspot_demands}",
    )
    env = rulebook.env(PARKINGSPOT_GITHUB_WEBHOOK_SECRET=SECRET, PARKINGSPOT_GITLAB_WEBHOOK_TOKEN=TOKEN)
    pools = [
        {"name": "ci-linux", "labels": ["self-hosted", "linux", "x64"]},
        {"name": "ci-docker", "labels": ["linux", "docker"]},
    ]
    failures = []
    rulebook.start("ci_queue", {"parkingspot_ci_pools": pools, "parkingspot_ci_port": port}, env)
    runs = rulebook.runs

    try:
        if wait_listening(port, time.monotonic() + 120) is None:
            failures.append("the ci_webhook source never listened")
            raise RuntimeError
        statuses = [github(port, "queued", job_id, ["self-hosted", "linux"]) for job_id in (1, 2, 3)]
        statuses.append(github(port, "in_progress", 1, ["self-hosted", "linux"]))
        statuses.append(gitlab(port, "pending", 50, ["docker"]))
        statuses.append(github(port, "queued", 4, ["self-hosted", "linux"], secret="wrong"))
        statuses.append(github(port, "queued", 5, ["windows"]))
        if statuses != [202] * 5 + [401, 202]:
            failures.append(f"HTTP statuses {statuses}")
        posted = time.monotonic()
        deadline = posted + 90

        def last(pool):
            # Runs may overlap (execution_strategy: parallel): the newest counts are the ones that hold.
            mine = [run["demands"][pool] for run in runs() if pool in (run.get("demands") or {})]
            return max(mine, key=lambda demand: demand.get("counted_at", "")) if mine else None

        want = {"ci-linux": {"queued": 2, "busy": 1, "retries": 0}, "ci-docker": {"queued": 1, "busy": 0, "retries": 0}}

        def settled():
            return all(
                last(pool) is not None
                # retries is sent only while re-runs wait; the keeper reads a missing one as 0
                and dict({"retries": 0}, **{k: int(v) for k, v in last(pool).items() if k != "counted_at"}) == demand
                for pool, demand in want.items()
            )

        while time.monotonic() < deadline and rulebook.running() and not settled():
            time.sleep(0.5)
        latency = time.monotonic() - posted
        time.sleep(5)  # a run for the refused or unmatched delivery would show up now
        got = runs()
        if not settled():
            failures.append(f"keeper runs {got}, expected the last ones to carry {want}")
        if len(got) > 3:
            failures.append(f"{len(got)} keeper runs within about one debounce window (one event per window)")
        if any(
            not set(run["pools"]) <= {"ci-linux", "ci-docker"} or set(run["pools"]) != set(run["demands"])
            for run in got
        ):
            failures.append(f"a keeper run for an unknown pool, or pools without their demands: {got}")
        stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
        if not all(stamp.fullmatch(str(d.get("counted_at", ""))) for run in got for d in run["demands"].values()):
            failures.append(f"a keeper run without the demand's counted_at: {got}")
        status = wait_listening(port, time.monotonic() + 5) or {}
        if status.get("refused", {}).get("bad_signature") != 1:
            failures.append(f"refusals not counted: {status}")
        print(f"ci_queue rulebook: {len(got)} keeper run(s); demand reached the keeper {latency:.1f} s after posting")
    except RuntimeError:
        pass
    finally:
        output = rulebook.stop()
    if "match no pool" not in output:
        failures.append("no log line for the job whose labels match no pool")
    return rulebook.verdict("ci_queue rulebook", failures, output)


if __name__ == "__main__":
    sys.exit(main())
