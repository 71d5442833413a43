/* Requests from the inbox: application calls and the net thread's sockets. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/log.h"
#include "shard/shard_internal.h"

void request_free(struct shard_req *req)
{
	free(req);
}

static void request_change(struct shard *s, struct group *g, struct shard_req *req)
{
	struct raft_conf target = *raft_conf(&g->raft);
	int rv = 0;

	/* The target is the current final configuration with one member changed. */
	for (uint32_t i = 0; i < target.members_count; i++)
		target.members[i].role_old = RAFT_MEMBER_NONE;
	switch (req->change) {
	case SHARD_CHANGE_PROMOTE: /* A learner only: a voter joins as a learner first. */
		if (raft_conf_role(&target, req->member) != RAFT_MEMBER_LEARNER) {
			rv = RAFT_ERR_CONF_INVALID;
			break;
		}
		/* Fall through. */
	case SHARD_CHANGE_ADD_VOTER:
		rv = raft_conf_add(&target, req->member, RAFT_MEMBER_VOTER);
		break;
	case SHARD_CHANGE_ADD_LEARNER:
		rv = raft_conf_add(&target, req->member, RAFT_MEMBER_LEARNER);
		break;
	case SHARD_CHANGE_ADD_WITNESS:
		/* Only a node outside the group: a voter or learner made a
		 * witness would keep the payloads and the state it holds, and
		 * a witness can never become anything else (the engine refuses). */
		rv = raft_conf_role(&target, req->member) == RAFT_MEMBER_NONE
			 ? raft_conf_add(&target, req->member, RAFT_MEMBER_WITNESS)
			 : RAFT_ERR_CONF_INVALID;
		break;
	case SHARD_CHANGE_REMOVE: {
		uint32_t k = 0;

		for (uint32_t i = 0; i < target.members_count; i++)
			if (target.members[i].id != req->member)
				target.members[k++] = target.members[i];
		rv = k == target.members_count ? RAFT_ERR_CONF_INVALID : 0;
		target.members_count = k;
		break;
	}
	default:
		rv = -EINVAL;
	}
	/* Drop members that only the old half of a joint configuration had. */
	{
		uint32_t k = 0;

		for (uint32_t i = 0; i < target.members_count; i++)
			if (target.members[i].role != RAFT_MEMBER_NONE)
				target.members[k++] = target.members[i];
		target.members_count = k;
		target.joint = false;
	}
	if (rv == 0)
		rv = group_write_refused(s, g);
	if (rv == 0)
		rv = raft_change(&g->raft, &target);
	if (rv == ERR_NO_SPACE)
		stat_add(&s->stats.writes_refused_no_space, 1);
	pending_answer(req->cb, req->arg, rv == -ENOSPC ? RAFT_ERR_CONF_INVALID : rv, 0,
		       raft_leader(&g->raft));
}

/* fl_group_info(): the membership as this node sees it. */
static void request_info(struct group *g, struct shard_req *req)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	struct fl_group_info *info;

	memcpy(&info, req->data, sizeof(info));
	*info = (struct fl_group_info){.leader = raft_leader(&g->raft),
				       .term = raft_term(&g->raft),
				       .commit_index = raft_commit_index(&g->raft),
				       .last_index = raft_last_index(&g->raft),
				       .conf_index = raft_conf_index(&g->raft),
				       .is_leader = raft_is_leader(&g->raft),
				       .joint = conf->joint,
				       .repairing = raft_is_repairing(&g->raft) ||
						    raft_is_blocked_by_repair(&g->raft),
				       .diverged = g->diverged,
				       .members_count = conf->members_count};
	for (uint32_t i = 0; i < conf->members_count && i < FL_MEMBERS_MAX; i++) {
		const struct raft_progress *pr = raft_progress_of(&g->raft, conf->members[i].id);

		info->members[i] = (struct fl_member_info){.id = conf->members[i].id,
							   .match = pr != NULL ? pr->match : 0,
							   .role = conf->members[i].role,
							   .role_old = conf->members[i].role_old};
	}
	pending_answer(req->cb, req->arg, 0, 0, raft_leader(&g->raft));
}

/* fl_group_recover(): the refusal rule, then the engine's forced recovery
 * (engine/raft_recover.c), told loudly in the log. */
