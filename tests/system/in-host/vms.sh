# shellcheck shell=bash
# Helpers shared by the scenarios that run the real upgrade (scenario-run.sh,
# scenario-wipe.sh, scenario-tamper.sh, the devdax scenarios, scenario-fsdax-renumber.sh).
# Sourced by a scenario inside the test host after lib.sh (boot.sh: set -eE, ERR
# trap). Functions used inside $(...) must not fail (they would trip the ERR trap).
#
# The VMs' RAM medium, VMS_MEDIUM (set it before sourcing this file):
#   fsdax   (default) files on an ext4 -o dax mount ($VMS_MNT) over the legacy pmem
#           of run-host.sh's legacy host (memmap=)
#   devdax  one device-DAX namespace per VM (/dev/daxX.Y, mem-path=the device,
#           align=2M) on the emulated, labelled NVDIMM of run-host.sh's nvdimm host
#           ("# hu-host: nvdimm" in the scenario); $VMS_DAX_MAP says which is whose
#   fsdax-ns  one fsdax namespace per VM on that NVDIMM, each with its own ext4
#           mounted -o dax by its filesystem UUID (/etc/fstab) on $VMS_MNT-NAME, the
#           VM's RAM a file there; $VMS_DAX_MAP says which namespace (/dev/pmemN) is whose
#
#   vms_pmem_setup      fsdax: legacy pmem -> fsdax namespace -> ext4 -b 4096, a line in
#                       /etc/fstab (UUID, dax,nofail,x-systemd.device-timeout=30s),
#                       mounted by systemd (mnt-pmem.mount) on $VMS_MNT. With VMS_GUIDE=1
#                       (scenario-run) the same steps are the operator's guide's own
#                       blocks (docs/preparing-a-host.md, run by guide.sh), checked here
#   vms_nvdimm_setup    devdax, fsdax-ns: labels on the NVDIMM (disable-region,
#                       init-labels, enable-region), then one namespace per VM
#                       (devdax: create-namespace -m devdax -s $VMS_DAX_NS_SIZE -a 2M;
#                       fsdax-ns: -m fsdax, then mkfs.ext4 -b 4096, a line in
#                       /etc/fstab by UUID and its mount unit started)
#   vms_start           three inner VMs (tick.elf), RAM on the medium, argv shapes:
#                         vm1 -qmp unix: + -daemonize/-pidfile + a raw disk image
#                         vm2 -chardev socket + -mon mode=control, JSON -object, plain child
#                         vm3 -qmp unix: + its own systemd unit (systemd-run), keyval -object
#   vms_wait_ticking N  every VM printed BOOT and reached tick N
#   vms_install_ram_hooks ACTION
#                       the harness's own look at the RAM files around the checkpoint
#                       (below); ACTION at the shutdown after the checkpoint: none,
#                       tamper (vm2's RAM zeroed, vm1's disk written), power-cycle or
#                       destroy-ns (devdax, fsdax-ns: vm1's namespace destroyed,
#                       after unmounting its fs, the others renumbered in the next boot),
#                       recreate-ns (devdax: vm2's namespace destroyed and created
#                       again with the same size: same place, new uuid)
#   vms_nvdimm_upgrade_with ACTION  boot 1 of an NVDIMM scenario: all of the above
#                       with ram-hook ACTION, then vms_run_upgrade
#   vms_record_plan     `plan` and `plan --json` (results/plan.json, a HU-RESULT line)
#   vms_check_kexec_boot  boot 2: the new kernel runs, reached with hu.restore=1
#   vms_run_upgrade     `host-upgrade run --kernel NEW --initrd NEW --yes`, the real
#                       path; waits for systemd's kexec to take the host down
#   vms_collect_boot    what phase 2 keeps for the report (journals of this boot and
#                       the one before, units, early-boot.json, manifest, status)
#   vms_verify_restored phase 2 of a scenario whose every VM must be back: restore
#                       unit succeeded, status restored, counters continued, RAM
#                       digests equal, early-boot.json media ok
#
# The RAM digests (independent of the product's sampled-page digest):
# hu-ram-before.service is started in phase 1; its ExecStop runs during the
# shutdown that `host-upgrade run` starts (systemd's kexec.target) — after the
# checkpoint, because run only asks for kexec.target once every QEMU has quit —
# and before /mnt/pmem is unmounted (RequiresMountsFor). It writes md5sum (every byte) of
# every RAM file to /var/lib/hu-test/ram-before.md5 (of a devdax device: every byte of
# the device, through mmap: device DAX has no read()). hu-ram-after.service
# (enabled in phase 1, runs in the next boot only with hu.restore=1) runs after
# local-fs.target and the RAM's mounts, before host-upgrade-restore.service: it
# hashes the same files before the restore resumes any guest (ram-after.md5); it does
# not wait for a devdax device that is not there yet (that would hide a restore that
# does not wait for it either): it logs it missing. Both are inside the blackout;
# their durations are reported on their own (HU-EVENT ram-hook lines).

VMS_STATE_DIR=/var/lib/host-upgrade
VMS_MNT=/mnt/pmem
# the unit of $VMS_MNT (legacy fsdax; scenario-run reads it); per mount: vms_mount_units
# shellcheck disable=SC2034
VMS_MOUNT_UNIT="mnt-pmem.mount"
VMS_RUNDIR=/run/hu-vms
VMS_LOGDIR=/var/log/hu-vms
VMS_VMDIR=/var/lib/hu-vms
VMS_TICK=$VMS_VMDIR/tick.elf
VMS="vm1 vm2 vm3"
# A libvirt domain among them (VMS_LIBVIRT=1 before sourcing this file; scenario-run):
# vm4, libvirt's stock file-backed memory (<memoryBacking><source type='file'/><access
# mode='shared'/>) with qemu.conf's memory_backing_dir on the DAX mount, as an operator
# (or Nova's file_backed_memory) sets it. libvirt names the RAM file
# DIR/libvirt/qemu/ID-vm4/pc.ram, with a new ID at every start, and deletes that folder at
# every stop: the product keeps the bytes by a hard link in DIR/libvirt/qemu/.host-upgrade/
# UUID/ from the checkpoint until the restore, and that link is what the harness digests.
: "${VMS_LIBVIRT:=0}"
VMS_LV_VM=vm4
VMS_LV_UUID=6f1c2a52-4d0e-4b8e-9c53-5e0d00c0ffe4
VMS_LV_RAMDIR=$VMS_MNT/libvirt-ram
if [ "$VMS_LIBVIRT" = 1 ]; then VMS="$VMS $VMS_LV_VM"; fi
vm_is_libvirt() { [ "$VMS_LIBVIRT" = 1 ] && [ "$1" = "$VMS_LV_VM" ]; }
lv_virsh() { virsh -q -c qemu:///system "$@"; }
VMS_HOOK=/usr/local/lib/hu-test/ram-hook
# The DAX filesystem's line in /etc/fstab, as an operator would write it: nofail, so
# a lost pmem does not drop the host into emergency mode — but a nofail mount is
# not ordered before local-fs.target: the product's initrd side adds a drop-in with
# Wants= + After= the RAM files' directories' mount units to host-upgrade-restore.service
# (before it did, all VMs were refused: "RAM in /mnt/pmem/vm1.ram: No such file or
# directory"; with RequiresMountsFor= one lost file system failed the whole unit).
# No x-systemd.before= here: the test proves the product orders itself.
# The device timeout is generous: under nested TCG on a busy machine, udev published
# /dev/disk/by-uuid/… 23 s after switch-root (the job's clock starts at switch-root).
: "${VMS_FSTAB_OPTS:=dax,nofail,x-systemd.device-timeout=90s}"
VMS_HOOK_CONF=/var/lib/hu-test/ram-hook.conf
# VMS_GUIDE=1 (fsdax only): the pmem, the fstab line, vm1's command line, libvirt's
# memory_backing_dir and <memoryBacking>, and the plan are run from the guide's
# blocks (docs/preparing-a-host.md) instead of this file's own commands.
: "${VMS_GUIDE:=0}"
# shellcheck source-path=SCRIPTDIR source=guide.sh
. /hu/guide.sh
: "${VMS_MEDIUM:=fsdax}"
# devdax, fsdax-ns: "NAME DEVICE NAMESPACE UUID" per VM (DEVICE /dev/daxX.Y or the
# /dev/pmemN under its fs), written by vms_nvdimm_setup in boot 1 (it survives the
# kexec: the names are what the VMs' argv and the checkpoint recorded).
VMS_DAX_MAP=/var/lib/hu-test/dax-map
VMS_DAX_REGION=region0
: "${VMS_DAX_NS_SIZE:=64M}"
case "$VMS_MEDIUM" in
fsdax | devdax | fsdax-ns) ;;
*) hu_fail "vms.sh: unknown VMS_MEDIUM $VMS_MEDIUM" ;;
esac

