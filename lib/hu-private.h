/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libhu internals: shared by the phase files, never installed. */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <json-c/json.h>

#include "libhu.h"

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a)  (sizeof(a) / sizeof((a)[0]))
#define HU_STR_(x)     #x
#define HU_STR(x)      HU_STR_(x)

/* clang-format off */
static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void json_putp(json_object **o) { if (*o) json_object_put(*o); }
/* clang-format on */
#define _cleanup_free_	   _cleanup_(freep)
#define _cleanup_close_	   _cleanup_(closep)
#define _cleanup_json_	   _cleanup_(json_putp)
/* The project's own types (all take NULL). */
/* clang-format off */
static inline void hu_manifest_freep(struct hu_manifest **m) { hu_manifest_free(*m); }
static inline void hu_vm_list_freep(struct hu_vm_list **l) { hu_vm_list_free(*l); }
/* clang-format on */
#define _cleanup_manifest_ _cleanup_(hu_manifest_freep)
#define _cleanup_vm_list_  _cleanup_(hu_vm_list_freep)

static inline void *steal_ptr(void *pp)
{
	void **p = pp, *v = *p;
	*p = NULL;
	return v;
}
#define TAKE_PTR(p) steal_ptr(&(p))
/* clang-format off */
static inline int take_fd(int *fd) { int v = *fd; *fd = -1; return v; }
/* clang-format on */
#define TAKE_FD(fd) take_fd(&(fd))
#define streq(a, b) (strcmp((a), (b)) == 0)

/* Limits on what outside input may make us hold. */
#define HU_MAX_CMDLINE	       (256 * 1024) /* /proc/PID/cmdline */
#define HU_MAX_ARGS	       4096
#define HU_MAX_QMP_MESSAGE     (4 * 1024 * 1024)
#define HU_MAX_QMP_EVENTS      64
#define HU_MAX_MANIFEST	       (16 * 1024 * 1024)
#define HU_MAX_NAME	       64
#define HU_MAX_VMS	       1024  /* QEMUs examined, and in a manifest */
#define HU_MAX_SCANNED	       65536 /* QEMUs listed (past HU_MAX_VMS: pid, exe, uid only) */
#define HU_MAX_MEMDEVS	       64
#define HU_MAX_DISKS	       64
/* How long restore waits, after a reboot, for a pmem device not there yet. */
#define HU_MEDIA_WAIT_MS       30000
/* How long discover waits for the agents behind open ports, all together. */
#define HU_AGENT_PING_S	       3
#define HU_AGENT_PING_MS       (HU_AGENT_PING_S * 1000)
#define HU_MANIFEST_VERSION    4 /* 2: XXH3 RAM digest, medium uuid; 3: per-VM "flushed"; 4: "manager" */
#define HU_MANIFEST_OLDEST     3 /* still read */
/* Device state, ROMs and VGA RAM that always land in the state file. */
#define HU_DEVICE_STATE_MARGIN (64ULL << 20)

/* ---- ctx.c: the context and its log hook ---- */
struct hu_ctx {
	int refcount;
	hu_log_fn log_fn;
	void *log_data;
	int log_priority;
	char *state_dir;
	int state_fd;	  /* util.c hu_state_dir_fd: the state dir, checked; -1 until then */
	bool state_fd_rw; /* ... and made 0700 */
	char *proc_root;
	char *sys_root;
	unsigned jobs;
	unsigned qmp_timeout_ms;
	unsigned suspend_timeout_s;
	pthread_mutex_t log_lock;
	char *error;   /* why the last call that failed failed (hu_fail) */
	void *libvirt; /* libvirt.c: the connection, opened on first use */
};

_printf_(4, 5) void hu_log(struct hu_ctx *ctx, int prio, const char *vm, const char *fmt, ...);
/* The error contract: lib never logs an error. A call that fails returns a
 * negative errno; what went wrong is in the VM's record for a VM-scoped
 * failure (hu_vm_set_error) and in the context otherwise (hu_fail), and the
 * caller says it once. The log hook carries progress (LOG_INFO) and detail
 * (LOG_DEBUG) only. */
_printf_(3, 4) int hu_fail(struct hu_ctx *ctx, int r, const char *fmt, ...);
void hu_clear_error(struct hu_ctx *ctx);
#define hu_info(ctx, vm, ...) hu_log(ctx, LOG_INFO, vm, __VA_ARGS__)
#define hu_dbg(ctx, vm, ...)  hu_log(ctx, LOG_DEBUG, vm, __VA_ARGS__)

/* ---- util.c: time, files, strings, threads, the state dir lock ---- */
int64_t hu_now_ms(void);  /* CLOCK_REALTIME, survives a reboot */
int64_t hu_mono_ms(void); /* CLOCK_MONOTONIC */
int64_t hu_mono_us(void);
struct timespec;
int64_t hu_timespec_ns(const struct timespec *ts); /* saturating */
/* A path of a file type `accept` takes (-EBADFD otherwise), checked on an
 * O_PATH descriptor before the real open: never blocking on a FIFO, never
 * opening a device node it refuses; path relative to dirfd (or AT_FDCWD). */
struct stat;
int hu_openat_checked(int dirfd, const char *path, int flags, mode_t mode,
		      bool (*accept)(const struct stat *st));
