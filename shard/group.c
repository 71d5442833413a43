/* Group lifecycle and readies: open, create, join, close; a message stepped
 * into a group; a group's ready carried out (WAL, messages, reads, apply). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* Keep the heap holding the group's next deadline. Stale items (a deadline
 * that moved) are skipped when popped. */
int group_schedule(struct shard *s, struct group *g)
{
	uint64_t d = raft_next_deadline(&g->raft);
	int rv;

	if (d == RAFT_DEADLINE_NONE || d == g->scheduled_ms)
		return 0;
	if (g->scheduled_ms != 0 && g->scheduled_ms <= d && g->scheduled_ms > s->now_ms)
		return 0; /* An earlier wake-up is already queued; it reschedules. */
	rv = table_deadline_push(s, d, g->id);
	if (rv == 0)
		g->scheduled_ms = d;
	return rv;
}

void group_step(struct shard *s, uint64_t peer, const struct raft_msg *m)
{
	struct group *g;

	if (m->from != peer || m->to != s->config.node_id)
		return; /* A peer speaks only for itself, and only to us. */
	g = table_find(s, m->group);
	if (g == NULL)
		return; /* Not hosted here (yet, or any more). */
	if (s->space_low && ((m->type == RAFT_MSG_APPEND && m->entries_count > 0) ||
			     m->type == RAFT_MSG_SNAPSHOT)) {
		/* No room for them: as if the network lost them. The leader
		 * sends them again once a heartbeat shows this log behind.
		 * Its commit index still tells stale reads how far behind. */
		stat_add(&s->stats.appends_dropped_no_space, 1);
		if (m->type == RAFT_MSG_APPEND)
			raft_note_committed(&g->raft, m->commit);
		return;
	}
	if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) &&
	    (m->flags & RAFT_MSG_FLAG_METADATA) && m->term >= raft_term(&g->raft))
		g->metadata_only = true; /* A witness: see group_is_witness(). */
	if (m->type == RAFT_MSG_SNAPSHOT && !catchup_accept(s, g, peer, m))
		return; /* Its file is not here: the leader sends it again. */
	raft_step(&g->raft, m, s->now_ms);
	table_dirty(s, g);
}

/* No leader because of repair (this replica's, or too many members'): say
 * so rather than "not the leader", which invites a retry elsewhere. */
int group_error(const struct group *g, int rv)
{
	if (rv == RAFT_ERR_NOT_LEADER && raft_leader(&g->raft) == RAFT_NONE &&
	    (raft_is_repairing(&g->raft) || raft_is_blocked_by_repair(&g->raft)))
		return RAFT_ERR_REPAIRING;
	return rv;
}

/* Hand entries from..to of the apply scratch to the state machine. Not on
 * a witness: its entries have no payloads and its state machine holds
 * nothing of the group (their results are 0). */
static void group_apply_run(struct shard *s, struct group *g, uint32_t from, uint32_t to)
{
	if (from == to)
		return;
	if (group_is_witness(g)) {
		memset(s->apply_results + from, 0, (to - from) * sizeof(*s->apply_results));
		return;
	}
	if (s->config.sm.apply) {
		uint64_t started_ns = loop_now_ns(&s->loop);

		s->config.sm.apply(s->config.sm.ctx, g->id, s->apply_entries + from, to - from,
				   s->apply_results + from);
		hist_record(&s->stats.apply_us, (loop_now_ns(&s->loop) - started_ns) / 1000);
	}
	if (s->config.sm.digest == NULL)
		for (uint32_t i = from; i < to; i++)
			check_hash_entry(g, &s->apply_entries[i]);
}

/* Apply a ready's committed entries. Returns 0, or -ENOMEM when the apply
 * scratch cannot grow: the engine handed them out, so the shard stops. */
