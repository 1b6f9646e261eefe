/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stage: what the new kernel is, the command line it must boot with and the
 * modules it must have; then it is loaded (kexec.c). The saved RAM depends
 * on some parameters of the running kernel (legacy pmem "memmap=nn!ss"
 * regions, and nokaslr that keeps the kernel off them): a new command line
 * that drops one is refused. A marker tells the initrd that a restore is
 * pending.
 */
#include <stdio.h>
#include <libkmod.h>
#include "hu-private.h"

/* --- the new kernel's command line ----------------------------------- */

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

int hu_cmdline_compose(const char *current, const char *requested, const char *marker, char **ret,
		       char **ret_missing)
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

/* --- the new kernel's modules ---------------------------------------- */

/* Modules that VMs and their RAM medium may depend on. Whatever of these the
 * running kernel uses must exist (as a module or built in) in the new one. */
static const char *const relevant_modules[] = {
	"kvm",	  "kvm_intel", "kvm_amd",	   "vhost",	 "vhost_net", "vhost_vsock", "tun",
	"vfio",	  "vfio_pci",  "vfio_iommu_type1", "libnvdimm",	 "nfit",      "nd_pmem",     "nd_e820",
	"nd_btt", "dax",       "dax_pmem",	   "device_dax", "kmem",
};

int hu_modules_needed(struct hu_ctx *ctx, const struct hu_vm_list *list, char ***ret, size_t *ret_n)
{
	char **out = NULL;
	size_t n = 0;
	bool vfio = false;
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(relevant_modules) && r >= 0; i++) {
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%s/module/%s", ctx->sys_root, relevant_modules[i]) < 0)
			r = -ENOMEM;
		else if (access(p, F_OK) == 0)
			r = hu_strv_push(&out, &n, relevant_modules[i]);
	}
	for (size_t i = 0; list && i < list->n; i++)
		vfio = vfio || list->vms[i]->ai.has_vfio;
	if (r >= 0 && vfio) {
		bool have = false;

		for (size_t i = 0; i < n; i++)
			have = have || streq(out[i], "vfio_pci");
		if (!have)
			r = hu_strv_push(&out, &n, "vfio_pci");
	}
	if (r < 0) {
		hu_strv_free(out, n);
		return r;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

int hu_modules_missing(const char *moddir, char *const *needed, size_t n_needed, char ***ret_missing,
		       size_t *ret_n)
{
	struct kmod_ctx *k;
	char **missing = NULL;
	size_t n = 0;
	int r = 0;

	if (access(moddir, R_OK) < 0)
		return -errno;
	k = kmod_new(moddir, NULL);
	if (!k)
		return -ENOMEM;
	for (size_t i = 0; i < n_needed && r >= 0; i++) {
		struct kmod_list *l = NULL;

		/* Finds modules.dep entries, aliases and built-ins alike. */
		if (kmod_module_new_from_lookup(k, needed[i], &l) < 0 || !l)
			r = hu_strv_push(&missing, &n, needed[i]);
		kmod_module_unref_list(l);
	}
	kmod_unref(k);
	if (r < 0) {
		hu_strv_free(missing, n);
		return r;
	}
	*ret_missing = missing;
	*ret_n = n;
	return 0;
}

/* --- stage: all of the above, in order --------------------------------- */

static int find_initrd(const char *version, char **ret)
{
	static const char *const patterns[] = { "/boot/initrd.img-%s", "/boot/initramfs-%s.img" };

	for (size_t i = 0; i < ARRAY_SIZE(patterns); i++) {
		char *p;

		if (asprintf(&p, patterns[i], version) < 0)
			return -ENOMEM;
		if (access(p, R_OK) == 0) {
			*ret = p;
			return 0;
		}
		free(p);
	}
	return -ENOENT;
}

int hu_stage(struct hu_ctx *ctx, const struct hu_stage_opts *o, const struct hu_vm_list *list,
	     char **ret_version)
{
	_cleanup_free_ char *initrd = NULL, *current = NULL, *cmdline = NULL, *missing = NULL, *moddir = NULL,
			    *absent_list = NULL;
	char version[128], **needed = NULL, **absent = NULL;
	size_t n_needed = 0, n_absent = 0, len = 0;
	FILE *f;
	int r;

	hu_clear_error(ctx);
	r = hu_bzimage_version(o->kernel, version, sizeof(version));
	if (r < 0)
		return hu_fail(ctx, r, "%s: %s", o->kernel,
			       r == -ENOEXEC ? "not a bzImage kernel" : strerror(-r));
	if (o->initrd) {
		initrd = strdup(o->initrd);
	} else if (find_initrd(version, &initrd) < 0) {
		return hu_fail(ctx, -ENOENT,
			       "no initrd for %s in /boot: pass --initrd (the restore needs one)", version);
	}
	if (!initrd)
		return -ENOMEM;
	r = hu_read_file("/proc/cmdline", 8192, &current, NULL);
	if (r < 0)
		return hu_fail(ctx, r, "/proc/cmdline: %s", strerror(-r));
	current[strcspn(current, "\n")] = '\0';
	r = hu_cmdline_compose(current, o->append, HU_CMDLINE_MARKER, &cmdline, &missing);
	if (r == -EINVAL)
		return hu_fail(ctx, r, "the new command line drops '%s', which the saved RAM depends on",
			       missing);
	if (r < 0)
		return r;

	if (asprintf(&moddir, "%s/%s", o->modules_root ?: "/lib/modules", version) < 0)
		return -ENOMEM;
	r = hu_modules_needed(ctx, list, &needed, &n_needed);
	if (r >= 0)
		r = hu_modules_missing(moddir, needed, n_needed, &absent, &n_absent);
	hu_strv_free(needed, n_needed);
	if (r < 0)
		return hu_fail(ctx, r, "modules of %s in %s: %s", version, moddir, strerror(-r));
	if (n_absent) {
		f = open_memstream(&absent_list, &len);
		for (size_t i = 0; f && i < n_absent; i++)
			fprintf(f, "%s%s", i ? ", " : "", absent[i]);
		if (f)
			fclose(f);
		hu_strv_free(absent, n_absent);
		return hu_fail(ctx, -ENOPKG, "kernel %s has no module %s, which the VMs or their RAM need",
			       version, absent_list ?: "?");
	}
	r = hu_kexec_loaded(ctx);
	if (r < 0)
		return hu_fail(ctx, r, "cannot stage a kernel: %s", hu_stage_strerror(r));
	r = hu_kexec_check_no_replacer(ctx);
	if (r < 0)
		return r;
	hu_info(ctx, NULL, "kernel %s, initrd %s", version, initrd);
	hu_info(ctx, NULL, "command line: %s", cmdline);
	if (!o->dry_run) {
		r = hu_kexec_load(ctx, o->kernel, initrd, cmdline);
		if (r < 0)
			return hu_fail(ctx, r, "loading %s: %s", o->kernel, hu_stage_strerror(r));
		hu_journal(ctx, NULL, "staged", version);
	}
	if (ret_version && !(*ret_version = strdup(version)))
		return -ENOMEM;
	return 0;
}

int hu_unstage(struct hu_ctx *ctx)
{
	int r = hu_kexec_unload(ctx);

	if (r >= 0)
		hu_journal(ctx, NULL, "unstaged", NULL);
	return r;
}
