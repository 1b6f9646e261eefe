/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host-upgrade run: plan → preflight → stage → checkpoint → kexec reboot.
 * Any failure before the reboot leaves every VM running and no kernel staged.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cmd.h"

/* --dry-run means the whole run here, not stage's. */
static const struct cli_option run_options[] = {
	CLI_FLAG("dry-run", dry_run, "check every VM and the new kernel, show the steps, stop nothing"),
	CLI_FLAG("yes", yes, "go ahead without asking (needed when stdin is not a terminal)"), CLI_END
};

static bool confirm(const struct cli *c, const char *what)
{
	char answer[16] = "";

	if (c->yes)
		return true;
	if (!isatty(STDIN_FILENO)) {
		cli_error(c, "confirm", "not a terminal: pass --yes to go ahead");
		return false;
	}
	fprintf(stderr, "%s [y/N] ", what);
	if (!fgets(answer, sizeof(answer), stdin))
		return false;
	return answer[0] == 'y' || answer[0] == 'Y';
}

/* A run --no-reboot that failed restarted some VMs all the same (the
 * sequential group, or other VMs by prelaunch). */
static bool restarted_any(struct hu_vm_list *list)
{
	for (size_t i = 0; i < hu_vm_list_count(list); i++)
		if (!strcmp(hu_vm_get_state(hu_vm_list_get(list, i)), "restored"))
			return true;
	return false;
}

static void print_steps(const struct cli *c, const char *version)
{
	printf("steps:\n");
	if (c->opts.no_reboot) {
		printf("  1. the VMs restarted sequentially: checkpoint them (cpr-reboot), all-or-nothing,\n"
		       "     and restore them at once from their state (the QEMU binary now on disk)\n"
		       "  2. then, if every one of them is back, each VM restarted by prelaunch: the new\n"
		       "     QEMU starts beside the old one, which is saved; on failure it runs on\n");
		return;
	}
	printf("  1. stage kernel %s with kexec_file_load(2)\n"
	       "  2. checkpoint every VM above (cpr-reboot), all-or-nothing; on failure: unstage, resume all\n"
	       "  3. re-check the staged kernel, then start kexec.target through systemd\n"
	       "  4. after the kexec: the early-boot restore verifies RAM, disks and kernel, and restores every VM\n",
	       version);
}

static int cmd_run(struct cli *c)
{
	struct hu_vm_list *list = NULL;
	char *version = NULL;
	int blocked = 0, r;

	if (!c->opts.no_reboot && !c->stage.kernel) {
		cli_error(c, "--kernel", "is required (or --no-reboot for a QEMU-only upgrade)");
		r = EXIT_USAGE;
		goto out;
	}
	r = cli_discover_and_plan(c, &list, &blocked);
	if (r < 0) {
		r = EXIT_BLOCKED;
		goto out;
	}
	cli_print_plan(c, list, blocked == 0);
	if (blocked) {
		cli_error(c, "blocked", "nothing was stopped");
		r = EXIT_BLOCKED;
		goto out;
	}
	if (!c->opts.no_reboot) {
		/* Preflight the kernel before anything stops. */
		c->stage.dry_run = true;
		r = hu_stage(c->ctx, &c->stage, list, &version);
		if (r < 0) {
			cli_fail(c, r, "preflight", "the new kernel cannot be staged; nothing was stopped");
			r = EXIT_BLOCKED;
			goto out;
		}
		c->stage.dry_run = false;
		c->opts.target_kernel = version;
		r = hu_reboot_preflight(c->ctx);
		if (r < 0) {
			cli_fail(c, r, "preflight",
				 "the host could not be rebooted into it; nothing was stopped");
			r = EXIT_BLOCKED;
			goto out;
		}
	}
	print_steps(c, version);
	if (c->dry_run) {
		r = 0;
		goto out;
	}
	if (!confirm(c, "Go ahead?")) {
		r = EXIT_BLOCKED;
		goto out;
	}
	if (c->opts.no_reboot) {
		c->opts.restore_follows = true;
		r = hu_checkpoint(c->ctx, list, &c->opts);
		if (r != 0)
			cli_report_vms(c, list);
		if (r < 0)
			cli_fail(c, r, "checkpoint",
				 restarted_any(list)
					 ? "the VMs not restarted run on their old QEMU (see status)"
					 : "every VM was resumed");
		else if (r > 0)
			cli_error(
				c, "restore",
				"not every VM is running again: restore them before any reboot (see status)");
		r = r != 0 ? EXIT_BLOCKED : 0;
		goto out;
	}
	r = hu_stage(c->ctx, &c->stage, list, NULL);
	if (r < 0) {
		cli_fail(c, r, "stage", "nothing was stopped");
		r = EXIT_BLOCKED;
		goto out;
	}
	r = hu_checkpoint(c->ctx, list, &c->opts);
	if (r < 0) {
		cli_report_vms(c, list);
		cli_fail(c, r, "checkpoint", "every VM was resumed and the staged kernel unloaded");
		hu_unstage(c->ctx);
		r = EXIT_BLOCKED;
		goto out;
	}
	r = hu_reboot_kexec(c->ctx);
	if (r < 0) {
		/* The VMs are saved but the host will not kexec: bring them back now. */
		char *why = strdup(hu_get_error(c->ctx) ?: strerror(-r));

		hu_unstage(c->ctx);
		if (hu_abort(c->ctx) != 0)
			cli_report_manifest(c);
		cli_fail_why(c, "reboot", why ?: "out of memory",
			     "did not start; every VM was restored and the staged kernel unloaded");
		free(why);
		r = EXIT_BLOCKED;
		goto out;
	}
	fprintf(stderr, "host-upgrade: rebooting into %s\n", version);
	r = 0;
out:
	free(version);
	hu_vm_list_free(list);
	return r;
}

const struct cli_verb cli_verb_run = {
	.name = "run",
	.run = cmd_run,
	.summary = "the whole upgrade: plan, stage, checkpoint, kexec reboot",
	.usage = "--kernel PATH [options]\n--no-reboot [options]",
	.about = "Upgrade the host: check every VM, stage the new kernel, checkpoint every VM,\n"
		 "reboot into the new kernel through systemd's kexec.target; the early-boot\n"
		 "restore brings the VMs back. Any failure before the reboot leaves every VM\n"
		 "running and no kernel staged. It asks before it stops anything.\n"
		 "\n"
		 "With --no-reboot it checkpoints and restores at once: a QEMU-only upgrade with\n"
		 "the QEMU binary now on disk. The checkpoint is not flushed then, and is restored\n"
		 "only in the boot that took it. Each VM's new QEMU starts beside the running one\n"
		 "where the VM allows (prelaunch: the blackout is the save and the load only);\n"
		 "plan --no-reboot shows which. --restart sequential quits every old QEMU before\n"
		 "its new one starts, as before prelaunch.",
	.options = CLI_TABLES(cli_kernel_options, run_options, cli_plan_options, cli_restart_options),
};
