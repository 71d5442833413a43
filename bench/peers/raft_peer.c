/* raft-peer: one canonical/raft node per process, for running Flotilla's
 * benchmark shapes against canonical/raft (libraft 0.15) side by side. It
 * uses the library's own libuv I/O backend (raft_uv_init, with the TCP
 * transport of raft_uv_tcp_init) on a real directory: the segmented log on
 * disk and real TCP on 127.0.0.1. bench/peers/compare starts three of these,
 * node i listening on --port-base + i - 1, bootstrapped with the same three
 * voters, and reads what they print.
 *
 * The state machine counts the entries it applies (and snapshots the count).
 * Pre-vote is on; the election timeout and heartbeat default to Flotilla's
 * (fl_node_config_default: 1,000 ms and 100 ms).
 *
 * Modes:
 *   serve     Whenever this node becomes leader of a new term, it applies one
 *             entry and prints `leader` with the CLOCK_MONOTONIC time its apply
 *             callback ran: the time the new leader has committed an entry of
 *             its term. Once every voter's match index has reached its last
 *             index, it prints `synced`. Used for election trials: the
 *             caller kills the leader with SIGKILL and reads the survivors'
 *             next `leader` line.
 *   saturate  The node that becomes leader keeps --window raft_apply calls of
 *             --size bytes outstanding: each callback records the latency
 *             since its raft_apply and issues the next. After --warmup-s it
 *             prints `window-start`, after --duration-s more `window-end` and
 *             `result` (entries and bytes completed in the window, latency
 *             percentiles of those, the leader's CPU from getrusage), then
 *             exits. --window 1 is the low-load (one at a time) shape.
 *   fsync     No Raft: writes --count blocks of --size bytes in turn into a
 *             preallocated, zeroed file in --dir (O_DIRECT where the file
 *             system allows it) and prints the latency percentiles, twice:
 *             each write followed by fdatasync (`kind=fdatasync`, Flotilla's
 *             way), then into an O_DSYNC file (`kind=dsync`, libraft's way).
 *             The device's cost of one durable write, for reading the other
 *             figures.
 *
 * Output: one line per event on stdout, `<event> key=value ...`, flushed at
 * each line. Errors go to stderr. A node runs until SIGTERM or SIGKILL (or,
 * the saturation leader, until its result is out) and never closes raft
 * cleanly: see peer_exit(). Exit status: 0 done, 1 a run failed (lost
 * leadership during a saturation run, an I/O error), 2 bad usage, 3 the node
 * could not start (for example its port is in use: retry on another). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <raft.h>
#include <raft/uv.h>
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
#include <uv.h>

#include "bench/peers/peer_common.h"

#define PEER_NODES_MAX       7
#define PEER_WINDOW_MAX      65536
#define PEER_SIZE_MAX        (1u << 20)
#define PEER_FSYNC_COUNT_MAX 1000000

enum { PEER_EXIT_RUN = 1, PEER_EXIT_USAGE = 2, PEER_EXIT_START = 3 };
enum peer_mode { PEER_MODE_SERVE, PEER_MODE_SATURATE, PEER_MODE_FSYNC };

struct peer_opt {
	enum peer_mode mode;
	unsigned id, nodes, port_base;
	const char *dir;
	unsigned election_ms, heartbeat_ms, snapshot_entries;
	unsigned window, size, count;
	double warmup_s, duration_s;
};

/* One outstanding raft_apply of the saturation run. */
struct peer_slot {
	struct raft_apply req;
	uint64_t submit_ns;
};

struct peer {
	struct peer_opt opt;
	uv_loop_t loop;
	uv_check_t check;     /* After each loop turn: did this node become leader? */
	uv_timer_t window_on; /* Saturation: warm-up over. */
	uv_timer_t window_off;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft_fsm fsm;
	struct raft raft;
	char address[64];
	uint64_t applied; /* State machine: entries applied. */

	raft_term led_term; /* Last term this node acted on as leader. */
	bool announced;     /* The entry of led_term committed. */
	bool synced;        /* `synced` printed for led_term. */
	struct raft_apply announce;

