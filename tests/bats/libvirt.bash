# shellcheck shell=bash
# A real libvirtd for the 6x-libvirt tests (docs/design/libvirt.md §9), started by the test
# file itself: no systemd as PID 1 here, so `virtlogd -d` and `libvirtd -d`, stopped by PID.
#
#   load helpers
#   load libvirt    # defines setup_file, setup, teardown and teardown_file:
#   setup_file()    { lv_setup_file; }     # skips the file without libvirtd
#   teardown_file() { lv_teardown_file; }
#   setup()         { lv_setup; }          # per test: S, and a clean state dir
#   teardown()      { lv_teardown; }       # (replaces helpers.bash's)
# A file that needs its own defines them after `load libvirt` and calls these.
#
# One libvirtd per machine: a lock (/run/lock/hu-libvirt-test) is held from lv_setup_file to
# lv_teardown_file, so two test files never run two daemons. Only what the file made is
# removed: its domains (destroyed, undefined), the hook it installed, the two daemons by PID.
# The hook is the real one (libvirt/host-upgrade-hook.in), installed before libvirtd starts
# (a hook added later is only read at SIGHUP), pointed at this build and this file's state dir.
#
#   lv_define NAME [DEVICES_XML [MEMORY_BACKING_XML]]
#                                define a persistent TCG domain (128 MiB, file-backed shared RAM,
#                                direct kernel boot of the busybox guest); its serial log is
#                                $LVD/NAME.serial, linked as $T/NAME.serial for vm_last_tick & co.;
#                                $LV_QEMU_COMMANDLINE, if set, is added (a <qemu:commandline>)
#   lv_start NAME                virsh start, then wait for tick 2
#   lv_pid NAME                  libvirt's pid of its QEMU
#   lv_wait_boots NAME N         wait until the guest printed N BOOT lines
#   lv_restart_libvirtd          restart our libvirtd as after a boot (autostart runs again)
#   lv_state NAME                virsh domstate (running, paused, shut off, ...)
#   virsh ARGS...                virsh -c qemu:///system
# Exports: LVD (the file's world-readable dir: guest kernel, initrd, serial logs), SF (the
# file's state dir, also the hook's), S (= SF, for `hu`).

LV_LOCK=/run/lock/hu-libvirt-test
LV_HOOK=/etc/libvirt/hooks/qemu.d/host-upgrade

virsh() { command virsh -q -c qemu:///system "$@"; }

_lv_pid_alive() {
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ "${stat%% *}" != Z && "${stat%% *}" != X ]]
}

