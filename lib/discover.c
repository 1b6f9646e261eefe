/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * discover: every qemu-system-* process from /proc (argv, cwd, ids, cgroup),
 * then QEMU itself over QMP: version, runstate, migration capabilities and
 * parameters, memory backends and the block nodes behind its disks.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include "hu-private.h"

static int readlink_malloc(const char *path, char **ret)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

/* Real uid/gid and supplementary groups, from /proc/PID/status. */
static int read_ids(const char *base, struct hu_vm *vm)
{
	_cleanup_free_ char *path = NULL, *st = NULL;
	char *line, *save = NULL;

	if (asprintf(&path, "%s/status", base) < 0)
		return -ENOMEM;
	if (hu_read_file(path, 65536, &st, NULL) < 0)
		return 0; /* keep what stat() said */
	for (line = strtok_r(st, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long v;

		if (sscanf(line, "Uid: %lu", &v) == 1)
			vm->uid = v;
		else if (sscanf(line, "Gid: %lu", &v) == 1)
			vm->gid = v;
		else if (strncmp(line, "Groups:", 7) == 0) {
			char *p = line + 7, *end;

			while (vm->n_groups < 64) {
				gid_t *ng;

				v = strtoul(p, &end, 10);
				if (end == p)
					break;
				ng = realloc(vm->groups, (vm->n_groups + 1) * sizeof(*ng));
				if (!ng)
					return -ENOMEM;
				vm->groups = ng;
				vm->groups[vm->n_groups++] = v;
				p = end;
			}
		}
	}
	return 0;
}

/* The record of a QEMU that discovery does not examine: who runs it, and
 * why it is left alone (vm->skipped, also its blocker: it may be a real VM
 * that a reboot would lose). Never a reason to fail the scan. */
static int skipped_record(struct hu_ctx *ctx, pid_t pid, char *exe, const char *base, const char *why,
			  struct hu_vm **ret)
{
	struct hu_vm *vm = calloc(1, sizeof(*vm));
	struct stat st;

	if (!vm)
		return -ENOMEM;
	vm->ctx = ctx;
	vm->pid = pid;
	vm->exe = exe;
	if (stat(base, &st) == 0) {
		vm->uid = st.st_uid;
		vm->gid = st.st_gid;
	}
	read_ids(base, vm);
	hu_proc_starttime(ctx, pid, &vm->starttime);
	if (asprintf(&vm->name, "pid-%d", (int)pid) < 0)
		vm->name = NULL;
	vm->skipped = strdup(why);
	if (!vm->name || !vm->skipped ||
	    hu_strv_pushf(&vm->blockers, &vm->n_blockers, "not examined: %s", why) < 0) {
		hu_vm_free(vm);
		return -ENOMEM;
	}
	*ret = vm;
	return 0;
}

/* The executable of a process, " (deleted)" dropped (a QEMU whose binary
 * was upgraded on disk); -ENOENT when it is not a qemu-system-*. */
static int read_qemu_exe(const char *base, char **ret)
{
	_cleanup_free_ char *p = NULL, *exe = NULL;
	const char *bn;
	size_t len;

	if (asprintf(&p, "%s/exe", base) < 0)
		return -ENOMEM;
	if (readlink_malloc(p, &exe) < 0)
		return -ENOENT;
	len = strlen(exe);
	if (len > 10 && streq(exe + len - 10, " (deleted)"))
		exe[len - 10] = '\0';
	bn = strrchr(exe, '/');
	bn = bn ? bn + 1 : exe;
	if (strncmp(bn, "qemu-system-", 12) != 0)
		return -ENOENT;
	*ret = TAKE_PTR(exe);
	return 0;
}

/* What in a command line makes discovery leave a QEMU alone, in words. */
static const char *unreadable_why(int r)
{
	switch (r) {
	case -EFBIG: return "its command line is longer than 256 KiB";
	case -E2BIG:
		return "its command line has more than 4096 arguments, or an option with more than 256 keys";
	default: return "its command line cannot be parsed";
	}
}

/* The config files QEMU read are part of its command line (-readconfig,
 * and its default file unless -no-user-config): what they create is added
 * to vm->ai. One that cannot be read is a blocker (check_replayable), not a
 * reason to skip the VM. */
static int read_configs(struct hu_vm *vm)
{
	const struct hu_config_reader rd = {
		.cwd = vm->cwd,
		.uid = vm->uid,
		.gid = vm->gid,
		.groups = vm->groups,
		.n_groups = vm->n_groups,
		/* Not for -runas: a QEMU started as root that dropped to its user
		 * read its files as root, but any user can write -runas in an argv;
		 * such a VM's file must be readable by the user it runs as. */
		.as_root = vm->uid == 0,
	};
	int r = hu_argv_parse_configs(vm->argv, vm->argc, &rd, HU_QEMU_DEFAULT_CONFIG, &vm->ai, &vm->configs,
				      &vm->n_configs, &vm->configs_error);

	if (r == -ENOMEM)
		return r;
	if (r < 0 && !vm->configs_error &&
	    asprintf(&vm->configs_error, "its command line with its config files cannot be parsed: %s",
		     strerror(-r)) < 0)
		return -ENOMEM;
	return 0;
}

/* Read one process; -ENOENT/-ESRCH when it is not a QEMU (or vanished).
 * A QEMU whose command line is more than we take is a skipped record. */
static int read_process(struct hu_ctx *ctx, pid_t pid, struct hu_vm **ret)
{
	_cleanup_free_ char *base = NULL, *exe = NULL, *cmdline = NULL, *p = NULL, *cg = NULL;
	struct hu_vm *vm;
	size_t len;
	struct stat st;
	int r, unreadable = 0;

	if (asprintf(&base, "%s/%d", ctx->proc_root, (int)pid) < 0)
		return -ENOMEM;
	r = read_qemu_exe(base, &exe);
	if (r < 0)
		return r;

	if (asprintf(&p, "%s/cmdline", base) < 0)
		return -ENOMEM;
	r = hu_read_file(p, HU_MAX_CMDLINE, &cmdline, &len);
	if (r == -EFBIG)
		return skipped_record(ctx, pid, TAKE_PTR(exe), base, unreadable_why(r), ret);
	if (r < 0)
		return r;
	if (len == 0)
		return -ENOENT; /* a zombie */

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->ctx = ctx;
	vm->pid = pid;
	vm->exe = TAKE_PTR(exe);
	for (size_t off = 0; off < len && r >= 0;) {
		if (vm->argc >= HU_MAX_ARGS) {
			unreadable = -E2BIG;
			break;
		}
		r = hu_strv_push(&vm->argv, &vm->argc, cmdline + off);
		off += strlen(cmdline + off) + 1;
	}
	if (r >= 0 && !unreadable)
		r = hu_proc_starttime(ctx, pid, &vm->starttime);
	if (r >= 0 && !unreadable) {
		free(p);
		p = NULL;
		if (asprintf(&p, "%s/cwd", base) < 0 || readlink_malloc(p, &vm->cwd) < 0)
			vm->cwd = strdup("/");
		if (stat(base, &st) == 0) {
			vm->uid = st.st_uid;
			vm->gid = st.st_gid;
		}
		r = read_ids(base, vm);
		free(p);
		p = NULL;
		if (asprintf(&p, "%s/cgroup", base) >= 0 && hu_read_file(p, 4096, &cg, NULL) >= 0) {
			char *nl = strchr(cg, '\n');

			if (nl)
				*nl = '\0';
			vm->cgroup = strdup(strncmp(cg, "0::", 3) == 0 ? cg + 3 : cg);
		}
		r = hu_argv_parse(vm->argv, vm->argc, &vm->ai);
		if (r < 0 && r != -ENOMEM) {
			unreadable = r;
			r = 0;
		}
		if (r >= 0 && !unreadable)
			r = read_configs(vm);
	}
	if (r >= 0 && !unreadable) {
		if (vm->ai.name && hu_name_is_safe(vm->ai.name))
			vm->name = strdup(vm->ai.name);
		else if (asprintf(&vm->name, "pid-%d", (int)pid) < 0)
			vm->name = NULL;
		if (!vm->name)
			r = -ENOMEM;
	}
	if (r >= 0 && unreadable) {
		/* More than we take from one process: judged on its own. */
		exe = TAKE_PTR(vm->exe);
		hu_vm_free(vm);
		return skipped_record(ctx, pid, TAKE_PTR(exe), base, unreadable_why(unreadable), ret);
	}
	if (r < 0) {
		hu_vm_free(vm);
		return r;
	}
	*ret = vm;
	return 0;
}

static json_object *get_key(json_object *o, const char *key, json_type type)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static int query_memdevs(struct hu_vm *vm, struct hu_qmp *q)
{
	_cleanup_json_ json_object *mds = NULL, *objs = NULL;
	size_t n;
	int r;

	r = hu_qmp_execute(q, "query-memdev", NULL, &mds, NULL);
	if (r < 0)
		return r;
	if (!json_object_is_type(mds, json_type_array))
		return -EPROTO;
	/* Types come from the QOM tree: "child<memory-backend-file>". */
	r = hu_qmp_execute(q, "qom-list", json_tokener_parse("{\"path\":\"/objects\"}"), &objs, NULL);
	if (r < 0)
		return r;
	if (!json_object_is_type(objs, json_type_array))
		return -EPROTO;
	n = json_object_array_length(mds);
	if (n > HU_MAX_MEMDEVS)
		return -E2BIG;
	vm->memdevs = calloc(n ? n : 1, sizeof(*vm->memdevs));
	if (!vm->memdevs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *md = json_object_array_get_idx(mds, i), *v;
		struct hu_memdev *d = &vm->memdevs[vm->n_memdevs];
		const char *id;

		if (!(v = get_key(md, "id", json_type_string)))
			continue;
		id = json_object_get_string(v);
		vm->n_memdevs++;
		d->id = strndup(id, 128);
		d->share = (v = get_key(md, "share", json_type_boolean)) && json_object_get_boolean(v);
		d->size = (v = get_key(md, "size", json_type_int)) ? (uint64_t)json_object_get_int64(v) : 0;
		for (size_t j = 0; objs && j < json_object_array_length(objs); j++) {
			json_object *e = json_object_array_get_idx(objs, j), *nm, *tp;
			const char *t;

			if (!(nm = get_key(e, "name", json_type_string)) ||
			    !(tp = get_key(e, "type", json_type_string)) ||
			    !streq(json_object_get_string(nm), id))
				continue;
			t = json_object_get_string(tp);
			if (strncmp(t, "child<", 6) == 0) {
				d->type = strndup(t + 6, 64);
				if (d->type && strchr(d->type, '>'))
					*strchr(d->type, '>') = '\0';
			}
		}
		if (!d->id || !d->type)
			return -ENOMEM;
		if (streq(d->type, "memory-backend-file")) {
			_cleanup_json_ json_object *args = json_object_new_object(), *mp = NULL;
			_cleanup_free_ char *objpath = NULL;

			if (asprintf(&objpath, "/objects/%s", id) < 0)
				return -ENOMEM;
			json_object_object_add(args, "path", json_object_new_string(objpath));
			json_object_object_add(args, "property", json_object_new_string("mem-path"));
			r = hu_qmp_execute(q, "qom-get", TAKE_PTR(args), &mp, NULL);
			if (r < 0)
				return r;
			if (!json_object_is_type(mp, json_type_string))
				return -EPROTO;
			d->mem_path = strndup(json_object_get_string(mp), PATH_MAX);
			r = hu_classify_path(d->mem_path, d->share, &d->backing, &d->why);
			if (r < 0) {
				d->backing = HU_BACKING_PRIVATE;
				if (asprintf(&d->why, "mem-path %s: %s", d->mem_path, strerror(-r)) < 0)
					d->why = NULL;
			}
			/* discard-data=on: QEMU punches the RAM out of the file
			 * when it quits, so it cannot stay in place. */
			args = json_object_new_object();
			json_object_object_add(args, "path", json_object_new_string(objpath));
			json_object_object_add(args, "property", json_object_new_string("discard-data"));
			json_object_put(mp);
			mp = NULL;
			if (hu_qmp_execute(q, "qom-get", TAKE_PTR(args), &mp, NULL) >= 0 &&
			    json_object_is_type(mp, json_type_boolean) && json_object_get_boolean(mp)) {
				d->backing = HU_BACKING_PRIVATE;
				free(d->why);
				d->why = strdup("discard-data=on: QEMU drops this RAM when it quits");
			}
		} else if (streq(d->type, "memory-backend-memfd") && d->share) {
			d->backing = HU_BACKING_VOLATILE;
			d->why = strdup("memfd: lives only as long as the QEMU process");
		} else {
			d->backing = HU_BACKING_PRIVATE;
			d->why = strdup(d->share ? "shared anonymous memory" : "anonymous memory");
		}
	}
	return 0;
}

static bool in_strv(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (streq(v[i], s))
			return true;
	return false;
}

/* Does argv hand backend ID to a device or NUMA node (memdev=ID, or JSON
 * "memdev":"ID")? Loose on purpose: a false yes only keeps a backend. */
static bool argv_names_memdev(const struct hu_vm *vm, const char *id)
{
	size_t n = strlen(id);

	for (size_t i = 1; i < vm->argc; i++) {
		const char *a = vm->argv[i], *p;

		if (!strstr(a, "memdev"))
			continue;
		for (p = strstr(a, id); p; p = strstr(p + 1, id)) {
			char before = p > a ? p[-1] : ',', after = p[n];

			if ((before == '=' || before == '"' || before == ',') &&
			    (after == ',' || after == '"' || after == '\0'))
				return true;
		}
	}
	return false;
}

/* A backend the guest does not use holds no guest RAM and is not part of
 * the migration (QEMU registers a backend's RAM when a machine, NUMA node or
 * device takes it): libvirt's own pc.ram, say, when <qemu:commandline> gives
 * the machine a file-backed one with -machine memory-backend=. Only a
 * backend of the command line proven unused is left out: the machine names
 * another one, no memory device has it and argv hands it to nothing. One
 * added at run time stays, for check_replayable to block: the restored
 * QEMU would not have it. */
static int drop_unused_memdevs(struct hu_vm *vm, struct hu_qmp *q)
{
	_cleanup_json_ json_object *mb = NULL, *mdevs = NULL;
	const char *machine_backend;
	size_t kept = 0;

	if (hu_qmp_execute(q, "qom-get",
			   json_tokener_parse("{\"path\":\"/machine\",\"property\":\"memory-backend\"}"), &mb,
			   NULL) < 0 ||
	    !json_object_is_type(mb, json_type_string))
		return 0; /* cannot tell: keep them all */
	machine_backend = json_object_get_string(mb);
	if (strncmp(machine_backend, "/objects/", 9) != 0)
		return 0; /* NUMA nodes or no backend: keep them all */
	machine_backend += 9;
	if (hu_qmp_execute(q, "query-memory-devices", NULL, &mdevs, NULL) < 0 ||
	    !json_object_is_type(mdevs, json_type_array))
		return 0;
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];
		bool used = streq(d->id, machine_backend) || argv_names_memdev(vm, d->id) ||
			    !in_strv(vm->ai.object_ids, vm->ai.n_object_ids, d->id);

		for (size_t j = 0; !used && j < json_object_array_length(mdevs); j++) {
			json_object *data = get_key(json_object_array_get_idx(mdevs, j), "data",
						    json_type_object);
			json_object *md = get_key(data, "memdev", json_type_string);
			const char *p = md ? json_object_get_string(md) : NULL;

			/* one we cannot read: keep everything */
			used = !p || (strncmp(p, "/objects/", 9) == 0 && streq(p + 9, d->id));
		}
		if (used) {
			if (kept != i) {
				vm->memdevs[kept] = *d;
				*d = (struct hu_memdev){};
			}
			kept++;
			continue;
		}
		hu_dbg(vm->ctx, vm->name, "memory backend %s is not used by the guest: left out", d->id);
		hu_memdev_clear(d);
	}
	vm->n_memdevs = kept;
	return 0;
}

