#!/usr/bin/env bats
# A run --no-reboot that mixes a VM prelaunch can restart (RAM in a shared file) with one it
# cannot (memfd RAM) restarts each its own way (#16): the sequential group first, all or
# nothing among themselves, then the prelaunch group, VM by VM, under one manifest. Real
# QEMU 10 (TCG); the failures are real ones chosen through HU_TEST_PRELAUNCH_FAIL/_DIE
# (HACKING.md), as in 80-prelaunch.bats.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	P=p81-$HU_RUN_ID # RAM in a shared file: prelaunch
	M=m81-$HU_RUN_ID # RAM in memfd: sequential
}

start_vms() {
	vm_start $P $(qmp_arg $P) $(ram_file_args $P "$T/$P.ram") \
		-chardev "socket,id=qga0,path=$T/$P.qga,server=on,wait=off" -device virtio-serial \
		-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
	vm_start $M $(qmp_arg $M) $(ram_memfd_args $M)
	vm_wait_tick $P 2 240
	vm_wait_tick $M 2 240
}

vm_field() { # STATUS_JSON NAME FIELD
	json_get "$1" "[v for v in j['vms'] if v['name'] == '$2'][0]['$3']"
}

@test "mixed run: plan shows each VM's own restart; run restarts M sequentially, then P by prelaunch" {
	start_vms
	local old_p old_m new_p new_m
	old_p=$(vm_pid $P)
	old_m=$(vm_pid $M)
	run --separate-stderr hu plan --json --vm $P --vm $M
	[ "$(plan_vm "$output" $P restart)" = prelaunch ]
	[ "$(plan_vm "$output" $P restart_reason)" = null ]
	[ "$(plan_vm "$output" $M restart)" = sequential ]
	[[ "$(plan_vm "$output" $M restart_reason)" == *memfd* ]]
	# The plan run prints: each VM with its own restart under it.
	run --separate-stderr hu run --no-reboot --dry-run --vm $P --vm $M
	grep -A1 "^$P " <<<"$output" | grep -q "restart: prelaunch (cpr-reboot)$"
	grep -A1 "^$M " <<<"$output" | grep -q "restart: sequential: RAM not all in shared files"

	run --separate-stderr hu run --no-reboot --yes --vm $P --vm $M
	echo "$stderr"
	[ "$status" -eq 0 ]
	# M first (restored from its state by a new QEMU), then P by prelaunch.
	[[ "$stderr" == *"$M: restored (running) as pid"*"$P: restarted by prelaunch as pid"* ]]
	[[ "$stderr" != *"$M: restarted by prelaunch"* ]]
	grep -q "\"vm\":\"$P\".*\"detail\":\"prelaunch\"" "$S/journal.jsonl"
	run ! grep -q "\"vm\":\"$M\".*\"detail\":\"prelaunch\"" "$S/journal.jsonl"
	new_p=$(qemu_pids_with "$T/$P.")
	new_m=$(qemu_pids_with "$T/$M.")
	[ -n "$new_p" ] && [ "$new_p" != "$old_p" ]
	[ -n "$new_m" ] && [ "$new_m" != "$old_m" ]
	vm_runs_once $P "$new_p"
	vm_runs_once $M "$new_m"
	run --separate-stderr hu status --json
	[ "$(vm_field "$output" $P state)" = restored ]
	[ "$(vm_field "$output" $M state)" = restored ]
}

@test "mixed run: the sequential VM cannot be saved; the prelaunch VM fails to start its new QEMU; kill -9 after its save, abort: each VM runs once" {
	start_vms
	local old_p old_m new_m
	old_p=$(vm_pid $P)
	old_m=$(vm_pid $M)
	# (b0) The sequential group cannot be saved (a directory where M's state file goes):
	# M is resumed, P is not touched; both run on their old QEMU and status says why.
	mkdir -m 0700 "$S" && mkdir "$S/$M.state"
	run --separate-stderr hu run --no-reboot --yes --vm $P --vm $M
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"1 of 1 VMs could not be saved (those restarted sequentially); the 1 VM to restart by prelaunch was not touched; every VM was resumed"* ]]
	[[ "$stderr" != *"starting the new QEMU"* ]]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$(vm_field "$output" $M state)" = running ]
	[ "$(vm_field "$output" $P state)" = running ]
	[[ "$(vm_field "$output" $P error)" == "not restarted: "*"it runs on its old QEMU, untouched" ]]
	rm -rf "$S/$M.state" "$S/$M.state.resumed" # the resume set it aside, as a state file
	vm_runs_once $P "$old_p"
	vm_runs_once $M "$old_m"
	# (b) The sequential group succeeds; P's new QEMU cannot start: P runs on its old QEMU.
	run --separate-stderr env HU_TEST_PRELAUNCH_FAIL=spawn "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P --vm $M
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$P: checkpoint failed: "*"the old QEMU runs on"* ]]
	# Both groups counted: M was restarted, P was not.
	[[ "$stderr" == *"1 of 2 VMs could not be restarted ($P first); the VMs not restarted run on their old QEMU"* ]]
	new_m=$(qemu_pids_with "$T/$M.")
	vm_runs_once $P "$old_p"
	vm_runs_once $M "$new_m"
	run --separate-stderr hu status --json
	echo "$output"
	[ "$(vm_field "$output" $M state)" = restored ]
	[ "$(vm_field "$output" $M error)" = null ]
	[ "$(vm_field "$output" $P state)" = running ]
	[[ "$(vm_field "$output" $P error)" == *"the old QEMU runs on"* ]]

	# (c) kill -9 of host-upgrade after P's save (M restored by then), then abort.
	run --separate-stderr env HU_TEST_PRELAUNCH_DIE=saved "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P --vm $M
	echo "$stderr"
	[ "$status" -eq 137 ]
	run --separate-stderr hu abort
	echo "abort: $stderr"
	[ "$status" -eq 0 ]
	vm_runs_once $P "$old_p" # its new QEMU never loaded: ended, the old one resumed
	vm_runs_once $M "$(qemu_pids_with "$T/$M.")"
	[ "$(qemu_pids_with "$T/$M.")" != "$new_m" ]
	run ls "$T"
	[[ "$output" != *hu-prelaunch* ]]
	run --separate-stderr hu status --json
	echo "$output"
	[[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" =~ ^\[\"(restored|running)\",\ \"(restored|running)\"\]$ ]]
}
