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
	if (vm->pre_cpr && vm->ai.qmp_path) { /* a cpr-transfer's sockets are of no use after */
		_cleanup_free_ char *cpr = NULL, *mig = NULL;

		if (asprintf(&cpr, "%s" CPR_SOCK, vm->ai.qmp_path) >= 0)
			unlink(cpr);
		if (asprintf(&mig, "%s" MAIN_SOCK, vm->ai.qmp_path) >= 0)
			unlink(mig);
	}
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
	/* cpr-transfer needs every RAM block in a memfd from QEMU's start, its
	 * ROMs too (QEMU 10.0 refuses the migrate otherwise, tried: "Memory
	 * region /rom@etc/acpi/rsdp is not compatible with CPR") */
	else if (!vm->ai.aux_ram_share)
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
	else if (vm->ai.has_vfio || vm->suspend)
		why = "a VFIO device cannot be opened by two QEMUs";
	else if (vm->ai.passes_fd)
		why = "QEMU was handed a file descriptor a new process cannot reopen";
	else if (!hu_prelaunch_ram(vm, &why))
		;
	else if (vm->ai.daemonize && streq(hu_prelaunch_ram(vm, NULL), "cpr-transfer"))
		why = "-daemonize with RAM handed over by cpr-transfer (not tried)";
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
	return hu_manifest_save_vm(m, vm);
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
	struct hu_vm **vms;	 /* the manifest's VMs restarted by prelaunch */
	struct prelaunch_vm *pv; /* one per VM of vms */
};

/* What a VM's prelaunch holds from the start of its new QEMU to the hand-over. */
struct prelaunch_vm {
	struct hu_qmp *old_qmp; /* ours to the old QEMU, open before its paths moved */
	int new_fd;		/* the new QEMU's pidfd, opened at its fork; -1: none */
	pid_t pid;		/* the new QEMU (the daemon of a -daemonize one) */
	uint64_t starttime;
	json_object *planned; /* cpr-reboot: the capability set the save is to use */
	char *cpr, *mig;      /* cpr-transfer: its sockets beside the QMP socket */
	bool up;	      /* the new QEMU is up and set, the old one runs the guest */
};

static void prelaunch_vm_clear(struct prelaunch_vm *p)
{
	hu_qmp_close(p->old_qmp);
	if (p->new_fd >= 0)
		close(p->new_fd);
	json_object_put(p->planned);
	if (p->cpr)
		unlink(p->cpr);
	if (p->mig)
		unlink(p->mig);
	free(p->cpr);
	free(p->mig);
	*p = (struct prelaunch_vm){ .new_fd = -1 };
}

/* pidfd: the new QEMU's, opened right after its fork (-1: none started).
 * Never a pid: once hu_spawn_connect has reaped our child, its pid may name
 * another process. */
