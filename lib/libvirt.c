/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt: a QEMU that libvirtd runs (docs/design/libvirt.md). libvirt owns
 * its monitor (passed as a descriptor), its process and its RAM folder, and
 * must go on managing the domain afterwards, so everything goes through
 * libvirt's own API (libvirt + libvirt-qemu):
 *   monitor   QMP through virDomainQemuMonitorCommand (add-fd WithFiles);
 *   prepare   the live XML (SECURE|MIGRATABLE) and a pending marker with a
 *             token, before the first change (the hook blocks cold boots);
 *   save      the state file opened by us, handed over with add-fd;
 *   saved     remove-fd; hard links of the RAM, which libvirt deletes with
 *             its per-start folder at the stop;
 *   stop      virDomainDestroyFlags; cont = virDomainResume;
 *   restore   virDomainCreateXML(PAUSED) of the recorded XML with
 *             -incoming defer and the token (the hook relinks the RAM);
 *   done      drop marker and links.
 * Replies and XML from libvirt are untrusted: bounded, validated.
 */
#ifdef HU_WITH_LIBVIRT
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <uuid/uuid.h>
#include "hu-private.h"
#include "libvirt-dl.h"

#define LV_URI		   "qemu:///system"
#define LV_MAX_XML	   (4 * 1024 * 1024)
#define LV_CONNECT_WAIT_MS 60000 /* restore after a boot: libvirtd may come up late */
#define LV_QEMU_NS	   "http://libvirt.org/schemas/domain/qemu/1.0"
#define LV_HU_NS	   "urn:x-host-upgrade:restore:1"
#define LV_HOOK		   "/etc/libvirt/hooks/qemu.d/host-upgrade"

struct hu_libvirt_vm {
	char *uuid;
	char *dname;
	unsigned id;
	bool persistent;
	bool autostart;
	char *token;
	char *xml;
	struct hu_lv_link *links;
	size_t n_links;
	virDomainPtr dom; /* not recorded */
};

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;

static void quiet(void *data, virErrorPtr e)
{
}

static char *lv_error(void)
{
	virErrorPtr e = sym_virGetLastError();

	return strndup(e && e->message ? e->message : "unknown libvirt error", 512);
}

static int lv_errno(void)
{
	virErrorPtr e = sym_virGetLastError();

	if (!e)
		return -EIO;
	/* clang-format off */
	switch (e->code) {
	case VIR_ERR_OPERATION_TIMEOUT: return -ETIMEDOUT;
	case VIR_ERR_NO_DOMAIN:         return -ENOENT;
	case VIR_ERR_OPERATION_INVALID: return -ECONNRESET; /* not running (any more) */
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_RPC:
	case VIR_ERR_SYSTEM_ERROR:      return -ECONNREFUSED;
	default:                        return -EIO;
	}
	/* clang-format on */
}

/* One connection per context, shared by the workers; wait_ms > 0 retries
 * while libvirtd is not up yet. */
static int lv_conn(struct hu_ctx *ctx, unsigned wait_ms, virConnectPtr *ret, char **ret_why)
{
	int64_t deadline = hu_mono_ms() + wait_ms;
	virConnectPtr c;
	int r = hu_libvirt_dlopen(ret_why);

	if (r < 0)
		return r;
	pthread_mutex_lock(&conn_lock);
	if (ctx->libvirt && sym_virConnectIsAlive(ctx->libvirt) == 1) {
		*ret = ctx->libvirt;
		pthread_mutex_unlock(&conn_lock);
		return 0;
	}
	if (ctx->libvirt) {
		sym_virConnectClose(ctx->libvirt);
		ctx->libvirt = NULL;
	}
	/* The library does not print: libvirt's default handler would. */
	sym_virSetErrorFunc(NULL, quiet);
	sym_xmlInitParser();
	while (!(c = sym_virConnectOpen(LV_URI)) && hu_mono_ms() < deadline)
		usleep(500 * 1000);
	if (!c) {
		r = lv_errno();

		if (ret_why) {
			_cleanup_free_ char *e = lv_error();

			if (asprintf(ret_why, "libvirtd not reachable (%s): %s", LV_URI, e ?: "?") < 0)
				*ret_why = NULL;
		}
		pthread_mutex_unlock(&conn_lock);
		return r == -EIO ? -ECONNREFUSED : r;
	}
	ctx->libvirt = c;
	*ret = c;
	pthread_mutex_unlock(&conn_lock);
	return 0;
}

void hu_manager_ctx_close(struct hu_ctx *ctx)
{
	if (ctx->libvirt)
		sym_virConnectClose(ctx->libvirt);
	ctx->libvirt = NULL;
}

static int set_why(char **ret_why, const char *fmt, const char *a, const char *b)
{
	if (ret_why && asprintf(ret_why, fmt, a, b) < 0)
		*ret_why = NULL;
	return 0;
}

/* --- the monitor --- */

