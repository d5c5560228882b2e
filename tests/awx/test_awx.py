# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX tier: the collection's playbooks run the way AWX runs them.

AWX hands a job to ansible-runner as a private data directory: ``project/`` (the project's
checkout), ``inventory/`` (with its ``group_vars``), ``env/extravars`` (template variables,
survey answers, the artifacts of earlier workflow nodes) and ``env/envvars`` (what the
credentials inject). These tests build such directories from the YAML snippets of
docs/awx.md, run them with ansible-runner against the local EC2 API behind the counting
proxy (tools/with_moto.py), and assert on what the API holds, on the job's status and on the
artifacts of its ``playbook_on_stats`` event.
"""

import datetime
import http.server
import json
import os
import re
import textwrap
import threading
import urllib.request

import ansible_runner
import boto3
import jinja2
import jinja2.nativetypes
import pytest
import yaml

PROXY = os.environ.get("MOTO_URL")
DIRECT = os.environ.get("MOTO_DIRECT_URL")
pytestmark = pytest.mark.skipif(not (PROXY and DIRECT), reason="needs the local EC2 API (run through make test-awx)")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUIDE = os.path.join(ROOT, "docs", "awx.md")
# The snippet region; the tests read it back from the guide's inventory snippet.
REGION = "eu-west-1"
WRITE_PREFIXES = ("Run", "Create", "Terminate", "Delete", "Modify", "Cancel", "Request", "Attach", "Detach", "Stop")


def guide_snippets():
    """The guide's YAML snippets by the path their first line names (``# playbooks/keeper.yml``)."""
    with open(GUIDE, encoding="utf-8") as handle:
        text = handle.read()
    snippets = {}
    for indent, block in re.findall(r"^( *)```yaml\n(.*?)^\1```", text, re.M | re.S):
        block = textwrap.dedent(block) if indent else block
        first, body = block.split("\n", 1)
        match = re.match(r"# (\S+)$", first)
        assert match, "every YAML snippet of docs/awx.md names its file on the first line: %r" % first
        snippets[match.group(1)] = body
    return snippets


SNIPPETS = guide_snippets()


def test_every_guide_snippet_is_used_by_this_tier():
    used = set()
    with open(__file__, encoding="utf-8") as handle:
        source = handle.read()
    for path in SNIPPETS:
        if '"%s"' % path in source:
            used.add(path)
    assert used == set(SNIPPETS), "snippets of docs/awx.md not run here: %s" % sorted(set(SNIPPETS) - used)


# ----------------------------------------------------------------------------- the local API


