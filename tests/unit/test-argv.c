/* QEMU command lines as /proc shows them: every QMP endpoint form, odd paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "hu-private.h"

static void parse(char **argv, struct hu_argv_info *ai)
{
	size_t argc = 0;

	while (argv[argc])
		argc++;
	assert_int_equal(hu_argv_parse(argv, argc, ai), 0);
}

static void test_qmp_unix(void **state)
{
	char *argv[] = {
		"qemu-system-x86_64",	       "-S", "-qmp", "unix:/run/vm/a.qmp,server=on,wait=off", "-name",
		"guest=web1,debug-threads=on", NULL
	};
	struct hu_argv_info ai;

	parse(argv, &ai);
	assert_string_equal(ai.qmp_path, "/run/vm/a.qmp");
	assert_string_equal(ai.name, "web1");
	assert_null(ai.qmp_error);
	hu_argv_info_clear(&ai);
}

static void test_qmp_unix_path_key(void **state)
{
	char *argv[] = { "qemu", "-qmp", "unix:path=/run/q.sock,server=on,wait=off", NULL };
	struct hu_argv_info ai;

	parse(argv, &ai);
	assert_string_equal(ai.qmp_path, "/run/q.sock");
	hu_argv_info_clear(&ai);
}

static void test_qmp_legacy_flags_and_pretty(void **state)
{
	char *argv[] = { "qemu", "--qmp-pretty", "unix:/tmp/x,server,nowait", "-name", "plain", NULL };
	struct hu_argv_info ai;

	parse(argv, &ai);
	assert_string_equal(ai.qmp_path, "/tmp/x");
	assert_string_equal(ai.name, "plain");
	hu_argv_info_clear(&ai);
}

static void test_chardev_mon_control(void **state)
{
	char *argv[] = { "qemu",
			 "-chardev",
			 "socket,id=hmp,path=/tmp/hmp.sock,server=on",
			 "-mon",
			 "chardev=hmp,mode=readline",
			 "-chardev",
			 "socket,id=qmp0,path=/var/run/odd,,name.sock,server=on,wait=off",
			 "-mon",
			 "chardev=qmp0,mode=control,pretty=on",
			 NULL };
	struct hu_argv_info ai;

	parse(argv, &ai);
	/* The readline monitor is not QMP; ",," is a literal comma. */
	assert_string_equal(ai.qmp_path, "/var/run/odd,name.sock");
	hu_argv_info_clear(&ai);
}

static void test_client_socket_and_fd_are_reported(void **state)
{
	char *client[] = { "qemu", "-qmp", "unix:/tmp/c.sock", NULL };
	char *fd[] = { "qemu",
		       "-chardev",
		       "socket,id=charmonitor,fd=23,server=on,wait=off",
		       "-mon",
		       "chardev=charmonitor,id=monitor,mode=control",
		       NULL };
	char *none[] = { "qemu", "-m", "1G", NULL };
	char *tcp[] = { "qemu", "-qmp", "tcp:127.0.0.1:4444,server=on", NULL };
	struct hu_argv_info ai;

	parse(client, &ai);
	assert_null(ai.qmp_path);
	assert_non_null(strstr(ai.qmp_error, "client"));
	hu_argv_info_clear(&ai);
	parse(fd, &ai);
	assert_null(ai.qmp_path);
	assert_non_null(strstr(ai.qmp_error, "file descriptor"));
	hu_argv_info_clear(&ai);
	parse(none, &ai);
	assert_null(ai.qmp_path);
	assert_non_null(strstr(ai.qmp_error, "no QMP monitor"));
	hu_argv_info_clear(&ai);
	parse(tcp, &ai);
	assert_null(ai.qmp_path);
	assert_non_null(strstr(ai.qmp_error, "unix"));
	hu_argv_info_clear(&ai);
}

static void test_values_that_look_like_options(void **state)
{
	/* -append takes an argument: "-qmp" inside it must not be read as an option. */
	char *argv[] = { "qemu",      "-append", "-qmp",       "-name",	   "guest=real",
			 "-kernel",   "/boot/k", "-daemonize", "-pidfile", "/run/q.pid",
			 "-incoming", "defer",	 NULL };
	struct hu_argv_info ai;

	parse(argv, &ai);
	assert_null(ai.qmp_path);
	assert_string_equal(ai.name, "real");
	assert_true(ai.daemonize);
	assert_true(ai.has_incoming);
	assert_string_equal(ai.pidfile, "/run/q.pid");
	hu_argv_info_clear(&ai);
}

