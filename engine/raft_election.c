/* Elections: follower, pre-candidate, candidate and leader (§5.2, §9.6),
 * granting votes (one per term, for an up-to-date log, §5.4.1), leader
 * stickiness, leadership transfer (§3.10) and the takeover after a leader's
 * process died (raft_peer_down). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

enum vote_result { VOTE_PENDING, VOTE_WON, VOTE_LOST };

enum vote_answer { VOTE_NONE, VOTE_GIVEN, VOTE_REFUSED };

/* The answer id gave to this campaign. The answers are one list of ids (at
 * most one per member) and a mask of the refusals, not a list per kind. */
static enum vote_answer vote_of(const struct raft *raft, uint64_t id)
{
	for (uint32_t i = 0; i < raft->votes_count; i++)
		if (raft->votes[i] == id)
			return (raft->votes_refused >> i) & 1u ? VOTE_REFUSED : VOTE_GIVEN;
	return VOTE_NONE;
}

/* Whether id is a member of conf (in either half while joint). */
static bool conf_has(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id == id)
			return true;
	return false;
}

/* A campaign starts with our own vote. */
static void votes_reset(struct raft *raft)
{
	raft->votes[0] = raft->config.id;
	raft->votes_count = 1;
	raft->votes_refused = 0;
}

/* An election needs a majority of each half (§4.3). */
static enum vote_result vote_tally(const struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	bool won = true;

	for (int h = 0; h < raft_conf_halves(conf); h++) {
		uint32_t n = 0, granted = 0, rejected = 0;

		for (uint32_t i = 0; i < conf->members_count; i++) {
			const struct raft_member *m = &conf->members[i];

			if (!raft_role_votes(raft_member_role_in(m, h)))
				continue;
			n++;
			switch (vote_of(raft, m->id)) {
			case VOTE_GIVEN:
				granted++;
				break;
			case VOTE_REFUSED:
				rejected++;
				break;
			default:
				break;
			}
		}
		if (n == 0)
			continue;
		if (rejected >= n - n / 2)
			return VOTE_LOST;
		if (granted < n / 2 + 1)
			won = false;
	}
	return won ? VOTE_WON : VOTE_PENDING;
}

/* ------------------------------------------------------------ role change */

/* Order of node id in this group's takeover (see takeover_rank). */
static uint64_t takeover_key(const struct raft *raft, uint64_t id)
{
	return raft_mix64(raft->config.group ^ raft_mix64(id));
}

void raft_become_follower(struct raft *raft, uint64_t term, uint64_t leader)
{
	ASSERT(term >= raft->term); /* Term is monotonic. */
	if (term > raft->term) {
		raft->term = term;
		raft->vote = RAFT_NONE;
	}
	if (raft->role == RAFT_ROLE_LEADER) {
		raft_reads_fail(raft);
		raft_progress_clear(raft);
	}
	raft->role = RAFT_ROLE_FOLLOWER;
	raft->leader = leader;
	raft->leader_down = false;
	raft->leader_suspect = false;
	if (leader != RAFT_NONE)
		raft->takeover = false; /* Someone took over. */
	raft->leader_heard_ms = raft->now_ms;
	raft->transfer_target = RAFT_NONE;
	raft->lease_until_ms = 0;
	raft->lease_revoked = false;
	raft->quiesced = false;
	raft->hb_pending = false;
	raft->votes_count = 0;
	raft->votes_refused = 0;
	raft_election_timer_reset(raft);
}

static void become_leader(struct raft *raft)
{
	int rv;

	ASSERT(raft->role == RAFT_ROLE_CANDIDATE);
	raft->role = RAFT_ROLE_LEADER;
	raft->takeover = false;
	raft->leader = raft->config.id;
	raft->leaderships_won++;
	raft->transfer_target = RAFT_NONE;
	raft->uncommitted_size = 0;
	raft->lease_until_ms = 0;
	raft->lease_revoked = false;
	raft->reads_pending_count = 0;
	raft->leader_contact_ms = raft->now_ms; /* A quorum's votes just confirmed us. */
	raft_progress_clear(raft);
	raft->heartbeat_deadline_ms = raft->now_ms + raft->config.heartbeat_interval_ms;
	raft->check_quorum_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	/* §6.4 / §8: a no-op of the new term lets the leader learn and commit
	 * what its predecessors committed, and enables ReadIndex. */
	rv = raft_progress_sync(raft);
	if (rv == 0)
		rv = raft_log_append(&raft->log, raft->term, RAFT_ENTRY_NOOP, NULL, 0);
	if (rv != 0) {
		/* Out of memory: a leader that cannot track its followers or
		 * append its no-op steps down; another election follows. */
		raft_become_follower(raft, raft->term, RAFT_NONE);
		return;
	}
	ASSERT(raft_log_last_term(&raft->log) == raft->term); /* The no-op is ours. */
	raft_bcast_append(raft, true);
}

