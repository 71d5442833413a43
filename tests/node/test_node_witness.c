/* Witnesses through the public API, in process: three nodes on 127.0.0.1
 * (real WALs and TCP); groups of two voters (nodes 1 and 2), node 3 added
 * to each as a witness with fl_group_join() and fl_add_witness().
 *
 * The groups compact every 64 entries, and 200 entries go in before the
 * witness joins, so it catches up from a snapshot of the leader's: it keeps
 * none of its bytes. Then, on node 3: the state machine is never called for
 * the groups (no apply, save or restore, while its own snapshots compact
 * its log), no file of its data directory holds a payload (the voters' do),
 * reads and rebuilds are refused with FL_ERR_WITNESS, it is not a
 * transfer target and never campaigns. With node 1 stopped every group
 * still commits (node 2 and the witness are a majority) and node 2 leads;
 * node 3 restarts (its role and its empty snapshots recovered, nothing
 * restored) and still counts; node 1 comes back and applies the same
 * entries as node 2. Every wait is bounded. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES       3
#define GROUPS      2
#define WAIT_MS     20000
#define ENTRIES     200 /* Before the witness joins: several snapshots' worth. */
#define WITNESS     2   /* Node index of node 3. */
#define PAYLOAD_TAG "witness-test-payload-"

/* One node's state machine: per group, a count and a hash of applied
 * entries, and how often each callback ran. */
struct sm {
	pthread_mutex_t lock;
	uint64_t count[GROUPS + 1];
	uint64_t digest[GROUPS + 1];
	uint64_t applies, saves, restores, digests;
	uint64_t led; /* leader_changed() naming this node. */
	uint64_t id;
};

static struct sm sms[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char dirs[NODES][NODE_TEST_PATH_SIZE];

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *sm = ctx;

	pthread_mutex_lock(&sm->lock);
	sm->applies++;
	for (uint32_t i = 0; i < count; i++) {
		if (group <= GROUPS) {
			sm->count[group]++;
			sm->digest[group] = XXH3_64bits_withSeed(entries[i].data, entries[i].size,
								 sm->digest[group]);
		}
		results[i] = 0;
	}
	pthread_mutex_unlock(&sm->lock);
}

static void sm_leader_changed(void *ctx, uint64_t group, uint64_t leader, uint64_t term)
{
	struct sm *sm = ctx;

	(void)group;
	(void)term;
	pthread_mutex_lock(&sm->lock);
	sm->led += leader == sm->id;
	pthread_mutex_unlock(&sm->lock);
}

static int sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct sm *sm = ctx;
	uint64_t v[2];

	pthread_mutex_lock(&sm->lock);
	sm->saves++;
	v[0] = sm->count[group], v[1] = sm->digest[group];
	pthread_mutex_unlock(&sm->lock);
	return fl_snapshot_write(w, v, sizeof(v));
}

/* Fails on anything but the 16 bytes sm_save() writes: a restart that
 * restored a witness's empty snapshot would fail to start. */
static int sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct sm *sm = ctx;
	uint64_t v[2];
	size_t got = 0;

	pthread_mutex_lock(&sm->lock);
	sm->restores++;
	pthread_mutex_unlock(&sm->lock);
	while (got < sizeof(v)) {
		long n = fl_snapshot_read(r, (char *)v + got, sizeof(v) - got);

		if (n <= 0)
			return n < 0 ? (int)n : -EBADMSG;
		got += (size_t)n;
	}
	pthread_mutex_lock(&sm->lock);
	sm->count[group] = v[0], sm->digest[group] = v[1];
	pthread_mutex_unlock(&sm->lock);
	return 0;
}

static uint64_t sm_digest(void *ctx, uint64_t group)
{
	struct sm *sm = ctx;
	uint64_t d;

	pthread_mutex_lock(&sm->lock);
	sm->digests++;
	d = sm->digest[group];
	pthread_mutex_unlock(&sm->lock);
	return d;
}

