/* Whole-node deterministic simulation (flotilla-nodesim): 3 or 5 nodes, each
 * of 1 or 2 real shards (the code of shard/, io/ and engine/ unchanged)
 * on the simulated loop backend (io/loop_sim.h), in one thread and virtual
 * time, with faults drawn from one seed.
 *
 * A run of one seed is:
 *   1. start the nodes in a fresh directory, create a handful of groups;
 *   2. the fault phase: clients propose unique values and read, while the
 *      world delays messages, resets connections, partitions nodes (both
 *      ways or one), pauses and crashes nodes (unsynced writes lost or torn),
 *      slows disks and fails them (fdatasync or write EIO, ENOSPC: the node
 *      is crashed and restarted, as an operator would), and flips bits in the
 *      closed WAL segments, the last batch of the tail segment (damage there
 *      is no torn write) or snapshot files of a stopped node, or loses a
 *      whole segment file of it (deleted, zeroed, truncated, replaced by
 *      foreign bytes), on a minority of nodes: the damaged groups repair
 *      from their peers;
 *   3. heal everything, restart the nodes that are down (not the corrupt
 *      ones), and require a new proposal in every group to commit within a
 *      bounded virtual time, then every live replica to apply every
 *      acknowledged proposal.
 * Checks, after every round of turns: at most one leader per term per group;
 * no node holds two votes in one term of a group (votes it held durably are
 * remembered across its crashes and losses); no node holds less than a
 * committed index it held durably unless the group repairs (check_held);
 * every entry applied at an index is the one every other replica applied
 * there (so applied sequences are prefixes of one another), no value is
 * applied at two indexes, no replica applies an index twice, an acknowledged
 * proposal is the entry at the index it was acknowledged with, and a read
 * that completes sees every proposal acknowledged before it was asked.
 * A violation prints the seed and `reproduce: flotilla-nodesim --seed=N`;
 * --verbose traces the run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/err.h"
#include "flotilla.h"
#include "io/loop_sim.h"
#include "io/segment.h"
#include "shard/shard.h"

enum {
	NODES_MAX = 5,
	SHARDS_MAX = 2,
	GROUPS_MAX = 8,
	INFLIGHT_MAX = 8, /* Client operations outstanding per group. */
	TURN_ROUNDS_MAX = 64,
	ELECTION_TIMEOUT_MS = 300, /* Of every node's shards. */
	HEARTBEAT_INTERVAL_MS = 60,
};

/* A seed takes about ten thousand steps per second of virtual time; a run that
 * takes this many makes no progress in virtual time (a livelock). */
#define STEPS_MAX ((uint64_t)20000000)

#define PAYLOAD_MAGIC ((uint64_t)0x6e6f646573696d31)
#define MS            ((uint64_t)1000000)
#define SIM_START_NS  ((uint64_t)1000000000000)

struct applied {
	uint64_t last_index; /* Highest index applied (or restored). */
	uint64_t *pairs;     /* (index, value) of every value applied, in order. */
	uint32_t count, cap; /* Pairs; u64s allocated. */
};

struct node {
	struct world *w;
	uint32_t idx;
	uint64_t id;
	bool up, corrupt, flipped;
	uint64_t held[GROUPS_MAX]; /* Per group slot: see check_held(). */
	uint64_t paused_until_ns;
	uint64_t restart_ns; /* Down: when to restart (0: not planned). */
	uint64_t crash_ns;   /* Crash once a write is unsynced, or at this time. */
	uint32_t create_missing, create_asked; /* Bits by group slot. */
	bool flip_on_crash;
	struct shard *shards[SHARDS_MAX];
	bool due[SHARDS_MAX];
	struct applied sm[GROUPS_MAX];
	/* Term -> 1 + the vote this node durably held in that term, by group
	 * slot (0: none seen): kept across crashes, to catch a second vote. */
	uint64_t *votes[GROUPS_MAX];
	uint64_t votes_cap[GROUPS_MAX];
	char dir[512];
};

struct group_ref {
	uint64_t id;
	uint64_t *at; /* Index -> value; 0: nothing seen there yet; 1: an empty entry. */
	uint64_t at_cap;
	uint64_t max_acked; /* Highest index acknowledged to a client. */
	uint32_t *leaders;  /* Term -> node id + 1 that led it (0: none seen). */
	uint64_t leaders_cap;
	uint32_t hint; /* Node index the client tries first. */
	uint32_t inflight;
	uint64_t acked, proposed, reads, reads_ok;
};

struct world {
	uint64_t seed;
	bool verbose, failed, no_faults;
	char why[512];
	double fail_ms; /* Virtual time of the violation. */
	struct loop_sim *sim;
	uint32_t nodes_count, shards_count, groups_count;
	struct node nodes[NODES_MAX];
	struct group_ref groups[GROUPS_MAX];
	uint64_t *value_index; /* Value -> the index it was applied at. */
	uint64_t values, value_cap;
	char root[256];
	uint64_t fault_end_ns, next_fault_ns, next_client_ns;
	uint64_t snapshot_entries;
	uint32_t snapshot_ratio_percent;
	bool lease_read, quiesce;
	uint32_t check_entries;
	/* Counters for the summary. */
	struct op *pending;
	uint64_t steps; /* world_step() calls: bounded, see STEPS_MAX. */
	uint64_t crashes, restarts, wal_failures, pauses, partitions, resets, flips,
	    corrupt_refusals, segments_lost, tail_flips;
};

/* Sums over the seeds of one run, for tools/sim-soak. */
static struct {
	uint64_t crashes, restarts, wal_failures, pauses, partitions, resets, flips, refused;
	uint64_t segments_lost, tail_flips;
	uint64_t writes_lost, writes_torn, eio, enospc, stalls;
	uint64_t proposed, acked, reads, reads_ok, virtual_ms;
} total;

static void fail(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct world *w, const char *fmt, ...)
{
	va_list ap;

	if (w->failed)
		return;
	w->failed = true;
	w->fail_ms = w->sim ? (double)(loop_sim_now_ns(w->sim) - SIM_START_NS) / 1e6 : 0;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
}

static void trace(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace(struct world *w, const char *fmt, ...)
{
	va_list ap;

	if (!w->verbose)
		return;
	fprintf(stderr, "[%10.3f ms] ", (double)(loop_sim_now_ns(w->sim) - SIM_START_NS) / 1e6);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t rnd(struct world *w)
{
	return loop_sim_rand(w->sim);
}

static uint64_t between(struct world *w, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + rnd(w) % (hi - lo + 1);
}

static uint64_t now(struct world *w)
{
	return loop_sim_now_ns(w->sim);
}

static uint32_t shard_of(const struct world *w, uint64_t group)
{
	return (uint32_t)(XXH3_64bits(&group, sizeof(group)) % w->shards_count);
}

static int group_slot(const struct world *w, uint64_t group)
{
	for (uint32_t i = 0; i < w->groups_count; i++)
		if (w->groups[i].id == group)
			return (int)i;
	return -1;
}

static void *grow(void *p, uint64_t *cap, uint64_t need, size_t elem)
{
	uint64_t c = *cap ? *cap : 64;
	uint8_t *q;

	if (need <= *cap)
		return p;
	while (c < need)
		c *= 2;
	q = realloc(p, c * elem);
	if (q == NULL)
		abort();
	memset(q + *cap * elem, 0, (c - *cap) * elem);
	*cap = c;
	return q;
}

/* ------------------------------------------------------ the references */

/* The entry every replica must have at index of group: the first applied
 * there sets it. value 1 stands for an entry with no client value. */
static void ref_check(struct world *w, struct node *n, struct group_ref *g, uint64_t index,
		      uint64_t value)
{
	g->at = grow(g->at, &g->at_cap, index + 1, sizeof(*g->at));
	if (g->at[index] == 0) {
		g->at[index] = value;
		if (value > 1) {
			w->value_index =
			    grow(w->value_index, &w->value_cap, value + 1, sizeof(*w->value_index));
			if (w->value_index[value] != 0 && w->value_index[value] != index)
				fail(w,
				     "group %" PRIu64 ": value %" PRIu64
				     " applied at index %" PRIu64 " and at index %" PRIu64,
				     g->id, value, w->value_index[value], index);
			w->value_index[value] = index;
		}
	} else if (g->at[index] != value) {
		fail(w,
		     "group %" PRIu64 ": node %" PRIu64 " applied %" PRIu64 " at index %" PRIu64
		     " where another replica applied %" PRIu64,
		     g->id, n->id, value, index, g->at[index]);
	}
}

static void sm_record(struct world *w, struct node *n, int slot, uint64_t index, uint64_t value)
{
	struct applied *a = &n->sm[slot];
	uint64_t cap = a->cap;

	if (index <= a->last_index) {
		fail(w,
		     "group %" PRIu64 ": node %" PRIu64 " applied index %" PRIu64 " after %" PRIu64,
		     w->groups[slot].id, n->id, index, a->last_index);
		return;
	}
	a->last_index = index;
	if (value <= 1)
		return;
	a->pairs = grow(a->pairs, &cap, (uint64_t)a->count * 2 + 2, sizeof(*a->pairs));
	a->cap = (uint32_t)cap;
	a->pairs[a->count * 2] = index;
	a->pairs[a->count * 2 + 1] = value;
	a->count++;
}

/* ---------------------------------------------------- the state machine */

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct node *n = ctx;
	struct world *w = n->w;
	int slot = group_slot(w, group);

	for (uint32_t i = 0; i < count; i++) {
		const struct fl_entry *e = &entries[i];
		uint64_t magic, value = 1;

		results[i] = e->index;
		if (slot < 0) {
			fail(w, "node %" PRIu64 " applied an entry of unknown group %" PRIu64,
			     n->id, group);
			return;
		}
		if (e->size == 16) {
			memcpy(&magic, e->data, 8);
			memcpy(&value, (const uint8_t *)e->data + 8, 8);
			if (magic != PAYLOAD_MAGIC || value <= 1)
				fail(w,
				     "group %" PRIu64 ": node %" PRIu64
				     " applied a corrupt entry at "
				     "index %" PRIu64,
				     group, n->id, e->index);
		} else if (e->size != 0) {
			fail(w,
			     "group %" PRIu64 ": node %" PRIu64
			     " applied %u bytes at index %" PRIu64,
			     group, n->id, e->size, e->index);
		}
		ref_check(w, n, &w->groups[slot], e->index, value);
		sm_record(w, n, slot, e->index, value);
	}
}

/* The state's digest for consistency checks: every (index, value) applied. */
static uint64_t sm_digest(void *ctx, uint64_t group)
{
	struct node *n = ctx;
	int slot = group_slot(n->w, group);

	if (slot < 0 || n->sm[slot].count == 0)
		return 0;
	return XXH3_64bits(n->sm[slot].pairs, (size_t)n->sm[slot].count * 16);
}

/* A check found this replica's state differs from the leader's: the entry
 * checks above would have failed first if it did, so the check is wrong. */
static void sm_diverged(void *ctx, uint64_t group, uint64_t index, uint64_t local, uint64_t leader)
{
	struct node *n = ctx;

	fail(n->w,
	     "group %" PRIu64 ": node %" PRIu64 " told it diverged at index %" PRIu64
	     " (digest %016" PRIx64 ", the leader's %016" PRIx64 ")",
	     group, n->id, index, local, leader);
}

/* SNAPSHOT: u64 last index, u64 count, then count (index, value) pairs. */
static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *wr)
{
	struct node *n = ctx;
	int slot = group_slot(n->w, group);
	struct applied *a;
	uint64_t head[2];
	int rv;

	if (slot < 0)
		return -EINVAL;
	a = &n->sm[slot];
	head[0] = a->last_index;
	head[1] = a->count;
	rv = fl_snapshot_write(wr, head, sizeof(head));
	if (rv == 0 && a->count > 0)
		rv = fl_snapshot_write(wr, a->pairs, (size_t)a->count * 16);
	return rv;
}

