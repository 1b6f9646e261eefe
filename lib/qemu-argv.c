/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading a QEMU command line from /proc (untrusted input): which options
 * take an argument, QEMU's "implied,key=value" syntax with ",," escapes and
 * the JSON form, and the facts host-upgrade needs (QMP endpoint, name, agent
 * chardev, memory files, VFIO, -daemonize).
 */
#include <stdio.h>
#include "hu-private.h"

/* QEMU options without an argument (qemu-options.hx entries without
 * HAS_ARG); every other option consumes the next argv element. */
static const char *const flag_options[] = {
	"S",
	"s",
	"daemonize",
	"nographic",
	"no-reboot",
	"no-shutdown",
	"enable-kvm",
	"nodefaults",
	"snapshot",
	"no-user-config",
	"full-screen",
	"no-hpet",
	"no-acpi",
	"usb",
	"preconfig",
	"only-migratable",
	"enable-sync-profile",
	"no-fd-bootchk",
	"win2k-hack",
	"rtc-td-hack",
	"no-quit",
	"version",
	"help",
	"h",
	"semihosting",
	"old-param",
	"alt-grab",
	"ctrl-grab",
	"no-frame",
	"xen-attach",
	"curses",
	"portrait",
	"enable-fips",
	"nouserconfig",
	"no-kvm",
	"no-kvm-irqchip",
	"no-kvm-pit",
	"no-kvm-pit-reinjection",
	"singlestep",
	"one-insn-per-tb",
	"enable-nesting",
	"show-cursor",
	"mem-prealloc",
	"vga-none",
	"hpet-none",
	"perfmap",
	"jitdump",
	"audio-help",
	"xen-domid-restrict",
};

bool hu_qemu_option_takes_arg(const char *opt)
{
	for (size_t i = 0; i < ARRAY_SIZE(flag_options); i++)
		if (streq(opt, flag_options[i]))
			return false;
	return true;
}

const char *hu_qemu_option_name(const char *arg)
{
	if (arg[0] != '-' || arg[1] == '\0')
		return NULL;
	arg++;
	if (arg[0] == '-')
		arg++;
	return arg;
}

void hu_opts_clear(struct hu_opts *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->kv[i].key);
		free(o->kv[i].value);
	}
	free(o->kv);
	o->kv = NULL;
	o->n = 0;
}

static int opts_add(struct hu_opts *o, char *key, char *value)
{
	struct hu_kv *nkv;

	if (!key || !value)
		goto nomem;
	if (o->n >= 256)
		goto toomany;
	nkv = realloc(o->kv, (o->n + 1) * sizeof(*nkv));
	if (!nkv)
		goto nomem;
	o->kv = nkv;
	o->kv[o->n].key = key;
	o->kv[o->n].value = value;
	o->n++;
	return 0;
toomany:
	free(key);
	free(value);
	return -E2BIG;
nomem:
	free(key);
	free(value);
	return -ENOMEM;
}

const char *hu_opts_get(const struct hu_opts *o, const char *key)
{
	/* The last occurrence wins, as in QEMU. */
	for (size_t i = o->n; i > 0; i--)
		if (streq(o->kv[i - 1].key, key))
			return o->kv[i - 1].value;
	return NULL;
}

static int opts_parse_json(const char *s, struct hu_opts *ret)
{
	_cleanup_json_ json_object *o = json_tokener_parse(s);
	int r;

	if (!o || !json_object_is_type(o, json_type_object))
		return -EINVAL;
	json_object_object_foreach(o, key, val) {
		const char *v;

		switch (json_object_get_type(val)) {
		case json_type_boolean: v = json_object_get_boolean(val) ? "on" : "off"; break;
		case json_type_string:
		case json_type_int:
		case json_type_double: v = json_object_get_string(val); break;
		default: continue; /* nested values are not needed */
		}
		r = opts_add(ret, strdup(key), strdup(v));
		if (r < 0)
			return r;
	}
	return 0;
}