static int group_apply(struct shard *s, struct group *g, const struct raft_ready *rd)
{
	uint32_t n = 0, k = 0, run = 0;
	uint64_t last, committed_ns;

	if (rd->committed_count == 0)
		return 0;
	committed_ns = loop_now_ns(&s->loop); /* Before the applies: commit latency. */
	if (rd->committed_count > s->apply_cap) {
		uint32_t entries_cap = s->apply_cap, results_cap = s->apply_cap;
		struct fl_entry *entries = array_grow(s->apply_entries, &entries_cap,
						      rd->committed_count, sizeof(*entries), 8);
		uint64_t *results;

		if (entries == NULL)
			return -ENOMEM;
		s->apply_entries = entries;
		results = array_grow(s->apply_results, &results_cap, rd->committed_count,
				     sizeof(*results), 8);
		if (results == NULL)
			return -ENOMEM;
		s->apply_results = results;
		s->apply_cap = entries_cap < results_cap ? entries_cap : results_cap;
	}
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];

		ASSERT(e->index == rd->committed[0].index + i); /* Applied in log order. */
		if (e->type == RAFT_ENTRY_NORMAL) {
			s->apply_entries[n++] = (struct fl_entry){
			    .index = e->index, .term = e->term, .data = e->data, .size = e->size};
			g->applied_bytes += e->size;
		} else if (e->type == RAFT_ENTRY_CHECK) {
			/* A check digests the state right after the entry before it:
			 * the apply call is split here. Check entries are the shard's,
			 * never the embedder's. */
			group_apply_run(s, g, run, n);
			run = n;
			check_apply(s, g, e);
		}
	}
	group_apply_run(s, g, run, n);
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];
		uint64_t result = 0, proposed_ns;

		if (e->type == RAFT_ENTRY_NORMAL)
			result = s->config.sm.apply ? s->apply_results[k++] : 0;
		proposed_ns = pending_props_settle(g, e->index, e->term, result);
		if (proposed_ns != 0 && proposed_ns <= committed_ns)
			hist_record(&s->stats.commit_us, (committed_ns - proposed_ns) / 1000);
	}
	last = rd->committed[rd->committed_count - 1].index;
	if (last > g->applied_max)
		g->applied_max = last;
	stat_add(&s->stats.applied, rd->committed_count);
	if (g->was_leader)
		stat_add(&s->stats.commits, rd->committed_count);
	raft_applied(&g->raft, last);
	pending_reads_settle(g, last);
	return 0;
}

/* Carry out one ready of g. Returns 0, or the error that must stop the shard
 * (never once it is stopped): the caller shard_fail()s. */
/* Say why an append to the WAL failed (unless the shard is already stopped):
 * the caller stops the shard. */
static void group_append_failed(struct shard *s, int rv)
{
	/* -ENOSPC here means the reserve kept for a full disk is spent, which
	 * space_check() is there to prevent. */
	if (!s->wal_failed && rv == -ENOSPC)
		log_shard(&s->config.log, LOG_LEVEL_ERROR, s->config.shard_index,
			  "WAL directory %s is out of space and its reserve is spent; stopping its "
			  "groups: %s",
			  s->config.wal_dir, wal_why(&s->wal));
	else if (!s->wal_failed)
		log_shard(&s->config.log, LOG_LEVEL_ERROR, s->config.shard_index,
			  "WAL append failed: %s", err_str(rv));
}

