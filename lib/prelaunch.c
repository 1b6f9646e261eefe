/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * prelaunch: a QEMU-only upgrade (run --no-reboot) that starts the new QEMU
 * (the recorded argv + "-incoming defer") while the old one still runs, so
 * the blackout is save + load, not save + quit + start-up + load.
 * Per VM (docs/design/prelaunch.md):
 *   1. the old QEMU's listening sockets (QMP, agent) and its pidfile are
 *      renamed aside (PATH.hu-prelaunch): the pidfile's lock would stop the
 *      new QEMU, and its QMP path must reach the new one only; our QMP
 *      connection to the old one is open before;
 *   2. the new QEMU is started and recorded (prelaunch_pid) before it can
 *      get the guest; 3. the old one is saved (cpr-reboot), the new one
 *      loads and runs; 4. only then the old one is ended with SIGKILL: its
 *      exit cleanup would unlink, by path, the new QEMU's sockets and pidfile.
 * Any failure before the new QEMU has the guest: the new one is killed,
 * the paths are put back, the old one resumed. abort decides a record cut
 * short by the new QEMU's migration status (hu_prelaunch_converge).
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "hu-private.h"

/* The paths a running QEMU owns that a second one would take over: its
 * pidfile and every unix socket it binds (QMP, agent, other monitors,
 * serial ports, VNC, -netdev stream/dgram; those of its -readconfig files
 * too, as discover read them), absolute (a relative one is from its working
 * directory), each once. At most HU_MAX_LISTEN_PATHS + 3 (untrusted argv). */
static int owned_paths(const struct hu_vm *vm, char ***ret, size_t *ret_n)
{
	const char *named[3] = { vm->ai.qmp_path, vm->ai.qga_path, vm->ai.pidfile };
	char **out = NULL;
	size_t n = 0;
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(named) + vm->ai.n_listen_paths && r >= 0; i++) {
		const char *p = i < ARRAY_SIZE(named) ? named[i] : vm->ai.listen_paths[i - ARRAY_SIZE(named)];
		_cleanup_free_ char *abs = NULL;
		bool seen = false;

		if (!p || !p[0])
			continue;
		if (p[0] == '/' ? !(abs = strdup(p)) : asprintf(&abs, "%s/%s", vm->cwd ?: "/", p) < 0) {
			r = -ENOMEM;
			break;
		}
		for (size_t j = 0; j < n && !seen; j++)
			seen = streq(out[j], abs);
		if (!seen)
			r = hu_strv_push(&out, &n, abs);
	}
	if (r < 0) {
		hu_strv_free(out, n);
		return r;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

/* The directory DIR as an O_PATH fd, reached without a symbolic link that
 * someone other than root could have put there: a link is followed only
 * when root owns it and its directory, which nobody else may write (so
 * /var/run -> /run is fine; a user's directory swapped for a link to /etc
 * is not). -ELOOP for such a path. */
static int open_dir_safely(const char *dir)
{
	_cleanup_free_ char *copy = strdup(dir);
	_cleanup_close_ int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	if (fd < 0)
		return -errno;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		struct stat st, dst;
		int flags = O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW, nfd;

		if (fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (S_ISLNK(st.st_mode)) {
			if (fstat(fd, &dst) < 0)
				return -errno;
			if (st.st_uid != 0 || dst.st_uid != 0 || (dst.st_mode & (S_IWGRP | S_IWOTH)))
				return -ELOOP;
			flags &= ~O_NOFOLLOW;
		}
		nfd = openat(fd, c, flags);
		if (nfd < 0)
			return -errno;
		close(fd);
		fd = nfd;
	}
	return TAKE_FD(fd);
}

/* PATH's directory (safely) and its last component; -ENOENT, -ELOOP. */
static int open_parent(const char *path, int *ret_dfd, const char **ret_base)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	int fd;

	if (!dir)
		return -ENOMEM;
	if (!slash || !slash[1])
		return -EINVAL;
	slash[1] = '\0';
	fd = open_dir_safely(dir);
	if (fd < 0)
		return fd;
	*ret_dfd = fd;
	*ret_base = path + (slash + 1 - dir);
	return 0;
}

