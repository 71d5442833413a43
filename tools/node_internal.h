/* What flotilla-node's modules share: the server, its client threads
 * (workers), their connections and the requests in flight. Only the
 * tools/node_*.c files and tools/flotilla-node.c include this.
 *
 *   flotilla-node.c  main, start and stop, the leader monitor, the log
 *   node_options.c   flags and the --config file
 *   node_conn.c      client threads: accept, read, write, limits, wake-ups
 *   node_source.c    client connections counted per source address
 *   node_tls.c       TLS on the client listener: context, handshake, reads, writes
 *   node_budget.c    the memory budget of client buffers (--client-buffer-budget-mb)
 *   node_request.c   decoding requests, the client ops, their callbacks
 *   node_store.c     the stores behind the node, by name (node_store.h)
 *   node_store_memory.c  the in-memory store (tools/kv.c)
 *   node_metrics.c   GET /metrics over HTTP (--metrics; tools/metrics_text.c) */
#ifndef TOOLS_NODE_INTERNAL_H
#define TOOLS_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "base/log.h"
#include "flotilla.h"
#include "tools/client.h"
#include "tools/node_options.h"
#include "tools/node_store.h"

#define WORKER_EVENTS_MAX 256
#define WORKER_ACCEPT_MAX 64
#define WORKER_TAG_WAKE   0 /* epoll_data.u64 of the eventfd; */
#define WORKER_TAG_LISTEN 1 /* of the listener; any other value is a struct conn *. */
#define CONN_READ_SIZE    (256u << 10)
#define CONN_READS_MAX    4 /* recv() calls per readiness event: fairness. */
#define CONN_OUT_MAX      (64u << 20)
#define CONN_BUFFER_KEEP  (1u << 20)  /* Larger idle buffers are freed. */
#define WORKER_TICK_MS    100         /* How often a client thread checks its deadlines. */
#define CONN_IN_MIN       (16u << 10) /* An input buffer's first size; it doubles as bytes come. */
/* Past the client buffer budget (node_budget.c), answers with values up to
 * BUDGET_ANSWER_SMALL bytes are still kept (BUSY costs as much), and a
 * connection holding more than BUDGET_HOLD_MAX bytes of unsent answers is
 * not read. */
#define BUDGET_ANSWER_SMALL 1024
#define BUDGET_HOLD_MAX     (64u << 10)

/* The client limits whose hits are counted and logged (at most one line a
 * second per kind; the next line says how many were not logged). */
enum conn_limit {
	CONN_LIMIT_CONNS,
	CONN_LIMIT_PER_SOURCE,
	CONN_LIMIT_IDLE,
	CONN_LIMIT_REQUEST,
	CONN_LIMIT_HANDSHAKE, /* TLS handshakes not over within --client-handshake-ms. */
	CONN_LIMIT_TLS,       /* TLS handshakes failed, plaintext clients of a TLS node. */
	CONN_LIMIT_BUDGET,
	CONN_LIMIT_COUNT
};

struct server;
struct worker;
struct MHD_Daemon;

/* A connection's TLS (node_tls.c). */
enum conn_tls {
	CONN_TLS_OFF,       /* Plaintext: the node has no --tls-* flags. */
	CONN_TLS_SNIFF,     /* Waiting for the first byte: TLS or plaintext? */
	CONN_TLS_HANDSHAKE, /* SSL_do_handshake() under way. */
	CONN_TLS_ON,        /* Requests and answers go through c->tls. */
};

/* One client connection. Owned by its worker's thread; callbacks only read
 * the immutable worker pointer, and only while the request they answer keeps
 * the connection alive (outstanding > 0). */
struct conn {
	struct worker *worker;
	int fd;
	void *tls;            /* SSL *, or NULL (plaintext). */
	uint8_t tls_state;    /* enum conn_tls. */
	uint8_t role;         /* CLIENT_ACCESS_*: from the certificate; ADMIN in plaintext. */
	uint32_t tls_events;  /* The epoll interest of the handshake. */
	uint32_t outstanding; /* Requests whose answer has not come back. */
	uint32_t events;      /* The epoll interest currently registered. */
	bool closing;         /* Send what is queued, then close (after BAD_REQUEST). */
	bool eof;             /* The client shut its side: answer what came, then close. */
	bool closed;
	bool dirty;                   /* On the worker's dirty list. */
	bool budget_held;             /* Not read until the client buffer budget has room. */
	uint8_t source[16];           /* The client's address (node_sources_key). */
	uint32_t requests_seen;       /* Complete requests taken from the input; wraps. */
	uint32_t requests_seen_ms_at; /* requests_seen when active_ms was last set. */
	uint64_t active_ms;           /* Accepted, or a complete request last taken. */
	uint64_t partial_ms;          /* When an incomplete request began waiting; 0: none. */
	uint64_t written_ms;          /* Unsent answers last began waiting or went out. */
	unsigned char *in;
	uint32_t in_size, in_start, in_end;
	unsigned char *out;
	uint32_t out_size, out_start, out_end;
	uint64_t budgeted; /* Bytes of the budget counted for in and out (their sizes). */
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
	uint32_t budgeted;                 /* Bytes of value counted in the budget. */
	struct fl_group_info *info;        /* MEMBERS: filled by the library; malloc()ed. */
	struct fl_stale_read *stale;       /* STALE_GET: bounds in, figures out; malloc()ed. */
	struct fl_recover_report *recover; /* RECOVER: filled by the library; malloc()ed. */
	uint32_t key_size;
	unsigned char key[]; /* Kept for GET, STALE_GET and CAS, which read the map in the
			      * callback. */
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
	uint64_t now_ms;   /* The clock at the start of this loop turn. */
	uint64_t swept_ms; /* When deadlines were last checked. */
};