static void send_vote_requests(struct raft *raft, uint32_t type, uint64_t term, uint32_t flags)
{
	const struct raft_conf *conf = raft_conf_current(raft);

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];
		struct raft_msg *msg;

		if (m->id == raft->config.id ||
		    !(raft_role_votes(m->role) || raft_role_votes(m->role_old)))
			continue;
		/* A real vote request depends on our durable term and self-vote. */
		msg = raft_msg_new(raft, type, m->id, type == RAFT_MSG_VOTE);
		msg->term = term;
		msg->index = raft_log_last(&raft->log);
		msg->log_term = raft_log_last_term(&raft->log);
		msg->flags = flags;
	}
}

static void become_candidate(struct raft *raft, bool transfer)
{
	raft->term++;
	raft->vote = raft->config.id;
	raft->role = RAFT_ROLE_CANDIDATE;
	raft->leader = RAFT_NONE;
	raft->quiesced = false;
	raft->elections_started++;
	votes_reset(raft);
	raft_election_timer_reset(raft);
	if (vote_tally(raft) == VOTE_WON) {
		become_leader(raft);
		return;
	}
	send_vote_requests(raft, RAFT_MSG_VOTE, raft->term, transfer ? RAFT_MSG_FLAG_TRANSFER : 0);
}

/* Thesis §9.6: ask first whether we could win, without disturbing anyone's term. */
static void become_pre_candidate(struct raft *raft)
{
	raft->role = RAFT_ROLE_PRE_CANDIDATE;
	raft->leader = RAFT_NONE;
	raft->quiesced = false;
	votes_reset(raft);
	raft_election_timer_reset(raft);
	if (vote_tally(raft) == VOTE_WON) {
		become_candidate(raft, false);
		return;
	}
	send_vote_requests(raft, RAFT_MSG_PRE_VOTE, raft->term + 1, 0);
}

void raft_campaign(struct raft *raft, bool transfer)
{
	if (!raft_is_promotable(raft))
		return;
	if (raft->config.pre_vote && !transfer)
		become_pre_candidate(raft);
	else
		become_candidate(raft, transfer);
}

void raft_transfer_maybe_send(struct raft *raft, struct raft_progress *pr)
{
	if (raft->transfer_target != pr->id || pr->match != raft_log_last(&raft->log))
		return;
	/* From here on the target may win votes that ignore leader stickiness,
	 * so this term's lease can no longer be trusted. */
	raft->lease_revoked = true;
	raft_msg_new(raft, RAFT_MSG_TIMEOUT_NOW, pr->id, false);
}

/* ---------------------------------------------------------------- steps */

static bool log_up_to_date(const struct raft *raft, uint64_t last_term, uint64_t last_index)
{
	uint64_t my_term = raft_log_last_term(&raft->log);

	return last_term > my_term ||
	       (last_term == my_term && last_index >= raft_log_last(&raft->log));
}

/* Leader stickiness (§4.2.3, §9.6): while we believe a leader is alive, we
 * do not help anyone else win. This is also what the leader lease rests on. */
