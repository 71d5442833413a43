/* The WAL's group table (io/wal_index.c): a dense array of groups found
 * through a table of slots. Groups come and go (a removal record, once no
 * older segment holds the group, deletes it): every group present is found,
 * none removed is, iteration visits each present group once, and an idle
 * group's runs start small. No file is touched: the table is memory only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "io/wal_internal.h"

#define INDEX_GROUPS 5000

/* Group ids spread like real ones: not 1..n, so probes collide. */
static uint64_t index_id(uint32_t i)
{
	return (uint64_t)i * 0x9E3779B97F4A7C15ull | 1;
}

static uint32_t index_visited(const struct wal *wal)
{
	const struct wal_group *g = NULL;
	uint32_t n = 0;

	while ((g = wal_group_next(wal, g)) != NULL)
		n++;
	return n;
}

/* Every group present is found, with its own id; none deleted is; each is
 * visited once; the table holds together through growth and deletions. */
static void test_group_table_finds_every_group_through_deletions(void **state)
{
	struct wal wal;
	struct wal_group *g;

	(void)state;
	memset(&wal, 0, sizeof(wal));
	assert_int_equal(wal_index_init(&wal), 0);
	for (uint32_t i = 0; i < INDEX_GROUPS; i++) {
		assert_int_equal(wal_index_group_get(&wal, index_id(i), &g), 0);
		assert_true(g->group == index_id(i));
		assert_int_equal(wal_index_runs_reserve(g, 1), 0);
	}
	assert_int_equal(wal.groups_count, INDEX_GROUPS);
	/* Delete every third group, in an order unlike insertion's. */
	for (uint32_t i = INDEX_GROUPS; i-- > 0;) {
		if (i % 3 != 0)
			continue;
		g = (struct wal_group *)wal_group_find(&wal, index_id(i));
		assert_non_null(g);
		wal_index_group_delete(&wal, g);
	}
	for (uint32_t i = 0; i < INDEX_GROUPS; i++) {
		const struct wal_group *f = wal_group_find(&wal, index_id(i));

		if (i % 3 == 0) {
			assert_null(f);
			continue;
		}
		assert_non_null(f);
		assert_true(f->group == index_id(i));
		assert_true(f->used);
	}
	assert_int_equal(index_visited(&wal), wal.groups_count);
	assert_int_equal(wal.groups_count, INDEX_GROUPS - (INDEX_GROUPS + 2) / 3);
	/* A deleted group comes back empty; the others keep theirs. */
	assert_int_equal(wal_index_group_get(&wal, index_id(0), &g), 0);
	assert_int_equal(g->runs_count, 0);
	assert_int_equal(g->runs_cap, 0);
	assert_int_equal(index_visited(&wal), wal.groups_count);
	wal_index_deinit(&wal);
}

/* An idle group's live log is a record or two: its runs start at two,
 * not at a larger ring. */
static void test_new_group_runs_start_at_two(void **state)
{
	struct wal wal;
	struct wal_group *g;

	(void)state;
	memset(&wal, 0, sizeof(wal));
	assert_int_equal(wal_index_init(&wal), 0);
	assert_int_equal(wal_index_group_get(&wal, 7, &g), 0);
	assert_int_equal(wal_index_runs_reserve(g, 1), 0);
	assert_int_equal(g->runs_cap, 2);
	assert_int_equal(wal_index_runs_reserve(g, 3), 0);
	assert_int_equal(g->runs_cap, 4);
	wal_index_deinit(&wal);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_table_finds_every_group_through_deletions),
	    cmocka_unit_test(test_new_group_runs_start_at_two),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
