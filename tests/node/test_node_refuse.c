/* A node refuses bad peers and bad frames, and keeps serving.
 *
 * One node listens on 127.0.0.1; the test connects raw sockets to it and
 * sends: handshakes with another cluster id, an unknown node id, another
 * shard count, a bad shard index, garbage; then, after a good handshake,
 * frames with a bad checksum, an oversize length, an unknown kind, a body
 * that does not decode, and a truncated frame. Each connection must be
 * closed by the node (and counted as refused where a reason is logged), and
 * afterwards the node must still commit proposals. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "flotilla.h"
#include "shard/wire.h"
#include "tests/node/node_test.h"

static uint16_t port;

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 42;
}

static _Atomic int batch_calls, batch_failures;

static void batch_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	(void)arg, (void)leader;
	if (rv != 0 || result != 42)
		batch_failures++;
	batch_calls++;
}

static void send_all(int fd, const void *buf, size_t size)
{
	CHECK(send(fd, buf, size, MSG_NOSIGNAL) == (ssize_t)size);
}

/* The node must close fd within 3 s: a read returns 0 or an error. Any
 * handshake it answers with first is skipped. */
static void expect_closed(int fd)
{
	uint8_t buf[256];

	for (int i = 0; i < 100; i++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		CHECK(poll(&pfd, 1, 3000) == 1);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0) {
			close(fd);
			return;
		}
	}
	CHECK(!"connection closed");
}

static int handshake(uint64_t cluster, uint64_t node, uint32_t shard, uint32_t shards)
{
	struct wire_handshake hs = {.version = WIRE_VERSION,
				    .cluster_id = cluster,
				    .node_id = node,
				    .shard_index = shard,
				    .shard_count = shards};
	uint8_t buf[WIRE_HANDSHAKE_SIZE];
	int fd = node_test_dial(port);

	wire_handshake_encode(&hs, buf);
	send_all(fd, buf, sizeof(buf));
	return fd;
}

/* A good handshake, answered by the node's own. */
static int good_conn(void)
{
	uint8_t buf[WIRE_HANDSHAKE_SIZE];
	struct wire_handshake hs;
	int fd = handshake(7, 2, 0, 2);
	size_t got = 0;

	while (got < sizeof(buf)) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);

		CHECK(n > 0);
		got += (size_t)n;
	}
	CHECK(wire_handshake_decode(&hs, buf) == 0);
	CHECK(hs.node_id == 1 && hs.cluster_id == 7 && hs.shard_count == 2);
	return fd;
}

static void send_frame(int fd, uint32_t kind, const uint8_t *body, uint32_t size, bool corrupt)
{
	uint8_t *frame = malloc(WIRE_FRAME_HEADER_SIZE + size);

	memcpy(frame + WIRE_FRAME_HEADER_SIZE, body, size);
	wire_frame_seal(frame, kind, size);
	if (corrupt)
		frame[WIRE_FRAME_HEADER_SIZE] ^= 0x40;
	send_all(fd, frame, WIRE_FRAME_HEADER_SIZE + size);
	free(frame);
}

int main(void)
{
	struct fl_node_config config;
	struct fl_peer peer = {.id = 2, .addr = "127.0.0.1:9"}; /* Never up. */
	struct fl_node *node;
	struct fl_metrics m;
	char dir[] = "flotilla-refuse-XXXXXX";
	uint8_t garbage[WIRE_HANDSHAKE_SIZE], body[256];
	uint64_t members[] = {1}, result = 0, leader = 0;
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	fl_node_config_default(&config, 1);
	config.cluster_id = 7;
	config.data_dir = dir;
	config.peers = &peer;
	config.peers_count = 1;
	config.shards_count = 2;
	config.election_timeout_ms = 200;
	config.heartbeat_interval_ms = 20;
	config.sm = (struct fl_sm_ops){.apply = sm_apply};
	CHECK(fl_node_start(&config, &node) == 0);
	port = fl_node_port(node);

	expect_closed(handshake(8, 2, 0, 2)); /* Another cluster. */
	expect_closed(handshake(7, 5, 0, 2)); /* Unknown node. */
	expect_closed(handshake(7, 2, 0, 3)); /* Another shard count. */
	expect_closed(handshake(7, 2, 2, 2)); /* Shard index out of range. */
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)(i * 37 + 11);
	fd = node_test_dial(port);
	send_all(fd, garbage, sizeof(garbage));
	expect_closed(fd);
	fd = node_test_dial(port); /* A handshake cut short. */
	send_all(fd, garbage, 10);
	shutdown(fd, SHUT_WR);
	expect_closed(fd);

	memset(body, 0, sizeof(body));
	fd = good_conn();
	send_frame(fd, WIRE_FRAME_RAFT, body, sizeof(body), true); /* Bad checksum. */
	expect_closed(fd);
	fd = good_conn();
	{
		uint8_t header[WIRE_FRAME_HEADER_SIZE] = {0};

		header[3] = 0x7f; /* 2 GiB body: over the frame limit. */
		header[4] = WIRE_FRAME_RAFT;
		send_all(fd, header, sizeof(header));
	}
	expect_closed(fd);
	fd = good_conn();
	send_frame(fd, 99, body, sizeof(body), false); /* Unknown kind. */
	expect_closed(fd);
	fd = good_conn();
	send_frame(fd, WIRE_FRAME_RAFT, body, sizeof(body), false); /* Type 0: undecodable. */
	expect_closed(fd);
	fd = good_conn();
	send_frame(fd, WIRE_FRAME_RAFT, body, 40, false); /* Shorter than a message. */
	expect_closed(fd);
	fd = good_conn(); /* A frame cut short, then the peer goes away. */
	{
		uint8_t frame[WIRE_FRAME_HEADER_SIZE + 64] = {0};

		wire_frame_seal(frame, WIRE_FRAME_RAFT, 64);
		send_all(fd, frame, sizeof(frame) - 20);
		close(fd);
	}

	fl_node_metrics(node, &m);
	printf("peers refused: %llu\n", (unsigned long long)m.peers_refused);
	CHECK(m.peers_refused >= 10);

	/* Still serving: a one-member group elects itself and commits. */
	CHECK(fl_group_create(node, 100, members, 1, NULL, NULL) == 0);
	for (int i = 0; i < 300; i++) {
		int rv = fl_propose_sync(node, 100, "x", 1, &result, &leader);

		if (rv == 0)
			break;
		CHECK(rv == FL_ERR_NOT_LEADER);
		usleep(10000);
	}
	CHECK(result == 42);

	/* The same node also serves the rest of the API it is asked for here:
	 * a batch of proposals with a callback each, the list of groups, metrics. */
	{
		static int calls;
		struct fl_proposal batch[3] = {
		    {"a", 1, &calls}, {"bb", 2, &calls}, {"ccc", 3, &calls}};
		uint64_t groups[4] = {0};
		uint32_t count = 0;

		CHECK(fl_propose_batch(node, 100, batch, 3, batch_done) == 0);
		for (int i = 0; i < 300 && batch_calls < 3; i++)
			usleep(10000);
		CHECK(batch_calls == 3 && batch_failures == 0);
		CHECK(fl_group_list(node, groups, 4, &count) == 0);
		CHECK(count == 1 && groups[0] == 100);
		fl_node_metrics(node, &m);
		CHECK(m.groups == 1 && m.leaders == 1 && m.elections >= 1 && m.proposals >= 4);
	}
	fl_node_stop(node);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		CHECK(system(cmd) == 0);
	}
	printf("ok\n");
	return 0;
}
