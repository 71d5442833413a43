/* Scenario election: latency from killing (kill -9) or pausing (SIGSTOP)
 * one group's leader to the first PUT a survivor acknowledges as leader.
 * See scenarios.c for the method. */
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

/* --- Scenario: election latency of one group. --- */

/* One trial: returns 0 and the times, or -1. */
static int sc_election_trial(struct sc_cluster *c, bool stop, uint32_t trial, uint64_t *commit_ns,
			     uint64_t *known_ns, uint32_t *new_leader, uint32_t *killed)
{
	const struct sc_opt *opt = c->opt;
	char warm[32], value[32];
	uint64_t bound_ns =
	    (uint64_t)(opt->election_ms * 20 > 10000 ? opt->election_ms * 20 : 10000) *
	    SC_NS_PER_MS;
	uint64_t poll_ns = (uint64_t)opt->poll_us * 1000;
	uint64_t t0, sent_ns[SC_NODES] = {0}, next_ns[SC_NODES] = {0}, req_id[SC_NODES] = {0};
	bool inflight[SC_NODES] = {false};
	int leader;
	uint32_t victim;

	snprintf(warm, sizeof(warm), "w%u", trial);
	snprintf(value, sizeof(value), "%s-%u", stop ? "stop" : "kill", trial);
	leader = sc_put_settled(c, 1, "warm", warm, true, 30000);
	if (leader < 0) {
		fprintf(stderr, "scenarios: election trial %u: no settled leader within 30 s\n",
			trial);
		return -1;
	}
	victim = (uint32_t)leader;
	*killed = victim;
	/* A node that restarted less than an election timeout ago refuses to
	 * vote (it may have promised a leader before its crash), so a kill
	 * right after the previous trial's restart would time that instead of
	 * the usual failover: let every node be up for --min-uptime-ms. */
	for (uint32_t i = 0; i < SC_NODES; i++) {
		uint64_t up_ns = (uint64_t)opt->uptime_ms * SC_NS_PER_MS, now = sc_now_ns();

		if (c->nodes[i].ready_at_ns + up_ns > now)
			sc_sleep_ms(
			    (uint32_t)((c->nodes[i].ready_at_ns + up_ns - now) / SC_NS_PER_MS) + 1);
	}
	if (opt->uptime_ms > 0 && sc_put_settled(c, 1, "warm", warm, true, 30000) != (int)victim) {
		fprintf(stderr, "scenarios: election trial %u: the leader changed while waiting\n",
			trial);
		return -1;
	}
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_conn(c, i); /* Connected before the clock starts. */
	sc_sleep_ms((uint32_t)(sc_rand() % opt->heartbeat_ms));

	t0 = sc_now_ns();
	kill(c->nodes[victim].pid, stop ? SIGSTOP : SIGKILL);
	c->nodes[victim].stopped = true;
	*known_ns = 0;
	*commit_ns = 0;
	while (*commit_ns == 0) {
		uint64_t now = sc_now_ns();
		struct pollfd pfd[SC_NODES];
		uint32_t map[SC_NODES];
		nfds_t count = 0;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)poll_ns};

		if (now - t0 >= bound_ns) {
			fprintf(stderr,
				"scenarios: election trial %u (%s): no new leader committed "
				"within %.0f ms\n",
				trial, stop ? "SIGSTOP" : "kill -9", sc_ms(bound_ns));
			for (uint32_t i = 0; i < SC_NODES; i++)
				sc_print_log_tail(&c->nodes[i]);
			return -1;
		}
		for (uint32_t i = 0; i < SC_NODES; i++) {
			struct client *conn;

			if (i == victim)
				continue;
			if (!inflight[i] && now >= next_ns[i]) {
				struct client_request req = sc_put_request(1, "e", value);

				conn = sc_conn(c, i);
				if (conn == NULL) {
					next_ns[i] = now + 10 * SC_NS_PER_MS;
					continue;
				}
				req.request_id = req_id[i] = ++c->next_request;
				if (client_send(conn, &req) != 0) {
					sc_conn_drop(c, i);
					continue;
				}
				inflight[i] = true;
				sent_ns[i] = now;
			}
			conn = &c->nodes[i].conn;
			if (conn->fd < 0)
				continue;
			int rv = client_flush(conn);

			if (rv != 0 && rv != -EAGAIN) {
				sc_conn_drop(c, i);
				inflight[i] = false;
				continue;
			}
			if (inflight[i] && now - sent_ns[i] >= 2000 * SC_NS_PER_MS) {
				/* Stuck: ask again on a new connection. */
				sc_conn_drop(c, i);
				inflight[i] = false;
				continue;
			}
			pfd[count] = (struct pollfd){
			    .fd = conn->fd, .events = POLLIN | (rv == -EAGAIN ? POLLOUT : 0)};
			map[count++] = i;
		}
		ppoll(pfd, count, &ts, NULL);
		now = sc_now_ns();
		for (nfds_t k = 0; k < count; k++) {
			uint32_t i = map[k];
			struct client *conn = &c->nodes[i].conn;
			struct client_response resp;
			int rv;

			if (!(pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			rv = client_read(conn);
			while (client_receive(conn, &resp) == 1) {
				if (resp.request_id != req_id[i])
					continue;
				inflight[i] = false;
				if (resp.status == CLIENT_STATUS_OK) {
					if (*commit_ns == 0) {
						*commit_ns = now - t0;
						*new_leader = i;
					}
					if (*known_ns == 0)
						*known_ns = now - t0;
				} else {
					if (resp.status == CLIENT_STATUS_NOT_LEADER &&
					    resp.leader_hint >= 1 && resp.leader_hint <= SC_NODES &&
					    resp.leader_hint - 1 != victim && *known_ns == 0)
						*known_ns = now - t0;
					next_ns[i] = now + poll_ns;
				}
			}
			if (rv < 0 && rv != -EAGAIN) {
				sc_conn_drop(c, i);
				inflight[i] = false;
				next_ns[i] = now + 10 * SC_NS_PER_MS;
			}
		}
	}
	/* The old leader: killed (SIGKILL also ends a stopped process), then
	 * restarted from its WAL. */
	if (stop)
		kill(c->nodes[victim].pid, SIGKILL);
	if (sc_node_reap(c, victim, 10000) != 0) {
		fprintf(stderr, "scenarios: node %u did not exit after SIGKILL\n", victim + 1);
		return -1;
	}
	if (sc_start(c, 1u << victim, NULL) != 0) {
		fprintf(stderr, "scenarios: node %u did not restart from its WAL\n", victim + 1);
		return -1;
	}
	return 0;
}

