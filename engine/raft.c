/* The Raft core for one group: election, replication, commit, reads,
 * leadership transfer, membership, snapshots and quiescence.
 *
 * The happy path of a write is: raft_propose() appends to the leader's log
 * and queues APPEND messages that leave at once; raft_ready() hands the new
 * entries to the caller to persist; followers append, and their APPEND_RESP
 * waits in msgs_after until their write is durable; the leader counts a
 * follower's match on its response and its own only on raft_persisted()
 * (thesis §10.2.1); once a quorum of each active configuration matches an
 * entry of the current term, commit advances (§5.4.2, Figure 8) and the
 * entries are handed out to apply.
 *
 * Failure handling is by the rules of the thesis: stale terms are answered
 * or ignored, conflicting suffixes are truncated (§5.3), lost messages are
 * recovered by probing after heartbeats, and a follower that fell behind the
 * compacted log is sent a snapshot (§5.1 of chapter 5, "log compaction").
 *
 * Memory: the log is one contiguous array of entries (moved or doubled when
 * full, amortised) and payloads live in reference-counted chunks that are
 * recycled, so steady-state replication allocates nothing per entry. */
#include "engine/raft.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"

#define CHUNK_SIZE      (256u * 1024u)
#define CHUNK_FREE_MAX  4
#define HB_RING         16
#define LOG_INITIAL_CAP 4
#define CHUNK_FIRST     128 /* A group's first chunk; each next one doubles up to CHUNK_SIZE. */
#define RAFT_TERM_MAX   (UINT64_MAX / 2) /* Messages with a later term are malformed. */

struct raft_chunk {
	struct raft_chunk *next;
	uint32_t refs, used, cap;
	uint8_t data[];
};

/* ---------------------------------------------------------------- helpers */

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The splitmix64 finaliser: a well-mixed hash of 64 bits. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* splitmix64: a small, well-mixed PRNG; the whole engine state is its seed. */
static uint64_t rng_next(struct raft *raft)
{
	return mix64(raft->rng += 0x9E3779B97F4A7C15ull);
}

static void *grow(void *array, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t cap_new;
	void *p;

	if (need <= *cap)
		return array;
	cap_new = *cap ? *cap * 2 : 2; /* Small: thousands of idle groups. */
	while (cap_new < need)
		cap_new *= 2;
	p = realloc(array, (size_t)cap_new * elem);
	ASSERT(p != NULL); /* Output buffers only grow to the peak of one turn. */
	*cap = cap_new;
	return p;
}

/* -------------------------------------------------------------------- log */

static uint64_t log_first(const struct raft_log *log)
{
	return log->snapshot_index + 1;
}

static uint64_t log_last(const struct raft_log *log)
{
	return log->snapshot_index + log->count;
}

static struct raft_entry *log_at(const struct raft_log *log, uint64_t index)
{
	if (index <= log->snapshot_index || index > log_last(log))
		return NULL;
	return &log->entries[log->head + (index - log_first(log))];
}

static uint64_t log_term_at(const struct raft_log *log, uint64_t index)
{
	const struct raft_entry *e;

	if (index == log->snapshot_index)
		return log->snapshot_term;
	e = log_at(log, index);
	return e ? e->term : 0;
}

static uint64_t log_last_term(const struct raft_log *log)
{
	return log_term_at(log, log_last(log));
}

static void chunk_release(struct raft_log *log, struct raft_chunk *chunk)
{
	if (chunk == NULL)
		return;
	ASSERT(chunk->refs > 0);
	if (--chunk->refs > 0)
		return;
	if (chunk == log->chunk_open) {
		chunk->used = 0;
		return;
	}
	if (chunk->cap == CHUNK_SIZE && log->chunk_free_count < CHUNK_FREE_MAX) {
		chunk->used = 0;
		chunk->next = log->chunk_free;
		log->chunk_free = chunk;
		log->chunk_free_count++;
		return;
	}
	free(chunk);
}

/* Copy size bytes into a chunk; returns the copy and the chunk holding it. */
static int chunk_copy(struct raft_log *log, const void *data, uint32_t size,
		      struct raft_chunk **chunk_out, const void **copy_out)
{
	struct raft_chunk *c = log->chunk_open;
	uint32_t need = (size + 7u) & ~7u;

	if (size == 0) {
		*chunk_out = NULL;
		*copy_out = NULL;
		return 0;
	}
	if (c == NULL || c->cap - c->used < need) {
		if (need > CHUNK_SIZE / 4) {
			/* A large payload gets a chunk of its own. */
			c = malloc(sizeof(*c) + need);
			if (c == NULL)
				return -ENOMEM;
			*c = (struct raft_chunk){.cap = need};
		} else {
			if (log->chunk_free) {
				c = log->chunk_free;
				log->chunk_free = c->next;
				log->chunk_free_count--;
			} else {
				/* Idle groups keep small chunks; busy ones grow to
				 * CHUNK_SIZE, which alone are recycled. */
				uint32_t cap =
				    log->chunk_next_size ? log->chunk_next_size : CHUNK_FIRST;

				while (cap < need)
					cap *= 2;
				c = malloc(sizeof(*c) + cap);
				if (c == NULL)
					return -ENOMEM;
				*c = (struct raft_chunk){.cap = cap};
				log->chunk_next_size = cap * 2 > CHUNK_SIZE ? CHUNK_SIZE : cap * 2;
			}
			/* The old open chunk lives on while its entries do. */
			if (log->chunk_open) {
				struct raft_chunk *old = log->chunk_open;

				log->chunk_open = c;
				if (old->refs == 0)
					old->refs = 1, chunk_release(log, old);
			} else {
				log->chunk_open = c;
			}
		}
	}
	memcpy(c->data + c->used, data, size);
	*copy_out = c->data + c->used;
	c->used += need;
	c->refs++;
	*chunk_out = c;
	return 0;
}

static int log_reserve(struct raft_log *log)
{
	uint64_t cap_new;
	struct raft_entry *entries;
	struct raft_chunk **chunks;

	if (log->head + log->count < log->cap)
		return 0;
	if (log->head >= log->cap / 2 && log->head > 0) {
		/* Compaction freed the front half: slide down, amortised O(1). */
		memmove(log->entries, log->entries + log->head, log->count * sizeof(*entries));
		memmove(log->chunks, log->chunks + log->head, log->count * sizeof(*chunks));
		log->head = 0;
		return 0;
	}
	cap_new = log->cap ? log->cap * 2 : LOG_INITIAL_CAP;
	entries = malloc(cap_new * sizeof(*entries));
	chunks = malloc(cap_new * sizeof(*chunks));
	if (entries == NULL || chunks == NULL) {
		free(entries);
		free(chunks);
		return -ENOMEM;
	}
	if (log->count) {
		memcpy(entries, log->entries + log->head, log->count * sizeof(*entries));
		memcpy(chunks, log->chunks + log->head, log->count * sizeof(*chunks));
	}
	free(log->entries);
	free(log->chunks);
	log->entries = entries;
	log->chunks = chunks;
	log->cap = cap_new;
	log->head = 0;
	return 0;
}

static int log_append(struct raft_log *log, uint64_t term, uint32_t type, const void *data,
		      uint32_t size)
{
	struct raft_entry *e;
	struct raft_chunk *chunk;
	const void *copy;
	int rv;

	ASSERT(term >= log_last_term(log)); /* Entry terms never decrease along the log. */
	rv = log_reserve(log);
	if (rv != 0)
		return rv;
	rv = chunk_copy(log, data, size, &chunk, &copy);
	if (rv != 0)
		return rv;
	e = &log->entries[log->head + log->count];
	*e = (struct raft_entry){
	    .term = term, .index = log_last(log) + 1, .type = type, .size = size, .data = copy};
	log->chunks[log->head + log->count] = chunk;
	log->count++;
	return 0;
}

/* Drop entries >= index (a conflicting suffix, §5.3). */
static void log_truncate(struct raft_log *log, uint64_t index)
{
	ASSERT(index > log->snapshot_index);
	while (log_last(log) >= index) {
		log->count--;
		chunk_release(log, log->chunks[log->head + log->count]);
	}
	log->handed_index = min_u64(log->handed_index, index - 1);
	log->stable_index = min_u64(log->stable_index, index - 1);
}

/* Drop entries <= index (covered by a snapshot). */
static void log_compact(struct raft_log *log, uint64_t index)
{
	uint64_t term = log_term_at(log, index);

	ASSERT(index > log->snapshot_index && index <= log_last(log));
	while (log->snapshot_index < index) {
		chunk_release(log, log->chunks[log->head]);
		log->head++;
		log->count--;
		log->snapshot_index++;
	}
	log->snapshot_term = term;
	if (log->count == 0)
		log->head = 0;
}

/* Forget everything: the log now begins after a snapshot. */
static void log_reset(struct raft_log *log, uint64_t index, uint64_t term)
{
	while (log->count > 0) {
		log->count--;
		chunk_release(log, log->chunks[log->head + log->count]);
	}
	log->head = 0;
	log->snapshot_index = index;
	log->snapshot_term = term;
	log->stable_index = index;
	log->handed_index = index;
}

static void log_deinit(struct raft_log *log)
{
	log_reset(log, 0, 0);
	free(log->chunk_open);
	while (log->chunk_free) {
		struct raft_chunk *c = log->chunk_free;

		log->chunk_free = c->next;
		free(c);
	}
	free(log->entries);
	free(log->chunks);
	memset(log, 0, sizeof(*log));
}

/* ------------------------------------------------------------ membership */

static const struct raft_conf *conf_current(const struct raft *raft)
{
	return &raft->confs[raft->confs_count - 1].conf;
}

static uint64_t conf_current_index(const struct raft *raft)
{
	return raft->confs[raft->confs_count - 1].index;
}

static bool role_votes(uint8_t role)
{
	return role == RAFT_MEMBER_VOTER || role == RAFT_MEMBER_WITNESS;
}

/* Role in half h of conf: 0 is the new (or only) configuration, 1 the old. */
static uint8_t member_role(const struct raft_member *m, int half)
{
	return half == 0 ? m->role : m->role_old;
}

