/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade VERB [options]: the context, the common options, parsing, logging. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include "cmd.h"

const struct cli_verb *const cli_verbs[] = {
	&cli_verb_plan,
	&cli_verb_checkpoint,
	&cli_verb_restore,
	&cli_verb_abort,
	&cli_verb_status,
	&cli_verb_stage,
	&cli_verb_run,
	&cli_verb_may_start,
	&cli_verb_early_boot,
	&cli_verb_libvirt_hook,
	NULL,
};

static int parse_state_dir(struct cli *c, const char *arg)
{
	if (hu_set_state_dir(c->ctx, arg) < 0 || arg[0] != '/') {
		cli_error(c, "--state-dir", "must be an absolute path of at most 200 bytes");
		return EXIT_USAGE;
	}
	return 0;
}

static int parse_vm(struct cli *c, const char *arg)
{
	if (c->n_vms >= 64) {
		cli_error(c, "--vm", "at most 64 names");
		return EXIT_USAGE;
	}
	c->vms[c->n_vms++] = arg;
	c->opts.only_vms = c->vms;
	return 0;
}

/* --jobs and --timeout: 1 to 3600. */
static int parse_count(struct cli *c, const char *what, const char *arg, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || v == 0 || v > 3600) {
		cli_error(c, what, "expects a number from 1 to 3600");
		return EXIT_USAGE;
	}
	*ret = (unsigned)v;
	return 0;
}

static int parse_jobs(struct cli *c, const char *arg)
{
	unsigned v;
	int r = parse_count(c, "--jobs", arg, &v);

	if (r == 0)
		hu_set_jobs(c->ctx, v);
	return r;
}

static int parse_timeout(struct cli *c, const char *arg)
{
	unsigned v;
	int r = parse_count(c, "--timeout", arg, &v);

	if (r == 0)
		hu_set_qmp_timeout(c->ctx, v * 1000);
	return r;
}

const struct cli_option cli_common_options[] = {
	CLI_ARG("state-dir", "DIR", parse_state_dir,
		"where the manifest, the journal and the VMs' state files are (default /var/lib/host-upgrade)"),
	CLI_ARG("vm", "NAME", parse_vm,
		"only this VM (repeatable); a VM's name is its -name guest=NAME or -name NAME, else pid-PID"),
	CLI_FLAG("json", json, "machine-readable output (plan, status, run's plan)"),
	CLI_ARG("jobs", "N", parse_jobs, "work on at most N VMs at a time (default: all at once)"),
	CLI_ARG("timeout", "SECONDS", parse_timeout, "how long to wait for each QMP reply (default 10)"),
	CLI_FLAG("quiet", quiet, "no progress lines on stderr, only errors"),
	CLI_FLAG("help", help, "show the usage and options, then exit"),
	CLI_END
};

/* Is stderr the journal (systemd sets JOURNAL_STREAM=dev:inode)? */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       st.st_dev == dev && st.st_ino == ino;
}

/* One message to the user: on stderr ("host-upgrade: VERB: [VM: ]text" for
 * errors, "host-upgrade: [VM: ]text" for progress), or to the journal with
 * its priority and fields when stderr is the journal. */
static void emit(const struct cli *c, int prio, const char *vm, const char *msg)
{
	if (stderr_is_journal()) {
		sd_journal_send("MESSAGE=%s%s%s", vm ?: "", vm ? ": " : "", msg, "PRIORITY=%d", prio,
				"SYSLOG_IDENTIFIER=host-upgrade", "HU_VERB=%s", c->verb,
				vm ? "HU_VM=%s" : NULL, vm, NULL);
		return;
	}
	if (c->quiet && prio > LOG_ERR)
		return;
	if (prio <= LOG_ERR)
		fprintf(stderr, "host-upgrade: %s: %s%s%s\n", c->verb, vm ?: "", vm ? ": " : "", msg);
	else
		fprintf(stderr, "host-upgrade: %s%s%s\n", vm ?: "", vm ? ": " : "", msg);
}

