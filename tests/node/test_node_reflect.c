/* The reflection attack on shared-key peer authentication is refused.
 *
 * Nodes 1 and 2 share a key; the test is an attacker without it. It dials
 * node 1 claiming node 2 (connection A), and to answer node 1's challenge it
 * dials node 2 claiming node 1 (connection B), hands node 2 that very
 * challenge, and relays node 2's proof to node 1. Every handshake it sends
 * is a real node's own (learnt by probing each node), so only the proofs
 * can tell the attacker from a peer: a proof bound to who computed it
 * (dialler or acceptor) and to both challenges is never the one node 1
 * asks for. Node 1 must close connection A, and a heartbeat with a far
 * higher term sent on it must leave node 1's term alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/le.h"
#include "engine/raft.h"
#include "flotilla.h"
#include "shard/wire.h"
#include "tests/node/node_test.h"

/* The handshake flags of a node with a shared key. */
#ifndef REFLECT_FLAGS
#define REFLECT_FLAGS (WIRE_HANDSHAKE_AUTH | WIRE_HANDSHAKE_AUTH_FRAMES)
#endif

#define KEY     "the shared secret of this test cluster"
#define CLUSTER 7

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 7;
}

/* The handshake node answers with (shard 0), asked by a probe claiming to
 * be claimed: the same bytes it sends any peer of shard 0. */
static void probe(uint16_t port, uint64_t claimed, uint8_t *answer)
{
	struct wire_handshake hs = {.version = WIRE_VERSION,
				    .flags = REFLECT_FLAGS | WIRE_HANDSHAKE_PROBE,
				    .cluster_id = CLUSTER,
				    .node_id = claimed,
				    .shard_index = 0,
				    .shard_count = 1,
				    .incarnation = 1};
	uint8_t buf[WIRE_HANDSHAKE_SIZE];
	int fd = node_test_dial(port);

	wire_handshake_encode(&hs, buf);
	node_test_send(fd, buf, sizeof(buf));
	node_test_recv(fd, answer, WIRE_HANDSHAKE_SIZE);
	CHECK(wire_handshake_decode(&hs, answer) == 0);
	close(fd);
}

int main(void)
{
	char root[] = "flotilla-reflect-XXXXXX", dirs[2][64], cmd[96];
	struct node_test_addrs addrs[2];
	struct fl_node *nodes[2];
	uint16_t ports[2];
	uint64_t members[2] = {1, 2}, result = 0, term_before, term_after;
	uint8_t hs1[WIRE_HANDSHAKE_SIZE], hs2[WIRE_HANDSHAKE_SIZE], got[WIRE_HANDSHAKE_SIZE];
	uint8_t mine[32], node1_challenge[32], node2_challenge[32], proof[32], node1_proof[32];
	uint8_t frame[WIRE_FRAME_HEADER_SIZE + WIRE_BEAT_SIZE] = {0};
	bool committed = false, closed;
	int a, b;

	CHECK(mkdtemp(root) != NULL);
	for (int i = 0; i < 2; i++) {
		ports[i] = node_test_free_port();
		CHECK(ports[i] != 0);
		snprintf(dirs[i], sizeof(dirs[i]), "%s/node-%d", root, i + 1);
	}
	for (int i = 0; i < 2; i++) {
		struct fl_node_config c;

		node_test_config(&c, &addrs[i], i, 2, ports, dirs[i], CLUSTER);
		c.auth_key = KEY;
		c.auth_key_size = (uint32_t)strlen(KEY);
		c.sm = (struct fl_sm_ops){.apply = sm_apply};
		CHECK(fl_node_start(&c, &nodes[i]) == 0);
		CHECK(fl_group_create(nodes[i], 1, members, 2, NULL, NULL) == 0);
	}
	for (int t = 0; t < 1000 && !committed; t++) {
		for (int i = 0; i < 2 && !committed; i++)
			committed = fl_propose_sync(nodes[i], 1, "k", 1, &result, NULL) == 0;
		usleep(10000);
	}
	CHECK(committed); /* The two real nodes, with the key, work together. */

	probe(ports[0], 2, hs1); /* Node 1's handshake to peers of shard 0. */
	probe(ports[1], 1, hs2); /* Node 2's. */
	term_before = node_test_term(nodes[0], 1);

	/* A: to node 1 as node 2, with node 2's own handshake. */
	a = node_test_dial(ports[0]);
	node_test_send(a, hs2, sizeof(hs2));
	node_test_recv(a, got, sizeof(got));
	CHECK(memcmp(got, hs1, sizeof(got)) == 0);
	for (size_t i = 0; i < sizeof(mine); i++)
		mine[i] = (uint8_t)(i * 13 + 5);
	node_test_send(a, mine, sizeof(mine));
	node_test_recv(a, node1_challenge, sizeof(node1_challenge));

	/* B: to node 2 as node 1, with node 1's own handshake, handing node 2
	 * node 1's challenge: node 2 answers it with its proof. */
	b = node_test_dial(ports[1]);
	node_test_send(b, hs1, sizeof(hs1));
	node_test_recv(b, got, sizeof(got));
	CHECK(memcmp(got, hs2, sizeof(got)) == 0);
	node_test_send(b, node1_challenge, sizeof(node1_challenge));
	node_test_recv(b, node2_challenge, sizeof(node2_challenge));
	node_test_recv(b, proof, sizeof(proof));

	/* Back on A: node 2's proof as ours, then a heartbeat 1000 terms on. */
	node_test_send(a, proof, sizeof(proof));
	node_test_recv(a, node1_proof, sizeof(node1_proof));
	usleep(200 * 1000);                          /* Node 1 checks the proof and decides. */
	le_put64(frame + WIRE_FRAME_HEADER_SIZE, 1); /* group */
	le_put64(frame + WIRE_FRAME_HEADER_SIZE + 8, term_before + 1000); /* term */
	frame[WIRE_FRAME_HEADER_SIZE + 32] = RAFT_MSG_HEARTBEAT;
	wire_frame_seal(frame, WIRE_FRAME_HEARTBEATS, WIRE_BEAT_SIZE);
	(void)!send(a, frame, sizeof(frame), MSG_NOSIGNAL); /* May be closed already. */
	usleep(500 * 1000);
	term_after = node_test_term(nodes[0], 1);
	closed = node_test_closed(a, 3000);
	close(b);
	printf("node 1's term of group 1: %llu before the attack, %llu after; connection A %s\n",
	       (unsigned long long)term_before, (unsigned long long)term_after,
	       closed ? "closed by node 1" : "still open: the attacker was accepted as node 2");
	CHECK(term_after < term_before + 1000);
	CHECK(closed);

	for (int i = 0; i < 2; i++)
		fl_node_stop(nodes[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	CHECK(system(cmd) == 0);
	printf("ok\n");
	return 0;
}
