/* Manifest round trip, corrupt manifests refused whole, backing classes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <linux/magic.h>
#include "hu-private.h"
#include "state-dir.h"

static struct hu_vm *make_vm(const char *name)
{
	struct hu_vm *vm = calloc(1, sizeof(*vm));
	char *argv[] = { "/usr/bin/qemu-system-x86_64",
			 "-name",
			 (char *)name,
			 "-qmp",
			 "unix:/run/x,,y.sock,server=on,wait=off",
			 "-append",
			 "pw=\"sec ret\"\n" };

	vm->ctx = ctx;
	vm->name = strdup(name);
	vm->pid = 4242;
	vm->starttime = 123456789012ULL;
	vm->exe = strdup("/usr/bin/qemu-system-x86_64");
	for (size_t i = 0; i < ARRAY_SIZE(argv); i++)
		hu_strv_push(&vm->argv, &vm->argc, argv[i]);
	vm->cwd = strdup("/var/lib/vms");
	vm->uid = 107;
	vm->gid = 110;
	vm->ai.qmp_path = strdup("/run/x,y.sock");
	vm->qemu_version = strdup("10.0.2");
	vm->runstate = strdup("paused");
	vm->in_place = true;
	vm->max_bandwidth_before = 134217728;
	vm->ram_bytes = 1ULL << 34;
	vm->backing = HU_BACKING_PERSISTENT;
	vm->memdevs = calloc(1, sizeof(*vm->memdevs));
	vm->n_memdevs = 1;
	vm->memdevs[0].id = strdup("ram0");
	vm->memdevs[0].type = strdup("memory-backend-file");
	vm->memdevs[0].mem_path = strdup("/dev/dax0.0");
	vm->memdevs[0].share = true;
	vm->memdevs[0].size = 1ULL << 34;
	vm->memdevs[0].skipped = true;
	vm->memdevs[0].digest = 0xfedcba9876543210ULL;
	vm->memdevs[0].medium = (struct hu_medium){
		.kind = HU_MEDIUM_DEVDAX,
		.device = strdup("dax0.0"),
		.ns = strdup("namespace0.0"),
		.uuid = strdup("5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69"),
		.size = 1ULL << 34,
		.mode = strdup("devdax"),
	};
	vm->disks = calloc(1, sizeof(*vm->disks));
	vm->n_disks = 1;
	vm->disks[0].path = strdup("/var/lib/vms/disk.qcow2");
	vm->disks[0].size = 10737418240ULL;
	vm->disks[0].ino = 77;
	vm->disks[0].dev = 2049;
	vm->disks[0].mtime_ns = 1764100000123456789LL;
	vm->configs = calloc(2, sizeof(*vm->configs));
	vm->n_configs = 2;
	vm->configs[0] = (struct hu_config_file){ .path = strdup("/etc/qemu/qemu.conf") };
	vm->configs[1] = (struct hu_config_file){ .path = strdup("pve-q35-4.0.cfg"),
						  .present = true,
						  .size = 3077 };
	memset(vm->configs[1].sha256, 'a', 64);
	vm->state = HU_VM_CHECKPOINTED;
	vm->state_bytes = 930000;
	vm->stopped_at_ms = 1764100000000LL;
	return vm;
}

static void test_round_trip(void **state)
{
	struct hu_manifest *m, *back;
	struct hu_vm *a, *b;
	struct stat st;
	char path[128];

	assert_int_equal(hu_manifest_new(ctx, &m), 0);
	hu_vm_list_add(&m->list, make_vm("web1"));
	hu_vm_list_add(&m->list, make_vm("db-2"));
	m->list.vms[1]->unflushed = true;
	/* A prelaunch by cpr-transfer under way: abort decides by these */
	m->list.vms[1]->pre_pid = 4242;
	m->list.vms[1]->pre_starttime = 77;
	m->list.vms[1]->pre_cpr = true;
	/* RAM in a plain file: a medium without a device is the one that may be */
	hu_medium_clear(&m->list.vms[1]->memdevs[0].medium);
	assert_int_equal(hu_manifest_set_phase(m, "checkpointed"), 0);

	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_int_equal(hu_manifest_load(ctx, &back), 0);
	assert_string_equal(back->phase, "checkpointed");
	assert_int_equal(back->list.n, 2);
	a = m->list.vms[0];
	b = back->list.vms[0];
	assert_string_equal(b->name, "web1");
	assert_int_equal(b->pid, a->pid);
	assert_int_equal(b->starttime, a->starttime);
	assert_int_equal(b->argc, a->argc);
	for (size_t i = 0; i < a->argc; i++)
		assert_string_equal(b->argv[i], a->argv[i]);
	assert_string_equal(b->ai.qmp_path, "/run/x,y.sock");
	assert_string_equal(b->cwd, "/var/lib/vms");
	assert_int_equal(b->uid, 107);
	assert_string_equal(b->runstate, "paused");
	assert_true(b->in_place);
	assert_false(b->unflushed);
	assert_true(back->list.vms[1]->unflushed);
	assert_int_equal(back->list.vms[1]->memdevs[0].medium.kind, HU_MEDIUM_FILE);
	assert_null(back->list.vms[1]->memdevs[0].medium.device);
	assert_int_equal(b->memdevs[0].digest, 0xfedcba9876543210ULL);
	assert_true(b->memdevs[0].skipped);
	assert_int_equal(b->memdevs[0].medium.kind, HU_MEDIUM_DEVDAX);
	assert_string_equal(b->memdevs[0].medium.device, "dax0.0");
	assert_string_equal(b->memdevs[0].medium.ns, "namespace0.0");
	assert_string_equal(b->memdevs[0].medium.uuid, "5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69");
	assert_string_equal(b->memdevs[0].medium.mode, "devdax");
	assert_int_equal(b->disks[0].mtime_ns, a->disks[0].mtime_ns);
	assert_int_equal(b->disks[0].size, a->disks[0].size);
	assert_int_equal(b->n_configs, 2);
	assert_string_equal(b->configs[0].path, "/etc/qemu/qemu.conf");
	assert_false(b->configs[0].present);
	assert_string_equal(b->configs[1].path, "pve-q35-4.0.cfg");
	assert_true(b->configs[1].present);
	assert_int_equal(b->configs[1].size, 3077);
	assert_string_equal(b->configs[1].sha256, a->configs[1].sha256);
	assert_int_equal(b->state, HU_VM_CHECKPOINTED);
	assert_int_equal(b->state_bytes, 930000);
	/* The state file is derived from the name, never read from the file. */
	snprintf(path, sizeof(path), "%s/web1.state", dir);
	assert_string_equal(b->state_file, path);
	assert_string_equal(hu_manifest_vm_state(back, 0), "checkpointed");
	assert_int_equal(hu_manifest_vm_downtime_ms(back, 0), -1);
	assert_int_equal(b->pre_pid, 0);
	assert_false(b->pre_cpr);
	assert_int_equal(back->list.vms[1]->pre_pid, 4242);
	assert_int_equal(back->list.vms[1]->pre_starttime, 77);
	assert_false(back->list.vms[1]->pre_incoming);
	assert_true(back->list.vms[1]->pre_cpr);
	hu_manifest_free(back);
	hu_manifest_free(m);
}

