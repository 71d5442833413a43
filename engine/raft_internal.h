/* What the files of the Raft core share; nothing outside engine/ includes it.
 *
 * The engine is one state machine cut along its concerns, in layers that
 * call downward:
 *   raft.c             inputs (raft_step dispatch, raft_tick), the ready, init, queries
 *   raft_election.c    roles, (pre)votes, leader stickiness, transfer, peer death
 *   raft_replicate.c   proposals, appends and their answers, commit, persistence
 *   raft_read.c        ReadIndex and lease reads
 *   raft_snapshot.c    sending, installing and asking for snapshots, compaction
 *   raft_repair.c      members that lost data (REPAIR)
 *   raft_membership.c  configurations, progress, quorums, raft_change
 *   raft_recover.c     forced recovery of a group that lost its majority
 *   raft_log.c         the in-memory log and its payload chunks
 *   raft_invariants.c  the invariants and where each is asserted
 * Functions shared between them carry the raft_ prefix and are declared here;
 * the rest are static to their file. */
#ifndef ENGINE_RAFT_INTERNAL_H
#define ENGINE_RAFT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/array.h"
#include "base/assert.h"
#include "base/err.h"
#include "engine/raft.h"

/* Everything declared here is the engine's own: never exported (the shared
 * library exports fl_* only), so hidden. Code built for a shared library
 * (-fPIC) may not inline or call directly a function that another library
 * could interpose; a hidden one it may, within its file. */
#pragma GCC visibility push(hidden)

#define CHUNK_SIZE      (256u * 1024u)
#define CHUNK_FREE_MAX  4
#define HB_RING         16
#define LOG_INITIAL_CAP 4
#define CHUNK_FIRST     128 /* A group's first chunk; each next one doubles up to CHUNK_SIZE. */
#define RAFT_TERM_MAX   (UINT64_MAX / 2) /* Messages with a later term are malformed. */

struct raft_chunk {
	struct raft_chunk *next;
	uint32_t refs, used, cap;
	uint8_t data[];
};

/* ---------------------------------------------------------------- helpers */

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The splitmix64 finaliser: a well-mixed hash of 64 bits. */
static inline uint64_t raft_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline const struct raft_conf *raft_conf_current(const struct raft *raft)
{
	return &raft->confs[raft->confs_count - 1].conf;
}

static inline uint64_t raft_conf_current_index(const struct raft *raft)
{
	return raft->confs[raft->confs_count - 1].index;
}

static inline bool raft_role_votes(uint8_t role)
{
	return role == RAFT_MEMBER_VOTER || role == RAFT_MEMBER_WITNESS;
}

/* Role in half h of conf: 0 is the new (or only) configuration, 1 the old. */
static inline uint8_t raft_member_role_in(const struct raft_member *m, int half)
{
	return half == 0 ? m->role : m->role_old;
}

static inline int raft_conf_halves(const struct raft_conf *conf)
{
	return conf->joint ? 2 : 1;
}

/* splitmix64: a small, well-mixed PRNG; the whole engine state is its seed. */
static inline uint64_t raft_rng_next(struct raft *raft)
{
	return raft_mix64(raft->rng += 0x9E3779B97F4A7C15ull);
}

/* Every input calls this first: the output of the last ready, handed out
 * and borrowed until now, is dropped and the next one begins. */
static inline void raft_out_begin(struct raft *raft)
{
	if (!raft->ready_taken)
		return;
	raft->msgs_count = 0;
	raft->msgs_after_count = 0;
	raft->reads_out_count = 0;
	raft->ready_taken = false;
}

/* raft.c */
/* raft_msg_new()'s slow path: the array is full; grow it, or (out of
 * memory) return the slot of a message that is lost. */
struct raft_msg *raft_msg_slot_grow(struct raft *raft, bool after);
void raft_wake(struct raft *raft);

/* A message to send at the next ready (msgs), or once all that was handed out
 * before it is durable (after: msgs_after). Stamped with our group, id and
 * term, every other field zero. Valid until the next message is queued.
 * Inline: every answer and every append takes one. */
static inline struct raft_msg *raft_msg_new(struct raft *raft, uint32_t type, uint64_t to,
					    bool after)
{
	struct raft_msg *m;

	if (after && raft->msgs_after_count < raft->msgs_after_cap)
		m = &raft->msgs_after[raft->msgs_after_count++];
	else if (!after && raft->msgs_count < raft->msgs_cap)
		m = &raft->msgs[raft->msgs_count++];
	else
		m = raft_msg_slot_grow(raft, after);
	*m = (struct raft_msg){.group = raft->config.group,
			       .from = raft->config.id,
			       .to = to,
			       .term = raft->term,
			       .type = type};
	return m;
}

/* raft_invariants.c: assert what holds between inputs (a bug if not). The
 * whole walk, every member's progress included: at raft_tick, and at
 * raft_ready once per heartbeat interval. */
void raft_assert_invariants(const struct raft *raft);
/* The leader's view of one member (pr, a slot of raft->progress): at the
 * entry of the leader's handlers of that member's messages (APPEND_RESP,
 * HEARTBEAT_RESP, SNAPSHOT_WANTED), which move its progress. O(1). */
