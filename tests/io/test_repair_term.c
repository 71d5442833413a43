/* A group that cannot prove its hard state never votes again in a term it
 * may have voted in: its shard's WAL lost the segment holding its last hard
 * state (a vote in a term above any leader's), and the shard starts it
 * repairing past the WAL's term bound, with no vote, kept across restarts;
 * so does a group whose every record was in the lost segment, when it is
 * created again. The real shard and WAL, in a temporary directory; the shard
 * on the simulated loop (io/loop_sim.h), driven from this thread, so that a
 * test knows when everything it appended is durable. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop_sim.h"
#include "io/wal.h"
#include "shard/shard.h"
#include "tests/io/io_test.h"

#define GROUP_VOTED 7 /* Voted in term VOTE_TERM, in the segment lost. */
#define GROUP_GONE  9 /* Every record of it in the segment lost. */
#define GROUP_FILL  8
#define VOTE_TERM   5000
#define SEGMENT     (128u << 10)
#define NODE        1
#define MS          1000000ull

struct fx {
	struct loop loop;
	struct loop_sim *sim;
	struct shard *shard; /* Started, not yet stopped. */
	char dir[256];
	char wal_dir[300];
	uint8_t scratch[200];
};

static void fx_append(struct fx *fx, struct wal *wal, uint64_t group, uint64_t term, uint64_t vote)
{
	const struct wal_group *g = wal_group_find(wal, group);
	uint64_t next = g ? g->last_index + 1 : 1;
	struct wal_entry entry = {.term = term, .data = fx->scratch};
	struct wal_hard hard = {.term = term, .vote = vote, .commit = 0};

	entry.size = io_test_payload(group, next, term, sizeof(fx->scratch), fx->scratch);
	assert_int_equal(wal_append_entries(wal, group, next, &entry, 1), 0);
	assert_int_equal(wal_append_hard(wal, group, &hard), 0);
}

/* Fill the open segment with another group's records until the WAL is in
 * segment count (bounded). */
static void fx_fill_to(struct fx *fx, struct wal *wal, uint32_t count)
{
	for (int i = 0; i < 20000 && wal->segments_count < count; i++) {
		fx_append(fx, wal, GROUP_FILL, 1, 1);
		if (i % 16 == 0)
			assert_int_equal(wal_sync(wal), 0);
	}
	assert_int_equal(wal_sync(wal), 0);
	assert_int_equal(wal->segments_count, count);
}

/* The WAL of a shard whose group GROUP_VOTED voted for node 2 in term
 * VOTE_TERM (an election that did not win: its leader is of term 1) in
 * segment 2, and whose group GROUP_GONE lived only there; segment 2 is then
 * deleted. */
static void fx_write_and_lose(struct fx *fx)
{
	struct wal_config config;
	struct wal wal;
	char name[SEGMENT_NAME_SIZE], path[600];
	uint64_t lost;

	wal_config_default(&config);
	config.segment_size = SEGMENT;
	config.batch_size_max = 20u << 10;
	assert_int_equal(wal_init(&wal, &fx->loop, fx->wal_dir, &config), 0);
	fx_append(fx, &wal, GROUP_VOTED, 1, 1);
	fx_fill_to(fx, &wal, 2);
	fx_append(fx, &wal, GROUP_VOTED, VOTE_TERM, 2);
	fx_append(fx, &wal, GROUP_GONE, 3, 3);
	fx_fill_to(fx, &wal, 3);
	lost = wal_segment_at(&wal, 1)->seq;
	assert_int_equal(wal_group_find(&wal, GROUP_VOTED)->hard.term, VOTE_TERM);
	assert_int_equal(wal_group_find(&wal, GROUP_VOTED)->hard_seq, lost);
	wal_deinit(&wal);
	segment_name(name, lost);
	snprintf(path, sizeof(path), "%s/%s", fx->wal_dir, name);
	assert_int_equal(unlink(path), 0);
}

static void fx_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		     uint64_t *results)
{
	(void)ctx;
	(void)group;
	for (uint32_t i = 0; i < count; i++)
		results[i] = entries[i].index;
}

static struct shard *fx_shard_start(struct fx *fx)
{
	struct shard_config sc = {
	    .node_id = NODE,
	    .log = {.node_id = NODE},
	    .cluster_id = 7,
	    .shard_index = 0,
	    .shards_count = 1,
	    .tick_ms = 10,
	    .election_timeout_ms = 300,
	    .heartbeat_interval_ms = 50,
	    .entry_size_max = 256,
	    .inbox_max = 64,
	    .wal_segment_size = SEGMENT,
	    .wal_batch_size = 16u << 10,
	    .sm = {.apply = fx_apply},
	    .sim = fx->sim,
	};
	struct shard *s = NULL;
	char why[512] = "";
	int rv;

	snprintf(sc.wal_dir, sizeof(sc.wal_dir), "%s", fx->wal_dir);
	rv = shard_start(&s, &sc, why, sizeof(why));
	if (rv != 0)
		fprintf(stderr, "shard_start: %s\n", why);
	assert_int_equal(rv, 0);
	fx->shard = s;
	return s;
}

/* Turn the shard (100 virtual seconds at most) until everything it wrote
 * is durable, group's last hard state among it. */
static struct shard_group_state fx_settle(struct fx *fx, struct shard *s, uint64_t group)
{
	struct shard_group_state st = {0};

