/* Stale reads through the public API (fl_read_stale): three in-process
 * nodes on 127.0.0.1, one group.
 *
 * - The leader answers with nothing behind, a recent contact, and its state
 *   machine at exactly the index it reports while the callback runs.
 * - Once the idle group quiesces, every replica still reports a recent
 *   contact (host liveness stands in for the heartbeats it no longer gets).
 * - A follower cut off from the rest (both other nodes stopped: writes stop)
 *   goes on answering with no bound, reports a growing time since it heard
 *   a leader, and is refused (FL_ERR_STALE) once the caller's bound is below
 *   that age.
 * - A follower that restarts behind a leader that compacted its log gets a
 *   snapshot, sent slowly on purpose (the test hook
 *   FLOTILLA_TEST_SNAPSHOT_PACE_MS): from its first chunk it knows how many
 *   entries it lacks, and is refused past an entries bound (while an
 *   unbounded read serves its older state); once caught up, it is not.
 *
 * Every wait is bounded. */
#include <errno.h>
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

#define NODES         3
#define GROUP         1
#define WAIT_MS       15000
#define PACE_MS       "800"      /* Between snapshot chunks: the lag lasts seconds. */
#define SNAP_PAD_SIZE (3u << 20) /* Snapshot bytes: four 1 MiB chunks. */

/* One node's state machine: what it applied, as the test can check it. */
struct sm {
	pthread_mutex_t lock; /* Apply runs on a shard thread; the test reads too. */
	uint64_t count;       /* Entries applied. */
	uint64_t last_index;  /* Index of the last one. */
};

static struct sm sms[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char root[512], dirs[NODES][NODE_TEST_PATH_SIZE];

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *sm = ctx;

	(void)group;
	pthread_mutex_lock(&sm->lock);
	for (uint32_t i = 0; i < count; i++) {
		sm->last_index = entries[i].index;
		results[i] = ++sm->count;
	}
	pthread_mutex_unlock(&sm->lock);
}

/* The state, then SNAP_PAD_SIZE bytes so that a transfer takes several chunks. */
static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	static const unsigned char pad[64 << 10];
	struct sm *sm = ctx;
	uint64_t v[2];
	int rv;

	(void)group;
	pthread_mutex_lock(&sm->lock);
	v[0] = sm->count, v[1] = sm->last_index;
	pthread_mutex_unlock(&sm->lock);
	rv = fl_snapshot_write(w, v, sizeof(v));
	for (uint32_t done = 0; rv == 0 && done < SNAP_PAD_SIZE; done += sizeof(pad))
		rv = fl_snapshot_write(w, pad, sizeof(pad));
	return rv;
}

static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct sm *sm = ctx;
	unsigned char buf[64 << 10];
	uint64_t v[2];
	size_t got = 0;
	long n;

	(void)group;
	while ((n = fl_snapshot_read(r, buf, sizeof(buf))) > 0) {
		if (got < sizeof(v))
			memcpy((char *)v + got, buf,
			       (size_t)n < sizeof(v) - got ? (size_t)n : sizeof(v) - got);
		got += (size_t)n;
	}
	if (n < 0)
		return (int)n;
	if (got < sizeof(v))
		return -EBADMSG;
	pthread_mutex_lock(&sm->lock);
	sm->count = v[0], sm->last_index = v[1];
	pthread_mutex_unlock(&sm->lock);
	return 0;
}

static uint64_t sm_last_index(int i)
{
	uint64_t index;

	pthread_mutex_lock(&sms[i].lock);
	index = sms[i].last_index;
	pthread_mutex_unlock(&sms[i].lock);
	return index;
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	pthread_mutex_lock(&sms[i].lock);
	sms[i].count = sms[i].last_index = 0; /* Rebuilt from the snapshot and the log. */
	pthread_mutex_unlock(&sms[i].lock);
	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 23);
	config.sm = (struct fl_sm_ops){
	    .apply = sm_apply, .save = sm_save, .restore = sm_restore, .ctx = &sms[i]};
	assert_int_equal(fl_node_start(&config, &nodes[i]), 0);
}

static void node_stop(int i)
{
	fl_node_stop(nodes[i]);
	nodes[i] = NULL;
}

/* The index of the running node leading GROUP, once one does (bounded). */
static int leader_wait(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		for (int i = 0; i < NODES; i++) {
			uint64_t leader = 0;

			if (nodes[i] != NULL && fl_group_leader(nodes[i], GROUP, &leader) == 0 &&
			    leader == (uint64_t)i + 1)
				return i;
		}
		usleep(20000);
	}
	fail_msg("no leader for group %d in %d ms", GROUP, WAIT_MS);
	return -1;
}

/* Propose count entries through the leader, following hints (bounded). */
static void propose_many(uint32_t count)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	int target = leader_wait();

	for (uint32_t k = 0; k < count;) {
		uint64_t result = 0, leader = 0;
		int rv = fl_propose_sync(nodes[target], GROUP, "entry", 5, &result, &leader);

		if (node_test_now_ms() > deadline)
			fail_msg("no leader took proposal %u in %d ms", k, WAIT_MS);
		if (rv == 0)
			k++;
		else if (rv == FL_ERR_NOT_LEADER && leader >= 1 && leader <= NODES &&
			 nodes[leader - 1] != NULL)
			target = (int)leader - 1;
		else
			usleep(20000);
	}
}

