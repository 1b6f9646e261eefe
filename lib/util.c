/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers: bounded reads, crash-safe writes, string lists, threads. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include "hu-private.h"

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* clang-format off */
int64_t hu_now_ms(void) { return clock_ms(CLOCK_REALTIME); }
int64_t hu_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
/* clang-format on */

/* Nanoseconds since the epoch in an int64_t run out in 2262 (and before
 * 1677): a file's mtime past that, which any owner can set, saturates
 * instead of overflowing. Both sides of a comparison convert the same way. */
int64_t hu_timespec_ns(const struct timespec *ts)
{
	int64_t ns;

	if (__builtin_mul_overflow((int64_t)ts->tv_sec, (int64_t)1000000000, &ns) ||
	    __builtin_add_overflow(ns, (int64_t)ts->tv_nsec, &ns))
		return ts->tv_sec < 0 ? INT64_MIN : INT64_MAX;
	return ns;
}

int64_t hu_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Open a path whose file type `accept` takes, relative to `dirfd` (AT_FDCWD
 * or a directory's fd); -EBADFD when it is of another type. Only an O_PATH
 * descriptor is taken before the check: opening a device node is an act of
 * its own (a watchdog arms, a tape rewinds, a serial line raises DTR), and a
 * FIFO would block. What passed is then opened for real through
 * /proc/self/fd, which names that inode, not the path again.
 * `flags`: the access mode and e.g. O_NOFOLLOW, O_CREAT, O_EXCL, O_APPEND. */
int hu_openat_checked(int dirfd, const char *path, int flags, mode_t mode,
		      bool (*accept)(const struct stat *st))
{
	const int reopen_flags = (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC | O_NOCTTY;
	_cleanup_close_ int pfd = -1;
	char proc[sizeof("/proc/self/fd/") + 11];
	struct stat st;
	int fd;

	/* Created here: nothing else was there, so it is a regular file. */
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
		fd = openat(dirfd, path, flags | O_CLOEXEC | O_NOCTTY, mode);
		return fd < 0 ? -errno : fd;
	}
	for (int tries = 0; pfd < 0; tries++) {
		pfd = openat(dirfd, path, O_PATH | O_CLOEXEC | (flags & O_NOFOLLOW));
		if (pfd >= 0)
			break;
		if (errno != ENOENT || !(flags & O_CREAT))
			return -errno;
		/* Not there: create it, refusing whatever appears meanwhile. */
		fd = openat(dirfd, path, flags | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST || tries >= 16)
			return -errno;
	}
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return -ELOOP; /* O_NOFOLLOW, as openat() would say */
	if (!accept(&st))
		return -EBADFD;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	fd = open(proc, reopen_flags);
	return fd < 0 ? -errno : fd;
}

static bool is_regular(const struct stat *st)
{
	return S_ISREG(st->st_mode);
}

int hu_openat_regular(int dirfd, const char *path, int flags, mode_t mode)
{
	return hu_openat_checked(dirfd, path, flags, mode, is_regular);
}

int hu_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		ssize_t n;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			char *nbuf;

			if (cap > max)
				return -EFBIG;
			nbuf = realloc(buf, ncap + 1);
			if (!nbuf)
				return -ENOMEM;
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += n;
		if (len > max)
			return -EFBIG;
	}
	if (!buf && !(buf = malloc(1)))
		return -ENOMEM;
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

static int read_file(int dirfd, const char *path, int flags, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = hu_openat_regular(dirfd, path, O_RDONLY | flags, 0);

	if (fd < 0)
		return fd;
	return hu_read_fd(fd, max, ret, ret_len);
}

int hu_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	return read_file(AT_FDCWD, path, 0, max, ret, ret_len);
}

/* The state dir holds only what we wrote there: a symlink is not followed. */
int hu_read_state_file(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len)
{
	return read_file(dirfd, name, O_NOFOLLOW, max, ret, ret_len);
}

/* What may be flushed by path: a directory, or what RAM may live in. */
static bool is_flushable(const struct stat *st)
{
	return S_ISDIR(st->st_mode) || hu_ram_medium_type(st);
}

/* The path may be in another user's directory: a FIFO or a device node put
 * there is refused (-EBADFD), not opened. */
int hu_fsync_path(const char *path)
{
	_cleanup_close_ int fd = hu_openat_checked(AT_FDCWD, path, O_RDONLY, 0, is_flushable);

	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

/* tmp + fsync + rename + fsync(dir), in the directory `dirfd`: a reader
 * sees the old or the new file, never a torn one, also after a crash or
 * kill -9 at any point. */
int hu_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
	return hu_write_file_replace_at(dirfd, name, data, len, mode, true);
}

