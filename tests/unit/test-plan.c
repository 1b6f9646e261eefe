/* plan's decisions on VMs described here: which RAM stays in place, what blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "hu-private.h"

static struct hu_ctx *ctx;

static struct hu_vm *vm_new(const char *name)
{
	struct hu_vm *vm = calloc(1, sizeof(*vm));

	vm->ctx = ctx;
	vm->name = strdup(name);
	vm->exe = strdup("/usr/bin/env"); /* root's, as a QEMU's must be for root to run it */
	vm->qmp_ok = true;
	vm->runstate = strdup("running");
	vm->memdevs = calloc(4, sizeof(*vm->memdevs));
	return vm;
}

static void add_mem(struct hu_vm *vm, const char *type, const char *path, bool share, enum hu_backing b,
		    uint64_t size)
{
	struct hu_memdev *d = &vm->memdevs[vm->n_memdevs++];

	d->id = strdup("m");
	d->type = strdup(type);
	d->mem_path = path ? strdup(path) : NULL;
	d->share = share;
	d->backing = b;
	d->size = size;
}

static int plan1(struct hu_vm *vm, const struct hu_options *o)
{
	struct hu_vm_list list = {};
	int r;

	hu_vm_list_add(&list, vm);
	r = hu_plan(ctx, &list, o);
	free(list.vms);
	return r;
}

static bool has_blocker(const struct hu_vm *vm, const char *needle)
{
	for (size_t i = 0; i < vm->n_blockers; i++)
		if (strstr(vm->blockers[i], needle))
			return true;
	return false;
}

static int setup(void **state)
{
	assert_int_equal(hu_new(&ctx), 0);
	hu_set_state_dir(ctx, "/tmp");
	return 0;
}

static int teardown(void **state)
{
	hu_unref(ctx);
	return 0;
}

static const struct hu_options reboot = { .space_margin = 1 << 20 };

static void test_persistent_file_stays_in_place(void **state)
{
	struct hu_vm *vm = vm_new("a");

	add_mem(vm, "memory-backend-file", "/mnt/pmem/a", true, HU_BACKING_PERSISTENT, 4ULL << 30);
	assert_int_equal(plan1(vm, &reboot), 0);
	assert_true(vm->in_place);
	assert_true(hu_vm_get_in_place(vm));
	assert_true(vm->memdevs[0].skipped);
	assert_int_equal(vm->save_bytes, 1 << 20); /* device state only */
	assert_int_equal(hu_vm_get_copy_bytes(vm), 0);
	hu_vm_free(vm);
}

static void test_one_unsurviving_shared_file_means_copy_all(void **state)
{
	/* x-ignore-shared would skip both files; the hugetlbfs dir's temp
	 * file dies with QEMU, so nothing may be skipped. */
	struct hu_vm *vm = vm_new("b");

	add_mem(vm, "memory-backend-file", "/mnt/pmem/b", true, HU_BACKING_PERSISTENT, 1 << 30);
	add_mem(vm, "memory-backend-file", "/dev/hugepages", true, HU_BACKING_PRIVATE, 1 << 29);
	assert_int_equal(plan1(vm, &reboot), 0);
	assert_false(vm->in_place);
	assert_false(vm->memdevs[0].skipped);
	assert_false(vm->memdevs[1].skipped);
	assert_int_equal(vm->save_bytes, (1 << 20) + (1 << 30) + (1 << 29));
	assert_int_equal(hu_vm_get_copy_bytes(vm), (1 << 30) + (1 << 29)); /* RAM only */
	assert_int_equal(vm->backing, HU_BACKING_PRIVATE);
	hu_vm_free(vm);
}

static void test_private_ram_beside_persistent_is_copied(void **state)
{
	struct hu_vm *vm = vm_new("c");

	add_mem(vm, "memory-backend-file", "/dev/dax0.0", true, HU_BACKING_PERSISTENT, 1 << 30);
	add_mem(vm, "memory-backend-ram", NULL, false, HU_BACKING_PRIVATE, 1 << 26);
	assert_int_equal(plan1(vm, &reboot), 0);
	assert_true(vm->in_place);	      /* x-ignore-shared on */
	assert_false(hu_vm_get_in_place(vm)); /* but some RAM is copied */
	assert_int_equal(vm->save_bytes, (1 << 20) + (1 << 26));
	assert_int_equal(hu_vm_get_copy_bytes(vm), 1 << 26); /* the private part only */
	hu_vm_free(vm);
}

static void test_volatile_depends_on_reboot_and_policy(void **state)
{
	struct hu_options noreboot = reboot, refuse = reboot;
	struct hu_vm *vm = vm_new("d");

	noreboot.no_reboot = true;
	refuse.volatile_policy = HU_VOLATILE_REFUSE;
	add_mem(vm, "memory-backend-file", "/dev/shm/d", true, HU_BACKING_VOLATILE, 1 << 28);
	assert_int_equal(plan1(vm, &reboot), 0);
	assert_false(vm->in_place);
	assert_int_equal(plan1(vm, &noreboot), 0);
	assert_true(vm->in_place);
	assert_int_equal(plan1(vm, &refuse), 1);
	assert_true(has_blocker(vm, "volatile"));
	hu_vm_free(vm);
	/* memfd is never a named file: always copied. */
	vm = vm_new("e");
	add_mem(vm, "memory-backend-memfd", NULL, true, HU_BACKING_VOLATILE, 1 << 28);
	assert_int_equal(plan1(vm, &noreboot), 0);
	assert_false(hu_vm_get_in_place(vm));
	hu_vm_free(vm);
}

