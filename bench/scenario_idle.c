/* Scenario idle: the start-up time, the time to elect every leader, and the
 * idle CPU and RSS of a cluster with many quiesced groups. */
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

/* --- Scenario: idle cost and scale. --- */

/* Sum of the latest "leads N of M groups" of every node's log. */
static uint64_t sc_leads_total(struct sc_cluster *c)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < SC_NODES; i++) {
		struct sc_node *n = &c->nodes[i];
		char buf[8192];
		FILE *f = fopen(n->log_path, "r");

		if (f != NULL && fseeko(f, n->log_offset, SEEK_SET) == 0) {
			while (fgets(buf, sizeof(buf), f) != NULL) {
				const char *p = strstr(buf, "this node leads ");
				unsigned long long leads, of;
				size_t len = strlen(buf);

				if (len == 0 || buf[len - 1] != '\n')
					break; /* A partial line: read it next time. */
				n->log_offset += (off_t)len;
				if (p != NULL &&
				    sscanf(p, "this node leads %llu of %llu", &leads, &of) == 2)
					n->leads = leads;
			}
		}
		if (f != NULL)
			fclose(f);
		total += n->leads;
	}
	return total;
}

static int sc_proc_cpu(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[2048];
	unsigned long long utime, stime;
	const char *p;
	FILE *f;
	size_t got;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -errno;
	got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[got] = '\0';
	p = strrchr(buf, ')');
	/* After the command: state (3) ... utime (14), stime (15). */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&utime, &stime) != 2)
		return -EINVAL;
	*ticks = utime + stime;
	return 0;
}

/* CPU time of every thread of pid in ns, from /proc/PID/task/TID/schedstat:
 * finer than the clock ticks of /proc/PID/stat (threads that exited are not
 * counted: none exit while a node idles). */
static int sc_proc_cpu_ns(pid_t pid, uint64_t *ns)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -errno;
	*ns = 0;
	while ((e = readdir(d)) != NULL) {
		char file[320];
		unsigned long long run = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		if (snprintf(file, sizeof(file), "%s/%s/schedstat", path, e->d_name) >=
		    (int)sizeof(file))
			continue;
		f = fopen(file, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%llu", &run) == 1)
			*ns += run;
		fclose(f);
	}
	closedir(d);
	return 0;
}

static uint64_t sc_proc_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	unsigned long long v = 0;
	size_t len = strlen(field);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':') {
			sscanf(line + len + 1, "%llu", &v);
			break;
		}
	fclose(f);
	return v;
}

int sc_idle_one(const struct sc_opt *opt, uint32_t groups, struct sc_idle_result *r)
{
	struct sc_cluster c;
	uint64_t ready_ns[SC_NODES] = {0}, start, deadline, ticks0[SC_NODES], ticks1[SC_NODES];
	uint64_t ns0[SC_NODES], ns1[SC_NODES];
	uint64_t t_window0, t_window1;
	char name[32];
	int rv = 0;

	memset(r, 0, sizeof(*r));
	r->groups = groups;
	sc_loadavg(r->load);
	snprintf(name, sizeof(name), "idle-%u", groups);
	if (sc_cluster_init(&c, opt, name, groups) != 0)
		return -1;
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_wipe(&c.nodes[i]);
	if (sc_start_all(&c, ready_ns) != 0)
		return -1;
	start = c.started_ns; /* The first node's launch. */
	for (uint32_t i = 0; i < SC_NODES; i++)
		r->ready_ns = ready_ns[i] > r->ready_ns ? ready_ns[i] : r->ready_ns;
	deadline = start + 600000 * SC_NS_PER_MS;
	while (sc_leads_total(&c) < groups) {
		if (sc_now_ns() >= deadline) {
			fprintf(stderr,
				"scenarios: idle %u: only %llu groups have a leader after 600 s\n",
				groups, (unsigned long long)sc_leads_total(&c));
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c.nodes[i]);
			sc_cluster_stop(&c);
			return -1;
		}
		sc_sleep_ms(20);
	}
	r->elected_ns = sc_now_ns() - start;
	sc_log(opt, "idle %u groups: ready after %.0f ms, all elected after %.0f ms", groups,
	       sc_ms(r->ready_ns), sc_ms(r->elected_ns));
	/* A leader quiesces its group after 3 election timeouts without traffic. */
	sc_sleep_ms(3 * opt->election_ms + opt->idle_settle_ms);
	t_window0 = sc_now_ns();
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (sc_proc_cpu(c.nodes[i].pid, &ticks0[i]) != 0 ||
		    sc_proc_cpu_ns(c.nodes[i].pid, &ns0[i]) != 0)
			rv = -1;
	sc_sleep_ms(opt->idle_window_s * 1000);
	for (uint32_t i = 0; i < SC_NODES; i++)
		if (sc_proc_cpu(c.nodes[i].pid, &ticks1[i]) != 0 ||
		    sc_proc_cpu_ns(c.nodes[i].pid, &ns1[i]) != 0)
			rv = -1;
	t_window1 = sc_now_ns();
	r->window_s = (double)(t_window1 - t_window0) / 1e9;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		double tck = (double)sysconf(_SC_CLK_TCK);

		r->cpu_pct[i] =
		    rv == 0 ? 100.0 * (double)(ticks1[i] - ticks0[i]) / tck / r->window_s : -1;
		r->cpu_ns_pct[i] =
		    rv == 0 ? 100.0 * (double)(ns1[i] - ns0[i]) / 1e9 / r->window_s : -1;
		r->rss_kib[i] = sc_proc_status_kib(c.nodes[i].pid, "VmRSS");
		r->hwm_kib[i] = sc_proc_status_kib(c.nodes[i].pid, "VmHWM");
	}
	sc_leads_total(&c);
	for (uint32_t i = 0; i < SC_NODES; i++)
		r->leads[i] = c.nodes[i].leads;
	if (rv != 0)
		fprintf(stderr, "scenarios: idle %u: a node exited during the window\n", groups);
	sc_cluster_stop(&c);
	return rv;
}
