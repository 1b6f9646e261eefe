/* QMP framing and errors against a scripted peer on a socketpair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "hu-private.h"

#define GREETING \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}}, \"capabilities\": []}}\r\n"

/* Play the peer's side on fd: each chunk after reading one line from us,
 * when the chunk starts with '<'; otherwise at once; "!" closes the line.
 * Then hold the line open until the client is done. */
static _Noreturn void play(int fd, const char *const *chunks)
{
	for (const char *const *c = chunks; *c; c++) {
		const char *s = *c;

		if (s[0] == '<') {
			char ch;
			while (read(fd, &ch, 1) == 1 && ch != '\n')
				;
			s++;
		}
		if (s[0] == '!') /* close the line */
			_exit(0);
		if (write(fd, s, strlen(s)) < 0)
			_exit(1);
	}
	char ch;
	while (read(fd, &ch, 1) == 1)
		;
	_exit(0);
}

/* A peer process: writes each chunk after reading one line from us, when
 * the chunk starts with '<'; otherwise writes it at once. */
static pid_t peer(int *ret_fd, const char *const *chunks)
{
	int sv[2];
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		play(sv[1], chunks);
	}
	close(sv[1]);
	*ret_fd = sv[0];
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_greeting_and_reply_with_events(void **state)
{
	/* Replies carry our ids: hu-1 is qmp_capabilities, hu-2 the command. */
	const char *const chunks[] = {
		GREETING,
		"<{\"return\": {}, \"id\": \"hu-1\"}\r\n",
		"<{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"
		"{\"return\": {\"stale\": true}, \"id\": \"other\"}\r\n{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\r\n",
		"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"hu-2\"}\r\n",
		NULL,
	};
	struct hu_qmp *q;
	char *status = NULL;
	json_object *data = NULL, *st;
	int fd;
	pid_t pid = peer(&fd, chunks);

	assert_int_equal(hu_qmp_open_fd(fd, 2000, &q), 0);
	assert_string_equal(hu_qmp_greeting_version(q), "10.0.2");
	assert_int_equal(hu_qmp_query_status(q, &status), 0);
	assert_string_equal(status, "running");
	/* Both events were kept for waiters; the stale reply was dropped. */
	assert_int_equal(hu_qmp_wait_event(q, "MIGRATION", NULL, NULL, 100, &data), 0);
	assert_true(json_object_object_get_ex(data, "status", &st));
	assert_string_equal(json_object_get_string(st), "completed");
	assert_int_equal(hu_qmp_wait_event(q, "STOP", NULL, NULL, 100, NULL), 0);
	assert_int_equal(hu_qmp_wait_event(q, "STOP", NULL, NULL, 50, NULL), -ETIMEDOUT);
	json_object_put(data);
	free(status);
	hu_qmp_close(q);
	reap(pid);
}

static void test_message_split_in_bytes(void **state)
{
	const char *const chunks[] = {
		"{\"QMP\": {\"vers",
		"ion\": {}, \"capabilities\": []}}",
		"\r",
		"\n",
		"<{\"ret",
		"urn\": {}, \"id\"",
		": \"hu-1\"}\r\n",
		NULL,
	};
	struct hu_qmp *q;
	int fd;
	pid_t pid = peer(&fd, chunks);

	assert_int_equal(hu_qmp_open_fd(fd, 2000, &q), 0);
	hu_qmp_close(q);
	reap(pid);
}

static void expect_open_error(const char *const *chunks, int err)
{
	struct hu_qmp *q = NULL;
	int fd;
	pid_t pid = peer(&fd, chunks);

	assert_int_equal(hu_qmp_open_fd(fd, 500, &q), err);
	assert_null(q);
	reap(pid);
}

static void test_garbage_is_an_error(void **state)
{
	const char *const garbage[] = { "HTTP/1.1 200 OK\r\n\r\n", NULL };
	const char *const not_object[] = { "[1, 2, 3]\r\n", NULL };
	const char *const no_greeting[] = { "{\"hello\": 1}\r\n", NULL };

	expect_open_error(garbage, -EBADMSG);
	expect_open_error(not_object, -EBADMSG);
	expect_open_error(no_greeting, -EPROTO);
	assert_string_equal(hu_qmp_strerror(-EBADMSG), "peer sent malformed JSON");
}

static void test_silent_peer_times_out(void **state)
{
	const char *const silent[] = { NULL };

	expect_open_error(silent, -ETIMEDOUT);
}

static void test_closed_peer(void **state)
{
	int sv[2];
	struct hu_qmp *q = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	assert_int_equal(hu_qmp_open_fd(sv[0], 500, &q), -ECONNRESET);
}

static void test_oversized_message(void **state)
{
	/* An endless string: must stop at the bound, not grow forever. */
	size_t n = HU_MAX_QMP_MESSAGE + 4096;
	char *big = malloc(n + 16);
	const char *chunks[] = { big, NULL };

	strcpy(big, "{\"QMP\": \"");
	memset(big + 9, 'x', n - 9);
	big[n] = '\0';
	expect_open_error(chunks, -EMSGSIZE);
	free(big);
}

