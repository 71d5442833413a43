/* What callers wait on in a group (shard/pending.c): proposals answered as
 * their entries apply, dropped or indeterminate otherwise; reads answered
 * once their index applies; everything failed when the group stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/err.h"
#include "shard/shard_internal.h"

enum { ANSWERS_MAX = 64 };

struct answer {
	uintptr_t tag;
	int rv;
	uint64_t result, leader;
};

static struct answer answers[ANSWERS_MAX];
static uint32_t answers_count;

static void answer_cb(void *arg, int rv, uint64_t result, uint64_t leader)
{
	assert_true(answers_count < ANSWERS_MAX);
	answers[answers_count++] = (struct answer){(uintptr_t)arg, rv, result, leader};
}

static struct group *group_new(void)
{
	struct group *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	g->id = 9;
	g->raft.leader = 5;
	answers_count = 0;
	return g;
}

static void group_free(struct group *g)
{
	free(g->props);
	free(g->reads);
	free(g->reads_apply);
	free(g->check_waits);
	free(g);
}

static void push(struct group *g, uint64_t index, uint64_t term, uintptr_t tag)
{
	pending_prop_push(g, (struct pending_prop){index, term, answer_cb, (void *)tag, 0});
}

/* Entries applied in order settle their proposals with the state machine's
 * result; a proposal whose index applied with another term is dropped, and
 * so is any of an older term once a newer term's entry commits. */
static void test_pending_props_settle(void **state)
{
	struct group *g = group_new();

	(void)state;
	assert_int_equal(pending_props_reserve(g, 4), 0);
	push(g, 1, 1, 101);
	push(g, 2, 1, 102);
	push(g, 3, 1, 103);
	push(g, 4, 2, 104);
	pending_props_settle(g, 1, 1, 42);
	assert_int_equal(answers_count, 1);
	assert_int_equal(answers[0].tag, 101);
	assert_int_equal(answers[0].rv, 0);
	assert_int_equal(answers[0].result, 42);
	assert_int_equal(answers[0].leader, 5);
	pending_props_settle(g, 2, 2, 0); /* Index 2 went to a newer leader. */
	assert_int_equal(answers_count, 3);
	assert_int_equal(answers[1].tag, 102);
	assert_int_equal(answers[1].rv, ERR_DROPPED);
	assert_int_equal(answers[2].tag, 103); /* Term 1 can no longer commit. */
	assert_int_equal(answers[2].rv, ERR_DROPPED);
	assert_int_equal(g->props_count, 1);
	pending_props_settle(g, 4, 2, 7);
	assert_int_equal(answers_count, 4);
	assert_int_equal(answers[3].tag, 104);
	assert_int_equal(answers[3].rv, 0);
	assert_int_equal(answers[3].result, 7);
	assert_int_equal(g->props_count, 0);
	group_free(g);
}

/* A snapshot that jumps past proposals makes their outcome unknown here. */
static void test_pending_props_skip(void **state)
{
	struct group *g = group_new();

	(void)state;
	assert_int_equal(pending_props_reserve(g, 3), 0);
	push(g, 5, 3, 1);
	push(g, 6, 3, 2);
	push(g, 9, 3, 3);
	pending_props_skip(g, 6, 3);
	assert_int_equal(answers_count, 2);
	assert_int_equal(answers[0].rv, ERR_INDETERMINATE);
	assert_int_equal(answers[1].rv, ERR_INDETERMINATE);
	assert_int_equal(g->props_count, 1);
	group_free(g);
}

/* The ring keeps its order across growth and wrap-around. */
static void test_pending_props_ring(void **state)
{
	struct group *g = group_new();
	uint64_t next = 1;

	(void)state;
	for (int round = 0; round < 10; round++) {
		assert_int_equal(pending_props_reserve(g, 7), 0);
		for (int i = 0; i < 7; i++, next++)
			push(g, next, 1, next);
		answers_count = 0;
		pending_props_settle(g, next - 3, 1, 0);
		for (uint32_t i = 1; i < answers_count; i++)
			assert_true(answers[i].tag == answers[i - 1].tag + 1);
	}
	answers_count = 0;
	pending_fail_all(g, ERR_STOPPING);
	assert_int_equal(answers_count, 2); /* Each round left its last two. */
	for (uint32_t i = 1; i < answers_count; i++)
		assert_true(answers[i].tag == answers[i - 1].tag + 1);
	group_free(g);
}

/* Reads confirmed at an index wait for it to apply; a refused confirmation
 * is answered at once; a diverged replica answers none successfully. */
static void test_pending_reads(void **state)
{
	struct group *g = group_new();
	struct raft_read confirmed[] = {
	    {.context = 11, .index = 20}, {.context = 12, .index = 0}, {.context = 13, .index = 3}};
	struct raft_ready rd = {.reads = confirmed, .reads_count = 3};

	(void)state;
	g->raft.applied = 5;
	g->reads = calloc(4, sizeof(*g->reads));
	g->reads_cap = 4;
	g->reads[g->reads_count++] = (struct pending_read){11, answer_cb, (void *)1, 0};
	g->reads[g->reads_count++] = (struct pending_read){12, answer_cb, (void *)2, 0};
	g->reads[g->reads_count++] = (struct pending_read){13, answer_cb, (void *)3, 0};
	pending_reads_ready(g, &rd);
	assert_int_equal(g->reads_count, 0);
	assert_int_equal(answers_count, 2); /* Refused, and already applied. */
	assert_int_equal(answers[0].tag, 2);
	assert_int_equal(answers[0].rv, RAFT_ERR_NOT_LEADER);
	assert_int_equal(answers[1].tag, 3);
	assert_int_equal(answers[1].rv, 0);
	assert_int_equal(g->reads_apply_count, 1);
	pending_reads_settle(g, 19);
	assert_int_equal(answers_count, 2);
	g->diverged = true;
	pending_reads_settle(g, 20);
	assert_int_equal(answers_count, 3);
	assert_int_equal(answers[2].tag, 1);
	assert_int_equal(answers[2].rv, ERR_DIVERGED);
	assert_int_equal(g->reads_apply_count, 0);
	group_free(g);
}

/* Reads asked before a time are abandoned: the caller retries. */
static void test_pending_reads_abandon(void **state)
{
	struct group *g = group_new();

	(void)state;
	g->reads = calloc(2, sizeof(*g->reads));
	g->reads_cap = 2;
	g->reads[g->reads_count++] = (struct pending_read){1, answer_cb, (void *)1, 100};
	g->reads[g->reads_count++] = (struct pending_read){2, answer_cb, (void *)2, 300};
	pending_reads_abandon(g, 200);
	assert_int_equal(answers_count, 1);
	assert_int_equal(answers[0].tag, 1);
	assert_int_equal(answers[0].rv, RAFT_ERR_NOT_LEADER);
	assert_int_equal(g->reads_count, 1);
	pending_reads_abandon(g, UINT64_MAX);
	assert_int_equal(answers_count, 2);
	assert_int_equal(g->reads_count, 0);
	group_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pending_props_settle),  cmocka_unit_test(test_pending_props_skip),
	    cmocka_unit_test(test_pending_props_ring),    cmocka_unit_test(test_pending_reads),
	    cmocka_unit_test(test_pending_reads_abandon),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
