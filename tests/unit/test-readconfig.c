/* QEMU's -readconfig files: what a q35 layout of Proxmox's shape creates, the
 * rest of the command line's family (agent, QMP, objects) in ini form, the
 * default config file, and every refusal with the file and line named. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "hu-private.h"

#define Q35_FIXTURE HU_TEST_FIXTURES "/readconfig/q35.cfg"

static const char *const q35_ids[] = {
	"ehci",
	"uhci-1",
	"uhci-2",
	"uhci-3",
	"ehci-2",
	"uhci-4",
	"uhci-5",
	"uhci-6",
	"audio0",
	"ich9-pcie-port-1",
	"ich9-pcie-port-2",
	"ich9-pcie-port-3",
	"ich9-pcie-port-4",
	"pcidmi",
	"pci.0",
	"pci.1",
	"pci.2",
	"pci.3",
};

static const struct hu_config_reader root_reader = { .cwd = "/", .as_root = true };

static char tmpdir[] = "/tmp/hu-test-readconfig-XXXXXX";

static int setup(void **state)
{
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *write_tmp(const char *name, const char *text)
{
	char *path;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	return path;
}

static bool has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (streq(v[i], s))
			return true;
	return false;
}

/* argv + its config files, the default config file left out (NULL). */
static int parse_with(char **argv, const char *dflt, struct hu_argv_info *ai, struct hu_config_file **files,
		      size_t *n_files, char **err)
{
	size_t argc = 0;
	int r;

	while (argv[argc])
		argc++;
	r = hu_argv_parse(argv, argc, ai);
	assert_int_equal(r, 0);
	return hu_argv_parse_configs(argv, argc, &root_reader, dflt, ai, files, n_files, err);
}

static void test_q35_shape(void **state)
{
	char *argv[] = { "qemu", "-device", "virtio-net-pci,id=net0", "-readconfig", Q35_FIXTURE, NULL };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_int_equal(parse_with(argv, NULL, &ai, &files, &n, &err), 0);
	assert_null(err);
	/* exactly the 18 of the file, plus the argv's own */
	assert_int_equal(ai.n_device_ids, ARRAY_SIZE(q35_ids) + 1);
	for (size_t i = 0; i < ARRAY_SIZE(q35_ids); i++)
		assert_true(has(ai.device_ids, ai.n_device_ids, q35_ids[i]));
	assert_true(has(ai.device_ids, ai.n_device_ids, "net0"));
	/* the commented-out switch creates nothing */
	assert_false(has(ai.device_ids, ai.n_device_ids, "unused-switch-up"));
	assert_false(has(ai.device_ids, ai.n_device_ids, "unused-switch-down"));
	assert_int_equal(n, 1);
	assert_string_equal(files[0].path, Q35_FIXTURE);
	assert_true(files[0].present);
	assert_int_equal(strlen(files[0].sha256), 64);
	hu_config_files_free(files, n);
	hu_argv_info_clear(&ai);
}

