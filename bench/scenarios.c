/* flotilla-scenarios: failover and scale scenarios against real
 * flotilla-node processes: three nodes on 127.0.0.1, WALs on the disk under
 * --dir (fdatasync on), talked to through the client protocol
 * (tools/client.h). tools/cluster starts and stops the nodes; this program
 * signals and restarts them by PID, and leaves none running when it exits.
 *
 *   election  One group. Each trial: once every node has been up for an
 *             election timeout plus a heartbeat (--min-uptime-ms: a node that
 *             restarted more recently refuses to vote), PUT through the
 *             leader and wait until every node has applied it; then, after a
 *             random pause shorter than a heartbeat, kill -9 (or SIGSTOP) the
 *             leader's process.
 *             The figure runs from just before kill(2) to the first PUT that
 *             a surviving node acknowledges as leader, i.e. a survivor won
 *             the election and committed an entry of its term. Both
 *             survivors are polled with PUT, one request each in flight,
 *             every --poll-us. kill -9 resets the connections (the fast
 *             path); SIGSTOP keeps them open, so the survivors must time the
 *             leader out. The old leader is then killed and restarted from
 *             its WAL.
 *   mass      --mass-groups groups. Each trial starts the three nodes (from
 *             their WALs after the first), PUTs into every group, kills -9
 *             the node that leads the count closest to a third, and times
 *             until every group has acknowledged a PUT from a live leader.
 *             A group without a leader is asked again every --retry-ms.
 *   idle      For each of --idle-groups: a fresh cluster with that many
 *             groups (quiesce on). Times from the first fork to every node
 *             ready, and to every group having a leader (the sum of "this
 *             node leads N of M groups" over the nodes' logs, which the node
 *             updates every 200 ms); waits until groups quiesce (3 election timeouts of
 *             idleness, plus --idle-settle-ms), then measures each node's
 *             CPU (utime+stime from /proc/PID/stat) over --idle-window-s
 *             seconds and its RSS (/proc/PID/status).
 *
 * The program is split by concern (bench/scenario_internal.h has the map):
 * one file per scenario, the node processes and the client side in files of
 * their own, the output in scenario_report.c.
 *
 * Percentiles are nearest-rank over the trials: with 50 trials p99 is the
 * largest. Exit status: 0 when every trial completed, 1 when one failed or a
 * node misbehaved (its log is under --dir), 2 on bad usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/scenario_internal.h"

static uint64_t sc_rng_state;

uint64_t sc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double sc_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

uint64_t sc_rand(void)
{
	/* splitmix64. */
	uint64_t z = (sc_rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void sc_sleep_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

void sc_log(const struct sc_opt *opt, const char *fmt, ...)
{
	va_list ap;

	if (opt->quiet)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void sc_loadavg(double load[3])
{
	FILE *f = fopen("/proc/loadavg", "r");

	load[0] = load[1] = load[2] = -1;
	if (f == NULL)
		return;
	if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
		load[0] = load[1] = load[2] = -1;
	fclose(f);
}

/* --- Command line. --- */

static void sc_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: flotilla-scenarios --node-bin PATH [options]\n"
	    "  --node-bin PATH        the flotilla-node to run (required)\n"
	    "  --cluster PATH         tools/cluster, which starts and stops the nodes\n"
	    "                         (the one of this source tree)\n"
	    "  --dir DIR              data and logs, on the disk to measure (scenarios-data)\n"
	    "  --scenario LIST        election,mass,idle or all (all)\n"
	    "  --fault LIST           election faults: kill,stop or both (both)\n"
	    "  --trials N             election trials per fault (50)\n"
	    "  --mass-trials N        mass failover trials (3)\n"
	    "  --mass-groups N        groups in the mass failover (10000)\n"
	    "  --mass-fault F         mass failover fault: kill (kill -9) or stop\n"
	    "                         (SIGSTOP: the host is silent, connections open)\n"
	    "  --mass-wait-s S        mass: a trial fails unless every group commits\n"
	    "                         again within S s of the fault (120)\n"
	    "  --idle-groups LIST     group counts for idle scale (10000,100000)\n"
	    "  --election-ms MS       election timeout (1000)\n"
	    "  --heartbeat-ms MS      heartbeat interval (100)\n"
	    "  --shards N             shard threads per node (2)\n"
	    "  --poll-us US           election: pause between polls of a survivor (1000)\n"
	    "  --retry-ms MS          mass: pause before asking a leaderless group again (10)\n"
	    "  --settle-ms MS         mass: pause between the warm PUTs and the kill (0)\n"
	    "  --idle-window-s S      idle: CPU measurement window (10)\n"
	    "  --idle-settle-ms MS    idle: wait beyond 3 election timeouts before it (2000)\n"
	    "  --base-port P          node i uses P+2(i-1) and P+2(i-1)+1 (random)\n"
	    "  --min-uptime-ms MS     election: every node up this long before a kill\n"
	    "                         (election + heartbeat: a node just restarted does not vote)\n"
	    "  --seed N               random pauses (time)\n"
	    "  --json FILE            also write the results as JSON ('-': stdout)\n"
	    "  --quiet                no per-trial progress on stderr\n");
}

