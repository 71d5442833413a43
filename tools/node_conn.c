/* flotilla-node's client threads and their connections. Each thread (a
 * worker) has its own epoll set and shares one listening socket with the
 * others (EPOLLEXCLUSIVE); it accepts connections, reads requests, hands
 * them to node_request.c, and sends the answers of each loop turn together.
 *
 * Bounds: at most --client-conns-max connections (more are closed at once),
 * at most --client-inflight-max requests in flight per connection (then the
 * connection is not read until answers go out), and no reading while more
 * than CONN_OUT_MAX bytes of answers wait to be sent.
 *
 * Lifetime: a connection counts its requests in flight (outstanding). When a
 * connection closes, its memory stays until every callback for it has come
 * back; only its client thread frees it, at the end of a loop turn, so no
 * event of the same turn can see freed memory. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/le.h"
#include "tools/node_internal.h"

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
	epoll_ctl(c->worker->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->closed = true;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->in_size = c->in_start = c->in_end = 0;
	c->out_size = c->out_start = c->out_end = 0;
	atomic_fetch_sub(&c->worker->server->conns_count, 1);
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
void conn_respond(struct conn *c, uint32_t status, uint64_t request_id, uint64_t leader,
		  const void *value, uint32_t value_size)
{
	struct client_response resp = {.status = status,
				       .request_id = request_id,
				       .leader_hint = leader,
				       .value = value,
				       .value_size = value_size};
	uint32_t size = client_response_size(value_size);

	if (c->closed)
		return;
	if (client_reserve(&c->out, &c->out_size, &c->out_start, &c->out_end, size,
			   CONN_READ_SIZE) != 0) {
		server_log(LOG_LEVEL_WARN, "client connection closed: out of memory for an answer");
		conn_close(c);
		return;
	}
	client_response_encode(&resp, c->out + c->out_end);
	c->out_end += size;
	conn_mark_dirty(c);
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
		ssize_t n =
		    send(c->fd, c->out + c->out_start, c->out_end - c->out_start, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_start += (uint32_t)n;
	}
	c->out_start = c->out_end = 0;
	if (c->out_size > CONN_BUFFER_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_size = 0;
	}
	return 0;
}

/* Whether the bounds allow starting one more request. */
bool conn_can_start(const struct conn *c)
{
	return !c->closing && c->outstanding < c->worker->server->opt.inflight_max &&
	       c->out_end - c->out_start < CONN_OUT_MAX;
}

static bool conn_can_read(const struct conn *c)
{
	return conn_can_start(c) && !c->eof;
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
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (events == c->events)
		return;
	if (epoll_ctl(c->worker->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		server_log(LOG_LEVEL_ERROR, "epoll_ctl: %s", strerror(errno));
		conn_close(c);
		return;
	}
	c->events = events;
}

/* Read what the socket has, a few chunks at most. Returns 0 or -errno
 * (-ECONNRESET when the client closed). */
static int conn_read(struct conn *c)
{
	for (int i = 0; i < CONN_READS_MAX; i++) {
		uint64_t want = CONN_READ_SIZE;
		uint32_t live = c->in_end - c->in_start;
		uint32_t room;
		ssize_t n;

		/* A partial request announces its size: make room for all of it. */
		if (live >= 4) {
			uint64_t frame = 4 + (uint64_t)le_get32(c->in + c->in_start);

			if (frame <= 4 + (uint64_t)CLIENT_REQUEST_SIZE_MAX && frame > live &&
			    frame - live > want)
				want = frame - live;
		}
		if (client_reserve(&c->in, &c->in_size, &c->in_start, &c->in_end, want,
				   CONN_READ_SIZE) != 0)
			return -ENOMEM;
		room = c->in_size - c->in_end;
		n = recv(c->fd, c->in + c->in_end, room, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->in_end += (uint32_t)n;
		if ((uint32_t)n < room)
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

static void worker_accept(struct worker *w)
{
	struct server *s = w->server;

	for (int i = 0; i < WORKER_ACCEPT_MAX; i++) {
		int one = 1;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;
		struct conn *c;

		if (fd < 0) {
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				worker_accept_failed(w, errno);
			return;
		}
		if (atomic_fetch_add(&s->conns_count, 1) >= s->opt.conns_max) {
			atomic_fetch_sub(&s->conns_count, 1);
			close(fd); /* Over --client-conns-max. */
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			goto err_after_count;
		c->worker = w;
		c->fd = fd;
		c->events = EPOLLIN;
		ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			free(c);
			goto err_after_count;
		}
		c->next = w->conns;
		if (w->conns != NULL)
			w->conns->prev = c;
		w->conns = c;
		continue;
	err_after_count:
		server_log(LOG_LEVEL_WARN, "client connection refused: %s", strerror(errno));
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
		conn_respond(c, p->status, p->request_id, p->leader, p->value, p->value_size);
		conn_mark_dirty(c); /* Freed there if closed; resumes reading if throttled. */
		pending_free(p);
		p = next;
	}
}

static void worker_event(struct conn *c, uint32_t events)
{
	int rv;

	if (c->closed)
		return; /* Closed earlier in this loop turn. */
	if ((events & EPOLLIN) != 0) {
		rv = conn_read(c);
		if (rv == -ECONNRESET) {
			c->eof = true; /* Requests before the end still get answers. */
		} else if (rv != 0) {
			conn_close(c);
			return;
		}
		request_process(c);
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

void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[WORKER_EVENTS_MAX];

	while (!atomic_load(&w->server->stopping)) {
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS_MAX, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			server_log(LOG_LEVEL_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 == WORKER_TAG_WAKE)
				worker_drain(w);
			else if (events[i].data.u64 == WORKER_TAG_LISTEN)
				worker_accept(w);
			else
				worker_event(events[i].data.ptr, events[i].events);
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
