/* SPDX-License-Identifier: GPL-2.0-or-later */
/* host-upgrade plan [--json]: what would happen to every VM, and what blocks it. */
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cmd.h"

static int parse_volatile(struct cli *c, const char *arg)
{
	if (!strcmp(arg, "copy"))
		c->opts.volatile_policy = HU_VOLATILE_COPY;
	else if (!strcmp(arg, "refuse"))
		c->opts.volatile_policy = HU_VOLATILE_REFUSE;
	else
		return -1;
	return 0;
}

static int parse_space_margin(struct cli *c, const char *arg)
{
	uint64_t size;

	if (hu_parse_size(arg, &size) < 0 || size == 0 || size > (1ULL << 40))
		return -1;
	c->opts.space_margin = size;
	return 0;
}

static int parse_suspend_vm(struct cli *c, const char *arg)
{
	if (c->n_suspend >= 64)
		return -1;
	c->suspend[c->n_suspend++] = arg;
	c->opts.suspend_vms = c->suspend;
	return 0;
}

static int parse_suspend_timeout(struct cli *c, const char *arg)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (*end || v == 0 || v > 600)
		return -1;
	c->opts.suspend_timeout_s = (unsigned)v;
	return 0;
}

static int parse_restart(struct cli *c, const char *arg)
{
	if (!strcmp(arg, "auto"))
		c->opts.sequential = false;
	else if (!strcmp(arg, "sequential"))
		c->opts.sequential = true;
	else
		return -1;
	return 0;
}

/* How run --no-reboot restarts the QEMUs; plan takes it to show the same. */
const struct cli_option cli_restart_options[] = {
	CLI_ARG("restart", "auto|sequential", parse_restart,
		"with --no-reboot: start each new QEMU beside the old one where the VM allows (auto, "
		"the default), or quit every old QEMU before its new one starts (sequential)"),
	CLI_END
};

/* What plan decides; checkpoint and run take the same, so that they
 * check what plan showed. */
const struct cli_option cli_plan_options[] = {
	CLI_FLAG("no-reboot", opts.no_reboot,
		 "no kernel reboot follows: RAM on tmpfs, hugetlbfs or memfd may stay in place"),
	CLI_ARG("volatile", "copy|refuse", parse_volatile,
		"such RAM when a reboot follows: copy it into the state file (default), or block"),
	CLI_ARG("space-margin", "SIZE", parse_space_margin,
		"device-state allowance per VM in the free-space check (default 64M)"),
	CLI_FLAG("suspend", opts.suspend_all,
		 "suspend every guest through its agent first (VFIO guests always are)"),
	CLI_ARG("suspend-vm", "NAME", parse_suspend_vm,
		"suspend this guest through its agent first (repeatable)"),
	CLI_ARG("suspend-timeout", "SECONDS", parse_suspend_timeout,
		"how long a guest may take to suspend, 1 to 600 (default 30)"),
	CLI_END
};

int cli_discover_and_plan(struct cli *c, struct hu_vm_list **ret, int *ret_blocked)
{
	struct hu_vm_list *list = NULL;
	int r = hu_discover(c->ctx, &c->opts, &list);

	if (r < 0) {
		/* -ENOENT: a --vm names no QEMU; the library's words name it. */
		cli_fail(c, r, r == -ENOENT ? NULL : "discover", NULL);
		return r;
	}
	r = hu_plan(c->ctx, list, &c->opts);
	if (r < 0) {
		cli_fail(c, r, "plan", NULL);
		hu_vm_list_free(list);
		return r;
	}
	*ret_blocked = r;
	*ret = list;
	return 0;
}

static const char *human(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "BKMGT";
	int u = 0;
	double v = (double)b;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.*f%c", (u && v < 10) ? 1 : 0, v, units[u]);
	return buf;
}

/* The guide to keeping RAM in place: installed beside the binary's prefix
 * (PREFIX/sbin/host-upgrade -> PREFIX/share/doc/host-upgrade/), else the source's. */
