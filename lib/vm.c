/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM record: one QEMU as discover finds it, plan decides about it and
 * checkpoint and restore record it. Its lifecycle, the list of them, the
 * public getters, the state names of the manifest, and whether the process
 * it names is still that process (pid + start time), and who it runs as.
 */
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "hu-private.h"

void hu_memdev_clear(struct hu_memdev *d)
{
	free(d->id);
	free(d->type);
	free(d->mem_path);
	free(d->why);
	hu_medium_clear(&d->medium);
	*d = (struct hu_memdev){};
}

void hu_vm_free(struct hu_vm *vm)
{
	if (!vm)
		return;
	free(vm->name);
	free(vm->exe);
	hu_strv_free(vm->argv, vm->argc);
	free(vm->cwd);
	free(vm->groups);
	free(vm->cgroup);
	free(vm->pidfile_refused);
	free(vm->skipped);
	hu_argv_info_clear(&vm->ai);
	hu_config_files_free(vm->configs, vm->n_configs);
	free(vm->configs_error);
	free(vm->qemu_version);
	free(vm->runstate);
	for (size_t i = 0; i < vm->n_memdevs; i++)
		hu_memdev_clear(&vm->memdevs[i]);
	free(vm->memdevs);
	for (size_t i = 0; i < vm->n_disks; i++)
		free(vm->disks[i].path);
	free(vm->disks);
	hu_strv_free(vm->blockers, vm->n_blockers);
	free(vm->state_file);
	free(vm->error);
	json_object_put(vm->caps_before);
	json_object_put(vm->snapshot);
	json_object_put(vm->caps);
	hu_qmp_close(vm->qmp);
	if (vm->mgr && vm->mgr->free)
		vm->mgr->free(vm);
	free(vm);
}

