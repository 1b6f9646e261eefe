/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP client. The peer is untrusted: every message is bounded in size and
 * nesting, every wait has a deadline, garbage is an error and never a hang.
 * Events may arrive between a request and its reply; they are queued
 * (bounded) for waiters. Replies carry our id; others are dropped.
 */
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include "hu-private.h"

struct hu_qmp {
	int fd;
	unsigned timeout_ms;
	json_tokener *tok;
	char buf[65536];
	size_t len, off;
	size_t msg_bytes;    /* bytes fed into the message being parsed */
	bool after_sentinel; /* guest-sync-delimited: the 0xFF before its reply was seen */
	json_object *events[HU_MAX_QMP_EVENTS];
	size_t n_events;
	unsigned long next_id;
	char *version;
	/* Another transport (libvirt's monitor): fd is -1, events are polled. */
	const struct hu_qmp_ext *ext;
	void *ext_data;
};

const char *hu_qmp_strerror(int r)
{
	/* clang-format off */
	switch (r) {
	case -EBADMSG:   return "peer sent malformed JSON";
	case -EPROTO:    return "peer does not speak QMP";
	case -EMSGSIZE:  return "QMP message larger than the 4 MiB limit";
	case -ETIMEDOUT: return "no answer in time";
	case -ECONNRESET: return "connection closed by peer";
	case -EREMOTEIO: return "QEMU returned an error";
	case -EOPNOTSUPP: return "command not supported by this QEMU";
	case -EAGAIN:    return "the socket accepts no connection (its listen queue stays full)";
	case -EBUSY:     return "an earlier monitor command to this domain has not returned yet";
	default:         return strerror(-r);
	}
	/* clang-format on */
}

void hu_qmp_close(struct hu_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	if (q->ext)
		q->ext->close(q->ext_data);
	if (q->tok)
		json_tokener_free(q->tok);
	hu_qmp_clear_events(q);
	free(q->version);
	free(q);
}

void hu_qmp_set_timeout(struct hu_qmp *q, unsigned ms)
{
	q->timeout_ms = ms;
}

void hu_qmp_clear_events(struct hu_qmp *q)
{
	for (size_t i = 0; i < q->n_events; i++)
		json_object_put(q->events[i]);
	q->n_events = 0;
}

const char *hu_qmp_greeting_version(struct hu_qmp *q)
{
	return q->version;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - hu_mono_ms();
		struct pollfd p = { .fd = fd, .events = events };
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r > 0)
			return 0;
	}
}

/* The next complete JSON object in what is already buffered: 1 and *ret,
 * or 0 when more bytes are needed. Streamed through the tokener, not split
 * at newlines: -qmp-pretty spreads a message over lines. */
static int parse_buffered(struct hu_qmp *q, json_object **ret)
{
	while (q->off < q->len) {
		size_t avail = q->len - q->off;
		json_object *o = json_tokener_parse_ex(q->tok, q->buf + q->off, (int)avail);
		enum json_tokener_error e = json_tokener_get_error(q->tok);
		size_t used = json_tokener_get_parse_end(q->tok);

		if (used > avail || (!o && e == json_tokener_continue))
			used = avail;
		q->off += used;
		q->msg_bytes += used;
		if (o) {
			/* Ready for the next message in the same buffer. */
			json_tokener_reset(q->tok);
			q->msg_bytes = 0;
			if (!json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				return -EBADMSG;
			}
			*ret = o;
			return 1;
		}
		if (e != json_tokener_continue)
			return -EBADMSG;
		if (q->msg_bytes > HU_MAX_QMP_MESSAGE)
			return -EMSGSIZE;
	}
	return 0;
}

/* What the peer has sent so far, once the buffer is used up: 0, or -EAGAIN
 * when nothing is there yet. */
static int recv_some(struct hu_qmp *q)
{
	ssize_t n = recv(q->fd, q->buf, sizeof(q->buf), MSG_DONTWAIT);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? -EAGAIN : -errno;
	if (n == 0)
		return -ECONNRESET;
	q->off = 0;
	q->len = n;
	return 0;
}

static int fill(struct hu_qmp *q, int64_t deadline)
{
	for (;;) {
		int r = wait_fd(q->fd, POLLIN, deadline);

		if (r < 0)
			return r;
		r = recv_some(q);
		if (r != -EAGAIN)
			return r;
	}
}

