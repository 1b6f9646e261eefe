/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QEMU's -readconfig files (untrusted input): part of a command line. What
 * they create (devices, objects, chardevs, monitors, drives) is turned into
 * the "-GROUP keyval" options it stands for, so one parser (qemu-argv.c)
 * judges the argv and its files alike. QEMU also reads /etc/qemu/qemu.conf
 * unless -no-user-config is given. Restore replays the argv, which reads the
 * same files again: their sha256 is recorded, and checked before a start.
 *
 * The dialect (QEMU util/qemu-config.c:qemu_config_parse): lines of at most
 * 1023 characters; "\n" alone is skipped; '#' in the first column is a
 * comment; "[GROUP]" or "[GROUP \"ID\"]" opens a section; "  KEY = \"VALUE\""
 * sets a key. QEMU refuses a file with anything else in the forms that
 * matter (a blank-only line, an indented '#', KEY="VALUE" without blanks), so
 * only the clean forms are read here and everything else is refused.
 */
#include <fcntl.h>
#include <stdio.h>
#include <linux/magic.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include "hu-private.h"

/* Groups whose sections create something with an id, or may hand QEMU a
 * descriptor: read as the option of the same name. Others set properties
 * only (global, machine, ...) and are checked for syntax alone; run-as and
 * chroot settings are never taken from a file (restore starts as root only
 * for what the argv itself says). */
static const char *const mapped_groups[] = {
	"device", "object", "chardev", "mon", "drive", "netdev", "fsdev"
};

void hu_config_files_free(struct hu_config_file *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i].path);
	free(f);
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_name_char(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* [a-zA-Z0-9._-]{1,max}, as QEMU's group names, property names and ids. */
static size_t name_len(const char *s, size_t max)
{
	size_t n = 0;

	while (n <= max && is_name_char(s[n]))
		n++;
	return n;
}

static bool only_blanks(const char *s)
{
	while (is_blank(*s))
		s++;
	return *s == '\0';
}

struct section {
	FILE *f; /* the keyval text being built */
	char *text;
	size_t len;
	bool mapped;
	char group[HU_MAX_CONFIG_NAME + 1];
	unsigned n_keys;
};

/* ',' is written ",," in QEMU's keyval. */
static void put_keyval(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fputc(s[i], f);
		if (s[i] == ',')
			fputc(',', f);
	}
}

/* The finished section as "-GROUP" "keyval". */
static int section_flush(struct section *s, char ***argv, size_t *argc)
{
	_cleanup_free_ char *opt = NULL;
	int r = 0;

	if (!s->f)
		return 0;
	if (fclose(s->f) != 0)
		r = -ENOMEM;
	s->f = NULL;
	if (r >= 0 && s->mapped) {
		if (asprintf(&opt, "-%s", s->group) < 0)
			r = -ENOMEM;
		if (r >= 0)
			r = hu_strv_push(argv, argc, opt);
		if (r >= 0)
			r = hu_strv_push(argv, argc, s->text);
	}
	free(s->text);
	s->text = NULL;
	s->len = 0;
	return r;
}

/* "[GROUP]" or "[GROUP \"ID\"]", blanks after it allowed. */
static int parse_header(const char *line, struct section *s, char **ret_error)
{
	const char *p = line + 1, *id = NULL;
	size_t n = name_len(p, HU_MAX_CONFIG_NAME), idn = 0;

	if (n == 0)
		return hu_errorf(ret_error, -EINVAL, "a section header without a group name");
	if (n > HU_MAX_CONFIG_NAME)
		return hu_errorf(ret_error, -EINVAL, "a group name longer than %d characters",
				 HU_MAX_CONFIG_NAME);
	memcpy(s->group, p, n);
	s->group[n] = '\0';
	p += n;
	if (is_blank(*p)) {
		while (is_blank(*p))
			p++;
		if (*p != '"')
			return hu_errorf(ret_error, -EINVAL, "a section header that is not [GROUP \"ID\"]");
		id = ++p;
		idn = name_len(id, HU_MAX_CONFIG_NAME);
		if (idn > HU_MAX_CONFIG_NAME)
			return hu_errorf(ret_error, -EINVAL, "an id longer than %d characters",
					 HU_MAX_CONFIG_NAME);
		if (idn == 0 || !is_alpha(id[0]) || id[idn] != '"')
			return hu_errorf(ret_error, -EINVAL,
					 "an id that is not a QEMU id (a letter, then letters, digits, "
					 "'-', '.' or '_', in double quotes)");
		p += idn + 1;
	}
	if (*p != ']' || !only_blanks(p + 1))
		return hu_errorf(ret_error, -EINVAL,
				 "a section header that is not [GROUP] or [GROUP \"ID\"]");
	s->mapped = false;
	for (size_t i = 0; i < ARRAY_SIZE(mapped_groups); i++)
		s->mapped = s->mapped || streq(s->group, mapped_groups[i]);
	s->n_keys = 0;
	s->f = open_memstream(&s->text, &s->len);
	if (!s->f)
		return -ENOMEM;
	if (id) {
		fputs("id=", s->f);
		fwrite(id, 1, idn, s->f);
		s->n_keys++;
	}
	return 0;
}

