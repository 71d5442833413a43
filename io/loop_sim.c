/* The simulated loop backend, its core: the world's clock, PRNG and event
 * queue, the ready lists, and the sim branch of each loop_* function. See
 * loop_sim.h for what it models; loop_sim_disk.c has the files and
 * loop_sim_net.c the sockets.
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
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/assert.h"
#include "io/loop_sim_internal.h"

uint64_t loop_sim_rand(struct loop_sim *sim)
{
	uint64_t z = (sim->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

bool loop_sim_chance(struct loop_sim *sim, uint32_t ppm)
{
	return ppm > 0 && loop_sim_rand(sim) % 1000000 < ppm;
}

uint64_t loop_sim_between(struct loop_sim *sim, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + loop_sim_rand(sim) % (hi - lo + 1);
}

void loop_sim_say(struct loop_sim *sim, const char *fmt, ...)
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

void loop_sim_free(struct loop_sim *sim)
{
	ASSERT(sim->loops == NULL); /* Every loop was deinitialised. */
	for (uint32_t i = 0; i < sim->heap_count; i++)
		if (sim->heap[i]->kind ==
		    LOOP_SIM_EV_OP) /* A delivery event lives in its socket. */
			free(sim->heap[i]);
	free(sim->heap);
	loop_sim_disk_free(sim);
	loop_sim_net_free(sim);
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

static bool loop_sim_event_before(const struct loop_sim_event *a, const struct loop_sim_event *b)
{
	return a->at_ns < b->at_ns || (a->at_ns == b->at_ns && a->seq < b->seq);
}

int loop_sim_heap_reserve(struct loop_sim *sim, uint32_t extra)
{
	uint64_t need = (uint64_t)sim->heap_count + sim->socks_count + extra;
	struct loop_sim_event **heap;

	if (need > UINT32_MAX)
		return -ENOMEM;
	heap = array_grow(sim->heap, &sim->heap_cap, (uint32_t)need, sizeof(*sim->heap),
			  LOOP_SIM_ARRAY_CAP_FIRST);
	if (heap == NULL)
		return -ENOMEM;
	sim->heap = heap;
	return 0;
}

struct loop_sim_event *loop_sim_event_new(struct loop_sim *sim)
{
	if (loop_sim_heap_reserve(sim, 1) != 0)
		return NULL;
	return calloc(1, sizeof(struct loop_sim_event));
}

void loop_sim_event_queue(struct loop_sim *sim, struct loop_sim_event *e, uint64_t at_ns,
			  uint8_t kind)
{
	uint32_t i;

	ASSERT(at_ns >= sim->now_ns);            /* Time never runs backwards. */
	ASSERT(sim->heap_count < sim->heap_cap); /* Its room was reserved. */
	e->at_ns = at_ns;
	e->seq = ++sim->seq;
	e->kind = kind;
	i = sim->heap_count++;
	while (i > 0 && loop_sim_event_before(e, sim->heap[(i - 1) / 2])) {
		sim->heap[i] = sim->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	sim->heap[i] = e;
}

static struct loop_sim_event *loop_sim_event_pop(struct loop_sim *sim)
{
	struct loop_sim_event *top = sim->heap[0];
	struct loop_sim_event *last = sim->heap[--sim->heap_count];
	uint32_t i = 0;

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= sim->heap_count)
			break;
		if (c + 1 < sim->heap_count &&
		    loop_sim_event_before(sim->heap[c + 1], sim->heap[c]))
			c++;
		if (!loop_sim_event_before(sim->heap[c], last))
			break;
		sim->heap[i] = sim->heap[c];
		i = c;
	}
	if (sim->heap_count > 0)
		sim->heap[i] = last;
	return top;
}

/* Events of the queue that are taken out are freed only when popped. */
static void loop_sim_event_free(struct loop_sim_event *e)
{
	if (e->kind == LOOP_SIM_EV_OP)
		free(e);
}

void loop_sim_ready_push(struct loop_sim_loop *l, struct loop_op *op, int res)
{
	uint32_t tail;

	/* Sized for loop->inflight_max, and an operation is on it once. */
	ASSERT(l->ready_count < l->ready_cap);
	tail = (l->ready_head + l->ready_count) % l->ready_cap;
	l->ready[tail] = (struct loop_sim_ready){op, res};
	l->ready_count++;
}

