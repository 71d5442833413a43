/* flotilla-peer: one Flotilla node per process, driven from inside the
 * process through the public API (include/flotilla.h), in the shape that
 * raft-peer runs canonical/raft: proposals are fl_propose() calls made by
 * the embedder's own thread in the leader's process, with no client, no
 * client protocol and no second process in the path. bench/peers/compare
 * starts three of these, node i listening on 127.0.0.1:--port-base + i - 1
 * (each node must know the others' addresses when it starts), every one
 * creating group 1 with the same three voters, and reads what they print.
 *
 * The state machine counts the entries it applies; a snapshot saves the
 * count, and the count is the state's digest for consistency checks. The
 * library runs with its defaults otherwise (fl_node_config_default: election
 * timeout 1,000 ms, heartbeat 100 ms, a snapshot and a consistency check
 * every 10,000 entries) and 2 shards, as tools/cluster starts flotilla-node.
 *
 * Mode:
 *   saturate  The node that becomes leader commits one entry of its own (and
 *             prints `leader` with the CLOCK_MONOTONIC time it was applied),
 *             then its main thread (the embedder's thread) keeps --window
 *             fl_propose() calls of --size bytes outstanding: each callback,
 *             on the group's shard thread, records the latency since its
 *             fl_propose() call and hands the slot back; the main thread
 *             issues the next proposal for every slot handed back. After
 *             --warmup-s it prints `window-start`, after --duration-s more
 *             `window-end` and `result` (entries and bytes completed in the
 *             window, latency percentiles of those, the process's CPU from
 *             getrusage), then exits. --window 1 is the low-load shape.
 *             Proposals refused with -EAGAIN (a full queue or uncommitted
 *             log: back-pressure) are retried and counted as `retries`.
 *
 * Output: one line per event on stdout, `<event> key=value ...`, flushed at
 * each line, in raft-peer's format. Flotilla's log goes to stderr. A node
 * runs until SIGTERM or SIGKILL (or, the saturation leader, until its result
 * is out) and exits without fl_node_stop(): nothing here needs a clean stop
 * (the caller removes the directory). Exit status: 0 done, 1 a run failed
 * (a proposal failed: leadership lost, an I/O error), 2 bad usage, 3 the
 * node could not start (for example its port is in use: retry on another). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/peers/peer_common.h"
#include "flotilla.h"

#define PEER_NODES_MAX  7
#define PEER_WINDOW_MAX 65536
#define PEER_SIZE_MAX   (1u << 20)
#define PEER_GROUP      1
#define PEER_RETRY_NS   100000ull /* Back-off after -EAGAIN. */

enum { PEER_EXIT_RUN = 1, PEER_EXIT_USAGE = 2, PEER_EXIT_START = 3 };

struct peer_opt {
	unsigned id, nodes, port_base, shards;
	const char *dir;
	unsigned election_ms, heartbeat_ms, snapshot_entries;
	unsigned window, size;
	double warmup_s, duration_s;
};

struct peer;

/* One outstanding fl_propose() of the saturation run. */
struct peer_slot {
	struct peer *p;
	uint64_t submit_ns;
};

/* Fields below mu are shared between the main thread and the shard thread's
 * callbacks, and read or written only with mu held. */
struct peer {
	struct peer_opt opt;
	struct fl_node *node;
	uint64_t applied; /* State machine; touched by the group's shard thread only. */
	void *payload;    /* --size bytes; fl_propose() copies it. */
	struct peer_slot *slots;

	pthread_mutex_t mu;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled when the main thread waits. */
	uint64_t leader, term;
	struct peer_slot **free_slots; /* Slots whose proposal completed; a stack. */
	uint32_t free_count;
	bool waiting; /* The main thread sleeps on cond. */
	bool in_window;
	int failed; /* First error a callback saw, else 0. */
	uint64_t window_entries, errors, retries;
	struct peer_samples samples;
};

/* --- The state machine: a count of applied entries. --- */

static void peer_sm_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
			  uint64_t *results)
{
	struct peer *p = ctx;

	(void)group;
	for (uint32_t i = 0; i < count; i++)
		results[i] = entries[i].index;
	p->applied += count;
}

static void peer_sm_leader_changed(void *ctx, uint64_t group, uint64_t leader, uint64_t term)
{
	struct peer *p = ctx;

	(void)group;
	pthread_mutex_lock(&p->mu);
	p->leader = leader;
	p->term = term;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
}

static int peer_sm_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct peer *p = ctx;

	(void)group;
	return fl_snapshot_write(w, &p->applied, sizeof(p->applied));
}

