/* A histogram of non-negative values in fixed log-2 buckets, written by one
 * thread and read by any.
 *
 * Bucket i counts the values v with 2^(i-1) < v <= 2^i (bucket 0: v <= 1);
 * the last bucket, HIST_BUCKETS - 1, counts everything above
 * 2^(HIST_BUCKETS - 2). The unit is the caller's (microseconds, bytes,
 * entries): with 28 buckets a latency in microseconds spans 1 us .. 67 s and
 * a size in bytes 1 B .. 64 MiB before the last bucket.
 *
 * Recording is an index computed from the leading zeros, then two relaxed
 * stores: no lock, no read-modify-write instruction, since only the owning
 * thread writes. A reader sees each word whole but not the words together:
 * the sum may run a record ahead of or behind the counts, which a monitoring
 * scrape tolerates. */
#ifndef BASE_HIST_H
#define BASE_HIST_H

#include <stdint.h>

#define HIST_BUCKETS 28

struct hist {
	uint64_t counts[HIST_BUCKETS]; /* Per bucket, not cumulative. */
	uint64_t sum;
};

/* The bucket of value: the smallest i with value <= 2^i, capped at the last. */
static inline uint32_t hist_bucket(uint64_t value)
{
	uint32_t i;

	if (value <= 1)
		return 0;
	i = 64 - (uint32_t)__builtin_clzll(value - 1); /* ceil(log2(value)) */
	return i < HIST_BUCKETS - 1 ? i : HIST_BUCKETS - 1;
}

/* Count value. The owning thread only. */
static inline void hist_record(struct hist *h, uint64_t value)
{
	uint64_t *count = &h->counts[hist_bucket(value)];

	__atomic_store_n(count, *count + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum, h->sum + value, __ATOMIC_RELAXED);
}

/* Add h's counts and sum into counts[HIST_BUCKETS] and *sum. Any thread. */
static inline void hist_add_to(const struct hist *h, uint64_t *counts, uint64_t *sum)
{
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		counts[i] += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
	*sum += __atomic_load_n(&h->sum, __ATOMIC_RELAXED);
}

#endif /* BASE_HIST_H */
