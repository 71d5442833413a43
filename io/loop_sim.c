/* The simulated loop backend: see loop_sim.h for what it models.
 *
 * The happy path of an operation is: loop_write() (or another) lands in
 * loop_sim_submit(), which decides its result at once with the world's PRNG
 * (a fault, or the real effect on the file) and queues an event at the
 * virtual time it completes; loop_sim_step() moves the clock to the earliest
 * event and puts its completion on its loop's ready list; the owner's next
 * loop_run() runs the callbacks of the ready list, in order.
 *
 * Determinism: the only inputs are the seed and the order of calls, which
 * one thread makes. Events at the same time keep their submission order
 * (the sequence number breaks ties). Nothing reads the real clock.
 *
 * Failure modes: a crashed loop completes everything with -ECANCELED and
 * changes no file; a loop that is deinitialised drops what it had pending
 * (its owners are being freed) and its sockets look closed to their peers. */
#include "io/loop_sim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"

enum {
	SIM_SECTOR_SIZE = 512,
	SIM_BLOCKED_RETRY_NS = 5000000, /* A stalled direction is looked at again this often. */
	SIM_SEND_NS = 1000,             /* A send completes this soon. */
	SIM_NODES_MAX = 64,
};

enum sim_event_kind { SIM_EV_OP = 1, SIM_EV_DELIVER };

struct sim_event {
	uint64_t at_ns, seq;
	uint8_t kind;
	bool dead; /* Cancelled or taken out early: skipped when popped. */
	int res;
	struct loop_sim_loop *owner; /* SIM_EV_OP */
	struct loop_op *op;
	uint64_t sync_file;    /* An fdatasync: its file's id, 0 otherwise. */
	uint64_t sync_seq;     /* Writes up to this one become durable. */
	struct sim_sock *sock; /* SIM_EV_DELIVER: the receiving end. */
};

struct sim_ready {
	struct loop_op *op;
	int res;
};

/* The old bytes of one write that no fdatasync has covered yet. */
struct sim_undo {
	uint64_t seq, offset;
	uint32_t size, old_size; /* old_size bytes existed before; the rest was a hole. */
	uint8_t *old;
};

struct sim_file {
	uint64_t id, node;
	dev_t dev;
	ino_t ino;
	int fd; /* The world's own descriptor, opened read-write, never O_DIRECT. */
	bool failed;
	uint64_t seq_next;
	struct sim_undo *undo;
	uint32_t undo_count, undo_cap;
};

struct sim_chunk {
	struct sim_chunk *next;
	uint64_t due_ns;
	uint32_t size;
	bool eof;
	uint8_t data[];
};

/* One end of a simulated connection. */
struct sim_sock {
	int fd;      /* The owner's descriptor: a name only. */
	int hold_fd; /* The other end of its kernel pair; -1 once hung up. */
	uint64_t node;
	struct loop_sim_loop *owner; /* NULL once its loop is gone. */
	struct sim_sock *peer;
	struct sim_chunk *head, *tail; /* Bytes on their way to this end. */
	bool deliver_scheduled;
	uint64_t last_due_ns;
	uint8_t *in; /* Arrived, not yet received. */
	size_t in_off, in_len, in_cap;
	bool eof, reset, shut;
	struct loop_op *recv_op;
	uint8_t *recv_buf;
	uint32_t recv_size;
};

struct loop_sim_loop {
	struct loop_sim *sim;
	struct loop *loop;
	uint64_t node;
	bool woken, crashed, chain_failed;
	uint64_t disk_busy_ns;
	struct sim_ready *ready;
	uint32_t ready_head, ready_count, ready_cap;
	struct sim_sock **socks; /* Not hung up yet. */
	uint32_t socks_count, socks_cap;
	struct loop_sim_loop *next;
};

struct loop_sim {
	uint64_t start_ns, now_ns, seq, rng;
	bool verbose;
	struct loop_sim_faults faults;
	struct loop_sim_stats stats;
	struct sim_event **heap;
	uint32_t heap_count, heap_cap;
	struct loop_sim_loop *loops;
	struct sim_file **files;
	uint32_t files_count, files_cap;
	uint64_t file_ids;
	struct sim_sock **socks; /* Every end ever made, freed with the world. */
	uint32_t socks_count, socks_cap;
	struct sim_sock **by_fd;
	uint32_t by_fd_cap;
	bool blocked[SIM_NODES_MAX][SIM_NODES_MAX];
};