static int query_disks(struct hu_vm *vm, struct hu_qmp *q)
{
	_cleanup_json_ json_object *nodes = NULL;
	int r = hu_qmp_execute(q, "query-named-block-nodes", json_tokener_parse("{\"flat\":true}"), &nodes,
			       NULL);

	if (r < 0)
		return r;
	if (!json_object_is_type(nodes, json_type_array))
		return -EPROTO;
	for (size_t i = 0; i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i), *drv, *file;
		struct hu_disk *nd;
		const char *d;

		if (!(drv = get_key(n, "drv", json_type_string)) ||
		    !(file = get_key(n, "file", json_type_string)))
			continue;
		d = json_object_get_string(drv);
		/* The protocol nodes are the host files the guest's disks live in. */
		if (!streq(d, "file") && !streq(d, "host_device"))
			continue;
		if (vm->n_disks >= HU_MAX_DISKS)
			return -E2BIG;
		nd = realloc(vm->disks, (vm->n_disks + 1) * sizeof(*nd));
		if (!nd)
			return -ENOMEM;
		vm->disks = nd;
		memset(&nd[vm->n_disks], 0, sizeof(*nd));
		nd[vm->n_disks].path = strndup(json_object_get_string(file), PATH_MAX);
		if (!nd[vm->n_disks++].path)
			return -ENOMEM;
	}
	return 0;
}

