/* Kernel staging groundwork: bzImage header, command line composition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include "hu-private.h"

static void test_bzimage_version_of_installed_kernel(void **state)
{
	DIR *d = opendir("/boot");
	struct dirent *de;
	char path[300], v[128];
	int found = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "vmlinuz-", 8) != 0)
			continue;
		snprintf(path, sizeof(path), "/boot/%s", de->d_name);
		assert_int_equal(hu_bzimage_version(path, v, sizeof(v)), 0);
		/* The header agrees with the file name Debian gave it. */
		assert_string_equal(v, de->d_name + 8);
		found++;
	}
	closedir(d);
	if (!found)
		skip(); /* linux-image-amd64 is installed by scripts/install-deps */
}

static void test_bzimage_rejects_other_files(void **state)
{
	char v[64], path[] = "/tmp/hu-test-bz.XXXXXX";
	unsigned char buf[0x400] = { 0 };
	int fd = mkstemp(path);

	assert_int_equal(hu_bzimage_version("/etc/hostname", v, sizeof(v)), -ENOEXEC);
	assert_int_equal(hu_bzimage_version("/nonexistent", v, sizeof(v)), -ENOENT);
	/* A header whose version pointer runs off the file. */
	memcpy(buf + 0x202, "HdrS", 4);
	buf[0x20e] = 0xff;
	buf[0x20f] = 0x7f;
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	close(fd);
	assert_int_equal(hu_bzimage_version(path, v, sizeof(v)), -ENOEXEC);
	unlink(path);
}

static void test_cmdline_keeps_memmap(void **state)
{
	const char *cur = "BOOT_IMAGE=/vmlinuz root=/dev/vda rw memmap=256M!1G nokaslr console=ttyS0";
	char *out = NULL, *missing = NULL;

	/* Default: the current line plus the marker, once. */
	assert_int_equal(hu_cmdline_compose(cur, NULL, "hu.restore=1", &out, NULL), 0);
	assert_string_equal(
		out,
		"BOOT_IMAGE=/vmlinuz root=/dev/vda rw memmap=256M!1G nokaslr console=ttyS0 hu.restore=1");
	free(out);
	assert_int_equal(hu_cmdline_compose(cur, "root=/dev/vda memmap=256M!1G nokaslr hu.restore=1",
					    "hu.restore=1", &out, NULL),
			 0);
	assert_string_equal(out, "root=/dev/vda memmap=256M!1G nokaslr hu.restore=1");
	free(out);
	/* Dropping the pmem region, or nokaslr next to it, is refused by name. */
	assert_int_equal(hu_cmdline_compose(cur, "root=/dev/vda nokaslr", "m", &out, &missing), -EINVAL);
	assert_string_equal(missing, "memmap=256M!1G");
	free(missing);
	assert_int_equal(hu_cmdline_compose(cur, "root=/dev/vda memmap=256M!1G", "m", &out, &missing),
			 -EINVAL);
	assert_string_equal(missing, "nokaslr");
	free(missing);
	/* A different region is not the same region. */
	assert_int_equal(hu_cmdline_compose(cur, "memmap=256M!2G nokaslr", "m", &out, &missing), -EINVAL);
	free(missing);
}

static void test_cmdline_without_pmem(void **state)
{
	char *out = NULL;

	/* nokaslr only matters with a legacy pmem region. */
	assert_int_equal(hu_cmdline_compose("root=/dev/sda1 nokaslr quiet\n", "root=/dev/sda1",
					    "hu.restore=1", &out, NULL),
			 0);
	assert_string_equal(out, "root=/dev/sda1 hu.restore=1");
	free(out);
	/* memmap= without '!' (reserved, not pmem) is not a RAM parameter. */
	assert_int_equal(hu_cmdline_compose("memmap=64M$1G", "quiet", NULL, &out, NULL), 0);
	assert_string_equal(out, "quiet");
	free(out);
	/* Quoted values stay one word. */
	assert_int_equal(hu_cmdline_compose("a=\"x y\" memmap=1G!4G", "memmap=1G!4G b=\"q r\"",
					    "hu.restore=1", &out, NULL),
			 0);
	assert_string_equal(out, "memmap=1G!4G b=\"q r\" hu.restore=1");
	free(out);
}

/* The kernel's reading of a command line, not ours (found by tests/fuzz): a
 * region it applies is kept, a region it does not apply does not count as
 * kept, and the marker is a kernel parameter of its own. */
