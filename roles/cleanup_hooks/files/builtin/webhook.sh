#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Post the notice as JSON to a webhook (Slack-compatible by default); as an undo script, post
# that the notice was withdrawn or completed. The work is done by webhook.py beside this file
# (settings are described there); this wrapper only finds a Python 3.
PS_HOOK_NAME=webhook
PS_HAS_UNDO=1
export PS_HOOK_NAME PS_HAS_UNDO
. "$(dirname "$0")/common.sh"
for python in ${PS_PYTHON:-} python3 /usr/libexec/platform-python; do
    if command -v "$python" >/dev/null 2>&1; then
        exec "$python" "$(dirname "$0")/webhook.py"
    fi
done
ps_log "no python3 found; webhook not sent"
exit 127
