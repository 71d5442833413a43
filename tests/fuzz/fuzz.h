/* Shared helpers of the fuzz targets: a cursor that reads integers and bytes
 * off the fuzzer's input (zeros once it runs out, so every input is a valid
 * program), a check that aborts with a message (libFuzzer and the replay
 * driver both report an abort as a crash), and a scratch directory for the
 * targets that build files from their input.
 *
 * Each target defines LLVMFuzzerTestOneInput(). Under clang with the fuzz
 * option, libFuzzer supplies main(); everywhere else replay.c does, feeding
 * the checked-in corpus to the same function. */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_in {
	const uint8_t *data;
	size_t size;
};

static inline bool fuzz_more(const struct fuzz_in *in)
{
	return in->size > 0;
}

static inline uint64_t fuzz_uint(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && in->size > 0; i++) {
		v |= (uint64_t)in->data[0] << (8 * i);
		in->data++;
		in->size--;
	}
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	return (uint8_t)fuzz_uint(in, 1);
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	return (uint16_t)fuzz_uint(in, 2);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)fuzz_uint(in, 4);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	return fuzz_uint(in, 8);
}

/* Up to size bytes of the input; *got says how many there were. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t size, size_t *got)
{
	const uint8_t *p = in->data;

	*got = size < in->size ? size : in->size;
	in->data += *got;
	in->size -= *got;
	return p;
}

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A private directory for this process, made on first use and removed at
 * exit ($TMPDIR, else the system's temporary directory). */
const char *fuzz_dir(void);

/* Remove every file in the directory at path (not recursive); the directory stays. */
void fuzz_dir_clear(const char *path);

/* Write size bytes to the file name in directory dir. Aborts on failure:
 * the scratch directory is the harness's, not the code under test's. */
void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size);

#endif /* TESTS_FUZZ_FUZZ_H */