static void test_cmdline_as_the_kernel_reads_it(void **state)
{
	char *out = NULL, *missing = NULL;

	/* The kernel splits at \r (and \v, \f, 0xa0) too: the region is a word of its own. */
	assert_int_equal(hu_cmdline_compose("quiet\rmemmap=256M!1G", "quiet", "m", &out, &missing), -EINVAL);
	assert_string_equal(missing, "memmap=256M!1G");
	free(missing);
	/* A quoted region is the same region to the kernel, written either way. */
	assert_int_equal(
		hu_cmdline_compose("root=/dev/vda \"memmap=256M!1G\"", "root=/dev/vda", "m", &out, &missing),
		-EINVAL);
	assert_string_equal(missing, "\"memmap=256M!1G\"");
	free(missing);
	assert_int_equal(
		hu_cmdline_compose("memmap=256M!1G nokaslr", "memmap=\"256M!1G\" nokaslr", "m", &out, NULL),
		0);
	assert_string_equal(out, "memmap=\"256M!1G\" nokaslr m");
	free(out);
	/* After "--" it is init's argument, not the kernel's region. */
	assert_int_equal(hu_cmdline_compose("memmap=256M!1G nokaslr", "nokaslr -- memmap=256M!1G", "m", &out,
					    &missing),
			 -EINVAL);
	assert_string_equal(missing, "memmap=256M!1G");
	free(missing);
	/* The marker goes before init's arguments. */
	assert_int_equal(hu_cmdline_compose("root=/dev/vda memmap=256M!1G nokaslr -- single", NULL,
					    "hu.restore=1", &out, NULL),
			 0);
	assert_string_equal(out, "root=/dev/vda memmap=256M!1G nokaslr hu.restore=1 -- single");
	free(out);
	/* Appended after an unterminated quote it would be part of dyndbg's value: refused. */
	assert_int_equal(hu_cmdline_compose("memmap=256M!1G nokaslr dyndbg=\"file x +p", NULL, "hu.restore=1",
					    &out, NULL),
			 -EBADMSG);
}

/* A module tree made here: one real module file, one built-in, depmod'ed. */
static void test_modules_missing_in_fake_tree(void **state)
{
	char root[] = "/tmp/hu-test-mods.XXXXXX", cmd[4096], moddir[128];
	char *needed[] = { "kvm", "libnvdimm", "kvm_intel", "vfio-pci" };
	char **missing = NULL;
	size_t n = 0;
	const char *src = NULL;
	static const char *const candidates[] = {
		"/lib/modules/6.1.0-56-amd64/kernel/arch/x86/kvm/kvm.ko",
	};
	FILE *f;

	assert_non_null(mkdtemp(root));
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++)
		if (access(candidates[i], R_OK) == 0)
			src = candidates[i];
	if (!src) {
		/* Any kvm.ko of an installed kernel will do. */
		f = popen("ls /lib/modules/*/kernel/arch/x86/kvm/kvm.ko 2>/dev/null | head -n1", "r");
		static char line[512];
		if (f && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			src = line;
		}
		if (f)
			pclose(f);
	}
	if (!src)
		skip(); /* no kernel modules installed: linux-image-amd64 brings them */
	snprintf(moddir, sizeof(moddir), "%s/lib/modules/9.9.9-test", root);
	snprintf(cmd, sizeof(cmd),
		 "set -e; mkdir -p %s/kernel/arch/x86/kvm; cp %s %s/kernel/arch/x86/kvm/;"
		 "echo kernel/drivers/nvdimm/libnvdimm.ko > %s/modules.builtin;"
		 "touch %s/modules.order; depmod -b %s 9.9.9-test 2>/dev/null",
		 moddir, src, moddir, moddir, moddir, root);
	assert_int_equal(system(cmd), 0);

	assert_int_equal(hu_modules_missing(moddir, needed, 4, &missing, &n), 0);
	/* kvm is a module there, libnvdimm built in; the other two are absent. */
	assert_int_equal(n, 2);
	assert_string_equal(missing[0], "kvm_intel");
	assert_string_equal(missing[1], "vfio-pci");
	hu_strv_free(missing, n);
	assert_int_equal(hu_modules_missing("/nonexistent/9.9", needed, 1, &missing, &n), -ENOENT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

static void test_modules_needed_from_fake_sysfs(void **state)
{
	char root[] = "/tmp/hu-test-sys.XXXXXX", cmd[512];
	struct hu_ctx *ctx;
	struct hu_vm vm = {};
	struct hu_vm *vms[] = { &vm };
	struct hu_vm_list list = { .vms = vms, .n = 1 };
	char **needed = NULL;
	size_t n = 0;

	assert_non_null(mkdtemp(root));
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/module/kvm %s/module/nd_pmem %s/module/ext4", root, root,
		 root);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(hu_new(&ctx), 0);
	assert_int_equal(hu_set_sys_root(ctx, root), 0);
	vm.ai.has_vfio = true;
	assert_int_equal(hu_modules_needed(ctx, &list, &needed, &n), 0);
	/* Loaded and relevant, plus vfio_pci for the VFIO VM; ext4 is not ours. */
	assert_int_equal(n, 3);
	assert_string_equal(needed[0], "kvm");
	assert_string_equal(needed[1], "nd_pmem");
	assert_string_equal(needed[2], "vfio_pci");
	hu_strv_free(needed, n);
	hu_unref(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bzimage_version_of_installed_kernel),
		cmocka_unit_test(test_bzimage_rejects_other_files),
		cmocka_unit_test(test_cmdline_keeps_memmap),
		cmocka_unit_test(test_cmdline_without_pmem),
		cmocka_unit_test(test_cmdline_as_the_kernel_reads_it),
		cmocka_unit_test(test_modules_missing_in_fake_tree),
		cmocka_unit_test(test_modules_needed_from_fake_sysfs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
