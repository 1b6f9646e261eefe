#!/bin/bash
# hu-host: nvdimm
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-fsdax-renumber.sh
#
# The fsdax counterpart of scenario-devdax-renumber.sh, on the NVDIMM host: one
# fsdax namespace per VM (create-namespace -m fsdax -s 96M -a 2M), each with its
# own ext4 (-b 4096) mounted -o dax BY ITS FILESYSTEM UUID from /etc/fstab on
# /mnt/pmem-VM, the VM's RAM a file there (memory-backend-file, share=on). Between
# the checkpoint and the restore (in the shutdown after the checkpoint, once every
# QEMU has quit and the harness has taken its RAM digests: ram-hook "destroy-ns")
# vm1's filesystem is unmounted and its namespace destroyed; nothing takes its
# place. After the kexec the kernel numbers the other two one lower: vm2's
# filesystem is on /dev/pmem0 (was /dev/pmem1), vm3's on /dev/pmem1 (was
# /dev/pmem2); fstab mounts them where they were, by UUID. The product's path under
# test: restore finds a renumbered fsdax namespace through the mount (the file's
# device, then the same namespace uuid, mode and size: fsdax_by_mount).
# boot 2 (the restore unit runs by itself):
#   precondition (from ndctl and findmnt, not from the product): two namespaces
#   left; vm2's and vm3's filesystems are mounted from another /dev/pmemN than at
#   the checkpoint, the one that holds their namespace's uuid now; vm1's namespace
#   is gone and its filesystem not mounted;
#   the restore unit ran and exits 1 (vm1 refused): vm1 failed, with a reason
#   naming its device and its namespace, no QEMU, nothing printed since;
#   vm2, vm3 restored (status, counters continue, one BOOT line, ticks
#   consecutive, harness md5 of the RAM file at the shutdown equal to the one
#   before the restore); the product's log says where it found each filesystem
#   ("its RAM's file system is on pmemN now (was pmemM)"); the manifest recorded
#   each medium as fsdax with its namespace's uuid; a second restore changes nothing.
# Mounting by /dev/pmemN instead of UUID= would, after this renumbering, put vm3's
# filesystem where vm2's was: only the uuid of the filesystem identifies it.

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-fsdax-renumber.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
VMS_MEDIUM=fsdax-ns
# room for the 48 MiB RAM file of vm2 on an ext4 with its journal, after the struct pages
VMS_DAX_NS_SIZE=96M
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

# What the product logged in this boot (the restore unit's journal), and its stderr
# when restore was run by hand.
product_log() {
	{
		journalctl -b --no-pager -o cat SYSLOG_IDENTIFIER=host-upgrade 2>/dev/null || true
		cat "$HU_RESULTS/restore-by-hand.log" 2>/dev/null || true
	}
}
logged() { product_log | grep -qF -- "$1"; }

case "$HU_BOOT" in
1)
	vms_nvdimm_upgrade_with destroy-ns
	;;
