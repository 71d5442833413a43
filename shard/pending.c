/* What callers wait on in a group: proposals (a ring, oldest first, settled
 * as their entries apply), reads (waiting for their read index, then for it
 * to apply), and the failing of all of it when the group stops. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

void pending_answer(fl_done_cb cb, void *arg, int rv, uint64_t result, uint64_t leader)
{
	if (cb)
		cb(arg, rv, result, leader);
}

void pending_fail_all(struct group *g, int rv)
{
	uint64_t leader = raft_leader(&g->raft);

	while (g->props_count > 0) {
		struct pending_prop *p = &g->props[g->props_head];

		pending_answer(p->cb, p->arg, rv, 0, leader);
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	for (uint32_t i = 0; i < g->reads_count; i++)
		pending_answer(g->reads[i].cb, g->reads[i].arg, rv, 0, leader);
	for (uint32_t i = 0; i < g->reads_apply_count; i++)
		pending_answer(g->reads_apply[i].cb, g->reads_apply[i].arg, rv, 0, leader);
	g->reads_count = g->reads_apply_count = 0;
	for (uint32_t i = 0; i < g->check_waits_count; i++)
		pending_answer(g->check_waits[i].cb, g->check_waits[i].arg, rv, 0, leader);
	g->check_waits_count = 0;
	if (g->rebuilding) {
		g->rebuilding = false;
		pending_answer(g->rebuild_cb, g->rebuild_arg, rv, 0, leader);
	}
}

int pending_props_reserve(struct group *g, uint32_t count)
{
	if (g->props_count + count > g->props_cap) {
		uint32_t cap = g->props_cap ? g->props_cap * 2 : 16;
		struct pending_prop *q;

		while (cap < g->props_count + count)
			cap *= 2;
		q = malloc(cap * sizeof(*q));
		if (q == NULL)
			return -ENOMEM;
		for (uint32_t i = 0; i < g->props_count; i++)
			q[i] = g->props[(g->props_head + i) % g->props_cap];
		free(g->props);
		g->props = q;
		g->props_cap = cap;
		g->props_head = 0;
	}
	return 0;
}

void pending_prop_push(struct group *g, struct pending_prop p)
{
	ASSERT(g->props_count < g->props_cap); /* Reserved: pending_props_reserve(). */
	if (g->props_count > 0) {
		const struct pending_prop *last =
		    &g->props[(g->props_head + g->props_count - 1) % g->props_cap];

		/* Proposed in order of (term, index): a later term's entry may sit
		 * below an older, not yet settled one that a new leader overwrote. */
		ASSERT(p.term >= last->term);
		ASSERT(p.term > last->term || p.index > last->index);
	}
	g->props[(g->props_head + g->props_count++) % g->props_cap] = p;
}

/* Entry index has been applied with term: settle the proposals up to it. */
/* An entry of term is committed, and the proposals left all lie beyond it:
 * those of an older term can never commit. Every later leader holds the
 * committed entry (§5.4.1), and Log Matching puts only entries of its term
 * or newer after it. Answer them now: a group that goes quiet after losing
 * its leader would never reach their indexes. */
static void pending_props_drop_older(struct group *g, uint64_t term)
{
	while (g->props_count > 0 && g->props[g->props_head].term < term) {
		struct pending_prop *p = &g->props[g->props_head];

		pending_answer(p->cb, p->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
}

uint64_t pending_props_settle(struct group *g, uint64_t index, uint64_t term, uint64_t result)
{
	uint64_t proposed_ns = 0;

	while (g->props_count > 0) {
		struct pending_prop *p = &g->props[g->props_head];

		if (p->index > index)
			break;
		if (p->index == index && p->term == term) {
			proposed_ns = p->proposed_ns;
			pending_answer(p->cb, p->arg, 0, result, raft_leader(&g->raft));
		} else
			pending_answer(p->cb, p->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	pending_props_drop_older(g, term);
	return proposed_ns;
}

/* The replica jumped to a snapshot at index (term): whether the proposals up
 * to there went into it, it cannot tell. */
void pending_props_skip(struct group *g, uint64_t index, uint64_t term)
{
	while (g->props_count > 0 && g->props[g->props_head].index <= index) {
		struct pending_prop *p = &g->props[g->props_head];

		pending_answer(p->cb, p->arg, ERR_INDETERMINATE, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	pending_props_drop_older(g, term);
}

/* A diverged replica serves no reads: its state is not the group's. */
int pending_read_rv(const struct group *g)
{
	return g->diverged ? ERR_DIVERGED : 0;
}

void pending_reads_settle(struct group *g, uint64_t applied)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->reads_apply_count; i++) {
		struct pending_read *r = &g->reads_apply[i];

		if (r->key <= applied)
			pending_answer(r->cb, r->arg, pending_read_rv(g), 0, raft_leader(&g->raft));
		else
			g->reads_apply[kept++] = *r;
	}
	g->reads_apply_count = kept;
}

void pending_reads_ready(struct group *g, const struct raft_ready *rd)
{
	for (uint32_t i = 0; i < rd->reads_count; i++) {
		const struct raft_read *r = &rd->reads[i];

		for (uint32_t j = 0; j < g->reads_count; j++) {
			struct pending_read p = g->reads[j];

			if (p.key != r->context)
				continue;
			g->reads[j] = g->reads[--g->reads_count];
			if (r->index == 0) {
				pending_answer(p.cb, p.arg, RAFT_ERR_NOT_LEADER, 0,
					       raft_leader(&g->raft));
			} else if (r->index <= g->raft.applied) {
				pending_answer(p.cb, p.arg, pending_read_rv(g), 0,
					       raft_leader(&g->raft));
			} else {
				struct pending_read *q =
				    array_grow(g->reads_apply, &g->reads_apply_cap,
					       g->reads_apply_count + 1, sizeof(*q), 8);

				if (q == NULL) {
					pending_answer(p.cb, p.arg, -ENOMEM, 0,
						       raft_leader(&g->raft));
					break;
				}
				g->reads_apply = q;
				g->reads_apply[g->reads_apply_count++] =
				    (struct pending_read){r->index, p.cb, p.arg, p.asked_ms};
			}
			break;
		}
	}
}

/* Fail the reads still waiting for their read index that were asked before
 * before_ms (UINT64_MAX: all). A follower forwards a read to the leader as
 * one message that nothing retransmits: when the message or its answer is
 * lost (a connection reset, a leader crash), or the leader changes, no
 * answer ever comes. Failing a read is always safe (the caller retries);
 * an answer that comes later finds no context and is ignored. */
void pending_reads_abandon(struct group *g, uint64_t before_ms)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->reads_count; i++) {
		struct pending_read p = g->reads[i];

		if (p.asked_ms < before_ms)
			pending_answer(p.cb, p.arg, RAFT_ERR_NOT_LEADER, 0, raft_leader(&g->raft));
		else
			g->reads[kept++] = p;
	}
	g->reads_count = kept;
}