static void *sim_grow(void *p, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t c = *cap ? *cap : 16;

	if (need <= *cap)
		return p;
	while (c < need)
		c *= 2;
	p = realloc(p, (size_t)c * elem);
	ASSERT(p != NULL); /* A test process out of memory has nothing better to do. */
	*cap = c;
	return p;
}

uint64_t loop_sim_rand(struct loop_sim *sim)
{
	uint64_t z = (sim->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static bool sim_chance(struct loop_sim *sim, uint32_t ppm)
{
	return ppm > 0 && loop_sim_rand(sim) % 1000000 < ppm;
}

static uint64_t sim_between(struct loop_sim *sim, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + loop_sim_rand(sim) % (hi - lo + 1);
}

static void sim_say(struct loop_sim *sim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sim_say(struct loop_sim *sim, const char *fmt, ...)
{
	va_list ap;

	if (!sim->verbose)
		return;
	fprintf(stderr, "[%10.3f ms] sim: ", (double)(sim->now_ns - sim->start_ns) / 1e6);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int loop_sim_new(struct loop_sim **out, uint64_t seed, uint64_t start_ns)
{
	struct loop_sim *sim = calloc(1, sizeof(*sim));

	if (sim == NULL)
		return -ENOMEM;
	sim->now_ns = sim->start_ns = start_ns;
	sim->rng = seed;
	sim->faults = (struct loop_sim_faults){
	    .disk_us_min = 20, .disk_us_max = 200, .net_us_min = 50, .net_us_max = 500};
	*out = sim;
	return 0;
}

static void sim_file_free(struct sim_file *f)
{
	for (uint32_t i = 0; i < f->undo_count; i++)
		free(f->undo[i].old);
	free(f->undo);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

void loop_sim_free(struct loop_sim *sim)
{
	ASSERT(sim->loops == NULL); /* Every loop was deinitialised. */
	for (uint32_t i = 0; i < sim->heap_count; i++)
		free(sim->heap[i]);
	free(sim->heap);
	for (uint32_t i = 0; i < sim->files_count; i++)
		sim_file_free(sim->files[i]);
	free(sim->files);
	for (uint32_t i = 0; i < sim->socks_count; i++) {
		struct sim_sock *s = sim->socks[i];

		while (s->head) {
			struct sim_chunk *c = s->head;

			s->head = c->next;
			free(c);
		}
		if (s->hold_fd >= 0)
			close(s->hold_fd);
		free(s->in);
		free(s);
	}
	free(sim->socks);
	free(sim->by_fd);
	free(sim);
}

void loop_sim_set_faults(struct loop_sim *sim, const struct loop_sim_faults *faults)
{
	sim->faults = *faults;
}

uint64_t loop_sim_now_ns(const struct loop_sim *sim)
{
	return sim->now_ns;
}

void loop_sim_set_verbose(struct loop_sim *sim, bool verbose)
{
	sim->verbose = verbose;
}

const struct loop_sim_stats *loop_sim_stats(const struct loop_sim *sim)
{
	return &sim->stats;
}

/* ------------------------------------------------------------- events */

static bool sim_event_before(const struct sim_event *a, const struct sim_event *b)
{
	return a->at_ns < b->at_ns || (a->at_ns == b->at_ns && a->seq < b->seq);
}

static struct sim_event *sim_event_push(struct loop_sim *sim, uint64_t at_ns, uint8_t kind)
{
	struct sim_event *e = calloc(1, sizeof(*e));
	uint32_t i;

	ASSERT(e != NULL);
	ASSERT(at_ns >= sim->now_ns); /* Time never runs backwards. */
	e->at_ns = at_ns;
	e->seq = ++sim->seq;
	e->kind = kind;
	sim->heap = sim_grow(sim->heap, &sim->heap_cap, sim->heap_count + 1, sizeof(*sim->heap));
	i = sim->heap_count++;
	while (i > 0 && sim_event_before(e, sim->heap[(i - 1) / 2])) {
		sim->heap[i] = sim->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	sim->heap[i] = e;
	return e;
}

static struct sim_event *sim_event_pop(struct loop_sim *sim)
{
	struct sim_event *top = sim->heap[0];
	struct sim_event *last = sim->heap[--sim->heap_count];
	uint32_t i = 0;

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= sim->heap_count)
			break;
		if (c + 1 < sim->heap_count && sim_event_before(sim->heap[c + 1], sim->heap[c]))
			c++;
		if (!sim_event_before(sim->heap[c], last))
			break;
		sim->heap[i] = sim->heap[c];
		i = c;
	}
	if (sim->heap_count > 0)
		sim->heap[i] = last;
	return top;
}

static void sim_ready_push(struct loop_sim_loop *l, struct loop_op *op, int res)
{
	uint32_t tail;

	if (l->ready_count == l->ready_cap) {
		uint32_t old_cap = l->ready_cap;
		struct sim_ready *r;

		r = calloc(old_cap ? old_cap * 2 : 64, sizeof(*r));
		ASSERT(r != NULL);
		for (uint32_t i = 0; i < l->ready_count; i++)
			r[i] = l->ready[(l->ready_head + i) % old_cap];
		free(l->ready);
		l->ready = r;
		l->ready_cap = old_cap ? old_cap * 2 : 64;
		l->ready_head = 0;
	}
	tail = (l->ready_head + l->ready_count) % l->ready_cap;
	l->ready[tail] = (struct sim_ready){op, res};
	l->ready_count++;
}

/* Complete op at_ns from now (or at once, on the ready list, when delay is 0
 * or the loop crashed). */
static struct sim_event *sim_complete(struct loop_sim_loop *l, struct loop_op *op, int res,
				      uint64_t at_ns)
{
	struct sim_event *e;

	if (l->crashed) {
		sim_ready_push(l, op, -ECANCELED);
		return NULL;
	}
	e = sim_event_push(l->sim, at_ns, SIM_EV_OP);
	e->owner = l;
	e->op = op;
	e->res = res;
	return e;
}

/* --------------------------------------------------------------- files */

static struct sim_file *sim_file_find(struct loop_sim_loop *l, int fd)
{
	struct loop_sim *sim = l->sim;
	struct stat st, mine;
	struct sim_file *f;
	char path[64];

	if (fstat(fd, &st) != 0)
		return NULL;
	for (uint32_t i = 0; i < sim->files_count; i++) {
		f = sim->files[i];
		if (f->dev != st.st_dev || f->ino != st.st_ino)
			continue;
		/* An inode number is reused once its file is gone: a record
		 * whose file has no name left is stale. */
		if (fstat(f->fd, &mine) == 0 && mine.st_nlink > 0)
			return f;
		sim_file_free(f);
		sim->files[i] = sim->files[--sim->files_count];
		break;
	}
	f = calloc(1, sizeof(*f));
	ASSERT(f != NULL);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	f->fd = open(path, O_RDWR | O_CLOEXEC);
	if (f->fd < 0)
		f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	f->id = ++sim->file_ids;
	f->node = l->node;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	sim->files =
	    sim_grow(sim->files, &sim->files_cap, sim->files_count + 1, sizeof(*sim->files));
	sim->files[sim->files_count++] = f;
	return f;
}

static struct sim_file *sim_file_by_id(struct loop_sim *sim, uint64_t id)
{
	for (uint32_t i = 0; i < sim->files_count; i++)
		if (sim->files[i]->id == id)
			return sim->files[i];
	return NULL;
}

/* Apply a write to the page cache, keeping the old bytes until a sync. */
static int sim_file_write(struct sim_file *f, const void *buf, uint32_t size, uint64_t offset)
{
	struct sim_undo u = {.offset = offset, .size = size};
	ssize_t n;

	u.old = malloc(size ? size : 1);
	ASSERT(u.old != NULL);
	n = pread(f->fd, u.old, size, (off_t)offset);
	u.old_size = n > 0 ? (uint32_t)n : 0;
	n = pwrite(f->fd, buf, size, (off_t)offset);
	if (n < 0) {
		free(u.old);
		return -errno;
	}
	u.seq = ++f->seq_next;
	f->undo = sim_grow(f->undo, &f->undo_cap, f->undo_count + 1, sizeof(*f->undo));
	f->undo[f->undo_count++] = u;
	return (int)n;
}

static void sim_file_synced(struct loop_sim *sim, uint64_t id, uint64_t seq)
{
	struct sim_file *f = sim_file_by_id(sim, id);
	uint32_t kept = 0;

	if (f == NULL)
		return;
	for (uint32_t i = 0; i < f->undo_count; i++) {
		if (f->undo[i].seq <= seq)
			free(f->undo[i].old);
		else
			f->undo[kept++] = f->undo[i];
	}
	f->undo_count = kept;
}

/* Put back the bytes of [from, size) of a write: lost from there on. */
static void sim_undo_from(struct sim_file *f, const struct sim_undo *u, uint32_t from)
{
	static const uint8_t zeros[SIM_SECTOR_SIZE];

	if (from < u->old_size)
		(void)!pwrite(f->fd, u->old + from, u->old_size - from, (off_t)(u->offset + from));
	for (uint64_t off = from > u->old_size ? from : u->old_size; off < u->size;) {
		uint64_t n = u->size - off < sizeof(zeros) ? u->size - off : sizeof(zeros);

		(void)!pwrite(f->fd, zeros, n, (off_t)(u->offset + off));
		off += n;
	}
}

/* A crash: each write no sync covered is lost, kept, or torn (kept up to a
 * sector boundary), newest first so that older bytes come back last. */
static void sim_file_crash(struct loop_sim *sim, struct sim_file *f)
{
	for (uint32_t i = f->undo_count; i-- > 0;) {
		const struct sim_undo *u = &f->undo[i];
		uint64_t r = loop_sim_rand(sim) % 3;

		if (r == 0) {
			sim_undo_from(f, u, 0);
			sim->stats.writes_lost++;
		} else if (r == 1) {
			/* Sectors are aligned on the file, not on the write. */
			uint64_t first = (u->offset / SIM_SECTOR_SIZE + 1) * SIM_SECTOR_SIZE;
			uint64_t end = u->offset + u->size;
			uint64_t sectors = end > first ? (end - first) / SIM_SECTOR_SIZE + 1 : 1;
			uint64_t cut = first + (loop_sim_rand(sim) % sectors) * SIM_SECTOR_SIZE;

			if (cut > end)
				cut = end;
			sim_undo_from(f, u, (uint32_t)(cut - u->offset));
			sim->stats.writes_torn++;
		}
		sim_say(sim, "node %" PRIu64 " crash: write of %u at %" PRIu64 " %s", f->node,
			u->size, u->offset,
			r == 0   ? "lost"
			: r == 1 ? "torn"
				 : "kept");
	}
}

/* ------------------------------------------------------------- sockets */

static struct sim_sock *sim_sock_find(struct loop_sim *sim, int fd)
{
	if (fd < 0 || (uint32_t)fd >= sim->by_fd_cap)
		return NULL;
	return sim->by_fd[fd];
}

static void sim_sock_try_recv(struct sim_sock *s)
{
	int res;

	if (s->recv_op == NULL || s->owner == NULL)
		return;
	if (s->reset) {
		res = -ECONNRESET;
	} else if (s->in_len > s->in_off) {
		size_t n = s->in_len - s->in_off;

		if (n > s->recv_size)
			n = s->recv_size;
		memcpy(s->recv_buf, s->in + s->in_off, n);
		s->in_off += n;
		if (s->in_off == s->in_len)
			s->in_off = s->in_len = 0;
		res = (int)n;
	} else if (s->eof || s->shut) {
		res = 0;
	} else {
		return;
	}
	sim_ready_push(s->owner, s->recv_op, res);
	s->recv_op = NULL;
}

static void sim_sock_schedule(struct loop_sim *sim, struct sim_sock *t, uint64_t at_ns)
{
	struct sim_event *e;

	if (t->deliver_scheduled)
		return;
	e = sim_event_push(sim, at_ns, SIM_EV_DELIVER);
	e->sock = t;
	t->deliver_scheduled = true;
}

/* Queue bytes (or the end of the stream) towards t, after the ones before. */
static void sim_sock_enqueue(struct loop_sim *sim, struct sim_sock *t, const void *buf,
			     uint32_t size, bool eof)
{
	const struct loop_sim_faults *fl = &sim->faults;
	struct sim_chunk *c = malloc(sizeof(*c) + size);
	uint64_t due = sim->now_ns + 1000 * sim_between(sim, fl->net_us_min, fl->net_us_max);

	ASSERT(c != NULL);
	if (sim_chance(sim, fl->net_spike_ppm))
		due += 1000000 * sim_between(sim, 1, fl->net_spike_ms_max);
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
	sim_sock_schedule(sim, t, t->head->due_ns);
}

static void sim_sock_drop(struct sim_sock *s)
{
	while (s->head) {
		struct sim_chunk *c = s->head;

		s->head = c->next;
		free(c);
	}
	s->tail = NULL;
}

static void sim_sock_deliver(struct loop_sim *sim, struct sim_sock *t)
{
	t->deliver_scheduled = false;
	if (t->reset || t->owner == NULL) {
		sim_sock_drop(t);
		return;
	}
	if (t->head && loop_sim_is_blocked(sim, t->peer->node, t->node)) {
		sim_sock_schedule(sim, t, sim->now_ns + SIM_BLOCKED_RETRY_NS);
		return;
	}
	while (t->head && t->head->due_ns <= sim->now_ns) {
		struct sim_chunk *c = t->head;

		t->head = c->next;
		if (t->head == NULL)
			t->tail = NULL;
		if (c->eof)
			t->eof = true;
		if (c->size) {
			if (t->in_len + c->size > t->in_cap) {
				size_t cap = t->in_cap ? t->in_cap : 4096;

				while (cap < t->in_len + c->size)
					cap *= 2;
				t->in = realloc(t->in, cap);
				ASSERT(t->in != NULL);
				t->in_cap = cap;
			}
			memcpy(t->in + t->in_len, c->data, c->size);
			t->in_len += c->size;
		}
		free(c);
	}
	if (t->head)
		sim_sock_schedule(sim, t, t->head->due_ns);
	sim_sock_try_recv(t);
}

static void sim_sock_detach(struct sim_sock *s)
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
static void sim_sock_hangup(struct loop_sim *sim, struct sim_sock *s)
{
	if (s->hold_fd < 0)
		return;
	close(s->hold_fd);
	s->hold_fd = -1;
	s->shut = true;
	sim_sock_try_recv(s);
	sim_sock_detach(s);
	if (s->peer && !s->peer->reset && !s->peer->shut)
		sim_sock_enqueue(sim, s->peer, NULL, 0, true);
}

static struct sim_sock *sim_sock_new(struct loop_sim_loop *l, int fd, int hold_fd)
{
	struct loop_sim *sim = l->sim;
	struct sim_sock *s = calloc(1, sizeof(*s));
	struct sim_sock *old;

	ASSERT(s != NULL);
	/* The kernel gave out fd again: its last holder was closed. */
	old = sim_sock_find(sim, fd);
	if (old) {
		sim_sock_hangup(sim, old);
		sim_sock_detach(old);
		old->owner = NULL;
	}
	s->fd = fd;
	s->hold_fd = hold_fd;
	s->owner = l;
	s->node = l->node;
	if ((uint32_t)fd >= sim->by_fd_cap) {
		uint32_t cap = sim->by_fd_cap;

		sim->by_fd =
		    sim_grow(sim->by_fd, &sim->by_fd_cap, (uint32_t)fd + 1, sizeof(*sim->by_fd));
		memset(sim->by_fd + cap, 0, (sim->by_fd_cap - cap) * sizeof(*sim->by_fd));
	}
	sim->by_fd[fd] = s;
	sim->socks =
	    sim_grow(sim->socks, &sim->socks_cap, sim->socks_count + 1, sizeof(*sim->socks));
	sim->socks[sim->socks_count++] = s;
	l->socks = sim_grow(l->socks, &l->socks_cap, l->socks_count + 1, sizeof(*l->socks));
	l->socks[l->socks_count++] = s;
	return s;
}

int loop_sim_socketpair(struct loop *a, struct loop *b, int *fd_a, int *fd_b)
{
	int pa[2], pb[2];
	struct sim_sock *sa, *sb;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pa) != 0)
		return -errno;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pb) != 0) {
		int rv = -errno;

		close(pa[0]);
		close(pa[1]);
		return rv;
	}
	sa = sim_sock_new(a->sim_loop, pa[0], pa[1]);
	sb = sim_sock_new(b->sim_loop, pb[0], pb[1]);
	sa->peer = sb;
	sb->peer = sa;
	*fd_a = pa[0];
	*fd_b = pb[0];
	sim_say(a->sim, "connect node %" PRIu64 " fd %d <-> node %" PRIu64 " fd %d", sa->node,
		pa[0], sb->node, pb[0]);
	return 0;
}

