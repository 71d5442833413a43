/* REPAIR: a member whose storage lost records of this group (see the long
 * comment at raft_repair_end) and the leader's side of its repair. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

/* REPAIR. A member whose storage lost records of this group (a damaged
 * WAL record or snapshot file) restarts from what it could verify: its own
 * snapshot, or nothing. It may have acknowledged entries it no longer
 * holds, and a leader may have counted those acknowledgements toward a
 * commit; if it voted or counted as before, a committed entry could be
 * lost (a leader elected with its vote might lack the entry) or a commit
 * could rest on a copy that is gone. Protocol-aware recovery (Alagappan et
 * al., FAST 2018) in Raft terms:
 *
 *   1. While repairing it never grants a vote (nor a pre-vote) and never
 *      campaigns. Every entry committed so far is held by a majority of
 *      which it may have been part; the other members of that majority
 *      still hold the entry, and any leader needs the votes of a majority
 *      that intersects it without us, so every elected leader holds every
 *      committed entry (§5.4.1 still applies, with our vote taken away).
 *   2. Its responses carry RAFT_MSG_FLAG_REPAIR, and its append responses
 *      the repair id of this start (raft_repair_flag()). The leader that sees a
 *      new id resets its match for us to 0 (the old match claims entries
 *      we lost) and remembers its last index as the repair mark; our match
 *      does not count toward a commit until the repair ends, so no commit
 *      rests on a copy we lack. It probes and sends entries, or its snapshot once
 *      the entries are compacted, as to any follower that is behind. A late
 *      answer of an earlier life can still raise that match past our log; our
 *      reject below it puts it back to what we acknowledged (repair_rewind()
 *      in raft_replicate.c), or the probe would never reach our log.
 *   3. We accept entries only by the Log Matching check (§5.3) and take a
 *      commit index only from an append that matched up to it, never from
 *      heartbeats (which carry min(match, commit) for a match that may be
 *      stale). A snapshot is verified by its checksum before it is restored.
 *   4. The leader flags the append that brings us to its mark. Once that
 *      append matched, our log holds the leader's up to the mark, and our
 *      answer (REPAIRED, with the same id: an answer from an earlier start
 *      cannot pass for it) tells the leader so. Our log then holds every
 *      entry committed before the leader learned of the loss (a leader
 *      holds every committed entry, and commits after that did not count
 *      us). From then on we hold every committed entry we acknowledge, as
 *      any follower does, and count and vote again.
 *
 * A lost hard-state record (a lost segment, or both copies of a hard state
 * damaged) could hold a vote of a term we no longer know: any term up to
 * the latest that a hard state of that WAL named. Storage keeps a durable
 * bound on those terms, raised before a batch holding a later one is
 * reported durable, so before any vote of that term is sent
 * (io/wal_chain.c), and starts a member that repairs at the term after the
 * bound with no vote (shard/recover.c recover_term()): a term in which it
 * never voted, nor in any later one. Our answers carry that term, so a
 * leader of an older term steps down; while repairing we grant no vote, so
 * the leader we repair from was elected in a term above the bound, in which
 * we have voted for no one. Leaving repair we take that leader as our vote
 * of its term if we had none: a first vote, never a second, and never one
 * for another in that term later. The storage keeps the repair going across
 * restarts until it ends (shard.c writes it in hard state, with its term
 * and vote), and a restart draws a new id.
 *
 * When storage knows no bound (a chain file from before the bound, or one
 * lost together with a segment, or damage found before a bound was set) the
 * member keeps the term it recovered, which storage raises to the largest
 * term that a damaged record's verified header names (when a record's
 * header is damaged too, its group cannot be named and every group of that
 * WAL repairs). A vote of a later term could then be cast again in that
 * term once the repair ends. Storage writes every hard state twice
 * (io/wal.c wal_append_hard()), so that a flipped bit alone does not come to
 * that. */
void raft_repair_end(struct raft *raft, uint64_t leader)
{
	ASSERT(raft->repairing);
	ASSERT(leader != RAFT_NONE); /* Ended by an append from the leader. */
	raft->repairing = false;
	if (raft->vote == RAFT_NONE)
		raft->vote = leader;
}

/* REPAIR (see raft_repair_end): pr lost data. Forget what it matched and count
 * it only once it holds our log up to our last index as of now. */
static void progress_repair_start(struct raft *raft, struct raft_progress *pr, uint64_t id)
{
	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(pr->id != raft->config.id); /* A leader never repairs: it cannot campaign. */
	pr->repairing = true;
	pr->repair_id = id;
	pr->repair_mark = raft_log_last(&raft->log);
	pr->match = 0;
	pr->repair_match = 0;
	if (pr->state != RAFT_PROGRESS_SNAPSHOT)
		raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
	pr->next = raft_log_last(&raft->log) + 1; /* Probe back with its hints. */
}

/* REPAIR: the append responses of a repairing member tell a leader so,
 * with the id of this life of it: a new id means a new loss, even if an
 * earlier repair looked unfinished here (its match is stale again). Returns
 * true when this response started a repair (and a probe went out). */
bool raft_progress_repair_check(struct raft *raft, struct raft_progress *pr,
				const struct raft_msg *m)
{
	if (!(m->flags & RAFT_MSG_FLAG_REPAIR) || (pr->repairing && pr->repair_id == m->context))
		return false;
	progress_repair_start(raft, pr, m->context);
	raft_send_append(raft, pr, true);
	return true;
}

bool raft_is_repairing(const struct raft *raft)
{
	return raft->repairing;
}

/* Whether repairing members leave too few others to make a majority of
 * every half of the configuration (the leader's view). */
static bool repair_blocks_quorum(const struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);

	for (int h = 0; h < raft_conf_halves(conf); h++) {
		uint32_t voters = 0, whole = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			if (!raft_role_votes(raft_member_role_in(&conf->members[i], h)))
				continue;
			voters++;
			whole += raft->progress[i].repairing ? 0 : 1;
		}
		if (voters > 0 && whole <= voters / 2)
			return true;
	}
	return false;
}

bool raft_is_blocked_by_repair(const struct raft *raft)
{
	if (raft->role == RAFT_ROLE_LEADER)
		return repair_blocks_quorum(raft);
	return raft->leader == RAFT_NONE && raft->repair_refused_ms != 0 &&
	       raft->now_ms < raft->repair_refused_ms + 2ull * raft->config.election_timeout_ms;
}
