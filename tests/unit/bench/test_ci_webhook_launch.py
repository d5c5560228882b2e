# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Matching queued jobs to the launch calls that give them runners, keeper runs per window, what a run is given."""

from __future__ import annotations

import math
import os

import pytest
import yaml

from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import RULEBOOK_REUSE_READ_SECONDS
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import by_slice
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import keeper_extra_vars
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import launch_latencies
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import most_runs_in_a_window
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import parse_args
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import percentiles
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import runs_per_window
from ansible_collections.parkingspot.ec2.bench.ci_webhook_launch import smallest_gap


def test_the_kth_job_of_a_pool_waits_for_the_launch_that_reaches_k_instances():
    sent = [(0.0, "a"), (0.5, "a"), (1.0, "b"), (1.5, "a")]
    launches = [(2.0, "a", 1), (3.0, "b", 1), (4.0, "a", 2)]
    covered, first = launch_latencies(sent, launches)
    assert covered == [2.0, 3.5, 2.0, 2.5]
    assert first == [2.0, 1.5, 2.0, 0.5]


def test_a_launch_before_the_webhook_covers_nothing_and_uncovered_jobs_are_none():
    # The pool already had 2 instances before the third job was sent: only a later launch serves it.
    sent = [(0.0, "a"), (0.1, "a"), (5.0, "a"), (6.0, "a")]
    launches = [(1.0, "a", 2), (7.0, "a", 1), (2.0, "other", 9)]
    covered, first = launch_latencies(sent, launches)
    assert covered == [1.0, 0.9, 2.0, None]
    assert first == [1.0, 0.9, 2.0, 1.0]


def test_a_launch_of_another_pool_never_serves_a_job():
    covered, first = launch_latencies([(0.0, "a")], [(1.0, "b", 5)])
    assert covered == [None] and first == [None]


@pytest.mark.parametrize(
    ("starts", "window", "most"),
    [
        ([], 2.0, 0),
        ([0.0], 2.0, 1),
        ([0.0, 2.0, 4.0], 2.0, 1),  # exactly one window apart: one run per window
        ([0.0, 1.99, 4.0], 2.0, 2),
        ([5.0, 0.0, 0.5, 1.0, 9.0], 2.0, 3),  # unsorted input
    ],
)
def test_most_runs_in_a_window(starts, window, most):
    assert most_runs_in_a_window(starts, window) == most


def test_percentiles_skip_missing_values():
    p50, p95, top = percentiles([1.0, None, 3.0, 2.0])
    assert (p50, top) == (2.0, 3.0) and 2.0 <= p95 <= 3.0
    assert all(math.isnan(v) for v in percentiles([None]))
    assert percentiles([4.0]) == (4.0, 4.0, 4.0)


def test_runs_per_window_are_counted_on_the_times_the_source_sent_the_events():
    def event(pool):
        return {"pool": pool, "demand": {"queued": 1, "busy": 0, "counted_at": "2026-12-02T05:40:01.123456Z"}}

    # Events of a pool spaced by the window: one per window, however late their processes start.
    events = [(0.0, event("a")), (2.0, event("a")), (4.0, event("a")), (0.5, event("b")), (1.0, event("b"))]
    assert runs_per_window(events, 2.0) == {"a": 1, "b": 2}
    assert runs_per_window([], 2.0) == {}


def test_a_combined_event_counts_as_a_run_of_each_of_its_pools():
    def event(*pools):
        demands = {pool: {"queued": 1, "busy": 0, "counted_at": "2026-12-02T05:40:01.123456Z"} for pool in pools}
        return {"pools": list(pools), "demands": demands}

    events = [(0.0, event("a", "b")), (2.0, event("a")), (3.0, event("b")), (3.5, event("a", "b"))]
    assert runs_per_window(events, 2.0) == {"a": 2, "b": 2}


def load_rulebook():
    rulebook = os.path.join(
        os.path.dirname(__file__), "..", "..", "..", "extensions", "eda", "rulebooks", "ci_queue.yml"
    )
    with open(rulebook) as handle:
        (ruleset,) = yaml.safe_load(handle)
    return ruleset


def test_the_keeper_gets_the_demands_the_rulebook_passes():
    ruleset = load_rulebook()
    passed = ruleset["rules"][0]["action"]["run_playbook"]["extra_vars"]
    assert ruleset["sources"][0]["parkingspot.ec2.ci_webhook"]["combine_pools"] is True
    demands = {
        "pool-0": {"queued": 7, "busy": 2, "counted_at": "2026-12-02T05:40:01.123456Z"},
        "pool-1": {"queued": 1, "busy": 0, "retries": 2, "counted_at": "2026-12-02T05:40:01.123456Z"},
    }
    extra = keeper_extra_vars({"pools": ["pool-0", "pool-1"], "demands": demands})
    assert extra.keys() == passed.keys()
    assert passed["parkingspot_pool_names"] == "{{ event.pools }}"
    assert passed["parkingspot_demands"] == "{{ event.demands }}"
    assert "'reuse_read_seconds': %d" % RULEBOOK_REUSE_READ_SECONDS in passed["parkingspot_run_lock"]
    assert extra == {
        "parkingspot_pool_names": ["pool-0", "pool-1"],
        "parkingspot_demands": demands,
        "parkingspot_run_lock": {"reuse_read_seconds": RULEBOOK_REUSE_READ_SECONDS},
    }


def test_an_event_of_one_pool_gives_its_demand_as_the_earlier_rulebook_did():
    event = {"pool": "pool-1", "demand": {"queued": 7, "busy": 2, "counted_at": "2026-12-02T05:40:01.123456Z"}}
    assert keeper_extra_vars(event) == {
        "parkingspot_pool_names": ["pool-1"],
        "parkingspot_demand": {"queued": 7, "busy": 2, "retries": 0, "counted_at": "2026-12-02T05:40:01.123456Z"},
    }
    event["demand"]["retries"] = 3
    assert keeper_extra_vars(event)["parkingspot_demand"]["retries"] == 3


def test_runs_start_in_parallel_unless_asked_otherwise():
    assert parse_args([]).strategy == "parallel"
    assert parse_args(["--strategy", "sequential"]).strategy == "sequential"


def test_the_tail_is_shown_per_slice_of_sending_time():
    sent = [(100.0 + t, "pool-0") for t in (0, 1, 2, 11, 12, 25)]
    text = by_slice(sent, [1.0, 1.0, 1.0, 4.0, 4.0, None])
    assert text.startswith("0-10 s 1.0, 10-20 s 4.0")
    assert "20-30 s nan" in text
    assert by_slice([], []) == "-"


def test_the_smallest_gap_between_events():
    assert smallest_gap([(4.0, {}), (0.0, {}), (2.5, {})]) == 1.5
    assert math.isnan(smallest_gap([(1.0, {})]))
