/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade stage --kernel PATH [--initrd PATH] [--append STR | --reuse-cmdline] [--unload] */
#include <string.h>
#include "cmd.h"

/* clang-format off */
static int parse_kernel(struct cli *c, const char *arg) { c->stage.kernel = arg; return 0; }
static int parse_initrd(struct cli *c, const char *arg) { c->stage.initrd = arg; return 0; }
static int parse_append(struct cli *c, const char *arg) { c->stage.append = arg; return 0; }
static int parse_reuse_cmdline(struct cli *c, const char *arg) { c->stage.append = NULL; return 0; }
static int parse_modules_root(struct cli *c, const char *arg) { c->stage.modules_root = arg; return 0; }
/* clang-format on */

/* What stage loads; run takes the same. */
const struct cli_option cli_kernel_options[] = {
	CLI_ARG("kernel", "PATH", parse_kernel, "the new kernel's bzImage"),
	CLI_ARG("initrd", "PATH", parse_initrd, "its initrd (default /boot/initrd.img-VERSION if there)"),
	CLI_ARG("append", "STR", parse_append,
		"its command line (default the running one); memmap= regions must be kept"),
	CLI_ARG("reuse-cmdline", NULL, parse_reuse_cmdline,
		"the running kernel's command line (the default; undoes --append)"),
	CLI_ARG("modules-root", "DIR", parse_modules_root,
		"where the new kernel's modules are checked (default /lib/modules)"),
	CLI_END
};

static const struct cli_option stage_options[] = {
	CLI_FLAG("dry-run", stage.dry_run, "check everything, load nothing"),
	CLI_FLAG("unload", unload, "unload a staged kernel"), CLI_END
};

static int cmd_stage(struct cli *c)
{
	int r;

	if (c->unload) {
		r = hu_unstage(c->ctx);
		if (r < 0)
			cli_error(c, "unload", hu_stage_strerror(r));
		return r < 0 ? EXIT_BLOCKED : 0;
	}
	if (!c->stage.kernel) {
		cli_error(c, "--kernel", "is required");
		return EXIT_USAGE;
	}
	r = hu_stage(c->ctx, &c->stage, NULL, NULL);
	if (r < 0) {
		cli_fail(c, r, NULL, NULL);
		return EXIT_BLOCKED;
	}
	return 0;
}

const struct cli_verb cli_verb_stage = {
	.name = "stage",
	.run = cmd_stage,
	.summary = "load the new kernel with kexec (checks modules and command line)",
	.usage = "--kernel PATH [options]\n--unload [options]",
	.about = "Load the new kernel with kexec_file_load(2). Its command line keeps every\n"
		 "parameter the saved RAM depends on (memmap= regions, nokaslr) and gets the\n"
		 "restore marker hu.restore=1; every module the VMs and their RAM use must exist\n"
		 "for the new kernel. Refused while Debian's kexec-tools would replace the staged\n"
		 "kernel at shutdown (LOAD_KEXEC=true in /etc/default/kexec).",
	.options = CLI_TABLES(cli_kernel_options, stage_options),
};
