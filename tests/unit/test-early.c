/* The initrd helper's checks against a fake sysfs and /proc made here:
 * marker present/absent, pmem namespace present/absent/wrong mode/size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/stat.h>
#include "hu-private.h"

static char root[64];
static struct hu_ctx *ctx;

static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	sh("mkdir -p \"$(dirname '%s')\"", path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A manifest with one checkpointed VM whose RAM is a file on fsdax pmem0. */
static void write_manifest(void)
{
	struct hu_manifest *m;
	struct hu_vm *vm = calloc(1, sizeof(*vm));
	char dir[256];

	snprintf(dir, sizeof(dir), "%s/sysroot/var/lib/host-upgrade", root);
	sh("mkdir -p %s", dir);
	assert_int_equal(hu_set_state_dir(ctx, dir), 0);
	vm->ctx = ctx;
	vm->name = strdup("vm1");
	vm->exe = strdup("/usr/bin/qemu-system-x86_64");
	hu_strv_push(&vm->argv, &vm->argc, "qemu-system-x86_64");
	vm->cwd = strdup("/");
	vm->ai.qmp_path = strdup("/run/vm1.qmp");
	vm->state = HU_VM_CHECKPOINTED;
	vm->caps = json_object_new_object();
	vm->memdevs = calloc(1, sizeof(*vm->memdevs));
	vm->n_memdevs = 1;
	vm->memdevs[0].id = strdup("ram0");
	vm->memdevs[0].type = strdup("memory-backend-file");
	vm->memdevs[0].mem_path = strdup("/mnt/pmem/vm1.ram");
	vm->memdevs[0].share = true;
	vm->memdevs[0].size = 256 << 20;
	vm->memdevs[0].skipped = true;
	vm->memdevs[0].medium.kind = HU_MEDIUM_FSDAX;
	vm->memdevs[0].medium.device = strdup("pmem0");
	vm->memdevs[0].medium.size = 1ULL << 30;
	vm->memdevs[0].medium.mode = strdup("fsdax");
	assert_int_equal(hu_manifest_new(ctx, &m), 0);
	hu_vm_list_add(&m->list, vm);
	assert_int_equal(hu_manifest_set_phase(m, "checkpointed"), 0);
	hu_manifest_free(m);
	/* early-boot reads it under --root: state dir is root-relative */
	assert_int_equal(hu_set_state_dir(ctx, "/var/lib/host-upgrade"), 0);
}

static int setup(void **state)
{
	char p[128];

	strcpy(root, "/tmp/hu-test-early.XXXXXX");
	assert_non_null(mkdtemp(root));
	assert_int_equal(hu_new(&ctx), 0);
	snprintf(p, sizeof(p), "%s/proc", root);
	hu_set_proc_root(ctx, p);
	snprintf(p, sizeof(p), "%s/sys", root);
	hu_set_sys_root(ctx, p);
	write_manifest();
	return 0;
}

static int teardown(void **state)
{
	sh("rm -rf %s", root);
	hu_unref(ctx);
	return 0;
}

static int run_early(void)
{
	char run[128], wants[128], sysroot[128], dropin[160];
	struct hu_early_opts o = {
		.run_dir = run, .wants_dir = wants, .unit_path = "/usr/lib/systemd/system/host-upgrade-restore.service",
		.root = sysroot, .wait_ms = 300, .no_modules = true, .dropin_dir = dropin,
	};


	snprintf(run, sizeof(run), "%s/run/host-upgrade", root);
	snprintf(wants, sizeof(wants), "%s/run/systemd/system/sysinit.target.wants", root);
	snprintf(sysroot, sizeof(sysroot), "%s/sysroot", root);
	snprintf(dropin, sizeof(dropin), "%s/run/systemd/system/host-upgrade-restore.service.d", root);
	return hu_early_boot(ctx, &o);
}

static char *report(void)
{
	char path[256], *text = NULL;

	snprintf(path, sizeof(path), "%s/run/host-upgrade/early-boot.json", root);
	if (hu_read_file(path, 1 << 20, &text, NULL) < 0)
		return NULL;
	return text;
}

static bool wants_link(void)
{
	char path[256], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/run/systemd/system/sysinit.target.wants/host-upgrade-restore.service", root);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	return streq(target, "/usr/lib/systemd/system/host-upgrade-restore.service");
}

static void pmem0(const char *sectors, const char *mode)
{
	put("sys/class/block/pmem0/size", sectors);
	if (mode)
		put("sys/class/block/pmem0/device/mode", mode);
}

static void test_no_marker_does_nothing(void **state)
{
	put("proc/cmdline", "root=/dev/vda rw memmap=1G!4G quiet\n");
	pmem0("2097152\n", "fsdax\n");
	assert_int_equal(run_early(), 0);
	assert_null(report());
	assert_false(wants_link());
}

static void test_marker_and_medium_back(void **state)
{
	char *r;

	put("proc/cmdline", "root=/dev/vda rw memmap=1G!4G nokaslr hu.restore=1\n");
	pmem0("2097152\n", "fsdax\n");
	assert_int_equal(run_early(), 0);
	r = report();
	assert_non_null(r);
	assert_non_null(strstr(r, "\"device\":\"pmem0\""));
	assert_non_null(strstr(r, "\"ok\":true"));
	assert_true(wants_link());
	free(r);
	/* The restore waits for the filesystem holding the RAM. */
	{
		char path[256], *conf = NULL;

		snprintf(path, sizeof(path), "%s/run/systemd/system/host-upgrade-restore.service.d/50-ram-mounts.conf", root);
		assert_int_equal(hu_read_file(path, 4096, &conf, NULL), 0);
		assert_non_null(strstr(conf, "RequiresMountsFor=\"/mnt/pmem\"\n"));
		free(conf);
	}
	/* Twice is fine: the link exists already. */
	assert_int_equal(run_early(), 0);
}

static void test_medium_absent(void **state)
{
	char *r;

	put("proc/cmdline", "hu.restore=1\n");
	assert_int_equal(run_early(), 1);
	r = report();
	assert_non_null(strstr(r, "\"ok\":false"));
	assert_non_null(strstr(r, "pmem0 is not there"));
	/* The restore still runs: it refuses that VM with the reason. */
	assert_true(wants_link());
	free(r);
}

static void test_medium_wrong_mode_or_size(void **state)
{
	char *r;

	put("proc/cmdline", "hu.restore=1\n");
	pmem0("2097152\n", "raw\n");
	assert_int_equal(run_early(), 1);
	r = report();
	assert_non_null(strstr(r, "pmem0 is in mode raw, was fsdax"));
	free(r);
	pmem0("1048576\n", "fsdax\n");
	assert_int_equal(run_early(), 1);
	r = report();
	assert_non_null(strstr(r, "pmem0 is 536870912 bytes, was 1073741824"));
	free(r);
}

static void test_marker_lookalikes(void **state)
{
	char *v = NULL;

	put("proc/cmdline", "xhu.restore=1 hu.restore2=1 hu.state=UUID=abc:/var/lib/x\n");
	assert_int_equal(hu_cmdline_get(ctx, "hu.restore", NULL), 0);
	assert_int_equal(hu_cmdline_get(ctx, "hu.state", &v), 1);
	assert_string_equal(v, "UUID=abc:/var/lib/x");
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_marker_does_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker_and_medium_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_medium_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_medium_wrong_mode_or_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker_lookalikes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
