# shellcheck shell=bash
# Helpers for the Proxmox VE tests (7x-proxmox-*.bats), loaded after helpers: a Proxmox host's
# paths under $PVE (HU_PROXMOX_ROOT: /etc/pve, /var/run/qemu-server, /var/lock/qemu-server,
# /var/run/qmeventd.sock), the qmeventd stand-in (tests/fake/qmeventd.py, running the fake
# `qm cleanup` of tests/fake/qm-cleanup) and QEMUs started as qemu-server starts them
# (argv[0] /usr/bin/kvm, the QMP and qmeventd monitors, -pidfile, -daemonize), under TCG,
# i440fx, with the busybox test guest. Proxmox's own daemons do not install here.
#
#   pve_setup                 $PVE, its directories, the stand-in listening (setup calls it)
#   pve_conf N NAME [LINE..]  /etc/pve/qemu-server/N.conf
#   pve_start N NAME          conf (if none), a volume, a tap, the QEMU, the cleanup flag qm writes
#                             (PVE_MACHINE=q35: with -readconfig of a pve-q35-4.0.cfg-shaped file)
#   pve_pid N                 the pid in /var/run/qemu-server/N.pid
#   pve_argv N                that QEMU's argv, one per line
#   pve_log_has JSON_FRAGMENT [FILE]   a line of the stand-in's log (default) containing it
#   pve_wait_log FRAGMENT [TIMEOUT_S=60] [FILE]
#   pve_teardown              our QEMUs (argv[0] /usr/bin/kvm, argv mentioning $T/), the stand-in

HU_FAKE_DIR=$HU_TESTS_DIR/fake

pve_setup() {
	PVE=$T/pve
	export HU_PROXMOX_ROOT=$PVE QM_LOG=$T/pve/qm.log QM_RUNNING_WAIT=${QM_RUNNING_WAIT:-3}
	mkdir -p "$PVE/etc/pve/qemu-server" "$PVE/etc/pve/ha" "$PVE/var/run/qemu-server" \
		"$PVE/var/lock/qemu-server" "$PVE/taps" "$PVE/images"
	QMEV_LOG=$PVE/qmeventd.log
	: >"$QMEV_LOG"
	: >"$QM_LOG"
	python3 "$HU_FAKE_DIR/qmeventd.py" "$PVE/var/run/qmeventd.sock" "$QMEV_LOG" "$HU_FAKE_DIR/qm-cleanup" \
		</dev/null >>"$PVE/qmeventd.out" 2>&1 3>&- 4>&- &
	QMEV_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -S $PVE/var/run/qmeventd.sock ]] && return 0
		sleep 0.1
	done
	echo "proxmox: the qmeventd stand-in did not listen" >&2
	return 1
}

pve_conf() {
	local n=$1 name=$2
	shift 2
	{
		printf 'boot: order=scsi0\nmemory: 128\nname: %s\nonboot: 1\nscsi0: local:%s/vm-%s-disk-0.raw,size=8M\n' \
			"$name" "$n" "$n"
		local l
		for l in "$@"; do printf '%s\n' "$l"; done
	} >"$PVE/etc/pve/qemu-server/$n.conf"
}