/* Save the valid manifest, replace `from` in its text by `to` (the text
 * written into *ret_text), and load it. */
static int load_edited_text(const char *from, const char *to, struct hu_manifest **ret, char **ret_text)
{
	struct hu_manifest *m;
	char path[128], *text = NULL, *bad;
	size_t len;
	FILE *f;

	assert_int_equal(hu_manifest_new(ctx, &m), 0);
	hu_vm_list_add(&m->list, make_vm("web1"));
	assert_int_equal(hu_manifest_set_phase(m, "checkpointed"), 0);
	hu_manifest_free(m);
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	assert_int_equal(hu_read_file(path, 1 << 20, &text, &len), 0);
	bad = strstr(text, from);
	assert_non_null(bad);
	f = fopen(path, "w");
	fwrite(text, 1, bad - text, f);
	fputs(to, f);
	fputs(bad + strlen(from), f);
	fclose(f);
	free(text);
	if (ret_text)
		assert_int_equal(hu_read_file(path, 1 << 20, ret_text, &len), 0);
	*ret = NULL;
	return hu_manifest_load(ctx, ret);
}

static int load_edited(const char *from, const char *to, struct hu_manifest **ret)
{
	return load_edited_text(from, to, ret, NULL);
}

/* Damage the valid manifest's JSON text and expect the load to fail
 * without touching the file. */
