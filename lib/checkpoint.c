/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * checkpoint: all VMs in parallel, all-or-nothing.
 *   save:   mode cpr-reboot, x-ignore-shared where RAM stays in place,
 *           migrate to file:, wait for completed, verify postmigrate,
 *           digest the in-place RAM, fingerprint the disks;
 *   decide: only when every VM is saved does any QEMU quit; otherwise every
 *           stopped VM is resumed as it was;
 *   quit:   quit each QEMU, wait for it to exit, flush disk-backed RAM.
 * The manifest is written before anything stops and between the phases, so
 * `abort` can converge after a kill -9 at any point.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "hu-private.h"

/* What restore checks: a disk that changed since is not resumed on. */
static int fingerprint_disks(struct hu_vm *vm)
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		struct stat st;
		struct hu_disk *d = &vm->disks[i];

		if (stat(d->path, &st) < 0)
			return hu_vm_set_error(vm, -errno, "disk %s: %m", d->path);
		d->size = st.st_size;
		d->ino = st.st_ino;
		d->dev = st.st_dev;
		d->mtime_ns = hu_timespec_ns(&st.st_mtim);
	}
	return 0;
}

int hu_checkpoint_save_vm(struct hu_vm *vm)
{
	struct hu_ctx *ctx = vm->ctx;
	_cleanup_free_ char *qerr = NULL, *desc = NULL, *status = NULL, *uri = NULL;
	json_object *args;
	struct stat st;
	int r;

	/* Discovery's connection, when it is still open: no second greeting. */
	if (!vm->qmp) {
		_cleanup_free_ char *why = NULL;

		r = hu_manager_monitor(vm, ctx->qmp_timeout_ms, &vm->qmp, &why);
		if (r < 0)
			return hu_vm_set_error(vm, r, "%s", why ?: hu_qmp_strerror(r));
	}
	free(vm->runstate);
	vm->runstate = NULL;
	r = hu_qmp_query_status(vm->qmp, &vm->runstate);
	if (r < 0)
		return hu_vm_set_error(vm, r, "query-status: %s", hu_qmp_strerror(r));
	vm->touched = true; /* from here on, a rollback has something to undo */
	if (vm->mgr && vm->mgr->prepare) {
		r = vm->mgr->prepare(vm);
		if (r < 0)
			return r;
	}
	if (vm->suspend && streq(vm->runstate, "running")) {
		_cleanup_free_ char *err = NULL;

		hu_info(ctx, vm->name, "suspending the guest through its agent");
		r = hu_qga_suspend(vm, (ctx->suspend_timeout_s ?: 30) * 1000, &err);
		/* Even on a timeout it may have gone down late: wake it on rollback. */
		vm->suspended_by_us = true;
		if (r < 0)
			return hu_vm_set_error(vm, r, "%s", err ?: strerror(-r));
	}
	r = hu_migration_setup_source(vm, &qerr);
	if (r < 0)
		return hu_vm_set_error(vm, r, "cannot set cpr-reboot mode: %s", qerr ?: hu_qmp_strerror(r));

	/* Which namespace holds the RAM does not change while the guest runs:
	 * look it up before the stop, not inside the blackout. A first digest
	 * here fails early on RAM we cannot read and brings the sampled pages
	 * of a disk file into the page cache (cold, 256 reads took 10 ms).
	 * A first flush writes back what the guest dirtied so far, so the one
	 * inside the blackout has only the last moments' pages left (64
	 * scattered pages took 5 ms on a virtio disk). */
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];

		if (!d->skipped)
			continue;
		hu_medium_clear(&d->medium);
		r = hu_ram_medium(vm->ctx, d->mem_path, &d->medium);
		if (r < 0)
			return hu_vm_set_error(vm, r, "medium of RAM in %s: %s", d->mem_path, strerror(-r));
		r = hu_ram_digest(d->mem_path, d->size, &d->digest);
		if (r < 0)
			return hu_vm_set_error(vm, r, "reading RAM in %s: %s", d->mem_path,
					       hu_ram_strerror(r));
		if (!vm->unflushed)
			hu_fsync_path(d->mem_path); /* a failure is reported by the flush that counts */
	}
	if (unlink(vm->state_file) < 0 && errno != ENOENT)
		return hu_vm_set_error(vm, -errno, "cannot replace %s: %m", vm->state_file);
	r = hu_manager_state_uri(vm, true, &uri);
	if (r < 0)
		return r;
	hu_qmp_clear_events(vm->qmp);
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string(uri));
	vm->state = HU_VM_STOPPING;
	vm->stopped_at_ms = hu_now_ms();
	vm->stopped_mono_us = hu_mono_us();
	hu_info(ctx, vm->name, "saving (%s)", vm->copies_ram ? "copying RAM" : "RAM in place");
	r = hu_qmp_execute(vm->qmp, "migrate", args, NULL, &qerr);
	if (r < 0)
		return hu_vm_set_error(vm, r, "migrate: %s", qerr ?: hu_qmp_strerror(r));
	r = hu_migration_wait(vm->qmp, hu_migration_timeout_ms(vm->save_bytes), &desc);
	if (r == -EIO)
		return hu_vm_set_error(vm, r, "saving the state failed: %s", desc ?: "(QEMU gave no reason)");
	if (r < 0)
		return hu_vm_set_error(vm, r, "waiting for the save: %s", hu_qmp_strerror(r));
	r = hu_migration_settled_runstate(vm->qmp, &status);
	if (r < 0)
		return hu_vm_set_error(vm, r, "query-status: %s", hu_qmp_strerror(r));
	if (!streq(status, "postmigrate"))
		return hu_vm_set_error(vm, -EPROTO, "runstate after save is '%s', not postmigrate", status);
	if (vm->mgr && vm->mgr->saved) {
		r = vm->mgr->saved(vm);
		if (r < 0)
			return r;
	}

	if (stat(vm->state_file, &st) < 0)
		return hu_vm_set_error(vm, -errno, "state file %s: %m", vm->state_file);
	vm->state_bytes = st.st_size;
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];

		if (!d->skipped)
			continue;
		r = hu_ram_digest(d->mem_path, d->size, &d->digest);
		if (r < 0)
			return hu_vm_set_error(vm, r, "digest of RAM in %s: %s", d->mem_path,
					       hu_ram_strerror(r));
	}
	r = fingerprint_disks(vm);
	if (r < 0)
		return r;
	/* Durable before it counts as saved: the state file, and RAM left in a
	 * disk file (on DAX this only writes back CPU caches) — together. Still
	 * before quit: if a flush fails, the guest is resumed from the RAM QEMU
	 * still maps. Not when restore follows in this process: a crash before
	 * it would lose the guest as a crash of the running VM would, and
	 * restore refuses such a checkpoint in any other boot. */
	if (!vm->unflushed) {
		const char *paths[1 + HU_MAX_MEMDEVS];
		int results[1 + HU_MAX_MEMDEVS];
		size_t n = 0;

		paths[n++] = vm->state_file;
		for (size_t i = 0; i < vm->n_memdevs && n < ARRAY_SIZE(paths); i++)
			if (vm->memdevs[i].skipped)
				paths[n++] = vm->memdevs[i].mem_path;
		hu_fsync_paths(paths, n, results);
		for (size_t i = 0; i < n; i++)
			if (results[i] < 0 && (i == 0 || (results[i] != -EINVAL && results[i] != -EROFS)))
				return hu_vm_set_error(vm, results[i], "flushing %s: %s", paths[i],
						       strerror(-results[i]));
	}
	/* The state file's directory entry is made durable by the manifest
	 * save that records every VM saved (same directory, one fsync). */
	vm->state = HU_VM_SAVED;
	hu_info(ctx, vm->name, "saved %llu KiB in %.1f ms", (unsigned long long)(vm->state_bytes >> 10),
		(double)(hu_mono_us() - vm->stopped_mono_us) / 1000);
	return 0;
}

