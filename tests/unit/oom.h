/* Forced into every engine source of the out-of-memory test's own build of
 * the engine (-include): the engine's allocations go through oom.c, which
 * fails them when the test says so. The rest of the test binary (the
 * fixture, the driver, cmocka) allocates as usual. */
#ifndef TESTS_UNIT_OOM_H
#define TESTS_UNIT_OOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

void *oom_malloc(size_t size);
void *oom_calloc(size_t count, size_t size);
void *oom_realloc(void *p, size_t size);

/* Fail only the nth allocation from now (1: the next one). */
void oom_fail_nth(uint64_t n);
/* Fail each allocation with probability 1/one_in, drawn from seed. */
void oom_fail_random(uint64_t seed, uint32_t one_in);
/* Allocate as usual again. */
void oom_off(void);
/* Allocations asked for, and refused, since the last oom_fail_* or oom_count. */
uint64_t oom_asked(void);
uint64_t oom_refused(void);
/* Count allocations without failing any. */
void oom_count(void);

#ifndef OOM_NO_MACROS
#define malloc(size)     oom_malloc(size)
#define calloc(n, size)  oom_calloc(n, size)
#define realloc(p, size) oom_realloc(p, size)
#endif

#endif /* TESTS_UNIT_OOM_H */
