#!/bin/bash
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-wipe.sh
#
# The pmem is lost between checkpoint and restore: `host-upgrade run` checkpoints
# and asks systemd for kexec.target, but the host is restarted cold instead. In
# the shutdown after the checkpoint the harness takes its RAM digests and resets
# the host (sysrq b, in-host/vms.sh ram-hook "power-cycle"); run-host.sh sees the
# "HU-EVENT: power-cycle" line and starts the outer QEMU again as a new process:
# the test host's RAM, its legacy pmem (memmap=256M!1G) included, starts zeroed,
# as on a machine whose memory lost power. It boots its default kernel (6.1)
# with the default command line: no hu.restore=1.
# boot 2 (cold): the pmem really is wiped (no fsdax namespace, zeros, the DAX
# filesystem is gone); the restore unit did not run (no marker); the state dir
# still says checkpointed; an operator's `host-upgrade restore` refuses every VM
# with a reason, starts no QEMU, and status --json shows them failed.

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-wipe.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
# After the cold boot the filesystem's UUID never shows up: its mount (and the
# restore unit ordered after it) would wait out the device timeout.
# shellcheck disable=SC2034 # read by vms.sh
VMS_FSTAB_OPTS=dax,nofail,x-systemd.device-timeout=15s,x-systemd.before=host-upgrade-restore.service
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

pmem_head_zero() { [ "$(head -c 1048576 /dev/pmem0 | tr -d '\0' | wc -c)" = 0 ]; }
# the namespace made in boot 1 (its uuid lives in its info block, in the pmem) is gone
namespace_gone() { local u; u=$(cat "$HU_STATE/ns-uuid" 2>/dev/null); [ -n "$u" ] && ! ndctl list -N 2>/dev/null | grep -q "$u"; }
error_names_medium() {
	local e
	e=$(vm_status_error "$1")
	case "$e" in *pmem0*|*"RAM in"*) return 0 ;; esac
	return 1
}
# vms.sh's, but the serial log may have fewer lines than the hook counted at the shutdown:
# the power cycle (sysrq b) comes with no sync after it, and the file system loses the last
# lines the guest wrote (seen: 58 counted, 57 after the cycle). More lines would be a guest
# that ran again.
vm_stayed_down() {
	local n
	n=$(serial_at before "$1" 2)
	[ -z "$(vm_pid_by_name "$1")" ] && [ -n "$n" ] && [ "$(vm_lines "$1")" -le "$n" ]
}

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	vms_pmem_setup
	hu_phase start-vms
	vms_start
	hu_phase ticking
	vms_wait_ticking 4
	vms_install_ram_hooks power-cycle
	hu_phase run
	vms_run_upgrade
	;;
2)
	hu_phase verify
	hu_result "cmdline $(cat /proc/cmdline)"
	hu_check "a cold boot of the default kernel ($HU_OLD_KVER)" test "$(uname -r)" = "$HU_OLD_KVER"
	hu_check "no restore marker on the command line" test -z "$(grep -ow 'hu.restore=1' /proc/cmdline || true)"
	hu_result "ram-hook at the shutdown: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-before.log 2>/dev/null)"
	hu_check "the harness digested every RAM file before the reset" test "$(wc -l < /var/lib/hu-test/ram-before.md5 2>/dev/null || echo 0)" = 3

	# The wipe really happened (a new outer QEMU process: zeroed RAM).
	pmem_ready || modprobe -a libnvdimm nd_pmem nd_e820 2>/dev/null || true
	hu_wait_for 30 "/dev/pmem0" pmem_ready || true
	hu_result "ndctl list -N after the cold boot: $(ndctl list -N 2>&1 | tr -d ' \n' | cut -c1-200)"
	hu_check "the fsdax namespace of boot 1 ($(cat "$HU_STATE/ns-uuid" 2>/dev/null)) is gone (its info block was in the pmem)" namespace_gone
	hu_check "the first MiB of /dev/pmem0 reads as zeros" pmem_head_zero
	hu_check "$VMS_MNT is not mounted (the filesystem is gone)" test -z "$(findmnt -n "$VMS_MNT" || true)"

	vms_wait_restore_unit
	hu_check "the restore unit did not run (no hu.restore=1)" \
		test "$(systemctl show host-upgrade-restore.service -p ConditionResult --value)" = no
	hu_check "no early-boot report (the initrd side did not run)" test ! -e /run/host-upgrade/early-boot.json
	vms_status
	hu_check "the state dir still has the checkpoint (phase checkpointed)" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["phase"] != "checkpointed")' "$HU_RESULTS/status.json"

	hu_phase restore
	rc=0
	hu_event restore-start
	host-upgrade restore --state-dir "$VMS_STATE_DIR" || rc=$?
	hu_event restore-done
	hu_result "restore: exit $rc"
	hu_check "restore refuses (exit 1)" test "$rc" = 1
	vms_status
	hu_check "status phase is restore-failed" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["phase"] != "restore-failed")' "$HU_RESULTS/status.json"
	sleep 2
	for vm in $VMS; do
		hu_result "$vm: $(vm_status_error "$vm")"
		hu_check "$vm: refused (failed)" vm_status_is "$vm" failed
		hu_check "$vm: the reason names the lost RAM medium" error_names_medium "$vm"
		hu_check "$vm: no QEMU, its guest printed nothing since the checkpoint" vm_stayed_down "$vm"
	done
	hu_check "no QEMU runs on the host" test "$(vms_qemu_count)" = 0
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