int hu_write_file_replace_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			     bool durable)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	const char *p = data;
	int r;

	/* A new file of an unguessable name (O_EXCL): nothing put there before,
	 * a FIFO, a link or a file of someone else's, is opened or written. */
	for (int tries = 0; fd < 0; tries++) {
		uint64_t rnd;

		/* Never blocks (early boot may have no entropy yet): O_EXCL,
		 * not the name, is what keeps others' files out. */
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
			rnd = (uint64_t)hu_mono_us() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32 ^
			      tries;
		free(tmp);
		if (asprintf(&tmp, "%s.tmp.%016llx", name, (unsigned long long)rnd) < 0) {
			tmp = NULL;
			return -ENOMEM;
		}
		fd = hu_openat_regular(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
		if (fd == -EEXIST && tries < 16)
			fd = -1;
		else if (fd < 0)
			return fd;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		p += n;
		len -= n;
	}
	if (fchmod(fd, mode) < 0 || (durable && fsync(fd) < 0)) {
		r = -errno;
		goto fail;
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		r = -errno;
		goto fail;
	}
	return durable && fsync(dirfd) < 0 ? -errno : 0;
fail:
	unlinkat(dirfd, tmp, 0);
	return r;
}

int hu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	_cleanup_free_ char *dircopy = strdup(path), *namecopy = strdup(path);
	_cleanup_close_ int dirfd = -1;

	if (!dircopy || !namecopy)
		return -ENOMEM;
	dirfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	return hu_write_file_atomic_at(dirfd, basename(namecopy), data, len, mode);
}

/* A directory whose files we trust and act on (the state dir: a manifest
 * names programs restore executes as their users, root included) must be
 * ours alone: owned by the uid we run as, writable by nobody else. Checked on
 * the opened directory (O_NOFOLLOW: not through a symlink swapped in), and
 * made 0700 through that fd when `tighten` (state files hold argv, which may
 * carry secrets). Returns the directory's fd. */
int hu_open_private_dir(const char *dir, bool tighten, char **ret_error)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (tighten && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hu_errorf(ret_error, -errno, "%s: cannot create it: %s", dir, strerror(errno));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;

		/* O_DIRECTORY fails first on a symlink: lstat only to say so. */
		if ((r == -ENOTDIR || r == -ELOOP) && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
			return hu_errorf(ret_error, -ELOOP, "%s: a symbolic link, refused", dir);
		return hu_errorf(ret_error, r, "%s: %s", dir,
				 r == -ENOTDIR ? "not a directory, refused" : strerror(-r));
	}
	if (fstat(fd, &st) < 0)
		return hu_errorf(ret_error, -errno, "%s: %s", dir, strerror(errno));
	if (st.st_uid != geteuid())
		return hu_errorf(ret_error, -EPERM,
				 "%s is owned by uid %u (mode %04o), not by uid %u that runs this: refused, "
				 "what is in it may not be ours",
				 dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
				 (unsigned)geteuid());
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return hu_errorf(
			ret_error, -EPERM,
			"%s is writable by others (owner uid %u, mode %04o): refused, anyone could have "
			"put files in it",
			dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	if (tighten && (st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
		return hu_errorf(ret_error, -errno, "%s: chmod 0700: %s", dir, strerror(errno));
	return TAKE_FD(fd);
}

int hu_mkdir_private(const char *dir)
{
	_cleanup_close_ int fd = hu_open_private_dir(dir, true, NULL);

	return fd < 0 ? fd : 0;
}

/* The state dir, opened and checked once per context (hu_set_state_dir
 * forgets it); `create`: made if missing, and 0700. The fd stays the
 * context's. */
int hu_state_dir_fd(struct hu_ctx *ctx, bool create, char **ret_error)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	int fd;

	pthread_mutex_lock(&lock);
	fd = ctx->state_fd;
	if (fd < 0 || (create && !ctx->state_fd_rw)) {
		int nfd = hu_open_private_dir(ctx->state_dir, create, ret_error);

		if (nfd < 0) {
			fd = nfd;
		} else {
			if (ctx->state_fd >= 0)
				close(ctx->state_fd);
			ctx->state_fd = fd = nfd;
			ctx->state_fd_rw = create;
		}
	}
	pthread_mutex_unlock(&lock);
	return fd;
}

/* A file in the state dir: never through a symlink, never a FIFO or a
 * device; with O_CREAT, mode 0600 unless said otherwise. */
int hu_state_open(struct hu_ctx *ctx, const char *name, int flags)
{
	int dirfd = hu_state_dir_fd(ctx, false, NULL);

	if (dirfd < 0)
		return dirfd;
	return hu_openat_regular(dirfd, name, flags | O_NOFOLLOW, 0600);
}

/* Replace *dst with a copy of src; *dst is untouched on failure. */
int hu_strdup_replace(char **dst, const char *src)
{
	char *s = strdup(src);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

int hu_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST)
				return -errno;
			*s = '/';
		}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int hu_strv_push(char ***strv, size_t *n, const char *s)
{
	char **nv;
	char *copy = strdup(s);

	if (!copy)
		return -ENOMEM;
	nv = realloc(*strv, (*n + 2) * sizeof(char *));
	if (!nv) {
		free(copy);
		return -ENOMEM;
	}
	nv[(*n)++] = copy;
	nv[*n] = NULL;
	*strv = nv;
	return 0;
}

int hu_strv_pushf(char ***strv, size_t *n, const char *fmt, ...)
{
	_cleanup_free_ char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return hu_strv_push(strv, n, s);
}

int hu_errorf(char **ret_error, int r, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	if (!ret_error)
		return r;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(*ret_error);
	*ret_error = s;
	return r;
}

void hu_strv_free(char **strv, size_t n)
{
	if (!strv)
		return;
	for (size_t i = 0; i < n; i++)
		free(strv[i]);
	free(strv);
}

/* QEMU size syntax: a number with an optional K/M/G/T suffix (binary). */
int hu_parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	/* clang-format off */
	switch (*end) {
	case '\0': case 'B': case 'b': shift = 0; break;
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	case 'T': case 't': shift = 40; break;
	default: return -EINVAL;
	}
	/* clang-format on */
	if (*end && end[1] != '\0')
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

/* A VM name ends up in file names: only a safe, bounded alphabet. */
bool hu_name_is_safe(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > HU_MAX_NAME || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

int hu_read_boot_id(char *buf, size_t len)
{
	_cleanup_free_ char *s = NULL;
	int r = hu_read_file("/proc/sys/kernel/random/boot_id", 128, &s, NULL);

	if (r < 0)
		return r;
	s[strcspn(s, "\n")] = '\0';
	if (strlen(s) + 1 > len)
		return -ENOBUFS;
	strcpy(buf, s);
	return 0;
}

struct par {
	size_t n;
	size_t next;
	void (*fn)(size_t, void *);
	void *data;
	pthread_mutex_t lock;
};

static void *par_worker(void *arg)
{
	struct par *p = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->lock);
		i = p->next++;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->n)
			return NULL;
		p->fn(i, p->data);
	}
}

