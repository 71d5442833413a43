/* flotilla-node: one Flotilla node with a built-in key-value state machine
 * (tools/kv.h), serving the client protocol of docs/client-protocol.md.
 *
 * Threads: the library's shard threads run Raft and apply committed entries
 * to the KV maps; a few client threads (--client-threads), each with its own
 * epoll set, share one listening socket (EPOLLEXCLUSIVE) and serve the
 * connections they accept; leader changes arrive by callback (the hint for
 * answers that no library callback carries), and a monitor thread logs how
 * many groups this node leads, while the library logs each change; the
 * main thread waits for SIGTERM or SIGINT. Logs go to stderr, one line each
 * with a UTC timestamp.
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
 *
 * Lifetime: a connection counts its requests in flight (outstanding). When a
 * connection closes, its memory stays until every callback for it has come
 * back; only its client thread frees it, at the end of a loop turn, so no
 * event of the same turn can see freed memory.
 *
 * Bounds: at most --client-conns-max connections (more are closed at once),
 * at most --client-inflight-max requests in flight per connection (then the
 * connection is not read until answers go out), and no reading while more
 * than CONN_OUT_MAX bytes of answers wait to be sent. Anything malformed from
 * a client gets BAD_REQUEST and its connection is closed.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on bad usage,
 * 3 when an address is in use (a caller may retry with other ports), 4 when
 * io_uring is not available here (-ENOSYS or -EPERM from fl_node_start). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flotilla.h"
#include "tools/client.h"
#include "tools/kv.h"

#define NODE_PEERS_MAX      64
#define NODE_ADDR_SIZE_MAX  64
#define NODE_CREATE_WAIT_MS 30000
#define WORKER_EVENTS_MAX   256
#define WORKER_ACCEPT_MAX   64
#define WORKER_TAG_WAKE     0 /* epoll_data.u64 of the eventfd; */
#define WORKER_TAG_LISTEN   1 /* of the listener; any other value is a struct conn *. */
#define CONN_READ_SIZE      (256u << 10)
#define CONN_READS_MAX      4 /* recv() calls per readiness event: fairness. */
#define CONN_OUT_MAX        (64u << 20)
#define CONN_BUFFER_KEEP    (1u << 20) /* Larger idle buffers are freed. */

enum { EXIT_USAGE = 2, EXIT_ADDR_IN_USE = 3, EXIT_NO_IO_URING = 4 };

struct node_options {
	uint64_t id;
	uint64_t cluster_id;
	char data_dir[PATH_MAX];
	char listen_addr[NODE_ADDR_SIZE_MAX];
	char client_addr[NODE_ADDR_SIZE_MAX];
	uint64_t peer_ids[NODE_PEERS_MAX];
	char peer_addrs[NODE_PEERS_MAX][NODE_ADDR_SIZE_MAX];
	uint32_t peers_count;
	uint64_t members[FL_MEMBERS_MAX];
	uint32_t members_count;
	uint32_t shards_count;
	uint32_t groups_count;
	uint32_t election_ms;
	uint32_t heartbeat_ms;
	uint32_t tick_ms;
	uint32_t entry_size_max;
	uint32_t inbox_max;
	uint32_t wal_segment_size;
	uint32_t snapshot_entries;
	uint32_t check_entries;
	bool allow_corrupt; /* Accept CORRUPT requests (tests of consistency checks only). */
	uint32_t snapshot_bytes;
	bool snapshot_compress;
	bool snapshot_freeze;
	bool quiesce;
	bool lease_read;
	bool join;
	uint32_t client_threads;
	uint32_t conns_max;
	uint32_t inflight_max;
	uint32_t leader_poll_ms;
};

struct server;
struct worker;

/* One client connection. Owned by its worker's thread; callbacks only read
 * the immutable worker pointer, and only while the request they answer keeps
 * the connection alive (outstanding > 0). */
struct conn {
	struct worker *worker;
	int fd;
	uint32_t outstanding; /* Requests whose answer has not come back. */
	uint32_t events;      /* The epoll interest currently registered. */
	bool closing;         /* Send what is queued, then close (after BAD_REQUEST). */
	bool eof;             /* The client shut its side: answer what came, then close. */
	bool closed;
	bool dirty; /* On the worker's dirty list. */
	unsigned char *in;
	uint32_t in_size, in_start, in_end;
	unsigned char *out;
	uint32_t out_size, out_start, out_end;
	struct conn *prev, *next, *dirty_next;
};

/* A request in flight in the library, then its answer. */
struct pending {
	struct pending *next;
	struct conn *conn;
	struct server *server;
	uint64_t request_id;
	uint64_t group;
	uint64_t leader;
	uint32_t op;
	uint32_t status;
	void *value; /* malloc()ed answer value, or NULL. */
	uint32_t value_size;
	struct fl_group_info *info; /* MEMBERS: filled by the library; malloc()ed. */
	uint32_t key_size;
	unsigned char key[]; /* Kept for GET and CAS, which read the map in the callback. */
};

struct worker {
	struct server *server;
	pthread_t thread;
	int epfd;
	int wakefd;
	pthread_mutex_t done_lock; /* Guards done_head/done_tail: shard threads push. */
	struct pending *done_head, *done_tail;
	struct conn *conns; /* Every connection not yet freed, open or closed. */
	struct conn *dirty; /* Connections to revisit at the end of this loop turn. */
	unsigned char *scratch;
	uint32_t scratch_size;
};

struct server {
	struct node_options opt;
	struct fl_node *node;
	struct kv kv;
	int listen_fd;
	uint16_t client_port;
	atomic_bool stopping;
	atomic_uint conns_count;
	struct worker *workers;
	uint32_t workers_count;
	_Atomic uint64_t *leaders; /* Groups 1..groups_count, from leader_changed. */
	atomic_uint leading;       /* Groups this node leads, from leader_changed. */
	pthread_t monitor;
	pthread_mutex_t monitor_lock;
	pthread_cond_t monitor_cond;
	bool monitor_stop;
	uint32_t monitor_leading;     /* Groups led at the last poll; the monitor's. */
	uint64_t monitor_divergences; /* Likewise, fl_metrics.divergences. */
	uint32_t monitor_no_space;    /* Likewise, fl_metrics.shards_no_space. */
};

/* --- Logging. --- */

static uint64_t node_log_id;

/* One line to stderr with a UTC timestamp, written in one call so lines of
 * different threads do not interleave. */
__attribute__((format(printf, 1, 2))) static void log_print(const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - (size_t)n,
		      ".%03ldZ node %llu: ", ts.tv_nsec / 1000000, (unsigned long long)node_log_id);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

