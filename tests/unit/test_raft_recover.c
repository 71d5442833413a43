/* Raft engine: forced recovery of a group that lost a majority of its
 * voters (raft_recover): the survivor becomes the single voter from its own
 * log, reports what may have been lost, and the group grows again. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

/* Three voters, 1 leads, two entries committed everywhere. */
static void setup_three(struct fixture *f)
{
	fx_init(f, 3);
	fx_elect(f, 1);
	assert_int_equal(fx_propose(f, 1, 8), 0);
	assert_int_equal(fx_propose(f, 1, 8), 0);
	fx_run(f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_commit_index(fx_raft(f, 2)), raft_last_index(fx_raft(f, 1)));
}

/* Nodes 2 and 3 die for good: they receive nothing and never tick. */
static void lose_majority(struct fixture *f)
{
	fx_node(f, 2)->crashed = true;
	fx_node(f, 3)->crashed = true;
}

static int recover(struct fixture *f, uint64_t id, struct raft_recover_report *report)
{
	int rv = raft_recover(fx_raft(f, id), report, f->now);

	fx_collect(f, id);
	return rv;
}

/* The survivor leads alone in a new term and commits its whole log, the
 * entries no majority acknowledged included; the report bounds the loss. */
static void test_recover_commits_survivor_log_as_single_voter(void **state)
{
	struct fixture f;
	struct raft_recover_report rep;
	struct raft *r;
	uint64_t commit, last, term;

	(void)state;
	setup_three(&f);
	lose_majority(&f);
	r = fx_raft(&f, 1);
	assert_int_equal(fx_propose(&f, 1, 8), 0); /* Never acknowledged by anyone. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_run(&f, 5 * FX_ELECTION_MS, 50); /* CheckQuorum: the leader steps down. */
	assert_false(raft_is_leader(r));
	commit = raft_commit_index(r);
	last = raft_last_index(r);
	term = raft_term(r);
	assert_true(commit < last);

	assert_int_equal(recover(&f, 1, &rep), 0);
	assert_int_equal(rep.commit_before, commit);
	assert_int_equal(rep.last_before, last);
	assert_int_equal(rep.term_before, term);
	assert_int_equal(rep.conf_index, last + 1);
	assert_int_equal(rep.dropped_count, 2);
	assert_true((rep.dropped[0] == 2 && rep.dropped[1] == 3) ||
		    (rep.dropped[0] == 3 && rep.dropped[1] == 2));
	assert_true(raft_is_leader(r));
	assert_int_equal(rep.term, raft_term(r));
	assert_true(rep.term > term + 1); /* A new term for the entry, then its election. */
	assert_int_equal(raft_conf(r)->members_count, 1);
	assert_int_equal(raft_conf_role(raft_conf(r), 1), RAFT_MEMBER_VOTER);
	assert_int_equal(raft_commit_index(r), raft_last_index(r)); /* Persisted: all commits. */
	assert_int_equal(fx_node(&f, 1)->applied_index, raft_last_index(r));
	/* New writes commit alone, and nothing goes to the lost members. */
	fx_run(&f, FX_ELECTION_MS, 50);
	assert_int_equal(fx_count(&f, FX_ANY, 1, 2), 0);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_int_equal(raft_commit_index(r), raft_last_index(r));
	assert_true(raft_is_leader(r));
	fx_deinit(&f);
}

/* Nothing commits before the recovery's entries are durable: the leader
 * counts itself only once its own write completed. */
