/* Mutual TLS between nodes.
 *
 * Certificates come from tools/tls-certs (its path is the first argument),
 * made into a fresh directory. Three nodes with TLS form a group and commit.
 * Then a test client connects to node 1's peer port as an attacker would:
 * with a certificate from another CA, an expired one, node 3's certificate
 * while claiming node 2, no certificate, and in plaintext; each is refused
 * (no handshake answer) with a log line naming the cause, and the group
 * commits after each. A node refuses to start with a key that does not
 * match its certificate, another node's certificate, or a file it cannot
 * read. fl_node_tls_reload() with a new certificate for node 1, under a
 * write load, loses no write, and the next connection is served with the
 * new certificate (its serial); a reload with an unreadable key fails and
 * keeps the old one. A frame altered on the wire (a test hook flips a bit
 * and redoes the checksum) closes the connection and the group goes on.
 * Connections sending their handshake a byte at a time do not delay a
 * restarted peer's connections. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/le.h"
#include "flotilla.h"
#include "shard/shard_internal.h"
#include "shard/wire.h"
#include "tests/node/node_test.h"

#define NODES   3
#define CLUSTER 11

static const char *certs_tool;
static char root[NODE_TEST_PATH_SIZE], tls_dir[NODE_TEST_PATH_SIZE + 8];
static char dirs[NODES][NODE_TEST_PATH_SIZE];
static uint16_t ports[NODES];
static struct fl_node *nodes[NODES];
static _Atomic uint64_t applied[NODES];

/* Every line the nodes log, kept to search (the log callback must not block
 * for long: a mutex held for a copy). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_text;
static size_t log_size, log_cap;

static void log_keep(void *arg, const struct fl_log_record *rec)
{
	size_t n = strlen(rec->msg);

	(void)arg;
	pthread_mutex_lock(&log_lock);
	if (log_size + n + 32 > log_cap) {
		log_cap = (log_size + n + 32) * 2;
		log_text = realloc(log_text, log_cap);
		CHECK(log_text != NULL);
	}
	log_size += (size_t)sprintf(log_text + log_size, "node %llu: %s\n",
				    (unsigned long long)rec->node_id, rec->msg);
	pthread_mutex_unlock(&log_lock);
}

/* Whether the log holds text, waited for up to wait_ms; prints the line. */
static bool log_has(const char *text, int wait_ms)
{
	uint64_t until = node_test_now_ms() + (uint64_t)wait_ms;

	do {
		char *at;

		pthread_mutex_lock(&log_lock);
		at = log_text != NULL ? strstr(log_text, text) : NULL;
		if (at != NULL) {
			char *end = strchr(at, '\n'), *start = at;

			while (start > log_text && start[-1] != '\n')
				start--;
			printf("  log: %.*s\n", (int)(end - start), start);
		}
		pthread_mutex_unlock(&log_lock);
		if (at != NULL)
			return true;
		usleep(20000);
	} while (node_test_now_ms() < until);
	return false;
}

static void sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)group, (void)entries;
	atomic_fetch_add((_Atomic uint64_t *)ctx, count);
	for (uint32_t i = 0; i < count; i++)
		results[i] = 7;
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		dprintf(node_test_err_fd, "failed: %s\n", cmd);
		exit(1);
	}
}

/* Start node i (0-based) with the certificate NAME.pem/.key of dir. */
static int node_start(int i, const char *dir, const char *name, uint32_t handshake_ms)
{
	struct node_test_addrs a;
	struct fl_node_config c;
	char ca[NODE_TEST_PATH_SIZE + 64], cert[NODE_TEST_PATH_SIZE + 64],
	    key[NODE_TEST_PATH_SIZE + 64];

	snprintf(ca, sizeof(ca), "%s/ca.pem", tls_dir);
	snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", dir, name);
	node_test_config(&c, &a, i, NODES, ports, dirs[i], CLUSTER);
	c.tls_ca_file = ca;
	c.tls_cert_file = cert;
	c.tls_key_file = key;
	c.peer_handshake_timeout_ms = handshake_ms;
	c.log_cb = log_keep;
	c.sm = (struct fl_sm_ops){.apply = sm_apply, .ctx = &applied[i]};
	return fl_node_start(&c, &nodes[i]);
}

/* Propose to group 1 through any node until one commits, for up to wait_ms. */
static bool commits(int wait_ms)
{
	uint64_t until = node_test_now_ms() + (uint64_t)wait_ms;

	do {
		for (int i = 0; i < NODES; i++) {
			uint64_t result = 0;

			if (nodes[i] != NULL &&
			    fl_propose_sync(nodes[i], 1, "w", 1, &result, NULL) == 0 && result == 7)
				return true;
		}
		usleep(10000);
	} while (node_test_now_ms() < until);
	return false;
}

