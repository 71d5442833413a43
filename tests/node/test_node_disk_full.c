/* A full disk through the public API: three in-process nodes on 127.0.0.1,
 * one shard each, with the test fault FLOTILLA_TEST_NO_SPACE on: while the
 * file <wal dir>.no-space exists, every WAL segment preallocation of that
 * node fails with ENOSPC, as on a full file system.
 *
 * Entries of 4 KiB go through group 1 until the full node's WAL has used up
 * its spare segment and says so (metric shards_no_space). From then on:
 * - a full follower drops new entries and the other two go on committing;
 * - a full leader hands its leadership to a peer, and a group that has no
 *   other member refuses writes with FL_ERR_NO_SPACE while reads go on;
 * - once the file is removed, the node resumes by itself and catches up.
 * Every proposal is recorded with its outcome: each acknowledged one is
 * applied exactly once on every node, in the same order, and none refused
 * (not the leader, transfer, no space) is ever applied. Every wait is
 * bounded. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES        3
#define GROUP        1
#define SOLO_GROUP   2 /* Only one member: its leadership cannot move. */
#define ENTRY_SIZE   4096
#define IDS_MAX      6000 /* Enough to fill a 4 MiB segment and more. */
#define WINDOW       32
#define BEHIND_COUNT 768 /* Entries written while a follower is full: 3 MiB. */
#define WAIT_MS      20000
#define SEGMENT_SIZE (4u << 20) /* The smallest the node takes (four 1 MiB batches). */

enum outcome {
	OUTCOME_NONE = 0, /* Not sent, or no answer yet. */
	OUTCOME_ACKED,
	OUTCOME_REFUSED, /* Never proposed: must never be applied. */
	OUTCOME_UNKNOWN, /* Any other error: may or may not be applied. */
};

/* One node's state machine: the ids of group 1's entries in apply order. */
struct sm {
	pthread_mutex_t lock;
	uint32_t ids[IDS_MAX];
	uint32_t count;
	uint32_t solo_count; /* Entries of SOLO_GROUP. */
};

static struct sm sms[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char root[512], dirs[NODES][NODE_TEST_PATH_SIZE];
static _Atomic int outcomes[IDS_MAX];
static _Atomic int pending;
static _Atomic uint32_t refused_no_space;
static uint32_t next_id;

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *sm = ctx;

	pthread_mutex_lock(&sm->lock);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t id = 0;

		if (group == SOLO_GROUP) {
			sm->solo_count++;
		} else if (entries[i].size == ENTRY_SIZE && sm->count < IDS_MAX) {
			memcpy(&id, entries[i].data, sizeof(id));
			sm->ids[sm->count++] = id;
		}
		results[i] = id;
	}
	pthread_mutex_unlock(&sm->lock);
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 17);
	config.entry_size_max = 2 * ENTRY_SIZE;
	config.wal_segment_size = SEGMENT_SIZE;
	config.snapshot_entries = 0; /* No compaction: the disk fills. */
	config.check_entries = 0;
	config.sm = (struct fl_sm_ops){.apply = sm_apply, .ctx = &sms[i]};
	assert_int_equal(fl_node_start(&config, &nodes[i]), 0);
}

static int cluster_setup(void **state)
{
	uint64_t members[NODES] = {1, 2, 3};

	(void)state;
	assert_int_equal(setenv("FLOTILLA_TEST_NO_SPACE", "1", 1), 0);
	assert_true(node_test_root(root, sizeof(root), "disk-full-test"));
	memset(sms, 0, sizeof(sms));
	for (uint32_t i = 0; i < IDS_MAX; i++)
		atomic_store(&outcomes[i], OUTCOME_NONE);
	atomic_store(&refused_no_space, 0);
	next_id = 1;
	for (int i = 0; i < NODES; i++)
		pthread_mutex_init(&sms[i].lock, NULL);
	assert_true(node_test_nodes(root, NODES, dirs, ports));
	for (int i = 0; i < NODES; i++)
		node_start(i);
	for (int i = 0; i < NODES; i++)
		assert_int_equal(fl_group_create(nodes[i], GROUP, members, NODES, NULL, NULL), 0);
	return 0;
}

static int cluster_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NODES; i++)
		if (nodes[i]) {
			fl_node_stop(nodes[i]);
			nodes[i] = NULL;
		}
	assert_true(node_test_remove(root));
	return 0;
}

/* Fill or free node i's disk: the test fault's file. */
static void disk_set_full(int i, bool full)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/shard-0.no-space", dirs[i]);
	if (full) {
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		close(fd);
	} else {
		assert_int_equal(unlink(path), 0);
	}
}

static struct fl_metrics metrics_of(int i)
{
	struct fl_metrics m;

	fl_node_metrics(nodes[i], &m);
	return m;
}

/* The index of a node that leads group 1 right now, or -1. */
static int leader_now(void)
{
	for (int i = 0; i < NODES; i++) {
		uint64_t leader = 0;

		if (fl_group_leader(nodes[i], GROUP, &leader) == 0 && leader == (uint64_t)i + 1)
			return i;
	}
	return -1;
}

