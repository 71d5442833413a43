/* Raft engine: log replication (§5.3), commit (§5.4.2, Figure 8), the
 * durability handshake (thesis §3.8, §10.2.1), flow control, and robustness
 * against stale reports and malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

static bool logs_match(struct fixture *f, uint64_t a, uint64_t b)
{
	uint64_t last = raft_last_index(fx_raft(f, a));

	if (raft_last_index(fx_raft(f, b)) != last)
		return false;
	for (uint64_t i = 1; i <= last; i++)
		if (raft_term_at(fx_raft(f, a), i) != raft_term_at(fx_raft(f, b), i))
			return false;
	return true;
}

/* An APPEND from leader 1 at term with the entry before at (prev, prev_term). */
static struct raft_msg append_msg(uint64_t to, uint64_t term, uint64_t prev, uint64_t prev_term,
				  const struct raft_entry *entries, uint32_t count, uint64_t commit)
{
	struct raft_msg m = fx_msg(RAFT_MSG_APPEND, 1, to, term);

	m.index = prev;
	m.log_term = prev_term;
	m.entries = entries;
	m.entries_count = count;
	m.commit = commit;
	return m;
}

/* §5.3: the consistency check rejects an append whose previous entry we lack. */
static void test_follower_rejects_append_with_missing_prev(void **state)
{
	static const uint64_t terms[] = {1, 1};
	struct fixture f;
	struct raft_entry e = {.term = 2, .index = 6};
	struct raft_msg m = append_msg(2, 2, 5, 2, &e, 1, 0);
	const struct raft_msg *resp;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 2, 1, 1);
	fx_start(&f);
	fx_step(&f, 2, &m);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), 2);
	resp = fx_find(&f, RAFT_MSG_APPEND_RESP, 2, 1);
	assert_non_null(resp);
	assert_true(resp->reject);
	assert_int_equal(resp->index, 5);
	assert_int_equal(resp->hint_index, 2); /* Our log ends at 2. */
	assert_int_equal(resp->hint_term, 1);
	fx_deinit(&f);
}

/* §5.3: a conflicting entry and all that follow it are deleted; matching ones are kept. */
static void test_follower_truncates_conflicting_suffix_only(void **state)
{
	static const uint64_t terms[] = {1, 1, 2, 2};
	struct fixture f;
	struct raft_entry e[2] = {{.term = 1, .index = 2}, {.term = 3, .index = 3}};
	struct raft_msg m = append_msg(2, 3, 1, 1, e, 2, 1);

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 4, 2, 1);
	fx_start(&f);
	fx_step(&f, 2, &m);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), 3);
	assert_int_equal(raft_term_at(fx_raft(&f, 2), 2), 1);
	assert_int_equal(raft_term_at(fx_raft(&f, 2), 3), 3);
	assert_int_equal(fx_find(&f, RAFT_MSG_APPEND_RESP, 2, 1)->index, 3);
	/* A stale, shorter copy of the same entries truncates nothing (§5.3). */
	fx_drop(&f, FX_ANY, FX_ANY, FX_ANY);
	m = append_msg(2, 3, 1, 1, e, 1, 1);
	fx_step(&f, 2, &m);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), 3);
	fx_deinit(&f);
}

/* §5.3 (closing note): with conflict hints, a follower with a long divergent
 * suffix converges in a few round trips, not one per entry. */
static void test_divergent_follower_converges_in_few_round_trips(void **state)
{
	uint64_t leader[10], divergent[55];
	struct fixture f;
	uint32_t rounds = 0, rejects = 0;

	(void)state;
	for (int i = 0; i < 10; i++)
		leader[i] = i < 5 ? 1 : 3;
	for (int i = 0; i < 55; i++)
		divergent[i] = i < 5 ? 1 : 2;
	fx_setup(&f, 3);
	fx_boot_log(&f, 1, leader, 10, 3, 5);
	fx_boot_log(&f, 2, leader, 10, 3, 5);
	fx_boot_log(&f, 3, divergent, 55, 3, 5);
	fx_start(&f);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	while (!logs_match(&f, 1, 3)) {
		assert_true(f.net_count > 0);
		rejects += fx_count_rejects(&f, RAFT_MSG_APPEND_RESP, 3, 1);
		fx_deliver_round(&f);
		rounds++;
		assert_true(rounds <= 6); /* Three round trips at most. */
	}
	assert_true(rejects <= 1);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 11);
	fx_deinit(&f);
}

