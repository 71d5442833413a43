/* What the in-process cluster tests of tests/node share: CHECK(), a clock, a
 * free port on 127.0.0.1, and the addresses and common settings of node i
 * of a cluster whose nodes listen on ports[]. */
#ifndef TESTS_NODE_NODE_TEST_H
#define TESTS_NODE_NODE_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "flotilla.h"

#define NODE_TEST_NODES_MAX 8

/* Where CHECK() reports: standard error, or the copy of it a test keeps
 * while it captures descriptor 2. */
extern int node_test_err_fd;

/* Stop the test with the file, line and condition that failed. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			dprintf(node_test_err_fd, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                            \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Storage for the strings and peers a config points at: keep it alive until
 * fl_node_start() returns. */
struct node_test_addrs {
	struct fl_peer peers[NODE_TEST_NODES_MAX - 1];
	char addrs[NODE_TEST_NODES_MAX][64];
	char listen[64];
};

uint64_t node_test_now_ms(void);

#define NODE_TEST_PATH_SIZE 600

/* A fresh directory for a test's nodes, $FLOTILLA_TEST_DIR (or the current
 * directory)/flotilla-NAME-XXXXXX, written to root; false when it cannot be
 * made. */
bool node_test_root(char *root, size_t size, const char *name);

/* For nodes 0..n-1: dirs[i] = ROOT/node-(i+1) and a free port ports[i];
 * false when no port was found. */
bool node_test_nodes(const char *root, int n, char dirs[][NODE_TEST_PATH_SIZE], uint16_t *ports);

/* Remove root and everything below it; false when that failed. */
bool node_test_remove(const char *root);

/* A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's
 * ephemeral ports (so no outgoing connection takes it while its node is
 * stopped); 0 if none was found. */
uint16_t node_test_free_port(void);

/* Fill config for node i (id i + 1) of nodes_count nodes: defaults, the
 * cluster id, data_dir, its listen address and every other node as a peer,
 * one shard, a 300 ms election timeout and 50 ms heartbeats. */
void node_test_config(struct fl_node_config *config, struct node_test_addrs *a, int i,
		      int nodes_count, const uint16_t *ports, const char *data_dir,
		      uint64_t cluster_id);

/* A fake peer's raw socket to 127.0.0.1:port (CHECKed). */
int node_test_dial(uint16_t port);
/* Send or receive exactly size bytes; CHECKs that it happens within 3 s. */
void node_test_send(int fd, const void *buf, size_t size);
void node_test_recv(int fd, void *buf, size_t size);
/* Whether the other side closed fd within wait_ms (bytes it sends first are
 * skipped); closes fd either way. */
bool node_test_closed(int fd, int wait_ms);
/* The term of node's replica of group (fl_group_info), waited for. */
uint64_t node_test_term(struct fl_node *node, uint64_t group);

#endif
