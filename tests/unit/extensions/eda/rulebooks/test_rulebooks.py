# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local and the controller rulebooks react to the same events in the same way.

The local rulebook runs end to end under ansible-rulebook in tests/integration/eda/; the
controller variant cannot (it needs an AWX to launch a job template), so it is held to the
local one here, and schema-checked by tests/integration/eda/rulebook.sh.
"""

import os

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RULEBOOKS = os.path.join(HERE, "..", "..", "..", "..", "..", "extensions", "eda", "rulebooks")


def load(name):
    with open(os.path.join(RULEBOOKS, name)) as handle:
        return yaml.safe_load(handle)


def test_both_rulebooks_match_except_for_the_action():
    (local,) = load("spot_interruptions.yml")
    (controller,) = load("spot_interruptions_controller.yml")
    assert local["sources"] == controller["sources"]
    assert [r["condition"] for r in local["rules"]] == [r["condition"] for r in controller["rules"]]
    assert [r.get("throttle") for r in local["rules"]] == [r.get("throttle") for r in controller["rules"]]
    run = local["rules"][0]["action"]["run_playbook"]
    launch = controller["rules"][0]["action"]["run_job_template"]
    assert run["name"] == "parkingspot.ec2.runner_pool"
    assert run["extra_vars"] == launch["job_args"]["extra_vars"] == {"parkingspot_pool_names": ["{{ event.pool }}"]}


def test_source_is_the_collection_event_source():
    (local,) = load("spot_interruptions.yml")
    (source,) = local["sources"]
    plugin = [key for key in source if key != "name"]
    assert plugin == ["parkingspot.ec2.spot_interruptions"]
    path = os.path.join(RULEBOOKS, "..", "plugins", "event_source", "spot_interruptions.py")
    assert os.path.isfile(path)


def test_throttle_groups_by_pool():
    (local,) = load("spot_interruptions.yml")
    throttle = local["rules"][0]["throttle"]
    assert throttle["group_by_attributes"] == ["event.pool"]
    assert throttle["once_within"] == "1 minute"


def test_ci_queue_rulebooks_match_except_for_the_action():
    (local,) = load("ci_queue.yml")
    (controller,) = load("ci_queue_controller.yml")
    assert [r["condition"] for r in local["rules"]] == [r["condition"] for r in controller["rules"]]
    (source,) = local["sources"]
    assert [key for key in source if key != "name"] == ["parkingspot.ec2.ci_webhook"]
    assert os.path.isfile(os.path.join(RULEBOOKS, "..", "plugins", "event_source", "ci_webhook.py"))
    run = local["rules"][0]["action"]["run_playbook"]
    launch = controller["rules"][0]["action"]["run_job_template"]
    assert run["name"] == "parkingspot.ec2.runner_pool"
    # One event per window for every pool that changed, each pool with its own demand.
    expected = {
        "parkingspot_pool_names": "{{ event.pools }}",
        "parkingspot_demands": "{{ event.demands }}",
        # Runs of a burst plan their launches from a read of the last 30 s (spot_pools run_lock).
        "parkingspot_run_lock": "{{ parkingspot_ci_run_lock | default({'reuse_read_seconds': 30}) }}",
    }
    assert run["extra_vars"] == launch["job_args"]["extra_vars"] == expected
    assert source["parkingspot.ec2.ci_webhook"]["combine_pools"] is True
    (remote,) = controller["sources"]
    assert remote["parkingspot.ec2.ci_webhook"]["combine_pools"] is True
    # The source debounces; a rulebook throttle would drop the newest demand.
    assert all("throttle" not in rule for rule in local["rules"] + controller["rules"])


def test_local_ci_queue_runs_overlap_and_the_controller_one_stays_sequential():
    # Locally every event starts its keeper run at once (the keeper serializes one pool's runs and
    # the newest counted_at wins); the controller launches a job template with "Concurrent jobs" off.
    (local,) = load("ci_queue.yml")
    (controller,) = load("ci_queue_controller.yml")
    assert local["execution_strategy"] == "parallel"
    assert controller.get("execution_strategy", "sequential") == "sequential"
