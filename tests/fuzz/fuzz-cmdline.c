/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel command line: what early boot reads from /proc/cmdline (the
 * restore marker, hu.state=UUID=<uuid>:/<dir>) and what stage makes of it
 * for the next kernel (hu_cmdline_compose). The input is /proc/cmdline's
 * contents; after a NUL byte, if there is one, the command line asked for
 * (stage --append). The file goes into a proc root of its own.
 *
 * compose is checked against the kernel's own reading of a command line
 * (lib/cmdline.c next_arg(), below): every memmap=…!… region the running
 * kernel has must reach the new kernel with the same value, or compose
 * must refuse; and early boot, reading the new line, must find the marker.
 */
#include "common.h"

/* The kernel's isspace(): lib/ctype.c also counts 0xa0 (Latin-1 NBSP). */
static bool kernel_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0;
}

/* Linux lib/cmdline.c next_arg(), in place: one parameter, quotes as the
 * kernel strips them. Returns where the next one starts. */
static char *kernel_next_arg(char *args, char **param, char **val)
{
	unsigned i, equals = 0;
	bool in_quote = false, quoted = false;

	if (*args == '"') {
		args++;
		in_quote = quoted = true;
	}
	for (i = 0; args[i]; i++) {
		if (kernel_space(args[i]) && !in_quote)
			break;
		if (equals == 0 && args[i] == '=')
			equals = i;
		if (args[i] == '"')
			in_quote = !in_quote;
	}
	*param = args;
	if (!equals) {
		*val = NULL;
	} else {
		args[equals] = '\0';
		*val = args + equals + 1;
		if (**val == '"') {
			(*val)++;
			if (args[i - 1] == '"')
				args[i - 1] = '\0';
		}
	}
	if (quoted && i > 0 && args[i - 1] == '"')
		args[i - 1] = '\0';
	if (args[i]) {
		args[i] = '\0';
		args += i + 1;
	} else {
		args += i;
	}
	while (kernel_space(*args))
		args++;
	return args;
}

/* The kernel parameters of a command line (up to "--": the rest is init's),
 * as lib/params.c parse_args() hands them out: param and value (NULL when
 * there is no '='). Stops when fn returns true, and returns that. */
static bool kernel_params(const char *cmdline, bool (*fn)(const char *param, const char *val, void *data),
			  void *data)
{
	_cleanup_free_ char *copy = strdup(cmdline);
	char *p, *k, *v;

	if (!copy)
		abort();
	for (p = copy; kernel_space(*p); p++)
		;
	while (*p) {
		p = kernel_next_arg(p, &k, &v);
		if (!v && streq(k, "--"))
			break;
		if (fn(k, v, data))
			return true;
	}
	return false;
}

static bool is_region(const char *param, const char *val, void *data)
{
	return streq(param, "memmap") && val && streq(val, data);
}

/* A legacy pmem region (memmap=…!…) of the running kernel must be in `out`. */
static bool region_dropped(const char *param, const char *val, void *out)
{
	if (!streq(param, "memmap") || !val || !strchr(val, '!') ||
	    kernel_params(out, is_region, (void *)val))
		return false;
	fprintf(stderr, "the new command line drops memmap=%s: %s\n", val, (const char *)out);
	return true;
}

/* What early boot reads; true when it would prepare a restore (the key is
 * there: early boot does not look at its value). */
static bool early_boot_reads(struct hu_ctx *ctx)
{
	_cleanup_free_ char *marker = NULL, *spec = NULL, *uuid = NULL, *dir = NULL;
	int r = hu_cmdline_get(ctx, HU_CMDLINE_MARKER_KEY, &marker);

	if (hu_cmdline_get(ctx, "hu.state", &spec) == 1 && hu_state_spec_parse(spec, &uuid, &dir) == 0) {
		/* The UUID goes to libblkid, the dir under the mount point. */
		if (!uuid[0] || strchr(uuid, ':') || dir[0] != '/')
			abort();
	}
	return r == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hu_ctx *ctx;
	static char *proc;
	const uint8_t *nul = memchr(data, '\0', size);
	size_t cur_len = nul ? (size_t)(nul - data) : size;
	_cleanup_free_ char *current = fuzz_strndup(data, cur_len), *requested = NULL, *out = NULL,
			    *missing = NULL;

	if (size > 16384)
		return 0;
	if (!ctx) {
		proc = fuzz_path(fuzz_dir(), "proc");
		fuzz_reset_dir(proc);
		ctx = fuzz_ctx(proc, NULL);
	}
	fuzz_write(proc, "cmdline", data, cur_len);
	early_boot_reads(ctx);

	/* stage: the running kernel's line, up to its newline. */
	current[strcspn(current, "\n")] = '\0';
	if (nul)
		requested = fuzz_strndup(nul + 1, size - cur_len - 1);
	if (hu_cmdline_compose(current, requested, HU_CMDLINE_MARKER, &out, &missing) == 0) {
		if (kernel_params(current, region_dropped, out))
			abort();
		/* The next boot's /proc/cmdline. */
		fuzz_write(proc, "cmdline", out, strlen(out));
		if (!early_boot_reads(ctx)) {
			fprintf(stderr, "early boot does not see %s in the new command line: %s\n",
				HU_CMDLINE_MARKER, out);
			abort();
		}
	}
	return 0;
}