/* Without any config file nothing is read or changed. */
static void test_no_config(void **state)
{
	char *argv[] = { "qemu", "-no-user-config", "-device", "e1000,id=n", NULL };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_int_equal(parse_with(argv, "/nonexistent/qemu.conf", &ai, &files, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(files);
	assert_int_equal(ai.n_device_ids, 1);
	hu_argv_info_clear(&ai);
}

/* The ini forms of the rest of the family: an anonymous [device] adds no
 * id; a memory backend object, the QMP monitor and the agent are found as
 * on the command line; a descriptor handed over in a file is seen. */
static void test_family(void **state)
{
	_cleanup_free_ char *path = write_tmp("family.cfg", "[device]\n"
							    "  driver = \"virtio-rng-pci\"\n"
							    "\n"
							    "[object \"mem0\"]\n"
							    "  qom-type = \"memory-backend-file\"\n"
							    "  mem-path = \"/dev/shm/a,b\"\n"
							    "  size = \"64M\"\n"
							    "  share = \"on\"\n"
							    "[chardev \"qmp\"]\n"
							    "  backend = \"socket\"\n"
							    "  path = \"/run/vm/q.sock\"\n"
							    "  server = \"on\"\n"
							    "  wait = \"off\"\n"
							    "[mon]\n"
							    "  chardev = \"qmp\"\n"
							    "  mode = \"control\"\n"
							    "[chardev \"qga0\"]\n"
							    "  backend = \"socket\"\n"
							    "  path = \"/run/vm/qga.sock\"\n"
							    "  server = \"on\"\n"
							    "[device \"ser0\"]\n"
							    "  driver = \"virtio-serial\"\n"
							    "[device]\n"
							    "  driver = \"virtserialport\"\n"
							    "  chardev = \"qga0\"\n"
							    "  name = \"org.qemu.guest_agent.0\"\n"
							    "[global]\n"
							    "  driver = \"ICH9-LPC\"\n"
							    "  property = \"disable_s3\"\n"
							    "  value = \"1\"\n"
							    "[machine]\n"
							    "  type = \"q35\"\n");
	_cleanup_free_ char *fdpath = write_tmp("fd.cfg",
						"[netdev \"n0\"]\n  type = \"tap\"\n  fd = \"7\"\n");
	char *argv[] = { "qemu", "-readconfig", path, "-readconfig", fdpath, NULL };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_int_equal(parse_with(argv, NULL, &ai, &files, &n, &err), 0);
	assert_int_equal(ai.n_device_ids, 1);
	assert_string_equal(ai.device_ids[0], "ser0");
	assert_int_equal(ai.n_object_ids, 1);
	assert_string_equal(ai.object_ids[0], "mem0");
	assert_int_equal(ai.n_mem_paths, 1);
	assert_string_equal(ai.mem_paths[0], "/dev/shm/a,b"); /* a ',' survives the keyval escape */
	assert_string_equal(ai.qmp_path, "/run/vm/q.sock");
	assert_string_equal(ai.qga_path, "/run/vm/qga.sock");
	assert_non_null(ai.passes_fd);
	assert_int_equal(n, 2);
	hu_config_files_free(files, n);
	hu_argv_info_clear(&ai);
}

/* QEMU reads its default file first unless -no-user-config; a missing one
 * is recorded as missing (QEMU would read one that appears). */
static void test_default_config(void **state)
{
	_cleanup_free_ char *dflt = write_tmp("qemu.conf",
					      "[device \"from-default\"]\n  driver = \"e1000\"\n");
	_cleanup_free_ char *gone = NULL;
	char *argv[] = { "qemu", "-S", NULL };
	char *argv_nouser[] = { "qemu", "-no-user-config", NULL };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_int_equal(parse_with(argv, dflt, &ai, &files, &n, &err), 0);
	assert_int_equal(ai.n_device_ids, 1);
	assert_string_equal(ai.device_ids[0], "from-default");
	assert_int_equal(n, 1);
	assert_true(files[0].present);
	hu_config_files_free(files, n);
	hu_argv_info_clear(&ai);

	files = NULL;
	n = 0;
	assert_int_equal(parse_with(argv_nouser, dflt, &ai, &files, &n, &err), 0);
	assert_int_equal(ai.n_device_ids, 0);
	assert_int_equal(n, 0);
	hu_argv_info_clear(&ai);

	assert_true(asprintf(&gone, "%s/absent.conf", tmpdir) > 0);
	assert_int_equal(parse_with(argv, gone, &ai, &files, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_false(files[0].present);
	/* restore: still absent passes; one that appeared is refused */
	assert_int_equal(hu_config_files_check("/", files, n, &err), 0);
	free(write_tmp("absent.conf", "\n"));
	assert_int_equal(hu_config_files_check("/", files, n, &err), -ESTALE);
	assert_non_null(strstr(err, "absent.conf"));
	assert_non_null(strstr(err, "exists now"));
	free(err);
	hu_config_files_free(files, n);
	hu_argv_info_clear(&ai);
}

/* Restore's check: the same content passes, an edit or a removal is refused
 * with the file named; a relative path is QEMU's working directory's. */
static void test_check_changed(void **state)
{
	_cleanup_free_ char *path = write_tmp("c.cfg", "[device \"a\"]\n  driver = \"e1000\"\n");
	char *argv[] = { "qemu", "-readconfig", "c.cfg", NULL };
	const struct hu_config_reader rd = { .cwd = tmpdir, .as_root = true };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_int_equal(hu_argv_parse(argv, 3, &ai), 0);
	assert_int_equal(hu_argv_parse_configs(argv, 3, &rd, NULL, &ai, &files, &n, &err), 0);
	assert_int_equal(ai.n_device_ids, 1);
	assert_int_equal(hu_config_files_check(tmpdir, files, n, &err), 0);
	free(write_tmp("c.cfg", "[device \"b\"]\n  driver = \"e1000\"\n"));
	assert_int_equal(hu_config_files_check(tmpdir, files, n, &err), -ESTALE);
	assert_non_null(strstr(err, "-readconfig c.cfg changed since the checkpoint"));
	free(err);
	err = NULL;
	assert_int_equal(unlink(path), 0);
	assert_int_equal(hu_config_files_check(tmpdir, files, n, &err), -ESTALE);
	assert_non_null(strstr(err, "-readconfig c.cfg is gone"));
	free(err);
	hu_config_files_free(files, n);
	hu_argv_info_clear(&ai);
}

/* A bad file: an error naming the file (and line), *ai untouched. */
static void refused(const char *path, const char *want)
{
	char *argv[] = { "qemu", "-device", "e1000,id=mine", "-readconfig", (char *)path, NULL };
	struct hu_argv_info ai = {};
	struct hu_config_file *files = NULL;
	size_t n = 0;
	char *err = NULL;

	assert_true(parse_with(argv, NULL, &ai, &files, &n, &err) < 0);
	assert_non_null(err);
	if (!strstr(err, want) || !strstr(err, path))
		fail_msg("error \"%s\" does not name %s and say \"%s\"", err, path, want);
	assert_null(files);
	assert_int_equal(ai.n_device_ids, 1); /* what argv says, unchanged */
	assert_string_equal(ai.device_ids[0], "mine");
	free(err);
	hu_argv_info_clear(&ai);
}

static void refused_text(const char *name, const char *text, const char *want)
{
	_cleanup_free_ char *path = write_tmp(name, text);

	refused(path, want);
}

static void test_refusals(void **state)
{
	_cleanup_free_ char *long_line = NULL, *big = NULL, *long_id = NULL, *fifo = NULL, *link = NULL;
	const char *dev = "[device \"d\"]\n";

	refused_text("blank.cfg", "[device \"d\"]\n   \n", "line 2: a line of blanks only");
	refused_text("indent.cfg", "[device \"d\"]\n  # note\n", "line 2: an indented '#'");
	refused_text("nospace.cfg", "[device \"d\"]\n  driver=\"e1000\"\n", "line 2: not KEY = \"VALUE\"");
	refused_text("unquoted.cfg", "[device \"d\"]\n  driver = e1000\n",
		     "line 2: a value not in double quotes");
	refused_text("unterminated.cfg", "[device \"d\"]\n  driver = \"e1000\n",
		     "line 2: a value without its closing quote");
	refused_text("trailing.cfg", "[device \"d\"]\n  driver = \"e1000\" x\n",
		     "line 2: text after the closing quote");
	refused_text("nogroup.cfg", "  driver = \"e1000\"\n", "line 1: a key before any [GROUP] section");
	refused_text("header.cfg", "[device \"d\"\n", "line 1: a section header that is not");
	refused_text("idkey.cfg", "[device \"d\"]\n  id = \"other\"\n", "line 2: a key 'id'");
	refused_text("badid.cfg", "[device \"1x\"]\n", "line 1: an id that is not a QEMU id");
	{
		_cleanup_free_ char *p = NULL;
		int fd;

		assert_true(asprintf(&p, "%s/nul.cfg", tmpdir) > 0);
		fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "[device \"d\"]\n\0", 14), 14);
		close(fd);
		refused(p, "a NUL byte");
	}
	/* a 1024-character line (QEMU's fgets would cut it in two) */
	assert_true(asprintf(&long_line, "%s  driver = \"%01011d\"\n", dev, 0) > 0);
	refused_text("long.cfg", long_line, "line 2: longer than 1023 characters");
	/* a 64-character id */
	assert_true(asprintf(&long_id, "[device \"a%063d\"]\n", 0) > 0);
	refused_text("longid.cfg", long_id, "line 1: an id longer than 63 characters");
	/* more than 64 KiB */
	big = malloc(70 * 1024);
	assert_non_null(big);
	memset(big, '#', 70 * 1024 - 1);
	big[70 * 1024 - 1] = '\0';
	refused_text("big.cfg", big, "larger than 64 KiB");
	/* a FIFO: refused without blocking on it */
	assert_true(asprintf(&fifo, "%s/fifo.cfg", tmpdir) > 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	refused(fifo, "not a regular file");
	/* a symbolic link into /proc */
	assert_true(asprintf(&link, "%s/proc.cfg", tmpdir) > 0);
	assert_int_equal(symlink("/proc/self/environ", link), 0);
	refused(link, "kernel pseudo file system");
	refused("/nonexistent/x.cfg", "cannot open it");
}

/* A file only root may read, named by another user's QEMU, is not read. */
static void test_other_users_file(void **state)
{
	_cleanup_free_ char *path = write_tmp("secret.cfg", "[device \"s\"]\n  driver = \"e1000\"\n");
	const struct hu_config_reader user = { .cwd = "/", .uid = 4242, .gid = 4242 };
	struct hu_config_file f = {};
	char *err = NULL;

	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(hu_qemu_config_read(&user, path, NULL, NULL, &f, &err), -EACCES);
	assert_non_null(strstr(err, "not readable by uid 4242"));
	free(err);
	assert_int_equal(chmod(path, 0644), 0);
	err = NULL;
	assert_int_equal(hu_qemu_config_read(&user, path, NULL, NULL, &f, &err), 0);
	free(f.path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q35_shape),	 cmocka_unit_test(test_no_config),
		cmocka_unit_test(test_family),		 cmocka_unit_test(test_default_config),
		cmocka_unit_test(test_check_changed),	 cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_other_users_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