static int halves(const struct raft_conf *conf)
{
	return conf->joint ? 2 : 1;
}

/* May id start an election under conf? Voters may; witnesses and learners never. */
static bool conf_can_lead(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id == id)
			return m->role == RAFT_MEMBER_VOTER ||
			       (conf->joint && m->role_old == RAFT_MEMBER_VOTER &&
				m->role != RAFT_MEMBER_WITNESS);
	}
	return false;
}

static const struct raft_conf *conf_at(const struct raft *raft, uint64_t index);

/* Thesis §4.2.2: "a server that is not part of its own latest configuration
 * should still start new elections, as it might still be needed until the
 * C_new entry is committed". So a voter of the committed configuration may
 * campaign while a later one that demotes or removes it is uncommitted; its
 * own vote counts only where it is a voter (vote_tally), and once elected
 * it steps down when C_new commits (conf_advance). Without this, a group
 * whose most up-to-date logs sit on such nodes (and on witnesses) can elect
 * no one. */
static bool raft_is_promotable(const struct raft *raft)
{
	if (raft->repairing)
		return false; /* REPAIR: it may lack committed entries. */
	if (conf_can_lead(conf_current(raft), raft->config.id))
		return true;
	return raft->confs[raft->confs_count - 1].index > raft->commit &&
	       conf_can_lead(conf_at(raft, raft->commit), raft->config.id);
}

static struct raft_progress *progress_find(struct raft *raft, uint64_t id)
{
	for (uint32_t i = 0; i < raft->progress_count; i++)
		if (raft->progress[i].id == id)
			return &raft->progress[i];
	return NULL;
}

static void progress_reset(struct raft *raft, struct raft_progress *pr, uint64_t id)
{
	*pr = (struct raft_progress){.id = id,
				     .next = log_last(&raft->log) + 1,
				     .state = RAFT_PROGRESS_PROBE,
				     .state_ms = raft->now_ms,
				     .recent_active = true};
	if (id == raft->config.id)
		pr->match = raft->log.stable_index;
}

/* Leader: one progress per member of the configuration in force, self included.
 * Existing progress is kept; members that left are dropped. */
static void progress_sync(struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);
	struct raft_progress *old = raft->progress;
	uint32_t old_count = raft->progress_count;
	struct raft_progress *prs =
	    calloc(conf->members_count ? conf->members_count : 1, sizeof(*prs));

	ASSERT(prs != NULL); /* Membership changes are rare and small. */
	for (uint32_t i = 0; i < conf->members_count; i++) {
		uint64_t id = conf->members[i].id;
		bool kept = false;

		for (uint32_t j = 0; j < old_count; j++) {
			if (old[j].id == id) {
				prs[i] = old[j];
				kept = true;
			}
		}
		if (!kept)
			progress_reset(raft, &prs[i], id);
	}
	free(old);
	raft->progress = prs;
	raft->progress_count = conf->members_count;
}

static void progress_clear(struct raft *raft)
{
	free(raft->progress);
	raft->progress = NULL;
	raft->progress_count = 0;
}

/* Insertion sort, largest first: n is at most RAFT_MEMBERS_MAX, and this runs
 * on every acknowledgement, where qsort's call overhead showed in profiles. */
static void sort_desc(uint64_t *v, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		uint64_t x = v[i];
		uint32_t j = i;

		for (; j > 0 && v[j - 1] < x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

/* The largest value that a majority of the voters of every half of the
 * configuration in force has reached: the commit rule (§5.3 and §4.3: joint
 * consensus needs separate majorities) and the heartbeat quorum alike.
 * seq selects acked_seq instead of match. */
static uint64_t quorum_value(const struct raft *raft, bool seq)
{
	const struct raft_conf *conf = conf_current(raft);
	uint64_t result = UINT64_MAX;

	for (int h = 0; h < halves(conf); h++) {
		uint64_t values[RAFT_MEMBERS_MAX];
		uint32_t n = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			if (!role_votes(member_role(&conf->members[i], h)))
				continue;
			/* REPAIR: a repairing member's log may lack entries it once
			 * acknowledged; it counts for commits only once repaired. */
			values[n++] = seq ? pr->acked_seq : pr->repairing ? 0 : pr->match;
		}
		if (n == 0)
			continue;
		sort_desc(values, n);
		result = min_u64(result, values[n / 2]);
	}
	return result == UINT64_MAX ? 0 : result;
}

/* CheckQuorum (§6.2): has a majority of each half been heard from? */
static bool quorum_active(const struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);

	for (int h = 0; h < halves(conf); h++) {
		uint32_t n = 0, active = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			if (!role_votes(member_role(&conf->members[i], h)))
				continue;
			n++;
			if (pr->id == raft->config.id || pr->recent_active)
				active++;
		}
		if (n > 0 && active < n / 2 + 1)
			return false;
	}
	return true;
}

enum vote_result { VOTE_PENDING, VOTE_WON, VOTE_LOST };

