#!/bin/sh
# Tier B tests of the root_pivot init shim: real boots of Debian's kernel under qemu (TCG,
# no KVM needed). Disk 1 is an "AMI root" whose /sbin/init is the shim; the persistent
# volume is attached as a virtio disk, as an NVMe disk with the volume id as its serial,
# hot-plugged as NVMe while the shim waits, or not at all. The inits print a marker line on
# the serial console and power the machine off.
#
# Usage: tests/boot/run.sh [case ...]     cases: virtio nvme nvme-hotplug missing (default: all)
# Needs: qemu-system-x86_64, busybox (static), mkfs.ext4, cpio, gzip, dpkg-deb, apt-get
# (to download linux-image-amd64 once; cached in $PARKINGSPOT_BOOT_CACHE).
# Exit status: 0 when every case passed, 1 when one failed, 2 when something is missing.

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
COLLECTION=$(cd "$HERE/../.." && pwd)
SHIM=$COLLECTION/roles/root_pivot/files/parkingspot-root-pivot
CACHE=${PARKINGSPOT_BOOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parkingspot-boot}
BOOT_TIMEOUT=${PARKINGSPOT_BOOT_TIMEOUT:-240}
VOLUME_ID="vol-0123456789abcdef0"
SERIAL="vol0123456789abcdef0"
MODULES="virtio_pci virtio_blk nvme ext4 crc32c_generic crct10dif_generic crc64_rocksoft_generic"

say() { echo "boot-test: $*" >&2; }
die() { say "$*"; exit 2; }

for tool in qemu-system-x86_64 busybox mkfs.ext4 cpio gzip dpkg-deb apt-get timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

# The initramfs and the images get a copy of busybox, so it must not need shared libraries.
if ldd "$(command -v busybox)" >/dev/null 2>&1; then
    die "busybox is dynamically linked; install busybox-static"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parkingspot-boot.XXXXXX") || die "cannot create a work directory"
if [ "${PARKINGSPOT_BOOT_KEEP:-0}" = 1 ]; then
    say "keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT INT TERM
fi

