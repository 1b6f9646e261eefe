#!/usr/bin/env bats
# kill -9 of `restore` at several points, then `restore` again: every VM ends up running
# exactly once (the QEMU a cut-short restore left behind is finished or ended, never
# doubled), guests continue, none cold-boots. Real QEMUs (TCG).

load helpers

HU_VM_MEM=128M
VMS=(c22a c22b)

@test "kill -9 of restore at several points, then restore again: each VM runs exactly once" {
	local v w ck
	for v in "${VMS[@]}"; do vm_start $v $(qmp_arg $v) $(ram_file_args $v "$T/$v.ram"); done
	for v in "${VMS[@]}"; do vm_wait_tick $v 2 60; done
	for w in 0.01 0.05 0.1 0.2; do
		local -A t0
		for v in "${VMS[@]}"; do t0[$v]=$(vm_last_tick $v); done
		run "$HU_BIN" checkpoint --state-dir "$S" --vm c22a --vm c22b
		[ "$status" -eq 0 ]
		"$HU_BIN" restore --state-dir "$S" </dev/null >"$T/rs.out" 2>&1 3>&- 4>&- &
		ck=$!
		sleep "$w"
		kill -KILL "$ck" 2>/dev/null || true
		wait "$ck" 2>/dev/null || true
		echo "# killed restore after ${w}s; QEMUs: $(qemu_count_with "$T/c22a.ram")+$(qemu_count_with "$T/c22b.ram")" >&3
		run --separate-stderr "$HU_BIN" restore --state-dir "$S"
		echo "$stderr"
		[ "$status" -eq 0 ]
		run --separate-stderr "$HU_BIN" status --json --state-dir "$S"
		[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored", "restored"]' ]
		for v in "${VMS[@]}"; do
			[ "$(qemu_count_with "$T/$v.ram")" -eq 1 ]
			vm_wait_tick $v $((t0[$v] + 2)) 60
			[ "$(vm_boot_count $v)" -eq 1 ]
		done
	done
}