/* A monitor command runs in a thread of its own: libvirt waits for QEMU's
 * reply without a deadline (after taking the domain's job), so a wedged
 * monitor would hang plan or checkpoint. Past our deadline the caller gives
 * up, as with a QMP socket that does not answer; the thread, holding its own
 * references, ends whenever libvirt does.
 * A command given up on may still run later: the next one to that domain
 * must not race it (an abandoned `migrate` after a rollback's `cont`). So
 * while one is in flight, ours (lv_inflight) or anyone's (libvirt's control
 * state "occupied"), a new call fails with -EBUSY (lv_busy); a timed-out
 * command counts as run, not as not run (resume.c asks QEMU what happened
 * before it acts, and fails the VM when it cannot). */
struct lv_call {
	struct lv_call *next; /* in lv_inflight while the thread runs */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned refs; /* the caller and the thread */
	bool done;
	bool abandoned; /* the caller gave up on it (under lv_inflight_lock) */
	virDomainPtr dom;
	char *req;
	int fd; /* a dup: the caller may close its own after giving up */
	int r;
	char *reply;
	char *error;
};

#define LV_STUCK_MS 1000 /* a monitor command this old is worth waiting out */

static pthread_mutex_t lv_inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lv_call *lv_inflight;

/* -EBUSY with the reason when a command to `dom` is still in flight: one
 * of ours given up on, at once; another client's that libvirt has waited on
 * for a while (a stuck one, or one a host-upgrade before us gave up on),
 * when it is still there at our deadline. Nothing signals the monitor's
 * release: look again every 100 ms. One that simply runs (virsh domstats,
 * libvirt's own polling) is gone by then, and ours queues behind it. */
static int lv_busy(virDomainPtr dom, unsigned timeout_ms, char **ret_error)
{
	int64_t deadline = hu_mono_ms() + timeout_ms;
	virDomainControlInfo info = {};
	bool ours = false;

	pthread_mutex_lock(&lv_inflight_lock);
	for (struct lv_call *c = lv_inflight; c && !ours; c = c->next)
		ours = c->dom == dom && c->abandoned;
	pthread_mutex_unlock(&lv_inflight_lock);
	if (ours) {
		*ret_error = strdup("an earlier monitor command to this domain has not returned yet");
		return -EBUSY;
	}
	for (;;) {
		if (sym_virDomainGetControlInfo(dom, &info, 0) < 0 ||
		    info.state != VIR_DOMAIN_CONTROL_OCCUPIED || info.stateTime < LV_STUCK_MS)
			return 0; /* a failure here: the command itself will say */
		if (hu_mono_ms() >= deadline)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	}
	if (asprintf(ret_error,
		     "an earlier monitor command to this domain has not returned yet (libvirt has waited "
		     "%llu ms for QEMU's reply)",
		     (unsigned long long)info.stateTime) < 0)
		*ret_error = NULL;
	return -EBUSY;
}