static int read_full(struct fl_snapshot_reader *r, void *buf, size_t size)
{
	size_t done = 0;

	while (done < size) {
		long n = fl_snapshot_read(r, (uint8_t *)buf + done, size - done);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct node *n = ctx;
	struct world *w = n->w;
	int slot = group_slot(w, group);
	uint64_t head[2], *pairs;
	int rv;

	if (slot < 0)
		return -EINVAL;
	rv = read_full(r, head, sizeof(head));
	if (rv != 0)
		return rv;
	if (head[1] > (1u << 24))
		return -EIO;
	pairs = malloc(head[1] * 16 + 16);
	if (pairs == NULL)
		return -ENOMEM;
	rv = read_full(r, pairs, head[1] * 16);
	if (rv != 0) {
		free(pairs);
		return rv;
	}
	/* What a snapshot holds was applied somewhere first: it must agree. */
	for (uint64_t i = 0; i < head[1]; i++)
		ref_check(w, n, &w->groups[slot], pairs[2 * i], pairs[2 * i + 1]);
	free(n->sm[slot].pairs);
	n->sm[slot] =
	    (struct applied){.last_index = head[0],
			     .pairs = pairs,
			     .count = (uint32_t)head[1],
			     .cap = (uint32_t)(head[1] * 2 + 2)}; /* u64s, as grow() counts */
	trace(w, "node %" PRIu64 " group %" PRIu64 ": restored a snapshot at %" PRIu64, n->id,
	      group, head[0]);
	return 0;
}

/* ------------------------------------------------------------- clients */

struct op {
	struct world *w;
	uint32_t node, slot;
	uint64_t value;     /* Proposal; 0 for a read. */
	uint64_t min_index; /* Read: acknowledged before it was asked. */
	uint64_t node_id;
	bool heal; /* A liveness proposal of the heal phase. */
	uint64_t asked_ns;
	struct op *prev, *next; /* In the world's list of pending operations. */
};

static struct shard_req *req_new(uint32_t type, uint64_t group, uint32_t size, fl_done_cb cb,
				 void *arg)
{
	struct shard_req *req = calloc(1, sizeof(*req) + size);

	if (req == NULL)
		abort();
	req->type = type;
	req->group = group;
	req->cb = cb;
	req->arg = arg;
	req->size = size;
	req->fd = -1;
	return req;
}

static void submit(struct world *w, struct node *n, struct shard_req *req)
{
	int rv = shard_submit(n->shards[shard_of(w, req->group)], req);

	if (rv != 0) {
		if (req->cb)
			req->cb(req->arg, rv, 0, 0);
		free(req);
	}
}

static void leader_hint(struct world *w, struct group_ref *g, uint64_t leader)
{
	if (leader >= 1 && leader <= w->nodes_count)
		g->hint = (uint32_t)(leader - 1);
	else
		g->hint = (uint32_t)between(w, 0, w->nodes_count - 1);
}

static void op_unlink(struct op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		op->w->pending = op->next;
	if (op->next)
		op->next->prev = op->prev;
}

static void propose_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct op *op = arg;
	struct world *w = op->w;
	struct group_ref *g = &w->groups[op->slot];

	op_unlink(op);
	g->inflight--;
	if (rv == 0) {
		/* result is the index the state machine applied it at. */
		if (result >= g->at_cap || g->at[result] != op->value)
			fail(w,
			     "group %" PRIu64 ": value %" PRIu64 " acknowledged at index %" PRIu64
			     " which holds %" PRIu64,
			     g->id, op->value, result, result < g->at_cap ? g->at[result] : 0);
		if (result > g->max_acked)
			g->max_acked = result;
		g->acked++;
		trace(w, "group %" PRIu64 ": value %" PRIu64 " acknowledged at %" PRIu64, g->id,
		      op->value, result);
	} else {
		leader_hint(w, g, leader);
	}
	free(op);
}

static void read_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct op *op = arg;
	struct world *w = op->w;
	struct group_ref *g = &w->groups[op->slot];
	struct node *n = &w->nodes[op->node];

	(void)result;
	op_unlink(op);
	g->inflight--;
	if (rv == 0) {
		g->reads_ok++;
		if (n->sm[op->slot].last_index < op->min_index)
			fail(w,
			     "group %" PRIu64 ": a read on node %" PRIu64
			     " completed with index %" PRIu64 " applied, but %" PRIu64
			     " was acknowledged before it was asked",
			     g->id, n->id, n->sm[op->slot].last_index, op->min_index);
	} else {
		leader_hint(w, g, leader);
	}
	free(op);
}

static bool node_runs(const struct world *w, const struct node *n)
{
	return n->up && n->paused_until_ns <= loop_sim_now_ns(w->sim);
}

