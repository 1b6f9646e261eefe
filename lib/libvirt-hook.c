/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt-hook: what libvirt's qemu hook asks at "prepare begin", before it
 * starts a domain: may it? A checkpointed domain (a pending marker
 * STATE_DIR/libvirt/UUID.pending) must not cold-boot over its saved RAM
 * (autostart, `virsh start`, libvirt-guests); only our own restore may
 * start it — proven by the marker's token in the domain's <metadata> — and
 * then its RAM, saved as a hard link when libvirt deleted its per-start
 * folder, is linked into the folder of the new start. libvirt waits for
 * the hook: it never calls libvirt, and is fast when nothing is pending.
 * The domain XML (stdin) and the marker are untrusted: bounded, validated.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <uuid/uuid.h>
#include "hu-private.h"

#include "libvirt-dl.h"

#define HU_MAX_DOMAIN_XML (4 * 1024 * 1024)
#define HU_MAX_MARKER	  (64 * 1024)

int hu_libvirt_marker_path(struct hu_ctx *ctx, const char *uuid, char **ret)
{
	if (uuid) {
		uuid_t u;

		if (uuid_parse(uuid, u) < 0)
			return -EINVAL;
	}
	if (asprintf(ret, "%s/libvirt%s%s%s", ctx->state_dir, uuid ? "/" : "", uuid ?: "",
		     uuid ? ".pending" : "") < 0)
		return -ENOMEM;
	return 0;
}

int hu_libvirt_marker_write(struct hu_ctx *ctx, const char *uuid, const char *token,
			    const struct hu_lv_link *links, size_t n_links)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;
	_cleanup_json_ json_object *o = json_object_new_object();
	json_object *a = json_object_new_array();
	const char *s;
	int r;

	if (!o || !a) {
		json_object_put(a);
		return -ENOMEM;
	}
	r = hu_libvirt_marker_path(ctx, NULL, &dir);
	if (r >= 0)
		r = hu_libvirt_marker_path(ctx, uuid, &path);
	if (r < 0) {
		json_object_put(a);
		return r;
	}
	r = hu_mkdir_private(dir);
	if (r < 0) {
		json_object_put(a);
		return r;
	}
	json_object_object_add(o, "uuid", json_object_new_string(uuid));
	json_object_object_add(o, "token", json_object_new_string(token));
	for (size_t i = 0; i < n_links; i++) {
		json_object *l = json_object_new_object();

		json_object_object_add(l, "memdev", json_object_new_string(links[i].memdev));
		json_object_object_add(l, "was", json_object_new_string(links[i].was));
		json_object_object_add(l, "link", json_object_new_string(links[i].link));
		json_object_array_add(a, l);
	}
	json_object_object_add(o, "links", a);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return hu_write_file_atomic(path, s, strlen(s), 0600);
}

#ifdef HU_WITH_LIBVIRT
#define HU_XMLNS "urn:x-host-upgrade:restore:1"

static bool any_pending(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool found = false;

	if (!d)
		return errno != ENOENT; /* cannot tell: look closer */
	while (!found && (de = readdir(d))) {
		size_t n = strlen(de->d_name);

		found = n > 8 && streq(de->d_name + n - 8, ".pending");
	}
	closedir(d);
	return found;
}

static bool safe_path(const char *p)
{
	return p && p[0] == '/' && strlen(p) < PATH_MAX && !strstr(p, "/../") && !strstr(p, "/./");
}

