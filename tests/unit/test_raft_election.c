/* Raft engine: leader election (Raft §5.2, §5.4.1; thesis §3.4, §9.6), the
 * election and heartbeat timers, CheckQuorum (§6.2), and peer_down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

/* Thesis §3.4: each election timeout is drawn at random from [base, 2*base). */
static void test_election_timeouts_are_randomized_in_base_to_twice_base(void **state)
{
	struct fixture f;
	uint64_t first, differ = 0;

	(void)state;
	fx_init(&f, 5);
	first = raft_next_deadline(fx_raft(&f, 1));
	for (uint64_t id = 1; id <= 5; id++) {
		uint64_t d = raft_next_deadline(fx_raft(&f, id));

		assert_true(d >= FX_START_MS + FX_ELECTION_MS);
		assert_true(d < FX_START_MS + 2 * FX_ELECTION_MS);
		differ += d != first;
	}
	assert_true(differ > 0);
	fx_deinit(&f);
}

/* §3.4: nodes seeded as the default config does (id * constant) draw unrelated
 * timeouts, so no two nodes keep timing out together. */
static void test_default_seeds_give_unrelated_timeouts(void **state)
{
	struct raft_config config;
	struct raft_boot boot = {0};
	struct raft r1, r2;
	uint64_t first1, first2, second1;

	(void)state;
	for (uint64_t id = 1; id <= 3; id++)
		assert_int_equal(raft_conf_add(&boot.snapshot.conf, id, RAFT_MEMBER_VOTER), 0);
	raft_config_default(&config, 1, 0);
	assert_int_equal(raft_init(&r1, &config, &boot, 0), 0);
	raft_config_default(&config, 2, 0);
	assert_int_equal(raft_init(&r2, &config, &boot, 0), 0);
	first1 = raft_next_deadline(&r1);
	first2 = raft_next_deadline(&r2);
	raft_tick(&r1, first1); /* Campaigns, and draws its next timeout. */
	second1 = raft_next_deadline(&r1) - first1;
	assert_int_not_equal(first1, first2);
	assert_int_not_equal(second1, first2);
	raft_deinit(&r1);
	raft_deinit(&r2);
}

/* Time enters as an argument: nothing happens before the reported deadline. */
static void test_follower_campaigns_exactly_at_its_deadline(void **state)
{
	struct fixture f;
	uint64_t deadline;

	(void)state;
	fx_init(&f, 3);
	deadline = raft_next_deadline(fx_raft(&f, 1));
	f.now = deadline - 1;
	fx_tick(&f, 1);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(f.net_count, 0);
	f.now = deadline;
	fx_tick(&f, 1);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_PRE_CANDIDATE);
	assert_int_equal(fx_count(&f, RAFT_MSG_PRE_VOTE, 1, FX_ANY), 2);
	fx_deinit(&f);
}

/* Thesis §9.6: PreVote asks for term+1 without anyone changing term or vote. */
static void test_prevote_changes_no_term_or_vote(void **state)
{
	struct fixture f;
	const struct raft_msg *m;

	(void)state;
	fx_init(&f, 3);
	fx_timeout(&f, 1);
	assert_int_equal(raft_term(fx_raft(&f, 1)), 0);
	m = fx_find(&f, RAFT_MSG_PRE_VOTE, 1, 2);
	assert_non_null(m);
	assert_int_equal(m->term, 1);
	fx_deliver(&f, RAFT_MSG_PRE_VOTE, 1, 2);
	assert_int_equal(raft_term(fx_raft(&f, 2)), 0);
	assert_int_equal(fx_raft(&f, 2)->vote, RAFT_NONE);
	m = fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 2, 1);
	assert_non_null(m);
	assert_false(m->reject);
	/* With a majority of pre-votes, the real election begins at term 1. */
	fx_deliver(&f, RAFT_MSG_PRE_VOTE_RESP, 2, 1);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_CANDIDATE);
	assert_int_equal(raft_term(fx_raft(&f, 1)), 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE, 1, FX_ANY), 2);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* Thesis §9.6: a partitioned node keeps its term, so rejoining disrupts no one. */
