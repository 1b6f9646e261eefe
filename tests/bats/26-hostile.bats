#!/usr/bin/env bats
# Root on a shared host (#15): what a local user controls — processes named qemu-system-*,
# the sockets their argv names, files in their own directories — must not make host-upgrade
# hang, crash, or write where it should not. The hostile part runs as a real unprivileged
# user (nobody, through setpriv), in a directory of its own under /tmp ($U, since the test's
# own directory is not reachable by other users). Every process a test starts is ended by
# its pid in teardown, also when the test fails.

load helpers

HU_VM_MEM=128M

setup() {
	hu_setup
	getent passwd nobody >/dev/null && getent group nogroup >/dev/null || skip "no user nobody / group nogroup"
	command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
	U=$(mktemp -d /tmp/hu-h26.XXXXXX)
	chmod 0755 "$U"
	chown nobody:nogroup "$U"
	PIDS=$BATS_TEST_TMPDIR/hostile.pids
}

teardown() {
	local pid
	if [[ -s "$PIDS" ]]; then
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
	fi
	[[ -n "${U:-}" && "$U" == /tmp/hu-h26.* ]] && rm -rf "$U"
	hu_teardown
}

# as_user CMD...: CMD as nobody:nogroup, no supplementary groups
as_user() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

# The version-3 fixture manifest (tests/fixtures/status) with PYCODE applied to j, into $S.
fixture_manifest() {
	mkdir -m 0700 "$S"
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(j, sys.stdout, indent=1)
' "$BATS_TEST_DIRNAME/../fixtures/status/manifest.json" "$1" >"$S/manifest.json"
	chmod 0600 "$S/manifest.json"
}

# early_boot: the initrd side on $S (as $T + /state), /proc/cmdline saying a restore is
# pending, everything it writes under $T.
early_boot() {
	HU_FAKE_CMDLINE="console=ttyS0 hu.restore=1" LD_PRELOAD=$SHIM "$HU_BIN" early-boot \
		--state-dir /state --root "$T" --no-modules --wait 1 \
		--run-dir "$T/run" --wants-dir "$T/wants" --dropin-dir "$T/dropin"
}

# Case 5. No unprivileged part: the manifest is root's. A pmem/DAX medium without its device
# (a damaged manifest) crashed early-boot; now the loader refuses it like any corrupt one.
@test "case 5: a devdax medium with \"device\": null is a corrupt manifest: early-boot and status say so, nothing lost" {
	hu_need_shim
	fixture_manifest '
v = j["vms"][0]
v["state"] = "checkpointed"
v["memdevs"][0]["medium"]["device"] = None
'
	cp "$S/manifest.json" "$T/bad.json"
	run --separate-stderr early_boot
	echo "early-boot: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"host-upgrade: early-boot: "*"manifest"*"corrupt"* ]]
	cmp "$T/bad.json" "$S/manifest.json"
	# the restore unit still runs, and says the same
	[ -L "$T/wants/host-upgrade-restore.service" ]
	run --separate-stderr hu status
	echo "status: status $status, stderr [$stderr]"
	[ "$status" -eq 1 ]
	[[ "$stderr" == "host-upgrade: status: "*manifest*corrupt* ]]
	cmp "$T/bad.json" "$S/manifest.json"
}