	struct peer_slot *slots; /* Saturation, --window of them. */
	bool load_started, in_window, window_done;
	uint32_t outstanding;
	uint64_t window_entries, errors;
	uint64_t window_start_ns, window_cpu_ns;
	struct peer_samples samples;
};

/* --- The state machine: a count of applied entries. --- */

static int peer_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct peer *p = fsm->data;

	(void)buf;
	p->applied++;
	*result = NULL;
	return 0;
}

static int peer_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct peer *p = fsm->data;

	*bufs = raft_malloc(sizeof(**bufs));
	if (*bufs == NULL)
		return RAFT_NOMEM;
	(*bufs)[0].len = sizeof(uint64_t);
	(*bufs)[0].base = raft_malloc(sizeof(uint64_t));
	if ((*bufs)[0].base == NULL) {
		raft_free(*bufs);
		return RAFT_NOMEM;
	}
	memcpy((*bufs)[0].base, &p->applied, sizeof(uint64_t));
	*n_bufs = 1;
	return 0;
}

static int peer_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct peer *p = fsm->data;

	if (buf->len != sizeof(uint64_t))
		return RAFT_MALFORMED;
	memcpy(&p->applied, buf->base, sizeof(uint64_t));
	raft_free(buf->base);
	return 0;
}

/* --- Saturation. --- */

static void peer_apply_done(struct raft_apply *req, int status, void *result);

/* Issue one apply of --size bytes for slot; the buffer goes to raft. */
static int peer_submit(struct peer *p, struct peer_slot *slot)
{
	struct raft_buffer buf = {.len = p->opt.size, .base = raft_malloc(p->opt.size)};
	int rv;

	if (buf.base == NULL)
		return RAFT_NOMEM;
	memset(buf.base, 'x', buf.len);
	slot->req.data = p;
	slot->submit_ns = peer_now_ns();
	rv = raft_apply(&p->raft, &slot->req, &buf, 1, peer_apply_done);
	if (rv != 0) {
		raft_free(buf.base);
		return rv;
	}
	p->outstanding++;
	return 0;
}

static void peer_apply_done(struct raft_apply *req, int status, void *result)
{
	struct peer *p = req->data;
	struct peer_slot *slot =
	    (struct peer_slot *)((char *)req - offsetof(struct peer_slot, req));
	int rv;

	(void)result;
	p->outstanding--;
	if (status != 0) {
		p->errors++;
		fprintf(stderr, "raft-peer %u: apply failed: %s\n", p->opt.id,
			raft_strerror(status));
		peer_exit(PEER_EXIT_RUN);
	}
	if (p->in_window) {
		p->window_entries++;
		peer_samples_add(&p->samples, peer_now_ns() - slot->submit_ns);
	}
	if (p->window_done)
		return;
	rv = peer_submit(p, slot);
	if (rv != 0) {
		p->errors++;
		fprintf(stderr, "raft-peer %u: raft_apply: %s\n", p->opt.id, raft_strerror(rv));
		peer_exit(PEER_EXIT_RUN);
	}
}

static void peer_on_window_on(uv_timer_t *timer)
{
	struct peer *p = timer->data;

	p->in_window = true;
	p->window_start_ns = peer_now_ns();
	p->window_cpu_ns = peer_cpu_ns();
	printf("window-start id=%u mono_ns=%llu\n", p->opt.id,
	       (unsigned long long)p->window_start_ns);
}