static int group_ready(struct shard *s, struct group *g)
{
	struct raft_ready rd;
	int rv;

	ASSERT(g->deferred_count == 0); /* No ready while records wait: persist.c. */
	raft_ready(&g->raft, &rd);
	if (rd.snapshot && (rv = catchup_install(s, g, rd.snapshot)) != 0) {
		/* The engine moved on to the snapshot; the state machine could not.
		 * Stop here rather than apply entries on top of the wrong state. */
		log_group(&s->config.log, LOG_LEVEL_ERROR, (int32_t)s->config.shard_index, g->id,
			  "cannot install snapshot %llu: %s",
			  (unsigned long long)rd.snapshot->index, err_str(rv));
		return s->wal_failed ? 0 : WAL_ERR_FAILED;
	}
	if (rd.snapshot || rd.entries_count > 0 || rd.hard_changed) {
		rv = s->wal_failed ? WAL_ERR_FAILED : persist_append_ready(s, g, &rd);
		if (rv != 0) {
			/* The engine handed these records out: they cannot be
			 * dropped. (A full batch buffer defers them: persist.c.) */
			group_append_failed(s, rv);
			/* Nothing may leave that depends on this ready. */
			return s->wal_failed ? 0 : WAL_ERR_FAILED;
		}
	}
	for (uint32_t i = 0; i < rd.msgs_count; i++) {
		struct peer *p = peer_find(s, rd.msgs[i].to);

		if (p == NULL)
			continue;
		if (rd.msgs[i].type == RAFT_MSG_SNAPSHOT)
			catchup_start(s, &rd.msgs[i]);
		else
			peer_queue(s, p, &rd.msgs[i]);
	}
	for (uint32_t i = 0; i < rd.msgs_after_count; i++) {
		struct peer *p = peer_find(s, rd.msgs_after[i].to);

		if (p != NULL)
			persist_after(s, g, p, &rd.msgs_after[i]);
	}
	pending_reads_ready(g, &rd);
	rv = group_apply(s, g, &rd); /* Last: it calls back into the engine. */
	if (rv != 0) {
		log_group(&s->config.log, LOG_LEVEL_ERROR, (int32_t)s->config.shard_index, g->id,
			  "cannot apply: %s", err_str(rv));
		return s->wal_failed ? 0 : WAL_ERR_FAILED;
	}
	return 0;
}

/* When a repair ends, write a hard state without the repairing flag (after
 * the entries that ended it: on a crash before it is durable, the group
 * repairs again on restart, which is safe); say so, and say once when
 * repairing members block the group. */
static int group_repair_watch(struct shard *s, struct group *g)
{
	bool blocked = raft_is_blocked_by_repair(&g->raft);

	if (g->repairing && !raft_is_repairing(&g->raft) && !s->wal_failed) {
		struct wal_hard hard = {g->hard_term, g->hard_vote, raft_commit_index(&g->raft),
					false};
		int rv = persist_append_hard(s, g, &hard);

		if (rv != 0) {
			group_append_failed(s, rv);
			return WAL_ERR_FAILED;
		}
		g->repairing = false;
		stat_add(&s->stats.repairs, 1);
		log_limit_group(&s->log_limit, s->now_ms, SHARD_LOG_REPAIRED, LOG_LEVEL_INFO, g->id,
				"repaired: the log holds leader %llu's up to its mark (index %llu "
				"now); voting and acknowledging again",
				(unsigned long long)raft_leader(&g->raft),
				(unsigned long long)raft_last_index(&g->raft));
	}
	if (blocked && !g->blocked_logged)
		log_limit_group(
		    &s->log_limit, s->now_ms, SHARD_LOG_UNAVAILABLE, LOG_LEVEL_WARN, g->id,
		    "unavailable: too many of its members repair data their storage lost (%s); "
		    "waiting, never electing without them",
		    raft_is_leader(&g->raft) ? "too few left to commit" : "votes refused");
	g->blocked_logged = blocked;
	return 0;
}