/* Read the next complete JSON object from the peer. */
static int read_message(struct hu_qmp *q, int64_t deadline, json_object **ret)
{
	for (;;) {
		int r = parse_buffered(q, ret);

		if (r != 0)
			return r < 0 ? r : 0;
		r = fill(q, deadline);
		if (r < 0)
			return r;
	}
}

static void queue_event(struct hu_qmp *q, json_object *msg)
{
	if (q->n_events == HU_MAX_QMP_EVENTS) {
		/* Keep the newest: a flood of events must not grow memory. */
		json_object_put(q->events[0]);
		memmove(q->events, q->events + 1, (HU_MAX_QMP_EVENTS - 1) * sizeof(q->events[0]));
		q->n_events--;
	}
	q->events[q->n_events++] = msg;
}

/* Send all of s; with fd >= 0, the descriptor goes along with the first
 * bytes (SCM_RIGHTS, as QEMU's add-fd and getfd take it). */
static int send_all_fd(struct hu_qmp *q, const char *s, size_t len, int fd, int64_t deadline)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {};

	while (len > 0) {
		struct iovec iov = { .iov_base = (void *)s, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (fd >= 0) {
			struct cmsghdr *c;

			mh.msg_control = cbuf;
			mh.msg_controllen = sizeof(cbuf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int r = wait_fd(q->fd, POLLOUT, deadline);
				if (r < 0)
					return r;
				continue;
			}
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		fd = -1; /* sent */
		s += n;
		len -= n;
	}
	return 0;
}

static int send_all(struct hu_qmp *q, const char *s, size_t len, int64_t deadline)
{
	return send_all_fd(q, s, len, -1, deadline);
}

static char *error_text(json_object *err)
{
	json_object *cls = NULL, *desc = NULL;
	char *s = NULL;

	json_object_object_get_ex(err, "class", &cls);
	json_object_object_get_ex(err, "desc", &desc);
	if (asprintf(&s, "%s: %.512s", cls ? json_object_get_string(cls) : "Error",
		     desc ? json_object_get_string(desc) : "(no description)") < 0)
		return NULL;
	return s;
}

/* A reply's "return" (into *ret) or its "error" (-EREMOTEIO). */
static int reply_result(json_object *msg, json_object **ret, char **ret_error)
{
	json_object *v;

	if (json_object_object_get_ex(msg, "error", &v)) {
		json_object *cls = NULL;

		if (ret_error)
			*ret_error = error_text(v);
		json_object_object_get_ex(v, "class", &cls);
		if (cls && streq(json_object_get_string(cls), "CommandNotFound"))
			return -EOPNOTSUPP;
		return -EREMOTEIO;
	}
	if (!json_object_object_get_ex(msg, "return", &v))
		return -EPROTO;
	if (ret)
		*ret = json_object_get(v);
	return 0;
}

/* One command through another transport: it hands back the whole reply
 * text, untrusted like the socket's. fd >= 0 goes along (add-fd). */
static int execute_ext(struct hu_qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
		       char **ret_error)
{
	_cleanup_json_ json_object *req = json_object_new_object(), *msg = NULL;
	_cleanup_free_ char *reply = NULL, *err = NULL;
	json_tokener *tok;
	int r;

	if (!req) {
		json_object_put(args);
		return -ENOMEM;
	}
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	r = q->ext->command(q->ext_data, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), fd,
			    q->timeout_ms, &reply, &err);
	if (r < 0) {
		if (ret_error)
			*ret_error = TAKE_PTR(err);
		return r;
	}
	if (!reply)
		return -EPROTO;
	if (strlen(reply) > HU_MAX_QMP_MESSAGE)
		return -EMSGSIZE;
	tok = json_tokener_new_ex(64);
	if (!tok)
		return -ENOMEM;
	msg = json_tokener_parse_ex(tok, reply, (int)strlen(reply));
	json_tokener_free(tok);
	if (!msg || !json_object_is_type(msg, json_type_object))
		return -EBADMSG;
	return reply_result(msg, ret, ret_error);
}

static int execute_sock(struct hu_qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
			char **ret_error);

int hu_qmp_execute_fd(struct hu_qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
		      char **ret_error)
{
	if (fd < 0) {
		json_object_put(args);
		return -EOPNOTSUPP;
	}
	if (q->ext)
		return execute_ext(q, cmd, args, fd, ret, ret_error);
	return execute_sock(q, cmd, args, fd, ret, ret_error);
}

