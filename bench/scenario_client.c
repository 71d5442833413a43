/* flotilla-scenarios' requests: one connection per node, a PUT that settles
 * on every node, and pipelined PUTs into many groups that follow leaders,
 * back off and retry until each group has acknowledged one. */
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

/* --- Client side. --- */

struct client *sc_conn(struct sc_cluster *c, uint32_t i)
{
	struct sc_node *n = &c->nodes[i];
	char addr[64];

	if (n->conn.fd >= 0)
		return &n->conn;
	if (n->pid <= 0 || n->stopped || sc_now_ns() < n->retry_conn_ns)
		return NULL;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", sc_client_port(c, i));
	if (client_connect(&n->conn, addr, SC_CONNECT_MS) != 0) {
		client_close(&n->conn);
		n->retry_conn_ns = sc_now_ns() + 20 * SC_NS_PER_MS;
		return NULL;
	}
	return &n->conn;
}

void sc_conn_drop(struct sc_cluster *c, uint32_t i)
{
	client_close(&c->nodes[i].conn);
	c->nodes[i].inflight = 0;
	c->nodes[i].retry_conn_ns = sc_now_ns() + 20 * SC_NS_PER_MS;
}

/* One request, one answer: 0 and *resp, or a negative errno. resp's value
 * stays valid until the next call on that connection. */
static int sc_call(struct sc_cluster *c, uint32_t i, struct client_request *req, int timeout_ms,
		   struct client_response *resp)
{
	struct client *conn = sc_conn(c, i);
	uint64_t deadline = sc_now_ns() + (uint64_t)timeout_ms * SC_NS_PER_MS;
	int rv;

	if (conn == NULL)
		return -ECONNREFUSED;
	req->request_id = ++c->next_request;
	rv = client_send(conn, req);
	while (rv == 0) {
		uint64_t now = sc_now_ns();

		if (now >= deadline) {
			rv = -ETIMEDOUT;
			break;
		}
		rv = client_wait(conn, resp, (int)((deadline - now) / SC_NS_PER_MS) + 1);
		if (rv == 0 && resp->request_id == req->request_id)
			return 0;
	}
	sc_conn_drop(c, i);
	return rv;
}

struct client_request sc_put_request(uint64_t group, const char *key, const char *value)
{
	return (struct client_request){.op = CLIENT_OP_PUT,
				       .group = group,
				       .key = key,
				       .key_size = (uint32_t)strlen(key),
				       .value = value,
				       .value_size = (uint32_t)strlen(value)};
}

/* PUT key=value into group through its leader, following hints; then, with
 * all_nodes, wait until every running node has applied it. Returns the
 * leader's index, or -1 after timeout_ms. */
int sc_put_settled(struct sc_cluster *c, uint64_t group, const char *key, const char *value,
		   bool all_nodes, uint32_t timeout_ms)
{
	uint64_t deadline = sc_now_ns() + timeout_ms * SC_NS_PER_MS;
	uint32_t target = 0;
	int leader = -1;

	while (leader < 0 && sc_now_ns() < deadline) {
		struct client_request req = sc_put_request(group, key, value);
		struct client_response resp;
		int rv = sc_call(c, target, &req, 1000, &resp);

		if (rv == 0 && resp.status == CLIENT_STATUS_OK) {
			leader = (int)target;
		} else if (rv == 0 && resp.status == CLIENT_STATUS_NOT_LEADER &&
			   resp.leader_hint >= 1 && resp.leader_hint <= SC_NODES &&
			   resp.leader_hint - 1 != target) {
			target = (uint32_t)resp.leader_hint - 1;
		} else {
			target = (target + 1) % SC_NODES;
			sc_sleep_ms(10);
		}
	}
	if (leader < 0 || !all_nodes)
		return leader;
	for (uint32_t i = 0; i < SC_NODES; i++) {
		bool applied = false;

		if (c->nodes[i].pid <= 0)
			continue;
		while (!applied && sc_now_ns() < deadline) {
			struct client_request req = {.op = CLIENT_OP_LOCAL_GET,
						     .group = group,
						     .key = key,
						     .key_size = (uint32_t)strlen(key)};
			struct client_response resp;
			int rv = sc_call(c, i, &req, 1000, &resp);

			applied = rv == 0 && resp.status == CLIENT_STATUS_OK &&
				  resp.value_size == strlen(value) &&
				  memcmp(resp.value, value, resp.value_size) == 0;
			if (!applied)
				sc_sleep_ms(5);
		}
		if (!applied)
			return -1;
	}
	return leader;
}

/* --- Pipelined PUT into many groups. --- */

