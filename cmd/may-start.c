/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host-upgrade may-start --vm NAME: for a VM's own unit, as
 *   ExecCondition=/usr/sbin/host-upgrade may-start --vm NAME
 * so the unit never cold-starts a VM next to its restored (or pending) self.
 * Exit 0: start it. Exit 1: host-upgrade restores it or it runs already.
 */
#include <stdio.h>
#include <string.h>
#include "cmd.h"

static int cmd_may_start(struct cli *c)
{
	struct hu_manifest *m = NULL;
	int r;

	if (c->n_vms != 1) {
		cli_error(c, "--vm", "exactly one VM name");
		r = EXIT_USAGE;
		goto out;
	}
	r = hu_manifest_load(c->ctx, &m);
	if (r == -ENOENT) {
		r = 0;
		goto out;
	}
	if (r < 0) {
		/* Unsure: do not cold-start over a checkpoint we cannot read. */
		cli_error(c, "manifest", hu_manifest_strerror(r));
		r = EXIT_BLOCKED;
		goto out;
	}
	r = 0;
	for (size_t i = 0; i < hu_manifest_count(m); i++) {
		const char *st = hu_manifest_vm_state(m, i);

		if (strcmp(hu_manifest_vm_name(m, i), c->vms[0]) != 0)
			continue;
		if (hu_manifest_vm_alive(m, i)) {
			fprintf(stderr, "host-upgrade: may-start: %s runs as pid %d (%s)\n", c->vms[0],
				(int)hu_manifest_vm_pid(m, i), st);
			r = EXIT_BLOCKED;
		} else if (!strcmp(st, "checkpointed")) {
			fprintf(stderr,
				"host-upgrade: may-start: %s is checkpointed: host-upgrade restores it "
				"(or run `host-upgrade abort`)\n",
				c->vms[0]);
			r = EXIT_BLOCKED;
		}
	}
out:
	hu_manifest_free(m);
	return r;
}

const struct cli_verb cli_verb_may_start = {
	.name = "may-start",
	.run = cmd_may_start,
	.summary = "for a VM's own unit (ExecCondition=): exit 1 if host-upgrade restores or runs it",
	.usage = "--vm NAME [options]",
	.about = "For a VM started by a unit of its own, as\n"
		 "ExecCondition=/usr/sbin/host-upgrade may-start --vm NAME (with\n"
		 "After=host-upgrade-restore.service): exit 0 when the unit may cold-start NAME;\n"
		 "exit 1 (the unit is skipped) while host-upgrade has it checkpointed or runs it\n"
		 "restored, or when the manifest cannot be read.",
};
