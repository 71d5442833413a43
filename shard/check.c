/* Consistency checks: mark and result entries, digests, divergence. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/le.h"
#include "shard/shard_internal.h"

/* CHECK ENTRY: the payload of a RAFT_ENTRY_CHECK, 24 bytes, little-endian.
 *    0: u32 kind     CHECK_MARK: every replica records its digest here;
 *                    CHECK_RESULT: the leader's digest at a mark
 *    4: u32 source   RESULT: enum check_source of the digest; MARK: 0
 *    8: u64 index    RESULT: the mark's log index; MARK: 0
 *   16: u64 digest   RESULT: the leader's digest at that mark; MARK: 0
 *
 * The leader appends a MARK every check_entries log entries, or for
 * fl_group_check(). Every replica, when it applies the MARK at index i,
 * records the digest of its state right after applying entry i - 1 (the
 * apply call is split there): sm.digest() when the embedder supplies one
 * (CHECK_SOURCE_STATE), else the running XXH3 of the NORMAL entries (index,
 * term, payload) it applied since the previous MARK (CHECK_SOURCE_ENTRIES).
 * The leader, once it applied the MARK, appends a RESULT with its digest:
 * the leader is the reference. Every replica compares when it applies the
 * RESULT; one that differs is diverged: a log line, the divergences counter,
 * sm.diverged(), and reads of the group fail with ERR_DIVERGED from then on,
 * until it is rebuilt or a later check finds its whole state (a state
 * digest) equal to its leader's again. A leader whose own state went wrong
 * thus makes every follower report a divergence while it keeps serving:
 * the replicas' reports together say which one is wrong; moving leadership
 * to one of them makes its next check clear it, and the old leader, now a
 * follower, is found diverged and can be rebuilt.
 *
 * Snapshots: a state digest is the same after a restore, so it is always
 * compared. The entry hash is a window between two MARKs; a replica that
 * restored a snapshot (from its leader, or its own at restart) inside a
 * window does not know it and records CHECK_SOURCE_UNKNOWN, which is never
 * compared; the next MARK opens a window it sees whole. Nothing about
 * checks is kept on disk: a restart replays the log, MARKs included.
 *
 * After fl_group_rebuild() the replica applies its log after the snapshot
 * again: RESULTs it had applied before are history (perhaps digests of a
 * leader whose state was the wrong one) and are not compared again.
 *
 * Failure modes: a malformed payload (only a bug or a corrupt log can make
 * one; checksums guard both) is logged and skipped; a RESULT whose MARK
 * this replica did not record (restored past it, or too many marks in
 * flight) is not compared; a leadership change may lose a RESULT, and the
 * next MARK starts over. */
enum check_kind { CHECK_MARK = 1, CHECK_RESULT = 2 };
enum check_source { CHECK_SOURCE_UNKNOWN = 0, CHECK_SOURCE_STATE = 1, CHECK_SOURCE_ENTRIES = 2 };
#define CHECK_PAYLOAD_SIZE 24

struct check_payload {
	uint32_t kind, source;
	uint64_t index, digest;
};

static void check_encode(const struct check_payload *c, uint8_t buf[CHECK_PAYLOAD_SIZE])
{
	le_put32(buf, c->kind);
	le_put32(buf + 4, c->source);
	le_put64(buf + 8, c->index);
	le_put64(buf + 16, c->digest);
}

static bool check_decode(const struct raft_entry *e, struct check_payload *c)
{
	const uint8_t *p = e->data;

	if (e->size != CHECK_PAYLOAD_SIZE || p == NULL)
		return false;
	*c = (struct check_payload){.kind = le_get32(p),
				    .source = le_get32(p + 4),
				    .index = le_get64(p + 8),
				    .digest = le_get64(p + 16)};
	if (c->kind == CHECK_MARK)
		return c->source == 0 && c->index == 0 && c->digest == 0;
	return c->kind == CHECK_RESULT && c->source <= CHECK_SOURCE_ENTRIES && c->index != 0 &&
	       c->index < e->index;
}

/* Fold an applied entry into the window hash (used without sm.digest). */
void check_hash_entry(struct group *g, const struct fl_entry *e)
{
	static const uint8_t empty[1];
	uint8_t header[16];

	le_put64(header, e->index);
	le_put64(header + 8, e->term);
	g->check_hash = XXH3_64bits_withSeed(header, sizeof(header), g->check_hash);
	g->check_hash = XXH3_64bits_withSeed(e->size ? e->data : empty, e->size, g->check_hash);
}

