/* QMP framing and errors against a scripted peer on a socketpair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "hu-private.h"

#define GREETING \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}}, \"capabilities\": []}}\r\n"

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
		for (const char *const *c = chunks; *c; c++) {
			const char *s = *c;

			if (s[0] == '<') {
				char ch;
				while (read(sv[1], &ch, 1) == 1 && ch != '\n')
					;
				s++;
			}
			if (write(sv[1], s, strlen(s)) < 0)
				_exit(1);
		}
		/* Hold the line open until the client is done. */
		char ch;
		while (read(sv[1], &ch, 1) == 1)
			;
		_exit(0);
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
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
