#!/usr/bin/env bats
# docs/preparing-a-host.md and the system test cannot drift apart (no QEMU, no test host).
# Every shell block of the guide is marked: `<!-- hu-run: NAME -->` (the system test runs
# it inside its test host: tests/system/in-host/guide.sh extracts it, scenario-run.sh's
# boot 1 runs it through vms.sh with VMS_GUIDE=1) or `<!-- hu-not-run: WHY -->`.
# Fails when a shell block is unmarked, a hu-not-run gives no reason, two hu-run blocks
# share a name, a hu-run block is run by no scenario, or a scenario runs a block the
# guide does not have.

ROOT=$BATS_TEST_DIRNAME/../..
SYS=$ROOT/tests/system

# guide_problems GUIDE: one line per problem (nothing when the guide and the test agree)
guide_problems() {
	local g=$1 name calls
	# the scripts of the system test, and the scenarios 90-system.bats runs that use the guide
	calls=$(grep -ho 'guide_\(run\|block\) [a-z0-9-]*' "$SYS"/in-host/*.sh "$SYS"/scenario-*.sh |
		awk '{ print $2 }' | sort -u)
	(
		GUIDE=$g
		. "$SYS/in-host/guide.sh"
		guide_blocks | awk '$2 ~ /^(sh|bash)$/ && $3 == "unmarked" { print "line " $1 ": a shell block with neither hu-run nor hu-not-run" }'
		grep -n '^<!-- hu-not-run:[ ]*-->' "$g" | sed 's/:.*/: hu-not-run without a reason/;s/^/line /'
		guide_blocks | awk '$3 == "run" { print $4 }' | sort | uniq -d | sed 's/^/two hu-run blocks named /'
		for name in $(guide_blocks | awk '$3 == "run" { print $4 }' | sort -u); do
			grep -qx -- "$name" <<<"$calls" || echo "hu-run block $name: no system-test script runs it (guide_run/guide_block $name)"
		done
		for name in $calls; do
			guide_blocks | awk -v n="$name" '$3 == "run" && $4 == n { f = 1 } END { exit !f }' ||
				echo "the system test runs guide block $name, which $g does not have"
		done
	)
	# the blocks only run where VMS_GUIDE=1: a scenario of the system test must set it
	grep -l '^VMS_GUIDE=1' "$SYS"/scenario-*.sh | while read -r s; do
		grep -q "run_scenario $(basename "$s" .sh)\$" "$ROOT/tests/bats/90-system.bats" && echo ok
	done | grep -q ok || echo "no scenario in 90-system.bats sets VMS_GUIDE=1"
}

@test "guide: every shell block is marked, and every hu-run block is run by the system test" {
	run guide_problems "$ROOT/docs/preparing-a-host.md"
	[ "$status" -eq 0 ]
	[ -z "$output" ] || { echo "$output"; false; }
	# it has the blocks the issue asks for, marked to run
	. "$SYS/in-host/guide.sh"
	GUIDE=$ROOT/docs/preparing-a-host.md
	for name in e820-check grub pmem-device namespace mkfs fstab qemu libvirt-qemu-conf libvirt-xml plan; do
		guide_block "$name" > /dev/null
	done
	guide_block fstab | grep -q 'UUID=.* /mnt/pmem ext4 dax,nofail'
	guide_block namespace | grep -qx 'ndctl create-namespace -f -e namespace0.0 -m fsdax'
}

@test "guide: the check fails on an unmarked block, an unrun block and a missing block" {
	local g=$BATS_TEST_TMPDIR/guide.md
	{
		cat "$ROOT/docs/preparing-a-host.md"
		printf '\n```sh\necho unmarked\n```\n\n<!-- hu-run: nobody-runs-this -->\n```sh\necho x\n```\n'
		printf '\n<!-- hu-not-run: -->\n```sh\necho y\n```\n'
	} > "$g"
	run guide_problems "$g"
	echo "$output"
	[[ "$output" == *"a shell block with neither hu-run nor hu-not-run"* ]]
	[[ "$output" == *"hu-run block nobody-runs-this: no system-test script runs it"* ]]
	[[ "$output" == *"hu-not-run without a reason"* ]]
	# a block the scripts run, gone from the guide
	sed '/^<!-- hu-run: mkfs -->$/d' "$ROOT/docs/preparing-a-host.md" > "$g"
	run guide_problems "$g"
	echo "$output"
	[[ "$output" == *"runs guide block mkfs, which $g does not have"* ]]
	[[ "$output" == *"a shell block with neither"* ]]
}

@test "guide: guide_block gives a block's exact text, and refuses a name it does not have" {
	local g=$BATS_TEST_TMPDIR/guide.md
	printf '# t\n\n<!-- hu-run: a (why) -->\n```sh\nx=1\n\techo "$x"\n```\n\n<!-- hu-run: ab -->\n```sh\necho ab\n```\n' > "$g"
	GUIDE=$g
	. "$SYS/in-host/guide.sh"
	run guide_block a
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'x=1\n\techo "$x"')" ]
	run guide_block ab
	[ "$output" = "echo ab" ]
	run guide_block nope
	[ "$status" -ne 0 ]
	[[ "$output" == *"has 0 hu-run blocks named 'nope'"* ]]
}
