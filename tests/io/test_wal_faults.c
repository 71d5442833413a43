/* The WAL under injected faults, through the loop's fault hook: short
 * writes, EIO on write and on fdatasync, ENOSPC on write and when a new
 * segment file is preallocated. What was durable stays intact, nothing
 * pretends to be durable when it is not, a failed fdatasync is never
 * retried, and a file system without room for a new segment is a
 * condition the WAL recovers from, not a failure. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define PAYLOAD_MAX 200

struct fx {
	struct loop loop;
	struct wal wal;
	struct wal_config config;
	char dir[256];
	uint64_t durable;
	int failed_rv;
	int failed_calls;
	/* The fault plan: fail the nth operation of a kind (1-based). */
	enum loop_op_kind kind;
	int nth;
	bool sticky; /* Fail the nth and every later one. */
	int res;
	int seen[LOOP_OP_ALLOCATE + 1];
	uint8_t scratch[64 * PAYLOAD_MAX];
};

static int fx_fault(void *arg, const struct loop_fault_site *site)
{
	struct fx *fx = arg;

	fx->seen[site->kind]++;
	if (site->kind != fx->kind || fx->seen[site->kind] < fx->nth)
		return 0;
	if (fx->seen[site->kind] > fx->nth && !fx->sticky)
		return 0;
	if (fx->res > 0)
		return (int)(site->size * (uint32_t)fx->res /
			     100); /* A short write: res percent. */
	return fx->res;
}

static void fx_durable(struct wal *wal, uint64_t batch, int rv)
{
	struct fx *fx = (struct fx *)(void *)((char *)wal - offsetof(struct fx, wal));

	fx->durable = batch;
	if (rv != 0) {
		fx->failed_rv = rv;
		fx->failed_calls++;
	}
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	io_test_mkdtemp(fx->dir, "test_wal_faults");
	wal_config_default(&fx->config);
	fx->config.segment_size = 128u << 10;
	fx->config.batch_size_max = 16u << 10;
	fx->config.durable_cb = fx_durable;
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	loop_set_fault(&fx->loop, NULL, NULL);
	if (fx->wal.groups != NULL)
		wal_deinit(&fx->wal);
	loop_deinit(&fx->loop);
	io_test_rmtree(fx->dir);
	free(fx);
	return 0;
}

static void fx_plan(struct fx *fx, enum loop_op_kind kind, int nth, int res)
{
	memset(fx->seen, 0, sizeof(fx->seen));
	fx->kind = kind;
	fx->nth = nth;
	fx->sticky = false;
	fx->res = res;
	loop_set_fault(&fx->loop, fx_fault, fx);
}

static int fx_append(struct fx *fx, uint64_t group, uint64_t first, uint32_t count)
{
	struct wal_entry entries[64];
	uint8_t *p = fx->scratch;

	for (uint32_t i = 0; i < count; i++) {
		entries[i] = (struct wal_entry){.term = 1, .data = p};
		entries[i].size = io_test_payload(group, first + i, 1, PAYLOAD_MAX, p);
		p += entries[i].size;
	}
	return wal_append_entries(&fx->wal, group, first, entries, count);
}

/* Reopen without faults and check group holds exactly 1..last intact. */
static void fx_check_reopen(struct fx *fx, uint64_t group, uint64_t last_min, uint64_t last_max)
{
	const struct wal_group *g;
	uint8_t expect[PAYLOAD_MAX];
	struct wal_read read;

	loop_set_fault(&fx->loop, NULL, NULL);
	wal_deinit(&fx->wal);
	if (wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config) != 0)
		fail_msg("reopen: %s", wal_why(&fx->wal));
	g = wal_group_find(&fx->wal, group);
	assert_non_null(g);
	assert_true(g->last_index >= last_min);
	assert_true(g->last_index <= last_max);
	assert_int_equal(wal_read_sync(&fx->wal, &read, group, 1, g->last_index, 1u << 20), 0);
	assert_int_equal(read.entries_count, g->last_index);
	for (uint32_t i = 0; i < read.entries_count; i++) {
		uint32_t size = io_test_payload(group, i + 1, 1, PAYLOAD_MAX, expect);

		assert_int_equal(read.entries[i].size, size);
		assert_memory_equal(read.entries[i].data, expect, size);
	}
	wal_read_release(&read);
}

