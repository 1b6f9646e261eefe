#!/usr/bin/env bats
# Prelaunch (#16), the start of the new QEMU: it runs only once the manifest records it (a
# kill -9 of host-upgrade before that leaves no QEMU behind), the old QEMU is not needed after
# its save, and a -daemonize VM restarts by prelaunch too. Real QEMU 10 (TCG); the failures
# are real ones, chosen through the test hooks HU_TEST_PRELAUNCH_FAIL and HU_TEST_PRELAUNCH_DIE
# (HACKING.md).

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	P=p83-$HU_RUN_ID
}

# Pids of every process (QEMU or not) whose argv has "-incoming" and an argument with NEEDLE.
incoming_pids() { # NEEDLE
	local d a inc hit
	local -a argv
	for d in /proc/[0-9]*; do
		mapfile -d '' -t argv 2>/dev/null <"$d/cmdline" || continue
		_hu_pid_alive "${d#/proc/}" || continue
		inc='' hit=''
		for a in "${argv[@]}"; do
			[[ "$a" == -incoming ]] && inc=1
			[[ "$a" == *"$1"* ]] && hit=1
		done
		[[ -n "$inc" && -n "$hit" ]] && echo "${d#/proc/}"
	done
	return 0
}

@test "prelaunch: kill -9 right after the new QEMU's fork + abort leaves no QEMU behind; the old QEMU killed after its save is not missed" {
	vm_start $P $(qmp_arg $P) $(ram_file_args $P "$T/$P.ram")
	vm_wait_tick $P 2 240
	local old new start
	old=$(vm_pid $P)
	prelaunch_die_then_abort forked $P
	# The child forked for the new QEMU sees host-upgrade gone and never runs QEMU.
	start=$SECONDS
	while [ -n "$(incoming_pids "$T/$P.")" ] && ((SECONDS - start < 60)); do
		sleep 0.2
	done
	incoming_pids "$T/$P."
	[ -z "$(incoming_pids "$T/$P.")" ]
	vm_runs_once $P "$old"
	run --separate-stderr hu status --json
	[[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" =~ ^\[\"(resumed|running)\"\]$ ]]

	# The old QEMU SIGKILLed right after its save: the new one loads and runs the guest.
	run --separate-stderr env HU_TEST_PRELAUNCH_FAIL=kill-old "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P
	echo "kill-old: $stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch"* ]]
	new=$(qemu_pids_with "$T/$P.")
	[[ "$new" =~ ^[0-9]+$ ]] && [ "$new" != "$old" ]
	vm_runs_once $P "$new"
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored"]' ]
}

@test "prelaunch: a -daemonize VM restarts by prelaunch, daemonized as a sequential restore leaves it; kill -9 at spawned + abort converges" {
	local D=d83-$HU_RUN_ID old new sid
	vm_start $D $(qmp_arg $D) $(ram_file_args $D "$T/$D.ram") -daemonize
	vm_wait_tick $D 2 240
	old=$(vm_pid $D)
	run --separate-stderr hu plan --json --vm $D
	[ "$(plan_vm "$output" $D restart)" = prelaunch ]
	# Killed once the new QEMU's daemon is up and recorded: abort ends it, the old one runs on.
	prelaunch_die_then_abort spawned $D
	[ -z "$(incoming_pids "$T/$D.")" ]
	vm_runs_once $D "$old"
	# Killed once the new QEMU runs, before its daemon is recorded (the record names the process
	# we forked): abort finds the daemon and ends it. While the new QEMU starts up it may not
	# answer yet: abort then touches nothing and says so, and a later abort converges.
	prelaunch_die_then_abort started $D 300
	[ -z "$(incoming_pids "$T/$D.")" ]
	vm_runs_once $D "$old"
	run --separate-stderr hu run --no-reboot --yes --vm $D
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch"* ]]
	new=$(qemu_pids_with "$T/$D.")
	[[ "$new" =~ ^[0-9]+$ ]] && [ "$new" != "$old" ]
	vm_runs_once $D "$new"
	# A daemon, as the sequential restore leaves one: the group of a session of its own, not
	# host-upgrade's child (host-upgrade has exited).
	read -r sid < <(ps -o sid= -p "$new")
	[ "$(ps -o pgid= -p "$new" | tr -d ' ')" = "$sid" ]
	[ "$sid" != "$(ps -o sid= -p $$ | tr -d ' ')" ]
	[[ "$(ps -o comm= -p "$(ps -o ppid= -p "$new" | tr -d ' ')")" != host-upgrade ]]
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored"]' ]
}

@test "prelaunch: the guest clock is set through the agent and recorded, as after a sequential restore" {
	local A=a83-$HU_RUN_ID HU_VM_MEM=256M step i
	"$BATS_TEST_DIRNAME/../guest/build-agent-guest.sh" "$GUEST_DIR" >/dev/null ||
		skip "cannot build the agent guest (apt-get download qemu-guest-agent)"
	HU_VM_INITRD=$GUEST_DIR/initramfs-agent.cpio.gz vm_start $A $(qmp_arg $A) $(ram_file_args $A "$T/$A.ram") \
		-chardev "socket,id=qga0,path=$T/$A.qga,server=on,wait=off" -device virtio-serial \
		-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
	vm_wait_tick $A 3 180
	grep -q "^AGENT " "$(vm_serial $A)"
	# qemu-ga opens its port a moment after the guest says AGENT
	for ((i = 0; i < 300; i++)); do
		[ "$(json_get "$(qmp $A query-chardev)" '[c["frontend-open"] for c in j if c["label"] == "qga0"][0]')" = true ] && break
		sleep 0.2
	done
	run --separate-stderr hu run --no-reboot --yes --vm $A
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch"* ]]
	[[ "$stderr" == *"guest clock set"* ]]
	run --separate-stderr hu status --json
	echo "$output"
	step=$(json_get "$output" 'j["vms"][0]["clock_step_ms"]')
	[[ "$step" =~ ^-?[0-9]+$ ]]
}
