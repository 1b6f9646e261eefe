/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade stage --kernel PATH [--initrd PATH] [--append STR | --reuse-cmdline] [--unload] */
#include <getopt.h>
#include <string.h>
#include "cmd.h"

static const char usage[] =
	"usage: host-upgrade stage --kernel PATH [--initrd PATH] [--append STR | --reuse-cmdline]\n"
	"                          [--modules-root DIR] [--dry-run]\n"
	"       host-upgrade stage --unload\n"
	"Load the new kernel with kexec_file_load(2). The command line keeps every\n"
	"parameter the saved RAM depends on and gets the restore marker.\n";

const struct option cli_kernel_opts[] = {
	{ "kernel",        required_argument, NULL, 'k' },
	{ "initrd",        required_argument, NULL, 'i' },
	{ "append",        required_argument, NULL, 'a' },
	{ "reuse-cmdline", no_argument,       NULL, 'r' },
	{ "modules-root",  required_argument, NULL, 'm' },
	{ "dry-run",       no_argument,       NULL, 'n' },
	{}
};

static const struct option unload_opts[] = {
	{ "unload",        no_argument,       NULL, 'u' },
	{}
};

int cli_stage_option(struct cli *c, int opt, const char *arg)
{
	switch (opt) {
	case 'k': c->stage.kernel = arg; return 0;
	case 'i': c->stage.initrd = arg; return 0;
	case 'a': c->stage.append = arg; return 0;
	case 'r': c->stage.append = NULL; return 0;
	case 'm': c->stage.modules_root = arg; return 0;
	case 'n': c->stage.dry_run = true; return 0;
	case 'u': c->unload = true; return 0;
	}
	return -1;
}

int cmd_stage(int argc, char **argv)
{
	struct cli c = {};
	int r;

	r = cli_parse(&c, argc, argv, usage, CLI_OPTS(cli_kernel_opts, unload_opts), cli_stage_option);
	if (r)
		goto out;
	if (c.unload) {
		r = hu_unstage(c.ctx);
		if (r < 0)
			cli_error(&c, "unload", hu_stage_strerror(r));
		r = r < 0 ? EXIT_BLOCKED : 0;
		goto out;
	}
	if (!c.stage.kernel) {
		cli_error(&c, "--kernel", "is required");
		r = EXIT_USAGE;
		goto out;
	}
	r = hu_stage(c.ctx, &c.stage, NULL, NULL) < 0 ? EXIT_BLOCKED : 0;
out:
	hu_unref(c.ctx);
	return r;
}