/* A TLS client context with certificate NAME of dir (NULL: none); it does
 * not verify the node (an attacker would not care). */
static SSL_CTX *client_ctx(const char *dir, const char *name)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char path[NODE_TEST_PATH_SIZE + 64];

	CHECK(ctx != NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (name != NULL) {
		snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
		CHECK(SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM) == 1);
		snprintf(path, sizeof(path), "%s/%s.key", dir, name);
		CHECK(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1);
	}
	return ctx;
}

/* A handshake for shard 0 claiming node, with flags and incarnation. */
static void handshake_claiming(uint64_t node, uint32_t flags, uint64_t incarnation, uint8_t *buf)
{
	struct wire_handshake hs = {.version = WIRE_VERSION,
				    .flags = flags,
				    .cluster_id = CLUSTER,
				    .node_id = node,
				    .shard_index = 0,
				    .shard_count = 1,
				    .incarnation = incarnation};

	wire_handshake_encode(&hs, buf);
}

/* Connect to port with certificate NAME of dir (NULL: none), or in
 * plaintext, send hs and read the answer. Returns whether a whole handshake
 * came back. serial, when set, gets the serial of the node's certificate. */
static bool exchange(uint16_t port, const char *dir, const char *name, bool plaintext,
		     const uint8_t *hs, uint8_t *answer, char *serial, size_t size)
{
	int fd = node_test_dial(port);
	size_t got = 0;
	bool answered;

	if (plaintext) {
		node_test_send(fd, hs, WIRE_HANDSHAKE_SIZE);
		answered =
		    recv(fd, answer, WIRE_HANDSHAKE_SIZE, MSG_WAITALL) == WIRE_HANDSHAKE_SIZE;
		close(fd);
		return answered;
	}
	{
		struct timeval tv = {.tv_sec = 3};
		SSL_CTX *ctx = client_ctx(dir, name);
		SSL *ssl = SSL_new(ctx);

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		CHECK(ssl != NULL && SSL_set_fd(ssl, fd) == 1);
		if (SSL_connect(ssl) == 1 && serial != NULL) {
			X509 *cert = SSL_get0_peer_certificate(ssl);
			BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
			char *hex = BN_bn2hex(bn);

			snprintf(serial, size, "%s", hex);
			OPENSSL_free(hex);
			BN_free(bn);
		}
		answered = SSL_write(ssl, hs, WIRE_HANDSHAKE_SIZE) == WIRE_HANDSHAKE_SIZE &&
			   SSL_read_ex(ssl, answer, WIRE_HANDSHAKE_SIZE, &got) == 1 &&
			   got == WIRE_HANDSHAKE_SIZE;
		SSL_free(ssl);
		SSL_CTX_free(ctx);
		ERR_clear_error();
	}
	close(fd);
	return answered;
}

/* Connect to node 1's peer port as exchange() does, claiming node 2 with
 * node 2's real incarnation (learnt by probing node 2 with node 3's
 * certificate, as any holder of a node certificate can), and return whether
 * node 1 admitted the connection as node 2's (answered, not refused). */
static bool attack(const char *dir, const char *name, bool plaintext, char *serial, size_t size)
{
	uint8_t hs[WIRE_HANDSHAKE_SIZE], answer[WIRE_HANDSHAKE_SIZE];
	struct wire_handshake node2, got;
	bool probed = false;

	/* Node 2 may have just restarted: its peers' own set-ups may hold its
	 * per-source slots for a moment (all come from 127.0.0.1). */
	handshake_claiming(3, WIRE_HANDSHAKE_PROBE, 3, hs);
	for (int i = 0; i < 50 && !probed; i++)
		if (!(probed = exchange(ports[1], tls_dir, "node-3", false, hs, answer, NULL, 0)))
			usleep(100000);
	CHECK(probed);
	CHECK(wire_handshake_decode(&node2, answer) == 0 && node2.node_id == 2);
	handshake_claiming(2, 0, node2.incarnation, hs);
	if (!exchange(ports[0], dir, name, plaintext, hs, answer, serial, size))
		return false;
	CHECK(wire_handshake_decode(&got, answer) == 0);
	return (got.flags & WIRE_HANDSHAKE_REFUSED) == 0;
}

