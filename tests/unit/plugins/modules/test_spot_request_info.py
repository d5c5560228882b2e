# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""spot_request_info: requests by name, state or EC2 filter, and their instances.

moto gap: requests are fulfilled at once, so every request here is ``active`` with an instance.
"""

from ansible_collections.parkingspot.ec2.plugins.modules import spot_request_info


def legacy_request(ec2, image_id, name, request_type="one-time"):
    tags = [{"ResourceType": "spot-instances-request", "Tags": [{"Key": "parkingspot:request", "Value": name}]}]
    (req,) = ec2.request_spot_instances(
        InstanceCount=1,
        Type=request_type,
        LaunchSpecification={"ImageId": image_id, "InstanceType": "t3.micro"},
        TagSpecifications=tags,
    )["SpotInstanceRequests"]
    return req["SpotInstanceRequestId"]


def test_requests_by_name_with_their_instances(ec2, image_id, run_module, api_calls):
    ours = legacy_request(ec2, image_id, "build")
    legacy_request(ec2, image_id, "other")
    api_calls.clear()
    result = run_module(spot_request_info, {"names": ["build"]})
    assert result["changed"] is False
    assert [r["spot_instance_request_id"] for r in result["spot_requests"]] == [ours]
    (request,) = result["spot_requests"]
    assert request["tags"] == {"parkingspot:request": "build"}
    assert request["expired"] is False and request["re_evaluated"] is False  # one-time
    assert [i["instance_id"] for i in result["instances"]] == [request["instance_id"]]
    assert result["instances"][0]["age_hours"] >= 0
    assert api_calls.writes() == []


def test_persistent_requests_are_re_evaluated(ec2, image_id, run_module):
    legacy_request(ec2, image_id, "keep", request_type="persistent")
    (request,) = run_module(spot_request_info, {"names": ["keep"]})["spot_requests"]
    assert request["type"] == "persistent" and request["re_evaluated"] is True


def test_state_and_filters_narrow_the_answer(ec2, image_id, run_module):
    ours = legacy_request(ec2, image_id, "build")
    assert run_module(spot_request_info, {"states": ["open"]})["spot_requests"] == []
    by_filter = run_module(spot_request_info, {"filters": {"spot-instance-request-id": [ours]}})
    assert [r["spot_instance_request_id"] for r in by_filter["spot_requests"]] == [ours]


def test_nothing_found_is_two_empty_lists(ec2, run_module):
    result = run_module(spot_request_info, {"names": ["nothing"]})
    assert (result["spot_requests"], result["instances"]) == ([], [])


def test_without_instances_no_instance_is_read(ec2, image_id, run_module, api_calls):
    legacy_request(ec2, image_id, "build")
    api_calls.clear()
    result = run_module(spot_request_info, {"names": ["build"], "include_instances": False})
    assert len(result["spot_requests"]) == 1 and result["instances"] == []
    assert api_calls.names() == ["DescribeSpotInstanceRequests"]
