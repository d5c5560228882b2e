#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Deregister this instance from ELBv2 target groups (the AWS CLI signs the requests with the
# instance profile's credentials).
# Settings: PS_TARGET_GROUP_ARNS (space separated, required), PS_TARGET_PORT (optional),
# PS_AWS_REGION (optional). Undo (notice withdrawn or completed): register the instance again.
PS_HOOK_NAME=elb_deregister
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
ps_require aws
ps_require_instance_id
if [ -z "${PS_TARGET_GROUP_ARNS:-}" ]; then
    ps_log "PS_TARGET_GROUP_ARNS is empty; nothing to deregister"
    exit 2
fi
target="Id=$PARKINGSPOT_INSTANCE_ID"
[ -n "${PS_TARGET_PORT:-}" ] && target="$target,Port=$PS_TARGET_PORT"
verb=deregister
ps_is_undo && verb=register
status=0
for arn in $PS_TARGET_GROUP_ARNS; do
    if aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} elbv2 "$verb-targets" --target-group-arn "$arn" --targets "$target"; then
        ps_log "${verb}ed $PARKINGSPOT_INSTANCE_ID with $arn"
    else
        ps_log "could not $verb with $arn"
        status=1
    fi
done
exit $status
