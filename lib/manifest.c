/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manifest: the one record of a checkpoint, read by restore, abort and
 * status. Versioned JSON, 0600 in a 0700 dir, replaced atomically on every
 * change. Read back as untrusted input: every field is type-checked and
 * bounded, and a bad manifest is refused whole (nothing is deleted).
 * What status reads from it is in status.c; the journal next to it, an
 * append-only history for operators, in journal.c.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <uuid/uuid.h>
#include "hu-private.h"

int hu_manifest_new(struct hu_ctx *ctx, struct hu_manifest **ret)
{
	struct hu_manifest *m = calloc(1, sizeof(*m));
	char boot[64] = "";

	if (!m)
		return -ENOMEM;
	m->ctx = ctx;
	pthread_mutex_init(&m->lock, NULL);
	hu_read_boot_id(boot, sizeof(boot));
	m->boot_id = strdup(boot);
	m->phase = strdup("idle");
	m->created_ms = hu_now_ms();
	if (asprintf(&m->path, "%s/manifest.json", ctx->state_dir) < 0)
		m->path = NULL;
	m->in_state_dir = true;
	if (!m->boot_id || !m->phase || !m->path) {
		hu_manifest_free(m);
		return -ENOMEM;
	}
	*ret = m;
	return 0;
}

struct hu_manifest *hu_manifest_free(struct hu_manifest *m)
{
	if (!m)
		return NULL;
	if (!m->borrowed)
		for (size_t i = 0; i < m->list.n; i++)
			hu_vm_free(m->list.vms[i]);
	free(m->list.vms);
	free(m->path);
	free(m->phase);
	free(m->boot_id);
	free(m->target_kernel);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

static json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *deep_copy(json_object *src)
{
	json_object *dst = NULL;

	if (!src || json_object_deep_copy(src, &dst, NULL) < 0)
		return NULL;
	return dst;
}

static json_object *vm_to_json(const struct hu_vm *vm)
{
	json_object *o = json_object_new_object(), *a, *mds, *disks, *mo;

	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "state", json_object_new_string(hu_vm_state_to_string(vm->state)));
	json_object_object_add(o, "pid", json_object_new_int64(vm->pid));
	json_object_object_add(o, "starttime", json_object_new_uint64(vm->starttime));
	json_object_object_add(o, "exe", json_object_new_string(vm->exe));
	a = json_object_new_array();
	for (size_t i = 0; i < vm->argc; i++)
		json_object_array_add(a, json_object_new_string(vm->argv[i]));
	json_object_object_add(o, "argv", a);
	json_object_object_add(o, "cwd", json_object_new_string(vm->cwd ?: "/"));
	json_object_object_add(o, "uid", json_object_new_int64(vm->uid));
	json_object_object_add(o, "gid", json_object_new_int64(vm->gid));
	a = json_object_new_array();
	for (size_t i = 0; i < vm->n_groups; i++)
		json_object_array_add(a, json_object_new_int64(vm->groups[i]));
	json_object_object_add(o, "groups", a);
	json_object_object_add(o, "cgroup", str_or_null(vm->cgroup));
	json_object_object_add(o, "qmp_path", str_or_null(vm->ai.qmp_path));
	json_object_object_add(o, "qemu_version", str_or_null(vm->qemu_version));
	json_object_object_add(o, "runstate_before", str_or_null(vm->runstate));
	json_object_object_add(o, "x_ignore_shared", json_object_new_boolean(vm->in_place));
	json_object_object_add(o, "flushed", json_object_new_boolean(!vm->unflushed));
	/* Copies, not references: json-c's refcounts are not atomic and
	 * workers serialise the manifest from several threads. */
	json_object_object_add(o, "migration_caps_before", deep_copy(vm->caps_before));
	json_object_object_add(o, "migration_caps", deep_copy(vm->caps));
	json_object_object_add(o, "max_bandwidth_before", json_object_new_int64(vm->max_bandwidth_before));
	json_object_object_add(o, "ram_bytes", json_object_new_uint64(vm->ram_bytes));
	json_object_object_add(o, "ram_backing", json_object_new_string(hu_backing_to_string(vm->backing)));
	mds = json_object_new_array();
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		const struct hu_memdev *d = &vm->memdevs[i];
		json_object *m = json_object_new_object();
		char dig[32];