static bool id_in(const uint64_t *ids, uint32_t count, uint64_t id)
{
	for (uint32_t i = 0; i < count; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* An election needs a majority of each half (§4.3). */
static enum vote_result vote_tally(const struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);
	bool won = true;

	for (int h = 0; h < halves(conf); h++) {
		uint32_t n = 0, granted = 0, rejected = 0;

		for (uint32_t i = 0; i < conf->members_count; i++) {
			const struct raft_member *m = &conf->members[i];

			if (!role_votes(member_role(m, h)))
				continue;
			n++;
			if (id_in(raft->votes_granted, raft->votes_granted_count, m->id))
				granted++;
			else if (id_in(raft->votes_rejected, raft->votes_rejected_count, m->id))
				rejected++;
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

static int conf_push(struct raft *raft, uint64_t index, const struct raft_conf *conf)
{
	struct raft_conf_slot *slots = raft->confs;

	/* Most groups only ever hold one configuration: start with one slot. */
	if (raft->confs_cap == 0) {
		slots = malloc(sizeof(*slots));
		ASSERT(slots != NULL);
		raft->confs_cap = 1;
	}
	slots = grow(slots, &raft->confs_cap, raft->confs_count + 1, sizeof(*slots));

	raft->confs = slots;
	slots[raft->confs_count++] = (struct raft_conf_slot){.index = index, .conf = *conf};
	return 0;
}

/* A configuration is in force as soon as it is in the log (thesis §4.1). */
static void conf_appended(struct raft *raft, const struct raft_entry *e)
{
	struct raft_conf conf;

	if (e->type != RAFT_ENTRY_CONF || raft_conf_decode(&conf, e->data, e->size) != 0)
		return;
	conf_push(raft, e->index, &conf);
	if (raft->role == RAFT_ROLE_LEADER)
		progress_sync(raft);
}

/* The log lost entries >= index: configurations from them are undone. */
static void conf_truncated(struct raft *raft, uint64_t index)
{
	bool changed = false;

	while (raft->confs_count > 1 && raft->confs[raft->confs_count - 1].index >= index) {
		raft->confs_count--;
		changed = true;
	}
	if (changed && raft->role == RAFT_ROLE_LEADER)
		progress_sync(raft);
}

/* The configuration in force at index (for a snapshot taken there). */
static const struct raft_conf *conf_at(const struct raft *raft, uint64_t index)
{
	for (uint32_t i = raft->confs_count; i-- > 0;)
		if (raft->confs[i].index <= index)
			return &raft->confs[i].conf;
	return &raft->confs[0].conf;
}

/* --------------------------------------------------------------- output */

static void out_begin(struct raft *raft)
{
	if (!raft->ready_taken)
		return;
	raft->msgs_count = 0;
	raft->msgs_after_count = 0;
	raft->reads_out_count = 0;
	raft->ready_taken = false;
}

void raft_trim(struct raft *raft)
{
	if (!raft->quiesced || raft_has_ready(raft))
		return;
	out_begin(raft);
	free(raft->msgs);
	free(raft->msgs_after);
	free(raft->reads_out);
	raft->msgs = raft->msgs_after = NULL;
	raft->reads_out = NULL;
	raft->msgs_cap = raft->msgs_after_cap = raft->reads_out_cap = 0;
	if (raft->reads_pending_count == 0) {
		free(raft->reads_pending);
		raft->reads_pending = NULL;
		raft->reads_pending_cap = 0;
	}
}

static struct raft_msg *msg_new(struct raft *raft, uint32_t type, uint64_t to, bool after)
{
	struct raft_msg *m;

	if (after) {
		raft->msgs_after = grow(raft->msgs_after, &raft->msgs_after_cap,
					raft->msgs_after_count + 1, sizeof(*m));
		m = &raft->msgs_after[raft->msgs_after_count++];
	} else {
		raft->msgs = grow(raft->msgs, &raft->msgs_cap, raft->msgs_count + 1, sizeof(*m));
		m = &raft->msgs[raft->msgs_count++];
	}
	*m = (struct raft_msg){.group = raft->config.group,
			       .from = raft->config.id,
			       .to = to,
			       .term = raft->term,
			       .type = type};
	return m;
}

/* Follower: ask our leader for a snapshot (raft_want_snapshot). */
static void snapshot_ask(struct raft *raft)
{
	struct raft_msg *m;

	if (raft->leader == RAFT_NONE || raft->role == RAFT_ROLE_LEADER)
		return;
	m = msg_new(raft, RAFT_MSG_SNAPSHOT_WANTED, raft->leader, false);
	m->index = raft->log.snapshot_index;
}

static void read_out(struct raft *raft, uint64_t context, uint64_t index)
{
	raft->reads_out = grow(raft->reads_out, &raft->reads_out_cap, raft->reads_out_count + 1,
			       sizeof(*raft->reads_out));
	raft->reads_out[raft->reads_out_count++] =
	    (struct raft_read){.context = context, .index = index};
}

/* Answer a read: locally or to the follower that forwarded it. */
static void read_answer(struct raft *raft, uint64_t from, uint64_t context, uint64_t index)
{
	struct raft_msg *m;

	if (from == raft->config.id) {
		read_out(raft, context, index);
		return;
	}
	m = msg_new(raft, RAFT_MSG_READ_INDEX_RESP, from, false);
	m->context = context;
	m->index = index;
	m->reject = index == 0;
}

/* Leadership is gone: every pending read is refused so callers retry. */
static void reads_fail(struct raft *raft)
{
	for (uint32_t i = 0; i < raft->reads_pending_count; i++)
		read_answer(raft, raft->reads_pending[i].from, raft->reads_pending[i].context, 0);
	raft->reads_pending_count = 0;
}

/* ------------------------------------------------------------ role change */

static void election_timer_reset(struct raft *raft)
{
	uint32_t base = raft->config.election_timeout_ms;

	raft->election_deadline_ms = raft->now_ms + base + rng_next(raft) % base;
}

/* Order of node id in this group's takeover (see takeover_rank). */
static uint64_t takeover_key(const struct raft *raft, uint64_t id)
{
	return mix64(raft->config.group ^ mix64(id));
}

static void become_follower(struct raft *raft, uint64_t term, uint64_t leader)
{
	ASSERT(term >= raft->term); /* Term is monotonic. */
	if (term > raft->term) {
		raft->term = term;
		raft->vote = RAFT_NONE;
	}
	if (raft->role == RAFT_ROLE_LEADER) {
		reads_fail(raft);
		progress_clear(raft);
	}
	raft->role = RAFT_ROLE_FOLLOWER;
	raft->leader = leader;
	raft->leader_down = false;
	if (leader != RAFT_NONE)
		raft->takeover = false; /* Someone took over. */
	raft->leader_heard_ms = raft->now_ms;
	raft->transfer_target = RAFT_NONE;
	raft->lease_until_ms = 0;
	raft->lease_revoked = false;
	raft->quiesced = false;
	raft->hb_pending = false;
	raft->votes_granted_count = raft->votes_rejected_count = 0;
	election_timer_reset(raft);
}

static void send_append(struct raft *raft, struct raft_progress *pr, bool allow_empty);
static void reads_process(struct raft *raft);
static void bcast_append(struct raft *raft, bool allow_empty);
static void bcast_heartbeat(struct raft *raft, uint32_t flags);

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
	progress_clear(raft);
	progress_sync(raft);
	raft->heartbeat_deadline_ms = raft->now_ms + raft->config.heartbeat_interval_ms;
	raft->check_quorum_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	/* §6.4 / §8: a no-op of the new term lets the leader learn and commit
	 * what its predecessors committed, and enables ReadIndex. */
	rv = log_append(&raft->log, raft->term, RAFT_ENTRY_NOOP, NULL, 0);
	ASSERT(rv == 0);
	bcast_append(raft, true);
}

static void send_vote_requests(struct raft *raft, uint32_t type, uint64_t term, uint32_t flags)
{
	const struct raft_conf *conf = conf_current(raft);

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];
		struct raft_msg *msg;

		if (m->id == raft->config.id || !(role_votes(m->role) || role_votes(m->role_old)))
			continue;
		/* A real vote request depends on our durable term and self-vote. */
		msg = msg_new(raft, type, m->id, type == RAFT_MSG_VOTE);
		msg->term = term;
		msg->index = log_last(&raft->log);
		msg->log_term = log_last_term(&raft->log);
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
	raft->votes_granted_count = raft->votes_rejected_count = 0;
	raft->votes_granted[raft->votes_granted_count++] = raft->config.id;
	election_timer_reset(raft);
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
	raft->votes_granted_count = raft->votes_rejected_count = 0;
	raft->votes_granted[raft->votes_granted_count++] = raft->config.id;
	election_timer_reset(raft);
	if (vote_tally(raft) == VOTE_WON) {
		become_candidate(raft, false);
		return;
	}
	send_vote_requests(raft, RAFT_MSG_PRE_VOTE, raft->term + 1, 0);
}

static void campaign(struct raft *raft, bool transfer)
{
	if (!raft_is_promotable(raft))
		return;
	if (raft->config.pre_vote && !transfer)
		become_pre_candidate(raft);
	else
		become_candidate(raft, transfer);
}

/* ---------------------------------------------------------- replication */

static bool inflight_full(const struct raft *raft, const struct raft_progress *pr)
{
	return pr->inflight_count >= raft->config.inflight_count_max ||
	       pr->inflight_size >= raft->config.inflight_size_max;
}

static void inflight_add(struct raft_progress *pr, uint64_t last_index, uint32_t size)
{
	uint32_t slot = (pr->inflight_head + pr->inflight_count) % RAFT_INFLIGHT_MAX;

	ASSERT(pr->inflight_count < RAFT_INFLIGHT_MAX);
	pr->inflight[slot] = (struct raft_inflight){.last_index = last_index, .size = size};
	pr->inflight_count++;
	pr->inflight_size += size;
}

static void inflight_free_first(struct raft_progress *pr)
{
	if (pr->inflight_count == 0)
		return;
	pr->inflight_size -= pr->inflight[pr->inflight_head].size;
	pr->inflight_head = (pr->inflight_head + 1) % RAFT_INFLIGHT_MAX;
	pr->inflight_count--;
}

static void inflight_free_to(struct raft_progress *pr, uint64_t index)
{
	while (pr->inflight_count > 0 && pr->inflight[pr->inflight_head].last_index <= index)
		inflight_free_first(pr);
}

static void progress_become(struct raft *raft, struct raft_progress *pr, uint8_t state)
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
	const struct raft_conf *conf = conf_current(raft);

	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id == id)
			return conf->members[i].role == RAFT_MEMBER_WITNESS ||
			       (conf->members[i].role == RAFT_MEMBER_NONE &&
				conf->members[i].role_old == RAFT_MEMBER_WITNESS);
	return false;
}

static void send_snapshot(struct raft *raft, struct raft_progress *pr)
{
	struct raft_msg *m = msg_new(raft, RAFT_MSG_SNAPSHOT, pr->id, false);

	m->index = raft->snap.index;
	m->log_term = raft->snap.term;
	progress_become(raft, pr, RAFT_PROGRESS_SNAPSHOT);
	pr->snapshot_index = raft->snap.index;
}

/* Keep the configuration in force at index as the base of the history. */
static void confs_trim(struct raft *raft, uint64_t index)
{
	uint32_t base = 0;

	while (base + 1 < raft->confs_count && raft->confs[base + 1].index <= index)
		base++;
	if (base > 0) {
		memmove(raft->confs, raft->confs + base,
			(raft->confs_count - base) * sizeof(*raft->confs));
		raft->confs_count -= base;
	}
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
			send_snapshot(raft, pr);
	}
}

/* Leader: send pr the next entries it lacks, within its window. Entries are
 * attached by index range here and resolved to pointers in raft_ready(). */
static void send_append(struct raft *raft, struct raft_progress *pr, bool allow_empty)
{
	struct raft_log *log = &raft->log;
	uint64_t prev, last = log_last(log), n = 0, bytes = 0;
	bool witness;
	struct raft_msg *m;

	if (pr->id == raft->config.id || pr->state == RAFT_PROGRESS_SNAPSHOT)
		return;
	if (pr->state == RAFT_PROGRESS_PROBE && pr->probe_sent)
		return;
	if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(raft, pr))
		return;
	if (pr->next < log_first(log)) {
		send_snapshot(raft, pr); /* The entries it needs were compacted. */
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
		const struct raft_entry *e = log_at(log, prev + n + 1);
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
	m = msg_new(raft, RAFT_MSG_APPEND, pr->id, false);
	m->index = prev;
	m->log_term = log_term_at(log, prev);
	m->commit = raft->commit;
	m->entries_count = (uint32_t)n;
	m->flags = witness ? RAFT_MSG_FLAG_METADATA : 0;
	if (pr->repairing && prev + n >= pr->repair_mark)
		m->flags |= RAFT_MSG_FLAG_REPAIRED; /* REPAIR: accepting it ends the repair. */
	if (pr->state == RAFT_PROGRESS_REPLICATE) {
		if (n > 0) {
			pr->next = prev + n + 1;
			inflight_add(pr, prev + n, (uint32_t)bytes);
		}
	} else {
		pr->probe_sent = true;
	}
}

static void bcast_append(struct raft *raft, bool allow_empty)
{
	for (uint32_t i = 0; i < raft->progress_count; i++) {
		struct raft_progress *pr = &raft->progress[i];

		send_append(raft, pr, allow_empty);
		/* Replicating: fill the window, msg_size_max bytes per append. */
		while (pr->state == RAFT_PROGRESS_REPLICATE && pr->id != raft->config.id &&
		       pr->next <= log_last(&raft->log) && !inflight_full(raft, pr)) {
			uint64_t next = pr->next;

			send_append(raft, pr, false);
			if (pr->next == next)
				break; /* Nothing more it may have yet (a witness). */
		}
	}
}

static void bcast_heartbeat(struct raft *raft, uint32_t flags)
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
		m = msg_new(raft, RAFT_MSG_HEARTBEAT, pr->id, false);
		/* Only what pr is known to hold may be committed on its side. */
		m->commit = min_u64(pr->match, raft->commit);
		m->context = raft->hb_seq;
		m->flags = flags;
	}
	reads_process(raft); /* With a single voter, our own ack is the quorum. */
}

static bool committed_in_term(const struct raft *raft)
{
	return log_term_at(&raft->log, raft->commit) == raft->term;
}

static bool lease_valid(const struct raft *raft)
{
	return raft->config.lease_read && raft->config.check_quorum && !raft->lease_revoked &&
	       raft->transfer_target == RAFT_NONE && raft->now_ms < raft->lease_until_ms;
}

/* ReadIndex (§6.4): release the reads whose heartbeat round a quorum has
 * acknowledged; that quorum proves we were still leader when they arrived. */
