/* Which QEMU is Proxmox VM N (its argv by Proxmox's own rules), and what plan
 * blocks for it, against a Proxmox tree under HU_PROXMOX_ROOT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "hu-private.h"

static struct hu_ctx *ctx;
static char root[] = "/tmp/hu-test-pve-XXXXXX";

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", root, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	char d[512];

	(void)state;
	strcpy(root, "/tmp/hu-test-pve-XXXXXX"); /* mkdtemp filled it in last time */
	assert_non_null(mkdtemp(root));
	snprintf(d, sizeof(d), "%s/etc/pve/qemu-server", root);
	assert_int_equal(hu_mkdir_p(d, 0755), 0);
	snprintf(d, sizeof(d), "%s/etc/pve/ha", root);
	assert_int_equal(hu_mkdir_p(d, 0755), 0);
	snprintf(d, sizeof(d), "%s/var/run/qemu-server", root);
	assert_int_equal(hu_mkdir_p(d, 0755), 0);
	put("/etc/pve/qemu-server/100.conf", "memory: 128\nname: web\n");
	setenv("HU_PROXMOX_ROOT", root, 1);
	return hu_new(&ctx);
}

static int teardown(void **state)
{
	char cmd[600];

	(void)state;
	hu_unref(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	unsetenv("HU_PROXMOX_ROOT");
	return 0;
}

/* A VM from argv[0], its -pidfile (under the root; "!PATH": PATH itself)
 * and an optional -id, claimed as discover would. */
static struct hu_vm *vm_of(const char *argv0, const char *pidfile_rel, const char *id)
{
	struct hu_vm *vm = calloc(1, sizeof(*vm));
	char pidfile[512];
	size_t n = 0;

	snprintf(pidfile, sizeof(pidfile), "%s%s", pidfile_rel[0] == '!' ? "" : root,
		 pidfile_rel + (pidfile_rel[0] == '!'));
	vm->ctx = ctx;
	vm->name = strdup("web");
	vm->argv = calloc(8, sizeof(char *));
	vm->argv[n++] = strdup(argv0);
	vm->argv[n++] = strdup("-pidfile");
	vm->argv[n++] = strdup(pidfile);
	if (id) {
		vm->argv[n++] = strdup("-id");
		vm->argv[n++] = strdup(id);
	}
	vm->argc = n;
	assert_int_equal(hu_argv_parse(vm->argv, vm->argc, &vm->ai), 0);
	hu_manager_claim(vm);
	return vm;
}

static unsigned claimed(const char *argv0, const char *pidfile_rel)
{
	struct hu_vm *vm = vm_of(argv0, pidfile_rel, NULL);
	unsigned vmid = hu_vm_get_vmid(vm);

	assert_int_equal(vmid ? 0 : 1, streq(hu_manager_name(vm), "proxmox") ? 0 : 1);
	hu_vm_free(vm);
	return vmid;
}

static void test_claim(void **state)
{
	(void)state;
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/100.pid"), 100);
	assert_int_equal(claimed("/usr/bin/qemu-system-x86_64", "/var/run/qemu-server/100.pid"), 100);
	assert_int_equal(claimed("kvm", "/var/run/qemu-server/100.pid"), 100);
	/* Proxmox's own rule for argv[0]: ends in kvm, or qemu-SOMETHING */
	assert_int_equal(claimed("/usr/bin/kvm2", "/var/run/qemu-server/100.pid"), 0);
	assert_int_equal(claimed("/usr/bin/qemu-", "/var/run/qemu-server/100.pid"), 0);
	/* the -pidfile exactly as qm writes it, a VMID in Proxmox's range */
	assert_int_equal(claimed("/usr/bin/kvm", "/run/qemu-server/100.pid"), 0);
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/0100.pid"), 0);
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/100.pid.x"), 0);
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/100.pidx"), 0);
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/sub/100.pid"), 0);
	assert_int_equal(claimed("/usr/bin/kvm", "!/var/run/qemu-server/100.pid"), 0); /* outside the root */
	/* no config on this node: not Proxmox's */
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/101.pid"), 0);
	put("/etc/pve/qemu-server/99.conf", "");
	assert_int_equal(claimed("/usr/bin/kvm", "/var/run/qemu-server/99.pid"), 0);
}

static void test_id_disagrees(void **state)
{
	struct hu_vm *vm = vm_of("/usr/bin/kvm", "/var/run/qemu-server/100.pid", "100");

	(void)state;
	assert_int_equal(vm->n_blockers, 0);
	hu_vm_free(vm);
	vm = vm_of("/usr/bin/kvm", "/var/run/qemu-server/100.pid", "101");
	assert_int_equal(hu_vm_get_vmid(vm), 100);
	assert_int_equal(vm->n_blockers, 1);
	assert_non_null(strstr(vm->blockers[0], "-id 101 disagrees"));
	hu_vm_free(vm);
}

/* Blockers plan adds for the config text `conf`, as a count and the first. */
static size_t plan_blockers(const char *conf, const char *want)
{
	struct hu_vm *vm;
	size_t n;

	put("/etc/pve/qemu-server/100.conf", conf);
	vm = vm_of("/usr/bin/kvm", "/var/run/qemu-server/100.pid", NULL);
	assert_int_equal(hu_vm_get_vmid(vm), 100);
	vm->mgr->plan(vm, NULL);
	n = vm->n_blockers;
	if (want) {
		assert_true(n > 0);
		if (!strstr(vm->blockers[0], want))
			fail_msg("blocker '%s' does not say '%s'", vm->blockers[0], want);
	}
	hu_vm_free(vm);
	return n;
}

static void test_plan_blockers(void **state)
{
	(void)state;
	assert_int_equal(plan_blockers("memory: 128\nname: web\n", NULL), 0);
	assert_int_equal(plan_blockers("memory: 128\nlock: backup\n", "config lock 'backup' is set"), 1);
	/* a lock of a snapshot section is not the VM's */
	assert_int_equal(plan_blockers("memory: 128\n[snap1]\nlock: rollback\n", NULL), 0);
	/* a key that only starts like one */
	assert_int_equal(plan_blockers("memory: 128\nlockx: 1\nhostpcix: 1\n", NULL), 0);
	assert_int_equal(plan_blockers("hostpci0: 0000:01:00.0\n", "PCI passthrough"), 1);
	assert_int_equal(plan_blockers("tpmstate0: local:vm-100-disk-1\n", "swtpm"), 1);
	assert_int_equal(plan_blockers("virtiofs1: dirid=x\n", "virtiofsd"), 1);
	put("/var/run/qemu-server/100.reboot", "");
	assert_int_equal(plan_blockers("memory: 128\n", "qm reboot is pending"), 1);
	{
		char p[512];

		snprintf(p, sizeof(p), "%s/var/run/qemu-server/100.reboot", root);
		assert_int_equal(unlink(p), 0);
	}
	put("/etc/pve/ha/resources.cfg", "vm: 1000\n\tstate started\n\nct: 100\n");
	assert_int_equal(plan_blockers("memory: 128\n", NULL), 0);
	put("/etc/pve/ha/resources.cfg", "vm: 1000\n\tstate started\n\nvm: 100\n\tstate started\n");
	assert_int_equal(plan_blockers("memory: 128\n", "HA resource"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_claim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_id_disagrees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_blockers, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
