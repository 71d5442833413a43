/* Scenario mass: kill -9 (or SIGSTOP: a silent host whose connections stay
 * open) the node that leads about a third of many groups, and time until
 * every group has acknowledged a PUT from a live leader. */
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

/* --- Scenario: mass failover. --- */

/* Wait until node i has applied key=value in every group 1..groups (LOCAL_GET,
 * pipelined; a group that lags is asked again after 10 ms). Returns the
 * groups that still lag after timeout_ms. */
static uint32_t sc_catch_up(struct sc_cluster *c, uint32_t i, uint32_t groups, const char *key,
			    const char *value, uint32_t timeout_ms)
{
	uint64_t deadline = sc_now_ns() + timeout_ms * SC_NS_PER_MS;
	uint8_t *ok = calloc(groups, 1);
	uint32_t left = groups;

	if (ok == NULL)
		return groups;
	while (left > 0 && sc_now_ns() < deadline) {
		struct client *conn = sc_conn(c, i);
		uint32_t next = 0, inflight = 0;

		if (conn == NULL) {
			sc_sleep_ms(10);
			continue;
		}
		/* One pass over the lagging groups, SC_PIPELINE_MAX in flight. */
		while ((next < groups || inflight > 0) && sc_now_ns() < deadline) {
			struct client_response resp;
			int rv = 0;

			while (next < groups && inflight < SC_PIPELINE_MAX && rv == 0) {
				struct client_request req = {.op = CLIENT_OP_LOCAL_GET,
							     .request_id = next,
							     .group = next + 1,
							     .key = key,
							     .key_size = (uint32_t)strlen(key)};

				if (!ok[next]) {
					rv = client_send(conn, &req);
					inflight++;
				}
				next++;
			}
			if (rv == 0)
				rv = client_wait(conn, &resp, 2000);
			if (rv != 0) {
				sc_conn_drop(c, i);
				break;
			}
			inflight--;
			if (resp.request_id < groups && !ok[resp.request_id] &&
			    resp.status == CLIENT_STATUS_OK && resp.value_size == strlen(value) &&
			    memcmp(resp.value, value, resp.value_size) == 0) {
				ok[resp.request_id] = 1;
				left--;
			}
		}
		if (left > 0)
			sc_sleep_ms(10);
	}
	free(ok);
	return left;
}