/* One client operation on the group at slot, asked of node target. */
static void client_submit(struct world *w, uint32_t slot, uint32_t target, bool read, bool heal)
{
	struct group_ref *g = &w->groups[slot];
	struct node *n = &w->nodes[target];
	struct op *op;

	if (g->inflight >= INFLIGHT_MAX)
		return;
	if (!n->up) {
		g->hint = (uint32_t)between(w, 0, w->nodes_count - 1);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		abort();
	*op = (struct op){.w = w,
			  .node = target,
			  .slot = slot,
			  .node_id = n->id,
			  .heal = heal,
			  .asked_ns = now(w),
			  .next = w->pending};
	if (w->pending)
		w->pending->prev = op;
	w->pending = op;
	g->inflight++;
	if (read) {
		op->min_index = g->max_acked;
		g->reads++;
		submit(w, n, req_new(SHARD_REQ_READ, g->id, 0, read_done, op));
		return;
	}
	{
		struct shard_req *req = req_new(SHARD_REQ_PROPOSE, g->id, 16, propose_done, op);
		uint64_t magic = PAYLOAD_MAGIC;

		op->value = ++w->values + 1; /* 0 and 1 are taken: see ref_check(). */
		memcpy(req->data, &magic, 8);
		memcpy(req->data + 8, &op->value, 8);
		g->proposed++;
		submit(w, n, req);
	}
}

/* One client operation on a random group: a proposal (mostly) or a read. */
static void client_step(struct world *w, bool heal)
{
	uint32_t slot = (uint32_t)between(w, 0, w->groups_count - 1);
	uint32_t target =
	    rnd(w) % 4 ? w->groups[slot].hint : (uint32_t)between(w, 0, w->nodes_count - 1);
	bool read = !heal && rnd(w) % 4 == 0;

	client_submit(w, slot, target, read, heal);
}

/* --------------------------------------------------------------- nodes */

static void dial(void *arg, uint64_t node, uint32_t shard_index, uint64_t peer)
{
	struct world *w = arg;
	struct node *a = &w->nodes[node - 1], *b;
	struct shard_req *out;
	int fa, fb, rv;

	if (peer < 1 || peer > w->nodes_count)
		return;
	b = &w->nodes[peer - 1];
	out = req_new(SHARD_REQ_DIAL_FAILED, 0, 0, NULL, NULL);
	out->member = peer;
	if (!b->up) {
		out->fd = ECONNREFUSED;
	} else if (loop_sim_is_blocked(w->sim, node, peer) ||
		   loop_sim_is_blocked(w->sim, peer, node)) {
		out->fd = ETIMEDOUT;
	} else {
		rv = loop_sim_socketpair(shard_sim_loop(a->shards[shard_index]),
					 shard_sim_loop(b->shards[shard_index]), &fa, &fb);
		if (rv != 0) {
			out->fd = -rv;
		} else {
			struct shard_req *in = req_new(SHARD_REQ_CONN, 0, 0, NULL, NULL);

			out->type = SHARD_REQ_CONN;
			out->fd = fa;
			out->outgoing = true;
			in->member = node;
			in->fd = fb;
			if (shard_submit(b->shards[shard_index], in) != 0) {
				close(fb);
				free(in);
			}
		}
	}
	if (shard_submit(a->shards[shard_index], out) != 0) {
		if (out->type == SHARD_REQ_CONN)
			close(out->fd);
		free(out);
	}
}

static void sm_reset(struct node *n)
{
	for (uint32_t i = 0; i < GROUPS_MAX; i++) {
		free(n->sm[i].pairs);
		n->sm[i] = (struct applied){0};
	}
}

struct create_op {
	struct node *n;
	uint32_t slot;
};

static void create_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct create_op *op = arg;

	(void)result;
	(void)leader;
	op->n->create_asked &= ~(1u << op->slot);
	if (rv == 0 || rv == FL_ERR_GROUP_EXISTS)
		op->n->create_missing &= ~(1u << op->slot);
	free(op);
}

/* Ask n to create the groups it does not host yet (a create may be refused
 * for a while, as by a full disk: asked again until it is done). */
static void groups_create(struct world *w, struct node *n)
{
	for (uint32_t i = 0; i < w->groups_count; i++) {
		struct create_op *op;
		struct shard_req *req;
		uint64_t *members;

		if (!(n->create_missing & (1u << i)) || (n->create_asked & (1u << i)))
			continue;
		op = malloc(sizeof(*op));
		if (op == NULL)
			abort();
		*op = (struct create_op){n, i};
		req = req_new(SHARD_REQ_GROUP_CREATE, w->groups[i].id,
			      (uint32_t)(w->nodes_count * sizeof(uint64_t)), create_done, op);
		members = (uint64_t *)req->data;
		for (uint32_t k = 0; k < w->nodes_count; k++)
			members[k] = w->nodes[k].id;
		req->size = w->nodes_count;
		n->create_asked |= 1u << i;
		submit(w, n, req);
	}
}

/* Start every shard of n from its directory. Returns 0, or the first
 * shard's error (WAL_ERR_CORRUPT: a flipped bit was refused). */
static int node_start(struct world *w, struct node *n)
{
	uint64_t peers[NODES_MAX];
	uint32_t peers_count = 0;
	char why[512];
	int rv = 0;

	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].id != n->id)
			peers[peers_count++] = w->nodes[i].id;
	sm_reset(n);
	for (uint32_t j = 0; j < w->shards_count; j++) {
		struct shard_config sc = {
		    .node_id = n->id,
		    .log = {.node_id = n->id},
		    .cluster_id = 7,
		    .shard_index = j,
		    .shards_count = w->shards_count,
		    .tick_ms = 10,
		    .election_timeout_ms = ELECTION_TIMEOUT_MS,
		    .heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS,
		    .entry_size_max = 256,
		    .inbox_max = 4096,
		    .wal_segment_size = 64 << 10,
		    .wal_batch_size = 16 << 10,
		    .snapshot_entries = (uint32_t)w->snapshot_entries,
		    .snapshot_ratio_percent = w->snapshot_ratio_percent,
		    .lease_read = w->lease_read,
		    .quiesce = w->quiesce,
		    .check_entries = w->check_entries,
		    .sm = {.apply = sm_apply,
			   .save = sm_save,
			   .restore = sm_restore,
			   .digest = sm_digest,
			   .diverged = sm_diverged,
			   .ctx = n},
		    .peers = peers,
		    .peers_count = peers_count,
		    .sim = w->sim,
		    .dial = dial,
		    .dial_arg = w,
		};

		snprintf(sc.wal_dir, sizeof(sc.wal_dir), "%s/shard-%u", n->dir, j);
		rv = shard_start(&n->shards[j], &sc, why, sizeof(why));
		if (rv != 0) {
			trace(w, "node %" PRIu64 " shard %u cannot start: %s (%s)", n->id, j, why,
			      err_str(rv));
			loop_sim_crash(w->sim, n->id);
			while (j-- > 0) {
				shard_crash(n->shards[j]);
				n->shards[j] = NULL;
			}
			return rv;
		}
		n->due[j] = true;
	}
	n->up = true;
	n->restart_ns = 0;
	/* Create every group; those recovered from the WAL answer that they
	 * exist. One lost before its creation was durable is created again. */
	n->create_missing = (1u << w->groups_count) - 1;
	n->create_asked = 0;
	groups_create(w, n);
	return 0;
}

static void node_crash(struct world *w, struct node *n, const char *why)
{
	trace(w, "node %" PRIu64 " crashes (%s)", n->id, why);
	loop_sim_crash(w->sim, n->id);
	for (uint32_t j = 0; j < w->shards_count; j++) {
		shard_crash(n->shards[j]);
		n->shards[j] = NULL;
	}
	n->up = false;
	n->paused_until_ns = 0;
	n->crash_ns = 0;
	sm_reset(n);
	w->crashes++;
}

/* Flip one bit at a random offset in from..to - 1 of the file at path. */
static bool file_flip_in(struct world *w, struct node *n, const char *path, uint64_t from,
			 uint64_t to)
{
	struct stat st;
	bool flipped = false;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > from && to > from) {
		uint64_t off =
		    between(w, from, ((uint64_t)st.st_size < to ? (uint64_t)st.st_size : to) - 1);
		uint8_t byte;

		if (pread(fd, &byte, 1, (off_t)off) == 1) {
			byte ^= (uint8_t)(1u << between(w, 0, 7));
			flipped = pwrite(fd, &byte, 1, (off_t)off) == 1;
		}
		if (flipped)
			trace(w, "node %" PRIu64 ": bit flipped in %s at %" PRIu64, n->id, path,
			      off);
	}
	close(fd);
	return flipped;
}

/* Flip one bit at a random offset below limit of the file at path. */
static bool file_flip(struct world *w, struct node *n, const char *path, uint64_t limit)
{
	return file_flip_in(w, n, path, 0, limit);
}

/* Lose the segment file at path whole: deleted, zeroed, truncated, or
 * replaced by bytes Flotilla did not write. */
static bool file_lose(struct world *w, struct node *n, const char *path)
{
	static const char *const hows[] = {"deleted", "zeroed", "truncated", "replaced"};
	uint64_t how = between(w, 0, 3);
	struct stat st;
	bool done = false;
	int fd;

	if (stat(path, &st) != 0)
		return false;
	if (how == 0) {
		done = unlink(path) == 0;
	} else if ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
		done = ftruncate(fd, 0) == 0;
		if (how == 1)
			done = done && ftruncate(fd, st.st_size) == 0;
		else if (how == 2)
			done = done && ftruncate(fd, st.st_size / 2) == 0;
		for (off_t at = 0; how == 3 && done && at < st.st_size; at += 8) {
			uint64_t junk = rnd(w);

			done = pwrite(fd, &junk, sizeof(junk), at) == (ssize_t)sizeof(junk);
		}
		close(fd);
	}
	if (done)
		trace(w, "node %" PRIu64 ": segment %s %s", n->id, path, hows[how]);
	return done;
}

/* The sorted names in dir that end with suffix (at most 64). */
static uint32_t dir_names(const char *dir, const char *suffix, char names[64][64])
{
	size_t len = strlen(suffix);
	struct dirent *de;
	uint32_t count = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && count < 64) {
		size_t n = strlen(de->d_name);

		if (n > len && n < 64 && strcmp(de->d_name + n - len, suffix) == 0)
			snprintf(names[count++], 64, "%s", de->d_name);
	}
	closedir(d);
	qsort(names, count, 64, (int (*)(const void *, const void *))strcmp);
	return count;
}

