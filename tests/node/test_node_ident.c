/* Peer identity: a second process claiming a live node's id from another
 * data directory is refused by the peers and logged (rate-limited), while
 * the original keeps replicating; the original restarted on its own
 * directory is accepted at once; a node started on a new directory at the
 * node's address (a replaced disk) is accepted once the original is gone.
 *
 * Three in-process nodes (ids 1..3) and a fourth fl_node with id 3 on
 * another directory and port. The library's log goes to stderr, which the
 * test sends to a file it reads back. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

enum { NODES = 3, GROUP = 1 };

static char log_path[600];
static _Atomic uint64_t applied[NODES + 1]; /* By slot: 0..2 the nodes, 3 the impostor. */

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	_Atomic uint64_t *counter = ctx;

	(void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = atomic_fetch_add(counter, 1) + 1;
}

static struct fl_node *node_start(int slot, int as_index, const uint16_t *ports, const char *dir)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;
	struct fl_node *node = NULL;
	int rv;

	node_test_config(&config, &addrs, as_index, NODES, ports, dir, 5);
	config.sm = (struct fl_sm_ops){.apply = sm_apply, .ctx = (void *)&applied[slot]};
	rv = fl_node_start(&config, &node);
	if (rv != 0)
		dprintf(node_test_err_fd, "node slot %d: %s\n", slot, fl_strerror(rv));
	CHECK(rv == 0);
	return node;
}

/* Lines of the log so far that contain text. */
static int log_count(const char *text)
{
	FILE *f = fopen(log_path, "r");
	char line[2048];
	int n = 0;

	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, text) != NULL;
	fclose(f);
	return n;
}

/* Propose through whichever node leads the group; returns once committed. */
static void propose(struct fl_node **nodes)
{
	for (int attempt = 0; attempt < 200; attempt++) {
		for (int i = 0; i < NODES; i++) {
			uint64_t result = 0, leader = 0;

			if (nodes[i] != NULL &&
			    fl_propose_sync(nodes[i], GROUP, "x", 1, &result, &leader) == 0)
				return;
		}
		usleep(50 * 1000);
	}
	CHECK(!"a proposal committed within 10 s");
}

