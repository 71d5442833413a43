/* The invariants of Raft (Figure 3 of the paper) and of the client's view,
 * checked against a history that only grows.
 *
 * - Election Safety: leaders[term] records the one node that ever led term.
 * - Log Matching: every (index, term) seen in any log, ever, maps to one entry
 *   (type and payload hash) and one term at index - 1. By induction, two logs
 *   holding an entry with the same index and term agree up to it.
 * - Leader Append-Only: a leader's log, scanned after every step, keeps every
 *   term it had at the previous scan in the same term, and no ready of a
 *   leader hands out an index it handed out before in that term.
 * - Committed log: committed[i] is the entry at index i once any node's
 *   commit index covered it, with the state machine after it. It never
 *   changes: each node's commit is compared against it.
 * - Leader Completeness: a leader of term T holds every committed[i] that was
 *   committed in a term below T. commit_term is the term of the first node
 *   seen committing i, which is at least the term it was committed in, so the
 *   check never fires early.
 * - State Machine Safety: each applied entry equals committed[i] and the
 *   state machine's digest after it equals committed[i]'s.
 * - Writes: a write id is committed at one index at most; an acknowledged
 *   write is committed[i] with its proposal's term.
 * - Reads: a read served at applied index A returns committed[A]'s value,
 *   and A is at least the index of every write acknowledged and of every read
 *   served before the read was invoked (sim_check_read_bound). */
#include <stdlib.h>
#include <string.h>

#include "engine/raft.h"
#include "tests/sim/sim.h"

struct check_slot {
	uint64_t index, term, hash, prev_term;
	uint32_t type;
	bool used, hash_known;
};

struct check_committed {
	uint64_t term, hash, commit_term, write_id;
	uint32_t type;
	struct sim_sm sm; /* After applying this entry. */
};

struct check_write {
	uint64_t index; /* Where it was committed; 0 while not. */
	uint32_t key;
	bool acked;
};

struct sim_check {
	struct check_slot *slots;
	uint64_t slots_cap, slots_used;
	struct check_committed *committed; /* [0] is the empty state. */
	uint64_t committed_count, committed_cap;
	uint64_t *leaders; /* By term. */
	uint64_t leaders_cap;
	struct check_write *writes; /* By write id; [0] unused. */
	uint64_t writes_count, writes_cap;
	uint64_t acked_max, read_max;
};

static void *grow_to(void *array, uint64_t *cap, uint64_t need, size_t elem)
{
	uint64_t cap_new = *cap ? *cap : 64;
	uint8_t *p;

	if (need <= *cap)
		return array;
	while (cap_new < need)
		cap_new *= 2;
	p = realloc(array, cap_new * elem);
	if (p == NULL)
		abort();
	memset(p + *cap * elem, 0, (cap_new - *cap) * elem);
	*cap = cap_new;
	return p;
}

int sim_check_init(struct sim *sim)
{
	struct sim_check *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->committed = grow_to(NULL, &c->committed_cap, 1, sizeof(*c->committed));
	c->committed_count = 0;
	sim->check = c;
	return 0;
}

void sim_check_deinit(struct sim *sim)
{
	struct sim_check *c = sim->check;

	if (c == NULL)
		return;
	free(c->slots);
	free(c->committed);
	free(c->leaders);
	free(c->writes);
	free(c);
	sim->check = NULL;
}

uint64_t sim_check_committed(const struct sim *sim)
{
	return sim->check->committed_count;
}

void sim_check_leader(struct sim *sim, struct sim_node *n)
{
	struct sim_check *c = sim->check;
	uint64_t term = raft_term(&n->raft);

	if (!raft_is_leader(&n->raft))
		return;
	c->leaders = grow_to(c->leaders, &c->leaders_cap, term + 1, sizeof(*c->leaders));
	if (c->leaders[term] == 0) {
		c->leaders[term] = n->id;
		sim->stats.leaders++;
		if (term > sim->stats.max_term)
			sim->stats.max_term = term;
	} else if (c->leaders[term] != n->id) {
		sim_fail(sim, "Election Safety: n%llu and n%llu both led term %llu",
			 (unsigned long long)c->leaders[term], (unsigned long long)n->id,
			 (unsigned long long)term);
	}
}

/* ------------------------------------------------------- log matching */

