/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade restore | abort: converge every VM of the manifest to running. */
#include <string.h>
#include "cmd.h"

static int converge(struct cli *c, bool is_abort)
{
	int r = is_abort ? hu_abort(c->ctx) : hu_restore(c->ctx, &c->opts);

	if (r < 0) {
		cli_fail(c, r, NULL, NULL);
		return EXIT_BLOCKED;
	}
	if (r > 0) {
		cli_report_manifest(c);
		char why[64];

		snprintf(why, sizeof(why), "%d VM%s not running (see status)", r, r == 1 ? "" : "s");
		cli_error(c, "incomplete", why);
		return EXIT_BLOCKED;
	}
	return 0;
}

/* clang-format off */
static int cmd_restore(struct cli *c) { return converge(c, false); }
static int cmd_abort(struct cli *c) { return converge(c, true); }
/* clang-format on */

const struct cli_verb cli_verb_restore = {
	.name = "restore",
	.run = cmd_restore,
	.summary = "start every checkpointed VM from its saved state",
	.about = "Start every checkpointed VM from its saved state: its recorded argv with\n"
		 "-incoming defer, back to the runstate it had. A VM is refused when its state\n"
		 "file, a disk or its RAM changed since the checkpoint. Idempotent: a VM whose\n"
		 "QEMU already runs is never started again. After the kexec, the unit\n"
		 "host-upgrade-restore.service runs it.",
};

const struct cli_verb cli_verb_abort = {
	.name = "abort",
	.run = cmd_abort,
	.summary = "after a failure or crash: bring every VM back now",
	.about = "After a failed or interrupted checkpoint (even a kill -9): resume every VM\n"
		 "whose QEMU still runs and restore every VM that was already saved.",
};
