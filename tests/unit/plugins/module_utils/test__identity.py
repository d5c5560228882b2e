# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The identity helper: names are checked, escaped in filters and compared exactly; reserved tag keys refused."""

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from ansible_collections.parkingspot.ec2.plugins.module_utils import _aws
from ansible_collections.parkingspot.ec2.plugins.module_utils import _identity
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import check_range


def ec2_filter_matches(pattern, value):
    """EC2's documented filter reading: * any run, ? zero or one character, backslash escapes the next one."""
    regex = ""
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            regex += re.escape(next(chars, "\\"))
        elif char == "*":
            regex += ".*"
        elif char == "?":
            regex += ".?"
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, value, re.DOTALL) is not None


@pytest.mark.parametrize(
    "name, escaped",
    [
        ("team-a", "team-a"),
        ("team-*", "team-\\*"),
        ("team-?", "team-\\?"),
        ("a\\b", "a\\\\b"),
        ("\\*", "\\\\\\*"),
        ("[ab]", "[ab]"),
    ],
)
def test_escape(name, escaped):
    assert _identity.escape(name) == escaped


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet="ab*?\\[]-é", max_size=10), other=st.text(alphabet="ab*?\\[]-é", max_size=10))
def test_escaped_filter_matches_only_the_name_itself(name, other):
    pattern = _identity.escape(name)
    assert ec2_filter_matches(pattern, name)
    assert ec2_filter_matches(pattern, other) == (other == name)


def test_tag_filters_escape_every_value():
    filters = _aws.tag_filters({"parkingspot:pool": "team-*", "owner": "o?"})
    assert filters == [
        {"Name": "tag:owner", "Values": ["o\\?"]},
        {"Name": "tag:parkingspot:pool", "Values": ["team-\\*"]},
    ]


def test_keep_exact_drops_what_a_loose_filter_let_through():
    found = [
        {"instance_id": "i-1", "tags": {"parkingspot:pool": "team-*"}},
        {"instance_id": "i-2", "tags": {"parkingspot:pool": "team-a"}},
        {"instance_id": "i-3", "tags": {}},
        {"instance_id": "i-4", "tags": {"parkingspot:pool": "team-* "}},
    ]
    assert [i["instance_id"] for i in _identity.keep_exact(found, {"parkingspot:pool": "team-*"})] == ["i-1"]
    assert [i["instance_id"] for i in _identity.keep_named(found, "parkingspot:pool", ["team-a", "x"])] == ["i-2"]
    # fnmatch (what moto uses) reads [ab] as a class: the exact layer still holds.
    assert fnmatch.fnmatch("team-a", "team-[ab]")
    assert _identity.keep_named(found, "parkingspot:pool", ["team-[ab]"]) == []


def test_names_filter_escapes_and_deduplicates():
    assert _identity.names_filter("k", ["b*", "a", "b*"]) == {"Name": "tag:k", "Values": ["a", "b\\*"]}


@pytest.mark.parametrize(
    "value, words",
    [
        ("", "must not be empty"),
        ("x" * 257, "is 257 characters long; at most 256"),
        ("a\tb", "control characters (found U+0009)"),
        ("a\x00", "U+0000"),
        ("\x85", "U+0085"),
        (None, "must be a string"),
        (5, "must be a string"),
    ],
)
def test_bad_names_name_the_option_and_the_limit(value, words):
    with pytest.raises(InputError) as caught:
        _identity.check_name(value, "name")
    assert str(caught.value).startswith("name: ")
    assert words in str(caught.value)
    assert caught.value.option == "name"


@pytest.mark.parametrize("value", ["x", "x" * 256, "team-*", "é€👀", "a b", "\u202e"])
def test_good_names(value):
    assert _identity.check_name(value) == value


def test_names_list_names_the_index():
    with pytest.raises(InputError) as caught:
        _identity.check_names(["ok", "x" * 300], "pools")
    assert caught.value.option == "pools[1]"


@pytest.mark.parametrize(
    "key", ["parkingspot:state", "parkingspot:pool", "ParkingSpot:interrupted", "aws:cloudformation:stack-name"]
)
def test_reserved_keys_are_refused_naming_the_key(key):
    with pytest.raises(InputError) as caught:
        _identity.check_tags({"team": "a", key: "x"})
    assert caught.value.option == "tags"
    assert repr(key) in str(caught.value) and "reserved" in str(caught.value)


def test_tags_become_text_as_amazon_aws_writes_them():
    assert _identity.check_tags({"n": 2, "ok": True, "f": 0.5, "none": None, "s": "x"}) == {
        "n": "2",
        "ok": "True",
        "f": "0.5",
        "none": "",
        "s": "x",
    }


@pytest.mark.parametrize("tags, words", [({"": "x"}, "empty"), ({"k" * 129: "x"}, "128"), ({"k": "v" * 257}, "256")])
def test_tag_limits(tags, words):
    with pytest.raises(InputError) as caught:
        _identity.check_tags(tags)
    assert words in str(caught.value)


def test_module_params_checked_in_place():
    params = {"name": "p", "tags": {"n": 1}}
    _identity.check_module_params(params)
    assert params["tags"] == {"n": "1"}
    untouched = {"name": "p", "tags": None}
    _identity.check_module_params(untouched)
    assert untouched["tags"] is None


@pytest.mark.parametrize("value", [-1, 10001, True, "3", 1.5])
def test_check_range_refuses(value):
    with pytest.raises(InputError) as caught:
        check_range(value, "count", 0, 10000)
    assert str(caught.value).startswith("count: must be")
    assert "10000" in str(caught.value)
