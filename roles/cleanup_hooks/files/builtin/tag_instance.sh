#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Tag this instance parkingspot:interrupted=<notice time> so pools and reports can count
# interruptions. Settings: PS_TAG_KEY (default parkingspot:interrupted), PS_AWS_REGION.
PS_HOOK_NAME=tag_instance
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
ps_require aws
ps_require_instance_id
key=${PS_TAG_KEY:-parkingspot:interrupted}
value=${PARKINGSPOT_NOTICE_TIME:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 create-tags --resources "$PARKINGSPOT_INSTANCE_ID" \
    --tags "Key=$key,Value=$value" || exit 1
ps_log "tagged $PARKINGSPOT_INSTANCE_ID $key=$value"
