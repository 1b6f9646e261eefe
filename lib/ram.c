/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The RAM medium: what tells RAM that survived from RAM that did not.
 * A digest of sampled pages is taken while the guest is stopped and checked
 * before restore resumes from it: a firmware reboot, a wiped or remapped
 * pmem region, or a replaced file changes the sampled pages or the size.
 * mmap, not read: device DAX supports only mmap. A memfd/LUO medium can
 * plug in here later.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "hu-private.h"

#define SAMPLE_PAGES 256
#define PAGE 4096ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int hu_ram_digest(const char *path, uint64_t size, uint64_t *ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t pages = size / PAGE, h = 0xcbf29ce484222325ULL;
	unsigned char *map;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < size)
		return -ERANGE; /* truncated: RAM did not survive */
	if (pages == 0)
		return -EINVAL;
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	h = fnv1a(h, &size, sizeof(size));
	for (uint64_t i = 0; i < SAMPLE_PAGES && i < pages; i++) {
		uint64_t page = pages <= SAMPLE_PAGES ? i : i * (pages - 1) / (SAMPLE_PAGES - 1);

		h = fnv1a(h, map + page * PAGE, PAGE);
	}
	munmap(map, size);
	*ret = h;
	return 0;
}

/* --- what the RAM lives on, for the early-boot check ------------------- */

#include <limits.h>
#include <stdio.h>
#include <sys/sysmacros.h>

static int read_sys_u64(const char *path, uint64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	char *end;
	int r = hu_read_file(path, 64, &s, NULL);

	if (r < 0)
		return r;
	errno = 0;
	*ret = strtoull(s, &end, 0);
	return errno || end == s ? -EBADMSG : 0;
}

static void read_sys_str(const char *path, char **ret)
{
	char *s = NULL;

	if (hu_read_file(path, 64, &s, NULL) >= 0)
		s[strcspn(s, "\n")] = '\0';
	*ret = s;
}

/* Describe the medium under a RAM file: device DAX, a pmem block device,
 * or a file on a filesystem on pmem (fsdax). Anything else is "file":
 * only the digest can tell whether it survived. */
int hu_ram_medium(struct hu_ctx *ctx, const char *mem_path, struct hu_medium *ret)
{
	struct hu_medium m = {};
	struct stat st;
	char link[96], target[PATH_MAX], *name, path[PATH_MAX + 64];
	ssize_t n;

	if (stat(mem_path, &st) < 0)
		return -errno;
	if (S_ISCHR(st.st_mode)) {
		snprintf(link, sizeof(link), "%s/dev/char/%u:%u", ctx->sys_root, major(st.st_rdev), minor(st.st_rdev));
		m.kind = HU_MEDIUM_DEVDAX;
	} else if (S_ISBLK(st.st_mode)) {
		snprintf(link, sizeof(link), "%s/dev/block/%u:%u", ctx->sys_root, major(st.st_rdev), minor(st.st_rdev));
		m.kind = HU_MEDIUM_PMEM;
	} else {
		snprintf(link, sizeof(link), "%s/dev/block/%u:%u", ctx->sys_root, major(st.st_dev), minor(st.st_dev));
		m.kind = HU_MEDIUM_FSDAX;
	}
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		goto plain_file;
	target[n] = '\0';
	name = strrchr(target, '/');
	name = name ? name + 1 : target;
	if (m.kind != HU_MEDIUM_DEVDAX && strncmp(name, "pmem", 4) != 0)
		goto plain_file;
	m.device = strdup(name);
	if (!m.device)
		return -ENOMEM;
	if (m.kind == HU_MEDIUM_DEVDAX) {
		snprintf(path, sizeof(path), "%s/bus/dax/devices/%s/size", ctx->sys_root, name);
		read_sys_u64(path, &m.size);
	} else {
		snprintf(path, sizeof(path), "%s/class/block/%s/size", ctx->sys_root, name);
		if (read_sys_u64(path, &m.size) >= 0)
			m.size *= 512;
		/* The namespace's mode (raw, fsdax, sector) lives beside it. */
		snprintf(path, sizeof(path), "%s/class/block/%s/device/mode", ctx->sys_root, name);
		read_sys_str(path, &m.mode);
	}
	*ret = m;
	return 0;
plain_file:
	m.kind = HU_MEDIUM_FILE;
	*ret = m;
	return 0;
}

/* Is the medium back as it was? 0, or -ESTALE with the reason. */
int hu_ram_medium_check(struct hu_ctx *ctx, const struct hu_medium *m, char *why, size_t len)
{
	char path[PATH_MAX];
	uint64_t size = 0;
	_cleanup_free_ char *mode = NULL;

	if (m->kind == HU_MEDIUM_FILE || !m->device)
		return 0;
	if (m->kind == HU_MEDIUM_DEVDAX)
		snprintf(path, sizeof(path), "%s/bus/dax/devices/%s/size", ctx->sys_root, m->device);
	else
		snprintf(path, sizeof(path), "%s/class/block/%s/size", ctx->sys_root, m->device);
	if (read_sys_u64(path, &size) < 0) {
		snprintf(why, len, "%s is not there: the RAM it held is lost", m->device);
		return -ESTALE;
	}
	if (m->kind != HU_MEDIUM_DEVDAX)
		size *= 512;
	if (size != m->size) {
		snprintf(why, len, "%s is %llu bytes, was %llu: the RAM it held did not survive", m->device,
			 (unsigned long long)size, (unsigned long long)m->size);
		return -ESTALE;
	}
	if (m->mode) {
		snprintf(path, sizeof(path), "%s/class/block/%s/device/mode", ctx->sys_root, m->device);
		read_sys_str(path, &mode);
		if (!mode || !streq(mode, m->mode)) {
			snprintf(why, len, "%s is in mode %s, was %s: the RAM it held did not survive", m->device,
				 mode ?: "(none)", m->mode);
			return -ESTALE;
		}
	}
	return 0;
}

const char *hu_medium_kind_to_string(enum hu_medium_kind k)
{
	switch (k) {
	case HU_MEDIUM_FILE:   return "file";
	case HU_MEDIUM_DEVDAX: return "devdax";
	case HU_MEDIUM_PMEM:   return "pmem";
	case HU_MEDIUM_FSDAX:  return "fsdax";
	}
	return "file";
}