static void sim_sock_reset(struct loop_sim *sim, struct sim_sock *s)
{
	if (s->reset || s->shut)
		return;
	s->reset = true;
	sim_sock_drop(s);
	sim_sock_try_recv(s);
	(void)sim;
}

void loop_sim_reset(struct loop_sim *sim, uint64_t a, uint64_t b)
{
	for (uint32_t i = 0; i < sim->socks_count; i++) {
		struct sim_sock *s = sim->socks[i];

		if (s->peer == NULL || s->owner == NULL || s->reset || s->shut)
			continue;
		if ((s->node == a && s->peer->node == b) || (s->node == b && s->peer->node == a)) {
			sim_say(sim, "reset node %" PRIu64 " fd %d", s->node, s->fd);
			sim->stats.resets++;
			sim_sock_reset(sim, s);
			sim_sock_reset(sim, s->peer);
		}
	}
}

void loop_sim_block(struct loop_sim *sim, uint64_t a, uint64_t b, bool blocked)
{
	ASSERT(a < SIM_NODES_MAX && b < SIM_NODES_MAX);
	sim->blocked[a][b] = blocked;
}

bool loop_sim_is_blocked(const struct loop_sim *sim, uint64_t a, uint64_t b)
{
	return a < SIM_NODES_MAX && b < SIM_NODES_MAX && sim->blocked[a][b];
}