static void lv_inflight_remove(struct lv_call *c)
{
	pthread_mutex_lock(&lv_inflight_lock);
	for (struct lv_call **p = &lv_inflight; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	pthread_mutex_unlock(&lv_inflight_lock);
}

static void lv_call_unref(struct lv_call *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	sym_virDomainFree(c->dom);
	if (c->fd >= 0)
		close(c->fd);
	free(c->req);
	free(c->reply);
	free(c->error);
	free(c);
}

static void *lv_call_run(void *data)
{
	struct lv_call *c = data;
	char *res = NULL;
	int r;

	if (c->fd >= 0) {
		unsigned int nout = 0;
		int *outf = NULL;

		r = sym_virDomainQemuMonitorCommandWithFiles(c->dom, c->req, 1, &c->fd, &nout, &outf, &res,
							     0);
		for (unsigned i = 0; outf && i < nout; i++)
			close(outf[i]);
		free(outf);
	} else {
		r = sym_virDomainQemuMonitorCommand(c->dom, c->req, &res, 0);
	}
	/* Off the list before the caller hears of it: its next command must not
	 * find this one still "in flight". */
	lv_inflight_remove(c);
	pthread_mutex_lock(&c->lock);
	if (r < 0) {
		/* libvirt's last error is per thread: read it here */
		c->error = lv_error();
		c->r = lv_errno();
	}
	c->reply = res;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	lv_call_unref(c);
	return NULL;
}

static int lv_command(void *data, const char *req, int fd, unsigned timeout_ms, char **ret_reply,
		      char **ret_error)
{
	struct lv_call *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	struct timespec until;
	pthread_attr_t ta;
	pthread_t t;
	int r;

	if (!c)
		return -ENOMEM;
	r = lv_busy(data, timeout_ms, ret_error);
	if (r < 0) {
		free(c);
		return r;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&c->lock, NULL);
	c->refs = 1;
	c->fd = -1;
	c->dom = data;
	if (sym_virDomainRef(c->dom) < 0) {
		c->dom = NULL;
		lv_call_unref(c);
		return -ENOMEM;
	}
	c->req = strdup(req);
	if (!c->req || (fd >= 0 && (c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)) {
		r = c->req ? -errno : -ENOMEM;
		lv_call_unref(c);
		return r;
	}
	c->refs = 2;
	pthread_mutex_lock(&lv_inflight_lock);
	c->next = lv_inflight;
	lv_inflight = c;
	pthread_mutex_unlock(&lv_inflight_lock);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	r = -pthread_create(&t, &ta, lv_call_run, c);
	pthread_attr_destroy(&ta);
	if (r < 0) {
		lv_inflight_remove(c);
		c->refs = 1;
		lv_call_unref(c);
		return r;
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->done && pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
		;
	if (!c->done) {
		pthread_mutex_lock(&lv_inflight_lock);
		c->abandoned = true;
		pthread_mutex_unlock(&lv_inflight_lock);
		r = -ETIMEDOUT;
		if (asprintf(ret_error, "libvirt gave no answer within %u ms (is the QEMU's monitor stuck?)",
			     timeout_ms) < 0)
			*ret_error = NULL;
	} else if (c->r < 0) {
		r = c->r;
		*ret_error = TAKE_PTR(c->error);
	} else {
		r = 0;
		*ret_reply = TAKE_PTR(c->reply);
	}
	pthread_mutex_unlock(&c->lock);
	lv_call_unref(c);
	return r;
}

static void lv_close(void *data)
{
	sym_virDomainFree(data);
}

static const struct hu_qmp_ext lv_ext = { .command = lv_command, .close = lv_close };

static int open_monitor(struct hu_vm *vm, struct hu_qmp **ret)
{
	if (sym_virDomainRef(vm->lv->dom) < 0)
		return -ENOMEM;
	return hu_qmp_open_ext(&lv_ext, vm->lv->dom, vm->ctx->qmp_timeout_ms, ret);
}

static int read_pidfile(const char *dname, pid_t *ret)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	char *end;
	long pid;
	int r;

	if (asprintf(&path, "/run/libvirt/qemu/%s.pid", dname) < 0)
		return -ENOMEM;
	r = hu_read_file(path, 64, &text, NULL);
	if (r < 0)
		return r;
	pid = strtol(text, &end, 10);
	if (end == text || pid <= 0 || pid > INT_MAX)
		return -EBADMSG;
	*ret = (pid_t)pid;
	return 0;
}

/* The domain of this QEMU: by the -uuid of its argv, the same name, active,
 * and libvirt's pid file names this very process (docs/design §2). */
static int bind_domain(struct hu_vm *vm, char **ret_why)
{
	struct hu_libvirt_vm *lv;
	virConnectPtr c;
	const char *uuid = NULL;
	pid_t pid = 0;
	uuid_t u;
	int r, a = 0;

	for (size_t i = 1; i + 1 < vm->argc; i++)
		if (streq(vm->argv[i], "-uuid"))
			uuid = vm->argv[i + 1];
	if (!uuid || uuid_parse(uuid, u) < 0 || strlen(uuid) != 36)
		return set_why(ret_why, "libvirt domain %s: no valid -uuid%s", vm->ai.name, ""), -EINVAL;
	r = lv_conn(vm->ctx, 0, &c, ret_why);
	if (r < 0)
		return r;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	vm->lv = lv;
	lv->uuid = strdup(uuid);
	lv->dname = strdup(vm->ai.name);
	if (!lv->uuid || !lv->dname)
		return -ENOMEM;
	lv->dom = sym_virDomainLookupByUUIDString(c, uuid);
	if (!lv->dom) {
		_cleanup_free_ char *e = lv_error();

		set_why(ret_why, "libvirt has no domain with uuid %s: %s", uuid, e);
		return -ENOENT;
	}
	if (!sym_virDomainGetName(lv->dom) || !streq(sym_virDomainGetName(lv->dom), lv->dname) ||
	    sym_virDomainIsActive(lv->dom) != 1 || read_pidfile(lv->dname, &pid) < 0 || pid != vm->pid)
		return set_why(ret_why, "libvirt domain %s (uuid %s) is not this QEMU", lv->dname, uuid),
		       -ESRCH;
	lv->id = sym_virDomainGetID(lv->dom);
	lv->persistent = sym_virDomainIsPersistent(lv->dom) == 1;
	if (sym_virDomainGetAutostart(lv->dom, &a) == 0)
		lv->autostart = a;
	return 0;
}

/* Restore and abort: the recorded domain, by uuid. */
static int lookup_domain(struct hu_vm *vm, unsigned wait_ms, char **ret_why)
{
	virConnectPtr c;
	int r;

	if (vm->lv->dom)
		return 0;
	r = lv_conn(vm->ctx, wait_ms, &c, ret_why);
	if (r < 0)
		return r;
	vm->lv->dom = sym_virDomainLookupByUUIDString(c, vm->lv->uuid);
	if (!vm->lv->dom) {
		_cleanup_free_ char *e = lv_error();

		set_why(ret_why, "libvirt has no domain with uuid %s: %s", vm->lv->uuid, e);
		return -ENOENT;
	}
	return 0;
}

static int lv_monitor(struct hu_vm *vm, struct hu_qmp **ret, char **ret_why)
{
	int r;

	if (!vm->lv)
		r = bind_domain(vm, ret_why);
	else
		r = lookup_domain(vm, LV_CONNECT_WAIT_MS, ret_why);
	if (r < 0)
		return r;
	r = open_monitor(vm, ret);
	if (r < 0)
		set_why(ret_why, "libvirt monitor of domain %s: %s", vm->lv->dname, hu_qmp_strerror(r));
	return r;
}

/* --- plan --- */

static const char *ram_hint(const struct hu_vm *vm)
{
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		const struct hu_memdev *d = &vm->memdevs[i];

		if (d->skipped)
			continue;
		if (streq(d->type, "memory-backend-memfd"))
			return "its RAM is memfd (<memoryBacking><source type='memfd'/>), which does not survive a reboot: "
			       "use <source type='file'/> with memory_backing_dir in /etc/libvirt/qemu.conf on a DAX "
			       "mount, or --no-reboot";
		if (streq(d->type, "memory-backend-file") && d->share)
			return "its RAM file does not survive a reboot (hugepages or tmpfs): remove <hugepages/> and "
			       "set memory_backing_dir in /etc/libvirt/qemu.conf to a DAX mount, or use --no-reboot";
	}
	return "its RAM is private: add <memoryBacking><source type='file'/><access mode='shared'/>"
	       "</memoryBacking> to the domain XML and set memory_backing_dir in /etc/libvirt/qemu.conf to a DAX mount";
}

static void lv_plan(struct hu_vm *vm, const struct hu_options *opts)
{
	virDomainJobInfo job;

	if (vm->copies_ram)
		hu_strv_pushf(&vm->blockers, &vm->n_blockers,
			      "libvirt domain: copying RAM into the state file is not supported; %s",
			      ram_hint(vm));
	if (vm->suspend)
		hu_strv_pushf(
			&vm->blockers, &vm->n_blockers,
			"libvirt domain: suspending the guest through libvirt's agent channel is not supported yet");
	if (vm->lv && vm->lv->dom && sym_virDomainGetJobInfo(vm->lv->dom, &job) == 0 &&
	    job.type != VIR_DOMAIN_JOB_NONE)
		hu_strv_pushf(&vm->blockers, &vm->n_blockers, "libvirt job in progress on domain %s",
			      vm->lv->dname);
	if (access(LV_HOOK, X_OK) < 0)
		hu_strv_pushf(
			&vm->blockers, &vm->n_blockers,
			"libvirt hook /etc/libvirt/hooks/qemu.d/host-upgrade is not installed (make install): "
			"without it libvirt could cold-boot the checkpointed domain");
}

/* --- checkpoint --- */

/* When the daemon started, in seconds since the epoch (from /proc). */
static int daemon_started(struct hu_ctx *ctx, pid_t pid, uint64_t *ret_starttime, int64_t *ret_s)
{
	_cleanup_free_ char *stat = NULL;
	unsigned long long btime = 0;
	char *p;
	long tck = sysconf(_SC_CLK_TCK);
	int r = hu_proc_starttime(ctx, pid, ret_starttime);

	if (r < 0)
		return r;
	r = hu_read_file("/proc/stat", 1 << 20, &stat, NULL);
	if (r < 0)
		return r;
	p = strstr(stat, "\nbtime ");
	if (!p || sscanf(p, "\nbtime %llu", &btime) != 1 || tck <= 0)
		return -EBADMSG;
	*ret_s = (int64_t)btime + (int64_t)(*ret_starttime / (uint64_t)tck);
	return 0;
}

/* libvirtd reads its hooks at start and at SIGHUP only: a hook installed
 * after the daemon started is silently not run (docs/design §5), and a
 * checkpointed domain could then cold-boot. Once per process: if the hook
 * is newer than the daemon and we have not reloaded this daemon since,
 * send it one SIGHUP (what `systemctl reload libvirtd` does). */
static void ensure_hook_loaded(struct hu_ctx *ctx)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static bool done;
	static const char *const daemons[] = { "libvirtd", "virtqemud" };

	pthread_mutex_lock(&lock);
	for (size_t i = 0; !done && i < ARRAY_SIZE(daemons); i++) {
		_cleanup_free_ char *pidfile = NULL, *text = NULL, *comm = NULL, *commpath = NULL,
				    *dir = NULL, *record = NULL, *mine = NULL, *seen = NULL;
		_cleanup_close_ int pidfd = -1;
		struct stat st;
		uint64_t starttime;
		int64_t started;
		long pid;
		char *end;

		if (asprintf(&pidfile, "/run/%s.pid", daemons[i]) < 0 ||
		    hu_read_file(pidfile, 64, &text, NULL) < 0)
			continue;
		pid = strtol(text, &end, 10);
		if (end == text || pid <= 1 || pid > INT_MAX)
			continue;
		/* That pid is that daemon (a stale pid file could name anything). */
		if (asprintf(&commpath, "/proc/%ld/comm", pid) < 0 ||
		    hu_read_file(commpath, 64, &comm, NULL) < 0 ||
		    strncmp(comm, daemons[i], strlen(daemons[i])) != 0 || comm[strlen(daemons[i])] != '\n')
			continue;
		if (stat(LV_HOOK, &st) < 0 || daemon_started(ctx, (pid_t)pid, &starttime, &started) < 0)
			continue;
		if (hu_libvirt_marker_path(ctx, NULL, &dir) < 0 ||
		    asprintf(&record, "%s/reloaded-%s", dir, daemons[i]) < 0 ||
		    asprintf(&mine, "%ld %llu %lld\n", pid, (unsigned long long)starttime,
			     (long long)st.st_mtim.tv_sec) < 0)
			continue;
		if (st.st_mtim.tv_sec < started)
			continue; /* read at its start */
		if (hu_read_file(record, 128, &seen, NULL) >= 0 && streq(seen, mine))
			continue; /* reloaded it since the hook changed */
		/* Through a pidfd of the process whose start time was read. */
		if (hu_pid_open(ctx, (pid_t)pid, starttime, 0, &pidfd) >= 0 &&
		    syscall(SYS_pidfd_send_signal, pidfd, SIGHUP, NULL, 0) == 0) {
			hu_info(ctx, NULL,
				"%s started before its hook %s was installed: reloaded it (SIGHUP)",
				daemons[i], LV_HOOK);
			if (hu_mkdir_private(dir) >= 0)
				hu_write_file_atomic(record, mine, strlen(mine), 0600);
			/* It re-reads its configuration asynchronously. */
			usleep(500 * 1000);
		}
	}
	done = true;
	pthread_mutex_unlock(&lock);
}

