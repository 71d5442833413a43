/* Raft engine: membership (thesis chapter 4: joint consensus, learners,
 * witnesses), the CONF entry format, and snapshots (thesis chapter 5). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "engine/raft.h"
#include "tests/unit/raft_fixture.h"

/* Nodes 1..n with voters 1..voters and learners after; 1 leads, all caught up. */
static void setup_group(struct fixture *f, uint32_t n, uint32_t voters)
{
	fx_setup(f, n);
	for (uint32_t i = voters; i < n; i++)
		f->conf.members[i].role = RAFT_MEMBER_LEARNER;
	fx_start(f);
	fx_elect(f, 1);
	fx_run(f, 2 * FX_HEARTBEAT_MS, 10);
}

/* §4.2.1: a learner receives the log but never campaigns, even when told its leader died. */
static void test_learner_receives_log_but_never_campaigns(void **state)
{
	struct fixture f;
	struct raft_msg m;

	(void)state;
	setup_group(&f, 4, 3);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_last_index(fx_raft(&f, 4)), raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(raft_next_deadline(fx_raft(&f, 4)), RAFT_DEADLINE_NONE);
	fx_peer_down(&f, 4, 1);
	m = fx_msg(RAFT_MSG_TIMEOUT_NOW, 1, 4, raft_term(fx_raft(&f, 1)));
	fx_step(&f, 4, &m);
	f.now += 10 * FX_ELECTION_MS;
	fx_tick(&f, 4);
	assert_int_equal(raft_role(fx_raft(&f, 4)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(fx_raft(&f, 4)->elections_started, 0);
	assert_int_equal(fx_count(&f, FX_ANY, 4, FX_ANY), 0);
	fx_deinit(&f);
}

/* §4.2.1: learners neither vote nor count toward a commit. */
static void test_learner_does_not_count_toward_commit(void **state)
{
	struct fixture f;
	uint64_t commit;

	(void)state;
	setup_group(&f, 4, 3);
	commit = raft_commit_index(fx_raft(&f, 1));
	fx_cut(&f, 1, 2);
	fx_cut(&f, 1, 3);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_progress_of(fx_raft(&f, 1), 4)->match, commit + 1);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit);
	fx_heal(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit + 1);
	/* Nobody asks a learner for a vote. */
	fx_timeout(&f, 2);
	assert_int_equal(fx_count(&f, RAFT_MSG_PRE_VOTE, 2, 4), 0);
	assert_int_equal(fx_count(&f, RAFT_MSG_PRE_VOTE, 2, 3), 1);
	fx_deinit(&f);
}

/* Witnesses: appends to them carry RAFT_MSG_FLAG_METADATA, and their acks count. */
static void test_witness_gets_metadata_appends_and_counts(void **state)
{
	struct fixture f;
	const struct raft_msg *m;
	uint64_t commit;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_WITNESS;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10); /* Progress settles into replicating. */
	commit = raft_commit_index(fx_raft(&f, 1));
	fx_cut(&f, 1, 2);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_collect(&f, 1); /* The leader's write is durable: now the witness gets it. */
	m = fx_find(&f, RAFT_MSG_APPEND, 1, 3);
	assert_non_null(m);
	assert_true(m->flags & RAFT_MSG_FLAG_METADATA);
	assert_false(fx_find(&f, RAFT_MSG_APPEND, 1, 2)->flags & RAFT_MSG_FLAG_METADATA);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), commit + 1);
	fx_deinit(&f);
}

/* A witness gets only entries the leader holds durably: otherwise a leader
 * crash losing its unsynced tail could leave the witness the only holder of
 * an entry, more up to date than every voter (flotilla-sim seed 22799). */
static void test_witness_gets_only_durable_entries(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_WITNESS;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	fx_hold(&f, 1, true);
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	assert_non_null(fx_find(&f, RAFT_MSG_APPEND, 1, 2));
	assert_null(fx_find(&f, RAFT_MSG_APPEND, 1, 3));
	fx_persist(&f, 1);
	assert_non_null(fx_find(&f, RAFT_MSG_APPEND, 1, 3));
	fx_deinit(&f);
}