def proxy(path, method="GET"):
    request = urllib.request.Request(PROXY + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def writes():
    """Write calls the proxy has seen since the last reset (name -> count)."""
    return {name: n for name, n in proxy("/_proxy/counts").items() if name.startswith(WRITE_PREFIXES)}


@pytest.fixture(scope="module")
def api():
    """The local API, reset once (a reset reloads moto's images: seconds), with the guide's template."""
    urllib.request.urlopen(urllib.request.Request(DIRECT + "/moto-api/reset", method="POST", data=b""), timeout=30)
    client = boto3.client("ec2", endpoint_url=DIRECT, region_name=REGION)
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    client.create_launch_template(
        LaunchTemplateName="ci-runner", LaunchTemplateData={"ImageId": image, "InstanceType": "m6i.large"}
    )
    return client


@pytest.fixture
def ec2(api):
    """No live instance left by an earlier test, and the proxy's counts cleared."""
    pages = api.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    live = [i["InstanceId"] for r in pages["Reservations"] for i in r["Instances"]]
    if live:
        api.terminate_instances(InstanceIds=live)
    proxy("/_proxy/reset", "POST")
    return api


def pool_instances(client, pool):
    pages = client.describe_instances(
        Filters=[
            {"Name": "tag:parkingspot:pool", "Values": [pool]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return sorted(i["InstanceId"] for r in pages["Reservations"] for i in r["Instances"])


# ----------------------------------------------------------------------------- AWX's job runs


class Job:
    def __init__(self, runner, data_dir):
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stdout = runner.stdout.read()
        stats = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        self.artifacts = stats[-1]["event_data"].get("artifact_data", {}) if stats else {}
        self.data_dir = data_dir

    def __repr__(self):
        return "job %s (rc %s) artifacts %s\n%s" % (self.status, self.rc, self.artifacts, self.stdout[-3000:])


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run_job(data_dir, playbook, group_vars=None, extravars=None, envvars=None, check=False, files=None):
    """One AWX job: the guide's project and inventory, plus this job's variables and credentials.

    ``group_vars`` holds more files of inventory/group_vars/all (the guide's parkingspot.yml is
    always there unless replaced); ``files`` more files of the data directory.
    """
    project = os.path.join(data_dir, "project")
    for name in ("playbooks/keeper.yml", "playbooks/runner_host.yml", "playbooks/usage_report.yml"):
        write(os.path.join(project, name), "---\n" + SNIPPETS[name])
    write(os.path.join(project, "playbooks/pool_summary.yml"), "---\n" + SNIPPETS["playbooks/pool_summary.yml"])
    write(os.path.join(data_dir, "inventory/hosts.yml"), "---\n" + SNIPPETS["inventory/hosts.yml"])
    all_vars = {"parkingspot.yml": SNIPPETS["inventory/group_vars/all/parkingspot.yml"]}
    # A local, EC2-compatible endpoint: what parkingspot_endpoint_url is for.
    all_vars["local_api.yml"] = yaml.safe_dump({"parkingspot_endpoint_url": PROXY})
    all_vars.update(group_vars or {})
    for name, text in all_vars.items():
        if text is not None:
            write(os.path.join(data_dir, "inventory/group_vars/all", name), "---\n" + text)
    write(os.path.join(data_dir, "env/extravars"), json.dumps(extravars or {}))
    for name, text in (files or {}).items():
        write(os.path.join(data_dir, name), text)
    # AWX runs with no ansible.cfg of ours, and only what the credentials inject; a None in
    # envvars removes the variable (ansible-runner starts from this process's environment).
    envvars = dict({"ANSIBLE_CONFIG": None, "ANSIBLE_NOCOLOR": "1"}, **(envvars or {}))
    saved = {name: os.environ.pop(name) for name, value in envvars.items() if value is None and name in os.environ}
    try:
        runner = ansible_runner.run(
            private_data_dir=data_dir,
            playbook=playbook,
            inventory=os.path.join(data_dir, "inventory"),
            cmdline="--check --diff" if check else None,
            envvars={name: value for name, value in envvars.items() if value is not None},
            quiet=True,
            timeout=240,
        )
    finally:
        os.environ.update(saved)
    return Job(runner, data_dir)


def failed_lines(job):
    """The messages of the final 'pool X failed: ...' items."""
    return sorted(
        e["event_data"]["res"]["msg"]
        for e in job.events
        if e.get("event") == "runner_item_on_failed" and "msg" in e["event_data"].get("res", {})
    )


# ----------------------------------------------------------------------------- the tests


def test_a_workflow_of_keepers_with_pools_from_group_vars(ec2, tmp_path):
    # Node 1: the keeper with the guide's inventory: its pools come from group_vars.
    first = run_job(str(tmp_path / "node1"), "playbooks/keeper.yml")
    assert first.status == "successful", first
    results = first.artifacts["parkingspot_pool_results"]
    assert sorted(results) == ["ci-large", "ci-linux"], first
    for name in ("ci-linux", "ci-large"):
        assert results[name]["outcome"] == "changed", results
        assert results[name]["desired"] >= 1
        assert len(pool_instances(ec2, name)) == results[name]["desired"] == results[name]["launched"]
    # Nothing under an input's name: the next node must not get a new parkingspot_pools.
    assert "parkingspot_pools" not in first.artifacts
    assert "template for task args is unsafe" not in first.stdout, first

    # Node 2: the second account's keeper, its own inventory, node 1's artifacts as extra vars.
    account_b = yaml.safe_dump(
        {
            "parkingspot_region": REGION,
            "parkingspot_pools": [
                {"name": "ci-arm", "desired": 2, "launch_template": {"name": "ci-runner"}, "instance_type": "m7g.large"}
            ],
        }
    )
    second = run_job(
        str(tmp_path / "node2"),
        "playbooks/keeper.yml",
        group_vars={"parkingspot.yml": account_b},
        extravars=first.artifacts,
    )
    assert second.status == "successful", second
    assert sorted(second.artifacts["parkingspot_pool_results"]) == ["ci-arm"]
    assert len(pool_instances(ec2, "ci-arm")) == 2
    assert len(pool_instances(ec2, "ci-linux")) == results["ci-linux"]["desired"]

    # Node 3: AWX merges the artifacts of every ancestor; the later node's keys win.
    third = run_job(
        str(tmp_path / "node3"), "playbooks/pool_summary.yml", extravars=dict(first.artifacts, **second.artifacts)
    )
    assert third.status == "successful", third
    assert re.search(r"ci-arm: changed, 2 launched, 0 terminated", third.stdout), third


def test_a_bad_pool_between_two_good_ones_fails_alone(ec2, tmp_path):
    pools = yaml.safe_load(SNIPPETS["inventory/group_vars/all/parkingspot.yml"])
    good = pools["parkingspot_pools"]
    # A pool whose launch template was deleted since the pool was defined.
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="ci-retired", LaunchTemplateData={"ImageId": image})
    ec2.delete_launch_template(LaunchTemplateName="ci-retired")
    bad = {
        "name": "ci-gone",
        "desired": 1,
        "launch_template": {"name": "ci-retired"},
        "instance_type": "m6i.large",
    }
    pools["parkingspot_pools"] = [good[0], bad, good[1]]
    job = run_job(str(tmp_path), "playbooks/keeper.yml", group_vars={"parkingspot.yml": yaml.safe_dump(pools)})
    assert job.status == "failed", job
    results = job.artifacts["parkingspot_pool_results"]
    assert sorted(results) == ["ci-gone", "ci-large", "ci-linux"], job
    assert results["ci-gone"]["outcome"] == "failed"
    assert results["ci-gone"]["message"]
    for name in ("ci-linux", "ci-large"):
        assert results[name]["outcome"] == "changed"
        assert len(pool_instances(ec2, name)) == results[name]["desired"] >= 1
    assert pool_instances(ec2, "ci-gone") == []
    lines = failed_lines(job)
    assert len(lines) == 1 and lines[0].startswith("pool ci-gone failed: "), lines


def test_a_check_job_writes_nothing(ec2, tmp_path):
    job = run_job(str(tmp_path), "playbooks/keeper.yml", check=True)
    assert job.status == "successful", job
    results = job.artifacts["parkingspot_pool_results"]
    assert results["ci-linux"]["launched"] >= 1 and results["ci-large"]["launched"] == 1, results
    assert writes() == {}
    assert pool_instances(ec2, "ci-linux") == pool_instances(ec2, "ci-large") == []


def test_survey_names_select_exact_pools(ec2, tmp_path):
    job = run_job(str(tmp_path), "playbooks/keeper.yml", extravars={"parkingspot_pool_names": "ci-large"})
    assert job.status == "successful", job
    assert sorted(job.artifacts["parkingspot_pool_results"]) == ["ci-large"]
    assert pool_instances(ec2, "ci-linux") == []

    proxy("/_proxy/reset", "POST")
    unknown = run_job(str(tmp_path / "unknown"), "playbooks/keeper.yml", extravars={"parkingspot_pool_names": ["ci"]})
    assert unknown.status == "failed"
    assert re.search(r"unknown: ci;\s+known: ci-linux, ci-large", unknown.stdout), unknown
    assert proxy("/_proxy/counts") == {}


def test_runner_host_reads_its_inputs_from_group_vars(tmp_path):
    # A value only the inventory gives: the playbook must see it (and refuse it) before any change.
    job = run_job(
        str(tmp_path),
        "playbooks/runner_host.yml",
        group_vars={"runner.yml": yaml.safe_dump({"runner_host_ci": "circleci"})},
    )
    assert job.status == "failed", job
    assert "runner_host_ci must be gitlab_runner, github_runner, buildkite_agent or none, got circleci" in job.stdout


def test_usage_report_publishes_its_files(ec2, tmp_path):
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for pool in ("ci-linux", "ci-large"):
        ec2.run_instances(
            ImageId=image,
            InstanceType="m6i.large",
            MinCount=1,
            MaxCount=1,
            InstanceMarketOptions={"MarketType": "spot"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "parkingspot:pool", "Value": pool}]}],
        )
    dest = str(tmp_path / "reports")
    job = run_job(
        str(tmp_path / "report"),
        "playbooks/usage_report.yml",
        extravars={
            "parkingspot_report_dest": dest,
            "parkingspot_report_pools": ["ci-linux", "ci-large"],
            "parkingspot_report_lookback_hours": 1,
        },
    )
    assert job.status == "successful", job
    files = job.artifacts["parkingspot_report_files"]
    assert files["csv"] == os.path.join(dest, "usage-report.csv") and os.path.isfile(files["csv"])
    assert files["html"] == os.path.join(dest, "usage-report.html") and os.path.isfile(files["html"])
    assert {row["name"] for row in files["summary"] if row["kind"] == "pool"} == {"ci-linux", "ci-large"}
    # Read in the inventory's region, where the instances are.
    assert all(row["instances"] >= 1 for row in files["summary"] if row["kind"] == "pool"), files