int hu_libvirt_parse_domain(const char *xml, size_t len, void **ret_doc)
{
	xmlDocPtr doc;
	xmlNodePtr root;
	int r;

	if (len > HU_MAX_DOMAIN_XML)
		return -EFBIG;
	r = hu_xml_dlopen(NULL);
	if (r < 0)
		return r;
	doc = sym_xmlReadMemory(xml, (int)len, "domain.xml", NULL,
				XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return -EBADMSG;
	root = sym_xmlDocGetRootElement(doc);
	if (!root || doc->intSubset || !sym_xmlStrEqual(root->name, BAD_CAST "domain")) {
		sym_xmlFreeDoc(doc);
		return -EBADMSG;
	}
	*ret_doc = doc;
	return 0;
}

/* The domain's uuid, its new id and our token, from the XML libvirt passes. */
static int read_domain(const char *xml, size_t len, char **ret_uuid, long *ret_id, char **ret_token)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	xmlChar *id;
	int r = hu_libvirt_parse_domain(xml, len, (void **)&doc);

	if (r < 0)
		return r;
	root = sym_xmlDocGetRootElement(doc);
	*ret_id = -1;
	id = sym_xmlGetProp(root, BAD_CAST "id");
	if (id) {
		char *end;

		*ret_id = strtol((const char *)id, &end, 10);
		if (*end || *ret_id <= 0 || *ret_id > INT_MAX)
			*ret_id = -1;
		hu_xml_free(id);
	}
	for (xmlNodePtr n = root->children; n && r >= 0; n = n->next) {
		if (n->type != XML_ELEMENT_NODE || n->ns)
			continue;
		if (sym_xmlStrEqual(n->name, BAD_CAST "uuid") && !*ret_uuid) {
			xmlChar *t = sym_xmlNodeGetContent(n);
			uuid_t u;

			if (t && sym_xmlStrlen(t) == 36 && uuid_parse((const char *)t, u) == 0)
				*ret_uuid = strdup((const char *)t);
			hu_xml_free(t);
		} else if (sym_xmlStrEqual(n->name, BAD_CAST "metadata")) {
			for (xmlNodePtr m = n->children; m; m = m->next) {
				xmlChar *tok;

				if (m->type != XML_ELEMENT_NODE || !m->ns || !m->ns->href ||
				    !sym_xmlStrEqual(m->ns->href, BAD_CAST HU_XMLNS) ||
				    !sym_xmlStrEqual(m->name, BAD_CAST "restore"))
					continue;
				tok = sym_xmlGetProp(m, BAD_CAST "token");
				if (tok && sym_xmlStrlen(tok) <= 64 && !*ret_token)
					*ret_token = strdup((const char *)tok);
				hu_xml_free(tok);
			}
		}
	}
	sym_xmlFreeDoc(doc);
	return *ret_uuid ? 0 : -EBADMSG;
}

/* Link the saved RAM into the folder libvirt is about to use for start
 * `id`: <base>/<id>-<short name>, named after the checkpoint's folder. */
static int relink(json_object *links, long id, char **ret_msg)
{
	for (size_t i = 0; i < json_object_array_length(links); i++) {
		json_object *l = json_object_array_get_idx(links, i), *w, *k;
		_cleanup_free_ char *was = NULL, *folder = NULL, *newdir = NULL, *target = NULL;
		const char *saved, *file, *base_end, *dash;
		struct stat st, tst;

		if (!json_object_object_get_ex(l, "was", &w) || !json_object_is_type(w, json_type_string) ||
		    !json_object_object_get_ex(l, "link", &k) || !json_object_is_type(k, json_type_string) ||
		    !safe_path(json_object_get_string(w)) || !safe_path(json_object_get_string(k)))
			return -EBADMSG;
		was = strdup(json_object_get_string(w));
		saved = json_object_get_string(k);
		if (!was)
			return -ENOMEM;
		file = strrchr(was, '/');
		folder = strndup(was, file - was);
		if (!folder)
			return -ENOMEM;
		base_end = strrchr(folder, '/');
		dash = base_end ? strchr(base_end, '-') : NULL;
		if (!base_end || base_end == folder || !dash || file[1] == '\0')
			return -EBADMSG;
		if (asprintf(&newdir, "%.*s/%ld%s", (int)(base_end - folder), folder, id, dash) < 0 ||
		    asprintf(&target, "%s%s", newdir, file) < 0)
			return -ENOMEM;
		if (lstat(saved, &st) < 0 || !S_ISREG(st.st_mode)) {
			if (asprintf(ret_msg, "host-upgrade: saved RAM %s is missing", saved) < 0)
				*ret_msg = NULL;
			return -ENOENT;
		}
		/* Like libvirt's own folder: the RAM file's owner, 0700. */
		if (mkdir(newdir, 0700) < 0 && errno != EEXIST)
			return -errno;
		if (chown(newdir, st.st_uid, st.st_gid) < 0)
			return -errno;
		if (lstat(target, &tst) == 0 && tst.st_ino == st.st_ino && tst.st_dev == st.st_dev)
			continue;
		if (link(saved, target) < 0)
			return -errno;
	}
	return 0;
}

