/* The gate of a node's peer listener (see gate.h). Each accepted
 * connection's set-up (TLS and wire handshakes) runs on its own short-lived
 * thread with a whole-set-up deadline (shard/net.c), so a slow or silent
 * one never delays another; the gate bounds how many run at once, so a
 * flood of connections costs threads and memory only up to
 * GATE_HANDSHAKES_MAX, and one source can hold at most GATE_PER_SOURCE_MAX
 * of them. Past either bound a connection is closed at once. The same table
 * of sources rate-limits the refusal lines, per source and cause. */
#include "shard/gate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/assert.h"

void gate_init(struct gate *gate)
{
	*gate = (struct gate){0};
	pthread_mutex_init(&gate->lock, NULL);
	pthread_cond_init(&gate->idle, NULL);
}

void gate_deinit(struct gate *gate)
{
	ASSERT(gate->handshakes == 0); /* gate_wait_idle() came first. */
	pthread_cond_destroy(&gate->idle);
	pthread_mutex_destroy(&gate->lock);
}

/* host's slot, or a free one or the oldest idle one made host's; NULL when
 * every slot has a set-up under way. Under lock. */
static struct gate_source *gate_source_of(struct gate *gate, const char *host_in)
{
	struct gate_source *reuse = NULL;
	char host[GATE_HOST_SIZE];

	/* Longer keys (a dialled peer's address) are cut as they are stored. */
	snprintf(host, sizeof(host), "%s", host_in);
	for (int i = 0; i < GATE_SOURCES_MAX; i++) {
		struct gate_source *src = &gate->sources[i];

		if (strcmp(src->host, host) == 0)
			return src;
		/* A free slot first, else the idle one used longest ago. */
		if (src->handshakes == 0 &&
		    (reuse == NULL || (reuse->host[0] != '\0' &&
				       (src->host[0] == '\0' || src->used_ms < reuse->used_ms))))
			reuse = src;
	}
	if (reuse != NULL) {
		*reuse = (struct gate_source){0};
		snprintf(reuse->host, sizeof(reuse->host), "%s", host);
	}
	return reuse;
}

int gate_enter(struct gate *gate, const char *host, uint64_t now_ms)
{
	struct gate_source *src;
	int rv = 0;

	pthread_mutex_lock(&gate->lock);
	src = gate_source_of(gate, host);
	if (gate->handshakes >= GATE_HANDSHAKES_MAX || src == NULL) {
		rv = -EMFILE;
	} else if (src->handshakes >= GATE_PER_SOURCE_MAX) {
		rv = -EUSERS;
	} else {
		gate->handshakes++;
		src->handshakes++;
		src->used_ms = now_ms;
	}
	pthread_mutex_unlock(&gate->lock);
	return rv;
}

void gate_leave(struct gate *gate, const char *host)
{
	struct gate_source *src;

	pthread_mutex_lock(&gate->lock);
	src = gate_source_of(gate, host);
	ASSERT(src != NULL && src->handshakes > 0); /* Entered, so its slot stayed. */
	ASSERT(gate->handshakes > 0);
	src->handshakes--;
	if (--gate->handshakes == 0)
		pthread_cond_broadcast(&gate->idle);
	pthread_mutex_unlock(&gate->lock);
}

void gate_wait_idle(struct gate *gate)
{
	pthread_mutex_lock(&gate->lock);
	while (gate->handshakes > 0)
		pthread_cond_wait(&gate->idle, &gate->lock);
	pthread_mutex_unlock(&gate->lock);
}

bool gate_may_log(struct gate *gate, const char *host, uint32_t cause, uint64_t now_ms,
		  uint32_t *unlogged)
{
	struct gate_source *src;
	bool may = true;

	ASSERT(cause < GATE_CAUSES_MAX);
	pthread_mutex_lock(&gate->lock);
	src = gate_source_of(gate, host);
	if (src != NULL) {
		src->used_ms = now_ms;
		if (src->logged_ms[cause] != 0 && now_ms < src->logged_ms[cause] + GATE_LOG_MS) {
			src->unlogged[cause]++;
			may = false;
		} else {
			*unlogged = src->unlogged[cause];
			src->unlogged[cause] = 0;
			src->logged_ms[cause] = now_ms;
		}
	} else {
		*unlogged = 0;
	}
	pthread_mutex_unlock(&gate->lock);
	return may;
}