int sc_mass(const struct sc_opt *opt, struct sc_mass_trial *trials, uint32_t *done)
{
	struct sc_cluster c;
	struct sc_many m;
	uint64_t *affected = calloc(opt->mass_groups, sizeof(uint64_t));
	int rv = 0;

	*done = 0;
	if (affected == NULL || sc_many_init(&m, opt->mass_groups) != 0 ||
	    sc_cluster_init(&c, opt, "mass", opt->mass_groups) != 0) {
		free(affected);
		return -1;
	}
	for (uint32_t t = 0; t < opt->mass_trials; t++) {
		struct sc_mass_trial *r = &trials[t];
		uint64_t ready_ns[SC_NODES] = {0}, start, t0;
		uint32_t left, victim = 0, best = UINT32_MAX, n_aff = 0;
		char value[32];

		memset(r, 0, sizeof(*r));
		/* A fresh cluster per trial: after a restart from the WALs, the node
		 * killed last time has the shortest logs and could lead nothing. */
		for (uint32_t i = 0; i < SC_NODES; i++)
			sc_node_wipe(&c.nodes[i]);
		sc_loadavg(r->load);
		if (sc_start_all(&c, ready_ns) != 0) {
			rv = -1;
			break;
		}
		start = c.started_ns;
		for (uint32_t i = 0; i < SC_NODES; i++)
			r->start_ns = ready_ns[i] > r->start_ns ? ready_ns[i] : r->start_ns;
		for (uint32_t g = 0; g < m.n; g++)
			m.target[g] = (uint8_t)(g % SC_NODES);
		snprintf(value, sizeof(value), "warm-%u", t);
		left = sc_many_run(&c, &m, "m", value, start, 120000);
		if (left > 0) {
			fprintf(stderr,
				"scenarios: mass trial %u: %u of %u groups without a committed "
				"PUT 120 s after start\n",
				t + 1, left, m.n);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		for (uint32_t g = 0; g < m.n; g++)
			r->committed_ns =
			    m.done_ns[g] > r->committed_ns ? m.done_ns[g] : r->committed_ns;
		for (uint32_t g = 0; g < m.n; g++)
			r->led[m.leader[g]]++;
		for (uint32_t i = 0; i < SC_NODES; i++) {
			uint32_t third = m.n / SC_NODES;
			uint32_t d = r->led[i] > third ? r->led[i] - third : third - r->led[i];

			if (d < best) {
				best = d;
				victim = i;
			}
		}
		uint8_t *was_led = malloc(m.n);

		if (was_led == NULL) {
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		for (uint32_t g = 0; g < m.n; g++) {
			was_led[g] = m.leader[g];
			m.target[g] = m.leader[g];
		}
		if (opt->settle_ms > 0)
			sc_sleep_ms(opt->settle_ms);
		for (uint32_t i = 0; i < SC_NODES; i++)
			sc_conn(&c, i);
		r->victim = victim + 1;
		snprintf(value, sizeof(value), "after-%u", t);
		t0 = sc_now_ns();
		kill(c.nodes[victim].pid, opt->mass_stop ? SIGSTOP : SIGKILL);
		c.nodes[victim].stopped = true;
		if (!opt->mass_stop)
			sc_node_reap(&c, victim, 10000);
		m.redirects = m.not_leader_no_hint = m.errors = m.retries = 0;
		left = sc_many_run(&c, &m, "m", value, t0, opt->mass_wait_s * 1000);
		r->redirects = m.redirects;
		r->no_hint = m.not_leader_no_hint;
		r->errors = m.errors;
		r->retries = m.retries;
		for (uint32_t g = 0; g < m.n; g++) {
			r->all_ns = m.done_ns[g] > r->all_ns ? m.done_ns[g] : r->all_ns;
			if (m.done_ns[g] > (uint64_t)opt->election_ms * SC_NS_PER_MS / 2)
				r->slow++;
			if (was_led[g] == victim)
				affected[n_aff++] = m.done_ns[g];
			else if (m.done_ns[g] > r->others_max_ns)
				r->others_max_ns = m.done_ns[g];
		}
		free(was_led);
		r->affected = sc_stats(affected, n_aff);
		if (left > 0) {
			fprintf(stderr,
				"scenarios: mass trial %u: %u of %u groups without a committed "
				"PUT %u s after node %u was %s\n",
				t + 1, left, m.n, opt->mass_wait_s, victim + 1,
				opt->mass_stop ? "stopped" : "killed");
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c.nodes[i]);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		sc_log(opt,
		       "mass trial %u: node %u led %u of %u groups; all committed again after "
		       "%.1f ms (its groups: p50 %.1f ms)",
		       t + 1, victim + 1, r->led[victim], m.n, sc_ms(r->all_ns), r->affected.p50);
		/* The killed node restarts from its WAL and catches up (a stopped
		 * one is killed first: SIGKILL also ends a stopped process). */
		if (opt->mass_stop) {
			kill(c.nodes[victim].pid, SIGKILL);
			sc_node_reap(&c, victim, 10000);
		}
		if (sc_start(&c, 1u << victim, ready_ns) != 0) {
			fprintf(stderr, "scenarios: mass trial %u: node %u did not restart\n",
				t + 1, victim + 1);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		t0 = c.started_ns;
		r->rejoin_ready_ns = ready_ns[victim];
		left = sc_catch_up(&c, victim, m.n, "m", value, 120000);
		r->rejoin_ns = sc_now_ns() - t0;
		if (left > 0) {
			fprintf(
			    stderr,
			    "scenarios: mass trial %u: node %u restarted from its WAL lags in %u "
			    "groups after 120 s\n",
			    t + 1, victim + 1, left);
			sc_print_log_tail(&c.nodes[victim]);
			rv = -1;
			sc_cluster_stop(&c);
			break;
		}
		sc_log(opt, "mass trial %u: node %u restarted: ready %.0f ms, caught up %.0f ms",
		       t + 1, victim + 1, sc_ms(r->rejoin_ready_ns), sc_ms(r->rejoin_ns));
		(*done)++;
		sc_cluster_stop(&c);
	}
	sc_many_free(&m);
	free(affected);
	return rv;
}
