/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QEMU command line parser (lib/qemu-argv.c) on an untrusted argv, as
 * /proc/PID/cmdline hands it over: NUL-separated arguments. Everything
 * discover and restore do with an argv: parse it, strip and detect
 * -incoming defer, point a memory backend at a new file, and read each
 * option's "implied,key=value" / JSON form.
 */
#include "common.h"

/* Restore follows a renumbered namespace by rewriting the -object that
 * names the old file: afterwards argv must read the same, but for that one
 * mem-path. */
static void check_replace(char **argv, size_t argc, const struct hu_argv_info *before, const char *old)
{
	static const char new[] = "/dev/shm/moved,to";
	struct hu_argv_info after = {};
	int n = hu_argv_replace_mem_path(argv, argc, old, new);

	if (n <= 0)
		return;
	if (hu_argv_parse(argv, argc, &after) < 0) {
		fprintf(stderr, "argv no longer parses after mem-path %s -> %s\n", old, new);
		abort();
	}
	if (after.n_mem_paths != before->n_mem_paths) {
		fprintf(stderr, "mem-path %s -> %s: %zu memory files, were %zu\n", old, new,
			after.n_mem_paths, before->n_mem_paths);
		abort();
	}
	for (size_t i = 0; i < after.n_mem_paths; i++) {
		const char *want = streq(before->mem_paths[i], old) ? new : before->mem_paths[i];

		if (!streq(after.mem_paths[i], want)) {
			fprintf(stderr, "mem-path %s -> %s: file %zu reads '%s', expected '%s'\n", old, new,
				i, after.mem_paths[i], want);
			abort();
		}
	}
	hu_argv_info_clear(&after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hu_argv_info ai = {};
	char **argv = NULL, **stripped = NULL;
	size_t argc = 0, n_stripped = 0;

	if (size > HU_MAX_CMDLINE)
		return 0;
	/* As read_process() splits /proc/PID/cmdline. */
	for (size_t off = 0; off < size && argc < HU_MAX_ARGS;) {
		_cleanup_free_ char *a = fuzz_strndup(data + off,
						      strnlen((const char *)data + off, size - off));

		if (hu_strv_push(&argv, &argc, a) < 0)
			abort();
		off += strlen(a) + 1;
	}
	if (hu_argv_parse(argv, argc, &ai) == 0) {
		if (!ai.qmp_path && !ai.qmp_error)
			abort(); /* discover reports one or the other */
		if (ai.n_listen_paths > HU_MAX_LISTEN_PATHS)
			abort(); /* prelaunch moves each aside: bounded */
		for (size_t i = 0; i < ai.n_listen_paths; i++)
			if (!ai.listen_paths[i][0] || strlen(ai.listen_paths[i]) >= 108)
				abort(); /* only what QEMU could have bound */
		if (ai.n_mem_paths > 0) {
			_cleanup_free_ char *old = strdup(ai.mem_paths[0]);

			if (!old)
				abort();
			check_replace(argv, argc, &ai, old);
		}
		hu_argv_info_clear(&ai);
	}
	if (hu_argv_strip_incoming(argv, argc, &stripped, &n_stripped) == 0) {
		if (hu_argv_has_incoming_defer(stripped, n_stripped))
			abort(); /* restore adds it back: it must be gone */
		hu_strv_free(stripped, n_stripped);
	}
	(void)hu_argv_has_incoming_defer(argv, argc);
	for (size_t i = 1; i < argc; i++) {
		struct hu_opts o = {};

		if (hu_opts_parse(argv[i], "implied", &o) == 0) {
			(void)hu_opts_get(&o, "implied");
			(void)hu_opts_get(&o, "id");
			hu_opts_clear(&o);
		}
	}
	hu_strv_free(argv, argc);
	return 0;
}
