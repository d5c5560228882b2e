# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo` (tools/demo.py), the README's first command, end to end.

It starts its own local EC2 API, so this tier's is not used. Asserted: the run succeeds, both
pools are reported with interruptions and the outage's on-demand fallback in ci-spot, the
simulated outage refused spot launches, and the usage report files hold both pools.
"""

import csv
import os
import re
import subprocess
import sys

from local_ec2 import env_without_local_ec2
from local_ec2 import needs_local_ec2

pytestmark = needs_local_ec2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_the_demo_keeps_both_pools_through_the_day_and_reports_them():
    env = env_without_local_ec2()
    done = subprocess.run(
        [sys.executable, os.path.join("tools", "demo.py")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        check=False,
        timeout=600,
    )
    output = done.stdout.decode()
    assert done.returncode == 0, output[-3000:]
    spot = re.search(r"pool ci-spot: (\d+) instances \((\d+) spot, (\d+) on-demand, (\d+) interrupted\)", output)
    blocks = re.search(r"pool ci-blocks: (\d+) instances \((\d+) spot, (\d+) on-demand, (\d+) interrupted\)", output)
    assert spot and blocks, output[-3000:]
    assert int(spot.group(3)) >= 1 and int(spot.group(4)) >= 1  # fallback in the outage; interruptions
    refused = re.search(r"Spot launches refused by the simulated capacity outage: (\d+)", output)
    assert refused and int(refused.group(1)) >= 1, output[-3000:]
    out_dir = os.path.join(ROOT, "demo-output")
    with open(os.path.join(out_dir, "usage-report.csv"), newline="", encoding="utf-8") as handle:
        pools = {row["pool"] for row in csv.DictReader(handle)}
    assert pools == {"ci-spot", "ci-blocks"}
    assert os.path.getsize(os.path.join(out_dir, "usage-report.html")) > 0
