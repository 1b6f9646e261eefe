/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restore (and abort): bring every VM of the manifest to running, exactly
 * once. Per VM, by what the manifest and /proc say:
 *   - its original QEMU still runs (crash before quit, or abort): resume it;
 *   - it was saved and its QEMU is gone: verify state file, disks and RAM,
 *     start the recorded argv + "-incoming defer" (execve, no shell), load
 *     the state with the same mode and capabilities, and bring it to the
 *     runstate it had before;
 *   - it is restored or resumed already, or another QEMU runs it: leave it.
 * Per-VM results are written to the manifest as they happen.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include "hu-private.h"

struct restore_job {
	struct hu_ctx *ctx;
	struct hu_manifest *m;
	struct hu_vm_list *running; /* QEMUs on the host now (from /proc) */
	bool same_boot;
	const char *const *only_vms; /* NULL: all */
	const char *only_manager;    /* NULL: all */
	int64_t media_deadline;	     /* hu_mono_ms: how long a pmem device may take to appear */
};

/* Record the outcome of one VM under the manifest lock, then persist it
 * (hu_manifest_save_vm: another worker's save writes this record). */
static void finish_vm(struct restore_job *job, struct hu_vm *vm, enum hu_vm_state state, const char *error)
{
	/* error may be vm->error. A VM that failed is never left without a why:
	 * the CLI reports failed VMs by their error. */
	char *copy = error		     ? strdup(error)
		     : state == HU_VM_FAILED ? strdup("restore failed, and no step said why")
					     : NULL;

	pthread_mutex_lock(&job->m->lock);
	vm->state = state;
	free(vm->error);
	vm->error = copy;
	pthread_mutex_unlock(&job->m->lock);
	hu_journal(job->ctx, vm->name, hu_vm_state_to_string(state), copy);
	hu_manifest_save_vm(job->m, vm);
}

static void record_restoring(struct restore_job *job, struct hu_vm *vm, pid_t pid, uint64_t starttime)
{
	pthread_mutex_lock(&job->m->lock);
	vm->pid = pid;
	vm->starttime = starttime;
	vm->state = HU_VM_RESTORING;
	pthread_mutex_unlock(&job->m->lock);
	hu_manifest_save_vm(job->m, vm);
}

static bool shares_ram(const struct hu_vm *vm, const struct hu_vm *p)
{
	for (size_t i = 0; i < vm->n_memdevs; i++)
		for (size_t j = 0; vm->memdevs[i].mem_path && j < p->ai.n_mem_paths; j++)
			if (streq(vm->memdevs[i].mem_path, p->ai.mem_paths[j]))
				return true;
	return false;
}

/* A QEMU on the host now that is this VM: the same user running the same
 * binary (as recorded from /proc at the checkpoint) with the same name, QMP
 * socket or RAM. Another user's process, or another binary, is never it,
 * whatever its argv says: anyone can name a process after a VM. One of the
 * same user and binary that discovery did not examine may be it: *ret_unsure
 * says why, and the caller must not start the VM. */
static struct hu_vm *find_running(struct restore_job *job, const struct hu_vm *vm, const char **ret_unsure)
{
	*ret_unsure = NULL;
	if (job->running->n_unlisted) {
		*ret_unsure = "more qemu-system-* processes run than discovery lists";
		return NULL;
	}
	for (size_t i = 0; i < job->running->n; i++) {
		struct hu_vm *p = job->running->vms[i];

		/* The QEMU restore itself started (its pid recorded) is it; one
		 * started as root to drop to the VM's user may not have yet. */
		bool ours = p->pid == vm->pid && p->starttime == vm->starttime;

		if (!ours &&
		    (!streq(p->exe, vm->exe) || (p->uid != vm->uid && !(vm->ai.runas && p->uid == 0))))
			continue;
		if (p->skipped) {
			*ret_unsure = p->skipped;
			return p;
		}
		if (streq(p->name, vm->name) || shares_ram(vm, p) ||
		    (vm->ai.qmp_path && p->ai.qmp_path && streq(vm->ai.qmp_path, p->ai.qmp_path)))
			return p;
	}
	return NULL;
}

