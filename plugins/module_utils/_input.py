# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one error for bad user input in the pure layers (planner, schedule, pricing)."""


class InputError(ValueError):
    """Bad input; ``option`` names the module option at fault and starts the message."""

    def __init__(self, option, message):
        self.option = option
        super().__init__(f"{option}: {message}")
