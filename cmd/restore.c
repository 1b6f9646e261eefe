/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade restore | abort: converge every VM of the manifest to running. */
#include <string.h>
#include "cmd.h"

static const char restore_usage[] =
	"usage: host-upgrade restore [--state-dir DIR] [--vm NAME]... [--jobs N]\n"
	"Start every checkpointed VM from its saved state. Idempotent: VMs already\n"
	"running are never started again.\n";
static const char abort_usage[] =
	"usage: host-upgrade abort [--state-dir DIR]\n"
	"After a failed or interrupted checkpoint: resume every VM it stopped and\n"
	"restore every VM it already saved.\n";

static int converge(int argc, char **argv, bool is_abort)
{
	struct cli c = {};
	int r;

	r = cli_parse(&c, argc, argv, is_abort ? abort_usage : restore_usage, NULL, NULL);
	if (r)
		goto out;
	r = is_abort ? hu_abort(c.ctx) : hu_restore(c.ctx, &c.opts);
	if (r < 0) {
		r = EXIT_BLOCKED;
	} else if (r > 0) {
		char why[64];

		snprintf(why, sizeof(why), "%d VM%s not running (see status)", r, r == 1 ? "" : "s");
		cli_error(&c, "incomplete", why);
		r = EXIT_BLOCKED;
	}
out:
	hu_unref(c.ctx);
	return r;
}

int cmd_restore(int argc, char **argv) { return converge(argc, argv, false); }
int cmd_abort(int argc, char **argv) { return converge(argc, argv, true); }
