#!/bin/bash
# /hu/boot.sh — runs inside the test host at every boot (hu-scenario.service →
# /usr/local/lib/hu-test/runner → here, HU_BOOT=1, 2, ...). Sets up the output
# (the scenario's log goes to /dev/ttyS1, which run-host.sh timestamps, and to
# /hu/results/bootN.log), loads the helpers and runs /hu/scenario.sh.
# A scenario ends each boot with hu_kexec, hu_pass or hu_fail; an error on any
# unchecked command is a failure (set -e + ERR trap).
set -u
if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ]; then
	echo "boot.sh runs inside the test host only (tests/system/run-host.sh)" >&2
	exit 2
fi
export HU=/hu HU_RESULTS=/hu/results HU_STATE=/var/lib/hu-test
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$HU_RESULTS"
stty -F /dev/ttyS1 115200 raw -echo 2>/dev/null || true
exec > >(tee -a "$HU_RESULTS/boot$HU_BOOT.log" > /dev/ttyS1) 2>&1
exec 3>&1
# shellcheck source=/dev/null
. "$HU/env"
# shellcheck source=lib.sh
. "$HU/lib.sh"
hu_event "scenario-start boot=$HU_BOOT kernel=$(uname -r) uptime=$(hu_uptime)"
hu_result "boot $HU_BOOT kernel $(uname -r) systemd-uptime $(hu_uptime)"
set -eE -o pipefail
trap 'hu_fail "boot $HU_BOOT: line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR
# shellcheck source=/dev/null
. "$HU/scenario.sh"
hu_fail "scenario returned in boot $HU_BOOT without hu_pass, hu_fail or hu_kexec"
