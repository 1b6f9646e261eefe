#!/usr/bin/env bats
# The early-boot pieces (#4): an initramfs built by the real dracut with our module, its
# contents; the systemd units pass systemd-analyze verify.

bats_require_minimum_version 1.5.0

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
BUILD=${HU_BUILD_DIR:-$TOP/build}

setup_file() {
	command -v dracut >/dev/null || skip "dracut is not installed (scripts/install-deps installs dracut-core)"
	KVER=$(ls /lib/modules 2>/dev/null | sort -V | tail -n1)
	[ -n "$KVER" ] || skip "no kernel modules installed (linux-image-amd64)"
	export KVER
	# dracut reads its modules from one directory: a copy with ours added.
	D=$BATS_FILE_TMPDIR/dracut
	cp -a /usr/lib/dracut "$D"
	cp -a "$TOP/dracut/90host-upgrade" "$D/modules.d/"
	make -s -C "$TOP" units SBINDIR=/usr/sbin BUILD="$BATS_FILE_TMPDIR/b" >/dev/null
	cp "$BATS_FILE_TMPDIR/b/units/host-upgrade-early.service" "$D/modules.d/90host-upgrade/"
	HOST_UPGRADE_BIN=$BUILD/host-upgrade dracutbasedir=$D \
		dracut --no-hostonly --force --no-compress \
		-m "systemd systemd-initrd base kernel-modules host-upgrade" \
		--kver "$KVER" "$BATS_FILE_TMPDIR/initrd.img" >"$BATS_FILE_TMPDIR/dracut.log" 2>&1 ||
		{ tail -20 "$BATS_FILE_TMPDIR/dracut.log" >&3; return 1; }
	lsinitrd "$BATS_FILE_TMPDIR/initrd.img" >"$BATS_FILE_TMPDIR/list"
}

has() { grep -qE "$1" "$BATS_FILE_TMPDIR/list" || { echo "not in the initramfs: $1" >&2; return 1; }; }

@test "initramfs has host-upgrade, its libraries and the early unit wanted by initrd.target" {
	has ' usr/sbin/host-upgrade$'
	has 'lib/systemd/system/host-upgrade-early.service$'
	has 'initrd.target.wants/host-upgrade-early.service -> '
	has 'libkmod\.so'
	has 'libblkid\.so'
	has 'libjson-c\.so'
	# the unit inside runs the installed binary on the real root
	lsinitrd -f usr/lib/systemd/system/host-upgrade-early.service "$BATS_FILE_TMPDIR/initrd.img" |
		grep -q '^ExecStart=/usr/sbin/host-upgrade early-boot --root /sysroot$'
}

@test "initramfs has the modules the RAM medium and KVM need" {
	local m
	for m in acpi/nfit/nfit nvdimm/libnvdimm nvdimm/nd_pmem nvdimm/nd_e820 dax/dax_pmem kvm/kvm kvm/kvm-intel kvm/kvm-amd; do
		has "/$m\.ko"
	done
}

@test "the host-upgrade binary inside the initramfs runs (its libraries resolve there)" {
	local x=$BATS_FILE_TMPDIR/x
	mkdir -p "$x"
	(cd "$x" && lsinitrd --unpack "$BATS_FILE_TMPDIR/initrd.img" >/dev/null 2>&1)
	run chroot "$x" /usr/sbin/host-upgrade --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"early-boot"* ]]
	# no restore marker: early-boot does nothing and says so
	mkdir -p "$x/proc"
	run chroot "$x" /usr/sbin/host-upgrade status --state-dir /nonexistent
	[ "$status" -eq 0 ]
}

@test "the units pass systemd-analyze verify" {
	command -v systemd-analyze >/dev/null || skip "no systemd-analyze"
	make -s -C "$TOP" units SBINDIR="$BUILD" BUILD="$BATS_TEST_TMPDIR/b" >/dev/null
	run systemd-analyze verify "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore.service"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	run systemd-analyze verify "$BATS_TEST_TMPDIR/b/units/host-upgrade-early.service"
	echo "$output"
	[ "$status" -eq 0 ]
	# libvirt's domains: their own unit, after libvirtd, pulled in by the first one.
	run systemd-analyze verify "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-libvirt.service"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	grep -q '^ExecStart=.* restore .*--manager none$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore.service"
	grep -q '^Wants=host-upgrade-restore-libvirt.service$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore.service"
	grep -q '^ExecStart=.* restore .*--manager libvirt$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-libvirt.service"
	grep -q '^After=libvirtd.service.* host-upgrade-restore.service$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-libvirt.service"
	# Proxmox VE's VMs: their own unit, before pve-guests and pve-ha-lrm, pulled in by the first one.
	run systemd-analyze verify "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-proxmox.service"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^Wants=host-upgrade-restore-proxmox.service$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore.service"
	grep -q '^ExecStart=.* restore .*--manager proxmox$' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-proxmox.service"
	grep -q '^Before=pve-guests.service pve-ha-lrm.service' "$BATS_TEST_TMPDIR/b/units/host-upgrade-restore-proxmox.service"
}