/* Regular files only. */
int hu_openat_regular(int dirfd, const char *path, int flags, mode_t mode);
int hu_read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* All of fd (at most max bytes, -EFBIG past it), NUL-terminated. */
int hu_read_fd(int fd, size_t max, char **ret, size_t *ret_len);
/* The same, not following a symlink (-ELOOP): for files in the state dir. */
int hu_read_state_file(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len);
/* Crash-safe replace of dirfd/name (O_EXCL temp file, rename, fsync). */
int hu_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* The same, flushed only when `durable`: without, a reader still sees the
 * old or the new file after a kill, but a host crash may lose it. */
int hu_write_file_replace_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			     bool durable);
int hu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
int hu_fsync_path(const char *path);
void hu_fsync_paths(const char *const *paths, size_t n, int *results);
/* A directory only we can write (owner = our euid, no group/other write),
 * checked on its fd (O_NOFOLLOW), made and set 0700 when `tighten`; its fd. */
int hu_open_private_dir(const char *dir, bool tighten, char **ret_error);
int hu_mkdir_private(const char *dir);
int hu_mkdir_p(const char *path, mode_t mode);
int hu_strdup_replace(char **dst, const char *src);
int hu_strv_push(char ***strv, size_t *n, const char *s);
void hu_strv_free(char **strv, size_t n);
int hu_parse_size(const char *s, uint64_t *ret);
bool hu_name_is_safe(const char *name);
int hu_read_boot_id(char *buf, size_t len);
/* Run fn(i, data) for i in [0,n) on up to `jobs` threads (0 = n). */
void hu_parallel_for(size_t n, unsigned jobs, void (*fn)(size_t i, void *data), void *data);
/* Add a formatted string to a list, for blockers and errors. */
_printf_(3, 4) int hu_strv_pushf(char ***strv, size_t *n, const char *fmt, ...);
/* The state dir's fd, checked (hu_open_private_dir), kept by the context. */
int hu_state_dir_fd(struct hu_ctx *ctx, bool create, char **ret_error);
/* A regular file in the state dir, O_NOFOLLOW, created 0600 with O_CREAT. */
int hu_state_open(struct hu_ctx *ctx, const char *name, int flags);
int hu_lock_state_dir(struct hu_ctx *ctx, int *ret_fd);
/* Wait until process `pid` (started at `starttime`, 0 = whichever has the
 * pid now) has exited, on its pidfd. 0 once gone, -ETIMEDOUT. */
int hu_pid_wait_exit(struct hu_ctx *ctx, pid_t pid, uint64_t starttime, unsigned timeout_ms);
/* Internal helpers that can say why they failed take `char **ret_error`
 * (may be NULL): on failure it gets a malloc'ed text (replacing one there),
 * on success it is left alone. Returns r. */
_printf_(3, 4) int hu_errorf(char **ret_error, int r, const char *fmt, ...);

/* ---- qemu-argv.c: parse a QEMU command line (untrusted) ---- */
struct hu_kv {
	char *key;
	char *value;
};
struct hu_opts {
	struct hu_kv *kv;
	size_t n;
};
/* QEMU keyval "implied,k=v,k=v" with ",," as an escaped comma, or a JSON
 * object when the string starts with '{'. */
int hu_opts_parse(const char *s, const char *implied_key, struct hu_opts *ret);
const char *hu_opts_get(const struct hu_opts *o, const char *key);
void hu_opts_clear(struct hu_opts *o);
bool hu_qemu_option_takes_arg(const char *opt);
/* "name" of "-name" or "--name"; NULL for a positional argument. */
const char *hu_qemu_option_name(const char *arg);

struct hu_argv_info {
	char *name;	 /* -name guest=NAME / -name NAME */
	char *qmp_path;	 /* unix socket path of a control monitor (server) */
	char *qmp_error; /* why there is no usable QMP endpoint */
	char *qga_path;	 /* guest agent chardev socket */
	char *qga_id;	 /* its chardev id (query-chardev's label) */
	char *pidfile;
	bool daemonize;
	bool has_vfio;
	bool has_incoming;
	bool aux_ram_share; /* -machine aux-ram-share=on: every RAM block shareable (cpr-transfer) */
	char **mem_paths;   /* mem-path= of file backends */
	size_t n_mem_paths;
	char **object_ids; /* -object id= */
	size_t n_object_ids;
	char **device_ids; /* -device id= */
	size_t n_device_ids;
	char *passes_fd; /* an option that hands QEMU a file descriptor */
	char *runas;	 /* -runas USER / -run-with user=USER: QEMU drops to USER itself */
	char *chroot;	 /* -chroot DIR / -run-with chroot=DIR */
	/* Unix socket paths QEMU binds (listening chardevs, -vnc unix:, -netdev
	 * stream/dgram unix), as written (relative: from its cwd). */
	char **listen_paths;
	size_t n_listen_paths;
	bool listen_paths_over; /* more than HU_MAX_LISTEN_PATHS */
	unsigned once;		/* HU_ONCE_*: what a second QEMU cannot open beside this one */
};
#define HU_MAX_LISTEN_PATHS 64
enum {
	HU_ONCE_TAP = 1 << 0,	   /* a tap or bridge netdev */
	HU_ONCE_BACKEND = 1 << 1,  /* vhost-user, swtpm: a back end of one connection */
	HU_ONCE_HOST_DEV = 1 << 2, /* usb-host, vhost-scsi/vsock/vdpa, af-xdp, TPM passthrough */
	HU_ONCE_PORT = 1 << 3,	   /* a TCP port it listens on (VNC, chardev, gdb, hostfwd) */
};
int hu_argv_parse(char *const *argv, size_t argc, struct hu_argv_info *ret);
void hu_argv_info_clear(struct hu_argv_info *info);
/* Copy argv without our own "-incoming defer" (restore adds it back). */
int hu_argv_strip_incoming(char *const *argv, size_t argc, char ***ret, size_t *ret_n);
bool hu_argv_has_incoming_defer(char *const *argv, size_t argc);
int hu_argv_replace_mem_path(char **argv, size_t argc, const char *old, const char *new);