static void peer_on_window_off(uv_timer_t *timer)
{
	struct peer *p = timer->data;
	uint64_t now = peer_now_ns(), cpu = peer_cpu_ns() - p->window_cpu_ns;
	double seconds = (double)(now - p->window_start_ns) / 1e9;
	char prefix[512];

	p->in_window = false;
	p->window_done = true;
	printf("window-end id=%u mono_ns=%llu\n", p->opt.id, (unsigned long long)now);
	snprintf(prefix, sizeof(prefix),
		 "result id=%u window=%u size=%u entries=%llu seconds=%.3f entries_per_s=%.1f "
		 "mb_per_s=%.3f cpu_s=%.3f errors=%llu",
		 p->opt.id, p->opt.window, p->opt.size, (unsigned long long)p->window_entries,
		 seconds, (double)p->window_entries / seconds,
		 (double)p->window_entries * p->opt.size / seconds / 1e6, (double)cpu / 1e9,
		 (unsigned long long)p->errors);
	peer_print_percentiles(prefix, &p->samples);
	peer_exit(0);
}

static void peer_load_start(struct peer *p)
{
	uint64_t warmup_ms = (uint64_t)(p->opt.warmup_s * 1e3);
	uint64_t duration_ms = (uint64_t)(p->opt.duration_s * 1e3);

	p->load_started = true;
	uv_timer_start(&p->window_on, peer_on_window_on, warmup_ms, 0);
	uv_timer_start(&p->window_off, peer_on_window_off, warmup_ms + duration_ms, 0);
	for (uint32_t i = 0; i < p->opt.window; i++) {
		int rv = peer_submit(p, &p->slots[i]);

		if (rv != 0) {
			fprintf(stderr, "raft-peer %u: raft_apply: %s\n", p->opt.id,
				raft_strerror(rv));
			peer_exit(PEER_EXIT_RUN);
		}
	}
}

/* --- Leadership. --- */

static void peer_announce_done(struct raft_apply *req, int status, void *result)
{
	struct peer *p = req->data;
	uint64_t now = peer_now_ns();

	(void)result;
	if (status != 0) {
		fprintf(stderr, "raft-peer %u: first entry of term %llu failed: %s\n", p->opt.id,
			(unsigned long long)p->led_term, raft_strerror(status));
		return;
	}
	p->announced = true;
	printf("leader id=%u term=%llu index=%llu mono_ns=%llu\n", p->opt.id,
	       (unsigned long long)p->led_term, (unsigned long long)req->index,
	       (unsigned long long)now);
	if (p->opt.mode == PEER_MODE_SATURATE && !p->load_started)
		peer_load_start(p);
}

/* Whether every other voter has stored this leader's whole log. Reads the
 * leader's progress array, which struct raft exposes in raft.h (its entries
 * follow r->configuration.servers); libraft has no call for it. */
static bool peer_followers_synced(struct peer *p)
{
	struct raft *r = &p->raft;
	raft_index last = raft_last_index(r);

	for (unsigned i = 0; i < r->configuration.n; i++)
		if (r->configuration.servers[i].id != r->id &&
		    r->leader_state.progress[i].match_index < last)
			return false;
	return true;
}

/* Runs after each turn of the loop, so a change of role is seen in the
 * turn that made it. */
static void peer_on_check(uv_check_t *check)
{
	struct peer *p = check->data;
	struct raft *r = &p->raft;
	struct raft_buffer buf;
	int rv;

	if (raft_state(r) != RAFT_LEADER)
		return;
	if (r->current_term != p->led_term) {
		p->led_term = r->current_term;
		p->announced = false;
		p->synced = false;
		buf.len = 8;
		buf.base = raft_malloc(buf.len);
		if (buf.base == NULL)
			return;
		memset(buf.base, 0, buf.len);
		p->announce.data = p;
		rv = raft_apply(r, &p->announce, &buf, 1, peer_announce_done);
		if (rv != 0) {
			raft_free(buf.base);
			fprintf(stderr, "raft-peer %u: raft_apply: %s\n", p->opt.id,
				raft_strerror(rv));
		}
		return;
	}
	if (p->announced && !p->synced && peer_followers_synced(p)) {
		p->synced = true;
		printf("synced id=%u term=%llu index=%llu\n", p->opt.id,
		       (unsigned long long)p->led_term, (unsigned long long)raft_last_index(r));
	}
}

/* --- Start-up. --- */