vm_serial() { echo "$VMS_LOGDIR/$1.serial"; }
vm_tick() { { grep -o '^tick [0-9]*' "$(vm_serial "$1")" 2>/dev/null || true; } | tail -n1 | cut -d' ' -f2; }
vm_boots() { grep -c '^BOOT' "$(vm_serial "$1")" 2>/dev/null || true; }
vm_lines() { wc -l < "$(vm_serial "$1")" 2>/dev/null || echo 0; }
vm_ticks_at_least() { local t; t=$(vm_tick "$1"); [ -n "$t" ] && [ "$t" -ge "$2" ]; }
# Every "tick N" line is the previous N + 1, from 1: the counter never restarted or jumped back.
vm_ticks_consecutive() {
	awk '/^tick / { if ($2 != n + 1) { print "tick " $2 " after tick " n; bad = 1 } n = $2 } END { exit bad }' "$(vm_serial "$1")"
}
vm_pid_by_name() { { pgrep -f -- "^(/[^ ]*/)?qemu-system-x86_64 -name (guest=)?$1( |,|$)" || true; } | head -n1; }
vm_qemu_count() { { pgrep -c -f -- "^(/[^ ]*/)?qemu-system-x86_64 -name (guest=)?$1( |,|$)" || true; } | head -n1; }
# Where a VM's RAM is: its file on $VMS_MNT (fsdax-ns: on its own mount), or
# (devdax) its /dev/daxX.Y.
vm_ram() {
	if vm_is_libvirt "$1"; then
		echo "$VMS_LV_RAMDIR/libvirt/qemu/.host-upgrade/$VMS_LV_UUID/pc.ram"
		return 0
	fi
	case "$VMS_MEDIUM" in
	devdax) vm_dax_field "$1" 2 ;;
	fsdax-ns) echo "$(vm_mnt "$1")/$1.ram" ;;
	*) echo "$VMS_MNT/$1.ram" ;;
	esac
}
# The mount point of the filesystem a VM's RAM file is on ("" on devdax)
vm_mnt() {
	case "$VMS_MEDIUM" in
	devdax) ;;
	fsdax-ns) echo "$VMS_MNT-$1" ;;
	*) echo "$VMS_MNT" ;;
	esac
}
# The mounts holding the VMs' RAM (one line each) and their units
vms_mnts() { local vm; for vm in $VMS; do vm_mnt "$vm"; done | sort -u; }
vms_mount_units() { local m; for m in $(vms_mnts); do systemd-escape -p --suffix=mount "$m"; done; }
# devdax, fsdax-ns: the device (2), namespace (3) or its uuid (4) a VM's RAM was put on in boot 1
vm_dax_field() { { awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$VMS_DAX_MAP" 2>/dev/null || true; } | head -n1; }
# RAM size of each VM, MiB
vm_mem_mb() { case "$1" in vm2) echo 48 ;; *) echo 32 ;; esac; }
vms_qemu_count() { { pgrep -c -f '^(/[^ ]*/)?qemu-system-x86_64 ' || true; } | head -n1; }

hu_collect_hook() {
	local d=$1
	mkdir -p "$d/vms"
	cp -a "$VMS_LOGDIR/." "$d/vms/" 2>/dev/null || true
	ps -eo pid,ppid,etimes,cgroup:80,args > "$d/ps.txt" 2>&1 || true
	ndctl list -NRD > "$d/ndctl.json" 2>&1 || true
	findmnt -t ext4,xfs > "$d/findmnt.txt" 2>&1 || true
	cp /etc/fstab "$d/fstab" 2>/dev/null || true
	cp /var/lib/hu-test/ram-*.md5 /var/lib/hu-test/ram-hook-*.log /var/lib/hu-test/serial-*.txt "$d/" 2>/dev/null || true
	cp "$VMS_DAX_MAP" /var/lib/hu-test/recreate-*.json "$d/" 2>/dev/null || true
}

pmem_ready() { [ -b /dev/pmem0 ]; }
# mnt_is_dax [MOUNTPOINT]: an ext4 mounted there with dax (default $VMS_MNT)
mnt_is_dax() { grep -q " ${1:-$VMS_MNT} ext4 .*dax" /proc/mounts; }
# dax_fstab MOUNTPOINT DEVICE: an ext4 (4 KiB blocks: DAX needs the page size) on
# DEVICE, a line in /etc/fstab by its UUID, mounted by systemd (its mount unit)
dax_fstab() {
	local mnt=$1 dev=$2 uuid unit
	mkfs.ext4 -q -F -b 4096 "$dev"
	udevadm settle
	uuid=$(blkid -s UUID -o value "$dev")
	[ -n "$uuid" ] || hu_fail "no UUID on the new ext4 of $dev"
	mkdir -p "$mnt"
	printf 'UUID=%s\t%s\text4\t%s\t0\t0\n' "$uuid" "$mnt" "$VMS_FSTAB_OPTS" >> /etc/fstab
	systemctl daemon-reload
	unit=$(systemd-escape -p --suffix=mount "$mnt")
	systemctl start "$unit"
	hu_check "$mnt is mounted with dax (by $unit from /etc/fstab)" mnt_is_dax "$mnt"
	hu_result "fstab: $(awk -v m="$mnt" '$2 == m { $1 = $1; print }' /etc/fstab)"
	hu_result "$mnt: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS "$mnt") $(df -h --output=size,avail "$mnt" | tail -n1 | tr -s ' ')"
}

vms_pmem_setup() {
	local ms=0
	if [ "$VMS_GUIDE" = 1 ]; then
		vms_guide_pmem_setup
		return 0
	fi
	pmem_ready || modprobe -a libnvdimm nd_pmem nd_e820 2>/dev/null || true
	hu_wait_for 30 "/dev/pmem0" pmem_ready
	hu_time ms ndctl create-namespace -f -e namespace0.0 -m fsdax >"$HU_RESULTS/ndctl-create.json"
	hu_result "fsdax namespace created in ${ms} ms: $(tr -d ' \n' < "$HU_RESULTS/ndctl-create.json" | cut -c1-200)"
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$HU_RESULTS/ndctl-create.json" > "$HU_STATE/ns-uuid" || true
	udevadm settle
	hu_wait_for 30 "/dev/pmem0 (fsdax)" pmem_ready
	dax_fstab "$VMS_MNT" /dev/pmem0
}

