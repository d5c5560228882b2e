# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_pool_info: one describe for every pool, counts and leases per pool."""

from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool
from ansible_collections.parkingspot.ec2.plugins.modules import spot_pool_info


def test_reports_every_pool_with_one_describe(ec2, image_id, run_module, api_calls):
    launch = {"image_id": image_id, "instance_type": "t3.micro"}
    run_module(spot_pool, dict(launch, name="linux", desired=3))
    run_module(
        spot_pool,
        dict(launch, name="blocks", desired=1, market="block", duration_minutes=60, now="2026-11-30T09:00:00Z"),
    )
    api_calls.clear()
    result = run_module(spot_pool_info, {"now": "2026-11-30T09:50:00Z"})
    assert result["changed"] is False
    assert api_calls.names() == ["DescribeInstances", "DescribeInstanceTypes"]
    pools = {p["name"]: p for p in result["pools"]}
    assert sorted(pools) == ["blocks", "linux"]
    assert pools["linux"]["counts"]["capacity"] == 3 and pools["linux"]["market"] == "spot"
    assert pools["linux"]["vcpus_used"] == 6
    assert pools["blocks"]["market"] == "block"
    assert [(b["remaining_minutes"], b["status"]) for b in pools["blocks"]["blocks"]] == [(10, "expiring")]


def test_named_pool_that_does_not_exist_is_empty(ec2, run_module):
    result = run_module(spot_pool_info, {"names": ["nothing"]})
    assert result["pools"][0]["name"] == "nothing"
    assert result["pools"][0]["counts"]["capacity"] == 0
