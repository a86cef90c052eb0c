#!/bin/bash
# Demo: boot a real TCG guest with the real qemu-ga, set alice's password,
# run `uname -a` in it, freeze and thaw its filesystem, print a short report
# and tear everything down. Run as root on Debian 12; on a fresh machine it
# installs what it needs first (see tools/bootstrap.sh).
set -euo pipefail

source "$(dirname "$0")/bootstrap.sh"

cleanup() {
    local rc=$?
    "$lab_cli" down >/dev/null || rc=1
    exit $rc
}
trap cleanup EXIT

"$lab_cli" demo
