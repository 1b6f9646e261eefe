#!/usr/bin/env bats
# libvirt-managed VMs (#14): discovery finds libvirt's QEMU (monitor passed as a descriptor),
# drives it through libvirt's API, and plan judges it like any other VM — manager "libvirt",
# RAM class from the real mem-path — and says what to change when libvirt's setting cannot
# stay in place. A real libvirtd, started by the test (tests/bats/libvirt.bash).

load helpers
load libvirt # setup_file, setup, teardown, teardown_file

@test "plan: a libvirt domain with file-backed shared RAM is manager libvirt, in place, ok" {
	local d=lv60a-$HU_RUN_ID
	lv_define "$d"
	lv_start "$d"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$d"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$d" manager)" = libvirt ]
	[ "$(plan_vm "$output" "$d" pid)" = "$(lv_pid "$d")" ]
	[ "$(plan_vm "$output" "$d" save)" = in-place ]
	[ "$(plan_vm "$output" "$d" ram_bytes)" -eq $((128 << 20)) ]
	[ "$(plan_vm "$output" "$d" blockers)" = '[]' ]
	# The table says it too.
	run "$HU_BIN" plan --state-dir "$S" --vm "$d"
	echo "TABLE: $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"$d "*"in-place"*"ok (libvirt)"* ]]
	# Planning changed nothing: the guest runs on, libvirt sees it running.
	[ "$(lv_state "$d")" = running ]
	vm_wait_ticking "$d"
}

@test "plan: a libvirt domain with private RAM is blocked, saying what to change in the XML" {
	local d=lv60b-$HU_RUN_ID
	lv_define "$d" "" ""
	lv_start "$d"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" "$d" manager)" = libvirt ]
	[ "$(plan_vm "$output" "$d" ram_backing)" = private ]
	[[ "$(plan_vm "$output" "$d" blockers)" == *"<source type='file'/>"*"memory_backing_dir"* ]]
}

@test "plan: a plain QEMU next to libvirt's is manager none" {
	local v=lv60c-$HU_RUN_ID
	HU_VM_MEM=128M vm_start "$v" $(qmp_arg "$v") $(HU_VM_MEM=128M ram_file_args "$v" "$T/$v.ram")
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$v" manager)" = none ]
}

@test "libvirt is loaded at first use: without its library a libvirt domain is blocked, saying what to install" {
	local d=lv60d-$HU_RUN_ID lib
	# Not linked: the binary runs on hosts without libvirt, and the initrd that
	# carries it does not pull libvirt's libraries in.
	run ldd "$HU_BIN"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *libvirt* && "$output" != *libxml2* ]]
	lv_define "$d"
	lv_start "$d"
	lib=$(ldconfig -p | awk '$1 == "libvirt.so.0" && /x86-64/ { print $NF; exit }')
	[ -n "$lib" ]
	# In a mount namespace of its own, libvirt.so.0 is an empty file.
	run --separate-stderr unshare -m sh -c 'mount --bind /dev/null "$1" && exec "$2" plan --json --state-dir "$3" --vm "$4"' \
		sh "$lib" "$HU_BIN" "$S" "$d"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" "$d" manager)" = libvirt ]
	[[ "$(plan_vm "$output" "$d" blockers)" == *"cannot load libvirt.so.0 (Debian package libvirt0)"* ]]
	# With it, the same domain is fine.
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$d"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$d" blockers)" = '[]' ]
}

@test "plan: a libvirt domain whose QEMU does not answer is blocked after --timeout, not waited on forever" {
	local d=lv60e-$HU_RUN_ID pid
	lv_define "$d"
	lv_start "$d"
	pid=$(lv_pid "$d")
	# A stopped QEMU reads nothing from its monitor: libvirt waits for the reply without
	# a deadline of its own. Our own (the bound of `timeout` only catches a hang).
	kill -STOP "$pid"
	run --separate-stderr timeout 300 "$HU_BIN" plan --json --timeout 3 --state-dir "$S" --vm "$d"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" "$d" blockers)" == *"no answer in time"* ]]
	# The command given up on is still in libvirt, and would run whenever QEMU reads again:
	# the next one is not queued behind it (to run out of order after it), it fails saying so.
	run --separate-stderr timeout 300 "$HU_BIN" plan --json --timeout 5 --state-dir "$S" --vm "$d"
	kill -CONT "$pid"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" "$d" blockers)" == *"an earlier monitor command to this domain has not returned yet"* ]]
	# Once the QEMU runs again libvirt gets its reply and lets go of the domain.
	vm_wait_ticking "$d" 3 120
	local i
	for ((i = 0; i < 60; i++)); do
		run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$d"
		[ "$status" -eq 0 ] && break
		sleep 1
	done
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$d" blockers)" = '[]' ]
}