/* Witnesses vote, so a voter can be elected with one, but never campaign themselves. */
static void test_witness_votes_but_never_campaigns(void **state)
{
	struct fixture f;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_WITNESS;
	fx_start(&f);
	assert_int_equal(raft_next_deadline(fx_raft(&f, 3)), RAFT_DEADLINE_NONE);
	fx_elect(&f, 1);
	fx_node(&f, 1)->crashed = true;
	fx_peer_down(&f, 3, 1);
	assert_int_equal(raft_role(fx_raft(&f, 3)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(f.net_count, 0);
	f.now += 2 * FX_ELECTION_MS;
	fx_tick(&f, 3);
	assert_int_equal(f.net_count, 0);
	fx_timeout(&f, 2);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 2)));
	fx_deinit(&f);
}

/* A witness has entry metadata only: it may not become a voter or a learner. */
static void test_witness_cannot_be_promoted(void **state)
{
	struct fixture f;
	struct raft_conf c;

	(void)state;
	fx_setup(&f, 3);
	f.conf.members[2].role = RAFT_MEMBER_WITNESS;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	c = *raft_conf(fx_raft(&f, 1));
	c.members[2].role = RAFT_MEMBER_VOTER;
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	c.members[2].role = RAFT_MEMBER_LEARNER;
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	fx_deinit(&f);
}

/* Thesis §4.3: a change goes through a joint configuration and leaves it on its own. */
static void test_learner_promotion_enters_and_leaves_joint(void **state)
{
	static const uint64_t voters[] = {1, 2, 3, 4};
	struct fixture f;
	struct raft_conf target = fx_conf_of(voters, 4, NULL, 0);
	const struct raft_conf *c;

	(void)state;
	setup_group(&f, 4, 3);
	assert_int_equal(raft_conf_role(raft_conf(fx_raft(&f, 1)), 4), RAFT_MEMBER_LEARNER);
	assert_int_equal(fx_change(&f, 1, &target), 0);
	c = raft_conf(fx_raft(&f, 1));
	assert_true(c->joint); /* In force as soon as appended (§4.1). */
	assert_int_equal(raft_conf_role(c, 4), RAFT_MEMBER_VOTER);
	assert_int_equal(c->members[3].role_old, RAFT_MEMBER_LEARNER);
	fx_deliver_all(&f);
	for (uint64_t id = 1; id <= 4; id++) {
		c = raft_conf(fx_raft(&f, id));
		assert_false(c->joint);
		assert_int_equal(raft_conf_role(c, 4), RAFT_MEMBER_VOTER);
	}
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	assert_int_not_equal(raft_next_deadline(fx_raft(&f, 4)), RAFT_DEADLINE_NONE);
	fx_deinit(&f);
}

/* Common start of the joint-quorum tests: {1,2,3} -> {1,4,5}, nothing delivered. */
static uint64_t start_joint_change(struct fixture *f)
{
	static const uint64_t voters[] = {1, 4, 5};
	struct raft_conf target = fx_conf_of(voters, 3, NULL, 0);

	setup_group(f, 5, 3);
	assert_int_equal(fx_change(f, 1, &target), 0);
	assert_true(raft_conf(fx_raft(f, 1))->joint);
	return raft_last_index(fx_raft(f, 1));
}

static void ack_from(struct fixture *f, uint64_t id)
{
	assert_true(fx_deliver(f, RAFT_MSG_APPEND, 1, id));
	assert_true(fx_deliver(f, RAFT_MSG_APPEND_RESP, id, 1));
}

/* §4.3: while joint, the new majority alone does not commit. */
static void test_joint_commit_needs_old_majority(void **state)
{
	struct fixture f;
	uint64_t joint;

	(void)state;
	joint = start_joint_change(&f);
	ack_from(&f, 4);
	ack_from(&f, 5);
	assert_true(raft_commit_index(fx_raft(&f, 1)) < joint);
	ack_from(&f, 2);
	assert_true(raft_commit_index(fx_raft(&f, 1)) >= joint);
	fx_deinit(&f);
}

