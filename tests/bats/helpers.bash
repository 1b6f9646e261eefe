# shellcheck shell=bash
# Helpers for the host-upgrade bats tests: boot the tiny test guest under QEMU (TCG only),
# talk QMP to it, read its serial console and clean up every QEMU a test started.
#
#   load helpers            (bats 1.8)
#
# Per-test files live in $T (= $BATS_TEST_TMPDIR, or a short mktemp dir under /tmp when that
# path is too long for unix sockets, 107 bytes). For a VM called NAME:
#   $T/NAME.serial   serial console (ttyS0), appended across restarts
#   $T/NAME.pid      QEMU pidfile (QEMU deletes it on exit; copy in $T/NAME.lastpid)
#   $T/NAME.log      QEMU stdout+stderr (appended)
#   $T/NAME.qmp      QMP socket (qmp_arg)    $T/NAME.sock     QMP socket (mon_args)
#   $T/NAME.cmdline  the last argv vm_start used, shell-quoted
#
# This file defines teardown() { hu_teardown; } and setup() { hu_setup; } (see "the preamble"
# at the end). A test file that needs its own teardown defines it after `load helpers` and
# calls hu_teardown (or at least cleanup_vms) from it; the same for setup and hu_setup.
#
# Functions (all return non-zero with a message on stderr when they fail):
#   guest_build                         build $GUEST_DIR once (flock-protected)
#   vm_start NAME [QEMU_ARG...]         start a guest in the background, wait for its pidfile
#   qmp_arg NAME                        prints: -qmp unix:$T/NAME.qmp,server=on,wait=off
#   mon_args NAME                       prints: -chardev socket,...,path=$T/NAME.sock,... -mon ...
#   ram_file_args NAME PATH             prints: -object memory-backend-file,...,mem-path=PATH,share=on -machine memory-backend=ram0
#   ram_memfd_args NAME                 prints: -object memory-backend-memfd,...,share=on -machine memory-backend=ram0
#   qmp NAME_OR_SOCKET JSON_COMMAND     one QMP command; prints the return/error object as JSON
#   qmp NAME_OR_SOCKET COMMAND [ARGS_JSON]   same, shorthand
#   json_get JSONTEXT PYEXPR            evaluates PYEXPR with j = the parsed JSON (python3)
#   vm_pid NAME                         pid from $T/NAME.pid
#   vm_alive NAME                       true while that QEMU runs (not a zombie)
#   vm_wait_exit NAME [TIMEOUT_S=15]    wait for that QEMU to exit
#   vm_status NAME                      prints query-status .status (running, paused, ...)
#   vm_wait_status NAME STATUS [TIMEOUT_S=30]
#   vm_wait_migrate NAME [TIMEOUT_S=60] wait for query-migrate "completed" (fails on failed/cancelled)
#   vm_wait_tick NAME N [TIMEOUT_S=60]  wait until the serial log shows "tick M" with M >= N
#   vm_last_tick NAME                   highest tick number seen (0 if none)
#   vm_boot_count NAME                  number of "BOOT <token>" lines (1 = never cold-booted again)
#   vm_boot_tokens NAME                 the BOOT tokens, one per line
#   vm_serial NAME                      prints the serial log path
#   cleanup_vms                         SIGKILL every qemu-system-* whose argv mentions "$T/"
#   hu_teardown                         cleanup_vms + remove the short tmp dir if one was made
#
# Tunables (environment): HU_BUILD_DIR, GUEST_DIR, HU_VM_MEM (default 256M),
# HU_VM_APPEND (default "console=ttyS0 quiet no_timer_check"), HU_VM_INITRD (default the busybox guest), QEMU (default qemu-system-x86_64), QMP_TIMEOUT.
# jq is not needed (not in the project's dependencies); python3 (full, with json) is.

HU_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HU_QMP_PY=$HU_TESTS_DIR/tools/qmp.py
HU_BUILD_GUEST=$HU_TESTS_DIR/guest/build-guest.sh

if [[ -z "${GUEST_DIR:-}" ]]; then
	GUEST_DIR=${HU_BUILD_DIR:-$BATS_TEST_DIRNAME/../../build}/guest
