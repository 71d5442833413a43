/* The invariants of one engine: the core facts (term, vote, commit, apply,
 * role) at the entry of every step handler, after the stale-message returns
 * (raft_assert_step); all of them, the leader's progress of every member
 * and the log's bookkeeping too, at the entry of raft_tick() and of
 * raft_ready() (raft_assert_invariants), which every step is followed by
 * before its output leaves the engine.
 *
 * Each assertion states one fact. The cheap ones (O(members)) are ASSERTs and
 * stay on in release builds; the walks along the log are DEBUG_ASSERTs and
 * cover only the entries a ready hands out, so that every entry is walked
 * once over the life of the group. A failure is a bug in the engine: peer
 * input never reaches these checks unvalidated (raft_step handles it). */
#include "engine/raft_internal.h"

/* The leader's view of one member. */
static void raft_assert_progress(const struct raft *raft, const struct raft_progress *pr,
				 uint64_t member)
{
	uint64_t last = raft_log_last(&raft->log);

	ASSERT(pr->id == member);     /* Progress slot i is member i (quorum_value). */
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
		raft_assert_progress(raft, &raft->progress[i], conf->members[i].id);
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
	ASSERT(raft->votes_granted_count <= RAFT_MEMBERS_MAX);
	ASSERT(raft->votes_rejected_count <= RAFT_MEMBERS_MAX);
	ASSERT(!raft->repairing || raft->repair_id != 0); /* A repair has its life's id. */
	raft_assert_log(raft);
	if (raft->role == RAFT_ROLE_LEADER)
		raft_assert_leader(raft);
	else
		raft_assert_not_leader(raft);
}

void raft_assert_entries(const struct raft_entry *entries, uint32_t count, uint64_t prev_term)
{
	for (uint32_t i = 0; i < count; i++) {
		DEBUG_ASSERT(entries[i].term >=
			     prev_term); /* Terms never decrease along the log. */
		DEBUG_ASSERT(i == 0 || entries[i].index == entries[i - 1].index + 1);
		prev_term = entries[i].term;
	}
}
