#!/bin/sh
# Run the molecule scenarios of the termination_watcher role (which also apply cleanup_hooks):
# "default", "changed" and "runner_host" (the playbook), each in a systemd-nspawn container booted from a Debian bookworm
# rootfs, with a fake IMDSv2 server on the host's loopback (the containers share the host
# network). Needs root, systemd-nspawn (systemd-container), debootstrap, molecule and the
# community.docker collection (nsenter connection).
#
#   tests/roles/run-molecule.sh [scenario ...]   (default: default changed runner_host)
#
# PYTHON picks the interpreter for the fake IMDS (default python3); PCW_CACHE where the rootfs
# is kept between runs (default ~/.cache/parkingspot).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
scenarios=${*:-default changed runner_host}

for tool in systemd-nspawn nsenter molecule "$python"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run-molecule: $tool not found" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run-molecule: systemd-nspawn needs root" >&2; exit 2; }

rootfs=$(sh "$root/tests/roles/rootfs.sh")

state=$(mktemp -d)
fake_pid=
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
    for f in "$state"/*.nspawn; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$state"
}
trap cleanup EXIT INT TERM

mkdir -p "$state/collections/ansible_collections/parkingspot"
ln -s "$root" "$state/collections/ansible_collections/parkingspot/ec2"

"$python" "$root/tests/unit/roles/termination_watcher/fake_imds.py" --port 0 >"$state/fake.out" 2>&1 &
fake_pid=$!
i=0
until grep -q '^listening on' "$state/fake.out"; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || { cat "$state/fake.out" >&2; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$state/fake.out")

PCW_ROOTFS=$rootfs
PCW_STATE=$state
PCW_IMDS_URL=http://127.0.0.1:$port
ANSIBLE_COLLECTIONS_PATH=$state/collections${ANSIBLE_COLLECTIONS_PATH:+:$ANSIBLE_COLLECTIONS_PATH}
export PCW_ROOTFS PCW_STATE PCW_IMDS_URL ANSIBLE_COLLECTIONS_PATH

cd "$root/roles/termination_watcher"
for scenario in $scenarios; do
    echo "run-molecule: scenario $scenario" >&2
    molecule test -s "$scenario"
done