static void reads_process(struct raft *raft)
{
	uint64_t acked = quorum_value(raft, true);
	uint32_t kept = 0;

	if (raft->config.check_quorum && acked > 0 && raft->hb_seq - acked < HB_RING) {
		/* Voters that acked a heartbeat sent at t will not vote for anyone
		 * else before t + election_timeout on their clocks (§6.4.1). */
		uint64_t until = raft->hb_sent_ms[acked % HB_RING] +
				 raft->config.election_timeout_ms - raft->config.clock_drift_max_ms;
		raft->lease_until_ms = max_u64(raft->lease_until_ms, until);
	}
	for (uint32_t i = 0; i < raft->reads_pending_count; i++) {
		struct raft_pending_read *rd = &raft->reads_pending[i];

		if (rd->seq != 0 && rd->seq <= acked)
			read_answer(raft, rd->from, rd->context, rd->index);
		else
			raft->reads_pending[kept++] = *rd;
	}
	raft->reads_pending_count = kept;
}

static void reads_start_waiting(struct raft *raft)
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

static void commit_to(struct raft *raft, uint64_t commit)
{
	ASSERT(commit >= raft->commit); /* Commit never regresses. */
	ASSERT(commit <= log_last(&raft->log));
	ASSERT(log_term_at(&raft->log, commit) <= raft->term);
	raft->commit = commit;
	ASSERT(raft->applied <= raft->commit);
}

static int leader_append(struct raft *raft, uint32_t type, const void *data, uint32_t size)
{
	int rv = log_append(&raft->log, raft->term, type, data, size);

	if (rv != 0)
		return rv;
	if (type == RAFT_ENTRY_CONF)
		conf_appended(raft, log_at(&raft->log, log_last(&raft->log)));
	raft->uncommitted_size += size;
	return 0;
}

/* The leader's committed configuration no longer has it as a voter: step
 * down (§4.2.2), and hand leadership at once to a voter whose log matches
 * ours to the last entry (§3.10), so the group need not wait out an election
 * timeout. Only a complete log can win: a target that is behind would lose
 * its election, so none is asked then and the voters elect one on their own.
 * TimeoutNow lets the target's votes pass leader stickiness; that is safe
 * here because we stop leading (and serving lease reads) before it is sent. */
static void step_down_removed(struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);
	uint64_t target = RAFT_NONE;

	for (uint32_t i = 0; i < raft->progress_count && target == RAFT_NONE; i++) {
		const struct raft_progress *pr = &raft->progress[i];

		if (pr->id != raft->config.id && !pr->down &&
		    raft_conf_role(conf, pr->id) == RAFT_MEMBER_VOTER &&
		    pr->match == log_last(&raft->log))
			target = pr->id;
	}
	become_follower(raft, raft->term, RAFT_NONE);
	if (target != RAFT_NONE)
		msg_new(raft, RAFT_MSG_TIMEOUT_NOW, target, false);
}

/* After commit passes a joint configuration, the leader appends the final one;
 * once that commits, a leader that is no longer a voter steps down (§4.2.2). */
static void conf_advance(struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);
	uint64_t index = conf_current_index(raft);

	if (index > raft->commit)
		return;
	if (conf->joint) {
		struct raft_conf next = {0};
		uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];

		for (uint32_t i = 0; i < conf->members_count; i++) {
			struct raft_member m = conf->members[i];

			if (m.role == RAFT_MEMBER_NONE)
				continue;
			m.role_old = RAFT_MEMBER_NONE;
			next.members[next.members_count++] = m;
		}
		raft_conf_encode(&next, buf);
		if (leader_append(raft, RAFT_ENTRY_CONF, buf, raft_conf_encoded_size(&next)) == 0)
			bcast_append(raft, false);
		return;
	}
	if (raft_conf_role(conf, raft->config.id) != RAFT_MEMBER_VOTER)
		step_down_removed(raft);
}

/* Figure 8 / §5.4.2: only an entry of the current term is committed by
 * counting replicas; earlier ones commit with it. */
static bool maybe_commit(struct raft *raft)
{
	uint64_t q = quorum_value(raft, false);

	if (q <= raft->commit || log_term_at(&raft->log, q) != raft->term)
		return false;
	for (uint64_t i = raft->commit + 1; i <= q; i++) {
		uint32_t size = log_at(&raft->log, i)->size;

		raft->uncommitted_size -= min_u64(size, raft->uncommitted_size);
	}
	commit_to(raft, q);
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	reads_start_waiting(raft);
	reads_process(raft);
	conf_advance(raft);
	return true;
}

static void transfer_maybe_send(struct raft *raft, struct raft_progress *pr)
{
	if (raft->transfer_target != pr->id || pr->match != log_last(&raft->log))
		return;
	/* From here on the target may win votes that ignore leader stickiness,
	 * so this term's lease can no longer be trusted. */
	raft->lease_revoked = true;
	msg_new(raft, RAFT_MSG_TIMEOUT_NOW, pr->id, false);
}

/* ---------------------------------------------------------------- steps */

static bool log_up_to_date(const struct raft *raft, uint64_t last_term, uint64_t last_index)
{
	uint64_t my_term = log_last_term(&raft->log);

	return last_term > my_term || (last_term == my_term && last_index >= log_last(&raft->log));
}

/* Leader stickiness (§4.2.3, §9.6): while we believe a leader is alive, we
 * do not help anyone else win. This is also what the leader lease rests on. */
static bool in_lease(const struct raft *raft)
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
	if (raft->role == RAFT_ROLE_LEADER || raft->quiesced)
		return true;
	return raft->now_ms < raft->leader_heard_ms + raft->config.election_timeout_ms;
}

static void wake(struct raft *raft)
{
	if (!raft->quiesced)
		return;
	raft->quiesced = false;
	if (raft->role == RAFT_ROLE_LEADER) {
		raft->heartbeat_deadline_ms = raft->now_ms;
		raft->check_quorum_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
		raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
		for (uint32_t i = 0; i < raft->progress_count; i++)
			raft->progress[i].recent_active = true;
	} else {
		raft->leader_heard_ms = raft->now_ms;
		election_timer_reset(raft);
	}
}

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
 *      the repair id of this start (repair_flag()). The leader that sees a
 *      new id resets its match for us to 0 (the old match claims entries
 *      we lost) and remembers its last index as the repair mark; our match
 *      does not count toward a commit until the repair ends, so no commit
 *      rests on a copy we lack. It probes and sends entries, or its snapshot once
 *      the entries are compacted, as to any follower that is behind.
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
 * A lost hard-state record could hold a vote of a term we no longer know
 * (storage learns the term from the damaged record's verified header when
 * it can). Leaving repair we take the current leader as our vote of its
 * term if we had none, so we never vote in that term for another. The
 * storage keeps the repair going across restarts until it ends (shard.c
 * writes it in hard state), and a restart draws a new id.
 *
 * When a record's header is damaged too, its group cannot be named and
 * every group of that WAL repairs; storage raises each group's term to the
 * largest that its later records name. A lost hard-state record could hold
 * a vote of a later term still, so storage writes every hard state twice
 * (io/wal.c wal_append_hard()): a vote is forgotten only if both copies are
 * damaged, and could then be cast again in that term once the repair ends. */
static void repair_end(struct raft *raft, uint64_t leader)
{
	raft->repairing = false;
	if (raft->vote == RAFT_NONE)
		raft->vote = leader;
}

/* REPAIR: flag an append response. Every response of a member booted in
 * repair carries its repair id (drawn at boot) in context, so that a leader
 * tells this life's answers from those of an earlier one still in flight
 * (which may claim entries since lost again). While repairing: the REPAIR
 * flag; once repaired, RAFT_MSG_FLAG_REPAIRED on answers that say how far
 * its log matches the leader's (matched), so that a leader that missed the
 * first one still learns that the repair ended. */
static void repair_flag(const struct raft *raft, struct raft_msg *resp, bool matched)
{
	if (raft->repair_id == 0)
		return;
	if (raft->repairing)
		resp->flags |= RAFT_MSG_FLAG_REPAIR;
	else if (matched)
		resp->flags |= RAFT_MSG_FLAG_REPAIRED;
	resp->context = raft->repair_id;
}

static void heard_from_leader(struct raft *raft, uint64_t from)
{
	raft->takeover = false;
	raft->leader = from;
	raft->leader_heard_ms = raft->now_ms;
	raft->leader_down = false;
	election_timer_reset(raft);
}

/* Find the largest index <= index whose term is <= term: where two logs may
 * agree (the fast backtracking of §5.3's closing note). */
static uint64_t find_conflict_by_term(const struct raft *raft, uint64_t index, uint64_t term)
{
	index = min_u64(index, log_last(&raft->log));
	while (index > raft->log.snapshot_index && log_term_at(&raft->log, index) > term)
		index--;
	return index;
}

static void handle_append(struct raft *raft, const struct raft_msg *m)
{
	struct raft_log *log = &raft->log;
	uint64_t last_new = m->index + m->entries_count;
	struct raft_msg *resp;

	if (m->index < raft->commit) {
		/* Everything up to commit already matches the leader's log. */
		resp = msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
		resp->index = raft->commit;
		repair_flag(raft, resp, true);
		return;
	}
	if (m->index > log_last(log) || log_term_at(log, m->index) != m->log_term) {
		/* §5.3: reject, with a hint of where our logs may agree. */
		uint64_t hint = find_conflict_by_term(raft, m->index, m->log_term);

		resp = msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
		resp->reject = true;
		resp->index = m->index;
		resp->hint_index = hint;
		resp->hint_term = log_term_at(log, hint);
		repair_flag(raft, resp, false);
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

		if (index <= log_last(log)) {
			if (log_term_at(log, index) == e->term)
				continue;
			/* §5.3: an existing entry conflicts with a new one: delete it
			 * and all that follow. Committed entries never conflict. */
			if (index <= raft->commit)
				return;
			log_truncate(log, index);
			conf_truncated(raft, index);
		}
		if (log_append(log, e->term, e->type, e->data, e->size) != 0)
			return; /* Out of memory: drop the message; the leader retries. */
		conf_appended(raft, log_at(log, index));
	}
	if (m->commit > raft->commit)
		commit_to(raft, min_u64(m->commit, last_new));
	resp = msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
	resp->index = last_new;
	if (raft->repairing && (m->flags & RAFT_MSG_FLAG_REPAIRED))
		repair_end(raft, m->from);
	repair_flag(raft, resp, true);
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
	if (s->index > log_last(&raft->log) || log_term_at(&raft->log, s->index) != s->term) {
		if (s->index <= raft->commit)
			return false; /* Cannot be: a committed entry differs. Wait for another. */
		raft->snapshot_wanted = false;
		return false; /* Past or beside our log: the ordinary install replaces it. */
	}
	if (s->index > raft->log.stable_index)
		return false; /* Not durable here yet: a later snapshot will do. */
	if (s->index > raft->log.snapshot_index) {
		log_compact(&raft->log, s->index);
		confs_trim(raft, s->index);
	}
	raft->snap = *s;
	raft->snap.conf = *conf_at(raft, s->index);
	if (raft->commit < s->index)
		raft->commit = s->index; /* The leader snapshots only what it applied. */
	raft->applied = raft->applying = s->index;
	raft->snapshot_dirty = true;
	raft->snapshot_wanted = false;
	return true;
}