/* Ours to move: a socket or a regular file of the QEMU's own user. What
 * another user owns is not ours (it stays, and the new QEMU replaces it
 * as a sequential restore would). */
static bool ours_at(const struct hu_vm *vm, int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       (S_ISSOCK(st.st_mode) || S_ISREG(st.st_mode)) && st.st_uid == vm->uid;
}

static char *aside_name(const char *path)
{
	char *s = NULL;

	if (asprintf(&s, "%s" HU_PRELAUNCH_ASIDE, path) < 0)
		return NULL;
	return s;
}

/* Move the old QEMU's paths aside (PATH.hu-prelaunch), each renamed inside
 * its directory opened once: a path through a link root does not own, or
 * a file of another user, is left alone. */
static int paths_aside(const struct hu_vm *vm, char **ret_error)
{
	char **paths = NULL;
	size_t n = 0;
	int r = owned_paths(vm, &paths, &n);

	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *aside = NULL;
		_cleanup_close_ int dfd = -1;
		const char *base;

		r = open_parent(paths[i], &dfd, &base);
		if (r == -ENOENT || r == -ELOOP || r == -EINVAL || r == -ENOTDIR) {
			r = 0;
			continue;
		}
		if (r < 0) {
			r = hu_errorf(ret_error, r, "%s: %s", paths[i], strerror(-r));
			break;
		}
		if (!ours_at(vm, dfd, base))
			continue;
		aside = aside_name(base);
		if (!aside)
			r = -ENOMEM;
		else if (renameat(dfd, base, dfd, aside) < 0)
			r = hu_errorf(ret_error, -errno, "cannot move %s aside: %s", paths[i],
				      strerror(errno));
	}
	hu_strv_free(paths, n);
	return r;
}

/* back: the old QEMU keeps the VM (its paths return); else the new one has
 * it (the old ones' names go). Idempotent: abort may run it again. */