static void rollback(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p, const char *why)
{
	_cleanup_free_ char *err = NULL;

	hu_qmp_close(vm->qmp);
	vm->qmp = TAKE_PTR(p->old_qmp);
	vm->pre_incoming = false;
	if (p->new_fd >= 0) {
		siginfo_t si;

		hu_pidfd_kill(p->new_fd, 10000);
		waitid(P_PIDFD, (id_t)p->new_fd, &si, WEXITED | WNOHANG); /* ECHILD when reaped already */
	}
	paths_settle(vm, true);
	pthread_mutex_lock(&job->m->lock);
	vm->pre_cpr = false;
	pthread_mutex_unlock(&job->m->lock);
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
		if (poll(&p, 1, 10) > 0) { /* 10 ms: the QEMU starting needs the CPU more */
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
 * ("setup") never got a byte: once the old one's migration is over, none
 * comes. cpr-reboot: the old QEMU's save was over before the load began. */
static int new_has_guest(struct hu_vm *vm, struct hu_qmp *old_qmp)
{
	_cleanup_free_ char *st = NULL, *old_st = NULL;
	int r = vm->qmp ? hu_migration_query(vm->qmp, &st, NULL) : -ENOTCONN;

	if (r >= 0 && vm->pre_cpr && !streq(st, "completed") && !never_loaded(st) && !streq(st, "setup")) {
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
	if (vm->pre_cpr && streq(st, "setup") && old_qmp && hu_migration_query(old_qmp, &old_st, NULL) >= 0 &&
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

/* Spawn the new QEMU, gated until it is recorded (a kill of this process
 * before that leaves no QEMU abort cannot see). cpr-transfer: it takes the
 * cpr channel and waits on it before its QMP exists. */
static int spawn_new(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p, pid_t *ret_child,
		     char **ret_error)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *real_exe = NULL, *chan = NULL;
	_cleanup_close_ int gate = -1;
	char *dropped[2];
	size_t drop_at = 0;
	pid_t child = 0;
	int r;

	if (vm->pre_cpr) {
		_cleanup_json_ json_object *c = unix_channel("cpr", p->cpr);

		chan = strdup(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
									JSON_C_TO_STRING_NOSLASHESCAPE));
		if (!chan)
			return -ENOMEM;
		drop_at = test_drop_device(vm, dropped);
	}
	if (test_fail() && streq(test_fail(), "spawn")) {
		real_exe = vm->exe;
		vm->exe = strdup("/nonexistent/qemu-system-x86_64");
	}
	vm->cpr_channel = chan;
	r = hu_spawn_qemu(ctx, vm, &child, &gate, ret_error);
	vm->cpr_channel = NULL;
	if (drop_at) {
		vm->argv[drop_at] = dropped[0];
		vm->argv[drop_at + 1] = dropped[1];
	}
	if (real_exe) {
		free(vm->exe);
		vm->exe = TAKE_PTR(real_exe);
	}
	if (r < 0)
		return r;
	/* Our child, not reaped yet: its pid names it until we wait for it. */
	p->new_fd = (int)syscall(SYS_pidfd_open, child, 0);
	if (p->new_fd < 0) {
		r = hu_errorf(ret_error, -errno, "pidfd of the new QEMU pid %d: %s", (int)child,
			      strerror(errno));
		kill(child, SIGKILL); /* not reaped: still ours */
		waitpid(child, NULL, 0);
		return r;
	}
	die_at("forked");
	/* Recorded before it runs QEMU at all (it waits at its gate; a start
	 * time is kept across execve), else never run: abort decides by this
	 * record, and a child whose gate closes unopened exits. */
	r = hu_proc_starttime(ctx, child, &p->starttime);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot read the start time of the new QEMU pid %d: %s",
				 (int)child, strerror(-r));
	r = record(job->m, vm, HU_VM_RUNNING, child, p->starttime);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot record the new QEMU in the manifest: %s",
				 strerror(-r));
	r = hu_spawn_open_gate(&gate);
	if (r < 0)
		return hu_errorf(ret_error, r, "the new QEMU's process pid %d did not wait for its start: %s",
				 (int)child, strerror(-r));
	die_at("started");
	p->pid = child;
	*ret_child = child;
	return 0;
}

/* Step 1 of a VM: its new QEMU up beside the old one, which runs on. Every
 * VM of the run gets here before any stops: the start-ups (CPU on a small
 * host) stay out of every blackout. A failure rolls the VM back. */
static void start_new(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *err = NULL;
	_cleanup_close_ int connect_fd = -1; /* without -daemonize, the same process as new_fd */
	bool cpr = streq(hu_prelaunch_ram(vm, NULL) ?: "", "cpr-transfer");
	pid_t child = 0;
	int r;

	*p = (struct prelaunch_vm){ .new_fd = -1 };
	if (cpr && (!(p->cpr = path_with(vm->ai.qmp_path, CPR_SOCK)) ||
		    !(p->mig = path_with(vm->ai.qmp_path, MAIN_SOCK)))) {
		hu_vm_set_error(vm, -ENOMEM, "out of memory");
		record(job->m, vm, HU_VM_FAILED, 0, 0);
		return;
	}
	/* Our line to the old QEMU, open before its path is moved. */
	if (!vm->qmp) {
		r = hu_manager_monitor(vm, ctx->qmp_timeout_ms, &vm->qmp, &err);
		if (r < 0) {
			hu_vm_set_error(vm, r, "%s", err ?: hu_qmp_strerror(r));
			record(job->m, vm, HU_VM_FAILED, 0, 0);
			return;
		}
	}
	p->old_qmp = TAKE_PTR(vm->qmp);
	if (cpr) {
		/* No state file in this mode: abort must never find an old one. */
		unlink(vm->state_file);
		unlink(p->cpr);
		unlink(p->mig);
		pthread_mutex_lock(&job->m->lock);
		vm->pre_cpr = true;
		pthread_mutex_unlock(&job->m->lock);
	}
	r = paths_aside(vm, &err);
	if (r < 0) {
		rollback(job, vm, p, err ?: "cannot move its paths aside");
		return;
	}
	die_at("aside");
	hu_info(ctx, vm->name, "starting the new QEMU %s beside the running one%s", vm->exe,
		cpr ? " (cpr-transfer)" : "");
	r = spawn_new(job, vm, p, &child, &err);
	if (r >= 0 && cpr) {
		/* Its QMP comes up once it has the cpr state: the old one sends
		 * it, its guest running on. */
		r = wait_cpr_listen(ctx, vm, child, p->new_fd, p->cpr, &err);
		if (r >= 0) {
			die_at("spawned");
			vm->qmp = p->old_qmp;
			r = cpr_send(vm, p->cpr, p->mig, &err);
			vm->qmp = NULL;
		}
	}
	if (r >= 0) {
		r = hu_spawn_connect(ctx, vm, child, &p->pid, &connect_fd, &err);
		if (r >= 0 && p->pid != child) {
			/* -daemonize: the QEMU is the daemon our child left (reaped
			 * by now), recorded in its place before the save. */
			close(p->new_fd);
			p->new_fd = TAKE_FD(connect_fd);
			r = hu_proc_starttime(ctx, p->pid, &p->starttime);
			if (r >= 0)
				r = record(job->m, vm, HU_VM_RUNNING, p->pid, p->starttime);
			if (r < 0)
				hu_errorf(&err, r, "cannot record the new QEMU's daemon pid %d: %s",
					  (int)p->pid, strerror(-r));
		}
	}
	if (r >= 0 && cpr && test_fail() && streq(test_fail(), "kill-new"))
		hu_pidfd_kill(p->new_fd, 10000); /* it dies with the RAM's descriptors, unloaded */
	if (r >= 0 && cpr) {
		_cleanup_free_ char *qerr = NULL;

		/* the events capability; the mode comes with the cpr state */
		r = hu_migration_setup_dest(vm, &qerr);
		if (r < 0)
			hu_errorf(&err, r, "the new QEMU, given the RAM, did not take its settings: %s",
				  qerr ?: hu_qmp_strerror(r));
	} else if (r >= 0) {
		r = set_up_new(vm, p->old_qmp, &p->planned, &err);
	}
	if (r < 0) {
		rollback(job, vm, p, err ?: "the new QEMU did not start");
		return;
	}
	if (!cpr)
		die_at("spawned");
	p->up = true;
}

/* cpr-reboot: the old QEMU saves (x-ignore-shared, its RAM stays in the
 * shared file), the new one loads from the state file. */
static int save_and_load(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p,
			 char **ret_error)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *real_state = NULL;
	int r;

	{
		struct hu_qmp *new_qmp = vm->qmp;

		vm->qmp = p->old_qmp;
		r = hu_checkpoint_save_vm(vm);
		p->old_qmp = vm->qmp;
		vm->qmp = new_qmp;
	}
	if (r < 0)
		return hu_errorf(ret_error, r, "%s", vm->error ?: "the save failed");
	if (test_fail() && streq(test_fail(), "kill-old"))
		hu_pid_kill(ctx, vm->pid, vm->starttime); /* nothing of it is needed after its save */
	record(job->m, vm, HU_VM_SAVED, p->pid, p->starttime);
	die_at("saved");
	if (test_fail() && streq(test_fail(), "kill-new"))
		hu_pidfd_kill(p->new_fd, 10000); /* the new QEMU dies before its load */
	/* The new QEMU was set up for what the save was to use; a set that
	 * changed meanwhile (another client of the old QEMU) is not loaded. */
	if (!json_object_equal(p->planned, vm->caps))
		return hu_errorf(ret_error, -ESTALE,
				 "the old QEMU's migration capabilities changed during the prelaunch");
	if (pidfd_ended(p->new_fd))
		return hu_errorf(ret_error, -ESRCH, "the new QEMU pid %d ended before its load", (int)p->pid);
	if (test_fail() && streq(test_fail(), "load")) {
		/* A state file that is not one: QEMU refuses it, as a corrupt one. */
		real_state = vm->state_file;
		if (asprintf(&vm->state_file, "%s/%s.log", ctx->state_dir, vm->name) < 0)
			vm->state_file = TAKE_PTR(real_state);
	}
	/* From here the new QEMU may run the guest: recorded first, so that
	 * abort never resumes the old one on a guess. */
	pthread_mutex_lock(&job->m->lock);
	vm->pre_incoming = true;
	pthread_mutex_unlock(&job->m->lock);
	r = record(job->m, vm, HU_VM_SAVED, p->pid, p->starttime);
	if (r < 0)
		hu_errorf(ret_error, r, "cannot record the load in the manifest: %s", strerror(-r));
	else
		r = hu_restore_incoming(vm, ret_error);
	if (r >= 0)
		r = hu_restore_finish_load(vm, ret_error);
	if (real_state) {
		free(vm->state_file);
		vm->state_file = TAKE_PTR(real_state);
	}
	return r;
}

