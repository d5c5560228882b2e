#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Join a launched instance to its CI system with the pool's labels, at boot (a systemd oneshot or
# cloud-init runcmd, run as root; not a notice hook). The secret comes from an SSM SecureString
# parameter through the instance profile, never from user data, and is never printed.
#
#   runner_register.sh github   register an ephemeral GitHub Actions runner (one job, then it
#                               leaves GitHub by itself) named after the instance, and run it
#   runner_register.sh gitlab   register a GitLab runner named after the instance and start it
#
# Settings:
#   PS_TOKEN_PARAMETER    SSM parameter holding the secret (required): for GitHub a token that may
#                         create runner registration tokens (fine-grained "Self-hosted runners"
#                         write, or a GitHub App installation token); for GitLab a runner
#                         authentication token (glrt-..., tags set on the runner in GitLab) or a
#                         legacy registration token (tags from PS_RUNNER_LABELS)
#   PS_RUNNER_LABELS      comma-separated labels / tags of the pool
#   PS_ON_DEMAND_LABELS   comma-separated labels added when this instance is in the pool's on-demand
#                         lane (tag parkingspot:lane=on-demand, see spot_pool's on_demand_base), so
#                         retried jobs can ask for a runner that is not spot
#   PS_AWS_REGION         region of the parameter
#   GitHub: PS_GITHUB_URL (https://github.com/ORG or https://github.com/ORG/REPO, required),
#           PS_GITHUB_API_URL (default https://api.github.com), PS_RUNNER_DIR (default
#           /opt/actions-runner), PS_RUNNER_USER (default runner), PS_SHUTDOWN_AFTER_JOB (true: power
#           off once the ephemeral runner has run its job; the keeper replaces the instance),
#           PS_GITHUB_JIT (true: ask GitHub for a just-in-time runner configuration instead of a
#           registration token; needs labels; the configuration is good for one runner start
#           only), PS_RUNNER_GROUP_ID (JIT only, default 1: the default runner group)
#   GitLab: PS_GITLAB_URL (required), PS_GITLAB_EXECUTOR (default shell)
PS_HOOK_NAME=runner_register
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
here=$(dirname "$0")
kind=${1:-}
case "$kind" in
    github | gitlab) ;;
    *)
        ps_log "usage: runner_register.sh github|gitlab"
        exit 2
        ;;
esac
if [ -z "${PS_TOKEN_PARAMETER:-}" ]; then
    ps_log "PS_TOKEN_PARAMETER is required: the SSM parameter that holds the $kind secret"
    exit 2
fi
ps_require aws
ps_require curl

instance=${PARKINGSPOT_INSTANCE_ID:-}
if [ -z "$instance" ]; then
    imds=${PS_IMDS_URL:-http://169.254.169.254}
    imds_token=$(curl -sf -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$imds/latest/api/token")
    instance=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $imds_token" "$imds/latest/meta-data/instance-id")
fi
if [ -z "$instance" ]; then
    ps_log "no instance id (PARKINGSPOT_INSTANCE_ID empty, IMDS unreachable)"
    exit 2
fi

secret=$(aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ssm get-parameter --name "$PS_TOKEN_PARAMETER" \
    --with-decryption --query Parameter.Value --output text) || secret=
if [ -z "$secret" ]; then
    ps_log "could not read the SSM parameter $PS_TOKEN_PARAMETER"
    exit 1
fi

labels=${PS_RUNNER_LABELS:-}
if [ -n "${PS_ON_DEMAND_LABELS:-}" ]; then
    lane=$(aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 describe-tags --filters \
        "Name=resource-id,Values=$instance" "Name=key,Values=parkingspot:lane" \
        --query "Tags[0].Value" --output text) || lane=
    if [ "$lane" = on-demand ]; then
        labels=${labels:+$labels,}$PS_ON_DEMAND_LABELS
        ps_log "on-demand lane: adding labels $PS_ON_DEMAND_LABELS"
    fi
fi

if [ "$kind" = gitlab ]; then
    ps_require gitlab-runner
    if [ -z "${PS_GITLAB_URL:-}" ]; then
        ps_log "PS_GITLAB_URL is required"
        exit 2
    fi
    executor=${PS_GITLAB_EXECUTOR:-shell}
    set -- register --non-interactive --url "$PS_GITLAB_URL" --name "$instance" --executor "$executor"
    if [ "$executor" = shell ]; then
        set -- "$@" --pre-build-script "$here/runner_busy.sh busy" --post-build-script "$here/runner_busy.sh idle"
    fi
    case "$secret" in
        glrt-*) CI_SERVER_TOKEN=$secret gitlab-runner "$@" ;;
        *) REGISTRATION_TOKEN=$secret gitlab-runner "$@" --tag-list "$labels" ;;
    esac || {
        ps_log "gitlab-runner register failed"
        exit 1
    }
    ps_log "registered GitLab runner $instance"
    "$here/runner_busy.sh" idle
    systemctl start gitlab-runner
    exit $?