static uint64_t node_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- Options: flags, and the same names in a key=value file (--config). --- */

enum { OPT_U64, OPT_U32, OPT_BOOL, OPT_STR, OPT_PEER, OPT_MEMBERS, OPT_CONFIG };

struct node_opt {
	const char *name;
	int kind;
	size_t offset;
	size_t size; /* OPT_STR: buffer size. */
	uint64_t min, max;
	const char *help;
};

#define OPT_FIELD(f) offsetof(struct node_options, f)

static const struct node_opt node_opts[] = {
    {"id", OPT_U64, OPT_FIELD(id), 0, 1, UINT64_MAX, "N  this node's id (required, >= 1)"},
    {"cluster-id", OPT_U64, OPT_FIELD(cluster_id), 0, 0, UINT64_MAX, "N  cluster id (1)"},
    {"data", OPT_STR, OPT_FIELD(data_dir), PATH_MAX, 0, 0, "DIR  data directory (required)"},
    {"listen", OPT_STR, OPT_FIELD(listen_addr), NODE_ADDR_SIZE_MAX, 0, 0,
     "HOST:PORT  peer listener (127.0.0.1:0)"},
    {"client", OPT_STR, OPT_FIELD(client_addr), NODE_ADDR_SIZE_MAX, 0, 0,
     "HOST:PORT  client listener (127.0.0.1:0)"},
    {"peer", OPT_PEER, 0, 0, 0, 0, "ID=HOST:PORT  another node's peer listener (repeatable)"},
    {"shards", OPT_U32, OPT_FIELD(shards_count), 0, 0, 1024, "N  shard threads (0: CPUs)"},
    {"groups", OPT_U32, OPT_FIELD(groups_count), 0, 0, 10000000,
     "N  create groups 1..N at start unless present (0)"},
    {"members", OPT_MEMBERS, 0, 0, 0, 0, "ID,ID,...  their voters (this node and its peers)"},
    {"election-ms", OPT_U32, OPT_FIELD(election_ms), 0, 1, 600000,
     "MS  election timeout (library default)"},
    {"heartbeat-ms", OPT_U32, OPT_FIELD(heartbeat_ms), 0, 1, 600000,
     "MS  heartbeat interval (library default)"},
    {"tick-ms", OPT_U32, OPT_FIELD(tick_ms), 0, 1, 60000,
     "MS  timer granularity (library default)"},
    {"quiesce", OPT_BOOL, OPT_FIELD(quiesce), 0, 0, 0, "on|off  idle groups stop ticking"},
    {"lease-read", OPT_BOOL, OPT_FIELD(lease_read), 0, 0, 0, "on|off  reads on the leader lease"},
    {"join", OPT_BOOL, OPT_FIELD(join), 0, 0, 0,
     "on|off  a new node: create no group, receive them by JOIN (flotilla-admin move)"},
    {"entry-size-max", OPT_U32, OPT_FIELD(entry_size_max), 0, 64, UINT32_MAX,
     "BYTES  largest log entry"},
    {"inbox-max", OPT_U32, OPT_FIELD(inbox_max), 0, 1, UINT32_MAX, "N  requests queued per shard"},
    {"wal-segment-size", OPT_U32, OPT_FIELD(wal_segment_size), 0, 0, 1u << 30,
     "BYTES  WAL segment file size (0: library default)"},
    {"snapshot-entries", OPT_U32, OPT_FIELD(snapshot_entries), 0, 0, UINT32_MAX,
     "N  snapshot a group every N applied entries (0: never)"},
    {"check-entries", OPT_U32, OPT_FIELD(check_entries), 0, 0, UINT32_MAX,
     "N  a consistency check of each group every N log entries (0: on request only)"},
    {"allow-corrupt-for-tests", OPT_BOOL, OPT_FIELD(allow_corrupt), 0, 0, 0,
     "on|off  accept CORRUPT requests that make this replica diverge (off)"},
    {"snapshot-bytes", OPT_U32, OPT_FIELD(snapshot_bytes), 0, 0, UINT32_MAX,
     "BYTES  snapshot a group every BYTES of applied entries (0: never)"},
    {"snapshot-compress", OPT_BOOL, OPT_FIELD(snapshot_compress), 0, 0, 0,
     "on|off  send snapshot chunks LZ4-compressed (off)"},
    {"snapshot-freeze", OPT_BOOL, OPT_FIELD(snapshot_freeze), 0, 0, 0,
     "on|off  copy a group's map and save it on the snapshot thread (on)"},
    {"client-threads", OPT_U32, OPT_FIELD(client_threads), 0, 1, 64, "N  client threads (2)"},
    {"client-conns-max", OPT_U32, OPT_FIELD(conns_max), 0, 1, 1000000,
     "N  client connections (1024)"},
    {"client-inflight-max", OPT_U32, OPT_FIELD(inflight_max), 0, 1, 1000000,
     "N  requests in flight per connection (1024)"},
    {"leader-poll-ms", OPT_U32, OPT_FIELD(leader_poll_ms), 0, 10, 3600000,
     "MS  how often each group's leader is polled (200)"},
    {"config", OPT_CONFIG, 0, 0, 0, 0, "FILE  key=value lines with these names; # comments"},
};

static void node_usage(FILE *out)
{
	fprintf(out, "usage: flotilla-node --id N --data DIR [options]\n"
		     "Options (--name VALUE or --name=VALUE; applied in order, the last wins):\n");
	for (size_t i = 0; i < sizeof(node_opts) / sizeof(node_opts[0]); i++)
		fprintf(out, "  --%s %s\n", node_opts[i].name, node_opts[i].help);
}

static int node_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int node_parse_peer(struct node_options *opt, const char *text)
{
	const char *eq = strchr(text, '=');
	char id_text[24];
	uint64_t id;

	if (eq == NULL || eq == text || (size_t)(eq - text) >= sizeof(id_text) ||
	    opt->peers_count == NODE_PEERS_MAX || strlen(eq + 1) >= NODE_ADDR_SIZE_MAX ||
	    strchr(eq + 1, ':') == NULL)
		return -EINVAL;
	memcpy(id_text, text, (size_t)(eq - text));
	id_text[eq - text] = '\0';
	if (node_parse_u64(id_text, 1, UINT64_MAX, &id) != 0)
		return -EINVAL;
	for (uint32_t i = 0; i < opt->peers_count; i++)
		if (opt->peer_ids[i] == id)
			return -EINVAL;
	opt->peer_ids[opt->peers_count] = id;
	strcpy(opt->peer_addrs[opt->peers_count], eq + 1);
	opt->peers_count++;
	return 0;
}