/* Restore replays argv (and the config files it names): what was handed
 * over as a descriptor, or added at run time over QMP, would be missing
 * from the new QEMU and the saved state could not be loaded — after the
 * old QEMU quit. Block it now. */
static int check_replayable(struct hu_vm *vm, struct hu_qmp *q)
{
	static const char *const default_ram_ids[] = { "pc.ram", "ram", "mach-virt.ram" };
	_cleanup_json_ json_object *periph = NULL;
	int r;

	/* A manager passes its descriptors again when it starts the VM. */
	if (vm->ai.passes_fd && !vm->mgr)
		hu_strv_pushf(&vm->blockers, &vm->n_blockers,
			      "argv passes a file descriptor (%s): restore cannot pass it again",
			      vm->ai.passes_fd);
	/* What the files create is unknown: their blocker (discover_one) says
	 * why, not one "hot-plugged" per device they define. */
	if (vm->configs_error)
		return 0;
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		const struct hu_memdev *d = &vm->memdevs[i];
		bool dflt = false;

		for (size_t k = 0; k < ARRAY_SIZE(default_ram_ids); k++)
			dflt = dflt ||
			       (streq(d->id, default_ram_ids[k]) && streq(d->type, "memory-backend-ram"));
		if (!dflt && !in_strv(vm->ai.object_ids, vm->ai.n_object_ids, d->id))
			hu_strv_pushf(&vm->blockers, &vm->n_blockers,
				      "memory backend '%s' was added at run time, not on the command line",
				      d->id);
	}
	r = hu_qmp_execute(q, "qom-list", json_tokener_parse("{\"path\":\"/machine/peripheral\"}"), &periph,
			   NULL);
	if (r < 0)
		return r;
	if (!json_object_is_type(periph, json_type_array))
		return -EPROTO;
	for (size_t i = 0; i < json_object_array_length(periph) && i < 1024; i++) {
		json_object *e = json_object_array_get_idx(periph, i), *n, *t;

		if (!(n = get_key(e, "name", json_type_string)) ||
		    !(t = get_key(e, "type", json_type_string)) ||
		    strncmp(json_object_get_string(t), "child<", 6) != 0)
			continue;
		if (!in_strv(vm->ai.device_ids, vm->ai.n_device_ids, json_object_get_string(n)))
			hu_strv_pushf(&vm->blockers, &vm->n_blockers,
				      "device '%.64s' was hot-plugged, not on the command line",
				      json_object_get_string(n));
	}
	return 0;
}

