/* Replication: proposals, AppendEntries and their answers (§5.3), the
 * inflight window, heartbeats, the commit rule (§5.4.2, Figure 8) and the
 * leader counting itself only once durable (raft_persisted, §10.2.1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

/* ---------------------------------------------------------- replication */

static bool inflight_full(const struct raft *raft, const struct raft_progress *pr)
{
	return pr->inflight_count >= raft->config.inflight_count_max ||
	       pr->inflight_size >= raft->config.inflight_size_max;
}

static void inflight_add(const struct raft *raft, struct raft_progress *pr, uint64_t last_index,
			 uint32_t size)
{
	uint32_t slot = (pr->inflight_head + pr->inflight_count) % raft->config.inflight_count_max;

	ASSERT(pr->inflight != NULL); /* Allocated by raft_send_append(). */
	ASSERT(pr->inflight_count < raft->config.inflight_count_max);
	pr->inflight[slot] = (struct raft_inflight){.last_index = last_index, .size = size};
	pr->inflight_count++;
	pr->inflight_size += size;
}

static void inflight_free_first(const struct raft *raft, struct raft_progress *pr)
{
	if (pr->inflight_count == 0)
		return;
	pr->inflight_size -= pr->inflight[pr->inflight_head].size;
	pr->inflight_head = (pr->inflight_head + 1) % raft->config.inflight_count_max;
	pr->inflight_count--;
}

static void inflight_free_to(const struct raft *raft, struct raft_progress *pr, uint64_t index)
{
	while (pr->inflight_count > 0 && pr->inflight[pr->inflight_head].last_index <= index)
		inflight_free_first(raft, pr);
}

void raft_progress_become(struct raft *raft, struct raft_progress *pr, uint8_t state)
{
	pr->state = state;
	pr->state_ms = raft->now_ms;
	pr->probe_sent = false;
	pr->inflight_head = pr->inflight_count = pr->inflight_size = 0;
	if (state == RAFT_PROGRESS_PROBE || state == RAFT_PROGRESS_REPLICATE)
		pr->next = pr->match + 1;
}

static bool is_witness(const struct raft *raft, uint64_t id)
{
	const struct raft_conf *conf = raft_conf_current(raft);

	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id == id)
			return conf->members[i].role == RAFT_MEMBER_WITNESS ||
			       (conf->members[i].role == RAFT_MEMBER_NONE &&
				conf->members[i].role_old == RAFT_MEMBER_WITNESS);
	return false;
}

/* Leader: send pr the next entries it lacks, within its window. Entries are
 * attached by index range here and resolved to pointers in raft_ready(). */
void raft_send_append(struct raft *raft, struct raft_progress *pr, bool allow_empty)
{
	struct raft_log *log = &raft->log;
	uint64_t prev, last = raft_log_last(log), n = 0, bytes = 0;
	bool witness;
	struct raft_msg *m;

	if (pr->id == raft->config.id || pr->state == RAFT_PROGRESS_SNAPSHOT)
		return;
	if (pr->state == RAFT_PROGRESS_PROBE && pr->probe_sent)
		return;
	if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(raft, pr))
		return;
	if (pr->state == RAFT_PROGRESS_REPLICATE && pr->inflight == NULL) {
		/* The window, sized to the config, only while replicating. Out
		 * of memory, nothing is sent: as if the append were lost; the
		 * next heartbeat's answer tries again. */
		pr->inflight = malloc(raft->config.inflight_count_max * sizeof(*pr->inflight));
		if (pr->inflight == NULL)
			return;
	}
	if (pr->next < raft_log_first(log)) {
		raft_send_snapshot(raft, pr); /* The entries it needs were compacted. */
		return;
	}
	witness = is_witness(raft, pr->id);
	/* A witness gets only what we hold durably. Otherwise a crash that loses
	 * our unsynced tail could leave the witness the only holder of entries
	 * (it has no payloads to give back), more up to date than every voter,
	 * refusing them all its vote: the group could never elect again. */
	if (witness)
		last = min_u64(last, log->stable_index);
	prev = pr->next - 1;
	while (prev + n < last) {
		const struct raft_entry *e = raft_log_at(log, prev + n + 1);
		uint32_t size = witness && e->type == RAFT_ENTRY_NORMAL ? 0 : e->size;

		if (n > 0 && bytes + size > raft->config.msg_size_max)
			break;
		bytes += size;
		n++;
		if (pr->state == RAFT_PROGRESS_PROBE)
			break; /* One entry while probing: the log may not match. */
	}
	if (n == 0 && !allow_empty)
		return;
	m = raft_msg_new(raft, RAFT_MSG_APPEND, pr->id, false);
	m->index = prev;
	m->log_term = raft_log_term_at(log, prev);
	m->commit = raft->commit;
	m->entries_count = (uint32_t)n;
	m->flags = witness ? RAFT_MSG_FLAG_METADATA : 0;
	if (pr->repairing && prev + n >= pr->repair_mark)
		m->flags |= RAFT_MSG_FLAG_REPAIRED; /* REPAIR: accepting it ends the repair. */
	if (pr->state == RAFT_PROGRESS_REPLICATE) {
		if (n > 0) {
			pr->next = prev + n + 1;
			inflight_add(raft, pr, prev + n, (uint32_t)bytes);
		}
	} else {
		pr->probe_sent = true;
	}
}