static int node_parse_members(struct node_options *opt, const char *text)
{
	char buf[512];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, text);
	opt->members_count = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		uint64_t id;

		if (opt->members_count == FL_MEMBERS_MAX ||
		    node_parse_u64(tok, 1, UINT64_MAX, &id) != 0)
			return -EINVAL;
		for (uint32_t i = 0; i < opt->members_count; i++)
			if (opt->members[i] == id)
				return -EINVAL;
		opt->members[opt->members_count++] = id;
	}
	return opt->members_count > 0 ? 0 : -EINVAL;
}

static int node_config_file(struct node_options *opt, const char *path, int depth);

static int node_set_option(struct node_options *opt, const char *name, const char *value, int depth)
{
	for (size_t i = 0; i < sizeof(node_opts) / sizeof(node_opts[0]); i++) {
		const struct node_opt *o = &node_opts[i];
		char *field = (char *)opt + o->offset;
		uint64_t v;

		if (strcmp(o->name, name) != 0)
			continue;
		switch (o->kind) {
		case OPT_U64:
		case OPT_U32:
			if (node_parse_u64(value, o->min, o->max, &v) != 0)
				break;
			if (o->kind == OPT_U64)
				*(uint64_t *)(void *)field = v;
			else
				*(uint32_t *)(void *)field = (uint32_t)v;
			return 0;
		case OPT_BOOL:
			if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
				break;
			*(bool *)(void *)field = strcmp(value, "on") == 0;
			return 0;
		case OPT_STR:
			if (strlen(value) == 0 || strlen(value) >= o->size)
				break;
			strcpy(field, value);
			return 0;
		case OPT_PEER:
			if (node_parse_peer(opt, value) != 0)
				break;
			return 0;
		case OPT_MEMBERS:
			if (node_parse_members(opt, value) != 0)
				break;
			return 0;
		case OPT_CONFIG:
			return node_config_file(opt, value, depth + 1);
		}
		fprintf(stderr, "flotilla-node: bad value for %s: '%s'\n", name, value);
		return -EINVAL;
	}
	fprintf(stderr, "flotilla-node: unknown option '%s'\n", name);
	return -EINVAL;
}

static char *node_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* Lines "name = value"; blank lines and lines starting with # are skipped. */
static int node_config_file(struct node_options *opt, const char *path, int depth)
{
	char line[1024];
	unsigned line_no = 0;
	FILE *f;
	int rv = 0;

	if (depth > 4) {
		fprintf(stderr, "flotilla-node: %s: config files nest too deep\n", path);
		return -EINVAL;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "flotilla-node: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *s = node_trim(line);
		char *eq;

		line_no++;
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			fprintf(stderr, "flotilla-node: %s:%u: expected name=value\n", path,
				line_no);
			rv = -EINVAL;
			break;
		}
		*eq = '\0';
		rv = node_set_option(opt, node_trim(s), node_trim(eq + 1), depth);
		if (rv != 0)
			fprintf(stderr, "flotilla-node: at %s:%u\n", path, line_no);
	}
	fclose(f);
	return rv;
}

static int node_parse_args(struct node_options *opt, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char name[64];
		const char *arg = argv[i], *value, *eq;
		size_t len;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			node_usage(stdout);
			exit(0);
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "flotilla-node: unexpected argument '%s'\n", arg);
			return -EINVAL;
		}
		arg += 2;
		eq = strchr(arg, '=');
		len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		if (len >= sizeof(name)) {
			fprintf(stderr, "flotilla-node: unknown option '%s'\n", argv[i]);
			return -EINVAL;
		}
		memcpy(name, arg, len);
		name[len] = '\0';
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "flotilla-node: --%s needs a value\n", name);
			return -EINVAL;
		}
		if (node_set_option(opt, name, value, 0) != 0)
			return -EINVAL;
	}
	return 0;
}

static int node_check_options(struct node_options *opt)
{
	bool self_member = false;

	if (opt->id == 0 || opt->data_dir[0] == '\0') {
		fprintf(stderr, "flotilla-node: --id and --data are required\n");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < opt->peers_count; i++) {
		if (opt->peer_ids[i] == opt->id) {
			fprintf(stderr, "flotilla-node: --peer %llu is this node\n",
				(unsigned long long)opt->id);
			return -EINVAL;
		}
	}
	if (opt->members_count == 0) {
		/* Default voters: this node and every peer. */
		if (opt->peers_count + 1 > FL_MEMBERS_MAX) {
			fprintf(stderr, "flotilla-node: more than %d nodes: give --members\n",
				FL_MEMBERS_MAX);
			return -EINVAL;
		}
		opt->members[opt->members_count++] = opt->id;
		for (uint32_t i = 0; i < opt->peers_count; i++)
			opt->members[opt->members_count++] = opt->peer_ids[i];
	}
	for (uint32_t i = 0; i < opt->members_count; i++)
		self_member |= opt->members[i] == opt->id;
	if (opt->groups_count > 0 && !self_member && !opt->join) {
		fprintf(stderr, "flotilla-node: --members must include this node (%llu)\n",
			(unsigned long long)opt->id);
		return -EINVAL;
	}
	return 0;
}

/* --- Connections: buffers, answers, reading, writing. --- */

static void conn_mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->worker->dirty;
	c->worker->dirty = c;
}

/* Stop serving c. Its memory stays until its last answer comes back; the
 * end of the loop turn frees it (it goes on the dirty list for that). */