static void test_partitioned_node_rejoins_without_disrupting_leader(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	fx_isolate(&f, 3);
	fx_run(&f, 6 * FX_ELECTION_MS, 50);
	assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	assert_int_equal(fx_raft(&f, 3)->elections_started, 0);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	fx_heal(&f);
	fx_run(&f, 3 * FX_ELECTION_MS, 50);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_term(fx_raft(&f, 1)), term);
	assert_int_equal(raft_leader(fx_raft(&f, 3)), 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 3)), raft_commit_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* §5.2: the leader sends heartbeats every heartbeat interval, and says when. */
static void test_leader_heartbeats_every_interval(void **state)
{
	struct fixture f;
	uint64_t deadline;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	deadline = raft_next_deadline(fx_raft(&f, 1));
	assert_true(deadline <= f.now + FX_HEARTBEAT_MS);
	f.now = deadline - 1;
	fx_tick(&f, 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, FX_ANY), 0);
	f.now = deadline;
	fx_tick(&f, 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, 2), 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_HEARTBEAT, 1, 3), 1);
	assert_int_equal(raft_next_deadline(fx_raft(&f, 1)), deadline + FX_HEARTBEAT_MS);
	fx_deinit(&f);
}

/* Heartbeats keep followers from campaigning (§5.2). */
static void test_heartbeats_keep_a_stable_leader(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	fx_run(&f, 10 * FX_ELECTION_MS, 20);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_term(fx_raft(&f, 2)), term);
	assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	fx_deinit(&f);
}

/* §6.2 CheckQuorum: a leader that hears from no quorum for an election timeout steps down. */
static void test_leader_without_quorum_steps_down(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	fx_isolate(&f, 1);
	fx_run(&f, FX_ELECTION_MS - 50, 10);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	fx_run(&f, FX_ELECTION_MS + 100, 10);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(raft_term(fx_raft(&f, 1)), term); /* Not deposed: it stepped down. */
	assert_int_equal(raft_leader(fx_raft(&f, 1)), RAFT_NONE);
	fx_deinit(&f);
}

/* §5.2: a split vote ends when randomized timeouts let one candidate go first. */
static void test_split_vote_recovers_in_a_later_term(void **state)
{
	struct fixture f;
	uint64_t split_term, leaders = 0;

	(void)state;
	fx_init(&f, 4);
	fx_timeout(&f, 1);
	fx_timeout(&f, 2);
	fx_deliver_matching(&f, RAFT_MSG_PRE_VOTE, FX_ANY, FX_ANY);
	fx_deliver_matching(&f, RAFT_MSG_PRE_VOTE_RESP, FX_ANY, FX_ANY);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_CANDIDATE);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_CANDIDATE);
	split_term = raft_term(fx_raft(&f, 1));
	assert_int_equal(raft_term(fx_raft(&f, 2)), split_term);
	/* 3 hears from 1 first and 4 from 2 first: two votes each, of four. */
	fx_deliver(&f, RAFT_MSG_VOTE, 1, 3);
	fx_deliver(&f, RAFT_MSG_VOTE, 2, 4);
	fx_deliver_all(&f);
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	assert_false(raft_is_leader(fx_raft(&f, 2)));
	fx_run(&f, 4 * FX_ELECTION_MS, 10);
	for (uint64_t id = 1; id <= 4; id++)
		leaders += raft_is_leader(fx_raft(&f, id));
	assert_int_equal(leaders, 1);
	assert_true(raft_term(fx_raft(&f, 1)) > split_term);
	fx_deinit(&f);
}

/* §5.2: each server votes for at most one candidate in a given term. */
static void test_second_candidate_in_same_term_is_refused(void **state)
{
	struct fixture f;
	struct raft_msg m;
	const struct raft_msg *resp;

	(void)state;
	fx_init(&f, 3);
	fx_past_boot(&f);
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 4);
	fx_step(&f, 3, &m);
	resp = fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 1);
	assert_non_null(resp);
	assert_false(resp->reject);
	assert_int_equal(fx_node(&f, 3)->hard.vote, 1);
	m = fx_msg(RAFT_MSG_VOTE, 2, 3, 4);
	fx_step(&f, 3, &m);
	resp = fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 2);
	assert_non_null(resp);
	assert_true(resp->reject);
	assert_int_equal(fx_raft(&f, 3)->vote, 1);
	/* The same candidate asking again (a retransmission) is granted again. */
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 4);
	fx_step(&f, 3, &m);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 1), 2);
	fx_deinit(&f);
}

