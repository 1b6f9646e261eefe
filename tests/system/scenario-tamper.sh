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
# Also vm5, a Proxmox VE VM as qemu-server starts it (argv[0] /usr/bin/kvm, VMID 105,
# -pidfile /var/run/qemu-server/105.pid, -daemonize, its config in /etc/pve; Proxmox itself
# does not install here): restored by host-upgrade-restore-proxmox.service into
# qemu.slice/105.scope before a stand-in pve-guests.service, a oneshot that cold-starts
# VM 105 (onboot) unless its pidfile names a live QEMU, as pve-manager's startall does:
# it must find it running and start nothing.

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-tamper.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

PVE_RUN=/var/run/qemu-server
PVE_START=$VMS_VMDIR/vm5.start
PVE_GUESTS_LOG=$VMS_LOGDIR/pve-guests.log
# vm5: what qm start does (qemu-server's command line shape, i440fx, upstream QEMU has no -id),
# its RAM on the DAX mount through the args: line an operator adds (docs/design/proxmox.md §7).
pve_setup_start() {
	mkdir -p /etc/pve/qemu-server
	printf 'memory: 32\nname: vm5\nonboot: 1\nargs: -object memory-backend-file,id=hu-ram,size=32M,mem-path=%s,share=on -machine memory-backend=hu-ram\n' \
		"$(vm_ram vm5)" > /etc/pve/qemu-server/105.conf
	# qemu-server's tmpfiles.d makes /run/qemu-server at every boot
	echo "d /run/qemu-server 0755 root root -" > /etc/tmpfiles.d/hu-pve.conf
	systemd-tmpfiles --create /etc/tmpfiles.d/hu-pve.conf
	cat > "$PVE_START" <<-EOS
	#!/bin/bash
	exec -a /usr/bin/kvm qemu-system-x86_64 -name vm5,debug-threads=on -no-shutdown \\
	  -chardev socket,id=qmp,path=$PVE_RUN/105.qmp,server=on,wait=off -mon chardev=qmp,mode=control \\
	  -chardev socket,id=qmp-event,path=/var/run/qmeventd.sock,reconnect-ms=5000 -mon chardev=qmp-event,mode=control \\
	  -pidfile $PVE_RUN/105.pid -daemonize -smp 1,sockets=1,cores=1,maxcpus=1 -nodefaults -display none \\
	  -machine pc,accel=tcg -cpu qemu64 -kernel $VMS_TICK -append vm5 -m 32M \\
	  -chardev file,id=ser0,path=$(vm_serial vm5),append=on -serial chardev:ser0 \\
	  -object memory-backend-file,id=hu-ram,size=32M,mem-path=$(vm_ram vm5),share=on -machine memory-backend=hu-ram
	EOS
	chmod 0755 "$PVE_START"
	# The stand-in pve-guests.service: startall's check_running, then qm start.
	cat > /usr/local/bin/hu-pve-guests <<-EOS
	#!/bin/bash
	pid=\$(head -n1 $PVE_RUN/105.pid 2>/dev/null)
	if [ -n "\$pid" ] && [ "\$(tr '\\0' ' ' < /proc/\$pid/cmdline 2>/dev/null | cut -d' ' -f1)" = /usr/bin/kvm ] &&
		tr '\\0' '\\n' < /proc/\$pid/cmdline | grep -qx -- $PVE_RUN/105.pid; then
		echo "105 running as pid \$pid: skipped" >> $PVE_GUESTS_LOG
	else
		echo "105 not running: qm start 105" >> $PVE_GUESTS_LOG
		$PVE_START && date +%s > $PVE_RUN/105.cleanup
	fi
	EOS
	chmod 0755 /usr/local/bin/hu-pve-guests
	cat > /etc/systemd/system/pve-guests.service <<-EOS
	[Unit]
	Description=stand-in for Proxmox VE guests (startall of the onboot VMs)
	After=network.target
	[Service]
	Type=oneshot
	RemainAfterExit=yes
	ExecStart=/usr/local/bin/hu-pve-guests
	KillMode=process
	[Install]
	WantedBy=multi-user.target
	EOS
	systemctl daemon-reload
	systemctl enable pve-guests.service > /dev/null 2>&1
	"$PVE_START"
	date +%s > "$PVE_RUN/105.cleanup"
	hu_wait_for 180 "vm5 prints BOOT" grep -q '^BOOT' "$(vm_serial vm5)"
	hu_wait_for 180 "vm5 ticks" vm_ticks_at_least vm5 4
	hu_result "vm5: pid $(cat "$PVE_RUN/105.pid"), $(grep -m1 '^BOOT' "$(vm_serial vm5)")"
}
pve_pid() { head -n1 "$PVE_RUN/105.pid" 2>/dev/null || true; }
pve_qemu_count() { { pgrep -c -f -- "-pidfile $PVE_RUN/105.pid" || true; } | head -n1; }

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	vms_pmem_setup
	hu_phase start-vms
	vms_start
	hu_phase ticking
	vms_wait_ticking 4
	hu_phase start-proxmox-vm
	pve_setup_start
	hu_phase plan
	hu_result "plan: $({ host-upgrade plan --json --state-dir "$VMS_STATE_DIR" 2>/dev/null || true; } | hu_json_compact)"
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

	hu_phase proxmox
	hu_wait_for 300 "host-upgrade-restore-proxmox.service finishes" \
		restore_unit_done host-upgrade-restore-proxmox.service || true
	hu_wait_for 300 "pve-guests.service (stand-in) finishes" restore_unit_done pve-guests.service || true
	hu_result "host-upgrade-restore-proxmox.service: $(systemctl show host-upgrade-restore-proxmox.service -p ActiveState -p Result -p ExecMainStatus -p ConditionResult | tr '\n' ' ')"
	hu_result "pve-guests (stand-in): $(tr '\n' '|' < "$PVE_GUESTS_LOG" 2>/dev/null || true)"
	vms_status
	hu_check "vm5 (Proxmox VM 105) restored" vm_status_is vm5 restored
	hu_check "the Proxmox restore finished before pve-guests started" test \
		"$(unit_mono host-upgrade-restore-proxmox.service ExecMainExitTimestampMonotonic)" -le \
		"$(unit_mono pve-guests.service ExecMainStartTimestampMonotonic)"
	hu_check "pve-guests found VM 105 running and started nothing" grep -q '^105 running as pid' "$PVE_GUESTS_LOG"
	hu_check "pve-guests did not cold-start VM 105" test "$(grep -c 'qm start' "$PVE_GUESTS_LOG" 2>/dev/null || true)" = 0
	hu_check "one QEMU for VM 105" test "$(pve_qemu_count)" = 1
	pid=$(pve_pid)
	hu_check "vm5: argv[0] /usr/bin/kvm, as qm started it" \
		test "$({ tr '\0' '\n' < "/proc/${pid:-0}/cmdline" 2>/dev/null || true; } | head -n1)" = /usr/bin/kvm
	hu_check "vm5: its QEMU (pid ${pid:-none}) is in qemu.slice/105.scope" \
		test "$(cut -d: -f3 "/proc/${pid:-0}/cgroup" 2>/dev/null || true)" = /qemu.slice/105.scope
	hu_check "vm5: qm's cleanup flag is back" test -s "$PVE_RUN/105.cleanup"
	ck=$(serial_at before vm5 3)
	hu_wait_for 120 "vm5 ticks on" vm_ticks_at_least vm5 $((${ck:-0} + 4)) || true
	hu_check "vm5: counter continued (tick ${ck:-?} at the checkpoint, now $(vm_tick vm5))" vm_ticks_at_least vm5 $((${ck:-0} + 4))
	hu_check "vm5: no cold boot (one BOOT line)" test "$(vm_boots vm5)" = 1

	hu_phase restore-again
	vm3_pid=$(vm_pid_by_name vm3)
	vm5_pid=$(pve_pid)
	rc=0
	host-upgrade restore --state-dir "$VMS_STATE_DIR" || rc=$?
	hu_result "second restore: exit $rc"
	hu_check "second restore still reports the refused VMs (exit 1)" test "$rc" = 1
	vms_status
	hu_check "vm1 still refused" vm_status_is vm1 failed
	hu_check "vm2 still refused" vm_status_is vm2 failed
	hu_check "vm3 still restored, same QEMU (pid $vm3_pid)" test -n "$vm3_pid" -a "$(vm_pid_by_name vm3)" = "$vm3_pid"
	hu_check "vm3 runs exactly once" test "$(vm_qemu_count vm3)" = 1
	hu_check "vm5 still restored, same QEMU (pid $vm5_pid), once" test -n "$vm5_pid" -a "$(pve_pid)" = "$vm5_pid" -a "$(pve_qemu_count)" = 1
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
