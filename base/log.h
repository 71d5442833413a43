/* Log lines on stderr: a UTC timestamp, the node id, the text.
 *
 * Each line is written whole, with one write(2) of at most 1 KiB, so that
 * the lines of several threads never interleave. */
#ifndef BASE_LOG_H
#define BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

/* Log one line for node_id. */
void log_print(uint64_t node_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vprint(uint64_t node_id, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Silence log_print() (tests that run many nodes in one process). */
void log_mute(bool mute);

#endif /* BASE_LOG_H */