void loop_sim_complete(struct loop_sim_loop *l, struct loop_sim_event *e, struct loop_op *op,
		       int res, uint64_t at_ns)
{
	e->owner = l;
	e->op = op;
	e->res = res;
	loop_sim_event_queue(l->sim, e, at_ns, LOOP_SIM_EV_OP);
}

struct loop_sim_event *loop_sim_complete_new(struct loop_sim_loop *l, struct loop_op *op, int res,
					     uint64_t at_ns)
{
	struct loop_sim_event *e = loop_sim_event_new(l->sim);

	if (e == NULL) {
		loop_sim_ready_push(l, op, -ENOMEM);
		return NULL;
	}
	loop_sim_complete(l, e, op, res, at_ns);
	return e;
}

/* ---------------------------------------------------------------- loops */

int loop_init_sim(struct loop *loop, const struct loop_config *config, struct loop_sim *sim,
		  uint64_t node)
{
	uint32_t entries = config->sq_entries ? config->sq_entries : LOOP_SIM_SQ_ENTRIES_DEFAULT;
	struct loop_sim_loop *l = calloc(1, sizeof(*l));

	memset(loop, 0, sizeof(*loop));
	if (l == NULL)
		return -ENOMEM;
	/* As many in flight as the io_uring loop allows (its CQ size), so
	 * that the ready list is sized here and never grows. */
	l->ready_cap = 2 * entries;
	l->ready = calloc(l->ready_cap, sizeof(*l->ready));
	if (l->ready == NULL) {
		free(l);
		return -ENOMEM;
	}
	loop->wake_fd = -1;
	loop->wake_cb = config->wake_cb;
	loop->inflight_max = l->ready_cap;
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
		if (sim->heap[i]->kind == LOOP_SIM_EV_OP && sim->heap[i]->owner == l)
			sim->heap[i]->dead = true;
	loop_sim_net_detach_loop(l);
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

/* One more operation in flight: the same limit as the io_uring loop's. */
static void loop_sim_inflight_add(struct loop *loop)
{
	ASSERT(loop->inflight < loop->inflight_max); /* More would overflow the ready list. */
	loop->inflight++;
}

void loop_sim_submit(struct loop *loop, struct loop_op *op, enum loop_op_kind kind, int fd,
		     void *buf, uint32_t size, uint64_t offset, unsigned flags, loop_op_cb cb)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim_file *synced = NULL;
	struct loop_sim_event *e;
	int res;

	op->cb = cb;
	op->kind = (uint8_t)kind;
	op->injected = false;
	loop_sim_inflight_add(loop);
	if (l->crashed) {
		loop_sim_ready_push(l, op, -ECANCELED);
		return;
	}
	if (kind == LOOP_OP_SEND || kind == LOOP_OP_RECV) {
		loop_sim_net_op(l, op, kind, fd, buf, size);
		return;
	}
	/* Taken first: a shortage leaves the world (and its PRNG) as it was. */
	e = loop_sim_event_new(l->sim);
	if (e == NULL) {
		loop_sim_ready_push(l, op, -ENOMEM);
		return;
	}
	/* A failed link cancels the rest of its chain, as io_uring does. */
	if (l->chain_failed) {
		l->chain_failed = (flags & LOOP_LINK) != 0;
		loop_sim_complete(l, e, op, -ECANCELED, loop_sim_disk_done(l));
		return;
	}
	res = loop_sim_disk_op(l, kind, fd, buf, size, offset, &synced);
	if ((flags & LOOP_LINK) && (res < 0 || (kind != LOOP_OP_FSYNC && (uint32_t)res < size)))
		l->chain_failed = true;
	loop_sim_complete(l, e, op, res, loop_sim_disk_done(l));
	if (synced) {
		e->sync_file = synced->id;
		e->sync_seq = synced->seq_next;
	}
}

void loop_sim_timeout(struct loop *loop, struct loop_timer *timer, uint64_t timeout_ms)
{
	struct loop_sim_loop *l = loop->sim_loop;

	loop_sim_inflight_add(loop);
	if (l->crashed) {
		loop_sim_ready_push(l, &timer->op, -ECANCELED);
		return;
	}
	loop_sim_complete_new(l, &timer->op, -ETIME, l->sim->now_ns + timeout_ms * 1000000);
}