int hu_opts_parse(const char *s, const char *implied_key, struct hu_opts *ret)
{
	struct hu_opts o = {};
	const char *p = s;
	bool first = true;
	int r;

	if (s[0] == '{') {
		r = opts_parse_json(s, &o);
		if (r < 0) {
			hu_opts_clear(&o);
			return r;
		}
		*ret = o;
		return 0;
	}
	while (*p) {
		_cleanup_free_ char *tok = malloc(strlen(p) + 1);
		size_t n = 0;
		char *eq;

		if (!tok) {
			hu_opts_clear(&o);
			return -ENOMEM;
		}
		/* One element up to a single ',', with ",," meaning ','. */
		for (; *p; p++) {
			if (*p == ',') {
				if (p[1] == ',') {
					tok[n++] = ',';
					p++;
					continue;
				}
				break;
			}
			tok[n++] = *p;
		}
		tok[n] = '\0';
		if (*p == ',')
			p++;
		eq = strchr(tok, '=');
		if (eq) {
			*eq = '\0';
			r = opts_add(&o, strdup(tok), strdup(eq + 1));
		} else if (first && implied_key) {
			r = opts_add(&o, strdup(implied_key), strdup(tok));
		} else if (strncmp(tok, "no", 2) == 0 && tok[2]) {
			r = opts_add(&o, strdup(tok + 2), strdup("off"));
		} else if (tok[0]) {
			r = opts_add(&o, strdup(tok), strdup("on"));
		} else {
			r = 0;
		}
		if (r < 0) {
			hu_opts_clear(&o);
			return r;
		}
		first = false;
	}
	*ret = o;
	return 0;
}

static bool has_fd_key(const char *val)
{
	static const char *const keys[] = { "fd", "fds", "vhostfd", "vhostfds" };
	struct hu_opts o = {};
	bool found = false;

	if (hu_opts_parse(val, NULL, &o) < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(keys) && !found; i++)
		found = hu_opts_get(&o, keys[i]) != NULL;
	hu_opts_clear(&o);
	return found;
}

static bool is_on(const char *v)
{
	return v && (streq(v, "on") || streq(v, "true") || streq(v, "yes"));
}

struct chardev {
	char *id;
	char *path;
	bool server;
	bool has_fd;
};

void hu_argv_info_clear(struct hu_argv_info *info)
{
	free(info->name);
	free(info->qmp_path);
	free(info->qmp_error);
	free(info->qga_path);
	free(info->qga_id);
	free(info->pidfile);
	free(info->passes_fd);
	free(info->runas);
	free(info->chroot);
	hu_strv_free(info->mem_paths, info->n_mem_paths);
	hu_strv_free(info->object_ids, info->n_object_ids);
	hu_strv_free(info->device_ids, info->n_device_ids);
	memset(info, 0, sizeof(*info));
}

/* The unix socket path of a "unix:PATH,server=on" chardev spec, or why not. */
static int unix_server_path(const struct hu_opts *o, const char *backend_key, char **ret_path,
			    char **ret_error)
{
	const char *b = hu_opts_get(o, backend_key);

	/* "unix:path=PATH,server=on" parses as key "unix:path". */
	const char *keyed = hu_opts_get(o, "unix:path");

	if (!b && keyed && is_on(hu_opts_get(o, "server")))
		return hu_strdup_replace(ret_path, keyed);
	if (!b || strncmp(b, "unix:", 5) != 0 || b[5] == '\0') {
		*ret_error = strdup("QMP endpoint is not a unix socket");
		return 0;
	}
	if (!is_on(hu_opts_get(o, "server"))) {
		*ret_error = strdup("QMP socket is a client, not a server");
		return 0;
	}
	return hu_strdup_replace(ret_path, b + 5);
}

