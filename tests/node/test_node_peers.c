/* The address book at run time (fl_node_set_peer, fl_node_remove_peer,
 * fl_node_peers), in process: three nodes on 127.0.0.1, two shards each.
 *
 * Nodes 1 and 2 start knowing only each other and run group 1; node 3
 * starts knowing both (with a client address to tell them). Checked, each
 * wait bounded:
 *   - refusals: id 0, the node's own id, addresses that are not
 *     "host:port" or hold a space (-EINVAL), removing an unknown peer
 *     (FL_ERR_PEER_UNKNOWN), more than FL_PEERS_MAX peers
 *     (FL_ERR_PEERS_FULL); none of them changes the book;
 *   - adding node 3 to nodes 1 and 2: every shard connects both ways, node 1
 *     lists node 3's client address, and node 3 replicates group 1 once it
 *     joins it as a learner;
 *   - a new address: node 3 restarts on another port, nodes 1 and 2 are
 *     told, reconnect, and node 3 catches up again;
 *   - persistence: node 1 restarts with its original configuration (node 2
 *     only) and still knows node 3 at its new address; a removal survives a
 *     restart too, even of a peer the configuration names; a damaged
 *     flotilla.peers is refused (FL_ERR_DIR_CORRUPT);
 *   - removal: node 1 forgets node 3, whose connections to and from node 1
 *     close and stay closed. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

#define NODES   3
#define WAIT_MS 15000

struct sm {
	pthread_mutex_t lock;
	uint64_t count;
};

static struct sm sms[NODES];
static struct fl_node *nodes[NODES];
static uint16_t ports[NODES];
static char dirs[NODES][NODE_TEST_PATH_SIZE];
static char addr3[64];

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	struct sm *sm = ctx;

	(void)group;
	(void)entries;
	pthread_mutex_lock(&sm->lock);
	sm->count += count;
	pthread_mutex_unlock(&sm->lock);
	for (uint32_t i = 0; i < count; i++)
		results[i] = 0;
}

static uint64_t sm_count(int i)
{
	uint64_t n;

	pthread_mutex_lock(&sms[i].lock);
	n = sms[i].count;
	pthread_mutex_unlock(&sms[i].lock);
	return n;
}

/* Node i with the peers its test configuration names: 1 and 2 know each
 * other only, 3 knows both. */
static int node_start(int i)
{
	struct fl_node_config config;
	struct node_test_addrs addrs;

	node_test_config(&config, &addrs, i, NODES, ports, dirs[i], 5);
	config.shards_count = 2;
	if (i < 2)
		config.peers_count = 1; /* The other of nodes 1 and 2 comes first. */
	if (i == 2)
		config.client_addr = "client-of-3:7";
	config.sm = (struct fl_sm_ops){.apply = sm_apply, .ctx = &sms[i]};
	pthread_mutex_lock(&sms[i].lock);
	sms[i].count = 0; /* No snapshots: a restart applies the log again. */
	pthread_mutex_unlock(&sms[i].lock);
	return fl_node_start(&config, &nodes[i]);
}

static void node_stop(int i)
{
	fl_node_stop(nodes[i]);
	nodes[i] = NULL;
}

/* Node i's entry for peer id (false when it has none). */
static bool peer_info(int i, uint64_t id, struct fl_peer_info *out)
{
	struct fl_peer_info peers[FL_PEERS_MAX];
	uint32_t count = 0;

	CHECK(fl_node_peers(nodes[i], peers, FL_PEERS_MAX, &count) == 0);
	CHECK(count <= FL_PEERS_MAX);
	for (uint32_t j = 0; j < count; j++)
		if (peers[j].id == id) {
			*out = peers[j];
			return true;
		}
	return false;
}

static uint32_t peers_count(int i)
{
	struct fl_peer_info peers[FL_PEERS_MAX];
	uint32_t count = 0;

	CHECK(fl_node_peers(nodes[i], peers, FL_PEERS_MAX, &count) == 0);
	return count;
}

/* Wait until node i is connected both ways with peer id (or, with
 * connected false, with neither way up). */