void loop_sim_timeout_cancel(struct loop *loop, struct loop_timer *timer)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim *sim = l->sim;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct loop_sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == LOOP_SIM_EV_OP && e->op == &timer->op) {
			e->dead = true;
			loop_sim_ready_push(l, &timer->op, -ECANCELED);
			return;
		}
	}
}

static void loop_sim_dispatch(struct loop_sim *sim, struct loop_sim_event *e)
{
	sim->stats.events++;
	if (e->kind == LOOP_SIM_EV_DELIVER) {
		loop_sim_net_deliver(sim, e->sock);
		return;
	}
	if (e->sync_file && e->res == 0 && !e->owner->crashed)
		loop_sim_disk_synced(sim, e->sync_file, e->sync_seq);
	loop_sim_ready_push(e->owner, e->op, e->owner->crashed ? -ECANCELED : e->res);
}

bool loop_sim_step(struct loop_sim *sim, uint64_t limit_ns)
{
	uint64_t at;

	while (sim->heap_count > 0 && sim->heap[0]->dead)
		loop_sim_event_free(loop_sim_event_pop(sim));
	if (sim->heap_count == 0 || sim->heap[0]->at_ns > limit_ns) {
		if (limit_ns > sim->now_ns && limit_ns != UINT64_MAX)
			sim->now_ns = limit_ns;
		return false;
	}
	at = sim->heap[0]->at_ns;
	if (at > sim->now_ns)
		sim->now_ns = at;
	while (sim->heap_count > 0 && sim->heap[0]->at_ns <= at) {
		struct loop_sim_event *e = loop_sim_event_pop(sim);
		bool owned = e->kind == LOOP_SIM_EV_OP; /* A delivery event lives in its socket. */

		/* Popped first: a delivery may queue its own event again. */
		if (!e->dead)
			loop_sim_dispatch(sim, e);
		if (owned)
			free(e);
	}
	return true;
}

/* A crashed loop: everything it waits for ends now. */
static void loop_sim_cancel_all(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct loop_sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == LOOP_SIM_EV_OP && e->owner == l) {
			e->dead = true;
			loop_sim_ready_push(l, e->op, -ECANCELED);
		}
	}
	loop_sim_net_cancel(l);
}

/* Wait for one of this loop's events: take the earliest out of the queue
 * and move the clock to it. */
static void loop_sim_wait_one(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;
	struct loop_sim_event *best = NULL;

	for (uint32_t i = 0; i < sim->heap_count; i++) {
		struct loop_sim_event *e = sim->heap[i];

		if (!e->dead && e->kind == LOOP_SIM_EV_OP && e->owner == l &&
		    (best == NULL || loop_sim_event_before(e, best)))
			best = e;
	}
	if (best == NULL)
		return;
	if (best->at_ns > sim->now_ns)
		sim->now_ns = best->at_ns;
	best->dead = true;
	if (best->sync_file && best->res == 0)
		loop_sim_disk_synced(sim, best->sync_file, best->sync_seq);
	loop_sim_ready_push(l, best->op, best->res);
}

int loop_sim_run(struct loop *loop, uint32_t wait_count)
{
	struct loop_sim_loop *l = loop->sim_loop;
	uint32_t n;
	int total = 0;

	if (l->crashed)
		loop_sim_cancel_all(l);
	else if (wait_count > 0 && l->ready_count == 0 && !l->woken)
		loop_sim_wait_one(l);
	/* Only what is ready now: completions that callbacks cause wait for
	 * the next call, as they would in the completion queue. */
	n = l->ready_count;
	for (uint32_t i = 0; i < n; i++) {
		struct loop_sim_ready r = l->ready[l->ready_head];

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

void loop_sim_crash(struct loop_sim *sim, uint64_t node)
{
	loop_sim_say(sim, "node %" PRIu64 " crashes", node);
	for (struct loop_sim_loop *l = sim->loops; l; l = l->next)
		if (l->node == node)
			l->crashed = true;
	loop_sim_disk_crash(sim, node);
}