void raft_bcast_append(struct raft *raft, bool allow_empty)
{
	for (uint32_t i = 0; i < raft->progress_count; i++) {
		struct raft_progress *pr = &raft->progress[i];

		raft_send_append(raft, pr, allow_empty);
		/* Replicating: fill the window, msg_size_max bytes per append. */
		while (pr->state == RAFT_PROGRESS_REPLICATE && pr->id != raft->config.id &&
		       pr->next <= raft_log_last(&raft->log) && !inflight_full(raft, pr)) {
			uint64_t next = pr->next;

			raft_send_append(raft, pr, false);
			if (pr->next == next)
				break; /* Nothing more it may have yet (a witness). */
		}
	}
}

void raft_bcast_heartbeat(struct raft *raft, uint32_t flags)
{
	raft->hb_seq++;
	raft->hb_sent_ms[raft->hb_seq % HB_RING] = raft->now_ms;
	raft->hb_pending = false;
	for (uint32_t i = 0; i < raft->progress_count; i++) {
		struct raft_progress *pr = &raft->progress[i];
		struct raft_msg *m;

		if (pr->id == raft->config.id) {
			pr->acked_seq = raft->hb_seq;
			continue;
		}
		m = raft_msg_new(raft, RAFT_MSG_HEARTBEAT, pr->id, false);
		/* Only what pr is known to hold may be committed on its side. */
		m->commit = min_u64(pr->match, raft->commit);
		m->context = raft->hb_seq;
		m->flags = flags;
	}
	raft_reads_process(raft); /* With a single voter, our own ack is the quorum. */
}

bool raft_committed_in_term(const struct raft *raft)
{
	return raft_log_term_at(&raft->log, raft->commit) == raft->term;
}

void raft_commit_to(struct raft *raft, uint64_t commit)
{
	ASSERT(commit >= raft->commit); /* Commit never regresses. */
	ASSERT(commit <= raft_log_last(&raft->log));
	ASSERT(raft_log_term_at(&raft->log, commit) <= raft->term);
	raft->commit = commit;
	ASSERT(raft->applied <= raft->commit);
	raft_confs_settle(raft);
}

int raft_leader_append(struct raft *raft, uint32_t type, const void *data, uint32_t size)
{
	int rv;

	ASSERT(raft->role == RAFT_ROLE_LEADER);
	if (type == RAFT_ENTRY_CONF) {
		rv = raft_confs_reserve(raft);
		if (rv != 0)
			return rv;
	}
	rv = raft_log_append(&raft->log, raft->term, type, data, size);
	if (rv != 0)
		return rv;
	if (type == RAFT_ENTRY_CONF)
		raft_conf_appended(raft, raft_log_at(&raft->log, raft_log_last(&raft->log)));
	raft->uncommitted_size += size;
	return 0;
}

/* Figure 8 / §5.4.2: only an entry of the current term is committed by
 * counting replicas; earlier ones commit with it. */
static bool maybe_commit(struct raft *raft)
{
	uint64_t q = raft_quorum_value(raft, false);

	if (q <= raft->commit || raft_log_term_at(&raft->log, q) != raft->term)
		return false;
	for (uint64_t i = raft->commit + 1; i <= q; i++) {
		uint32_t size = raft_log_at(&raft->log, i)->size;

		raft->uncommitted_size -= min_u64(size, raft->uncommitted_size);
	}
	raft_commit_to(raft, q);
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	raft_reads_start_waiting(raft);
	raft_reads_process(raft);
	raft_conf_advance(raft);
	return true;
}