static void conn_close(struct conn *c)
{
	if (c->closed)
		return;
	epoll_ctl(c->worker->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->closed = true;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->in_size = c->in_start = c->in_end = 0;
	c->out_size = c->out_start = c->out_end = 0;
	atomic_fetch_sub(&c->worker->server->conns_count, 1);
	conn_mark_dirty(c);
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->worker;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}

/* Queue an answer. Out of memory closes the connection: the client then sees
 * its requests fail as on any lost connection. */
static void conn_respond(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
			 const void *value, uint32_t value_size)
{
	struct client_response resp = {.status = status,
				       .request_id = request_id,
				       .leader_hint = leader,
				       .value = value,
				       .value_size = value_size};
	uint32_t size = client_response_size(value_size);

	if (c->closed)
		return;
	if (client_reserve(&c->out, &c->out_size, &c->out_start, &c->out_end, size,
			   CONN_READ_SIZE) != 0) {
		log_print("client connection closed: out of memory for an answer");
		conn_close(c);
		return;
	}
	client_response_encode(&resp, c->out + c->out_end);
	c->out_end += size;
	conn_mark_dirty(c);
}

static void conn_respond_text(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
			      const char *text)
{
	conn_respond(c, status, request_id, leader, text, (uint32_t)strlen(text));
}

/* Send what the socket takes. Returns 0 or -errno when the connection failed. */
static int conn_flush(struct conn *c)
{
	while (c->out_start < c->out_end) {
		ssize_t n =
		    send(c->fd, c->out + c->out_start, c->out_end - c->out_start, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_start += (uint32_t)n;
	}
	c->out_start = c->out_end = 0;
	if (c->out_size > CONN_BUFFER_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_size = 0;
	}
	return 0;
}

/* Whether the bounds allow starting one more request. */
static bool conn_can_start(const struct conn *c)
{
	return !c->closing && c->outstanding < c->worker->server->opt.inflight_max &&
	       c->out_end - c->out_start < CONN_OUT_MAX;
}

static bool conn_can_read(const struct conn *c)
{
	return conn_can_start(c) && !c->eof;
}

/* Whether c has nothing left to do: after BAD_REQUEST, or after the client
 * shut its side, once every answer is out. */
static bool conn_is_done(const struct conn *c)
{
	return c->out_end == c->out_start && (c->closing || (c->eof && c->outstanding == 0));
}

static void conn_update_events(struct conn *c)
{
	uint32_t events =
	    (conn_can_read(c) ? EPOLLIN : 0) | (c->out_end > c->out_start ? EPOLLOUT : 0);
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (events == c->events)
		return;
	if (epoll_ctl(c->worker->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		log_print("epoll_ctl: %s", strerror(errno));
		conn_close(c);
		return;
	}
	c->events = events;
}

/* Read what the socket has, a few chunks at most. Returns 0 or -errno
 * (-ECONNRESET when the client closed). */
static int conn_read(struct conn *c)
{
	for (int i = 0; i < CONN_READS_MAX; i++) {
		uint64_t want = CONN_READ_SIZE;
		uint32_t live = c->in_end - c->in_start;
		uint32_t room;
		ssize_t n;

		/* A partial request announces its size: make room for all of it. */
		if (live >= 4) {
			uint64_t frame = 4 + (uint64_t)(c->in[c->in_start] |
							(uint32_t)c->in[c->in_start + 1] << 8 |
							(uint32_t)c->in[c->in_start + 2] << 16 |
							(uint32_t)c->in[c->in_start + 3] << 24);

			if (frame <= 4 + (uint64_t)CLIENT_REQUEST_SIZE_MAX && frame > live &&
			    frame - live > want)
				want = frame - live;
		}
		if (client_reserve(&c->in, &c->in_size, &c->in_start, &c->in_end, want,
				   CONN_READ_SIZE) != 0)
			return -ENOMEM;
		room = c->in_size - c->in_end;
		n = recv(c->fd, c->in + c->in_end, room, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->in_end += (uint32_t)n;
		if ((uint32_t)n < room)
			return 0;
	}
	return 0;
}

/* --- Requests and their callbacks. --- */

static uint64_t server_leader_hint(struct server *s, uint64_t group)
{
	if (group == 0 || group > s->opt.groups_count || s->leaders == NULL)
		return 0;
	return atomic_load_explicit(&s->leaders[group - 1], memory_order_relaxed);
}

static struct pending *pending_new(struct conn *c, const struct client_request *req)
{
	bool keep_key = req->op == CLIENT_OP_GET || req->op == CLIENT_OP_CAS;
	uint32_t key_size = keep_key ? req->key_size : 0;
	struct pending *p = calloc(1, sizeof(*p) + key_size);

	if (p == NULL)
		return NULL;
	p->conn = c;
	p->server = c->worker->server;
	p->request_id = req->request_id;
	p->group = req->group;
	p->op = req->op;
	p->key_size = key_size;
	if (key_size > 0)
		memcpy(p->key, req->key, key_size);
	return p;
}

/* Give p's value a copy of text. Callbacks use it; failure leaves it empty. */
static void pending_set_text(struct pending *p, const char *text)
{
	size_t size = strlen(text);

	free(p->value);
	p->value = malloc(size + 1);
	p->value_size = 0;
	if (p->value != NULL) {
		memcpy(p->value, text, size + 1);
		p->value_size = (uint32_t)size;
	}
}

/* Answer a failed library call: NOT_LEADER with the hint, or ERROR with its
 * name. A leader handing leadership over refuses writes until the transfer
 * ends (FL_ERR_TRANSFER): nothing was proposed, and the leader is about to
 * change, so that is NOT_LEADER too, with no hint (wait and retry). A leader
 * whose WAL's disk is full (FL_ERR_NO_SPACE) proposed nothing either: its
 * own status, with the error text, so that clients can tell it apart. */
static void pending_set_error(struct pending *p, int rv, uint64_t leader)
{
	p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	if (rv == FL_ERR_NOT_LEADER) {
		p->status = CLIENT_STATUS_NOT_LEADER;
		return;
	}
	if (rv == FL_ERR_TRANSFER && p->op != CLIENT_OP_TRANSFER) {
		p->status = CLIENT_STATUS_NOT_LEADER;
		p->leader = 0;
		return;
	}
	p->status = rv == FL_ERR_NO_SPACE ? CLIENT_STATUS_NO_SPACE : CLIENT_STATUS_ERROR;
	pending_set_text(p, fl_strerror(rv));
}

/* Read key into p's answer from this node's map. */
static void pending_read_value(struct pending *p, uint32_t status_found)
{
	int rv = kv_get(&p->server->kv, p->group, p->key, p->key_size, &p->value, &p->value_size);

	if (rv == 0)
		p->status = status_found;
	else if (rv == -ENOENT)
		p->status =
		    status_found == CLIENT_STATUS_OK ? CLIENT_STATUS_NOT_FOUND : status_found;
	else
		pending_set_error(p, rv, p->leader);
}

/* Hand p to its connection's thread. Runs on a shard thread. */
static void worker_complete(struct pending *p)
{
	struct worker *w = p->conn->worker; /* Immutable; p keeps the connection alive. */
	bool was_empty;
	uint64_t one = 1;

	pthread_mutex_lock(&w->done_lock);
	was_empty = w->done_head == NULL;
	if (was_empty)
		w->done_head = p;
	else
		w->done_tail->next = p;
	w->done_tail = p;
	pthread_mutex_unlock(&w->done_lock);
	/* The worker empties the list only after reading the eventfd, so a push
	 * onto an empty list must wake it; pushes onto a non-empty list ride
	 * along with the wake-up of the first. */
	if (was_empty && write(w->wakefd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow; nothing else can fail here. */
	}
}

/* fl_propose callback for PUT, DELETE and CAS. */
static void node_write_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	p->leader = leader != 0 ? leader : p->server->opt.id;
	switch (result) {
	case KV_RESULT_OK:
		p->status = CLIENT_STATUS_OK;
		break;
	case KV_RESULT_NOT_FOUND:
		p->status = CLIENT_STATUS_NOT_FOUND;
		break;
	case KV_RESULT_CAS_MISMATCH:
		/* The value as of now: later entries may have changed it since
		 * this one was applied (absent now: an empty value). */
		pending_read_value(p, CLIENT_STATUS_CAS_MISMATCH);
		break;
	default:
		p->status = CLIENT_STATUS_ERROR;
		pending_set_text(p, "the state machine rejected the entry");
		break;
	}
	worker_complete(p);
}

/* fl_read callback for GET: the barrier passed, so the local map is current
 * (on a follower too: its read barrier waits for the leader's commit index). */
static void node_get_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv != 0) {
		pending_set_error(p, rv, leader);
	} else {
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
		pending_read_value(p, CLIENT_STATUS_OK);
	}
	worker_complete(p);
}

/* fl_read callback for LEADER. The barrier makes the hint current: it passed
 * through the leader (a follower's read asks the leader for its commit index). */
static void node_leader_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv == 0 || rv == FL_ERR_NOT_LEADER) {
		p->status = CLIENT_STATUS_OK;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	} else {
		pending_set_error(p, rv, leader);
	}
	worker_complete(p);
}

