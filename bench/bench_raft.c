/* The CPU ceiling of the Raft core: engines only, no I/O.
 *
 *   raft/commit/<payload>   entries/s committed by a 3-engine cluster in one
 *                           process; the leader proposes batches of
 *                           RAFT_BENCH_BATCH entries, every message is
 *                           delivered at once and every write is "durable" as
 *                           soon as it is handed out. Payloads 16 B, 128 B, 4 KiB.
 *   raft/step/heartbeat     cost of raft_step() for one heartbeat on a follower.
 *   raft/step/append        cost of raft_step() for one APPEND carrying one
 *                           128-byte entry, plus its ready.
 *
 * Every later layer (WAL, shard loop, transport) is measured against these. */
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "bench/harness.h"
#include "engine/raft.h"

enum {
	RAFT_BENCH_NODES = 3,
	RAFT_BENCH_BATCH = 256,          /* Entries per raft_propose(). */
	RAFT_BENCH_COMPACT_EVERY = 1024, /* Keep the in-memory logs short. */
	RAFT_BENCH_PAYLOAD_MAX = 4096,
};

struct raft_bench_cluster {
	struct raft nodes[RAFT_BENCH_NODES];
	uint64_t now_ms;
	uint64_t messages;
	uint8_t payload[RAFT_BENCH_PAYLOAD_MAX];
	struct raft_buf bufs[RAFT_BENCH_BATCH];
};

static struct raft *cluster_node(struct raft_bench_cluster *c, uint64_t id)
{
	return id >= 1 && id <= RAFT_BENCH_NODES ? &c->nodes[id - 1] : NULL;
}

static void cluster_deliver(struct raft_bench_cluster *c, const struct raft_msg *msgs,
			    uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		struct raft *to = cluster_node(c, msgs[i].to);

		if (to != NULL)
			raft_step(to, &msgs[i], c->now_ms);
		c->messages++;
	}
}

/* Carry out one node's ready with an instant disk and an instant network.
 * Messages are delivered before the next call into this node, while the
 * ready's borrowed pointers are still valid. */
static bool cluster_pump_node(struct raft_bench_cluster *c, struct raft *r)
{
	struct raft_ready rd;
	uint64_t last_index = 0, last_term = 0, applied = 0;

	if (!raft_has_ready(r))
		return false;
	raft_ready(r, &rd);
	if (rd.entries_count > 0) {
		last_index = rd.entries[rd.entries_count - 1].index;
		last_term = rd.entries[rd.entries_count - 1].term;
	}
	if (rd.committed_count > 0)
		applied = rd.committed[rd.committed_count - 1].index;
	cluster_deliver(c, rd.msgs, rd.msgs_count);
	cluster_deliver(c, rd.msgs_after, rd.msgs_after_count);
	if (last_index)
		raft_persisted(r, last_index, last_term);
	if (applied) {
		raft_applied(r, applied);
		if (applied - raft_first_index(r) > RAFT_BENCH_COMPACT_EVERY)
			raft_compact(r, applied);
	}
	return true;
}

static void cluster_pump(struct raft_bench_cluster *c)
{
	for (int rounds = 0; rounds < 1000; rounds++) {
		bool any = false;

		for (int i = 0; i < RAFT_BENCH_NODES; i++)
			any |= cluster_pump_node(c, &c->nodes[i]);
		if (!any)
			return;
	}
	ASSERT(false); /* The cluster must settle once proposals stop. */
}

static struct raft *cluster_leader(struct raft_bench_cluster *c)
{
	for (int i = 0; i < RAFT_BENCH_NODES; i++)
		if (raft_is_leader(&c->nodes[i]))
			return &c->nodes[i];
	return NULL;
}

static struct raft_bench_cluster *cluster_new(void)
{
	struct raft_bench_cluster *c = calloc(1, sizeof(*c));
	struct raft_boot boot = {0};

	ASSERT(c != NULL);
	for (uint64_t id = 1; id <= RAFT_BENCH_NODES; id++)
		raft_conf_add(&boot.snapshot.conf, id, RAFT_MEMBER_VOTER);
	for (uint64_t id = 1; id <= RAFT_BENCH_NODES; id++) {
		struct raft_config config;

		raft_config_default(&config, id, 1);
		config.uncommitted_size_max = UINT64_MAX;
		ASSERT(raft_init(&c->nodes[id - 1], &config, &boot, 0) == 0);
	}
	/* Node 1 times out first and wins; then the no-op commits. */
	c->now_ms = 5000;
	raft_tick(&c->nodes[0], c->now_ms);
	cluster_pump(c);
	ASSERT(cluster_leader(c) == &c->nodes[0]);
	memset(c->payload, 0xab, sizeof(c->payload));
	return c;
}

