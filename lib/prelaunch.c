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
#include <sys/un.h>
#include <sys/wait.h>
#include "hu-private.h"

/* The sockets of a cpr-transfer, beside the QMP socket: a directory the VM's
 * user can bind in (the new QEMU may run as that user). */
#define CPR_SOCK  ".hu-cpr"
#define MAIN_SOCK ".hu-mig"

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
	if (vm->pre_cpr && vm->ai.qmp_path) { /* a cpr-transfer's sockets are of no use after */
		_cleanup_free_ char *cpr = NULL, *mig = NULL;

		if (asprintf(&cpr, "%s" CPR_SOCK, vm->ai.qmp_path) >= 0)
			unlink(cpr);
		if (asprintf(&mig, "%s" MAIN_SOCK, vm->ai.qmp_path) >= 0)
			unlink(mig);
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

/* Whether -machine (or -M) sets aux-ram-share=on: cpr-transfer needs every RAM block in a
 * memfd from QEMU's start, its ROMs too (QEMU 10.0 refuses the migrate otherwise: "Memory
 * region /rom@etc/acpi/rsdp is not compatible with CPR", tried). Loose on purpose: a false
 * yes makes QEMU refuse the migrate before anything stops, and the old QEMU runs on. */
static bool aux_ram_share(const struct hu_vm *vm)
{
	static const char key[] = "aux-ram-share=";
	bool on = false;

	for (size_t i = 1; i + 1 < vm->argc; i++) {
		const char *v = vm->argv[i + 1];

		if (!streq(vm->argv[i], "-machine") && !streq(vm->argv[i], "-M"))
			continue;
		while (*v) {
			size_t len = strcspn(v, ",");

			if (len > sizeof(key) - 1 && !strncmp(v, key, sizeof(key) - 1)) {
				const char *b = v + sizeof(key) - 1;
				size_t n = len - (sizeof(key) - 1);

				on = (n == 2 && !strncmp(b, "on", 2)) || (n == 3 && !strncmp(b, "yes", 3)) ||
				     (n == 4 && !strncmp(b, "true", 4)) || (n == 1 && *b == 'y');
			}
			v += len;
			v += *v == ',';
		}
	}
	return on;
}

const char *hu_prelaunch_ram(const struct hu_vm *vm, const char **ret_why)
{
	bool files = vm->n_memdevs > 0 && !vm->copies_ram, shared = vm->n_memdevs > 0;
	const char *why;

	for (size_t i = 0; i < vm->n_memdevs; i++) {
		const struct hu_memdev *d = &vm->memdevs[i];

		files = files && d->mem_path && d->skipped;
		/* The kinds QEMU 10.0 hands over by descriptor or reopens (tried) */
		shared = shared && d->share && d->type &&
			 (streq(d->type, "memory-backend-memfd") || streq(d->type, "memory-backend-shm") ||
			  streq(d->type, "memory-backend-ram") || streq(d->type, "memory-backend-file"));
	}
	if (files)
		return "cpr-reboot";
	if (!shared)
		why = "RAM not all in shared files, so it is copied: private RAM (no memory backend, or "
		      "share=off) cannot be handed over; cpr-transfer needs share=on memfd/shm RAM";
	else if (!aux_ram_share(vm))
		why = "RAM not all in shared files, so it is copied: memfd/shm RAM goes by cpr-transfer "
		      "only with -machine aux-ram-share=on, set when QEMU started";
	else if (!vm->ai.qmp_path ||
		 strlen(vm->ai.qmp_path) + sizeof(CPR_SOCK) > sizeof(((struct sockaddr_un *)0)->sun_path))
		why = "RAM not all in shared files, so it is copied: the QMP socket path is too long "
		      "for the cpr-transfer sockets beside it";
	else
		return "cpr-transfer";
	if (ret_why)
		*ret_why = why;
	return NULL;
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
	else if (!hu_prelaunch_ram(vm, &why))
		;
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

const char *hu_vm_get_prelaunch_mode(const struct hu_vm *vm)
{
	return hu_prelaunch_eligible(vm, NULL) ? hu_prelaunch_ram(vm, NULL) : NULL;
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

/* Our line to the old QEMU, open before its paths move; NULL when there is
 * none (the VM is recorded failed, untouched). */
static struct hu_qmp *old_monitor(struct prelaunch_job *job, struct hu_vm *vm)
{
	_cleanup_free_ char *err = NULL;
	struct hu_qmp *q;

	if (!vm->qmp) {
		int r = hu_manager_monitor(vm, job->ctx->qmp_timeout_ms, &vm->qmp, &err);

		if (r < 0) {
			hu_vm_set_error(vm, r, "%s", err ?: hu_qmp_strerror(r));
			record(job->m, vm, HU_VM_FAILED, 0, 0);
			return NULL;
		}
	}
	q = vm->qmp;
	vm->qmp = NULL;
	return q;
}

/* The new QEMU (PID) has the guest: end the old one without its exit cleanup. */
static void handed_over(struct prelaunch_job *job, struct hu_vm *vm, struct hu_qmp *old_qmp, pid_t pid,
			uint64_t starttime)
{
	struct hu_ctx *ctx = job->ctx;
	const char *how = vm->pre_cpr ? "prelaunch (cpr-transfer)" : "prelaunch";

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
	vm->pre_cpr = false;
	pthread_mutex_unlock(&job->m->lock);
	record(job->m, vm, HU_VM_RESTORED, 0, 0);
	hu_journal(ctx, vm->name, "restored", how);
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
	hu_info(ctx, vm->name, "restarted by %s as pid %d, down %lld ms", how, (int)pid,
		(long long)(vm->running_at_ms - vm->stopped_at_ms));
}

/* ---- cpr-transfer: RAM in memfd/shm (docs/design/prelaunch.md, "cpr-transfer") ---- */

static char *path_with(const char *path, const char *suffix)
{
	char *s = NULL;

	return asprintf(&s, "%s%s", path, suffix) < 0 ? NULL : s;
}

static json_object *unix_channel(const char *type, const char *path)
{
	json_object *c = json_object_new_object(), *a = json_object_new_object();

	json_object_object_add(a, "transport", json_object_new_string("socket"));
	json_object_object_add(a, "type", json_object_new_string("unix"));
	json_object_object_add(a, "path", json_object_new_string(path));
	json_object_object_add(c, "channel-type", json_object_new_string(type));
	json_object_object_add(c, "addr", a);
	return c;
}

/* Until the new QEMU listens on its cpr socket (nothing signals that: a short
 * poll on its pidfd, which also ends the wait when it dies). */
static int wait_cpr_listen(struct hu_ctx *ctx, struct hu_vm *vm, pid_t child, int pidfd, const char *path,
			   char **ret_error)
{
	int64_t deadline = hu_mono_ms() + 30000;

	for (;;) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		struct stat st;

		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		if (poll(&p, 1, 1) > 0) {
			_cleanup_close_ int fd = -1;
			pid_t pid;

			/* It exited: spawn says why, from its log. */
			return hu_spawn_connect(ctx, vm, child, &pid, &fd, ret_error) < 0
				       ? -ECHILD
				       : hu_errorf(ret_error, -ECHILD, "the new QEMU exited");
		}
		if (hu_mono_ms() > deadline)
			return hu_errorf(ret_error, -ETIMEDOUT, "the new QEMU did not listen on %s in 30 s",
					 path);
	}
}

/* The old QEMU sends the cpr state (its RAM's descriptors) and waits for the
 * new one to ask for the rest; its guest runs on meanwhile. */
static int cpr_send(struct hu_vm *vm, const char *cpr, const char *mig, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL;
	json_object *args, *chans;
	int r;

	free(vm->runstate);
	vm->runstate = NULL;
	r = hu_qmp_query_status(vm->qmp, &vm->runstate);
	if (r < 0)
		return hu_errorf(ret_error, r, "query-status: %s", hu_qmp_strerror(r));
	vm->touched = true;
	r = hu_migration_setup_source(vm, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot set cpr-transfer mode: %s",
				 qerr ?: hu_qmp_strerror(r));
	hu_qmp_clear_events(vm->qmp);
	args = json_object_new_object();
	chans = json_object_new_array();
	json_object_array_add(chans, unix_channel("main", mig));
	json_object_array_add(chans, unix_channel("cpr", cpr));
	json_object_object_add(args, "channels", chans);
	r = hu_qmp_execute(vm->qmp, "migrate", args, NULL, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "migrate (cpr-transfer): %s", qerr ?: hu_qmp_strerror(r));
	return 0;
}

/* The new QEMU asks for the device state; the old one stops, sends it and
 * ends in postmigrate; the new one loads it and runs. */
static int cpr_load(struct hu_vm *vm, struct hu_qmp *old_qmp, const char *mig, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL, *desc = NULL, *status = NULL;
	json_object *args = json_object_new_object(), *chans = json_object_new_array();
	int r;

	json_object_array_add(chans, unix_channel("main", mig));
	json_object_object_add(args, "channels", chans);
	json_object_object_add(args, "exit-on-error", json_object_new_boolean(false));
	vm->stopped_at_ms = hu_now_ms();
	vm->stopped_mono_us = hu_mono_us();
	r = hu_qmp_execute(vm->qmp, "migrate-incoming", args, NULL, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "migrate-incoming: %s", qerr ?: hu_qmp_strerror(r));
	r = hu_migration_wait(old_qmp, hu_migration_timeout_ms(0), &desc);
	if (r < 0)
		return hu_errorf(ret_error, r, "the old QEMU's save failed: %s", desc ?: hu_qmp_strerror(r));
	r = hu_migration_settled_runstate(old_qmp, &status);
	if (r < 0)
		return hu_errorf(ret_error, r, "query-status: %s", hu_qmp_strerror(r));
	if (!streq(status, "postmigrate"))
		return hu_errorf(ret_error, -EPROTO, "runstate after save is '%s', not postmigrate", status);
	return hu_restore_finish_load(vm, ret_error);
}

/* After a failed load: 1 when the new QEMU has the guest, 0 when it proved
 * it never had it, < 0 when that cannot be told. A new QEMU still listening
 * ("setup") never got a byte: once the old one's migration is over, none comes. */
static int cpr_new_has_guest(struct hu_vm *vm, struct hu_qmp *old_qmp)
{
	_cleanup_free_ char *st = NULL, *old_st = NULL;
	int r = vm->qmp ? hu_migration_query(vm->qmp, &st, NULL) : -ENOTCONN;

	if (r >= 0 && !streq(st, "completed") && !never_loaded(st) && !streq(st, "setup")) {
		hu_migration_wait(vm->qmp, hu_migration_timeout_ms(0), NULL); /* its end decides */
		free(st);
		st = NULL;
		r = hu_migration_query(vm->qmp, &st, NULL);
	}
	if (r < 0)
		return r;
	if (streq(st, "completed"))
		return 1;
	if (never_loaded(st))
		return 0;
	if (streq(st, "setup") && old_qmp && hu_migration_query(old_qmp, &old_st, NULL) >= 0 &&
	    (streq(old_st, "failed") || streq(old_st, "cancelled")))
		return 0;
	return -EBUSY;
}

/* Test hook "load" (cpr-transfer): the new QEMU lacks the device the test
 * gave id=hu-test-drop, so QEMU refuses the old one's state as mismatched. */
static size_t test_drop_device(struct hu_vm *vm, char *saved[2])
{
	if (!test_fail() || !streq(test_fail(), "load"))
		return 0;
	for (size_t i = 1; i + 1 < vm->argc; i++)
		if (streq(vm->argv[i], "-device") && strstr(vm->argv[i + 1], "id=hu-test-drop")) {
			saved[0] = vm->argv[i];
			saved[1] = vm->argv[i + 1];
			vm->argv[i] = (char *)"-msg";
			vm->argv[i + 1] = (char *)"timestamp=off";
			return i;
		}
	return 0;
}

static void prelaunch_cpr(struct prelaunch_job *job, struct hu_vm *vm)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *err = NULL, *cpr = path_with(vm->ai.qmp_path, CPR_SOCK),
			    *mig = path_with(vm->ai.qmp_path, MAIN_SOCK), *chan = NULL, *real_exe = NULL;
	_cleanup_close_ int new_fd = -1, connect_fd = -1;
	struct hu_qmp *old_qmp;
	char *dropped[2];
	size_t drop_at;
	pid_t child = 0, pid = 0;
	uint64_t starttime = 0;
	int r;

	if (!cpr || !mig) {
		hu_vm_set_error(vm, -ENOMEM, "out of memory");
		record(job->m, vm, HU_VM_FAILED, 0, 0);
		return;
	}
	old_qmp = old_monitor(job, vm);
	if (!old_qmp)
		return;
	/* No state file in this mode: abort must never find an old one. */
	unlink(vm->state_file);
	unlink(cpr);
	unlink(mig);
	r = paths_aside(vm, &err);
	if (r < 0) {
		rollback(job, vm, old_qmp, -1, err ?: "cannot move its paths aside");
		return;
	}
	die_at("aside");
	{
		_cleanup_json_ json_object *c = unix_channel("cpr", cpr);

		chan = strdup(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
									JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	hu_info(ctx, vm->name, "starting the new QEMU %s beside the running one (cpr-transfer)", vm->exe);
	if (test_fail() && streq(test_fail(), "spawn")) {
		real_exe = vm->exe;
		vm->exe = strdup("/nonexistent/qemu-system-x86_64");
	}
	drop_at = test_drop_device(vm, dropped);
	pthread_mutex_lock(&job->m->lock);
	vm->pre_cpr = true;
	pthread_mutex_unlock(&job->m->lock);
	vm->cpr_channel = chan;
	r = chan ? hu_spawn_qemu(ctx, vm, &child, &err) : -ENOMEM;
	vm->cpr_channel = NULL;
	if (drop_at) {
		vm->argv[drop_at] = dropped[0];
		vm->argv[drop_at + 1] = dropped[1];
	}
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
	if (r >= 0 && (r = hu_proc_starttime(ctx, child, &starttime)) < 0)
		hu_errorf(&err, r, "cannot read the start time of the new QEMU pid %d: %s", (int)child,
			  strerror(-r));
	/* Recorded before it can get anything of the old one's. */
	if (r >= 0 && (r = record(job->m, vm, HU_VM_RUNNING, child, starttime)) < 0)
		hu_errorf(&err, r, "cannot record the new QEMU in the manifest: %s", strerror(-r));
	if (r >= 0)
		r = wait_cpr_listen(ctx, vm, child, new_fd, cpr, &err);
	if (r >= 0) {
		die_at("spawned");
		vm->qmp = old_qmp;
		r = cpr_send(vm, cpr, mig, &err);
		vm->qmp = NULL;
	}
	/* Its QMP comes up once it has the cpr state. No -daemonize here: our
	 * child is the QEMU (hu_spawn_connect sets pid only for a daemon). */
	pid = child;
	if (r >= 0)
		r = hu_spawn_connect(ctx, vm, child, &pid, &connect_fd, &err);
	if (r >= 0 && test_fail() && streq(test_fail(), "kill-new"))
		hu_pidfd_kill(new_fd, 10000); /* the new QEMU dies with the RAM's descriptors, unloaded */
	if (r >= 0) {
		_cleanup_free_ char *qerr = NULL;

		r = hu_migration_setup_dest(vm, &qerr);
		if (r < 0)
			hu_errorf(&err, r, "the new QEMU, given the RAM, did not take its settings: %s",
				  qerr ?: hu_qmp_strerror(r));
	}
	if (r >= 0) {
		/* From here the new QEMU may run the guest: recorded first. */
		pthread_mutex_lock(&job->m->lock);
		vm->pre_incoming = true;
		pthread_mutex_unlock(&job->m->lock);
		r = record(job->m, vm, HU_VM_STOPPING, child, starttime);
		if (r < 0) {
			vm->pre_incoming = false;
			hu_errorf(&err, r, "cannot record the load in the manifest: %s", strerror(-r));
		}
	}
	if (r < 0) {
		rollback(job, vm, old_qmp, new_fd, err ?: "the new QEMU did not start");
		goto out;
	}
	die_at("saved");
	r = cpr_load(vm, old_qmp, mig, &err);
	if (r < 0) {
		int has = cpr_new_has_guest(vm, old_qmp);

		if (has > 0) {
			hu_migration_reset(vm);
			r = 0;
		} else if (has < 0) {
			hu_vm_set_error(vm, has,
					"cannot tell which QEMU has the guest: %s; the new QEMU pid %d: %s; "
					"both are left as they are, abort decides",
					err ?: "the load failed", (int)child, hu_qmp_strerror(has));
			record(job->m, vm, HU_VM_FAILED, child, starttime);
			hu_journal(ctx, vm->name, "failed", vm->error);
			hu_qmp_close(old_qmp);
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			goto out;
		} else {
			rollback(job, vm, old_qmp, new_fd, err ?: "the new QEMU did not load the state");
			goto out;
		}
	}
	die_at("loaded");
	handed_over(job, vm, old_qmp, pid, starttime);
out:
	vm->pre_cpr = vm->pre_pid > 0 && vm->pre_cpr;
	unlink(cpr);
	unlink(mig);
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

	if (streq(hu_prelaunch_ram(vm, NULL) ?: "", "cpr-transfer")) {
		prelaunch_cpr(job, vm);
		return;
	}
	/* Our line to the old QEMU, open before its path is moved. */
	old_qmp = old_monitor(job, vm);
	if (!old_qmp)
		return;
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
	handed_over(job, vm, old_qmp, pid, starttime);
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
	hu_parallel_for(m->list.n, ctx->jobs, prelaunch_worker, &job);
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
		if (vm->pre_cpr && !vm->pre_incoming)
			/* cpr-transfer, its load never asked for: the old QEMU stops
			 * only once the new one listens for the state, and its QMP
			 * is not up while it waits for the cpr state. */
			r = (mstatus = strdup("none")) ? 0 : -ENOMEM;
		else
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
