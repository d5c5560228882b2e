# shellcheck shell=sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Helpers shared by the ParkingSpot built-in hooks (sourced, not run).

# The watcher runs "<hook>.undo" with PARKINGSPOT_LIFECYCLE=withdrawn or completed when the notice
# goes away. Built-ins that can undo their work set PS_HAS_UNDO=1 before sourcing this file; the
# others do nothing when run as an undo script (handing off an Elastic IP twice would be wrong).
ps_is_undo() {
    case "${PARKINGSPOT_LIFECYCLE:-}" in
        withdrawn | completed) return 0 ;;
    esac
    return 1
}

ps_log() {
    printf 'parkingspot-hook %s: %s\n' "${PS_HOOK_NAME:-hook}" "$*" >&2
}

ps_now() {
    date +%s
}

# The time (epoch s) this hook should be done by: the notice deadline or the hook's own
# timeout, whichever comes first, less PS_END_MARGIN seconds (default 3) to clean up.
ps_end_time() {
    _now=$(ps_now)
    _end=${PARKINGSPOT_DEADLINE:-$((_now + 60))}
    if [ -n "${PARKINGSPOT_HOOK_TIMEOUT:-}" ]; then
        _own=$((_now + PARKINGSPOT_HOOK_TIMEOUT))
        [ "$_own" -lt "$_end" ] && _end=$_own
    fi
    echo $((_end - ${PS_END_MARGIN:-3}))
}

ps_require() {
    if ! command -v "$1" >/dev/null 2>&1; then
        ps_log "$1 not found on PATH; nothing done"
        exit 127
    fi
}

ps_require_instance_id() {
    if [ -z "${PARKINGSPOT_INSTANCE_ID:-}" ]; then
        ps_log "PARKINGSPOT_INSTANCE_ID is empty; cannot act on this instance"
        exit 2
    fi
}

# ps_wait_service_inactive UNIT END: wait until UNIT is no longer active or END passes.
ps_wait_service_inactive() {
    while systemctl is-active --quiet "$1"; do
        if [ "$(ps_now)" -ge "$2" ]; then
            return 1
        fi
        sleep "${PS_POLL_SECONDS:-1}"
    done
    return 0
}

# ps_start_unit UNIT: start UNIT again (undo of a graceful stop).
ps_start_unit() {
    ps_require systemctl
    if systemctl start "$1"; then
        ps_log "started $1 again (notice $PARKINGSPOT_LIFECYCLE)"
        return 0
    fi
    ps_log "could not start $1"
    return 1
}

# ps_graceful_unit UNIT SIGNAL: ask UNIT's main process to stop taking jobs with SIGNAL, wait for
# the running job until the end time, then stop the unit.
ps_graceful_unit() {
    _unit=$1
    _signal=$2
    ps_require systemctl
    if ! systemctl is-active --quiet "$_unit"; then
        ps_log "$_unit is not active; nothing to stop"
        return 0
    fi
    _end=$(ps_end_time)
    ps_log "sending $_signal to $_unit (no new jobs); waiting for the running job until $_end"
    systemctl kill --kill-who=main --signal="$_signal" "$_unit" || ps_log "could not signal $_unit"
    if ps_wait_service_inactive "$_unit" "$_end"; then
        ps_log "$_unit finished its work and stopped"
    else
        ps_log "$_unit still busy at the deadline; stopping it now"
    fi
    systemctl stop "$_unit"
}

if ps_is_undo && [ -z "${PS_HAS_UNDO:-}" ]; then
    ps_log "notice $PARKINGSPOT_LIFECYCLE; this hook has nothing to undo"
    exit 0
fi