static void request_recover(struct shard *s, struct group *g, struct shard_req *req)
{
	struct raft_recover_report rep;
	struct fl_recover_report *out;
	char why[96] = "";
	int rv = 0;

	memcpy(&out, req->data, sizeof(out));
	if (!(req->change & FL_RECOVER_FORCE) && liveness_group_has_quorum(s, g, why, sizeof(why)))
		rv = ERR_QUORUM_REACHABLE;
	if (rv == 0)
		rv = group_write_refused(s, g);
	if (rv == 0)
		rv = raft_recover(&g->raft, &rep, s->now_ms);
	if (rv == RAFT_ERR_CONF_INVALID)
		rv = ERR_NOT_SURVIVOR;
	if (rv != 0) {
		log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, g->id,
			  "recovery refused: %s%s%s", err_str(rv), why[0] ? ": " : "", why);
		*out = (struct fl_recover_report){0};
		if (rv == ERR_QUORUM_REACHABLE)
			snprintf(out->refused_why, sizeof(out->refused_why), "%s", why);
		pending_answer(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		return;
	}
	*out = (struct fl_recover_report){.term_before = rep.term_before,
					  .term = rep.term,
					  .commit_before = rep.commit_before,
					  .last_before = rep.last_before,
					  .conf_index = rep.conf_index,
					  .dropped_count = rep.dropped_count};
	for (uint32_t i = 0; i < rep.dropped_count && i < FL_MEMBERS_MAX; i++)
		out->dropped[i] = rep.dropped[i];
	log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, g->id,
		  "RECOVERED from a lost majority%s: single voter in term %llu (was %llu), "
		  "%u members dropped; index range possibly lost: %llu and up (commit was "
		  "%llu); entries %llu..%llu kept and committed without a majority",
		  req->change & FL_RECOVER_FORCE ? " (forced)" : "", (unsigned long long)rep.term,
		  (unsigned long long)rep.term_before, rep.dropped_count,
		  (unsigned long long)rep.commit_before + 1, (unsigned long long)rep.commit_before,
		  (unsigned long long)rep.commit_before + 1, (unsigned long long)rep.last_before);
	pending_answer(req->cb, req->arg, 0, rep.conf_index, raft_leader(&g->raft));
}

/* Proposals of one drain are gathered per group and appended with one call. */
static void request_batch_add(struct shard *s, struct group *g, struct shard_req *req)
{
	req->next = NULL;
	if (g->batch_tail)
		g->batch_tail->next = req;
	else
		g->batch_head = req;
	g->batch_tail = req;
	g->batch_count += req->type == SHARD_REQ_PROPOSE ? 1 : req->size;
	if (!g->batched) {
		g->batched = true;
		g->batch_next = s->batched_head;
		s->batched_head = g;
	}
}

