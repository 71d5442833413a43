/* Membership: the history of configurations (the last one in force, thesis
 * §4.1), the leader's progress per member, the quorum rules (joint consensus
 * needs a majority of each half, §4.3) and raft_change(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/raft_internal.h"

/* ------------------------------------------------------------ membership */

/* May id start an election under conf? Voters may; witnesses and learners never. */
static bool conf_can_lead(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id == id)
			return m->role == RAFT_MEMBER_VOTER ||
			       (conf->joint && m->role_old == RAFT_MEMBER_VOTER &&
				m->role != RAFT_MEMBER_WITNESS);
	}
	return false;
}

/* Thesis §4.2.2: "a server that is not part of its own latest configuration
 * should still start new elections, as it might still be needed until the
 * C_new entry is committed". So a voter of the committed configuration may
 * campaign while a later one that demotes or removes it is uncommitted; its
 * own vote counts only where it is a voter (vote_tally), and once elected
 * it steps down when C_new commits (raft_conf_advance). Without this, a group
 * whose most up-to-date logs sit on such nodes (and on witnesses) can elect
 * no one. */
bool raft_is_promotable(const struct raft *raft)
{
	if (raft->repairing)
		return false; /* REPAIR: it may lack committed entries. */
	if (conf_can_lead(raft_conf_current(raft), raft->config.id))
		return true;
	return raft->confs[raft->confs_count - 1].index > raft->commit &&
	       conf_can_lead(raft_conf_in_force_at(raft, raft->commit), raft->config.id);
}

struct raft_progress *raft_progress_find(struct raft *raft, uint64_t id)
{
	for (uint32_t i = 0; i < raft->progress_count; i++)
		if (raft->progress[i].id == id)
			return &raft->progress[i];
	return NULL;
}

static void progress_reset(struct raft *raft, struct raft_progress *pr, uint64_t id)
{
	*pr = (struct raft_progress){.id = id,
				     .next = raft_log_last(&raft->log) + 1,
				     .state = RAFT_PROGRESS_PROBE,
				     .state_ms = raft->now_ms,
				     .recent_active = true};
	if (id == raft->config.id)
		pr->match = raft->log.stable_index;
}

/* Leader: one progress per member of the configuration in force, self
 * included, in one allocation after the heartbeat ring (raft->hb_sent_ms).
 * Existing progress (and the ring) is kept; members that left are dropped,
 * with their inflight windows. Returns 0, or -ENOMEM with the old progress
 * kept (the caller steps down). */
int raft_progress_sync(struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	struct raft_progress *old = raft->progress;
	uint32_t old_count = raft->progress_count;
	uint32_t count = conf->members_count ? conf->members_count : 1;
	uint64_t *ring = calloc(1, HB_RING * sizeof(*ring) + count * sizeof(*old));
	struct raft_progress *prs;

	ASSERT(raft->role == RAFT_ROLE_LEADER); /* Only a leader tracks progress. */
	if (ring == NULL)
		return -ENOMEM;
	prs = (struct raft_progress *)(ring + HB_RING);
	if (raft->hb_sent_ms != NULL)
		memcpy(ring, raft->hb_sent_ms, HB_RING * sizeof(*ring));
	for (uint32_t i = 0; i < conf->members_count; i++) {
		uint64_t id = conf->members[i].id;
		bool kept = false;

		for (uint32_t j = 0; j < old_count; j++) {
			if (old[j].id == id) {
				prs[i] = old[j];
				old[j].inflight = NULL; /* Moved. */
				kept = true;
			}
		}
		if (!kept)
			progress_reset(raft, &prs[i], id);
		ASSERT(prs[i].id == conf->members[i].id); /* quorum_value pairs them by slot. */
	}
	raft_progress_clear(raft);
	raft->hb_sent_ms = ring;
	raft->progress = prs;
	raft->progress_count = conf->members_count;
	return 0;
}