int sc_election(const struct sc_opt *opt, bool stop, struct sc_election_result *r)
{
	struct sc_cluster c;
	int rv = 0;

	memset(r, 0, sizeof(*r));
	r->fault = stop ? "SIGSTOP" : "kill -9";
	r->trials = opt->trials;
	r->commit_ns = calloc(opt->trials, sizeof(uint64_t));
	r->known_ns = calloc(opt->trials, sizeof(uint64_t));
	r->victims = calloc(opt->trials, 1);
	r->winners = calloc(opt->trials, 1);
	sc_loadavg(r->load);
	if (r->commit_ns == NULL || r->known_ns == NULL || r->victims == NULL ||
	    r->winners == NULL ||
	    sc_cluster_init(&c, opt, stop ? "election-stop" : "election-kill", 1) != 0)
		return -1;
	for (uint32_t i = 0; i < SC_NODES; i++)
		sc_node_wipe(&c.nodes[i]);
	if (sc_start_all(&c, NULL) != 0)
		return -1;
	for (uint32_t t = 0; t < opt->trials; t++) {
		uint64_t commit = 0, known = 0;
		uint32_t leader = 0, victim = 0;

		if (sc_election_trial(&c, stop, t, &commit, &known, &leader, &victim) != 0) {
			rv = -1;
			break;
		}
		r->commit_ns[r->ok] = commit;
		r->known_ns[r->ok] = known;
		r->victims[r->ok] = (uint8_t)(victim + 1);
		r->winners[r->ok] = (uint8_t)(leader + 1);
		r->ok++;
		r->new_leader[leader]++;
		sc_log(opt,
		       "election %s trial %u: leader known %.2f ms, committed %.2f ms (node %u)",
		       r->fault, t + 1, sc_ms(known), sc_ms(commit), leader + 1);
	}
	sc_cluster_stop(&c);
	r->trial_commit_ns = malloc((r->ok + 1) * sizeof(uint64_t));
	if (r->trial_commit_ns != NULL)
		memcpy(r->trial_commit_ns, r->commit_ns, r->ok * sizeof(uint64_t));
	r->commit = sc_stats(r->commit_ns, r->ok);
	r->known = sc_stats(r->known_ns, r->ok);
	return rv;
}