static int write_marker(struct hu_vm *vm)
{
	return hu_libvirt_marker_write(vm->ctx, vm->lv->uuid, vm->lv->token, vm->lv->links, vm->lv->n_links);
}

static int lv_prepare(struct hu_vm *vm)
{
	struct hu_libvirt_vm *lv = vm->lv;
	unsigned char rnd[16];
	char *xml;
	int r;

	ensure_hook_loaded(vm->ctx);
	xml = sym_virDomainGetXMLDesc(lv->dom, VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_MIGRATABLE);
	if (!xml) {
		_cleanup_free_ char *e = lv_error();

		return hu_vm_set_error(vm, lv_errno(), "libvirt: domain XML: %s", e);
	}
	if (strlen(xml) > LV_MAX_XML) {
		free(xml);
		return hu_vm_set_error(vm, -EFBIG, "libvirt: domain XML larger than %d bytes", LV_MAX_XML);
	}
	free(lv->xml);
	lv->xml = xml;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return hu_vm_set_error(vm, -EIO, "no random bytes for the restore token");
	free(lv->token);
	lv->token = malloc(2 * sizeof(rnd) + 1);
	if (!lv->token)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(rnd); i++)
		sprintf(lv->token + 2 * i, "%02x", rnd[i]);
	/* Before anything changes: from now on the hook blocks cold boots. */
	r = write_marker(vm);
	if (r < 0)
		return hu_vm_set_error(vm, r, "libvirt: pending marker in %s/libvirt: %s", vm->ctx->state_dir,
				       strerror(-r));
	return 0;
}