/* Wait (bounded) until node i's state machine applied up to index. */
static void applied_wait(int i, uint64_t index)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (sm_last_index(i) < index) {
		if (node_test_now_ms() > deadline)
			fail_msg("node %d applied %llu, not %llu, in %d ms", i + 1,
				 (unsigned long long)sm_last_index(i), (unsigned long long)index,
				 WAIT_MS);
		usleep(10000);
	}
}

/* A stale read whose callback looks at the state machine while it runs. */
struct stale_call {
	struct fl_stale_read read;
	int node;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
	uint64_t result;
	uint64_t sm_index; /* The state machine's last applied entry, seen from the callback. */
};

static void stale_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct stale_call *c = arg;
	uint64_t sm_index = sm_last_index(c->node);

	(void)leader;
	pthread_mutex_lock(&c->lock);
	c->rv = rv;
	c->result = result;
	c->sm_index = sm_index;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* fl_read_stale() on node i with these bounds, waited for. */
static int stale_read(int i, uint64_t behind_max, uint64_t age_max_ms, struct stale_call *c)
{
	int rv;

	*c = (struct stale_call){.read = {.behind_max = behind_max, .age_max_ms = age_max_ms},
				 .node = i};
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	rv = fl_read_stale(nodes[i], GROUP, &c->read, stale_done, c);
	if (rv == 0) {
		pthread_mutex_lock(&c->lock);
		while (!c->done)
			pthread_cond_wait(&c->cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
		rv = c->rv;
	}
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	return rv;
}

struct snap_wait {
	_Atomic bool done;
	_Atomic int rv;
	_Atomic uint64_t index;
};

static void snap_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct snap_wait *w = arg;

	(void)leader;
	atomic_store(&w->index, result);
	atomic_store(&w->rv, rv);
	atomic_store(&w->done, true);
}

/* fl_group_snapshot() on node i, waited for (bounded): its log is compacted
 * up to the index returned. */
static uint64_t snapshot_now(int i)
{
	struct snap_wait w = {0};
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	assert_int_equal(fl_group_snapshot(nodes[i], GROUP, snap_done, &w), 0);
	while (!atomic_load(&w.done)) {
		if (node_test_now_ms() > deadline)
			fail_msg("no snapshot on node %d in %d ms", i + 1, WAIT_MS);
		usleep(10000);
	}
	assert_int_equal(atomic_load(&w.rv), 0);
	return atomic_load(&w.index);
}

static int cluster_setup(void **state)
{
	uint64_t members[NODES] = {1, 2, 3};

	(void)state;
	assert_true(node_test_root(root, sizeof(root), "stale-test"));
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
		if (nodes[i])
			node_stop(i);
	assert_true(node_test_remove(root));
	return 0;
}

/* The leader is never behind itself, heard a quorum within an election
 * timeout, and its state machine holds what it reports while cb runs. */
static void test_leader_stale_read_is_not_behind(void **state)
{
	struct stale_call c;
	uint64_t applied;
	int leader;

	(void)state;
	propose_many(10);
	leader = leader_wait();
	/* Bounds of one entry and an election timeout: a healthy leader meets both. */
	assert_int_equal(stale_read(leader, 1, 300, &c), 0);
	assert_true(c.read.is_leader);
	assert_int_equal(c.read.entries_behind, 0);
	assert_int_equal(c.read.applied_index, c.read.leader_commit);
	assert_int_equal(c.result, c.read.applied_index);
	assert_int_equal(c.sm_index, c.read.applied_index);
	assert_true(c.read.applied_index >= 10);
	assert_true(c.read.contact_age_ms <= 300);
	applied = c.read.applied_index;
	for (int i = 0; i < NODES; i++) {
		applied_wait(i, applied);
		assert_int_equal(stale_read(i, 0, 0, &c), 0);
		assert_int_equal(c.read.applied_index, applied);
		assert_int_equal(c.sm_index, applied);
	}
}

/* An idle group quiesces (no heartbeats of its own): its replicas' figures
 * fall back on host liveness, so they stay fresh instead of ageing. */
static void test_quiesced_group_stays_fresh(void **state)
{
	struct stale_call c;

	(void)state;
	propose_many(1);
	/* Quiescence comes after three election timeouts (900 ms) idle. */
	usleep(2000 * 1000);
	for (int i = 0; i < NODES; i++) {
		assert_int_equal(stale_read(i, 0, 300, &c), 0);
		assert_true(c.read.contact_age_ms <= 300);
		assert_int_equal(c.read.entries_behind, 0);
	}
}

/* Cut off from every other node, a follower serves what it has, says how
 * long it has heard nothing, and refuses a caller whose bound is below that. */
