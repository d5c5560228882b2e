# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lease backstop script, run for real with fake date/shutdown; client tokens; the read and drain steps."""

import os
import stat
import subprocess

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

END = "2026-11-30T10:00:00Z"
END_EPOCH = 1796032800


def fake(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    "seconds_left, expected", [(3600, "-h +60"), (61 * 60 + 30, "-h +61"), (45, "-h now"), (-5, "-h now")]
)
def test_backstop_powers_off_at_the_lease_end(tmp_path, seconds_left, expected):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake(bin_dir, "date", "echo %d\n" % (END_EPOCH - seconds_left))
    fake(bin_dir, "shutdown", 'echo "$@" > %s\n' % (tmp_path / "shutdown.args"))
    script = tmp_path / "backstop.sh"
    script.write_text(_keeper.backstop_script(END))
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    subprocess.run(["sh", str(script)], env=env, check=True)
    assert (tmp_path / "shutdown.args").read_text().strip() == expected


def test_backstop_epoch_matches_the_tag():
    assert "end=%d" % END_EPOCH in _keeper.backstop_script(END)


def test_single_user_data_stays_as_it_is():
    assert _keeper.combine_user_data(["#!/bin/sh\necho hi\n", ""]) == "#!/bin/sh\necho hi\n"


def test_client_token_depends_on_what_the_run_saw():
    seen = [{"instance_id": "i-1", "state": "running"}, {"instance_id": "i-2", "state": "terminated"}]
    token = _keeper.client_token("ci", "spot", 2, seen, "2026-11-30T10:00")
    assert token == _keeper.client_token("ci", "spot", 2, list(reversed(seen)), "2026-11-30T10:00")
    assert len(token) <= 64
    others = [
        _keeper.client_token("ci", "spot", 3, seen, "2026-11-30T10:00"),
        _keeper.client_token("ci", "on-demand", 2, seen, "2026-11-30T10:00"),
        _keeper.client_token("ci", "spot", 2, seen[:1], "2026-11-30T10:00"),
        _keeper.client_token("ci", "spot", 2, seen, "2026-11-30T10:01"),
        _keeper.client_token("other", "spot", 2, seen, "2026-11-30T10:00"),
    ]
    assert token not in others and len(set(others)) == len(others)


def test_read_facts_calls_nothing_without_quotas_or_an_asg_fallback():
    def no_asg_client():
        raise AssertionError("no Auto Scaling client is needed")

    params = {"on_demand_fallback": {"enabled": False, "asg_name": "ci-on-demand"}, "quota": {}}
    facts = _keeper.read_facts(None, None, params, [], no_asg_client)
    assert facts == {"quota": {}, "vcpus": {}, "asg_capacity": None}


class FakeAutoScaling:
    def __init__(self, groups):
        self.groups = groups

    def describe_auto_scaling_groups(self, AutoScalingGroupNames):
        return {"AutoScalingGroups": [g for g in self.groups if g["AutoScalingGroupName"] in AutoScalingGroupNames]}


def test_read_facts_reads_the_fallback_group_once():
    made = []

    def asg_client():
        made.append(1)
        return FakeAutoScaling([{"AutoScalingGroupName": "ci-on-demand", "DesiredCapacity": 3}])

    params = {"on_demand_fallback": {"enabled": True, "asg_name": "ci-on-demand"}}
    assert _keeper.read_facts(None, None, params, [], asg_client)["asg_capacity"] == 3
    assert made == [1]
    params = {"on_demand_fallback": {"enabled": True, "asg_name": "nope"}}
    with pytest.raises(InputError, match="^on_demand_fallback.asg_name: no auto scaling group named nope") as raised:
        _keeper.read_facts(None, None, params, [], lambda: FakeAutoScaling([]))
    assert raised.value.option == "on_demand_fallback.asg_name"


def test_lazy_client_makes_the_client_once():
    class Module:
        made = []

        def client(self, service):
            self.made.append(service)
            return object()

    get = _keeper.lazy_client(Module(), "autoscaling")
    assert get() is get()
    assert Module.made == ["autoscaling"]


def test_drain_planned_drains_only_what_was_tagged():
    import datetime

    now = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.timezone.utc)
    instances = [{"instance_id": "i-1"}, {"instance_id": "i-2"}]
    plan = {"drain": [{"instance_id": i, "deadline": "2026-11-30T10:10:00Z"} for i in ("i-1", "i-2")]}
    actions = _keeper.new_actions()
    drained = _keeper.drain_planned({}, plan, instances, now, actions, pool_key="ci", tagged={"i-2"})
    assert drained == ["i-2"] == actions["drained"]
    assert actions["drain_outcomes"] == [{"instance_id": "i-2", "status": "skipped", "detail": "no drain configured"}]
    assert _keeper.drain_planned({}, plan, instances, now, _keeper.new_actions(), pool_key="ci") == ["i-1", "i-2"]


class RecordingLocks:
    def __init__(self):
        self.recorded, self.released = [], []

    def record(self, name, launched):
        self.recorded.append((name, [i["instance_id"] for i in launched]))

    def release(self, name):
        self.released.append(name)


def test_launches_made_before_an_error_are_journaled_and_the_lock_let_go(monkeypatch):
    def half_then_fail(module, client, params, plan, actions, **kw):
        _keeper.note_launched(actions, [{"instance_id": "i-1", "market": "spot"}], {"parkingspot:pool": "ci"})
        raise RuntimeError("the second launch call failed")

    monkeypatch.setattr(_keeper, "launch_planned", half_then_fail)
    locks = RecordingLocks()
    plan = {"terminate": [], "drain": []}
    with pytest.raises(RuntimeError):
        _keeper.act(
            None,
            None,
            {},
            plan,
            [],
            {"asg_capacity": None},
            pool_key="ci",
            identity={},
            market="spot",
            now=None,
            block_mode="emulated",
            asg_client=None,
            locks=locks,
        )
    assert locks.recorded == [("ci", ["i-1"])] and locks.released == ["ci"]
