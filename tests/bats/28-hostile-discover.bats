#!/usr/bin/env bats
# Root on a shared host (#15), cases 4 and 8: discovery takes every process whose executable
# is named qemu-system-*, whoever runs it. What such a process of another user can do to
# plan and restore (an oversized command line, a thousand of them, the name of a real VM),
# and how a QEMU that runs as another user is planned, saved and restored as that user.
# The hostile processes run as a real unprivileged user (nobody, through setpriv) from a
# directory of theirs under /tmp ($U); each is ended by its pid in teardown, also when the
# test fails. They live only as long as the test needs them: other test runs on this host
# see them too.

load helpers
load hostile

HU_VM_MEM=128M

setup() {
	hostile_setup h28
	NOBODY=$(id -u nobody)
}

teardown() {
	hostile_teardown
}

# hostile NAME ARG...: a process of nobody whose executable is $U/qemu-system-x86_64 (a copy of
# python3, waiting for a signal), argv ARG...; it creates $U/NAME.ready once up. Pid to $PIDS.
hostile() {
	local name=$1
	shift
	hostile_python "$name" "$U/$name.ready" -c \
		'import signal, sys; open(sys.argv[1], "w").close(); signal.pause()' "$U/$name.ready" "$@"
}

# plan_pid JSON PID KEY: one field of the plan --json entry of this pid
plan_pid() {
	json_get "$1" "[v for v in j['vms'] if v['pid'] == $2][0]['$3']"
}

# checkpointed_vm NAME [QEMU_ARG...]: a running guest with its RAM in $T/NAME.ram, checkpointed
checkpointed_vm() {
	local name=$1
	shift
	vm_start $name $(qmp_arg $name) $(ram_file_args $name "$T/$name.ram") "$@"
	vm_wait_tick $name 2 60
	run --separate-stderr hu checkpoint --vm $name
	echo "checkpoint: $stderr"
	[ "$status" -eq 0 ]
	[ "$(qemu_count_with "$T/$name.")" -eq 0 ]
}

# restore_continues NAME: restore succeeds, and the guest goes on where it was (no cold boot)
restore_continues() {
	run --separate-stderr timeout 120 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 0 ]
	vm_wait_ticking $1 2 30
	[ "$(vm_boot_count $1)" -eq 1 ]
	[ "$(json_get "$(hu status --json)" 'j["vms"][0]["state"]')" = restored ]
}

# Case 4. One oversized process made the whole /proc scan fail (plan: "cannot list the
# processes"), or (a command line over 256 KiB) was passed over in silence, though it may
# be a real VM that the reboot would take down. Now each is listed, skipped, with the reason.
@test "case 4: a user's qemu-system-* with a huge command line is listed as skipped, with why; the scan goes on" {
	local N=h28a-$HU_RUN_ID keys big
	vm_start $N $(qmp_arg $N)
	keys=$(python3 -c 'print(",".join("k%d=v" % i for i in range(300)))')
	big=$(head -c 100000 /dev/zero | tr '\0' x)
	hostile args $(seq 5000)
	local p_args
	p_args=$(tail -n 1 "$PIDS")
	hostile keys -object "memory-backend-ram,$keys"
	local p_keys
	p_keys=$(tail -n 1 "$PIDS")
	hostile long "$big" "$big" "$big"
	local p_long
	p_long=$(tail -n 1 "$PIDS")
	[ "$(stat -c %U /proc/$p_args)" = nobody ]

	run --separate-stderr timeout 60 "$HU_BIN" plan --state-dir "$S" --json
	echo "plan: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ] # the skipped ones block: each may be a VM the reboot would lose
	[ "$(plan_vm "$output" $N blockers)" = '[]' ]
	[ "$(plan_vm "$output" $N skipped)" = null ]
	[ "$(plan_pid "$output" $p_args skipped)" = "its command line has more than 4096 arguments, or an option with more than 256 keys" ]
	[ "$(plan_pid "$output" $p_keys skipped)" = "its command line has more than 4096 arguments, or an option with more than 256 keys" ]
	[ "$(plan_pid "$output" $p_long skipped)" = "its command line is longer than 256 KiB" ]
	local p
	for p in $p_args $p_keys $p_long; do
		[ "$(plan_pid "$output" $p name)" = "pid-$p" ]
		[ "$(plan_pid "$output" $p user)" = nobody ]
		[[ "$(plan_pid "$output" $p blockers)" == '["not examined: its command line '* ]]
	done
	# the table says so too, and a plan of the VM alone is not held up
	run --separate-stderr timeout 60 "$HU_BIN" plan --state-dir "$S"
	[ "$status" -eq 1 ]
	[[ "$output" == *"pid-$p_long "*"nobody     blocked: not examined: its command line is longer than 256 KiB"* ]]
	run --separate-stderr timeout 60 "$HU_BIN" plan --state-dir "$S" --vm $N
	echo "plan --vm: status $status, stdout [$output], stderr [$stderr]"
	[ "$status" -eq 0 ]
}

