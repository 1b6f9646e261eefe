#!/bin/bash
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-run.sh
#
# The real thing: `host-upgrade run` upgrades the test host's kernel with live VMs.
# boot 1 (6.1): legacy pmem -> fsdax namespace -> ext4 in /etc/fstab, mounted -o dax,
#   each step a block of docs/preparing-a-host.md, run as written and checked;
#   three inner VMs (tick.elf) with RAM files on it, in different argv shapes, and
#   a fourth, vm4, as a libvirt domain (libvirtd of the test host, stock file-backed
#   RAM with memory_backing_dir on the DAX mount, autostart on); they tick; the harness's RAM-digest units are put in place (in-host/vms.sh);
#   `host-upgrade run --kernel /boot/vmlinuz-NEW --initrd /boot/initrd.img-NEW --yes`
#   (plan, preflight, kexec_file_load, checkpoint, kexec.target through systemd).
# boot 2 (6.12, after the kexec; nothing here starts the restore): the initrd's
#   host-upgrade-early.service and host-upgrade-restore.service have run by
#   themselves. Checks: the new kernel runs; the restore unit succeeded, after the
#   RAM's filesystem was mounted; status --json has every VM restored with a
#   downtime; every guest counter continued with no second BOOT line; the RAM
#   digests taken at the shutdown after the checkpoint and before the restore
#   match; /run/host-upgrade/early-boot.json has every medium ok; vm4 came back
#   through host-upgrade-restore-libvirt.service after libvirtd (whose autostart did
#   not cold-boot it), running under libvirt, persistent and autostart as before,
#   virsh suspend/resume work.
# run-host.sh's report.py turns the stamped logs into the timings.
# Sourced by /hu/boot.sh (set -e, ERR trap, helpers from lib.sh).

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-run.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
# The pmem, its fstab line, vm1's command line, libvirt's memory_backing_dir and
# <memoryBacking>, and the plan come from the operator's guide, docs/preparing-a-host.md:
# its hu-run blocks, run as written (in-host/guide.sh; tests/bats/07-guide.bats checks
# that every one of them is run here)
VMS_GUIDE=1
# vm4: a libvirt domain (libvirt's stock file-backed RAM on the DAX mount) among the VMs
VMS_LIBVIRT=1
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	hu_result "cmdline $(cat /proc/cmdline)"
	vms_pmem_setup

	hu_phase start-vms
	vms_start

	hu_phase ticking
	vms_wait_ticking 6
	vms_record_plan
	vms_install_ram_hooks none

	hu_phase run
	vms_run_upgrade
	;;
2)
	hu_phase verify
	hu_result "cmdline $(cat /proc/cmdline)"
	vms_check_kexec_boot
	hu_check "the kexec kept memmap=256M!1G" grep -q 'memmap=256M!1G' /proc/cmdline
	vms_verify_restored
	vms_libvirt_verify

	# The ordering of the restore unit.
	mount_at=$(unit_mono "$VMS_MOUNT_UNIT" ActiveEnterTimestampMonotonic)
	restore_at=$(unit_mono host-upgrade-restore.service ExecMainStartTimestampMonotonic)
	hu_result "ordering: $VMS_MOUNT_UNIT active at ${mount_at:-?} us, restore started at ${restore_at:-?} us (monotonic)"
	hu_check "the RAM filesystem was mounted before the restore started" \
		test -n "$mount_at" -a "${mount_at:-0}" != 0 -a "${mount_at:-0}" -lt "${restore_at:-0}"
	hu_check "host-upgrade-restore.service (unit or drop-in) orders itself after $VMS_MNT" \
		sh -c "systemctl cat host-upgrade-restore.service | grep -v '^#' | grep -q -e '$VMS_MNT' -e '$VMS_MOUNT_UNIT'"
	tmpf_at=$(unit_mono systemd-tmpfiles-setup.service ActiveEnterTimestampMonotonic)
	hu_result "ordering: systemd-tmpfiles-setup.service done at ${tmpf_at:-?} us, restore started at ${restore_at:-?} us"
	hu_check "host-upgrade-restore.service is ordered after systemd-tmpfiles-setup.service" \
		sh -c "systemctl show host-upgrade-restore.service -p After --value | tr ' ' '\\n' | grep -qx systemd-tmpfiles-setup.service"
	for vm in $VMS; do
		pid=$(vm_pid_by_name "$vm")
		hu_result "$vm: restored QEMU pid ${pid:-none} in cgroup $(cut -d: -f3 "/proc/${pid:-0}/cgroup" 2>/dev/null || echo '?')"
	done
	hu_result "uname -r: $(uname -r)"
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
