/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Migration steps shared by checkpoint (source) and restore (destination):
 * both sides must use the same mode and x-ignore-shared. */
#include <stdio.h>
#include "hu-private.h"

/* Plenty for a file: QEMU's default limit (128 MiB/s) would make a RAM copy
 * crawl. */
#define HU_MAX_BANDWIDTH (1LL << 40)

static json_object *cap(const char *name, bool on)
{
	json_object *c = json_object_new_object();

	json_object_object_add(c, "capability", json_object_new_string(name));
	json_object_object_add(c, "state", json_object_new_boolean(on));
	return c;
}

static int set_caps(struct hu_qmp *q, bool x_ignore_shared, bool events, char **ret_err)
{
	json_object *args = json_object_new_object(), *caps = json_object_new_array();

	json_object_array_add(caps, cap("x-ignore-shared", x_ignore_shared));
	json_object_array_add(caps, cap("events", events));
	json_object_object_add(args, "capabilities", caps);
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

int hu_migration_setup(struct hu_qmp *q, bool x_ignore_shared, bool copies_ram, char **ret_err)
{
	int r = set_caps(q, x_ignore_shared, true, ret_err);

	if (r < 0)
		return r;
	return set_params(q, "cpr-reboot", copies_ram ? HU_MAX_BANDWIDTH : 0, ret_err);
}

int hu_migration_reset(struct hu_qmp *q, bool x_ignore_shared_before, int64_t max_bandwidth_before)
{
	int r = set_caps(q, x_ignore_shared_before, false, NULL);

	if (r < 0)
		return r;
	return set_params(q, "normal", max_bandwidth_before, NULL);
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
 * finish-migrate (source) or inmigrate (destination): wait until it does. */
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
