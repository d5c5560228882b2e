# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""execution-environment.yml produces a complete ansible-builder build context.

No container is built (no engine here). The test builds the collection tarball, runs
`ansible-builder create`, checks the context, installs the tarball from the context and runs
the context's own introspection script on it: that is what the image build does to collect the
collection's Python and system dependencies.
"""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


def _tool(name):
    path = os.path.join(BIN, name)
    if os.path.exists(path):
        return path
    return shutil.which(name)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    builder = _tool("ansible-builder")
    if builder is None:
        pytest.skip("ansible-builder is not installed (pip install ansible-builder)")
    work = tmp_path_factory.mktemp("ee")
    for name in ("execution-environment.yml", "requirements.txt", "bindep.txt"):
        shutil.copy(os.path.join(ROOT, name), work / name)
    subprocess.run(
        [_tool("ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(work / ".build" / "ee")],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [
            builder,
            "create",
            "-f",
            str(work / "execution-environment.yml"),
            "-c",
            str(work / "context"),
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "context"


def _galaxy_version():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)["version"]


def test_definition_is_builder_v3():
    with open(os.path.join(ROOT, "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    assert definition["dependencies"]["python"] == "requirements.txt"
    assert definition["dependencies"]["system"] == "bindep.txt"


def test_context_has_containerfile_and_dependency_files(context):
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "/build/collections/parkingspot-ec2-" in containerfile
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        assert (context / "_build" / "requirements.txt").read_text() == handle.read()
    assert (context / "_build" / "bindep.txt").is_file()
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert {c["name"] for c in galaxy["collections"]} == {"amazon.aws", "community.aws"}


def test_context_carries_the_collection(context):
    tarball = context / "_build" / "collections" / f"parkingspot-ec2-{_galaxy_version()}.tar.gz"
    assert tarball.is_file()
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert "extensions/eda/plugins/event_source/spot_interruptions.py" in names
    assert "extensions/eda/rulebooks/spot_interruptions.yml" in names
    assert "requirements.txt" in names


def test_image_introspection_finds_the_collection_dependencies(context, tmp_path):
    tarball = next((context / "_build" / "collections").glob("parkingspot-ec2-*.tar.gz"))
    subprocess.run(
        [_tool("ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(tmp_path), str(tarball)],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = yaml.safe_load(result.stdout)
    python = [line.split("#")[0].strip() for line in found["python"]]
    assert "boto3>=1.43.45" in python
    assert "botocore>=1.43.45" in python
    # bindep.txt lists no system package (only comments), so none may appear.
    assert found["system"] == []
