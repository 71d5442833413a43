#include "tests/node/node_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int node_test_err_fd = 2;

uint64_t node_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* splitmix64 over a shared counter: a different number at every call. */
static uint64_t node_test_random(void)
{
	static atomic_uint_fast64_t state;
	uint64_t z;

	if (atomic_load(&state) == 0) {
		uint_fast64_t zero = 0;

		atomic_compare_exchange_strong(&state, &zero,
					       (uint64_t)getpid() << 32 ^ node_test_now_ms());
	}
	z = atomic_fetch_add(&state, 0x9e3779b97f4a7c15ull) + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint16_t node_test_free_port(void)
{
	unsigned low = 32768, high, first = 10000;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

	if (f != NULL) {
		if (fscanf(f, "%u %u", &low, &high) != 2)
			low = 32768;
		fclose(f);
	}
	if (low <= first + 2)
		first = 1024;
	if (low <= first + 2)
		return 0;
	for (int tries = 0; tries < 200; tries++) {
		struct sockaddr_in addr = {.sin_family = AF_INET,
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		uint16_t port = (uint16_t)(first + node_test_random() % (low - first));
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool free_now;

		if (fd < 0)
			return 0;
		addr.sin_port = htons(port);
		free_now = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
		close(fd);
		if (free_now)
			return port;
	}
	return 0;
}

bool node_test_root(char *root, size_t size, const char *name)
{
	const char *base = getenv("FLOTILLA_TEST_DIR");
	int n = snprintf(root, size, "%s/flotilla-%s-XXXXXX", base ? base : ".", name);

	return n > 0 && (size_t)n < size && mkdtemp(root) != NULL;
}

bool node_test_nodes(const char *root, int n, char dirs[][NODE_TEST_PATH_SIZE], uint16_t *ports)
{
	for (int i = 0; i < n; i++) {
		int len = snprintf(dirs[i], NODE_TEST_PATH_SIZE, "%s/node-%d", root, i + 1);

		ports[i] = node_test_free_port();
		if (len <= 0 || len >= NODE_TEST_PATH_SIZE || ports[i] == 0)
			return false;
	}
	return true;
}

bool node_test_remove(const char *root)
{
	char cmd[NODE_TEST_PATH_SIZE + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0;
}

void node_test_config(struct fl_node_config *config, struct node_test_addrs *a, int i,
		      int nodes_count, const uint16_t *ports, const char *data_dir,
		      uint64_t cluster_id)
{
	uint32_t n = 0;

	for (int j = 0; j < nodes_count && j < NODE_TEST_NODES_MAX; j++) {
		snprintf(a->addrs[j], sizeof(a->addrs[j]), "127.0.0.1:%u", ports[j]);
		if (j != i)
			a->peers[n++] =
			    (struct fl_peer){.id = (uint64_t)j + 1, .addr = a->addrs[j]};
	}
	snprintf(a->listen, sizeof(a->listen), "127.0.0.1:%u", ports[i]);
	fl_node_config_default(config, (uint64_t)i + 1);
	config->cluster_id = cluster_id;
	config->data_dir = data_dir;
	config->listen_addr = a->listen;
	config->peers = a->peers;
	config->peers_count = n;
	config->shards_count = 1;
	config->election_timeout_ms = 300;
	config->heartbeat_interval_ms = 50;
}

int node_test_dial(uint16_t port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	CHECK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	return fd;
}

static void node_test_io(int fd, void *buf, size_t size, bool sending)
{
	size_t done = 0;

	while (done < size) {
		struct pollfd pfd = {.fd = fd, .events = sending ? POLLOUT : POLLIN};
		ssize_t n;

		CHECK(poll(&pfd, 1, 3000) == 1);
		n = sending ? send(fd, (char *)buf + done, size - done, MSG_NOSIGNAL)
			    : recv(fd, (char *)buf + done, size - done, 0);
		CHECK(n > 0);
		done += (size_t)n;
	}
}

void node_test_send(int fd, const void *buf, size_t size)
{
	node_test_io(fd, (void *)buf, size, true);
}

void node_test_recv(int fd, void *buf, size_t size)
{
	node_test_io(fd, buf, size, false);
}

bool node_test_closed(int fd, int wait_ms)
{
	uint64_t end_ms = node_test_now_ms() + (uint64_t)wait_ms;
	bool closed = false;

	while (!closed && node_test_now_ms() < end_ms) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint8_t buf[256];

		if (poll(&pfd, 1, (int)(end_ms - node_test_now_ms()) + 1) == 1)
			closed = recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0;
	}
	close(fd);
	return closed;
}

static void node_test_info_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	(void)result, (void)leader;
	atomic_store((_Atomic int *)arg, rv == 0 ? 1 : 2);
}

uint64_t node_test_term(struct fl_node *node, uint64_t group)
{
	struct fl_group_info info;
	_Atomic int done = 0;

	CHECK(fl_group_info(node, group, &info, node_test_info_done, (void *)&done) == 0);
	for (int i = 0; i < 500 && atomic_load(&done) == 0; i++)
		usleep(10000);
	CHECK(atomic_load(&done) == 1);
	return info.term;
}
