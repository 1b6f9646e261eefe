/* What a prelaunch must move aside (every unix path the old QEMU binds) and
 * what a second QEMU cannot open, read from argv arrays and -readconfig text
 * by the parser discovery uses: every spelling of one option, the same verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include "hu-private.h"

static size_t argc_of(char **argv)
{
	size_t n = 0;

	while (argv[n])
		n++;
	return n;
}

static bool has(const struct hu_argv_info *ai, const char *path)
{
	for (size_t i = 0; i < ai->n_listen_paths; i++)
		if (streq(ai->listen_paths[i], path))
			return true;
	return false;
}

static void test_every_listening_unix_path(void **state)
{
	char *argv[] = {
		"qemu",
		"-qmp",
		"unix:/r/qmp,server=on,wait=off",
		"-qmp",
		"unix:/r/qmp2,server,wait=off",
		"-qmp",
		"unix:/r/qmp-client", /* a client: binds nothing */
		"-chardev",
		"socket,id=s0,path=/r/serial,server=on,wait=off",
		"-serial",
		"chardev:s0",
		"-chardev",
		"socket,id=s1,path=/r/legacy,,comma,server,nowait",
		"-chardev",
		"socket,id=m1,path=/r/mon2,server=on,wait=off",
		"-mon",
		"chardev=m1,mode=readline",
		"-chardev",
		"socket,id=ab,path=abstract-name,server=on,abstract=on",
		"-chardev",
		"socket,id=cl,path=/r/client",
		"-monitor",
		"unix:/r/hmp,server,nowait",
		"-serial",
		"unix:/r/ser2,server=on,wait=off",
		"-parallel",
		"unix:path=/r/par,server=on",
		"-gdb",
		"unix:/r/gdb,server=on,wait=off",
		"-vnc",
		"unix:/r/vnc",
		"-netdev",
		"stream,id=n1,server=on,addr.type=unix,addr.path=/r/stream",
		"-netdev",
		"{\"type\":\"stream\",\"id\":\"n2\",\"server\":true,\"addr\":{\"type\":\"unix\",\"path\":\"/r/jstream\"}}",
		"-netdev",
		"dgram,id=n3,local.type=unix,local.path=/r/dgram,remote.type=unix,remote.path=/r/peer",
		"-pidfile",
		"/r/pid",
		"-chardev",
		"socket,id=rel,path=relative.sock,server=on",
		NULL,
	};
	static const char *const want[] = { "/r/qmp",	"/r/qmp2",	"/r/serial", "/r/legacy,comma",
					    "/r/mon2",	"/r/hmp",	"/r/ser2",   "/r/par",
					    "/r/gdb",	"/r/vnc",	"/r/stream", "/r/jstream",
					    "/r/dgram", "relative.sock" };
	struct hu_argv_info ai = {};

	assert_int_equal(hu_argv_parse(argv, argc_of(argv), &ai), 0);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!has(&ai, want[i]))
			fail_msg("%s is not in the list", want[i]);
	assert_int_equal(ai.n_listen_paths, ARRAY_SIZE(want)); /* no client, no abstract, no pidfile */
	assert_false(ai.listen_paths_over);
	assert_int_equal(ai.once, 0);
	hu_argv_info_clear(&ai);
}

static void test_display_vnc_unix_and_bound(void **state)
{
	char *argv[2 + 2 * (HU_MAX_LISTEN_PATHS + 5)] = { "qemu", "-display", "vnc=unix:/r/v" };
	char buf[HU_MAX_LISTEN_PATHS + 5][32];
	size_t n = 3;
	struct hu_argv_info ai = {};

	for (size_t i = 0; i < HU_MAX_LISTEN_PATHS + 4; i++) {
		snprintf(buf[i], sizeof(buf[i]), "unix:/r/%zu,server=on", i);
		argv[n++] = "-serial";
		argv[n++] = buf[i];
	}
	assert_int_equal(hu_argv_parse(argv, n, &ai), 0);
	assert_true(has(&ai, "/r/v"));
	assert_int_equal(ai.n_listen_paths, HU_MAX_LISTEN_PATHS);
	assert_true(ai.listen_paths_over);
	hu_argv_info_clear(&ai);
}

