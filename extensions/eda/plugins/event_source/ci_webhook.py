# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event source: CI job webhooks (GitHub ``workflow_job``, GitLab job events) as pool demand.

An HTTP listener (stdlib asyncio, no extra dependency) that keeps, per pool, the jobs that
wait for a runner (queued) and the jobs that run (busy), and puts at most one event per pool
per ``debounce_seconds`` on the rulebook queue carrying that demand (with ``combine_pools``, at
most one event per window for every pool that changed). The first change after a quiet window
is sent at once; later changes within the window are folded into one event at its end, so a
burst of 50 queued jobs per second costs one keeper run per window.

Requests are checked in this order and refused with a counted reason (``refused`` in the
``GET`` status document and in the log), never reaching the demand:

    oversized       Content-Length above ``max_body_bytes`` (413), or none / chunked (411)
    malformed       not HTTP, not JSON, not a job event of a known shape (400)
    unsigned        no X-Hub-Signature-256 / X-Gitlab-Token header (401)
    bad_signature   HMAC-SHA256 or token mismatch, compared in constant time (401)
    not_configured  a GitHub or GitLab request while no secret for it is configured (401)
    replayed        an X-GitHub-Delivery / X-Gitlab-Event-UUID already seen (409)

Jobs are matched to pools by labels: a job belongs to the first pool whose ``labels`` include
every label the job asks for (GitHub ``runs-on`` labels, GitLab job tags; case-insensitive,
as GitHub compares them). Jobs matching no pool are counted and logged once per label set.

Job states only move forward (queued -> in progress -> completed), so an out-of-order or
repeated delivery cannot resurrect a finished job. A job not heard of for ``job_ttl_seconds``
is dropped: a lost webhook cannot hold a pool up forever (the scheduled keeper run with the
``parkingspot.ec2.ci_queue`` lookup corrects the counts from the CI API).

Events yielded (one dict per pool and window)::

    pool        the pool name
    demand      {"queued": Q, "busy": B, "counted_at": T}, the spot_pool demand option; with
                "retries": R when re-runs wait (GitHub workflow_job.run_attempt > 1, GitLab
                retries_count > 0): those are counted in R, not in Q, for the pool's on-demand
                retry lane. T is when the counts were read, ISO 8601 UTC with microseconds
                (2026-12-02T05:40:01.123456Z); it only increases from one event to the next, even
                if the system clock is set back, so of two keeper runs of a pool that overlap the
                keeper can tell which counts are newer
    providers   where the jobs of this pool came from (["github"], ["gitlab"], or both)
    time        when the event was made (ISO 8601 UTC)

With ``combine_pools: true``, one event per window carries every pool whose demand changed in it,
so one keeper run (one module start per region) keeps them all::

    pools       the names of the pools that changed since the last event, sorted
    demands     {pool name: demand} for each of them, demand as above (one counted_at for all)
    providers   where their jobs came from
    time        when the event was made

Arguments::

    pools             required: list of {name, labels} (or a dict name -> labels)
    github_secret     the GitHub webhook secret (default: env PARKINGSPOT_GITHUB_WEBHOOK_SECRET)
    gitlab_token      the GitLab webhook secret token (default: env PARKINGSPOT_GITLAB_WEBHOOK_TOKEN)
    host              listen address (default 127.0.0.1; 0.0.0.0 in a controller activation)
    port              listen port (default 5000; 0 picks a free one)
    debounce_seconds  at most one event per pool per this many seconds (default 2)
    combine_pools     one event per window for every pool that changed (default false: one per pool)
    max_body_bytes    larger bodies are refused unread (default 262144)
    replay_window     how many delivery ids are remembered (default 10000)
    job_ttl_seconds   a job not heard of for this long is dropped (default 86400)
    read_timeout      seconds a client has to send its request (default 10)
    max_events        stop after this many events (default: run forever; for tests)
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

LOG = logging.getLogger("parkingspot.ec2.ci_webhook")

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 5000,
    "debounce_seconds": 2.0,
    "max_body_bytes": 256 * 1024,
    "replay_window": 10000,
    "job_ttl_seconds": 86400,
    "read_timeout": 10.0,
    "max_events": None,
}
KNOWN_ARGS = {"pools", "github_secret", "gitlab_token", "combine_pools"} | set(DEFAULTS)
SECRET_ENV = {"github_secret": "PARKINGSPOT_GITHUB_WEBHOOK_SECRET", "gitlab_token": "PARKINGSPOT_GITLAB_WEBHOOK_TOKEN"}
# The pending-flush key of combined events (``combine_pools``): not a pool name, which is a string.
ALL_POOLS = ("all pools",)
REASONS = ("oversized", "malformed", "unsigned", "bad_signature", "not_configured", "replayed")
MAX_HEADER_BYTES = 16 * 1024