pve_start() {
	local n=$1 name=$2 run=$PVE/var/run/qemu-server
	guest_build || return 1
	[[ -e $PVE/etc/pve/qemu-server/$n.conf ]] || pve_conf "$n" "$name"
	mkdir -p "$PVE/images/$n"
	truncate -s 8M "$PVE/images/$n/vm-$n-disk-0.raw"
	: >"$PVE/taps/tap${n}i0"
	# shellcheck disable=SC2054 # commas are QEMU option syntax
	local -a argv=(
		-name "$name,debug-threads=on" -no-shutdown
		-chardev "socket,id=qmp,path=$run/$n.qmp,server=on,wait=off" -mon "chardev=qmp,mode=control"
		-chardev "socket,id=qmp-event,path=$PVE/var/run/qmeventd.sock,reconnect-ms=5000"
		-mon "chardev=qmp-event,mode=control"
		-pidfile "$run/$n.pid" -daemonize
		-smbios "type=1,uuid=7b10d7af-b932-4c66-b2c3-3996152ec$n"
		-smp "1,sockets=1,cores=1,maxcpus=1" -nodefaults -display none
		-m 128M -object "memory-backend-file,id=ram-node0,size=128M,mem-path=$T/$name.ram,share=on"
		-machine "memory-backend=ram-node0"
		-kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initramfs.cpio.gz" -append "$HU_VM_APPEND"
		-chardev "file,id=ser0,path=$T/$name.serial,append=on" -serial chardev:ser0
		-drive "file=$PVE/images/$n/vm-$n-disk-0.raw,if=none,id=drive-scsi0,format=raw"
		-machine "hpet=off,type=${PVE_MACHINE:-pc},accel=tcg"
	)
	# qemu-server gives every q35 guest -readconfig of its pve-q35-4.0.cfg (here: the fixture of
	# the same shape), which defines 18 devices the argv does not name.
	if [[ ${PVE_MACHINE:-pc} == q35 ]]; then
		mkdir -p "$PVE/usr/share/qemu-server"
		cp "$HU_TESTS_DIR/fixtures/readconfig/q35.cfg" "$PVE/usr/share/qemu-server/pve-q35-4.0.cfg"
		argv+=(-readconfig "$PVE/usr/share/qemu-server/pve-q35-4.0.cfg")
	fi
	echo "=== $(date '+%T.%N') pve_start ${argv[*]}" >>"$T/$name.log"
	if ! (exec -a /usr/bin/kvm "$QEMU" "${argv[@]}" </dev/null >>"$T/$name.log" 2>&1 3>&- 4>&-); then
		echo "proxmox: QEMU for VM $n did not start" >&2
		_hu_tail "$T/$name.log" 20 >&2
		return 1
	fi
	# qm start writes the cleanup flag (epoch seconds) once QEMU is up.
	date +%s >"$run/$n.cleanup"
}

pve_pid() {
	local pid
	read -r pid <"$PVE/var/run/qemu-server/$1.pid" && printf '%s\n' "$pid"
}

pve_argv() {
	tr '\0' '\n' <"/proc/$(pve_pid "$1")/cmdline"
}

pve_log_has() {
	grep -q -F -- "$1" "${2:-$QMEV_LOG}"
}

pve_wait_log() {
	local frag=$1 timeout=${2:-60} file=${3:-$QMEV_LOG} start=$SECONDS
	# A bound, not an assertion: at least HU_MIN_WAIT, as vm_wait_tick (helpers.bash).
	((timeout >= ${HU_MIN_WAIT:-300})) || timeout=${HU_MIN_WAIT:-300}
	until pve_log_has "$frag" "$file"; do
		if ((SECONDS - start >= timeout)); then
			echo "proxmox: no '$frag' in $file within ${timeout}s:" >&2
			cat "$file" >&2
			return 1
		fi
		sleep 0.1
	done
}

pve_teardown() {
	local d pid a
	local -a argv pids=()
	[[ -n "${T:-}" ]] || return 0
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		mapfile -d '' -t argv 2>/dev/null <"$d/cmdline" || continue
		[[ "${argv[0]:-}" == /usr/bin/kvm ]] || continue
		for a in "${argv[@]:1}"; do
			[[ "$a" == *"$T/"* ]] && { pids+=("$pid"); break; }
		done
	done
	((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
	if [[ -n "${QMEV_PID:-}" ]]; then
		kill -TERM "$QMEV_PID" 2>/dev/null
		wait "$QMEV_PID" 2>/dev/null
	fi
	for pid in "${pids[@]}"; do
		for ((a = 0; a < 100; a++)); do _hu_pid_alive "$pid" || break; sleep 0.05; done
	done
	return 0
}

setup() {
	hu_setup
	pve_setup
}

teardown() {
	if [[ -n "${BATS_TEST_COMPLETED:-}" ]]; then :; else
		echo "--- qmeventd stand-in:" && cat "$QMEV_LOG" 2>/dev/null
		echo "--- qm cleanup:" && cat "$QM_LOG" 2>/dev/null
	fi
	pve_teardown
	hu_teardown
}