static void expect_refused(const char *from, const char *to, int err)
{
	struct hu_manifest *back = NULL;
	char path[128], *text = NULL, *after = NULL;

	assert_int_equal(load_edited_text(from, to, &back, &text), err);
	assert_null(back);
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	assert_int_equal(hu_read_file(path, 1 << 20, &after, NULL), 0);
	assert_string_equal(after, text);
	free(text);
	free(after);
}

static void test_corrupt_manifests(void **state)
{
	expect_refused("\"version\":4", "\"version\":99", -EPROTONOSUPPORT);
	expect_refused("\"version\":4", "\"version\":1", -EPROTONOSUPPORT); /* before the XXH3 digest */
	expect_refused("\"version\":4", "\"version\":2", -EPROTONOSUPPORT); /* before "flushed" */
	expect_refused("\"manager\":\"none\"", "\"manager\":\"xen\"", -EBADMSG);
	expect_refused("\"manager\":\"none\"", "\"manager\":\"proxmox\"", -EBADMSG); /* no object */
	expect_refused("\"manager\":\"none\"", "\"manager\":7", -EBADMSG);
	expect_refused("\"flushed\":true", "\"flushed\":1", -EBADMSG);
	expect_refused("\"name\":\"web1\"", "\"name\":\"..\\/..\\/etc\"", -EBADMSG);
	expect_refused("\"name\":\"web1\"", "\"name\":42", -EBADMSG);
	expect_refused("\"-name\"", "17", -EBADMSG);
	expect_refused("\"state\":\"checkpointed\"", "\"state\":\"teleported\"", -EBADMSG);
	expect_refused("\"exe\":\"/usr", "\"exe\":\"usr", -EBADMSG);
	expect_refused("\"pid\":4242", "\"pid\":-1", -EBADMSG);
	expect_refused("\"digest\":\"fedcba9876543210\"", "\"digest\":\"zz\"", -EBADMSG);
	expect_refused("\"vms\":[", "\"vms\":{", -EBADMSG);
	expect_refused("\"uuid\":\"5f0a3c4e", "\"uuid\":\"5f0a3c4z", -EBADMSG); /* 36 chars, not a uuid */
	expect_refused("\"device\":\"dax0.0\"", "\"device\":\"../dax0.0\"", -EBADMSG);
	/* A pmem/DAX medium without its device: early-boot used to crash on it (#15). */
	expect_refused("\"device\":\"dax0.0\"", "\"device\":null", -EBADMSG);
	expect_refused("\"device\":\"dax0.0\",", "", -EBADMSG);
	expect_refused("\"kind\":\"devdax\"", "\"kind\":\"teleported\"", -EBADMSG);
	expect_refused("\"phase\"", "\"phase\":\"x\",\"trunc", -EBADMSG);
	expect_refused("\"name\":\"web1\"", "\"name\":\"web1\\u0000x\"", -EBADMSG);
	/* the -readconfig records (#17): a digest that is not 64 hex digits, no path */
	expect_refused("\"sha256\":\"aaaa", "\"sha256\":\"Xaaa", -EBADMSG);
	expect_refused("\"sha256\":\"aaaa", "\"sha256\":\"aaa", -EBADMSG);
	expect_refused("\"path\":\"pve-q35-4.0.cfg\"", "\"path\":\"\"", -EBADMSG);
	expect_refused("\"readconfig\":[", "\"readconfig\":{", -EBADMSG);
}

/* A manifest written before the -readconfig records still loads: none. */
static void test_readconfig_optional(void **state)
{
	struct hu_manifest *m = NULL;

	assert_int_equal(load_edited("\"readconfig\":", "\"older\":", &m), 0);
	assert_int_equal(m->list.vms[0]->n_configs, 0);
	hu_manifest_free(m);
}

/* The listening paths discovery read (a -readconfig chardev's too, which the
 * argv abort re-parses does not name) come back from the manifest, checked. */
