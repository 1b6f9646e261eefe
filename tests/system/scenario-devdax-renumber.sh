#!/bin/bash
# hu-host: nvdimm
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-devdax-renumber.sh
#
# The devdax path of scenario-devdax.sh, but between the checkpoint and the
# restore (in the shutdown after the checkpoint, once every QEMU has quit and the
# harness has taken its RAM digests: ram-hook "destroy-ns") vm1's namespace is
# destroyed and nothing takes its place. After the kexec the kernel numbers the
# other two one lower: vm2's namespace (was /dev/dax0.1) is /dev/dax0.0, vm3's
# (was /dev/dax0.2) is /dev/dax0.1 — bytes and uuids intact, names shifted.
# boot 2 (the restore unit ran by itself):
#   precondition: two namespaces left, vm2's and vm3's uuids one name lower;
#   vm1 refused (its RAM is gone; the device its argv names is vm2's namespace
#   now, which must not be taken for vm1's), no QEMU, nothing printed;
#   vm2 and vm3 restored from their namespaces under the new names: their
#   restored QEMUs' argv names the new device (vm2's JSON -object, vm3's keyval
#   -object), counters continue with one BOOT line, and the harness's digest of
#   each namespace at the shutdown equals the one under its new name.

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-devdax-renumber.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
VMS_MEDIUM=devdax
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

# Does the QEMU running VM $1 name device $2 as its RAM?
argv_names() {
	local pid
	pid=$(vm_pid_by_name "$1")
	[ -n "$pid" ] && tr '\0' '\n' < "/proc/$pid/cmdline" | grep -q -- "\"mem-path\":\"$2\"\|mem-path=$2\(,\|$\)"
}

case "$HU_BOOT" in
1)
	vms_nvdimm_upgrade_with destroy-ns
	;;
2)
	hu_phase verify
	vms_check_kexec_boot
	hu_result "ram-hook at the shutdown: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-before.log 2>/dev/null)"
	hu_result "ndctl list -N (boot 2): $(ndctl list -N | hu_json_compact)"
	hu_check "precondition: one namespace fewer (two left)" test "$(vms_ndctl_namespaces | wc -l)" = 2
	for vm in vm2 vm3; do
		was=$(vm_ram "$vm")
		now=$(dev_of_uuid "$(vm_dax_field "$vm" 4)")
		hu_result "$vm: namespace $(vm_dax_field "$vm" 4) was $was, is ${now:-nowhere} now"
		hu_check "precondition: $vm's namespace is back under another name" test -n "$now" -a "$now" != "$was"
		eval "new_$vm=\$now"
	done

	vms_wait_restore_unit
	hu_check "the restore unit reports the refused VM (exit status 1)" \
		test "$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 1
	vms_status
	hu_result "vm1: $(vm_status_error vm1)"
	hu_check "vm1 (its namespace destroyed) refused: failed" vm_status_is vm1 failed
	hu_check "vm1: the reason names the device its argv had and its namespace" \
		error_mentions vm1 "$(basename "$(vm_ram vm1)")" "$(vm_dax_field vm1 4)"
	hu_check "vm1: no QEMU runs it and its guest printed nothing since the checkpoint" vm_stayed_down vm1
	# shellcheck disable=SC2154 # set by eval above
	for vm in vm2 vm3; do
		[ "$vm" = vm2 ] && now=$new_vm2 || now=$new_vm3
		hu_check "$vm restored from its namespace under the new name" vm_status_is "$vm" restored
		hu_check "$vm: the restored QEMU's argv names $now" argv_names "$vm" "$now"
		vm_check_resumed "$vm"
		a=$(ram_digest before "$(vm_ram "$vm")")
		b=$(ram_digest after "$now")
		hu_result "$vm: harness md5 of $(vm_ram "$vm") at the shutdown ${a:-none}, of $now before the restore ${b:-none}"
		hu_check "$vm: its RAM is the namespace it was checkpointed on (same md5 under the new name)" test -n "$a" -a "$a" = "$b"
		hu_check "early boot: $vm's medium found renumbered on $now" test "$(early_medium "$vm")" = "True ${now#/dev/}"
	done
	hu_result "early-boot.json: $(hu_json_compact < /run/host-upgrade/early-boot.json 2>/dev/null || echo missing)"
	hu_check "early boot: vm1's medium not back" test "$(early_medium vm1)" = "False -"
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