		json_object_object_add(m, "id", json_object_new_string(d->id));
		json_object_object_add(m, "type", json_object_new_string(d->type));
		json_object_object_add(m, "mem_path", str_or_null(d->mem_path));
		json_object_object_add(m, "share", json_object_new_boolean(d->share));
		json_object_object_add(m, "size", json_object_new_uint64(d->size));
		json_object_object_add(m, "backing",
				       json_object_new_string(hu_backing_to_string(d->backing)));
		json_object_object_add(m, "skipped", json_object_new_boolean(d->skipped));
		snprintf(dig, sizeof(dig), "%016" PRIx64, d->digest);
		json_object_object_add(m, "digest", json_object_new_string(dig));
		if (d->skipped) {
			json_object *med = json_object_new_object();

			json_object_object_add(
				med, "kind",
				json_object_new_string(hu_medium_kind_to_string(d->medium.kind)));
			json_object_object_add(med, "device", str_or_null(d->medium.device));
			json_object_object_add(med, "namespace", str_or_null(d->medium.ns));
			json_object_object_add(med, "uuid", str_or_null(d->medium.uuid));
			json_object_object_add(med, "size", json_object_new_uint64(d->medium.size));
			json_object_object_add(med, "mode", str_or_null(d->medium.mode));
			json_object_object_add(m, "medium", med);
		}
		json_object_array_add(mds, m);
	}
	json_object_object_add(o, "memdevs", mds);
	disks = json_object_new_array();
	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct hu_disk *d = &vm->disks[i];
		json_object *m = json_object_new_object();

		json_object_object_add(m, "path", json_object_new_string(d->path));
		json_object_object_add(m, "size", json_object_new_uint64(d->size));
		json_object_object_add(m, "inode", json_object_new_uint64(d->ino));
		json_object_object_add(m, "dev", json_object_new_uint64(d->dev));
		json_object_object_add(m, "mtime_ns", json_object_new_int64(d->mtime_ns));
		json_object_array_add(disks, m);
	}
	json_object_object_add(o, "disks", disks);
	a = json_object_new_array();
	for (size_t i = 0; i < vm->n_configs; i++) {
		const struct hu_config_file *f = &vm->configs[i];
		json_object *c = json_object_new_object();

		json_object_object_add(c, "path", json_object_new_string(f->path));
		json_object_object_add(c, "sha256", f->present ? json_object_new_string(f->sha256) : NULL);
		json_object_object_add(c, "size", json_object_new_uint64(f->size));
		json_object_array_add(a, c);
	}
	json_object_object_add(o, "readconfig", a);
	if (vm->ai.n_listen_paths) {
		/* With its -readconfig files' (the argv alone does not say them):
		 * abort puts them back after a prelaunch cut short. */
		a = json_object_new_array();
		for (size_t i = 0; i < vm->ai.n_listen_paths; i++)
			json_object_array_add(a, json_object_new_string(vm->ai.listen_paths[i]));
		json_object_object_add(o, "listen_paths", a);
	}
	json_object_object_add(o, "suspend", json_object_new_boolean(vm->suspend));
	json_object_object_add(o, "suspended_by_us", json_object_new_boolean(vm->suspended_by_us));
	json_object_object_add(o, "clock_step_ms",
			       vm->has_clock_step ? json_object_new_int64(vm->clock_step_ms) : NULL);
	json_object_object_add(o, "state_bytes", json_object_new_uint64(vm->state_bytes));
	json_object_object_add(o, "stopped_at_ms", json_object_new_int64(vm->stopped_at_ms));
	json_object_object_add(o, "running_at_ms", json_object_new_int64(vm->running_at_ms));
	if (vm->pre_pid > 0) { /* prelaunch: the new QEMU beside the old one (abort decides by it) */
		json_object_object_add(o, "prelaunch_pid", json_object_new_int64(vm->pre_pid));
		json_object_object_add(o, "prelaunch_starttime", json_object_new_uint64(vm->pre_starttime));
		/* its load was asked for: the old QEMU is not resumed on a guess */
		json_object_object_add(o, "prelaunch_incoming", json_object_new_boolean(vm->pre_incoming));
		if (vm->pre_cpr) /* its QMP is up only once the old one sent the cpr state */
			json_object_object_add(o, "prelaunch_cpr", json_object_new_boolean(true));
	}
	json_object_object_add(o, "error", str_or_null(vm->error));
	json_object_object_add(o, "manager", json_object_new_string(hu_manager_name(vm)));
	mo = vm->mgr && vm->mgr->to_json ? vm->mgr->to_json(vm) : NULL;
	if (mo)
		json_object_object_add(o, vm->mgr->name, mo);
	return o;
}

