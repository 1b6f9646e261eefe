#!/bin/bash
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-run.sh
#
# The real thing: `host-upgrade run` upgrades the test host's kernel with live VMs.
# boot 1 (6.1): legacy pmem -> fsdax namespace -> ext4 in /etc/fstab, mounted -o dax;
#   three inner VMs (tick.elf) with RAM files on it, in different argv shapes; they
#   tick; the harness's RAM-digest units are put in place (in-host/vms.sh);
#   `host-upgrade run --kernel /boot/vmlinuz-NEW --initrd /boot/initrd.img-NEW --yes`
#   (plan, preflight, kexec_file_load, checkpoint, kexec.target through systemd).
# boot 2 (6.12, after the kexec; nothing here starts the restore): the initrd's
#   host-upgrade-early.service and host-upgrade-restore.service have run by
#   themselves. Checks: the new kernel runs; the restore unit succeeded, after the
#   RAM's filesystem was mounted; status --json has every VM restored with a
#   downtime; every guest counter continued with no second BOOT line; the RAM
#   digests taken at the shutdown after the checkpoint and before the restore
#   match; /run/host-upgrade/early-boot.json has every medium ok.
# run-host.sh's report.py turns the stamped logs into the timings.
# Sourced by /hu/boot.sh (set -e, ERR trap, helpers from lib.sh).

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-run.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	hu_result "cmdline $(cat /proc/cmdline)"
	vms_pmem_setup

	hu_phase start-vms
	vms_start

	hu_phase ticking
	vms_wait_ticking 6
	host-upgrade plan --state-dir "$VMS_STATE_DIR" || true
	host-upgrade plan --json --state-dir "$VMS_STATE_DIR" > "$HU_RESULTS/plan.json" || true
	hu_result "plan --json: $(hu_json_compact < "$HU_RESULTS/plan.json")"
	vms_install_ram_hooks none

	hu_phase run
	vms_run_upgrade
	;;
2)
	hu_phase verify
	hu_result "cmdline $(cat /proc/cmdline)"
	hu_check "running the new kernel ($HU_NEW_KVER)" test "$(uname -r)" = "$HU_NEW_KVER"
	hu_check "booted by kexec with the restore marker (hu.restore=1)" grep -qw 'hu.restore=1' /proc/cmdline
	hu_check "the kexec kept memmap=256M!1G" grep -q 'memmap=256M!1G' /proc/cmdline
	vms_wait_restore_unit
	hu_check "host-upgrade-restore.service ran and succeeded" \
		test "$(systemctl show host-upgrade-restore.service -p Result --value)" = success -a \
		"$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 0 -a \
		"$(systemctl show host-upgrade-restore.service -p ConditionResult --value)" = yes
	vms_status
	for vm in $VMS; do
		hu_check "$vm: status restored, with a downtime" vm_status_is "$vm" restored
	done

	# The guests: counters continue, nobody booted twice.
	for vm in $VMS; do
		ck=$(serial_at before "$vm" 3)
		[ -n "$ck" ] || { hu_result "$vm: no tick recorded at the shutdown"; ck=0; }
		if ! vm_status_is "$vm" restored || ! hu_wait_for 60 "$vm ticks on past $((ck + 4))" vm_ticks_at_least "$vm" $((ck + 4)); then
			hu_result "$vm: last lines: $(tail -n 3 "$(vm_serial "$vm")" | tr '\n' '|')"
		fi
		hu_result "$vm: tick $ck at the checkpoint, now tick $(vm_tick "$vm"), BOOT lines $(vm_boots "$vm"), pid $(vm_pid_by_name "$vm")"
		hu_check "$vm: counter continued after the kexec" vm_ticks_at_least "$vm" $((ck + 4))
		hu_check "$vm: no cold boot (one BOOT line)" test "$(vm_boots "$vm")" = 1
		hu_check "$vm: ticks consecutive (no restart, no jump back)" vm_ticks_consecutive "$vm"
	done

	# The RAM, checked by the harness itself (md5 of every byte of every RAM file).
	for vm in $VMS; do
		a=$(ram_digest before "$(vm_ram "$vm")")
		b=$(ram_digest after "$(vm_ram "$vm")")
		hu_result "$vm: RAM md5 at the shutdown after the checkpoint ${a:-none}, before the restore ${b:-none}"
		hu_check "$vm: guest RAM identical after the kexec (md5 of all of $(vm_ram "$vm"))" test -n "$a" -a "$a" = "$b"
	done

	# The initrd side and the ordering of the restore unit.
	cp /run/host-upgrade/early-boot.json "$HU_RESULTS/early-boot.json" 2>/dev/null || true
	hu_result "early-boot.json: $(hu_json_compact < /run/host-upgrade/early-boot.json 2>/dev/null || echo missing)"
	hu_check "/run/host-upgrade/early-boot.json: every RAM medium back and ok" python3 - /run/host-upgrade/early-boot.json <<-'PY'
	import json, sys
	r = json.load(open(sys.argv[1]))
	media = r.get("media") or []
	sys.exit(0 if media and all(m.get("ok") is True for m in media) and "error" not in r else 1)
	PY
	mount_at=$(unit_mono "$VMS_MOUNT_UNIT" ActiveEnterTimestampMonotonic)
	restore_at=$(unit_mono host-upgrade-restore.service ExecMainStartTimestampMonotonic)
	hu_result "ordering: $VMS_MOUNT_UNIT active at ${mount_at:-?} us, restore started at ${restore_at:-?} us (monotonic)"
	hu_check "the RAM filesystem was mounted before the restore started" \
		test -n "$mount_at" -a "${mount_at:-0}" != 0 -a "${mount_at:-0}" -lt "${restore_at:-0}"
	hu_check "host-upgrade-restore.service (unit or drop-in) orders itself after $VMS_MNT" \
		sh -c "systemctl cat host-upgrade-restore.service | grep -v '^#' | grep -q -e '$VMS_MNT' -e '$VMS_MOUNT_UNIT'"
	tmpf_at=$(unit_mono systemd-tmpfiles-setup.service ActiveEnterTimestampMonotonic)
	hu_result "ordering: systemd-tmpfiles-setup.service done at ${tmpf_at:-?} us, restore started at ${restore_at:-?} us"
	hu_check "host-upgrade-restore.service is ordered after systemd-tmpfiles-setup.service" \
		sh -c "systemctl show host-upgrade-restore.service -p After --value | tr ' ' '\\n' | grep -qx systemd-tmpfiles-setup.service"
	for vm in $VMS; do
		pid=$(vm_pid_by_name "$vm")
		hu_result "$vm: restored QEMU pid ${pid:-none} in cgroup $(cut -d: -f3 "/proc/${pid:-0}/cgroup" 2>/dev/null || echo '?')"
	done
	hu_result "uname -r: $(uname -r)"
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