bool raft_in_lease(const struct raft *raft)
{
	if (!raft->config.check_quorum)
		return false;
	/* A restarted node may have acknowledged a leader just before it went
	 * down without remembering it: it keeps that promise for one election
	 * timeout after it starts. */
	if (raft->now_ms < raft->boot_sticky_until_ms)
		return true;
	if (raft->leader == RAFT_NONE || raft->leader_down)
		return false;
	if (raft->role == RAFT_ROLE_LEADER)
		return true;
	/* LIVENESS: the promise made with the last acknowledgement, exactly. */
	if (raft->leader_suspect)
		return raft->now_ms < raft->leader_heard_ms + raft->config.promise_ms;
	/* Quiesced, or woken lately, with the leader's host heard: more
	 * refusal than promised, which only guards the leader from
	 * disruption. */
	if (raft->quiesced)
		return true;
	return raft->now_ms <
	       max_u64(raft->leader_heard_ms, raft->woken_ms) + raft->config.election_timeout_ms;
}

void raft_step_vote(struct raft *raft, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PRE_VOTE;
	bool up = log_up_to_date(raft, m->log_term, m->index);
	bool grant;
	struct raft_msg *resp;

	raft_assert_step(raft);
	ASSERT(m->term >= raft->term);        /* Stale requests were refused in step_term. */
	ASSERT(pre || m->term == raft->term); /* A real vote request set our term. */
	if (raft->repairing) {
		/* REPAIR: our log may lack committed entries; no vote at all. */
		resp = raft_msg_new(raft, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP,
				    m->from, !pre);
		resp->term = raft->term;
		resp->reject = true;
		resp->flags = RAFT_MSG_FLAG_REPAIR;
		return;
	}
	if (pre) {
		/* Grant if a real election would be allowed: higher term, log at
		 * least as up to date, and no leader we still believe in. */
		grant = m->term > raft->term && up &&
			(!raft_in_lease(raft) || (m->flags & RAFT_MSG_FLAG_TRANSFER));
		/* Taking over from a dead leader, survivors go in a per-group
		 * order; one campaigning does not help a later one past it, or
		 * both would reach the real election and split the vote. Only
		 * liveness is at stake: a refused pre-vote changes no state. */
		if (grant && raft->takeover && raft->role != RAFT_ROLE_FOLLOWER &&
		    takeover_key(raft, m->from) > takeover_key(raft, raft->config.id))
			grant = false;
		resp = raft_msg_new(raft, RAFT_MSG_PRE_VOTE_RESP, m->from, false);
		resp->term = grant ? m->term : raft->term;
		resp->reject = !grant;
		return;
	}
	/* §5.2, §5.4.1: one vote per term, only for an up-to-date log. */
	grant =
	    (raft->vote == m->from || (raft->vote == RAFT_NONE && raft->leader == RAFT_NONE)) && up;
	if (grant) {
		ASSERT(raft->vote == RAFT_NONE || raft->vote == m->from); /* One vote per term. */
		ASSERT(!raft->repairing); /* REPAIR: never a vote. */
		raft->vote = m->from;
		raft_election_timer_reset(raft);
	}
	resp = raft_msg_new(raft, RAFT_MSG_VOTE_RESP, m->from, true);
	resp->reject = !grant;
}

void raft_step_vote_resp(struct raft *raft, const struct raft_msg *m)
{
	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_PRE_CANDIDATE || raft->role == RAFT_ROLE_CANDIDATE);
	ASSERT(raft->role != RAFT_ROLE_CANDIDATE || m->term == raft->term);
	ASSERT(vote_of(raft, raft->config.id) == VOTE_GIVEN);
	if (m->reject && (m->flags & RAFT_MSG_FLAG_REPAIR))
		raft->repair_refused_ms = raft->now_ms;
	enum vote_result result;

	/* Only members' answers are kept: vote_tally() counts no other, and a
	 * campaign ends before the membership can change (a new entry or
	 * snapshot comes from a leader, which we then follow). So the list
	 * never holds more than the members and us (a voter that a later
	 * configuration removes may campaign: raft_is_promotable). */
	if (vote_of(raft, m->from) != VOTE_NONE || !conf_has(raft_conf_current(raft), m->from))
		return;
	ASSERT(raft->votes_count < RAFT_MEMBERS_MAX + 1); /* At most one per member. */
	if (m->reject)
		raft->votes_refused |= 1u << raft->votes_count;
	raft->votes[raft->votes_count++] = m->from;
	result = vote_tally(raft);
	if (result == VOTE_WON) {
		if (raft->role == RAFT_ROLE_PRE_CANDIDATE)
			become_candidate(raft, false);
		else
			become_leader(raft);
	} else if (result == VOTE_LOST) {
		raft->takeover = false;
		raft_become_follower(raft, raft->term, RAFT_NONE);
	}
}

