/* flotilla-load: drives a running cluster of flotilla-node processes through
 * the client protocol (tools/client.h) and reports throughput, latency and
 * every error it meets.
 *
 * Threads: --threads load threads, each with its own connection to every
 * node, its own epoll set, its own share of the requests in flight and its
 * own histograms; the main thread discovers the leaders, prints a progress
 * line every second and the final report. The leader of each group is a
 * table shared by all threads (relaxed atomics: a stale entry only costs a
 * redirect).
 *
 * Connections are tools/client.h's struct client (codec, buffers and a
 * non-blocking socket) under this driver's own epoll loop. Its router is not
 * used: it runs a batch of calls to completion, which would pace an open
 * loop by its slowest request and fold redirects, timeouts and lost
 * connections into one outcome per call, where this driver counts each.
 *
 * The happy path of a request: pick a key (uniform or Zipfian, scattered
 * over the key space; key k belongs to group 1 + k % groups), pick GET or PUT
 * by --read-ratio, encode it into the output buffer of the connection to the
 * group's leader, flush all connections once per loop turn, match the answer
 * to its slot by request_id (slot in the low LOAD_SLOT_BITS bits, a sequence
 * number above, so a late answer to a timed-out request matches nothing) and
 * record its latency.
 *
 * Closed loop: each slot is one virtual client that sends its next request
 * as soon as the previous one ends. Open loop: requests are due at fixed
 * intervals from the start, whatever happens to earlier ones, and latency
 * counts from the time a request was due, not from when it could be sent:
 * when the cluster stalls, the stall shows in the latency of every request
 * that should have gone out meanwhile (no coordinated omission). Requests
 * still due when the run ends are reported as unsent.
 *
 * Failure modes, each counted and shown, never retried silently:
 * - NOT_LEADER: re-sent to the hinted leader (a redirect); without a useful
 *   hint, to the next node after a short backoff; after --redirects-max
 *   redirects the request fails as not_leader.
 * - No answer within --timeout-ms of the first send: a timeout; a later
 *   answer is counted as late and otherwise ignored.
 * - Connection loss: its requests in flight fail as disconnected, and the
 *   connection is retried with exponential backoff (connect failures are
 *   counted too).
 * - ERROR and BAD_REQUEST answers: server_error and bad_request; NO_SPACE
 *   (a leader whose disk is full refused the write): no_space.
 *
 * Measurement: a request counts in the final report when it was due after
 * the warm-up and before the end; requests in flight at the end are waited
 * for (at most --timeout-ms). Bytes are payload bytes: values written by PUT
 * and values read by GET.
 *
 * Checking (--check): every request is recorded with a time read before it
 * was first sent and one read after its answer was received, so each
 * interval holds the moment the node acted on it; every PUT
 * writes a value no other PUT writes (16 bytes: this run's nonce, then
 * thread and sequence number), so a GET names the write it saw. A request
 * without an answer (timeout, lost connection, error, redirects spent) has an
 * unknown outcome. After the run, tools/lincheck.h checks the history key by
 * key against a register per key and prints each violation with the
 * operations around it. --check-history saves the history, one line per
 * operation, and --check-file checks a saved one without a cluster. With
 * --check off, all it costs the request path is a few tests of flags.
 *
 * Exit status: 0 when the run completed (errors or not), 1 when it could not
 * run or write its output, 2 on bad usage, 3 when the history is not
 * linearizable, 4 when the checker could not decide for some key (within its
 * memory bound) and found no violation. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "engine/le.h"
#include "tools/client.h"
#include "tools/lincheck.h"
#include "tools/load_hist.h"
#include "tools/load_zipf.h"

#define LOAD_NODES_MAX         CLIENT_NODES_MAX
#define LOAD_THREADS_MAX       64
#define LOAD_SLOT_BITS         20
#define LOAD_SLOTS_MAX         (1u << LOAD_SLOT_BITS) /* Per thread. */
#define LOAD_KEY_SIZE          16                     /* "k" and 15 hex digits. */
#define LOAD_VALUE_SIZE_MAX    (1u << 20)
#define LOAD_GROUPS_MAX        (1u << 24)
#define LOAD_EVENTS_MAX        64
#define LOAD_READS_PER_EVENT   8 /* recv() calls per readiness event: fairness. */
#define LOAD_CONNECT_MS        200
#define LOAD_BACKOFF_MS_MIN    20
#define LOAD_BACKOFF_MS_MAX    1000
#define LOAD_REDIRECT_MS_MAX   100              /* Longest pause before retrying without a hint. */
#define LOAD_SCAN_NS           (2 * NS_PER_MS)  /* Timeouts and retries. */
#define LOAD_PUBLISH_NS        (20 * NS_PER_MS) /* Thread counts to the reporter. */
#define LOAD_DISCOVER_BATCH    4096
#define LOAD_DISCOVER_PAUSE_MS 50
#define NS_PER_MS              UINT64_C(1000000)
#define NS_PER_S               UINT64_C(1000000000)

#define LOAD_CHECK_VALUE_SIZE 16 /* Nonce and write id at the start of each value. */
#define LOAD_CHECK_PRINT_MAX  10 /* Violations printed in full. */

enum { EXIT_RUN = 1, EXIT_USAGE = 2, EXIT_NOT_LINEARIZABLE = 3, EXIT_UNDECIDED = 4 };

/* Counters, each kept per thread for the last interval and for the
 * measured window. The error kinds are LOAD_STAT_ERRORS_FIRST..LAST. */
enum load_stat {
	LOAD_STAT_OPS, /* Answered OK or NOT_FOUND. */
	LOAD_STAT_READS,
	LOAD_STAT_WRITES,
	LOAD_STAT_NOT_FOUND,
	LOAD_STAT_BYTES,
	LOAD_STAT_TIMEOUTS,
	LOAD_STAT_NOT_LEADER, /* Redirect budget spent. */
	LOAD_STAT_DISCONNECTED,
	LOAD_STAT_SERVER_ERRORS,
	LOAD_STAT_BAD_REQUESTS,
	LOAD_STAT_NO_SPACE, /* Writes refused: the leader's disk is full. */
	LOAD_STAT_REDIRECTS,
	LOAD_STAT_LEADER_CHANGES,
	LOAD_STAT_CONNS_LOST,
	LOAD_STAT_CONNECTS_FAILED,
	LOAD_STAT_LATE, /* Answers to requests that had timed out already. */
	LOAD_STAT_COUNT,
	LOAD_STAT_ERRORS_FIRST = LOAD_STAT_TIMEOUTS,
	LOAD_STAT_ERRORS_LAST = LOAD_STAT_NO_SPACE,
};

/* Names in the JSON output and the report. */
static const char *const load_stat_names[LOAD_STAT_COUNT] = {
    "ops",          "reads",      "writes",         "not_found",        "bytes",
    "timeout",      "not_leader", "disconnected",   "server_error",     "bad_request",
    "no_space",     "redirects",  "leader_changes", "connections_lost", "connect_failures",
    "late_answers",
};

struct load_counts {
	uint64_t v[LOAD_STAT_COUNT];
};

struct load_node {
	uint64_t id;
	char addr[CLIENT_ADDR_SIZE_MAX];
};

struct load_options {
	struct load_node nodes[LOAD_NODES_MAX];
	uint32_t nodes_count;
	bool open_loop;
	uint32_t concurrency; /* Closed loop. */
	double rate;          /* Open loop, requests per second. */
	double duration_s;
	double warmup_s;
	uint64_t groups;
	uint64_t keys;
	double zipf_theta; /* 0: uniform. */
	double read_ratio;
	uint32_t value_size;
	uint32_t timeout_ms;
	uint32_t redirects_max;
	uint32_t threads;
	uint32_t inflight_max; /* Open loop, over all threads. */
	uint32_t leader_wait_ms;
	uint64_t seed;
	const char *json_path;
	const char *plot_path;
	bool check;
	bool check_initial_unknown; /* The keys may hold values from before. */
	const char *check_history_path;
	const char *check_file_path; /* Check this saved history; no load. */
};

enum load_req_state { LOAD_REQ_FREE, LOAD_REQ_SENT, LOAD_REQ_WAITING };

/* One request slot. In WAITING, the request waits for retry_at_ns before it
 * is (re)sent to node_slot. */
struct load_req {
	uint64_t id; /* Of the copy last sent; 0 while none is out. */
	uint64_t due_ns;
	uint64_t deadline_ns;
	uint64_t retry_at_ns;
	uint64_t key;
	uint32_t op;
	uint32_t redirects;
	uint32_t node_slot;
	uint32_t next_free;
	uint8_t state;
	bool measured;
	uint64_t value_id;  /* --check: what this PUT writes. */
	uint64_t hist_slot; /* --check: its operation in the thread's history. */
};

struct load_conn {
	struct client client; /* fd -1 while down. */
	uint32_t events;      /* Registered epoll interest. */
	uint32_t failures;    /* Consecutive failed connects. */
	uint64_t retry_at_ns; /* Next connect attempt while down. */
	bool dirty;           /* Output queued since the last flush. */
};

struct load_run;

struct load_thread {
	struct load_run *run;
	uint32_t index;
	pthread_t pthread;
	int epfd;
	struct load_conn conns[LOAD_NODES_MAX];
	struct load_req *reqs;
	uint32_t reqs_count;
	uint32_t free_head; /* UINT32_MAX: none. */
	uint32_t inflight;  /* Slots not free. */
	uint64_t seq;
	uint64_t rng[4];
	uint32_t next_node; /* Round robin when the leader is unknown. */
	unsigned char *value;
	uint64_t due_seq;     /* Open loop: this thread's requests started so far. */
	uint64_t next_due_ns; /* Open loop: when request due_seq is due. */
	uint64_t unsent;      /* Open loop: due before the end, never sent. */
	struct load_counts interval, measured;
	struct load_hist *interval_hist, *measured_hist;
	/* The mailbox: what the thread published and the reporter has not taken. */
	pthread_mutex_t lock;
	struct load_counts published;
	struct load_hist *published_hist;
	/* --check: the operations of this thread's requests. */
	struct lincheck_op *history;
	uint64_t history_count, history_size;
	uint64_t writes_started;
	bool history_failed; /* Out of memory: the history is incomplete. */
};

/* One progress line's numbers, kept for JSON and the plot. */
struct load_sample {
	double t_s; /* End of the interval, from the start. */
	double ops_per_s, mb_per_s;
	uint64_t p50_ns, p99_ns, p999_ns;
	uint64_t errors, redirects, leader_changes;
	bool warmup;
};

/* The verdict of --check or --check-file. */
struct load_check {
	FILE *out;
	bool done;
	uint64_t printed; /* Violations printed. */
	struct lincheck_result result;
	double seconds;
};