/* "  KEY = \"VALUE\"", blanks after it allowed. */
static int parse_key(const char *line, struct section *s, char **ret_error)
{
	const char *p = line, *key, *value, *end;
	size_t kn;

	while (is_blank(*p))
		p++;
	if (*p == '#')
		return hu_errorf(ret_error, -EINVAL,
				 "an indented '#' (QEMU takes a comment only at the start of a line)");
	if (!s->f)
		return hu_errorf(ret_error, -EINVAL, "a key before any [GROUP] section");
	key = p;
	kn = name_len(key, HU_MAX_CONFIG_NAME);
	if (kn > HU_MAX_CONFIG_NAME)
		return hu_errorf(ret_error, -EINVAL, "a key longer than %d characters", HU_MAX_CONFIG_NAME);
	p += kn;
	if (kn == 0 || !is_blank(*p))
		return hu_errorf(ret_error, -EINVAL,
				 "not KEY = \"VALUE\" (blanks around '=', the value quoted)");
	while (is_blank(*p))
		p++;
	if (*p++ != '=')
		return hu_errorf(ret_error, -EINVAL,
				 "not KEY = \"VALUE\" (blanks around '=', the value quoted)");
	while (is_blank(*p))
		p++;
	if (*p++ != '"')
		return hu_errorf(ret_error, -EINVAL, "a value not in double quotes");
	value = p;
	end = strchr(value, '"');
	if (!end)
		return hu_errorf(ret_error, -EINVAL, "a value without its closing quote");
	if (!only_blanks(end + 1))
		return hu_errorf(ret_error, -EINVAL, "text after the closing quote of a value");
	/* The header holds the id; a second one would make two views of it. */
	if (kn == 2 && strncmp(key, "id", 2) == 0)
		return hu_errorf(ret_error, -EINVAL,
				 "a key 'id' (the id belongs in the [GROUP \"ID\"] header)");
	if (++s->n_keys > HU_MAX_CONFIG_KEYS)
		return hu_errorf(ret_error, -E2BIG, "more than %d keys in one section", HU_MAX_CONFIG_KEYS);
	if (s->n_keys > 1)
		fputc(',', s->f);
	fwrite(key, 1, kn, s->f);
	fputc('=', s->f);
	put_keyval(s->f, value, end - value);
	return 0;
}

int hu_qemu_config_to_argv(const char *text, size_t len, char ***argv, size_t *argc, char **ret_error)
{
	struct section s = {};
	char line[HU_MAX_CONFIG_LINE + 2];
	unsigned lno = 0, n_sections = 0;
	size_t off = 0;
	int r = 0;

	if (memchr(text, '\0', len))
		return hu_errorf(ret_error, -EINVAL, "a NUL byte (not a text file)");
	while (off < len && r >= 0) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = (nl ? (size_t)(nl - text) : len) - off;

		if (++lno > HU_MAX_CONFIG_LINES) {
			r = hu_errorf(ret_error, -E2BIG, "more than %d lines", HU_MAX_CONFIG_LINES);
			break;
		}
		if (n > HU_MAX_CONFIG_LINE) {
			r = hu_errorf(ret_error, -E2BIG, "line %u: longer than %d characters", lno,
				      HU_MAX_CONFIG_LINE);
			break;
		}
		memcpy(line, text + off, n);
		line[n] = '\0';
		off += n + 1;
		if (n == 0 || line[0] == '#')
			continue;
		if (only_blanks(line)) {
			r = hu_errorf(ret_error, -EINVAL, "line %u: a line of blanks only (QEMU refuses it)",
				      lno);
			break;
		}
		if (line[0] == '[') {
			r = section_flush(&s, argv, argc);
			if (r >= 0 && ++n_sections > HU_MAX_CONFIG_SECTIONS)
				r = hu_errorf(ret_error, -E2BIG, "more than %d sections",
					      HU_MAX_CONFIG_SECTIONS);
			if (r >= 0)
				r = parse_header(line, &s, ret_error);
		} else {
			r = parse_key(line, &s, ret_error);
		}
		if (r < 0 && r != -ENOMEM && ret_error && *ret_error) {
			_cleanup_free_ char *why = TAKE_PTR(*ret_error);

			hu_errorf(ret_error, r, "line %u: %s", lno, why);
		}
	}
	if (r >= 0)
		r = section_flush(&s, argv, argc);
	if (s.f)
		fclose(s.f);
	free(s.text);
	return r;
}

