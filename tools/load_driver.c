/* flotilla-load's load threads: each has its own connection to every node
 * (tools/client.h's struct client under this thread's epoll loop), its own
 * share of the requests in flight and its own histograms. A request goes
 * out to its group's leader, is matched to its slot by request_id, and is
 * redirected, timed out or failed as flotilla-load.c describes. Closed loop:
 * a slot sends again when its request ends; open loop: requests are due at
 * fixed intervals whatever happened to earlier ones. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "base/le.h"
#include "tools/load_internal.h"

/* --- Connections. --- */

static uint64_t load_backoff_ns(uint32_t failures)
{
	uint64_t ms = LOAD_BACKOFF_MS_MIN;

	for (uint32_t i = 0; i < failures && ms < LOAD_BACKOFF_MS_MAX; i++)
		ms *= 2;
	return (ms < LOAD_BACKOFF_MS_MAX ? ms : LOAD_BACKOFF_MS_MAX) * NS_PER_MS;
}

static bool load_conn_is_up(const struct load_conn *conn)
{
	return conn->client.fd >= 0;
}

static void load_conn_watch(struct load_thread *t, uint32_t node_slot, uint32_t events)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct epoll_event ev = {.events = events, .data.u32 = node_slot};

	if (conn->events == events)
		return;
	/* Cannot fail for a registered fd short of a bug; the next flush or
	 * read would then notice a dead socket. */
	(void)epoll_ctl(t->epfd, EPOLL_CTL_MOD, conn->client.fd, &ev);
	conn->events = events;
}

/* Connect to a node whose connection is down and whose backoff is over.
 * client_connect() blocks for at most LOAD_CONNECT_MS, stalling this thread's
 * other connections meanwhile; on loopback a dead node refuses at once. */
static void load_conn_open(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = node_slot};
	int rv;

	rv = client_connect(&conn->client, t->run->opt.nodes[node_slot].addr, LOAD_CONNECT_MS);
	if (rv == 0 && epoll_ctl(t->epfd, EPOLL_CTL_ADD, conn->client.fd, &ev) != 0) {
		rv = -errno;
		client_close(&conn->client);
	}
	if (rv != 0) {
		load_tally(t, load_is_measuring(t->run, now), LOAD_STAT_CONNECTS_FAILED, 1);
		conn->retry_at_ns = now + load_backoff_ns(conn->failures);
		conn->failures++;
		return;
	}
	conn->events = EPOLLIN;
	conn->failures = 0;
	conn->dirty = false;
}

static void load_req_finish(struct load_thread *t, uint32_t slot, uint64_t now);

/* The connection broke: its requests in flight fail as disconnected, and it
 * is retried after a backoff. */
static void load_conn_lost(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];

	if (!load_conn_is_up(conn))
		return;
	(void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, conn->client.fd, NULL);
	client_close(&conn->client);
	conn->dirty = false;
	conn->events = 0;
	conn->retry_at_ns = now + load_backoff_ns(conn->failures);
	conn->failures++;
	load_tally(t, load_is_measuring(t->run, now), LOAD_STAT_CONNS_LOST, 1);
	for (uint32_t i = 0; i < t->reqs_count; i++) {
		struct load_req *req = &t->reqs[i];

		if (req->state != LOAD_REQ_SENT || req->node_slot != node_slot)
			continue;
		load_tally(t, req->measured, LOAD_STAT_DISCONNECTED, 1);
		load_req_finish(t, i, now);
	}
}

static void load_conn_flush(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	int rv;

	if (!load_conn_is_up(conn))
		return;
	conn->dirty = false;
	rv = client_flush(&conn->client);
	if (rv == 0)
		load_conn_watch(t, node_slot, EPOLLIN);
	else if (rv == -EAGAIN)
		load_conn_watch(t, node_slot, EPOLLIN | EPOLLOUT);
	else
		load_conn_lost(t, node_slot, now);
}

/* --- Requests. --- */

/* The node to send a new request for group to: its leader if known and
 * reachable, else the next reachable node; -1 if none is. */
static int load_pick_node(struct load_thread *t, uint64_t group)
{
	uint32_t nodes_count = t->run->opt.nodes_count;
	int leader = load_leader(t->run, group);

	if (leader >= 0 && load_conn_is_up(&t->conns[leader]))
		return leader;
	for (uint32_t i = 0; i < nodes_count; i++) {
		uint32_t slot = (t->next_node + i) % nodes_count;

		if (load_conn_is_up(&t->conns[slot])) {
			t->next_node = slot + 1;
			return (int)slot;
		}
	}
	return -1;
}

