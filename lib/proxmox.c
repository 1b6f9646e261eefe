/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * proxmox: QEMUs Proxmox VE's qemu-server runs (docs/design/proxmox.md).
 * Their monitor is an ordinary QMP socket and restore replays their argv,
 * so the phases' own code drives them. What this file adds is what Proxmox
 * does around a QEMU: when it quits, qmeventd runs `qm cleanup N`, which
 * (with the flag /var/run/qemu-server/N.cleanup present) deactivates the
 * VM's volumes, unlinks its sockets and pidfile and runs the post-stop
 * hook. So, per VM, from the checkpoint to the end of the restore:
 *   - qemu-server's config flock lock-N.conf is held (qm cleanup, start,
 *     stop, migrate wait on it), taken with a bounded wait before the first
 *     change to the VM;
 *   - after the save, before the quit, the cleanup flag is moved into the
 *     state dir: a qm cleanup that runs meanwhile finds nothing to tear
 *     down; it is put back once the guest runs again (restored or resumed).
 * The flag's copy in the state dir is the record: restore and abort put
 * back whatever they find there, after a kill -9 too.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include "hu-private.h"

#define PVE_VMID_MIN	 100
#define PVE_VMID_MAX	 999999999
#define PVE_LOCK_WAIT_MS 10000	   /* qemu-server's own lock_config default */
#define PVE_MAX_CONF	 (1 << 20) /* a VM config, snapshots included */
#define PVE_MAX_FLAG	 64	   /* the cleanup flag holds epoch seconds */

struct hu_proxmox_vm {
	unsigned vmid;
	int lock_fd;	 /* lock-N.conf, flock'ed: from prepare until done */
	bool flag_aside; /* the cleanup flag was moved into the state dir */
};

/* Tests point Proxmox's paths at a directory of their own. */
static const char *pve_root(void)
{
	const char *r = secure_getenv("HU_PROXMOX_ROOT");

	if (!r || r[0] != '/' || strlen(r) > 256 || strstr(r, "/.."))
		return "";
	return r;
}

_printf_(1, 2) static char *pve_path(const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&rel, fmt, ap);
	va_end(ap);
	if (r < 0 || asprintf(&p, "%s%s", pve_root(), rel) < 0)
		return NULL;
	return p;
}

/* Proxmox's own test for "this is a VM's QEMU": argv[0] ends in kvm or is
 * qemu-NAME (Helpers.pm parse_cmdline). */
static bool pve_argv0(const char *a0)
{
	const char *bn = strrchr(a0, '/');
	size_t n = strlen(a0);

	bn = bn ? bn + 1 : a0;
	return (n >= 3 && streq(a0 + n - 3, "kvm")) || (strncmp(bn, "qemu-", 5) == 0 && bn[5]);
}

/* The VMID of `-pidfile ROOT/var/run/qemu-server/N.pid`, exactly as qm
 * writes it (Proxmox compares the string), or 0. */
static unsigned pidfile_vmid(const char *pidfile)
{
	_cleanup_free_ char *dir = NULL;
	const char *p;
	unsigned long v;
	char *end;

	if (!pidfile || asprintf(&dir, "%s/var/run/qemu-server/", pve_root()) < 0 ||
	    strncmp(pidfile, dir, strlen(dir)) != 0)
		return 0;
	p = pidfile + strlen(dir);
	if (p[0] < '1' || p[0] > '9')
		return 0;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || !streq(end, ".pid") || v < PVE_VMID_MIN || v > PVE_VMID_MAX)
		return 0;
	return (unsigned)v;
}

unsigned hu_proxmox_vmid(const struct hu_vm *vm)
{
	return vm->mgr == &hu_manager_proxmox && vm->pve ? vm->pve->vmid : 0;
}

static struct hu_proxmox_vm *pve_new(unsigned vmid)
{
	struct hu_proxmox_vm *p = calloc(1, sizeof(*p));

	if (p) {
		p->vmid = vmid;
		p->lock_fd = -1;
	}
	return p;
}

