/* flotilla-admin add-witness: make node W a witness of one group (--group G)
 * or of every group 1..N (--groups N), --parallel groups at a time, through
 * the pool of admin_member.c. W must be running (flotilla-node --join on,
 * known to the others as a peer). Each round of a group reads the leader's
 * MEMBERS and takes the step it calls for:
 *
 *   W not a member      JOIN on W (W hosts the group, empty, and waits),
 *                       then ADD_WITNESS W at the leader;
 *   W a witness         done once its log (metadata) is within --lag-max
 *                       entries of the leader's last index; until then the
 *                       JOIN is sent again (a W restarted empty would never
 *                       catch up) and the round backs off;
 *   W a voter/learner   failed: a member never becomes a witness (remove
 *                       it and add it anew).
 *
 * A change not yet committed is waited for. Output: one line per failed
 * group (and per group with --verbose), then a summary; with --json one
 * JSON document with every group's outcome. Exit status 0 when W is a
 * caught-up witness of every group, 1 when some group failed. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "tools/admin_internal.h"

static const char *const admin_witness_outcomes[ADMIN_OUTCOMES] = {"added", "already", "absent",
								   "failed"};

/* What one group's add-witness has seen so far. */
struct admin_witness_state {
	bool seen;        /* The membership was read once. */
	bool was_witness; /* W was a witness already at the first look. */
};

static int admin_witness_round(struct admin_worker *w, uint64_t group, void *state,
			       enum admin_outcome *outcome)
{
	const struct admin_options *opt = w->pool->opt;
	struct admin_witness_state *st = state;
	const struct client_member *mb = NULL;
	struct client_members m;
	struct admin_answer ans;
	uint32_t role;

	if (admin_leader_members(w, group, &m) != 0)
		return -EAGAIN;
	role = client_members_role(&m, opt->node);
	if (!st->seen) {
		st->seen = true;
		st->was_witness = role == CLIENT_ROLE_WITNESS;
	}
	if ((m.flags & CLIENT_MEMBERS_JOINT) != 0 || m.conf_index > m.commit_index) {
		snprintf(w->error, sizeof(w->error), "a membership change is not committed yet");
		return -EINPROGRESS;
	}
	switch (role) {
	case CLIENT_ROLE_NONE:
		if (admin_call(w, opt->node, CLIENT_OP_JOIN, group, 0, &ans) != 0 ||
		    ans.status != CLIENT_STATUS_OK)
			return -EAGAIN;
		return admin_change(w, CLIENT_OP_ADD_WITNESS, group, opt->node) ? 0 : -EAGAIN;
	case CLIENT_ROLE_WITNESS:
		break;
	default:
		snprintf(w->error, sizeof(w->error),
			 "node %" PRIu64 " is a %s of the group: a member never becomes a witness "
			 "(remove it, then add it anew)",
			 opt->node, role == CLIENT_ROLE_VOTER ? "voter" : "learner");
		*outcome = ADMIN_FAILED;
		return 1;
	}
	for (uint32_t i = 0; i < m.members_count; i++)
		if (m.members[i].id == opt->node)
			mb = &m.members[i];
	if (mb != NULL && m.last_index - mb->match <= opt->lag_max) {
		*outcome = st->was_witness ? ADMIN_ALREADY : ADMIN_DONE;
		return 1;
	}
	snprintf(w->error, sizeof(w->error),
		 "witness %" PRIu64 " is %" PRIu64 " entries behind the leader (--lag-max %" PRIu64
		 ")",
		 opt->node, mb != NULL ? m.last_index - mb->match : m.last_index, opt->lag_max);
	admin_call(w, opt->node, CLIENT_OP_JOIN, group, 0, &ans);
	return -EAGAIN;
}

int admin_add_witness(const struct admin_options *opt)
{
	static struct admin_pool pool;
	int rv;

	pool = (struct admin_pool){
	    .opt = opt,
	    .first = opt->group != 0 ? opt->group : 1,
	    .last = opt->group != 0 ? opt->group : opt->groups_count,
	    .round = admin_witness_round,
	    .state_size = sizeof(struct admin_witness_state),
	    .outcome_text = {"made a witness", "already a witness", "absent", "failed"}};
	rv = admin_pool_run(&pool);
	if (rv != 0) {
		free(pool.results);
		return rv == -EINVAL ? 2 : 1;
	}
	if (opt->json) {
		printf("{\"command\":\"add-witness\",\"node\":%" PRIu64 ",", opt->node);
		admin_pool_json(&pool, admin_witness_outcomes, false);
	} else {
		printf("add-witness %" PRIu64 ": %" PRIu64 " groups added, %" PRIu64
		       " already a witness, %" PRIu64 " failed, in %.3f s\n",
		       opt->node, (uint64_t)atomic_load(&pool.counts[ADMIN_DONE]),
		       (uint64_t)atomic_load(&pool.counts[ADMIN_ALREADY]),
		       (uint64_t)atomic_load(&pool.counts[ADMIN_FAILED]),
		       (double)pool.elapsed_ms / 1000.0);
	}
	fflush(stdout);
	free(pool.results);
	return atomic_load(&pool.counts[ADMIN_FAILED]) > 0 ? 1 : 0;
}
