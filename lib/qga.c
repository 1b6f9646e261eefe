/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QEMU guest agent, as the checkpoint needs it: suspend a guest before
 * its state is saved (VFIO requires the suspended runstate), wake it after
 * restore, and set its clock, which is behind by the outage. The agent is
 * untrusted and may be silent or broken: every step has a deadline and a
 * silent or garbage agent is an error, never a hang.
 */
#include <stdio.h>
#include <time.h>
#include "hu-private.h"

/* A fresh id each time: a late reply to an older sync cannot match. */
static int64_t sync_id(const struct hu_vm *vm)
{
	return (hu_mono_ms() ^ (int64_t)vm->pid << 20) & 0x7fffffff;
}

int hu_qga_open(struct hu_vm *vm, unsigned timeout_ms, struct hu_qmp **ret)
{
	struct hu_qmp *g = NULL;
	int r;

	if (!vm->ai.qga_path)
		return -ENOENT;
	r = hu_qmp_connect_raw(vm->ai.qga_path, timeout_ms, &g);
	if (r < 0)
		return r;
	r = hu_qmp_sync_delimited(g, sync_id(vm));
	if (r < 0) {
		hu_qmp_close(g);
		return r;
	}
	*ret = g;
	return 0;
}

int hu_qga_ping_all(struct hu_vm *const *vms, size_t n, unsigned timeout_ms)
{
	_cleanup_free_ const char **paths = calloc(n ?: 1, sizeof(*paths));
	_cleanup_free_ int64_t *ids = calloc(n ?: 1, sizeof(*ids));
	_cleanup_free_ struct hu_vm **asked = calloc(n ?: 1, sizeof(*asked));
	_cleanup_free_ int *res = calloc(n ?: 1, sizeof(*res));
	size_t k = 0;
	int r;

	if (!paths || !ids || !asked || !res)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (vms[i]->qmp_ok && vms[i]->agent == HU_AGENT_UNKNOWN && vms[i]->ai.qga_path) {
			asked[k] = vms[i];
			paths[k] = vms[i]->ai.qga_path;
			ids[k++] = sync_id(vms[i]);
		}
	r = hu_qmp_sync_many(paths, ids, k, timeout_ms, res);
	if (r < 0)
		return r;
	for (size_t i = 0; i < k; i++)
		asked[i]->agent = res[i] >= 0 ? HU_AGENT_ANSWERING : HU_AGENT_SILENT;
	return 0;
}

static bool runstate_is(struct hu_qmp *q, const char *want)
{
	_cleanup_free_ char *st = NULL;

	return hu_qmp_query_status(q, &st) >= 0 && streq(st, want);
}

/* Suspend to RAM through the agent and wait (on QMP) until QEMU says so:
 * guest-suspend-ram sends no reply on success. */
int hu_qga_suspend(struct hu_vm *vm, unsigned timeout_ms, char **ret_error)
{
	struct hu_qmp *g = NULL;
	int64_t deadline = hu_mono_ms() + timeout_ms;
	int r = hu_qga_open(vm, 5000, &g);

	if (r < 0)
		return hu_errorf(ret_error, r, "guest agent %s: %s", vm->ai.qga_path ?: "(none)",
				 hu_qmp_strerror(r));
	r = hu_qmp_send(g, "guest-suspend-ram", NULL);
	hu_qmp_close(g);
	if (r < 0)
		return hu_errorf(ret_error, r, "guest-suspend-ram: %s", hu_qmp_strerror(r));
	while (hu_mono_ms() < deadline) {
		int64_t left = deadline - hu_mono_ms();

		r = hu_qmp_wait_event(vm->qmp, "SUSPEND", NULL, NULL, left < 500 ? (unsigned)left : 500,
				      NULL);
		if ((r >= 0 || r == -ETIMEDOUT) && runstate_is(vm->qmp, "suspended"))
			return 0;
		if (r < 0 && r != -ETIMEDOUT)
			break;
	}
	return hu_errorf(ret_error, -ETIMEDOUT, "the guest did not suspend within %u s", timeout_ms / 1000);
}

/* system_wakeup and wait (on the WAKEUP event) until it runs. */
int hu_vm_wakeup(struct hu_vm *vm, unsigned timeout_ms, char **ret_error)
{
	_cleanup_free_ char *qerr = NULL;
	int64_t deadline = hu_mono_ms() + timeout_ms;
	int r = hu_qmp_execute(vm->qmp, "system_wakeup", NULL, NULL, &qerr);

	if (r < 0)
		return hu_errorf(ret_error, r, "system_wakeup: %s", qerr ?: hu_qmp_strerror(r));
	while (hu_mono_ms() < deadline) {
		int64_t left = deadline - hu_mono_ms();

		if (runstate_is(vm->qmp, "running"))
			return 0;
		r = hu_qmp_wait_event(vm->qmp, "WAKEUP", NULL, NULL, left < 200 ? (unsigned)left : 200, NULL);
		if (r < 0 && r != -ETIMEDOUT) /* the connection is gone: waiting would spin */
			return hu_errorf(ret_error, r, "waiting for the guest to wake up: %s",
					 hu_qmp_strerror(r));
	}
	return hu_errorf(ret_error, -ETIMEDOUT, "the guest did not wake up within %u s", timeout_ms / 1000);
}

/* Set the guest's clock to the host's; *ret_step_ms is how far behind it was. */
int hu_qga_fix_clock(struct hu_vm *vm, unsigned timeout_ms, int64_t *ret_step_ms)
{
	_cleanup_json_ json_object *t = NULL;
	struct hu_qmp *g = NULL;
	struct timespec now;
	int64_t host_ns, guest_ns;
	json_object *args;
	int r;

	/* A guest that just woke up may need a moment before its agent answers. */
	for (int64_t deadline = hu_mono_ms() + timeout_ms;;) {
		r = hu_qga_open(vm, 2000, &g);
		if (r >= 0 || hu_mono_ms() > deadline)
			break;
		usleep(200000);
	}
	if (r < 0)
		return r;
	r = hu_qmp_execute(g, "guest-get-time", NULL, &t, NULL);
	if (r >= 0 && !json_object_is_type(t, json_type_int))
		r = -EPROTO;
	if (r < 0) {
		hu_qmp_close(g);
		return r;
	}
	guest_ns = json_object_get_int64(t);
	clock_gettime(CLOCK_REALTIME, &now);
	host_ns = hu_timespec_ns(&now);
	args = json_object_new_object();
	json_object_object_add(args, "time", json_object_new_int64(host_ns));
	r = hu_qmp_execute(g, "guest-set-time", args, NULL, NULL);
	hu_qmp_close(g);
	if (r >= 0)
		*ret_step_ms = hu_clock_step_ms(host_ns, guest_ns);
	return r;
}

/* How far the guest's clock was behind, from what the guest said (any
 * int64): bounded, never an overflow. */
int64_t hu_clock_step_ms(int64_t host_ns, int64_t guest_ns)
{
	int64_t d;

	if (__builtin_sub_overflow(host_ns, guest_ns, &d))
		d = guest_ns > host_ns ? INT64_MIN : INT64_MAX;
	/* within what the manifest takes back (clock_step_ms: +-INT64_MAX / 2) */
	return d / 1000000;
}
