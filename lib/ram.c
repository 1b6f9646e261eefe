/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The RAM medium: whether a VM's RAM survives what follows, and what tells
 * RAM that survived from RAM that did not.
 * The backing class of a RAM file (persistent, volatile, private) decides
 * at plan time whether it may stay in place (x-ignore-shared).
 * A digest of sampled pages is taken while the guest is stopped and checked
 * before restore resumes from it: a firmware reboot, a wiped or remapped
 * pmem region, or a replaced file changes the sampled pages or the size.
 * mmap, not read: device DAX supports only mmap. The namespace that holds
 * the RAM (libndctl) is recorded too, so restore can tell a renumbered
 * namespace from a lost one. A memfd/LUO medium can plug in here later.
 */
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <blkid.h>
#include <daxctl/libdaxctl.h>
#include <ndctl/libndctl.h>
#include <uuid/uuid.h>
#include "hu-private.h"

/* xxHash in its header-only form: no library to carry into the initrd. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

#define SAMPLE_PAGES 256
#define PAGE	     4096ULL

/* --- the backing class of a RAM file ---------------------------------- */

int hu_classify_fs(long f_type, enum hu_backing *ret)
{
	switch ((unsigned long)f_type) {
	case TMPFS_MAGIC:
	case HUGETLBFS_MAGIC:
	case RAMFS_MAGIC: *ret = HU_BACKING_VOLATILE; return 0;
	case PROC_SUPER_MAGIC:
	case SYSFS_MAGIC: return -EINVAL;
	default: *ret = HU_BACKING_PERSISTENT; return 0;
	}
}

/* Is `path` on a filesystem mounted with -o dax? (for the explanation only) */
static bool path_on_dax_mount(const char *path)
{
	_cleanup_free_ char *mi = NULL;
	size_t best = 0;
	bool dax = false;

	if (hu_read_file("/proc/self/mountinfo", 4 << 20, &mi, NULL) < 0)
		return false;
	char *save = NULL;

	for (char *line = strtok_r(mi, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char mnt[PATH_MAX], opts[1024];
		size_t ml;

		if (sscanf(line, "%*s %*s %*s %*s %4095s %1023s", mnt, opts) != 2)
			continue;
		ml = strlen(mnt);
		if (strncmp(path, mnt, ml) != 0 || (path[ml] != '/' && path[ml] && ml > 1))
			continue;
		if (ml >= best) {
			best = ml;
			dax = strstr(line, "dax") != NULL;
		}
	}
	return dax;
}

static bool chr_is_dax(dev_t rdev)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/sys/dev/char/%u:%u/subsystem", major(rdev), minor(rdev));
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	return n > 0 && strstr(target, "/dax");
}

int hu_classify_path(const char *path, bool share, enum hu_backing *ret, char **ret_why)
{
	struct stat st;
	struct statfs sf;
	const char *why;
	enum hu_backing b;
	int r;

	if (!share) {
		*ret = HU_BACKING_PRIVATE;
		*ret_why = strdup("share=off: guest writes never reach the file");
		return 0;
	}
	if (stat(path, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		*ret = HU_BACKING_PRIVATE;
		*ret_why = strdup("mem-path is a directory: QEMU uses an unlinked temporary file");
		return 0;
	}
	if (S_ISCHR(st.st_mode)) {
		/* Only device DAX keeps RAM across a reboot; /dev/zero does not. */
		if (chr_is_dax(st.st_rdev)) {
			*ret = HU_BACKING_PERSISTENT;
			*ret_why = strdup("device DAX");
		} else {
			*ret = HU_BACKING_PRIVATE;
			*ret_why = strdup("character device that is not device DAX");
		}
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		*ret = HU_BACKING_PERSISTENT;
		*ret_why = strdup("block device (pmem)");
		return 0;
	}
	if (statfs(path, &sf) < 0)
		return -errno;
	r = hu_classify_fs(sf.f_type, &b);
	if (r < 0)
		return r;
	if (b == HU_BACKING_VOLATILE)
		why = (unsigned long)sf.f_type == HUGETLBFS_MAGIC ? "file on hugetlbfs"
								  : "file on tmpfs/ramfs";
	else
		why = path_on_dax_mount(path) ? "file on an fsdax mount"
					      : "file on a disk filesystem (flushed after quit)";
	*ret = b;
	*ret_why = strdup(why);
	return 0;
}

/* --- the digest of sampled pages ------------------------------------- */

bool hu_ram_medium_type(const struct stat *st)
{
	return S_ISREG(st->st_mode) || S_ISBLK(st->st_mode) ||
	       (S_ISCHR(st->st_mode) && chr_is_dax(st->st_rdev));
}

/* A RAM file may sit in its owner's directory: whatever is put in its place
 * (a FIFO that would block for ever, a device node whose open acts) is
 * refused from an O_PATH descriptor unless a file, a block device (legacy
 * pmem) or device DAX. */
int hu_ram_digest(const char *path, uint64_t size, uint64_t *ret)
{
	_cleanup_close_ int fd = hu_openat_checked(AT_FDCWD, path, O_RDONLY, 0, hu_ram_medium_type);
	uint64_t pages = size / PAGE;
	unsigned char *map;
	XXH3_state_t st;
	struct stat sb;

	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) < 0)
		return -errno;
	if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < size)
		return -ERANGE; /* truncated: RAM did not survive */
	if (pages == 0)
		return -EINVAL;
	/* On the blackout path twice (checkpoint, restore), so cheap: XXH3,
	 * and pread where it works (a fault per page of a fresh mapping costs
	 * more than the read); device DAX only maps. */
	map = S_ISCHR(sb.st_mode) ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
	if (map == MAP_FAILED)
		return -errno;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &size, sizeof(size));
	for (uint64_t i = 0; i < SAMPLE_PAGES && i < pages; i++) {
		uint64_t page = pages <= SAMPLE_PAGES ? i : i * (pages - 1) / (SAMPLE_PAGES - 1);
		unsigned char buf[PAGE];

		if (!map) {
			ssize_t n = pread(fd, buf, PAGE, page * PAGE);

			if (n != (ssize_t)PAGE)
				return n < 0 ? -errno : -EIO;
		}
		XXH3_64bits_update(&st, map ? map + page * PAGE : buf, PAGE);
	}
	*ret = XXH3_64bits_digest(&st);
	if (map)
		munmap(map, size);
	return 0;
}

