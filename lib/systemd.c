/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * systemd: reaching PID 1 over sd-bus, as systemctl does. A minimal host
 * has no D-Bus system bus (no dbus package); as root, systemctl then talks
 * to PID 1 over its private socket, and so do we — else `run` would stop
 * every VM and only then find it cannot ask for kexec.target.
 */
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include "hu-private.h"

#define HU_SYSTEMD_PRIVATE "/run/systemd/private"

/* The private socket is PID 1's alone: check who answers on it. */
static int peer_is_root(sd_bus *bus)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = sd_bus_get_fd(bus);

	if (fd < 0)
		return fd;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	return cred.uid == 0 ? 0 : -EPERM;
}

static int open_private(sd_bus **ret)
{
	_cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
	int r;

	r = sd_bus_new(&bus);
	if (r >= 0)
		r = sd_bus_set_address(bus, "unix:path=" HU_SYSTEMD_PRIVATE);
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r >= 0)
		r = peer_is_root(bus);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(bus);
	return 0;
}

int hu_systemd_bus(sd_bus **ret, char **ret_why)
{
	int r, rp = -ENOENT;

	/* Only root may use it, and only PID 1 listens there. */
	if (geteuid() == 0 && access(HU_SYSTEMD_PRIVATE, F_OK) == 0) {
		rp = open_private(ret);
		if (rp >= 0)
			return 0;
	}
	r = sd_bus_open_system(ret);
	if (r < 0)
		return hu_errorf(ret_why, r, "cannot reach systemd: %s over the system bus%s%s", strerror(-r),
				 rp == -ENOENT ? "" : ", and its private socket: ",
				 rp == -ENOENT ? "" : strerror(-rp));
	return 0;
}