/* cpr-transfer: migrate-incoming on the new QEMU stops the old one, which
 * sends its device state; the RAM's descriptors went before. */
static int transfer(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p, char **ret_error)
{
	int r;

	/* From here the new QEMU may run the guest: recorded first. */
	pthread_mutex_lock(&job->m->lock);
	vm->pre_incoming = true;
	pthread_mutex_unlock(&job->m->lock);
	r = record(job->m, vm, HU_VM_STOPPING, p->pid, p->starttime);
	if (r < 0) {
		pthread_mutex_lock(&job->m->lock);
		vm->pre_incoming = false;
		pthread_mutex_unlock(&job->m->lock);
		return hu_errorf(ret_error, r, "cannot record the load in the manifest: %s", strerror(-r));
	}
	die_at("saved");
	return cpr_load(vm, p->old_qmp, p->mig, ret_error);
}

/* The new QEMU has the guest: end the old one without its exit cleanup. */
static void handed_over(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p)
{
	struct hu_ctx *ctx = job->ctx;
	const char *how = vm->pre_cpr ? "prelaunch (cpr-transfer)" : "prelaunch";

	hu_qmp_close(TAKE_PTR(p->old_qmp));
	if (hu_pid_kill(ctx, vm->pid, vm->starttime) < 0)
		hu_info(ctx, vm->name, "the old QEMU pid %d does not exit; it is stopped in postmigrate",
			(int)vm->pid);
	paths_settle(vm, false);
	hu_spawn_move_to_scope(ctx, vm, p->pid);
	pthread_mutex_lock(&job->m->lock);
	vm->pid = p->pid;
	vm->starttime = p->starttime;
	vm->pre_cpr = false;
	pthread_mutex_unlock(&job->m->lock);
	hu_restore_fix_clock(job->m, vm); /* as after a sequential restore */
	record(job->m, vm, HU_VM_RESTORED, 0, 0);
	hu_journal(ctx, vm->name, "restored", how);
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
	hu_info(ctx, vm->name, "restarted by %s as pid %d, down %lld ms", how, (int)p->pid,
		(long long)(vm->running_at_ms - vm->stopped_at_ms));
}

