#!/bin/bash
# Build the disposable test-host disk image of the system test, with a cache.
#
#   tests/system/build-host.sh [--force]
#
# Output, under ${HU_SYSTEM_CACHE:-/var/cache/host-upgrade-system} (outside the
# clone, so every clone on the machine shares it):
#   host.img                 ext4 root file system of the test host (2G, sparse)
#   boot/vmlinuz-OLD         the kernel the outer QEMU boots (Debian 12's 6.1) ...
#   boot/initrd.img-OLD      ... and its dracut initrd
#   tick.elf                 the tiny inner guest (tests/guest/tick.S)
#   host.env                 shell variables describing the above (for run-host.sh)
#
# The image is Debian 12 (debootstrap --variant=minbase) with systemd, kexec-tools,
# ndctl/daxctl, dracut, python3, QEMU 10 and libvirt 11 from bookworm-backports, two kernels with
# their modules (6.1 from this machine's /boot, the newest 6.12 from
# bookworm-backports) and one dracut initrd per kernel, this project installed by
# `make install DESTDIR=... PREFIX=/usr`, and the scenario runner (tests/system/image/).
#
# Layers, each rebuilt only when its inputs changed (a key per layer in stamps/):
#   base     debootstrap + packages + QEMU from backports  (mirror, package list, this script's layer code)
#   kernels  6.1 from /boot + 6.12 .deb, depmod              (kernel versions, files)
#   project  make && make install of this clone              (installed files' content)
#   harness  tests/system/image/ copied in, unit enabled     (its files)
#   initrd   dracut per kernel                               (kernels, dracut, dracut/90host-upgrade + project when used)
#   image    mkfs.ext4 -d                                    (all of the above)
# A layer that is rebuilt invalidates the ones that depend on it.
#
# Environment: HU_SYSTEM_CACHE (cache dir), HU_SYSTEM_PROJECT_SRC (the tree to build and
# install, default this clone), HU_SYSTEM_MIRROR (Debian mirror; default: the
# URI of /etc/apt/sources.list.d/debian.sources), HU_SYSTEM_IMAGE_SIZE (default 2G).
# Needs root, debootstrap, e2fsprogs (mkfs.ext4 -d), make/gcc, binutils; network for the
# first build. Never touches the running system outside the cache directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HU_SYSTEM_CACHE:-/var/cache/host-upgrade-system}
rootfs=$cache/rootfs
stamps=$cache/stamps
logs=$cache/logs
suite=bookworm
image_size=${HU_SYSTEM_IMAGE_SIZE:-2G}
force=0

case "${1:-}" in
--force) force=1 ;;
"") ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
*) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "build-host: must run as root (debootstrap, chroot, mount)" >&2
	exit 1
fi

