/* Stale reads (fl_read_stale): a read answered from this replica's state
 * machine as it stands, with no round to the leader, and figures that say
 * how far behind the group it may be. The happy path: the request reaches
 * the group's shard thread, which asks the engine what it knows
 * (raft_staleness: applied index, the highest leader commit learned, when a
 * leader was last heard or a quorum last confirmed this leader), turns the
 * times into an age on the shard's monotonic clock, checks the caller's
 * bounds, and runs the callback right there: between two applies, so the
 * state machine holds exactly the applied index it reports.
 *
 * Quiesced groups send nothing while idle, so their engine's contact time
 * ages though nothing is missed. A leader quiesces a group only once every
 * member holds its whole log, committed, and wakes it with its next write,
 * whose appends go out on the same connections as the host liveness pings
 * (liveness.c). So while a group is quiesced, its follower's contact is as
 * recent as the last bytes from its leader's host (unless that host is
 * suspected or down), and its leader's as recent as the last bytes from a
 * quorum of its voters' hosts. An append still in flight is missed, as it is
 * by any replica between two messages: the figures are good to a message's
 * transit and a loop turn.
 *
 * Refusals: ERR_STALE when a bound is exceeded (the figures are filled in
 * anyway), ERR_DIVERGED on a replica a consistency check found diverged,
 * ERR_WITNESS on a witness (it holds no state),
 * -EAGAIN in the moment between the engine taking a snapshot and the state
 * machine restoring it. */
#include <errno.h>
#include <string.h>

#include "base/err.h"
#include "shard/shard_internal.h"

/* The heard time of a peer's host, or 0 when suspected or unknown. */
static uint64_t stale_heard_ms(struct shard *s, uint64_t node)
{
	struct peer *p = node == s->config.node_id ? NULL : peer_find(s, node);

	if (node == s->config.node_id)
		return s->now_ms;
	return p != NULL && !p->suspected ? p->heard_ms : 0;
}

/* A quiesced group: the liveness-based contact time (see above), or 0. */
static uint64_t stale_quiesced_contact_ms(struct shard *s, struct group *g)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	uint64_t heard[FL_MEMBERS_MAX];
	uint32_t n = 0;

	if (!raft_is_quiesced(&g->raft))
		return 0;
	if (!raft_is_leader(&g->raft)) {
		if (raft_leader(&g->raft) == 0 || g->raft.leader_down || g->raft.leader_suspect)
			return 0;
		return stale_heard_ms(s, raft_leader(&g->raft));
	}
	if (conf->joint) /* A leader quiesces no joint configuration. */
		return 0;
	for (uint32_t i = 0; i < conf->members_count && n < FL_MEMBERS_MAX; i++)
		if (raft_conf_is_voter(conf, conf->members[i].id))
			heard[n++] = stale_heard_ms(s, conf->members[i].id);
	if (n == 0)
		return 0;
	/* The quorum-th most recent: sorted newest first, a majority is n / 2 + 1. */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && heard[j] > heard[j - 1]; j--) {
			uint64_t t = heard[j];

			heard[j] = heard[j - 1];
			heard[j - 1] = t;
		}
	return heard[n / 2];
}

/* Whether read's bounds (0: none) admit its figures. */
static bool stale_within_bounds(const struct fl_stale_read *read)
{
	if (read->behind_max != 0 && read->entries_behind > read->behind_max)
		return false;
	if (read->age_max_ms != 0 && read->contact_age_ms > read->age_max_ms)
		return false;
	return true;
}

void stale_read(struct shard *s, struct group *g, struct shard_req *req)
{
	struct fl_stale_read *read;
	struct raft_staleness st;
	uint64_t contact_ms, quiesced_ms;
	int rv;

	memcpy(&read, req->data, sizeof(read));
	if (g->raft.snapshot_dirty) {
		/* The engine took a snapshot that the state machine has not
		 * restored yet (later this turn, or once the WAL has room): the
		 * engine's applied index is not the state's until then. */
		pending_answer(req->cb, req->arg, -EAGAIN, 0, raft_leader(&g->raft));
		return;
	}
	raft_staleness(&g->raft, &st);
	contact_ms = st.contact_ms;
	quiesced_ms = stale_quiesced_contact_ms(s, g);
	if (quiesced_ms > contact_ms)
		contact_ms = quiesced_ms;
	read->applied_index = st.applied;
	read->leader_commit = st.leader_commit;
	read->entries_behind = st.leader_commit - st.applied;
	if (st.leading)
		read->contact_age_ms = 0;
	else if (contact_ms == 0)
		read->contact_age_ms = FL_STALE_AGE_UNKNOWN;
	else /* One monotonic clock: the shard's loop time, which the engine is given. */
		read->contact_age_ms = s->now_ms > contact_ms ? s->now_ms - contact_ms : 0;
	read->leader = raft_leader(&g->raft);
	read->term = raft_term(&g->raft);
	read->is_leader = raft_is_leader(&g->raft);
	rv = group_is_witness(g) ? ERR_WITNESS : pending_read_rv(g); /* A witness has no state. */
	if (rv == 0 && !stale_within_bounds(read))
		rv = ERR_STALE;
	pending_answer(req->cb, req->arg, rv, rv == 0 ? st.applied : 0, read->leader);
}