static int peer_bootstrap(struct peer *p)
{
	struct raft_configuration conf;
	char address[64];
	int rv = 0;

	raft_configuration_init(&conf);
	for (unsigned i = 1; i <= p->opt.nodes && rv == 0; i++) {
		snprintf(address, sizeof(address), "127.0.0.1:%u", p->opt.port_base + i - 1);
		rv = raft_configuration_add(&conf, i, address, RAFT_VOTER);
	}
	if (rv == 0)
		rv = raft_bootstrap(&p->raft, &conf);
	raft_configuration_close(&conf);
	return rv == RAFT_CANTBOOTSTRAP ? 0 : rv; /* Not pristine: restarting. */
}

static int peer_start(struct peer *p)
{
	int rv;

	p->fsm = (struct raft_fsm){.version = 1,
				   .data = p,
				   .apply = peer_fsm_apply,
				   .snapshot = peer_fsm_snapshot,
				   .restore = peer_fsm_restore};
	snprintf(p->address, sizeof(p->address), "127.0.0.1:%u", p->opt.port_base + p->opt.id - 1);
	if (uv_loop_init(&p->loop) != 0)
		return -1;
	rv = raft_uv_tcp_init(&p->transport, &p->loop);
	if (rv != 0)
		return rv;
	rv = raft_uv_init(&p->io, &p->loop, p->opt.dir, &p->transport);
	if (rv != 0) {
		fprintf(stderr, "raft-peer %u: raft_uv_init: %s\n", p->opt.id, p->io.errmsg);
		return rv;
	}
	/* A restarted node reconnects soon; the library's default is a second. */
	raft_uv_set_connect_retry_delay(&p->io, 100);
	rv = raft_init(&p->raft, &p->io, &p->fsm, p->opt.id, p->address);
	if (rv != 0)
		return rv;
	p->raft.data = p;
	raft_set_election_timeout(&p->raft, p->opt.election_ms);
	raft_set_heartbeat_timeout(&p->raft, p->opt.heartbeat_ms);
	raft_set_pre_vote(&p->raft, true);
	raft_set_snapshot_threshold(&p->raft, p->opt.snapshot_entries);
	rv = peer_bootstrap(p);
	if (rv != 0)
		return rv;
	rv = raft_start(&p->raft);
	if (rv != 0) {
		fprintf(stderr, "raft-peer %u: raft_start: %s\n", p->opt.id, raft_errmsg(&p->raft));
		return rv;
	}
	uv_check_init(&p->loop, &p->check);
	p->check.data = p;
	uv_check_start(&p->check, peer_on_check);
	uv_timer_init(&p->loop, &p->window_on);
	uv_timer_init(&p->loop, &p->window_off);
	p->window_on.data = p->window_off.data = p;
	return 0;
}

static int peer_run(struct peer_opt *opt)
{
	static struct peer p; /* Large; and libuv handles must outlive the loop run. */

	p.opt = *opt;
	if (opt->mode == PEER_MODE_SATURATE) {
		p.slots = calloc(opt->window, sizeof(*p.slots));
		if (p.slots == NULL)
			return PEER_EXIT_RUN;
	}
	if (mkdir(opt->dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "raft-peer %u: %s: %s\n", opt->id, opt->dir, strerror(errno));
		return PEER_EXIT_START;
	}
	if (peer_start(&p) != 0) {
		fprintf(stderr, "raft-peer %u: could not start on %s\n", opt->id, p.address);
		peer_exit(PEER_EXIT_START);
	}
	printf("started id=%u address=%s pid=%ld\n", opt->id, p.address, (long)getpid());
	uv_run(&p.loop, UV_RUN_DEFAULT); /* Returns only if every handle stopped: a bug. */
	fprintf(stderr, "raft-peer %u: the event loop stopped\n", opt->id);
	peer_exit(PEER_EXIT_RUN);
	return PEER_EXIT_RUN;
}

/* --- fsync probe. --- */

/* Open the probe file for O_DIRECT writes, as both WALs write (Flotilla's
 * segments and libraft's open segments), or buffered where the file system
 * refuses O_DIRECT. flags adds O_DSYNC for the second pass. */
