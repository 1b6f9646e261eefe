# shellcheck shell=bash
# Test hosts for the fleet-rollout tests: each "host" is a network namespace on this machine
# with its own sshd (own host key, own address, key-based root login with a key made for the
# test) and its own real QEMU VM (the busybox tick guest, TCG, 128M). The controller is one
# more namespace: a bridge there connects every host, so all test traffic stays inside
# namespaces this file made (10.77.0.0/24 exists nowhere else; the root namespace gets no
# address and no route).
#
#   load helpers; load ../fleet/fleet     (from a bats file in tests/bats)
#
#   fleet_check                   prints why fleet tests cannot run here (empty: they can)
#   fleet_up N                    make hosts h1..hN, start their sshd and VMs; sets/exports
#                                 F (the fleet directory), FLEET_CTL (controller namespace)
#   fleet_down                    kill what fleet_up started (VMs, sshd, by pid) and delete the
#                                 namespaces; safe to call twice or after a partial fleet_up
#   fleet_inventory [H:VAR=VALUE...]   write $F/inventory.ini (per-host extra variables)
#   fleet_rollout ARGS...         scripts/fleet-rollout run from the controller namespace
#   fleet_ssh HOST CMD...         run a command on a host over its sshd
#   fleet_vm HOST                 the VM name of HOST
#   fleet_host_ip HOST            its address
#
# Everything a host has lives in $F/HOST/: sshd_config, ssh_host_ed25519_key, sshd.pid,
# sshd.log, state/ (host-upgrade --state-dir). VM files are $F/VM.* (see helpers.bash);
# $F/resources lists what to clean up.

FLEET_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_NET=10.77.0
: "${FLEET_SSHD:=/usr/sbin/sshd}"

fleet_check() {
	local c
	if [[ $(id -u) -ne 0 ]]; then
		echo "needs root (network namespaces)"
		return
	fi
	for c in ansible-playbook ip ssh ssh-keygen python3; do
		command -v "$c" >/dev/null 2>&1 || { echo "no $c (scripts/install-deps installs it)"; return; }
	done
	[[ -x "$FLEET_SSHD" ]] || { echo "no $FLEET_SSHD (openssh-server)"; return; }
	[[ -x /usr/bin/python3 ]] || { echo "no /usr/bin/python3"; return; }
	# sshd without PAM refuses a locked account ('!' password).
	[[ "$(getent shadow root | cut -d: -f2)" != '!'* ]] || { echo "root's account is locked (sshd refuses it)"; return; }
}