static bool cap_state(json_object *caps, const char *name)
{
	for (size_t i = 0; caps && i < json_object_array_length(caps); i++) {
		json_object *c = json_object_array_get_idx(caps, i), *n, *s;

		if ((n = get_key(c, "capability", json_type_string)) &&
		    streq(json_object_get_string(n), name) && (s = get_key(c, "state", json_type_boolean)))
			return json_object_get_boolean(s);
	}
	return false;
}

/* Has the guest opened its agent port? A virtserialport's frontend-open
 * follows the guest's open of the port, which only a running agent does:
 * closed means no agent can answer, known without asking it (and without
 * holding the socket that the host's own agent clients use). Anything else
 * is left for hu_qga_ping_all to ask. */
static enum hu_agent agent_port(struct hu_vm *vm, struct hu_qmp *q)
{
	_cleanup_json_ json_object *devs = NULL;

	if (!vm->ai.qga_path)
		return HU_AGENT_NONE;
	if (!vm->ai.qga_id || hu_qmp_execute(q, "query-chardev", NULL, &devs, NULL) < 0 ||
	    !json_object_is_type(devs, json_type_array))
		return HU_AGENT_UNKNOWN;
	for (size_t i = 0; i < json_object_array_length(devs) && i < 1024; i++) {
		json_object *d = json_object_array_get_idx(devs, i), *l, *o;

		if ((l = get_key(d, "label", json_type_string)) &&
		    streq(json_object_get_string(l), vm->ai.qga_id) &&
		    (o = get_key(d, "frontend-open", json_type_boolean)))
			return json_object_get_boolean(o) ? HU_AGENT_UNKNOWN : HU_AGENT_CLOSED;
	}
	return HU_AGENT_UNKNOWN;
}

