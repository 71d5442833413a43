/* A limiter for lines that a mass event prints once per group: a failover
 * of a node that led 10,000 groups changes 10,000 leaders at once.
 *
 * Each kind of event (a leader change, a repair, ...) has a window of
 * LOG_LIMIT_WINDOW_MS from its first event. The first `allowance` events
 * of a window are logged as they come; the rest are counted, the first
 * LOG_LIMIT_EXAMPLES_MAX of them kept as examples, and when the window ends
 * one summary line says how many there were:
 *   "1,203 groups changed leader in the last second (8 logged one by one);
 *    12 examples: group 4: leader is node 2, term 7; ..."
 * A window that needed no summary ends silently.
 *
 * The owner calls log_limit_flush() every turn (and log_limit_due() to
 * wake in time), so that a summary is written even when nothing else
 * happens, and log_limit_flush_all() when it stops. Time is an argument:
 * the limiter reads no clock. Not thread-safe: one per shard thread. */
#ifndef BASE_LOG_LIMIT_H
#define BASE_LOG_LIMIT_H

#include <stdint.h>

#include "base/log.h"

enum {
	LOG_LIMIT_KINDS_MAX = 8,
	LOG_LIMIT_WINDOW_MS = 1000,
	LOG_LIMIT_EXAMPLES_MAX = 12,
	LOG_LIMIT_EXAMPLE_SIZE = 56, /* Bytes of one example, cut to fit. */
};

struct log_limit_kind {
	const char *what; /* "changed leader": what each group did. */
	uint64_t window_ms;
	uint32_t events;     /* In this window, logged or not. */
	uint32_t suppressed; /* Counted but not logged. */
	uint8_t level;       /* The most severe level suppressed. */
	uint32_t examples_count;
	char examples[LOG_LIMIT_EXAMPLES_MAX][LOG_LIMIT_EXAMPLE_SIZE];
};

struct log_limit {
	const struct logger *log; /* Borrowed for the limiter's life. */
	int32_t shard;
	uint32_t allowance; /* Events logged one by one per window and kind. */
	uint32_t kinds_count;
	struct log_limit_kind kinds[LOG_LIMIT_KINDS_MAX];
};

/* whats[i] names kind i ("changed leader", "were repaired"). */
void log_limit_init(struct log_limit *l, const struct logger *log, int32_t shard,
		    const char *const *whats, uint32_t kinds_count, uint32_t allowance);

/* An event of kind about group at now_ms: logged through log_group() while
 * the window allows, else counted. An event below the logger's level is
 * neither logged nor counted. */
void log_limit_group(struct log_limit *l, uint64_t now_ms, unsigned kind, unsigned level,
		     uint64_t group, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Write the summary of every window that has ended by now_ms. */
void log_limit_flush(struct log_limit *l, uint64_t now_ms);
/* Write every pending summary now (shutdown). */
void log_limit_flush_all(struct log_limit *l);

/* The earlier of due and the end of the first window with a pending summary. */
uint64_t log_limit_due(const struct log_limit *l, uint64_t due);

/* n with a comma between each group of three digits ("1,203") into buf. */
const char *log_limit_count(char buf[32], uint64_t n);

#endif /* BASE_LOG_LIMIT_H */
