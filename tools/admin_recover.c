/* flotilla-admin recover: bring groups back on a survivor after a majority
 * of their voters is lost for good (docs/operations.md, "Recovering from a
 * lost majority").
 *
 * It sends RECOVER (op 45, fl_group_recover) for group --group, or for every
 * group 1..--groups, to node --node, pipelined. The node refuses a group that
 * still has a quorum (a leader it hears from, or a majority of voters heard)
 * unless --force: those are reported and left alone; groups the node does not
 * host are skipped. Each recovered group's replica on the node is now the
 * group's single voter; recover then waits (until --timeout-s) for each to
 * commit its recovery entry, so that writes go through when it exits.
 *
 * Output: one line per group (recovered, refused, failed; skipped ones only
 * with --verbose), each recovered one with the range its recovery may have
 * lost, then a summary; or one JSON object with --json. Exit status 0 when
 * at least one group was recovered and none failed; 1 otherwise (nothing to
 * recover, every group still has a quorum, or a failure). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin_internal.h"

#define ADMIN_RECOVER_POLL_MS 50

enum admin_recover_state {
	ADMIN_RECOVER_SKIPPED, /* Not hosted on the node. */
	ADMIN_RECOVER_REFUSED, /* A quorum is reachable, or the replica cannot carry it. */
	ADMIN_RECOVER_FAILED,
	ADMIN_RECOVER_DONE,
};

struct admin_recover_group {
	uint64_t group;
	enum admin_recover_state state;
	bool committed; /* The recovery entry committed on the node. */
	struct client_recover rep;
	char reason[ADMIN_ERROR_SIZE];
};

static void admin_recover_take(struct admin_recover_group *g, const struct admin_req *rq)
{
	if (rq->rv == 0 && rq->status == CLIENT_STATUS_OK &&
	    client_recover_decode(rq->value, rq->value_size, &g->rep) == 0) {
		g->state = ADMIN_RECOVER_DONE;
		return;
	}
	if (rq->rv == 0 && rq->status == CLIENT_STATUS_REFUSED)
		snprintf(g->reason, sizeof(g->reason), "%.*s", (int)rq->value_size,
			 rq->value != NULL ? (const char *)rq->value : "");
	else
		admin_req_error(rq, g->reason, sizeof(g->reason));
	if (rq->rv == 0 && rq->status == CLIENT_STATUS_ERROR && rq->value_size > 0 &&
	    memmem(rq->value, rq->value_size, "no such group", 13))
		g->state = ADMIN_RECOVER_SKIPPED;
	else if (rq->rv == 0 && rq->status == CLIENT_STATUS_REFUSED)
		g->state = ADMIN_RECOVER_REFUSED;
	else
		g->state = ADMIN_RECOVER_FAILED;
}

/* Wait until every recovered group's entry committed on node (MEMBERS:
 * it leads and its commit index reached the entry), or the deadline. */
static void admin_recover_wait(struct client_router *r, uint64_t node,
			       struct admin_recover_group *gs, uint32_t count,
			       struct admin_req *reqs, uint64_t deadline_ms)
{
	for (uint32_t round = 0; round < 100000 && admin_now_ms() < deadline_ms; round++) {
		uint32_t n = 0, slot = 0;

		for (uint32_t i = 0; i < count; i++)
			if (gs[i].state == ADMIN_RECOVER_DONE && !gs[i].committed)
				reqs[n++] = (struct admin_req){
				    .req = {.op = CLIENT_OP_MEMBERS, .group = gs[i].group}};
		if (n == 0)
			return;
		admin_batch(r, node, reqs, n, deadline_ms);
		for (uint32_t i = 0; i < count && slot < n; i++) {
			struct client_members m;

			if (gs[i].state != ADMIN_RECOVER_DONE || gs[i].committed)
				continue;
			if (reqs[slot].rv == 0 && reqs[slot].status == CLIENT_STATUS_OK &&
			    client_members_decode(reqs[slot].value, reqs[slot].value_size, &m) ==
				0 &&
			    (m.flags & CLIENT_MEMBERS_LEADER) != 0 &&
			    m.commit_index >= gs[i].rep.conf_index)
				gs[i].committed = true;
			slot++;
		}
		admin_reqs_clear(reqs, n);
		admin_sleep_ms(ADMIN_RECOVER_POLL_MS);
	}
}

