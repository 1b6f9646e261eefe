/* The initrd helper's checks: marker present/absent against a /proc made here;
 * the RAM medium looked up in this machine's real namespaces (libndctl: it has
 * none, so a recorded pmem0 is "not there"); a medium that came back different
 * (uuid, size, mode) through hu_medium_compare. A medium really coming back
 * across a kexec is the system test's (tests/system, legacy pmem and NVDIMM). */
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

/* A manifest with one checkpointed VM whose RAM is a file on fsdax pmem0,
 * or (on_pmem false) a file on a plain disk filesystem. */
static void write_manifest(bool on_pmem)
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
	if (on_pmem) {
		vm->memdevs[0].medium.kind = HU_MEDIUM_FSDAX;
		vm->memdevs[0].medium.device = strdup("pmem0");
		vm->memdevs[0].medium.ns = strdup("namespace0.0");
		vm->memdevs[0].medium.uuid = strdup("5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69");
		vm->memdevs[0].medium.size = 1ULL << 30;
		vm->memdevs[0].medium.mode = strdup("fsdax");
	}
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
	write_manifest(true);
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
		.run_dir = run,
		.wants_dir = wants,
		.unit_path = "/usr/lib/systemd/system/host-upgrade-restore.service",
		.root = sysroot,
		.wait_ms = 300,
		.no_modules = true,
		.dropin_dir = dropin,
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

	snprintf(path, sizeof(path),
		 "%s/run/systemd/system/sysinit.target.wants/host-upgrade-restore.service", root);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	return streq(target, "/usr/lib/systemd/system/host-upgrade-restore.service");
}

static void test_no_marker_does_nothing(void **state)
{
	put("proc/cmdline", "root=/dev/vda rw memmap=1G!4G quiet\n");
	assert_int_equal(run_early(), 0);
	assert_null(report());
	assert_false(wants_link());
}

static void test_marker_arranges_restore(void **state)
{
	char *r;

	write_manifest(false);
	put("proc/cmdline", "root=/dev/vda rw memmap=1G!4G nokaslr hu.restore=1\n");
	assert_int_equal(run_early(), 0);
	r = report();
	assert_non_null(r);
	assert_non_null(strstr(r, "\"media\"")); /* none to wait for: RAM on a plain file */
	assert_null(strstr(r, "\"device\""));
	assert_true(wants_link());
	free(r);
	/* The restore waits for the filesystem holding the RAM. */
	{
		char path[256], *conf = NULL;

		snprintf(path, sizeof(path),
			 "%s/run/systemd/system/host-upgrade-restore.service.d/50-ram-mounts.conf", root);
		assert_int_equal(hu_read_file(path, 4096, &conf, NULL), 0);
		/* Wanted, not required: a lost file system must not hold back the others. */
		assert_non_null(strstr(
			conf,
			"\nWants=mnt.mount\nAfter=mnt.mount\nWants=mnt-pmem.mount\nAfter=mnt-pmem.mount\n"));
		assert_null(strstr(conf, "Requires"));
		free(conf);
	}
	/* Twice is fine: the link exists already. */
	assert_int_equal(run_early(), 0);
}

static void test_medium_absent(void **state)
{
	char *r;

	if (access("/dev/pmem0", F_OK) == 0)
		skip(); /* this machine has a pmem0: it cannot stand for a lost one */
	put("proc/cmdline", "hu.restore=1\n");
	assert_int_equal(run_early(), 1);
	r = report();
	assert_non_null(strstr(r, "\"ok\":false"));
	assert_non_null(strstr(r, "pmem0 is not there"));
	/* The restore still runs: it refuses that VM with the reason. */
	assert_true(wants_link());
	free(r);
}

