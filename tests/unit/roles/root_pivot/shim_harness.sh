#!/bin/sh
# Runs inside `unshare --mount --pid --fork`: lays out the kernel-side state a booting
# instance would see around the AMI root in $1, then execs the shim there as PID 1.
#
# Environment (set by test_shim.py):
#   CASE_NODE      name of the block device node to create under /dev (empty: none)
#   CASE_MAJMIN    "major minor" of the loop device holding the volume
#   CASE_DELAY     seconds after the shim starts waiting until the node (and its sysfs entry)
#                  appears
#   CASE_NVME      serial for a fake /sys/block/<node>/device/serial (empty: no fake sysfs)
#   CASE_DECOY     "major minor" of another volume shown as the first NVMe disk (fake sysfs)
#   CASE_SHARED    "1": make the AMI root a shared mount (pivot_root then refuses)
#   CASE_NOT_MOUNT "1": leave the AMI root a plain directory (pivot_root then refuses)
#   CASE_RUN       "1": mount a tmpfs on /run holding a marker file
# Further arguments are passed to the shim as the kernel's arguments for init.
set -eu
ami=$1
shift

if [ "${CASE_NOT_MOUNT:-}" != 1 ]; then
    mount --bind "$ami" "$ami"
    mount -o remount,bind,ro "$ami"
fi

# /dev: a tmpfs whose console is the log file the test reads.
mount -t tmpfs -o mode=0755 testdev "$ami/dev"
: >"$ami/dev/console"
mount --bind "$ami.console" "$ami/dev/console"
mknod -m 666 "$ami/dev/null" c 1 3

if [ -n "${CASE_NVME:-}" ]; then
    mount -t tmpfs -o mode=0755 testsys "$ami/sys"
    # A decoy NVMe disk (the AMI root) with another serial comes first.
    mkdir -p "$ami/sys/block/nvme0n1/device" "$ami/sys/class/block"
    echo "vol0ffffffffffffffff" >"$ami/sys/block/nvme0n1/device/serial"
    echo 16384 >"$ami/sys/block/nvme0n1/size"
    ln -s ../../block/nvme0n1 "$ami/sys/class/block/nvme0n1"
    # shellcheck disable=SC2086  # "major minor" splits on purpose
    mknod "$ami/dev/nvme0n1" b $CASE_DECOY
fi

if [ "${CASE_RUN:-}" = 1 ]; then
    mount -t tmpfs -o mode=0755 testrun "$ami/run"
    echo from-early-boot >"$ami/run/early-marker"
fi

if [ -n "${CASE_NODE:-}" ]; then
    (
        if [ "${CASE_DELAY:-0}" -gt 0 ]; then
            # Attach late: only once the shim says it is waiting, then after the delay.
            n=0
            until grep -q "waiting up to" "$ami.console" || [ $n -ge 300 ]; do
                sleep 0.1
                n=$((n + 1))
            done
            sleep "$CASE_DELAY"
        fi
        if [ -n "${CASE_NVME:-}" ]; then
            mkdir -p "$ami/sys/block/$CASE_NODE/device"
            # NVMe serials are space-padded to 20 characters.
            printf '%-20s\n' "$CASE_NVME" >"$ami/sys/block/$CASE_NODE/device/serial"
            echo 65536 >"$ami/sys/block/$CASE_NODE/size"
            ln -s "../../block/$CASE_NODE" "$ami/sys/class/block/$CASE_NODE"
        fi
        # shellcheck disable=SC2086
        mknod "$ami/dev/$CASE_NODE" b $CASE_MAJMIN
    ) &
fi

if [ "${CASE_SHARED:-}" = 1 ]; then
    mount --make-shared "$ami"
fi

exec chroot "$ami" /sbin/init "$@"