static void guide_path(char *buf, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *real;

	snprintf(buf, len, "docs/preparing-a-host.md in host-upgrade's source");
	if (n <= 0)
		return;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return;
	snprintf(slash, sizeof(exe) - (size_t)(slash - exe),
		 "/../share/doc/host-upgrade/preparing-a-host.md");
	real = realpath(exe, NULL);
	if (real && strlen(real) < len)
		snprintf(buf, len, "%s", real);
	free(real);
}

/* Seconds to copy `bytes` at the measured rate; < 0: not measured. */
static double copy_seconds(const struct hu_copy_rate *cr, uint64_t bytes)
{
	return cr->bytes_per_s ? (double)bytes / (double)cr->bytes_per_s : -1;
}

/* Below the table, for VMs whose RAM is copied: how much, about how long,
 * where the rate comes from, and the guide to keeping RAM in place. */
static void print_copy_hints(struct hu_vm_list *list)
{
	const struct hu_copy_rate *cr = hu_vm_list_get_copy_rate(list);
	size_t n = hu_vm_list_count(list), copies = 0;
	char b[16], r[16], guide[PATH_MAX + 64];

	for (size_t i = 0; i < n; i++) {
		struct hu_vm *vm = hu_vm_list_get(list, i);
		uint64_t bytes = hu_vm_get_copy_bytes(vm);
		double s = copy_seconds(cr, bytes);

		if (!hu_vm_get_queried(vm) || bytes == 0)
			continue;
		copies++;
		if (s >= 0)
			printf("%s: %s of RAM copied into the state file, about %.*f s at %s/s\n",
			       hu_vm_get_name(vm), human(bytes, b, sizeof(b)), s < 10 ? 1 : 0, s,
			       human(cr->bytes_per_s, r, sizeof(r)));
		else
			printf("%s: %s of RAM copied into the state file\n", hu_vm_get_name(vm),
			       human(bytes, b, sizeof(b)));
	}
	if (!copies)
		return;
	if (cr->bytes_per_s)
		printf("rate: a %s sample written and flushed in %s by this plan (QEMU's own stream may be slower; "
		       "the restore reads the copy back)\n",
		       human(cr->sample_bytes, b, sizeof(b)), cr->dir);
	else
		printf("rate: not measured in %s: %s\n", cr->dir[0] ? cr->dir : "the state dir", cr->why);
	guide_path(guide, sizeof(guide));
	printf("RAM kept in place is not copied: see %s\n", guide);
}

static json_object *copy_rate_json(struct hu_vm_list *list)
{
	const struct hu_copy_rate *cr = hu_vm_list_get_copy_rate(list);
	json_object *o;
	char guide[PATH_MAX + 64];

	if (!cr->bytes_per_s && !cr->why[0])
		return NULL; /* nothing is copied: nothing measured */
	o = json_object_new_object();
	json_object_object_add(o, "bytes_per_second",
			       cr->bytes_per_s ? json_object_new_uint64(cr->bytes_per_s) : NULL);
	json_object_object_add(o, "source", json_object_new_string(cr->bytes_per_s ? "sample" : "none"));
	json_object_object_add(o, "sample_bytes", json_object_new_uint64(cr->sample_bytes));
	json_object_object_add(o, "dir", json_object_new_string(cr->dir));
	json_object_object_add(o, "why", cr->bytes_per_s ? NULL : json_object_new_string(cr->why));
	guide_path(guide, sizeof(guide));
	json_object_object_add(o, "guide", json_object_new_string(guide));
	return o;
}

/* How run --no-reboot restarts VM: its own way, or sequentially when
 * --restart sequential asked for the old way. */
static const char *restart_of(const struct cli *c, struct hu_vm *vm, const char **ret_why)
{
	const char *how = hu_vm_get_restart(vm, ret_why);

	if (c->opts.sequential && !strcmp(how, "prelaunch")) {
		*ret_why = "asked for (--restart sequential)";
		return "sequential";
	}
	return how;
}

