#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Cordon this node and drain it within the deadline.
# Settings: PS_NODE_NAME (default: hostname), PS_KUBECONFIG (optional),
# PS_DRAIN_ARGS (default: --ignore-daemonsets --delete-emptydir-data --force).
# Undo (notice withdrawn or completed): uncordon the node.
PS_HOOK_NAME=kubectl_drain
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
ps_require kubectl
node=${PS_NODE_NAME:-$(hostname)}
if [ -n "${PS_KUBECONFIG:-}" ]; then
    KUBECONFIG=$PS_KUBECONFIG
    export KUBECONFIG
fi
if ps_is_undo; then
    kubectl uncordon "$node" || exit 1
    ps_log "uncordoned $node (notice $PARKINGSPOT_LIFECYCLE)"
    exit 0
fi
left=$(($(ps_end_time) - $(ps_now)))
[ "$left" -lt 1 ] && left=1
kubectl cordon "$node" || exit 1
# Word splitting of PS_DRAIN_ARGS is intended: it holds several options.
# shellcheck disable=SC2086
kubectl drain "$node" ${PS_DRAIN_ARGS:---ignore-daemonsets --delete-emptydir-data --force} --timeout="${left}s"
