/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade checkpoint: plan, then save every VM (all-or-nothing). */
#include <string.h>
#include "cmd.h"

static int cmd_checkpoint(struct cli *c)
{
	struct hu_vm_list *list = NULL;
	int blocked = 0, r;

	r = cli_discover_and_plan(c, &list, &blocked);
	if (r < 0)
		return EXIT_BLOCKED;
	if (blocked) {
		for (size_t i = 0; i < hu_vm_list_count(list); i++) {
			struct hu_vm *vm = hu_vm_list_get(list, i);

			for (size_t b = 0; b < hu_vm_get_n_blockers(vm); b++)
				fprintf(stderr, "host-upgrade: checkpoint: %s: %s\n", hu_vm_get_name(vm),
					hu_vm_get_blocker(vm, b));
		}
		cli_error(c, "blocked", "nothing was stopped (see `host-upgrade plan`)");
		r = EXIT_BLOCKED;
		goto out;
	}
	r = hu_checkpoint(c->ctx, list, &c->opts);
	if (r < 0) {
		cli_report_vms(c, list);
		cli_fail(c, r, "failed", r == -EIO ? "every VM was resumed" : NULL);
		r = EXIT_BLOCKED;
	}
out:
	hu_vm_list_free(list);
	return r;
}

const struct cli_verb cli_verb_checkpoint = {
	.name = "checkpoint",
	.run = cmd_checkpoint,
	.summary = "save every VM (all-or-nothing) and quit its QEMU",
	.about = "Check every VM as plan does, then save every QEMU's state with cpr-reboot (in\n"
		 "parallel) and quit it. Only when every VM is saved does any QEMU quit: if one\n"
		 "fails, every VM is resumed and nothing is quit. Nothing is stopped while\n"
		 "anything blocks.",
	.options = CLI_TABLES(cli_plan_options),
};
