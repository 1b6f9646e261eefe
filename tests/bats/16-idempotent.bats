#!/usr/bin/env bats
# Never run a VM twice: restore is idempotent, and a VM that someone already started again
# (same command line) is not started a second time by restore.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	A=a16-$HU_RUN_ID B=b16-$HU_RUN_ID
}

start_two() {
	read -ra ARGS_A <<<"$(qmp_arg $A) $(ram_file_args $A "$T/$A.ram")"
	read -ra ARGS_B <<<"$(mon_args $B)"
	vm_start $A "${ARGS_A[@]}"
	vm_start $B "${ARGS_B[@]}"
	vm_wait_tick $A 2 60
	vm_wait_tick $B 2 60
}

@test "restore twice (and abort after it) starts nothing twice" {
	start_two
	run --separate-stderr hu checkpoint --vm $A --vm $B
	echo "$stderr"
	[ "$status" -eq 0 ]
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	local pa pb st1
	pa=$(qemu_pids_with "$T/$A.")
	pb=$(qemu_pids_with "$T/$B.")
	[[ "$pa" =~ ^[0-9]+$ && "$pb" =~ ^[0-9]+$ ]]
	st1=$(hu status --json)

	local verb
	for verb in restore restore abort; do
		run --separate-stderr hu $verb
		echo "$verb: $stderr"
		[ "$status" -eq 0 ]
		[[ "$stderr" != *starting* ]]
		[ "$(qemu_pids_with "$T/$A.")" = "$pa" ]
		[ "$(qemu_pids_with "$T/$B.")" = "$pb" ]
	done
	# the record still says restored, same pids and downtimes
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[(v["name"], v["state"], v["pid"], v["downtime_ms"]) for v in j["vms"]]')" = \
		"$(json_get "$st1" '[(v["name"], v["state"], v["pid"], v["downtime_ms"]) for v in j["vms"]]')" ]
	[ "$(json_get "$output" 'sorted(set(v["state"] for v in j["vms"]))')" = '["restored"]' ]
	vm_wait_ticking $A 2 20
	vm_wait_ticking $B 2 20
	[ "$(vm_boot_count $A)" -eq 1 ]
	[ "$(vm_boot_count $B)" -eq 1 ]
}

@test "a VM someone cold-started again after the checkpoint is not started twice by restore" {
	start_two
	run --separate-stderr hu checkpoint --vm $A --vm $B
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(qemu_count_with "$T/$A.")" -eq 0 ]
	local preb
	preb=$(vm_last_tick $B)

	# e.g. its systemd unit started it again with the same command line
	vm_start $A "${ARGS_A[@]}"
	local pa
	pa=$(vm_pid $A)

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$A"* ]]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $A state)" = failed ]
	[[ "$(plan_vm "$output" $A error)" == *"already running"* ]]
	[ "$(plan_vm "$output" $B state)" = restored ]
	# only the QEMU the test started runs for it; the other VM runs once and continues
	[ "$(qemu_pids_with "$T/$A.")" = "$pa" ]
	[ "$(qemu_count_with "$T/$B.")" -eq 1 ]
	vm_wait_tick $B $((preb + 3)) 30
	[ "$(vm_boot_count $B)" -eq 1 ]

	# and a second restore still does not start it
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 1 ]
	[ "$(qemu_pids_with "$T/$A.")" = "$pa" ]
	[ "$(qemu_count_with "$T/$B.")" -eq 1 ]
}