void cli_print_plan(const struct cli *c, struct hu_vm_list *list, bool ok)
{
	size_t n = hu_vm_list_count(list);

	if (c->json) {
		json_object *o = json_object_new_object(), *vms = json_object_new_array();

		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		for (size_t i = 0; i < n; i++) {
			struct hu_vm *vm = hu_vm_list_get(list, i);
			json_object *v = json_object_new_object(), *bl = json_object_new_array();
			char user[64];

			hu_user_name(hu_vm_get_uid(vm), user, sizeof(user));

			json_object_object_add(v, "name", json_object_new_string(hu_vm_get_name(vm)));
			json_object_object_add(v, "pid", json_object_new_int(hu_vm_get_pid(vm)));
			json_object_object_add(v, "manager", json_object_new_string(hu_vm_get_manager(vm)));
			if (hu_vm_get_vmid(vm))
				json_object_object_add(v, "vmid", json_object_new_int64(hu_vm_get_vmid(vm)));
			json_object_object_add(v, "user", json_object_new_string(user));
			json_object_object_add(v, "uid", json_object_new_int64(hu_vm_get_uid(vm)));
			json_object_object_add(
				v, "runas",
				hu_vm_get_runas(vm) ? json_object_new_string(hu_vm_get_runas(vm)) : NULL);
			json_object_object_add(
				v, "skipped",
				hu_vm_get_skipped(vm) ? json_object_new_string(hu_vm_get_skipped(vm)) : NULL);
			json_object_object_add(v, "ram_bytes",
					       json_object_new_uint64(hu_vm_get_ram_bytes(vm)));
			json_object_object_add(v, "ram_backing",
					       !hu_vm_get_queried(vm)
						       ? NULL
						       : json_object_new_string(hu_backing_to_string(
								 hu_vm_get_backing(vm))));
			json_object_object_add(v, "save",
					       !hu_vm_get_queried(vm)
						       ? NULL
						       : json_object_new_string(hu_vm_get_in_place(vm)
											? "in-place"
											: "copy"));
			json_object_object_add(v, "save_bytes",
					       json_object_new_uint64(hu_vm_get_save_bytes(vm)));
			json_object_object_add(
				v, "agent",
				hu_vm_get_agent(vm) == HU_AGENT_UNKNOWN
					? NULL
					: json_object_new_string(hu_agent_to_string(hu_vm_get_agent(vm))));
			json_object_object_add(v, "copy_bytes",
					       json_object_new_uint64(hu_vm_get_copy_bytes(vm)));
			double cs = copy_seconds(hu_vm_list_get_copy_rate(list), hu_vm_get_copy_bytes(vm));
			json_object_object_add(v, "copy_seconds",
					       !hu_vm_get_copy_bytes(vm) ? json_object_new_double(0)
					       : cs < 0			 ? NULL
									 : json_object_new_double(cs));
			json_object_object_add(v, "runstate",
					       hu_vm_get_runstate(vm)
						       ? json_object_new_string(hu_vm_get_runstate(vm))
						       : NULL);
			json_object_object_add(v, "qemu_version",
					       hu_vm_get_qemu_version(vm)
						       ? json_object_new_string(hu_vm_get_qemu_version(vm))
						       : NULL);
			for (size_t b = 0; b < hu_vm_get_n_blockers(vm); b++)
				json_object_array_add(bl, json_object_new_string(hu_vm_get_blocker(vm, b)));
			json_object_object_add(v, "blockers", bl);
			{
				const char *why = NULL, *how = restart_of(c, vm, &why);

				json_object_object_add(v, "restart", json_object_new_string(how));
				json_object_object_add(v, "restart_reason",
						       why ? json_object_new_string(why) : NULL);
				/* How a prelaunch hands the RAM over: cpr-reboot or cpr-transfer. */
				json_object_object_add(
					v, "prelaunch_mode",
					strcmp(how, "prelaunch")
						? NULL
						: json_object_new_string(hu_vm_get_prelaunch_mode(vm)));
			}
			json_object_array_add(vms, v);
		}
		json_object_object_add(o, "vms", vms);
		json_object_object_add(o, "copy_rate", copy_rate_json(list));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
									 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return;
	}
	printf("%-20s %8s %8s %-11s %-9s %9s  %-13s %-10s %s\n", "NAME", "PID", "RAM", "BACKING", "SAVE",
	       "WRITES", "AGENT", "USER", "STATUS");
	for (size_t i = 0; i < n; i++) {
		struct hu_vm *vm = hu_vm_list_get(list, i);
		char ram[16], wr[16];
		size_t nb = hu_vm_get_n_blockers(vm);

		bool q = hu_vm_get_queried(vm);
		/* The manager, when there is one: "ok (libvirt)". */
		const char *mgr = hu_vm_get_manager(vm);
		char st[32];

		char user[64];

		snprintf(st, sizeof(st), "%s%s%s%s", nb ? "blocked" : "ok", strcmp(mgr, "none") ? " (" : "",
			 strcmp(mgr, "none") ? mgr : "", strcmp(mgr, "none") ? ")" : "");
		hu_user_name(hu_vm_get_uid(vm), user, sizeof(user));
		printf("%-20s %8d %8s %-11s %-9s %9s  %-13s %-10s %s%s%s\n", hu_vm_get_name(vm),
		       (int)hu_vm_get_pid(vm), q ? human(hu_vm_get_ram_bytes(vm), ram, sizeof(ram)) : "-",
		       q ? hu_backing_to_string(hu_vm_get_backing(vm)) : "-",
		       q ? (hu_vm_get_in_place(vm) ? "in-place" : "copy") : "-",
		       q ? human(hu_vm_get_save_bytes(vm), wr, sizeof(wr)) : "-",
		       q ? hu_agent_to_string(hu_vm_get_agent(vm)) : "-", user, st, nb ? ": " : "",
		       nb ? hu_vm_get_blocker(vm, 0) : "");
		for (size_t b = 1; b < nb; b++)
			printf("%-20s %8s %8s %-11s %-9s %9s  %-13s %-10s blocked: %s\n", "", "", "", "", "",
			       "", "", "", hu_vm_get_blocker(vm, b));
		if (c->opts.no_reboot && !nb) {
			const char *why = NULL, *how = restart_of(c, vm, &why);
			const char *mode = strcmp(how, "prelaunch") ? NULL : hu_vm_get_prelaunch_mode(vm);

			printf("%-20s restart: %s%s%s%s%s%s\n", "", how, mode ? " (" : "", mode ?: "",
			       mode ? ")" : "", why ? ": " : "", why ?: "");
		}
	}
	print_copy_hints(list);
	printf("%zu VM%s, %s\n", n, n == 1 ? "" : "s", ok ? "ready" : "BLOCKED");
}

