/* Raft engine: quiescence. A group with nothing to do stops ticking and
 * heartbeating, wakes on any message or proposal, and relies on peer_down
 * rather than timeouts to notice that a quiet leader died. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

#define QUIESCE_AFTER_MS 500

static uint32_t sent_total(const struct fixture *f)
{
	uint32_t n = 0;

	for (uint32_t t = 0; t < RAFT_MSG_TYPE_COUNT; t++)
		n += f->sent[t];
	return n;
}

/* Three nodes, 1 leads, idle long enough to quiesce. */
static void setup_quiesced(struct fixture *f)
{
	fx_setup(f, 3);
	f->config.quiesce = true;
	f->config.quiesce_after_ms = QUIESCE_AFTER_MS;
	fx_start(f);
	fx_elect(f, 1);
	fx_run(f, QUIESCE_AFTER_MS + 2 * FX_HEARTBEAT_MS, 10);
}

/* An idle group goes quiet: no deadline, no heartbeats, on every node. */
static void test_idle_group_stops_ticking_and_heartbeating(void **state)
{
	struct fixture f;
	uint32_t sent;

	(void)state;
	setup_quiesced(&f);
	for (uint64_t id = 1; id <= 3; id++) {
		assert_true(raft_is_quiesced(fx_raft(&f, id)));
		assert_int_equal(raft_next_deadline(fx_raft(&f, id)), RAFT_DEADLINE_NONE);
	}
	sent = sent_total(&f);
	fx_run(&f, 10 * FX_ELECTION_MS, 100);
	assert_int_equal(sent_total(&f), sent);
	fx_deinit(&f);
}

/* A group with traffic does not quiesce. */
static void test_busy_group_does_not_quiesce(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.config.quiesce = true;
	f.config.quiesce_after_ms = QUIESCE_AFTER_MS;
	fx_start(&f);
	fx_elect(&f, 1);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(fx_propose(&f, 1, 8), 0);
		fx_run(&f, QUIESCE_AFTER_MS / 4, 10);
		assert_false(raft_is_quiesced(fx_raft(&f, 1)));
	}
	fx_deinit(&f);
}

/* Quiescence: a quiesced follower does not campaign while its leader is alive and quiet. */
static void test_quiesced_follower_does_not_campaign(void **state)
{
	struct fixture f;
	uint64_t term;

	(void)state;
	setup_quiesced(&f);
	term = raft_term(fx_raft(&f, 1));
	f.now += 100 * FX_ELECTION_MS;
	fx_tick(&f, 2);
	fx_tick(&f, 3);
	assert_int_equal(f.net_count, 0);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(raft_term(fx_raft(&f, 2)), term);
	assert_int_equal(raft_leader(fx_raft(&f, 2)), 1);
	fx_deinit(&f);
}

