/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libhu — checkpoint every QEMU on a host with cpr-reboot and bring it back.
 *
 * Public interface. The library never prints: progress and diagnostics go
 * through the context's log hook, errors are negative errno values.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hu_ctx;
struct hu_vm;
struct hu_vm_list;
struct hu_manifest;

/* Context: owns configuration and the log hook. Refcounted. */
int hu_new(struct hu_ctx **ret);
struct hu_ctx *hu_ref(struct hu_ctx *ctx);
struct hu_ctx *hu_unref(struct hu_ctx *ctx);

typedef void (*hu_log_fn)(void *userdata, int priority, const char *vm, const char *fmt, va_list args);
void hu_set_log_fn(struct hu_ctx *ctx, hu_log_fn fn, void *userdata);
void hu_set_log_priority(struct hu_ctx *ctx, int priority);
/* Why the last call that returned a negative errno failed, in words
 * ("what: why"), or NULL when it has nothing to add to the errno. A failure
 * of one VM is that VM's error instead (hu_vm_get_error). */
const char *hu_get_error(const struct hu_ctx *ctx);

int hu_set_state_dir(struct hu_ctx *ctx, const char *dir);
const char *hu_get_state_dir(const struct hu_ctx *ctx);
/* Root of /proc (tests point it elsewhere); default "/proc". */
int hu_set_proc_root(struct hu_ctx *ctx, const char *dir);
/* Root of sysfs (tests point it elsewhere); default "/sys". */
int hu_set_sys_root(struct hu_ctx *ctx, const char *dir);
/* Upper bound on concurrent per-VM workers; 0 = one per VM. */
void hu_set_jobs(struct hu_ctx *ctx, unsigned jobs);
/* Timeout for one QMP command / wait, in milliseconds. */
void hu_set_qmp_timeout(struct hu_ctx *ctx, unsigned ms);

enum hu_backing {
	HU_BACKING_PERSISTENT, /* named shared file on a medium that survives a reboot */
	HU_BACKING_VOLATILE,   /* shared, survives a QEMU restart but not a reboot */
	HU_BACKING_PRIVATE,    /* anonymous or private mapping: must be copied */
};
const char *hu_backing_to_string(enum hu_backing b);

/* A VM's guest agent, as plan found it. */
enum hu_agent {
	HU_AGENT_NONE,	    /* no agent channel (virtserialport name=org.qemu.guest_agent.0) */
	HU_AGENT_UNKNOWN,   /* not known: QEMU did not answer */
	HU_AGENT_CLOSED,    /* the guest has not opened the port: no agent runs, none was asked */
	HU_AGENT_SILENT,    /* the port is open, but nothing answered in time */
	HU_AGENT_ANSWERING, /* it answered guest-sync-delimited */
};
const char *hu_agent_to_string(enum hu_agent a);
/* QEMU size syntax: 512, 64K, 256M, 4G (binary suffixes). */
int hu_parse_size(const char *s, uint64_t *ret);

/* Policy for volatile shared RAM when a reboot follows the checkpoint. */
enum hu_volatile_policy {
	HU_VOLATILE_COPY,   /* copy it into the state file (default) */
	HU_VOLATILE_REFUSE, /* block the checkpoint */
};

struct hu_options {
	bool no_reboot; /* restore follows without a kernel reboot */
	enum hu_volatile_policy volatile_policy;
	const char *const *only_vms; /* NULL-terminated names, or NULL for all */
	/* restore: only VMs this manager runs ("none", "libvirt"), or NULL for
	 * all (the restore units split them: libvirt's need libvirtd up). */
	const char *only_manager;
	uint64_t space_margin;		/* device state allowance per VM; 0 = 64 MiB */
	const char *target_kernel;	/* recorded for restore to verify; NULL = none */
	bool suspend_all;		/* suspend every guest through its agent first */
	const char *const *suspend_vms; /* ... or these (NULL-terminated); VFIO guests always */
	unsigned suspend_timeout_s;	/* 0 = 30 */
	/* Restore follows at once (run --no-reboot): hu_checkpoint() restores
	 * every VM itself, under the same lock, and skips the flushes only a
	 * host crash needs; such a checkpoint is restored only in the boot
	 * that took it. */
	bool restore_follows;
	/* With restore_follows: quit each QEMU before its new one starts, even
	 * where the new one could start first (prelaunch, docs/design/prelaunch.md). */
	bool sequential;
};

/* --- discovery + plan ------------------------------------------------- */

/* Find every qemu-system-* process and ask each one over QMP what it is.
 * A VM whose QMP cannot be reached is listed with a blocker. */
int hu_discover(struct hu_ctx *ctx, const struct hu_options *opts, struct hu_vm_list **ret);
/* Decide per VM how it is saved and what blocks it. Returns the number of
 * blocked VMs (>= 0) or a negative errno. */
