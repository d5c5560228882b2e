"""A working day of a block pool, planned every 5 minutes against a fake cloud.

This is the story the demo tells (opening hours, interruptions, renewals and expiry, a
capacity error with on-demand fallback and the switch back, closing), played with the pure
schedule and planner functions only.  The fake cloud below does what the module would do
with a plan: terminate, launch (failing spot launches while capacity is short), then tag
drains; a drain of an idle runner succeeds at once, a busy one waits for its deadline.
"""

from __future__ import annotations

import datetime

from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import is_fallback_error
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import lease_end
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import parse_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_fallback
from ansible_collections.parkingspot.ec2.plugins.module_utils._planner import plan_pool
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import desired_at
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_schedule
from ansible_collections.parkingspot.ec2.plugins.module_utils._schedule import validate_timezone

UTC = datetime.timezone.utc
BERLIN = validate_timezone("Europe/Berlin")
SCHEDULE = validate_schedule(
    [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00", "desired": 4}]
)
POOL = {"market": "block", "duration_minutes": 60, "renew_before_minutes": 20, "drain_timeout_seconds": 300}
FALLBACK = {"enabled": True, "max": 2}


class FakeCloud:
    def __init__(self):
        self.instances = []
        self.spot_ok = True
        self.serial = 0
        self.calls = {"launch_spot": 0, "launch_on_demand": 0, "terminate": 0}

    def live(self):
        return [i for i in self.instances if i["state"] in ("pending", "running")]

    def by_id(self, iid):
        return next(i for i in self.instances if i["instance_id"] == iid)

    def _launch(self, now, count, market):
        for _count in range(count):
            self.serial += 1
            self.instances.append(
                {
                    "instance_id": f"i-{self.serial:04d}",
                    "state": "pending",
                    "launch_time": now,
                    "instance_type": "m5.large",
                    "subnet_id": "subnet-1",
                    "zone": "eu-central-1a",
                    "market": market,
                    "tags": {"parkingspot:pool": "ci", "parkingspot:expires-at": lease_end(now, 60)},
                }
            )

    def apply(self, now, plan):
        """Act on a plan the way the keeper module does; return the final plan."""
        if plan["terminate"]:
            self.calls["terminate"] += 1
        for iid in plan["terminate"]:
            self.by_id(iid)["state"] = "terminated"
        if plan["launch"]["spot"]:
            self.calls["launch_spot"] += 1
            if self.spot_ok:
                self._launch(now, plan["launch"]["spot"], "spot")
            else:
                assert is_fallback_error("InsufficientInstanceCapacity")
                plan = plan_fallback(plan, 0, "InsufficientInstanceCapacity")
        if plan["launch"]["on_demand"]:
            self.calls["launch_on_demand"] += 1
            self._launch(now, plan["launch"]["on_demand"], "on-demand")
        for drain in plan["drain"]:
            inst = self.by_id(drain["instance_id"])
            if inst["tags"].get("parkingspot:busy") == "true":
                inst["tags"]["parkingspot:state"] = "draining"
                inst["tags"]["parkingspot:drain-deadline"] = drain["deadline"]
            else:
                inst["state"] = "terminated"  # drain succeeded: terminated at once
        return plan

    def tick(self, now):
        """Pending instances boot; on-instance backstops end expired leases (unless broken)."""
        for inst in self.instances:
            if inst["state"] == "pending" and inst["launch_time"] < now:
                inst["state"] = "running"
            lease = parse_time(inst["tags"].get("parkingspot:expires-at"))
            broken = inst.get("backstop_broken", False)
            if inst["state"] == "running" and lease is not None and lease <= now and not broken:
                inst["state"] = "terminated"


def test_a_working_day():
    cloud = FakeCloud()
    start = datetime.datetime(2026, 11, 23, 6, 30, tzinfo=UTC)  # Monday 07:30 in Berlin
    log = []
    short_runs = 0
    saw = {"fallback": False, "switch_back": False, "renew": False, "expired_by_keeper": False}
    for step in range(12 * 12):  # 12 hours, every 5 minutes
        now = start + datetime.timedelta(minutes=5 * step)
        cloud.tick(now)
        if now == datetime.datetime(2026, 11, 23, 7, 30, tzinfo=UTC):
            # Two spot instances are reclaimed behind the keeper's back, one is busy.
            running = [i for i in cloud.live() if i["state"] == "running"]
            for victim in running[:2]:
                victim["state"] = "terminated"
                victim["tags"]["parkingspot:interrupted"] = "true"
            # This one runs a long job (its drain waits) and its shutdown backstop fails:
            # the keeper must end the lease itself.
            running[2]["tags"]["parkingspot:busy"] = "true"
            running[2]["backstop_broken"] = True
        if now == datetime.datetime(2026, 11, 23, 9, 0, tzinfo=UTC):
            cloud.spot_ok = False  # capacity error from now on
        if now == datetime.datetime(2026, 11, 23, 10, 30, tzinfo=UTC):
            cloud.spot_ok = True
        desired, _window = desired_at(now, 0, SCHEDULE, BERLIN)
        plan = plan_pool(cloud.instances, now=now, desired=desired, fallback=FALLBACK, **POOL)
        saw["renew"] |= bool(plan["renew"])
        saw["switch_back"] |= bool(plan["replace_on_demand"])
        saw["expired_by_keeper"] |= any("lease ended" in r for r in plan["reasons"])
        plan = cloud.apply(now, plan)
        saw["fallback"] |= plan["launch"]["on_demand"] > 0
        live = cloud.live()
        serving = [i for i in live if i["tags"].get("parkingspot:state") != "draining"]
        on_demand = [i for i in live if i["market"] == "on-demand"]
        log.append((format_time(now), desired, len(serving), len(on_demand)))

        assert len(on_demand) <= FALLBACK["max"]
        for inst in live:
            assert parse_time(inst["tags"]["parkingspot:expires-at"]) > now, "a lease was outlived"
        if cloud.spot_ok:
            # Whenever spot works, the pool is back to desired within the same run.
            assert len(serving) >= desired, log[-3:]
        else:
            # During the capacity error the fallback fills what on_demand_fallback.max allows.  An
            # on-demand lease cannot be renewed before it ends (the old one still counts against
            # the maximum), so the pool may be short for one run, never for two in a row.
            spot_serving = len([i for i in serving if i["market"] == "spot"])
            short = len(serving) < min(desired, spot_serving + FALLBACK["max"])
            assert not (short and short_runs), log[-3:]
            short_runs = short_runs + 1 if short else 0
        if desired == 0 and now >= datetime.datetime(2026, 11, 23, 17, 10, tzinfo=UTC):
            assert live == [], "closing hours: nothing may keep running after the drains"

    assert all(saw.values()), saw
    # Opening: one launch call for the 4 instances, not one per instance.
    assert log[6] == ("2026-11-23T07:00:00Z", 4, 4, 0)
    # After the spot outage the on-demand fallback instances are gone again.
    assert [entry for entry in log if entry[0] == "2026-11-23T11:30:00Z"][0][3] == 0
    # One launch call per run at most, and far fewer calls than instances launched.
    assert cloud.calls["launch_spot"] + cloud.calls["launch_on_demand"] <= len(log)
    assert cloud.serial > cloud.calls["launch_spot"] + cloud.calls["launch_on_demand"]
