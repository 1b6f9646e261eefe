#!/bin/sh
# Build the tick guest (tests/guest/tick.S): a multiboot v1 ELF of a few KB.
#   build-tick.sh OUT.elf
# Rebuilds only when tick.S or tick.ld is newer than OUT.elf. Needs binutils (as, ld).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT.elf" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
# shellcheck disable=SC3013 # -nt: dash and busybox sh have it
if [ -s "$out" ] && [ ! "$here/tick.S" -nt "$out" ] && [ ! "$here/tick.ld" -nt "$out" ]; then
	exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hu-tick.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
as --32 -o "$tmp/tick.o" "$here/tick.S"
nowarn=""
if ld --help 2>/dev/null | grep -q -- --no-warn-rwx-segments; then
	nowarn=--no-warn-rwx-segments
fi
# shellcheck disable=SC2086 # empty or one flag
ld -m elf_i386 -n $nowarn -T "$here/tick.ld" -o "$tmp/tick.elf" "$tmp/tick.o"
mkdir -p "$(dirname "$out")"
mv -f "$tmp/tick.elf" "$out"