/* Step 2 of a VM whose new QEMU is up: the blackout, save + load (or the
 * device state by cpr-transfer), then the hand-over. */
static void switch_over(struct prelaunch_job *job, struct hu_vm *vm, struct prelaunch_vm *p)
{
	struct hu_ctx *ctx = job->ctx;
	_cleanup_free_ char *err = NULL;
	int r = vm->pre_cpr ? transfer(job, vm, p, &err) : save_and_load(job, vm, p, &err);

	if (r < 0 && vm->pre_incoming) {
		/* A late error: the new QEMU's migration status decides. */
		int has = new_has_guest(vm, p->old_qmp);

		if (has > 0) {
			hu_migration_reset(vm); /* cpr-reboot and x-ignore-shared do not stay */
			r = 0;
		} else if (has < 0) {
			hu_vm_set_error(vm, has,
					"cannot tell which QEMU has the guest: %s; the new QEMU pid %d: %s; "
					"both are left as they are, abort decides",
					err ?: "the load failed", (int)p->pid, hu_qmp_strerror(has));
			record(job->m, vm, HU_VM_FAILED, p->pid, p->starttime);
			hu_journal(ctx, vm->name, "failed", vm->error);
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			return;
		}
	}
	if (r < 0) {
		rollback(job, vm, p, err ?: "the new QEMU did not load the state");
		return;
	}
	/* The guest runs (its RESUME came): the blackout ends here, as a
	 * sequential restore counts it. */
	pthread_mutex_lock(&job->m->lock);
	vm->running_at_ms = hu_now_ms();
	pthread_mutex_unlock(&job->m->lock);
	die_at("loaded");
	handed_over(job, vm, p);
}

