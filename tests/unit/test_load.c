/* flotilla-load's pieces: the latency histogram (tools/load_hist.h) and the
 * Zipfian key choice (tools/load_zipf.h). The Zipf tests draw with evenly
 * spaced u = (i + 0.5) / N instead of random numbers, so the counts are the
 * generator's exact quantiles and the tests are deterministic. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/load_hist.h"
#include "tools/load_zipf.h"

#define NS_PER_US 1000ull
#define NS_PER_S  1000000000ull

static struct load_hist *hist_new(void)
{
	struct load_hist *hist = malloc(sizeof(*hist));

	assert_non_null(hist);
	load_hist_reset(hist);
	return hist;
}

/* Every value from 0 to the max falls in exactly one bucket: each bucket
 * starts right after the previous one ends, and the last ends at the max. */
static void test_hist_buckets_tile_the_range(void **state)
{
	(void)state;
	assert_int_equal(load_hist_bucket_lowest(0), 0);
	for (uint32_t b = 1; b < LOAD_HIST_BUCKETS; b++)
		assert_int_equal(load_hist_bucket_lowest(b), load_hist_bucket_highest(b - 1) + 1);
	assert_int_equal(load_hist_bucket_highest(LOAD_HIST_BUCKETS - 1), LOAD_HIST_VALUE_MAX);
}

/* A value's bucket holds it, at the edges of every bucket and in between. */
static void test_hist_bucket_holds_its_value(void **state)
{
	(void)state;
	for (uint32_t b = 0; b < LOAD_HIST_BUCKETS; b++) {
		uint64_t lowest = load_hist_bucket_lowest(b), highest = load_hist_bucket_highest(b);

		assert_int_equal(load_hist_bucket(lowest), b);
		assert_int_equal(load_hist_bucket(highest), b);
		assert_int_equal(load_hist_bucket(lowest + (highest - lowest) / 2), b);
	}
	assert_int_equal(load_hist_bucket(UINT64_MAX), LOAD_HIST_BUCKETS - 1);
}

/* Any value from 1 us to 60 s is known to within 1% of itself. */
static void test_hist_precision_is_within_one_percent(void **state)
{
	(void)state;
	for (uint64_t v = NS_PER_US; v <= 60 * NS_PER_S; v += v / 97 + 1) {
		uint32_t b = load_hist_bucket(v);
		double width = (double)(load_hist_bucket_highest(b) - load_hist_bucket_lowest(b));

		assert_true(width / (double)v <= 0.01);
	}
}

/* The percentiles of 1..100000 us come out within 1% of the exact ones, and
 * min, max and mean are exact. */
static void test_hist_percentiles_of_known_values(void **state)
{
	struct load_hist *hist = hist_new();
	static const double percentiles[] = {1, 10, 50, 90, 99, 99.9, 99.99};

	(void)state;
	for (uint64_t us = 1; us <= 100000; us++)
		load_hist_record(hist, us * NS_PER_US);
	assert_int_equal(hist->total, 100000);
	assert_int_equal(hist->min, NS_PER_US);
	assert_int_equal(hist->max, 100000 * NS_PER_US);
	assert_int_equal(load_hist_mean(hist), 50000 * NS_PER_US + NS_PER_US / 2);
	for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++) {
		double exact = percentiles[i] * 1000 * (double)NS_PER_US;
		double got = (double)load_hist_percentile(hist, percentiles[i]);

		assert_true(got >= exact);
		assert_true(got <= exact * 1.01);
	}
	assert_int_equal(load_hist_percentile(hist, 100), hist->max);
	assert_int_equal(load_hist_percentile(hist, 0), hist->min);
	free(hist);
}

/* An empty histogram answers 0; one value is every percentile of itself. */
static void test_hist_empty_and_single_value(void **state)
{
	struct load_hist *hist = hist_new();

	(void)state;
	assert_true(load_hist_is_empty(hist));
	assert_int_equal(load_hist_percentile(hist, 50), 0);
	assert_int_equal(load_hist_mean(hist), 0);
	load_hist_record(hist, 1234567);
	assert_int_equal(load_hist_percentile(hist, 0), 1234567);
	assert_int_equal(load_hist_percentile(hist, 50), 1234567);
	assert_int_equal(load_hist_percentile(hist, 99.999), 1234567);
	assert_int_equal(load_hist_percentile(hist, 100), 1234567);
	free(hist);
}