/* fl_group_check callback for CHECK (the leader's digest at the check's
 * index is applied here) and fl_group_rebuild callback for REBUILD (the
 * leader's snapshot is restored here): the value is that index. */
static void node_index_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	p->leader = leader != 0 ? leader : p->server->opt.id;
	p->status = CLIENT_STATUS_OK;
	p->value = malloc(8);
	if (p->value != NULL) {
		for (int i = 0; i < 8; i++)
			((unsigned char *)p->value)[i] = (unsigned char)(result >> (8 * i));
		p->value_size = 8;
	}
	worker_complete(p);
}

/* Callback of the membership ops (JOIN, ADD_LEARNER, PROMOTE, REMOVE_MEMBER,
 * TRANSFER, DROP). What an operator retries later is RETRY, not ERROR: a
 * change not yet committed, a transfer under way, a learner still behind, a
 * full queue. JOIN of a group already here and DROP of one not here are done. */
static void node_admin_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv == 0 || (p->op == CLIENT_OP_JOIN && rv == FL_ERR_GROUP_EXISTS) ||
	    (p->op == CLIENT_OP_DROP && rv == FL_ERR_NO_GROUP)) {
		p->status = CLIENT_STATUS_OK;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	} else if (rv == FL_ERR_CONF_PENDING || rv == FL_ERR_TRANSFER || rv == FL_ERR_LAGGING ||
		   rv == -EAGAIN) {
		p->status = CLIENT_STATUS_RETRY;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
		pending_set_text(p, fl_strerror(rv));
	} else {
		pending_set_error(p, rv, leader);
	}
	worker_complete(p);
}

/* fl_group_info callback for MEMBERS: encode what the library filled in. */
static void node_members_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;
	const struct fl_group_info *info = p->info;
	struct client_members m = {0};

	(void)result;
	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	m = (struct client_members){.leader = info->leader,
				    .term = info->term,
				    .commit_index = info->commit_index,
				    .last_index = info->last_index,
				    .conf_index = info->conf_index,
				    .flags = (info->is_leader ? CLIENT_MEMBERS_LEADER : 0) |
					     (info->joint ? CLIENT_MEMBERS_JOINT : 0),
				    .members_count = info->members_count < CLIENT_MEMBERS_MAX
							 ? info->members_count
							 : CLIENT_MEMBERS_MAX};
	for (uint32_t i = 0; i < m.members_count; i++)
		m.members[i] = (struct client_member){.id = info->members[i].id,
						      .match = info->members[i].match,
						      .role = info->members[i].role,
						      .role_old = info->members[i].role_old};
	p->leader = info->leader;
	p->value = malloc(client_members_size(&m));
	if (p->value == NULL) {
		pending_set_error(p, -ENOMEM, leader);
	} else {
		client_members_encode(&m, p->value);
		p->value_size = client_members_size(&m);
		p->status = CLIENT_STATUS_OK;
	}
	worker_complete(p);
}

static void pending_free(struct pending *p)
{
	free(p->value);
	free(p->info);
	free(p);
}

static bool node_op_is_membership(uint32_t op)
{
	return op >= CLIENT_OP_JOIN && op <= CLIENT_OP_DROP;
}

/* Start a membership op; its callback answers. Returns 0 or an error known at once. */
static int conn_admin(struct conn *c, const struct client_request *req, struct pending *p)
{
	struct fl_node *node = c->worker->server->node;

	switch (req->op) {
	case CLIENT_OP_JOIN:
		return fl_group_join(node, req->group, node_admin_done, p);
	case CLIENT_OP_ADD_LEARNER:
		return fl_add_learner(node, req->group, req->member, node_admin_done, p);
	case CLIENT_OP_PROMOTE:
		return fl_promote(node, req->group, req->member, node_admin_done, p);
	case CLIENT_OP_REMOVE_MEMBER:
		return fl_remove_member(node, req->group, req->member, node_admin_done, p);
	case CLIENT_OP_TRANSFER:
		return fl_transfer(node, req->group, req->member, node_admin_done, p);
	case CLIENT_OP_DROP:
		return fl_group_remove(node, req->group, node_admin_done, p);
	case CLIENT_OP_MEMBERS:
		p->info = malloc(sizeof(*p->info));
		if (p->info == NULL)
			return -ENOMEM;
		return fl_group_info(node, req->group, p->info, node_members_done, p);
	default:
		return -EINVAL;
	}
}

static_assert((int)KV_OP_PUT == (int)CLIENT_OP_PUT, "KV commands use the protocol's op codes");
static_assert((int)KV_OP_DELETE == (int)CLIENT_OP_DELETE,
	      "KV commands use the protocol's op codes");
static_assert((int)KV_OP_CAS == (int)CLIENT_OP_CAS, "KV commands use the protocol's op codes");
static_assert(KV_ABSENT == CLIENT_ABSENT, "one marker for an absent key");
static_assert(KV_KEY_SIZE_MAX == CLIENT_KEY_SIZE_MAX, "one key size limit");