/* §5.3 hint: a follower far behind is found at its last entry at once. */
static void test_lagging_follower_catches_up_in_few_round_trips(void **state)
{
	uint64_t terms[60];
	struct fixture f;
	uint32_t rounds = 0;

	(void)state;
	for (int i = 0; i < 60; i++)
		terms[i] = 1;
	fx_setup(&f, 3);
	fx_boot_log(&f, 1, terms, 60, 1, 2);
	fx_boot_log(&f, 2, terms, 60, 1, 2);
	fx_boot_log(&f, 3, terms, 2, 1, 2);
	fx_start(&f);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	while (!logs_match(&f, 1, 3)) {
		assert_true(f.net_count > 0);
		fx_deliver_round(&f);
		assert_true(++rounds <= 6);
	}
	fx_deinit(&f);
}

/* Per-follower progress: a new leader probes, then replicates once a probe matches. */
static void test_progress_moves_from_probe_to_replicate(void **state)
{
	struct fixture f;
	const struct raft_progress *pr;

	(void)state;
	fx_init(&f, 3);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	pr = raft_progress_of(fx_raft(&f, 1), 2);
	assert_non_null(pr);
	assert_int_equal(pr->state, RAFT_PROGRESS_PROBE);
	assert_true(pr->probe_sent);
	/* While probing, one append at a time. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND, 1, 2), 1);
	fx_deliver_all(&f);
	pr = raft_progress_of(fx_raft(&f, 1), 2);
	assert_int_equal(pr->state, RAFT_PROGRESS_REPLICATE);
	assert_int_equal(pr->match, raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(pr->next, pr->match + 1);
	assert_null(raft_progress_of(fx_raft(&f, 2), 1)); /* Followers keep none. */
	fx_deinit(&f);
}

/* Flow control: at most inflight_count_max appends are unacknowledged per follower. */
static void test_pipeline_is_bounded_by_message_count(void **state)
{
	struct fixture f;
	const struct raft_progress *pr;

	(void)state;
	fx_setup(&f, 3);
	f.config.inflight_count_max = 4;
	fx_start(&f);
	fx_elect(&f, 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND, 1, 2), 4);
	pr = raft_progress_of(fx_raft(&f, 1), 2);
	assert_int_equal(pr->state, RAFT_PROGRESS_REPLICATE);
	assert_int_equal(pr->inflight_count, 4);
	/* Acknowledgements open the window again, and everything arrives. */
	fx_deliver_all(&f);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* Flow control: no new append once inflight_size_max bytes are unacknowledged. */
static void test_pipeline_is_bounded_by_bytes(void **state)
{
	struct fixture f;
	const struct raft_progress *pr;

	(void)state;
	fx_setup(&f, 3);
	f.config.inflight_size_max = 1000;
	fx_start(&f);
	fx_elect(&f, 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 400), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND, 1, 2), 3); /* 800 < 1000 <= 1200. */
	pr = raft_progress_of(fx_raft(&f, 1), 2);
	assert_int_equal(pr->inflight_size, 1200);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* Batching: a burst of proposals leaves as appends of up to msg_size_max bytes each, pipelined. */
