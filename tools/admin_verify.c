/* flotilla-admin verify: a consistency check of the whole cluster.
 *
 * verify runs a consistency check (CHECK, op 8) of every group 1..N at its
 * leader and reports the replicas that differ. The happy path is:
 *   1. look at the cluster (admin_view.c) to find each group's leader;
 *   2. send each leader a CHECK of every group it leads, pipelined; a CHECK
 *      answers once the leader has applied its own digest of the check, so
 *      the leader's commit index, read next, is past the check;
 *   3. look again until every replica on a node that answers has committed
 *      up to that index (each compares its digest when it applies it), then
 *      once more: a replica that differs has MEMBERS flag bit 3 (diverged).
 * A group whose CHECK fails (no leader, a leader change) is asked again, at
 * its leader as seen by a new look, until --timeout-s. What the check cannot
 * cover is reported too and fails verify: a node down (its replicas were
 * not compared), a group never checked, a replica that did not reach the
 * check in time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/le.h"
#include "tools/admin_internal.h"

#define ADMIN_VERIFY_POLL_MS 100
#define ADMIN_ROUNDS_MAX     1000 /* Besides the deadline. */

/* What verify learned of one group. */
struct admin_check {
	uint64_t index;  /* The check's index; 0: not checked yet. */
	uint64_t target; /* Commit index every replica must reach. */
	char error[ADMIN_ERROR_SIZE];
};

/* One round of CHECKs: every unchecked group with a leader, at its leader.
 * Returns the count of groups still unchecked. */
static uint64_t admin_verify_round(struct admin_view *v, struct admin_check *checks,
				   uint64_t deadline_ms)
{
	uint64_t *groups = calloc(v->groups_count, sizeof(*groups));
	uint64_t left = 0;

	for (uint64_t g = 1; g <= v->groups_count; g++)
		if (checks[g - 1].index == 0 && admin_view_leader(v, g) < 0)
			snprintf(checks[g - 1].error, sizeof(checks[g - 1].error), "no leader");
	for (uint32_t slot = 0; slot < v->nodes_count && groups != NULL; slot++) {
		uint32_t count = 0;

		for (uint64_t g = 1; g <= v->groups_count; g++)
			if (checks[g - 1].index == 0 && admin_view_leader(v, g) == (int)slot)
				groups[count++] = g;
		for (uint32_t i = 0; i < count; i++)
			v->reqs[i].req =
			    (struct client_request){.op = CLIENT_OP_CHECK, .group = groups[i]};
		if (count > 0)
			admin_batch(&v->router, v->nodes[slot].id, v->reqs, count, deadline_ms);
		for (uint32_t i = 0; i < count; i++) {
			struct admin_check *ck = &checks[groups[i] - 1];
			const struct admin_req *rq = &v->reqs[i];

			if (rq->rv == 0 && rq->status == CLIENT_STATUS_OK && rq->value_size == 8)
				ck->index = le_get64(rq->value);
			else
				admin_req_error(rq, ck->error, sizeof(ck->error));
		}
		admin_reqs_clear(v->reqs, count);
	}
	free(groups);
	for (uint64_t g = 1; g <= v->groups_count; g++)
		left += checks[g - 1].index == 0;
	return left;
}

/* Whether the replica in slot still has to reach its group's check. */
static bool admin_verify_is_behind(const struct admin_view *v, const struct admin_check *ck,
				   uint64_t group, uint32_t slot)
{
	const struct admin_replica *rp = admin_view_replica(v, group, slot);
	int leader = admin_view_leader(v, group);

	if (ck->index == 0 || !v->nodes[slot].up || rp->state != ADMIN_REPLICA_HOSTED)
		return false;
	if (leader >= 0 && client_members_role(&admin_view_replica(v, group, (uint32_t)leader)->m,
					       v->nodes[slot].id) == CLIENT_ROLE_WITNESS)
		return false; /* A witness compares nothing. */
	return rp->m.commit_index < ck->target;
}

/* Look again until every replica reached its group's check, or deadline. */
static void admin_verify_settle(struct admin_view *v, struct admin_check *checks,
				uint64_t deadline_ms)
{
	admin_view_read(v, deadline_ms);
	for (uint64_t g = 1; g <= v->groups_count; g++) {
		int leader = admin_view_leader(v, g);

		if (checks[g - 1].index != 0)
			checks[g - 1].target =
			    leader >= 0 ? admin_view_replica(v, g, (uint32_t)leader)->m.commit_index
					: checks[g - 1].index;
	}
	for (uint32_t round = 0; round < ADMIN_ROUNDS_MAX && admin_now_ms() < deadline_ms;
	     round++) {
		bool behind = false;

		for (uint64_t g = 1; g <= v->groups_count && !behind; g++)
			for (uint32_t slot = 0; slot < v->nodes_count && !behind; slot++)
				behind = admin_verify_is_behind(v, &checks[g - 1], g, slot);
		if (!behind)
			break;
		admin_sleep_ms(ADMIN_VERIFY_POLL_MS);
		admin_view_read(v, deadline_ms);
	}
	/* Once more: a replica compares when it applies what it committed. */
	admin_view_read(v, deadline_ms);
}

