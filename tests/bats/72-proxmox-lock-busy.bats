#!/usr/bin/env bats
# Proxmox VE guests (#17): checkpoint holds qemu-server's config lock (lock-N.conf, flock) across
# the quit. When another qm operation holds it (here: the test), the checkpoint waits a bounded
# time, fails that VM, and (all or nothing) every VM keeps running as before: same QEMUs,
# cleanup flag in place, nothing for qmeventd to see.

load helpers
load proxmox

# Proxmox VM N named V and a plain QEMU W, both ticking; their pids in pv and pw.
start_pair() {
	local n=$1 v=$2 w=$3
	pve_start "$n" "$v"
	vm_start "$w" $(qmp_arg "$w") $(ram_file_args "$w" "$T/$w.ram")
	vm_wait_tick "$v" 2 120
	vm_wait_tick "$w" 2 120
	pv=$(pve_pid "$n") pw=$(vm_pid "$w")
	pve_wait_log "\"greeting\", \"pid\": $pv"
}

# After a failed checkpoint: both QEMUs the ones from before (pids pv, pw), running; nothing for
# Proxmox to clean up (no stop, the flag where qm left it); the config lock free again for qm.
assert_untouched() {
	local n=$1 v=$2 w=$3 tv
	[ "$(pve_pid "$n")" = "$pv" ]
	[ "$(vm_pid "$w")" = "$pw" ]
	[ "$(vm_status "$w")" = running ]
	[ "$(json_get "$(qmp "$PVE/var/run/qemu-server/$n.qmp" query-status)" 'j["status"]')" = running ]
	tv=$(vm_last_tick "$v")
	vm_wait_tick "$v" $((tv + 3)) 120
	vm_wait_ticking "$w" 3 120
	run ! pve_log_has '"SHUTDOWN"'
	run ! pve_log_has '"qm-cleanup"'
	[ -s "$PVE/var/run/qemu-server/$n.cleanup" ]
	[ ! -e "$S/proxmox-$n.cleanup" ]
	flock -n "$PVE/var/lock/qemu-server/lock-$n.conf" true
}

@test "config lock held by someone else: the checkpoint fails cleanly, every VM still running" {
	local v=p72a-$HU_RUN_ID w=p72b-$HU_RUN_ID pv pw lock=$PVE/var/lock/qemu-server/lock-104.conf
	start_pair 104 "$v" "$w"
	exec 8>>"$lock"
	flock -n 8
	run --separate-stderr "$HU_BIN" checkpoint --state-dir "$S" --vm "$v" --vm "$w" 8>&-
	exec 8>&-
	echo "$output" "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"Proxmox config lock $lock busy"* ]]
	assert_untouched 104 "$v" "$w"
}

# vzdump and qm snapshot set `lock: backup` in the config under the flock and then let go of the
# flock for the long part of their job. A checkpoint that planned before that (a prompt can sit
# between plan and checkpoint) must see it once it holds the flock. Here the test holds the flock
# until the checkpoint has planned and waits on it, sets the lock, lets go.
@test "config lock set between plan and the flock: that VM fails naming it, every VM still running" {
	local v=p72c-$HU_RUN_ID w=p72d-$HU_RUN_ID pv pw cp i lock=$PVE/var/lock/qemu-server/lock-105.conf
	start_pair 105 "$v" "$w"
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
	assert_untouched 105 "$v" "$w"
}
