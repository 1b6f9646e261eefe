#!/usr/bin/env bats
# Proxmox VE guests (#17): kill -9 of `checkpoint` after the quit. The kernel drops the config
# lock with the process; the `qm cleanup` qmeventd started then runs, finds the VM stopped but
# no cleanup flag (it is in the state dir) and tears nothing down. `abort` restores the VM,
# puts the flag back, and a second `restore` starts nothing.

load helpers
load proxmox

@test "kill -9 after the quit: qm cleanup tears nothing down, abort restores, the flag is back" {
	local v=p73a-$HU_RUN_ID old new t ck i run=$PVE/var/run/qemu-server
	pve_start 103 "$v"
	vm_wait_tick "$v" 2 120
	old=$(pve_pid 103)
	pve_wait_log "\"greeting\", \"pid\": $old"
	t=$(vm_last_tick "$v")
	"$HU_BIN" checkpoint --state-dir "$S" --vm "$v" </dev/null >"$T/ck.out" 2>&1 3>&- 4>&- &
	ck=$!
	# The quit: qmeventd saw the monitor close and started qm cleanup.
	for ((i = 0; i < 6000; i++)); do
		pve_log_has '"qm-cleanup"' && break
		_hu_pid_alive "$ck" || break
		sleep 0.01
	done
	kill -KILL "$ck" 2>/dev/null || true
	wait "$ck" || true
	cat "$T/ck.out"
	pve_log_has '"args": ["103", "1", "0"]'
	# The cleanup got the lock once we were gone and found no flag: nothing torn down.
	pve_wait_log '"what":"exit"' 90 "$QM_LOG"
	cat "$QM_LOG"
	pve_log_has '"what":"locked"' "$QM_LOG"
	pve_log_has '"what":"nothing to clean"' "$QM_LOG"
	run ! pve_log_has '"what":"teardown"' "$QM_LOG"
	[ -e "$PVE/images/103/vm-103-disk-0.raw" ]
	[ ! -e "$PVE/hookscript.log" ]
	[ ! -e "$run/103.cleanup" ]
	[ -s "$S/proxmox-103.cleanup" ]
	run --separate-stderr "$HU_BIN" abort --state-dir "$S"
	echo "$output" "$stderr"
	[ "$status" -eq 0 ]
	new=$(pve_pid 103)
	[ "$new" != "$old" ]
	[ "$(pve_argv 103 | head -n1)" = /usr/bin/kvm ]
	vm_wait_tick "$v" $((t + 3)) 120
	[ "$(vm_boot_count "$v")" -eq 1 ]
	[ -s "$run/103.cleanup" ]
	[ ! -e "$S/proxmox-103.cleanup" ]
	# A second restore finds it done and starts nothing.
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	[ "$(pve_pid 103)" = "$new" ]
	[ "$(vm_boot_count "$v")" -eq 1 ]
}
