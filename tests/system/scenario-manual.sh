#!/bin/bash
# System-test scenario (runs INSIDE the test host; see run-host.sh):
#   tests/system/run-host.sh tests/system/scenario-manual.sh
#
# The kernel upgrade done with raw tools around the product's checkpoint and
# restore (before `host-upgrade run` exists), proving the harness end to end:
# boot 1 (6.1): legacy pmem (memmap=256M!1G) -> fsdax namespace -> ext4 -o dax;
#   three inner VMs (tests/guest/tick.S, TCG) with RAM files on the DAX mount,
#   each in a different argv shape; let them tick; `kexec -s -l` the 6.12 kernel +
#   its initrd with --reuse-cmdline (before the checkpoint: it is not downtime);
#   `host-upgrade checkpoint`; systemctl kexec.
# boot 2 (6.12): mount the DAX fs again; `host-upgrade restore`; every VM's
#   counter continued (no second BOOT line, ticks consecutive); status --json.
# Sourced by /hu/boot.sh (set -e, ERR trap, helpers from lib.sh).

# It kexecs the machine it runs on: only ever inside the test host.
if [ -z "${HU_BOOT:-}" ] || [ ! -x /usr/local/lib/hu-test/runner ] || [ ! -f /hu/env ]; then
	echo "scenario-manual.sh runs inside the test host only: tests/system/run-host.sh $0" >&2
	exit 2
fi

state_dir=/var/lib/host-upgrade
mnt=/mnt/pmem
rundir=/run/hu-vms
logdir=/var/log/hu-vms
vmdir=/var/lib/hu-vms
tick=$vmdir/tick.elf
vms="vm1 vm2 vm3"
ms=0

vm_serial() { echo "$logdir/$1.serial"; }
vm_tick() { { grep -o '^tick [0-9]*' "$(vm_serial "$1")" 2>/dev/null || true; } | tail -n1 | cut -d' ' -f2; }
vm_boots() { grep -c '^BOOT' "$(vm_serial "$1")" 2>/dev/null || true; }
vm_ticks_at_least() { local t; t=$(vm_tick "$1"); [ -n "$t" ] && [ "$t" -ge "$2" ]; }
# Every "tick N" line is the previous N + 1, from 1: the counter never restarted or jumped back.
vm_ticks_consecutive() {
	awk '/^tick / { if ($2 != n + 1) { print "tick " $2 " after tick " n; bad = 1 } n = $2 } END { exit bad }' "$(vm_serial "$1")"
}
vm_pid_by_name() { { pgrep -f -- "-name (guest=)?$1( |,|$)" || true; } | head -n1; }
hu_collect_hook() {
	local d=$1
	mkdir -p "$d/vms"
	cp -a "$logdir/." "$d/vms/" 2>/dev/null || true
	ps -eo pid,ppid,etimes,cgroup:60,args > "$d/ps.txt" 2>&1 || true
	ndctl list -NRD > "$d/ndctl.json" 2>&1 || true
}

pmem_ready() { [ -b /dev/pmem0 ]; }

