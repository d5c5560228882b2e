"""Tests of the root_pivot role: ansible-playbook on localhost against image directories.

Each test lays out a small root file system in a temporary directory, runs the role with
root_pivot_target_root (or root_pivot_volume_root) pointing at it, and compares the tree
before and after: which files exist, their type, mode, link target and bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(os.path.abspath(__file__)).parent
COLLECTION = HERE.parents[3]
SHIM = COLLECTION / "roles" / "root_pivot" / "files" / "parkingspot-root-pivot"
VOLUME_ID = "vol-0123456789abcdef0"


def _ansible_playbook():
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


def _skip_reason():
    if _ansible_playbook() is None:
        return "ansible-playbook is not installed"
    if os.geteuid() != 0:
        return "needs root (the role sets owner root on the files it writes)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    """A collections path holding this collection as parkingspot.ec2."""
    if COLLECTION.parent.name == "parkingspot" and COLLECTION.parents[1].name == "ansible_collections":
        return str(COLLECTION.parents[2])
    base = tmp_path_factory.mktemp("collections")
    (base / "ansible_collections" / "parkingspot").mkdir(parents=True)
    (base / "ansible_collections" / "parkingspot" / "ec2").symlink_to(COLLECTION)
    return str(base)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", self.out)
        self.changed = int(recap.group(2)) if recap else None
        self.failed = int(recap.group(3)) if recap else None

    def __repr__(self):
        return f"Run(rc={self.rc}, changed={self.changed})\n{self.out}"


@pytest.fixture
def play(tmp_path, collections_path):
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\nstdout_callback = default\n")

    def run(tasks_from: str = "main", check: bool = False, **role_vars) -> Run:
        playbook = tmp_path / "play.yml"
        lines = [
            "- hosts: localhost",
            "  connection: local",
            "  gather_facts: false",
            "  tasks:",
            "    - name: Run the role",
            "      ansible.builtin.include_role:",
            "        name: parkingspot.ec2.root_pivot",
            f"        tasks_from: {tasks_from}",
        ]
        playbook.write_text("\n".join(lines) + "\n")
        extra = tmp_path / "vars.json"
        extra.write_text(json.dumps(role_vars))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(cfg),
            ANSIBLE_COLLECTIONS_PATH=collections_path,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_PIPELINING="true",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        cmd = [_ansible_playbook(), "-i", "localhost,", str(playbook), "-e", f"@{extra}"]
        if check:
            cmd += ["--check", "--diff"]
        return Run(subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300))

    return run


def snapshot(root: Path) -> dict:
    """Everything below root: relative path -> (type, mode, link target or sha256)."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = oct(st.st_mode & 0o7777)
            if path.is_symlink():
                tree[rel] = ("link", mode, os.readlink(path))
            elif path.is_dir():
                tree[rel] = ("dir", mode, None)
            else:
                tree[rel] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return tree


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def image(tmp_path):
    """A small root file system whose /sbin/init is an absolute symlink, as on systemd images."""
    root = tmp_path / "image"
    for d in ("sbin", "etc", "mnt", "lib/systemd"):
        (root / d).mkdir(parents=True)
    systemd = root / "lib" / "systemd" / "systemd"
    systemd.write_bytes(b"\x7fELF pretend systemd\n")
    systemd.chmod(0o755)
    (root / "sbin" / "init").symlink_to("/lib/systemd/systemd")
    (root / "etc" / "hostname").write_text("ami\n")
    return root


def _install_vars(root: Path, **extra) -> dict:
    values = {"root_pivot_target_root": str(root), "root_pivot_volume_id": VOLUME_ID}
    values.update(extra)
    return values


def test_install_twice_then_uninstall(play, image):
    """Install lays down exactly the shim files; a second run changes nothing; absent restores."""
    before = snapshot(image)
    args = _install_vars(image, root_pivot_device="/dev/xvdf", root_pivot_timeout=45)
    run = play(**args)
    assert run.rc == 0 and run.changed and run.changed > 0, run
    after = snapshot(image)

    added = {k: after[k] for k in after.keys() - before.keys()}
    changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    assert set(added) == {"sbin/init.orig", "etc/parkingspot", "etc/parkingspot/root-pivot.conf"}, run
    assert changed == {"sbin/init"}, run
    assert before.keys() <= after.keys()

    assert after["sbin/init"] == ("file", "0o755", _sha(SHIM))
    assert after["sbin/init.orig"] == ("link", "0o777", "/lib/systemd/systemd")
    assert after["etc/parkingspot"][:2] == ("dir", "0o755")
    conf = image / "etc" / "parkingspot" / "root-pivot.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    settings = [line for line in conf.read_text().splitlines() if line and not line.startswith("#")]
    assert settings == [f"VOLUME_ID={VOLUME_ID}", "DEVICE=/dev/xvdf", "TIMEOUT=45"]

    second = play(**args)
    assert second.rc == 0 and second.changed == 0, second
    assert snapshot(image) == after  # in particular init.orig is still the image's init

    removed = play(**dict(args, root_pivot_state="absent"))
    assert removed.rc == 0 and removed.changed > 0, removed
    assert snapshot(image) == before
    again = play(**dict(args, root_pivot_state="absent"))
    assert again.rc == 0 and again.changed == 0, again


def test_regular_file_init_is_kept_and_restored(play, image):
    (image / "sbin" / "init").unlink()
    binary = image / "sbin" / "init"
    binary.write_bytes(bytes(range(256)) * 600)  # larger than any shim, not text
    binary.chmod(0o750)
    before = snapshot(image)
    assert play(**_install_vars(image)).rc == 0
    assert _sha(image / "sbin" / "init.orig") == before["sbin/init"][2]
    assert oct((image / "sbin" / "init.orig").stat().st_mode & 0o777) == "0o750"
    assert _sha(image / "sbin" / "init") == _sha(SHIM)
    assert play(**_install_vars(image, root_pivot_state="absent")).rc == 0
    assert snapshot(image) == before


