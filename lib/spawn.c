/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * spawn: start a QEMU for restore and see it up. The recorded argv plus
 * "-incoming defer" is execve'd (no shell) as the VM's user, in its own
 * cgroup when that still exists, else moved into a scope of its own;
 * QEMU's output goes to STATE_DIR/NAME.log. A QEMU that daemonizes is
 * followed to its real pid; one that dies before its QMP is up is said
 * with its last log line; one that never ran the guest can be ended.
 * With a gate, the child waits before execve until the caller has recorded
 * it, and ends without exec if the caller dies first.
 */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include "hu-private.h"

/* The child's end of the gate, where it waits: the first descriptor after
 * stdin, stdout and stderr, the only one kept. */
#define GATE_FD		 3
/* The exit status of a child whose gate closed unopened: it never ran QEMU. */
#define GATE_CLOSED_EXIT 125

int hu_spawn_open_gate(int *gate)
{
	int r = 0;

	if (*gate < 0)
		return 0;
	/* A socket, not a pipe: no SIGPIPE when the child is gone. */
	if (send(*gate, "1", 1, MSG_NOSIGNAL) != 1)
		r = -errno;
	close(*gate);
	*gate = -1;
	return r;
}

int hu_spawn_qemu(struct hu_ctx *ctx, struct hu_vm *vm, pid_t *ret_pid, int *ret_gate, char **ret_error)
{
	char **argv = NULL;
	size_t argc = 0;
	_cleanup_free_ char *log = NULL, *cgroup_procs = NULL;
	_cleanup_close_ int out = -1, gate_ours = -1, gate_child = -1;
	static char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				      NULL };
	pid_t pid;
	bool as_root; /* checked: with -runas, QEMU drops to the user it ran as */
	int r;

	if (asprintf(&log, "%s.log", vm->name) < 0)
		return -ENOMEM;
	/* Opened here, as root, for a QEMU that may run as its owner: never
	 * through a symlink, never anything but a regular file. */
	out = hu_state_open(ctx, log, O_WRONLY | O_CREAT | O_APPEND);
	if (out < 0)
		return hu_errorf(ret_error, out, "cannot open its log %s/%s: %s", ctx->state_dir, log,
				 out == -ELOOP	  ? "a symbolic link, refused"
				 : out == -EBADFD ? "not a regular file, refused"
						  : strerror(-out));
	/* Who runs it, from what /proc said at the checkpoint, and whether its
	 * binary is one only root (or that user) could have put there. */
	r = hu_vm_start_as(vm, &as_root, ret_error);
	if (r < 0)
		return r;
	/* A QEMU that daemonizes leaves our child's session and would be
	 * reparented to PID 1: as its subreaper we keep it below us, which is
	 * how its pid is proven ours (hu_pid_open). */
	if (vm->ai.daemonize && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return hu_errorf(ret_error, -errno, "cannot become the subreaper of a daemonizing QEMU: %s",
				 strerror(errno));
	r = hu_argv_strip_incoming(vm->argv, vm->argc, &argv, &argc);
	if (r < 0)
		return r;
	if (hu_strv_push(&argv, &argc, "-incoming") < 0 || hu_strv_push(&argv, &argc, "defer") < 0 ||
	    (vm->cpr_channel && (hu_strv_push(&argv, &argc, "-incoming") < 0 ||
				 hu_strv_push(&argv, &argc, vm->cpr_channel) < 0))) {
		hu_strv_free(argv, argc);
		return -ENOMEM;
	}
	/* Back in the VM's own cgroup when it still exists (same boot, its
	 * unit or scope is alive); otherwise the caller's. */
	if (vm->cgroup && vm->cgroup[0] == '/' && !strstr(vm->cgroup, "..")) {
		if (asprintf(&cgroup_procs, "%s/fs/cgroup%s/cgroup.procs", ctx->sys_root, vm->cgroup) < 0)
			cgroup_procs = NULL;
		else if (access(cgroup_procs, W_OK) < 0) {
			free(cgroup_procs);
			cgroup_procs = NULL;
		}
	}
	vm->rejoined_cgroup = cgroup_procs != NULL;
	if (ret_gate) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			r = -errno;
			hu_strv_free(argv, argc);
			return hu_errorf(ret_error, r, "cannot make the start gate: %s", strerror(-r));
		}
		gate_ours = sv[0];
		gate_child = sv[1];
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		hu_strv_free(argv, argc);
		return r;
	}
	if (pid == 0) {
		/* Child: async-signal-safe calls only. */
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		int keep = gate_child >= 0 ? GATE_FD + 1 : 3;

		setsid();
		if (nul >= 0)
			dup2(nul, 0);
		dup2(out, 1);
		dup2(out, 2);
		if (gate_child >= 0 && gate_child != GATE_FD)
			dup2(gate_child, GATE_FD);
		/* Nothing of ours leaks into a QEMU that outlives us, also where
		 * close_range() is missing (Linux < 5.9) or filtered. Also
		 * before the gate: another thread's child may hold the write end
		 * of ours (inherited at its fork) until it closes its own. */
		if (close_range((unsigned)keep, ~0U, 0) < 0) {
			struct rlimit rl;
			rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 65536;

			for (rlim_t fd = (rlim_t)keep; fd < max && fd < (1U << 20); fd++)
				close((int)fd);
		}
		if (gate_child >= 0) {
			/* Until the caller recorded us. EOF: it died before (not
			 * PR_SET_PDEATHSIG, which fires when the forking *thread*
			 * ends): nothing was started, nothing to clean up. */
			char c;
			ssize_t n;

			do
				n = read(GATE_FD, &c, 1);
			while (n < 0 && errno == EINTR);
			if (n != 1)
				_exit(GATE_CLOSED_EXIT);
			close(GATE_FD);
		}
		if (cgroup_procs) {
			int cg = open(cgroup_procs, O_WRONLY | O_CLOEXEC);

			if (cg >= 0) {
				if (write(cg, "0", 1) < 0) { /* stays in ours */
				}
				close(cg);
			}
		}
		if (chdir(vm->cwd ?: "/") < 0 && chdir("/") < 0)
			_exit(126);
		/* -runas: QEMU drops privileges itself and must start as root. */
		if (!vm->ai.runas &&
		    (setgroups(vm->n_groups, vm->groups) < 0 || setgid(vm->gid) < 0 || setuid(vm->uid) < 0))
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		execve(vm->exe, argv, envp);
		_exit(127);
	}
	hu_strv_free(argv, argc);
	if (ret_gate)
		*ret_gate = TAKE_FD(gate_ours);
	*ret_pid = pid;
	return 0;
}

