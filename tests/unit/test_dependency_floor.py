# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The amazon.aws and botocore the tests run against meet the floors galaxy.yml and requirements.txt
declare; ``make unit-floor`` (part of ``make test``) runs the unit tier against exactly those floors
(PARKINGSPOT_DEPENDENCY_FLOOR=1)."""

import json
import os
import pathlib

import boto3
import botocore
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
    if os.environ.get("PARKINGSPOT_DEPENDENCY_FLOOR"):
        assert installed() == floor()


def python_floors():
    """``{"boto3": (1, 34, 0), ...}`` from requirements.txt's ``>=`` lines."""
    floors = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, sep, low = line.partition(">=")
        if sep and not line.startswith("#"):
            floors[name.strip()] = version(low.strip())
    return floors


def test_installed_boto3_and_botocore_meet_the_declared_floor():
    floors = python_floors()
    assert set(floors) == {"boto3", "botocore"}, floors
    for name, module in (("boto3", boto3), ("botocore", botocore)):
        assert version(module.__version__) >= floors[name], name
        if os.environ.get("PARKINGSPOT_DEPENDENCY_FLOOR"):
            assert version(module.__version__) == floors[name], name


def test_the_floor_is_where_error_messages_name_what_failed():
    # Placeholders in error handler descriptions ("... bucket {bucket}") are filled in from 11.3.0 on.
    assert floor() >= (11, 3, 0)
