/* Helpers shared by the I/O tests: temporary directories on a real disk,
 * a loop that skips the test when io_uring is unavailable, deterministic
 * payloads. */
#ifndef TESTS_IO_IO_TEST_H
#define TESTS_IO_IO_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "io/loop.h"

#define IO_TEST_SKIP 77 /* Meson counts this exit status as skipped. */

/* Make a fresh directory under $FLOTILLA_TEST_DIR (the build directory in
 * Meson runs), else $TMPDIR, else /tmp. out holds 256. */
void io_test_mkdtemp(char *out, const char *name);

/* Remove a directory tree made by io_test_mkdtemp(). */
void io_test_rmtree(const char *path);

/* Initialise a loop, or exit IO_TEST_SKIP when io_uring is unavailable. */
void io_test_loop_init(struct loop *loop);

/* A deterministic payload for (group, index, term): size in [1, size_max]
 * and bytes derived from the three. Returns the size written to out. */
uint32_t io_test_payload(uint64_t group, uint64_t index, uint64_t term, uint32_t size_max,
			 uint8_t *out);

/* xorshift64*: small deterministic PRNG. */
uint64_t io_test_rand(uint64_t *state);

/* An integer from the environment, or fallback. */
long io_test_env_long(const char *name, long fallback);

#endif /* TESTS_IO_IO_TEST_H */