	for (int i = 0; i < 10000; i++) {
		shard_sim_turn(s);
		if (shard_group_state(s, group, &st) && st.vote_durable &&
		    loop_sim_unsynced(fx->sim, NODE) == 0)
			return st;
		loop_sim_step(fx->sim, loop_sim_now_ns(fx->sim) + 10 * MS);
	}
	fail_msg("group %llu: the shard's WAL never became durable", (unsigned long long)group);
	return st;
}

/* Stop the shard: all it wrote is durable (fx_settle), so a crash loses
 * nothing. */
static void fx_shard_stop(struct fx *fx, struct shard *s)
{
	assert_int_equal(loop_sim_unsynced(fx->sim, NODE), 0);
	loop_sim_crash(fx->sim, NODE);
	shard_crash(s);
	fx->shard = NULL;
	loop_sim_free(fx->sim);
	assert_int_equal(loop_sim_new(&fx->sim, 2, MS), 0);
}

static void fx_done_cb(void *arg, int rv, uint64_t result, uint64_t leader)
{
	int *done = arg;

	(void)result;
	(void)leader;
	*done = rv == 0 ? 1 : rv;
}

/* Ask the shard to create group with members 1, 2, 3 (1 virtual second at
 * most). */
static int fx_create(struct fx *fx, struct shard *s, uint64_t group)
{
	struct shard_req *req = calloc(1, sizeof(*req) + 3 * sizeof(uint64_t));
	uint64_t members[3] = {1, 2, 3};
	int done = 0;

	assert_non_null(req);
	req->type = SHARD_REQ_GROUP_CREATE;
	req->group = group;
	req->cb = fx_done_cb;
	req->arg = &done;
	req->fd = -1;
	req->size = 3;
	memcpy(req->data, members, sizeof(members));
	assert_int_equal(shard_submit(s, req), 0);
	for (int i = 0; i < 1000 && done == 0; i++) {
		shard_sim_turn(s);
		loop_sim_step(fx->sim, loop_sim_now_ns(fx->sim) + MS);
	}
	return done == 1 ? 0 : done;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	assert_int_equal(loop_sim_new(&fx->sim, 1, MS), 0);
	io_test_mkdtemp(fx->dir, "test_repair_term");
	snprintf(fx->wal_dir, sizeof(fx->wal_dir), "%s/shard-0", fx->dir);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->shard != NULL) { /* A failed test left it running. */
		loop_sim_crash(fx->sim, NODE);
		shard_crash(fx->shard);
	}
	loop_deinit(&fx->loop);
	loop_sim_free(fx->sim);
	io_test_rmtree(fx->dir);
	free(fx);
	return 0;
}

/* The WAL's view of group after the shard closed: its last hard state. */
static struct wal_hard fx_wal_hard(struct fx *fx, uint64_t group, uint64_t *bound)
{
	struct wal_config config;
	struct wal wal;
	struct wal_hard hard;

	wal_config_default(&config);
	config.read_only = true;
	config.salvage = true;
	assert_int_equal(wal_init(&wal, NULL, fx->wal_dir, &config), 0);
	assert_non_null(wal_group_find(&wal, group));
	hard = wal_group_find(&wal, group)->hard;
	assert_true(wal_term_bound(&wal, bound));
	wal_deinit(&wal);
	return hard;
}

static void test_group_that_lost_its_vote_starts_past_it_with_none(void **state)
{
	struct fx *fx = *state;
	struct shard_group_state st;
	struct wal_hard hard;
	uint64_t bound = 0, term;
	struct shard *s;

	fx_write_and_lose(fx);
	s = fx_shard_start(fx);
	st = fx_settle(fx, s, GROUP_VOTED);
	/* Its vote of VOTE_TERM is lost: a term where it never voted, none yet. */
	assert_true(st.term > VOTE_TERM);
	assert_int_equal(st.vote_term, st.term);
	assert_int_equal(st.vote, 0);
	term = st.term;
	fx_shard_stop(fx, s);
	/* So the WAL says, with the bound past it (before it was durable). */
	hard = fx_wal_hard(fx, GROUP_VOTED, &bound);
	assert_int_equal(hard.term, term);
	assert_int_equal(hard.vote, 0);
	assert_true(hard.repairing);
	assert_true(bound >= term);
	/* A restart resumes the repair there: no vote, the same term. */
	s = fx_shard_start(fx);
	st = fx_settle(fx, s, GROUP_VOTED);
	assert_int_equal(st.term, term);
	assert_int_equal(st.vote, 0);
	fx_shard_stop(fx, s);
}

static void test_group_lost_whole_is_created_past_the_bound(void **state)
{
	struct fx *fx = *state;
	struct shard_group_state st;
	struct wal_hard hard;
	uint64_t bound = 0;
	struct shard *s;

	fx_write_and_lose(fx);
	s = fx_shard_start(fx);
	assert_int_equal(fx_create(fx, s, GROUP_GONE), 0);
	st = fx_settle(fx, s, GROUP_GONE);
	assert_true(st.term > VOTE_TERM);
	assert_int_equal(st.vote, 0);
	fx_shard_stop(fx, s);
	hard = fx_wal_hard(fx, GROUP_GONE, &bound);
	assert_int_equal(hard.term, st.term);
	assert_int_equal(hard.vote, 0);
	assert_true(hard.repairing);
	assert_true(bound >= st.term);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_group_that_lost_its_vote_starts_past_it_with_none,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_group_lost_whole_is_created_past_the_bound,
					    fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
