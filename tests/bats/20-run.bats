#!/usr/bin/env bats
# host-upgrade run and stage (#3). A kexec of this very machine cannot run here, so an
# LD_PRELOAD shim fakes only the kexec_file_load(2) syscall, /sys/kernel/kexec_loaded,
# /proc/cmdline and systemd's StartUnit, and records what host-upgrade passed to them;
# the VMs are real QEMUs (TCG) and everything else is the real product.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	hu_need_shim # never the real kexec syscall on this machine
	LOG=$T/fake.log
	KERNEL=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
	[ -n "$KERNEL" ] || skip "no /boot/vmlinuz-* (scripts/install-deps installs linux-image-amd64)"
	KVER=${KERNEL#/boot/vmlinuz-}
	CMDLINE="root=/dev/vda rw memmap=256M!1G nokaslr console=ttyS0"
}

# hu_fake VERB [ARGS...]: the CLI with the shim; the fake kernel command line has a pmem region.
hu_fake() {
	local verb=$1
	shift
	HU_FAKE_LOG=$LOG HU_FAKE_CMDLINE=$CMDLINE HU_FAKE_DEFAULT_KEXEC=${DEFAULT_KEXEC:-LOAD_KEXEC=false} \
		LD_PRELOAD=$SHIM \
		"$HU_BIN" "$verb" --state-dir "$S" "$@"
}

start_vms() { # names...
	local v
	for v in "$@"; do
		vm_start "$v" $(qmp_arg "$v") $(ram_file_args "$v" "$T/$v.ram")
	done
	for v in "$@"; do vm_wait_tick "$v" 2 60; done
}

@test "run --no-reboot: checkpoint and restore at once, guests continue, no cold boot" {
	start_vms r20a r20b
	local pa pb ta tb
	pa=$(vm_pid r20a) pb=$(vm_pid r20b)
	ta=$(vm_last_tick r20a) tb=$(vm_last_tick r20b)
	run "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm r20a --vm r20b
	echo "$output"
	[ "$status" -eq 0 ]
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["phase"]')" = restored ]
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored", "restored"]' ]
	# New QEMUs, one per VM, continuing the same guests.
	[ "$(qemu_count_with "$T/r20a.ram")" -eq 1 ]
	[ "$(qemu_pids_with "$T/r20a.ram")" != "$pa" ]
	[ "$(qemu_pids_with "$T/r20b.ram")" != "$pb" ]
	vm_wait_tick r20a $((ta + 3))
	vm_wait_tick r20b $((tb + 3))
	[ "$(vm_boot_count r20a)" -eq 1 ]
	[ "$(vm_boot_count r20b)" -eq 1 ]
	# Restored in the same process: recorded as not flushed (this boot only).
	[ "$(grep -o '"flushed":false' "$S/manifest.json" | wc -l)" -eq 2 ]
}

# flushed VERB ARGS...: host-upgrade with the shim recording its fsyncs; prints the files flushed.
flushed() {
	: >"$LOG"
	HU_FAKE_LOG=$LOG HU_FAKE_RECORD_FLUSH=1 LD_PRELOAD=$SHIM "$HU_BIN" "$@" --state-dir "$S" >&2
	sed -n 's/^f\(data\)\?sync //p' "$LOG" | sort -u
}

@test "run --no-reboot does not flush state or RAM; checkpoint for a reboot does" {
	start_vms r20n
	local files
	files=$(flushed run --no-reboot --yes --vm r20n)
	echo "run --no-reboot flushed: $files"
	! grep -E '\.state$|\.ram$' <<<"$files" || false
	grep -q 'manifest' <<<"$files" # the record itself still is durable
	grep -q '"flushed":false' "$S/manifest.json"
	vm_wait_ticking r20n
	# The control: a checkpoint that a reboot may follow flushes both.
	files=$(flushed checkpoint --vm r20n)
	echo "checkpoint flushed: $files"
	grep -q "/r20n.state$" <<<"$files"
	grep -q "/r20n.ram$" <<<"$files"
	grep -q '"flushed":true' "$S/manifest.json"
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	vm_wait_ticking r20n
	[ "$(vm_boot_count r20n)" -eq 1 ]
}

