/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include "common.h"

static char scratch[128];

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	remove(path); /* best effort */
	return 0;
}

static void remove_scratch(void)
{
	if (scratch[0])
		nftw(scratch, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
	if (!scratch[0]) {
		const char *base = getenv("HU_FUZZ_TMPDIR");

		/* make fuzz names a directory of its own and removes it after the
		 * run: a finding ends the process without atexit. */
		snprintf(scratch, sizeof(scratch), "%s/hu-fuzz-%d.XXXXXX",
			 base && base[0] ? base : "/dev/shm", (int)getpid());
		if (!mkdtemp(scratch)) {
			perror("fuzz: mkdtemp");
			abort();
		}
		atexit(remove_scratch);
	}
	return scratch;
}

char *fuzz_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

void fuzz_reset_dir(const char *dir)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		abort();
	if (hu_mkdir_p(dir, 0700) < 0)
		abort();
}

void fuzz_write(const char *dir, const char *name, const void *data, size_t len)
{
	_cleanup_free_ char *path = fuzz_path(dir, name);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	const char *p = data;

	if (fd < 0)
		abort();
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			abort();
		p += n;
		len -= n;
	}
}

static void log_nothing(void *userdata, int priority, const char *vm, const char *fmt, va_list args)
{
}

struct hu_ctx *fuzz_ctx(const char *proc_root, const char *state_dir)
{
	struct hu_ctx *ctx;

	if (hu_new(&ctx) < 0)
		abort();
	hu_set_log_fn(ctx, log_nothing, NULL);
	if ((proc_root && hu_set_proc_root(ctx, proc_root) < 0) ||
	    (state_dir && hu_set_state_dir(ctx, state_dir) < 0))
		abort();
	return ctx;
}

size_t fuzz_split(const uint8_t *data, size_t size, uint8_t sep, const uint8_t **pieces, size_t *lens,
		  size_t max)
{
	size_t n = 0, start = 0;

	if (max == 0)
		return 0;
	for (size_t i = 0; i < size && n + 1 < max; i++)
		if (data[i] == sep) {
			pieces[n] = data + start;
			lens[n++] = i - start;
			start = i + 1;
		}
	pieces[n] = data + start;
	lens[n++] = size - start;
	return n;
}

char *fuzz_strndup(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1);

	if (!s)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}
