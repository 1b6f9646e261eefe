/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QEMU's -readconfig dialect (lib/qemu-config.c) on an untrusted file: the
 * text a QEMU's argv names and discover reads as root. Every file either is
 * refused with a reason or becomes options that the command line parser
 * reads, each section one "-GROUP" "keyval" pair whose id is the one of its
 * header.
 */
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char **argv = NULL, *err = NULL;
	size_t argc = 0;
	struct hu_argv_info ai = {};
	int r;

	if (hu_strv_push(&argv, &argc, "qemu-system-x86_64") < 0)
		abort();
	r = hu_qemu_config_to_argv((const char *)data, size, &argv, &argc, &err);
	if (r < 0 && r != -ENOMEM && !err) {
		fprintf(stderr, "refused (%d) without a reason\n", r);
		abort();
	}
	if (r >= 0 && (argc - 1) % 2 != 0) {
		fprintf(stderr, "%zu options: not pairs\n", argc - 1);
		abort();
	}
	for (size_t i = 1; r >= 0 && i < argc; i += 2)
		if (argv[i][0] != '-' || !hu_qemu_option_takes_arg(argv[i] + 1)) {
			fprintf(stderr, "option %zu is '%s'\n", i, argv[i]);
			abort();
		}
	if (r >= 0 && hu_argv_parse(argv, argc, &ai) == 0)
		hu_argv_info_clear(&ai);
	free(err);
	hu_strv_free(argv, argc);
	return 0;
}