/* ---- qemu-config.c: QEMU's -readconfig files (untrusted) ---- */
#define HU_MAX_CONFIG_BYTES    (64 * 1024)
#define HU_MAX_CONFIG_LINE     1023 /* QEMU reads a line with fgets into 1024 bytes */
#define HU_MAX_CONFIG_LINES    2048
#define HU_MAX_CONFIG_NAME     63 /* a group, id or key: QEMU's %63s */
#define HU_MAX_CONFIG_SECTIONS 256
#define HU_MAX_CONFIG_KEYS     64		     /* in one section */
#define HU_MAX_CONFIG_FILES    16		     /* -readconfig options, and the default file */
#define HU_QEMU_DEFAULT_CONFIG "/etc/qemu/qemu.conf" /* read unless -no-user-config */
struct hu_config_file {
	char *path;   /* as QEMU opens it: absolute, or from its working directory */
	bool present; /* false: the default file was not there (QEMU would read one that appears) */
	uint64_t size;
	char sha256[65];
};
void hu_config_files_free(struct hu_config_file *f, size_t n);
/* Who reads a config file: QEMU as uid, relative paths from cwd; as_root
 * for a QEMU that runs as root (the file may be root's alone). */
struct hu_config_reader {
	const char *cwd;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
	bool as_root;
};
/* The sections of a config file that create something, as command-line
 * options ("-device" "id=ehci,driver=..."), appended to *argv. Bad input is
 * -EINVAL/-E2BIG and *ret_error "line N: why". */
int hu_qemu_config_to_argv(const char *text, size_t len, char ***argv, size_t *argc, char **ret_error);
/* One config file, as QEMU would open it but only if it is a regular file,
 * not of /proc or /sys, at most HU_MAX_CONFIG_BYTES, readable by rd's user;
 * its text (may be NULL) and its record (path, size, sha256). */
int hu_qemu_config_read(const struct hu_config_reader *rd, const char *path, char **ret_text, size_t *ret_len,
			struct hu_config_file *ret, char **ret_error);
/* Parse argv with every -readconfig FILE (and default_config unless
 * -no-user-config; NULL: none) read in its place into *ai (replaced on
 * success), and record the files read. Without any config file, *ai and
 * the files are left as they are. */
int hu_argv_parse_configs(char *const *argv, size_t argc, const struct hu_config_reader *rd,
			  const char *default_config, struct hu_argv_info *ai,
			  struct hu_config_file **ret_files, size_t *ret_n, char **ret_error);
/* restore: every file as recorded (-ESTALE and why when not). */
int hu_config_files_check(const char *cwd, const struct hu_config_file *files, size_t n, char **ret_error);

/* ---- qmp.c: QMP and guest agent protocol ---- */
struct hu_qmp;
int hu_qmp_connect(const char *path, unsigned timeout_ms, struct hu_qmp **ret);
/* Wrap an already connected fd (tests use socketpairs). */
int hu_qmp_open_fd(int fd, unsigned timeout_ms, struct hu_qmp **ret);
void hu_qmp_close(struct hu_qmp *q);
/* clang-format off */
static inline void hu_qmp_closep(struct hu_qmp **q) { hu_qmp_close(*q); }
/* clang-format on */
#define _cleanup_qmp_ _cleanup_(hu_qmp_closep)
void hu_qmp_set_timeout(struct hu_qmp *q, unsigned ms);
/* Run one command; takes ownership of args. On success *ret gets the "return" value (may be NULL if
 * ret is NULL). On a QMP error returns -EREMOTEIO and sets *ret_err_class /
 * *ret_err_desc (malloc'ed) when given. */
int hu_qmp_execute(struct hu_qmp *q, const char *cmd, json_object *args, json_object **ret, char **ret_error);
/* Wait for an event named `name` (already queued or new). If match is given,
 * only events whose data satisfies it count. Returns 0, -ETIMEDOUT, ... */
int hu_qmp_wait_event(struct hu_qmp *q, const char *name, bool (*match)(json_object *data, void *userdata),
		      void *userdata, unsigned timeout_ms, json_object **ret_data);
int hu_qmp_send(struct hu_qmp *q, const char *cmd, json_object *args);
int hu_qmp_connect_raw(const char *path, unsigned timeout_ms, struct hu_qmp **ret);
int hu_qmp_sync_delimited(struct hu_qmp *q, int64_t id);
/* guest-sync-delimited on n agent sockets at once, all waited for with one
 * deadline: ret[i] is 0 when paths[i] answered ids[i] in time, else -errno. */
int hu_qmp_sync_many(const char *const *paths, const int64_t *ids, size_t n, unsigned timeout_ms, int *ret);
int hu_qmp_open_raw_fd(int fd, unsigned timeout_ms, struct hu_qmp **ret);
/* Drop queued events. */
void hu_qmp_clear_events(struct hu_qmp *q);
const char *hu_qmp_greeting_version(struct hu_qmp *q);
/* What a negative return of the QMP layer means, for error messages. */
const char *hu_qmp_strerror(int r);
int hu_qmp_query_status(struct hu_qmp *q, char **ret_status);
/* Another transport behind the same API (libvirt.c): command() gets a
 * whole request and hands back the whole reply text (malloc'ed), or a
 * negative errno and why. Events are not delivered: waiters poll. */
