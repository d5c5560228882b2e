#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Graceful Buildkite agent stop: the first SIGTERM makes the agent take no new jobs and finish
# the running one; after the deadline the unit is stopped.
# Settings: PS_BUILDKITE_AGENT_UNIT (default buildkite-agent).
# Undo (notice withdrawn or completed): start the unit again.
PS_HOOK_NAME=buildkite_agent
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
if ps_is_undo; then
    ps_start_unit "${PS_BUILDKITE_AGENT_UNIT:-buildkite-agent}"
    exit $?
fi
ps_graceful_unit "${PS_BUILDKITE_AGENT_UNIT:-buildkite-agent}" SIGTERM
