#!/usr/bin/env bats
# Proves the test harness (helpers.bash, tests/tools/qmp.py, tests/guest/build-guest.sh)
# against real QEMU (TCG only), before any product test relies on it.
# shellcheck disable=SC2016,SC2015 # literal $ in patterns; A && B || C on purpose

load helpers

# The harness alone: it needs no host-upgrade binary (helpers' setup would skip without one).
setup() {
	:
}

teardown() {
	# decoy QEMUs that cleanup_vms must NOT kill are recorded here; kill them ourselves
	local f pid
	for f in "$BATS_TEST_TMPDIR"/decoy*.pid; do
		[[ -s "$f" ]] || continue
		read -r pid <"$f"
		[[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null || true
	done
	[[ -s "$BATS_TEST_TMPDIR/decoy-dirs" ]] && xargs rm -rf <"$BATS_TEST_TMPDIR/decoy-dirs"
	hu_teardown
}

# A cheap QEMU (no guest, -S) whose argv does not mention "$T/"; pidfile lands in $2.
start_decoy() {
	local dir=$1 pidf=$2
	mkdir -p "$dir"
	echo "$dir" >>"$BATS_TEST_TMPDIR/decoy-dirs"
	"$QEMU" -machine none,accel=tcg -S -nodefaults -display none -name guest=decoy \
		-pidfile "$dir/decoy.pid" </dev/null >/dev/null 2>&1 3>&- 4>&- &
	disown $! || true
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -s "$dir/decoy.pid" ]] && break
		sleep 0.05
	done
	cp "$dir/decoy.pid" "$pidf"
}

@test "guest image builds and is reused" {
	guest_build
	[ -s "$GUEST_DIR/vmlinuz" ]
	[ -s "$GUEST_DIR/initramfs.cpio.gz" ]
	# the initramfs has an executable /init printing BOOT and ticks
	run bash -c "zcat '$GUEST_DIR/initramfs.cpio.gz' | cpio -i --to-stdout --quiet init"
	[ "$status" -eq 0 ]
	[[ "$output" == *'echo "BOOT '* ]]
	[[ "$output" == *'echo "tick $n"'* ]]
	# second run is a no-op: outputs untouched
	local before after
	before=$(stat -c %Y.%i "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initramfs.cpio.gz")
	run "$HU_BUILD_GUEST" "$GUEST_DIR"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	after=$(stat -c %Y.%i "$GUEST_DIR/vmlinuz" "$GUEST_DIR/initramfs.cpio.gz")
	[ "$before" = "$after" ]
}

@test "qmp.py: usage errors and missing socket fail fast with status 1" {
	run python3 "$HU_QMP_PY" "$T/none.qmp"
	[ "$status" -eq 1 ]
	run env QMP_TIMEOUT=0.5 python3 "$HU_QMP_PY" "$T/none.qmp" query-status
	[ "$status" -eq 1 ]
	[[ "$output" == *"timed out"* ]]
	run python3 "$HU_QMP_PY" "$T/none.qmp" '{"execute": '
	[ "$status" -eq 1 ]
	[[ "$output" == *"bad JSON"* ]]
	run json_get '{"a":{"b":[1,2]}}' 'j["a"]["b"][1]'
	[ "$status" -eq 0 ]
	[ "$output" = 2 ]
	run json_get '{"s":"x y"}' 'j["s"]'
	[ "$output" = "x y" ]
	run json_get 'not json' 'j'
	[ "$status" -ne 0 ]
}

