/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade early-boot: the initrd side of the restore (run by the dracut module). */
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

static struct hu_early_opts early = {
	.root = "/sysroot",
	.run_dir = "/run/host-upgrade",
	.wants_dir = "/run/systemd/system/sysinit.target.wants",
	.unit_path = "/usr/lib/systemd/system/host-upgrade-restore.service",
	.dropin_dir = "/run/systemd/system/host-upgrade-restore.service.d",
	.wait_ms = 20000,
};

/* clang-format off */
static int parse_root(struct cli *c, const char *arg) { early.root = arg; return 0; }
static int parse_run_dir(struct cli *c, const char *arg) { early.run_dir = arg; return 0; }
static int parse_wants_dir(struct cli *c, const char *arg) { early.wants_dir = arg; return 0; }
static int parse_dropin_dir(struct cli *c, const char *arg) { early.dropin_dir = arg; return 0; }
static int parse_no_modules(struct cli *c, const char *arg) { early.no_modules = true; return 0; }
/* clang-format on */

static int parse_wait(struct cli *c, const char *arg)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (*end || v > 600)
		return -1;
	early.wait_ms = (unsigned)v * 1000;
	return 0;
}

/* Where things are in the initrd; the defaults are the dracut module's. */
static const struct cli_option early_options[] = {
	CLI_ARG("root", "DIR", parse_root, "the real root as mounted in the initrd (default /sysroot)"),
	CLI_ARG("run-dir", "DIR", parse_run_dir, "where early-boot.json goes (default /run/host-upgrade)"),
	CLI_ARG("wants-dir", "DIR", parse_wants_dir,
		"where the restore unit is linked (default /run/systemd/system/sysinit.target.wants)"),
	CLI_ARG("dropin-dir", "DIR", parse_dropin_dir,
		"the restore unit's drop-in dir, for the RAM mounts "
		"(default /run/systemd/system/host-upgrade-restore.service.d)"),
	CLI_ARG("wait", "SECONDS", parse_wait,
		"how long to wait for the pmem/DAX devices, 0 to 600 (default 20)"),
	CLI_ARG("no-modules", NULL, parse_no_modules, "load no modules (tests)"),
	CLI_END
};

static int cmd_early_boot(struct cli *c)
{
	int r = hu_early_boot(c->ctx, &early);

	/* Never fail the boot: restore refuses what did not survive. */
	if (r < 0)
		cli_fail(c, r, "prepare", NULL);
	else if (r > 0) {
		char why[128];

		snprintf(why, sizeof(why), "%d RAM medi%s did not come back as checkpointed", r,
			 r == 1 ? "um" : "a");
		cli_fail_why(c, "media", why, "restore will refuse those VMs");
	}
	return r == 0 ? 0 : EXIT_BLOCKED;
}

const struct cli_verb cli_verb_early_boot = {
	.name = "early-boot",
	.run = cmd_early_boot,
	.summary = "initrd side: modules, pmem/DAX checks, arrange the restore unit",
	.about = "In the initrd (host-upgrade-early.service of the dracut module), only when\n"
		 "hu.restore=1 is on the kernel command line: load the modules the RAM medium and\n"
		 "KVM need, wait for every pmem/DAX device holding VM RAM and check it is the same\n"
		 "namespace (uuid, mode, size), write early-boot.json and link the restore unit\n"
		 "under /run so it runs first thing after switch-root. It starts no QEMU.",
	.options = CLI_TABLES(early_options),
};
