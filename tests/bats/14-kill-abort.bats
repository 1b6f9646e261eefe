#!/usr/bin/env bats
# kill -9 of `checkpoint` at several points, then `abort`: every VM comes back running
# exactly once (its original QEMU resumed, or restored from a complete save), guests continue
# without a cold boot, and a second `abort` changes nothing.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	K14A=k14a-$HU_RUN_ID K14B=k14b-$HU_RUN_ID K14C=k14c-$HU_RUN_ID
	VMS=("$K14A" "$K14B" "$K14C")
}

# Lines of the journal after line $1 mention phase $2?
journal_has_phase() {
	[[ -s "$S/journal.jsonl" ]] &&
		tail -n "+$(($1 + 1))" "$S/journal.jsonl" | grep -q -F "\"event\":\"phase\",\"detail\":\"$2\""
}

journal_lines() {
	if [[ -s "$S/journal.jsonl" ]]; then wc -l <"$S/journal.jsonl"; else echo 0; fi
}

# Three VMs: RAM in place (-qmp), 1 GiB of private RAM (copied: its save keeps the
# checkpoint busy with VMs stopped), RAM in place (-chardev socket + -mon).
start_vms() {
	local -a a c
	read -ra a <<<"$(qmp_arg $K14A) $(ram_file_args $K14A "$T/$K14A.ram")"
	read -ra c <<<"$(mon_args $K14C) $(ram_file_args $K14C "$T/$K14C.ram")"
	vm_start $K14A "${a[@]}"
	HU_VM_MEM=1G vm_start $K14B $(qmp_arg $K14B)
	vm_start $K14C "${c[@]}"
	local v
	for v in "${VMS[@]}"; do
		vm_wait_tick $v 2 60
	done
}

# Every VM runs exactly once: one QEMU each (the original or a restored one, then the
# original is gone and the pidfile names the new one), running, ticking, never rebooted;
# status shows no VM left checkpointed or failed. Sets PID1[VM].
check_all_back() {
	local v
	declare -gA PID1=()
	for v in "${VMS[@]}"; do
		[ "$(qemu_count_with "$T/$v.")" -eq 1 ]
		PID1[$v]=$(qemu_pids_with "$T/$v.")
		if [[ "${PID1[$v]}" != "${PID0[$v]}" ]]; then
			run _hu_pid_alive "${PID0[$v]}"
			[ "$status" -ne 0 ]
			[ "$(vm_pid $v)" = "${PID1[$v]}" ]
		fi
		[ "$(vm_status $v)" = running ]
	done
	for v in "${VMS[@]}"; do
		vm_wait_tick $v $((TICK0[$v] + 2)) 30
		[ "$(vm_boot_count $v)" -eq 1 ]
	done
	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" '[v["name"] for v in j["vms"] if v["state"] not in ("running", "restored")]')" = '[]' ]
}

# A second abort changes nothing.
check_abort_again() {
	local v
	run --separate-stderr hu abort
	echo "$stderr"
	[ "$status" -eq 0 ]
	for v in "${VMS[@]}"; do
		[ "$(qemu_pids_with "$T/$v.")" = "${PID1[$v]}" ]
	done
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["name"] for v in j["vms"] if v["state"] not in ("running", "restored")]')" = '[]' ]
}

dump_state() {
	local v
	echo "--- checkpoint output:"
	cat "$T/ck.out"
	echo "--- status:"
	hu status --json
	echo "--- journal:"
	tail -n "+$((J0 + 1))" "$S/journal.jsonl"
	for v in "${VMS[@]}"; do
		echo "--- $v: QEMU pids: $(qemu_pids_with "$T/$v." | tr '\n' ' ')"
		tail -n 3 "$S/$v.log" 2>/dev/null
	done
}

