#!/usr/bin/env bats
# The state dir runs out of space in the middle of a checkpoint: all-or-nothing means every
# VM is resumed where it was (same QEMU, running), nothing is quit, nothing is checkpointed.

load helpers

E13A=e13a-$HU_RUN_ID E13B=e13b-$HU_RUN_ID E13C=e13c-$HU_RUN_ID

HU_VM_MEM=128M

setup() {
	hu_need_bin
	[[ "$(hu_fs_type "$T")" != tmpfs ]] || skip "$T is on tmpfs: RAM files there are not in place"
	S=$T/state
	mkdir -p "$S"
	# ~1 MB of device state for three VMs does not fit in 700 KiB
	mount -t tmpfs -o size=700k,mode=0700 tmpfs "$S" || skip "cannot mount a tmpfs (not root?)"
	echo "$S" >"$BATS_TEST_TMPDIR/tmpfs-mount"
}

# The tmpfs first (lazily: a QEMU restored into it may still hold its log there), so that it
# never outlives the test, then the QEMUs.
teardown() {
	local m rc=0
	if [[ -s "$BATS_TEST_TMPDIR/tmpfs-mount" ]]; then
		read -r m <"$BATS_TEST_TMPDIR/tmpfs-mount"
		if mountpoint -q "$m"; then
			umount "$m" 2>/dev/null || umount -l "$m" || { echo "teardown: cannot unmount $m" >&2; rc=1; }
		fi
	fi
	hu_teardown || { echo "teardown: hu_teardown failed" >&2; rc=1; }
	return $rc
}

start3() {
	local v
	local -a a
	for v in $E13A $E13B $E13C; do
		read -ra a <<<"$(qmp_arg $v) $(ram_file_args $v "$T/$v.ram")"
		vm_start $v "${a[@]}"
	done
	for v in $E13A $E13B $E13C; do
		vm_wait_tick $v 2 60
	done
}

@test "ENOSPC during checkpoint: exit 1 naming the VM and why; every VM resumed, same pids" {
	start3
	local v
	local -A pid0
	for v in $E13A $E13B $E13C; do
		pid0[$v]=$(vm_pid $v)
	done
	# the free-space preflight passes with a small per-VM allowance
	run --separate-stderr hu plan --json --space-margin 100K --vm $E13A --vm $E13B --vm $E13C
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'sorted(set(v["save"] for v in j["vms"]))')" = '["in-place"]' ]

	run --separate-stderr hu checkpoint --space-margin 100K --vm $E13A --vm $E13B --vm $E13C
	echo "stderr: $stderr"
	[ "$status" -eq 1 ]
	# "host-upgrade: checkpoint: e13X-ID: ...No space left on device..."
	[[ "$stderr" =~ host-upgrade:\ checkpoint:\ e13[abc]-$HU_RUN_ID:\ [^$'\n']*([Nn]o space|ENOSPC) ]]

	for v in $E13A $E13B $E13C; do
		# the same QEMU, running again, its guest ticking
		[ "$(vm_pid $v)" = "${pid0[$v]}" ]
		_hu_pid_alive "${pid0[$v]}"
		[ "$(qemu_count_with "$T/$v.")" -eq 1 ]
		[ "$(vm_status $v)" = running ]
	done
	for v in $E13A $E13B $E13C; do
		vm_wait_ticking $v 2 20
		[ "$(vm_boot_count $v)" -eq 1 ]
		# migration settings put back
		[ "$(json_get "$(qmp $v query-migrate-parameters)" 'j["mode"]')" = normal ]
		[ "$(json_get "$(qmp $v query-migrate-capabilities)" '[c["state"] for c in j if c["capability"] == "x-ignore-shared"][0]')" = false ]
	done

	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'len(j["vms"])')" -eq 3 ]
	[ "$(json_get "$output" '[v["name"] for v in j["vms"] if v["state"] == "checkpointed"]')" = '[]' ]
	[ "$(json_get "$output" 'sorted(set(v["state"] for v in j["vms"]))')" = '["running"]' ]
	# no partial state files are left to be restored from
	run compgen -G "$S/*.state"
	[ "$status" -ne 0 ]
	# and restore has nothing to do: it starts no second QEMU
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	for v in $E13A $E13B $E13C; do
		[ "$(qemu_pids_with "$T/$v.")" = "${pid0[$v]}" ]
	done
}

@test "not enough space: plan and checkpoint blocked (exit 1), nothing stops" {
	start3
	local v
	local -A pid0
	for v in $E13A $E13B $E13C; do
		pid0[$v]=$(vm_pid $v)
	done
	run --separate-stderr hu plan --json --vm $E13A --vm $E13B --vm $E13C
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(json_get "$output" 'j["ok"]')" = false ]
	for v in $E13A $E13B $E13C; do
		[[ "$(plan_vm "$output" $v blockers)" == *"not enough space"* ]]
	done
	run --separate-stderr hu plan --vm $E13A --vm $E13B --vm $E13C
	[ "$status" -eq 1 ]
	[[ "$output" == *"blocked: not enough space in $S"* ]]

	run --separate-stderr hu checkpoint --vm $E13A --vm $E13B --vm $E13C
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"not enough space"* ]]
	[ ! -e "$S/manifest.json" ]
	for v in $E13A $E13B $E13C; do
		[ "$(vm_pid $v)" = "${pid0[$v]}" ]
		[ "$(vm_status $v)" = running ]
	done
	for v in $E13A $E13B $E13C; do
		vm_wait_ticking $v 2 20
	done
}
