/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Migration steps shared by checkpoint (source) and restore (destination):
 * both sides must use the same mode and x-ignore-shared. */
#include <stdio.h>
#include "hu-private.h"

/* Plenty for a file: QEMU's default limit (128 MiB/s) would make a RAM copy
 * crawl. */
#define HU_MAX_BANDWIDTH (1LL << 40)

/* Capabilities that change the stream or cannot be in a cpr-reboot file:
 * forced off on both sides (mapped-ram + x-ignore-shared misparses on 10.0). */
static const char *const forced_off[] = {
	"mapped-ram",  "multifd",	   "postcopy-ram",   "background-snapshot", "x-colo",	     "xbzrle",
	"return-path", "postcopy-preempt", "switchover-ack", "dirty-bitmaps",	    "validate-uuid",
};

static json_object *cap(const char *name, bool on)
{
	json_object *c = json_object_new_object();

	json_object_object_add(c, "capability", json_object_new_string(name));
	json_object_object_add(c, "state", json_object_new_boolean(on));
	return c;
}

/* Set the capabilities in `want` that `have` does not already have
 * (have == NULL: a fresh QEMU, where every capability is off). */
static int apply_caps(struct hu_qmp *q, json_object *want, json_object *have, char **ret_err)
{
	json_object *args = json_object_new_object(), *list = json_object_new_array();

	json_object_object_foreach(want, name, val) {
		json_object *h = NULL;
		bool cur = have && json_object_object_get_ex(have, name, &h) && json_object_get_boolean(h);

		if (json_object_get_boolean(val) != cur)
			json_object_array_add(list, cap(name, json_object_get_boolean(val)));
	}
	if (json_object_array_length(list) == 0) {
		json_object_put(list);
		json_object_put(args);
		return 0;
	}
	json_object_object_add(args, "capabilities", list);
	return hu_qmp_execute(q, "migrate-set-capabilities", args, NULL, ret_err);
}

static int set_params(struct hu_qmp *q, const char *mode, int64_t max_bandwidth, char **ret_err)
{
	json_object *args = json_object_new_object();

	json_object_object_add(args, "mode", json_object_new_string(mode));
	if (max_bandwidth > 0)
		json_object_object_add(args, "max-bandwidth", json_object_new_int64(max_bandwidth));
	return hu_qmp_execute(q, "migrate-set-parameters", args, NULL, ret_err);
}

/* Source side, without changing it: record what the VM had and decide one
 * explicit set, kept in the VM so the destination applies exactly the same
 * (prelaunch sets up its new QEMU with it before the old one's save). */
int hu_migration_plan_source(struct hu_vm *vm, char **ret_err)
{
	_cleanup_json_ json_object *list = NULL;
	json_object *before, *want;
	int r = hu_qmp_execute(vm->qmp, "query-migrate-capabilities", NULL, &list, ret_err);

	if (r < 0)
		return r;
	if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) > 64)
		return -EPROTO;
	before = json_object_new_object();
	want = json_object_new_object();
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *c = json_object_array_get_idx(list, i), *n, *st;
		bool on;

		if (!json_object_object_get_ex(c, "capability", &n) ||
		    !json_object_is_type(n, json_type_string) ||
		    !json_object_object_get_ex(c, "state", &st) ||
		    !json_object_is_type(st, json_type_boolean))
			continue;
		on = json_object_get_boolean(st);
		json_object_object_add(before, json_object_get_string(n), json_object_new_boolean(on));
		for (size_t f = 0; f < ARRAY_SIZE(forced_off); f++)
			if (streq(json_object_get_string(n), forced_off[f]))
				on = false;
		if (streq(json_object_get_string(n), "x-ignore-shared"))
			on = vm->in_place;
		if (streq(json_object_get_string(n), "events"))
			on = true;
		json_object_object_add(want, json_object_get_string(n), json_object_new_boolean(on));
	}
	json_object_put(vm->caps_before);
	json_object_put(vm->caps);
	vm->caps_before = before;
	vm->caps = want;
	return 0;
}

/* Source side: the set hu_migration_plan_source decides, applied. */
int hu_migration_setup_source(struct hu_vm *vm, char **ret_err)
{
	int r = hu_migration_plan_source(vm, ret_err);

	if (r < 0)
		return r;
	r = apply_caps(vm->qmp, vm->caps, vm->caps_before, ret_err);
	if (r < 0)
		return r;
	return set_params(vm->qmp, vm->pre_cpr ? "cpr-transfer" : "cpr-reboot",
			  vm->copies_ram && !vm->pre_cpr ? HU_MAX_BANDWIDTH : 0, ret_err);
}