/* Where the records of the last two batches of the tail segment of the WAL
 * in dir lie (END records included, PAD records not): the newest file whose
 * first record verifies under its own number (a spare's leftovers never
 * do), scanned with segment.h as recovery does. The last batch there is
 * the last durable one, which may hold acknowledged entries, or one a crash
 * tore (never acknowledged), and then the one before it is the last durable
 * batch: a flip in it, followed by the torn batch's first records, must not
 * pass for a torn write either. ranges[1] is the last batch's, ranges[0]
 * the one before (empty when the file has one batch). */
static bool wal_tail_batches(const char *dir, char names[64][64], uint32_t count, char *path,
			     size_t path_size, uint64_t ranges[2][2])
{
	static uint8_t buf[1u << 20]; /* Segments here are 64 KiB. */

	for (uint32_t i = count; i-- > 0;) {
		struct segment_record record;
		uint64_t seq, at = SEGMENT_HEADER_SIZE, batch = 0;
		ssize_t size;
		int fd;

		if (!segment_parse_name(names[i], &seq))
			continue;
		snprintf(path, path_size, "%s/%.63s", dir, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		size = pread(fd, buf, sizeof(buf), 0);
		close(fd);
		memset(ranges, 0, 2 * sizeof(ranges[0]));
		while (size > 0 && at < (uint64_t)size &&
		       segment_record_get(buf + at, (uint64_t)size - at, seq, &record) == 0) {
			if (record.batch != batch) {
				memcpy(ranges[0], ranges[1], sizeof(ranges[0]));
				ranges[1][0] = ranges[1][1] = at;
			}
			batch = record.batch;
			at += segment_record_size(record.size);
			if (record.type != SEGMENT_RECORD_PAD)
				ranges[1][1] = at; /* Its records, not its padding of zeros. */
		}
		if (ranges[1][1] > ranges[1][0])
			return true;
	}
	return false;
}

/* Flip one bit of a stopped node: in the records of a closed WAL segment,
 * in the last batch of the tail segment (which a flip must not let pass for
 * a torn write: acknowledged entries would be dropped), in the header of any
 * segment, or, one time in three when it has one, in the snapshot file of a
 * group. Each must be refused or repaired when the node starts, never
 * applied. */
static void node_flip(struct world *w, struct node *n)
{
	char dir[768], path[1024], names[64][64];
	uint32_t j = (uint32_t)between(w, 0, w->shards_count - 1);
	uint32_t count;

	/* Drawn from the seed apart from the world's stream, so that adding
	 * this choice kept every earlier seed's run. */
	if (XXH3_64bits_withSeed(&w->flips, sizeof(w->flips), w->seed) % 3 == 0) {
		snprintf(dir, sizeof(dir), "%s/shard-%u.snapshots", n->dir, j);
		count = dir_names(dir, ".snap", names);
		if (count > 0) {
			snprintf(path, sizeof(path), "%s/%.63s", dir,
				 names[between(w, 0, count - 1)]);
			if (file_flip(w, n, path, UINT64_MAX)) {
				n->flipped = true;
				w->flips++;
			}
			return;
		}
	}
	snprintf(dir, sizeof(dir), "%s/shard-%u", n->dir, j);
	count = dir_names(dir, ".wal", names);
	/* One time in five, a whole segment file is lost: any of them (the
	 * tail, a closed one, or a spare). Drawn apart as above. */
	if (count > 0 &&
	    XXH3_64bits_withSeed(&w->flips, sizeof(w->flips), w->seed ^ 0x5e61ull) % 5 == 0) {
		snprintf(path, sizeof(path), "%s/%.63s", dir, names[between(w, 0, count - 1)]);
		if (file_lose(w, n, path)) {
			n->flipped = true;
			w->flips++;
			w->segments_lost++;
		}
		return;
	}
	/* One time in four, the header of any segment file: the tail's (whose
	 * records must not pass for a spare's), a closed one's, or a spare's
	 * (which changes nothing). Drawn apart as above. */
	if (count > 0 &&
	    XXH3_64bits_withSeed(&w->flips, sizeof(w->flips), w->seed ^ 0x4eadull) % 4 == 0) {
		snprintf(path, sizeof(path), "%s/%.63s", dir, names[between(w, 0, count - 1)]);
		if (file_flip(w, n, path, 64)) {
			n->flipped = true;
			w->flips++;
		}
		return;
	}
	/* One time in three, the records of the tail segment's last batch or
	 * the one before it (wal_tail_batches). Drawn apart as above. */
	if (count > 0 &&
	    XXH3_64bits_withSeed(&w->flips, sizeof(w->flips), w->seed ^ 0x7a11ull) % 3 == 0) {
		uint64_t ranges[2][2], *range;

		if (!wal_tail_batches(dir, names, count, path, sizeof(path), ranges))
			return;
		range = ranges[ranges[0][1] > ranges[0][0] ? between(w, 0, 1) : 1];
		trace(w,
		      "node %" PRIu64 ": flip in %s %" PRIu64 "..%" PRIu64 " (last batches %" PRIu64
		      "..%" PRIu64 ", %" PRIu64 "..%" PRIu64 ")",
		      n->id, path, range[0], range[1], ranges[0][0], ranges[0][1], ranges[1][0],
		      ranges[1][1]);
		if (file_flip_in(w, n, path, range[0], range[1])) {
			n->flipped = true;
			w->flips++;
			w->tail_flips++;
		}
		return;
	}
	/* The newest files are the tail segment and up to two spares (which
	 * hold no record yet): closed segments come before them. */
	if (count < 4)
		return;
	snprintf(path, sizeof(path), "%s/%.63s", dir, names[between(w, 0, count - 4)]);
	/* Where records are: the first 64 KiB of a segment. */
	if (file_flip(w, n, path, 65536)) {
		n->flipped = true;
		w->flips++;
	}
}

static void node_crash_planned(struct world *w, struct node *n)
{
	uint32_t unsynced = loop_sim_unsynced(w->sim, n->id);

	node_crash(w, n, unsynced ? "fault, with writes unsynced" : "fault");
	if (n->flip_on_crash)
		node_flip(w, n);
	n->restart_ns = now(w) + between(w, 50, 2000) * MS;
}

static uint32_t nodes_down(const struct world *w)
{
	uint32_t down = 0;

	for (uint32_t i = 0; i < w->nodes_count; i++)
		down += !w->nodes[i].up || w->nodes[i].crash_ns != 0; /* Or about to be. */
	return down;
}

static void node_restart(struct world *w, struct node *n)
{
	int rv = node_start(w, n);

	if (rv == 0) {
		w->restarts++;
		trace(w, "node %" PRIu64 " restarted", n->id);
		return;
	}
	if ((rv == WAL_ERR_CORRUPT || rv == -EBADMSG) && n->flipped) {
		/* Refused (WAL record or snapshot checksum), as it must be: the
		 * node stays down (repair from peers is not there yet). */
		n->corrupt = true;
		w->corrupt_refusals++;
		trace(w, "node %" PRIu64 " refuses its corrupt data (%s): stays down", n->id,
		      err_str(rv));
		return;
	}
	if (rv == WAL_ERR_CORRUPT || rv == -EBADMSG) {
		fail(w, "node %" PRIu64 " refuses its data after a crash with no bit flipped: %s",
		     n->id, err_str(rv));
		return;
	}
	n->restart_ns = now(w) + 200 * MS; /* ENOSPC and the like: try again. */
}

/* --------------------------------------------------------------- checks */

/* A node never holds two votes in one term of a group: every vote it held
 * durably (so may have granted) is remembered across its crashes and data
 * losses. No exception: a member that repairs after losing its hard state
 * starts past every term it may have voted in (REPAIR, at
 * raft_repair_end()), so the leader it takes as its vote when the repair
 * ends is its first vote of that term. */
static void check_vote(struct world *w, struct node *n, uint32_t slot,
		       const struct shard_group_state *st)
{
	uint64_t **votes = &n->votes[slot];

	if (!st->vote_durable || st->vote == 0 || st->vote_term == 0)
		return;
	*votes = grow(*votes, &n->votes_cap[slot], st->vote_term + 1, sizeof(**votes));
	if ((*votes)[st->vote_term] == 0) {
		(*votes)[st->vote_term] = st->vote + 1;
		return;
	}
	if ((*votes)[st->vote_term] != st->vote + 1)
		fail(w,
		     "group %" PRIu64 ": node %" PRIu64 " voted for %" PRIu64 " and %" PRIu64
		     " in term %" PRIu64,
		     w->groups[slot].id, n->id, (*votes)[st->vote_term] - 1, st->vote,
		     st->vote_term);
}

/* A node never loses a committed entry it held durably, at a restart
 * least of all (a bit flipped in its tail's last batch must not pass for a
 * torn write): only a group that says it repairs (its data was damaged)
 * may hold less. held is the commit index the node last reported while
 * everything it had appended was durable, so its log on disk reached it;
 * Raft never truncates a committed entry, so the log's last index stays at
 * least that. */
static void check_held(struct world *w, struct node *n, uint32_t slot,
		       const struct shard_group_state *st)
{
	if (st->repairing) {
		n->held[slot] = 0; /* Until it holds its leader's log again. */
		return;
	}
	if (st->last_index < n->held[slot])
		fail(w,
		     "group %" PRIu64 ": node %" PRIu64 " lost committed entries it held "
		     "durably: its log ends at %" PRIu64 ", below %" PRIu64
		     ", and it does not repair",
		     w->groups[slot].id, n->id, st->last_index, n->held[slot]);
	if (st->vote_durable && st->commit_index > n->held[slot])
		n->held[slot] = st->commit_index;
}

static void check_leaders(struct world *w)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		struct node *n = &w->nodes[i];

		if (!n->up)
			continue;
		for (uint32_t k = 0; k < w->groups_count; k++) {
			struct group_ref *g = &w->groups[k];
			struct shard_group_state st;

			if (!shard_group_state(n->shards[shard_of(w, g->id)], g->id, &st))
				continue;
			check_vote(w, n, k, &st);
			check_held(w, n, k, &st);
			if (!st.leader)
				continue;
			g->leaders =
			    grow(g->leaders, &g->leaders_cap, st.term + 1, sizeof(*g->leaders));
			if (g->leaders[st.term] == 0) {
				g->leaders[st.term] = n->idx + 1;
				g->hint = n->idx;
				trace(w, "group %" PRIu64 ": node %" PRIu64 " leads term %" PRIu64,
				      g->id, n->id, st.term);
			} else if (g->leaders[st.term] != n->idx + 1) {
				fail(w,
				     "group %" PRIu64 ": nodes %u and %" PRIu64
				     " both lead term %" PRIu64,
				     g->id, g->leaders[st.term], n->id, st.term);
			}
		}
	}
}