/* §5.4.1: a vote is granted only to a candidate whose log is at least as up to date. */
static void test_vote_refused_to_candidate_with_older_log(void **state)
{
	static const uint64_t terms[] = {1, 1, 2};
	struct fixture f;
	struct raft_msg m;
	const struct raft_msg *resp;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 3, 2, 1);
	fx_start(&f);
	fx_past_boot(&f);
	/* Longer, but with an older last term. */
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 3);
	m.index = 10;
	m.log_term = 1;
	fx_step(&f, 3, &m);
	resp = fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 1);
	assert_non_null(resp);
	assert_true(resp->reject);
	/* Same last term, shorter. */
	m = fx_msg(RAFT_MSG_VOTE, 2, 3, 4);
	m.index = 2;
	m.log_term = 2;
	fx_step(&f, 3, &m);
	resp = fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 2);
	assert_non_null(resp);
	assert_true(resp->reject);
	assert_int_equal(raft_term(fx_raft(&f, 3)), 4); /* The term is still adopted. */
	fx_deinit(&f);
}

/* Figure 2: a follower rejects AppendEntries from a stale term and keeps its election timer. */
static void test_follower_rejects_stale_append(void **state)
{
	static const uint64_t terms[] = {1, 1};
	struct fixture f;
	struct raft_msg m;
	struct raft_entry e = {.term = 4, .index = 2, .type = RAFT_ENTRY_NORMAL};
	const struct raft_msg *resp;
	uint64_t term, deadline;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 2, 4, 1);
	fx_start(&f);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 2));
	deadline = fx_raft(&f, 2)->election_deadline_ms;
	f.now += 10;
	m = fx_msg(RAFT_MSG_APPEND, 3, 2, term - 1);
	m.index = 1;
	m.log_term = 1;
	m.entries = &e;
	m.entries_count = 1;
	m.commit = 2;
	fx_step(&f, 2, &m);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(raft_leader(fx_raft(&f, 2)), 1);
	assert_int_equal(fx_raft(&f, 2)->election_deadline_ms, deadline);
	assert_int_equal(raft_term_at(fx_raft(&f, 2), 2), 1);
	/* The stale leader is told the current term. */
	resp = fx_find(&f, RAFT_MSG_APPEND_RESP, 2, 3);
	assert_non_null(resp);
	assert_int_equal(resp->term, term);
	fx_deinit(&f);
}

/* A vote request of an older term is refused with the current term (Figure
 * 2), so that its candidate catches up instead of campaigning below it. */
static void test_stale_vote_is_refused_with_the_current_term(void **state)
{
	struct fixture f;
	struct raft_msg m;
	const struct raft_msg *resp;
	uint64_t term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 2));
	f.now += 10;
	m = fx_msg(RAFT_MSG_VOTE, 3, 2, term - 1);
	fx_step(&f, 2, &m);
	resp = fx_find(&f, RAFT_MSG_VOTE_RESP, 2, 3);
	assert_non_null(resp);
	assert_true(resp->reject);
	assert_int_equal(resp->term, term);
	assert_int_equal(raft_term(fx_raft(&f, 2)), term);
	assert_int_equal(raft_leader(fx_raft(&f, 2)), 1);
	/* The candidate learns the term and stands down. */
	fx_deliver(&f, RAFT_MSG_VOTE_RESP, 2, 3);
	assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	fx_deinit(&f);
}

/* A leader that hears a higher term steps down (Figure 2, "all servers"). */
static void test_stale_leader_steps_down_on_higher_term(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	fx_isolate(&f, 1);
	fx_run(&f, 3 * FX_ELECTION_MS, 20);
	fx_heal(&f);
	/* 2 or 3 leads a later term now; 1 must follow it once they talk. */
	fx_run(&f, FX_ELECTION_MS, 20);
	term = raft_term(fx_raft(&f, 2));
	assert_int_equal(raft_term(fx_raft(&f, 1)), term);
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* peer_down: a follower whose leader's process died starts PreVote at once. */
static void test_leader_down_starts_prevote_at_once(void **state)
{
	struct fixture f;
	uint64_t now;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	now = f.now;
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 2, 1);
	fx_peer_down(&f, 3, 1);
	/* One survivor campaigns at once; the other's turn is half a heartbeat
	 * later, so that they do not split the vote. */
	assert_int_equal((raft_role(fx_raft(&f, 2)) == RAFT_ROLE_PRE_CANDIDATE) +
			     (raft_role(fx_raft(&f, 3)) == RAFT_ROLE_PRE_CANDIDATE),
			 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_PRE_VOTE, FX_ANY, FX_ANY),
			 2); /* To 1 and the other. */
	for (uint64_t id = 2; id <= 3; id++)
		if (raft_role(fx_raft(&f, id)) == RAFT_ROLE_FOLLOWER)
			assert_int_equal(fx_raft(&f, id)->election_deadline_ms,
					 now + FX_HEARTBEAT_MS / 2);
	assert_int_equal(f.now, now);
	fx_deinit(&f);
}

