#!/usr/bin/env bats
# run --no-reboot --restart sequential (#16): an operator (and make bench) can ask for the
# restart before prelaunch — save, quit, start the new QEMU, load — for a VM prelaunch could
# serve; plan shows it with the reason, and without the flag the same VM goes by prelaunch.
# Real QEMU 10 (TCG), one VM restarted both ways.

load helpers

HU_VM_MEM=128M

# The journal's "restored" entries of VM NAME, their detail ("-" when none), one a line.
restored_details() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("vm") == sys.argv[2] and e.get("event") == "restored":
        print(e.get("detail") or "-")' "$S/journal.jsonl" "$1"
}

@test "run --restart sequential: an eligible VM quits before its new QEMU starts; without it, prelaunch" {
	local v=q85-$HU_RUN_ID old mid new t
	vm_start $v $(qmp_arg $v) $(ram_file_args $v "$T/$v.ram")
	vm_wait_tick $v 2 240
	old=$(vm_pid $v)
	# plan shows what each choice does, and why.
	run --separate-stderr hu plan --json --no-reboot --vm $v
	[ "$(plan_vm "$output" $v restart)" = prelaunch ]
	run --separate-stderr hu plan --json --no-reboot --restart sequential --vm $v
	[ "$(plan_vm "$output" $v restart)" = sequential ]
	[[ "$(plan_vm "$output" $v restart_reason)" == *"--restart sequential"* ]]
	run --separate-stderr hu plan --no-reboot --restart sequential --vm $v
	[[ "$output" == *"restart: sequential: asked for (--restart sequential)"* ]]
	run --separate-stderr hu run --no-reboot --restart bogus --yes --vm $v
	[ "$status" -eq 2 ]

	t=$(vm_last_tick $v)
	run --separate-stderr hu run --no-reboot --restart sequential --yes --vm $v
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"restarting sequentially, as asked"* ]]
	[[ "$stderr" == *"$v: restored (running) as pid"* ]]
	[[ "$stderr" != *"prelaunch"* ]]
	mid=$(qemu_pids_with "$T/$v.")
	[[ "$mid" =~ ^[0-9]+$ ]] && [ "$mid" != "$old" ]
	[ "$(restored_details $v)" = "-" ]
	vm_wait_tick $v $((t + 2)) 120
	[ "$(vm_boot_count $v)" -eq 1 ]

	# The same VM without the flag: prelaunch.
	rm -rf "$S"
	t=$(vm_last_tick $v)
	run --separate-stderr hu run --no-reboot --yes --vm $v
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"$v: restarted by prelaunch as pid"* ]]
	[[ "$stderr" != *"restarting sequentially"* ]]
	new=$(qemu_pids_with "$T/$v.")
	[[ "$new" =~ ^[0-9]+$ ]] && [ "$new" != "$mid" ]
	[ "$(restored_details $v)" = prelaunch ]
	vm_wait_tick $v $((t + 2)) 120
	[ "$(vm_boot_count $v)" -eq 1 ]
}
