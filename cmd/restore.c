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

static int parse_manager(struct cli *c, const char *arg)
{
	if (strcmp(arg, "none") && strcmp(arg, "libvirt") && strcmp(arg, "proxmox"))
		return -1;
	c->opts.only_manager = arg;
	return 0;
}

static const struct cli_option restore_options[] = {
	CLI_ARG("manager", "none|libvirt|proxmox", parse_manager,
		"only the VMs this manager runs: after a kexec, host-upgrade-restore.service restores "
		"\"none\" before libvirtd starts, host-upgrade-restore-libvirt.service \"libvirt\" after it, "
		"host-upgrade-restore-proxmox.service \"proxmox\" before pve-guests.service"),
	CLI_END
};

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
		 "host-upgrade-restore.service runs it, host-upgrade-restore-libvirt.service\n"
		 "for libvirt's domains once libvirtd is up, and\n"
		 "host-upgrade-restore-proxmox.service for Proxmox VE's VMs before pve-guests.",
	.options = CLI_TABLES(restore_options),
};

const struct cli_verb cli_verb_abort = {
	.name = "abort",
	.run = cmd_abort,
	.summary = "after a failure or crash: bring every VM back now",
	.about = "After a failed or interrupted checkpoint (even a kill -9): resume every VM\n"
		 "whose QEMU still runs and restore every VM that was already saved.",
};
