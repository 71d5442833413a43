/* flotilla-node: one Flotilla node with a built-in key-value state machine
 * (tools/node_store.h), serving the client protocol of docs/client-protocol.md.
 *
 * Threads: the library's shard threads run Raft and apply committed entries
 * to the KV maps; a few client threads (--client-threads), each with its own
 * epoll set, share one listening socket (EPOLLEXCLUSIVE) and serve the
 * connections they accept; leader changes arrive by callback (the hint for
 * answers that no library callback carries), and a monitor thread logs how
 * many groups this node leads, while the library logs each change; the
 * main thread waits for SIGTERM or SIGINT (SIGHUP reloads the TLS files: the
 * peers' through the library, the client port's in node_tls.c). Logs go to
 * stderr, one line each with a UTC timestamp.
 *
 * The happy path of a write: a client thread decodes a PUT, encodes it as a
 * KV command and calls fl_propose() with a struct pending as the callback
 * argument; once the entry is applied, the callback runs on the group's shard
 * thread, fills in the answer and pushes the pending onto its client
 * thread's done list, waking it through an eventfd; that thread encodes the
 * answer into the connection's output buffer and sends it with every other
 * answer of the same loop turn. A read (GET) goes through fl_read() the same
 * way and copies the value out of the KV map in the callback.
 *
 * Membership ops (JOIN, ADD_LEARNER, PROMOTE, REMOVE_MEMBER, TRANSFER,
 * MEMBERS, DROP) go to the library the same way and let flotilla-admin move a
 * node's replicas elsewhere. A node started with --join on is such a new
 * node: it creates no group at start and hosts only what it is asked to JOIN.
 * RECOVER (fl_group_recover) makes this node's replica the single voter of
 * a group whose majority is lost for good (flotilla-admin recover).
 *
 * The program is split by concern (tools/node_internal.h has the map):
 * options in node_options.c, client threads and connections in node_conn.c
 * (with the bounds and the lifetime of a connection), the client ops in
 * node_request.c, and the key-value store behind struct node_store_ops
 * (node_store.h; --store, the in-memory maps of tools/kv.c by default).
 * This file starts and stops it all and follows the groups' leaders.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on bad usage,
 * 3 when an address is in use (a caller may retry with other ports), 4 when
 * io_uring is not available here (-ENOSYS or -EPERM from fl_node_start). */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "flotilla.h"
#include "tools/client.h"
#include "tools/node_internal.h"

#define NODE_CREATE_WAIT_MS 30000

#ifdef FLOTILLA_JEMALLOC
/* Read by jemalloc at start (MALLOC_CONF adds to it). A background thread
 * returns freed pages to the kernel as they decay: without it, pages freed
 * after a burst (thousands of groups electing, then quiescing) stay
 * resident while an idle node makes no allocator calls to purge them. */
const char *malloc_conf = "background_thread:true";
#endif

enum { EXIT_USAGE = 2, EXIT_ADDR_IN_USE = 3, EXIT_NO_IO_URING = 4 };

/* --- Logging. --- */

/* The program's own lines, at the level and in the format of the node's. */
static struct logger server_logger;

void server_log(unsigned level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vrecord(&server_logger, level, -1, 0, fmt, ap);
	va_end(ap);
}

uint64_t server_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- Leader monitor. --- */

uint64_t server_leader_hint(struct server *s, uint64_t group)
{
	if (group == 0 || group > s->opt.groups_count || s->leaders == NULL)
		return 0;
	return atomic_load_explicit(&s->leaders[group - 1], memory_order_relaxed);
}

/* The library tells each group's leader changes (on shard threads): keep them
 * for the hints of answers that have no callback to carry one. */
