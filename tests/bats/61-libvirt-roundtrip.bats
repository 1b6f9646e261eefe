#!/usr/bin/env bats
# libvirt-managed VMs (#14): a round trip of a libvirt domain through libvirt's own API — the
# guest's counter continues, no cold boot, and afterwards the domain is libvirt's as before:
# persistent, autostart unchanged, virsh suspend/resume/destroy work, and it can be
# checkpointed again. A real libvirtd, started by the test (tests/bats/libvirt.bash).

load helpers
load libvirt # setup_file, setup, teardown, teardown_file

@test "checkpoint + restore of a libvirt domain: counter continues, libvirt keeps managing it" {
	local d=lv61a-$HU_RUN_ID pid t uuid
	lv_define "$d"
	virsh autostart "$d" >/dev/null
	lv_start "$d"
	pid=$(lv_pid "$d")
	uuid=$(virsh domuuid "$d")
	run "$HU_BIN" checkpoint --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	# Saved and destroyed through libvirt; the pending marker blocks a cold boot.
	[ "$(lv_state "$d")" = "shut off" ]
	! _lv_pid_alive "$pid" || false
	[ -s "$S/libvirt/$uuid.pending" ]
	[ "$(json_get "$(cat "$S/manifest.json")" 'j["vms"][0]["manager"]')" = libvirt ]
	[ "$(json_get "$(cat "$S/manifest.json")" 'j["version"]')" = 4 ]
	t=$(vm_last_tick "$d")
	run "$HU_BIN" restore --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(lv_state "$d")" = running ]
	[ "$(lv_pid "$d")" != "$pid" ]
	vm_wait_tick "$d" $((t + 3)) 120
	[ "$(vm_boot_count "$d")" -eq 1 ]
	# Done with: marker and RAM links gone; libvirt's view as before.
	[ ! -e "$S/libvirt/$uuid.pending" ]
	[ ! -e "/var/lib/libvirt/qemu/ram/.host-upgrade/$uuid" ]
	virsh dominfo "$d" | grep -q '^Persistent: *yes'
	virsh dominfo "$d" | grep -q '^Autostart: *enable'
	# The persistent definition never had our additions.
	! virsh dumpxml --inactive "$d" | grep -q 'incoming\|host-upgrade' || false
	# x-ignore-shared back off (a later virsh save would fail otherwise).
	virsh qemu-monitor-command "$d" '{"execute":"query-migrate-capabilities"}' |
		python3 -c 'import json,sys; c={x["capability"]:x["state"] for x in json.load(sys.stdin)["return"]}; sys.exit(c["x-ignore-shared"])'
	# virsh manages it: suspend, resume, and it runs on.
	virsh suspend "$d" >/dev/null
	[ "$(lv_state "$d")" = paused ]
	virsh resume "$d" >/dev/null
	[ "$(lv_state "$d")" = running ]
	vm_wait_ticking "$d" 3 120
	virsh autostart --disable "$d" >/dev/null
}

@test "run --no-reboot twice on a restored libvirt domain, then virsh destroy and start" {
	local d=lv61b-$HU_RUN_ID
	lv_define "$d"
	lv_start "$d"
	vm_roundtrip_no_reboot "$d"
	# Its live XML now carries our <qemu:commandline> and <metadata>: a second round trip
	# replaces them (no duplicate namespace, no second -incoming).
	vm_roundtrip_no_reboot "$d"
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["vms"][0]["state"]')" = restored ]
	virsh destroy "$d" >/dev/null
	[ "$(lv_state "$d")" = "shut off" ]
	# Nothing pending: the hook lets a cold boot through.
	virsh start "$d" >/dev/null
	lv_wait_boots "$d" 2
	vm_wait_ticking "$d" 3 120
}

@test "a fixed RAM path from <qemu:commandline>: libvirt's unused pc.ram left out, round trip, no RAM link" {
	local d=lv61c-$HU_RUN_ID ram
	# The second RAM setup of docs/design/libvirt.md: libvirt's own (private) pc.ram stays
	# unused; the machine's RAM is a file of ours that libvirt never touches.
	install -d -m 0750 -o libvirt-qemu -g root "$LVD/fixed"
	ram=$LVD/fixed/$d.ram
	LV_QEMU_COMMANDLINE="<qemu:commandline>
	  <qemu:arg value='-object'/>
	  <qemu:arg value='memory-backend-file,id=hu.ram,size=128M,mem-path=$ram,share=on'/>
	  <qemu:arg value='-machine'/>
	  <qemu:arg value='memory-backend=hu.ram'/>
	</qemu:commandline>" lv_define "$d" "" ""
	lv_start "$d"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$d" manager)" = libvirt ]
	[ "$(plan_vm "$output" "$d" save)" = in-place ]
	[ "$(plan_vm "$output" "$d" blockers)" = '[]' ]
	# Only the backend the guest uses counts (with libvirt's anonymous pc.ram: 256 MiB, private).
	[ "$(plan_vm "$output" "$d" ram_bytes)" -eq $((128 << 20)) ]
	[ "$(plan_vm "$output" "$d" ram_backing)" != private ]
	vm_roundtrip_no_reboot "$d"
	[ "$(lv_state "$d")" = running ]
	# libvirt never touches that file: nothing to link.
	[ "$(json_get "$(cat "$S/manifest.json")" 'len(j["vms"][0]["libvirt"]["ram_links"])')" = 0 ]
	[ -s "$ram" ]
}