fi
# Normalise (the directory may not exist yet).
GUEST_DIR=$(realpath -m "$GUEST_DIR")
export GUEST_DIR

: "${HU_VM_MEM:=256M}"
# no_timer_check: a TCG guest on a busy machine fails Linux's IO-APIC timer check and panics
# ("IO-APIC + timer doesn't work!").
: "${HU_VM_APPEND:=console=ttyS0 quiet no_timer_check}"
: "${QEMU:=qemu-system-x86_64}"

# --- per-test directory ---------------------------------------------------------------------

# Longest per-VM path we create is "$T/NAME.serial"/"$T/NAME.sock"; keep $T short enough that
# a socket path with a NAME of up to ~30 characters stays below 107 bytes, and free of
# characters that QEMU option parsing (commas) or word splitting (spaces) would mangle.
_hu_setup_tmp() {
	[[ -n "${BATS_TEST_TMPDIR:-}" ]] || return 0
	if ((${#BATS_TEST_TMPDIR} <= 64)) && [[ "$BATS_TEST_TMPDIR" =~ ^[A-Za-z0-9/._+-]+$ ]]; then
		T=$BATS_TEST_TMPDIR
		HU_SHORT_TMP=
	else
		T=$(mktemp -d /tmp/hu.XXXXXX) || return 1
		HU_SHORT_TMP=$T
		printf '%s\n' "$T" >"$BATS_TEST_TMPDIR/hu-short-tmp"
	fi
	export T
}
_hu_setup_tmp

_hu_need_t() {
	if [[ -z "${T:-}" ]]; then
		echo "helpers: \$T is not set (only available inside a test, not in setup_file)" >&2
		return 1
	fi
}

_hu_check_name() {
	if [[ ! "${1:-}" =~ ^[A-Za-z0-9_.-]+$ ]]; then
		echo "helpers: bad VM name '${1:-}' (use [A-Za-z0-9_.-])" >&2
		return 1
	fi
}

# --- guest ----------------------------------------------------------------------------------

guest_build() {
	[[ -n "${HU_GUEST_BUILT:-}" ]] && return 0
	mkdir -p "$(dirname "$GUEST_DIR")" || return 1
	(
		flock -w 300 9 || { echo "helpers: timed out waiting for $GUEST_DIR.lock" >&2; exit 1; }
		"$HU_BUILD_GUEST" "$GUEST_DIR" >&2
	) 9>"$GUEST_DIR.lock" || return 1
	HU_GUEST_BUILT=1
}

# --- argument builders ----------------------------------------------------------------------

# QEMU option values double a literal comma.
_hu_qemu_escape() { printf '%s' "${1//,/,,}"; }

qmp_arg() {
	_hu_need_t && _hu_check_name "$1" || return 1
	printf '%s\n' "-qmp unix:$T/$1.qmp,server=on,wait=off"
}

mon_args() {
	_hu_need_t && _hu_check_name "$1" || return 1
	printf '%s\n' "-chardev socket,id=mon0,path=$T/$1.sock,server=on,wait=off -mon chardev=mon0,mode=control"
}

ram_file_args() {
	_hu_check_name "$1" || return 1
	if [[ -z "${2:-}" ]]; then
		echo "usage: ram_file_args NAME PATH" >&2
		return 1
	fi
	printf '%s\n' "-object memory-backend-file,id=ram0,size=$HU_VM_MEM,mem-path=$(_hu_qemu_escape "$2"),share=on -machine memory-backend=ram0"
}

ram_memfd_args() {
	_hu_check_name "$1" || return 1
	printf '%s\n' "-object memory-backend-memfd,id=ram0,size=$HU_VM_MEM,share=on -machine memory-backend=ram0"
}

# --- starting and watching QEMU -------------------------------------------------------------

vm_serial() { printf '%s\n' "$T/$1.serial"; }

# QEMU removes its pidfile when it exits; vm_start keeps a copy in $T/NAME.lastpid so the pid
# of a VM that has just quit is still known. A pidfile (re)written later wins.
vm_pid() {
	local pid=
	[[ -s "$T/$1.pid" ]] && read -r pid 2>/dev/null <"$T/$1.pid"
	[[ -z "$pid" && -s "$T/$1.lastpid" ]] && read -r pid <"$T/$1.lastpid"
	if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
		echo "helpers: no pid for VM '$1' ($T/$1.pid)" >&2
		return 1
	fi
	printf '%s\n' "$pid"
}

# true if PID exists and is not a zombie
_hu_pid_alive() {
	local stat
	[[ -r /proc/$1/stat ]] || return 1
	# read, not $(<…): a command substitution is a subshell that inherits bats'
	# ERR trap, so a process vanishing between the two lines failed the caller.
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ "${stat%% *}" != Z && "${stat%% *}" != X ]]
}

vm_alive() {
	local pid
	pid=$(vm_pid "$1" 2>/dev/null) || return 1
	_hu_pid_alive "$pid"
}

_hu_tail() {
	local f=$1 n=${2:-15}
	if [[ -s "$f" ]]; then
		echo "--- last $n lines of $f:"
		tail -n "$n" "$f" | tr -d '\r'
		echo "---"
	else
		echo "--- $f: empty or missing"
	fi
}

vm_start() {
	local name=${1:-}
	shift
	vm_start_bare "$name" -name "guest=$name" "$@"
}

vm_wait_exit() {
	local name=$1 timeout=${2:-15} pid i
	pid=$(vm_pid "$name") || return 1
	for ((i = 0; i < timeout * 10; i++)); do
		if ! _hu_pid_alive "$pid"; then
			return 0
		fi
		sleep 0.1
	done
	echo "helpers: QEMU $pid (VM '$name') still running after ${timeout}s" >&2
	return 1
}

# --- serial console -------------------------------------------------------------------------

# Complete lines of the serial log, CRs stripped; an unterminated last line is left out
# (it may be half of "tick 12").
_hu_serial_lines() {
	local f=$T/$1.serial
	[[ -s "$f" ]] || return 0
	if [[ -z "$(tail -c 1 "$f")" ]]; then
		tr -d '\r' <"$f"
	else
		sed '$d' "$f" | tr -d '\r'
	fi
}

vm_last_tick() {
	_hu_need_t || return 1
	_hu_serial_lines "$1" | awk '
		/^tick [0-9]+$/ { n = $2 + 0; if (n > max) max = n }
		END { print max + 0 }'
}

vm_boot_count() {
	_hu_need_t || return 1
	_hu_serial_lines "$1" | grep -c '^BOOT [^ ]' || true
}

vm_boot_tokens() {
	_hu_need_t || return 1
	_hu_serial_lines "$1" | sed -n 's/^BOOT \([^ ]*\)$/\1/p'
}

# A bound, never an assertion: at least HU_MIN_WAIT seconds (300), since a guest that boots in
# seconds on a quiet machine took over 60 s to its first tick at load 12-20 on 2 cores.
vm_wait_tick() {
	local name=${1:-} want=${2:-} timeout=${3:-60}
	_hu_need_t || return 1
	if [[ ! "$want" =~ ^[0-9]+$ ]]; then
		echo "usage: vm_wait_tick NAME N [TIMEOUT_S]" >&2
		return 1
	fi
	((timeout >= ${HU_MIN_WAIT:-300})) || timeout=${HU_MIN_WAIT:-300}
	local start=$SECONDS last=0
	while :; do
		last=$(vm_last_tick "$name")
		((last >= want)) && return 0
		if ((SECONDS - start >= timeout)); then
			local state="not running"
			vm_alive "$name" && state="running (pid $(vm_pid "$name"))"
			echo "helpers: VM '$name' did not reach tick $want within ${timeout}s (last tick $last; QEMU $state)" >&2
			_hu_tail "$T/$name.serial" 15 >&2
			_hu_tail "$T/$name.log" 10 >&2
			return 1
		fi
		sleep 0.2
	done
}

# --- QMP ------------------------------------------------------------------------------------

_hu_sock() {
	local target=$1 s
	if [[ "$target" == */* ]]; then
		printf '%s\n' "$target"
	elif [[ -s "$T/$target.qmpsock" ]]; then
		read -r s <"$T/$target.qmpsock"
		printf '%s\n' "$s"
	elif [[ -S "$T/$target.sock" && ! -S "$T/$target.qmp" ]]; then
		printf '%s\n' "$T/$target.sock"
	else
		printf '%s\n' "$T/$target.qmp"
	fi
}

qmp() {
	if (($# < 2)); then
		echo "usage: qmp NAME_OR_SOCKET JSON_COMMAND | qmp NAME_OR_SOCKET COMMAND [ARGS_JSON]" >&2
		return 2
	fi
	local sock
	sock=$(_hu_sock "$1") || return 1
	shift
	python3 "$HU_QMP_PY" "$sock" "$@"
}

# json_get JSONTEXT PYEXPR: j is the parsed document; strings print raw, the rest as JSON.
#   json_get "$out" 'j["status"]'      json_get "$out" 'len(j)'
json_get() {
	python3 -c '
import json, sys
try:
    j = json.loads(sys.argv[1])
except ValueError as e:
    sys.exit("json_get: not JSON (%s): %r" % (e, sys.argv[1][:200]))
try:
    v = eval(sys.argv[2], {"json": json}, {"j": j})
except Exception as e:
    sys.exit("json_get: %s failed on %s: %r" % (sys.argv[2], sys.argv[1][:200], e))
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2"
}

vm_status() {
	local out
	out=$(qmp "$1" '{"execute":"query-status"}') || { echo "$out" >&2; return 1; }
	json_get "$out" 'j["status"]'
}

vm_wait_status() {
	local name=$1 want=$2 timeout=${3:-30} start=$SECONDS st=
	while :; do
		st=$(vm_status "$name" 2>/dev/null) && [[ "$st" == "$want" ]] && return 0
		if ((SECONDS - start >= timeout)); then
			echo "helpers: VM '$name' not '$want' within ${timeout}s (status: ${st:-no answer})" >&2
			return 1
		fi
		sleep 0.1
	done
}

vm_wait_migrate() {
	local name=$1 timeout=${2:-60} start=$SECONDS out st=
	while :; do
		if out=$(qmp "$name" '{"execute":"query-migrate"}' 2>&1); then
			st=$(json_get "$out" 'j.get("status", "")')
			case "$st" in
			completed) return 0 ;;
			failed | cancelled)
				echo "helpers: migration of VM '$name' $st: $out" >&2
				return 1
				;;
			esac
		fi
		if ((SECONDS - start >= timeout)); then
			echo "helpers: migration of VM '$name' not completed within ${timeout}s (last: ${out:-none})" >&2
			return 1
		fi
		sleep 0.1
	done
}

# --- cleanup --------------------------------------------------------------------------------

# Pids of qemu-system-* processes whose argv mentions "$T/" (the trailing slash keeps
# .../test/1 from matching .../test/10). QEMUs the product under test starts with the same
# argv are included. Bash builtins only, no fork per process.
_hu_our_qemus() {
	local d pid a
	local -a argv
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
		mapfile -d '' -t argv 2>/dev/null <"$d/cmdline" || continue
		((${#argv[@]})) || continue
		[[ "${argv[0]##*/}" == qemu-system-* ]] || continue
		for a in "${argv[@]:1}"; do
			if [[ "$a" == *"$T/"* ]]; then
				printf '%s\n' "$pid"
				break
			fi
		done
	done
}

cleanup_vms() {
	[[ -n "${T:-}" ]] || return 0
	local pid i left
	local -a pids
	mapfile -t pids < <(_hu_our_qemus)
	((${#pids[@]})) || return 0
	echo "cleanup_vms: SIGKILL ${pids[*]}" >&2
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 100; i++)); do
		left=0
		for pid in "${pids[@]}"; do
			if _hu_pid_alive "$pid"; then
				left=1
			fi
		done
		((left)) || return 0
		sleep 0.05
	done
	echo "cleanup_vms: still alive after SIGKILL: $(for p in "${pids[@]}"; do _hu_pid_alive "$p" && echo "$p"; done)" >&2
	return 1
}

hu_teardown() {
	local rc=0
	cleanup_vms || rc=1
	if [[ -n "${HU_SHORT_TMP:-}" && -d "$HU_SHORT_TMP" && "$HU_SHORT_TMP" == /tmp/hu.* ]]; then
		# keep the small logs where bats keeps the test's files, drop RAM/state files
		cp "$HU_SHORT_TMP"/*.serial "$HU_SHORT_TMP"/*.log "$HU_SHORT_TMP"/*.cmdline \
			"$BATS_TEST_TMPDIR"/ 2>/dev/null
		rm -rf "$HU_SHORT_TMP"
	fi
	return $rc
}

teardown() {
	hu_teardown
}

# --- additions for the product tests (10-*.bats ... 19-*.bats) ------------------------------
#   vm_start_bare NAME [QEMU_ARG...]    like vm_start, but without "-name guest=NAME" (pass your
#                                       own -name, or none); same files in $T
#   qemu_pids_with STRING               pids of qemu-system-* (by exe basename or argv[0]) whose
#                                       argv contains STRING, one per line
#   qemu_count_with STRING              how many of them
#   vm_wait_ticking NAME [N=3] [TIMEOUT_S=30]  wait until the tick counter moved N past its
#                                       current value (the guest really runs)
#   vm_not_ticking NAME [SECONDS=1.5]   true if the counter did not move during SECONDS
#   plan_vm JSON NAME KEY               one field of VM NAME in plan/status --json output
#   listener_pid PATH                   the pid listening on unix socket PATH (SO_PEERCRED)
#   hu_fs_type PATH                     filesystem type of PATH (stat -f), e.g. ext2/ext3, tmpfs

vm_start_bare() {
	local name=${1:-}
	_hu_need_t && _hu_check_name "$name" || return 1
	shift
	guest_build || return 1
	local pidf=$T/$name.pid
	rm -f "$pidf" "$T/$name.lastpid"
	# shellcheck disable=SC2054 # commas are QEMU option syntax
	local -a argv=(
		"$QEMU" -machine pc,accel=tcg -cpu max -m "$HU_VM_MEM" -smp 1 -nodefaults -display none
		-kernel "$GUEST_DIR/vmlinuz" -initrd "${HU_VM_INITRD:-$GUEST_DIR/initramfs.cpio.gz}"
		-append "$HU_VM_APPEND"
		-chardev "file,id=ser0,path=$T/$name.serial,append=on" -serial chardev:ser0
		-pidfile "$pidf"
		"$@"
	)
	local a
	rm -f "$T/$name.qmpsock"
	for a in "$@"; do
		case "$a" in
		*"$T/$name.qmp"*) printf '%s\n' "$T/$name.qmp" >"$T/$name.qmpsock" ;;
		*"$T/$name.sock"*) [[ -e "$T/$name.qmpsock" ]] || printf '%s\n' "$T/$name.sock" >"$T/$name.qmpsock" ;;
		esac
	done
	printf '%q ' "${argv[@]}" >"$T/$name.cmdline"
	echo >>"$T/$name.cmdline"
	echo "=== $(date '+%T.%N') vm_start_bare ${argv[*]}" >>"$T/$name.log"
	"${argv[@]}" </dev/null >>"$T/$name.log" 2>&1 3>&- 4>&- &
	local qpid=$! i
	disown "$qpid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		if [[ -s "$pidf" ]]; then
			cp "$pidf" "$T/$name.lastpid"
			return 0
		fi
		if ! _hu_pid_alive "$qpid" && [[ ! -s "$pidf" ]]; then
			echo "helpers: QEMU for VM '$name' exited during startup" >&2
			_hu_tail "$T/$name.log" 20 >&2
			return 1
		fi
		sleep 0.05
	done
	echo "helpers: QEMU for VM '$name' wrote no pidfile within 10 s" >&2
	_hu_tail "$T/$name.log" 20 >&2
	return 1
}

qemu_pids_with() {
	local needle=$1 d pid a
	local -a argv
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		mapfile -d '' -t argv 2>/dev/null <"$d/cmdline" || continue
		((${#argv[@]})) || continue
		[[ "${argv[0]##*/}" == qemu-system-* ]] || continue
		_hu_pid_alive "$pid" || continue
		for a in "${argv[@]:1}"; do
			if [[ "$a" == *"$needle"* ]]; then
				printf '%s\n' "$pid"
				break
			fi
		done
	done
}

qemu_count_with() {
	local n
	n=$(qemu_pids_with "$1" | wc -l)
	printf '%s\n' "$n"
}

vm_wait_ticking() {
	local name=$1 n=${2:-3} timeout=${3:-30} last
	last=$(vm_last_tick "$name") || return 1
	vm_wait_tick "$name" $((last + n)) "$timeout"
}

# `run --no-reboot` of one VM: it succeeds, the guest ticks on from where it was and never
# booted again. Leaves run's $status and $output for further checks.
# shellcheck disable=SC2154 # bats' run sets status and output
vm_roundtrip_no_reboot() {
	local name=$1 t
	t=$(vm_last_tick "$name") || return 1
	run "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm "$name"
	echo "$output"
	[ "$status" -eq 0 ] || return 1
	vm_wait_tick "$name" $((t + 3)) 120 || return 1
	[ "$(vm_boot_count "$name")" -eq 1 ]
}

vm_not_ticking() {
	local name=$1 secs=${2:-1.5} before after
	before=$(vm_last_tick "$name")
	sleep "$secs"
	after=$(vm_last_tick "$name")
	if [[ "$before" != "$after" ]]; then
		echo "helpers: VM '$name' ticked from $before to $after in ${secs}s" >&2
		return 1
	fi
}

# Every "tick N" line of VM NAME's serial log is the one before plus 1: no gap, no repeat.
vm_ticks_gapless() { # NAME
	_hu_serial_lines "$1" | awk '/^tick [0-9]+$/ { n = $2 + 0; if (seen && n != last + 1) { print "gap: " last " -> " n; bad = 1 } last = n; seen = 1 }
		END { exit bad }'
}

# After a prelaunch, done or rolled back: exactly one QEMU runs VM NAME, as PID; its pidfile
# (T/NAME.pid) and its sockets T/NAME.qmp and T/NAME.SUFFIX for each SUFFIX given are its; no
# name is left aside (moved paths, cpr-transfer sockets); the guest ticks on from where it was,
# no tick lost or repeated, never booted again.
vm_runs_once() { # NAME PID [SUFFIX...]
	local v=$1 pid=$2 t s
	shift 2
	[ "$(qemu_pids_with "$T/$v.")" = "$pid" ]
	[ "$(cat "$T/$v.pid")" = "$pid" ]
	for s in qmp "$@"; do
		[ "$(listener_pid "$T/$v.$s")" = "$pid" ]
	done
	[ "$(vm_status "$v")" = running ]
	[ -z "$(find "$T" -maxdepth 1 \( -name '*.hu-prelaunch' -o -name '*.hu-cpr' -o -name '*.hu-mig' \))" ]
	t=$(vm_last_tick "$v")
	vm_wait_tick "$v" $((t + 2)) 120
	vm_ticks_gapless "$v"
	[ "$(vm_boot_count "$v")" -eq 1 ]
}

# A prelaunch of VM NAME that fails for real at HOW (HU_TEST_PRELAUNCH_FAIL, HACKING.md): run
# exits 1 saying the old QEMU runs on, and it does, as OLD_PID with SUFFIX sockets (vm_runs_once).
# shellcheck disable=SC2154 # bats' run sets status, output and stderr
prelaunch_fails_old_runs_on() { # HOW NAME OLD_PID [SUFFIX...]
	local how=$1 v=$2 old=$3
	shift 3
	run --separate-stderr env HU_TEST_PRELAUNCH_FAIL="$how" "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm "$v"
	echo "$how: $stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"the old QEMU runs on"* ]]
	vm_runs_once "$v" "$old" "$@"
	run --separate-stderr hu status --json
	[[ "$(json_get "$output" '[v["state"] for v in j["vms"]]')" =~ ^\[\"(resumed|running)\"\]$ ]]
}

# host-upgrade killed by SIGKILL at STEP of VM NAME's prelaunch (HU_TEST_PRELAUNCH_DIE), then
# abort. An abort that cannot tell yet which QEMU has the guest (the new one's QMP not up) is
# run again, once a second, at most TRIES times (default 1): it must converge, never guess.
# shellcheck disable=SC2154 # bats' run sets status, output and stderr
prelaunch_die_then_abort() { # STEP NAME [TRIES]
	local try
	run --separate-stderr env HU_TEST_PRELAUNCH_DIE="$1" "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm "$2"
	echo "$1: $stderr"
	[ "$status" -eq 137 ]
	for ((try = 1; try <= ${3:-1}; try++)); do
		run --separate-stderr hu abort
		echo "abort $try: $status $stderr"
		[ "$status" -eq 0 ] && return 0
		[[ "$stderr" == *"cannot tell which QEMU has the guest"* ]]
		sleep 1
	done
	return 1
}

# The pid of the process listening on unix socket PATH (SO_PEERCRED of a connection).
listener_pid() {
	python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
print(struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0])' "$1"
}

plan_vm() {
	json_get "$1" "[v for v in j['vms'] if v['name'] == '$2'][0]['$3']"
}

hu_fs_type() {
	stat -f -c %T "$1"
}

# A suffix for VM names, unique per bats run: discovery sees every QEMU on the host, so two
# runs of the suite at the same time must not give their VMs the same names.
#   vm=r10a-$HU_RUN_ID
if [[ -z "${HU_RUN_ID:-}" ]]; then
	HU_RUN_ID=${BATS_RUN_TMPDIR:-}
	HU_RUN_ID=${HU_RUN_ID##*-}
	[[ "$HU_RUN_ID" =~ ^[A-Za-z0-9]{1,12}$ ]] || HU_RUN_ID=p${BATS_ROOT_PID:-$$}
fi

# --- the preamble every test file shares ----------------------------------------------------
# A test file has its shebang, a comment on what it proves, the shellcheck directives of its
# own (those all files share are in tests/bats/.shellcheckrc), `load helpers`, and then only
# what is its own (HU_VM_MEM, its VM names, a setup/teardown that does more). From here:
#   bats_require_minimum_version 1.5.0   (run --separate-stderr, run -N)
#   HU_BIN        the binary under test (tests/run-tests sets it: BUILD/host-upgrade)
#   SHIM          the LD_PRELOAD kexec shim of the same build (tests/fake/kexec-shim.c)
#   hu_need_bin   skip the test if HU_BIN was not built
#   hu_need_shim  skip the test if SHIM was not built: no shim, no test (the real kexec
#                 syscall must never run on this machine)
#   hu_setup      hu_need_bin; S=$T/state (the test's state dir, not created)
#   setup()       { hu_setup; }. A file that needs more defines its own setup after
#                 `load helpers` and calls hu_setup from it (as with teardown/hu_teardown).
#   hu VERB ARGS  host-upgrade VERB --state-dir "$S" ARGS...
bats_require_minimum_version 1.5.0

HU_BIN=${HU_BIN:-$BATS_TEST_DIRNAME/../../build/host-upgrade}
SHIM=${SHIM:-${HU_BUILD_DIR:-$BATS_TEST_DIRNAME/../../build}/tests/libfake-kexec.so}
hu_need_bin() { [ -x "$HU_BIN" ] || skip "no $HU_BIN (run make)"; }
hu_need_shim() { [ -f "$SHIM" ] || skip "no $SHIM (run make check)"; }
hu_setup() {
	hu_need_bin
	S=$T/state
}
setup() {
	hu_setup
}
hu() {
	local verb=$1
	shift
	"$HU_BIN" "$verb" --state-dir "$S" "$@"
}
