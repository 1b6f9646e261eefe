/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fixture for the unit tests that need a state dir: each test gets a fresh context whose
 * state dir is an empty temporary folder, removed with everything in it afterwards. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hu-private.h"

static char dir[64];
static struct hu_ctx *ctx;

static int state_dir_setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/hu-test-state.XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(hu_new(&ctx), 0);
	assert_int_equal(hu_set_state_dir(ctx, dir), 0);
	return 0;
}

static int state_dir_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	hu_unref(ctx);
	return 0;
}
