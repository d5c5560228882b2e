# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IAM policies in docs/iam/ are well formed, least-privilege, and cover the code.

docs/iam/actions.yml maps each feature to its policy and to the API actions its code calls.
Actions are also derived from code: boto3 client calls, paginators and waiters found in the
files named by `derive_from`, and in the modules used by the playbooks of
`derive_from_playbooks`. botocore's service models turn `client.describe_tags(` into
`ec2:DescribeTags` and check that every action named anywhere exists.
"""

import fnmatch
import glob
import importlib.util
import json
import os
import re

import botocore.session
import pytest
import yaml
from botocore import xform_name

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
IAM_DIR = os.path.join(ROOT, "docs", "iam")

# Permissions that are not API operations of their own.
IAM_ONLY = {"iam:PassRole", "s3:ListBucket", "kms:ReEncryptFrom", "kms:ReEncryptTo"}
# Batch operations authorised by the single-message permission.
BATCH_ALIASES = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
READ_ONLY_PREFIXES = ("Describe", "Get", "List")
TAG_CONDITION_KEYS = ("aws:ResourceTag/", "aws:RequestTag/", "ec2:CreateAction", "autoscaling:ResourceTag/")
CLIENT_HELPERS = {"get_paginator", "get_waiter", "can_paginate", "close", "meta", "exceptions"}

BOTO = botocore.session.get_session()


def load_mapping():
    with open(os.path.join(IAM_DIR, "actions.yml")) as handle:
        return yaml.safe_load(handle)


def load_policy(name):
    with open(os.path.join(IAM_DIR, name)) as handle:
        return json.load(handle)


def as_list(value):
    return value if isinstance(value, list) else [value]


def policy_actions(policy):
    return {action for statement in policy["Statement"] for action in as_list(statement["Action"])}


# --- the code scanner ------------------------------------------------------------------------

_SERVICES = {}


def service(name):
    """(iam prefix, {snake_name: OperationName}, waiter model or None) for a boto3 service."""
    if name not in _SERVICES:
        model = BOTO.get_service_model(name)
        operations = {xform_name(op): op for op in model.operation_names}
        try:
            waiters = BOTO.get_waiter_model(name)
        except Exception:  # noqa: BLE001 - services without waiters
            waiters = None
        _SERVICES[name] = (model.signing_name, operations, waiters)
    return _SERVICES[name]


ASSIGN_CLIENT = re.compile(r"(?:self\.)?(\w+)\s*=\s*[\w.]*\bclient\(\s*[\"']([\w-]+)[\"']")
# Calls and references (`retry(client.delete_queue)(...)` counts too).
CALL = re.compile(r"(?=\b(\w+)\.(\w+)\b)")
PAGINATOR = re.compile(r"(?:self\.)?\b(\w+)\.get_paginator\(\s*[\"'](\w+)[\"']")
WAITER = re.compile(r"(?:self\.)?\b(\w+)\.get_waiter\(\s*[\"'](\w+)[\"']")


def actions_in_source(text, default_service=None):
    """IAM actions of the boto3 calls in one Python source text."""
    clients = dict(ASSIGN_CLIENT.findall(text))
    if default_service:
        for var in ("client", "connection", "conn"):
            clients.setdefault(var, default_service)
    found = set()
    for var, method in CALL.findall(text):
        if var in clients and method not in CLIENT_HELPERS:
            prefix, operations, _waiters = service(clients[var])
            if method in operations:
                found.add(f"{prefix}:{operations[method]}")
    for var, method in PAGINATOR.findall(text):
        if var in clients:
            prefix, operations, _waiters = service(clients[var])
            assert method in operations, f"paginator {method} is not a {clients[var]} operation"
            found.add(f"{prefix}:{operations[method]}")
    for var, name in WAITER.findall(text):
        if var in clients:
            prefix, _operations, waiters = service(clients[var])
            waiter = waiters.get_waiter(_waiter_name(waiters, name))
            found.add(f"{prefix}:{waiter.operation}")
    return {BATCH_ALIASES.get(action, action) for action in found}


def _waiter_name(waiters, snake):
    for name in waiters.waiter_names:
        if xform_name(name) == snake:
            return name
    raise AssertionError(f"unknown waiter {snake}")


def derive_from_files(entries):
    actions = set()
    for entry in entries:
        paths = sorted(glob.glob(os.path.join(ROOT, entry["path"])))
        assert paths, f"derive_from path {entry['path']} matches no file"
        for path in paths:
            with open(path) as handle:
                actions |= actions_in_source(handle.read(), entry.get("service"))
    return actions


def playbook_modules(path):
    with open(path) as handle:
        plays = yaml.safe_load(handle)
    modules = set()

    def walk(tasks):
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key))
            for key in task:
                if key.count(".") == 2 and not key.startswith("ansible.builtin."):
                    modules.add(key)

    for play in plays:
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            walk(play.get(section))
    return modules


def derive_from_playbooks(paths):
    actions = set()
    for rel in paths:
        for fqcn in sorted(playbook_modules(os.path.join(ROOT, rel))):
            namespace, collection, module = fqcn.split(".")
            name = f"ansible_collections.{namespace}.{collection}.plugins.modules.{module}"
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError:
                spec = None
            if spec is None:
                pytest.skip(f"{fqcn} is not installed (install the ansible package or the collection)")
            with open(spec.origin) as handle:
                actions |= actions_in_source(handle.read())
    return actions


_PREFIXES = {}


def services_signing_as(prefix):
    """boto3 service names whose IAM prefix (signing name) is `prefix`."""
    if not _PREFIXES:
        for name in BOTO.get_available_services():
            metadata = BOTO.get_service_data(name)["metadata"]
            _PREFIXES.setdefault(metadata.get("signingName", metadata["endpointPrefix"]), set()).add(name)
    return _PREFIXES.get(prefix, set())


# --- tests -----------------------------------------------------------------------------------

POLICY_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(IAM_DIR, "*.json")))
FEATURES = sorted(load_mapping())


def test_scanner_finds_calls_paginators_and_batch_aliases():
    text = """
