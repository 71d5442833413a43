/* Snapshots: the leader sends its snapshot to a follower whose entries were
 * compacted, a follower installs it (or rebases on it, raft_want_snapshot),
 * and raft_compact() drops the log a snapshot covers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

/* Follower: ask our leader for a snapshot (raft_want_snapshot). */
void raft_snapshot_ask(struct raft *raft)
{
	struct raft_msg *m;

	if (raft->leader == RAFT_NONE || raft->role == RAFT_ROLE_LEADER)
		return;
	m = raft_msg_new(raft, RAFT_MSG_SNAPSHOT_WANTED, raft->leader, false);
	m->index = raft->log.snapshot_index;
}

void raft_send_snapshot(struct raft *raft, struct raft_progress *pr)
{
	struct raft_msg *m = raft_msg_new(raft, RAFT_MSG_SNAPSHOT, pr->id, false);

	m->index = raft->snap.index;
	m->log_term = raft->snap.term;
	raft_progress_become(raft, pr, RAFT_PROGRESS_SNAPSHOT);
	pr->snapshot_index = raft->snap.index;
}

/* Leader: send our snapshot to the followers that asked for one it satisfies. */
static void snapshot_offer(struct raft *raft)
{
	if (raft->role != RAFT_ROLE_LEADER || raft->snap.index == 0)
		return;
	for (uint32_t i = 0; i < raft->progress_count; i++) {
		struct raft_progress *pr = &raft->progress[i];

		if (!pr->snapshot_wanted || raft->snap.index < pr->snapshot_need ||
		    pr->id == raft->config.id)
			continue;
		pr->snapshot_wanted = false;
		if (pr->state != RAFT_PROGRESS_SNAPSHOT)
			raft_send_snapshot(raft, pr);
	}
}

/* raft_want_snapshot(): install s over a log that already holds its index.
 * Our log matches the leader's up to s (Log Matching: same index and term),
 * so the snapshot replaces exactly entries 1..s; those after s stay, and the
 * committed ones among them are applied again. Only what is durable here is
 * compacted. Returns false when s cannot serve (then the request stands). */
static bool snapshot_rebase(struct raft *raft, const struct raft_snapshot_meta *s)
{
	if (s->index < raft->log.snapshot_index || s->index == 0)
		return false; /* Older than our log: entries after it are gone here. */
	if (s->index > raft_log_last(&raft->log) ||
	    raft_log_term_at(&raft->log, s->index) != s->term) {
		if (s->index <= raft->commit)
			return false; /* Cannot be: a committed entry differs. Wait for another. */
		raft->snapshot_wanted = false;
		return false; /* Past or beside our log: the ordinary install replaces it. */
	}
	if (s->index > raft->log.stable_index)
		return false; /* Not durable here yet: a later snapshot will do. */
	if (s->index > raft->log.snapshot_index) {
		raft_log_compact(&raft->log, s->index);
		raft_confs_trim(raft, s->index);
	}
	raft->snap = *s;
	raft->snap.conf = *raft_conf_in_force_at(raft, s->index);
	if (raft->commit < s->index)
		raft->commit = s->index; /* The leader snapshots only what it applied. */
	raft->applied = raft->applying = s->index;
	raft->snapshot_dirty = true;
	raft->snapshot_wanted = false;
	return true;
}

void raft_handle_snapshot(struct raft *raft, const struct raft_msg *m)
{
	const struct raft_snapshot_meta *s = m->snapshot;
	struct raft_msg *resp;

	/* Malformed: a leader's snapshot holds only entries of its term or
	 * earlier. A later term would put the log ahead of our own term. */
	if (s == NULL || s->conf.members_count > RAFT_MEMBERS_MAX || s->term > m->term)
		return;
	/* Malformed too: term 0 past index 0 (no entry has it). */
	if (s->index > 0 && s->term == 0)
		return;
	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_FOLLOWER);
	ASSERT(m->term == raft->term);
	ASSERT(raft->leader == m->from);
	resp = raft_msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
	raft_repair_flag(raft, resp, true); /* Every answer below is an index we match. */
	if (raft->snapshot_wanted && snapshot_rebase(raft, s)) {
		resp->index = s->index;
		return;
	}
	if (s->index <= raft->commit) {
		resp->index = raft->commit;
		return;
	}
	if (s->index <= raft_log_last(&raft->log) &&
	    raft_log_term_at(&raft->log, s->index) == s->term) {
		/* We hold the snapshot's last entry: our log matches up to it. */
		raft_commit_to(raft, s->index);
		resp->index = s->index;
		return;
	}
	raft_log_reset(&raft->log, s->index, s->term);
	raft->snap = *s;
	raft->confs_count = 0;
	raft_conf_push(raft, s->index, &s->conf);
	raft->commit = s->index;
	raft->applied = raft->applying = s->index;
	raft->snapshot_dirty = true;
	resp->index = s->index;
}

/* A follower asks for a snapshot at or past m->index (raft_want_snapshot). */
void raft_handle_snapshot_wanted(struct raft *raft, struct raft_progress *pr,
				 const struct raft_msg *m)
{
	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(pr->id == m->from);
	raft_assert_progress(raft, pr);
	pr->recent_active = true;
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		return; /* One is on its way. */
	pr->snapshot_wanted = true;
	pr->snapshot_need = m->index;
	snapshot_offer(raft); /* Else raft_is_snapshot_requested() says so. */
}

int raft_want_snapshot(struct raft *raft)
{
	raft_out_begin(raft);
	if (raft->role == RAFT_ROLE_LEADER)
		return -EINVAL;
	if (raft->leader == RAFT_NONE)
		return RAFT_ERR_NOT_LEADER;
	raft->snapshot_wanted = true;
	raft_wake(raft);
	raft_snapshot_ask(raft);
	return 0;
}

bool raft_is_snapshot_wanted(const struct raft *raft)
{
	return raft->snapshot_wanted;
}

bool raft_is_snapshot_requested(const struct raft *raft)
{
	if (raft->role != RAFT_ROLE_LEADER)
		return false;
	/* snapshot_offer() clears the flag of every request it could serve. */
	for (uint32_t i = 0; i < raft->progress_count; i++)
		if (raft->progress[i].snapshot_wanted)
			return true;
	return false;
}

int raft_compact(struct raft *raft, uint64_t index)
{
	const struct raft_conf *conf;

	raft_out_begin(raft);
	if (index <= raft->log.snapshot_index)
		return RAFT_ERR_COMPACTED;
	if (index > raft->applied || index > raft_log_last(&raft->log))
		return RAFT_ERR_UNAVAILABLE;
	conf = raft_conf_in_force_at(raft, index);
	raft->snap.index = index;
	raft->snap.term = raft_log_term_at(&raft->log, index);
	raft->snap.conf = *conf;
	raft_log_compact(&raft->log, index);
	raft_confs_trim(raft, index);
	snapshot_offer(raft);
	return 0;
}

void raft_snapshot_sent(struct raft *raft, uint64_t node, bool ok, uint64_t now_ms)
{
	struct raft_progress *pr;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	pr = raft_progress_find(raft, node);
	if (pr == NULL || pr->state != RAFT_PROGRESS_SNAPSHOT)
		return;
	raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
	if (ok) {
		/* Wait for the follower's answer before probing again. */
		pr->next = max_u64(pr->next, pr->snapshot_index + 1);
		pr->probe_sent = true;
	}
}