# ---- kernel: downloaded once, vmlinuz and the needed modules kept in the cache ----
prepare_kernel() {
    [ -f "$CACHE/kernel/ready" ] && return 0
    mkdir -p "$CACHE/download" || return 1
    (
        cd "$CACHE/download" || exit 1
        ls linux-image-amd64_*.deb >/dev/null 2>&1 || apt-get download linux-image-amd64 || exit 1
        meta=
        for f in linux-image-amd64_*.deb; do meta=$f; done
        versioned=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
        [ -n "$versioned" ] || exit 1
        ls "${versioned}"_*.deb >/dev/null 2>&1 || apt-get download "$versioned" || exit 1
    ) || return 1
    deb=
    for f in "$CACHE"/download/linux-image-[0-9]*.deb; do deb=$f; done
    [ -f "$deb" ] || return 1
    rm -rf "$CACHE/extract" "$CACHE/kernel"
    mkdir -p "$CACHE/extract" "$CACHE/kernel/modules" || return 1
    dpkg-deb -x "$deb" "$CACHE/extract" || return 1
    kver=$(ls "$CACHE/extract/lib/modules")
    busybox depmod -b "$CACHE/extract" "$kver" || return 1
    cp "$CACHE/extract/boot/vmlinuz-$kver" "$CACHE/kernel/vmlinuz" || return 1
    # Load order: each wanted module after its dependencies (modules.dep lists the
    # dependencies that load first at the end).
    : >"$CACHE/kernel/order"
    for mod in $MODULES; do
        line=$(grep -E "/$mod\.ko:" "$CACHE/extract/lib/modules/$kver/modules.dep") || return 1
        deps=${line#*:}
        for path in $(echo "$deps" | tr ' ' '\n' | sed '/^$/d' | sed -n '1!G;h;$p') "${line%%:*}"; do
            name=${path##*/}
            grep -qx "$name" "$CACHE/kernel/order" && continue
            cp "$CACHE/extract/lib/modules/$kver/$path" "$CACHE/kernel/modules/$name" || return 1
            echo "$name" >>"$CACHE/kernel/order"
        done
    done
    echo "$kver" >"$CACHE/kernel/version"
    rm -rf "$CACHE/extract" "$CACHE/download"
    touch "$CACHE/kernel/ready"
}

# busybox with its applets in a tree
userland() {
    mkdir -p "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin" "$1/dev" "$1/proc" "$1/sys" "$1/run" \
        "$1/mnt" "$1/tmp" "$1/etc/parkingspot" || return 1
    cp "$(command -v busybox)" "$1/bin/busybox" || return 1
    for applet in $(busybox --list-full); do
        case $applet in sbin/init | linuxrc) continue ;; esac
        [ -e "$1/$applet" ] || ln -s /bin/busybox "$1/$applet"
    done
}

# A fake init: prints what it sees on the console, then powers off.
fake_init() {
    cat >"$1" <<EOT
#!/bin/sh
read -r up _ </proc/uptime
echo "PSBOOT init=$2 pid=\$\$ args=[\$*] root=[\$(ls / | tr '\n' ' ')] oldroot=[\$(ls /old-root 2>/dev/null | tr '\n' ' ')] rootdev=[\$(awk '\$2 == "/" {print \$1}' /proc/mounts | tail -n 1)] uptime=\$up"
sync
poweroff -f
EOT
    chmod 755 "$1"
}

build_images() {
    # initramfs: load the drivers, mount the AMI root read-only, and hand over to its
    # /sbin/init like a distribution initramfs does (moving /dev /run /sys /proc unless
    # pstest_bare=1 asks for a bare hand-over, which leaves the mounting to the shim).
    initrd=$WORK/initrd
    userland "$initrd" || return 1
    mkdir -p "$initrd/modules" "$initrd/root" || return 1
    cp "$CACHE"/kernel/modules/* "$initrd/modules/" || return 1
    cp "$CACHE/kernel/order" "$initrd/modules/order" || return 1
    cat >"$initrd/init" <<'EOT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run && mount -t tmpfs -o mode=0755 tmpfs /run
while read -r m; do insmod "/modules/$m" || echo "initramfs: insmod $m failed"; done </modules/order
n=0
while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
mount -t ext4 -o ro /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; poweroff -f; }
read -r up _ </proc/uptime
echo "PSBOOT-HANDOVER uptime=$up"
if [ "${pstest_bare:-0}" = 1 ]; then
    umount /run; umount /sys; umount /dev; umount /proc
else
    for d in dev run sys proc; do mount --move "/$d" "/root/$d"; done
fi
exec switch_root /root /sbin/init "$@"
EOT
    chmod 755 "$initrd/init"
    (cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz" || return 1

    ami=$WORK/ami
    userland "$ami" || return 1
    cp "$SHIM" "$ami/sbin/init" && chmod 755 "$ami/sbin/init" || return 1
    fake_init "$ami/sbin/init.orig" ami
    echo "this is the AMI root" >"$ami/ami-root-marker"

    vol=$WORK/volume
    userland "$vol" || return 1
    mkdir -p "$vol/old-root" "$vol/lib/fake"
    fake_init "$vol/lib/fake/init" volume
    ln -s /lib/fake/init "$vol/sbin/init"
    echo "$VOLUME_ID" >"$vol/etc/parkingspot/volume-id"
    echo "this is the persistent volume" >"$vol/volume-marker"
}

make_image() { # tree image
    rm -f "$2"
    truncate -s 64M "$2" && mkfs.ext4 -q -F -E root_owner=0:0 -d "$1" "$2"
}

# run_case name config expect(volume|ami) extra-append qemu-args...
run_case() {
    name=$1 config=$2 expect=$3 append=$4
    shift 4
    log=$WORK/$name.log
    printf '%b' "$config" >"$WORK/ami/etc/parkingspot/root-pivot.conf"
    make_image "$WORK/ami" "$WORK/ami.img" || return 1
    make_image "$WORK/volume" "$WORK/vol.img" || return 1
    : >"$log"
    started=$(date +%s)
    set -- -machine pc -m 512 -smp 1 -nodefaults -display none -no-reboot \
        -serial "file:$log" -kernel "$CACHE/kernel/vmlinuz" -initrd "$WORK/initrd.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 $append single pstest-arg" \
        -drive "file=$WORK/ami.img,if=virtio,format=raw" "$@"
    if [ "$name" = nvme-hotplug ]; then
        # Plug the volume in only once the shim says it is waiting for it.
        {
            n=0
            until grep -q "waiting up to" "$log" || [ $n -ge $((BOOT_TIMEOUT * 5)) ]; do
                sleep 0.2
                n=$((n + 1))
            done
            sleep 2
            echo "device_add nvme,id=late,serial=$SERIAL,drive=vol"
            # Keep the monitor open until the guest is done (or the time is up).
            until grep -aq -e '^PSBOOT ' -e 'Kernel panic' "$log" || [ $n -ge $((BOOT_TIMEOUT * 5)) ]; do
                sleep 0.2
                n=$((n + 1))
            done
            sleep 1
        } | timeout "$BOOT_TIMEOUT" qemu-system-x86_64 "$@" -monitor stdio >"$WORK/$name.monitor" 2>&1
    else
        timeout "$BOOT_TIMEOUT" qemu-system-x86_64 "$@" -monitor none </dev/null >"$WORK/$name.qemu" 2>&1
    fi
    rc=$?
    seconds=$(($(date +%s) - started))
    marker=$(grep -a '^PSBOOT ' "$log" | tail -n 1)
    verdict=ok
    if grep -aq "Kernel panic" "$log"; then
        verdict="kernel panic"
    elif [ "$rc" -ne 0 ]; then
        verdict="qemu exited with $rc (124: timeout)"
    else
        case $marker in
            "PSBOOT init=$expect pid=1 args=[single pstest-arg]"*) ;;
            *) verdict="expected init=$expect with the kernel's arguments, got: ${marker:-nothing}" ;;
        esac
        if [ "$name" = nvme-hotplug ] && ! grep -aq "at /dev/nvme0n1 after [1-9]" "$log"; then
            verdict="the volume was not found late, after the shim had waited"
        fi
        if [ "$expect" = volume ]; then
            case $marker in
                *"oldroot=[ami-root-marker "*) ;;
                *) verdict="/old-root does not hold the AMI root: $marker" ;;
            esac
        fi
    fi
    handover=$(sed -n 's/^PSBOOT-HANDOVER uptime=\([0-9.]*\).*/\1/p' "$log" | tail -n 1)
    final=${marker##*uptime=}
    shim_time=$(awk -v a="$handover" -v b="$final" 'BEGIN { if (a != "" && b != "") printf "%.2f", b - a; else print "?" }')
    if [ "$verdict" = ok ]; then
        say "PASS $name (${seconds}s wall, ${shim_time}s guest time from the initramfs hand-over to the final init): $marker"
        return 0
    fi
    say "FAIL $name (${seconds}s): $verdict"
    sed 's/^/  | /' "$log" >&2
    return 1
}

prepare_kernel || die "cannot prepare the kernel (apt-get download linux-image-amd64 failed?)"
build_images || die "cannot build the images"

cases=${*:-virtio nvme nvme-hotplug missing}
failed=0
for c in $cases; do
    case $c in
        virtio)
            # Bare hand-over: the shim mounts proc, sys and devtmpfs itself.
            run_case virtio "VOLUME_ID=$VOLUME_ID\nDEVICE=/dev/vdb\nTIMEOUT=30\n" volume "pstest_bare=1" \
                -drive "file=$WORK/vol.img,if=virtio,format=raw" || failed=1 ;;
        nvme)
            run_case nvme "VOLUME_ID=$VOLUME_ID\nDEVICE=/dev/sdf\nTIMEOUT=30\n" volume "" \
                -drive "file=$WORK/vol.img,if=none,id=vol,format=raw" \
                -device "nvme,serial=$SERIAL,drive=vol" || failed=1 ;;
        nvme-hotplug)
            run_case nvme-hotplug "VOLUME_ID=$VOLUME_ID\nTIMEOUT=90\n" volume "" \
                -drive "file=$WORK/vol.img,if=none,id=vol,format=raw" || failed=1 ;;
        missing)
            run_case missing "VOLUME_ID=$VOLUME_ID\nDEVICE=/dev/vdb\nTIMEOUT=3\n" ami "" || failed=1 ;;
        *)
            say "unknown case $c"; failed=1 ;;
    esac
done
exit $failed
