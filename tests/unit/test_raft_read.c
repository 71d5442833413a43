/* Raft engine: linearizable reads (thesis §6.4 ReadIndex, §6.4.1 leases) and
 * leadership transfer (thesis §3.10, TimeoutNow). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

/* A leader of n nodes whose log is committed everywhere and heartbeats acked. */
static void setup_leader(struct fixture *f, uint32_t n, bool lease)
{
	fx_setup(f, n);
	f->config.lease_read = lease;
	fx_start(f);
	fx_elect(f, 1);
	fx_run(f, 2 * FX_HEARTBEAT_MS, 10);
	assert_true(raft_is_leader(fx_raft(f, 1)));
}

/* The send time of the newest heartbeat, which every follower has acked. */
static uint64_t last_heartbeat_ms(struct fixture *f)
{
	struct raft *r = fx_raft(f, 1);

	return r->hb_sent_ms[r->hb_seq % 16];
}

/* §6.4: the leader answers a read only after a heartbeat round confirms it still leads. */
static void test_read_index_waits_for_heartbeat_quorum(void **state)
{
	struct fixture f;
	uint64_t commit;

	(void)state;
	setup_leader(&f, 3, false);
	commit = raft_commit_index(fx_raft(&f, 1));
	assert_int_equal(fx_read(&f, 1, 42), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), -1);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY), 2);
	fx_deliver(&f, RAFT_MSG_HEARTBEAT, 1, 2);
	fx_deliver(&f, RAFT_MSG_HEARTBEAT, 1, 3);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), -1);
	/* A proposal after the read does not move its index. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver(&f, RAFT_MSG_HEARTBEAT_RESP, 2, 1);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), (int64_t)commit);
	fx_deinit(&f);
}

/* §6.4: a leader that cannot confirm its leadership never answers; it refuses once deposed. */
static void test_read_index_refused_when_leadership_is_lost(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 3, false);
	fx_isolate(&f, 1);
	assert_int_equal(fx_read(&f, 1, 42), 0);
	fx_run(&f, FX_ELECTION_MS / 2, 10);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), -1);
	fx_run(&f, 2 * FX_ELECTION_MS, 10); /* CheckQuorum steps it down. */
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), 0);
	fx_deinit(&f);
}

/* §6.4 step 1: a new leader answers reads only once its no-op has committed. */
static void test_new_leader_reads_wait_for_its_noop(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 3);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 0);
	assert_int_equal(fx_read(&f, 1, 42), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 1);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), 1);
	fx_deinit(&f);
}

/* §6.4: a follower forwards a read to the leader and gets the read index back. */
static void test_follower_read_is_answered_by_the_leader(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 3, false);
	assert_int_equal(fx_read(&f, 2, 42), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_READ_INDEX, 2, 1), 1);
	fx_deliver_all(&f);
	assert_int_equal(fx_read_index_of(fx_node(&f, 2), 42),
			 (int64_t)raft_commit_index(fx_raft(&f, 1)));
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), -1);
	fx_deinit(&f);
}

/* Reads with no leader to ask fail at once; a full queue pushes back. */
static void test_read_index_reports_errors(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.config.reads_max = 2;
	fx_start(&f);
	assert_int_equal(fx_read(&f, 2, 1), RAFT_ERR_NOT_LEADER);
	fx_elect(&f, 1);
	fx_isolate(&f, 1);
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_int_equal(fx_read(&f, 1, 2), 0);
	assert_int_equal(fx_read(&f, 1, 3), -EAGAIN);
	fx_deinit(&f);
}

/* §6.4.1: with a lease, the leader answers a read at once, without a heartbeat round. */
static void test_lease_read_needs_no_heartbeat_round(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 3, true);
	assert_int_equal(fx_read(&f, 1, 42), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42),
			 (int64_t)raft_commit_index(fx_raft(&f, 1)));
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY), 0);
	fx_deinit(&f);
}

