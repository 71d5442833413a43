/* The invariants of one engine, each asserted where it is cheapest to
 * check as often as it can change:
 *   - the core facts (term, vote, commit, apply, role) at the entry of every
 *     step handler, after the stale-message returns (raft_assert_step,
 *     inline in raft_internal.h);
 *   - what a ready hands out, at raft_ready(): the hard state never goes
 *     back, applied <= commit <= last, and the run of entries follows what
 *     was handed before with terms from the last handed one's up to ours
 *     (raft_assert_ready, raft_assert_handed; O(1));
 *   - the progress of the one member an answer is about, at the entry of the
 *     leader's handlers of APPEND_RESP, HEARTBEAT_RESP and SNAPSHOT_WANTED
 *     (raft_assert_progress);
 *   - all of them, every member's progress and the log's bookkeeping
 *     included (raft_assert_invariants, a walk of O(members)), at the entry
 *     of raft_tick() and of a raft_ready() when none ran for a heartbeat
 *     interval: once per interval rather than once per message;
 *   - and where a value moves, its own rule: commit never regresses
 *     (raft_commit_to), the term never decreases (raft_become_follower),
 *     entry terms never decrease along the log (raft_log_append).
 *
 * Each assertion states one fact, and all are ASSERTs: on in every build.
 * A failure is a bug in the engine: peer input never reaches these checks
 * unvalidated (raft_step handles it). */
#include "engine/raft_internal.h"

/* The leader's view of one member. */
void raft_assert_progress(const struct raft *raft, const struct raft_progress *pr)
{
	uint64_t last = raft_log_last(&raft->log);
	uint32_t slot = (uint32_t)(pr - raft->progress);

	ASSERT(slot < raft->progress_count);
	ASSERT(pr->id == raft_conf_current(raft)->members[slot].id); /* Slot i is member i. */
	ASSERT(pr->match <= last);    /* A leader's match_index[i] <= last. */
	ASSERT(pr->next <= last + 1); /* Nothing is sent past our log. */
	ASSERT(pr->state <= RAFT_PROGRESS_SNAPSHOT);
	ASSERT(pr->inflight_count <= raft->config.inflight_count_max);
	ASSERT(pr->inflight_count == 0 || pr->state == RAFT_PROGRESS_REPLICATE);
	ASSERT(!pr->probe_sent || pr->state == RAFT_PROGRESS_PROBE);
	ASSERT(pr->inflight_count > 0 || pr->inflight_size == 0);
	if (pr->id != raft->config.id)
		ASSERT(pr->match < pr->next); /* next is past what it holds. */
	else
		ASSERT(pr->match <= raft->log.stable_index); /* Self counts only what is durable. */
}

static void raft_assert_leader(const struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);

	ASSERT(raft->leader == raft->config.id);
	ASSERT(raft->vote == raft->config.id); /* It voted for itself in this term. */
	ASSERT(raft->progress_count == conf->members_count);
	ASSERT(raft->progress != NULL || conf->members_count == 0);
	ASSERT(raft_log_last_term(&raft->log) == raft->term); /* Its no-op is in the log. */
	for (uint32_t i = 0; i < raft->progress_count; i++)
		raft_assert_progress(raft, &raft->progress[i]);
}

static void raft_assert_not_leader(const struct raft *raft)
{
	ASSERT(raft->leader != raft->config.id);
	ASSERT(raft->progress_count == 0);          /* Only a leader tracks followers. */
	ASSERT(raft->reads_pending_count == 0);     /* Pending reads are a leader's. */
	ASSERT(raft->transfer_target == RAFT_NONE); /* So are transfers. */
	if (raft->role == RAFT_ROLE_CANDIDATE)
		ASSERT(raft->vote == raft->config.id);
	if (raft->role != RAFT_ROLE_FOLLOWER)
		ASSERT(raft->leader == RAFT_NONE); /* Campaigning: no leader known. */
}

static void raft_assert_log(const struct raft *raft)
{
	const struct raft_log *log = &raft->log;

	ASSERT(log->head + log->count <= log->cap || log->count == 0);
	ASSERT(log->stable_index <= log->handed_index); /* Durable only once handed out. */
	ASSERT(log->handed_index <= raft_log_last(log));
	ASSERT(log->snapshot_index == raft->snap.index); /* The log begins at the snapshot. */
	ASSERT(log->snapshot_term == raft->snap.term);
	ASSERT(raft_log_last_term(log) <= raft->term); /* No entry from the future. */
}

void raft_assert_invariants(const struct raft *raft)
{
	const struct raft_hard_state *handed = &raft->hard_handed;

	ASSERT(raft->role <= RAFT_ROLE_LEADER);
	ASSERT(raft->applied <= raft->applying);           /* Applied only what was handed out. */
	ASSERT(raft->applying <= raft->commit);            /* applied <= commit ... */
	ASSERT(raft->commit <= raft_log_last(&raft->log)); /* ... <= last. */
	ASSERT(raft->log.snapshot_index <= raft->commit);  /* Snapshots hold committed state. */
	ASSERT(handed->term <= raft->term);                /* Term is monotonic. */
	ASSERT(handed->commit <= raft->commit);            /* Commit never regresses. */
	/* One vote per term: a vote handed out to persist is never changed. */
	if (handed->term == raft->term && handed->vote != RAFT_NONE)
		ASSERT(raft->vote == handed->vote);
	ASSERT(raft->confs_count >= 1); /* A membership is always in force. */
	ASSERT(raft->confs_count <= raft->confs_cap);
	ASSERT(raft->reads_pending_count <= raft->config.reads_max);
	ASSERT(raft->votes_count <= RAFT_MEMBERS_MAX + 1);
	ASSERT(raft->votes_count == 0 || raft->votes[0] == raft->config.id); /* Ours first. */
	ASSERT((raft->votes_refused & 1u) == 0);                             /* We vote for us. */
	ASSERT(!raft->repairing || raft->repair_id != 0); /* A repair has its life's id. */
	raft_assert_log(raft);
	if (raft->role == RAFT_ROLE_LEADER)
		raft_assert_leader(raft);
	else
		raft_assert_not_leader(raft);
}
