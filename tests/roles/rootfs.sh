#!/bin/sh
# Print the path of a Debian bookworm rootfs with systemd and python3 for systemd-nspawn,
# building it with debootstrap the first time (about a minute). Shared by the role tiers.
#
# PCW_CACHE: where the rootfs is kept between runs (default ~/.cache/parkingspot);
# DEBIAN_MIRROR: the mirror debootstrap uses.
set -eu

cache=${PCW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parkingspot}
rootfs=$cache/rootfs-bookworm

if [ ! -x "$rootfs/usr/bin/python3" ] || [ ! -x "$rootfs/lib/systemd/systemd" ]; then
    command -v debootstrap >/dev/null 2>&1 || { echo "rootfs: debootstrap not found" >&2; exit 2; }
    mkdir -p "$cache"
    rm -rf "$rootfs.tmp"
    echo "rootfs: building $rootfs (once)" >&2
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,procps \
        bookworm "$rootfs.tmp" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    mv "$rootfs.tmp" "$rootfs"
fi
echo "$rootfs"