/* The library's log hook: progress and detail, never an error. */
static void log_stderr(void *userdata, int prio, const char *vm, const char *fmt, va_list ap)
{
	const struct cli *c = userdata;
	char msg[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Under systemd: progress as STATUS=, and long phases keep the unit's
	 * start timeout from firing. */
	if (getenv("NOTIFY_SOCKET"))
		sd_notifyf(0, "STATUS=%s%s%s\nEXTEND_TIMEOUT_USEC=%llu", vm ?: "", vm ? ": " : "", msg,
			   120ULL * 1000000);
	emit(c, prio, vm, msg);
}

void cli_error(const struct cli *c, const char *what, const char *why)
{
	cli_fail_why(c, what, why, NULL);
}

void cli_fail_why(const struct cli *c, const char *what, const char *why, const char *outcome)
{
	char msg[2048];

	snprintf(msg, sizeof(msg), "%s%s%s%s%s", what ?: "", what ? ": " : "", why, outcome ? "; " : "",
		 outcome ?: "");
	emit(c, LOG_ERR, NULL, msg);
}

void cli_fail(const struct cli *c, int r, const char *what, const char *outcome)
{
	cli_fail_why(c, what, hu_get_error(c->ctx) ?: strerror(-r), outcome);
}

size_t cli_report_vms(const struct cli *c, struct hu_vm_list *list)
{
	size_t n = 0;

	for (size_t i = 0; i < hu_vm_list_count(list); i++) {
		struct hu_vm *vm = hu_vm_list_get(list, i);
		const char *state = hu_vm_get_state(vm), *err = hu_vm_get_error(vm);
		char msg[2048];

		if (!err || !strcmp(state, "restored") || !strcmp(state, "checkpointed"))
			continue;
		/* Rolled back or never touched: its checkpoint failed for this reason. */
		snprintf(msg, sizeof(msg), "%s%s", strcmp(state, "failed") ? "checkpoint failed: " : "", err);
		emit(c, LOG_ERR, hu_vm_get_name(vm), msg);
		n++;
	}
	return n;
}

size_t cli_report_manifest(const struct cli *c)
{
	struct hu_manifest *m = NULL;
	size_t n = 0;

	if (hu_manifest_load(c->ctx, &m) < 0)
		return 0;
	for (size_t i = 0; i < hu_manifest_count(m); i++)
		if (!strcmp(hu_manifest_vm_state(m, i), "failed") && hu_manifest_vm_error(m, i)) {
			emit(c, LOG_ERR, hu_manifest_vm_name(m, i), hu_manifest_vm_error(m, i));
			n++;
		}
	hu_manifest_free(m);
	return n;
}

/* Enough for the common options and the longest verb's tables (run). */
#define CLI_MAX_OPTIONS 40
#define CLI_OPTION_VAL	0x100

static size_t add_options(const struct cli_option **opt, struct option *all, size_t n,
			  const struct cli_option *table)
{
	for (; table->name; table++, n++) {
		/* a verb's tables outgrew the arrays: a bug, not an input */
		if (n == CLI_MAX_OPTIONS) {
			fprintf(stderr, "host-upgrade: more than %d options: raise CLI_MAX_OPTIONS\n",
				CLI_MAX_OPTIONS);
			abort();
		}
		opt[n] = table;
		all[n] = (struct option){ table->name, table->arg ? required_argument : no_argument, NULL,
					  CLI_OPTION_VAL + (int)n };
	}
	return n;
}

/* The common options and the verb's, with getopt_long (so an unambiguous
 * prefix of an option is that option). Returns 0 or an exit status. */
static int parse_options(struct cli *c, const struct cli_verb *v, int argc, char **argv)
{
	const struct cli_option *opt[CLI_MAX_OPTIONS];
	struct option all[CLI_MAX_OPTIONS + 1] = {};
	size_t n = add_options(opt, all, 0, cli_common_options);
	int o;

	for (size_t t = 0; v->options && v->options[t]; t++)
		n = add_options(opt, all, n, v->options[t]);
	optind = 1;
	opterr = 0; /* our own messages, in our format */
	while ((o = getopt_long(argc, argv, "+h", all, NULL)) != -1) {
		const struct cli_option *p;
		char what[64];
		int r;

		if (o == 'h') {
			c->help = true;
		} else if (o < CLI_OPTION_VAL) { /* '?': unknown, ambiguous or without its value */
			cli_error(c, argv[optind - 1], "unknown option, or its value is missing");
			cli_verb_usage(stderr, v);
			return EXIT_USAGE;
		} else {
			p = opt[o - CLI_OPTION_VAL];
			if (p->parse) {
				r = p->parse(c, optarg);
			} else {
				*(bool *)((char *)c + p->flag) = true;
				r = 0;
			}
			if (r > 0)
				return r;
			if (r < 0) {
				snprintf(what, sizeof(what), "--%s", p->name);
				if (optarg) {
					char why[256];

					snprintf(why, sizeof(why), "invalid value '%.200s'", optarg);
					cli_error(c, what, why);
				} else {
					cli_error(c, what, "not valid here");
				}
				cli_verb_usage(stderr, v);
				return EXIT_USAGE;
			}
		}
		if (c->help) {
			cli_verb_help(stdout, v);
			return 0;
		}
	}
	if (v->takes_operand && optind == argc - 1)
		c->operand = argv[optind++];
	else if (v->takes_operand) {
		cli_error(c, v->name, "expects exactly one operand");
		cli_verb_usage(stderr, v);
		return EXIT_USAGE;
	}
	if (optind < argc) {
		cli_error(c, argv[optind], "unexpected argument");
		return EXIT_USAGE;
	}
	return 0;
}

static const struct cli_verb *find_verb(const char *name)
{
	for (size_t i = 0; cli_verbs[i]; i++)
		if (!strcmp(name, cli_verbs[i]->name))
			return cli_verbs[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct cli_verb *v;
	struct cli c = {};
	int r;

	if (argc < 2) {
		cli_help(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		/* `help VERB` is `VERB --help`; `help` alone, or with anything else, the verb list */
		v = argc > 2 && !strcmp(argv[1], "help") ? find_verb(argv[2]) : NULL;
		if (v)
			cli_verb_help(stdout, v);
		else
			cli_help(stdout);
		return 0;
	}
	/* Not in --help: the build makes build/host-upgrade.8 with it. */
	if (!strcmp(argv[1], "--man")) {
		cli_man(stdout);
		return 0;
	}
	v = find_verb(argv[1]);
	if (!v) {
		fprintf(stderr, "host-upgrade: %s: unknown verb\n", argv[1]);
		cli_help(stderr);
		return EXIT_USAGE;
	}
	c.verb = v->name;
	r = hu_new(&c.ctx);
	if (r < 0) {
		cli_error(&c, "init", strerror(-r));
		return EXIT_BLOCKED;
	}
	hu_set_log_fn(c.ctx, log_stderr, &c);
	r = parse_options(&c, v, argc - 1, argv + 1);
	if (r == 0 && !c.help)
		r = v->run(&c);
	hu_unref(c.ctx);
	return r;
}