static int wait_exit(struct hu_vm *vm, unsigned timeout_ms)
{
	return hu_pid_wait_exit(vm->ctx, vm->pid, vm->starttime, timeout_ms);
}

static int quit_one(struct hu_vm *vm)
{
	int r;

	if (vm->mgr && vm->mgr->stop)
		r = vm->mgr->stop(vm);
	else
		r = hu_qmp_execute(vm->qmp, "quit", NULL, NULL, NULL);
	if (r < 0 && r != -ECONNRESET)
		hu_info(vm->ctx, vm->name, "%s: %s; waiting for exit anyway", vm->mgr ? "stop" : "quit",
			vm->error ?: hu_qmp_strerror(r));
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
	r = wait_exit(vm, 10000);
	if (r < 0) {
		/* Saved and stopped: a QEMU that will not quit must still not
		 * outlive its checkpoint, or restore would run the VM twice. */
		hu_info(vm->ctx, vm->name, "QEMU pid %d did not quit; killing it", (int)vm->pid);
		hu_pid_kill(vm->ctx, vm->pid, vm->starttime);
		r = wait_exit(vm, 10000);
		if (r < 0)
			return hu_vm_set_error(vm, r, "QEMU pid %d does not exit", (int)vm->pid);
	}
	/* The RAM files were flushed (unless restore follows) when saved. */
	vm->state = HU_VM_CHECKPOINTED;
	return 0;
}

