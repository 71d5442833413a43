/* Raft engine: running out of memory is an operating condition. Every
 * allocation of the engine is made to fail, one at a time and then at
 * random, while a group replicates, serves reads, changes its membership,
 * transfers leadership and loses its leader to a partition. The engine must
 * not crash (its own invariants are asserted throughout), must not break
 * safety (replicas agree on every applied entry), and once memory is back
 * the group must elect a leader and commit again on every member.
 *
 * This binary links its own build of the engine, with tests/unit/oom.h
 * forced into each source, so only the engine's allocations fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "engine/raft.h"
#include "tests/unit/oom.h"
#include "tests/unit/raft_fixture.h"

#define OOM_ROUNDS    16
#define OOM_NODES     4 /* Voters 1-3; 4 starts as a learner. */
#define OOM_SEEDS     200
#define OOM_ONE_IN    8 /* Random mode: one allocation in this many fails. */
#define OOM_SWEEP_MAX 4000

/* The leader of the highest term, or 0. At most one per term. */
static uint64_t leader_of(struct fixture *f)
{
	uint64_t leader = 0, term = 0;

	for (uint64_t id = 1; id <= f->n; id++) {
		struct raft *r = fx_raft(f, id);

		if (!raft_is_leader(r))
			continue;
		assert_true(leader == 0 || raft_term(r) != term); /* One leader per term. */
		if (raft_term(r) > term) {
			leader = id;
			term = raft_term(r);
		}
	}
	return leader;
}

static void setup(struct fixture *f)
{
	fx_setup(f, OOM_NODES);
	f->conf.members[OOM_NODES - 1].role = RAFT_MEMBER_LEARNER;
	fx_start(f);
	fx_elect(f, 1);
	fx_run(f, 2 * FX_HEARTBEAT_MS, 10);
}

/* What the group does while allocations fail. Every return code is allowed
 * (-ENOMEM among them); only crashes and safety matter here. */
static void workload(struct fixture *f)
{
	static const uint64_t v123[] = {1, 2, 3}, v1234[] = {1, 2, 3, 4}, l4[] = {4};
	struct raft_conf promote = fx_conf_of(v1234, 4, NULL, 0), back = fx_conf_of(v123, 3, l4, 1);

	for (uint32_t r = 0; r < OOM_ROUNDS; r++) {
		uint64_t leader = leader_of(f);

		if (leader != 0) {
			(void)fx_propose_many(f, leader, 2, 16 + r);
			(void)fx_read(f, leader, r + 1);
			if (r == 4)
				(void)fx_change(f, leader, &promote);
			if (r == 8)
				(void)fx_change(f, leader, &back);
			if (r == 10)
				(void)fx_transfer(f, leader, leader % 3 + 1);
			if (r == 13) {
				fx_isolate(f, leader);
				fx_run(f, 3 * FX_ELECTION_MS, 20);
				fx_heal(f);
			}
		}
		fx_run(f, 60, 10);
	}
}

/* With memory back: a leader, a new entry committed, and every member
 * applying the leader's log, entry for entry. */
static void check_recovers(struct fixture *f)
{
	uint64_t leader = 0, last;
	int rv = -1;

	fx_heal(f);
	for (int i = 0; i < 20 && leader == 0; i++) {
		fx_run(f, FX_ELECTION_MS, 10);
		leader = leader_of(f);
	}
	assert_int_not_equal(leader, 0);
	for (int i = 0; i < 20 && rv != 0; i++) {
		rv = fx_propose(f, leader, 8);
		fx_run(f, 2 * FX_HEARTBEAT_MS, 10);
		leader = leader_of(f);
		assert_int_not_equal(leader, 0);
	}
	assert_int_equal(rv, 0);
	fx_run(f, 5 * FX_HEARTBEAT_MS, 10);
	leader = leader_of(f);
	assert_int_not_equal(leader, 0);
	last = raft_last_index(fx_raft(f, leader));
	assert_true(last < FX_LOG_MAX);
	assert_int_equal(raft_commit_index(fx_raft(f, leader)), last);
	for (uint64_t id = 1; id <= f->n; id++) {
		struct fx_node *node = fx_node(f, id);

		assert_int_equal(node->applied_index, last);
		for (uint64_t i = raft_first_index(fx_raft(f, leader)); i <= last; i++)
			assert_int_equal(node->applied_terms[i],
					 raft_term_at(fx_raft(f, leader), i));
	}
}

