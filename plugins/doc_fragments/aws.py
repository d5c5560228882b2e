# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The AWS connection options every module takes from amazon.aws's AnsibleAWSModule. They are
    # documented here, not through amazon.aws's fragments, so that the module pages render where
    # amazon.aws is not installed (Galaxy's importer, ansible-doc on a bare collection path).
    # Names, types, aliases and defaults must stay those of amazon.aws (sanity compares them).
    DOCUMENTATION = r"""
options:
  region:
    description:
      - The AWS region, for example C(eu-west-1).
      - When not set, the C(AWS_REGION) or C(AWS_DEFAULT_REGION) environment variable, or the profile's region, is used.
    type: str
    aliases: [aws_region]
  profile:
    description:
      - A profile of the AWS shared credentials and config files.
      - Cannot be combined with O(access_key), O(secret_key) or O(session_token).
      - The C(AWS_PROFILE) environment variable is read when it is not set.
    type: str
    aliases: [aws_profile]
  access_key:
    description:
      - AWS access key id. The C(AWS_ACCESS_KEY_ID) environment variable is read when it is not set.
      - Prefer an instance profile, a role or a profile to keys in playbooks.
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key. The C(AWS_SECRET_ACCESS_KEY) environment variable is read when it is not set.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - Session token of temporary credentials.
      - The C(AWS_SESSION_TOKEN) environment variable is read when it is not set.
    type: str
    aliases: [aws_session_token]
  endpoint_url:
    description:
      - An endpoint to call instead of AWS's own, for example an EC2-compatible cloud or a local test API.
      - The C(AWS_URL) environment variable is read when it is not set.
    type: str
    aliases: [aws_endpoint_url]
  validate_certs:
    description:
      - Whether the endpoint's TLS certificate is verified. Turn this off only for test endpoints.
    type: bool
    default: true
  aws_ca_bundle:
    description:
      - A CA bundle to verify the endpoint's certificate with.
      - The C(AWS_CA_BUNDLE) environment variable is read when it is not set.
    type: path
  aws_config:
    description:
      - "botocore client settings, for example C({retries: {max_attempts: 10}})."
    type: dict
  debug_botocore_endpoint_logs:
    description:
      - Log every AWS API action called (returned as C(resource_actions)), to build least-privilege IAM policies.
    type: bool
    default: false
requirements:
  - python >= 3.9
  - boto3 >= 1.43.45
  - botocore >= 1.43.45
notes:
  - Credentials are looked up as boto3 does (options, environment variables, shared files, instance profile)
    unless given here. The options and C(group/parkingspot.ec2.aws) module defaults work the same as
    amazon.aws's; the amazon.aws collection is required at run time.
"""