struct load_run {
	struct load_options opt;
	struct load_zipf zipf;
	struct load_zipf_scatter scatter;
	_Atomic uint32_t *leaders; /* [group - 1]: node slot + 1, 0 unknown. */
	uint64_t start_ns, measure_ns;
	_Atomic uint64_t end_ns; /* Moves earlier on SIGINT. */
	struct load_thread *threads;
	struct load_sample *samples;
	uint32_t samples_count, samples_max;
	FILE *out;      /* Human-readable output. */
	uint64_t nonce; /* --check: starts every value this run writes. */
	struct load_check check;
	bool stale_reads; /* FLOTILLA_LOAD_CHECK_STALE_READS=1, see load_main(). */
};

static volatile sig_atomic_t load_interrupted;

static uint64_t load_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t load_end_ns(struct load_run *run)
{
	return atomic_load_explicit(&run->end_ns, memory_order_relaxed);
}

/* --- Random numbers: xoshiro256**, seeded through splitmix64. --- */

static uint64_t load_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t load_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t load_rng_next(uint64_t s[4])
{
	uint64_t result = load_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = load_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
static double load_rng_double(uint64_t s[4])
{
	return (double)(load_rng_next(s) >> 11) * 0x1.0p-53;
}

/* --- Counters and the shared leader table. --- */

static void load_tally(struct load_thread *t, bool measured, enum load_stat stat, uint64_t n)
{
	t->interval.v[stat] += n;
	if (measured)
		t->measured.v[stat] += n;
}

static void load_counts_add(struct load_counts *dst, const struct load_counts *src)
{
	for (int i = 0; i < LOAD_STAT_COUNT; i++)
		dst->v[i] += src->v[i];
}

static uint64_t load_counts_errors(const struct load_counts *c)
{
	uint64_t errors = 0;

	for (int i = LOAD_STAT_ERRORS_FIRST; i <= LOAD_STAT_ERRORS_LAST; i++)
		errors += c->v[i];
	return errors;
}

static bool load_is_measuring(struct load_run *run, uint64_t now)
{
	return now >= run->measure_ns && now < load_end_ns(run);
}

static uint64_t load_group_of(const struct load_run *run, uint64_t key)
{
	return 1 + key % run->opt.groups;
}

/* Node slot of the leader of group as last heard, or -1. */
static int load_leader(const struct load_run *run, uint64_t group)
{
	uint32_t v = atomic_load_explicit(&run->leaders[group - 1], memory_order_relaxed);

	return v == 0 ? -1 : (int)v - 1;
}

/* Remember node_slot as group's leader. Returns whether that replaced
 * another known leader: a leader change as seen from here. */
static bool load_learn_leader(struct load_run *run, uint64_t group, uint32_t node_slot)
{
	_Atomic uint32_t *entry = &run->leaders[group - 1];
	uint32_t old = atomic_load_explicit(entry, memory_order_relaxed);

	if (old == node_slot + 1)
		return false;
	/* Of several threads that learn the same change, one wins and counts it. */
	if (!atomic_compare_exchange_strong_explicit(entry, &old, node_slot + 1,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	return old != 0;
}

static int load_node_slot(const struct load_run *run, uint64_t node_id)
{
	for (uint32_t i = 0; i < run->opt.nodes_count; i++)
		if (run->opt.nodes[i].id == node_id)
			return (int)i;
	return -1;
}

/* --- The history (--check). --- */

/* The identifier of a value a GET returned: the write id in it when this run
 * wrote it, else a hash of its bytes marked foreign (a value from before this
 * run, or one nobody wrote). */
static uint64_t load_value_id(const struct load_run *run, const void *value, uint32_t size)
{
	const unsigned char *p = value;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a. */

	if (size >= LOAD_CHECK_VALUE_SIZE && le_get64(p) == run->nonce) {
		uint64_t id = le_get64(p + 8);

		if (id != LINCHECK_ABSENT && (id & LINCHECK_FOREIGN) == 0)
			return id;
	}
	for (uint32_t i = 0; i < size; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h |= LINCHECK_FOREIGN;
	return h >= UINT64_MAX - 1 ? h - 2 : h; /* The top two are no values. */
}

/* Record the call of the request in slot, made no later than now. */
static void load_history_call(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];

	req->hist_slot = UINT64_MAX;
	if (t->history_count == t->history_size) {
		uint64_t size = t->history_size == 0 ? 65536 : t->history_size * 2;
		struct lincheck_op *more = realloc(t->history, size * sizeof(*more));

		if (more == NULL) {
			t->history_failed = true;
			return;
		}
		t->history = more;
		t->history_size = size;
	}
	req->hist_slot = t->history_count++;
	t->history[req->hist_slot] = (struct lincheck_op){
	    .key = req->key,
	    .value = req->op == CLIENT_OP_PUT ? req->value_id : LINCHECK_ABSENT,
	    .call_ns = now,
	    .return_ns = LINCHECK_PENDING,
	    .kind = req->op == CLIENT_OP_PUT ? LINCHECK_WRITE : LINCHECK_READ,
	    .client = t->index << LOAD_SLOT_BITS | slot,
	};
}

/* Record the answer (OK or NOT_FOUND) to req. Its time is read now, after
 * the bytes were received: a time taken before the read could precede the
 * node's answer. Requests never answered stay of unknown outcome. */
static void load_history_return(struct load_thread *t, const struct load_req *req,
				const struct client_response *resp)
{
	struct lincheck_op *op;

	if (req->hist_slot == UINT64_MAX)
		return;
	op = &t->history[req->hist_slot];
	op->return_ns = load_now_ns();
	if (op->kind == LINCHECK_READ)
		op->value = resp->status == CLIENT_STATUS_NOT_FOUND
				? LINCHECK_ABSENT
				: load_value_id(t->run, resp->value, resp->value_size);
}

/* --- Connections. --- */

static uint64_t load_backoff_ns(uint32_t failures)
{
	uint64_t ms = LOAD_BACKOFF_MS_MIN;

	for (uint32_t i = 0; i < failures && ms < LOAD_BACKOFF_MS_MAX; i++)
		ms *= 2;
	return (ms < LOAD_BACKOFF_MS_MAX ? ms : LOAD_BACKOFF_MS_MAX) * NS_PER_MS;
}

static bool load_conn_is_up(const struct load_conn *conn)
{
	return conn->client.fd >= 0;
}

static void load_conn_watch(struct load_thread *t, uint32_t node_slot, uint32_t events)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct epoll_event ev = {.events = events, .data.u32 = node_slot};

	if (conn->events == events)
		return;
	/* Cannot fail for a registered fd short of a bug; the next flush or
	 * read would then notice a dead socket. */
	(void)epoll_ctl(t->epfd, EPOLL_CTL_MOD, conn->client.fd, &ev);
	conn->events = events;
}

/* Connect to a node whose connection is down and whose backoff is over.
 * client_connect() blocks for at most LOAD_CONNECT_MS, stalling this thread's
 * other connections meanwhile; on loopback a dead node refuses at once. */
static void load_conn_open(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = node_slot};
	int rv;

	rv = client_connect(&conn->client, t->run->opt.nodes[node_slot].addr, LOAD_CONNECT_MS);
	if (rv == 0 && epoll_ctl(t->epfd, EPOLL_CTL_ADD, conn->client.fd, &ev) != 0) {
		rv = -errno;
		client_close(&conn->client);
	}
	if (rv != 0) {
		load_tally(t, load_is_measuring(t->run, now), LOAD_STAT_CONNECTS_FAILED, 1);
		conn->retry_at_ns = now + load_backoff_ns(conn->failures);
		conn->failures++;
		return;
	}
	conn->events = EPOLLIN;
	conn->failures = 0;
	conn->dirty = false;
}

static void load_req_finish(struct load_thread *t, uint32_t slot, uint64_t now);

/* The connection broke: its requests in flight fail as disconnected, and it
 * is retried after a backoff. */
static void load_conn_lost(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];

	if (!load_conn_is_up(conn))
		return;
	(void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, conn->client.fd, NULL);
	client_close(&conn->client);
	conn->dirty = false;
	conn->events = 0;
	conn->retry_at_ns = now + load_backoff_ns(conn->failures);
	conn->failures++;
	load_tally(t, load_is_measuring(t->run, now), LOAD_STAT_CONNS_LOST, 1);
	for (uint32_t i = 0; i < t->reqs_count; i++) {
		struct load_req *req = &t->reqs[i];

		if (req->state != LOAD_REQ_SENT || req->node_slot != node_slot)
			continue;
		load_tally(t, req->measured, LOAD_STAT_DISCONNECTED, 1);
		load_req_finish(t, i, now);
	}
}

static void load_conn_flush(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	int rv;

	if (!load_conn_is_up(conn))
		return;
	conn->dirty = false;
	rv = client_flush(&conn->client);
	if (rv == 0)
		load_conn_watch(t, node_slot, EPOLLIN);
	else if (rv == -EAGAIN)
		load_conn_watch(t, node_slot, EPOLLIN | EPOLLOUT);
	else
		load_conn_lost(t, node_slot, now);
}

/* --- Requests. --- */

/* The node to send a new request for group to: its leader if known and
 * reachable, else the next reachable node; -1 if none is. */
static int load_pick_node(struct load_thread *t, uint64_t group)
{
	uint32_t nodes_count = t->run->opt.nodes_count;
	int leader = load_leader(t->run, group);

	if (leader >= 0 && load_conn_is_up(&t->conns[leader]))
		return leader;
	for (uint32_t i = 0; i < nodes_count; i++) {
		uint32_t slot = (t->next_node + i) % nodes_count;

		if (load_conn_is_up(&t->conns[slot])) {
			t->next_node = slot + 1;
			return (int)slot;
		}
	}
	return -1;
}

/* Send req to req->node_slot, or, when that node is down, to any reachable
 * node; when none is, wait and try again at the next scan. */
static void load_req_send(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];
	struct load_conn *conn = &t->conns[req->node_slot];
	char key[LOAD_KEY_SIZE + 1];
	struct client_request creq;

	if (!load_conn_is_up(conn)) {
		int other = load_pick_node(t, load_group_of(t->run, req->key));

		if (other < 0) {
			req->state = LOAD_REQ_WAITING;
			req->retry_at_ns = now + LOAD_SCAN_NS;
			return;
		}
		req->node_slot = (uint32_t)other;
		conn = &t->conns[other];
	}
	snprintf(key, sizeof(key), "k%015llx", (unsigned long long)req->key);
	req->id = (++t->seq << LOAD_SLOT_BITS) | slot;
	creq = (struct client_request){
	    .op = req->op == CLIENT_OP_GET && t->run->stale_reads ? CLIENT_OP_LOCAL_GET : req->op,
	    .request_id = req->id,
	    .group = load_group_of(t->run, req->key),
	    .key = key,
	    .key_size = LOAD_KEY_SIZE,
	};
	if (req->op == CLIENT_OP_PUT) {
		if (t->run->opt.check) { /* client_send() copies the value out. */
			le_put64(t->value, t->run->nonce);
			le_put64(t->value + 8, req->value_id);
		}
		creq.value = t->value;
		creq.value_size = t->run->opt.value_size;
	}
	if (client_send(&conn->client, &creq) != 0) {
		/* -ENOMEM; a request within limits is never -EINVAL. */
		load_conn_lost(t, req->node_slot, now);
		req->state = LOAD_REQ_WAITING;
		req->retry_at_ns = now + LOAD_SCAN_NS;
		return;
	}
	conn->dirty = true;
	req->state = LOAD_REQ_SENT;
}

