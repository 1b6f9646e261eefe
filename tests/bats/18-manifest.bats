#!/usr/bin/env bats
# The manifest is read back as untrusted input: a corrupt one is refused whole with a clear
# message, left byte-identical, and nothing is started. A checkpoint that was not restored
# yet is never overwritten by a new one.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	A=a18-$HU_RUN_ID B=b18-$HU_RUN_ID
}

# corrupt KIND < good manifest > corrupt manifest
corrupt() {
	python3 -c '
import json, sys
kind, text = sys.argv[1], sys.stdin.read()
if kind == "truncated":
    sys.stdout.write(text[: len(text) // 2])
elif kind == "empty":
    pass
elif kind == "garbage":
    sys.stdout.write("this is not a manifest \x01\x02 {{{")
else:
    j = json.loads(text)
    if kind == "version":
        j["version"] = 99
    elif kind == "argv-number":
        j["vms"][0]["argv"][1] = 42
    elif kind == "name-traversal":
        j["vms"][0]["name"] = "../../../etc/x"
    elif kind == "not-object":
        j = [j]
    sys.stdout.write(json.dumps(j, indent=1))
' "$1"
}

@test "a corrupt manifest: restore, abort and status exit 1 with a clear message; file unchanged; nothing started" {
	vm_start $A $(qmp_arg $A) $(ram_file_args $A "$T/$A.ram")
	vm_wait_tick $A 2 60
	run --separate-stderr hu checkpoint --vm $A
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(qemu_count_with "$T/$A.")" -eq 0 ]
	cp "$S/manifest.json" "$T/good.json"
	local pre kind verb
	pre=$(vm_last_tick $A)

	for kind in truncated empty garbage argv-number name-traversal not-object; do
		corrupt $kind <"$T/good.json" >"$T/bad.json"
		! cmp -s "$T/good.json" "$T/bad.json" || false
		cp "$T/bad.json" "$S/manifest.json"
		for verb in restore abort status "status --json"; do
			run --separate-stderr hu $verb
			echo "$kind, $verb: status $status, stdout [$output], stderr [$stderr]"
			[ "$status" -eq 1 ]
			[[ "$stderr" == "host-upgrade: ${verb%% *}: "*manifest*corrupt* ]]
			[[ "$output" != *'"phase"'* ]]
			cmp "$T/bad.json" "$S/manifest.json"
			[ "$(qemu_count_with "$T/$A.")" -eq 0 ]
		done
	done
	[ -z "$(qemu_pids_with "$T/$A.")" ]
	[ ! -e /etc/x.state ]

	# a new checkpoint does not overwrite an unreadable manifest either, and stops nothing
	vm_start $B $(qmp_arg $B)
	local pb
	pb=$(vm_pid $B)
	cp "$T/bad.json" "$S/manifest.json"
	run --separate-stderr hu checkpoint --vm $B
	echo "checkpoint: $stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *manifest.json* ]]
	cmp "$T/bad.json" "$S/manifest.json"
	[ ! -e "$S/$B.state" ]
	[ "$(vm_pid $B)" = "$pb" ]
	[ "$(vm_status $B)" = running ]

	# the good manifest back: restore works and the guest continues
	cp "$T/good.json" "$S/manifest.json"
	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 0 ]
	vm_wait_tick $A $((pre + 3)) 30
	[ "$(vm_boot_count $A)" -eq 1 ]
}

@test "a manifest of an unknown version: restore, abort and status say so (exit 1), file unchanged" {
	mkdir -m 0700 "$S"
	printf '{"version": 99, "phase": "checkpointed", "boot_id": "x", "vms": []}\n' >"$S/manifest.json"
	cp "$S/manifest.json" "$T/v99.json"
	local verb
	for verb in restore abort status "status --json"; do
		run --separate-stderr hu $verb
		echo "$verb: status $status, stdout [$output], stderr [$stderr]"
		[ "$status" -eq 1 ]
		[[ "$stderr" == "host-upgrade: ${verb%% *}: "*manifest* ]]
		[[ "$stderr" == *version* ]]
		cmp "$T/v99.json" "$S/manifest.json"
	done
}

@test "a second checkpoint while one is pending is refused and stops nothing" {
	vm_start $A $(qmp_arg $A) $(ram_file_args $A "$T/$A.ram")
	vm_start $B $(mon_args $B)
	vm_wait_tick $A 2 60
	vm_wait_tick $B 2 60
	local pb
	pb=$(vm_pid $B)
	run --separate-stderr hu checkpoint --vm $A
	echo "$stderr"
	[ "$status" -eq 0 ]
	cp "$S/manifest.json" "$T/pending.json"

	run --separate-stderr hu checkpoint --vm $B
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$A"*checkpointed* ]]
	[[ "$stderr" == *"restore or abort"* ]]
	cmp "$T/pending.json" "$S/manifest.json"
	[ ! -e "$S/$B.state" ]
	[ "$(vm_pid $B)" = "$pb" ]
	_hu_pid_alive "$pb"
	[ "$(vm_status $B)" = running ]
	vm_wait_ticking $B 2 20
	run --separate-stderr hu status --json
	[ "$(json_get "$output" '[(v["name"], v["state"]) for v in j["vms"]]')" = "[[\"$A\", \"checkpointed\"]]" ]

	# once restored, a new checkpoint is allowed again
	run --separate-stderr hu restore
	[ "$status" -eq 0 ]
	run --separate-stderr hu checkpoint --vm $B
	echo "$stderr"
	[ "$status" -eq 0 ]
	run --separate-stderr hu restore
	[ "$status" -eq 0 ]
	[ "$(qemu_count_with "$T/$A.")" -eq 1 ]
	[ "$(qemu_count_with "$T/$B.")" -eq 1 ]
	vm_wait_ticking $B 2 20
	[ "$(vm_boot_count $B)" -eq 1 ]
}
