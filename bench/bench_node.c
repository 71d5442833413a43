/* Replication through the whole stack, in one process: three nodes on
 * 127.0.0.1 with real WALs (fdatasync on) and real TCP between them.
 *
 *   node/propose/groups:G   closed loop: PROPOSE_WINDOW proposals outstanding,
 *                           spread over G groups, 128-byte payloads. Reports
 *                           entries/s, commit latency p50/p99 (propose call
 *                           to apply callback on the leader) and fsyncs per
 *                           entry on the leaders' node.
 *
 * Every group is led by node 1 (the others have longer election timeouts),
 * so the figures are those of one leader replicating to two followers. The
 * WALs go to the current directory: run it on the disk you want to measure. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "bench/harness.h"
#include "flotilla.h"

enum {
	NODE_BENCH_NODES = 3,
	NODE_BENCH_PAYLOAD = 128,
	NODE_BENCH_WINDOW = 1024,
	NODE_BENCH_LAT_SLOTS = 1 << 20,
};

struct node_bench {
	struct fl_node *nodes[NODE_BENCH_NODES];
	char root[256];
	uint32_t groups;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t outstanding;
	uint64_t acked, failed;
	uint64_t *lat_us;
	uint64_t lat_count;
};

struct node_bench_op {
	struct node_bench *b;
	uint64_t start_ns;
};

static uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void nb_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	memset(results, 0, count * sizeof(*results));
}

static uint16_t nb_free_port(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ASSERT(fd >= 0);
	ASSERT(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	ASSERT(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
	close(fd);
	return ntohs(addr.sin_port);
}

static void nb_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct node_bench_op *op = arg;
	struct node_bench *b = op->b;
	uint64_t us = (bench_now_ns() - op->start_ns) / 1000;

	(void)result, (void)leader;
	pthread_mutex_lock(&b->lock);
	if (rv == 0) {
		b->acked++;
		if (b->lat_count < NODE_BENCH_LAT_SLOTS)
			b->lat_us[b->lat_count++] = us;
	} else {
		b->failed++;
	}
	b->outstanding--;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
	free(op);
}

static void nb_start(struct node_bench *b, uint32_t groups)
{
	uint16_t ports[NODE_BENCH_NODES];
	char addrs[NODE_BENCH_NODES][64];
	uint64_t members[NODE_BENCH_NODES] = {1, 2, 3};

	snprintf(b->root, sizeof(b->root), "flotilla-bench-node-XXXXXX");
	ASSERT(mkdtemp(b->root) != NULL);
	b->groups = groups;
	b->lat_us = malloc(NODE_BENCH_LAT_SLOTS * sizeof(*b->lat_us));
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	for (int i = 0; i < NODE_BENCH_NODES; i++) {
		ports[i] = nb_free_port();
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%u", ports[i]);
	}
	for (int i = 0; i < NODE_BENCH_NODES; i++) {
		struct fl_node_config c;
		struct fl_peer peers[NODE_BENCH_NODES - 1];
		char dir[300];
		uint32_t n = 0;

		for (int j = 0; j < NODE_BENCH_NODES; j++)
			if (j != i)
				peers[n++] =
				    (struct fl_peer){.id = (uint64_t)j + 1, .addr = addrs[j]};
		snprintf(dir, sizeof(dir), "%s/node-%d", b->root, i + 1);
		fl_node_config_default(&c, (uint64_t)i + 1);
		c.data_dir = dir;
		c.listen_addr = addrs[i];
		c.peers = peers;
		c.peers_count = n;
		c.shards_count = 1;
		c.quiesce = false;
		/* Node 1 times out first everywhere and leads every group. */
		c.election_timeout_ms = i == 0 ? 200 : 5000;
		c.heartbeat_interval_ms = 50;
		c.sm = (struct fl_sm_ops){.apply = nb_apply};
		ASSERT(fl_node_start(&c, &b->nodes[i]) == 0);
	}
	for (uint32_t g = 1; g <= groups; g++)
		for (int i = 0; i < NODE_BENCH_NODES; i++)
			ASSERT(fl_group_create(b->nodes[i], g, members, NODE_BENCH_NODES, NULL,
					       NULL) == 0);
	for (uint32_t g = 1; g <= groups; g++) {
		uint64_t leader = 0;

		for (int tries = 0; tries < 1000; tries++) {
			if (fl_propose_sync(b->nodes[0], g, "warm", 4, NULL, &leader) == 0)
				break;
			/* Another node won this group first: hand it to node 1. */
			if (leader >= 2 && leader <= NODE_BENCH_NODES)
				fl_transfer(b->nodes[leader - 1], g, 1, NULL, NULL);
			usleep(10000);
		}
	}
}

static void nb_stop(struct node_bench *b)
{
	char cmd[300];

	for (int i = 0; i < NODE_BENCH_NODES; i++)
		fl_node_stop(b->nodes[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", b->root);
	free(b->lat_us);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

static void bench_node_propose(struct bench_state *state, void *arg)
{
	struct node_bench b = {0};
	uint8_t payload[NODE_BENCH_PAYLOAD];
	uint64_t g = 0, submitted = 0;
	struct fl_metrics m0, m1;

	(void)arg;
	memset(payload, 0x5a, sizeof(payload));
	nb_start(&b, (uint32_t)bench_range(state, 0));
	fl_node_metrics(b.nodes[0], &m0);
	while (bench_keep_running(state)) {
		/* One iteration: keep the window full until 1,000 more are acked. */
		uint64_t target = b.acked + 1000;

		pthread_mutex_lock(&b.lock);
		while (b.acked + b.failed < target) {
			while (b.outstanding < NODE_BENCH_WINDOW &&
			       submitted < target + NODE_BENCH_WINDOW) {
				struct node_bench_op *op = malloc(sizeof(*op));

				op->b = &b;
				op->start_ns = bench_now_ns();
				b.outstanding++;
				submitted++;
				pthread_mutex_unlock(&b.lock);
				g = g % b.groups + 1;
				if (fl_propose(b.nodes[0], g, payload, sizeof(payload), nb_done,
					       op) != 0)
					nb_done(op, -1, 0, 0);
				pthread_mutex_lock(&b.lock);
			}
			pthread_cond_wait(&b.cond, &b.lock);
		}
		pthread_mutex_unlock(&b.lock);
	}
	pthread_mutex_lock(&b.lock);
	while (b.outstanding > 0)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	fl_node_metrics(b.nodes[0], &m1);
	bench_set_items(state, (int64_t)b.acked);
	bench_set_bytes(state, (int64_t)(b.acked * NODE_BENCH_PAYLOAD));
	bench_latency_counters(state, b.lat_us, b.lat_count, 1);
	bench_counter(state, "fsyncs_per_entry",
		      (double)(m1.fsyncs - m0.fsyncs) / (double)(b.acked ? b.acked : 1), 0);
	bench_counter(state, "failed", (double)b.failed, 0);
	nb_stop(&b);
}

void bench_node_register(void)
{
	static const int64_t groups[] = {1, 1000};

	bench_register(&(struct bench_def){.name = "node/propose",
					   .fn = bench_node_propose,
					   .args = groups,
					   .args_count = 2,
					   .arg_name = "groups",
					   .real_time = true,
					   .unit = BENCH_UNIT_MS});
}
