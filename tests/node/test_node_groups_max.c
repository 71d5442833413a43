/* The bound on the groups a node hosts (fl_node_config.groups_max): one
 * node of 2 shards with groups_max 4. Creations and joins past it are
 * refused with FL_ERR_GROUPS_FULL and counted (groups_refused) while the
 * node serves its groups; a group already hosted is GROUP_EXISTS, not full;
 * removing a group frees its slot; a burst of creations on both shards at
 * once never takes the node past the bound; and a restart with a lower
 * bound recovers every group it has and refuses new ones. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define GROUPS_MAX 4
#define BURST      64

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pending;
	int ok, full, other;
};

static void waiter_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct waiter *w = arg;

	(void)result, (void)leader;
	pthread_mutex_lock(&w->lock);
	if (rv == 0)
		w->ok++;
	else if (rv == FL_ERR_GROUPS_FULL)
		w->full++;
	else
		w->other++;
	w->pending--;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->pending > 0)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Each callback records one rv; this one keeps it. */
struct one {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
};

static void one_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct one *o = arg;

	(void)result, (void)leader;
	pthread_mutex_lock(&o->lock);
	o->rv = rv;
	o->done = true;
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

static int one_wait(struct one *o, int submitted)
{
	if (submitted != 0)
		return submitted;
	pthread_mutex_lock(&o->lock);
	while (!o->done)
		pthread_cond_wait(&o->cond, &o->lock);
	pthread_mutex_unlock(&o->lock);
	return o->rv;
}

static const uint64_t members[1] = {1};

static int create(struct fl_node *node, uint64_t group)
{
	struct one o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

	return one_wait(&o, fl_group_create(node, group, members, 1, one_done, &o));
}

static int join(struct fl_node *node, uint64_t group)
{
	struct one o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

	return one_wait(&o, fl_group_join(node, group, one_done, &o));
}

static int drop(struct fl_node *node, uint64_t group)
{
	struct one o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

	return one_wait(&o, fl_group_remove(node, group, one_done, &o));
}

static uint64_t hosted(struct fl_node *node)
{
	uint64_t ids[1];
	uint32_t count = 0;

	CHECK(fl_group_list(node, ids, 1, &count) == 0);
	return count;
}

static uint64_t refused(struct fl_node *node)
{
	struct fl_metrics m;

	fl_node_metrics(node, &m);
	return m.groups_refused;
}

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 0;
}

static struct fl_node *start(struct fl_node_config *c, uint32_t groups_max)
{
	struct fl_node *node;
	int rv;

	c->groups_max = groups_max;
	rv = fl_node_start(c, &node);
	if (rv == -ENOSYS || rv == -EPERM) {
		printf("io_uring is not available here: skipped\n");
		exit(77);
	}
	CHECK(rv == 0);
	return node;
}

/* A write to group 1, committed: the node serves its groups. */
static void write_one(struct fl_node *node)
{
	uint64_t deadline = node_test_now_ms() + 10000;
	int rv;

	do {
		struct one o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

		rv = one_wait(&o, fl_propose(node, 1, "x", 1, one_done, &o));
	} while (rv != 0 && node_test_now_ms() < deadline);
	CHECK(rv == 0);
}

int main(void)
{
	char root[NODE_TEST_PATH_SIZE], dirs[1][NODE_TEST_PATH_SIZE];
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
	struct node_test_addrs a;
	struct fl_node_config c;
	struct fl_node *node;
	uint16_t port;

	CHECK(node_test_root(root, sizeof(root), "groups-max"));
	CHECK(node_test_nodes(root, 1, dirs, &port));
	node_test_config(&c, &a, 0, 1, &port, dirs[0], 1);
	c.shards_count = 2;
	c.sm = (struct fl_sm_ops){.apply = sm_apply};

	/* groups_max 0 is refused: there is no "unbounded". */
	c.groups_max = 0;
	CHECK(fl_node_start(&c, &node) == -EINVAL);
	{
		struct fl_node_config d;

		fl_node_config_default(&d, 1);
		CHECK(d.groups_max == 100000);
	}

	node = start(&c, GROUPS_MAX);
	for (uint64_t g = 1; g <= 3; g++)
		CHECK(create(node, g) == 0);
	CHECK(join(node, 10) == 0); /* The fourth: at the bound. */
	CHECK(hosted(node) == GROUPS_MAX);
	CHECK(create(node, 4) == FL_ERR_GROUPS_FULL);
	CHECK(join(node, 11) == FL_ERR_GROUPS_FULL);
	CHECK(create(node, 2) == FL_ERR_GROUP_EXISTS); /* Hosted already: not full. */
	CHECK(join(node, 10) == FL_ERR_GROUP_EXISTS);
	CHECK(refused(node) == 2);
	CHECK(hosted(node) == GROUPS_MAX);
	write_one(node);
	printf("ok: at %d groups, a creation and a join refused (FL_ERR_GROUPS_FULL, counted 2); "
	       "group 1 still commits\n",
	       GROUPS_MAX);

	CHECK(drop(node, 10) == 0);
	CHECK(hosted(node) == GROUPS_MAX - 1);
	CHECK(join(node, 11) == 0);
	CHECK(hosted(node) == GROUPS_MAX);
	printf("ok: a removed group's slot is taken by the next join\n");

	/* A burst on both shards: never past the bound, each refusal counted. */
	CHECK(drop(node, 11) == 0);
	CHECK(drop(node, 3) == 0);
	w.pending = BURST;
	for (uint64_t g = 100; g < 100 + BURST; g++)
		CHECK(fl_group_join(node, g, waiter_done, &w) == 0);
	waiter_wait(&w);
	CHECK(w.other == 0);
	CHECK(w.ok + w.full == BURST);
	CHECK(w.ok == 2); /* Exactly the two free slots, whichever shard. */
	CHECK(hosted(node) == GROUPS_MAX);
	CHECK(refused(node) == 2 + (uint64_t)w.full);
	printf("ok: a burst of %d joins over 2 shards: %d taken, %d refused, %llu hosted\n", BURST,
	       w.ok, w.full, (unsigned long long)hosted(node));
	fl_node_stop(node);

	/* A lower bound at restart: every group is recovered, none added. */
	node = start(&c, 2);
	CHECK(hosted(node) == GROUPS_MAX);
	CHECK(join(node, 500) == FL_ERR_GROUPS_FULL);
	write_one(node);
	printf("ok: restarted with groups_max 2: %d groups recovered, a join refused\n",
	       GROUPS_MAX);
	fl_node_stop(node);
	CHECK(node_test_remove(root));
	return 0;
}
