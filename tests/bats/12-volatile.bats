#!/usr/bin/env bats
# Guest RAM in a shared file on tmpfs (/dev/shm) survives a QEMU restart but not a reboot:
# by default it is copied into the state file; with --no-reboot it stays in place; with
# --volatile refuse the plan is blocked.

load helpers

HU_VM_MEM=128M

setup() {
	hu_need_bin
	[[ "$(hu_fs_type /dev/shm)" == tmpfs ]] || skip "/dev/shm is not tmpfs"
	S=$T/state
	SHM=$(mktemp -u /dev/shm/hu-bats12.XXXXXXXX)
	echo "$SHM" >"$BATS_TEST_TMPDIR/shm-file"
}

teardown() {
	hu_teardown
	local f
	if [[ -s "$BATS_TEST_TMPDIR/shm-file" ]]; then
		read -r f <"$BATS_TEST_TMPDIR/shm-file"
		[[ "$f" == /dev/shm/hu-bats12.* ]] && rm -f "$f"
	fi
	return 0
}

start_shm_vm() {
	local -a a
	read -ra a <<<"$(qmp_arg "$1") $(ram_file_args "$1" "$SHM")"
	vm_start "$1" "${a[@]}"
}

@test "tmpfs RAM: plan says volatile/copy; checkpoint copies it; restore continues the guest" {
	local V12=v12-$HU_RUN_ID
	start_shm_vm $V12
	vm_wait_tick $V12 2 60
	local pid0
	pid0=$(vm_pid $V12)
	[ -s "$SHM" ]

	run --separate-stderr hu plan --json --vm $V12
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $V12 ram_backing)" = volatile ]
	[ "$(plan_vm "$output" $V12 save)" = copy ]
	[ "$(plan_vm "$output" $V12 blockers)" = '[]' ]

	run --separate-stderr hu checkpoint --vm $V12
	echo "$stderr"
	[ "$status" -eq 0 ]
	run _hu_pid_alive "$pid0"
	[ "$status" -ne 0 ]
	local pre size
	pre=$(vm_last_tick $V12)
	size=$(stat -c %s "$S/$V12.state")
	echo "# volatile (copied) state file: $size bytes" >&3
	# the guest's non-zero RAM went into the file: an in-place state is ~0.3 MB
	[ "$size" -gt $((10 << 20)) ]

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(json_get "$(hu status --json)" 'j["vms"][0]["state"]')" = restored ]
	vm_wait_tick $V12 $((pre + 3)) 30
	[ "$(vm_boot_count $V12)" -eq 1 ]
	[ "$(qemu_count_with "$T/$V12.")" -eq 1 ]
}

@test "tmpfs RAM with --no-reboot stays in place (small state file) and the guest continues" {
	local N12=n12-$HU_RUN_ID
	start_shm_vm $N12
	vm_wait_tick $N12 2 60

	run --separate-stderr hu plan --json --no-reboot --vm $N12
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $N12 ram_backing)" = volatile ]
	[ "$(plan_vm "$output" $N12 save)" = in-place ]

	run --separate-stderr hu checkpoint --no-reboot --vm $N12
	echo "$stderr"
	[ "$status" -eq 0 ]
	local pre size
	pre=$(vm_last_tick $N12)
	size=$(stat -c %s "$S/$N12.state")
	echo "# volatile in-place state file: $size bytes" >&3
	[ "$size" -lt $((4 << 20)) ]
	[ -s "$SHM" ]

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	vm_wait_tick $N12 $((pre + 3)) 30
	[ "$(vm_boot_count $N12)" -eq 1 ]
}

@test "tmpfs RAM with --volatile refuse: plan and checkpoint blocked, nothing stops" {
	local X12=x12-$HU_RUN_ID
	start_shm_vm $X12
	vm_wait_tick $X12 1 60
	local pid0
	pid0=$(vm_pid $X12)

	run --separate-stderr hu plan --json --volatile refuse --vm $X12
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(json_get "$output" 'j["ok"]')" = false ]
	[ "$(plan_vm "$output" $X12 ram_backing)" = volatile ]
	[[ "$(plan_vm "$output" $X12 blockers)" == *volatile* ]]

	# the human table says so too
	run --separate-stderr hu plan --volatile refuse --vm $X12
	[ "$status" -eq 1 ]
	[[ "$output" == *"blocked: "*volatile* ]]
	[[ "$output" == *BLOCKED* ]]

	run --separate-stderr hu checkpoint --volatile refuse --vm $X12
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$X12"*volatile* ]]
	[ ! -e "$S/$X12.state" ]
	[ "$(vm_pid $X12)" = "$pid0" ]
	vm_alive $X12
	[ "$(vm_status $X12)" = running ]
	vm_wait_ticking $X12 2 20

	# --no-reboot lifts it: nothing is lost when no reboot follows
	run --separate-stderr hu plan --json --volatile refuse --no-reboot --vm $X12
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $X12 save)" = in-place ]
}
