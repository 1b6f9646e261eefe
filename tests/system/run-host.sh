#!/bin/bash
# Boot the test host (built by build-host.sh) under QEMU/TCG and run a scenario in it.
#
#   tests/system/run-host.sh [--no-build] [--timeout SEC] [--out DIR] [--quiet] [--brief] SCENARIO_SCRIPT
#
# The test host boots Debian's 6.1 kernel with its dracut initrd
# ("console=ttyS0 root=/dev/vda rw memmap=256M!1G nokaslr no_timer_check": 256 MiB of legacy
# pmem at 1 GiB; no_timer_check because a TCG guest on a busy machine can fail Linux's IO-APIC
# timer check and panic; `host-upgrade run` reuses this command line for the kexec), -smp 2 -m 2G, no network, -no-reboot (a reset of the test host ends the
# QEMU process instead of rebooting it unnoticed). Its root disk is a throw-away qcow2 overlay
# over the cached host.img. A scenario that writes "HU-EVENT: power-cycle" on ttyS1
# before the host resets gets a power cycle: the outer QEMU is started again (a new
# process, so fresh RAM: the legacy pmem is gone) on the same disks (at most 3 times).
# HU_SYSTEM_WARM_RESET=1 (exploration) leaves out -no-reboot: a reset then stays in
# the same QEMU process, whose RAM (legacy pmem included) survives it.
#
# Host configurations: a scenario picks one with a header line "# hu-host: CONFIG"
# (its first match in the script; none = legacy):
#   legacy  the above: legacy pmem from memmap=256M!1G (/dev/pmem0, no labels)
#   nvdimm  an emulated ACPI NVDIMM with a label area instead, so ndctl can make
#           devdax/fsdax namespaces: -machine ...,nvdimm=on -m 2G,slots=2,maxmem=4G,
#           a 512 MiB memory-backend-file (share=on) in this run's work dir (fresh per
#           run), -device nvdimm,label-size=128K; no memmap= on the kernel command line.
#           The backing file outlives the outer QEMU: unlike legacy pmem, the NVDIMM
#           survives a power cycle (its contents and labels).
# The scenario sees it as HU_HOST_CONFIG in /hu/env.
#
# SCENARIO_SCRIPT is a bash script that hu-scenario.service runs inside the test
# host at every boot, also after a kexec (HU_BOOT=1, 2, ...), with the helpers of
# tests/system/in-host/*.sh. It gets there on a small second disk (/dev/vdb,
# label HU-SCEN, mounted on /hu) with the helpers, /hu/tick.elf (the inner guest)
# and /hu/env (HU_OLD_KVER, HU_NEW_KVER). Its log and results come back twice:
# live on the second serial port (ttyS1), timestamped here, and in /hu/results,
# copied out of the disk image after the run.
#
# Results go to DIR (default: <repo>/build/system/<time>-<scenario>):
#   console.log   ttyS0 (kernel + systemd), each line stamped with seconds since QEMU start
#   scenario.log  ttyS1 (the scenario's output, HU-* lines), stamped the same way
#   results/      what the scenario left on /hu/results (per-boot journal, dmesg, logs)
#   summary.txt   results, verdict, timeline and phase timings
#   report.txt    per-VM downtime, blackout, where the time went (report.py), timings.json
# --quiet: echo only milestones and HU- lines while it runs; --brief: at the end
# print only the verdict (not the summary and the report).
# Exit status: 0 when the scenario said HU-VERDICT: PASS, 1 otherwise, 2 usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HU_SYSTEM_CACHE:-/var/cache/host-upgrade-system}
timeout=${HU_SYSTEM_TIMEOUT:-1200}
build=1
out=""
echo_mode=all
brief=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--no-build) build=0 ;;
	--timeout) timeout=${2:?}; shift ;;
	--out) out=${2:?}; shift ;;
	--quiet) echo_mode=milestones ;;
	--brief) brief=1 ;;
	-h|--help) usage ;;
	-*) echo "run-host: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 1 ] || usage