/* Run every node's due turns until none is due (bounded), checking after
 * each round. A node whose WAL failed is crashed, to restart soon. */
static void run_turns(struct world *w)
{
	for (int round = 0; round < TURN_ROUNDS_MAX && !w->failed; round++) {
		bool any = false;

		for (uint32_t i = 0; i < w->nodes_count; i++) {
			struct node *n = &w->nodes[i];
			bool failed = false;

			if (!node_runs(w, n))
				continue;
			for (uint32_t j = 0; j < w->shards_count; j++) {
				struct shard *s = n->shards[j];

				if (!n->due[j] && !loop_sim_is_ready(shard_sim_loop(s)) &&
				    shard_inbox_depth(s) == 0)
					continue;
				n->due[j] = shard_sim_turn(s);
				any = true;
				failed |= shard_is_failed(s);
			}
			if (failed) {
				w->wal_failures++;
				node_crash(w, n, "its WAL failed");
				n->restart_ns = now(w) + between(w, 10, 500) * MS;
			} else if (n->crash_ns != 0 && (loop_sim_unsynced(w->sim, n->id) > 0 ||
							now(w) >= n->crash_ns)) {
				node_crash_planned(w, n);
			}
		}
		check_leaders(w);
		if (!any)
			break;
	}
}

/* --------------------------------------------------------------- faults */

/* Nodes that had a bit flipped in their files at some time. */
static uint32_t nodes_flipped(const struct world *w)
{
	uint32_t count = 0;

	for (uint32_t i = 0; i < w->nodes_count; i++)
		count += w->nodes[i].flipped;
	return count;
}

static void fault_step(struct world *w)
{
	uint32_t a = (uint32_t)between(w, 0, w->nodes_count - 1);
	uint32_t b = (uint32_t)((a + between(w, 1, w->nodes_count - 1)) % w->nodes_count);
	struct node *na = &w->nodes[a];
	uint32_t kind = (uint32_t)between(w, 0, 9);

	switch (kind) {
	case 0:
	case 1: /* Crash a node, keeping a majority up: mostly with a write unsynced. */
		if (!na->up || na->crash_ns != 0 || nodes_down(w) + 1 > (w->nodes_count - 1) / 2)
			break;
		/* Flips stay on a minority of nodes: a group whose copies are
		 * damaged on a majority halts (safely) for good. */
		na->flip_on_crash =
		    rnd(w) % 3 == 0 &&
		    (na->flipped || nodes_flipped(w) + 1 <= (w->nodes_count - 1) / 2);
		na->crash_ns = now(w) + between(w, 0, 300) * MS;
		if (rnd(w) % 4 == 0)
			node_crash_planned(w, na);
		break;
	case 2: /* Pause a node (a stop signal, a long GC). */
		if (!na->up)
			break;
		na->paused_until_ns = now(w) + between(w, 10, 1500) * MS;
		w->pauses++;
		trace(w, "node %" PRIu64 " paused until +%" PRIu64 " ms", na->id,
		      (na->paused_until_ns - now(w)) / MS);
		break;
	case 3:
	case 4: /* Reset the connections between two nodes. */
		loop_sim_reset(w->sim, a + 1, b + 1);
		w->resets++;
		trace(w, "connections between %u and %u reset", a + 1, b + 1);
		break;
	case 5:
	case 6: { /* Partition: one direction, or both; heals on a later step. */
		bool both = rnd(w) % 2;

		loop_sim_block(w->sim, a + 1, b + 1, true);
		if (both)
			loop_sim_block(w->sim, b + 1, a + 1, true);
		if (rnd(w) % 2)
			loop_sim_reset(w->sim, a + 1, b + 1);
		w->partitions++;
		trace(w, "partition %u -> %u%s", a + 1, b + 1, both ? " both ways" : "");
		break;
	}
	case 7:
	case 8: /* Heal one direction. */
		loop_sim_block(w->sim, a + 1, b + 1, false);
		trace(w, "heal %u -> %u", a + 1, b + 1);
		break;
	default: /* Heal all. */
		for (uint32_t x = 1; x <= w->nodes_count; x++)
			for (uint32_t y = 1; y <= w->nodes_count; y++)
				loop_sim_block(w->sim, x, y, false);
		trace(w, "heal all");
		break;
	}
}

static void restarts_due(struct world *w)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		struct node *n = &w->nodes[i];

		if (!n->up && !n->corrupt && n->restart_ns != 0 && n->restart_ns <= now(w))
			node_restart(w, n);
	}
}

static uint64_t next_wakeup(struct world *w, uint64_t limit)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		const struct node *n = &w->nodes[i];

		if (!n->up && !n->corrupt && n->restart_ns != 0 && n->restart_ns < limit)
			limit = n->restart_ns;
		if (n->up && n->paused_until_ns > now(w) && n->paused_until_ns < limit)
			limit = n->paused_until_ns;
	}
	return limit;
}

/* Advance the world to the next event or driver deadline, then run turns. */
static void world_step(struct world *w, uint64_t limit)
{
	if (++w->steps > STEPS_MAX) {
		fail(w, "%" PRIu64 " steps without reaching the end: virtual time stands still",
		     STEPS_MAX);
		return;
	}
	loop_sim_step(w->sim, next_wakeup(w, limit));
	restarts_due(w);
	run_turns(w);
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up && w->nodes[i].create_missing)
			groups_create(w, &w->nodes[i]);
}

/* ------------------------------------------------------------- one seed */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Where the nodes' directories go: /dev/shm when it has room (a seed peaks
 * at about 25 MiB; a container's default /dev/shm of 64 MiB does not hold
 * two runs side by side), else TMPDIR, else P_tmpdir. */
static const char *data_base(void)
{
	struct statvfs st;
	const char *tmp = getenv("TMPDIR");

	if (access("/dev/shm", W_OK) == 0 && statvfs("/dev/shm", &st) == 0 &&
	    (uint64_t)st.f_bavail * st.f_frsize >= ((uint64_t)512 << 20))
		return "/dev/shm";
	return tmp && tmp[0] ? tmp : P_tmpdir;
}