/* Each kind of bad peer is refused with its line; the group commits after. */
static void test_bad_peers_refused(void)
{
	char other[NODE_TEST_PATH_SIZE + 16];
	struct {
		const char *dir, *name;
		bool plaintext;
		const char *line;
	} cases[] = {
	    {other, "node-2", false, "its certificate is from another CA"},
	    {tls_dir, "node-2-expired", false, "its certificate expired"},
	    {tls_dir, "node-3", false,
	     "its certificate is for node 3 but its handshake claims node 2"},
	    {tls_dir, NULL, false, "no certificate"},
	    {NULL, NULL, true, "plaintext connection where TLS is required"},
	};

	snprintf(other, sizeof(other), "%s/other", root);
	run("%s ca %s >/dev/null && %s node %s 2 >/dev/null", certs_tool, other, certs_tool, other);
	run("%s node %s 2 --expired --name node-2-expired >/dev/null", certs_tool, tls_dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		printf("attacker: %s\n", cases[i].line);
		CHECK(!attack(cases[i].dir, cases[i].name, cases[i].plaintext, NULL, 0));
		CHECK(log_has(cases[i].line, 3000));
		CHECK(commits(5000));
	}
	/* A real node's certificate is admitted by the same client: the
	 * refusals above are the certificates', not the client's. */
	CHECK(attack(tls_dir, "node-2", false, NULL, 0));
}

/* A node refuses to start with TLS files that are not its own. */
static void test_start_refused(void)
{
	char bad[NODE_TEST_PATH_SIZE + 16];

	snprintf(bad, sizeof(bad), "%s/bad", root);
	run("mkdir -p %s && cp %s/node-2.pem %s/mismatch.pem && cp %s/node-3.key "
	    "%s/mismatch.key && cp %s/node-3.pem %s/other-node.pem && cp %s/node-3.key "
	    "%s/other-node.key",
	    bad, tls_dir, bad, tls_dir, bad, tls_dir, bad, tls_dir, bad);
	CHECK(nodes[1] != NULL);
	fl_node_stop(nodes[1]);
	nodes[1] = NULL;
	CHECK(node_start(1, bad, "mismatch", 0) == FL_ERR_TLS);
	CHECK(log_has("does not match the certificate", 1000));
	CHECK(node_start(1, bad, "other-node", 0) == FL_ERR_TLS);
	CHECK(log_has("is for node 3, not this node 2", 1000));
	CHECK(node_start(1, bad, "missing", 0) == FL_ERR_TLS);
	CHECK(log_has("cannot read the certificate file", 1000));
	CHECK(node_start(1, tls_dir, "node-2", 0) == 0);
	CHECK(commits(10000));
}

struct load {
	_Atomic bool stop;
	uint64_t acked, failed;
};

static void *load_main(void *arg)
{
	struct load *l = arg;

	while (!atomic_load(&l->stop)) {
		bool ok = false;

		for (int i = 0; i < NODES && !ok; i++) {
			uint64_t result = 0;
			int rv = fl_propose_sync(nodes[i], 1, "r", 1, &result, NULL);

			ok = rv == 0 && result == 7;
			/* Anything but "not the leader" (or a transfer) is a lost write. */
			if (rv != 0 && rv != FL_ERR_NOT_LEADER && rv != FL_ERR_TRANSFER)
				l->failed++;
		}
		if (ok)
			l->acked++;
	}
	return NULL;
}

static uint64_t applied_min(void)
{
	uint64_t m = UINT64_MAX;

	for (int i = 0; i < NODES; i++)
		if (atomic_load(&applied[i]) < m)
			m = atomic_load(&applied[i]);
	return m;
}

/* Reload under a write load: nothing lost; new connections get the new
 * certificate; a failed reload keeps the old one. */
