/* Log lines on stderr. */
#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

enum { LOG_LINE_SIZE = 1024 };

static _Atomic bool log_muted;

void log_mute(bool mute)
{
	atomic_store(&log_muted, mute);
}

void log_vprint(uint64_t node_id, const char *fmt, va_list ap)
{
	char line[LOG_LINE_SIZE];
	struct timespec ts;
	struct tm tm;
	int n, more;

	if (atomic_load(&log_muted))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ node %llu: ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, (unsigned long long)node_id);
	more = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (more > 0)
		n += more;
	if (n > (int)sizeof(line) - 2) /* Cut: the line ends where the buffer does. */
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void log_print(uint64_t node_id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(node_id, fmt, ap);
	va_end(ap);
}
