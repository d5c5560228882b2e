#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# GitHub Actions runner job-completed hook (ACTIONS_RUNNER_HOOK_JOB_COMPLETED in the runner's .env).
exec "$(dirname "$0")/runner_busy.sh" idle
