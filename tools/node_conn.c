/* flotilla-node's client threads and their connections. Each thread (a
 * worker) has its own epoll set and shares one listening socket with the
 * others (EPOLLEXCLUSIVE); it accepts connections, reads requests, hands
 * them to node_request.c, and sends the answers of each loop turn together.
 *
 * Bounds: at most --client-conns-max connections, and at most
 * --client-conns-per-source-max of them from one address (node_source.c),
 * so that one host cannot lock every other client out (more get an ERROR
 * answer with request id 0 and are closed at once), at most --client-inflight-max
 * requests in flight per connection (then the connection is not read until
 * answers go out), and no reading while more than CONN_OUT_MAX bytes of
 * answers wait to be sent; node-wide, the bytes of every client buffer
 * within --client-buffer-budget-mb (node_budget.c: the hooks here only ask
 * it before a buffer grows and tell it after a size changed). Deadlines, checked every
 * WORKER_TICK_MS: a request whose first bytes came must be complete within
 * --client-request-ms, and a connection that sent no complete request for
 * --client-idle-s while it waits for no answer is closed. Each limit hit is
 * counted (the node's metrics) and logged, at most one line a second per
 * kind.
 *
 * Lifetime: a connection counts its requests in flight (outstanding). When a
 * connection closes, its memory stays until every callback for it has come
 * back; only its client thread frees it, at the end of a loop turn, so no
 * event of the same turn can see freed memory. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/le.h"
#include "tools/node_internal.h"

/* --- Limits: counted, and logged at most once a second per kind. --- */

static const char *const conn_limit_whats[CONN_LIMIT_COUNT] = {
    [CONN_LIMIT_CONNS] = "client connections refused at --client-conns-max",
    [CONN_LIMIT_PER_SOURCE] = "client connections refused at --client-conns-per-source-max",
    [CONN_LIMIT_IDLE] = "idle client connections closed after --client-idle-s",
    [CONN_LIMIT_REQUEST] = "client connections closed with a request incomplete after "
			   "--client-request-ms",
    [CONN_LIMIT_HANDSHAKE] = "client connections closed with a TLS handshake not over after "
			     "--client-handshake-ms",
    [CONN_LIMIT_TLS] = "client connections refused by TLS",
    [CONN_LIMIT_BUDGET] = "client buffer budget hits (--client-buffer-budget-mb)",
};

void conn_limit_log(struct server *s, enum conn_limit limit, uint64_t now_ms, const char *fmt, ...)
{
	struct server_limit_log *l = &s->limit_log[limit];
	uint64_t suppressed;
	char line[256];
	va_list ap;

	pthread_mutex_lock(&s->limit_log_lock);
	if (l->logged_ms != 0 && now_ms < l->logged_ms + 1000) {
		l->suppressed++;
		pthread_mutex_unlock(&s->limit_log_lock);
		return;
	}
	suppressed = l->suppressed;
	l->suppressed = 0;
	l->logged_ms = now_ms;
	pthread_mutex_unlock(&s->limit_log_lock);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		server_log(LOG_LEVEL_WARN, "%s (and %llu more %s, not logged one by one)", line,
			   (unsigned long long)suppressed, conn_limit_whats[limit]);
	else
		server_log(LOG_LEVEL_WARN, "%s", line);
}

/* Write the count of hits that no line reported once their second is over,
 * so that a burst's size is known even when no hit follows it. */
static void conn_limit_flush(struct server *s, uint64_t now_ms)
{
	for (int i = 0; i < CONN_LIMIT_COUNT; i++) {
		struct server_limit_log *l = &s->limit_log[i];
		uint64_t suppressed = 0;

		pthread_mutex_lock(&s->limit_log_lock);
		if (l->suppressed > 0 && now_ms >= l->logged_ms + 1000) {
			suppressed = l->suppressed;
			l->suppressed = 0;
		}
		pthread_mutex_unlock(&s->limit_log_lock);
		if (suppressed > 0)
			server_log(LOG_LEVEL_WARN, "%llu more %s in the last second",
				   (unsigned long long)suppressed, conn_limit_whats[i]);
	}
}