# vms_pmem_setup as docs/preparing-a-host.md tells an operator: its blocks, run as
# written (the GRUB edit on a copy: the test host boots without GRUB), and checked.
vms_guide_pmem_setup() {
	local mm tmp grub_mm out=$HU_RESULTS/guide
	mkdir -p "$out"
	mm=$(tr ' ' '\n' < /proc/cmdline | grep '^memmap=' || true)
	hu_result "the test host booted with ${mm:-no memmap=}"
	guide_run e820-check > "$out/e820-check.txt"
	hu_check "guide e820-check: its region ($mm) lies inside the firmware's usable RAM" \
		grep -q "^OK: $mm lies inside usable RAM" "$out/e820-check.txt"
	# Debian's stock /etc/default/grub lines the sed works on
	tmp=$(mktemp -d)
	printf '%s\n' 'GRUB_DEFAULT=0' 'GRUB_TIMEOUT=5' 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' 'GRUB_CMDLINE_LINUX=""' > "$tmp/grub"
	GUIDE_SED="s|/etc/default/grub|$tmp/grub|g" guide_run grub > "$out/grub.txt"
	grub_mm=$(sed -n 's/^GRUB_CMDLINE_LINUX="\(.*\)"$/\1/p' "$tmp/grub" | tr ' ' '\n' | grep '^memmap=' || true)
	hu_check "guide grub: GRUB_CMDLINE_LINUX gets the memmap= the test host booted with ($mm = ${grub_mm:-none})" \
		test -n "$mm" -a "$grub_mm" = "$mm"
	rm -rf "$tmp"
	guide_run pmem-device > "$out/pmem-device.txt"
	hu_check "guide pmem-device: the kernel shows the region as legacy persistent memory" \
		grep -qi 'Persistent Memory (legacy)' "$out/pmem-device.txt"
	hu_wait_for 30 "/dev/pmem0" pmem_ready
	guide_run namespace > "$HU_RESULTS/ndctl-create.json"
	hu_result "fsdax namespace: $(tr -d ' \n' < "$HU_RESULTS/ndctl-create.json" | cut -c1-200)"
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$HU_RESULTS/ndctl-create.json" > "$HU_STATE/ns-uuid" || true
	hu_check "guide namespace: namespace0.0 is fsdax on pmem0" python3 -c 'import json, sys
n = json.load(open(sys.argv[1]))
sys.exit(0 if n.get("mode") == "fsdax" and n.get("blockdev") == "pmem0" else 1)' "$HU_RESULTS/ndctl-create.json"
	udevadm settle
	hu_wait_for 30 "/dev/pmem0 (fsdax)" pmem_ready
	guide_run mkfs > "$out/mkfs.txt"
	guide_run fstab > "$out/fstab.txt"
	hu_check "guide fstab: $VMS_MNT is mounted with dax (by $VMS_MOUNT_UNIT from /etc/fstab)" mnt_is_dax "$VMS_MNT"
	# shellcheck disable=SC2016 # awk's $N
	hu_check "guide fstab: the line is by UUID, with the options the other scenarios use ($VMS_FSTAB_OPTS)" \
		awk -v m="$VMS_MNT" -v o="$VMS_FSTAB_OPTS" '$2 == m && $1 ~ /^UUID=/ && $4 == o { f = 1 } END { exit !f }' /etc/fstab
	hu_result "fstab: $(awk -v m="$VMS_MNT" '$2 == m { $1 = $1; print }' /etc/fstab)"
	hu_result "$VMS_MNT: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS "$VMS_MNT") $(df -h --output=size,avail "$VMS_MNT" | tail -n1 | tr -s ' ')"
}

# The namespaces ndctl sees, one line each: "NAMESPACE MODE CHARDEV|BLOCKDEV UUID SIZE"
# (ndctl list -N prints an object for one namespace, a list for several).
vms_ndctl_namespaces() {
	{ ndctl list -N 2>/dev/null || echo '[]'; } | python3 -c 'import json, sys
d = json.loads(sys.stdin.read() or "[]")
for n in sorted(d if isinstance(d, list) else [d], key=lambda n: n.get("dev", "")):
    devs = (n.get("daxregion") or {}).get("devices") or [{}]
    dev = n.get("chardev") or devs[0].get("chardev") or n.get("blockdev") or "-"
    print(n.get("dev"), n.get("mode"), dev, n.get("uuid") or "-", n.get("size"))
' 2>/dev/null || true
}
# the namespace line of a dax device (daxX.Y), or nothing
ns_of_chardev() { vms_ndctl_namespaces | awk -v c="$1" '$3 == c'; }
# The device (/dev/daxX.Y or /dev/pmemN) that holds namespace uuid $1 now (from ndctl, not from the product).
dev_of_uuid() { { vms_ndctl_namespaces | awk -v u="$1" '$4 == u { print "/dev/" $3 }' || true; } | head -n1; }
# The initrd side's report on a VM's RAM medium (its first): "ok moved_to" from
# /run/host-upgrade/early-boot.json, e.g. "True pmem0" or "False -" (empty if none)
early_medium() {
	python3 - /run/host-upgrade/early-boot.json "$1" <<-'PY' 2>/dev/null || true
	import json, sys
	for m in json.load(open(sys.argv[1])).get("media") or []:
	    if m.get("vm") == sys.argv[2]:
	        print(m.get("ok"), m.get("moved_to") or "-")
	        break
	PY
}
# The manifest's record of a VM's RAM medium, one line per memdev: "kind device uuid" (empty if none)
manifest_medium() {
	python3 - "$VMS_STATE_DIR/manifest.json" "$1" <<-'PY' 2>/dev/null || true
	import json, sys
	m = json.load(open(sys.argv[1]))
	for v in m.get("vms", []):
	    if v.get("name") == sys.argv[2]:
	        for d in v.get("memdevs", []):
	            md = d.get("medium") or {}
	            print(md.get("kind"), md.get("device"), md.get("uuid"))
	PY
}

nvdimm_region_ready() { [ -e "/sys/bus/nd/devices/$VMS_DAX_REGION" ]; }
dax_ready() { [ -c "$1" ] && [ -e "/sys/bus/dax/devices/$(basename "$1")/size" ]; }
vms_init_labels() {
	ndctl disable-region all && ndctl init-labels all && ndctl enable-region all
}

