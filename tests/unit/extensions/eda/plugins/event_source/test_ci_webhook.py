# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ci_webhook event source over real HTTP on 127.0.0.1: signatures, replays, bad bodies,
label matching, debounce, and a bounded load test (50 queued jobs/s for 10 s).

The payloads in data/ follow the documented shapes of GitHub's ``workflow_job`` webhook and
GitLab's job event (our own values); tests change the action/status and ids.
"""

import asyncio
import datetime
import json
import os
import re
import statistics
import time
import uuid

import pytest

from ansible_collections.parkingspot.ec2.extensions.eda.plugins.event_source import ci_webhook as src

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SECRET = "It's a Secret to Everybody"
TOKEN = "gitlab-token-123"
POOLS = [
    {"name": "linux", "labels": ["self-hosted", "linux", "x64"]},
    {"name": "gpu", "labels": ["self-hosted", "linux", "x64", "gpu"]},
    {"name": "docker", "labels": ["linux", "docker"]},
]


def sample(name):
    with open(os.path.join(DATA, name)) as handle:
        return json.load(handle)


def github_job(action="queued", job_id=1, labels=None):
    payload = sample("github_workflow_job.json")
    payload["action"] = action
    payload["workflow_job"]["id"] = job_id
    payload["workflow_job"]["status"] = action
    if labels is not None:
        payload["workflow_job"]["labels"] = labels
    return payload


def gitlab_job(status="pending", job_id=1, tags=None):
    payload = sample("gitlab_job.json")
    payload["build_status"] = status
    payload["build_id"] = job_id
    if tags is not None:
        payload["build_tags"] = tags
    return payload


def github_headers(body, secret=SECRET, delivery=None, event="workflow_job"):
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4())}
    if secret is not None:
        headers["X-Hub-Signature-256"] = src.github_signature(secret.encode(), body)
    return headers


def gitlab_headers(token=TOKEN, delivery=None):
    headers = {"X-Gitlab-Event": "Job Hook", "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4())}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


class TimedQueue:
    def __init__(self):
        self.events = []

    async def put(self, event):
        self.events.append((time.monotonic(), event))


async def request(port, body=b"", headers=None, method="POST", raw=None):
    """One HTTP request on a fresh connection; returns (status, JSON body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if raw is None:
        lines = [f"{method} /webhook HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if method == "POST" and not any(k.lower() == "content-length" for k in headers or {}):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    writer.write(raw)
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _sep, rest = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(rest or b"{}")


async def post_github(port, payload, **kw):
    body = json.dumps(payload).encode()
    return await request(port, body, github_headers(body, **kw))


async def post_gitlab(port, payload, **kw):
    body = json.dumps(payload).encode()
    return await request(port, body, gitlab_headers(**kw))


def run(coro):
    return asyncio.run(coro)


def counts(event):
    """The event's demand without ``counted_at`` (tested on its own)."""
    return {k: v for k, v in event["demand"].items() if k != "counted_at"}


async def started(**args):
    source = src.CIWebhookSource(
        src.parse_args(dict({"pools": POOLS, "github_secret": SECRET, "gitlab_token": TOKEN, "port": 0}, **args))
    )
    queue = TimedQueue()
    port = await source.start(queue)
    return source, queue, port


async def stop(source):
    source.server.close()
    await source.server.wait_closed()


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    "args, word",
    [
        ({}, "pools"),
        ({"pools": [{"name": "a", "labels": "linux"}]}, "pools[0].labels"),
        ({"pools": [{"name": "a", "labels": []}, {"name": "a", "labels": []}]}, "listed twice"),
        ({"pools": POOLS, "debounce_seconds": -1}, "debounce_seconds"),
        ({"pools": POOLS, "port": 70000}, "port"),
        ({"pools": POOLS, "colour": "blue"}, "colour"),
    ],
)
def test_bad_arguments_are_named(args, word, monkeypatch):
    args = dict(args, github_secret=SECRET) if "pools" in args else args
    with pytest.raises(src.ArgumentError) as info:
        src.parse_args(args)
    assert word in str(info.value)


def test_a_secret_is_required(monkeypatch):
    for env in src.SECRET_ENV.values():
        monkeypatch.delenv(env, raising=False)
    with pytest.raises(src.ArgumentError, match="github_secret or gitlab_token"):
        src.parse_args({"pools": POOLS})
    monkeypatch.setenv("PARKINGSPOT_GITHUB_WEBHOOK_SECRET", "from-env")
    assert src.parse_args({"pools": POOLS})["github_secret"] == b"from-env"


# ------------------------------------------------------------------ matching (pure)


def test_labels_pick_the_first_pool_that_covers_them():
    pools = src.parse_args({"pools": POOLS, "github_secret": SECRET})["pools"]
    assert src.pool_for(frozenset({"self-hosted", "linux"}), pools) == "linux"
    assert src.pool_for(frozenset({"self-hosted", "linux", "gpu"}), pools) == "gpu"
    assert src.pool_for(frozenset({"docker"}), pools) == "docker"
    assert src.pool_for(frozenset({"windows"}), pools) is None


def test_job_states_only_move_forward():
    demand = src.Demand(3600)
    assert demand.update(("github", 1), "linux", src.QUEUED)
    assert demand.update(("github", 1), "linux", src.BUSY)
    assert not demand.update(("github", 1), "linux", src.QUEUED)  # late queued delivery
    assert demand.counts("linux") == {"queued": 0, "busy": 1}
    assert demand.update(("github", 1), "linux", src.DONE)
    assert not demand.update(("github", 1), "linux", src.BUSY)  # late in_progress after completed
    assert demand.counts("linux") == {"queued": 0, "busy": 0}


def test_jobs_not_heard_of_expire():
    clock = [0.0]
    demand = src.Demand(60, clock=lambda: clock[0])
    demand.update(("gitlab", 7), "docker", src.QUEUED)
    clock[0] = 61.0
    assert demand.expire() == {"docker"}
    assert demand.counts("docker") == {"queued": 0, "busy": 0}


# ------------------------------------------------------------------ HTTP


def test_github_job_lifecycle_changes_the_demand():
    async def scenario():
        source, queue, port = await started(debounce_seconds=0)
        assert await post_github(port, github_job("queued", 11)) == (202, {"accepted": True, "pool": "linux"})
        assert (await post_github(port, github_job("queued", 12, ["self-hosted", "linux", "x64", "gpu"])))[0] == 202
        await asyncio.sleep(0.05)
        assert source.demand.counts("linux") == {"queued": 1, "busy": 0}
        await post_github(port, github_job("in_progress", 11))
        await asyncio.sleep(0.05)
        assert source.demand.counts("linux") == {"queued": 0, "busy": 1}
        await post_github(port, github_job("completed", 11))
        await asyncio.sleep(0.05)
        await stop(source)
        return source, queue

    source, queue = run(scenario())
    linux = [counts(e) for _t, e in queue.events if e["pool"] == "linux"]
    assert linux[0] == {"queued": 1, "busy": 0} and linux[-1] == {"queued": 0, "busy": 0}
    assert [counts(e) for _t, e in queue.events if e["pool"] == "gpu"] == [{"queued": 1, "busy": 0}]
    assert all(e["providers"] == ["github"] for _t, e in queue.events)
    assert source.refused == dict.fromkeys(src.REASONS, 0)


def test_gitlab_jobs_are_counted_and_created_ones_are_not():
    async def scenario():
        source, queue, port = await started(debounce_seconds=0)
        assert (await post_gitlab(port, gitlab_job("created", 1)))[1] == {"accepted": True, "pool": None}
        assert (await post_gitlab(port, gitlab_job("pending", 2)))[1]["pool"] == "docker"
        running = gitlab_job("running", 3)
        del running["build_tags"]  # older GitLab: the tags come with the runner
        running["runner"] = {"id": 8, "description": "r", "active": True, "is_shared": False, "tags": ["docker"]}
        await post_gitlab(port, running)
        await asyncio.sleep(0.05)
        await stop(source)
        return source, queue

    source, queue = run(scenario())
    assert source.demand.counts("docker") == {"queued": 1, "busy": 1}
    assert counts(queue.events[-1][1]) == {"queued": 1, "busy": 1}
    assert queue.events[-1][1]["providers"] == ["gitlab"]


def test_signatures_are_checked():
    async def scenario():
        source, queue, port = await started()
        body = json.dumps(github_job()).encode()
        results = [
            await request(port, body, github_headers(body, secret=None)),
            await request(port, body, github_headers(body, secret="wrong")),
            await request(port, body, dict(github_headers(body), **{"X-Hub-Signature-256": "sha256="})),
            await request(port, body + b" ", github_headers(body)),  # body changed after signing
            await post_gitlab(port, gitlab_job(), token=None),
            await post_gitlab(port, gitlab_job(), token="nope"),
        ]
        await stop(source)
        return source, queue, results

    source, queue, results = run(scenario())
    assert [status for status, _doc in results] == [401] * 6
    reasons = [doc["refused"] for _status, doc in results]
    assert reasons == ["unsigned"] + ["bad_signature"] * 3 + ["unsigned", "bad_signature"]
    assert source.refused["unsigned"] == 2 and source.refused["bad_signature"] == 4
    assert source.demand.jobs == {} and queue.events == []


def test_a_provider_without_a_secret_is_refused():
    async def scenario():
        source, _queue, port = await started(gitlab_token=None)
        result = await post_gitlab(port, gitlab_job(), token="anything")
        await stop(source)
        return source, result

    source, result = run(scenario())
    assert result == (401, {"refused": "not_configured"})
    assert source.demand.jobs == {}


def test_replayed_deliveries_are_refused_once_signed():
    async def scenario():
        source, _queue, port = await started()
        body = json.dumps(github_job("queued", 5)).encode()
        headers = github_headers(body, delivery="d-1")
        first = await request(port, body, headers)
        again = await request(port, body, headers)
        # An unsigned request with a new id does not poison the window for the real delivery.
        forged = await request(port, body, github_headers(body, secret=None, delivery="d-2"))
        real = await request(port, body, github_headers(body, delivery="d-2"))
        await stop(source)
        return source, [first[0], again[0], forged[0], real[0]]

    source, statuses = run(scenario())
    assert statuses == [202, 409, 401, 202]
    assert source.refused["replayed"] == 1
    assert source.demand.counts("linux") == {"queued": 1, "busy": 0}


def test_malformed_and_oversized_bodies_are_refused():
    async def scenario():
        source, _queue, port = await started(max_body_bytes=4096, read_timeout=0.5)
        big = json.dumps(dict(github_job(), padding="x" * 5000)).encode()
        not_json = b"{not json"
        wrong_shape = json.dumps({"action": "queued", "workflow_job": {"id": "seven", "labels": []}}).encode()
        results = {
            "oversized": await request(port, big, github_headers(big)),
            "not_json": await request(port, not_json, github_headers(not_json)),
            "wrong_shape": await request(port, wrong_shape, github_headers(wrong_shape)),
            "push": await request(port, b"{}", github_headers(b"{}", event="push")),
            "no_provider": await request(port, b"{}", {"Content-Type": "application/json"}),
            "chunked": await request(port, b"", {"Transfer-Encoding": "chunked", "Content-Length": "0"}),
            "garbage": await request(port, raw=b"hello\r\n\r\n"),
            "huge_headers": await request(port, b"{}", {"X-GitHub-Event": "workflow_job", "X-Padding": "y" * 20000}),
            "truncated": await request(
                port, raw=b"POST / HTTP/1.1\r\nX-GitHub-Event: workflow_job\r\nContent-Length: 100\r\n\r\n{}"
            ),
        }
        await stop(source)
        return source, results

    source, results = run(scenario())
    assert results["oversized"][0] == 413 and results["chunked"][0] == 411 and results["huge_headers"][0] == 431
    for name in ("not_json", "wrong_shape", "push", "no_provider", "garbage", "truncated"):
        assert results[name] == (400, {"refused": "malformed"}), name
    assert source.refused["oversized"] == 3 and source.refused["malformed"] == 6
    assert source.demand.jobs == {}


def test_unmatched_labels_are_logged_once(caplog):
    async def scenario():
        source, queue, port = await started()
        for job_id in range(5):
            await post_github(port, github_job("queued", job_id, ["windows"]))
        await asyncio.sleep(0.05)
        await stop(source)
        return source, queue

    with caplog.at_level("WARNING", logger="parkingspot.ec2.ci_webhook"):
        source, queue = run(scenario())
    assert sum("match no pool" in r.getMessage() for r in caplog.records) == 1
    assert source.unmatched == {frozenset({"windows"}): 5}
    assert queue.events == []


def test_status_document_on_get():
    async def scenario():
        source, _queue, port = await started()
        await post_github(port, github_job("queued", 1))
        await request(port, b"{}", {"X-GitHub-Event": "workflow_job"})
        result = await request(port, method="GET")
        await stop(source)
        return result

    status, doc = run(scenario())
    assert status == 200
    assert doc["accepted"] == 1 and doc["refused"]["unsigned"] == 1
    assert doc["pools"]["linux"] == {"queued": 1, "busy": 0}


def test_debounce_sends_at_most_one_event_per_pool_per_window():
    async def scenario():
        source, queue, port = await started(debounce_seconds=0.5)
        for job_id in range(20):
            await post_github(port, github_job("queued", job_id))
            await post_gitlab(port, gitlab_job("pending", job_id))
        await asyncio.sleep(1.2)
        await stop(source)
        return queue

    queue = run(scenario())
    for pool in ("linux", "docker"):
        times = [t for t, e in queue.events if e["pool"] == pool]
        assert 1 <= len(times) <= 4
        assert all(b - a >= 0.5 - 0.02 for a, b in zip(times, times[1:]))
        assert counts([e for _t, e in queue.events if e["pool"] == pool][-1]) == {"queued": 20, "busy": 0}


def test_the_window_starts_when_the_event_is_put_however_long_the_counts_took(monkeypatch):
    # The first event's counts take 0.4 s to read (a large queue), the next one's no time: the next
    # event is still put a whole window after the first was, not a window after its reading began.
    real = src.Demand.counts
    slow = iter([0.4])

    def counts(self, pool):
        time.sleep(next(slow, 0))  # blocks the loop, as a long read does
        return real(self, pool)

    monkeypatch.setattr(src.Demand, "counts", counts)

    async def scenario():
        source, queue, port = await started(debounce_seconds=0.5)
        await post_github(port, github_job("queued", 1))
        while not queue.events:
            await asyncio.sleep(0.01)
        await post_github(port, github_job("queued", 2))
        await asyncio.sleep(1.0)
        await stop(source)
        return queue

    queue = run(scenario())
    times = [t for t, e in queue.events if e["pool"] == "linux"]
    assert len(times) == 2, queue.events
    assert times[1] - times[0] >= 0.5 - 0.02, times


def test_every_event_says_when_its_counts_were_read():
    def utc_now():
        return datetime.datetime.now(datetime.timezone.utc)

    async def scenario():
        source, queue, port = await started(debounce_seconds=0.2)
        began = utc_now()
        for job_id in range(6):
            await post_github(port, github_job("queued", job_id))
            await post_gitlab(port, gitlab_job("pending", job_id))
            await asyncio.sleep(0.15)
        await asyncio.sleep(0.4)
        ended = utc_now()
        status = await request(port, method="GET")
        await stop(source)
        return queue, began, ended, status

    queue, began, ended, (_code, status) = run(scenario())
    for pool in ("linux", "docker"):
        stamps = [e["demand"]["counted_at"] for _t, e in queue.events if e["pool"] == pool]
        assert len(stamps) >= 2, stamps
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp) for stamp in stamps), stamps
        moments = [
            datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
            for stamp in stamps
        ]
        assert all(began <= moment <= ended for moment in moments)
        assert all(a < b for a, b in zip(moments, moments[1:]))  # only increases between two events
    # Only the event's demand carries it: the status document keeps its shape.
    assert status["pools"]["linux"] == {"queued": 6, "busy": 0}