static void test_listen_paths(void **state)
{
	struct hu_manifest *m = NULL, *back = NULL;
	struct hu_vm *vm = make_vm("web1");

	hu_strv_push(&vm->ai.listen_paths, &vm->ai.n_listen_paths, "/run/from-readconfig.sock");
	assert_int_equal(hu_manifest_new(ctx, &m), 0);
	hu_vm_list_add(&m->list, vm);
	assert_int_equal(hu_manifest_set_phase(m, "checkpointed"), 0);
	hu_manifest_free(m);
	assert_int_equal(hu_manifest_load(ctx, &back), 0);
	assert_int_equal(back->list.vms[0]->ai.n_listen_paths, 1);
	assert_string_equal(back->list.vms[0]->ai.listen_paths[0], "/run/from-readconfig.sock");
	hu_manifest_free(back);
	/* none recorded (none to add, or an older manifest): the argv's own */
	assert_int_equal(load_edited("\"readconfig\":", "\"readconfig\":", &back), 0);
	assert_int_equal(back->list.vms[0]->ai.n_listen_paths, 1);
	assert_string_equal(back->list.vms[0]->ai.listen_paths[0], "/run/x,y.sock");
	hu_manifest_free(back);
	expect_refused("\"readconfig\":", "\"listen_paths\":[7],\"readconfig\":", -EBADMSG);
	expect_refused("\"readconfig\":", "\"listen_paths\":{},\"readconfig\":", -EBADMSG);
}

#define LV_OBJ(uuid, link)                                                                          \
	"\"manager\":\"libvirt\",\"libvirt\":{\"uri\":\"qemu:///system\",\"uuid\":\"" uuid          \
	"\",\"name\":\"web1\",\"id\":3,\"persistent\":true,\"autostart\":false,\"token\":\"00ff\"," \
	"\"xml\":\"<domain/>\",\"fdset\":1213595648,\"ram_links\":[{\"memdev\":\"ram0\",\"was\":"   \
	"\"/var/lib/libvirt/qemu/ram/3-web1/pc.ram\",\"link\":\"" link "\"}]}"

/* Version 3 (no manager) still loads; version 4's libvirt object is checked. */
static void test_manager_versions(void **state)
{
	struct hu_manifest *m = NULL;

	assert_int_equal(load_edited("\"version\":4", "\"version\":3", &m), 0);
	assert_string_equal(hu_manager_name(m->list.vms[0]), "none");
	hu_manifest_free(m);
#ifdef HU_WITH_LIBVIRT
	assert_int_equal(load_edited("\"manager\":\"none\"",
				     LV_OBJ("4f9660bc-1111-4222-8333-444455556666",
					    "/var/lib/libvirt/qemu/ram/.host-upgrade/x/pc.ram"),
				     &m),
			 0);
	assert_string_equal(hu_manager_name(m->list.vms[0]), "libvirt");
	assert_string_equal(hu_manager_ram_path(m->list.vms[0], 0),
			    "/var/lib/libvirt/qemu/ram/.host-upgrade/x/pc.ram");
	hu_manifest_free(m);
	assert_int_equal(load_edited("\"manager\":\"none\"",
				     LV_OBJ("4f9660bc-1111-4222-8333-44445555666z", "/x/pc.ram"), &m),
			 -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"",
				     LV_OBJ("4f9660bc-1111-4222-8333-444455556666", "pc.ram"), &m),
			 -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"",
				     LV_OBJ("4f9660bc-1111-4222-8333-444455556666", "/a/../../etc/pc.ram"),
				     &m),
			 -EBADMSG);
	/* A checkpointed libvirt VM without its XML cannot be restored: refused. */
	assert_int_equal(
		load_edited(
			"\"manager\":\"none\"",
			"\"manager\":\"libvirt\",\"libvirt\":{\"uri\":\"qemu:///system\",\"uuid\":"
			"\"4f9660bc-1111-4222-8333-444455556666\",\"name\":\"web1\",\"id\":3,\"persistent\":true,"
			"\"autostart\":false,\"token\":null,\"xml\":null,\"ram_links\":[]}",
			&m),
		-EBADMSG);
#endif
}

#define PVE_OBJ(vmid, aside) \
	"\"manager\":\"proxmox\",\"proxmox\":{\"vmid\":" vmid ",\"cleanup_flag_aside\":" aside "}"