# Job states, in the only order they may move.
QUEUED, BUSY, DONE = 0, 1, 2
GITHUB_ACTIONS = {"queued": QUEUED, "in_progress": BUSY, "completed": DONE}
GITLAB_STATUSES = {
    "pending": QUEUED,
    "running": BUSY,
    "success": DONE,
    "failed": DONE,
    "canceled": DONE,
    "skipped": DONE,
}


class ArgumentError(ValueError):
    """A source argument is missing or invalid; the message names the argument."""


class Refused(Exception):
    """A request refused with a counted reason and an HTTP status."""

    def __init__(self, reason, status, detail):
        super().__init__(detail)
        self.reason = reason
        self.status = status


# ------------------------------------------------------------------ arguments


def _number(args, name, low, integer=True):
    value = args.get(name, DEFAULTS[name])
    if value is None and name == "max_events":
        return None
    if isinstance(value, bool):
        raise ArgumentError(f"{name} must be a number, got {value!r}")
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be a number, got {value!r}") from None
    if number < low:
        raise ArgumentError(f"{name} must be {low} or more, got {number}")
    return number


def _pools(value):
    if isinstance(value, dict):
        value = [{"name": name, "labels": labels} for name, labels in value.items()]
    if not isinstance(value, list) or not value:
        raise ArgumentError("pools must be a non-empty list of {name, labels}")
    pools, names = [], set()
    for index, pool in enumerate(value):
        if not isinstance(pool, dict) or not isinstance(pool.get("name"), str) or not pool["name"]:
            raise ArgumentError(f"pools[{index}].name must be a non-empty string")
        labels = pool.get("labels")
        if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
            raise ArgumentError(f"pools[{index}].labels must be a list of non-empty strings")
        if pool["name"] in names:
            raise ArgumentError(f"pools[{index}].name {pool['name']!r} is listed twice")
        names.add(pool["name"])
        pools.append((pool["name"], frozenset(label.lower() for label in labels)))
    return pools


def parse_args(args: dict | None) -> dict:
    """Validate the rulebook arguments and return them with defaults filled in."""
    args = dict(args or {})
    unknown = sorted(set(args) - KNOWN_ARGS)
    if unknown:
        raise ArgumentError("unknown argument(s): " + ", ".join(unknown))
    out = {"pools": _pools(args.get("pools"))}
    for name, env in SECRET_ENV.items():
        secret = args.get(name) or os.environ.get(env) or None
        if secret is not None and not isinstance(secret, str):
            raise ArgumentError(f"{name} must be a string")
        out[name] = secret.encode("utf-8") if secret else None
    if not (out["github_secret"] or out["gitlab_token"]):
        raise ArgumentError(
            "github_secret or gitlab_token is required (or env {} / {}): unsigned webhooks are never accepted".format(
                SECRET_ENV["github_secret"], SECRET_ENV["gitlab_token"]
            )
        )
    host = args.get("host", DEFAULTS["host"])
    if not isinstance(host, str) or not host:
        raise ArgumentError("host must be a non-empty string")
    out["host"] = host
    out["port"] = _number(args, "port", 0)
    if out["port"] > 65535:
        raise ArgumentError(f"port must be at most 65535, got {out['port']}")
    out["debounce_seconds"] = _number(args, "debounce_seconds", 0, integer=False)
    out["max_body_bytes"] = _number(args, "max_body_bytes", 1)
    out["replay_window"] = _number(args, "replay_window", 1)
    out["job_ttl_seconds"] = _number(args, "job_ttl_seconds", 1, integer=False)
    out["read_timeout"] = _number(args, "read_timeout", 0.1, integer=False)
    out["max_events"] = _number(args, "max_events", 1)
    combine = args.get("combine_pools", False)
    if not isinstance(combine, bool):
        raise ArgumentError(f"combine_pools must be true or false, got {combine!r}")
    out["combine_pools"] = combine
    return out


# ------------------------------------------------------------------ payloads (pure)