/* Send req to req->node_slot, or, when that node is down, to any reachable
 * node; when none is, wait and try again at the next scan. */
static void load_req_send(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];
	struct load_conn *conn = &t->conns[req->node_slot];
	char key[LOAD_KEY_SIZE + 1];
	struct client_request creq;

	if (!load_conn_is_up(conn)) {
		int other = load_pick_node(t, load_group_of(t->run, req->key));

		if (other < 0) {
			req->state = LOAD_REQ_WAITING;
			req->retry_at_ns = now + LOAD_SCAN_NS;
			return;
		}
		req->node_slot = (uint32_t)other;
		conn = &t->conns[other];
	}
	snprintf(key, sizeof(key), "k%015llx", (unsigned long long)req->key);
	req->id = (++t->seq << LOAD_SLOT_BITS) | slot;
	creq = (struct client_request){
	    .op = req->op == CLIENT_OP_GET && t->run->stale_reads ? CLIENT_OP_LOCAL_GET : req->op,
	    .request_id = req->id,
	    .group = load_group_of(t->run, req->key),
	    .key = key,
	    .key_size = LOAD_KEY_SIZE,
	};
	if (req->op == CLIENT_OP_PUT) {
		if (t->run->opt.check) { /* client_send() copies the value out. */
			le_put64(t->value, t->run->nonce);
			le_put64(t->value + 8, req->value_id);
		}
		creq.value = t->value;
		creq.value_size = t->run->opt.value_size;
	}
	if (client_send(&conn->client, &creq) != 0) {
		/* -ENOMEM; a request within limits is never -EINVAL. */
		load_conn_lost(t, req->node_slot, now);
		req->state = LOAD_REQ_WAITING;
		req->retry_at_ns = now + LOAD_SCAN_NS;
		return;
	}
	conn->dirty = true;
	req->state = LOAD_REQ_SENT;
}

/* Start a new request in slot, due at due_ns. */
static void load_req_start(struct load_thread *t, uint32_t slot, uint64_t due_ns, uint64_t now)
{
	struct load_run *run = t->run;
	struct load_req *req = &t->reqs[slot];
	int node;

	if (run->opt.zipf_theta > 0) {
		uint64_t rank = load_zipf_rank(&run->zipf, load_rng_double(t->rng));

		req->key = load_zipf_scatter(&run->scatter, rank);
	} else {
		req->key = load_rng_next(t->rng) % run->opt.keys;
	}
	req->op = load_rng_double(t->rng) < run->opt.read_ratio ? CLIENT_OP_GET : CLIENT_OP_PUT;
	req->due_ns = due_ns;
	req->deadline_ns = now + (uint64_t)run->opt.timeout_ms * NS_PER_MS;
	req->redirects = 0;
	req->measured = due_ns >= run->measure_ns && due_ns < load_end_ns(run);
	node = load_pick_node(t, load_group_of(run, req->key));
	req->node_slot = node < 0 ? 0 : (uint32_t)node;
	if (run->stale_reads && req->op == CLIENT_OP_GET) /* Mostly a follower. */
		req->node_slot = (uint32_t)(load_rng_next(t->rng) % run->opt.nodes_count);
	if (run->opt.check) {
		if (req->op == CLIENT_OP_PUT)
			req->value_id = (uint64_t)(t->index + 1) << 40 | ++t->writes_started;
		load_history_call(t, slot, now);
	}
	load_req_send(t, slot, now);
}

/* The request in slot has ended (answered or failed): in closed loop the
 * slot starts its next request at once, unless the run is over. */
static void load_req_finish(struct load_thread *t, uint32_t slot, uint64_t now)
{
	struct load_req *req = &t->reqs[slot];

	req->id = 0;
	if (!t->run->opt.open_loop && now < load_end_ns(t->run)) {
		load_req_start(t, slot, now, now);
		return;
	}
	req->state = LOAD_REQ_FREE;
	req->next_free = t->free_head;
	t->free_head = slot;
	t->inflight--;
}

/* NOT_LEADER from node_slot: follow the hint, or try the next node after a
 * pause growing with the redirects so far (an election may be under way). */