static void save_worker(size_t i, void *data)
{
	struct hu_vm_list *list = data;

	hu_checkpoint_save_vm(list->vms[i]);
}

/* Put back a VM the checkpoint touched. Its error keeps why the checkpoint
 * failed, unless it cannot be resumed: then that is what it says. */
static void resume_worker(size_t i, void *data)
{
	struct hu_vm_list *list = data;
	struct hu_vm *vm = list->vms[i];
	_cleanup_free_ char *err = NULL;

	if (!vm->touched)
		return;
	if (hu_vm_resume_original(vm, &err) < 0) {
		_cleanup_free_ char *why = TAKE_PTR(vm->error);

		vm->state = HU_VM_FAILED;
		if (why)
			hu_vm_set_error(vm, -EIO, "%s; %s", why, err ?: "cannot resume");
		else
			vm->error = TAKE_PTR(err);
		return;
	}
	vm->state = HU_VM_RESUMED;
}

static void quit_worker(size_t i, void *data)
{
	struct hu_vm_list *list = data;

	quit_one(list->vms[i]);
}

/* A checkpoint must not overwrite one that has not been restored yet. */
static int check_no_pending(struct hu_ctx *ctx)
{
	_cleanup_manifest_ struct hu_manifest *old = NULL;
	int r = hu_manifest_load(ctx, &old);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return hu_fail(ctx, r, "%s/manifest.json is %s; move it away after inspecting it",
			       ctx->state_dir, hu_manifest_strerror(r));
	for (size_t i = 0; i < old->list.n; i++) {
		enum hu_vm_state s = old->list.vms[i]->state;

		if (s != HU_VM_RESTORED && s != HU_VM_RESUMED)
			return hu_fail(
				ctx, -EBUSY,
				"%s is still %s from an earlier checkpoint (phase %s): run restore or abort first",
				old->list.vms[i]->name, hu_vm_state_to_string(s), old->phase);
	}
	return 0;
}

/* Save every VM of list (all of the manifest's, or the sequential group of
 * a mixed run), all or nothing, then quit them; with restore_follows,
 * restore them. < 0: none was restarted, every one resumed; > 0: that
 * many did not come back (see their records). */
static int checkpoint_group(struct hu_ctx *ctx, struct hu_manifest *m, struct hu_vm_list *list,
			    const struct hu_options *opts);

/* The sequential group of a mixed run did not all come back: the prelaunch
 * group is not started. Its VMs run on their QEMU as before, never stopped:
 * recorded as resumed (done, nothing for abort), each saying why. */
