/* The failing allocator of the engine's out-of-memory test (see oom.h). */
#define OOM_NO_MACROS
#include "tests/unit/oom.h"

static enum { OOM_OFF, OOM_NTH, OOM_RANDOM } oom_mode;
static uint64_t oom_nth, oom_rng, oom_asked_count, oom_refused_count;
static uint32_t oom_one_in;

static uint64_t oom_next(void)
{
	uint64_t z = (oom_rng += 0x9E3779B97F4A7C15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static bool oom_refuse(void)
{
	bool refuse = false;

	oom_asked_count++;
	if (oom_mode == OOM_NTH)
		refuse = oom_asked_count == oom_nth;
	else if (oom_mode == OOM_RANDOM)
		refuse = oom_next() % oom_one_in == 0;
	oom_refused_count += refuse;
	return refuse;
}

void *oom_malloc(size_t size)
{
	return oom_refuse() ? NULL : malloc(size);
}

void *oom_calloc(size_t count, size_t size)
{
	return oom_refuse() ? NULL : calloc(count, size);
}

void *oom_realloc(void *p, size_t size)
{
	/* A failed realloc leaves p as it was, as the real one does. */
	return oom_refuse() ? NULL : realloc(p, size);
}

static void oom_reset(void)
{
	oom_asked_count = 0;
	oom_refused_count = 0;
}

void oom_fail_nth(uint64_t n)
{
	oom_reset();
	oom_mode = OOM_NTH;
	oom_nth = n;
}

void oom_fail_random(uint64_t seed, uint32_t one_in)
{
	oom_reset();
	oom_mode = OOM_RANDOM;
	oom_rng = seed;
	oom_one_in = one_in ? one_in : 1;
}

void oom_count(void)
{
	oom_reset();
	oom_mode = OOM_OFF;
}

void oom_off(void)
{
	oom_mode = OOM_OFF;
}

uint64_t oom_asked(void)
{
	return oom_asked_count;
}

uint64_t oom_refused(void)
{
	return oom_refused_count;
}