vms_nvdimm_setup() {
	local ms=0 vm j dev ns uuid mode=devdax
	case "$VMS_MEDIUM" in
	devdax) ;;
	fsdax-ns) mode=fsdax ;;
	*) hu_fail "vms_nvdimm_setup needs VMS_MEDIUM=devdax or fsdax-ns, not $VMS_MEDIUM" ;;
	esac
	[ "${HU_HOST_CONFIG:-legacy}" = nvdimm ] || hu_fail "$VMS_MEDIUM needs run-host.sh's nvdimm host (# hu-host: nvdimm), not ${HU_HOST_CONFIG:-legacy}"
	# nfit (ACPI NVDIMMs) is loaded by udev from the NFIT's modalias; ask anyway.
	nvdimm_region_ready || modprobe -a nfit dax_pmem device_dax 2>/dev/null || true
	hu_wait_for 30 "$VMS_DAX_REGION (the NVDIMM)" nvdimm_region_ready
	hu_result "NVDIMM before labels: $(ndctl list -RD | hu_json_compact | cut -c1-400)"
	hu_time ms vms_init_labels > "$HU_RESULTS/ndctl-init-labels.txt" 2>&1
	hu_result "labels initialised in ${ms} ms: $(tr '\n' ' ' < "$HU_RESULTS/ndctl-init-labels.txt")"
	hu_result "region: $(ndctl list -R -r "$VMS_DAX_REGION" | hu_json_compact)"
	: > "$VMS_DAX_MAP.tmp"
	for vm in $VMS; do
		j=$HU_RESULTS/ndctl-create-$vm.json
		hu_time ms ndctl create-namespace -r "$VMS_DAX_REGION" -m "$mode" -s "$VMS_DAX_NS_SIZE" -a 2M > "$j"
		# devdax: its char device; fsdax: its block device
		read -r ns uuid dev < <(python3 -c 'import json, sys
n = json.load(open(sys.argv[1]))
d = n.get("blockdev") or n["daxregion"]["devices"][0]["chardev"]
print(n["dev"], n["uuid"], d)' "$j")
		hu_result "$vm: $mode namespace $ns ($dev, uuid $uuid) created in ${ms} ms"
		echo "$vm /dev/$dev $ns $uuid" >> "$VMS_DAX_MAP.tmp"
	done
	mv -f "$VMS_DAX_MAP.tmp" "$VMS_DAX_MAP"
	udevadm settle
	for vm in $VMS; do
		dev=$(vm_dax_field "$vm" 2)
		if [ "$mode" = fsdax ]; then
			hu_wait_for 30 "$dev" test -b "$dev"
			dax_fstab "$(vm_mnt "$vm")" "$dev"
			hu_result "$vm: RAM in $(vm_ram "$vm"), on $dev ($(blockdev --getsize64 "$dev") bytes)"
			continue
		fi
		hu_wait_for 30 "$dev" dax_ready "$dev"
		hu_result "$vm: RAM on $dev, $(cat "/sys/bus/dax/devices/$(basename "$dev")/size") bytes, align $(cat "/sys/bus/dax/devices/$(basename "$dev")/align" 2>/dev/null || echo '?')"
	done
	vms_ndctl_namespaces > "$HU_STATE/ndctl-namespaces-boot1.txt"
	hu_result "ndctl list -N (boot 1): $(ndctl list -N | hu_json_compact)"
}

vms_start() {
	# What an operator would set up: the runtime dir for the sockets comes back every boot.
	echo "d $VMS_RUNDIR 0755 root root -" > /etc/tmpfiles.d/hu-vms.conf
	systemd-tmpfiles --create /etc/tmpfiles.d/hu-vms.conf
	mkdir -p "$VMS_LOGDIR" "$VMS_VMDIR"
	cp /hu/tick.elf "$VMS_TICK"
	truncate -s 16M "$VMS_VMDIR/vm1-disk.raw"
	# shellcheck disable=SC2054 # commas are QEMU's
	local common=(-machine pc,accel=tcg -cpu qemu64 -smp 1 -display none -nodefaults -kernel "$VMS_TICK")
	# device DAX maps only in its own alignment (2 MiB here): QEMU must know it
	local kv_extra="" json_extra=""
	if [ "$VMS_MEDIUM" = devdax ]; then
		kv_extra=,align=2M
		json_extra=',"align":2097152'
	fi
	local vm2_bytes=$(($(vm_mem_mb vm2) * 1048576))
	# vm1: -qmp unix:, -daemonize + -pidfile, a disk, 32 MiB
	if [ "$VMS_GUIDE" = 1 ]; then
		# the guide's plain-QEMU command line; the rest of the VM is vm_options
		# shellcheck disable=SC2034,SC2054 # used by the guide's block (declare -p); commas are QEMU's
		local vm_options=("${common[@]}" -append vm1 -drive file="$VMS_VMDIR/vm1-disk.raw",if=virtio,format=raw
			-chardev file,id=ser0,path="$(vm_serial vm1)",append=on -serial chardev:ser0)
		guide_run qemu "$(declare -p vm_options)"
	else
	qemu-system-x86_64 -name guest=vm1 "${common[@]}" -append vm1 -m "$(vm_mem_mb vm1)M" \
		-object "memory-backend-file,id=ram0,size=$(vm_mem_mb vm1)M,mem-path=$(vm_ram vm1),share=on$kv_extra" \
		-machine memory-backend=ram0 \
		-drive file="$VMS_VMDIR/vm1-disk.raw",if=virtio,format=raw \
		-chardev file,id=ser0,path="$(vm_serial vm1)",append=on -serial chardev:ser0 \
		-qmp unix:"$VMS_RUNDIR/vm1.qmp",server=on,wait=off \
		-daemonize -pidfile "$VMS_RUNDIR/vm1.pid"
	fi
	# vm2: -chardev socket + -mon mode=control, JSON -object, a plain child in the background, 48 MiB
	setsid -f qemu-system-x86_64 -name vm2 "${common[@]}" -append vm2 -m "$(vm_mem_mb vm2)M" \
		-object "{\"qom-type\":\"memory-backend-file\",\"id\":\"pc.ram\",\"size\":$vm2_bytes,\"mem-path\":\"$(vm_ram vm2)\",\"share\":true$json_extra}" \
		-machine memory-backend=pc.ram \
		-chardev file,id=ser0,path="$(vm_serial vm2)",append=on -serial chardev:ser0 \
		-chardev socket,id=mon0,path="$VMS_RUNDIR/vm2.qmp",server=on,wait=off \
		-mon chardev=mon0,mode=control \
		</dev/null >"$VMS_LOGDIR/vm2.qemu.log" 2>&1
	# vm3: its own transient systemd unit, 32 MiB
	systemd-run --quiet --unit=hu-vm3 --collect \
		qemu-system-x86_64 -name guest=vm3,debug-threads=on "${common[@]}" -append vm3 -m "$(vm_mem_mb vm3)M" \
		-object "memory-backend-file,id=mem3,size=$(vm_mem_mb vm3)M,mem-path=$(vm_ram vm3),share=on$kv_extra" \
		-machine memory-backend=mem3 \
		-chardev file,id=ser0,path="$(vm_serial vm3)",append=on -serial chardev:ser0 \
		-qmp unix:"$VMS_RUNDIR/vm3.qmp",server=on,wait=off
	if [ "$VMS_LIBVIRT" = 1 ]; then vms_libvirt_start; fi
	local vm
	for vm in $VMS; do
		hu_wait_for 180 "$vm prints BOOT" grep -q '^BOOT' "$(vm_serial "$vm")"
		hu_result "$vm: pid $(vm_pid_by_name "$vm"), $(grep -m1 '^BOOT' "$(vm_serial "$vm")")"
	done
}