def test_counted_at_only_increases_when_the_clock_goes_back(monkeypatch):
    source = src.CIWebhookSource(src.parse_args({"pools": POOLS, "github_secret": SECRET}))
    noon = datetime.datetime(2026, 12, 2, 12, 0, 0, 500000, tzinfo=datetime.timezone.utc)
    readings = iter([noon, noon - datetime.timedelta(hours=1), noon, noon + datetime.timedelta(seconds=2)])
    monkeypatch.setattr(src, "_wall_clock", lambda: next(readings))
    assert [source.counted_at() for _n in range(4)] == [
        "2026-12-02T12:00:00.500000Z",
        "2026-12-02T12:00:00.500001Z",  # the clock was set back an hour
        "2026-12-02T12:00:00.500002Z",
        "2026-12-02T12:00:02.500000Z",
    ]


def test_counted_at_is_utc_whatever_the_zone_given():
    cet = datetime.timezone(datetime.timedelta(hours=1))
    moment = datetime.datetime(2026, 12, 2, 6, 40, 1, 123456, tzinfo=cet)
    assert src.format_counted_at(moment) == "2026-12-02T05:40:01.123456Z"


def test_main_stops_after_max_events():
    async def scenario():
        queue = TimedQueue()
        port_holder = {}
        original = src.CIWebhookSource.start

        async def start(self, q):
            port_holder["port"] = await original(self, q)
            return port_holder["port"]

        src.CIWebhookSource.start = start
        try:
            task = asyncio.get_running_loop().create_task(
                src.main(queue, {"pools": POOLS, "github_secret": SECRET, "port": 0, "max_events": 1})
            )
            while "port" not in port_holder:
                await asyncio.sleep(0.01)
            await post_github(port_holder["port"], github_job())
            return await asyncio.wait_for(task, 5), queue
        finally:
            src.CIWebhookSource.start = original

    status, queue = run(scenario())
    assert status["events"] == 1 and len(queue.events) == 1