int group_process(struct shard *s, struct group *g)
{
	bool leader;
	int rv;

	if (s->wal_failed)
		persist_drop(g); /* Never to be written. */
	/* What the WAL could not take at an earlier turn goes first; while any
	 * is left, the group takes no new ready (back-pressure: persist.c). */
	rv = persist_drain(s, g);
	if (rv != 0 && rv != -EAGAIN) {
		group_append_failed(s, rv);
		return WAL_ERR_FAILED;
	}
	for (int i = 0; i < 16 && g->deferred_count == 0 && raft_has_ready(&g->raft); i++) {
		rv = group_ready(s, g);
		if (rv != 0)
			return rv;
	}
	check_propose_due(s, g);
	raft_trim(&g->raft); /* Frees the ready's buffers once the group is quiesced. */
	save_maybe(s, g);
	if (g->raft.elections_started != g->elections_seen) {
		stat_add(&s->stats.elections, g->raft.elections_started - g->elections_seen);
		g->elections_seen = g->raft.elections_started;
	}
	leader = raft_is_leader(&g->raft);
	if (leader != g->was_leader) {
		if (leader) {
			stat_add(&s->stats.leaders, 1);
			stat_add(&s->stats.leaderships, 1);
		} else {
			atomic_fetch_sub_explicit(&s->stats.leaders, 1, memory_order_relaxed);
		}
		g->was_leader = leader;
	}
	rv = group_repair_watch(s, g);
	if (rv != 0)
		return rv;
	if (raft_leader(&g->raft) != g->last_leader) {
		g->last_leader = raft_leader(&g->raft);
		pending_reads_abandon(g, UINT64_MAX); /* Asked of another leader. */
		if (s->config.sm.leader_changed)
			s->config.sm.leader_changed(s->config.sm.ctx, g->id, g->last_leader,
						    raft_term(&g->raft));
		if (g->last_leader != RAFT_NONE)
			log_limit_group(&s->log_limit, s->now_ms, SHARD_LOG_LEADER, LOG_LEVEL_INFO,
					g->id, "leader is node %llu, term %llu",
					(unsigned long long)g->last_leader,
					(unsigned long long)raft_term(&g->raft));
	}
	/* Stalled: its deferred records, or a deadline that found no memory,
	 * are tried again at the next turn. */
	if (group_schedule(s, g) != 0 || g->deferred_count > 0)
		table_stall(s, g);
	return 0;
}

int group_open(struct shard *s, uint64_t id, const struct raft_boot *boot, struct group **out)
{
	struct group *g = calloc(1, sizeof(*g));
	struct raft_config rc;
	int rv;

	if (g == NULL)
		return -ENOMEM;
	raft_config_default(&rc, s->config.node_id, id);
	rc.seed = XXH3_64bits_withSeed(&id, sizeof(id), s->config.node_id);
	rc.election_timeout_ms = s->config.election_timeout_ms;
	rc.heartbeat_interval_ms = s->config.heartbeat_interval_ms;
	rc.clock_drift_max_ms = s->config.election_timeout_ms / 10;
	/* Each acknowledgement promises the leader no vote for another for as
	 * long as its host may be silent before it is suspected: a busy group
	 * whose leader's host went silent elects as soon as it is suspected,
	 * and the lease (that long less the drift) still ends first. */
	rc.promise_ms = SHARD_SUSPECT_BEATS * s->config.heartbeat_interval_ms;
	if (rc.promise_ms > rc.election_timeout_ms)
		rc.promise_ms = rc.election_timeout_ms;
	rc.entry_size_max = s->config.entry_size_max;
	rc.quiesce = s->config.quiesce;
	rc.quiesce_after_ms = s->config.election_timeout_ms * 3;
	rc.lease_read = s->config.lease_read;
	g->id = id;
	/* A group that starts from a snapshot does not know its check window. */
	g->check_hash_known = boot->snapshot.index == 0;
	g->hard_term = boot->hard.term;
	g->hard_vote = boot->hard.vote;
	rv = raft_init(&g->raft, &rc, boot, s->now_ms);
	if (rv != 0) {
		free(g);
		return rv;
	}
	rv = table_insert(s, g);
	if (rv != 0) {
		raft_deinit(&g->raft);
		free(g);
		return rv;
	}
	table_dirty(s, g);
	*out = g;
	return 0;
}

/* Take g off the shard's lists of batched, dirty and stalled groups, which hold
 * pointers to it, before it is freed: a group removed while this turn's
 * drain batched proposals for it, or after a message made it dirty, would
 * otherwise be processed after the free. Its batch is proposed first, so
 * that pending_fail_all() answers those proposals too. */
static void group_unlink(struct shard *s, struct group *g)
{
	struct group **link;

	if (g->batched) {
		for (link = &s->batched_head; *link != g; link = &(*link)->batch_next)
			ASSERT(*link != NULL); /* A batched group is on the list. */
		*link = g->batch_next;
		group_propose_batch(s, g);
	}
	table_unlink(s, g);
}

