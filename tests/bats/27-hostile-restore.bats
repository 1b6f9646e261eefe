#!/usr/bin/env bats
# Root on a shared host (#15), restore's side: a pid a pidfile names (case 1) and the state
# dir (case 2) are things a local user may control. The hostile part runs as a real
# unprivileged user (nobody, through setpriv) in a directory of its own under /tmp ($U).
# Every process a test starts is ended by its pid in teardown, also when the test fails.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	getent passwd nobody >/dev/null && getent group nogroup >/dev/null || skip "no user nobody / group nogroup"
	command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
	U=$(mktemp -d /tmp/hu-h27.XXXXXX)
	chmod 0755 "$U"
	chown nobody:nogroup "$U"
	PIDS=$BATS_TEST_TMPDIR/hostile.pids
}

teardown() {
	local pid
	if [[ -s "$PIDS" ]]; then
		while read -r pid; do
			[[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null
		done <"$PIDS"
	fi
	hu_teardown
	if [[ -n "${U:-}" && "$U" == /tmp/hu-h27.* ]]; then
		rm -rf "$U"
	fi
}

# as_user CMD...: CMD as nobody:nogroup, no supplementary groups
as_user() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

# edit_manifest PYCODE [ARG...]: apply PYCODE to j, the manifest in $S (ARGs in sys.argv[3:])
edit_manifest() {
	python3 -c '
import json, os, sys
p = sys.argv[1]
j = json.load(open(p))
exec(sys.argv[2])
with open(p + ".new", "w") as f:
    json.dump(j, f, indent=1)
os.chmod(p + ".new", 0o600)
os.rename(p + ".new", p)
' "$S/manifest.json" "$@"
}

# Case 1. A daemonized QEMU's pidfile lies in a directory another user can write; that user
# replaced it with the pid of a root process. The load then fails: restore used to SIGKILL
# whatever the pidfile named. Now it acts only on a pid proven to be the QEMU it started.
@test "case 1: a pidfile rewritten by another user to name a root process: the load fails, the root process survives, restore says why" {
	local N=h27c1-$HU_RUN_ID victim wrap=$T/bin/qemu-system-x86_64 i
	local -a a
	read -ra a <<<"$(qmp_arg $N) $(ram_file_args $N "$T/$N.ram") -daemonize"
	vm_start $N "${a[@]}"
	vm_wait_tick $N 2 60
	run --separate-stderr hu checkpoint --vm $N
	echo "checkpoint: $status [$stderr]"
	[ "$status" -eq 0 ]
	# the root process the hostile user wants dead
	sleep 1000 </dev/null >/dev/null 2>&1 3>&- 4>&- &
	victim=$!
	echo "$victim" >>"$PIDS"
	disown "$victim" 2>/dev/null || true
	_hu_pid_alive "$victim"
	# The recorded QEMU, run through a wrapper that lets nobody replace the pidfile (in $U,
	# nobody's directory) once QEMU has daemonized; -pidfile moved there.
	mkdir -p "$T/bin"
	cat >"$wrap" <<-EOF
		#!/bin/sh
		$(command -v "$QEMU") "\$@" || exit \$?
		setpriv --reuid=nobody --regid=nogroup --clear-groups -- \\
			sh -c 'echo $victim >"$U/$N.pid.new" && mv -f "$U/$N.pid.new" "$U/$N.pid"'
		exit 0
	EOF
	chmod 0755 "$wrap"
	edit_manifest '
v = j["vms"][0]
v["exe"] = sys.argv[3]
a = v["argv"]
a[a.index("-pidfile") + 1] = sys.argv[4]
' "$wrap" "$U/$N.pid"
	# the load fails: the saved device state is damaged (same size)
	dd if=/dev/zero of="$S/$N.state" bs=4096 count=4 conv=notrunc status=none

	run --separate-stderr hu restore
	echo "restore: $status"
	echo "$stderr"
	[ "$status" -eq 1 ]
	# the pidfile was rewritten (the hostile part did run) ...
	[ "$(cat "$U/$N.pid")" = "$victim" ]
	# ... and the process it names lives on, and restore says why it left it alone
	_hu_pid_alive "$victim"
	[[ "$stderr" == *"pidfile $U/$N.pid names pid $victim, which is not a process this restore started: left alone"* ]]
	# the QEMU restore did start is ended (proven by descent, through its pidfd)
	for ((i = 0; i < 200; i++)); do
		[ "$(qemu_count_with "$T/$N.ram")" -eq 0 ] && break
		sleep 0.05
	done
	[ "$(qemu_count_with "$T/$N.ram")" -eq 0 ]
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["failed"]' ]
}