static void node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 11);
	config.snapshot_entries = 64;
	config.check_entries = 50; /* Checks run; a witness compares nothing. */
	sms[i].id = (uint64_t)i + 1;
	config.sm = (struct fl_sm_ops){.apply = sm_apply,
				       .leader_changed = sm_leader_changed,
				       .save = sm_save,
				       .restore = sm_restore,
				       .digest = sm_digest,
				       .ctx = &sms[i]};
	CHECK(fl_node_start(&config, &nodes[i]) == 0);
}

/* Waiting for one callback of the asynchronous API. */
struct call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
};

static void call_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct call *c = arg;

	(void)result;
	(void)leader;
	pthread_mutex_lock(&c->lock);
	c->done = true;
	c->rv = rv;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void call_init(struct call *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
}

/* Wait for c after a call that returned rv; returns the outcome. */
static int call_wait(struct call *c, int rv)
{
	struct timespec until;

	if (rv != 0)
		return rv;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&c->lock);
	while (!c->done)
		CHECK(pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0);
	pthread_mutex_unlock(&c->lock);
	return c->rv;
}

static int group_info(int node, uint64_t group, struct fl_group_info *info)
{
	struct call c;

	call_init(&c);
	return call_wait(&c, fl_group_info(nodes[node], group, info, call_done, &c));
}

/* The group's leader, as node index, seen by any running node within WAIT_MS. */
static int leader_of(uint64_t group)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		for (int i = 0; i < NODES; i++) {
			struct fl_group_info info;

			if (nodes[i] != NULL && group_info(i, group, &info) == 0 && info.is_leader)
				return i;
		}
		usleep(10000);
	}
	CHECK(!"the group has a leader within the wait");
	return -1;
}

/* The leader's view once no change is in flight: the last one committed. */
static int settled_info(uint64_t group, struct fl_group_info *info)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		int leader = leader_of(group);

		if (group_info(leader, group, info) == 0 && info->is_leader && !info->joint &&
		    info->conf_index <= info->commit_index)
			return leader;
		usleep(10000);
	}
	CHECK(!"the membership settles within the wait");
	return -1;
}

static const struct fl_member_info *member_of(const struct fl_group_info *info, uint64_t id)
{
	for (uint32_t i = 0; i < info->members_count; i++)
		if (info->members[i].id == id)
			return &info->members[i];
	return NULL;
}

/* Ask the leader to add node 3 as a witness until it is accepted. */
static void add_witness(uint64_t group)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		struct fl_group_info info;
		int leader = settled_info(group, &info), rv;
		struct call c;

		call_init(&c);
		rv = call_wait(&c, fl_add_witness(nodes[leader], group, 3, call_done, &c));
		if (rv == 0)
			return;
		CHECK(rv == FL_ERR_NOT_LEADER || rv == FL_ERR_CONF_PENDING || rv == -EAGAIN);
		usleep(20000);
	}
	CHECK(!"the change was accepted within the wait");
}

static void propose(uint64_t group, uint32_t k)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	char payload[48];
	int size =
	    snprintf(payload, sizeof(payload), PAYLOAD_TAG "%llu-%u", (unsigned long long)group, k);

	while (node_test_now_ms() < deadline) {
		uint64_t result, leader;
		int leader_index = leader_of(group), rv;

		CHECK(leader_index != WITNESS);
		rv = fl_propose_sync(nodes[leader_index], group, payload, (uint32_t)size, &result,
				     &leader);
		if (rv == 0)
			return;
		usleep(10000);
	}
	CHECK(!"a proposal committed within the wait");
}

/* Nodes a and b applied the same count entries of group. */
static void wait_applied(int a, int b, uint64_t group, uint64_t count)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	for (;;) {
		bool same;

		pthread_mutex_lock(&sms[a].lock);
		pthread_mutex_lock(&sms[b].lock);
		same = sms[a].count[group] == count && sms[b].count[group] == count &&
		       sms[a].digest[group] == sms[b].digest[group];
		pthread_mutex_unlock(&sms[b].lock);
		pthread_mutex_unlock(&sms[a].lock);
		if (same)
			return;
		CHECK(node_test_now_ms() < deadline);
		usleep(10000);
	}
}