/* --- what the RAM lives on: the namespace, through libndctl ----------- */

static void ndctl_unrefp(struct ndctl_ctx **p)
{
	if (*p)
		ndctl_unref(*p);
}

/* libndctl logs to stderr by default; a library does not print. */
static void ndctl_quiet(struct ndctl_ctx *ctx, int priority, const char *file, int line, const char *fn,
			const char *format, va_list args)
{
}

static const char *ns_mode_to_string(enum ndctl_namespace_mode mode)
{
	/* clang-format off */
	switch (mode) {
	case NDCTL_NS_MODE_FSDAX:  return "fsdax";
	case NDCTL_NS_MODE_SECTOR: return "sector";
	case NDCTL_NS_MODE_RAW:    return "raw";
	case NDCTL_NS_MODE_DEVDAX: return "devdax";
	default:                   return "unknown";
	}
	/* clang-format on */
}

/* What one namespace exposes, as ndctl list shows it: the device, the uuid of
 * its label or info block (none for a raw label-less one), mode and size. */
struct ns_view {
	const char *ns;
	const char *device;
	dev_t devt; /* device DAX only */
	char uuid[37];
	const char *mode;
	uint64_t size;
};

static bool ns_view_get(struct ndctl_namespace *ndns, struct ns_view *v)
{
	enum ndctl_namespace_mode mode = ndctl_namespace_get_mode(ndns);
	struct ndctl_pfn *pfn = ndctl_namespace_get_pfn(ndns);
	struct ndctl_dax *dax = ndctl_namespace_get_dax(ndns);
	uuid_t uu;

	*v = (struct ns_view){ .ns = ndctl_namespace_get_devname(ndns), .mode = ns_mode_to_string(mode) };
	uuid_clear(uu);
	if (dax) {
		struct daxctl_region *region = ndctl_dax_get_daxctl_region(dax);
		struct daxctl_dev *dev;

		ndctl_dax_get_uuid(dax, uu);
		daxctl_dev_foreach(region, dev)
		{
			if (daxctl_dev_get_size(dev) == 0)
				continue; /* the seed device of the region */
			v->device = daxctl_dev_get_devname(dev);
			v->devt = makedev(daxctl_dev_get_major(dev), daxctl_dev_get_minor(dev));
			v->size = daxctl_dev_get_size(dev);
			break;
		}
	} else if (pfn) {
		ndctl_pfn_get_uuid(pfn, uu);
		v->device = ndctl_pfn_get_block_device(pfn);
		v->size = ndctl_pfn_get_size(pfn);
	} else {
		v->device = ndctl_namespace_get_block_device(ndns);
		v->size = ndctl_namespace_get_size(ndns);
	}
	if (uuid_is_null(uu))
		ndctl_namespace_get_uuid(ndns, uu);
	if (!uuid_is_null(uu))
		uuid_unparse(uu, v->uuid);
	return v->device && v->device[0];
}