_fleet_ns() { printf 'hufl-%s-%s\n' "$FLEET_ID" "$1"; }
fleet_vm() { printf 'fl%s-%s\n' "${1#h}" "$FLEET_ID"; }
fleet_host_ip() { printf '%s.%d\n' "$FLEET_NET" $((10 + ${1#h})); }

_fleet_netns_add() {
	ip netns add "$1" || return 1
	echo "netns $1" >>"$F/resources"
	ip -n "$1" link set lo up
}

# Kill PID and every process below it (sshd's per-connection children), children first.
_fleet_kill_tree() {
	local pid=$1 c
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	for c in $(_fleet_children "$pid"); do
		_fleet_kill_tree "$c"
	done
	kill -TERM "$pid" 2>/dev/null || true
}

_fleet_children() {
	local d stat
	for d in /proc/[0-9]*; do
		{ stat=$(<"$d/stat"); } 2>/dev/null || continue
		stat=${stat##*) }
		read -r _ ppid _ <<<"$stat"
		[[ "$ppid" == "$1" ]] && printf '%s\n' "${d#/proc/}"
	done
	return 0
}

_fleet_sshd_up() { # host
	local h=$1 ns ip d i
	ns=$(_fleet_ns "$h")
	ip=$(fleet_host_ip "$h")
	d=$F/$h
	mkdir -p "$d/state"
	ssh-keygen -q -t ed25519 -N '' -C "$h" -f "$d/ssh_host_ed25519_key" || return 1
	echo "$ip $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >>"$F/known_hosts"
	cat >"$d/sshd_config" <<EOF
ListenAddress $ip:22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $F/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
	mkdir -p /run/sshd
	chmod 0755 /run/sshd
	# sshd daemonizes and writes its pid file; its output goes to sshd.log.
	ip netns exec "$ns" "$FLEET_SSHD" -f "$d/sshd_config" -E "$d/sshd.log" </dev/null 3>&- 4>&- || {
		echo "fleet: sshd of $h did not start:" >&2
		cat "$d/sshd.log" >&2
		return 1
	}
	for ((i = 0; i < 100; i++)); do
		[[ -s "$d/sshd.pid" ]] && break
		sleep 0.05
	done
	[[ -s "$d/sshd.pid" ]] || { echo "fleet: sshd of $h wrote no pid file" >&2; return 1; }
	echo "sshd $(<"$d/sshd.pid")" >>"$F/resources"
}

fleet_up() {
	local n=${1:-4} i h ns
	FLEET_ID=${HU_RUN_ID:-$$}
	F=$(mktemp -d /tmp/hufl.XXXXXX) || return 1
	chmod 0755 "$F"
	: >"$F/resources"
	FLEET_CTL=$(_fleet_ns ctl)
	FLEET_HOSTS=()
	export F FLEET_ID FLEET_CTL
	ssh-keygen -q -t ed25519 -N '' -C fleet-test -f "$F/id_ed25519" || return 1
	cp "$F/id_ed25519.pub" "$F/authorized_keys"
	: >"$F/known_hosts"
	printf '[defaults]\n' >"$F/ansible.cfg"

	_fleet_netns_add "$FLEET_CTL" || return 1
	ip -n "$FLEET_CTL" link add br0 type bridge || return 1
	ip -n "$FLEET_CTL" addr add "$FLEET_NET.1/24" dev br0 || return 1
	ip -n "$FLEET_CTL" link set br0 up || return 1
	for ((i = 1; i <= n; i++)); do
		h=h$i
		ns=$(_fleet_ns "$h")
		_fleet_netns_add "$ns" || return 1
		# one end on the controller's bridge, the other the host's eth0
		ip link add name "$h" netns "$FLEET_CTL" type veth peer name eth0 netns "$ns" || return 1
		ip -n "$FLEET_CTL" link set "$h" master br0 || return 1
		ip -n "$FLEET_CTL" link set "$h" up || return 1
		ip -n "$ns" addr add "$(fleet_host_ip "$h")/24" dev eth0 || return 1
		ip -n "$ns" link set eth0 up || return 1
		_fleet_sshd_up "$h" || return 1
		FLEET_HOSTS+=("$h")
	done
	export FLEET_N=$n

	# One VM per host, file-backed RAM (saved in place), all booting at once.
	local vm
	for h in "${FLEET_HOSTS[@]}"; do
		vm=$(fleet_vm "$h")
		# shellcheck disable=SC2046 # the helpers print option lists meant to split
		T=$F vm_start "$vm" $(T=$F qmp_arg "$vm") $(ram_file_args "$vm" "$F/$vm.ram") || return 1
	done
	for h in "${FLEET_HOSTS[@]}"; do
		T=$F vm_wait_tick "$(fleet_vm "$h")" 2 90 || return 1
	done
	fleet_inventory ""
	for h in "${FLEET_HOSTS[@]}"; do
		fleet_ssh "$h" true || { echo "fleet: cannot ssh to $h" >&2; cat "$F/$h/sshd.log" >&2; return 1; }
	done
}

fleet_down() {
	[[ -n "${F:-}" && -d "$F" && "$F" == /tmp/hufl.* ]] || return 0
	local kind what rc=0
	T=$F cleanup_vms || rc=1
	if [[ -f "$F/resources" ]]; then
		while read -r kind what; do
			[[ "$kind" == sshd ]] && _fleet_kill_tree "$what"
		done <"$F/resources"
		while read -r kind what; do
			[[ "$kind" == netns ]] && { ip netns del "$what" 2>/dev/null || rc=1; }
		done <"$F/resources"
	fi
	rm -rf "$F"
	return $rc
}

# fleet_inventory [HOST:VAR=VALUE ...]: the test fleet as an Ansible INI inventory.
# shellcheck disable=SC2120 # called with no arguments too
fleet_inventory() {
	local h line o
	{
		echo "# test fleet $FLEET_ID: each host a network namespace with its own sshd and VM"
		echo "[kvm]"
		for ((i = 1; i <= FLEET_N; i++)); do
			h=h$i
			line="$h ansible_host=$(fleet_host_ip "$h") hu_state_dir=$F/$h/state hu_vms='[\"$(fleet_vm "$h")\"]'"
			for o in "$@"; do
				[[ "$o" == "$h:"* ]] && line+=" ${o#*:}"
			done
			echo "$line"
		done
		echo
		echo "[kvm:vars]"
		echo "ansible_user=root"
		echo "ansible_python_interpreter=/usr/bin/python3"
		echo "ansible_ssh_private_key_file=$F/id_ed25519"
		echo "ansible_ssh_common_args='-o UserKnownHostsFile=$F/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes'"
		echo "hu_bin=$HU_BIN"
	} >"$F/inventory.ini"
}

# scripts/fleet-rollout, run in the controller namespace, with Ansible kept to the test's
# files: no ansible.cfg from elsewhere, temp dirs under $F, no lingering ssh masters.
fleet_rollout() {
	ip netns exec "$FLEET_CTL" env \
		ANSIBLE_CONFIG="$F/ansible.cfg" ANSIBLE_LOCAL_TEMP="$F/ansible-local" \
		ANSIBLE_REMOTE_TMP="$F/ansible-remote" ANSIBLE_ASYNC_DIR="$F/ansible-async" ANSIBLE_PIPELINING=1 ANSIBLE_NOCOLOR=1 \
		ANSIBLE_SSH_ARGS="-o ControlMaster=no" ANSIBLE_TIMEOUT=20 \
		"$FLEET_TOP/scripts/fleet-rollout" "$@" </dev/null 3>&- 4>&-
}

fleet_ssh() {
	local h=$1
	shift
	ip netns exec "$FLEET_CTL" ssh -i "$F/id_ed25519" -o UserKnownHostsFile="$F/known_hosts" \
		-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5 \
		"root@$(fleet_host_ip "$h")" "$@" </dev/null 3>&- 4>&-
}
