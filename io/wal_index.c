/* The per-group index of the WAL: which groups it knows and, for each, where
 * its live entries lie (runs: pieces of entries records, in index order),
 * its snapshot mark and its hard state. All in memory: rebuilt on open by
 * replaying every record, and kept up to date by every append, through the
 * same apply functions so that both paths produce the same state.
 *
 * Groups live in an open-addressing table keyed by group id (linear
 * probing, deletion by backward shift); each group's runs are a ring that
 * grows by doubling. Growth may fail with -ENOMEM before anything changes:
 * callers reserve runs before they encode a record. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "io/wal_internal.h"

/* Groups: a dense array (wal->groups[0 .. groups_count), no holes, grown by
 * half when full), found through an open-addressing table of slots keyed
 * by group id (linear probing, deletion by backward shift), each slot the
 * index of its group plus one (0: empty). An idle host keeps thousands of
 * groups, each costing its struct wal_group and a few bytes of slots: not
 * a struct per slot of a half-empty table. */

static uint32_t wal_group_home(const struct wal *wal, uint64_t group)
{
	return (uint32_t)(XXH3_64bits(&group, sizeof(group)) & (wal->slots_cap - 1));
}

/* The slot of group, or the empty slot where it would go. */
static uint32_t wal_group_slot(const struct wal *wal, uint64_t group)
{
	uint32_t mask = wal->slots_cap - 1;

	for (uint32_t i = wal_group_home(wal, group);; i = (i + 1) & mask) {
		uint32_t at = wal->slots[i];

		if (at == 0 || wal->groups[at - 1].group == group)
			return i;
	}
}

static int wal_slots_grow(struct wal *wal)
{
	uint32_t *old = wal->slots, old_cap = wal->slots_cap;
	uint32_t *slots = calloc((size_t)old_cap * 2, sizeof(*slots));

	if (slots == NULL)
		return -ENOMEM;
	wal->slots = slots;
	wal->slots_cap = old_cap * 2;
	for (uint32_t i = 0; i < wal->groups_count; i++)
		wal->slots[wal_group_slot(wal, wal->groups[i].group)] = i + 1;
	free(old);
	return 0;
}

static int wal_groups_grow(struct wal *wal)
{
	uint32_t cap = wal->groups_cap + wal->groups_cap / 2;
	struct wal_group *groups;

	if (cap > UINT32_MAX / 2)
		return -ENOMEM;
	groups = realloc(wal->groups, (size_t)cap * sizeof(*groups));
	if (groups == NULL)
		return -ENOMEM;
	wal->groups = groups;
	wal->groups_cap = cap;
	return 0;
}

int wal_index_init(struct wal *wal)
{
	wal->groups_count = 0;
	wal->groups_cap = 64;
	wal->slots_cap = 128;
	wal->groups = malloc(wal->groups_cap * sizeof(*wal->groups));
	wal->slots = calloc(wal->slots_cap, sizeof(*wal->slots));
	return wal->groups != NULL && wal->slots != NULL ? 0 : -ENOMEM;
}

void wal_index_deinit(struct wal *wal)
{
	for (uint32_t i = 0; wal->groups != NULL && i < wal->groups_count; i++)
		free(wal->groups[i].runs);
	free(wal->groups);
	free(wal->slots);
	wal->groups = NULL;
	wal->slots = NULL;
	wal->groups_cap = wal->groups_count = wal->slots_cap = 0;
}

void wal_index_group_clear(struct wal_group *g)
{
	g->runs_head = 0;
	g->runs_count = 0;
	g->live_size = 0;
	g->first_index = 1;
	g->last_index = 0;
	g->mark_index = 0;
	g->mark_term = 0;
	memset(&g->hard, 0, sizeof(g->hard));
	g->has_hard = false;
	g->hard_seq = 0;
	g->mark_seq = 0;
	g->gap_index = 0;
	g->gap_seq = 0;
	g->gap_offset = 0;
	g->damaged = false;
	g->damaged_index = 0;
	g->damaged_term = 0;
	g->damaged_seq = 0;
	g->damaged_offset = 0;
}

