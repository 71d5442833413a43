/* Metrics: the histogram's bucket bounds (base/hist.h) and the Prometheus
 * text of tools/metrics_text.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/hist.h"
#include "tools/metrics_text.h"

/* Bucket i holds 2^(i-1) < v <= 2^i: each power of two closes its bucket. */
static void test_hist_bucket_bounds_are_powers_of_two(void **state)
{
	(void)state;
	assert_int_equal(hist_bucket(0), 0);
	assert_int_equal(hist_bucket(1), 0);
	assert_int_equal(hist_bucket(2), 1);
	assert_int_equal(hist_bucket(3), 2);
	assert_int_equal(hist_bucket(4), 2);
	assert_int_equal(hist_bucket(5), 3);
	for (uint32_t i = 1; i < HIST_BUCKETS - 1; i++) {
		assert_int_equal(hist_bucket(UINT64_C(1) << i), i);
		assert_int_equal(hist_bucket((UINT64_C(1) << i) + 1), i + 1);
	}
}

/* Everything past the last bound lands in the last bucket, however large. */
static void test_hist_bucket_caps_at_the_last(void **state)
{
	(void)state;
	assert_int_equal(hist_bucket(UINT64_C(1) << (HIST_BUCKETS - 2)), HIST_BUCKETS - 2);
	assert_int_equal(hist_bucket((UINT64_C(1) << (HIST_BUCKETS - 2)) + 1), HIST_BUCKETS - 1);
	assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

/* Records count in their bucket and add to the sum; readers add them up. */
static void test_hist_record_counts_and_sums(void **state)
{
	struct hist h = {0};
	uint64_t counts[HIST_BUCKETS] = {0}, sum = 0;

	(void)state;
	hist_record(&h, 3);
	hist_record(&h, 4);
	hist_record(&h, 1000);
	hist_add_to(&h, counts, &sum);
	hist_add_to(&h, counts, &sum); /* Adds: two shards' worth. */
	assert_int_equal(counts[2], 4);
	assert_int_equal(counts[10], 2); /* 512 < 1000 <= 1024 */
	assert_int_equal(sum, 2 * 1007);
}

/* One histogram: cumulative buckets with bounds scaled to seconds, +Inf
 * last, then _sum and _count. */
static void test_histogram_text_is_cumulative(void **state)
{
	struct fl_histogram h = {0};
	struct metrics_text t = {0};

	(void)state;
	h.counts[0] = 1; /* <= 1 us */
	h.counts[3] = 2; /* <= 8 us */
	h.counts[FL_HISTOGRAM_BUCKETS - 1] = 1;
	h.sum = 1500000; /* 1.5 s */
	assert_int_equal(metrics_text_histogram(&t, "x_seconds", "A help.", "node=\"7\"", &h, 1e-6),
			 0);
	assert_non_null(strstr(t.data, "# HELP x_seconds A help.\n# TYPE x_seconds histogram\n"));
	assert_non_null(strstr(t.data, "x_seconds_bucket{node=\"7\",le=\"1e-06\"} 1\n"));
	assert_non_null(strstr(t.data, "x_seconds_bucket{node=\"7\",le=\"4e-06\"} 1\n"));
	assert_non_null(strstr(t.data, "x_seconds_bucket{node=\"7\",le=\"8e-06\"} 3\n"));
	assert_non_null(strstr(t.data, "x_seconds_bucket{node=\"7\",le=\"67.108864\"} 3\n"));
	assert_non_null(strstr(t.data, "x_seconds_bucket{node=\"7\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(t.data, "x_seconds_sum{node=\"7\"} 1.5\n"));
	assert_non_null(strstr(t.data, "x_seconds_count{node=\"7\"} 4\n"));
	metrics_text_free(&t);
}

/* A node: each counter and gauge per shard with its labels, each histogram
 * once, summed over the shards; every metric has its HELP and TYPE. */
static void test_node_text_labels_shards_and_sums_histograms(void **state)
{
	struct fl_shard_metrics shards[2];
	struct metrics_text t = {0};
	const char *at;
	int types = 0, helps = 0;

	(void)state;
	memset(shards, 0, sizeof(shards));
	shards[0].commits = 5;
	shards[1].commits = 7;
	shards[1].leaders = 3;
	shards[1].inbox_depth = 9;
	shards[1].no_space = true;
	shards[0].fsync_us.counts[10] = 2;
	shards[1].fsync_us.counts[10] = 3;
	shards[0].fsync_us.sum = 1000;
	shards[1].fsync_us.sum = 3000;
	assert_int_equal(metrics_text_node(&t, 2, shards, 2), 0);
	assert_non_null(strstr(t.data, "# TYPE flotilla_commits_total counter\n"));
	assert_non_null(strstr(t.data, "flotilla_commits_total{node=\"2\",shard=\"0\"} 5\n"));
	assert_non_null(strstr(t.data, "flotilla_commits_total{node=\"2\",shard=\"1\"} 7\n"));
	assert_non_null(strstr(t.data, "# TYPE flotilla_groups_led gauge\n"));
	assert_non_null(strstr(t.data, "flotilla_groups_led{node=\"2\",shard=\"1\"} 3\n"));
	assert_non_null(strstr(t.data, "flotilla_inbox_requests{node=\"2\",shard=\"1\"} 9\n"));
	assert_non_null(strstr(t.data, "flotilla_wal_no_space{node=\"2\",shard=\"1\"} 1\n"));
	assert_non_null(strstr(t.data, "flotilla_wal_no_space{node=\"2\",shard=\"0\"} 0\n"));
	assert_non_null(strstr(
	    t.data, "flotilla_wal_fsync_latency_seconds_bucket{node=\"2\",le=\"+Inf\"} 5\n"));
	assert_non_null(
	    strstr(t.data, "flotilla_wal_fsync_latency_seconds_sum{node=\"2\"} 0.004\n"));
	assert_null(strstr(t.data, "latency_seconds_bucket{node=\"2\",shard"));
	for (at = t.data; (at = strstr(at, "# TYPE ")) != NULL; at++)
		types++;
	for (at = t.data; (at = strstr(at, "# HELP ")) != NULL; at++)
		helps++;
	assert_int_equal(types, helps);
	assert_true(types >= 30);
	assert_int_equal(t.data[t.len - 1], '\n');
	metrics_text_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hist_bucket_bounds_are_powers_of_two),
	    cmocka_unit_test(test_hist_bucket_caps_at_the_last),
	    cmocka_unit_test(test_hist_record_counts_and_sums),
	    cmocka_unit_test(test_histogram_text_is_cumulative),
	    cmocka_unit_test(test_node_text_labels_shards_and_sums_histograms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