/* How a namespace is looked for: by the device a RAM file lives on, or by name. */
struct ns_key {
	dev_t devt;	    /* device DAX: its char device number */
	const char *device; /* pmem0, dax0.0 */
	const char *uuid;   /* also reported: where a namespace with this uuid is now */
};

static bool device_is(const char *device, const char *want)
{
	size_t n = strlen(device);

	/* pmem0 holds the filesystem also when it is on a partition, pmem0p1 */
	return strncmp(want, device, n) == 0 && (want[n] == '\0' || (want[n] == 'p' && isdigit(want[n + 1])));
}

static int view_copy(const struct ns_view *v, struct hu_medium *ret)
{
	ret->device = strdup(v->device);
	ret->ns = strdup(v->ns);
	ret->uuid = v->uuid[0] ? strdup(v->uuid) : NULL;
	ret->mode = strdup(v->mode);
	ret->size = v->size;
	return !ret->device || !ret->ns || !ret->mode || (v->uuid[0] && !ret->uuid) ? -ENOMEM : 0;
}

/* 1 and the view copied into *ret when found; 0 when not; negative errno
 * when libndctl fails. Every namespace is looked at: *moved_to names the
 * device that holds key->uuid now when that is not the one found. */
static int ns_find(const struct ns_key *key, struct hu_medium *ret, char **moved_to)
{
	_cleanup_(ndctl_unrefp) struct ndctl_ctx *nd = NULL;
	struct ndctl_bus *bus;
	struct ndctl_region *region;
	struct ndctl_namespace *ndns;
	int r = ndctl_new(&nd), found = 0;

	if (r < 0)
		return r;
	ndctl_set_log_fn(nd, ndctl_quiet);
	ndctl_bus_foreach(nd, bus) ndctl_region_foreach(bus, region) ndctl_namespace_foreach(region, ndns)
	{
		struct ns_view v;
		bool match;

		if (!ns_view_get(ndns, &v))
			continue;
		match = key->devt ? v.devt == key->devt : device_is(v.device, key->device);
		if (match && !found) {
			r = view_copy(&v, ret);
			if (r < 0)
				return r;
			found = 1;
		} else if (!match && moved_to && !*moved_to && key->uuid && streq(v.uuid, key->uuid)) {
			*moved_to = strdup(v.device);
		}
	}
	return found;
}

void hu_medium_clear(struct hu_medium *m)
{
	free(m->device);
	free(m->ns);
	free(m->uuid);
	free(m->mode);
	*m = (struct hu_medium){};
}

/* Describe the medium under a RAM file: device DAX, a pmem block device, or a
 * file on a filesystem on pmem (fsdax), with the namespace that holds it.
 * Anything else is "file": only the digest can tell whether it survived. */
int hu_ram_medium(struct hu_ctx *ctx, const char *mem_path, struct hu_medium *ret)
{
	struct hu_medium m = {};
	_cleanup_free_ char *devname = NULL;
	struct ns_key key = {};
	struct stat st;
	int r;

	if (stat(mem_path, &st) < 0)
		return -errno;
	if (S_ISCHR(st.st_mode)) {
		m.kind = HU_MEDIUM_DEVDAX;
		key.devt = st.st_rdev;
	} else {
		m.kind = S_ISBLK(st.st_mode) ? HU_MEDIUM_PMEM : HU_MEDIUM_FSDAX;
		devname = blkid_devno_to_devname(S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev);
		if (!devname || strncmp(devname, "/dev/pmem", 9) != 0)
			goto plain_file;
		key.device = devname + strlen("/dev/");
	}
	r = ns_find(&key, &m, NULL);
	if (r < 0) {
		hu_medium_clear(&m);
		return r;
	}
	if (r == 0)
		goto plain_file;
	*ret = m;
	return 0;
plain_file:
	hu_medium_clear(&m);
	*ret = (struct hu_medium){ .kind = HU_MEDIUM_FILE };
	return 0;
}

/* Is what `now` describes the medium `was` recorded? 0, or -ESTALE and why. */
int hu_medium_compare(const struct hu_medium *was, const struct hu_medium *now, char **ret_why)
{
	if (was->uuid && (!now->uuid || !streq(was->uuid, now->uuid)))
		return hu_errorf(ret_why, -ESTALE,
				 "%s is namespace %s now, was %s: not the pmem the RAM was left in",
				 was->device, now->uuid ?: "(no uuid)", was->uuid);
	if (now->size != was->size)
		return hu_errorf(ret_why, -ESTALE,
				 "%s is %llu bytes, was %llu: the RAM it held did not survive", was->device,
				 (unsigned long long)now->size, (unsigned long long)was->size);
	if (was->mode && (!now->mode || !streq(was->mode, now->mode)))
		return hu_errorf(ret_why, -ESTALE,
				 "%s is in mode %s, was %s: the RAM it held did not survive", was->device,
				 now->mode ?: "(none)", was->mode);
	return 0;
}