static void handle_snapshot(struct raft *raft, const struct raft_msg *m)
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
	resp = msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, true);
	repair_flag(raft, resp, true); /* Every answer below is an index we match. */
	if (raft->snapshot_wanted && snapshot_rebase(raft, s)) {
		resp->index = s->index;
		return;
	}
	if (s->index <= raft->commit) {
		resp->index = raft->commit;
		return;
	}
	if (s->index <= log_last(&raft->log) && log_term_at(&raft->log, s->index) == s->term) {
		/* We hold the snapshot's last entry: our log matches up to it. */
		commit_to(raft, s->index);
		resp->index = s->index;
		return;
	}
	log_reset(&raft->log, s->index, s->term);
	raft->snap = *s;
	raft->confs_count = 0;
	conf_push(raft, s->index, &s->conf);
	raft->commit = s->index;
	raft->applied = raft->applying = s->index;
	raft->snapshot_dirty = true;
	resp->index = s->index;
}

/* REPAIR (see repair_end): pr lost data. Forget what it matched and count
 * it only once it holds our log up to our last index as of now. */
static void progress_repair_start(struct raft *raft, struct raft_progress *pr, uint64_t id)
{
	pr->repairing = true;
	pr->repair_id = id;
	pr->repair_mark = log_last(&raft->log);
	pr->match = 0;
	if (pr->state != RAFT_PROGRESS_SNAPSHOT)
		progress_become(raft, pr, RAFT_PROGRESS_PROBE);
	pr->next = log_last(&raft->log) + 1; /* Probe back with its hints. */
}

/* REPAIR: the append responses of a repairing member tell a leader so,
 * with the id of this life of it: a new id means a new loss, even if an
 * earlier repair looked unfinished here (its match is stale again). Returns
 * true when this response started a repair (and a probe went out). */
static bool progress_repair_check(struct raft *raft, struct raft_progress *pr,
				  const struct raft_msg *m)
{
	if (!(m->flags & RAFT_MSG_FLAG_REPAIR) || (pr->repairing && pr->repair_id == m->context))
		return false;
	progress_repair_start(raft, pr, m->context);
	send_append(raft, pr, true);
	return true;
}

static void handle_append_resp(struct raft *raft, struct raft_progress *pr,
			       const struct raft_msg *m)
{
	pr->recent_active = true;
	if (progress_repair_check(raft, pr, m))
		return;
	if (pr->repairing && !m->reject && (m->flags & RAFT_MSG_FLAG_REPAIRED) &&
	    m->context == pr->repair_id && m->index >= pr->repair_mark &&
	    m->index <= log_last(&raft->log)) {
		pr->repairing = false; /* Its log holds ours up to the mark. */
		if (m->index <= pr->match && maybe_commit(raft)) {
			bcast_append(raft, true);
			pr = progress_find(raft, m->from); /* The membership may have changed. */
			if (raft->role != RAFT_ROLE_LEADER || pr == NULL)
				return;
		}
	}
	if (m->reject) {
		uint64_t hint;

		if (pr->state == RAFT_PROGRESS_REPLICATE) {
			if (m->index <= pr->match)
				return; /* Stale. */
			progress_become(raft, pr, RAFT_PROGRESS_PROBE);
		} else {
			if (m->index != pr->next - 1)
				return; /* Stale: not the probe we sent. */
			hint = find_conflict_by_term(raft, m->hint_index, m->hint_term);
			pr->next = max_u64(min_u64(m->index, hint + 1), pr->match + 1);
			pr->probe_sent = false;
		}
		send_append(raft, pr, true);
		return;
	}
	if (m->index > log_last(&raft->log))
		return; /* Claims entries we never sent: ignore. */
	if (pr->state == RAFT_PROGRESS_SNAPSHOT && m->index >= pr->snapshot_index &&
	    m->index <= pr->match) {
		/* A follower rebuilding its state machine (raft_want_snapshot)
		 * installed a snapshot below what its log already matched: it
		 * still holds that log, so replication resumes after match. */
		progress_become(raft, pr, RAFT_PROGRESS_REPLICATE);
		send_append(raft, pr, false);
		return;
	}
	/* A PROBE resumes only on progress (progress_become below) or on a
	 * heartbeat response: if every stale or duplicated response sent a new
	 * probe, each duplicate would start one more probe/response chain that
	 * never ends, and traffic would grow without bound. */
	if (m->index > pr->match) {
		pr->match = m->index;
		pr->next = max_u64(pr->next, m->index + 1);
		if (pr->state == RAFT_PROGRESS_PROBE ||
		    (pr->state == RAFT_PROGRESS_SNAPSHOT && pr->match >= pr->snapshot_index))
			progress_become(raft, pr, RAFT_PROGRESS_REPLICATE);
		inflight_free_to(pr, pr->match);
		if (maybe_commit(raft))
			bcast_append(raft, true);
		/* A commit may have changed the membership: find pr again. */
		pr = progress_find(raft, m->from);
		if (raft->role != RAFT_ROLE_LEADER || pr == NULL)
			return;
		transfer_maybe_send(raft, pr);
	}
	/* Keep the pipeline full. */
	for (int i = 0; i < RAFT_INFLIGHT_MAX && pr->next <= log_last(&raft->log); i++) {
		uint32_t before = raft->msgs_count;

		send_append(raft, pr, false);
		if (raft->msgs_count == before)
			break;
	}
	/* REPAIR: it holds our log up to the mark with nothing in flight; an
	 * empty append tells it so (once per response that says it repairs). */
	if (pr->repairing && (m->flags & RAFT_MSG_FLAG_REPAIR) && pr->match >= pr->repair_mark &&
	    pr->next == pr->match + 1 && pr->state == RAFT_PROGRESS_REPLICATE)
		send_append(raft, pr, true);
}

static void handle_heartbeat_resp(struct raft *raft, struct raft_progress *pr,
				  const struct raft_msg *m)
{
	pr->recent_active = true;
	if (m->context > pr->acked_seq && m->context <= raft->hb_seq)
		pr->acked_seq = m->context;
	pr->probe_sent = false;
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		; /* Waiting for the install; the timeout in tick retries. */
	else if (pr->match < log_last(&raft->log) || (m->flags & RAFT_MSG_FLAG_REPAIR)) {
		/* Appends may have been lost: let one more through. One that
		 * lost data says so: its answer to an append tells which life
		 * of it repairs (progress_repair_check). */
		if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(raft, pr))
			inflight_free_first(pr);
		send_append(raft, pr, true);
	}
	reads_process(raft);
}

static void handle_read_index(struct raft *raft, uint64_t from, uint64_t context);

/* A follower asks for a snapshot at or past m->index (raft_want_snapshot). */
static void handle_snapshot_wanted(struct raft *raft, struct raft_progress *pr,
				   const struct raft_msg *m)
{
	pr->recent_active = true;
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		return; /* One is on its way. */
	pr->snapshot_wanted = true;
	pr->snapshot_need = m->index;
	snapshot_offer(raft); /* Else raft_is_snapshot_requested() says so. */
}