void loop_sim_poll(struct loop *loop)
{
	struct loop_sim_loop *l = loop->sim_loop;

	for (uint32_t i = 0; i < l->socks_count;) {
		struct sim_sock *s = l->socks[i];
		struct pollfd p = {.fd = s->hold_fd, .events = POLLIN};

		/* Our end of the kernel pair hangs up when the owner's end is
		 * shut down or closed; nobody ever writes to it. */
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLIN | POLLERR)))
			sim_sock_hangup(l->sim, s); /* Removes s from l->socks. */
		else
			i++;
	}
}

/* ---------------------------------------------------------------- loops */

int loop_init_sim(struct loop *loop, const struct loop_config *config, struct loop_sim *sim,
		  uint64_t node)
{
	struct loop_sim_loop *l = calloc(1, sizeof(*l));

	memset(loop, 0, sizeof(*loop));
	if (l == NULL)
		return -ENOMEM;
	loop->wake_fd = -1;
	loop->wake_cb = config->wake_cb;
	loop->inflight_max = UINT32_MAX;
	loop->sim = sim;
	loop->sim_loop = l;
	l->sim = sim;
	l->loop = loop;
	l->node = node;
	l->next = sim->loops;
	sim->loops = l;
	return 0;
}

void loop_sim_deinit(struct loop *loop)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim *sim = l->sim;

	for (uint32_t i = 0; i < sim->heap_count; i++)
		if (sim->heap[i]->kind == SIM_EV_OP && sim->heap[i]->owner == l)
			sim->heap[i]->dead = true;
	while (l->socks_count > 0) {
		struct sim_sock *s = l->socks[0];

		sim_sock_hangup(sim, s); /* The process is gone: its peers read the end. */
		sim_sock_detach(s);
		s->recv_op = NULL;
		s->owner = NULL;
	}
	for (uint32_t i = 0; i < sim->socks_count; i++)
		if (sim->socks[i]->owner == l)
			sim->socks[i]->owner = NULL;
	for (struct loop_sim_loop **p = &sim->loops; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	free(l->ready);
	free(l->socks);
	free(l);
	loop->sim_loop = NULL;
	loop->sim = NULL;
}

