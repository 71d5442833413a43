/* The simulated loop backend, its network: see loop_sim.h for what it models.
 *
 * Sockets are socketpair() descriptors used only as names. Bytes sent on
 * one end travel as chunks, each due after a simulated delay and never
 * before the one ahead of it (a stream, like TCP), and wait on the other
 * end until a receive takes them. The world keeps the other end of each
 * kernel pair, so it sees the owner's shutdown() or close() as a hang-up.
 * A stalled direction holds its chunks; a reset ends both ends. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/array.h"
#include "base/assert.h"
#include "io/loop_sim_internal.h"

static void loop_sim_net_chunks_free(struct loop_sim_chunk *c)
{
	while (c) {
		struct loop_sim_chunk *next = c->next;

		free(c);
		c = next;
	}
}

void loop_sim_net_free(struct loop_sim *sim)
{
	for (uint32_t i = 0; i < sim->socks_count; i++) {
		struct loop_sim_sock *s = sim->socks[i];

		loop_sim_net_chunks_free(s->head);
		loop_sim_net_chunks_free(s->in_head);
		free(s->eof_chunk);
		if (s->hold_fd >= 0)
			close(s->hold_fd);
		free(s);
	}
	free(sim->socks);
	free(sim->by_fd);
}

static struct loop_sim_sock *loop_sim_net_find(struct loop_sim *sim, int fd)
{
	if (fd < 0 || (uint32_t)fd >= sim->by_fd_cap)
		return NULL;
	return sim->by_fd[fd];
}

/* Take up to size arrived bytes into buf. Returns the count. */
static uint32_t loop_sim_net_take(struct loop_sim_sock *s, uint8_t *buf, uint32_t size)
{
	uint32_t done = 0;

	while (done < size && s->in_head) {
		struct loop_sim_chunk *c = s->in_head;
		uint32_t n = c->size - s->in_off;

		if (n > size - done)
			n = size - done;
		memcpy(buf + done, c->data + s->in_off, n);
		done += n;
		s->in_off += n;
		if (s->in_off == c->size) {
			s->in_head = c->next;
			if (s->in_head == NULL)
				s->in_tail = NULL;
			s->in_off = 0;
			free(c);
		}
	}
	return done;
}

static void loop_sim_net_try_recv(struct loop_sim_sock *s)
{
	int res;

	if (s->recv_op == NULL || s->owner == NULL)
		return;
	if (s->reset)
		res = -ECONNRESET;
	else if (s->in_head)
		res = (int)loop_sim_net_take(s, s->recv_buf, s->recv_size);
	else if (s->eof || s->shut)
		res = 0;
	else
		return;
	loop_sim_ready_push(s->owner, s->recv_op, res);
	s->recv_op = NULL;
}

static void loop_sim_net_schedule(struct loop_sim *sim, struct loop_sim_sock *t, uint64_t at_ns)
{
	if (t->deliver_scheduled)
		return;
	/* Its room in the queue was reserved when t was made. */
	t->deliver = (struct loop_sim_event){.sock = t};
	loop_sim_event_queue(sim, &t->deliver, at_ns, LOOP_SIM_EV_DELIVER);
	t->deliver_scheduled = true;
}

/* Queue c, holding size bytes of buf (or the end of the stream), towards
 * t, after the ones before. */
static void loop_sim_net_enqueue(struct loop_sim *sim, struct loop_sim_sock *t,
				 struct loop_sim_chunk *c, const void *buf, uint32_t size, bool eof)
{
	const struct loop_sim_faults *fl = &sim->faults;
	uint64_t due = sim->now_ns + 1000 * loop_sim_between(sim, fl->net_us_min, fl->net_us_max);

