#!/usr/bin/env bats
# Prelaunch (#16): run --no-reboot starts the new QEMU beside the running one, saves the old,
# loads the new, and only then ends the old one — without the old one's exit cleanup taking the
# new one's sockets and pidfile. Real QEMU 10 (TCG), real sockets; the failures are real ones
# (a binary that does not exist, a state file QEMU refuses, a killed QEMU), chosen through the
# test hooks HU_TEST_PRELAUNCH_FAIL and HU_TEST_PRELAUNCH_DIE (HACKING.md).

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	P=p80-$HU_RUN_ID
	HOLDER=
}

teardown() {
	release_qmp
	hu_teardown
}

# Another client on unix socket PATH, connected until release_qmp: QEMU serves one QMP
# client at a time, so host-upgrade's connection there gets no greeting.
hold_qmp() { # PATH
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(60)
s.recv(4096)
print("held", flush=True)
time.sleep(3600)' "$1" >"$T/holder.out" &
	HOLDER=$!
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q held "$T/holder.out" && return 0
		_hu_pid_alive "$HOLDER" || return 1
		sleep 0.1
	done
	return 1
}

release_qmp() {
	[[ -n "${HOLDER:-}" ]] || return 0
	kill "$HOLDER" 2>/dev/null || true
	wait "$HOLDER" 2>/dev/null || true
	HOLDER=
}

# The new QEMU the manifest records beside the old one.
prelaunch_pid() {
	json_get "$(cat "$S/manifest.json")" '[v.get("prelaunch_pid", 0) for v in j["vms"]][0]'
}

agent_args() { # NAME: an agent port (nothing in this guest answers on it)
	echo "-chardev socket,id=qga0,path=$T/$1.qga,server=on,wait=off -device virtio-serial" \
		"-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"
}

start_vm() { # NAME
	vm_start "$1" $(qmp_arg "$1") $(ram_file_args "$1" "$T/$1.ram") $(agent_args "$1")
	vm_wait_tick "$1" 2 240
}

argv_of() { tr '\0' '\n' <"/proc/$1/cmdline"; }

@test "prelaunch round trip: the new QEMU has the guest, the paths and the pidfile; argv identical" {
	start_vm $P
	local old new
	old=$(vm_pid $P)
	argv_of "$old" >"$T/argv.old"
	cat "/proc/$old/cgroup" >"$T/cgroup.old"
	grep -E '^(Uid|Gid|Groups):' "/proc/$old/status" >"$T/ids.old"
	run --separate-stderr hu plan --json --vm $P
	[ "$(plan_vm "$output" $P restart)" = prelaunch ]
	run --separate-stderr hu run --no-reboot --yes --vm $P
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch"* ]]
	new=$(qemu_pids_with "$T/$P.")
	[ -n "$new" ] && [ "$new" != "$old" ]
	run _hu_pid_alive "$old"
	[ "$status" -ne 0 ]
	# The recorded argv, plus the -incoming defer every restored QEMU gets.
	argv_of "$new" >"$T/argv.new"
	diff <(cat "$T/argv.old"; printf '%s\n' -incoming defer) "$T/argv.new"
	# Its cgroup (the old one's, still there when it started) and its ids are the old one's.
	diff "$T/cgroup.old" "/proc/$new/cgroup"
	diff "$T/ids.old" <(grep -E '^(Uid|Gid|Groups):' "/proc/$new/status")
	vm_runs_once $P "$new" qga
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored"]' ]
}

@test "prelaunch: the new QEMU fails to start, to load, or dies before its load: the old one runs on" {
	start_vm $P
	local old how
	old=$(vm_pid $P)
	for how in spawn load kill-new; do
		prelaunch_fails_old_runs_on $how $P "$old" qga
	done
}

