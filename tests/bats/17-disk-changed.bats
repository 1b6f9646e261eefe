#!/usr/bin/env bats
# Never resume on disks that changed since the checkpoint: restore refuses the VM whose
# disk image grew or was touched, starts no QEMU for it, and restores the others.

load helpers

HU_VM_MEM=128M

@test "a disk image that changed after the checkpoint (size or mtime) blocks that VM's restore only" {
	local C=c17-$HU_RUN_ID D=d17-$HU_RUN_ID M=m17-$HU_RUN_ID v
	for v in $C $D $M; do
		truncate -s 8M "$T/$v.img"
		vm_start $v $(qmp_arg $v) -drive "file=$T/$v.img,format=raw,if=virtio"
	done
	for v in $C $D $M; do
		vm_wait_tick $v 2 60
	done
	run --separate-stderr hu checkpoint --vm $C --vm $D --vm $M
	echo "$stderr"
	[ "$status" -eq 0 ]
	local prec
	prec=$(vm_last_tick $C)

	printf 'x' >>"$T/$D.img"                     # one byte more
	touch -d '+1 minute' "$T/$M.img"              # same bytes, new mtime

	run --separate-stderr hu restore
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$D"*"$T/$D.img"* ]]
	[[ "$stderr" == *"$M"*"$T/$M.img"* ]]
	local rerr=$stderr
	run --separate-stderr hu status --json
	echo "$output"
	for v in $D $M; do
		[ "$(plan_vm "$output" $v state)" = failed ]
		[[ "$(plan_vm "$output" $v error)" == *"disk $T/$v.img"* ]]
		[[ "$(plan_vm "$output" $v error)" == *changed* ]]
		# no QEMU was started for it (none left behind either)
		[[ "$rerr" != *"$v: starting"* ]]
		[ "$(qemu_count_with "$T/$v.")" -eq 0 ]
	done
	[ "$(plan_vm "$output" $C state)" = restored ]
	[ "$(qemu_count_with "$T/$C.")" -eq 1 ]
	vm_wait_tick $C $((prec + 3)) 30
	[ "$(vm_boot_count $C)" -eq 1 ]

	# still refused on a second try: the change does not go away
	run --separate-stderr hu restore
	[ "$status" -eq 1 ]
	[ "$(qemu_count_with "$T/$D.")" -eq 0 ]
	[ "$(qemu_count_with "$T/$M.")" -eq 0 ]
	[ "$(qemu_count_with "$T/$C.")" -eq 1 ]
}
