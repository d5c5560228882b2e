# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one error for bad user input (planner, schedule, pricing, names and tags), range checks and shared bounds."""

# Upper bounds shared by several modules' options: far beyond any real use.
MAX_COUNT = 10000  # instances one pool or request may keep
MAX_WAIT_SECONDS = 86400  # a wait_timeout of at most a day


class InputError(ValueError):
    """Bad input; ``option`` names the module option at fault and starts the message."""

    def __init__(self, option, message):
        self.option = option
        super().__init__(f"{option}: {message}")


def check_range(value, option, minimum, maximum, unit=""):
    """``value`` as an int within ``[minimum, maximum]``, else InputError naming ``option`` and the range."""
    suffix = " %s" % unit if unit else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(option, f"must be a whole number from {minimum} to {maximum}{suffix}, got {value!r}")
    if not minimum <= value <= maximum:
        raise InputError(option, f"must be from {minimum} to {maximum}{suffix}, got {value}")
    return value


def check_time(value, option, earliest_year=1970, latest_year=9000):
    """An aware datetime within years ``earliest_year``..``latest_year`` (so date arithmetic cannot overflow)."""
    if not earliest_year <= value.year <= latest_year:
        raise InputError(
            option, f"must lie between the years {earliest_year} and {latest_year}, got {value.isoformat()}"
        )
    return value