/* A node that just started may have acked a leader before it went down: it
 * refuses to elect another for one election timeout (the lease relies on it). */
static void test_restarted_voter_keeps_stickiness_for_a_timeout(void **state)
{
	struct fixture f;
	struct raft_msg m;

	(void)state;
	fx_init(&f, 3);
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 4);
	fx_step(&f, 3, &m); /* Just booted: ignored. */
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 1), 0);
	assert_int_equal(raft_term(fx_raft(&f, 3)), 0);
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 4);
	m.flags = RAFT_MSG_FLAG_TRANSFER; /* A leadership transfer is the exception. */
	fx_step(&f, 3, &m);
	fx_persist(&f, 3);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 1), 1);
	fx_deinit(&f);
	fx_init(&f, 3);
	fx_past_boot(&f);
	m = fx_msg(RAFT_MSG_VOTE, 1, 3, 4);
	fx_step(&f, 3, &m); /* An election timeout later: granted. */
	fx_persist(&f, 3);
	assert_non_null(fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 1));
	assert_false(fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 1)->reject);
	fx_deinit(&f);
}

/* peer_down: survivors whose campaigns overlap do not split the vote: the one
 * that goes first refuses to help the later one past it. */
static void test_overlapping_takeovers_do_not_split_the_vote(void **state)
{
	struct fixture f;
	uint64_t term, first, second;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 2, 1);
	fx_peer_down(&f, 3, 1);
	first = raft_role(fx_raft(&f, 2)) == RAFT_ROLE_PRE_CANDIDATE ? 2 : 3;
	second = 5 - first;
	/* The second's turn comes before the first's pre-votes are answered. */
	fx_takeover(&f, second);
	assert_int_equal(raft_role(fx_raft(&f, second)), RAFT_ROLE_PRE_CANDIDATE);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, first)));
	assert_false(raft_is_leader(fx_raft(&f, second)));
	assert_int_equal(raft_term(fx_raft(&f, first)), term + 1); /* No split, no retry. */
	assert_int_equal(raft_leader(fx_raft(&f, second)), first);
	fx_deinit(&f);
}

/* peer_down: followers that learn of the crash elect a new leader without waiting a timeout. */
static void test_followers_of_dead_leader_elect_without_timeout(void **state)
{
	struct fixture f;
	uint64_t now, term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	now = f.now;
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 2, 1);
	fx_deliver_all(&f);
	fx_peer_down(&f, 3, 1);
	fx_deliver_all(&f);
	assert_int_equal(f.now, now);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_int_equal(raft_term(fx_raft(&f, 2)), term + 1);
	fx_deinit(&f);
}

/* peer_down safety (raft.c): a voter that did not learn of the crash and heard
 * from the leader within an election timeout still refuses to help elect
 * another (stickiness, thesis §4.2.3), so a lease stays sound. */