static int read_pidfile(const char *path, pid_t *ret)
{
	_cleanup_free_ char *s = NULL;
	long v;
	char *end;
	int r = hu_read_file(path, 64, &s, NULL);

	if (r < 0)
		return r;
	v = strtol(s, &end, 10);
	if (v <= 0 || v > INT32_MAX || (*end && *end != '\n'))
		return -EBADMSG;
	*ret = (pid_t)v;
	return 0;
}

/* Under systemd, a QEMU that could not rejoin its own cgroup would stay in
 * the restore unit's: give it a scope of its own (as machined does), so
 * it lives and is accounted as a VM, not as part of a finished oneshot. */
void hu_spawn_move_to_scope(struct hu_ctx *ctx, struct hu_vm *vm, pid_t pid)
{
	_cleanup_free_ char *unit = NULL, *desc = NULL;
	_cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	_cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
	unsigned vmid = hu_proxmox_vmid(vm);
	int r;

	if (sd_booted() <= 0 || vm->rejoined_cgroup)
		return;
	/* Proxmox's VM N lives in qemu.slice/N.scope, as qm start makes it:
	 * qm status, cpulimit changes and the shutdown order go by it. */
	if (vmid ? asprintf(&unit, "%u.scope", vmid) < 0 || asprintf(&desc, "Proxmox VE VM %u", vmid) < 0
		 : asprintf(&unit, "host-upgrade-vm-%s-%d.scope", vm->name, (int)pid) < 0 ||
			    asprintf(&desc, "VM %s restored by host-upgrade", vm->name) < 0)
		return;
	r = hu_systemd_bus(&bus, NULL);
	if (r >= 0)
		r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1",
						   "/org/freedesktop/systemd1",
						   "org.freedesktop.systemd1.Manager", "StartTransientUnit");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", unit, "fail");
	if (r >= 0)
		r = vmid ? sd_bus_message_append(m, "a(sv)", 6, "Description", "s", desc, "Slice", "s",
						 "qemu.slice", "PIDs", "au", 1, (uint32_t)pid, "KillMode",
						 "s", "process", "SendSIGKILL", "b", 0, "TimeoutStopUSec",
						 "t", UINT64_MAX)
			 : sd_bus_message_append(m, "a(sv)", 4, "Description", "s", desc, "Slice", "s",
						 "machine.slice", "PIDs", "au", 1, (uint32_t)pid,
						 "CollectMode", "s", "inactive-or-failed");
	if (r >= 0)
		r = sd_bus_message_append(m, "a(sa(sv))", 0);
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, &error, &reply);
	if (r < 0)
		hu_info(ctx, vm->name, "stays in this unit's cgroup: scope %s: %s", unit,
			error.message ?: strerror(-r));
}

/* The last line QEMU printed, to say why it died. */
static void last_log_line(struct hu_ctx *ctx, const char *name, char *buf, size_t len)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	int dirfd = hu_state_dir_fd(ctx, false, NULL);
	char *end, *start;

	buf[0] = '\0';
	if (dirfd < 0 || asprintf(&path, "%s.log", name) < 0 ||
	    hu_read_state_file(dirfd, path, 1 << 20, &text, NULL) < 0)
		return;
	end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	start = strrchr(text, '\n');
	snprintf(buf, len, "%.200s", start ? start + 1 : text);
}

