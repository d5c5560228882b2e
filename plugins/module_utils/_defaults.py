# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Defaults that more than one file uses, each defined once.

The argument specs take their defaults from here; the modules' DOCUMENTATION states the same
values, and tests/unit/plugins/module_utils/test__defaults.py fails when the two drift apart.
"""

# Seconds a drain may take before the instance is terminated anyway (spot_pool ``drain.timeout``).
DRAIN_TIMEOUT_SECONDS = 600

# A lease this close to its end gets its replacement (spot_pool / spot_block ``renew_before_minutes``).
RENEW_BEFORE_MINUTES = 20