static void server_leader_changed(void *ctx, uint64_t group, uint64_t leader, uint64_t term)
{
	struct server *s = ctx;
	uint64_t old;

	(void)term;
	if (group == 0 || group > s->opt.groups_count || s->leaders == NULL)
		return;
	old = atomic_exchange_explicit(&s->leaders[group - 1], leader, memory_order_relaxed);
	if (old == s->opt.id && leader != s->opt.id)
		atomic_fetch_sub_explicit(&s->leading, 1, memory_order_relaxed);
	else if (old != s->opt.id && leader == s->opt.id)
		atomic_fetch_add_explicit(&s->leading, 1, memory_order_relaxed);
}

/* Log how many groups this node leads when that count changes. */
static void monitor_poll(struct server *s)
{
	uint32_t leading = atomic_load_explicit(&s->leading, memory_order_relaxed);
	struct fl_metrics m;

	/* At most once a second: a mass failover moves it every poll. */
	if (s->opt.groups_count > 0 && leading != s->monitor_leading &&
	    server_now_ms() >= s->monitor_leading_ms + 1000) {
		server_log(LOG_LEVEL_INFO, "this node leads %u of %u groups", leading,
			   s->opt.groups_count);
		s->monitor_leading = leading;
		s->monitor_leading_ms = server_now_ms();
	}
	fl_node_metrics(s->node, &m);
	if (m.shards_no_space != s->monitor_no_space) {
		if (m.shards_no_space > 0)
			server_log(LOG_LEVEL_WARN,
				   "disk full: the WAL of %u of %u shards is out of space; their "
				   "writes are refused until space returns (%llu refused so far)",
				   m.shards_no_space, m.shards_count,
				   (unsigned long long)m.writes_refused_no_space);
		else
			server_log(LOG_LEVEL_INFO,
				   "disk: every shard's WAL has space again; writes accepted");
		s->monitor_no_space = m.shards_no_space;
	}
	if (m.divergences != s->monitor_divergences) {
		server_log(
		    LOG_LEVEL_ERROR,
		    "consistency: %llu groups diverged here, %llu checks compared; their reads "
		    "are refused",
		    (unsigned long long)m.divergences, (unsigned long long)m.checks);
		s->monitor_divergences = m.divergences;
	}
}

static void *monitor_main(void *arg)
{
	struct server *s = arg;

	pthread_mutex_lock(&s->monitor_lock);
	while (!s->monitor_stop) {
		struct timespec until;

		uint64_t started_ms = server_now_ms(), wait_ms;

		pthread_mutex_unlock(&s->monitor_lock);
		monitor_poll(s);
		wait_ms = 4 * (server_now_ms() - started_ms);
		if (wait_ms < s->opt.leader_poll_ms)
			wait_ms = s->opt.leader_poll_ms;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait_ms / 1000);
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&s->monitor_lock);
		if (!s->monitor_stop)
			pthread_cond_timedwait(&s->monitor_cond, &s->monitor_lock, &until);
	}
	pthread_mutex_unlock(&s->monitor_lock);
	return NULL;
}

/* --- Start and stop. --- */

struct node_create {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t done;
	uint32_t failed;
	uint32_t existed; /* Recovered from the WAL. */
	int error;
};

static void node_create_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct node_create *wait = arg;

	(void)result;
	(void)leader;
	pthread_mutex_lock(&wait->lock);
	if (rv == FL_ERR_GROUP_EXISTS) {
		wait->existed++;
	} else if (rv != 0) {
		wait->failed++;
		wait->error = rv;
	}
	wait->done++;
	pthread_cond_signal(&wait->cond);
	pthread_mutex_unlock(&wait->lock);
}

/* Create groups 1..groups_count with the configured voters; a group recovered
 * from the WAL answers FL_ERR_GROUP_EXISTS, which is fine. Returns 0 or an error. */
