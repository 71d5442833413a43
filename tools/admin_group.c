/* flotilla-admin transfer and snapshot: one group at a time.
 *
 * transfer asks every node of --nodes for the group's MEMBERS, finds the
 * leader (the highest term among those that say they lead), and sends it a
 * TRANSFER to the target voter; then it looks again every 100 ms until the
 * target says it leads, sending the TRANSFER again when a new leader that is
 * not the target shows up, until --timeout-s.
 *
 * snapshot sends SNAPSHOT (op 41, fl_group_snapshot) to every node hosting
 * the group, or to --node only: each snapshots its own copy now and answers
 * with the index the snapshot covers.
 *
 * Both print text, or with --json one JSON document: transfer's outcome,
 * the last leader seen and its term; snapshot's per node outcome. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/le.h"
#include "tools/admin_internal.h"

#define ADMIN_TRANSFER_POLL_MS 100
#define ADMIN_ROUNDS_MAX       100000 /* Besides the deadline. */

/* MEMBERS of group from every node: the leader's id and view (0: none). */
static uint64_t admin_group_leader(struct client_router *r, uint64_t group, uint64_t deadline_ms,
				   struct client_members *leader_view)
{
	uint64_t leader = 0;

	for (uint32_t i = 0; i < r->nodes_count; i++) {
		struct admin_req rq = {.req = {.op = CLIENT_OP_MEMBERS, .group = group}};
		struct client_members m;

		admin_batch(r, r->nodes[i].id, &rq, 1, deadline_ms);
		if (rq.rv == 0 && rq.status == CLIENT_STATUS_OK &&
		    client_members_decode(rq.value, rq.value_size, &m) == 0 &&
		    (m.flags & CLIENT_MEMBERS_LEADER) != 0 &&
		    (leader == 0 || m.term > leader_view->term)) {
			leader = r->nodes[i].id;
			*leader_view = m;
		}
		admin_reqs_clear(&rq, 1);
	}
	return leader;
}

int admin_transfer(const struct admin_options *opt)
{
	uint64_t started = admin_now_ms();
	uint64_t deadline = started + (uint64_t)opt->timeout_s * 1000;
	char error[ADMIN_ERROR_SIZE] = "no leader";
	uint64_t seen = 0, seen_term = 0; /* The last leader seen, and its term. */
	struct client_router r;
	int rc = 1;

	if (client_router_init(&r, opt->nodes) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		return 2;
	}
	for (uint32_t round = 0; round < ADMIN_ROUNDS_MAX && admin_now_ms() < deadline; round++) {
		struct client_members m;
		uint64_t leader = admin_group_leader(&r, opt->group, deadline, &m);
		struct admin_req rq = {
		    .req = {.op = CLIENT_OP_TRANSFER, .group = opt->group, .member = opt->to}};

		if (leader != 0) {
			seen = leader;
			seen_term = m.term;
		}
		if (leader == opt->to) {
			rc = 0;
			break;
		}
		if (leader != 0 && client_members_role(&m, opt->to) != CLIENT_ROLE_VOTER) {
			snprintf(error, sizeof(error),
				 "node %" PRIu64 " is not a voter of the group", opt->to);
			break;
		}
		if (leader != 0 && round % 10 == 0) {
			/* Once a second at most: a transfer takes an election. */
			admin_batch(&r, leader, &rq, 1, deadline);
			if (rq.rv != 0 || rq.status != CLIENT_STATUS_OK)
				admin_req_error(&rq, error, sizeof(error));
			admin_reqs_clear(&rq, 1);
		}
		admin_sleep_ms(ADMIN_TRANSFER_POLL_MS);
	}
	if (opt->json) {
		printf("{\"command\":\"transfer\",\"group\":%" PRIu64 ",\"to\":%" PRIu64
		       ",\"ok\":%s,\"leader\":%" PRIu64 ",\"term\":%" PRIu64 ",\"ms\":%" PRIu64,
		       opt->group, opt->to, rc == 0 ? "true" : "false", seen, seen_term,
		       admin_now_ms() - started);
		if (rc != 0) {
			printf(",\"error\":");
			admin_json_string(stdout, error);
		}
		printf("}\n");
	} else if (rc == 0) {
		printf("group %" PRIu64 ": node %" PRIu64 " leads (term %" PRIu64
		       "), after %" PRIu64 " ms\n",
		       opt->group, opt->to, seen_term, admin_now_ms() - started);
	} else {
		printf("group %" PRIu64 ": leadership not moved to node %" PRIu64 ": %s\n",
		       opt->group, opt->to, error);
	}
	fflush(stdout);
	client_router_deinit(&r);
	return rc;
}

int admin_snapshot(const struct admin_options *opt)
{
	uint64_t deadline = admin_now_ms() + (uint64_t)opt->timeout_s * 1000;
	uint32_t taken = 0, failed = 0, absent = 0;
	struct client_router r;

	if (client_router_init(&r, opt->nodes) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		return 2;
	}
	if (opt->json)
		printf("{\"command\":\"snapshot\",\"group\":%" PRIu64 ",\"nodes\":[", opt->group);
	for (uint32_t i = 0; i < r.nodes_count; i++) {
		struct admin_req rq = {.req = {.op = CLIENT_OP_SNAPSHOT, .group = opt->group}};
		uint64_t id = r.nodes[i].id;
		char error[ADMIN_ERROR_SIZE];

		if (opt->node != 0 && id != opt->node)
			continue;
		admin_batch(&r, id, &rq, 1, deadline);
		if (opt->json)
			printf("%s{\"node\":%" PRIu64 ",", taken + failed + absent > 0 ? "," : "",
			       id);
		if (rq.rv == 0 && rq.status == CLIENT_STATUS_OK && rq.value_size == 8) {
			if (opt->json)
				printf("\"outcome\":\"taken\",\"index\":%" PRIu64 "}",
				       le_get64(rq.value));
			else
				printf("group %" PRIu64 ": node %" PRIu64
				       ": snapshot at index %" PRIu64 "\n",
				       opt->group, id, le_get64(rq.value));
			taken++;
		} else if (opt->node == 0 && rq.rv == 0 && rq.status == CLIENT_STATUS_ERROR &&
			   rq.value_size > 0 &&
			   memmem(rq.value, rq.value_size, "no such group", 13)) {
			/* Not hosted there: nothing to snapshot. */
			if (opt->json)
				printf("\"outcome\":\"absent\"}");
			absent++;
		} else {
			admin_req_error(&rq, error, sizeof(error));
			if (opt->json) {
				printf("\"outcome\":\"failed\",\"error\":");
				admin_json_string(stdout, error);
				printf("}");
			} else {
				printf("group %" PRIu64 ": node %" PRIu64 ": snapshot failed: %s\n",
				       opt->group, id, error);
			}
			failed++;
		}
		admin_reqs_clear(&rq, 1);
	}
	client_router_deinit(&r);
	if (opt->json)
		printf("],\"ok\":%s,\"taken\":%u,\"absent\":%u,\"failed\":%u}\n",
		       taken > 0 && failed == 0 ? "true" : "false", taken, absent, failed);
	else if (taken == 0 && failed == 0)
		printf("group %" PRIu64 ": no node of --nodes hosts it\n", opt->group);
	fflush(stdout);
	return taken > 0 && failed == 0 ? 0 : 1;
}