bool hu_proxmox_claim(struct hu_vm *vm)
{
	_cleanup_free_ char *conf = NULL;
	unsigned vmid;

	if (vm->argc < 1 || !pve_argv0(vm->argv[0]))
		return false;
	vmid = pidfile_vmid(vm->ai.pidfile);
	/* A VM qm knows has its config on this node (pmxcfs); without it qm
	 * cleanup does nothing, and neither do we. */
	if (!vmid || !(conf = pve_path("/etc/pve/qemu-server/%u.conf", vmid)) || access(conf, F_OK) < 0)
		return false;
	vm->pve = pve_new(vmid);
	if (!vm->pve)
		return false;
	vm->mgr = &hu_manager_proxmox;
	/* pve-qemu's own -id (upstream QEMU has none) must agree. */
	for (size_t i = 1; i + 1 < vm->argc; i++)
		if (streq(vm->argv[i], "-id") && strtoul(vm->argv[i + 1], NULL, 10) != vmid)
			hu_strv_pushf(&vm->blockers, &vm->n_blockers,
				      "Proxmox VM %u: -id %.16s disagrees with its -pidfile", vmid,
				      vm->argv[i + 1]);
	return true;
}

/* --- plan --- */

/* A key of the config's main section (the lines before the first
 * [snapshot] or [PENDING]): the start of its value, or NULL. `numbered`:
 * KEY0..KEYn ("hostpci" finds hostpci3). */
static const char *conf_find(const char *text, const char *key, bool numbered)
{
	size_t kl = strlen(key);

	for (const char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *p = line + kl;

		if (line[0] == '[')
			return NULL;
		if (strncmp(line, key, kl) != 0)
			continue;
		while (numbered && *p >= '0' && *p <= '9')
			p++;
		if (*p != ':' || (numbered && p == line + kl))
			continue;
		for (p++; *p == ' ' || *p == '\t'; p++)
			;
		return p;
	}
	return NULL;
}

/* `vm: N` in HA's resources.cfg: pve-ha-lrm would take a kexec for a
 * shutdown and act on the VM by its own policy. */
static bool ha_managed(unsigned vmid)
{
	_cleanup_free_ char *path = pve_path("/etc/pve/ha/resources.cfg"), *text = NULL;

	if (!path || hu_read_file(path, PVE_MAX_CONF, &text, NULL) < 0)
		return false;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long v;
		char *end;

		if (strncmp(line, "vm:", 3) != 0)
			continue;
		v = strtoul(line + 3, &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (v == vmid && !*end)
			return true;
	}
	return false;
}

/* What keeps this VM from a checkpoint now, pushed onto `strv`: plan's
 * blockers, and checked again under the config lock (pve_prepare). */
static void pve_blockers(unsigned vmid, char ***strv, size_t *n)
{
	static const struct {
		const char *key;
		bool numbered;
		const char *why;
	} unsupported[] = {
		{ "hostpci", true, "PCI passthrough (hostpciN) is not supported for Proxmox VMs yet" },
		{ "tpmstate", true, "its TPM state lives in a swtpm process qm starts: not restored" },
		{ "virtiofs", true, "its virtiofsd processes are not restored" },
	};
	_cleanup_free_ char *conf = pve_path("/etc/pve/qemu-server/%u.conf", vmid), *text = NULL;
	_cleanup_free_ char *reboot = pve_path("/var/run/qemu-server/%u.reboot", vmid);
	const char *lock;
	int r;

	if (!conf || !reboot) {
		hu_strv_pushf(strv, n, "Proxmox VM %u: out of memory", vmid);
		return;
	}
	r = hu_read_file(conf, PVE_MAX_CONF, &text, NULL);
	if (r < 0) {
		hu_strv_pushf(strv, n, "Proxmox VM %u: cannot read %s: %s", vmid, conf, strerror(-r));
		return;
	}
	lock = conf_find(text, "lock", false);
	if (lock)
		hu_strv_pushf(
			strv, n,
			"Proxmox VM %u: config lock '%.*s' is set: a qm operation runs or was cut short "
			"(qm unlock %u once it is over)",
			vmid, (int)strcspn(lock, "\n"), lock, vmid);
	for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
		if (conf_find(text, unsupported[i].key, unsupported[i].numbered))
			hu_strv_pushf(strv, n, "Proxmox VM %u: %s", vmid, unsupported[i].why);
	if (access(reboot, F_OK) == 0)
		hu_strv_pushf(strv, n,
			      "Proxmox VM %u: a qm reboot is pending (%s): qm cleanup would cold-start it "
			      "beside its checkpoint",
			      vmid, reboot);
	if (ha_managed(vmid))
		hu_strv_pushf(
			strv, n,
			"Proxmox VM %u is an HA resource (ha/resources.cfg): pve-ha-lrm takes a kexec for a "
			"shutdown and would act on it; remove it from HA for the upgrade",
			vmid);
}