/* A Proxmox VM's object: its VMID in Proxmox's range, written back as read. */
static void test_proxmox_object(void **state)
{
	struct hu_manifest *m = NULL;
	json_object *o = NULL, *vm0, *p, *v;

	assert_int_equal(load_edited("\"manager\":\"none\"", PVE_OBJ("100", "true"), &m), 0);
	assert_string_equal(hu_manager_name(m->list.vms[0]), "proxmox");
	assert_int_equal(hu_vm_get_vmid(m->list.vms[0]), 100);
	assert_int_equal(hu_manifest_to_json(m, &o), 0);
	vm0 = json_object_array_get_idx(json_object_object_get(o, "vms"), 0);
	assert_true(json_object_object_get_ex(vm0, "proxmox", &p));
	assert_true(json_object_object_get_ex(p, "vmid", &v));
	assert_int_equal(json_object_get_int64(v), 100);
	assert_true(json_object_object_get_ex(p, "cleanup_flag_aside", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(o);
	hu_manifest_free(m);
	assert_int_equal(load_edited("\"manager\":\"none\"", PVE_OBJ("99", "true"), &m), -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"", PVE_OBJ("1000000000", "true"), &m), -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"", PVE_OBJ("\"100\"", "true"), &m), -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"", PVE_OBJ("100", "1"), &m), -EBADMSG);
	assert_int_equal(load_edited("\"manager\":\"none\"", "\"manager\":\"proxmox\",\"proxmox\":[]", &m),
			 -EBADMSG);
	(void)state;
}

static void test_missing_is_enoent(void **state)
{
	struct hu_manifest *m = NULL;

	assert_int_equal(hu_manifest_load(ctx, &m), -ENOENT);
}

static void test_classify(void **state)
{
	enum hu_backing b;
	char *why = NULL, shm[] = "/dev/shm/hu-test-XXXXXX", disk[80];
	int fd;

	assert_int_equal(hu_classify_fs(TMPFS_MAGIC, &b), 0);
	assert_int_equal(b, HU_BACKING_VOLATILE);
	assert_int_equal(hu_classify_fs(0x958458f6 /* hugetlbfs */, &b), 0);
	assert_int_equal(b, HU_BACKING_VOLATILE);
	assert_int_equal(hu_classify_fs(EXT4_SUPER_MAGIC, &b), 0);
	assert_int_equal(b, HU_BACKING_PERSISTENT);
	assert_int_equal(hu_classify_fs(PROC_SUPER_MAGIC, &b), -EINVAL);

	fd = mkstemp(shm);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(hu_classify_path(shm, true, &b, &why), 0);
	assert_int_equal(b, HU_BACKING_VOLATILE);
	free(why);
	assert_int_equal(hu_classify_path(shm, false, &b, &why), 0);
	assert_int_equal(b, HU_BACKING_PRIVATE);
	free(why);
	unlink(shm);

	snprintf(disk, sizeof(disk), "%s/ram", dir);
	fd = open(disk, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(hu_classify_path(disk, true, &b, &why), 0);
	assert_int_equal(b, HU_BACKING_PERSISTENT);
	free(why);
	assert_int_equal(hu_classify_path(dir, true, &b, &why), 0);
	assert_int_equal(b, HU_BACKING_PRIVATE); /* QEMU unlinks its temp file */
	free(why);
	assert_int_equal(hu_classify_path("/dev/null", true, &b, &why), 0);
	assert_int_equal(b, HU_BACKING_PRIVATE); /* a char device, not DAX */
	free(why);
	assert_int_equal(hu_classify_path("/nonexistent/ram", true, &b, &why), -ENOENT);
}

static void test_ram_digest_detects_change(void **state)
{
	char path[80];
	uint64_t d1, d2, d3;
	int fd;
	char page[4096];

	snprintf(path, sizeof(path), "%s/ram", dir);
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 << 20), 0);
	memset(page, 0xab, sizeof(page));
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), sizeof(page));
	assert_int_equal(hu_ram_digest(path, 8 << 20, &d1), 0);
	assert_int_equal(hu_ram_digest(path, 8 << 20, &d2), 0);
	assert_int_equal(d1, d2);
	/* The first page is always sampled: wiping it must show. */
	memset(page, 0, sizeof(page));
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), sizeof(page));
	assert_int_equal(hu_ram_digest(path, 8 << 20, &d3), 0);
	assert_int_not_equal(d1, d3);
	/* A truncated file did not survive. */
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	assert_int_equal(hu_ram_digest(path, 8 << 20, &d3), -ERANGE);
	close(fd);
}

/* What a local user may put where a file is read (#15): a FIFO neither
 * blocks a read nor the RAM digest; a symlink in the state dir is not
 * followed; a char device that is not device DAX is no RAM medium. */
