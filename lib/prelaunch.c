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
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "hu-private.h"

/* The paths a running QEMU owns that a second one would take over. */
static size_t owned_paths(const struct hu_vm *vm, const char *paths[3])
{
	size_t n = 0;

	if (vm->ai.qmp_path)
		paths[n++] = vm->ai.qmp_path;
	if (vm->ai.qga_path)
		paths[n++] = vm->ai.qga_path;
	if (vm->ai.pidfile)
		paths[n++] = vm->ai.pidfile;
	return n;
}

static char *aside_name(const char *path)
{
	char *s = NULL;

	if (asprintf(&s, "%s" HU_PRELAUNCH_ASIDE, path) < 0)
		return NULL;
	return s;
}

/* Move the old QEMU's paths aside. Only sockets and regular files: what is
 * at a path another user controls is not ours to move (it stays, and the
 * new QEMU replaces it as a sequential restore would). */
static int paths_aside(const struct hu_vm *vm, char **ret_error)
{
	const char *paths[3];
	size_t n = owned_paths(vm, paths);

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *aside = aside_name(paths[i]);
		struct stat st;

		if (!aside)
			return -ENOMEM;
		if (lstat(paths[i], &st) < 0) {
			if (errno == ENOENT)
				continue;
			return hu_errorf(ret_error, -errno, "%s: %s", paths[i], strerror(errno));
		}
		if (!S_ISSOCK(st.st_mode) && !S_ISREG(st.st_mode))
			continue;
		if (rename(paths[i], aside) < 0)
			return hu_errorf(ret_error, -errno, "cannot move %s aside: %s", paths[i],
					 strerror(errno));
	}
	return 0;
}

/* back: the old QEMU keeps the VM (its paths return); else the new one has
 * it (the old ones' names go). Idempotent: abort may run it again. */
static void paths_settle(const struct hu_vm *vm, bool back)
{
	const char *paths[3];
	size_t n = owned_paths(vm, paths);

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *aside = aside_name(paths[i]);

		if (!aside || access(aside, F_OK) < 0)
			continue;
		if (back)
			rename(aside, paths[i]);
		else
			unlink(aside);
	}
}

static bool argv_has(const struct hu_vm *vm, const char *opt, const char *prefix)
{
	for (size_t i = 1; i + 1 < vm->argc; i++)
		if (streq(vm->argv[i], opt) && !strncmp(vm->argv[i + 1], prefix, strlen(prefix)))
			return true;
	return false;
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
	else if (vm->ai.daemonize)
		why = "-daemonize (not done by prelaunch yet)";
	else if (vm->ai.has_vfio || vm->suspend)
		why = "a VFIO device cannot be opened by two QEMUs";
	else if (vm->ai.passes_fd)
		why = "QEMU was handed a file descriptor a new process cannot reopen";
	else if (vm->n_memdevs == 0 || vm->copies_ram)
		why = "RAM not all in shared files (memfd or private RAM: cpr-transfer is not done yet)";
	else if (argv_has(vm, "-netdev", "tap") || argv_has(vm, "-netdev", "bridge") ||
		 argv_has(vm, "-nic", "tap") || argv_has(vm, "-nic", "bridge") || argv_has(vm, "-net", "tap"))
		why = "a tap network device cannot be opened by two QEMUs";
	else if (argv_has(vm, "-netdev", "vhost-user") || argv_has(vm, "-chardev", "vhost-user") ||
		 argv_has(vm, "-device", "vhost-user"))
		why = "a vhost-user back end takes one connection (not verified)";
	else if (argv_has(vm, "-device", "usb-host") || argv_has(vm, "-device", "vfio") ||
		 argv_has(vm, "-device", "vhost-"))
		why = "a host device cannot be opened by two QEMUs (not verified)";
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
	return hu_manifest_save_vm(m, vm);
}

/* Test hook (tests/bats/80-prelaunch.bats): make one step fail for real —
 * "spawn" points the new QEMU at a binary that does not exist, "load" has
 * the new QEMU load from a state file that is not one. Read only when
 * HU_TEST_PRELAUNCH_FAIL is set; documented in HACKING.md. */
static const char *test_fail(void)
{
	return secure_getenv("HU_TEST_PRELAUNCH_FAIL");
}

/* Test hook: HU_TEST_PRELAUNCH_DIE=STEP makes this process die by SIGKILL at
 * STEP (aside, spawned, saved, loaded), as a kill -9 there would. */
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
	struct hu_vm **vms; /* the manifest's VMs restarted by prelaunch */
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

static void prelaunch_one(struct prelaunch_job *job, struct hu_vm *vm)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *err = NULL, *status = NULL, *real_exe = NULL, *real_state = NULL;
	_cleanup_close_ int new_fd = -1;
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
	r = hu_spawn_qemu(ctx, vm, &child, &err);
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
	/* Recorded before it can get the guest, or not run at all: abort
	 * decides by this record. */
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
	pid = child; /* no -daemonize here: our child is the QEMU */
	if (r >= 0) {
		_cleanup_close_ int connect_fd = -1; /* the same process as new_fd */

		r = hu_spawn_connect(ctx, vm, child, &pid, &connect_fd, &err);
	}
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
	record(job->m, vm, HU_VM_SAVED, child, starttime);
	die_at("saved");
	if (test_fail() && streq(test_fail(), "kill-new"))
		hu_pidfd_kill(new_fd, 10000); /* the new QEMU dies before its load */
	r = hu_migration_setup_dest(vm, &err);
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
		r = record(job->m, vm, HU_VM_SAVED, child, starttime);
		if (r < 0)
			hu_errorf(&err, r, "cannot record the load in the manifest: %s", strerror(-r));
		else
			r = hu_restore_start_load(vm, &err);
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
					err ?: "the load failed", (int)child,
					q < 0 ? hu_qmp_strerror(q) : status);
			record(job->m, vm, HU_VM_FAILED, child, starttime);
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
	vm->running_at_ms = hu_now_ms();
	pthread_mutex_unlock(&job->m->lock);
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

	prelaunch_one(job, job->vms[i]);
}

int hu_prelaunch_vms(struct hu_ctx *ctx, struct hu_manifest *m)
{
	_cleanup_free_ struct hu_vm **vms = calloc(m->list.n ?: 1, sizeof(*vms));
	struct prelaunch_job job = { .ctx = ctx, .m = m, .vms = vms };
	size_t n = 0, resumed = 0, failed = 0;
	const char *first = NULL;

	if (!vms)
		return hu_fail(ctx, -ENOMEM, "out of memory; no VM was stopped");
	/* Its own group only: the rest of a mixed run restarted sequentially. */
	for (size_t i = 0; i < m->list.n; i++)
		if (m->list.vms[i]->by_prelaunch)
			vms[n++] = m->list.vms[i];
	hu_info(ctx, NULL, "restarting %zu VM%s by prelaunch", n, n == 1 ? "" : "s");
	/* Each worker changes its VM's fields unlocked (the save, the load,
	 * its error): a save by another worker writes what it recorded last. */
	hu_manifest_parallel_for(m, n, ctx->jobs, prelaunch_worker, &job);
	/* Both groups count: the sequential one's VMs are restored by now. */
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
