#!/usr/bin/env bats
# Prelaunch by cpr-transfer (#16): a VM whose RAM is in memory-backend-memfd (with
# -machine aux-ram-share=on) is restarted by starting the new QEMU beside the old one with a cpr
# channel; the old one hands its RAM's descriptors over, so nothing of the RAM goes through a
# file. Real QEMU 10 (TCG), real sockets; the failures are real ones (a binary that does not
# exist, a new QEMU without a device the old one has, a killed QEMU), chosen through the test
# hooks HU_TEST_PRELAUNCH_FAIL and HU_TEST_PRELAUNCH_DIE (HACKING.md).

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	P=p84-$HU_RUN_ID
}

teardown() {
	hu_teardown
}

# RAM in a memfd, every RAM block shareable (cpr-transfer needs both from QEMU's start), an
# agent port, and a device the "load" hook leaves out of the new QEMU.
start_vm() { # NAME
	vm_start "$1" $(qmp_arg "$1") $(ram_memfd_args "$1") -machine aux-ram-share=on \
		-chardev "socket,id=qga0,path=$T/$1.qga,server=on,wait=off" -device virtio-serial \
		-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
		-device virtio-rng-pci,id=hu-test-drop
	vm_wait_tick "$1" 2 240
}

@test "prelaunch by cpr-transfer: memfd RAM handed over, no RAM in any file, the new QEMU runs the guest" {
	start_vm $P
	local old new
	old=$(vm_pid $P)
	tr '\0' '\n' <"/proc/$old/cmdline" >"$T/argv.old"
	run --separate-stderr hu plan --json --no-reboot --vm $P
	echo "$output"
	[ "$(plan_vm "$output" $P restart)" = prelaunch ]
	[ "$(plan_vm "$output" $P prelaunch_mode)" = cpr-transfer ]
	run --separate-stderr hu run --no-reboot --yes --vm $P
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch (cpr-transfer)"* ]]
	new=$(qemu_pids_with "$T/$P.")
	[ -n "$new" ] && [ "$new" != "$old" ]
	run _hu_pid_alive "$old"
	[ "$status" -ne 0 ]
	# The recorded argv, plus -incoming defer and the cpr channel.
	tr '\0' '\n' <"/proc/$new/cmdline" >"$T/argv.new"
	diff <(cat "$T/argv.old"; printf '%s\n' -incoming defer -incoming) <(head -n -1 "$T/argv.new")
	[[ "$(tail -n 1 "$T/argv.new")" == *'"channel-type":"cpr"'* ]]
	# 128 MiB of RAM, and no file of the state dir holds it.
	run find "$S" -type f -size +8M
	[ -z "$output" ]
	vm_runs_once $P "$new" qga
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored"]' ]
	# The record names the new QEMU: a later run or abort acts on it.
	[ "$(json_get "$(cat "$S/manifest.json")" '[v["pid"] for v in j["vms"]][0]')" = "$new" ]
}

@test "prelaunch by cpr-transfer: the new QEMU fails to start, to load, or dies holding the RAM: the old one runs on" {
	start_vm $P
	local old how
	old=$(vm_pid $P)
	for how in spawn load kill-new; do
		prelaunch_fails_old_runs_on $how $P "$old" qga
	done
}

@test "prelaunch by cpr-transfer: kill -9 of host-upgrade mid-way, then abort: one QEMU runs the guest" {
	start_vm $P
	local step pid
	# spawned: the new QEMU waits for the cpr state, its QMP not up yet.
	for step in spawned saved loaded; do
		prelaunch_die_then_abort $step $P
		pid=$(qemu_pids_with "$T/$P.")
		[[ "$pid" =~ ^[0-9]+$ ]]
		vm_runs_once $P "$pid" qga
	done
}