static void pve_plan(struct hu_vm *vm, const struct hu_options *opts)
{
	(void)opts;
	pve_blockers(vm->pve->vmid, &vm->blockers, &vm->n_blockers);
}

/* --- checkpoint --- */

/* qemu-server's config lock: `>>` + flock, as lock_file_full does. Nothing
 * signals a released flock: try again every 100 ms until the bound. Then
 * plan's blockers again: any one fails this VM (and so, all or nothing,
 * the checkpoint), the lock let go. */
static int pve_prepare(struct hu_vm *vm)
{
	struct hu_proxmox_vm *p = vm->pve;
	_cleanup_free_ char *dir = pve_path("/var/lock/qemu-server"), *path = NULL;
	_cleanup_close_ int fd = -1;
	int64_t deadline = hu_mono_ms() + PVE_LOCK_WAIT_MS;
	char **now = NULL;
	size_t n_now = 0;
	int r;

	if (p->lock_fd >= 0)
		return 0;
	if (!dir || asprintf(&path, "%s/lock-%u.conf", dir, p->vmid) < 0)
		return -ENOMEM;
	(void)hu_mkdir_p(dir, 0755); /* /var/lock is a tmpfs; QemuConfig.pm makes it too */
	/* O_CLOEXEC: a QEMU restore starts must never inherit the lock. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return hu_vm_set_error(vm, -errno, "Proxmox config lock %s: %m", path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return hu_vm_set_error(vm, -errno, "Proxmox config lock %s: %m", path);
		if (hu_mono_ms() >= deadline)
			return hu_vm_set_error(
				vm, -EBUSY,
				"Proxmox config lock %s busy for %d s: another qm operation runs "
				"on VM %u",
				path, PVE_LOCK_WAIT_MS / 1000, p->vmid);
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	}
	/* Between plan and here (a prompt can sit there) a vzdump or snapshot
	 * may have set `lock:` in the config and let go of the flock: what
	 * blocked at plan time is checked again now that nothing can change it. */
	pve_blockers(p->vmid, &now, &n_now);
	if (n_now > 0) {
		r = hu_vm_set_error(vm, -EBUSY, "changed since the plan: %s", now[0]);
		hu_strv_free(now, n_now);
		return r;
	}
	p->lock_fd = TAKE_FD(fd);
	hu_dbg(vm->ctx, vm->name, "holding %s", path);
	return 0;
}

static int flag_aside_name(const struct hu_proxmox_vm *p, char **ret)
{
	return asprintf(ret, "proxmox-%u.cleanup", p->vmid) < 0 ? -ENOMEM : 0;
}

/* Saved, QEMU still there: move the cleanup flag into the state dir
 * (durably there before it is gone from /run). */