def github_signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_signature(provider: str, headers: dict, body: bytes, secrets: dict) -> None:
    """Raise Refused unless the request carries the right signature for its provider."""
    if provider == "github":
        secret, given = secrets.get("github_secret"), headers.get("x-hub-signature-256")
    else:
        secret, given = secrets.get("gitlab_token"), headers.get("x-gitlab-token")
    if not given:
        raise Refused("unsigned", 401, f"{provider} request without a signature")
    if secret is None:
        raise Refused("not_configured", 401, f"{provider} request but no secret is configured for it")
    expected = github_signature(secret, body).encode("ascii") if provider == "github" else secret
    if not hmac.compare_digest(expected, given.encode("utf-8", "replace")):
        raise Refused("bad_signature", 401, f"{provider} signature does not match")


def provider_of(headers: dict) -> str:
    if "x-github-event" in headers:
        return "github"
    if "x-gitlab-event" in headers:
        return "gitlab"
    raise Refused("malformed", 400, "neither X-GitHub-Event nor X-Gitlab-Event")


def parse_job(provider: str, headers: dict, payload: Any):
    """``(job_key, state, labels)`` of a job event, None for an event that is not about a job's
    runner (GitHub ping, ``waiting`` jobs, GitLab created/manual jobs). Raises Refused on a shape
    that is not a documented job event."""
    if not isinstance(payload, dict):
        raise Refused("malformed", 400, "body is not a JSON object")
    if provider == "github":
        kind = headers.get("x-github-event")
        if kind == "ping":
            return None
        if kind != "workflow_job":
            raise Refused("malformed", 400, f"GitHub event {kind!r} is not workflow_job")
        job = payload.get("workflow_job")
        action = payload.get("action")
        if not isinstance(job, dict) or not isinstance(action, str):
            raise Refused("malformed", 400, "workflow_job event without workflow_job or action")
        job_id, labels = job.get("id"), job.get("labels")
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise Refused("malformed", 400, "workflow_job.id is not a number")
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise Refused("malformed", 400, "workflow_job.labels is not a list of strings")
        state = GITHUB_ACTIONS.get(action)
        if state is None:
            return None  # waiting (for an environment approval): no runner needed yet
        return ("github", job_id), state, frozenset(label.lower() for label in labels)
    kind = headers.get("x-gitlab-event")
    if kind != "Job Hook" or payload.get("object_kind") != "build":
        raise Refused("malformed", 400, f"GitLab event {kind!r} is not a job event")
    job_id, status = payload.get("build_id"), payload.get("build_status")
    if isinstance(job_id, bool) or not isinstance(job_id, int) or not isinstance(status, str):
        raise Refused("malformed", 400, "job event without build_id or build_status")
    tags = payload.get("build_tags")
    if tags is None:
        # GitLab before 16.9 sends the job's tags only through the runner that took it.
        tags = (payload.get("runner") or {}).get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise Refused("malformed", 400, "build_tags is not a list of strings")
    state = GITLAB_STATUSES.get(status)
    if state is None:
        return None  # created (earlier stages still run) or manual: no runner needed yet
    return ("gitlab", job_id), state, frozenset(tag.lower() for tag in tags)


def is_retry(provider: str, payload: dict) -> bool:
    """True for a re-run: GitHub ``workflow_job.run_attempt`` above 1, GitLab ``retries_count``
    above 0. A missing or odd value is a first attempt (older payloads carry neither)."""
    if provider == "github":
        value = (payload.get("workflow_job") or {}).get("run_attempt")
        first = 1
    else:
        value = payload.get("retries_count")
        first = 0
    return isinstance(value, int) and not isinstance(value, bool) and value > first


def pool_for(labels: frozenset, pools) -> str | None:
    """The first pool whose labels cover every label of the job."""
    for name, offered in pools:
        if labels <= offered:
            return name
    return None


# ------------------------------------------------------------------ state


