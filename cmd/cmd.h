/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host-upgrade CLI: one file per verb, all thin over libhu.
 *
 * main() finds the verb, makes the context and parses the common options
 * and the verb's own from tables (struct cli_option), then calls the verb
 * with the result (struct cli). `--help`, `VERB --help` and the man page
 * (`host-upgrade --man`, built into build/host-upgrade.8) are printed from
 * the same tables, so an option exists, is documented and is parsed in one
 * place.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "libhu.h"

#define EXIT_BLOCKED 1
#define EXIT_USAGE   2

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
	bool help;
	bool unload;
	bool dry_run;
	bool yes;
	struct hu_stage_opts stage;
	const char *operand; /* the verb's one operand, when it takes one */
};

/*
 * One option: --NAME, or --NAME ARG when arg names its value. parse()
 * stores it and returns 0, -1 when the value is invalid (the parser says
 * so and shows the usage), or EXIT_USAGE once it said why itself. An
 * option without parse() is a flag: the bool at offset flag in struct cli
 * is set.
 */
struct cli_option {
	const char *name;
	const char *arg;
	const char *help;
	int (*parse)(struct cli *c, const char *arg);
	size_t flag;
};
#define CLI_FLAG(n, field, h)                                                 \
	{                                                                     \
		.name = (n), .help = (h), .flag = offsetof(struct cli, field) \
	}
#define CLI_ARG(n, a, fn, h)                                        \
	{                                                           \
		.name = (n), .arg = (a), .parse = (fn), .help = (h) \
	}

/*
 * A verb. usage: its forms after "host-upgrade VERB", one a line, naming
 * only what is required or exclusive (the options are listed from the
 * tables). about: what it does, for `VERB --help` and the man page;
 * paragraphs are separated by an empty line. options: its tables,
 * NULL-terminated; the common options come on top.
 */
struct cli_verb {
	const char *name;
	int (*run)(struct cli *c);
	const char *summary;
	const char *usage;
	const char *about;
	const struct cli_option *const *options;
	bool takes_operand; /* exactly one operand after the options (named in usage) */
};
/* A table's end, and a verb's list of tables. */
#define CLI_END \
	{       \
	}
#define CLI_TABLES(...) ((const struct cli_option *const[]){ __VA_ARGS__, NULL })

/* The verbs, in the order --help lists them; and the common options. */
extern const struct cli_verb *const cli_verbs[];
extern const struct cli_option cli_common_options[];
/* Option tables shared by verbs: what plan decides, how run restarts, what stage loads. */
extern const struct cli_option cli_plan_options[];
extern const struct cli_option cli_restart_options[];
extern const struct cli_option cli_kernel_options[];

extern const struct cli_verb cli_verb_plan, cli_verb_checkpoint, cli_verb_restore, cli_verb_abort,
	cli_verb_status, cli_verb_stage, cli_verb_run, cli_verb_may_start, cli_verb_early_boot,
	cli_verb_libvirt_hook;

/* help.c: --help, VERB --help, the usage after a usage error, the man page. */
void cli_help(FILE *f);
void cli_verb_help(FILE *f, const struct cli_verb *v);
void cli_verb_usage(FILE *f, const struct cli_verb *v);
void cli_man(FILE *f);

/* `host-upgrade: VERB: what: why` on stderr. */
void cli_error(const struct cli *c, const char *what, const char *why);
/* The one line for a call that failed: `host-upgrade: VERB: what: why[; outcome]`,
 * why being the library's words (hu_get_error) or the errno's; what may be NULL. */
void cli_fail(const struct cli *c, int r, const char *what, const char *outcome);
void cli_fail_why(const struct cli *c, const char *what, const char *why, const char *outcome);
/* After a checkpoint: one line per VM that did not get where it was going. */
size_t cli_report_vms(const struct cli *c, struct hu_vm_list *list);
/* After restore/abort: one line per VM the manifest has failed. */
size_t cli_report_manifest(const struct cli *c);

/* plan.c: discover + plan, shared with checkpoint and run. */
int cli_discover_and_plan(struct cli *c, struct hu_vm_list **ret, int *ret_blocked);
void cli_print_plan(const struct cli *c, struct hu_vm_list *list, bool ok);
