/* An in-process cluster through the public API: three nodes on 127.0.0.1,
 * each with its own shards, WALs on disk and TCP connections to the others.
 *
 * It creates groups on all three, proposes entries to their leaders from
 * several threads, and checks that every acknowledged entry was applied
 * exactly once, in log order, with identical state machines on every node.
 * Then it stops every node, starts them again from their WALs, checks that
 * the state machines were rebuilt identically, and that the groups elect
 * leaders and take writes again. Last, a rolling restart: each node in turn
 * stops while the other two keep taking writes, then restarts and catches
 * up. Consistency checks run all along: no replica may report a divergence.
 * Every wait is bounded.
 *
 * Arguments: groups proposals-per-group shards-per-node (defaults 50 200 2). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES      3
#define GROUPS_MAX 4096

/* One node's state machine: per group, a running hash over applied entries. */
struct sm {
	pthread_mutex_t lock; /* Groups live on different shard threads. */
	uint64_t digest[GROUPS_MAX + 1];
	uint64_t count[GROUPS_MAX + 1];
	uint64_t last_index[GROUPS_MAX + 1];
	bool disorder;
};

static struct sm sms[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char dirs[NODES][NODE_TEST_PATH_SIZE];
static uint32_t groups_count = 50, per_group = 200, shards_count = 2;

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *sm = ctx;

	pthread_mutex_lock(&sm->lock);
	for (uint32_t i = 0; i < count; i++) {
		const struct fl_entry *e = &entries[i];

		if (group > GROUPS_MAX || e->index <= sm->last_index[group])
			sm->disorder = true; /* Applied twice, or out of order. */
		else
			sm->last_index[group] = e->index;
		sm->digest[group] = XXH3_64bits_withSeed(e->data, e->size, sm->digest[group]);
		sm->count[group]++;
		results[i] = sm->count[group];
	}
	pthread_mutex_unlock(&sm->lock);
}

/* A snapshot of a group is its three counters. */
static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct sm *sm = ctx;
	uint64_t v[3];

	pthread_mutex_lock(&sm->lock);
	v[0] = sm->digest[group], v[1] = sm->count[group], v[2] = sm->last_index[group];
	pthread_mutex_unlock(&sm->lock);
	return fl_snapshot_write(w, v, sizeof(v));
}

static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct sm *sm = ctx;
	uint64_t v[3];
	size_t got = 0;

	while (got < sizeof(v)) {
		long n = fl_snapshot_read(r, (char *)v + got, sizeof(v) - got);

		if (n <= 0)
			return n < 0 ? (int)n : -EBADMSG;
		got += (size_t)n;
	}
	pthread_mutex_lock(&sm->lock);
	sm->digest[group] = v[0], sm->count[group] = v[1], sm->last_index[group] = v[2];
	pthread_mutex_unlock(&sm->lock);
	return 0;
}

/* The same state saved in two steps (fl_sm_ops.freeze): the view is a copy
 * of the counters, written later on the snapshot thread. */
static int sm_freeze(void *ctx, uint64_t group, void **view)
{
	struct sm *sm = ctx;
	uint64_t *v = malloc(3 * sizeof(*v));

	if (v == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&sm->lock);
	v[0] = sm->digest[group], v[1] = sm->count[group], v[2] = sm->last_index[group];
	pthread_mutex_unlock(&sm->lock);
	*view = v;
	return 0;
}

static int sm_save_view(void *ctx, uint64_t group, void *view, struct fl_snapshot_writer *w)
{
	(void)ctx;
	(void)group;
	return fl_snapshot_write(w, view, 3 * sizeof(uint64_t));
}

static void sm_release(void *ctx, uint64_t group, void *view)
{
	(void)ctx;
	(void)group;
	free(view);
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 7);
	config.shards_count = shards_count;
	config.sm = (struct fl_sm_ops){
	    .apply = sm_apply, .save = sm_save, .restore = sm_restore, .ctx = &sms[i]};
	config.snapshot_entries = 64; /* Snapshots and compaction all along. */
	config.check_entries = 24;    /* Consistency checks too (of entries: no digest). */
	if (i != 1) {
		/* Nodes 1 and 3 save off their shard threads. */
		config.sm.freeze = sm_freeze;
		config.sm.save_view = sm_save_view;
		config.sm.release = sm_release;
	} else {
		/* Node 2 saves on its shard threads, by bytes applied. */
		config.snapshot_entries = 0;
		config.snapshot_bytes = 64 * 8;
	}
	memset(&sms[i].digest, 0, sizeof(sms[i].digest));
	memset(&sms[i].count, 0, sizeof(sms[i].count));
	memset(&sms[i].last_index, 0, sizeof(sms[i].last_index));
	CHECK(fl_node_start(&config, &nodes[i]) == 0);
}