static int cmd_plan(struct cli *c)
{
	struct hu_vm_list *list = NULL;
	int blocked = 0, r;

	r = cli_discover_and_plan(c, &list, &blocked);
	if (r < 0)
		return EXIT_BLOCKED;
	cli_print_plan(c, list, blocked == 0);
	hu_vm_list_free(list);
	return blocked ? EXIT_BLOCKED : 0;
}

const struct cli_verb cli_verb_plan = {
	.name = "plan",
	.run = cmd_plan,
	.summary = "preflight every VM; table or --json; exit 1 if blocked",
	.about = "Preflight every QEMU on the host, stopping nothing: its RAM backing (persistent,\n"
		 "volatile or private), how it is saved (in place, or copied into the state file),\n"
		 "how much is written, its guest agent (answering, not-answering, closed: the\n"
		 "guest has not opened the port, or none), the user its QEMU runs as, and what\n"
		 "blocks it; an agent that does not answer blocks only a guest to suspend. A\n"
		 "qemu-system-* process it does not examine (a command line larger than it reads,\n"
		 "or past 1024 of them) is listed as skipped, and blocks. With --no-reboot, how\n"
		 "run restarts each VM: by prelaunch (the new QEMU started beside the old one;\n"
		 "cpr-reboot for RAM in shared files, cpr-transfer for memfd/shm RAM of a QEMU\n"
		 "started with -machine aux-ram-share=on) or sequentially, and why (--json:\n"
		 "restart, restart_reason, prelaunch_mode). Exit 1 when anything blocks.",
	.options = CLI_TABLES(cli_plan_options, cli_restart_options),
};
