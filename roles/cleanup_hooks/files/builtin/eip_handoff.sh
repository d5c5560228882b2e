#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Hand an Elastic IP held by this instance to a standby instance (or just release the
# association), so the address keeps serving after the interruption.
# Settings: PS_EIP_ALLOCATION_ID (required), PS_EIP_STANDBY_INSTANCE_ID (optional), PS_AWS_REGION.
PS_HOOK_NAME=eip_handoff
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
ps_require aws
ps_require_instance_id
if [ -z "${PS_EIP_ALLOCATION_ID:-}" ]; then
    ps_log "PS_EIP_ALLOCATION_ID is empty"
    exit 2
fi
holder=$(aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 describe-addresses --allocation-ids "$PS_EIP_ALLOCATION_ID" \
    --query 'Addresses[0].[InstanceId,AssociationId]' --output text) || exit 1
holder_instance=$(echo "$holder" | awk '{print $1}')
association=$(echo "$holder" | awk '{print $2}')
if [ "$holder_instance" != "$PARKINGSPOT_INSTANCE_ID" ]; then
    ps_log "$PS_EIP_ALLOCATION_ID is held by '$holder_instance', not this instance; leaving it"
    exit 0
fi
if [ -n "${PS_EIP_STANDBY_INSTANCE_ID:-}" ]; then
    aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 associate-address --allocation-id "$PS_EIP_ALLOCATION_ID" \
        --instance-id "$PS_EIP_STANDBY_INSTANCE_ID" --allow-reassociation || exit 1
    ps_log "moved $PS_EIP_ALLOCATION_ID to $PS_EIP_STANDBY_INSTANCE_ID"
else
    aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 disassociate-address --association-id "$association" || exit 1
    ps_log "released $PS_EIP_ALLOCATION_ID from this instance"
fi
