/* fl_node_start() refuses a configuration that breaks a rule with -EINVAL
 * and one log line naming the field, its value and the rule; and starts one
 * at the rules' edges.
 *
 * The log goes to stderr: each case sends it to a temporary file for the
 * call and looks for the expected words in it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flotilla.h"
#include "tests/node/node_test.h"

static char dir[] = "flotilla-config-XXXXXX";
static int failed;

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx, (void)group, (void)entries;
	for (uint32_t i = 0; i < count; i++)
		results[i] = 0;
}

static void config_base(struct fl_node_config *c)
{
	fl_node_config_default(c, 1);
	c->data_dir = dir;
	c->sm = (struct fl_sm_ops){.apply = sm_apply};
}

/* Start with c, the log captured into log (size bytes). Returns fl_node_start's
 * result; a node that started is stopped at once. */
static int start_logged(const struct fl_node_config *c, char *log, size_t size)
{
	char path[] = "flotilla-config-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), rv;
	struct fl_node *node;
	ssize_t n;

	CHECK(fd >= 0 && saved >= 0);
	fflush(stderr);
	CHECK(dup2(fd, STDERR_FILENO) >= 0);
	rv = fl_node_start(c, &node);
	if (rv == 0)
		fl_node_stop(node);
	fflush(stderr);
	CHECK(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fd, log, size - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return rv;
}

/* c must be refused with -EINVAL and a log line holding want. */
static void refused(const char *what, const struct fl_node_config *c, const char *want)
{
	char log[4096];
	int rv = start_logged(c, log, sizeof(log));

	if (rv != -EINVAL || strstr(log, want) == NULL) {
		printf("FAIL %s: returned %d (want %d), log:\n%s(want \"%s\")\n", what, rv, -EINVAL,
		       log, want);
		failed = 1;
		return;
	}
	printf("ok %s: %s", what, strstr(log, "cannot start") ? strstr(log, "cannot start") : log);
}

int main(void)
{
	struct fl_node_config c;
	struct fl_peer peers[2] = {{.id = 2, .addr = "127.0.0.1:9"},
				   {.id = 3, .addr = "127.0.0.1:10"}};
	static const char key[8] = "short";
	char log[4096], cmd[128];
	int rv;

	CHECK(mkdtemp(dir) != NULL);

	config_base(&c);
	c.heartbeat_interval_ms = 20;
	c.election_timeout_ms = 30;
	refused("election under 2 heartbeats", &c,
		"election_timeout_ms 30 must be at least 2 x heartbeat_interval_ms 20 (40)");
	config_base(&c);
	c.heartbeat_interval_ms = 100;
	c.election_timeout_ms = 100;
	refused("election equal to the heartbeat", &c,
		"election_timeout_ms 100 must be at least 2 x heartbeat_interval_ms 100 (200)");
	config_base(&c);
	c.tick_ms = 10;
	c.heartbeat_interval_ms = 5;
	refused("heartbeat under a tick", &c,
		"heartbeat_interval_ms 5 must be at least tick_ms 10");
	config_base(&c);
	c.tick_ms = 1000;
	c.heartbeat_interval_ms = 1000;
	c.election_timeout_ms = 2000;
	refused("election under 5 ticks", &c,
		"election_timeout_ms 2000 must be at least 5 x tick_ms 1000 (5000)");
	config_base(&c);
	c.entry_size_max = 17000000;
	refused("entry_size_max over 16 MiB", &c,
		"entry_size_max 17000000: must be from 1 to 16777216");
	config_base(&c);
	c.wal_segment_size = 2u << 30;
	refused("wal_segment_size over 1 GiB", &c,
		"wal_segment_size 2147483648 exceeds the limit of 1073741824 bytes");
	config_base(&c);
	c.snapshot_ratio_percent = 1001;
	refused("snapshot ratio over 10x", &c,
		"snapshot_ratio_percent 1001: must be from 0 to 1000");
	config_base(&c);
	c.groups_max = 0;
	refused("no bound on groups", &c, "groups_max 0: must be at least 1");
	config_base(&c);
	c.auth_key = key;
	c.auth_key_size = sizeof(key);
	refused("short auth key", &c, "auth_key_size 8: a key must have at least 16 bytes");

	config_base(&c);
	c.peers = peers;
	c.peers_count = 2;
	peers[0].addr = "no-such-host.invalid:7000";
	refused("unresolvable peer", &c,
		"peers[0].addr 'no-such-host.invalid:7000' of node 2: host "
		"'no-such-host.invalid' does not resolve");
	peers[0].addr = "127.0.0.1";
	refused("peer without a port", &c, "peers[0].addr '127.0.0.1' of node 2: no ':port'");
	peers[0].addr = "127.0.0.1:70000";
	refused("peer port out of range", &c,
		"peers[0].addr '127.0.0.1:70000' of node 2: port '70000' is not a number from 1 "
		"to 65535");
	peers[0].addr = "127.0.0.1:9";
	peers[1].id = 2;
	refused("peer named twice", &c, "peers[1].id 2: already peers[0].id");
	config_base(&c);
	c.listen_addr = "127.0.0.1:port";
	refused("listen address without a number", &c,
		"listen_addr '127.0.0.1:port': port 'port' is not a number from 0 to 65535");

	/* At the edges: election = 2 heartbeats = 5 ticks, a peer that resolves. */
	config_base(&c);
	c.tick_ms = 20;
	c.heartbeat_interval_ms = 50;
	c.election_timeout_ms = 100;
	peers[1].id = 3;
	c.peers = peers;
	c.peers_count = 2;
	rv = start_logged(&c, log, sizeof(log));
	if (rv == -ENOSYS || rv == -EPERM) {
		printf("io_uring is not available here: the good configuration is not started\n");
	} else if (rv != 0) {
		printf("FAIL a configuration at the edges: %d, log:\n%s", rv, log);
		failed = 1;
	} else {
		printf("ok a configuration at the edges starts\n");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	printf("%s\n", failed ? "FAILED" : "ok");
	return failed;
}
