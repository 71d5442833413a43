/* flotilla-scenarios' output: nearest-rank statistics over the trials, the
 * text report of each scenario and the --json file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* --- Statistics. --- */

static int sc_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentiles of ns values (sorted in place), in ms. */
struct sc_stats sc_stats(uint64_t *v, uint32_t n)
{
	struct sc_stats s = {.count = n};
	double sum = 0;

	if (n == 0)
		return s;
	qsort(v, n, sizeof(*v), sc_cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		sum += sc_ms(v[i]);
	s.min = sc_ms(v[0]);
	s.max = sc_ms(v[n - 1]);
	s.p50 = sc_ms(v[(n + 1) / 2 - 1]);
	s.p99 = sc_ms(v[(uint32_t)((99ull * n + 99) / 100) - 1]);
	s.mean = sum / n;
	return s;
}

/* --- Output. --- */

static void sc_print_load(FILE *f, const char *what, const double load[3])
{
	fprintf(f, "%s: load average at start %.2f %.2f %.2f (%ld CPUs)\n", what, load[0], load[1],
		load[2], sysconf(_SC_NPROCESSORS_ONLN));
}

void sc_print_election(const struct sc_opt *opt, const struct sc_election_result *r, uint32_t count)
{
	if (count == 0)
		return;
	printf(
	    "\nElection latency, 1 group, 3 nodes, election %u ms, heartbeat %u ms, poll %u us\n",
	    opt->election_ms, opt->heartbeat_ms, opt->poll_us);
	for (uint32_t k = 0; k < count; k++)
		sc_print_load(stdout, r[k].fault, r[k].load);
	printf("%-9s %-22s %6s %9s %9s %9s %9s %9s\n", "fault", "until", "trials", "min ms",
	       "p50 ms", "p99 ms", "max ms", "mean ms");
	for (uint32_t k = 0; k < count; k++) {
		const struct sc_stats *s[2] = {&r[k].known, &r[k].commit};
		const char *what[2] = {"leader known", "new leader committed"};

		for (int j = 0; j < 2; j++)
			printf("%-9s %-22s %3u/%-3u %9.2f %9.2f %9.2f %9.2f %9.2f\n", r[k].fault,
			       what[j], r[k].ok, r[k].trials, s[j]->min, s[j]->p50, s[j]->p99,
			       s[j]->max, s[j]->mean);
	}
}

void sc_print_mass(const struct sc_opt *opt, const struct sc_mass_trial *t, uint32_t count)
{
	uint64_t all[SC_TRIALS_MAX > 1000 ? 1000 : SC_TRIALS_MAX];
	struct sc_stats s;
	uint32_t n = 0;

	if (count == 0)
		return;
	printf("\nMass failover, %u groups, 3 nodes, election %u ms, heartbeat %u ms, %s of one "
	       "node\n",
	       opt->mass_groups, opt->election_ms, opt->heartbeat_ms,
	       opt->mass_stop ? "SIGSTOP" : "kill -9");
	for (uint32_t k = 0; k < count; k++) {
		char what[32];

		snprintf(what, sizeof(what), "trial %u", k + 1);
		sc_print_load(stdout, what, t[k].load);
	}
	printf("%5s %9s %9s %6s %12s %10s %10s %10s %10s %10s\n", "trial", "start ms", "commit ms",
	       "node", "it led", "all ms", "its p50", "its p99", "its max", "others max");
	for (uint32_t k = 0; k < count; k++) {
		printf(
		    "%5u %9.0f %9.0f %6u %5u (%4.1f%%) %9.1f %9.1f %9.1f %9.1f %10.1f %6u %9.0f\n",
		    k + 1, sc_ms(t[k].start_ns), sc_ms(t[k].committed_ns), t[k].victim,
		    t[k].led[t[k].victim - 1],
		    100.0 * t[k].led[t[k].victim - 1] / (double)opt->mass_groups,
		    sc_ms(t[k].all_ns), t[k].affected.p50, t[k].affected.p99, t[k].affected.max,
		    sc_ms(t[k].others_max_ns), t[k].slow, sc_ms(t[k].rejoin_ns));
		if (n < sizeof(all) / sizeof(all[0]))
			all[n++] = t[k].all_ns;
	}
	s = sc_stats(all, n);
	printf("every group committed again after the fault: min %.1f ms, p50 %.1f ms, max %.1f ms "
	       "over %u trials (retry every %u ms)\n'slow': groups that took over %u ms (half an "
	       "election timeout); 'rejoin': restart of the node from its WAL (a stopped one is "
	       "killed first) until it has "
	       "applied the last PUT of every group\n",
	       s.min, s.p50, s.max, n, opt->retry_ms, opt->election_ms / 2);
}

void sc_print_idle(const struct sc_opt *opt, const struct sc_idle_result *r, uint32_t count)
{
	if (count == 0)
		return;
	printf("\nIdle cost and scale, 3 nodes, %u shards each, quiesce on, election %u ms, "
	       "heartbeat %u ms\n",
	       opt->shards, opt->election_ms, opt->heartbeat_ms);
	for (uint32_t k = 0; k < count; k++) {
		char what[32];

		snprintf(what, sizeof(what), "%u groups", r[k].groups);
		sc_print_load(stdout, what, r[k].load);
	}
	printf("%8s %9s %11s %5s %8s %8s %10s %9s %10s %8s\n", "groups", "ready ms", "elected ms",
	       "node", "leads", "CPU %", "sched CPU%", "RSS MiB", "peak MiB", "RSS/grp");
	for (uint32_t k = 0; k < count; k++)
		for (uint32_t i = 0; i < SC_NODES; i++)
			printf("%8u %9.0f %11.0f %5u %8llu %8.2f %10.3f %9.1f %10.1f %7.0fB\n",
			       r[k].groups, sc_ms(r[k].ready_ns), sc_ms(r[k].elected_ns), i + 1,
			       (unsigned long long)r[k].leads[i], r[k].cpu_pct[i],
			       r[k].cpu_ns_pct[i], (double)r[k].rss_kib[i] / 1024,
			       (double)r[k].hwm_kib[i] / 1024,
			       1024.0 * (double)r[k].rss_kib[i] / r[k].groups);
	printf("CPU: %% of one core over %u s, from 3 election timeouts + %u ms after every "
	       "group had a leader;\n'CPU %%' from utime+stime (10 ms ticks), 'sched CPU%%' from "
	       "the threads' schedstat (ns)\n",
	       opt->idle_window_s, opt->idle_settle_ms);
}

static void sc_json_stats(FILE *f, const char *name, const struct sc_stats *s)
{
	fprintf(f,
		"\"%s\": {\"count\": %u, \"min_ms\": %.3f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
		"\"max_ms\": %.3f, \"mean_ms\": %.3f}",
		name, s->count, s->min, s->p50, s->p99, s->max, s->mean);
}

static void sc_json_load(FILE *f, const double load[3])
{
	fprintf(f, "\"loadavg\": [%.2f, %.2f, %.2f]", load[0], load[1], load[2]);
}

int sc_write_json(const struct sc_opt *opt, const struct sc_election_result *e, uint32_t e_count,
		  const struct sc_mass_trial *m, uint32_t m_count,
		  const struct sc_idle_result *idle, uint32_t i_count)
{
	bool to_stdout = strcmp(opt->json_path, "-") == 0;
	FILE *f = to_stdout ? stdout : fopen(opt->json_path, "w");

	if (f == NULL) {
		fprintf(stderr, "scenarios: %s: %s\n", opt->json_path, strerror(errno));
		return -1;
	}
	fprintf(f,
		"{\"config\": {\"nodes\": %d, \"shards\": %u, \"election_ms\": %u, "
		"\"heartbeat_ms\": %u, \"poll_us\": %u, \"retry_ms\": %u, \"cpus\": %ld},\n",
		SC_NODES, opt->shards, opt->election_ms, opt->heartbeat_ms, opt->poll_us,
		opt->retry_ms, sysconf(_SC_NPROCESSORS_ONLN));
	fprintf(f, " \"election\": [");
	for (uint32_t k = 0; k < e_count; k++) {
		fprintf(f, "%s\n  {\"fault\": \"%s\", \"groups\": 1, \"trials\": %u, \"ok\": %u, ",
			k ? "," : "", e[k].fault, e[k].trials, e[k].ok);
		sc_json_load(f, e[k].load);
		fprintf(f, ", ");
		sc_json_stats(f, "leader_known", &e[k].known);
		fprintf(f, ", ");
		sc_json_stats(f, "committed", &e[k].commit);
		fprintf(f, ", \"trials_in_order\": [");
		for (uint32_t t = 0; t < e[k].ok && e[k].trial_commit_ns != NULL; t++)
			fprintf(f, "%s{\"killed\": %u, \"new_leader\": %u, \"committed_ms\": %.3f}",
				t ? ", " : "", e[k].victims[t], e[k].winners[t],
				sc_ms(e[k].trial_commit_ns[t]));
		fprintf(f, "]}");
	}
	fprintf(f, "],\n \"mass\": [");
	for (uint32_t k = 0; k < m_count; k++) {
		fprintf(f,
			"%s\n  {\"groups\": %u, \"fault\": \"%s\", \"start_ms\": %.1f, "
			"\"start_committed_ms\": %.1f, "
			"\"killed\": %u, \"led\": [%u, %u, %u], \"all_committed_ms\": %.3f, "
			"\"others_max_ms\": %.3f, \"slow_groups\": %u, \"rejoin_ready_ms\": %.1f, "
			"\"rejoin_ms\": %.1f, "
			"\"redirects\": %llu, \"not_leader_no_hint\": %llu, "
			"\"errors\": %llu, \"retries\": %llu, ",
			k ? "," : "", opt->mass_groups, opt->mass_stop ? "stop" : "kill",
			sc_ms(m[k].start_ns), sc_ms(m[k].committed_ns), m[k].victim, m[k].led[0],
			m[k].led[1], m[k].led[2], sc_ms(m[k].all_ns), sc_ms(m[k].others_max_ns),
			m[k].slow, sc_ms(m[k].rejoin_ready_ns), sc_ms(m[k].rejoin_ns),
			(unsigned long long)m[k].redirects, (unsigned long long)m[k].no_hint,
			(unsigned long long)m[k].errors, (unsigned long long)m[k].retries);
		sc_json_load(f, m[k].load);
		fprintf(f, ", ");
		sc_json_stats(f, "killed_nodes_groups", &m[k].affected);
		fprintf(f, "}");
	}
	fprintf(f, "],\n \"idle\": [");
	for (uint32_t k = 0; k < i_count; k++) {
		const struct sc_idle_result *r = &idle[k];

		fprintf(f,
			"%s\n  {\"groups\": %u, \"ready_ms\": %.1f, \"elected_ms\": %.1f, "
			"\"window_s\": %.2f, ",
			k ? "," : "", r->groups, sc_ms(r->ready_ns), sc_ms(r->elected_ns),
			r->window_s);
		sc_json_load(f, r->load);
		fprintf(f, ", \"nodes\": [");
		for (uint32_t i = 0; i < SC_NODES; i++)
			fprintf(
			    f,
			    "%s{\"id\": %u, \"leads\": %llu, \"cpu_pct\": %.4f, "
			    "\"sched_cpu_pct\": %.4f, \"rss_kib\": %llu, \"peak_rss_kib\": %llu}",
			    i ? ", " : "", i + 1, (unsigned long long)r->leads[i], r->cpu_pct[i],
			    r->cpu_ns_pct[i], (unsigned long long)r->rss_kib[i],
			    (unsigned long long)r->hwm_kib[i]);
		fprintf(f, "]}");
	}
	fprintf(f, "]}\n");
	if (to_stdout)
		return fflush(f) == 0 ? 0 : -1;
	return fclose(f) == 0 ? 0 : -1;
}