/* Find the largest index <= index whose term is <= term: where two logs may
 * agree (the fast backtracking of §5.3's closing note). */
static uint64_t find_conflict_by_term(const struct raft *raft, uint64_t index, uint64_t term)
{
	index = min_u64(index, raft_log_last(&raft->log));
	while (index > raft->log.snapshot_index && raft_log_term_at(&raft->log, index) > term)
		index--;
	return index;
}

void raft_handle_append(struct raft *raft, const struct raft_msg *m)
{
	struct raft_log *log = &raft->log;
	uint64_t last_new = m->index + m->entries_count;
	struct raft_msg *resp;

	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_FOLLOWER);
	ASSERT(m->term == raft->term);   /* step_term settled the term. */
	ASSERT(raft->leader == m->from); /* heard_from_leader() took it as leader. */
	if (m->index < raft->commit) {
		/* Everything up to commit already matches the leader's log. */
		resp = raft_msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
		resp->index = raft->commit;
		raft_repair_flag(raft, resp, true);
		return;
	}
	if (m->index > raft_log_last(log) || raft_log_term_at(log, m->index) != m->log_term) {
		/* §5.3: reject, with a hint of where our logs may agree. */
		uint64_t hint = find_conflict_by_term(raft, m->index, m->log_term);

		resp = raft_msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
		resp->reject = true;
		resp->index = m->index;
		resp->hint_index = hint;
		resp->hint_term = raft_log_term_at(log, hint);
		raft_repair_flag(raft, resp, false);
		return;
	}
	/* Malformed (indexes not contiguous, terms decreasing or from the
	 * future): ignore the whole message, before changing anything. */
	for (uint32_t i = 0; i < m->entries_count; i++) {
		const struct raft_entry *e = &m->entries[i];

		if (e->index != m->index + 1 + i || e->term < m->log_term || e->term > m->term ||
		    (i > 0 && e->term < m->entries[i - 1].term))
			return;
	}
	for (uint32_t i = 0; i < m->entries_count; i++) {
		const struct raft_entry *e = &m->entries[i];
		uint64_t index = m->index + 1 + i;

		if (index <= raft_log_last(log)) {
			if (raft_log_term_at(log, index) == e->term)
				continue;
			/* §5.3: an existing entry conflicts with a new one: delete it
			 * and all that follow. Committed entries never conflict. */
			if (index <= raft->commit)
				return;
			raft_log_truncate(log, index);
			raft_conf_truncated(raft, index);
		}
		/* Out of memory: drop the message; the leader retries. */
		if (e->type == RAFT_ENTRY_CONF && raft_confs_reserve(raft) != 0)
			return;
		if (raft_log_append(log, e->term, e->type, e->data, e->size) != 0)
			return;
		raft_conf_appended(raft, raft_log_at(log, index));
	}
	ASSERT(raft_log_last(log) >= last_new); /* Every entry of the append is held. */
	if (m->commit > raft->commit)
		raft_commit_to(raft, min_u64(m->commit, last_new));
	resp = raft_msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
	resp->index = last_new;
	if (raft->repairing && (m->flags & RAFT_MSG_FLAG_REPAIRED))
		raft_repair_end(raft, m->from);
	raft_repair_flag(raft, resp, true);
}

/* REPAIR (raft_repair_end in raft_repair.c): while pr repairs, its match may
 * come from an answer of an earlier life of it, delayed or duplicated past
 * the loss. A life that never repaired answers with no repair id, so such an
 * answer is not told apart from one of a later, whole life, and is taken; it
 * claims entries the life being repaired lacks. Left alone, that match keeps
 * the probe floor (match + 1) above the repairing life's log: it rejects the
 * same append forever and the repair never ends. So the leader keeps, apart,
 * the highest index the life being repaired acknowledged (repair_match), and
 * when that life rejects with a hint below match while match is not its own
 * claim, match goes back to its claim and the probe restarts from its hint.
 * (A reject of its own, reordered behind its later acknowledgement, leaves
 * match alone: repair_match covers it.) The match of a repairing member counts
 * toward no commit, so lowering it costs only a probe. Returns true when it
 * rewound (a probe went out). */
