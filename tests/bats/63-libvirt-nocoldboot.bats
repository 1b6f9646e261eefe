#!/usr/bin/env bats
# libvirt-managed VMs (#14): nothing cold-boots a checkpointed domain over its saved RAM —
# not `virsh start`, not libvirtd's autostart after a (daemon) restart — the hook
# (libvirt/host-upgrade-hook.in, `host-upgrade libvirt-hook`) refuses and says why; our own
# restore goes through and the guest continues; once restored, `virsh start` works again.
# A real libvirtd, started by the test (tests/bats/libvirt.bash).

load helpers
load libvirt # setup_file, setup, teardown, teardown_file

@test "while checkpointed: virsh start and autostart are refused by the hook; restore is not" {
	local d=lv63a-$HU_RUN_ID t uuid
	lv_define "$d"
	lv_start "$d"
	uuid=$(virsh domuuid "$d")
	run "$HU_BIN" checkpoint --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(lv_state "$d")" = "shut off" ]
	t=$(vm_last_tick "$d")
	run --separate-stderr virsh start "$d"
	echo "$stderr"
	[ "$status" -ne 0 ]
	[[ "$stderr" == *"domain $d is checkpointed (uuid $uuid)"*"host-upgrade restore"* ]]
	[ "$(lv_state "$d")" = "shut off" ]
	# A token that is not the marker's (a forged or stale restore) is refused as well.
	sed -e "s|</name>|</name><uuid>$uuid</uuid>|" -e "s|</devices>|</devices><metadata><hu:restore xmlns:hu='urn:x-host-upgrade:restore:1' token='00'/></metadata>|" \
		"$LVD/$d.xml" >"$LVD/$d.forged.xml"
	run --separate-stderr virsh create "$LVD/$d.forged.xml"
	echo "$stderr"
	[ "$status" -ne 0 ]
	[[ "$stderr" == *"is checkpointed"* ]]
	# Autostart after a daemon restart (as after a boot): refused, it stays off.
	virsh autostart "$d" >/dev/null
	lv_restart_libvirtd
	[ "$(lv_state "$d")" = "shut off" ]
	[ "$(vm_boot_count "$d")" -eq 1 ]
	[ "$(vm_last_tick "$d")" -eq "$t" ]
	# Our restore: the hook lets it through and links the saved RAM into the new folder.
	run "$HU_BIN" restore --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(lv_state "$d")" = running ]
	vm_wait_tick "$d" $((t + 3)) 120
	[ "$(vm_boot_count "$d")" -eq 1 ]
	[ ! -e "$S/libvirt/$uuid.pending" ]
	# Restored: nothing pending, libvirt may cold-boot it again.
	virsh autostart --disable "$d" >/dev/null
	virsh destroy "$d" >/dev/null
	virsh start "$d" >/dev/null
	lv_wait_boots "$d" 2
}

@test "the hook: fast yes with nothing pending; refuses unreadable XML only while something is" {
	run "$HU_BIN" libvirt-hook --state-dir "$S" somedomain <<<"not xml"
	[ "$status" -eq 0 ]
	mkdir -p "$S/libvirt"
	echo '{}' >"$S/libvirt/4f9660bc-1111-4222-8333-444455556666.pending"
	run "$HU_BIN" libvirt-hook --state-dir "$S" somedomain <<<"not xml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cannot read the XML of domain somedomain"* ]]
	# Another domain than the pending one: allowed.
	run "$HU_BIN" libvirt-hook --state-dir "$S" other <<<"<domain id='3'><name>other</name><uuid>11111111-2222-4333-8444-555555555555</uuid></domain>"
	[ "$status" -eq 0 ]
	# The pending one, with an unreadable marker: refused (fail closed).
	run "$HU_BIN" libvirt-hook --state-dir "$S" some <<<"<domain id='3'><uuid>4f9660bc-1111-4222-8333-444455556666</uuid></domain>"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"checkpointed"* ]]
	# An entity bomb is not expanded.
	run "$HU_BIN" libvirt-hook --state-dir "$S" some <<<'<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><domain id="3"><uuid>&b;</uuid></domain>'
	[ "$status" -eq 1 ]
}

@test "a hook installed after libvirtd started: checkpoint reloads the daemon once, and it blocks" {
	local d=lv63c-$HU_RUN_ID t
	cp "$LV_HOOK" "$LVD/hook.saved"
	rm -f "$LV_HOOK"
	lv_restart_libvirtd
	cp "$LVD/hook.saved" "$LV_HOOK" # newer than the daemon now; libvirtd does not know it
	lv_define "$d"
	lv_start "$d"
	run "$HU_BIN" checkpoint --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"libvirtd started before its hook"*"reloaded it (SIGHUP)"* ]]
	t=$(vm_last_tick "$d")
	run --separate-stderr virsh start "$d"
	echo "$stderr"
	[ "$status" -ne 0 ]
	[[ "$stderr" == *"is checkpointed"* ]]
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	vm_wait_tick "$d" $((t + 3)) 120
	# Reloaded once: the next checkpoint does not signal it again.
	run "$HU_BIN" run --no-reboot --yes --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *"reloaded it"* ]]
	[ "$(vm_boot_count "$d")" -eq 1 ]
}
