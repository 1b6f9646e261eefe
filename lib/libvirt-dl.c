/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt-dl.h says why: libvirt and libxml2 are loaded at first use. */
#ifdef HU_WITH_LIBVIRT
#include <dlfcn.h>
#include <stdio.h>
#include "hu-private.h"
#include "libvirt-dl.h"

#define HU_DL_DEFINE(lib, name) typeof(name) *sym_##name;
HU_XML_SYMBOLS(HU_DL_DEFINE)
HU_LIBVIRT_SYMBOLS(HU_DL_DEFINE)
#undef HU_DL_DEFINE
xmlFreeFunc *sym_xmlFree;

struct dl_lib {
	const char *soname;
	const char *package; /* Debian's, for the message */
	void *handle;
};
static struct dl_lib dl_xml = { .soname = HU_LIBXML2_SONAME, .package = "libxml2" };
static struct dl_lib dl_virt = { .soname = HU_LIBVIRT_SONAME, .package = "libvirt0" };
static struct dl_lib dl_virt_qemu = { .soname = HU_LIBVIRT_QEMU_SONAME, .package = "libvirt0" };

struct dl_state {
	pthread_once_t once;
	int r;
	char *why;
};
static struct dl_state xml_state = { .once = PTHREAD_ONCE_INIT };
static struct dl_state virt_state = { .once = PTHREAD_ONCE_INIT };

/* Never dlclose()d: the pointers stay valid for the life of the process. */
static int dl_open(struct dl_lib *l, char **ret_why)
{
	if (l->handle)
		return 0;
	l->handle = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
	if (!l->handle)
		return hu_errorf(ret_why, -ENOPKG, "cannot load %s (Debian package %s): %s", l->soname,
				 l->package, dlerror());
	return 0;
}

static int dl_sym(struct dl_lib *l, const char *name, void **ret, char **ret_why)
{
	*ret = dlsym(l->handle, name);
	if (!*ret)
		return hu_errorf(ret_why, -ENOPKG, "%s has no %s (too old?): %s", l->soname, name, dlerror());
	return 0;
}

#define HU_DL_LOAD(lib, name) \
	if (r >= 0)           \
		r = dl_sym(&dl_##lib, #name, (void **)&sym_##name, &s->why);

static void load_xml(void)
{
	struct dl_state *s = &xml_state;
	int r = dl_open(&dl_xml, &s->why);

	HU_XML_SYMBOLS(HU_DL_LOAD)
	if (r >= 0)
		r = dl_sym(&dl_xml, "xmlFree", (void **)&sym_xmlFree, &s->why);
	s->r = r;
}

static void load_virt(void)
{
	struct dl_state *s = &virt_state;
	int r = hu_xml_dlopen(&s->why);

	if (r >= 0)
		r = dl_open(&dl_virt, &s->why);
	if (r >= 0)
		r = dl_open(&dl_virt_qemu, &s->why);
	HU_LIBVIRT_SYMBOLS(HU_DL_LOAD)
	s->r = r;
}

static int dl_result(struct dl_state *s, char **ret_why)
{
	if (s->r < 0 && ret_why)
		*ret_why = strdup(s->why ?: "cannot load libvirt's libraries");
	return s->r;
}

int hu_xml_dlopen(char **ret_why)
{
	pthread_once(&xml_state.once, load_xml);
	return dl_result(&xml_state, ret_why);
}

int hu_libvirt_dlopen(char **ret_why)
{
	pthread_once(&virt_state.once, load_virt);
	return dl_result(&virt_state, ret_why);
}
#endif
