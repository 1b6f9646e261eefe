#!/usr/bin/env bats
# QEMU's -readconfig files are part of the command line (#17): Proxmox VE starts every q35
# guest with one that defines 18 devices. Plan must not call them hot-plugged, a device really
# added over QMP stays one blocker, and restore, which replays the argv and so reads the file
# again, refuses the VM whose file changed since the checkpoint (and only that one).
# Real QEMU 10 (TCG), q35, the layout of tests/fixtures/readconfig/q35.cfg.

load helpers
load hostile

HU_VM_MEM=128M
# A q35 guest with 18 more devices boots slowly under TCG on a loaded machine: wait long.
Q35_CFG=$BATS_TEST_DIRNAME/../fixtures/readconfig/q35.cfg

teardown() {
	hostile_teardown # ends the hostile test's processes by pid, then hu_teardown
}

# A q35 guest reading its own copy of the fixture: -machine merges, so q35 replaces the
# helpers' pc and keeps accel=tcg.
start_q35() {
	local name=$1
	cp "$Q35_CFG" "$T/$name.cfg"
	vm_start "$name" $(qmp_arg "$name") -machine q35 -readconfig "$T/$name.cfg"
}

# What QEMU itself made of the file: the ids under /machine/peripheral.
peripheral_ids() {
	local out
	out=$(qmp "$1" '{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}') || return 1
	json_get "$out" '" ".join(sorted(e["name"] for e in j if e["type"].startswith("child<")))'
}

@test "a q35 guest with -readconfig of Proxmox's shape: no hot-plug blocker; device_add is exactly one" {
	local A=r70a-$HU_RUN_ID
	start_q35 $A
	vm_wait_tick $A 2 300
	# QEMU created the file's 18 devices (and the commented-out switch is not among them)
	local ids
	ids=$(peripheral_ids $A)
	echo "$ids"
	[ "$(wc -w <<<"$ids")" -eq 18 ]
	[[ " $ids " == *" pci.3 "* && " $ids " == *" ich9-pcie-port-4 "* && " $ids " != *unused* ]]

	run --separate-stderr hu plan --json --vm $A
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" $A blockers)" = '[]' ]

	# hot-plugged into one of the file's root ports: that one device, nothing else
	run qmp $A '{"execute":"device_add","arguments":{"driver":"virtio-rng-pci","id":"rng-hot","bus":"ich9-pcie-port-1"}}'
	echo "$output"
	[ "$status" -eq 0 ]
	run --separate-stderr hu plan --json --vm $A
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" $A blockers)" = \
		"[\"device 'rng-hot' was hot-plugged, not on the command line\"]" ]
}

@test "a -readconfig file that QEMU's dialect does not allow is one blocker naming file and line" {
	local A=r70b-$HU_RUN_ID
	start_q35 $A
	# QEMU read the file at its start; an edit now is what restore would read
	printf '[device "x"]\n  driver="e1000"\n' >>"$T/$A.cfg"
	run --separate-stderr hu plan --json --vm $A
	echo "$output"
	[ "$status" -eq 1 ]
	local lines
	lines=$(wc -l <"$T/$A.cfg")
	[ "$(plan_vm "$output" $A blockers)" = \
		"[\"cannot read -readconfig $T/$A.cfg: line $lines: not KEY = \\\"VALUE\\\" (blanks around '=', the value quoted)\"]" ]
}

@test "checkpoint, edit one VM's -readconfig file, restore: that VM refused by name, the other restored; put back, it restores" {
	local A=r70c-$HU_RUN_ID B=r70d-$HU_RUN_ID v
	start_q35 $A
	start_q35 $B
	vm_wait_tick $A 2 300
	vm_wait_tick $B 2 300
	run --separate-stderr hu checkpoint --vm $A --vm $B
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	local -A pre
	for v in $A $B; do
		[ "$(qemu_count_with "$T/$v.")" -eq 0 ]
		pre[$v]=$(vm_last_tick $v)
	done
	# the manifest holds each file's digest
	[ "$(json_get "$(cat "$S/manifest.json")" "[c['sha256'] for v in j['vms'] if v['name'] == '$A' for c in v['readconfig'] if c['path'] == '$T/$A.cfg'][0]")" = \
		"$(sha256sum <"$T/$A.cfg" | cut -d' ' -f1)" ]

	# a qemu-server upgrade in the same window, say: one root port runs slower
	cp "$T/$A.cfg" "$T/$A.cfg.orig"
	sed -i '0,/x-speed = "16"/s//x-speed = "8"/' "$T/$A.cfg"
	run ! cmp -s "$T/$A.cfg" "$T/$A.cfg.orig"
	run --separate-stderr hu restore
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$A"*"-readconfig $T/$A.cfg changed since the checkpoint"* ]]
	run --separate-stderr hu status --json
	echo "$output"
	[ "$(plan_vm "$output" $A state)" = failed ]
	[ "$(plan_vm "$output" $B state)" = restored ]
	# A was not started; its saved state is kept
	[ "$(qemu_count_with "$T/$A.")" -eq 0 ]
	[ -s "$S/$A.state" ]
	vm_wait_tick $B $((pre[$B] + 3)) 300
	[ "$(vm_boot_count $B)" -eq 1 ]

	# the file as it was: the same restore brings A back where it stopped
	cp "$T/$A.cfg.orig" "$T/$A.cfg"
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	run --separate-stderr hu status --json
	[ "$(plan_vm "$output" $A state)" = restored ]
	[ "$(qemu_count_with "$T/$A.")" -eq 1 ]
	vm_wait_tick $A $((pre[$A] + 3)) 300
	[ "$(vm_boot_count $A)" -eq 1 ]
	[ "$(peripheral_ids $A | wc -w)" -eq 18 ]
}

