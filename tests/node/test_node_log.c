/* Logging through the public API, on in-process nodes (each with its own
 * log_cb: several nodes in one process log each to its own place).
 *
 * 1. Records: three nodes at three minimum levels (debug, info, warn) run a
 *    few groups. Each node's callback receives only its own records, none
 *    below its level; a leader change comes as an info record with the
 *    group and shard as fields (not in the text); a debug record (a peer
 *    connection) reaches the node at debug only.
 * 2. A mass failover: 3 nodes, `groups` groups (argument; default 2,000).
 *    Once every group has a leader, the node leading the most is stopped;
 *    once every group has a new leader on both survivors (and the summary
 *    window has passed), each survivor must have logged at most
 *    LINES_MAX lines since the stop, and its summary lines, with the leader
 *    lines logged one by one, must count a change for every group the
 *    stopped node led.
 * Every wait is bounded. Exits 1 with the failed check.
 *
 * In a test build, FLOTILLA_TEST_LOG_UNLIMITED=1 logs every per-group line
 * one by one, as before the limiter: then part 2 fails (each survivor logs
 * a line per group the stopped node led). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES      3
#define GROUPS_MAX 10000
#define LINES_MAX  48 /* "A few dozen" per survivor for the whole failover. */

/* One node's log: counts by level, and the records of the window kept. */
struct sink {
	pthread_mutex_t lock;
	uint64_t node_id;
	bool recording; /* Keep the window's lines. */
	bool wrong_node, below_level;
	uint8_t level_min;
	uint32_t by_level[5];
	uint32_t leader_lines;       /* Info records "leader is node ..." with a group. */
	uint32_t leader_lines_plain; /* ...whose text names the group: wrong. */
	uint32_t debug_connections;  /* Debug records "connection to node N up". */
	uint32_t started_lines;      /* "started: ..." about no shard or group. */
	/* The window. */
	uint32_t lines, leader_one_by_one, leader_summarized, summaries;
	char first[64][200];
};

static struct sink sinks[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char dirs[NODES][600];
static _Atomic uint64_t leaders[NODES][GROUPS_MAX + 1];

/* "1,203 groups changed leader in ..." -> 1203; 0 if it is no such line. */
static uint64_t summary_count(const char *msg)
{
	uint64_t n = 0;
	const char *p = msg;

	for (; (*p >= '0' && *p <= '9') || *p == ','; p++)
		if (*p != ',')
			n = n * 10 + (uint64_t)(*p - '0');
	return strncmp(p, " groups changed leader in the last second", 41) == 0 ? n : 0;
}

static void sink_log(void *arg, const struct fl_log_record *rec)
{
	struct sink *k = arg;

	pthread_mutex_lock(&k->lock);
	if (rec->node_id != k->node_id)
		k->wrong_node = true;
	if (rec->level > k->level_min || rec->level < FL_LOG_ERROR)
		k->below_level = true;
	else
		k->by_level[rec->level]++;
	if (rec->level == FL_LOG_INFO && strncmp(rec->msg, "leader is node ", 15) == 0) {
		if (rec->group >= 1 && rec->shard >= 0)
			k->leader_lines++;
		else
			k->leader_lines_plain++;
	}
	if (strncmp(rec->msg, "group ", 6) == 0 && rec->group != 0)
		k->leader_lines_plain++; /* The group is a field, not repeated in the text. */
	if (rec->level == FL_LOG_DEBUG && strstr(rec->msg, "connection to node") && rec->shard >= 0)
		k->debug_connections++;
	if (strncmp(rec->msg, "started: ", 9) == 0 && rec->shard == -1 && rec->group == 0)
		k->started_lines++;
	if (k->recording) {
		uint64_t summed = summary_count(rec->msg);

		if (k->lines < 64)
			snprintf(k->first[k->lines], sizeof(k->first[k->lines]),
				 "%s shard %d group %llu: %s",
				 rec->level == FL_LOG_ERROR  ? "ERROR"
				 : rec->level == FL_LOG_WARN ? "WARN"
				 : rec->level == FL_LOG_INFO ? "INFO"
							     : "DEBUG",
				 (int)rec->shard, (unsigned long long)rec->group, rec->msg);
		k->lines++;
		if (summed > 0) {
			k->summaries++;
			k->leader_summarized += (uint32_t)summed;
		} else if (strncmp(rec->msg, "leader is node ", 15) == 0) {
			k->leader_one_by_one++;
		}
	}
	pthread_mutex_unlock(&k->lock);
}

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx;
	(void)group;
	(void)entries;
	memset(results, 0, count * sizeof(*results));
}