static void step_leader(struct raft *raft, const struct raft_msg *m)
{
	struct raft_progress *pr = progress_find(raft, m->from);

	switch (m->type) {
	case RAFT_MSG_SNAPSHOT_WANTED:
		if (pr)
			handle_snapshot_wanted(raft, pr, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (pr)
			handle_append_resp(raft, pr, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (pr)
			handle_heartbeat_resp(raft, pr, m);
		break;
	case RAFT_MSG_READ_INDEX:
		handle_read_index(raft, m->from, m->context);
		break;
	default:
		break; /* A second leader in our term cannot exist; ignore. */
	}
}

static void step_vote(struct raft *raft, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PRE_VOTE;
	bool up = log_up_to_date(raft, m->log_term, m->index);
	bool grant;
	struct raft_msg *resp;

	if (raft->repairing) {
		/* REPAIR: our log may lack committed entries; no vote at all. */
		resp =
		    msg_new(raft, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, m->from, !pre);
		resp->term = raft->term;
		resp->reject = true;
		resp->flags = RAFT_MSG_FLAG_REPAIR;
		return;
	}
	if (pre) {
		/* Grant if a real election would be allowed: higher term, log at
		 * least as up to date, and no leader we still believe in. */
		grant = m->term > raft->term && up &&
			(!in_lease(raft) || (m->flags & RAFT_MSG_FLAG_TRANSFER));
		/* Taking over from a dead leader, survivors go in a per-group
		 * order; one campaigning does not help a later one past it, or
		 * both would reach the real election and split the vote. Only
		 * liveness is at stake: a refused pre-vote changes no state. */
		if (grant && raft->takeover && raft->role != RAFT_ROLE_FOLLOWER &&
		    takeover_key(raft, m->from) > takeover_key(raft, raft->config.id))
			grant = false;
		resp = msg_new(raft, RAFT_MSG_PRE_VOTE_RESP, m->from, false);
		resp->term = grant ? m->term : raft->term;
		resp->reject = !grant;
		return;
	}
	/* §5.2, §5.4.1: one vote per term, only for an up-to-date log. */
	grant =
	    (raft->vote == m->from || (raft->vote == RAFT_NONE && raft->leader == RAFT_NONE)) && up;
	if (grant) {
		raft->vote = m->from;
		election_timer_reset(raft);
	}
	resp = msg_new(raft, RAFT_MSG_VOTE_RESP, m->from, true);
	resp->reject = !grant;
}

static void step_vote_resp(struct raft *raft, const struct raft_msg *m)
{
	if (m->reject && (m->flags & RAFT_MSG_FLAG_REPAIR))
		raft->repair_refused_ms = raft->now_ms;
	uint64_t *list = m->reject ? raft->votes_rejected : raft->votes_granted;
	uint32_t *count = m->reject ? &raft->votes_rejected_count : &raft->votes_granted_count;
	enum vote_result result;

	if (id_in(raft->votes_granted, raft->votes_granted_count, m->from) ||
	    id_in(raft->votes_rejected, raft->votes_rejected_count, m->from) ||
	    *count == RAFT_MEMBERS_MAX)
		return;
	list[(*count)++] = m->from;
	result = vote_tally(raft);
	if (result == VOTE_WON) {
		if (raft->role == RAFT_ROLE_PRE_CANDIDATE)
			become_candidate(raft, false);
		else
			become_leader(raft);
	} else if (result == VOTE_LOST) {
		raft->takeover = false;
		become_follower(raft, raft->term, RAFT_NONE);
	}
}

static bool msg_is_valid(const struct raft *raft, const struct raft_msg *m)
{
	if (m->type == 0 || m->type >= RAFT_MSG_TYPE_COUNT)
		return false;
	/* No real group gets near 2^63 terms; a term that high could only
	 * make ours wrap to 0 at the next election. */
	if (m->term > RAFT_TERM_MAX)
		return false;
	if (m->from == RAFT_NONE || m->from == raft->config.id)
		return false;
	if (m->to != raft->config.id)
		return false;
	if (m->entries_count > 0 && m->entries == NULL)
		return false;
	return true;
}

/* The term rules of Figure 2 and §9.6, before any type-specific handling.
 * Returns false when the message is fully handled (or ignored). */
static bool step_term(struct raft *raft, const struct raft_msg *m)
{
	if (m->term > raft->term) {
		bool leader_msg = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
				  m->type == RAFT_MSG_SNAPSHOT;

		if (m->type == RAFT_MSG_PRE_VOTE)
			return true;
		if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)
			return true;
		if (m->type == RAFT_MSG_VOTE && in_lease(raft) &&
		    !(m->flags & RAFT_MSG_FLAG_TRANSFER))
			return false; /* Stickiness: ignore, keep our term. */
		become_follower(raft, m->term, leader_msg ? m->from : RAFT_NONE);
		return true;
	}
	if (m->term < raft->term) {
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT) {
			/* A stale leader learns our term and steps down. */
			msg_new(raft, RAFT_MSG_APPEND_RESP, m->from, false)->reject = false;
		} else if (m->type == RAFT_MSG_PRE_VOTE) {
			struct raft_msg *resp =
			    msg_new(raft, RAFT_MSG_PRE_VOTE_RESP, m->from, false);

			resp->reject = true;
		} else if (m->type == RAFT_MSG_VOTE) {
			/* Refuse with our term (Figure 2): a candidate that never
			 * hears of later terms could go on campaigning below them
			 * while a candidate that cannot win keeps raising them. */
			msg_new(raft, RAFT_MSG_VOTE_RESP, m->from, false)->reject = true;
		}
		return false;
	}
	return true;
}

void raft_step(struct raft *raft, const struct raft_msg *m, uint64_t now_ms)
{
	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (!msg_is_valid(raft, m))
		return;
	/* The quiesce heartbeat must not wake the group it puts to sleep, nor
	 * may late answers to heartbeats: they bring no work. */
	if (!(m->type == RAFT_MSG_HEARTBEAT && (m->flags & RAFT_MSG_FLAG_QUIESCE)) &&
	    m->type != RAFT_MSG_HEARTBEAT_RESP)
		wake(raft);
	if (!step_term(raft, m))
		return;

	switch (m->type) {
	case RAFT_MSG_PRE_VOTE:
	case RAFT_MSG_VOTE:
		step_vote(raft, m);
		return;
	case RAFT_MSG_PRE_VOTE_RESP:
		if (raft->role == RAFT_ROLE_PRE_CANDIDATE &&
		    (m->reject ? m->term == raft->term : m->term == raft->term + 1))
			step_vote_resp(raft, m);
		return;
	case RAFT_MSG_VOTE_RESP:
		if (raft->role == RAFT_ROLE_CANDIDATE)
			step_vote_resp(raft, m);
		return;
	default:
		break;
	}
	if (raft->role == RAFT_ROLE_LEADER) {
		step_leader(raft, m);
		return;
	}
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		if (raft->role != RAFT_ROLE_FOLLOWER)
			become_follower(raft, raft->term, m->from);
		heard_from_leader(raft, m->from);
		if (m->type == RAFT_MSG_APPEND) {
			handle_append(raft, m);
		} else if (m->type == RAFT_MSG_SNAPSHOT) {
			handle_snapshot(raft, m);
		} else {
			struct raft_msg *resp;

			/* REPAIR: a heartbeat's commit rests on a match that may
			 * predate our loss; only appends that matched count. */
			if (m->commit > raft->commit && m->commit <= log_last(&raft->log) &&
			    !raft->repairing)
				commit_to(raft, m->commit);
			raft->quiesced = (m->flags & RAFT_MSG_FLAG_QUIESCE) != 0;
			resp = msg_new(raft, RAFT_MSG_HEARTBEAT_RESP, m->from, false);
			resp->context = m->context;
			resp->flags = raft->repairing ? RAFT_MSG_FLAG_REPAIR : 0;
			if (raft->snapshot_wanted)
				snapshot_ask(raft); /* The last request may have been lost. */
		}
		return;
	case RAFT_MSG_TIMEOUT_NOW:
		/* §3.10: the leader asks us to take over now. */
		if (raft->role == RAFT_ROLE_FOLLOWER)
			campaign(raft, true);
		return;
	case RAFT_MSG_READ_INDEX:
		read_answer(raft, m->from, m->context, 0); /* Not the leader. */
		return;
	case RAFT_MSG_READ_INDEX_RESP:
		read_out(raft, m->context, m->reject ? 0 : m->index);
		return;
	default:
		return;
	}
}

/* ------------------------------------------------------------------ tick */

static void tick_leader(struct raft *raft)
{
	uint64_t now = raft->now_ms;

	if (raft->config.check_quorum && now >= raft->check_quorum_deadline_ms) {
		/* §6.2: a leader that cannot reach a quorum steps down. */
		if (!quorum_active(raft)) {
			become_follower(raft, raft->term, RAFT_NONE);
			return;
		}
		for (uint32_t i = 0; i < raft->progress_count; i++)
			raft->progress[i].recent_active = false;
		raft->check_quorum_deadline_ms = now + raft->config.election_timeout_ms;
	}
	if (raft->transfer_target != RAFT_NONE && now >= raft->transfer_deadline_ms)
		raft->transfer_target = RAFT_NONE; /* Give up; proposals flow again. */
	if (now >= raft->heartbeat_deadline_ms) {
		for (uint32_t i = 0; i < raft->progress_count; i++) {
			struct raft_progress *pr = &raft->progress[i];

			if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
			    now >= pr->state_ms + 2ull * raft->config.election_timeout_ms)
				progress_become(raft, pr, RAFT_PROGRESS_PROBE);
		}
		bcast_heartbeat(raft, 0);
		raft->heartbeat_deadline_ms = now + raft->config.heartbeat_interval_ms;
	}
	if (raft->config.quiesce && now >= raft->quiesce_deadline_ms) {
		bool idle = raft->commit == log_last(&raft->log) &&
			    raft->transfer_target == RAFT_NONE && raft->reads_pending_count == 0 &&
			    conf_current_index(raft) <= raft->commit && !conf_current(raft)->joint;

		for (uint32_t i = 0; i < raft->progress_count && idle; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			idle = pr->match == log_last(&raft->log) && !pr->down;
		}
		if (idle) {
			bcast_heartbeat(raft, RAFT_MSG_FLAG_QUIESCE);
			raft->quiesced = true;
		} else {
			raft->quiesce_deadline_ms = now + raft->config.quiesce_after_ms;
		}
	}
}

void raft_tick(struct raft *raft, uint64_t now_ms)
{
	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->quiesced)
		return;
	if (raft->role == RAFT_ROLE_LEADER) {
		tick_leader(raft);
		return;
	}
	if (raft->now_ms < raft->election_deadline_ms)
		return;
	/* A takeover gets one round in its order; past its timer, the ordinary
	 * rules again (else a survivor that cannot win would block the others). */
	raft->takeover = false;
	if (raft_is_promotable(raft))
		campaign(raft, false);
	else
		election_timer_reset(raft);
}

uint64_t raft_next_deadline(const struct raft *raft)
{
	uint64_t d;

	if (raft->quiesced)
		return RAFT_DEADLINE_NONE;
	if (raft->role != RAFT_ROLE_LEADER)
		return raft_is_promotable(raft) ? raft->election_deadline_ms : RAFT_DEADLINE_NONE;
	d = raft->heartbeat_deadline_ms;
	if (raft->config.check_quorum)
		d = min_u64(d, raft->check_quorum_deadline_ms);
	if (raft->transfer_target != RAFT_NONE)
		d = min_u64(d, raft->transfer_deadline_ms);
	if (raft->config.quiesce)
		d = min_u64(d, raft->quiesce_deadline_ms);
	return d;
}

/* ------------------------------------------------------------ requests */

