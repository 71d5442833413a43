/* What flotilla-load's modules share: the options, the run, its threads,
 * their connections and requests, and each module's entry points. Only the
 * tools/load_*.c files of the load driver and tools/flotilla-load.c include
 * this (tools/load_hist.h, load_zipf.h and lincheck.h stand on their own).
 *
 *   flotilla-load.c  main, the run's shared state, leader discovery
 *   load_options.c   flags
 *   load_driver.c    load threads: connections, requests, open/closed loop
 *   load_report.c    progress lines, final report, JSON, plot
 *   load_check.c     the history (--check) and its linearizability check */
#ifndef TOOLS_LOAD_INTERNAL_H
#define TOOLS_LOAD_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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
	const char *check_file_path;             /* Check this saved history; no load. */
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-*; NULL: FLOTILLA_TLS_*. */
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

struct load_totals {
	struct load_counts c;
	struct load_hist *hist;
	uint64_t unsent;
	double seconds; /* Measured. */
};

/* flotilla-load.c: the clock, the random numbers, the counters and the
 * leader table that every thread shares, and the run itself. */
uint64_t load_now_ns(void);
uint64_t load_end_ns(struct load_run *run);
uint64_t load_splitmix(uint64_t *x);
uint64_t load_rng_next(uint64_t s[4]);
double load_rng_double(uint64_t s[4]);
void load_tally(struct load_thread *t, bool measured, enum load_stat stat, uint64_t n);
void load_counts_add(struct load_counts *dst, const struct load_counts *src);
uint64_t load_counts_errors(const struct load_counts *c);
bool load_is_measuring(struct load_run *run, uint64_t now);
uint64_t load_group_of(const struct load_run *run, uint64_t key);
int load_leader(const struct load_run *run, uint64_t group);
bool load_learn_leader(struct load_run *run, uint64_t group, uint32_t node_slot);
int load_node_slot(const struct load_run *run, uint64_t node_id);
void load_totals(struct load_run *run, struct load_totals *t);

/* load_check.c: the history of a --check run and its check. */
void load_history_call(struct load_thread *t, uint32_t slot, uint64_t now);
void load_history_return(struct load_thread *t, const struct load_req *req,
			 const struct client_response *resp);
int load_check_run(struct load_run *run);
int load_check_file(struct load_run *run);

/* load_driver.c: the load threads (connections, requests, open and closed loop). */
void *load_thread_main(void *arg);
void load_thread_deinit(struct load_thread *t);
int load_thread_init(struct load_thread *t, struct load_run *run, uint32_t index);

/* load_options.c: the flags. */
int load_parse_options(struct load_options *opt, int argc, char **argv);

/* load_report.c: progress lines, the final report, JSON and the plot. */
void load_on_signal(int sig);
void load_report_progress(struct load_run *run);
void load_print_mode(FILE *out, const struct load_options *opt);
void load_print_report(struct load_run *run, const struct load_totals *t);
int load_write_json(struct load_run *run, const struct load_totals *t);
int load_write_plot(struct load_run *run, const struct load_totals *t);

#endif /* TOOLS_LOAD_INTERNAL_H */
