#!/usr/bin/env bats
# Plan refuses, before anything stops, VMs whose RAM would not survive in place or whose
# command line could not be replayed by restore. Real QEMUs (TCG).

load helpers

HU_VM_MEM=128M

@test "a shared mem-path that is a directory is copied, never skipped" {
	mkdir -p "$T/ramdir"
	vm_start p21a $(qmp_arg p21a) -object "memory-backend-file,id=ram0,size=128M,mem-path=$T/ramdir,share=on" \
		-machine memory-backend=ram0
	vm_wait_tick p21a 2
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21a
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" p21a ram_backing)" = private ]
	[ "$(plan_vm "$output" p21a save)" = copy ]
	# ... and the round trip brings the guest back with its RAM.
	local t
	t=$(vm_last_tick p21a)
	run "$HU_BIN" checkpoint --state-dir "$S" --vm p21a
	[ "$status" -eq 0 ]
	[ "$(stat -c %s "$S/p21a.state")" -gt 1000000 ]
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	vm_wait_tick p21a $((t + 2))
	[ "$(vm_boot_count p21a)" -eq 1 ]
}

@test "a device hot-plugged over QMP blocks the VM by name; nothing stops" {
	vm_start p21b $(qmp_arg p21b) $(ram_file_args p21b "$T/p21b.ram")
	vm_wait_tick p21b 2
	run qmp p21b '{"execute":"device_add","arguments":{"driver":"virtio-rng-pci","id":"rng-hot"}}'
	echo "$output"
	[ "$status" -eq 0 ]
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21b
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" p21b blockers)" == *"device 'rng-hot' was hot-plugged"* ]]
	run "$HU_BIN" checkpoint --state-dir "$S" --vm p21b
	[ "$status" -eq 1 ]
	[ "$(vm_status p21b)" = running ]
}

@test "a memory backend added over QMP blocks the VM by name" {
	vm_start p21c $(qmp_arg p21c) $(ram_file_args p21c "$T/p21c.ram")
	vm_wait_tick p21c 2
	run qmp p21c '{"execute":"object-add","arguments":{"qom-type":"memory-backend-ram","id":"hot-mem","size":1048576}}'
	[ "$status" -eq 0 ]
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21c
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" p21c blockers)" == *"memory backend 'hot-mem' was added at run time"* ]]
}

@test "a file descriptor passed in argv blocks the VM: restore could not pass it again" {
	exec 7<>"$T/fdfile"
	vm_start p21d $(qmp_arg p21d) $(ram_file_args p21d "$T/p21d.ram") -add-fd fd=7,set=1 7<>"$T/fdfile"
	exec 7>&-
	vm_wait_tick p21d 2
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21d
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" p21d blockers)" == *"passes a file descriptor (-add-fd fd=7,set=1)"* ]]
}

@test "a command-line memory backend no device uses is left out; one a device names with memdev= is kept" {
	# The machine's RAM is a shared file; a second, private backend rides along. Unused, QEMU
	# neither maps it for the guest nor migrates it, so it must not turn the VM into a copy.
	vm_start p21e $(qmp_arg p21e) $(ram_file_args p21e "$T/p21e.ram") \
		-object memory-backend-ram,id=spare,size=4M
	vm_wait_tick p21e 2
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21e
	echo "$output"
	[ "$status" -eq 0 ]
	local alone
	alone=$(plan_vm "$output" p21e ram_backing)
	[ "$alone" = persistent ]
	[ "$(plan_vm "$output" p21e ram_bytes)" -eq $((128 << 20)) ]
	# The same backend named by a device's memdev= is guest memory: it is kept, and its
	# private RAM is what plan then reports.
	vm_start p21f $(qmp_arg p21f) $(ram_file_args p21f "$T/p21f.ram") \
		-object memory-backend-ram,id=spare,size=4M -device ivshmem-plain,memdev=spare
	vm_wait_tick p21f 2
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm p21f
	echo "$output"
	[ "$(plan_vm "$output" p21f ram_backing)" = private ]
	[ "$(plan_vm "$output" p21f ram_bytes)" -eq $((132 << 20)) ]
}
