/* Per-thread jemalloc arenas for shard threads (see mem.h). jemalloc is the
 * process allocator when it is linked: creating an arena and binding the
 * thread to it is all it takes for plain malloc() to use it. */
#include "io/mem.h"

#include <errno.h>
#include <stdio.h>

#ifdef FLOTILLA_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

int mem_thread_arena(unsigned *arena)
{
#ifdef FLOTILLA_JEMALLOC
	unsigned index;
	size_t size = sizeof(index);

	if (mallctl("arenas.create", &index, &size, NULL, 0) != 0)
		return -ENOMEM;
	if (mallctl("thread.arena", NULL, NULL, &index, sizeof(index)) != 0)
		return -ENOMEM;
	*arena = index;
	return 0;
#else
	*arena = 0;
	return -ENOTSUP;
#endif
}

uint64_t mem_arena_allocated(unsigned arena)
{
#ifdef FLOTILLA_JEMALLOC
	char name[64];
	uint64_t epoch = 1;
	size_t small = 0, large = 0, size = sizeof(size_t);

	/* Statistics are refreshed by bumping the epoch. */
	mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch));
	snprintf(name, sizeof(name), "stats.arenas.%u.small.allocated", arena);
	if (mallctl(name, &small, &size, NULL, 0) != 0)
		return 0;
	snprintf(name, sizeof(name), "stats.arenas.%u.large.allocated", arena);
	if (mallctl(name, &large, &size, NULL, 0) != 0)
		return 0;
	return small + large;
#else
	(void)arena;
	return 0;
#endif
}