/* Encode req as a KV command in the worker's scratch buffer and propose it. */
static int conn_propose(struct conn *c, const struct client_request *req, struct pending *p)
{
	struct worker *w = c->worker;
	struct kv_cmd cmd = {.op = req->op,
			     .key = req->key,
			     .key_size = req->key_size,
			     .expected = req->expected,
			     .expected_size = req->op == CLIENT_OP_CAS ? req->expected_size : 0,
			     .value = req->value,
			     .value_size = req->value_size};
	uint32_t size = kv_cmd_size(&cmd);

	if (size == 0)
		return -EMSGSIZE;
	if (size > w->scratch_size) {
		unsigned char *grown = realloc(w->scratch, size);

		if (grown == NULL)
			return -ENOMEM;
		w->scratch = grown;
		w->scratch_size = size;
	}
	kv_cmd_encode(&cmd, w->scratch);
	return fl_propose(w->server->node, req->group, w->scratch, size, node_write_done, p);
}

/* LOCAL_GET: this node's map as it is, without a read barrier (debugging). */
static void conn_local_get(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	uint64_t hint = server_leader_hint(s, req->group);
	void *value;
	uint32_t value_size;
	int rv = kv_get(&s->kv, req->group, req->key, req->key_size, &value, &value_size);

	if (rv == 0)
		conn_respond(c, CLIENT_STATUS_OK, req->request_id, hint, value, value_size);
	else if (rv == -ENOENT)
		conn_respond(c, CLIENT_STATUS_NOT_FOUND, req->request_id, hint, NULL, 0);
	else
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint, fl_strerror(rv));
	free(value);
}

/* DIGEST: what this node's state machine applied to the group, without a
 * read barrier (debugging: tests compare it across replicas). */
static void conn_digest(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	unsigned char value[CLIENT_DIGEST_SIZE];
	struct kv_digest kd;
	struct client_digest digest;

	kv_digest_get(&s->kv, req->group, &kd);
	digest = (struct client_digest){.applied_count = kd.applied_count,
					.last_applied_index = kd.last_applied_index,
					.digest = kd.digest,
					.order_violations = kd.order_violations,
					.keys_count = kd.keys_count};
	client_digest_encode(&digest, value);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, server_leader_hint(s, req->group), value,
		     sizeof(value));
}

/* CORRUPT: set a key in this node's copy only, so that it diverges on
 * purpose; refused unless the node was started to allow it (tests). */
static void conn_corrupt(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	uint64_t hint = server_leader_hint(s, req->group);
	int rv;

	if (!s->opt.allow_corrupt) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint,
				  "CORRUPT refused: start the node with "
				  "--allow-corrupt-for-tests on");
		return;
	}
	rv = kv_corrupt_local(&s->kv, req->group, req->key, req->key_size, req->value,
			      req->value_size);
	if (rv != 0) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint, fl_strerror(rv));
		return;
	}
	log_print("group %llu: CORRUPT: a key was set in this replica alone, on request",
		  (unsigned long long)req->group);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, hint, NULL, 0);
}

/* CHECK_STATUS: this node's consistency counters, u64 checks | u64 divergences. */
static void conn_check_status(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	unsigned char value[16];
	struct fl_metrics m;

	fl_node_metrics(s->node, &m);
	for (int i = 0; i < 8; i++) {
		value[i] = (unsigned char)(m.checks >> (8 * i));
		value[8 + i] = (unsigned char)(m.divergences >> (8 * i));
	}
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, server_leader_hint(s, req->group), value,
		     sizeof(value));
}

static void conn_handle(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	struct pending *p;
	int rv;

	if (req->op == CLIENT_OP_LOCAL_GET) {
		conn_local_get(c, req);
		return;
	}
	if (req->op == CLIENT_OP_DIGEST) {
		conn_digest(c, req);
		return;
	}
	if (req->op == CLIENT_OP_CORRUPT) {
		conn_corrupt(c, req);
		return;
	}
	if (req->op == CLIENT_OP_CHECK_STATUS) {
		conn_check_status(c, req);
		return;
	}
	p = pending_new(c, req);
	if (p == NULL) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, 0, fl_strerror(-ENOMEM));
		return;
	}
	c->outstanding++;
	if (req->op == CLIENT_OP_GET)
		rv = fl_read(s->node, req->group, node_get_done, p);
	else if (req->op == CLIENT_OP_LEADER)
		rv = fl_read(s->node, req->group, node_leader_done, p);
	else if (req->op == CLIENT_OP_CHECK)
		rv = fl_group_check(s->node, req->group, node_index_done, p);
	else if (req->op == CLIENT_OP_REBUILD)
		rv = fl_group_rebuild(s->node, req->group, node_index_done, p);
	else if (node_op_is_membership(req->op))
		rv = conn_admin(c, req, p);
	else
		rv = conn_propose(c, req, p);
	if (rv == 0)
		return; /* The callback answers. */
	/* Refused at once: the callback will not run. */
	c->outstanding--;
	if (req->op == CLIENT_OP_LEADER && rv == FL_ERR_NOT_LEADER) {
		p->status = CLIENT_STATUS_OK;
		p->leader = server_leader_hint(s, req->group);
	} else if (node_op_is_membership(req->op) && rv == -EAGAIN) {
		p->status = CLIENT_STATUS_RETRY;
		p->leader = server_leader_hint(s, req->group);
		pending_set_text(p, fl_strerror(rv));
	} else {
		pending_set_error(p, rv, 0);
	}
	conn_respond(c, p->status, p->request_id, p->leader, p->value, p->value_size);
	pending_free(p);
}

/* Decode and start every complete request that the bounds allow. */
static void conn_process(struct conn *c)
{
	while (!c->closed && conn_can_start(c) && c->in_end > c->in_start) {
		struct client_request req;
		int n = client_request_decode(c->in + c->in_start, c->in_end - c->in_start, &req);

		if (n == 0)
			break;
		if (n < 0) {
			conn_respond_text(c, CLIENT_STATUS_BAD_REQUEST, req.request_id, 0,
					  "malformed request");
			c->closing = true;
			break;
		}
		c->in_start += (uint32_t)n;
		conn_handle(c, &req);
	}
	if (!c->closed && c->in_start == c->in_end) {
		c->in_start = c->in_end = 0;
		if (c->in_size > CONN_BUFFER_KEEP) {
			free(c->in);
			c->in = NULL;
			c->in_size = 0;
		}
	}
}

/* --- Client threads. --- */

/* accept() failed for lack of descriptors or memory. The listener stays
 * readable, so pause this thread briefly instead of spinning on it, and log
 * at most once a second. */