static uint64_t slot_hash(uint64_t index, uint64_t term)
{
	uint64_t h =
	    index * 0x9E3779B97F4A7C15ull ^ (term + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;

	return h ^ (h >> 29);
}

static struct check_slot *slot_find(struct sim_check *c, uint64_t index, uint64_t term);

static void slots_rehash(struct sim_check *c)
{
	struct check_slot *old = c->slots;
	uint64_t old_cap = c->slots_cap;

	c->slots_cap = old_cap ? old_cap * 2 : 1024;
	c->slots = calloc(c->slots_cap, sizeof(*c->slots));
	if (c->slots == NULL)
		abort();
	for (uint64_t i = 0; i < old_cap; i++)
		if (old[i].used)
			*slot_find(c, old[i].index, old[i].term) = old[i];
	free(old);
}

/* The slot of (index, term), or the free slot where it would go. */
static struct check_slot *slot_find(struct sim_check *c, uint64_t index, uint64_t term)
{
	uint64_t mask = c->slots_cap - 1;

	for (uint64_t i = slot_hash(index, term) & mask;; i = (i + 1) & mask) {
		struct check_slot *s = &c->slots[i];

		if (!s->used || (s->index == index && s->term == term))
			return s;
	}
}

/* Log Matching for one entry of node n, given the term before it. */
static void slot_check(struct sim *sim, const struct sim_node *n, const struct raft_entry *e,
		       uint64_t prev_term)
{
	struct sim_check *c = sim->check;
	bool known = !(n->witness_slot && e->type == RAFT_ENTRY_NORMAL);
	uint64_t hash = sim_entry_hash(e);
	struct check_slot *s;

	if ((c->slots_used + 1) * 2 > c->slots_cap)
		slots_rehash(c);
	s = slot_find(c, e->index, e->term);
	if (!s->used) {
		*s = (struct check_slot){.index = e->index,
					 .term = e->term,
					 .hash = hash,
					 .prev_term = prev_term,
					 .type = e->type,
					 .used = true,
					 .hash_known = known};
		c->slots_used++;
		return;
	}
	if (s->type != e->type || s->prev_term != prev_term ||
	    (known && s->hash_known && s->hash != hash)) {
		sim_fail(sim,
			 "Log Matching: n%llu holds a different entry at index %llu term %llu "
			 "(type %u/%u, previous term %llu/%llu)",
			 (unsigned long long)n->id, (unsigned long long)e->index,
			 (unsigned long long)e->term, e->type, s->type,
			 (unsigned long long)prev_term, (unsigned long long)s->prev_term);
		return;
	}
	if (known && !s->hash_known) {
		s->hash = hash;
		s->hash_known = true;
	}
}

void sim_check_handed(struct sim *sim, struct sim_node *n, const struct raft_ready *rd)
{
	uint64_t term = raft_term(&n->raft);

	if (rd->entries_count == 0)
		return;
	for (uint32_t i = 0; i < rd->entries_count; i++) {
		const struct raft_entry *e = &rd->entries[i];
		uint64_t prev =
		    i > 0 ? rd->entries[i - 1].term : raft_term_at(&n->raft, e->index - 1);

		slot_check(sim, n, e, prev);
	}
	if (!raft_is_leader(&n->raft)) {
		n->handed_term = 0;
		return;
	}
	if (n->handed_term == term && rd->entries[0].index <= n->leader_handed)
		sim_fail(sim, "Leader Append-Only: leader n%llu of term %llu rewrote index %llu",
			 (unsigned long long)n->id, (unsigned long long)term,
			 (unsigned long long)rd->entries[0].index);
	n->handed_term = term;
	n->leader_handed = rd->entries[rd->entries_count - 1].index;
}

/* ----------------------------------------------------- committed log */

static void committed_append(struct sim *sim, struct sim_node *n, const struct raft_entry *e)
{
	struct sim_check *c = sim->check;
	struct check_committed *prev, *cur;
	uint64_t write_id = 0;
	uint32_t key = 0;

	if (n->witness_slot && e->type == RAFT_ENTRY_NORMAL) {
		sim_fail(sim, "witness n%llu committed index %llu before any node with data",
			 (unsigned long long)n->id, (unsigned long long)e->index);
		return;
	}
	c->committed =
	    grow_to(c->committed, &c->committed_cap, e->index + 1, sizeof(*c->committed));
	prev = &c->committed[e->index - 1];
	cur = &c->committed[e->index];
	*cur = (struct check_committed){.term = e->term,
					.hash = sim_entry_hash(e),
					.commit_term = raft_term(&n->raft),
					.type = e->type,
					.sm = prev->sm};
	sim_sm_apply(&cur->sm, e, cur->hash);
	c->committed_count = e->index;
	if (e->type != RAFT_ENTRY_NORMAL)
		return;
	sim_payload_decode(e, &write_id, &key);
	cur->write_id = write_id;
	if (write_id == 0 || write_id > c->writes_count) {
		sim_fail(sim, "committed index %llu holds unknown write %llu",
			 (unsigned long long)e->index, (unsigned long long)write_id);
		return;
	}
	if (c->writes[write_id].index != 0)
		sim_fail(sim, "write %llu committed twice: at index %llu and %llu",
			 (unsigned long long)write_id,
			 (unsigned long long)c->writes[write_id].index,
			 (unsigned long long)e->index);
	c->writes[write_id].index = e->index;
}

static void committed_compare(struct sim *sim, struct sim_node *n, const struct raft_entry *e)
{
	const struct check_committed *cur = &sim->check->committed[e->index];
	bool known = !(n->witness_slot && e->type == RAFT_ENTRY_NORMAL);

	if (cur->term != e->term || cur->type != e->type ||
	    (known && cur->hash != sim_entry_hash(e)))
		sim_fail(sim,
			 "committed entry changed: n%llu commits index %llu term %llu type %u, "
			 "committed before as term %llu type %u",
			 (unsigned long long)n->id, (unsigned long long)e->index,
			 (unsigned long long)e->term, e->type, (unsigned long long)cur->term,
			 cur->type);
}

void sim_check_commit(struct sim *sim, struct sim_node *n)
{
	struct sim_check *c = sim->check;
	uint64_t commit = raft_commit_index(&n->raft);

	for (uint64_t i = n->seen_commit + 1; i <= commit && !sim->failed; i++) {
		const struct raft_entry *e = raft_entry_at(&n->raft, i);

		if (e == NULL) {
			/* Compacted: covered by a snapshot, checked on install. */
			if (i > c->committed_count)
				sim_fail(sim, "n%llu commits index %llu that no node holds",
					 (unsigned long long)n->id, (unsigned long long)i);
			continue;
		}
		if (i <= c->committed_count)
			committed_compare(sim, n, e);
		else
			committed_append(sim, n, e);
	}
	if (commit > n->seen_commit)
		n->seen_commit = commit;
}

/* --------------------------------------------------- state machine */

void sim_check_apply(struct sim *sim, struct sim_node *n, const struct raft_entry *e)
{
	struct sim_check *c = sim->check;
	const struct check_committed *cur;

	if (e->index != n->sm.index + 1) {
		sim_fail(sim, "n%llu applies index %llu after %llu", (unsigned long long)n->id,
			 (unsigned long long)e->index, (unsigned long long)n->sm.index);
		return;
	}
	if (e->index > c->committed_count) {
		sim_fail(sim, "n%llu applies index %llu past the committed log (%llu)",
			 (unsigned long long)n->id, (unsigned long long)e->index,
			 (unsigned long long)c->committed_count);
		return;
	}
	committed_compare(sim, n, e);
	cur = &c->committed[e->index];
	if (n->witness_slot) {
		n->sm = cur->sm; /* A witness holds no payloads: take the reference state. */
		return;
	}
	sim_sm_apply(&n->sm, e, sim_entry_hash(e));
	if (n->sm.digest != cur->sm.digest)
		sim_fail(sim, "State Machine Safety: n%llu's state after index %llu differs",
			 (unsigned long long)n->id, (unsigned long long)e->index);
}

void sim_check_install(struct sim *sim, struct sim_node *n, const struct sim_sm *data)
{
	struct sim_check *c = sim->check;

	if (data->index > c->committed_count) {
		sim_fail(sim, "n%llu installs a snapshot at %llu past the committed log (%llu)",
			 (unsigned long long)n->id, (unsigned long long)data->index,
			 (unsigned long long)c->committed_count);
		return;
	}
	if (n->witness_slot)
		return;
	if (data->digest != c->committed[data->index].sm.digest ||
	    memcmp(data->values, c->committed[data->index].sm.values, sizeof(data->values)) != 0)
		sim_fail(sim,
			 "State Machine Safety: n%llu installs a snapshot at %llu that differs",
			 (unsigned long long)n->id, (unsigned long long)data->index);
}

/* ----------------------------------------------------------- clients */

uint64_t sim_check_write_new(struct sim *sim, uint32_t key)
{
	struct sim_check *c = sim->check;
	uint64_t id = ++c->writes_count;

	c->writes = grow_to(c->writes, &c->writes_cap, id + 1, sizeof(*c->writes));
	c->writes[id] = (struct check_write){.key = key};
	return id;
}

void sim_check_write_acked(struct sim *sim, struct sim_node *n, const struct sim_proposal *p)
{
	struct sim_check *c = sim->check;
	const struct check_committed *cur;

	if (p->index > c->committed_count) {
		sim_fail(sim, "n%llu acknowledged write %llu at uncommitted index %llu",
			 (unsigned long long)n->id, (unsigned long long)p->write_id,
			 (unsigned long long)p->index);
		return;
	}
	cur = &c->committed[p->index];
	if (cur->term != p->term || cur->write_id != p->write_id) {
		sim_fail(sim,
			 "acknowledged write %llu (index %llu term %llu) is not in the committed "
			 "log (it holds write %llu of term %llu)",
			 (unsigned long long)p->write_id, (unsigned long long)p->index,
			 (unsigned long long)p->term, (unsigned long long)cur->write_id,
			 (unsigned long long)cur->term);
		return;
	}
	c->writes[p->write_id].acked = true;
	if (p->index > c->acked_max)
		c->acked_max = p->index;
}

uint64_t sim_check_read_bound(const struct sim *sim)
{
	const struct sim_check *c = sim->check;

	return c->acked_max > c->read_max ? c->acked_max : c->read_max;
}

void sim_check_read_served(struct sim *sim, struct sim_node *n, const struct sim_read *rd,
			   uint64_t applied, uint64_t value)
{
	struct sim_check *c = sim->check;

	if (applied < rd->applied_min) {
		sim_fail(sim,
			 "Linearizability: n%llu served read %llu at index %llu, but a write or "
			 "read at index %llu completed before it was invoked",
			 (unsigned long long)n->id, (unsigned long long)rd->context,
			 (unsigned long long)applied, (unsigned long long)rd->applied_min);
		return;
	}
	if (applied > c->committed_count || c->committed[applied].sm.values[rd->key] != value) {
		sim_fail(sim,
			 "Linearizability: n%llu read key %u = %llu at index %llu: wrong value",
			 (unsigned long long)n->id, rd->key, (unsigned long long)value,
			 (unsigned long long)applied);
		return;
	}
	if (applied > c->read_max)
		c->read_max = applied;
}

/* -------------------------------------------------------- full scan */

/* Log Matching over n's whole in-memory log, and Leader Append-Only against
 * what the previous scan saw while n led the same term. */
static void scan_log(struct sim *sim, struct sim_node *n)
{
	const struct raft *r = &n->raft;
	uint64_t first = raft_first_index(r), last = raft_last_index(r);
	bool leading = raft_is_leader(r) && n->leader_term == raft_term(r);

	if (leading && last < n->shadow_last)
		sim_fail(sim, "Leader Append-Only: leader n%llu's log shrank from %llu to %llu",
			 (unsigned long long)n->id, (unsigned long long)n->shadow_last,
			 (unsigned long long)last);
	for (uint64_t i = first; i <= last && !sim->failed; i++) {
		const struct raft_entry *e = raft_entry_at(r, i);

		slot_check(sim, n, e, raft_term_at(r, i - 1));
		if (leading && i >= n->shadow_first && i <= n->shadow_last &&
		    n->shadow_terms[i - n->shadow_first] != e->term)
			sim_fail(sim, "Leader Append-Only: leader n%llu changed index %llu",
				 (unsigned long long)n->id, (unsigned long long)i);
	}
	if (!raft_is_leader(r)) {
		n->leader_term = 0;
		return;
	}
	n->leader_term = raft_term(r);
	n->shadow_first = first;
	n->shadow_last = last;
	n->shadow_terms =
	    grow_to(n->shadow_terms, &n->shadow_cap, last - first + 1, sizeof(*n->shadow_terms));
	for (uint64_t i = first; i <= last; i++)
		n->shadow_terms[i - first] = raft_term_at(r, i);
}

static void check_completeness(struct sim *sim, struct sim_node *n)
{
	const struct sim_check *c = sim->check;
	const struct raft *r = &n->raft;
	uint64_t term = raft_term(r), last = raft_last_index(r);

	for (uint64_t i = raft_first_index(r); i <= c->committed_count; i++) {
		const struct check_committed *cur = &c->committed[i];

		if (cur->commit_term >= term)
			continue;
		if (i > last || raft_term_at(r, i) != cur->term) {
			sim_fail(sim,
				 "Leader Completeness: leader n%llu of term %llu lacks index %llu "
				 "(term %llu) committed in term %llu",
				 (unsigned long long)n->id, (unsigned long long)term,
				 (unsigned long long)i, (unsigned long long)cur->term,
				 (unsigned long long)cur->commit_term);
			return;
		}
	}
}

void sim_check_step(struct sim *sim)
{
	for (uint32_t i = 0; i < sim->p.nodes && !sim->failed; i++) {
		struct sim_node *n = &sim->nodes[i];

		if (!n->up)
			continue;
		sim_check_commit(sim, n);
		scan_log(sim, n);
		if (raft_is_leader(&n->raft))
			check_completeness(sim, n);
	}
}