/* One option, its spellings, and the HU_ONCE_* bit each must give. */
static const struct {
	const char *opt, *val;
	unsigned once;
} once_cases[] = {
	{ "-netdev", "tap,id=n0,ifname=tap0,script=no", HU_ONCE_TAP },
	{ "-netdev", "type=tap,id=n0,ifname=tap0", HU_ONCE_TAP },
	{ "-netdev", "id=n0,type=tap", HU_ONCE_TAP },
	{ "-netdev", "{\"type\":\"tap\",\"id\":\"n0\",\"ifname\":\"tap0\"}", HU_ONCE_TAP },
	{ "-netdev", "bridge,id=n0,br=br0", HU_ONCE_TAP },
	{ "-nic", "tap,ifname=tap0", HU_ONCE_TAP },
	{ "-nic", "type=tap,ifname=tap0", HU_ONCE_TAP },
	{ "-net", "tap,ifname=tap0", HU_ONCE_TAP },
	{ "-netdev", "vhost-user,id=v,chardev=c", HU_ONCE_BACKEND },
	{ "-netdev", "{\"type\":\"vhost-user\",\"id\":\"v\",\"chardev\":\"c\"}", HU_ONCE_BACKEND },
	{ "-device", "vhost-user-blk-pci,chardev=c", HU_ONCE_BACKEND },
	{ "-device", "{\"driver\":\"vhost-user-fs-pci\",\"chardev\":\"c\",\"tag\":\"t\"}", HU_ONCE_BACKEND },
	{ "-tpmdev", "emulator,id=t,chardev=c", HU_ONCE_BACKEND },
	{ "-device", "usb-host,hostbus=1,hostaddr=2", HU_ONCE_HOST_DEV },
	{ "-device", "driver=usb-host,vendorid=1", HU_ONCE_HOST_DEV },
	{ "-device", "vhost-vsock-pci,guest-cid=3", HU_ONCE_HOST_DEV },
	{ "-device", "vhost-scsi-pci,wwpn=naa.1", HU_ONCE_HOST_DEV },
	{ "-device", "vhost-vdpa-device-pci,vhostdev=/dev/vhost-vdpa-0", HU_ONCE_HOST_DEV },
	{ "-netdev", "vhost-vdpa,id=v,vhostdev=/dev/vhost-vdpa-0", HU_ONCE_HOST_DEV },
	{ "-tpmdev", "passthrough,id=t,path=/dev/tpm0", HU_ONCE_HOST_DEV },
	{ "-vnc", ":0", HU_ONCE_PORT },
	{ "-vnc", "127.0.0.1:5,password=on", HU_ONCE_PORT },
	{ "-display", "vnc=:1", HU_ONCE_PORT },
	{ "-chardev", "socket,id=t,host=127.0.0.1,port=4444,server=on,wait=off", HU_ONCE_PORT },
	{ "-serial", "tcp:127.0.0.1:4445,server,nowait", HU_ONCE_PORT },
	{ "-monitor", "telnet::4446,server=on", HU_ONCE_PORT },
	{ "-gdb", "tcp::1234", HU_ONCE_PORT },
	{ "-netdev", "user,id=u,hostfwd=tcp::2222-:22", HU_ONCE_PORT },
	{ "-netdev", "{\"type\":\"user\",\"id\":\"u\",\"hostfwd\":[{\"str\":\"tcp::2222-:22\"}]}",
	  HU_ONCE_PORT },
	{ "-nic", "user,hostfwd=tcp::2222-:22", HU_ONCE_PORT },
	{ "-netdev", "socket,id=s,listen=:4447", HU_ONCE_PORT },
	/* What two QEMUs can open (tried), or that binds no port. */
	{ "-netdev", "user,id=u", 0 },
	{ "-vnc", "none", 0 },
	{ "-chardev", "socket,id=t,host=127.0.0.1,port=4444", 0 }, /* a client */
	{ "-serial", "tcp:127.0.0.1:4445", 0 },
	{ "-device", "virtio-net-pci,netdev=n0", 0 },
	{ "-device", "vfio-pci,host=01:00.0", 0 }, /* has_vfio: its own reason */
};

