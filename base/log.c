/* Log lines: formatting and delivery (log.h has the formats).
 *
 * A message is formatted first (cut at LOG_MSG_SIZE), then the line around
 * it (cut at LOG_LINE_SIZE, keeping room for the closing quote and brace),
 * then written with one write(2) or handed to the sink. */
#include "base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic bool log_muted;

void log_mute(bool mute)
{
	atomic_store(&log_muted, mute);
}

static unsigned log_level_min(const struct logger *lg)
{
	return lg->level_min ? lg->level_min : LOG_LEVEL_INFO;
}

bool log_enabled(const struct logger *lg, unsigned level)
{
	return level <= log_level_min(lg) && (lg->sink != NULL || !atomic_load(&log_muted));
}

const char *log_level_name(unsigned level)
{
	static const char *const names[] = {"info", "error", "warn", "info", "debug"};

	return level < sizeof(names) / sizeof(names[0]) ? names[level] : "info";
}

int log_level_parse(const char *name)
{
	for (int level = LOG_LEVEL_ERROR; level <= LOG_LEVEL_DEBUG; level++)
		if (strcmp(name, log_level_name((unsigned)level)) == 0)
			return level;
	return -1;
}

int log_format_parse(const char *name)
{
	if (strcmp(name, "text") == 0)
		return LOG_FORMAT_TEXT;
	if (strcmp(name, "logfmt") == 0)
		return LOG_FORMAT_LOGFMT;
	if (strcmp(name, "json") == 0)
		return LOG_FORMAT_JSON;
	return -1;
}

/* A line being built: len bytes of buf used, reserve bytes kept for its end. */
struct log_line {
	char *buf;
	size_t size, len, reserve;
};