static int world_init(struct world *w, uint64_t seed, bool verbose, bool no_faults)
{
	const char *base = data_base();
	struct loop_sim_faults f = {0};

	memset(w, 0, sizeof(*w));
	w->seed = seed;
	w->verbose = verbose;
	w->no_faults = no_faults;
	snprintf(w->root, sizeof(w->root), "%s/flotilla-nodesim-XXXXXX", base);
	if (mkdtemp(w->root) == NULL)
		return -errno;
	/* Hashed: with seed itself as the PRNG state, the stream of seed + 1
	 * would be that of seed shifted by one draw. */
	if (loop_sim_new(&w->sim, XXH3_64bits(&seed, sizeof(seed)), SIM_START_NS) != 0)
		return -ENOMEM;
	loop_sim_set_verbose(w->sim, verbose);
	w->nodes_count = rnd(w) % 3 == 0 ? 5 : 3;
	w->shards_count = (uint32_t)between(w, 1, SHARDS_MAX);
	w->groups_count = (uint32_t)between(w, 1, 4);
	w->snapshot_entries = rnd(w) % 2 ? between(w, 20, 200) : 0;
	w->lease_read = rnd(w) % 2;
	w->quiesce = rnd(w) % 2;
	w->check_entries = rnd(w) % 2 ? (uint32_t)between(w, 10, 100) : 0;
	/* From the seed's bits, not the PRNG: every other parameter of a seed
	 * stays what it was before the ratio existed. */
	w->snapshot_ratio_percent = (seed >> 1) % 2 ? 50 : 0;
	for (uint32_t i = 0; i < w->groups_count; i++)
		w->groups[i].id = 100 + i * 7;
	f.disk_us_min = 10;
	f.disk_us_max = (uint32_t)between(w, 50, 2000);
	f.disk_stall_ppm = (uint32_t)between(w, 0, 3000);
	f.disk_stall_ms_max = (uint32_t)between(w, 5, 400);
	f.net_us_min = 20;
	f.net_us_max = (uint32_t)between(w, 100, 5000);
	f.net_spike_ppm = (uint32_t)between(w, 0, 5000);
	f.net_spike_ms_max = (uint32_t)between(w, 5, 300);
	f.fsync_eio_ppm = (uint32_t)between(w, 0, 300);
	f.write_eio_ppm = (uint32_t)between(w, 0, 100);
	f.enospc_ppm = (uint32_t)between(w, 0, 200);
	if (no_faults)
		f = (struct loop_sim_faults){
		    .disk_us_min = 10, .disk_us_max = 100, .net_us_min = 20, .net_us_max = 200};
	loop_sim_set_faults(w->sim, &f);
	w->fault_end_ns = SIM_START_NS + between(w, 3000, 10000) * MS;
	if (verbose)
		fprintf(stderr,
			"seed %" PRIu64 ": %u nodes x %u shards, %u groups, snapshot every %" PRIu64
			" entries (ratio %u%%), lease reads %d, quiesce %d, check every %u "
			"entries, fault phase "
			"%" PRIu64 " ms; disk %u-%u us (stall %u ppm, %u ms), "
			"net %u-%u us (spike %u ppm, %u ms), fsync EIO %u ppm, write EIO %u ppm, "
			"ENOSPC %u ppm\n",
			seed, w->nodes_count, w->shards_count, w->groups_count, w->snapshot_entries,
			w->snapshot_ratio_percent, w->lease_read, w->quiesce, w->check_entries,
			(w->fault_end_ns - SIM_START_NS) / MS, f.disk_us_min, f.disk_us_max,
			f.disk_stall_ppm, f.disk_stall_ms_max, f.net_us_min, f.net_us_max,
			f.net_spike_ppm, f.net_spike_ms_max, f.fsync_eio_ppm, f.write_eio_ppm,
			f.enospc_ppm);
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		struct node *n = &w->nodes[i];

		n->w = w;
		n->idx = i;
		n->id = i + 1;
		snprintf(n->dir, sizeof(n->dir), "%s/node-%u", w->root, i + 1);
		if (mkdir(n->dir, 0700) != 0)
			return -errno;
	}
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		int rv = node_start(w, &w->nodes[i]);

		if (rv != 0) {
			fail(w, "node %u cannot start: %s", i + 1, err_str(rv));
			return rv;
		}
	}
	return 0;
}

static void world_deinit(struct world *w)
{
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up)
			node_crash(w, &w->nodes[i], "end of run");
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sm_reset(&w->nodes[i]);
		for (uint32_t k = 0; k < GROUPS_MAX; k++)
			free(w->nodes[i].votes[k]);
	}
	loop_sim_free(w->sim);
	for (uint32_t i = 0; i < w->groups_count; i++) {
		free(w->groups[i].at);
		free(w->groups[i].leaders);
	}
	free(w->value_index);
	nftw(w->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The fault phase: clients and faults until fault_end_ns. */
static void phase_faults(struct world *w)
{
	w->next_fault_ns = w->no_faults ? UINT64_MAX : now(w) + between(w, 100, 1000) * MS;
	w->next_client_ns = now(w) + MS;
	while (!w->failed && now(w) < w->fault_end_ns) {
		uint64_t limit =
		    w->next_fault_ns < w->next_client_ns ? w->next_fault_ns : w->next_client_ns;

		world_step(w, limit < w->fault_end_ns ? limit : w->fault_end_ns);
		if (now(w) >= w->next_client_ns) {
			client_step(w, false);
			w->next_client_ns = now(w) + between(w, 100, 20000) * 1000;
		}
		if (now(w) >= w->next_fault_ns) {
			fault_step(w);
			w->next_fault_ns = now(w) + between(w, 50, 1500) * MS;
		}
	}
}

/* What every replica says of every group, for a failure report. */
static void dump_groups(struct world *w)
{
	for (uint32_t k = 0; k < w->groups_count; k++) {
		struct group_ref *g = &w->groups[k];

		printf("group %" PRIu64 ": %u client operations pending, %" PRIu64
		       " acknowledged up to index %" PRIu64 "\n",
		       g->id, g->inflight, g->acked, g->max_acked);
		for (uint32_t i = 0; i < w->nodes_count; i++) {
			struct node *n = &w->nodes[i];
			struct shard_group_state st;

			if (!n->up) {
				printf("  node %" PRIu64 ": down%s\n", n->id,
				       n->corrupt ? " (corrupt)" : "");
				continue;
			}
			if (!shard_group_state(n->shards[shard_of(w, g->id)], g->id, &st)) {
				printf("  node %" PRIu64 ": not hosted%s\n", n->id,
				       shard_is_failed(n->shards[shard_of(w, g->id)])
					   ? " (WAL failed)"
					   : "");
				continue;
			}
			printf("  node %" PRIu64 ": term %" PRIu64 "%s, commit %" PRIu64
			       ", applied %" PRIu64 " (state machine %" PRIu64 ")\n",
			       n->id, st.term, st.leader ? " leader" : "", st.commit_index,
			       st.applied_index, n->sm[k].last_index);
		}
	}
}

static void dump_pending(struct world *w)
{
	for (struct op *op = w->pending; op; op = op->next)
		printf("pending: %s of group %" PRIu64 " on node %" PRIu64 " asked at %.3f ms\n",
		       op->value ? "proposal" : "read", w->groups[op->slot].id, op->node_id,
		       (double)(op->asked_ns - SIM_START_NS) / 1e6);
}

/* Faults off, partitions healed, pauses ended, and every node that is down
 * (and whose data is not refused) restarting now; with cancel_crashes, no
 * crash planned earlier happens. */
static void world_calm(struct world *w, bool cancel_crashes)
{
	struct loop_sim_faults quiet = {
	    .disk_us_min = 10, .disk_us_max = 100, .net_us_min = 20, .net_us_max = 200};

	loop_sim_set_faults(w->sim, &quiet);
	for (uint32_t x = 1; x <= w->nodes_count; x++)
		for (uint32_t y = 1; y <= w->nodes_count; y++)
			loop_sim_block(w->sim, x, y, false);
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		struct node *n = &w->nodes[i];

		n->paused_until_ns = 0;
		if (cancel_crashes)
			n->crash_ns = 0;
		if (!n->up && !n->corrupt)
			n->restart_ns = now(w);
	}
}

/* Heal, restart, and require progress within bounded virtual time: a new
 * proposal in every group, every acknowledged one applied on every live
 * replica, and an answer to every request. */
static void phase_heal(struct world *w)
{
	uint64_t deadline, start;
	uint64_t want[GROUPS_MAX];

	world_calm(w, false);
	trace(w, "heal: faults off, partitions healed, down nodes restart");
	start = now(w);
	deadline = start + 30000 * MS;
	for (uint32_t k = 0; k < w->groups_count; k++)
		want[k] = w->groups[k].acked + 1;
	/* Liveness: one new acknowledged proposal in every group. */
	for (;;) {
		bool done = true;

		for (uint32_t k = 0; k < w->groups_count; k++)
			done &= w->groups[k].acked >= want[k];
		if (done || w->failed)
			break;
		if (now(w) >= deadline) {
			dump_groups(w);
			dump_pending(w);
			for (uint32_t k = 0; k < w->groups_count; k++)
				if (w->groups[k].acked < want[k])
					fail(w,
					     "group %" PRIu64
					     ": no proposal committed within %" PRIu64
					     " ms after the faults healed",
					     w->groups[k].id, (deadline - start) / MS);
			return;
		}
		world_step(w, now(w) + 20 * MS);
		client_step(w, true);
	}
	/* Convergence: every live replica applies every acknowledged entry. */
	for (;;) {
		bool done = true;

		for (uint32_t i = 0; i < w->nodes_count; i++)
			for (uint32_t k = 0; k < w->groups_count && w->nodes[i].up; k++)
				done &= w->nodes[i].sm[k].last_index >= w->groups[k].max_acked;
		if (done || w->failed)
			break;
		if (now(w) >= deadline) {
			dump_groups(w);
			for (uint32_t i = 0; i < w->nodes_count; i++)
				for (uint32_t k = 0; k < w->groups_count && w->nodes[i].up; k++)
					if (w->nodes[i].sm[k].last_index < w->groups[k].max_acked)
						fail(w,
						     "group %" PRIu64
						     ": node %u applied up to %" PRIu64
						     " only; %" PRIu64 " was acknowledged",
						     w->groups[k].id, i + 1,
						     w->nodes[i].sm[k].last_index,
						     w->groups[k].max_acked);
			return;
		}
		world_step(w, now(w) + 20 * MS);
	}
	/* Every request is answered: none waits forever. */
	while (w->pending && !w->failed) {
		if (now(w) >= deadline) {
			dump_groups(w);
			dump_pending(w);
			fail(w,
			     "client requests still unanswered %" PRIu64
			     " ms after the faults healed",
			     (deadline - start) / MS);
			return;
		}
		world_step(w, now(w) + 20 * MS);
	}
}

