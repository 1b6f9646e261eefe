/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * --help, VERB --help and the host-upgrade(8) man page, all printed from
 * the verbs' option tables, so what is parsed is what is documented. The
 * prose only the man page has (files, the kernel command line, ...) is
 * here.
 */
#include <string.h>
#include "cmd.h"

#define WIDTH		  79
/* Long enough for "--suspend-timeout SECONDS". */
#define OPTION_COLUMN_MAX 26

static const char about[] =
	"Checkpoint every QEMU on this KVM host with cpr-reboot, kexec into a new kernel\n"
	"and restore the VMs where they stopped.";

static const char exit_status[] = "Exit status: 0 success, 1 failure or blocked, 2 usage error.";

/* s from column col on, folded at spaces before WIDTH; continuation lines
 * start at column indent. */
static void wrap(FILE *f, const char *s, int col, int indent)
{
	while (*s) {
		size_t word = strcspn(s, " ");

		if (col > indent && col + 1 + (int)word > WIDTH) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(s, 1, word, f);
		col += (int)word;
		s += word;
		s += strspn(s, " ");
	}
	fputc('\n', f);
}

static int option_width(const struct cli_option *o)
{
	return 2 + (int)strlen(o->name) + (o->arg ? 1 + (int)strlen(o->arg) : 0);
}

static int table_width(const struct cli_option *t, int w)
{
	for (; t && t->name; t++)
		if (option_width(t) > w && option_width(t) <= OPTION_COLUMN_MAX)
			w = option_width(t);
	return w;
}

static void print_options(FILE *f, const struct cli_option *t, int w)
{
	for (; t->name; t++) {
		int n = fprintf(f, "  --%s%s%s", t->name, t->arg ? " " : "", t->arg ?: "");

		if (n > 2 + w) {
			fputc('\n', f);
			n = 0;
		}
		fprintf(f, "%*s", 2 + w + 2 - n, "");
		wrap(f, t->help, 2 + w + 2, 2 + w + 2);
	}
}

void cli_help(FILE *f)
{
	int w = table_width(cli_common_options, 0);

	fprintf(f,
		"usage: host-upgrade VERB [options]\n"
		"       host-upgrade help [VERB]\n\n%s\n\nverbs:\n",
		about);
	for (size_t i = 0; cli_verbs[i]; i++) {
		fprintf(f, "  %-11s ", cli_verbs[i]->name);
		wrap(f, cli_verbs[i]->summary, 14, 14);
	}
	fprintf(f, "\ncommon options (every verb takes them):\n");
	print_options(f, cli_common_options, w);
	fprintf(f, "\n`host-upgrade VERB --help` lists a verb's own options; `man host-upgrade`, all.\n%s\n",
		exit_status);
}

static void usage_lines(FILE *f, const struct cli_verb *v)
{
	const char *u = v->usage ?: "[options]";
	bool first = true;

	while (*u) {
		size_t len = strcspn(u, "\n");

		fprintf(f, "%s host-upgrade %s %.*s\n", first ? "usage:" : "      ", v->name, (int)len, u);
		u += len + (u[len] == '\n');
		first = false;
	}
}

void cli_verb_usage(FILE *f, const struct cli_verb *v)
{
	usage_lines(f, v);
	fprintf(f, "Try `host-upgrade %s --help` for its options.\n", v->name);
}

void cli_verb_help(FILE *f, const struct cli_verb *v)
{
	int w = table_width(cli_common_options, 0);

	for (size_t t = 0; v->options && v->options[t]; t++)
		w = table_width(v->options[t], w);
	usage_lines(f, v);
	fprintf(f, "\n%s\n", v->about);
	if (v->options) {
		fprintf(f, "\noptions:\n");
		for (size_t t = 0; v->options[t]; t++)
			print_options(f, v->options[t], w);
	}
	fprintf(f, "\ncommon options:\n");
	print_options(f, cli_common_options, w);
}

/* --- the man page ---------------------------------------------------------- */

/* Text for roff on one line: every - a minus sign (commands and options
 * copy as typed), \ as \e. */
static void roff_inline(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len && s[i]; i++) {
		if (s[i] == '-')
			fputs("\\-", f);
		else if (s[i] == '\\')
			fputs("\\e", f);
		else
			fputc(s[i], f);
	}
}

/* A text block: no control character at the start of a line; an empty
 * line starts a new paragraph. */
static void roff(FILE *f, const char *s)
{
	while (*s) {
		size_t len = strcspn(s, "\n");

		if (len == 0)
			fputs(".PP", f);
		else if (*s == '.' || *s == '\'')
			fputs("\\&", f);
		roff_inline(f, s, len);
		fputc('\n', f);
		s += len + (s[len] == '\n');
	}
}

