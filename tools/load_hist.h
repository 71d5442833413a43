/* A latency histogram for flotilla-load, bucketed like HDR histograms: exact
 * below 256 ns, then 128 linear sub-buckets per power of two, so any value is
 * known to within 1/128 (0.8%) of itself. Values are nanoseconds from 0 to
 * LOAD_HIST_VALUE_MAX (68.7 s); larger ones count as LOAD_HIST_VALUE_MAX.
 *
 * Not thread-safe: each thread records into its own histogram, and a reader
 * merges copies with load_hist_add(). */
#ifndef TOOLS_LOAD_HIST_H
#define TOOLS_LOAD_HIST_H

#include <stdbool.h>
#include <stdint.h>

#define LOAD_HIST_SUB_BITS   7 /* 128 sub-buckets per power of two. */
#define LOAD_HIST_SUB_COUNT  (1u << LOAD_HIST_SUB_BITS)
#define LOAD_HIST_LINEAR_MAX (2u * LOAD_HIST_SUB_COUNT) /* Values below are exact. */
#define LOAD_HIST_MAGNITUDE  36 /* Highest power of two covered, exclusive. */
#define LOAD_HIST_VALUE_MAX  ((UINT64_C(1) << LOAD_HIST_MAGNITUDE) - 1)
#define LOAD_HIST_BUCKETS    (LOAD_HIST_LINEAR_MAX + (LOAD_HIST_MAGNITUDE - 8) * LOAD_HIST_SUB_COUNT)

struct load_hist {
	uint64_t counts[LOAD_HIST_BUCKETS];
	uint64_t total; /* Values recorded. */
	uint64_t sum;   /* Of the values, for the mean; saturates. */
	uint64_t min;   /* Exact; UINT64_MAX while empty. */
	uint64_t max;   /* Exact, after clamping to LOAD_HIST_VALUE_MAX. */
};

/* Empty the histogram (also the initializer). */
void load_hist_reset(struct load_hist *hist);

/* Record one value in nanoseconds. */
void load_hist_record(struct load_hist *hist, uint64_t value_ns);

/* Add every count of src into dst. */
void load_hist_add(struct load_hist *dst, const struct load_hist *src);

/* The bucket that holds value_ns, and the bucket's bounds: it holds the
 * values lowest..highest, both included. */
uint32_t load_hist_bucket(uint64_t value_ns);
uint64_t load_hist_bucket_lowest(uint32_t bucket);
uint64_t load_hist_bucket_highest(uint32_t bucket);

/* The value at or below which `percentile` percent (0..100) of the recorded
 * values fall: the highest value of that bucket, capped by the exact max
 * (so percentile 100 is the max and a one-value histogram answers it). 0
 * when empty. */
uint64_t load_hist_percentile(const struct load_hist *hist, double percentile);

/* Mean of the recorded values; 0 when empty. */
uint64_t load_hist_mean(const struct load_hist *hist);

static inline bool load_hist_is_empty(const struct load_hist *hist)
{
	return hist->total == 0;
}

#endif /* TOOLS_LOAD_HIST_H */