static void test_proposals_are_batched_within_msg_size_max(void **state)
{
	struct fixture f;
	uint32_t entries = 0;

	(void)state;
	fx_setup(&f, 3);
	f.config.msg_size_max = 500;
	fx_start(&f);
	fx_elect(&f, 1);
	assert_int_equal(fx_propose_many(&f, 1, 20, 100), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND, 1, 2), 4);
	for (uint32_t i = 0; i < f.net_count; i++) {
		const struct raft_driver_msg *fm = &f.net[i];
		uint32_t bytes = 0;

		if (fm->m.type != RAFT_MSG_APPEND || fm->m.to != 2)
			continue;
		for (uint32_t j = 0; j < fm->m.entries_count; j++)
			bytes += fm->entries[j].size;
		assert_true(bytes <= 500);
		assert_int_equal(fm->m.entries_count, 5);
		entries += fm->m.entries_count;
	}
	assert_int_equal(entries, 20);
	fx_deinit(&f);
}

/* Proposals made while a follower is probed go out together in the next append. */
static void test_proposals_while_probing_go_out_in_one_append(void **state)
{
	struct fixture f;
	const struct raft_msg *m;

	(void)state;
	fx_init(&f, 3);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	/* Answer only the probes, then look at what follows. */
	fx_deliver_matching(&f, RAFT_MSG_APPEND, 1, 2);
	fx_deliver_matching(&f, RAFT_MSG_APPEND_RESP, 2, 1);
	m = fx_find(&f, RAFT_MSG_APPEND, 1, 2);
	assert_non_null(m);
	assert_int_equal(m->entries_count, 10);
	fx_deinit(&f);
}

/* Figure 8 / §5.4.2: an entry of an earlier term is not committed by counting
 * replicas, even on a majority; it commits with the first current-term entry. */
static void test_previous_term_entry_is_not_committed_by_counting(void **state)
{
	static const uint64_t s12[] = {1, 2}, s34[] = {1}, s5[] = {1, 3};
	struct fixture f;

	(void)state;
	fx_setup(&f, 5);
	fx_boot_log(&f, 1, s12, 2, 3, 1);
	fx_boot_log(&f, 2, s12, 2, 3, 1);
	fx_boot_log(&f, 3, s34, 1, 3, 1);
	fx_boot_log(&f, 4, s34, 1, 3, 1);
	fx_boot_log(&f, 5, s5, 2, 3, 1);
	fx_start(&f);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_term(fx_raft(&f, 1)), 4);
	/* 2 takes index 3 (the no-op of term 4); 3 is probed back to index 2. */
	fx_deliver(&f, RAFT_MSG_APPEND, 1, 2);
	fx_deliver(&f, RAFT_MSG_APPEND_RESP, 2, 1);
	fx_deliver(&f, RAFT_MSG_APPEND, 1, 3);
	fx_deliver(&f, RAFT_MSG_APPEND_RESP, 3, 1);
	fx_deliver(&f, RAFT_MSG_APPEND, 1, 3);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), 2);
	fx_deliver(&f, RAFT_MSG_APPEND_RESP, 3, 1);
	assert_int_equal(raft_progress_of(fx_raft(&f, 1), 3)->match, 2);
	/* Index 2 (term 2) is on 1, 2 and 3: a majority, but not committed. */
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 1);
	/* Once the term-4 entry reaches the majority, both commit. */
	assert_true(fx_deliver(&f, RAFT_MSG_APPEND, 1, 3));
	fx_deliver(&f, RAFT_MSG_APPEND_RESP, 3, 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 3);
	fx_deinit(&f);
}

/* Figure 8 (d): why it matters. The entry stored on a majority can still be
 * overwritten by a leader of a later term whose log has a higher last term. */