/* Ask QEMU what it is; problems become blockers, not failures. */
int hu_vm_query(struct hu_vm *vm, struct hu_qmp *q)
{
	_cleanup_json_ json_object *caps = NULL, *params = NULL;
	static const char *const bad_caps[] = { "postcopy-ram", "background-snapshot", "x-colo" };
	json_object *v;
	int r;

	free(vm->qemu_version);
	vm->qemu_version = strdup(hu_qmp_greeting_version(q) ?: "unknown");
	free(vm->runstate);
	vm->runstate = NULL;
	r = hu_qmp_query_status(q, &vm->runstate);
	if (r < 0)
		return r;
	r = hu_qmp_execute(q, "query-migrate-capabilities", NULL, &caps, NULL);
	if (r < 0)
		return r;
	if (!json_object_is_type(caps, json_type_array))
		return -EPROTO;
	for (size_t i = 0; i < ARRAY_SIZE(bad_caps); i++)
		if (cap_state(caps, bad_caps[i]))
			hu_strv_pushf(&vm->blockers, &vm->n_blockers, "migration capability %s is on",
				      bad_caps[i]);
	r = hu_qmp_execute(q, "query-migrate-parameters", NULL, &params, NULL);
	if (r < 0)
		return r;
	if (!get_key(params, "mode", json_type_string))
		hu_strv_pushf(&vm->blockers, &vm->n_blockers,
			      "QEMU %s has no cpr-reboot mode (needs 8.2 or later)", vm->qemu_version);
	v = get_key(params, "max-bandwidth", json_type_int);
	vm->max_bandwidth_before = v ? json_object_get_int64(v) : 0;
	r = query_memdevs(vm, q);
	if (r < 0)
		return r;
	r = drop_unused_memdevs(vm, q);
	if (r < 0)
		return r;
	r = check_replayable(vm, q);
	if (r < 0)
		return r;
	if (vm->ai.qga_path) {
		_cleanup_json_ json_object *mach = NULL;
		json_object *w;

		vm->agent = agent_port(vm, q);
		if (hu_qmp_execute(q, "query-current-machine", NULL, &mach, NULL) >= 0 &&
		    (w = get_key(mach, "wakeup-suspend-support", json_type_boolean)))
			vm->wakeup_ok = json_object_get_boolean(w);
	}
	return query_disks(vm, q);
}

