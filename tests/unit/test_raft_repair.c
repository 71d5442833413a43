/* Raft engine: repair of a member whose storage lost data (raft_boot.repair;
 * the argument is in engine/raft_repair.c, REPAIR). A repairing member grants no
 * vote and never campaigns; the leader stops counting it as soon as it hears
 * of the loss, and counts it again only once its log holds the leader's up
 * to the leader's last index of that moment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

#define ROUNDS_MAX 100

/* Three voters, 1 leads, five entries committed everywhere. Node 3 then
 * restarts in repair with nothing of its log left (its term and vote kept,
 * as storage keeps the hard state). */
static void setup_repairing(struct fixture *f)
{
	struct fx_node *three;

	fx_init(f, 3);
	fx_elect(f, 1);
	assert_int_equal(fx_propose_many(f, 1, 4, 8), 0);
	for (int i = 0; i < ROUNDS_MAX && f->net_count > 0; i++)
		fx_deliver_round(f);
	fx_advance(f, FX_HEARTBEAT_MS);
	for (int i = 0; i < ROUNDS_MAX && f->net_count > 0; i++)
		fx_deliver_round(f);
	assert_int_equal(raft_commit_index(fx_raft(f, 3)), 5);
	assert_int_equal(raft_progress_of(fx_raft(f, 1), 3)->match, 5);
	three = fx_node(f, 3);
	three->boot_count = 0;
	three->boot_hard = three->hard;
	three->boot_hard.commit = 0;
	three->boot_repair = true;
	fx_restart(f, 3);
	assert_true(raft_is_repairing(fx_raft(f, 3)));
	assert_int_equal(raft_last_index(fx_raft(f, 3)), 0);
}

/* Deliver until nothing is queued, bounded. */
static void deliver_quiet(struct fixture *f)
{
	for (int i = 0; i < ROUNDS_MAX && f->net_count > 0; i++)
		fx_deliver_round(f);
	assert_int_equal(f->net_count, 0);
}

/* Whether an APPEND from 1 to 3 that ends the repair, and that 3's log
 * can take, is queued. */
static bool repaired_append_queued(struct fixture *f)
{
	uint64_t last = raft_last_index(fx_raft(f, 3));

	for (uint32_t i = 0; i < f->net_count; i++) {
		const struct raft_msg *m = &f->net[i].m;

		if (m->type == RAFT_MSG_APPEND && m->from == 1 && m->to == 3 &&
		    (m->flags & RAFT_MSG_FLAG_REPAIRED) && m->index <= last)
			return true;
	}
	return false;
}

/* A repairing member refuses votes and pre-votes alike, and says why. */
static void test_repairing_member_grants_no_vote(void **state)
{
	struct fixture f;
	struct raft_msg vote;
	const struct raft_msg *resp;
	uint64_t term;

	(void)state;
	setup_repairing(&f);
	term = raft_term(fx_raft(&f, 3));
	fx_past_boot(&f);
	for (uint32_t type = RAFT_MSG_VOTE; type <= RAFT_MSG_PRE_VOTE; type += 2) {
		vote = fx_msg(type, 2, 3, term + 1);
		vote.index = 5;    /* A log more up to date than ours: */
		vote.log_term = 9; /* any other follower would grant. */
		fx_step(&f, 3, &vote);
		resp = fx_find(&f, type + 1, 3, 2);
		assert_non_null(resp);
		assert_true(resp->reject);
		assert_true(resp->flags & RAFT_MSG_FLAG_REPAIR);
		fx_drop(&f, type + 1, 3, 2);
	}
	assert_int_equal(fx_raft(&f, 3)->vote, RAFT_NONE);
	fx_deinit(&f);
}

/* A repairing member never campaigns, however long it hears no leader, and
 * a survivor that asks it for a vote learns that repair blocks the group. */
static void test_repairing_member_never_campaigns(void **state)
{
	struct fixture f;

	(void)state;
	setup_repairing(&f);
	fx_isolate(&f, 1);
	for (int i = 0; i < 10; i++) {
		fx_advance(&f, FX_ELECTION_MS);
		for (int k = 0; k < ROUNDS_MAX && f.net_count > 0; k++)
			fx_deliver_round(&f);
		assert_int_not_equal(raft_role(fx_raft(&f, 3)), RAFT_ROLE_CANDIDATE);
		assert_int_not_equal(raft_role(fx_raft(&f, 3)), RAFT_ROLE_PRE_CANDIDATE);
		assert_int_not_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_LEADER);
	}
	assert_int_equal(fx_raft(&f, 3)->elections_started, 0);
	assert_true(raft_is_blocked_by_repair(fx_raft(&f, 2)));
	fx_deinit(&f);
}