fi

if [ -z "${PS_GITHUB_URL:-}" ]; then
    ps_log "PS_GITHUB_URL is required"
    exit 2
fi
url=${PS_GITHUB_URL%/}
path=${url#https://*/}
case "$path" in
    */*) endpoint="repos/$path" ;;
    *) endpoint="orgs/$path" ;;
esac
api=${PS_GITHUB_API_URL:-https://api.github.com}
dir=${PS_RUNNER_DIR:-/opt/actions-runner}
user=${PS_RUNNER_USER:-runner}
# The token goes to curl on its standard input (a header file), not on its command line.
if [ "${PS_GITHUB_JIT:-false}" = true ]; then
    # A just-in-time configuration: GitHub creates the ephemeral runner itself and hands back a
    # one-use configuration; no registration token and no config.sh.
    case "$labels" in
        "" | *[!A-Za-z0-9._:,-]* | ,* | *, | *,,*)
            ps_log "PS_RUNNER_LABELS: a JIT runner needs 1 or more comma-separated labels of letters, digits, . _ : -"
            exit 2
            ;;
    esac
    group=${PS_RUNNER_GROUP_ID:-1}
    case "$group" in
        "" | *[!0-9]*)
            ps_log "PS_RUNNER_GROUP_ID must be a number, got '$group'"
            exit 2
            ;;
    esac
    json_labels=$(printf '%s' "$labels" | sed 's/[^,][^,]*/"&"/g')
    body=$(printf '{"name":"%s","runner_group_id":%s,"labels":[%s],"work_folder":"_work"}' \
        "$instance" "$group" "$json_labels")
    answer=$(printf 'Authorization: Bearer %s\n' "$secret" | curl -sf -m 20 -X POST -H @- \
        -H "Accept: application/vnd.github+json" -H "Content-Type: application/json" --data "$body" \
        "$api/$endpoint/actions/runners/generate-jitconfig") || answer=
    secret=
    jit=$(printf '%s' "$answer" | sed -n 's/.*"encoded_jit_config"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    if [ -z "$jit" ]; then
        ps_log "GitHub refused a JIT runner configuration for $endpoint"
        exit 1
    fi
    set -- --jitconfig "$jit"
    jit=
    registered="JIT-configured ephemeral GitHub runner $instance"
else
    answer=$(printf 'Authorization: Bearer %s\n' "$secret" | curl -sf -m 20 -X POST -H @- \
        -H "Accept: application/vnd.github+json" "$api/$endpoint/actions/runners/registration-token") || answer=
    secret=
    registration=$(printf '%s' "$answer" | sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    if [ -z "$registration" ]; then
        ps_log "GitHub refused a registration token for $endpoint"
        exit 1
    fi
    if ! runuser -u "$user" -- "$dir/config.sh" --unattended --url "$url" --token "$registration" \
        --name "$instance" --labels "$labels" --ephemeral --disableupdate --replace; then
        ps_log "config.sh failed"
        exit 1
    fi
    set --
    registered="registered ephemeral GitHub runner $instance"
fi
# The job hooks keep parkingspot:busy current (see runner_busy.sh).
printf 'ACTIONS_RUNNER_HOOK_JOB_STARTED=%s\nACTIONS_RUNNER_HOOK_JOB_COMPLETED=%s\n' \
    "$here/github_job_started.sh" "$here/github_job_completed.sh" >>"$dir/.env"
ps_log "$registered"
"$here/runner_busy.sh" idle
runuser -u "$user" -- "$dir/run.sh" "$@"
status=$?
ps_log "the ephemeral runner exited ($status)"
if [ "${PS_SHUTDOWN_AFTER_JOB:-false}" = true ]; then
    shutdown -h now
fi
exit $status