def test_combined_pools_send_one_event_per_window_for_every_pool_that_changed():
    async def scenario():
        source, queue, port = await started(debounce_seconds=0.5, combine_pools=True)
        for job_id in range(20):
            await post_github(port, github_job("queued", job_id))
            await post_gitlab(port, gitlab_job("pending", job_id))
        await asyncio.sleep(1.2)
        await post_github(port, github_job("in_progress", 0))  # only one pool changes now
        await asyncio.sleep(0.8)
        await stop(source)
        return queue

    queue = run(scenario())
    times = [t for t, _e in queue.events]
    assert 2 <= len(times) <= 5
    assert all(b - a >= 0.5 - 0.02 for a, b in zip(times, times[1:]))
    events = [e for _t, e in queue.events]
    assert all("pool" not in e and set(e["pools"]) == set(e["demands"]) for e in events)
    # Every pool's last event carries its final counts, one counted_at for all pools of an event.
    last = {}
    for event in events:
        assert len({d["counted_at"] for d in event["demands"].values()}) == 1
        last.update(event["demands"])
    trimmed = {pool: {k: v for k, v in d.items() if k != "counted_at"} for pool, d in last.items()}
    assert trimmed == {"linux": {"queued": 19, "busy": 1}, "docker": {"queued": 20, "busy": 0}}
    # The window in which only linux changed names linux alone.
    assert events[-1]["pools"] == ["linux"]
    assert events[-1]["providers"] == ["github"]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_combine_pools_must_be_a_boolean(bad, monkeypatch):
    with pytest.raises(src.ArgumentError, match="combine_pools"):
        src.parse_args({"pools": POOLS, "github_secret": SECRET, "combine_pools": bad})