static void admin_recover_print(const struct admin_options *opt,
				const struct admin_recover_group *g)
{
	const struct client_recover *rep = &g->rep;

	if (g->state == ADMIN_RECOVER_SKIPPED && !opt->verbose)
		return;
	printf("group %" PRIu64 ": ", g->group);
	if (g->state != ADMIN_RECOVER_DONE) {
		printf("%s on node %" PRIu64 ": %s\n",
		       g->state == ADMIN_RECOVER_SKIPPED   ? "not hosted"
		       : g->state == ADMIN_RECOVER_REFUSED ? "not recovered"
							   : "recovery FAILED",
		       opt->node, g->reason);
		return;
	}
	printf("recovered on node %" PRIu64 "%s, single voter in term %" PRIu64 " (was %" PRIu64
	       "); commit was %" PRIu64 ", last %" PRIu64 "; index range possibly lost: %" PRIu64
	       " and up",
	       opt->node, g->committed ? "" : " (NOT YET COMMITTED)", rep->term, rep->term_before,
	       rep->commit_before, rep->last_before, rep->commit_before + 1);
	if (rep->last_before > rep->commit_before)
		printf("; entries %" PRIu64 "..%" PRIu64 " kept without a majority",
		       rep->commit_before + 1, rep->last_before);
	printf("; dropped:");
	for (uint32_t i = 0; i < rep->dropped_count; i++)
		printf("%s%" PRIu64, i == 0 ? " " : ",", rep->dropped[i]);
	printf("\n");
}

static void admin_recover_json_group(const struct admin_recover_group *g, bool first)
{
	static const char *const names[] = {"skipped", "refused", "failed", "recovered"};
	const struct client_recover *rep = &g->rep;

	printf("%s\n  {\"group\": %" PRIu64 ", \"state\": \"%s\"", first ? "" : ",", g->group,
	       names[g->state]);
	if (g->state != ADMIN_RECOVER_DONE) {
		printf(", \"reason\": ");
		admin_json_string(stdout, g->reason);
		printf("}");
		return;
	}
	printf(", \"committed\": %s, \"term_before\": %" PRIu64 ", \"term\": %" PRIu64
	       ", \"commit_before\": %" PRIu64 ", \"last_before\": %" PRIu64
	       ", \"conf_index\": %" PRIu64 ", \"possibly_lost_from\": %" PRIu64 ", \"dropped\": [",
	       g->committed ? "true" : "false", rep->term_before, rep->term, rep->commit_before,
	       rep->last_before, rep->conf_index, rep->commit_before + 1);
	for (uint32_t i = 0; i < rep->dropped_count; i++)
		printf("%s%" PRIu64, i == 0 ? "" : ", ", rep->dropped[i]);
	printf("]}");
}

int admin_recover(const struct admin_options *opt)
{
	uint64_t first = opt->group != 0 ? opt->group : 1;
	uint32_t count = opt->group != 0 ? 1 : (uint32_t)opt->groups_count;
	uint64_t deadline = admin_now_ms() + (uint64_t)opt->timeout_s * 1000;
	uint32_t counts[ADMIN_RECOVER_DONE + 1] = {0}, uncommitted = 0;
	struct admin_recover_group *gs = calloc(count, sizeof(*gs));
	struct admin_req *reqs = calloc(count, sizeof(*reqs));
	struct client_router r;
	int rc = 1;

	if (gs == NULL || reqs == NULL)
		goto out;
	if (client_router_init(&r, opt->nodes) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		rc = 2;
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		gs[i].group = first + i;
		reqs[i] =
		    (struct admin_req){.req = {.op = CLIENT_OP_RECOVER,
					       .group = first + i,
					       .flags = opt->force ? CLIENT_RECOVER_FORCE : 0}};
	}
	admin_batch(&r, opt->node, reqs, count, deadline);
	for (uint32_t i = 0; i < count; i++)
		admin_recover_take(&gs[i], &reqs[i]);
	admin_reqs_clear(reqs, count);
	admin_recover_wait(&r, opt->node, gs, count, reqs, deadline);
	if (opt->json)
		printf("{\"node\": %" PRIu64 ", \"groups\": [", opt->node);
	for (uint32_t i = 0; i < count; i++) {
		counts[gs[i].state]++;
		uncommitted += gs[i].state == ADMIN_RECOVER_DONE && !gs[i].committed;
		if (opt->json)
			admin_recover_json_group(&gs[i], i == 0);
		else
			admin_recover_print(opt, &gs[i]);
	}
	rc = counts[ADMIN_RECOVER_DONE] > 0 && counts[ADMIN_RECOVER_FAILED] == 0 && uncommitted == 0
		 ? 0
		 : 1;
	if (opt->json)
		printf("\n], \"recovered\": %u, \"uncommitted\": %u, \"refused\": %u, "
		       "\"failed\": %u, \"skipped\": %u}\n",
		       counts[ADMIN_RECOVER_DONE], uncommitted, counts[ADMIN_RECOVER_REFUSED],
		       counts[ADMIN_RECOVER_FAILED], counts[ADMIN_RECOVER_SKIPPED]);
	else
		printf("recover on node %" PRIu64 ": %u groups recovered (%u not yet committed), "
		       "%u refused, %u failed, %u not hosted\n",
		       opt->node, counts[ADMIN_RECOVER_DONE], uncommitted,
		       counts[ADMIN_RECOVER_REFUSED], counts[ADMIN_RECOVER_FAILED],
		       counts[ADMIN_RECOVER_SKIPPED]);
	client_router_deinit(&r);
out:
	free(gs);
	free(reqs);
	return rc;
}