/* Each allocation the workload makes, failed alone. */
static void test_each_allocation_fails_once(void **state)
{
	struct fixture f;
	uint64_t asked, step, refused = 0, runs = 0;

	(void)state;
	setup(&f);
	oom_count();
	workload(&f);
	asked = oom_asked();
	oom_off();
	fx_deinit(&f);
	assert_true(asked > 0);
	step = asked > OOM_SWEEP_MAX ? asked / OOM_SWEEP_MAX + 1 : 1;
	for (uint64_t n = 1; n <= asked; n += step) {
		setup(&f);
		oom_fail_nth(n);
		workload(&f);
		oom_off();
		refused += oom_refused();
		runs++;
		check_recovers(&f);
		fx_deinit(&f);
	}
	print_message("oom sweep: %llu allocations in the workload, %llu runs, %llu refused\n",
		      (unsigned long long)asked, (unsigned long long)runs,
		      (unsigned long long)refused);
	assert_true(refused > runs / 2); /* Most runs reached their failure. */
}

/* Many allocations failing at random, for many seeds. */
static void test_random_allocations_fail(void **state)
{
	uint64_t refused = 0;

	(void)state;
	for (uint64_t seed = 1; seed <= OOM_SEEDS; seed++) {
		struct fixture f;

		setup(&f);
		oom_fail_random(seed, OOM_ONE_IN);
		workload(&f);
		oom_off();
		refused += oom_refused();
		check_recovers(&f);
		fx_deinit(&f);
	}
	print_message("oom random: %d seeds, %llu allocations refused\n", OOM_SEEDS,
		      (unsigned long long)refused);
	assert_true(refused > OOM_SEEDS);
}

/* Three voters, 1 leads, idle until quiesced; each engine has given back
 * what only an active group needs (raft_trim, as the shard calls it). */
static void setup_quiesced(struct fixture *f)
{
	fx_setup(f, 3);
	f->config.quiesce = true;
	f->config.quiesce_after_ms = 5 * FX_HEARTBEAT_MS;
	fx_start(f);
	fx_elect(f, 1);
	(void)fx_propose(f, 1, 8);
	fx_run(f, 20 * FX_HEARTBEAT_MS, 10);
	for (uint64_t id = 1; id <= 3; id++) {
		assert_true(raft_is_quiesced(fx_raft(f, id)));
		raft_trim(fx_raft(f, id));
	}
}

/* A quiesced group costs its state and nothing more: while it sleeps its
 * engines allocate nothing, however long. */
static void test_quiesced_group_allocates_nothing(void **state)
{
	struct fixture f;

	(void)state;
	setup_quiesced(&f);
	oom_count();
	fx_run(&f, 10 * FX_ELECTION_MS, 100);
	assert_int_equal(oom_asked(), 0);
	for (uint64_t id = 1; id <= 3; id++)
		assert_true(raft_is_quiesced(fx_raft(&f, id)));
	fx_deinit(&f);
}

/* Waking takes back what quiescence gave (ready buffers, inflight
 * windows): each of those allocations failed alone still leaves a group
 * that commits once memory is back. */
static void test_wake_from_quiescence_survives_each_failed_allocation(void **state)
{
	struct fixture f;
	uint64_t asked;

	(void)state;
	setup_quiesced(&f);
	oom_count();
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_run(&f, 5 * FX_HEARTBEAT_MS, 10);
	asked = oom_asked();
	fx_deinit(&f);
	assert_true(asked > 0); /* Waking allocates: the buffers were given back. */
	for (uint64_t n = 1; n <= asked; n++) {
		setup_quiesced(&f);
		oom_fail_nth(n);
		(void)fx_propose(&f, 1, 8);
		fx_run(&f, 5 * FX_HEARTBEAT_MS, 10);
		oom_off();
		check_recovers(&f);
		fx_deinit(&f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_allocation_fails_once),
	    cmocka_unit_test(test_random_allocations_fail),
	    cmocka_unit_test(test_quiesced_group_allocates_nothing),
	    cmocka_unit_test(test_wake_from_quiescence_survives_each_failed_allocation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