static int peer_sm_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct peer *p = ctx;
	uint64_t applied;
	long n;

	(void)group;
	n = fl_snapshot_read(r, &applied, sizeof(applied));
	if (n < 0)
		return (int)n;
	if (n != (long)sizeof(applied))
		return -EIO; /* Verified bytes of another length: not ours. */
	p->applied = applied;
	return 0;
}

static uint64_t peer_sm_digest(void *ctx, uint64_t group)
{
	struct peer *p = ctx;

	(void)group;
	return p->applied;
}

/* --- Saturation. --- */

/* Runs on the group's shard thread: record the latency, hand the slot back
 * to the main thread, and wake it if it sleeps. */
static void peer_propose_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct peer_slot *slot = arg;
	struct peer *p = slot->p;
	uint64_t now = peer_now_ns();

	(void)result;
	(void)leader;
	pthread_mutex_lock(&p->mu);
	if (rv == -EAGAIN) {
		p->retries++;
	} else if (rv != 0) {
		p->errors++;
		if (p->failed == 0)
			p->failed = rv;
	} else if (p->in_window) {
		p->window_entries++;
		peer_samples_add(&p->samples, now - slot->submit_ns);
	}
	p->free_slots[p->free_count++] = slot;
	if (p->waiting)
		pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
}

/* Sleep on cond until deadline_ns (CLOCK_MONOTONIC) or a signal. mu held. */
static void peer_wait_until(struct peer *p, uint64_t deadline_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ns / PEER_NS_PER_S),
			      .tv_nsec = (long)(deadline_ns % PEER_NS_PER_S)};

	p->waiting = true;
	pthread_cond_timedwait(&p->cond, &p->mu, &ts);
	p->waiting = false;
}

static void peer_print_result(struct peer *p, uint64_t start_ns, uint64_t end_ns, uint64_t cpu_ns)
{
	double seconds = (double)(end_ns - start_ns) / 1e9;
	char prefix[512];

	snprintf(prefix, sizeof(prefix),
		 "result id=%u window=%u size=%u entries=%llu seconds=%.3f entries_per_s=%.1f "
		 "mb_per_s=%.3f cpu_s=%.3f errors=%llu retries=%llu",
		 p->opt.id, p->opt.window, p->opt.size, (unsigned long long)p->window_entries,
		 seconds, (double)p->window_entries / seconds,
		 (double)p->window_entries * p->opt.size / seconds / 1e6, (double)cpu_ns / 1e9,
		 (unsigned long long)p->errors, (unsigned long long)p->retries);
	peer_print_percentiles(prefix, &p->samples);
}

/* The embedder's thread: keep --window proposals outstanding until the
 * window ends, then print the result and exit. Called with mu held. */
static void peer_load(struct peer *p)
{
	uint64_t on_ns = peer_now_ns() + (uint64_t)(p->opt.warmup_s * 1e9);
	uint64_t off_ns = on_ns + (uint64_t)(p->opt.duration_s * 1e9);
	uint64_t start_ns = 0, cpu_ns = 0, retry_ns = 0;

	for (;;) {
		uint64_t now = peer_now_ns();
		struct peer_slot *slot;
		int rv;

		if (p->failed != 0) {
			fprintf(stderr, "flotilla-peer %u: proposal failed: %s\n", p->opt.id,
				fl_strerror(p->failed));
			peer_exit(PEER_EXIT_RUN);
		}
		if (!p->in_window && now >= on_ns) {
			p->in_window = true;
			start_ns = now;
			cpu_ns = peer_cpu_ns();
			printf("window-start id=%u mono_ns=%llu\n", p->opt.id,
			       (unsigned long long)now);
		}
		if (now >= off_ns) {
			p->in_window = false;
			cpu_ns = peer_cpu_ns() - cpu_ns;
			printf("window-end id=%u mono_ns=%llu\n", p->opt.id,
			       (unsigned long long)now);
			peer_print_result(p, start_ns, now, cpu_ns);
			peer_exit(0);
		}
		if (p->free_count == 0 || now < retry_ns) {
			uint64_t deadline = p->in_window ? off_ns : on_ns;

			if (p->free_count > 0 && retry_ns < deadline)
				deadline = retry_ns;
			peer_wait_until(p, deadline);
			continue;
		}
		slot = p->free_slots[--p->free_count];
		pthread_mutex_unlock(&p->mu);
		slot->submit_ns = peer_now_ns();
		rv = fl_propose(p->node, PEER_GROUP, p->payload, p->opt.size, peer_propose_done,
				slot);
		pthread_mutex_lock(&p->mu);
		if (rv == -EAGAIN) { /* Back-pressure: the callback will not run. */
			p->retries++;
			p->free_slots[p->free_count++] = slot;
			retry_ns = peer_now_ns() + PEER_RETRY_NS;
		} else if (rv != 0) {
			fprintf(stderr, "flotilla-peer %u: fl_propose: %s\n", p->opt.id,
				fl_strerror(rv));
			peer_exit(PEER_EXIT_RUN);
		}
	}
}

