#!/usr/bin/env bats
# The CLI contract scripts depend on: exit 2 for usage errors, 1 for failures, 0 for
# success; `status --json` when idle; `--vm` naming a VM that does not exist.

load helpers

@test "usage errors exit 2 and change nothing: no verb, unknown verb, bad options and values" {
	run --separate-stderr "$HU_BIN"
	[ "$status" -eq 2 ]
	[[ "$stderr" == *usage:* ]]

	run --separate-stderr "$HU_BIN" frobnicate --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 2 ]
	[[ "$stderr" == *"host-upgrade: frobnicate: unknown verb"* ]]
	[ -z "$output" ]

	local verb
	for verb in plan checkpoint restore abort status; do
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --no-such-option
		echo "$verb --no-such-option: $status $stderr"
		[ "$status" -eq 2 ]
		[[ "$stderr" == *"usage: host-upgrade $verb"* ]]
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" unexpected-word
		echo "$verb unexpected-word: $status $stderr"
		[ "$status" -eq 2 ]
		[[ "$stderr" == *"host-upgrade: $verb: "*unexpected-word* ]]
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --timeout 0
		[ "$status" -eq 2 ]
		[[ "$stderr" == *"host-upgrade: $verb: --timeout: "* ]]
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --jobs many
		[ "$status" -eq 2 ]
		run --separate-stderr "$HU_BIN" $verb --state-dir relative/dir
		[ "$status" -eq 2 ]
		[[ "$stderr" == *"host-upgrade: $verb: --state-dir: "* ]]
		run --separate-stderr "$HU_BIN" $verb --help
		[ "$status" -eq 0 ]
		[[ "$output" == *"usage: host-upgrade $verb"* ]]
	done
	for verb in plan checkpoint; do
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --volatile sometimes
		[ "$status" -eq 2 ]
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --space-margin lots
		[ "$status" -eq 2 ]
	done
	run --separate-stderr "$HU_BIN" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *checkpoint* && "$output" == *restore* ]]
	# nothing was created by any of it
	[ ! -e "$S" ]
}

@test "status with no checkpoint: {\"phase\":\"idle\",\"vms\":[]}; restore and abort have nothing to do (exit 0)" {
	run --separate-stderr "$HU_BIN" status --json --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(json_get "$output" 'j["phase"]')" = idle ]
	[ "$(json_get "$output" 'j["vms"]')" = '[]' ]
	run --separate-stderr "$HU_BIN" status --state-dir "$S"
	[ "$status" -eq 0 ]
	[[ "$output" == *idle* ]]
	local verb
	for verb in restore abort; do
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S"
		echo "$verb: $stderr"
		[ "$status" -eq 0 ]
		[ ! -e "$S/manifest.json" ]
	done
	[ -z "$(_hu_our_qemus)" ]
}

@test "--vm naming no VM: plan and checkpoint exit 1 naming it; nothing is written" {
	local ghost=nosuchvm-$HU_RUN_ID verb
	for verb in plan checkpoint; do
		run --separate-stderr "$HU_BIN" $verb --state-dir "$S" --vm "$ghost"
		echo "$verb: $status $stderr"
		[ "$status" -eq 1 ]
		[[ "$stderr" == *"host-upgrade: $verb: $ghost: "* ]]
		[ ! -e "$S/manifest.json" ]
	done
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$ghost"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$ghost"* ]]
}
