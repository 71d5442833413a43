/* The Raft core for one group: election, replication, commit, reads,
 * leadership transfer, membership, snapshots and quiescence.
 *
 * The happy path of a write is: raft_propose() appends to the leader's log
 * and queues APPEND messages that leave at once; raft_ready() hands the new
 * entries to the caller to persist; followers append, and their APPEND_RESP
 * waits in msgs_after until their write is durable; the leader counts a
 * follower's match on its response and its own only on raft_persisted()
 * (thesis §10.2.1); once a quorum of each active configuration matches an
 * entry of the current term, commit advances (§5.4.2, Figure 8) and the
 * entries are handed out to apply.
 *
 * Failure handling is by the rules of the thesis: stale terms are answered
 * or ignored, conflicting suffixes are truncated (§5.3), lost messages are
 * recovered by probing after heartbeats, and a follower that fell behind the
 * compacted log is sent a snapshot (§5.1 of chapter 5, "log compaction").
 *
 * Memory: the log is one contiguous array of entries (moved or doubled when
 * full, amortised) and payloads live in reference-counted chunks that are
 * recycled, so steady-state replication allocates nothing per entry.
 *
 * This file holds the inputs (raft_step's dispatch after the term rules,
 * raft_tick), the ready, init and the queries; raft_internal.h names the
 * files that hold the rest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

void raft_trim(struct raft *raft)
{
	if (!raft->quiesced || raft_has_ready(raft))
		return;
	raft_out_begin(raft);
	free(raft->msgs);
	free(raft->msgs_after);
	free(raft->reads_out);
	raft->msgs = raft->msgs_after = NULL;
	raft->reads_out = NULL;
	raft->msgs_cap = raft->msgs_after_cap = raft->reads_out_cap = 0;
	if (raft->reads_pending_count == 0) {
		free(raft->reads_pending);
		raft->reads_pending = NULL;
		raft->reads_pending_cap = 0;
	}
	/* A quiesced leader has nothing in flight; a window is allocated again
	 * when the member next replicates (raft_send_append). */
	for (uint32_t i = 0; i < raft->progress_count; i++) {
		struct raft_progress *pr = &raft->progress[i];

		if (pr->inflight_count == 0) {
			free(pr->inflight);
			pr->inflight = NULL;
		}
	}
}

struct raft_msg *raft_msg_slot_grow(struct raft *raft, bool after)
{
	struct raft_msg *msgs;

	if (after) {
		msgs = array_grow(raft->msgs_after, &raft->msgs_after_cap,
				  raft->msgs_after_count + 1, sizeof(*msgs), 2);
		if (msgs != NULL) {
			raft->msgs_after = msgs;
			return &raft->msgs_after[raft->msgs_after_count++];
		}
	} else {
		msgs =
		    array_grow(raft->msgs, &raft->msgs_cap, raft->msgs_count + 1, sizeof(*msgs), 2);
		if (msgs != NULL) {
			raft->msgs = msgs;
			return &raft->msgs[raft->msgs_count++];
		}
	}
	/* Out of memory: the message is lost, as the network may lose any
	 * message; Raft retries (heartbeats, probes, elections). It is written
	 * to a slot that is never sent. */
	raft->msgs_lost++;
	return &raft->msg_lost;
}

void raft_wake(struct raft *raft)
{
	if (!raft->quiesced)
		return;
	raft->quiesced = false;
	if (raft->role == RAFT_ROLE_LEADER) {
		raft->heartbeat_deadline_ms = raft->now_ms;
		raft->check_quorum_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
		raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
		for (uint32_t i = 0; i < raft->progress_count; i++)
			raft->progress[i].recent_active = true;
	} else {
		/* Not leader_heard_ms: nothing came from the leader, and what a
		 * voter promised it (raft_in_lease) rests on what did. */
		raft->woken_ms = raft->now_ms;
		raft_election_timer_reset(raft);
	}
}

