#!/usr/bin/env bats
# plan, for a VM whose RAM would be copied into the state file (anonymous RAM, memfd —
# not in place): how many bytes, about how long at a rate measured by this plan (a
# bounded sample written and flushed where the state files go, and it says so), and the
# guide that keeps RAM in place (docs/preparing-a-host.md, or its installed copy). A host
# whose VMs all keep their RAM in place gets no hint and no sample written.

load helpers

HU_VM_MEM=128M

GUIDE_LINE='^RAM kept in place is not copied: see .*preparing-a-host\.md'

@test "plan: anonymous and memfd RAM: bytes copied = RAM size, a measured time, the guide named" {
	local A=p25a-$HU_RUN_ID B=p25b-$HU_RUN_ID before
	local -a b
	read -ra b <<<"$(qmp_arg $B) $(ram_memfd_args $B)"
	vm_start $A $(qmp_arg $A) # no memory backend: anonymous (private) RAM
	vm_start $B "${b[@]}"
	before=$(ls -A "$T" | { grep -v "^p25[ab]-\|^separate-stderr-" || true; })

	run --separate-stderr hu plan --vm $A --vm $B
	echo "$output"
	[ "$status" -eq 0 ]
	# one line per copying VM: its bytes (= its RAM) and a time at the measured rate
	grep -Eqx "$A: 128M of RAM copied into the state file, about [0-9.]+ s at [0-9.]+[BKMGT]?/s" <<<"$output"
	grep -Eqx "$B: 128M of RAM copied into the state file, about [0-9.]+ s at [0-9.]+[BKMGT]?/s" <<<"$output"
	# where the rate comes from: the state dir does not exist yet, so its parent
	grep -Fqx "rate: a 32M sample written and flushed in $T by this plan (QEMU's own stream may be slower; the restore reads the copy back)" <<<"$output"
	grep -Eq "$GUIDE_LINE" <<<"$output"
	# the sample left nothing behind (an unnamed file), and plan made no state dir
	# (the VMs' own files and bats' stderr file come and go meanwhile)
	[ "$(ls -A "$T" | { grep -v "^p25[ab]-\|^separate-stderr-" || true; })" = "$before" ]
	[ ! -e "$S" ]

	run --separate-stderr hu plan --json --vm $A --vm $B
	echo "$output"
	[ "$status" -eq 0 ]
	local v
	for v in $A $B; do
		[ "$(plan_vm "$output" $v save)" = copy ]
		[ "$(plan_vm "$output" $v ram_bytes)" = 134217728 ]
		[ "$(plan_vm "$output" $v copy_bytes)" = 134217728 ]
		[ "$(json_get "$output" "[v for v in j['vms'] if v['name'] == '$v'][0]['copy_seconds'] > 0")" = true ]
	done
	[ "$(json_get "$output" 'j["copy_rate"]["source"]')" = sample ]
	[ "$(json_get "$output" 'j["copy_rate"]["sample_bytes"]')" = 33554432 ]
	[ "$(json_get "$output" 'j["copy_rate"]["bytes_per_second"] > 0')" = true ]
	[ "$(json_get "$output" 'j["copy_rate"]["dir"]')" = "$T" ]
	# seconds = bytes / rate
	[ "$(json_get "$output" 'abs(j["vms"][0]["copy_seconds"] - j["vms"][0]["copy_bytes"] / j["copy_rate"]["bytes_per_second"]) < 0.01')" = true ]
	# not installed: the guide in the source tree, and it is there
	[ "$(json_get "$output" 'j["copy_rate"]["guide"]')" = "docs/preparing-a-host.md in host-upgrade's source" ]
	[ -s "$BATS_TEST_DIRNAME/../../docs/preparing-a-host.md" ]
}

@test "plan: no room for the sample: the time is unknown and plan says why, not a guess" {
	local A=p25c-$HU_RUN_ID
	vm_start $A $(qmp_arg $A)
	# a margin past the free space: no room for the sample (the plan is blocked too)
	local margin
	margin=$(($(df -B1M --output=avail "$T" | tail -n1 | tr -d ' ') + 1024))M
	run --separate-stderr hu plan --json --vm $A --space-margin "$margin"
	echo "$output"
	[ "$(json_get "$output" 'j["copy_rate"]["source"]')" = none ]
	[ "$(json_get "$output" 'j["copy_rate"]["bytes_per_second"]')" = null ]
	[[ "$(json_get "$output" 'j["copy_rate"]["why"]')" == "too little free space for a 32 MiB sample" ]]
	[ "$(plan_vm "$output" $A copy_bytes)" = 134217728 ]
	[ "$(plan_vm "$output" $A copy_seconds)" = null ]
	run --separate-stderr hu plan --vm $A --space-margin "$margin"
	echo "$output"
	grep -Fqx "$A: 128M of RAM copied into the state file" <<<"$output"
	grep -Fqx "rate: not measured in $T: too little free space for a 32 MiB sample" <<<"$output"
	grep -Eq "$GUIDE_LINE" <<<"$output"
}

@test "plan: RAM in place: no copy hint, nothing measured" {
	[[ "$(hu_fs_type "$T")" != tmpfs && "$(hu_fs_type "$T")" != ramfs ]] ||
		skip "$T is on tmpfs: file RAM there is volatile, not persistent"
	local A=p25d-$HU_RUN_ID
	local -a a
	read -ra a <<<"$(qmp_arg $A) $(ram_file_args $A "$T/$A.ram")"
	vm_start $A "${a[@]}"
	run --separate-stderr hu plan --vm $A
	echo "$output"
	[ "$status" -eq 0 ]
	if grep -q 'copied into the state file\|^rate:\|preparing-a-host' <<<"$output"; then false; fi
	run --separate-stderr hu plan --json --vm $A
	[ "$(plan_vm "$output" $A save)" = in-place ]
	[ "$(plan_vm "$output" $A copy_bytes)" = 0 ]
	[ "$(json_get "$output" 'j["copy_rate"]')" = null ]
}

@test "plan: an installed host-upgrade names the installed guide" {
	local A=p25e-$HU_RUN_ID D=$BATS_TEST_TMPDIR/inst
	make -s -C "$BATS_TEST_DIRNAME/../.." install DESTDIR="$D" PREFIX=/usr BUILD="$(dirname "$HU_BIN")" >/dev/null
	[ -s "$D/usr/share/doc/host-upgrade/preparing-a-host.md" ]
	vm_start $A $(qmp_arg $A)
	run --separate-stderr "$D/usr/sbin/host-upgrade" plan --json --state-dir "$S" --vm $A
	echo "$output"
	[ "$(json_get "$output" 'j["copy_rate"]["guide"]')" = "$D/usr/share/doc/host-upgrade/preparing-a-host.md" ]
}