void raft_assert_progress(const struct raft *raft, const struct raft_progress *pr);

/* raft_log.c; its accessors are inline: they sit on every hot path. */
static inline uint64_t raft_log_first(const struct raft_log *log)
{
	return log->snapshot_index + 1;
}

static inline uint64_t raft_log_last(const struct raft_log *log)
{
	return log->snapshot_index + log->count;
}

static inline struct raft_entry *raft_log_at(const struct raft_log *log, uint64_t index)
{
	if (index <= log->snapshot_index || index > raft_log_last(log))
		return NULL;
	return &log->entries[log->head + (index - raft_log_first(log))];
}

static inline uint64_t raft_log_term_at(const struct raft_log *log, uint64_t index)
{
	const struct raft_entry *e;

	if (index == log->snapshot_index)
		return log->snapshot_term;
	e = raft_log_at(log, index);
	return e ? e->term : 0;
}

static inline uint64_t raft_log_last_term(const struct raft_log *log)
{
	return raft_log_term_at(log, raft_log_last(log));
}

int raft_log_append(struct raft_log *log, uint64_t term, uint32_t type, const void *data,
		    uint32_t size);
void raft_log_truncate(struct raft_log *log, uint64_t index);
void raft_log_compact(struct raft_log *log, uint64_t index);
void raft_log_reset(struct raft_log *log, uint64_t index, uint64_t term);
void raft_log_deinit(struct raft_log *log);

/* raft_membership.c */
bool raft_is_promotable(const struct raft *raft);
struct raft_progress *raft_progress_find(struct raft *raft, uint64_t id);
int raft_progress_sync(struct raft *raft);
void raft_progress_clear(struct raft *raft);
uint64_t raft_quorum_value(const struct raft *raft, bool seq);
bool raft_quorum_active(const struct raft *raft);
/* Make room for one more configuration; call before appending a CONF entry
 * (or installing a membership). Returns 0 or -ENOMEM. */
int raft_confs_reserve(struct raft *raft);
void raft_conf_push(struct raft *raft, uint64_t index, const struct raft_conf *conf);
/* A CONF entry was just appended: its configuration is in force. */
void raft_conf_entry_appended(struct raft *raft, const struct raft_entry *e);

/* Called after every append (inline: most entries are not CONF). */
static inline void raft_conf_appended(struct raft *raft, const struct raft_entry *e)
{
	if (e->type == RAFT_ENTRY_CONF)
		raft_conf_entry_appended(raft, e);
}
void raft_conf_truncated(struct raft *raft, uint64_t index);
const struct raft_conf *raft_conf_in_force_at(const struct raft *raft, uint64_t index);
void raft_confs_trim(struct raft *raft, uint64_t index);

/* A new group's history starts with an empty configuration at index 0 and
 * its first CONF entry: once that entry is committed (it is never
 * truncated then), the empty base answers nothing raft_conf_in_force_at()
 * cannot answer without it, and the history shrinks to one slot (a host
 * keeps thousands of idle groups). Inline: it runs on every commit. */
void raft_confs_settle_slow(struct raft *raft);
static inline void raft_confs_settle(struct raft *raft)
{
	if (raft->confs_count == 2 && raft->confs[0].index == 0 &&
	    raft->confs[0].conf.members_count == 0 && !raft->confs[0].conf.joint &&
	    raft->confs[1].index <= raft->commit)
		raft_confs_settle_slow(raft);
}
void raft_conf_advance(struct raft *raft);

/* raft_election.c; the timer's reset is inline: every message from the
 * leader resets it. */
static inline void raft_election_timer_reset(struct raft *raft)
{
	uint32_t base = raft->config.election_timeout_ms;

	raft->election_deadline_ms = raft->now_ms + base + raft_rng_next(raft) % base;
}

void raft_become_follower(struct raft *raft, uint64_t term, uint64_t leader);
void raft_campaign(struct raft *raft, bool transfer);
void raft_transfer_maybe_send(struct raft *raft, struct raft_progress *pr);
bool raft_in_lease(const struct raft *raft);
void raft_step_vote(struct raft *raft, const struct raft_msg *m);
void raft_step_vote_resp(struct raft *raft, const struct raft_msg *m);

/* raft_replicate.c */
void raft_progress_become(struct raft *raft, struct raft_progress *pr, uint8_t state);
void raft_send_append(struct raft *raft, struct raft_progress *pr, bool allow_empty);
void raft_bcast_append(struct raft *raft, bool allow_empty);
void raft_bcast_heartbeat(struct raft *raft, uint32_t flags);
bool raft_committed_in_term(const struct raft *raft);
void raft_commit_to(struct raft *raft, uint64_t commit);
int raft_leader_append(struct raft *raft, uint32_t type, const void *data, uint32_t size);
void raft_handle_append(struct raft *raft, const struct raft_msg *m);
void raft_handle_append_resp(struct raft *raft, struct raft_progress *pr, const struct raft_msg *m);
void raft_handle_heartbeat_resp(struct raft *raft, struct raft_progress *pr,
				const struct raft_msg *m);

