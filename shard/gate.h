/* The gate of a node's peer listener: how many connection set-ups
 * (handshakes) run at once, node-wide and per source address, and how often
 * a refusal of one cause from one source may be logged. Any thread. */
#ifndef SHARD_GATE_H
#define SHARD_GATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define GATE_HANDSHAKES_MAX 64   /* Set-ups under way at once, node-wide, */
#define GATE_PER_SOURCE_MAX 8    /* and from one source address. */
#define GATE_SOURCES_MAX    128  /* Sources remembered (for the counts and the log). */
#define GATE_HOST_SIZE      48   /* INET6_ADDRSTRLEN and a NUL. */
#define GATE_CAUSES_MAX     16   /* Kinds of refusal logged apart. */
#define GATE_LOG_MS         5000 /* At most one line per source and cause this often. */

struct gate_source {
	char host[GATE_HOST_SIZE]; /* "": a free slot. */
	uint32_t handshakes;       /* Under way from it. */
	uint64_t used_ms;          /* Last entered or logged: the oldest idle slot is reused. */
	uint64_t logged_ms[GATE_CAUSES_MAX];
	uint32_t unlogged[GATE_CAUSES_MAX];
};

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* Signalled when handshakes drops to 0. */
	uint32_t handshakes;
	struct gate_source sources[GATE_SOURCES_MAX];
};

void gate_init(struct gate *gate);
void gate_deinit(struct gate *gate);
/* Let a set-up from host start. Returns 0 (pair with gate_leave), or
 * -EMFILE (GATE_HANDSHAKES_MAX under way) or -EUSERS (GATE_PER_SOURCE_MAX
 * from host). */
int gate_enter(struct gate *gate, const char *host, uint64_t now_ms);
void gate_leave(struct gate *gate, const char *host);
/* Wait until no set-up is under way. */
void gate_wait_idle(struct gate *gate);
/* Whether a refusal of cause (< GATE_CAUSES_MAX) from host may be logged
 * now; if so *unlogged gets how many were not since the last line. */
bool gate_may_log(struct gate *gate, const char *host, uint32_t cause, uint64_t now_ms,
		  uint32_t *unlogged);

#endif /* SHARD_GATE_H */
