#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# GitHub Actions runner: the listener has no "stop taking jobs" signal (a signal to it cancels
# the running job), so this hook waits while a job runs (a Runner.Worker process exists) and
# stops the runner unit as soon as it is idle, or at the deadline.
# Settings: PS_GITHUB_RUNNER_UNIT (default: every active actions.runner.* unit).
# Undo (notice withdrawn or completed): start PS_GITHUB_RUNNER_UNIT again (a stopped unit cannot be
# found by pattern, so the undo needs the setting).
PS_HOOK_NAME=github_runner
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
if ps_is_undo; then
    if [ -z "${PS_GITHUB_RUNNER_UNIT:-}" ]; then
        ps_log "PS_GITHUB_RUNNER_UNIT is not set; no runner unit to start again"
        exit 0
    fi
    status=0
    for unit in $PS_GITHUB_RUNNER_UNIT; do
        ps_start_unit "$unit" || status=1
    done
    exit $status
fi
ps_require systemctl
units=${PS_GITHUB_RUNNER_UNIT:-$(systemctl list-units --type=service --state=active --plain --no-legend 'actions.runner.*' | awk '{print $1}')}
if [ -z "$units" ]; then
    ps_log "no active actions.runner.* unit; nothing to stop"
    exit 0
fi
end=$(ps_end_time)
while pgrep -f Runner.Worker >/dev/null 2>&1; do
    if [ "$(ps_now)" -ge "$end" ]; then
        ps_log "a job is still running at the deadline; stopping the runner now"
        break
    fi
    sleep "${PS_POLL_SECONDS:-1}"
done
status=0
for unit in $units; do
    ps_log "stopping $unit"
    systemctl stop "$unit" || status=1
done
exit $status