/* Start a new request in slot, due at due_ns. */
static void load_req_start(struct load_thread *t, uint32_t slot, uint64_t due_ns, uint64_t now)
{
	struct load_run *run = t->run;
	struct load_req *req = &t->reqs[slot];
	int node;

	if (run->opt.zipf_theta > 0) {
		uint64_t rank = load_zipf_rank(&run->zipf, load_rng_double(t->rng));

		req->key = load_zipf_scatter(&run->scatter, rank);
	} else {
		req->key = load_rng_next(t->rng) % run->opt.keys;
	}
	req->op = load_rng_double(t->rng) < run->opt.read_ratio ? CLIENT_OP_GET : CLIENT_OP_PUT;
	req->due_ns = due_ns;
	req->deadline_ns = now + (uint64_t)run->opt.timeout_ms * NS_PER_MS;
	req->redirects = 0;
	req->measured = due_ns >= run->measure_ns && due_ns < load_end_ns(run);
	node = load_pick_node(t, load_group_of(run, req->key));
	req->node_slot = node < 0 ? 0 : (uint32_t)node;
	if (run->stale_reads && req->op == CLIENT_OP_GET) /* Mostly a follower. */
		req->node_slot = (uint32_t)(load_rng_next(t->rng) % run->opt.nodes_count);
	if (run->opt.check) {
		if (req->op == CLIENT_OP_PUT)
			req->value_id = (uint64_t)(t->index + 1) << 40 | ++t->writes_started;
		load_history_call(t, slot, now);
	}
	load_req_send(t, slot, now);
}

/* The request in slot has ended (answered or failed): in closed loop the
 * slot starts its next request at once, unless the run is over. */
static void load_req_finish(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];

	req->id = 0;
	if (!t->run->opt.open_loop && now < load_end_ns(t->run)) {
		load_req_start(t, slot, now, now);
		return;
	}
	req->state = LOAD_REQ_FREE;
	req->next_free = t->free_head;
	t->free_head = slot;
	t->inflight--;
}

/* NOT_LEADER from node_slot: follow the hint, or try the next node after a
 * pause growing with the redirects so far (an election may be under way). */
static void load_req_redirect(struct load_thread *t, uint32_t slot, uint64_t hint, uint64_t now)
{
	struct load_run *run = t->run;
	struct load_req *req = &t->reqs[slot];
	int hinted = hint == 0 ? -1 : load_node_slot(run, hint);
	uint64_t pause_ms;

	load_tally(t, req->measured, LOAD_STAT_REDIRECTS, 1);
	if (++req->redirects > run->opt.redirects_max) {
		load_tally(t, req->measured, LOAD_STAT_NOT_LEADER, 1);
		load_req_finish(t, slot, now);
		return;
	}
	if (hinted >= 0 && (uint32_t)hinted != req->node_slot) {
		if (load_learn_leader(run, load_group_of(run, req->key), (uint32_t)hinted))
			load_tally(t, load_is_measuring(run, now), LOAD_STAT_LEADER_CHANGES, 1);
		req->node_slot = (uint32_t)hinted;
		if (load_conn_is_up(&t->conns[hinted])) {
			load_req_send(t, slot, now);
			return;
		}
	} else {
		req->node_slot = (req->node_slot + 1) % run->opt.nodes_count;
	}
	pause_ms = req->redirects < 8 ? UINT64_C(1) << req->redirects : LOAD_REDIRECT_MS_MAX;
	if (pause_ms > LOAD_REDIRECT_MS_MAX)
		pause_ms = LOAD_REDIRECT_MS_MAX;
	req->id = 0;
	req->state = LOAD_REQ_WAITING;
	req->retry_at_ns = now + pause_ms * NS_PER_MS;
}

static void load_on_response(struct load_thread *t, uint32_t node_slot,
			     const struct client_response *resp, uint64_t now)
{
	struct load_run *run = t->run;
	uint32_t slot = (uint32_t)(resp->request_id & (LOAD_SLOTS_MAX - 1));
	struct load_req *req;
	bool is_read;

	if (slot >= t->reqs_count || t->reqs[slot].state != LOAD_REQ_SENT ||
	    t->reqs[slot].id != resp->request_id) {
		load_tally(t, load_is_measuring(run, now), LOAD_STAT_LATE, 1);
		return;
	}
	req = &t->reqs[slot];
	is_read = req->op == CLIENT_OP_GET;
	switch (resp->status) {
	case CLIENT_STATUS_OK:
	case CLIENT_STATUS_NOT_FOUND:
		/* Only the leader commits a write: the node that did leads. */
		if (!is_read && load_learn_leader(run, load_group_of(run, req->key), node_slot))
			load_tally(t, load_is_measuring(run, now), LOAD_STAT_LEADER_CHANGES, 1);
		load_tally(t, req->measured, LOAD_STAT_OPS, 1);
		load_tally(t, req->measured, is_read ? LOAD_STAT_READS : LOAD_STAT_WRITES, 1);
		load_tally(t, req->measured, LOAD_STAT_BYTES,
			   is_read ? resp->value_size : run->opt.value_size);
		if (resp->status == CLIENT_STATUS_NOT_FOUND)
			load_tally(t, req->measured, LOAD_STAT_NOT_FOUND, 1);
		if (run->opt.check)
			load_history_return(t, req, resp);
		load_hist_record(t->interval_hist, now - req->due_ns);
		if (req->measured)
			load_hist_record(t->measured_hist, now - req->due_ns);
		break;
	case CLIENT_STATUS_NOT_LEADER:
		load_req_redirect(t, slot, resp->leader_hint, now);
		return;
	case CLIENT_STATUS_ERROR:
		load_tally(t, req->measured, LOAD_STAT_SERVER_ERRORS, 1);
		break;
	case CLIENT_STATUS_NO_SPACE: /* Not done; counted apart so a full disk shows. */
		load_tally(t, req->measured, LOAD_STAT_NO_SPACE, 1);
		break;
	default: /* BAD_REQUEST, or a status no GET or PUT should get. */
		load_tally(t, req->measured, LOAD_STAT_BAD_REQUESTS, 1);
		break;
	}
	load_req_finish(t, slot, now);
}

/* Read what node_slot's socket has and handle every complete answer. */
static void load_conn_read(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct client_response resp;

	for (int i = 0; i < LOAD_READS_PER_EVENT && load_conn_is_up(conn); i++) {
		int rv = client_read(&conn->client);
		int got = 0;

		if (rv == -EAGAIN)
			return;
		/* Answers read before a close still count. */
		while (load_conn_is_up(conn) && (got = client_receive(&conn->client, &resp)) == 1)
			load_on_response(t, node_slot, &resp, now);
		if (rv < 0 || got < 0) {
			load_conn_lost(t, node_slot, now);
			return;
		}
	}
}

/* Time out overdue requests and resend the waiting ones that are due. */
static void load_scan(struct load_thread *t, uint64_t now)
{
	for (uint32_t i = 0; i < t->reqs_count; i++) {
		struct load_req *req = &t->reqs[i];

		if (req->state == LOAD_REQ_FREE)
			continue;
		if (now >= req->deadline_ns) {
			load_tally(t, req->measured, LOAD_STAT_TIMEOUTS, 1);
			load_req_finish(t, i, now);
		} else if (req->state == LOAD_REQ_WAITING && now >= req->retry_at_ns) {
			load_req_send(t, i, now);
		}
	}
}

/* Open loop: when this thread's request seq is due. The schedule has
 * request j due at j / rate seconds from the start, and thread i takes
 * j = i, i + threads, i + 2 threads, ...; computed afresh for each request so
 * that rounding never accumulates. */
static uint64_t load_due_ns(const struct load_thread *t, uint64_t seq)
{
	const struct load_options *o = &t->run->opt;
	double j = (double)t->index + (double)seq * (double)o->threads;

	return t->run->start_ns + (uint64_t)(j * (double)NS_PER_S / o->rate);
}

/* Open loop: how many of this thread's requests were due before end_ns but
 * never started. */
static uint64_t load_unsent(const struct load_thread *t, uint64_t end_ns)
{
	const struct load_options *o = &t->run->opt;
	double span_s = (double)(end_ns - t->run->start_ns) / (double)NS_PER_S;
	uint64_t due = (uint64_t)ceil(span_s * o->rate), mine; /* Requests j < due. */

	if (end_ns <= t->run->start_ns || due <= t->index)
		return 0;
	mine = (due - t->index + o->threads - 1) / o->threads;
	return mine > t->due_seq ? mine - t->due_seq : 0;
}

/* Open loop: start every request that is due, while slots are free. Once
 * the run is over nothing new starts, so the drain is bounded by the
 * timeout; what was due and never started is reported as unsent. */
static void load_start_due(struct load_thread *t, uint64_t now)
{
	if (now >= load_end_ns(t->run))
		return;
	while (t->next_due_ns <= now && t->free_head != UINT32_MAX) {
		uint32_t slot = t->free_head;

		t->free_head = t->reqs[slot].next_free;
		t->inflight++;
		load_req_start(t, slot, t->next_due_ns, now);
		t->next_due_ns = load_due_ns(t, ++t->due_seq);
	}
}

/* Hand the interval's counts to the reporter. */
static void load_publish(struct load_thread *t)
{
	pthread_mutex_lock(&t->lock);
	load_counts_add(&t->published, &t->interval);
	load_hist_add(t->published_hist, t->interval_hist);
	pthread_mutex_unlock(&t->lock);
	memset(&t->interval, 0, sizeof(t->interval));
	if (!load_hist_is_empty(t->interval_hist))
		load_hist_reset(t->interval_hist);
}

