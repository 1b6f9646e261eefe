#!/usr/bin/env bats
# A "QEMU" whose QMP socket answers garbage, something that is not QMP, or nothing at all:
# plan reports it blocked with the reason (it is never skipped), and checkpoint refuses
# without stopping the real VM next to it.
# The fake is python3 copied to $T/qemu-system-x86_64 (discovery goes by the executable's
# name), running $T/fake.py with a QEMU-like command line.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	cp /usr/bin/python3 "$T/qemu-system-x86_64"
	cat >"$T/fake.py" <<'PY'
import os, socket, sys, threading, time
mode = os.environ["FAKE_MODE"]
path = None
for i, a in enumerate(sys.argv):
    if a == "-qmp":
        path = sys.argv[i + 1].split(",")[0][len("unix:"):]
GREETING = b'{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}\r\n'
def serve(c):
    try:
        if mode == "garbage":
            c.sendall(b"}}} \xff\xfe this is not JSON ]]]\r\n")
        elif mode == "not-qmp":
            c.sendall(b'{"hello": "I am not QEMU"}\r\n')
        elif mode == "greeting-garbage":
            c.sendall(GREETING)
            c.recv(4096)
            c.sendall(b'{"return": {}, "id": \x01\x02 garbage\r\n')
        elif mode == "flood":
            c.sendall(b'{"QMP": "')
            chunk = b"a" * 65536
            while True:
                c.sendall(chunk)
        # "silent": say nothing
        time.sleep(3600)
    except OSError:
        pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
open(path + ".ready", "w").close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
}

teardown() {
	local f pid
	for f in "$BATS_TEST_TMPDIR"/fake-*.pid; do
		[[ -s "$f" ]] || continue
		read -r pid <"$f"
		[[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null
	done
	hu_teardown
}

# start_fake NAME MODE: a fake QEMU named NAME whose QMP socket behaves as MODE
start_fake() {
	local name=$1 mode=$2 i
	FAKE_MODE=$mode "$T/qemu-system-x86_64" "$T/fake.py" -name "guest=$name" \
		-qmp "unix:$T/$name.qmp,server=on,wait=off" </dev/null >"$T/$name.log" 2>&1 3>&- 4>&- &
	echo $! >"$BATS_TEST_TMPDIR/fake-$name.pid"
	disown $! 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		[[ -e "$T/$name.qmp.ready" ]] && return 0
		sleep 0.05
	done
	echo "fake $name did not come up" >&2
	cat "$T/$name.log" >&2
	return 1
}

@test "plan blocks a VM whose QMP is garbage, not QMP, silent or endless; checkpoint leaves the real VM running" {
	local R=r15-$HU_RUN_ID mode name pid0 reason
	local -a modes=(garbage not-qmp greeting-garbage silent flood)
	local -A why=(
		[garbage]="malformed JSON"
		[not-qmp]="does not speak QMP"
		[greeting-garbage]="malformed JSON"
		[silent]="no answer in time"
		[flood]="larger than the 4 MiB limit"
	)
	vm_start $R $(qmp_arg $R)
	for mode in "${modes[@]}"; do
		start_fake "f15-$mode-$HU_RUN_ID" "$mode"
	done
	vm_wait_tick $R 2 60
	pid0=$(vm_pid $R)

	for mode in "${modes[@]}"; do
		name=f15-$mode-$HU_RUN_ID
		# discovery lists it (never skipped) and says why it is blocked
		run --separate-stderr hu plan --json --timeout 2 --vm "$name"
		echo "$mode: $output"
		[ "$status" -eq 1 ]
		[ "$(json_get "$output" 'j["ok"]')" = false ]
		reason=$(plan_vm "$output" "$name" blockers)
		[[ "$reason" == *"QMP"* && "$reason" == *"$T/$name.qmp"* ]]
		[[ "$reason" == *"${why[$mode]}"* ]]

		# next to a healthy VM: only the fake is blocked
		run --separate-stderr hu plan --json --timeout 2 --vm "$name" --vm $R
		[ "$status" -eq 1 ]
		[ "$(plan_vm "$output" $R blockers)" = '[]' ]
		[[ "$(plan_vm "$output" "$name" blockers)" == *"${why[$mode]}"* ]]

		run --separate-stderr hu checkpoint --timeout 2 --vm "$name" --vm $R
		echo "$stderr"
		[ "$status" -eq 1 ]
		[[ "$stderr" == *"$name"*"${why[$mode]}"* ]]
		[ "$(vm_pid $R)" = "$pid0" ]
		[ "$(vm_status $R)" = running ]
		[ ! -e "$S/$R.state" ]
		# the fake was not harmed either (and it is still the only process of its name)
		_hu_pid_alive "$(cat "$BATS_TEST_TMPDIR/fake-$name.pid")"
	done
	vm_wait_ticking $R 2 20
	[ "$(qemu_count_with "$T/$R.")" -eq 1 ]
	[ "$(vm_boot_count $R)" -eq 1 ]
	# nothing was checkpointed
	run --separate-stderr hu status --json
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" '[v["name"] for v in j["vms"] if v["state"] != "running"]')" = '[]' ]
}
