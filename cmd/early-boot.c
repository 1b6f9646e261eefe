/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade early-boot: the initrd side of the restore (run by the dracut module). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

static const char usage[] =
	"usage: host-upgrade early-boot [--root DIR] [--state-dir DIR] [--run-dir DIR]\n"
	"                               [--wants-dir DIR] [--dropin-dir DIR] [--wait SECONDS]\n"
	"                               [--no-modules]\n"
	"In the initrd, only when hu.restore=1 is on the kernel command line: load the\n"
	"modules the RAM medium needs, wait for every pmem/DAX device holding VM RAM,\n"
	"check its size and mode, and make the restore unit run after switch-root.\n";

static struct hu_early_opts early = {
	.root = "/sysroot",
	.run_dir = "/run/host-upgrade",
	.wants_dir = "/run/systemd/system/sysinit.target.wants",
	.unit_path = "/usr/lib/systemd/system/host-upgrade-restore.service",
	.dropin_dir = "/run/systemd/system/host-upgrade-restore.service.d",
	.wait_ms = 20000,
};

static const struct option early_opts[] = {
	{ "root",       required_argument, NULL, 'R' },
	{ "run-dir",    required_argument, NULL, 'D' },
	{ "wants-dir",  required_argument, NULL, 'W' },
	{ "dropin-dir", required_argument, NULL, 'I' },
	{ "wait",       required_argument, NULL, 'w' },
	{ "no-modules", no_argument,       NULL, 'n' },
	{}
};

static int early_option(struct cli *c, int opt, const char *arg)
{
	char *end;
	unsigned long v;

	switch (opt) {
	case 'R': early.root = arg; return 0;
	case 'D': early.run_dir = arg; return 0;
	case 'W': early.wants_dir = arg; return 0;
	case 'I': early.dropin_dir = arg; return 0;
	case 'n': early.no_modules = true; return 0;
	case 'w':
		v = strtoul(arg, &end, 10);
		if (*end || v > 600)
			return -1;
		early.wait_ms = (unsigned)v * 1000;
		return 0;
	}
	return -1;
}

int cmd_early_boot(int argc, char **argv)
{
	struct cli c = {};
	int r;

	r = cli_parse(&c, argc, argv, usage, CLI_OPTS(early_opts), early_option);
	if (r)
		goto out;
	r = hu_early_boot(c.ctx, &early);
	/* Never fail the boot: restore refuses what did not survive. */
	if (r < 0)
		cli_error(&c, "prepare", strerror(-r));
	r = r == 0 ? 0 : EXIT_BLOCKED;
out:
	hu_unref(c.ctx);
	return r;
}
