/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stage (groundwork): what the new kernel is, and the command line it must
 * boot with. The saved RAM depends on some parameters of the running kernel
 * (legacy pmem "memmap=nn!ss" regions, and nokaslr that keeps the kernel
 * off them): a new command line that drops one is refused. A marker tells
 * the initrd that a restore is pending.
 */
#include <fcntl.h>
#include <stdio.h>
#include "hu-private.h"

#define BZ_HDR_MAGIC_OFF   0x202   /* "HdrS" */
#define BZ_VERSION_PTR_OFF 0x20e   /* u16: version string offset - 0x200 */
#define BZ_HEAD_MAX        0x10000

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

/* Next whitespace-separated word of a kernel command line, quotes kept. */
static const char *next_word(const char *p, const char **ret_end)
{
	bool quoted = false;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (!*p)
		return NULL;
	*ret_end = p;
	while (**ret_end && (quoted || (**ret_end != ' ' && **ret_end != '\t' && **ret_end != '\n'))) {
		if (**ret_end == '"')
			quoted = !quoted;
		(*ret_end)++;
	}
	return p;
}

static bool has_word(const char *cmdline, const char *w, size_t wl)
{
	const char *end, *p = cmdline;

	while ((p = next_word(p, &end))) {
		if ((size_t)(end - p) == wl && memcmp(p, w, wl) == 0)
			return true;
		p = end;
	}
	return false;
}

/* Parameters the saved RAM depends on: memmap=…!… (legacy pmem) and,
 * when present with them, nokaslr. */
static bool ram_param(const char *w, size_t wl, bool has_pmem)
{
	if (wl > 7 && memcmp(w, "memmap=", 7) == 0 && memchr(w, '!', wl))
		return true;
	return has_pmem && wl == 7 && memcmp(w, "nokaslr", 7) == 0;
}

int hu_cmdline_compose(const char *current, const char *requested, const char *marker,
		       char **ret, char **ret_missing)
{
	const char *p, *end;
	bool has_pmem = strstr(current, "memmap=") && strchr(current, '!');
	_cleanup_free_ char *out = NULL;
	size_t len;

	if (strlen(current) > 4096 || (requested && strlen(requested) > 4096))
		return -E2BIG;
	/* Every RAM parameter of the running kernel must be in the new line. */
	for (p = current; requested && (p = next_word(p, &end)); p = end)
		if (ram_param(p, end - p, has_pmem) && !has_word(requested, p, end - p)) {
			if (ret_missing)
				*ret_missing = strndup(p, end - p);
			return -EINVAL;
		}
	out = strdup(requested ? requested : current);
	if (!out)
		return -ENOMEM;
	len = strlen(out);
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
		out[--len] = '\0';
	if (marker && !has_word(out, marker, strlen(marker))) {
		char *n;

		if (asprintf(&n, "%s%s%s", out, len ? " " : "", marker) < 0)
			return -ENOMEM;
		free(out);
		out = n;
	}
	*ret = TAKE_PTR(out);
	return 0;
}