static void sm_leader_changed(void *ctx, uint64_t group, uint64_t leader, uint64_t term)
{
	_Atomic uint64_t *mine = ctx;

	(void)term;
	if (group <= GROUPS_MAX)
		atomic_store(&mine[group], leader);
}

static void node_start(int i, uint8_t level, uint32_t shards)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 11);
	config.shards_count = shards;
	config.sm = (struct fl_sm_ops){
	    .apply = sm_apply, .leader_changed = sm_leader_changed, .ctx = leaders[i]};
	config.log_level = level;
	config.log_cb = sink_log;
	config.log_arg = &sinks[i];
	sinks[i].node_id = (uint64_t)i + 1;
	sinks[i].level_min = level;
	CHECK(fl_node_start(&config, &nodes[i]) == 0);
}

static void create_groups(uint32_t groups)
{
	uint64_t members[NODES] = {1, 2, 3};

	for (uint32_t g = 1; g <= groups; g++)
		for (int i = 0; i < NODES; i++)
			CHECK(fl_group_create(nodes[i], g, members, NODES, NULL, NULL) == 0);
}

/* Wait until every live node knows a leader of every group, none of them
 * node `not` (0: any), for up to timeout_ms. */
static bool wait_leaders(uint32_t groups, uint64_t not, uint64_t timeout_ms)
{
	uint64_t deadline = node_test_now_ms() + timeout_ms;

	while (node_test_now_ms() < deadline) {
		bool all = true;

		for (int i = 0; i < NODES && all; i++) {
			if (nodes[i] == NULL)
				continue;
			for (uint32_t g = 1; g <= groups && all; g++) {
				uint64_t l = atomic_load(&leaders[i][g]);

				all = l != 0 && l != not ;
			}
		}
		if (all)
			return true;
		usleep(20000);
	}
	return false;
}

static void stop_all(void)
{
	for (int i = 0; i < NODES; i++)
		if (nodes[i] != NULL) {
			fl_node_stop(nodes[i]);
			nodes[i] = NULL;
		}
}

static void reset(const char *root, const char *name)
{
	for (int i = 0; i < NODES; i++) {
		pthread_mutex_destroy(&sinks[i].lock);
		memset(&sinks[i], 0, sizeof(sinks[i]));
		pthread_mutex_init(&sinks[i].lock, NULL);
		snprintf(dirs[i], sizeof(dirs[i]), "%s/%s-%d", root, name, i + 1);
		ports[i] = node_test_free_port();
		CHECK(ports[i] != 0);
		for (uint32_t g = 0; g <= GROUPS_MAX; g++)
			atomic_store(&leaders[i][g], 0);
	}
}