def test_interrupted_uninstall_is_finished_by_the_next_run(play, image):
    before = snapshot(image)
    assert play(**_install_vars(image)).rc == 0
    # As if a run had put /sbin/init back and stopped before removing the rest.
    (image / "sbin" / "init").unlink()
    (image / "sbin" / "init").symlink_to("/lib/systemd/systemd")
    run = play(**_install_vars(image, root_pivot_state="absent"))
    assert run.rc == 0 and run.changed > 0, run
    assert snapshot(image) == before


def test_an_older_shim_is_never_saved_as_the_original(play, image):
    assert play(**_install_vars(image)).rc == 0
    # Pretend /sbin/init is an older release of the shim.
    older = SHIM.read_text().replace("TIMEOUT=60", "TIMEOUT=30")
    assert older != SHIM.read_text()
    (image / "sbin" / "init").write_text(older)
    run = play(**_install_vars(image))
    assert run.rc == 0 and run.changed > 0, run
    assert os.readlink(image / "sbin" / "init.orig") == "/lib/systemd/systemd"
    assert _sha(image / "sbin" / "init") == _sha(SHIM)


def test_check_mode_writes_nothing(play, image):
    before = snapshot(image)
    run = play(check=True, **_install_vars(image))
    assert run.rc == 0 and run.changed > 0, run
    assert snapshot(image) == before


@pytest.mark.parametrize(
    "bad, option",
    [
        ({"root_pivot_volume_id": "vol-123"}, "root_pivot_volume_id"),
        ({"root_pivot_volume_id": "vol-0123456789ABCDEF0"}, "root_pivot_volume_id"),
        ({"root_pivot_device": "/dev/sdf\nTIMEOUT=1"}, "root_pivot_device"),
        ({"root_pivot_timeout": 0}, "root_pivot_timeout"),
        ({"root_pivot_state": "gone"}, "root_pivot_state"),
    ],
)
def test_bad_input_fails_before_any_write(play, image, bad, option):
    before = snapshot(image)
    run = play(**_install_vars(image, **bad))
    assert run.rc != 0, run
    assert option in run.out, run
    assert snapshot(image) == before


def test_merged_usr_image(play, image):
    """sbin -> usr/sbin (relative) works; an absolute /sbin link would escape the image."""
    (image / "usr" / "sbin").mkdir(parents=True)
    (image / "sbin" / "init").rename(image / "usr" / "sbin" / "init")
    (image / "sbin").rmdir()
    (image / "sbin").symlink_to("usr/sbin")
    assert play(**_install_vars(image)).rc == 0
    assert _sha(image / "usr" / "sbin" / "init") == _sha(SHIM)
    assert os.readlink(image / "usr" / "sbin" / "init.orig") == "/lib/systemd/systemd"

    (image / "sbin").unlink()
    (image / "sbin").symlink_to("/usr/sbin")
    before = snapshot(image)
    run = play(**_install_vars(image))
    assert run.rc != 0 and "outside root_pivot_target_root" in run.out, run
    assert snapshot(image) == before


def test_uninstall_refuses_without_the_original(play, image):
    assert play(**_install_vars(image)).rc == 0
    (image / "sbin" / "init.orig").unlink()
    run = play(**_install_vars(image, root_pivot_state="absent"))
    assert run.rc != 0, run
    assert "init.orig is missing" in run.out, run
    assert _sha(image / "sbin" / "init") == _sha(SHIM)


@pytest.fixture
def volume(tmp_path):
    root = tmp_path / "volume"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "fstab").write_text(
        "# /etc/fstab of the AMI\nLABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n"
        "LABEL=UEFI /boot/efi vfat umask=0077 0 1\n"
    )
    return root


def test_prepare_volume(play, volume):
    kernel = "6.1.0-99-cloud-amd64"
    args = {
        "root_pivot_volume_root": str(volume),
        "root_pivot_volume_id": VOLUME_ID,
        "root_pivot_kernel_version": kernel,
    }
    run = play("prepare_volume", **args)
    assert run.rc == 0 and run.changed > 0, run
    assert (volume / "old-root").is_dir()
    assert (volume / "etc" / "parkingspot" / "volume-id").read_text() == VOLUME_ID + "\n"
    assert (volume / "etc" / "fstab").read_text().splitlines() == [
        "# /etc/fstab of the AMI",
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0 / ext4 defaults,noatime 0 0",
        "LABEL=UEFI /boot/efi vfat umask=0077 0 1",
    ]
    assert f"the volume has no /lib/modules/{kernel}" in run.out, run

    (volume / "lib" / "modules" / kernel).mkdir(parents=True)
    (volume / "lib" / "modules" / kernel / "modules.dep").write_text("")
    second = play("prepare_volume", **args)
    assert second.rc == 0 and second.changed == 0, second
    assert "the volume has no /lib/modules" not in second.out, second


def test_prepare_volume_rejects_a_directory_without_a_root_file_system(play, tmp_path):
    empty = tmp_path / "not-mounted"
    empty.mkdir()
    run = play(
        "prepare_volume",
        root_pivot_volume_root=str(empty),
        root_pivot_volume_id=VOLUME_ID,
        root_pivot_kernel_version="6.1.0",
    )
    assert run.rc != 0 and "root_pivot_volume_root" in run.out, run
    assert list(empty.iterdir()) == []
