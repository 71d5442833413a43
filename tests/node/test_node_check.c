/* Consistency checks through the public API: three in-process nodes on
 * 127.0.0.1, one group, a check every CHECK_ENTRIES entries.
 *
 * The state machine keeps, per group, a hash chain over the payloads it
 * applied and supplies it as its digest. The test corrupts that state on one
 * follower behind the library's back, then writes one check interval's worth
 * of entries and no more: the follower must report the divergence (metric,
 * event, FL_ERR_DIVERGED on reads) while the other two keep serving reads.
 * Then fl_group_rebuild() repairs the corrupted replicas from the leader's
 * snapshot, and a corrupted leader is found once leadership moves. Every
 * wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES         3
#define GROUP         1
#define CHECK_ENTRIES 16
#define WAIT_MS       10000

/* One node's state machine for GROUP. */
struct sm {
	pthread_mutex_t lock; /* Apply runs on a shard thread; the test reads too. */
	uint64_t state;       /* Hash chain over applied payloads: the "data". */
	uint64_t count;
	_Atomic uint32_t diverged_events;
	_Atomic uint64_t diverged_index, diverged_local, diverged_leader;
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
		sm->state = XXH3_64bits_withSeed(entries[i].data, entries[i].size, sm->state);
		results[i] = ++sm->count;
	}
	pthread_mutex_unlock(&sm->lock);
}

static uint64_t sm_digest(void *ctx, uint64_t group)
{
	struct sm *sm = ctx;
	uint64_t digest;

	(void)group;
	pthread_mutex_lock(&sm->lock);
	digest = XXH3_64bits_withSeed(&sm->count, sizeof(sm->count), sm->state);
	pthread_mutex_unlock(&sm->lock);
	return digest;
}

static void sm_diverged(void *ctx, uint64_t group, uint64_t index, uint64_t local, uint64_t leader)
{
	struct sm *sm = ctx;

	(void)group;
	atomic_store(&sm->diverged_index, index);
	atomic_store(&sm->diverged_local, local);
	atomic_store(&sm->diverged_leader, leader);
	atomic_fetch_add(&sm->diverged_events, 1);
}

static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct sm *sm = ctx;
	uint64_t v[2];

	(void)group;
	pthread_mutex_lock(&sm->lock);
	v[0] = sm->state, v[1] = sm->count;
	pthread_mutex_unlock(&sm->lock);
	return fl_snapshot_write(w, v, sizeof(v));
}

static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct sm *sm = ctx;
	uint64_t v[2];
	size_t got = 0;

	(void)group;
	while (got < sizeof(v)) {
		long n = fl_snapshot_read(r, (char *)v + got, sizeof(v) - got);

		if (n <= 0)
			return n < 0 ? (int)n : -EBADMSG;
		got += (size_t)n;
	}
	pthread_mutex_lock(&sm->lock);
	sm->state = v[0], sm->count = v[1];
	pthread_mutex_unlock(&sm->lock);
	return 0;
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 11);
	config.check_entries = CHECK_ENTRIES;
	config.snapshot_entries = 1000;
	config.sm = (struct fl_sm_ops){.apply = sm_apply,
				       .save = sm_save,
				       .restore = sm_restore,
				       .digest = sm_digest,
				       .diverged = sm_diverged,
				       .ctx = &sms[i]};
	assert_int_equal(fl_node_start(&config, &nodes[i]), 0);
}

/* The index of the node leading GROUP, once one does (bounded). */
static int leader_wait(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		for (int i = 0; i < NODES; i++) {
			uint64_t leader = 0;

			if (fl_group_leader(nodes[i], GROUP, &leader) == 0 &&
			    leader == (uint64_t)i + 1)
				return i;
		}
		usleep(20000);
	}
	fail_msg("no leader for group %d in %d ms", GROUP, WAIT_MS);
	return -1;
}

/* Propose one entry through the leader, following hints (bounded). */
static void propose(const char *payload)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	int target = leader_wait();

	while (node_test_now_ms() < deadline) {
		uint64_t result = 0, leader = 0;
		int rv = fl_propose_sync(nodes[target], GROUP, payload, (uint32_t)strlen(payload),
					 &result, &leader);

		if (rv == 0)
			return;
		if (rv == FL_ERR_NOT_LEADER && leader >= 1 && leader <= NODES)
			target = (int)leader - 1;
		else
			usleep(20000);
	}
	fail_msg("no leader took a proposal in %d ms", WAIT_MS);
}