/* QEMU runs as libvirt-qemu and cannot open our 0600 file: we do, and hand
 * the descriptor over (one per command: libvirt's limit). */
static int lv_state_uri(struct hu_vm *vm, bool out, char **ret_uri)
{
	return hu_state_fd_uri(vm, out, ret_uri);
}

/* The RAM file is in libvirt's per-start folder <base>/<id>-<name>/, which
 * libvirt deletes at the stop: keep it by a hard link in
 * <base>/.host-upgrade/<uuid>/ (same file system). A fixed mem-path (from
 * <qemu:commandline>) is left alone. */
static int link_ram(struct hu_vm *vm)
{
	struct hu_libvirt_vm *lv = vm->lv;
	char prefix[32];

	snprintf(prefix, sizeof(prefix), "%u-", lv->id);
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];
		_cleanup_free_ char *folder = NULL, *dir = NULL, *link_path = NULL;
		const char *file, *fb;
		struct hu_lv_link *nl;
		int r;

		if (!d->skipped || !d->mem_path || !(file = strrchr(d->mem_path, '/')))
			continue;
		folder = strndup(d->mem_path, file - d->mem_path);
		fb = folder ? strrchr(folder, '/') : NULL;
		if (!fb || fb == folder || strncmp(fb + 1, prefix, strlen(prefix)) != 0)
			continue;
		if (asprintf(&dir, "%.*s/.host-upgrade/%s", (int)(fb - folder), folder, lv->uuid) < 0 ||
		    asprintf(&link_path, "%s%s", dir, file) < 0)
			return -ENOMEM;
		r = hu_mkdir_p(dir, 0700);
		if (r < 0)
			return hu_vm_set_error(vm, r, "RAM link folder %s: %s", dir, strerror(-r));
		if (unlink(link_path) < 0 && errno != ENOENT)
			return hu_vm_set_error(vm, -errno, "cannot replace %s: %m", link_path);
		if (link(d->mem_path, link_path) < 0)
			return hu_vm_set_error(vm, -errno, "hard link of RAM %s in %s: %m%s", d->mem_path,
					       dir, errno == EXDEV ? " (another file system)" : "");
		nl = realloc(lv->links, (lv->n_links + 1) * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		lv->links = nl;
		nl[lv->n_links] = (struct hu_lv_link){ strdup(d->id), strdup(d->mem_path),
						       TAKE_PTR(link_path) };
		if (!nl[lv->n_links++].memdev || !nl[lv->n_links - 1].was)
			return -ENOMEM;
	}
	return 0;
}