void raft_progress_clear(struct raft *raft)
{
	for (uint32_t i = 0; i < raft->progress_count; i++)
		free(raft->progress[i].inflight);
	free(raft->hb_sent_ms); /* The progress follows it in one allocation. */
	raft->hb_sent_ms = NULL;
	raft->progress = NULL;
	raft->progress_count = 0;
}

/* Insertion sort, largest first: n is at most RAFT_MEMBERS_MAX, and this runs
 * on every acknowledgement, where qsort's call overhead showed in profiles. */
static void sort_desc(uint64_t *v, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		uint64_t x = v[i];
		uint32_t j = i;

		for (; j > 0 && v[j - 1] < x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

/* The largest value that a majority of the voters of every half of the
 * configuration in force has reached: the commit rule (§5.3 and §4.3: joint
 * consensus needs separate majorities) and the heartbeat quorum alike.
 * seq selects acked_seq instead of match. */
uint64_t raft_quorum_value(const struct raft *raft, bool seq)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	uint64_t result = UINT64_MAX;

	for (int h = 0; h < raft_conf_halves(conf); h++) {
		uint64_t values[RAFT_MEMBERS_MAX];
		uint32_t n = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			if (!raft_role_votes(raft_member_role_in(&conf->members[i], h)))
				continue;
			/* REPAIR: a repairing member's log may lack entries it once
			 * acknowledged; it counts for commits only once repaired. */
			values[n++] = seq ? pr->acked_seq : pr->repairing ? 0 : pr->match;
		}
		if (n == 0)
			continue;
		sort_desc(values, n);
		result = min_u64(result, values[n / 2]);
	}
	return result == UINT64_MAX ? 0 : result;
}

/* CheckQuorum (§6.2): has a majority of each half been heard from? */
bool raft_quorum_active(const struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);

	for (int h = 0; h < raft_conf_halves(conf); h++) {
		uint32_t n = 0, active = 0;

		for (uint32_t i = 0; i < raft->progress_count; i++) {
			const struct raft_progress *pr = &raft->progress[i];

			if (!raft_role_votes(raft_member_role_in(&conf->members[i], h)))
				continue;
			n++;
			if (pr->id == raft->config.id || pr->recent_active)
				active++;
		}
		if (n > 0 && active < n / 2 + 1)
			return false;
	}
	return true;
}

int raft_confs_reserve(struct raft *raft)
{
	struct raft_conf_slot *slots;

	if (raft->confs_count < raft->confs_cap)
		return 0;
	/* Most groups only ever hold one configuration: start with one slot. */
	if (raft->confs_cap == 0) {
		slots = malloc(sizeof(*slots));
		if (slots == NULL)
			return -ENOMEM;
		raft->confs_cap = 1;
	} else {
		slots = array_grow(raft->confs, &raft->confs_cap, raft->confs_count + 1,
				   sizeof(*slots), 2);
		if (slots == NULL)
			return -ENOMEM;
	}
	raft->confs = slots;
	return 0;
}

void raft_conf_push(struct raft *raft, uint64_t index, const struct raft_conf *conf)
{
	ASSERT(raft->confs_count < raft->confs_cap); /* Reserved by raft_confs_reserve(). */
	ASSERT(raft->confs_count == 0 || raft->confs[raft->confs_count - 1].index <= index);
	ASSERT(conf->members_count <= RAFT_MEMBERS_MAX);
	raft->confs[raft->confs_count++] = (struct raft_conf_slot){.index = index, .conf = *conf};
}

/* A leader whose progress cannot follow its membership cannot count
 * quorums: it steps down, which is always safe. */
static void raft_progress_resync(struct raft *raft)
{
	if (raft->role == RAFT_ROLE_LEADER && raft_progress_sync(raft) != 0)
		raft_become_follower(raft, raft->term, RAFT_NONE);
}