/* §6.4.1: the lease lasts election_timeout - clock_drift_max from the acked heartbeat's send. */
static void test_lease_ends_at_election_timeout_minus_drift(void **state)
{
	struct fixture f;
	uint64_t sent;

	(void)state;
	setup_leader(&f, 3, true);
	sent = last_heartbeat_ms(&f);
	f.now = sent + FX_ELECTION_MS - FX_DRIFT_MS - 1;
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_true(fx_read_index_of(fx_node(&f, 1), 1) > 0);
	f.now = sent + FX_ELECTION_MS - FX_DRIFT_MS;
	assert_int_equal(fx_read(&f, 1, 2), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 2), -1);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY), 2);
	fx_deinit(&f);
}

/* With a promise shorter than the election timeout (config.promise_ms), the
 * lease lasts promise - clock_drift_max from the acked heartbeat's send; a
 * promise above the election timeout is refused. */
static void test_lease_ends_at_promise_minus_drift(void **state)
{
	struct fixture f;
	struct raft bad;
	uint64_t sent;

	(void)state;
	fx_setup(&f, 3);
	f.config.lease_read = true;
	f.config.promise_ms = 3 * FX_HEARTBEAT_MS;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	sent = last_heartbeat_ms(&f);
	f.now = sent + 3 * FX_HEARTBEAT_MS - FX_DRIFT_MS - 1;
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_true(fx_read_index_of(fx_node(&f, 1), 1) > 0);
	f.now = sent + 3 * FX_HEARTBEAT_MS - FX_DRIFT_MS;
	assert_int_equal(fx_read(&f, 1, 2), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 2), -1);
	f.config.promise_ms = FX_ELECTION_MS + 1;
	assert_int_equal(raft_init(&bad, &f.config, &(struct raft_boot){0}, f.now), -EINVAL);
	fx_deinit(&f);
}

/* §6.4.1: the lease rests on CheckQuorum's stickiness; without it there is no lease. */
static void test_no_lease_without_check_quorum(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.config.lease_read = true;
	f.config.check_quorum = false;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(fx_read(&f, 1, 42), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 42), -1);
	fx_deinit(&f);
}

/* Thesis §3.10/§6.4.1: once a transfer starts, the target may be elected at
 * once, so the lease is void for the rest of the term. */
static void test_no_lease_read_after_transfer_starts(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 3, true);
	assert_int_equal(fx_transfer(&f, 1, 2), 0);
	fx_drop(&f, RAFT_MSG_TIMEOUT_NOW, 1, 2);
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 1), -1);
	/* Still none after the transfer was given up. */
	fx_run(&f, FX_ELECTION_MS + 10, 10);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(fx_raft(&f, 1)->transfer_target, RAFT_NONE);
	assert_int_equal(fx_read(&f, 1, 2), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 2), -1);
	fx_deinit(&f);
}

/* peer_down safety (raft.c): a leader that learns a voter died drops its lease at once. */
static void test_no_lease_read_after_peer_down_of_voter(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 3, true);
	fx_node(&f, 3)->crashed = true;
	fx_peer_down(&f, 1, 3);
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 1), -1);
	/* ReadIndex still works: 2 confirms the leadership. */
	fx_deliver_all(&f);
	assert_true(fx_read_index_of(fx_node(&f, 1), 1) > 0);
	fx_deinit(&f);
}

/* peer_down: late acks of heartbeats sent before the peer went down do not bring the lease back. */
static void test_lease_not_restored_by_acks_sent_before_peer_down(void **state)
{
	struct fixture f;

	(void)state;
	setup_leader(&f, 5, true);
	f.now = raft_next_deadline(fx_raft(&f, 1));
	fx_tick(&f, 1); /* A heartbeat round, answered below. */
	fx_deliver_matching(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY);
	fx_node(&f, 5)->crashed = true;
	fx_peer_down(&f, 1, 5);
	fx_deliver_matching(&f, RAFT_MSG_HEARTBEAT_RESP, FX_ANY, 1);
	assert_int_equal(fx_read(&f, 1, 1), 0);
	assert_int_equal(fx_read_index_of(fx_node(&f, 1), 1), -1);
	/* A heartbeat round sent after the event may serve reads again. */
	fx_deliver_all(&f);
	assert_true(fx_read_index_of(fx_node(&f, 1), 1) > 0);
	fx_deinit(&f);
}

