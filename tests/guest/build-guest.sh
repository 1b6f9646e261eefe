#!/bin/bash
# Build the tiny test guest used by the bats tests:
#   OUTDIR/vmlinuz            copy of the newest /boot/vmlinuz-* (Debian linux-image-amd64)
#   OUTDIR/initramfs.cpio.gz  busybox-static + an /init that prints one "BOOT <token>" line
#                             on the console (ttyS0), then "tick N" every ~0.5 s forever.
# Boot it with: -kernel OUTDIR/vmlinuz -initrd OUTDIR/initramfs.cpio.gz -append "console=ttyS0 quiet no_timer_check"
# Idempotent: does nothing when both outputs exist, are newer than this script and the
# kernel copy is not older than the newest /boot/vmlinuz-*.
# Needs: /bin/busybox (busybox-static), cpio, gzip. No root needed.
set -eu

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
outdir=$1
script=$0

busybox=${HU_BUSYBOX:-/bin/busybox}
# shellcheck disable=SC2012 # /boot/vmlinuz-VERSION names are plain
kernel=${HU_GUEST_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}

if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
	echo "build-guest: no readable /boot/vmlinuz-* (install linux-image-amd64)" >&2
	exit 1
fi
if [ ! -x "$busybox" ]; then
	echo "build-guest: $busybox missing (install busybox-static)" >&2
	exit 1
fi
# A dynamically linked busybox would not run in the initramfs.
if command -v file >/dev/null 2>&1 && file -L "$busybox" | grep -q 'dynamically linked'; then
	echo "build-guest: $busybox is dynamically linked (install busybox-static)" >&2
	exit 1
fi
command -v cpio >/dev/null 2>&1 || { echo "build-guest: cpio missing" >&2; exit 1; }

mkdir -p "$outdir"
vmlinuz=$outdir/vmlinuz
initrd=$outdir/initramfs.cpio.gz

if [ -s "$vmlinuz" ] && [ -s "$initrd" ] &&
	[ "$vmlinuz" -nt "$script" ] && [ "$initrd" -nt "$script" ] &&
	[ ! "$kernel" -nt "$vmlinuz" ] && [ ! "$busybox" -nt "$initrd" ]; then
	exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hu-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

root=$tmp/root
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" \
	"$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/etc"
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# Applet symlinks (sh, mount, sleep, ...): all of them, so debugging the guest is easy.
"$busybox" --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	ln -s /bin/busybox "$root/$applet" 2>/dev/null || true
done
[ -e "$root/bin/sh" ] || ln -s busybox "$root/bin/sh"

# /dev/console is not in this cpio (mknod needs root); the kernel's built-in initramfs
# provides /dev/console, so init starts with the console on fds 0-2.
cat > "$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Talk to the serial console directly when it exists (console=ttyS0), else keep /dev/console.
if [ -c /dev/ttyS0 ]; then
	exec </dev/ttyS0 >/dev/ttyS0 2>&1
fi
# Keep kernel messages from interleaving with our lines.
echo 1 > /proc/sys/kernel/printk 2>/dev/null
token=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$$-$(date +%s)")
echo "BOOT $token"
n=0
while :; do
	sleep 0.5 2>/dev/null || usleep 500000
	n=$((n + 1))
	echo "tick $n"
done
INIT
chmod 0755 "$root/init"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -n -6 > "$tmp/initramfs.cpio.gz"
cp "$kernel" "$tmp/vmlinuz"

# Install atomically so a concurrent reader never sees a half-written file.
mv -f "$tmp/vmlinuz" "$vmlinuz"
mv -f "$tmp/initramfs.cpio.gz" "$initrd"
echo "build-guest: $vmlinuz ($(basename "$kernel")), $initrd ($(wc -c < "$initrd") bytes)"