static int server_create_groups(struct server *s)
{
	/* Static: a callback that comes after a timed-out wait still finds it. */
	static struct node_create wait = {.lock = PTHREAD_MUTEX_INITIALIZER,
					  .cond = PTHREAD_COND_INITIALIZER};
	uint64_t deadline = server_now_ms() + NODE_CREATE_WAIT_MS;
	uint32_t started = 0, existed = 0;
	int rv = 0;

	for (uint64_t g = 1; g <= s->opt.groups_count; g++) {
		rv = fl_group_create(s->node, g, s->opt.members, s->opt.members_count,
				     node_create_done, &wait);
		while (rv == -EAGAIN && server_now_ms() < deadline) {
			usleep(1000); /* The shard's queue is full: let it drain. */
			rv = fl_group_create(s->node, g, s->opt.members, s->opt.members_count,
					     node_create_done, &wait);
		}
		if (rv == FL_ERR_GROUP_EXISTS) {
			existed++;
			continue;
		}
		if (rv != 0) {
			server_log(LOG_LEVEL_ERROR, "creating group %llu: %s",
				   (unsigned long long)g, fl_strerror(rv));
			return rv;
		}
		started++;
	}
	pthread_mutex_lock(&wait.lock);
	while (wait.done < started && server_now_ms() < deadline) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&wait.cond, &wait.lock, &until);
	}
	if (wait.done < started) {
		server_log(LOG_LEVEL_WARN, "%u group creations did not finish in %d ms",
			   started - wait.done, NODE_CREATE_WAIT_MS);
		rv = -ETIMEDOUT;
	} else if (wait.failed > 0) {
		server_log(LOG_LEVEL_ERROR, "%u group creations failed, the last with: %s",
			   wait.failed, fl_strerror(wait.error));
		rv = wait.error;
	}
	existed += wait.existed;
	pthread_mutex_unlock(&wait.lock);
	if (rv == 0)
		server_log(LOG_LEVEL_INFO, "groups 1..%u: %u created, %u found in the WAL",
			   s->opt.groups_count, s->opt.groups_count - existed, existed);
	return rv;
}

/* Raise the descriptor limit to the hard limit, and keep --client-conns-max
 * below it with room for the node's own files and sockets. */
static void server_check_fd_limit(struct server *s)
{
	struct rlimit limit;
	const uint64_t reserved = 256;

	if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
		return;
	if (limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
		getrlimit(RLIMIT_NOFILE, &limit);
	}
	if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < s->opt.conns_max + reserved) {
		uint32_t conns_max = limit.rlim_cur > 2 * reserved
					 ? (uint32_t)(limit.rlim_cur - reserved)
					 : (uint32_t)(limit.rlim_cur / 2);

		server_log(LOG_LEVEL_WARN,
			   "--client-conns-max %u lowered to %u: at most %llu open files",
			   s->opt.conns_max, conns_max, (unsigned long long)limit.rlim_cur);
		s->opt.conns_max = conns_max;
	}
}

static int server_listen(struct server *s)
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	int one = 1;

	if (client_parse_addr(s->opt.client_addr, &addr) != 0) {
		fprintf(stderr, "flotilla-node: bad --client address '%s'\n", s->opt.client_addr);
		return -EINVAL;
	}
	s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0)
		return -errno;
	setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->listen_fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(s->listen_fd, 1024) != 0 ||
	    getsockname(s->listen_fd, (struct sockaddr *)&addr, &len) != 0) {
		int rv = -errno;

		close(s->listen_fd);
		s->listen_fd = -1;
		return rv;
	}
	s->client_port = ntohs(addr.sin_port);
	return 0;
}

/* The host part of "host:port", for printing. */
static void node_addr_host(const char *addr, char *host, size_t size)
{
	const char *colon = strrchr(addr, ':');
	size_t len = colon != NULL ? (size_t)(colon - addr) : strlen(addr);

	if (len >= size)
		len = size - 1;
	memcpy(host, addr, len);
	host[len] = '\0';
}

/* --- The state machine: the library's callbacks, forwarded to the store. --- */

