/* Linearizable reads: ReadIndex (thesis §6.4), confirmed by a heartbeat
 * round a quorum acknowledged, and lease reads (§6.4.1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

bool raft_read_out(struct raft *raft, uint64_t context, uint64_t index)
{
	struct raft_read *reads =
	    array_grow(raft->reads_out, &raft->reads_out_cap, raft->reads_out_count + 1,
		       sizeof(*raft->reads_out), 2);

	if (reads == NULL)
		return false; /* Out of memory: the caller keeps the read or loses it. */
	raft->reads_out = reads;
	raft->reads_out[raft->reads_out_count++] =
	    (struct raft_read){.context = context, .index = index};
	ASSERT(raft->reads_out_count <= raft->reads_out_cap);
	return true;
}

/* Answer a read: locally or to the follower that forwarded it. Returns false
 * when a local answer found no memory (a forwarded one is then lost like a
 * message: the follower's caller gives the read up after a while). */
bool raft_read_answer(struct raft *raft, uint64_t from, uint64_t context, uint64_t index)
{
	struct raft_msg *m;

	if (from == raft->config.id)
		return raft_read_out(raft, context, index);
	m = raft_msg_new(raft, RAFT_MSG_READ_INDEX_RESP, from, false);
	m->context = context;
	m->index = index;
	m->reject = index == 0;
	return true;
}

/* Leadership is gone: every pending read is refused so callers retry. */
void raft_reads_fail(struct raft *raft)
{
	for (uint32_t i = 0; i < raft->reads_pending_count; i++)
		raft_read_answer(raft, raft->reads_pending[i].from, raft->reads_pending[i].context,
				 0);
	raft->reads_pending_count = 0;
}

static bool lease_valid(const struct raft *raft)
{
	return raft->config.lease_read && raft->config.check_quorum && !raft->lease_revoked &&
	       raft->transfer_target == RAFT_NONE && raft->now_ms < raft->lease_until_ms;
}

/* ReadIndex (§6.4): release the reads whose heartbeat round a quorum has
 * acknowledged; that quorum proves we were still leader when they arrived. */
void raft_reads_process(struct raft *raft)
{
	uint64_t acked = raft_quorum_value(raft, true);
	uint32_t kept = 0;

	if (raft->config.check_quorum && acked > 0 && raft->hb_seq - acked < HB_RING) {
		/* Voters that acked a heartbeat sent at t will not vote for anyone
		 * else before t + promise_ms on their clocks (§6.4.1; the promise
		 * is at most the election timeout: raft_in_lease). */
		uint64_t until = raft->hb_sent_ms[acked % HB_RING] + raft->config.promise_ms -
				 min_u64(raft->config.clock_drift_max_ms, raft->config.promise_ms);
		raft->lease_until_ms = max_u64(raft->lease_until_ms, until);
	}
	for (uint32_t i = 0; i < raft->reads_pending_count; i++) {
		struct raft_pending_read *rd = &raft->reads_pending[i];

		ASSERT(rd->seq <= raft->hb_seq + 1); /* No read waits on a round not yet due. */
		if (rd->seq != 0 && rd->seq <= acked &&
		    raft_read_answer(raft, rd->from, rd->context, rd->index))
			continue;
		raft->reads_pending[kept++] = *rd; /* Unconfirmed, or no memory to answer yet. */
	}
	raft->reads_pending_count = kept;
}

void raft_reads_start_waiting(struct raft *raft)
{
	for (uint32_t i = 0; i < raft->reads_pending_count; i++) {
		struct raft_pending_read *rd = &raft->reads_pending[i];

		if (rd->seq == 0) {
			rd->index = raft->commit;
			rd->seq = raft->hb_seq + 1;
			raft->hb_pending = true;
		}
	}
}