scenario=$(realpath "$1")
[ -r "$scenario" ] || { echo "run-host: cannot read $scenario" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run-host: must run as root" >&2; exit 1; }

t_start=$EPOCHREALTIME
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[run-host %7ss] %s\n' "$(since "$t_start")" "$*" >&2; }

if [ "$build" = 1 ]; then
	"$here/build-host.sh"
fi
[ -r "$cache/host.env" ] || { echo "run-host: no $cache/host.env: run build-host.sh first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$cache/host.env"

name=$(basename "$scenario" .sh)
host_config=$(sed -n 's/^# hu-host:[[:space:]]*\([a-z0-9-]*\).*/\1/p' "$scenario" | head -n1)
host_config=${host_config:-legacy}
case "$host_config" in
legacy | nvdimm) ;;
*) echo "run-host: $scenario asks for an unknown host configuration \"$host_config\" (legacy, nvdimm)" >&2; exit 2 ;;
esac
[ -n "$out" ] || out=$repo/build/system/$(date +%Y%m%d-%H%M%S)-$name
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d "${TMPDIR:-/tmp}/hu-run.XXXXXX")

qemu_pid=""
relay_pid=""
cleanup() {
	local rc=$?
	# Only the processes this script started, by pid.
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
		kill -TERM "$relay_pid" 2>/dev/null || true
		wait "$relay_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- the scenario disk: helpers, scenario, inner guest, env; results come back on it
say "scenario $name ($host_config host) → $out"
stage=$work/scen
mkdir -p "$stage/results"
cp "$here"/in-host/*.sh "$stage/"
# the operator's guide: scenario-run runs its marked blocks (in-host/guide.sh)
cp "$here/../../docs/preparing-a-host.md" "$stage/"
cp "$scenario" "$stage/scenario.sh"
cp "$HU_TICK_ELF" "$stage/tick.elf"
cat > "$stage/env" <<ENV
HU_OLD_KVER=$HU_OLD_KVER
HU_NEW_KVER=$HU_NEW_KVER
HU_DRACUT_HU_MODULE=$HU_DRACUT_HU_MODULE
HU_SCENARIO=$name
HU_HOST_CONFIG=$host_config
ENV
mkfs.ext4 -q -F -O ^has_journal -L HU-SCEN -d "$stage" "$work/scen.img" 64M > /dev/null

# -- the root disk: a throw-away overlay on the cached image
qemu-img create -q -f qcow2 -F raw -b "$HU_IMAGE" "$work/host.qcow2"

# -- serial ports: ttyS0 console, ttyS1 scenario output; stamped by the relay
: > "$work/ttyS0.raw"
: > "$work/ttyS1.raw"
: > "$out/console.log"
: > "$out/scenario.log"
t0=$EPOCHREALTIME
setpriv --pdeathsig KILL -- /usr/bin/python3 "$here/serial-relay.py" "$t0" \
	"console:$work/ttyS0.raw:$out/console.log:milestones" \
	"host:$work/ttyS1.raw:$out/scenario.log:$echo_mode" &
relay_pid=$!

# The host's persistent memory (see "Host configurations" above).
# shellcheck disable=SC2054 # commas are QEMU's
case "$host_config" in
legacy)
	append="console=ttyS0 root=/dev/vda rw memmap=256M!1G nokaslr no_timer_check"
	machine=(-machine pc,accel=tcg -m 2G)
	pmem=()
	;;
nvdimm)
	append="console=ttyS0 root=/dev/vda rw nokaslr no_timer_check"
	machine=(-machine pc,accel=tcg,nvdimm=on -m 2G,slots=2,maxmem=4G)
	# Sparse; only what the namespaces' metadata and the inner VMs write takes space.
	truncate -s 512M "$work/nvdimm.img"
	pmem=(-object "memory-backend-file,id=nv0,share=on,mem-path=$work/nvdimm.img,size=512M"
		-device nvdimm,id=nv0dimm,memdev=nv0,label-size=128K)
	;;
esac
# HU_SYSTEM_WARM_RESET=1 (exploration): a reset of the test host resets the same QEMU
# process (no -no-reboot), which keeps its RAM, legacy pmem included.
no_reboot=(-no-reboot)
[ "${HU_SYSTEM_WARM_RESET:-0}" = 1 ] && no_reboot=()
# shellcheck disable=SC2054 # commas are QEMU's
qemu=(qemu-system-x86_64 -name hu-testhost "${machine[@]}" -cpu max -smp 2 "${pmem[@]}"
	-kernel "$HU_OLD_VMLINUZ" -initrd "$HU_OLD_INITRD" -append "$append"
	-drive "file=$work/host.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap"
	-drive "file=$work/scen.img,if=virtio,format=raw,cache=writeback"
	-nic none "${no_reboot[@]}" -display none -nodefaults
	-chardev "file,id=s0,path=$work/ttyS0.raw,append=on" -serial chardev:s0
	-chardev "file,id=s1,path=$work/ttyS1.raw,append=on" -serial chardev:s1
	-qmp "unix:$work/qmp.sock,server=on,wait=off")
printf '%q ' "${qemu[@]}" > "$out/qemu-cmdline.txt"
echo >> "$out/qemu-cmdline.txt"
: > "$out/qemu.log"
timed_out=0
qemu_rc=0
cycles=0
while :; do
	if [ "$cycles" = 0 ]; then
		say "booting the test host: $HU_OLD_KVER, timeout ${timeout}s"
	else
		say "power cycle $cycles: starting the test host again (new QEMU process: fresh RAM)"
	fi
	s1_pos=$(stat -c %s "$work/ttyS1.raw")
	# --pdeathsig: QEMU dies with this script even when it is killed with SIGKILL.
	setpriv --pdeathsig KILL -- "${qemu[@]}" >> "$out/qemu.log" 2>&1 &
	qemu_pid=$!
	while kill -0 "$qemu_pid" 2>/dev/null; do
		if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
			say "TIMEOUT after ${timeout}s: killing the test host (pid $qemu_pid)"
			timed_out=1
			kill -TERM "$qemu_pid" 2>/dev/null || true
			sleep 2
			kill -KILL "$qemu_pid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
	qemu_rc=0
	wait "$qemu_pid" || qemu_rc=$?
	qemu_pid=""
	# A power cycle asked for by this boot (with HU_SYSTEM_WARM_RESET=1 the
	# reset stayed inside the same QEMU process: nothing to do).
	asked=$(tail -c "+$((s1_pos + 1))" "$work/ttyS1.raw" | grep -c 'HU-EVENT: power-cycle' || true)
	if [ "$timed_out" = 0 ] && [ "$qemu_rc" = 0 ] && [ ${#no_reboot[@]} -gt 0 ] && [ "${asked:-0}" -gt 0 ] && [ "$cycles" -lt 3 ]; then
		cycles=$((cycles + 1))
		continue
	fi
	break
done
t_end=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
sleep 0.1
kill -TERM "$relay_pid" 2>/dev/null || true
wait "$relay_pid" 2>/dev/null || true
relay_pid=""
say "test host stopped (QEMU exit $qemu_rc) after ${t_end}s"

# -- results off the scenario disk
rm -rf "$out/results"
debugfs -R "rdump /results $out" "$work/scen.img" > /dev/null 2>&1 || say "warning: could not read results from the scenario disk"

# -- summary
{
	echo "scenario:  $name"
	echo "host:      $host_config ($append)"
	echo "image:     $HU_IMAGE ($HU_OLD_KVER -> $HU_NEW_KVER)"
	echo "run time:  ${t_end}s (QEMU start to exit)$([ $timed_out = 1 ] && echo ', TIMED OUT')"
	echo "load:      $load_start -> $(cut -d' ' -f1-3 /proc/loadavg) (this machine's load average, $(nproc) CPUs: other jobs slow the test host down)"
	echo
	echo "== results"
	sed -n 's/^\[ *\([0-9.]*\)\] HU-RESULT: /\1 /p' "$out/scenario.log" | awk '{ t = $1; $1 = ""; printf "%9.3f %s\n", t, substr($0, 2) }'
	echo
	echo "== timeline (seconds since QEMU start, this machine's clock)"
	awk '
	function ev(t, what) { printf "%9.3f  %s\n", t, what }
	FNR == 1 { file++ }
	{ s = $0; sub(/^\[ */, "", s); t = s + 0 }
	file == 1 && /Linux version [^ ]+/ { match($0, /Linux version [^ ]+/); ev(t, "kernel start: " substr($0, RSTART + 14, RLENGTH - 14)) }
	file == 1 && /Run \/init as init process/ { ev(t, "initrd /init starts") }
	file == 1 && /Switching root/ { ev(t, "switch root") }
	file == 1 && /kexec_core: Starting new kernel/ { ev(t, "kexec: old kernel jumps to the new one") }
	file == 1 && /reboot: Power down/ { ev(t, "power down") }
	file == 2 && /HU-EVENT: / { sub(/^.*HU-EVENT: /, ""); ev(t, $0) }
	file == 2 && /HU-PHASE: / { sub(/^.*HU-PHASE: /, ""); ev(t, "phase " $0) }
	file == 2 && /HU-VERDICT: / { sub(/^.*HU-VERDICT: /, ""); ev(t, "verdict " $0) }
	' "$out/console.log" "$out/scenario.log" | sort -s -n -k1,1
	echo
	echo "== phases (durations on this machine's clock)"
	awk '
	{ s = $0; sub(/^\[ */, "", s); t = s + 0 }
	/HU-PHASE: |HU-EVENT: (kexec|scenario-end)|HU-VERDICT: / {
		if (name != "") printf "%-28s %8.2f s\n", name, t - start
		name = ""
		if ($0 ~ /HU-PHASE: /) { name = $0; sub(/^.*HU-PHASE: /, "", name); start = t }
	}' "$out/scenario.log"
	awk '
	FNR == 1 { file++ }
	{ s = $0; sub(/^\[ */, "", s); t = s + 0 }
	file == 1 && /Linux version/ { nk++; if (nk == 1) k1 = t; if (nk == 2) k2 = t }
	file == 1 && /Run \/init as init process/ { ni++; if (ni == 2) i2 = t }
	file == 1 && /kexec_core: Starting new kernel/ { kx = t }
	file == 2 && /HU-EVENT: scenario-start boot=1/ { s1 = t }
	file == 2 && /HU-EVENT: scenario-start boot=2/ { s2 = t }
	file == 2 && /HU-EVENT: kexec boot=1/ { ke = t }
	file == 2 && /HU-EVENT: checkpoint-start/ { cs = t }
	file == 2 && /HU-EVENT: checkpoint-done/ { cd = t }
	file == 2 && /HU-EVENT: restore-start/ { rs = t }
	file == 2 && /HU-EVENT: restore-done/ { rd = t }
	END {
		printf "\n"
		if (s1) printf "%-40s %8.2f s\n", "power-on -> scenario start (boot 1)", s1
		if (ke && kx) printf "%-40s %8.2f s\n", "systemctl kexec -> kexec jump", kx - ke
		if (kx && k2) printf "%-40s %8.2f s\n", "kexec jump -> new kernel prints", k2 - kx
		if (k2 && i2) printf "%-40s %8.2f s\n", "new kernel -> initrd /init", i2 - k2
		if (i2 && s2) printf "%-40s %8.2f s\n", "initrd /init -> scenario start (boot 2)", s2 - i2
		if (ke && s2) printf "%-40s %8.2f s\n", "systemctl kexec -> scenario start", s2 - ke
		if (cs && cd) printf "%-40s %8.2f s\n", "checkpoint (all VMs saved, QEMUs quit)", cd - cs
		if (rs && rd) printf "%-40s %8.2f s\n", "restore (until the last VM runs)", rd - rs
		if (cs && rd) printf "%-40s %8.2f s\n", "host blackout: checkpoint -> last VM runs", rd - cs
	}' "$out/console.log" "$out/scenario.log"
	echo
	verdict=$(sed -n 's/^\[ *[0-9.]*\] HU-VERDICT: //p' "$out/scenario.log" | tail -n1)
	echo "verdict:   ${verdict:-NONE (the scenario did not finish; see console.log)}"
} > "$out/summary.txt"
python3 "$here/report.py" "$out" > /dev/null 2>&1 || say "warning: report.py failed"
if [ "$brief" = 1 ]; then
	grep '^verdict:' "$out/summary.txt" >&2
else
	echo >&2
	cat "$out/summary.txt" >&2
	[ -s "$out/report.txt" ] && { echo >&2; cat "$out/report.txt" >&2; }
fi
say "logs: $out"
grep -q '^verdict:   PASS' "$out/summary.txt"