struct hu_qmp_ext {
	int (*command)(void *data, const char *request, int fd, unsigned timeout_ms, char **ret_reply,
		       char **ret_error);
	void (*close)(void *data);
};
int hu_qmp_open_ext(const struct hu_qmp_ext *ext, void *data, unsigned timeout_ms, struct hu_qmp **ret);
/* A command with one file descriptor for QEMU (add-fd); -EOPNOTSUPP where
 * the transport cannot pass one. Takes ownership of args. */
int hu_qmp_execute_fd(struct hu_qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
		      char **ret_error);

/* ---- ram.c: the RAM medium ---- */
enum hu_medium_kind {
	HU_MEDIUM_FILE,	  /* a file on some filesystem: only the digest tells */
	HU_MEDIUM_DEVDAX, /* /dev/daxX.Y */
	HU_MEDIUM_PMEM,	  /* a pmem block device itself */
	HU_MEDIUM_FSDAX,  /* a file on a filesystem on a pmem device */
};

struct hu_medium {
	enum hu_medium_kind kind;
	char *device;  /* dax0.0, pmem0 */
	char *ns;      /* namespace0.0 */
	char *uuid;    /* of the namespace's label or info block; none for raw label-less pmem */
	uint64_t size; /* bytes */
	char *mode;    /* the namespace mode: fsdax, devdax, raw, sector */
};

/* The backing class of a RAM file (mem-path) and why. */
int hu_classify_path(const char *path, bool share, enum hu_backing *ret, char **ret_why);
int hu_classify_fs(long f_type, enum hu_backing *ret);
/* Digest of sampled pages of a RAM file or DAX device. */
int hu_ram_digest(const char *path, uint64_t size, uint64_t *ret);
/* A file type RAM may live in: a regular file, a block device, device DAX. */
bool hu_ram_medium_type(const struct stat *st);
const char *hu_ram_strerror(int r);
int hu_ram_medium(struct hu_ctx *ctx, const char *mem_path, struct hu_medium *ret);
int hu_ram_medium_check(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_why);
int hu_ram_medium_locate(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_moved_to, char **ret_why);
int hu_ram_medium_wait(struct hu_ctx *ctx, const struct hu_medium *m, int64_t deadline, char **ret_why);
int hu_ram_medium_follow(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_device,
			 struct hu_medium *ret_now);
int hu_medium_compare(const struct hu_medium *was, const struct hu_medium *now, char **ret_why);
void hu_medium_clear(struct hu_medium *m);
const char *hu_medium_kind_to_string(enum hu_medium_kind k);

/* ---- vm.c: the VM record ----
 * Each group of fields is written by the phase it is named after (and
 * read back from the manifest by manifest.c); the others only read it,
 * except where a comment says so. */
struct hu_memdev {
	/* discover (query-memdev, qom-get) */
	char *id;
	char *type;	/* memory-backend-file, -ram, -memfd, ... */
	char *mem_path; /* restore follows a renumbered namespace here */
	bool share;
	uint64_t size;
	enum hu_backing backing;
	char *why; /* how the class was decided */
	/* plan */
	bool skipped; /* left in place by x-ignore-shared */
	/* checkpoint (restore checks them) */
	uint64_t digest; /* of sampled pages, taken while the guest is stopped */
	struct hu_medium medium;
};

void hu_memdev_clear(struct hu_memdev *d);

struct hu_disk {
	/* discover (query-named-block-nodes) */
	char *path;
	/* checkpoint (restore checks them) */
	uint64_t size;
	uint64_t ino;
	uint64_t dev;
	int64_t mtime_ns;
};

enum hu_vm_state {
	HU_VM_RUNNING,	    /* recorded, untouched */
	HU_VM_STOPPING,	    /* migrate issued */
	HU_VM_SAVED,	    /* postmigrate, state file on disk, QEMU alive */
	HU_VM_CHECKPOINTED, /* QEMU quit, waiting for restore */
	HU_VM_RESTORING,
	HU_VM_RESTORED,
	HU_VM_RESUMED, /* rolled back: the original QEMU runs again */
	HU_VM_FAILED,
};
const char *hu_vm_state_to_string(enum hu_vm_state s);
int hu_vm_state_from_string(const char *s, enum hu_vm_state *ret);

struct hu_vm {
	struct hu_ctx *ctx;
	char *name;

	/* discover, from /proc (restore records the new QEMU's pid and starttime) */
	pid_t pid;
	uint64_t starttime; /* /proc/PID/stat field 22, guards against pid reuse */
	char *exe;
	char **argv; /* restore follows a renumbered namespace here */
	size_t argc;
	char *cwd;
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* supplementary groups */
	size_t n_groups;
	char *cgroup;
	struct hu_argv_info ai; /* what argv (and its config files) says */
	/* discover: the config files argv makes QEMU read, as plan judged them
	 * (the manifest keeps them, restore checks them); why they could not
	 * be read (a blocker) */
	struct hu_config_file *configs;
	size_t n_configs;
	char *configs_error;
	char *skipped; /* why discover did not examine it (no argv then) */

	/* discover, from QMP */
	bool qmp_ok; /* QEMU answered: what follows is known */
	char *qemu_version;
	char *runstate; /* before the checkpoint (checkpoint asks again first) */
	int64_t max_bandwidth_before;
	struct hu_memdev *memdevs;
	size_t n_memdevs;
	struct hu_disk *disks;
	size_t n_disks;
	enum hu_agent agent; /* the guest agent, as discover found it */
	bool wakeup_ok;	     /* query-current-machine: wakeup-suspend-support */

