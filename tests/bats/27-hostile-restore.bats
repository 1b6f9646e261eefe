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
	# (stdin closed too: bats waits for what holds its descriptors)
	# shellcheck disable=SC2217
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

# refused_restore DIR WHY [STATUS_TOO]: restore on state dir DIR is refused with WHY on
# stderr, and nothing the manifest names ran; with STATUS_TOO, status says WHY as well.
refused_restore() {
	local dir=$1 why=$2 verb
	for verb in restore ${3:+status}; do
		run --separate-stderr "$HU_BIN" $verb --state-dir "$dir"
		echo "$verb --state-dir $dir: $status [$stderr]"
		[ "$status" -eq 1 ]
		[[ "$stderr" == *"host-upgrade: $verb: "*"$why"* ]]
		[[ "$stderr" != *"starting "* ]]
		[ ! -e "$MARK" ]
	done
}

# Case 2. The state dir is root's: an existing one owned by another user or writable by
# others, a symlink in its place, a FIFO or a symlink as its lock file or manifest, are
# refused, and nothing its manifest names is executed. Before, restore chmod'ed such a dir
# and ran the manifest's argv as its uid (root included); a FIFO lock was taken as a lock.
@test "case 2: a state dir of another user's, writable by others, a symlink, or a FIFO/symlink lock or manifest: refused, nothing executed" {
	local N=h27c2-$HU_RUN_ID D
	MARK=$U/executed
	vm_start $N $(qmp_arg $N) $(ram_file_args $N "$T/$N.ram")
	vm_wait_tick $N 2 60
	run --separate-stderr hu checkpoint --vm $N
	echo "checkpoint: $status [$stderr]"
	[ "$status" -eq 0 ]
	[ "$(stat -c '%u %a' "$S")" = "0 700" ]
	# What the manifest names runs as root: a program that leaves a mark.
	cat >"$T/mark" <<-EOF
		#!/bin/sh
		echo "\$(id -u)" >"$MARK"
		exit 1
	EOF
	chmod 0755 "$T/mark"
	edit_manifest 'j["vms"][0]["exe"] = sys.argv[3]' "$T/mark"
	# copy_state DIR: a copy of the checkpoint in DIR (made, root's, 0700)
	copy_state() {
		mkdir -m 0700 "$1"
		cp -a "$S/manifest.json" "$S/$N.state" "$1/"
	}

	# owned by nobody (made by nobody, in nobody's directory)
	as_user mkdir -m 0700 "$U/st-owned"
	cp -a "$S/manifest.json" "$S/$N.state" "$U/st-owned/"
	refused_restore "$U/st-owned" "state dir $U/st-owned is owned by uid $(id -u nobody) (mode 0700), not by uid 0" status

	# root's, but writable by others (and left so: refused, not "fixed")
	copy_state "$T/st-0777"
	chmod 0777 "$T/st-0777"
	refused_restore "$T/st-0777" "state dir $T/st-0777 is writable by others (owner uid 0, mode 0777)"
	[ "$(stat -c %a "$T/st-0777")" = 777 ]

	# a symlink (in nobody's directory) in place of the dir, to a good copy
	copy_state "$T/st-good"
	as_user ln -s "$T/st-good" "$U/st-link"
	refused_restore "$U/st-link" "state dir $U/st-link: a symbolic link, refused" status

	# a FIFO, or a symlink, as the lock file
	copy_state "$T/st-fifolock"
	mkfifo -m 0600 "$T/st-fifolock/lock"
	refused_restore "$T/st-fifolock" "state dir $T/st-fifolock: lock: not a regular file, refused"
	copy_state "$T/st-linklock"
	ln -s "$T/st-good/lock-target" "$T/st-linklock/lock"
	refused_restore "$T/st-linklock" "state dir $T/st-linklock: lock: a symbolic link, refused"
	[ ! -e "$T/st-good/lock-target" ]

	# a FIFO, or a symlink, as the manifest
	D=$T/st-fifoman
	mkdir -m 0700 "$D"
	cp -a "$S/$N.state" "$D/"
	mkfifo -m 0600 "$D/manifest.json"
	refused_restore "$D" "$D/manifest.json: not a regular file"
	D=$T/st-linkman
	mkdir -m 0700 "$D"
	cp -a "$S/$N.state" "$D/"
	ln -s "$S/manifest.json" "$D/manifest.json"
	refused_restore "$D" "$D/manifest.json: a symbolic link"

	# The control: the same checkpoint in a dir that is root's alone does run what it names.
	run --separate-stderr "$HU_BIN" restore --state-dir "$T/st-good"
	echo "restore (good dir): $status [$stderr]"
	[[ "$stderr" == *"starting $T/mark"* ]]
	[ "$(cat "$MARK")" = 0 ]
}