static void test_previous_term_entry_on_majority_can_be_overwritten(void **state)
{
	static const uint64_t s12[] = {1, 2}, s34[] = {1}, s5[] = {1, 3};
	struct fixture f;

	(void)state;
	fx_setup(&f, 5);
	fx_boot_log(&f, 1, s12, 2, 3, 1);
	fx_boot_log(&f, 2, s12, 2, 3, 1);
	fx_boot_log(&f, 3, s34, 1, 3, 1);
	fx_boot_log(&f, 4, s34, 1, 3, 1);
	fx_boot_log(&f, 5, s5, 2, 3, 1);
	fx_start(&f);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	fx_deliver(&f, RAFT_MSG_APPEND, 1, 3);
	fx_deliver(&f, RAFT_MSG_APPEND_RESP, 3, 1);
	fx_deliver(&f, RAFT_MSG_APPEND, 1, 3);
	assert_int_equal(raft_term_at(fx_raft(&f, 3), 2), 2);
	/* 1 crashes; 5 (last term 3) wins term 5 with the votes of 3 and 4. */
	fx_node(&f, 1)->crashed = true;
	fx_drop(&f, FX_ANY, FX_ANY, FX_ANY);
	f.now += 2 * FX_ELECTION_MS;
	fx_timeout(&f, 5);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 5)));
	assert_int_equal(raft_term_at(fx_raft(&f, 3), 2), 3);
	assert_int_equal(raft_commit_index(fx_raft(&f, 5)), 3);
	fx_deinit(&f);
}

/* §10.2.1: the leader sends before its own write is durable but counts itself only after. */
static void test_leader_counts_itself_only_after_persist(void **state)
{
	struct fixture f;
	uint64_t commit;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	commit = raft_commit_index(fx_raft(&f, 1));
	fx_cut(&f, 1, 3);
	fx_hold(&f, 1, true);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND, 1, 2), 1); /* Sent before durable. */
	fx_deliver_all(&f);
	assert_int_equal(raft_progress_of(fx_raft(&f, 1), 2)->match, commit + 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit);
	fx_persist(&f, 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit + 1);
	assert_int_equal(fx_node(&f, 1)->applied_index, commit + 1);
	fx_deinit(&f);
}

/* A single-voter group commits on its own persist, and not before. */
static void test_single_voter_commits_on_its_persist(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 1);
	fx_hold(&f, 1, true);
	fx_timeout(&f, 1);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 0);
	fx_persist(&f, 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 1);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 1);
	fx_persist(&f, 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 2);
	fx_deinit(&f);
}

/* §10.2.1: a follower acknowledges an append only once its entries are durable. */
static void test_follower_acks_only_after_persist(void **state)
{
	struct fixture f;
	struct fx_node *n2;
	uint64_t last;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	fx_hold(&f, 2, true);
	fx_hold(&f, 3, true);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	last = raft_last_index(fx_raft(&f, 1));
	fx_deliver_matching(&f, RAFT_MSG_APPEND, 1, FX_ANY);
	assert_int_equal(raft_last_index(fx_raft(&f, 2)), last);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND_RESP, FX_ANY, FX_ANY), 0);
	n2 = fx_node(&f, 2);
	assert_true(n2->writes_count > 0);
	assert_int_equal(n2->writes[n2->writes_count - 1].after[0].m.type, RAFT_MSG_APPEND_RESP);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), last - 1);
	fx_persist(&f, 2);
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND_RESP, 2, 1), 1);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), last);
	fx_deinit(&f);
}

/* A follower applies a committed entry only once it is durable locally. */
static void test_follower_applies_only_durable_entries(void **state)
{
	struct fixture f;
	uint64_t last;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_hold(&f, 3, true);
	fx_deliver_all(&f); /* 1 and 2 commit; 3 holds its write. */
	last = raft_last_index(fx_raft(&f, 1));
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), last);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10); /* Heartbeats carry commit to 3. */
	assert_int_equal(raft_commit_index(fx_raft(&f, 3)), last);
	assert_true(fx_node(&f, 3)->applied_index < last);
	fx_persist(&f, 3);
	assert_int_equal(fx_node(&f, 3)->applied_index, last);
	fx_deinit(&f);
}

