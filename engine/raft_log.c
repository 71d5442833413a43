/* The in-memory log of one group: entries first..last in one contiguous
 * array (moved or doubled when full, amortised), payloads copied into
 * reference-counted chunks that are recycled, so steady-state replication
 * allocates nothing per entry. Entry terms never decrease along the log. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

/* -------------------------------------------------------------------- log */

static void chunk_release(struct raft_log *log, struct raft_chunk *chunk)
{
	if (chunk == NULL)
		return;
	ASSERT(chunk->refs > 0);
	if (--chunk->refs > 0)
		return;
	if (chunk == log->chunk_open) {
		chunk->used = 0;
		return;
	}
	if (chunk->cap == CHUNK_SIZE && log->chunk_free_count < CHUNK_FREE_MAX) {
		chunk->used = 0;
		chunk->next = log->chunk_free;
		log->chunk_free = chunk;
		log->chunk_free_count++;
		return;
	}
	free(chunk);
}

/* Copy size bytes into a chunk; returns the copy and the chunk holding it. */
static int chunk_copy(struct raft_log *log, const void *data, uint32_t size,
		      struct raft_chunk **chunk_out, const void **copy_out)
{
	struct raft_chunk *c = log->chunk_open;
	uint32_t need = (size + 7u) & ~7u;

	if (size == 0) {
		*chunk_out = NULL;
		*copy_out = NULL;
		return 0;
	}
	if (c == NULL || c->cap - c->used < need) {
		if (need > CHUNK_SIZE / 4) {
			/* A large payload gets a chunk of its own. */
			c = malloc(sizeof(*c) + need);
			if (c == NULL)
				return -ENOMEM;
			*c = (struct raft_chunk){.cap = need};
		} else {
			if (log->chunk_free) {
				c = log->chunk_free;
				log->chunk_free = c->next;
				log->chunk_free_count--;
			} else {
				/* Idle groups keep small chunks; busy ones grow to
				 * CHUNK_SIZE, which alone are recycled. */
				uint32_t cap =
				    log->chunk_next_size ? log->chunk_next_size : CHUNK_FIRST;

				while (cap < need)
					cap *= 2;
				c = malloc(sizeof(*c) + cap);
				if (c == NULL)
					return -ENOMEM;
				*c = (struct raft_chunk){.cap = cap};
				log->chunk_next_size = cap * 2 > CHUNK_SIZE ? CHUNK_SIZE : cap * 2;
			}
			/* The old open chunk lives on while its entries do. */
			if (log->chunk_open) {
				struct raft_chunk *old = log->chunk_open;

				log->chunk_open = c;
				if (old->refs == 0)
					old->refs = 1, chunk_release(log, old);
			} else {
				log->chunk_open = c;
			}
		}
	}
	ASSERT(c->cap - c->used >= need);
	memcpy(c->data + c->used, data, size);
	*copy_out = c->data + c->used;
	c->used += need;
	c->refs++;
	*chunk_out = c;
	return 0;
}

static int log_reserve(struct raft_log *log)
{
	uint64_t cap_new;
	struct raft_entry *entries;
	struct raft_chunk **chunks;

	if (log->head + log->count < log->cap)
		return 0;
	if (log->head >= log->cap / 2 && log->head > 0) {
		/* Compaction freed the front half: slide down, amortised O(1). */
		memmove(log->entries, log->entries + log->head, log->count * sizeof(*entries));
		memmove(log->chunks, log->chunks + log->head, log->count * sizeof(*chunks));
		log->head = 0;
		return 0;
	}
	cap_new = log->cap ? log->cap * 2 : LOG_INITIAL_CAP;
	entries = malloc(cap_new * sizeof(*entries));
	chunks = malloc(cap_new * sizeof(*chunks));
	if (entries == NULL || chunks == NULL) {
		free(entries);
		free(chunks);
		return -ENOMEM;
	}
	if (log->count) {
		memcpy(entries, log->entries + log->head, log->count * sizeof(*entries));
		memcpy(chunks, log->chunks + log->head, log->count * sizeof(*chunks));
	}
	free(log->entries);
	free(log->chunks);
	log->entries = entries;
	log->chunks = chunks;
	log->cap = cap_new;
	log->head = 0;
	return 0;
}

int raft_log_append(struct raft_log *log, uint64_t term, uint32_t type, const void *data,
		    uint32_t size)
{
	struct raft_entry *e;
	struct raft_chunk *chunk;
	const void *copy;
	int rv;

	ASSERT(term >= raft_log_last_term(log)); /* Entry terms never decrease along the log. */
	rv = log_reserve(log);
	if (rv != 0)
		return rv;
	rv = chunk_copy(log, data, size, &chunk, &copy);
	if (rv != 0)
		return rv;
	e = &log->entries[log->head + log->count];
	*e = (struct raft_entry){.term = term,
				 .index = raft_log_last(log) + 1,
				 .type = type,
				 .size = size,
				 .data = copy};
	log->chunks[log->head + log->count] = chunk;
	log->count++;
	ASSERT(log->head + log->count <= log->cap);
	return 0;
}

/* Drop entries >= index (a conflicting suffix, §5.3). */
void raft_log_truncate(struct raft_log *log, uint64_t index)
{
	ASSERT(index > log->snapshot_index);
	while (raft_log_last(log) >= index) {
		log->count--;
		chunk_release(log, log->chunks[log->head + log->count]);
	}
	log->handed_index = min_u64(log->handed_index, index - 1);
	log->stable_index = min_u64(log->stable_index, index - 1);
}

/* Drop entries <= index (covered by a snapshot). */
void raft_log_compact(struct raft_log *log, uint64_t index)
{
	uint64_t term = raft_log_term_at(log, index);

	ASSERT(index > log->snapshot_index && index <= raft_log_last(log));
	while (log->snapshot_index < index) {
		chunk_release(log, log->chunks[log->head]);
		log->head++;
		log->count--;
		log->snapshot_index++;
	}
	log->snapshot_term = term;
	if (log->count == 0)
		log->head = 0;
}

/* Forget everything: the log now begins after a snapshot. */
void raft_log_reset(struct raft_log *log, uint64_t index, uint64_t term)
{
	while (log->count > 0) {
		log->count--;
		chunk_release(log, log->chunks[log->head + log->count]);
	}
	log->head = 0;
	log->snapshot_index = index;
	log->snapshot_term = term;
	log->stable_index = index;
	log->handed_index = index;
}

void raft_log_deinit(struct raft_log *log)
{
	raft_log_reset(log, 0, 0);
	free(log->chunk_open);
	while (log->chunk_free) {
		struct raft_chunk *c = log->chunk_free;

		log->chunk_free = c->next;
		free(c);
	}
	free(log->entries);
	free(log->chunks);
	memset(log, 0, sizeof(*log));
}