static void worker_accept_failed(struct worker *w, int err)
{
	static _Atomic uint64_t logged_ms;
	uint64_t now = node_now_ms(), last = atomic_load(&logged_ms);

	(void)w;
	if (now >= last + 1000 && atomic_compare_exchange_strong(&logged_ms, &last, now))
		log_print("accept: %s", strerror(err));
	usleep(10 * 1000);
}

static void worker_accept(struct worker *w)
{
	struct server *s = w->server;

	for (int i = 0; i < WORKER_ACCEPT_MAX; i++) {
		int one = 1;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;
		struct conn *c;

		if (fd < 0) {
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				worker_accept_failed(w, errno);
			return;
		}
		if (atomic_fetch_add(&s->conns_count, 1) >= s->opt.conns_max) {
			atomic_fetch_sub(&s->conns_count, 1);
			close(fd); /* Over --client-conns-max. */
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			goto err_after_count;
		c->worker = w;
		c->fd = fd;
		c->events = EPOLLIN;
		ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			free(c);
			goto err_after_count;
		}
		c->next = w->conns;
		if (w->conns != NULL)
			w->conns->prev = c;
		w->conns = c;
		continue;
	err_after_count:
		log_print("client connection refused: %s", strerror(errno));
		atomic_fetch_sub(&s->conns_count, 1);
		close(fd);
	}
}

/* Take the answers that shard threads handed over and queue them. */
static void worker_drain(struct worker *w)
{
	uint64_t count;
	struct pending *p;

	/* Read the eventfd before taking the list: see worker_complete(). */
	if (read(w->wakefd, &count, sizeof(count)) < 0) {
		/* -EAGAIN: a previous drain already took what woke us. */
	}
	pthread_mutex_lock(&w->done_lock);
	p = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->done_lock);
	while (p != NULL) {
		struct pending *next = p->next;
		struct conn *c = p->conn;

		c->outstanding--;
		conn_respond(c, p->status, p->request_id, p->leader, p->value, p->value_size);
		conn_mark_dirty(c); /* Freed there if closed; resumes reading if throttled. */
		pending_free(p);
		p = next;
	}
}

static void worker_event(struct conn *c, uint32_t events)
{
	int rv;

	if (c->closed)
		return; /* Closed earlier in this loop turn. */
	if ((events & EPOLLIN) != 0) {
		rv = conn_read(c);
		if (rv == -ECONNRESET) {
			c->eof = true; /* Requests before the end still get answers. */
		} else if (rv != 0) {
			conn_close(c);
			return;
		}
		conn_process(c);
	} else if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
		conn_close(c);
		return;
	}
	conn_mark_dirty(c);
}

/* End of a loop turn: send answers, resume throttled connections, free the
 * closed ones that have nothing in flight. */
static void worker_flush_dirty(struct worker *w)
{
	struct conn *c;

	while ((c = w->dirty) != NULL) {
		w->dirty = c->dirty_next;
		/* c->dirty stays set while c is handled, so it is not queued twice. */
		if (!c->closed) {
			conn_process(c);
			if (conn_flush(c) != 0 || conn_is_done(c))
				conn_close(c);
			else
				conn_update_events(c);
		}
		c->dirty = false;
		c->dirty_next = NULL;
		if (c->closed && c->outstanding == 0)
			conn_free(c);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[WORKER_EVENTS_MAX];

	while (!atomic_load(&w->server->stopping)) {
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS_MAX, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_print("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 == WORKER_TAG_WAKE)
				worker_drain(w);
			else if (events[i].data.u64 == WORKER_TAG_LISTEN)
				worker_accept(w);
			else
				worker_event(events[i].data.ptr, events[i].events);
		}
		worker_flush_dirty(w);
	}
	/* Stopping: close every connection; answers still due arrive after
	 * fl_node_stop() and are dropped by server_stop_workers(). */
	for (struct conn *c = w->conns; c != NULL; c = c->next)
		conn_close(c);
	worker_flush_dirty(w);
	return NULL;
}

static int worker_init(struct worker *w, struct server *s)
{
	struct epoll_event ev;

	memset(w, 0, sizeof(*w));
	w->server = s;
	pthread_mutex_init(&w->done_lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->epfd < 0 || w->wakefd < 0)
		return -errno;
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = WORKER_TAG_WAKE};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) != 0)
		return -errno;
	/* Every worker waits on the one listener; EPOLLEXCLUSIVE wakes one of
	 * them per connection instead of all. */
	ev =
	    (struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = WORKER_TAG_LISTEN};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0)
		return -errno;
	return 0;
}

/* After the threads are joined and the node stopped (no callback can run):
 * drop the last answers and free what is left. */
static void worker_deinit(struct worker *w)
{
	struct pending *p = w->done_head;

	while (p != NULL) {
		struct pending *next = p->next;

		p->conn->outstanding--;
		pending_free(p);
		p = next;
	}
	w->done_head = w->done_tail = NULL;
	while (w->conns != NULL) {
		if (w->conns->outstanding != 0)
			log_print("a client connection still waits for %u answers at exit",
				  w->conns->outstanding);
		conn_free(w->conns);
	}
	free(w->scratch);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wakefd >= 0)
		close(w->wakefd);
	pthread_mutex_destroy(&w->done_lock);
}

/* --- Leader monitor. --- */

/* The library tells each group's leader changes (on shard threads): keep them
 * for the hints of answers that have no callback to carry one. */