int hu_qmp_open_ext(const struct hu_qmp_ext *ext, void *data, unsigned timeout_ms, struct hu_qmp **ret)
{
	_cleanup_json_ json_object *v = NULL;
	struct hu_qmp *q = calloc(1, sizeof(*q));
	json_object *qemu, *maj, *min, *mic;
	int r;

	if (!q) {
		ext->close(data);
		return -ENOMEM;
	}
	q->fd = -1;
	q->timeout_ms = timeout_ms;
	q->ext = ext;
	q->ext_data = data;
	/* No greeting on this transport: the version is asked. */
	r = hu_qmp_execute(q, "query-version", NULL, &v, NULL);
	if (r < 0) {
		hu_qmp_close(q);
		return r;
	}
	if (json_object_object_get_ex(v, "qemu", &qemu) && json_object_object_get_ex(qemu, "major", &maj) &&
	    json_object_object_get_ex(qemu, "minor", &min) &&
	    json_object_object_get_ex(qemu, "micro", &mic) &&
	    asprintf(&q->version, "%d.%d.%d", json_object_get_int(maj), json_object_get_int(min),
		     json_object_get_int(mic)) < 0)
		q->version = NULL;
	*ret = q;
	return 0;
}

int hu_qmp_execute(struct hu_qmp *q, const char *cmd, json_object *args, json_object **ret, char **ret_error)
{
	if (q->ext)
		return execute_ext(q, cmd, args, -1, ret, ret_error);
	return execute_sock(q, cmd, args, -1, ret, ret_error);
}

static int execute_sock(struct hu_qmp *q, const char *cmd, json_object *args, int fd, json_object **ret,
			char **ret_error)
{
	_cleanup_json_ json_object *req = json_object_new_object();
	char id[32];
	const char *s;
	int64_t deadline = hu_mono_ms() + q->timeout_ms;
	int r;

	if (!req) {
		json_object_put(args);
		return -ENOMEM;
	}
	snprintf(id, sizeof(id), "hu-%lu", ++q->next_id);
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_string(id));
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	r = send_all_fd(q, s, strlen(s), fd, deadline);
	if (r >= 0)
		r = send_all(q, "\n", 1, deadline);
	if (r < 0)
		return r;

	for (;;) {
		_cleanup_json_ json_object *msg = NULL;
		json_object *mid;

		r = read_message(q, deadline, &msg);
		if (r < 0)
			return r;
		if (json_object_object_get_ex(msg, "event", NULL)) {
			queue_event(q, TAKE_PTR(msg));
			continue;
		}
		if (!json_object_object_get_ex(msg, "id", &mid) ||
		    !json_object_is_type(mid, json_type_string) || !streq(json_object_get_string(mid), id))
			continue; /* a reply that is not ours: drop it */
		return reply_result(msg, ret, ret_error);
	}
}

static bool event_matches(json_object *ev, const char *name, bool (*match)(json_object *, void *),
			  void *userdata, json_object **ret_data)
{
	json_object *n, *data = NULL;

	if (!json_object_object_get_ex(ev, "event", &n) || !json_object_is_type(n, json_type_string) ||
	    !streq(json_object_get_string(n), name))
		return false;
	json_object_object_get_ex(ev, "data", &data);
	if (match && !match(data, userdata))
		return false;
	if (ret_data)
		*ret_data = data ? json_object_get(data) : NULL;
	return true;
}

int hu_qmp_wait_event(struct hu_qmp *q, const char *name, bool (*match)(json_object *data, void *userdata),
		      void *userdata, unsigned timeout_ms, json_object **ret_data)
{
	int64_t deadline = hu_mono_ms() + timeout_ms;

	for (size_t i = 0; i < q->n_events; i++) {
		if (event_matches(q->events[i], name, match, userdata, ret_data)) {
			json_object_put(q->events[i]);
			memmove(q->events + i, q->events + i + 1,
				(q->n_events - i - 1) * sizeof(q->events[0]));
			q->n_events--;
			return 0;
		}
	}
	if (q->ext) {
		/* No events on this transport: a short wait, then the caller
		 * asks QEMU (hu_migration_wait polls query-migrate). */
		usleep(1000 * (timeout_ms < 20 ? timeout_ms : 20));
		return -ETIMEDOUT;
	}
	for (;;) {
		_cleanup_json_ json_object *msg = NULL;
		int r = read_message(q, deadline, &msg);

		if (r < 0)
			return r;
		if (!json_object_object_get_ex(msg, "event", NULL))
			continue; /* stale reply */
		if (event_matches(msg, name, match, userdata, ret_data))
			return 0;
		queue_event(q, TAKE_PTR(msg));
	}
}

