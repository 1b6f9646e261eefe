/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library context: configuration plus the log hook (the only output). */
#include <stdio.h>
#include "hu-private.h"

int hu_new(struct hu_ctx **ret)
{
	struct hu_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return -ENOMEM;
	ctx->refcount = 1;
	ctx->log_priority = LOG_INFO;
	ctx->qmp_timeout_ms = 10000;
	ctx->state_dir = strdup("/var/lib/host-upgrade");
	ctx->state_fd = -1;
	ctx->proc_root = strdup("/proc");
	ctx->sys_root = strdup("/sys");
	pthread_mutex_init(&ctx->log_lock, NULL);
	if (!ctx->state_dir || !ctx->proc_root || !ctx->sys_root) {
		hu_unref(ctx);
		return -ENOMEM;
	}
	*ret = ctx;
	return 0;
}

struct hu_ctx *hu_ref(struct hu_ctx *ctx)
{
	if (ctx)
		__atomic_add_fetch(&ctx->refcount, 1, __ATOMIC_SEQ_CST);
	return ctx;
}

struct hu_ctx *hu_unref(struct hu_ctx *ctx)
{
	if (!ctx || __atomic_sub_fetch(&ctx->refcount, 1, __ATOMIC_SEQ_CST) > 0)
		return NULL;
	hu_manager_ctx_close(ctx);
	free(ctx->state_dir);
	if (ctx->state_fd >= 0)
		close(ctx->state_fd);
	free(ctx->proc_root);
	free(ctx->sys_root);
	pthread_mutex_destroy(&ctx->log_lock);
	free(ctx->error);
	free(ctx);
	return NULL;
}

void hu_set_log_fn(struct hu_ctx *ctx, hu_log_fn fn, void *userdata)
{
	ctx->log_fn = fn;
	ctx->log_data = userdata;
}

void hu_set_log_priority(struct hu_ctx *ctx, int priority)
{
	ctx->log_priority = priority;
}

int hu_set_state_dir(struct hu_ctx *ctx, const char *dir)
{
	int r;

	if (!dir || dir[0] == '\0' || strlen(dir) > 200)
		return -EINVAL;
	r = hu_strdup_replace(&ctx->state_dir, dir);
	if (r >= 0 && ctx->state_fd >= 0) {
		/* Another dir: opened and checked anew on first use. */
		close(ctx->state_fd);
		ctx->state_fd = -1;
		ctx->state_fd_rw = false;
	}
	return r;
}

const char *hu_get_state_dir(const struct hu_ctx *ctx)
{
	return ctx->state_dir;
}

int hu_set_proc_root(struct hu_ctx *ctx, const char *dir)
{
	return hu_strdup_replace(&ctx->proc_root, dir);
}

int hu_set_sys_root(struct hu_ctx *ctx, const char *dir)
{
	return hu_strdup_replace(&ctx->sys_root, dir);
}

void hu_set_jobs(struct hu_ctx *ctx, unsigned jobs)
{
	ctx->jobs = jobs;
}

void hu_set_qmp_timeout(struct hu_ctx *ctx, unsigned ms)
{
	ctx->qmp_timeout_ms = ms;
}

void hu_log(struct hu_ctx *ctx, int prio, const char *vm, const char *fmt, ...)
{
	va_list ap;

	if (!ctx || !ctx->log_fn || prio > ctx->log_priority)
		return;
	/* Workers log from threads: keep lines whole. */
	pthread_mutex_lock(&ctx->log_lock);
	va_start(ap, fmt);
	ctx->log_fn(ctx->log_data, prio, vm, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&ctx->log_lock);
}

int hu_fail(struct hu_ctx *ctx, int r, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	pthread_mutex_lock(&ctx->log_lock);
	free(ctx->error);
	ctx->error = text;
	pthread_mutex_unlock(&ctx->log_lock);
	hu_dbg(ctx, NULL, "failed (%s): %s", strerror(-r), text ?: "?");
	return r;
}

void hu_clear_error(struct hu_ctx *ctx)
{
	pthread_mutex_lock(&ctx->log_lock);
	free(ctx->error);
	ctx->error = NULL;
	pthread_mutex_unlock(&ctx->log_lock);
}

const char *hu_get_error(const struct hu_ctx *ctx)
{
	return ctx ? ctx->error : NULL;
}

const char *hu_backing_to_string(enum hu_backing b)
{
	/* clang-format off */
	switch (b) {
	case HU_BACKING_PERSISTENT: return "persistent";
	case HU_BACKING_VOLATILE:   return "volatile";
	case HU_BACKING_PRIVATE:    return "private";
	}
	/* clang-format on */
	return "unknown";
}

const char *hu_agent_to_string(enum hu_agent a)
{
	/* clang-format off */
	switch (a) {
	case HU_AGENT_NONE:      return "none";
	case HU_AGENT_UNKNOWN:   return "unknown";
	case HU_AGENT_CLOSED:    return "closed";
	case HU_AGENT_SILENT:    return "not-answering";
	case HU_AGENT_ANSWERING: return "answering";
	}
	/* clang-format on */
	return "unknown";
}
