/* Log lines: a level, the node, the shard and group a line is about, the text.
 *
 * A struct logger says where one node's lines go: a minimum level, a format
 * (text, logfmt or JSON lines) on stderr, or a sink function that receives
 * each record instead (an embedder's callback). There is no process-wide
 * logger: every node, shard and net thread holds a copy of its node's, so
 * several nodes in one process log each to its own place.
 *
 * Each line is formatted whole and written with one write(2) of at most
 * LOG_LINE_SIZE bytes, so that the lines of several threads never
 * interleave. The formats (log_format_line):
 *   text    2026-01-02T03:04:05.678Z INFO node 2: group 17: leader is node 3, term 5
 *           ("shard N: " instead of the group when a line is about a shard)
 *   logfmt  ts=2026-01-02T03:04:05.678Z level=info node=2 shard=0 group=17 msg="..."
 *   json    {"ts":"2026-01-02T03:04:05.678Z","level":"info","node":2,"shard":0,
 *            "group":17,"msg":"..."}
 * shard and group appear only when the line is about one. A message longer
 * than the line holds is cut (JSON and logfmt stay well formed). */
#ifndef BASE_LOG_H
#define BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	LOG_LINE_SIZE = 1536, /* Bytes of a whole line, newline included. */
	LOG_MSG_SIZE = 1024,  /* Bytes of a message before formatting. */
};

/* Numbered as FL_LOG_* in flotilla.h; 0 stands for the default (info). */
enum log_level {
	LOG_LEVEL_ERROR = 1, /* Something failed: a WAL, a group, a start. */
	LOG_LEVEL_WARN = 2,  /* Degraded but going on: a lost peer, a refusal. */
	LOG_LEVEL_INFO = 3,  /* State changes an operator follows. */
	LOG_LEVEL_DEBUG = 4, /* Per-message detail. */
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_LOGFMT = 1,
	LOG_FORMAT_JSON = 2,
};

struct log_record {
	uint8_t level;    /* enum log_level. */
	uint64_t node_id; /* 0: the line is about no node yet. */
	int32_t shard;    /* -1: about no shard. */
	uint64_t group;   /* 0: about no group. */
	uint64_t time_ns; /* CLOCK_REALTIME. */
	const char *msg;  /* NUL-terminated, without a newline of its own. */
};

/* Receives a record instead of stderr; the record is borrowed for the call.
 * Runs on the thread that logs (a shard thread, the net thread, the
 * caller of fl_node_start/stop). */
typedef void (*log_sink_cb)(void *arg, const struct log_record *rec);

struct logger {
	uint64_t node_id;
	uint8_t level_min; /* Lines above it (less severe) are dropped; 0: info. */
	uint8_t format;    /* enum log_format, on stderr. */
	log_sink_cb sink;  /* NULL: stderr. */
	void *sink_arg;
};

/* Whether a line of level would go anywhere. */
bool log_enabled(const struct logger *lg, unsigned level);

/* Log one line about the node (log_at), one of its shards (log_shard) or a
 * group on a shard (log_group; shard may be -1 when unknown). */
void log_at(const struct logger *lg, unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_shard(const struct logger *lg, unsigned level, uint32_t shard, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_group(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void log_vrecord(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
		 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
/* Deliver a record whose message is already formatted. */
void log_emit(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
	      const char *msg);

/* Format rec as one line of format into buf (size >= 192), ending in '\n'.
 * Returns its length; the line is cut to fit, never mid-escape. */
size_t log_format_line(char *buf, size_t size, const struct log_record *rec, unsigned format);

/* "error", "warn", "info", "debug". */
const char *log_level_name(unsigned level);
/* Parse a level or format name. Returns it, or -1 for an unknown name. */
int log_level_parse(const char *name);
int log_format_parse(const char *name);

/* Log one line about node_id, at info, as text on stderr (programs and
 * tests with no logger of their own). */
void log_print(uint64_t node_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vprint(uint64_t node_id, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Silence every line bound for stderr (tests that run many nodes in one
 * process); sinks still receive theirs. */
void log_mute(bool mute);

#endif /* BASE_LOG_H */
