/* What raft-peer and flotilla-peer share, so that both measure and print
 * alike: clocks, latency samples and their percentiles, the exit, and the
 * parsing of numbers on the command line. */
#ifndef FLOTILLA_BENCH_PEERS_PEER_COMMON_H
#define FLOTILLA_BENCH_PEERS_PEER_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#define PEER_SAMPLES_MAX (1u << 26)
#define PEER_NS_PER_S    1000000000ull

struct peer_samples {
	uint64_t *v;
	uint32_t count, cap;
};

uint64_t peer_now_ns(void);
/* This process's user and system CPU time. */
uint64_t peer_cpu_ns(void);
void peer_exit(int status);

void peer_samples_add(struct peer_samples *s, uint64_t ns);
/* Sort s and print "PREFIX p50_us=... p99_us=... max_us=... mean_us=...
 * samples=N". */
void peer_print_percentiles(const char *prefix, struct peer_samples *s);

/* Parse an unsigned in [min, max]; false when it is not one. */
bool peer_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* Parse seconds in [0, 86400]; false when they are not. */
bool peer_parse_seconds(const char *s, double *out);

#endif