static void server_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
			 uint64_t *results)
{
	struct server *s = ctx;

	s->store->ops->apply(s->store, group, entries, count, results);
}

static int server_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct server *s = ctx;

	return s->store->ops->save(s->store, group, w);
}

static int server_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct server *s = ctx;

	return s->store->ops->restore(s->store, group, r);
}

static uint64_t server_state_digest(void *ctx, uint64_t group)
{
	struct server *s = ctx;

	return s->store->ops->state_digest(s->store, group);
}

static int server_freeze(void *ctx, uint64_t group, void **view)
{
	struct server *s = ctx;

	return s->store->ops->freeze(s->store, group, view);
}

static int server_save_view(void *ctx, uint64_t group, void *view, struct fl_snapshot_writer *w)
{
	struct server *s = ctx;

	return s->store->ops->save_view(s->store, group, view, w);
}

static void server_release(void *ctx, uint64_t group, void *view)
{
	struct server *s = ctx;

	s->store->ops->release(s->store, group, view);
}

static int server_start_node(struct server *s, struct fl_peer *peers)
{
	struct fl_node_config config;

	fl_node_config_default(&config, s->opt.id);
	config.cluster_id = s->opt.cluster_id;
	config.data_dir = s->opt.data_dir;
	config.listen_addr = s->opt.listen_addr;
	config.client_addr = s->self_client_addr;
	for (uint32_t i = 0; i < s->opt.peers_count; i++)
		peers[i] = (struct fl_peer){.id = s->opt.peer_ids[i], .addr = s->opt.peer_addrs[i]};
	config.peers = peers;
	config.peers_count = s->opt.peers_count;
	config.shards_count = s->opt.shards_count;
	config.tick_ms = s->opt.tick_ms;
	config.election_timeout_ms = s->opt.election_ms;
	config.heartbeat_interval_ms = s->opt.heartbeat_ms;
	config.entry_size_max = s->opt.entry_size_max;
	config.inbox_max = s->opt.inbox_max;
	config.wal_segment_size = s->opt.wal_segment_size;
	config.quiesce = s->opt.quiesce;
	config.lease_read = s->opt.lease_read;
	config.snapshot_entries = s->opt.snapshot_entries;
	config.check_entries = s->opt.check_entries;
	config.groups_max = s->opt.groups_max;
	config.snapshot_bytes = s->opt.snapshot_bytes;
	config.snapshot_ratio_percent = s->opt.snapshot_ratio_percent;
	config.snapshot_compress = s->opt.snapshot_compress;
	config.log_level = s->opt.log_level;
	config.log_format = s->opt.log_format;
	if (s->opt.tls_ca_file[0] != '\0') { /* Off: main() has said so. */
		config.tls_ca_file = s->opt.tls_ca_file;
		config.tls_cert_file = s->opt.tls_cert_file;
		config.tls_key_file = s->opt.tls_key_file;
	}
	if (s->opt.auth_key_size > 0) {
		config.auth_key = s->opt.auth_key;
		config.auth_key_size = s->opt.auth_key_size;
	}
	config.sm = (struct fl_sm_ops){.apply = server_apply,
				       .leader_changed = server_leader_changed,
				       .save = server_save,
				       .restore = server_restore,
				       .digest = server_state_digest,
				       .ctx = s};
	if (s->opt.snapshot_freeze && s->store->ops->freeze != NULL) {
		config.sm.freeze = server_freeze;
		config.sm.save_view = server_save_view;
		config.sm.release = server_release;
	}
	return fl_node_start(&config, &s->node);
}