	if (loop_sim_chance(sim, fl->net_spike_ppm))
		due += 1000000 * loop_sim_between(sim, 1, fl->net_spike_ms_max);
	if (due < t->last_due_ns)
		due = t->last_due_ns; /* A stream: in order. */
	t->last_due_ns = due;
	c->next = NULL;
	c->due_ns = due;
	c->size = size;
	c->eof = eof;
	if (size)
		memcpy(c->data, buf, size);
	if (t->tail)
		t->tail->next = c;
	else
		t->head = c;
	t->tail = c;
	loop_sim_net_schedule(sim, t, t->head->due_ns);
}

static void loop_sim_net_drop(struct loop_sim_sock *s)
{
	loop_sim_net_chunks_free(s->head);
	s->head = NULL;
	s->tail = NULL;
}

void loop_sim_net_deliver(struct loop_sim *sim, struct loop_sim_sock *t)
{
	t->deliver_scheduled = false;
	if (t->reset || t->owner == NULL) {
		loop_sim_net_drop(t);
		return;
	}
	if (t->head && loop_sim_is_blocked(sim, t->peer->node, t->node)) {
		loop_sim_net_schedule(sim, t, sim->now_ns + LOOP_SIM_BLOCKED_RETRY_NS);
		return;
	}
	while (t->head && t->head->due_ns <= sim->now_ns) {
		struct loop_sim_chunk *c = t->head;

		t->head = c->next;
		if (t->head == NULL)
			t->tail = NULL;
		if (c->eof)
			t->eof = true;
		if (c->size == 0) {
			free(c);
			continue;
		}
		/* The chunk itself waits for the receive: no copy, no memory. */
		c->next = NULL;
		if (t->in_tail)
			t->in_tail->next = c;
		else
			t->in_head = c;
		t->in_tail = c;
	}
	if (t->head)
		loop_sim_net_schedule(sim, t, t->head->due_ns);
	loop_sim_net_try_recv(t);
}

static void loop_sim_net_detach(struct loop_sim_sock *s)
{
	struct loop_sim_loop *l = s->owner;

	if (l == NULL)
		return;
	for (uint32_t i = 0; i < l->socks_count; i++)
		if (l->socks[i] == s) {
			l->socks[i] = l->socks[--l->socks_count];
			break;
		}
}

/* The owner shut s down or closed it: its operations end, its peer reads
 * the end of the stream after what is on its way. */
static void loop_sim_net_hangup(struct loop_sim *sim, struct loop_sim_sock *s)
{
	if (s->hold_fd < 0)
		return;
	close(s->hold_fd);
	s->hold_fd = -1;
	s->shut = true;
	loop_sim_net_try_recv(s);
	loop_sim_net_detach(s);
	if (s->peer && !s->peer->reset && !s->peer->shut) {
		ASSERT(s->eof_chunk != NULL); /* A socket hangs up once. */
		loop_sim_net_enqueue(sim, s->peer, s->eof_chunk, NULL, 0, true);
		s->eof_chunk = NULL;
	}
}