static void test_no_fifo_no_symlink(void **state)
{
	char fifo[80], file[80], link[80], *text = NULL;
	uint64_t d;
	int fd;

	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(60); /* a hang guard: a FIFO without a writer blocks a plain open */
	assert_int_equal(hu_read_file(fifo, 4096, &text, NULL), -EBADFD);
	assert_int_equal(hu_read_state_file(AT_FDCWD, fifo, 4096, &text, NULL), -EBADFD);
	assert_int_equal(hu_ram_digest(fifo, 8 << 20, &d), -EBADFD);
	alarm(0);
	assert_null(text);
	assert_int_equal(hu_ram_digest("/dev/null", 8 << 20, &d), -EBADFD);

	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink(file, link), 0);
	assert_int_equal(hu_read_state_file(AT_FDCWD, link, 4096, &text, NULL), -ELOOP);
	assert_null(text);
	assert_int_equal(hu_read_file(link, 4096, &text, NULL), 0);
	assert_string_equal(text, "x");
	free(text);
}

/* Times from outside (#15): a disk's mtime, which its owner sets, past 2262
 * or before 1677, and whatever time a guest agent reports, never overflow. */
static void test_time_bounds(void **state)
{
	struct timespec ts = { .tv_sec = 1764100000, .tv_nsec = 123456789 };

	assert_int_equal(hu_timespec_ns(&ts), 1764100000123456789LL);
	ts = (struct timespec){ .tv_sec = 10000000000LL, .tv_nsec = 5 }; /* year 2286 */
	assert_int_equal(hu_timespec_ns(&ts), INT64_MAX);
	ts.tv_sec = INT64_MAX / 1000000000; /* the last second that fits, its nanoseconds not */
	ts.tv_nsec = 999999999;
	assert_int_equal(hu_timespec_ns(&ts), INT64_MAX);
	ts = (struct timespec){ .tv_sec = -10000000000LL, .tv_nsec = 0 };
	assert_int_equal(hu_timespec_ns(&ts), INT64_MIN);

	assert_int_equal(hu_clock_step_ms(2000000000LL, 1000000000LL), 1000);
	assert_int_equal(hu_clock_step_ms(1000000000LL, 2000000000LL), -1000);
	assert_int_equal(hu_clock_step_ms(1764100000000000000LL, INT64_MIN), INT64_MAX / 1000000);
	assert_int_equal(hu_clock_step_ms(1764100000000000000LL, INT64_MAX),
			 (1764100000000000000LL - INT64_MAX) / 1000000);
	assert_int_equal(hu_clock_step_ms(-2, INT64_MAX), INT64_MIN / 1000000);
}

/* tests/fixtures/status/manifest.json: a format-3 manifest checked into the tree (a VM in
 * each state; `status` of it is tests/bats/24-status-golden.bats). What a manifest written
 * by an earlier build says must keep reading the same. */