/* Open client connections per source address (node_source.c). */
struct node_source_slot {
	uint8_t addr[16];
	uint32_t count; /* Open connections from addr; 0: the slot is empty. */
};

struct node_sources {
	pthread_mutex_t lock; /* Any client thread. */
	struct node_source_slot *slots;
	uint32_t cap;       /* A power of two, more than 2 x conns_max. */
	uint32_t used;      /* Slots holding an address. */
	uint32_t conns_max; /* --client-conns-max when the table was made. */
};

struct server {
	struct node_options opt;
	struct fl_node *node;
	struct node_store *store; /* Opened by main(), closed after the node stops. */
	int listen_fd;
	uint16_t client_port;
	char self_client_addr[116]; /* "host:port" of the client listener, told to peers. */
	char self_peer_addr[128];   /* "host:port" of the peer listener (PEERS). */
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
	uint32_t monitor_leading;     /* Groups led when last logged; the monitor's. */
	uint64_t monitor_leading_ms;  /* When it was logged. */
	uint64_t monitor_divergences; /* Likewise, fl_metrics.divergences. */
	uint32_t monitor_no_space;    /* Likewise, fl_metrics.shards_no_space. */
	struct MHD_Daemon *metrics;   /* --metrics: the HTTP server; NULL when off. */
	uint16_t metrics_port;

	_Atomic uint64_t conns_refused;            /* Over --client-conns-max. */
	_Atomic uint64_t conns_refused_per_source; /* Over --client-conns-per-source-max. */
	struct node_sources sources;
	_Atomic uint64_t timeouts_idle;      /* Closed after --client-idle-s. */
	_Atomic uint64_t timeouts_request;   /* Closed after --client-request-ms. */
	_Atomic uint64_t timeouts_handshake; /* TLS: closed after --client-handshake-ms. */
	_Atomic uint64_t tls_refused;        /* TLS: handshakes failed, plaintext clients. */
	pthread_mutex_t tls_lock;            /* Guards tls_ctx: reload against accepts. */
	void *tls_ctx;                       /* SSL_CTX *; NULL: plaintext. */
	uint64_t budget_max;                 /* --client-buffer-budget-mb in bytes. */
	_Atomic uint64_t budget_used;   /* Bytes of client buffers and answers (node_budget.c). */
	_Atomic uint64_t budget_hits;   /* Answers refused BUSY, connections held unread. */
	pthread_mutex_t limit_log_lock; /* Guards limit_log: any client thread. */
	struct server_limit_log {
		uint64_t logged_ms;  /* When a line of this kind was last written. */
		uint64_t suppressed; /* Events since then that wrote none. */
	} limit_log[CONN_LIMIT_COUNT];
};

/* flotilla-node.c */

/* One line to stderr with a UTC timestamp and this node's id, written in one
 * call so that lines of different threads do not interleave. Any thread. */
/* Log a line at level (enum log_level) as the node's logger would. */
__attribute__((format(printf, 2, 3))) void server_log(unsigned level, const char *fmt, ...);
uint64_t server_now_ms(void);

/* The last leader of group this node heard of (0: none), for answers that
 * no library callback carries a hint for. Any thread. */
uint64_t server_leader_hint(struct server *s, uint64_t group);

/* node_metrics.c: serve GET /metrics on --metrics (after the node started;
 * sets metrics_port). Returns 0 or a negative errno. Stop it before the node. */
int node_metrics_start(struct server *s);
void node_metrics_stop(struct server *s);

/* node_conn.c: client threads. Each serves its connections on its own epoll
 * set; shard threads hand answers back with worker_complete(). */
int worker_init(struct worker *w, struct server *s);
void *worker_main(void *arg);
void worker_deinit(struct worker *w);

/* Hand p to its connection's thread, which answers it. Shard threads. */
void worker_complete(struct pending *p);

/* Queue an answer on c (dropped when c is closed). Out of memory closes c. */
void conn_respond(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
		  const void *value, uint32_t value_size);
void conn_respond_text(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
		       const char *text);

/* Whether the bounds allow starting one more request on c. */
bool conn_can_start(const struct conn *c);

