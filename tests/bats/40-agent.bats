#!/usr/bin/env bats
# Guest agent (#6): a Linux guest with qemu-ga (Debian's package in a small initramfs, S3 on
# the QEMU side) goes suspend -> checkpoint -> restore -> wakeup under TCG; its clock is
# right afterwards and its counter continued. Agents that do not answer block, nothing stops.
# The probe (#17): a guest that has not opened its agent port is "closed" without anyone
# connecting to the agent socket; open ports are asked, all at once; neither blocks a guest
# that is not to be suspended.

load helpers

HU_VM_MEM=256M

agent_args() { # NAME
	echo "-chardev socket,id=qga0,path=$T/$1.qga,server=on,wait=off -device virtio-serial" \
		"-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"
}

start_agent_vm() { # NAME [silent]
	local append=$HU_VM_APPEND${2:+ hu.agent=silent} says=AGENT
	[ -z "${2:-}" ] || says=SILENT
	"$BATS_TEST_DIRNAME/../guest/build-agent-guest.sh" "$GUEST_DIR" >/dev/null ||
		skip "cannot build the agent guest (apt-get download qemu-guest-agent)"
	HU_VM_INITRD=$GUEST_DIR/initramfs-agent.cpio.gz HU_VM_APPEND=$append \
		vm_start "$1" $(qmp_arg "$1") $(ram_file_args "$1" "$T/$1.ram") $(agent_args "$1")
	vm_wait_tick "$1" 3 180
	grep -q "^$says " "$(vm_serial "$1")"
	agent_wait_open "$1"
}

# QEMU's view of the agent port: true once a process in the guest opened it.
agent_port_open() { # NAME
	local out
	out=$(qmp "$1" query-chardev) || return 1
	json_get "$out" '[c["frontend-open"] for c in j if c["label"] == "qga0"][0]'
}

# qemu-ga opens the port a moment after the guest printed AGENT: wait for it (plan asks the
# agent only when the port is open).
agent_wait_open() { # NAME
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(agent_port_open "$1")" = true ] && return 0
		sleep 0.2
	done
	echo "the guest of $1 did not open its agent port" >&2
	return 1
}

# Put a listener of our own where each VM's agent socket was (QEMU's moves aside: the VM
# keeps it): whoever connects to the path from argv is counted in $T/accepts.log, one line
# "accept PATH" per connection, and never answered.
listen_agents() { # NAME...
	local n
	local -a paths=()
	for n in "$@"; do
		mv "$T/$n.qga" "$T/$n.qga.qemu"
		paths+=("$T/$n.qga")
	done
	python3 -c '
import socket, sys, select
log = open(sys.argv[1], "a", buffering=1)
ls = []
for p in sys.argv[2:]:
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.listen(16)
    ls.append(s)
open(sys.argv[1] + ".ready", "w").close()
held = []
while True:
    for s in select.select(ls, [], [])[0]:
        c, _ = s.accept()
        held.append(c)
        log.write("accept %s\n" % s.getsockname())
' "$T/accepts.log" "${paths[@]}" >"$T/listener.log" 2>&1 3>&- &
	LISTENER_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		[ -e "$T/accepts.log.ready" ] && return 0
		sleep 0.1
	done
	return 1
}

accepts() { # NAME: connections made to its agent path
	grep -c "^accept $T/$1.qga\$" "$T/accepts.log" || true
}

teardown() {
	[ -z "${LISTENER_PID:-}" ] || kill "$LISTENER_PID" 2>/dev/null || true
	hu_teardown
}

guest_time() { # NAME: the time= of the newest tick line
	_hu_serial_lines "$1" | sed -n 's/^clock \([0-9]*\)$/\1/p' | tail -n1
}

@test "suspend through the agent, checkpoint, restore, wake up; clock set; counter continued" {
	start_agent_vm a40
	local t0
	t0=$(vm_last_tick a40)
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm a40 --suspend-vm a40
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" a40 agent)" = answering ]
	run "$HU_BIN" checkpoint --state-dir "$S" --vm a40 --suspend-vm a40
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"suspending the guest through its agent"* ]]
	grep -q '"suspended_by_us":true' "$S/manifest.json"
	# a long enough outage that the guest clock is visibly behind
	sleep 4
	run "$HU_BIN" restore --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(vm_status a40)" = running ]
	vm_wait_tick a40 $((t0 + 3)) 60
	[ "$(vm_boot_count a40)" -eq 1 ]
	run --separate-stderr "$HU_BIN" status --json --state-dir "$S"
	echo "$output"
	local step
	step=$(json_get "$output" 'j["vms"][0]["clock_step_ms"]')
	# recorded; small for a suspended guest, whose kernel re-reads the RTC on
	# resume (seen: 0.5–1.5 s after a 4 s outage)
	[[ "$step" =~ ^-?[0-9]+$ ]]
	# and now it is right: the guest's wall clock within 2 s of the host's
	vm_wait_ticking a40 2
	local g h
	g=$(guest_time a40) h=$(date +%s)
	echo "guest $g host $h"
	[ $((h - g)) -le 2 ] && [ $((g - h)) -le 2 ]
}