class X:
    def __init__(self, session):
        self.sqs = session.client("sqs")
        self.ec2 = session.client("ec2", endpoint_url=None)
    def go(self):
        self.sqs.delete_message_batch(QueueUrl="u", Entries=[])
        self.ec2.get_paginator("describe_instances")
        self.ec2.get_waiter("instance_running")
        self.ec2.meta.events.register("x", None)
        other.run_instances()
"""
    assert actions_in_source(text) == {"sqs:DeleteMessage", "ec2:DescribeInstances"}
    assert actions_in_source("def f(client):\n    client.create_tags(Resources=[])\n", "ec2") == {"ec2:CreateTags"}


@pytest.mark.parametrize("name", POLICY_FILES)
def test_policy_is_well_formed_and_scoped(name):
    policy = load_policy(name)
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids)), f"{name}: duplicate Sid"
    for statement in policy["Statement"]:
        where = f"{name} {statement['Sid']}"
        assert statement["Effect"] == "Allow", where
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), f"{where}: Not* element"
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{where}: wildcard action {action}"
        resources = as_list(statement["Resource"])
        mutating = [a for a in as_list(statement["Action"]) if not a.split(":")[1].startswith(READ_ONLY_PREFIXES)]
        if "*" in resources and mutating:
            keys = [key for condition in statement.get("Condition", {}).values() for key in condition]
            assert any(key.startswith(TAG_CONDITION_KEYS) for key in keys), (
                f"{where}: {mutating} on Resource * without a tag condition"
            )


@pytest.mark.parametrize("name", POLICY_FILES)
def test_policy_actions_exist(name):
    for action in policy_actions(load_policy(name)):
        if action in IAM_ONLY:
            continue
        prefix, operation = action.split(":")
        names = services_signing_as(prefix)
        assert names, f"{name}: no AWS service signs as {prefix}"
        assert any(operation in BOTO.get_service_model(svc).operation_names for svc in names), (
            f"{name}: {action} is not an API operation"
        )


@pytest.mark.parametrize("feature", FEATURES)
def test_feature_actions_match_its_policy(feature):
    entry = load_mapping()[feature]
    allowed = policy_actions(load_policy(entry["policy"]))
    listed = set(entry["actions"])
    assert listed - allowed == set(), f"{feature}: called but not allowed"
    assert allowed - listed == set(), f"{feature}: allowed but never called (not least privilege)"


@pytest.mark.parametrize("feature", FEATURES)
def test_code_calls_are_listed(feature):
    entry = load_mapping()[feature]
    derived = derive_from_files(entry.get("derive_from") or [])
    derived |= derive_from_playbooks(entry.get("derive_from_playbooks") or [])
    assert derived - set(entry["actions"]) == set(), f"{feature}: code calls actions missing from actions.yml"


def test_event_source_actions_are_derived_exactly():
    """The mechanism on real code: the EDA source's calls are exactly the eda feature's list."""
    entry = load_mapping()["eda"]
    assert derive_from_files(entry["derive_from"]) == set(entry["actions"])


def test_setup_playbook_actions_are_derived_exactly():
    entry = load_mapping()["eda_setup"]
    assert derive_from_playbooks(entry["derive_from_playbooks"]) == set(entry["actions"])


def test_readme_table_lists_every_policy():
    with open(os.path.join(IAM_DIR, "README.md")) as handle:
        rows = [line for line in handle if line.startswith("| ") and not line.startswith("| ---")]
    table = {}
    for row in rows[1:]:
        cells = [cell.strip().strip("`") for cell in row.strip().strip("|").split("|")]
        table[cells[0]] = cells[1]
    mapping = load_mapping()
    assert set(table) == set(mapping), "README table features differ from actions.yml"
    for feature, policy in table.items():
        assert policy == mapping[feature]["policy"], feature
    assert sorted(table.values()) == POLICY_FILES
    assert all(fnmatch.fnmatch(p, "*.json") for p in table.values())
