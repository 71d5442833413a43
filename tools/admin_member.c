/* flotilla-admin's membership changes of many groups (move, add-witness):
 * a pool of --parallel threads takes groups one at a time and drives each
 * to its end with the command's round function, which reads the leader's
 * view of the membership (MEMBERS) and takes the step it calls for. So a
 * command is idempotent: run again after a failure, it resumes every group
 * where it stands.
 *
 * A round returns 1 when the group is done, 0 when it took a step (the next
 * round follows at once), -EINPROGRESS to look again in ADMIN_POLL_MS (a
 * change commits, an election ends: under load a commit takes tens of ms),
 * or -EAGAIN to back off first. Transient answers (NOT_LEADER, RETRY: change
 * pending, transfer under way, learner behind; a lost connection or a
 * timeout) are retried with a backoff from 10 ms doubling to 500 ms, until
 * the group's deadline (--group-timeout-s); then the group is reported
 * failed with the last error, and the others go on.
 *
 * Each group's outcome, time and last error are kept for the command's
 * report; without --json a failed group (or, with --verbose, any group) is
 * printed as it ends. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin_internal.h"

#define ADMIN_CALL_MS     5000 /* One request's answer. */
#define ADMIN_BACKOFF_MIN 10
#define ADMIN_BACKOFF_MAX 500
#define ADMIN_POLL_MS     10
#define ADMIN_ROUNDS_MAX  100000 /* Per group: a bound besides the deadline. */

static const char *admin_op_name(uint32_t op)
{
	const char *name = client_op_name(op);

	return name != NULL ? name : "?";
}

int admin_call(struct admin_worker *w, uint64_t node, uint32_t op, uint64_t group, uint64_t member,
	       struct admin_answer *ans)
{
	struct client_request req = {
	    .op = op, .request_id = ++w->request_id, .group = group, .member = member};
	struct client *c = client_router_conn(&w->router, node);
	uint64_t deadline = admin_now_ms() + ADMIN_CALL_MS;
	struct client_response resp;
	int rv;

	if (c == NULL) {
		snprintf(w->error, sizeof(w->error), "%s: node %" PRIu64 " unreachable",
			 admin_op_name(op), node);
		return -ECONNREFUSED;
	}
	rv = client_send(c, &req);
	while (rv == 0) {
		uint64_t now = admin_now_ms();

		rv = now >= deadline ? -ETIMEDOUT : client_wait(c, &resp, (int)(deadline - now));
		if (rv != 0 || resp.request_id == req.request_id)
			break; /* Any other id is a late answer to a call that timed out. */
	}
	if (rv != 0) {
		snprintf(w->error, sizeof(w->error), "%s to node %" PRIu64 ": %s",
			 admin_op_name(op), node, strerror(-rv));
		client_close(c);
		return rv;
	}
	ans->status = resp.status;
	ans->leader_hint = resp.leader_hint;
	ans->value_size =
	    resp.value_size < sizeof(ans->value) ? resp.value_size : (uint32_t)sizeof(ans->value);
	memcpy(ans->value, resp.value, ans->value_size);
	if (resp.status != CLIENT_STATUS_OK)
		snprintf(w->error, sizeof(w->error), "%s at node %" PRIu64 ": status %u%s%.*s",
			 admin_op_name(op), node, resp.status, resp.value_size > 0 ? ": " : "",
			 (int)(resp.value_size < 100 ? resp.value_size : 100),
			 (const char *)resp.value);
	return 0;
}

int admin_leader_members(struct admin_worker *w, uint64_t group, struct client_members *m)
{
	struct client_router *r = &w->router;
	struct admin_answer ans;

	for (uint32_t hop = 0; hop < r->nodes_count + 1; hop++) {
		uint64_t node = w->leader;

		if (node == 0 || hop == r->nodes_count)
			node = r->nodes[(group + hop) % r->nodes_count].id;
		w->leader = 0;
		if (admin_call(w, node, CLIENT_OP_MEMBERS, group, 0, &ans) != 0)
			continue;
		if (ans.status != CLIENT_STATUS_OK)
			continue;
		if (client_members_decode(ans.value, ans.value_size, m) != 0) {
			snprintf(w->error, sizeof(w->error),
				 "MEMBERS: malformed answer from node %" PRIu64, node);
			continue;
		}
		if ((m->flags & CLIENT_MEMBERS_LEADER) != 0) {
			w->leader = node;
			return 0;
		}
		w->leader = m->leader; /* 0 when this node knows of no leader. */
		snprintf(w->error, sizeof(w->error), "no leader known to node %" PRIu64, node);
	}
	return -EAGAIN;
}

bool admin_change(struct admin_worker *w, uint32_t op, uint64_t group, uint64_t member)
{
	struct admin_answer ans;

	if (admin_call(w, w->leader, op, group, member, &ans) != 0)
		return false;
	if (ans.status == CLIENT_STATUS_NOT_LEADER)
		w->leader = ans.leader_hint;
	return ans.status == CLIENT_STATUS_OK;
}