void group_close(struct shard *s, struct group *g, int rv)
{
	group_unlink(s, g);
	pending_fail_all(g, rv);
	save_answer(&g->snap_asked, rv, 0);
	save_answer(&g->snap_saving, rv, 0); /* Its view is dropped when written. */
	if (g->was_leader)
		atomic_fetch_sub_explicit(&s->stats.leaders, 1, memory_order_relaxed);
	table_erase(s, g);
	raft_deinit(&g->raft);
	persist_deinit(g);
	free(g->props);
	free(g->reads);
	free(g->reads_apply);
	free(g->check_waits);
	free(g->received);
	free(g);
}

/* The bound on the groups a node hosts (fl_node_config.groups_max), for
 * creations and joins: take one slot of the node-wide count, or refuse with
 * ERR_GROUPS_FULL (counted, and logged through the shard's limiter). The
 * count is shared by the node's shards, so the slot is taken with a
 * compare-and-swap: the count is the groups hosted plus the slots taken for
 * groups being added, and creations and joins never take it past the
 * bound. The group's table_insert() keeps the slot (s->group_reserved);
 * group_release() gives it back when the group was not added. Groups
 * recovered at start are not bounded: they exist already. */
static int group_reserve(struct shard *s, uint64_t id, const char *what)
{
	_Atomic uint64_t *hosted = s->config.groups_hosted;
	uint64_t n;

	if (hosted == NULL)
		return 0;
	n = atomic_load(hosted);
	do {
		if (n >= s->config.groups_max) {
			stat_add(&s->stats.groups_refused, 1);
			log_limit_group(
			    &s->log_limit, s->now_ms, SHARD_LOG_GROUPS_FULL, LOG_LEVEL_WARN, id,
			    "%s refused: this node hosts %llu groups, the most it may "
			    "(groups_max %llu)",
			    what, (unsigned long long)n, (unsigned long long)s->config.groups_max);
			return ERR_GROUPS_FULL;
		}
	} while (!atomic_compare_exchange_weak(hosted, &n, n + 1));
	ASSERT(!s->group_reserved); /* One group is added at a time. */
	s->group_reserved = true;
	return 0;
}

/* After the group was added (its insert kept the slot) or not. */
static void group_release(struct shard *s)
{
	if (!s->group_reserved)
		return;
	s->group_reserved = false;
	atomic_fetch_sub(s->config.groups_hosted, 1);
}

/* A new group starts from one CONF entry at index 1, term 1, the same on every
 * initial member, so that their logs match from the first entry. */
static int group_create_new(struct shard *s, uint64_t id, const uint64_t *members, uint32_t count)
{
	struct raft_conf conf = {0};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	struct raft_entry entry = {.term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .data = buf};
	struct raft_boot boot = {
	    .hard = {.term = 1, .commit = 1}, .entries = &entry, .entries_count = 1};
	struct group *g;

	if (table_find(s, id))
		return ERR_GROUP_EXISTS;
	if (wal_has_lost_segments(&s->wal) && wal_group_find(&s->wal, id) == NULL)
		return recover_lost_group(s, id);
	for (uint32_t i = 0; i < count; i++)
		if (raft_conf_add(&conf, members[i], RAFT_MEMBER_VOTER) != 0)
			return RAFT_ERR_CONF_INVALID;
	if (raft_conf_role(&conf, s->config.node_id) != RAFT_MEMBER_VOTER)
		return RAFT_ERR_CONF_INVALID;
	raft_conf_encode(&conf, buf);
	entry.size = raft_conf_encoded_size(&conf);
	/* The engine hands the boot entry out as already durable; it goes to the
	 * WAL here, ahead of anything the group does. */
	{
		struct wal_entry we = {
		    .term = 1, .type = RAFT_ENTRY_CONF, .size = entry.size, .data = buf};
		struct wal_hard hard = {.term = 1, .commit = 1};
		int rv = wal_append_entries(&s->wal, id, 1, &we, 1);

		if (rv == 0)
			rv = wal_append_hard(&s->wal, id, &hard);
		if (rv != 0)
			return rv;
	}
	return group_open(s, id, &boot, &g);
}

