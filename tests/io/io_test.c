/* Helpers shared by the I/O tests. */
#include "tests/io/io_test.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

void io_test_mkdtemp(char *out, const char *name)
{
	const char *base = getenv("FLOTILLA_TEST_DIR");

	if (base == NULL)
		base = getenv("TMPDIR");
	if (base == NULL)
		base = "/tmp";
	snprintf(out, 256, "%s/%s.XXXXXX", base, name);
	if (mkdtemp(out) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", out, strerror(errno));
		exit(1);
	}
}

static int io_test_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void io_test_rmtree(const char *path)
{
	nftw(path, io_test_remove, 16, FTW_DEPTH | FTW_PHYS);
}

void io_test_loop_init(struct loop *loop)
{
	struct loop_config config = {.sq_entries = 256};
	int rv = loop_init(loop, &config);

	if (rv == -ENOSYS || rv == -EPERM) {
		fprintf(stderr, "skipping: %s\n", loop_why(loop));
		exit(IO_TEST_SKIP);
	}
	if (rv != 0) {
		fprintf(stderr, "loop_init: %s\n", loop_why(loop));
		exit(1);
	}
}

uint32_t io_test_payload(uint64_t group, uint64_t index, uint64_t term, uint32_t size_max,
			 uint8_t *out)
{
	uint64_t key[3] = {group, index, term};
	uint64_t h = XXH3_64bits(key, sizeof(key));
	uint32_t size = 1 + (uint32_t)(h % size_max);

	for (uint32_t i = 0; i < size; i++) {
		if (i % 8 == 0)
			h = h * 6364136223846793005ull + 1442695040888963407ull;
		out[i] = (uint8_t)(h >> (8 * (i % 8)));
	}
	return size;
}

uint64_t io_test_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 2685821657736338717ull;
}

long io_test_env_long(const char *name, long fallback)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? strtol(v, NULL, 10) : fallback;
}
