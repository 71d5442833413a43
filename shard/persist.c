/* Persistence: a group's ready goes into the open WAL batch (snapshot mark,
 * entries, hard state), the persisted positions wait in a queue for their
 * batch to be durable, and messages that depend on a batch (msgs_after) are
 * held until it is.
 *
 * BACK-PRESSURE: when the WAL's batch buffers are full (-EAGAIN), nothing
 * waits for them. What the group hands to the WAL from then on is copied
 * into its deferred records, in order, with the msgs_after that depend on
 * them; the group takes no new ready while it has any (the turn keeps it
 * stalled: table_stall) and persist_drain() appends them at its next turn,
 * after the turn's flush made room. A group's records thus reach the WAL in
 * the order the engine handed them out, and no message leaves before what
 * it depends on is durable. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

int persist_push(struct shard *s, struct persist_item item)
{
	if (s->persist_count > 0) {
		const struct persist_item *last =
		    &s->persist[(s->persist_head + s->persist_count - 1) % s->persist_cap];

		ASSERT(item.batch >= last->batch); /* WAL positions never go back. */
	}
	if (s->persist_count == s->persist_cap) {
		uint64_t cap = s->persist_cap ? s->persist_cap * 2 : 256;
		struct persist_item *p = malloc(cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		for (uint64_t i = 0; i < s->persist_count; i++)
			p[i] = s->persist[(s->persist_head + i) % s->persist_cap];
		free(s->persist);
		s->persist = p;
		s->persist_cap = cap;
		s->persist_head = 0;
	}
	s->persist[(s->persist_head + s->persist_count++) % s->persist_cap] = item;
	return 0;
}

bool persist_pop(struct shard *s, uint64_t durable, struct persist_item *item)
{
	if (s->persist_count == 0 || s->persist[s->persist_head].batch > durable)
		return false;
	*item = s->persist[s->persist_head];
	s->persist_head = (s->persist_head + 1) % s->persist_cap;
	s->persist_count--;
	return true;
}

/* HELD MESSAGE: records in s->held, oldest first, each
 *    0: u64 batch   send once this WAL batch is durable
 *    8: u64 peer
 *   16: u64 size    of the encoded message that follows, padded to 8 */
static uint8_t *persist_hold_reserve(struct shard *s, uint64_t batch, uint64_t peer, size_t size)
{
	uint8_t *p;

	ASSERT(batch >= s->held_batch); /* Released in order: batches never go back. */
	if (buf_reserve(&s->held, 24 + size) != 0) {
		stat_add(&s->stats.msgs_dropped, 1);
		return NULL;
	}
	s->held_batch = batch;
	p = s->held.data + s->held.len;
	memcpy(p, &batch, 8);
	memcpy(p + 8, &peer, 8);
	memcpy(p + 16, &(uint64_t){size}, 8);
	s->held.len += 24 + size;
	return p + 24;
}

void persist_hold(struct shard *s, uint64_t batch, const struct raft_msg *m)
{
	uint8_t *at = persist_hold_reserve(s, batch, m->to, wire_msg_size(m));

	if (at)
		wire_msg_encode(m, at);
}

static void persist_hold_encoded(struct shard *s, uint64_t batch, uint64_t peer, const uint8_t *msg,
				 size_t size)
{
	uint8_t *at = persist_hold_reserve(s, batch, peer, size);

	if (at)
		memcpy(at, msg, size);
}

void persist_release(struct shard *s, uint64_t durable, persist_send_cb send)
{
	while (s->held_off < s->held.len) {
		uint8_t *p = s->held.data + s->held_off;
		uint64_t batch, peer, size;

		memcpy(&batch, p, 8);
		if (batch > durable)
			break;
		ASSERT(batch <= s->held_batch);
		memcpy(&peer, p + 8, 8);
		memcpy(&size, p + 16, 8);
		send(s, peer, p + 24, size);
		s->held_off += 24 + size;
	}
	if (s->held_off == s->held.len) {
		buf_trim(&s->held, s->held.len);
		s->held.len = s->held_off = 0;
	}
}

/* Runs while the loop reaps completions: only note the news; the turn acts on it, so that no
 * engine is called while a ready of it may be borrowed. */
void persist_durable_done(struct wal *wal, uint64_t batch, int rv)
{
	struct shard *s = container_of(wal, struct shard, wal);

	if (rv < 0)
		s->wal_error = rv;
	if (batch > s->durable_batch)
		s->durable_batch = batch;
}

