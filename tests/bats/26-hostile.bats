#!/usr/bin/env bats
# Root on a shared host (#15): what a local user controls — processes named qemu-system-*,
# the sockets their argv names, files in their own directories — must not make host-upgrade
# hang, crash, or write where it should not. The hostile part runs as a real unprivileged
# user (nobody, through setpriv), in a directory of its own under /tmp ($U, since the test's
# own directory is not reachable by other users). Every process a test starts is ended by
# its pid in teardown, also when the test fails.

load helpers
load hostile

HU_VM_MEM=128M

setup() {
	hostile_setup h26
}

teardown() {
	hostile_teardown
}

# fixture_manifest PYCODE [ARG...]: the version-3 fixture manifest (tests/fixtures/status)
# with PYCODE applied to j (ARGs in sys.argv[3:]), into $S.
fixture_manifest() {
	mkdir -m 0700 "$S"
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(j, sys.stdout, indent=1)
' "$BATS_TEST_DIRNAME/../fixtures/status/manifest.json" "$@" >"$S/manifest.json"
	chmod 0600 "$S/manifest.json"
}

# early_boot: the initrd side on $S (as $T + /state), /proc/cmdline saying a restore is
# pending, everything it writes under $T.
early_boot() {
	HU_FAKE_CMDLINE="console=ttyS0 hu.restore=1" LD_PRELOAD=$SHIM ${HANG_GUARD:-} "$HU_BIN" early-boot \
		--state-dir /state --root "$T" --no-modules --wait 1 \
		--run-dir "$T/run" --wants-dir "$T/wants" --dropin-dir "$T/dropin"
}

# Case 5. No unprivileged part: the manifest is root's. A pmem/DAX medium without its device
# (a damaged manifest) crashed early-boot; now the loader refuses it like any corrupt one.
@test "case 5: a devdax medium with \"device\": null is a corrupt manifest: early-boot and status say so, nothing lost" {
	hu_need_shim
	fixture_manifest '
v = j["vms"][0]
v["state"] = "checkpointed"
v["memdevs"][0]["medium"]["device"] = None
'
	cp "$S/manifest.json" "$T/bad.json"
	run --separate-stderr early_boot
	echo "early-boot: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"host-upgrade: early-boot: "*"manifest"*"corrupt"* ]]
	cmp "$T/bad.json" "$S/manifest.json"
	# the restore unit still runs, and says the same
	[ -L "$T/wants/host-upgrade-restore.service" ]
	run --separate-stderr hu status
	echo "status: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == "host-upgrade: status: "*manifest*corrupt* ]]
	cmp "$T/bad.json" "$S/manifest.json"
}

# start_hostile_qemu NAME SCRIPT: SCRIPT (python, from stdin) run by nobody as a process whose
# executable is named qemu-system-x86_64 (a copy of python3: discovery goes by the exe's
# name), with argv "-name guest=NAME -qmp unix:$U/NAME.qmp,server=on,wait=off". SCRIPT
# creates $U/NAME.qmp.ready when it is set up. Its pid goes to $PIDS.
start_hostile_qemu() {
	local name=$1
	[ -x "$U/qemu-system-x86_64" ] || install -o nobody -g nogroup -m 0755 /usr/bin/python3 "$U/qemu-system-x86_64"
	install -o nobody -g nogroup -m 0644 /dev/stdin "$U/$name.py"
	hostile_python "$name" "$U/$name.qmp.ready" "$U/$name.py" -name "guest=$name" \
		-qmp "unix:$U/$name.qmp,server=on,wait=off"
}

# Case 3. A listener that never accepts, its backlog full: connect() to it used to block
# for ever, and with it plan, checkpoint and restore.
@test "case 3: a user's qemu-system-* whose QMP socket never accepts (backlog full): plan and checkpoint say so and finish" {
	local N=h26c3-$HU_RUN_ID
	start_hostile_qemu $N <<'PY'
import signal, socket, sys
path = sys.argv[sys.argv.index("-qmp") + 1].split(",")[0][len("unix:"):]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(0)
# a backlog of 0 holds one connection: ours, never accepted
filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
filler.setblocking(False)
filler.connect(path)
open(path + ".ready", "w").close()
while True:
    signal.pause()
PY
	[ "$(stat -c %U "/proc/$(tail -n 1 "$PIDS")")" = nobody ]
	# (timeout: a hang guard only)
	run --separate-stderr timeout 60 "$HU_BIN" plan --state-dir "$S" --vm $N --timeout 2 --json
	echo "plan: status $status, stdout [$output], stderr [$stderr]"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" $N blockers)" != "[]" ]
	[[ "$(plan_vm "$output" $N blockers)" == *"QMP unreachable at $U/$N.qmp: "*"accepts no connection"* ]]

	run --separate-stderr timeout 60 "$HU_BIN" checkpoint --state-dir "$S" --vm $N --timeout 2
	echo "checkpoint: status $status, stdout [$output], stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N"*"accepts no connection"* ]]
	_hu_pid_alive "$(tail -n 1 "$PIDS")"
}