# Stop a daemon we started, by its pid; wait for it to be gone (or a zombie: late reaping).
_lv_stop_pid() {
	local pid=$1 i
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		_lv_pid_alive "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# A live (not zombie: PID 1 reaps late here) process of that name?
_lv_running() {
	local p
	for p in $(pgrep -x "$1"); do
		if _lv_pid_alive "$p"; then return 0; fi
	done
	return 1
}

# The pid of the daemon just started (its pid file, and that process is that daemon).
_lv_record_pid() {
	local i pid comm
	for ((i = 0; i < 300; i++)); do
		pid=$(cat "/run/$1.pid" 2>/dev/null) || pid=
		if [[ "$pid" =~ ^[0-9]+$ ]] && comm=$(cat "/proc/$pid/comm" 2>/dev/null) && [ "$comm" = "$1" ]; then
			echo "$pid" >"$LV_STATE/$1.pid"
			return 0
		fi
		sleep 0.1
	done
	echo "$1 did not write /run/$1.pid within 30 s" >&2
	return 1
}

lv_setup_file() {
	if [ ! -x /usr/sbin/libvirtd ] || [ ! -x /usr/sbin/virtlogd ]; then skip "no libvirtd (scripts/install-deps)"; fi
	[ -x "$HU_BIN" ] || skip "no $HU_BIN (run make)"
	"$HU_BIN" libvirt-hook --help >/dev/null 2>&1 || skip "host-upgrade built without libvirt"
	export LV_STATE=$BATS_FILE_TMPDIR/lv
	mkdir -p "$LV_STATE"
	exec 8>"$LV_LOCK"
	flock -w 900 8 || skip "another test holds $LV_LOCK for 15 min"
	if _lv_running libvirtd || _lv_running virtqemud || _lv_running virtlogd; then
		exec 8>&-
		skip "a libvirtd not started by this test runs already"
	fi
	if [ -e "$LV_HOOK" ]; then
		exec 8>&-
		skip "$LV_HOOK exists (installed host-upgrade?): not replaced by a test"
	fi
	LVD=$(mktemp -d /tmp/hu-lv.XXXXXX)
	chmod 0755 "$LVD"
	export LVD SF=$LVD/state
	echo "$LVD" >"$LV_STATE/dir"
	guest_build
	cp "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initramfs.cpio.gz" "$LVD/"
	chmod 0644 "$LVD/vmlinuz" "$LVD/initramfs.cpio.gz"
	if [ ! -d /etc/libvirt/hooks/qemu.d ]; then
		mkdir -p /etc/libvirt/hooks/qemu.d && touch "$LV_STATE/made-hookdir"
	fi
	if [ ! -d /etc/libvirt/qemu/autostart ]; then touch "$LV_STATE/no-autostart-dir"; fi
	sed -e "s|@SBINDIR@/host-upgrade|$HU_BIN|" -e "s|@HOOK_OPTIONS@|--state-dir $SF |" \
		"$BATS_TEST_DIRNAME/../../libvirt/host-upgrade-hook.in" >"$LV_HOOK"
	chmod 0755 "$LV_HOOK"
	touch "$LV_STATE/installed-hook"
	# No daemon runs (checked above): a pid file left by a crashed run names some
	# other process now, and teardown would kill it. Record only a pid that is the
	# daemon we started.
	rm -f /run/virtlogd.pid /run/libvirtd.pid
	/usr/sbin/virtlogd -d 8>&- || return 1
	_lv_record_pid virtlogd || return 1
	/usr/sbin/libvirtd -d 8>&- || return 1
	_lv_record_pid libvirtd || return 1
	local i
	for ((i = 0; i < 120; i++)); do
		virsh version >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	echo "libvirtd did not answer within 60 s" >&2
	return 1
}

lv_teardown_file() {
	[ -n "${LV_STATE:-}" ] && [ -d "$LV_STATE" ] || return 0
	local d uuid
	[ -s "$LV_STATE/dir" ] && LVD=$(cat "$LV_STATE/dir")
	if [ -s "$LV_STATE/domains" ]; then
		while read -r d uuid; do
			virsh destroy "$d" >/dev/null 2>&1 || true
			virsh undefine "$d" >/dev/null 2>&1 || true
			if [[ "$uuid" =~ ^[0-9a-f-]{36}$ ]]; then rm -rf "/var/lib/libvirt/qemu/ram/.host-upgrade/$uuid"; fi
			rm -f "/etc/libvirt/qemu/autostart/$d.xml"
		done <"$LV_STATE/domains"
	fi
	rmdir /var/lib/libvirt/qemu/ram/.host-upgrade 2>/dev/null || true
	if [ -s "$LV_STATE/libvirtd.pid" ]; then _lv_stop_pid "$(cat "$LV_STATE/libvirtd.pid")"; fi
	if [ -s "$LV_STATE/virtlogd.pid" ]; then _lv_stop_pid "$(cat "$LV_STATE/virtlogd.pid")"; fi
	if [ -e "$LV_STATE/installed-hook" ]; then rm -f "$LV_HOOK"; fi
	if [ -e "$LV_STATE/made-hookdir" ]; then rmdir /etc/libvirt/hooks/qemu.d 2>/dev/null || true; fi
	if [ -e "$LV_STATE/no-autostart-dir" ]; then rmdir /etc/libvirt/qemu/autostart 2>/dev/null || true; fi
	if [ -n "${LVD:-}" ] && [[ "$LVD" == /tmp/hu-lv.* ]]; then rm -rf "$LVD"; fi
	rm -f "$LV_STATE"/*.pid "$LV_STATE/installed-hook"
	exec 8>&-
	return 0
}

lv_setup() {
	hu_need_bin
	LVD=$(cat "$LV_STATE/dir")
	SF=$LVD/state S=$LVD/state
	export LVD SF S
	# Each test starts from no checkpoint (markers are under the state dir too).
	rm -rf "$S"
}

# Destroy (not undefine) the test's domains, so the next test starts clean; keep the logs.
lv_teardown() {
	local d uuid
	if [ -s "$LV_STATE/domains" ]; then
		while read -r d uuid; do
			virsh destroy "$d" >/dev/null 2>&1 || true
			cp "$LVD/$d.serial" "$BATS_TEST_TMPDIR/" 2>/dev/null || true
		done <"$LV_STATE/domains"
	fi
	if [ -d "$S" ]; then cp "$S"/*.json* "$BATS_TEST_TMPDIR/" 2>/dev/null || true; fi
	hu_teardown
}

lv_define() {
	local name=$1 extra=${2:-} mem
	# shellcheck disable=SC2016
	mem=${3-"<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>"}
	_hu_check_name "$name" || return 1
	: >"$LVD/$name.serial"
	ln -sf "$LVD/$name.serial" "$T/$name.serial"
	cat >"$LVD/$name.xml" <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  $mem
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$LVD/vmlinuz</kernel>
    <initrd>$LVD/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 quiet no_timer_check</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='$LVD/$name.serial' append='on'/><target port='0'/></serial>
    <console type='file'><source path='$LVD/$name.serial' append='on'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
    $extra
  </devices>
  ${LV_QEMU_COMMANDLINE:-}
</domain>
XML
	# Defined by an earlier test of this file: ours, off (lv_teardown destroyed it); anew.
	if grep -q "^$name " "$LV_STATE/domains" 2>/dev/null; then
		virsh destroy "$name" >/dev/null 2>&1 || true
		virsh undefine "$name" >/dev/null 2>&1 || true
		sed -i "/^$name /d" "$LV_STATE/domains"
	fi
	virsh define "$LVD/$name.xml" >/dev/null || return 1
	echo "$name $(virsh domuuid "$name")" >>"$LV_STATE/domains"
}

lv_start() {
	virsh start "$1" >/dev/null || return 1
	vm_wait_tick "$1" 2 120
}

# lv_wait_boots NAME N [TIMEOUT_S=120]: until the serial log shows N BOOT lines.
lv_wait_boots() {
	local start=$SECONDS
	while (($(vm_boot_count "$1") < $2)); do
		if ((SECONDS - start >= ${3:-120})); then
			echo "libvirt: $1 did not boot $2 times within ${3:-120}s" >&2
			return 1
		fi
		sleep 0.5
	done
}

# lv_restart_libvirtd: stop the daemon this file started and start it again, as after a boot
# (/run/libvirt/qemu/autostarted removed: it autostarts again). Waits until it answers and
# its autostart pass is over (it writes that file again).
lv_restart_libvirtd() {
	local i
	_lv_stop_pid "$(cat "$LV_STATE/libvirtd.pid")"
	for ((i = 0; i < 100; i++)); do
		_lv_running libvirtd || break
		sleep 0.1
	done
	rm -f /run/libvirt/qemu/autostarted /run/libvirtd.pid
	/usr/sbin/libvirtd -d 8>&- || return 1
	_lv_record_pid libvirtd || return 1
	for ((i = 0; i < 240; i++)); do
		virsh version >/dev/null 2>&1 && [ -e /run/libvirt/qemu/autostarted ] && return 0
		sleep 0.5
	done
	echo "libvirtd did not come back (or autostart) within 120 s" >&2
	return 1
}

lv_pid() {
	local pid
	pid=$(cat "/run/libvirt/qemu/$1.pid") && [[ "$pid" =~ ^[0-9]+$ ]] || return 1
	printf '%s\n' "$pid"
}

lv_state() {
	virsh domstate "$1" | head -n1
}

setup_file() { lv_setup_file; }
teardown_file() { lv_teardown_file; }
setup() { lv_setup; }
teardown() { lv_teardown; }
