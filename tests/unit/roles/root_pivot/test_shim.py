"""Tier A tests of the root_pivot init shim.

Each case builds an "AMI root" directory (busybox userland, the shim as /sbin/init, a fake
/sbin/init.orig) and an ext4 volume image (its own fake /sbin/init), attaches the image to a
loop device, and runs shim_harness.sh under ``unshare --mount --pid --fork`` so that the shim
runs chrooted as PID 1 of a fresh PID namespace. The fake inits print what they see (their
PID, arguments, /old-root, the mount table) to the console, which is a log file bind-mounted
on /dev/console; the assertions read that log.

Needs root, util-linux (unshare, losetup), e2fsprogs (mkfs.ext4 -d) and busybox-static.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
COLLECTION = HERE.parents[3]
SHIM = COLLECTION / "roles" / "root_pivot" / "files" / "parkingspot-root-pivot"
HARNESS = HERE / "shim_harness.sh"

VOLUME_ID = "vol-0123456789abcdef0"
NVME_SERIAL = "vol0123456789abcdef0"
KERNEL_ARGS = ["single", "--log-level=debug", "two words"]

FAKE_INIT = """#!/bin/sh
echo "INIT={name} pid=$$ argc=$#"
for a in "$@"; do echo "ARG=[$a]"; done
echo "OLDROOT=[$(ls /old-root 2>/dev/null | tr '\\n' ' ')]"
echo "ROOT=[$(ls / | tr '\\n' ' ')]"
echo "RUN=[$(cat /run/early-marker 2>/dev/null)]"
while read -r line; do echo "MOUNT $line"; done </proc/self/mountinfo
echo "END {name}"
"""


def _missing_prerequisite():
    if os.geteuid() != 0:
        return "needs root (mount, loop devices, namespaces)"
    for tool in ("unshare", "losetup", "mkfs.ext4", "debugfs", "busybox", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        return f"unshare --mount --pid does not work here: {probe.stderr.decode().strip()}"
    if subprocess.run(["losetup", "--find"], check=False, capture_output=True).returncode != 0:
        return "no free loop device"
    return None


_REASON = _missing_prerequisite()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

SHELLS = ["busybox"] + (["dash"] if shutil.which("dash") else [])


def _copy_with_libs(binary: str, root: Path, dest: str | None = None) -> None:
    """Copy a host binary into root, plus the shared libraries ldd lists for it."""
    src = Path(shutil.which(binary) or binary).resolve()
    target = root / (dest or str(src)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    shutil.copy2(src, target)
    ldd = subprocess.run(["ldd", str(src)], check=False, capture_output=True, text=True)
    for line in ldd.stdout.splitlines():
        parts = line.split()
        paths = [p for p in parts if p.startswith("/")]
        for lib in paths:
            lib_target = root / lib.lstrip("/")
            if not lib_target.exists():
                lib_target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(lib).resolve(), lib_target)


def _userland(root: Path, shell: str) -> None:
    """busybox with its applets, /bin/sh being busybox sh or dash."""
    _copy_with_libs("busybox", root, "/bin/busybox")
    applets = subprocess.run(["busybox", "--list-full"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet in ("sbin/init", "linuxrc"):
            continue
        link = root / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to("/bin/busybox")
    if shell == "dash":
        _copy_with_libs("dash", root, "/bin/sh")
    for name in ("dev", "proc", "sys", "run", "mnt", "tmp", "etc/parkingspot"):
        (root / name).mkdir(parents=True, exist_ok=True)


def _write_exec(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture(scope="session", params=SHELLS)
def shell(request):
    return request.param


@pytest.fixture(scope="session")
def templates(tmp_path_factory, shell):
    """AMI root and volume trees, built once per shell and copied per test."""
    base = tmp_path_factory.mktemp(f"shim-{shell}")
    ami = base / "ami"
    _userland(ami, shell)
    for tool in ("e2fsck", "blkid"):
        if shutil.which(tool):
            _copy_with_libs(tool, ami, "/sbin/" + tool)
    shutil.copy2(SHIM, ami / "sbin" / "init")
    (ami / "sbin" / "init").chmod(0o755)
    _write_exec(ami / "sbin" / "init.orig", FAKE_INIT.format(name="ami"))
    (ami / "ami-root-marker").write_text("this is the AMI root\n")

    volume = base / "volume"
    _userland(volume, shell)
    _write_exec(volume / "sbin" / "init", FAKE_INIT.format(name="volume"))
    (volume / "old-root").mkdir()
    (volume / "etc" / "parkingspot" / "volume-id").write_text(VOLUME_ID + "\n")
    (volume / "volume-marker").write_text("this is the persistent volume\n")

    decoy = base / "decoy"
    _userland(decoy, shell)
    _write_exec(decoy / "sbin" / "init", FAKE_INIT.format(name="decoy"))
    return {"ami": ami, "volume": volume, "decoy": decoy}


class Boot:
    """Result of one boot: the console log parsed into what the final init reported."""

    def __init__(self, console: str, proc: subprocess.CompletedProcess, seconds: float):
        self.console = console
        self.proc = proc
        self.seconds = seconds
        self.init = None
        self.pid = None
        self.args = []
        self.old_root = []
        self.root = []
        self.run = ""
        self.mounts = {}
        for line in console.splitlines():
            if line.startswith("INIT="):
                fields = dict(f.split("=", 1) for f in line.split())
                self.init, self.pid = fields["INIT"], int(fields["pid"])
            elif line.startswith("ARG=["):
                self.args.append(line[5:-1])
            elif line.startswith("OLDROOT=["):
                self.old_root = line[9:-1].split()
            elif line.startswith("ROOT=["):
                self.root = line[6:-1].split()
            elif line.startswith("RUN=["):
                self.run = line[5:-1]
            elif line.startswith("MOUNT "):
                fields = line.split()
                sep = fields.index("-")
                self.mounts[fields[5]] = fields[sep + 1]

    def __repr__(self):
        return f"Boot(init={self.init}) console:\n{self.console}\nstderr:\n{self.proc.stderr}"


class Machine:
    """One AMI root + volume image pair in a temporary directory."""

    def __init__(self, workdir: Path, templates):
        self.dir = workdir
        self.ami = workdir / "ami"
        shutil.copytree(templates["ami"], self.ami, symlinks=True)
        self.volume_tree = workdir / "volume"
        shutil.copytree(templates["volume"], self.volume_tree, symlinks=True)
        self.decoy_tree = templates["decoy"]
        self.loops = []

    def config(self, text: str) -> None:
        (self.ami / "etc" / "parkingspot" / "root-pivot.conf").write_text(text)

    def image(self, tree: Path | None, name: str) -> Path:
        img = self.dir / f"{name}.img"
        with open(img, "wb") as fh:
            fh.truncate(16 * 1024 * 1024)
        if tree is not None:
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(tree), str(img)],
                check=True,
                capture_output=True,
            )
        return img

    def attach(self, img: Path) -> str:
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(img)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        rdev = os.stat(dev).st_rdev
        return f"{os.major(rdev)} {os.minor(rdev)}"

    def boot(
        self,
        volume_img: Path | None,
        node: str = "",
        delay: int = 0,
        nvme: str = "",
        shared: bool = False,
        run: bool = False,
        not_mount: bool = False,
    ) -> Boot:
        env = dict(os.environ)
        env.update(
            CASE_NODE=node if volume_img else "",
            CASE_DELAY=str(delay),
            CASE_NVME=nvme,
            CASE_SHARED="1" if shared else "",
            CASE_RUN="1" if run else "",
            CASE_NOT_MOUNT="1" if not_mount else "",
        )
        if volume_img is not None:
            env["CASE_MAJMIN"] = self.attach(volume_img)
        if nvme:
            env["CASE_DECOY"] = self.attach(self.image(self.decoy_tree, "decoy"))
        console = Path(f"{self.ami}.console")
        console.write_text("")
        started = time.monotonic()
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--propagation",
                "private",
                "sh",
                str(HARNESS),
                str(self.ami),
                *KERNEL_ARGS,
            ],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        return Boot(console.read_text(), proc, time.monotonic() - started)

    def close(self):
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


@pytest.fixture
def machine(tmp_path, templates):
    m = Machine(tmp_path, templates)
    yield m
    m.close()


def _assert_volume_booted(boot: Boot) -> None:
    assert boot.init == "volume", boot
    assert boot.pid == 1, boot
    assert boot.args == KERNEL_ARGS, boot
    assert "ami-root-marker" in boot.old_root, boot
    assert "volume-marker" in boot.root, boot
    assert boot.mounts.get("/") == "ext4", boot
    assert boot.mounts.get("/proc") == "proc", boot
    assert "/dev" in boot.mounts, boot
    assert "/sys" in boot.mounts, boot


def _assert_fell_back(boot: Boot, reason: str) -> None:
    assert boot.init == "ami", boot
    assert boot.pid == 1, boot
    assert boot.args == KERNEL_ARGS, boot
    assert "ami-root-marker" in boot.root, boot
    assert "/mnt" not in boot.mounts, boot
    assert boot.mounts.get("/proc") == "proc", boot
    assert reason in boot.console, boot


def test_xvd_name_for_sdf(machine):
    """DEVICE=/dev/sdf is found under its Xen name; the shim mounts proc and sys itself."""
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/sdf\nTIMEOUT=10\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_volume_booted(boot)
    assert boot.mounts["/sys"] == "sysfs", boot
    assert "found vol-0123456789abcdef0 at /dev/xvdf" in boot.console
    assert "pivoted to" in boot.console


def test_nvme_by_serial_skips_other_disks(machine):
    """No DEVICE: the NVMe disk whose serial is the volume id wins over the first NVMe disk."""
    machine.config(f'VOLUME_ID="{VOLUME_ID}"\nTIMEOUT=10\n')
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="nvme1n1", nvme=NVME_SERIAL, run=True)
    _assert_volume_booted(boot)
    assert "at /dev/nvme1n1" in boot.console
    assert boot.run == "from-early-boot", boot  # /run was moved, not left behind


@pytest.mark.parametrize("kind", ["nvme", "xvd"])
def test_late_attach(machine, kind):
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=20\n")
    img = machine.image(machine.volume_tree, "vol")
    if kind == "nvme":
        boot = machine.boot(img, node="nvme1n1", nvme=NVME_SERIAL, delay=2)
    else:
        boot = machine.boot(img, node="xvdf", delay=2)
    _assert_volume_booted(boot)
    waited = re.search(r"found vol-0123456789abcdef0 at /dev/\S+ after (\d+)s", boot.console)
    assert waited and int(waited.group(1)) >= 1, boot


def test_missing_volume_times_out_and_falls_back(machine):
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=1\n")
    boot = machine.boot(None)
    _assert_fell_back(boot, "did not appear within 1s")
    assert boot.seconds >= 1


def test_volume_without_init_falls_back(machine):
    (machine.volume_tree / "sbin" / "init").unlink()
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_fell_back(boot, "no executable /sbin/init")


def test_absolute_symlink_init_is_resolved_inside_the_volume(machine):
    """/sbin/init -> /lib/systemd/systemd exists only on the volume, not on the AMI root."""
    real = machine.volume_tree / "lib" / "systemd" / "systemd"
    _write_exec(real, (machine.volume_tree / "sbin" / "init").read_text())
    (machine.volume_tree / "sbin" / "init").unlink()
    (machine.volume_tree / "sbin" / "init").symlink_to("/lib/systemd/systemd")
    assert not (machine.ami / "lib" / "systemd" / "systemd").exists()
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_volume_booted(boot)
    assert "/sbin/init -> /lib/systemd/systemd" in boot.console


def test_shared_propagation_is_made_private(machine):
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf", shared=True)
    _assert_volume_booted(boot)
    assert "making mounts private" in boot.console
    assert "pivoted to" in boot.console


def test_refused_pivot_root_uses_move_and_chroot(machine):
    """With / not a mount point (as on an initramfs) pivot_root is refused."""
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf", not_mount=True)
    _assert_volume_booted(boot)
    assert "pivot_root refused" in boot.console


def test_missing_old_root_directory_is_created(machine):
    (machine.volume_tree / "old-root").rmdir()
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_volume_booted(boot)


def test_wrong_volume_falls_back(machine):
    (machine.volume_tree / "etc" / "parkingspot" / "volume-id").write_text("vol-0aaaaaaaaaaaaaaaa\n")
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_fell_back(boot, "the volume records id vol-0aaaaaaaaaaaaaaaa")


@pytest.mark.skipif(
    shutil.which("e2fsck") is None or shutil.which("blkid") is None,
    reason="e2fsck and blkid are needed inside the AMI root",
)
def test_damaged_file_system_falls_back(machine):
    img = machine.image(machine.volume_tree, "vol")
    # Clearing the root directory's inode is beyond what e2fsck -p repairs on its own; the
    # error state makes e2fsck look (a file system marked clean is not checked).
    for request in ("clri <2>", "ssv state 2"):
        subprocess.run(["debugfs", "-w", "-R", request, str(img)], check=True, capture_output=True)
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(img, node="xvdf")
    _assert_fell_back(boot, "file system check of /dev/xvdf failed")


@pytest.mark.skipif(shutil.which("blkid") is None, reason="blkid is needed inside the AMI root")
def test_blank_volume_falls_back(machine):
    machine.config(f"VOLUME_ID={VOLUME_ID}\nDEVICE=/dev/xvdf\nTIMEOUT=5\n")
    boot = machine.boot(machine.image(None, "blank"), node="xvdf")
    _assert_fell_back(boot, "no file system found on /dev/xvdf")


@pytest.mark.parametrize(
    "config, reason",
    [
        ("VOLUME_ID=vol-123\nTIMEOUT=5\n", "VOLUME_ID 'vol-123'"),
        (f"VOLUME_ID={VOLUME_ID}\nTIMEOUT=ten\n", "TIMEOUT 'ten'"),
        (f"VOLUME_ID={VOLUME_ID}; reboot\n", "is not vol- followed by"),
        (None, "cannot read /etc/parkingspot/root-pivot.conf"),
    ],
)
def test_bad_config_falls_back_at_once(machine, config, reason):
    if config is not None:
        machine.config(config)
    boot = machine.boot(machine.image(machine.volume_tree, "vol"), node="xvdf")
    _assert_fell_back(boot, reason)
    assert boot.seconds < 5