# Case 6's end, nothing lost: VM N's RAM file (moved to N.ram.away) back in place, restore
# continues the guest, never booted again.
ram_back_then_restored() { # N
	rm "$U/$1.ram"
	mv "$U/$1.ram.away" "$U/$1.ram"
	run --separate-stderr hu restore
	echo "restore: $stderr"
	[ "$status" -eq 0 ]
	vm_wait_ticking "$1" 2 30
	[ "$(vm_boot_count "$1")" -eq 1 ]
}

# checkpointed_vm NAME RAM_FILE: a running guest with its RAM in RAM_FILE, checkpointed into $S
checkpointed_vm() {
	vm_start $1 $(qmp_arg $1) $(ram_file_args $1 "$2")
	vm_wait_tick $1 2 60
	run --separate-stderr hu checkpoint --vm $1
	echo "checkpoint: $stderr"
	[ "$status" -eq 0 ]
}

# Case 6, NAME.log. The symlink is root's (the state dir is root's; who may write there is
# case 2); what would be written through it is a process of the unprivileged user's: restore
# starts a VM's QEMU as the VM's owner with its output on NAME.log, opened as root.
@test "case 6: a symlink NAME.log in the state dir is not followed: the root-owned file it names is not appended to" {
	local N=h26l-$HU_RUN_ID
	checkpointed_vm $N "$T/$N.ram"
	cp "$S/manifest.json" "$T/good.json"
	# The VM as its owner would have it: its QEMU runs as nobody and prints what it likes.
	printf '#!/bin/sh\necho "written by $(id -un)"\nexit 1\n' >"$U/qemu-system-x86_64"
	chmod 0755 "$U/qemu-system-x86_64"
	python3 -c '
import json, sys
p = sys.argv[1]; j = json.load(open(p)); v = j["vms"][0]
v["exe"] = v["argv"][0] = sys.argv[2]
v["uid"] = v["gid"] = 65534
v["groups"] = []
json.dump(j, open(p, "w"))' "$S/manifest.json" "$U/qemu-system-x86_64"
	printf 'root only\n' >"$T/root-owned"
	chmod 0600 "$T/root-owned"
	cp "$T/root-owned" "$T/root-owned.orig"
	ln -s "$T/root-owned" "$S/$N.log"

	run --separate-stderr timeout 60 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	cat "$T/root-owned"
	[ "$status" -eq 1 ]
	cmp "$T/root-owned" "$T/root-owned.orig"
	[[ "$stderr" == *"$N"*"$S/$N.log"*"symbolic link"* ]]
	[ -L "$S/$N.log" ]

	# nothing lost: the VM as it was, the link gone, and restore brings it back
	rm "$S/$N.log"
	cp "$T/good.json" "$S/manifest.json"
	run --separate-stderr hu restore
	echo "restore: $stderr"
	[ "$status" -eq 0 ]
	vm_wait_ticking $N 2 30
	[ "$(vm_boot_count $N)" -eq 1 ]
	[ -f "$S/$N.log" ] && [ ! -L "$S/$N.log" ]
	cmp "$T/root-owned" "$T/root-owned.orig"
}

# Case 6, reading the state dir. Root's, as above.
@test "case 6: a FIFO or a symlink as manifest.json: status says what it is instead of blocking" {
	mkdir -m 0700 "$S"
	mkfifo -m 0600 "$S/manifest.json"
	# (timeout: a hang guard only)
	run --separate-stderr timeout 60 "$HU_BIN" status --state-dir "$S"
	echo "FIFO: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == "host-upgrade: status: "*"not a regular file"* ]]
	rm "$S/manifest.json"
	ln -s "$BATS_TEST_DIRNAME/../fixtures/status/manifest.json" "$S/manifest.json"
	run --separate-stderr timeout 60 "$HU_BIN" status --state-dir "$S"
	echo "symlink: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == "host-upgrade: status: "*"symbolic link"* ]]
}

# Case 6, the atomic write: its temporary file was NAME.tmp.PID, opened O_TRUNC without
# O_EXCL; a FIFO put under that name blocked the write for ever.
@test "case 6: a FIFO where the atomic write's temporary file used to go is not opened" {
	hu_need_shim
	mkdir -m 0700 "$T/run"
	run --separate-stderr timeout 60 bash -c 'mkfifo "$0/early-boot.json.tmp.$$" && exec env \
		HU_FAKE_CMDLINE="hu.restore=1" LD_PRELOAD="$1" "$2" early-boot --state-dir /state --root "$3" \
		--no-modules --wait 1 --run-dir "$0" --wants-dir "$3/wants" --dropin-dir "$3/dropin"' \
		"$T/run" "$SHIM" "$HU_BIN" "$T"
	echo "early-boot: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ] # no manifest, and it says so
	[[ "$stderr" == *"manifest"*"No such file"* ]]
	[ -f "$T/run/early-boot.json" ] && [ ! -L "$T/run/early-boot.json" ]
	json_get "$(cat "$T/run/early-boot.json")" 'j["error"]'
}