static void test_what_cannot_be_opened_twice(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(once_cases); i++) {
		char *argv[] = { "qemu", (char *)once_cases[i].opt, (char *)once_cases[i].val, NULL };
		struct hu_argv_info ai = {};

		assert_int_equal(hu_argv_parse(argv, 3, &ai), 0);
		if (ai.once != once_cases[i].once)
			fail_msg("%s %s: once %#x, want %#x", once_cases[i].opt, once_cases[i].val, ai.once,
				 once_cases[i].once);
		hu_argv_info_clear(&ai);
	}
}

/* A [netdev] section with type = "tap" and a [chardev] server, as discovery
 * reads a -readconfig file: the sections become options the parser judges. */
static void test_readconfig_sections(void **state)
{
	static const char text[] = "[netdev \"n0\"]\n"
				   "  type = \"tap\"\n"
				   "  ifname = \"hutap0\"\n"
				   "\n"
				   "[chardev \"ser0\"]\n"
				   "  backend = \"socket\"\n"
				   "  path = \"/r/cfg-serial\"\n"
				   "  server = \"on\"\n"
				   "  wait = \"off\"\n";
	char **argv = NULL, *err = NULL;
	size_t argc = 0;
	struct hu_argv_info ai = {};

	assert_int_equal(hu_strv_push(&argv, &argc, "qemu"), 0);
	assert_int_equal(hu_qemu_config_to_argv(text, sizeof(text) - 1, &argv, &argc, &err), 0);
	assert_null(err);
	assert_int_equal(hu_argv_parse(argv, argc, &ai), 0);
	assert_true(ai.once & HU_ONCE_TAP);
	assert_true(has(&ai, "/r/cfg-serial"));
	hu_argv_info_clear(&ai);
	hu_strv_free(argv, argc);
}

/* Eligibility from those facts: a VM that would be eligible but for one option. */
static void test_eligibility_reasons(void **state)
{
	static const struct {
		const char *opt, *val, *why;
	} cases[] = {
		{ "-netdev", "{\"type\":\"tap\",\"id\":\"n0\"}", "tap network device" },
		{ "-nic", "type=tap,ifname=t", "tap network device" },
		{ "-vnc", ":3", "TCP port" },
		{ "-device", "vhost-user-blk-pci,chardev=c", "vhost-user" },
		{ "-device", "usb-host,hostbus=1", "host device" },
		{ "-vnc", "unix:/r/v", NULL },
		{ "-chardev", "socket,id=s,path=/r/s,server=on", NULL },
	};
	struct hu_ctx *ctx;

	assert_int_equal(hu_new(&ctx), 0);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *argv[] = { "qemu", "-qmp", "unix:/r/q,server=on", (char *)cases[i].opt,
				 (char *)cases[i].val };
		struct hu_vm *vm = calloc(1, sizeof(*vm));
		const char *why = NULL;

		vm->ctx = ctx;
		vm->memdevs = calloc(1, sizeof(*vm->memdevs));
		vm->n_memdevs = 1;
		vm->memdevs[0].mem_path = strdup("/dev/shm/x");
		vm->memdevs[0].skipped = true;
		assert_int_equal(hu_argv_parse(argv, ARRAY_SIZE(argv), &vm->ai), 0);
		assert_int_equal(hu_prelaunch_eligible(vm, &why), cases[i].why == NULL);
		if (cases[i].why && !strstr(why, cases[i].why))
			fail_msg("%s %s: '%s', want '%s'", cases[i].opt, cases[i].val, why, cases[i].why);
		hu_vm_free(vm);
	}
	hu_unref(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_listening_unix_path),
		cmocka_unit_test(test_display_vnc_unix_and_bound),
		cmocka_unit_test(test_what_cannot_be_opened_twice),
		cmocka_unit_test(test_readconfig_sections),
		cmocka_unit_test(test_eligibility_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