# Start `checkpoint` in the background and kill -9 it at point $1:
#   sleep:SECONDS   after that long
#   phase:NAME      as soon as the journal shows that phase
#   quit            in the quit phase: VM 3 is frozen (SIGSTOP) right after its save, so it
#                   cannot act on its `quit` while the others quit; once they are gone the
#                   checkpoint is killed and VM 3 thawed (it then quits: it was told to)
#   quit-frozen     the same, but VM 3 stays frozen (the caller thaws it)
#   quit-hung       VM 3 frozen the same way, and the checkpoint is not killed: it
#                   finishes by itself (its exit status in CK_RC)
# Sets PID0/TICK0/J0 (and FROZE for the quit ones); prints a line on fd 3.
kill_checkpoint() {
	local when=$1 v ck i stopped=0 what
	declare -gA PID0=() TICK0=()
	for v in "${VMS[@]}"; do
		PID0[$v]=$(vm_pid $v)
		TICK0[$v]=$(vm_last_tick $v)
	done
	J0=$(journal_lines)
	: >"$T/ck.out"
	"$HU_BIN" checkpoint --state-dir "$S" --vm "$K14A" --vm "$K14B" --vm "$K14C" \
		</dev/null >"$T/ck.out" 2>&1 3>&- 4>&- &
	ck=$!
	case "$when" in
	sleep:*) sleep "${when#sleep:}" ;;
	phase:*)
		for ((i = 0; i < 6000; i++)); do
			journal_has_phase "$J0" "${when#phase:}" && break
			_hu_pid_alive "$ck" || break
			sleep 0.002
		done
		;;
	quit | quit-frozen | quit-hung)
		for ((i = 0; i < 6000; i++)); do
			grep -q -F "$K14C: saved" "$T/ck.out" && break
			_hu_pid_alive "$ck" || break
			sleep 0.001
		done
		# The race this sets up can be lost (the checkpoint reached quit first):
		# FROZE says whether VM 3 was frozen while its QEMU still existed.
		FROZE=0
		kill -STOP "${PID0[$K14C]}" 2>/dev/null && FROZE=1
		for ((i = 0; i < 1000; i++)); do
			! _hu_pid_alive "${PID0[$K14A]}" && ! _hu_pid_alive "${PID0[$K14B]}" && break
			_hu_pid_alive "$ck" || break
			sleep 0.01
		done
		;;
	esac
	CK_RC=0
	if [[ "$when" == quit-hung ]]; then
		wait "$ck" || CK_RC=$?
	else
		kill -KILL "$ck" 2>/dev/null || true
		wait "$ck" 2>/dev/null || true
	fi
	[[ "$when" == quit ]] && kill -CONT "${PID0[$K14C]}"
	what=$(tail -n "+$((J0 + 1))" "$S/journal.jsonl" 2>/dev/null |
		sed -n 's/.*"event":"phase","detail":"\([^"]*\)".*/\1/p' | tail -n 1)
	# how many VMs were stopped or gone when it died (a frozen one counts)
	for v in "${VMS[@]}"; do
		if [[ "$when" == quit* && "$v" == "$K14C" ]] || ! _hu_pid_alive "${PID0[$v]}" ||
			[[ "$(QMP_TIMEOUT=3 vm_status $v 2>/dev/null)" != running ]]; then
			stopped=$((stopped + 1))
		fi
	done
	echo "# kill at $when: last journal phase '${what:-none}', $stopped VM(s) stopped or gone" >&3
	((stopped == 0)) || ((STOPPED_ROUNDS += 1))
}

# kill_checkpoint quit-frozen|quit-hung until VM 3 was frozen with its QEMU still there.
# Freezing it between its save and its quit is a race with the checkpoint (a
# millisecond or two): when it is lost, everything is put back and it is tried again.
freeze_in_quit() {
	local attempt
	for attempt in 1 2 3 4 5 6; do
		kill_checkpoint "$1"
		# quit-hung: the checkpoint has finished; it says whether it had to kill VM 3
		# (kill -STOP also succeeds on a QEMU already exiting: FROZE alone cannot tell)
		if [[ "$1" == quit-hung ]]; then
			((FROZE)) && grep -q -F "$K14C: QEMU pid ${PID0[$K14C]} did not quit; killing it" "$T/ck.out" &&
				return 0
		else
			((FROZE)) && _hu_pid_alive "${PID0[$K14C]}" && return 0
		fi
		echo "# attempt $attempt: VM 3 quit before it could be frozen; again" >&3
		kill -CONT "${PID0[$K14C]}" 2>/dev/null || true
		run --separate-stderr hu abort
		[ "$status" -eq 0 ]
		check_all_back
	done
	skip "VM 3 always quit before the test could freeze it (6 attempts)"
}