static void cluster_free(struct raft_bench_cluster *c)
{
	for (int i = 0; i < RAFT_BENCH_NODES; i++)
		raft_deinit(&c->nodes[i]);
	free(c);
}

static void bench_raft_commit(struct bench_state *state, void *arg)
{
	uint32_t payload_size = (uint32_t)bench_range(state, 0);
	struct raft_bench_cluster *c = cluster_new();
	struct raft *leader = cluster_leader(c);
	uint64_t commit_start = raft_commit_index(leader), first;

	(void)arg;
	for (int i = 0; i < RAFT_BENCH_BATCH; i++)
		c->bufs[i] = (struct raft_buf){.data = c->payload, .size = payload_size};
	c->messages = 0;
	while (bench_keep_running(state)) {
		ASSERT(raft_propose(leader, c->bufs, RAFT_BENCH_BATCH, &first) == 0);
		cluster_pump(c);
	}
	ASSERT(raft_commit_index(leader) == raft_last_index(leader));
	{
		int64_t entries = (int64_t)(raft_commit_index(leader) - commit_start);

		bench_set_items(state, entries);
		bench_set_bytes(state, entries * payload_size);
		bench_counter(state, "msgs_per_entry", (double)c->messages / (double)entries, 0);
	}
	cluster_free(c);
}

/* One follower and a hand-made message stream from a leader that does not exist. */
struct raft_bench_follower {
	struct raft raft;
	uint8_t payload[128];
};

static struct raft_bench_follower *follower_new(void)
{
	struct raft_bench_follower *f = calloc(1, sizeof(*f));
	struct raft_boot boot = {.hard = {.term = 1}};
	struct raft_config config;

	ASSERT(f != NULL);
	for (uint64_t id = 1; id <= RAFT_BENCH_NODES; id++)
		raft_conf_add(&boot.snapshot.conf, id, RAFT_MEMBER_VOTER);
	raft_config_default(&config, 2, 1);
	ASSERT(raft_init(&f->raft, &config, &boot, 0) == 0);
	return f;
}

static void bench_raft_step_heartbeat(struct bench_state *state, void *arg)
{
	struct raft_bench_follower *f = follower_new();
	struct raft_msg hb = {
	    .group = 1, .from = 1, .to = 2, .term = 1, .type = RAFT_MSG_HEARTBEAT};
	struct raft_ready rd;
	uint64_t now = 1;

	(void)arg;
	while (bench_keep_running(state)) {
		hb.context++;
		raft_step(&f->raft, &hb, now++);
		raft_ready(&f->raft, &rd);
		bench_do_not_optimize(&rd);
	}
	bench_set_items(state, bench_iterations(state));
	raft_deinit(&f->raft);
	free(f);
}

static void bench_raft_step_append(struct bench_state *state, void *arg)
{
	struct raft_bench_follower *f = follower_new();
	struct raft_entry entry = {.term = 1, .type = RAFT_ENTRY_NORMAL, .size = 128};
	struct raft_msg app = {.group = 1,
			       .from = 1,
			       .to = 2,
			       .term = 1,
			       .type = RAFT_MSG_APPEND,
			       .entries_count = 1,
			       .entries = &entry};
	struct raft_ready rd;
	uint64_t now = 1;

	(void)arg;
	entry.data = f->payload;
	while (bench_keep_running(state)) {
		app.index = raft_last_index(&f->raft);
		app.log_term = raft_term_at(&f->raft, app.index);
		app.commit = app.index;
		entry.index = app.index + 1;
		raft_step(&f->raft, &app, now++);
		raft_ready(&f->raft, &rd);
		if (rd.entries_count)
			raft_persisted(&f->raft, entry.index, 1);
		if (rd.committed_count) {
			uint64_t applied = rd.committed[rd.committed_count - 1].index;

			raft_applied(&f->raft, applied);
			if (applied - raft_first_index(&f->raft) > RAFT_BENCH_COMPACT_EVERY)
				raft_compact(&f->raft, applied);
		}
	}
	bench_set_items(state, bench_iterations(state));
	bench_set_bytes(state, bench_iterations(state) * (int64_t)entry.size);
	raft_deinit(&f->raft);
	free(f);
}

void bench_raft_register(void)
{
	static const int64_t payload_sizes[] = {16, 128, 4096};

	bench_register(&(struct bench_def){.name = "raft/commit",
					   .fn = bench_raft_commit,
					   .args = payload_sizes,
					   .args_count = 3,
					   .arg_name = "payload"});
	bench_register(
	    &(struct bench_def){.name = "raft/step/heartbeat", .fn = bench_raft_step_heartbeat});
	bench_register(
	    &(struct bench_def){.name = "raft/step/append", .fn = bench_raft_step_append});
}