/* ------------------------------------------------------------- silence */

/* SILENCE: after the fault phase, on a third of the seeds (drawn from a hash of the
 * seed, not from the world's stream, so that the fault phase of every seed
 * is what it was), the world calms down, some groups go idle (and quiesce,
 * when the seed has quiescence on) while the others stay busy, and then the
 * node that leads the most groups goes silent: stopped (as by SIGSTOP) or
 * cut off both ways from every other node, its connections kept or reset.
 * It stays silent for SILENCE_BOUND_MS and 300 ms more. Availability
 * check: every group it led, busy or quiesced, must have a new leader on
 * the majority side, with an entry of that leader's term committed, within
 * SILENCE_BOUND_MS of the start of the silence:
 *   2 x election timeout + 4 x heartbeat interval = 840 ms, which is
 *   detection (3 heartbeat intervals without a byte from the node's host,
 *   180 ms, or a busy group's own election timeout) and the lease every
 *   voter promised the old leader (one election timeout from the last
 *   message heard from it: the election may not come sooner, see LIVENESS
 *   in engine/raft_election.c), then a PreVote and a vote round, a retry by
 *   the next survivor in the group's takeover order (half a heartbeat each)
 *   or, at worst, a second randomized timeout.
 * Clients meanwhile write to the busy groups and read from every node, the
 * silent one included: a lease read served there after its group moved is
 * the stale read the read check catches. */
#define SILENCE_BOUND_MS ((uint64_t)2 * ELECTION_TIMEOUT_MS + 4 * HEARTBEAT_INTERVAL_MS)

static bool silence_drawn(uint64_t seed)
{
	return XXH3_64bits_withSeed(&seed, sizeof(seed), 0x73696c656e6365) % 3 == 0;
}

/* Faults off, partitions healed, every node up (false when a corrupt node
 * stays down: the silence would leave no majority to check), then one
 * proposal acknowledged in every group. */
static bool silence_settle(struct world *w)
{
	uint64_t deadline = now(w) + 30000 * MS;
	uint64_t want[GROUPS_MAX];

	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].corrupt)
			return false;
	world_calm(w, true);
	for (uint32_t k = 0; k < w->groups_count; k++)
		want[k] = w->groups[k].acked + 1;
	for (;;) {
		bool done = true;

		for (uint32_t k = 0; k < w->groups_count; k++)
			done &= w->groups[k].acked >= want[k];
		for (uint32_t i = 0; i < w->nodes_count; i++)
			done &= w->nodes[i].up;
		if (done || w->failed)
			return !w->failed;
		if (now(w) >= deadline) {
			dump_groups(w);
			fail(w, "silence: the groups did not settle within 30 s of calm");
			return false;
		}
		world_step(w, now(w) + 20 * MS);
		client_step(w, true);
	}
}

/* The node that leads the most groups (the first on ties). */
static uint32_t silence_victim(struct world *w, uint64_t old_term[GROUPS_MAX])
{
	uint32_t count[NODES_MAX] = {0}, best = 0;

	for (uint32_t i = 0; i < w->nodes_count; i++)
		for (uint32_t k = 0; k < w->groups_count; k++) {
			struct shard_group_state st;
			struct node *n = &w->nodes[i];

			if (n->up &&
			    shard_group_state(n->shards[shard_of(w, w->groups[k].id)],
					      w->groups[k].id, &st) &&
			    st.leader)
				count[i]++;
		}
	for (uint32_t i = 1; i < w->nodes_count; i++)
		if (count[i] > count[best])
			best = i;
	for (uint32_t k = 0; k < w->groups_count; k++) {
		struct shard_group_state st;
		struct node *n = &w->nodes[best];

		old_term[k] = 0; /* Not led by the victim. */
		if (shard_group_state(n->shards[shard_of(w, w->groups[k].id)], w->groups[k].id,
				      &st) &&
		    st.leader)
			old_term[k] = st.term;
	}
	return best;
}

/* The silence under way: who went silent, and what each group did since. */
struct silence {
	uint32_t victim; /* Node index; UINT32_MAX before the silence. */
	uint32_t busy;   /* Groups with clients, by slot. */
	uint64_t start_ns;
	uint64_t old_term[GROUPS_MAX]; /* Term the victim led it in; 0: not led by it. */
	uint32_t leader[GROUPS_MAX];   /* The new leader's node index, once moved. */
	uint64_t acked_at[GROUPS_MAX]; /* Acknowledged proposals when it moved. */
	bool moved[GROUPS_MAX], quiesced[GROUPS_MAX], probed[GROUPS_MAX];
};

/* The node other than the victim that leads group k in a term after the
 * victim's and has committed an entry of that term; UINT32_MAX: none. */
static uint32_t silence_new_leader(struct world *w, const struct silence *sl, uint32_t k)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		struct node *n = &w->nodes[i];
		struct shard_group_state st;

		if (i == sl->victim || !n->up ||
		    !shard_group_state(n->shards[shard_of(w, w->groups[k].id)], w->groups[k].id,
				       &st))
			continue;
		if (st.leader && st.term > sl->old_term[k] && st.commit_term == st.term)
			return i;
	}
	return UINT32_MAX;
}

/* One client operation of the silence: a write to a busy group (at its
 * leader as far as the client knows), or a read from any node. An idle group
 * is left alone but for reads at the silent node, which reach no other. */
static void silence_client(struct world *w, const struct silence *sl)
{
	uint32_t slot = (uint32_t)between(w, 0, w->groups_count - 1);
	bool read = rnd(w) % 3 == 0;
	bool at_victim = sl->victim != UINT32_MAX && rnd(w) % 3 == 0;
	uint32_t target = at_victim ? sl->victim : w->groups[slot].hint;

	if (!(sl->busy & (1u << slot)) && !(read && at_victim))
		return;
	if (!read && rnd(w) % 2)
		target = (uint32_t)between(w, 0, w->nodes_count - 1);
	client_submit(w, slot, target, read, false);
}

/* Group k moved: write through its new leader, and once a write is
 * acknowledged there, read at the silent node. A lease read served there
 * now would miss that write: the read check fails it (see LIVENESS in
 * engine/raft_election.c for why the lease ran out before the move). */
static void silence_probe(struct world *w, struct silence *sl, uint32_t k)
{
	if (sl->probed[k])
		return;
	if (w->groups[k].acked == sl->acked_at[k]) {
		if (w->groups[k].inflight == 0)
			client_submit(w, k, sl->leader[k], false, false);
		return;
	}
	sl->probed[k] = true;
	client_submit(w, k, sl->victim, true, false);
}

/* Check that every group the victim led moved within the bound. */
static void silence_check(struct world *w, struct silence *sl)
{
	for (uint32_t k = 0; k < w->groups_count; k++) {
		if (sl->old_term[k] == 0)
			continue;
		if (sl->moved[k]) {
			silence_probe(w, sl, k);
			continue;
		}
		sl->leader[k] = silence_new_leader(w, sl, k);
		sl->moved[k] = sl->leader[k] != UINT32_MAX;
		if (sl->moved[k]) {
			sl->acked_at[k] = w->groups[k].acked;
			trace(w, "silence: group %" PRIu64 " moved to node %u after %.1f ms",
			      w->groups[k].id, sl->leader[k] + 1,
			      (double)(now(w) - sl->start_ns) / 1e6);
		} else if (now(w) - sl->start_ns > SILENCE_BOUND_MS * MS) {
			dump_groups(w);
			fail(w,
			     "group %" PRIu64 " (%s): its leader, node %u, went silent %" PRIu64
			     " ms ago, and no node of the majority has led it since with an "
			     "entry of its term committed (bound %" PRIu64
			     " ms: 2 election timeouts + 4 heartbeats)",
			     w->groups[k].id, sl->quiesced[k] ? "quiesced" : "not quiesced",
			     sl->victim + 1, (now(w) - sl->start_ns) / MS, SILENCE_BOUND_MS);
		}
	}
}

/* Run clients for ms of virtual time, checking the silence if one is on. */
static void silence_run(struct world *w, struct silence *sl, uint64_t ms)
{
	uint64_t end = now(w) + ms * MS, next_client = now(w);

	while (!w->failed && now(w) < end) {
		world_step(w, next_client < end ? next_client : end);
		if (now(w) >= next_client) {
			silence_client(w, sl);
			next_client = now(w) + between(w, 1000, 10000) * 1000;
		}
		if (sl->victim != UINT32_MAX)
			silence_check(w, sl);
	}
}