static void heard_from_leader(struct raft *raft, const struct raft_msg *m)
{
	raft->takeover = false;
	raft->leader = m->from;
	raft->leader_heard_ms = raft->now_ms;
	raft->leader_contact_ms = raft->now_ms;
	/* Whatever we do with the message (an append we cannot take yet is
	 * refused), the leader's commit index in it is the group's: stale
	 * reads report how far our applied index is behind it. A snapshot's
	 * message carries none; its index is ours once installed. */
	if (m->type != RAFT_MSG_SNAPSHOT && m->commit > raft->leader_commit_seen)
		raft->leader_commit_seen = m->commit;
	raft->leader_down = false;
	raft->leader_suspect = false;
	raft_election_timer_reset(raft);
}

static void step_leader(struct raft *raft, const struct raft_msg *m)
{
	struct raft_progress *pr = raft_progress_find(raft, m->from);

	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(m->term == raft->term); /* A later term made us a follower in step_term. */

	switch (m->type) {
	case RAFT_MSG_SNAPSHOT_WANTED:
		if (pr)
			raft_handle_snapshot_wanted(raft, pr, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (pr)
			raft_handle_append_resp(raft, pr, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (pr)
			raft_handle_heartbeat_resp(raft, pr, m);
		break;
	case RAFT_MSG_READ_INDEX:
		raft_handle_read_index(raft, m->from, m->context);
		break;
	default:
		break; /* A second leader in our term cannot exist; ignore. */
	}
}

static bool msg_is_valid(const struct raft *raft, const struct raft_msg *m)
{
	if (m->type == 0 || m->type >= RAFT_MSG_TYPE_COUNT)
		return false;
	/* No real group gets near 2^63 terms; a term that high could only
	 * make ours wrap to 0 at the next election. */
	if (m->term > RAFT_TERM_MAX)
		return false;
	if (m->from == RAFT_NONE || m->from == raft->config.id)
		return false;
	if (m->to != raft->config.id)
		return false;
	if (m->entries_count > 0 && m->entries == NULL)
		return false;
	return true;
}

/* The term rules of Figure 2 and §9.6, before any type-specific handling.
 * Returns false when the message is fully handled (or ignored). */
static bool step_term(struct raft *raft, const struct raft_msg *m)
{
	if (m->term > raft->term) {
		bool leader_msg = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
				  m->type == RAFT_MSG_SNAPSHOT;

		if (m->type == RAFT_MSG_PRE_VOTE)
			return true;
		if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)
			return true;
		if (m->type == RAFT_MSG_VOTE && raft_in_lease(raft) &&
		    !(m->flags & RAFT_MSG_FLAG_TRANSFER))
			return false; /* Stickiness: ignore, keep our term. */
		raft_become_follower(raft, m->term, leader_msg ? m->from : RAFT_NONE);
		return true;
	}
	if (m->term < raft->term) {
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT) {
			/* A stale leader learns our term and steps down. */
			raft_msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, false)->reject = false;
		} else if (m->type == RAFT_MSG_PRE_VOTE) {
			struct raft_msg *resp =
			    raft_msg_new(raft, RAFT_MSG_PRE_VOTE_RESP, m->from, false);

			resp->reject = true;
		} else if (m->type == RAFT_MSG_VOTE) {
			/* Refuse with our term (Figure 2): a candidate that never
			 * hears of later terms could go on campaigning below them
			 * while a candidate that cannot win keeps raising them. */
			raft_msg_new(raft, RAFT_MSG_VOTE_RESP, m->from, false)->reject = true;
		}
		return false;
	}
	return true;
}