/* Wait until the node in slot has applied at least count entries. */
static void wait_applied(int slot, uint64_t count)
{
	uint64_t t0 = node_test_now_ms();

	while (atomic_load(&applied[slot]) < count) {
		if (node_test_now_ms() - t0 > 10000) {
			dprintf(node_test_err_fd, "slot %d applied %llu, not %llu, in 10 s\n", slot,
				(unsigned long long)atomic_load(&applied[slot]),
				(unsigned long long)count);
			CHECK(!"applied in time");
		}
		usleep(20 * 1000);
	}
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	struct fl_node *nodes[NODES], *impostor;
	uint64_t members[NODES] = {1, 2, 3}, t0, elapsed_ms;
	uint16_t ports[NODES], impostor_ports[NODES];
	char root[512], dirs[NODES][600], other_dir[600], fresh_dir[600];
	int fd, claims, refused_lines;

	snprintf(root, sizeof(root), "%s/flotilla-ident-XXXXXX", base ? base : ".");
	CHECK(mkdtemp(root) != NULL);
	snprintf(log_path, sizeof(log_path), "%s/log", root);
	node_test_err_fd = dup(2);
	fd = open(log_path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && node_test_err_fd >= 0);
	CHECK(dup2(fd, 2) == 2);
	close(fd);
	for (int i = 0; i < NODES; i++) {
		snprintf(dirs[i], sizeof(dirs[i]), "%s/node-%d", root, i + 1);
		ports[i] = node_test_free_port();
		CHECK(ports[i] != 0);
	}
	for (int i = 0; i < NODES; i++)
		nodes[i] = node_start(i, i, ports, dirs[i]);
	for (int i = 0; i < NODES; i++)
		CHECK(fl_group_create(nodes[i], GROUP, members, NODES, NULL, NULL) == 0);
	propose(nodes);
	wait_applied(2, 1);

	/* A second node 3, on another directory and port, hosting the group. */
	snprintf(other_dir, sizeof(other_dir), "%s/node-3-other", root);
	memcpy(impostor_ports, ports, sizeof(ports));
	impostor_ports[2] = node_test_free_port();
	impostor = node_start(3, 2, impostor_ports, other_dir);
	CHECK(fl_group_create(impostor, GROUP, members, NODES, NULL, NULL) == 0);
	t0 = node_test_now_ms();
	while (log_count("two processes claim node 3") < 2 && node_test_now_ms() - t0 < 10000)
		usleep(50 * 1000);
	/* The original replicates throughout; the impostor gets nothing. */
	for (int k = 0; k < 20; k++)
		propose(nodes);
	wait_applied(2, 21);
	usleep(1500 * 1000); /* Let the impostor campaign and redial some more. */
	elapsed_ms = node_test_now_ms() - t0;
	claims = log_count("two processes claim node 3: refused the newer one");
	refused_lines = log_count("refuses this process as node 3");
	dprintf(node_test_err_fd, "in %llu ms: %d refusal lines at the peers, %d at the newcomer\n",
		(unsigned long long)elapsed_ms, claims, refused_lines);
	CHECK(claims >= 2); /* Both peers saw it, each logging both incarnations... */
	CHECK(log_count("is incarnation") >= 2);
	/* ...at most once per peer every 5 s. */
	CHECK(claims <= 2 * (int)(elapsed_ms / 5000 + 1));
	CHECK(refused_lines >= 1 && refused_lines <= 2 * (int)(elapsed_ms / 5000 + 1));
	CHECK(atomic_load(&applied[3]) == 0);
	{
		struct fl_metrics m;

		fl_node_metrics(nodes[0], &m);
		CHECK(m.peers_refused >= 1);
	}
	fl_node_stop(impostor);

	/* The original restarted on its own directory: accepted at once. */
	claims = log_count("two processes claim node 3");
	fl_node_stop(nodes[2]);
	atomic_store(&applied[2], 0);
	nodes[2] = node_start(2, 2, ports, dirs[2]);
	propose(nodes);
	wait_applied(2, 22); /* Replayed from its WAL, and the new entry. */
	CHECK(log_count("two processes claim node 3") == claims);

	/* Node 3's disk replaced: a new directory at its address, the old
	 * process gone. The peers learn the new incarnation where they dial
	 * node 3 and accept its connections (it dials them for a group of its
	 * own, which they do not host). */
	fl_node_stop(nodes[2]);
	snprintf(fresh_dir, sizeof(fresh_dir), "%s/node-3-fresh", root);
	nodes[2] = node_start(2, 2, ports, fresh_dir);
	{
		struct fl_metrics before[2], after[2];

		for (int i = 0; i < 2; i++)
			fl_node_metrics(nodes[i], &before[i]);
		CHECK(fl_group_create(nodes[2], GROUP + 1, members, NODES, NULL, NULL) == 0);
		t0 = node_test_now_ms();
		while (log_count("node 3 is now incarnation") < 2 &&
		       node_test_now_ms() - t0 < 10000)
			usleep(50 * 1000);
		usleep(1500 * 1000); /* Its election timeouts: it campaigns, so it dials. */
		for (int i = 0; i < 2; i++) {
			fl_node_metrics(nodes[i], &after[i]);
			CHECK(after[i].peers_refused == before[i].peers_refused);
		}
	}
	CHECK(log_count("node 3 is now incarnation") >= 2);
	CHECK(log_count("two processes claim node 3") == claims);
	CHECK(log_count("refuses this process as node 3") == refused_lines);

	for (int i = 0; i < NODES; i++)
		fl_node_stop(nodes[i]);
	dup2(node_test_err_fd, 2);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		CHECK(system(cmd) == 0);
	}
	printf("ok\n");
	return 0;
}