/* Thesis §3.8: a vote is granted only once term and vote are durable. */
static void test_vote_response_waits_for_durable_vote(void **state)
{
	struct fixture f;
	struct raft_msg m = fx_msg(RAFT_MSG_VOTE, 1, 3, 2);
	const struct raft_driver_write *w;

	(void)state;
	fx_init(&f, 3);
	fx_past_boot(&f);
	fx_hold(&f, 3, true);
	fx_step(&f, 3, &m);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 1), 0);
	w = &fx_node(&f, 3)->writes[0];
	assert_true(w->hard_changed);
	assert_int_equal(w->hard.term, 2);
	assert_int_equal(w->hard.vote, 1);
	assert_int_equal(w->after_count, 1);
	assert_int_equal(w->after[0].m.type, RAFT_MSG_VOTE_RESP);
	fx_persist(&f, 3);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE_RESP, 3, 1), 1);
	assert_false(fx_find(&f, RAFT_MSG_VOTE_RESP, 3, 1)->reject);
	fx_deinit(&f);
}

/* Thesis §3.8: a candidate asks for votes only once its new term and self-vote are durable. */
static void test_vote_request_waits_for_durable_term(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 3);
	fx_hold(&f, 1, true);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f); /* PreVote needs nothing durable. */
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_CANDIDATE);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE, 1, FX_ANY), 0);
	assert_int_equal(fx_node(&f, 1)->hard.term, 0);
	fx_persist(&f, 1);
	assert_int_equal(fx_count(&f, RAFT_MSG_VOTE, 1, FX_ANY), 2);
	assert_int_equal(fx_node(&f, 1)->hard.term, 1);
	assert_int_equal(fx_node(&f, 1)->hard.vote, 1);
	fx_deinit(&f);
}

/* The hard state handed out carries term, vote and commit as they change. */
static void test_hard_state_reports_term_vote_and_commit(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	assert_int_equal(fx_node(&f, 2)->hard.term, 1);
	assert_int_equal(fx_node(&f, 2)->hard.vote, 1);
	assert_int_equal(fx_node(&f, 1)->hard.commit, 1);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	fx_run(&f, FX_HEARTBEAT_MS, 10);
	assert_int_equal(fx_node(&f, 1)->hard.commit, 2);
	assert_int_equal(fx_node(&f, 2)->hard.commit, 2);
	fx_deinit(&f);
}

/* raft_persisted for entries overwritten since is ignored (raft.h). */
static void test_stale_persisted_report_is_ignored(void **state)
{
	static const uint64_t terms[] = {1};
	struct fixture f;
	struct raft_entry old[2] = {{.term = 5, .index = 2}, {.term = 5, .index = 3}};
	struct raft_entry new = {.term = 6, .index = 2};
	struct raft_msg m;
	struct raft *r;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 1, 5, 1);
	fx_start(&f);
	r = fx_raft(&f, 3);
	fx_hold(&f, 3, true);
	m = append_msg(3, 5, 1, 1, old, 2, 1);
	fx_step(&f, 3, &m);
	m = append_msg(3, 6, 1, 1, &new, 1, 2);
	m.from = 2;
	fx_step(&f, 3, &m);
	assert_int_equal(raft_last_index(r), 2);
	assert_int_equal(raft_commit_index(r), 2);
	raft_persisted(r, 3, 5); /* Index 3 is gone. */
	raft_persisted(r, 2, 5); /* Index 2 now has term 6. */
	fx_collect(&f, 3);
	assert_int_equal(r->log.stable_index, 1);
	assert_int_equal(fx_node(&f, 3)->applied_index, 1);
	fx_persist(&f, 3);
	assert_int_equal(r->log.stable_index, 2);
	assert_int_equal(fx_node(&f, 3)->applied_index, 2);
	assert_int_equal(fx_node(&f, 3)->applied_terms[2], 6);
	fx_deinit(&f);
}

static void assert_ignored(struct fixture *f, uint64_t id, const struct raft_msg *m)
{
	struct raft *r = fx_raft(f, id);
	uint64_t term = raft_term(r), vote = r->vote, commit = raft_commit_index(r);
	uint64_t last = raft_last_index(r), leader = raft_leader(r);
	uint8_t role = r->role;

	fx_step(f, id, m);
	assert_int_equal(f->net_count, 0);
	assert_int_equal(raft_term(r), term);
	assert_int_equal(r->vote, vote);
	assert_int_equal(raft_commit_index(r), commit);
	assert_int_equal(raft_last_index(r), last);
	assert_int_equal(raft_leader(r), leader);
	assert_int_equal(r->role, role);
}