/* Follower: the leader's heartbeat (commit, quiesce) gets an answer. */
static void handle_heartbeat(struct raft *raft, const struct raft_msg *m)
{
	struct raft_msg *resp;

	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_FOLLOWER);
	ASSERT(m->term == raft->term); /* Stale heartbeats were answered by step_term. */
	ASSERT(raft->leader == m->from);
	/* REPAIR: a heartbeat's commit rests on a match that may
	 * predate our loss; only appends that matched count. */
	if (m->commit > raft->commit && m->commit <= raft_log_last(&raft->log) && !raft->repairing)
		raft_commit_to(raft, m->commit);
	raft->quiesced = (m->flags & RAFT_MSG_FLAG_QUIESCE) != 0;
	resp = raft_msg_new(raft, RAFT_MSG_HEARTBEAT_RESP, m->from, false);
	resp->context = m->context;
	resp->flags = raft->repairing ? RAFT_MSG_FLAG_REPAIR : 0;
	if (raft->snapshot_wanted)
		raft_snapshot_ask(raft); /* The last request may have been lost. */
}

/* Not the leader: what a (pre-)candidate or follower does with the rest. */
static void step_follower(struct raft *raft, const struct raft_msg *m)
{
	ASSERT(raft->role != RAFT_ROLE_LEADER);
	ASSERT(m->term == raft->term); /* step_term settled the term. */
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		if (raft->role != RAFT_ROLE_FOLLOWER)
			raft_become_follower(raft, raft->term, m->from);
		heard_from_leader(raft, m);
		if (m->type == RAFT_MSG_APPEND) {
			raft_handle_append(raft, m);
		} else if (m->type == RAFT_MSG_SNAPSHOT) {
			raft_handle_snapshot(raft, m);
		} else {
			handle_heartbeat(raft, m);
		}
		return;
	case RAFT_MSG_TIMEOUT_NOW:
		/* §3.10: the leader asks us to take over now. */
		raft_assert_step(raft);
		if (raft->role == RAFT_ROLE_FOLLOWER)
			raft_campaign(raft, true);
		return;
	case RAFT_MSG_READ_INDEX:
		raft_assert_step(raft);
		raft_read_answer(raft, m->from, m->context, 0); /* Not the leader. */
		return;
	case RAFT_MSG_READ_INDEX_RESP:
		/* Out of memory, the answer is lost: the caller gives the read up. */
		raft_assert_step(raft);
		raft_read_out(raft, m->context, m->reject ? 0 : m->index);
		return;
	default:
		return;
	}
}

void raft_step(struct raft *raft, const struct raft_msg *m, uint64_t now_ms)
{
	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (!msg_is_valid(raft, m))
		return;
	/* The quiesce heartbeat must not wake the group it puts to sleep, nor
	 * may late answers to heartbeats: they bring no work. */
	if (!(m->type == RAFT_MSG_HEARTBEAT && (m->flags & RAFT_MSG_FLAG_QUIESCE)) &&
	    m->type != RAFT_MSG_HEARTBEAT_RESP)
		raft_wake(raft);
	if (!step_term(raft, m))
		return;
	ASSERT(m->term >= raft->term); /* Stale messages were handled above. */

	switch (m->type) {
	case RAFT_MSG_PRE_VOTE:
	case RAFT_MSG_VOTE:
		raft_step_vote(raft, m);
		return;
	case RAFT_MSG_PRE_VOTE_RESP:
		if (raft->role == RAFT_ROLE_PRE_CANDIDATE &&
		    (m->reject ? m->term == raft->term : m->term == raft->term + 1))
			raft_step_vote_resp(raft, m);
		return;
	case RAFT_MSG_VOTE_RESP:
		if (raft->role == RAFT_ROLE_CANDIDATE)
			raft_step_vote_resp(raft, m);
		return;
	default:
		break;
	}
	if (raft->role == RAFT_ROLE_LEADER)
		step_leader(raft, m);
	else
		step_follower(raft, m);
}

/* ------------------------------------------------------------------ tick */

/* The whole invariant walk (raft_invariants.c), O(members): at every tick,
 * and at a ready when none ran for a heartbeat interval, so that a follower
 * that never ticks (its leader's messages keep moving its election timer)
 * is walked as well, and a busy group once per interval, not per message. */