t_start=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[build-host %6ss] %s\n' "$(since "$t_start")" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Debian mirror: the one this machine uses.
mirror=${HU_SYSTEM_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
	tr ' ' '\n' | grep -v -- '-security' | head -n1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache" "$stamps" "$logs" "$cache/work"
chmod 0755 "$cache"
exec 9>"$cache/.lock"
flock -w 3600 9 || die "another build-host.sh holds $cache/.lock"

# ---------------------------------------------------------------- helpers
hash_text() { sha256sum | cut -c1-32; }
# Content hash of a directory tree (paths, modes, symlink targets, file contents).
hash_tree() {
	local d=$1
	[ -d "$d" ] || { echo none; return; }
	(cd "$d" && find . -mindepth 1 -printf '%y %m %P %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | hash_text
}
stamp_ok() { [ "$force" = 0 ] && [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" > "$stamps/$1.tmp" && mv -f "$stamps/$1.tmp" "$stamps/$1"; }
stamp_drop() { for s in "$@"; do rm -f "$stamps/$s"; done; }

mounts_under() { awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts; }
chroot_umount() {
	local m
	# deepest first
	for m in $(mounts_under "$rootfs" | sort -r); do umount -l "$m" 2>/dev/null || true; done
}
chroot_mount() {
	mount -t proc proc "$rootfs/proc"
	mount -t sysfs sysfs "$rootfs/sys"
	mount --bind /dev "$rootfs/dev"
	mount --bind /dev/pts "$rootfs/dev/pts" 2>/dev/null || true
	mkdir -p "$cache/apt-archives/partial" "$rootfs/var/cache/apt/archives"
	mount --bind "$cache/apt-archives" "$rootfs/var/cache/apt/archives"
}
in_chroot() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$rootfs" "$@"; }
# Never rm -rf a tree with something mounted inside it (it could be /dev).
safe_rm_rootfs() {
	chroot_umount
	[ -z "$(mounts_under "$rootfs")" ] || die "still mounted under $rootfs: $(mounts_under "$rootfs" | tr '\n' ' ')"
	rm -rf --one-file-system "$rootfs"
}
cleanup() {
	local rc=$?
	[ -d "$rootfs" ] && chroot_umount
	[ $rc -eq 0 ] || say "FAILED (exit $rc); logs in $logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_logged NAME CMD...: output to $logs/NAME.log, shown (tail) on failure.
run_logged() {
	local name=$1; shift
	if ! "$@" > "$logs/$name.log" 2>&1; then
		tail -n 40 "$logs/$name.log" >&2
		die "$name failed (full log: $logs/$name.log)"
	fi
}

# copy_into_rootfs DIR: DIR's tree over the rootfs, root-owned. Directory symlinks
# of the rootfs are kept: with merged /usr, a DESTDIR's lib/ or sbin/ lands in usr/.
copy_into_rootfs() {
	tar -C "$1" --owner=0 --group=0 -cf - . | tar -C "$rootfs" --keep-directory-symlink --no-overwrite-dir -xf -
}

# ---------------------------------------------------------------- layer: base
base_pkgs="systemd,systemd-sysv,udev,kmod,dbus,kexec-tools,ndctl,daxctl,e2fsprogs,dracut-core,cpio,gzip,zstd,\
python3,libjson-c5,libkmod2,libblkid1,libsystemd0,busybox-static,procps,psmisc,strace,less,ca-certificates"
# libvirt as an operator's host has it (libvirt-daemon-system: libvirtd enabled, the
# libvirt-qemu user), the one from backports that goes with QEMU 10: scenario-run
# keeps one libvirt domain among its VMs.
bpo_pkgs="qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients"

layer_base() {
	safe_rm_rootfs
	stamp_drop kernels project harness initrd-old initrd-new image
	mkdir -p "$cache/debootstrap-debs"
	say "  debootstrap $suite from $mirror (log: $logs/debootstrap.log)"
	run_logged debootstrap debootstrap --variant=minbase --include="$base_pkgs" \
		--cache-dir="$cache/debootstrap-debs" "$suite" "$rootfs" "$mirror"

	# Configuration a package postinst would otherwise do, or that the test needs.
	printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
	chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
	cat > "$rootfs/etc/apt/sources.list.d/bookworm-backports.sources" <<-SRC
	Types: deb
	URIs: $mirror
	Suites: bookworm-backports
	Components: main
	Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	SRC
	chroot_mount
	say "  QEMU from bookworm-backports in the chroot (log: $logs/apt.log)"
	run_logged apt in_chroot sh -c "apt-get update -q &&
		apt-get install -y -q --no-install-recommends -t bookworm-backports $bpo_pkgs"
	in_chroot qemu-system-x86_64 --version | head -n1 | sed 's/^/[build-host]   /' >&2
	in_chroot libvirtd --version | sed 's/^/[build-host]   /' >&2
	# No NAT network at boot (it wants dnsmasq and iptables; the test's domains have no NIC).
	rm -f "$rootfs/etc/libvirt/qemu/networks/autostart/default.xml"
	chroot_umount
	rm -f "$rootfs/usr/sbin/policy-rc.d"

	echo testhost > "$rootfs/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\ttesthost\n' > "$rootfs/etc/hosts"
	printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' > "$rootfs/etc/fstab"
	# A fixed machine id: no first-boot logic (systemd-firstboot would prompt on the console).
	head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$rootfs/etc/machine-id"
	echo >> "$rootfs/etc/machine-id"
	in_chroot passwd -d root >/dev/null
	mkdir -p "$rootfs/var/log/journal"
	# Timers that would only add noise during a test.
	for u in e2scrub_all.timer e2scrub_reap.service fstrim.timer apt-daily.timer apt-daily-upgrade.timer; do
		ln -sf /dev/null "$rootfs/etc/systemd/system/$u"
	done
	in_chroot apt-get clean
}

# ---------------------------------------------------------------- layer: kernels
old_kver=${HU_SYSTEM_OLD_KVER:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)}
if [ -z "$old_kver" ] || [ ! -r "/boot/vmlinuz-$old_kver" ] || [ ! -d "/lib/modules/$old_kver" ]; then
	die "no /boot/vmlinuz-* with /lib/modules on this machine (install linux-image-amd64)"
fi

layer_kernels() {
	local deb=$1 new_kver=$2 x=$cache/work/newkernel
	stamp_drop initrd-old initrd-new image
	rm -rf "$rootfs"/boot/vmlinuz-* "$rootfs"/boot/initrd.img-* "$rootfs"/boot/System.map-* \
		"$rootfs"/boot/config-* "$rootfs"/usr/lib/modules/*
	mkdir -p "$rootfs/usr/lib/modules" "$rootfs/boot"
	cp /boot/vmlinuz-"$old_kver" /boot/config-"$old_kver" "$rootfs/boot/"
	cp /boot/System.map-"$old_kver" "$rootfs/boot/" 2>/dev/null || true
	cp -a /lib/modules/"$old_kver" "$rootfs/usr/lib/modules/"
	rm -rf "$x" && mkdir -p "$x"
	dpkg -x "$deb" "$x"
	cp "$x/boot/vmlinuz-$new_kver" "$x/boot/config-$new_kver" "$rootfs/boot/"
	cp "$x/boot/System.map-$new_kver" "$rootfs/boot/" 2>/dev/null || true
	if [ -d "$x/usr/lib/modules/$new_kver" ]; then
		cp -a "$x/usr/lib/modules/$new_kver" "$rootfs/usr/lib/modules/"
	else
		cp -a "$x/lib/modules/$new_kver" "$rootfs/usr/lib/modules/"
	fi
	rm -rf "$x"
	in_chroot depmod -a "$old_kver"
	in_chroot depmod -a "$new_kver"
}

# ---------------------------------------------------------------- layer: project
# make install into a scratch DESTDIR; the layer key is the installed content, so
# the image changes only when what gets installed changes.
# Objects go to a build dir of our own inside the clone, so a developer's `make`
# in build/ and this one never write the same files at the same time.
# HU_SYSTEM_PROJECT_SRC=DIR builds another tree instead (e.g. `git archive HEAD` unpacked).
project_src=${HU_SYSTEM_PROJECT_SRC:-$repo}
project_dest=$cache/work/project-dest
project_build=$project_src/build/system-obj
# With libvirt (the image has it, and scenario-run a libvirt domain): a build
# without libvirt-dev here fails instead of testing less.
project_make=(make -C "$project_src" BUILD="$project_build" WITH_LIBVIRT=yes)
build_project() {
	rm -rf "$project_dest"
	mkdir -p "$project_dest"
	run_logged make "${project_make[@]}" all
	run_logged make-install "${project_make[@]}" install DESTDIR="$project_dest" PREFIX=/usr
}
layer_project() {
	local f
	stamp_drop image
	if [ -f "$stamps/project.files" ]; then
		while IFS= read -r f; do
			rm -f "$rootfs/$f"
		done < "$stamps/project.files"
	fi
	(cd "$project_dest" && find . -mindepth 1 ! -type d -printf '%P\n') > "$stamps/project.files"
	copy_into_rootfs "$project_dest"
	# What a Debian package's postinst would do: enable the units it ships
	# (those with an [Install] section; not templates, not drop-ins).
	while IFS= read -r f; do
		case "$f" in
		lib/systemd/system/* | usr/lib/systemd/system/*) ;;
		*) continue ;;
		esac
		case "$f" in
		*.service | *.socket | *.path | *.timer) ;;
		*) continue ;;
		esac
		unit=${f#usr/}
		unit=${unit#lib/systemd/system/}
		case "$unit" in */* | *@*) continue ;; esac
		grep -q '^\[Install\]' "$rootfs/$f" || continue
		if systemctl --root="$rootfs" enable "$unit" >/dev/null 2>&1; then
			say "  enabled $unit"
		else
			say "  warning: systemctl enable $unit failed"
		fi
	done < "$stamps/project.files"
}

# ---------------------------------------------------------------- layer: harness
layer_harness() {
	local f
	stamp_drop image
	if [ -f "$stamps/harness.files" ]; then
		while IFS= read -r f; do
			rm -f "$rootfs/$f"
		done < "$stamps/harness.files"
	fi
	(cd "$here/image" && find . -mindepth 1 ! -type d -printf '%P\n') > "$stamps/harness.files"
	copy_into_rootfs "$here/image"
	systemctl --root="$rootfs" enable hu-scenario.service >/dev/null 2>&1
}

# ---------------------------------------------------------------- layer: initrd
dracut_modules="systemd systemd-initrd dracut-systemd base kernel-modules rootfs-block udev-rules fs-lib"
dracut_drivers="virtio_blk virtio_pci ext4 nd_pmem nd_e820 libnvdimm"
hu_dracut=$project_src/dracut/90host-upgrade
hu_dracut_used() { [ -f "$hu_dracut/module-setup.sh" ]; }

# The product's dracut module: used when the repository has one. If `make install`
# did not put it into the image, copy it from the repository.
install_hu_dracut() {
	local dst=$rootfs/usr/lib/dracut/modules.d/90host-upgrade
	if grep -q '^usr/lib/dracut/modules.d/90host-upgrade/' "$stamps/project.files" 2>/dev/null; then
		return 0
	fi
	rm -rf "$dst"
	if hu_dracut_used; then
		mkdir -p "$dst"
		cp -a "$hu_dracut/." "$dst/"
		chmod 0755 "$dst"/*.sh 2>/dev/null || true
	fi
}

build_initrd() {
	local kver=$1 add=()
	hu_dracut_used && add=(--add host-upgrade)
	in_chroot dracut --force --no-hostonly --kver "$kver" -m "$dracut_modules" "${add[@]}" \
		--add-drivers "$dracut_drivers" "/boot/initrd.img-$kver"
}

# ================================================================ main
say "cache $cache, project $project_src"

# -- base
base_key=$( { echo "$suite $mirror $base_pkgs $bpo_pkgs"; declare -f layer_base; } | hash_text)
if stamp_ok base "$base_key" && [ -x "$rootfs/usr/bin/qemu-system-x86_64" ]; then
	say "base: cached"
else
	t=$EPOCHREALTIME; say "base: building"
	stamp_drop base
	layer_base
	stamp_set base "$base_key"
	say "base: done ($(since "$t")s)"
fi

# -- kernels
t=$EPOCHREALTIME
new_pkg=${HU_SYSTEM_NEW_KERNEL_PKG:-$(in_chroot apt-cache search --names-only '^linux-image-6\.12\.[0-9.]+\+deb12-amd64$' |
	cut -d' ' -f1 | sort -V | tail -n1)}
[ -n "$new_pkg" ] || die "no linux-image-6.12.*+deb12-amd64 in the image's apt lists (bookworm-backports)"
new_kver=${new_pkg#linux-image-}
mkdir -p "$cache/debs"
deb=$(find "$cache/debs" -maxdepth 1 -name "${new_pkg}_*.deb" | sort -V | tail -n1)
if [ -z "$deb" ]; then
	say "kernels: downloading $new_pkg"
	chroot_mount
	rm -rf "$rootfs/tmp/kdl" && mkdir -p "$rootfs/tmp/kdl"
	run_logged apt-download in_chroot sh -c "cd /tmp/kdl && apt-get download $new_pkg"
	chroot_umount
	mv "$rootfs"/tmp/kdl/*.deb "$cache/debs/"
	rm -rf "$rootfs/tmp/kdl"
	deb=$(find "$cache/debs" -maxdepth 1 -name "${new_pkg}_*.deb" | sort -V | tail -n1)
fi
kernels_key=$( { echo "$old_kver $new_kver $(basename "$deb")"; stat -c '%s %Y' "/boot/vmlinuz-$old_kver";
	declare -f layer_kernels; } | hash_text)
if stamp_ok kernels "$kernels_key" && [ -r "$rootfs/boot/vmlinuz-$new_kver" ]; then
	say "kernels: cached ($old_kver, $new_kver)"
else
	say "kernels: installing $old_kver (this machine) and $new_kver ($(basename "$deb"))"
	layer_kernels "$deb" "$new_kver"
	stamp_set kernels "$kernels_key"
	say "kernels: done ($(since "$t")s)"
fi

# -- project
t=$EPOCHREALTIME
build_project
project_key=$( { hash_tree "$project_dest"; declare -f layer_project; } | hash_text)
if stamp_ok project "$project_key"; then
	say "project: unchanged ($(since "$t")s for make)"
else
	layer_project
	stamp_set project "$project_key"
	say "project: installed $(wc -l < "$stamps/project.files") files ($(since "$t")s)"
fi

# -- harness files inside the image
t=$EPOCHREALTIME
harness_key=$( { hash_tree "$here/image"; declare -f layer_harness; } | hash_text)
if stamp_ok harness "$harness_key"; then
	say "harness: cached"
else
	layer_harness
	stamp_set harness "$harness_key"
	say "harness: installed ($(since "$t")s)"
fi

# -- initrds (both in parallel: dracut is mostly single-threaded)
# shellcheck disable=SC2016 # ${Version} is dpkg-query's
dracut_ver=$(in_chroot dpkg-query -W -f='${Version}' dracut-core)
hu_key=none
hu_dracut_used && hu_key="$(hash_tree "$hu_dracut") $project_key"
install_hu_dracut
todo=()
for which in old new; do
	kver=$old_kver; [ $which = new ] && kver=$new_kver
	key=$( { echo "$kver $dracut_ver $dracut_modules $dracut_drivers $hu_key"; declare -f build_initrd;
		cat "$stamps/kernels"; } | hash_text)
	eval "initrd_key_$which=\$key"
	if stamp_ok "initrd-$which" "$key" && [ -s "$rootfs/boot/initrd.img-$kver" ]; then
		say "initrd $kver: cached"
	else
		todo+=("$which:$kver")
	fi
done
if [ ${#todo[@]} -gt 0 ]; then
	t=$EPOCHREALTIME
	say "initrd: dracut for ${todo[*]#*:}$(hu_dracut_used && echo ' (with --add host-upgrade)')"
	stamp_drop image
	chroot_mount
	pids=()
	for item in "${todo[@]}"; do
		kver=${item#*:}
		build_initrd "$kver" > "$logs/dracut-$kver.log" 2>&1 &
		pids+=("$!")
	done
	i=0
	for item in "${todo[@]}"; do
		which=${item%%:*}; kver=${item#*:}
		if ! wait "${pids[$i]}"; then
			chroot_umount
			tail -n 30 "$logs/dracut-$kver.log" >&2
			die "dracut for $kver failed (log: $logs/dracut-$kver.log)"
		fi
		eval "stamp_set initrd-$which \"\$initrd_key_$which\""
		say "  initrd.img-$kver: $(du -h "$rootfs/boot/initrd.img-$kver" | cut -f1)"
		i=$((i + 1))
	done
	chroot_umount
	say "initrd: done ($(since "$t")s)"
fi

# -- tick guest (not in the image: run-host.sh puts it on the scenario disk)
"$repo/tests/guest/build-tick.sh" "$cache/tick.elf"

# -- image
image_key=$(cat "$stamps/base" "$stamps/kernels" "$stamps/project" "$stamps/harness" \
	"$stamps/initrd-old" "$stamps/initrd-new" <(echo "$image_size") | hash_text)
if stamp_ok image "$image_key" && [ -s "$cache/host.img" ] && [ -s "$cache/host.env" ]; then
	say "image: cached"
else
	t=$EPOCHREALTIME
	chroot_umount
	[ -z "$(mounts_under "$rootfs")" ] || die "something is still mounted under $rootfs"
	rm -f "$cache/host.img.tmp"
	run_logged mkfs mkfs.ext4 -q -F -L hu-root -d "$rootfs" "$cache/host.img.tmp" "$image_size"
	mkdir -p "$cache/boot"
	rm -f "$cache"/boot/*
	cp "$rootfs/boot/vmlinuz-$old_kver" "$rootfs/boot/initrd.img-$old_kver" "$cache/boot/"
	cat > "$cache/host.env.tmp" <<-ENV
	# written by tests/system/build-host.sh
	HU_IMAGE=$cache/host.img
	HU_IMAGE_KEY=$image_key
	HU_OLD_KVER=$old_kver
	HU_NEW_KVER=$new_kver
	HU_OLD_VMLINUZ=$cache/boot/vmlinuz-$old_kver
	HU_OLD_INITRD=$cache/boot/initrd.img-$old_kver
	HU_TICK_ELF=$cache/tick.elf
	HU_DRACUT_HU_MODULE=$(hu_dracut_used && echo yes || echo no)
	ENV
	mv -f "$cache/host.img.tmp" "$cache/host.img"
	mv -f "$cache/host.env.tmp" "$cache/host.env"
	stamp_set image "$image_key"
	used=$(du -sh --apparent-size "$rootfs" | cut -f1)
	say "image: $cache/host.img ($image_size, $used of files) ($(since "$t")s)"
fi
say "ready: old kernel $old_kver, new kernel $new_kver, total $(since "$t_start")s"