# Case 4, restore. The scan's failure made restore exit 1 having started nothing.
@test "case 4: restore goes on past a user's oversized qemu-system-* process" {
	local N=h28b-$HU_RUN_ID
	checkpointed_vm $N
	hostile args $(seq 5000)
	restore_continues $N
}

# Case 4, a look-alike: a process of another user with the VM's -name, QMP path and RAM path
# in its argv made restore refuse the real VM as "already running".
@test "case 4: a look-alike of another user with the VM's name, QMP socket and RAM path does not block its restore" {
	local N=h28g-$HU_RUN_ID
	checkpointed_vm $N
	hostile lookalike -name "guest=$N" -qmp "unix:$T/$N.qmp,server=on,wait=off" \
		-object "memory-backend-file,id=ram0,size=128M,mem-path=$T/$N.ram,share=on"
	restore_continues $N
	_hu_pid_alive "$(tail -n 1 "$PIDS")" # the look-alike is left alone
}

# Case 4, the safety side: a QEMU of the same user and binary that discovery cannot examine
# may be this very VM, started again: restore must not start a second one.
@test "case 4: a QEMU of the VM's user and binary that cannot be examined keeps restore from starting the VM" {
	local N=h28c-$HU_RUN_ID i pid
	checkpointed_vm $N
	# root's real QEMU, nothing of a guest, 5000 arguments (2500 times "-name")
	local -a many=()
	for ((i = 0; i < 2500; i++)); do many+=(-name "guest=$N"); done
	qemu-system-x86_64 -machine none -display none -S -nodefaults "${many[@]}" -pidfile "$T/$N.big.pid" \
		</dev/null >"$T/$N.big.out" 2>&1 3>&- 4>&- &
	pid=$!
	echo "$pid" >>"$PIDS"
	disown "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		[[ -s "$T/$N.big.pid" ]] && break
		_hu_pid_alive "$pid" || break
		sleep 0.05
	done
	_hu_pid_alive "$pid" || { cat "$T/$N.big.out"; false; }
	[ "$(tr '\0' '\n' </proc/$pid/cmdline | wc -l)" -gt 4096 ]
	run --separate-stderr timeout 60 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N: pid $pid runs /usr/bin/qemu-system-x86_64 as the same user and was not examined"*"not started, in case it is this VM"* ]]
	[ "$(qemu_count_with "$T/$N.ram")" -eq 0 ]
	# once it is gone, the VM comes back
	hostile_kill
	restore_continues $N
}

# Case 4, too many. More than 1024 qemu-system-* processes failed the scan; now those past
# 1024 are listed by pid, user and reason, and restore of a root VM is not held up by them.
@test "case 4: 1100 qemu-system-* processes of a user: listed, those past 1024 skipped; restore goes on" {
	local N=h28d-$HU_RUN_ID
	checkpointed_vm $N
	install -o nobody -g nogroup -m 0755 /bin/sleep "$U/qemu-system-x86_64"
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- bash -c \
		'for i in $(seq 1100); do "$0/qemu-system-x86_64" infinity & echo $!; done' "$U" >"$PIDS" 2>"$T/many.err"
	[ "$(wc -l <"$PIDS")" -eq 1100 ]
	local n=0 pid
	for ((i = 0; i < 200; i++)); do
		n=0
		while read -r pid; do
			[[ "$(readlink /proc/$pid/exe 2>/dev/null)" == "$U/qemu-system-x86_64" ]] && n=$((n + 1))
		done <"$PIDS"
		((n == 1100)) && break
		sleep 0.1
	done
	[ "$n" -eq 1100 ]

	run --separate-stderr timeout 120 "$HU_BIN" plan --state-dir "$S" --json --timeout 1
	echo "plan: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	printf '%s\n' "$output" >"$T/plan.json"
	# every one listed, by pid and user; those past 1024 not examined, and said so
	python3 - "$T/plan.json" "$NOBODY" "$U/qemu-system-x86_64" <<-'PY'
		import json, sys
		j = json.load(open(sys.argv[1]))
		ours = [v for v in j["vms"] if v["uid"] == int(sys.argv[2]) and v["name"].startswith("pid-")]
		past = [v for v in j["vms"] if v["skipped"] == "more than 1024 qemu-system-* processes on the host"]
		print(len(ours), len(past))
		assert len(ours) >= 1100
		assert len(past) >= 1100 - 1024
		assert all(v["blockers"] == ["not examined: " + v["skipped"]] for v in past)
	PY

	run --separate-stderr timeout 120 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	hostile_kill
	[ "$status" -eq 0 ]
	vm_wait_ticking $N 2 30
	[ "$(vm_boot_count $N)" -eq 1 ]
}