static int lv_saved(struct hu_vm *vm)
{
	int r;

	hu_state_fdset_remove(vm);
	r = link_ram(vm);
	if (r < 0)
		return r;
	r = write_marker(vm);
	if (r < 0)
		return hu_vm_set_error(vm, r, "libvirt: pending marker: %s", strerror(-r));
	return 0;
}

static int lv_stop(struct hu_vm *vm)
{
	/* The caller waits for the process, and kills it if it must. */
	return sym_virDomainDestroyFlags(vm->lv->dom, 0) < 0 ? lv_errno() : 0;
}

static int lv_cont(struct hu_vm *vm, char **ret_err)
{
	int r = lookup_domain(vm, LV_CONNECT_WAIT_MS, ret_err);

	if (r < 0)
		return r;
	if (sym_virDomainResume(vm->lv->dom) < 0) {
		*ret_err = lv_error();
		return lv_errno();
	}
	return 0;
}

/* --- restore --- */

static xmlNodePtr child(xmlNodePtr parent, const char *name, const char *ns)
{
	for (xmlNodePtr n = parent->children; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && sym_xmlStrEqual(n->name, BAD_CAST name) &&
		    (ns ? n->ns && sym_xmlStrEqual(n->ns->href, BAD_CAST ns) : !n->ns))
			return n;
	return NULL;
}

static bool arg_is(xmlNodePtr n, const char *value)
{
	xmlChar *v;
	bool eq;

	if (!n || n->type != XML_ELEMENT_NODE || !sym_xmlStrEqual(n->name, BAD_CAST "arg"))
		return false;
	v = sym_xmlGetProp(n, BAD_CAST "value");
	eq = v && sym_xmlStrEqual(v, BAD_CAST value);
	hu_xml_free(v);
	return eq;
}

static xmlNodePtr next_element(xmlNodePtr n)
{
	for (n = n ? n->next : NULL; n && n->type != XML_ELEMENT_NODE; n = n->next)
		;
	return n;
}

/* The recorded XML, plus -incoming defer in <qemu:commandline> and our
 * token in <metadata> (what a restored domain carried is replaced). */
static int restore_xml(const char *xml, const char *token, char **ret)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root, meta, cl, hu, a;
	xmlNsPtr qns, hns;
	xmlChar *buf = NULL;
	int size = 0, r;

	r = hu_libvirt_parse_domain(xml, strlen(xml), (void **)&doc);
	if (r < 0)
		return r;
	root = sym_xmlDocGetRootElement(doc);
	meta = child(root, "metadata", NULL);
	if (!meta)
		meta = sym_xmlNewChild(root, NULL, BAD_CAST "metadata", NULL);
	while ((hu = child(meta, "restore", LV_HU_NS))) {
		sym_xmlUnlinkNode(hu);
		sym_xmlFreeNode(hu);
	}
	hu = sym_xmlNewChild(meta, NULL, BAD_CAST "restore", NULL);
	hns = hu ? sym_xmlNewNs(hu, BAD_CAST LV_HU_NS, BAD_CAST "hu") : NULL;
	if (!hns || !sym_xmlNewProp(hu, BAD_CAST "token", BAD_CAST token)) {
		sym_xmlFreeDoc(doc);
		return -ENOMEM;
	}
	sym_xmlSetNs(hu, hns);
	qns = sym_xmlSearchNsByHref(doc, root, BAD_CAST LV_QEMU_NS);
	if (!qns)
		qns = sym_xmlNewNs(root, BAD_CAST LV_QEMU_NS, BAD_CAST "qemu");
	cl = child(root, "commandline", LV_QEMU_NS);
	if (!cl)
		cl = sym_xmlNewChild(root, qns, BAD_CAST "commandline", NULL);
	if (!cl) {
		sym_xmlFreeDoc(doc);
		return -ENOMEM;
	}
	for (xmlNodePtr n = cl->children, nx; n; n = nx) {
		xmlNodePtr v = next_element(n);

		nx = n->next;
		if (arg_is(n, "-incoming") && arg_is(v, "defer")) {
			nx = v->next;
			sym_xmlUnlinkNode(v);
			sym_xmlFreeNode(v);
			sym_xmlUnlinkNode(n);
			sym_xmlFreeNode(n);
		}
	}
	a = sym_xmlNewChild(cl, qns, BAD_CAST "arg", NULL);
	if (a)
		sym_xmlNewProp(a, BAD_CAST "value", BAD_CAST "-incoming");
	a = a ? sym_xmlNewChild(cl, qns, BAD_CAST "arg", NULL) : NULL;
	if (a)
		sym_xmlNewProp(a, BAD_CAST "value", BAD_CAST "defer");
	if (a)
		sym_xmlDocDumpMemory(doc, &buf, &size);
	sym_xmlFreeDoc(doc);
	if (!buf)
		return -ENOMEM;
	*ret = strndup((const char *)buf, size);
	hu_xml_free(buf);
	return *ret ? 0 : -ENOMEM;
}