int raft_transfer(struct raft *raft, uint64_t target, uint64_t now_ms)
{
	struct raft_progress *pr;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role != RAFT_ROLE_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (raft->transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	if (target == raft->config.id ||
	    raft_conf_role(raft_conf_current(raft), target) != RAFT_MEMBER_VOTER)
		return -EINVAL;
	pr = raft_progress_find(raft, target);
	if (pr == NULL)
		return -EINVAL;
	if (pr->repairing)
		return RAFT_ERR_REPAIRING; /* It would not campaign: proposals would stall. */
	raft_wake(raft);
	raft->transfer_target = target;
	raft->transfer_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
	if (pr->match == raft_log_last(&raft->log))
		raft_transfer_maybe_send(raft, pr);
	else
		raft_send_append(raft, pr, true);
	return 0;
}

/* Safety of peer_down. A follower that learns its leader's process died
 * stops waiting out the election timeout and, as a voter, stops refusing
 * (pre)votes on the leader's behalf (raft_in_lease). Nothing else changes: votes
 * still need a majority of each configuration, one per term, for an
 * up-to-date log, so Election Safety, Log Matching and Leader Completeness
 * are untouched; only timing is. The one promise it does release is leader
 * stickiness, which the lease rests on: voters that heard from the leader
 * within an election timeout refuse to elect another. That is safe because
 * the promise is released only for a leader whose process is gone, and a
 * process that is gone serves no reads; a restarted node is a follower
 * without a lease. The transport must therefore report peer_down only on
 * evidence that the process died (its connection closed and an immediate
 * reconnect was refused), never on a mere timeout. As defence in depth, a
 * leader that sees any peer go down drops its own lease at once. */
/* This node's place among the voters that may take over from a dead leader,
 * in an order drawn per group (so a dead node's groups spread their new
 * leaders over the survivors): lower keys go first. */
static uint64_t takeover_rank(const struct raft *raft, uint64_t dead)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	uint64_t rank = 0, mine = takeover_key(raft, raft->config.id);

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id == dead || m->id == raft->config.id ||
		    !(m->role == RAFT_MEMBER_VOTER ||
		      (conf->joint && m->role_old == RAFT_MEMBER_VOTER &&
		       m->role != RAFT_MEMBER_WITNESS)))
			continue;
		if (takeover_key(raft, m->id) < mine)
			rank++;
	}
	return rank;
}

void raft_peer_down(struct raft *raft, uint64_t node, uint64_t now_ms)
{
	struct raft_progress *pr;
	uint64_t rank;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role == RAFT_ROLE_LEADER) {
		pr = raft_progress_find(raft, node);
		if (pr == NULL)
			return;
		pr->down = true;
		raft->lease_until_ms = 0;
		/* Late acks of heartbeats sent before now must not restore the
		 * lease: skip the sequence past the ring, so raft_reads_process()
		 * takes a lease only from heartbeats sent after this. */
		raft->hb_seq += HB_RING;
		if (pr->state == RAFT_PROGRESS_REPLICATE)
			raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
		return;
	}
	if (node != raft->leader)
		return;
	raft->leader_down = true;
	raft->quiesced = false;
	if (raft->role != RAFT_ROLE_FOLLOWER || !raft_is_promotable(raft))
		return;
	raft->takeover = true;
	rank = takeover_rank(raft, node);
	if (rank == 0) {
		raft_campaign(raft, false);
		/* Voters that have not yet heard of the death still refuse: retry
		 * after a quarter heartbeat, not a whole election timeout, and
		 * before the next survivor's turn. */
		if (raft->role != RAFT_ROLE_LEADER)
			raft->election_deadline_ms =
			    raft->now_ms + max_u64(1, raft->config.heartbeat_interval_ms / 4);
		return;
	}
	/* The others wait their turn, so that survivors do not all campaign at
	 * once and split the vote; each turn is half a heartbeat interval. */
	raft->election_deadline_ms =
	    raft->now_ms + rank * max_u64(1, raft->config.heartbeat_interval_ms / 2);
}