static int propose_typed(struct raft *raft, uint32_t type, const struct raft_buf *bufs,
			 uint32_t count, uint64_t *first_index)
{
	uint64_t size = 0;

	out_begin(raft);
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
	wake(raft);
	*first_index = log_last(&raft->log) + 1;
	for (uint32_t i = 0; i < count; i++) {
		int rv = leader_append(raft, type, bufs[i].data, bufs[i].size);

		if (rv != 0) {
			/* Keep what was appended: it is in the log and will commit. */
			if (i == 0)
				return rv;
			break;
		}
	}
	raft->quiesce_deadline_ms = raft->now_ms + raft->config.quiesce_after_ms;
	bcast_append(raft, false);
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

static void handle_read_index(struct raft *raft, uint64_t from, uint64_t context)
{
	struct raft_pending_read *rd;

	if (lease_valid(raft) && committed_in_term(raft)) {
		read_answer(raft, from, context, raft->commit);
		return;
	}
	if (raft->reads_pending_count == raft->config.reads_max) {
		read_answer(raft, from, context, 0);
		return;
	}
	raft->reads_pending = grow(raft->reads_pending, &raft->reads_pending_cap,
				   raft->reads_pending_count + 1, sizeof(*raft->reads_pending));
	rd = &raft->reads_pending[raft->reads_pending_count++];
	*rd = (struct raft_pending_read){.context = context, .from = from};
	if (committed_in_term(raft)) {
		rd->index = raft->commit;
		rd->seq = raft->hb_seq + 1;
		raft->hb_pending = true;
	}
	/* Otherwise wait until the no-op of this term commits (§6.4 step 1). */
	reads_process(raft); /* A single voter confirms at once. */
}

int raft_read_index(struct raft *raft, uint64_t context, uint64_t now_ms)
{
	struct raft_msg *m;

	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role == RAFT_ROLE_LEADER) {
		if (raft->reads_pending_count == raft->config.reads_max && !lease_valid(raft))
			return -EAGAIN;
		wake(raft);
		handle_read_index(raft, raft->config.id, context);
		return 0;
	}
	if (raft->leader == RAFT_NONE || raft->leader_down)
		return RAFT_ERR_NOT_LEADER;
	m = msg_new(raft, RAFT_MSG_READ_INDEX, raft->leader, false);
	m->context = context;
	return 0;
}

int raft_transfer(struct raft *raft, uint64_t target, uint64_t now_ms)
{
	struct raft_progress *pr;

	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role != RAFT_ROLE_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (raft->transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	if (target == raft->config.id ||
	    raft_conf_role(conf_current(raft), target) != RAFT_MEMBER_VOTER)
		return -EINVAL;
	pr = progress_find(raft, target);
	if (pr == NULL)
		return -EINVAL;
	if (pr->repairing)
		return RAFT_ERR_REPAIRING; /* It would not campaign: proposals would stall. */
	wake(raft);
	raft->transfer_target = target;
	raft->transfer_deadline_ms = raft->now_ms + raft->config.election_timeout_ms;
	if (pr->match == log_last(&raft->log))
		transfer_maybe_send(raft, pr);
	else
		send_append(raft, pr, true);
	return 0;
}

static bool conf_is_valid(const struct raft_conf *conf)
{
	bool has_voter = false;

	if (conf->members_count == 0 || conf->members_count > RAFT_MEMBERS_MAX || conf->joint)
		return false;
	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id == RAFT_NONE || m->role == RAFT_MEMBER_NONE ||
		    m->role > RAFT_MEMBER_WITNESS || m->role_old != RAFT_MEMBER_NONE)
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (conf->members[j].id == m->id)
				return false;
		has_voter |= m->role == RAFT_MEMBER_VOTER;
	}
	return has_voter;
}

/* Leader: is learner id replicating, within promote_lag_entries_max of our
 * last entry? A learner still probing or installing a snapshot is not. */
static bool learner_caught_up(const struct raft *raft, uint64_t id)
{
	const struct raft_progress *pr = raft_progress_of(raft, id);

	return pr != NULL && pr->state == RAFT_PROGRESS_REPLICATE &&
	       log_last(&raft->log) - pr->match <= raft->config.promote_lag_entries_max;
}

