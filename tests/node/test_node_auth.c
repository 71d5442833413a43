/* Peer authentication with a shared key.
 *
 * Two nodes with the same key form a group and commit. A node with another
 * key, and one with no key, are refused by both sides (counted in
 * peers_refused), so the group they would form never elects a leader; the
 * refusing node's log says why. Three nodes with the same key commit every
 * write of a run. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

static char root[64] = "flotilla-auth-XXXXXX";

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 7;
}

/* While the nodes run, their log (standard error) goes to a file. */
static void log_capture(const char *name, char *path, size_t path_size)
{
	int fd;

	snprintf(path, path_size, "%s/%s.log", root, name);
	node_test_err_fd = dup(2);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && node_test_err_fd >= 0);
	CHECK(dup2(fd, 2) == 2);
	close(fd);
}

/* Restore standard error; print and count the lines of the log at path
 * that hold text. */
static int log_release(const char *path, const char *text)
{
	char line[1024];
	FILE *f;
	int count = 0;

	CHECK(dup2(node_test_err_fd, 2) == 2);
	close(node_test_err_fd);
	node_test_err_fd = 2;
	f = fopen(path, "r");
	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, text) != NULL && count++ == 0)
			printf("  log: %s", line);
	fclose(f);
	return count;
}

/* Start nodes 1 and 2 with keys k1 and k2 (NULL: none); propose to group 1
 * for up to wait_ms. Returns whether the proposal committed. With
 * log_line, the nodes' log must hold it. */
static bool pair_commits(const char *name, const char *k1, const char *k2, int wait_ms,
			 const char *log_line)
{
	char log_path[256];
	const char *keys[2] = {k1, k2};
	struct fl_node *nodes[2];
	char addrs[2][64], dirs[2][128];
	uint64_t members[2] = {1, 2}, result = 0, refused = 0;
	bool ok = false;

	for (int i = 0; i < 2; i++) {
		uint16_t port = node_test_free_port();

		CHECK(port != 0);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%u", port);
		snprintf(dirs[i], sizeof(dirs[i]), "%s/%s-%d", root, name, i + 1);
	}
	log_capture(name, log_path, sizeof(log_path));
	for (int i = 0; i < 2; i++) {
		struct fl_node_config c;
		struct fl_peer peer = {.id = (uint64_t)(2 - i), .addr = addrs[1 - i]};

		fl_node_config_default(&c, (uint64_t)i + 1);
		c.data_dir = dirs[i];
		c.listen_addr = addrs[i];
		c.peers = &peer;
		c.peers_count = 1;
		c.shards_count = 1;
		c.election_timeout_ms = 200;
		c.heartbeat_interval_ms = 20;
		c.auth_key = keys[i];
		c.auth_key_size = keys[i] ? (uint32_t)strlen(keys[i]) : 0;
		c.sm = (struct fl_sm_ops){.apply = sm_apply};
		CHECK(fl_node_start(&c, &nodes[i]) == 0);
		CHECK(fl_group_create(nodes[i], 1, members, 2, NULL, NULL) == 0);
	}
	for (int t = 0; t < wait_ms / 10 && !ok; t++) {
		for (int i = 0; i < 2 && !ok; i++)
			ok =
			    fl_propose_sync(nodes[i], 1, "k", 1, &result, NULL) == 0 && result == 7;
		usleep(10000);
	}
	for (int i = 0; i < 2; i++) {
		struct fl_metrics m;

		fl_node_metrics(nodes[i], &m);
		refused += m.peers_refused;
		fl_node_stop(nodes[i]);
	}
	printf("%s: %s, %llu connections refused\n", name, ok ? "committed" : "no commit",
	       (unsigned long long)refused);
	CHECK(log_release(log_path, log_line ? log_line : "started") > 0);
	CHECK(ok == (refused == 0));
	return ok;
}

/* Three nodes with one key: 100 writes to group 1 all commit. */
static void trio_commits(void)
{
	const char *key = "a shared secret of the three-node cluster";
	struct node_test_addrs addrs[3];
	struct fl_node *nodes[3];
	char dirs[3][128];
	uint16_t ports[3];
	uint64_t members[3] = {1, 2, 3}, result = 0;
	int committed = 0;

	for (int i = 0; i < 3; i++) {
		ports[i] = node_test_free_port();
		CHECK(ports[i] != 0);
		snprintf(dirs[i], sizeof(dirs[i]), "%s/trio-%d", root, i + 1);
	}
	for (int i = 0; i < 3; i++) {
		struct fl_node_config c;

		node_test_config(&c, &addrs[i], i, 3, ports, dirs[i], 1);
		c.auth_key = key;
		c.auth_key_size = (uint32_t)strlen(key);
		c.sm = (struct fl_sm_ops){.apply = sm_apply};
		CHECK(fl_node_start(&c, &nodes[i]) == 0);
		CHECK(fl_group_create(nodes[i], 1, members, 3, NULL, NULL) == 0);
	}
	for (int t = 0; t < 3000 && committed < 100; t++) {
		uint64_t leader = 0;
		int rv = fl_propose_sync(nodes[t % 3], 1, "v", 1, &result, &leader);

		if (rv == 0 && result == 7)
			committed++;
		else
			usleep(10000);
	}
	for (int i = 0; i < 3; i++) {
		struct fl_metrics m;

		fl_node_metrics(nodes[i], &m);
		CHECK(m.peers_refused == 0);
		fl_node_stop(nodes[i]);
	}
	printf("three nodes with the key: %d of 100 writes committed\n", committed);
	CHECK(committed == 100);
}

int main(void)
{
	char cmd[128];

	CHECK(mkdtemp(root) != NULL);
	CHECK(pair_commits("same-key", "a shared secret of the cluster",
			   "a shared secret of the cluster", 10000, NULL));
	CHECK(!pair_commits("other-key", "a shared secret of the cluster",
			    "not the secret of this cluster", 1500,
			    "failed authentication: wrong proof (another key, or not the peer)"));
	CHECK(!pair_commits("no-key", "a shared secret of the cluster", NULL, 1500,
			    "has no authentication key (this node requires one)"));
	CHECK(!pair_commits("no-key-other-side", NULL, "a shared secret of the cluster", 1500,
			    "has an authentication key (this node has none)"));
	trio_commits();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	CHECK(system(cmd) == 0);
	printf("ok\n");
	return 0;
}