	/* discover and plan: why it cannot be checkpointed */
	char **blockers;
	size_t n_blockers;

	/* plan */
	uint64_t ram_bytes;
	enum hu_backing backing;
	bool in_place;	     /* x-ignore-shared: RAM stays where it is */
	bool copies_ram;     /* some RAM goes into the state file */
	uint64_t save_bytes; /* expected state file size */
	uint64_t copy_bytes; /* of it, guest RAM copied (not in place) */
	bool suspend;	     /* suspend through the agent before saving */

	/* checkpoint (migration.c sets the capabilities) */
	char *state_file;	  /* manifest.c sets it on load */
	bool unflushed;		  /* state and RAM not flushed: valid in this boot only */
	bool touched;		  /* the checkpoint changed something in this QEMU */
	bool suspended_by_us;	  /* suspended through the agent: wake it after restore */
	json_object *caps_before; /* migration capabilities the VM had */
	json_object *caps;	  /* the set used for the checkpoint, both sides */
	int64_t stopped_at_ms;
	int64_t stopped_mono_us; /* the same moment, for this process's own timings */
	uint64_t state_bytes;

	/* prelaunch: the new QEMU started beside the running one, until one of them is ended */
	pid_t pre_pid;
	uint64_t pre_starttime;
	bool pre_incoming; /* its migrate-incoming was (or was about to be) issued */
	/* by cpr-transfer (the RAM's descriptors go over a socket); while the new QEMU is
	 * spawned, its -incoming cpr channel (JSON) */
	bool pre_cpr;
	const char *cpr_channel;
	/* in memory only: this run --no-reboot restarts it by prelaunch, so the
	 * sequential group's save, quit and restore leave it alone */
	bool by_prelaunch;
	/* while set, what a manifest save writes for this VM: the record its own
	 * worker made last, so a save by another worker reads none of the fields
	 * this one changes unlocked (hu_manifest_snapshot) */
	json_object *snapshot;

	/* restore (spawn.c, for the new QEMU's cgroup) */
	int64_t running_at_ms;
	bool rejoined_cgroup;  /* back in its own cgroup: no scope needed */
	char *pidfile_refused; /* restore: why its -pidfile was not believed, or NULL */
	bool has_clock_step;
	int64_t clock_step_ms; /* how far behind the guest clock was, fixed */

	/* checkpoint, resume and restore: where it is, and why it failed */
	enum hu_vm_state state;
	char *error;
	struct hu_qmp *qmp; /* open: discover's kept for checkpoint, or the new QEMU's */

	/* discover (claim) or the manifest: who runs this QEMU (NULL: nobody,
	 * host-upgrade starts and stops it itself) and what that one needs */
	const struct hu_manager_ops *mgr;
	struct hu_libvirt_vm *lv;
	struct hu_proxmox_vm *pve;
};

struct hu_vm_list {
	struct hu_vm **vms;
	size_t n;
	size_t n_unlisted;	       /* discover: qemu-system-* processes past HU_MAX_SCANNED */
	struct hu_copy_rate copy_rate; /* plan: how fast copied RAM is written */
};

void hu_vm_free(struct hu_vm *vm);
int hu_vm_list_add(struct hu_vm_list *list, struct hu_vm *vm);
int hu_vm_set_error(struct hu_vm *vm, int r, const char *fmt, ...) _printf_(3, 4);
int hu_proc_starttime(struct hu_ctx *ctx, pid_t pid, uint64_t *ret);
/* The one way to act on a pid that came from outside (a pidfile, /proc, a
 * manifest): a pidfd of it, only if it is still the process started at
 * `starttime` (0: any) and, with `session` > 0, one we started: in the
 * session of our child `session`, or below this process. -ESRCH: gone or
 * not that process; -EPERM: not proven ours. Signal it only through the
 * pidfd, which cannot name a later process with the same pid. */
int hu_pid_open(struct hu_ctx *ctx, pid_t pid, uint64_t starttime, pid_t session, int *ret_pidfd);
/* SIGKILL through a pidfd and wait until it has exited. */
int hu_pidfd_kill(int pidfd, unsigned timeout_ms);
/* hu_pid_open (no session) + hu_pidfd_kill: 0 once gone, -EBUSY if it stays. */
int hu_pid_kill(struct hu_ctx *ctx, pid_t pid, uint64_t starttime);
/* Is this exact process (pid + start time) still alive? */
bool hu_vm_process_alive(struct hu_vm *vm);
/* How restore starts this VM's QEMU: as root when its argv has QEMU drop to
 * the user it ran as (-runas, -run-with user=), else as that user; refused
 * (with why) when the argv names another user or the binary is not safe to
 * run so (hu_exe_check). */
int hu_vm_start_as(const struct hu_vm *vm, bool *ret_as_root, char **ret_error);
/* A binary only root (or uid, when not 0) can replace: it and every
 * directory above it, no symbolic links. */
int hu_exe_check(const char *path, uid_t uid, char **ret_error);

/* ---- manager.c: who runs a QEMU — nobody (we start it from its argv), or
 * a VM manager (libvirt.c) that must keep it. Each phase calls out here;
 * an op left NULL means the phase's own code for a QEMU nobody manages. */