static int pve_saved(struct hu_vm *vm)
{
	struct hu_proxmox_vm *p = vm->pve;
	_cleanup_free_ char *flag = pve_path("/var/run/qemu-server/%u.cleanup", p->vmid), *text = NULL;
	_cleanup_free_ char *aside = NULL, *why = NULL;
	size_t len = 0;
	int dirfd, r;

	if (!flag || flag_aside_name(p, &aside) < 0)
		return -ENOMEM;
	r = hu_read_file(flag, PVE_MAX_FLAG, &text, &len);
	if (r == -ENOENT)
		return 0; /* qm made none (older qemu-server): nothing to keep from cleanup */
	if (r < 0)
		return hu_vm_set_error(vm, r, "Proxmox cleanup flag %s: %s", flag, strerror(-r));
	dirfd = hu_state_dir_fd(vm->ctx, true, &why);
	if (dirfd < 0)
		return hu_vm_set_error(vm, dirfd, "%s", why ?: strerror(-dirfd));
	r = hu_write_file_atomic_at(dirfd, aside, text, len, 0600);
	if (r < 0)
		return hu_vm_set_error(vm, r, "keeping Proxmox cleanup flag %s: %s", flag, strerror(-r));
	if (unlink(flag) < 0 && errno != ENOENT)
		return hu_vm_set_error(vm, -errno, "moving Proxmox cleanup flag %s aside: %m", flag);
	p->flag_aside = true;
	hu_dbg(vm->ctx, vm->name, "cleanup flag %s moved into the state dir", flag);
	return 0;
}

/* --- the guest runs again --- */

/* Put back the cleanup flag this VM's checkpoint set aside (if the state
 * dir holds one: also after a kill -9), then let go of the config lock. */
static void pve_done(struct hu_vm *vm)
{
	struct hu_proxmox_vm *p = vm->pve;
	_cleanup_free_ char *flag = NULL, *aside = NULL, *text = NULL;
	size_t len = 0;
	int dirfd, r;

	if (!p)
		return;
	flag = pve_path("/var/run/qemu-server/%u.cleanup", p->vmid);
	dirfd = hu_state_dir_fd(vm->ctx, false, NULL);
	if (flag && flag_aside_name(p, &aside) >= 0 && dirfd >= 0 &&
	    hu_read_state_file(dirfd, aside, PVE_MAX_FLAG, &text, &len) >= 0) {
		r = hu_write_file_atomic(flag, text, len, 0644);
		if (r >= 0) {
			unlinkat(dirfd, aside, 0);
			p->flag_aside = false;
		} else
			hu_info(vm->ctx, vm->name,
				"Proxmox cleanup flag %s not put back: %s; qm stop will not clean up after it",
				flag, strerror(-r));
	}
	if (p->lock_fd >= 0) {
		close(p->lock_fd);
		p->lock_fd = -1;
	}
}

/* --- manifest --- */

static json_object *pve_to_json(const struct hu_vm *vm)
{
	json_object *o;

	if (!vm->pve)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "vmid", json_object_new_int64(vm->pve->vmid));
	json_object_object_add(o, "cleanup_flag_aside", json_object_new_boolean(vm->pve->flag_aside));
	return o;
}

static int pve_from_json(struct hu_vm *vm, json_object *o)
{
	json_object *v;
	int64_t vmid;

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "vmid", &v) ||
	    !json_object_is_type(v, json_type_int))
		return -EBADMSG;
	vmid = json_object_get_int64(v);
	if (vmid < PVE_VMID_MIN || vmid > PVE_VMID_MAX)
		return -EBADMSG;
	vm->pve = pve_new((unsigned)vmid);
	if (!vm->pve)
		return -ENOMEM;
	if (json_object_object_get_ex(o, "cleanup_flag_aside", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return -EBADMSG;
		vm->pve->flag_aside = json_object_get_boolean(v);
	}
	return 0;
}

static void pve_free(struct hu_vm *vm)
{
	if (!vm->pve)
		return;
	if (vm->pve->lock_fd >= 0)
		close(vm->pve->lock_fd);
	free(vm->pve);
	vm->pve = NULL;
}

const struct hu_manager_ops hu_manager_proxmox = {
	.name = "proxmox",
	.plan = pve_plan,
	.prepare = pve_prepare,
	.saved = pve_saved,
	.done = pve_done,
	.to_json = pve_to_json,
	.from_json = pve_from_json,
	.free = pve_free,
};