/* Wait until this node leads the group, commit one entry of its term
 * (retrying when leadership moved first), print `leader`, run the load. */
static void peer_lead(struct peer *p)
{
	static const uint64_t zero;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		uint64_t result = 0, leader = 0, term;
		int rv;

		while (p->leader != p->opt.id)
			pthread_cond_wait(&p->cond, &p->mu);
		term = p->term;
		pthread_mutex_unlock(&p->mu);
		rv = fl_propose_sync(p->node, PEER_GROUP, &zero, sizeof(zero), &result, &leader);
		pthread_mutex_lock(&p->mu);
		if (rv == 0) {
			printf("leader id=%u term=%llu index=%llu mono_ns=%llu\n", p->opt.id,
			       (unsigned long long)term, (unsigned long long)result,
			       (unsigned long long)peer_now_ns());
			peer_load(p); /* Does not return. */
		}
		fprintf(stderr, "flotilla-peer %u: first entry of term %llu failed: %s\n",
			p->opt.id, (unsigned long long)term, fl_strerror(rv));
		if (p->leader == p->opt.id && p->term == term) /* Not a lost leadership. */
			peer_exit(PEER_EXIT_RUN);
	}
}

/* --- Start-up. --- */

static int peer_init(struct peer *p)
{
	pthread_condattr_t attr;

	if (pthread_condattr_init(&attr) != 0 ||
	    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&p->cond, &attr) != 0 || pthread_mutex_init(&p->mu, NULL) != 0)
		return -ENOMEM;
	pthread_condattr_destroy(&attr);
	p->payload = malloc(p->opt.size);
	p->slots = calloc(p->opt.window, sizeof(*p->slots));
	p->free_slots = calloc(p->opt.window, sizeof(*p->free_slots));
	if (p->payload == NULL || p->slots == NULL || p->free_slots == NULL)
		return -ENOMEM;
	memset(p->payload, 'x', p->opt.size);
	for (uint32_t i = 0; i < p->opt.window; i++) {
		p->slots[i].p = p;
		p->free_slots[p->free_count++] = &p->slots[i];
	}
	return 0;
}

static int peer_start(struct peer *p, char *address, size_t address_size)
{
	static char peer_addrs[PEER_NODES_MAX][64];
	struct fl_peer peers[PEER_NODES_MAX];
	uint64_t members[PEER_NODES_MAX];
	struct fl_node_config config;
	uint32_t peers_count = 0;
	int rv;

	fl_node_config_default(&config, p->opt.id);
	snprintf(address, address_size, "127.0.0.1:%u", p->opt.port_base + p->opt.id - 1);
	for (unsigned i = 1; i <= p->opt.nodes; i++) {
		members[i - 1] = i;
		if (i == p->opt.id)
			continue;
		snprintf(peer_addrs[peers_count], sizeof(peer_addrs[0]), "127.0.0.1:%u",
			 p->opt.port_base + i - 1);
		peers[peers_count] = (struct fl_peer){.id = i, .addr = peer_addrs[peers_count]};
		peers_count++;
	}
	config.data_dir = p->opt.dir;
	config.listen_addr = address;
	config.peers = peers;
	config.peers_count = peers_count;
	config.shards_count = p->opt.shards;
	config.election_timeout_ms = p->opt.election_ms;
	config.heartbeat_interval_ms = p->opt.heartbeat_ms;
	config.snapshot_entries = p->opt.snapshot_entries;
	config.sm = (struct fl_sm_ops){.apply = peer_sm_apply,
				       .leader_changed = peer_sm_leader_changed,
				       .save = peer_sm_save,
				       .restore = peer_sm_restore,
				       .digest = peer_sm_digest,
				       .ctx = p};
	rv = fl_node_start(&config, &p->node);
	if (rv != 0) {
		fprintf(stderr, "flotilla-peer %u: fl_node_start: %s\n", p->opt.id,
			fl_strerror(rv));
		return rv;
	}
	rv = fl_group_create(p->node, PEER_GROUP, members, p->opt.nodes, NULL, NULL);
	if (rv == FL_ERR_GROUP_EXISTS) /* Recovered from the directory: restarting. */
		rv = 0;
	if (rv != 0)
		fprintf(stderr, "flotilla-peer %u: fl_group_create: %s\n", p->opt.id,
			fl_strerror(rv));
	return rv;
}

