/* The peer listener's gate (shard/gate.c): the bounds on set-ups under way
 * and the per-source, per-cause rate limit of refusal lines. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "shard/gate.h"

/* One source gets GATE_PER_SOURCE_MAX set-ups at once, then -EUSERS; one
 * leaving lets the next in. */
static void test_gate_bounds_one_source(void **state)
{
	struct gate gate;

	(void)state;
	gate_init(&gate);
	for (int i = 0; i < GATE_PER_SOURCE_MAX; i++)
		assert_int_equal(gate_enter(&gate, "10.0.0.1", 1), 0);
	assert_int_equal(gate_enter(&gate, "10.0.0.1", 1), -EUSERS);
	assert_int_equal(gate_enter(&gate, "10.0.0.2", 1), 0); /* Another source is not. */
	gate_leave(&gate, "10.0.0.1");
	assert_int_equal(gate_enter(&gate, "10.0.0.1", 1), 0);
	for (int i = 0; i < GATE_PER_SOURCE_MAX; i++)
		gate_leave(&gate, "10.0.0.1");
	gate_leave(&gate, "10.0.0.2");
	gate_wait_idle(&gate);
	gate_deinit(&gate);
}

/* The node-wide bound holds over many sources: GATE_HANDSHAKES_MAX, then
 * -EMFILE until one leaves. */
static void test_gate_bounds_the_node(void **state)
{
	struct gate gate;
	char host[GATE_HOST_SIZE];

	(void)state;
	gate_init(&gate);
	for (int i = 0; i < GATE_HANDSHAKES_MAX; i++) {
		snprintf(host, sizeof(host), "10.0.1.%d", i);
		assert_int_equal(gate_enter(&gate, host, (uint64_t)i), 0);
	}
	assert_int_equal(gate_enter(&gate, "10.0.2.1", 100), -EMFILE);
	gate_leave(&gate, "10.0.1.0");
	assert_int_equal(gate_enter(&gate, "10.0.2.1", 100), 0);
	gate_leave(&gate, "10.0.2.1");
	for (int i = 1; i < GATE_HANDSHAKES_MAX; i++) {
		snprintf(host, sizeof(host), "10.0.1.%d", i);
		gate_leave(&gate, host);
	}
	gate_wait_idle(&gate);
	gate_deinit(&gate);
}

/* One line per source and cause every GATE_LOG_MS, with the count of those
 * not logged; another cause or source is logged at once. */
static void test_gate_rate_limits_lines_per_source_and_cause(void **state)
{
	struct gate gate;
	uint32_t unlogged = 99;

	(void)state;
	gate_init(&gate);
	assert_true(gate_may_log(&gate, "10.0.0.1", 1, 1000, &unlogged));
	assert_int_equal(unlogged, 0);
	assert_false(gate_may_log(&gate, "10.0.0.1", 1, 1001, &unlogged));
	assert_false(gate_may_log(&gate, "10.0.0.1", 1, 1000 + GATE_LOG_MS - 1, &unlogged));
	assert_true(gate_may_log(&gate, "10.0.0.1", 2, 1002, &unlogged));
	assert_true(gate_may_log(&gate, "10.0.0.2", 1, 1003, &unlogged));
	assert_true(gate_may_log(&gate, "10.0.0.1", 1, 1000 + GATE_LOG_MS, &unlogged));
	assert_int_equal(unlogged, 2);
	gate_deinit(&gate);
}

/* Keys longer than a slot are cut the same way each time: still limited. */
static void test_gate_limits_long_keys(void **state)
{
	struct gate gate;
	const char *key = "dialled a-rather-long-host-name.example.internal:4000";
	uint32_t unlogged = 0;

	(void)state;
	gate_init(&gate);
	assert_true(gate_may_log(&gate, key, 3, 1000, &unlogged));
	assert_false(gate_may_log(&gate, key, 3, 1001, &unlogged));
	gate_deinit(&gate);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gate_bounds_one_source),
	    cmocka_unit_test(test_gate_bounds_the_node),
	    cmocka_unit_test(test_gate_rate_limits_lines_per_source_and_cause),
	    cmocka_unit_test(test_gate_limits_long_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
