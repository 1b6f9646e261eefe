#!/usr/bin/env bats
# `status` and `status --json` of a checkpoint record checked into the tree
# (tests/fixtures/status/manifest.json, manifest format 3: a VM in each state, with downtime,
# clock step and an error), compared with golden output (tests/bats/golden/status-*). No QEMU:
# status reads the manifest only. The same fixture is loaded by tests/unit/test-manifest.c.

load helpers

FIXTURE=$BATS_TEST_DIRNAME/../fixtures/status/manifest.json

# The state dir as the product leaves it: root-only (git keeps neither mode).
setup() {
	hu_setup
	install -d -m 0700 "$S"
	install -m 0600 "$FIXTURE" "$S/manifest.json"
}

@test "status of the fixture state dir matches tests/bats/golden/status-table.txt" {
	run --separate-stderr hu status
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	diff -u "$BATS_TEST_DIRNAME/golden/status-table.txt" - <<<"$output"
	cmp "$FIXTURE" "$S/manifest.json" # read only
}

@test "status --json of the fixture state dir matches tests/bats/golden/status.json" {
	run --separate-stderr hu status --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	diff -u "$BATS_TEST_DIRNAME/golden/status.json" - <<<"$output"
	cmp "$FIXTURE" "$S/manifest.json"
}