/* --- reading a file as QEMU would, but as root --- */

/* Files that only look like files: what /proc or /sys hand out is not a
 * config file anybody wrote (and would be read with our credentials). */
static bool pseudo_fs(long f_type)
{
	static const long types[] = { PROC_SUPER_MAGIC,	   SYSFS_MAGIC,	     DEBUGFS_MAGIC,
				      TRACEFS_MAGIC,	   SECURITYFS_MAGIC, CGROUP_SUPER_MAGIC,
				      CGROUP2_SUPER_MAGIC, BPF_FS_MAGIC,     EFIVARFS_MAGIC };

	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (f_type == types[i])
			return true;
	return false;
}

/* What the QEMU's user could read: a file its argv names is read by us as
 * root, and must not hand that user what only root may see. */
static bool readable_by(const struct stat *st, const struct hu_config_reader *rd)
{
	bool in_group = st->st_gid == rd->gid;

	if (rd->as_root)
		return true;
	if (st->st_uid == rd->uid)
		return st->st_mode & S_IRUSR;
	for (size_t i = 0; i < rd->n_groups && !in_group; i++)
		in_group = st->st_gid == rd->groups[i];
	return st->st_mode & (in_group ? S_IRGRP : S_IROTH);
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != sizeof(md)) {
		hex[0] = '\0';
		return;
	}
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int hu_qemu_config_read(const struct hu_config_reader *rd, const char *path, char **ret_text, size_t *ret_len,
			struct hu_config_file *ret, char **ret_error)
{
	_cleanup_close_ int dfd = -1, fd = -1;
	_cleanup_free_ char *text = NULL;
	struct hu_config_file f = {};
	struct statfs sfs;
	struct stat st;
	size_t len;
	int r;

	if (path[0] != '/') {
		/* QEMU opens a relative path from its own working directory. */
		dfd = open(rd->cwd ?: "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return hu_errorf(ret_error, -errno, "its working directory %s: %s", rd->cwd ?: "/",
					 strerror(errno));
	}
	fd = hu_openat_regular(dfd >= 0 ? dfd : AT_FDCWD, path, O_RDONLY, 0);
	if (fd == -EBADFD)
		return hu_errorf(ret_error, fd, "not a regular file");
	if (fd < 0)
		return hu_errorf(ret_error, fd, "cannot open it: %s", strerror(-fd));
	if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0)
		return hu_errorf(ret_error, -errno, "%s", strerror(errno));
	if (pseudo_fs(sfs.f_type))
		return hu_errorf(ret_error, -EPERM,
				 "a file of a kernel pseudo file system (/proc, /sys, ...)");
	if (!readable_by(&st, rd))
		return hu_errorf(ret_error, -EACCES, "not readable by uid %u, whose QEMU names it",
				 (unsigned)rd->uid);
	if (st.st_size > HU_MAX_CONFIG_BYTES)
		return hu_errorf(ret_error, -EFBIG, "larger than %d KiB", HU_MAX_CONFIG_BYTES / 1024);
	r = hu_read_fd(fd, HU_MAX_CONFIG_BYTES, &text, &len);
	if (r == -EFBIG)
		return hu_errorf(ret_error, r, "larger than %d KiB", HU_MAX_CONFIG_BYTES / 1024);
	if (r < 0)
		return hu_errorf(ret_error, r, "cannot read it: %s", strerror(-r));
	f.path = strdup(path);
	if (!f.path)
		return -ENOMEM;
	f.present = true;
	f.size = len;
	sha256_hex(text, len, f.sha256);
	if (!f.sha256[0]) {
		free(f.path);
		return hu_errorf(ret_error, -EIO, "cannot compute its sha256");
	}
	*ret = f;
	if (ret_text)
		*ret_text = TAKE_PTR(text);
	if (ret_len)
		*ret_len = len;
	return 0;
}

static int add_file(struct hu_config_file **files, size_t *n, struct hu_config_file *f)
{
	struct hu_config_file *nf = realloc(*files, (*n + 1) * sizeof(*nf));

	if (!nf) {
		free(f->path);
		return -ENOMEM;
	}
	*files = nf;
	nf[(*n)++] = *f;
	return 0;
}