/* "HOST:PORT" of fd's client, or "an unknown address". */
static const char *conn_peer_name(int fd, char buf[64])
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	char host[INET_ADDRSTRLEN];

	if (getpeername(fd, (struct sockaddr *)&addr, &len) != 0 || addr.sin_family != AF_INET ||
	    inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host)) == NULL)
		return "an unknown address";
	snprintf(buf, 64, "%s:%u", host, (unsigned)ntohs(addr.sin_port));
	return buf;
}

/* Whether c's input ends in a request not yet complete (bytes of it came,
 * not all). Complete requests held back by the bounds do not count. */
static bool conn_has_partial(const struct conn *c)
{
	uint32_t live = c->in_end - c->in_start;

	if (live == 0 || c->closing || c->eof)
		return false;
	return live < 4 || live - 4 < le_get32(c->in + c->in_start);
}

/* After c's input was processed at now_ms: note a complete request, and when
 * an incomplete one began waiting. */
static void conn_track(struct conn *c, uint64_t now_ms)
{
	if (c->requests_seen != c->requests_seen_ms_at) {
		c->requests_seen_ms_at = c->requests_seen;
		c->active_ms = now_ms;
		c->partial_ms = 0;
	}
	if (!conn_has_partial(c))
		c->partial_ms = 0;
	else if (c->partial_ms == 0)
		c->partial_ms = now_ms;
}

/* --- Connections: buffers, answers, reading, writing. --- */

static void conn_mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->worker->dirty;
	c->worker->dirty = c;
}

/* Stop serving c. Its memory stays until its last answer comes back; the
 * end of the loop turn frees it (it goes on the dirty list for that). */