#ifndef HU_TEST_FIXTURES
#error "the Makefile passes -DHU_TEST_FIXTURES=<tests/fixtures>"
#endif
static void test_fixture_v3(void **state)
{
	static const struct {
		const char *name, *status;
		enum hu_vm_state state;
		pid_t pid;
		int64_t downtime_ms;
		const char *qmp_path;
	} want[] = {
		{ "web-01", "running", HU_VM_RUNNING, 2101, -1, "/run/vms/web-01.qmp" },
		{ "web-02", "running", HU_VM_RESUMED, 2102, 187, "/run/vms/web-02.sock" },
		{ "db-01", "checkpointed", HU_VM_CHECKPOINTED, 2103, -1, "/run/vms/db-01.qmp" },
		{ "db-02", "checkpointed", HU_VM_SAVED, 2104, -1, "/run/vms/db-02.qmp" },
		{ "app-01", "restored", HU_VM_RESTORED, 3101, 13411, "/run/vms/app-01.sock" },
		{ "ci-runner-with-a-long-name", "failed", HU_VM_FAILED, 2106, -1,
		  "/run/vms/ci-runner-with-a-long-name.qmp" },
	};
	struct hu_manifest *m = NULL;
	struct hu_vm *vm;
	char path[128];
	int64_t step;

	assert_int_equal(hu_manifest_load_dir(ctx, HU_TEST_FIXTURES "/status", &m, NULL), 0);
	assert_string_equal(hu_manifest_get_phase(m), "restore-failed");
	assert_string_equal(hu_manifest_get_target_kernel(m), "/boot/vmlinuz-6.12.57+deb12-amd64");
	assert_string_equal(m->boot_id, "6f1d2c3b-4a59-4e87-b6d5-c4b3a2918f7e");
	assert_int_equal(m->created_ms, 1764583200000LL);
	assert_int_equal(hu_manifest_count(m), ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		vm = m->list.vms[i];
		assert_string_equal(hu_manifest_vm_name(m, i), want[i].name);
		assert_string_equal(hu_manifest_vm_state(m, i), want[i].status);
		assert_int_equal(vm->state, want[i].state);
		assert_int_equal(hu_manifest_vm_pid(m, i), want[i].pid);
		assert_int_equal(hu_manifest_vm_downtime_ms(m, i), want[i].downtime_ms);
		assert_string_equal(vm->ai.qmp_path, want[i].qmp_path);
		/* the name argv says is the record's name; the state file is derived from it */
		assert_string_equal(vm->ai.name, want[i].name);
		snprintf(path, sizeof(path), "%s/%s.state", dir, want[i].name);
		assert_string_equal(vm->state_file, path);
		assert_string_equal(vm->exe, "/usr/bin/qemu-system-x86_64");
		assert_string_equal(vm->argv[0], vm->exe);
		assert_true(vm->ai.daemonize);
		assert_string_equal(vm->qemu_version, "10.0.2");
		assert_false(vm->unflushed);
		assert_int_equal(vm->ram_bytes, 4294967296ULL);
		assert_int_equal(vm->n_memdevs, 1);
		assert_int_equal(vm->n_disks, 1);
		assert_int_equal(vm->disks[0].mtime_ns, 1764583100123456789LL);
		assert_int_equal(vm->disks[0].size, 21474836480ULL);
		assert_int_equal(vm->memdevs[0].digest, 0x0123456789abcdefULL ^ (uint64_t)want[i].pid);
		assert_int_equal(hu_manifest_vm_clock_step_ms(m, i, &step), i == 4);
		if (i != 5)
			assert_null(hu_manifest_vm_error(m, i));
	}
	/* web-01: RAM in place on devdax */
	vm = m->list.vms[0];
	assert_true(vm->in_place);
	assert_int_equal(vm->backing, HU_BACKING_PERSISTENT);
	assert_true(vm->memdevs[0].skipped);
	assert_int_equal(vm->memdevs[0].medium.kind, HU_MEDIUM_DEVDAX);
	assert_string_equal(vm->memdevs[0].medium.device, "dax0.0");
	assert_string_equal(vm->memdevs[0].medium.ns, "namespace0.0");
	assert_string_equal(vm->memdevs[0].medium.uuid, "5f0a3c4e-2b1d-4c8e-9f6a-1e2d3c4b5a69");
	assert_string_equal(vm->runstate, "running");
	/* web-02: on an fsdax mount, QMP through -chardev socket + -mon */
	vm = m->list.vms[1];
	assert_int_equal(vm->memdevs[0].medium.kind, HU_MEDIUM_FSDAX);
	assert_string_equal(vm->memdevs[0].mem_path, "/mnt/pmem/web-02.ram");
	assert_int_equal(vm->memdevs[0].medium.size, 8589934592ULL);
	assert_int_equal(vm->state_bytes, 931840);
	/* db-01: paused by its operator before the checkpoint */
	assert_string_equal(m->list.vms[2]->runstate, "paused");
	/* db-02: volatile RAM, copied into its state file */
	vm = m->list.vms[3];
	assert_false(vm->in_place);
	assert_int_equal(vm->backing, HU_BACKING_VOLATILE);
	assert_false(vm->memdevs[0].skipped);
	assert_int_equal(vm->memdevs[0].backing, HU_BACKING_VOLATILE);
	assert_int_equal(vm->state_bytes, 4295913472ULL);
	/* app-01: suspended through its agent, clock stepped back after the restore */
	vm = m->list.vms[4];
	assert_true(vm->suspend);
	assert_true(vm->suspended_by_us);
	assert_string_equal(vm->ai.qga_path, "/run/vms/app-01.qga");
	assert_true(hu_manifest_vm_clock_step_ms(m, 4, &step));
	assert_int_equal(step, -13);
	assert_int_equal(vm->running_at_ms - vm->stopped_at_ms, 13411);
	/* ci-runner-with-a-long-name: failed, and says why */
	assert_string_equal(hu_manifest_vm_error(m, 5),
			    "disk /var/lib/vms/ci-runner-with-a-long-name.qcow2 changed since the checkpoint "
			    "(size 21474836480 -> 21475885056): not resumed");
	hu_manifest_free(m);
}