/* A short write is completed by writing the rest and syncing again. */
static void test_short_write_is_completed(void **state)
{
	struct fx *fx = *state;

	fx_plan(fx, LOOP_OP_WRITE, 1, 40);
	assert_int_equal(fx_append(fx, 1, 1, 20), 0);
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_int_equal(fx->failed_calls, 0);
	assert_int_equal(fx->seen[LOOP_OP_WRITE], 2); /* The rest went out again ... */
	assert_int_equal(fx->wal.stats.fsyncs, 2);    /* ... with its own fdatasync. */
	assert_int_equal(fx->durable, 1);
	fx_check_reopen(fx, 1, 20, 20);
}

/* EIO on a write stops the WAL: the batch is not reported durable, appends
 * fail, and what was durable before is intact. */
static void test_write_error_stops_the_wal(void **state)
{
	struct fx *fx = *state;

	fx_plan(fx, LOOP_OP_WRITE, 2, -EIO);
	assert_int_equal(fx_append(fx, 1, 1, 10), 0);
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_int_equal(fx_append(fx, 1, 11, 10), 0);
	assert_int_equal(wal_sync(&fx->wal), WAL_ERR_FAILED);
	assert_int_equal(fx->failed_rv, WAL_ERR_FAILED);
	assert_int_equal(fx->durable, 1);
	assert_int_equal(fx_append(fx, 1, 21, 1), WAL_ERR_FAILED);
	assert_non_null(strstr(wal_why(&fx->wal), "write"));
	assert_non_null(strstr(wal_why(&fx->wal), strerror(EIO)));
	fx_check_reopen(fx, 1, 10, 10);
}

/* EIO on fdatasync is fatal and never retried: no fdatasync is submitted
 * after it, whatever the caller does. */
static void test_fsync_error_is_fatal_and_not_retried(void **state)
{
	struct fx *fx = *state;

	fx_plan(fx, LOOP_OP_FSYNC, 2, -EIO);
	assert_int_equal(fx_append(fx, 1, 1, 10), 0);
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_int_equal(fx_append(fx, 1, 11, 10), 0);
	assert_int_equal(wal_sync(&fx->wal), WAL_ERR_FAILED);
	assert_int_equal(fx->durable, 1);
	assert_int_equal(fx->failed_calls, 1);
	assert_non_null(strstr(wal_why(&fx->wal), "fdatasync"));
	assert_int_equal(wal_flush(&fx->wal), WAL_ERR_FAILED);
	assert_int_equal(wal_sync(&fx->wal), WAL_ERR_FAILED);
	assert_int_equal(loop_run(&fx->loop, 0), 0);
	assert_int_equal(fx->seen[LOOP_OP_FSYNC], 2);
	assert_int_equal(fx_append(fx, 2, 1, 1), WAL_ERR_FAILED);
	/* The unsynced batch may or may not be on disk; the synced one is. */
	fx_check_reopen(fx, 1, 10, 20);
}

/* ENOSPC on a write (which preallocation should make impossible) stops the
 * WAL for good with a clear error, and corrupts nothing already written. */