@test "a -readconfig file that is gone at restore: refused, naming it" {
	local A=r70e-$HU_RUN_ID
	start_q35 $A
	vm_wait_tick $A 2 300
	run --separate-stderr hu checkpoint --vm $A
	echo "$stderr"
	[ "$status" -eq 0 ]
	mv "$T/$A.cfg" "$T/$A.cfg.away"
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"-readconfig $T/$A.cfg is gone since the checkpoint"* ]]
	[ "$(qemu_count_with "$T/$A.")" -eq 0 ]
}

# Any user can run a process named qemu-system-* whose argv names any file: discover reads it
# as root, so it must not wait on a FIFO, read /proc for it, or read a file its user could not.
@test "another user's -readconfig: a FIFO, /proc, a root-only file: each one blocker, nothing read, no wait" {
	hostile_setup h70
	local nobody
	nobody=$(id -u nobody)
	printf '[device "secret"]\n  driver = "e1000"\n' >"$T/root-only.cfg"
	chmod 0600 "$T/root-only.cfg"
	as_user mkfifo "$U/fifo.cfg"
	local p_fifo p_proc p_root
	hostile_python fifo "$U/fifo.ready" -c 'import signal, sys; open(sys.argv[1], "w").close(); signal.pause()' \
		"$U/fifo.ready" -name guest=h70f-$HU_RUN_ID -readconfig "$U/fifo.cfg"
	p_fifo=$(tail -n 1 "$PIDS")
	hostile_python proc "$U/proc.ready" -c 'import signal, sys; open(sys.argv[1], "w").close(); signal.pause()' \
		"$U/proc.ready" -name guest=h70p-$HU_RUN_ID -readconfig /proc/self/environ
	p_proc=$(tail -n 1 "$PIDS")
	hostile_python root "$U/root.ready" -c 'import signal, sys; open(sys.argv[1], "w").close(); signal.pause()' \
		"$U/root.ready" -name guest=h70r-$HU_RUN_ID -runas root -readconfig "$T/root-only.cfg"
	p_root=$(tail -n 1 "$PIDS")

	run --separate-stderr timeout 120 "$HU_BIN" plan --state-dir "$S" --json --vm h70f-$HU_RUN_ID \
		--vm h70p-$HU_RUN_ID --vm h70r-$HU_RUN_ID
	echo "plan: status $status, stdout [$output], stderr [$stderr]"
	[ "$status" -eq 1 ] # not 124: the FIFO was not waited on
	[[ "$(plan_vm "$output" h70f-$HU_RUN_ID blockers)" == *"\"cannot read -readconfig $U/fifo.cfg: not a regular file\""* ]]
	[[ "$(plan_vm "$output" h70p-$HU_RUN_ID blockers)" == *"\"cannot read -readconfig /proc/self/environ: a file of a kernel pseudo file system (/proc, /sys, ...)\""* ]]
	[[ "$(plan_vm "$output" h70r-$HU_RUN_ID blockers)" == *"\"cannot read -readconfig $T/root-only.cfg: not readable by uid $nobody, whose QEMU names it\""* ]]
	[[ "$output" != *secret* ]]
	local p
	for p in $p_fifo $p_proc $p_root; do
		_hu_pid_alive "$p"
	done
}

# Opening a device node is an act of its own (/dev/watchdog arms a watchdog, a tape rewinds): a
# -readconfig naming one is refused from an O_PATH descriptor, never opened for reading. A
# node of /dev/null's numbers in the user's dir stands in; strace shows every open of it.
@test "another user's -readconfig naming a device node: refused, and never opened except with O_PATH" {
	command -v strace >/dev/null || skip "no strace"
	hostile_setup h70
	mknod "$U/watchdog" c 1 3
	hostile_python dev "$U/dev.ready" -c 'import signal, sys; open(sys.argv[1], "w").close(); signal.pause()' \
		"$U/dev.ready" -name guest=h70w-$HU_RUN_ID -readconfig "$U/watchdog"
	run --separate-stderr timeout 120 strace -f -qq -o "$T/strace.out" -e trace=open,openat,openat2 \
		"$HU_BIN" plan --state-dir "$S" --json --vm h70w-$HU_RUN_ID
	echo "plan: status $status, stdout [$output], stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" h70w-$HU_RUN_ID blockers)" == *"\"cannot read -readconfig $U/watchdog: not a regular file\""* ]]
	only_opened_with_o_path "$T/strace.out" "$U/watchdog"
}
