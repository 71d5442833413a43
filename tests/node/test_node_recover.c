/* Forced recovery of a group that lost its majority, through the public API
 * (fl_group_recover), in process: three nodes on 127.0.0.1 (real WALs and
 * TCP), one group of the three.
 *
 * With every node up the recovery is refused (FL_ERR_QUORUM_REACHABLE).
 * Nodes 2 and 3 stop for good: a write then stays in doubt; fl_group_recover
 * on node 1 (retried while node 1 still hears them) makes it the single
 * voter, its report bounds the loss, the write in doubt commits with the
 * rest of its log, and writes commit again. A second
 * recovery is refused (its single voter is heard). Node 1 restarts: the
 * recovery survives (still one voter, writes commit). Every wait is bounded. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES   3
#define GROUP   1
#define WAIT_MS 20000
#define WRITES  20

static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char dirs[NODES][NODE_TEST_PATH_SIZE];

struct call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
};

/* A write proposed while the majority is gone: its fate waits for the recovery. */
static struct call pending = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 0;
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 11);
	config.sm = (struct fl_sm_ops){.apply = sm_apply};
	CHECK(fl_node_start(&config, &nodes[i]) == 0);
}

static void call_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct call *c = arg;

	(void)result, (void)leader;
	pthread_mutex_lock(&c->lock);
	c->done = true;
	c->rv = rv;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static int recover(int node, uint32_t flags, struct fl_recover_report *report)
{
	struct call c = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct timespec until;
	int rv = fl_group_recover(nodes[node], GROUP, flags, report, call_done, &c);

	if (rv != 0)
		return rv;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		CHECK(pthread_cond_timedwait(&c.cond, &c.lock, &until) == 0);
	pthread_mutex_unlock(&c.lock);
	return c.rv;
}

/* A write through node, retried (no leader yet, a new one elected) until
 * it commits or wait_ms pass; returns the last outcome. */
static int write_one(int node, uint32_t k, uint64_t wait_ms)
{
	uint64_t deadline = node_test_now_ms() + wait_ms;
	char payload[32];
	int size = snprintf(payload, sizeof(payload), "w%u", k), rv;

	do {
		uint64_t result, leader;

		rv = fl_propose_sync(nodes[node], GROUP, payload, (uint32_t)size, &result, &leader);
		if (rv == 0)
			return 0;
		usleep(20000);
	} while (node_test_now_ms() < deadline);
	return rv;
}

static int write_anywhere(uint32_t k)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline)
		for (int i = 0; i < NODES; i++)
			if (nodes[i] != NULL && write_one(i, k, 100) == 0)
				return 0;
	return -ETIMEDOUT;
}

static void info_of(int node, struct fl_group_info *info)
{
	struct call c = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct timespec until;

	CHECK(fl_group_info(nodes[node], GROUP, info, call_done, &c) == 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		CHECK(pthread_cond_timedwait(&c.cond, &c.lock, &until) == 0);
	pthread_mutex_unlock(&c.lock);
	CHECK(c.rv == 0);
}

int main(void)
{
	uint64_t members[] = {1, 2, 3};
	struct fl_recover_report rep;
	struct fl_group_info info;
	uint64_t deadline;
	char root[512];
	int rv;

	CHECK(node_test_root(root, sizeof(root), "recover-test"));
	CHECK(node_test_nodes(root, NODES, dirs, ports));
	for (int i = 0; i < NODES; i++)
		node_start(i);
	for (int i = 0; i < NODES; i++)
		CHECK(fl_group_create(nodes[i], GROUP, members, NODES, NULL, NULL) == 0);
	for (uint32_t k = 0; k < WRITES; k++)
		CHECK(write_anywhere(k) == 0);

	/* Every node up: the group has its quorum. */
	memset(&rep, 0, sizeof(rep));
	CHECK(recover(0, 0, &rep) == FL_ERR_QUORUM_REACHABLE);
	CHECK(strstr(rep.refused_why, "heard from") != NULL);
	CHECK(strstr(fl_strerror(FL_ERR_QUORUM_REACHABLE), "quorum") != NULL);
	CHECK(strstr(fl_strerror(FL_ERR_NOT_SURVIVOR), "alone") != NULL);
	info_of(0, &info);
	CHECK(info.members_count == 3);

	/* A majority lost: no writes; then node 1 recovers the group. */
	fl_node_stop(nodes[1]);
	fl_node_stop(nodes[2]);
	nodes[1] = nodes[2] = NULL;
	if (fl_propose(nodes[0], GROUP, "in-doubt", 8, call_done, &pending) != 0)
		pending.done = true, pending.rv = FL_ERR_NOT_LEADER; /* Refused at once. */
	usleep(1500 * 1000);
	pthread_mutex_lock(&pending.lock);
	CHECK(!pending.done || pending.rv != 0); /* Nothing commits without a majority. */
	pthread_mutex_unlock(&pending.lock);
	deadline = node_test_now_ms() + WAIT_MS;
	while ((rv = recover(0, 0, &rep)) == FL_ERR_QUORUM_REACHABLE) {
		CHECK(node_test_now_ms() < deadline);
		usleep(50000);
	}
	CHECK(rv == 0);
	printf("recovered: term %llu -> %llu, commit %llu, last %llu, conf at %llu\n",
	       (unsigned long long)rep.term_before, (unsigned long long)rep.term,
	       (unsigned long long)rep.commit_before, (unsigned long long)rep.last_before,
	       (unsigned long long)rep.conf_index);
	CHECK(rep.term > rep.term_before);
	CHECK(rep.commit_before >= WRITES); /* Everything acknowledged was committed here. */
	CHECK(rep.last_before >= rep.commit_before);
	CHECK(rep.conf_index == rep.last_before + 1);
	CHECK(rep.dropped_count == 2);
	CHECK(rep.dropped[0] + rep.dropped[1] == 5);
	CHECK(write_one(0, 2000, WAIT_MS) == 0);
	/* A write left in the log when the majority went commits with it:
	 * it was in (commit_before, last_before]. */
	pthread_mutex_lock(&pending.lock);
	CHECK(pending.done);
	CHECK(pending.rv != 0 || rep.last_before > rep.commit_before);
	pthread_mutex_unlock(&pending.lock);
	info_of(0, &info);
	CHECK(info.is_leader && info.members_count == 1 && info.members[0].id == 1);
	CHECK(info.commit_index > rep.conf_index);
	CHECK(recover(0, 0, &rep) == FL_ERR_QUORUM_REACHABLE); /* Its one voter is heard. */

	/* The recovery is in the WAL: a restart keeps it. */
	fl_node_stop(nodes[0]);
	node_start(0);
	CHECK(write_one(0, 3000, WAIT_MS) == 0);
	info_of(0, &info);
	CHECK(info.is_leader && info.members_count == 1);
	fl_node_stop(nodes[0]);
	CHECK(node_test_remove(root));
	printf("node-recover passed\n");
	return 0;
}