static int check_disks(const struct hu_vm *vm, char **ret_error)
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct hu_disk *d = &vm->disks[i];
		struct stat st;

		if (stat(d->path, &st) < 0)
			return hu_errorf(ret_error, -errno, "disk %s: %s", d->path, strerror(errno));
		if ((uint64_t)st.st_size != d->size || st.st_ino != d->ino || st.st_dev != d->dev ||
		    hu_timespec_ns(&st.st_mtim) != d->mtime_ns)
			return hu_errorf(
				ret_error, -ESTALE,
				"disk %s changed since the checkpoint (size, inode or mtime); refusing to resume on it",
				d->path);
	}
	return 0;
}

/* The namespace holding a VM's RAM came back under another device name
 * (namespaces renumber when one before them is gone) and the argv names
 * the device node: point the argv at the new node — only when it is the
 * same namespace (uuid, mode, size); the digest is checked next. */
static int follow_namespace(struct restore_job *job, struct hu_vm *vm, struct hu_memdev *d)
{
	_cleanup_free_ char *moved_to = NULL, *old_path = NULL, *new_path = NULL;
	struct hu_medium now = {};
	int r, n = 0;

	if (d->medium.kind != HU_MEDIUM_DEVDAX && d->medium.kind != HU_MEDIUM_PMEM)
		return -ESTALE;
	if (asprintf(&old_path, "/dev/%s", d->medium.device) < 0)
		return -ENOMEM;
	if (!streq(d->mem_path, old_path))
		return -ESTALE;
	r = hu_ram_medium_follow(vm->ctx, &d->medium, &moved_to, &now);
	if (r < 0)
		return r;
	if (asprintf(&new_path, "/dev/%s", moved_to) < 0) {
		hu_medium_clear(&now);
		return -ENOMEM;
	}
	/* Under the lock: a save of the manifest reads every VM's argv. */
	pthread_mutex_lock(&job->m->lock);
	n = hu_argv_replace_mem_path(vm->argv, vm->argc, old_path, new_path);
	if (n > 0 && hu_strdup_replace(&d->mem_path, new_path) >= 0) {
		hu_medium_clear(&d->medium);
		d->medium = now;
		now = (struct hu_medium){};
	}
	pthread_mutex_unlock(&job->m->lock);
	hu_medium_clear(&now);
	if (n == 0 || !streq(d->mem_path, new_path))
		return -ESTALE;
	hu_info(job->ctx, vm->name, "its RAM's namespace %s is %s now (was %s): following it", d->medium.uuid,
		new_path, old_path);
	return 0;
}

/* A RAM file on fsdax: its file system is mounted by its own identity, so
 * a renumbered namespace (pmem1 now, pmem0 before) is found through the
 * file. The same namespace (uuid, mode, size) passes; the digest is next. */
static int fsdax_by_mount(struct hu_vm *vm, struct hu_memdev *d)
{
	struct hu_medium now = {};
	int r;

	if (!d->medium.uuid)
		return -ESTALE;
	r = hu_ram_medium(vm->ctx, d->mem_path, &now);
	if (r >= 0 &&
	    (now.kind != HU_MEDIUM_FSDAX || !now.uuid || hu_medium_compare(&d->medium, &now, NULL) < 0))
		r = -ESTALE;
	if (r >= 0)
		hu_info(vm->ctx, vm->name,
			"its RAM's file system is on %s now (was %s), the same namespace %s", now.device,
			d->medium.device, d->medium.uuid);
	hu_medium_clear(&now);
	return r;
}

static int check_ram(struct restore_job *job, struct hu_vm *vm, char **ret_error)
{
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];
		uint64_t digest;
		int r;

		if (!d->skipped)
			continue;
		if (d->backing != HU_BACKING_PERSISTENT && !job->same_boot)
			return hu_errorf(ret_error, -ESTALE,
					 "RAM in %s was volatile and the host rebooted since the checkpoint",
					 d->mem_path);
		/* After a reboot the pmem drivers may still be probing (an initrd
		 * without our module did not wait for them): give them a while. */
		r = hu_ram_medium_wait(vm->ctx, &d->medium, job->same_boot ? 0 : job->media_deadline,
				       ret_error);
		if ((r == -ESTALE || r == -ENODEV) &&
		    (d->medium.kind == HU_MEDIUM_FSDAX ? fsdax_by_mount(vm, d)
						       : follow_namespace(job, vm, d)) >= 0)
			r = 0;
		if (r < 0)
			return r;
		/* Where the RAM is now: a manager may have kept it elsewhere. */
		r = hu_ram_digest(hu_manager_ram_path(vm, i), d->size, &digest);
		if (r < 0)
			return hu_errorf(ret_error, r, "RAM in %s: %s", hu_manager_ram_path(vm, i),
					 hu_ram_strerror(r));
		if (digest != d->digest)
			return hu_errorf(
				ret_error, -ESTALE,
				"RAM in %s did not survive (sampled pages differ from the checkpoint)",
				d->mem_path);
	}
	return 0;
}