void hu_parallel_for(size_t n, unsigned jobs, void (*fn)(size_t i, void *data), void *data)
{
	struct par p = { .n = n, .fn = fn, .data = data, .lock = PTHREAD_MUTEX_INITIALIZER };
	size_t nthreads = (jobs == 0 || jobs > n) ? n : jobs, started = 0;
	pthread_t *tids;

	if (n == 0)
		return;
	tids = calloc(nthreads, sizeof(*tids));
	for (size_t t = 0; tids && t < nthreads; t++) {
		if (pthread_create(&tids[t], NULL, par_worker, &p) != 0)
			break;
		started++;
	}
	/* With no thread at all, still make progress on this one. */
	if (started == 0)
		par_worker(&p);
	for (size_t t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	pthread_mutex_destroy(&p.lock);
}

struct fsync_batch {
	const char *const *paths;
	int *results;
};

static void fsync_one(size_t i, void *data)
{
	struct fsync_batch *b = data;

	b->results[i] = hu_fsync_path(b->paths[i]);
}

/* fsync several files at once: on one journalling file system their
 * flushes share a commit instead of waiting for one each. */
void hu_fsync_paths(const char *const *paths, size_t n, int *results)
{
	struct fsync_batch b = { .paths = paths, .results = results };

	if (n == 1)
		fsync_one(0, &b);
	else
		hu_parallel_for(n, 0, fsync_one, &b);
}

/* One mutating verb at a time per state dir; the kernel drops the lock
 * when we die, so kill -9 never leaves it stale. */
int hu_lock_state_dir(struct hu_ctx *ctx, int *ret_fd)
{
	_cleanup_free_ char *why = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	r = hu_state_dir_fd(ctx, true, &why);
	if (r < 0)
		return hu_fail(ctx, r, "state dir %s", why ?: strerror(-r));
	fd = hu_state_open(ctx, "lock", O_RDWR | O_CREAT);
	if (fd < 0)
		return hu_fail(ctx, fd, "state dir %s: lock: %s", ctx->state_dir,
			       fd == -ELOOP    ? "a symbolic link, refused"
			       : fd == -EBADFD ? "not a regular file, refused"
					       : strerror(-fd));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		return hu_fail(ctx, r, "state dir %s: %s", ctx->state_dir,
			       r == -EBUSY ? "another host-upgrade is working on it" : strerror(-r));
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}
