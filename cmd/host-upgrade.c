/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade VERB [options]: dispatch, common options, logging. */
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

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} verbs[] = {
	{ "plan",       cmd_plan,       "preflight every VM; table or --json; exit 1 if blocked" },
	{ "checkpoint", cmd_checkpoint, "save every VM (all-or-nothing) and quit its QEMU" },
	{ "restore",    cmd_restore,    "start every checkpointed VM from its saved state" },
	{ "abort",      cmd_abort,      "after a failure or crash: bring every VM back now" },
	{ "status",     cmd_status,     "phase and per-VM state and downtime; --json" },
	{ "stage",      cmd_stage,      "load the new kernel with kexec (checks modules and command line)" },
	{ "run",        cmd_run,        "the whole upgrade: plan, stage, checkpoint, kexec reboot" },
	{ "may-start",  cmd_may_start,  "for a VM's own unit (ExecCondition=): exit 1 if host-upgrade restores or runs it" },
	{ "early-boot", cmd_early_boot, "initrd side: modules, pmem/DAX checks, arrange the restore unit" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: host-upgrade VERB [options]\n\nverbs:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-11s %s\n", verbs[i].name, verbs[i].help);
	fprintf(f, "\ncommon options: --state-dir DIR (default /var/lib/host-upgrade), --vm NAME (repeatable),\n"
		   "                --json, --jobs N, --timeout SECONDS, --quiet\n"
		   "Exit status: 0 success, 1 failure or blocked, 2 usage error.\n");
}

/* Is stderr the journal (systemd sets JOURNAL_STREAM=dev:inode)? */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       st.st_dev == dev && st.st_ino == ino;
}

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

void cli_error(const struct cli *c, const char *what, const char *why)
{
	fprintf(stderr, "host-upgrade: %s: %s: %s\n", c->verb, what, why);
}

int cli_parse(struct cli *c, int argc, char **argv, const char *usage_text,
	      const struct option *const *extra_sets, int (*extra)(struct cli *c, int opt, const char *arg))
{
	static const struct option common[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "vm",        required_argument, NULL, 'v' },
		{ "json",      no_argument,       NULL, 'j' },
		{ "jobs",      required_argument, NULL, 'J' },
		{ "timeout",   required_argument, NULL, 'T' },
		{ "quiet",     no_argument,       NULL, 'q' },
		{ "help",      no_argument,       NULL, 'h' },
	};
	struct option all[32];
	size_t n = 0;
	int opt, r, longindex = -1;

	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		all[n++] = common[i];
	for (size_t set = 0; extra_sets && extra_sets[set]; set++)
		for (size_t i = 0; extra_sets[set][i].name && n < 31; i++)
			all[n++] = extra_sets[set][i];
	memset(&all[n], 0, sizeof(all[n]));

	c->verb = argv[0];
	r = hu_new(&c->ctx);
	if (r < 0) {
		cli_error(c, "init", strerror(-r));
		return EXIT_BLOCKED;
	}
	hu_set_log_fn(c->ctx, log_stderr, c);
	optind = 1;
	opterr = 0; /* our own messages, in our format */
	while ((opt = getopt_long(argc, argv, "+h", all, &longindex)) != -1) {
		char *end;
		unsigned long v;
		char what[64];

		switch (opt) {
		case 'd':
			if (hu_set_state_dir(c->ctx, optarg) < 0 || optarg[0] != '/') {
				cli_error(c, "--state-dir", "must be an absolute path of at most 200 bytes");
				return EXIT_USAGE;
			}
			break;
		case 'v':
			if (c->n_vms >= 64) {
				cli_error(c, "--vm", "at most 64 names");
				return EXIT_USAGE;
			}
			c->vms[c->n_vms++] = optarg;
			c->opts.only_vms = c->vms;
			break;
		case 'j':
			c->json = true;
			break;
		case 'q':
			c->quiet = true;
			break;
		case 'J':
		case 'T':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 3600) {
				cli_error(c, opt == 'J' ? "--jobs" : "--timeout", "expects a number from 1 to 3600");
				return EXIT_USAGE;
			}
			if (opt == 'J')
				hu_set_jobs(c->ctx, (unsigned)v);
			else
				hu_set_qmp_timeout(c->ctx, (unsigned)v * 1000);
			break;
		case 'h':
			printf("%s", usage_text);
			exit(0);
		case '?':
		case ':':
			cli_error(c, argv[optind - 1], "unknown option, or its value is missing");
			fprintf(stderr, "%s", usage_text);
			return EXIT_USAGE;
		default:
			if (extra && extra(c, opt, optarg) == 0)
				break;
			snprintf(what, sizeof(what), "--%s", longindex >= 0 ? all[longindex].name : "?");
			if (optarg) {
				char why[256];

				snprintf(why, sizeof(why), "invalid value '%.200s'", optarg);
				cli_error(c, what, why);
			} else {
				cli_error(c, what, "not valid here");
			}
			fprintf(stderr, "%s", usage_text);
			return EXIT_USAGE;
		}
		longindex = -1;
	}
	if (optind < argc) {
		cli_error(c, argv[optind], "unexpected argument");
		return EXIT_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "host-upgrade: %s: unknown verb\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