int hu_plan(struct hu_ctx *ctx, struct hu_vm_list *list, const struct hu_options *opts);
void hu_vm_list_free(struct hu_vm_list *list);

/* plan: how fast RAM that is copied (not in place) gets written, measured
 * once per plan when some VM copies: a bounded sample written and flushed
 * on the state dir's file system. bytes_per_s 0: not measured (why says why). */
struct hu_copy_rate {
	uint64_t bytes_per_s;
	uint64_t sample_bytes;
	char dir[256]; /* where the sample was written */
	char why[128]; /* not measured: why */
};
const struct hu_copy_rate *hu_vm_list_get_copy_rate(const struct hu_vm_list *list);

size_t hu_vm_list_count(const struct hu_vm_list *list);
struct hu_vm *hu_vm_list_get(const struct hu_vm_list *list, size_t i);

const char *hu_vm_get_name(const struct hu_vm *vm);
pid_t hu_vm_get_pid(const struct hu_vm *vm);
uint64_t hu_vm_get_ram_bytes(const struct hu_vm *vm);
enum hu_backing hu_vm_get_backing(const struct hu_vm *vm);
bool hu_vm_get_in_place(const struct hu_vm *vm);
/* Bytes the state file will take (device state, plus RAM for copies). */
uint64_t hu_vm_get_save_bytes(const struct hu_vm *vm);
/* Of those, the guest RAM copied into the state file (0: all in place). */
uint64_t hu_vm_get_copy_bytes(const struct hu_vm *vm);
const char *hu_vm_get_runstate(const struct hu_vm *vm);
/* Did QEMU answer? If not, RAM size, backing and save are unknown. */
bool hu_vm_get_queried(const struct hu_vm *vm);
const char *hu_vm_get_qemu_version(const struct hu_vm *vm);
enum hu_agent hu_vm_get_agent(const struct hu_vm *vm);
/* Who runs it: "none" (host-upgrade restarts it from its argv) or "libvirt". */
const char *hu_vm_get_manager(const struct hu_vm *vm);
unsigned hu_vm_get_vmid(const struct hu_vm *vm); /* a Proxmox VM's VMID, else 0 */

/* How run --no-reboot restarts it: "prelaunch" (the new QEMU starts before the
 * old one stops) or "sequential"; *ret_why says why sequential, else NULL. */
const char *hu_vm_get_restart(const struct hu_vm *vm, const char **ret_why);
/* For a prelaunch: how the new QEMU gets the RAM, "cpr-reboot" (the same shared files) or
 * "cpr-transfer" (memfd/shm RAM handed over); NULL for a sequential restart. */
const char *hu_vm_get_prelaunch_mode(const struct hu_vm *vm);
size_t hu_vm_get_n_blockers(const struct hu_vm *vm);
const char *hu_vm_get_blocker(const struct hu_vm *vm, size_t i);
/* The user its QEMU runs as (from /proc: its real uid), and the user its
 * argv has QEMU drop to after starting as root (-runas, -run-with user=) or
 * NULL. */
uid_t hu_vm_get_uid(const struct hu_vm *vm);
const char *hu_vm_get_runas(const struct hu_vm *vm);
/* Why discovery left this qemu-system-* process alone (its command line is
 * more than we read, or there are too many), or NULL. */
const char *hu_vm_get_skipped(const struct hu_vm *vm);
/* The name of a uid ("#UID" when it has none). */
int hu_user_name(uid_t uid, char *buf, size_t len);
/* After a checkpoint or restore: where the VM got to (running, saved,
 * checkpointed, restored, resumed: rolled back, failed) and, when it did not
 * get where it was going, why. */
const char *hu_vm_get_state(const struct hu_vm *vm);
const char *hu_vm_get_error(const struct hu_vm *vm);

/* --- checkpoint / restore / abort --------------------------------------- */

/* Checkpoint every planned VM in parallel; all-or-nothing. On failure every
 * VM that was stopped is resumed and a negative errno returned. The name of
 * the first VM that failed and why are reported through the log hook.
 * With opts->restore_follows it then restores them: a positive return is
 * the number of VMs that restore left down (their state says why). */
int hu_checkpoint(struct hu_ctx *ctx, struct hu_vm_list *list, const struct hu_options *opts);
/* Restore every checkpointed VM from the manifest in the state dir.
 * Returns the number of VMs that failed (>= 0) or a negative errno. */
int hu_restore(struct hu_ctx *ctx, const struct hu_options *opts);
/* After a crash: resume VMs a checkpoint left stopped, restore the ones it
 * already saved and quit. Returns failed VM count or a negative errno. */
int hu_abort(struct hu_ctx *ctx);

