# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The token buckets that pace the keeper's writes, on a fake clock."""

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _pacing


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def test_burst_is_free_then_calls_wait_for_the_refill(clock):
    bucket = _pacing.TokenBucket(5, 2, clock, clock.sleep)
    assert [bucket.take() for _call in range(5)] == [0.0] * 5
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(0.5)
    assert clock.slept == [pytest.approx(0.5), pytest.approx(0.5)]


def test_refill_never_passes_the_capacity(clock):
    bucket = _pacing.TokenBucket(5, 2, clock, clock.sleep)
    for _call in range(5):
        bucket.take()
    clock.now += 3600
    assert bucket.available() == 5
    assert sum(bucket.take() for _call in range(6)) == pytest.approx(0.5)


def test_more_than_the_capacity_waits_for_the_rest_and_empties_it(clock):
    bucket = _pacing.TokenBucket(1000, 2, clock, clock.sleep)
    assert bucket.take(1200) == pytest.approx(100.0)
    assert bucket.available() == 0
    assert bucket.take(2) == pytest.approx(1.0)


def test_bucket_refuses_nonsense():
    with pytest.raises(ValueError):
        _pacing.TokenBucket(0, 2)


def test_pacer_never_exceeds_the_documented_rate(clock):
    """60 RunInstances in a row: at most 5 + 2 t calls by every time t, and the wait is reported."""
    pacer = _pacing.Pacer(clock, clock.sleep)
    start = clock.now
    stamps = []
    for _call in range(60):
        pacer.take("RunInstances", instances=10)
        stamps.append(clock.now - start)
    for index, stamp in enumerate(stamps):
        assert index + 1 <= 5 + 2 * stamp + 1e-9
    report = pacer.report()
    assert report["writes"] == {"RunInstances": 60}
    assert report["waited_seconds"] == pytest.approx(27.5)  # (60 - 5) / 2
    assert report["waited_by_action"]["RunInstances"] == pytest.approx(27.5)


def test_instances_bucket_paces_large_launches(clock):
    pacer = _pacing.Pacer(clock, clock.sleep)
    assert pacer.take("RunInstances", instances=1000) == 0
    assert pacer.take("RunInstances", instances=10) == pytest.approx(5.0)  # 10 instances at 2 per second


def test_unknown_writes_share_the_mutating_bucket(clock):
    pacer = _pacing.Pacer(clock, clock.sleep, buckets={"mutating": (1, 1)})
    assert pacer.take("CreateFleet") == 0
    assert pacer.take("CancelSpotInstanceRequests") == pytest.approx(1.0)


def test_paced_client_waits_before_writes_only(clock):
    calls = []

    class Client:
        def run_instances(self, **kwargs):
            calls.append(("run", clock.now, kwargs["MaxCount"]))

        def describe_instances(self, **kwargs):
            calls.append(("describe", clock.now, None))

    pacer = _pacing.Pacer(clock, clock.sleep, buckets={"RunInstances": (1, 1), "mutating": (1, 1)})
    client = _pacing.PacedClient(Client(), pacer)
    client.run_instances(MinCount=3, MaxCount=3)
    client.run_instances(MinCount=3, MaxCount=3)
    for _call in range(3):
        client.describe_instances()
    assert [c[0] for c in calls] == ["run", "run", "describe", "describe", "describe"]
    assert calls[1][1] - calls[0][1] == pytest.approx(1.0)
    assert calls[4][1] == calls[1][1]  # reads are not paced
    assert pacer.report()["writes"] == {"RunInstances": 2}
