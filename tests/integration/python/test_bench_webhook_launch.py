# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bench/ci_webhook_launch.py end to end at a tiny load: the figures of docs/benchmarks.md come
from a command that works, in both of its ways of running the EC2 side.

Only what does not depend on the machine's speed is asserted: every delivery accepted, every
keeper run succeeded, as many instances launched as the final demand asks for, no double launch.
"""

import os
import re
import subprocess
import sys

from local_ec2 import env_without_local_ec2
from local_ec2 import needs_local_ec2

pytestmark = needs_local_ec2

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bench", "ci_webhook_launch.py")


def bench(*options):
    # Its own EC2 side (a with_moto process, or moto in the bench's process), not this tier's.
    env = env_without_local_ec2()
    done = subprocess.run(
        [sys.executable, BENCH, "--rate", "3", "--seconds", "2", "--pools", "2", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        check=False,
        timeout=300,
    )
    return done.stdout.decode()


def row(output, measure):
    found = re.search(r"^\| %s \| (.*) \|$" % re.escape(measure), output, re.M)
    assert found, output[-3000:]
    return found.group(1)


def check(output):
    assert re.match(r"6 \(6 accepted, HTTP \[202\]\)$", row(output, "deliveries")), output[-3000:]
    assert ", 0 failed;" in row(output, "events (keeper runs started)"), output[-3000:]
    assert row(output, "instances launched / final queued demand") == "pool-0 3 / 3, pool-1 3 / 3", output[-3000:]
    assert row(output, "double launches (instances above demand)") == "none"
    assert row(output, "instances in moto per pool") == "pool-0 3, pool-1 3"


def test_the_bench_with_ec2_in_a_process_of_its_own_and_combined_events():
    output = bench()
    assert "in a process of their own" in output and "pools combined" in output, output[-3000:]
    check(output)


def test_the_bench_with_ec2_in_its_process_and_an_event_per_pool():
    output = bench("--same-process", "--per-pool-events")
    assert "in this process" in output and "an event per pool" in output, output[-3000:]
    check(output)