/* Drive group to the end or to its deadline; record and print its result. */
static void admin_pool_group(struct admin_worker *w, uint64_t group)
{
	struct admin_pool *pool = w->pool;
	uint64_t started = admin_now_ms();
	uint64_t deadline = started + (uint64_t)pool->opt->group_timeout_s * 1000;
	uint64_t backoff = ADMIN_BACKOFF_MIN;
	enum admin_outcome outcome = ADMIN_FAILED;
	struct admin_result *res = &pool->results[group - pool->first];

	w->leader = 0;
	w->error[0] = '\0';
	memset(w->state, 0, pool->state_size);
	for (uint32_t round = 0; round < ADMIN_ROUNDS_MAX; round++) {
		int rv = pool->round(w, group, w->state, &outcome);

		if (rv == 1)
			break;
		if (admin_now_ms() >= deadline) {
			outcome = ADMIN_FAILED;
			break;
		}
		if (rv == 0) {
			backoff = ADMIN_BACKOFF_MIN;
			continue;
		}
		if (rv == -EINPROGRESS) {
			admin_sleep_ms(ADMIN_POLL_MS);
			continue;
		}
		admin_sleep_ms(backoff);
		backoff = backoff * 2 > ADMIN_BACKOFF_MAX ? ADMIN_BACKOFF_MAX : backoff * 2;
	}
	res->outcome = outcome;
	res->ms = admin_now_ms() - started;
	if (outcome == ADMIN_FAILED)
		snprintf(res->error, sizeof(res->error), "%s",
			 w->error[0] != '\0' ? w->error : "no progress");
	atomic_fetch_add(&pool->counts[outcome], 1);
	if (pool->opt->json)
		return;
	pthread_mutex_lock(&pool->out_lock);
	if (outcome == ADMIN_FAILED)
		printf("group %" PRIu64 ": FAILED after %" PRIu64 " ms: %s\n", group, res->ms,
		       res->error);
	else if (pool->opt->verbose)
		printf("group %" PRIu64 ": %s in %" PRIu64 " ms\n", group,
		       pool->outcome_text[outcome], res->ms);
	fflush(stdout);
	pthread_mutex_unlock(&pool->out_lock);
}

static void *admin_pool_main(void *arg)
{
	struct admin_worker *w = arg;
	struct admin_pool *pool = w->pool;

	for (;;) {
		uint64_t group = atomic_fetch_add(&pool->next_group, 1);

		if (group > pool->last)
			break;
		admin_pool_group(w, group);
	}
	return NULL;
}

int admin_pool_run(struct admin_pool *pool)
{
	uint32_t parallel = pool->opt->parallel, running = 0;
	struct admin_worker *workers;
	int rv = 0;

	if (pool->first < 1 || pool->last < pool->first)
		return -EINVAL;
	if (parallel > pool->last - pool->first + 1)
		parallel = (uint32_t)(pool->last - pool->first + 1);
	pool->results = calloc(pool->last - pool->first + 1, sizeof(*pool->results));
	workers = calloc(parallel, sizeof(*workers));
	if (pool->results == NULL || workers == NULL) {
		free(workers);
		return -ENOMEM;
	}
	pthread_mutex_init(&pool->out_lock, NULL);
	atomic_store(&pool->next_group, pool->first);
	pool->started_ms = admin_now_ms();
	for (uint32_t i = 0; i < parallel; i++) {
		struct admin_worker *w = &workers[i];

		w->pool = pool;
		w->request_id = (uint64_t)i << 48;
		w->state = calloc(1, pool->state_size > 0 ? pool->state_size : 1);
		rv = w->state == NULL ? -ENOMEM : client_router_init(&w->router, pool->opt->nodes);
		if (rv != 0) {
			free(w->state);
			if (rv == -EINVAL)
				fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n",
					pool->opt->nodes);
			break;
		}
		rv = -pthread_create(&w->thread, NULL, admin_pool_main, w);
		if (rv != 0) {
			client_router_deinit(&w->router);
			free(w->state);
			break;
		}
		running++;
	}
	for (uint32_t i = 0; i < running; i++) {
		pthread_join(workers[i].thread, NULL);
		client_router_deinit(&workers[i].router);
		free(workers[i].state);
	}
	free(workers);
	pool->elapsed_ms = admin_now_ms() - pool->started_ms;
	return running == parallel ? 0 : rv;
}

void admin_pool_json(const struct admin_pool *pool, const char *const names[ADMIN_OUTCOMES],
		     bool with_absent)
{
	printf("\"ok\":%s", atomic_load(&pool->counts[ADMIN_FAILED]) == 0 ? "true" : "false");
	for (int k = 0; k < ADMIN_OUTCOMES; k++)
		if (k != ADMIN_ABSENT || with_absent)
			printf(",\"%s\":%" PRIu64, names[k],
			       (uint64_t)atomic_load(&pool->counts[k]));
	printf(",\"elapsed_ms\":%" PRIu64 ",\"groups\":[", pool->elapsed_ms);
	for (uint64_t g = pool->first; g <= pool->last; g++) {
		const struct admin_result *r = &pool->results[g - pool->first];

		printf("%s{\"group\":%" PRIu64 ",\"outcome\":\"%s\",\"ms\":%" PRIu64,
		       g > pool->first ? "," : "", g, names[r->outcome], r->ms);
		if (r->outcome == ADMIN_FAILED) {
			printf(",\"error\":");
			admin_json_string(stdout, r->error);
		}
		printf("}");
	}
	printf("]}\n");
}