static void start_worker(size_t i, void *data)
{
	struct prelaunch_job *job = data;

	start_new(job, job->vms[i], &job->pv[i]);
}

static void switch_worker(size_t i, void *data)
{
	struct prelaunch_job *job = data;

	if (job->pv[i].up)
		switch_over(job, job->vms[i], &job->pv[i]);
}

static unsigned switch_jobs(unsigned jobs)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus < 1)
		cpus = 1;
	return jobs && jobs < (unsigned long)cpus ? jobs : (unsigned)cpus;
}

int hu_prelaunch_vms(struct hu_ctx *ctx, struct hu_manifest *m)
{
	_cleanup_free_ struct hu_vm **vms = calloc(m->list.n ?: 1, sizeof(*vms));
	_cleanup_free_ struct prelaunch_vm *pv = calloc(m->list.n ?: 1, sizeof(*pv));
	struct prelaunch_job job = { .ctx = ctx, .m = m, .vms = vms, .pv = pv };
	size_t n = 0, resumed = 0, failed = 0;
	const char *first = NULL;

	if (!vms || !pv)
		return hu_fail(ctx, -ENOMEM, "out of memory; no VM was stopped");
	/* Its own group only: the rest of a mixed run restarted sequentially. */
	for (size_t i = 0; i < m->list.n; i++)
		if (m->list.vms[i]->by_prelaunch)
			vms[n++] = m->list.vms[i];
	hu_info(ctx, NULL, "restarting %zu VM%s by prelaunch", n, n == 1 ? "" : "s");
	/* Every step of every VM is recorded before it is taken: a fsync each
	 * (4 per VM, under one lock) was most of a 16-VM blackout. A kill of
	 * this process loses no record (the rename is atomic); a host crash
	 * ends both QEMUs, and what a lost record leaves names only VMs marked
	 * unflushed (a durable save before said so), which no restore resumes. */
	m->lazy_saves = true;
	for (size_t i = 0; i < m->list.n; i++)
		m->lazy_saves = m->lazy_saves && m->list.vms[i]->unflushed;
	/* Each worker changes its VM's fields unlocked (the save, the load,
	 * its error): a save by another worker writes what it recorded last.
	 * Every new QEMU is up before any VM stops. */
	hu_manifest_parallel_for(m, n, ctx->jobs, start_worker, &job);
	/* The blackouts, at most one per CPU at a time: a VM not yet switched
	 * runs on in its old QEMU, so waiting costs it nothing, while 16 saves
	 * and loads at once on 2 CPUs stretched every one of them. */
	hu_manifest_parallel_for(m, n, switch_jobs(ctx->jobs), switch_worker, &job);
	m->lazy_saves = false;
	for (size_t i = 0; i < n; i++)
		prelaunch_vm_clear(&pv[i]);
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