static void test_reload_under_load(void)
{
	char before[64] = "", after[64] = "", again[64] = "", key[NODE_TEST_PATH_SIZE + 32];
	struct load l = {0};
	uint64_t total;
	pthread_t thread;

	CHECK(attack(tls_dir, "node-2", false, before, sizeof(before)));
	CHECK(pthread_create(&thread, NULL, load_main, &l) == 0);
	usleep(300000);
	/* The same CA, a new certificate and key for node 1, in place. */
	run("%s node %s 1 --name node-1-new >/dev/null && mv %s/node-1-new.pem %s/node-1.pem && "
	    "mv %s/node-1-new.key %s/node-1.key",
	    certs_tool, tls_dir, tls_dir, tls_dir, tls_dir, tls_dir);
	CHECK(fl_node_tls_reload(nodes[0]) == 0);
	CHECK(log_has("TLS reload: loaded", 1000));
	usleep(300000);
	CHECK(attack(tls_dir, "node-2", false, after, sizeof(after)));
	printf("node 1's certificate serial: %s before the reload, %s after\n", before, after);
	CHECK(strcmp(before, after) != 0);
	/* An unreadable key: refused, and the new certificate stays. */
	snprintf(key, sizeof(key), "%s/node-1.key", tls_dir);
	run("cp %s %s.keep && echo garbage > %s", key, key, key);
	CHECK(fl_node_tls_reload(nodes[0]) == FL_ERR_TLS);
	CHECK(log_has("the certificate in use stays", 1000));
	run("mv %s.keep %s", key, key);
	CHECK(attack(tls_dir, "node-2", false, again, sizeof(again)));
	CHECK(strcmp(after, again) == 0);
	usleep(300000);
	atomic_store(&l.stop, true);
	pthread_join(thread, NULL);
	printf("load: %llu writes acknowledged, %llu failed\n", (unsigned long long)l.acked,
	       (unsigned long long)l.failed);
	CHECK(l.acked > 0 && l.failed == 0);
	/* Every node applies every write (and the earlier ones). */
	total = atomic_load(&applied[0]);
	for (int t = 0; t < 500 && applied_min() < total; t++)
		usleep(10000);
	CHECK(applied_min() >= total);
}

/* A frame altered on the wire closes its connection; the group goes on. */
static void test_altered_frame_closes(void)
{
#ifndef FLOTILLA_TEST_HOOKS
	printf("altered frame: skipped (a build without test hooks)\n");
	return;
#endif
#ifdef FLOTILLA_TEST_HOOKS
	atomic_store(&peer_test_flip_sealed, 1);
	CHECK(commits(5000));
	CHECK(log_has("failed authentication", 5000));
	CHECK(atomic_load(&peer_test_flip_sealed) <= 0);
	CHECK(commits(5000));
#endif
}

/* Connections sending their TLS handshake a byte a second, held open on
 * node 1, do not delay node 2's connections after a restart. */
static void test_slow_handshakes_do_not_block(void)
{
	int slow[4];
	uint64_t start, took;
	bool ok;

	fl_node_stop(nodes[2]);
	nodes[2] = NULL;
	fl_node_stop(nodes[1]);
	nodes[1] = NULL;
	for (int i = 0; i < 4; i++) {
		slow[i] = node_test_dial(ports[0]);
		node_test_send(slow[i], "\x16", 1); /* A TLS record begins... */
	}
	start = node_test_now_ms();
	CHECK(node_start(1, tls_dir, "node-2", 0) == 0);
	ok = false;
	for (int t = 0; t < 100 && !ok; t++) {
		for (int i = 0; i < 4; i++)
			(void)!send(slow[i], "\x03", 1, MSG_NOSIGNAL); /* ...a byte at a time. */
		ok = commits(100);
	}
	took = node_test_now_ms() - start;
	printf("node 2 restarted and committed with node 1 in %llu ms while 4 handshakes "
	       "trickled in\n",
	       (unsigned long long)took);
	CHECK(ok && took < 8000);
	for (int i = 0; i < 4; i++)
		close(slow[i]);
	CHECK(node_start(2, tls_dir, "node-3", 0) == 0);
}

int main(int argc, char **argv)
{
	uint64_t members[NODES] = {1, 2, 3};

	CHECK(argc == 2);
	signal(SIGPIPE, SIG_IGN); /* The attacker writes to connections node 1 closed. */
	certs_tool = argv[1];
	CHECK(node_test_root(root, sizeof(root), "tls"));
	CHECK(node_test_nodes(root, NODES, dirs, ports));
	snprintf(tls_dir, sizeof(tls_dir), "%s/tls", root);
	run("%s cluster %s --nodes %d >/dev/null", certs_tool, tls_dir, NODES);
	for (int i = 0; i < NODES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "node-%d", i + 1);
		/* Node 1 gives set-ups 20 s: the slow handshakes stay all along. */
		CHECK(node_start(i, tls_dir, name, i == 0 ? 20000 : 0) == 0);
		CHECK(fl_group_create(nodes[i], 1, members, NODES, NULL, NULL) == 0);
	}
	CHECK(commits(10000));
	CHECK(log_has("mutual TLS 1.3", 0));
	printf("3-node TLS cluster commits\n");
	test_bad_peers_refused();
	test_start_refused();
	test_reload_under_load();
	test_altered_frame_closes();
	test_slow_handshakes_do_not_block();
	CHECK(commits(10000));
	for (int i = 0; i < NODES; i++)
		fl_node_stop(nodes[i]);
	CHECK(node_test_remove(root));
	free(log_text);
	printf("ok\n");
	return 0;
}