static void load_req_redirect(struct load_thread *t, uint32_t slot, uint64_t hint, uint64_t now)
{
	struct load_run *run = t->run;
	struct load_req *req = &t->reqs[slot];
	int hinted = hint == 0 ? -1 : load_node_slot(run, hint);
	uint64_t pause_ms;

	load_tally(t, req->measured, LOAD_STAT_REDIRECTS, 1);
	if (++req->redirects > run->opt.redirects_max) {
		load_tally(t, req->measured, LOAD_STAT_NOT_LEADER, 1);
		load_req_finish(t, slot, now);
		return;
	}
	if (hinted >= 0 && (uint32_t)hinted != req->node_slot) {
		if (load_learn_leader(run, load_group_of(run, req->key), (uint32_t)hinted))
			load_tally(t, load_is_measuring(run, now), LOAD_STAT_LEADER_CHANGES, 1);
		req->node_slot = (uint32_t)hinted;
		if (load_conn_is_up(&t->conns[hinted])) {
			load_req_send(t, slot, now);
			return;
		}
	} else {
		req->node_slot = (req->node_slot + 1) % run->opt.nodes_count;
	}
	pause_ms = req->redirects < 8 ? UINT64_C(1) << req->redirects : LOAD_REDIRECT_MS_MAX;
	if (pause_ms > LOAD_REDIRECT_MS_MAX)
		pause_ms = LOAD_REDIRECT_MS_MAX;
	req->id = 0;
	req->state = LOAD_REQ_WAITING;
	req->retry_at_ns = now + pause_ms * NS_PER_MS;
}

static void load_on_response(struct load_thread *t, uint32_t node_slot,
			     const struct client_response *resp, uint64_t now)
{
	struct load_run *run = t->run;
	uint32_t slot = (uint32_t)(resp->request_id & (LOAD_SLOTS_MAX - 1));
	struct load_req *req;
	bool is_read;

	if (slot >= t->reqs_count || t->reqs[slot].state != LOAD_REQ_SENT ||
	    t->reqs[slot].id != resp->request_id) {
		load_tally(t, load_is_measuring(run, now), LOAD_STAT_LATE, 1);
		return;
	}
	req = &t->reqs[slot];
	is_read = req->op == CLIENT_OP_GET;
	switch (resp->status) {
	case CLIENT_STATUS_OK:
	case CLIENT_STATUS_NOT_FOUND:
		/* Only the leader commits a write: the node that did leads. */
		if (!is_read && load_learn_leader(run, load_group_of(run, req->key), node_slot))
			load_tally(t, load_is_measuring(run, now), LOAD_STAT_LEADER_CHANGES, 1);
		load_tally(t, req->measured, LOAD_STAT_OPS, 1);
		load_tally(t, req->measured, is_read ? LOAD_STAT_READS : LOAD_STAT_WRITES, 1);
		load_tally(t, req->measured, LOAD_STAT_BYTES,
			   is_read ? resp->value_size : run->opt.value_size);
		if (resp->status == CLIENT_STATUS_NOT_FOUND)
			load_tally(t, req->measured, LOAD_STAT_NOT_FOUND, 1);
		if (run->opt.check)
			load_history_return(t, req, resp);
		load_hist_record(t->interval_hist, now - req->due_ns);
		if (req->measured)
			load_hist_record(t->measured_hist, now - req->due_ns);
		break;
	case CLIENT_STATUS_NOT_LEADER:
		load_req_redirect(t, slot, resp->leader_hint, now);
		return;
	case CLIENT_STATUS_ERROR:
		load_tally(t, req->measured, LOAD_STAT_SERVER_ERRORS, 1);
		break;
	case CLIENT_STATUS_NO_SPACE: /* Not done; counted apart so a full disk shows. */
		load_tally(t, req->measured, LOAD_STAT_NO_SPACE, 1);
		break;
	default: /* BAD_REQUEST, or a status no GET or PUT should get. */
		load_tally(t, req->measured, LOAD_STAT_BAD_REQUESTS, 1);
		break;
	}
	load_req_finish(t, slot, now);
}

/* Read what node_slot's socket has and handle every complete answer. */
static void load_conn_read(struct load_thread *t, uint32_t node_slot, uint64_t now)
{
	struct load_conn *conn = &t->conns[node_slot];
	struct client_response resp;

	for (int i = 0; i < LOAD_READS_PER_EVENT && load_conn_is_up(conn); i++) {
		int rv = client_read(&conn->client);
		int got = 0;

		if (rv == -EAGAIN)
			return;
		/* Answers read before a close still count. */
		while (load_conn_is_up(conn) && (got = client_receive(&conn->client, &resp)) == 1)
			load_on_response(t, node_slot, &resp, now);
		if (rv < 0 || got < 0) {
			load_conn_lost(t, node_slot, now);
			return;
		}
	}
}