/* Leader: make room for one more pending read and one more answer. */
static bool raft_reads_reserve(struct raft *raft)
{
	struct raft_pending_read *pending;
	struct raft_read *out;

	pending = array_grow(raft->reads_pending, &raft->reads_pending_cap,
			     raft->reads_pending_count + 1, sizeof(*raft->reads_pending), 2);
	if (pending == NULL)
		return false;
	raft->reads_pending = pending;
	out = array_grow(raft->reads_out, &raft->reads_out_cap, raft->reads_out_count + 1,
			 sizeof(*raft->reads_out), 2);
	if (out == NULL)
		return false;
	raft->reads_out = out;
	return true;
}

void raft_handle_read_index(struct raft *raft, uint64_t from, uint64_t context)
{
	struct raft_pending_read *rd;

	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(from != RAFT_NONE);
	if (lease_valid(raft) && raft_committed_in_term(raft)) {
		raft_read_answer(raft, from, context, raft->commit);
		return;
	}
	if (raft->reads_pending_count == raft->config.reads_max) {
		raft_read_answer(raft, from, context, 0);
		return;
	}
	rd = array_grow(raft->reads_pending, &raft->reads_pending_cap,
			raft->reads_pending_count + 1, sizeof(*raft->reads_pending), 2);
	if (rd == NULL) {
		raft_read_answer(raft, from, context, 0); /* Out of memory: refused, retry. */
		return;
	}
	raft->reads_pending = rd;
	rd = &raft->reads_pending[raft->reads_pending_count++];
	*rd = (struct raft_pending_read){.context = context, .from = from};
	if (raft_committed_in_term(raft)) {
		rd->index = raft->commit;
		rd->seq = raft->hb_seq + 1;
		raft->hb_pending = true;
	}
	/* Otherwise wait until the no-op of this term commits (§6.4 step 1). */
	raft_reads_process(raft); /* A single voter confirms at once. */
}

int raft_read_index(struct raft *raft, uint64_t context, uint64_t now_ms)
{
	struct raft_msg *m;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role == RAFT_ROLE_LEADER) {
		if (raft->reads_pending_count == raft->config.reads_max && !lease_valid(raft))
			return -EAGAIN;
		/* Room to queue the read and to answer it, so that it is not lost. */
		if (!raft_reads_reserve(raft))
			return -ENOMEM;
		raft_wake(raft);
		raft_handle_read_index(raft, raft->config.id, context);
		return 0;
	}
	if (raft->leader == RAFT_NONE || raft->leader_down)
		return RAFT_ERR_NOT_LEADER;
	m = raft_msg_new(raft, RAFT_MSG_READ_INDEX, raft->leader, false);
	if (m == &raft->msg_lost)
		return -ENOMEM;
	m->context = context;
	return 0;
}

/* Stale reads are served from whatever this replica applied, with no round
 * to the leader: the figures say how stale that may be. A follower knows
 * the leader's commit index as of its last message; a leader knows it was
 * still leading as of the last heartbeat round a quorum acknowledged (each
 * acknowledgment promises no vote for another candidate for a while:
 * raft_reads_process), and, while its lease holds, that no one else can
 * commit at all. Until its first round is acknowledged, a new leader counts
 * from its election (the votes of a quorum). A leader elected but not yet
 * committing in its term may lag the commit index of the leader before it:
 * it claims no lease then. */
void raft_staleness(const struct raft *raft, struct raft_staleness *out)
{
	uint64_t acked;

	*out = (struct raft_staleness){.applied = raft->applied,
				       .leader_commit =
					   max_u64(raft->commit, raft->leader_commit_seen),
				       .contact_ms = raft->leader_contact_ms};
	ASSERT(out->applied <= out->leader_commit); /* Only committed entries are applied. */
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	out->leading = lease_valid(raft) && raft_committed_in_term(raft);
	acked = raft_quorum_value(raft, true);
	if (acked > 0 && raft->hb_seq - acked < HB_RING)
		out->contact_ms = max_u64(out->contact_ms, raft->hb_sent_ms[acked % HB_RING]);
}

void raft_note_committed(struct raft *raft, uint64_t index)
{
	if (index > raft->leader_commit_seen)
		raft->leader_commit_seen = index;
}
