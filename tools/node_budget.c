/* flotilla-node's memory budget for client buffers (--client-buffer-budget-mb):
 * one node-wide count of the bytes that client input and output buffers hold,
 * and of the answers produced but not yet queued on their connection.
 *
 * What is counted, and when:
 *   - a connection's input and output buffers, by capacity, as they grow and
 *     shrink (node_budget_sync after each change; growth is asked for first
 *     with node_budget_grow, so that no buffer grows past the budget);
 *   - an answer's value the moment the shard thread produces it
 *     (node_budget_answer, from worker_complete): a GET of a 900 KiB value
 *     counts 900 KiB until its client thread has copied it into the
 *     connection's output buffer, which then counts it instead.
 *
 * When the budget is spent, three things happen, and nothing else:
 *   - the answer of a read (GET, STALE_GET, LOCAL_GET, a CAS that did not
 *     match) carrying more than BUDGET_ANSWER_SMALL bytes of value is not
 *     kept: the client gets status BUSY with a text saying why, and the op
 *     changed nothing, so it may simply retry later;
 *   - a connection holding more than BUDGET_HOLD_MAX bytes of unsent answers
 *     is not read (its requests wait in the socket, TCP pushes back on the
 *     client) until the budget has room again; the worker's sweep looks again
 *     every WORKER_TICK_MS;
 *   - an input buffer that would have to grow past the budget is not grown:
 *     the connection is not read until there is room (a request left
 *     incomplete meanwhile meets --client-request-ms as any other).
 * Smaller answers (every write's, every status) are always kept and
 * counted: refusing them would save nothing, since BUSY's own text costs as
 * much, and a write's answer must not be lost. So the node holds at most the
 * budget, plus per request in flight one small answer, plus the value a
 * shard thread has just read and is about to drop (one per shard thread).
 * A connection that reads none of its answers for --client-idle-s is
 * closed as today, which gives its bytes back.
 *
 * Every hit is counted (flotilla_client_buffer_budget_hits_total) and logged
 * at most once a second; the bytes in use are a gauge
 * (flotilla_client_buffer_bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "tools/node_internal.h"

bool node_budget_is_spent(const struct server *s)
{
	return atomic_load(&s->budget_used) >= s->budget_max;
}

/* Take size bytes unless that passes the budget. Any thread. */
static bool node_budget_take(struct server *s, uint64_t size)
{
	uint64_t used = atomic_load(&s->budget_used);

	do {
		if (used + size > s->budget_max)
			return false;
	} while (!atomic_compare_exchange_weak(&s->budget_used, &used, used + size));
	return true;
}

static void node_budget_force(struct server *s, uint64_t size)
{
	atomic_fetch_add(&s->budget_used, size);
}

static void node_budget_give(struct server *s, uint64_t size)
{
	uint64_t was = atomic_fetch_sub(&s->budget_used, size);

	ASSERT(was >= size); /* Every byte given back was counted. */
}

/* A hit: count it and log it (at most once a second, see conn_limit_log). */
static void node_budget_hit(struct server *s, const char *what, uint64_t size)
{
	atomic_fetch_add(&s->budget_hits, 1);
	conn_limit_log(s, CONN_LIMIT_BUDGET, server_now_ms(),
		       "client buffer budget spent (--client-buffer-budget-mb %u: %llu of %llu "
		       "bytes in use): %s of %llu bytes",
		       s->opt.client_buffer_budget_mb,
		       (unsigned long long)atomic_load(&s->budget_used),
		       (unsigned long long)s->budget_max, what, (unsigned long long)size);
}

bool node_budget_may_refuse(uint32_t op, uint32_t status, uint32_t value_size)
{
	bool read = op == CLIENT_OP_GET || op == CLIENT_OP_STALE_GET || op == CLIENT_OP_LOCAL_GET ||
		    (op == CLIENT_OP_CAS && status == CLIENT_STATUS_CAS_MISMATCH);

	return read && value_size > BUDGET_ANSWER_SMALL;
}

