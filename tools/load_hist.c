/* Log-bucketed latency histogram; the bucket layout is described in
 * load_hist.h. A value v at or above LOAD_HIST_LINEAR_MAX has its leading
 * one at bit e (8..35); its bucket is picked by e and by the 7 bits that
 * follow the leading one, so a bucket spans 2^(e-7) values, at most 1/128 of
 * the smallest value it holds. */
#include "tools/load_hist.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static_assert(LOAD_HIST_LINEAR_MAX == 256, "the linear range ends where e = 8 begins");
static_assert(LOAD_HIST_BUCKETS == 3840, "256 exact buckets, then 28 powers of two x 128");
static_assert(60ull * 1000 * 1000 * 1000 <= LOAD_HIST_VALUE_MAX, "60 s fits");

void load_hist_reset(struct load_hist *hist)
{
	memset(hist->counts, 0, sizeof(hist->counts));
	hist->total = 0;
	hist->sum = 0;
	hist->min = UINT64_MAX;
	hist->max = 0;
}

uint32_t load_hist_bucket(uint64_t value_ns)
{
	uint32_t e, sub;

	if (value_ns > LOAD_HIST_VALUE_MAX)
		value_ns = LOAD_HIST_VALUE_MAX;
	if (value_ns < LOAD_HIST_LINEAR_MAX)
		return (uint32_t)value_ns;
	e = 63u - (uint32_t)__builtin_clzll(value_ns);
	sub = (uint32_t)(value_ns >> (e - LOAD_HIST_SUB_BITS)) & (LOAD_HIST_SUB_COUNT - 1);
	return LOAD_HIST_LINEAR_MAX + (e - 8) * LOAD_HIST_SUB_COUNT + sub;
}

uint64_t load_hist_bucket_lowest(uint32_t bucket)
{
	uint32_t k, e, sub;

	assert(bucket < LOAD_HIST_BUCKETS);
	if (bucket < LOAD_HIST_LINEAR_MAX)
		return bucket;
	k = bucket - LOAD_HIST_LINEAR_MAX;
	e = 8 + k / LOAD_HIST_SUB_COUNT;
	sub = k % LOAD_HIST_SUB_COUNT;
	return (uint64_t)(LOAD_HIST_SUB_COUNT + sub) << (e - LOAD_HIST_SUB_BITS);
}

uint64_t load_hist_bucket_highest(uint32_t bucket)
{
	uint32_t e;

	assert(bucket < LOAD_HIST_BUCKETS);
	if (bucket < LOAD_HIST_LINEAR_MAX)
		return bucket;
	e = 8 + (bucket - LOAD_HIST_LINEAR_MAX) / LOAD_HIST_SUB_COUNT;
	return load_hist_bucket_lowest(bucket) + (UINT64_C(1) << (e - LOAD_HIST_SUB_BITS)) - 1;
}

void load_hist_record(struct load_hist *hist, uint64_t value_ns)
{
	if (value_ns > LOAD_HIST_VALUE_MAX)
		value_ns = LOAD_HIST_VALUE_MAX;
	hist->counts[load_hist_bucket(value_ns)]++;
	hist->total++;
	hist->sum = hist->sum + value_ns < hist->sum ? UINT64_MAX : hist->sum + value_ns;
	if (value_ns < hist->min)
		hist->min = value_ns;
	if (value_ns > hist->max)
		hist->max = value_ns;
}

void load_hist_add(struct load_hist *dst, const struct load_hist *src)
{
	if (src->total == 0)
		return;
	for (uint32_t i = 0; i < LOAD_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum = dst->sum + src->sum < dst->sum ? UINT64_MAX : dst->sum + src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t load_hist_percentile(const struct load_hist *hist, double percentile)
{
	uint64_t rank, seen = 0;
	double wanted;

	if (hist->total == 0)
		return 0;
	if (!(percentile > 0)) /* Also NaN. */
		return hist->min;
	if (percentile >= 100)
		return hist->max;
	/* The smallest rank r with r >= total * percentile / 100. */
	wanted = ceil((double)hist->total * percentile / 100.0);
	rank = wanted < 1 ? 1 : (uint64_t)wanted;
	if (rank > hist->total)
		rank = hist->total;
	for (uint32_t i = 0; i < LOAD_HIST_BUCKETS; i++) {
		seen += hist->counts[i];
		if (seen >= rank) {
			uint64_t highest = load_hist_bucket_highest(i);

			return highest < hist->max ? highest : hist->max;
		}
	}
	return hist->max; /* Unreachable while counts add up to total. */
}

uint64_t load_hist_mean(const struct load_hist *hist)
{
	return hist->total == 0 ? 0 : hist->sum / hist->total;
}