static bool repair_rewind(struct raft *raft, struct raft_progress *pr, const struct raft_msg *m)
{
	uint64_t hint;

	if (!pr->repairing || m->context != pr->repair_id)
		return false;
	ASSERT(pr->repair_match <= pr->match); /* Its own claims were taken too. */
	if (!m->reject) {
		if (m->index <= raft_log_last(&raft->log))
			pr->repair_match = max_u64(pr->repair_match, m->index);
		return false;
	}
	if (m->hint_index >= pr->match || pr->repair_match >= pr->match)
		return false;
	hint = find_conflict_by_term(raft, m->hint_index, m->hint_term);
	pr->match = pr->repair_match;
	if (pr->state != RAFT_PROGRESS_SNAPSHOT)
		raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
	pr->next = max_u64(min_u64(m->index, hint + 1), pr->match + 1);
	ASSERT(pr->match < pr->next && pr->next <= raft_log_last(&raft->log) + 1);
	raft_send_append(raft, pr, true);
	return true;
}

void raft_handle_append_resp(struct raft *raft, struct raft_progress *pr, const struct raft_msg *m)
{
	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(m->term == raft->term);
	ASSERT(pr->id == m->from);
	ASSERT(pr->id != raft->config.id); /* We never answer ourselves. */
	raft_assert_progress(raft, pr);
	pr->recent_active = true;
	if (raft_progress_repair_check(raft, pr, m) || repair_rewind(raft, pr, m))
		return;
	if (pr->repairing && !m->reject && (m->flags & RAFT_MSG_FLAG_REPAIRED) &&
	    m->context == pr->repair_id && m->index >= pr->repair_mark &&
	    m->index <= raft_log_last(&raft->log)) {
		pr->repairing = false; /* Its log holds ours up to the mark. */
		if (m->index <= pr->match && maybe_commit(raft)) {
			raft_bcast_append(raft, true);
			pr = raft_progress_find(raft,
						m->from); /* The membership may have changed. */
			if (raft->role != RAFT_ROLE_LEADER || pr == NULL)
				return;
		}
	}
	if (m->reject) {
		uint64_t hint;

		if (pr->state == RAFT_PROGRESS_REPLICATE) {
			if (m->index <= pr->match)
				return; /* Stale. */
			raft_progress_become(raft, pr, RAFT_PROGRESS_PROBE);
		} else {
			if (m->index != pr->next - 1)
				return; /* Stale: not the probe we sent. */
			hint = find_conflict_by_term(raft, m->hint_index, m->hint_term);
			pr->next = max_u64(min_u64(m->index, hint + 1), pr->match + 1);
			pr->probe_sent = false;
		}
		raft_send_append(raft, pr, true);
		return;
	}
	if (m->index > raft_log_last(&raft->log))
		return; /* Claims entries we never sent: ignore. */
	if (pr->state == RAFT_PROGRESS_SNAPSHOT && m->index >= pr->snapshot_index &&
	    m->index <= pr->match) {
		/* A follower rebuilding its state machine (raft_want_snapshot)
		 * installed a snapshot below what its log already matched: it
		 * still holds that log, so replication resumes after match. */
		raft_progress_become(raft, pr, RAFT_PROGRESS_REPLICATE);
		raft_send_append(raft, pr, false);
		return;
	}
	/* A PROBE resumes only on progress (raft_progress_become below) or on a
	 * heartbeat response: if every stale or duplicated response sent a new
	 * probe, each duplicate would start one more probe/response chain that
	 * never ends, and traffic would grow without bound. */
	if (m->index > pr->match) {
		pr->match = m->index;
		pr->next = max_u64(pr->next, m->index + 1);
		if (pr->state == RAFT_PROGRESS_PROBE ||
		    (pr->state == RAFT_PROGRESS_SNAPSHOT && pr->match >= pr->snapshot_index))
			raft_progress_become(raft, pr, RAFT_PROGRESS_REPLICATE);
		inflight_free_to(raft, pr, pr->match);
		if (maybe_commit(raft))
			raft_bcast_append(raft, true);
		/* A commit may have changed the membership: find pr again. */
		pr = raft_progress_find(raft, m->from);
		if (raft->role != RAFT_ROLE_LEADER || pr == NULL)
			return;
		raft_transfer_maybe_send(raft, pr);
	}
	/* Keep the pipeline full. */
	for (int i = 0; i < RAFT_INFLIGHT_MAX && pr->next <= raft_log_last(&raft->log); i++) {
		uint32_t before = raft->msgs_count;

		raft_send_append(raft, pr, false);
		if (raft->msgs_count == before)
			break;
	}
	/* REPAIR: it holds our log up to the mark with nothing in flight; an
	 * empty append tells it so (once per response that says it repairs). */
	if (pr->repairing && (m->flags & RAFT_MSG_FLAG_REPAIR) && pr->match >= pr->repair_mark &&
	    pr->next == pr->match + 1 && pr->state == RAFT_PROGRESS_REPLICATE)
		raft_send_append(raft, pr, true);
}

