/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The /proc scan (lib/discover.c, hu_scan_processes) on a fake proc tree
 * made afresh for each input in a tmpfs directory (the context's proc
 * root): the input is the contents of one process's files, separated by
 * 0x1e bytes, in this order:
 *   exe (the link's target), cmdline, stat, status, cgroup, cwd (target)
 * That process appears twice (pids 4242 and 4243, the same QEMU twice),
 * beside a process that is not a QEMU and entries that are no process.
 * The scan reads /proc only: it neither connects to a socket nor signals a
 * process; plan then judges the list as it does before any QMP answer.
 */
#include <limits.h>
#include "common.h"

enum { F_EXE, F_CMDLINE, F_STAT, F_STATUS, F_CGROUP, F_CWD, N_FIELDS };

static void make_link(const char *dir, const char *name, const uint8_t *target, size_t len)
{
	_cleanup_free_ char *t = fuzz_strndup(target, len), *path = fuzz_path(dir, name);

	/* A kernel link target has no NUL and fits PATH_MAX; an empty one
	 * stands for a link that cannot be read (a kernel thread's exe). */
	if (t[0] && strlen(t) < PATH_MAX && symlink(t, path) < 0)
		abort();
}

static void make_process(const char *proc, const char *pid, const uint8_t **f, const size_t *len)
{
	_cleanup_free_ char *dir = fuzz_path(proc, pid);

	fuzz_reset_dir(dir);
	make_link(dir, "exe", f[F_EXE], len[F_EXE]);
	fuzz_write(dir, "cmdline", f[F_CMDLINE], len[F_CMDLINE]);
	fuzz_write(dir, "stat", f[F_STAT], len[F_STAT]);
	fuzz_write(dir, "status", f[F_STATUS], len[F_STATUS]);
	fuzz_write(dir, "cgroup", f[F_CGROUP], len[F_CGROUP]);
	make_link(dir, "cwd", f[F_CWD], len[F_CWD]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char shell_stat[] = "1 (bash) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n";
	static struct hu_ctx *ctx;
	static char *proc, *other, *self;
	_cleanup_vm_list_ struct hu_vm_list *list = NULL;
	const uint8_t *f[N_FIELDS] = {};
	size_t len[N_FIELDS] = {}, n;

	if (size > HU_MAX_CMDLINE + 64 * 1024)
		return 0;
	if (!ctx) {
		_cleanup_free_ char *state = fuzz_path(fuzz_dir(), "state");

		proc = fuzz_path(fuzz_dir(), "proc");
		other = fuzz_path(proc, "1");
		self = fuzz_path(proc, "self");
		fuzz_reset_dir(state);
		ctx = fuzz_ctx(proc, state);
	}
	if (getpid() == 4242 || getpid() == 4243)
		return 0; /* the scan skips its own pid */
	n = fuzz_split(data, size, 0x1e, f, len, N_FIELDS);
	for (size_t i = n; i < N_FIELDS; i++)
		f[i] = data + size; /* missing: empty */
	fuzz_reset_dir(proc);
	make_process(proc, "4242", f, len);
	make_process(proc, "4243", f, len);
	/* Not a QEMU, and not processes at all: skipped. */
	fuzz_reset_dir(other);
	make_link(other, "exe", (const uint8_t *)"/usr/bin/bash", strlen("/usr/bin/bash"));
	fuzz_write(other, "cmdline", "bash\0", 5);
	fuzz_write(other, "stat", shell_stat, strlen(shell_stat));
	fuzz_write(proc, "uptime", "1.00 1.00\n", 10);
	if (symlink("4242", self) < 0)
		abort();

	/* One process, whatever its files say, never fails the scan of all
	 * (#15 case 4): an odd one is listed as skipped, with its reason. */
	if (hu_scan_processes(ctx, &list) < 0)
		abort();
	for (size_t i = 0; i < list->n; i++)
		if (!list->vms[i]->name || (list->vms[i]->pid != 4242 && list->vms[i]->pid != 4243))
			abort(); /* only the two QEMUs, each with a name */
	(void)hu_plan(ctx, list, NULL);
	return 0;
}