case "$HU_BOOT" in
1)
	hu_phase pmem-setup
	hu_result "cmdline $(cat /proc/cmdline)"
	pmem_ready || modprobe -a libnvdimm nd_pmem nd_e820 2>/dev/null || true
	hu_wait_for 30 "/dev/pmem0" pmem_ready
	hu_time ms ndctl create-namespace -f -e namespace0.0 -m fsdax >"$HU_RESULTS/ndctl-create.json"
	hu_result "fsdax namespace created in ${ms} ms: $(tr -d ' \n' < "$HU_RESULTS/ndctl-create.json" | cut -c1-200)"
	udevadm settle
	hu_wait_for 30 "/dev/pmem0 (fsdax)" pmem_ready
	mkfs.ext4 -q -F -b 4096 /dev/pmem0
	mkdir -p "$mnt"
	mount -o dax /dev/pmem0 "$mnt"
	hu_check "$mnt is mounted with dax" grep -q " $mnt ext4 .*dax" /proc/mounts
	hu_result "pmem: $(df -h --output=size,avail "$mnt" | tail -n1 | tr -s ' ')"

	hu_phase start-vms
	# What an operator would set up: the runtime dir for the sockets comes back every boot.
	echo "d $rundir 0755 root root -" > /etc/tmpfiles.d/hu-vms.conf
	systemd-tmpfiles --create /etc/tmpfiles.d/hu-vms.conf
	mkdir -p "$logdir" "$vmdir"
	cp /hu/tick.elf "$tick"
	truncate -s 16M "$vmdir/vm1-disk.raw"
	# shellcheck disable=SC2054 # commas are QEMU's
	common=(-machine pc,accel=tcg -cpu qemu64 -smp 1 -display none -nodefaults -kernel "$tick")
	# vm1: -qmp unix:, -daemonize + -pidfile, a disk, 32 MiB
	qemu-system-x86_64 -name guest=vm1 "${common[@]}" -append vm1 -m 32M \
		-object memory-backend-file,id=ram0,size=32M,mem-path="$mnt/vm1.ram",share=on \
		-machine memory-backend=ram0 \
		-drive file="$vmdir/vm1-disk.raw",if=virtio,format=raw \
		-chardev file,id=ser0,path="$(vm_serial vm1)",append=on -serial chardev:ser0 \
		-qmp unix:"$rundir/vm1.qmp",server=on,wait=off \
		-daemonize -pidfile "$rundir/vm1.pid"
	# vm2: -chardev socket + -mon mode=control, a plain child in the background, 48 MiB
	setsid -f qemu-system-x86_64 -name vm2 "${common[@]}" -append vm2 -m 48M \
		-object memory-backend-file,id=pc.ram,size=48M,mem-path="$mnt/vm2.ram",share=on \
		-machine memory-backend=pc.ram \
		-chardev file,id=ser0,path="$(vm_serial vm2)",append=on -serial chardev:ser0 \
		-chardev socket,id=mon0,path="$rundir/vm2.qmp",server=on,wait=off \
		-mon chardev=mon0,mode=control \
		</dev/null >"$logdir/vm2.qemu.log" 2>&1
	# vm3: its own transient systemd unit, 32 MiB
	# (not `-qmp unix:path=...`: QEMU takes it, host-upgrade does not parse it yet)
	systemd-run --quiet --unit=hu-vm3 --collect \
		qemu-system-x86_64 -name guest=vm3,debug-threads=on "${common[@]}" -append vm3 -m 32M \
		-object memory-backend-file,id=mem3,size=32M,mem-path="$mnt/vm3.ram",share=on \
		-machine memory-backend=mem3 \
		-chardev file,id=ser0,path="$(vm_serial vm3)",append=on -serial chardev:ser0 \
		-qmp unix:"$rundir/vm3.qmp",server=on,wait=off
	for vm in $vms; do
		hu_wait_for 120 "$vm prints BOOT" grep -q '^BOOT' "$(vm_serial "$vm")"
		hu_result "$vm: pid $(vm_pid_by_name "$vm"), $(grep -m1 '^BOOT' "$(vm_serial "$vm")")"
	done

	hu_phase ticking
	for vm in $vms; do
		hu_wait_for 120 "$vm reaches tick 6" vm_ticks_at_least "$vm" 6
	done
	for vm in $vms; do hu_result "$vm: tick $(vm_tick "$vm") before the checkpoint"; done
	host-upgrade plan --state-dir "$state_dir" || true
	host-upgrade plan --json --state-dir "$state_dir" > "$HU_RESULTS/plan.json" || true
	hu_result "plan --json: $(hu_json_compact < "$HU_RESULTS/plan.json")"

	hu_phase stage-kexec
	hu_time ms kexec -s -l "/boot/vmlinuz-$HU_NEW_KVER" --initrd="/boot/initrd.img-$HU_NEW_KVER" --reuse-cmdline
	hu_result "kexec -s -l $HU_NEW_KVER --reuse-cmdline: ${ms} ms, kexec_loaded=$(cat /sys/kernel/kexec_loaded)"

	hu_phase checkpoint
	rc=0
	hu_event checkpoint-start
	hu_time ms host-upgrade checkpoint --state-dir "$state_dir" || rc=$?
	hu_event checkpoint-done
	hu_result "checkpoint: exit $rc in ${ms} ms"
	[ "$rc" = 0 ] || hu_fail "host-upgrade checkpoint failed (exit $rc)"
	host-upgrade status --state-dir "$state_dir" || true
	hu_result "status --json after checkpoint: $(host-upgrade status --json --state-dir "$state_dir" | hu_json_compact)"
	for vm in $vms; do
		hu_check "$vm: QEMU gone after checkpoint" test -z "$(vm_pid_by_name "$vm")"
		t=$(vm_tick "$vm")
		hu_result "$vm: tick $t at the checkpoint; state $(stat -c %s "$state_dir/$vm.state" 2>/dev/null || echo '?') bytes"
		echo "ckpt_tick_$vm=$t" >> "$HU_STATE/phase1.env"
	done
	ls -la "$state_dir" "$mnt"

	umount "$mnt"
	sync
	hu_kexec
	;;
