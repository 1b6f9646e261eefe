/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP reader (lib/qmp.c) and what discover and checkpoint make of
 * QEMU's replies, fed through a real socket: the input is everything the
 * peer sends, then it closes its side. The first byte picks the peer:
 *   even: a QEMU monitor — greeting, qmp_capabilities, every query discover
 *         asks (hu_vm_query), plan on the result, then a migration wait;
 *   odd:  a guest agent — the 0xFF resynchronisation, guest-ping,
 *         guest-get-time.
 * Our requests carry ids hu-1, hu-2, ... in that order (the seeds are real
 * QEMU 10 transcripts of the same sequence). Nothing waits for a deadline:
 * the peer's end of input is an end of file.
 */
#include <sys/socket.h>
#include "common.h"

#define QGA_SYNC_ID 1234

/* What discover read from /proc for the QEMU of the seeds: a file-backed
 * memdev ram0 and a device net0 on the command line. */
static char *const vm_argv[] = {
	"/usr/bin/qemu-system-x86_64",
	"-name",
	"guest=fuzz,debug-threads=on",
	"-object",
	"memory-backend-file,id=ram0,size=64M,mem-path=/dev/shm/fuzz.ram,share=on",
	"-device",
	"virtio-net-pci,id=net0,netdev=n0",
	"-qmp",
	"unix:/run/fuzz.qmp,server=on,wait=off",
};

static void peer_sends(int fd, const uint8_t *data, size_t size)
{
	while (size > 0) {
		ssize_t n = send(fd, data, size, MSG_NOSIGNAL);

		if (n <= 0)
			abort(); /* the input is bounded below the socket buffer */
		data += n;
		size -= n;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		abort();
}

static void monitor(struct hu_ctx *ctx, int fd)
{
	_cleanup_free_ char *desc = NULL;
	struct hu_qmp *q = NULL;
	struct hu_vm *vm;
	_cleanup_vm_list_ struct hu_vm_list *list = calloc(1, sizeof(*list));

	if (hu_qmp_open_fd(fd, 1000, &q) < 0)
		return;
	vm = calloc(1, sizeof(*vm));
	if (!vm || !list || hu_vm_list_add(list, vm) < 0)
		abort();
	vm->ctx = ctx;
	vm->pid = 4242;
	for (size_t i = 0; i < ARRAY_SIZE(vm_argv); i++)
		if (hu_strv_push(&vm->argv, &vm->argc, vm_argv[i]) < 0)
			abort();
	if (hu_argv_parse(vm->argv, vm->argc, &vm->ai) < 0 || !(vm->name = strdup("fuzz")))
		abort();
	if (hu_vm_query(vm, q) >= 0) {
		vm->qmp_ok = true;
		(void)hu_plan(ctx, list, NULL);
		(void)hu_migration_wait(q, 1000, &desc);
	}
	hu_qmp_close(q);
}

static void agent(int fd)
{
	_cleanup_json_ json_object *t = NULL;
	struct hu_qmp *g = NULL;

	if (hu_qmp_open_raw_fd(fd, 1000, &g) < 0)
		return;
	if (hu_qmp_sync_delimited(g, QGA_SYNC_ID) >= 0 &&
	    hu_qmp_execute(g, "guest-ping", NULL, NULL, NULL) >= 0 &&
	    hu_qmp_execute(g, "guest-get-time", NULL, &t, NULL) >= 0 && json_object_is_type(t, json_type_int))
		(void)hu_clock_step_ms(hu_now_ms() * 1000000, json_object_get_int64(t));
	hu_qmp_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hu_ctx *ctx;
	int sv[2];

	/* The whole input waits in the socket before we read: stay well below its buffer. */
	if (size < 1 || size > 64 * 1024)
		return 0;
	if (!ctx) {
		_cleanup_free_ char *state = fuzz_path(fuzz_dir(), "state");

		fuzz_reset_dir(state);
		ctx = fuzz_ctx(NULL, state);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	peer_sends(sv[1], data + 1, size - 1);
	if (data[0] & 1)
		agent(sv[0]); /* closes sv[0] */
	else
		monitor(ctx, sv[0]);
	close(sv[1]);
	return 0;
}
