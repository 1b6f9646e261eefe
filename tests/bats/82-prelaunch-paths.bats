#!/usr/bin/env bats
# Prelaunch (#16), every path and every spelling: each listening unix socket of the old QEMU
# (a serial port's chardev, a second monitor, -monitor unix:, -vnc unix:, a -readconfig
# chardev) is moved aside before the new QEMU binds it, so a rollback or an abort gives it
# back to the old QEMU, and a success leaves it the new QEMU's. Eligibility reads the options
# as QEMU does: a tap written as JSON, as type=tap or in a -readconfig [netdev] section.
# Real QEMU 10 (TCG), real sockets; a failed load through HU_TEST_PRELAUNCH_FAIL=load and a
# kill -9 through HU_TEST_PRELAUNCH_DIE (HACKING.md).

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	P=p82-$HU_RUN_ID
	TAPS=()
}

teardown() {
	local t
	for t in "${TAPS[@]}"; do
		ip link del "$t" 2>/dev/null || true
	done
	hu_teardown
}

# The extra listening sockets of VM NAME, besides its QMP socket and pidfile.
SOCKS=(ser mon hmp vnc cfg)

paths_args() { # NAME
	local v=$1
	printf '[chardev "cfg0"]\n  backend = "socket"\n  path = "%s"\n  server = "on"\n  wait = "off"\n' \
		"$T/$v.cfg" >"$T/$v.conf"
	echo "-chardev socket,id=ser1,path=$T/$v.ser,server=on,wait=off -serial chardev:ser1" \
		"-chardev socket,id=mon1,path=$T/$v.mon,server=on,wait=off -mon chardev=mon1,mode=control" \
		"-monitor unix:$T/$v.hmp,server,nowait -vnc unix:$T/$v.vnc -readconfig $T/$v.conf"
}

# Every path of VM NAME reaches PID, and no name is left aside.
paths_reach() { # NAME PID
	local v=$1 pid=$2 s got
	for s in qmp "${SOCKS[@]}"; do
		[ -S "$T/$v.$s" ] || { echo "$T/$v.$s: not a socket"; return 1; }
		got=$(listener_pid "$T/$v.$s") || { echo "$T/$v.$s: nobody listens"; return 1; }
		[ "$got" = "$pid" ] || { echo "$T/$v.$s: pid $got, not $pid"; return 1; }
	done
	[ "$(cat "$T/$v.pid")" = "$pid" ]
	run ls "$T"
	[[ "$output" != *hu-prelaunch* ]]
}

@test "prelaunch paths: every listening socket is the old QEMU's after a failed load and an abort, the new one's after success" {
	vm_start $P $(qmp_arg $P) $(ram_file_args $P "$T/$P.ram") $(paths_args $P)
	vm_wait_tick $P 2 240
	local old new t
	old=$(vm_pid $P)
	paths_reach $P "$old"
	run --separate-stderr hu plan --json --vm $P
	[ "$(plan_vm "$output" $P restart)" = prelaunch ]

	# The new QEMU fails its load: rolled back, the old one keeps every path.
	run --separate-stderr env HU_TEST_PRELAUNCH_FAIL=load "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P
	echo "load: $stderr"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"the old QEMU runs on"* ]]
	paths_reach $P "$old"

	# Killed once the new QEMU runs (and has bound every path): abort gives them back, the
	# -readconfig one too (the argv does not name it: the manifest does).
	run --separate-stderr env HU_TEST_PRELAUNCH_DIE=spawned "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm $P
	[ "$status" -eq 137 ]
	run --separate-stderr hu abort
	echo "abort: $stderr"
	[ "$status" -eq 0 ]
	[ "$(qemu_pids_with "$T/$P.")" = "$old" ]
	paths_reach $P "$old"
	t=$(vm_last_tick $P)
	vm_wait_tick $P $((t + 2)) 120

	run --separate-stderr hu run --no-reboot --yes --vm $P
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarted by prelaunch"* ]]
	new=$(qemu_pids_with "$T/$P.")
	[[ "$new" =~ ^[0-9]+$ ]] && [ "$new" != "$old" ]
	paths_reach $P "$new"
	t=$(vm_last_tick $P)
	vm_wait_tick $P $((t + 2)) 120
}

# A tap device of our own for case C in $TAP (deleted by teardown), or skip.
new_tap() { # C
	TAP=hu82$1${HU_RUN_ID: -6}
	ip tuntap add dev "$TAP" mode tap 2>/dev/null || skip "cannot create a tap device (ip tuntap add)"
	TAPS+=("$TAP")
}

@test "prelaunch eligibility: a tap as JSON, as type=tap and in a -readconfig [netdev] section is sequential" {
	local a=a82-$HU_RUN_ID b=b82-$HU_RUN_ID c=c82-$HU_RUN_ID ta tb tc v
	new_tap a && ta=$TAP
	new_tap b && tb=$TAP
	new_tap c && tc=$TAP
	printf '[netdev "n0"]\n  type = "tap"\n  ifname = "%s"\n  script = "no"\n  downscript = "no"\n' "$tc" >"$T/$c.conf"
	vm_start $a $(qmp_arg $a) $(ram_file_args $a "$T/$a.ram") \
		-netdev "{\"type\":\"tap\",\"id\":\"n0\",\"ifname\":\"$ta\",\"script\":\"no\",\"downscript\":\"no\"}" \
		-device virtio-net-pci,netdev=n0
	vm_start $b $(qmp_arg $b) $(ram_file_args $b "$T/$b.ram") \
		-netdev "id=n0,type=tap,ifname=$tb,script=no,downscript=no" -device virtio-net-pci,netdev=n0
	vm_start $c $(qmp_arg $c) $(ram_file_args $c "$T/$c.ram") -readconfig "$T/$c.conf" \
		-device virtio-net-pci,netdev=n0
	run --separate-stderr hu plan --json --vm $a --vm $b --vm $c
	echo "$output"
	for v in $a $b $c; do
		[ "$(plan_vm "$output" $v restart)" = sequential ]
		[[ "$(plan_vm "$output" $v restart_reason)" == *"tap network device"* ]]
	done
}
