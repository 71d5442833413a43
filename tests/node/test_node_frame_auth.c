/* With a shared key, every frame after the handshake is authenticated.
 *
 * Node 1 (a shared key, its peer node 2 never up) is dialled by the test,
 * which holds the key and plays node 2 through a real authenticated
 * handshake (shard/auth.h, the node's own derivation). On each connection
 * it then sends frames the node must refuse: a bad tag, a replayed frame, a
 * frame tagged for another connection, one tagged with the other
 * direction's key, one out of order. Each closes the connection, and the
 * heartbeat 1000 terms ahead that each carries never moves node 1's term.
 * Last, the same heartbeat rightly tagged does move it: the refusals were
 * the tags', not the test's. */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/le.h"
#include "engine/raft.h"
#include "flotilla.h"
#include "shard/auth.h"
#include "shard/wire.h"
#include "tests/node/node_test.h"

#define SECRET  "the shared secret of this test cluster"
#define CLUSTER 7
#define FRAME   (WIRE_FRAME_HEADER_SIZE + WIRE_BEAT_SIZE + AUTH_TAG_SIZE)

static uint16_t port;
static uint8_t key[AUTH_KEY_SIZE]; /* As node.c derives it from the secret. */

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 7;
}

/* One connection to node 1 as node 2, after the handshake. */
struct fake {
	int fd;
	uint8_t keys[2][AUTH_KEY_SIZE]; /* Of the frames each role sends. */
};

static void fake_connect(struct fake *f)
{
	struct wire_handshake hs = {.version = WIRE_VERSION,
				    .flags = WIRE_HANDSHAKE_AUTH | WIRE_HANDSHAKE_AUTH_FRAMES,
				    .cluster_id = CLUSTER,
				    .node_id = 2,
				    .shard_index = 0,
				    .shard_count = 1,
				    .incarnation = 77};
	uint8_t ours[WIRE_HANDSHAKE_SIZE], theirs[WIRE_HANDSHAKE_SIZE];
	uint8_t mine[AUTH_CHALLENGE_SIZE], other[AUTH_CHALLENGE_SIZE], proof[AUTH_PROOF_SIZE];
	struct auth_transcript t = {
	    .cluster_id = CLUSTER, .challenge = {mine, other}, .handshake = {ours, theirs}};

	f->fd = node_test_dial(port);
	wire_handshake_encode(&hs, ours);
	node_test_send(f->fd, ours, sizeof(ours));
	node_test_recv(f->fd, theirs, sizeof(theirs));
	randombytes_buf(mine, sizeof(mine));
	node_test_send(f->fd, mine, sizeof(mine));
	node_test_recv(f->fd, other, sizeof(other));
	auth_proof(proof, key, AUTH_DIALLER, &t);
	node_test_send(f->fd, proof, sizeof(proof));
	node_test_recv(f->fd, proof, sizeof(proof));
	CHECK(auth_proof_check(proof, key, AUTH_ACCEPTOR, &t)); /* The test derives alike. */
	auth_session_key(f->keys[AUTH_DIALLER], key, AUTH_DIALLER, &t);
	auth_session_key(f->keys[AUTH_ACCEPTOR], key, AUTH_ACCEPTOR, &t);
}

/* A heartbeat frame of group 1 at term, tagged as frame counter with
 * session_key; beats 0 makes it an empty (liveness) frame. */
static size_t beat_frame(uint8_t *frame, uint64_t term, int beats, const uint8_t *session_key,
			 uint64_t counter)
{
	size_t body = beats ? WIRE_BEAT_SIZE : 0;

	memset(frame, 0, FRAME);
	le_put64(frame + WIRE_FRAME_HEADER_SIZE, 1);
	le_put64(frame + WIRE_FRAME_HEADER_SIZE + 8, term);
	frame[WIRE_FRAME_HEADER_SIZE + 32] = RAFT_MSG_HEARTBEAT;
	wire_frame_seal(frame, WIRE_FRAME_HEARTBEATS, (uint32_t)body);
	auth_frame_tag(frame + WIRE_FRAME_HEADER_SIZE + body, session_key, counter, frame,
		       WIRE_FRAME_HEADER_SIZE + body);
	return WIRE_FRAME_HEADER_SIZE + body + AUTH_TAG_SIZE;
}

/* Whether fd is still open after wait_ms (nothing comes on it, not even
 * its end). */
static bool still_open(int fd, int wait_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	return poll(&pfd, 1, wait_ms) == 0;
}