static void man_options(FILE *f, const struct cli_option *t)
{
	for (; t->name; t++) {
		fputs(".TP\n\\fB\\-\\-", f);
		roff_inline(f, t->name, strlen(t->name));
		fputs("\\fR", f);
		if (t->arg) {
			fputs(" \\fI", f);
			roff_inline(f, t->arg, strlen(t->arg));
			fputs("\\fR", f);
		}
		fputc('\n', f);
		roff(f, t->help);
	}
}

static const char man_description[] =
	"host-upgrade moves a KVM host to a new kernel, or to a new QEMU, without shutting\n"
	"its virtual machines down. It checkpoints every QEMU on the host with QEMU's CPR\n"
	"cpr-reboot mode: guest RAM in persistent memory (DAX) or in a shared file stays\n"
	"where it is, and only about 1 MB of device state per VM is written. It stages the\n"
	"new kernel with kexec_file_load(2) and reboots into it through systemd's\n"
	"kexec.target; in the new kernel, the dracut module and host-upgrade-restore.service\n"
	"start each QEMU again with -incoming defer, and the guests continue where they\n"
	"stopped.\n"
	"\n"
	"Nothing stops before every VM is checked. A failure anywhere before the reboot\n"
	"leaves every VM running as before. A VM is never started twice, never resumed from\n"
	"RAM that did not survive, and never on disks that changed since its checkpoint.\n"
	"\n"
	"Errors read host-upgrade: VERB: what: why on stderr. Progress lines go to stderr\n"
	"too, or to the journal when stderr is the journal (see ENVIRONMENT).";

static const char man_options_about[] =
	"Every verb takes these. A long option may be shortened to any prefix that names\n"
	"only it.";

static const char man_rest[] =
	".SH EXIT STATUS\n"
	".TP\n.B 0\n"
	"Success. For may\\-start: the unit may start the VM.\n"
	".TP\n.B 1\n"
	"Failure, or blocked: plan found a blocker, or checkpoint or run stopped nothing\n"
	"because of one. For may\\-start: host\\-upgrade has the VM (or its manifest cannot be\n"
	"read).\n"
	".TP\n.B 2\n"
	"Usage error: an unknown verb or option, a value out of range, an unexpected\n"
	"argument. Nothing was changed.\n"
	".SH FILES\n"
	".TP\n.I /var/lib/host\\-upgrade\n"
	"The state dir (\\fB\\-\\-state\\-dir\\fR), mode 0700; its files are 0600, as a VM's argv may\n"
	"hold secrets. It must be on a file system mounted by local\\-fs.target, or named by\n"
	"\\fBhu.state=\\fR on the kernel command line.\n"
	".TP\n.IR STATE_DIR /manifest.json\n"
	"The one record of a checkpoint: versioned JSON, written atomically (a temporary\n"
	"file, fsync, rename, fsync of the dir) before anything stops and at every step;\n"
	"read back as untrusted input and refused whole when it is not valid.\n"
	".TP\n.IR STATE_DIR /journal.jsonl\n"
	"The journal: an append\\-only history of every step, one JSON object a line.\n"
	".TP\n.IR STATE_DIR / NAME .state\n"
	"A VM's saved device state, and its RAM when that is copied.\n"
	".TP\n.IR STATE_DIR / NAME .log\n"
	"The output of a VM's restored QEMU.\n"
	".TP\n.IR STATE_DIR /lock\n"
	"One verb at a time per state dir (flock(2)).\n"
	".TP\n.I /run/host\\-upgrade/early\\-boot.json\n"
	"What early\\-boot found: modules loaded and missing, each RAM medium's check.\n"
	".TP\n.I host\\-upgrade\\-restore.service\n"
	"Runs \\fBhost\\-upgrade restore\\fR first thing after the kexec (only with\n"
	"\\fBhu.restore=1\\fR). Its initrd side, host\\-upgrade\\-early.service of the dracut\n"
	"module 90host\\-upgrade, runs \\fBhost\\-upgrade early\\-boot\\fR.\n"
	".SH KERNEL COMMAND LINE\n"
	".TP\n.B hu.restore=1\n"
	"The restore marker: stage (and run) put it on the new kernel's command line.\n"
	"Without it, early\\-boot and host\\-upgrade\\-restore.service do nothing.\n"
	".TP\n\\fBhu.state=UUID=\\fIuuid\\fB:\\fIdir\\fR\n"
	"The state dir is \\fIdir\\fR on a file system of its own: the initrd finds its\n"
	"device by \\fIuuid\\fR with libblkid and mounts it read\\-only only while it reads\n"
	"the manifest.\n"
	".SH ENVIRONMENT\n"
	".TP\n.B NOTIFY_SOCKET\n"
	"Run by a systemd unit: each progress line is also sent as STATUS=, and extends the\n"
	"unit's start timeout (EXTEND_TIMEOUT_USEC=, 120 s).\n"
	".TP\n.B JOURNAL_STREAM\n"
	"When it names stderr, progress and errors go to the journal as structured entries:\n"
	"SYSLOG_IDENTIFIER=host\\-upgrade, HU_VERB= the verb and, for a VM's lines, HU_VM=\n"
	"its name.\n"
	".SH EXAMPLES\n"
	"Check every VM, then upgrade the host to a new kernel:\n"
	".PP\n.RS\n.nf\n"
	"host\\-upgrade plan\n"
	"host\\-upgrade run \\-\\-kernel /boot/vmlinuz\\-NEW \\-\\-dry\\-run\n"
	"host\\-upgrade run \\-\\-kernel /boot/vmlinuz\\-NEW \\-\\-yes\n"
	".fi\n.RE\n"
	".PP\n"
	"After the kexec, each VM's state and downtime:\n"
	".PP\n.RS\n.nf\n"
	"host\\-upgrade status \\-\\-json\n"
	".fi\n.RE\n"
	".PP\n"
	"A QEMU\\-only upgrade, once the new QEMU is installed:\n"
	".PP\n.RS\n.nf\n"
	"host\\-upgrade run \\-\\-no\\-reboot \\-\\-yes\n"
	".fi\n.RE\n"
	".PP\n"
	"After a failed or interrupted checkpoint, every VM back:\n"
	".PP\n.RS\n.nf\n"
	"host\\-upgrade abort\n"
	".fi\n.RE\n"
	".PP\n"
	"A VM's own unit that must not cold\\-start it next to its restored self:\n"
	".PP\n.RS\n.nf\n"
	"After=host\\-upgrade\\-restore.service\n"
	"ExecCondition=/usr/sbin/host\\-upgrade may\\-start \\-\\-vm NAME\n"
	".fi\n.RE\n"
	".SH SEE ALSO\n"
	".BR kexec (8),\n"
	".BR kexec_file_load (2),\n"
	".BR systemd.special (7),\n"
	".BR dracut (8),\n"
	".BR ndctl (1),\n"
	".BR daxctl (1),\n"
	".BR qemu (1);\n"
	"QEMU's docs/devel/migration/CPR.rst; the README.md installed with host\\-upgrade.\n";