/* Files below a directory that hold PAYLOAD_TAG, which starts every
 * entry's payload. */
static uint32_t payload_files;

static int payload_scan(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	enum { TAG = sizeof(PAYLOAD_TAG) - 1 };
	static char buf[TAG + (1 << 16)];
	int fd;

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	memset(buf, 0, TAG);
	for (;;) {
		ssize_t n = read(fd, buf + TAG, sizeof(buf) - TAG);

		CHECK(n >= 0);
		if (n == 0)
			break;
		/* buf starts with the last TAG bytes of the previous read: a tag
		 * may straddle two reads. */
		if (memmem(buf, (size_t)n + TAG, PAYLOAD_TAG, TAG) != NULL) {
			payload_files++;
			break;
		}
		memmove(buf, buf + n, TAG);
	}
	close(fd);
	return 0;
}

/* How many files of node i's data directory hold an entry's payload. */
static uint32_t payload_files_of(int i)
{
	payload_files = 0;
	CHECK(nftw(dirs[i], payload_scan, 16, FTW_PHYS) == 0);
	return payload_files;
}

/* Node 3's state machine was never called for a group; it never led. */
static void check_witness_untouched(void)
{
	struct fl_metrics m;

	pthread_mutex_lock(&sms[WITNESS].lock);
	CHECK(sms[WITNESS].applies == 0);
	CHECK(sms[WITNESS].saves == 0);
	CHECK(sms[WITNESS].restores == 0);
	CHECK(sms[WITNESS].digests == 0);
	CHECK(sms[WITNESS].led == 0);
	for (uint64_t g = 1; g <= GROUPS; g++)
		CHECK(sms[WITNESS].count[g] == 0);
	pthread_mutex_unlock(&sms[WITNESS].lock);
	fl_node_metrics(nodes[WITNESS], &m);
	CHECK(m.elections == 0);
	CHECK(m.leaderships == 0);
}

/* The witness has the leader's log (metadata) up to its last index. */
static void wait_witness_caught_up(uint64_t group)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	for (;;) {
		struct fl_group_info info;
		const struct fl_member_info *w;

		settled_info(group, &info);
		w = member_of(&info, 3);
		CHECK(w != NULL && w->role == FL_MEMBER_WITNESS);
		if (w->match == info.last_index)
			return;
		CHECK(node_test_now_ms() < deadline);
		usleep(10000);
	}
}

/* What a witness refuses, and what it may not become. */
static void check_witness_refusals(uint64_t group)
{
	struct fl_stale_read stale = {0};
	struct fl_group_info info;
	int leader = settled_info(group, &info);
	struct call c;

	CHECK(fl_read_sync(nodes[WITNESS], group, NULL) == FL_ERR_WITNESS);
	CHECK(fl_read_stale_sync(nodes[WITNESS], group, &stale) == FL_ERR_WITNESS);
	call_init(&c);
	CHECK(call_wait(&c, fl_group_rebuild(nodes[WITNESS], group, call_done, &c)) ==
	      FL_ERR_WITNESS);
	call_init(&c);
	CHECK(call_wait(&c, fl_transfer(nodes[leader], group, 3, call_done, &c)) == -EINVAL);
	/* A witness is never made anything else, and a member never a witness. */
	call_init(&c);
	CHECK(call_wait(&c, fl_promote(nodes[leader], group, 3, call_done, &c)) ==
	      FL_ERR_CONF_INVALID);
	call_init(&c);
	CHECK(call_wait(&c, fl_add_voter(nodes[leader], group, 3, call_done, &c)) ==
	      FL_ERR_CONF_INVALID);
	call_init(&c);
	CHECK(call_wait(&c, fl_add_witness(nodes[leader], group, 3, call_done, &c)) ==
	      FL_ERR_CONF_INVALID);
	call_init(&c);
	CHECK(call_wait(&c, fl_add_witness(nodes[leader], group, 1, call_done, &c)) ==
	      FL_ERR_CONF_INVALID);
	CHECK(group_info(WITNESS, group, &info) == 0);
	CHECK(!info.is_leader);
	CHECK(member_of(&info, 3) != NULL && member_of(&info, 3)->role == FL_MEMBER_WITNESS);
}