/* The group, created if missing. A tombstone stays a tombstone here. */
int wal_index_group_get(struct wal *wal, uint64_t group, struct wal_group **out)
{
	uint32_t slot = wal_group_slot(wal, group);
	struct wal_group *g;
	int rv;

	if (wal->slots[slot] == 0) {
		if ((wal->groups_count + 1) * 2 > wal->slots_cap) {
			rv = wal_slots_grow(wal);
			if (rv != 0)
				return rv;
			slot = wal_group_slot(wal, group);
		}
		if (wal->groups_count == wal->groups_cap && (rv = wal_groups_grow(wal)) != 0)
			return rv;
		g = &wal->groups[wal->groups_count];
		memset(g, 0, sizeof(*g));
		g->used = true;
		g->group = group;
		wal_index_group_clear(g);
		wal->slots[slot] = ++wal->groups_count;
	}
	*out = &wal->groups[wal->slots[slot] - 1];
	return 0;
}

void wal_index_group_delete(struct wal *wal, struct wal_group *g)
{
	uint32_t mask = wal->slots_cap - 1;
	uint32_t hole = wal_group_slot(wal, g->group);
	uint32_t at = (uint32_t)(g - wal->groups), last = wal->groups_count - 1;

	ASSERT(wal->slots[hole] == at + 1); /* g is in the table. */
	free(g->runs);
	wal->slots[hole] = 0;
	/* Backward shift: move later members of the probe chain into the hole
	 * when their home does not lie cyclically in (hole, i]. */
	for (uint32_t i = (hole + 1) & mask; wal->slots[i] != 0; i = (i + 1) & mask) {
		uint32_t home = wal_group_home(wal, wal->groups[wal->slots[i] - 1].group);
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);

		if (stays)
			continue;
		wal->slots[hole] = wal->slots[i];
		wal->slots[i] = 0;
		hole = i;
	}
	/* The last group moves into g's place in the array. */
	if (at != last) {
		wal->groups[at] = wal->groups[last];
		wal->slots[wal_group_slot(wal, wal->groups[at].group)] = at + 1;
	}
	memset(&wal->groups[last], 0, sizeof(wal->groups[last]));
	wal->groups_count--;
}

/* Runs: a ring per group, in index order, non-overlapping. */

struct wal_run *wal_index_run_at(const struct wal_group *g, uint32_t slot)
{
	return &g->runs[(g->runs_head + slot) & (g->runs_cap - 1)];
}

int wal_index_runs_reserve(struct wal_group *g, uint32_t more)
{
	/* Two runs first: an idle group's live log is a record or two. */
	uint32_t cap = g->runs_cap ? g->runs_cap : 2;
	struct wal_run *runs;

	if (g->runs_count + more <= g->runs_cap)
		return 0;
	while (cap < g->runs_count + more)
		cap *= 2;
	runs = malloc(sizeof(*runs) * cap);
	if (runs == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < g->runs_count; i++)
		runs[i] = *wal_index_run_at(g, i);
	free(g->runs);
	g->runs = runs;
	g->runs_cap = cap;
	g->runs_head = 0;
	return 0;
}

static void wal_runs_push(struct wal_group *g, const struct wal_run *run)
{
	ASSERT(g->runs_count < g->runs_cap); /* Reserved beforehand. */
	if (g->runs_count > 0) {
		const struct wal_run *prev = wal_index_run_at(g, g->runs_count - 1);

		/* Runs stay in index order and never overlap. */
		ASSERT(prev->first_index + prev->count <= run->first_index);
	}
	*wal_index_run_at(g, g->runs_count) = *run;
	g->runs_count++;
	g->live_size += run->size;
}

void wal_index_runs_clear(struct wal_group *g)
{
	g->runs_count = 0;
	g->runs_head = 0;
	g->live_size = 0;
}

/* Drop every entry at index or above (an overwrite starts there). */
static void wal_runs_truncate_from(struct wal_group *g, uint64_t index)
{
	while (g->runs_count > 0) {
		struct wal_run *run = wal_index_run_at(g, g->runs_count - 1);

		if (run->first_index >= index) {
			g->live_size -= run->size;
			g->runs_count--;
			continue;
		}
		if (run->first_index + run->count > index)
			run->count = (uint32_t)(index - run->first_index);
		break;
	}
}

/* Drop the runs whose entries are all at or below index. */
static void wal_runs_compact_to(struct wal_group *g, uint64_t index)
{
	while (g->runs_count > 0) {
		struct wal_run *run = wal_index_run_at(g, 0);

		if (run->first_index + run->count - 1 > index)
			break;
		g->live_size -= run->size;
		g->runs_head = (g->runs_head + 1) & (g->runs_cap - 1);
		g->runs_count--;
	}
}