/* With -daemonize the QEMU we forked exits once the real one is up: its
 * pid comes from -pidfile, or from /proc by its QMP socket. Either is
 * taken only when proven to be the QEMU we started (hu_pid_open): a
 * pidfile in a directory another user can write, or a QEMU that runs as
 * another user, could name any process. */
static int daemonized_pid(struct hu_ctx *ctx, struct hu_vm *vm, pid_t child, pid_t *pid, int *ret_pidfd,
			  char **ret_error)
{
	_cleanup_free_ char *refused = NULL;
	struct hu_vm_list *now = NULL;
	pid_t named = 0;
	int status = 0, r = -ESRCH;

	hu_pid_wait_exit(ctx, child, 0, 10000);
	waitpid(child, &status, WNOHANG);
	if (vm->ai.pidfile && read_pidfile(vm->ai.pidfile, &named) >= 0 && named != child) {
		r = hu_pid_open(ctx, named, 0, child, ret_pidfd);
		if (r >= 0) {
			*pid = named;
			return 0;
		}
		if (r == -EPERM)
			hu_errorf(&refused, 0,
				  "its pidfile %s names pid %d, which is not a process this restore started: "
				  "left alone",
				  vm->ai.pidfile, (int)named);
		if (refused)
			hu_info(ctx, vm->name, "%s", refused);
	}
	if (hu_scan_processes(ctx, &now) >= 0) {
		for (size_t i = 0; i < now->n && r < 0; i++)
			if (now->vms[i]->ai.qmp_path && streq(now->vms[i]->ai.qmp_path, vm->ai.qmp_path) &&
			    hu_argv_has_incoming_defer(now->vms[i]->argv, now->vms[i]->argc) &&
			    now->vms[i]->pid != child) {
				r = hu_pid_open(ctx, now->vms[i]->pid, now->vms[i]->starttime, child,
						ret_pidfd);
				if (r >= 0)
					*pid = now->vms[i]->pid;
			}
		hu_vm_list_free(now);
	}
	if (r >= 0) {
		/* Said again if the load fails: the pidfile was not believed. */
		if (refused)
			vm->pidfile_refused = TAKE_PTR(refused);
		return 0;
	}
	if (refused)
		return hu_errorf(ret_error, -ESRCH, "%s; no QEMU this restore started answers on %s", refused,
				 vm->ai.qmp_path);
	return hu_errorf(ret_error, -ESRCH, "cannot find the pid of the daemonized QEMU");
}

/* Wait for the new QEMU's QMP; notice when it dies first. Between tries
 * we sleep on the child's pidfd, so its death wakes us at once. */
int hu_spawn_connect(struct hu_ctx *ctx, struct hu_vm *vm, pid_t child, pid_t *pid, int *ret_pidfd,
		     char **ret_error)
{
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, child, 0), daemon_fd = -1;
	int64_t deadline = hu_mono_ms() + 30000;
	bool child_running = true;

	if (pidfd < 0)
		return hu_errorf(ret_error, -errno, "pidfd of QEMU pid %d: %s", (int)child, strerror(errno));

	for (;;) {
		int status, r;

		if (child_running && waitpid(child, &status, WNOHANG) == child) {
			child_running = false;
			if (vm->ai.daemonize && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				/* The foreground QEMU is done: the daemon runs on. */
				r = daemonized_pid(ctx, vm, child, pid, &daemon_fd, ret_error);
				if (r < 0)
					return r;
			} else {
				char line[256];

				last_log_line(ctx, vm->name, line, sizeof(line));
				*pid = 0;
				return hu_errorf(
					ret_error, -ECHILD,
					"QEMU exited (%s %d) before its QMP came up: %s (log: %s/%s.log)",
					WIFEXITED(status) ? "status" : "signal",
					WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
					line[0] ? line : "no output", ctx->state_dir, vm->name);
			}
		}
		r = hu_qmp_connect(vm->ai.qmp_path, ctx->qmp_timeout_ms, &vm->qmp);
		if (r >= 0 && vm->ai.daemonize && daemon_fd < 0) {
			/* Up before its foreground process returned. */
			r = daemonized_pid(ctx, vm, child, pid, &daemon_fd, ret_error);
			if (r < 0)
				return r;
		}
		if (r >= 0) {
			/* Without -daemonize, our child not yet reaped: its pidfd is that QEMU's. */
			*ret_pidfd = vm->ai.daemonize ? TAKE_FD(daemon_fd) : TAKE_FD(pidfd);
			return 0;
		}
		if (r == -ECONNRESET && child_running)
			continue; /* it may be dying: the next round says why */
		if (r != -ENOENT && r != -ECONNREFUSED && r != -ECONNRESET)
			return hu_errorf(ret_error, r, "QMP %s: %s", vm->ai.qmp_path, hu_qmp_strerror(r));
		if (hu_mono_ms() > deadline)
			return hu_errorf(ret_error, -ETIMEDOUT, "QMP %s did not come up in 30 s",
					 vm->ai.qmp_path);
		if (child_running && pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };

			poll(&p, 1, 1);
		} else {
			usleep(1000); /* the daemon's socket is not there yet */
		}
	}
}