static void paths_settle(const struct hu_vm *vm, bool back)
{
	char **paths = NULL;
	size_t n = 0;

	if (owned_paths(vm, &paths, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *aside = NULL;
		_cleanup_close_ int dfd = -1;
		const char *base;

		if (open_parent(paths[i], &dfd, &base) < 0)
			continue;
		aside = aside_name(base);
		if (!aside || !ours_at(vm, dfd, aside))
			continue;
		if (back)
			renameat(dfd, aside, dfd, base);
		else
			unlinkat(dfd, aside, 0);
	}
	hu_strv_free(paths, n);
}

/* Whether cgroup path CG is inside a systemd service: any component ending
 * in ".service" (with Delegate=yes, QEMU runs in a sub-cgroup of its unit). */
static bool in_service(const char *cg)
{
	static const char suffix[] = ".service";
	const size_t n = sizeof(suffix) - 1;

	while (cg && *cg) {
		size_t len = strcspn(cg, "/");

		if (len > n && !memcmp(cg + len - n, suffix, n))
			return true;
		cg += len;
		cg += *cg == '/';
	}
	return false;
}

bool hu_prelaunch_eligible(const struct hu_vm *vm, const char **ret_why)
{
	const char *why = NULL;

	if (vm->mgr)
		why = "run by a VM manager (not done by prelaunch yet)";
	else if (vm->ai.has_vfio || vm->suspend)
		why = "a VFIO device cannot be opened by two QEMUs";
	else if (vm->ai.passes_fd)
		why = "QEMU was handed a file descriptor a new process cannot reopen";
	else if (vm->n_memdevs == 0 || vm->copies_ram)
		why = "RAM not all in shared files (memfd or private RAM: cpr-transfer is not done yet)";
	else if (vm->ai.once & HU_ONCE_TAP)
		why = "a tap network device cannot be opened by two QEMUs";
	else if (vm->ai.once & HU_ONCE_PORT)
		why = "the old QEMU listens on a TCP port (a VNC display, a chardev or gdb server, hostfwd, "
		      "-netdev socket listen=): a second QEMU cannot bind it";
	else if (vm->ai.once & HU_ONCE_BACKEND)
		why = "a vhost-user or swtpm back end takes one connection (not verified)";
	else if (vm->ai.once & HU_ONCE_HOST_DEV)
		why = "a host device (usb-host, u2f-passthru, vhost-scsi/vsock/vdpa, af-xdp, TPM passthrough) "
		      "cannot be opened by two QEMUs (not verified)";
	else if (vm->ai.listen_paths_over)
		why = "more than 64 listening unix sockets to move aside";
	else if (in_service(vm->cgroup))
		why = "the old QEMU's end would stop its systemd service and the new QEMU with it";
	for (size_t i = 0; !why && i < vm->n_memdevs; i++)
		if (!vm->memdevs[i].mem_path || !vm->memdevs[i].skipped)
			why = "RAM not all in shared files (memfd or private RAM: cpr-transfer is not done yet)";
	if (!why && !vm->ai.qmp_path)
		why = "no QMP socket path";
	if (ret_why)
		*ret_why = why;
	return !why;
}

const char *hu_vm_get_restart(const struct hu_vm *vm, const char **ret_why)
{
	return hu_prelaunch_eligible(vm, ret_why) ? "prelaunch" : "sequential";
}

/* The VM's step, persisted: < 0 when the manifest could not be written. */
static int record(struct hu_manifest *m, struct hu_vm *vm, enum hu_vm_state state, pid_t pre_pid,
		  uint64_t pre_starttime)
{
	pthread_mutex_lock(&m->lock);
	vm->state = state;
	vm->pre_pid = pre_pid;
	vm->pre_starttime = pre_starttime;
	pthread_mutex_unlock(&m->lock);
	hu_manifest_snapshot(m, vm, true);
	return hu_manifest_save(m);
}

/* Test hook (tests/bats/80-prelaunch.bats): make one step fail for real —
 * "spawn" points the new QEMU at a binary that does not exist, "load" has
 * the new QEMU load from a state file that is not one, "kill-new" and
 * "kill-old" SIGKILL the new QEMU or the old one after the save. Read only when
 * HU_TEST_PRELAUNCH_FAIL is set; documented in HACKING.md. */
static const char *test_fail(void)
{
	return secure_getenv("HU_TEST_PRELAUNCH_FAIL");
}

/* Test hook: HU_TEST_PRELAUNCH_DIE=STEP makes this process die by SIGKILL at
 * STEP (aside, forked, started, spawned, saved, loaded), as a kill -9 there would. */
static void die_at(const char *step)
{
	const char *s = secure_getenv("HU_TEST_PRELAUNCH_DIE");

	if (s && streq(s, step))
		raise(SIGKILL);
}

/* A migration status that proves the new QEMU never ran the guest. */
static bool never_loaded(const char *mstatus)
{
	return streq(mstatus, "none") || streq(mstatus, "failed") || streq(mstatus, "cancelled");
}

struct prelaunch_job {
	struct hu_ctx *ctx;
	struct hu_manifest *m;
};

/* pidfd: the new QEMU's, opened right after its fork (-1: none started).
 * Never a pid: once hu_spawn_connect has reaped our child, its pid may name
 * another process. */
static void rollback(struct prelaunch_job *job, struct hu_vm *vm, struct hu_qmp *old_qmp, int pidfd,
		     const char *why)
{
	_cleanup_free_ char *err = NULL;

	hu_qmp_close(vm->qmp);
	vm->qmp = old_qmp;
	vm->pre_incoming = false;
	if (pidfd >= 0) {
		siginfo_t si;

		hu_pidfd_kill(pidfd, 10000);
		waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG); /* ECHILD when reaped already */
	}
	paths_settle(vm, true);
	if (hu_vm_resume_original(vm, &err) < 0) {
		hu_vm_set_error(vm, -EIO, "%s; %s", why, err ?: "cannot resume");
		record(job->m, vm, HU_VM_FAILED, 0, 0);
	} else {
		hu_vm_set_error(vm, -EIO, "%s; the old QEMU runs on", why);
		record(job->m, vm, HU_VM_RESUMED, 0, 0);
	}
	hu_journal(job->ctx, vm->name, hu_vm_state_to_string(vm->state), vm->error);
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
}

