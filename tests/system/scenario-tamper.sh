#!/bin/bash
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-tamper.sh
#
# The real path (`host-upgrade run`, kexec, the restore unit), but between the
# checkpoint and the restore — in the shutdown after the checkpoint, once the
# harness has taken its RAM digests (in-host/vms.sh, ram-hook "tamper"):
#   vm2's RAM file is zeroed in place on the pmem (its RAM "did not survive"),
#   vm1's disk image is written to (512 bytes; size kept, mtime changes).
# The test host has no D-Bus system bus in either boot (dbus masked before run):
# run and the restore reach systemd over its private socket.
# boot 2 (after the kexec; the restore unit ran by itself): vm1 and vm2 are
# refused with a reason (disk changed; RAM differs), have no QEMU, print nothing
# more; vm3 is restored and ticks on; status --json says so; a second
# `host-upgrade restore` changes nothing (still refused, vm3 not started twice).

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-tamper.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	vms_pmem_setup
	hu_phase start-vms
	vms_start
	hu_phase ticking
	vms_wait_ticking 4
	vms_install_ram_hooks tamper
	# The host as a minimal install has it: no D-Bus system bus (no dbus package). run
	# must reach systemd over PID 1's private socket, as systemctl does, and so must the
	# restore (the restored QEMUs' scopes) in the next boot, where dbus stays masked.
	hu_phase no-dbus
	systemctl mask --now dbus.socket dbus.service > /dev/null 2>&1 || true
	rm -f /run/dbus/system_bus_socket
	hu_check "no D-Bus system bus (dbus stopped and masked)" test ! -S /run/dbus/system_bus_socket
	hu_phase run
	vms_run_upgrade
	;;
2)
	hu_phase verify
	vms_check_kexec_boot
	hu_result "ram-hook at the shutdown: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-before.log 2>/dev/null)"
	vms_wait_restore_unit
	hu_check "the restore unit ran" test "$(systemctl show host-upgrade-restore.service -p ConditionResult --value)" = yes
	hu_check "the restore unit reports the refused VMs (exit status 1)" \
		test "$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 1
	vms_status
	hu_check "status phase is restore-failed" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["phase"] != "restore-failed")' "$HU_RESULTS/status.json"
	hu_result "vm1: $(vm_status_error vm1)"
	hu_result "vm2: $(vm_status_error vm2)"
	hu_check "vm1 (disk written) refused: failed" vm_status_is vm1 failed
	hu_check "vm1: the reason names the disk" error_mentions vm1 "disk" "vm1-disk.raw" "changed"
	hu_check "vm2 (RAM zeroed) refused: failed" vm_status_is vm2 failed
	hu_check "vm2: the reason names its RAM" error_mentions vm2 "RAM" "vm2.ram" "did not survive"
	hu_check "vm3 restored, with a downtime" vm_status_is vm3 restored

	ck=$(serial_at before vm3 3)
	hu_wait_for 120 "vm3 ticks on past $((${ck:-0} + 4))" vm_ticks_at_least vm3 $((${ck:-0} + 4)) || true
	hu_check "vm3: counter continued (tick ${ck:-?} at the checkpoint, now $(vm_tick vm3))" vm_ticks_at_least vm3 $((${ck:-0} + 4))
	hu_check "vm3: no cold boot (one BOOT line)" test "$(vm_boots vm3)" = 1
	hu_check "vm3: ticks consecutive" vm_ticks_consecutive vm3
	hu_check "no D-Bus system bus in this boot either" test ! -S /run/dbus/system_bus_socket
	pid=$(vm_pid_by_name vm3)
	hu_check "vm3: its QEMU (pid ${pid:-none}) got its scope from systemd over the private socket" \
		test "$(cut -d: -f3 "/proc/${pid:-0}/cgroup" 2>/dev/null)" = "/machine.slice/host-upgrade-vm-vm3-$pid.scope"
	for vm in vm1 vm2; do
		hu_check "$vm: no QEMU runs it and its guest printed nothing since the checkpoint" vm_stayed_down "$vm"
	done

	# The harness's own view of the RAM: vm2's changed (it was zeroed), the others not.
	for vm in $VMS; do
		hu_result "$vm: RAM md5 at shutdown $(ram_digest before "$(vm_ram "$vm")"), before restore $(ram_digest after "$(vm_ram "$vm")")"
	done
	hu_check "harness digest: vm2's RAM differs (the tampering took)" \
		test -n "$(ram_digest after "$(vm_ram vm2)")" -a "$(ram_digest before "$(vm_ram vm2)")" != "$(ram_digest after "$(vm_ram vm2)")"
	for vm in vm1 vm3; do
		hu_check "harness digest: $vm's RAM unchanged" \
			test -n "$(ram_digest before "$(vm_ram "$vm")")" -a "$(ram_digest before "$(vm_ram "$vm")")" = "$(ram_digest after "$(vm_ram "$vm")")"
	done

	hu_phase restore-again
	vm3_pid=$(vm_pid_by_name vm3)
	rc=0
	host-upgrade restore --state-dir "$VMS_STATE_DIR" || rc=$?
	hu_result "second restore: exit $rc"
	hu_check "second restore still reports the refused VMs (exit 1)" test "$rc" = 1
	vms_status
	hu_check "vm1 still refused" vm_status_is vm1 failed
	hu_check "vm2 still refused" vm_status_is vm2 failed
	hu_check "vm3 still restored, same QEMU (pid $vm3_pid)" test -n "$vm3_pid" -a "$(vm_pid_by_name vm3)" = "$vm3_pid"
	hu_check "vm3 runs exactly once" test "$(vm_qemu_count vm3)" = 1
	for vm in vm1 vm2; do
		hu_check "$vm: still no QEMU, nothing printed" vm_stayed_down "$vm"
	done
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
