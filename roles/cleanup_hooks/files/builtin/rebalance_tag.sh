#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# On a rebalance recommendation, tag this instance parkingspot:rebalance=<notice time>. A pool
# with "rebalance: replace" then launches its replacement first and drains it. Install it in the
# rebalance phase. Settings: PS_AWS_REGION.
PS_HOOK_NAME=rebalance_tag
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
ps_require aws
ps_require_instance_id
case "${PARKINGSPOT_ACTION:-rebalance}" in
    rebalance*) ;;
    *)
        ps_log "not a rebalance recommendation (${PARKINGSPOT_ACTION}): nothing to tag"
        exit 0
        ;;
esac
value=${PARKINGSPOT_NOTICE_TIME:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
aws ${PS_AWS_REGION:+--region "$PS_AWS_REGION"} ec2 create-tags --resources "$PARKINGSPOT_INSTANCE_ID" \
    --tags "Key=parkingspot:rebalance,Value=$value" || exit 1
ps_log "tagged $PARKINGSPOT_INSTANCE_ID parkingspot:rebalance=$value"
