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

/* The kernel's isspace(): its lib/ctype.c counts 0xa0 (Latin-1 NBSP) too. */
static bool cmdline_space(char c)
{
	unsigned char u = c;

	return u == ' ' || (u >= '\t' && u <= '\r') || u == 0xa0;
}

/* The next parameter of a kernel command line, split where the kernel
 * splits it (lib/cmdline.c next_arg(): a '"' anywhere toggles quoting), its
 * quotes kept. NULL at the end. */
const char *hu_cmdline_word(const char *p, const char **ret_end)
{
	bool quoted = false;

	while (cmdline_space(*p))
		p++;
	if (!*p)
		return NULL;
	*ret_end = p;
	while (**ret_end && (quoted || !cmdline_space(**ret_end))) {
		if (**ret_end == '"')
			quoted = !quoted;
		(*ret_end)++;
	}
	return p;
}

/* What the kernel makes of a word: "param" or "param=value", without the
 * quotes next_arg() strips, so that memmap="1G!4G" and memmap=1G!4G are the
 * same region. */
char *hu_cmdline_word_meaning(const char *w, size_t wl)
{
	_cleanup_free_ char *s = strndup(w, wl);
	char *param, *val = NULL, *out;
	size_t n, equals = 0;
	bool quoted = false;

	if (!s)
		return NULL;
	param = s;
	if (*param == '"') {
		param++;
		quoted = true;
	}
	n = strlen(param);
	for (size_t i = 0; i < n && !equals; i++)
		if (param[i] == '=')
			equals = i; /* as the kernel: a leading '=' is no separator */
	if (equals) {
		param[equals] = '\0';
		val = param + equals + 1;
		if (*val == '"') {
			val++;
			if (n > 0 && param[n - 1] == '"')
				param[n - 1] = '\0';
		}
	}
	if (quoted && n > 0 && param[n - 1] == '"')
		param[n - 1] = '\0';
	if (asprintf(&out, "%s%s%s", param, val ? "=" : "", val ?: "") < 0)
		return NULL;
	return out;
}

/* Is there a kernel parameter (a word before "--": what follows goes to
 * init) meaning `m`? 1 or 0; with m NULL, 0. *ret_params_end (optional):
 * where "--" or the end of the line is. */
static int has_word(const char *cmdline, const char *m, size_t *ret_params_end)
{
	const char *end, *p = cmdline;

	while ((p = hu_cmdline_word(p, &end))) {
		_cleanup_free_ char *w = hu_cmdline_word_meaning(p, end - p);

		if (!w)
			return -ENOMEM;
		if (streq(w, "--"))
			break;
		if (m && streq(w, m))
			return 1;
		p = end;
	}
	if (ret_params_end)
		*ret_params_end = p ? (size_t)(p - cmdline) : strlen(cmdline);
	return 0;
}

/* A legacy pmem region: memmap=…!… */
static bool pmem_param(const char *m)
{
	return strncmp(m, "memmap=", 7) == 0 && strchr(m + 7, '!');
}

int hu_cmdline_compose(const char *current, const char *requested, const char *marker, char **ret,
		       char **ret_missing)
{
	const char *p, *end;
	bool has_pmem = false;
	_cleanup_free_ char *out = NULL;
	size_t len, at = 0, quotes = 0;
	int r;

	if (strlen(current) > 4096 || (requested && strlen(requested) > 4096))
		return -E2BIG;
	/* Parameters the saved RAM depends on: memmap=…!… (legacy pmem) and,
	 * with them, nokaslr. Each must be in the new line as the kernel
	 * reads it: a kernel parameter, before any "--". */
	for (int pass = 0; pass < 2 && requested; pass++)
		for (p = current; (p = hu_cmdline_word(p, &end)); p = end) {
			_cleanup_free_ char *m = hu_cmdline_word_meaning(p, end - p);

			if (!m)
				return -ENOMEM;
			if (streq(m, "--"))
				break;
			if (pass == 0) {
				has_pmem = has_pmem || pmem_param(m);
				continue;
			}
			if (!pmem_param(m) && !(has_pmem && streq(m, "nokaslr")))
				continue;
			r = has_word(requested, m, NULL);
			if (r < 0)
				return r;
			if (r == 0) {
				if (ret_missing)
					*ret_missing = strndup(p, end - p);
				return -EINVAL;
			}
		}
	out = strdup(requested ? requested : current);
	if (!out)
		return -ENOMEM;
	len = strlen(out);
	for (size_t i = 0; i < len; i++)
		quotes += out[i] == '"';
	/* Trailing blanks go, unless an unterminated quote makes them part of a value. */
	while (quotes % 2 == 0 && len > 0 && cmdline_space(out[len - 1]))
		out[--len] = '\0';
	r = marker ? has_word(out, marker, &at) : 1;
	if (r < 0)
		return r;
	if (r == 0) {
		size_t before;
		char *n;

		/* After an unterminated quote the marker would be part of the
		 * last parameter's value. */
		if (quotes % 2)
			return -EBADMSG;
		/* A kernel parameter: before init's arguments, if any. */
		for (before = at; before > 0 && cmdline_space(out[before - 1]);)
			before--;
		if (asprintf(&n, "%.*s%s%s%s%s", (int)before, out, before ? " " : "", marker,
			     out[at] ? " " : "", out + at) < 0)
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
	if (r == -EBADMSG)
		return hu_fail(
			ctx, r,
			"the new command line ends inside a quote: %s would not be a parameter of its own",
			HU_CMDLINE_MARKER);
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