@test "prelaunch: kill -9 of host-upgrade at each step, then abort: one QEMU runs the guest" {
	start_vm $P
	local step pid
	for step in aside spawned saved loaded; do
		prelaunch_die_then_abort $step $P
		pid=$(qemu_pids_with "$T/$P.")
		[[ "$pid" =~ ^[0-9]+$ ]]
		vm_runs_once $P "$pid" qga
		run --separate-stderr hu status --json
		echo "$output"
		[[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" =~ ^\[\"(restored|resumed|running)\"\]$ ]]
	done
}

@test "prelaunch: a VM whose RAM is in memfd, or with a tap device, restarts sequentially; plan says why" {
	local m=m80-$HU_RUN_ID
	vm_start $m $(qmp_arg $m) $(ram_memfd_args $m)
	vm_wait_tick $m 2 60
	run --separate-stderr hu plan --json --vm $m
	[ "$(plan_vm "$output" $m restart)" = sequential ]
	[[ "$(plan_vm "$output" $m restart_reason)" == *memfd* ]]
	run --separate-stderr hu run --no-reboot --dry-run --vm $m
	[[ "$output" == *"restart: sequential: RAM not all in shared files"* ]]
	# A tap by ifname=: a second QEMU cannot open it (Device or resource busy).
	local t=t80-$HU_RUN_ID tap=hu80${HU_RUN_ID: -6}
	ip tuntap add dev "$tap" mode tap || skip "cannot create a tap device"
	vm_start $t $(qmp_arg $t) $(ram_file_args $t "$T/$t.ram") -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device virtio-net-pci,netdev=n0 || { ip link del "$tap"; false; }
	run --separate-stderr hu plan --json --vm $t
	ip link del "$tap" 2>/dev/null || true
	[ "$(plan_vm "$output" $t restart)" = sequential ]
	[[ "$(plan_vm "$output" $t restart_reason)" == *"tap network device"* ]]
}

@test "prelaunch: abort cannot ask the new QEMU (its QMP held by another client): neither QEMU is touched; abort again converges" {
	start_vm $P
	local old new t
	old=$(vm_pid $P)
	run --separate-stderr env HU_TEST_PRELAUNCH_DIE=loaded "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P
	[ "$status" -eq 137 ]
	new=$(prelaunch_pid)
	[[ "$new" =~ ^[1-9][0-9]*$ ]] && [ "$new" != "$old" ]
	hold_qmp "$T/$P.qmp"
	run --separate-stderr hu abort --timeout 2
	echo "abort: $stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"cannot tell which QEMU has the guest"* ]]
	# The new QEMU, which runs the guest, is alive and the guest ticks on; the old one waits.
	_hu_pid_alive "$new"
	_hu_pid_alive "$old"
	t=$(vm_last_tick $P)
	vm_wait_tick $P $((t + 2)) 120
	[ "$(prelaunch_pid)" = "$new" ]
	release_qmp
	run --separate-stderr hu abort
	echo "abort again: $stderr"
	[ "$status" -eq 0 ]
	run _hu_pid_alive "$old"
	[ "$status" -ne 0 ]
	vm_runs_once $P "$new" qga
}

@test "prelaunch: the new QEMU dies after its load was started: abort does not resume the old one" {
	start_vm $P
	local old new
	old=$(vm_pid $P)
	run --separate-stderr env HU_TEST_PRELAUNCH_DIE=loaded "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P
	[ "$status" -eq 137 ]
	new=$(prelaunch_pid)
	[[ "$new" =~ ^[1-9][0-9]*$ ]] && [ "$new" != "$old" ]
	kill -KILL "$new"
	while _hu_pid_alive "$new"; do sleep 0.1; done
	for round in 1 2; do # and the same answer when abort is run again
		run --separate-stderr hu abort
		echo "abort $round: $stderr"
		[ "$status" -eq 1 ]
		[[ "$stderr" == *"may have run the guest"* ]]
		_hu_pid_alive "$old"
		# Paused where the save left it, reachable at its own QMP path again.
		[ "$(vm_status $P)" = postmigrate ]
		[ "$(listener_pid "$T/$P.qmp")" = "$old" ]
	done
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["failed"]' ]
}

@test "prelaunch: two VMs at once, each on the new QEMU; the manifest saved by both workers" {
	local Q=q80-$HU_RUN_ID old_p old_q new_p new_q
	start_vm $P
	start_vm $Q
	old_p=$(vm_pid $P)
	old_q=$(vm_pid $Q)
	run --separate-stderr hu run --no-reboot --yes --vm $P --vm $Q
	echo "$stderr"
	[ "$status" -eq 0 ]
	new_p=$(qemu_pids_with "$T/$P.")
	new_q=$(qemu_pids_with "$T/$Q.")
	[ -n "$new_p" ] && [ "$new_p" != "$old_p" ]
	[ -n "$new_q" ] && [ "$new_q" != "$old_q" ]
	vm_runs_once $P "$new_p" qga
	vm_runs_once $Q "$new_q" qga
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored", "restored"]' ]
}
