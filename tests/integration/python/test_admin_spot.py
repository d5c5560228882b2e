# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/admin_spot.yml against the local EC2 API: show first, terminate only with confirm=true."""

import pytest
from local_ec2 import fresh_ec2
from local_ec2 import instances
from local_ec2 import needs_local_ec2
from local_ec2 import run_playbook
from local_ec2 import run_spot
from local_ec2 import tags

pytestmark = needs_local_ec2


@pytest.fixture
def ec2():
    client = fresh_ec2()
    for owner, count in (("build", 2), ("web", 1)):
        run_spot(client, count, {"owner": owner})
    return client


def running(ec2):
    return sorted(tags(i)["owner"] for i in instances(ec2, pools_only=False).values())


def admin(*extra):
    return run_playbook("admin_spot.yml", *extra)


def test_without_confirm_it_only_shows(ec2):
    code, output = admin("parkingspot_admin_owner=build")
    assert code == 0, output[-2000:]
    assert "would terminate 2 instance(s)" in output
    assert running(ec2) == ["build", "build", "web"]


def test_with_confirm_only_the_selection_goes(ec2):
    code, output = admin("parkingspot_admin_owner=build", "confirm=true")
    assert code == 0, output[-2000:]
    assert "terminated 2 instance(s)" in output
    assert running(ec2) == ["web"]


def test_confirm_without_a_selection_is_refused(ec2):
    code, output = admin("confirm=true")
    assert code != 0
    assert "Refusing to terminate every spot instance" in output
    assert running(ec2) == ["build", "build", "web"]