/* Keep r at the end of g's deferred records. Returns 0 or -ENOMEM. */
static int persist_defer(struct group *g, const struct persist_record *r)
{
	if (g->deferred_count == g->deferred_cap) {
		struct persist_record *p =
		    array_grow(g->deferred, &g->deferred_cap, g->deferred_count + 1, sizeof(*p), 8);

		if (p == NULL)
			return -ENOMEM;
		g->deferred = p;
	}
	g->deferred[g->deferred_count++] = *r;
	return 0;
}

static void persist_record_free(struct persist_record *r)
{
	free(r->mem);
	*r = (struct persist_record){0};
}

void persist_drop(struct group *g)
{
	for (uint32_t i = 0; i < g->deferred_count; i++)
		persist_record_free(&g->deferred[i]);
	g->deferred_count = 0;
}

void persist_deinit(struct group *g)
{
	persist_drop(g);
	free(g->deferred);
	g->deferred = NULL;
	g->deferred_cap = 0;
}

/* Append entries first_index... of g, in pieces the WAL takes at once: a
 * follower catching up may receive more in one turn than one append may
 * hold (-EMSGSIZE, returned before anything is written). Each piece starts
 * where the last one ended, so a crash between pieces leaves a prefix of
 * the entries: a shorter log, never a hole. Once the last is in, its
 * position waits for its batch (persist_push). Returns 0, -EAGAIN with
 * *written of them appended, or the WAL's error. */
static int persist_entries_write(struct shard *s, struct group *g, uint64_t first_index,
				 const struct wal_entry *entries, uint32_t count, uint32_t *written)
{
	uint32_t piece = count;
	int rv;

	*written = 0;
	while (*written < count) {
		uint32_t n = piece < count - *written ? piece : count - *written;

		rv = wal_append_entries(&s->wal, g->id, first_index + *written, entries + *written,
					n);
		if (rv == -EMSGSIZE && n > 1) {
			piece = n / 2;
			continue;
		}
		if (rv != 0)
			return rv;
		*written += n;
	}
	return persist_push(s, (struct persist_item){wal_position(&s->wal), g->id,
						     first_index + count - 1,
						     entries[count - 1].term});
}

/* Defer entries first_index... of g: copies of them and their payloads, in
 * one allocation. Returns 0 or -ENOMEM. */
static int persist_defer_entries(struct group *g, uint64_t first_index,
				 const struct wal_entry *entries, uint32_t count)
{
	size_t size = (size_t)count * sizeof(*entries);
	struct persist_record r = {
	    .kind = PERSIST_ENTRIES, .index = first_index, .entries_count = count};
	uint8_t *data;
	int rv;

	for (uint32_t i = 0; i < count; i++)
		size += entries[i].size;
	r.mem = malloc(size ? size : 1);
	if (r.mem == NULL)
		return -ENOMEM;
	r.entries = r.mem;
	data = (uint8_t *)(r.entries + count);
	for (uint32_t i = 0; i < count; i++) {
		r.entries[i] = entries[i];
		r.entries[i].data = data;
		if (entries[i].size)
			memcpy(data, entries[i].data, entries[i].size);
		data += entries[i].size;
	}
	rv = persist_defer(g, &r);
	if (rv != 0)
		free(r.mem);
	return rv;
}

int persist_append_entries(struct shard *s, struct group *g, const struct raft_entry *entries,
			   uint32_t count)
{
	struct wal_entry *we;
	uint32_t written = 0;
	int rv;

	ASSERT(count > 0);
	we = array_grow(s->wal_entries, &s->wal_entries_cap, count, sizeof(*we), 8);
	if (we == NULL)
		return -ENOMEM;
	s->wal_entries = we;
	for (uint32_t i = 0; i < count; i++) {
		ASSERT(entries[i].index == entries[0].index + i); /* A ready's entries are a run. */
		we[i] = (struct wal_entry){.term = entries[i].term,
					   .type = entries[i].type,
					   .size = entries[i].size,
					   .data = entries[i].data};
	}
	rv = g->deferred_count > 0
		 ? -EAGAIN
		 : persist_entries_write(s, g, entries[0].index, we, count, &written);
	if (rv == -EAGAIN)
		rv = persist_defer_entries(g, entries[0].index + written, we + written,
					   count - written);
	return rv;
}