/* Forget what the state before a restore said: its records and its window. */
void check_forget(struct group *g)
{
	memset(g->checks, 0, sizeof(g->checks));
	g->check_hash = 0;
	g->check_hash_known = false;
}

/* Settle fl_group_check() callbacks: the one of the mark at index, and any
 * older one whose result will not come. */
static void check_waits_settle(struct group *g, uint64_t index)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->check_waits_count; i++) {
		struct check_wait *w = &g->check_waits[i];

		if (w->index == index)
			pending_answer(w->cb, w->arg, pending_read_rv(g), index,
				       raft_leader(&g->raft));
		else if (w->index < index)
			pending_answer(w->cb, w->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		else
			g->check_waits[kept++] = *w;
	}
	g->check_waits_count = kept;
}

static void check_diverge(struct shard *s, struct group *g, uint64_t index, uint64_t local,
			  uint64_t leader)
{
	log_group(&s->config.log, LOG_LEVEL_ERROR, (int32_t)s->config.shard_index, g->id,
		  "DIVERGED: at check index %llu this replica's digest is %016llx, the leader's "
		  "%016llx; reads refused until it is rebuilt",
		  (unsigned long long)index, (unsigned long long)local, (unsigned long long)leader);
	if (g->diverged)
		return; /* Counted and reported once until rebuilt. */
	g->diverged = true;
	stat_add(&s->stats.divergences, 1);
	for (uint32_t i = 0; i < g->reads_count; i++)
		pending_answer(g->reads[i].cb, g->reads[i].arg, ERR_DIVERGED, 0,
			       raft_leader(&g->raft));
	for (uint32_t i = 0; i < g->reads_apply_count; i++)
		pending_answer(g->reads_apply[i].cb, g->reads_apply[i].arg, ERR_DIVERGED, 0,
			       raft_leader(&g->raft));
	g->reads_count = g->reads_apply_count = 0;
	if (s->config.sm.diverged)
		s->config.sm.diverged(s->config.sm.ctx, g->id, index, local, leader);
}

/* A MARK at index is applied: everything before it is. */
static void check_mark_apply(struct shard *s, struct group *g, uint64_t index)
{
	static_assert(256 % SHARD_CHECKS_MAX == 0, "checks_next (8 bits) wraps with the ring");
	struct check_record *r = &g->checks[g->checks_next++ % SHARD_CHECKS_MAX];

	*r = (struct check_record){.index = index, .source = CHECK_SOURCE_UNKNOWN};
	if (group_is_witness(g)) {
		/* No state, no entries' payloads: nothing to digest. */
	} else if (s->config.sm.digest) {
		r->source = CHECK_SOURCE_STATE;
		r->digest = s->config.sm.digest(s->config.sm.ctx, g->id);
	} else if (g->check_hash_known) {
		r->source = CHECK_SOURCE_ENTRIES;
		r->digest = g->check_hash;
	}
	g->check_hash = 0;
	g->check_hash_known = true;
	g->check_mark = index;
	if (g->check_proposed == index)
		g->check_proposed = 0;
	/* The leader's digest is the reference; check_propose_due() appends it. */
	if (raft_is_leader(&g->raft) && g->owed_count < SHARD_CHECKS_MAX)
		g->owed[g->owed_count++] = *r;
}

static void check_result_apply(struct shard *s, struct group *g, const struct check_payload *c,
			       uint64_t entry_index)
{
	const struct check_record *r = NULL;

	if (entry_index <= g->replay_until) {
		/* Applied again after a rebuild: a leader's digest from before it,
		 * perhaps of the very state the rebuild replaced. Not evidence. */
		check_waits_settle(g, c->index);
		return;
	}
	if (group_is_witness(g)) {
		check_waits_settle(g, c->index);
		return; /* A witness holds no state to compare. */
	}
	for (uint32_t i = 0; i < SHARD_CHECKS_MAX; i++)
		if (g->checks[i].index == c->index)
			r = &g->checks[i];
	if (r != NULL && r->source != CHECK_SOURCE_UNKNOWN && r->source == c->source) {
		stat_add(&s->stats.checks, 1);
		if (r->digest != c->digest) {
			check_diverge(s, g, c->index, r->digest, c->digest);
		} else if (g->diverged && r->source == CHECK_SOURCE_STATE) {
			/* Our whole state equals the leader's now: a divergence found
			 * against an earlier leader (one whose own state was wrong)
			 * no longer holds. An entry hash proves no such thing. */
			g->diverged = false;
			log_group(
			    &s->config.log, LOG_LEVEL_INFO, (int32_t)s->config.shard_index, g->id,
			    "matches its leader again at check index %llu; reads served again",
			    (unsigned long long)c->index);
		}
	}
	check_waits_settle(g, c->index);
}

