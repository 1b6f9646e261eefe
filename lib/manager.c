/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manager: who runs a QEMU. Nobody ("none"): host-upgrade talks to its QMP
 * socket, quits it and starts its recorded argv again. A VM manager
 * (libvirt.c): it owns the monitor and the process, and must keep managing
 * the VM afterwards, so the phases go through it. Proxmox (proxmox.c): the
 * monitor and the process are plain QEMU's, what it does around them is not. Each phase calls out
 * here; what "none" does is the phase's own code or the defaults below.
 */
#include <fcntl.h>
#include <stdio.h>
#include "hu-private.h"

static const struct hu_manager_ops *const managers[] = {
#ifdef HU_WITH_LIBVIRT
	&hu_manager_libvirt,
#endif
	&hu_manager_proxmox, NULL
};

const char *hu_manager_name(const struct hu_vm *vm)
{
	return vm->mgr ? vm->mgr->name : "none";
}

const char *hu_vm_get_manager(const struct hu_vm *vm)
{
	return hu_manager_name(vm);
}

unsigned hu_vm_get_vmid(const struct hu_vm *vm)
{
	return hu_proxmox_vmid(vm);
}

int hu_manager_by_name(const char *name, const struct hu_manager_ops **ret)
{
	if (streq(name, "none")) {
		*ret = NULL;
		return 0;
	}
	for (size_t i = 0; managers[i]; i++)
		if (streq(managers[i]->name, name)) {
			*ret = managers[i];
			return 0;
		}
	return -EPROTONOSUPPORT;
}

/* libvirt's QEMU: -uuid, -name guest=NAME, and libvirt's pid file for NAME
 * names this very process. */
static bool libvirt_runs(const struct hu_vm *vm)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	bool uuid = false;
	long pid;
	char *end;

	for (size_t i = 1; i + 1 < vm->argc; i++)
		uuid = uuid || streq(vm->argv[i], "-uuid");
	if (!uuid || !vm->ai.name || !hu_name_is_safe(vm->ai.name))
		return false;
	if (asprintf(&path, "/run/libvirt/qemu/%s.pid", vm->ai.name) < 0 ||
	    hu_read_file(path, 64, &text, NULL) < 0)
		return false;
	pid = strtol(text, &end, 10);
	return end != text && pid == vm->pid;
}

void hu_manager_claim(struct hu_vm *vm)
{
	if (hu_proxmox_claim(vm))
		return;
	if (!libvirt_runs(vm))
		return;
#ifdef HU_WITH_LIBVIRT
	vm->mgr = &hu_manager_libvirt;
#else
	hu_strv_pushf(&vm->blockers, &vm->n_blockers,
		      "libvirt domain %s: host-upgrade was built without libvirt support", vm->ai.name);
#endif
}

int hu_manager_monitor(struct hu_vm *vm, unsigned timeout_ms, struct hu_qmp **ret, char **ret_why)
{
	int r;

	if (vm->mgr && vm->mgr->monitor)
		return vm->mgr->monitor(vm, ret, ret_why);
	if (!vm->ai.qmp_path) {
		*ret_why = strdup(vm->ai.qmp_error ?: "no QMP socket");
		return -ENOENT;
	}
	r = hu_qmp_connect(vm->ai.qmp_path, timeout_ms, ret);
	if (r < 0 && asprintf(ret_why, "QMP %s: %s", vm->ai.qmp_path, hu_qmp_strerror(r)) < 0)
		*ret_why = NULL;
	return r;
}

void hu_state_fdset_remove(struct hu_vm *vm)
{
	json_object *args = json_object_new_object();

	json_object_object_add(args, "fdset-id", json_object_new_int64(HU_STATE_FDSET));
	hu_qmp_execute(vm->qmp, "remove-fd", args, NULL, NULL);
}

/* A QEMU that does not run as root (its owner's, or one that dropped
 * privileges with -runas) cannot open our 0600 file in our 0700 dir, and
 * one in a -chroot would not find it: we open it, and hand the descriptor
 * over (add-fd). */
int hu_state_fd_uri(struct hu_vm *vm, bool out, char **ret_uri)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *qerr = NULL;
	json_object *args;
	int r;

	fd = out ? open(vm->state_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)
		 : open(vm->state_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return hu_vm_set_error(vm, -errno, "state file %s: %m", vm->state_file);
	hu_state_fdset_remove(vm); /* one left by an interrupted run */
	args = json_object_new_object();
	json_object_object_add(args, "fdset-id", json_object_new_int64(HU_STATE_FDSET));
	json_object_object_add(args, "opaque", json_object_new_string("host-upgrade state"));
	r = hu_qmp_execute_fd(vm->qmp, "add-fd", args, fd, NULL, &qerr);
	if (r < 0)
		return hu_vm_set_error(vm, r, "add-fd of the state file: %s", qerr ?: hu_qmp_strerror(r));
	if (asprintf(ret_uri, "file:/dev/fdset/%lld", HU_STATE_FDSET) < 0)
		return -ENOMEM;
	return 0;
}

/* Does this QEMU get its state file as a descriptor? */
static bool state_by_fd(const struct hu_vm *vm)
{
	return vm->uid != 0 || vm->ai.chroot;
}

int hu_manager_state_uri(struct hu_vm *vm, bool out, char **ret_uri)
{
	if (vm->mgr && vm->mgr->state_uri)
		return vm->mgr->state_uri(vm, out, ret_uri);
	if (state_by_fd(vm))
		return hu_state_fd_uri(vm, out, ret_uri);
	return asprintf(ret_uri, "file:%s", vm->state_file) < 0 ? -ENOMEM : 0;
}

int hu_manager_cont(struct hu_vm *vm, char **ret_err)
{
	if (vm->mgr && vm->mgr->cont)
		return vm->mgr->cont(vm, ret_err);
	return hu_qmp_execute(vm->qmp, "cont", NULL, NULL, ret_err);
}

const char *hu_manager_ram_path(struct hu_vm *vm, size_t i)
{
	const char *p = vm->mgr && vm->mgr->ram_path ? vm->mgr->ram_path(vm, i) : NULL;

	return p ?: vm->memdevs[i].mem_path;
}

void hu_manager_done(struct hu_vm *vm)
{
	if (vm->mgr && vm->mgr->done)
		vm->mgr->done(vm);
	else if (!vm->mgr && state_by_fd(vm) && vm->qmp)
		hu_state_fdset_remove(vm); /* QEMU would keep our state file open */
}