/* Time out overdue requests and resend the waiting ones that are due. */
static void load_scan(struct load_thread *t, uint64_t now)
{
	for (uint32_t i = 0; i < t->reqs_count; i++) {
		struct load_req *req = &t->reqs[i];

		if (req->state == LOAD_REQ_FREE)
			continue;
		if (now >= req->deadline_ns) {
			load_tally(t, req->measured, LOAD_STAT_TIMEOUTS, 1);
			load_req_finish(t, i, now);
		} else if (req->state == LOAD_REQ_WAITING && now >= req->retry_at_ns) {
			load_req_send(t, i, now);
		}
	}
}

/* Open loop: when this thread's request seq is due. The schedule has
 * request j due at j / rate seconds from the start, and thread i takes
 * j = i, i + threads, i + 2 threads, ...; computed afresh for each request so
 * that rounding never accumulates. */
static uint64_t load_due_ns(const struct load_thread *t, uint64_t seq)
{
	const struct load_options *o = &t->run->opt;
	double j = (double)t->index + (double)seq * (double)o->threads;

	return t->run->start_ns + (uint64_t)(j * (double)NS_PER_S / o->rate);
}

/* Open loop: how many of this thread's requests were due before end_ns but
 * never started. */
static uint64_t load_unsent(const struct load_thread *t, uint64_t end_ns)
{
	const struct load_options *o = &t->run->opt;
	double span_s = (double)(end_ns - t->run->start_ns) / (double)NS_PER_S;
	uint64_t due = (uint64_t)ceil(span_s * o->rate), mine; /* Requests j < due. */

	if (end_ns <= t->run->start_ns || due <= t->index)
		return 0;
	mine = (due - t->index + o->threads - 1) / o->threads;
	return mine > t->due_seq ? mine - t->due_seq : 0;
}

/* Open loop: start every request that is due, while slots are free. Once
 * the run is over nothing new starts, so the drain is bounded by the
 * timeout; what was due and never started is reported as unsent. */
static void load_start_due(struct load_thread *t, uint64_t now)
{
	if (now >= load_end_ns(t->run))
		return;
	while (t->next_due_ns <= now && t->free_head != UINT32_MAX) {
		uint32_t slot = t->free_head;

		t->free_head = t->reqs[slot].next_free;
		t->inflight++;
		load_req_start(t, slot, t->next_due_ns, now);
		t->next_due_ns = load_due_ns(t, ++t->due_seq);
	}
}

/* Hand the interval's counts to the reporter. */
static void load_publish(struct load_thread *t)
{
	pthread_mutex_lock(&t->lock);
	load_counts_add(&t->published, &t->interval);
	load_hist_add(t->published_hist, t->interval_hist);
	pthread_mutex_unlock(&t->lock);
	memset(&t->interval, 0, sizeof(t->interval));
	if (!load_hist_is_empty(t->interval_hist))
		load_hist_reset(t->interval_hist);
}

/* Wait for socket events until wake_ns at the latest, and handle them. */
static void load_poll(struct load_thread *t, uint64_t wake_ns)
{
	struct epoll_event events[LOAD_EVENTS_MAX];
	uint64_t now = load_now_ns(), wait_ns = wake_ns > now ? wake_ns - now : 0;
	struct timespec timeout = {.tv_sec = (time_t)(wait_ns / NS_PER_S),
				   .tv_nsec = (long)(wait_ns % NS_PER_S)};
	int n = epoll_pwait2(t->epfd, events, LOAD_EVENTS_MAX, &timeout, NULL);

	if (n < 0 && errno == ENOSYS) /* Before Linux 5.11: millisecond timeouts. */
		n = epoll_wait(t->epfd, events, LOAD_EVENTS_MAX,
			       (int)((wait_ns + NS_PER_MS - 1) / NS_PER_MS));
	now = load_now_ns();
	for (int i = 0; i < n; i++) {
		uint32_t node_slot = events[i].data.u32;

		if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			load_conn_read(t, node_slot, now);
		if ((events[i].events & EPOLLOUT) && load_conn_is_up(&t->conns[node_slot]))
			load_conn_flush(t, node_slot, now);
	}
}

/* The thread's loop: runs until the end and until its last request ended,
 * which a timeout bounds. */