# set_manifest PYTHON-STATEMENT: edit the manifest as a reboot or a crash would leave it.
set_manifest() {
	python3 -c 'import json, sys
p = sys.argv[1]; j = json.load(open(p))
exec(sys.argv[2])
json.dump(j, open(p, "w"))' "$S/manifest.json" "$1"
}

@test "an unflushed checkpoint is refused after a reboot, kept, and restored in its own boot" {
	start_vms r20u
	local t
	t=$(vm_last_tick r20u)
	run "$HU_BIN" checkpoint --state-dir "$S" --vm r20u
	[ "$status" -eq 0 ]
	# As run --no-reboot records it, then a reboot before its restore.
	set_manifest 'j["vms"][0]["flushed"] = False; j["boot_id"] = "00000000-0000-4000-8000-000000000000"'
	run --separate-stderr "$HU_BIN" restore --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"r20u"*"not flushed"*"rebooted since"* ]]
	[ "$(qemu_count_with "$T/r20u.ram")" -eq 0 ]
	[ -s "$S/r20u.state" ]
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["vms"][0]["state"]')" = failed ]
	# Back in the boot that took it, the failed VM is retried: restored (the refusal was the boot's).
	set_manifest 'j["boot_id"] = open("/proc/sys/kernel/random/boot_id").read().strip()'
	run --separate-stderr "$HU_BIN" restore --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 0 ]
	vm_wait_tick r20u $((t + 2))
	[ "$(vm_boot_count r20u)" -eq 1 ]
}

@test "run --kernel: stages with the pmem region and marker, checkpoints, starts kexec.target" {
	start_vms r20c
	run hu_fake run --kernel "$KERNEL" --yes --vm r20c
	echo "$output"
	[ "$status" -eq 0 ]
	cat "$LOG"
	grep -q "^kexec_file_load kernel=$KERNEL initrd=/boot/initrd.img-$KVER flags=0 cmdline=root=/dev/vda rw memmap=256M!1G nokaslr console=ttyS0 hu.restore=1$" "$LOG"
	grep -q '^sd_bus org.freedesktop.systemd1.Manager.StartUnit kexec.target replace-irreversibly$' "$LOG"
	# Staged before the checkpoint, reboot asked for last.
	[ "$(grep -n kexec_file_load "$LOG" | cut -d: -f1)" -lt "$(grep -n StartUnit "$LOG" | cut -d: -f1)" ]
	[ "$(qemu_count_with "$T/r20c.ram")" -eq 0 ]
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["phase"]')" = checkpointed ]
	grep -q "\"target_kernel\":\"$KVER\"" "$S/manifest.json"
	# No reboot happened here: bring the VM back and check it continued.
	local t
	t=$(vm_last_tick r20c)
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	vm_wait_tick r20c $((t + 2))
	[ "$(vm_boot_count r20c)" -eq 1 ]
}

@test "run: a kernel refused by lockdown stops nothing" {
	start_vms r20d
	local p
	p=$(vm_pid r20d)
	HU_FAKE_KEXEC_FAIL=EPERM run hu_fake run --kernel "$KERNEL" --yes --vm r20d
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"lockdown"* ]]
	[[ "$output" == *"nothing was stopped"* ]]
	! grep -q StartUnit "$LOG" || false
	[ "$(qemu_pids_with "$T/r20d.ram")" = "$p" ]
	[ "$(vm_status r20d)" = running ]
	vm_wait_ticking r20d
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["vms"]')" = "[]" ]
}

@test "run: systemd refusing kexec.target unloads the kernel and brings every VM back" {
	start_vms r20e r20f
	HU_FAKE_SYSTEMD_FAIL=StartUnit run hu_fake run --kernel "$KERNEL" --yes --vm r20e --vm r20f
	echo "$output"
	[ "$status" -eq 1 ]
	grep -q '^kexec_file_load unload$' "$LOG"
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" = '["restored", "restored"]' ]
	vm_wait_ticking r20e
	vm_wait_ticking r20f
	[ "$(vm_boot_count r20e)" -eq 1 ]
	[ "$(qemu_count_with "$T/r20e.ram")" -eq 1 ]
}