static int channel_new(int fd, unsigned timeout_ms, struct hu_qmp **ret)
{
	struct hu_qmp *q = calloc(1, sizeof(*q));

	if (!q) {
		close(fd);
		return -ENOMEM;
	}
	q->fd = fd;
	q->timeout_ms = timeout_ms;
	q->tok = json_tokener_new_ex(64);
	if (!q->tok) {
		hu_qmp_close(q);
		return -ENOMEM;
	}
	*ret = q;
	return 0;
}

/* Send a command and do not wait: guest-suspend-ram never replies. */
int hu_qmp_send(struct hu_qmp *q, const char *cmd, json_object *args)
{
	_cleanup_json_ json_object *req = json_object_new_object();
	const char *s;
	int64_t deadline = hu_mono_ms() + q->timeout_ms;
	int r;

	if (q->ext) {
		json_object_put(args);
		return -EOPNOTSUPP;
	}
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	r = send_all(q, s, strlen(s), deadline);
	return r < 0 ? r : send_all(q, "\n", 1, deadline);
}

/* The guest agent's resynchronisation: 0xFF resets its parser; its reply
 * to guest-sync-delimited comes after a 0xFF sentinel, so anything stale
 * before it is dropped. */
static int sync_send(struct hu_qmp *q, int64_t id, int64_t deadline)
{
	char req[128];

	snprintf(req, sizeof(req), "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%lld}}\n",
		 (long long)id);
	q->after_sentinel = false;
	return send_all(q, req, strlen(req), deadline);
}

/* The reply to sync_send in what is buffered: 1 when the one with our id is
 * in, 0 when more bytes are needed. */
static int sync_scan(struct hu_qmp *q, int64_t id)
{
	for (;;) {
		_cleanup_json_ json_object *msg = NULL;
		json_object *v;
		int r;

		if (!q->after_sentinel) {
			while (q->off < q->len && (unsigned char)q->buf[q->off] != 0xff)
				q->off++;
			if (q->off == q->len)
				return 0;
			q->off++;
			q->after_sentinel = true;
			json_tokener_reset(q->tok);
			q->msg_bytes = 0;
		}
		r = parse_buffered(q, &msg);
		if (r <= 0)
			return r;
		q->after_sentinel = false; /* a stale reply: skip to the next sentinel */
		if (json_object_object_get_ex(msg, "return", &v) && json_object_is_type(v, json_type_int) &&
		    json_object_get_int64(v) == id)
			return 1;
	}
}

int hu_qmp_sync_delimited(struct hu_qmp *q, int64_t id)
{
	int64_t deadline = hu_mono_ms() + q->timeout_ms;
	int r = sync_send(q, id, deadline);

	while (r >= 0 && (r = sync_scan(q, id)) == 0)
		r = fill(q, deadline);
	return r < 0 ? r : 0;
}

int hu_qmp_open_raw_fd(int fd, unsigned timeout_ms, struct hu_qmp **ret)
{
	return channel_new(fd, timeout_ms, ret);
}

/* Connect with a deadline: any local user can name a socket whose listener
 * never accepts and whose backlog is full. A non-blocking AF_UNIX connect
 * fails at once with EAGAIN then, and poll() cannot wait for room in the
 * backlog; a blocking connect under SO_SNDTIMEO waits for it in the
 * kernel, at most timeout_ms (sends are MSG_DONTWAIT + poll anyway). */
