#!/usr/bin/env bats
# Proxmox VE guests (#17): checkpoint holds qemu-server's config lock (lock-N.conf, flock) across
# the quit. When another qm operation holds it (here: the test), the checkpoint waits a bounded
# time, fails that VM, and (all or nothing) every VM keeps running as before: same QEMUs,
# cleanup flag in place, nothing for qmeventd to see.

load helpers
load proxmox

@test "config lock held by someone else: the checkpoint fails cleanly, every VM still running" {
	local v=p72a-$HU_RUN_ID w=p72b-$HU_RUN_ID pv pw tv lock=$PVE/var/lock/qemu-server/lock-104.conf
	pve_start 104 "$v"
	vm_start "$w" $(qmp_arg "$w") $(ram_file_args "$w" "$T/$w.ram")
	vm_wait_tick "$v" 2 120
	vm_wait_tick "$w" 2 120
	pv=$(pve_pid 104) pw=$(vm_pid "$w")
	pve_wait_log "\"greeting\", \"pid\": $pv"
	exec 8>>"$lock"
	flock -n 8
	run --separate-stderr "$HU_BIN" checkpoint --state-dir "$S" --vm "$v" --vm "$w" 8>&-
	exec 8>&-
	echo "$output" "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"Proxmox config lock $lock busy"* ]]
	# Both QEMUs are the ones from before, running.
	[ "$(pve_pid 104)" = "$pv" ]
	[ "$(vm_pid "$w")" = "$pw" ]
	[ "$(vm_status "$w")" = running ]
	[ "$(json_get "$(qmp "$PVE/var/run/qemu-server/104.qmp" query-status)" 'j["status"]')" = running ]
	tv=$(vm_last_tick "$v")
	vm_wait_tick "$v" $((tv + 3)) 120
	vm_wait_ticking "$w" 3 120
	# Nothing for Proxmox to clean up: no stop, the flag where qm left it.
	run ! pve_log_has '"SHUTDOWN"'
	run ! pve_log_has '"qm-cleanup"'
	[ -s "$PVE/var/run/qemu-server/104.cleanup" ]
	[ ! -e "$S/proxmox-104.cleanup" ]
	# The lock is free again for qm.
	flock -n "$lock" true
}