void check_apply(struct shard *s, struct group *g, const struct raft_entry *e)
{
	struct check_payload c;

	if (!check_decode(e, &c)) {
		log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, g->id,
			  "malformed check entry %llu skipped", (unsigned long long)e->index);
		return;
	}
	if (c.kind == CHECK_MARK)
		check_mark_apply(s, g, e->index);
	else
		check_result_apply(s, g, &c, e->index);
}

static int check_propose(struct group *g, const struct check_payload *c, uint64_t *index)
{
	uint8_t buf[CHECK_PAYLOAD_SIZE];

	check_encode(c, buf);
	return raft_propose_check(&g->raft, buf, sizeof(buf), index);
}

/* After a group's readies: a leader appends the results it owes and, every
 * check_entries entries, a new mark. A follower owes nothing. */
void check_propose_due(struct shard *s, struct group *g)
{
	struct check_payload mark = {.kind = CHECK_MARK};
	uint64_t index;

	if (g->rebuilding && raft_is_leader(&g->raft)) {
		g->rebuilding = false; /* No one to take a snapshot from. */
		pending_answer(g->rebuild_cb, g->rebuild_arg, ERR_DROPPED, 0,
			       raft_leader(&g->raft));
	}
	if (!raft_is_leader(&g->raft)) {
		g->owed_count = 0;
		g->check_proposed = 0;
		for (uint32_t i = 0; i < g->check_waits_count; i++)
			pending_answer(g->check_waits[i].cb, g->check_waits[i].arg, ERR_DROPPED, 0,
				       raft_leader(&g->raft));
		g->check_waits_count = 0;
		return;
	}
	for (uint32_t i = 0; i < g->owed_count; i++) {
		struct check_payload c = {.kind = CHECK_RESULT,
					  .source = g->owed[i].source,
					  .index = g->owed[i].index,
					  .digest = g->owed[i].digest};

		if (check_propose(g, &c, &index) == 0)
			table_dirty(s, g);
	}
	g->owed_count = 0;
	if (s->config.check_entries == 0 || g->check_proposed != 0 || s->wal_failed ||
	    s->space_low || raft_applied_index(&g->raft) < g->check_mark + s->config.check_entries)
		return;
	if (check_propose(g, &mark, &index) == 0) {
		g->check_proposed = index;
		table_dirty(s, g);
	}
}

/* fl_group_rebuild(): ask the leader for a snapshot; catchup_install() ends it. */
int check_rebuild_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg)
{
	int rv;

	if (group_is_witness(g))
		return ERR_WITNESS; /* No state to rebuild. */
	if (s->config.sm.save == NULL || s->config.sm.restore == NULL)
		return -ENOTSUP;
	if (g->rebuilding)
		return -EALREADY;
	rv = raft_want_snapshot(&g->raft);
	if (rv != 0)
		return rv;
	log_group(&s->config.log, LOG_LEVEL_INFO, (int32_t)s->config.shard_index, g->id,
		  "rebuilding from a snapshot of leader %llu",
		  (unsigned long long)raft_leader(&g->raft));
	g->rebuilding = true;
	g->rebuild_cb = cb;
	g->rebuild_arg = arg;
	table_dirty(s, g);
	return 0;
}

/* fl_group_check(): append a mark now; cb waits for its result. */
int check_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg)
{
	struct check_payload mark = {.kind = CHECK_MARK};
	struct check_wait *waits = array_grow(g->check_waits, &g->check_waits_cap,
					      g->check_waits_count + 1, sizeof(*waits), 8);
	uint64_t index;
	int rv;

	if (waits == NULL)
		return -ENOMEM; /* Before the mark: no mark without its waiter. */
	g->check_waits = waits;
	rv = check_propose(g, &mark, &index);
	if (rv != 0)
		return rv;
	g->check_waits[g->check_waits_count++] = (struct check_wait){index, cb, arg};
	table_dirty(s, g);
	return 0;
}