static void test_cut_off_follower_ages_and_refuses_past_the_bound(void **state)
{
	struct stale_call c;
	uint64_t applied, age, deadline;
	int leader, f;

	(void)state;
	propose_many(5);
	leader = leader_wait();
	f = (leader + 1) % NODES;
	assert_int_equal(stale_read(leader, 0, 0, &c), 0);
	applied_wait(f, c.read.applied_index);
	for (int i = 0; i < NODES; i++)
		if (i != f)
			node_stop(i); /* Writes stop: no quorum is left. */

	/* The first node stopped may have made f leader for a moment (a fast
	 * takeover); without a quorum it steps down within an election timeout. */
	deadline = node_test_now_ms() + WAIT_MS;
	do {
		assert_true(node_test_now_ms() < deadline);
		assert_int_equal(stale_read(f, 0, 0, &c), 0);
	} while (c.read.is_leader && usleep(20000) == 0);
	applied = c.read.applied_index;
	age = c.read.contact_age_ms;
	assert_true(c.sm_index <= applied); /* Its last entry may be a no-op. */
	usleep(600 * 1000);
	assert_int_equal(stale_read(f, 0, 0, &c), 0);
	assert_int_equal(c.read.applied_index, applied);
	assert_true(c.read.contact_age_ms != FL_STALE_AGE_UNKNOWN);
	assert_true(c.read.contact_age_ms >= age + 550); /* It grows with the silence. */
	age = c.read.contact_age_ms;

	/* A bound below the age: refused, with the figures that say why. */
	assert_int_equal(stale_read(f, 0, age / 2, &c), FL_ERR_STALE);
	assert_true(c.read.contact_age_ms > age / 2);
	assert_int_equal(c.read.applied_index, applied);
	assert_string_not_equal(fl_strerror(FL_ERR_STALE), "unknown error");
	/* A bound above it: served. An entries bound alone: served (nothing new is known). */
	assert_int_equal(stale_read(f, 0, age + 60000, &c), 0);
	assert_int_equal(stale_read(f, 1, 0, &c), 0);
	assert_int_equal(c.read.entries_behind, 0);
	assert_true(c.sm_index <= applied); /* Its last entry may be a no-op. */

	for (int i = 0; i < NODES; i++)
		if (i != f)
			node_start(i);
	leader_wait();
}

/* A follower restarted behind a compacted log knows the leader's commit
 * index before the snapshot that brings it arrives: it is refused past an
 * entries bound until it has caught up. */
static void test_lagging_follower_refuses_past_the_entries_bound(void **state)
{
	struct stale_call c;
	uint64_t deadline, target, snap_index;
	bool refused = false;
	int leader, f;

	(void)state;
	leader = leader_wait();
	f = (leader + 1) % NODES;
	node_stop(f);
	propose_many(40);
	leader = leader_wait();
	snap_index = snapshot_now(leader);
	assert_int_equal(stale_read(leader, 0, 0, &c), 0);
	target = c.read.applied_index;
	node_start(f);

	/* The snapshot takes seconds (paced); its first chunk tells its index
	 * at once. (A refusal may come earlier too, in the moment a heartbeat
	 * moved the commit index and the entries are not applied yet.) */
	deadline = node_test_now_ms() + WAIT_MS;
	while (!refused && node_test_now_ms() < deadline) {
		int rv = stale_read(f, 10, 0, &c);

		if (rv == FL_ERR_STALE) {
			assert_true(c.read.entries_behind > 10);
			assert_int_equal(c.read.entries_behind,
					 c.read.leader_commit - c.read.applied_index);
			refused = c.read.leader_commit >= snap_index;
		}
		if (refused) {
			/* Without a bound the same replica serves its older state. */
			assert_int_equal(stale_read(f, 0, 0, &c), 0);
			assert_true(c.read.applied_index < snap_index);
			/* Its state as of that index (whose last entry may not be a write). */
			assert_true(c.sm_index <= c.read.applied_index);
		} else {
			assert_true(rv == 0 || rv == -EAGAIN || rv == FL_ERR_STALE);
			usleep(20000);
		}
	}
	assert_true(refused);

	applied_wait(f, target);
	deadline = node_test_now_ms() + WAIT_MS;
	while (stale_read(f, 10, 0, &c) != 0) {
		if (node_test_now_ms() > deadline)
			fail_msg("caught-up node %d still refused: %llu behind", f + 1,
				 (unsigned long long)c.read.entries_behind);
		usleep(20000);
	}
	assert_true(c.read.applied_index >= target);
	assert_true(c.read.entries_behind <= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_leader_stale_read_is_not_behind),
	    cmocka_unit_test(test_quiesced_group_stays_fresh),
	    cmocka_unit_test(test_cut_off_follower_ages_and_refuses_past_the_bound),
	    cmocka_unit_test(test_lagging_follower_refuses_past_the_entries_bound),
	};

	/* Test builds only: one snapshot chunk per transfer every PACE_MS. */
	setenv("FLOTILLA_TEST_SNAPSHOT_PACE_MS", PACE_MS, 1);
	return cmocka_run_group_tests(tests, cluster_setup, cluster_teardown);
}