static int peer_run(const struct peer_opt *opt)
{
	static struct peer p; /* Its callbacks run until the process exits. */
	char address[64];

	p.opt = *opt;
	if (peer_init(&p) != 0)
		return PEER_EXIT_RUN;
	if (mkdir(opt->dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "flotilla-peer %u: %s: %s\n", opt->id, opt->dir, strerror(errno));
		return PEER_EXIT_START;
	}
	if (peer_start(&p, address, sizeof(address)) != 0) {
		fprintf(stderr, "flotilla-peer %u: could not start on %s\n", opt->id, address);
		peer_exit(PEER_EXIT_START);
	}
	printf("started id=%u address=%s pid=%ld\n", opt->id, address, (long)getpid());
	peer_lead(&p); /* Does not return. */
	return PEER_EXIT_RUN;
}

/* --- Options. --- */

static void peer_usage(FILE *f)
{
	fprintf(f,
		"usage: flotilla-peer [--mode saturate] --id N --dir DIR --port-base P [options]\n"
		"  --nodes N            voters 1..N, node i on 127.0.0.1:P+i-1 (3)\n"
		"  --shards N           shard threads (2)\n"
		"  --election-ms MS     election timeout (1000)\n"
		"  --heartbeat-ms MS    heartbeat interval (100)\n"
		"  --snapshot-entries N entries between snapshots (10000)\n"
		"  --window W           fl_propose calls outstanding (64)\n"
		"  --size BYTES         entry payload (128)\n"
		"  --warmup-s S         seconds before the window (1)\n"
		"  --duration-s S       measured seconds (10)\n");
}

static bool peer_parse_one(int c, const char *arg, struct peer_opt *o)
{
	switch (c) {
	case 'm':
		return strcmp(arg, "saturate") == 0;
	case 'i':
		return peer_parse_uint(arg, 1, PEER_NODES_MAX, &o->id);
	case 'd':
		o->dir = arg;
		return true;
	case 'n':
		return peer_parse_uint(arg, 1, PEER_NODES_MAX, &o->nodes);
	case 'p':
		return peer_parse_uint(arg, 1024, 65535 - PEER_NODES_MAX, &o->port_base);
	case 'S':
		return peer_parse_uint(arg, 1, 1024, &o->shards);
	case 'e':
		return peer_parse_uint(arg, 10, 600000, &o->election_ms);
	case 'h':
		return peer_parse_uint(arg, 1, 600000, &o->heartbeat_ms);
	case 'x':
		return peer_parse_uint(arg, 0, UINT_MAX, &o->snapshot_entries);
	case 'w':
		return peer_parse_uint(arg, 1, PEER_WINDOW_MAX, &o->window);
	case 's':
		return peer_parse_uint(arg, 1, PEER_SIZE_MAX, &o->size);
	case 'u':
		return peer_parse_seconds(arg, &o->warmup_s);
	case 't':
		return peer_parse_seconds(arg, &o->duration_s);
	default:
		return false;
	}
}

static int peer_parse(int argc, char **argv, struct peer_opt *o)
{
	static const struct option longopts[] = {
	    {"mode", required_argument, NULL, 'm'},
	    {"id", required_argument, NULL, 'i'},
	    {"dir", required_argument, NULL, 'd'},
	    {"nodes", required_argument, NULL, 'n'},
	    {"port-base", required_argument, NULL, 'p'},
	    {"shards", required_argument, NULL, 'S'},
	    {"election-ms", required_argument, NULL, 'e'},
	    {"heartbeat-ms", required_argument, NULL, 'h'},
	    {"snapshot-entries", required_argument, NULL, 'x'},
	    {"window", required_argument, NULL, 'w'},
	    {"size", required_argument, NULL, 's'},
	    {"warmup-s", required_argument, NULL, 'u'},
	    {"duration-s", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	bool ok = true;
	int c;

	*o = (struct peer_opt){.nodes = 3,
			       .shards = 2,
			       .election_ms = 1000,
			       .heartbeat_ms = 100,
			       .snapshot_entries = 10000,
			       .window = 64,
			       .size = 128,
			       .warmup_s = 1,
			       .duration_s = 10};
	while (ok && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'H') {
			peer_usage(stdout);
			exit(0);
		}
		ok = peer_parse_one(c, optarg, o);
	}
	if (!ok || optind != argc || o->dir == NULL || o->id == 0 || o->id > o->nodes ||
	    o->port_base == 0 || o->heartbeat_ms >= o->election_ms || o->duration_s <= 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct peer_opt opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A write to a peer that has died must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (peer_parse(argc, argv, &opt) != 0) {
		peer_usage(stderr);
		return PEER_EXIT_USAGE;
	}
	return peer_run(&opt);
}
