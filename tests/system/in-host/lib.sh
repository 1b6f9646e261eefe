#!/bin/bash
# Helpers for system-test scenarios, sourced by /hu/boot.sh inside the test host.
# Output conventions (read by run-host.sh from /dev/ttyS1, timestamped outside):
#   HU-RESULT: <text>    a result line (kept in results.txt and the summary)
#   HU-PHASE: <name>     start of a phase; the summary prints each phase's duration
#   HU-EVENT: <text>     a point in time the summary uses (scenario-start, kexec, ...)
#   HU-VERDICT: PASS | FAIL <why>
# HU lines go to fd 3 (opened by boot.sh on the log), so they are not lost when a
# helper runs inside $(...).
# Environment: HU_BOOT (1 on the first boot, 2 after the first kexec, ...),
# HU_OLD_KVER, HU_NEW_KVER (from /hu/env), HU_RESULTS, HU_STATE (persistent, on the root disk).

HU_FAILED=${HU_FAILED:-0}
HU_PHASE_NAME=""
HU_PHASE_T=""

hu_uptime() { cut -d' ' -f1 /proc/uptime; }
hu_log() { printf '[%9s] %s\n' "$(hu_uptime)" "$*" >&3; }
hu_kmsg() { echo "hu: $*" > /dev/kmsg 2>/dev/null || true; }
hu_result() {
	echo "HU-RESULT: $*" >&3
	echo "boot$HU_BOOT: $*" >> "$HU_RESULTS/results.txt"
}
# JSON on stdin -> one line (for HU-RESULT); unparsable input is passed through joined.
hu_json_compact() {
	python3 -c 'import json,sys
d=sys.stdin.read()
try: print(json.dumps(json.loads(d), separators=(",", ":")))
except ValueError: print(" ".join(d.split()))'
}
hu_event() { echo "HU-EVENT: $*" >&3; hu_kmsg "$*"; }
# hu_phase NAME: end the current phase (its in-host duration is logged) and start NAME.
hu_phase() {
	local now
	now=$(hu_uptime)
	if [ -n "$HU_PHASE_NAME" ]; then
		hu_log "phase $HU_PHASE_NAME took $(awk -v a="$HU_PHASE_T" -v b="$now" 'BEGIN { printf "%.2f", b - a }') s"
	fi
	HU_PHASE_NAME=$1
	HU_PHASE_T=$now
	[ -n "$1" ] && { echo "HU-PHASE: $1" >&3; hu_kmsg "phase $1"; }
	return 0
}
# hu_check DESCRIPTION CMD...: a named assertion; failures are counted, not fatal.
hu_check() {
	local desc=$1; shift
	if "$@"; then
		hu_result "check ok: $desc"
	else
		hu_result "check FAIL: $desc"
		HU_FAILED=$((HU_FAILED + 1))
	fi
	return 0
}
# hu_wait_for TIMEOUT_S DESCRIPTION CMD...: poll CMD every 0.2 s.
hu_wait_for() {
	local timeout=$1 desc=$2 end; shift 2
	end=$(awk -v u="$(hu_uptime)" -v t="$timeout" 'BEGIN { print u + t }')
	until "$@"; do
		if awk -v u="$(hu_uptime)" -v e="$end" 'BEGIN { exit !(u > e) }'; then
			hu_log "timed out after ${timeout}s waiting for: $desc"
			return 1
		fi
		sleep 0.2
	done
}
# hu_time VAR CMD...: run CMD, store its wall time in ms in VAR; returns CMD's status.
hu_time() {
	local __var=$1 a b rc=0; shift
	a=$(date +%s%N)
	"$@" || rc=$?
	b=$(date +%s%N)
	printf -v "$__var" '%d' $(( (b - a) / 1000000 ))
	return $rc
}
# hu_collect [full]: copy what helps a post-mortem onto the scenario disk.
# Before a kexec only the quick part (it is inside the VMs' downtime);
# "full" adds systemd-analyze blame/critical-chain (~10 s under TCG).
hu_collect() {
	local d=$HU_RESULTS/boot$HU_BOOT
	mkdir -p "$d"
	journalctl -b --no-pager -o short-monotonic > "$d/journal.txt" 2>&1 || true
	dmesg > "$d/dmesg.txt" 2>&1 || true
	cat /proc/cmdline > "$d/cmdline.txt"
	systemd-analyze time > "$d/boot-time.txt" 2>&1 || true
	if [ "${1:-}" = full ]; then
		{ systemd-analyze blame | head -n 30; systemd-analyze critical-chain; } >> "$d/boot-time.txt" 2>&1 || true
	fi
	if [ -d /var/lib/host-upgrade ]; then
		cp -a /var/lib/host-upgrade "$d/state-dir" 2>/dev/null || true
	fi
	[ -n "$(type -t hu_collect_hook)" ] && { hu_collect_hook "$d" || true; }
	sync
}
hu_finish() {
	trap - ERR
	set +eE
	hu_phase ""
	hu_collect full
	hu_event "scenario-end boot=$HU_BOOT"
	sync
	sleep 0.5
	systemctl --no-block poweroff
	sleep 600
	exit 1
}
hu_pass() {
	if [ "$HU_FAILED" -gt 0 ]; then
		hu_fail "$HU_FAILED check(s) failed"
	fi
	echo "HU-VERDICT: PASS" >&3
	echo "PASS" > "$HU_RESULTS/verdict"
	hu_finish
}
hu_fail() {
	trap - ERR
	set +eE
	echo "HU-VERDICT: FAIL $*" >&3
	echo "FAIL $*" > "$HU_RESULTS/verdict"
	hu_finish
}
# hu_kexec: the scenario has loaded a kernel (kexec -l / -s -l); reboot into it
# through systemd. The scenario goes on in the next boot with HU_BOOT+1.
hu_kexec() {
	trap - ERR
	set +eE
	# Never on a machine that is not a test host built by build-host.sh.
	if [ ! -x /usr/local/lib/hu-test/runner ] || [ "$(cat /etc/hostname)" != testhost ]; then
		hu_fail "hu_kexec: this is not the test host; refusing to kexec"
	fi
	if [ "$(cat /sys/kernel/kexec_loaded 2>/dev/null)" != 1 ]; then
		hu_fail "hu_kexec: no kernel loaded (/sys/kernel/kexec_loaded is not 1)"
	fi
	hu_phase ""
	hu_collect
	hu_event "kexec boot=$HU_BOOT"
	sync
	systemctl --no-block kexec
	sleep 600
	hu_fail "systemctl kexec did not take the host down in 600 s"
}
