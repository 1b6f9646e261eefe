/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host-upgrade libvirt-hook NAME: libvirt's qemu hook at "prepare begin"
 * (installed as /etc/libvirt/hooks/qemu.d/host-upgrade), the domain XML on
 * stdin. Exit 0: libvirt may start the domain. Exit 1: it is checkpointed
 * and this is not host-upgrade's own restore; libvirt shows our stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

/* More than any domain XML; beyond it the hook refuses (if anything is pending). */
#define HOOK_MAX_XML (4 * 1024 * 1024)

static int cmd_libvirt_hook(struct cli *c)
{
	char *xml = malloc(HOOK_MAX_XML + 1), *msg = NULL;
	size_t len = 0, n;
	int r;

	if (!xml) {
		cli_error(c, "stdin", strerror(ENOMEM));
		return EXIT_BLOCKED;
	}
	/* All of it (libvirt writes it all), keeping at most the limit + 1. */
	while ((n = fread(xml + len, 1, HOOK_MAX_XML + 1 - len, stdin)) > 0 && len < HOOK_MAX_XML + 1)
		len += n;
	if (len == HOOK_MAX_XML + 1) {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), stdin) > 0)
			;
	}
	xml[len] = '\0';
	r = hu_libvirt_hook(c->ctx, c->operand, xml, len, &msg);
	free(xml);
	if (r < 0) {
		if (msg)
			fprintf(stderr, "%s\n", msg);
		else
			cli_error(c, c->operand, strerror(-r));
		free(msg);
		return EXIT_BLOCKED;
	}
	free(msg);
	return 0;
}

const struct cli_verb cli_verb_libvirt_hook = {
	.name = "libvirt-hook",
	.run = cmd_libvirt_hook,
	.summary = "libvirt's qemu hook: refuse to start a checkpointed domain",
	.usage = "[options] NAME < DOMAIN-XML",
	.about = "Run by libvirt as /etc/libvirt/hooks/qemu.d/host-upgrade at \"prepare begin\",\n"
		 "with the domain's XML on stdin; it never calls libvirt. Exit 0 lets libvirt start\n"
		 "domain NAME. Exit 1 refuses while NAME is checkpointed (autostart, virsh start,\n"
		 "libvirt-guests would boot it cold over its saved RAM), except for host-upgrade's\n"
		 "own restore, whose saved RAM it links into the domain's new RAM folder.",
	.takes_operand = true,
};