/* Propose one entry to group, following leader hints, for up to 10 s,
 * never through node index down (stopped). */
static uint64_t propose_avoiding(uint64_t group, const void *data, uint32_t size, int down)
{
	uint64_t deadline = node_test_now_ms() + 10000, target = 1 + group % NODES;

	while (node_test_now_ms() < deadline) {
		uint64_t result = 0, leader = 0;
		int rv;

		if ((int)target - 1 == down) {
			target = target % NODES + 1;
			continue;
		}
		rv = fl_propose_sync(nodes[target - 1], group, data, size, &result, &leader);
		if (rv == 0)
			return result;
		if (rv == FL_ERR_NOT_LEADER && leader >= 1 && leader <= NODES && leader != target)
			target = leader;
		else {
			target = target % NODES + 1;
			usleep(20000);
		}
	}
	fprintf(stderr, "group %llu: no leader took the proposal in 10 s\n",
		(unsigned long long)group);
	exit(1);
}

static uint64_t propose(uint64_t group, const void *data, uint32_t size)
{
	return propose_avoiding(group, data, size, -1);
}

/* fl_group_snapshot(), waited for. */
struct snap_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
	uint64_t index;
};

static void snap_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct snap_wait *w = arg;

	(void)leader;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rv = rv;
	w->index = result;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int snapshot_now(int node, uint64_t group, uint64_t *index)
{
	struct snap_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	CHECK(fl_group_snapshot(nodes[node], group, snap_done, &w) == 0);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		CHECK(pthread_cond_timedwait(&w.cond, &w.lock, &deadline) == 0);
	pthread_mutex_unlock(&w.lock);
	*index = w.index;
	return w.rv;
}

struct writer {
	uint32_t first_group, step;
	_Atomic uint64_t acked;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (uint32_t k = 0; k < per_group; k++) {
		for (uint32_t g = w->first_group; g <= groups_count; g += w->step) {
			char payload[64];
			int size = snprintf(payload, sizeof(payload), "g%u-k%u", g, k);

			propose(g, payload, (uint32_t)size);
			atomic_fetch_add(&w->acked, 1);
		}
	}
	return NULL;
}

static void create_groups(void)
{
	uint64_t members[NODES] = {1, 2, 3};

	for (uint32_t g = 1; g <= groups_count; g++)
		for (int i = 0; i < NODES; i++) {
			int rv = fl_group_create(nodes[i], g, members, NODES, NULL, NULL);

			CHECK(rv == 0);
		}
}

