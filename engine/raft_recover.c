/* Forced recovery of a group that lost a majority of its voters: this
 * replica becomes the group's single voter from its own log and state (like
 * etcd's --force-new-cluster), after which the group grows again by the
 * usual membership changes (raft_change).
 *
 * The happy path, in one call (raft_recover):
 *   1. the replica moves to a new term (raft_become_follower), stepping down
 *      if it led: nothing of the old configuration's quorums goes on;
 *   2. it appends, in that term, a CONF entry with itself as the only voter
 *      and every other member dropped. A configuration is in force as soon as
 *      it is in the log (thesis §4.1), so from here on its own vote is a
 *      majority;
 *   3. it campaigns (raft_campaign): its own vote wins at once, in the next
 *      term, and the new leader appends its no-op (§6.4, §8);
 *   4. once those entries are durable (raft_persisted) the leader's own match
 *      is a quorum, and committing its no-op commits its whole log (§5.4.2),
 *      the recovery entry included. Nothing commits before the write is
 *      durable: the leader counts itself only then, as always.
 * The CONF entry and the hard state reach the WAL like any others, so a
 * restart replays the single-voter configuration and the node elects
 * itself again.
 *
 * What it breaks, on purpose: Raft's safety rests on majorities that
 * intersect. Here the replica's log replaces the group's:
 *   - entries in (commit_before, last_before] of this replica become
 *     committed though no majority may ever have acknowledged them;
 *   - entries the lost majority committed that this replica did not hold
 *     (past last_before, or different from ours past commit_before, if a
 *     newer leader rewrote them there) are lost;
 *   - the lost members are dropped from the configuration, but their old
 *     data still holds the old one: should two of them come back with it,
 *     they are a majority of that configuration and may elect a leader of
 *     their own, and the group has two histories. The caller must make
 *     sure they never return with their data (see docs/operations.md).
 * The report gives the figures that bound what may have been lost. */
#include <errno.h>
#include <string.h>

#include "engine/raft_internal.h"

/* May this replica carry the group alone? It must hold the payloads (a
 * voter or a learner, not a witness) and not repair data it lost. */
static int recover_check(const struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	uint64_t id = raft->config.id;
	bool found = false;

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id != id)
			continue;
		found = m->role == RAFT_MEMBER_VOTER || m->role == RAFT_MEMBER_LEARNER ||
			(m->role == RAFT_MEMBER_NONE && m->role_old == RAFT_MEMBER_VOTER);
	}
	if (!found)
		return RAFT_ERR_CONF_INVALID; /* A witness, or not a member. */
	if (raft->repairing)
		return RAFT_ERR_REPAIRING; /* Its log may lack what it acknowledged. */
	return 0;
}

int raft_recover(struct raft *raft, struct raft_recover_report *report, uint64_t now_ms)
{
	const struct raft_conf *conf;
	struct raft_conf single = {.members_count = 1};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	int rv;

	raft_out_begin(raft);
	raft->now_ms = max_u64(raft->now_ms, now_ms);
	rv = recover_check(raft);
	if (rv != 0)
		return rv;
	rv = raft_confs_reserve(raft); /* Before anything changes: a failure changes nothing. */
	if (rv != 0)
		return rv;
	conf = raft_conf_current(raft); /* After the reserve, which may move the history. */
	*report = (struct raft_recover_report){.term_before = raft->term,
					       .commit_before = raft->commit,
					       .last_before = raft_log_last(&raft->log)};
	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id != raft->config.id)
			report->dropped[report->dropped_count++] = conf->members[i].id;
	single.members[0] = (struct raft_member){.id = raft->config.id, .role = RAFT_MEMBER_VOTER};
	raft_conf_encode(&single, buf);

	/* 1. A new term, above every one this replica took part in: a leader
	 * of the old configuration it knew (itself included) is deposed, and
	 * the recovery's entries come after everything it saw. */
	raft_become_follower(raft, raft->term + 1, RAFT_NONE);
	raft->snapshot_wanted = false;
	/* 2. The single-voter configuration, in force once appended. */
	rv = raft_log_append(&raft->log, raft->term, RAFT_ENTRY_CONF, buf,
			     raft_conf_encoded_size(&single));
	if (rv != 0)
		return rv; /* Out of memory: a new term and nothing else; retry. */
	report->conf_index = raft_log_last(&raft->log);
	raft_conf_appended(raft, raft_log_at(&raft->log, report->conf_index));
	ASSERT(raft_conf_current(raft)->members_count == 1);
	/* 3. Our own vote is the majority now: the campaign wins at once
	 * (unless out of memory: the election timer then tries again). */
	raft_campaign(raft, false);
	report->term = raft->term;
	return 0;
}