static void wait_connected(int i, uint64_t id, bool connected)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	struct fl_peer_info p;

	while (node_test_now_ms() < deadline) {
		bool known = peer_info(i, id, &p);

		if (connected && known && p.connected_out && p.connected_in)
			return;
		if (!connected && (!known || (!p.connected_out && !p.connected_in)))
			return;
		usleep(20000);
	}
	fprintf(stderr, "node %d, peer %llu: connected %d expected\n", i + 1,
		(unsigned long long)id, connected);
	CHECK(!"the connections change within the wait");
}

static int leader_of_group1(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;

	while (node_test_now_ms() < deadline) {
		for (int i = 0; i < 2; i++) {
			uint64_t leader = 0;

			if (nodes[i] != NULL && fl_group_leader(nodes[i], 1, &leader) == 0 &&
			    leader == (uint64_t)i + 1)
				return i;
		}
		usleep(10000);
	}
	CHECK(!"group 1 has a leader within the wait");
	return -1;
}

static void propose(int count)
{
	for (int n = 0; n < count; n++) {
		uint64_t deadline = node_test_now_ms() + WAIT_MS;
		int rv;

		do {
			rv = fl_propose_sync(nodes[leader_of_group1()], 1, "x", 1, NULL, NULL);
			if (rv != 0)
				usleep(10000);
		} while (rv != 0 && node_test_now_ms() < deadline);
		CHECK(rv == 0);
	}
}

/* Node 3 applies what the leader of group 1 did. */
static void wait_caught_up(void)
{
	uint64_t deadline = node_test_now_ms() + WAIT_MS;
	int leader = leader_of_group1();

	while (node_test_now_ms() < deadline && sm_count(2) != sm_count(leader))
		usleep(10000);
	CHECK(sm_count(2) == sm_count(leader));
}

static void done_ignore(void *arg, int rv, uint64_t result, uint64_t leader)
{
	(void)arg, (void)rv, (void)result, (void)leader;
}

static void check_refusals(void)
{
	char addr[64];
	uint32_t before = peers_count(0);

	CHECK(fl_node_set_peer(nodes[0], 0, addr3) == -EINVAL);
	CHECK(fl_node_set_peer(nodes[0], 1, addr3) == -EINVAL); /* Itself. */
	CHECK(fl_node_set_peer(nodes[0], 3, "no-port") == -EINVAL);
	CHECK(fl_node_set_peer(nodes[0], 3, "127.0.0.1:99999") == -EINVAL);
	CHECK(fl_node_set_peer(nodes[0], 3, "127.0.0.1 :5") == -EINVAL);
	CHECK(fl_node_set_peer(nodes[0], 3, "") == -EINVAL);
	CHECK(fl_node_set_peer(nodes[0], 3, NULL) == -EINVAL);
	CHECK(fl_node_remove_peer(nodes[0], 3) == FL_ERR_PEER_UNKNOWN);
	CHECK(peers_count(0) == before);
	/* The limit: node 1 knows node 2; FL_PEERS_MAX - 1 more fit (port 1
	 * refuses at once: these are dialled and fail), one more does not. */
	for (uint64_t id = 100; id < 100 + FL_PEERS_MAX - 1; id++)
		CHECK(fl_node_set_peer(nodes[0], id, "127.0.0.1:1") == 0);
	CHECK(peers_count(0) == FL_PEERS_MAX);
	CHECK(fl_node_set_peer(nodes[0], 3, addr3) == FL_ERR_PEERS_FULL);
	CHECK(fl_node_set_peer(nodes[0], 100, "127.0.0.1:1") == 0); /* No change: fine. */
	for (uint64_t id = 100; id < 100 + FL_PEERS_MAX - 1; id++)
		CHECK(fl_node_remove_peer(nodes[0], id) == 0);
	CHECK(peers_count(0) == before);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ports[1]);
	CHECK(fl_node_set_peer(nodes[0], 2, addr) == 0); /* Already so: nothing changes. */
	wait_connected(0, 2, true);
}

