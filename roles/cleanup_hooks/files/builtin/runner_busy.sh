#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Tell the pool keeper whether this runner is working: "busy" tags the instance
# parkingspot:busy=true when a job starts; "idle" tags parkingspot:busy=false and
# parkingspot:idle-since=<now, UTC> when it ends. A queue-driven pool (spot_pool demand/scaling)
# never drains a busy runner and drains an idle one only after scaling.idle_minutes.
#
# Not a notice hook: the CI runner calls it around each job (docs/queue-driven-pools.md):
#   GitHub Actions  ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED -> github_job_started.sh / _completed.sh
#   GitLab (shell executor)  pre_build_script / post_build_script -> runner_busy.sh busy / idle
# It always exits 0 so that a tagging failure never fails a CI job; the failure is logged.
# Settings: PARKINGSPOT_INSTANCE_ID (default: read from IMDSv2), PS_AWS_REGION, PS_IMDS_URL.
PS_HOOK_NAME=runner_busy
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
case "${1:-}" in
    busy) tags="Key=parkingspot:busy,Value=true" ;;
    idle) tags="Key=parkingspot:busy,Value=false Key=parkingspot:idle-since,Value=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ;;
    *)
        ps_log "usage: runner_busy.sh busy|idle"
        exit 0
        ;;
esac
if ! command -v aws >/dev/null 2>&1; then
    ps_log "aws not found on PATH; runner state not tagged"
    exit 0
fi
instance=${PARKINGSPOT_INSTANCE_ID:-}
if [ -z "$instance" ] && command -v curl >/dev/null 2>&1; then
    imds=${PS_IMDS_URL:-http://169.254.169.254}
    token=$(curl -sf -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$imds/latest/api/token")
    [ -n "$token" ] && instance=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/instance-id")
fi
if [ -z "$instance" ]; then
    ps_log "no instance id (PARKINGSPOT_INSTANCE_ID empty, IMDS unreachable); runner state not tagged"
    exit 0
fi
# shellcheck disable=SC2086 # one word per tag
if aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 create-tags --resources "$instance" --tags $tags; then
    ps_log "tagged $instance $1"
else
    ps_log "could not tag $instance $1; the keeper may see a stale state"
fi
exit 0