int group_create(struct shard *s, uint64_t id, const uint64_t *members, uint32_t count)
{
	int rv;

	if (table_find(s, id))
		return ERR_GROUP_EXISTS;
	rv = group_reserve(s, id, "creation");
	if (rv != 0)
		return rv;
	rv = group_create_new(s, id, members, count);
	group_release(s);
	return rv;
}

int group_join(struct shard *s, uint64_t id)
{
	struct raft_boot boot = {0};
	struct wal_hard hard = {0};
	struct group *g;
	int rv;

	if (table_find(s, id))
		return ERR_GROUP_EXISTS;
	rv = group_reserve(s, id, "JOIN");
	if (rv != 0)
		return rv;
	rv = wal_append_hard(&s->wal, id, &hard); /* So a restart knows the group. */
	if (rv == 0)
		rv = group_open(s, id, &boot, &g);
	group_release(s);
	return rv;
}

/* Whether a write (proposal, membership change) of g must be refused now:
 * 0, WAL_ERR_FAILED, or, on a leader whose WAL is low on space, ERR_NO_SPACE
 * (RAFT_ERR_TRANSFER while it hands its leadership over: the client retries
 * and finds the next leader). A follower answers as always: not the leader. */
int group_write_refused(struct shard *s, const struct group *g)
{
	if (s->wal_failed)
		return WAL_ERR_FAILED;
	if (!s->space_low || !raft_is_leader(&g->raft))
		return 0;
	if (g->raft.transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	return ERR_NO_SPACE;
}

void group_propose_batch(struct shard *s, struct group *g)
{
	struct shard_req *req;
	uint64_t first = 0, term = raft_term(&g->raft);
	struct raft_buf *bufs;
	uint32_t n = 0;
	int rv;

	/* batch_count counts entries: a batch request brings several. Room for
	 * their pending proposals is made first: once proposed, each must be
	 * answered when its entry applies. */
	bufs = array_grow(s->prop_bufs, &s->prop_bufs_cap, g->batch_count, sizeof(*bufs), 8);
	if (bufs != NULL)
		s->prop_bufs = bufs;
	rv = bufs == NULL ? -ENOMEM : pending_props_reserve(g, g->batch_count);
	for (req = g->batch_head; req && rv == 0; req = req->next) {
		if (req->type == SHARD_REQ_PROPOSE) {
			s->prop_bufs[n++] = (struct raft_buf){.data = req->data, .size = req->size};
			continue;
		}
		for (uint32_t k = 0; k < req->size; k++) {
			const struct shard_prop_item *it =
			    (const struct shard_prop_item *)req->data + k;

			s->prop_bufs[n++] =
			    (struct raft_buf){.data = req->data + it->offset, .size = it->size};
		}
	}
	if (rv == 0)
		rv = group_write_refused(s, g);
	if (rv == 0)
		rv = group_error(g, raft_propose(&g->raft, s->prop_bufs, n, &first));
	if (rv == 0)
		stat_add(&s->stats.proposals, n);
	if (rv == ERR_NO_SPACE)
		stat_add(&s->stats.writes_refused_no_space, n);
	for (uint64_t index = first; (req = g->batch_head) != NULL;) {
		uint32_t k = 0, entries = req->type == SHARD_REQ_PROPOSE ? 1 : req->size;

		g->batch_head = req->next;
		for (; k < entries; k++) {
			void *arg = req->type == SHARD_REQ_PROPOSE
					? req->arg
					: ((const struct shard_prop_item *)req->data)[k].arg;

			if (rv == 0)
				pending_prop_push(g, (struct pending_prop){index++, term, req->cb,
									   arg, s->now_ns});
			else
				pending_answer(req->cb, arg, rv, 0, raft_leader(&g->raft));
		}
		free(req); /* Requests are malloc()ed by their sender: shard.h. */
	}
	g->batch_tail = NULL;
	g->batch_count = 0;
	g->batched = false;
	table_dirty(s, g);
}