/* The new QEMU (vm->qmp) gets the migration settings the old one's save
 * will use, decided from the old one unchanged, while the guest still runs:
 * the blackout is save + migrate-incoming + load. *ret_planned: that set. */
static int set_up_new(struct hu_vm *vm, struct hu_qmp *old_qmp, json_object **ret_planned, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL;
	struct hu_qmp *new_qmp = vm->qmp;
	int r;

	vm->qmp = old_qmp;
	r = hu_migration_plan_source(vm, &qerr);
	vm->qmp = new_qmp;
	if (r < 0)
		return hu_errorf(ret_error, r, "the old QEMU's migration capabilities: %s",
				 qerr ?: hu_qmp_strerror(r));
	r = hu_migration_setup_dest(vm, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot set the new QEMU's migration settings: %s",
				 qerr ?: hu_qmp_strerror(r));
	*ret_planned = json_object_get(vm->caps);
	return 0;
}

/* Whether the process of PIDFD has ended (no waiting). */
static bool pidfd_ended(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

static void prelaunch_one(struct prelaunch_job *job, struct hu_vm *vm)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *err = NULL, *status = NULL, *real_exe = NULL, *real_state = NULL;
	_cleanup_close_ int new_fd = -1, gate = -1;
	_cleanup_json_ json_object *planned = NULL;
	struct hu_qmp *old_qmp;
	pid_t child = 0, pid = 0;
	uint64_t starttime = 0;
	int r;

	/* Our line to the old QEMU, open before its path is moved. */
	if (!vm->qmp) {
		r = hu_manager_monitor(vm, ctx->qmp_timeout_ms, &vm->qmp, &err);
		if (r < 0) {
			hu_vm_set_error(vm, r, "%s", err ?: hu_qmp_strerror(r));
			record(job->m, vm, HU_VM_FAILED, 0, 0);
			return;
		}
	}
	old_qmp = vm->qmp;
	vm->qmp = NULL;
	r = paths_aside(vm, &err);
	if (r < 0) {
		rollback(job, vm, old_qmp, -1, err ?: "cannot move its paths aside");
		return;
	}
	die_at("aside");
	hu_info(ctx, vm->name, "starting the new QEMU %s beside the running one", vm->exe);
	if (test_fail() && streq(test_fail(), "spawn")) {
		real_exe = vm->exe;
		vm->exe = strdup("/nonexistent/qemu-system-x86_64");
	}
	r = hu_spawn_qemu(ctx, vm, &child, &gate, &err);
	if (real_exe) {
		free(vm->exe);
		vm->exe = TAKE_PTR(real_exe);
	}
	if (r >= 0) {
		/* Our child, not reaped yet: its pid names it until we wait for it. */
		new_fd = (int)syscall(SYS_pidfd_open, child, 0);
		if (new_fd < 0) {
			r = hu_errorf(&err, -errno, "pidfd of the new QEMU pid %d: %s", (int)child,
				      strerror(errno));
			kill(child, SIGKILL); /* not reaped: still ours */
			waitpid(child, NULL, 0);
		}
	}
	die_at("forked");
	/* Recorded before it runs QEMU at all (it waits at its gate; a start
	 * time is kept across execve), else never run: abort decides by this
	 * record, and a child whose gate closes unopened exits. */
	if (r >= 0) {
		r = hu_proc_starttime(ctx, child, &starttime);
		if (r < 0)
			hu_errorf(&err, r, "cannot read the start time of the new QEMU pid %d: %s",
				  (int)child, strerror(-r));
	}
	if (r >= 0) {
		r = record(job->m, vm, HU_VM_RUNNING, child, starttime);
		if (r < 0)
			hu_errorf(&err, r, "cannot record the new QEMU in the manifest: %s", strerror(-r));
	}
	if (r >= 0) {
		r = hu_spawn_open_gate(&gate);
		if (r < 0)
			hu_errorf(&err, r, "the new QEMU's process pid %d did not wait for its start: %s",
				  (int)child, strerror(-r));
	}
	die_at("started");
	pid = child;
	if (r >= 0) {
		_cleanup_close_ int connect_fd = -1; /* without -daemonize, the same process as new_fd */

		r = hu_spawn_connect(ctx, vm, child, &pid, &connect_fd, &err);
		if (r >= 0 && pid != child) {
			/* -daemonize: the QEMU is the daemon our child left (reaped
			 * by now), recorded in its place before the save. */
			close(new_fd);
			new_fd = TAKE_FD(connect_fd);
			r = hu_proc_starttime(ctx, pid, &starttime);
			if (r >= 0)
				r = record(job->m, vm, HU_VM_RUNNING, pid, starttime);
			if (r < 0)
				hu_errorf(&err, r, "cannot record the new QEMU's daemon pid %d: %s", (int)pid,
					  strerror(-r));
		}
	}
	if (r >= 0)
		r = set_up_new(vm, old_qmp, &planned, &err);
	if (r < 0) {
		rollback(job, vm, old_qmp, new_fd, err ?: "the new QEMU did not start");
		return;
	}
	die_at("spawned");
	/* The old one: the checkpoint's save, to postmigrate. */
	{
		struct hu_qmp *new_qmp = vm->qmp;

		vm->qmp = old_qmp;
		r = hu_checkpoint_save_vm(vm);
		old_qmp = vm->qmp;
		vm->qmp = new_qmp;
	}
	if (r < 0) {
		_cleanup_free_ char *why = strdup(vm->error ?: "the save failed");

		rollback(job, vm, old_qmp, new_fd, why ?: "the save failed");
		return;
	}
	if (test_fail() && streq(test_fail(), "kill-old"))
		hu_pid_kill(ctx, vm->pid, vm->starttime); /* nothing of it is needed after its save */
	record(job->m, vm, HU_VM_SAVED, pid, starttime);
	die_at("saved");
	if (test_fail() && streq(test_fail(), "kill-new"))
		hu_pidfd_kill(new_fd, 10000); /* the new QEMU dies before its load */
	/* The new QEMU was set up for what the save was to use; a set that
	 * changed meanwhile (another client of the old QEMU) is not loaded. */
	if (!json_object_equal(planned, vm->caps))
		r = hu_errorf(&err, -ESTALE,
			      "the old QEMU's migration capabilities changed during the prelaunch");
	else if (pidfd_ended(new_fd))
		r = hu_errorf(&err, -ESRCH, "the new QEMU pid %d ended before its load", (int)pid);
	if (r >= 0 && test_fail() && streq(test_fail(), "load")) {
		/* A state file that is not one: QEMU refuses it, as a corrupt one. */
		real_state = vm->state_file;
		if (asprintf(&vm->state_file, "%s/%s.log", ctx->state_dir, vm->name) < 0)
			vm->state_file = TAKE_PTR(real_state);
	}
	if (r >= 0) {
		/* From here the new QEMU may run the guest: recorded first, so
		 * that abort never resumes the old one on a guess. */
		pthread_mutex_lock(&job->m->lock);
		vm->pre_incoming = true;
		pthread_mutex_unlock(&job->m->lock);
		r = record(job->m, vm, HU_VM_SAVED, pid, starttime);
		if (r < 0)
			hu_errorf(&err, r, "cannot record the load in the manifest: %s", strerror(-r));
		else
			r = hu_restore_incoming(vm, &err);
	}
	if (r >= 0)
		r = hu_restore_finish_load(vm, &err);
	if (real_state) {
		free(vm->state_file);
		vm->state_file = TAKE_PTR(real_state);
	}
	if (r < 0 && vm->pre_incoming) {
		/* A late error: the new QEMU's migration status decides. */
		int q = vm->qmp ? hu_migration_query(vm->qmp, &status, NULL) : -ENOTCONN;

		if (q >= 0 && streq(status, "completed")) {
			hu_migration_reset(vm); /* cpr-reboot and x-ignore-shared do not stay */
			r = 0;
		} else if (q < 0 || !never_loaded(status)) {
			hu_vm_set_error(vm, q < 0 ? q : -EBUSY,
					"cannot tell which QEMU has the guest: %s; the new QEMU pid %d: %s; "
					"both are left as they are, abort decides",
					err ?: "the load failed", (int)pid,
					q < 0 ? hu_qmp_strerror(q) : status);
			record(job->m, vm, HU_VM_FAILED, pid, starttime);
			hu_journal(ctx, vm->name, "failed", vm->error);
			hu_qmp_close(old_qmp);
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			return;
		}
	}
	if (r < 0) {
		rollback(job, vm, old_qmp, new_fd, err ?: "the new QEMU did not load the state");
		return;
	}
	/* The guest runs (its RESUME came): the blackout ends here, as a
	 * sequential restore counts it. */
	pthread_mutex_lock(&job->m->lock);
	vm->running_at_ms = hu_now_ms();
	pthread_mutex_unlock(&job->m->lock);
	die_at("loaded");
	/* The new QEMU has the guest: end the old one without its exit cleanup. */
	hu_qmp_close(old_qmp);
	if (hu_pid_kill(ctx, vm->pid, vm->starttime) < 0)
		hu_info(ctx, vm->name, "the old QEMU pid %d does not exit; it is stopped in postmigrate",
			(int)vm->pid);
	paths_settle(vm, false);
	hu_spawn_move_to_scope(ctx, vm, pid);
	pthread_mutex_lock(&job->m->lock);
	vm->pid = pid;
	vm->starttime = starttime;
	pthread_mutex_unlock(&job->m->lock);
	hu_restore_fix_clock(job->m, vm); /* as after a sequential restore */
	record(job->m, vm, HU_VM_RESTORED, 0, 0);
	hu_journal(ctx, vm->name, "restored", "prelaunch");
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
	hu_info(ctx, vm->name, "restarted by prelaunch as pid %d, down %lld ms", (int)pid,
		(long long)(vm->running_at_ms - vm->stopped_at_ms));
}

