# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: ci_queue
short_description: Count the CI jobs that wait for and run on a runner pool (GitHub Actions, GitLab CI)
version_added: 0.1.0
description:
  - Returns C({queued, busy}) for one pool, ready for the O(parkingspot.ec2.spot_pool#module:demand) option, counting
    the jobs whose labels (GitHub C(runs-on)) or tags (GitLab) are all among O(labels), queued and running.
  - "GitHub: for each repository in O(repos), C(GET /repos/{owner}/{repo}/actions/runs?status=queued) and
    C(?status=in_progress), then the jobs of each run (C(/actions/runs/{id}/jobs)) with their labels."
  - "GitLab: for each project in O(projects), C(GET /projects/{id}/jobs?scope[]=pending&scope[]=running) with
    each job's C(tag_list)."
  - Made for AWX / Automation Controller schedules without Event-Driven Ansible, every few minutes. For seconds,
    use the C(ci_webhook) event source and the C(ci_queue) rulebook.
  - Rate limits and API errors never fail the run. On HTTP 429, a 403 with C(Retry-After) or
    C(X-RateLimit-Remaining=0) (GitHub's primary and secondary limits), a 5xx or a network error, the lookup warns
    and returns the last counts it read for the same query if they are younger than O(max_age_minutes), else zero
    (so the pool falls back to its floor, the schedule). Until the C(Retry-After) or C(X-RateLimit-Reset) time
    passes it does not call the API again. Counts and that time are kept in O(cache_path).
  - A missing or refused token (HTTP 401, a 403 without a rate limit) or an unknown repository or project (404)
    fails, since these are configuration errors that waiting does not fix.
author:
  - ParkingSpot maintainers (@parkingspot)
options:
  _terms:
    description: The CI system, C(github) or C(gitlab).
    required: true
    type: list
    elements: str
  labels:
    description:
      - The pool's runner labels (GitHub) or tags (GitLab). A job counts when every label it asks for is in this
        list (case-insensitive). Jobs without labels count for every pool.
    type: list
    elements: str
    required: true
  repos:
    description: GitHub repositories as C(owner/name).
    type: list
    elements: str
    default: []
  projects:
    description: GitLab projects, by id or C(group/name) path.
    type: list
    elements: str
    default: []
  api_url:
    description: API base URL. Defaults to C(https://api.github.com) or C(https://gitlab.com/api/v4).
    type: str
  token:
    description:
      - API token (GitHub C(actions:read); GitLab C(read_api)). Never logged.
      - Defaults to the environment variable C(GITHUB_TOKEN) or C(GITLAB_TOKEN).
    type: str
  max_pages:
    description: Most pages (100 items each) read per listing.
    type: int
    default: 10
  timeout:
    description: Seconds per HTTP request.
    type: int
    default: 10
  max_age_minutes:
    description: Last-known counts older than this are not used after an error; zero is returned instead.
    type: int
    default: 15
  cache_path:
    description: JSON file with the last-known counts and the back-off time.
    type: path
    default: ~/.cache/parkingspot/ci_queue.json
  validate_certs:
    description: Verify the API's TLS certificate.
    type: bool
    default: true
notes:
  - In AWX each job starts in a fresh container, so the last-known counts survive only when O(cache_path) is on a
    persistent volume; otherwise an error returns zero and the pool keeps its floor.
"""

EXAMPLES = r"""
- name: Keep the Linux runners sized by the GitHub queue, the schedule as the floor
  parkingspot.ec2.spot_pool:
    name: ci-linux
    desired: 1
    demand: "{{ lookup('parkingspot.ec2.ci_queue', 'github', repos=['example/app', 'example/lib'],
                labels=['self-hosted', 'linux', 'x64']) }}"
    scaling:
      max: 30
    launch_template:
      name: ci-runner