int hu_vm_list_add(struct hu_vm_list *list, struct hu_vm *vm)
{
	struct hu_vm **n;

	if (list->n >= HU_MAX_SCANNED)
		return -E2BIG;
	n = realloc(list->vms, (list->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	list->vms = n;
	list->vms[list->n++] = vm;
	return 0;
}

void hu_vm_list_free(struct hu_vm_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n; i++)
		hu_vm_free(list->vms[i]);
	free(list->vms);
	free(list);
}

/* clang-format off */
size_t hu_vm_list_count(const struct hu_vm_list *list) { return list ? list->n : 0; }
const struct hu_copy_rate *hu_vm_list_get_copy_rate(const struct hu_vm_list *list) { return &list->copy_rate; }
/* clang-format on */
struct hu_vm *hu_vm_list_get(const struct hu_vm_list *list, size_t i)
{
	return list && i < list->n ? list->vms[i] : NULL;
}
/* clang-format off */
const char *hu_vm_get_name(const struct hu_vm *vm) { return vm->name; }
pid_t hu_vm_get_pid(const struct hu_vm *vm) { return vm->pid; }
uint64_t hu_vm_get_ram_bytes(const struct hu_vm *vm) { return vm->ram_bytes; }
enum hu_backing hu_vm_get_backing(const struct hu_vm *vm) { return vm->backing; }
/* "in-place" only when no byte of guest RAM goes into the state file. */
bool hu_vm_get_in_place(const struct hu_vm *vm) { return vm->in_place && !vm->copies_ram; }
uint64_t hu_vm_get_save_bytes(const struct hu_vm *vm) { return vm->save_bytes; }
uint64_t hu_vm_get_copy_bytes(const struct hu_vm *vm) { return vm->copy_bytes; }
const char *hu_vm_get_runstate(const struct hu_vm *vm) { return vm->runstate; }
bool hu_vm_get_queried(const struct hu_vm *vm) { return vm->qmp_ok; }
const char *hu_vm_get_qemu_version(const struct hu_vm *vm) { return vm->qemu_version; }
enum hu_agent hu_vm_get_agent(const struct hu_vm *vm) { return vm->qmp_ok ? vm->agent : HU_AGENT_UNKNOWN; }
size_t hu_vm_get_n_blockers(const struct hu_vm *vm) { return vm->n_blockers; }
uid_t hu_vm_get_uid(const struct hu_vm *vm) { return vm->uid; }
const char *hu_vm_get_runas(const struct hu_vm *vm) { return vm->ai.runas; }
const char *hu_vm_get_skipped(const struct hu_vm *vm) { return vm->skipped; }
const char *hu_vm_get_error(const struct hu_vm *vm) { return vm->error; }
const char *hu_vm_get_state(const struct hu_vm *vm) { return hu_vm_state_to_string(vm->state); }
/* clang-format on */
const char *hu_vm_get_blocker(const struct hu_vm *vm, size_t i)
{
	return i < vm->n_blockers ? vm->blockers[i] : NULL;
}

int hu_vm_set_error(struct hu_vm *vm, int r, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(vm->error);
	vm->error = s;
	return r < 0 ? r : -EIO;
}

struct proc_stat {
	pid_t ppid, session;
	uint64_t starttime;
};

/* What /proc/PID/stat says of a live process; a zombie (or dead) one is -ESRCH. */
static int proc_stat(struct hu_ctx *ctx, pid_t pid, struct proc_stat *ret)
{
	_cleanup_free_ char *path = NULL, *stat = NULL;
	const char *p;
	unsigned long long v;
	int ppid, pgrp, session, r;
	char state;

	if (asprintf(&path, "%s/%d/stat", ctx->proc_root, (int)pid) < 0)
		return -ENOMEM;
	r = hu_read_file(path, 4096, &stat, NULL);
	if (r < 0)
		return r;
	/* comm may contain spaces and ')': fields start after the last ')'. */
	p = strrchr(stat, ')');
	if (!p)
		return -EBADMSG;
	p++;
	if (sscanf(p, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
		return -EBADMSG;
	if (state == 'Z' || state == 'X')
		return -ESRCH;
	for (int field = 3; field < 22; field++) { /* p: the space before field 3 */
		p = strchr(p + 1, ' ');
		if (!p)
			return -EBADMSG;
	}
	if (sscanf(p, " %llu", &v) != 1)
		return -EBADMSG;
	*ret = (struct proc_stat){ .ppid = ppid, .session = session, .starttime = v };
	return 0;
}

int hu_proc_starttime(struct hu_ctx *ctx, pid_t pid, uint64_t *ret)
{
	struct proc_stat ps;
	int r = proc_stat(ctx, pid, &ps);

	if (r < 0)
		return r;
	*ret = ps.starttime;
	return 0;
}

/* Started by us: in the session of `session` (the child we forked calls
 * setsid()), or below this process (a QEMU that daemonizes leaves that
 * session, and is reparented to us, its subreaper). */
static bool descends_from_us(struct hu_ctx *ctx, const struct proc_stat *ps, pid_t session)
{
	struct proc_stat up = *ps;

	for (int depth = 0; depth < 16; depth++) {
		if (up.session == session || up.ppid == getpid() || up.ppid == session)
			return true;
		if (up.ppid <= 1 || proc_stat(ctx, up.ppid, &up) < 0)
			return false;
	}
	return false;
}

int hu_pid_open(struct hu_ctx *ctx, pid_t pid, uint64_t starttime, pid_t session, int *ret_pidfd)
{
	_cleanup_close_ int pidfd = -1;
	struct proc_stat ps;
	int r;

	if (pid <= 1)
		return -EPERM;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	/* Read after the pidfd is taken, and it still alive afterwards: what
	 * /proc said is about the process the pidfd holds, not a later one
	 * that got the same pid. */
	r = proc_stat(ctx, pid, &ps);
	if (r < 0)
		return r;
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		return -ESRCH;
	if (starttime && ps.starttime != starttime)
		return -ESRCH;
	if (session > 0 && !descends_from_us(ctx, &ps, session))
		return -EPERM;
	*ret_pidfd = TAKE_FD(pidfd);
	return 0;
}

int hu_pidfd_kill(int pidfd, unsigned timeout_ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	int r;

	if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
		return -errno;
	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

int hu_pid_kill(struct hu_ctx *ctx, pid_t pid, uint64_t starttime)
{
	_cleanup_close_ int pidfd = -1;
	int r = hu_pid_open(ctx, pid, starttime, 0, &pidfd);

	if (r == -ESRCH || r == -ENOENT)
		return 0; /* gone already, or no longer that process */
	if (r < 0)
		return r;
	r = hu_pidfd_kill(pidfd, 10000);
	waitpid(pid, NULL, WNOHANG); /* ours if we forked it */
	return r < 0 ? -EBUSY : 0;
}

int hu_pid_wait_exit(struct hu_ctx *ctx, pid_t pid, uint64_t starttime, unsigned timeout_ms)
{
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int64_t deadline = hu_mono_ms() + timeout_ms;
	uint64_t now;

	for (;;) {
		int64_t left;

		/* Checked after the pidfd is open: it then refers to this process. */
		if (hu_proc_starttime(ctx, pid, &now) < 0 || (starttime && now != starttime))
			return 0;
		left = deadline - hu_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };

			if (poll(&p, 1, (int)(left < INT32_MAX ? left : INT32_MAX)) > 0)
				return 0; /* readable: it exited (PID 1 may reap it later) */
		} else {
			usleep(2000); /* no pidfd_open (kernel < 5.3) */
		}
	}
}

bool hu_vm_process_alive(struct hu_vm *vm)
{
	uint64_t st;

	if (vm->pid <= 0 || hu_proc_starttime(vm->ctx, vm->pid, &st) < 0)
		return false;
	return st == vm->starttime;
}

static const char *const state_names[] = {
	[HU_VM_RUNNING] = "running",	       [HU_VM_STOPPING] = "stopping",	[HU_VM_SAVED] = "saved",
	[HU_VM_CHECKPOINTED] = "checkpointed", [HU_VM_RESTORING] = "restoring", [HU_VM_RESTORED] = "restored",
	[HU_VM_RESUMED] = "resumed",	       [HU_VM_FAILED] = "failed",
};

const char *hu_vm_state_to_string(enum hu_vm_state s)
{
	return s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

int hu_vm_state_from_string(const char *s, enum hu_vm_state *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
		if (streq(s, state_names[i])) {
			*ret = i;
			return 0;
		}
	return -EINVAL;
}

/* The uid QEMU itself takes for -runas / -run-with user=: a user name, or
 * "UID:GID" (os-posix.c). */
static int runas_uid(const char *user, uid_t *ret)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	unsigned long v;
	char *end;

	if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) == 0 && res) {
		*ret = res->pw_uid;
		return 0;
	}
	errno = 0;
	v = strtoul(user, &end, 0);
	if (errno || end == user || *end != ':' || v >= (uid_t)-1)
		return -ENOENT;
	*ret = (uid_t)v;
	return 0;
}