static void test_devdax_needs_no_mount(void **state)
{
	struct hu_manifest *m;
	char path[256], *conf = NULL;

	/* The fsdax VM of setup, plus one on device DAX. */
	assert_int_equal(hu_set_state_dir(ctx, "/var/lib/host-upgrade"), 0);
	snprintf(path, sizeof(path), "%s/sysroot/var/lib/host-upgrade", root);
	assert_int_equal(hu_manifest_load_dir(ctx, path, &m, NULL), 0);
	{
		struct hu_vm *vm = m->list.vms[0];
		struct hu_memdev *d = &vm->memdevs[0];

		free(d->mem_path);
		d->mem_path = strdup("/dev/dax0.0");
		hu_medium_clear(&d->medium);
		d->medium = (struct hu_medium){ .kind = HU_MEDIUM_DEVDAX,
						.device = strdup("dax0.0"),
						.mode = strdup("devdax"),
						.size = 1ULL << 30 };
	}
	snprintf(path, sizeof(path), "%s/sysroot/var/lib/host-upgrade", root);
	assert_int_equal(hu_set_state_dir(ctx, path), 0);
	assert_int_equal(hu_manifest_save(m), 0);
	hu_manifest_free(m);
	assert_int_equal(hu_set_state_dir(ctx, "/var/lib/host-upgrade"), 0);
	put("proc/cmdline", "hu.restore=1\n");
	run_early();
	snprintf(path, sizeof(path),
		 "%s/run/systemd/system/host-upgrade-restore.service.d/50-ram-mounts.conf", root);
	assert_int_equal(hu_read_file(path, 4096, &conf, NULL), 0);
	assert_null(strstr(conf, ".mount"));
	free(conf);
}

static void test_medium_compare(void **state)
{
	struct hu_medium was = {
		.kind = HU_MEDIUM_DEVDAX,
		.device = "dax0.1",
		.ns = "namespace0.1",
		.uuid = "5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69",
		.size = 128ULL << 20,
		.mode = "devdax",
	};
	struct hu_medium now = was;
	char *why = NULL;

	assert_int_equal(hu_medium_compare(&was, &now, &why), 0);
	/* Re-created with the same name and size: a new uuid. */
	now.uuid = "0c8b1f0e-7a65-4d0e-8f36-2a5b2f6c9d11";
	assert_int_equal(hu_medium_compare(&was, &now, &why), -ESTALE);
	assert_string_equal(why,
			    "dax0.1 is namespace 0c8b1f0e-7a65-4d0e-8f36-2a5b2f6c9d11 now, "
			    "was 5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69: not the pmem the RAM was left in");
	now.uuid = NULL;
	assert_int_equal(hu_medium_compare(&was, &now, &why), -ESTALE);
	assert_non_null(strstr(why, "is namespace (no uuid) now"));
	now = was;
	now.size = 64ULL << 20;
	assert_int_equal(hu_medium_compare(&was, &now, &why), -ESTALE);
	assert_string_equal(why, "dax0.1 is 67108864 bytes, was 134217728: the RAM it held did not survive");
	now = was;
	now.mode = "fsdax";
	assert_int_equal(hu_medium_compare(&was, &now, &why), -ESTALE);
	assert_string_equal(why, "dax0.1 is in mode fsdax, was devdax: the RAM it held did not survive");
	/* Raw label-less pmem has no uuid: size and mode only. */
	was.uuid = NULL;
	now = was;
	now.uuid = "0c8b1f0e-7a65-4d0e-8f36-2a5b2f6c9d11";
	free(why);
	why = NULL;
	assert_int_equal(hu_medium_compare(&was, &now, &why), 0);
	assert_null(why); /* left alone on success */
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

/* Early boot reads the line as the kernel (and stage) do: a marker after a
 * \r or a Latin-1 no-break space is a word of its own, quotes are not part
 * of a value (found by tests/fuzz). */
static void test_marker_as_the_kernel_reads_it(void **state)
{
	char *v = NULL;

	put("proc/cmdline", "quiet\rhu.restore=1\xa0hu.state=\"UUID=abc:/var/lib/x\"\n");
	assert_int_equal(hu_cmdline_get(ctx, "hu.restore", &v), 1);
	assert_string_equal(v, "1");
	free(v);
	assert_int_equal(hu_cmdline_get(ctx, "hu.state", &v), 1);
	assert_string_equal(v, "UUID=abc:/var/lib/x");
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_marker_does_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker_arranges_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_medium_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_medium_compare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devdax_needs_no_mount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker_lookalikes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_marker_as_the_kernel_reads_it, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
