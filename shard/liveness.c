/* Host liveness: one exchange per pair of shards (the same shard index on
 * two nodes), whatever the number of groups they host, so that the groups
 * led by a host that went silent (stopped, cut off, dead without closing
 * its connections) start their elections within a few heartbeat intervals,
 * quiesced ones included, while quiesced groups send nothing of their own.
 *
 * What travels: every outgoing connection carries a frame at least once per
 * heartbeat interval. When a turn has nothing else for the peer, that is an
 * empty WIRE_FRAME_HEARTBEATS frame (a 16-byte header: no wire change, the
 * receiver decodes zero beats); busy peers need none.
 *
 * What is judged: a turn that finds bytes arrived from a peer's host notes
 * the time (heard_ms). A host from which nothing arrived for
 * SHARD_SUSPECT_BEATS heartbeat intervals is suspected, once, and every group
 * of the shard is told (raft_peer_suspect: a follower of a leader there
 * campaigns once its lease promise ran out); when bytes arrive again the
 * suspicion is lifted (raft_peer_heard). Both walks happen once per change,
 * not per turn. A shard that itself did not run for that long (a pause of
 * its own process) judges no one on that gap.
 *
 * A suspicion is not evidence that the process died (raft_peer_down is): the
 * engine releases no promise on it, so a false one (a slow host or link)
 * costs a PreVote round, not safety. See LIVENESS in engine/raft_election.c. */
#include <stdio.h>

#include "base/assert.h"
#include "base/log.h"
#include "shard/shard_internal.h"

static uint64_t liveness_suspect_ms(const struct shard *s)
{
	return (uint64_t)SHARD_SUSPECT_BEATS * s->config.heartbeat_interval_ms;
}

static void liveness_tell(struct shard *s, uint64_t node, bool suspect)
{
	for (uint64_t i = 0; i < s->table_cap; i++) {
		struct group *g = s->table[i];

		if (g == NULL)
			continue;
		if (suspect) {
			raft_peer_suspect(&g->raft, node, s->now_ms);
			table_dirty(s, g); /* Its deadline may have moved. */
		} else {
			raft_peer_heard(&g->raft, node);
		}
	}
}

static void liveness_heard(struct shard *s, uint64_t node)
{
	struct peer *p = peer_find(s, node);

	if (p == NULL)
		return;
	p->heard_ms = s->now_ms;
	if (!p->suspected)
		return;
	p->suspected = false;
	log_shard(&s->config.log, LOG_LEVEL_INFO, s->config.shard_index, "node %llu heard again",
		  (unsigned long long)node);
	liveness_tell(s, node, false);
}

/* At the start of a turn, before the received bytes are parsed. */
void liveness_turn(struct shard *s)
{
	uint64_t suspect_ms = liveness_suspect_ms(s);

	if (s->now_ms > s->live_turn_ms + suspect_ms)
		for (uint32_t i = 0; i < s->peers_count; i++)
			s->peers[i].heard_ms = s->now_ms; /* Our own silence: no verdict. */
	s->live_turn_ms = s->now_ms;
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] && s->conns[i]->received)
			liveness_heard(s, s->conns[i]->peer);
	for (uint32_t i = 0; i < s->peers_count; i++) {
		struct peer *p = &s->peers[i];

		if (p->gone || p->suspected || s->now_ms < p->heard_ms + suspect_ms)
			continue;
		p->suspected = true;
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "nothing from node %llu for %llu ms: suspected",
			  (unsigned long long)p->id, (unsigned long long)(s->now_ms - p->heard_ms));
		liveness_tell(s, p->id, true);
	}
}

/* Before peer_send(): an empty frame if the peer got nothing for an interval. */
void liveness_ping(struct shard *s, struct peer *p)
{
	if (p->state != PEER_UP || p->out.len > 0 || p->beats.len > 0 ||
	    s->now_ms < p->sent_ms + s->config.heartbeat_interval_ms)
		return;
	if (buf_reserve(&p->out, WIRE_FRAME_HEADER_SIZE + SHARD_FRAME_TAG_ROOM) != 0)
		return;                     /* Out of memory: the next turn tries again. */
	ASSERT(p->frame_start == SIZE_MAX); /* An empty out has no open frame. */
	p->out.len = WIRE_FRAME_HEADER_SIZE;
	peer_frame_seal(p, 0, WIRE_FRAME_HEARTBEATS);
}

/* The earliest of due_ms and the next ping or suspicion due. */
uint64_t liveness_due(const struct shard *s, uint64_t due_ms)
{
	for (uint32_t i = 0; i < s->peers_count; i++) {
		const struct peer *p = &s->peers[i];
		uint64_t ping_ms = p->sent_ms + s->config.heartbeat_interval_ms;
		uint64_t suspect_ms = p->heard_ms + liveness_suspect_ms(s);

		if (p->state == PEER_UP && !p->sending && ping_ms < due_ms)
			due_ms = ping_ms;
		if (!p->gone && !p->suspected && suspect_ms < due_ms)
			due_ms = suspect_ms;
	}
	return due_ms;
}

/* Host node's bytes arrived within the suspicion window (we always hear
 * ourselves). */
static bool liveness_hears(const struct shard *s, uint64_t node)
{
	const struct peer *p;

	if (node == s->config.node_id)
		return true;
	p = NULL;
	for (uint32_t i = 0; i < s->peers_count && p == NULL; i++)
		if (s->peers[i].id == node)
			p = &s->peers[i];
	return p != NULL && !p->suspected && s->now_ms < p->heard_ms + liveness_suspect_ms(s);
}

bool liveness_group_has_quorum(const struct shard *s, const struct group *g, char *why,
			       size_t why_size)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	uint64_t leader = raft_leader(&g->raft);

	if (leader != RAFT_NONE && leader != s->config.node_id && liveness_hears(s, leader)) {
		snprintf(why, why_size, "its leader, node %llu, is heard from",
			 (unsigned long long)leader);
		return true;
	}
	for (int half = 0; half < (conf->joint ? 2 : 1); half++) {
		uint32_t voters = 0, heard = 0;

		for (uint32_t i = 0; i < conf->members_count; i++) {
			const struct raft_member *m = &conf->members[i];
			uint8_t role = half == 0 ? m->role : m->role_old;

			if (role != RAFT_MEMBER_VOTER && role != RAFT_MEMBER_WITNESS)
				continue;
			voters++;
			heard += liveness_hears(s, m->id);
		}
		if (voters > 0 && heard < voters / 2 + 1)
			return false;
		snprintf(why, why_size, "%u of its %u voters are heard from", heard, voters);
	}
	return conf->members_count > 0;
}