/* Parallel workers that each change their own VM unlocked (restore's converge, prelaunch):
 * a save by one worker writes every other VM as its worker last recorded it, never the
 * fields that worker is changing meanwhile (a use-after-free once one of them is freed). */
struct par_job {
	struct hu_manifest *m;
	pthread_barrier_t changed, saved;
	int saved_r, recorded_r;
	char *seen_error; /* web1's error as db-2's save wrote it */
	pid_t seen_pid;
	char *seen_state; /* db-2's own record in that save */
};

static void par_worker_fn(size_t i, void *data)
{
	struct par_job *job = data;
	struct hu_vm *vm = job->m->list.vms[i];
	struct hu_manifest *back = NULL;

	if (i == 0) {
		/* Changed, not recorded yet: no save may read these. */
		free(vm->error);
		vm->error = strdup("live, not recorded");
		vm->pid = 1;
		pthread_barrier_wait(&job->changed);
		pthread_barrier_wait(&job->saved);
		vm->state = HU_VM_RESTORED;
		job->recorded_r = hu_manifest_save_vm(job->m, vm);
		return;
	}
	pthread_barrier_wait(&job->changed);
	vm->state = HU_VM_FAILED;
	job->saved_r = hu_manifest_save_vm(job->m, vm);
	if (job->saved_r >= 0 && hu_manifest_load(ctx, &back) >= 0) {
		job->seen_error = back->list.vms[0]->error ? strdup(back->list.vms[0]->error) : NULL;
		job->seen_pid = back->list.vms[0]->pid;
		job->seen_state = strdup(hu_vm_state_to_string(back->list.vms[1]->state));
		hu_manifest_free(back);
	}
	pthread_barrier_wait(&job->saved);
}

static void test_parallel_records(void **state)
{
	struct par_job job = {};
	struct hu_manifest *back;

	assert_int_equal(hu_manifest_new(ctx, &job.m), 0);
	hu_vm_list_add(&job.m->list, make_vm("web1"));
	hu_vm_list_add(&job.m->list, make_vm("db-2"));
	job.m->list.vms[0]->error = strdup("recorded");
	pthread_barrier_init(&job.changed, NULL, 2);
	pthread_barrier_init(&job.saved, NULL, 2);
	/* Two jobs for two VMs: both workers run at once (each waits for the other). */
	hu_manifest_parallel_for(job.m, 2, 2, par_worker_fn, &job);
	assert_int_equal(job.saved_r, 0);
	assert_int_equal(job.recorded_r, 0);
	assert_non_null(job.seen_state);
	assert_string_equal(job.seen_state, "failed");
	assert_non_null(job.seen_error);
	assert_string_equal(job.seen_error, "recorded");
	assert_int_equal(job.seen_pid, 4242);
	/* Done: no snapshot is left, and what each worker recorded is on disk. */
	assert_null(job.m->list.vms[0]->snapshot);
	assert_null(job.m->list.vms[1]->snapshot);
	assert_int_equal(hu_manifest_load(ctx, &back), 0);
	assert_string_equal(back->list.vms[0]->error, "live, not recorded");
	assert_int_equal(back->list.vms[0]->pid, 1);
	assert_int_equal(back->list.vms[0]->state, HU_VM_RESTORED);
	assert_int_equal(back->list.vms[1]->state, HU_VM_FAILED);
	hu_manifest_free(back);
	free(job.seen_error);
	free(job.seen_state);
	pthread_barrier_destroy(&job.changed);
	pthread_barrier_destroy(&job.saved);
	hu_manifest_free(job.m);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_manifests, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_listen_paths, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_readconfig_optional, state_dir_setup,
						state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_manager_versions, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_proxmox_object, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_missing_is_enoent, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_classify, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_ram_digest_detects_change, state_dir_setup,
						state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_no_fifo_no_symlink, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_time_bounds, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_fixture_v3, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_parallel_records, state_dir_setup, state_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