static void prelaunch_worker(size_t i, void *data)
{
	struct prelaunch_job *job = data;

	prelaunch_one(job, job->m->list.vms[i]);
}

int hu_prelaunch_vms(struct hu_ctx *ctx, struct hu_manifest *m)
{
	struct prelaunch_job job = { .ctx = ctx, .m = m };
	size_t resumed = 0, failed = 0;
	const char *first = NULL;

	hu_info(ctx, NULL, "restarting %zu VM%s by prelaunch", m->list.n, m->list.n == 1 ? "" : "s");
	/* Each worker changes its VM's fields unlocked (the save, the load,
	 * its error): a save by another worker writes what it recorded last. */
	for (size_t i = 0; i < m->list.n; i++)
		hu_manifest_snapshot(m, m->list.vms[i], true);
	/* Every step of every VM is recorded before it is taken: a fsync each
	 * (4 per VM, under one lock) was most of a 16-VM blackout. A kill of
	 * this process loses no record (the rename is atomic); a host crash
	 * ends both QEMUs, and what a lost record leaves names only VMs marked
	 * unflushed (a durable save before said so), which no restore resumes. */
	m->lazy_saves = true;
	for (size_t i = 0; i < m->list.n; i++)
		m->lazy_saves = m->lazy_saves && m->list.vms[i]->unflushed;
	hu_parallel_for(m->list.n, ctx->jobs, prelaunch_worker, &job);
	m->lazy_saves = false;
	for (size_t i = 0; i < m->list.n; i++)
		hu_manifest_snapshot(m, m->list.vms[i], false);
	for (size_t i = 0; i < m->list.n; i++) {
		struct hu_vm *vm = m->list.vms[i];

		resumed += vm->state == HU_VM_RESUMED;
		failed += vm->state != HU_VM_RESTORED && vm->state != HU_VM_RESUMED;
		if (vm->state != HU_VM_RESTORED && !first)
			first = vm->name;
	}
	hu_manifest_set_phase(m, failed ? "restore-failed" : "restored");
	if (failed)
		return (int)failed;
	if (resumed)
		return hu_fail(ctx, -EIO, "%zu of %zu VMs could not be restarted (%s first)", resumed,
			       m->list.n, first);
	return 0;
}