/* A value past the range counts as the largest one, not as garbage. */
static void test_hist_clamps_values_past_the_range(void **state)
{
	struct load_hist *hist = hist_new();

	(void)state;
	load_hist_record(hist, 3600 * NS_PER_S);
	assert_int_equal(hist->max, LOAD_HIST_VALUE_MAX);
	assert_int_equal(hist->counts[LOAD_HIST_BUCKETS - 1], 1);
	assert_int_equal(load_hist_percentile(hist, 99), LOAD_HIST_VALUE_MAX);
	free(hist);
}

/* Merging two histograms equals recording all their values into one. */
static void test_hist_add_equals_recording_both(void **state)
{
	struct load_hist *a = hist_new(), *b = hist_new(), *both = hist_new();
	uint64_t x = 88172645463325252ull;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		uint64_t v;

		x ^= x << 13; /* xorshift64: values spread over many magnitudes. */
		x ^= x >> 7;
		x ^= x << 17;
		v = x % (1ull << (10 + i % 26));
		load_hist_record(i % 3 == 0 ? a : b, v);
		load_hist_record(both, v);
	}
	load_hist_add(a, b);
	assert_memory_equal(a->counts, both->counts, sizeof(a->counts));
	assert_int_equal(a->total, both->total);
	assert_int_equal(a->sum, both->sum);
	assert_int_equal(a->min, both->min);
	assert_int_equal(a->max, both->max);
	assert_int_equal(load_hist_percentile(a, 99.9), load_hist_percentile(both, 99.9));
	free(a);
	free(b);
	free(both);
}

/* Counts of each rank over the evenly spaced draws. */
static uint64_t *zipf_counts(const struct load_zipf *zipf, uint32_t draws)
{
	uint64_t *counts = calloc(zipf->n, sizeof(*counts));

	assert_non_null(counts);
	for (uint32_t i = 0; i < draws; i++) {
		uint64_t rank = load_zipf_rank(zipf, (i + 0.5) / draws);

		assert_true(rank < zipf->n);
		counts[rank]++;
	}
	return counts;
}

static double zipf_share_exact(uint64_t n, double theta, uint64_t top)
{
	double share = 0;

	for (uint64_t r = 1; r <= top; r++)
		share += pow((double)r, -theta);
	return share / load_zipf_zeta(n, theta);
}

static void test_zipf_rejects_bad_parameters(void **state)
{
	struct load_zipf zipf;

	(void)state;
	assert_int_equal(load_zipf_init(&zipf, 0, 0.99), -EINVAL);
	assert_int_equal(load_zipf_init(&zipf, 10, 0), -EINVAL);
	assert_int_equal(load_zipf_init(&zipf, 10, 1), -EINVAL);
	assert_int_equal(load_zipf_init(&zipf, 10, NAN), -EINVAL);
	assert_int_equal(load_zipf_init(&zipf, 10, 0.99), 0);
}

/* Ranks stay in 0..n-1 for any draw, even out of [0, 1) or NaN. */
static void test_zipf_ranks_stay_in_range(void **state)
{
	static const double draws[] = {0, 1e-300, 0.5, 0.999999999, 1, 2, -1, NAN, INFINITY};
	static const uint64_t sizes[] = {1, 2, 3, 1000, 1ull << 40};
	struct load_zipf zipf;

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		assert_int_equal(load_zipf_init(&zipf, sizes[s], 0.99), 0);
		for (size_t d = 0; d < sizeof(draws) / sizeof(draws[0]); d++)
			assert_true(load_zipf_rank(&zipf, draws[d]) < sizes[s]);
		assert_int_equal(load_zipf_rank(&zipf, 0), 0);
	}
}

/* Ranks 0 and 1 get exactly their Zipfian share; the top 3, 10, 100 and
 * 10% of ranks get theirs within the 6% of Gray's approximation; and the
 * hottest ranks are drawn in decreasing order of frequency. */