void raft_peer_up(struct raft *raft, uint64_t node)
{
	struct raft_progress *pr;

	raft_out_begin(raft);
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	pr = raft_progress_find(raft, node);
	if (pr == NULL || !pr->down)
		return;
	pr->down = false;
	pr->probe_sent = false;
	raft_send_append(raft, pr, true);
}

/* LIVENESS: host-level suspicion, and why the lease still holds.
 *
 * The shard exchanges one small frame per heartbeat interval with each peer
 * node for all of its groups together, and suspects a peer whose host sent
 * nothing for a few intervals (raft_peer_suspect). A quiesced group has no
 * traffic of its own: without the suspicion its followers would believe in
 * a silent leader for as long as the silence lasts (raft_in_lease counts a
 * quiesced group as led), and a busy group would wait out a randomized
 * timeout.
 *
 * The lease (raft_read.c): a leader serves reads alone until
 *     hb_sent(s) + promise - clock_drift_max
 * for a heartbeat round s that a quorum acknowledged (promise is
 * config.promise_ms, at most the election timeout). Each voter that
 * acknowledged it promised not to help elect another before promise_ms
 * after it heard that round, which was after it was sent. A voter keeps that
 * promise in the only two places where it helps a candidate:
 *   - it grants no PreVote and no Vote to another while raft_in_lease(). For
 *     a suspected leader that is until leader_heard_ms + promise_ms: exactly
 *     the promise made with its last acknowledgement; for a leader whose
 *     host it still hears, longer (an election timeout).
 *     leader_heard_ms is set only by a message from the leader (never by
 *     waking from quiescence: see raft_wake), and a voter acknowledges
 *     nothing it did not hear.
 *   - it votes for itself only when raft_tick's election timer fires, and
 *     every timer set while it follows a leader is at or past
 *     leader_heard_ms + promise_ms (asserted in raft_tick): a reset adds at
 *     least an election timeout to now >= leader_heard_ms, and the
 *     suspicion moves the timer earlier but never below that.
 * So a quorum that elects another leader on the strength of a suspicion
 * holds only voters past their promise. It intersects the quorum whose
 * acknowledgements gave the old leader its lease, so that lease ended (on
 * the old leader's clock, less the drift allowance) before the first vote
 * of the new term was granted: a leader cut off but alive serves no lease
 * read after its groups moved. It learns that it is cut off at its next
 * CheckQuorum or read confirmation round and steps down.
 *
 * Election Safety, Log Matching and Leader Completeness do not rest on time:
 * votes still need a majority of each configuration, one per term, for an
 * up-to-date log. What the suspicion changes is when a follower campaigns:
 * a quiesced one wakes and campaigns as soon as its promise ran out (at once,
 * for a group quiet for longer than an election timeout), in the group's
 * takeover order, half a heartbeat apart so that survivors do not split the
 * vote. A false suspicion (a slow host) costs at most a PreVote round, which
 * the followers that still hear the leader's host refuse. */
void raft_peer_suspect(struct raft *raft, uint64_t node, uint64_t now_ms)
{
	uint64_t promise_ms, deadline_ms;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role != RAFT_ROLE_FOLLOWER || node != raft->leader || raft->leader_down)
		return;
	raft->leader_suspect = true;
	raft->quiesced = false;
	if (!raft_is_promotable(raft))
		return;
	/* The lease we promised the leader with our last acknowledgement. */
	promise_ms =
	    max_u64(raft->leader_heard_ms + raft->config.promise_ms, raft->boot_sticky_until_ms);
	deadline_ms =
	    max_u64(raft->now_ms, promise_ms) +
	    takeover_rank(raft, node) * max_u64(1, raft->config.heartbeat_interval_ms / 2);
	ASSERT(deadline_ms >= raft->leader_heard_ms + raft->config.promise_ms);
	raft->election_deadline_ms = deadline_ms;
}

void raft_peer_heard(struct raft *raft, uint64_t node)
{
	raft_out_begin(raft);
	if (raft->leader != node || !raft->leader_suspect)
		return;
	/* Its host answers again: its groups will soon say whether it still
	 * leads. The election timer stays as set: if nothing comes from the
	 * leader before it fires, the group campaigns as on any timeout. */
	raft->leader_suspect = false;
}
