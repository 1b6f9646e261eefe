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

# vzdump and qm snapshot set `lock: backup` in the config under the flock and then let go of the
# flock for the long part of their job. A checkpoint that planned before that (a prompt can sit
# between plan and checkpoint) must see it once it holds the flock. Here the test holds the flock
# until the checkpoint has planned and waits on it, sets the lock, lets go.
@test "config lock set between plan and the flock: that VM fails naming it, every VM still running" {
	local v=p72c-$HU_RUN_ID w=p72d-$HU_RUN_ID pv pw cp i lock=$PVE/var/lock/qemu-server/lock-105.conf
	pve_start 105 "$v"
	vm_start "$w" $(qmp_arg "$w") $(ram_file_args "$w" "$T/$w.ram")
	vm_wait_tick "$v" 2 120
	vm_wait_tick "$w" 2 120
	pv=$(pve_pid 105) pw=$(vm_pid "$w")
	pve_wait_log "\"greeting\", \"pid\": $pv"
	run --separate-stderr "$HU_BIN" plan --state-dir "$S" --vm "$v" --vm "$w"
	echo "$output" "$stderr"
	[ "$status" -eq 0 ]

	exec 8>>"$lock"
	flock -n 8
	"$HU_BIN" checkpoint --state-dir "$S" --vm "$v" --vm "$w" >"$T/cp.out" 2>"$T/cp.err" 8>&- &
	cp=$!
	# it has planned and waits on the flock once it holds the lock file open (on an fd other than
	# the test's 8, which the child has until its redirection)
	local f waiting=
	for ((i = 0; i < 1200; i++)); do
		for f in "/proc/$cp/fd/"*; do
			[[ "${f##*/}" != 8 && "$(readlink "$f" 2>/dev/null)" == "$lock" ]] && waiting=1
		done
		[[ -n "$waiting" ]] && break
		_hu_pid_alive "$cp" || break
		sleep 0.05
	done
	[[ -n "$waiting" ]]
	echo 'lock: backup' >>"$PVE/etc/pve/qemu-server/105.conf"
	exec 8>&-
	local rc=0
	wait "$cp" || rc=$?
	cat "$T/cp.out" "$T/cp.err"
	[ "$rc" -eq 1 ]
	[[ "$(cat "$T/cp.err")" == *"changed since the plan: Proxmox VM 105: config lock 'backup' is set"* ]]
	# Both QEMUs are the ones from before, running.
	[ "$(pve_pid 105)" = "$pv" ]
	[ "$(vm_pid "$w")" = "$pw" ]
	[ "$(vm_status "$w")" = running ]
	[ "$(json_get "$(qmp "$PVE/var/run/qemu-server/105.qmp" query-status)" 'j["status"]')" = running ]
	vm_wait_ticking "$w" 3 120
	# Nothing moved: no stop, the flag where qm left it, the lock free again.
	run ! pve_log_has '"SHUTDOWN"'
	run ! pve_log_has '"qm-cleanup"'
	[ -s "$PVE/var/run/qemu-server/105.cleanup" ]
	[ ! -e "$S/proxmox-105.cleanup" ]
	flock -n "$lock" true
}