static int lv_start_incoming(struct hu_vm *vm, pid_t *ret_pid, uint64_t *ret_starttime, char **ret_error)
{
	struct hu_libvirt_vm *lv = vm->lv;
	_cleanup_free_ char *xml = NULL, *why = NULL;
	virConnectPtr c;
	virDomainPtr dom;
	pid_t pid = 0;
	int r;

	r = lv_conn(vm->ctx, LV_CONNECT_WAIT_MS, &c, &why);
	if (r < 0)
		return hu_errorf(ret_error, r, "%s", why ?: "libvirtd not reachable");
	r = lookup_domain(vm, 0, &why);
	if (r >= 0 && sym_virDomainIsActive(lv->dom) == 1)
		return hu_errorf(ret_error, -EEXIST,
				 "libvirt domain %s is running already; not started twice", lv->dname);
	r = restore_xml(lv->xml, lv->token, &xml);
	if (r < 0)
		return hu_errorf(ret_error, r, "recorded domain XML: %s", strerror(-r));
	dom = sym_virDomainCreateXML(c, xml, VIR_DOMAIN_START_PAUSED);
	if (!dom) {
		_cleanup_free_ char *e = lv_error();

		return hu_errorf(ret_error, lv_errno(), "libvirt: starting domain %s for the load: %s",
				 lv->dname, e ?: "?");
	}
	if (lv->dom)
		sym_virDomainFree(lv->dom);
	lv->dom = dom;
	lv->id = sym_virDomainGetID(dom);
	r = read_pidfile(lv->dname, &pid);
	if (r >= 0)
		r = hu_proc_starttime(vm->ctx, pid, ret_starttime);
	if (r >= 0)
		r = open_monitor(vm, &vm->qmp);
	if (r < 0) {
		sym_virDomainDestroyFlags(dom, 0);
		return hu_errorf(ret_error, r,
				 "libvirt domain %s started, but its QEMU cannot be reached: %s", lv->dname,
				 hu_qmp_strerror(r));
	}
	*ret_pid = pid;
	return 0;
}

static int lv_attach(struct hu_vm *vm, pid_t pid, struct hu_qmp **ret)
{
	_cleanup_free_ char *why = NULL;
	pid_t lpid = 0;
	int r = lookup_domain(vm, LV_CONNECT_WAIT_MS, &why);

	if (r < 0)
		return r;
	if (sym_virDomainIsActive(vm->lv->dom) != 1 || read_pidfile(vm->lv->dname, &lpid) < 0 || lpid != pid)
		return -ESRCH;
	return open_monitor(vm, ret);
}

static int lv_kill(struct hu_vm *vm, pid_t pid, uint64_t starttime)
{
	uint64_t st;
	pid_t lpid = 0;
	int64_t deadline = hu_mono_ms() + 30000;

	if (lookup_domain(vm, LV_CONNECT_WAIT_MS, NULL) < 0)
		return -ENOENT;
	if (sym_virDomainIsActive(vm->lv->dom) == 1 && read_pidfile(vm->lv->dname, &lpid) >= 0 &&
	    lpid == pid && sym_virDomainDestroyFlags(vm->lv->dom, 0) < 0)
		return lv_errno();
	while (hu_proc_starttime(vm->ctx, pid, &st) >= 0 && st == starttime) {
		if (hu_mono_ms() > deadline)
			return -ETIMEDOUT;
		usleep(20000);
	}
	return 0;
}

static void lv_done(struct hu_vm *vm)
{
	struct hu_libvirt_vm *lv = vm->lv;
	_cleanup_free_ char *marker = NULL;

	for (size_t i = 0; i < lv->n_links; i++) {
		char *slash;

		unlink(lv->links[i].link);
		slash = strrchr(lv->links[i].link, '/');
		if (slash) {
			*slash = '\0';
			rmdir(lv->links[i].link);
			*slash = '/';
		}
	}
	if (hu_libvirt_marker_path(vm->ctx, lv->uuid, &marker) >= 0 && unlink(marker) == 0) {
		_cleanup_free_ char *dir = NULL;

		if (hu_libvirt_marker_path(vm->ctx, NULL, &dir) >= 0)
			hu_fsync_path(dir);
	}
}

static const char *lv_ram_path(struct hu_vm *vm, size_t i)
{
	for (size_t k = 0; vm->lv && k < vm->lv->n_links; k++)
		if (streq(vm->lv->links[k].memdev, vm->memdevs[i].id))
			return vm->lv->links[k].link;
	return NULL;
}

/* --- manifest --- */

static json_object *lv_to_json(const struct hu_vm *vm)
{
	const struct hu_libvirt_vm *lv = vm->lv;
	json_object *o, *a;

	if (!lv)
		return NULL;
	o = json_object_new_object();
	a = json_object_new_array();

	json_object_object_add(o, "uri", json_object_new_string(LV_URI));
	json_object_object_add(o, "uuid", json_object_new_string(lv->uuid));
	json_object_object_add(o, "name", json_object_new_string(lv->dname));
	json_object_object_add(o, "id", json_object_new_int64(lv->id));
	json_object_object_add(o, "persistent", json_object_new_boolean(lv->persistent));
	json_object_object_add(o, "autostart", json_object_new_boolean(lv->autostart));
	json_object_object_add(o, "token", lv->token ? json_object_new_string(lv->token) : NULL);
	json_object_object_add(o, "xml", lv->xml ? json_object_new_string(lv->xml) : NULL);
	json_object_object_add(o, "fdset", json_object_new_int64(HU_STATE_FDSET));
	for (size_t i = 0; i < lv->n_links; i++) {
		json_object *l = json_object_new_object();

		json_object_object_add(l, "memdev", json_object_new_string(lv->links[i].memdev));
		json_object_object_add(l, "was", json_object_new_string(lv->links[i].was));
		json_object_object_add(l, "link", json_object_new_string(lv->links[i].link));
		json_object_array_add(a, l);
	}
	json_object_object_add(o, "ram_links", a);
	return o;
}