class Demand:
    """Jobs per pool; states only move forward; counts per pool on demand."""

    def __init__(self, job_ttl_seconds, clock=time.monotonic):
        self.ttl = job_ttl_seconds
        self.clock = clock
        self.jobs: dict = {}  # key -> [pool, state, last_heard, is a re-run]
        self.finished: collections.OrderedDict = collections.OrderedDict()
        self.finished_max = 100000

    def update(self, key, pool, state, retry=False) -> bool:
        """Record a job's state; True when the pool's counts changed."""
        now = self.clock()
        if key in self.finished:
            return False
        current = self.jobs.get(key)
        if current is not None and state <= current[1]:
            current[2] = now
            return False
        if state == DONE:
            self.finished[key] = True
            while len(self.finished) > self.finished_max:
                self.finished.popitem(last=False)
            return self.jobs.pop(key, None) is not None
        self.jobs[key] = [pool, state, now, bool(retry) or (current is not None and current[3])]
        return True

    def expire(self) -> set:
        """Drop jobs not heard of for the TTL; returns the pools that changed."""
        limit = self.clock() - self.ttl
        stale = [key for key, (_pool, _state, heard, _retry) in self.jobs.items() if heard < limit]
        pools = set()
        for key in stale:
            pools.add(self.jobs.pop(key)[0])
        return pools

    def counts(self, pool) -> dict:
        """``queued`` and ``busy``; ``retries`` (queued re-runs, not in ``queued``) when there are any."""
        queued = busy = retries = 0
        for name, state, _heard, retry in self.jobs.values():
            if name == pool:
                if state == QUEUED and retry:
                    retries += 1
                else:
                    queued += state == QUEUED
                busy += state == BUSY
        out = {"queued": queued, "busy": busy}
        if retries:
            out["retries"] = retries
        return out