static void test_zipf_shares_follow_the_power_law(void **state)
{
	static const double thetas[] = {0.5, 0.99};
	const uint32_t draws = 1000000;
	const uint64_t n = 10000;

	(void)state;
	for (size_t i = 0; i < sizeof(thetas) / sizeof(thetas[0]); i++) {
		static const uint64_t tops[] = {3, 10, 100, n / 10};
		struct load_zipf zipf;
		uint64_t *counts, seen = 0;

		assert_int_equal(load_zipf_init(&zipf, n, thetas[i]), 0);
		counts = zipf_counts(&zipf, draws);
		assert_true(fabs((double)counts[0] / draws - zipf_share_exact(n, thetas[i], 1)) <
			    1e-5);
		assert_true(fabs((double)(counts[0] + counts[1]) / draws -
				 zipf_share_exact(n, thetas[i], 2)) < 1e-5);
		for (size_t t = 0, r = 0; t < sizeof(tops) / sizeof(tops[0]); t++) {
			double exact = zipf_share_exact(n, thetas[i], tops[t]);

			for (; r < tops[t]; r++)
				seen += counts[r];
			assert_true(fabs((double)seen / draws / exact - 1) < 0.06);
		}
		for (int r = 1; r < 10; r++)
			assert_true(counts[r] <= counts[r - 1]);
		free(counts);
	}
}

/* Past LOAD_ZIPF_EXACT_MAX terms, zeta is approximated to within 1e-10 of
 * the exact sum. */
static void test_zipf_zeta_tail_matches_exact_sum(void **state)
{
	const uint64_t n = LOAD_ZIPF_EXACT_MAX + 1234567;
	static const double thetas[] = {0.2, 0.99};

	(void)state;
	for (size_t i = 0; i < sizeof(thetas) / sizeof(thetas[0]); i++) {
		double exact = 0, carry = 0;

		for (uint64_t k = n; k >= 1; k--) { /* Kahan, smallest terms first. */
			double term = pow((double)k, -thetas[i]) - carry;
			double next = exact + term;

			carry = (next - exact) - term;
			exact = next;
		}
		assert_true(fabs(load_zipf_zeta(n, thetas[i]) / exact - 1) < 1e-10);
	}
}

/* Scattering maps 0..n-1 onto itself one to one, for any n. */
static void test_zipf_scatter_is_a_permutation(void **state)
{
	static const uint64_t sizes[] = {1, 2, 3, 10, 97, 1000, 4096, 30030, 100000};

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint64_t n = sizes[s];
		unsigned char *seen = calloc(n, 1);
		struct load_zipf_scatter scatter;

		assert_non_null(seen);
		load_zipf_scatter_init(&scatter, n, 42 + s);
		for (uint64_t r = 0; r < n; r++) {
			uint64_t k = load_zipf_scatter(&scatter, r);

			assert_true(k < n);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
		}
		free(seen);
	}
}

/* Neighbouring hot ranks land far apart, so with keys spread over groups
 * by key % groups the hottest keys do not crowd into one group. */
static void test_zipf_scatter_spreads_hot_ranks_over_groups(void **state)
{
	const uint64_t n = 100000, groups = 10;
	uint64_t per_group[10] = {0};
	struct load_zipf_scatter scatter;

	(void)state;
	load_zipf_scatter_init(&scatter, n, 1);
	for (uint64_t r = 0; r < 100; r++)
		per_group[load_zipf_scatter(&scatter, r) % groups]++;
	for (uint64_t g = 0; g < groups; g++)
		assert_true(per_group[g] <= 25);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hist_buckets_tile_the_range),
	    cmocka_unit_test(test_hist_bucket_holds_its_value),
	    cmocka_unit_test(test_hist_precision_is_within_one_percent),
	    cmocka_unit_test(test_hist_percentiles_of_known_values),
	    cmocka_unit_test(test_hist_empty_and_single_value),
	    cmocka_unit_test(test_hist_clamps_values_past_the_range),
	    cmocka_unit_test(test_hist_add_equals_recording_both),
	    cmocka_unit_test(test_zipf_rejects_bad_parameters),
	    cmocka_unit_test(test_zipf_ranks_stay_in_range),
	    cmocka_unit_test(test_zipf_shares_follow_the_power_law),
	    cmocka_unit_test(test_zipf_zeta_tail_matches_exact_sum),
	    cmocka_unit_test(test_zipf_scatter_is_a_permutation),
	    cmocka_unit_test(test_zipf_scatter_spreads_hot_ranks_over_groups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
