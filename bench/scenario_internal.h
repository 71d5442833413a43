/* What flotilla-scenarios' files share: the options, the cluster of three
 * flotilla-node processes, the results of each scenario, and each file's
 * entry points. Only bench/scenario*.c include this.
 *
 *   scenarios.c           main, the command line, clock and randomness
 *   scenario_cluster.c    the node processes: start, stop, kill, reap
 *   scenario_client.c     requests to the nodes; pipelined PUT into many groups
 *   scenario_election.c   election latency of one group (kill -9, SIGSTOP)
 *   scenario_mass.c       mass failover
 *   scenario_idle.c       idle cost and scale
 *   scenario_report.c     statistics, text and JSON output */
#ifndef BENCH_SCENARIO_INTERNAL_H
#define BENCH_SCENARIO_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tools/client.h"

#define SC_NODES          3
#define SC_IDLE_SIZES_MAX 8
#define SC_TRIALS_MAX     100000
#define SC_PIPELINE_MAX   512 /* Requests in flight per connection (node default: 1024). */
#define SC_READY_WAIT_MS  300000
#define SC_STOP_WAIT_MS   60000
#define SC_CONNECT_MS     200
#define SC_REQUEST_MS     3000 /* A request unanswered for this long is sent again. */
#define SC_NS_PER_MS      1000000ull

struct sc_opt {
	const char *node_bin;
	const char *cluster_bin; /* tools/cluster, which starts and stops the nodes. */
	const char *dir;
	const char *json_path;
	bool run_election, run_mass, run_idle;
	bool fault_kill, fault_stop;
	uint32_t trials;
	uint32_t mass_trials, mass_groups;
	bool mass_stop;       /* Mass failover by SIGSTOP rather than kill -9. */
	uint32_t mass_wait_s; /* For every group to commit again after the fault. */
	uint64_t idle_groups[SC_IDLE_SIZES_MAX];
	uint32_t idle_sizes;
	uint32_t election_ms, heartbeat_ms, shards;
	uint32_t poll_us, retry_ms, settle_ms;
	uint32_t idle_window_s, idle_settle_ms;
	uint32_t base_port; /* 0: random. */
	int64_t uptime_ms;  /* Election: youngest node's age at a kill; -1: auto. */
	uint64_t seed;
	bool quiet;
};

struct sc_node {
	uint64_t id;
	pid_t pid; /* 0: not running. */
	bool stopped;
	struct client conn;
	uint64_t retry_conn_ns;
	char data_dir[PATH_MAX];
	char log_path[PATH_MAX];
	off_t log_offset; /* Parsed up to here. */
	uint64_t leads;   /* From the last "leads N of M" line. */
	uint32_t inflight;
	uint64_t ready_at_ns; /* When it printed its ready line. */
};

struct sc_cluster {
	const struct sc_opt *opt;
	char dir[PATH_MAX];
	uint32_t groups;
	uint32_t base_port;
	uint64_t next_request;
	uint64_t started_ns; /* When the last sc_start() launched its first node. */
	pid_t script_pid;    /* A tools/cluster start not reaped yet, or 0. */
	struct sc_node nodes[SC_NODES];
};

/* PIDs of running nodes, for the signal handler. */

struct sc_stats {
	uint32_t count;
	double min, p50, p99, max, mean;
};

enum { SC_G_READY, SC_G_BACKOFF, SC_G_SENT, SC_G_DONE };

struct sc_many {
	uint32_t n;
	uint8_t *state;
	uint8_t *target;  /* Node index to ask next. */
	uint8_t *sent_to; /* Node index of the request in flight. */
	uint32_t *attempt;
	uint64_t *sent_ns;
	uint64_t *done_ns;                       /* From the start of the run. */
	uint8_t *leader;                         /* Node index that acknowledged. */
	uint32_t *ready, ready_head, ready_tail; /* FIFO rings of capacity n. */
	uint32_t *backoff, backoff_head, backoff_tail;
	uint64_t *backoff_due;
	uint64_t redirects, retries, not_leader_no_hint, errors;
};

struct sc_election_result {
	const char *fault;
	uint32_t trials, ok;
	uint64_t *commit_ns;       /* Kill to first PUT acknowledged by a new leader. */
	uint64_t *known_ns;        /* Kill to first answer naming a live leader. */
	uint64_t *trial_commit_ns; /* commit_ns in trial order (commit_ns ends sorted). */
	uint32_t new_leader[SC_NODES];
	uint8_t *victims, *winners; /* Node ids, per trial. */
	double load[3];
	struct sc_stats commit, known;
};

