/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manifest loader (lib/manifest.c) on an untrusted manifest.json in a
 * state dir of its own, and what the status view, a save and early boot do
 * with one that loaded: a manifest host-upgrade accepted must save and load
 * back the same (restore rewrites it after every VM), and early boot's
 * drop-in of RAM mounts must come out of it (in linear time: -timeout).
 */
#include "common.h"

static char *manifest_text(struct hu_manifest *m)
{
	_cleanup_json_ json_object *o = NULL;
	char *s;

	if (hu_manifest_to_json(m, &o) < 0)
		abort();
	s = strdup(
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (!s)
		abort();
	return s;
}

static void status_view(const struct hu_manifest *m)
{
	(void)hu_manifest_get_phase(m);
	(void)hu_manifest_get_target_kernel(m);
	for (size_t i = 0; i < hu_manifest_count(m); i++) {
		int64_t step;

		(void)hu_manifest_vm_name(m, i);
		(void)hu_manifest_vm_state(m, i);
		(void)hu_manifest_vm_downtime_ms(m, i);
		(void)hu_manifest_vm_clock_step_ms(m, i, &step);
		(void)hu_manifest_vm_error(m, i);
		(void)hu_manifest_vm_pid(m, i);
		(void)hu_manifest_vm_alive(m, i); /* in the empty proc root: none */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hu_ctx *ctx;
	static char *state, *dropin;
	_cleanup_manifest_ struct hu_manifest *m = NULL, *again = NULL;
	_cleanup_free_ char *before = NULL, *after = NULL;
	int r;

	if (size > 1024 * 1024)
		return 0;
	if (!ctx) {
		_cleanup_free_ char *proc = fuzz_path(fuzz_dir(), "proc");

		state = fuzz_path(fuzz_dir(), "state");
		dropin = fuzz_path(fuzz_dir(), "dropin");
		fuzz_reset_dir(proc);
		ctx = fuzz_ctx(proc, state);
	}
	fuzz_reset_dir(state);
	fuzz_write(state, "manifest.json", data, size);
	if (hu_manifest_load(ctx, &m) < 0)
		return 0;
	status_view(m);
	before = manifest_text(m);
	r = hu_manifest_save(m);
	if (r < 0) {
		fprintf(stderr, "a manifest that loaded does not save: %s\n", strerror(-r));
		abort();
	}
	r = hu_manifest_load(ctx, &again);
	if (r < 0) {
		fprintf(stderr, "a manifest that loaded does not load again once saved: %s\n",
			hu_manifest_strerror(r));
		abort();
	}
	after = manifest_text(again);
	if (!streq(before, after)) {
		fprintf(stderr, "save + load changed the manifest:\n%s\n%s\n", before, after);
		abort();
	}
	(void)hu_early_write_mounts_dropin(ctx, m, dropin);
	return 0;
}