/* The process named by pid/starttime, as a pidfd; -ESRCH when gone. */
static int open_if_alive(struct hu_ctx *ctx, pid_t pid, uint64_t starttime, int *ret_fd)
{
	return hu_pid_open(ctx, pid, starttime, 0, ret_fd);
}

/* The new QEMU's migration status over its QMP path (vm->qmp stays open);
 * a load under way is waited for. */
static int new_migration_status(struct hu_vm *vm, char **ret_status, char **ret_error)
{
	struct hu_ctx *ctx = vm->ctx;
	_cleanup_free_ char *ms = NULL;
	int r;

	if (!vm->ai.qmp_path)
		return hu_errorf(ret_error, -ENOENT, "no QMP socket path");
	r = hu_qmp_connect(vm->ai.qmp_path, ctx->qmp_timeout_ms, &vm->qmp);
	if (r >= 0)
		r = hu_migration_query(vm->qmp, &ms, NULL);
	if (r >= 0 && !streq(ms, "completed") && !never_loaded(ms)) {
		/* Loading still: its end decides. */
		hu_migration_wait(vm->qmp, hu_migration_timeout_ms(vm->state_bytes), NULL);
		free(ms);
		ms = NULL;
		r = hu_migration_query(vm->qmp, &ms, NULL);
		if (r >= 0 && !streq(ms, "completed") && !never_loaded(ms))
			return hu_errorf(ret_error, -EBUSY, "its load is still '%s'", ms);
	}
	if (r < 0)
		return hu_errorf(ret_error, r, "QMP %s: %s", vm->ai.qmp_path, hu_qmp_strerror(r));
	*ret_status = TAKE_PTR(ms);
	return 0;
}