/* §3.10: transfer to an up-to-date follower: TimeoutNow at once, and it wins the next term. */
static void test_transfer_to_up_to_date_follower(void **state)
{
	struct fixture f;
	uint64_t term;
	const struct raft_msg *vote;

	(void)state;
	setup_leader(&f, 3, false);
	term = raft_term(fx_raft(&f, 1));
	assert_int_equal(fx_transfer(&f, 1, 2), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_TIMEOUT_NOW, 1, 2), 1);
	fx_deliver(&f, RAFT_MSG_TIMEOUT_NOW, 1, 2);
	/* No PreVote: the vote request says why it may ignore stickiness. */
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_CANDIDATE);
	vote = fx_find(&f, RAFT_MSG_VOTE, 2, 3);
	assert_non_null(vote);
	assert_true(vote->flags & RAFT_MSG_FLAG_TRANSFER);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 2)));
	assert_int_equal(raft_term(fx_raft(&f, 2)), term + 1);
	assert_int_equal(raft_leader(fx_raft(&f, 1)), 2);
	assert_int_equal(raft_leader(fx_raft(&f, 3)), 2);
	fx_deinit(&f);
}

/* §3.10: a lagging target is caught up first; proposals are refused meanwhile. */
static void test_transfer_to_lagging_follower_catches_up_first(void **state)
{
	struct fixture f;
	uint64_t last;

	(void)state;
	setup_leader(&f, 3, false);
	fx_cut(&f, 1, 3);
	for (int i = 0; i < 5; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	last = raft_last_index(fx_raft(&f, 1));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), last);
	assert_true(raft_last_index(fx_raft(&f, 3)) < last);
	fx_heal(&f);
	assert_int_equal(fx_transfer(&f, 1, 3), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_TIMEOUT_NOW, 1, 3), 0);
	assert_int_equal(fx_propose(&f, 1, 8), RAFT_ERR_TRANSFER);
	assert_int_equal(fx_transfer(&f, 1, 2), RAFT_ERR_TRANSFER);
	fx_run(&f, 3 * FX_HEARTBEAT_MS, 10);
	assert_true(raft_is_leader(fx_raft(&f, 3)));
	assert_int_equal(raft_commit_index(fx_raft(&f, 3)), last + 1); /* Its own no-op. */
	fx_deinit(&f);
}

/* §3.10: a transfer that does not finish within an election timeout is abandoned. */
static void test_transfer_aborts_after_election_timeout(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	setup_leader(&f, 5, false);
	term = raft_term(fx_raft(&f, 1));
	fx_isolate(&f, 3);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(fx_transfer(&f, 1, 3), 0);
	fx_run(&f, FX_ELECTION_MS - 20, 10);
	assert_int_equal(fx_propose(&f, 1, 8), RAFT_ERR_TRANSFER);
	fx_run(&f, 40, 10);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_term(fx_raft(&f, 1)), term);
	fx_deinit(&f);
}

/* raft_transfer refuses followers, itself, non-voters and unknown nodes. */
static void test_transfer_rejects_invalid_targets(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_LEARNER;
	fx_start(&f);
	fx_elect(&f, 1);
	assert_int_equal(fx_transfer(&f, 2, 1), RAFT_ERR_NOT_LEADER);
	assert_int_equal(fx_transfer(&f, 1, 1), -EINVAL);
	assert_int_equal(fx_transfer(&f, 1, 3), -EINVAL);
	assert_int_equal(fx_transfer(&f, 1, 6), -EINVAL);
	assert_int_equal(fx_transfer(&f, 1, 2), 0);
	fx_deinit(&f);
}

/* Stale reads: a follower keeps the highest commit index its leader sent,
 * even in an append it must refuse, and the time it last heard that leader. */