bool loop_sim_is_ready(const struct loop *loop)
{
	return loop->sim_loop->ready_count > 0 || loop->sim_loop->woken;
}

static uint64_t sim_disk_done(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;
	const struct loop_sim_faults *fl = &sim->faults;
	uint64_t start = l->disk_busy_ns > sim->now_ns ? l->disk_busy_ns : sim->now_ns;
	uint64_t ns = 1000 * sim_between(sim, fl->disk_us_min, fl->disk_us_max);

	if (sim_chance(sim, fl->disk_stall_ppm)) {
		ns += 1000000 * sim_between(sim, 1, fl->disk_stall_ms_max);
		sim->stats.stalls++;
	}
	l->disk_busy_ns = start + ns; /* One queue per node's disk: in order. */
	return l->disk_busy_ns;
}

/* The result of a file operation, and its effect on the file. */
static int sim_file_op(struct loop_sim_loop *l, enum loop_op_kind kind, int fd, void *buf,
		       uint32_t size, uint64_t offset, struct sim_event **sync)
{
	struct loop_sim *sim = l->sim;
	const struct loop_sim_faults *fl = &sim->faults;
	struct sim_file *f = sim_file_find(l, fd);
	ssize_t n;

	*sync = NULL;
	if (f == NULL)
		return -EBADF;
	if (f->failed)
		return -EIO;
	switch (kind) {
	case LOOP_OP_WRITE:
		sim->stats.writes++;
		if (sim_chance(sim, fl->write_eio_ppm)) {
			f->failed = true;
			sim->stats.write_eio++;
			sim_say(sim, "node %" PRIu64 ": write EIO", l->node);
			return -EIO;
		}
		if (sim_chance(sim, fl->enospc_ppm)) {
			sim->stats.enospc++;
			sim_say(sim, "node %" PRIu64 ": write ENOSPC", l->node);
			return -ENOSPC;
		}
		return sim_file_write(f, buf, size, offset);
	case LOOP_OP_READ:
		n = pread(f->fd, buf, size, (off_t)offset);
		return n < 0 ? -errno : (int)n;
	case LOOP_OP_FSYNC:
		sim->stats.fsyncs++;
		if (sim_chance(sim, fl->fsync_eio_ppm)) {
			f->failed = true;
			sim->stats.fsync_eio++;
			sim_say(sim, "node %" PRIu64 ": fdatasync EIO", l->node);
			return -EIO;
		}
		*sync = (struct sim_event *)f; /* The caller notes what it covers. */
		return 0;
	default:
		return -EINVAL;
	}
}

