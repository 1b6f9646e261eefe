#!/bin/bash
# hu-host: nvdimm
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-devdax-recreate.sh
#
# The devdax path of scenario-devdax.sh, but between the checkpoint and the
# restore — in the shutdown after the checkpoint, once every QEMU has quit and the
# harness has taken its RAM digests (in-host/vms.sh, ram-hook "recreate-ns") —
# vm2's namespace is destroyed and created again with the same size. It lands in
# the same place on the NVDIMM (the bytes there are untouched) and, after the kexec,
# under the same name (/dev/dax0.1: the kernel numbers namespaces by their place);
# only its uuid is new. Size and mode match: only the namespace's identity tells
# that this is not the pmem vm2's RAM was left in.
# boot 2 (after the kexec; the restore unit ran by itself): the recreation took
# (precondition: same device name, same size, new uuid); vm2 is refused with a
# reason naming its device and the namespace it had, has no QEMU, prints nothing
# more; vm1 and vm3 are restored and tick on; status --json says so; a second
# `host-upgrade restore` changes nothing.

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-devdax-recreate.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
VMS_MEDIUM=devdax
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

# the uuid in an ndctl JSON file (an object, or a list of one)
json_uuid() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print((d[0] if isinstance(d, list) else d).get("uuid", ""))' "$1" 2>/dev/null || true
}

case "$HU_BOOT" in
1)
	vms_nvdimm_upgrade_with recreate-ns
	;;
2)
	hu_phase verify
	vms_check_kexec_boot
	hu_result "ram-hook at the shutdown: $(tr '\n' '|' < /var/lib/hu-test/ram-hook-before.log 2>/dev/null)"

	# Precondition: the namespace really was replaced, under the same name.
	vm2_dev=$(vm_ram vm2)
	vm2_uuid=$(vm_dax_field vm2 4)
	new_uuid=$(json_uuid /var/lib/hu-test/recreate-new.json)
	vms_ndctl_namespaces > "$HU_STATE/ndctl-namespaces-boot2.txt"
	hu_result "ndctl list -N (boot 2): $(ndctl list -N | hu_json_compact)"
	now=$(ns_of_chardev "$(basename "$vm2_dev")")
	hu_result "vm2: $vm2_dev was namespace $(vm_dax_field vm2 3) uuid $vm2_uuid; recreated as uuid ${new_uuid:-?}; now: ${now:-nothing}"
	hu_check "precondition: vm2's namespace was re-created with a new uuid" test -n "$new_uuid" -a "$new_uuid" != "$vm2_uuid"
	hu_check "precondition: after the kexec $vm2_dev is that new namespace (same name, same size, devdax)" \
		test "$(echo "$now" | cut -d' ' -f2,4,5)" = "devdax $new_uuid $(awk -v c="$(basename "$vm2_dev")" '$3 == c { print $5 }' "$HU_STATE/ndctl-namespaces-boot1.txt")"
	for vm in vm1 vm3; do
		hu_check "$vm: its namespace is back with its uuid" \
			test "$(ns_of_chardev "$(basename "$(vm_ram "$vm")")" | cut -d' ' -f4)" = "$(vm_dax_field "$vm" 4)"
	done

	vms_wait_restore_unit
	hu_check "the restore unit ran" test "$(systemctl show host-upgrade-restore.service -p ConditionResult --value)" = yes
	hu_check "the restore unit reports the refused VM (exit status 1)" \
		test "$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 1
	vms_status
	hu_check "status phase is restore-failed" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["phase"] != "restore-failed")' "$HU_RESULTS/status.json"
	hu_result "vm2: $(vm_status_error vm2)"
	hu_check "vm2 (namespace re-created) refused: failed" vm_status_is vm2 failed
	hu_check "vm2: the reason names its device and the namespace it had" error_mentions vm2 "$(basename "$vm2_dev")" "$vm2_uuid"
	hu_check "vm2: no QEMU runs it and its guest printed nothing since the checkpoint" vm_stayed_down vm2
	cp /run/host-upgrade/early-boot.json "$HU_RESULTS/early-boot.json" 2>/dev/null || true
	hu_result "early-boot.json: $(hu_json_compact < /run/host-upgrade/early-boot.json 2>/dev/null || echo missing)"

	for vm in vm1 vm3; do
		hu_check "$vm restored, with a downtime" vm_status_is "$vm" restored
		vm_check_resumed "$vm"
		hu_check "$vm: harness digest of $(vm_ram "$vm") unchanged" \
			test -n "$(ram_digest before "$(vm_ram "$vm")")" -a "$(ram_digest before "$(vm_ram "$vm")")" = "$(ram_digest after "$(vm_ram "$vm")")"
	done
	# Not a check: whether the bytes under the new namespace are still vm2's RAM.
	# When they are, neither the size nor a digest of the RAM could have told.
	a=$(ram_digest before "$vm2_dev")
	b=$(ram_digest after "$vm2_dev")
	hu_result "vm2: harness md5 of $vm2_dev at the shutdown ${a:-none}, under the new namespace ${b:-none}: $([ -n "$a" ] && [ "$a" = "$b" ] && echo 'same bytes, only the uuid differs' || echo 'bytes differ')"

	hu_phase restore-again
	vms_restore_again vm2 vm1 vm3
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