static void invariants_walk(struct raft *raft)
{
	raft_assert_invariants(raft);
	raft->walked_ms = raft->now_ms;
}

static void tick_leader(struct raft *raft)
{
	uint64_t now = raft->now_ms;

	if (raft->config.check_quorum && now >= raft->check_quorum_deadline_ms) {
		/* §6.2: a leader that cannot reach a quorum steps down. */
		if (!raft_quorum_active(raft)) {
			raft_become_follower(raft, raft->term, RAFT_NONE);
			return;
		}
		for (uint32_t i = 0; i < raft->progress_count; i++)
			raft->progress[i].recent_active = false;
		raft->check_quorum_deadline_ms = now + raft->config.election_timeout_ms;
	}
	if (raft->transfer_target != RAFT_NONE && now >= raft->transfer_deadline_ms)
		raft->transfer_target = RAFT_NONE; /* Give up; proposals flow again. */
	if (now >= raft->heartbeat_deadline_ms) {
		for (uint32_t i = 0; i < raft->progress_count; i++) {
			struct raft_progress *pr = &raft->progress[i];

			if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
			    now >= pr->state_ms + 2ull * raft->config.election_timeout_ms)
				raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
		}
		raft_bcast_heartbeat(raft, 0);
		raft->heartbeat_deadline_ms = now + raft->config.heartbeat_interval_ms;
	}
	if (raft->config.quiesce && now >= raft->quiesce_deadline_ms) {
		bool idle = raft->commit == raft_log_last(&raft->log) &&
			    raft->transfer_target == RAFT_NONE && raft->reads_pending_count == 0 &&
			    raft_conf_current_index(raft) <= raft->commit &&
			    !raft_conf_current(raft)->joint;

		for (uint32_t i = 0; i < raft->progress_count && idle; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			idle = pr->match == raft_log_last(&raft->log) && !pr->down;
		}
		if (idle) {
			raft_bcast_heartbeat(raft, RAFT_MSG_FLAG_QUIESCE);
			raft->quiesced = true;
		} else {
			raft->quiesce_deadline_ms = now + raft->config.quiesce_after_ms;
		}
	}
}

void raft_tick(struct raft *raft, uint64_t now_ms)
{
	raft_out_begin(raft);
	invariants_walk(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->quiesced)
		return;
	if (raft->role == RAFT_ROLE_LEADER) {
		tick_leader(raft);
		return;
	}
	if (raft->now_ms < raft->election_deadline_ms)
		return;
	/* A takeover gets one round in its order; past its timer, the ordinary
	 * rules again (else a survivor that cannot win would block the others). */
	raft->takeover = false;
	/* LIVENESS: a follower campaigns only past the lease it promised its
	 * leader, unless that leader's process is gone (raft_peer_down). */
	ASSERT(raft->leader == RAFT_NONE || raft->leader_down ||
	       raft->now_ms >= raft->leader_heard_ms + raft->config.promise_ms);
	if (raft_is_promotable(raft))
		raft_campaign(raft, false);
	else
		raft_election_timer_reset(raft);
}

uint64_t raft_next_deadline(const struct raft *raft)
{
	uint64_t d;

	if (raft->quiesced)
		return RAFT_DEADLINE_NONE;
	if (raft->role != RAFT_ROLE_LEADER)
		return raft_is_promotable(raft) ? raft->election_deadline_ms : RAFT_DEADLINE_NONE;
	d = raft->heartbeat_deadline_ms;
	if (raft->config.check_quorum)
		d = min_u64(d, raft->check_quorum_deadline_ms);
	if (raft->transfer_target != RAFT_NONE)
		d = min_u64(d, raft->transfer_deadline_ms);
	if (raft->config.quiesce)
		d = min_u64(d, raft->quiesce_deadline_ms);
	return d;
}