static int sc_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (text == NULL || *text < '0' || *text > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int sc_parse_list(const char *text, const char *const *names, bool *flags, int count)
{
	char buf[128];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;

		for (int i = 0; i < count; i++)
			if (strcmp(tok, names[i]) == 0 ||
			    (strcmp(tok, "all") == 0 || strcmp(tok, "both") == 0)) {
				flags[i] = true;
				found = true;
			}
		if (!found)
			return -1;
	}
	return 0;
}

static int sc_parse_args(struct sc_opt *o, int argc, char **argv)
{
	enum {
		O_NODE = 256,
		O_CLUSTER,
		O_DIR,
		O_SCEN,
		O_FAULT,
		O_TRIALS,
		O_MTRIALS,
		O_MGROUPS,
		O_MFAULT,
		O_MWAIT,
		O_IGROUPS,
		O_ELECT,
		O_HB,
		O_SHARDS,
		O_POLL,
		O_RETRY,
		O_SETTLE,
		O_WINDOW,
		O_ISETTLE,
		O_PORT,
		O_UPTIME,
		O_SEED,
		O_JSON,
		O_QUIET,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"node-bin", required_argument, NULL, O_NODE},
	    {"cluster", required_argument, NULL, O_CLUSTER},
	    {"dir", required_argument, NULL, O_DIR},
	    {"scenario", required_argument, NULL, O_SCEN},
	    {"fault", required_argument, NULL, O_FAULT},
	    {"trials", required_argument, NULL, O_TRIALS},
	    {"mass-trials", required_argument, NULL, O_MTRIALS},
	    {"mass-groups", required_argument, NULL, O_MGROUPS},
	    {"mass-fault", required_argument, NULL, O_MFAULT},
	    {"mass-wait-s", required_argument, NULL, O_MWAIT},
	    {"idle-groups", required_argument, NULL, O_IGROUPS},
	    {"election-ms", required_argument, NULL, O_ELECT},
	    {"heartbeat-ms", required_argument, NULL, O_HB},
	    {"shards", required_argument, NULL, O_SHARDS},
	    {"poll-us", required_argument, NULL, O_POLL},
	    {"retry-ms", required_argument, NULL, O_RETRY},
	    {"settle-ms", required_argument, NULL, O_SETTLE},
	    {"idle-window-s", required_argument, NULL, O_WINDOW},
	    {"idle-settle-ms", required_argument, NULL, O_ISETTLE},
	    {"base-port", required_argument, NULL, O_PORT},
	    {"min-uptime-ms", required_argument, NULL, O_UPTIME},
	    {"seed", required_argument, NULL, O_SEED},
	    {"json", required_argument, NULL, O_JSON},
	    {"quiet", no_argument, NULL, O_QUIET},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	static const char *const scen_names[] = {"election", "mass", "idle"};
	static const char *const fault_names[] = {"kill", "stop"};
	bool scen[3] = {false}, fault[2] = {false}, scen_set = false, fault_set = false;
	int opt_char;

	*o = (struct sc_opt){.cluster_bin = SC_CLUSTER_DEFAULT,
			     .dir = "scenarios-data",
			     .trials = 50,
			     .mass_trials = 3,
			     .mass_groups = 10000,
			     .mass_wait_s = 120,
			     .idle_groups = {10000, 100000},
			     .idle_sizes = 2,
			     .election_ms = 1000,
			     .heartbeat_ms = 100,
			     .shards = 2,
			     .poll_us = 1000,
			     .retry_ms = 10,
			     .idle_window_s = 10,
			     .idle_settle_ms = 2000,
			     .uptime_ms = -1,
			     .seed = (uint64_t)time(NULL) ^ (uint64_t)getpid()};
	while ((opt_char = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint32_t port = 0, seed = 0;
		int bad = 0;

		switch (opt_char) {
		case O_NODE:
			o->node_bin = optarg;
			break;
		case O_CLUSTER:
			o->cluster_bin = optarg;
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_SCEN:
			bad = sc_parse_list(optarg, scen_names, scen, 3);
			scen_set = true;
			break;
		case O_FAULT:
			bad = sc_parse_list(optarg, fault_names, fault, 2);
			fault_set = true;
			break;
		case O_TRIALS:
			bad = sc_parse_u32(optarg, 1, SC_TRIALS_MAX, &o->trials);
			break;
		case O_MTRIALS:
			bad = sc_parse_u32(optarg, 1, 1000, &o->mass_trials);
			break;
		case O_MGROUPS:
			bad = sc_parse_u32(optarg, 1, 10000000, &o->mass_groups);
			break;
		case O_MFAULT:
			bad = strcmp(optarg, "kill") != 0 && strcmp(optarg, "stop") != 0;
			o->mass_stop = strcmp(optarg, "stop") == 0;
			break;
		case O_MWAIT:
			bad = sc_parse_u32(optarg, 1, 600, &o->mass_wait_s);
			break;
		case O_IGROUPS: {
			char buf[256];
			char *save = NULL;

			o->idle_sizes = 0;
			bad = strlen(optarg) >= sizeof(buf);
			if (bad)
				break;
			strcpy(buf, optarg);
			for (char *tok = strtok_r(buf, ",", &save); tok != NULL && !bad;
			     tok = strtok_r(NULL, ",", &save)) {
				uint32_t v;

				bad = o->idle_sizes == SC_IDLE_SIZES_MAX ||
				      sc_parse_u32(tok, 1, 10000000, &v) != 0;
				if (!bad)
					o->idle_groups[o->idle_sizes++] = v;
			}
			bad = bad || o->idle_sizes == 0;
			break;
		}
		case O_ELECT:
			bad = sc_parse_u32(optarg, 2, 600000, &o->election_ms);
			break;
		case O_HB:
			bad = sc_parse_u32(optarg, 1, 600000, &o->heartbeat_ms);
			break;
		case O_SHARDS:
			bad = sc_parse_u32(optarg, 1, 1024, &o->shards);
			break;
		case O_POLL:
			bad = sc_parse_u32(optarg, 50, 1000000, &o->poll_us);
			break;
		case O_RETRY:
			bad = sc_parse_u32(optarg, 1, 10000, &o->retry_ms);
			break;
		case O_SETTLE:
			bad = sc_parse_u32(optarg, 0, 600000, &o->settle_ms);
			break;
		case O_WINDOW:
			bad = sc_parse_u32(optarg, 1, 3600, &o->idle_window_s);
			break;
		case O_ISETTLE:
			bad = sc_parse_u32(optarg, 0, 600000, &o->idle_settle_ms);
			break;
		case O_PORT:
			bad = sc_parse_u32(optarg, 1024, 65535 - 2 * SC_NODES, &port);
			o->base_port = port;
			break;
		case O_UPTIME:
			bad = sc_parse_u32(optarg, 0, 600000, &port);
			o->uptime_ms = port;
			break;
		case O_SEED:
			bad = sc_parse_u32(optarg, 0, UINT32_MAX, &seed);
			o->seed = seed;
			break;
		case O_JSON:
			o->json_path = optarg;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_HELP:
		case 'h':
			sc_usage(stdout);
			exit(0);
		default:
			return -1;
		}
		if (bad) {
			fprintf(stderr, "flotilla-scenarios: bad value for %s: '%s'\n",
				argv[optind - 1], optarg);
			return -1;
		}
	}
	if (optind != argc || o->node_bin == NULL) {
		fprintf(stderr, "flotilla-scenarios: %s\n",
			o->node_bin == NULL ? "--node-bin is required" : "unexpected argument");
		return -1;
	}
	if (o->heartbeat_ms >= o->election_ms) {
		fprintf(stderr, "flotilla-scenarios: --heartbeat-ms must be below --election-ms\n");
		return -1;
	}
	if (o->uptime_ms < 0)
		o->uptime_ms = (int64_t)o->election_ms + o->heartbeat_ms;
	if (!scen_set)
		scen[0] = scen[1] = scen[2] = true;
	if (!fault_set)
		fault[0] = fault[1] = true;
	o->run_election = scen[0];
	o->run_mass = scen[1];
	o->run_idle = scen[2];
	o->fault_kill = fault[0];
	o->fault_stop = fault[1];
	return 0;
}

int main(int argc, char **argv)
{
	static struct sc_election_result election[2];
	static struct sc_mass_trial mass[1000];
	static struct sc_idle_result idle[SC_IDLE_SIZES_MAX];
	uint32_t e_count = 0, m_count = 0, i_count = 0;
	struct sc_opt opt;
	struct sigaction sa = {.sa_handler = sc_on_signal};
	int rv = 0;

	if (sc_parse_args(&opt, argc, argv) != 0) {
		sc_usage(stderr);
		return 2;
	}
	if (access(opt.node_bin, X_OK) != 0 || access(opt.cluster_bin, X_OK) != 0) {
		const char *bad = access(opt.node_bin, X_OK) != 0 ? opt.node_bin : opt.cluster_bin;

		fprintf(stderr, "flotilla-scenarios: %s: %s\n", bad, strerror(errno));
		return 2;
	}
	sc_rng_state = opt.seed;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (opt.run_election) {
		if (opt.fault_kill && sc_election(&opt, false, &election[e_count++]) != 0)
			rv = 1;
		if (rv == 0 && opt.fault_stop && sc_election(&opt, true, &election[e_count++]) != 0)
			rv = 1;
		sc_print_election(&opt, election, e_count);
		fflush(stdout);
	}
	if (rv == 0 && opt.run_mass) {
		if (sc_mass(&opt, mass, &m_count) != 0)
			rv = 1;
		sc_print_mass(&opt, mass, m_count);
		fflush(stdout);
	}
	if (rv == 0 && opt.run_idle) {
		for (uint32_t k = 0; k < opt.idle_sizes && rv == 0; k++) {
			if (sc_idle_one(&opt, (uint32_t)opt.idle_groups[k], &idle[i_count]) != 0)
				rv = 1;
			else
				i_count++;
		}
		sc_print_idle(&opt, idle, i_count);
		fflush(stdout);
	}
	if (opt.json_path != NULL &&
	    sc_write_json(&opt, election, e_count, mass, m_count, idle, i_count) != 0)
		rv = 1;
	for (uint32_t k = 0; k < e_count; k++) {
		free(election[k].commit_ns);
		free(election[k].known_ns);
		free(election[k].trial_commit_ns);
		free(election[k].victims);
		free(election[k].winners);
	}
	return rv;
}