static void test_json_object_agent_vfio(void **state)
{
	char *argv[] = {
		"qemu",
		"-object",
		"{\"qom-type\":\"memory-backend-file\",\"id\":\"ram0\",\"size\":1073741824,\"mem-path\":\"/dev/dax0.0\",\"share\":true}",
		"-object",
		"memory-backend-file,id=ram1,size=1G,mem-path=/mnt/pmem/vm1,share=on",
		"-chardev",
		"socket,id=qga0,path=/run/qga.sock,server=on,wait=off",
		"-device",
		"virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
		"-device",
		"{\"driver\":\"vfio-pci\",\"host\":\"0000:01:00.0\"}",
		"-qmp",
		"unix:/q,server=on",
		NULL
	};
	struct hu_argv_info ai;

	parse(argv, &ai);
	assert_int_equal(ai.n_mem_paths, 2);
	assert_string_equal(ai.mem_paths[0], "/dev/dax0.0");
	assert_string_equal(ai.mem_paths[1], "/mnt/pmem/vm1");
	assert_string_equal(ai.qga_path, "/run/qga.sock");
	assert_true(ai.has_vfio);
	hu_argv_info_clear(&ai);
}

/* Proxmox's agent: type=isa puts the agent on isa-serial by chardev qga0; an
 * isa-serial console on another chardev is no agent. */
static void test_isa_serial_agent(void **state)
{
	char *isa[] = { "kvm",
			"-chardev",
			"socket,path=/run/qemu-server/100.qga,server=on,wait=off,id=qga0",
			"-device",
			"isa-serial,chardev=qga0",
			"-qmp",
			"unix:/q,server=on",
			NULL };
	char *console[] = { "kvm",
			    "-chardev",
			    "socket,path=/run/serial0,server=on,wait=off,id=serial0",
			    "-device",
			    "isa-serial,chardev=serial0",
			    "-qmp",
			    "unix:/q,server=on",
			    NULL };
	struct hu_argv_info ai;

	parse(isa, &ai);
	assert_string_equal(ai.qga_path, "/run/qemu-server/100.qga");
	hu_argv_info_clear(&ai);
	parse(console, &ai);
	assert_null(ai.qga_path);
	hu_argv_info_clear(&ai);
}

/* -machine/-M aux-ram-share, as QEMU reads it: keyval with the implied
 * type, the last one given wins. */
static void test_aux_ram_share(void **state)
{
	char *on[] = { "qemu", "-machine", "q35,accel=tcg,aux-ram-share=on", NULL };
	char *m_last_off[] = { "qemu", "-M", "aux-ram-share=on", "-machine", "pc,aux-ram-share=off", NULL };
	char *none[] = { "qemu", "-machine", "pc,memory-backend=ram0", NULL };
	struct hu_argv_info ai;

	parse(on, &ai);
	assert_true(ai.aux_ram_share);
	hu_argv_info_clear(&ai);
	parse(m_last_off, &ai);
	assert_false(ai.aux_ram_share);
	hu_argv_info_clear(&ai);
	parse(none, &ai);
	assert_false(ai.aux_ram_share);
	hu_argv_info_clear(&ai);
}

static void test_truncated_and_malformed(void **state)
{
	char *dangling[] = { "qemu", "-qmp", NULL };
	char *badjson[] = { "qemu", "-object", "{not json", "-qmp", "unix:/ok,server=on", NULL };
	struct hu_argv_info ai;

	parse(dangling, &ai);
	assert_null(ai.qmp_path);
	hu_argv_info_clear(&ai);
	parse(badjson, &ai);
	assert_string_equal(ai.qmp_path, "/ok");
	hu_argv_info_clear(&ai);
}

