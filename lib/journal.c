/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The journal: journal.jsonl next to the manifest, an append-only history
 * of what happened to each VM, for operators. The manifest is the record;
 * the journal is the audit trail.
 */
#include <fcntl.h>
#include <stdio.h>
#include "hu-private.h"

/* One JSON line per event, fsync'ed: the history survives a crash. */
void hu_journal(struct hu_ctx *ctx, const char *vm, const char *event, const char *detail)
{
	_cleanup_close_ int fd = -1;
	_cleanup_json_ json_object *o = json_object_new_object();
	const char *s;

	if (!o)
		return;
	json_object_object_add(o, "ts_ms", json_object_new_int64(hu_now_ms()));
	if (vm)
		json_object_object_add(o, "vm", json_object_new_string(vm));
	json_object_object_add(o, "event", json_object_new_string(event));
	if (detail)
		json_object_object_add(o, "detail", json_object_new_string(detail));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	fd = hu_state_open(ctx, "journal.jsonl", O_WRONLY | O_APPEND | O_CREAT);
	if (fd < 0)
		return;
	/* No fdatasync of its own: the journal is the audit trail, the manifest
	 * is the record. Each journalled step is followed by a manifest save on
	 * the same file system, whose fsync commits these appends too on ext4
	 * (data=ordered); the blackout does not wait for two flushes. */
	dprintf(fd, "%s\n", s);
}