# ----------------------------------------------------------------------------- credentials


class _MetadataStandIn(http.server.BaseHTTPRequestHandler):
    """The few IMDSv2 paths boto3 reads for an instance profile's credentials."""

    hits = []

    def log_message(self, *args):
        pass

    def _reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._reply(200, "token-1")
        return self._reply(400, "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            return self._reply(401, "")
        self.hits.append(self.path)
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self._reply(200, "awx-node")
        if self.path == base + "awx-node":
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
            body = {
                "Code": "Success",
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIANODE",
                "SecretAccessKey": "node-secret",
                "Token": "node-token",
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": "2026-01-01T00:00:00Z",
            }
            return self._reply(200, json.dumps(body))
        return self._reply(404, "")


@pytest.fixture
def metadata():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetadataStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _MetadataStandIn.hits = []
    yield "http://127.0.0.1:%d/" % server.server_address[1]
    server.shutdown()


def inject(injector_name, inputs, data_dir):
    """What AWX does with a custom credential type: render the injector's files and env."""
    injectors = yaml.safe_load(SNIPPETS[injector_name])
    env_jinja = jinja2.Environment(undefined=jinja2.StrictUndefined)
    filenames = {}
    files = {}
    for key, template in injectors.get("file", {}).items():
        name = key.split(".", 1)[1] if "." in key else "file"
        path = os.path.join(data_dir, "credential_%s" % name)
        files[path] = env_jinja.from_string(template).render(**inputs)
        filenames[name] = path
    for path, text in files.items():
        write(path, text)
    context = dict(inputs, tower={"filename": filenames})
    return {key: env_jinja.from_string(value).render(**context) for key, value in injectors["env"].items()}


def credential_env(injected, metadata_url):
    env = {
        name: None for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
    }
    env.update(injected)
    # The role is assumed through the local API's STS; the node's identity comes from the stand-in.
    env["AWS_ENDPOINT_URL_STS"] = PROXY
    if metadata_url:
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = metadata_url
    return env


def test_credential_type_inputs_name_the_injected_fields():
    inputs = yaml.safe_load(SNIPPETS["credential_type/inputs.yml"])
    ids = {field["id"] for field in inputs["fields"]}
    assert ids == {"role_arn", "region"} and inputs["required"] == ["role_arn"]


@pytest.mark.parametrize("injector", ["credential_type/injectors.yml", "credential_type/injectors-keys.yml"])
def test_the_role_credential_reconciles_the_pools(ec2, tmp_path, metadata, injector):
    inputs = {"role_arn": "arn:aws:iam::123456789012:role/parkingspot", "region": REGION}
    if injector.endswith("keys.yml"):
        inputs.update(access_key="AKIAKEYS", secret_key="keys-secret")
        metadata = None
    injected = inject(injector, inputs, str(tmp_path / "credential"))
    job = run_job(str(tmp_path / "job"), "playbooks/keeper.yml", envvars=credential_env(injected, metadata))
    assert job.status == "successful", job
    counts = proxy("/_proxy/counts")
    assert counts.get("AssumeRole", 0) >= 1, counts
    if metadata:
        assert "/latest/meta-data/iam/security-credentials/awx-node" in _MetadataStandIn.hits
    assert len(pool_instances(ec2, "ci-large")) == 1


def test_a_profile_next_to_access_keys_is_refused(ec2, tmp_path, metadata):
    """Why the guide says one credential per job template: amazon.aws refuses both at once."""
    inputs = {"role_arn": "arn:aws:iam::123456789012:role/parkingspot", "region": REGION}
    injected = inject("credential_type/injectors.yml", inputs, str(tmp_path / "credential"))
    env = credential_env(injected, metadata)
    env.update(AWS_ACCESS_KEY_ID="AKIAKEYS", AWS_SECRET_ACCESS_KEY="keys-secret")
    job = run_job(str(tmp_path / "job"), "playbooks/keeper.yml", envvars=env)
    assert job.status == "failed"
    assert "profile and access tokens" in job.stdout, job
    assert writes() == {}


def ruleset(name):
    """The first rule set of the collection's rulebook ``name``."""
    with open(os.path.join(ROOT, "extensions", "eda", "rulebooks", name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)[0]


def test_the_activation_variables_fill_the_controller_rulebook():
    """EDA controller is not run here: the guide's activation variables must at least render the
    controller rulebook's source and launch action, and name the keeper template of the guide."""
    variables = yaml.safe_load(SNIPPETS["activation/variables.yml"])
    rulebook = ruleset("spot_interruptions_controller.yml")
    strict = jinja2.Environment(undefined=jinja2.StrictUndefined)
    source = rulebook["sources"][0]["parkingspot.ec2.spot_interruptions"]
    rendered = {key: strict.from_string(value).render(**variables) for key, value in source.items()}
    assert rendered == {"queue_name": "parkingspot-spot-events", "region": "eu-west-1"}
    launch = rulebook["rules"][0]["action"]["run_job_template"]
    assert strict.from_string(launch["name"]).render(**variables) == "ParkingSpot keeper"
    assert strict.from_string(launch["organization"]).render(**variables) == "Default"
    with open(GUIDE, encoding="utf-8") as handle:
        assert "| ParkingSpot keeper | `playbooks/keeper.yml` |" in handle.read()


def controller_job_vars(event):
    """The extra vars the controller rulebook's run_job_template gives the keeper job for ``event``
    (rendered to native values, as ansible-rulebook renders them)."""
    rulebook = ruleset("ci_queue_controller.yml")
    templates = rulebook["rules"][0]["action"]["run_job_template"]["job_args"]["extra_vars"]
    native = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    return {name: native.from_string(text).render(event=event) for name, text in templates.items()}


def test_a_controller_job_for_the_queue_sizes_the_pools_it_names(ec2, tmp_path):
    # What the ci_webhook source (combine_pools) emits for a window in which ci-linux's queue grew.
    event = {
        "pools": ["ci-linux"],
        "demands": {"ci-linux": {"queued": 4, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:05.000000Z"}},
    }
    extravars = controller_job_vars(event)
    assert extravars["parkingspot_run_lock"] == {"reuse_read_seconds": 30}
    # Every AWX job runs in a container of its own: nothing of the run lock is kept between jobs.
    fresh = {"XDG_CACHE_HOME": str(tmp_path / "container1")}
    job = run_job(str(tmp_path / "grown"), "playbooks/keeper.yml", extravars=extravars, envvars=fresh)
    assert job.status == "successful", job
    results = job.artifacts["parkingspot_pool_results"]
    assert sorted(results) == ["ci-linux"] and results["ci-linux"]["launched"] == 4, results
    runners = pool_instances(ec2, "ci-linux")
    assert len(runners) == 4 and pool_instances(ec2, "ci-large") == []

    # A job for counts taken before those (queued 1), in a new container: the runners just launched
    # are protected by min_running_minutes, so nothing is drained.
    proxy("/_proxy/reset", "POST")
    older = {"queued": 1, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:01.000000Z"}
    stale = controller_job_vars({"pools": ["ci-linux"], "demands": {"ci-linux": older}})
    fresh = {"XDG_CACHE_HOME": str(tmp_path / "container2")}
    job = run_job(str(tmp_path / "stale"), "playbooks/keeper.yml", extravars=stale, envvars=fresh)
    assert job.status == "successful", job
    assert job.artifacts["parkingspot_pool_results"]["ci-linux"]["desired"] < 4, job.artifacts  # its own counts
    assert pool_instances(ec2, "ci-linux") == runners and writes() == {}

    # A check job for a larger queue plans the launch and writes nothing.
    more = {"queued": 6, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:09.000000Z"}
    check = controller_job_vars({"pools": ["ci-linux"], "demands": {"ci-linux": more}})
    job = run_job(str(tmp_path / "check"), "playbooks/keeper.yml", extravars=check, check=True)
    assert job.status == "successful", job
    assert job.artifacts["parkingspot_pool_results"]["ci-linux"]["launched"] == 2, job.artifacts
    assert writes() == {} and pool_instances(ec2, "ci-linux") == runners

    # scaling.max (6 in the guide's pool) bounds the queue: 9 queued still keeps 6.
    most = {"queued": 9, "busy": 0, "retries": 0, "counted_at": "2026-12-02T10:00:11.000000Z"}
    job = run_job(
        str(tmp_path / "most"),
        "playbooks/keeper.yml",
        extravars=controller_job_vars({"pools": ["ci-linux"], "demands": {"ci-linux": most}}),
    )
    assert job.status == "successful", job
    assert len(pool_instances(ec2, "ci-linux")) == 6
