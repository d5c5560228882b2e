# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The request and instance shapes documented once (doc_fragments/shapes.py) are what the modules return.

Each module's RETURN is merged with the fragments it names the way ansible-doc merges them, and
the keys of every returned request and instance are compared with the documented ``contains``.
"""

import pytest
import yaml
from ansible.utils.plugin_docs import merge_fragment

from ansible_collections.parkingspot.ec2.plugins.doc_fragments.shapes import ModuleDocFragment
from ansible_collections.parkingspot.ec2.plugins.modules import spot_request
from ansible_collections.parkingspot.ec2.plugins.modules import spot_request_info

FRAGMENT = "parkingspot.ec2.shapes."
SHAPED = {spot_request: ("spot_requests", "instances"), spot_request_info: ("spot_requests", "instances")}


def return_docs(module):
    """The module's RETURN with the shapes fragments it names merged in."""
    docs = yaml.safe_load(module.RETURN)
    for name in docs.pop("extends_documentation_fragment", []):
        if name.startswith(FRAGMENT):
            merge_fragment(docs, yaml.safe_load(getattr(ModuleDocFragment, name[len(FRAGMENT) :].upper())))
    return docs


def documented(module, key):
    return set(return_docs(module)[key]["contains"])


@pytest.mark.parametrize("module", sorted(SHAPED, key=lambda m: m.__name__), ids=lambda m: m.__name__.split(".")[-1])
def test_modules_take_the_shapes_from_the_fragment_and_keep_their_own_description(module):
    own = yaml.safe_load(module.RETURN)
    fragments = yaml.safe_load(ModuleDocFragment.REQUESTS) | yaml.safe_load(ModuleDocFragment.INSTANCES)
    for key in SHAPED[module]:
        assert set(own[key]) == {"description"}
        assert return_docs(module)[key]["contains"] == fragments[key]["contains"]


def legacy_request(ec2, image_id, name):
    tags = [{"ResourceType": "spot-instances-request", "Tags": [{"Key": "parkingspot:request", "Value": name}]}]
    ec2.request_spot_instances(
        InstanceCount=1,
        Type="persistent",
        LaunchSpecification={"ImageId": image_id, "InstanceType": "t3.micro"},
        TagSpecifications=tags,
    )


def test_spot_request_info_returns_the_documented_keys(ec2, image_id, run_module):
    legacy_request(ec2, image_id, "build")
    result = run_module(spot_request_info, {"names": ["build"]})
    assert len(result["spot_requests"]) == 1 and len(result["instances"]) == 1
    for key in SHAPED[spot_request_info]:
        for item in result[key]:
            assert set(item) == documented(spot_request_info, key), key


@pytest.mark.parametrize("check_mode", [False, True])
def test_spot_request_returns_the_documented_keys(ec2, image_id, run_module, check_mode):
    args = {"name": "runners", "image_id": image_id, "instance_type": "t3.micro", "api": "request_spot_instances"}
    if check_mode:  # what is there is returned as read
        run_module(spot_request, args)
    result = run_module(spot_request, args, check_mode=check_mode)
    assert len(result["spot_requests"]) == 1 and len(result["instances"]) == 1
    for key in SHAPED[spot_request]:
        for item in result[key]:
            assert set(item) == documented(spot_request, key), key
    assert set(return_docs(spot_request)["expired_requests"]["sample"][0]) <= documented(spot_request, "spot_requests")
