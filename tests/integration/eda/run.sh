#!/bin/sh
# Integration test of playbooks/eda_setup.yml against a local moto server.
# Runs the setup twice (second run: no change), once in check mode, checks the queue policy,
# the rule and real event delivery, then tears down twice (second teardown: no change).
#
# Environment: PYTHON (default python3, needs moto[server] and boto3), ANSIBLE_PLAYBOOK
# (default: ansible-playbook next to PYTHON, else on PATH).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PYTHON=${PYTHON:-python3}
if [ -z "${ANSIBLE_PLAYBOOK:-}" ]; then
    candidate="$(dirname "$(command -v "$PYTHON")")/ansible-playbook"
    if [ -x "$candidate" ]; then ANSIBLE_PLAYBOOK=$candidate; else ANSIBLE_PLAYBOOK=ansible-playbook; fi
fi
PLAYBOOK="$ROOT/playbooks/eda_setup.yml"
PYTHON_ABS=$(command -v "$PYTHON")
WORK=$(mktemp -d)
MOTO_PID=

cleanup() {
    if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
"$PYTHON" - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("moto server did not start")
PY

export AWS_URL="http://127.0.0.1:$PORT" AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# No region in the environment: the playbook must pass parkingspot_eda_region to every module.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION 2>/dev/null || true
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
REGION=ap-southeast-2
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# play NAME EXPECT_RC EXPECT_CHANGED ARGS...: run the playbook, check exit code and changed count
play() {
    name=$1 want_rc=$2 want_changed=$3
    shift 3
    rc=0
    "$ANSIBLE_PLAYBOOK" -i localhost, -e "ansible_python_interpreter=$PYTHON_ABS" "$PLAYBOOK" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    changed=$(sed -n 's/.*localhost.*changed=\([0-9]*\).*/\1/p' "$WORK/$name.log" | tail -n 1)
    if [ "$rc" != "$want_rc" ]; then
        fail "$name: exit code $rc, expected $want_rc"; cat "$WORK/$name.log" >&2; return 0
    fi
    case $want_changed in
        any) ;;
        nonzero) [ "${changed:-0}" -gt 0 ] || fail "$name: expected changes, got changed=${changed:-?}" ;;
        *) [ "${changed:-x}" = "$want_changed" ] || { fail "$name: changed=${changed:-?}, expected $want_changed"; cat "$WORK/$name.log" >&2; } ;;
    esac
    echo "ok: $name (rc=$rc changed=${changed:-?})"
}

verify() {
    AWS_DEFAULT_REGION=$REGION "$PYTHON" "$HERE/verify.py" "$@" || fail "verify $*"
}

play bad-input 2 any
grep -q "parkingspot_eda_region is required" "$WORK/bad-input.log" || fail "bad-input: message does not name parkingspot_eda_region"
play bad-state 2 any -e parkingspot_eda_region=$REGION -e parkingspot_eda_state=maybe
verify nothing
play check-mode-fresh 0 nonzero -e parkingspot_eda_region=$REGION --check
verify nothing
play create 0 nonzero -e parkingspot_eda_region=$REGION
play create-again 0 0 -e parkingspot_eda_region=$REGION
play check-mode 0 0 -e parkingspot_eda_region=$REGION --check --diff
verify present
play remove 0 nonzero -e parkingspot_eda_region=$REGION -e parkingspot_eda_state=absent
play remove-again 0 0 -e parkingspot_eda_region=$REGION -e parkingspot_eda_state=absent
verify nothing

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "eda_setup integration: all checks passed"
