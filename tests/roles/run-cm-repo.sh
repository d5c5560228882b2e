#!/bin/sh
# The role reuse tier: tests/roles/cm_repo (a site repository that includes termination_watcher
# and cleanup_hooks by FQCN, variables on the role entries) against a booted systemd-nspawn
# container, with a fake IMDSv2 server on the host's loopback:
#   1. --check --diff on the fresh host: succeeds, predicts changes, writes nothing;
#   2. the real converge, then a spot notice: the hook runs from the directory set on the
#      watcher's role entry;
#   3. --check --diff on the configured host: succeeds with nothing to change;
#   4. a second real converge: nothing changes.
# Needs root, systemd-nspawn, nsenter, ansible-playbook and the community.docker collection.
# PYTHON picks the interpreter for the fake IMDS (default python3).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/roles
python=${PYTHON:-python3}
machine=cm-runner

for tool in systemd-nspawn nsenter ansible-playbook "$python"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run-cm-repo: $tool not found" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run-cm-repo: systemd-nspawn needs root" >&2; exit 2; }

rootfs=$(sh "$here/rootfs.sh")
state=$(mktemp -d)
fake_pid=
nspawn_pid=
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
    if [ -n "$nspawn_pid" ] && kill "$nspawn_pid" 2>/dev/null; then
        i=0
        while kill -0 "$nspawn_pid" 2>/dev/null && [ "$i" -lt 30 ]; do sleep 1; i=$((i + 1)); done
        kill -9 "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT INT TERM

mkdir -p "$state/collections/ansible_collections/parkingspot"
ln -s "$root" "$state/collections/ansible_collections/parkingspot/ec2"
ANSIBLE_COLLECTIONS_PATH=$state/collections${ANSIBLE_COLLECTIONS_PATH:+:$ANSIBLE_COLLECTIONS_PATH}
export ANSIBLE_COLLECTIONS_PATH

"$python" "$root/tests/unit/roles/termination_watcher/fake_imds.py" --port 0 >"$state/fake.out" 2>&1 &
fake_pid=$!
i=0
until grep -q '^listening on' "$state/fake.out"; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || { cat "$state/fake.out" >&2; exit 1; }
    sleep 0.1
done
PCW_IMDS_URL=http://127.0.0.1:$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$state/fake.out")
export PCW_IMDS_URL

setsid systemd-nspawn --register=no --keep-unit --volatile=overlay -b -D "$rootfs" --machine="$machine" \
    >"$state/console" 2>&1 </dev/null &
nspawn_pid=$!
i=0
while :; do
    leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n 1 || true)
    if [ -n "$leader" ]; then
        running=$(nsenter --target "$leader" --all -- systemctl is-system-running 2>/dev/null || true)
        case "$running" in running | degraded) break ;; esac
    fi
    i=$((i + 1))
    [ "$i" -lt 60 ] || { tail -20 "$state/console" >&2; echo "run-cm-repo: the container did not boot" >&2; exit 1; }
    sleep 1
done

# How to reach the container: a second inventory source, so the site repository stays as users keep it.
cat >"$state/connection.yml" <<YAML
runners:
  hosts:
    $machine:
      ansible_connection: community.docker.nsenter
      ansible_nsenter_pid: $leader
      ansible_python_interpreter: /usr/bin/python3
YAML

# play STEP ARGS...: run ansible-playbook, keep its output, print the PLAY RECAP's changed count.
play() {
    step=$1
    shift
    echo "run-cm-repo: $step" >&2
    if ! ansible-playbook -i "$here/cm_repo/inventory" -i "$state/connection.yml" "$@" >"$state/$step.log" 2>&1; then
        cat "$state/$step.log" >&2
        echo "run-cm-repo: $step failed" >&2
        exit 1
    fi
    sed -n "s/^$machine *: ok=[0-9]* *changed=\([0-9]*\) .*/\1/p" "$state/$step.log"
}

changed=$(play check-fresh "$here/cm_repo/site.yml" --check --diff)
[ "$changed" -gt 0 ] || { cat "$state/check-fresh.log" >&2; echo "run-cm-repo: check mode on a fresh host predicted no change" >&2; exit 1; }
grep -A1 -- '+    "--hooks-dir"' "$state/check-fresh.log" | grep -q '"/srv/site/hooks"' \
    || { cat "$state/check-fresh.log" >&2; echo "run-cm-repo: --diff showed no unit with the hooks directory" >&2; exit 1; }
play untouched "$here/cm_fresh.yml" >/dev/null

play converge "$here/cm_repo/site.yml" >/dev/null
play verify "$here/cm_verify.yml" >/dev/null

changed=$(play check-configured "$here/cm_repo/site.yml" --check --diff)
[ "$changed" = 0 ] || { cat "$state/check-configured.log" >&2; echo "run-cm-repo: check mode on a configured host predicted $changed changes" >&2; exit 1; }

changed=$(play idempotence "$here/cm_repo/site.yml")
[ "$changed" = 0 ] || { cat "$state/idempotence.log" >&2; echo "run-cm-repo: a second converge changed $changed things" >&2; exit 1; }
echo "run-cm-repo: the site repository converged in check mode (fresh and configured) and for real" >&2
