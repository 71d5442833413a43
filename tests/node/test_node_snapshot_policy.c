/* The snapshot policy through the public API: one in-process node, one
 * group, a state machine whose snapshot is a fixed number of bytes (its
 * "state"), and entries of 1 KiB proposed one at a time, so that every
 * entry is applied in a turn of its own and the policy is asked after each.
 *
 * The floor is SNAPSHOT_FLOOR entries, the ratio 50%:
 *   - a 128 KiB state snapshots once per 64 KiB applied (16 times over
 *     1 MiB), not every SNAPSHOT_FLOOR entries (128 times, the fixed count);
 *     the bytes written are counted (snapshot_bytes_written);
 *   - after a restart the group knows its snapshot's size from the
 *     manifest: 32 KiB more take no snapshot, 72 KiB take one;
 *   - a 64-byte state snapshots at the floor, every SNAPSHOT_FLOOR entries.
 * Every wait is bounded. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define GROUP          1
#define ENTRY_SIZE     1024
#define SNAPSHOT_FLOOR 8
#define RATIO_PERCENT  50
#define LARGE_SIZE     (128u * 1024)
#define TINY_SIZE      64u
#define WAIT_MS        10000

/* The state machine: its snapshot is state_size bytes of a pattern. */
struct sm {
	uint32_t state_size;
	_Atomic uint64_t applied;
	_Atomic uint64_t restored_size; /* Bytes the last restore read. */
};

static struct sm sm;
static uint16_t port;

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *m = ctx;

	(void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = atomic_fetch_add(&m->applied, 1) + 1;
}

static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct sm *m = ctx;
	char chunk[4096];
	int rv = 0;

	(void)group;
	memset(chunk, 0x5a, sizeof(chunk));
	for (uint32_t at = 0; at < m->state_size && rv == 0; at += sizeof(chunk)) {
		uint32_t n = m->state_size - at < sizeof(chunk) ? m->state_size - at
								: (uint32_t)sizeof(chunk);

		rv = fl_snapshot_write(w, chunk, n);
	}
	return rv;
}

static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct sm *m = ctx;
	char chunk[4096];
	uint64_t size = 0;
	long n;

	(void)group;
	while ((n = fl_snapshot_read(r, chunk, sizeof(chunk))) > 0)
		size += (uint64_t)n;
	if (n < 0)
		return (int)n;
	atomic_store(&m->restored_size, size);
	return 0;
}

static struct fl_node *node_start(const char *dir)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;
	struct fl_node *node;

	node_test_config(&config, &addrs, 0, 1, &port, dir, 21);
	config.snapshot_entries = SNAPSHOT_FLOOR;
	config.snapshot_ratio_percent = RATIO_PERCENT;
	config.check_entries = 0;
	config.sm = (struct fl_sm_ops){
	    .apply = sm_apply, .save = sm_save, .restore = sm_restore, .ctx = &sm};
	CHECK(fl_node_start(&config, &node) == 0);
	return node;
}

/* Propose count entries of ENTRY_SIZE, each once the one before applied. */
static void propose_many(struct fl_node *node, uint32_t count)
{
	static char payload[ENTRY_SIZE];
	uint64_t deadline = node_test_now_ms() + WAIT_MS + (uint64_t)count * 20;

	for (uint32_t k = 0; k < count;) {
		uint64_t result = 0, leader = 0;

		CHECK(node_test_now_ms() < deadline);
		if (fl_propose_sync(node, GROUP, payload, sizeof(payload), &result, &leader) == 0)
			k++;
		else
			usleep(20000); /* Not the leader yet. */
	}
}

/* The shard's counters, once the turn that applied the last entry (and
 * took any snapshot after it) is over: they stop changing. */
static struct fl_shard_metrics metrics_settled(struct fl_node *node)
{
	struct fl_shard_metrics m, again;

	CHECK(fl_shard_metrics(node, 0, &m) == 0);
	for (int i = 0; i < 50; i++) { /* Two reads 100 ms apart agree: at most 5 s. */
		usleep(100000);
		CHECK(fl_shard_metrics(node, 0, &again) == 0);
		if (again.snapshots_taken == m.snapshots_taken && again.applied == m.applied)
			break;
		m = again;
	}
	return again;
}