static void test_error_reply(void **state)
{
	const char *const chunks[] = {
		GREETING,
		"<{\"return\": {}, \"id\": \"hu-1\"}\r\n",
		"<{\"error\": {\"class\": \"GenericError\", \"desc\": \"No space left on device\"}, \"id\": \"hu-2\"}\r\n",
		"<{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command x has not been found\"}, \"id\": \"hu-3\"}\r\n",
		NULL,
	};
	struct hu_qmp *q;
	char *err = NULL;
	int fd;
	pid_t pid = peer(&fd, chunks);

	assert_int_equal(hu_qmp_open_fd(fd, 2000, &q), 0);
	assert_int_equal(hu_qmp_execute(q, "migrate", NULL, NULL, &err), -EREMOTEIO);
	assert_string_equal(err, "GenericError: No space left on device");
	free(err);
	err = NULL;
	assert_int_equal(hu_qmp_execute(q, "x", NULL, NULL, &err), -EOPNOTSUPP);
	free(err);
	hu_qmp_close(q);
	reap(pid);
}

/* The guest agent: resync past stale output, and a silent or garbage agent. */
static int agent_sync(const char *const *chunks)
{
	struct hu_qmp *q = NULL;
	int fd, r;
	pid_t pid = peer(&fd, chunks);

	assert_int_equal(hu_qmp_open_raw_fd(fd, 500, &q), 0);
	r = hu_qmp_sync_delimited(q, 4242);
	hu_qmp_close(q);
	reap(pid);
	return r;
}

static void test_agent_sync(void **state)
{
	const char *const good[] = {
		"<{\"error\": {\"class\": \"GenericError\", \"desc\": \"stray\"}}\n"
		"{\"return\": 17}\n\xff{\"return\": 4242}\n",
		NULL,
	};
	const char *const stale_then_good[] = {
		"<\xff{\"return\": 1}\n\xff{\"return\": 4242}\n",
		NULL,
	};
	const char *const garbage[] = { "<\xff<html>not json</html>\n", NULL };
	const char *const noise[] = { "<zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", NULL };
	const char *const silent[] = { NULL };

	assert_int_equal(agent_sync(good), 0);
	assert_int_equal(agent_sync(stale_then_good), 0);
	assert_int_equal(agent_sync(garbage), -EBADMSG);
	assert_int_equal(agent_sync(noise), -ETIMEDOUT);
	assert_int_equal(agent_sync(silent), -ETIMEDOUT);
}

/* A unix socket at path whose peer process accepts one connection and
 * plays chunks on it; with chunks NULL, it never accepts. */
static pid_t listener(const char *path, const char *const *chunks, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	strcpy(sa.sun_path, path);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int c = chunks ? accept(l, NULL, NULL) : -1;

		if (c >= 0)
			play(c, chunks);
		pause();
		_exit(0);
	}
	*ret_fd = l;
	return pid;
}

/* Many agents at once, each judged on its own: one answering among silent,
 * garbage, closing and missing ones still answers. */
static void test_agent_sync_many(void **state)
{
	const char *const good[] = { "<\xff{\"return\": 1}\n\xff{\"return\": 11}\n", NULL };
	const char *const split[] = { "<\xff{\"ret", "urn\": 15}\n", NULL };
	const char *const garbage[] = { "<\xff<html>\n", NULL };
	const char *const wrong_id[] = { "<\xff{\"return\": 99}\n", NULL };
	const char *const hold[] = { NULL };
	const char *const closes[] = { "<!", NULL };
	const char *const *script[] = { hold, good, NULL, garbage, wrong_id, split, closes, hold };
	const int expect[] = { -ETIMEDOUT, 0, -ETIMEDOUT, -EBADMSG, -ETIMEDOUT, 0, -ECONNRESET, -ETIMEDOUT };
	enum { N = sizeof(expect) / sizeof(expect[0]) };
	char dir[] = "/tmp/hu-test-qmp.XXXXXX", paths[N + 1][64];
	const char *pp[N + 1];
	int64_t ids[N + 1];
	int res[N + 1], fds[N];
	pid_t pids[N];

	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i <= N; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/a%zu.sock", dir, i);
		pp[i] = paths[i];
		ids[i] = 10 + (int64_t)i;
		if (i < N)
			pids[i] = listener(paths[i], script[i], &fds[i]);
	}
	alarm(60);
	assert_int_equal(hu_qmp_sync_many(pp, ids, N + 1, 500, res), 0);
	alarm(0);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(res[i], expect[i]);
		reap(pids[i]);
		close(fds[i]);
		unlink(paths[i]);
	}
	assert_int_equal(res[N], -ENOENT); /* nobody listens there */
	assert_int_equal(hu_qmp_sync_many(pp, ids, 0, 500, res), 0);
	rmdir(dir);
}

/* A listener that never accepts, its backlog full (any local user can make
 * one): connecting gives up after the timeout, QMP and agent alike (#15). */
static void test_full_backlog_does_not_hang(void **state)
{
	char dir[] = "/tmp/hu-test-qmp.XXXXXX", path[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hu_qmp *q = NULL;
	int l, c;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/full.sock", dir);
	strcpy(sa.sun_path, path);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 0), 0);
	/* a backlog of 0 holds one connection nobody accepts */
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	alarm(60); /* a hang guard: without a deadline connect() waits forever */
	assert_int_equal(hu_qmp_connect(path, 200, &q), -EAGAIN);
	assert_null(q);
	assert_int_equal(hu_qmp_connect_raw(path, 200, &q), -EAGAIN);
	assert_null(q);
	alarm(0);
	close(c);
	close(l);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_and_reply_with_events),
		cmocka_unit_test(test_message_split_in_bytes),
		cmocka_unit_test(test_garbage_is_an_error),
		cmocka_unit_test(test_silent_peer_times_out),
		cmocka_unit_test(test_closed_peer),
		cmocka_unit_test(test_oversized_message),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_agent_sync),
		cmocka_unit_test(test_full_backlog_does_not_hang),
		cmocka_unit_test(test_agent_sync_many),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