static bool abs_path(const char *p)
{
	return p && p[0] == '/' && !strstr(p, "/../");
}

static int lv_from_json(struct hu_vm *vm, json_object *o)
{
	struct hu_libvirt_vm *lv;
	json_object *v, *links;
	const char *s;
	uuid_t u;
	int r = 0;

	if (!json_object_is_type(o, json_type_object))
		return -EBADMSG;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	vm->lv = lv;
	s = hu_manifest_get_str(o, "uri", 64, false, &r);
	if (r < 0 || !streq(s, LV_URI))
		return -EBADMSG;
	s = hu_manifest_get_str(o, "uuid", 36, false, &r);
	if (r < 0 || strlen(s) != 36 || uuid_parse(s, u) < 0)
		return -EBADMSG;
	lv->uuid = strdup(s);
	s = hu_manifest_get_str(o, "name", HU_MAX_NAME, false, &r);
	if (r < 0 || !hu_name_is_safe(s))
		return -EBADMSG;
	lv->dname = strdup(s);
	if (!json_object_object_get_ex(o, "id", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < -1 || json_object_get_int64(v) > INT_MAX)
		return -EBADMSG;
	lv->id = (unsigned)json_object_get_int64(v);
	if (!json_object_object_get_ex(o, "persistent", &v) || !json_object_is_type(v, json_type_boolean))
		return -EBADMSG;
	lv->persistent = json_object_get_boolean(v);
	if (!json_object_object_get_ex(o, "autostart", &v) || !json_object_is_type(v, json_type_boolean))
		return -EBADMSG;
	lv->autostart = json_object_get_boolean(v);
	s = hu_manifest_get_str(o, "token", 64, true, &r);
	if (s)
		lv->token = strdup(s);
	s = hu_manifest_get_str(o, "xml", LV_MAX_XML, true, &r);
	if (s)
		lv->xml = strdup(s);
	if (r < 0 || !json_object_object_get_ex(o, "ram_links", &links) ||
	    !json_object_is_type(links, json_type_array) || json_object_array_length(links) > HU_MAX_MEMDEVS)
		return -EBADMSG;
	lv->links = calloc(json_object_array_length(links) + 1, sizeof(*lv->links));
	if (!lv->links || !lv->uuid || !lv->dname)
		return -ENOMEM;
	for (size_t i = 0; i < json_object_array_length(links); i++) {
		json_object *l = json_object_array_get_idx(links, i);
		struct hu_lv_link *k = &lv->links[lv->n_links++];

		if (!json_object_is_type(l, json_type_object))
			return -EBADMSG;
		s = hu_manifest_get_str(l, "memdev", 128, false, &r);
		k->memdev = s ? strdup(s) : NULL;
		s = hu_manifest_get_str(l, "was", PATH_MAX, false, &r);
		k->was = abs_path(s) ? strdup(s) : NULL;
		s = hu_manifest_get_str(l, "link", PATH_MAX, false, &r);
		k->link = abs_path(s) ? strdup(s) : NULL;
		if (r < 0 || !k->memdev || !k->was || !k->link)
			return -EBADMSG;
	}
	/* What restore needs before it can start the domain again. */
	if (vm->state != HU_VM_RESTORED && vm->state != HU_VM_RESUMED && vm->state != HU_VM_RUNNING &&
	    (!lv->xml || !lv->token))
		return -EBADMSG;
	return 0;
}

static void lv_free(struct hu_vm *vm)
{
	struct hu_libvirt_vm *lv = vm->lv;

	if (!lv)
		return;
	free(lv->uuid);
	free(lv->dname);
	free(lv->token);
	free(lv->xml);
	for (size_t i = 0; i < lv->n_links; i++) {
		free(lv->links[i].memdev);
		free(lv->links[i].was);
		free(lv->links[i].link);
	}
	free(lv->links);
	if (lv->dom)
		sym_virDomainFree(lv->dom);
	free(lv);
	vm->lv = NULL;
}

const struct hu_manager_ops hu_manager_libvirt = {
	.name = "libvirt",
	.monitor = lv_monitor,
	.plan = lv_plan,
	.prepare = lv_prepare,
	.state_uri = lv_state_uri,
	.saved = lv_saved,
	.stop = lv_stop,
	.cont = lv_cont,
	.start_incoming = lv_start_incoming,
	.attach = lv_attach,
	.kill = lv_kill,
	.done = lv_done,
	.ram_path = lv_ram_path,
	.to_json = lv_to_json,
	.from_json = lv_from_json,
	.free = lv_free,
};
#else
#include "hu-private.h"

void hu_manager_ctx_close(struct hu_ctx *ctx)
{
}
#endif
