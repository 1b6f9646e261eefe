# shellcheck shell=bash
# Helpers shared by the scenarios that run the real upgrade (scenario-run.sh,
# scenario-wipe.sh, scenario-tamper.sh). Sourced by a scenario inside the test
# host after lib.sh (boot.sh: set -eE, ERR trap). Functions used inside $(...)
# must not fail (they would trip the ERR trap).
#
#   vms_pmem_setup      legacy pmem -> fsdax namespace -> ext4 -b 4096, a line in
#                       /etc/fstab (UUID, dax,nofail,x-systemd.device-timeout=30s),
#                       mounted by systemd (mnt-pmem.mount) on $VMS_MNT
#   vms_start           three inner VMs (tick.elf), RAM files on $VMS_MNT, argv shapes:
#                         vm1 -qmp unix: + -daemonize/-pidfile + a raw disk image
#                         vm2 -chardev socket + -mon mode=control, JSON -object, plain child
#                         vm3 -qmp unix: + its own systemd unit (systemd-run), keyval -object
#   vms_wait_ticking N  every VM printed BOOT and reached tick N
#   vms_install_ram_hooks ACTION
#                       the harness's own look at the RAM files around the checkpoint
#                       (below); ACTION at the shutdown after the checkpoint: none,
#                       tamper (vm2's RAM zeroed, vm1's disk written) or power-cycle
#   vms_run_upgrade     `host-upgrade run --kernel NEW --initrd NEW --yes`, the real
#                       path; waits for systemd's kexec to take the host down
#   vms_collect_boot    what phase 2 keeps for the report (journals of this boot and
#                       the one before, units, early-boot.json, manifest, status)
#
# The RAM digests (independent of the product's sampled-page digest):
# hu-ram-before.service is started in phase 1; its ExecStop runs during the
# shutdown that `host-upgrade run` starts (systemd's kexec.target) — after the
# checkpoint, because run only asks for kexec.target once every QEMU has quit —
# and before /mnt/pmem is unmounted (RequiresMountsFor). It writes md5sum (every byte) of
# every RAM file to /var/lib/hu-test/ram-before.md5. hu-ram-after.service
# (enabled in phase 1, runs in the next boot only with hu.restore=1) runs after
# local-fs.target and the RAM's mount, before host-upgrade-restore.service: it
# hashes the same files before the restore resumes any guest (ram-after.md5). Both are inside the blackout;
# their durations are reported on their own (HU-EVENT ram-hook lines).

VMS_STATE_DIR=/var/lib/host-upgrade
VMS_MNT=/mnt/pmem
VMS_MOUNT_UNIT=mnt-pmem.mount
VMS_RUNDIR=/run/hu-vms
VMS_LOGDIR=/var/log/hu-vms
VMS_VMDIR=/var/lib/hu-vms
VMS_TICK=$VMS_VMDIR/tick.elf
VMS="vm1 vm2 vm3"
VMS_HOOK=/usr/local/lib/hu-test/ram-hook
# The DAX filesystem's line in /etc/fstab, as an operator would write it: nofail, so
# a lost pmem does not drop the host into emergency mode — but a nofail mount is
# not ordered before local-fs.target: the product's initrd side adds a drop-in with
# RequiresMountsFor= the RAM files' directories to host-upgrade-restore.service (before
# it did, all VMs were refused: "RAM in /mnt/pmem/vm1.ram: No such file or directory").
# No x-systemd.before= here: the test proves the product orders itself.
# The device timeout is generous: under nested TCG on a busy machine, udev published
# /dev/disk/by-uuid/… 23 s after switch-root (the job's clock starts at switch-root).
: "${VMS_FSTAB_OPTS:=dax,nofail,x-systemd.device-timeout=90s}"
VMS_HOOK_CONF=/var/lib/hu-test/ram-hook.conf

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
vm_ram() { echo "$VMS_MNT/$1.ram"; }
vms_qemu_count() { { pgrep -c -f '^(/[^ ]*/)?qemu-system-x86_64 ' || true; } | head -n1; }