# Case 8. QEMU 10 drops to another user itself with -run-with user=USER (-runas before 9.x):
# plan did not say so, checkpoint had it write its state into our root-only directory (which
# it cannot, as that user), and restore decided from argv alone to start it as root.
@test "case 8: a QEMU with -run-with user=nobody: plan says who it runs as; round trip; restored, it runs as nobody" {
	[[ "$(hu_fs_type "$T")" != tmpfs ]] || skip "$T is on tmpfs"
	local N=h28e-$HU_RUN_ID
	vm_start $N $(qmp_arg $N) $(ram_file_args $N "$T/$N.ram") -run-with user=nobody
	vm_wait_tick $N 2 60
	local pid0
	pid0=$(vm_pid $N)
	[ "$(stat -c %U /proc/$pid0)" = nobody ]

	run --separate-stderr hu plan --json --vm $N
	echo "plan: $output $stderr"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $N user)" = nobody ]
	[ "$(plan_vm "$output" $N uid)" = "$NOBODY" ]
	[ "$(plan_vm "$output" $N runas)" = nobody ]
	[ "$(plan_vm "$output" $N save)" = in-place ]
	run --separate-stderr hu plan --vm $N
	[ "$status" -eq 0 ]
	[[ "$output" == *"USER       STATUS"* ]]
	[[ "$output" == *"$N "*" nobody     ok"* ]]

	run --separate-stderr hu checkpoint --vm $N
	echo "checkpoint: $stderr"
	[ "$status" -eq 0 ]
	[ "$(qemu_count_with "$T/$N.")" -eq 0 ]
	[ "$(stat -c '%U %a' "$S/$N.state")" = "root 600" ]
	local pre
	pre=$(vm_last_tick $N)

	run --separate-stderr hu restore
	echo "restore: $stderr"
	[ "$status" -eq 0 ]
	local pid1
	pid1=$(json_get "$(hu status --json)" 'j["vms"][0]["pid"]')
	[ "$pid1" != "$pid0" ]
	[ "$(qemu_pids_with "$T/$N.")" = "$pid1" ]
	# started as root, QEMU dropped to nobody itself (real, effective and saved uid)
	[ "$(awk '/^Uid:/ { print $2, $3, $4 }' /proc/$pid1/status)" = "$NOBODY $NOBODY $NOBODY" ]
	vm_wait_tick $N $((pre + 3)) 30
	[ "$(vm_boot_count $N)" -eq 1 ]
	[ "$(vm_status $N)" = running ]
	# the state file is not left open in it
	local fd
	for fd in /proc/$pid1/fd/*; do
		[ "$(readlink "$fd" 2>/dev/null)" != "$S/$N.state" ] || false
	done
}

# edit_manifest PYCODE [ARG...]: PYCODE applied to v, the first VM of $S/manifest.json
edit_manifest() {
	python3 -c '
import json, sys
p = sys.argv[1]; j = json.load(open(p)); v = j["vms"][0]
exec(sys.argv[2])
json.dump(j, open(p, "w"))' "$S/manifest.json" "$@"
}

# Case 8, restore's side. The argv of a process of nobody asked QEMU to "drop" to root, or its
# binary is one nobody can replace: restore ran it as root. Now it refuses, saying why, and
# runs nothing; the VM is still there to be restored.
@test "case 8: restore refuses to start as root a QEMU that ran as nobody with -run-with user=root, or a binary another user owns" {
	local N=h28f-$HU_RUN_ID
	checkpointed_vm $N
	cp "$S/manifest.json" "$T/good.json"
	local X=$U/bin/qemu-system-x86_64
	install -d -o nobody -g nogroup -m 0755 "$U/bin"
	printf '#!/bin/sh\nid -u >>%s/ran-as\nexit 1\n' "$U" >"$X"
	chown nobody:nogroup "$X"
	chmod 0755 "$X"

	# a process of nobody whose argv says -run-with user=root
	edit_manifest 'v["exe"] = v["argv"][0] = sys.argv[3]
v["uid"] = v["gid"] = int(sys.argv[4])
v["groups"] = []
v["argv"] += ["-run-with", "user=root"]' "$X" "$NOBODY"
	run --separate-stderr timeout 60 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N: its command line asks QEMU to run as 'root' (uid 0), but it ran as uid $NOBODY"* ]]
	[ ! -e "$U/ran-as" ]

	# root's VM, its binary now in nobody's directory and nobody's
	cp "$T/good.json" "$S/manifest.json"
	edit_manifest 'v["exe"] = v["argv"][0] = sys.argv[3]' "$X"
	run --separate-stderr timeout 60 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N: QEMU binary $X: $U is owned by another user (uid $NOBODY, mode 0755): refusing to run it as root"* ]]
	[ ! -e "$U/ran-as" ]

	# plan says the same before anything stops: a process of nobody asking for root
	hostile asks-root -name "guest=h28f-x-$HU_RUN_ID" -run-with user=root
	run --separate-stderr timeout 60 "$HU_BIN" plan --state-dir "$S" --json --vm "h28f-x-$HU_RUN_ID" --timeout 1
	echo "plan: status $status, stdout [$output]"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" "h28f-x-$HU_RUN_ID" runas)" = root ]
	[ "$(plan_vm "$output" "h28f-x-$HU_RUN_ID" user)" = nobody ]
	[[ "$(plan_vm "$output" "h28f-x-$HU_RUN_ID" blockers)" == *"restore would not start it: its command line asks QEMU to run as 'root' (uid 0), but it ran as uid $NOBODY"* ]]

	# nothing lost: the VM as it was comes back
	cp "$T/good.json" "$S/manifest.json"
	restore_continues $N
}