struct discover_job {
	struct hu_ctx *ctx;
	struct hu_vm_list *list;
};

static void query_one(struct discover_job *job, struct hu_vm *vm)
{
	struct hu_qmp *q = NULL;
	int r;

	hu_manager_claim(vm);
	if (vm->mgr) {
		_cleanup_free_ char *why = NULL;

		r = hu_manager_monitor(vm, job->ctx->qmp_timeout_ms, &q, &why);
		if (r < 0) {
			hu_strv_pushf(&vm->blockers, &vm->n_blockers, "%s domain %s: %s", hu_manager_name(vm),
				      vm->ai.name, why ?: hu_qmp_strerror(r));
			return;
		}
	} else if (vm->n_blockers) {
		return; /* a manager runs it, and we cannot drive that one */
	} else if (!vm->ai.qmp_path) {
		hu_strv_pushf(&vm->blockers, &vm->n_blockers, "QMP unreachable: %s", vm->ai.qmp_error);
		return;
	} else {
		r = hu_qmp_connect(vm->ai.qmp_path, job->ctx->qmp_timeout_ms, &q);
		if (r < 0) {
			hu_strv_pushf(&vm->blockers, &vm->n_blockers, "QMP unreachable at %s: %s%s",
				      vm->ai.qmp_path, hu_qmp_strerror(r),
				      r == -ETIMEDOUT ? " (monitor busy with another client?)" : "");
			return;
		}
	}
	r = hu_vm_query(vm, q);
	if (r < 0) {
		hu_strv_pushf(&vm->blockers, &vm->n_blockers, "QMP query failed at %s: %s",
			      vm->ai.qmp_path ?: hu_manager_name(vm), hu_qmp_strerror(r));
		hu_qmp_close(q);
		return;
	}
	vm->qmp_ok = true;
	/* Kept for a checkpoint in the same run; closed with the list. */
	vm->qmp = q;
}