static int server_start_threads(struct server *s)
{
	int rv;

	s->budget_max = (uint64_t)s->opt.client_buffer_budget_mb << 20;
	/* After server_check_fd_limit(): sized for the conns_max in force. */
	rv = node_sources_init(&s->sources, s->opt.conns_max);
	if (rv != 0)
		return rv;
	s->workers = calloc(s->opt.client_threads, sizeof(*s->workers));
	if (s->workers == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->opt.client_threads; i++) {
		rv = worker_init(&s->workers[i], s);
		if (rv == 0)
			rv = -pthread_create(&s->workers[i].thread, NULL, worker_main,
					     &s->workers[i]);
		if (rv != 0) {
			worker_deinit(&s->workers[i]);
			return rv;
		}
		s->workers_count++;
	}
	return -pthread_create(&s->monitor, NULL, monitor_main, s);
}

/* Stop in the order that keeps every callback's memory alive: connections
 * and client threads first, then the node (which runs the last callbacks,
 * with FL_ERR_STOPPING), then what the callbacks pointed at. */
static void server_stop(struct server *s)
{
	atomic_store(&s->stopping, true);
	node_metrics_stop(s); /* It reads the node. */
	for (uint32_t i = 0; i < s->workers_count; i++) {
		uint64_t one = 1;

		if (write(s->workers[i].wakefd, &one, sizeof(one)) < 0) {
			/* Cannot fail: the counter is far from overflow. */
		}
	}
	for (uint32_t i = 0; i < s->workers_count; i++)
		pthread_join(s->workers[i].thread, NULL);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
	pthread_mutex_lock(&s->monitor_lock);
	s->monitor_stop = true;
	pthread_cond_signal(&s->monitor_cond);
	pthread_mutex_unlock(&s->monitor_lock);
	pthread_join(s->monitor, NULL);
	fl_node_stop(s->node);
	s->node = NULL;
	for (uint32_t i = 0; i < s->workers_count; i++)
		worker_deinit(&s->workers[i]);
	free(s->workers);
	node_sources_deinit(&s->sources);
	node_tls_deinit(s);
	free(s->leaders);
	s->store->ops->close(s->store);
	s->store = NULL;
}