void cli_man(FILE *f)
{
	fputs(".\\\" Generated by `host-upgrade --man` from the option tables in cmd/: edit those.\n"
	      ".TH HOST\\-UPGRADE 8 \"\" \"host\\-upgrade\" \"System Administration\"\n"
	      ".\\\" no hyphenation and a ragged right: paths and options copy as they are\n"
	      ".nh\n.ad l\n"
	      ".SH NAME\n"
	      "host\\-upgrade \\- upgrade a KVM host's kernel or QEMU without shutting its VMs down\n"
	      ".SH SYNOPSIS\n"
	      ".B host\\-upgrade\n.I VERB\n.RI [ options ]\n.br\n"
	      ".B host\\-upgrade help\n.RI [ VERB ]\n"
	      ".SH DESCRIPTION\n",
	      f);
	roff(f, man_description);
	fputs(".SH OPTIONS\n", f);
	roff(f, man_options_about);
	man_options(f, cli_common_options);
	fputs(".SH VERBS\n", f);
	for (size_t i = 0; cli_verbs[i]; i++) {
		const struct cli_verb *v = cli_verbs[i];
		const char *u = v->usage ?: "[options]";

		fputs(".SS ", f);
		roff_inline(f, v->name, strlen(v->name));
		fputs("\n.PP\n", f);
		while (*u) {
			size_t len = strcspn(u, "\n");

			fputs("\\fBhost\\-upgrade ", f);
			roff_inline(f, v->name, strlen(v->name));
			fputs("\\fR ", f);
			roff_inline(f, u, len);
			fputs("\n.br\n", f);
			u += len + (u[len] == '\n');
		}
		fputs(".PP\n", f);
		roff(f, v->about);
		if (!v->options) {
			fputs(".PP\nIt takes the common options only.\n", f);
			continue;
		}
		fputs(".PP\nIts options, besides the common ones:\n", f);
		for (size_t t = 0; v->options[t]; t++)
			man_options(f, v->options[t]);
	}
	fputs(man_rest, f);
}