static int leader_wait(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	int leader;

	while ((leader = leader_now()) < 0 && node_test_now_ms() < deadline)
		usleep(20000);
	if (leader < 0)
		fail_msg("no leader for group %d in %d ms", GROUP, WAIT_MS);
	return leader;
}

static void proposed(void *arg, int rv, uint64_t result, uint64_t leader)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	int outcome = OUTCOME_UNKNOWN;

	(void)result;
	(void)leader;
	if (rv == 0)
		outcome = OUTCOME_ACKED;
	else if (rv == FL_ERR_NOT_LEADER || rv == FL_ERR_TRANSFER || rv == FL_ERR_NO_SPACE ||
		 rv == FL_ERR_DROPPED)
		outcome = OUTCOME_REFUSED; /* Not proposed, or dropped unapplied. */
	if (rv == FL_ERR_NO_SPACE)
		atomic_fetch_add(&refused_no_space, 1);
	atomic_store(&outcomes[id], outcome);
	atomic_fetch_sub(&pending, 1);
}

/* Propose up to WINDOW new entries through the current leader and wait
 * (bounded) for their answers. Returns how many were acknowledged. */
static uint32_t write_window(void)
{
	uint8_t payload[ENTRY_SIZE];
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	int leader = leader_wait();
	uint32_t first = next_id, acked = 0;

	memset(payload, 'x', sizeof(payload));
	for (uint32_t k = 0; k < WINDOW && next_id < IDS_MAX; k++) {
		uint32_t id = next_id++;

		memcpy(payload, &id, sizeof(id));
		atomic_fetch_add(&pending, 1);
		if (fl_propose(nodes[leader], GROUP, payload, ENTRY_SIZE, proposed,
			       (void *)(uintptr_t)id) != 0) {
			atomic_store(&outcomes[id], OUTCOME_REFUSED);
			atomic_fetch_sub(&pending, 1);
		}
	}
	while (atomic_load(&pending) > 0 && node_test_now_ms() < deadline)
		usleep(1000);
	if (atomic_load(&pending) > 0)
		fail_msg("proposals unanswered after %d ms", WAIT_MS);
	for (uint32_t id = first; id < next_id; id++)
		acked += atomic_load(&outcomes[id]) == OUTCOME_ACKED;
	return acked;
}

/* Write until node i's WAL says it is out of space (bounded by IDS_MAX). */
static void write_until_full(int i)
{
	while (metrics_of(i).shards_no_space == 0) {
		if (next_id >= IDS_MAX)
			fail_msg("node %d never ran out of space in %d entries", i + 1, IDS_MAX);
		write_window();
	}
}

/* Write count more entries, retrying windows that got nothing through
 * (bounded); returns how many were acknowledged. */
static uint32_t write_some(uint32_t count)
{
	uint32_t acked = 0;

	for (int tries = 0; acked < count && tries < 200 && next_id + WINDOW < IDS_MAX; tries++) {
		uint32_t got = write_window();

		acked += got;
		if (got == 0)
			usleep(50000); /* A leader change under way. */
	}
	return acked;
}

static uint32_t acked_count(void)
{
	uint32_t n = 0;

	for (uint32_t id = 0; id < IDS_MAX; id++)
		n += atomic_load(&outcomes[id]) == OUTCOME_ACKED;
	return n;
}

static uint32_t sm_count(int i)
{
	uint32_t count;

	pthread_mutex_lock(&sms[i].lock);
	count = sms[i].count;
	pthread_mutex_unlock(&sms[i].lock);
	return count;
}

/* Wait (bounded) until every node applied at least count entries of group 1. */
static void wait_applied(uint32_t count)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	for (int i = 0; i < NODES; i++) {
		while (sm_count(i) < count && node_test_now_ms() < deadline)
			usleep(10000);
		if (sm_count(i) < count)
			fail_msg("node %d applied %u of %u entries in %d ms", i + 1, sm_count(i),
				 count, WAIT_MS);
	}
}

/* Every node applied the same ids in the same order, each at most once;
 * every acknowledged id is there and no refused one is. */
static void check_nothing_lost(void)
{
	static uint8_t seen[IDS_MAX];
	uint32_t acked = acked_count();

	wait_applied(acked);
	for (int i = 0; i < NODES; i++)
		pthread_mutex_lock(&sms[i].lock);
	for (int i = 1; i < NODES; i++) {
		assert_int_equal(sms[i].count, sms[0].count);
		assert_memory_equal(sms[i].ids, sms[0].ids, sms[0].count * sizeof(uint32_t));
	}
	memset(seen, 0, sizeof(seen));
	for (uint32_t k = 0; k < sms[0].count; k++) {
		uint32_t id = sms[0].ids[k];

		assert_true(id > 0 && id < IDS_MAX);
		assert_int_equal(seen[id], 0); /* Applied once. */
		seen[id] = 1;
		assert_int_not_equal(atomic_load(&outcomes[id]), OUTCOME_REFUSED);
	}
	for (uint32_t id = 1; id < IDS_MAX; id++)
		if (atomic_load(&outcomes[id]) == OUTCOME_ACKED && !seen[id])
			fail_msg("acknowledged entry %u was lost", id);
	for (int i = 0; i < NODES; i++)
		pthread_mutex_unlock(&sms[i].lock);
}

