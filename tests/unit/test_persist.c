/* Persistence bookkeeping of a shard (shard/persist.c): persisted positions
 * come back when their WAL batch is durable, and held messages are released
 * by durable batch, oldest first, never before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "shard/shard_internal.h"

enum { SENT_MAX = 64 };

struct sent {
	uint64_t peer;
	struct raft_msg msg;
};

static struct sent sent[SENT_MAX];
static uint32_t sent_count;

static void send_cb(struct shard *s, uint64_t peer, const uint8_t *msg, size_t size)
{
	struct raft_entry entries[1];
	struct raft_snapshot_meta snap;
	size_t used = 0;

	(void)s;
	assert_true(sent_count < SENT_MAX);
	sent[sent_count].peer = peer;
	assert_int_equal(
	    wire_msg_decode(msg, size, &used, &sent[sent_count].msg, entries, 1, &snap), 0);
	assert_int_equal(used, size);
	sent_count++;
}

static struct raft_msg vote(uint64_t to, uint64_t term)
{
	return (struct raft_msg){
	    .group = 3, .from = 1, .to = to, .term = term, .type = RAFT_MSG_VOTE_RESP};
}

static void test_persist_pop_by_batch(void **state)
{
	struct shard *s = calloc(1, sizeof(*s));
	struct persist_item it;

	(void)state;
	assert_non_null(s);
	for (uint64_t i = 0; i < 1000; i++)
		assert_int_equal(persist_push(s, (struct persist_item){.batch = 1 + i / 10,
								       .group = i,
								       .index = i + 1,
								       .term = 1}),
				 0);
	assert_false(persist_pop(s, 0, &it));
	for (uint64_t i = 0; i < 10; i++) {
		assert_true(persist_pop(s, 1, &it));
		assert_int_equal(it.group, i);
	}
	assert_false(persist_pop(s, 1, &it)); /* Batch 2 is not durable yet. */
	for (uint64_t i = 10; i < 1000; i++) {
		assert_true(persist_pop(s, 1000, &it));
		assert_int_equal(it.group, i);
		assert_int_equal(it.index, i + 1);
	}
	assert_false(persist_pop(s, UINT64_MAX, &it));
	free(s->persist);
	free(s);
}

static void test_persist_held_release(void **state)
{
	struct shard *s = calloc(1, sizeof(*s));

	(void)state;
	assert_non_null(s);
	sent_count = 0;
	for (uint64_t i = 0; i < 30; i++) {
		struct raft_msg m = vote(2 + i % 3, 100 + i);

		persist_hold(s, 5 + i / 10, &m);
	}
	persist_release(s, 4, send_cb);
	assert_int_equal(sent_count, 0);
	persist_release(s, 5, send_cb);
	assert_int_equal(sent_count, 10);
	persist_release(s, 5, send_cb);
	assert_int_equal(sent_count, 10); /* Each once. */
	persist_release(s, 7, send_cb);
	assert_int_equal(sent_count, 30);
	for (uint64_t i = 0; i < 30; i++) { /* Oldest first, as they were held. */
		assert_int_equal(sent[i].peer, 2 + i % 3);
		assert_int_equal(sent[i].msg.to, 2 + i % 3);
		assert_int_equal(sent[i].msg.term, 100 + i);
		assert_int_equal(sent[i].msg.type, RAFT_MSG_VOTE_RESP);
	}
	assert_int_equal(s->held.len, 0); /* Emptied once all are out. */
	/* Held again after a release: later batches only. */
	{
		struct raft_msg m = vote(4, 200);

		persist_hold(s, 9, &m);
		persist_release(s, 8, send_cb);
		assert_int_equal(sent_count, 30);
		persist_release(s, 9, send_cb);
		assert_int_equal(sent_count, 31);
		assert_int_equal(sent[30].msg.term, 200);
	}
	free(s->held.data);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_persist_pop_by_batch),
	    cmocka_unit_test(test_persist_held_release),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
