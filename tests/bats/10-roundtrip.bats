#!/usr/bin/env bats
# plan -> checkpoint -> restore of several VMs at once, each started with a different command
# line shape, against real QEMU (TCG). Guests must continue where they stopped: the tick
# counter goes on from its last value and the guest never boots again.
# shellcheck disable=SC2016 # sed's $ in single quotes

load helpers

HU_VM_MEM=128M # the JSON -object below says 134217728

# The guest's "tick N" lines are exactly 1..last: the counter never restarted.
# One read of the serial log: the guest ticks on while we look (two reads, one
# for the last tick and one for the lines, disagreed when a tick landed between).
ticks_contiguous() {
	local name=$1 last expect got
	got=$(_hu_serial_lines "$name" | grep '^tick ')
	last=${got##*tick }
	expect=$(seq 1 "${last:-0}" | sed 's/^/tick /')
	if [[ "$got" != "$expect" ]]; then
		echo "VM $name: tick lines are not 1..$last:" >&2
		diff <(echo "$expect") <(echo "$got") | head -20 >&2
		return 1
	fi
}

@test "four VMs, four argv shapes: plan, checkpoint (0700/0600), restore; guests continue, no cold boot" {
	[[ "$(hu_fs_type "$T")" != tmpfs && "$(hu_fs_type "$T")" != ramfs ]] ||
		skip "$T is on tmpfs: file RAM there is volatile, not persistent"
	local A=r10a-$HU_RUN_ID B=r10b-$HU_RUN_ID C=r10c-$HU_RUN_ID D=r10d-$HU_RUN_ID
	local -a a b c d
	# r10a: -qmp unix:...; RAM in a file in $T whose name has a comma (",," in argv)
	read -ra a <<<"$(qmp_arg $A) $(ram_file_args $A "$T/$A,x.ram")"
	# r10b: -name NAME (no guest=), chardev socket + -mon mode=control, JSON -object
	b=(-name $B $(mon_args $B)
		-object "{\"qom-type\":\"memory-backend-file\",\"id\":\"ram0\",\"size\":134217728,\"mem-path\":\"$T/$B.ram\",\"share\":true}"
		-machine memory-backend=ram0)
	# r10c: -qmp-pretty, no memory backend: private RAM, copied
	c=(-qmp-pretty "unix:$T/$C.qmp,server=on,wait=off")
	# r10d: -daemonize (+ the -pidfile vm_start adds), memfd RAM: volatile, copied
	read -ra d <<<"$(qmp_arg $D) $(ram_memfd_args $D) -daemonize"

	vm_start $A "${a[@]}"
	vm_start_bare $B "${b[@]}"
	vm_start $C "${c[@]}"
	vm_start $D "${d[@]}"
	local v
	local -A pid0
	for v in $A $B $C $D; do
		vm_wait_tick "$v" 2 60
		pid0[$v]=$(vm_pid "$v")
		_hu_pid_alive "${pid0[$v]}"
	done
	[ -s "$T/$A,x.ram" ]
	[ -s "$T/$B.ram" ]

	run --separate-stderr hu plan --json --vm $A --vm $B --vm $C --vm $D
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["ok"]')" = true ]
	[ "$(json_get "$output" 'sorted(v["name"] for v in j["vms"])')" = "[\"$A\", \"$B\", \"$C\", \"$D\"]" ]
	for v in $A $B $C $D; do
		[ "$(plan_vm "$output" $v pid)" = "${pid0[$v]}" ]
		[ "$(plan_vm "$output" $v blockers)" = '[]' ]
		[ "$(plan_vm "$output" $v ram_bytes)" = 134217728 ]
	done
	[ "$(plan_vm "$output" $A ram_backing)" = persistent ]
	[ "$(plan_vm "$output" $A save)" = in-place ]
	[ "$(plan_vm "$output" $B ram_backing)" = persistent ]
	[ "$(plan_vm "$output" $B save)" = in-place ]
	[ "$(plan_vm "$output" $C ram_backing)" = private ]
	[ "$(plan_vm "$output" $C save)" = copy ]
	[ "$(plan_vm "$output" $D ram_backing)" = volatile ]
	[ "$(plan_vm "$output" $D save)" = copy ]
	# plan changes nothing
	[ ! -e "$S/manifest.json" ]

	run --separate-stderr hu checkpoint --vm $A --vm $B --vm $C --vm $D
	echo "$stderr"
	[ "$status" -eq 0 ]
	local -A pre
	for v in $A $B $C $D; do
		run _hu_pid_alive "${pid0[$v]}"
		[ "$status" -ne 0 ]
		[ "$(qemu_count_with "$T/$v.")" -eq 0 ]
		pre[$v]=$(vm_last_tick "$v")
		[ "${pre[$v]}" -ge 2 ]
		[ -s "$S/$v.state" ]
	done
	# root-only: the dir 0700, every file in it 0600 (argv may hold secrets)
	[ "$(stat -c %a "$S")" = 700 ]
	[ "$(stat -c %a "$S/manifest.json")" = 600 ]
	run find "$S" -type f ! -perm 0600 -printf '%m %p\n'
	echo "$output"
	[ -z "$output" ]
	# RAM in place: the state file is device state only; copied RAM makes it larger
	[ "$(stat -c %s "$S/$A.state")" -lt $((4 << 20)) ]
	[ "$(stat -c %s "$S/$B.state")" -lt $((4 << 20)) ]
	[ "$(stat -c %s "$S/$C.state")" -gt "$(stat -c %s "$S/$A.state")" ]

	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["phase"]')" = checkpointed ]
	[ "$(json_get "$output" 'sorted(v["name"] for v in j["vms"])')" = "[\"$A\", \"$B\", \"$C\", \"$D\"]" ]
	[ "$(json_get "$output" 'sorted(set(v["state"] for v in j["vms"]))')" = '["checkpointed"]' ]

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	local st=$output pid1
	[ "$(json_get "$st" 'sorted(set(v["state"] for v in j["vms"]))')" = '["restored"]' ]
	[ "$(json_get "$st" 'all(type(v["downtime_ms"]) is int and v["downtime_ms"] > 0 for v in j["vms"])')" = true ]
	for v in $A $B $C $D; do
		# one QEMU per VM, the one the pidfile and the manifest name
		[ "$(qemu_count_with "$T/$v.")" -eq 1 ]
		pid1=$(plan_vm "$st" $v pid)
		[ "$pid1" != "${pid0[$v]}" ]
		[ "$(qemu_pids_with "$T/$v.")" = "$pid1" ]
		[ "$(vm_pid $v)" = "$pid1" ]
	done
	for v in $A $B $C $D; do
		vm_wait_tick "$v" $((pre[$v] + 3)) 30
		[ "$(vm_boot_count "$v")" -eq 1 ]
		ticks_contiguous "$v"
	done
	# the restored QEMUs answer QMP and run
	[ "$(vm_status $A)" = running ]
	[ "$(vm_status $B)" = running ]
	[ "$(vm_status $D)" = running ]
}

@test "plan table matches tests/bats/golden/plan-table.txt (PID column normalised)" {
	local A=g10a-$HU_RUN_ID C=g10c-$HU_RUN_ID D=g10d-$HU_RUN_ID
	local -a a c d
	read -ra a <<<"$(qmp_arg $A) $(ram_file_args $A "$T/$A.ram")"
	c=(-qmp-pretty "unix:$T/$C.qmp,server=on,wait=off")
	read -ra d <<<"$(qmp_arg $D) $(ram_memfd_args $D)"
	vm_start $A "${a[@]}"
	vm_start $C "${c[@]}"
	vm_start $D "${d[@]}"
	# QMP answers from the start (no need to wait for the guest to boot)
	run --separate-stderr hu plan --vm $D --vm $A --vm $C
	echo "$output"
	[ "$status" -eq 0 ]
	# the per-run name suffix becomes blanks (the name column keeps its width);
	# PID: right-aligned in the 8 columns after the 20-column name
	local norm blanks
	blanks=$(printf '%*s' $((${#HU_RUN_ID} + 1)) '')
	# the copy hints: the measured rate and the time it gives vary, and the sample's dir
	norm=$(sed -E -e 's/flushed in [^ ]+ by this plan/flushed in DIR by this plan/' \
		-e "s/-$HU_RUN_ID/$blanks/" -e '2,$s/^(.{20}) [ 0-9]{7}[0-9]/\1      PID/' \
		-e 's/about [0-9.]+ s at [0-9.]+[BKMGT]?\/s$/about SECONDS s at RATE\/s/' <<<"$output")
	diff -u "$BATS_TEST_DIRNAME/golden/plan-table.txt" - <<<"$norm"
}
