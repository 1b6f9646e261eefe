#!/usr/bin/env bats
# may-start: what a VM's own unit asks (ExecCondition=) so it never cold-starts a VM next
# to its restored or pending self. Real QEMU (TCG).

load helpers

HU_VM_MEM=128M

@test "may-start: no while checkpointed or running restored; yes once it is gone or unknown" {
	vm_start m23 $(qmp_arg m23) $(ram_file_args m23 "$T/m23.ram")
	vm_wait_tick m23 2
	run "$HU_BIN" may-start --vm m23 --state-dir "$S"
	[ "$status" -eq 0 ] # no manifest yet: not ours
	run "$HU_BIN" checkpoint --state-dir "$S" --vm m23
	[ "$status" -eq 0 ]
	run "$HU_BIN" may-start --vm m23 --state-dir "$S"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"checkpointed"* ]]
	run "$HU_BIN" restore --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$HU_BIN" may-start --vm m23 --state-dir "$S"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"runs as pid"* ]]
	run "$HU_BIN" may-start --vm other --state-dir "$S"
	[ "$status" -eq 0 ]
	run "$HU_BIN" may-start --state-dir "$S"
	[ "$status" -eq 2 ]
	cleanup_vms
	sleep 0.2
	run "$HU_BIN" may-start --vm m23 --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
}
