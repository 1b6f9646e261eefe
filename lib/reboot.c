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
	int r = hu_kexec_loaded(ctx);

	if (r < 0) {
		hu_err(ctx, NULL, "cannot tell whether a kernel is staged: %s", hu_stage_strerror(r));
		return r;
	}
	if (r == 0) {
		hu_err(ctx, NULL, "no kernel is staged any more: refusing, systemd would fall back to a firmware reboot");
		return -ENOEXEC;
	}
	if (hu_kexec_load_script_active()) {
		hu_err(ctx, NULL, "/etc/default/kexec has LOAD_KEXEC=true: Debian's kexec-load would replace the staged kernel at shutdown; set it to false");
		return -EBUSY;
	}
	return 0;
}

int hu_reboot_kexec(struct hu_ctx *ctx)
{
	sd_bus *bus = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int r;

	r = hu_reboot_guard(ctx);
	if (r < 0)
		return r;
	r = sd_bus_open_system(&bus);
	if (r < 0) {
		hu_err(ctx, NULL, "cannot reach systemd: %s", strerror(-r));
		return r;
	}
	/* As `systemctl kexec` does. */
	r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			       "org.freedesktop.systemd1.Manager", "StartUnit", &error, &reply,
			       "ss", "kexec.target", "replace-irreversibly");
	if (r < 0)
		hu_err(ctx, NULL, "systemd refused kexec.target: %s", error.message ?: strerror(-r));
	sd_bus_error_free(&error);
	sd_bus_message_unref(reply);
	sd_bus_unref(bus);
	return r < 0 ? r : 0;
}