/* A new end, with its end-of-stream chunk; NULL when out of memory. */
static struct loop_sim_sock *loop_sim_net_sock_new(void)
{
	struct loop_sim_sock *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->eof_chunk = malloc(sizeof(*s->eof_chunk));
	if (s->eof_chunk == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

static void loop_sim_net_sock_free(struct loop_sim_sock *s)
{
	if (s == NULL)
		return;
	free(s->eof_chunk);
	free(s);
}

/* Room in the tables for two more ends, on loops a and b, whose
 * descriptors are below fd_end. Returns 0 or -ENOMEM. */
static int loop_sim_net_reserve(struct loop_sim *sim, struct loop_sim_loop *a,
				struct loop_sim_loop *b, uint32_t fd_end)
{
	uint32_t by_fd_cap = sim->by_fd_cap;
	void *p;

	p = array_grow(sim->socks, &sim->socks_cap, sim->socks_count + 2, sizeof(*sim->socks),
		       LOOP_SIM_ARRAY_CAP_FIRST);
	if (p == NULL)
		return -ENOMEM;
	sim->socks = p;
	p = array_grow(a->socks, &a->socks_cap, a->socks_count + 1 + (a == b), sizeof(*a->socks),
		       LOOP_SIM_ARRAY_CAP_FIRST);
	if (p == NULL)
		return -ENOMEM;
	a->socks = p;
	p = array_grow(b->socks, &b->socks_cap, b->socks_count + 1 + (a == b), sizeof(*b->socks),
		       LOOP_SIM_ARRAY_CAP_FIRST);
	if (p == NULL)
		return -ENOMEM;
	b->socks = p;
	p = array_grow(sim->by_fd, &sim->by_fd_cap, fd_end, sizeof(*sim->by_fd),
		       LOOP_SIM_ARRAY_CAP_FIRST);
	if (p == NULL)
		return -ENOMEM;
	sim->by_fd = p;
	memset(sim->by_fd + by_fd_cap, 0, (sim->by_fd_cap - by_fd_cap) * sizeof(*sim->by_fd));
	/* Each end's delivery event: its room in the queue, from now on. */
	return loop_sim_heap_reserve(sim, 2);
}

/* Enter s, its room reserved, as fd of l. */
static void loop_sim_net_add(struct loop_sim_loop *l, struct loop_sim_sock *s, int fd, int hold_fd)
{
	struct loop_sim *sim = l->sim;
	struct loop_sim_sock *old;

	/* The kernel gave out fd again: its last holder was closed. */
	old = loop_sim_net_find(sim, fd);
	if (old) {
		loop_sim_net_hangup(sim, old);
		loop_sim_net_detach(old);
		old->owner = NULL;
	}
	s->fd = fd;
	s->hold_fd = hold_fd;
	s->owner = l;
	s->node = l->node;
	sim->by_fd[fd] = s;
	sim->socks[sim->socks_count++] = s;
	l->socks[l->socks_count++] = s;
}

int loop_sim_socketpair(struct loop *a, struct loop *b, int *fd_a, int *fd_b)
{
	int pa[2], pb[2], rv;
	struct loop_sim_sock *sa, *sb;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pa) != 0)
		return -errno;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pb) != 0) {
		rv = -errno;
		goto err_after_pa;
	}
	sa = loop_sim_net_sock_new();
	sb = loop_sim_net_sock_new();
	if (sa == NULL || sb == NULL) {
		rv = -ENOMEM;
		goto err_after_socks;
	}
	rv = loop_sim_net_reserve(a->sim, a->sim_loop, b->sim_loop,
				  (uint32_t)(pa[0] > pb[0] ? pa[0] : pb[0]) + 1);
	if (rv != 0)
		goto err_after_socks;
	loop_sim_net_add(a->sim_loop, sa, pa[0], pa[1]);
	loop_sim_net_add(b->sim_loop, sb, pb[0], pb[1]);
	sa->peer = sb;
	sb->peer = sa;
	*fd_a = pa[0];
	*fd_b = pb[0];
	loop_sim_say(a->sim, "connect node %" PRIu64 " fd %d <-> node %" PRIu64 " fd %d", sa->node,
		     pa[0], sb->node, pb[0]);
	return 0;
err_after_socks:
	loop_sim_net_sock_free(sa);
	loop_sim_net_sock_free(sb);
	close(pb[0]);
	close(pb[1]);
err_after_pa:
	close(pa[0]);
	close(pa[1]);
	return rv;
}

static void loop_sim_net_reset_one(struct loop_sim_sock *s)
{
	if (s->reset || s->shut)
		return;
	s->reset = true;
	loop_sim_net_drop(s);
	loop_sim_net_try_recv(s);
}

void loop_sim_reset(struct loop_sim *sim, uint64_t a, uint64_t b)
{
	for (uint32_t i = 0; i < sim->socks_count; i++) {
		struct loop_sim_sock *s = sim->socks[i];

		if (s->peer == NULL || s->owner == NULL || s->reset || s->shut)
			continue;
		if ((s->node == a && s->peer->node == b) || (s->node == b && s->peer->node == a)) {
			loop_sim_say(sim, "reset node %" PRIu64 " fd %d", s->node, s->fd);
			sim->stats.resets++;
			loop_sim_net_reset_one(s);
			loop_sim_net_reset_one(s->peer);
		}
	}
}

