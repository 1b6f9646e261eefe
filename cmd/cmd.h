/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The host-upgrade CLI: one file per verb, all thin over libhu. */
#pragma once

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include "libhu.h"

#define EXIT_BLOCKED 1
#define EXIT_USAGE 2

struct cli {
	const char *verb;
	struct hu_ctx *ctx;
	struct hu_options opts;
	const char *vms[65];
	size_t n_vms;
	const char *suspend[65];
	size_t n_suspend;
	bool json;
	bool quiet;
	bool unload;
	bool dry_run;
	bool yes;
	struct hu_stage_opts stage;
};

/* Parse the options every verb takes; extra long options are handled by
 * `extra` (return 0 if consumed, -1 if unknown). Returns 0 or EXIT_USAGE. */

int cli_parse(struct cli *c, int argc, char **argv, const char *usage,
	      const struct option *const *extra_sets, int (*extra)(struct cli *c, int opt, const char *arg));
#define CLI_OPTS(...) ((const struct option *const[]){ __VA_ARGS__, NULL })
/* Option tables shared by verbs: what plan decides, what stage loads. */
extern const struct option cli_plan_opts[];
extern const struct option cli_kernel_opts[];
/* `host-upgrade: VERB: what: why` on stderr. */
void cli_error(const struct cli *c, const char *what, const char *why);

int cmd_plan(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_abort(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stage(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_early_boot(int argc, char **argv);
int cmd_may_start(int argc, char **argv);
int cli_stage_option(struct cli *c, int opt, const char *arg);

int cli_plan_option(struct cli *c, int opt, const char *arg);

/* plan.c: discover + plan, shared with checkpoint. */
int cli_discover_and_plan(struct cli *c, struct hu_vm_list **ret, int *ret_blocked);
void cli_print_plan(const struct cli *c, struct hu_vm_list *list, bool ok);