struct snapshot_wait {
	_Atomic int done;
	_Atomic int rv;
};

static void snapshot_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct snapshot_wait *w = arg;

	(void)result, (void)leader;
	atomic_store(&w->rv, rv);
	atomic_store(&w->done, 1);
}

static void snapshot_now(struct fl_node *node)
{
	struct snapshot_wait w = {0};
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	CHECK(fl_group_snapshot(node, GROUP, snapshot_done, &w) == 0);
	while (!atomic_load(&w.done) && node_test_now_ms() < deadline)
		usleep(10000);
	CHECK(atomic_load(&w.done) && atomic_load(&w.rv) == 0);
}

static struct fl_node *group_start(const char *dir)
{
	static const uint64_t members[] = {1};
	struct fl_node *node = node_start(dir);

	CHECK(fl_group_create(node, GROUP, members, 1, NULL, NULL) == 0);
	return node;
}

/* A large state snapshots by the ratio, and a restart keeps its size. */
static void check_large_state(const char *dir)
{
	const uint64_t user = 1024 * ENTRY_SIZE, per = LARGE_SIZE / 2;
	struct fl_shard_metrics m;
	struct fl_node *node;

	sm = (struct sm){.state_size = LARGE_SIZE};
	node = group_start(dir);
	propose_many(node, 1024);
	m = metrics_settled(node);
	printf("large state: %llu snapshots, %llu bytes written for %llu applied "
	       "(ratio rule: about %llu; fixed count: %u)\n",
	       (unsigned long long)m.snapshots_taken, (unsigned long long)m.snapshot_bytes_written,
	       (unsigned long long)user, (unsigned long long)(user / per), 1024 / SNAPSHOT_FLOOR);
	/* The first at the floor (no snapshot yet), then one per 64 KiB. */
	CHECK(m.snapshots_taken >= user / per - 1 && m.snapshots_taken <= user / per + 1);
	CHECK(m.snapshot_bytes_written == m.snapshots_taken * LARGE_SIZE);
	CHECK(m.snapshot_bytes_written <= 2 * user + LARGE_SIZE);

	snapshot_now(node); /* Nothing applied since the last one. */
	fl_node_stop(node);
	node = node_start(dir);
	CHECK(atomic_load(&sm.restored_size) == LARGE_SIZE);
	propose_many(node, 32); /* 32 KiB: under half the snapshot's size. */
	m = metrics_settled(node);
	printf("after a restart: %llu snapshots for 32 KiB applied\n",
	       (unsigned long long)m.snapshots_taken);
	CHECK(m.snapshots_taken == 0);
	propose_many(node, 40); /* 72 KiB in all. */
	m = metrics_settled(node);
	printf("after a restart: %llu snapshots for 72 KiB applied\n",
	       (unsigned long long)m.snapshots_taken);
	CHECK(m.snapshots_taken == 1);
	fl_node_stop(node);
}

/* A tiny state snapshots at the floor. */
static void check_tiny_state(const char *dir)
{
	struct fl_shard_metrics m;
	struct fl_node *node;

	sm = (struct sm){.state_size = TINY_SIZE};
	node = group_start(dir);
	propose_many(node, 1024);
	m = metrics_settled(node);
	printf("tiny state: %llu snapshots for 1024 entries (floor: every %u)\n",
	       (unsigned long long)m.snapshots_taken, SNAPSHOT_FLOOR);
	CHECK(m.snapshots_taken >= 1024 / SNAPSHOT_FLOOR - 1 &&
	      m.snapshots_taken <= 1024 / SNAPSHOT_FLOOR + 1);
	fl_node_stop(node);
}

int main(void)
{
	char root[] = "flotilla-snappolicy-XXXXXX", large[64], tiny[64], cmd[128];

	CHECK(mkdtemp(root) != NULL);
	snprintf(large, sizeof(large), "%s/large", root);
	snprintf(tiny, sizeof(tiny), "%s/tiny", root);
	port = node_test_free_port();
	CHECK(port != 0);
	check_large_state(large);
	check_tiny_state(tiny);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK(system(cmd) == 0);
	printf("ok\n");
	return 0;
}