int hu_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char pwbuf[4096];

	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		return snprintf(buf, len, "%s", res->pw_name) < (int)len ? 0 : -ENAMETOOLONG;
	snprintf(buf, len, "#%u", (unsigned)uid);
	return 0;
}

int hu_vm_start_as(const struct hu_vm *vm, bool *ret_as_root, char **ret_error)
{
	uid_t uid;

	if (vm->ai.runas) {
		/* QEMU starts as root and drops to this user itself: only when the
		 * QEMU we saw (its uid from /proc, not its argv) ran as that user. */
		if (runas_uid(vm->ai.runas, &uid) < 0)
			return hu_errorf(
				ret_error, -ENOENT,
				"its command line asks QEMU to run as '%.64s', which is no user here",
				vm->ai.runas);
		if (uid != vm->uid)
			return hu_errorf(
				ret_error, -EPERM,
				"its command line asks QEMU to run as '%.64s' (uid %u), but it ran as uid %u: "
				"it would be started as root",
				vm->ai.runas, (unsigned)uid, (unsigned)vm->uid);
	}
	*ret_as_root = vm->ai.runas || vm->uid == 0;
	return hu_exe_check(vm->exe, *ret_as_root ? 0 : vm->uid, ret_error);
}

int hu_exe_check(const char *path, uid_t uid, char **ret_error)
{
	_cleanup_free_ char *p = NULL;
	struct stat st = {};
	size_t len;

	if (!path || path[0] != '/')
		return hu_errorf(ret_error, -EINVAL, "QEMU binary %s: not an absolute path",
				 path ?: "(none)");
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	len = strlen(p);
	/* "/", then each directory below it, then the file itself */
	for (size_t i = 0; i <= len; i++) {
		char c = p[i];
		const char *what;

		if (i > 0 && c != '/' && c != '\0')
			continue;
		if (i > 0 && p[i - 1] == '/')
			continue; /* "//" */
		p[i] = '\0';
		if (lstat(i ? p : "/", &st) < 0) {
			int r = -errno;

			return hu_errorf(ret_error, r, "QEMU binary %s: %s: %s", path, i ? p : "/",
					 strerror(-r));
		}
		if (S_ISLNK(st.st_mode))
			what = "is a symbolic link";
		else if (st.st_uid != 0 && st.st_uid != uid)
			what = "is owned by another user";
		else if ((st.st_mode & S_IWOTH) && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX)))
			what = "is writable by others";
		else if ((st.st_mode & S_IWGRP) && st.st_gid != 0 &&
			 !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX)))
			what = "is writable by its group";
		else
			what = NULL;
		if (what)
			return hu_errorf(
				ret_error, -EPERM,
				"QEMU binary %s: %s %s (uid %u, mode %04o): refusing to run it as %s%u", path,
				i ? p : "/", what, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
				uid ? "uid " : "root, uid ", (unsigned)uid);
		p[i] = c;
	}
	if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return hu_errorf(ret_error, -EACCES, "QEMU binary %s: not an executable regular file", path);
	return 0;
}