/* §4.3: while joint, the old majority alone does not commit. */
static void test_joint_commit_needs_new_majority(void **state)
{
	struct fixture f;
	uint64_t joint;

	(void)state;
	joint = start_joint_change(&f);
	ack_from(&f, 2);
	ack_from(&f, 3);
	assert_true(raft_commit_index(fx_raft(&f, 1)) < joint);
	ack_from(&f, 4);
	assert_true(raft_commit_index(fx_raft(&f, 1)) >= joint);
	/* The final configuration follows at once, and once committed, 2 and 3 are gone. */
	assert_false(raft_conf(fx_raft(&f, 1))->joint);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	assert_null(raft_progress_of(fx_raft(&f, 1), 2));
	assert_int_equal(raft_conf_role(raft_conf(fx_raft(&f, 1)), 2), RAFT_MEMBER_NONE);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* §4.3: elections while joint need both majorities too. */
static void test_joint_election_needs_both_majorities(void **state)
{
	struct fixture f;

	(void)state;
	/* Joint {1,2,3} -> {1,4,5}, as booted from a log holding that entry. */
	fx_setup(&f, 5);
	f.conf.joint = true;
	for (uint32_t i = 0; i < 5; i++) {
		f.conf.members[i].role_old = i < 3 ? RAFT_MEMBER_VOTER : RAFT_MEMBER_NONE;
		f.conf.members[i].role = (i == 0 || i >= 3) ? RAFT_MEMBER_VOTER : RAFT_MEMBER_NONE;
	}
	fx_start(&f);
	/* Candidate 1 with votes from 4 and 5 (new majority) but none of 2 and 3. */
	fx_cut(&f, 1, 2);
	fx_cut(&f, 1, 3);
	fx_timeout(&f, 1);
	fx_deliver_all(&f);
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	fx_heal(&f);
	fx_cut(&f, 1, 4);
	fx_cut(&f, 1, 5);
	fx_timeout(&f, 1);
	fx_deliver_all(&f);
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	fx_heal(&f);
	fx_cut(&f, 1, 3);
	fx_cut(&f, 1, 5);
	fx_timeout(&f, 1);
	fx_deliver_all(&f);
	assert_true(raft_is_leader(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* Thesis §4.1: one change at a time; RAFT_ERR_CONF_PENDING until the last one is final. */
static void test_only_one_change_at_a_time(void **state)
{
	static const uint64_t v123[] = {1, 2, 3}, v1234[] = {1, 2, 3, 4}, l4[] = {4};
	struct fixture f;
	struct raft_conf promote = fx_conf_of(v1234, 4, NULL, 0), back = fx_conf_of(v123, 3, l4, 1);

	(void)state;
	fx_setup(&f, 4);
	f.conf.members[3].role = RAFT_MEMBER_LEARNER;
	fx_start(&f);
	assert_int_equal(fx_change(&f, 1, &promote), RAFT_ERR_NOT_LEADER);
	fx_timeout(&f, 1);
	fx_deliver_votes(&f);
	/* A new leader first commits an entry of its term. */
	assert_int_equal(fx_change(&f, 1, &promote), RAFT_ERR_CONF_PENDING);
	fx_deliver_all(&f);
	assert_int_equal(fx_change(&f, 1, &promote), 0);
	assert_int_equal(fx_change(&f, 1, &back), RAFT_ERR_CONF_PENDING); /* Joint. */
	ack_from(&f, 2);
	ack_from(&f, 3); /* Majorities of {1,2,3} and {1,2,3,4}. */
	assert_false(raft_conf(fx_raft(&f, 1))->joint);
	assert_int_equal(fx_change(&f, 1, &back), RAFT_ERR_CONF_PENDING); /* Final uncommitted. */
	fx_deliver_all(&f);
	assert_int_equal(fx_change(&f, 1, &back), 0);
	fx_deinit(&f);
}

/* raft_change refuses memberships that are not valid. */
static void test_change_rejects_invalid_memberships(void **state)
{
	static const uint64_t v12[] = {1, 2}, l3[] = {3};
	struct fixture f;
	struct raft_conf c;

	(void)state;
	setup_group(&f, 3, 3);
	c = (struct raft_conf){0};
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	c = fx_conf_of(NULL, 0, l3, 1); /* No voter. */
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	c = fx_conf_of(v12, 2, NULL, 0);
	c.members[1].id = 1; /* Duplicate. */
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	c = fx_conf_of(v12, 2, NULL, 0);
	c.joint = true;
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	c = fx_conf_of(v12, 2, NULL, 0);
	c.members[0].id = RAFT_NONE;
	assert_int_equal(fx_change(&f, 1, &c), RAFT_ERR_CONF_INVALID);
	assert_int_equal(raft_last_index(fx_raft(&f, 1)), raft_commit_index(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* Thesis §4.2.2: a leader removed from the group steps down once the change commits. */
static void test_removed_leader_steps_down_after_commit(void **state)
{
	static const uint64_t v23[] = {2, 3};
	struct fixture f;
	struct raft_conf target = fx_conf_of(v23, 2, NULL, 0);

	(void)state;
	setup_group(&f, 3, 3);
	assert_int_equal(fx_change(&f, 1, &target), 0);
	/* Joint commits with 2 and 3; the final configuration is appended. */
	fx_deliver_matching(&f, RAFT_MSG_APPEND, 1, FX_ANY);
	fx_deliver_matching(&f, RAFT_MSG_APPEND_RESP, FX_ANY, 1);
	assert_false(raft_conf(fx_raft(&f, 1))->joint);
	assert_true(raft_is_leader(fx_raft(&f, 1))); /* Still leads until the final commits. */
	fx_deliver_all(&f);
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_FOLLOWER);
	assert_int_equal(raft_next_deadline(fx_raft(&f, 1)), RAFT_DEADLINE_NONE);
	fx_run(&f, 4 * FX_ELECTION_MS, 10);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_false(raft_is_leader(fx_raft(&f, 1)));
	fx_deinit(&f);
}

/* §4.2.1: a learner far behind the leader's log is not made a voter; once it
 * caught up, the same promotion goes through. */
static void test_lagging_learner_is_not_promoted(void **state)
{
	static const uint64_t voters[] = {1, 2, 3, 4};
	struct fixture f;
	struct raft_conf target = fx_conf_of(voters, 4, NULL, 0);

	(void)state;
	fx_setup(&f, 4);
	f.config.promote_lag_entries_max = 8;
	f.conf.members[3].role = RAFT_MEMBER_LEARNER;
	fx_start(&f);
	fx_elect(&f, 1);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	fx_cut(&f, 1, 4);
	assert_int_equal(fx_propose_many(&f, 1, 20, 8), 0);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_commit_index(fx_raft(&f, 1)), raft_last_index(fx_raft(&f, 1)));
	assert_true(raft_last_index(fx_raft(&f, 4)) + 8 < raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(fx_change(&f, 1, &target), RAFT_ERR_LAGGING);
	assert_false(raft_conf(fx_raft(&f, 1))->joint); /* Nothing was appended. */
	fx_heal(&f);
	fx_run(&f, 10 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_last_index(fx_raft(&f, 4)), raft_last_index(fx_raft(&f, 1)));
	assert_int_equal(fx_change(&f, 1, &target), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_conf_role(raft_conf(fx_raft(&f, 1)), 4), RAFT_MEMBER_VOTER);
	assert_false(raft_conf(fx_raft(&f, 1))->joint);
	fx_deinit(&f);
}

/* §3.10 with §4.2.2: a removed leader hands leadership to an up-to-date voter
 * as it steps down, so a new leader is elected without any timeout passing. */
static void test_removed_leader_hands_off_leadership(void **state)
{
	static const uint64_t v23[] = {2, 3};
	struct fixture f;
	struct raft_conf target = fx_conf_of(v23, 2, NULL, 0);
	uint64_t now;

	(void)state;
	setup_group(&f, 3, 3);
	now = f.now;
	assert_int_equal(fx_change(&f, 1, &target), 0);
	fx_deliver_all(&f);
	assert_int_equal(f.now, now); /* No time passed: no election timeout fired. */
	assert_int_equal(raft_role(fx_raft(&f, 1)), RAFT_ROLE_FOLLOWER);
	assert_true(raft_is_leader(fx_raft(&f, 2)) || raft_is_leader(fx_raft(&f, 3)));
	assert_true(raft_leader(fx_raft(&f, 2)) == raft_leader(fx_raft(&f, 3)));
	fx_deinit(&f);
}

/* Thesis §4.1: a configuration from an entry that gets truncated is undone. */
static void test_truncated_conf_entry_is_undone(void **state)
{
	static const uint64_t terms[] = {1}, v1234[] = {1, 2, 3, 4};
	struct fixture f;
	struct raft_conf c = fx_conf_of(v1234, 4, NULL, 0);
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	struct raft_entry e = {.term = 2, .index = 2, .type = RAFT_ENTRY_CONF};
	struct raft_entry other = {.term = 3, .index = 2, .type = RAFT_ENTRY_NORMAL};
	struct raft_msg m = fx_msg(RAFT_MSG_APPEND, 1, 3, 2);

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 1, 1, 1);
	fx_start(&f);
	raft_conf_encode(&c, buf);
	e.data = buf;
	e.size = raft_conf_encoded_size(&c);
	m.index = 1;
	m.log_term = 1;
	m.entries = &e;
	m.entries_count = 1;
	fx_step(&f, 3, &m);
	assert_int_equal(raft_conf(fx_raft(&f, 3))->members_count, 4);
	m = fx_msg(RAFT_MSG_APPEND, 2, 3, 3);
	m.index = 1;
	m.log_term = 1;
	m.entries = &other;
	m.entries_count = 1;
	fx_step(&f, 3, &m);
	assert_int_equal(raft_term_at(fx_raft(&f, 3), 2), 3);
	assert_int_equal(raft_conf(fx_raft(&f, 3))->members_count, 3);
	fx_deinit(&f);
}

/* The CONF entry payload decodes to what was encoded. */
static void test_conf_encode_decode_round_trip(void **state)
{
	struct raft_conf c = {0}, d;
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];

	(void)state;
	c.joint = true;
	c.members[0] = (struct raft_member){1, RAFT_MEMBER_VOTER, RAFT_MEMBER_VOTER};
	c.members[1] = (struct raft_member){2, RAFT_MEMBER_NONE, RAFT_MEMBER_VOTER};
	c.members[2] =
	    (struct raft_member){0xfedcba9876543210ull, RAFT_MEMBER_VOTER, RAFT_MEMBER_LEARNER};
	c.members[3] = (struct raft_member){4, RAFT_MEMBER_WITNESS, RAFT_MEMBER_NONE};
	c.members_count = 4;
	assert_int_equal(raft_conf_encoded_size(&c), 8 + 16 * 4);
	raft_conf_encode(&c, buf);
	memset(&d, 0xff, sizeof(d));
	assert_int_equal(raft_conf_decode(&d, buf, raft_conf_encoded_size(&c)), 0);
	assert_true(d.joint);
	assert_int_equal(d.members_count, 4);
	assert_memory_equal(d.members, c.members, 4 * sizeof(c.members[0]));
	/* A full, non-joint one too. */
	memset(&c, 0, sizeof(c));
	for (uint64_t id = 1; id <= RAFT_MEMBERS_MAX; id++)
		assert_int_equal(raft_conf_add(&c, id, RAFT_MEMBER_LEARNER), 0);
	assert_int_equal(raft_conf_add(&c, 99, RAFT_MEMBER_VOTER), -ENOSPC);
	raft_conf_encode(&c, buf);
	assert_int_equal(raft_conf_decode(&d, buf, raft_conf_encoded_size(&c)), 0);
	assert_false(d.joint);
	assert_memory_equal(&d, &c, sizeof(c));
}

/* raft_conf_decode rejects every malformed payload (it comes from disk or the network). */
static void test_conf_decode_rejects_malformed_bytes(void **state)
{
	struct raft_conf c = {0}, d;
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX + 16], bad[sizeof(buf)];
	uint32_t size;

	(void)state;
	assert_int_equal(raft_conf_add(&c, 1, RAFT_MEMBER_VOTER), 0);
	assert_int_equal(raft_conf_add(&c, 2, RAFT_MEMBER_VOTER), 0);
	size = raft_conf_encoded_size(&c);
	raft_conf_encode(&c, buf);
	assert_int_equal(raft_conf_decode(&d, buf, size), 0);
	assert_int_equal(raft_conf_decode(&d, buf, 7), -EINVAL);        /* Short header. */
	assert_int_equal(raft_conf_decode(&d, buf, size - 1), -EINVAL); /* Short body. */
	memset(buf + size, 0, 16);
	assert_int_equal(raft_conf_decode(&d, buf, size + 16), -EINVAL); /* Trailing bytes. */
	memcpy(bad, buf, size);
	bad[0] = RAFT_MEMBERS_MAX + 1; /* Too many members. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	bad[4] = 2; /* Unknown flag. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	memset(bad + 8, 0, 8); /* Id 0. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	bad[8 + 8] = 4; /* Unknown role. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	bad[8 + 9] = RAFT_MEMBER_VOTER; /* role_old outside a joint configuration. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	bad[4] = 1;
	bad[8 + 8] = RAFT_MEMBER_NONE; /* Joint, but in neither half. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
	memcpy(bad, buf, size);
	bad[8 + 16] = 1; /* Duplicate id. */
	assert_int_equal(raft_conf_decode(&d, bad, size), -EINVAL);
}

/* raft_compact drops entries up to an applied index; the term there is still known. */
static void test_compact_drops_applied_entries(void **state)
{
	struct fixture f;
	struct raft *r;

	(void)state;
	setup_group(&f, 3, 3);
	r = fx_raft(&f, 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(fx_node(&f, 1)->applied_index, 11);
	assert_int_equal(raft_compact(r, 12), RAFT_ERR_UNAVAILABLE);
	assert_int_equal(raft_compact(r, 6), 0);
	assert_int_equal(raft_first_index(r), 7);
	assert_null(raft_entry_at(r, 6));
	assert_non_null(raft_entry_at(r, 7));
	assert_int_equal(raft_term_at(r, 6), raft_term(r));
	assert_int_equal(raft_compact(r, 6), RAFT_ERR_COMPACTED);
	assert_int_equal(raft_compact(r, 3), RAFT_ERR_COMPACTED);
	assert_int_equal(raft_last_index(r), 11);
	/* Replication goes on above the compacted prefix. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_commit_index(r), 12);
	fx_deinit(&f);
}

/* Chapter 5: a follower whose next entry was compacted away is sent a snapshot. */
static void test_follower_behind_compacted_log_gets_snapshot(void **state)
{
	struct fixture f;
	const struct raft_msg *m = NULL;
	struct raft *r;

	(void)state;
	setup_group(&f, 3, 3);
	r = fx_raft(&f, 1);
	fx_isolate(&f, 3);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	assert_int_equal(raft_compact(r, 8), 0);
	fx_heal(&f);
	for (int i = 0; i < 100 && m == NULL; i++) {
		fx_advance(&f, 10);
		while (f.net_count > 0 && (m = fx_find(&f, RAFT_MSG_SNAPSHOT, 1, 3)) == NULL)
			fx_deliver(&f, FX_ANY, FX_ANY, FX_ANY);
	}
	assert_non_null(m);
	assert_int_equal(m->index, 8);
	assert_int_equal(m->log_term, raft_term(r));
	assert_non_null(m->snapshot);
	assert_int_equal(m->snapshot->conf.members_count, 3);
	assert_int_equal(raft_progress_of(r, 3)->state, RAFT_PROGRESS_SNAPSHOT);
	fx_deliver_all(&f);
	assert_int_equal(fx_node(&f, 3)->snapshots_count, 1);
	assert_int_equal(fx_node(&f, 3)->snapshot_last.index, 8);
	assert_int_equal(raft_first_index(fx_raft(&f, 3)), 9);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_progress_of(r, 3)->state, RAFT_PROGRESS_REPLICATE);
	assert_int_equal(raft_last_index(fx_raft(&f, 3)), raft_last_index(r));
	assert_int_equal(fx_node(&f, 3)->applied_index, raft_commit_index(r));
	fx_deinit(&f);
}

/* Chapter 5: installing a snapshot discards a conflicting log and takes its membership. */
static void test_snapshot_install_resets_log_and_conf(void **state)
{
	static const uint64_t terms[] = {1, 1, 2, 2};
	struct fixture f;
	struct raft_snapshot_meta snap = {.index = 10, .term = 3};
	struct raft_msg m = fx_msg(RAFT_MSG_SNAPSHOT, 1, 2, 3);
	struct raft *r;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 4, 2, 1);
	fx_start(&f);
	r = fx_raft(&f, 2);
	snap.conf = f.conf;
	assert_int_equal(raft_conf_add(&snap.conf, 4, RAFT_MEMBER_LEARNER), 0);
	m.index = 10;
	m.log_term = 3;
	m.snapshot = &snap;
	fx_hold(&f, 2, true);
	fx_step(&f, 2, &m);
	assert_int_equal(fx_node(&f, 2)->snapshots_count, 1);
	assert_int_equal(fx_node(&f, 2)->snapshot_last.index, 10);
	assert_int_equal(fx_node(&f, 2)->snapshot_last.term, 3);
	assert_int_equal(raft_first_index(r), 11);
	assert_int_equal(raft_last_index(r), 10);
	assert_int_equal(raft_term_at(r, 10), 3);
	assert_null(raft_entry_at(r, 4));
	assert_int_equal(raft_commit_index(r), 10);
	assert_int_equal(raft_conf(r)->members_count, 4);
	assert_int_equal(raft_conf_role(raft_conf(r), 4), RAFT_MEMBER_LEARNER);
	/* Acknowledged once the install is durable. */
	assert_int_equal(fx_count(&f, RAFT_MSG_APPEND_RESP, 2, 1), 0);
	fx_persist(&f, 2);
	assert_int_equal(fx_find(&f, RAFT_MSG_APPEND_RESP, 2, 1)->index, 10);
	fx_deinit(&f);
}

/* Chapter 5: a snapshot whose last entry we already hold keeps the log after it. */
static void test_snapshot_of_matching_prefix_keeps_the_log(void **state)
{
	static const uint64_t terms[] = {1, 1, 2, 2};
	struct fixture f;
	struct raft_snapshot_meta snap = {.index = 3, .term = 2};
	struct raft_msg m = fx_msg(RAFT_MSG_SNAPSHOT, 1, 2, 3);
	struct raft *r;

	(void)state;
	fx_setup(&f, 3);
	fx_boot_log_all(&f, terms, 4, 2, 1);
	fx_start(&f);
	r = fx_raft(&f, 2);
	snap.conf = f.conf;
	m.snapshot = &snap;
	fx_step(&f, 2, &m);
	assert_int_equal(fx_node(&f, 2)->snapshots_count, 0);
	assert_int_equal(raft_last_index(r), 4);
	assert_int_equal(raft_commit_index(r), 3);
	assert_int_equal(fx_find(&f, RAFT_MSG_APPEND_RESP, 2, 1)->index, 3);
	fx_deinit(&f);
}

/* raft_want_snapshot: a follower whose state machine must be rebuilt gets the
 * leader's snapshot although its log already holds that index; the log after
 * the snapshot stays, committed entries are applied again on top of it, and
 * term and vote do not change. The leader cannot ask itself. */
static void test_follower_wanting_a_snapshot_rebuilds_over_its_log(void **state)
{
	struct fixture f;
	struct raft *leader, *r;
	uint64_t term, vote, last;

	(void)state;
	setup_group(&f, 3, 3);
	leader = fx_raft(&f, 1);
	r = fx_raft(&f, 2);
	for (int i = 0; i < 10; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	last = raft_last_index(leader);
	assert_int_equal(fx_node(&f, 2)->applied_index, last);
	assert_int_equal(raft_compact(leader, 6), 0);
	term = raft_term(r);
	vote = r->vote;
	assert_int_equal(raft_want_snapshot(leader), -EINVAL);
	assert_int_equal(raft_want_snapshot(r), 0);
	assert_true(raft_is_snapshot_wanted(r));
	fx_collect(&f, 2);
	assert_non_null(fx_find(&f, RAFT_MSG_SNAPSHOT_WANTED, 2, 1));
	fx_deliver_all(&f);
	assert_int_equal(fx_node(&f, 2)->snapshots_count, 1);
	assert_int_equal(fx_node(&f, 2)->snapshot_last.index, 6);
	assert_false(raft_is_snapshot_wanted(r));
	/* The log after the snapshot is kept and re-applied. */
	assert_int_equal(raft_first_index(r), 7);
	assert_int_equal(raft_last_index(r), last);
	assert_int_equal(raft_commit_index(r), last);
	assert_int_equal(fx_node(&f, 2)->applied_index, last);
	assert_int_equal(raft_term(r), term);
	assert_int_equal(r->vote, vote);
	/* Replication goes on. */
	assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_int_equal(raft_last_index(r), last + 1);
	assert_int_equal(fx_node(&f, 2)->applied_index, last + 1);
	fx_deinit(&f);
}

/* A leader without a recent enough snapshot says it wants one taken, and
 * compacting offers it to the follower that asked. */
static void test_snapshot_request_waits_for_a_compaction(void **state)
{
	struct fixture f;
	struct raft *leader;

	(void)state;
	setup_group(&f, 3, 3);
	leader = fx_raft(&f, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(fx_propose(&f, 1, 8), 0);
	fx_deliver_all(&f);
	fx_run(&f, 2 * FX_HEARTBEAT_MS, 10);
	assert_false(raft_is_snapshot_requested(leader));
	assert_int_equal(raft_want_snapshot(fx_raft(&f, 3)), 0);
	fx_collect(&f, 3);
	fx_deliver_all(&f);
	assert_true(raft_is_snapshot_requested(leader));
	assert_int_equal(fx_node(&f, 3)->snapshots_count, 0);
	assert_int_equal(raft_compact(leader, raft_applied_index(leader)), 0);
	assert_false(raft_is_snapshot_requested(leader));
	fx_collect(&f, 1);
	fx_deliver_all(&f);
	assert_int_equal(fx_node(&f, 3)->snapshots_count, 1);
	assert_int_equal(fx_node(&f, 3)->snapshot_last.index, raft_applied_index(leader));
	fx_deinit(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_learner_receives_log_but_never_campaigns),
	    cmocka_unit_test(test_learner_does_not_count_toward_commit),
	    cmocka_unit_test(test_witness_gets_metadata_appends_and_counts),
	    cmocka_unit_test(test_witness_votes_but_never_campaigns),
	    cmocka_unit_test(test_witness_gets_only_durable_entries),
	    cmocka_unit_test(test_witness_cannot_be_promoted),
	    cmocka_unit_test(test_learner_promotion_enters_and_leaves_joint),
	    cmocka_unit_test(test_joint_commit_needs_old_majority),
	    cmocka_unit_test(test_joint_commit_needs_new_majority),
	    cmocka_unit_test(test_joint_election_needs_both_majorities),
	    cmocka_unit_test(test_only_one_change_at_a_time),
	    cmocka_unit_test(test_change_rejects_invalid_memberships),
	    cmocka_unit_test(test_removed_leader_steps_down_after_commit),
	    cmocka_unit_test(test_lagging_learner_is_not_promoted),
	    cmocka_unit_test(test_removed_leader_hands_off_leadership),
	    cmocka_unit_test(test_truncated_conf_entry_is_undone),
	    cmocka_unit_test(test_conf_encode_decode_round_trip),
	    cmocka_unit_test(test_conf_decode_rejects_malformed_bytes),
	    cmocka_unit_test(test_compact_drops_applied_entries),
	    cmocka_unit_test(test_follower_behind_compacted_log_gets_snapshot),
	    cmocka_unit_test(test_snapshot_install_resets_log_and_conf),
	    cmocka_unit_test(test_snapshot_of_matching_prefix_keeps_the_log),
	    cmocka_unit_test(test_follower_wanting_a_snapshot_rebuilds_over_its_log),
	    cmocka_unit_test(test_snapshot_request_waits_for_a_compaction),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* A test name, or a pattern with '*'. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
