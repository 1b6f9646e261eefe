#!/usr/bin/env bats
# A VM the operator paused (QMP stop) before the checkpoint comes back paused: its guest does
# not run until someone says `cont`, and then it continues without a cold boot.

load helpers

HU_VM_MEM=128M

@test "a paused VM is restored paused, does not tick until cont, then continues; a running one runs" {
	local P11=p11-$HU_RUN_ID R11=r11-$HU_RUN_ID
	local -a p r
	read -ra p <<<"$(qmp_arg $P11) $(ram_file_args $P11 "$T/$P11.ram")"
	read -ra r <<<"$(qmp_arg $R11)"
	vm_start $P11 "${p[@]}"
	vm_start $R11 "${r[@]}"
	vm_wait_tick $P11 2 60
	vm_wait_tick $R11 2 60
	local pidp pidr
	pidp=$(vm_pid $P11)
	pidr=$(vm_pid $R11)

	qmp $P11 stop
	vm_wait_status $P11 paused 10
	vm_not_ticking $P11 1.2
	local paused_at
	paused_at=$(vm_last_tick $P11)

	run --separate-stderr hu plan --json --vm $P11 --vm $R11
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $P11 runstate)" = paused ]
	[ "$(plan_vm "$output" $R11 runstate)" = running ]

	run --separate-stderr hu checkpoint --vm $P11 --vm $R11
	echo "$stderr"
	[ "$status" -eq 0 ]
	vm_wait_exit $P11 5
	run _hu_pid_alive "$pidp"
	[ "$status" -ne 0 ]
	run _hu_pid_alive "$pidr"
	[ "$status" -ne 0 ]
	# it was paused all along: the checkpoint did not let it run
	[ "$(vm_last_tick $P11)" -eq "$paused_at" ]
	local pre_r
	pre_r=$(vm_last_tick $R11)

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$(json_get "$output" 'sorted(set(v["state"] for v in j["vms"]))')" = '["restored"]' ]
	[ "$(vm_pid $P11)" != "$pidp" ]
	vm_alive $P11
	[ "$(vm_status $P11)" = paused ]
	[ "$(json_get "$(qmp $P11 query-status)" 'j["running"]')" = false ]
	# the other VM runs while this one stays put
	vm_wait_tick $R11 $((pre_r + 3)) 30
	[ "$(vm_status $P11)" = paused ]
	[ "$(vm_last_tick $P11)" -eq "$paused_at" ]
	vm_not_ticking $P11 1.2

	qmp $P11 cont
	vm_wait_status $P11 running 10
	vm_wait_tick $P11 $((paused_at + 3)) 30
	[ "$(vm_boot_count $P11)" -eq 1 ]
	[ "$(vm_boot_count $R11)" -eq 1 ]
	[ "$(qemu_count_with "$T/$P11.")" -eq 1 ]
	[ "$(qemu_count_with "$T/$R11.")" -eq 1 ]
}