static int unix_connect(const char *path, unsigned timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (timeout_ms == 0)
		tv.tv_usec = 1000; /* 0 would mean no deadline */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = errno == EAGAIN || errno == EINPROGRESS ? -EAGAIN : -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* A channel without the QMP greeting: the guest agent's socket. */
int hu_qmp_connect_raw(const char *path, unsigned timeout_ms, struct hu_qmp **ret)
{
	int fd = unix_connect(path, timeout_ms);

	return fd < 0 ? fd : channel_new(fd, timeout_ms, ret);
}

/* Every silent agent costs the same one deadline however many there are:
 * connect and ask all first, then one poll() over all of them. A connect
 * waits at most what is left of that deadline (a full listen queue). */
int hu_qmp_sync_many(const char *const *paths, const int64_t *ids, size_t n, unsigned timeout_ms, int *ret)
{
	int64_t deadline = hu_mono_ms() + timeout_ms;
	_cleanup_free_ struct hu_qmp **qs = calloc(n ?: 1, sizeof(*qs));
	_cleanup_free_ struct pollfd *pfd = calloc(n ?: 1, sizeof(*pfd));
	_cleanup_free_ size_t *of = calloc(n ?: 1, sizeof(*of));
	size_t pending = 0;

	if (!qs || !pfd || !of)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int64_t left = deadline - hu_mono_ms();
		int fd = unix_connect(paths[i], left > 0 ? (unsigned)left : 0);

		ret[i] = fd < 0 ? fd : channel_new(fd, timeout_ms, &qs[i]);
		if (ret[i] >= 0)
			ret[i] = sync_send(qs[i], ids[i], deadline);
		if (ret[i] >= 0) {
			ret[i] = -ETIMEDOUT;
			pending++;
		} else {
			hu_qmp_close(qs[i]);
			qs[i] = NULL;
		}
	}
	while (pending) {
		int64_t left = deadline - hu_mono_ms();
		size_t k = 0;

		if (left <= 0)
			break;
		for (size_t i = 0; i < n; i++)
			if (qs[i]) {
				pfd[k] = (struct pollfd){ .fd = qs[i]->fd, .events = POLLIN };
				of[k++] = i;
			}
		if (poll(pfd, k, (int)left) < 0 && errno != EINTR)
			break;
		for (size_t j = 0; j < k; j++) {
			size_t i = of[j];
			int r;

			if (!pfd[j].revents)
				continue;
			r = recv_some(qs[i]);
			if (r == -EAGAIN)
				continue;
			if (r >= 0)
				r = sync_scan(qs[i], ids[i]);
			if (r == 0)
				continue;
			ret[i] = r < 0 ? r : 0;
			hu_qmp_close(qs[i]);
			qs[i] = NULL;
			pending--;
		}
	}
	for (size_t i = 0; i < n; i++)
		hu_qmp_close(qs[i]);
	return 0;
}

int hu_qmp_open_fd(int fd, unsigned timeout_ms, struct hu_qmp **ret)
{
	struct hu_qmp *q = NULL;
	_cleanup_json_ json_object *greeting = NULL;
	json_object *qmp, *ver, *v;
	int r = channel_new(fd, timeout_ms, &q);

	if (r < 0)
		return r;

	r = read_message(q, hu_mono_ms() + timeout_ms, &greeting);
	if (r < 0)
		goto fail;
	if (!json_object_object_get_ex(greeting, "QMP", &qmp) ||
	    !json_object_is_type(qmp, json_type_object)) {
		r = -EPROTO;
		goto fail;
	}
	if (json_object_object_get_ex(qmp, "version", &ver) && json_object_object_get_ex(ver, "qemu", &v)) {
		json_object *maj = NULL, *min = NULL, *mic = NULL;

		json_object_object_get_ex(v, "major", &maj);
		json_object_object_get_ex(v, "minor", &min);
		json_object_object_get_ex(v, "micro", &mic);
		if (asprintf(&q->version, "%d.%d.%d", json_object_get_int(maj), json_object_get_int(min),
			     json_object_get_int(mic)) < 0)
			q->version = NULL;
	}
	r = hu_qmp_execute(q, "qmp_capabilities", NULL, NULL, NULL);
	if (r < 0)
		goto fail;
	*ret = q;
	return 0;
fail:
	hu_qmp_close(q);
	return r;
}

int hu_qmp_connect(const char *path, unsigned timeout_ms, struct hu_qmp **ret)
{
	int fd = unix_connect(path, timeout_ms);

	return fd < 0 ? fd : hu_qmp_open_fd(fd, timeout_ms, ret);
}

int hu_qmp_query_status(struct hu_qmp *q, char **ret_status)
{
	_cleanup_json_ json_object *o = NULL;
	json_object *st;
	int r = hu_qmp_execute(q, "query-status", NULL, &o, NULL);

	if (r < 0)
		return r;
	if (!json_object_object_get_ex(o, "status", &st) || !json_object_is_type(st, json_type_string))
		return -EPROTO;
	*ret_status = strndup(json_object_get_string(st), 64);
	return *ret_status ? 0 : -ENOMEM;
}