void loop_sim_block(struct loop_sim *sim, uint64_t a, uint64_t b, bool blocked)
{
	ASSERT(a < LOOP_SIM_NODES_MAX && b < LOOP_SIM_NODES_MAX);
	sim->blocked[a][b] = blocked;
}

bool loop_sim_is_blocked(const struct loop_sim *sim, uint64_t a, uint64_t b)
{
	return a < LOOP_SIM_NODES_MAX && b < LOOP_SIM_NODES_MAX && sim->blocked[a][b];
}

void loop_sim_poll(struct loop *loop)
{
	struct loop_sim_loop *l = loop->sim_loop;

	for (uint32_t i = 0; i < l->socks_count;) {
		struct loop_sim_sock *s = l->socks[i];
		struct pollfd p = {.fd = s->hold_fd, .events = POLLIN};

		/* Our end of the kernel pair hangs up when the owner's end is
		 * shut down or closed; nobody ever writes to it. */
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLIN | POLLERR)))
			loop_sim_net_hangup(l->sim, s); /* Removes s from l->socks. */
		else
			i++;
	}
}

void loop_sim_net_op(struct loop_sim_loop *l, struct loop_op *op, enum loop_op_kind kind, int fd,
		     void *buf, uint32_t size)
{
	struct loop_sim *sim = l->sim;
	struct loop_sim_sock *s = loop_sim_net_find(sim, fd);
	struct loop_sim_chunk *c;
	struct loop_sim_event *e;

	if (s == NULL || s->owner != l) {
		loop_sim_ready_push(l, op, -EBADF);
		return;
	}
	if (kind == LOOP_OP_RECV) {
		ASSERT(s->recv_op == NULL); /* One receive at a time per socket. */
		s->recv_op = op;
		s->recv_buf = buf;
		s->recv_size = size;
		loop_sim_net_try_recv(s);
		return;
	}
	if (s->reset || s->shut || s->peer == NULL || s->peer->shut || s->peer->owner == NULL) {
		loop_sim_complete_new(l, op, s->shut ? -EPIPE : -ECONNRESET,
				      sim->now_ns + LOOP_SIM_SEND_NS);
		return;
	}
	/* Taken before anything changes: a shortage fails this send alone. */
	e = loop_sim_event_new(sim);
	c = malloc(sizeof(*c) + size);
	if (e == NULL || c == NULL) {
		free(e);
		free(c);
		loop_sim_ready_push(l, op, -ENOMEM);
		return;
	}
	sim->stats.sends++;
	sim->stats.bytes_sent += size;
	loop_sim_net_enqueue(sim, s->peer, c, buf, size, false);
	loop_sim_complete(l, e, op, (int)size, sim->now_ns + LOOP_SIM_SEND_NS);
}

void loop_sim_net_cancel(struct loop_sim_loop *l)
{
	for (uint32_t i = 0; i < l->socks_count; i++) {
		struct loop_sim_sock *s = l->socks[i];

		if (s->recv_op) {
			loop_sim_ready_push(l, s->recv_op, -ECANCELED);
			s->recv_op = NULL;
		}
	}
}

void loop_sim_net_detach_loop(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;

	while (l->socks_count > 0) {
		struct loop_sim_sock *s = l->socks[0];

		loop_sim_net_hangup(sim, s); /* The process is gone: its peers read the end. */
		loop_sim_net_detach(s);
		s->recv_op = NULL;
		s->owner = NULL;
	}
	for (uint32_t i = 0; i < sim->socks_count; i++)
		if (sim->socks[i]->owner == l)
			sim->socks[i]->owner = NULL;
}
