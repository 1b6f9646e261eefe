/*
 * LD_PRELOAD shim for tests: fakes what cannot run on the development
 * machine — the kexec_file_load(2) syscall, /sys/kernel/kexec_loaded,
 * /proc/cmdline, and systemd's StartUnit — and records what host-upgrade
 * passed to them. host-upgrade's own logic runs unchanged.
 *
 *   HU_FAKE_LOG           file to append records to (required)
 *   HU_FAKE_KEXEC_FAIL    errno name to fail kexec_file_load with (EPERM, EKEYREJECTED, ENOEXEC)
 *   HU_FAKE_KEXEC_VANISH  1: the staged kernel disappears after the first check
 *   HU_FAKE_CMDLINE       what /proc/cmdline says
 *   HU_FAKE_SYSTEMD_FAIL  1: StartUnit fails
 *   HU_FAKE_DEFAULT_KEXEC what /etc/default/kexec says (Debian's kexec-load config)
 *   HU_FAKE_RECORD_FLUSH  1: record the file of every fsync/fdatasync (which still runs)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int loaded;
static int loaded_reads;

static void record(const char *fmt, ...)
{
	const char *log = getenv("HU_FAKE_LOG");
	va_list ap;
	FILE *f;

	if (!log || !(f = fopen(log, "a")))
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static void fd_target(int fd, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	if (n <= 0)
		snprintf(buf, len, "(fd %d)", fd);
}

static int errno_named(const char *s)
{
	if (!strcmp(s, "EPERM"))
		return EPERM;
	if (!strcmp(s, "EKEYREJECTED"))
		return EKEYREJECTED;
	if (!strcmp(s, "ENOEXEC"))
		return ENOEXEC;
	if (!strcmp(s, "ENOSYS"))
		return ENOSYS;
	return EINVAL;
}

long syscall(long number, ...)
{
	static long (*real)(long, ...);
	long a[6];
	va_list ap;

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_kexec_file_load) {
		char kernel[PATH_MAX], initrd[PATH_MAX] = "";
		const char *fail = getenv("HU_FAKE_KEXEC_FAIL");

		if (a[4] & 0x1 /* KEXEC_FILE_UNLOAD */) {
			record("kexec_file_load unload");
			loaded = 0;
			return 0;
		}
		fd_target((int)a[0], kernel, sizeof(kernel));
		if ((int)a[1] >= 0)
			fd_target((int)a[1], initrd, sizeof(initrd));
		record("kexec_file_load kernel=%s initrd=%s flags=%ld cmdline=%s", kernel, initrd, a[4],
		       a[3] ? (const char *)a[3] : "");
		if (fail && *fail) {
			errno = errno_named(fail);
			return -1;
		}
		loaded = 1;
		return 0;
	}
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* A memfd standing in for a /proc or /sys file. */
static int fake_file(const char *text)
{
	int fd = memfd_create("hu-fake", MFD_CLOEXEC);

	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		return -1;
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int fake_open(const char *path)
{
	if (!strcmp(path, "/sys/kernel/kexec_loaded")) {
		int now = loaded;

		/* VANISH: staged, verified once, then gone before the reboot. */
		if (loaded && getenv("HU_FAKE_KEXEC_VANISH") && loaded_reads++ > 0)
			now = 0;
		return fake_file(now ? "1\n" : "0\n");
	}
	if (!strcmp(path, "/etc/default/kexec") && getenv("HU_FAKE_DEFAULT_KEXEC"))
		return fake_file(getenv("HU_FAKE_DEFAULT_KEXEC"));
	if (!strcmp(path, "/proc/cmdline") && getenv("HU_FAKE_CMDLINE")) {
		char buf[8192];

		snprintf(buf, sizeof(buf), "%s\n", getenv("HU_FAKE_CMDLINE"));
		return fake_file(buf);
	}
	return -2;
}

/* host-upgrade opens files by path and relative to a directory's fd
 * (openat with AT_FDCWD, or an absolute path): the same fakes for both. */
int openat(int dirfd, const char *path, int flags, ...)
{
	static int (*real)(int, const char *, int, ...);
	mode_t mode = 0;
	va_list ap;
	int fd = dirfd == AT_FDCWD || path[0] == '/' ? fake_open(path) : -2;

	if (fd != -2)
		return fd;
	va_start(ap, flags);
	if (flags & (O_CREAT | O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	if (!real)
		real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
	return real(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	va_start(ap, flags);
	if (flags & (O_CREAT | O_TMPFILE))
		mode = va_arg(ap, mode_t);
	va_end(ap);
	return openat(AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* Which files host-upgrade makes durable: a test cannot see that any other
 * way. Not inherited by the QEMUs it starts (they get a fixed environment). */
static int record_flush(const char *call, int fd)
{
	char target[PATH_MAX];

	if (getenv("HU_FAKE_RECORD_FLUSH")) {
		fd_target(fd, target, sizeof(target));
		record("%s %s", call, target);
	}
	return 0;
}

int fsync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	record_flush("fsync", fd);
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	record_flush("fdatasync", fd);
	return real(fd);
}

/* sd-bus: record StartUnit, never reach the real systemd. */
typedef struct sd_bus sd_bus;
typedef struct sd_bus_message sd_bus_message;
typedef struct {
	const char *name;
	const char *message;
	int _need_free;
} sd_bus_error;

int sd_bus_open_system(sd_bus **ret)
{
	*ret = (sd_bus *)0x1;
	return 0;
}

sd_bus *sd_bus_unref(sd_bus *bus)
{
	return NULL;
}

int sd_bus_call_method(sd_bus *bus, const char *destination, const char *path, const char *interface,
		       const char *member, sd_bus_error *error, sd_bus_message **reply, const char *types,
		       ...)
{
	va_list ap;
	const char *a = "", *b = "";

	va_start(ap, types);
	if (types && !strcmp(types, "ss")) {
		a = va_arg(ap, const char *);
		b = va_arg(ap, const char *);
	}
	va_end(ap);
	record("sd_bus %s.%s %s %s", interface, member, a, b);
	if (reply)
		*reply = NULL;
	/* HU_FAKE_SYSTEMD_FAIL=MEMBER fails that call only (StartUnit, LoadUnit), =1 every call. */
	const char *fail = getenv("HU_FAKE_SYSTEMD_FAIL");

	if (fail && (!strcmp(fail, "1") || !strcmp(fail, member))) {
		if (error)
			error->message = "Transaction is destructive (fake)";
		return -EIO;
	}
	return 1;
}