/* Wait for socket events until wake_ns at the latest, and handle them. */
static void load_poll(struct load_thread *t, uint64_t wake_ns)
{
	struct epoll_event events[LOAD_EVENTS_MAX];
	uint64_t now = load_now_ns(), wait_ns = wake_ns > now ? wake_ns - now : 0;
	struct timespec timeout = {.tv_sec = (time_t)(wait_ns / NS_PER_S),
				   .tv_nsec = (long)(wait_ns % NS_PER_S)};
	int n = epoll_pwait2(t->epfd, events, LOAD_EVENTS_MAX, &timeout, NULL);

	if (n < 0 && errno == ENOSYS) /* Before Linux 5.11: millisecond timeouts. */
		n = epoll_wait(t->epfd, events, LOAD_EVENTS_MAX,
			       (int)((wait_ns + NS_PER_MS - 1) / NS_PER_MS));
	now = load_now_ns();
	for (int i = 0; i < n; i++) {
		uint32_t node_slot = events[i].data.u32;

		if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			load_conn_read(t, node_slot, now);
		if ((events[i].events & EPOLLOUT) && load_conn_is_up(&t->conns[node_slot]))
			load_conn_flush(t, node_slot, now);
	}
}

/* The thread's loop: runs until the end and until its last request ended,
 * which a timeout bounds. */
static void *load_thread_main(void *arg)
{
	struct load_thread *t = arg;
	struct load_run *run = t->run;
	uint32_t nodes_count = run->opt.nodes_count;
	uint64_t now = load_now_ns(), next_scan, next_publish;

	while (now < run->start_ns) {
		uint64_t wait_ns = run->start_ns - now;
		struct timespec ts = {.tv_nsec =
					  (long)(wait_ns < NS_PER_S ? wait_ns : NS_PER_S - 1)};

		nanosleep(&ts, NULL);
		now = load_now_ns();
	}
	for (uint32_t i = 0; i < nodes_count; i++)
		load_conn_open(t, i, now);
	if (!run->opt.open_loop)
		for (uint32_t i = 0; i < t->reqs_count; i++, t->inflight++)
			load_req_start(t, i, now, now);
	next_scan = now + LOAD_SCAN_NS;
	next_publish = now + LOAD_PUBLISH_NS;
	while (now < load_end_ns(run) || t->inflight > 0) {
		uint64_t wake;

		if (run->opt.open_loop)
			load_start_due(t, now);
		if (now >= next_scan) {
			load_scan(t, now);
			for (uint32_t i = 0; i < nodes_count; i++)
				if (!load_conn_is_up(&t->conns[i]) &&
				    now >= t->conns[i].retry_at_ns)
					load_conn_open(t, i, now);
			next_scan = now + LOAD_SCAN_NS;
		}
		for (uint32_t i = 0; i < nodes_count; i++)
			if (t->conns[i].dirty)
				load_conn_flush(t, i, now);
		if (now >= next_publish) {
			load_publish(t);
			next_publish = now + LOAD_PUBLISH_NS;
		}
		wake = next_scan < next_publish ? next_scan : next_publish;
		if (run->opt.open_loop && t->free_head != UINT32_MAX && t->next_due_ns < wake)
			wake = t->next_due_ns;
		load_poll(t, wake);
		now = load_now_ns();
	}
	if (run->opt.open_loop)
		t->unsent = load_unsent(t, load_end_ns(run));
	load_publish(t);
	for (uint32_t i = 0; i < nodes_count; i++)
		client_close(&t->conns[i].client);
	return NULL;
}

/* --- Options. --- */

static void load_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: flotilla-load (--node ID=HOST:PORT ... | --cluster-dir DIR) [options]\n"
	    "       flotilla-load --check-file FILE [--check-initial absent|any]\n"
	    "  --node ID=HOST:PORT   a node's client address (repeat for each node)\n"
	    "  --cluster-dir DIR     the nodes of a local cluster made by tools/cluster\n"
	    "  --mode closed|open    closed: N requests in flight; open: a fixed rate (closed)\n"
	    "  --concurrency N       closed loop: requests in flight (64)\n"
	    "  --rate OPS            open loop: requests per second (required with --mode open)\n"
	    "  --inflight-max N      open loop: requests in flight at most (10000)\n"
	    "  --duration S          measured seconds (10)\n"
	    "  --warmup S            seconds before measuring (1)\n"
	    "  --groups N            use groups 1..N (from the cluster directory, else 1)\n"
	    "  --keys N              distinct keys, spread over the groups (100000)\n"
	    "  --dist D              uniform | zipf | zipf:THETA, THETA in 0.01..0.9999 (uniform;\n"
	    "                        zipf alone means 0.99)\n"
	    "  --read-ratio R        share of GETs, 0..1; the rest are PUTs (0.5)\n"
	    "  --value-size BYTES    PUT value size (100)\n"
	    "  --timeout-ms MS       a request unanswered this long is a timeout (2000)\n"
	    "  --redirects-max N     NOT_LEADER redirects before a request fails (10)\n"
	    "  --threads N           load threads (2)\n"
	    "  --leader-wait-ms MS   at most this long to learn the leaders first (10000)\n"
	    "  --seed N              random seed (1)\n"
	    "  --json FILE           write the results as JSON ('-': stdout; then the\n"
	    "                        progress lines and report go to stderr)\n"
	    "  --plot FILE.png       draw throughput over time and the latency\n"
	    "                        distribution (needs gnuplot)\n"
	    "  --check               record every request and check that the history is\n"
	    "                        linearizable, a register per key (values of 16 bytes\n"
	    "                        at least); exit 3 on a violation\n"
	    "  --check-initial I     absent: keys start absent (a fresh cluster; the default);\n"
	    "                        any: they may hold values written before this run\n"
	    "  --check-history FILE  with --check: save the history, one operation a line\n"
	    "  --check-file FILE     check a saved history instead of running load\n");
}

static bool load_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool load_parse_double(const char *text, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(v >= min && v <= max))
		return false;
	*out = v;
	return true;
}

static bool load_add_node(struct load_options *opt, uint64_t id, const char *addr)
{
	struct sockaddr_in sin;

	if (opt->nodes_count == LOAD_NODES_MAX || strlen(addr) >= CLIENT_ADDR_SIZE_MAX ||
	    client_parse_addr(addr, &sin) != 0)
		return false;
	for (uint32_t i = 0; i < opt->nodes_count; i++)
		if (opt->nodes[i].id == id)
			return false;
	opt->nodes[opt->nodes_count].id = id;
	strcpy(opt->nodes[opt->nodes_count].addr, addr);
	opt->nodes_count++;
	return true;
}

/* "ID=HOST:PORT" */
static bool load_parse_node(struct load_options *opt, const char *text)
{
	const char *eq = strchr(text, '=');
	char id_text[24];
	uint64_t id;

	if (eq == NULL || (size_t)(eq - text) >= sizeof(id_text))
		return false;
	memcpy(id_text, text, (size_t)(eq - text));
	id_text[eq - text] = '\0';
	return load_parse_u64(id_text, 1, UINT64_MAX, &id) && load_add_node(opt, id, eq + 1);
}

/* Read DIR/cluster.conf, written by tools/cluster: node i (1..nodes) serves
 * clients on 127.0.0.1 at base_port + 2(i - 1) + 1. Sets *groups to the
 * cluster's group count (0 when not saved). */
static bool load_read_cluster_dir(struct load_options *opt, const char *dir, uint64_t *groups)
{
	char path[PATH_MAX], line[256];
	uint64_t nodes = 0, base_port = 0;
	FILE *f;

	*groups = 0;
	if (snprintf(path, sizeof(path), "%s/cluster.conf", dir) >= (int)sizeof(path))
		return false;
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "nodes=", 6) == 0)
			(void)load_parse_u64(line + 6, 1, LOAD_NODES_MAX, &nodes);
		else if (strncmp(line, "base_port=", 10) == 0)
			(void)load_parse_u64(line + 10, 1, 65535, &base_port);
		else if (strncmp(line, "groups=", 7) == 0)
			(void)load_parse_u64(line + 7, 0, LOAD_GROUPS_MAX, groups);
	}
	fclose(f);
	if (nodes == 0 || base_port == 0 || base_port + 2 * nodes > 65535) {
		fprintf(stderr, "flotilla-load: %s lacks nodes= or base_port=\n", path);
		return false;
	}
	for (uint64_t i = 1; i <= nodes; i++) {
		char addr[CLIENT_ADDR_SIZE_MAX];

		snprintf(addr, sizeof(addr), "127.0.0.1:%llu",
			 (unsigned long long)(base_port + 2 * (i - 1) + 1));
		if (!load_add_node(opt, i, addr))
			return false;
	}
	return true;
}

static bool load_parse_dist(struct load_options *opt, const char *text)
{
	if (strcmp(text, "uniform") == 0) {
		opt->zipf_theta = 0;
		return true;
	}
	if (strcmp(text, "zipf") == 0) {
		opt->zipf_theta = 0.99;
		return true;
	}
	return strncmp(text, "zipf:", 5) == 0 &&
	       load_parse_double(text + 5, LOAD_ZIPF_THETA_MIN, LOAD_ZIPF_THETA_MAX,
				 &opt->zipf_theta);
}

enum {
	OPT_NODE = 256,
	OPT_CLUSTER_DIR,
	OPT_MODE,
	OPT_CONCURRENCY,
	OPT_RATE,
	OPT_INFLIGHT_MAX,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_GROUPS,
	OPT_KEYS,
	OPT_DIST,
	OPT_READ_RATIO,
	OPT_VALUE_SIZE,
	OPT_TIMEOUT_MS,
	OPT_REDIRECTS_MAX,
	OPT_THREADS,
	OPT_LEADER_WAIT_MS,
	OPT_SEED,
	OPT_JSON,
	OPT_PLOT,
	OPT_CHECK,
	OPT_CHECK_INITIAL,
	OPT_CHECK_HISTORY,
	OPT_CHECK_FILE,
	OPT_HELP,
};