/* ----------------------------------------------------------------- ready */

static uint64_t apply_limit(const struct raft *raft)
{
	return min_u64(raft->commit, raft->log.stable_index);
}

bool raft_has_ready(const struct raft *raft)
{
	const struct raft_log *log = &raft->log;

	if (raft->term != raft->hard_handed.term || raft->vote != raft->hard_handed.vote ||
	    raft->commit != raft->hard_handed.commit)
		return true;
	if (raft->snapshot_dirty || log->handed_index < raft_log_last(log) || raft->hb_pending)
		return true;
	if (raft->applying < apply_limit(raft))
		return true;
	return !raft->ready_taken &&
	       (raft->msgs_count || raft->msgs_after_count || raft->reads_out_count);
}

/* Resolve the index ranges of queued APPEND messages to entry pointers;
 * drop those that no longer describe our log (leadership lost, compacted). */
static void msgs_resolve(struct raft *raft)
{
	const struct raft_log *log = &raft->log;
	uint32_t kept = 0;

	for (uint32_t i = 0; i < raft->msgs_count; i++) {
		struct raft_msg *m = &raft->msgs[i];

		if (m->type == RAFT_MSG_APPEND) {
			if (raft->role != RAFT_ROLE_LEADER || m->term != raft->term ||
			    m->index < log->snapshot_index ||
			    m->index + m->entries_count > raft_log_last(log))
				continue;
			m->log_term = raft_log_term_at(log, m->index);
			m->entries = m->entries_count ? raft_log_at(log, m->index + 1) : NULL;
		} else if (m->type == RAFT_MSG_SNAPSHOT) {
			m->index = raft->snap.index;
			m->log_term = raft->snap.term;
			m->snapshot = &raft->snap;
		}
		raft->msgs[kept++] = *m;
	}
	raft->msgs_count = kept;
}

void raft_ready(struct raft *raft, struct raft_ready *ready)
{
	struct raft_log *log = &raft->log;
	uint64_t limit;

	raft_out_begin(raft);
	raft_assert_ready(raft);
	if (raft->now_ms - raft->walked_ms >= raft->config.heartbeat_interval_ms)
		invariants_walk(raft);
	if (raft->hb_pending && raft->role == RAFT_ROLE_LEADER)
		raft_bcast_heartbeat(raft, 0);
	raft->hb_pending = false;
	msgs_resolve(raft);
	/* Every field is set below, each exactly once (no memset first: this
	 * runs once per group per turn). */
	ready->hard = (struct raft_hard_state){
	    .term = raft->term, .vote = raft->vote, .commit = raft->commit};
	ready->hard_changed = ready->hard.term != raft->hard_handed.term ||
			      ready->hard.vote != raft->hard_handed.vote ||
			      ready->hard.commit != raft->hard_handed.commit;
	raft->hard_handed = ready->hard;

	ready->snapshot = NULL;
	ready->entries = ready->committed = NULL;
	ready->entries_count = ready->committed_count = 0;
	if (raft->snapshot_dirty) {
		ready->snapshot = &raft->snap;
		raft->snapshot_dirty = false;
	}
	if (log->handed_index < raft_log_last(log)) {
		/* Each entry is handed out once, in order, after those before it. */
		ready->entries = raft_log_at(log, log->handed_index + 1);
		ready->entries_count = (uint32_t)(raft_log_last(log) - log->handed_index);
		raft_assert_handed(log, ready->entries, ready->entries_count, raft->term);
		log->handed_index = raft_log_last(log);
	}
	limit = apply_limit(raft);
	if (raft->applying < limit) {
		/* Committed entries are applied once, in order, once durable here. */
		ready->committed = raft_log_at(log, raft->applying + 1);
		ready->committed_count = (uint32_t)(limit - raft->applying);
		ASSERT(ready->committed->index == raft->applying + 1);
		ASSERT(limit <= log->stable_index);
		raft->applying = limit;
	}
	ready->msgs = raft->msgs;
	ready->msgs_count = raft->msgs_count;
	ready->msgs_after = raft->msgs_after;
	ready->msgs_after_count = raft->msgs_after_count;
	ready->reads = raft->reads_out;
	ready->reads_count = raft->reads_out_count;
	raft->ready_taken = true;
}

