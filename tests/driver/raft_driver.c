/* The shared engine driver of the tests: see raft_driver.h. */
#include "tests/driver/raft_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *raft_driver_alloc(size_t size)
{
	void *p = calloc(1, size ? size : 1);

	if (p == NULL) {
		fprintf(stderr, "raft_driver: out of memory\n");
		abort();
	}
	return p;
}

static bool entry_keeps_payload(const struct raft_entry *e, bool metadata)
{
	return !(metadata && e->type == RAFT_ENTRY_NORMAL) && e->size > 0;
}

void raft_driver_msg_copy(struct raft_driver_msg *dst, const struct raft_msg *m, bool metadata)
{
	uint64_t bytes = 0, off = 0;

	memset(dst, 0, sizeof(*dst));
	dst->m = *m;
	dst->m.entries = NULL;
	dst->m.snapshot = NULL;
	if (m->entries_count > 0) {
		dst->entries = raft_driver_alloc(m->entries_count * sizeof(*dst->entries));
		for (uint32_t i = 0; i < m->entries_count; i++)
			bytes +=
			    entry_keeps_payload(&m->entries[i], metadata) ? m->entries[i].size : 0;
		dst->payload = raft_driver_alloc(bytes);
		for (uint32_t i = 0; i < m->entries_count; i++) {
			dst->entries[i] = m->entries[i];
			dst->entries[i].data = NULL;
			if (!entry_keeps_payload(&m->entries[i], metadata)) {
				if (m->entries[i].type == RAFT_ENTRY_NORMAL && metadata)
					dst->entries[i].size =
					    0; /* A witness keeps metadata only. */
				continue;
			}
			memcpy(dst->payload + off, m->entries[i].data, m->entries[i].size);
			dst->entries[i].data = dst->payload + off;
			off += m->entries[i].size;
		}
	}
	if (m->snapshot != NULL) {
		dst->snap = *m->snapshot;
		dst->has_snap = true;
	}
}

const struct raft_msg *raft_driver_msg_view(struct raft_driver_msg *dm)
{
	dm->m.entries = dm->m.entries_count > 0 ? dm->entries : NULL;
	dm->m.snapshot = dm->has_snap ? &dm->snap : NULL;
	return &dm->m;
}

void raft_driver_msg_free(struct raft_driver_msg *dm)
{
	free(dm->entries);
	free(dm->payload);
	memset(dm, 0, sizeof(*dm));
}

void raft_driver_entry_copy(struct raft_entry *dst, const struct raft_entry *src, bool metadata)
{
	*dst = *src;
	dst->data = NULL;
	if (metadata && src->type == RAFT_ENTRY_NORMAL)
		dst->size = 0; /* A witness keeps metadata only. */
	if (dst->size > 0) {
		void *p = raft_driver_alloc(dst->size);

		memcpy(p, src->data, dst->size);
		dst->data = p;
	}
}

bool raft_driver_ready_writes(const struct raft_ready *rd)
{
	return rd->entries_count || rd->hard_changed || rd->msgs_after_count || rd->snapshot;
}

struct raft_driver_write *raft_driver_write_push(const struct raft_driver_store *store,
						 const struct raft_ready *rd)
{
	struct raft_driver_write *w;

	if (*store->writes_count == *store->writes_cap) {
		*store->writes_cap = *store->writes_cap ? *store->writes_cap * 2 : 8;
		*store->writes =
		    realloc(*store->writes, *store->writes_cap * sizeof(**store->writes));
		if (*store->writes == NULL)
			abort();
	}
	w = &(*store->writes)[(*store->writes_count)++];
	memset(w, 0, sizeof(*w));
	w->hard = rd->hard;
	w->hard_changed = rd->hard_changed;
	if (rd->snapshot != NULL) {
		w->has_snap = true;
		w->last_index = rd->snapshot->index;
		w->last_term = rd->snapshot->term;
	}
	if (rd->entries_count > 0) {
		w->has_entries = true;
		w->first_index = rd->entries[0].index;
		w->terms = raft_driver_alloc(rd->entries_count * sizeof(*w->terms));
		for (uint32_t i = 0; i < rd->entries_count; i++)
			w->terms[i] = rd->entries[i].term;
		w->last_index = rd->entries[rd->entries_count - 1].index;
		w->last_term = rd->entries[rd->entries_count - 1].term;
	}
	w->after_count = rd->msgs_after_count;
	w->after = raft_driver_alloc(rd->msgs_after_count * sizeof(*w->after));
	for (uint32_t i = 0; i < rd->msgs_after_count; i++)
		raft_driver_msg_copy(&w->after[i], &rd->msgs_after[i], false);
	return w;
}

void raft_driver_write_free(struct raft_driver_write *w)
{
	for (uint32_t j = 0; j < w->after_count; j++)
		raft_driver_msg_free(&w->after[j]);
	free(w->after);
	free(w->terms);
	memset(w, 0, sizeof(*w));
}

void raft_driver_writes_drop(const struct raft_driver_store *store)
{
	for (uint32_t i = 0; i < *store->writes_count; i++)
		raft_driver_write_free(&(*store->writes)[i]);
	*store->writes_count = 0;
}

void raft_driver_persist(struct raft *raft, uint64_t id, const struct raft_driver_store *store,
			 const struct raft_driver_ops *ops)
{
	struct raft_driver_write *writes = *store->writes;
	uint32_t count = *store->writes_count;

	/* Detach the list: persisting may produce new readies and writes. */
	*store->writes = NULL;
	*store->writes_count = *store->writes_cap = 0;
	for (uint32_t i = 0; i < count; i++) {
		struct raft_driver_write *w = &writes[i];

		if (ops->durable != NULL)
			ops->durable(ops->arg, id, w);
		*store->hard = w->hard;
		if (w->has_snap || w->has_entries)
			*store->durable_last = w->last_index;
		if (w->has_entries)
			raft_persisted(raft, w->last_index, w->last_term);
		for (uint32_t j = 0; j < w->after_count; j++)
			ops->send(ops->arg, id, raft_driver_msg_view(&w->after[j]));
		raft_driver_write_free(w);
	}
	free(writes);
}

bool raft_driver_drain(struct raft *raft, uint64_t id, const struct raft_driver_store *store,
		       bool hold, uint64_t *applied_index, uint32_t rounds_max,
		       const struct raft_driver_ops *ops)
{
	for (uint32_t round = 0; raft_has_ready(raft); round++) {
		struct raft_ready rd;
		uint64_t applied_before = *applied_index;

		if (round >= rounds_max)
			return false;
		raft_ready(raft, &rd);
		ops->take(ops->arg, id, &rd);
		if (raft_driver_ready_writes(&rd))
			raft_driver_write_push(store, &rd);
		/* The ready's pointers are dead from here on. */
		if (!hold)
			raft_driver_persist(raft, id, store, ops);
		if (*applied_index > applied_before)
			raft_applied(raft, *applied_index);
	}
	return true;
}