def test_load_50_queued_jobs_per_second_for_10_seconds():
    """Each job's time from its webhook to the first event carrying it; p95 within 5 s."""
    rate, seconds, debounce = 50, 10, 2.0

    async def scenario():
        source, queue, port = await started(debounce_seconds=debounce)
        sent = []
        start = time.monotonic()
        for n in range(rate * seconds):
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pool_labels = ["self-hosted", "linux", "x64"] + (["gpu"] if n % 2 else [])
            before = time.monotonic()
            status, _doc = await post_github(port, github_job("queued", 100000 + n, pool_labels))
            assert status == 202
            sent.append((before, "gpu" if n % 2 else "linux"))
        await asyncio.sleep(debounce + 0.5)
        await stop(source)
        return source, queue, sent, time.monotonic() - start

    source, queue, sent, elapsed = run(scenario())
    latencies = []
    for at, pool in sent:
        first = next(t for t, e in queue.events if e["pool"] == pool and t >= at)
        latencies.append(first - at)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    assert p95 <= 5.0, p95
    for pool in ("linux", "gpu"):
        events = [(t, e) for t, e in queue.events if e["pool"] == pool]
        gaps = [b[0] - a[0] for a, b in zip(events, events[1:])]
        assert all(gap >= debounce - 0.05 for gap in gaps), gaps
        assert len(events) <= elapsed / debounce + 1
        assert counts(events[-1][1]) == {"queued": rate * seconds // 2, "busy": 0}  # no job lost
    assert source.accepted == rate * seconds


def test_re_runs_are_counted_as_retries_not_queued():
    github = github_job("queued", 21)
    github["workflow_job"]["run_attempt"] = 2
    gitlab = gitlab_job("pending", 22)
    gitlab["retries_count"] = 1
    assert src.is_retry("github", github) and src.is_retry("gitlab", gitlab)
    assert not src.is_retry("github", github_job("queued", 23)) and not src.is_retry("gitlab", gitlab_job())
    odd = github_job("queued", 24)
    odd["workflow_job"]["run_attempt"] = "2"
    assert not src.is_retry("github", odd)
    demand = src.Demand(3600)
    demand.update(("github", 21), "linux", src.QUEUED, retry=True)
    demand.update(("github", 23), "linux", src.QUEUED)
    assert demand.counts("linux") == {"queued": 1, "busy": 0, "retries": 1}
    # A running re-run is busy like any job (it runs on a lane runner); the key goes with the last re-run.
    demand.update(("github", 21), "linux", src.BUSY)
    assert demand.counts("linux") == {"queued": 1, "busy": 1}
