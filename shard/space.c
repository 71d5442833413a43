/* The low-space mode: see space_check(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* The voter other than this node to hand g's leadership to: a recently
 * active one with the longest log, or RAFT_NONE. */
static uint64_t space_handoff_target(struct shard *s, struct group *g)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	uint64_t target = RAFT_NONE, best = 0;

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];
		const struct raft_progress *pr = raft_progress_of(&g->raft, m->id);
		uint64_t score;

		if (m->id == s->config.node_id || m->role != RAFT_MEMBER_VOTER || pr == NULL)
			continue;
		score = pr->match + 1 + (pr->recent_active ? UINT64_MAX / 2 : 0);
		if (score > best) {
			best = score;
			target = m->id;
		}
	}
	return target;
}

/* Leaders of a shard low on space hand their groups to peers (thesis §3.10),
 * so that clients keep writing through a node that has room. Returns how
 * many transfers started. */
static uint32_t space_handoff(struct shard *s)
{
	uint32_t started = 0;

	for (uint64_t i = 0; i < s->table_cap; i++) {
		struct group *g = s->table[i];
		uint64_t target;

		if (g == NULL || !raft_is_leader(&g->raft) || g->raft.transfer_target != RAFT_NONE)
			continue;
		target = space_handoff_target(s, g);
		if (target != RAFT_NONE && raft_transfer(&g->raft, target, s->now_ms) == 0) {
			started++;
			table_dirty(s, g);
		}
	}
	return started;
}

/* Enter or leave the low-space mode. The WAL turns low when it cannot make
 * the spare it keeps beyond its tail: the tail and what spare is left still
 * take every record already handed out (entries proposed or received
 * before, hard states of votes, a new leader's first entry), but nothing
 * new may come in. Safety does not depend on this: an append that finds no
 * room fails before writing, and group_ready() then stops the shard rather
 * than let a message leave ahead of what it depends on. */
void space_check(struct shard *s)
{
	uint32_t started;
	int rv;

	if (s->wal_failed)
		return;
	if (!s->space_low && wal_space_low(&s->wal)) {
		s->space_low = true;
		s->space_retry_ms = s->now_ms + SHARD_SPACE_RETRY_MS;
		atomic_store_explicit(&s->stats.space_low, 1, memory_order_relaxed);
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "WAL directory %s is out of space (ENOSPC): refusing writes until space "
			  "returns (%s)",
			  s->config.wal_dir, wal_why(&s->wal));
		started = space_handoff(s);
		if (started > 0)
			log_shard(&s->config.log, LOG_LEVEL_INFO, s->config.shard_index,
				  "handing leadership of %u groups to peers with room", started);
		return;
	}
	if (!s->space_low || s->now_ms < s->space_retry_ms)
		return;
	s->space_retry_ms = s->now_ms + SHARD_SPACE_RETRY_MS;
	rv = wal_space_retry(&s->wal);
	if (rv != 0) {
		space_handoff(s); /* Leaders elected meanwhile. */
		return;
	}
	s->space_low = false;
	atomic_store_explicit(&s->stats.space_low, 0, memory_order_relaxed);
	log_shard(&s->config.log, LOG_LEVEL_INFO, s->config.shard_index,
		  "WAL directory %s has space again: accepting writes", s->config.wal_dir);
}