static void sim_sock_op(struct loop_sim_loop *l, struct loop_op *op, enum loop_op_kind kind, int fd,
			void *buf, uint32_t size)
{
	struct loop_sim *sim = l->sim;
	struct sim_sock *s = sim_sock_find(sim, fd);

	if (s == NULL || s->owner != l) {
		sim_ready_push(l, op, -EBADF);
		return;
	}
	if (kind == LOOP_OP_RECV) {
		ASSERT(s->recv_op == NULL); /* One receive at a time per socket. */
		s->recv_op = op;
		s->recv_buf = buf;
		s->recv_size = size;
		sim_sock_try_recv(s);
		return;
	}
	if (s->reset || s->shut || s->peer == NULL || s->peer->shut || s->peer->owner == NULL) {
		sim_complete(l, op, s->shut ? -EPIPE : -ECONNRESET, sim->now_ns + SIM_SEND_NS);
		return;
	}
	sim->stats.sends++;
	sim->stats.bytes_sent += size;
	sim_sock_enqueue(sim, s->peer, buf, size, false);
	sim_complete(l, op, (int)size, sim->now_ns + SIM_SEND_NS);
}

void loop_sim_submit(struct loop *loop, struct loop_op *op, enum loop_op_kind kind, int fd,
		     void *buf, uint32_t size, uint64_t offset, unsigned flags, loop_op_cb cb)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct sim_event *sync = NULL, *e;
	int res;

	op->cb = cb;
	op->kind = (uint8_t)kind;
	op->injected = false;
	loop->inflight++;
	if (l->crashed) {
		sim_ready_push(l, op, -ECANCELED);
		return;
	}
	if (kind == LOOP_OP_SEND || kind == LOOP_OP_RECV) {
		sim_sock_op(l, op, kind, fd, buf, size);
		return;
	}
	/* A failed link cancels the rest of its chain, as io_uring does. */
	if (l->chain_failed) {
		l->chain_failed = (flags & LOOP_LINK) != 0;
		sim_complete(l, op, -ECANCELED, sim_disk_done(l));
		return;
	}
	res = sim_file_op(l, kind, fd, buf, size, offset, &sync);
	if ((flags & LOOP_LINK) && (res < 0 || (kind != LOOP_OP_FSYNC && (uint32_t)res < size)))
		l->chain_failed = true;
	e = sim_complete(l, op, res, sim_disk_done(l));
	if (e && sync) {
		struct sim_file *f = (struct sim_file *)sync;

		e->sync_file = f->id;
		e->sync_seq = f->seq_next;
	}
}