struct hu_manager_ops {
	const char *name; /* "libvirt" */
	/* discover: the QMP transport to this QEMU */
	int (*monitor)(struct hu_vm *vm, struct hu_qmp **ret, char **ret_why);
	/* plan: what this manager cannot do for this VM (blockers) */
	void (*plan)(struct hu_vm *vm, const struct hu_options *opts);
	/* checkpoint, before the first change to the VM */
	int (*prepare)(struct hu_vm *vm);
	/* the migration URI of vm->state_file, for the save (out) or the load */
	int (*state_uri)(struct hu_vm *vm, bool out, char **ret_uri);
	/* checkpoint, right after the save completed (QEMU still there) */
	int (*saved)(struct hu_vm *vm);
	/* stop a saved QEMU; the caller waits for the process to exit */
	int (*stop)(struct hu_vm *vm);
	/* run a stopped guest again */
	int (*cont)(struct hu_vm *vm, char **ret_err);
	/* restore: start the QEMU paused, waiting for the load (vm->qmp open) */
	int (*start_incoming)(struct hu_vm *vm, pid_t *ret_pid, uint64_t *ret_starttime, char **ret_error);
	/* a QEMU of this VM found running (leftover of a restore): its monitor */
	int (*attach)(struct hu_vm *vm, pid_t pid, struct hu_qmp **ret);
	/* end a QEMU restore started that never ran the guest */
	int (*kill)(struct hu_vm *vm, pid_t pid, uint64_t starttime);
	/* the guest runs again (resumed or restored): drop what a pending
	 * checkpoint needed */
	void (*done)(struct hu_vm *vm);
	/* restore: the file holding memdev i's RAM now, for its digest */
	const char *(*ram_path)(struct hu_vm *vm, size_t i);
	/* manifest: its own object in the VM's record */
	json_object *(*to_json)(const struct hu_vm *vm);
	int (*from_json)(struct hu_vm *vm, json_object *o);
	void (*free)(struct hu_vm *vm);
};
#ifdef HU_WITH_LIBVIRT
extern const struct hu_manager_ops hu_manager_libvirt;
#endif
/* proxmox.c: a QEMU qemu-server runs (-pidfile /var/run/qemu-server/N.pid,
 * its config in /etc/pve; HU_PROXMOX_ROOT prefixes those paths in tests). */
extern const struct hu_manager_ops hu_manager_proxmox;
bool hu_proxmox_claim(struct hu_vm *vm);
unsigned hu_proxmox_vmid(const struct hu_vm *vm); /* 0: not a Proxmox VM */
/* discover: does a manager run this QEMU? Sets vm->mgr; a VM a manager
 * runs but we cannot drive gets a blocker. */
void hu_manager_claim(struct hu_vm *vm);
const char *hu_manager_name(const struct hu_vm *vm); /* "none" | "libvirt" | "proxmox" */
int hu_manager_by_name(const char *name, const struct hu_manager_ops **ret);
/* The QMP transport: the VM's socket, or its manager's. */
int hu_manager_monitor(struct hu_vm *vm, unsigned timeout_ms, struct hu_qmp **ret, char **ret_why);
int hu_manager_state_uri(struct hu_vm *vm, bool out, char **ret_uri);
/* The state file as a descriptor in this fdset (add-fd), for a QEMU that
 * cannot open it itself; removed again with hu_state_fdset_remove. */
#define HU_STATE_FDSET 0x48550000LL /* <= INT_MAX: QEMU parses /dev/fdset/N as an int */
int hu_state_fd_uri(struct hu_vm *vm, bool out, char **ret_uri);
void hu_state_fdset_remove(struct hu_vm *vm);
int hu_manager_cont(struct hu_vm *vm, char **ret_err);
const char *hu_manager_ram_path(struct hu_vm *vm, size_t i);
void hu_manager_done(struct hu_vm *vm);
/* ctx.c: the manager connections a context opened */
void hu_manager_ctx_close(struct hu_ctx *ctx);

/* ---- libvirt-hook.c: the hook (public: hu_libvirt_hook) and the pending
 * markers it reads, STATE_DIR/libvirt/UUID.pending (libvirt.c writes them) */
struct hu_lv_link {
	char *memdev;
	char *was;  /* the RAM file in libvirt's per-start folder, at the checkpoint */
	char *link; /* our hard link of it, which outlives that folder */
};
int hu_libvirt_marker_path(struct hu_ctx *ctx, const char *uuid, char **ret);
int hu_libvirt_marker_write(struct hu_ctx *ctx, const char *uuid, const char *token,
			    const struct hu_lv_link *links, size_t n_links);
/* Untrusted domain XML (bounded, no network, no DTD: no entities) into a
 * libxml2 document (xmlDocPtr) whose root is <domain>. */
int hu_libvirt_parse_domain(const char *xml, size_t len, void **ret_doc);

/* ---- discover.c: /proc and QMP ---- */
/* Every qemu-system-* process, from /proc only (no QMP). */
int hu_scan_processes(struct hu_ctx *ctx, struct hu_vm_list **ret);
/* Ask QEMU what it is; problems become blockers, not failures. */
int hu_vm_query(struct hu_vm *vm, struct hu_qmp *q);