static void on_leader_changed(void *ctx, uint64_t group, uint64_t leader, uint64_t term)
{
	struct server *s = (struct server *)((char *)ctx - offsetof(struct server, kv));
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

	if (s->opt.groups_count > 0 && leading != s->monitor_leading) {
		log_print("this node leads %u of %u groups", leading, s->opt.groups_count);
		s->monitor_leading = leading;
	}
	fl_node_metrics(s->node, &m);
	if (m.shards_no_space != s->monitor_no_space) {
		if (m.shards_no_space > 0)
			log_print("disk full: the WAL of %u of %u shards is out of space; their "
				  "writes are refused until space returns (%llu refused so far)",
				  m.shards_no_space, m.shards_count,
				  (unsigned long long)m.writes_refused_no_space);
		else
			log_print("disk: every shard's WAL has space again; writes accepted");
		s->monitor_no_space = m.shards_no_space;
	}
	if (m.divergences != s->monitor_divergences) {
		log_print(
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

		uint64_t started_ms = node_now_ms(), wait_ms;

		pthread_mutex_unlock(&s->monitor_lock);
		monitor_poll(s);
		wait_ms = 4 * (node_now_ms() - started_ms);
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
	uint64_t deadline = node_now_ms() + NODE_CREATE_WAIT_MS;
	uint32_t started = 0, existed = 0;
	int rv = 0;

	for (uint64_t g = 1; g <= s->opt.groups_count; g++) {
		rv = fl_group_create(s->node, g, s->opt.members, s->opt.members_count,
				     node_create_done, &wait);
		while (rv == -EAGAIN && node_now_ms() < deadline) {
			usleep(1000); /* The shard's queue is full: let it drain. */
			rv = fl_group_create(s->node, g, s->opt.members, s->opt.members_count,
					     node_create_done, &wait);
		}
		if (rv == FL_ERR_GROUP_EXISTS) {
			existed++;
			continue;
		}
		if (rv != 0) {
			log_print("creating group %llu: %s", (unsigned long long)g,
				  fl_strerror(rv));
			return rv;
		}
		started++;
	}
	pthread_mutex_lock(&wait.lock);
	while (wait.done < started && node_now_ms() < deadline) {
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
		log_print("%u group creations did not finish in %d ms", started - wait.done,
			  NODE_CREATE_WAIT_MS);
		rv = -ETIMEDOUT;
	} else if (wait.failed > 0) {
		log_print("%u group creations failed, the last with: %s", wait.failed,
			  fl_strerror(wait.error));
		rv = wait.error;
	}
	existed += wait.existed;
	pthread_mutex_unlock(&wait.lock);
	if (rv == 0)
		log_print("groups 1..%u: %u created, %u found in the WAL", s->opt.groups_count,
			  s->opt.groups_count - existed, existed);
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

		log_print("--client-conns-max %u lowered to %u: at most %llu open files",
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

static int server_start_node(struct server *s, struct fl_peer *peers)
{
	struct fl_node_config config;

	fl_node_config_default(&config, s->opt.id);
	config.cluster_id = s->opt.cluster_id;
	config.data_dir = s->opt.data_dir;
	config.listen_addr = s->opt.listen_addr;
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
	config.snapshot_bytes = s->opt.snapshot_bytes;
	config.snapshot_compress = s->opt.snapshot_compress;
	config.sm = (struct fl_sm_ops){.apply = kv_apply,
				       .leader_changed = on_leader_changed,
				       .save = kv_save,
				       .restore = kv_restore,
				       .digest = kv_state_digest,
				       .ctx = &s->kv};
	if (s->opt.snapshot_freeze) {
		config.sm.freeze = kv_freeze;
		config.sm.save_view = kv_save_view;
		config.sm.release = kv_release;
	}
	return fl_node_start(&config, &s->node);
}

static void node_options_default(struct node_options *opt)
{
	struct fl_node_config config;

	fl_node_config_default(&config, 1);
	memset(opt, 0, sizeof(*opt));
	opt->cluster_id = 1;
	strcpy(opt->listen_addr, "127.0.0.1:0");
	strcpy(opt->client_addr, "127.0.0.1:0");
	opt->shards_count = config.shards_count;
	opt->election_ms = config.election_timeout_ms;
	opt->heartbeat_ms = config.heartbeat_interval_ms;
	opt->tick_ms = config.tick_ms;
	opt->entry_size_max = config.entry_size_max;
	opt->inbox_max = config.inbox_max;
	opt->snapshot_entries = config.snapshot_entries;
	opt->check_entries = config.check_entries;
	opt->snapshot_bytes = (uint32_t)config.snapshot_bytes;
	opt->snapshot_compress = config.snapshot_compress;
	opt->snapshot_freeze = true;
	opt->quiesce = config.quiesce;
	opt->lease_read = config.lease_read;
	opt->client_threads = 2;
	opt->conns_max = 1024;
	opt->inflight_max = 1024;
	opt->leader_poll_ms = 200;
}

static int server_start_threads(struct server *s)
{
	int rv;

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
	free(s->leaders);
	kv_deinit(&s->kv);
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
				       .monitor_cond = PTHREAD_COND_INITIALIZER};
	static struct fl_peer peers[NODE_PEERS_MAX];
	struct server *s = &server;
	char peer_host[NODE_ADDR_SIZE_MAX], client_host[NODE_ADDR_SIZE_MAX];
	sigset_t signals;
	int rv, signal_number = 0;

	node_options_default(&s->opt);
	if (node_parse_args(&s->opt, argc, argv) != 0 || node_check_options(&s->opt) != 0) {
		node_usage(stderr);
		return EXIT_USAGE;
	}
	node_log_id = s->opt.id;
	/* Block the stop signals in every thread (they inherit the mask); the
	 * main thread takes them with sigwait(). */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (mkdir(s->opt.data_dir, 0755) != 0 && errno != EEXIST) {
		log_print("%s: %s", s->opt.data_dir, strerror(errno));
		return EXIT_FAILURE;
	}
	if (kv_init(&s->kv) != 0)
		return EXIT_FAILURE;
	server_check_fd_limit(s);
	/* Before the node starts: recovered groups report their leaders at once. */
	if (s->opt.groups_count > 0) {
		s->leaders = calloc(s->opt.groups_count, sizeof(*s->leaders));
		if (s->leaders == NULL)
			return EXIT_FAILURE;
	}
	rv = server_listen(s);
	if (rv != 0) {
		log_print("client listener %s: %s", s->opt.client_addr, strerror(-rv));
		return node_exit_status(rv);
	}
	rv = server_start_node(s, peers);
	if (rv != 0) {
		log_print("starting the node: %s", fl_strerror(rv));
		return node_exit_status(rv);
	}
	node_addr_host(s->opt.listen_addr, peer_host, sizeof(peer_host));
	node_addr_host(s->opt.client_addr, client_host, sizeof(client_host));
	log_print("listening: peer %s:%u client %s:%u (flotilla %s)", peer_host,
		  fl_node_port(s->node), client_host, s->client_port, fl_version());
	rv = s->opt.join ? 0 : server_create_groups(s);
	if (rv == 0)
		rv = server_start_threads(s);
	if (rv != 0) {
		log_print("start failed: %s", fl_strerror(rv));
		fl_node_stop(s->node);
		return EXIT_FAILURE;
	}
	printf("flotilla-node %llu ready: peer %s:%u client %s:%u\n", (unsigned long long)s->opt.id,
	       peer_host, fl_node_port(s->node), client_host, s->client_port);
	fflush(stdout);
	log_print("ready");

	while (sigwait(&signals, &signal_number) != 0) {
	}
	log_print("stopping on %s", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
	server_stop(s);
	log_print("exiting");
	return 0;
}