class Replay:
    """The last ``size`` delivery ids."""

    def __init__(self, size):
        self.size = size
        self.seen: collections.OrderedDict = collections.OrderedDict()

    def check_and_add(self, delivery) -> bool:
        if delivery in self.seen:
            return False
        self.seen[delivery] = True
        while len(self.seen) > self.size:
            self.seen.popitem(last=False)
        return True


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_counted_at(moment: datetime.datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``: the form of ``demand.counted_at``."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------ the source


class CIWebhookSource:
    def __init__(self, args: dict):
        self.args = args
        self.demand = Demand(args["job_ttl_seconds"])
        self.replay = Replay(args["replay_window"])
        self.refused = {reason: 0 for reason in REASONS}
        self.accepted = 0
        self.unmatched: dict = {}  # label set -> jobs seen
        self.events = 0
        self.last_sent: dict = {}  # pool -> monotonic time of its last event
        self.last_counted = None  # wall-clock time of the last counts sent (UTC datetime)
        self.pending: dict = {}  # pool (ALL_POOLS when combined) -> scheduled flush handle
        self.dirty: set = set()  # combine_pools: the pools changed since the last event
        self.providers: dict = collections.defaultdict(set)
        self.queue = None
        self.done = None
        self.server = None

    # --- HTTP

    async def handle(self, reader, writer):
        status, body = 500, {"error": "internal error"}
        try:
            status, body = await asyncio.wait_for(self._request(reader), self.args["read_timeout"])
        except Refused as refused:
            self.refused[refused.reason] += 1
            LOG.warning("refused (%s): %s", refused.reason, refused)
            status, body = refused.status, {"refused": refused.reason}
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            self.refused["malformed"] += 1
            status, body = 400, {"refused": "malformed"}
        except Exception:  # noqa: BLE001 - one bad request never stops the listener
            LOG.exception("request failed")
        try:
            data = json.dumps(body).encode("utf-8")
            phrase = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
            head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            writer.write((head % (status, phrase.get(status, "Refused"), len(data))).encode("ascii") + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _request(self, reader):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise Refused("oversized", 431, "request headers too large") from None
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refused("malformed", 400, "not an HTTP/1.x request line")
        method = parts[0]
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise Refused("malformed", 400, "header line without a colon")
            headers[name.strip().lower()] = value.strip()
        if method == "GET":
            return 200, self.status()
        if method != "POST":
            raise Refused("malformed", 405, f"method {method} not allowed")
        if "chunked" in headers.get("transfer-encoding", "").lower() or "content-length" not in headers:
            raise Refused("oversized", 411, "a Content-Length is required")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise Refused("malformed", 400, "Content-Length is not a number") from None
        if length < 0:
            raise Refused("malformed", 400, "negative Content-Length")
        if length > self.args["max_body_bytes"]:
            raise Refused("oversized", 413, f"body of {length} bytes, more than max_body_bytes")
        body = await reader.readexactly(length)
        return self.accept(headers, body)

    def accept(self, headers: dict, body: bytes):
        """Check and apply one webhook delivery; returns (HTTP status, response document)."""
        provider = provider_of(headers)
        check_signature(provider, headers, body, self.args)
        delivery = headers.get("x-github-delivery") if provider == "github" else None
        if provider == "gitlab":
            delivery = headers.get("x-gitlab-event-uuid") or headers.get("idempotency-key")
        if provider == "github" and not delivery:
            raise Refused("malformed", 400, "X-GitHub-Delivery missing")
        try:
            payload = json.loads(body)
        except ValueError:
            raise Refused("malformed", 400, "body is not JSON") from None
        job = parse_job(provider, headers, payload)
        # Only a signed, well-formed delivery is remembered: unsigned noise cannot fill the window.
        if delivery and not self.replay.check_and_add((provider, delivery)):
            raise Refused("replayed", 409, f"delivery {delivery} seen before")
        self.accepted += 1
        if job is None:
            return 202, {"accepted": True, "pool": None}
        key, state, labels = job
        pool = pool_for(labels, self.args["pools"])
        if pool is None:
            seen = self.unmatched.get(labels, 0)
            self.unmatched[labels] = seen + 1
            if not seen:
                LOG.warning("jobs with labels %s match no pool; logged once", sorted(labels))
            return 202, {"accepted": True, "pool": None}
        self.providers[pool].add(provider)
        if self.demand.update(key, pool, state, is_retry(provider, payload)):
            self.changed(pool)
        return 202, {"accepted": True, "pool": pool}

    def status(self):
        return {
            "accepted": self.accepted,
            "refused": dict(self.refused),
            "events": self.events,
            "unmatched_label_sets": len(self.unmatched),
            "pools": {name: self.demand.counts(name) for name, _labels in self.args["pools"]},
        }

    # --- debounce

    def changed(self, pool):
        if self.queue is None:
            return
        key = pool
        if self.args.get("combine_pools"):
            self.dirty.add(pool)
            key = ALL_POOLS
        if key in self.pending:
            return
        loop = asyncio.get_running_loop()
        wait = self.last_sent.get(key, -1e18) + self.args["debounce_seconds"] - loop.time()
        self.pending[key] = loop.call_later(max(0.0, wait), lambda: loop.create_task(self.flush(key)))

    async def flush(self, key):
        self.pending.pop(key, None)
        if self.done.is_set():
            return
        combined = key == ALL_POOLS
        pools = sorted(self.dirty) if combined else [key]
        self.dirty.difference_update(pools)
        counted_at = self.counted_at()
        demands = {pool: dict(self.demand.counts(pool), counted_at=counted_at) for pool in pools}
        providers = sorted(set().union(*(self.providers[pool] for pool in pools)))
        if combined:
            event = {"pools": pools, "demands": demands}
        else:
            event = {"pool": key, "demand": demands[key]}
        event.update(providers=providers, time=_utc_now())
        LOG.info("pools %s: demands %s", ", ".join(pools), demands)
        # The window starts when the event is put, after the counts were read (reading them takes
        # longer as the jobs grow): so two events are never put closer than the window.
        self.last_sent[key] = asyncio.get_running_loop().time()
        await self.queue.put(event)
        self.events += 1
        if self.args["max_events"] is not None and self.events >= self.args["max_events"]:
            self.done.set()

    def counted_at(self) -> str:
        """Now, for ``demand.counted_at``; one microsecond after the last value if the clock went back."""
        now = _wall_clock()
        if self.last_counted is not None and now <= self.last_counted:
            now = self.last_counted + datetime.timedelta(microseconds=1)
        self.last_counted = now
        return format_counted_at(now)

    async def expire_loop(self):
        while not self.done.is_set():
            await asyncio.sleep(min(60.0, self.args["job_ttl_seconds"]))
            for pool in self.demand.expire():
                self.changed(pool)

    # --- run

    async def start(self, queue):
        self.queue = queue
        self.done = asyncio.Event()
        self.server = await asyncio.start_server(
            self.handle, self.args["host"], self.args["port"], limit=MAX_HEADER_BYTES
        )
        return self.server.sockets[0].getsockname()[1]

    async def run(self, queue) -> dict:
        port = await self.start(queue)
        LOG.info("listening on %s:%d for pools %s", self.args["host"], port, [p for p, _labels in self.args["pools"]])
        expiry = asyncio.get_running_loop().create_task(self.expire_loop())
        try:
            await self.done.wait()
        finally:
            expiry.cancel()
            for handle in self.pending.values():
                handle.cancel()
            self.server.close()
            await self.server.wait_closed()
        return self.status()


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> dict:
    """ansible-rulebook entry point."""
    return await CIWebhookSource(parse_args(args)).run(queue)


if __name__ == "__main__":  # pragma: no cover - manual use: print events
    import sys

    class _PrintQueue:
        async def put(self, event):
            print(json.dumps(event), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {"pools": json.loads(sys.argv[1]), "port": int(sys.argv[2])}))