/* Quiescence: a proposal wakes the leader, its append wakes the followers, and it commits. */
static void test_proposal_wakes_the_group(void **state)
{
	struct fixture f;

	(void)state;
	setup_quiesced(&f);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_false(raft_is_quiesced(fx_raft(&f, 1)));
	assert_int_not_equal(raft_next_deadline(fx_raft(&f, 1)), RAFT_DEADLINE_NONE);
	fx_deliver_all(&f);
	assert_false(raft_is_quiesced(fx_raft(&f, 2)));
	assert_int_not_equal(raft_next_deadline(fx_raft(&f, 2)), RAFT_DEADLINE_NONE);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	/* Once idle again, it goes back to sleep. */
	fx_run(&f, QUIESCE_AFTER_MS + 2 * FX_HEARTBEAT_MS, 10);
	assert_true(raft_is_quiesced(fx_raft(&f, 1)));
	assert_true(raft_is_quiesced(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* Quiescence: any message wakes a quiesced node, which then keeps its leader. */
static void test_message_wakes_a_quiesced_node(void **state)
{
	struct fixture f;
	struct raft_msg m;

	(void)state;
	setup_quiesced(&f);
	m = fx_msg(RAFT_MSG_PRE_VOTE, 3, 2, raft_term(fx_raft(&f, 2)) + 1);
	m.index = raft_last_index(fx_raft(&f, 2));
	m.log_term = raft_term_at(fx_raft(&f, 2), m.index);
	fx_step(&f, 2, &m);
	assert_false(raft_is_quiesced(fx_raft(&f, 2)));
	assert_int_not_equal(raft_next_deadline(fx_raft(&f, 2)), RAFT_DEADLINE_NONE);
	assert_true(fx_find(&f, RAFT_MSG_PRE_VOTE_RESP, 2, 3)->reject); /* Leader still alive. */
	/* A read wakes the leader too. */
	assert_int_equal(fx_read(&f, 1, 42), 0);
	assert_false(raft_is_quiesced(fx_raft(&f, 1)));
	fx_deliver_all(&f);
	assert_true(fx_read_index_of(fx_node(&f, 1), 42) > 0);
	fx_deinit(&f);
}

/* Quiescence + peer_down: when the quiet leader dies, its followers elect at once. */
static void test_peer_down_of_quiesced_leader_starts_election(void **state)
{
	struct fixture f;
	uint64_t term, now;

	(void)state;
	setup_quiesced(&f);
	term = raft_term(fx_raft(&f, 1));
	now = f.now;
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 2, 1);
	assert_false(raft_is_quiesced(fx_raft(&f, 2)));
	fx_takeover(&f, 2);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_PRE_CANDIDATE);
	fx_deliver_all(&f); /* 3, still quiet and loyal, refuses. */
	assert_false(raft_is_leader(fx_raft(&f, 2)));
	fx_peer_down(&f, 3, 1);
	fx_takeover(&f, 3);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_int_equal(raft_term(fx_raft(&f, 2)), term + 1);
	assert_true(f.now - now <= FX_HEARTBEAT_MS); /* Not an election timeout. */
	fx_deinit(&f);
}

/* Quiescence + peer_suspect: a quiet group whose leader's host fell silent
 * elects a new leader within a heartbeat of the suspicion, even when one
 * follower was woken by the other's PreVote before it suspected the host. */
static void test_suspected_quiet_leader_is_replaced_without_timeout(void **state)
{
	struct fixture f;
	uint64_t term, now;

	(void)state;
	setup_quiesced(&f);
	term = raft_term(fx_raft(&f, 1));
	f.now += 2 * FX_ELECTION_MS; /* Quiet for longer than any promise lasts. */
	fx_isolate(&f, 1);
	now = f.now;
	fx_peer_suspect(&f, 2, 1);
	assert_false(raft_is_quiesced(fx_raft(&f, 2)));
	assert_true(raft_is_quiesced(fx_raft(&f, 3)));
	fx_takeover(&f, 2);
	assert_int_equal(raft_role(fx_raft(&f, 2)), RAFT_ROLE_PRE_CANDIDATE);
	fx_deliver_all(&f); /* 3 still hears 1's host: it wakes and refuses. */
	assert_false(raft_is_leader(fx_raft(&f, 2)));
	assert_false(raft_is_quiesced(fx_raft(&f, 3)));
	assert_int_equal(raft_leader(fx_raft(&f, 3)), 1);
	fx_peer_suspect(&f, 3, 1); /* Its promise ran out long ago: waking made none. */
	for (int i = 0;
	     i < 20 && !raft_is_leader(fx_raft(&f, 2)) && !raft_is_leader(fx_raft(&f, 3)); i++)
		fx_run(&f, 5, 5);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_int_equal(raft_term(fx_raft(&f, 2)), term + 1);
	assert_true(f.now - now <= FX_HEARTBEAT_MS); /* Not an election timeout. */
	fx_deinit(&f);
}

/* peer_suspect releases no promise: followers that heard the leader lately
 * wait until an election timeout after that before electing another, so
 * that the lease the leader holds on their acknowledgements runs out first. */
static void test_suspicion_waits_for_the_lease_promise(void **state)
{
	struct fixture f;
	uint64_t heard, term;

	(void)state;
	fx_init(&f, 3);
	fx_elect(&f, 1);
	fx_run(&f, FX_HEARTBEAT_MS, 10); /* A heartbeat round heard and acknowledged. */
	term = raft_term(fx_raft(&f, 1));
	heard = fx_raft(&f, 2)->leader_heard_ms;
	fx_isolate(&f, 1);
	fx_peer_suspect(&f, 2, 1);
	fx_peer_suspect(&f, 3, 1);
	for (uint64_t id = 2; id <= 3; id++)
		assert_true(fx_raft(&f, id)->election_deadline_ms >=
			    fx_raft(&f, id)->leader_heard_ms + FX_ELECTION_MS);
	while (f.now + 10 < heard + FX_ELECTION_MS) {
		fx_run(&f, 10, 10);
		assert_int_equal(raft_term(fx_raft(&f, 2)), term);
		assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	}
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 5);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* With a promise of three heartbeats (config.promise_ms, as the shard sets
 * it), a busy group whose leader's host is suspected elects as soon as that
 * promise ends, long before an election timeout, and not a moment before:
 * the old leader's lease, which rests on the same promise, has ended first. */
static void test_suspicion_elects_when_a_short_promise_ends(void **state)
{
	const uint64_t promise = 3 * FX_HEARTBEAT_MS;
	struct fixture f;
	uint64_t heard, term, lease_until;

	(void)state;
	fx_setup(&f, 3);
	f.config.lease_read = true;
	f.config.promise_ms = promise;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, FX_HEARTBEAT_MS, 10); /* A heartbeat round heard and acknowledged. */
	term = raft_term(fx_raft(&f, 1));
	heard = fx_raft(&f, 2)->leader_heard_ms; /* The earlier of the two promises. */
	if (fx_raft(&f, 3)->leader_heard_ms < heard)
		heard = fx_raft(&f, 3)->leader_heard_ms;
	lease_until = fx_raft(&f, 1)->lease_until_ms;
	assert_true(lease_until > heard - FX_HEARTBEAT_MS); /* The leader holds a lease. */
	fx_isolate(&f, 1);
	fx_peer_suspect(&f, 2, 1);
	fx_peer_suspect(&f, 3, 1);
	while (f.now + 10 < heard + promise) {
		fx_run(&f, 10, 10);
		assert_int_equal(raft_term(fx_raft(&f, 2)), term);
		assert_int_equal(raft_term(fx_raft(&f, 3)), term);
	}
	for (int i = 0;
	     i < 40 && !raft_is_leader(fx_raft(&f, 2)) && !raft_is_leader(fx_raft(&f, 3)); i++) {
		fx_run(&f, 10, 10);
		if (raft_term(fx_raft(&f, 2)) > term || raft_term(fx_raft(&f, 3)) > term)
			assert_true(f.now >= lease_until); /* No vote before the lease ended. */
	}
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_true(f.now < heard + FX_ELECTION_MS); /* Not an election timeout. */
	fx_deinit(&f);
}

