# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The amazon.aws the tests run against meets the floor galaxy.yml declares; ``make unit-floor`` runs
the unit tier against exactly that floor (PARKINGSPOT_EXPECT_AMAZON_AWS=floor)."""

import json
import os
import pathlib

import yaml

import ansible_collections.amazon.aws as amazon_aws

ROOT = pathlib.Path(__file__).resolve().parents[2]


def version(text):
    return tuple(int(part) for part in text.split("."))


def floor():
    spec = yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]["amazon.aws"]
    assert spec.startswith(">="), spec
    return version(spec[2:])


def installed():
    manifest = pathlib.Path(list(amazon_aws.__path__)[0]) / "MANIFEST.json"
    return version(json.loads(manifest.read_text())["collection_info"]["version"])


def test_installed_amazon_aws_meets_the_declared_floor():
    assert installed() >= floor()
    if os.environ.get("PARKINGSPOT_EXPECT_AMAZON_AWS") == "floor":
        assert installed() == floor()


def test_the_floor_is_where_error_messages_name_what_failed():
    # Placeholders in error handler descriptions ("... bucket {bucket}") are filled in from 11.3.0 on.
    assert floor() >= (11, 3, 0)