/* Log a hit of limit unless one of its kind was logged less than a second
 * ago (then count it; the next line says how many). Any client thread. */
void conn_limit_log(struct server *s, enum conn_limit limit, uint64_t now_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Queue an answer to op (CLIENT_OP_*) on c; a read's large value that does
 * not fit in the budget is answered BUSY instead (node_budget.c). */
void conn_respond_op(struct conn *c, uint32_t op, uint32_t status, uint64_t request_id,
		     uint64_t leader, const void *value, uint32_t value_size);

/* node_budget.c: the client buffer budget (its comment says what counts).
 * Whether every byte of it is in use. Any thread. */
bool node_budget_is_spent(const struct server *s);

/* Count p's value the moment its answer is produced; past the budget, a
 * read's large value is dropped and p answers BUSY. Shard threads. */
void node_budget_answer(struct pending *p);

/* p's answer was queued on its connection (or dropped): give its count back. */
void node_budget_answer_done(struct pending *p);

/* Whether an answer to op with this status and value may be refused BUSY. */
bool node_budget_may_refuse(uint32_t op, uint32_t status, uint32_t value_size);

/* BUSY's text. */
void node_budget_busy_text(const struct server *s, char *text, size_t size);

/* The capacity client_reserve() would give the buffer for need more bytes. */
uint64_t node_budget_capacity(uint32_t capacity, uint32_t start, uint32_t end, uint64_t need,
			      uint32_t capacity_min);

/* Before c's input (or output) buffer grows to capacity_new: take the
 * growth from the budget. Past it, input is refused (c is held unread) and
 * so is output when may_refuse; other output is counted anyway. Returns
 * whether the buffer may grow. Client thread of c. */
bool node_budget_grow(struct conn *c, bool input, uint64_t capacity_new, bool may_refuse);

/* After c's buffers changed size: count the difference. */
void node_budget_sync(struct conn *c);

/* Whether c may be read: not while the budget is spent and c holds unsent
 * answers past BUDGET_HOLD_MAX (or could not grow its input). */
bool node_budget_may_read(struct conn *c);

/* Once the budget has room again, mark every held connection (mark puts it
 * on the dirty list, which resumes reading). Each WORKER_TICK_MS. */
void node_budget_sweep(struct worker *w, void (*mark)(struct conn *c));

/* node_source.c: the table of sources, sized for conns_max connections
 * (--client-conns-max). Returns 0 or -ENOMEM. */
int node_sources_init(struct node_sources *t, uint32_t conns_max);
void node_sources_deinit(struct node_sources *t);

/* addr (IPv4 or IPv6) as the table's 16-byte key. */
void node_sources_key(const struct sockaddr_storage *addr, uint8_t key[16]);

/* Count one more connection from key unless max are open from it already;
 * *open is how many were. The caller holds one of the conns_max slots.
 * Any client thread. */
bool node_sources_take(struct node_sources *t, const uint8_t key[16], uint32_t max, uint32_t *open);

/* The connection from key closed: once for each successful take. */
void node_sources_give(struct node_sources *t, const uint8_t key[16]);

/* node_tls.c: TLS on the client listener. Init: 0, or -EINVAL after
 * logging why (bad files). Reload (SIGHUP, main thread): 0, or -EINVAL
 * after logging why, the old certificates kept. */
int node_tls_init(struct server *s);
int node_tls_reload(struct server *s);
void node_tls_deinit(struct server *s);
bool node_tls_enabled(const struct server *s);

/* Give c, just accepted, its TLS state (the handshake to come). Returns 0
 * or -ENOMEM. */
int node_tls_accept(struct conn *c);

/* Step c's handshake. Returns NODE_TLS_DONE (c->role set), NODE_TLS_WAIT
 * (c->tls_events says for what), NODE_TLS_FAILED or NODE_TLS_PLAINTEXT (a
 * plaintext client) with why filled in. Client thread of c. */
enum { NODE_TLS_DONE = 1, NODE_TLS_WAIT = 0, NODE_TLS_FAILED = -1, NODE_TLS_PLAINTEXT = -2 };
int node_tls_handshake(struct conn *c, char *why, size_t why_size);

/* recv() and send() through c's TLS, with their contracts. */
ssize_t node_tls_recv(struct conn *c, void *buf, size_t size);
ssize_t node_tls_send(struct conn *c, const void *buf, size_t size);

/* Whether c's TLS layer holds decrypted bytes not yet read (epoll cannot
 * see them). */
bool node_tls_has_pending(const struct conn *c);
void node_tls_close(struct conn *c);

/* node_request.c: the client ops. */

/* Decode and start every complete request of c's input that the bounds
 * allow. Client thread of c. */
void request_process(struct conn *c);

/* node_peers.c: PEERS, SET_PEER, REMOVE_PEER (answered at once). */
void request_peers(struct conn *c, const struct client_request *req);

/* Free a request whose answer went out. */
void pending_free(struct pending *p);

#endif /* TOOLS_NODE_INTERNAL_H */