static void prelaunch_group_not_started(struct hu_ctx *ctx, struct hu_manifest *m, const char *why)
{
	for (size_t i = 0; i < m->list.n; i++) {
		struct hu_vm *vm = m->list.vms[i];

		if (!vm->by_prelaunch)
			continue;
		vm->state = HU_VM_RESUMED;
		hu_vm_set_error(vm, -ECANCELED, "not restarted: %s; it runs on its old QEMU, untouched", why);
		hu_journal(ctx, vm->name, "not-restarted", vm->error);
	}
	hu_manifest_save(m);
}

int hu_checkpoint(struct hu_ctx *ctx, struct hu_vm_list *list, const struct hu_options *opts)
{
	_cleanup_close_ int lock = -1;
	_cleanup_manifest_ struct hu_manifest *m = NULL;
	_cleanup_free_ struct hu_vm **seq_vms = NULL;
	struct hu_vm_list seq = {};
	int r;

	hu_clear_error(ctx);
	for (size_t i = 0; i < list->n; i++)
		if (list->vms[i]->n_blockers > 0)
			return hu_fail(ctx, -EINVAL, "%s: blocked: %s", list->vms[i]->name,
				       list->vms[i]->blockers[0]);
	if (strchr(ctx->state_dir, ','))
		return hu_fail(ctx, -EINVAL, "state dir %s: a ',' cannot be used in a migration file: URI",
			       ctx->state_dir);
	r = hu_lock_state_dir(ctx, &lock);
	if (r < 0)
		return r;
	r = check_no_pending(ctx);
	if (r < 0)
		return r;
	r = hu_manifest_new(ctx, &m);
	if (r < 0)
		return r;
	m->borrowed = true;
	ctx->suspend_timeout_s = opts ? opts->suspend_timeout_s : 0;
	if (opts && opts->target_kernel && !(m->target_kernel = strdup(opts->target_kernel)))
		return -ENOMEM;
	seq_vms = calloc(list->n ?: 1, sizeof(*seq_vms));
	if (!seq_vms)
		return -ENOMEM;
	seq.vms = seq_vms;
	for (size_t i = 0; i < list->n; i++) {
		struct hu_vm *vm = list->vms[i];

		vm->state = HU_VM_RUNNING;
		vm->unflushed = opts && opts->restore_follows;
		/* run --no-reboot: each VM its own way (prelaunch where it can) */
		vm->by_prelaunch = opts && opts->restore_follows && !opts->sequential &&
				   hu_prelaunch_eligible(vm, NULL);
		if (!vm->by_prelaunch)
			seq.vms[seq.n++] = vm;
		free(vm->state_file);
		if (asprintf(&vm->state_file, "%s/%s.state", ctx->state_dir, vm->name) < 0 ||
		    hu_vm_list_add(&m->list, vm) < 0)
			return -ENOMEM;
	}
	/* Recorded before anything stops: abort needs it after a crash. */
	r = hu_manifest_set_phase(m, "checkpointing");
	if (r < 0)
		return hu_fail(ctx, r, "cannot write the manifest in %s: %s", ctx->state_dir, strerror(-r));
	if (opts && opts->restore_follows && opts->sequential)
		hu_info(ctx, NULL,
			"restarting sequentially, as asked: each QEMU quits before its new one starts");
	if (seq.n == list->n)
		return checkpoint_group(ctx, m, &seq, opts);
	if (seq.n == 0)
		return hu_prelaunch_vms(ctx, m);
	/* A mixed run: the sequential group first, all or nothing among
	 * themselves; only when every one of them is back does the prelaunch
	 * group start, VM by VM (docs/design/prelaunch.md, "A mixed run"). */
	hu_info(ctx, NULL, "%zu VM%s restart%s sequentially first, then %zu by prelaunch", seq.n,
		seq.n == 1 ? "" : "s", seq.n == 1 ? "s" : "", list->n - seq.n);
	r = checkpoint_group(ctx, m, &seq, opts);
	if (r < 0) {
		/* The summary counts both groups. */
		_cleanup_free_ char *why = strdup(hu_get_error(ctx) ?: strerror(-r));
		size_t n_pre = list->n - seq.n;

		hu_fail(ctx, r,
			"%s (those restarted sequentially); the %zu VM%s to restart by prelaunch %s not touched",
			why ?: strerror(-r), n_pre, n_pre == 1 ? "" : "s", n_pre == 1 ? "was" : "were");
	}
	if (r != 0) {
		prelaunch_group_not_started(
			ctx, m,
			r < 0 ? "the VMs restarted sequentially before it failed their checkpoint"
			      : "a VM restarted sequentially before it did not come back");
		return r;
	}
	return hu_prelaunch_vms(ctx, m);
}

