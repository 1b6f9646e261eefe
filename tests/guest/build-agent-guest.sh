#!/bin/bash
# The test guest with a QEMU guest agent inside (for suspend/wakeup and clock tests):
#   OUTDIR/initramfs-agent.cpio.gz   busybox + qemu-ga (Debian's qemu-guest-agent, extracted
#                                    with dpkg -x, not installed on this host) + its libraries
#                                    + the virtio modules; /init starts qemu-ga on the
#                                    org.qemu.guest_agent.0 port, prints "BOOT <token>" once,
#                                    then "tick N" and "clock <unix seconds>" every ~0.5 s.
#                                    With hu.agent=silent on the kernel command line it opens
#                                    the port and holds it instead, answering nothing (prints
#                                    "SILENT <port>"): a hung agent.
# Uses OUTDIR/vmlinuz from build-guest.sh (run it first). Idempotent.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
"$here/build-guest.sh" "$outdir" >/dev/null
out=$outdir/initramfs-agent.cpio.gz
[ -s "$out" ] && [ "$out" -nt "$0" ] && [ "$out" -nt "$outdir/initramfs.cpio.gz" ] && exit 0

kver=$(basename "$(ls -1 /boot/vmlinuz-* | sort -V | tail -n 1)" | sed 's/^vmlinuz-//')
mods=/lib/modules/$kver/kernel/drivers
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hu-agent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# qemu-ga from Debian's package, extracted only.
(cd "$tmp" && apt-get download qemu-guest-agent >/dev/null 2>&1) ||
	{ echo "build-agent-guest: apt-get download qemu-guest-agent failed" >&2; exit 1; }
dpkg -x "$tmp"/qemu-guest-agent_*.deb "$tmp/pkg"

root=$tmp/root
mkdir -p "$root"
(cd "$root" && gzip -dc "$outdir/initramfs.cpio.gz" | cpio -i --quiet)
mkdir -p "$root/usr/sbin" "$root/lib/modules" "$root/var/run" "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp "$tmp/pkg/usr/sbin/qemu-ga" "$root/usr/sbin/"
ldd "$tmp/pkg/usr/sbin/qemu-ga" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev \
	virtio/virtio_pci char/virtio_console; do
	f=$(ls "$mods/$m.ko"* 2>/dev/null | head -n1)
	[ -n "$f" ] || { echo "build-agent-guest: no $m module for $kver" >&2; exit 1; }
	case "$f" in
	*.xz) xz -dc "$f" >"$root/lib/modules/$(basename "$m").ko" ;;
	*.zst) zstd -qdc "$f" >"$root/lib/modules/$(basename "$m").ko" ;;
	*) cp "$f" "$root/lib/modules/$(basename "$m").ko" ;;
	esac
done

cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/ttyS0 ] && exec </dev/ttyS0 >/dev/ttyS0 2>&1
echo 1 > /proc/sys/kernel/printk 2>/dev/null
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console; do
	insmod /lib/modules/$m.ko 2>&1 | sed "s/^/insmod: /"
done
port=
for i in $(seq 50); do
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename "$p")
	done
	[ -n "$port" ] && [ -c "$port" ] && break
	sleep 0.1
done
token=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$$")
echo "BOOT $token"
if [ -n "$port" ] && grep -qw hu.agent=silent /proc/cmdline; then
	# a hung agent: the port is open (QEMU's frontend-open is true), nothing answers
	exec 3<>"$port"
	echo "SILENT $port"
elif [ -n "$port" ]; then
	qemu-ga -m virtio-serial -p "$port" -f /var/run/qemu-ga.pid -t /var/run >/dev/null 2>&1 &
	echo "AGENT $port"
else
	echo "NOAGENT: no org.qemu.guest_agent.0 port"
fi
n=0
while :; do
	sleep 0.5
	n=$((n + 1))
	echo "tick $n"
	echo "clock $(date +%s)"
done
INIT
chmod 0755 "$root/init"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -n -6 > "$tmp/out.gz"
mv -f "$tmp/out.gz" "$out"
echo "build-agent-guest: $out ($(wc -c < "$out") bytes)"
