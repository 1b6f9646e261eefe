/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * plan: before anything stops, decide per VM how its RAM is saved and list
 * everything that blocks the upgrade. x-ignore-shared is per VM, so it is on
 * only when every shared, named RAM file of the VM survives what follows.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include "hu-private.h"

/* How much plan writes to measure the rate copied RAM is saved at. */
#define HU_COPY_SAMPLE (32ULL << 20)

static const char *const ok_runstates[] = { "running", "paused", "suspended" };

/* Can this backend's RAM stay where it is through what follows? */
static bool survives(const struct hu_memdev *d, const struct hu_options *opts)
{
	return d->backing == HU_BACKING_PERSISTENT || (d->backing == HU_BACKING_VOLATILE && opts->no_reboot);
}

static void plan_ram(struct hu_vm *vm, const struct hu_options *opts, uint64_t margin)
{
	bool can_skip = true, any_skipped = false, copies = false;

	vm->ram_bytes = 0;
	vm->backing = HU_BACKING_PERSISTENT;
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];

		vm->ram_bytes += d->size;
		if (d->backing > vm->backing)
			vm->backing = d->backing;
		/* QEMU's x-ignore-shared skips EVERY shared file backend: if
		 * one of them does not survive, nothing may be skipped. */
		if (streq(d->type, "memory-backend-file") && d->share && !survives(d, opts))
			can_skip = false;
	}
	vm->save_bytes = margin;
	vm->copy_bytes = 0;
	for (size_t i = 0; i < vm->n_memdevs; i++) {
		struct hu_memdev *d = &vm->memdevs[i];

		d->skipped = can_skip && d->mem_path && d->share && streq(d->type, "memory-backend-file");
		any_skipped = any_skipped || d->skipped;
		if (!d->skipped) {
			vm->save_bytes += d->size;
			vm->copy_bytes += d->size;
			copies = true;
		}
	}
	vm->in_place = any_skipped;
	vm->copies_ram = copies;
	if (vm->backing == HU_BACKING_VOLATILE && !opts->no_reboot &&
	    opts->volatile_policy == HU_VOLATILE_REFUSE)
		hu_strv_pushf(
			&vm->blockers, &vm->n_blockers,
			"RAM is volatile (tmpfs/hugetlbfs/memfd) and does not survive a reboot; policy refuses to copy it");
}

/* The state dir, or its nearest existing parent when it does not exist yet
 * (NULL: out of memory). */
static char *nearest_dir(const char *dir)
{
	struct statvfs sv;
	char *d = strdup(dir);

	while (d && statvfs(d, &sv) < 0) {
		char *slash = strrchr(d, '/');

		if (!slash || slash == d) {
			free(d);
			return strdup("/");
		}
		*slash = '\0';
	}
	return d;
}

static uint64_t free_bytes(const char *dir)
{
	struct statvfs sv;
	_cleanup_free_ char *d = nearest_dir(dir);

	return d && statvfs(d, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_frsize : 0;
}

/* The rate RAM that is copied gets saved at, measured where the state files
 * go: HU_COPY_SAMPLE bytes written and flushed, as the checkpoint flushes a
 * state file, into an unnamed file (O_TMPFILE: nothing left behind, no name
 * to race for), and only with room for it four times over after what the
 * checkpoint needs. QEMU's own stream can be slower than the disk. */
static void sample_copy_rate(const char *state_dir, uint64_t need, uint64_t avail, struct hu_copy_rate *cr)
{
	_cleanup_free_ char *dir = nearest_dir(state_dir), *buf = NULL;
	_cleanup_close_ int dfd = -1, fd = -1;
	uint64_t done = 0;
	int64_t t0, us;

	if (!dir || !(buf = malloc(1 << 20))) {
		snprintf(cr->why, sizeof(cr->why), "out of memory");
		return;
	}
	snprintf(cr->dir, sizeof(cr->dir), "%s", dir);
	if (avail < need || avail - need < 4 * HU_COPY_SAMPLE) {
		snprintf(cr->why, sizeof(cr->why), "too little free space for a %llu MiB sample",
			 (unsigned long long)(HU_COPY_SAMPLE >> 20));
		return;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(cr->why, sizeof(cr->why), "cannot write a sample there: %m");
		return;
	}
	memset(buf, 0xa5, 1 << 20);
	t0 = hu_mono_us();
	while (done < HU_COPY_SAMPLE) {
		ssize_t n = write(fd, buf, 1 << 20);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(cr->why, sizeof(cr->why), "writing a sample there: %s",
				 n < 0 ? strerror(errno) : "short write");
			return;
		}
		done += (uint64_t)n;
	}
	if (fdatasync(fd) < 0) {
		snprintf(cr->why, sizeof(cr->why), "flushing a sample there: %m");
		return;
	}
	us = hu_mono_us() - t0;
	cr->sample_bytes = done;
	cr->bytes_per_s = done * 1000000 / (uint64_t)(us > 0 ? us : 1);
}