/* Same capabilities and mode as the source, then migrate-incoming. */
int hu_restore_start_load(struct hu_vm *vm, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL;
	int r;

	r = hu_migration_setup_dest(vm, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot set the checkpoint's migration settings: %s",
				 qerr ?: hu_qmp_strerror(r));
	return hu_restore_incoming(vm, ret_error);
}

/* migrate-incoming of the state file, into a QEMU already set up. */
int hu_restore_incoming(struct hu_vm *vm, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL, *uri = NULL;
	json_object *args;
	int r;

	r = hu_manager_state_uri(vm, false, &uri);
	if (r < 0)
		return hu_errorf(ret_error, r, "state file: %s", vm->error ?: strerror(-r));
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string(uri));
	/* Stay alive on a bad stream so we can say why. */
	json_object_object_add(args, "exit-on-error", json_object_new_boolean(false));
	r = hu_qmp_execute(vm->qmp, "migrate-incoming", args, NULL, &qerr);
	if (r < 0)
		return hu_errorf(ret_error, r, "migrate-incoming: %s", qerr ?: hu_qmp_strerror(r));
	return 0;
}

/* Wait for the load, then bring the VM to the runstate it had: a paused
 * VM comes back paused, a running one runs. */
int hu_restore_finish_load(struct hu_vm *vm, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL, *desc = NULL, *status = NULL;
	int r;

	r = hu_migration_wait(vm->qmp, hu_migration_timeout_ms(vm->state_bytes), &desc);
	if (r < 0)
		return hu_errorf(ret_error, r, "loading the state failed: %s", desc ?: hu_qmp_strerror(r));
	r = hu_migration_settled_runstate(vm->qmp, &status);
	if (r < 0)
		return hu_errorf(ret_error, r, "query-status: %s", hu_qmp_strerror(r));
	if (vm->suspended_by_us && streq(status, "suspended")) {
		/* It was put to sleep for the checkpoint: wake it. */
		r = hu_vm_wakeup(vm, 30000, ret_error);
		if (r < 0)
			return r;
		free(status);
		status = strdup("running");
	}
	if (vm->runstate && streq(vm->runstate, "running") && !streq(status, "running")) {
		r = hu_manager_cont(vm, &qerr);
		if (r < 0)
			return hu_errorf(ret_error, r, "cont: %s", qerr ?: hu_qmp_strerror(r));
		free(status);
		status = strdup("running");
	}
	if (vm->runstate && !streq(status, vm->runstate))
		return hu_errorf(ret_error, -EPROTO, "runstate after restore is '%s', expected '%s'", status,
				 vm->runstate);
	hu_migration_reset(vm);
	hu_manager_done(vm);
	return 0;
}

/* The guest's clock is behind by the outage: set it through its agent
 * (every VM with one, suspended or not), and record by how much under the
 * manifest's lock. Best effort, but said. Prelaunch's too. */
void hu_restore_fix_clock(struct hu_manifest *m, struct hu_vm *vm)
{
	int64_t step = 0;
	int r;

	if (!vm->ai.qga_path || !vm->runstate || !streq(vm->runstate, "running"))
		return;
	r = hu_qga_fix_clock(vm, 10000, &step);
	if (r < 0) {
		/* Not a failure of the restore: the guest runs. Said as progress. */
		hu_info(vm->ctx, vm->name, "guest clock not set: agent %s: %s", vm->ai.qga_path,
			hu_qmp_strerror(r));
		return;
	}
	pthread_mutex_lock(&m->lock);
	vm->has_clock_step = true;
	vm->clock_step_ms = step;
	pthread_mutex_unlock(&m->lock);
	hu_info(vm->ctx, vm->name, "guest clock set (it was %lld ms behind)", (long long)step);
}

/* A VM its manager starts (libvirt): paused, waiting for the load, which is
 * ours as for any VM. Recorded before the load starts: a re-run finds it. */