void raft_handle_heartbeat_resp(struct raft *raft, struct raft_progress *pr,
				const struct raft_msg *m)
{
	raft_assert_step(raft);
	ASSERT(raft->role == RAFT_ROLE_LEADER);
	ASSERT(m->term == raft->term);
	ASSERT(pr->id == m->from);
	ASSERT(pr->acked_seq <= raft->hb_seq); /* Acks only of heartbeats we sent. */
	raft_assert_progress(raft, pr);
	pr->recent_active = true;
	if (m->context > pr->acked_seq && m->context <= raft->hb_seq)
		pr->acked_seq = m->context;
	pr->probe_sent = false;
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		; /* Waiting for the install; the timeout in tick retries. */
	else if (pr->match < raft_log_last(&raft->log) || (m->flags & RAFT_MSG_FLAG_REPAIR)) {
		/* Appends may have been lost: let one more through. One that
		 * lost data says so: its answer to an append tells which life
		 * of it repairs (raft_progress_repair_check). */
		if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(raft, pr))
			inflight_free_first(raft, pr);
		raft_send_append(raft, pr, true);
	}
	raft_reads_process(raft);
}

/* ------------------------------------------------------------ requests */

static int propose_typed(struct raft *raft, uint32_t type, const struct raft_buf *bufs,
			 uint32_t count, uint64_t *first_index)
{
	uint64_t size = 0;

	raft_out_begin(raft);
	if (raft->role != RAFT_ROLE_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (raft->transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	if (raft_is_blocked_by_repair(raft))
		return RAFT_ERR_REPAIRING; /* Nothing could commit: say why. */
	if (count == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		if (bufs[i].size > raft->config.entry_size_max)
			return -EMSGSIZE;
		size += bufs[i].size;
	}
	if (raft->uncommitted_size > 0 &&
	    raft->uncommitted_size + size > raft->config.uncommitted_size_max)
		return -EAGAIN;
	raft_wake(raft);
	*first_index = raft_log_last(&raft->log) + 1;
	for (uint32_t i = 0; i < count; i++) {
		int rv = raft_leader_append(raft, type, bufs[i].data, bufs[i].size);

		if (rv != 0) {
			/* Keep what was appended: it is in the log and will commit. */
			if (i == 0)
				return rv;
			break;
		}
	}
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	raft_bcast_append(raft, false);
	return 0;
}

int raft_propose(struct raft *raft, const struct raft_buf *bufs, uint32_t count,
		 uint64_t *first_index)
{
	return propose_typed(raft, RAFT_ENTRY_NORMAL, bufs, count, first_index);
}

int raft_propose_check(struct raft *raft, const void *data, uint32_t size, uint64_t *index)
{
	struct raft_buf buf = {.data = data, .size = size};

	return propose_typed(raft, RAFT_ENTRY_CHECK, &buf, 1, index);
}

void raft_persisted(struct raft *raft, uint64_t index, uint64_t term)
{
	struct raft_log *log = &raft->log;
	struct raft_progress *self;

	raft_out_begin(raft);
	if (index <= log->stable_index || index > log->handed_index ||
	    raft_log_term_at(log, index) != term)
		return; /* Stale: overwritten since, or already known. */
	/* Not a step handler: it moves stable_index only, within what was
	 * handed out (the test above); the core facts were asserted at the last
	 * handler's entry and at the ready that handed these entries out. */
	log->stable_index = index;
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	/* §10.2.1: the leader counts itself only for what is durable. */
	self = raft_progress_find(raft, raft->config.id);
	if (self == NULL)
		return;
	self->match = index;
	if (maybe_commit(raft) && raft->role == RAFT_ROLE_LEADER) {
		raft_bcast_append(raft, true);
		return;
	}
	for (uint32_t i = 0; i < raft->progress_count; i++)
		if (is_witness(raft, raft->progress[i].id))
			raft_send_append(raft, &raft->progress[i],
					 false); /* Now durable: see raft_send_append. */
}

void raft_applied(struct raft *raft, uint64_t index)
{
	raft_out_begin(raft);
	if (index > raft->applied)
		raft->applied = min_u64(index, raft->applying);
}