static void test_vfio_needs_agent_and_wakeup(void **state)
{
	struct hu_vm *vm = vm_new("f");

	add_mem(vm, "memory-backend-file", "/mnt/pmem/f", true, HU_BACKING_PERSISTENT, 1 << 30);
	vm->ai.has_vfio = true;
	assert_int_equal(plan1(vm, &reboot), 1);
	assert_true(has_blocker(vm, "no guest agent"));
	hu_strv_free(vm->blockers, vm->n_blockers);
	vm->blockers = NULL;
	vm->n_blockers = 0;
	vm->ai.qga_path = strdup("/run/f.qga");
	vm->agent = HU_AGENT_ANSWERING;
	assert_int_equal(plan1(vm, &reboot), 1);
	assert_true(has_blocker(vm, "cannot wake from suspend"));
	hu_strv_free(vm->blockers, vm->n_blockers);
	vm->blockers = NULL;
	vm->n_blockers = 0;
	vm->wakeup_ok = true;
	assert_int_equal(plan1(vm, &reboot), 0);
	assert_true(vm->suspend);
	hu_vm_free(vm);
}

/* An agent that is closed or silent blocks only a VM that needs it, and
 * says which of the two it was. */
static void test_agent_states(void **state)
{
	static const struct {
		enum hu_agent agent;
		const char *why;
	} cases[] = {
		{ HU_AGENT_CLOSED, "has not opened the agent port: no agent runs in it" },
		{ HU_AGENT_SILENT, "does not answer (no reply within 3 s)" },
		{ HU_AGENT_UNKNOWN, "does not answer (no reply within 3 s)" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hu_vm *vm = vm_new("a");
		struct hu_options suspend = reboot;

		add_mem(vm, "memory-backend-file", "/mnt/pmem/a", true, HU_BACKING_PERSISTENT, 1 << 30);
		vm->ai.qga_path = strdup("/run/a.qga");
		vm->agent = cases[i].agent;
		vm->wakeup_ok = true;
		assert_int_equal(plan1(vm, &reboot), 0);
		assert_false(vm->suspend);
		suspend.suspend_all = true;
		assert_int_equal(plan1(vm, &suspend), 1);
		assert_true(has_blocker(vm, cases[i].why));
		assert_true(has_blocker(vm, "guest agent at /run/a.qga does not answer"));
		hu_vm_free(vm);
	}
}

static void test_space_and_runstate(void **state)
{
	struct hu_options huge = { .space_margin = 1ULL << 50 };
	struct hu_vm *vm = vm_new("g");

	add_mem(vm, "memory-backend-file", "/mnt/pmem/g", true, HU_BACKING_PERSISTENT, 1 << 30);
	assert_int_equal(plan1(vm, &huge), 1);
	assert_true(has_blocker(vm, "not enough space"));
	hu_vm_free(vm);
	vm = vm_new("h");
	free(vm->runstate);
	vm->runstate = strdup("inmigrate");
	assert_int_equal(plan1(vm, &reboot), 1);
	assert_true(has_blocker(vm, "runstate 'inmigrate'"));
	hu_vm_free(vm);
}

/* What restore would refuse to start blocks at plan time (#15 case 8). */
static void test_runas_another_user_blocks(void **state)
{
	struct hu_vm *vm = vm_new("r");

	add_mem(vm, "memory-backend-file", "/mnt/pmem/r", true, HU_BACKING_PERSISTENT, 1ULL << 30);
	vm->uid = 65534;
	vm->ai.runas = strdup("root");
	assert_int_equal(plan1(vm, &reboot), 1);
	assert_true(has_blocker(
		vm,
		"restore would not start it: its command line asks QEMU to run as 'root' (uid 0), but it ran as uid 65534"));
	hu_vm_free(vm);

	vm = vm_new("s");
	add_mem(vm, "memory-backend-file", "/mnt/pmem/s", true, HU_BACKING_PERSISTENT, 1ULL << 30);
	vm->uid = 0;
	free(vm->exe);
	vm->exe = strdup("/etc/passwd");
	assert_int_equal(plan1(vm, &reboot), 1);
	assert_true(has_blocker(
		vm, "restore would not start it: QEMU binary /etc/passwd: not an executable regular file"));
	hu_vm_free(vm);
}

/* A QEMU anywhere under a systemd service (Delegate=yes puts it in a sub-cgroup) is
 * restarted sequentially: the old QEMU's end would stop the unit and the new QEMU with it. */
static void test_prelaunch_refused_under_a_service(void **state)
{
	static const struct {
		const char *cgroup;
		bool eligible;
	} cases[] = {
		{ "/machine.slice/machine-qemu-1.scope", true },
		{ NULL, true },
		{ "/system.slice/qemu-a.service", false },
		{ "/system.slice/qemu-a.service/payload", false },
		{ "/system.slice/qemu-a.service/x/y", false },
		{ "/system.slice/.service", true }, /* nothing before the suffix: not a unit name */
		{ "/user.slice/not-a.services/q", true },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct hu_vm *vm = vm_new("p");
		const char *why = NULL;

		add_mem(vm, "memory-backend-file", "/dev/shm/p", true, HU_BACKING_VOLATILE, 1ULL << 30);
		vm->memdevs[0].skipped = true;
		vm->ai.qmp_path = strdup("/run/p.qmp");
		vm->cgroup = cases[i].cgroup ? strdup(cases[i].cgroup) : NULL;
		assert_int_equal(hu_prelaunch_eligible(vm, &why), cases[i].eligible);
		if (!cases[i].eligible)
			assert_non_null(strstr(why, "systemd service"));
		hu_vm_free(vm);
	}
}

/* How a prelaunch gets the RAM to the new QEMU: the same shared files (cpr-reboot), or
 * memfd/shm/shared RAM by cpr-transfer only when -machine aux-ram-share=on was given (QEMU
 * refuses it otherwise: its ROMs are RAM blocks too); anything else is copied, and says why. */
static void test_prelaunch_ram_handover(void **state)
{
	static const char long_qmp[] =
		"/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaa.qmp";
	static const struct {
		const char *type;
		bool share, skipped;
		const char *machine, *machine2, *qmp;
		const char *mode, *why;
	} cases[] = {
		{ "memory-backend-file", true, true, "pc", NULL, NULL, "cpr-reboot", NULL },
		{ "memory-backend-memfd", true, false, "pc,accel=tcg,aux-ram-share=on", NULL, NULL,
		  "cpr-transfer", NULL },
		{ "memory-backend-shm", true, false, "aux-ram-share=yes", NULL, NULL, "cpr-transfer", NULL },
		{ "memory-backend-ram", true, false, "pc", "aux-ram-share=on", NULL, "cpr-transfer", NULL },
		{ "memory-backend-memfd", true, false, "pc,accel=tcg", NULL, NULL, NULL, "aux-ram-share=on" },
		{ "memory-backend-memfd", true, false, "aux-ram-share=on", "aux-ram-share=off", NULL, NULL,
		  "aux-ram-share=on" },
		{ "memory-backend-memfd", true, false, "pc,xaux-ram-share=on", NULL, NULL, NULL,
		  "aux-ram-share=on" },
		{ "memory-backend-memfd", false, false, "aux-ram-share=on", NULL, NULL, NULL, "private RAM" },
		{ "memory-backend-ram", false, false, "aux-ram-share=on", NULL, NULL, NULL, "private RAM" },
		{ "memory-backend-memfd", true, false, "aux-ram-share=on", NULL, long_qmp, NULL, "too long" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct hu_vm *vm = vm_new("p");
		const char *why = NULL, *mode;

		add_mem(vm, cases[i].type, cases[i].skipped ? "/dev/shm/p" : NULL, cases[i].share,
			HU_BACKING_VOLATILE, 1ULL << 30);
		vm->memdevs[0].skipped = cases[i].skipped;
		vm->copies_ram = !cases[i].skipped;
		assert_int_equal(hu_strv_push(&vm->argv, &vm->argc, "qemu-system-x86_64"), 0);
		assert_int_equal(hu_strv_push(&vm->argv, &vm->argc, "-machine"), 0);
		assert_int_equal(hu_strv_push(&vm->argv, &vm->argc, cases[i].machine), 0);
		if (cases[i].machine2) {
			assert_int_equal(hu_strv_push(&vm->argv, &vm->argc, "-M"), 0);
			assert_int_equal(hu_strv_push(&vm->argv, &vm->argc, cases[i].machine2), 0);
		}
		/* read as discover reads it */
		hu_argv_info_clear(&vm->ai);
		assert_int_equal(hu_argv_parse(vm->argv, vm->argc, &vm->ai), 0);
		free(vm->ai.qmp_path);
		vm->ai.qmp_path = strdup(cases[i].qmp ?: "/run/p.qmp");
		mode = hu_prelaunch_ram(vm, &why);
		if (cases[i].mode) {
			assert_non_null(mode);
			assert_string_equal(mode, cases[i].mode);
			assert_true(hu_prelaunch_eligible(vm, NULL));
		} else {
			assert_null(mode);
			assert_non_null(strstr(why, cases[i].why));
			assert_non_null(strstr(why, "copied"));
			assert_false(hu_prelaunch_eligible(vm, NULL));
		}
		hu_vm_free(vm);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_persistent_file_stays_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_unsurviving_shared_file_means_copy_all, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_private_ram_beside_persistent_is_copied, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_volatile_depends_on_reboot_and_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vfio_needs_agent_and_wakeup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_space_and_runstate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runas_another_user_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prelaunch_refused_under_a_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prelaunch_ram_handover, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