/* libvirt's qemu hook at "prepare begin" for domain `name`, its XML on
 * stdin (at most `len` bytes given): 0 = let libvirt start it (for our own
 * restore, after linking its saved RAM into place); -EPERM = the domain is
 * checkpointed and this is not our restore (*ret_msg says so, for libvirt
 * to show); another negative errno = refused, cannot tell (*ret_msg may
 * say why). Fast when nothing is pending; never calls libvirt. */
int hu_libvirt_hook(struct hu_ctx *ctx, const char *name, const char *xml, size_t len, char **ret_msg);

/* --- stage / reboot (kexec) ---------------------------------------------- */

/* 1 when a kernel is staged, 0 when not, -EOPNOTSUPP without kexec. */
int hu_kexec_loaded(struct hu_ctx *ctx);
/* What a negative return of staging means, for error messages. */
const char *hu_stage_strerror(int r);

struct hu_stage_opts {
	const char *kernel;	  /* bzImage of the new kernel */
	const char *initrd;	  /* NULL: /boot/initrd.img-VERSION if it exists */
	const char *append;	  /* NULL: the running kernel's command line */
	const char *modules_root; /* NULL: /lib/modules */
	bool dry_run;		  /* check everything, load nothing */
};
/* Read the version, find the initrd, compose and check the command line,
 * check the new kernel's modules, then kexec_file_load(2) it. *ret_version
 * gets the new kernel's release. */
int hu_stage(struct hu_ctx *ctx, const struct hu_stage_opts *o, const struct hu_vm_list *list,
	     char **ret_version);
int hu_unstage(struct hu_ctx *ctx);
/* Right before the reboot: a kernel is still staged, nothing will replace it. */
int hu_reboot_guard(struct hu_ctx *ctx);
/* Before anything stops: systemd can be reached (the system bus, or as root
 * its private socket) and has a kexec.target. Changes nothing. */
int hu_reboot_preflight(struct hu_ctx *ctx);
/* Start kexec.target through systemd (sd-bus), after hu_reboot_guard(). */
int hu_reboot_kexec(struct hu_ctx *ctx);
/* The marker on the new kernel's command line: a restore is pending. */
#define HU_CMDLINE_MARKER_KEY "hu.restore"
#define HU_CMDLINE_MARKER     HU_CMDLINE_MARKER_KEY "=1"

/* --- early boot (initrd side) -------------------------------------------- */

struct hu_early_opts {
	const char *root;	/* the real root as mounted in the initrd (/sysroot) */
	const char *run_dir;	/* where the report goes (/run/host-upgrade) */
	const char *wants_dir;	/* /run/systemd/system/sysinit.target.wants, or NULL */
	const char *unit_path;	/* the restore unit the wants-link points to */
	const char *dropin_dir; /* its drop-in dir under /run (RAM mounts), or NULL */
	unsigned wait_ms;	/* how long to wait for pmem/DAX devices */
	bool no_modules;	/* do not load modules (tests) */
};
/* Only with the marker on the command line: load modules, check the RAM
 * media of every checkpointed VM, arrange the restore unit. Returns the
 * number of media that did not come back, or a negative errno (the report
 * and the restore unit's link are written even when the manifest could
 * not be read). */
int hu_early_boot(struct hu_ctx *ctx, const struct hu_early_opts *o);

/* --- manifest (status) ---------------------------------------------------- */

int hu_manifest_load(struct hu_ctx *ctx, struct hu_manifest **ret);
/* What a negative return of hu_manifest_load() means. */
const char *hu_manifest_strerror(int r);
struct hu_manifest *hu_manifest_free(struct hu_manifest *m);
const char *hu_manifest_get_phase(const struct hu_manifest *m);
const char *hu_manifest_get_target_kernel(const struct hu_manifest *m);
size_t hu_manifest_count(const struct hu_manifest *m);
const char *hu_manifest_vm_name(const struct hu_manifest *m, size_t i);
/* One of running|checkpointed|restored|failed. */
const char *hu_manifest_vm_state(const struct hu_manifest *m, size_t i);
/* Milliseconds between the VM stopping and running again, or -1. */
int64_t hu_manifest_vm_downtime_ms(const struct hu_manifest *m, size_t i);
/* How far behind the guest clock was when restore set it, or false. */
bool hu_manifest_vm_clock_step_ms(const struct hu_manifest *m, size_t i, int64_t *ret);
const char *hu_manifest_vm_error(const struct hu_manifest *m, size_t i);
pid_t hu_manifest_vm_pid(const struct hu_manifest *m, size_t i);
/* Does the QEMU the manifest records for this VM run (pid and start time)? */
bool hu_manifest_vm_alive(const struct hu_manifest *m, size_t i);

#ifdef __cplusplus
}
#endif
