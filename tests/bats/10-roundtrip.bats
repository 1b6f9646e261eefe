#!/usr/bin/env bats
# plan -> checkpoint -> restore of several VMs at once, each started with a different command
# line shape, against real QEMU (TCG). Guests must continue where they stopped: the tick
# counter goes on from its last value and the guest never boots again.
# shellcheck disable=SC2046,SC2016 # $(qmp_arg X) is meant to split; literal $ in python

bats_require_minimum_version 1.5.0
load helpers

HU_BIN=${HU_BIN:-$BATS_TEST_DIRNAME/../../build/host-upgrade}
HU_VM_MEM=128M # the JSON -object below says 134217728

setup() {
	[ -x "$HU_BIN" ] || skip "no $HU_BIN (run make)"
	S=$T/state
}

# hu VERB [ARGS...]: the CLI on this test's state dir
hu() {
	local verb=$1
	shift
	"$HU_BIN" "$verb" --state-dir "$S" "$@"
}

# The guest's "tick N" lines are exactly 1..last: the counter never restarted.
ticks_contiguous() {
	local name=$1 last expect got
	last=$(vm_last_tick "$name")
	expect=$(seq 1 "$last" | sed 's/^/tick /')
	got=$(_hu_serial_lines "$name" | grep '^tick ')
	if [[ "$got" != "$expect" ]]; then
		echo "VM $name: tick lines are not 1..$last:" >&2
		diff <(echo "$expect") <(echo "$got") | head -20 >&2
		return 1
	fi
}

@test "four VMs, four argv shapes: plan, checkpoint (0700/0600), restore; guests continue, no cold boot" {
	[[ "$(hu_fs_type "$T")" != tmpfs && "$(hu_fs_type "$T")" != ramfs ]] ||
		skip "$T is on tmpfs: file RAM there is volatile, not persistent"
	local -a a b c d
	# r10a: -qmp unix:...; RAM in a file in $T whose name has a comma (",," in argv)
	read -ra a <<<"$(qmp_arg r10a) $(ram_file_args r10a "$T/r10a,x.ram")"
	# r10b: -name NAME (no guest=), chardev socket + -mon mode=control, JSON -object
	b=(-name r10b $(mon_args r10b)
		-object "{\"qom-type\":\"memory-backend-file\",\"id\":\"ram0\",\"size\":134217728,\"mem-path\":\"$T/r10b.ram\",\"share\":true}"
		-machine memory-backend=ram0)
	# r10c: -qmp-pretty, no memory backend: private RAM, copied
	c=(-qmp-pretty "unix:$T/r10c.qmp,server=on,wait=off")
	# r10d: -daemonize (+ the -pidfile vm_start adds), memfd RAM: volatile, copied
	read -ra d <<<"$(qmp_arg r10d) $(ram_memfd_args r10d) -daemonize"

	vm_start r10a "${a[@]}"
	vm_start_bare r10b "${b[@]}"
	vm_start r10c "${c[@]}"
	vm_start r10d "${d[@]}"
	local v
	local -A pid0
	for v in r10a r10b r10c r10d; do
		vm_wait_tick "$v" 2 60
		pid0[$v]=$(vm_pid "$v")
		_hu_pid_alive "${pid0[$v]}"
	done
	[ -s "$T/r10a,x.ram" ]
	[ -s "$T/r10b.ram" ]

	run --separate-stderr hu plan --json --vm r10a --vm r10b --vm r10c --vm r10d
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["ok"]')" = true ]
	[ "$(json_get "$output" 'sorted(v["name"] for v in j["vms"])')" = '["r10a", "r10b", "r10c", "r10d"]' ]
	for v in r10a r10b r10c r10d; do
		[ "$(plan_vm "$output" $v pid)" = "${pid0[$v]}" ]
		[ "$(plan_vm "$output" $v blockers)" = '[]' ]
		[ "$(plan_vm "$output" $v ram_bytes)" = 134217728 ]
	done
	[ "$(plan_vm "$output" r10a ram_backing)" = persistent ]
	[ "$(plan_vm "$output" r10a save)" = in-place ]
	[ "$(plan_vm "$output" r10b ram_backing)" = persistent ]
	[ "$(plan_vm "$output" r10b save)" = in-place ]
	[ "$(plan_vm "$output" r10c ram_backing)" = private ]
	[ "$(plan_vm "$output" r10c save)" = copy ]
	[ "$(plan_vm "$output" r10d ram_backing)" = volatile ]
	[ "$(plan_vm "$output" r10d save)" = copy ]
	# plan changes nothing
	[ ! -e "$S/manifest.json" ]

	run --separate-stderr hu checkpoint --vm r10a --vm r10b --vm r10c --vm r10d
	echo "$stderr"
	[ "$status" -eq 0 ]
	local -A pre
	for v in r10a r10b r10c r10d; do
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
	[ "$(stat -c %s "$S/r10a.state")" -lt $((4 << 20)) ]
	[ "$(stat -c %s "$S/r10b.state")" -lt $((4 << 20)) ]
	[ "$(stat -c %s "$S/r10c.state")" -gt "$(stat -c %s "$S/r10a.state")" ]

	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["phase"]')" = checkpointed ]
	[ "$(json_get "$output" 'sorted(v["name"] for v in j["vms"])')" = '["r10a", "r10b", "r10c", "r10d"]' ]
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
	for v in r10a r10b r10c r10d; do
		# one QEMU per VM, the one the pidfile and the manifest name
		[ "$(qemu_count_with "$T/$v.")" -eq 1 ]
		pid1=$(plan_vm "$st" $v pid)
		[ "$pid1" != "${pid0[$v]}" ]
		[ "$(qemu_pids_with "$T/$v.")" = "$pid1" ]
		[ "$(vm_pid $v)" = "$pid1" ]
	done
	for v in r10a r10b r10c r10d; do
		vm_wait_tick "$v" $((pre[$v] + 3)) 30
		[ "$(vm_boot_count "$v")" -eq 1 ]
		ticks_contiguous "$v"
	done
	# the restored QEMUs answer QMP and run
	[ "$(vm_status r10a)" = running ]
	[ "$(vm_status r10b)" = running ]
	[ "$(vm_status r10d)" = running ]
}

@test "plan table matches tests/bats/golden/plan-table.txt (PID column normalised)" {
	local -a a c d
	read -ra a <<<"$(qmp_arg g10a) $(ram_file_args g10a "$T/g10a.ram")"
	c=(-qmp-pretty "unix:$T/g10c.qmp,server=on,wait=off")
	read -ra d <<<"$(qmp_arg g10d) $(ram_memfd_args g10d)"
	vm_start g10a "${a[@]}"
	vm_start g10c "${c[@]}"
	vm_start g10d "${d[@]}"
	# QMP answers from the start (no need to wait for the guest to boot)
	run --separate-stderr hu plan --vm g10d --vm g10a --vm g10c
	echo "$output"
	[ "$status" -eq 0 ]
	# PID: right-aligned in the 8 columns after the 20-column name
	local norm
	norm=$(sed -E '2,$s/^(.{20}) [ 0-9]{7}[0-9]/\1      PID/' <<<"$output")
	diff -u "$BATS_TEST_DIRNAME/golden/plan-table.txt" - <<<"$norm"
}