/* raft_step ignores malformed input: bad type, sender, receiver or entries. */
static void test_malformed_messages_are_ignored(void **state)
{
	struct fixture f;
	struct raft_msg m;
	uint64_t term;
	struct raft_entry e[2];

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	term = raft_term(fx_raft(&f, 1));
	m = fx_msg(0, 1, 2, term + 5);
	assert_ignored(&f, 2, &m);
	m = fx_msg(RAFT_MSG_TYPE_COUNT, 1, 2, term + 5);
	assert_ignored(&f, 2, &m);
	m = fx_msg(250, 1, 2, term + 5);
	assert_ignored(&f, 2, &m);
	m = fx_msg(RAFT_MSG_VOTE, 2, 2, term + 5); /* From self. */
	assert_ignored(&f, 2, &m);
	m = fx_msg(RAFT_MSG_VOTE, RAFT_NONE, 2, term + 5);
	assert_ignored(&f, 2, &m);
	m = fx_msg(RAFT_MSG_HEARTBEAT, 1, 3, term + 5); /* To someone else. */
	assert_ignored(&f, 2, &m);
	m = append_msg(2, term, raft_last_index(fx_raft(&f, 2)), term, NULL, 3, 0);
	assert_ignored(&f, 2, &m);
	/* Entry terms that decrease along the log. */
	e[0] = (struct raft_entry){.term = term, .index = raft_last_index(fx_raft(&f, 2)) + 1};
	e[1] = (struct raft_entry){.term = term - 1, .index = e[0].index + 1};
	m = append_msg(2, term, e[0].index - 1, term, e, 2, 0);
	assert_ignored(&f, 2, &m);
	/* Entry indexes that do not follow the previous one. */
	e[1] = (struct raft_entry){.term = term, .index = e[0].index + 2};
	m = append_msg(2, term, e[0].index - 1, term, e, 2, 0);
	assert_ignored(&f, 2, &m);
	/* Entries from a term later than the message's. */
	e[1] = (struct raft_entry){.term = term + 1, .index = e[0].index + 1};
	m = append_msg(2, term, e[0].index - 1, term, e, 2, 0);
	assert_ignored(&f, 2, &m);
	/* A snapshot message without a snapshot. */
	m = fx_msg(RAFT_MSG_SNAPSHOT, 1, 2, term);
	assert_ignored(&f, 2, &m);
	/* The leader: an acknowledgement of entries it never sent. */
	m = fx_msg(RAFT_MSG_APPEND_RESP, 2, 1, term);
	m.index = 1000;
	assert_ignored(&f, 1, &m);
	assert_true(raft_progress_of(fx_raft(&f, 1), 2)->match < 1000);
	/* An acknowledgement from a node outside the group. */
	m = fx_msg(RAFT_MSG_APPEND_RESP, 6, 1, term);
	m.index = 1;
	assert_ignored(&f, 1, &m);
	/* The cluster still works. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* raft_propose: RAFT_ERR_NOT_LEADER, -EINVAL, -EMSGSIZE and -EAGAIN as raft.h says. */
static void test_propose_reports_errors(void **state)
{
	struct fixture f;
	struct raft_buf buf = {.data = "x", .size = 1};
	uint64_t first;

	(void)state;
	fx_setup(&f, 3);
	f.config.entry_size_max = 100;
	f.config.uncommitted_size_max = 250;
	fx_start(&f);
	assert_int_equal(fx_propose(&f, 1, 8), RAFT_ERR_NOT_LEADER);
	fx_elect(&f, 1);
	assert_int_equal(fx_propose(&f, 2, 8), RAFT_ERR_NOT_LEADER);
	assert_int_equal(raft_propose(fx_raft(&f, 1), &buf, 0, &first), -EINVAL);
	assert_int_equal(fx_propose(&f, 1, 101), -EMSGSIZE);
	fx_cut(&f, 1, 2);
	fx_cut(&f, 1, 3);
	assert_int_equal(raft_propose(fx_raft(&f, 1), &buf, 1, &first), 0);
	assert_int_equal(first, 2);
	fx_collect(&f, 1);
	assert_int_equal(fx_propose(&f, 1, 100), 0);
	assert_int_equal(fx_propose(&f, 1, 100), 0);
	assert_int_equal(fx_propose(&f, 1, 100), -EAGAIN); /* 301 > 250 uncommitted. */
	assert_int_equal(raft_last_index(fx_raft(&f, 1)), 4);
	fx_heal(&f);
	fx_deliver_all(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), 4);
	assert_int_equal(fx_propose(&f, 1, 100), 0); /* Committed: room again. */
	fx_deinit(&f);
}