/* In the order of the OPT_ codes: error messages index it by code. */
static const struct option load_long_options[] = {
    {"node", required_argument, NULL, OPT_NODE},
    {"cluster-dir", required_argument, NULL, OPT_CLUSTER_DIR},
    {"mode", required_argument, NULL, OPT_MODE},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"rate", required_argument, NULL, OPT_RATE},
    {"inflight-max", required_argument, NULL, OPT_INFLIGHT_MAX},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"groups", required_argument, NULL, OPT_GROUPS},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"dist", required_argument, NULL, OPT_DIST},
    {"read-ratio", required_argument, NULL, OPT_READ_RATIO},
    {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
    {"redirects-max", required_argument, NULL, OPT_REDIRECTS_MAX},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"leader-wait-ms", required_argument, NULL, OPT_LEADER_WAIT_MS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", required_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"check", no_argument, NULL, OPT_CHECK},
    {"check-initial", required_argument, NULL, OPT_CHECK_INITIAL},
    {"check-history", required_argument, NULL, OPT_CHECK_HISTORY},
    {"check-file", required_argument, NULL, OPT_CHECK_FILE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static_assert(sizeof(load_long_options) / sizeof(load_long_options[0]) == OPT_HELP - OPT_NODE + 2,
	      "one entry per OPT_ code, and the terminator");

/* One option's value into opt. Returns false when it is invalid. */
static bool load_parse_option(struct load_options *opt, int code, const char *arg,
			      uint64_t *cluster_groups)
{
	uint64_t v;

	switch (code) {
	case OPT_NODE:
		return load_parse_node(opt, arg);
	case OPT_CLUSTER_DIR:
		return load_read_cluster_dir(opt, arg, cluster_groups);
	case OPT_MODE:
		opt->open_loop = strcmp(arg, "open") == 0;
		return opt->open_loop || strcmp(arg, "closed") == 0;
	case OPT_CONCURRENCY:
	case OPT_INFLIGHT_MAX:
		if (!load_parse_u64(arg, 1, (uint64_t)LOAD_SLOTS_MAX * LOAD_THREADS_MAX, &v))
			return false;
		*(code == OPT_CONCURRENCY ? &opt->concurrency : &opt->inflight_max) = (uint32_t)v;
		return true;
	case OPT_RATE:
		return load_parse_double(arg, 1, 1e8, &opt->rate);
	case OPT_DURATION:
		return load_parse_double(arg, 0.1, 86400, &opt->duration_s);
	case OPT_WARMUP:
		return load_parse_double(arg, 0, 3600, &opt->warmup_s);
	case OPT_GROUPS:
		return load_parse_u64(arg, 1, LOAD_GROUPS_MAX, &opt->groups);
	case OPT_KEYS:
		return load_parse_u64(arg, 1, UINT64_C(1) << 60, &opt->keys);
	case OPT_DIST:
		return load_parse_dist(opt, arg);
	case OPT_READ_RATIO:
		return load_parse_double(arg, 0, 1, &opt->read_ratio);
	case OPT_VALUE_SIZE:
		if (!load_parse_u64(arg, 0, LOAD_VALUE_SIZE_MAX, &v))
			return false;
		opt->value_size = (uint32_t)v;
		return true;
	case OPT_TIMEOUT_MS:
	case OPT_LEADER_WAIT_MS:
		if (!load_parse_u64(arg, code == OPT_TIMEOUT_MS ? 1 : 0, 600000, &v))
			return false;
		*(code == OPT_TIMEOUT_MS ? &opt->timeout_ms : &opt->leader_wait_ms) = (uint32_t)v;
		return true;
	case OPT_REDIRECTS_MAX:
		if (!load_parse_u64(arg, 0, 1000, &v))
			return false;
		opt->redirects_max = (uint32_t)v;
		return true;
	case OPT_THREADS:
		if (!load_parse_u64(arg, 1, LOAD_THREADS_MAX, &v))
			return false;
		opt->threads = (uint32_t)v;
		return true;
	case OPT_SEED:
		return load_parse_u64(arg, 0, UINT64_MAX, &opt->seed);
	case OPT_JSON:
		opt->json_path = arg;
		return true;
	case OPT_PLOT:
		opt->plot_path = arg;
		return true;
	case OPT_CHECK:
		opt->check = true;
		return true;
	case OPT_CHECK_INITIAL:
		opt->check_initial_unknown = strcmp(arg, "any") == 0;
		return opt->check_initial_unknown || strcmp(arg, "absent") == 0;
	case OPT_CHECK_HISTORY:
		opt->check_history_path = arg;
		return true;
	case OPT_CHECK_FILE:
		opt->check_file_path = arg;
		return true;
	default:
		return false;
	}
}

/* Returns 0, or EXIT_USAGE after saying why. */
static int load_parse_options(struct load_options *opt, int argc, char **argv)
{
	uint64_t cluster_groups = 0;
	int code;

	*opt = (struct load_options){
	    .concurrency = 64,
	    .inflight_max = 10000,
	    .duration_s = 10,
	    .warmup_s = 1,
	    .keys = 100000,
	    .read_ratio = 0.5,
	    .value_size = 100,
	    .timeout_ms = 2000,
	    .redirects_max = 10,
	    .threads = 2,
	    .leader_wait_ms = 10000,
	    .seed = 1,
	};
	while ((code = getopt_long(argc, argv, "h", load_long_options, NULL)) != -1) {
		if (code == OPT_HELP || code == 'h') {
			load_usage(stdout);
			exit(0);
		}
		if (code == '?' || !load_parse_option(opt, code, optarg, &cluster_groups)) {
			if (code != '?')
				fprintf(stderr, "flotilla-load: bad value '%s' for --%s\n", optarg,
					load_long_options[code - OPT_NODE].name);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "flotilla-load: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (opt->check_file_path != NULL)
		return 0;
	if (opt->check_history_path != NULL && !opt->check) {
		fprintf(stderr, "flotilla-load: --check-history needs --check\n");
		return EXIT_USAGE;
	}
	if (opt->check && opt->value_size < LOAD_CHECK_VALUE_SIZE) {
		fprintf(stderr, "flotilla-load: --check needs --value-size %u at least\n",
			LOAD_CHECK_VALUE_SIZE);
		return EXIT_USAGE;
	}
	if (opt->nodes_count == 0) {
		fprintf(stderr, "flotilla-load: give --node ID=HOST:PORT or --cluster-dir DIR\n");
		return EXIT_USAGE;
	}
	if (opt->open_loop && opt->rate == 0) {
		fprintf(stderr, "flotilla-load: --mode open needs --rate\n");
		return EXIT_USAGE;
	}
	if (opt->groups == 0)
		opt->groups = cluster_groups != 0 ? cluster_groups : 1;
	return 0;
}

/* --- Leader discovery, before the load starts. --- */

/* Ask one node for the leaders of the groups not known yet. Returns how many
 * it taught us. */
static uint64_t load_discover_from(struct load_run *run, struct client *c)
{
	uint64_t learned = 0, group = 1;

	while (group <= run->opt.groups) {
		uint32_t sent = 0;

		for (; group <= run->opt.groups && sent < LOAD_DISCOVER_BATCH; group++) {
			struct client_request req = {
			    .op = CLIENT_OP_LEADER, .request_id = group, .group = group};

			if (load_leader(run, group) >= 0)
				continue;
			if (client_send(c, &req) != 0)
				return learned;
			sent++;
		}
		for (uint32_t i = 0; i < sent; i++) {
			struct client_response resp;
			int node_slot;

			if (client_wait(c, &resp, 1000) != 0)
				return learned;
			node_slot = load_node_slot(run, resp.leader_hint);
			if (resp.status != CLIENT_STATUS_OK || node_slot < 0 ||
			    resp.request_id < 1 || resp.request_id > run->opt.groups)
				continue;
			if (load_leader(run, resp.request_id) < 0)
				learned++;
			load_learn_leader(run, resp.request_id, (uint32_t)node_slot);
		}
	}
	return learned;
}

/* Learn the leader of every group, asking the nodes in turn until all are
 * known or --leader-wait-ms has passed (groups may still be electing just
 * after the cluster started). Returns 0, or -EHOSTUNREACH when no node
 * answered at all. */
static int load_discover(struct load_run *run)
{
	uint64_t started = load_now_ns(), known = 0, per_node[LOAD_NODES_MAX] = {0};
	uint64_t deadline = started + (uint64_t)run->opt.leader_wait_ms * NS_PER_MS;
	bool reached = false;

	for (uint32_t round = 0;; round++) {
		uint32_t node_slot = round % run->opt.nodes_count;
		struct client c;

		if (client_connect(&c, run->opt.nodes[node_slot].addr, 1000) == 0) {
			reached = true;
			known += load_discover_from(run, &c);
			client_close(&c);
		}
		if (known == run->opt.groups || load_now_ns() >= deadline)
			break;
		if (node_slot == run->opt.nodes_count - 1 || !reached)
			usleep(LOAD_DISCOVER_PAUSE_MS * 1000);
	}
	if (!reached) {
		fprintf(stderr, "flotilla-load: no node answered within %u ms\n",
			run->opt.leader_wait_ms);
		return -EHOSTUNREACH;
	}
	for (uint64_t g = 1; g <= run->opt.groups; g++)
		if (load_leader(run, g) >= 0)
			per_node[load_leader(run, g)]++;
	fprintf(run->out, "leaders: %llu of %llu groups known after %.2f s (",
		(unsigned long long)known, (unsigned long long)run->opt.groups,
		(double)(load_now_ns() - started) / NS_PER_S);
	for (uint32_t i = 0; i < run->opt.nodes_count; i++)
		fprintf(run->out, "%snode %llu: %llu", i > 0 ? ", " : "",
			(unsigned long long)run->opt.nodes[i].id, (unsigned long long)per_node[i]);
	fprintf(run->out, ")\n");
	if (known < run->opt.groups)
		fprintf(run->out,
			"warning: %llu groups have no known leader yet (do groups 1..%llu "
			"exist on the cluster?)\n",
			(unsigned long long)(run->opt.groups - known),
			(unsigned long long)run->opt.groups);
	return 0;
}

/* --- Progress lines. --- */

/* Take what every thread has published since the last call. */
static void load_collect(struct load_run *run, struct load_counts *counts, struct load_hist *hist)
{
	memset(counts, 0, sizeof(*counts));
	load_hist_reset(hist);
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		struct load_thread *t = &run->threads[i];

		pthread_mutex_lock(&t->lock);
		load_counts_add(counts, &t->published);
		load_hist_add(hist, t->published_hist);
		memset(&t->published, 0, sizeof(t->published));
		if (!load_hist_is_empty(t->published_hist))
			load_hist_reset(t->published_hist);
		pthread_mutex_unlock(&t->lock);
	}
}

static double load_ms(uint64_t ns)
{
	return (double)ns / (double)NS_PER_MS;
}

/* ", timeout 3, disconnected 2" for the error kinds that are not zero. */
static void load_print_error_kinds(FILE *out, const struct load_counts *c, bool all)
{
	const char *sep = "";

	for (int i = LOAD_STAT_ERRORS_FIRST; i <= LOAD_STAT_ERRORS_LAST; i++) {
		if (c->v[i] == 0 && !all)
			continue;
		fprintf(out, "%s%s %llu", sep, load_stat_names[i], (unsigned long long)c->v[i]);
		sep = ", ";
	}
}

static void load_progress(struct load_run *run, uint64_t from_ns, uint64_t to_ns)
{
	struct load_counts c;
	struct load_hist *hist = malloc(sizeof(*hist));
	struct load_sample *s;
	double seconds = (double)(to_ns - from_ns) / NS_PER_S;

	if (hist == NULL || run->samples_count == run->samples_max || seconds <= 0) {
		free(hist);
		return;
	}
	load_collect(run, &c, hist);
	s = &run->samples[run->samples_count++];
	*s = (struct load_sample){
	    .t_s = (double)(to_ns - run->start_ns) / NS_PER_S,
	    .ops_per_s = (double)c.v[LOAD_STAT_OPS] / seconds,
	    .mb_per_s = (double)c.v[LOAD_STAT_BYTES] / seconds / 1e6,
	    .p50_ns = load_hist_percentile(hist, 50),
	    .p99_ns = load_hist_percentile(hist, 99),
	    .p999_ns = load_hist_percentile(hist, 99.9),
	    .errors = load_counts_errors(&c),
	    .redirects = c.v[LOAD_STAT_REDIRECTS],
	    .leader_changes = c.v[LOAD_STAT_LEADER_CHANGES],
	    .warmup = from_ns < run->measure_ns,
	};
	fprintf(run->out,
		"%6.1fs %9.0f ops/s %8.2f MB/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f ms  errors %llu",
		s->t_s, s->ops_per_s, s->mb_per_s, load_ms(s->p50_ns), load_ms(s->p99_ns),
		load_ms(s->p999_ns), (unsigned long long)s->errors);
	if (s->errors > 0) {
		fprintf(run->out, " (");
		load_print_error_kinds(run->out, &c, false);
		fprintf(run->out, ")");
	}
	fprintf(run->out, "  redirects %llu  leader changes %llu%s\n",
		(unsigned long long)s->redirects, (unsigned long long)s->leader_changes,
		s->warmup ? "  (warm-up)" : "");
	free(hist);
}

static void load_on_signal(int sig)
{
	(void)sig;
	load_interrupted = 1;
}

/* Print a progress line each second until the end; SIGINT or SIGTERM brings
 * the end forward to now. */
static void load_report_progress(struct load_run *run)
{
	uint64_t from = run->start_ns, tick = run->start_ns + NS_PER_S;

	for (;;) {
		uint64_t end = load_end_ns(run), target = tick < end ? tick : end, now;
		struct timespec ts = {.tv_sec = (time_t)(target / NS_PER_S),
				      .tv_nsec = (long)(target % NS_PER_S)};

		(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		now = load_now_ns();
		if (load_interrupted && now < load_end_ns(run)) {
			atomic_store_explicit(&run->end_ns, now, memory_order_relaxed);
			fprintf(run->out, "interrupted: finishing the requests in flight\n");
			continue;
		}
		if (now < target)
			continue;
		load_progress(run, from, target);
		from = target;
		if (target >= end)
			return;
		tick += NS_PER_S;
	}
}

/* --- Final report, JSON and plot. --- */

struct load_totals {
	struct load_counts c;
	struct load_hist *hist;
	uint64_t unsent;
	double seconds; /* Measured. */
};

/* Percentiles in the report and in JSON. */
static const double load_percentiles[] = {50, 90, 99, 99.9, 99.99};

static void load_print_mode(FILE *out, const struct load_options *opt)
{
	if (opt->open_loop)
		fprintf(out, "open loop at %.0f ops/s (at most %u in flight)", opt->rate,
			opt->inflight_max);
	else
		fprintf(out, "closed loop, %u in flight", opt->concurrency);
	fprintf(out, ", %u threads; %u nodes, %llu groups, %llu keys ", opt->threads,
		opt->nodes_count, (unsigned long long)opt->groups, (unsigned long long)opt->keys);
	if (opt->zipf_theta > 0)
		fprintf(out, "zipf %.4g", opt->zipf_theta);
	else
		fprintf(out, "uniform");
	fprintf(out, "; %.0f%% reads, %u-byte values\n", opt->read_ratio * 100, opt->value_size);
}

static void load_print_report(struct load_run *run, const struct load_totals *t)
{
	FILE *out = run->out;
	const struct load_counts *c = &t->c;
	double per_s = t->seconds > 0 ? 1 / t->seconds : 0;

	fprintf(out, "\n== flotilla-load: ");
	load_print_mode(out, &run->opt);
	fprintf(out, "measured     %.2f s after a %.2f s warm-up\n", t->seconds, run->opt.warmup_s);
	fprintf(out, "requests     %llu ok (%llu reads, %llu writes; %llu reads found nothing)\n",
		(unsigned long long)c->v[LOAD_STAT_OPS], (unsigned long long)c->v[LOAD_STAT_READS],
		(unsigned long long)c->v[LOAD_STAT_WRITES],
		(unsigned long long)c->v[LOAD_STAT_NOT_FOUND]);
	fprintf(out, "throughput   %.1f ops/s, %.3f MB/s\n", (double)c->v[LOAD_STAT_OPS] * per_s,
		(double)c->v[LOAD_STAT_BYTES] * per_s / 1e6);
	fprintf(out,
		"latency ms   min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean "
		"%.3f\n",
		load_ms(load_hist_is_empty(t->hist) ? 0 : t->hist->min),
		load_ms(load_hist_percentile(t->hist, 50)),
		load_ms(load_hist_percentile(t->hist, 90)),
		load_ms(load_hist_percentile(t->hist, 99)),
		load_ms(load_hist_percentile(t->hist, 99.9)), load_ms(t->hist->max),
		load_ms(load_hist_mean(t->hist)));
	fprintf(out, "errors       %llu (", (unsigned long long)load_counts_errors(c));
	load_print_error_kinds(out, c, true);
	fprintf(out, ")\n");
	fprintf(out, "routing      %llu redirects, %llu leader changes seen, %llu late answers\n",
		(unsigned long long)c->v[LOAD_STAT_REDIRECTS],
		(unsigned long long)c->v[LOAD_STAT_LEADER_CHANGES],
		(unsigned long long)c->v[LOAD_STAT_LATE]);
	fprintf(out, "connections  %llu lost, %llu failed connects\n",
		(unsigned long long)c->v[LOAD_STAT_CONNS_LOST],
		(unsigned long long)c->v[LOAD_STAT_CONNECTS_FAILED]);
	if (run->opt.open_loop)
		fprintf(
		    out,
		    "open loop    %llu requests due but never sent (the cluster fell behind, or "
		    "--inflight-max was reached)\n",
		    (unsigned long long)t->unsent);
}

static double load_us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* Points of the latency distribution: for fractions q = 1 - 10^(-k/20),
 * k = 0, 1, ..., while 1/(1-q) stays within the number of values, then the
 * max. Calls point(q, value_ns) for each. */
static void load_distribution(const struct load_hist *hist,
			      void (*point)(double q, uint64_t value_ns, void *arg), void *arg)
{
	if (load_hist_is_empty(hist))
		return;
	for (int k = 0; k <= 200; k++) {
		double q = 1 - pow(10, -k / 20.0);

		if (1 / (1 - q) > (double)hist->total)
			break;
		point(q, load_hist_percentile(hist, q * 100), arg);
	}
	point(1, hist->max, arg);
}

struct load_json_point {
	FILE *f;
	const char *sep;
};

static void load_json_point(double q, uint64_t value_ns, void *arg)
{
	struct load_json_point *p = arg;

	fprintf(p->f, "%s\n    {\"percentile\": %.6g, \"latency_us\": %.1f}", p->sep, q * 100,
		load_us(value_ns));
	p->sep = ",";
}

static void load_json_write(FILE *f, struct load_run *run, const struct load_totals *t)
{
	const struct load_options *o = &run->opt;
	const struct load_counts *c = &t->c;
	struct load_json_point point = {.f = f, .sep = ""};

	fprintf(f, "{\n  \"mode\": \"%s\", \"concurrency\": %u, \"rate\": %.1f, \"threads\": %u,\n",
		o->open_loop ? "open" : "closed", o->open_loop ? 0 : o->concurrency,
		o->open_loop ? o->rate : 0, o->threads);
	fprintf(f, "  \"nodes\": %u, \"groups\": %llu, \"keys\": %llu, \"dist\": \"%s\", ",
		o->nodes_count, (unsigned long long)o->groups, (unsigned long long)o->keys,
		o->zipf_theta > 0 ? "zipf" : "uniform");
	fprintf(f, "\"zipf_theta\": %.4g, \"read_ratio\": %.4g, \"value_size\": %u,\n",
		o->zipf_theta, o->read_ratio, o->value_size);
	fprintf(f, "  \"warmup_s\": %.3f, \"duration_s\": %.3f, \"timeout_ms\": %u,\n", o->warmup_s,
		t->seconds, o->timeout_ms);
	fprintf(f, "  \"ops_per_s\": %.1f, \"mb_per_s\": %.4f, \"unsent\": %llu,\n",
		t->seconds > 0 ? (double)c->v[LOAD_STAT_OPS] / t->seconds : 0,
		t->seconds > 0 ? (double)c->v[LOAD_STAT_BYTES] / t->seconds / 1e6 : 0,
		(unsigned long long)t->unsent);
	fprintf(f, "  \"errors\": %llu,\n ", (unsigned long long)load_counts_errors(c));
	for (int i = 0; i < LOAD_STAT_COUNT; i++)
		fprintf(f, " \"%s\": %llu,", load_stat_names[i], (unsigned long long)c->v[i]);
	fprintf(f, "\n  \"latency_us\": {\"min\": %.1f, \"mean\": %.1f, \"max\": %.1f",
		load_us(load_hist_is_empty(t->hist) ? 0 : t->hist->min),
		load_us(load_hist_mean(t->hist)), load_us(t->hist->max));
	for (size_t i = 0; i < sizeof(load_percentiles) / sizeof(load_percentiles[0]); i++)
		fprintf(f, ", \"p%g\": %.1f", load_percentiles[i],
			load_us(load_hist_percentile(t->hist, load_percentiles[i])));
	fprintf(f, "},\n  \"timeline\": [");
	for (uint32_t i = 0; i < run->samples_count; i++) {
		const struct load_sample *s = &run->samples[i];

		fprintf(
		    f,
		    "%s\n    {\"t_s\": %.3f, \"warmup\": %s, \"ops_per_s\": %.1f, \"mb_per_s\": "
		    "%.4f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p99.9_us\": %.1f, \"errors\": "
		    "%llu, \"redirects\": %llu, \"leader_changes\": %llu}",
		    i > 0 ? "," : "", s->t_s, s->warmup ? "true" : "false", s->ops_per_s,
		    s->mb_per_s, load_us(s->p50_ns), load_us(s->p99_ns), load_us(s->p999_ns),
		    (unsigned long long)s->errors, (unsigned long long)s->redirects,
		    (unsigned long long)s->leader_changes);
	}
	if (run->check.done)
		fprintf(
		    f,
		    "\n  ],\n  \"check\": {\"linearizable\": %s, \"keys\": %llu, \"operations\": "
		    "%llu, \"unknown_outcome\": %llu, \"ops_max_per_key\": %llu, "
		    "\"violations\": %llu, \"undecided\": %llu, \"seconds\": %.3f",
		    run->check.result.violations + run->check.result.undecided == 0 ? "true"
										    : "false",
		    (unsigned long long)run->check.result.keys_count,
		    (unsigned long long)run->check.result.ops_count,
		    (unsigned long long)run->check.result.pending_count,
		    (unsigned long long)run->check.result.ops_max_per_key,
		    (unsigned long long)run->check.result.violations,
		    (unsigned long long)run->check.result.undecided, run->check.seconds);
	fprintf(f, "%s,\n  \"latency_distribution\": [", run->check.done ? "}" : "\n  ]");
	load_distribution(t->hist, load_json_point, &point);
	fprintf(f, "\n  ]\n}\n");
}

/* Returns 0 or EXIT_RUN after saying why. */
static int load_write_json(struct load_run *run, const struct load_totals *t)
{
	const char *path = run->opt.json_path;
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
	int failed;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot write %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	load_json_write(f, run, t);
	failed = ferror(f) || fflush(f) != 0;
	if (f != stdout)
		failed |= fclose(f) != 0;
	if (failed) {
		fprintf(stderr, "flotilla-load: writing %s failed\n", path);
		return EXIT_RUN;
	}
	return 0;
}

static bool load_has_program(const char *name)
{
	const char *path = getenv("PATH");

	while (path != NULL && *path != '\0') {
		size_t len = strcspn(path, ":");
		char candidate[PATH_MAX];

		if (len > 0 &&
		    snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, path, name) <
			(int)sizeof(candidate) &&
		    access(candidate, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

struct load_plot_points {
	FILE *f;
	double total; /* Values in the histogram. */
};

static void load_plot_point(double q, uint64_t value_ns, void *arg)
{
	struct load_plot_points *p = arg;

	/* x = 1 / (1 - q) puts p90, p99, p99.9 ... at equal steps on a log
	 * axis; the max sits at x = values, the rank it has. */
	fprintf(p->f, "%.6g %.6f\n", q < 1 ? 1 / (1 - q) : p->total, load_ms(value_ns));
}

/* Draw the plot with gnuplot: throughput (and p50/p99) per second on top,
 * the latency distribution of the measured requests below. Returns 0, or
 * EXIT_RUN when gnuplot failed; a missing gnuplot is said and skipped. */
static int load_write_plot(struct load_run *run, const struct load_totals *t)
{
	const char *path = run->opt.plot_path;
	struct load_plot_points points = {.total = (double)t->hist->total};
	FILE *gp;

	if (!load_has_program("gnuplot")) {
		fprintf(stderr, "flotilla-load: --plot: gnuplot is not installed (Debian: apt-get "
				"install gnuplot-nox); no plot drawn\n");
		return 0;
	}
	if (strpbrk(path, "'\"\n\\") != NULL) {
		fprintf(stderr, "flotilla-load: --plot: quotes or backslashes in '%s'\n", path);
		return EXIT_RUN;
	}
	gp = popen("gnuplot", "w");
	if (gp == NULL) {
		fprintf(stderr, "flotilla-load: --plot: cannot run gnuplot: %s\n", strerror(errno));
		return EXIT_RUN;
	}
	fprintf(gp, "$timeline << EOD\n");
	for (uint32_t i = 0; i < run->samples_count; i++)
		fprintf(gp, "%.3f %.1f %.6f %.6f\n", run->samples[i].t_s, run->samples[i].ops_per_s,
			load_ms(run->samples[i].p50_ns), load_ms(run->samples[i].p99_ns));
	fprintf(gp, "EOD\n$latency << EOD\n");
	points.f = gp;
	load_distribution(t->hist, load_plot_point, &points);
	fprintf(gp,
		"EOD\n"
		"set terminal pngcairo size 1200,1000 noenhanced\n"
		"set output '%s'\n"
		"set multiplot layout 2,1 title 'flotilla-load: %s loop, %u nodes, %llu groups'\n"
		"set grid\n"
		"set xlabel 'time (s)'\nset ylabel 'ops/s'\nset y2label 'latency (ms)'\n"
		"set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
		"set key top left\n"
		"plot $timeline using 1:2 with lines lw 2 title 'ops/s', \\\n"
		"     $timeline using 1:3 axes x1y2 with lines title 'p50 ms', \\\n"
		"     $timeline using 1:4 axes x1y2 with lines title 'p99 ms'\n"
		"unset y2label\nunset y2tics\nset ytics mirror\nset yrange [0:*]\n"
		"set logscale x\nset xlabel 'percentile'\nset ylabel 'latency (ms)'\n"
		/* Tic labels are formats to gnuplot: a percent sign is "%%" there,
		 * "%%%%" here. */
		"set xtics ('0%%%%' 1, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, "
		"'99.99%%%%' 10000, '99.999%%%%' 100000, '99.9999%%%%' 1000000)\n"
		"plot $latency using 1:2 with steps lw 2 title 'latency by percentile (measured)'\n"
		"unset multiplot\n",
		path, run->opt.open_loop ? "open" : "closed", run->opt.nodes_count,
		(unsigned long long)run->opt.groups);
	if (pclose(gp) != 0) {
		fprintf(stderr, "flotilla-load: --plot: gnuplot failed\n");
		return EXIT_RUN;
	}
	fprintf(run->out, "plot: %s\n", path);
	return 0;
}

/* --- The check. --- */

static void load_check_print(const struct lincheck_violation *violation, void *arg)
{
	struct load_check *c = arg;

	if (c->printed++ < LOAD_CHECK_PRINT_MAX)
		lincheck_print_violation(c->out, violation);
}

static int load_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A test of the checker on a real history, enabled by the environment
 * variable FLOTILLA_LOAD_CHECK_DROP_WRITE=1: leave out of ops one
 * acknowledged write that a read saw. A read then sees a value nobody wrote,
 * which the check must report. Returns the new count. */
static uint64_t load_check_drop_write(FILE *out, struct lincheck_op *ops, uint64_t count)
{
	const char *env = getenv("FLOTILLA_LOAD_CHECK_DROP_WRITE");
	uint64_t *seen, seen_count = 0, drop = UINT64_MAX;

	if (env == NULL || strcmp(env, "1") != 0)
		return count;
	seen = malloc((count + 1) * sizeof(*seen));
	if (seen == NULL)
		return count;
	for (uint64_t i = 0; i < count; i++)
		if (ops[i].kind == LINCHECK_READ && ops[i].return_ns != LINCHECK_PENDING &&
		    ops[i].value != LINCHECK_ABSENT)
			seen[seen_count++] = ops[i].value;
	qsort(seen, seen_count, sizeof(*seen), load_u64_cmp);
	/* The middle one of them, in the order of the history: a write among
	 * others, not the first of the run. */
	for (uint64_t pass = 0, found = 0; pass < 2 && drop == UINT64_MAX; pass++) {
		uint64_t target = found / 2, n = 0;

		for (uint64_t i = 0; i < count && drop == UINT64_MAX; i++) {
			if (ops[i].kind != LINCHECK_WRITE || ops[i].return_ns == LINCHECK_PENDING ||
			    bsearch(&ops[i].value, seen, seen_count, sizeof(*seen), load_u64_cmp) ==
				NULL)
				continue;
			if (pass == 1 && n == target)
				drop = i;
			n++;
		}
		found = n;
	}
	free(seen);
	if (drop == UINT64_MAX) {
		fprintf(out, "FLOTILLA_LOAD_CHECK_DROP_WRITE: no acknowledged write was read\n");
		return count;
	}
	fprintf(out,
		"FLOTILLA_LOAD_CHECK_DROP_WRITE: leaving out the acknowledged write of %llx to key "
		"%llu (a read saw it): the check must fail\n",
		(unsigned long long)ops[drop].value, (unsigned long long)ops[drop].key);
	memmove(&ops[drop], &ops[drop + 1], (count - drop - 1) * sizeof(*ops));
	return count - 1;
}

/* Returns 0 or EXIT_RUN after saying why. */
static int load_check_save(const char *path, const struct lincheck_op *ops, uint64_t count)
{
	FILE *f = fopen(path, "w");
	char line[LINCHECK_LINE_SIZE_MAX];
	int failed;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot write %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	fputs(LINCHECK_FILE_HEADER, f);
	for (uint64_t i = 0; i < count; i++) {
		lincheck_format(&ops[i], line);
		fputs(line, f);
	}
	failed = ferror(f);
	failed |= fclose(f) != 0;
	if (failed) {
		fprintf(stderr, "flotilla-load: writing %s failed\n", path);
		return EXIT_RUN;
	}
	return 0;
}

/* Check a history and print the verdict. Returns 0, EXIT_NOT_LINEARIZABLE,
 * EXIT_UNDECIDED or EXIT_RUN. */
static int load_check_history(struct load_check *c, bool initial_unknown, struct lincheck_op *ops,
			      uint64_t count)
{
	struct lincheck_config config = {.initial_unknown = initial_unknown};
	const struct lincheck_result *r = &c->result;
	uint64_t started = load_now_ns();
	int rv;

	count = load_check_drop_write(c->out, ops, count);
	rv = lincheck_check(ops, count, &config, &c->result, load_check_print, c);
	c->seconds = (double)(load_now_ns() - started) / NS_PER_S;
	if (rv != 0) {
		fprintf(stderr, "flotilla-load: cannot check the history: %s\n",
			rv == -EINVAL ? "an operation is malformed or a value was written twice"
				      : strerror(-rv));
		return EXIT_RUN;
	}
	c->done = true;
	if (c->printed > LOAD_CHECK_PRINT_MAX)
		fprintf(c->out, "(%llu more violations not shown)\n",
			(unsigned long long)(c->printed - LOAD_CHECK_PRINT_MAX));
	fprintf(
	    c->out,
	    "check        %s: %llu keys, %llu operations (%llu of unknown outcome, %llu of them "
	    "left out as irrelevant), at most %llu checked on one key; %llu configurations in "
	    "%.2f s\n",
	    r->violations > 0  ? "NOT LINEARIZABLE"
	    : r->undecided > 0 ? "UNDECIDED"
			       : "linearizable",
	    (unsigned long long)r->keys_count, (unsigned long long)r->ops_count,
	    (unsigned long long)r->pending_count, (unsigned long long)r->dropped_count,
	    (unsigned long long)r->ops_max_per_key, (unsigned long long)r->steps, c->seconds);
	if (r->violations > 0)
		fprintf(c->out, "check        %llu keys violate linearizability (above)\n",
			(unsigned long long)r->violations);
	if (r->undecided > 0)
		fprintf(c->out,
			"check        %llu keys undecided: their search needed more than %u MiB\n",
			(unsigned long long)r->undecided, LINCHECK_CACHE_SIZE_DEFAULT >> 20);
	if (r->violations > 0)
		return EXIT_NOT_LINEARIZABLE;
	return r->undecided > 0 ? EXIT_UNDECIDED : 0;
}

/* After the run: gather the threads' histories, save and check them. */
static int load_check_run(struct load_run *run)
{
	uint64_t count = 0, at = 0;
	struct lincheck_op *ops;
	int rv;

	for (uint32_t i = 0; i < run->opt.threads; i++) {
		if (run->threads[i].history_failed) {
			fprintf(stderr,
				"flotilla-load: out of memory for the history: not checked\n");
			return EXIT_RUN;
		}
		count += run->threads[i].history_count;
	}
	ops = malloc((count + 1) * sizeof(*ops));
	if (ops == NULL) {
		fprintf(stderr, "flotilla-load: out of memory for the history: not checked\n");
		return EXIT_RUN;
	}
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		memcpy(ops + at, run->threads[i].history,
		       run->threads[i].history_count * sizeof(*ops));
		at += run->threads[i].history_count;
	}
	rv = run->opt.check_history_path != NULL
		 ? load_check_save(run->opt.check_history_path, ops, count)
		 : 0;
	if (rv == 0)
		rv = load_check_history(&run->check, run->opt.check_initial_unknown, ops, count);
	free(ops);
	return rv;
}

/* --check-file: check a saved history. */
static int load_check_file(struct load_run *run)
{
	const char *path = run->opt.check_file_path;
	FILE *f = fopen(path, "r");
	struct lincheck_op *ops = NULL;
	uint64_t count = 0, bad_line = 0;
	int rv;

	if (f == NULL) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(errno));
		return EXIT_RUN;
	}
	rv = lincheck_read_file(f, &ops, &count, &bad_line);
	fclose(f);
	if (rv == -EINVAL) {
		fprintf(stderr, "flotilla-load: %s:%llu: not an operation of a history\n", path,
			(unsigned long long)bad_line);
		return EXIT_RUN;
	}
	if (rv != 0) {
		fprintf(stderr, "flotilla-load: cannot read %s: %s\n", path, strerror(-rv));
		return EXIT_RUN;
	}
	rv = load_check_history(&run->check, run->opt.check_initial_unknown, ops, count);
	free(ops);
	return rv;
}

/* --- Set-up and main. --- */

static void load_thread_deinit(struct load_thread *t)
{
	for (uint32_t i = 0; i < LOAD_NODES_MAX; i++)
		client_close(&t->conns[i].client);
	if (t->epfd >= 0)
		close(t->epfd);
	pthread_mutex_destroy(&t->lock);
	free(t->reqs);
	free(t->value);
	free(t->interval_hist);
	free(t->measured_hist);
	free(t->published_hist);
	free(t->history);
}

/* Give thread index its share of the slots (closed loop: of the
 * concurrency; open loop: of the in-flight limit and of the rate). Returns
 * 0 or -ENOMEM, -errno from epoll_create1. */
static int load_thread_init(struct load_thread *t, struct load_run *run, uint32_t index)
{
	const struct load_options *o = &run->opt;
	uint32_t total = o->open_loop ? o->inflight_max : o->concurrency;
	uint64_t seed = o->seed ^ (0x5851f42d4c957f2dull * (index + 1));

	memset(t, 0, sizeof(*t));
	t->run = run;
	t->index = index;
	t->epfd = -1;
	for (uint32_t i = 0; i < LOAD_NODES_MAX; i++)
		t->conns[i].client.fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->reqs_count = total / o->threads + (index < total % o->threads ? 1 : 0);
	t->reqs = calloc(t->reqs_count > 0 ? t->reqs_count : 1, sizeof(*t->reqs));
	t->value = malloc(o->value_size > 0 ? o->value_size : 1);
	t->interval_hist = malloc(sizeof(*t->interval_hist));
	t->measured_hist = malloc(sizeof(*t->measured_hist));
	t->published_hist = malloc(sizeof(*t->published_hist));
	if (t->reqs == NULL || t->value == NULL || t->interval_hist == NULL ||
	    t->measured_hist == NULL || t->published_hist == NULL)
		return -ENOMEM;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0)
		return -errno;
	load_hist_reset(t->interval_hist);
	load_hist_reset(t->measured_hist);
	load_hist_reset(t->published_hist);
	for (int i = 0; i < 4; i++)
		t->rng[i] = load_splitmix(&seed);
	for (uint32_t i = 0; i < o->value_size; i++)
		t->value[i] = (unsigned char)load_rng_next(t->rng);
	/* Closed loop: every slot starts busy, and frees itself after the end. */
	t->free_head = UINT32_MAX;
	if (o->open_loop) {
		for (uint32_t i = t->reqs_count; i-- > 0;) {
			t->reqs[i].next_free = t->free_head;
			t->free_head = i;
		}
		t->due_seq = 0;
		t->next_due_ns = load_due_ns(t, 0);
	}
	return 0;
}

/* Sum the measured counts of every thread (after they ended). */
static void load_totals(struct load_run *run, struct load_totals *t)
{
	uint64_t end = load_end_ns(run);

	memset(&t->c, 0, sizeof(t->c));
	load_hist_reset(t->hist);
	t->unsent = 0;
	for (uint32_t i = 0; i < run->opt.threads; i++) {
		load_counts_add(&t->c, &run->threads[i].measured);
		load_hist_add(t->hist, run->threads[i].measured_hist);
		t->unsent += run->threads[i].unsent;
	}
	t->seconds = end > run->measure_ns ? (double)(end - run->measure_ns) / NS_PER_S : 0;
}

/* Start the threads, report progress until the end, wait for them. Returns
 * 0 or EXIT_RUN. */
static int load_run_threads(struct load_run *run)
{
	const struct load_options *o = &run->opt;
	struct sigaction sa = {.sa_handler = load_on_signal};
	sigset_t block, old;
	uint32_t started = 0;
	int rv = 0;

	/* The load threads never see SIGINT/SIGTERM: the reporter handles them. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; started < o->threads; started++) {
		if (pthread_create(&run->threads[started].pthread, NULL, load_thread_main,
				   &run->threads[started]) != 0) {
			fprintf(stderr, "flotilla-load: cannot start thread %u\n", started);
			atomic_store(&run->end_ns, run->start_ns); /* The others stop at once. */
			rv = EXIT_RUN;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv == 0) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		load_report_progress(run);
	}
	for (uint32_t i = 0; i < started; i++)
		pthread_join(run->threads[i].pthread, NULL);
	return rv;
}

/* Everything after the options: returns the exit status. */
static int load_main(struct load_run *run)
{
	struct load_options *o = &run->opt;
	struct load_totals totals = {.hist = malloc(sizeof(struct load_hist))};
	uint32_t initialized = 0;
	int rv = EXIT_RUN;

	run->leaders = calloc(o->groups, sizeof(*run->leaders));
	run->threads = calloc(o->threads, sizeof(*run->threads));
	run->samples_max = (uint32_t)ceil(o->warmup_s + o->duration_s) + 2;
	run->samples = calloc(run->samples_max, sizeof(*run->samples));
	if (totals.hist == NULL || run->leaders == NULL || run->threads == NULL ||
	    run->samples == NULL) {
		fprintf(stderr, "flotilla-load: out of memory\n");
		goto out;
	}
	if (o->zipf_theta > 0 && load_zipf_init(&run->zipf, o->keys, o->zipf_theta) != 0)
		goto out;
	load_zipf_scatter_init(&run->scatter, o->keys, o->seed);
	fprintf(run->out, "flotilla-load: ");
	load_print_mode(run->out, o);
	if (load_discover(run) != 0)
		goto out;
	run->start_ns = load_now_ns() + 100 * NS_PER_MS; /* Time for the threads to start. */
	run->measure_ns = run->start_ns + (uint64_t)(o->warmup_s * (double)NS_PER_S);
	atomic_init(&run->end_ns, run->measure_ns + (uint64_t)(o->duration_s * (double)NS_PER_S));
	for (; initialized < o->threads; initialized++) {
		if (load_thread_init(&run->threads[initialized], run, initialized) != 0) {
			fprintf(stderr, "flotilla-load: cannot set up thread %u\n", initialized);
			initialized++;
			goto out;
		}
	}
	if (load_run_threads(run) != 0)
		goto out;
	load_totals(run, &totals);
	load_print_report(run, &totals);
	rv = o->check ? load_check_run(run) : 0;
	if (o->json_path != NULL && load_write_json(run, &totals) != 0)
		rv = EXIT_RUN;
	if (o->plot_path != NULL && load_write_plot(run, &totals) != 0)
		rv = EXIT_RUN;
out:
	for (uint32_t i = 0; i < initialized; i++)
		load_thread_deinit(&run->threads[i]);
	free(run->threads);
	free(run->samples);
	free(run->leaders);
	free(totals.hist);
	return rv;
}

int main(int argc, char **argv)
{
	static struct load_run run;
	struct load_options *o = &run.opt;
	uint32_t total;
	int rv;

	rv = load_parse_options(o, argc, argv);
	if (rv != 0)
		return rv;
	if (o->threads > (o->open_loop ? o->inflight_max : o->concurrency))
		o->threads = o->open_loop ? o->inflight_max : o->concurrency;
	total = o->open_loop ? o->inflight_max : o->concurrency;
	if ((total + o->threads - 1) / o->threads > LOAD_SLOTS_MAX) {
		fprintf(stderr,
			"flotilla-load: more than %u requests in flight per thread: add "
			"--threads\n",
			LOAD_SLOTS_MAX);
		return EXIT_USAGE;
	}
	run.out = o->json_path != NULL && strcmp(o->json_path, "-") == 0 ? stderr : stdout;
	setvbuf(run.out, NULL, _IOLBF, 0);
	run.check.out = run.out;
	if (o->check_file_path != NULL)
		return load_check_file(&run);
	/* A test of the check against real anomalies: GETs become LOCAL_GETs
	 * (no read barrier) to any node, so followers that lag answer stale
	 * values, which the check must report. */
	run.stale_reads = o->check && getenv("FLOTILLA_LOAD_CHECK_STALE_READS") != NULL &&
			  strcmp(getenv("FLOTILLA_LOAD_CHECK_STALE_READS"), "1") == 0;
	if (run.stale_reads)
		fprintf(run.out, "FLOTILLA_LOAD_CHECK_STALE_READS: reads without a read barrier, "
				 "from any node: the check should fail\n");
	/* Values of earlier runs on the same cluster must not pass for this
	 * run's: the nonce differs from run to run. */
	run.nonce = load_splitmix(&(uint64_t){o->seed ^ load_now_ns() ^ (uint64_t)getpid() << 32});
	return load_main(&run);
}