/* One file's sections appended to *argv, the file recorded. */
static int expand_file(const struct hu_config_reader *rd, const char *path, bool is_default, char ***argv,
		       size_t *argc, struct hu_config_file **files, size_t *n_files, char **ret_error)
{
	_cleanup_free_ char *text = NULL, *why = NULL;
	const char *what = is_default ? "QEMU's default config file" : "-readconfig";
	struct hu_config_file f = {};
	size_t len = 0;
	int r;

	if (*n_files >= HU_MAX_CONFIG_FILES)
		return hu_errorf(ret_error, -E2BIG, "more than %d -readconfig files", HU_MAX_CONFIG_FILES);
	r = hu_qemu_config_read(rd, path, &text, &len, &f, &why);
	if (r == -ENOENT && is_default) {
		/* Not there: recorded, as QEMU would read one that appears later. */
		f.path = strdup(path);
		return f.path ? add_file(files, n_files, &f) : -ENOMEM;
	}
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return hu_errorf(ret_error, r, "%s %.256s: %s", what, path, why ?: strerror(-r));
	r = add_file(files, n_files, &f);
	if (r < 0)
		return r;
	r = hu_qemu_config_to_argv(text, len, argv, argc, &why);
	if (r < 0 && r != -ENOMEM)
		return hu_errorf(ret_error, r, "%s %.256s: %s", what, path, why ?: strerror(-r));
	return r;
}

int hu_argv_parse_configs(char *const *argv, size_t argc, const struct hu_config_reader *rd,
			  const char *default_config, struct hu_argv_info *ai,
			  struct hu_config_file **ret_files, size_t *ret_n, char **ret_error)
{
	struct hu_config_file *files = NULL;
	char **out = NULL;
	size_t n_out = 0, n_files = 0;
	bool user_config = true, any = false;
	struct hu_argv_info nai = {};
	int r = 0;

	for (size_t i = 1; i < argc; i++) {
		const char *opt = hu_qemu_option_name(argv[i]);

		if (!opt)
			continue;
		if (streq(opt, "no-user-config") || streq(opt, "nodefconfig"))
			user_config = false;
		if (streq(opt, "readconfig") && i + 1 < argc)
			any = true;
		if (hu_qemu_option_takes_arg(opt))
			i++;
	}
	if (!any && !(user_config && default_config))
		return 0;
	if (argc > 0)
		r = hu_strv_push(&out, &n_out, argv[0]);
	/* QEMU reads its default file before it looks at the options. */
	if (r >= 0 && user_config && default_config)
		r = expand_file(rd, default_config, true, &out, &n_out, &files, &n_files, ret_error);
	for (size_t i = 1; i < argc && r >= 0; i++) {
		const char *opt = hu_qemu_option_name(argv[i]);

		if (opt && streq(opt, "readconfig") && i + 1 < argc) {
			r = expand_file(rd, argv[++i], false, &out, &n_out, &files, &n_files, ret_error);
			continue;
		}
		r = hu_strv_push(&out, &n_out, argv[i]);
		if (r >= 0 && opt && hu_qemu_option_takes_arg(opt) && i + 1 < argc)
			r = hu_strv_push(&out, &n_out, argv[++i]);
	}
	if (r >= 0 && n_out > HU_MAX_ARGS)
		r = hu_errorf(ret_error, -E2BIG,
			      "the command line and its config files make more than %d options", HU_MAX_ARGS);
	if (r >= 0)
		r = hu_argv_parse(out, n_out, &nai);
	hu_strv_free(out, n_out);
	if (r < 0) {
		hu_config_files_free(files, n_files);
		return r;
	}
	hu_argv_info_clear(ai);
	*ai = nai;
	*ret_files = files;
	*ret_n = n_files;
	return 0;
}

int hu_config_files_check(const char *cwd, const struct hu_config_file *files, size_t n, char **ret_error)
{
	const struct hu_config_reader rd = { .cwd = cwd, .as_root = true };

	for (size_t i = 0; i < n; i++) {
		const struct hu_config_file *was = &files[i];
		_cleanup_free_ char *why = NULL;
		struct hu_config_file now = {};
		int r = hu_qemu_config_read(&rd, was->path, NULL, NULL, &now, &why);

		free(now.path);
		if (!was->present) {
			if (r != -ENOENT)
				return hu_errorf(
					ret_error, -ESTALE,
					"QEMU's default config file %s exists now, not at the checkpoint: "
					"the restored QEMU would read it; refusing to start it",
					was->path);
			continue;
		}
		if (r == -ENOENT)
			return hu_errorf(ret_error, -ESTALE,
					 "-readconfig %s is gone since the checkpoint; refusing to start it",
					 was->path);
		if (r < 0)
			return hu_errorf(ret_error, r, "-readconfig %s: %s", was->path, why ?: strerror(-r));
		if (now.size != was->size || !streq(now.sha256, was->sha256))
			return hu_errorf(
				ret_error, -ESTALE,
				"-readconfig %s changed since the checkpoint (sha256 %.12s..., now %.12s...): "
				"the restored QEMU would not match its saved state; refusing to start it",
				was->path, was->sha256, now.sha256);
	}
	return 0;
}
