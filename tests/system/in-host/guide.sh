# shellcheck shell=bash
# The operator's guide, docs/preparing-a-host.md, as the test runs it. Its fenced
# blocks are marked in the Markdown source by an HTML comment on the line before:
#   <!-- hu-run: NAME [(why it runs in this form)] -->       run (or used) by the system test
#   <!-- hu-not-run: WHY -->                                 not run, and why
# Every ```sh / ```bash block carries one of them; a hu-run NAME is unique.
# Sourced by vms.sh inside the test host (GUIDE=/hu/preparing-a-host.md, copied there
# by run-host.sh) and by tests/bats/07-guide.bats (GUIDE=docs/preparing-a-host.md).
#
#   guide_blocks           one line per fenced block: "LINE LANG run|not-run|unmarked NAME"
#   guide_block NAME       the text of the hu-run block NAME (fails if there is not exactly one)
#   guide_run NAME [PRELUDE]  run block NAME with bash -e -o pipefail (PRELUDE first, e.g. the
#                          `declare -p` of a variable the block uses), its stdout to stdout;
#                          the block and its output go to the results (HU-RESULT lines).
#                          GUIDE_SED=EXPR: a sed expression applied to the block first (a
#                          block run on a copy: s|/etc/default/grub|COPY|)
#
# Functions used in $(...) must not fail under the scenario's ERR trap unless they mean it.

: "${GUIDE:=/hu/preparing-a-host.md}"

guide_blocks() {
	awk '
	function marker(l) {
		if (l ~ /^<!-- hu-run: /) { sub(/^<!-- hu-run: /, "", l); sub(/[ ].*$/, "", l); return "run " l }
		if (l ~ /^<!-- hu-not-run: /) return "not-run -"
		return "unmarked -"
	}
	inblock && /^```[ ]*$/ { inblock = 0; next }
	inblock { next }
	/^```/ { lang = substr($0, 4); sub(/[ ].*$/, "", lang); print NR, (lang == "" ? "-" : lang), marker(prev); inblock = 1; next }
	/[^ \t]/ { prev = $0 }
	' "$GUIDE"
}

guide_block() {
	local n
	n=$(guide_blocks | awk -v n="$1" '$3 == "run" && $4 == n' | wc -l)
	if [ "$n" != 1 ]; then
		echo "guide.sh: $GUIDE has $n hu-run blocks named '$1' (want 1)" >&2
		return 1
	fi
	awk -v want="$1" '
	inblock && /^```[ ]*$/ { if (mine) exit; inblock = 0; next }
	inblock { if (mine) print; next }
	/^```/ { inblock = 1; mine = (prev ~ ("^<!-- hu-run: " want "([ ]|$)")); next }
	/[^ \t]/ { prev = $0 }
	' "$GUIDE"
}

guide_run() {
	local name=$1 prelude=${2:-} f out rc=0
	f=$(mktemp /tmp/guide-"$name".XXXXXX)
	{
		printf '%s\n' "$prelude"
		guide_block "$name" | sed -e "${GUIDE_SED:-}"
	} > "$f" || { rm -f "$f"; hu_fail "guide: no block $name in $GUIDE"; }
	hu_result "guide [$name]${GUIDE_SED:+ (with sed $GUIDE_SED)}: $(guide_block "$name" | tr '\n\t' ' ' | tr -s ' ' | cut -c1-600)"
	out=$(mktemp /tmp/guide-"$name".out.XXXXXX)
	bash -e -o pipefail "$f" > "$out" || rc=$?
	hu_result "guide [$name] exit $rc: $(tr '\n\t' ' ' < "$out" | tr -s ' ' | cut -c1-600)"
	cat "$out"
	rm -f "$f" "$out"
	[ "$rc" = 0 ] || hu_fail "guide block $name failed (exit $rc)"
}
