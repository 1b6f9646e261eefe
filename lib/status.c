/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * status: what a loaded manifest says, through the public getters, with
 * our VM states mapped onto the four of the status contract.
 */
#include "hu-private.h"

/* clang-format off */
const char *hu_manifest_get_phase(const struct hu_manifest *m) { return m->phase; }
const char *hu_manifest_get_target_kernel(const struct hu_manifest *m) { return m->target_kernel; }
size_t hu_manifest_count(const struct hu_manifest *m) { return m->list.n; }
const char *hu_manifest_vm_name(const struct hu_manifest *m, size_t i) { return m->list.vms[i]->name; }
const char *hu_manifest_vm_error(const struct hu_manifest *m, size_t i) { return m->list.vms[i]->error; }
pid_t hu_manifest_vm_pid(const struct hu_manifest *m, size_t i) { return m->list.vms[i]->pid; }
/* clang-format on */
bool hu_manifest_vm_clock_step_ms(const struct hu_manifest *m, size_t i, int64_t *ret)
{
	*ret = m->list.vms[i]->clock_step_ms;
	return m->list.vms[i]->has_clock_step;
}

/* clang-format off */
bool hu_manifest_vm_alive(const struct hu_manifest *m, size_t i) { return hu_vm_process_alive(m->list.vms[i]); }
/* clang-format on */

/* The status contract has four states; map ours onto them. */
const char *hu_manifest_vm_state(const struct hu_manifest *m, size_t i)
{
	switch (m->list.vms[i]->state) {
	case HU_VM_RUNNING:
	case HU_VM_RESUMED: return "running";
	case HU_VM_STOPPING:
	case HU_VM_SAVED:
	case HU_VM_CHECKPOINTED:
	case HU_VM_RESTORING: return "checkpointed";
	case HU_VM_RESTORED: return "restored";
	case HU_VM_FAILED: return "failed";
	}
	return "failed";
}

int64_t hu_manifest_vm_downtime_ms(const struct hu_manifest *m, size_t i)
{
	const struct hu_vm *vm = m->list.vms[i];

	if (vm->stopped_at_ms <= 0 || vm->running_at_ms < vm->stopped_at_ms)
		return -1;
	return vm->running_at_ms - vm->stopped_at_ms;
}
