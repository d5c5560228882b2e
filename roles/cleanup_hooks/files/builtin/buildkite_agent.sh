#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Graceful Buildkite agent stop: the first SIGTERM makes the agent take no new jobs and finish
# the running one; after the deadline the unit is stopped.
# Settings: PS_BUILDKITE_AGENT_UNIT (default buildkite-agent).
PS_HOOK_NAME=buildkite_agent
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
ps_graceful_unit "${PS_BUILDKITE_AGENT_UNIT:-buildkite-agent}" SIGTERM
