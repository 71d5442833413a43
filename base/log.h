/* Log lines on stderr: a UTC timestamp, the node id, the text.
 *
 * Lines are written whole (one fprintf of at most 1 KiB), so that threads
 * do not interleave within a line. */
#ifndef BASE_LOG_H
#define BASE_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* Log one line for node_id. */
void log_print(uint64_t node_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Silence log_print() (tests that run many nodes in one process). */
void log_mute(bool mute);

#endif /* BASE_LOG_H */
