#!/usr/bin/env bats
# libvirt-managed VMs (#14): kill -9 of `checkpoint` with a libvirt domain saved (paused in
# postmigrate by libvirt's account) → `abort` resumes it through libvirt, same QEMU, guest
# continuing, nothing pending; kill -9 after the stop (destroyed) → `abort` restores it.
# A real libvirtd, started by the test (tests/bats/libvirt.bash).

load helpers
load libvirt # setup_file, setup, teardown, teardown_file

@test "kill -9 while the libvirt domain is saved and paused: abort resumes it through libvirt" {
	local d=lv64a-$HU_RUN_ID b=lv64b-$HU_RUN_ID pd pb ck i uuid t
	lv_define "$d"
	virsh start "$d" >/dev/null
	# 1 GiB of private RAM: its copy keeps the checkpoint busy after the domain is saved.
	HU_VM_MEM=1G vm_start "$b" $(qmp_arg "$b")
	vm_wait_tick "$d" 2 120
	vm_wait_tick "$b" 2 120
	pd=$(lv_pid "$d") pb=$(vm_pid "$b") uuid=$(virsh domuuid "$d")
	"$HU_BIN" checkpoint --jobs 1 --state-dir "$S" --vm "$d" --vm "$b" </dev/null >"$T/ck.out" 2>&1 3>&- 4>&- &
	ck=$!
	for ((i = 0; i < 6000; i++)); do
		grep -q -F "$d: saved" "$T/ck.out" && break
		_hu_pid_alive "$ck" || break
		sleep 0.01
	done
	kill -KILL "$ck"
	wait "$ck" || true
	cat "$T/ck.out"
	grep -q -F "$d: saved" "$T/ck.out"
	# The point this test is about: saved, not stopped, marker in place.
	if ! _lv_pid_alive "$pd" || grep -q '"detail":"saved"' "$S/journal.jsonl"; then
		skip "the checkpoint got past the save of every VM before the kill"
	fi
	[ "$(lv_state "$d")" = paused ]
	[ -s "$S/libvirt/$uuid.pending" ]
	t=$(vm_last_tick "$d")
	run --separate-stderr "$HU_BIN" abort --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(lv_pid "$d")" = "$pd" ]
	[ "$(lv_state "$d")" = running ]
	[ "$(vm_pid "$b")" = "$pb" ]
	[ "$(vm_status "$b")" = running ]
	vm_wait_tick "$d" $((t + 3)) 120
	vm_wait_ticking "$b" 3 120
	[ "$(vm_boot_count "$d")" -eq 1 ]
	[ ! -e "$S/libvirt/$uuid.pending" ]
	# A second abort changes nothing.
	run "$HU_BIN" abort --state-dir "$S"
	[ "$status" -eq 0 ]
	[ "$(lv_pid "$d")" = "$pd" ]
}

@test "after the stop (domain destroyed): abort restores it, a second abort and restore change nothing" {
	local d=lv64c-$HU_RUN_ID t pid
	lv_define "$d"
	lv_start "$d"
	run "$HU_BIN" checkpoint --state-dir "$S" --vm "$d"
	[ "$status" -eq 0 ]
	[ "$(lv_state "$d")" = "shut off" ]
	t=$(vm_last_tick "$d")
	run --separate-stderr "$HU_BIN" abort --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(lv_state "$d")" = running ]
	vm_wait_tick "$d" $((t + 3)) 120
	pid=$(lv_pid "$d")
	run "$HU_BIN" abort --state-dir "$S"
	[ "$status" -eq 0 ]
	run "$HU_BIN" restore --state-dir "$S"
	[ "$status" -eq 0 ]
	[ "$(lv_pid "$d")" = "$pid" ]
	[ "$(vm_boot_count "$d")" -eq 1 ]
}

@test "a restore cut short after libvirt started the domain for its load: ended, started again, once" {
	local d=lv64d-$HU_RUN_ID t leftover
	lv_define "$d"
	lv_start "$d"
	run "$HU_BIN" checkpoint --state-dir "$S" --vm "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	t=$(vm_last_tick "$d")
	# What a restore killed between virDomainCreateXML and migrate-incoming leaves: the
	# domain started paused with -incoming defer and our token (so the hook lets it through
	# and links the saved RAM), the manifest saying "restoring" with that QEMU's pid.
	python3 - "$S/manifest.json" "$LVD/$d.restore.xml" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
lv = m["vms"][0]["libvirt"]
extra = ("<metadata><hu:restore xmlns:hu='urn:x-host-upgrade:restore:1' token='%s'/></metadata>"
         "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
         "<qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline>" % lv["token"])
open(sys.argv[2], "w").write(lv["xml"].replace("</domain>", extra + "</domain>"))
PY
	virsh create --paused "$LVD/$d.restore.xml" >/dev/null
	leftover=$(lv_pid "$d")
	python3 - "$S/manifest.json" "$leftover" <<'PY'
import json, sys
p, pid = sys.argv[1], int(sys.argv[2])
stat = open("/proc/%d/stat" % pid).read()
start = int(stat[stat.rindex(")") + 2:].split()[19])
m = json.load(open(p))
m["vms"][0].update(state="restoring", pid=pid, starttime=start)
m["phase"] = "restoring"
json.dump(m, open(p, "w"))
PY
	run --separate-stderr "$HU_BIN" restore --state-dir "$S"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"ending pid $leftover"* ]]
	! _lv_pid_alive "$leftover" || false
	[ "$(lv_state "$d")" = running ]
	[ "$(lv_pid "$d")" != "$leftover" ]
	vm_wait_tick "$d" $((t + 3)) 120
	[ "$(vm_boot_count "$d")" -eq 1 ]
	run "$HU_BIN" status --json --state-dir "$S"
	[ "$(json_get "$output" 'j["vms"][0]["state"]')" = restored ]
}