static void request_handle(struct shard *s, struct shard_req *req)
{
	struct group *g = NULL;
	int rv = 0;

	switch (req->type) {
	case SHARD_REQ_CONN:
		if (req->outgoing) {
			/* A removed peer's slot too: its dial ends there. */
			struct peer *p = peer_find_any(s, req->member);

			if (p)
				peer_connected(s, p, req->fd,
					       req->auth || req->seal ? req->session_key : NULL,
					       req->seal);
			else
				close(req->fd);
		} else if (peer_find_any(s, req->member) != NULL &&
			   peer_find(s, req->member) == NULL) {
			close(req->fd); /* Accepted just before the peer was removed. */
		} else {
			conn_adopt(s, req->fd, req->member,
				   req->auth || req->seal ? req->session_key : NULL, req->seal);
		}
		sodium_memzero(req->session_key, sizeof(req->session_key)); /* Copied. */
		request_free(req);
		return;
	case SHARD_REQ_DIAL_FAILED: {
		struct peer *p = peer_find_any(s, req->member);

		if (p)
			peer_dial_failed(s, p, req->fd);
		request_free(req);
		return;
	}
	case SHARD_REQ_PEERS:
		peer_book_apply(s, (const struct shard_book_entry *)req->data, req->size);
		pending_answer(req->cb, req->arg, 0, 0, 0);
		request_free(req);
		return;
	case SHARD_REQ_PEER_STATES: {
		struct shard_peer_state *states;

		memcpy(&states, req->data, sizeof(states));
		pending_answer(req->cb, req->arg, 0, peer_states(s, states), 0);
		request_free(req);
		return;
	}
	case SHARD_REQ_GROUP_CREATE:
		rv = s->wal_failed ? WAL_ERR_FAILED
		     : s->space_low
			 ? ERR_NO_SPACE
			 : group_create(s, req->group, (const uint64_t *)req->data, req->size);
		pending_answer(req->cb, req->arg, rv, 0, 0);
		request_free(req);
		return;
	case SHARD_REQ_GROUP_JOIN:
		rv = s->wal_failed  ? WAL_ERR_FAILED
		     : s->space_low ? ERR_NO_SPACE
				    : group_join(s, req->group);
		pending_answer(req->cb, req->arg, rv, 0, 0);
		request_free(req);
		return;
	case SHARD_REQ_LIST: {
		struct shard_list *list = (struct shard_list *)req->data;

		for (uint64_t i = 0; i < s->table_cap; i++) {
			if (s->table[i] == NULL)
				continue;
			if (list->count < list->max)
				list->groups[list->count] = s->table[i]->id;
			list->count++;
		}
		pending_answer(req->cb, req->arg, 0, list->count,
			       0); /* The count travels as result. */
		request_free(req);
		return;
	}
	default:
		break;
	}
	g = table_find(s, req->group);
	if (g == NULL || s->wal_failed) {
		/* A failed WAL stops every group: nothing it would do is durable. */
		pending_answer(req->cb, req->arg, g == NULL ? ERR_NO_GROUP : WAL_ERR_FAILED, 0, 0);
		request_free(req);
		return;
	}
	switch (req->type) {
	case SHARD_REQ_PROPOSE:
	case SHARD_REQ_PROPOSE_BATCH:
		request_batch_add(s, g, req);
		return; /* Freed by group_propose_batch(). */
	case SHARD_REQ_READ: {
		uint64_t ctx = ++s->read_ctx;
		/* Room first: once asked, the read must be found when answered. */
		struct pending_read *reads =
		    array_grow(g->reads, &g->reads_cap, g->reads_count + 1, sizeof(*reads), 8);

		if (reads != NULL)
			g->reads = reads;
		if (reads == NULL)
			rv = -ENOMEM;
		else if (group_is_witness(g))
			rv = ERR_WITNESS; /* Its state machine holds nothing of the group. */
		else if (g->diverged)
			rv = ERR_DIVERGED;
		else
			rv = group_error(g, raft_read_index(&g->raft, ctx, s->now_ms));
		if (rv == 0) {
			g->reads[g->reads_count++] =
			    (struct pending_read){ctx, req->cb, req->arg, s->now_ms};
		} else {
			pending_answer(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		}
		break;
	}
	case SHARD_REQ_READ_STALE: /* No barrier: answered now, like READ's callback. */
		stale_read(s, g, req);
		break;
	case SHARD_REQ_TRANSFER:
		rv = raft_transfer(&g->raft, req->member, s->now_ms);
		pending_answer(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_CHANGE:
		request_change(s, g, req);
		break;
	case SHARD_REQ_SNAPSHOT:
		req->next = g->snap_asked;
		g->snap_asked = req;
		table_dirty(s, g);
		return; /* Answered by save_answer(). */
	case SHARD_REQ_LEADER:
		pending_answer(req->cb, req->arg, 0, raft_is_leader(&g->raft),
			       raft_leader(&g->raft));
		break;
	case SHARD_REQ_CHECK:
		rv = check_start(s, g, req->cb, req->arg);
		if (rv != 0)
			pending_answer(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_REBUILD:
		rv = check_rebuild_start(s, g, req->cb, req->arg);
		if (rv != 0)
			pending_answer(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_INFO:
		request_info(g, req);
		break;
	case SHARD_REQ_RECOVER:
		request_recover(s, g, req);
		break;
	case SHARD_REQ_GROUP_REMOVE:
		if (s->wal_failed || (rv = wal_append_removed(&s->wal, g->id)) != 0) {
			pending_answer(req->cb, req->arg, s->wal_failed ? WAL_ERR_FAILED : rv, 0,
				       0);
			break;
		}
		snapshot_remove_group(s->snap_dir, g->id);
		group_close(s, g, ERR_STOPPING);
		pending_answer(req->cb, req->arg, 0, 0, 0);
		request_free(req);
		return;
	default:
		pending_answer(req->cb, req->arg, -EINVAL, 0, 0);
		break;
	}
	table_dirty(s, g);
	request_free(req);
}

void request_drain(struct shard *s)
{
	struct shard_req *req;

	for (int i = 0; i < 65536 && (req = inbox_pop(&s->inbox)) != NULL; i++)
		request_handle(s, req);
	while (s->batched_head) {
		struct group *g = s->batched_head;

		s->batched_head = g->batch_next;
		group_propose_batch(s, g);
	}
}
