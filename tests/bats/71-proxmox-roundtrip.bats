#!/usr/bin/env bats
# Proxmox VE guests (#17): what host-upgrade's quit looks like to qmeventd, and that the
# `qm cleanup` it runs then tears nothing down. The qmeventd stand-in (tests/fake/qmeventd.py)
# and its fake `qm cleanup` (tests/fake/qm-cleanup) act as Proxmox's, learned from its source;
# the QEMUs are real. A control test shows the same fake cleanup tearing the VM's volume,
# sockets and post-stop hook down when a QEMU quits without host-upgrade's handling.

load helpers
load proxmox

# run --no-reboot of Proxmox VM 100 (started as $1): counter continues, argv[0] and -pidfile kept,
# and the qm cleanup qmeventd runs for the quit tears nothing down.
pve_roundtrip_clean() {
	local v=$1 old new t run=$PVE/var/run/qemu-server
	vm_wait_tick "$v" 2 300 # a q35 guest with 18 more devices boots slowly under TCG
	old=$(pve_pid 100)
	pve_wait_log "\"greeting\", \"pid\": $old"
	t=$(vm_last_tick "$v")
	run --separate-stderr "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm "$v"
	echo "$output" "$stderr"
	[ "$status" -eq 0 ]
	new=$(pve_pid 100)
	[ "$new" != "$old" ]
	# The pidfile names the restored QEMU: argv[0] and -pidfile as qm wrote them.
	[ "$(pve_argv 100 | head -n1)" = /usr/bin/kvm ]
	pve_argv 100 | grep -qx -- "$run/100.pid"
	[ "$(pve_argv 100 | grep -c -x -- -pidfile)" -eq 1 ]
	vm_wait_tick "$v" $((t + 3)) 120
	[ "$(vm_boot_count "$v")" -eq 1 ]
	# qmeventd saw our quit: SHUTDOWN guest:false, then the close, and ran qm cleanup 100 1 0.
	pve_log_has '"event": "SHUTDOWN"'
	pve_log_has '"guest": false, "reason": "host-qmp-quit"'
	pve_log_has '"args": ["100", "1", "0"]'
	# That cleanup waited for qemu-server's config lock, and then did nothing.
	pve_wait_log '"what":"exit"' 90 "$QM_LOG"
	cat "$QM_LOG"
	pve_log_has '"what":"locked"' "$QM_LOG"
	run ! pve_log_has '"what":"teardown"' "$QM_LOG"
	run ! pve_log_has '"what":"volume deactivated"' "$QM_LOG"
	[ -e "$PVE/images/100/vm-100-disk-0.raw" ]
	[ ! -e "$PVE/hookscript.log" ]
	[ -e "$PVE/taps/tap100i0" ]
	[ -S "$run/100.qmp" ]
	[ "$(pve_pid 100)" = "$new" ]
	run ! pve_log_has '"what":"restart"' "$QM_LOG"
	# The cleanup flag is back for qm stop, nothing left in the state dir.
	[ -s "$run/100.cleanup" ]
	[ ! -e "$S/proxmox-100.cleanup" ]
	# The restored QEMU connected to qmeventd again (QEMU retries every 5 s).
	pve_wait_log "\"greeting\", \"pid\": $new" 60
	# And Proxmox's config lock is free again.
	flock -n "$PVE/var/lock/qemu-server/lock-100.conf" true
	[ "$(json_get "$(cat "$S/manifest.json")" 'j["vms"][0]["proxmox"]["vmid"]')" = 100 ]
}

@test "run --no-reboot: counter continues, argv[0] and -pidfile kept, qm cleanup tears nothing down" {
	pve_start 100 p71a-$HU_RUN_ID
	pve_roundtrip_clean p71a-$HU_RUN_ID
}

@test "a q35 guest with -readconfig of pve-q35-4.0.cfg's shape: plan has no blocker, the same round trip" {
	local v=p71c-$HU_RUN_ID
	PVE_MACHINE=q35 pve_start 100 "$v"
	vm_wait_tick "$v" 2 300
	# The 18 devices the config file defines are no hot-plug blockers.
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	echo "$output" "$stderr"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$v" manager)" = proxmox ]
	[ "$(plan_vm "$output" "$v" blockers)" = '[]' ]
	[ "$(plan_vm "$output" "$v" save)" = in-place ]
	pve_roundtrip_clean "$v"
	pve_argv 100 | grep -qx -- -readconfig
	# The config file's digest was recorded and checked by the restore.
	[ "$(json_get "$(cat "$S/manifest.json")" 'any(c["path"].endswith("/pve-q35-4.0.cfg") and len(c["sha256"] or "") == 64 for c in j["vms"][0]["readconfig"])')" = true ]
}

@test "control: a QEMU that quits without host-upgrade's handling is torn down by the fake qm cleanup" {
	local v=p71b-$HU_RUN_ID pid run=$PVE/var/run/qemu-server
	pve_start 102 "$v"
	vm_wait_tick "$v" 2 120
	pid=$(pve_pid 102)
	pve_wait_log "\"greeting\", \"pid\": $pid"
	qmp "$run/102.qmp" quit >/dev/null || true
	pve_wait_log '"what":"exit"' 90 "$QM_LOG"
	cat "$QM_LOG"
	pve_log_has '"args": ["102", "1", "0"]'
	pve_log_has '"what":"volume deactivated"' "$QM_LOG"
	pve_log_has '"what":"teardown"' "$QM_LOG"
	[ ! -e "$PVE/images/102/vm-102-disk-0.raw" ]
	[ -e "$PVE/images/102/vm-102-disk-0.deactivated" ]
	[ "$(cat "$PVE/hookscript.log")" = "post-stop 102" ]
	[ ! -e "$run/102.cleanup" ]
	# A clean quit (CLEAN=1) leaves the taps to QEMU's own downscript.
	[ -e "$PVE/taps/tap102i0" ]
}
