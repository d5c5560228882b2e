# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The spot request and instance shapes every module returns: _aws.normalize_spot_request and
    # _aws.normalize_instance, plus what _usage.with_validity and _usage.with_age add at the time of
    # the call. A module names the fragment in its RETURN and gives only its own description;
    # tests/unit/plugins/doc_fragments/test_shapes.py checks the keys against what the modules return.

    REQUESTS = r"""
spot_requests:
  description: Spot requests.
  returned: always
  type: list
  elements: dict
  contains:
    spot_instance_request_id:
      description: Request id.
      type: str
      sample: sir-0a1b2c3d
    state:
      description: C(open), C(active), C(disabled), C(closed), C(cancelled) or C(failed).
      type: str
      sample: active
    status_code:
      description: The request's status code, for example C(fulfilled) or C(capacity-not-available).
      type: str
      sample: fulfilled
    status_message:
      description: EC2's explanation of the status code.
      type: str
      sample: Your spot request is fulfilled.
    type:
      description: C(one-time) or C(persistent).
      type: str
      sample: persistent
    instance_id:
      description: The instance that fulfils the request, or null.
      type: str
      sample: i-0a1b2c3d4e5f60718
    instance_type:
      description: The instance type the request launches.
      type: str
      sample: c6i.xlarge
    image_id:
      description: The AMI the request launches.
      type: str
      sample: ami-0123456789abcdef0
    zone:
      description: The availability zone the request launched in, or null.
      type: str
      sample: eu-west-1a
    create_time:
      description: When the request was made, ISO 8601.
      type: str
      sample: "2030-01-07T07:00:10+00:00"
    valid_until:
      description: End of the request's validity, ISO 8601, or null.
      type: str
      sample: "2030-01-31T00:00:00+00:00"
    interruption_behavior:
      description: What an interruption does to the instance, C(terminate), C(stop) or C(hibernate).
      type: str
      sample: stop
    max_price:
      description: The highest hourly price the request pays, in USD, as EC2 gives it.
      type: str
      sample: "0.192000"
    tags:
      description: Tags as a dict.
      type: dict
      sample: {"parkingspot:request": build-cache}
    expired:
      description: Whether the request's validity has ended (past C(valid_until), or status C(schedule-expired)).
      type: bool
      sample: false
    re_evaluated:
      description:
        - Whether EC2 still relaunches this request when capacity returns, that is, a persistent request that is
          open, active or disabled and has not expired.
      type: bool
      sample: true
"""

    INSTANCES = r"""
instances:
  description: Instances.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: Instance id.
      type: str
      sample: i-0a1b2c3d4e5f60718
    state:
      description: C(pending), C(running), C(shutting-down), C(terminated), C(stopping) or C(stopped).
      type: str
      sample: running
    instance_type:
      description: Instance type.
      type: str
      sample: c6i.xlarge
    image_id:
      description: The AMI the instance was launched from.
      type: str
      sample: ami-0123456789abcdef0
    launch_time:
      description: Launch time, ISO 8601.
      type: str
      sample: "2030-01-07T07:00:12+00:00"
    zone:
      description: Availability zone.
      type: str
      sample: eu-west-1a
    subnet_id:
      description: Subnet, or null.
      type: str
      sample: subnet-0123456789abcdef0
    private_dns_name:
      description: Private DNS name, or null while it has none.
      type: str
      sample: ip-10-0-1-17.eu-west-1.compute.internal
    private_ip_address:
      description: Private IPv4 address, or null.
      type: str
      sample: 10.0.1.17
    market:
      description: C(spot) or C(on-demand).
      type: str
      sample: spot
    spot_instance_request_id:
      description: The spot request behind a spot instance, or null.
      type: str
      sample: sir-0a1b2c3d
    state_reason:
      description: Code of the reason for the last state change, for example C(Server.SpotInstanceTermination), or null.
      type: str
      sample: Server.SpotInstanceTermination
    state_transition_reason:
      description: EC2's text on the last state change, with its time, or null.
      type: str
      sample: "Service initiated (2030-01-07 09:12:01 GMT)"
    tags:
      description: Tags as a dict.
      type: dict
      sample: {"parkingspot:request": build-cache, team: build}
    age_hours:
      description: Hours since launch at the time of the call, to two decimals.
      type: float
      sample: 5.2
"""