void loop_sim_timeout(struct loop *loop, struct loop_timer *timer, uint64_t timeout_ms)
{
	struct loop_sim_loop *l = loop->sim_loop;

	loop->inflight++;
	sim_complete(l, &timer->op, -ETIME, l->sim->now_ns + timeout_ms * 1000000);
}

void loop_sim_timeout_cancel(struct loop *loop, struct loop_timer *timer)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim *sim = l->sim;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == SIM_EV_OP && e->op == &timer->op) {
			e->dead = true;
			sim_ready_push(l, &timer->op, -ECANCELED);
			return;
		}
	}
}

int loop_sim_allocate(struct loop *loop, int fd, uint64_t size)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim *sim = l->sim;
	int rv;

	if (l->crashed)
		return -EIO;
	if (sim_chance(sim, sim->faults.enospc_ppm)) {
		sim->stats.enospc++;
		sim_say(sim, "node %" PRIu64 ": allocate ENOSPC", l->node);
		return -ENOSPC;
	}
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	rv = posix_fallocate(fd, 0, (off_t)size);
	return -rv;
}

static void sim_dispatch(struct loop_sim *sim, struct sim_event *e)
{
	sim->stats.events++;
	if (e->kind == SIM_EV_DELIVER) {
		sim_sock_deliver(sim, e->sock);
		return;
	}
	if (e->sync_file && e->res == 0 && !e->owner->crashed)
		sim_file_synced(sim, e->sync_file, e->sync_seq);
	sim_ready_push(e->owner, e->op, e->owner->crashed ? -ECANCELED : e->res);
}