/* The slot of the run holding index, or runs_count. */
uint32_t wal_index_runs_find(const struct wal_group *g, uint64_t index)
{
	uint32_t low = 0, high = g->runs_count;

	while (low < high) {
		uint32_t mid = low + (high - low) / 2;
		const struct wal_run *run = wal_index_run_at(g, mid);

		if (index < run->first_index)
			high = mid;
		else if (index >= run->first_index + run->count)
			low = mid + 1;
		else
			return mid;
	}
	return g->runs_count;
}

bool wal_index_term_at(const struct wal_group *g, uint64_t index, uint64_t *term)
{
	uint32_t slot;

	if (index == g->mark_index && index + 1 == g->first_index) {
		*term = g->mark_term;
		return true;
	}
	if (index < g->first_index || index > g->last_index)
		return false;
	slot = wal_index_runs_find(g, index);
	if (slot == g->runs_count)
		return false;
	*term = wal_index_run_at(g, slot)->term;
	return true;
}

/* Applying records to group state. The same functions serve appends and
 * recovery, so that the state rebuilt on open is exactly the state the
 * appends produced. */

/* Put a copied run in place of the live entries it covers, splitting the
 * runs it overlaps, without touching entries after it. */
static int wal_runs_put_copy(struct wal_group *g, const struct wal_run *run)
{
	uint64_t lo = run->first_index, hi = run->first_index + run->count - 1;
	uint32_t cap = 4, n = 0;
	struct wal_run *out;
	bool placed = false;

	while (cap < g->runs_count + 2)
		cap *= 2;
	out = malloc(sizeof(*out) * cap);
	if (out == NULL)
		return -ENOMEM;
	g->live_size = 0;
	for (uint32_t i = 0; i < g->runs_count; i++) {
		struct wal_run r = *wal_index_run_at(g, i);
		uint64_t r_lo = r.first_index, r_hi = r.first_index + r.count - 1;

		if (r_hi < lo || r_lo > hi) {
			if (!placed && r_lo > hi) {
				out[n++] = *run;
				placed = true;
			}
			out[n++] = r;
			continue;
		}
		if (r_lo < lo) {
			out[n] = r;
			out[n++].count = (uint32_t)(lo - r_lo);
		}
		if (!placed) {
			out[n++] = *run;
			placed = true;
		}
		if (r_hi > hi) {
			out[n] = r;
			out[n].first_index = hi + 1;
			out[n++].count = (uint32_t)(r_hi - hi);
		}
	}
	if (!placed)
		out[n++] = *run;
	ASSERT(n <= cap); /* A copy splits at most one run in two. */
	for (uint32_t i = 0; i < n; i++)
		g->live_size += out[i].size; /* A split record counts twice: an estimate. */
	free(g->runs);
	g->runs = out;
	g->runs_cap = cap;
	g->runs_head = 0;
	g->runs_count = n;
	return 0;
}

int wal_index_apply_entries(struct wal_group *g, const struct wal_run *record_run, bool copy,
			    bool recovering)
{
	struct wal_run run = *record_run;

	ASSERT(run.count >= 1);
	ASSERT(run.record_index <= run.first_index);
	ASSERT(run.first_index >= 1);                      /* Indexes start at 1. */
	ASSERT(run.first_index <= UINT64_MAX - run.count); /* The next index exists. */
	g->removed = false;
	if (run.first_index <= g->mark_index) {
		/* Only on recovery (appends refuse it): a record older than the
		 * mark, from a segment whose deletion did not reach the disk. */
		uint64_t dead = g->mark_index + 1 - run.first_index;

		ASSERT(recovering);
		if (dead >= run.count)
			return 0;
		run.first_index += dead;
		run.count -= (uint32_t)dead;
	}
	if (run.first_index > g->last_index + 1) {
		/* A hole. Appends refuse it. On recovery it is corruption unless
		 * later records fill it (copies moved forward by compaction) or
		 * a later snapshot mark covers it: the end of recovery checks
		 * that the live log starts right after the mark. */
		ASSERT(recovering);
		g->gap_index = run.first_index;
		g->gap_seq = run.seq;
		g->gap_offset = run.offset;
		wal_index_runs_clear(g);
		g->first_index = run.first_index;
	} else if (copy) {
		uint64_t last = run.first_index + run.count - 1;

		if (g->last_index < last)
			g->last_index = last;
		if (run.first_index < g->first_index)
			g->first_index = run.first_index; /* Fills (part of) a hole. */
		return wal_runs_put_copy(g, &run);
	} else {
		/* §5.3: "If an existing entry conflicts with a new one (same index
		 * but different terms), delete the existing entry and all that
		 * follow it." The caller decided; the WAL replaces the suffix. */
		wal_runs_truncate_from(g, run.first_index);
		if (run.first_index < g->first_index)
			g->first_index = run.first_index; /* Recovery: below a hole. */
	}
	wal_runs_push(g, &run);
	g->last_index = run.first_index + run.count - 1;
	ASSERT(g->first_index <= g->last_index); /* The run is live. */
	return 0;
}

