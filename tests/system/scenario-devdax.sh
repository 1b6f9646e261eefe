#!/bin/bash
# hu-host: nvdimm
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-devdax.sh
#
# The real path of scenario-run.sh, with the VMs' RAM on device DAX instead of
# files on an fsdax mount. The header line above makes run-host.sh boot the test
# host with an emulated ACPI NVDIMM that has a label area (no memmap= legacy pmem).
# boot 1 (6.1): ndctl disable-region/init-labels/enable-region, one devdax
#   namespace per VM (create-namespace -m devdax -s 64M -a 2M); three inner VMs
#   with mem-path=/dev/daxX.Y,share=on,align=2M in the argv shapes of in-host/vms.sh;
#   `plan --json` must call every VM's RAM persistent and saved in place; the
#   harness's RAM-digest units (every byte of every device, through mmap);
#   `host-upgrade run --kernel NEW --initrd NEW --yes`.
# boot 2 (6.12, after the kexec; the restore unit ran by itself): the new kernel
#   runs, without memmap=; every namespace is back with the uuid it had in boot 1
#   (ndctl list -N before and after), under the same device name; then the
#   checks of scenario-run (vms_verify_restored): restore unit succeeded, every VM
#   restored with a downtime, counters continued with one BOOT line, RAM digests
#   equal, early-boot.json has every medium ok; the manifest recorded every VM's
#   medium as devdax, its device and its namespace's uuid.
# Sourced by /hu/boot.sh (set -e, ERR trap, helpers from lib.sh).

if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-devdax.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi
VMS_MEDIUM=devdax
# shellcheck source-path=SCRIPTDIR source=in-host/vms.sh
. /hu/vms.sh

# plan.json: every VM's RAM persistent and saved in place
plan_all_in_place() {
	python3 - "$HU_RESULTS/plan.json" "$VMS" <<-'PY'
	import json, sys
	p = json.load(open(sys.argv[1]))
	v = {v.get("name"): v for v in p.get("vms", [])}
	ok = p.get("ok") is True and sorted(v) == sorted(sys.argv[2].split())
	sys.exit(0 if ok and all(x.get("ram_backing") == "persistent" and x.get("save") == "in-place" for x in v.values()) else 1)
	PY
}

case "$HU_BOOT" in
1)
	hu_phase devdax-setup
	hu_result "cmdline $(cat /proc/cmdline)"
	vms_nvdimm_setup

	hu_phase start-vms
	vms_start

	hu_phase ticking
	vms_wait_ticking 6
	vms_record_plan
	hu_check "plan: every VM's RAM on devdax is persistent and saved in place" plan_all_in_place
	vms_install_ram_hooks none

	hu_phase run
	vms_run_upgrade
	;;
2)
	hu_phase verify
	hu_result "cmdline $(cat /proc/cmdline)"
	vms_check_kexec_boot
	hu_check "no memmap= (the RAM is on the NVDIMM, not on legacy pmem)" sh -c '! grep -q "memmap=" /proc/cmdline'

	vms_verify_restored

	# The namespaces: the same ones, by uuid, under the same names.
	vms_ndctl_namespaces > "$HU_STATE/ndctl-namespaces-boot2.txt"
	hu_result "ndctl list -N (boot 2): $(ndctl list -N | hu_json_compact)"
	hu_result "namespaces boot 1: $(tr '\n' '|' < "$HU_STATE/ndctl-namespaces-boot1.txt")"
	hu_result "namespaces boot 2: $(tr '\n' '|' < "$HU_STATE/ndctl-namespaces-boot2.txt")"
	for vm in $VMS; do
		dev=$(vm_ram "$vm")
		now=$(ns_of_chardev "$(basename "$dev")")
		hu_result "$vm: $dev was $(vm_dax_field "$vm" 3) uuid $(vm_dax_field "$vm" 4), is now: ${now:-nothing}"
		hu_check "$vm: $dev is still namespace $(vm_dax_field "$vm" 3), devdax, uuid $(vm_dax_field "$vm" 4)" \
			test -n "$now" -a "$(echo "$now" | cut -d' ' -f1,2,4)" = "$(vm_dax_field "$vm" 3) devdax $(vm_dax_field "$vm" 4)"
		md=$(manifest_medium "$vm")
		hu_result "$vm: manifest medium: ${md:-none}"
		hu_check "$vm: the manifest recorded its RAM medium: devdax $(basename "$dev"), namespace uuid $(vm_dax_field "$vm" 4)" \
			test "$md" = "devdax $(basename "$dev") $(vm_dax_field "$vm" 4)"
	done
	hu_result "uname -r: $(uname -r)"
	vms_collect_boot
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