/* ---- manifest.c: the record of a checkpoint (format, load, save) ---- */
struct hu_manifest {
	struct hu_ctx *ctx;
	char *path;
	char *phase;
	char *boot_id;
	char *target_kernel; /* the kernel restore expects to run on, or NULL */
	int64_t created_ms;
	struct hu_vm_list list;
	pthread_mutex_t lock;
	bool borrowed;	   /* list entries belong to the caller */
	bool in_state_dir; /* saved through the context's state dir fd; else to path */
	/* Saves are not flushed to disk (rename still atomic): only while every
	 * VM is unflushed, so a record lost in a host crash names nothing a
	 * restore after it would resume. */
	bool lazy_saves;
};
int hu_manifest_new(struct hu_ctx *ctx, struct hu_manifest **ret);
int hu_manifest_save(struct hu_manifest *m);
/* keep: from now on a save writes this VM as it is now (its worker calls it
 * again at each step it records); !keep: as it is at each save again. */
void hu_manifest_snapshot(struct hu_manifest *m, struct hu_vm *vm, bool keep);
/* fn(i, data) for i < n in parallel workers that each change their own VM of
 * m unlocked (its save, load, error): meanwhile a save writes every VM as its
 * worker last recorded it with hu_manifest_save_vm, never its live fields. */
void hu_manifest_parallel_for(struct hu_manifest *m, size_t n, unsigned jobs,
			      void (*fn)(size_t i, void *data), void *data);
/* A worker's record of its VM as it is now, then the manifest saved. */
int hu_manifest_save_vm(struct hu_manifest *m, struct hu_vm *vm);
int hu_manifest_note_phase(struct hu_manifest *m, const char *phase);
int hu_manifest_set_phase(struct hu_manifest *m, const char *phase);
int hu_manifest_to_json(struct hu_manifest *m, json_object **ret);
int hu_manifest_from_json(struct hu_ctx *ctx, json_object *o, struct hu_manifest *m);
/* DIR/manifest.json, DIR checked like the state dir (hu_open_private_dir). */
int hu_manifest_load_dir(struct hu_ctx *ctx, const char *dir, struct hu_manifest **ret, char **ret_error);
/* A string member of an untrusted record: a string of at most max bytes
 * without NULs (or null/absent when nullable), else *r = -EBADMSG. */
const char *hu_manifest_get_str(json_object *o, const char *key, size_t max, bool nullable, int *r);

/* ---- status.c: the public getters of a loaded manifest (libhu.h) ---- */

/* ---- journal.c ---- */
/* Append one event to journal.jsonl in the state dir (best effort). */
void hu_journal(struct hu_ctx *ctx, const char *vm, const char *event, const char *detail);

/* ---- plan.c: public only (hu_plan) ---- */

/* ---- migration.c: the steps checkpoint and restore share ---- */
int hu_migration_setup_source(struct hu_vm *vm, char **ret_err);
/* Its first half: the set decided (vm->caps, vm->caps_before), nothing applied. */
int hu_migration_plan_source(struct hu_vm *vm, char **ret_err);
int hu_migration_setup_dest(struct hu_vm *vm, char **ret_err);
int hu_migration_reset(struct hu_vm *vm);
int hu_migration_query(struct hu_qmp *q, char **ret_status, char **ret_desc);
int hu_migration_wait(struct hu_qmp *q, unsigned timeout_ms, char **ret_desc);
unsigned hu_migration_timeout_ms(uint64_t bytes);
int hu_migration_settled_runstate(struct hu_qmp *q, char **ret_status);

/* ---- qga.c: the guest agent ---- */
int hu_qga_open(struct hu_vm *vm, unsigned timeout_ms, struct hu_qmp **ret);
/* Ping the agents of every VM whose agent is HU_AGENT_UNKNOWN, all at once,
 * with one deadline: each becomes HU_AGENT_ANSWERING or HU_AGENT_SILENT. */
int hu_qga_ping_all(struct hu_vm *const *vms, size_t n, unsigned timeout_ms);
int hu_qga_suspend(struct hu_vm *vm, unsigned timeout_ms, char **ret_error);
int hu_vm_wakeup(struct hu_vm *vm, unsigned timeout_ms, char **ret_error);
int hu_qga_fix_clock(struct hu_vm *vm, unsigned timeout_ms, int64_t *ret_step_ms);
int64_t hu_clock_step_ms(int64_t host_ns, int64_t guest_ns);

/* ---- resume.c (checkpoint's rollback, restore and abort) ---- */
/* Put a VM we stopped back as it was; vm->state and vm->error untouched. */
int hu_vm_resume_original(struct hu_vm *vm, char **ret_error);

/* ---- checkpoint.c ---- */
/* Save one VM (cpr-reboot, to its state file) and leave it in postmigrate. */
int hu_checkpoint_save_vm(struct hu_vm *vm);

/* ---- systemd.c: PID 1 over sd-bus ---- */
/* The system bus, or as root PID 1's private socket when there is no bus. */
typedef struct sd_bus sd_bus;
int hu_systemd_bus(sd_bus **ret, char **ret_why);

/* ---- spawn.c: start a QEMU for restore and see it up ---- */
/* Fork and execve the recorded argv + "-incoming defer"; *ret_pid: the child.
 * ret_gate (optional): the child waits before execve until hu_spawn_open_gate;
 * closed unopened (or by our death), it exits without running QEMU. */
int hu_spawn_qemu(struct hu_ctx *ctx, struct hu_vm *vm, pid_t *ret_pid, int *ret_gate, char **ret_error);
/* Let a gated child run QEMU; closes *gate (-1 after). */
int hu_spawn_open_gate(int *gate);
/* Wait for its QMP (into vm->qmp); *pid becomes the daemon's with -daemonize,
 * *ret_pidfd the QEMU's pidfd (proven ours, hu_pid_open) on success. */
int hu_spawn_connect(struct hu_ctx *ctx, struct hu_vm *vm, pid_t child, pid_t *pid, int *ret_pidfd,
		     char **ret_error);
