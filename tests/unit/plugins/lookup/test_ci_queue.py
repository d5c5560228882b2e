# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ci_queue lookup against a fake GitHub / GitLab API on 127.0.0.1: counts per label, pages,
rate limits and errors (last-known or zero, a warning, no failure), configuration errors (fail)."""

import json
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs
from urllib.parse import urlparse

import pytest
import yaml
from ansible import constants
from ansible.errors import AnsibleError

from ansible_collections.parkingspot.ec2.plugins.lookup import ci_queue

NAME = "parkingspot.ec2.ci_queue"
# What the plugin loader does with the options of DOCUMENTATION, without installing Ansible's
# collection finder in the test process (the other test modules import the collection directly).
constants.config.initialize_plugin_configuration_definitions(
    "lookup", NAME, yaml.safe_load(ci_queue.DOCUMENTATION)["options"]
)

TOKEN = "ghp_not-a-real-token-but-secret"
LINUX = ["self-hosted", "linux", "x64"]


class FakeAPI:
    """Routes ``(path, frozen query)`` -> (status, headers, body); records every request."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.fail = None  # (status, headers) answered to every request while set
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parsed = urlparse(self.path)
                query = {k: v for k, v in parse_qs(parsed.query).items() if k != "per_page"}
                api.requests.append((parsed.path, query, dict(self.headers)))
                if api.fail:
                    status, headers, body = api.fail[0], api.fail[1], {"message": "slow down"}
                else:
                    status, headers, body = api.routes.get(
                        (parsed.path, json.dumps(query, sort_keys=True)), (404, {}, {"message": "Not Found"})
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value.replace("{base}", api.url))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, path, query, body, status=200, headers=None):
        self.routes[(path, json.dumps(query, sort_keys=True))] = (status, headers or {}, body)


@pytest.fixture
def api():
    fake = FakeAPI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(ci_queue.display, "warning", lambda msg, *a, **k: seen.append(msg))
    return seen


def lookup(api, tmp_path, provider="github", **options):
    options.setdefault("api_url", api.url)
    options.setdefault("token", TOKEN)
    options.setdefault("cache_path", str(tmp_path / "cache.json"))
    options.setdefault("labels", LINUX)
    if provider == "github":
        options.setdefault("repos", ["example/app"])
    else:
        options.setdefault("projects", ["example/app"])
    plugin = ci_queue.LookupModule()
    plugin._load_name = NAME
    (result,) = plugin.run([provider], {}, **options)
    return result


def job(job_id, status, labels=None):
    return {"id": job_id, "status": status, "labels": LINUX if labels is None else labels}


def github_queue(api):
    base = "/repos/example/app/actions"
    api.route(
        base + "/runs",
        {"status": ["queued"]},
        {"workflow_runs": [{"id": 1}]},
        headers={"Link": '<{base}%s/runs?status=queued&page=2>; rel="next"' % base},
    )
    api.route(base + "/runs", {"status": ["queued"], "page": ["2"]}, {"workflow_runs": [{"id": 3}]})
    api.route(base + "/runs", {"status": ["in_progress"]}, {"workflow_runs": [{"id": 2}, {"id": 3}]})
    api.route(
        base + "/runs/1/jobs",
        {"filter": ["latest"]},
        {"jobs": [job(10, "queued"), job(11, "queued", ["windows"]), job(12, "queued", ["Linux"])]},
    )
    api.route(base + "/runs/2/jobs", {"filter": ["latest"]}, {"jobs": [job(20, "in_progress"), job(21, "completed")]})
    # Run 3 shows up under both statuses (it moved between the reads): its jobs count once.
    api.route(base + "/runs/3/jobs", {"filter": ["latest"]}, {"jobs": [job(30, "queued"), job(31, "in_progress")]})


def test_github_counts_jobs_whose_labels_the_pool_covers(api, tmp_path, warnings):
    github_queue(api)
    assert lookup(api, tmp_path) == {"queued": 3, "busy": 2}
    assert all(headers["Authorization"] == "Bearer " + TOKEN for _path, _query, headers in api.requests)
    assert warnings == []


def test_gitlab_counts_pending_and_running_jobs_by_tag(api, tmp_path, warnings):
    api.route(
        "/projects/example%2Fapp/jobs",
        {"scope[]": ["pending", "running"]},
        [
            {"id": 1, "status": "pending", "tag_list": ["linux"]},
            {"id": 2, "status": "pending", "tag_list": ["gpu"]},
            {"id": 3, "status": "running", "tag_list": ["linux", "docker"]},
            {"id": 4, "status": "running", "tag_list": []},
        ],
    )
    assert lookup(api, tmp_path, "gitlab", labels=["linux", "docker"]) == {"queued": 1, "busy": 2}
    assert api.requests[0][2]["Private-Token"] == TOKEN


def test_rate_limit_returns_last_known_counts_and_backs_off(api, tmp_path, warnings):
    github_queue(api)
    assert lookup(api, tmp_path) == {"queued": 3, "busy": 2}
    api.fail = (403, {"Retry-After": "120", "X-RateLimit-Remaining": "0"})
    assert lookup(api, tmp_path) == {"queued": 3, "busy": 2}
    assert "rate limit" in warnings[-1] and "counts read" in warnings[-1]
    calls = len(api.requests)
    api.fail = None
    # Within Retry-After the API is not called again, even though it would answer now.
    assert lookup(api, tmp_path) == {"queued": 3, "busy": 2}
    assert len(api.requests) == calls
    assert all(TOKEN not in message for message in warnings)


def test_secondary_limit_without_last_known_returns_zero(api, tmp_path, warnings):
    api.fail = (429, {"Retry-After": "30"})
    assert lookup(api, tmp_path) == {"queued": 0, "busy": 0}
    assert "returning zero" in warnings[-1]


def test_stale_last_known_is_not_used(api, tmp_path, warnings):
    github_queue(api)
    lookup(api, tmp_path)
    cache = tmp_path / "cache.json"
    state = json.loads(cache.read_text())
    for entry in state["counts"].values():
        entry["at"] -= 3600
    cache.write_text(json.dumps(state))
    api.fail = (502, {})
    assert lookup(api, tmp_path) == {"queued": 0, "busy": 0}
    assert "HTTP 502" in warnings[-1]


def test_unreachable_api_returns_zero(tmp_path, warnings):
    class Gone:
        url = "http://127.0.0.1:9"

    assert lookup(Gone, tmp_path, timeout=2) == {"queued": 0, "busy": 0}
    assert "unreachable" in warnings[-1]


@pytest.mark.parametrize("status", [401, 404])
def test_configuration_errors_fail_without_the_token(api, tmp_path, status):
    api.fail = (status, {})
    with pytest.raises(AnsibleError) as info:
        lookup(api, tmp_path)
    assert "HTTP %d" % status in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_403_without_rate_limit_headers_is_a_permission_error(api, tmp_path):
    api.fail = (403, {})
    with pytest.raises(AnsibleError, match="HTTP 403"):
        lookup(api, tmp_path)


@pytest.mark.parametrize(
    "provider, options, word",
    [
        ("bitbucket", {}, "github or gitlab"),
        ("github", {"repos": []}, "repos"),
        ("github", {"repos": ["no-slash"]}, "repos"),
        ("gitlab", {"projects": []}, "projects"),
    ],
)
def test_bad_options_are_named(api, tmp_path, provider, options, word):
    with pytest.raises(AnsibleError, match=word):
        lookup(api, tmp_path, provider, **options)
    assert api.requests == []
