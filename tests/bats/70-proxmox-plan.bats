#!/usr/bin/env bats
# Proxmox VE guests (#17): a QEMU started as qemu-server starts it is claimed as Proxmox VM N
# (plan --json: "manager":"proxmox", "vmid":N), and plan blocks it, with the reason, when a
# `qm reboot` is pending (cleanup would cold-start it), its config has a `lock:` line, or it is
# an HA resource. The same QEMU without its config in /etc/pve is nobody's.

load helpers
load proxmox

@test "claimed as Proxmox VM 100: manager, vmid, no blocker" {
	local v=p70a-$HU_RUN_ID
	pve_start 100 "$v"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	echo "$output" "$stderr"
	[ "$status" -eq 0 ]
	[ "$(plan_vm "$output" "$v" manager)" = proxmox ]
	[ "$(plan_vm "$output" "$v" vmid)" = 100 ]
	[ "$(plan_vm "$output" "$v" blockers)" = '[]' ]
	[ "$(plan_vm "$output" "$v" pid)" = "$(pve_pid 100)" ]
	# Without its config on this node it is not Proxmox's.
	mv "$PVE/etc/pve/qemu-server/100.conf" "$T/100.conf"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	[ "$(plan_vm "$output" "$v" manager)" = none ]
}

@test "blocked: pending qm reboot, config lock, HA resource; each with its reason" {
	local v=p70b-$HU_RUN_ID
	pve_start 101 "$v"
	: >"$PVE/var/run/qemu-server/101.reboot"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(plan_vm "$output" "$v" 'blockers')" != '[]' ]
	[[ "$(plan_vm "$output" "$v" blockers)" == *"qm reboot is pending"* ]]
	[ "$(json_get "$output" "len([v for v in j['vms'] if v['name'] == '$v'][0]['blockers'])")" -eq 1 ]
	rm "$PVE/var/run/qemu-server/101.reboot"

	pve_conf 101 "$v" "lock: backup" "[snap1]" "lock: rollback"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" "$v" blockers)" == *"config lock 'backup' is set"* ]]
	[ "$(json_get "$output" "len([v for v in j['vms'] if v['name'] == '$v'][0]['blockers'])")" -eq 1 ]
	# A lock in a snapshot section is the snapshot's, not the VM's.
	pve_conf 101 "$v" "[snap1]" "lock: rollback"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	[ "$status" -eq 0 ]

	printf 'vm: 1010\n\tstate started\n\nvm: 101\n\tstate started\n' >"$PVE/etc/pve/ha/resources.cfg"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	[ "$status" -eq 1 ]
	[[ "$(plan_vm "$output" "$v" blockers)" == *"is an HA resource"* ]]
	printf 'vm: 1010\n\tstate started\n' >"$PVE/etc/pve/ha/resources.cfg"
	run --separate-stderr "$HU_BIN" plan --json --state-dir "$S" --vm "$v"
	[ "$status" -eq 0 ]
	# The human table names the manager.
	run --separate-stderr "$HU_BIN" plan --state-dir "$S" --vm "$v"
	[[ "$output" == *"ok (proxmox)"* ]]
}