@test "a guest that must be suspended but has no agent, or a silent one, blocks; nothing stops" {
	# no agent chardev at all
	vm_start n40 $(qmp_arg n40) $(ram_file_args n40 "$T/n40.ram")
	# an agent port, but nothing in the guest answers on it
	vm_start s40 $(qmp_arg s40) $(ram_file_args s40 "$T/s40.ram") $(agent_args s40)
	vm_wait_tick n40 2 180
	vm_wait_tick s40 2 180
	local pn ps
	pn=$(vm_pid n40) ps=$(vm_pid s40)
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm n40 --vm s40 --suspend
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" n40 blockers)" == *"no guest agent"* ]]
	[[ "$(plan_vm "$output" s40 blockers)" == *"guest agent at $T/s40.qga does not answer"* ]]
	# the test guest loads no virtio-console driver: the port stays closed
	[[ "$(plan_vm "$output" s40 blockers)" == *"the guest has not opened the agent port"* ]]
	[ "$(plan_vm "$output" n40 agent)" = none ]
	[ "$(plan_vm "$output" s40 agent)" = closed ]
	run "$HU_BIN" checkpoint --state-dir "$S" --vm n40 --vm s40 --suspend
	[ "$status" -eq 1 ]
	[ "$(vm_pid n40)" = "$pn" ] && [ "$(vm_pid s40)" = "$ps" ]
	[ "$(vm_status n40)" = running ] && [ "$(vm_status s40)" = running ]
	# without --suspend the same VMs are fine
	run "$HU_BIN" plan --state-dir "$S" --vm n40 --vm s40
	[ "$status" -eq 0 ]
}

@test "agent channels without agents: closed ones are never connected to, a hung one is asked; neither blocks" {
	local c=(c40a-$HU_RUN_ID c40b-$HU_RUN_ID c40c-$HU_RUN_ID c40d-$HU_RUN_ID) h=h40-$HU_RUN_ID n vms=()
	# one guest whose "agent" opened the port and hangs
	start_agent_vm "$h" silent
	vms+=(--vm "$h")
	# four with an agent port no process in them opens (QMP answers from the start: plan
	# need not wait for them to boot)
	for n in "${c[@]}"; do
		vm_start "$n" $(qmp_arg "$n") $(agent_args "$n")
		vms+=(--vm "$n")
	done
	for n in "${c[@]}"; do
		[ "$(agent_port_open "$n")" = false ]
	done
	listen_agents "${c[@]}" "$h"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" "${vms[@]}"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	cat "$T/accepts.log"
	# the open port was asked (so the count below could see a connection) ...
	[ "$(accepts "$h")" -ge 1 ]
	# ... the closed ones never were
	for n in "${c[@]}"; do
		[ "$(accepts "$n")" -eq 0 ]
	done
	for n in "${c[@]}"; do
		[ "$(plan_vm "$output" "$n" agent)" = closed ]
		[ "$(plan_vm "$output" "$n" blockers)" = "[]" ]
	done
	[ "$(plan_vm "$output" "$h" agent)" = not-answering ]
	[ "$(plan_vm "$output" "$h" blockers)" = "[]" ]
	# the table says the same
	run --separate-stderr "$HU_BIN" plan --state-dir "$S" "${vms[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"$h "*" not-answering "*" ok"* ]]
	[[ "$output" == *"${c[0]} "*" closed "*" ok"* ]]
	# a guest to be suspended needs its agent: each is blocked, and says why
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" "${vms[@]}" --suspend
	echo "$output"
	[ "$status" -eq 1 ]
	for n in "${c[@]}"; do
		[[ "$(plan_vm "$output" "$n" blockers)" == *"guest agent at $T/$n.qga does not answer (the guest has not opened the agent port: no agent runs in it)"* ]]
		[ "$(accepts "$n")" -eq 0 ]
	done
	[[ "$(plan_vm "$output" "$h" blockers)" == *"guest agent at $T/$h.qga does not answer (no reply within 3 s)"* ]]
	# and checkpoint stops none of them
	run "$HU_BIN" checkpoint --state-dir "$S" "${vms[@]}" --suspend
	[ "$status" -eq 1 ]
	for n in "${c[@]}" "$h"; do
		[ "$(vm_status "$n")" = running ]
	done
}