/* The leader resets its match for a member that reports a loss, does not
 * count it while it repairs (an entry acknowledged only by the leader and
 * the repairing member stays uncommitted), and counts it again once the
 * append flagged as reaching the mark matched. */
static void test_leader_counts_repairing_member_only_after_the_mark(void **state)
{
	struct fixture f;
	const struct raft_progress *pr;

	(void)state;
	setup_repairing(&f);
	fx_cut(&f, 1, 2);
	/* A heartbeat, answered flagged; an append, answered with 3's repair id. */
	fx_advance(&f, FX_HEARTBEAT_MS);
	for (int i = 0; i < 4; i++)
		fx_deliver_round(&f);
	pr = raft_progress_of(fx_raft(&f, 1), 3);
	assert_true(pr->repairing);
	assert_int_equal(pr->repair_mark, 5);
	assert_true(pr->match < 5); /* Reset: the old match claimed what 3 lost. */
	/* Replicate everything up to the append that would end the repair. */
	assert_int_equal(fx_propose(&f, 1, 8), 0); /* Entry 6: only 1 and 3 can take it. */
	for (int i = 0; i < ROUNDS_MAX && f.net_count > 0 && !repaired_append_queued(&f); i++)
		fx_deliver_round(&f);
	assert_true(repaired_append_queued(&f));
	fx_drop(&f, RAFT_MSG_APPEND, 1, 3);
	assert_true(raft_is_repairing(fx_raft(&f, 3)));
	assert_true(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 5); /* 3 is not counted. */
	assert_true(raft_commit_index(fx_raft(&f, 3)) <= 5);    /* Only what matched. */
	/* The next heartbeat round brings the flagged append again. */
	for (int i = 0; i < 20 && raft_is_repairing(fx_raft(&f, 3)); i++) {
		fx_advance(&f, FX_HEARTBEAT_MS);
		deliver_quiet(&f);
	}
	assert_false(raft_is_repairing(fx_raft(&f, 3)));
	assert_false(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 6);
	assert_int_equal(fx_transfer(&f, 1, 2), 0);             /* 2 is whole: it may lead. */
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 6); /* Counted again. */
	assert_int_not_equal(fx_raft(&f, 3)->vote, RAFT_NONE);  /* No second vote this term. */
	fx_deinit(&f);
}

/* A member that loses data again, while its leader still counts it as
 * repairing from an earlier loss (the answer that ended that repair was
 * lost), is known by its new repair id: the leader forgets the stale match
 * and repairs it again, instead of probing forever past its log. */
static void test_second_loss_restarts_the_repair(void **state)
{
	struct fixture f;
	struct fx_node *three;
	uint64_t first_id;

	(void)state;
	setup_repairing(&f);
	fx_advance(&f, FX_HEARTBEAT_MS);
	for (int i = 0; i < ROUNDS_MAX && !repaired_append_queued(&f); i++)
		fx_deliver_round(&f);
	first_id = raft_progress_of(fx_raft(&f, 1), 3)->repair_id;
	assert_int_not_equal(first_id, 0);
	fx_deliver_matching(&f, RAFT_MSG_APPEND, 1, 3); /* 3 repairs; its answers are lost. */
	assert_false(raft_is_repairing(fx_raft(&f, 3)));
	fx_drop(&f, RAFT_MSG_APPEND_RESP, 3, 1);
	assert_true(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_int_equal(fx_propose_many(&f, 1, 3, 8), 0); /* 3 takes entries 6..8, */
	deliver_quiet(&f);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 8);
	three = fx_node(&f, 3); /* then loses them all again. */
	three->boot_count = 0;
	three->boot_hard = three->hard;
	three->boot_hard.commit = 0;
	fx_restart(&f, 3);
	for (int i = 0; i < 20 && raft_is_repairing(fx_raft(&f, 3)); i++) {
		fx_advance(&f, FX_HEARTBEAT_MS);
		deliver_quiet(&f);
	}
	assert_false(raft_is_repairing(fx_raft(&f, 3)));
	assert_int_not_equal(raft_progress_of(fx_raft(&f, 1), 3)->repair_id, first_id);
	assert_false(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 8);
	fx_deinit(&f);
}

/* An answer of the member's life before the loss (delayed or duplicated on
 * the way) that reaches the leader after it started the repair claims
 * entries that life lost; its own answers carry no repair id, so the leader
 * takes it. The life being repaired rejects the appends past its log: the
 * leader forgets the stale match and probes again, and the repair ends,
 * instead of sending the same append forever. */