/* Under systemd, a scope of its own if it could not rejoin its cgroup. */
void hu_spawn_move_to_scope(struct hu_ctx *ctx, struct hu_vm *vm, pid_t pid);

/* ---- restore.c (restore, abort, and checkpoint when restore follows) ---- */
int hu_restore_vms(struct hu_ctx *ctx, struct hu_manifest *m, bool same_boot, const char *const *only_vms);
/* The same, only for the VMs of one manager ("none", "libvirt"; NULL: all). */
/* Load the state into vm->qmp's QEMU (-incoming defer), then bring it to the recorded runstate. */
int hu_restore_start_load(struct hu_vm *vm, char **ret_error);
/* The second half of hu_restore_start_load: migrate-incoming alone. */
int hu_restore_incoming(struct hu_vm *vm, char **ret_error);
/* Set the guest clock through its agent; clock_step_ms recorded under m's lock. */
void hu_restore_fix_clock(struct hu_manifest *m, struct hu_vm *vm);
int hu_restore_finish_load(struct hu_vm *vm, char **ret_error);

/* ---- prelaunch.c: run --no-reboot with the new QEMU started before the old one stops ---- */
#define HU_PRELAUNCH_ASIDE ".hu-prelaunch"
/* Whether this VM can be restarted by prelaunch; if not, *ret_why says why (static text). */
bool hu_prelaunch_eligible(const struct hu_vm *vm, const char **ret_why);
/* The VMs of m marked by_prelaunch (the others were restarted sequentially before), under
 * checkpoint's lock; 0, negative with the context's error when every VM runs (some on their
 * old QEMU), or the number of VMs that are not running again. */
int hu_prelaunch_vms(struct hu_ctx *ctx, struct hu_manifest *m);
/* abort/restore of a VM whose record names a prelaunched QEMU: 1 when it decided the VM's
 * fate (*ret_state), 0 when the sequential restore should go on with it. */
int hu_prelaunch_converge(struct hu_vm *vm, enum hu_vm_state *ret_state, char **ret_error);
/* How the new QEMU gets the guest's RAM: "cpr-reboot" (it maps the same shared files),
 * "cpr-transfer" (memfd/shm/shared RAM, its descriptors handed over), NULL when it cannot. */
const char *hu_prelaunch_ram(const struct hu_vm *vm, const char **ret_why);

int hu_restore_vms_of(struct hu_ctx *ctx, struct hu_manifest *m, bool same_boot, const char *const *only_vms,
		      const char *only_manager);

/* ---- kexec.c: load a kernel for the next boot ---- */
/* The kernel release from a bzImage's header ("6.12.9+bpo-amd64"). */
int hu_bzimage_version(const char *path, char *buf, size_t len);
int hu_kexec_load(struct hu_ctx *ctx, const char *kernel, const char *initrd, const char *cmdline);
int hu_kexec_unload(struct hu_ctx *ctx);
/* Debian's kexec-load would replace our kernel at shutdown. */
bool hu_kexec_load_script_active(void);
/* -EBUSY (with the reason) when something at shutdown would replace a staged kernel. */
int hu_kexec_check_no_replacer(struct hu_ctx *ctx);

/* ---- stage.c: what to load (the rest is public: hu_stage, hu_unstage) ---- */
/* The new kernel's command line: `requested` (NULL = the current one) must
 * keep every memmap=…!… region (and nokaslr with them) of `current`, as the
 * kernel reads both lines; otherwise -EINVAL and *ret_missing names the
 * dropped parameter. The marker is added once, before init's arguments
 * ("--"); -EBADMSG when the line ends inside a quote, which would swallow it. */
int hu_cmdline_compose(const char *current, const char *requested, const char *marker, char **ret,
		       char **ret_missing);
/* A kernel command line word by word, split as the kernel splits it (its
 * isspace(), '"' toggling quotes), quotes kept: NULL at the end. */
const char *hu_cmdline_word(const char *p, const char **ret_end);
/* What the kernel makes of a word: "param" or "param=value", its quotes
 * stripped (malloc'ed; NULL on ENOMEM). */
char *hu_cmdline_word_meaning(const char *w, size_t wl);
/* Modules the running kernel uses for VMs and RAM (plus vfio_pci if a VM
 * has VFIO), and which of them a module tree (/lib/modules/VER) lacks. */
int hu_modules_needed(struct hu_ctx *ctx, const struct hu_vm_list *list, char ***ret, size_t *ret_n);
int hu_modules_missing(const char *moddir, char *const *needed, size_t n_needed, char ***ret_missing,
		       size_t *ret_n);

/* ---- reboot.c: public only (hu_reboot_guard, hu_reboot_kexec) ---- */

/* ---- early-boot.c: the initrd side ---- */
/* 1 and the value (after '=') when `key` is on the kernel command line. */
int hu_cmdline_get(struct hu_ctx *ctx, const char *key, char **ret_value);
/* hu.state=UUID=<uuid>:/<dir>: the state file system's UUID and the dir on it (-EINVAL). */
int hu_state_spec_parse(const char *spec, char **ret_uuid, char **ret_dir);
int hu_early_check_media(struct hu_ctx *ctx, struct hu_manifest *m, unsigned wait_ms, json_object *media);
/* The restore unit's drop-in ordering it after the mounts of in-place RAM (the fuzz harness calls it). */
int hu_early_write_mounts_dropin(struct hu_ctx *ctx, struct hu_manifest *m, const char *dropin_dir);