/* The sequential path (declared above). */
static int checkpoint_group(struct hu_ctx *ctx, struct hu_manifest *m, struct hu_vm_list *list,
			    const struct hu_options *opts)
{
	size_t failed = 0;
	int r, first_err = 0;

	hu_info(ctx, NULL, "checkpointing %zu VM%s", list->n, list->n == 1 ? "" : "s");
	hu_parallel_for(list->n, ctx->jobs, save_worker, list);

	for (size_t i = 0; i < list->n; i++)
		if (list->vms[i]->state != HU_VM_SAVED) {
			struct hu_vm *vm = list->vms[i];

			if (!vm->error)
				hu_vm_set_error(vm, -EIO, "unknown error");
			hu_journal(ctx, vm->name, "checkpoint-failed", vm->error);
			failed++;
			if (!first_err)
				first_err = -EIO;
		}
	if (failed) {
		hu_info(ctx, NULL, "resuming every VM: %zu of %zu failed", failed, list->n);
		hu_parallel_for(list->n, ctx->jobs, resume_worker, list);
		hu_manifest_set_phase(m, "aborted");
		return hu_fail(ctx, first_err, "%zu of %zu VMs could not be saved", failed, list->n);
	}
	/* Point of no return, VM by VM: every VM is saved. */
	r = hu_manifest_set_phase(m, "saved");
	if (r < 0) {
		hu_parallel_for(list->n, ctx->jobs, resume_worker, list);
		hu_manifest_set_phase(m, "aborted");
		return hu_fail(ctx, r, "cannot write the manifest: %s", strerror(-r));
	}
	hu_parallel_for(list->n, ctx->jobs, quit_worker, list);
	for (size_t i = 0; i < list->n; i++)
		if (list->vms[i]->state != HU_VM_CHECKPOINTED && !first_err)
			first_err = hu_fail(ctx, -EIO, "%s: %s", list->vms[i]->name,
					    list->vms[i]->error ?: "did not quit");
	if (first_err) {
		/* Some QEMUs quit, one would not: bring every VM back now
		 * (restore the quit ones, resume the one still there). */
		hu_manifest_set_phase(m, "checkpointed");
		hu_info(ctx, NULL, "a QEMU would not quit: bringing every VM back");
		hu_restore_vms(ctx, m, true, NULL);
		return first_err;
	}
	if (opts && opts->restore_follows) {
		/* Restore at once, under the same lock, from the record in memory:
		 * the "saved" record on disk covers a crash until then. */
		hu_manifest_note_phase(m, "checkpointed");
		hu_info(ctx, NULL, "all %zu VM%s checkpointed; restoring", list->n, list->n == 1 ? "" : "s");
		r = hu_restore_vms(ctx, m, true, NULL);
		if (r < 0) {
			/* Checkpointed, none restored: not a failed checkpoint. Keep
			 * restore's own words (which /proc scan failed, say). */
			_cleanup_free_ char *why = strdup(hu_get_error(ctx) ?: strerror(-r));

			hu_fail(ctx, r, "cannot restore: %s", why ?: strerror(-r));
			r = (int)list->n;
		}
		return r;
	}
	hu_manifest_set_phase(m, "checkpointed");
	hu_info(ctx, NULL, "all %zu VM%s checkpointed in %s", list->n, list->n == 1 ? "" : "s",
		ctx->state_dir);
	return 0;
}
