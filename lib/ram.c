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