static void test_stale_answer_of_an_earlier_life_does_not_stall_the_repair(void **state)
{
	struct fixture f;
	struct raft_msg stale;
	const struct raft_progress *pr;

	(void)state;
	setup_repairing(&f);
	fx_cut(&f, 1, 2);
	fx_advance(&f, FX_HEARTBEAT_MS);
	pr = raft_progress_of(fx_raft(&f, 1), 3);
	for (int i = 0; i < ROUNDS_MAX && f.net_count > 0 && !pr->repairing; i++)
		fx_deliver_round(&f);
	assert_true(pr->repairing);
	assert_int_equal(pr->match, 0);
	fx_drop(&f, RAFT_MSG_APPEND, 1, 3); /* The first probe is lost, */
	stale = fx_msg(RAFT_MSG_APPEND_RESP, 3, 1, raft_term(fx_raft(&f, 1)));
	stale.index = 5; /* and the old life's answer arrives late. */
	fx_step(&f, 1, &stale);
	pr = raft_progress_of(fx_raft(&f, 1), 3);
	assert_int_equal(pr->match, 5); /* Taken: nothing tells it from a current one. */
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 5);
	for (int i = 0; i < 20 && raft_is_repairing(fx_raft(&f, 3)); i++) {
		fx_advance(&f, FX_HEARTBEAT_MS);
		deliver_quiet(&f);
	}
	assert_false(raft_is_repairing(fx_raft(&f, 3)));
	assert_false(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 5);
	assert_int_equal(raft_progress_of(fx_raft(&f, 1), 3)->match, 5);
	fx_deinit(&f);
}

/* A repairing member takes no commit index from heartbeats: their commit
 * rests on a match the leader may not yet know to be stale. */
static void test_repairing_member_ignores_heartbeat_commit(void **state)
{
	struct fixture f;
	struct raft_msg hb;

	(void)state;
	setup_repairing(&f);
	fx_past_boot(&f);
	hb = fx_msg(RAFT_MSG_HEARTBEAT, 1, 3, raft_term(fx_raft(&f, 1)));
	hb.commit = 5;
	fx_step(&f, 3, &hb);
	assert_int_equal(raft_commit_index(fx_raft(&f, 3)), 0);
	assert_true(fx_find(&f, RAFT_MSG_HEARTBEAT_RESP, 3, 1)->flags & RAFT_MSG_FLAG_REPAIR);
	fx_deinit(&f);
}

/* With two of three members repairing, the leader refuses proposals with
 * a clear error instead of taking entries that could never commit. */
static void test_majority_repairing_refuses_proposals(void **state)
{
	struct fixture f;
	struct fx_node *two;

	(void)state;
	setup_repairing(&f);
	two = fx_node(&f, 2);
	two->boot_count = 0;
	two->boot_hard = two->hard;
	two->boot_hard.commit = 0;
	two->boot_repair = true;
	fx_restart(&f, 2);
	fx_advance(&f, FX_HEARTBEAT_MS);
	for (int i = 0; i < 4; i++)
		fx_deliver_round(&f);
	assert_true(raft_progress_of(fx_raft(&f, 1), 2)->repairing);
	assert_true(raft_progress_of(fx_raft(&f, 1), 3)->repairing);
	assert_true(raft_is_blocked_by_repair(fx_raft(&f, 1)));
	assert_int_equal(fx_propose(&f, 1, 8), RAFT_ERR_REPAIRING);
	assert_int_equal(fx_transfer(&f, 1, 3), RAFT_ERR_REPAIRING); /* It would not campaign. */
	/* Both repair from the leader; then proposals commit again. */
	for (int i = 0;
	     i < 20 && (raft_is_repairing(fx_raft(&f, 2)) || raft_is_repairing(fx_raft(&f, 3)));
	     i++) {
		fx_advance(&f, FX_HEARTBEAT_MS);
		deliver_quiet(&f);
	}
	assert_false(raft_is_blocked_by_repair(fx_raft(&f, 1)));
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	deliver_quiet(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 6);
	fx_deinit(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_repairing_member_grants_no_vote),
	    cmocka_unit_test(test_repairing_member_never_campaigns),
	    cmocka_unit_test(test_leader_counts_repairing_member_only_after_the_mark),
	    cmocka_unit_test(test_second_loss_restarts_the_repair),
	    cmocka_unit_test(test_stale_answer_of_an_earlier_life_does_not_stall_the_repair),
	    cmocka_unit_test(test_repairing_member_ignores_heartbeat_commit),
	    cmocka_unit_test(test_majority_repairing_refuses_proposals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