static void test_recover_commits_only_once_durable(void **state)
{
	struct fixture f;
	struct raft_recover_report rep;
	uint64_t commit;

	(void)state;
	setup_three(&f);
	lose_majority(&f);
	fx_hold(&f, 1, true);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	commit = raft_commit_index(fx_raft(&f, 1));
	assert_int_equal(recover(&f, 1, &rep), 0);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit);
	fx_persist(&f, 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* A follower that holds entries its leader never got committed can be the
 * survivor: they become committed (the report says from where). */
static void test_recover_on_follower_keeps_its_uncommitted_entries(void **state)
{
	struct fixture f;
	struct raft_recover_report rep;
	uint64_t last;

	(void)state;
	setup_three(&f);
	fx_cut(&f, 1, 2);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_matching(&f, RAFT_MSG_APPEND, 1, 3); /* 3 holds it; no answer reaches 1. */
	fx_drop(&f, FX_ANY, 3, 1);
	last = raft_last_index(fx_raft(&f, 3));
	assert_true(raft_commit_index(fx_raft(&f, 3)) < last);
	fx_node(&f, 1)->crashed = true;
	fx_node(&f, 2)->crashed = true;
	assert_int_equal(recover(&f, 3, &rep), 0);
	assert_int_equal(rep.last_before, last);
	assert_true(rep.commit_before < last);
	assert_true(raft_is_leader(fx_raft(&f, 3)));
	assert_true(raft_commit_index(fx_raft(&f, 3)) > last);
	assert_int_equal(fx_node(&f, 3)->applied_index, raft_last_index(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* A witness holds no payloads: it cannot carry the group, and the refusal
 * changes nothing. */
static void test_recover_refuses_a_witness(void **state)
{
	struct fixture f;
	struct raft_recover_report rep;
	uint64_t term;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_WITNESS;
	fx_start(&f);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 3));
	assert_int_equal(recover(&f, 3, &rep), RAFT_ERR_CONF_INVALID);
	assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	assert_int_equal(raft_conf(fx_raft(&f, 3))->members_count, 3);
	fx_deinit(&f);
}

/* After the recovery the group grows by the usual changes: a new, empty
 * node joins as a learner, catches up and is promoted. */
static void test_recovered_group_grows_onto_an_empty_node(void **state)
{
	static const uint64_t v1[] = {1}, l2[] = {2}, v12[] = {1, 2};
	struct fixture f;
	struct raft_recover_report rep;
	struct raft_conf learner = fx_conf_of(v1, 1, l2, 1);
	struct raft_conf voters = fx_conf_of(v12, 2, NULL, 0);
	struct fx_node *n2;

	(void)state;
	setup_three(&f);
	lose_majority(&f);
	assert_int_equal(recover(&f, 1, &rep), 0);
	/* Node 2 comes back wiped: no log, no state, waiting to be told. */
	n2 = fx_node(&f, 2);
	n2->boot_count = 0;
	n2->boot_hard = (struct raft_hard_state){0};
	n2->boot_conf_set = true;
	n2->boot_conf = (struct raft_conf){0};
	fx_restart(&f, 2);
	assert_int_equal(fx_change(&f, 1, &learner), 0);
	fx_run(&f, 4 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(fx_change(&f, 1, &voters), 0);
	fx_run(&f, 4 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_conf_role(raft_conf(fx_raft(&f, 1)), 2), RAFT_MEMBER_VOTER);
	assert_false(raft_conf(fx_raft(&f, 1))->joint);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_commit_index(fx_raft(&f, 2)), raft_last_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* The recovery is in the log and the hard state like any change: a replica
 * restarted from what it persisted is still the single voter and elects
 * itself. */
static void test_recovery_survives_a_restart(void **state)
{
	struct fixture f;
	struct raft_recover_report rep;
	struct raft_entry entries[FX_LOG_MAX];
	struct raft_boot boot = {0};
	struct raft_config config;
	struct raft *r, again;
	uint64_t last;

	(void)state;
	setup_three(&f);
	lose_majority(&f);
	assert_int_equal(recover(&f, 1, &rep), 0);
	r = fx_raft(&f, 1);
	last = raft_last_index(r);
	assert_true(last < FX_LOG_MAX);
	for (uint64_t i = 1; i <= last; i++)
		entries[i - 1] = *raft_entry_at(r, i);
	boot.snapshot.conf = f.conf; /* The bootstrap membership, three voters. */
	boot.entries = entries;
	boot.entries_count = (uint32_t)last;
	boot.hard = fx_node(&f, 1)->hard;
	config = r->config;
	assert_int_equal(raft_init(&again, &config, &boot, f.now), 0);
	assert_int_equal(raft_conf(&again)->members_count, 1);
	assert_int_equal(raft_term(&again), rep.term);
	raft_tick(&again, f.now + 3 * FX_ELECTION_MS);
	assert_true(raft_is_leader(&again));
	raft_deinit(&again);
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_recover_commits_survivor_log_as_single_voter),
	    cmocka_unit_test(test_recover_commits_only_once_durable),
	    cmocka_unit_test(test_recover_on_follower_keeps_its_uncommitted_entries),
	    cmocka_unit_test(test_recover_refuses_a_witness),
	    cmocka_unit_test(test_recovered_group_grows_onto_an_empty_node),
	    cmocka_unit_test(test_recovery_survives_a_restart),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