hu_collect_hook() {
	local d=$1
	mkdir -p "$d/vms"
	cp -a "$VMS_LOGDIR/." "$d/vms/" 2>/dev/null || true
	ps -eo pid,ppid,etimes,cgroup:80,args > "$d/ps.txt" 2>&1 || true
	ndctl list -NRD > "$d/ndctl.json" 2>&1 || true
	cp /etc/fstab "$d/fstab" 2>/dev/null || true
	cp /var/lib/hu-test/ram-*.md5 /var/lib/hu-test/ram-hook-*.log /var/lib/hu-test/serial-*.txt "$d/" 2>/dev/null || true
}

pmem_ready() { [ -b /dev/pmem0 ]; }
mnt_is_dax() { grep -q " $VMS_MNT ext4 .*dax" /proc/mounts; }

vms_pmem_setup() {
	local ms=0 uuid
	pmem_ready || modprobe -a libnvdimm nd_pmem nd_e820 2>/dev/null || true
	hu_wait_for 30 "/dev/pmem0" pmem_ready
	hu_time ms ndctl create-namespace -f -e namespace0.0 -m fsdax >"$HU_RESULTS/ndctl-create.json"
	hu_result "fsdax namespace created in ${ms} ms: $(tr -d ' \n' < "$HU_RESULTS/ndctl-create.json" | cut -c1-200)"
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$HU_RESULTS/ndctl-create.json" > "$HU_STATE/ns-uuid" || true
	udevadm settle
	hu_wait_for 30 "/dev/pmem0 (fsdax)" pmem_ready
	mkfs.ext4 -q -F -b 4096 /dev/pmem0
	udevadm settle
	uuid=$(blkid -s UUID -o value /dev/pmem0)
	[ -n "$uuid" ] || hu_fail "no UUID on the new ext4 of /dev/pmem0"
	mkdir -p "$VMS_MNT"
	printf 'UUID=%s\t%s\text4\t%s\t0\t0\n' "$uuid" "$VMS_MNT" "$VMS_FSTAB_OPTS" >> /etc/fstab
	systemctl daemon-reload
	systemctl start "$VMS_MOUNT_UNIT"
	hu_check "$VMS_MNT is mounted with dax (by $VMS_MOUNT_UNIT from /etc/fstab)" mnt_is_dax
	hu_result "fstab: $(awk -v m="$VMS_MNT" '$2 == m { $1 = $1; print }' /etc/fstab)"
	hu_result "pmem: $(df -h --output=size,avail "$VMS_MNT" | tail -n1 | tr -s ' ')"
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
	# vm1: -qmp unix:, -daemonize + -pidfile, a disk, 32 MiB
	qemu-system-x86_64 -name guest=vm1 "${common[@]}" -append vm1 -m 32M \
		-object memory-backend-file,id=ram0,size=32M,mem-path="$(vm_ram vm1)",share=on \
		-machine memory-backend=ram0 \
		-drive file="$VMS_VMDIR/vm1-disk.raw",if=virtio,format=raw \
		-chardev file,id=ser0,path="$(vm_serial vm1)",append=on -serial chardev:ser0 \
		-qmp unix:"$VMS_RUNDIR/vm1.qmp",server=on,wait=off \
		-daemonize -pidfile "$VMS_RUNDIR/vm1.pid"
	# vm2: -chardev socket + -mon mode=control, JSON -object, a plain child in the background, 48 MiB
	setsid -f qemu-system-x86_64 -name vm2 "${common[@]}" -append vm2 -m 48M \
		-object "{\"qom-type\":\"memory-backend-file\",\"id\":\"pc.ram\",\"size\":50331648,\"mem-path\":\"$(vm_ram vm2)\",\"share\":true}" \
		-machine memory-backend=pc.ram \
		-chardev file,id=ser0,path="$(vm_serial vm2)",append=on -serial chardev:ser0 \
		-chardev socket,id=mon0,path="$VMS_RUNDIR/vm2.qmp",server=on,wait=off \
		-mon chardev=mon0,mode=control \
		</dev/null >"$VMS_LOGDIR/vm2.qemu.log" 2>&1
	# vm3: its own transient systemd unit, 32 MiB
	systemd-run --quiet --unit=hu-vm3 --collect \
		qemu-system-x86_64 -name guest=vm3,debug-threads=on "${common[@]}" -append vm3 -m 32M \
		-object memory-backend-file,id=mem3,size=32M,mem-path="$(vm_ram vm3)",share=on \
		-machine memory-backend=mem3 \
		-chardev file,id=ser0,path="$(vm_serial vm3)",append=on -serial chardev:ser0 \
		-qmp unix:"$VMS_RUNDIR/vm3.qmp",server=on,wait=off
	local vm
	for vm in $VMS; do
		hu_wait_for 120 "$vm prints BOOT" grep -q '^BOOT' "$(vm_serial "$vm")"
		hu_result "$vm: pid $(vm_pid_by_name "$vm"), $(grep -m1 '^BOOT' "$(vm_serial "$vm")")"
	done
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
	local action=$1 files="" vm
	for vm in $VMS; do files="$files $(vm_ram "$vm")"; done
	mkdir -p "$(dirname "$VMS_HOOK")" /var/lib/hu-test
	cat > "$VMS_HOOK_CONF" <<-CONF
	HOOK_ACTION=$action
	HOOK_MNT=$VMS_MNT
	HOOK_FILES="${files# }"
	HOOK_TAMPER_RAM="$(vm_ram vm2)"
	HOOK_TAMPER_DISK="$VMS_VMDIR/vm1-disk.raw"
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
	ev start
	if ! mountpoint -q "$HOOK_MNT"; then
		ev "not-mounted $HOOK_MNT"
		exit 0
	fi
	ev "qemu-running $(pgrep -c -f '^(/[^ ]*/)?qemu-system-x86_64 ' || true)"
	# Where each guest's serial log stood: "NAME LINES LAST_TICK".
	for f in "$HOOK_SERIALS"/*.serial; do
		echo "$(basename "$f" .serial) $(grep -c '' "$f") $(grep -o '^tick [0-9]*' "$f" | tail -n1 | cut -d' ' -f2)"
	done > "/var/lib/hu-test/serial-$mode.txt"
	# md5: every byte, 4x faster than sha256sum under TCG (an integrity check, not security)
	# shellcheck disable=SC2086 # a list of paths
	md5sum $HOOK_FILES > "$out.tmp" 2>>"$log" && mv -f "$out.tmp" "$out"
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
	esac
	exit 0
	HOOK
	chmod 0755 "$VMS_HOOK"
	local req="RequiresMountsFor=$VMS_MNT /var/lib/hu-test"
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
	After=local-fs.target $VMS_MOUNT_UNIT
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
	for u in host-upgrade-restore.service hu-ram-after.service "$VMS_MOUNT_UNIT" local-fs.target \
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

# unit property (monotonic µs since this boot's kernel start); empty if unknown
unit_mono() { systemctl show "$1" -p "$2" --value 2>/dev/null || true; }

restore_unit_done() {
	local p
	p=$(systemctl show host-upgrade-restore.service -p ActiveState -p ConditionResult -p ExecMainExitTimestampMonotonic 2>/dev/null || true)
	case "$p" in *ConditionResult=no*) return 0 ;; esac
	case "$p" in *ActiveState=activating* | *ExecMainExitTimestampMonotonic=0*) return 1 ;; esac
	return 0
}
vms_wait_restore_unit() {
	hu_wait_for 300 "host-upgrade-restore.service finishes" restore_unit_done || true
	hu_result "host-upgrade-restore.service: $(systemctl show host-upgrade-restore.service -p ActiveState -p Result -p ExecMainStatus -p ConditionResult | tr '\n' ' ')"
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

# serial_at MODE NAME FIELD: what the hook saw of a guest's serial log (2 = lines, 3 = last tick)
serial_at() { { awk -v n="$2" -v f="$3" '$1 == n { print $f }' "/var/lib/hu-test/serial-$1.txt" 2>/dev/null || true; } | head -n1; }

# md5 of a RAM file in ram-before/after.md5 ("" if none)
ram_digest() { { awk -v f="$2" '$2 == f { print $1 }' "/var/lib/hu-test/ram-$1.md5" 2>/dev/null || true; } | head -n1; }