int sc_many_init(struct sc_many *m, uint32_t n)
{
	memset(m, 0, sizeof(*m));
	m->n = n;
	m->state = calloc(n, 1);
	m->target = calloc(n, 1);
	m->sent_to = calloc(n, 1);
	m->attempt = calloc(n, sizeof(uint32_t));
	m->sent_ns = calloc(n, sizeof(uint64_t));
	m->done_ns = calloc(n, sizeof(uint64_t));
	m->leader = calloc(n, 1);
	m->ready = calloc(n, sizeof(uint32_t));
	m->backoff = calloc(n, sizeof(uint32_t));
	m->backoff_due = calloc(n, sizeof(uint64_t));
	return m->state && m->target && m->sent_to && m->attempt && m->sent_ns && m->done_ns &&
		       m->leader && m->ready && m->backoff && m->backoff_due
		   ? 0
		   : -ENOMEM;
}

void sc_many_free(struct sc_many *m)
{
	free(m->state);
	free(m->target);
	free(m->sent_to);
	free(m->attempt);
	free(m->sent_ns);
	free(m->done_ns);
	free(m->leader);
	free(m->ready);
	free(m->backoff);
	free(m->backoff_due);
}

static void sc_many_ready(struct sc_many *m, uint32_t g)
{
	m->state[g] = SC_G_READY;
	m->ready[m->ready_tail++ % m->n] = g;
}

static void sc_many_backoff(struct sc_many *m, uint32_t g, uint64_t due)
{
	uint32_t slot = m->backoff_tail++ % m->n;

	m->state[g] = SC_G_BACKOFF;
	m->backoff[slot] = g;
	m->backoff_due[slot] = due;
}

static bool sc_node_usable(const struct sc_cluster *c, uint32_t i)
{
	return c->nodes[i].pid > 0 && !c->nodes[i].stopped;
}

static uint32_t sc_next_usable(const struct sc_cluster *c, uint32_t after)
{
	for (uint32_t k = 1; k <= SC_NODES; k++) {
		uint32_t i = (after + k) % SC_NODES;

		if (sc_node_usable(c, i))
			return i;
	}
	return after;
}

/* Requeue every request in flight on node i (its connection is gone). */
static void sc_many_lost(struct sc_cluster *c, struct sc_many *m, uint32_t i)
{
	for (uint32_t g = 0; g < m->n; g++)
		if (m->state[g] == SC_G_SENT && m->sent_to[g] == i) {
			m->attempt[g]++;
			m->retries++;
			m->target[g] = (uint8_t)sc_next_usable(c, i);
			sc_many_ready(m, g);
		}
	sc_conn_drop(c, i);
}

static void sc_many_answer(struct sc_cluster *c, struct sc_many *m, uint32_t i,
			   const struct client_response *resp, uint64_t start, uint64_t now)
{
	uint32_t g = (uint32_t)(resp->request_id & 0xffffffffu);
	uint32_t attempt = (uint32_t)(resp->request_id >> 32);
	uint64_t retry = (uint64_t)c->opt->retry_ms * SC_NS_PER_MS;

	if (g >= m->n || m->state[g] != SC_G_SENT || m->attempt[g] != attempt || m->sent_to[g] != i)
		return; /* Late: the request was sent again since. */
	c->nodes[i].inflight--;
	m->attempt[g]++;
	if (resp->status == CLIENT_STATUS_OK) {
		m->state[g] = SC_G_DONE;
		m->done_ns[g] = now - start;
		m->leader[g] = (uint8_t)i;
	} else if (resp->status == CLIENT_STATUS_NOT_LEADER && resp->leader_hint >= 1 &&
		   resp->leader_hint <= SC_NODES && resp->leader_hint - 1 != i &&
		   sc_node_usable(c, (uint32_t)resp->leader_hint - 1)) {
		m->redirects++;
		m->target[g] = (uint8_t)(resp->leader_hint - 1);
		sc_many_ready(m, g);
	} else {
		if (resp->status == CLIENT_STATUS_NOT_LEADER)
			m->not_leader_no_hint++;
		else
			m->errors++;
		m->target[g] = (uint8_t)sc_next_usable(c, i);
		sc_many_backoff(m, g, now + retry);
	}
}

/* PUT key=value into groups 1..m->n, each through its leader, pipelined over
 * the usable nodes; targets as in m->target. Returns the groups not done by
 * timeout_ms after start. */