int hu_plan(struct hu_ctx *ctx, struct hu_vm_list *list, const struct hu_options *opts)
{
	static const struct hu_options defaults = {};
	uint64_t need = 0, copy = 0, avail, margin;
	int blocked = 0;

	if (!opts)
		opts = &defaults;
	margin = opts->space_margin ? opts->space_margin : HU_DEVICE_STATE_MARGIN;
	memset(&list->copy_rate, 0, sizeof(list->copy_rate));
	for (size_t i = 0; i < list->n; i++) {
		struct hu_vm *vm = list->vms[i];
		bool runstate_ok = false;

		for (size_t j = 0; j < list->n; j++)
			if (j != i && streq(list->vms[j]->name, vm->name)) {
				char user[64];

				hu_user_name(list->vms[j]->uid, user, sizeof(user));
				hu_strv_pushf(&vm->blockers, &vm->n_blockers,
					      "another QEMU (pid %d, user %s, %s) has the same name",
					      (int)list->vms[j]->pid, user, list->vms[j]->exe);
				break;
			}
		if (!vm->mgr && !vm->skipped) {
			_cleanup_free_ char *why = NULL;
			bool as_root;

			/* What restore would refuse, said before anything stops. */
			if (hu_vm_start_as(vm, &as_root, &why) < 0)
				hu_strv_pushf(&vm->blockers, &vm->n_blockers,
					      "restore would not start it: %s", why ?: "out of memory");
		}
		if (!vm->qmp_ok)
			continue;
		for (size_t k = 0; k < ARRAY_SIZE(ok_runstates); k++)
			runstate_ok = runstate_ok || streq(vm->runstate, ok_runstates[k]);
		if (!runstate_ok)
			hu_strv_pushf(&vm->blockers, &vm->n_blockers, "runstate '%s' cannot be checkpointed",
				      vm->runstate);
		vm->suspend = vm->ai.has_vfio || opts->suspend_all;
		for (const char *const *n = opts->suspend_vms; n && *n; n++)
			vm->suspend = vm->suspend || streq(*n, vm->name);
		/* QEMU refuses cpr-reboot of a VFIO guest unless it is suspended. */
		if (vm->suspend && !streq(vm->runstate, "suspended")) {
			const char *why = vm->ai.has_vfio
						  ? "has a VFIO device: it must be suspended first, and"
						  : "to be suspended first,";
			if (!vm->ai.qga_path)
				hu_strv_pushf(
					&vm->blockers, &vm->n_blockers,
					"%s it has no guest agent (virtserialport name=org.qemu.guest_agent.0)",
					why);
			else if (vm->agent != HU_AGENT_ANSWERING)
				hu_strv_pushf(
					&vm->blockers, &vm->n_blockers,
					"%s its guest agent at %s does not answer (%s)", why, vm->ai.qga_path,
					vm->agent == HU_AGENT_CLOSED
						? "the guest has not opened the agent port: no agent runs in it"
						: "no reply within " HU_STR(HU_AGENT_PING_S) " s");
			else if (!vm->wakeup_ok)
				hu_strv_pushf(
					&vm->blockers, &vm->n_blockers,
					"%s this machine cannot wake from suspend (wakeup-suspend-support is false)",
					why);
		}
		plan_ram(vm, opts, margin);
		if (vm->mgr && vm->mgr->plan)
			vm->mgr->plan(vm, opts);
		need += vm->save_bytes;
		copy += vm->copy_bytes;
	}
	avail = free_bytes(ctx->state_dir);
	if (copy > 0)
		sample_copy_rate(ctx->state_dir, need, avail, &list->copy_rate);
	if (need > avail)
		for (size_t i = 0; i < list->n; i++)
			if (list->vms[i]->qmp_ok)
				hu_strv_pushf(
					&list->vms[i]->blockers, &list->vms[i]->n_blockers,
					"not enough space in %s: %llu MiB free, checkpoint needs %llu MiB",
					ctx->state_dir, (unsigned long long)(avail >> 20),
					(unsigned long long)((need + (1 << 20) - 1) >> 20));
	for (size_t i = 0; i < list->n; i++)
		blocked += list->vms[i]->n_blockers > 0;
	return blocked;
}
