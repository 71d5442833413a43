#include "bench/peers/peer_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

uint64_t peer_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * PEER_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t peer_cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * PEER_NS_PER_S +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* End the process now, without closing the Raft library: in raft-peer,
 * raft_close() with AppendEntries in flight ended in a double free inside
 * libraft 0.15 under AddressSanitizer; neither program needs a clean close
 * (every acknowledged entry is durable already, and the caller reopens or
 * removes the directory). SIGTERM, which the caller sends to stop the
 * nodes, ends the process the same way. */
void peer_exit(int status)
{
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

void peer_samples_add(struct peer_samples *s, uint64_t ns)
{
	if (s->count == s->cap) {
		uint32_t cap = s->cap == 0 ? 65536 : s->cap * 2;
		uint64_t *v;

		if (cap > PEER_SAMPLES_MAX)
			return; /* Enough samples for any percentile: drop the rest. */
		v = realloc(s->v, (size_t)cap * sizeof(*v));
		if (v == NULL)
			return;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->count++] = ns;
}

static int peer_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0 < p <= 100) of the sorted samples, in us. */
static double peer_percentile_us(const struct peer_samples *s, unsigned p)
{
	uint64_t rank;

	if (s->count == 0)
		return 0;
	rank = ((uint64_t)p * s->count + 99) / 100;
	return (double)s->v[rank == 0 ? 0 : rank - 1] / 1e3;
}

void peer_print_percentiles(const char *prefix, struct peer_samples *s)
{
	double sum = 0;

	qsort(s->v, s->count, sizeof(*s->v), peer_cmp_u64);
	for (uint32_t i = 0; i < s->count; i++)
		sum += (double)s->v[i] / 1e3;
	printf("%s p50_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f samples=%u\n", prefix,
	       peer_percentile_us(s, 50), peer_percentile_us(s, 99),
	       s->count ? (double)s->v[s->count - 1] / 1e3 : 0, s->count ? sum / s->count : 0,
	       s->count);
}

bool peer_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

bool peer_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0 && v <= 86400))
		return false;
	*out = v;
	return true;
}
