#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# GitHub Actions runner job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED in the runner's .env):
# the runner calls it without arguments, so this names the state.
exec "$(dirname "$0")/runner_busy.sh" busy