/* The node closes the connection and node 1's term stays below `below`. */
static void expect_refused(const char *what, struct fake *f, struct fl_node *node, uint64_t below)
{
	bool closed = node_test_closed(f->fd, 3000);
	uint64_t term = node_test_term(node, 1);

	printf("%s: connection %s, node 1's term %llu\n", what, closed ? "closed" : "OPEN",
	       (unsigned long long)term);
	CHECK(closed);
	CHECK(term < below);
}

int main(void)
{
	char dir[] = "flotilla-frame-auth-XXXXXX", cmd[96], peer_addr[64];
	struct fl_node_config c;
	struct fl_peer peer = {.id = 2, .addr = peer_addr};
	struct fl_node *node;
	struct fl_metrics m;
	uint64_t members[2] = {1, 2}, term, high;
	uint8_t frame[FRAME], kept[FRAME];
	size_t size, kept_size;
	struct fake f;

	CHECK(sodium_init() >= 0);
	CHECK(crypto_generichash(key, sizeof(key), (const uint8_t *)SECRET, strlen(SECRET), NULL,
				 0) == 0);
	CHECK(mkdtemp(dir) != NULL);
	/* Node 2's address: a port nothing listens on. */
	snprintf(peer_addr, sizeof(peer_addr), "127.0.0.1:%u", node_test_free_port());
	fl_node_config_default(&c, 1);
	c.cluster_id = CLUSTER;
	c.data_dir = dir;
	c.peers = &peer;
	c.peers_count = 1;
	c.shards_count = 1;
	c.election_timeout_ms = 60000; /* No election moves the term meanwhile. */
	c.heartbeat_interval_ms = 20;
	c.auth_key = SECRET;
	c.auth_key_size = (uint32_t)strlen(SECRET);
	c.sm = (struct fl_sm_ops){.apply = sm_apply};
	CHECK(fl_node_start(&c, &node) == 0);
	CHECK(fl_group_create(node, 1, members, 2, NULL, NULL) == 0);
	port = fl_node_port(node);
	term = node_test_term(node, 1);
	high = term + 1000;

	/* A good frame, then a bad tag. */
	fake_connect(&f);
	size = beat_frame(frame, term, 0, f.keys[AUTH_DIALLER], 0);
	node_test_send(f.fd, frame, size);
	CHECK(still_open(f.fd, 300)); /* A rightly tagged frame is taken. */
	size = beat_frame(frame, high, 1, f.keys[AUTH_DIALLER], 1);
	frame[size - 1] ^= 1;
	node_test_send(f.fd, frame, size);
	expect_refused("bad tag", &f, node, high);

	/* A replay: frame 0 sent again. Frame 1 (the high term) is kept, not
	 * sent, for the next case. */
	fake_connect(&f);
	size = beat_frame(frame, term, 0, f.keys[AUTH_DIALLER], 0);
	kept_size = beat_frame(kept, high, 1, f.keys[AUTH_DIALLER], 1);
	node_test_send(f.fd, frame, size);
	node_test_send(f.fd, frame, size);
	expect_refused("replayed frame", &f, node, high);

	/* Frame 1 of the last connection, in its place on a new one. */
	fake_connect(&f);
	size = beat_frame(frame, term, 0, f.keys[AUTH_DIALLER], 0);
	node_test_send(f.fd, frame, size);
	node_test_send(f.fd, kept, kept_size);
	expect_refused("frame of another connection", &f, node, high);

	/* Tagged with the key of the other direction (acceptor to dialler). */
	fake_connect(&f);
	size = beat_frame(frame, high, 1, f.keys[AUTH_ACCEPTOR], 0);
	node_test_send(f.fd, frame, size);
	expect_refused("other direction's key", &f, node, high);

	/* Out of order: frame 1 first. */
	fake_connect(&f);
	size = beat_frame(frame, high, 1, f.keys[AUTH_DIALLER], 1);
	node_test_send(f.fd, frame, size);
	expect_refused("reordered frame", &f, node, high);

	/* The same heartbeat, rightly tagged, is applied. */
	fake_connect(&f);
	size = beat_frame(frame, high, 1, f.keys[AUTH_DIALLER], 0);
	node_test_send(f.fd, frame, size);
	for (int i = 0; i < 300 && node_test_term(node, 1) < high; i++)
		usleep(10000);
	printf("rightly tagged: node 1's term %llu\n", (unsigned long long)node_test_term(node, 1));
	CHECK(node_test_term(node, 1) == high);
	CHECK(still_open(f.fd, 100));
	close(f.fd);

	fl_node_metrics(node, &m);
	printf("peers refused: %llu\n", (unsigned long long)m.peers_refused);
	CHECK(m.peers_refused >= 5);
	fl_node_stop(node);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	printf("ok\n");
	return 0;
}