/* -------------------------------------------------------- init, queries */

void raft_config_default(struct raft_config *config, uint64_t id, uint64_t group)
{
	*config = (struct raft_config){
	    .id = id,
	    .group = group,
	    .seed = id * 0x9E3779B97F4A7C15ull ^ group,
	    .election_timeout_ms = 1000,
	    .heartbeat_interval_ms = 100,
	    .clock_drift_max_ms = 100,
	    .inflight_count_max = 32,
	    .inflight_size_max = 8u << 20,
	    .msg_size_max = 1u << 20,
	    .entry_size_max = 8u << 20,
	    .uncommitted_size_max = 64ull << 20,
	    .reads_max = 1024,
	    .pre_vote = true,
	    .check_quorum = true,
	    .lease_read = false,
	    .quiesce = false,
	    .quiesce_after_ms = 10000,
	    .promote_lag_entries_max = 256,
	};
}

static int config_check(const struct raft_config *c)
{
	if (c->id == RAFT_NONE || c->election_timeout_ms == 0 || c->heartbeat_interval_ms == 0 ||
	    c->heartbeat_interval_ms >= c->election_timeout_ms ||
	    c->clock_drift_max_ms >= c->election_timeout_ms ||
	    c->promise_ms > c->election_timeout_ms || c->inflight_count_max == 0 ||
	    c->inflight_count_max > RAFT_INFLIGHT_MAX || c->msg_size_max == 0 ||
	    c->entry_size_max == 0 || c->reads_max == 0)
		return -EINVAL;
	return 0;
}

int raft_init(struct raft *raft, const struct raft_config *config, const struct raft_boot *boot,
	      uint64_t now_ms)
{
	int rv = config_check(config);

	if (rv != 0)
		return rv;
	if (boot->snapshot.conf.members_count > RAFT_MEMBERS_MAX)
		return -EINVAL;
	memset(raft, 0, sizeof(*raft));
	raft->config = *config;
	if (raft->config.promise_ms == 0)
		raft->config.promise_ms = config->election_timeout_ms;
	/* splitmix64 steps its state by a constant, so seeds that differ by a
	 * multiple of it (id * constant, as in the default config) would give
	 * nodes the same timeouts shifted by a draw: start from a hash instead. */
	raft->rng = config->seed;
	raft->rng = raft_rng_next(raft);
	raft->now_ms = now_ms;
	raft->snap = boot->snapshot;
	raft_log_reset(&raft->log, boot->snapshot.index, boot->snapshot.term);
	rv = raft_confs_reserve(raft);
	if (rv != 0)
		goto err;
	raft_conf_push(raft, boot->snapshot.index, &boot->snapshot.conf);
	for (uint32_t i = 0; i < boot->entries_count; i++) {
		const struct raft_entry *e = &boot->entries[i];

		rv = -EINVAL;
		if (e->index != raft_log_last(&raft->log) + 1 ||
		    e->term < raft_log_last_term(&raft->log))
			goto err;
		if (e->type == RAFT_ENTRY_CONF) {
			rv = raft_confs_reserve(raft);
			if (rv != 0)
				goto err;
		}
		rv = raft_log_append(&raft->log, e->term, e->type, e->data, e->size);
		if (rv != 0)
			goto err;
		raft_conf_appended(raft, raft_log_at(&raft->log, e->index));
	}
	raft->log.stable_index = raft->log.handed_index = raft_log_last(&raft->log);
	raft->term = boot->hard.term;
	raft->vote = boot->hard.vote;
	raft->applied = max_u64(boot->applied, boot->snapshot.index);
	/* What the state machine applied was committed, even where the stored
	 * commit is older (storage need not persist every commit advance). */
	raft->commit =
	    min_u64(max_u64(boot->hard.commit, raft->applied), raft_log_last(&raft->log));
	rv = -EINVAL;
	if (raft->applied > raft->commit || raft->term < raft_log_last_term(&raft->log))
		goto err;
	raft->applying = raft->applied;
	raft_confs_settle(raft);
	raft->repairing = boot->repair;
	if (boot->repair) /* Nonzero: see raft_repair_flag(). */
		raft->repair_id = boot->repair_id ? boot->repair_id
						  : raft_mix64(raft_rng_next(raft) ^ now_ms) | 1;
	raft->hard_handed = (struct raft_hard_state){raft->term, raft->vote, raft->commit};
	raft->role = RAFT_ROLE_FOLLOWER;
	raft->leader_heard_ms = now_ms;
	raft->boot_sticky_until_ms = now_ms + config->election_timeout_ms;
	raft_election_timer_reset(raft);
	return 0;
err:
	raft_deinit(raft);
	return rv;
}

