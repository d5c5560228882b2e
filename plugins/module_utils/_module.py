# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every module's ``main()`` shares: the one place where errors become ``fail_json``.

Below ``main()`` nothing calls ``fail_json``; errors rise as exceptions of two kinds:

* ``InputError`` (``_input.py``): bad input, found before any write call. The failure
  carries ``msg`` (which starts with the option name) and ``option``.
* ``AnsibleAWSError``: a failed AWS call (``AnsibleEC2Error`` from ``_aws.py``) or a
  runtime failure the collection raises itself (``ParkingSpotError``: a timeout, an
  unsafe action); amazon.aws's ``fail_json_aws_error`` reports it.
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError


def run(module, do) -> None:
    """Call ``do(module)`` (which ends in ``exit_json``) and report what it raised."""
    try:
        do(module)
    except InputError as e:
        module.fail_json(msg=str(e), option=e.option)
    except AnsibleAWSError as e:
        module.fail_json_aws_error(e)
