/* The limiter of per-group lines (log_limit.h). */
#include "base/log_limit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void log_limit_init(struct log_limit *l, const struct logger *log, int32_t shard,
		    const char *const *whats, uint32_t kinds_count, uint32_t allowance)
{
	memset(l, 0, sizeof(*l));
	l->log = log;
	l->shard = shard;
	l->allowance = allowance;
	l->kinds_count = kinds_count < LOG_LIMIT_KINDS_MAX ? kinds_count : LOG_LIMIT_KINDS_MAX;
	for (uint32_t i = 0; i < l->kinds_count; i++)
		l->kinds[i].what = whats[i];
}

const char *log_limit_count(char buf[32], uint64_t n)
{
	char digits[24];
	int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n), out = 0;

	for (int i = 0; i < len; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			buf[out++] = ',';
		buf[out++] = digits[i];
	}
	buf[out] = '\0';
	return buf;
}

/* Write kind's summary if it suppressed anything, and end its window. */
static void log_limit_summarize(struct log_limit *l, struct log_limit_kind *k)
{
	char msg[LOG_MSG_SIZE], count[32];
	size_t n;

	if (k->suppressed > 0) {
		n = (size_t)snprintf(msg, sizeof(msg),
				     "%s groups %s in the last second (%u logged one by one); "
				     "%u examples:",
				     log_limit_count(count, k->events), k->what,
				     k->events - k->suppressed, k->examples_count);
		for (uint32_t i = 0; i < k->examples_count && n < sizeof(msg); i++)
			n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s %s", i ? ";" : "",
					      k->examples[i]);
		log_emit(l->log, k->level, l->shard, 0, msg);
	}
	k->events = 0;
	k->suppressed = 0;
	k->examples_count = 0;
	k->level = 0;
}

void log_limit_group(struct log_limit *l, uint64_t now_ms, unsigned kind, unsigned level,
		     uint64_t group, const char *fmt, ...)
{
	struct log_limit_kind *k;
	char msg[LOG_MSG_SIZE];
	va_list ap;

	if (kind >= l->kinds_count || !log_enabled(l->log, level))
		return;
	k = &l->kinds[kind];
	if (k->events > 0 && now_ms >= k->window_ms + LOG_LIMIT_WINDOW_MS)
		log_limit_summarize(l, k);
	if (k->events == 0)
		k->window_ms = now_ms;
	k->events++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (k->events <= l->allowance) {
		log_emit(l->log, level, l->shard, group, msg);
		return;
	}
	k->suppressed++;
	if (k->level == 0 || level < k->level)
		k->level = (uint8_t)level;
	if (k->examples_count < LOG_LIMIT_EXAMPLES_MAX) {
		char *ex = k->examples[k->examples_count++];
		int n =
		    snprintf(ex, LOG_LIMIT_EXAMPLE_SIZE, "group %llu: ", (unsigned long long)group);
		size_t room = LOG_LIMIT_EXAMPLE_SIZE - (size_t)n - 1, len = strlen(msg);

		len = len < room ? len : room;
		memcpy(ex + n, msg, len);
		ex[(size_t)n + len] = '\0';
	}
}

void log_limit_flush(struct log_limit *l, uint64_t now_ms)
{
	for (uint32_t i = 0; i < l->kinds_count; i++) {
		struct log_limit_kind *k = &l->kinds[i];

		if (k->events > 0 && now_ms >= k->window_ms + LOG_LIMIT_WINDOW_MS)
			log_limit_summarize(l, k);
	}
}

void log_limit_flush_all(struct log_limit *l)
{
	for (uint32_t i = 0; i < l->kinds_count; i++)
		if (l->kinds[i].events > 0)
			log_limit_summarize(l, &l->kinds[i]);
}

uint64_t log_limit_due(const struct log_limit *l, uint64_t due)
{
	for (uint32_t i = 0; i < l->kinds_count; i++) {
		const struct log_limit_kind *k = &l->kinds[i];

		if (k->suppressed > 0 && k->window_ms + LOG_LIMIT_WINDOW_MS < due)
			due = k->window_ms + LOG_LIMIT_WINDOW_MS;
	}
	return due;
}
