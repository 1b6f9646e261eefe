/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the libFuzzer harnesses (tests/fuzz/README.md): a scratch
 * directory per fuzzing process, on tmpfs, and a quiet context pointed at it. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "hu-private.h"

/* The process's scratch directory ($HU_FUZZ_TMPDIR or /dev/shm, then
 * hu-fuzz-PID.XXXXXX; removed at exit); created on first use. Aborts when it cannot be made: a harness
 * without it would test nothing. */
const char *fuzz_dir(void);
/* DIR/NAME, malloc'ed (aborts on ENOMEM). */
char *fuzz_path(const char *dir, const char *name);
/* Make DIR (and its parents) if missing, empty it if present. */
void fuzz_reset_dir(const char *dir);
/* Write DIR/NAME with exactly these bytes (aborts on failure). */
void fuzz_write(const char *dir, const char *name, const void *data, size_t len);
/* A context whose log hook drops everything, its proc root and state dir
 * given (NULL: left at the defaults). Aborts on failure. */
struct hu_ctx *fuzz_ctx(const char *proc_root, const char *state_dir);
/* Split data at `sep` into at most max pieces (the last takes the rest);
 * returns how many. Pieces point into data; lens[i] their lengths. */
size_t fuzz_split(const uint8_t *data, size_t size, uint8_t sep, const uint8_t **pieces, size_t *lens,
		  size_t max);
/* A NUL-terminated copy of len bytes (aborts on ENOMEM). */
char *fuzz_strndup(const uint8_t *data, size_t len);