void wal_index_apply_mark(struct wal_group *g, uint64_t index, uint64_t term, bool keep,
			  uint64_t seq)
{
	ASSERT(index < UINT64_MAX); /* The index after the mark exists. */
	g->removed = false;
	if (index < g->mark_index)
		return; /* Recovery only: a stale mark from an undeleted segment. */
	if (keep) {
		wal_runs_compact_to(g, index);
		if (g->last_index < index)
			g->last_index = index;
		/* Normally first_index becomes index + 1. On recovery a hole
		 * after the mark stays visible: first_index stays above it. */
		if (g->first_index < index + 1)
			g->first_index = index + 1;
	} else {
		/* §7: a snapshot that does not match the log replaces all of it. */
		wal_index_runs_clear(g);
		g->last_index = index;
		g->first_index = index + 1;
	}
	g->mark_index = index;
	g->mark_term = term;
	g->mark_seq = seq;
}

/* A reset: the log is the mark alone, whatever came before (a repair).
 * The hard state stays: term and vote must never go back. */
void wal_index_apply_reset(struct wal_group *g, uint64_t index, uint64_t term, uint64_t seq)
{
	struct wal_hard hard = g->hard;
	bool has_hard = g->has_hard;
	uint64_t hard_seq = g->hard_seq;

	wal_index_group_clear(g);
	g->removed = false;
	g->hard = hard;
	g->has_hard = has_hard;
	g->hard_seq = hard_seq;
	wal_index_apply_mark(g, index, term, false, seq);
}

void wal_index_apply_hard(struct wal_group *g, const struct wal_hard *hard, uint64_t seq)
{
	g->removed = false;
	g->hard = *hard;
	g->has_hard = true;
	g->hard_seq = seq;
}

void wal_index_apply_removed(struct wal_group *g, uint64_t seq)
{
	wal_index_group_clear(g);
	g->removed = true;
	g->removed_seq = seq;
}

/* Lookups */

const struct wal_group *wal_group_find(const struct wal *wal, uint64_t group)
{
	uint32_t at = wal->slots[wal_group_slot(wal, group)];

	return at != 0 ? &wal->groups[at - 1] : NULL;
}

const struct wal_group *wal_group_next(const struct wal *wal, const struct wal_group *prev)
{
	uint32_t i = prev ? (uint32_t)(prev - wal->groups) + 1 : 0;

	return i < wal->groups_count ? &wal->groups[i] : NULL;
}

int wal_term(const struct wal *wal, uint64_t group, uint64_t index, uint64_t *term)
{
	const struct wal_group *g = wal_group_find(wal, group);

	if (g == NULL || g->removed)
		return -ENOENT;
	return wal_index_term_at(g, index, term) ? 0 : -ERANGE;
}

bool wal_index_is_sane(const struct wal_group *g)
{
	uint64_t covered = g->first_index, live_size = 0;

	if (g->removed)
		return g->runs_count == 0;
	if (g->first_index != g->mark_index + 1 || g->last_index < g->mark_index)
		return false;
	if (g->runs_count == 0)
		return g->last_index == g->mark_index;
	for (uint32_t i = 0; i < g->runs_count; i++) {
		const struct wal_run *run = wal_index_run_at(g, i);

		if (run->count == 0 || run->record_index > run->first_index)
			return false;
		if (i > 0 && run->first_index < covered)
			return false; /* Out of order, or overlapping. */
		if (run->first_index > covered && covered <= g->last_index)
			return false; /* A hole in the live log. */
		covered = run->first_index + run->count;
		live_size += run->size;
	}
	return covered == g->last_index + 1 && live_size == g->live_size;
}