uint32_t sc_many_run(struct sc_cluster *c, struct sc_many *m, const char *key, const char *value,
		     uint64_t start, uint32_t timeout_ms)
{
	uint64_t deadline = start + timeout_ms * SC_NS_PER_MS, last_scan = start;
	uint32_t remaining = 0;

	for (uint32_t i = 0; i < SC_NODES; i++)
		c->nodes[i].inflight = 0;
	m->ready_head = m->ready_tail = m->backoff_head = m->backoff_tail = 0;
	for (uint32_t g = 0; g < m->n; g++) {
		m->sent_ns[g] = 0;
		m->done_ns[g] = 0;
		if (!sc_node_usable(c, m->target[g]))
			m->target[g] = (uint8_t)sc_next_usable(c, m->target[g]);
		sc_many_ready(m, g);
		remaining++;
	}
	while (remaining > 0) {
		uint64_t now = sc_now_ns();
		struct pollfd pfd[SC_NODES];
		uint32_t map[SC_NODES];
		nfds_t count = 0;
		int wait_ms = 10;

		if (now >= deadline)
			break;
		/* Due backoffs become ready. */
		while (m->backoff_head != m->backoff_tail &&
		       m->backoff_due[m->backoff_head % m->n] <= now)
			sc_many_ready(m, m->backoff[m->backoff_head++ % m->n]);
		/* Send what is ready, as far as the pipelines allow. */
		while (m->ready_head != m->ready_tail) {
			uint32_t g = m->ready[m->ready_head % m->n], i = m->target[g];
			struct client *conn;
			struct client_request req;
			if (m->state[g] != SC_G_READY) {
				m->ready_head++;
				continue;
			}
			if (!sc_node_usable(c, i))
				i = m->target[g] = (uint8_t)sc_next_usable(c, i);
			if (c->nodes[i].inflight >= SC_PIPELINE_MAX)
				break;
			conn = sc_conn(c, i);
			if (conn == NULL) {
				m->ready_head++;
				m->target[g] = (uint8_t)sc_next_usable(c, i);
				sc_many_backoff(m, g, now + 20 * SC_NS_PER_MS);
				continue;
			}
			req = sc_put_request(g + 1, key, value);
			req.request_id = (uint64_t)m->attempt[g] << 32 | g;
			if (client_send(conn, &req) != 0) {
				sc_many_lost(c, m, i);
				break;
			}
			m->ready_head++;
			m->state[g] = SC_G_SENT;
			m->sent_to[g] = (uint8_t)i;
			m->sent_ns[g] = now;
			c->nodes[i].inflight++;
		}
		for (uint32_t i = 0; i < SC_NODES; i++) {
			struct client *conn = &c->nodes[i].conn;
			int rv;

			if (conn->fd < 0)
				continue;
			rv = client_flush(conn);
			if (rv != 0 && rv != -EAGAIN) {
				sc_many_lost(c, m, i);
				continue;
			}
			pfd[count] = (struct pollfd){
			    .fd = conn->fd, .events = POLLIN | (rv == -EAGAIN ? POLLOUT : 0)};
			map[count++] = i;
		}
		if (m->backoff_head != m->backoff_tail) {
			uint64_t due = m->backoff_due[m->backoff_head % m->n];

			wait_ms = due <= now ? 0 : (int)((due - now) / SC_NS_PER_MS) + 1;
			if (wait_ms > 10)
				wait_ms = 10;
		}
		if (m->ready_head != m->ready_tail)
			wait_ms = wait_ms > 1 ? 1 : wait_ms;
		poll(pfd, count, wait_ms);
		now = sc_now_ns();
		for (nfds_t k = 0; k < count; k++) {
			uint32_t i = map[k];
			struct client *conn = &c->nodes[i].conn;
			struct client_response resp;
			int rv;

			if (!(pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			rv = client_read(conn);
			if (rv < 0 && rv != -EAGAIN) {
				/* Answers already read are still taken below. */
				while (client_receive(conn, &resp) == 1)
					sc_many_answer(c, m, i, &resp, start, now);
				sc_many_lost(c, m, i);
				continue;
			}
			while ((rv = client_receive(conn, &resp)) == 1)
				sc_many_answer(c, m, i, &resp, start, now);
			if (rv < 0)
				sc_many_lost(c, m, i);
		}
		/* Requests unanswered for too long go again (PUT of the same value). */
		if (now - last_scan >= 100 * SC_NS_PER_MS) {
			last_scan = now;
			for (uint32_t g = 0; g < m->n; g++)
				if (m->state[g] == SC_G_SENT &&
				    now - m->sent_ns[g] >= SC_REQUEST_MS * SC_NS_PER_MS) {
					c->nodes[m->sent_to[g]].inflight--;
					m->attempt[g]++;
					m->retries++;
					m->target[g] = (uint8_t)sc_next_usable(c, m->sent_to[g]);
					sc_many_ready(m, g);
				}
		}
		remaining = 0;
		for (uint32_t g = 0; g < m->n; g++)
			remaining += m->state[g] != SC_G_DONE;
	}
	return remaining;
}