static void phase_silence(struct world *w)
{
	struct silence sl = {.victim = UINT32_MAX};
	struct node *v;
	bool pause;

	if (!silence_settle(w))
		return;
	for (uint32_t k = 0; k < w->groups_count; k++)
		sl.busy |= (uint32_t)(rnd(w) % 2) << k;
	/* Idle groups quiesce after 3 election timeouts without work. */
	silence_run(w, &sl, 3 * ELECTION_TIMEOUT_MS + 4 * HEARTBEAT_INTERVAL_MS);
	if (w->failed)
		return;
	sl.victim = silence_victim(w, sl.old_term);
	v = &w->nodes[sl.victim];
	for (uint32_t k = 0; k < w->groups_count; k++) {
		struct shard_group_state st;

		sl.quiesced[k] = shard_group_state(v->shards[shard_of(w, w->groups[k].id)],
						   w->groups[k].id, &st) &&
				 st.quiesced;
	}
	pause = rnd(w) % 2;
	if (pause) {
		v->paused_until_ns = now(w) + (SILENCE_BOUND_MS + 300) * MS;
	} else {
		bool reset = rnd(w) % 2;

		for (uint32_t i = 0; i < w->nodes_count; i++) {
			if (i == sl.victim)
				continue;
			loop_sim_block(w->sim, sl.victim + 1, i + 1, true);
			loop_sim_block(w->sim, i + 1, sl.victim + 1, true);
			if (reset)
				loop_sim_reset(w->sim, sl.victim + 1, i + 1);
		}
	}
	trace(w, "silence: node %u %s; busy groups 0x%x", sl.victim + 1,
	      pause ? "paused" : "cut off", sl.busy);
	sl.start_ns = now(w);
	silence_run(w, &sl, SILENCE_BOUND_MS + 300);
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (i != sl.victim) {
			loop_sim_block(w->sim, sl.victim + 1, i + 1, false);
			loop_sim_block(w->sim, i + 1, sl.victim + 1, false);
		}
	v->paused_until_ns = 0;
	trace(w, "silence: node %u heard again", sl.victim + 1);
}

static int run_seed(uint64_t seed, bool verbose, bool quiet, bool no_faults)
{
	struct world w;
	uint64_t acked = 0, proposed = 0, reads = 0, reads_ok = 0;
	int rv = world_init(&w, seed, verbose, no_faults);

	if (rv == 0 && !w.failed) {
		phase_faults(&w);
		if (!w.failed && !w.no_faults && silence_drawn(seed))
			phase_silence(&w);
		if (!w.failed)
			phase_heal(&w);
	} else if (!w.failed) {
		fail(&w, "cannot set up: %s", strerror(-rv));
	}
	for (uint32_t k = 0; k < w.groups_count; k++) {
		acked += w.groups[k].acked;
		proposed += w.groups[k].proposed;
		reads += w.groups[k].reads;
		reads_ok += w.groups[k].reads_ok;
	}
	if (w.sim) {
		const struct loop_sim_stats *st = loop_sim_stats(w.sim);

		total.crashes += w.crashes;
		total.restarts += w.restarts;
		total.wal_failures += w.wal_failures;
		total.pauses += w.pauses;
		total.partitions += w.partitions;
		total.resets += w.resets;
		total.flips += w.flips;
		total.segments_lost += w.segments_lost;
		total.tail_flips += w.tail_flips;
		total.refused += w.corrupt_refusals;
		total.writes_lost += st->writes_lost;
		total.writes_torn += st->writes_torn;
		total.eio += st->write_eio + st->fsync_eio;
		total.enospc += st->enospc;
		total.stalls += st->stalls;
		total.proposed += proposed;
		total.acked += acked;
		total.reads += reads;
		total.reads_ok += reads_ok;
		total.virtual_ms += (loop_sim_now_ns(w.sim) - SIM_START_NS) / MS;
	}
	if (!quiet || w.failed) {
		const struct loop_sim_stats *st = w.sim ? loop_sim_stats(w.sim) : NULL;

		printf("seed %" PRIu64
		       ": %u nodes x %u shards, %u groups, %.0f ms virtual in %" PRIu64
		       " steps: %" PRIu64 "/%" PRIu64 " proposals acknowledged, %" PRIu64
		       "/%" PRIu64 " reads; crashes %" PRIu64 " (WAL failed %" PRIu64
		       "), restarts %" PRIu64 ", pauses %" PRIu64 ", partitions %" PRIu64
		       ", resets %" PRIu64 ", bit flips %" PRIu64 " (refused %" PRIu64 ")",
		       seed, w.nodes_count, w.shards_count, w.groups_count,
		       w.sim ? (double)(loop_sim_now_ns(w.sim) - SIM_START_NS) / 1e6 : 0.0, w.steps,
		       acked, proposed, reads_ok, reads, w.crashes, w.wal_failures, w.restarts,
		       w.pauses, w.partitions, w.resets, w.flips, w.corrupt_refusals);
		if (st)
			printf("; disk: %" PRIu64 " writes, %" PRIu64 " fsyncs, EIO %" PRIu64
			       "+%" PRIu64 ", ENOSPC %" PRIu64 ", stalls %" PRIu64
			       ", unsynced writes lost %" PRIu64 " torn %" PRIu64,
			       st->writes, st->fsyncs, st->write_eio, st->fsync_eio, st->enospc,
			       st->stalls, st->writes_lost, st->writes_torn);
		printf("\n");
	}
	if (w.sim)
		world_deinit(&w);
	if (w.failed) {
		printf("VIOLATION seed=%" PRIu64 " t=%.3fms: %s\n", seed, w.fail_ms, w.why);
		printf("reproduce: flotilla-nodesim --seed=%" PRIu64 " --verbose\n", seed);
		fflush(stdout);
		return 1;
	}
	return 0;
}

/* --name=N or --name N. */
static bool arg_u64(int argc, char **argv, int *i, const char *name, uint64_t *out)
{
	size_t len = strlen(name);

	if (strncmp(argv[*i], name, len) != 0)
		return false;
	if (argv[*i][len] == '=') {
		*out = strtoull(argv[*i] + len + 1, NULL, 10);
		return true;
	}
	if (argv[*i][len] != '\0' || *i + 1 >= argc)
		return false;
	*out = strtoull(argv[++*i], NULL, 10);
	return true;
}

int main(int argc, char **argv)
{
	uint64_t seed = 1, seeds = 1;
	bool verbose = false, no_faults = false;
	struct timespec t0, t1;
	uint64_t failures = 0, ran = 0;

	for (int i = 1; i < argc; i++) {
		if (arg_u64(argc, argv, &i, "--seeds", &seeds) ||
		    arg_u64(argc, argv, &i, "--seed", &seed))
			continue;
		if (strcmp(argv[i], "--verbose") == 0) {
			verbose = true;
			continue;
		}
		if (strcmp(argv[i], "--no-faults") == 0) {
			no_faults = true;
			continue;
		}
		fprintf(stderr,
			"usage: flotilla-nodesim [--seed=S] [--seeds=N] [--verbose] [--no-faults]\n"
			"  --seed=S    first seed (default 1); alone, replays that one seed\n"
			"  --seeds=N   run seeds S .. S+N-1, stop at the first violation\n"
			"  --verbose   trace the run (faults, leaders, acknowledgements, logs)\n"
			"  --no-faults clients only: no crash, partition, disk or network fault\n");
		return 2;
	}
	log_mute(!verbose);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t s = seed; s < seed + seeds; s++) {
		ran++;
		if (run_seed(s, verbose, seeds > 1, no_faults) != 0) {
			failures++;
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("flotilla-nodesim: seeds %" PRIu64 "..%" PRIu64 ", %" PRIu64 " run, %" PRIu64
	       " violation%s, %.1f s\n",
	       seed, seed + seeds - 1, ran, failures, failures == 1 ? "" : "s",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	printf("total faults: crashes=%" PRIu64 " wal_failures=%" PRIu64 " restarts=%" PRIu64
	       " pauses=%" PRIu64 " partitions=%" PRIu64 " resets=%" PRIu64 " bit_flips=%" PRIu64
	       " refused=%" PRIu64 " writes_lost=%" PRIu64 " writes_torn=%" PRIu64 " eio=%" PRIu64
	       " enospc=%" PRIu64 " stalls=%" PRIu64 "\n",
	       total.crashes, total.wal_failures, total.restarts, total.pauses, total.partitions,
	       total.resets, total.flips, total.refused, total.writes_lost, total.writes_torn,
	       total.eio, total.enospc, total.stalls);
	printf("total whole segments lost: %" PRIu64 ", flips in the tail's last batch: %" PRIu64
	       " (within the bit flips)\n",
	       total.segments_lost, total.tail_flips);
	printf("total ops: proposed=%" PRIu64 " acknowledged=%" PRIu64 " reads=%" PRIu64
	       " reads_ok=%" PRIu64 " virtual_ms=%" PRIu64 "\n",
	       total.proposed, total.acked, total.reads, total.reads_ok, total.virtual_ms);
	return failures ? 1 : 0;
}
