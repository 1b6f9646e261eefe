#!/usr/bin/env bats
# Early boot with the state dir on a file system of its own: hu.state=UUID=<uuid>:<dir> on
# the kernel command line. The file systems are real (ext4 and xfs on loop devices), found
# by the real libblkid and mounted by early-boot; the checkpoint in them is a real QEMU's.
# Only /proc/cmdline is faked (the LD_PRELOAD shim), and early-boot writes its report,
# wants-link and drop-in under $T instead of this machine's /run/systemd.

load helpers

HU_VM_MEM=128M

setup() {
	hu_need_bin
	hu_need_shim
	[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mount)"
	losetup -f >/dev/null 2>&1 || skip "no free loop device here"
	R=$T/run
	LOOP_FILE=$BATS_TEST_TMPDIR/loop-dev
}

teardown() {
	local dev
	mountpoint -q "$T/fs" 2>/dev/null && umount "$T/fs"
	mountpoint -q "$R/state-fs" 2>/dev/null && umount "$R/state-fs"
	if [ -s "$LOOP_FILE" ]; then
		read -r dev <"$LOOP_FILE"
		[[ "$dev" == /dev/loop* ]] && losetup -d "$dev"
	fi
	hu_teardown
}

# make_fs TYPE: a file system of TYPE on a loop device, mounted on $T/fs; sets DEV and FS_UUID.
make_fs() {
	command -v "mkfs.$1" >/dev/null || skip "no mkfs.$1 (scripts/install-deps installs it)"
	truncate -s 320M "$T/fs.img" # xfs wants 300 MiB at least
	"mkfs.$1" -q "$T/fs.img"
	DEV=$(losetup --show -f "$T/fs.img")
	echo "$DEV" >"$LOOP_FILE"
	FS_UUID=$(blkid -p -s UUID -o value "$DEV")
	[ -n "$FS_UUID" ]
	mkdir -p "$T/fs"
	mount "$DEV" "$T/fs"
}

# early_boot CMDLINE: the initrd side, /proc/cmdline saying CMDLINE, everything under $T.
early_boot() {
	HU_FAKE_CMDLINE=$1 LD_PRELOAD=$SHIM "$HU_BIN" early-boot --no-modules --wait 1 --root "$T/no-root" \
		--run-dir "$R" --wants-dir "$T/wants" --dropin-dir "$T/dropin"
}

# checkpoint_onto_fs NAME: a real VM, RAM on $T (disk), checkpointed into $T/fs/hu; the fs is
# then unmounted as it is at early boot.
checkpoint_onto_fs() {
	vm_start "$1" $(qmp_arg "$1") $(ram_file_args "$1" "$T/$1.ram")
	vm_wait_tick "$1" 2 60
	"$HU_BIN" checkpoint --state-dir "$T/fs/hu" --vm "$1"
	[ -s "$T/fs/hu/manifest.json" ]
	umount "$T/fs"
}

# unmount_fs: a QEMU killed a moment ago may still be letting go of its log in there.
unmount_fs() {
	local i
	for i in $(seq 50); do
		umount "$T/fs" 2>/dev/null && return 0
		sleep 0.1
	done
	fuser -vm "$T/fs" >&2 || true
	umount "$T/fs"
}

state_fs_mounted() { grep -q " $R/state-fs " /proc/self/mountinfo; }

@test "early boot finds the state dir by file system UUID (ext4, xfs), reads it, leaves no mount" {
	local fs n=0
	for fs in ext4 xfs; do
		command -v "mkfs.$fs" >/dev/null || continue
		make_fs "$fs"
		checkpoint_onto_fs "e31$fs"
		run --separate-stderr early_boot "console=ttyS0 hu.restore=1 hu.state=UUID=$FS_UUID:/hu"
		echo "$fs: $stderr"
		[ "$status" -eq 0 ]
		# It read the manifest there (the drop-in names the VM's RAM directory, from
		# that manifest only) and arranged the restore.
		cat "$T/dropin/50-ram-mounts.conf"
		# ($T has '-' and '.' to escape: systemd's own escaper is the judge.)
		grep -qFx "After=$(systemd-escape --path --suffix=mount "$T")" "$T/dropin/50-ram-mounts.conf"
		grep -qFx "Wants=$(systemd-escape --path --suffix=mount "$T")" "$T/dropin/50-ram-mounts.conf"
		[ "$(json_get "$(cat "$R/early-boot.json")" 'j.get("error")')" = null ]
		[ -L "$T/wants/host-upgrade-restore.service" ]
		! state_fs_mounted || false
		[ ! -e "$R/state-fs" ]
		# The checkpoint is intact: mounted back, restore continues the guest.
		mount "$DEV" "$T/fs"
		local t
		t=$(vm_last_tick "e31$fs")
		"$HU_BIN" restore --state-dir "$T/fs/hu"
		vm_wait_tick "e31$fs" $((t + 2)) 30
		[ "$(vm_boot_count "e31$fs")" -eq 1 ]
		cleanup_vms
		unmount_fs
		losetup -d "$DEV"
		: >"$LOOP_FILE"
		rm -rf "$R" "$T/wants" "$T/dropin" "$T/fs.img"
		n=$((n + 1))
	done
	[ "$n" -ge 1 ]
}

@test "early boot: a hu.state= that names no file system, or is malformed, says which (exit 1), mounts nothing" {
	run --separate-stderr early_boot "hu.restore=1 hu.state=UUID=0badc0de-0000-4000-8000-000000000000:/hu"
	echo "$stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"hu.state="*"no file system with that UUID"* ]]
	[ "$(json_get "$(cat "$R/early-boot.json")" 'j["error"]')" = "No such device" ]
	! state_fs_mounted || false
	for bad in "/dev/vdb:/hu" "UUID=:/hu" "UUID=abc:hu" "UUID=abc"; do
		run --separate-stderr early_boot "hu.restore=1 hu.state=$bad"
		echo "$bad: $stderr"
		[ "$status" -eq 1 ]
		[[ "$stderr" == *"hu.state="*"not UUID=<uuid>:/<dir>"* ]]
	done
	# Still the restore unit is linked: restore decides, and says the same.
	[ -L "$T/wants/host-upgrade-restore.service" ]
}