# vm4 under the test host's own libvirtd (libvirt-daemon-system: systemd starts it),
# persistent, autostart on (after the kexec libvirtd's autostart must not cold-boot it).
vms_libvirt_start() {
	local vm=$VMS_LV_VM
	local membacking="<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>"
	# The test host's own power-off at the end of the run: libvirt-guests would wait its
	# default 300 s for the tick guest (no ACPI) to shut down. The kexec's shutdown
	# does not meet vm4: the checkpoint destroyed it before.
	echo "SHUTDOWN_TIMEOUT=5" >> /etc/default/libvirt-guests
	if [ "$VMS_GUIDE" = 1 ]; then
		# the guide's qemu.conf edit (it restarts libvirtd) and its <memoryBacking>
		guide_run libvirt-qemu-conf > /dev/null
		hu_check "guide libvirt-qemu-conf: memory_backing_dir is $VMS_LV_RAMDIR" \
			grep -qx "memory_backing_dir = \"$VMS_LV_RAMDIR\"" /etc/libvirt/qemu.conf
		membacking=$(guide_block libvirt-xml)
	else
		mkdir -p "$VMS_LV_RAMDIR"
		sed -i '/^memory_backing_dir *=/d' /etc/libvirt/qemu.conf
		echo "memory_backing_dir = \"$VMS_LV_RAMDIR\"" >> /etc/libvirt/qemu.conf
		systemctl restart libvirtd.service
	fi
	hu_wait_for 120 "libvirtd answers" lv_virsh version
	cat > "$VMS_VMDIR/$vm.xml" <<-XML
	<domain type='qemu'>
	  <name>$vm</name>
	  <uuid>$VMS_LV_UUID</uuid>
	  <memory unit='MiB'>$(vm_mem_mb "$vm")</memory>
	  $membacking
	  <vcpu>1</vcpu>
	  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$VMS_TICK</kernel><cmdline>$vm</cmdline></os>
	  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
	  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
	  <devices>
	    <emulator>/usr/bin/qemu-system-x86_64</emulator>
	    <serial type='file'><source path='$(vm_serial "$vm")' append='on'/><target port='0'/></serial>
	    <console type='file'><source path='$(vm_serial "$vm")' append='on'/><target type='serial' port='0'/></console>
	    <controller type='usb' model='none'/>
	    <memballoon model='none'/>
	  </devices>
	</domain>
	XML
	lv_virsh define "$VMS_VMDIR/$vm.xml" > /dev/null
	lv_virsh autostart "$vm" > /dev/null
	lv_virsh start "$vm" > /dev/null
	hu_check "$vm: libvirt put its RAM on the DAX mount ($VMS_LV_RAMDIR/libvirt/qemu/ID-$vm/pc.ram)" \
		sh -c "ls $VMS_LV_RAMDIR/libvirt/qemu/*-$vm/pc.ram"
	hu_result "$vm: libvirt domain, $(lv_virsh dominfo "$vm" | tr -s ' ' | tr '\n' ';')"
}

# After the kexec: the libvirt domain is libvirt's again, as before the upgrade.
vms_libvirt_verify() {
	local vm=$VMS_LV_VM t
	hu_result "host-upgrade-restore-libvirt.service: $(systemctl show host-upgrade-restore-libvirt.service -p ActiveState -p Result -p ExecMainStatus -p ConditionResult | tr '\n' ' ')"
	hu_check "host-upgrade-restore-libvirt.service ran after libvirtd and succeeded" \
		test "$(systemctl show host-upgrade-restore-libvirt.service -p Result --value)" = success -a \
		"$(systemctl show host-upgrade-restore-libvirt.service -p ExecMainStatus --value)" = 0 -a \
		"$(systemctl show host-upgrade-restore-libvirt.service -p ConditionResult --value)" = yes
	hu_result "$vm: $(lv_virsh dominfo "$vm" 2>&1 | tr -s ' ' | tr '\n' ';')"
	# libvirtd says READY before its autostart pass, so the autostart may meet the domain
	# checkpointed (the hook refuses it) or already restored (nothing to do): both are
	# right, and the one BOOT line above is the check. Which one it was:
	hu_result "$vm: libvirtd's autostart in this boot: $(journalctl -b -u libvirtd.service --no-pager -o cat 2>/dev/null |
		grep -m1 -o "autostart VM '$vm'.*" | cut -c1-300 || echo 'no autostart message (the domain was running already)')"
	hu_check "$vm: running under libvirt" test "$(lv_virsh domstate "$vm" 2>&1 | head -n1)" = running
	hu_check "$vm: still persistent, autostart still on" \
		sh -c "virsh -c qemu:///system dominfo $vm | grep -q '^Persistent: *yes' && virsh -c qemu:///system dominfo $vm | grep -q '^Autostart: *enable'"
	hu_check "$vm: the persistent definition has none of the restore's additions" \
		sh -c "! virsh -c qemu:///system dumpxml --inactive $vm | grep -q 'incoming\|host-upgrade'"
	hu_check "$vm: no pending marker left (a later virsh start cold-boots as usual)" \
		test ! -e "$VMS_STATE_DIR/libvirt/$VMS_LV_UUID.pending"
	hu_check "$vm: the RAM link is gone" test ! -e "$(vm_ram "$vm")"
	# virsh manages it: suspend, resume, and the guest runs on.
	lv_virsh suspend "$vm" > /dev/null || true
	hu_check "$vm: virsh suspend works" test "$(lv_virsh domstate "$vm" 2>&1 | head -n1)" = paused
	lv_virsh resume "$vm" > /dev/null || true
	t=$(vm_tick "$vm")
	hu_check "$vm: virsh resume works and it ticks on" hu_wait_for 60 "$vm ticks past $((${t:-0} + 2))" vm_ticks_at_least "$vm" $((${t:-0} + 2))
}

vms_wait_ticking() {
	local vm
	for vm in $VMS; do
		hu_wait_for 120 "$vm reaches tick $1" vm_ticks_at_least "$vm" "$1"
	done
	for vm in $VMS; do hu_result "$vm: tick $(vm_tick "$vm") before the upgrade"; done
}