void node_budget_busy_text(const struct server *s, char *text, size_t size)
{
	snprintf(text, size,
		 "busy: this node's client buffers are full (--client-buffer-budget-mb %u); "
		 "nothing was done, retry later",
		 s->opt.client_buffer_budget_mb);
}

void node_budget_answer(struct pending *p)
{
	struct server *s = p->server;
	char text[192];

	p->budgeted = 0;
	if (p->value_size == 0)
		return;
	if (node_budget_take(s, p->value_size)) {
		p->budgeted = p->value_size;
		return;
	}
	if (!node_budget_may_refuse(p->op, p->status, p->value_size)) {
		node_budget_force(s, p->value_size);
		p->budgeted = p->value_size;
		return;
	}
	node_budget_hit(s, "an answer refused with BUSY", p->value_size);
	free(p->value);
	p->value = NULL;
	p->value_size = 0;
	p->status = CLIENT_STATUS_BUSY;
	node_budget_busy_text(s, text, sizeof(text));
	p->value = strdup(text);
	if (p->value != NULL) {
		p->value_size = (uint32_t)strlen(text);
		node_budget_force(s, p->value_size);
		p->budgeted = p->value_size;
	}
}

void node_budget_answer_done(struct pending *p)
{
	if (p->budgeted > 0)
		node_budget_give(p->server, p->budgeted);
	p->budgeted = 0;
}

/* The capacity client_reserve() gives a buffer of capacity bytes holding
 * start..end once need more bytes must fit (tools/client.c). */
uint64_t node_budget_capacity(uint32_t capacity, uint32_t start, uint32_t end, uint64_t need,
			      uint32_t capacity_min)
{
	uint64_t live = end - start;
	uint64_t capacity_new = capacity < capacity_min ? capacity_min : capacity;

	if (capacity - live >= need)
		return capacity;
	while (capacity_new - live < need)
		capacity_new *= 2;
	return capacity_new;
}

bool node_budget_grow(struct conn *c, bool input, uint64_t capacity_new, bool may_refuse)
{
	struct server *s = c->worker->server;
	uint32_t capacity = input ? c->in_size : c->out_size;
	uint64_t grow;

	ASSERT(c->budgeted == (uint64_t)c->in_size + c->out_size); /* Synced after each change. */
	if (capacity_new <= capacity)
		return true;
	grow = capacity_new - capacity;
	if (node_budget_take(s, grow)) {
		c->budgeted += grow;
		return true;
	}
	if (input) {
		if (!c->budget_held)
			node_budget_hit(s, "a client connection not read: its input buffer", grow);
		c->budget_held = true;
		return false;
	}
	if (may_refuse) {
		node_budget_hit(s, "an answer refused with BUSY", grow);
		return false;
	}
	node_budget_force(s, grow);
	c->budgeted += grow;
	return true;
}

void node_budget_sync(struct conn *c)
{
	struct server *s = c->worker->server;
	uint64_t counted = (uint64_t)c->in_size + c->out_size;

	if (counted > c->budgeted)
		node_budget_force(s, counted - c->budgeted);
	else if (counted < c->budgeted)
		node_budget_give(s, c->budgeted - counted);
	c->budgeted = counted;
}

bool node_budget_may_read(struct conn *c)
{
	struct server *s = c->worker->server;

	if (!node_budget_is_spent(s)) {
		c->budget_held = false;
		return true;
	}
	if (c->out_end - c->out_start > BUDGET_HOLD_MAX) {
		if (!c->budget_held)
			node_budget_hit(s, "a client connection not read: unsent answers",
					c->out_end - c->out_start);
		c->budget_held = true;
	}
	return !c->budget_held;
}

void node_budget_sweep(struct worker *w, void (*mark)(struct conn *c))
{
	if (node_budget_is_spent(w->server))
		return;
	for (struct conn *c = w->conns; c != NULL; c = c->next) {
		if (c->closed || !c->budget_held)
			continue;
		c->budget_held = false;
		mark(c);
	}
}
