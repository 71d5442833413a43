/* The group table of a shard (open addressing by group id, no tombstones),
 * its heap of group deadlines, and the lists of groups the turn processes:
 * dirty (something to do this turn) and stalled (WAL records deferred:
 * retried at the next turn, after the WAL's flush). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* The slot of a group in its shard's table. The node picks the shard from
 * the low bits of the same XXH3 (node_shard_of): take the table's bits from
 * the high half, or every group of a shard would start its probe at an even
 * (with 2 shards) slot, and clusters would grow long. */
static uint64_t table_hash(uint64_t id)
{
	return XXH3_64bits(&id, sizeof(id)) >> 32;
}

int table_init(struct shard *s, uint64_t cap)
{
	ASSERT(cap > 0 && (cap & (cap - 1)) == 0); /* Probes wrap with a mask. */
	s->groups_count = 0;
	s->table = calloc(cap, sizeof(*s->table));
	s->table_ids = malloc(cap * sizeof(*s->table_ids));
	if (s->table == NULL || s->table_ids == NULL) {
		table_deinit(s);
		return -ENOMEM;
	}
	s->table_cap = cap;
	return 0;
}

void table_deinit(struct shard *s)
{
	free(s->table);
	free(s->table_ids);
	free(s->heap);
	s->table = NULL;
	s->table_ids = NULL;
	s->heap = NULL;
	s->table_cap = s->groups_count = 0;
	s->heap_count = s->heap_cap = 0;
}

struct group *table_find(struct shard *s, uint64_t id)
{
	uint64_t mask = s->table_cap - 1;

	for (uint64_t i = table_hash(id) & mask;; i = (i + 1) & mask) {
		if (s->table[i] == NULL)
			return NULL;
		if (s->table_ids[i] == id)
			return s->table[i];
	}
}

static void table_put(struct group **table, uint64_t *ids, uint64_t cap, struct group *g)
{
	uint64_t mask = cap - 1, i = table_hash(g->id) & mask;

	while (table[i] != NULL)
		i = (i + 1) & mask;
	table[i] = g;
	ids[i] = g->id;
}

int table_insert(struct shard *s, struct group *g)
{
	ASSERT(table_find(s, g->id) == NULL); /* One group per id. */
	if ((s->groups_count + 1) * 2 > s->table_cap) {
		uint64_t cap = s->table_cap * 2;
		struct group **table = calloc(cap, sizeof(*table));
		uint64_t *ids = malloc(cap * sizeof(*ids));

		if (table == NULL || ids == NULL) {
			free(table);
			free(ids);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < s->table_cap; i++)
			if (s->table[i])
				table_put(table, ids, cap, s->table[i]);
		free(s->table);
		free(s->table_ids);
		s->table = table;
		s->table_ids = ids;
		s->table_cap = cap;
	}
	table_put(s->table, s->table_ids, s->table_cap, g);
	s->groups_count++;
	ASSERT(s->groups_count * 2 <= s->table_cap); /* At most half full: probes end. */
	stat_add(&s->stats.groups, 1);
	/* Counted node-wide, unless the slot was taken already: group_reserve(). */
	if (s->group_reserved)
		s->group_reserved = false;
	else if (s->config.groups_hosted != NULL)
		atomic_fetch_add(s->config.groups_hosted, 1);
	return 0;
}

/* Remove by backward shift, so that probes never need tombstones. */
void table_erase(struct shard *s, struct group *g)
{
	uint64_t mask = s->table_cap - 1, i = table_hash(g->id) & mask;

	ASSERT(s->groups_count > 0);
	while (s->table[i] != g)
		i = (i + 1) & mask;
	s->table[i] = NULL;
	for (uint64_t j = (i + 1) & mask; s->table[j] != NULL; j = (j + 1) & mask) {
		struct group *h = s->table[j];

		s->table[j] = NULL;
		table_put(s->table, s->table_ids, s->table_cap, h);
	}
	s->groups_count--;
	ASSERT(table_find(s, g->id) == NULL); /* Gone, and the shift kept the others. */
	atomic_fetch_sub_explicit(&s->stats.groups, 1, memory_order_relaxed);
	if (s->config.groups_hosted != NULL)
		atomic_fetch_sub(s->config.groups_hosted, 1);
}

int table_deadline_push(struct shard *s, uint64_t deadline_ms, uint64_t group)
{
	struct table_deadline *heap =
	    array_grow(s->heap, &s->heap_cap, s->heap_count + 1, sizeof(*s->heap), 8);
	uint32_t i;

	if (heap == NULL)
		return -ENOMEM;
	s->heap = heap;
	i = s->heap_count++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (s->heap[parent].deadline_ms <= deadline_ms)
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = (struct table_deadline){deadline_ms, group};
	ASSERT(i == 0 || s->heap[(i - 1) / 2].deadline_ms <= deadline_ms);
	return 0;
}

struct table_deadline table_deadline_pop(struct shard *s)
{
	struct table_deadline top, last;
	uint32_t i = 0;

	ASSERT(s->heap_count > 0);
	top = s->heap[0];
	last = s->heap[--s->heap_count];
	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= s->heap_count)
			break;
		if (child + 1 < s->heap_count &&
		    s->heap[child + 1].deadline_ms < s->heap[child].deadline_ms)
			child++;
		if (last.deadline_ms <= s->heap[child].deadline_ms)
			break;
		s->heap[i] = s->heap[child];
		i = child;
	}
	if (s->heap_count > 0)
		s->heap[i] = last;
	ASSERT(s->heap_count == 0 || top.deadline_ms <= s->heap[0].deadline_ms); /* Min first. */
	return top;
}

void table_dirty(struct shard *s, struct group *g)
{
	if (g->dirty)
		return;
	g->dirty = true;
	g->dirty_next = s->dirty_head;
	s->dirty_head = g;
}

/* g has WAL records deferred: no ready this turn; table_wake_stalled()
 * makes it dirty again at the next. */
void table_stall(struct shard *s, struct group *g)
{
	if (g->stalled)
		return;
	g->stalled = true;
	g->stalled_next = s->stalled_head;
	s->stalled_head = g;
}

void table_wake_stalled(struct shard *s)
{
	while (s->stalled_head) {
		struct group *g = s->stalled_head;

		s->stalled_head = g->stalled_next;
		g->stalled = false;
		table_dirty(s, g);
	}
}

/* Take g off the dirty and stalled lists (it is about to be freed). */
void table_unlink(struct shard *s, struct group *g)
{
	struct group **link;

	if (g->dirty) {
		for (link = &s->dirty_head; *link != g; link = &(*link)->dirty_next)
			ASSERT(*link != NULL); /* A dirty group is on the list. */
		*link = g->dirty_next;
		g->dirty = false;
	}
	if (g->stalled) {
		for (link = &s->stalled_head; *link != g; link = &(*link)->stalled_next)
			ASSERT(*link != NULL); /* A stalled group is on the list. */
		*link = g->stalled_next;
		g->stalled = false;
	}
}
