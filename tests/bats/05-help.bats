#!/usr/bin/env bats
# --help and the man page, printed from the option tables in cmd/ (no QEMU): the output of
# `host-upgrade --help` and of every `VERB --help` against tests/bats/golden/help*.txt, and
# build/host-upgrade.8 naming every verb and every option and rendering without warnings.
# After changing a table or its help text, regenerate the golden files and read the diff:
#   build/host-upgrade --help >tests/bats/golden/help.txt
#   for v in $(ls tests/bats/golden/help-*.txt | sed 's|.*/help-||;s|\.txt$||'); do
#     build/host-upgrade $v --help >tests/bats/golden/help-$v.txt; done

load helpers

GOLDEN=$BATS_TEST_DIRNAME/golden

setup() {
	[ -x "$HU_BIN" ] || skip "no $HU_BIN (run make)"
	MAN=$(dirname "$HU_BIN")/host-upgrade.8
}

# The verbs, as `host-upgrade --help` lists them.
verbs() {
	"$HU_BIN" --help | sed -n '/^verbs:/,/^$/s/^  \([a-z-]*\) .*/\1/p'
}

# The options `host-upgrade VERB --help` lists (its own and the common ones), as --NAME.
options_of() {
	"$HU_BIN" "$1" --help | sed -n 's/^  \(--[a-z-]*\).*/\1/p'
}

@test "host-upgrade --help, -h and help match golden/help.txt (exit 0, stdout only)" {
	local how
	for how in --help -h help; do
		run --separate-stderr "$HU_BIN" $how
		[ "$status" -eq 0 ]
		[ -z "$stderr" ]
		diff -u "$GOLDEN/help.txt" - <<<"$output"
	done
	# no verb: the same text on stderr, exit 2
	run --separate-stderr "$HU_BIN"
	[ "$status" -eq 2 ]
	[ -z "$output" ]
	diff -u "$GOLDEN/help.txt" - <<<"$stderr"
}

@test "every VERB --help (and help VERB) matches golden/help-VERB.txt; every verb has one" {
	local v n=0
	for v in $(verbs); do
		n=$((n + 1))
		[ -f "$GOLDEN/help-$v.txt" ] || { echo "no golden/help-$v.txt"; false; }
		run --separate-stderr "$HU_BIN" "$v" --help
		echo "$v --help: $status $stderr"
		[ "$status" -eq 0 ]
		[ -z "$stderr" ]
		diff -u "$GOLDEN/help-$v.txt" - <<<"$output"
		run --separate-stderr "$HU_BIN" help "$v"
		[ "$status" -eq 0 ]
		diff -u "$GOLDEN/help-$v.txt" - <<<"$output"
	done
	[ "$n" -eq 10 ]
	# and no golden file for a verb that is gone
	[ "$(ls "$GOLDEN"/help-*.txt | wc -l)" -eq "$n" ]
}

@test "a usage error shows the verb's usage lines and where its options are, on stderr" {
	run --separate-stderr "$HU_BIN" stage --no-such-option
	[ "$status" -eq 2 ]
	[ -z "$output" ]
	[ "$stderr" = "host-upgrade: stage: --no-such-option: unknown option, or its value is missing
usage: host-upgrade stage --kernel PATH [options]
       host-upgrade stage --unload [options]
Try \`host-upgrade stage --help\` for its options." ]
}

@test "build/host-upgrade.8 is what --man prints, names every verb and option, renders without warnings" {
	[ -f "$MAN" ] || skip "no $MAN (run make)"
	command -v man >/dev/null || skip "no man (scripts/install-deps installs man-db)"
	diff -u "$MAN" <("$HU_BIN" --man)
	local text v o section
	text=$(MANWIDTH=80 man -l "$MAN" 2>/dev/null)
	[[ "$text" == *"HOST-UPGRADE(8)"* ]]
	for section in NAME SYNOPSIS DESCRIPTION OPTIONS VERBS "EXIT STATUS" FILES "KERNEL COMMAND LINE" \
		ENVIRONMENT EXAMPLES "SEE ALSO"; do
		grep -qx "$section" <<<"$text" || { echo "no section $section"; false; }
	done
	# the common options in OPTIONS, each verb's own in its section (from its heading
	# to the next one)
	local common own sec
	common=$("$HU_BIN" --help | sed -n '/^common options/,/^$/s/^  \(--[a-z-]*\).*/\1/p')
	[ -n "$common" ]
	sec=$(sed -n '/^OPTIONS$/,/^VERBS$/p' <<<"$text")
	for o in $common; do
		grep -qE -- "^       $o( |$)" <<<"$sec" || { echo "$o not in OPTIONS"; false; }
	done
	for v in $(verbs); do
		sec=$(sed -n "/^   $v\$/,/^   [a-z-]*\$/p" <<<"$text" | sed '1d')
		[[ "$sec" == *"host-upgrade $v "* ]] || { echo "no section for $v"; false; }
		own=$(comm -23 <(options_of "$v" | sort) <(sort <<<"$common"))
		for o in $own; do
			grep -qE -- "^       $o( |$)" <<<"$sec" || { echo "$v: $o not in its section"; false; }
		done
	done
	grep -q 'hu\.restore=1' <<<"$text"
	grep -q 'hu\.state=UUID=' <<<"$text"
	grep -q 'manifest\.json' <<<"$text"
	grep -q 'journal\.jsonl' <<<"$text"
	grep -q '/var/lib/host-upgrade' <<<"$text"
	run --separate-stderr env MANWIDTH=80 man --warnings -l "$MAN"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
}

@test "make install puts the man page in DESTDIR/PREFIX/share/man/man8" {
	local top d=$BATS_TEST_TMPDIR/destdir
	top=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	[ -f "$MAN" ] || skip "no $MAN (run make)"
	run make -s -C "$top" BUILD="$(dirname "$HU_BIN")" DESTDIR="$d" PREFIX=/usr UNITDIR=/usr/lib/systemd/system \
		DRACUTDIR=/usr/lib/dracut/modules.d install
	echo "$output"
	[ "$status" -eq 0 ]
	cmp "$MAN" "$d/usr/share/man/man8/host-upgrade.8"
	[ "$(stat -c %a "$d/usr/share/man/man8/host-upgrade.8")" = 644 ]
}