- name: The same from GitLab
  ansible.builtin.debug:
    msg: "{{ lookup('parkingspot.ec2.ci_queue', 'gitlab', projects=['example/app'], labels=['linux', 'docker'],
             api_url='https://gitlab.example.com/api/v4') }}"
"""

RETURN = r"""
_raw:
  description: One dict C({queued, busy}) for the pool.
  type: list
  elements: dict
"""

import json
import os
import re
import time
from urllib.error import HTTPError
from urllib.error import URLError
from urllib.parse import quote
from urllib.parse import urlencode

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

display = Display()

DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN"}
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class RateLimited(Exception):
    """The API asked us to wait; ``until`` is an epoch time (or None when unknown)."""

    def __init__(self, message, until=None):
        super().__init__(message)
        self.until = until


class Transient(Exception):
    """An error that waiting may fix (5xx, network)."""


def covers(pool_labels, job_labels):
    return {label.lower() for label in job_labels} <= pool_labels


def _retry_until(headers, now):
    """When a refused request may be retried, from Retry-After or X-RateLimit-Reset; None if neither."""
    after = headers.get("Retry-After")
    if after is not None:
        try:
            return now + max(0, int(after))
        except ValueError:
            return now + 60
    if headers.get("X-RateLimit-Remaining") == "0" and headers.get("X-RateLimit-Reset"):
        try:
            return float(headers["X-RateLimit-Reset"])
        except ValueError:
            return now + 60
    return None


class Client:
    """GET JSON pages from a CI API; the token goes in a header only, never in a message."""

    def __init__(self, provider, api_url, token, timeout, max_pages, validate_certs):
        self.provider = provider
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.max_pages = max_pages
        self.validate_certs = validate_certs
        self.headers = {"Accept": "application/json", "User-Agent": "parkingspot.ec2-ci_queue"}
        if provider == "github":
            self.headers["Accept"] = "application/vnd.github+json"
            self.headers["X-GitHub-Api-Version"] = "2022-11-28"
            if token:
                self.headers["Authorization"] = "Bearer " + token
        elif token:
            self.headers["PRIVATE-TOKEN"] = token
        self.calls = 0

    def _get(self, url):
        self.calls += 1
        try:
            response = open_url(
                url, headers=self.headers, timeout=self.timeout, validate_certs=self.validate_certs, method="GET"
            )
            return json.loads(response.read()), response.headers.get("Link", "")
        except HTTPError as e:
            headers = e.headers or {}
            until = _retry_until(headers, time.time())
            path = url[len(self.api_url) :].split("?")[0]
            if e.code == 429 or (e.code == 403 and until is not None):
                raise RateLimited(f"{self.provider} API rate limit on {path} (HTTP {e.code})", until) from None
            if e.code >= 500:
                raise Transient(f"{self.provider} API error on {path}: HTTP {e.code}") from None
            raise AnsibleError(
                f"ci_queue: {self.provider} API refused {path}: HTTP {e.code} (check token and names)"
            ) from None
        except (URLError, OSError, ValueError) as e:
            raise Transient(f"{self.provider} API unreachable: {to_native(getattr(e, 'reason', e))}") from None

    def pages(self, path, query, key=None):
        """Every item of a paginated listing (Link rel=next), at most ``max_pages`` pages."""
        url = "%s%s?%s" % (self.api_url, path, urlencode(dict(query, per_page=100), doseq=True))
        for _page in range(self.max_pages):
            data, link = self._get(url)
            items = data.get(key, []) if key else data
            if not isinstance(items, list):
                raise Transient(f"{self.provider} API answered {path} with an unexpected document")
            yield from items
            found = _NEXT.search(link or "")
            if not found:
                return
            url = found.group(1)


def count_github(client, repos, labels):
    queued = busy = 0
    seen = set()
    for repo in repos:
        owner, _slash, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise AnsibleError(f"ci_queue: repos: {repo!r} is not owner/name")
        base = "/repos/%s/%s/actions" % (quote(owner, safe=""), quote(name, safe=""))
        for status in ("queued", "in_progress"):
            for run in client.pages(base + "/runs", {"status": status}, key="workflow_runs"):
                # A run in progress may still hold queued jobs, and a queued run running ones.
                for job in client.pages("%s/runs/%d/jobs" % (base, int(run["id"])), {"filter": "latest"}, "jobs"):
                    # A run that moved between the two listings is read twice; its jobs count once.
                    if job.get("id") in seen or not covers(labels, job.get("labels") or []):
                        continue
                    seen.add(job.get("id"))
                    queued += job.get("status") == "queued"
                    busy += job.get("status") == "in_progress"
    return queued, busy


def count_gitlab(client, projects, labels):
    queued = busy = 0
    for project in projects:
        path = "/projects/%s/jobs" % quote(str(project), safe="")
        for job in client.pages(path, {"scope[]": ["pending", "running"]}):
            if not covers(labels, job.get("tag_list") or []):
                continue
            queued += job.get("status") == "pending"
            busy += job.get("status") == "running"
    return queued, busy


class Cache:
    def __init__(self, path):
        self.path = os.path.expanduser(path)

    def load(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self, data):
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            temp = self.path + ".tmp"
            with open(temp, "w") as handle:
                json.dump(data, handle)
            os.replace(temp, self.path)
        except OSError as e:
            display.warning(f"ci_queue: cannot write {self.path}: {to_native(e)}")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1 or terms[0] not in DEFAULT_API:
            raise AnsibleError("ci_queue: give one term, github or gitlab")
        provider = terms[0]
        labels = {str(label).lower() for label in self.get_option("labels")}
        scope = self.get_option("repos") if provider == "github" else self.get_option("projects")
        if not scope:
            raise AnsibleError(
                "ci_queue: %s: at least one is required for %s"
                % ("repos" if provider == "github" else "projects", provider)
            )
        for name in ("max_pages", "timeout", "max_age_minutes"):
            if self.get_option(name) < (0 if name == "max_age_minutes" else 1):
                raise AnsibleError(f"ci_queue: {name}: must be 1 or more")
        api_url = self.get_option("api_url") or DEFAULT_API[provider]
        token = self.get_option("token") or os.environ.get(TOKEN_ENV[provider])
        client = Client(
            provider,
            api_url,
            token,
            self.get_option("timeout"),
            self.get_option("max_pages"),
            self.get_option("validate_certs"),
        )
        key = json.dumps([provider, api_url, sorted(scope), sorted(labels)])
        cache = Cache(self.get_option("cache_path"))
        state = cache.load()
        now = time.time()
        backoff = state.get("backoff", {}).get(api_url)
        try:
            if backoff and now < backoff:
                raise RateLimited(f"{provider} API rate limit: waiting until {time.ctime(backoff)}", backoff)
            count = count_github if provider == "github" else count_gitlab
            queued, busy = count(client, scope, labels)
        except (RateLimited, Transient) as e:
            if isinstance(e, RateLimited) and e.until and e.until > now:
                state.setdefault("backoff", {})[api_url] = e.until
                cache.save(state)
            known = state.get("counts", {}).get(key)
            if known and now - known["at"] <= self.get_option("max_age_minutes") * 60:
                display.warning(f"ci_queue: {e}; using the counts read {int(now - known['at'])} s ago")
                return [{"queued": known["queued"], "busy": known["busy"]}]
            display.warning(f"ci_queue: {e}; no recent counts, returning zero (the pool keeps its floor)")
            return [{"queued": 0, "busy": 0}]
        state.setdefault("counts", {})[key] = {"queued": queued, "busy": busy, "at": now}
        state.get("backoff", {}).pop(api_url, None)
        cache.save(state)
        display.vvv(f"ci_queue: {provider} {queued} queued, {busy} busy in {client.calls} API call(s)")
        return [{"queued": queued, "busy": busy}]