@test "a VM boots, ticks and answers QMP; cleanup_vms kills it and nothing else" {
	local t0=$SECONDS pid
	vm_start h1 $(qmp_arg h1)
	pid=$(vm_pid h1)
	[[ "$pid" =~ ^[0-9]+$ ]]
	vm_alive h1

	vm_wait_tick h1 3 60
	echo "# boot to tick 3: $((SECONDS - t0)) s" >&3
	[ "$(vm_boot_count h1)" -eq 1 ]
	[ "$(vm_last_tick h1)" -ge 3 ]
	[ "$(vm_boot_tokens h1 | wc -l)" -eq 1 ]

	run qmp h1 '{"execute":"query-status"}'
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["status"]')" = running ]
	[ "$(json_get "$output" 'j["running"]')" = true ]
	[ "$(vm_status h1)" = running ]
	# the socket can also be named by path, and the shorthand form works
	run qmp "$T/h1.qmp" query-name
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["name"]')" = h1 ]
	# QMP errors: status 1 and the error object
	run qmp h1 '{"execute":"no-such-command"}'
	[ "$status" -eq 1 ]
	[ "$(json_get "$output" 'j["class"]')" = CommandNotFound ]

	# the guest keeps running: ticks advance
	local last
	last=$(vm_last_tick h1)
	vm_wait_tick h1 $((last + 2)) 20

	# decoys: one outside $T, one in a sibling dir whose path has $T as a prefix
	start_decoy "$(mktemp -d /tmp/hu-decoy.XXXXXX)" "$BATS_TEST_TMPDIR/decoy1.pid"
	start_decoy "${T}0" "$BATS_TEST_TMPDIR/decoy2.pid"
	local d1 d2
	read -r d1 <"$BATS_TEST_TMPDIR/decoy1.pid"
	read -r d2 <"$BATS_TEST_TMPDIR/decoy2.pid"
	_hu_pid_alive "$d1"
	_hu_pid_alive "$d2"

	run _hu_our_qemus
	[ "$output" = "$pid" ]

	cleanup_vms
	run _hu_pid_alive "$pid"
	[ "$status" -ne 0 ]
	run vm_alive h1
	[ "$status" -ne 0 ]
	[ -z "$(_hu_our_qemus)" ]
	_hu_pid_alive "$d1"
	_hu_pid_alive "$d2"
	kill -KILL "$d1" "$d2"
}

@test "two VMs in one test get separate serial logs and sockets (mon_args)" {
	vm_start a $(qmp_arg a)
	vm_start b $(mon_args b)
	vm_wait_tick a 1 60
	vm_wait_tick b 1 60
	[ -S "$T/a.qmp" ]
	[ -S "$T/b.sock" ]
	[ "$(json_get "$(qmp a query-name)" 'j["name"]')" = a ]
	[ "$(json_get "$(qmp b query-name)" 'j["name"]')" = b ]
	[ "$(vm_boot_tokens a)" != "$(vm_boot_tokens b)" ]
	[ "$(vm_pid a)" != "$(vm_pid b)" ]
	run _hu_our_qemus
	[ "${#lines[@]}" -eq 2 ]
}

@test "vm_wait_tick fails with a clear message and the log tail" {
	vm_start slow $(qmp_arg slow)
	vm_wait_tick slow 1 60
	HU_MIN_WAIT=0 run vm_wait_tick slow 100000 1
	[ "$status" -ne 0 ]
	[[ "$output" == *"did not reach tick 100000"* ]]
	[[ "$output" == *"tick "* ]]
	[[ "$output" == *"QEMU running"* ]]
	run vm_start bad -no-such-qemu-option
	[ "$status" -ne 0 ]
	[[ "$output" == *"exited during startup"* ]]
}

@test "teardown kills our QEMUs even when a test fails (nested bats run)" {
	local inner=$BATS_TEST_TMPDIR/inner
	mkdir -p "$inner"
	cp "$BATS_TEST_DIRNAME/helpers.bash" "$inner/"
	# helpers.bash finds tools relative to itself: point it back at the real tree
	sed -i "s|^HU_TESTS_DIR=.*|HU_TESTS_DIR=$HU_TESTS_DIR|" "$inner/helpers.bash"
	# (a line starting with @test here would be taken for a test of this file by bats'
	# preprocessor, hence ${at})
	local at=@
	cat >"$inner/fail.bats" <<-EOF
		load helpers
		setup() { :; }
		${at}test "starts QEMUs then fails" {
	EOF
	cat >>"$inner/fail.bats" <<-'EOF'
			echo "$T" > "$INNER_OUT/t"
			vm_start v $(qmp_arg v)
			vm_pid v > "$INNER_OUT/pid1"
			# a QEMU the "product" starts on its own, detached, same temp dir in its argv
			( setsid "$QEMU" -machine none,accel=tcg -S -nodefaults -display none \
				-pidfile "$T/orphan.pid" </dev/null >/dev/null 2>&1 3>&- 4>&- & )
			for i in $(seq 100); do [ -s "$T/orphan.pid" ] && break; sleep 0.05; done
			cat "$T/orphan.pid" > "$INNER_OUT/pid2"
			false
		}
	EOF
	# the inner bats must not inherit this run's BATS_* variables
	run env $(compgen -e | sed -n 's/^BATS_.*/-u &/p') INNER_OUT="$inner" GUEST_DIR="$GUEST_DIR" \
		bats "$inner/fail.bats"
	[ "$status" -ne 0 ]
	echo "$output"
	[[ "$output" == *"not ok 1"* ]]
	[[ "$output" == *"cleanup_vms: SIGKILL"* ]]
	local p1 p2
	read -r p1 <"$inner/pid1"
	read -r p2 <"$inner/pid2"
	[[ "$p1" =~ ^[0-9]+$ && "$p2" =~ ^[0-9]+$ ]]
	sleep 0.2
	run _hu_pid_alive "$p1"
	[ "$status" -ne 0 ]
	run _hu_pid_alive "$p2"
	[ "$status" -ne 0 ]
}

