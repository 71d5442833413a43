/* The group table of a shard (shard/table.c): lookups across growth and
 * erasure, the deadline heap's order, and the dirty and stalled lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "shard/shard_internal.h"

static struct shard *shard_new(void)
{
	struct shard *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	assert_int_equal(table_init(s, 64), 0);
	return s;
}

static void shard_free_table(struct shard *s)
{
	table_deinit(s);
	free(s);
}

/* Many more groups than the first table holds: each is found by its id
 * after every growth, and none that was never put in. */
static void test_table_insert_find(void **state)
{
	enum { COUNT = 1000 };
	struct shard *s = shard_new();
	struct group *groups = calloc(COUNT, sizeof(*groups));

	(void)state;
	assert_non_null(groups);
	for (uint64_t i = 0; i < COUNT; i++) {
		groups[i].id = i * 7919 + 1;
		assert_int_equal(table_insert(s, &groups[i]), 0);
	}
	assert_int_equal(s->groups_count, COUNT);
	assert_true(s->table_cap >= 2 * COUNT);
	assert_int_equal(atomic_load(&s->stats.groups), COUNT);
	for (uint64_t i = 0; i < COUNT; i++)
		assert_ptr_equal(table_find(s, groups[i].id), &groups[i]);
	assert_null(table_find(s, 2));
	assert_null(table_find(s, UINT64_MAX));
	shard_free_table(s);
	free(groups);
}

/* Erasing by backward shift keeps every other group reachable. */
static void test_table_erase(void **state)
{
	enum { COUNT = 300 };
	struct shard *s = shard_new();
	struct group *groups = calloc(COUNT, sizeof(*groups));

	(void)state;
	assert_non_null(groups);
	for (uint64_t i = 0; i < COUNT; i++) {
		groups[i].id = i + 100;
		assert_int_equal(table_insert(s, &groups[i]), 0);
	}
	for (uint64_t i = 0; i < COUNT; i += 3)
		table_erase(s, &groups[i]);
	assert_int_equal(s->groups_count, COUNT - (COUNT + 2) / 3);
	for (uint64_t i = 0; i < COUNT; i++) {
		if (i % 3 == 0)
			assert_null(table_find(s, groups[i].id));
		else
			assert_ptr_equal(table_find(s, groups[i].id), &groups[i]);
	}
	/* An erased id may come back. */
	assert_int_equal(table_insert(s, &groups[0]), 0);
	assert_ptr_equal(table_find(s, groups[0].id), &groups[0]);
	shard_free_table(s);
	free(groups);
}

/* Deadlines come out earliest first, duplicates included. */
static void test_table_deadlines(void **state)
{
	enum { COUNT = 500 };
	struct shard *s = shard_new();
	uint64_t seed = 12345, prev = 0;

	(void)state;
	for (uint64_t i = 0; i < COUNT; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		assert_int_equal(table_deadline_push(s, (seed >> 33) % 1000, i), 0);
	}
	assert_int_equal(s->heap_count, COUNT);
	for (uint64_t i = 0; i < COUNT; i++) {
		struct table_deadline d = table_deadline_pop(s);

		assert_true(d.deadline_ms >= prev);
		prev = d.deadline_ms;
	}
	assert_int_equal(s->heap_count, 0);
	shard_free_table(s);
}

/* A group is on the dirty list once however often it is marked; a stalled
 * group becomes dirty when the stalled are woken; unlink takes a group off
 * both lists. */
static void test_table_lists(void **state)
{
	struct shard *s = shard_new();
	struct group a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
	uint32_t count = 0;

	(void)state;
	table_dirty(s, &a);
	table_dirty(s, &a);
	table_dirty(s, &b);
	for (struct group *g = s->dirty_head; g; g = g->dirty_next)
		count++;
	assert_int_equal(count, 2);
	table_stall(s, &c);
	table_stall(s, &c);
	assert_ptr_equal(s->stalled_head, &c);
	assert_null(c.stalled_next);
	assert_false(c.dirty);
	table_wake_stalled(s);
	assert_null(s->stalled_head);
	assert_false(c.stalled);
	assert_true(c.dirty);
	table_unlink(s, &a);
	assert_false(a.dirty);
	count = 0;
	for (struct group *g = s->dirty_head; g; g = g->dirty_next) {
		assert_ptr_not_equal(g, &a);
		count++;
	}
	assert_int_equal(count, 2);
	table_stall(s, &b);
	table_unlink(s, &b);
	assert_false(b.dirty);
	assert_false(b.stalled);
	assert_null(s->stalled_head);
	shard_free_table(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table_insert_find),
	    cmocka_unit_test(test_table_erase),
	    cmocka_unit_test(test_table_deadlines),
	    cmocka_unit_test(test_table_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