/* A quiesced leader ignores peer_down of a node outside the group and stays asleep. */
static void test_quiesced_leader_ignores_peer_down_of_non_member(void **state)
{
	struct fixture f;

	(void)state;
	setup_quiesced(&f);
	fx_peer_down(&f, 1, 6);
	assert_true(raft_is_quiesced(fx_raft(&f, 1)));
	assert_int_equal(f.net_count, 0);
	fx_deinit(&f);
}

/* What a quiesced group keeps is its state: raft_trim() gives back the
 * ready's buffers and the leader's inflight windows; a follower holds no
 * progress or heartbeat ring. A proposal takes the windows back, and the
 * next quiescence gives them back again. */
static void test_quiesced_group_keeps_only_its_state(void **state)
{
	struct fixture f;
	struct raft *leader;

	(void)state;
	setup_quiesced(&f);
	leader = fx_raft(&f, 1);
	for (int round = 0; round < 2; round++) {
		for (uint64_t id = 1; id <= 3; id++) {
			struct raft *r = fx_raft(&f, id);

			assert_true(raft_is_quiesced(r));
			raft_trim(r);
			assert_null(r->msgs);
			assert_null(r->msgs_after);
			assert_null(r->reads_out);
			assert_null(r->reads_pending);
			assert_int_equal(r->confs_count, 1);
			if (id != 1) {
				assert_null(r->progress);
				assert_null(r->hb_sent_ms);
			}
		}
		assert_int_equal(leader->progress_count, 3);
		assert_non_null(leader->hb_sent_ms);
		for (uint64_t id = 1; id <= 3; id++)
			assert_null(raft_progress_of(leader, id)->inflight);
		/* Awake, it replicates through windows again, then sleeps. */
		assert_int_equal(fx_propose(&f, 1, 8), 0);
		fx_deliver_all(&f);
		assert_non_null(raft_progress_of(leader, 2)->inflight);
		fx_run(&f, QUIESCE_AFTER_MS + 4 * FX_HEARTBEAT_MS, 10);
		assert_int_equal(raft_commit_index(fx_raft(&f, 3)), raft_last_index(leader));
	}
	fx_deinit(&f);
}

