#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Graceful GitLab Runner stop: SIGQUIT makes the runner take no new jobs and finish the
# running ones; after the deadline the unit is stopped.
# Settings: PS_GITLAB_RUNNER_UNIT (default gitlab-runner).
# Undo (notice withdrawn or completed): start the unit again.
PS_HOOK_NAME=gitlab_runner
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
if ps_is_undo; then
    ps_start_unit "${PS_GITLAB_RUNNER_UNIT:-gitlab-runner}"
    exit $?
fi
ps_graceful_unit "${PS_GITLAB_RUNNER_UNIT:-gitlab-runner}" SIGQUIT
