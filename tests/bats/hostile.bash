# shellcheck shell=bash
# The unprivileged user of the hostile-* tests (#15), loaded after helpers:
#   hostile_setup TAG   skip without user nobody / setpriv; U=a directory of nobody's under /tmp
#                       (/tmp/hu-TAG.XXXXXX: the test's own directory is not reachable by other
#                       users); PIDS=the file where a test lists the pids of what it started
#   hostile_kill        SIGKILL every pid in $PIDS and wait until they are gone; empties it
#   hostile_teardown    hostile_kill, hu_teardown, remove $U
#   as_user CMD...      CMD as nobody:nogroup, no supplementary groups
#   hostile_python NAME READY ARG...
#                       $U/qemu-system-x86_64 (a copy of python3: discovery goes by the exe's
#                       name) run by nobody in the background with ARG..., its pid in $PIDS,
#                       output in $T/NAME.out; returns once it created the file READY

hostile_setup() {
	hu_setup
	getent passwd nobody >/dev/null && getent group nogroup >/dev/null || skip "no user nobody / group nogroup"
	command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
	HOSTILE_TAG=$1
	U=$(mktemp -d "/tmp/hu-$1.XXXXXX")
	chmod 0755 "$U"
	chown nobody:nogroup "$U"
	PIDS=$BATS_TEST_TMPDIR/hostile.pids
}

hostile_kill() {
	local pid
	[[ -s "${PIDS:-}" ]] || return 0
	while read -r pid; do
		[[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null
	done <"$PIDS"
	while read -r pid; do
		[[ "$pid" =~ ^[0-9]+$ ]] || continue
		for _ in $(seq 100); do
			_hu_pid_alive "$pid" || break
			sleep 0.05
		done
	done <"$PIDS"
	: >"$PIDS"
}

hostile_teardown() {
	hostile_kill
	hu_teardown
	if [[ -n "${U:-}" && -n "${HOSTILE_TAG:-}" && "$U" == /tmp/hu-"$HOSTILE_TAG".* ]]; then
		rm -rf "$U"
	fi
}

as_user() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

hostile_python() {
	local name=$1 ready=$2 i pid
	shift 2
	[ -x "$U/qemu-system-x86_64" ] || install -o nobody -g nogroup -m 0755 /usr/bin/python3 "$U/qemu-system-x86_64"
	# setpriv itself, not as_user: a function in the background is a subshell, not the pid
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$U/qemu-system-x86_64" "$@" \
		</dev/null >"$T/$name.out" 2>&1 3>&- 4>&- &
	pid=$!
	echo "$pid" >>"$PIDS"
	disown "$pid" 2>/dev/null || true
	for ((i = 0; i < 400; i++)); do
		[[ -e "$ready" ]] && return 0
		_hu_pid_alive "$pid" || break
		sleep 0.05
	done
	echo "hostile process $name did not come up" >&2
	cat "$T/$name.out" >&2
	return 1
}

# PATH appears in STRACE_OUT (strace -e trace=open,openat,openat2) and every open of it was an
# O_PATH one: what is there was looked at, never opened for real.
only_opened_with_o_path() { # STRACE_OUT PATH
	local l n=0
	while IFS= read -r l; do
		n=$((n + 1))
		[[ "$l" == *O_PATH* ]] || { echo "opened without O_PATH: $l"; return 1; }
	done < <(grep -F "\"$2\"" "$1")
	[ "$n" -ge 1 ] || { echo "$2: no open of it in $1"; return 1; }
}