static void propose_many(uint32_t count, const char *tag)
{
	for (uint32_t k = 0; k < count; k++) {
		char payload[64];

		snprintf(payload, sizeof(payload), "%s-%u", tag, k);
		propose(payload);
	}
}

static uint64_t sm_count(int i)
{
	uint64_t count;

	pthread_mutex_lock(&sms[i].lock);
	count = sms[i].count;
	pthread_mutex_unlock(&sms[i].lock);
	return count;
}

static struct fl_metrics metrics_of(int i)
{
	struct fl_metrics m;

	fl_node_metrics(nodes[i], &m);
	return m;
}

/* Wait (bounded) until every node applied count entries and compared at
 * least checks checks. */
static void wait_applied_and_checked(uint64_t count, uint64_t checks)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	for (;;) {
		bool all = true;

		for (int i = 0; i < NODES; i++)
			all = all && sm_count(i) == count && metrics_of(i).checks >= checks;
		if (all)
			return;
		if (node_test_now_ms() > deadline)
			fail_msg("replicas did not apply %llu entries and %llu checks in %d ms",
				 (unsigned long long)count, (unsigned long long)checks, WAIT_MS);
		usleep(10000);
	}
}

/* Wait (bounded) until node i counts a divergence; false on timeout. */
static bool wait_divergence(int i, uint64_t ms)
{
	uint64_t deadline = node_test_now_ms() + ms;

	while (node_test_now_ms() < deadline) {
		if (metrics_of(i).divergences > 0)
			return true;
		usleep(10000);
	}
	return false;
}

static void corrupt(int i)
{
	pthread_mutex_lock(&sms[i].lock);
	sms[i].state ^= 0x1; /* One bit of one replica's data, behind Raft's back. */
	pthread_mutex_unlock(&sms[i].lock);
}

static int cluster_setup(void **state)
{
	uint64_t members[NODES] = {1, 2, 3};

	(void)state;
	assert_true(node_test_root(root, sizeof(root), "check-test"));
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
			fl_node_stop(nodes[i]);
	assert_true(node_test_remove(root));
	return 0;
}

/* Healthy replicas compare equal at every check and report nothing. */
static void test_identical_replicas_pass_their_checks(void **state)
{
	(void)state;
	propose_many(3 * CHECK_ENTRIES, "warm");
	wait_applied_and_checked(3 * CHECK_ENTRIES, 2);
	for (int i = 0; i < NODES; i++) {
		uint64_t leader = 0;

		assert_int_equal(metrics_of(i).divergences, 0);
		assert_int_equal(atomic_load(&sms[i].diverged_events), 0);
		assert_int_equal(fl_read_sync(nodes[i], GROUP, &leader), 0);
	}
}

/* One follower's state is corrupted; one check interval of writes later it
 * reports the divergence and refuses reads; the others keep serving. */
static void test_corrupted_follower_is_caught_within_one_interval(void **state)
{
	int leader = leader_wait(), bad = (leader + 1) % NODES, good = (leader + 2) % NODES;
	uint64_t count = sm_count(leader), hint = 0, checks;
	struct fl_metrics m;

	(void)state;
	corrupt(bad);
	/* At most one interval of entries: a mark falls among them, and its
	 * result follows by itself. Nothing is written after them. */
	propose_many(CHECK_ENTRIES + 1, "after");
	assert_true(wait_divergence(bad, 5000));
	m = metrics_of(bad);
	assert_int_equal(m.divergences, 1);
	assert_int_equal(atomic_load(&sms[bad].diverged_events), 1);
	assert_true(atomic_load(&sms[bad].diverged_index) > count);
	assert_int_not_equal(atomic_load(&sms[bad].diverged_local),
			     atomic_load(&sms[bad].diverged_leader));
	assert_int_equal(fl_read_sync(nodes[bad], GROUP, &hint), FL_ERR_DIVERGED);
	assert_string_not_equal(fl_strerror(FL_ERR_DIVERGED), "unknown error");
	for (int i = 0; i < NODES; i++) {
		if (i == bad)
			continue;
		assert_int_equal(metrics_of(i).divergences, 0);
		assert_int_equal(atomic_load(&sms[i].diverged_events), 0);
		assert_int_equal(fl_read_sync(nodes[i], GROUP, &hint), 0);
	}
	/* Still diverged, and counted once, after more checks. */
	checks = metrics_of(good).checks;
	propose_many(CHECK_ENTRIES + 1, "more");
	wait_applied_and_checked(count + 2 * CHECK_ENTRIES + 2, checks + 1);
	assert_int_equal(metrics_of(bad).divergences, 1);
	assert_int_equal(fl_read_sync(nodes[bad], GROUP, &hint), FL_ERR_DIVERGED);
	assert_int_equal(fl_read_sync(nodes[good], GROUP, &hint), 0);
}