/* Is the medium back as it was? 0; -ENODEV while its device is not there
 * (drivers may still be probing); -ESTALE when it is another one. */
int hu_ram_medium_check(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_why)
{
	return hu_ram_medium_locate(ctx, m, NULL, ret_why);
}

/* hu_ram_medium_check, and on -ESTALE the device that holds the recorded
 * namespace (by uuid) now, if any, in *ret_moved_to. */
int hu_ram_medium_locate(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_moved_to, char **ret_why)
{
	struct hu_medium now = {};
	_cleanup_free_ char *moved_to = NULL, *why = NULL;
	struct ns_key key = { .device = m->device, .uuid = m->uuid };
	int r;

	if (m->kind == HU_MEDIUM_FILE || !m->device)
		return 0;
	r = ns_find(&key, &now, &moved_to);
	if (r < 0)
		return hu_errorf(ret_why, r, "cannot list the pmem namespaces: %s", strerror(-r));
	if (r == 0 && moved_to) {
		r = hu_errorf(
			ret_why, -ESTALE,
			"%s is not there: its namespace %s is %s now, not the device the VM's argv names",
			m->device, m->uuid, moved_to);
		if (ret_moved_to)
			*ret_moved_to = TAKE_PTR(moved_to);
		return r;
	}
	if (r == 0)
		return hu_errorf(ret_why, -ENODEV, "%s is not there: the RAM it held is lost", m->device);
	r = hu_medium_compare(m, &now, &why);
	hu_medium_clear(&now);
	if (r < 0 && moved_to) {
		/* Namespaces renumbered: say where it went (the argv names the old device). */
		hu_errorf(ret_why, r, "%s; namespace %s is %s now", why, m->uuid, moved_to);
		if (ret_moved_to)
			*ret_moved_to = TAKE_PTR(moved_to);
	} else if (r < 0) {
		hu_errorf(ret_why, r, "%s", why);
	}
	return r;
}

/* The recorded namespace on another device now (namespaces renumbered),
 * and still the same one there (uuid, size, mode): 0 with that device
 * ("dax0.0") and, if asked, its medium; -ESTALE otherwise. */
int hu_ram_medium_follow(struct hu_ctx *ctx, const struct hu_medium *m, char **ret_device,
			 struct hu_medium *ret_now)
{
	_cleanup_free_ char *moved_to = NULL, *path = NULL;
	struct hu_medium now = {};
	int r;

	if (!m->uuid)
		return -ESTALE;
	r = hu_ram_medium_locate(ctx, m, &moved_to, NULL);
	if (r != -ESTALE || !moved_to)
		return -ESTALE;
	if (asprintf(&path, "/dev/%s", moved_to) < 0)
		return -ENOMEM;
	r = hu_ram_medium(ctx, path, &now);
	if (r >= 0 && (!now.uuid || hu_medium_compare(m, &now, NULL) < 0))
		r = -ESTALE;
	if (r < 0) {
		hu_medium_clear(&now);
		return -ESTALE;
	}
	*ret_device = TAKE_PTR(moved_to);
	if (ret_now)
		*ret_now = now;
	else
		hu_medium_clear(&now);
	return 0;
}

/* hu_ram_medium_check, waiting until `deadline` (hu_mono_ms) while the
 * device is not there. udev gives no event we could wait on from here
 * (the initrd may have no udev): a bounded poll. */
int hu_ram_medium_wait(struct hu_ctx *ctx, const struct hu_medium *m, int64_t deadline, char **ret_why)
{
	int r;

	while ((r = hu_ram_medium_check(ctx, m, ret_why)) == -ENODEV && hu_mono_ms() < deadline)
		usleep(50000);
	return r;
}

/* What a failed hu_ram_digest means, for messages. */
const char *hu_ram_strerror(int r)
{
	/* clang-format off */
	switch (r) {
	case -EBADFD: return "neither a regular file nor a pmem or device DAX node";
	case -ERANGE: return "shorter than the RAM it held";
	default:      return strerror(-r);
	}
	/* clang-format on */
}

const char *hu_medium_kind_to_string(enum hu_medium_kind k)
{
	/* clang-format off */
	switch (k) {
	case HU_MEDIUM_FILE:   return "file";
	case HU_MEDIUM_DEVDAX: return "devdax";
	case HU_MEDIUM_PMEM:   return "pmem";
	case HU_MEDIUM_FSDAX:  return "fsdax";
	}
	/* clang-format on */
	return "file";
}