static void log_line_put(struct log_line *w, const char *s)
{
	size_t n = strlen(s);

	if (w->len + n + w->reserve > w->size)
		n = w->size - w->reserve - w->len;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void log_line_printf(struct log_line *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_line_printf(struct log_line *w, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	log_line_put(w, tmp);
}

/* The escape of byte c in format into esc (empty when c goes as is).
 * JSON: RFC 8259 (\" \\ \n \r \t, \u00XX for other control bytes);
 * logfmt: the same with \xXX; text: control bytes become spaces. */
static void log_escape(unsigned format, unsigned char c, char esc[8])
{
	esc[0] = '\0';
	if (format == LOG_FORMAT_TEXT) {
		if (c < 0x20 || c == 0x7f)
			snprintf(esc, 8, " ");
		return;
	}
	if (c == '"' || c == '\\')
		snprintf(esc, 8, "\\%c", c);
	else if (c == '\n')
		snprintf(esc, 8, "\\n");
	else if (c == '\r')
		snprintf(esc, 8, "\\r");
	else if (c == '\t')
		snprintf(esc, 8, "\\t");
	else if (c < 0x20 || c == 0x7f)
		snprintf(esc, 8, format == LOG_FORMAT_JSON ? "\\u%04x" : "\\x%02x", c);
}

/* How many bytes the UTF-8 sequence at s takes (1 for ASCII or a stray byte). */
static size_t log_utf8_size(const unsigned char *s)
{
	size_t n = *s >= 0xf0 ? 4 : *s >= 0xe0 ? 3 : *s >= 0xc0 ? 2 : 1;

	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

/* Append msg escaped for format; stop before what does not fit whole (an
 * escape or a UTF-8 sequence is never cut). */
static void log_line_put_msg(struct log_line *w, const char *msg, unsigned format)
{
	const unsigned char *s = (const unsigned char *)msg;

	while (*s) {
		char esc[8];
		size_t n = 1;
		const char *out = esc;

		log_escape(format, *s, esc);
		if (esc[0] == '\0') {
			n = log_utf8_size(s);
			out = (const char *)s;
		} else {
			n = strlen(esc);
		}
		if (w->len + n + w->reserve > w->size)
			return;
		memcpy(w->buf + w->len, out, n);
		w->len += n;
		s += esc[0] == '\0' ? n : 1;
	}
}

size_t log_format_line(char *buf, size_t size, const struct log_record *rec, unsigned format)
{
	struct log_line w = {.buf = buf, .size = size, .reserve = 3}; /* "}\n or "\n */
	time_t sec = (time_t)(rec->time_ns / 1000000000);
	unsigned ms = (unsigned)(rec->time_ns / 1000000 % 1000);
	unsigned long long node = (unsigned long long)rec->node_id;
	unsigned long long group = (unsigned long long)rec->group;
	const char *level = log_level_name(rec->level);
	char ts[96];
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	if (format == LOG_FORMAT_JSON) {
		log_line_printf(&w, "{\"ts\":\"%s\",\"level\":\"%s\",\"node\":%llu", ts, level,
				node);
		if (rec->shard >= 0)
			log_line_printf(&w, ",\"shard\":%d", (int)rec->shard);
		if (rec->group != 0)
			log_line_printf(&w, ",\"group\":%llu", group);
		log_line_put(&w, ",\"msg\":\"");
		log_line_put_msg(&w, rec->msg, format);
		w.reserve = 0;
		log_line_put(&w, "\"}\n");
	} else if (format == LOG_FORMAT_LOGFMT) {
		log_line_printf(&w, "ts=%s level=%s node=%llu", ts, level, node);
		if (rec->shard >= 0)
			log_line_printf(&w, " shard=%d", (int)rec->shard);
		if (rec->group != 0)
			log_line_printf(&w, " group=%llu", group);
		log_line_put(&w, " msg=\"");
		log_line_put_msg(&w, rec->msg, format);
		w.reserve = 0;
		log_line_put(&w, "\"\n");
	} else {
		char upper[8] = "";

		for (size_t i = 0; level[i] && i < sizeof(upper) - 1; i++)
			upper[i] = (char)(level[i] - 'a' + 'A');
		log_line_printf(&w, "%s %s node %llu: ", ts, upper, node);
		if (rec->group != 0)
			log_line_printf(&w, "group %llu: ", group);
		else if (rec->shard >= 0)
			log_line_printf(&w, "shard %d: ", (int)rec->shard);
		log_line_put_msg(&w, rec->msg, format);
		w.reserve = 0;
		log_line_put(&w, "\n");
	}
	return w.len;
}

void log_emit(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
	      const char *msg)
{
	struct log_record rec = {.level = (uint8_t)level,
				 .node_id = lg->node_id,
				 .shard = shard,
				 .group = group,
				 .msg = msg};
	char line[LOG_LINE_SIZE];
	struct timespec ts;
	size_t n;

	if (!log_enabled(lg, level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	rec.time_ns = (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
	if (lg->sink != NULL) {
		lg->sink(lg->sink_arg, &rec);
		return;
	}
	n = log_format_line(line, sizeof(line), &rec, lg->format);
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report it. */
	}
}

void log_vrecord(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
		 const char *fmt, va_list ap)
{
	char msg[LOG_MSG_SIZE];

	if (!log_enabled(lg, level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_emit(lg, level, shard, group, msg);
}

void log_at(const struct logger *lg, unsigned level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vrecord(lg, level, -1, 0, fmt, ap);
	va_end(ap);
}

void log_shard(const struct logger *lg, unsigned level, uint32_t shard, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vrecord(lg, level, (int32_t)shard, 0, fmt, ap);
	va_end(ap);
}

void log_group(const struct logger *lg, unsigned level, int32_t shard, uint64_t group,
	       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vrecord(lg, level, shard, group, fmt, ap);
	va_end(ap);
}

void log_vprint(uint64_t node_id, const char *fmt, va_list ap)
{
	struct logger lg = {.node_id = node_id};

	log_vrecord(&lg, LOG_LEVEL_INFO, -1, 0, fmt, ap);
}

void log_print(uint64_t node_id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(node_id, fmt, ap);
	va_end(ap);
}
