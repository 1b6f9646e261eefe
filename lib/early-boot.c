/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * early boot (initrd side): only when the restore marker is on the kernel
 * command line. Load the modules the RAM medium and KVM need (libkmod),
 * wait until every pmem/DAX device holding in-place RAM is back with the
 * size and mode it had, and make the restore unit run first thing after
 * switch-root (a wants-link under /run, which survives switch-root). QEMU
 * is not started here: systemd ends initrd processes at switch-root, and
 * the VMs' disks and QEMU live in the real root.
 */
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <libkmod.h>
#include <blkid.h>
#include "hu-private.h"

static const char *const early_modules[] = {
	"libnvdimm", "nfit",	   "nd_pmem", "nd_e820",   "nd_btt",
	"dax_pmem",  "device_dax", "kvm",     "kvm_intel", "kvm_amd",
};

/* Is `key` (alone or as key=value) a word of the kernel command line? Read
 * as the kernel reads it (the same split as stage's, so that early boot
 * finds the marker stage wrote), to the end of the line: a marker after
 * "--" counts too. */
int hu_cmdline_get(struct hu_ctx *ctx, const char *key, char **ret_value)
{
	_cleanup_free_ char *path = NULL, *cl = NULL;
	size_t kl = strlen(key);
	const char *end;
	int r;

	if (asprintf(&path, "%s/cmdline", ctx->proc_root) < 0)
		return -ENOMEM;
	r = hu_read_file(path, 8192, &cl, NULL);
	if (r < 0)
		return r;
	for (const char *w = cl; (w = hu_cmdline_word(w, &end)); w = end) {
		_cleanup_free_ char *m = hu_cmdline_word_meaning(w, end - w);

		if (!m)
			return -ENOMEM;
		if (strncmp(m, key, kl) == 0 && (m[kl] == '=' || m[kl] == '\0')) {
			if (ret_value && !(*ret_value = strdup(m[kl] == '=' ? m + kl + 1 : "")))
				return -ENOMEM;
			return 1;
		}
	}
	return 0;
}

static void load_modules(struct hu_ctx *ctx, json_object *report)
{
	struct kmod_ctx *k = kmod_new(NULL, NULL);
	json_object *loaded = json_object_new_array(), *missing = json_object_new_array(),
		    *failed = json_object_new_array();

	for (size_t i = 0; k && i < ARRAY_SIZE(early_modules); i++) {
		struct kmod_list *l = NULL, *it;
		int r = kmod_module_new_from_lookup(k, early_modules[i], &l);
		bool ok = false;

		kmod_list_foreach(it, l)
		{
			struct kmod_module *mod = kmod_module_get_module(it);

			/* kvm_intel on an AMD host fails: only "none loaded" counts. */
			if (kmod_module_probe_insert_module(mod, 0, NULL, NULL, NULL, NULL) >= 0)
				ok = true;
			kmod_module_unref(mod);
		}
		json_object_array_add(ok	      ? loaded
				      : (r >= 0 && l) ? failed
						      : missing,
				      json_object_new_string(early_modules[i]));
		kmod_module_unref_list(l);
	}
	kmod_unref(k);
	json_object_object_add(report, "modules_loaded", loaded);
	json_object_object_add(report, "modules_missing", missing);
	/* e.g. kvm_intel on a CPU without VMX: there, but not for this host */
	json_object_object_add(report, "modules_not_loadable", failed);
}

/* hu.state=UUID=<uuid>:/<dir> (untrusted: the kernel command line). */
int hu_state_spec_parse(const char *spec, char **ret_uuid, char **ret_dir)
{
	const char *colon = strchr(spec, ':');
	char *uuid, *dir;

	if (!colon || strncmp(spec, "UUID=", 5) != 0 || colon == spec + 5 || colon[1] != '/' ||
	    strlen(colon + 1) >= PATH_MAX)
		return -EINVAL;
	uuid = strndup(spec + 5, colon - (spec + 5));
	dir = strdup(colon + 1);
	if (!uuid || !dir) {
		free(uuid);
		free(dir);
		return -ENOMEM;
	}
	*ret_uuid = uuid;
	*ret_dir = dir;
	return 0;
}

