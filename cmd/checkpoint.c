/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade checkpoint: plan, then save every VM (all-or-nothing). */
#include <getopt.h>
#include <string.h>
#include "cmd.h"

static const char usage[] =
	"usage: host-upgrade checkpoint [--state-dir DIR] [--vm NAME]... [--jobs N] [--no-reboot]\n"
	"                               [--volatile copy|refuse] [--space-margin SIZE]\n"
	"                               [--suspend | --suspend-vm NAME]... [--suspend-timeout SECONDS]\n"
	"Save every QEMU's state with cpr-reboot and quit it. If any VM fails,\n"
	"every VM is resumed and nothing is quit.\n";



int cmd_checkpoint(int argc, char **argv)
{
	struct cli c = {};
	struct hu_vm_list *list = NULL;
	int blocked = 0, r;

	r = cli_parse(&c, argc, argv, usage, CLI_OPTS(cli_plan_opts), cli_plan_option);
	if (r)
		goto out;
	r = cli_discover_and_plan(&c, &list, &blocked);
	if (r < 0) {
		r = EXIT_BLOCKED;
		goto out;
	}
	if (blocked) {
		for (size_t i = 0; i < hu_vm_list_count(list); i++) {
			struct hu_vm *vm = hu_vm_list_get(list, i);

			for (size_t b = 0; b < hu_vm_get_n_blockers(vm); b++)
				fprintf(stderr, "host-upgrade: checkpoint: %s: %s\n", hu_vm_get_name(vm),
					hu_vm_get_blocker(vm, b));
		}
		cli_error(&c, "blocked", "nothing was stopped (see `host-upgrade plan`)");
		r = EXIT_BLOCKED;
		goto out;
	}
	r = hu_checkpoint(c.ctx, list, &c.opts);
	if (r < 0) {
		cli_error(&c, "failed", r == -EIO ? "every VM was resumed" : strerror(-r));
		r = EXIT_BLOCKED;
	}
out:
	hu_vm_list_free(list);
	hu_unref(c.ctx);
	return r;
}
