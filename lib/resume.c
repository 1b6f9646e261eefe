/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * resume: put a VM whose QEMU we stopped but did not quit back as it was.
 * Checkpoint does it to every VM when one fails (all-or-nothing); restore
 * and abort do it to a VM whose original QEMU still runs. Its state file
 * is set aside first: a guest that ran again must never be loaded from it.
 */
#include <stdio.h>
#include "hu-private.h"

/* The state file of a VM whose guest runs again must never be loaded:
 * set it aside (durably) before the guest can run, back only if QEMU said no. */
static int set_state_file_aside(struct hu_vm *vm, char **ret_aside)
{
	_cleanup_free_ char *dir = NULL;
	char *aside;

	if (!vm->state_file || access(vm->state_file, F_OK) < 0) {
		*ret_aside = NULL;
		return 0;
	}
	if (asprintf(&aside, "%s.resumed", vm->state_file) < 0)
		return -ENOMEM;
	if (rename(vm->state_file, aside) < 0) {
		free(aside);
		return -errno;
	}
	dir = strdup(vm->ctx->state_dir);
	if (dir)
		hu_fsync_path(dir);
	*ret_aside = aside;
	return 0;
}

/* Put a VM we stopped back as it was: cancel a save still running, `cont`
 * if it ran (or was suspended) before, restore its migration settings.
 * Does not touch vm->state or vm->error: callers record the outcome. */
int hu_vm_resume_original(struct hu_vm *vm, char **ret_error)
{
	struct hu_ctx *ctx = vm->ctx;
	_cleanup_free_ char *mstatus = NULL, *status = NULL, *aside = NULL, *qerr = NULL;
	bool was_running = vm->runstate &&
			   (streq(vm->runstate, "running") || streq(vm->runstate, "suspended"));
	int r;

	if (!vm->qmp) {
		_cleanup_free_ char *why = NULL;

		r = hu_manager_monitor(vm, ctx->qmp_timeout_ms, &vm->qmp, &why);
		if (r < 0)
			return hu_errorf(ret_error, r, "cannot resume: %s", why ?: hu_qmp_strerror(r));
	}
	r = hu_migration_query(vm->qmp, &mstatus, NULL);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot resume: query-migrate: %s", hu_qmp_strerror(r));
	if (!streq(mstatus, "none") && !streq(mstatus, "completed") && !streq(mstatus, "failed") &&
	    !streq(mstatus, "cancelled")) {
		hu_qmp_execute(vm->qmp, "migrate_cancel", NULL, NULL, NULL);
		r = hu_migration_wait(vm->qmp, 30000, NULL);
		if (r == -ETIMEDOUT)
			return hu_errorf(ret_error, r, "cannot resume: the save did not stop in time");
	}
	r = hu_qmp_query_status(vm->qmp, &status);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot resume: query-status: %s", hu_qmp_strerror(r));
	r = set_state_file_aside(vm, &aside);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot set the state file aside before resuming: %s",
				 strerror(-r));
	if (was_running && !streq(status, "running") && !streq(status, "suspended")) {
		/* From postmigrate, cont brings a suspended guest back suspended. */
		r = hu_manager_cont(vm, &qerr);
		if (r < 0) {
			if (r == -EREMOTEIO && aside)
				rename(aside, vm->state_file); /* it did not run: still valid */
			return hu_errorf(ret_error, r, "cannot resume: cont: %s", qerr ?: hu_qmp_strerror(r));
		}
		free(status);
		status = NULL;
		hu_qmp_query_status(vm->qmp, &status);
	} else if (!was_running && streq(status, "postmigrate")) {
		/* A paused guest stays paused, but its disks must be usable again. */
		r = hu_qmp_execute(vm->qmp, "blockdev-set-active", json_tokener_parse("{\"active\":true}"),
				   NULL, NULL);
		if (r < 0)
			hu_info(ctx, vm->name, "left paused in postmigrate: its disks activate on `cont`");
	}
	if (vm->suspended_by_us && status && streq(status, "suspended")) {
		r = hu_vm_wakeup(vm, 30000, ret_error);
		if (r < 0)
			return r;
	}
	hu_migration_reset(vm);
	if (aside)
		unlink(aside);
	hu_manager_done(vm);
	hu_info(ctx, vm->name, "resumed (%s)", vm->runstate ?: "?");
	return 0;
}