static void conn_close(struct conn *c)
{
	if (c->closed)
		return;
	/* Free the slots before the client can see the close, so that it may
	 * connect again at once; its source's first (it holds one of
	 * conns_max, see node_sources_take). */
	node_sources_give(&c->worker->server->sources, c->source);
	atomic_fetch_sub(&c->worker->server->conns_count, 1);
	epoll_ctl(c->worker->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	node_tls_close(c);
	close(c->fd);
	c->fd = -1;
	c->closed = true;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->in_size = c->in_start = c->in_end = 0;
	c->out_size = c->out_start = c->out_end = 0;
	node_budget_sync(c);
	conn_mark_dirty(c);
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->worker;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}

/* Queue an answer. Out of memory closes the connection: the client then sees
 * its requests fail as on any lost connection. */
void conn_respond_op(struct conn *c, uint32_t op, uint32_t status, uint64_t request_id,
		     uint64_t leader, const void *value, uint32_t value_size)
{
	struct client_response resp = {.status = status,
				       .request_id = request_id,
				       .leader_hint = leader,
				       .value = value,
				       .value_size = value_size};
	uint32_t size = client_response_size(value_size);

	if (c->closed)
		return;
	if (!node_budget_grow(
		c, false,
		node_budget_capacity(c->out_size, c->out_start, c->out_end, size, CONN_IN_MIN),
		node_budget_may_refuse(op, status, value_size))) {
		char text[192];

		node_budget_busy_text(c->worker->server, text, sizeof(text));
		conn_respond_op(c, op, CLIENT_STATUS_BUSY, request_id, leader, text,
				(uint32_t)strlen(text));
		return;
	}
	if (client_reserve(&c->out, &c->out_size, &c->out_start, &c->out_end, size, CONN_IN_MIN) !=
	    0) {
		node_budget_sync(c);
		server_log(LOG_LEVEL_WARN, "client connection closed: out of memory for an answer");
		conn_close(c);
		return;
	}
	node_budget_sync(c);
	if (c->out_end == c->out_start)
		c->written_ms = c->worker->now_ms; /* The first answer waiting. */
	client_response_encode(&resp, c->out + c->out_end);
	c->out_end += size;
	conn_mark_dirty(c);
}

void conn_respond(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
		  const void *value, uint32_t value_size)
{
	conn_respond_op(c, 0, status, request_id, leader, value, value_size);
}

void conn_respond_text(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
		       const char *text)
{
	conn_respond(c, status, request_id, leader, text, (uint32_t)strlen(text));
}

/* Send what the socket takes. Returns 0 or -errno when the connection failed. */
static int conn_flush(struct conn *c)
{
	while (c->out_start < c->out_end) {
		ssize_t n = c->tls != NULL
				? node_tls_send(c, c->out + c->out_start, c->out_end - c->out_start)
				: send(c->fd, c->out + c->out_start, c->out_end - c->out_start,
				       MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_start += (uint32_t)n;
		c->written_ms = c->worker->now_ms;
	}
	c->out_start = c->out_end = 0;
	if (c->out_size > CONN_BUFFER_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_size = 0;
		node_budget_sync(c);
	}
	return 0;
}

/* Whether the bounds allow starting one more request. */
bool conn_can_start(const struct conn *c)
{
	return !c->closing && c->outstanding < c->worker->server->opt.inflight_max &&
	       c->out_end - c->out_start < CONN_OUT_MAX;
}

static bool conn_can_read(struct conn *c)
{
	return conn_can_start(c) && !c->eof && node_budget_may_read(c);
}

/* Whether c has nothing left to do: after BAD_REQUEST, or after the client
 * shut its side, once every answer is out. */
static bool conn_is_done(const struct conn *c)
{
	return c->out_end == c->out_start && (c->closing || (c->eof && c->outstanding == 0));
}

static void conn_update_events(struct conn *c)
{
	uint32_t events =
	    (conn_can_read(c) ? EPOLLIN : 0) | (c->out_end > c->out_start ? EPOLLOUT : 0);
	struct epoll_event ev;

	if (c->tls_state == CONN_TLS_SNIFF || c->tls_state == CONN_TLS_HANDSHAKE)
		events = c->tls_events;
	ev = (struct epoll_event){.events = events, .data.ptr = c};
	if (events == c->events)
		return;
	if (epoll_ctl(c->worker->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		server_log(LOG_LEVEL_ERROR, "epoll_ctl: %s", strerror(errno));
		conn_close(c);
		return;
	}
	c->events = events;
}

/* Read what the socket has, a few chunks at most (TLS: a few times 16
 * records of at most 16 KiB, and what the TLS layer holds). Returns 0 or
 * -errno (-ECONNRESET when the client closed). */
static int conn_read(struct conn *c)
{
	int reads_max = c->tls != NULL ? CONN_READS_MAX * 16 : CONN_READS_MAX;

	for (int i = 0; i < reads_max || node_tls_has_pending(c); i++) {
		uint64_t want = CONN_IN_MIN;
		uint32_t live = c->in_end - c->in_start;
		uint32_t room;
		ssize_t n;

		/* A partial request announces its size: room for the next chunk
		 * of it, so that the buffer grows as its bytes come, never to
		 * the size announced before they do. */
		if (live >= 4) {
			uint64_t frame = 4 + (uint64_t)le_get32(c->in + c->in_start);

			if (frame <= 4 + (uint64_t)CLIENT_REQUEST_SIZE_MAX && frame > live)
				want =
				    frame - live < CONN_READ_SIZE ? frame - live : CONN_READ_SIZE;
			if (want < CONN_IN_MIN)
				want = CONN_IN_MIN;
		}
		if (!node_budget_grow(
			c, true,
			node_budget_capacity(c->in_size, c->in_start, c->in_end, want, CONN_IN_MIN),
			false))
			return 0; /* Held unread until the budget has room. */
		if (client_reserve(&c->in, &c->in_size, &c->in_start, &c->in_end, want,
				   CONN_IN_MIN) != 0) {
			node_budget_sync(c);
			return -ENOMEM;
		}
		node_budget_sync(c);
		room = c->in_size - c->in_end;
		n = c->tls != NULL ? node_tls_recv(c, c->in + c->in_end, room)
				   : recv(c->fd, c->in + c->in_end, room, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->in_end += (uint32_t)n;
		if ((uint32_t)n < room && c->tls == NULL)
			return 0;
	}
	return 0;
}
/* Hand p to its connection's thread. Runs on a shard thread. */
void worker_complete(struct pending *p)
{
	struct worker *w = p->conn->worker; /* Immutable; p keeps the connection alive. */
	bool was_empty;
	uint64_t one = 1;

	node_budget_answer(p); /* Counted as it is produced, before it waits. */
	pthread_mutex_lock(&w->done_lock);
	was_empty = w->done_head == NULL;
	if (was_empty)
		w->done_head = p;
	else
		w->done_tail->next = p;
	w->done_tail = p;
	pthread_mutex_unlock(&w->done_lock);
	/* The worker empties the list only after reading the eventfd, so a push
	 * onto an empty list must wake it; pushes onto a non-empty list ride
	 * along with the wake-up of the first. */
	if (was_empty && write(w->wakefd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow; nothing else can fail here. */
	}
}

/* --- Client threads: accept, the epoll loop, answers from shard threads. --- */

/* accept() failed for lack of descriptors or memory. The listener stays
 * readable, so pause this thread briefly instead of spinning on it, and log
 * at most once a second. */
static void worker_accept_failed(struct worker *w, int err)
{
	static _Atomic uint64_t logged_ms;
	uint64_t now = server_now_ms(), last = atomic_load(&logged_ms);

	(void)w;
	if (now >= last + 1000 && atomic_compare_exchange_strong(&logged_ms, &last, now))
		server_log(LOG_LEVEL_WARN, "accept: %s", strerror(err));
	usleep(10 * 1000);
}

/* A connection refused at limit: answer ERROR with text (request id 0: no
 * request came), count and log it, and close fd. The answer is small and
 * the socket new, so one send() takes it. */
static void worker_refuse(struct worker *w, int fd, enum conn_limit limit, const char *text,
			  uint32_t open)
{
	struct server *s = w->server;
	unsigned char buf[CLIENT_RESPONSE_HEADER_SIZE + 160];
	char peer[64];
	struct client_response resp = {.status = CLIENT_STATUS_ERROR,
				       .request_id = 0,
				       .value = text,
				       .value_size = (uint32_t)strlen(text)};

	ASSERT(resp.value_size <= 160);
	client_response_encode(&resp, buf);
	if (send(fd, buf, client_response_size(resp.value_size), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* Best effort: the client sees the connection closed either way. */
	}
	if (limit == CONN_LIMIT_CONNS) {
		atomic_fetch_add(&s->conns_refused, 1);
		conn_limit_log(s, limit, server_now_ms(),
			       "client connection from %s refused: %u connections are open, the "
			       "limit (--client-conns-max %u)",
			       conn_peer_name(fd, peer), open, s->opt.conns_max);
	} else {
		atomic_fetch_add(&s->conns_refused_per_source, 1);
		conn_limit_log(s, limit, server_now_ms(),
			       "client connection from %s refused: %u connections from its "
			       "address are open, the limit (--client-conns-per-source-max %u)",
			       conn_peer_name(fd, peer), open, s->opt.conns_per_source_max);
	}
	close(fd);
}

/* Admit fd within both connection limits, taking one slot of each, or
 * refuse it. Returns whether it was admitted. */
static bool worker_admit(struct worker *w, int fd, const struct sockaddr_storage *addr,
			 uint8_t source[16])
{
	struct server *s = w->server;
	char text[160], host[INET6_ADDRSTRLEN] = "?";
	uint32_t open;

	if (atomic_fetch_add(&s->conns_count, 1) >= s->opt.conns_max) {
		atomic_fetch_sub(&s->conns_count, 1);
		snprintf(text, sizeof(text),
			 "too many client connections: this node serves at most %u "
			 "(--client-conns-max)",
			 s->opt.conns_max);
		worker_refuse(w, fd, CONN_LIMIT_CONNS, text, s->opt.conns_max);
		return false;
	}
	node_sources_key(addr, source);
	if (node_sources_take(&s->sources, source, s->opt.conns_per_source_max, &open))
		return true;
	atomic_fetch_sub(&s->conns_count, 1);
	if (addr->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, host,
			  sizeof(host));
	else if (addr->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, host,
			  sizeof(host));
	snprintf(text, sizeof(text),
		 "too many client connections from %s: this node serves at most %u from one "
		 "address (--client-conns-per-source-max)",
		 host, s->opt.conns_per_source_max);
	worker_refuse(w, fd, CONN_LIMIT_PER_SOURCE, text, open);
	return false;
}

static void worker_accept(struct worker *w)
{
	struct server *s = w->server;

	for (int i = 0; i < WORKER_ACCEPT_MAX; i++) {
		int one = 1;
		struct sockaddr_storage addr;
		socklen_t addr_len = sizeof(addr);
		int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &addr_len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint8_t source[16];
		struct epoll_event ev;
		struct conn *c;

		if (fd < 0) {
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				worker_accept_failed(w, errno);
			return;
		}
		if (!worker_admit(w, fd, &addr, source))
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			goto err_after_admit;
		c->worker = w;
		c->fd = fd;
		c->role = CLIENT_ACCESS_ADMIN; /* Plaintext: every op, as without TLS. */
		if (node_tls_enabled(s) && node_tls_accept(c) != 0) {
			free(c);
			errno = ENOMEM;
			goto err_after_admit;
		}
		memcpy(c->source, source, sizeof(c->source));
		c->events = EPOLLIN;
		c->active_ms = server_now_ms();
		ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			node_tls_close(c);
			free(c);
			goto err_after_admit;
		}
		c->next = w->conns;
		if (w->conns != NULL)
			w->conns->prev = c;
		w->conns = c;
		continue;
	err_after_admit:
		server_log(LOG_LEVEL_WARN, "client connection refused: %s", strerror(errno));
		node_sources_give(&s->sources, source);
		atomic_fetch_sub(&s->conns_count, 1);
		close(fd);
	}
}

/* Take the answers that shard threads handed over and queue them. */
static void worker_drain(struct worker *w)
{
	uint64_t count;
	struct pending *p;

	/* Read the eventfd before taking the list: see worker_complete(). */
	if (read(w->wakefd, &count, sizeof(count)) < 0) {
		/* -EAGAIN: a previous drain already took what woke us. */
	}
	pthread_mutex_lock(&w->done_lock);
	p = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->done_lock);
	while (p != NULL) {
		struct pending *next = p->next;
		struct conn *c = p->conn;

		c->outstanding--;
		node_budget_answer_done(p); /* The output buffer counts it now. */
		conn_respond_op(c, p->op, p->status, p->request_id, p->leader, p->value,
				p->value_size);
		conn_mark_dirty(c); /* Freed there if closed; resumes reading if throttled. */
		pending_free(p);
		p = next;
	}
}

/* A step of c's TLS handshake: done (serve it), not yet (wait for the
 * socket), or refused (count, log, close; a plaintext client first gets an
 * ERROR answer in plaintext). */
static void worker_handshake(struct conn *c)
{
	struct server *s = c->worker->server;
	char why[200], peer[64];
	int rv = node_tls_handshake(c, why, sizeof(why));

	if (rv == NODE_TLS_DONE)
		c->active_ms = c->worker->now_ms;
	if (rv >= 0) {
		conn_mark_dirty(c);
		return;
	}
	if (rv == NODE_TLS_PLAINTEXT) {
		static const char text[] = "this node requires TLS: connect with --tls-ca, "
					   "--tls-cert and --tls-key (or FLOTILLA_TLS_CA, "
					   "FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY)";
		unsigned char buf[CLIENT_RESPONSE_HEADER_SIZE + sizeof(text)];
		struct client_response resp = {
		    .status = CLIENT_STATUS_ERROR, .value = text, .value_size = sizeof(text) - 1};

		client_response_encode(&resp, buf);
		if (send(c->fd, buf, client_response_size(resp.value_size),
			 MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* Best effort: the client sees the connection closed either way. */
		}
	}
	atomic_fetch_add(&s->tls_refused, 1);
	conn_limit_log(s, CONN_LIMIT_TLS, c->worker->now_ms,
		       "client connection from %s refused by TLS: %s", conn_peer_name(c->fd, peer),
		       why);
	conn_close(c);
}

static void worker_event(struct conn *c, uint32_t events)
{
	int rv;

	if (c->closed)
		return; /* Closed earlier in this loop turn. */
	if (c->tls_state == CONN_TLS_SNIFF || c->tls_state == CONN_TLS_HANDSHAKE) {
		worker_handshake(c);
		return;
	}
	if ((events & EPOLLIN) != 0) {
		rv = conn_read(c);
		if (rv == -ECONNRESET) {
			c->eof = true; /* Requests before the end still get answers. */
		} else if (rv != 0) {
			conn_close(c);
			return;
		}
		request_process(c);
		conn_track(c, c->worker->now_ms);
	} else if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
		conn_close(c);
		return;
	}
	conn_mark_dirty(c);
}

/* End of a loop turn: send answers, resume throttled connections, free the
 * closed ones that have nothing in flight. */
static void worker_flush_dirty(struct worker *w)
{
	struct conn *c;

	while ((c = w->dirty) != NULL) {
		w->dirty = c->dirty_next;
		/* c->dirty stays set while c is handled, so it is not queued twice. */
		if (!c->closed) {
			request_process(c);
			conn_track(c, w->now_ms);
			if (conn_flush(c) != 0 || conn_is_done(c))
				conn_close(c);
			else
				conn_update_events(c);
		}
		c->dirty = false;
		c->dirty_next = NULL;
		if (c->closed && c->outstanding == 0)
			conn_free(c);
	}
}

/* Close the connections past a deadline: a request begun and not complete
 * after --client-request-ms, or no complete request for --client-idle-s
 * while no answer is due, or answers waiting and none read by the client
 * for --client-idle-s. Then write the limits' pending counts. */
static void worker_sweep(struct worker *w, uint64_t now_ms)
{
	struct server *s = w->server;
	uint64_t request_ms = s->opt.client_request_ms;
	uint64_t idle_ms = (uint64_t)s->opt.client_idle_s * 1000;
	char peer[64];

	for (struct conn *c = w->conns; c != NULL; c = c->next) {
		if (c->closed)
			continue;
		if ((c->tls_state == CONN_TLS_SNIFF || c->tls_state == CONN_TLS_HANDSHAKE) &&
		    now_ms >= c->active_ms + s->opt.client_handshake_ms) {
			atomic_fetch_add(&s->timeouts_handshake, 1);
			conn_limit_log(s, CONN_LIMIT_HANDSHAKE, now_ms,
				       "client connection from %s closed: its TLS handshake was "
				       "not over after %llu ms (--client-handshake-ms %u)",
				       conn_peer_name(c->fd, peer),
				       (unsigned long long)(now_ms - c->active_ms),
				       s->opt.client_handshake_ms);
			conn_close(c);
		} else if (request_ms != 0 && c->partial_ms != 0 &&
			   now_ms >= c->partial_ms + request_ms) {
			atomic_fetch_add(&s->timeouts_request, 1);
			conn_limit_log(s, CONN_LIMIT_REQUEST, now_ms,
				       "client connection from %s closed: %u bytes of a request "
				       "came, not all of it, in %llu ms (--client-request-ms %llu)",
				       conn_peer_name(c->fd, peer), c->in_end - c->in_start,
				       (unsigned long long)(now_ms - c->partial_ms),
				       (unsigned long long)request_ms);
			conn_close(c);
		} else if (idle_ms != 0 && c->outstanding == 0 && c->out_end == c->out_start &&
			   now_ms >= c->active_ms + idle_ms) {
			atomic_fetch_add(&s->timeouts_idle, 1);
			conn_limit_log(s, CONN_LIMIT_IDLE, now_ms,
				       "client connection from %s closed: no request in %llu s "
				       "(--client-idle-s %u)",
				       conn_peer_name(c->fd, peer),
				       (unsigned long long)((now_ms - c->active_ms) / 1000),
				       s->opt.client_idle_s);
			conn_close(c);
		} else if (idle_ms != 0 && c->out_end > c->out_start &&
			   now_ms >= c->written_ms + idle_ms) {
			atomic_fetch_add(&s->timeouts_idle, 1);
			conn_limit_log(s, CONN_LIMIT_IDLE, now_ms,
				       "client connection from %s closed: %u bytes of answers not "
				       "read in %llu s (--client-idle-s %u)",
				       conn_peer_name(c->fd, peer), c->out_end - c->out_start,
				       (unsigned long long)((now_ms - c->written_ms) / 1000),
				       s->opt.client_idle_s);
			conn_close(c);
		}
	}
	node_budget_sweep(w, conn_mark_dirty);
	conn_limit_flush(s, now_ms);
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[WORKER_EVENTS_MAX];

	while (!atomic_load(&w->server->stopping)) {
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS_MAX, WORKER_TICK_MS);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			server_log(LOG_LEVEL_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		w->now_ms = server_now_ms();
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 == WORKER_TAG_WAKE)
				worker_drain(w);
			else if (events[i].data.u64 == WORKER_TAG_LISTEN)
				worker_accept(w);
			else
				worker_event(events[i].data.ptr, events[i].events);
		}
		if (w->now_ms >= w->swept_ms + WORKER_TICK_MS) {
			w->swept_ms = w->now_ms;
			worker_sweep(w, w->now_ms);
		}
		worker_flush_dirty(w);
	}
	/* Stopping: close every connection; answers still due arrive after
	 * fl_node_stop() and are dropped by server_stop_workers(). */
	for (struct conn *c = w->conns; c != NULL; c = c->next)
		conn_close(c);
	worker_flush_dirty(w);
	return NULL;
}

int worker_init(struct worker *w, struct server *s)
{
	struct epoll_event ev;

	memset(w, 0, sizeof(*w));
	w->server = s;
	pthread_mutex_init(&w->done_lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->epfd < 0 || w->wakefd < 0)
		return -errno;
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = WORKER_TAG_WAKE};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) != 0)
		return -errno;
	/* Every worker waits on the one listener; EPOLLEXCLUSIVE wakes one of
	 * them per connection instead of all. */
	ev =
	    (struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = WORKER_TAG_LISTEN};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0)
		return -errno;
	return 0;
}

/* After the threads are joined and the node stopped (no callback can run):
 * drop the last answers and free what is left. */
void worker_deinit(struct worker *w)
{
	struct pending *p = w->done_head;

	while (p != NULL) {
		struct pending *next = p->next;

		p->conn->outstanding--;
		node_budget_answer_done(p);
		pending_free(p);
		p = next;
	}
	w->done_head = w->done_tail = NULL;
	while (w->conns != NULL) {
		if (w->conns->outstanding != 0)
			server_log(LOG_LEVEL_WARN,
				   "a client connection still waits for %u answers at exit",
				   w->conns->outstanding);
		conn_free(w->conns);
	}
	free(w->scratch);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wakefd >= 0)
		close(w->wakefd);
	pthread_mutex_destroy(&w->done_lock);
}