int hu_libvirt_hook(struct hu_ctx *ctx, const char *name, const char *xml, size_t len, char **ret_msg)
{
	_cleanup_free_ char *dir = NULL, *uuid = NULL, *token = NULL, *marker = NULL, *text = NULL;
	_cleanup_json_ json_object *o = NULL;
	json_object *t, *links;
	long id = -1;
	int r;

	*ret_msg = NULL;
	r = hu_libvirt_marker_path(ctx, NULL, &dir);
	if (r < 0)
		return r;
	if (!any_pending(dir))
		return 0;
	r = read_domain(xml, len, &uuid, &id, &token);
	if (r < 0) {
		/* Something is pending and we cannot tell whether it is this one. */
		if (asprintf(
			    ret_msg,
			    "host-upgrade: cannot read the XML of domain %s while a checkpoint is pending: %s",
			    name, strerror(-r)) < 0)
			*ret_msg = NULL;
		return r;
	}
	r = hu_libvirt_marker_path(ctx, uuid, &marker);
	if (r < 0)
		return r;
	r = hu_read_file(marker, HU_MAX_MARKER, &text, NULL);
	if (r == -ENOENT)
		return 0; /* not checkpointed */
	if (r >= 0) {
		o = json_tokener_parse(text);
		if (!o || !json_object_object_get_ex(o, "token", &t) ||
		    !json_object_is_type(t, json_type_string) ||
		    !json_object_object_get_ex(o, "links", &links) ||
		    !json_object_is_type(links, json_type_array) ||
		    json_object_array_length(links) > HU_MAX_MEMDEVS)
			r = -EBADMSG;
	}
	if (r < 0) {
		if (asprintf(
			    ret_msg,
			    "host-upgrade: domain %s is checkpointed (uuid %s) and its marker %s cannot be read: %s",
			    name, uuid, marker, strerror(-r)) < 0)
			*ret_msg = NULL;
		return r;
	}
	if (!token || !streq(token, json_object_get_string(t))) {
		if (asprintf(ret_msg,
			     "host-upgrade: domain %s is checkpointed (uuid %s); restore it with "
			     "'host-upgrade restore' or 'host-upgrade abort'",
			     name, uuid) < 0)
			*ret_msg = NULL;
		return -EPERM;
	}
	if (id <= 0) {
		if (asprintf(ret_msg, "host-upgrade: domain %s: no id in the XML, cannot place its RAM",
			     name) < 0)
			*ret_msg = NULL;
		return -EBADMSG;
	}
	r = relink(links, id, ret_msg);
	if (r < 0 && !*ret_msg &&
	    asprintf(ret_msg, "host-upgrade: domain %s: cannot link its saved RAM into place: %s", name,
		     strerror(-r)) < 0)
		*ret_msg = NULL;
	return r;
}
#else
int hu_libvirt_hook(struct hu_ctx *ctx, const char *name, const char *xml, size_t len, char **ret_msg)
{
	*ret_msg = NULL;
	return 0; /* no libvirt support: no checkpoint of a libvirt domain can be pending */
}
#endif