@test "raw cpr-reboot round trip by QMP: guest continues, no cold boot" {
	local ram=$T/v.ram state=$T/v.state
	local -a args
	read -ra args <<<"$(qmp_arg v) $(ram_file_args v "$ram")"

	vm_start v "${args[@]}"
	local pid1
	pid1=$(vm_pid v)
	vm_wait_tick v 3 60
	[ -s "$ram" ]

	qmp v migrate-set-parameters '{"mode":"cpr-reboot"}'
	qmp v migrate-set-capabilities '{"capabilities":[{"capability":"x-ignore-shared","state":true}]}'
	[ "$(json_get "$(qmp v query-migrate-parameters)" 'j["mode"]')" = cpr-reboot ]
	local t0=$EPOCHREALTIME
	qmp v migrate "{\"uri\":\"file:$state\"}"
	vm_wait_migrate v 60
	echo "# checkpoint: $(awk "BEGIN{printf \"%.0f\", ($EPOCHREALTIME - $t0) * 1000}") ms, state $(stat -c %s "$state") bytes" >&3
	[ "$(vm_status v)" = postmigrate ]
	[ -s "$state" ]
	# x-ignore-shared: the state file does not hold the 256 MiB of RAM
	[ "$(stat -c %s "$state")" -lt $((16 * 1024 * 1024)) ]

	# the guest is stopped: the counter does not move
	local before
	before=$(vm_last_tick v)
	[ "$before" -ge 3 ]
	sleep 1.5
	[ "$(vm_last_tick v)" -eq "$before" ]

	qmp v quit
	vm_wait_exit v 15
	run _hu_pid_alive "$pid1"
	[ "$status" -ne 0 ]
	if [[ -e "$T/v.qmp" ]]; then echo "# note: QMP socket file left after quit" >&3; fi
	[ -s "$ram" ]

	vm_start v "${args[@]}" -incoming defer
	[ "$(vm_pid v)" != "$pid1" ]
	vm_wait_status v inmigrate 15
	# nothing has run yet
	[ "$(vm_boot_count v)" -eq 1 ]
	qmp v migrate-set-parameters '{"mode":"cpr-reboot"}'
	qmp v migrate-set-capabilities '{"capabilities":[{"capability":"x-ignore-shared","state":true}]}'
	t0=$EPOCHREALTIME
	qmp v migrate-incoming "{\"uri\":\"file:$state\"}"
	vm_wait_status v running 30
	echo "# restore (migrate-incoming -> running): $(awk "BEGIN{printf \"%.0f\", ($EPOCHREALTIME - $t0) * 1000}") ms" >&3

	vm_wait_tick v $((before + 3)) 30
	# no cold boot: still exactly one BOOT line, and the counter never restarted
	[ "$(vm_boot_count v)" -eq 1 ]
	# one read of the serial log: the guest ticks on while we look, and a tick landing
	# between a read for the last tick and a read for the lines made them disagree
	local last expect got
	got=$(_hu_serial_lines v | grep '^tick ')
	last=${got##*tick }
	[ "$last" -ge $((before + 3)) ]
	expect=$(seq 1 "$last" | sed 's/^/tick /')
	[ "$got" = "$expect" ]
}