struct check_done {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
	uint64_t result;
};

static void check_cb(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct check_done *d = arg;

	(void)leader;
	pthread_mutex_lock(&d->lock);
	d->done = true;
	d->rv = rv;
	d->result = result;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Start fl_group_check() (or fl_group_rebuild()) on node i and wait
 * (bounded) for its callback. */
static int call_sync(int (*start)(struct fl_node *, uint64_t, fl_done_cb, void *), int i,
		     uint64_t *result)
{
	struct check_done d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct timespec until;
	int rv = start(nodes[i], GROUP, check_cb, &d);

	if (rv != 0)
		return rv;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&d.lock);
	while (!d.done && pthread_cond_timedwait(&d.cond, &d.lock, &until) == 0)
		;
	pthread_mutex_unlock(&d.lock);
	assert_true(d.done);
	*result = d.result;
	return d.rv;
}

static int check_sync(int i, uint64_t *result)
{
	return call_sync(fl_group_check, i, result);
}

/* fl_group_info() of node i: whether it says its replica diverged. */
static bool info_diverged(int i)
{
	struct check_done d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct fl_group_info info;
	struct timespec until;

	assert_int_equal(fl_group_info(nodes[i], GROUP, &info, check_cb, &d), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&d.lock);
	while (!d.done && pthread_cond_timedwait(&d.cond, &d.lock, &until) == 0)
		;
	pthread_mutex_unlock(&d.lock);
	assert_true(d.done);
	assert_int_equal(d.rv, 0);
	return info.diverged;
}

/* A check on demand: on the leader it completes with the mark's index, and
 * with no write at all after a corruption it catches the corrupted replica. */
static void test_check_on_demand_catches_a_corruption(void **state)
{
	int leader = leader_wait(), other = -1;
	uint64_t index = 0, checks;
	uint64_t deadline;

	(void)state;
	for (int i = 0; i < NODES; i++)
		if (i != leader && metrics_of(i).divergences == 0)
			other = i;
	assert_true(other >= 0);
	checks = metrics_of(other).checks;
	assert_int_equal(check_sync(other, &index), FL_ERR_NOT_LEADER);
	corrupt(other);
	assert_int_equal(check_sync(leader, &index), 0);
	assert_true(index > 0);
	deadline = node_test_now_ms() + 5000;
	while (metrics_of(other).checks == checks && node_test_now_ms() < deadline)
		usleep(10000);
	assert_true(wait_divergence(other, 5000));
	assert_int_equal(atomic_load(&sms[other].diverged_index), index);
	assert_int_equal(fl_read_sync(nodes[other], GROUP, &index), FL_ERR_DIVERGED);
	assert_int_equal(fl_read_sync(nodes[leader], GROUP, &index), 0);
	/* fl_group_info() tells the same without a read. */
	assert_true(info_diverged(other));
	assert_false(info_diverged(leader));
}

/* Wait (bounded) until every node applied the same count and state. */
static void wait_identical(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	for (;;) {
		bool same = true;

		for (int i = 1; i < NODES; i++)
			same = same && sm_count(i) == sm_count(0) &&
			       sm_digest(&sms[i], GROUP) == sm_digest(&sms[0], GROUP);
		if (same)
			return;
		if (node_test_now_ms() > deadline)
			fail_msg("replicas not identical after %d ms", WAIT_MS);
		usleep(10000);
	}
}

/* fl_group_rebuild() restores every diverged replica from the leader's
 * snapshot: reads are served again, the states match the leader's, and the
 * next checks find nothing. The leader cannot rebuild itself. */