int hu_manifest_to_json(struct hu_manifest *m, json_object **ret)
{
	json_object *o = json_object_new_object(), *vms = json_object_new_array();

	if (!o || !vms) {
		json_object_put(o);
		json_object_put(vms);
		return -ENOMEM;
	}
	json_object_object_add(o, "version", json_object_new_int(HU_MANIFEST_VERSION));
	json_object_object_add(o, "phase", json_object_new_string(m->phase));
	json_object_object_add(o, "boot_id", json_object_new_string(m->boot_id));
	json_object_object_add(o, "created_ms", json_object_new_int64(m->created_ms));
	json_object_object_add(o, "target_kernel", str_or_null(m->target_kernel));
	for (size_t i = 0; i < m->list.n; i++) {
		struct hu_vm *vm = m->list.vms[i];

		json_object_array_add(vms, vm->snapshot ? json_object_get(vm->snapshot) : vm_to_json(vm));
	}
	json_object_object_add(o, "vms", vms);
	*ret = o;
	return 0;
}

void hu_manifest_snapshot(struct hu_manifest *m, struct hu_vm *vm, bool keep)
{
	pthread_mutex_lock(&m->lock);
	json_object_put(vm->snapshot);
	vm->snapshot = keep ? vm_to_json(vm) : NULL;
	pthread_mutex_unlock(&m->lock);
}

int hu_manifest_save_vm(struct hu_manifest *m, struct hu_vm *vm)
{
	pthread_mutex_lock(&m->lock);
	if (vm->snapshot) {
		json_object_put(vm->snapshot);
		vm->snapshot = vm_to_json(vm);
	}
	pthread_mutex_unlock(&m->lock);
	return hu_manifest_save(m);
}

void hu_manifest_parallel_for(struct hu_manifest *m, size_t n, unsigned jobs,
			      void (*fn)(size_t i, void *data), void *data)
{
	for (size_t i = 0; i < m->list.n; i++)
		hu_manifest_snapshot(m, m->list.vms[i], true);
	hu_parallel_for(n, jobs, fn, data);
	for (size_t i = 0; i < m->list.n; i++)
		hu_manifest_snapshot(m, m->list.vms[i], false);
}

/* Serialise under the lock: workers update their VM from threads. */
int hu_manifest_save(struct hu_manifest *m)
{
	json_object *o = NULL;
	const char *s;
	int r;

	pthread_mutex_lock(&m->lock);
	r = hu_manifest_to_json(m, &o);
	if (r >= 0) {
		s = json_object_to_json_string_ext(o,
						   JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
		int dirfd = m->in_state_dir ? hu_state_dir_fd(m->ctx, false, NULL) : -1;

		r = !m->in_state_dir ? hu_write_file_atomic(m->path, s, strlen(s), 0600)
		    : dirfd < 0	     ? dirfd
				     : hu_write_file_replace_at(dirfd, "manifest.json", s, strlen(s), 0600,
								!m->lazy_saves);
	}
	/* Freed under the lock too: nothing json-c owns is touched unlocked. */
	json_object_put(o);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* The phase in memory (and the journal); the next save persists it. */
int hu_manifest_note_phase(struct hu_manifest *m, const char *phase)
{
	char *p = strdup(phase);

	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	free(m->phase);
	m->phase = p;
	pthread_mutex_unlock(&m->lock);
	hu_journal(m->ctx, NULL, "phase", phase);
	return 0;
}

int hu_manifest_set_phase(struct hu_manifest *m, const char *phase)
{
	int r = hu_manifest_note_phase(m, phase);

	return r < 0 ? r : hu_manifest_save(m);
}

/* --- reading back (untrusted) --- */

static const char *get_str(json_object *o, const char *key, size_t max, bool nullable, int *r)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
		if (!nullable)
			*r = -EBADMSG;
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string) || (size_t)json_object_get_string_len(v) > max ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
		*r = -EBADMSG;
		return NULL;
	}
	return json_object_get_string(v);
}