/* A check entry is replicated and committed like a normal one, with its type
 * and payload intact on every follower; only the leader may propose one. */
static void test_check_entry_replicates_with_its_type(void **state)
{
	static const uint8_t payload[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	struct fixture f;
	uint64_t index = 0;

	(void)state;
	fx_setup(&f, 3);
	fx_start(&f);
	fx_elect(&f, 1);
	assert_int_equal(raft_propose_check(fx_raft(&f, 2), payload, sizeof(payload), &index),
			 RAFT_ERR_NOT_LEADER);
	assert_int_equal(raft_propose_check(fx_raft(&f, 1), payload, sizeof(payload), &index), 0);
	assert_int_equal(index, raft_last_index(fx_raft(&f, 1)));
	fx_deliver_all(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	for (uint64_t id = 1; id <= 3; id++) {
		const struct raft_entry *e = raft_entry_at(fx_raft(&f, id), index);

		assert_true(raft_commit_index(fx_raft(&f, id)) >= index);
		assert_true(fx_node(&f, id)->applied_index >= index);
		assert_non_null(e);
		assert_int_equal(e->type, RAFT_ENTRY_CHECK);
		assert_int_equal(e->size, sizeof(payload));
		assert_memory_equal(e->data, payload, sizeof(payload));
	}
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_follower_rejects_append_with_missing_prev),
	    cmocka_unit_test(test_follower_truncates_conflicting_suffix_only),
	    cmocka_unit_test(test_divergent_follower_converges_in_few_round_trips),
	    cmocka_unit_test(test_lagging_follower_catches_up_in_few_round_trips),
	    cmocka_unit_test(test_progress_moves_from_probe_to_replicate),
	    cmocka_unit_test(test_pipeline_is_bounded_by_message_count),
	    cmocka_unit_test(test_pipeline_is_bounded_by_bytes),
	    cmocka_unit_test(test_proposals_are_batched_within_msg_size_max),
	    cmocka_unit_test(test_proposals_while_probing_go_out_in_one_append),
	    cmocka_unit_test(test_previous_term_entry_is_not_committed_by_counting),
	    cmocka_unit_test(test_previous_term_entry_on_majority_can_be_overwritten),
	    cmocka_unit_test(test_leader_counts_itself_only_after_persist),
	    cmocka_unit_test(test_single_voter_commits_on_its_persist),
	    cmocka_unit_test(test_follower_acks_only_after_persist),
	    cmocka_unit_test(test_follower_applies_only_durable_entries),
	    cmocka_unit_test(test_vote_response_waits_for_durable_vote),
	    cmocka_unit_test(test_vote_request_waits_for_durable_term),
	    cmocka_unit_test(test_hard_state_reports_term_vote_and_commit),
	    cmocka_unit_test(test_stale_persisted_report_is_ignored),
	    cmocka_unit_test(test_malformed_messages_are_ignored),
	    cmocka_unit_test(test_propose_reports_errors),
	    cmocka_unit_test(test_check_entry_replicates_with_its_type),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