static int start_managed(struct restore_job *job, struct hu_vm *vm, pid_t *pid, uint64_t *starttime,
			 char **ret_error)
{
	int r;

	hu_info(job->ctx, vm->name, "starting it through %s with -incoming defer", vm->mgr->name);
	r = vm->mgr->start_incoming(vm, pid, starttime, ret_error);
	if (r >= 0)
		record_restoring(job, vm, *pid, *starttime);
	return r;
}

static void restore_from_state(struct restore_job *job, struct hu_vm *vm)
{
	_cleanup_free_ char *err = NULL;
	_cleanup_close_ int qemu_fd = -1;
	struct hu_vm *other;
	const char *unsure;
	struct stat st;
	pid_t child = 0, pid = 0;
	uint64_t starttime = 0;
	int r;

	other = find_running(job, vm, &unsure);
	if (unsure) {
		/* Never run a VM twice: what we cannot rule out, we do not start. */
		if (other)
			hu_errorf(&err, 0,
				  "pid %d runs %s as the same user and was not examined (%s): "
				  "not started, in case it is this VM",
				  (int)other->pid, vm->exe, unsure);
		else
			hu_errorf(&err, 0, "cannot tell whether it runs already (%s): not started", unsure);
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	if (other && hu_argv_has_incoming_defer(other->argv, other->argc) && streq(other->name, vm->name)) {
		/* Started by an earlier restore that was cut short: finish its
		 * load, or end it if the load never began, never both. */
		_cleanup_free_ char *mstatus = NULL;

		if (vm->mgr && vm->mgr->attach)
			r = vm->mgr->attach(vm, other->pid, &vm->qmp);
		else
			r = other->ai.qmp_path
				    ? hu_qmp_connect(other->ai.qmp_path, job->ctx->qmp_timeout_ms, &vm->qmp)
				    : -ENOENT;
		if (r >= 0)
			r = hu_migration_query(vm->qmp, &mstatus, NULL);
		if (r < 0) {
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			hu_errorf(&err, 0, "a QEMU for this VM (pid %d) exists but does not answer QMP: %s",
				  (int)other->pid, hu_qmp_strerror(r));
			finish_vm(job, vm, HU_VM_FAILED, err);
			return;
		}
		if (!streq(mstatus, "none") && !streq(mstatus, "failed") && !streq(mstatus, "cancelled")) {
			pthread_mutex_lock(&job->m->lock);
			vm->pid = other->pid;
			vm->starttime = other->starttime;
			pthread_mutex_unlock(&job->m->lock);
			r = hu_restore_finish_load(vm, &err);
			hu_qmp_close(vm->qmp);
			vm->qmp = NULL;
			if (r < 0) {
				finish_vm(job, vm, HU_VM_FAILED, err);
				return;
			}
			pthread_mutex_lock(&job->m->lock);
			vm->running_at_ms = hu_now_ms();
			pthread_mutex_unlock(&job->m->lock);
			finish_vm(job, vm, HU_VM_RESTORED, NULL);
			return;
		}
		hu_qmp_close(vm->qmp);
		vm->qmp = NULL;
		hu_info(job->ctx, vm->name, "ending pid %d, left before its load began by an earlier run",
			(int)other->pid);
		if ((vm->mgr && vm->mgr->kill ? vm->mgr->kill(vm, other->pid, other->starttime)
					      : hu_pid_kill(job->ctx, other->pid, other->starttime)) < 0) {
			hu_errorf(&err, 0, "pid %d, left by an earlier restore, does not exit",
				  (int)other->pid);
			finish_vm(job, vm, HU_VM_FAILED, err);
			return;
		}
	} else if (other) {
		hu_errorf(&err, 0, "already running as pid %d; not started twice", (int)other->pid);
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	if (vm->unflushed && !job->same_boot) {
		hu_errorf(
			&err, 0,
			"its checkpoint was not flushed to disk (taken to be restored at once, "
			"by run --no-reboot) and the host rebooted since: state and RAM may not have survived");
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	if (stat(vm->state_file, &st) < 0 || (uint64_t)st.st_size != vm->state_bytes) {
		hu_errorf(&err, 0, "state file %s is missing or not the size recorded", vm->state_file);
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	if (check_disks(vm, &err) < 0 || check_ram(job, vm, &err) < 0 ||
	    hu_config_files_check(vm->cwd, vm->configs, vm->n_configs, &err) < 0) {
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	if (vm->mgr && vm->mgr->start_incoming) {
		r = start_managed(job, vm, &pid, &starttime, &err);
		goto started;
	}
	hu_info(job->ctx, vm->name, "starting %s with -incoming defer", vm->exe);
	r = hu_spawn_qemu(job->ctx, vm, &child, NULL, &err);
	if (r < 0) {
		if (!err)
			hu_errorf(&err, 0, "cannot start QEMU: %s", strerror(-r));
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	pid = child;
	/* Recorded before the load starts: a re-run finds this QEMU. Without
	 * -daemonize the pid is known now: the save overlaps QEMU's start-up. */
	if (!vm->ai.daemonize && hu_proc_starttime(job->ctx, pid, &starttime) >= 0)
		record_restoring(job, vm, pid, starttime);
	r = hu_spawn_connect(job->ctx, vm, child, &pid, &qemu_fd, &err);
	if (r >= 0 && vm->ai.daemonize) {
		if (hu_proc_starttime(job->ctx, pid, &starttime) < 0)
			r = -ESRCH;
		else
			record_restoring(job, vm, pid, starttime);
	}
	if (r >= 0 && vm->state != HU_VM_RESTORING)
		r = -ESRCH; /* gone before it could be recorded */
	if (r >= 0)
		hu_spawn_move_to_scope(job->ctx, vm, pid);
started:
	if (r >= 0) {
		r = hu_restore_start_load(vm, &err);
		if (r >= 0)
			r = hu_restore_finish_load(vm, &err);
	}
	hu_qmp_close(vm->qmp);
	vm->qmp = NULL;
	if (r < 0) {
		/* It never ran the guest: safe to end, and to retry later. */
		if (vm->mgr && vm->mgr->kill) {
			if (pid > 0)
				vm->mgr->kill(vm, pid, starttime);
		} else {
			/* Only the QEMU proven ours (its pidfd), never a pid a
			 * pidfile or /proc merely named. */
			if (qemu_fd >= 0)
				hu_pidfd_kill(qemu_fd, 10000);
			if (pid > 0)
				waitpid(pid, NULL, WNOHANG); /* our child, or reparented to us */
			waitpid(child, NULL, WNOHANG);
		}
		if (!err)
			hu_errorf(&err, r, "%s", strerror(-r));
		if (vm->pidfile_refused)
			hu_errorf(&err, r, "%s; %s", err ?: "?", vm->pidfile_refused);
		finish_vm(job, vm, HU_VM_FAILED, err);
		return;
	}
	pthread_mutex_lock(&job->m->lock);
	vm->running_at_ms = hu_now_ms();
	pthread_mutex_unlock(&job->m->lock);
	hu_restore_fix_clock(job->m, vm);
	hu_info(job->ctx, vm->name, "restored (%s) as pid %d, down %lld ms", vm->runstate ?: "?", (int)pid,
		(long long)(vm->running_at_ms - vm->stopped_at_ms));
	finish_vm(job, vm, HU_VM_RESTORED, NULL);
}

static void converge_worker(size_t i, void *data)
{
	struct restore_job *job = data;
	struct hu_vm *vm = job->m->list.vms[i];

	if (job->only_vms) {
		bool selected = false;

		for (const char *const *n = job->only_vms; *n; n++)
			selected = selected || streq(*n, vm->name);
		if (!selected)
			return; /* not ours this time: left as recorded */
	}
	if (job->only_manager && !streq(job->only_manager, hu_manager_name(vm)))
		return; /* another unit's */
	if (vm->by_prelaunch)
		return; /* a mixed run's other group: hu_prelaunch_vms restarts it */
	if (vm->state == HU_VM_RESTORED || vm->state == HU_VM_RESUMED)
		return; /* done: never started again */
	if (job->same_boot) {
		/* A prelaunch cut short: which of its two QEMUs has the guest. */
		_cleanup_free_ char *err = NULL;
		enum hu_vm_state state;

		if (hu_prelaunch_converge(vm, &state, &err) > 0) {
			finish_vm(job, vm, state, err);
			return;
		}
	}
	/* Its recorded QEMU still runs (the original, before quit): resume it.
	 * A restore never leaves a QEMU it started behind on failure. */
	if (job->same_boot && hu_vm_process_alive(vm)) {
		_cleanup_free_ char *err = NULL;

		if (vm->state == HU_VM_RESTORING) {
			/* Ours from a run that was cut short: handled as a leftover. */
			restore_from_state(job, vm);
			return;
		}
		if (hu_vm_resume_original(vm, &err) < 0)
			finish_vm(job, vm, HU_VM_FAILED, err);
		else
			finish_vm(job, vm, HU_VM_RESUMED, NULL);
		hu_qmp_close(vm->qmp);
		vm->qmp = NULL;
		return;
	}
	if (vm->state == HU_VM_RUNNING || vm->state == HU_VM_STOPPING) {
		finish_vm(job, vm, HU_VM_FAILED,
			  "QEMU exited during the checkpoint before its state was saved");
		return;
	}
	restore_from_state(job, vm);
}

int hu_restore_vms(struct hu_ctx *ctx, struct hu_manifest *m, bool same_boot, const char *const *only_vms)
{
	return hu_restore_vms_of(ctx, m, same_boot, only_vms, NULL);
}

int hu_restore_vms_of(struct hu_ctx *ctx, struct hu_manifest *m, bool same_boot, const char *const *only_vms,
		      const char *only_manager)
{
	struct restore_job job = { .ctx = ctx,
				   .m = m,
				   .same_boot = same_boot,
				   .only_vms = only_vms,
				   .only_manager = only_manager,
				   .media_deadline = hu_mono_ms() + HU_MEDIA_WAIT_MS };
	int failed = 0, pending = 0, r;

	r = hu_scan_processes(ctx, &job.running);
	if (r < 0)
		return hu_fail(ctx, r, "cannot list the QEMU processes in %s: %s; no VM was started",
			       ctx->proc_root, strerror(-r));
	/* Persisted with the first VM's record: one flush less before any
	 * guest runs, and until then nothing has changed on disk. */
	hu_manifest_note_phase(m, "restoring");
	/* Each worker changes its VM unlocked (a prelaunch converge, a resume,
	 * a manager's op): a save by another writes what it recorded last. */
	hu_manifest_parallel_for(m, m->list.n, ctx->jobs, converge_worker, &job);
	hu_vm_list_free(job.running);
	for (size_t i = 0; i < m->list.n; i++) {
		failed += m->list.vms[i]->state == HU_VM_FAILED;
		/* Left for another manager's restore or the prelaunch group: not over yet. */
		pending += (job.only_manager || m->list.vms[i]->by_prelaunch) &&
			   m->list.vms[i]->state != HU_VM_RESTORED &&
			   m->list.vms[i]->state != HU_VM_RESUMED && m->list.vms[i]->state != HU_VM_FAILED;
	}
	hu_manifest_set_phase(m, failed ? "restore-failed" : pending ? "restoring" : "restored");
	return failed;
}

static int converge(struct hu_ctx *ctx, const struct hu_options *opts, const char *verb)
{
	_cleanup_close_ int lock = -1;
	struct hu_manifest *m = NULL;
	struct utsname un;
	char boot[64] = "";
	int r;

	hu_clear_error(ctx);
	r = hu_lock_state_dir(ctx, &lock);
	if (r < 0)
		return r;
	r = hu_manifest_load(ctx, &m);
	if (r == -ENOENT) {
		hu_info(ctx, NULL, "nothing to %s: no manifest in %s", verb, ctx->state_dir);
		return 0;
	}
	if (r < 0)
		return hu_fail(ctx, r, "%s/manifest.json: %s; nothing was changed", ctx->state_dir,
			       hu_manifest_strerror(r));
	hu_read_boot_id(boot, sizeof(boot));
	if (m->target_kernel && uname(&un) == 0 && !streq(un.release, m->target_kernel)) {
		/* Not fatal by itself: the RAM checks decide. But say it. */
		hu_info(ctx, NULL, "running kernel %s, the checkpoint expected %s", un.release,
			m->target_kernel);
		hu_journal(ctx, NULL, "unexpected-kernel", un.release);
	}
	r = hu_restore_vms_of(ctx, m, streq(boot, m->boot_id), opts ? opts->only_vms : NULL,
			      opts ? opts->only_manager : NULL);
	hu_manifest_free(m);
	return r;
}

int hu_restore(struct hu_ctx *ctx, const struct hu_options *opts)
{
	return converge(ctx, opts, "restore");
}

int hu_abort(struct hu_ctx *ctx)
{
	return converge(ctx, NULL, "abort");
}