# Case 6, the RAM digest. The RAM file is in its owner's directory; after the checkpoint the
# owner puts a FIFO in its place. Opening it for the digest blocked restore for ever (and at
# checkpoint time, after the stop, every VM would have stayed paused).
@test "case 6: the user replaces the RAM file with a FIFO: restore refuses that VM at once, nothing lost" {
	local N=h26r-$HU_RUN_ID
	checkpointed_vm $N "$U/$N.ram"
	[ "$(json_get "$(cat "$S/manifest.json")" 'j["vms"][0]["memdevs"][0]["skipped"]')" = true ]
	as_user mv "$U/$N.ram" "$U/$N.ram.away"
	as_user mkfifo "$U/$N.ram"

	run --separate-stderr timeout 60 "$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N"*"RAM in $U/$N.ram: neither a regular file nor a pmem or device DAX node"* ]]
	[ "$(qemu_count_with "$U/$N.ram")" -eq 0 ]

	ram_back_then_restored $N
}

# Case 6, a device node. The user points the RAM path at a device (a symlink: no privilege
# needed); opening a device node is an act of its own (/dev/watchdog arms a watchdog), so the
# digest refuses it from an O_PATH descriptor. /dev/null stands in; strace shows every open.
@test "case 6: the user points the RAM path at a device node: refused, never opened except with O_PATH" {
	command -v strace >/dev/null || skip "no strace"
	local N=h26d-$HU_RUN_ID
	checkpointed_vm $N "$U/$N.ram"
	as_user mv "$U/$N.ram" "$U/$N.ram.away"
	as_user ln -s /dev/null "$U/$N.ram"

	run --separate-stderr timeout 120 strace -f -qq -o "$T/strace.out" -e trace=open,openat,openat2 \
		"$HU_BIN" restore --state-dir "$S"
	echo "restore: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$N"*"RAM in $U/$N.ram: neither a regular file nor a pmem or device DAX node"* ]]
	only_opened_with_o_path "$T/strace.out" "$U/$N.ram"

	ram_back_then_restored $N
}

# Case 7. No unprivileged part: the manifest is root's (what it records of a RAM path came
# from a QEMU's argv, though). early-boot wrote Wants=/After= for the mount unit of every
# directory above a RAM file, each name built anew and looked for in all the text so far:
# quadratic in the path's components, with unit names far longer than systemd takes.
@test "case 7: the RAM-mounts drop-in of a very deep RAM path is bounded, each unit once, as systemd names them" {
	hu_need_shim
	local deep
	deep=$(printf '/d%.0s' $(seq 2000))/ram
	fixture_manifest '
deep, odd = sys.argv[3], sys.argv[4]
for i, path in ((0, deep), (2, odd), (5, odd.replace("/ram", "/ram2"))):
    v = j["vms"][i]
    v["state"] = "checkpointed"
    d = v["memdevs"][0]
    d["mem_path"] = path
    d["skipped"] = True
    d["medium"] = {"kind": "file", "device": None, "namespace": None, "uuid": None, "size": 0, "mode": None}
' "$deep" "/srv/vm-1/.hidden/ü x/ram"
	# (timeout: a hang guard only)
	HANG_GUARD="timeout 60" run --separate-stderr early_boot
	echo "early-boot: status $status, stderr [$stderr]"
	[ "$status" -ne 124 ]
	local conf=$T/dropin/50-ram-mounts.conf units
	[ -s "$conf" ]
	units=$(sed -n 's/^Wants=//p' "$conf")
	# as many lines as units; each unit once; none longer than systemd takes
	[ "$(grep -c '^After=' "$conf")" -eq "$(wc -l <<<"$units")" ]
	[ -z "$(sort <<<"$units" | uniq -d)" ]
	! awk 'length($0) > 255 { print; bad = 1 } END { exit !bad }' <<<"$units" || false
	# the deep path: its directories while their names fit (2 bytes a level), in order
	[ "$(head -n 3 <<<"$units")" = "$(printf 'd.mount\nd-d.mount\nd-d-d.mount')" ]
	[ "$(grep -c '^d[-d]*\.mount$' <<<"$units")" -ge 100 ]
	[ "$(grep -c '^d[-d]*\.mount$' <<<"$units")" -le 125 ]
	# the odd path, as systemd-escape names it; shared directories once
	local dir
	for dir in /srv /srv/vm-1 /srv/vm-1/.hidden "/srv/vm-1/.hidden/ü x"; do
		grep -qxF "Wants=$(systemd-escape --path --suffix=mount "$dir")" "$conf"
		grep -qxF "After=$(systemd-escape --path --suffix=mount "$dir")" "$conf"
	done
	grep -qxF "Wants=mnt-pmem.mount" "$conf" # web-02 of the fixture, on fsdax
}