static void test_strip_incoming(void **state)
{
	char *argv[] = { "qemu", "-m", "1G", "-incoming", "defer", "-S", "--incoming", "tcp:0:4444", NULL };
	char **out = NULL;
	size_t n = 0;

	assert_int_equal(hu_argv_strip_incoming(argv, 8, &out, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(out[0], "qemu");
	assert_string_equal(out[1], "-m");
	assert_string_equal(out[2], "1G");
	assert_string_equal(out[3], "-S");
	assert_null(out[4]);
	hu_strv_free(out, n);
}

static void test_opts_parse(void **state)
{
	struct hu_opts o;

	assert_int_equal(hu_opts_parse("socket,id=a,,b,path=/x=y,server,nodelay", "backend", &o), 0);
	assert_string_equal(hu_opts_get(&o, "backend"), "socket");
	assert_string_equal(hu_opts_get(&o, "id"), "a,b");
	assert_string_equal(hu_opts_get(&o, "path"), "/x=y");
	assert_string_equal(hu_opts_get(&o, "server"), "on");
	assert_string_equal(hu_opts_get(&o, "delay"), "off");
	assert_null(hu_opts_get(&o, "missing"));
	hu_opts_clear(&o);
	assert_int_equal(hu_opts_parse("{\"a\": [1]", NULL, &o), -EINVAL);
}

static void test_replace_mem_path(void **state)
{
	char *argv[] = {
		strdup("qemu-system-x86_64"),
		strdup("-object"),
		strdup("memory-backend-file,id=a,mem-path=/dev/dax0.1,share=on,align=2M"),
		strdup("-object"),
		strdup("memory-backend-file,id=b,mem-path=/dev/dax0.10,share=on"),
		strdup("--object"),
		strdup("{\"qom-type\":\"memory-backend-file\",\"id\":\"c\",\"mem-path\":\"/dev/dax0.1\"}"),
		strdup("-object"),
		strdup("memory-backend-file,id=d,x=y,,mem-path=/dev/dax0.1,share=on"),
		strdup("-append"),
		strdup("mem-path=/dev/dax0.1"),
		strdup("-object"),
		strdup("memory-backend-file,id=e,share=on,mem-path=/dev/dax0.1"),
	};
	size_t argc = ARRAY_SIZE(argv);

	assert_int_equal(hu_argv_replace_mem_path(argv, argc, "/dev/dax0.1", "/dev/dax0.0"), 3);
	assert_string_equal(argv[2], "memory-backend-file,id=a,mem-path=/dev/dax0.0,share=on,align=2M");
	/* another device whose name starts the same: untouched */
	assert_string_equal(argv[4], "memory-backend-file,id=b,mem-path=/dev/dax0.10,share=on");
	assert_string_equal(
		argv[6], "{\"qom-type\":\"memory-backend-file\",\"id\":\"c\",\"mem-path\":\"/dev/dax0.0\"}");
	/* inside an escaped value (",,"), not an option of its own: untouched */
	assert_string_equal(argv[8], "memory-backend-file,id=d,x=y,,mem-path=/dev/dax0.1,share=on");
	/* not an -object */
	assert_string_equal(argv[10], "mem-path=/dev/dax0.1");
	assert_string_equal(argv[12], "memory-backend-file,id=e,share=on,mem-path=/dev/dax0.0");
	assert_int_equal(hu_argv_replace_mem_path(argv, argc, "/dev/dax0.7", "/dev/dax0.0"), 0);
	for (size_t i = 0; i < argc; i++)
		free(argv[i]);
}

/* QEMU's keyval takes the last of a repeated key: every mem-path= of the
 * old file moves, or the QEMU restore starts maps the old device, which may
 * hold another VM's RAM after the renumbering (found by tests/fuzz). */
static void test_replace_repeated_mem_path(void **state)
{
	char *argv[] = {
		strdup("qemu-system-x86_64"),
		strdup("-object"),
		strdup("memory-backend-file,id=a,mem-path=/dev/dax0.1,size=1G,mem-path=/dev/dax0.1,share=on"),
	};
	struct hu_argv_info ai = {};

	assert_int_equal(hu_argv_replace_mem_path(argv, ARRAY_SIZE(argv), "/dev/dax0.1", "/dev/dax0.0"), 1);
	assert_string_equal(
		argv[2],
		"memory-backend-file,id=a,mem-path=/dev/dax0.0,size=1G,mem-path=/dev/dax0.0,share=on");
	assert_int_equal(hu_argv_parse(argv, ARRAY_SIZE(argv), &ai), 0);
	assert_int_equal(ai.n_mem_paths, 1);
	assert_string_equal(ai.mem_paths[0], "/dev/dax0.0");
	hu_argv_info_clear(&ai);
	for (size_t i = 0; i < ARRAY_SIZE(argv); i++)
		free(argv[i]);
}

static void test_sizes_and_names(void **state)
{
	uint64_t v;

	assert_int_equal(hu_parse_size("256M", &v), 0);
	assert_int_equal(v, 256ULL << 20);
	assert_int_equal(hu_parse_size("100K", &v), 0);
	assert_int_equal(v, 100ULL << 10);
	assert_int_equal(hu_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(hu_parse_size("-1", &v), -EINVAL);
	assert_int_equal(hu_parse_size("12Q", &v), -EINVAL);
	assert_int_equal(hu_parse_size("99999999999T", &v), -ERANGE);
	assert_true(hu_name_is_safe("web-1.prod_a"));
	assert_false(hu_name_is_safe("../etc"));
	assert_false(hu_name_is_safe("a/b"));
	assert_false(hu_name_is_safe("has space"));
	assert_false(hu_name_is_safe(""));
}

/* Options without an argument that the list once lacked (#15): each
 * swallowed the option after it (here -name). */
static void test_newer_flags(void **state)
{
	static const char *const flags[] = { "-perfmap", "-jitdump", "-audio-help", "-xen-domid-restrict" };

	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		char *argv[] = { "qemu",    (char *)flags[i], "-name",
				 "guest=x", "-qmp",	      "unix:/run/x.qmp,server=on",
				 NULL };
		struct hu_argv_info ai;

		assert_false(hu_qemu_option_takes_arg(flags[i] + 1));
		parse(argv, &ai);
		assert_non_null(ai.name);
		assert_string_equal(ai.name, "x");
		assert_string_equal(ai.qmp_path, "/run/x.qmp");
		hu_argv_info_clear(&ai);
	}
}

/* Who QEMU drops to, and where it chroots, in every spelling (#15 case 8). */
static void test_runas_and_chroot(void **state)
{
	char *a1[] = { "qemu", "-run-with", "async-teardown=on,user=nobody,chroot=/srv/jail", NULL };
	char *a2[] = { "qemu", "-runas", "qemu", "-chroot", "/var/empty", NULL };
	char *a3[] = { "qemu", "-run-with", "user=65534:65534", "-run-with", "async-teardown=on", NULL };
	char *a4[] = { "qemu", "-name", "x", NULL };
	struct hu_argv_info ai;

	parse(a1, &ai);
	assert_string_equal(ai.runas, "nobody");
	assert_string_equal(ai.chroot, "/srv/jail");
	hu_argv_info_clear(&ai);
	parse(a2, &ai);
	assert_string_equal(ai.runas, "qemu");
	assert_string_equal(ai.chroot, "/var/empty");
	hu_argv_info_clear(&ai);
	parse(a3, &ai);
	assert_string_equal(ai.runas, "65534:65534");
	assert_null(ai.chroot);
	hu_argv_info_clear(&ai);
	parse(a4, &ai);
	assert_null(ai.runas);
	assert_null(ai.chroot);
	hu_argv_info_clear(&ai);
}

/* The binary restore runs as root: only root can have put it there. */
static void test_exe_check(void **state)
{
	char *why = NULL;

	assert_int_equal(hu_exe_check("/usr/bin/env", 0, NULL), 0);
	assert_int_equal(hu_exe_check("sh", 0, &why), -EINVAL);
	assert_non_null(strstr(why, "not an absolute path"));
	assert_int_equal(hu_exe_check("/etc/passwd", 0, &why), -EACCES);
	assert_non_null(strstr(why, "not an executable regular file"));
	/* /tmp is writable by all, but sticky: its entries are their owners' */
	assert_int_equal(hu_exe_check("/tmp", 0, &why), -EACCES);
	assert_int_equal(hu_exe_check("/nonexistent/qemu", 0, &why), -ENOENT);
	free(why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmp_unix),
		cmocka_unit_test(test_qmp_unix_path_key),
		cmocka_unit_test(test_qmp_legacy_flags_and_pretty),
		cmocka_unit_test(test_chardev_mon_control),
		cmocka_unit_test(test_client_socket_and_fd_are_reported),
		cmocka_unit_test(test_values_that_look_like_options),
		cmocka_unit_test(test_json_object_agent_vfio),
		cmocka_unit_test(test_isa_serial_agent),
		cmocka_unit_test(test_aux_ram_share),
		cmocka_unit_test(test_truncated_and_malformed),
		cmocka_unit_test(test_strip_incoming),
		cmocka_unit_test(test_opts_parse),
		cmocka_unit_test(test_sizes_and_names),
		cmocka_unit_test(test_replace_mem_path),
		cmocka_unit_test(test_replace_repeated_mem_path),
		cmocka_unit_test(test_newer_flags),
		cmocka_unit_test(test_runas_and_chroot),
		cmocka_unit_test(test_exe_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