int main(void)
{
	char root[NODE_TEST_PATH_SIZE], path[NODE_TEST_PATH_SIZE + 32];
	uint64_t members[2] = {1, 2};
	struct fl_peer_info p;
	FILE *f;

	for (int i = 0; i < NODES; i++)
		pthread_mutex_init(&sms[i].lock, NULL);
	CHECK(node_test_root(root, sizeof(root), "peers"));
	CHECK(node_test_nodes(root, NODES, dirs, ports));
	snprintf(addr3, sizeof(addr3), "127.0.0.1:%u", ports[2]);
	for (int i = 0; i < NODES; i++)
		CHECK(node_start(i) == 0);
	for (int i = 0; i < 2; i++)
		CHECK(fl_group_create(nodes[i], 1, members, 2, NULL, NULL) == 0);
	propose(20);
	CHECK(peers_count(0) == 1 && peers_count(2) == 2);
	wait_connected(0, 2, true);
	CHECK(!peer_info(0, 3, &p));

	printf("refusals\n");
	check_refusals();

	printf("add node 3 to nodes 1 and 2\n");
	CHECK(fl_node_set_peer(nodes[0], 3, addr3) == 0);
	CHECK(fl_node_set_peer(nodes[1], 3, addr3) == 0);
	wait_connected(0, 3, true);
	wait_connected(1, 3, true);
	wait_connected(2, 1, true);
	CHECK(peer_info(0, 3, &p) && strcmp(p.addr, addr3) == 0);
	CHECK(strcmp(p.client_addr, "client-of-3:7") == 0);
	CHECK(peer_info(2, 1, &p) && p.client_addr[0] == '\0'); /* Node 1 has none. */
	CHECK(fl_group_join(nodes[2], 1, NULL, NULL) == 0);
	CHECK(fl_add_learner(nodes[leader_of_group1()], 1, 3, done_ignore, NULL) == 0);
	propose(20);
	wait_caught_up();

	printf("node 3 moves to another port\n");
	node_stop(2);
	ports[2] = node_test_free_port();
	CHECK(ports[2] != 0);
	snprintf(addr3, sizeof(addr3), "127.0.0.1:%u", ports[2]);
	CHECK(node_start(2) == 0);
	propose(10);
	CHECK(fl_node_set_peer(nodes[0], 3, addr3) == 0);
	CHECK(fl_node_set_peer(nodes[1], 3, addr3) == 0);
	wait_connected(0, 3, true);
	wait_connected(1, 3, true);
	propose(10);
	wait_caught_up();

	printf("node 1 restarts with its original configuration\n");
	node_stop(0);
	CHECK(node_start(0) == 0);
	CHECK(peer_info(0, 3, &p) && strcmp(p.addr, addr3) == 0);
	CHECK(peers_count(0) == 2);
	wait_connected(0, 3, true);
	propose(10);
	wait_caught_up();

	printf("a removal survives a restart, even of a configured peer\n");
	CHECK(fl_node_remove_peer(nodes[2], 2) == 0);
	CHECK(!peer_info(2, 2, &p));
	wait_connected(1, 3, false);
	node_stop(2);
	CHECK(node_start(2) == 0); /* Its configuration still names node 2. */
	CHECK(!peer_info(2, 2, &p) && peer_info(2, 1, &p));
	CHECK(fl_node_set_peer(nodes[2], 2, "127.0.0.1:1") == 0);
	snprintf(path, sizeof(path), "127.0.0.1:%u", ports[1]);
	CHECK(fl_node_set_peer(nodes[2], 2, path) == 0);
	wait_connected(1, 3, true);

	printf("node 1 forgets node 3\n");
	CHECK(fl_node_remove_peer(nodes[0], 3) == 0);
	CHECK(fl_node_remove_peer(nodes[0], 3) == FL_ERR_PEER_UNKNOWN);
	wait_connected(2, 1, false);
	usleep(1500 * 1000); /* Longer than the longest redial backoff. */
	CHECK(peer_info(2, 1, &p) && !p.connected_out && !p.connected_in);
	CHECK(!peer_info(0, 3, &p));

	printf("a damaged address book is refused\n");
	node_stop(0);
	snprintf(path, sizeof(path), "%s/flotilla.peers", dirs[0]);
	f = fopen(path, "r+");
	CHECK(f != NULL);
	CHECK(fseek(f, 20, SEEK_SET) == 0 && fputc('#', f) != EOF);
	CHECK(fclose(f) == 0);
	CHECK(node_start(0) == FL_ERR_DIR_CORRUPT);

	for (int i = 1; i < NODES; i++)
		node_stop(i);
	CHECK(node_test_remove(root));
	printf("address book: ok\n");
	return 0;
}