static void test_stale_follower_keeps_leader_commit_beyond_its_log(void **state)
{
	struct fixture f;
	struct raft_staleness st;
	struct raft_msg m;
	struct raft *r;
	uint64_t heard_ms;

	(void)state;
	setup_leader(&f, 3, false);
	r = fx_raft(&f, 3);
	raft_staleness(r, &st);
	assert_int_equal(st.applied, raft_commit_index(fx_raft(&f, 1)));
	assert_int_equal(st.leader_commit, st.applied);
	assert_true(st.contact_ms > FX_START_MS && st.contact_ms <= f.now);
	assert_false(st.leading);
	heard_ms = st.contact_ms;
	/* The leader is far ahead: its append does not match our log. */
	m = fx_msg(RAFT_MSG_APPEND, 1, 3, raft_term(fx_raft(&f, 1)));
	m.index = raft_last_index(r) + 50;
	m.log_term = m.term;
	m.commit = raft_last_index(r) + 40;
	fx_advance(&f, 30);
	fx_step(&f, 3, &m);
	raft_staleness(r, &st);
	assert_int_equal(st.leader_commit, m.commit);
	assert_int_equal(st.leader_commit - st.applied, 40);
	assert_int_equal(st.contact_ms, f.now);
	assert_true(st.contact_ms > heard_ms);
	/* Cut off, it learns nothing more: the contact time stays. */
	fx_isolate(&f, 3);
	heard_ms = st.contact_ms;
	fx_run(&f, FX_ELECTION_MS / 2, 10);
	raft_staleness(r, &st);
	assert_int_equal(st.contact_ms, heard_ms);
	assert_int_equal(st.leader_commit, m.commit);
	fx_deinit(&f);
}

/* Stale reads on a leader: contact is its last heartbeat round a quorum
 * acknowledged; a lease, when it holds, says no one else commits. */
static void test_stale_leader_contact_is_its_last_acked_round(void **state)
{
	struct fixture f;
	struct raft_staleness st;
	uint64_t acked_ms;

	(void)state;
	setup_leader(&f, 3, false);
	raft_staleness(fx_raft(&f, 1), &st);
	assert_int_equal(st.applied, st.leader_commit);
	assert_int_equal(st.contact_ms, last_heartbeat_ms(&f));
	assert_false(st.leading);
	fx_isolate(&f, 1);
	acked_ms = st.contact_ms;
	fx_run(&f, FX_ELECTION_MS / 2, 10);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	raft_staleness(fx_raft(&f, 1), &st);
	assert_int_equal(st.contact_ms, acked_ms); /* Unacknowledged rounds count for nothing. */
	fx_deinit(&f);

	setup_leader(&f, 3, true);
	raft_staleness(fx_raft(&f, 1), &st);
	assert_true(st.leading);
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_index_waits_for_heartbeat_quorum),
	    cmocka_unit_test(test_read_index_refused_when_leadership_is_lost),
	    cmocka_unit_test(test_new_leader_reads_wait_for_its_noop),
	    cmocka_unit_test(test_follower_read_is_answered_by_the_leader),
	    cmocka_unit_test(test_read_index_reports_errors),
	    cmocka_unit_test(test_lease_read_needs_no_heartbeat_round),
	    cmocka_unit_test(test_lease_ends_at_election_timeout_minus_drift),
	    cmocka_unit_test(test_lease_ends_at_promise_minus_drift),
	    cmocka_unit_test(test_no_lease_without_check_quorum),
	    cmocka_unit_test(test_no_lease_read_after_transfer_starts),
	    cmocka_unit_test(test_no_lease_read_after_peer_down_of_voter),
	    cmocka_unit_test(test_lease_not_restored_by_acks_sent_before_peer_down),
	    cmocka_unit_test(test_transfer_to_up_to_date_follower),
	    cmocka_unit_test(test_transfer_to_lagging_follower_catches_up_first),
	    cmocka_unit_test(test_transfer_aborts_after_election_timeout),
	    cmocka_unit_test(test_transfer_rejects_invalid_targets),
	    cmocka_unit_test(test_stale_follower_keeps_leader_commit_beyond_its_log),
	    cmocka_unit_test(test_stale_leader_contact_is_its_last_acked_round),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