/* A daemonizing QEMU is recorded twice: the process we forked before it
 * runs QEMU (the gate), its daemon once that is up. Cut short between the
 * two, the record names the first, and the daemon runs unrecorded. It is
 * found as restore finds what an earlier run left: in /proc, the VM's
 * binary and user, its QMP path, -incoming defer, started after the
 * recorded process. Its load never asked for (prelaunch_incoming unset),
 * it never ran the guest: ended. */
static void end_unrecorded_daemon(struct hu_vm *vm)
{
	struct hu_ctx *ctx = vm->ctx;
	struct hu_vm_list *now = NULL;

	if (!vm->ai.daemonize || vm->pre_incoming || !vm->ai.qmp_path || hu_scan_processes(ctx, &now) < 0)
		return;
	for (size_t i = 0; i < now->n; i++) {
		struct hu_vm *p = now->vms[i];

		if (p->pid == vm->pid || p->pid == vm->pre_pid || p->starttime < vm->pre_starttime ||
		    !streq(p->exe, vm->exe) || (p->uid != vm->uid && !(vm->ai.runas && p->uid == 0)) ||
		    !p->ai.qmp_path || !streq(p->ai.qmp_path, vm->ai.qmp_path) ||
		    !hu_argv_has_incoming_defer(p->argv, p->argc))
			continue;
		hu_info(ctx, vm->name, "ending pid %d, the new QEMU's daemon, which never ran the guest",
			(int)p->pid);
		hu_pid_kill(ctx, p->pid, p->starttime);
	}
	hu_vm_list_free(now);
}