2)
	hu_phase verify
	vms_check_kexec_boot
	hu_result "ram-hook at the shutdown: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-before.log 2>/dev/null)"
	hu_result "ram-hook before the restore: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-after.log 2>/dev/null)"
	vms_ndctl_namespaces > "$HU_STATE/ndctl-namespaces-boot2.txt"
	hu_result "ndctl list -N (boot 2): $(ndctl list -N | hu_json_compact)"
	hu_result "mounts (boot 2): $(findmnt -n -l -o TARGET,SOURCE,OPTIONS -t ext4 | tr -s ' ' | tr '\n' '|')"

	# Preconditions: the renumbering really happened, seen by ndctl and findmnt.
	hu_check "precondition: one namespace fewer (two left)" test "$(vms_ndctl_namespaces | wc -l)" = 2
	hu_check "precondition: vm1's namespace $(vm_dax_field vm1 4) is gone" test -z "$(dev_of_uuid "$(vm_dax_field vm1 4)")"
	hu_check "precondition: vm1's filesystem is not mounted on $(vm_mnt vm1)" sh -c "! mountpoint -q '$(vm_mnt vm1)'"
	for vm in vm2 vm3; do
		was=$(vm_dax_field "$vm" 2)
		ns=$(dev_of_uuid "$(vm_dax_field "$vm" 4)")
		src=$(findmnt -n -o SOURCE --mountpoint "$(vm_mnt "$vm")" || true)
		hu_result "$vm: namespace $(vm_dax_field "$vm" 4): at the checkpoint $was, now ${ns:-nowhere}; $(vm_mnt "$vm") is mounted from ${src:-nothing}"
		hu_check "precondition: $vm's filesystem is mounted from its namespace, under another name than at the checkpoint" \
			test -n "$ns" -a "$src" = "$ns" -a "$ns" != "$was"
		eval "new_$vm=\$ns"
	done

	vms_wait_restore_unit
	ran=$(unit_mono host-upgrade-restore.service ExecMainStartTimestampMonotonic)
	hu_result "host-upgrade-restore.service drop-ins: $(cat /run/systemd/system/host-upgrade-restore.service.d/*.conf 2>/dev/null | grep -v '^#' | tr '\n' ' ')"
	hu_check "the restore unit ran by itself (one VM's lost filesystem does not hold the others back)" test "${ran:-0}" != 0
	hu_check "the restore unit reports the refused VM (exit status 1)" \
		test "$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 1
	if [ "${ran:-0}" = 0 ]; then
		hu_result "FINDING: host-upgrade-restore.service did not run: $(systemctl show host-upgrade-restore.service -p Result -p ActiveState | tr '\n' ' '); journal: $(journalctl -b --no-pager -o cat -u host-upgrade-restore.service | tail -n 3 | tr '\n' '|')"
		# So that the checks below still say something about restore itself.
		rc=0
		host-upgrade restore --state-dir "$VMS_STATE_DIR" 2> "$HU_RESULTS/restore-by-hand.log" || rc=$?
		hu_result "restore run by hand: exit $rc: $(tr '\n' '|' < "$HU_RESULTS/restore-by-hand.log")"
	fi
	vms_status
	hu_result "vm1: $(vm_status_error vm1)"
	hu_check "vm1 (its namespace destroyed) refused: failed" vm_status_is vm1 failed
	hu_check "vm1: the reason names the device it was on and its namespace" \
		error_mentions vm1 "$(basename "$(vm_dax_field vm1 2)")" "$(vm_dax_field vm1 4)"
	hu_check "vm1: no QEMU runs it and its guest printed nothing since the checkpoint" vm_stayed_down vm1

	# shellcheck disable=SC2154 # set by eval above
	for vm in vm2 vm3; do
		[ "$vm" = vm2 ] && now=$new_vm2 || now=$new_vm3
		was=$(vm_dax_field "$vm" 2)
		hu_check "$vm restored, its RAM file on the renumbered namespace" vm_status_is "$vm" restored
		vm_check_resumed "$vm"
		a=$(ram_digest before "$(vm_ram "$vm")")
		b=$(ram_digest after "$(vm_ram "$vm")")
		hu_result "$vm: harness md5 of $(vm_ram "$vm") at the shutdown ${a:-none}, before the restore ${b:-none}"
		hu_check "$vm: guest RAM identical after the kexec (md5 of all of $(vm_ram "$vm"))" test -n "$a" -a "$a" = "$b"
		line="$vm: its RAM's file system is on ${now#/dev/} now (was ${was#/dev/})"
		hu_result "$vm: product log: $(product_log | grep -F "$vm: its RAM's file system" | tr '\n' '|')"
		hu_check "$vm: the product logged \"$line\"" logged "$line"
		md=$(manifest_medium "$vm")
		hu_result "$vm: manifest medium: ${md:-none}"
		hu_check "$vm: the manifest recorded its RAM medium as fsdax, namespace uuid $(vm_dax_field "$vm" 4)" \
			test "$(echo "$md" | cut -d' ' -f1,3)" = "fsdax $(vm_dax_field "$vm" 4)"
	done
	cp /run/host-upgrade/early-boot.json "$HU_RESULTS/early-boot.json" 2>/dev/null || true
	hu_result "early-boot.json: $(hu_json_compact < /run/host-upgrade/early-boot.json 2>/dev/null || echo missing)"
	hu_check "early boot: vm1's medium not back" test "$(early_medium vm1)" = "False -"
	# shellcheck disable=SC2154 # set by eval above
	hu_check "early boot: vm2's medium found renumbered on $new_vm2" test "$(early_medium vm2)" = "True ${new_vm2#/dev/}"
	hu_check "early boot: vm3's medium found renumbered on $new_vm3" test "$(early_medium vm3)" = "True ${new_vm3#/dev/}"

	hu_phase restore-again
	vms_restore_again vm1 vm2 vm3
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