static void test_enospc_on_write_refuses_appends(void **state)
{
	struct fx *fx = *state;

	fx_plan(fx, LOOP_OP_WRITE, 3, -ENOSPC);
	for (uint64_t i = 0; i < 2; i++) {
		assert_int_equal(fx_append(fx, 1, i * 10 + 1, 10), 0);
		assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_int_equal(fx_append(fx, 1, 21, 10), 0);
	assert_int_equal(wal_sync(&fx->wal), -ENOSPC);
	assert_int_equal(fx->failed_rv, -ENOSPC);
	assert_int_equal(fx_append(fx, 1, 31, 1), -ENOSPC);
	assert_non_null(strstr(wal_why(&fx->wal), strerror(ENOSPC)));
	assert_non_null(strstr(wal_why(&fx->wal), "preallocated")); /* Why it is fatal. */
	assert_false(wal_space_low(&fx->wal)); /* Not the recoverable condition. */
	fx_check_reopen(fx, 1, 20, 20);
}

/* Append 20 entries at a time from *next until an append fails; returns
 * its error (bounded: the test's segments fill long before). */
static int fx_append_until_error(struct fx *fx, uint64_t *next)
{
	int rv = 0;

	for (int i = 0; i < 1000 && rv == 0; i++) {
		rv = fx_append(fx, 1, *next, 20);
		if (rv == 0)
			*next += 20;
		if (rv == -EAGAIN) {
			rv = wal_sync(&fx->wal);
			assert_int_equal(rv, 0);
		}
	}
	return rv;
}

/* No room for a new segment file: the WAL says it is low on space as soon
 * as it cannot keep a spare beyond its tail, goes on appending into the
 * tail, and once the tail is full refuses appends with -ENOSPC having
 * appended nothing. It never fails: what was appended becomes durable, and
 * when space returns the same append goes through and nothing is lost. */
static void test_enospc_on_new_segment_is_recoverable(void **state)
{
	struct fx *fx = *state;
	const struct wal_group *g;
	uint64_t next = 1, position;

	fx_plan(fx, LOOP_OP_ALLOCATE, 2, -ENOSPC); /* The first segment is created. */
	fx->sticky = true;
	assert_int_equal(fx_append(fx, 1, next, 20), 0);
	next += 20;
	assert_true(wal_space_low(&fx->wal)); /* Noticed with a whole segment left. */
	assert_non_null(strstr(wal_why(&fx->wal), "out of space"));
	assert_non_null(strstr(wal_why(&fx->wal), strerror(ENOSPC)));
	assert_non_null(strstr(wal_why(&fx->wal), "131072 bytes"));
	assert_int_equal(fx_append_until_error(fx, &next), -ENOSPC);
	assert_true(next > 100); /* The reserve took records after the warning. */

	/* The refused append left everything as it was, and may be retried. */
	position = wal_position(&fx->wal);
	g = wal_group_find(&fx->wal, 1);
	assert_int_equal(g->last_index, next - 1);
	assert_int_equal(fx_append(fx, 1, next, 20), -ENOSPC);
	assert_int_equal(wal_position(&fx->wal), position);
	assert_int_equal(wal_group_find(&fx->wal, 1)->last_index, next - 1);
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_int_equal(fx->failed_calls, 0);
	assert_int_equal(wal_space_retry(&fx->wal), -ENOSPC);
	assert_true(wal_space_low(&fx->wal));

	/* Space returns: the retry makes a spare and appends resume. */
	fx->sticky = false;
	assert_int_equal(wal_space_retry(&fx->wal), 0);
	assert_false(wal_space_low(&fx->wal));
	for (int i = 0; i < 20; i++) {
		assert_int_equal(fx_append(fx, 1, next, 20), 0);
		next += 20;
		assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_true(fx->wal.stats.space_low_count >= 1);
	fx_check_reopen(fx, 1, next - 1, next - 1);
}

/* A WAL that ran out of space and is opened again, still without room for
 * a spare, says it is low on space at once, while its tail takes records. */
static void test_reopened_without_spare_is_low_at_once(void **state)
{
	struct fx *fx = *state;
	uint64_t next = 1;

	fx_plan(fx, LOOP_OP_ALLOCATE, 2, -ENOSPC);
	fx->sticky = true;
	assert_int_equal(fx_append(fx, 1, next, 20), 0);
	next += 20;
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_true(wal_space_low(&fx->wal));
	wal_deinit(&fx->wal);
	if (wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config) != 0)
		fail_msg("reopen: %s", wal_why(&fx->wal));
	assert_int_equal(fx->wal.spares_count, 0);
	assert_true(wal_space_low(&fx->wal));
	assert_int_equal(fx_append(fx, 1, next, 20), 0);
	next += 20;
	assert_int_equal(wal_sync(&fx->wal), 0);
	fx->sticky = false;
	assert_int_equal(wal_space_retry(&fx->wal), 0);
	assert_false(wal_space_low(&fx->wal));
	fx_check_reopen(fx, 1, next - 1, next - 1);
}

/* Space short while the WAL still has a spare: nothing to say until the
 * last spare becomes the tail, and appends never fail on the way. */
static void test_spares_are_used_before_space_is_low(void **state)
{
	struct fx *fx = *state;
	uint64_t next = 1;

	assert_int_equal(fx_append(fx, 1, next, 20), 0); /* Tail and one spare. */
	next += 20;
	assert_int_equal(wal_sync(&fx->wal), 0);
	fx_plan(fx, LOOP_OP_ALLOCATE, 1, -ENOSPC);
	fx->sticky = true;
	while (!wal_space_low(&fx->wal) && next < 100000) {
		assert_int_equal(fx_append(fx, 1, next, 20), 0);
		next += 20;
		assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_true(wal_space_low(&fx->wal));
	assert_int_equal(fx->wal.spares_count, 0);
	assert_int_equal(fx_append_until_error(fx, &next), -ENOSPC);
	assert_int_equal(wal_sync(&fx->wal), 0);
	fx_check_reopen(fx, 1, next - 1, next - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_short_write_is_completed, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_write_error_stops_the_wal, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_fsync_error_is_fatal_and_not_retried, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_enospc_on_write_refuses_appends, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_spares_are_used_before_space_is_low, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_enospc_on_new_segment_is_recoverable, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reopened_without_spare_is_low_at_once, fx_setup,
					    fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