int hu_prelaunch_converge(struct hu_vm *vm, enum hu_vm_state *ret_state, char **ret_error)
{
	struct hu_ctx *ctx = vm->ctx;
	_cleanup_close_ int new_fd = -1, old_fd = -1;
	_cleanup_free_ char *mstatus = NULL, *err = NULL;
	bool has_guest = false;
	int r;

	if (vm->pre_pid <= 0) {
		/* Cut short before the new QEMU was recorded: the old one's paths
		 * come back if it runs, the rest goes on as for any VM. */
		paths_settle(vm, hu_vm_process_alive(vm));
		return 0;
	}
	if (open_if_alive(ctx, vm->pre_pid, vm->pre_starttime, &new_fd) >= 0) {
		/* The new QEMU has the guest once its load completed, whatever
		 * came after; it never had it when its migration is none, failed
		 * or cancelled. Anything else, or no answer (another client on
		 * its one QMP socket, a timeout): neither QEMU is touched, and
		 * the record stays for the next abort. */
		r = new_migration_status(vm, &mstatus, &err);
		if (r < 0) {
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			*ret_state = HU_VM_FAILED;
			hu_errorf(ret_error, r,
				  "cannot tell which QEMU has the guest: the new QEMU pid %d: %s; "
				  "neither QEMU was touched, run abort again",
				  (int)vm->pre_pid, err);
			return 1;
		}
		has_guest = streq(mstatus, "completed");
		if (has_guest && hu_restore_finish_load(vm, &err) < 0) {
			hu_migration_reset(vm); /* cpr-reboot and x-ignore-shared do not stay */
			hu_info(ctx, vm->name, "the new QEMU pid %d has the guest; %s", (int)vm->pre_pid,
				err);
		}
		hu_qmp_close(vm->qmp);
		vm->qmp = NULL;
		if (!has_guest) {
			hu_info(ctx, vm->name, "ending the new QEMU pid %d, which never ran the guest",
				(int)vm->pre_pid);
			hu_pidfd_kill(new_fd, 10000);
		}
	} else if (vm->pre_incoming) {
		/* Gone after its load was asked for: it may have run the guest on
		 * the shared RAM file and the disks, so the old QEMU's paused copy
		 * may be stale. Resuming it is not ours to decide; its paths
		 * come back (the dead one's are of no use) for whoever does. */
		paths_settle(vm, true);
		*ret_state = HU_VM_FAILED;
		hu_errorf(
			ret_error, -ESRCH,
			"the new QEMU pid %d ended after its load was started and may have run the guest: "
			"the old QEMU pid %d is left paused at its QMP path (resuming it could run a stale guest); "
			"decide by hand",
			(int)vm->pre_pid, (int)vm->pid);
		return 1;
	}
	if (has_guest) {
		if (open_if_alive(ctx, vm->pid, vm->starttime, &old_fd) >= 0)
			hu_pidfd_kill(old_fd, 10000);
		paths_settle(vm, false);
		vm->pid = vm->pre_pid;
		vm->starttime = vm->pre_starttime;
		vm->pre_pid = 0;
		vm->pre_incoming = false;
		vm->running_at_ms = hu_now_ms();
		*ret_state = HU_VM_RESTORED;
		return 1;
	}
	/* Proven: the new QEMU never ran the guest. */
	end_unrecorded_daemon(vm);
	paths_settle(vm, true);
	vm->pre_pid = 0;
	vm->pre_incoming = false;
	if (hu_vm_process_alive(vm)) {
		r = hu_vm_resume_original(vm, ret_error);
		hu_qmp_close(vm->qmp);
		vm->qmp = NULL;
		*ret_state = r < 0 ? HU_VM_FAILED : HU_VM_RESUMED;
		return 1;
	}
	return 0; /* both gone: the sequential restore, from the state file if it was saved */
}