/* raft_read.c */
bool raft_read_out(struct raft *raft, uint64_t context, uint64_t index);
bool raft_read_answer(struct raft *raft, uint64_t from, uint64_t context, uint64_t index);
void raft_reads_fail(struct raft *raft);
void raft_reads_process(struct raft *raft);
void raft_reads_start_waiting(struct raft *raft);
void raft_handle_read_index(struct raft *raft, uint64_t from, uint64_t context);

/* raft_snapshot.c */
void raft_snapshot_ask(struct raft *raft);
void raft_send_snapshot(struct raft *raft, struct raft_progress *pr);
void raft_handle_snapshot(struct raft *raft, const struct raft_msg *m);
void raft_handle_snapshot_wanted(struct raft *raft, struct raft_progress *pr,
				 const struct raft_msg *m);

/* raft_repair.c */
void raft_repair_end(struct raft *raft, uint64_t leader);

/* REPAIR: flag an append response. Every response of a member booted in
 * repair carries its repair id (drawn at boot) in context, so that a leader
 * tells this life's answers from those of an earlier one still in flight
 * (which may claim entries since lost again). While repairing: the REPAIR
 * flag; once repaired, RAFT_MSG_FLAG_REPAIRED on answers that say how far
 * its log matches the leader's (matched), so that a leader that missed the
 * first one still learns that the repair ended. Inline: every append's
 * answer passes here. */
static inline void raft_repair_flag(const struct raft *raft, struct raft_msg *resp, bool matched)
{
	if (raft->repair_id == 0) {
		ASSERT(!raft->repairing); /* Booted in repair: has an id. */
		return;
	}
	if (raft->repairing)
		resp->flags |= RAFT_MSG_FLAG_REPAIR;
	else if (matched)
		resp->flags |= RAFT_MSG_FLAG_REPAIRED;
	resp->context = raft->repair_id;
}
bool raft_progress_repair_check(struct raft *raft, struct raft_progress *pr,
				const struct raft_msg *m);

/* The core facts, at the entry of every step handler: inline, cheap. */
static inline void raft_assert_step(const struct raft *raft)
{
	const struct raft_hard_state *handed = &raft->hard_handed;

	ASSERT(raft->role <= RAFT_ROLE_LEADER);
	ASSERT(raft->applied <= raft->applying);           /* Applied only what was handed out. */
	ASSERT(raft->applying <= raft->commit);            /* applied <= commit ... */
	ASSERT(raft->commit <= raft_log_last(&raft->log)); /* ... <= last. */
	ASSERT(handed->term <= raft->term);                /* Term is monotonic. */
	ASSERT(handed->commit <= raft->commit);            /* Commit never regresses. */
	/* One vote per term: a vote handed out to persist is never changed. */
	if (handed->term == raft->term && handed->vote != RAFT_NONE)
		ASSERT(raft->vote == handed->vote);
	ASSERT((raft->role == RAFT_ROLE_LEADER) == (raft->leader == raft->config.id));
	ASSERT(raft->role == RAFT_ROLE_LEADER || raft->progress_count == 0);
}

/* What a ready hands out, at its entry: the hard state to persist never
 * goes back (term is monotonic, one vote per term, commit never regresses),
 * and applied <= commit <= last. Inline, cheap: every ready passes here. */
static inline void raft_assert_ready(const struct raft *raft)
{
	const struct raft_hard_state *handed = &raft->hard_handed;

	ASSERT(handed->term <= raft->term);                /* Term is monotonic. */
	ASSERT(handed->commit <= raft->commit);            /* Commit never regresses. */
	ASSERT(raft->applied <= raft->applying);           /* Applied only what was handed out. */
	ASSERT(raft->applying <= raft->commit);            /* applied <= commit ... */
	ASSERT(raft->commit <= raft_log_last(&raft->log)); /* ... <= last. */
	/* One vote per term: a vote handed out to persist is never changed. */
	if (handed->term == raft->term && handed->vote != RAFT_NONE)
		ASSERT(raft->vote == handed->vote);
}

/* The count entries a ready hands out, the log's from handed_index + 1 to
 * its last: they follow what was handed before, and their terms run from
 * the term at handed_index to at most ours. Each entry's term was asserted
 * not to decrease when raft_log_append() took it, and its index is the one
 * after its predecessor's by construction, so the ends of the run are what
 * is left to check: O(1). */
static inline void raft_assert_handed(const struct raft_log *log, const struct raft_entry *entries,
				      uint32_t count, uint64_t term)
{
	ASSERT(entries[0].index == log->handed_index + 1); /* Handed out once, in order. */
	ASSERT(entries[count - 1].index == raft_log_last(log));
	ASSERT(entries[0].term >= raft_log_term_at(log, log->handed_index));
	ASSERT(entries[count - 1].term <= term); /* No entry from the future. */
}

#pragma GCC visibility pop

#endif /* ENGINE_RAFT_INTERNAL_H */
