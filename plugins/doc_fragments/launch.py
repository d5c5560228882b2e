# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # Launch settings shared by spot_request, spot_block and spot_pool.
    DOCUMENTATION = r"""
options:
  launch_template:
    description:
      - The launch template to launch from. Mutually exclusive with O(image_id).
      - Required when O(instance_types) or O(subnet_ids) diversify the launch (CreateFleet launches from templates).
    type: dict
    suboptions:
      id:
        description: Launch template id. Give O(launch_template.id) or O(launch_template.name).
        type: str
      name:
        description: Launch template name.
        type: str
      version:
        description: Template version, a number or C($Default) or C($Latest).
        type: str
        default: $Default
  image_id:
    description: AMI to launch when no O(launch_template) is given.
    type: str
  instance_type:
    description: The instance type. Required with O(image_id) unless O(instance_types) is given.
    type: str
  instance_types:
    description:
      - Several instance types to diversify over. More than one selects CreateFleet C(type=instant) with
        O(allocation_strategy).
    type: list
    elements: str
    default: []
  subnet_id:
    description: Subnet to launch into.
    type: str
  subnet_ids:
    description: Several subnets (zones) to diversify over; more than one selects CreateFleet.
    type: list
    elements: str
    default: []
  security_group_ids:
    description: Security group ids for the instances.
    type: list
    elements: str
    default: []
  key_name:
    description: EC2 key pair name.
    type: str
  iam_instance_profile:
    description:
      - Instance profile name or ARN. Instances get AWS credentials from it; ParkingSpot never writes
        credentials into user data.
    type: str
  user_data:
    description: User data (plain text; it is base64-encoded for you).
    type: str
  allocation_strategy:
    description: Spot allocation strategy for diversified (CreateFleet) launches.
    type: str
    default: price-capacity-optimized
    choices: [price-capacity-optimized, capacity-optimized, lowest-price, diversified]
  max_price:
    description:
      - Highest price per instance-hour you accept, as a decimal string. AWS discourages setting one; without it
        you pay the current spot price, capped at the on-demand price.
    type: str
  metadata_options:
    description: Instance metadata service settings. IMDSv2 (tokens required) is the default.
    type: dict
    default: {}
    suboptions:
      http_tokens:
        description: C(required) enforces IMDSv2.
        type: str
        default: required
        choices: [required, optional]
      http_endpoint:
        description: Whether the metadata endpoint is on.
        type: str
        default: enabled
        choices: [enabled, disabled]
      http_put_response_hop_limit:
        description: Hop limit for token responses (2 lets containers on the host reach IMDS).
        type: int
        default: 2
      instance_metadata_tags:
        description: Whether instance tags are visible in the metadata.
        type: str
        default: disabled
        choices: [enabled, disabled]
  tags:
    description:
      - Tags for the instances, their volumes and spot requests, applied at launch (TagSpecifications).
      - ParkingSpot adds its own C(parkingspot:*) tags. Keys starting with C(parkingspot:) or C(aws:) are refused.
      - Values are stored and compared as text (C(2) and C("2") are the same value).
      - Modules that reconcile tags on existing resources leave them as they are when O(tags) is omitted.
    type: dict
  api:
    description:
      - Which EC2 API launches the capacity.
      - C(auto) uses RunInstances with InstanceMarketOptions for one type and subnet, CreateFleet C(type=instant)
        when O(instance_types) or O(subnet_ids) diversify.
      - C(request_spot_instances) uses the legacy RequestSpotInstances API, for EC2-compatible clouds. Only
        M(parkingspot.ec2.spot_request) accepts it, since pools and blocks find their instances by tags set at launch,
        which that API cannot set. RequestSpotInstances cannot set O(metadata_options) either; require IMDSv2
        through the AMI or the account's instance metadata defaults instead (the module warns).
    type: str
    default: auto
    choices: [auto, run_instances, fleet, request_spot_instances]
"""

    SPOT = r"""
options:
  request_type:
    description:
      - C(one-time) requests end when their instance is interrupted. C(persistent) requests relaunch (or restart)
        the instance until cancelled or until O(valid_until).
    type: str
    default: one-time
    choices: [one-time, persistent]
  interruption_behavior:
    description:
      - What EC2 does to an interrupted instance. With RunInstances, persistent requests need C(stop) or
        C(hibernate); one-time requests need C(terminate).
    type: str
    default: terminate
    choices: [terminate, stop, hibernate]
  valid_until:
    description:
      - End of a persistent request's validity (ISO 8601, UTC when no offset is given). Persistent requests only.
    type: str
"""
