#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Flush file system buffers so build caches and logs written so far reach the disks.
PS_HOOK_NAME=fs_sync
export PS_HOOK_NAME
. "$(dirname "$0")/common.sh"
ps_require sync
sync
ps_log "file systems synced"