/* The state dir on a file system of its own: hu.state=UUID=<uuid>:<dir>
 * names it. libblkid finds the device and its type; it is mounted
 * read-only under the run dir only while the manifest is read (the real
 * root mounts it for the restore). *ret_mnt is that mount, or NULL. */
static int find_state_dir(struct hu_ctx *ctx, const struct hu_early_opts *o, char **ret_dir, char **ret_mnt)
{
	_cleanup_free_ char *spec = NULL, *uuid = NULL, *sdir = NULL, *dev = NULL, *type = NULL, *mnt = NULL;
	int r = hu_cmdline_get(ctx, "hu.state", &spec);

	*ret_mnt = NULL;
	if (r <= 0)
		return asprintf(ret_dir, "%s%s", o->root ?: "", ctx->state_dir) < 0 ? -ENOMEM : 0;
	r = spec ? hu_state_spec_parse(spec, &uuid, &sdir) : -EINVAL;
	if (r < 0)
		return r;
	dev = blkid_evaluate_tag("UUID", uuid, NULL);
	if (!dev)
		return -ENODEV;
	type = blkid_get_tag_value(NULL, "TYPE", dev);
	if (!type)
		return -EMEDIUMTYPE;
	if (asprintf(&mnt, "%s/state-fs", o->run_dir) < 0)
		return -ENOMEM;
	r = hu_mkdir_p(mnt, 0700);
	if (r < 0)
		return r;
	if (mount(dev, mnt, type, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	if (asprintf(ret_dir, "%s%s", mnt, sdir) < 0) {
		umount2(mnt, MNT_DETACH);
		return -ENOMEM;
	}
	*ret_mnt = TAKE_PTR(mnt);
	return 0;
}

/* systemd takes unit names of up to 255 bytes (UNIT_NAME_MAX - 1). */
#define UNIT_NAME_MAX 255

struct unit_names {
	char **v;
	size_t n, cap;
};

static int unit_names_add(struct unit_names *u, const char *name, size_t len)
{
	char *s;

	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 16;
		char **v = reallocarray(u->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		u->v = v;
		u->cap = cap;
	}
	s = malloc(len + sizeof(".mount"));
	if (!s)
		return -ENOMEM;
	memcpy(s, name, len);
	strcpy(s + len, ".mount");
	u->v[u->n++] = s;
	return 0;
}

/* The mount units of every directory above `path`, "/" itself excepted,
 * outermost first, as systemd-escape --path --suffix=mount names them:
 * '/' between components becomes '-'; bytes other than [A-Za-z0-9:_.],
 * and a leading '.', become \xNN. One pass: each directory's name is a
 * prefix of the next one's. A name longer than systemd takes ends the
 * list (every deeper one is longer still): the work and the drop-in stay
 * linear in the path, not quadratic in its components. */
static int add_mount_units(struct unit_names *u, const char *path)
{
	char name[UNIT_NAME_MAX + 1];
	size_t o = 0;
	bool first = true;
	int r;

	for (size_t i = 0; path[i]; i++) {
		unsigned char c = path[i];

		if (c == '/') {
			if (!first && path[i - 1] != '/' && (r = unit_names_add(u, name, o)) < 0)
				return r;
			continue;
		}
		if (o + strlen("-\\xNN") + strlen(".mount") > UNIT_NAME_MAX)
			return 0;
		if (!first && path[i - 1] == '/')
			name[o++] = '-';
		if (isalnum(c) || c == ':' || c == '_' || (c == '.' && !first))
			name[o++] = c;
		else
			o += sprintf(name + o, "\\x%02x", c);
		first = false;
	}
	return 0;
}

static int cmp_name_ptr(const void *a, const void *b)
{
	const char *const *x = *(const char *const *const *)a, *const *y = *(const char *const *const *)b;
	int c = strcmp(*x, *y);

	return c ? c : (x > y) - (x < y); /* equal names: the first one first */
}

/* The restore must wait for the file systems holding in-place RAM, but a
 * file system that never comes back must not hold back the VMs whose RAM
 * did: Wants= + After= the mount unit of each RAM file's directory and of
 * its parents (RequiresMountsFor= would fail the whole restore unit when
 * one such mount fails; restore refuses that VM by itself). Each unit
 * once, in the order first named; duplicates are found by sorting, not by
 * searching the text written so far. */
int hu_early_write_mounts_dropin(struct hu_ctx *ctx, struct hu_manifest *m, const char *dropin_dir)
{
	static const char head[] = "# written by host-upgrade early-boot\n[Unit]\n";
	_cleanup_free_ char *text = NULL, *path = NULL;
	_cleanup_free_ char ***sorted = NULL;
	struct unit_names u = {};
	size_t len = strlen(head);
	char *t;
	int r = 0;

	for (size_t i = 0; r >= 0 && i < m->list.n; i++) {
		struct hu_vm *vm = m->list.vms[i];

		for (size_t j = 0; r >= 0 && j < vm->n_memdevs; j++) {
			/* Where the bytes are now: a manager may keep them elsewhere
			 * (libvirt: a hard link; the per-start folder is gone). */
			const char *p = hu_manager_ram_path(vm, j);

			/* A device node (device DAX) is no mount to wait for. */
			if (!vm->memdevs[j].skipped || !p || p[0] != '/' ||
			    vm->memdevs[j].medium.kind == HU_MEDIUM_DEVDAX ||
			    vm->memdevs[j].medium.kind == HU_MEDIUM_PMEM)
				continue;
			r = add_mount_units(&u, p);
		}
	}
	if (r >= 0 && u.n > 0 && !(sorted = calloc(u.n, sizeof(*sorted))))
		r = -ENOMEM;
	if (r >= 0) {
		for (size_t i = 0; i < u.n; i++)
			sorted[i] = &u.v[i];
		if (u.n > 1) /* with none, sorted is NULL: qsort's argument must not be */
			qsort(sorted, u.n, sizeof(*sorted), cmp_name_ptr);
		/* Of equal names the first named sorts first: it is kept. */
		for (size_t i = 0, keep = 0; i < u.n; i++)
			if (i > 0 && streq(*sorted[keep], *sorted[i])) {
				free(*sorted[i]);
				*sorted[i] = NULL;
			} else {
				keep = i;
			}
		for (size_t i = 0; i < u.n; i++)
			if (u.v[i])
				len += 2 * strlen(u.v[i]) + strlen("Wants=\nAfter=\n");
		text = malloc(len + 1);
		if (!text)
			r = -ENOMEM;
	}
	if (r >= 0) {
		t = stpcpy(text, head);
		for (size_t i = 0; i < u.n; i++)
			if (u.v[i])
				t += sprintf(t, "Wants=%s\nAfter=%s\n", u.v[i], u.v[i]);
	}
	hu_strv_free(u.v, u.n);
	if (r < 0)
		return r;
	r = hu_mkdir_p(dropin_dir, 0755);
	if (r < 0)
		return r;
	if (asprintf(&path, "%s/50-ram-mounts.conf", dropin_dir) < 0)
		return -ENOMEM;
	return hu_write_file_atomic(path, text, strlen(text), 0644);
}

/* Wait for every medium of every checkpointed VM; record what is wrong. */
int hu_early_check_media(struct hu_ctx *ctx, struct hu_manifest *m, unsigned wait_ms, json_object *media)
{
	int64_t deadline = hu_mono_ms() + wait_ms;
	int bad = 0;

	for (size_t i = 0; i < m->list.n; i++) {
		struct hu_vm *vm = m->list.vms[i];

		if (vm->state != HU_VM_CHECKPOINTED && vm->state != HU_VM_SAVED && vm->state != HU_VM_FAILED)
			continue;
		for (size_t j = 0; j < vm->n_memdevs; j++) {
			const struct hu_medium *md = &vm->memdevs[j].medium;
			_cleanup_free_ char *moved_to = NULL, *why = NULL;
			json_object *e;
			int r;

			if (!vm->memdevs[j].skipped || md->kind == HU_MEDIUM_FILE)
				continue;
			/* Namespaces appear as their drivers probe: wait for one that
			 * is not there yet, not for one that is there and different. */
			r = hu_ram_medium_wait(ctx, md, deadline, &why);
			/* Renumbered: restore follows the namespace by its uuid. */
			if (r == -ESTALE && hu_ram_medium_follow(ctx, md, &moved_to, NULL) == 0)
				r = 0;
			e = json_object_new_object();
			json_object_object_add(e, "vm", json_object_new_string(vm->name));
			json_object_object_add(e, "device", json_object_new_string(md->device));
			json_object_object_add(e, "ok", json_object_new_boolean(r >= 0));
			if (moved_to)
				json_object_object_add(e, "moved_to", json_object_new_string(moved_to));
			if (r < 0)
				json_object_object_add(e, "why", json_object_new_string(why ?: strerror(-r)));
			json_object_array_add(media, e);
			bad += r < 0;
		}
	}
	return bad;
}

int hu_early_boot(struct hu_ctx *ctx, const struct hu_early_opts *o)
{
	_cleanup_json_ json_object *report = json_object_new_object();
	_cleanup_free_ char *dir = NULL, *unit_link = NULL, *state_mnt = NULL;
	struct hu_manifest *m = NULL;
	json_object *media = json_object_new_array();
	const char *text;
	int r, bad = 0, no_manifest = 0;

	hu_clear_error(ctx);
	r = hu_cmdline_get(ctx, HU_CMDLINE_MARKER_KEY, NULL);
	if (r <= 0) {
		json_object_put(media);
		hu_info(ctx, NULL, "no restore pending (no %s on the kernel command line)",
			HU_CMDLINE_MARKER);
		return 0;
	}
	if (!o->no_modules)
		load_modules(ctx, report);
	r = find_state_dir(ctx, o, &dir, &state_mnt);
	if (r < 0) {
		hu_fail(ctx, r, "hu.state= on the kernel command line: %s",
			r == -EINVAL	    ? "not UUID=<uuid>:/<dir>"
			: r == -ENODEV	    ? "no file system with that UUID"
			: r == -EMEDIUMTYPE ? "its file system type is unknown"
					    : strerror(-r));
	} else {
		_cleanup_free_ char *why = NULL;

		r = hu_manifest_load_dir(ctx, dir, &m, &why);
		if (r < 0)
			hu_fail(ctx, r,
				"restore pending but its manifest %s/manifest.json cannot be read: %s", dir,
				why ?: hu_manifest_strerror(r));
	}
	if (state_mnt && umount2(state_mnt, 0) == 0)
		rmdir(state_mnt);
	if (r < 0) {
		json_object_put(media);
		json_object_object_add(report, "error", json_object_new_string(strerror(-r)));
		no_manifest = r;
	} else {
		bad = hu_early_check_media(ctx, m, o->wait_ms, media);
		json_object_object_add(report, "media", media);
		/* Not fatal: without the order the restore may only start before a
		 * slow RAM mount and refuse that VM, which it says. */
		if (o->dropin_dir && (r = hu_early_write_mounts_dropin(ctx, m, o->dropin_dir)) < 0)
			hu_info(ctx, NULL, "cannot order the restore after the RAM mounts: %s", strerror(-r));
		hu_manifest_free(m);
	}
	/* /run survives switch-root: the restore unit runs first thing after. */
	r = hu_mkdir_p(o->run_dir, 0700);
	if (r >= 0)
		r = hu_mkdir_private(o->run_dir);
	if (r < 0)
		return hu_fail(ctx, r, "%s: %s", o->run_dir, strerror(-r));
	text = json_object_to_json_string_ext(report,
					      JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	{
		_cleanup_free_ char *rp = NULL;

		if (asprintf(&rp, "%s/early-boot.json", o->run_dir) < 0)
			return -ENOMEM;
		r = hu_write_file_atomic(rp, text, strlen(text), 0600);
		if (r < 0)
			return r;
	}
	if (o->wants_dir) {
		r = hu_mkdir_p(o->wants_dir, 0755);
		if (r >= 0 && asprintf(&unit_link, "%s/host-upgrade-restore.service", o->wants_dir) < 0)
			r = -ENOMEM;
		if (r >= 0 && symlink(o->unit_path, unit_link) < 0 && errno != EEXIST)
			r = -errno;
		if (r < 0)
			return hu_fail(ctx, r, "cannot arrange the restore unit in %s: %s", o->wants_dir,
				       strerror(-r));
	}
	if (no_manifest < 0) {
		/* The restore unit still runs: it reads the real root's state dir and says the same. */
		hu_info(ctx, NULL, "restore unit linked, no media checked");
		return no_manifest;
	}
	hu_info(ctx, NULL, "restore prepared%s", bad ? " (with refused media)" : "");
	return bad;
}
