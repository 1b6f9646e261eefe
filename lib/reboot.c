/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reboot: through systemd's kexec.target, never a firmware reboot — that
 * would wipe legacy pmem and with it every in-place guest's RAM. systemd
 * falls back to a firmware reboot when no kernel is loaded, so check right
 * before asking, and refuse where something at shutdown would replace our
 * staged kernel (Debian's kexec-load script with LOAD_KEXEC=true).
 */
#include <stdio.h>
#include <systemd/sd-bus.h>
#include "hu-private.h"

int hu_reboot_guard(struct hu_ctx *ctx)
{
	int r;

	hu_clear_error(ctx);
	r = hu_kexec_loaded(ctx);
	if (r < 0)
		return hu_fail(ctx, r, "cannot tell whether a kernel is staged: %s", hu_stage_strerror(r));
	if (r == 0)
		return hu_fail(
			ctx, -ENOEXEC,
			"no kernel is staged any more: refusing, systemd would fall back to a firmware reboot");
	return hu_kexec_check_no_replacer(ctx);
}

static int systemd_bus(struct hu_ctx *ctx, sd_bus **ret)
{
	_cleanup_free_ char *why = NULL;
	int r = hu_systemd_bus(ret, &why);

	return r < 0 ? hu_fail(ctx, r, "%s", why ?: strerror(-r)) : 0;
}

int hu_reboot_preflight(struct hu_ctx *ctx)
{
	_cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
	_cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	hu_clear_error(ctx);
	r = systemd_bus(ctx, &bus);
	if (r < 0)
		return r;
	/* Changes nothing: systemd loads the unit's definition, or says it has none. */
	r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			       "org.freedesktop.systemd1.Manager", "LoadUnit", &error, &reply, "s",
			       "kexec.target");
	if (r < 0)
		return hu_fail(ctx, r, "systemd cannot load kexec.target: %s", error.message ?: strerror(-r));
	return 0;
}

int hu_reboot_kexec(struct hu_ctx *ctx)
{
	_cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
	_cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	r = hu_reboot_guard(ctx);
	if (r < 0)
		return r;
	r = systemd_bus(ctx, &bus);
	if (r < 0)
		return r;
	/* As `systemctl kexec` does. */
	r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			       "org.freedesktop.systemd1.Manager", "StartUnit", &error, &reply, "ss",
			       "kexec.target", "replace-irreversibly");
	if (r < 0)
		return hu_fail(ctx, r, "systemd refused kexec.target: %s", error.message ?: strerror(-r));
	return 0;
}