int hu_argv_parse(char *const *argv, size_t argc, struct hu_argv_info *ret)
{
	struct hu_argv_info info = {};
	struct chardev chardevs[64];
	size_t n_chardevs = 0;
	_cleanup_free_ char *control_id = NULL, *agent_id = NULL, *qmp_err = NULL;
	int r = 0;

	for (size_t i = 1; i < argc && r >= 0; i++) {
		const char *opt = hu_qemu_option_name(argv[i]);
		const char *val;
		struct hu_opts o = {};

		if (!opt)
			continue; /* a positional disk image */
		if (!hu_qemu_option_takes_arg(opt)) {
			if (streq(opt, "daemonize"))
				info.daemonize = true;
			continue;
		}
		if (i + 1 >= argc)
			break;
		val = argv[++i];
		/* Descriptors do not exist in the QEMU that restore starts. */
		if (!info.passes_fd &&
		    (streq(opt, "add-fd") || strstr(val, "/dev/fdset/") || has_fd_key(val)) &&
		    asprintf(&info.passes_fd, "-%s %.100s", opt, val) < 0)
			r = -ENOMEM;

		if (streq(opt, "name")) {
			r = hu_opts_parse(val, "guest", &o);
			if (r >= 0 && hu_opts_get(&o, "guest"))
				r = hu_strdup_replace(&info.name, hu_opts_get(&o, "guest"));
		} else if (streq(opt, "qmp") || streq(opt, "qmp-pretty")) {
			r = hu_opts_parse(val, "backend", &o);
			if (r >= 0 && !info.qmp_path) {
				_cleanup_free_ char *err = NULL;

				r = unix_server_path(&o, "backend", &info.qmp_path, &err);
				if (err && !qmp_err)
					qmp_err = TAKE_PTR(err);
			}
		} else if (streq(opt, "chardev")) {
			r = hu_opts_parse(val, "backend", &o);
			if (r >= 0 && n_chardevs < ARRAY_SIZE(chardevs) && hu_opts_get(&o, "id") &&
			    streq(hu_opts_get(&o, "backend") ?: "", "socket")) {
				struct chardev *c = &chardevs[n_chardevs];
				const char *path = hu_opts_get(&o, "path");

				memset(c, 0, sizeof(*c));
				c->id = strdup(hu_opts_get(&o, "id"));
				c->path = path ? strdup(path) : NULL;
				c->server = is_on(hu_opts_get(&o, "server"));
				c->has_fd = hu_opts_get(&o, "fd") != NULL;
				n_chardevs++;
				if (!c->id || (path && !c->path))
					r = -ENOMEM;
			}
		} else if (streq(opt, "mon")) {
			r = hu_opts_parse(val, "chardev", &o);
			if (r >= 0 && !control_id && streq(hu_opts_get(&o, "mode") ?: "", "control") &&
			    hu_opts_get(&o, "chardev"))
				r = hu_strdup_replace(&control_id, hu_opts_get(&o, "chardev"));
		} else if (streq(opt, "device")) {
			r = hu_opts_parse(val, "driver", &o);
			const char *drv = r >= 0 ? hu_opts_get(&o, "driver") : NULL;
			if (drv && strncmp(drv, "vfio-", 5) == 0)
				info.has_vfio = true;
			const char *id = r >= 0 ? hu_opts_get(&o, "id") : NULL;
			if (id && info.n_device_ids < 256 &&
			    hu_strv_push(&info.device_ids, &info.n_device_ids, id) < 0)
				r = -ENOMEM;
			if (drv && streq(drv, "virtserialport") &&
			    streq(hu_opts_get(&o, "name") ?: "", "org.qemu.guest_agent.0") &&
			    hu_opts_get(&o, "chardev"))
				r = hu_strdup_replace(&agent_id, hu_opts_get(&o, "chardev"));
			/* Proxmox's "agent: type=isa": the agent on an ISA serial port
			 * by the chardev qga0 (qemu-server names it so); a serial
			 * port on any other chardev is a console, not an agent. */
			else if (drv && streq(drv, "isa-serial") && !agent_id &&
				 streq(hu_opts_get(&o, "chardev") ?: "", "qga0"))
				r = hu_strdup_replace(&agent_id, "qga0");
		} else if (streq(opt, "object")) {
			r = hu_opts_parse(val, "qom-type", &o);
			const char *mp = r >= 0 ? hu_opts_get(&o, "mem-path") : NULL;
			const char *id = r >= 0 ? hu_opts_get(&o, "id") : NULL;
			if (mp && info.n_mem_paths < HU_MAX_MEMDEVS)
				r = hu_strv_push(&info.mem_paths, &info.n_mem_paths, mp);
			if (r >= 0 && id && info.n_object_ids < 256)
				r = hu_strv_push(&info.object_ids, &info.n_object_ids, id);
		} else if (streq(opt, "runas")) {
			r = hu_strdup_replace(&info.runas, val);
		} else if (streq(opt, "chroot")) {
			r = hu_strdup_replace(&info.chroot, val);
		} else if (streq(opt, "run-with")) {
			r = hu_opts_parse(val, NULL, &o);
			if (r >= 0 && hu_opts_get(&o, "user"))
				r = hu_strdup_replace(&info.runas, hu_opts_get(&o, "user"));
			if (r >= 0 && hu_opts_get(&o, "chroot"))
				r = hu_strdup_replace(&info.chroot, hu_opts_get(&o, "chroot"));
		} else if (streq(opt, "pidfile")) {
			r = hu_strdup_replace(&info.pidfile, val);
		} else if (streq(opt, "incoming")) {
			info.has_incoming = true;
		}
		hu_opts_clear(&o);
		if (r == -EINVAL)
			r = 0; /* an option we cannot read is not ours to judge */
	}

	for (size_t c = 0; c < n_chardevs && r >= 0; c++) {
		if (control_id && !info.qmp_path && streq(chardevs[c].id, control_id)) {
			if (chardevs[c].path && chardevs[c].server)
				r = hu_strdup_replace(&info.qmp_path, chardevs[c].path);
			else if (!qmp_err)
				qmp_err = strdup(
					chardevs[c].has_fd
						? "QMP socket was passed as a file descriptor (managed by another tool?)"
						: "QMP chardev is not a unix socket server");
		}
		if (agent_id && !info.qga_path && streq(chardevs[c].id, agent_id) && chardevs[c].path &&
		    chardevs[c].server) {
			r = hu_strdup_replace(&info.qga_path, chardevs[c].path);
			if (r >= 0)
				r = hu_strdup_replace(&info.qga_id, agent_id);
		}
	}
	for (size_t c = 0; c < n_chardevs; c++) {
		free(chardevs[c].id);
		free(chardevs[c].path);
	}
	if (r >= 0 && !info.qmp_path)
		info.qmp_error =
			qmp_err ? TAKE_PTR(qmp_err)
				: strdup("no QMP monitor on the command line (add -qmp unix:PATH,server=on,wait=off)");
	if (r < 0) {
		hu_argv_info_clear(&info);
		return r;
	}
	*ret = info;
	return 0;
}