@test "run: systemd that cannot be asked for kexec.target is found before anything stops" {
	start_vms r20i
	local p
	p=$(vm_pid r20i)
	HU_FAKE_SYSTEMD_FAIL=LoadUnit run hu_fake run --kernel "$KERNEL" --yes --vm r20i
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"preflight: systemd cannot load kexec.target"*"nothing was stopped"* ]]
	grep -q '^sd_bus org.freedesktop.systemd1.Manager.LoadUnit' "$LOG"
	! grep -q "^kexec_file_load kernel" "$LOG" || false
	! grep -q StartUnit "$LOG" || false
	[ "$(qemu_pids_with "$T/r20i.ram")" = "$p" ]
	vm_wait_ticking r20i
	[ ! -e "$S/manifest.json" ]
}

@test "run: a staged kernel that vanished before the reboot is caught (no firmware reboot)" {
	start_vms r20g
	HU_FAKE_KEXEC_VANISH=1 run hu_fake run --kernel "$KERNEL" --yes --vm r20g
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"firmware reboot"* ]]
	! grep -q StartUnit "$LOG" || false
	vm_wait_ticking r20g
	[ "$(vm_boot_count r20g)" -eq 1 ]
}

@test "run: a command line that drops the pmem region is refused before anything stops" {
	start_vms r20h
	local p
	p=$(vm_pid r20h)
	run hu_fake run --kernel "$KERNEL" --append "root=/dev/vda nokaslr" --yes --vm r20h
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"drops 'memmap=256M!1G'"* ]]
	! grep -q kexec_file_load "$LOG" 2>/dev/null || false
	[ "$(qemu_pids_with "$T/r20h.ram")" = "$p" ]
}

@test "run: Debian's kexec-load set to replace the kernel at shutdown blocks before anything stops" {
	start_vms r20k
	local p
	p=$(vm_pid r20k)
	DEFAULT_KEXEC=$'# kexec-tools\nLOAD_KEXEC=true\n' run hu_fake run --kernel "$KERNEL" --yes --vm r20k
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"LOAD_KEXEC=true"* ]]
	! grep -q kexec_file_load "$LOG" 2>/dev/null || false
	[ "$(qemu_pids_with "$T/r20k.ram")" = "$p" ]
}

@test "run: a module the VMs use missing from the new kernel blocks, by name" {
	[ -d /sys/module/kvm ] || skip "kvm is not loaded on this machine: nothing to require"
	start_vms r20i
	# A module tree for the new kernel with nothing in it.
	mkdir -p "$T/mods/$KVER"
	touch "$T/mods/$KVER/modules.order" "$T/mods/$KVER/modules.builtin"
	depmod -b "$T/root" 2>/dev/null || true
	mkdir -p "$T/root/lib/modules" && mv "$T/mods/$KVER" "$T/root/lib/modules/"
	depmod -b "$T/root" "$KVER" 2>/dev/null
	run hu_fake run --kernel "$KERNEL" --modules-root "$T/root/lib/modules" --yes --vm r20i
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"has no module kvm"* ]]
	! grep -q kexec_file_load "$LOG" 2>/dev/null || false
	[ "$(vm_status r20i)" = running ]
}

@test "run --dry-run shows the steps and touches nothing; without a terminal it needs --yes" {
	start_vms r20j
	local p
	p=$(vm_pid r20j)
	run hu_fake run --kernel "$KERNEL" --dry-run --vm r20j
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"stage kernel $KVER"* ]]
	[[ "$output" == *"kexec.target"* ]]
	run hu_fake run --kernel "$KERNEL" --vm r20j </dev/null
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"--yes"* ]]
	! grep -q kexec_file_load "$LOG" 2>/dev/null || false
	[ "$(qemu_pids_with "$T/r20j.ram")" = "$p" ]
	run "$HU_BIN" run --state-dir "$S"
	[ "$status" -eq 2 ]
}

@test "stage: loads with the marker; --unload unloads; a non-kernel is refused" {
	run hu_fake stage --kernel "$KERNEL"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "cmdline=.*memmap=256M!1G nokaslr.* hu.restore=1$" "$LOG"
	run hu_fake stage --unload
	[ "$status" -eq 0 ]
	grep -q '^kexec_file_load unload$' "$LOG"
	run hu_fake stage --kernel /etc/hostname
	[ "$status" -eq 1 ]
	[[ "$output" == *"not a bzImage"* ]]
	HU_FAKE_KEXEC_FAIL=EKEYREJECTED run hu_fake stage --kernel "$KERNEL"
	[ "$status" -eq 1 ]
	[[ "$output" == *"signature"* ]]
}