bool loop_sim_step(struct loop_sim *sim, uint64_t limit_ns)
{
	uint64_t at;

	while (sim->heap_count > 0 && sim->heap[0]->dead)
		free(sim_event_pop(sim));
	if (sim->heap_count == 0 || sim->heap[0]->at_ns > limit_ns) {
		if (limit_ns > sim->now_ns && limit_ns != UINT64_MAX)
			sim->now_ns = limit_ns;
		return false;
	}
	at = sim->heap[0]->at_ns;
	if (at > sim->now_ns)
		sim->now_ns = at;
	while (sim->heap_count > 0 && sim->heap[0]->at_ns <= at) {
		struct sim_event *e = sim_event_pop(sim);

		if (!e->dead)
			sim_dispatch(sim, e);
		free(e);
	}
	return true;
}

/* A crashed loop: everything it waits for ends now. */
static void sim_cancel_all(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == SIM_EV_OP && e->owner == l) {
			e->dead = true;
			sim_ready_push(l, e->op, -ECANCELED);
		}
	}
	for (uint32_t i = 0; i < l->socks_count; i++) {
		struct sim_sock *s = l->socks[i];

		if (s->recv_op) {
			sim_ready_push(l, s->recv_op, -ECANCELED);
			s->recv_op = NULL;
		}
	}
}

/* Wait for one of this loop's events: take the earliest out of the queue
 * and move the clock to it. */
static void sim_wait_one(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;
	struct sim_event *best = NULL;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == SIM_EV_OP && e->owner == l &&
		    (best == NULL || sim_event_before(e, best)))
			best = e;
	}
	if (best == NULL)
		return;
	if (best->at_ns > sim->now_ns)
		sim->now_ns = best->at_ns;
	best->dead = true;
	if (best->sync_file && best->res == 0)
		sim_file_synced(sim, best->sync_file, best->sync_seq);
	sim_ready_push(l, best->op, best->res);
}

int loop_sim_run(struct loop *loop, uint32_t wait_count)
{
	struct loop_sim_loop *l = loop->sim_loop;
	uint32_t n;
	int total = 0;

	if (l->crashed)
		sim_cancel_all(l);
	else if (wait_count > 0 && l->ready_count == 0 && !l->woken)
		sim_wait_one(l);
	/* Only what is ready now: completions that callbacks cause wait for
	 * the next call, as they would in the completion queue. */
	n = l->ready_count;
	for (uint32_t i = 0; i < n; i++) {
		struct sim_ready r = l->ready[l->ready_head];

		l->ready_head = (l->ready_head + 1) % l->ready_cap;
		l->ready_count--;
		ASSERT(loop->inflight > 0);
		loop->inflight--;
		r.op->cb(r.op, r.res);
		total++;
	}
	if (l->woken) {
		l->woken = false;
		if (loop->wake_cb)
			loop->wake_cb(loop);
	}
	if (total == 0 && l->crashed)
		return -ECANCELED; /* Nothing left: callers that wait must stop. */
	return total;
}

void loop_sim_wake(struct loop *loop)
{
	loop->sim_loop->woken = true;
}

uint32_t loop_sim_unsynced(const struct loop_sim *sim, uint64_t node)
{
	uint32_t count = 0;

	for (uint32_t i = 0; i < sim->files_count; i++)
		if (sim->files[i]->node == node)
			count += sim->files[i]->undo_count;
	return count;
}

void loop_sim_crash(struct loop_sim *sim, uint64_t node)
{
	sim_say(sim, "node %" PRIu64 " crashes", node);
	for (struct loop_sim_loop *l = sim->loops; l; l = l->next)
		if (l->node == node)
			l->crashed = true;
	for (uint32_t i = 0; i < sim->files_count;) {
		struct sim_file *f = sim->files[i];

		if (f->node != node) {
			i++;
			continue;
		}
		sim_file_crash(sim, f);
		sim_file_free(f);
		sim->files[i] = sim->files[--sim->files_count];
	}
}
