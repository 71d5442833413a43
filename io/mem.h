/* Memory placement: each shard thread allocates from a jemalloc arena of its
 * own, so that shards never contend on allocator locks and a shard's memory
 * stays together. Without jemalloc (sanitizer builds) these do nothing. */
#ifndef IO_MEM_H
#define IO_MEM_H

#include <stdint.h>

/* Create an arena and make it the calling thread's: every malloc of this
 * thread from now on is served from it. Returns 0, or -ENOTSUP without
 * jemalloc, or -ENOMEM. *arena gets its index (for mem_arena_stats). */
int mem_thread_arena(unsigned *arena);

/* Bytes of memory the arena has handed out (allocated and not freed), or 0
 * without jemalloc. */
uint64_t mem_arena_allocated(unsigned arena);

#endif /* IO_MEM_H */