static int node_exit_status(int rv)
{
	if (rv == -EADDRINUSE)
		return EXIT_ADDR_IN_USE;
	return rv == -ENOSYS || rv == -EPERM ? EXIT_NO_IO_URING : EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	static struct server server = {.listen_fd = -1,
				       .monitor_lock = PTHREAD_MUTEX_INITIALIZER,
				       .limit_log_lock = PTHREAD_MUTEX_INITIALIZER,
				       .monitor_cond = PTHREAD_COND_INITIALIZER};
	static struct fl_peer peers[NODE_PEERS_MAX];
	struct server *s = &server;
	char peer_host[NODE_ADDR_SIZE_MAX], client_host[NODE_ADDR_SIZE_MAX];
	char metrics_host[NODE_ADDR_SIZE_MAX];
	sigset_t signals;
	int rv, signal_number = 0;

	node_options_default(&s->opt);
	if (node_options_parse(&s->opt, argc, argv) != 0 || node_options_check(&s->opt) != 0) {
		fprintf(stderr, "flotilla-node: refused (flotilla-node --help lists the flags "
				"and their rules)\n");
		return EXIT_USAGE;
	}
	server_logger = (struct logger){
	    .node_id = s->opt.id, .level_min = s->opt.log_level, .format = s->opt.log_format};
	/* Block the stop signals in every thread (they inherit the mask); the
	 * main thread takes them with sigwait(). */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP); /* Reload the TLS files. */
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (mkdir(s->opt.data_dir, 0755) != 0 && errno != EEXIST) {
		server_log(LOG_LEVEL_ERROR, "%s: %s", s->opt.data_dir, strerror(errno));
		return EXIT_FAILURE;
	}
	rv = node_store_find(s->opt.store)->open(s->opt.data_dir, &s->store);
	if (rv != 0) {
		server_log(LOG_LEVEL_ERROR, "opening the %s store: %s", s->opt.store,
			   fl_strerror(rv));
		return EXIT_FAILURE;
	}
	server_check_fd_limit(s);
	if (node_tls_init(s) != 0)
		return EXIT_FAILURE;
	if (!node_tls_enabled(s))
		server_log(LOG_LEVEL_WARN,
			   "TLS is off: peer and client traffic is neither encrypted nor "
			   "authenticated (--tls-ca, --tls-cert and --tls-key turn it on)");
	/* Before the node starts: recovered groups report their leaders at once. */
	if (s->opt.groups_count > 0) {
		s->leaders = calloc(s->opt.groups_count, sizeof(*s->leaders));
		if (s->leaders == NULL)
			return EXIT_FAILURE;
	}
	rv = server_listen(s);
	if (rv != 0) {
		server_log(LOG_LEVEL_ERROR, "client listener %s: %s", s->opt.client_addr,
			   strerror(-rv));
		return node_exit_status(rv);
	}
	node_addr_host(s->opt.client_addr, client_host, sizeof(client_host));
	snprintf(s->self_client_addr, sizeof(s->self_client_addr), "%s:%u", client_host,
		 s->client_port);
	rv = server_start_node(s, peers);
	if (rv != 0) {
		server_log(LOG_LEVEL_ERROR, "starting the node: %s", fl_strerror(rv));
		return node_exit_status(rv);
	}
	if (s->opt.metrics_addr[0] != '\0' && (rv = node_metrics_start(s)) != 0) {
		server_log(LOG_LEVEL_ERROR, "metrics listener %s: %s", s->opt.metrics_addr,
			   strerror(-rv));
		fl_node_stop(s->node);
		return node_exit_status(rv);
	}
	node_addr_host(s->opt.listen_addr, peer_host, sizeof(peer_host));
	snprintf(s->self_peer_addr, sizeof(s->self_peer_addr), "%s:%u", peer_host,
		 fl_node_port(s->node));
	server_log(LOG_LEVEL_INFO, "listening: peer %s:%u client %s:%u (flotilla %s)", peer_host,
		   fl_node_port(s->node), client_host, s->client_port, fl_version());
	rv = s->opt.join ? 0 : server_create_groups(s);
	if (rv == 0)
		rv = server_start_threads(s);
	if (rv != 0) {
		server_log(LOG_LEVEL_ERROR, "start failed: %s", fl_strerror(rv));
		node_metrics_stop(s); /* It reads the node. */
		fl_node_stop(s->node);
		return EXIT_FAILURE;
	}
	printf("flotilla-node %llu ready: peer %s:%u client %s:%u", (unsigned long long)s->opt.id,
	       peer_host, fl_node_port(s->node), client_host, s->client_port);
	if (s->metrics != NULL) {
		node_addr_host(s->opt.metrics_addr, metrics_host, sizeof(metrics_host));
		printf(" metrics %s:%u", metrics_host, s->metrics_port);
	}
	printf("\n");
	fflush(stdout);
	if (s->metrics != NULL)
		server_log(LOG_LEVEL_INFO, "metrics: GET http://%s:%u/metrics", metrics_host,
			   s->metrics_port);
	server_log(LOG_LEVEL_INFO, "ready");

	/* SIGHUP: reload the certificates (new connections use them; each
	 * reload logs what it loaded, or why it kept the old files); SIGTERM or
	 * SIGINT: stop. */
	while (sigwait(&signals, &signal_number) != 0 || signal_number == SIGHUP) {
		if (signal_number == SIGHUP && s->opt.tls_ca_file[0] != '\0') {
			(void)fl_node_tls_reload(s->node);
			(void)node_tls_reload(s);
		} else if (signal_number == SIGHUP) {
			server_log(LOG_LEVEL_INFO, "SIGHUP: TLS is off; nothing to reload");
		}
		signal_number = 0;
	}
	server_log(LOG_LEVEL_INFO, "stopping on %s",
		   signal_number == SIGINT ? "SIGINT" : "SIGTERM");
	server_stop(s);
	server_log(LOG_LEVEL_INFO, "exiting");
	return 0;
}