/* The same, for a manager's object in a VM's record (libvirt.c). */
const char *hu_manifest_get_str(json_object *o, const char *key, size_t max, bool nullable, int *r)
{
	return get_str(o, key, max, nullable, r);
}

static int64_t get_int(json_object *o, const char *key, int64_t min, int64_t max, int *r)
{
	json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) {
		*r = -EBADMSG;
		return 0;
	}
	x = json_object_get_int64(v);
	if (x < min || x > max)
		*r = -EBADMSG;
	return x;
}

static uint64_t get_uint(json_object *o, const char *key, int *r)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) {
		*r = -EBADMSG;
		return 0;
	}
	return json_object_get_uint64(v);
}

static bool get_bool(json_object *o, const char *key, int *r)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean)) {
		*r = -EBADMSG;
		return false;
	}
	return json_object_get_boolean(v);
}

static json_object *get_array(json_object *o, const char *key, size_t max, int *r)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array) ||
	    json_object_array_length(v) > max) {
		*r = -EBADMSG;
		return NULL;
	}
	return v;
}

/* {"capability-name": bool, ...} or null; bounded and type-checked. */
static json_object *get_caps(json_object *o, const char *key, int *r)
{
	json_object *v;
	int n = 0;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	if (!json_object_is_type(v, json_type_object)) {
		*r = -EBADMSG;
		return NULL;
	}
	json_object_object_foreach(v, name, val) {
		if (++n > 64 || strlen(name) > 64 || !json_object_is_type(val, json_type_boolean)) {
			*r = -EBADMSG;
			return NULL;
		}
	}
	return json_object_get(v);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int backing_from_string(const char *s, enum hu_backing *ret)
{
	for (int b = HU_BACKING_PERSISTENT; b <= HU_BACKING_PRIVATE; b++)
		if (s && streq(s, hu_backing_to_string(b))) {
			*ret = b;
			return 0;
		}
	return -EBADMSG;
}

/* The config files QEMU read ("readconfig", absent before #17: none
 * recorded): path, sha256 (null: the default file was not there), size. */
static int configs_from_json(json_object *o, struct hu_vm *vm)
{
	json_object *a;
	int r = 0;

	if (!json_object_object_get_ex(o, "readconfig", &a))
		return 0;
	a = get_array(o, "readconfig", HU_MAX_CONFIG_FILES, &r);
	if (r < 0)
		return r;
	vm->configs = calloc(json_object_array_length(a) + 1, sizeof(*vm->configs));
	if (!vm->configs)
		return -ENOMEM;
	for (size_t i = 0; r >= 0 && i < json_object_array_length(a); i++) {
		json_object *c = json_object_array_get_idx(a, i);
		struct hu_config_file *f = &vm->configs[vm->n_configs++];
		const char *path, *sha;

		if (!json_object_is_type(c, json_type_object))
			return -EBADMSG;
		path = get_str(c, "path", PATH_MAX, false, &r);
		sha = get_str(c, "sha256", 64, true, &r);
		f->size = get_uint(c, "size", &r);
		if (r < 0 || !path[0] || (sha && strspn(sha, "0123456789abcdef") != 64))
			return -EBADMSG;
		f->path = strdup(path);
		if (!f->path)
			return -ENOMEM;
		f->present = sha;
		if (sha)
			memcpy(f->sha256, sha, 65);
	}
	return r;
}

static int vm_from_json(struct hu_ctx *ctx, json_object *o, struct hu_vm **ret)
{
	struct hu_vm *vm = calloc(1, sizeof(*vm));
	json_object *argv, *mds, *disks, *groups, *cs;
	const char *s;
	int r = 0;

	if (!vm)
		return -ENOMEM;
	vm->ctx = ctx;
	if (!json_object_is_type(o, json_type_object)) {
		r = -EBADMSG;
		goto out;
	}
	s = get_str(o, "name", HU_MAX_NAME, false, &r);
	if (r < 0 || !hu_name_is_safe(s)) {
		r = -EBADMSG;
		goto out;
	}
	vm->name = strdup(s);
	s = get_str(o, "state", 32, false, &r);
	if (r < 0 || hu_vm_state_from_string(s, &vm->state) < 0) {
		r = -EBADMSG;
		goto out;
	}
	vm->pid = get_int(o, "pid", 0, INT32_MAX, &r);
	vm->starttime = get_uint(o, "starttime", &r);
	s = get_str(o, "exe", PATH_MAX, false, &r);
	if (r < 0 || s[0] != '/') {
		r = -EBADMSG;
		goto out;
	}
	vm->exe = strdup(s);
	argv = get_array(o, "argv", HU_MAX_ARGS, &r);
	if (r < 0 || json_object_array_length(argv) == 0) {
		r = -EBADMSG;
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(argv) && r >= 0; i++) {
		json_object *a = json_object_array_get_idx(argv, i);

		if (!json_object_is_type(a, json_type_string) ||
		    strlen(json_object_get_string(a)) != (size_t)json_object_get_string_len(a))
			r = -EBADMSG;
		else
			r = hu_strv_push(&vm->argv, &vm->argc, json_object_get_string(a));
	}
	vm->cwd = dup_or_null(get_str(o, "cwd", PATH_MAX, false, &r));
	vm->uid = get_int(o, "uid", 0, UINT32_MAX - 1, &r);
	vm->gid = get_int(o, "gid", 0, UINT32_MAX - 1, &r);
	groups = get_array(o, "groups", 64, &r);
	if (r >= 0 && json_object_array_length(groups) > 0) {
		vm->groups = calloc(json_object_array_length(groups), sizeof(*vm->groups));
		if (!vm->groups)
			r = -ENOMEM;
	}
	for (size_t i = 0; r >= 0 && i < json_object_array_length(groups); i++) {
		json_object *g = json_object_array_get_idx(groups, i);

		if (!json_object_is_type(g, json_type_int) || json_object_get_int64(g) < 0 ||
		    json_object_get_int64(g) >= UINT32_MAX)
			r = -EBADMSG;
		else
			vm->groups[vm->n_groups++] = json_object_get_int64(g);
	}
	vm->cgroup = dup_or_null(get_str(o, "cgroup", PATH_MAX, true, &r));
	vm->qemu_version = dup_or_null(get_str(o, "qemu_version", 64, true, &r));
	vm->runstate = dup_or_null(get_str(o, "runstate_before", 64, true, &r));
	vm->in_place = get_bool(o, "x_ignore_shared", &r);
	vm->unflushed = !get_bool(o, "flushed", &r);
	vm->caps_before = get_caps(o, "migration_caps_before", &r);
	vm->caps = get_caps(o, "migration_caps", &r);
	vm->max_bandwidth_before = get_int(o, "max_bandwidth_before", 0, INT64_MAX, &r);
	vm->ram_bytes = get_uint(o, "ram_bytes", &r);
	if (r >= 0 && backing_from_string(get_str(o, "ram_backing", 32, false, &r), &vm->backing) < 0)
		r = -EBADMSG;
	mds = get_array(o, "memdevs", HU_MAX_MEMDEVS, &r);
	if (r >= 0) {
		vm->memdevs = calloc(json_object_array_length(mds) + 1, sizeof(*vm->memdevs));
		if (!vm->memdevs)
			r = -ENOMEM;
	}
	for (size_t i = 0; r >= 0 && i < json_object_array_length(mds); i++) {
		json_object *m = json_object_array_get_idx(mds, i), *med;
		struct hu_memdev *d = &vm->memdevs[vm->n_memdevs++];

		if (!json_object_is_type(m, json_type_object)) {
			r = -EBADMSG;
			break;
		}
		d->id = dup_or_null(get_str(m, "id", 128, false, &r));
		d->type = dup_or_null(get_str(m, "type", 64, false, &r));
		d->mem_path = dup_or_null(get_str(m, "mem_path", PATH_MAX, true, &r));
		d->share = get_bool(m, "share", &r);
		d->size = get_uint(m, "size", &r);
		d->skipped = get_bool(m, "skipped", &r);
		vm->copies_ram = vm->copies_ram || !d->skipped; /* as plan decided */
		if (r >= 0 && backing_from_string(get_str(m, "backing", 32, false, &r), &d->backing) < 0)
			r = -EBADMSG;
		s = get_str(m, "digest", 16, false, &r);
		if (r >= 0 && sscanf(s, "%" SCNx64, &d->digest) != 1)
			r = -EBADMSG;
		if (r >= 0 && d->skipped && (!d->mem_path || d->mem_path[0] != '/'))
			r = -EBADMSG;
		if (r >= 0 && json_object_object_get_ex(m, "medium", &med) &&
		    !json_object_is_type(med, json_type_null)) {
			const char *kind = get_str(med, "kind", 16, false, &r);
			bool known = false;

			d->medium.kind = HU_MEDIUM_FILE;
			for (int k = HU_MEDIUM_FILE; r >= 0 && k <= HU_MEDIUM_FSDAX; k++)
				if (streq(kind, hu_medium_kind_to_string(k))) {
					d->medium.kind = k;
					known = true;
				}
			if (r >= 0 && !known)
				r = -EBADMSG;
			d->medium.device = dup_or_null(get_str(med, "device", 64, true, &r));
			d->medium.size = get_uint(med, "size", &r);
			d->medium.mode = dup_or_null(get_str(med, "mode", 32, true, &r));
			d->medium.ns = dup_or_null(get_str(med, "namespace", 64, true, &r));
			d->medium.uuid = dup_or_null(get_str(med, "uuid", 36, true, &r));
			/* pmem and DAX media are checked by their device (early boot
			 * and restore look it up); only a plain file has none. */
			if (r >= 0 && d->medium.kind != HU_MEDIUM_FILE && !d->medium.device)
				r = -EBADMSG;
			/* A device name, not a path: it is looked up under /sys. */
			if (r >= 0 && d->medium.device &&
			    (strchr(d->medium.device, '/') || d->medium.device[0] == '.'))
				r = -EBADMSG;
			if (r >= 0 && d->medium.uuid) {
				uuid_t uu;

				if (uuid_parse(d->medium.uuid, uu) < 0)
					r = -EBADMSG;
			}
		}
	}
	disks = get_array(o, "disks", HU_MAX_DISKS, &r);
	if (r >= 0) {
		vm->disks = calloc(json_object_array_length(disks) + 1, sizeof(*vm->disks));
		if (!vm->disks)
			r = -ENOMEM;
	}
	for (size_t i = 0; r >= 0 && i < json_object_array_length(disks); i++) {
		json_object *m = json_object_array_get_idx(disks, i);
		struct hu_disk *d = &vm->disks[vm->n_disks++];

		if (!json_object_is_type(m, json_type_object)) {
			r = -EBADMSG;
			break;
		}
		d->path = dup_or_null(get_str(m, "path", PATH_MAX, false, &r));
		d->size = get_uint(m, "size", &r);
		d->ino = get_uint(m, "inode", &r);
		d->dev = get_uint(m, "dev", &r);
		d->mtime_ns = get_int(m, "mtime_ns", INT64_MIN, INT64_MAX, &r);
	}
	if (r >= 0)
		r = configs_from_json(o, vm);
	vm->suspend = get_bool(o, "suspend", &r);
	vm->suspended_by_us = get_bool(o, "suspended_by_us", &r);
	if (r >= 0 && json_object_object_get_ex(o, "clock_step_ms", &cs) &&
	    !json_object_is_type(cs, json_type_null)) {
		vm->clock_step_ms = get_int(o, "clock_step_ms", INT64_MIN / 2, INT64_MAX / 2, &r);
		vm->has_clock_step = true;
	}
	vm->state_bytes = get_uint(o, "state_bytes", &r);
	vm->stopped_at_ms = get_int(o, "stopped_at_ms", 0, INT64_MAX, &r);
	vm->running_at_ms = get_int(o, "running_at_ms", 0, INT64_MAX, &r);
	if (json_object_object_get_ex(o, "prelaunch_pid", NULL)) {
		vm->pre_pid = get_int(o, "prelaunch_pid", 1, INT32_MAX, &r);
		vm->pre_starttime = get_uint(o, "prelaunch_starttime", &r);
		if (json_object_object_get_ex(o, "prelaunch_incoming", NULL))
			vm->pre_incoming = get_bool(o, "prelaunch_incoming", &r);
		if (json_object_object_get_ex(o, "prelaunch_cpr", NULL))
			vm->pre_cpr = get_bool(o, "prelaunch_cpr", &r);
	}
	vm->error = dup_or_null(get_str(o, "error", 4096, true, &r));
	/* Version 3 has no manager: nobody's. */
	s = get_str(o, "manager", 32, true, &r);
	if (r >= 0 && s && hu_manager_by_name(s, &vm->mgr) < 0)
		r = -EBADMSG;
	if (r >= 0 && vm->mgr) {
		json_object *mo = NULL;

		json_object_object_get_ex(o, vm->mgr->name, &mo);
		r = vm->mgr->from_json ? vm->mgr->from_json(vm, mo) : 0;
	}
	if (r >= 0) {
		s = get_str(o, "qmp_path", PATH_MAX, true, &r);
		if (s)
			vm->ai.qmp_path = strdup(s);
	}
	/* The rest of what argv says (name, agent, pidfile) is re-derived. */
	if (r >= 0) {
		struct hu_argv_info ai = {};
		char *keep = TAKE_PTR(vm->ai.qmp_path);

		r = hu_argv_parse(vm->argv, vm->argc, &ai);
		if (r >= 0) {
			vm->ai = ai;
			if (keep) {
				free(vm->ai.qmp_path);
				vm->ai.qmp_path = keep;
				keep = NULL;
			}
			if (!vm->ai.qmp_path && !vm->mgr && vm->state != HU_VM_RESTORED &&
			    vm->state != HU_VM_RESUMED)
				r = -EBADMSG; /* nothing to talk to */
		}
		free(keep);
	}
	if (r >= 0 && json_object_object_get_ex(o, "listen_paths", NULL)) {
		json_object *lp = get_array(o, "listen_paths", HU_MAX_LISTEN_PATHS, &r);

		hu_strv_free(vm->ai.listen_paths, vm->ai.n_listen_paths);
		vm->ai.listen_paths = NULL;
		vm->ai.n_listen_paths = 0;
		for (size_t i = 0; r >= 0 && i < json_object_array_length(lp); i++) {
			json_object *e = json_object_array_get_idx(lp, i);

			if (!json_object_is_type(e, json_type_string) ||
			    json_object_get_string_len(e) >= PATH_MAX ||
			    strlen(json_object_get_string(e)) != (size_t)json_object_get_string_len(e))
				r = -EBADMSG;
			else
				r = hu_strv_push(&vm->ai.listen_paths, &vm->ai.n_listen_paths,
						 json_object_get_string(e));
		}
	}
	if (r >= 0 && asprintf(&vm->state_file, "%s/%s.state", ctx->state_dir, vm->name) < 0)
		r = -ENOMEM;
out:
	if (r < 0) {
		hu_vm_free(vm);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	*ret = vm;
	return 0;
}

int hu_manifest_from_json(struct hu_ctx *ctx, json_object *o, struct hu_manifest *m)
{
	json_object *vms;
	const char *s;
	int64_t v;
	int r = 0;

	if (!json_object_is_type(o, json_type_object))
		return -EBADMSG;
	v = get_int(o, "version", 1, 1000, &r);
	if (v < HU_MANIFEST_OLDEST || v > HU_MANIFEST_VERSION)
		return -EPROTONOSUPPORT;
	s = get_str(o, "phase", 32, false, &r);
	if (r < 0)
		return r;
	free(m->phase);
	m->phase = strdup(s);
	s = get_str(o, "boot_id", 64, false, &r);
	if (r < 0)
		return r;
	free(m->boot_id);
	m->boot_id = strdup(s);
	m->created_ms = get_int(o, "created_ms", 0, INT64_MAX, &r);
	s = get_str(o, "target_kernel", 128, true, &r);
	if (r < 0)
		return r;
	m->target_kernel = s ? strdup(s) : NULL;
	vms = get_array(o, "vms", HU_MAX_VMS, &r);
	if (r < 0)
		return r;
	for (size_t i = 0; i < json_object_array_length(vms); i++) {
		struct hu_vm *vm;

		r = vm_from_json(ctx, json_object_array_get_idx(vms, i), &vm);
		if (r < 0)
			return r;
		for (size_t j = 0; j < m->list.n; j++)
			if (streq(m->list.vms[j]->name, vm->name)) {
				hu_vm_free(vm);
				return -EBADMSG;
			}
		r = hu_vm_list_add(&m->list, vm);
		if (r < 0) {
			hu_vm_free(vm);
			return r;
		}
	}
	return 0;
}

/* manifest.json in the directory `dirfd` (named `dir`), already checked
 * to be ours alone (hu_open_private_dir). */
static int manifest_load_at(struct hu_ctx *ctx, int dirfd, const char *dir, struct hu_manifest **ret)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_json_ json_object *o = NULL;
	struct hu_manifest *m;
	json_tokener *tok;
	size_t len;
	int r;

	r = hu_read_state_file(dirfd, "manifest.json", HU_MAX_MANIFEST, &text, &len);
	if (r < 0)
		return r;
	tok = json_tokener_new_ex(32);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	json_tokener_free(tok);
	if (!o)
		return -EBADMSG;
	r = hu_manifest_new(ctx, &m);
	if (r < 0)
		return r;
	free(m->path);
	if (asprintf(&m->path, "%s/manifest.json", dir) < 0)
		m->path = NULL;
	m->in_state_dir = dirfd == ctx->state_fd;
	r = m->path ? hu_manifest_from_json(ctx, o, m) : -ENOMEM;
	if (r < 0) {
		hu_manifest_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

int hu_manifest_load_dir(struct hu_ctx *ctx, const char *dir, struct hu_manifest **ret, char **ret_error)
{
	_cleanup_close_ int dirfd = hu_open_private_dir(dir, false, ret_error);

	if (dirfd < 0)
		return dirfd;
	return manifest_load_at(ctx, dirfd, dir, ret);
}

int hu_manifest_load(struct hu_ctx *ctx, struct hu_manifest **ret)
{
	_cleanup_free_ char *why = NULL;
	int dirfd, r;

	hu_clear_error(ctx);
	dirfd = hu_state_dir_fd(ctx, false, &why);
	if (dirfd == -ENOENT)
		return -ENOENT; /* no state dir: no manifest */
	if (dirfd < 0)
		return hu_fail(ctx, dirfd, "state dir %s", why ?: strerror(-dirfd));
	r = manifest_load_at(ctx, dirfd, ctx->state_dir, ret);
	if (r < 0 && r != -ENOENT)
		return hu_fail(ctx, r, "%s/manifest.json: %s", ctx->state_dir, hu_manifest_strerror(r));
	return r;
}

const char *hu_manifest_strerror(int r)
{
	/* clang-format off */
	switch (r) {
	case -EBADMSG:         return "corrupt or not a host-upgrade manifest";
	case -EPROTONOSUPPORT: return "written by an unknown version of host-upgrade";
	case -EFBIG:           return "larger than any manifest host-upgrade writes";
	case -ELOOP:           return "a symbolic link, not the file host-upgrade wrote";
	case -EBADFD:          return "not a regular file";
	default:               return strerror(-r);
	}
	/* clang-format on */
}
