/* The limiter of per-group lines, on a fake clock: the allowance is logged
 * one by one, the rest summed up once the window ends, by a flush alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/log_limit.h"

enum { KIND_LEADER, KIND_REPAIRED, KINDS };

static const char *const whats[KINDS] = {"changed leader", "were repaired"};

struct sink {
	int count;
	struct log_record recs[64];
	char msgs[64][LOG_MSG_SIZE];
};

static void sink_record(void *arg, const struct log_record *rec)
{
	struct sink *k = arg;

	assert_true(k->count < 64);
	k->recs[k->count] = *rec;
	strcpy(k->msgs[k->count], rec->msg);
	k->recs[k->count].msg = k->msgs[k->count];
	k->count++;
}

struct fixture {
	struct sink sink;
	struct logger log;
	struct log_limit limit;
};

static void fixture_init(struct fixture *f, uint32_t allowance)
{
	memset(f, 0, sizeof(*f));
	f->log = (struct logger){.node_id = 2, .sink = sink_record, .sink_arg = &f->sink};
	log_limit_init(&f->limit, &f->log, 1, whats, KINDS, allowance);
}

static void leader_change(struct fixture *f, uint64_t now_ms, uint64_t group)
{
	log_limit_group(&f->limit, now_ms, KIND_LEADER, LOG_LEVEL_INFO, group,
			"leader is node %d, term %d", 3, 7);
}

static void test_events_within_the_allowance_are_logged_one_by_one(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 3);
	for (uint64_t g = 1; g <= 3; g++)
		leader_change(&f, 100 + g, g);
	assert_int_equal(f.sink.count, 3);
	assert_int_equal(f.sink.recs[2].group, 3);
	assert_int_equal(f.sink.recs[2].shard, 1);
	assert_string_equal(f.sink.recs[2].msg, "leader is node 3, term 7");
	assert_int_equal(log_limit_due(&f.limit, UINT64_MAX), UINT64_MAX); /* Nothing pending. */
	log_limit_flush(&f.limit, 5000);
	assert_int_equal(f.sink.count, 3); /* No summary of nothing. */
}

static void test_past_the_allowance_one_summary_once_the_window_ends(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 3);
	for (uint64_t g = 1; g <= 1203; g++)
		leader_change(&f, 1000 + g * 999 / 1203, g);
	assert_int_equal(f.sink.count, 3);
	assert_int_equal(log_limit_due(&f.limit, UINT64_MAX), 2000);
	log_limit_flush(&f.limit, 1999);
	assert_int_equal(f.sink.count, 3);
	log_limit_flush(&f.limit, 2000); /* A turn with no event writes it. */
	assert_int_equal(f.sink.count, 4);
	assert_int_equal(f.sink.recs[3].group, 0);
	assert_int_equal(f.sink.recs[3].shard, 1);
	assert_int_equal(f.sink.recs[3].level, LOG_LEVEL_INFO);
	assert_string_equal(f.sink.recs[3].msg,
			    "1,203 groups changed leader in the last second (3 logged one by one); "
			    "12 examples: group 4: leader is node 3, term 7; group 5: leader is "
			    "node 3, term 7; group 6: leader is node 3, term 7; group 7: leader is "
			    "node 3, term 7; group 8: leader is node 3, term 7; group 9: leader is "
			    "node 3, term 7; group 10: leader is node 3, term 7; group 11: leader "
			    "is node 3, term 7; group 12: leader is node 3, term 7; group 13: "
			    "leader is node 3, term 7; group 14: leader is node 3, term 7; group "
			    "15: leader is node 3, term 7");
	assert_int_equal(log_limit_due(&f.limit, UINT64_MAX), UINT64_MAX);
	log_limit_flush(&f.limit, 10000);
	assert_int_equal(f.sink.count, 4); /* Written once. */
}

/* The next window logs its first events again. */
static void test_a_new_window_logs_one_by_one_again(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 2);
	for (uint64_t g = 1; g <= 5; g++)
		leader_change(&f, 0, g);
	log_limit_flush(&f.limit, 1000);
	assert_int_equal(f.sink.count, 3);
	leader_change(&f, 1500, 6);
	leader_change(&f, 1500, 7);
	assert_int_equal(f.sink.count, 5);
	assert_int_equal(f.sink.recs[4].group, 7);
}

/* An event after a window that was never flushed writes its summary first. */
static void test_a_late_event_writes_the_old_summary_first(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 1);
	leader_change(&f, 0, 1);
	leader_change(&f, 10, 2);
	leader_change(&f, 3000, 3);
	assert_int_equal(f.sink.count, 3);
	assert_non_null(strstr(f.sink.recs[1].msg, "2 groups changed leader"));
	assert_int_equal(f.sink.recs[2].group, 3);
}

static void test_flush_all_writes_what_is_pending(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 1);
	leader_change(&f, 0, 1);
	leader_change(&f, 10, 2);
	log_limit_flush(&f.limit, 20);
	assert_int_equal(f.sink.count, 1);
	log_limit_flush_all(&f.limit); /* Shutdown: no later flush will come. */
	assert_int_equal(f.sink.count, 2);
	assert_non_null(strstr(f.sink.msgs[1], "2 groups changed leader"));
	assert_non_null(strstr(f.sink.msgs[1], "1 examples: group 2: leader is node 3"));
}

static void test_kinds_are_limited_apart_and_the_worst_level_sums_up(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 1);
	leader_change(&f, 0, 1);
	log_limit_group(&f.limit, 0, KIND_REPAIRED, LOG_LEVEL_INFO, 2, "repaired: a");
	assert_int_equal(f.sink.count, 2);
	log_limit_group(&f.limit, 1, KIND_REPAIRED, LOG_LEVEL_INFO, 3, "repaired: b");
	log_limit_group(&f.limit, 2, KIND_REPAIRED, LOG_LEVEL_WARN, 4, "repaired: c");
	log_limit_flush(&f.limit, 1000);
	assert_int_equal(f.sink.count, 3);
	assert_int_equal(f.sink.recs[2].level, LOG_LEVEL_WARN);
	assert_non_null(strstr(f.sink.msgs[2], "3 groups were repaired"));
}

/* Lines below the logger's level are neither logged nor counted. */
static void test_events_below_the_level_are_not_counted(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 1);
	f.log.level_min = LOG_LEVEL_WARN;
	for (uint64_t g = 1; g <= 10; g++)
		leader_change(&f, 0, g);
	log_limit_flush_all(&f.limit);
	assert_int_equal(f.sink.count, 0);
}

static void test_counts_have_thousands_separators(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(log_limit_count(buf, 0), "0");
	assert_string_equal(log_limit_count(buf, 999), "999");
	assert_string_equal(log_limit_count(buf, 1000), "1,000");
	assert_string_equal(log_limit_count(buf, 1234567), "1,234,567");
	assert_string_equal(log_limit_count(buf, UINT64_MAX), "18,446,744,073,709,551,615");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_events_within_the_allowance_are_logged_one_by_one),
	    cmocka_unit_test(test_past_the_allowance_one_summary_once_the_window_ends),
	    cmocka_unit_test(test_a_new_window_logs_one_by_one_again),
	    cmocka_unit_test(test_a_late_event_writes_the_old_summary_first),
	    cmocka_unit_test(test_flush_all_writes_what_is_pending),
	    cmocka_unit_test(test_kinds_are_limited_apart_and_the_worst_level_sums_up),
	    cmocka_unit_test(test_events_below_the_level_are_not_counted),
	    cmocka_unit_test(test_counts_have_thousands_separators),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