kill_round() {
	kill_checkpoint "$1"
	run --separate-stderr hu abort
	echo "abort ($1): status $status"
	echo "$stderr"
	if [ "$status" -ne 0 ]; then dump_state; fi
	[ "$status" -eq 0 ]
	check_all_back
	check_abort_again
}

@test "kill -9 of checkpoint at several points, then abort: every VM runs exactly once, no cold boot" {
	start_vms
	local w
	STOPPED_ROUNDS=0
	for w in sleep:0.02 sleep:0.08 sleep:0.15 sleep:0.3 phase:checkpointing phase:saved quit sleep:0.6; do
		kill_round "$w"
	done
	# kills landed while VMs were stopped (mid-save or mid-quit)
	echo "# $STOPPED_ROUNDS round(s) killed with VMs stopped" >&3
	[ "$STOPPED_ROUNDS" -ge 2 ]
}

@test "kill -9 in the quit phase with one QEMU hung: abort restores the others, never starts it twice; a re-run converges" {
	start_vms
	STOPPED_ROUNDS=0
	freeze_in_quit quit-frozen
	# the frozen original still exists: abort must not start a second QEMU for it
	run --separate-stderr hu abort --timeout 2
	echo "abort: status $status"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$K14C"* ]]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$(plan_vm "$output" "$K14A" state)" = restored ]
	[ "$(plan_vm "$output" "$K14B" state)" = restored ]
	[ "$(plan_vm "$output" "$K14C" state)" = failed ]
	[ -n "$(plan_vm "$output" "$K14C" error)" ]
	[ "$(qemu_pids_with "$T/$K14C.")" = "${PID0[$K14C]}" ]
	[ "$(qemu_count_with "$T/$K14A.")" -eq 1 ]
	[ "$(qemu_count_with "$T/$K14B.")" -eq 1 ]
	vm_wait_tick $K14A $((TICK0[$K14A] + 2)) 30
	vm_wait_tick $K14B $((TICK0[$K14B] + 2)) 30

	# thawed, it acts on the quit it was sent and exits (or, if that never arrived, stays
	# stopped after its save); either way a re-run of abort brings it back exactly once
	kill -CONT "${PID0[$K14C]}"
	vm_wait_exit $K14C 15 || true
	run --separate-stderr hu abort
	echo "abort again: status $status"
	echo "$stderr"
	if [ "$status" -ne 0 ]; then dump_state; fi
	[ "$status" -eq 0 ]
	check_all_back
	check_abort_again
}

@test "a QEMU that does not act on quit is killed by the checkpoint: it never outlives its save, and restore brings every VM back once" {
	start_vms
	STOPPED_ROUNDS=0
	freeze_in_quit quit-hung
	cat "$T/ck.out"
	# It waited for the quit, then killed the frozen QEMU: saved, so checkpointed.
	[ "$CK_RC" -eq 0 ]
	grep -q -F "$K14C: QEMU pid ${PID0[$K14C]} did not quit; killing it" "$T/ck.out"
	run _hu_pid_alive "${PID0[$K14C]}"
	[ "$status" -ne 0 ]
	run --separate-stderr hu status --json
	[ "$(plan_vm "$output" "$K14C" state)" = checkpointed ]
	run --separate-stderr hu restore
	echo "restore: status $status"
	echo "$stderr"
	[ "$status" -eq 0 ]
	check_all_back
	check_abort_again
}