/* Wait until every node applied count entries of every group, identically. */
static void wait_converged(uint64_t count)
{
	uint64_t deadline = node_test_now_ms() + 30000;

	for (;;) {
		bool same = true;

		for (uint32_t g = 1; g <= groups_count && same; g++)
			for (int i = 0; i < NODES && same; i++) {
				pthread_mutex_lock(&sms[i].lock);
				same = sms[i].count[g] == count &&
				       sms[i].digest[g] == sms[0].digest[g];
				pthread_mutex_unlock(&sms[i].lock);
			}
		if (same)
			return;
		if (node_test_now_ms() > deadline) {
			for (uint32_t g = 1; g <= groups_count; g++)
				for (int i = 0; i < NODES; i++)
					if (sms[i].count[g] != count)
						fprintf(stderr,
							"node %d group %u applied %llu of %llu\n",
							i + 1, g,
							(unsigned long long)sms[i].count[g],
							(unsigned long long)count);
			for (int i = 0; i < NODES; i++) {
				struct fl_metrics m;

				if (nodes[i] == NULL)
					continue;
				fl_node_metrics(nodes[i], &m);
				fprintf(stderr, "node %d: snapshots sent %llu received %llu\n",
					i + 1, (unsigned long long)m.snapshots_sent,
					(unsigned long long)m.snapshots_received);
			}
			CHECK(!"replicas converged within 30 s");
		}
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	struct writer writers[4];
	pthread_t threads[4];
	uint64_t digests[GROUPS_MAX + 1];
	char root[512];
	uint64_t t0;

	if (argc > 1)
		groups_count = (uint32_t)atoi(argv[1]);
	if (argc > 2)
		per_group = (uint32_t)atoi(argv[2]);
	if (argc > 3)
		shards_count = (uint32_t)atoi(argv[3]);
	CHECK(groups_count >= 1 && groups_count <= GROUPS_MAX);
	CHECK(node_test_root(root, sizeof(root), "node-test"));
	for (int i = 0; i < NODES; i++)
		pthread_mutex_init(&sms[i].lock, NULL);
	CHECK(node_test_nodes(root, NODES, dirs, ports));
	for (int i = 0; i < NODES; i++)
		node_start(i);
	create_groups();

	t0 = node_test_now_ms();
	for (int t = 0; t < 4; t++) {
		writers[t] = (struct writer){.first_group = (uint32_t)t + 1, .step = 4};
		CHECK(pthread_create(&threads[t], NULL, writer_main, &writers[t]) == 0);
	}
	for (int t = 0; t < 4; t++)
		pthread_join(threads[t], NULL);
	printf("acknowledged %u proposals over %u groups in %llu ms\n", groups_count * per_group,
	       groups_count, (unsigned long long)(node_test_now_ms() - t0));
	wait_converged(per_group);
	for (int i = 0; i < NODES; i++)
		CHECK(!sms[i].disorder);
	memcpy(digests, sms[0].digest, sizeof(digests));

	/* Restart every node from its WAL: the logs replay into fresh state
	 * machines and must give the same digests. */
	for (int i = 0; i < NODES; i++)
		fl_node_stop(nodes[i]);
	for (int i = 0; i < NODES; i++)
		node_start(i);
	wait_converged(per_group);
	for (uint32_t g = 1; g <= groups_count; g++)
		CHECK(sms[0].digest[g] == digests[g]);
	for (uint32_t g = 1; g <= groups_count; g++)
		CHECK(propose(g, "after-restart", 13) == per_group + 1);
	wait_converged(per_group + 1);

	/* Rolling restart: stop each node in turn; the other two keep every
	 * group available; the node comes back from its WAL and catches up. */
	for (int i = 0; i < NODES; i++) {
		uint64_t expect = per_group + 2 + (uint64_t)i;

		fl_node_stop(nodes[i]);
		nodes[i] = NULL;
		for (uint32_t g = 1; g <= groups_count; g++)
			CHECK(propose_avoiding(g, "rolling", 7, i) == expect);
		node_start(i);
		wait_converged(expect);
	}

	/* A node that falls far behind while the others compact catches up by
	 * snapshot: stop node 3, write more than two snapshot intervals. */
	{
		uint64_t expect = per_group + 1 + NODES + 150;
		struct fl_metrics m;

		fl_node_stop(nodes[2]);
		nodes[2] = NULL;
		for (uint32_t k = 0; k < 150; k++)
			for (uint32_t g = 1; g <= groups_count; g++)
				propose_avoiding(g, "behind", 6, 2);
		node_start(2);
		wait_converged(expect);
		fl_node_metrics(nodes[2], &m);
		printf("node 3 caught up with %llu snapshots received\n",
		       (unsigned long long)m.snapshots_received);
		CHECK(m.snapshots_received > 0);
	}
	/* On demand: a snapshot of what each node applied, then none new
	 * until something more is applied. */
	for (int i = 0; i < NODES; i++) {
		uint64_t first = 0, again = 0;

		CHECK(snapshot_now(i, 1, &first) == 0);
		CHECK(first >= per_group + 1 + NODES + 150);
		CHECK(snapshot_now(i, 1, &again) == 0);
		CHECK(again == first);
	}
	CHECK(fl_group_snapshot(nodes[0], GROUPS_MAX + 1, NULL, NULL) == 0);
	for (int i = 0; i < NODES; i++) {
		struct fl_metrics m;

		fl_node_metrics(nodes[i], &m);
		printf("node %d: groups %llu leaders %llu fsyncs %llu bytes out %llu shard memory "
		       "%llu checks %llu divergences %llu snapshots taken %llu\n",
		       i + 1, (unsigned long long)m.groups, (unsigned long long)m.leaders,
		       (unsigned long long)m.fsyncs, (unsigned long long)m.bytes_out,
		       (unsigned long long)m.memory_bytes, (unsigned long long)m.checks,
		       (unsigned long long)m.divergences, (unsigned long long)m.snapshots_taken);
		CHECK(!sms[i].disorder);
		CHECK(m.checks > 0);          /* Replicas compared their entries... */
		CHECK(m.divergences == 0);    /* ...and agreed, snapshots and restarts included. */
		CHECK(m.snapshots_taken > 0); /* By entries (1, 3), by bytes (2). */
	}
	for (int i = 0; i < NODES; i++)
		fl_node_stop(nodes[i]);
	CHECK(node_test_remove(root));
	printf("ok\n");
	return 0;
}