2)
	hu_phase pmem-mount
	hu_check "running the new kernel ($HU_NEW_KVER)" test "$(uname -r)" = "$HU_NEW_KVER"
	hu_check "the kexec kept memmap=256M!1G" grep -q 'memmap=256M!1G' /proc/cmdline
	# shellcheck source=/dev/null
	. "$HU_STATE/phase1.env"
	pmem_ready || modprobe -a libnvdimm nd_pmem nd_e820 2>/dev/null || true
	hu_wait_for 30 "/dev/pmem0" pmem_ready
	hu_time ms ndctl list -N > "$HU_RESULTS/ndctl-after-kexec.json"
	hu_result "namespace after kexec (ndctl list: ${ms} ms): $(tr -d ' \n' < "$HU_RESULTS/ndctl-after-kexec.json" | cut -c1-200)"
	mkdir -p "$mnt"
	mount -o dax /dev/pmem0 "$mnt"
	hu_check "$mnt is mounted with dax again" grep -q " $mnt ext4 .*dax" /proc/mounts
	hu_check "RAM files survived" test -s "$mnt/vm1.ram" -a -s "$mnt/vm2.ram" -a -s "$mnt/vm3.ram"
	hu_check "$rundir was recreated by tmpfiles" test -d "$rundir"
	mkdir -p "$rundir"
	host-upgrade status --state-dir "$state_dir" || true

	hu_phase restore
	rc=0
	hu_event restore-start
	hu_time ms host-upgrade restore --state-dir "$state_dir" || rc=$?
	hu_event restore-done
	hu_result "restore: exit $rc in ${ms} ms"
	host-upgrade status --state-dir "$state_dir" || true
	status_json=$(host-upgrade status --json --state-dir "$state_dir" | hu_json_compact || true)
	hu_result "status --json: $status_json"

	hu_phase verify
	for vm in $vms; do
		eval "ck=\${ckpt_tick_$vm}"
		# shellcheck disable=SC2154 # set by eval
		if ! hu_wait_for 120 "$vm ticks on past $((ck + 4))" vm_ticks_at_least "$vm" $((ck + 4)); then
			hu_result "$vm: last lines: $(tail -n 3 "$(vm_serial "$vm")" | tr '\n' '|')"
		fi
		hu_result "$vm: tick $ck at the checkpoint, now tick $(vm_tick "$vm"), BOOT lines $(vm_boots "$vm"), pid $(vm_pid_by_name "$vm")"
		hu_check "$vm: counter continued after the kexec" vm_ticks_at_least "$vm" $((ck + 4))
		hu_check "$vm: no cold boot (one BOOT line)" test "$(vm_boots "$vm")" = 1
		hu_check "$vm: ticks consecutive (no restart, no jump back)" vm_ticks_consecutive "$vm"
	done
	echo "$status_json" > "$HU_RESULTS/status.json"
	hu_check "status --json: every VM restored, with a downtime" python3 - "$HU_RESULTS/status.json" <<-'PY'
	import json, sys
	s = json.load(open(sys.argv[1]))
	vms = s["vms"]
	ok = len(vms) == 3 and all(v["state"] == "restored" and isinstance(v["downtime_ms"], (int, float)) for v in vms)
	for v in vms:
	    print("HU-RESULT: %s: state %s, downtime %s ms" % (v["name"], v["state"], v["downtime_ms"]))
	sys.exit(0 if ok else 1)
	PY
	hu_check "restore exited 0" test "$rc" = 0
	hu_result "uname -r: $(uname -r)"
	hu_pass
	;;
*)
	hu_fail "unexpected boot $HU_BOOT"
	;;
esac