int main(void)
{
	uint64_t members[] = {1, 2};
	uint32_t written = 0;
	char root[512];

	CHECK(node_test_root(root, sizeof(root), "witness-test"));
	for (int i = 0; i < NODES; i++)
		pthread_mutex_init(&sms[i].lock, NULL);
	CHECK(node_test_nodes(root, NODES, dirs, ports));
	for (int i = 0; i < NODES; i++)
		node_start(i);
	for (uint64_t g = 1; g <= GROUPS; g++)
		for (int i = 0; i < 2; i++)
			CHECK(fl_group_create(nodes[i], g, members, 2, NULL, NULL) == 0);
	for (uint64_t g = 1; g <= GROUPS; g++)
		for (uint32_t k = 0; k < ENTRIES; k++)
			propose(g, k);
	written = ENTRIES;
	for (uint64_t g = 1; g <= GROUPS; g++) {
		struct call c;

		call_init(&c);
		CHECK(call_wait(&c, fl_group_join(nodes[WITNESS], g, call_done, &c)) == 0);
		add_witness(g);
		wait_witness_caught_up(g);
		check_witness_refusals(g);
	}
	/* More entries: the witness compacts its own log (empty snapshots). */
	for (uint64_t g = 1; g <= GROUPS; g++) {
		for (uint32_t k = written; k < written + 100; k++)
			propose(g, k);
		wait_applied(0, 1, g, written + 100);
		wait_witness_caught_up(g);
	}
	written += 100;
	check_witness_untouched();
	/* No payload reached the witness's disk (its WAL and snapshots); the
	 * voters' WALs hold them (the scan finds what it looks for). */
	CHECK(payload_files_of(WITNESS) == 0);
	CHECK(payload_files_of(1) > 0);
	printf("witness added to %d groups; its state machine untouched, no payload on its "
	       "disk\n",
	       GROUPS);

	/* One voter down: node 2 and the witness commit, and node 2 leads. */
	fl_node_stop(nodes[0]);
	nodes[0] = NULL;
	for (uint64_t g = 1; g <= GROUPS; g++) {
		for (uint32_t k = written; k < written + 20; k++)
			propose(g, k);
		CHECK(leader_of(g) == 1);
	}
	written += 20;
	check_witness_untouched();
	printf("node 1 down: every group commits with node 2 and the witness\n");

	/* The witness restarts: its role and its empty snapshots are recovered
	 * without a restore, and it still counts (node 1 is still down). */
	fl_node_stop(nodes[WITNESS]);
	nodes[WITNESS] = NULL;
	node_start(WITNESS);
	for (uint64_t g = 1; g <= GROUPS; g++) {
		struct fl_group_info info;

		CHECK(group_info(WITNESS, g, &info) == 0);
		CHECK(member_of(&info, 3) != NULL &&
		      member_of(&info, 3)->role == FL_MEMBER_WITNESS);
		for (uint32_t k = written; k < written + 20; k++)
			propose(g, k);
		CHECK(fl_read_sync(nodes[WITNESS], g, NULL) == FL_ERR_WITNESS);
	}
	written += 20;
	check_witness_untouched();
	printf("witness restarted: still a witness, still counted\n");

	/* Node 1 returns and catches up with node 2. */
	node_start(0);
	for (uint64_t g = 1; g <= GROUPS; g++) {
		for (uint32_t k = written; k < written + 5; k++)
			propose(g, k);
		wait_applied(0, 1, g, written + 5);
	}
	check_witness_untouched();
	for (int i = 0; i < NODES; i++)
		fl_node_stop(nodes[i]);
	CHECK(payload_files_of(WITNESS) == 0);
	CHECK(node_test_remove(root));
	printf("node witness test passed\n");
	return 0;
}
