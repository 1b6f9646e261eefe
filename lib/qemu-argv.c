/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading a QEMU command line from /proc (untrusted input): which options
 * take an argument, QEMU's "implied,key=value" syntax with ",," escapes and
 * the JSON form, and the facts host-upgrade needs (QMP endpoint, name, agent
 * chardev, memory files, VFIO, -daemonize).
 */
#include <stdio.h>
#include <sys/un.h>
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

/* Nested objects and arrays as dotted keys ("addr.path", "hostfwd.0.str"),
 * as QEMU's keyval writes them; a few levels deep at most. */
static int opts_add_json(struct hu_opts *ret, const char *prefix, json_object *val, unsigned depth)
{
	_cleanup_free_ char *key = NULL;
	const char *v;
	int r = 0;

	switch (json_object_get_type(val)) {
	case json_type_boolean: v = json_object_get_boolean(val) ? "on" : "off"; break;
	case json_type_string:
	case json_type_int:
	case json_type_double: v = json_object_get_string(val); break;
	case json_type_object:
		if (depth >= 4)
			return 0;
		json_object_object_foreach(val, k, sub) {
			free(key);
			key = NULL;
			if ((prefix ? asprintf(&key, "%s.%s", prefix, k) : asprintf(&key, "%s", k)) < 0)
				return -ENOMEM;
			r = opts_add_json(ret, key, sub, depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	case json_type_array:
		if (depth >= 4 || !prefix)
			return 0;
		for (size_t i = 0; i < json_object_array_length(val); i++) {
			free(key);
			key = NULL;
			if (asprintf(&key, "%s.%zu", prefix, i) < 0)
				return -ENOMEM;
			r = opts_add_json(ret, key, json_object_array_get_idx(val, i), depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	default: return 0;
	}
	return prefix ? opts_add(ret, strdup(prefix), strdup(v)) : -EINVAL;
}

static int opts_parse_json(const char *s, struct hu_opts *ret)
{
	_cleanup_json_ json_object *o = json_tokener_parse(s);

	if (!o || !json_object_is_type(o, json_type_object))
		return -EINVAL;
	return opts_add_json(ret, NULL, o, 0);
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
	hu_strv_free(info->listen_paths, info->n_listen_paths);
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

/* A unix socket path QEMU binds: kept once, at most HU_MAX_LISTEN_PATHS.
 * One longer than sun_path cannot have been bound. */
static int add_listen_path(struct hu_argv_info *info, const char *path)
{
	if (!path || !path[0] || strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return 0;
	for (size_t i = 0; i < info->n_listen_paths; i++)
		if (streq(info->listen_paths[i], path))
			return 0;
	if (info->n_listen_paths >= HU_MAX_LISTEN_PATHS) {
		info->listen_paths_over = true;
		return 0;
	}
	return hu_strv_push(&info->listen_paths, &info->n_listen_paths, path);
}

static bool has_prefix(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

/* A chardev spec of -serial, -monitor, -qmp, -gdb ... ("unix:PATH,server=on",
 * "tcp:HOST:PORT,server"), parsed with the implied key "backend": what it
 * binds. -gdb makes every tcp: spec a server. */
static int chardev_spec_binds(struct hu_argv_info *info, const struct hu_opts *o, bool gdb)
{
	const char *b = hu_opts_get(o, "backend");
	bool server = is_on(hu_opts_get(o, "server"));

	if (has_prefix(b, "tcp:") && (server || gdb))
		info->once |= HU_ONCE_PORT;
	else if ((has_prefix(b, "telnet:") || has_prefix(b, "tn3270:") || has_prefix(b, "websocket:")) &&
		 server)
		info->once |= HU_ONCE_PORT;
	else if (has_prefix(b, "unix:") && server)
		return add_listen_path(info, b + 5);
	else if (!b && server)
		return add_listen_path(info, hu_opts_get(o, "unix:path"));
	return 0;
}

/* -chardev socket,...,server=on: a unix path (not an abstract one) or a TCP port. */
static int chardev_binds(struct hu_argv_info *info, const struct hu_opts *o)
{
	if (!streq(hu_opts_get(o, "backend") ?: "", "socket") || !is_on(hu_opts_get(o, "server")) ||
	    hu_opts_get(o, "fd"))
		return 0;
	if (hu_opts_get(o, "path"))
		return is_on(hu_opts_get(o, "abstract")) ? 0 : add_listen_path(info, hu_opts_get(o, "path"));
	if (hu_opts_get(o, "port"))
		info->once |= HU_ONCE_PORT;
	return 0;
}

/* -vnc DISPLAY / -display vnc=DISPLAY: "unix:PATH", "none", else a TCP port. */
static int vnc_binds(struct hu_argv_info *info, const char *display, const struct hu_opts *o)
{
	const char *ws = hu_opts_get(o, "websocket");

	if (ws && !streq(ws, "off"))
		info->once |= HU_ONCE_PORT;
	if (!display || streq(display, "none"))
		return 0;
	if (has_prefix(display, "unix:"))
		return add_listen_path(info, display + 5);
	info->once |= HU_ONCE_PORT;
	return 0;
}

static bool has_key_prefix(const struct hu_opts *o, const char *prefix)
{
	for (size_t i = 0; i < o->n; i++)
		if (has_prefix(o->kv[i].key, prefix))
			return true;
	return false;
}

/* -netdev, -nic, -net (the implied key "type", or JSON, or a [netdev]
 * section): what a second QEMU cannot open, and the unix paths it binds. */
static int netdev_binds(struct hu_argv_info *info, const struct hu_opts *o)
{
	const char *t = hu_opts_get(o, "type") ?: "";

	if (streq(t, "tap") || streq(t, "bridge"))
		info->once |= HU_ONCE_TAP;
	else if (streq(t, "vhost-user"))
		info->once |= HU_ONCE_BACKEND;
	else if (streq(t, "vhost-vdpa") || streq(t, "af-xdp"))
		info->once |= HU_ONCE_HOST_DEV;
	else if (streq(t, "user") && has_key_prefix(o, "hostfwd"))
		info->once |= HU_ONCE_PORT;
	else if (streq(t, "socket") && hu_opts_get(o, "listen"))
		info->once |= HU_ONCE_PORT;
	else if (streq(t, "stream") && is_on(hu_opts_get(o, "server")) &&
		 streq(hu_opts_get(o, "addr.type") ?: "", "unix") && !is_on(hu_opts_get(o, "addr.abstract")))
		return add_listen_path(info, hu_opts_get(o, "addr.path"));
	else if (streq(t, "dgram") && streq(hu_opts_get(o, "local.type") ?: "", "unix"))
		return add_listen_path(info, hu_opts_get(o, "local.path"));
	return 0;
}

static void device_once(struct hu_argv_info *info, const char *drv)
{
	if (has_prefix(drv, "vfio-"))
		info->has_vfio = true;
	else if (has_prefix(drv, "vhost-user"))
		info->once |= HU_ONCE_BACKEND;
	else if (has_prefix(drv, "vhost-") || streq(drv ?: "", "usb-host") ||
		 streq(drv ?: "", "u2f-passthru"))
		info->once |= HU_ONCE_HOST_DEV; /* vhost-scsi, vhost-vsock, vhost-vdpa-device */
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
			if (streq(opt, "s"))
				info.once |= HU_ONCE_PORT; /* -gdb tcp::1234 */
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
			if (r >= 0)
				r = chardev_spec_binds(&info, &o, false);
			if (r >= 0 && !info.qmp_path) {
				_cleanup_free_ char *err = NULL;

				r = unix_server_path(&o, "backend", &info.qmp_path, &err);
				if (err && !qmp_err)
					qmp_err = TAKE_PTR(err);
			}
		} else if (streq(opt, "chardev")) {
			r = hu_opts_parse(val, "backend", &o);
			if (r >= 0)
				r = chardev_binds(&info, &o);
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
			device_once(&info, drv);
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
		} else if (streq(opt, "serial") || streq(opt, "parallel") || streq(opt, "monitor") ||
			   streq(opt, "debugcon") || streq(opt, "gdb")) {
			r = hu_opts_parse(val, "backend", &o);
			if (r >= 0)
				r = chardev_spec_binds(&info, &o, streq(opt, "gdb"));
		} else if (streq(opt, "vnc")) {
			r = hu_opts_parse(val, "vnc", &o);
			if (r >= 0)
				r = vnc_binds(&info, hu_opts_get(&o, "vnc"), &o);
		} else if (streq(opt, "display")) {
			r = hu_opts_parse(val, "type", &o);
			if (r >= 0 && hu_opts_get(&o, "vnc"))
				r = vnc_binds(&info, hu_opts_get(&o, "vnc"), &o);
		} else if (streq(opt, "netdev") || streq(opt, "nic") || streq(opt, "net")) {
			r = hu_opts_parse(val, "type", &o);
			if (r >= 0)
				r = netdev_binds(&info, &o);
		} else if (streq(opt, "tpmdev")) {
			r = hu_opts_parse(val, "type", &o);
			if (r >= 0 && streq(hu_opts_get(&o, "type") ?: "", "passthrough"))
				info.once |= HU_ONCE_HOST_DEV;
			else if (r >= 0 && streq(hu_opts_get(&o, "type") ?: "", "emulator"))
				info.once |= HU_ONCE_BACKEND;
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
		} else if (streq(opt, "machine") || streq(opt, "M")) {
			/* the last one that says it wins, as in QEMU */
			r = hu_opts_parse(val, "type", &o);
			if (r >= 0 && hu_opts_get(&o, "aux-ram-share"))
				info.aux_ram_share = is_on(hu_opts_get(&o, "aux-ram-share"));
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