void raft_deinit(struct raft *raft)
{
	raft_log_deinit(&raft->log);
	free(raft->confs);
	raft_progress_clear(raft);
	free(raft->reads_pending);
	free(raft->msgs);
	free(raft->msgs_after);
	free(raft->reads_out);
	memset(raft, 0, sizeof(*raft));
}

enum raft_role raft_role(const struct raft *raft)
{
	return (enum raft_role)raft->role;
}

bool raft_is_leader(const struct raft *raft)
{
	return raft->role == RAFT_ROLE_LEADER;
}

uint64_t raft_leader(const struct raft *raft)
{
	return raft->leader;
}

uint64_t raft_term(const struct raft *raft)
{
	return raft->term;
}

uint64_t raft_commit_index(const struct raft *raft)
{
	return raft->commit;
}

uint64_t raft_last_index(const struct raft *raft)
{
	return raft_log_last(&raft->log);
}

uint64_t raft_first_index(const struct raft *raft)
{
	return raft_log_first(&raft->log);
}

bool raft_is_quiesced(const struct raft *raft)
{
	return raft->quiesced;
}

const struct raft_conf *raft_conf(const struct raft *raft)
{
	return raft_conf_current(raft);
}

uint64_t raft_conf_index(const struct raft *raft)
{
	return raft_conf_current_index(raft);
}

const struct raft_entry *raft_entry_at(const struct raft *raft, uint64_t index)
{
	return raft_log_at(&raft->log, index);
}

uint64_t raft_term_at(const struct raft *raft, uint64_t index)
{
	return raft_log_term_at(&raft->log, index);
}

const struct raft_snapshot_meta *raft_snapshot(const struct raft *raft)
{
	return &raft->snap;
}

const struct raft_conf *raft_conf_at(const struct raft *raft, uint64_t index)
{
	ASSERT(index >= raft->log.snapshot_index);
	return raft_conf_in_force_at(raft, index);
}

uint64_t raft_applied_index(const struct raft *raft)
{
	return raft->applied;
}

const struct raft_progress *raft_progress_of(const struct raft *raft, uint64_t node)
{
	return raft_progress_find((struct raft *)raft, node);
}

const char *raft_role_name(enum raft_role role)
{
	static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};

	return (unsigned)role < 4 ? names[role] : "unknown";
}

const char *raft_msg_type_name(uint32_t type)
{
	static const char *names[] = {
	    "none",        "append",        "append-resp",     "vote",           "vote-resp",
	    "pre-vote",    "pre-vote-resp", "heartbeat",       "heartbeat-resp", "snapshot",
	    "timeout-now", "read-index",    "read-index-resp", "snapshot-wanted"};

	return type < RAFT_MSG_TYPE_COUNT ? names[type] : "unknown";
}
