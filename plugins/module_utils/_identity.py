# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A name means exactly itself: the one helper for identity tags and user tags.

ParkingSpot finds its resources by an identity tag (``parkingspot:pool``,
``parkingspot:block``, ``parkingspot:request``, a root volume's ``Name``).
EC2 filter values treat ``*`` and ``?`` as wildcards, so a name such as
``team-*`` used as a filter value would reach every team's resources. Two
layers keep a name to itself:

1. every identity value put into a filter is escaped (``\\*``, ``\\?``, ``\\\\``),
   which EC2 documents as the literal characters;
2. whatever the API returns is kept only when its identity tag equals the name
   exactly, so a cloud (or a test double) that reads filters differently still
   cannot hand another name's resources to a write.

Names are 1 to 256 characters (the EC2 tag value limit) without control
characters. User ``tags`` never carry keys that start with ``parkingspot:``
(ParkingSpot's coordination tags) or ``aws:`` (reserved by AWS).
"""

from __future__ import annotations

import unicodedata
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError

MAX_NAME_LENGTH = 256
MAX_TAG_KEY_LENGTH = 128
RESERVED_TAG_PREFIXES = ("parkingspot:", "aws:")

# The first options of the modules that keep a count of instances under one name (spot_request,
# spot_block); each module documents them in its own words.
NAMED_COUNT_ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    count=dict(type="int", default=1),
)


def _control_character(text: str) -> Optional[str]:
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None


def check_name(value: Any, option: str = "name") -> str:
    """``value`` as an identity name, or InputError naming ``option`` and the limit."""
    if not isinstance(value, str):
        raise InputError(option, f"must be a string of 1 to {MAX_NAME_LENGTH} characters, got {value!r}")
    if not value:
        raise InputError(option, f"must not be empty (1 to {MAX_NAME_LENGTH} characters)")
    if len(value) > MAX_NAME_LENGTH:
        raise InputError(
            option, f"is {len(value)} characters long; at most {MAX_NAME_LENGTH} (the EC2 tag value limit)"
        )
    bad = _control_character(value)
    if bad is not None:
        raise InputError(option, f"must not contain control characters (found U+{ord(bad):04X})")
    return value


def check_names(values: Optional[Iterable[Any]], option: str = "names") -> List[str]:
    """Each entry checked with :func:`check_name`; the message names ``option[index]``."""
    return [check_name(value, f"{option}[{index}]") for index, value in enumerate(values or [])]


def check_tags(tags: Optional[Dict[Any, Any]], option: str = "tags") -> Dict[str, str]:
    """User tags as strings; keys of ParkingSpot or AWS, empty keys and over-long ones are refused."""
    checked: Dict[str, str] = {}
    for key, value in (tags or {}).items():
        key_text = str(key)
        if not key_text:
            raise InputError(option, "tag keys must not be empty")
        if len(key_text) > MAX_TAG_KEY_LENGTH:
            raise InputError(option, f"tag key {key_text[:40]!r}... is longer than {MAX_TAG_KEY_LENGTH} characters")
        for prefix in RESERVED_TAG_PREFIXES:
            if key_text.lower().startswith(prefix):
                raise InputError(
                    option,
                    f"tag key {key_text!r} is reserved: keys starting with {prefix!r} belong to"
                    f" {'ParkingSpot' if prefix == 'parkingspot:' else 'AWS'} and cannot be set",
                )
        text = tag_value(value)
        if len(text) > MAX_NAME_LENGTH:
            raise InputError(option, f"the value of {key_text!r} is longer than {MAX_NAME_LENGTH} characters")
        checked[key_text] = text
    return checked


def tag_value(value: Any) -> str:
    """A tag value as EC2 stores it: its text (``2`` -> ``"2"``, ``True`` -> ``"True"``, as amazon.aws writes it)."""
    if value is None:
        return ""
    return str(value)


def is_reserved(key: str) -> bool:
    return key.lower().startswith(RESERVED_TAG_PREFIXES)


def escape(value: str) -> str:
    """A filter value that matches ``value`` literally (EC2: ``\\`` escapes ``*``, ``?`` and itself)."""
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def tag_filters(tags: Dict[str, str]) -> List[Dict[str, Any]]:
    """``tag:KEY`` filters, one per identity tag, each value escaped."""
    return [{"Name": "tag:%s" % key, "Values": [escape(str(value))]} for key, value in sorted(tags.items())]


def names_filter(key: str, names: Iterable[str]) -> Dict[str, Any]:
    """One ``tag:KEY`` filter matching any of ``names`` literally."""
    return {"Name": "tag:%s" % key, "Values": sorted({escape(name) for name in names})}


def matches(resource_tags: Optional[Dict[str, str]], identity: Dict[str, str]) -> bool:
    tags = resource_tags or {}
    return all(key in tags and tags[key] == str(value) for key, value in identity.items())


def keep_exact(resources: List[Dict[str, Any]], identity: Dict[str, str]) -> List[Dict[str, Any]]:
    """Only the resources (normalised, with a ``tags`` dict) whose identity tags equal ``identity``."""
    return [resource for resource in resources if matches(resource.get("tags"), identity)]


def keep_named(resources: List[Dict[str, Any]], key: str, names: Iterable[str]) -> List[Dict[str, Any]]:
    """Only the resources whose ``key`` tag is exactly one of ``names``."""
    wanted = set(names)
    return [resource for resource in resources if (resource.get("tags") or {}).get(key) in wanted]


def check_module_params(params: Dict[str, Any], name_option: str = "name", tags_option: str = "tags") -> None:
    """At the module boundary, before any call: the name and the user tags (replaced by their text form)."""
    check_name(params.get(name_option), name_option)
    if params.get(tags_option) is not None:
        params[tags_option] = check_tags(params[tags_option], tags_option)