static void wait_space_back(int i)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (metrics_of(i).shards_no_space != 0 && node_test_now_ms() < deadline)
		usleep(20000);
	assert_int_equal(metrics_of(i).shards_no_space, 0);
}

/* A follower runs out of space: the other two commit without it; it drops
 * what it cannot store, keeps what it acknowledged (also across a restart
 * while still full), and catches up once space returns. */
static void test_full_follower_drops_entries_and_catches_up(void **state)
{
	uint64_t hint = 0;
	int leader, full;
	uint32_t behind;

	(void)state;
	leader = leader_wait();
	full = (leader + 1) % NODES;
	assert_true(write_some(WINDOW) >= WINDOW);
	disk_set_full(full, true);
	write_until_full(full);
	print_message("node %d out of space after %u entries\n", full + 1, next_id - 1);

	/* Two of three commit: every write goes through, without the full node,
	 * which falls more than an append's worth behind (3 MiB: it must take
	 * that back in pieces). */
	assert_true(write_some(BEHIND_COUNT) >= BEHIND_COUNT);
	behind = sm_count(full);
	assert_true(behind < acked_count());
	assert_true(metrics_of(full).appends_dropped_no_space > 0);
	assert_int_equal(metrics_of(full).shards_no_space, 1);
	assert_int_equal(fl_read_sync(nodes[leader_wait()], GROUP, &hint), 0);

	/* Restarted while still full, it knows at once (its WAL has no spare). */
	fl_node_stop(nodes[full]);
	pthread_mutex_lock(&sms[full].lock);
	sms[full].count = 0; /* Its state machine is rebuilt from the log. */
	pthread_mutex_unlock(&sms[full].lock);
	node_start(full);
	assert_int_equal(metrics_of(full).shards_no_space, 1);
	assert_true(write_some(WINDOW) >= WINDOW);

	/* Space returns: it resumes by itself and catches up. */
	disk_set_full(full, false);
	wait_space_back(full);
	assert_true(write_some(2 * WINDOW) >= 2 * WINDOW);
	check_nothing_lost();
	assert_true(sm_count(full) > behind);
}

/* The leader runs out of space: it hands leadership over, writes go on
 * through the new leader, and a group with no other member refuses writes
 * with FL_ERR_NO_SPACE (and still serves reads) until space returns. */
static void test_full_leader_hands_over_and_solo_group_refuses(void **state)
{
	uint64_t solo_members[1], result = 0, hint = 0;
	int leader, rv;

	(void)state;
	leader = leader_wait();
	solo_members[0] = (uint64_t)leader + 1;
	assert_int_equal(fl_group_create(nodes[leader], SOLO_GROUP, solo_members, 1, NULL, NULL),
			 0);
	for (int i = 0; i < WAIT_MS / 20 && hint != solo_members[0]; i++) {
		if (fl_group_leader(nodes[leader], SOLO_GROUP, &hint) != 0 ||
		    hint != solo_members[0])
			usleep(20000);
	}
	assert_int_equal(hint, solo_members[0]); /* It elected itself. */
	assert_true(write_some(WINDOW) >= WINDOW);
	disk_set_full(leader, true);
	write_until_full(leader);
	print_message("node %d (leader) out of space after %u entries\n", leader + 1, next_id - 1);

	/* Writes go on through another node. */
	assert_true(write_some(4 * WINDOW) >= 4 * WINDOW);
	assert_int_not_equal(leader_wait(), leader);

	/* The solo group cannot move: clear refusal, nothing proposed. */
	rv = fl_propose_sync(nodes[leader], SOLO_GROUP, "solo", 4, &result, &hint);
	assert_int_equal(rv, FL_ERR_NO_SPACE);
	assert_non_null(strstr(fl_strerror(rv), "no space left"));
	assert_true(metrics_of(leader).writes_refused_no_space > 0);
	assert_int_equal(fl_read_sync(nodes[leader], SOLO_GROUP, &hint), 0);

	disk_set_full(leader, false);
	wait_space_back(leader);
	assert_int_equal(fl_propose_sync(nodes[leader], SOLO_GROUP, "solo", 4, &result, &hint), 0);
	assert_true(write_some(2 * WINDOW) >= 2 * WINDOW);
	check_nothing_lost();
	print_message("acknowledged %u, refused for no space %u\n", acked_count(),
		      atomic_load(&refused_no_space));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_full_follower_drops_entries_and_catches_up,
					    cluster_setup, cluster_teardown),
	    cmocka_unit_test_setup_teardown(test_full_leader_hands_over_and_solo_group_refuses,
					    cluster_setup, cluster_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