struct sc_mass_trial {
	uint64_t start_ns;        /* First fork to every node ready. */
	uint64_t committed_ns;    /* First fork to a PUT committed in every group. */
	uint32_t victim;          /* Node id. */
	uint32_t led[SC_NODES];   /* Groups each node led before the kill. */
	uint64_t all_ns;          /* Kill to every group committed again. */
	struct sc_stats affected; /* Over the groups the victim led. */
	uint64_t others_max_ns;
	uint64_t redirects, no_hint, errors, retries;
	uint32_t slow;            /* Groups that took over half an election timeout. */
	uint64_t rejoin_ready_ns; /* Restart of the killed node from its WAL to ready. */
	uint64_t rejoin_ns;       /* ... to every group's last PUT applied on it. */
	double load[3];
};

struct sc_idle_result {
	uint32_t groups;
	uint64_t ready_ns;           /* First fork to every node ready (groups created). */
	uint64_t elected_ns;         /* First fork to every group with a leader. */
	double cpu_pct[SC_NODES];    /* utime+stime from /proc/PID/stat. */
	double cpu_ns_pct[SC_NODES]; /* The sum of the threads' schedstat. */
	uint64_t rss_kib[SC_NODES], hwm_kib[SC_NODES];
	uint64_t leads[SC_NODES];
	double window_s;
	double load[3];
};

/* scenarios.c: the clock, the random numbers, the log. */
uint64_t sc_now_ns(void);
double sc_ms(uint64_t ns);
uint64_t sc_rand(void);
void sc_sleep_ms(uint32_t ms);
void sc_loadavg(double load[3]);
__attribute__((format(printf, 2, 3))) void sc_log(const struct sc_opt *opt, const char *fmt, ...);

/* scenario_report.c: statistics and the output (text and --json). */
struct sc_stats sc_stats(uint64_t *v, uint32_t n);
void sc_print_election(const struct sc_opt *opt, const struct sc_election_result *r,
		       uint32_t count);
void sc_print_mass(const struct sc_opt *opt, const struct sc_mass_trial *t, uint32_t count);
void sc_print_idle(const struct sc_opt *opt, const struct sc_idle_result *r, uint32_t count);
int sc_write_json(const struct sc_opt *opt, const struct sc_election_result *e, uint32_t e_count,
		  const struct sc_mass_trial *m, uint32_t m_count,
		  const struct sc_idle_result *idle, uint32_t i_count);

/* scenario_cluster.c: the node processes, through tools/cluster. */
void sc_on_signal(int sig);
void sc_node_wipe(struct sc_node *n);
int sc_cluster_init(struct sc_cluster *c, const struct sc_opt *opt, const char *name,
		    uint32_t groups);
uint32_t sc_client_port(const struct sc_cluster *c, uint32_t i);
int sc_node_reap(struct sc_cluster *c, uint32_t i, uint32_t wait_ms);
void sc_cluster_stop(struct sc_cluster *c);
void sc_print_log_tail(const struct sc_node *n);
int sc_start(struct sc_cluster *c, uint32_t mask, uint64_t *ready_ns);
int sc_start_all(struct sc_cluster *c, uint64_t *ready_ns);

/* scenario_client.c: requests to the nodes, and pipelined PUT into many groups. */
struct client *sc_conn(struct sc_cluster *c, uint32_t i);
void sc_conn_drop(struct sc_cluster *c, uint32_t i);
struct client_request sc_put_request(uint64_t group, const char *key, const char *value);
int sc_put_settled(struct sc_cluster *c, uint64_t group, const char *key, const char *value,
		   bool all_nodes, uint32_t timeout_ms);
int sc_many_init(struct sc_many *m, uint32_t n);
void sc_many_free(struct sc_many *m);
uint32_t sc_many_run(struct sc_cluster *c, struct sc_many *m, const char *key, const char *value,
		     uint64_t start, uint32_t timeout_ms);

/* scenario_election.c. */
int sc_election(const struct sc_opt *opt, bool stop, struct sc_election_result *r);

/* scenario_mass.c. */
int sc_mass(const struct sc_opt *opt, struct sc_mass_trial *trials, uint32_t *done);

/* scenario_idle.c. */
int sc_idle_one(const struct sc_opt *opt, uint32_t groups, struct sc_idle_result *r);

#endif /* BENCH_SCENARIO_INTERNAL_H */