static void test_voter_without_peer_down_stays_sticky(void **state)
{
	struct fixture f;
	uint64_t term, heard;
	const struct raft_msg *resp;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	fx_run(&f, 300, 50);
	term = raft_term(fx_raft(&f, 1));
	heard = fx_raft(&f, 3)->leader_heard_ms;
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 2, 1);
	fx_takeover(&f, 2);
	fx_deliver(&f, RAFT_MSG_PRE_VOTE, 2, 3);
	resp = fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 3, 2);
	assert_non_null(resp);
	assert_true(resp->reject);
	fx_deliver_all(&f);
	assert_false(raft_is_leader(fx_raft(&f, 2)));
	assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	assert_int_equal(raft_leader(fx_raft(&f, 3)), 1);
	/* A real vote request is refused too (ignored, with the term kept). */
	{
		struct raft_msg m = fx_msg(RAFT_MSG_VOTE, 2, 3, term + 1);

		m.index = raft_last_index(fx_raft(&f, 2));
		m.log_term = raft_term_at(fx_raft(&f, 2), m.index);
		fx_step(&f, 3, &m);
		assert_int_equal(raft_term(fx_raft(&f, 3)), term);
		assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 2), 0);
	}
	/* Stickiness lasts exactly an election timeout from when 3 last heard from 1. */
	{
		struct raft_msg m = fx_msg(RAFT_MSG_PRE_VOTE, 2, 3, term + 1);

		m.index = raft_last_index(fx_raft(&f, 2));
		m.log_term = raft_term_at(fx_raft(&f, 2), m.index);
		f.now = heard + FX_ELECTION_MS - 1;
		fx_step(&f, 3, &m);
		assert_true(fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 3, 2)->reject);
		fx_drop(&f, FX_ANY, FX_ANY, FX_ANY);
		f.now = heard + FX_ELECTION_MS;
		fx_step(&f, 3, &m);
		assert_false(fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 3, 2)->reject);
	}
	fx_run(&f, 3 * FX_ELECTION_MS, 10);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* peer_down of a node that is not our leader changes nothing. */
static void test_follower_ignores_peer_down_of_non_leader(void **state)
{
	struct fixture f;
	uint64_t deadline;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	deadline = raft_next_deadline(fx_raft(&f, 2));
	fx_peer_down(&f, 2, 3);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(raft_leader(fx_raft(&f, 2)), 1);
	assert_int_equal(raft_next_deadline(fx_raft(&f, 2)), deadline);
	assert_int_equal(f.net_count, 0);
	/* And it still refuses to help anyone else while its leader is alive. */
	{
		struct raft_msg m = fx_msg(RAFT_MSG_PRE_VOTE, 3, 2, raft_term(fx_raft(&f, 2)) + 1);

		m.index = raft_last_index(fx_raft(&f, 2));
		m.log_term = raft_term_at(fx_raft(&f, 2), m.index);
		fx_step(&f, 2, &m);
		assert_true(fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 2, 3)->reject);
	}
	fx_deinit(&f);
}

/* A follower that never had a leader ignores peer_down too (no leader: nothing to react to). */
static void test_follower_without_leader_ignores_peer_down(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 3);
	fx_peer_down(&f, 2, 1);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(f.net_count, 0);
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_election_timeouts_are_randomized_in_base_to_twice_base),
	    cmocka_unit_test(test_default_seeds_give_unrelated_timeouts),
	    cmocka_unit_test(test_follower_campaigns_exactly_at_its_deadline),
	    cmocka_unit_test(test_prevote_changes_no_term_or_vote),
	    cmocka_unit_test(test_partitioned_node_rejoins_without_disrupting_leader),
	    cmocka_unit_test(test_leader_heartbeats_every_interval),
	    cmocka_unit_test(test_heartbeats_keep_a_stable_leader),
	    cmocka_unit_test(test_leader_without_quorum_steps_down),
	    cmocka_unit_test(test_split_vote_recovers_in_a_later_term),
	    cmocka_unit_test(test_second_candidate_in_same_term_is_refused),
	    cmocka_unit_test(test_vote_refused_to_candidate_with_older_log),
	    cmocka_unit_test(test_follower_rejects_stale_append),
	    cmocka_unit_test(test_stale_leader_steps_down_on_higher_term),
	    cmocka_unit_test(test_leader_down_starts_prevote_at_once),
	    cmocka_unit_test(test_restarted_voter_keeps_stickiness_for_a_timeout),
	    cmocka_unit_test(test_followers_of_dead_leader_elect_without_timeout),
	    cmocka_unit_test(test_overlapping_takeovers_do_not_split_the_vote),
	    cmocka_unit_test(test_voter_without_peer_down_stays_sticky),
	    cmocka_unit_test(test_follower_ignores_peer_down_of_non_leader),
	    cmocka_unit_test(test_follower_without_leader_ignores_peer_down),
	    cmocka_unit_test(test_stale_vote_is_refused_with_the_current_term),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
