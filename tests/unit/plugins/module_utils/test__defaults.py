# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each shared default is defined once (_defaults.py); the argument specs use it and the docs state it."""

import yaml

from ansible_collections.parkingspot.ec2.plugins.module_utils import _defaults
from ansible_collections.parkingspot.ec2.plugins.module_utils import _keeper
from ansible_collections.parkingspot.ec2.plugins.modules import spot_block
from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool


def documented(module, *path):
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    for name in path[:-1]:
        options = options[name]["suboptions"]
    return options[path[-1]].get("default")


def test_renew_before_minutes_is_documented_as_defined():
    assert documented(spot_pool, "renew_before_minutes") == _defaults.RENEW_BEFORE_MINUTES
    assert documented(spot_block, "renew_before_minutes") == _defaults.RENEW_BEFORE_MINUTES


def test_drain_timeout_is_documented_as_defined():
    assert documented(spot_pool, "drain", "timeout") == _defaults.DRAIN_TIMEOUT_SECONDS
    assert _keeper.DRAIN_ARGUMENT_SPEC["options"]["timeout"]["default"] == _defaults.DRAIN_TIMEOUT_SECONDS


def test_the_specs_take_renew_before_minutes_from_the_one_definition(monkeypatch):
    captured = {}

    class Stop(Exception):
        pass

    def capture(argument_spec, **_kwargs):
        captured["spec"] = argument_spec
        raise Stop

    for module in (spot_pool, spot_block):
        monkeypatch.setattr(module, "AnsibleAWSModule", capture)
        try:
            module.main()
        except Stop:
            pass
        assert captured["spec"]["renew_before_minutes"]["default"] == _defaults.RENEW_BEFORE_MINUTES