/* Destination side: a fresh QEMU gets exactly the source's set. */
int hu_migration_setup_dest(struct hu_vm *vm, char **ret_err)
{
	int r;

	if (!vm->caps) {
		*ret_err = strdup("the manifest does not say which migration capabilities were used");
		return -EBADMSG;
	}
	r = apply_caps(vm->qmp, vm->caps, NULL, ret_err);

	/* cpr-transfer: the new QEMU takes the mode from the cpr state. */
	if (r < 0 || vm->pre_cpr)
		return r;
	return set_params(vm->qmp, "cpr-reboot", 0, ret_err);
}

/* Put the VM's own settings back (after a rollback, or on the restored
 * QEMU, so management tools find what they had configured). */
int hu_migration_reset(struct hu_vm *vm)
{
	int r = 0;

	if (vm->caps_before && vm->caps)
		r = apply_caps(vm->qmp, vm->caps_before, vm->caps, NULL);
	if (r < 0)
		return r;
	return set_params(vm->qmp, "normal", vm->max_bandwidth_before, NULL);
}

static const char *const terminal[] = { "completed", "failed", "cancelled" };

static bool is_terminal(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(terminal); i++)
		if (streq(s, terminal[i]))
			return true;
	return false;
}

static bool migration_event_terminal(json_object *data, void *userdata)
{
	json_object *st;

	return data && json_object_object_get_ex(data, "status", &st) &&
	       json_object_is_type(st, json_type_string) && is_terminal(json_object_get_string(st));
}

/* query-migrate: status and, on failure, QEMU's error-desc. */
int hu_migration_query(struct hu_qmp *q, char **ret_status, char **ret_desc)
{
	_cleanup_json_ json_object *o = NULL;
	json_object *st, *desc;
	int r = hu_qmp_execute(q, "query-migrate", NULL, &o, NULL);

	if (r < 0)
		return r;
	/* Before any migration, query-migrate returns {}. */
	if (!json_object_object_get_ex(o, "status", &st) || !json_object_is_type(st, json_type_string))
		*ret_status = strdup("none");
	else
		*ret_status = strndup(json_object_get_string(st), 64);
	if (ret_desc && json_object_object_get_ex(o, "error-desc", &desc) &&
	    json_object_is_type(desc, json_type_string))
		*ret_desc = strndup(json_object_get_string(desc), 512);
	return *ret_status ? 0 : -ENOMEM;
}

/* Wait on MIGRATION events (no sleeping), with query-migrate as a check
 * for an event that went missing. 0 = completed, -EIO = failed (with
 * QEMU's reason), -ECANCELED, -ETIMEDOUT. */
int hu_migration_wait(struct hu_qmp *q, unsigned timeout_ms, char **ret_desc)
{
	int64_t deadline = hu_mono_ms() + timeout_ms;

	for (;;) {
		_cleanup_free_ char *status = NULL;
		int64_t left = deadline - hu_mono_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = hu_qmp_wait_event(q, "MIGRATION", migration_event_terminal, NULL,
				      left < 1000 ? (unsigned)left : 1000, NULL);
		if (r < 0 && r != -ETIMEDOUT)
			return r;
		r = hu_migration_query(q, &status, ret_desc);
		if (r < 0)
			return r;
		if (streq(status, "completed"))
			return 0;
		if (streq(status, "failed"))
			return -EIO;
		if (streq(status, "cancelled"))
			return -ECANCELED;
	}
}

/* How long a save or load of `bytes` may take: generous, but bounded. */
unsigned hu_migration_timeout_ms(uint64_t bytes)
{
	uint64_t ms = 60000 + bytes / (20ULL << 10); /* >= 20 MB/s */

	return ms > 3600000 ? 3600000 : (unsigned)ms;
}

/* The MIGRATION "completed" event can come before the runstate leaves
 * finish-migrate (source) or inmigrate (destination): wait until it does.
 * No event marks that step (postmigrate, or paused, sends none): a short poll. */
int hu_migration_settled_runstate(struct hu_qmp *q, char **ret_status)
{
	int64_t deadline = hu_mono_ms() + 10000;

	for (;;) {
		_cleanup_free_ char *status = NULL;
		int r = hu_qmp_query_status(q, &status);

		if (r < 0)
			return r;
		if (!streq(status, "finish-migrate") && !streq(status, "inmigrate")) {
			*ret_status = TAKE_PTR(status);
			return 0;
		}
		if (hu_mono_ms() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
}
