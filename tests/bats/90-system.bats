#!/usr/bin/env bats
# The system test (tests/system/, see its README): a real kexec kernel upgrade of a
# disposable test host — Debian 12 under QEMU (TCG), legacy pmem or an emulated
# NVDIMM with labels (the devdax and fsdax-renumber scenarios), live inner VMs — one test per
# scenario, each a run of tests/system/run-host.sh asserting its verdict. The first
# test builds the cached test-host image if needed (about two minutes from scratch);
# then each scenario takes two to four minutes.
# Logs of the last run of each: build/system/check-<scenario> (a link to that run's
# directory: summary.txt, report.txt, console.log, scenario.log, results/).
#
# Skipped, with the reason, only when this machine cannot run it: not root, no
# QEMU >= 10, a tool missing (scripts/install-deps installs them all), no kernel
# in /boot, or no cached image and no way to reach the Debian mirror.
# HU_SYSTEM_TEST=0 skips it on purpose (a quick `make check` while developing).

setup_file() {
	export HU_TOP
	HU_TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
}

# Prints why this machine cannot run the system test; nothing if it can.
cannot_run() {
	local cache=${HU_SYSTEM_CACHE:-/var/cache/host-upgrade-system} t v mirror
	if [ "${HU_SYSTEM_TEST:-1}" = 0 ]; then
		echo "HU_SYSTEM_TEST=0"
		return
	fi
	[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot, the test host's disks)"; return; }
	for t in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 debugfs setpriv python3 flock; do
		command -v "$t" >/dev/null 2>&1 || { echo "$t is missing (scripts/install-deps)"; return; }
	done
	v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
	[ "${v:-0}" -ge 10 ] || { echo "QEMU ${v:-?} < 10 (scripts/install-deps installs it from bookworm-backports)"; return; }
	ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "no kernel in /boot (linux-image-amd64)"; return; }
	if [ ! -s "$cache/host.env" ]; then
		mirror=${HU_SYSTEM_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
			tr ' ' '\n' | grep -v -- '-security' | head -n1)}
		mirror=${mirror:-http://deb.debian.org/debian}
		python3 - "$mirror" <<-'PY' >/dev/null 2>&1 || { echo "no cached test-host image and $mirror cannot be reached (debootstrap needs it once)"; return; }
		import sys, urllib.request
		urllib.request.urlopen(sys.argv[1].rstrip("/") + "/dists/bookworm/Release", timeout=15).read(64)
		PY
	fi
}

# run_scenario NAME: one run of tests/system/run-host.sh; its verdict must be PASS.
run_scenario() {
	local name=$1 why out
	why=$(cannot_run)
	[ -z "$why" ] || skip "system test: $why"
	# A directory of its own (another `make check` may run the same scenario at the
	# same time); check-NAME points to the newest. Old ones go after a day.
	mkdir -p "$HU_TOP/build/system"
	find "$HU_TOP/build/system" -maxdepth 1 -name "check-$name.*" -mtime +1 -exec rm -rf {} + 2>/dev/null || true
	out=$(mktemp -d "$HU_TOP/build/system/check-$name.XXXXXX")
	SCENARIO_OUT=$out
	if [ -L "$HU_TOP/build/system/check-$name" ] || [ ! -e "$HU_TOP/build/system/check-$name" ]; then
		ln -sfn "$(basename "$out")" "$HU_TOP/build/system/check-$name"
	fi
	run "$HU_TOP/tests/system/run-host.sh" --quiet --brief --out "$out" "$HU_TOP/tests/system/$name.sh"
	# What failed, for the TAP output (bats shows it for a failing test).
	if [ "$status" -ne 0 ]; then
		echo "run-host.sh exited $status; logs: $out"
		grep -E 'check FAIL|HU-VERDICT' "$out/scenario.log" 2>/dev/null | tail -n 20
		tail -n 30 <<<"$output"
	fi
	[ "$status" -eq 0 ]
	grep -q '^verdict:   PASS' "$out/summary.txt"
}

@test "system: host-upgrade run upgrades the test host's kernel by kexec; every VM comes back by itself, RAM identical" {
	run_scenario scenario-run
	# The report has measured downtimes and the blackout.
	grep -q '^Total host blackout' "$SCENARIO_OUT/report.txt"
}

@test "system: pmem lost between checkpoint and restore (cold power cycle): every VM refused, none resumed" {
	run_scenario scenario-wipe
}

@test "system: RAM zeroed for one VM, disk written for another between checkpoint and restore: both refused, the third restored" {
	run_scenario scenario-tamper
}

@test "system: NVDIMM host, RAM on devdax namespaces: host-upgrade run by kexec, every VM back by itself, namespaces and RAM identical" {
	run_scenario scenario-devdax
	grep -q '^Total host blackout' "$SCENARIO_OUT/report.txt"
}

@test "system: NVDIMM host, one VM's devdax namespace re-created (same name and size, new uuid) between checkpoint and restore: that VM refused, the others restored" {
	run_scenario scenario-devdax-recreate
}

@test "system: NVDIMM host, one VM's devdax namespace destroyed so the others renumber: it is refused, the others are restored from their namespaces under the new names" {
	run_scenario scenario-devdax-renumber
}

@test "system: NVDIMM host, RAM files on fsdax mounts by filesystem UUID, one VM's namespace destroyed so the others renumber (fsdax-renumber): it is refused, the others are restored through their mounts" {
	run_scenario scenario-fsdax-renumber
}