static void discover_one(size_t i, void *data)
{
	struct discover_job *job = data;
	struct hu_vm *vm = job->list->vms[i];

	query_one(job, vm);
	/* Whether QEMU answered or not: restore would read these files again. */
	if (vm->configs_error)
		hu_strv_pushf(&vm->blockers, &vm->n_blockers, "cannot read %s", vm->configs_error);
}

static int cmp_vm(const void *a, const void *b)
{
	const struct hu_vm *x = *(struct hu_vm *const *)a, *y = *(struct hu_vm *const *)b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->pid > y->pid) - (x->pid < y->pid);
}

struct seen {
	pid_t pid;
	uid_t uid;
	size_t of_uid; /* how many qemu-system-* processes this uid runs */
	char *exe;
};

static int cmp_seen_uid(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return x->uid != y->uid ? (x->uid > y->uid) - (x->uid < y->uid)
				: (x->pid > y->pid) - (x->pid < y->pid);
}

/* Users with fewer QEMUs first: however many processes one user starts,
 * they cannot keep another user's QEMUs from being examined. */
static int cmp_seen_share(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	if (x->of_uid != y->of_uid)
		return (x->of_uid > y->of_uid) - (x->of_uid < y->of_uid);
	return cmp_seen_uid(a, b);
}

/* Every qemu-system-* process (pid, exe, uid), at most HU_MAX_SCANNED. */
static int list_qemus(struct hu_ctx *ctx, struct seen **ret, size_t *ret_n, size_t *ret_unlisted)
{
	struct seen *all = NULL;
	size_t n = 0, unlisted = 0;
	DIR *d = opendir(ctx->proc_root);
	struct dirent *de;
	int r = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)) && r >= 0) {
		_cleanup_free_ char *base = NULL;
		char *end, *exe = NULL;
		long pid = strtol(de->d_name, &end, 10);
		struct stat st;
		struct seen *na;

		if (*end || pid <= 0 || pid == getpid())
			continue;
		if (asprintf(&base, "%s/%ld", ctx->proc_root, pid) < 0) {
			r = -ENOMEM;
			break;
		}
		if (read_qemu_exe(base, &exe) < 0 || stat(base, &st) < 0) {
			free(exe);
			continue; /* gone, or not a QEMU: not ours to judge */
		}
		if (n >= HU_MAX_SCANNED) {
			free(exe);
			unlisted++;
			continue;
		}
		na = realloc(all, (n + 1) * sizeof(*all));
		if (!na) {
			free(exe);
			r = -ENOMEM;
			break;
		}
		all = na;
		all[n++] = (struct seen){ .pid = (pid_t)pid, .uid = st.st_uid, .exe = exe };
	}
	closedir(d);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(all[i].exe);
		free(all);
		return r;
	}
	*ret = all;
	*ret_n = n;
	*ret_unlisted = unlisted;
	return 0;
}

/* Every qemu-system-* process, from /proc only (no QMP). Each is judged on
 * its own: one we do not examine (too large, or past HU_MAX_VMS of them,
 * the users with the most taking the cut) is a skipped record, past
 * HU_MAX_SCANNED only counted; none of that fails the scan. */
