/* libvirt's prepare hook (hu_libvirt_hook): nothing pending → yes; a checkpointed domain →
 * no, unless the XML carries the marker's token, and then its saved RAM is linked into the
 * new per-start folder; untrusted XML and markers fail closed. No libvirt needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include "hu-private.h"
#include "state-dir.h"

#define UUID "4f9660bc-1111-4222-8333-444455556666"

static int hook(const char *xml, char **msg)
{
	*msg = NULL;
	return hu_libvirt_hook(ctx, "web1", xml, strlen(xml), msg);
}

#ifdef HU_WITH_LIBVIRT
static const char *domain_xml(long id, const char *token)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf),
		 "<domain type='qemu' id='%ld'><name>web1</name><uuid>" UUID "</uuid>"
		 "<metadata><hu:restore xmlns:hu='urn:x-host-upgrade:restore:1' token='%s'/></metadata>"
		 "<devices/></domain>",
		 id, token);
	return buf;
}

/* A checkpoint as libvirt.c leaves it: RAM in <base>/1-web1/pc.ram (gone with its
 * folder), our link in <base>/.host-upgrade/UUID/pc.ram, the marker with both. */
static void checkpointed(char *link, size_t len)
{
	char base[128], p[200];
	struct hu_lv_link l;
	int fd;

	snprintf(base, sizeof(base), "%s/ram", dir);
	snprintf(p, sizeof(p), "%s/.host-upgrade/" UUID, base);
	assert_int_equal(hu_mkdir_p(p, 0700), 0);
	snprintf(link, len, "%s/pc.ram", p);
	fd = open(link, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "RAM", 3), 3);
	close(fd);
	snprintf(p, sizeof(p), "%s/1-web1/pc.ram", base);
	l = (struct hu_lv_link){ .memdev = "pc.ram", .was = p, .link = link };
	assert_int_equal(hu_libvirt_marker_write(ctx, UUID, "c0ffee", &l, 1), 0);
}

static void test_token_relinks(void **state)
{
	char link[256], target[256], *msg;
	struct stat a, b;

	checkpointed(link, sizeof(link));
	/* A cold boot (no token, or another): refused, and said why. */
	assert_int_equal(hook("<domain id='4'><uuid>" UUID "</uuid></domain>", &msg), -EPERM);
	assert_non_null(strstr(msg, "domain web1 is checkpointed (uuid " UUID ")"));
	free(msg);
	assert_int_equal(hook(domain_xml(4, "0ff1ce"), &msg), -EPERM);
	free(msg);
	snprintf(target, sizeof(target), "%s/ram/4-web1/pc.ram", dir);
	assert_int_equal(access(target, F_OK), -1);
	/* Our restore (start id 5): the saved RAM is linked into 5-web1, same inode. */
	assert_int_equal(hook(domain_xml(5, "c0ffee"), &msg), 0);
	assert_null(msg);
	snprintf(target, sizeof(target), "%s/ram/5-web1/pc.ram", dir);
	assert_int_equal(stat(link, &a), 0);
	assert_int_equal(stat(target, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	/* Again (a retried start): still fine. */
	assert_int_equal(hook(domain_xml(5, "c0ffee"), &msg), 0);
	/* Another domain while this one is pending: allowed, nothing linked. */
	assert_int_equal(
		hook("<domain id='7'><uuid>11111111-2222-4333-8444-555555555555</uuid></domain>", &msg), 0);
}

static void test_fail_closed(void **state)
{
	char link[256], path[256], *msg;
	FILE *f;

	/* Nothing pending: yes, whatever the input. */
	assert_int_equal(hook("garbage", &msg), 0);
	checkpointed(link, sizeof(link));
	/* Pending, and the XML cannot be read: no. */
	assert_true(hook("garbage", &msg) < 0);
	free(msg);
	assert_true(hook("<domain id='5'><name>web1</name></domain>", &msg) < 0); /* no uuid */
	free(msg);
	/* Entities are not expanded: a DTD is refused. */
	assert_true(hook("<!DOCTYPE domain [<!ENTITY u \"" UUID
			 "\">]><domain id='5'><uuid>&u;</uuid></domain>",
			 &msg) < 0);
	free(msg);
	/* Our token but no id: cannot place the RAM, no. */
	assert_true(hook("<domain><uuid>" UUID
			 "</uuid><metadata><hu:restore xmlns:hu='urn:x-host-upgrade:restore:1' "
			 "token='c0ffee'/></metadata></domain>",
			 &msg) < 0);
	free(msg);
	/* A marker that is not ours to trust: no. */
	snprintf(path, sizeof(path), "%s/libvirt/" UUID ".pending", dir);
	f = fopen(path, "w");
	fputs("{\"token\":\"c0ffee\",\"links\":[{\"was\":\"relative/1-web1/pc.ram\",\"link\":\"/x\"}]}", f);
	fclose(f);
	assert_true(hook(domain_xml(5, "c0ffee"), &msg) < 0);
	free(msg);
	f = fopen(path, "w");
	fputs("{\"token\":", f);
	fclose(f);
	assert_true(hook(domain_xml(5, "c0ffee"), &msg) < 0);
	assert_non_null(strstr(msg, "cannot be read"));
	free(msg);
}
#endif

static void test_nothing_pending(void **state)
{
	char *msg;

	assert_int_equal(hook("<domain id='1'><uuid>" UUID "</uuid></domain>", &msg), 0);
	assert_null(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nothing_pending, state_dir_setup, state_dir_teardown),
#ifdef HU_WITH_LIBVIRT
		cmocka_unit_test_setup_teardown(test_token_relinks, state_dir_setup, state_dir_teardown),
		cmocka_unit_test_setup_teardown(test_fail_closed, state_dir_setup, state_dir_teardown),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