/* A configuration is in force as soon as it is in the log (thesis §4.1). */
void raft_conf_entry_appended(struct raft *raft, const struct raft_entry *e)
{
	struct raft_conf conf;

	ASSERT(e->type == RAFT_ENTRY_CONF);
	ASSERT(e->index == raft_log_last(&raft->log)); /* Called right after the append. */
	if (raft_conf_decode(&conf, e->data, e->size) != 0)
		return;
	raft_conf_push(raft, e->index, &conf);
	raft_progress_resync(raft);
}

/* The log lost entries >= index: configurations from them are undone. */
void raft_conf_truncated(struct raft *raft, uint64_t index)
{
	bool changed = false;

	while (raft->confs_count > 1 && raft->confs[raft->confs_count - 1].index >= index) {
		raft->confs_count--;
		changed = true;
	}
	if (changed)
		raft_progress_resync(raft);
}

/* The configuration in force at index (for a snapshot taken there). */
/* No members: in force before a group's first configuration (a group that
 * starts from its first CONF entry, or joins and waits to be told). */
static const struct raft_conf conf_none;

const struct raft_conf *raft_conf_in_force_at(const struct raft *raft, uint64_t index)
{
	for (uint32_t i = raft->confs_count; i-- > 0;)
		if (raft->confs[i].index <= index)
			return &raft->confs[i].conf;
	/* Only once raft_confs_settle() dropped an empty base at index 0. */
	return raft->confs[0].index > index ? &conf_none : &raft->confs[0].conf;
}

void raft_confs_settle_slow(struct raft *raft)
{
	struct raft_conf_slot *slots;

	ASSERT(raft->confs_count == 2 && raft->confs[0].index == 0);
	ASSERT(raft->confs[0].conf.members_count == 0 && raft->confs[1].index <= raft->commit);
	raft->confs[0] = raft->confs[1];
	raft->confs_count = 1;
	slots = realloc(raft->confs, sizeof(*slots));
	if (slots != NULL) { /* Else the larger array stays: nothing is lost. */
		raft->confs = slots;
		raft->confs_cap = 1;
	}
}

/* Keep the configuration in force at index as the base of the history. */
void raft_confs_trim(struct raft *raft, uint64_t index)
{
	uint32_t base = 0;

	while (base + 1 < raft->confs_count && raft->confs[base + 1].index <= index)
		base++;
	if (base > 0) {
		memmove(raft->confs, raft->confs + base,
			(raft->confs_count - base) * sizeof(*raft->confs));
		raft->confs_count -= base;
	}
}

/* The leader's committed configuration no longer has it as a voter: step
 * down (§4.2.2), and hand leadership at once to a voter whose log matches
 * ours to the last entry (§3.10), so the group need not wait out an election
 * timeout. Only a complete log can win: a target that is behind would lose
 * its election, so none is asked then and the voters elect one on their own.
 * TimeoutNow lets the target's votes pass leader stickiness; that is safe
 * here because we stop leading (and serving lease reads) before it is sent. */
static void step_down_removed(struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	uint64_t target = RAFT_NONE;

	for (uint32_t i = 0; i < raft->progress_count && target == RAFT_NONE; i++) {
		const struct raft_progress *pr = &raft->progress[i];

		if (pr->id != raft->config.id && !pr->down &&
		    raft_conf_role(conf, pr->id) == RAFT_MEMBER_VOTER &&
		    pr->match == raft_log_last(&raft->log))
			target = pr->id;
	}
	raft_become_follower(raft, raft->term, RAFT_NONE);
	if (target != RAFT_NONE)
		raft_msg_new(raft, RAFT_MSG_TIMEOUT_NOW, target, false);
}

/* After commit passes a joint configuration, the leader appends the final one;
 * once that commits, a leader that is no longer a voter steps down (§4.2.2). */
