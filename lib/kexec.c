/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kexec: load a kernel for the next boot and tell whether one is loaded.
 * kexec_file_load(2) (required under lockdown), kexec-tools only where the
 * kernel lacks it; the release of a bzImage; what the errors mean; and
 * whether something at shutdown would replace the kernel we loaded
 * (Debian's kexec-load script).
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/kexec.h>
#include "hu-private.h"

#ifndef KEXEC_FILE_UNLOAD
#define KEXEC_FILE_UNLOAD 0x1
#endif
#ifndef KEXEC_FILE_NO_INITRAMFS
#define KEXEC_FILE_NO_INITRAMFS 0x4
#endif

extern char **environ;

#define BZ_HDR_MAGIC_OFF   0x202 /* "HdrS" */
#define BZ_VERSION_PTR_OFF 0x20e /* u16: version string offset - 0x200 */
#define BZ_HEAD_MAX	   0x10000

int hu_bzimage_version(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char head[BZ_HEAD_MAX];
	ssize_t n;
	size_t off, end;

	if (fd < 0)
		return -errno;
	n = pread(fd, head, sizeof(head), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n < BZ_VERSION_PTR_OFF + 2 || memcmp(head + BZ_HDR_MAGIC_OFF, "HdrS", 4) != 0)
		return -ENOEXEC; /* not a bzImage */
	off = 0x200 + (head[BZ_VERSION_PTR_OFF] | head[BZ_VERSION_PTR_OFF + 1] << 8);
	if (off >= (size_t)n)
		return -ENOEXEC;
	/* "6.12.9+bpo-amd64 (debian-kernel@…) #1 SMP …": the release is the first word. */
	for (end = off; end < (size_t)n && head[end] > ' ' && head[end] < 0x7f; end++)
		;
	if (end == off || end == (size_t)n)
		return -ENOEXEC;
	if (end - off + 1 > len)
		return -ENOBUFS;
	memcpy(buf, head + off, end - off);
	buf[end - off] = '\0';
	return 0;
}

int hu_kexec_loaded(struct hu_ctx *ctx)
{
	_cleanup_free_ char *s = NULL;
	int r = hu_read_file("/sys/kernel/kexec_loaded", 16, &s, NULL);

	if (r < 0)
		return r == -ENOENT ? -EOPNOTSUPP : r;
	return s[0] == '1';
}

/* kexec-tools, only where the kernel has no kexec_file_load(2). */
static int kexec_tools_load(const char *kernel, const char *initrd, const char *cmdline)
{
	_cleanup_free_ char *i = NULL, *c = NULL;
	char *argv[6];
	int n = 0, status;
	pid_t pid;

	argv[n++] = "kexec";
	argv[n++] = "-l";
	argv[n++] = (char *)kernel;
	if (initrd) {
		if (asprintf(&i, "--initrd=%s", initrd) < 0)
			return -ENOMEM;
		argv[n++] = i;
	}
	if (asprintf(&c, "--command-line=%s", cmdline) < 0)
		return -ENOMEM;
	argv[n++] = c;
	argv[n] = NULL;
	if (posix_spawnp(&pid, "kexec", NULL, NULL, argv, environ) != 0)
		return -ENOSYS;
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

const char *hu_stage_strerror(int r)
{
	/* clang-format off */
	switch (r) {
	case -EPERM:        return "refused by the kernel (lockdown, or no CAP_SYS_BOOT)";
	case -EKEYREJECTED:
	case -EBADMSG:      return "the kernel's signature was refused (lockdown needs a signed kernel)";
	case -ENOEXEC:      return "not a kernel image kexec can load";
	case -EBUSY:        return "a kexec load is already in progress";
	case -EOPNOTSUPP:   return "this kernel has no kexec support";
	default:            return strerror(-r);
	}
	/* clang-format on */
}

int hu_kexec_load(struct hu_ctx *ctx, const char *kernel, const char *initrd, const char *cmdline)
{
	_cleanup_close_ int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int ifd = initrd ? open(initrd, O_RDONLY | O_CLOEXEC) : -1;
	unsigned long flags = initrd ? 0 : KEXEC_FILE_NO_INITRAMFS;
	long r;

	if (kfd < 0 || (initrd && ifd < 0))
		return -errno;
	r = syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1, cmdline, flags);
	if (r < 0 && errno == ENOSYS) {
		hu_info(ctx, NULL, "kexec_file_load(2) is missing: falling back to kexec-tools");
		return kexec_tools_load(kernel, initrd, cmdline);
	}
	if (r < 0)
		return -errno;
	/* Trust, then verify: the kernel says whether an image is loaded. */
	r = hu_kexec_loaded(ctx);
	if (r < 0)
		return (int)r;
	return r == 1 ? 0 : -EIO;
}

int hu_kexec_unload(struct hu_ctx *ctx)
{
	long r = syscall(SYS_kexec_file_load, -1, -1, 0, NULL, KEXEC_FILE_UNLOAD);

	return r < 0 ? -errno : 0;
}

/* Debian's kexec-load would replace our kernel at shutdown. */
bool hu_kexec_load_script_active(void)
{
	_cleanup_free_ char *s = NULL;
	char *save = NULL;

	if (access("/etc/init.d/kexec-load", X_OK) < 0 ||
	    hu_read_file("/etc/default/kexec", 65536, &s, NULL) < 0)
		return false;
	for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		if (strncmp(line, "LOAD_KEXEC=", 11) == 0)
			return strncmp(line + 11, "true", 4) == 0 || strncmp(line + 11, "\"true\"", 6) == 0;
	}
	return false;
}

int hu_kexec_check_no_replacer(struct hu_ctx *ctx)
{
	if (hu_kexec_load_script_active())
		return hu_fail(ctx, -EBUSY,
			       "/etc/default/kexec has LOAD_KEXEC=true: Debian's kexec-load would "
			       "replace the staged kernel at shutdown; set it to false");
	return 0;
}