int persist_append_mark(struct shard *s, struct group *g, uint64_t index, uint64_t term)
{
	int rv = g->deferred_count > 0 ? -EAGAIN : wal_append_mark(&s->wal, g->id, index, term);

	if (rv == -EAGAIN)
		rv = persist_defer(g, &(struct persist_record){
					  .kind = PERSIST_MARK, .index = index, .term = term});
	return rv;
}

int persist_append_hard(struct shard *s, struct group *g, const struct wal_hard *hard)
{
	int rv = g->deferred_count > 0 ? -EAGAIN : wal_append_hard(&s->wal, g->id, hard);

	if (rv == -EAGAIN)
		rv =
		    persist_defer(g, &(struct persist_record){.kind = PERSIST_HARD, .hard = *hard});
	return rv;
}

void persist_after(struct shard *s, struct group *g, struct peer *p, const struct raft_msg *m)
{
	uint64_t position = wal_position(&s->wal);
	struct persist_record r = {.kind = PERSIST_MSG, .peer = p->id};

	if (g->deferred_count > 0) {
		/* Behind records not in the WAL yet: encoded now (the engine's
		 * message is borrowed), held once they are in. */
		r.size = wire_msg_size(m);
		r.mem = malloc(r.size);
		if (r.mem != NULL) {
			wire_msg_encode(m, r.mem);
			if (persist_defer(g, &r) == 0)
				return;
		}
		free(r.mem);
		stat_add(&s->stats.msgs_dropped, 1); /* Lost, as a network may lose it. */
		return;
	}
	if (position > wal_durable(&s->wal))
		persist_hold(s, position, m);
	else
		peer_queue(s, p, m);
}

int persist_drain(struct shard *s, struct group *g)
{
	uint32_t taken = 0;
	int rv = 0;

	while (taken < g->deferred_count && rv == 0) {
		struct persist_record *r = &g->deferred[taken];
		uint64_t position;
		uint32_t written;

		switch (r->kind) {
		case PERSIST_MARK:
			rv = wal_append_mark(&s->wal, g->id, r->index, r->term);
			break;
		case PERSIST_HARD:
			rv = wal_append_hard(&s->wal, g->id, &r->hard);
			break;
		case PERSIST_ENTRIES:
			rv = persist_entries_write(s, g, r->index, r->entries, r->entries_count,
						   &written);
			if (rv == -EAGAIN) { /* Keep the rest. */
				r->index += written;
				r->entries += written;
				r->entries_count -= written;
			}
			break;
		case PERSIST_MSG:
			position = wal_position(&s->wal);
			if (position > wal_durable(&s->wal))
				persist_hold_encoded(s, position, r->peer, r->mem, r->size);
			else
				peer_queue_encoded(s, r->peer, r->mem, r->size);
			break;
		default:
			ASSERT(false); /* Only the kinds above are deferred. */
		}
		if (rv == 0)
			persist_record_free(&g->deferred[taken++]);
	}
	if (taken > 0) { /* Else g->deferred may be NULL: nothing to move. */
		memmove(g->deferred, g->deferred + taken,
			(g->deferred_count - taken) * sizeof(*g->deferred));
		g->deferred_count -= taken;
	}
	return rv;
}

int persist_append_ready(struct shard *s, struct group *g, const struct raft_ready *rd)
{
	int rv = 0;

	if (rd->snapshot)
		rv = persist_append_mark(s, g, rd->snapshot->index, rd->snapshot->term);
	if (rv == 0 && rd->entries_count > 0)
		rv = persist_append_entries(s, g, rd->entries, rd->entries_count);
	/* Term and vote must be durable before what depends on them leaves;
	 * commit need not be (a restarted node learns it again from the
	 * leader), so a change of commit alone writes nothing: with many
	 * groups that would be a record per group per turn. */
	if (rv == 0 && rd->hard_changed &&
	    (rd->hard.term != g->hard_term || rd->hard.vote != g->hard_vote)) {
		/* REPAIR: the flag stays on every hard state until the repair
		 * ends, so that a restart resumes it (see recover_groups()). */
		struct wal_hard hard = {rd->hard.term, rd->hard.vote, rd->hard.commit,
					raft_is_repairing(&g->raft)};

		rv = persist_append_hard(s, g, &hard);
		if (rv == 0) { /* In the WAL, or deferred to go in next. */
			g->hard_term = rd->hard.term;
			g->hard_vote = rd->hard.vote;
		}
	}
	return rv;
}