/* A group that starts as a shard creates it (an empty membership at index
 * 0, its first CONF entry at 1, committed) keeps one configuration: the
 * empty one is in force only before index 1. */
static void test_new_group_keeps_one_configuration(void **state)
{
	struct raft_conf conf = {0};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	struct raft_entry entry = {.term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .data = buf};
	struct raft_boot boot = {.hard = {.term = 1, .commit = 1}, .entries = &entry};
	struct raft_config config;
	struct raft r;

	(void)state;
	for (uint64_t id = 1; id <= 3; id++)
		assert_int_equal(raft_conf_add(&conf, id, RAFT_MEMBER_VOTER), 0);
	raft_conf_encode(&conf, buf);
	entry.size = raft_conf_encoded_size(&conf);
	boot.entries_count = 1;
	raft_config_default(&config, 1, 7);
	assert_int_equal(raft_init(&r, &config, &boot, 0), 0);
	assert_int_equal(r.confs_count, 1);
	assert_int_equal(r.confs_cap, 1);
	assert_int_equal(raft_conf_index(&r), 1);
	assert_int_equal(raft_conf(&r)->members_count, 3);
	assert_int_equal(raft_conf_at(&r, 1)->members_count, 3);
	assert_int_equal(raft_conf_at(&r, 0)->members_count, 0);
	raft_deinit(&r);
	/* Not committed yet (a member that joins and is told): both kept. */
	boot.hard.commit = 0;
	assert_int_equal(raft_init(&r, &config, &boot, 0), 0);
	assert_int_equal(r.confs_count, 2);
	raft_deinit(&r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quiesced_group_keeps_only_its_state),
	    cmocka_unit_test(test_new_group_keeps_one_configuration),
	    cmocka_unit_test(test_idle_group_stops_ticking_and_heartbeating),
	    cmocka_unit_test(test_busy_group_does_not_quiesce),
	    cmocka_unit_test(test_quiesced_follower_does_not_campaign),
	    cmocka_unit_test(test_proposal_wakes_the_group),
	    cmocka_unit_test(test_message_wakes_a_quiesced_node),
	    cmocka_unit_test(test_peer_down_of_quiesced_leader_starts_election),
	    cmocka_unit_test(test_quiesced_leader_ignores_peer_down_of_non_member),
	    cmocka_unit_test(test_suspected_quiet_leader_is_replaced_without_timeout),
	    cmocka_unit_test(test_suspicion_waits_for_the_lease_promise),
	    cmocka_unit_test(test_suspicion_elects_when_a_short_promise_ends),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