static void test_rebuild_repairs_diverged_replicas(void **state)
{
	int leader = leader_wait(), rebuilt = 0;
	uint64_t index = 0, hint = 0, checks[NODES], divergences[NODES];

	(void)state;
	assert_int_equal(call_sync(fl_group_rebuild, leader, &index), -EINVAL);
	for (int i = 0; i < NODES; i++) {
		struct fl_metrics m = metrics_of(i);

		if (i == leader || m.divergences == 0)
			continue;
		assert_int_equal(fl_read_sync(nodes[i], GROUP, &hint), FL_ERR_DIVERGED);
		assert_int_equal(call_sync(fl_group_rebuild, i, &index), 0);
		assert_true(index > 0);
		assert_true(metrics_of(i).snapshots_received > m.snapshots_received);
		assert_int_equal(fl_read_sync(nodes[i], GROUP, &hint), 0);
		assert_false(info_diverged(i));
		rebuilt++;
	}
	assert_int_equal(rebuilt, 2); /* Both followers were corrupted above. */
	wait_identical();
	for (int i = 0; i < NODES; i++) {
		checks[i] = metrics_of(i).checks;
		divergences[i] = metrics_of(i).divergences;
	}
	propose_many(2 * CHECK_ENTRIES, "rebuilt");
	wait_identical();
	for (int i = 0; i < NODES; i++) {
		uint64_t deadline = node_test_now_ms() + WAIT_MS;

		while (metrics_of(i).checks < checks[i] + 1 && node_test_now_ms() < deadline)
			usleep(10000);
		assert_true(metrics_of(i).checks >= checks[i] + 1);
		assert_int_equal(metrics_of(i).divergences, divergences[i]);
		assert_int_equal(fl_read_sync(nodes[i], GROUP, &hint), 0);
	}
}

static int transfer_to(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);
static uint64_t transfer_target;

static int transfer_to(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return fl_transfer(node, group, transfer_target, cb, arg);
}

/* Wait (bounded) until node i counts more than count divergences. */
static bool wait_divergences_above(int i, uint64_t count)
{
	uint64_t deadline = node_test_now_ms() + 5000;

	while (node_test_now_ms() < deadline) {
		if (metrics_of(i).divergences > count)
			return true;
		usleep(10000);
	}
	return false;
}

/* The leader is the reference: when its own state goes wrong, both
 * followers report a divergence while it keeps serving. Moving leadership to
 * one of them clears them at the next check, finds the old leader diverged,
 * and a rebuild repairs it. */
static void test_corrupted_leader_is_found_once_leadership_moves(void **state)
{
	int leader = leader_wait(), next = (leader + 1) % NODES, third = (leader + 2) % NODES;
	uint64_t before[NODES], index = 0, hint = 0, deadline;

	(void)state;
	for (int i = 0; i < NODES; i++)
		before[i] = metrics_of(i).divergences;
	corrupt(leader);
	propose_many(CHECK_ENTRIES + 1, "bad-leader");
	assert_true(wait_divergences_above(next, before[next]));
	assert_true(wait_divergences_above(third, before[third]));
	assert_int_equal(metrics_of(leader).divergences, before[leader]);
	assert_int_equal(fl_read_sync(nodes[leader], GROUP, &hint), 0);
	assert_int_equal(fl_read_sync(nodes[next], GROUP, &hint), FL_ERR_DIVERGED);

	transfer_target = (uint64_t)next + 1;
	assert_int_equal(call_sync(transfer_to, leader, &index), 0);
	deadline = node_test_now_ms() + WAIT_MS;
	while (leader_wait() != next && node_test_now_ms() < deadline)
		usleep(20000);
	assert_int_equal(leader_wait(), next);
	assert_int_equal(check_sync(next, &index), 0);
	assert_true(wait_divergences_above(leader, before[leader]));
	deadline = node_test_now_ms() + WAIT_MS;
	while (fl_read_sync(nodes[third], GROUP, &hint) != 0 && node_test_now_ms() < deadline)
		usleep(20000);
	assert_int_equal(fl_read_sync(nodes[next], GROUP, &hint), 0);
	assert_int_equal(fl_read_sync(nodes[third], GROUP, &hint), 0);
	assert_int_equal(fl_read_sync(nodes[leader], GROUP, &hint), FL_ERR_DIVERGED);
	assert_int_equal(call_sync(fl_group_rebuild, leader, &index), 0);
	assert_int_equal(fl_read_sync(nodes[leader], GROUP, &hint), 0);
	wait_identical();
	/* Its log after the snapshot, applied again, holds its own old digests:
	 * history, not a new divergence. */
	assert_int_equal(metrics_of(leader).divergences, before[leader] + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_identical_replicas_pass_their_checks),
	    cmocka_unit_test(test_corrupted_follower_is_caught_within_one_interval),
	    cmocka_unit_test(test_check_on_demand_catches_a_corruption),
	    cmocka_unit_test(test_rebuild_repairs_diverged_replicas),
	    cmocka_unit_test(test_corrupted_leader_is_found_once_leadership_moves),
	};

	return cmocka_run_group_tests(tests, cluster_setup, cluster_teardown);
}