# The hook script and its two units (see the top of this file).
vms_install_ram_hooks() {
	local action=$1 files="" vm mnts units req after
	for vm in $VMS; do files="$files $(vm_ram "$vm")"; done
	# devdax: no filesystem to wait for, the RAM is the device itself
	mnts=$(vms_mnts | tr '\n' ' ')
	units=$(vms_mount_units | tr '\n' ' ')
	# destroy-ns on fsdax-ns: vm1's filesystem will not come back; the digest
	# before the restore must not wait for it (that would hide a restore that waits)
	if [ "$action" = destroy-ns ] && [ "$VMS_MEDIUM" = fsdax-ns ]; then
		units=${units/"$(systemd-escape -p --suffix=mount "$(vm_mnt vm1)") "/}
	fi
	mkdir -p "$(dirname "$VMS_HOOK")" /var/lib/hu-test
	cat > "$VMS_HOOK_CONF" <<-CONF
	HOOK_ACTION=$action
	HOOK_MNTS="${mnts% }"
	HOOK_FILES="${files# }"
	HOOK_TAMPER_RAM="$(vm_ram vm2)"
	HOOK_TAMPER_DISK="$VMS_VMDIR/vm1-disk.raw"
	HOOK_RECREATE_NS="$(vm_dax_field vm2 3)"
	HOOK_RECREATE_REGION=$VMS_DAX_REGION
	HOOK_RECREATE_SIZE=$VMS_DAX_NS_SIZE
	HOOK_DESTROY_NS="$(vm_dax_field vm1 3)"
	HOOK_DESTROY_MNT="$(vm_mnt vm1)"
	HOOK_SERIALS="$VMS_LOGDIR"
	CONF
	cat > "$VMS_HOOK" <<-'HOOK'
	#!/bin/bash
	# ram-hook before|after — the system test's own digest of the VMs' RAM files
	# (written by tests/system/in-host/vms.sh). "before": ExecStop of
	# hu-ram-before.service, in the shutdown after host-upgrade run's checkpoint;
	# then the configured action. "after": hu-ram-after.service, next boot,
	# before host-upgrade-restore.service.
	set -u
	mode=$1
	. /var/lib/hu-test/ram-hook.conf
	out=/var/lib/hu-test/ram-$mode.md5
	log=/var/lib/hu-test/ram-hook-$mode.log
	ev() {
		local u; u=$(cut -d' ' -f1 /proc/uptime)
		echo "HU-EVENT: ram-hook $mode $* (uptime $u)" > /dev/ttyS1 2>/dev/null
		echo "hu: ram-hook $mode $*" > /dev/kmsg 2>/dev/null
		echo "[$u] $*" >> "$log"
	}
	# md5 of every byte of a RAM file, or of a device-DAX device (mmap: it has no read())
	digest() {
		if [ -c "$1" ]; then
			python3 -c 'import hashlib, mmap, os, sys
p = sys.argv[1]
n = int(open("/sys/bus/dax/devices/%s/size" % os.path.basename(p)).read())
m = mmap.mmap(os.open(p, os.O_RDONLY), n, mmap.MAP_SHARED, mmap.PROT_READ)
h = hashlib.md5()
for o in range(0, n, 1 << 21): h.update(m[o:o + (1 << 21)])
print("%s  %s" % (h.hexdigest(), p))' "$1"
		else
			md5sum "$1"
		fi
	}
	ev start
	# A RAM file on a filesystem that is not mounted is "missing" below; when
	# none of them is mounted there is nothing to look at.
	mounted=0
	for m in $HOOK_MNTS; do
		if mountpoint -q "$m"; then mounted=$((mounted + 1)); else ev "not-mounted $m"; fi
	done
	[ -z "$HOOK_MNTS" ] || [ "$mounted" -gt 0 ] || exit 0
	ev "qemu-running $(pgrep -c -f '^(/[^ ]*/)?qemu-system-x86_64 ' || true)"
	# Where each guest's serial log stood: "NAME LINES LAST_TICK".
	for f in "$HOOK_SERIALS"/*.serial; do
		echo "$(basename "$f" .serial) $(grep -c '' "$f") $(grep -o '^tick [0-9]*' "$f" | tail -n1 | cut -d' ' -f2)"
	done > "/var/lib/hu-test/serial-$mode.txt"
	# md5: every byte, 4x faster than sha256sum under TCG (an integrity check, not security).
	# A RAM device that is not there (yet) is logged, not waited for.
	: > "$out.tmp"
	for f in $HOOK_FILES; do
		if [ -e "$f" ]; then
			digest "$f" >> "$out.tmp" 2>>"$log" || ev "digest-failed $f"
		else
			ev "missing $f"
		fi
	done
	mv -f "$out.tmp" "$out"
	sync
	ev "digest-done $(wc -l < "$out" 2>/dev/null || echo 0) files"
	[ "$mode" = before ] || exit 0
	case "$HOOK_ACTION" in
	tamper)
		# Between checkpoint and restore: the RAM of one VM is lost (zeroed in
		# place on the pmem), the disk of another is written to.
		dd if=/dev/zero of="$HOOK_TAMPER_RAM" bs=1M count="$(( $(stat -c %s "$HOOK_TAMPER_RAM") >> 20 ))" conv=notrunc,fsync status=none
		printf 'written after the checkpoint\n' | dd of="$HOOK_TAMPER_DISK" bs=512 seek=8 conv=notrunc,fsync status=none
		sync
		ev "tampered ram=$HOOK_TAMPER_RAM disk=$HOOK_TAMPER_DISK"
		;;
	power-cycle)
		# Instead of the kexec: the host goes down hard; run-host.sh starts
		# the outer QEMU again (a new process: fresh RAM, the pmem is gone).
		sync
		ev "power-cycle"
		echo "HU-EVENT: power-cycle" > /dev/ttyS1
		sleep 0.3
		echo b > /proc/sysrq-trigger
		;;
	destroy-ns)
		# vm1's namespace is destroyed and nothing takes its place: in the
		# next boot the kernel numbers the ones after it one lower. An fsdax
		# one is unmounted first (ndctl will not disable a mounted namespace).
		if [ -n "$HOOK_DESTROY_MNT" ] && mountpoint -q "$HOOK_DESTROY_MNT"; then
			umount "$HOOK_DESTROY_MNT" >> "$log" 2>&1 || ev "umount-failed $HOOK_DESTROY_MNT"
		fi
		ndctl destroy-namespace -f "$HOOK_DESTROY_NS" >> "$log" 2>&1 || ev "destroy-failed $HOOK_DESTROY_NS"
		sync
		ev "destroyed $HOOK_DESTROY_NS"
		;;
	recreate-ns)
		# Between checkpoint and restore (the QEMUs have quit): vm2's devdax
		# namespace is destroyed and created again with the same size. It takes
		# the same place on the NVDIMM (the data there is untouched) and, after
		# the next boot, the same name (the kernel numbers namespaces in DPA
		# order); only its uuid is new.
		ndctl list -N -n "$HOOK_RECREATE_NS" > /var/lib/hu-test/recreate-old.json 2>>"$log"
		ndctl destroy-namespace -f "$HOOK_RECREATE_NS" >> "$log" 2>&1 || ev "destroy-failed $HOOK_RECREATE_NS"
		ndctl create-namespace -r "$HOOK_RECREATE_REGION" -m devdax -s "$HOOK_RECREATE_SIZE" -a 2M \
			> /var/lib/hu-test/recreate-new.json 2>>"$log" || ev "create-failed"
		sync
		ev "recreated $HOOK_RECREATE_NS as $(tr -d ' \n' < /var/lib/hu-test/recreate-new.json | cut -c1-120)"
		;;
	esac
	exit 0
	HOOK
	chmod 0755 "$VMS_HOOK"
	req="RequiresMountsFor=$mnts/var/lib/hu-test"
	after="After=local-fs.target${units:+ ${units% }}"
	cat > /etc/systemd/system/hu-ram-before.service <<-UNIT
	# host-upgrade system test (tests/system/in-host/vms.sh): digest of the VM RAM
	# files at the shutdown that follows the checkpoint, then: $action.
	[Unit]
	Description=hu test: RAM digest at shutdown
	$req

	[Service]
	Type=oneshot
	RemainAfterExit=yes
	ExecStart=/bin/true
	ExecStop=$VMS_HOOK before
	TimeoutStopSec=300
	UNIT
	cat > /etc/systemd/system/hu-ram-after.service <<-UNIT
	# host-upgrade system test (tests/system/in-host/vms.sh): digest of the VM RAM
	# files in the boot after the kexec, before host-upgrade-restore.service.
	[Unit]
	Description=hu test: RAM digest before the restore
	DefaultDependencies=no
	ConditionKernelCommandLine=hu.restore=1
	$after
	Before=host-upgrade-restore.service

	[Service]
	Type=oneshot
	RemainAfterExit=yes
	ExecStart=$VMS_HOOK after
	TimeoutStartSec=300

	[Install]
	WantedBy=sysinit.target
	UNIT
	systemctl daemon-reload
	systemctl enable --quiet hu-ram-after.service
	systemctl start hu-ram-before.service
	hu_check "hu-ram-before.service is active (its ExecStop digests the RAM at shutdown)" \
		systemctl is-active --quiet hu-ram-before.service
}

# Never outside a test host built by build-host.sh: host-upgrade run kexecs.
vms_guard_testhost() {
	if [ ! -x /usr/local/lib/hu-test/runner ] || [ "$(cat /etc/hostname)" != testhost ] || [ ! -f /hu/env ]; then
		hu_fail "not the test host: refusing to run host-upgrade run"
	fi
}

# The real path. Returns only if run failed (the scenario then fails).
# Boot 1 of an NVDIMM scenario (devdax, fsdax-ns) that acts between checkpoint and
# restore: namespaces (and their mounts), the VMs ticking, the ram-hook with ACTION
# at the shutdown, `host-upgrade run`.
vms_nvdimm_upgrade_with() {
	hu_phase "$VMS_MEDIUM-setup"
	vms_nvdimm_setup
	hu_phase start-vms
	vms_start
	hu_phase ticking
	vms_wait_ticking 4
	vms_install_ram_hooks "$1"
	hu_phase run
	vms_run_upgrade
}

# The plan as the operator sees it, and as JSON in the results.
vms_record_plan() {
	if [ "$VMS_GUIDE" = 1 ]; then
		# the guide's check (the default state dir is $VMS_STATE_DIR); it fails if plan blocks
		guide_run plan
	else
		host-upgrade plan --state-dir "$VMS_STATE_DIR" || true
	fi
	host-upgrade plan --json --state-dir "$VMS_STATE_DIR" > "$HU_RESULTS/plan.json" || true
	hu_result "plan --json: $(hu_json_compact < "$HU_RESULTS/plan.json")"
	if [ "$VMS_GUIDE" = 1 ]; then
		hu_check "plan: every VM the guide set up is persistent, in place ($VMS)" \
			python3 - "$HU_RESULTS/plan.json" "$VMS" <<-'PY'
		import json, sys
		p = json.load(open(sys.argv[1]))
		v = {x["name"]: x for x in p.get("vms", [])}
		sys.exit(0 if all(n in v and v[n].get("ram_backing") == "persistent" and v[n].get("save") == "in-place"
		                  for n in sys.argv[2].split()) else 1)
		PY
	fi
}

# Boot 2 of the real path: the new kernel, reached by the product's kexec.
vms_check_kexec_boot() {
	hu_check "running the new kernel ($HU_NEW_KVER)" test "$(uname -r)" = "$HU_NEW_KVER"
	hu_check "booted by kexec with the restore marker (hu.restore=1)" grep -qw 'hu.restore=1' /proc/cmdline
}

vms_run_upgrade() {
	local rc=0
	vms_guard_testhost
	hu_check "no kernel staged before run" test "$(cat /sys/kernel/kexec_loaded)" = 0
	hu_collect
	echo "$HU_BOOT" > "$HU_STATE/run-boot"
	sync
	hu_event "run-start boot=$HU_BOOT"
	# Progress lines (stderr) reach ttyS1 as they come: run-host.sh stamps them.
	host-upgrade run --kernel "/boot/vmlinuz-$HU_NEW_KVER" --initrd "/boot/initrd.img-$HU_NEW_KVER" \
		--yes --state-dir "$VMS_STATE_DIR" || rc=$?
	hu_event "run-returned exit=$rc kexec_loaded=$(cat /sys/kernel/kexec_loaded)"
	if [ "$rc" != 0 ]; then
		hu_fail "host-upgrade run failed (exit $rc)"
	fi
	# systemd's kexec.target is under way: it stops this service too.
	trap - ERR
	set +eE
	sleep 600
	hu_fail "host-upgrade run returned 0 but the host did not go down in 600 s"
}

# Phase 2: keep what the report needs.
vms_collect_boot() {
	local d=$HU_RESULTS/boot$HU_BOOT u
	mkdir -p "$d"
	journalctl -b -1 --no-pager -o short-monotonic > "$d/journal-prev.txt" 2>&1 || true
	journalctl -b --no-pager -o short-monotonic > "$d/journal.txt" 2>&1 || true
	journalctl -b --no-pager -o json SYSLOG_IDENTIFIER=host-upgrade > "$d/journal-host-upgrade.json" 2>&1 || true
	journalctl -b -1 --no-pager -o json SYSLOG_IDENTIFIER=host-upgrade > "$d/journal-prev-host-upgrade.json" 2>&1 || true
	cp /run/host-upgrade/early-boot.json "$d/early-boot.json" 2>/dev/null || true
	cp "$VMS_STATE_DIR/manifest.json" "$d/manifest.json" 2>/dev/null || true
	cp "$VMS_STATE_DIR/journal.jsonl" "$d/journal.jsonl" 2>/dev/null || true
	for u in host-upgrade-restore.service hu-ram-after.service $(vms_mount_units) local-fs.target \
		systemd-tmpfiles-setup.service sysinit.target multi-user.target; do
		echo "== $u"
		systemctl show "$u" -p Id,ActiveState,SubState,Result,ExecMainStatus,ConditionResult \
			-p InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic,ExecMainStartTimestampMonotonic \
			-p ExecMainExitTimestampMonotonic -p After -p Before -p Requires -p Wants -p RequiresMountsFor 2>&1
	done > "$d/units.txt"
	systemd-analyze time > "$d/systemd-analyze.txt" 2>&1 || true
	systemd-analyze critical-chain host-upgrade-restore.service >> "$d/systemd-analyze.txt" 2>&1 || true
	ps -eo pid,ppid,etimes,cgroup:80,args > "$d/ps.txt" 2>&1 || true
	uptime > "$d/uptime.txt"
}

# Phase 2 of a scenario whose every VM must come back by itself (scenario-run,
# scenario-devdax): the restore unit succeeded; status --json has every VM restored
# with a downtime; every guest counter continued, one BOOT line, ticks consecutive;
# the harness's RAM digests at the shutdown and before the restore are equal;
# /run/host-upgrade/early-boot.json has every medium ok.
vms_verify_restored() {
	local vm ck a b pid
	vms_wait_restore_unit
	hu_check "host-upgrade-restore.service ran and succeeded" \
		test "$(systemctl show host-upgrade-restore.service -p Result --value)" = success -a \
		"$(systemctl show host-upgrade-restore.service -p ExecMainStatus --value)" = 0 -a \
		"$(systemctl show host-upgrade-restore.service -p ConditionResult --value)" = yes
	vms_status
	for vm in $VMS; do
		hu_check "$vm: status restored, with a downtime" vm_status_is "$vm" restored
	done
	# Their old units and cgroups died with the old kernel: each restored QEMU
	# must live in a scope of its own under machine.slice, not in the oneshot
	# restore unit whose cgroup systemd cleans up.
	for vm in $VMS; do
		pid=$(vm_pid_by_name "$vm")
		if vm_is_libvirt "$vm"; then
			# libvirt's own scope (machine-qemu\x2dID\x2dvm4.scope): libvirt started it.
			hu_check "$vm: its QEMU (pid ${pid:-none}) is in libvirt's machine-qemu-*-$vm scope" \
				grep -q "^0::/machine.slice/machine-qemu.*$vm.scope/" "/proc/${pid:-0}/cgroup"
			continue
		fi
		hu_check "$vm: its QEMU (pid ${pid:-none}) is in machine.slice/host-upgrade-vm-$vm-${pid:-?}.scope" \
			test "$(cut -d: -f3 "/proc/${pid:-0}/cgroup" 2>/dev/null)" = "/machine.slice/host-upgrade-vm-$vm-$pid.scope"
	done

	# The guests: counters continue, nobody booted twice.
	for vm in $VMS; do
		ck=$(serial_at before "$vm" 3)
		[ -n "$ck" ] || { hu_result "$vm: no tick recorded at the shutdown"; ck=0; }
		if ! vm_status_is "$vm" restored || ! hu_wait_for 60 "$vm ticks on past $((ck + 4))" vm_ticks_at_least "$vm" $((ck + 4)); then
			hu_result "$vm: last lines: $(tail -n 3 "$(vm_serial "$vm")" | tr '\n' '|')"
		fi
		hu_result "$vm: tick $ck at the checkpoint, now tick $(vm_tick "$vm"), BOOT lines $(vm_boots "$vm"), pid $(vm_pid_by_name "$vm")"
		hu_check "$vm: counter continued after the kexec" vm_ticks_at_least "$vm" $((ck + 4))
		hu_check "$vm: no cold boot (one BOOT line)" test "$(vm_boots "$vm")" = 1
		hu_check "$vm: ticks consecutive (no restart, no jump back)" vm_ticks_consecutive "$vm"
	done

	# The RAM, checked by the harness itself (md5 of every byte of every RAM file).
	for vm in $VMS; do
		a=$(ram_digest before "$(vm_ram "$vm")")
		b=$(ram_digest after "$(vm_ram "$vm")")
		hu_result "$vm: RAM md5 at the shutdown after the checkpoint ${a:-none}, before the restore ${b:-none}"
		hu_check "$vm: guest RAM identical after the kexec (md5 of all of $(vm_ram "$vm"))" test -n "$a" -a "$a" = "$b"
	done

	# The initrd side: every VM's RAM medium was checked there, and was ok.
	cp /run/host-upgrade/early-boot.json "$HU_RESULTS/early-boot.json" 2>/dev/null || true
	hu_result "early-boot.json: $(hu_json_compact < /run/host-upgrade/early-boot.json 2>/dev/null || echo missing)"
	hu_check "/run/host-upgrade/early-boot.json: every RAM medium back and ok, one for each VM" \
		python3 - /run/host-upgrade/early-boot.json "$VMS" <<-'PY'
	import json, sys
	r = json.load(open(sys.argv[1]))
	media = r.get("media") or []
	ok = media and all(m.get("ok") is True for m in media) and "error" not in r
	sys.exit(0 if ok and sorted({m.get("vm") for m in media}) == sorted(sys.argv[2].split()) else 1)
	PY
}

# unit property (monotonic µs since this boot's kernel start); empty if unknown
unit_mono() { systemctl show "$1" -p "$2" --value 2>/dev/null || true; }

restore_unit_done() {
	local p
	p=$(systemctl show "${1:-host-upgrade-restore.service}" -p ActiveState -p ConditionResult -p ExecMainExitTimestampMonotonic 2>/dev/null || true)
	case "$p" in *ConditionResult=no*) return 0 ;; esac
	case "$p" in *ActiveState=activating* | *ExecMainExitTimestampMonotonic=0*) return 1 ;; esac
	return 0
}
vms_wait_restore_unit() {
	hu_wait_for 300 "host-upgrade-restore.service finishes" restore_unit_done || true
	hu_result "host-upgrade-restore.service: $(systemctl show host-upgrade-restore.service -p ActiveState -p Result -p ExecMainStatus -p ConditionResult | tr '\n' ' ')"
	# The libvirt domain comes back through libvirtd, in a unit of its own after it.
	if [ "$VMS_LIBVIRT" = 1 ]; then
		hu_wait_for 300 "host-upgrade-restore-libvirt.service finishes" \
			restore_unit_done host-upgrade-restore-libvirt.service || true
	fi
}

# JSON of `host-upgrade status --json` into $HU_RESULTS/status.json (and a result line).
vms_status() {
	host-upgrade status --state-dir "$VMS_STATE_DIR" || true
	host-upgrade status --json --state-dir "$VMS_STATE_DIR" > "$HU_RESULTS/status.json" 2>/dev/null || true
	hu_result "status --json: $(hu_json_compact < "$HU_RESULTS/status.json")"
}

# vm_status_is NAME STATE: status.json says so (and, for restored, with a downtime).
vm_status_is() {
	python3 - "$HU_RESULTS/status.json" "$1" "$2" <<-'PY'
	import json, sys
	s = json.load(open(sys.argv[1]))
	v = [v for v in s.get("vms", []) if v.get("name") == sys.argv[2]]
	ok = len(v) == 1 and v[0].get("state") == sys.argv[3]
	if ok and sys.argv[3] == "restored":
	    ok = isinstance(v[0].get("downtime_ms"), (int, float)) and v[0]["downtime_ms"] > 0
	sys.exit(0 if ok else 1)
	PY
}
# vm_status_error NAME: the error status.json has for it ("" if none)
vm_status_error() {
	python3 - "$HU_RESULTS/status.json" "$1" <<-'PY' 2>/dev/null || true
	import json, sys
	s = json.load(open(sys.argv[1]))
	for v in s.get("vms", []):
	    if v.get("name") == sys.argv[2]:
	        print(v.get("error") or "")
	PY
}

# error_mentions NAME WORD...: status.json's error for NAME mentions every word given
error_mentions() {
	local e vm=$1 w; shift
	e=$(vm_status_error "$vm")
	for w in "$@"; do
		case "$e" in *"$w"*) ;; *) return 1 ;; esac
	done
}
# vm_stayed_down NAME: a refused VM: no QEMU, and its serial log has not grown since the shutdown
vm_stayed_down() {
	local n
	n=$(serial_at before "$1" 2)
	[ -z "$(vm_pid_by_name "$1")" ] && [ -n "$n" ] && [ "$(vm_lines "$1")" = "$n" ]
}

# vm_check_resumed NAME: a restored VM's guest went on where it stopped: its counter
# passes the last tick the hook saw at the shutdown (+4), one BOOT line, ticks consecutive.
vm_check_resumed() {
	local ck
	ck=$(serial_at before "$1" 3)
	hu_wait_for 120 "$1 ticks on past $((${ck:-0} + 4))" vm_ticks_at_least "$1" $((${ck:-0} + 4)) || true
	hu_check "$1: counter continued (tick ${ck:-?} at the checkpoint, now $(vm_tick "$1"))" vm_ticks_at_least "$1" $((${ck:-0} + 4))
	hu_check "$1: no cold boot (one BOOT line)" test "$(vm_boots "$1")" = 1
	hu_check "$1: ticks consecutive" vm_ticks_consecutive "$1"
}

# vms_restore_again REFUSED RESTORED...: a second `host-upgrade restore` changes
# nothing: REFUSED still refused and down, each of RESTORED the same QEMU, once.
vms_restore_again() {
	local refused=$1 vm pids="" now="" counts="" ones="" rc=0
	shift
	for vm in "$@"; do pids="$pids $(vm_pid_by_name "$vm")"; ones="$ones 1"; done
	host-upgrade restore --state-dir "$VMS_STATE_DIR" || rc=$?
	hu_result "second restore: exit $rc"
	hu_check "second restore still reports the refused VM (exit 1)" test "$rc" = 1
	vms_status
	hu_check "$refused still refused" vm_status_is "$refused" failed
	hu_check "$refused: still no QEMU, nothing printed" vm_stayed_down "$refused"
	for vm in "$@"; do now="$now $(vm_pid_by_name "$vm")"; counts="$counts $(vm_qemu_count "$vm")"; done
	hu_check "$*: the same QEMUs (${pids# }), each once" test "$now" = "$pids" -a "$counts" = "$ones"
}

# serial_at MODE NAME FIELD: what the hook saw of a guest's serial log (2 = lines, 3 = last tick)
serial_at() { { awk -v n="$2" -v f="$3" '$1 == n { print $f }' "/var/lib/hu-test/serial-$1.txt" 2>/dev/null || true; } | head -n1; }

# md5 of a RAM file in ram-before/after.md5 ("" if none)
ram_digest() { { awk -v f="$2" '$2 == f { print $1 }' "/var/lib/hu-test/ram-$1.md5" 2>/dev/null || true; } | head -n1; }