static int peer_fsync_open(const char *path, int flags, bool *direct)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT | flags, 0644);

	*direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
	return fd;
}

/* One pass: --count timed durable writes of --size bytes into a file written
 * and synced beforehand (so no write extends it or changes its metadata).
 * dsync: the file is O_DSYNC and each write is durable when it returns, as
 * libraft opens its segments; else each write is followed by fdatasync, as
 * Flotilla's WAL does it. block is --size bytes, 4096-aligned. */
static int peer_fsync_pass(const struct peer_opt *opt, const char *path, bool dsync, void *block)
{
	struct peer_samples samples = {0};
	off_t file_size = (off_t)opt->count * opt->size;
	char prefix[160];
	bool direct;
	int fd, rv = -1;

	fd = peer_fsync_open(path, 0, &direct);
	if (fd < 0)
		goto out;
	memset(block, 0, opt->size);
	for (off_t off = 0; off < file_size; off += opt->size)
		if (pwrite(fd, block, opt->size, off) != (ssize_t)opt->size)
			goto out;
	if (fsync(fd) != 0)
		goto out;
	if (dsync) {
		close(fd);
		fd = open(path, O_RDWR | O_CLOEXEC | O_DSYNC | (direct ? O_DIRECT : 0));
		if (fd < 0)
			goto out;
	}
	memset(block, 'x', opt->size);
	for (unsigned i = 0; i < opt->count; i++) {
		uint64_t start = peer_now_ns();

		if (pwrite(fd, block, opt->size, (off_t)i * opt->size) != (ssize_t)opt->size ||
		    (!dsync && fdatasync(fd) != 0))
			goto out;
		peer_samples_add(&samples, peer_now_ns() - start);
	}
	snprintf(prefix, sizeof(prefix), "fsync kind=%s count=%u size=%u direct=%d",
		 dsync ? "dsync" : "fdatasync", opt->count, opt->size, direct);
	peer_print_percentiles(prefix, &samples);
	rv = 0;
out:
	if (rv != 0)
		fprintf(stderr, "raft-peer: %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(samples.v);
	return rv;
}

static int peer_fsync_probe(const struct peer_opt *opt)
{
	char path[PATH_MAX];
	void *block = NULL;
	int rv = PEER_EXIT_RUN;

	if (opt->size % 4096 != 0) {
		fprintf(stderr, "raft-peer: --size must be a multiple of 4096 for the probe\n");
		return PEER_EXIT_USAGE;
	}
	if (snprintf(path, sizeof(path), "%s/fsync-probe", opt->dir) >= (int)sizeof(path))
		return PEER_EXIT_USAGE;
	if (posix_memalign(&block, 4096, opt->size) != 0)
		return PEER_EXIT_RUN;
	if (peer_fsync_pass(opt, path, false, block) == 0 &&
	    peer_fsync_pass(opt, path, true, block) == 0)
		rv = 0;
	free(block);
	return rv;
}

/* --- Options. --- */

static void peer_usage(FILE *f)
{
	fprintf(f,
		"usage: raft-peer --mode serve|saturate --id N --dir DIR --port-base P [options]\n"
		"       raft-peer --mode fsync --dir DIR [--count N] [--size BYTES]\n"
		"  --nodes N            voters 1..N, node i on 127.0.0.1:P+i-1 (3)\n"
		"  --election-ms MS     election timeout (1000)\n"
		"  --heartbeat-ms MS    heartbeat interval (100)\n"
		"  --snapshot-entries N entries between snapshots (10000)\n"
		"  --window W           saturate: raft_apply calls outstanding (64)\n"
		"  --size BYTES         saturate: entry payload; fsync: block size (128; 4096)\n"
		"  --warmup-s S         saturate: seconds before the window (1)\n"
		"  --duration-s S       saturate: measured seconds (10)\n"
		"  --count N            fsync: writes timed (200)\n");
}

static int peer_parse(int argc, char **argv, struct peer_opt *o)
{
	enum {
		O_MODE = 256,
		O_ID,
		O_DIR,
		O_NODES,
		O_PORT,
		O_ELECTION,
		O_HEARTBEAT,
		O_SNAP,
		O_WINDOW,
		O_SIZE,
		O_WARMUP,
		O_DURATION,
		O_COUNT,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"mode", required_argument, NULL, O_MODE},
	    {"id", required_argument, NULL, O_ID},
	    {"dir", required_argument, NULL, O_DIR},
	    {"nodes", required_argument, NULL, O_NODES},
	    {"port-base", required_argument, NULL, O_PORT},
	    {"election-ms", required_argument, NULL, O_ELECTION},
	    {"heartbeat-ms", required_argument, NULL, O_HEARTBEAT},
	    {"snapshot-entries", required_argument, NULL, O_SNAP},
	    {"window", required_argument, NULL, O_WINDOW},
	    {"size", required_argument, NULL, O_SIZE},
	    {"warmup-s", required_argument, NULL, O_WARMUP},
	    {"duration-s", required_argument, NULL, O_DURATION},
	    {"count", required_argument, NULL, O_COUNT},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	bool ok = true, size_set = false;
	int c;

	*o = (struct peer_opt){.mode = PEER_MODE_SERVE,
			       .nodes = 3,
			       .election_ms = 1000,
			       .heartbeat_ms = 100,
			       .snapshot_entries = 10000,
			       .window = 64,
			       .size = 128,
			       .count = 200,
			       .warmup_s = 1,
			       .duration_s = 10};
	while (ok && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_MODE:
			if (strcmp(optarg, "serve") == 0)
				o->mode = PEER_MODE_SERVE;
			else if (strcmp(optarg, "saturate") == 0)
				o->mode = PEER_MODE_SATURATE;
			else if (strcmp(optarg, "fsync") == 0)
				o->mode = PEER_MODE_FSYNC;
			else
				ok = false;
			break;
		case O_ID:
			ok = peer_parse_uint(optarg, 1, PEER_NODES_MAX, &o->id);
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_NODES:
			ok = peer_parse_uint(optarg, 1, PEER_NODES_MAX, &o->nodes);
			break;
		case O_PORT:
			ok = peer_parse_uint(optarg, 1024, 65535 - PEER_NODES_MAX, &o->port_base);
			break;
		case O_ELECTION:
			ok = peer_parse_uint(optarg, 10, 600000, &o->election_ms);
			break;
		case O_HEARTBEAT:
			ok = peer_parse_uint(optarg, 1, 600000, &o->heartbeat_ms);
			break;
		case O_SNAP:
			ok = peer_parse_uint(optarg, 1, UINT_MAX, &o->snapshot_entries);
			break;
		case O_WINDOW:
			ok = peer_parse_uint(optarg, 1, PEER_WINDOW_MAX, &o->window);
			break;
		case O_SIZE:
			ok = peer_parse_uint(optarg, 1, PEER_SIZE_MAX, &o->size);
			size_set = true;
			break;
		case O_WARMUP:
			ok = peer_parse_seconds(optarg, &o->warmup_s);
			break;
		case O_DURATION:
			ok = peer_parse_seconds(optarg, &o->duration_s);
			break;
		case O_COUNT:
			ok = peer_parse_uint(optarg, 1, PEER_FSYNC_COUNT_MAX, &o->count);
			break;
		case O_HELP:
			peer_usage(stdout);
			exit(0);
		default:
			ok = false;
			break;
		}
	}
	if (!ok || optind != argc || o->dir == NULL)
		return -1;
	if (o->mode == PEER_MODE_FSYNC) {
		if (!size_set)
			o->size = 4096;
		return 0;
	}
	if (o->id == 0 || o->id > o->nodes || o->port_base == 0 ||
	    o->heartbeat_ms >= o->election_ms || o->duration_s <= 0)
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
	if (opt.mode == PEER_MODE_FSYNC)
		return peer_fsync_probe(&opt);
	return peer_run(&opt);
}