int raft_change(struct raft *raft, const struct raft_conf *target)
{
	const struct raft_conf *cur;
	struct raft_conf joint = {.joint = true};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	int rv;

	out_begin(raft);
	if (raft->role != RAFT_ROLE_LEADER)
		return RAFT_ERR_NOT_LEADER;
	cur = conf_current(raft);
	/* One change at a time: the last one must be committed and final. */
	if (conf_current_index(raft) > raft->commit || cur->joint || !committed_in_term(raft))
		return RAFT_ERR_CONF_PENDING;
	if (raft->transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	if (!conf_is_valid(target))
		return RAFT_ERR_CONF_INVALID;
	for (uint32_t i = 0; i < target->members_count; i++) {
		struct raft_member m = target->members[i];

		m.role_old = (uint8_t)raft_conf_role(cur, m.id);
		/* A witness holds no payloads: as a full voter it could lead
		 * without the data. It must join anew as a learner instead. */
		if (m.role_old == RAFT_MEMBER_WITNESS && m.role != RAFT_MEMBER_WITNESS)
			return RAFT_ERR_CONF_INVALID;
		/* §4.2.1: a learner votes only once it has caught up. */
		if (m.role_old == RAFT_MEMBER_LEARNER && m.role == RAFT_MEMBER_VOTER &&
		    !learner_caught_up(raft, m.id))
			return RAFT_ERR_LAGGING;
		joint.members[joint.members_count++] = m;
	}
	for (uint32_t i = 0; i < cur->members_count; i++) {
		if (raft_conf_role(target, cur->members[i].id) != RAFT_MEMBER_NONE)
			continue;
		if (joint.members_count == RAFT_MEMBERS_MAX)
			return RAFT_ERR_CONF_INVALID;
		joint.members[joint.members_count++] =
		    (struct raft_member){.id = cur->members[i].id,
					 .role = RAFT_MEMBER_NONE,
					 .role_old = cur->members[i].role};
	}
	wake(raft);
	raft_conf_encode(&joint, buf);
	rv = leader_append(raft, RAFT_ENTRY_CONF, buf, raft_conf_encoded_size(&joint));
	if (rv != 0)
		return rv;
	bcast_append(raft, false);
	return 0;
}

void raft_persisted(struct raft *raft, uint64_t index, uint64_t term)
{
	struct raft_log *log = &raft->log;
	struct raft_progress *self;

	out_begin(raft);
	if (index <= log->stable_index || index > log->handed_index ||
	    log_term_at(log, index) != term)
		return; /* Stale: overwritten since, or already known. */
	log->stable_index = index;
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	/* §10.2.1: the leader counts itself only for what is durable. */
	self = progress_find(raft, raft->config.id);
	if (self == NULL)
		return;
	self->match = index;
	if (maybe_commit(raft) && raft->role == RAFT_ROLE_LEADER) {
		bcast_append(raft, true);
		return;
	}
	for (uint32_t i = 0; i < raft->progress_count; i++)
		if (is_witness(raft, raft->progress[i].id))
			send_append(raft, &raft->progress[i],
				    false); /* Now durable: see send_append. */
}

void raft_applied(struct raft *raft, uint64_t index)
{
	out_begin(raft);
	if (index > raft->applied)
		raft->applied = min_u64(index, raft->applying);
}

int raft_want_snapshot(struct raft *raft)
{
	out_begin(raft);
	if (raft->role == RAFT_ROLE_LEADER)
		return -EINVAL;
	if (raft->leader == RAFT_NONE)
		return RAFT_ERR_NOT_LEADER;
	raft->snapshot_wanted = true;
	wake(raft);
	snapshot_ask(raft);
	return 0;
}

bool raft_is_repairing(const struct raft *raft)
{
	return raft->repairing;
}

/* Whether repairing members leave too few others to make a majority of
 * every half of the configuration (the leader's view). */
static bool repair_blocks_quorum(const struct raft *raft)
{
	const struct raft_conf *conf = conf_current(raft);

	for (int h = 0; h < halves(conf); h++) {
		uint32_t voters = 0, whole = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			if (!role_votes(member_role(&conf->members[i], h)))
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

	out_begin(raft);
	if (index <= raft->log.snapshot_index)
		return RAFT_ERR_COMPACTED;
	if (index > raft->applied || index > log_last(&raft->log))
		return RAFT_ERR_UNAVAILABLE;
	conf = conf_at(raft, index);
	raft->snap.index = index;
	raft->snap.term = log_term_at(&raft->log, index);
	raft->snap.conf = *conf;
	log_compact(&raft->log, index);
	confs_trim(raft, index);
	snapshot_offer(raft);
	return 0;
}

/* Safety of peer_down. A follower that learns its leader's process died
 * stops waiting out the election timeout and, as a voter, stops refusing
 * (pre)votes on the leader's behalf (in_lease). Nothing else changes: votes
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
	const struct raft_conf *conf = conf_current(raft);
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

	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role == RAFT_ROLE_LEADER) {
		pr = progress_find(raft, node);
		if (pr == NULL)
			return;
		pr->down = true;
		raft->lease_until_ms = 0;
		/* Late acks of heartbeats sent before now must not restore the
		 * lease: skip the sequence past the ring, so reads_process()
		 * takes a lease only from heartbeats sent after this. */
		raft->hb_seq += HB_RING;
		if (pr->state == RAFT_PROGRESS_REPLICATE)
			progress_become(raft, pr, RAFT_PROGRESS_PROBE);
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
		campaign(raft, false);
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

	out_begin(raft);
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	pr = progress_find(raft, node);
	if (pr == NULL || !pr->down)
		return;
	pr->down = false;
	pr->probe_sent = false;
	send_append(raft, pr, true);
}

void raft_snapshot_sent(struct raft *raft, uint64_t node, bool ok, uint64_t now_ms)
{
	struct raft_progress *pr;

	out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	if (raft->role != RAFT_ROLE_LEADER)
		return;
	pr = progress_find(raft, node);
	if (pr == NULL || pr->state != RAFT_PROGRESS_SNAPSHOT)
		return;
	progress_become(raft, pr, RAFT_PROGRESS_PROBE);
	if (ok) {
		/* Wait for the follower's answer before probing again. */
		pr->next = max_u64(pr->next, pr->snapshot_index + 1);
		pr->probe_sent = true;
	}
}

/* ----------------------------------------------------------------- ready */

static uint64_t apply_limit(const struct raft *raft)
{
	return min_u64(raft->commit, raft->log.stable_index);
}

bool raft_has_ready(const struct raft *raft)
{
	const struct raft_log *log = &raft->log;

	if (raft->term != raft->hard_handed.term || raft->vote != raft->hard_handed.vote ||
	    raft->commit != raft->hard_handed.commit)
		return true;
	if (raft->snapshot_dirty || log->handed_index < log_last(log) || raft->hb_pending)
		return true;
	if (raft->applying < apply_limit(raft))
		return true;
	return !raft->ready_taken &&
	       (raft->msgs_count || raft->msgs_after_count || raft->reads_out_count);
}

/* Resolve the index ranges of queued APPEND messages to entry pointers;
 * drop those that no longer describe our log (leadership lost, compacted). */
static void msgs_resolve(struct raft *raft)
{
	const struct raft_log *log = &raft->log;
	uint32_t kept = 0;

	for (uint32_t i = 0; i < raft->msgs_count; i++) {
		struct raft_msg *m = &raft->msgs[i];

		if (m->type == RAFT_MSG_APPEND) {
			if (raft->role != RAFT_ROLE_LEADER || m->term != raft->term ||
			    m->index < log->snapshot_index ||
			    m->index + m->entries_count > log_last(log))
				continue;
			m->log_term = log_term_at(log, m->index);
			m->entries = m->entries_count ? log_at(log, m->index + 1) : NULL;
		} else if (m->type == RAFT_MSG_SNAPSHOT) {
			m->index = raft->snap.index;
			m->log_term = raft->snap.term;
			m->snapshot = &raft->snap;
		}
		raft->msgs[kept++] = *m;
	}
	raft->msgs_count = kept;
}

void raft_ready(struct raft *raft, struct raft_ready *ready)
{
	struct raft_log *log = &raft->log;
	uint64_t limit;

	out_begin(raft);
	if (raft->hb_pending && raft->role == RAFT_ROLE_LEADER)
		bcast_heartbeat(raft, 0);
	raft->hb_pending = false;
	msgs_resolve(raft);
	memset(ready, 0, sizeof(*ready));

	ready->hard = (struct raft_hard_state){
	    .term = raft->term, .vote = raft->vote, .commit = raft->commit};
	ready->hard_changed = memcmp(&ready->hard, &raft->hard_handed, sizeof(ready->hard)) != 0;
	raft->hard_handed = ready->hard;

	if (raft->snapshot_dirty) {
		ready->snapshot = &raft->snap;
		raft->snapshot_dirty = false;
	}
	if (log->handed_index < log_last(log)) {
		ready->entries = log_at(log, log->handed_index + 1);
		ready->entries_count = (uint32_t)(log_last(log) - log->handed_index);
		log->handed_index = log_last(log);
	}
	limit = apply_limit(raft);
	if (raft->applying < limit) {
		ready->committed = log_at(log, raft->applying + 1);
		ready->committed_count = (uint32_t)(limit - raft->applying);
		raft->applying = limit;
	}
	ready->msgs = raft->msgs;
	ready->msgs_count = raft->msgs_count;
	ready->msgs_after = raft->msgs_after;
	ready->msgs_after_count = raft->msgs_after_count;
	ready->reads = raft->reads_out;
	ready->reads_count = raft->reads_out_count;
	raft->ready_taken = true;
}

/* -------------------------------------------------------- init, queries */

void raft_config_default(struct raft_config *config, uint64_t id, uint64_t group)
{
	*config = (struct raft_config){
	    .id = id,
	    .group = group,
	    .seed = id * 0x9E3779B97F4A7C15ull ^ group,
	    .election_timeout_ms = 1000,
	    .heartbeat_interval_ms = 100,
	    .clock_drift_max_ms = 100,
	    .inflight_count_max = 32,
	    .inflight_size_max = 8u << 20,
	    .msg_size_max = 1u << 20,
	    .entry_size_max = 8u << 20,
	    .uncommitted_size_max = 64ull << 20,
	    .reads_max = 1024,
	    .pre_vote = true,
	    .check_quorum = true,
	    .lease_read = false,
	    .quiesce = false,
	    .quiesce_after_ms = 10000,
	    .promote_lag_entries_max = 256,
	};
}

static int config_check(const struct raft_config *c)
{
	if (c->id == RAFT_NONE || c->election_timeout_ms == 0 || c->heartbeat_interval_ms == 0 ||
	    c->heartbeat_interval_ms >= c->election_timeout_ms ||
	    c->clock_drift_max_ms >= c->election_timeout_ms || c->inflight_count_max == 0 ||
	    c->inflight_count_max > RAFT_INFLIGHT_MAX || c->msg_size_max == 0 ||
	    c->entry_size_max == 0 || c->reads_max == 0)
		return -EINVAL;
	return 0;
}

int raft_init(struct raft *raft, const struct raft_config *config, const struct raft_boot *boot,
	      uint64_t now_ms)
{
	int rv = config_check(config);

	if (rv != 0)
		return rv;
	if (boot->snapshot.conf.members_count > RAFT_MEMBERS_MAX)
		return -EINVAL;
	memset(raft, 0, sizeof(*raft));
	raft->config = *config;
	/* splitmix64 steps its state by a constant, so seeds that differ by a
	 * multiple of it (id * constant, as in the default config) would give
	 * nodes the same timeouts shifted by a draw: start from a hash instead. */
	raft->rng = config->seed;
	raft->rng = rng_next(raft);
	raft->now_ms = now_ms;
	raft->snap = boot->snapshot;
	log_reset(&raft->log, boot->snapshot.index, boot->snapshot.term);
	conf_push(raft, boot->snapshot.index, &boot->snapshot.conf);
	for (uint32_t i = 0; i < boot->entries_count; i++) {
		const struct raft_entry *e = &boot->entries[i];

		rv = -EINVAL;
		if (e->index != log_last(&raft->log) + 1 || e->term < log_last_term(&raft->log))
			goto err;
		rv = log_append(&raft->log, e->term, e->type, e->data, e->size);
		if (rv != 0)
			goto err;
		conf_appended(raft, log_at(&raft->log, e->index));
	}
	raft->log.stable_index = raft->log.handed_index = log_last(&raft->log);
	raft->term = boot->hard.term;
	raft->vote = boot->hard.vote;
	raft->applied = max_u64(boot->applied, boot->snapshot.index);
	/* What the state machine applied was committed, even where the stored
	 * commit is older (storage need not persist every commit advance). */
	raft->commit = min_u64(max_u64(boot->hard.commit, raft->applied), log_last(&raft->log));
	rv = -EINVAL;
	if (raft->applied > raft->commit || raft->term < log_last_term(&raft->log))
		goto err;
	raft->applying = raft->applied;
	raft->repairing = boot->repair;
	if (boot->repair) /* Nonzero: see repair_flag(). */
		raft->repair_id =
		    boot->repair_id ? boot->repair_id : mix64(rng_next(raft) ^ now_ms) | 1;
	raft->hard_handed = (struct raft_hard_state){raft->term, raft->vote, raft->commit};
	raft->role = RAFT_ROLE_FOLLOWER;
	raft->leader_heard_ms = now_ms;
	raft->boot_sticky_until_ms = now_ms + config->election_timeout_ms;
	election_timer_reset(raft);
	return 0;
err:
	raft_deinit(raft);
	return rv;
}

void raft_deinit(struct raft *raft)
{
	log_deinit(&raft->log);
	free(raft->confs);
	free(raft->progress);
	free(raft->reads_pending);
	free(raft->msgs);
	free(raft->msgs_after);
	free(raft->reads_out);
	memset(raft, 0, sizeof(*raft));
}

enum raft_role raft_role(const struct raft *raft)
{
	return (enum raft_role)raft->role;
}

bool raft_is_leader(const struct raft *raft)
{
	return raft->role == RAFT_ROLE_LEADER;
}

uint64_t raft_leader(const struct raft *raft)
{
	return raft->leader;
}

uint64_t raft_term(const struct raft *raft)
{
	return raft->term;
}

uint64_t raft_commit_index(const struct raft *raft)
{
	return raft->commit;
}

uint64_t raft_last_index(const struct raft *raft)
{
	return log_last(&raft->log);
}

uint64_t raft_first_index(const struct raft *raft)
{
	return log_first(&raft->log);
}

bool raft_is_quiesced(const struct raft *raft)
{
	return raft->quiesced;
}

const struct raft_conf *raft_conf(const struct raft *raft)
{
	return conf_current(raft);
}

uint64_t raft_conf_index(const struct raft *raft)
{
	return conf_current_index(raft);
}

const struct raft_entry *raft_entry_at(const struct raft *raft, uint64_t index)
{
	return log_at(&raft->log, index);
}

uint64_t raft_term_at(const struct raft *raft, uint64_t index)
{
	return log_term_at(&raft->log, index);
}

const struct raft_snapshot_meta *raft_snapshot(const struct raft *raft)
{
	return &raft->snap;
}

const struct raft_conf *raft_conf_at(const struct raft *raft, uint64_t index)
{
	ASSERT(index >= raft->log.snapshot_index);
	return conf_at(raft, index);
}

uint64_t raft_applied_index(const struct raft *raft)
{
	return raft->applied;
}

const struct raft_progress *raft_progress_of(const struct raft *raft, uint64_t node)
{
	return progress_find((struct raft *)raft, node);
}

const char *raft_role_name(enum raft_role role)
{
	static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};

	return (unsigned)role < 4 ? names[role] : "unknown";
}

const char *raft_msg_type_name(uint32_t type)
{
	static const char *names[] = {
	    "none",        "append",        "append-resp",     "vote",           "vote-resp",
	    "pre-vote",    "pre-vote-resp", "heartbeat",       "heartbeat-resp", "snapshot",
	    "timeout-now", "read-index",    "read-index-resp", "snapshot-wanted"};

	return type < RAFT_MSG_TYPE_COUNT ? names[type] : "unknown";
}