/* The findings of one group, into p. Returns the replicas compared. */
static uint32_t admin_verify_group(const struct admin_view *v, const struct admin_check *ck,
				   uint64_t group, struct admin_problems *p, uint32_t *diverged_all)
{
	uint32_t compared = 0, diverged = 0, hosts = 0;
	int leader = admin_view_leader(v, group);
	uint64_t leader_id = leader >= 0 ? v->nodes[leader].id : 0;

	if (ck->index == 0) {
		admin_problem_add(p, ADMIN_PROBLEM_UNCHECKED, 0, group,
				  "group %" PRIu64 ": not checked: %s", group,
				  ck->error[0] != '\0' ? ck->error : "no answer");
		return 0;
	}
	for (uint32_t slot = 0; slot < v->nodes_count; slot++) {
		const struct admin_replica *rp = admin_view_replica(v, group, slot);
		uint64_t id = v->nodes[slot].id;

		if (!v->nodes[slot].up || rp->state != ADMIN_REPLICA_HOSTED)
			continue;
		hosts++;
		if ((rp->m.flags & CLIENT_MEMBERS_DIVERGED) != 0) {
			diverged++;
			(*diverged_all)++;
			admin_problem_add(p, ADMIN_PROBLEM_DIVERGED, id, group,
					  "group %" PRIu64 ": replica on node %" PRIu64
					  " diverged from its leader (node %" PRIu64
					  ") at the check of index %" PRIu64,
					  group, id, leader_id, ck->index);
		} else if (admin_verify_is_behind(v, ck, group, slot)) {
			admin_problem_add(p, ADMIN_PROBLEM_UNCHECKED, id, group,
					  "group %" PRIu64 ": replica on node %" PRIu64
					  " did not reach the check (committed %" PRIu64
					  " of %" PRIu64 ")",
					  group, id, rp->m.commit_index, ck->target);
			continue;
		}
		compared++;
	}
	if (diverged >= 2 && diverged + 1 >= hosts)
		admin_problem_add(p, ADMIN_PROBLEM_DIVERGED, leader_id, group,
				  "group %" PRIu64 ": every follower differs from the leader (node "
				  "%" PRIu64 "): suspect the leader; transfer leadership to a "
				  "follower, then rebuild node %" PRIu64,
				  group, leader_id, leader_id);
	return compared;
}

int admin_verify(const struct admin_options *opt)
{
	uint64_t deadline = admin_now_ms() + (uint64_t)opt->timeout_s * 1000;
	uint64_t checked = 0, left = 1;
	struct admin_problems p = {0};
	struct admin_check *checks;
	uint32_t compared = 0, diverged = 0;
	struct admin_view v;
	int rc;

	if (admin_view_init(&v, opt) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes or out of memory\n");
		return 2;
	}
	checks = calloc(v.groups_count, sizeof(*checks));
	if (checks == NULL) {
		admin_view_deinit(&v);
		return 1;
	}
	for (uint32_t round = 0; round < ADMIN_ROUNDS_MAX && left > 0; round++) {
		admin_view_read(&v, deadline);
		left = admin_verify_round(&v, checks, deadline);
		if (left == 0 || admin_now_ms() >= deadline)
			break;
		admin_sleep_ms(ADMIN_VERIFY_POLL_MS * 2);
	}
	admin_verify_settle(&v, checks, deadline);
	for (uint32_t i = 0; i < v.nodes_count; i++)
		if (!v.nodes[i].up)
			admin_problem_add(&p, ADMIN_PROBLEM_DOWN, v.nodes[i].id, 0,
					  "node %" PRIu64
					  ": down: its replicas were not compared: %s",
					  v.nodes[i].id, v.nodes[i].error);
	for (uint64_t g = 1; g <= v.groups_count; g++) {
		compared += admin_verify_group(&v, &checks[g - 1], g, &p, &diverged);
		checked += checks[g - 1].index != 0;
	}
	if (opt->json) {
		printf("{\"command\":\"verify\",\"consistent\":%s,\"groups\":%" PRIu64
		       ",\"checked\":%" PRIu64 ",\"replicas_compared\":%u,\"diverged\":%u,"
		       "\"problems\":",
		       p.count == 0 ? "true" : "false", v.groups_count, checked, compared,
		       diverged);
		admin_problems_json(stdout, &p);
		printf("}\n");
	} else {
		admin_problems_print(stdout, &p, 20);
		printf("verify: %" PRIu64 " of %" PRIu64 " groups checked, %u replicas compared, "
		       "%u diverged: %s\n",
		       checked, v.groups_count, compared, diverged,
		       p.count == 0 ? "consistent" : "NOT verified consistent");
	}
	fflush(stdout);
	rc = p.count == 0 ? 0 : 1;
	free(checks);
	admin_problems_free(&p);
	admin_view_deinit(&v);
	return rc;
}