/* 1. Each node's records, at its level, with their fields. */
static void test_records(const char *root)
{
	uint8_t levels[NODES] = {FL_LOG_DEBUG, FL_LOG_INFO, FL_LOG_WARN};

	reset(root, "records");
	for (int i = 0; i < NODES; i++)
		node_start(i, levels[i], 1);
	create_groups(4);
	CHECK(wait_leaders(4, 0, 20000));
	usleep(200000);
	stop_all();
	for (int i = 0; i < NODES; i++) {
		struct sink *k = &sinks[i];

		printf(
		    "node %d (level %u): %u error, %u warn, %u info, %u debug records; %u leader "
		    "changes\n",
		    i + 1, levels[i], k->by_level[1], k->by_level[2], k->by_level[3],
		    k->by_level[4], k->leader_lines);
		CHECK(!k->wrong_node);
		CHECK(!k->below_level);
		CHECK(k->leader_lines_plain == 0);
	}
	CHECK(sinks[0].debug_connections > 0); /* Debug reaches the node at debug... */
	CHECK(sinks[1].by_level[FL_LOG_DEBUG] == 0);
	CHECK(sinks[0].leader_lines >= 4 && sinks[1].leader_lines >= 4);
	CHECK(sinks[0].started_lines == 1 && sinks[1].started_lines == 1);
	CHECK(sinks[2].by_level[FL_LOG_INFO] == 0 && sinks[2].leader_lines == 0); /* ...info. */
}

/* 2. A mass failover sums up: at most LINES_MAX lines per survivor. */
static void test_mass_failover(const char *root, uint32_t groups)
{
	uint32_t led[NODES] = {0}, most = 0;
	int down = 0;
	uint64_t t0;
	bool ok = true;

	reset(root, "failover");
	for (int i = 0; i < NODES; i++)
		node_start(i, FL_LOG_INFO, 1);
	t0 = node_test_now_ms();
	create_groups(groups);
	CHECK(wait_leaders(groups, 0, 60000));
	for (uint32_t g = 1; g <= groups; g++) {
		uint64_t l = atomic_load(&leaders[0][g]);

		if (l >= 1 && l <= NODES)
			led[l - 1]++;
	}
	for (int i = 0; i < NODES; i++)
		if (led[i] > most)
			most = led[i], down = i;
	printf("%u groups elected in %llu ms; node %d leads %u of them: stopping it\n", groups,
	       (unsigned long long)(node_test_now_ms() - t0), down + 1, most);
	for (int i = 0; i < NODES; i++) {
		pthread_mutex_lock(&sinks[i].lock);
		sinks[i].recording = i != down;
		pthread_mutex_unlock(&sinks[i].lock);
	}
	t0 = node_test_now_ms();
	fl_node_stop(nodes[down]);
	nodes[down] = NULL;
	CHECK(wait_leaders(groups, (uint64_t)down + 1, 60000));
	printf("every group has a new leader %llu ms after the stop\n",
	       (unsigned long long)(node_test_now_ms() - t0));
	usleep(1500 * 1000); /* The last summary window ends and is written. */
	for (int i = 0; i < NODES; i++) {
		struct sink *k = &sinks[i];

		if (i == down)
			continue;
		pthread_mutex_lock(&k->lock);
		k->recording = false;
		printf(
		    "node %d logged %u lines since the stop: %u leader changes one by one, %u in "
		    "%u summaries\n",
		    i + 1, k->lines, k->leader_one_by_one, k->leader_summarized, k->summaries);
		for (uint32_t j = 0; j < k->lines && j < 64; j++)
			printf("  %s\n", k->first[j]);
		if (k->lines > LINES_MAX || k->leader_one_by_one + k->leader_summarized < most)
			ok = false;
		pthread_mutex_unlock(&k->lock);
	}
	stop_all();
	if (!ok) {
		fprintf(stderr,
			"a survivor logged more than %d lines, or its lines do not count a "
			"leader change for each of the %u groups node %d led\n",
			LINES_MAX, most, down + 1);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	uint32_t groups = argc > 1 ? (uint32_t)atoi(argv[1]) : 2000;
	char root[512];

	CHECK(groups >= 10 && groups <= GROUPS_MAX);
	CHECK(node_test_root(root, sizeof(root), "log-test"));
	for (int i = 0; i < NODES; i++)
		pthread_mutex_init(&sinks[i].lock, NULL);
	test_records(root);
	test_mass_failover(root, groups);
	CHECK(node_test_remove(root));
	printf("ok\n");
	return 0;
}