void raft_conf_advance(struct raft *raft)
{
	const struct raft_conf *conf = raft_conf_current(raft);
	uint64_t index = raft_conf_current_index(raft);

	if (index > raft->commit)
		return;
	if (conf->joint) {
		struct raft_conf next = {0};
		uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];

		for (uint32_t i = 0; i < conf->members_count; i++) {
			struct raft_member m = conf->members[i];

			if (m.role == RAFT_MEMBER_NONE)
				continue;
			m.role_old = RAFT_MEMBER_NONE;
			next.members[next.members_count++] = m;
		}
		raft_conf_encode(&next, buf);
		if (raft_leader_append(raft, RAFT_ENTRY_CONF, buf, raft_conf_encoded_size(&next)) ==
		    0)
			raft_bcast_append(raft, false);
		return;
	}
	if (raft_conf_role(conf, raft->config.id) != RAFT_MEMBER_VOTER)
		step_down_removed(raft);
}

static bool conf_is_valid(const struct raft_conf *conf)
{
	bool has_voter = false;

	if (conf->members_count == 0 || conf->members_count > RAFT_MEMBERS_MAX || conf->joint)
		return false;
	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id == RAFT_NONE || m->role == RAFT_MEMBER_NONE ||
		    m->role > RAFT_MEMBER_WITNESS || m->role_old != RAFT_MEMBER_NONE)
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (conf->members[j].id == m->id)
				return false;
		has_voter |= m->role == RAFT_MEMBER_VOTER;
	}
	return has_voter;
}

/* Leader: is learner id replicating, within promote_lag_entries_max of our
 * last entry? A learner still probing or installing a snapshot is not. */
static bool learner_caught_up(const struct raft *raft, uint64_t id)
{
	const struct raft_progress *pr = raft_progress_of(raft, id);

	return pr != NULL && pr->state == RAFT_PROGRESS_REPLICATE &&
	       raft_log_last(&raft->log) - pr->match <= raft->config.promote_lag_entries_max;
}

int raft_change(struct raft *raft, const struct raft_conf *target)
{
	const struct raft_conf *cur;
	struct raft_conf joint = {.joint = true};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	int rv;

	raft_out_begin(raft);
	if (raft->role != RAFT_ROLE_LEADER)
		return RAFT_ERR_NOT_LEADER;
	cur = raft_conf_current(raft);
	/* One change at a time: the last one must be committed and final. */
	if (raft_conf_current_index(raft) > raft->commit || cur->joint ||
	    !raft_committed_in_term(raft))
		return RAFT_ERR_CONF_PENDING;
	if (raft->transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	if (!conf_is_valid(target))
		return RAFT_ERR_CONF_INVALID;
	for (uint32_t i = 0; i < target->members_count; i++) {
		struct raft_member m = target->members[i];

		m.role_old = (uint8_t)raft_conf_role(cur, m.id);
		/* A witness holds no payloads: as a full voter it could lead
		 * without the data. It must join anew as a learner instead. */
		if (m.role_old == RAFT_MEMBER_WITNESS && m.role != RAFT_MEMBER_WITNESS)
			return RAFT_ERR_CONF_INVALID;
		/* §4.2.1: a learner votes only once it has caught up. */
		if (m.role_old == RAFT_MEMBER_LEARNER && m.role == RAFT_MEMBER_VOTER &&
		    !learner_caught_up(raft, m.id))
			return RAFT_ERR_LAGGING;
		joint.members[joint.members_count++] = m;
	}
	for (uint32_t i = 0; i < cur->members_count; i++) {
		if (raft_conf_role(target, cur->members[i].id) != RAFT_MEMBER_NONE)
			continue;
		if (joint.members_count == RAFT_MEMBERS_MAX)
			return RAFT_ERR_CONF_INVALID;
		joint.members[joint.members_count++] =
		    (struct raft_member){.id = cur->members[i].id,
					 .role = RAFT_MEMBER_NONE,
					 .role_old = cur->members[i].role};
	}
	raft_wake(raft);
	raft_conf_encode(&joint, buf);
	rv = raft_leader_append(raft, RAFT_ENTRY_CONF, buf, raft_conf_encoded_size(&joint));
	if (rv != 0)
		return rv;
	raft_bcast_append(raft, false);
	return 0;
}