int hu_argv_strip_incoming(char *const *argv, size_t argc, char ***ret, size_t *ret_n)
{
	char **out = NULL;
	size_t n = 0;
	int r;

	for (size_t i = 0; i < argc; i++) {
		const char *opt = hu_qemu_option_name(argv[i]);

		if (i > 0 && opt && streq(opt, "incoming")) {
			i++; /* and its value */
			continue;
		}
		r = hu_strv_push(&out, &n, argv[i]);
		if (r < 0) {
			hu_strv_free(out, n);
			return r;
		}
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

/* Was this QEMU started by a restore, waiting for its state? */
bool hu_argv_has_incoming_defer(char *const *argv, size_t argc)
{
	for (size_t i = 1; i + 1 < argc; i++)
		if ((streq(argv[i], "-incoming") || streq(argv[i], "--incoming")) &&
		    streq(argv[i + 1], "defer"))
			return true;
	return false;
}

/* old with QEMU's keyval escape: a ',' in a value is written ",," */
static char *keyval_escape(const char *v)
{
	char *out = malloc(strlen(v) * 2 + 1), *o = out;

	for (; out && *v; v++) {
		*o++ = *v;
		if (*v == ',')
			*o++ = ',';
	}
	if (out)
		*o = '\0';
	return out;
}

/* Every option "mem-path=old": QEMU's keyval takes the last of a repeated
 * key, so replacing only the first would leave the old file in use. */
static char *replace_keyval_mem_path(const char *val, const char *old, const char *new)
{
	_cleanup_free_ char *eold = keyval_escape(old), *enew = keyval_escape(new), *needle = NULL,
			    *out = NULL;
	const char *p = val, *copied = val;
	size_t len = 0;
	bool found = false;
	FILE *f;

	if (!eold || !enew || asprintf(&needle, "mem-path=%s", eold) < 0)
		return NULL;
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	/* At the start of an option (after an unescaped ','), ending one. */
	while ((p = strstr(p, needle))) {
		size_t commas = 0, end = (size_t)(p - val) + strlen(needle);

		for (const char *q = p; q > val && q[-1] == ','; q--)
			commas++;
		if ((p == val || commas % 2 == 1) &&
		    (val[end] == '\0' || (val[end] == ',' && val[end + 1] != ','))) {
			fprintf(f, "%.*smem-path=%s", (int)(p - copied), copied, enew);
			copied = p = val + end;
			found = true;
			continue;
		}
		p++;
	}
	fputs(copied, f);
	if (fclose(f) != 0 || !found)
		return NULL;
	return TAKE_PTR(out);
}

static char *replace_json_mem_path(const char *val, const char *old, const char *new)
{
	_cleanup_json_ json_object *o = json_tokener_parse(val);
	json_object *mp;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "mem-path", &mp) || !json_object_is_type(mp, json_type_string) ||
	    !streq(json_object_get_string(mp), old))
		return NULL;
	json_object_object_add(o, "mem-path", json_object_new_string(new));
	return strdup(
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Point every -object whose mem-path is `old` at `new` (keyval or JSON form).
 * Returns how many were changed. */
int hu_argv_replace_mem_path(char **argv, size_t argc, const char *old, const char *new)
{
	int n = 0;

	for (size_t i = 1; i + 1 < argc; i++) {
		const char *opt = hu_qemu_option_name(argv[i]);
		char *rep;

		if (!opt || !streq(opt, "object"))
			continue;
		i++;
		rep = argv[i][0] == '{' ? replace_json_mem_path(argv[i], old, new)
					: replace_keyval_mem_path(argv[i], old, new);
		if (!rep)
			continue;
		free(argv[i]);
		argv[i] = rep;
		n++;
	}
	return n;
}