void *load_thread_main(void *arg)
{
	struct load_thread *t = arg;
	struct load_run *run = t->run;
	uint32_t nodes_count = run->opt.nodes_count;
	uint64_t now = load_now_ns(), next_scan, next_publish;

	while (now < run->start_ns) {
		uint64_t wait_ns = run->start_ns - now;
		struct timespec ts = {.tv_nsec =
					  (long)(wait_ns < NS_PER_S ? wait_ns : NS_PER_S - 1)};

		nanosleep(&ts, NULL);
		now = load_now_ns();
	}
	for (uint32_t i = 0; i < nodes_count; i++)
		load_conn_open(t, i, now);
	if (!run->opt.open_loop)
		for (uint32_t i = 0; i < t->reqs_count; i++, t->inflight++)
			load_req_start(t, i, now, now);
	next_scan = now + LOAD_SCAN_NS;
	next_publish = now + LOAD_PUBLISH_NS;
	while (now < load_end_ns(run) || t->inflight > 0) {
		uint64_t wake;

		if (run->opt.open_loop)
			load_start_due(t, now);
		if (now >= next_scan) {
			load_scan(t, now);
			for (uint32_t i = 0; i < nodes_count; i++)
				if (!load_conn_is_up(&t->conns[i]) &&
				    now >= t->conns[i].retry_at_ns)
					load_conn_open(t, i, now);
			next_scan = now + LOAD_SCAN_NS;
		}
		for (uint32_t i = 0; i < nodes_count; i++)
			if (t->conns[i].dirty)
				load_conn_flush(t, i, now);
		if (now >= next_publish) {
			load_publish(t);
			next_publish = now + LOAD_PUBLISH_NS;
		}
		wake = next_scan < next_publish ? next_scan : next_publish;
		if (run->opt.open_loop && t->free_head != UINT32_MAX && t->next_due_ns < wake)
			wake = t->next_due_ns;
		load_poll(t, wake);
		now = load_now_ns();
	}
	if (run->opt.open_loop)
		t->unsent = load_unsent(t, load_end_ns(run));
	load_publish(t);
	for (uint32_t i = 0; i < nodes_count; i++)
		client_close(&t->conns[i].client);
	return NULL;
}

/* --- A thread's set-up and tear-down. --- */

void load_thread_deinit(struct load_thread *t)
{
	for (uint32_t i = 0; i < LOAD_NODES_MAX; i++)
		client_close(&t->conns[i].client);
	if (t->epfd >= 0)
		close(t->epfd);
	pthread_mutex_destroy(&t->lock);
	free(t->reqs);
	free(t->value);
	free(t->interval_hist);
	free(t->measured_hist);
	free(t->published_hist);
	free(t->history);
}

/* Give thread index its share of the slots (closed loop: of the
 * concurrency; open loop: of the in-flight limit and of the rate). Returns
 * 0 or -ENOMEM, -errno from epoll_create1. */
int load_thread_init(struct load_thread *t, struct load_run *run, uint32_t index)
{
	const struct load_options *o = &run->opt;
	uint32_t total = o->open_loop ? o->inflight_max : o->concurrency;
	uint64_t seed = o->seed ^ (0x5851f42d4c957f2dull * (index + 1));

	memset(t, 0, sizeof(*t));
	t->run = run;
	t->index = index;
	t->epfd = -1;
	for (uint32_t i = 0; i < LOAD_NODES_MAX; i++)
		t->conns[i].client.fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->reqs_count = total / o->threads + (index < total % o->threads ? 1 : 0);
	t->reqs = calloc(t->reqs_count > 0 ? t->reqs_count : 1, sizeof(*t->reqs));
	t->value = malloc(o->value_size > 0 ? o->value_size : 1);
	t->interval_hist = malloc(sizeof(*t->interval_hist));
	t->measured_hist = malloc(sizeof(*t->measured_hist));
	t->published_hist = malloc(sizeof(*t->published_hist));
	if (t->reqs == NULL || t->value == NULL || t->interval_hist == NULL ||
	    t->measured_hist == NULL || t->published_hist == NULL)
		return -ENOMEM;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0)
		return -errno;
	load_hist_reset(t->interval_hist);
	load_hist_reset(t->measured_hist);
	load_hist_reset(t->published_hist);
	for (int i = 0; i < 4; i++)
		t->rng[i] = load_splitmix(&seed);
	for (uint32_t i = 0; i < o->value_size; i++)
		t->value[i] = (unsigned char)load_rng_next(t->rng);
	/* Closed loop: every slot starts busy, and frees itself after the end. */
	t->free_head = UINT32_MAX;
	if (o->open_loop) {
		for (uint32_t i = t->reqs_count; i-- > 0;) {
			t->reqs[i].next_free = t->free_head;
			t->free_head = i;
		}
		t->due_seq = 0;
		t->next_due_ns = load_due_ns(t, 0);
	}
	return 0;
}