int hu_scan_processes(struct hu_ctx *ctx, struct hu_vm_list **ret)
{
	_cleanup_vm_list_ struct hu_vm_list *list = calloc(1, sizeof(*list));
	struct seen *all = NULL;
	size_t n = 0, examined = 0;
	int r;

	if (!list)
		return -ENOMEM;
	r = list_qemus(ctx, &all, &n, &list->n_unlisted);
	if (r < 0)
		return r;
	if (n > 1) {
		qsort(all, n, sizeof(*all), cmp_seen_uid);
		for (size_t i = 0, j; i < n; i = j) {
			for (j = i; j < n && all[j].uid == all[i].uid; j++)
				;
			for (size_t k = i; k < j; k++)
				all[k].of_uid = j - i;
		}
		qsort(all, n, sizeof(*all), cmp_seen_share);
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *base = NULL;
		struct hu_vm *vm = NULL;

		if (r >= 0 && asprintf(&base, "%s/%d", ctx->proc_root, (int)all[i].pid) < 0)
			r = -ENOMEM;
		if (r >= 0 && examined < HU_MAX_VMS) {
			r = read_process(ctx, all[i].pid, &vm);
			examined += r >= 0;
		} else if (r >= 0) {
			r = skipped_record(
				ctx, all[i].pid, TAKE_PTR(all[i].exe), base,
				"more than " HU_STR(HU_MAX_VMS) " qemu-system-* processes on the host", &vm);
		}
		free(all[i].exe);
		if (r < 0 && r != -ENOMEM) {
			r = 0; /* gone, or no QEMU any more */
			continue;
		}
		if (r >= 0) {
			r = hu_vm_list_add(list, vm);
			if (r < 0)
				hu_vm_free(vm);
		}
	}
	free(all);
	if (r >= 0 && list->n_unlisted && list->n)
		r = hu_strv_pushf(&list->vms[list->n - 1]->blockers, &list->vms[list->n - 1]->n_blockers,
				  "and %zu more qemu-system-* processes, not even listed", list->n_unlisted);
	if (r < 0)
		return r;
	if (list->n > 1) /* with no QEMU, vms is NULL: qsort's argument must not be */
		qsort(list->vms, list->n, sizeof(*list->vms), cmp_vm);
	*ret = TAKE_PTR(list);
	return 0;
}

int hu_discover(struct hu_ctx *ctx, const struct hu_options *opts, struct hu_vm_list **ret)
{
	_cleanup_vm_list_ struct hu_vm_list *list = NULL;
	struct discover_job job;
	int r;

	hu_clear_error(ctx);
	r = hu_scan_processes(ctx, &list);
	if (r < 0)
		return hu_fail(ctx, r, "cannot list the processes in %s: %s", ctx->proc_root, strerror(-r));
	if (opts && opts->only_vms) {
		for (const char *const *n = opts->only_vms; *n; n++) {
			bool found = false;

			for (size_t i = 0; i < list->n; i++)
				found = found || streq(list->vms[i]->name, *n);
			if (!found)
				return hu_fail(ctx, -ENOENT, "%s: no QEMU process with this name", *n);
		}
		for (size_t i = 0; i < list->n;) {
			bool keep = false;

			for (const char *const *n = opts->only_vms; *n; n++)
				keep = keep || streq(list->vms[i]->name, *n);
			if (keep) {
				i++;
				continue;
			}
			hu_vm_free(list->vms[i]);
			memmove(list->vms + i, list->vms + i + 1, (list->n - i - 1) * sizeof(*list->vms));
			list->n--;
		}
	}
	hu_info(ctx, NULL, "found %zu QEMU process%s", list->n, list->n == 1 ? "" : "es");
	job.ctx = ctx;
	job.list = list;
	hu_parallel_for(list->n, ctx->jobs, discover_one, &job);
	/* All agents at once, whatever --jobs says: a silent one costs its
	 * deadline once for the whole host, not once per VM. */
	r = hu_qga_ping_all(list->vms, list->n, HU_AGENT_PING_MS);
	if (r < 0)
		return hu_fail(ctx, r, "asking the guest agents: %s", strerror(-r));
	*ret = TAKE_PTR(list);
	return 0;
}
