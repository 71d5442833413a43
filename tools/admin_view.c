/* flotilla-admin's look at a cluster: per node, NODE_STATUS (op 40), then
 * MEMBERS (op 17) of every group 1..N, pipelined on the node's connection
 * (ADMIN_WINDOW requests in flight). A node that does not answer its
 * NODE_STATUS within ADMIN_STATUS_MS is down: it is not asked for its
 * groups, and each of its replicas is UNKNOWN. A MEMBERS answered ERROR
 * means the node does not host the group (FL_ERR_NO_GROUP); any other
 * failure leaves the replica UNKNOWN.
 *
 * Also here: the list of problems the commands report, and JSON strings. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/admin_internal.h"

#define ADMIN_WINDOW    128
#define ADMIN_STATUS_MS 3000 /* NODE_STATUS is answered by a client thread at once. */

uint64_t admin_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void admin_sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

void admin_reqs_clear(struct admin_req *reqs, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		free(reqs[i].value);
		reqs[i].value = NULL;
		reqs[i].value_size = 0;
		reqs[i].rv = -ETIMEDOUT;
		reqs[i].status = 0;
		reqs[i].leader_hint = 0;
	}
}

/* Take one answer into the request it answers (ids base .. base + count - 1;
 * any other is a late answer to an earlier batch). Returns 1 when it was one
 * of ours, 0 otherwise. */
static int admin_batch_take(struct admin_req *reqs, uint32_t count, uint64_t base,
			    const struct client_response *resp)
{
	struct admin_req *rq;

	if (resp->request_id < base || resp->request_id - base >= count)
		return 0;
	rq = &reqs[resp->request_id - base];
	if (rq->rv == 0)
		return 0;
	rq->rv = 0;
	rq->status = resp->status;
	rq->leader_hint = resp->leader_hint;
	if (resp->value_size > 0) {
		rq->value = malloc(resp->value_size);
		if (rq->value != NULL) {
			memcpy(rq->value, resp->value, resp->value_size);
			rq->value_size = resp->value_size;
		}
	}
	return 1;
}

uint32_t admin_batch(struct client_router *r, uint64_t node, struct admin_req *reqs, uint32_t count,
		     uint64_t deadline_ms)
{
	static uint64_t next_id = 1;
	struct client *c = client_router_conn(r, node);
	uint64_t base = next_id;
	uint32_t sent = 0, answered = 0;
	int rv = 0;

	next_id += count;
	admin_reqs_clear(reqs, count);
	if (c == NULL) {
		for (uint32_t i = 0; i < count; i++)
			reqs[i].rv = -ECONNREFUSED;
		return 0;
	}
	while (answered < count && rv == 0) {
		struct client_response resp;
		uint64_t now;

		while (sent < count && sent - answered < ADMIN_WINDOW && rv == 0) {
			reqs[sent].req.request_id = base + sent;
			rv = client_send(c, &reqs[sent].req);
			sent++;
		}
		now = admin_now_ms();
		if (rv == 0)
			rv = now >= deadline_ms ? -ETIMEDOUT
						: client_wait(c, &resp, (int)(deadline_ms - now));
		if (rv == 0)
			answered += (uint32_t)admin_batch_take(reqs, count, base, &resp);
	}
	if (rv != 0) {
		client_close(c);
		for (uint32_t i = 0; i < count; i++)
			if (reqs[i].rv != 0)
				reqs[i].rv = rv;
	}
	return answered;
}

void admin_req_error(const struct admin_req *rq, char *buf, size_t size)
{
	static const char *const names[] = {"OK",    "NOT_FOUND",   "NOT_LEADER", "CAS_MISMATCH",
					    "ERROR", "BAD_REQUEST", "RETRY",      "NO_SPACE"};

	if (rq->rv != 0) {
		snprintf(buf, size, "%s", strerror(-rq->rv));
		return;
	}
	snprintf(buf, size, "%s%s%.*s", rq->status < 8 ? names[rq->status] : "status ?",
		 rq->value_size > 0 ? ": " : "", (int)(rq->value_size < 100 ? rq->value_size : 100),
		 rq->value != NULL ? (const char *)rq->value : "");
}

int admin_view_init(struct admin_view *v, const struct admin_options *opt)
{
	memset(v, 0, sizeof(*v));
	if (client_router_init(&v->router, opt->nodes) != 0)
		return -EINVAL;
	v->nodes_count = v->router.nodes_count;
	for (uint32_t i = 0; i < v->nodes_count; i++)
		v->nodes[i].id = v->router.nodes[i].id;
	v->groups_count = opt->groups_count;
	v->replicas = calloc(v->groups_count * v->nodes_count, sizeof(*v->replicas));
	v->reqs = calloc(v->groups_count, sizeof(*v->reqs));
	if (v->replicas == NULL || v->reqs == NULL) {
		admin_view_deinit(v);
		return -ENOMEM;
	}
	return 0;
}

void admin_view_deinit(struct admin_view *v)
{
	if (v->reqs != NULL)
		admin_reqs_clear(v->reqs, (uint32_t)v->groups_count);
	free(v->reqs);
	free(v->replicas);
	client_router_deinit(&v->router);
	v->reqs = NULL;
	v->replicas = NULL;
}

struct admin_replica *admin_view_replica(const struct admin_view *v, uint64_t group, uint32_t slot)
{
	return &v->replicas[(group - 1) * v->nodes_count + slot];
}

int admin_view_slot(const struct admin_view *v, uint64_t id)
{
	for (uint32_t i = 0; i < v->nodes_count; i++)
		if (v->nodes[i].id == id)
			return (int)i;
	return -1;
}

int admin_view_leader(const struct admin_view *v, uint64_t group)
{
	int best = -1;

	for (uint32_t i = 0; i < v->nodes_count; i++) {
		const struct admin_replica *rp = admin_view_replica(v, group, i);

		if (rp->state != ADMIN_REPLICA_HOSTED || (rp->m.flags & CLIENT_MEMBERS_LEADER) == 0)
			continue;
		if (best < 0 || rp->m.term > admin_view_replica(v, group, (uint32_t)best)->m.term)
			best = (int)i;
	}
	return best;
}

/* NODE_STATUS of the node in slot: up or down, with why. */
static void admin_view_read_node(struct admin_view *v, uint32_t slot, uint64_t deadline_ms)
{
	struct admin_node_view *n = &v->nodes[slot];
	struct admin_req rq = {.req = {.op = CLIENT_OP_NODE_STATUS}};

	n->up = false;
	n->hosted = n->leads = n->witnesses = 0;
	memset(&n->st, 0, sizeof(n->st));
	/* A node that accepts connections but does not answer (stopped, hung)
	 * is down after ADMIN_STATUS_MS, leaving the others the rest of the
	 * time. */
	if (deadline_ms > admin_now_ms() + ADMIN_STATUS_MS)
		deadline_ms = admin_now_ms() + ADMIN_STATUS_MS;
	admin_batch(&v->router, n->id, &rq, 1, deadline_ms);
	if (rq.rv == 0 && rq.status == CLIENT_STATUS_OK &&
	    client_node_status_decode(rq.value, rq.value_size, &n->st) == 0) {
		n->up = true;
		n->error[0] = '\0';
	} else {
		admin_req_error(&rq, n->error, sizeof(n->error));
	}
	admin_reqs_clear(&rq, 1);
}

/* MEMBERS of every group from the node in slot. */
static void admin_view_read_groups(struct admin_view *v, uint32_t slot, uint64_t deadline_ms)
{
	struct admin_node_view *n = &v->nodes[slot];
	uint32_t count = (uint32_t)v->groups_count;

	for (uint32_t i = 0; i < count; i++)
		v->reqs[i].req = (struct client_request){.op = CLIENT_OP_MEMBERS, .group = i + 1};
	if (n->up)
		admin_batch(&v->router, n->id, v->reqs, count, deadline_ms);
	for (uint32_t i = 0; i < count; i++) {
		struct admin_replica *rp = admin_view_replica(v, i + 1, slot);
		const struct admin_req *rq = &v->reqs[i];

		memset(rp, 0, sizeof(*rp));
		if (!n->up || rq->rv != 0)
			rp->state = ADMIN_REPLICA_UNKNOWN;
		else if (rq->status == CLIENT_STATUS_ERROR)
			rp->state = ADMIN_REPLICA_ABSENT;
		else if (rq->status == CLIENT_STATUS_OK &&
			 client_members_decode(rq->value, rq->value_size, &rp->m) == 0)
			rp->state = ADMIN_REPLICA_HOSTED;
		if (rp->state != ADMIN_REPLICA_HOSTED)
			continue;
		n->hosted++;
		n->leads += (rp->m.flags & CLIENT_MEMBERS_LEADER) != 0;
		n->witnesses += client_members_role(&rp->m, n->id) == CLIENT_ROLE_WITNESS;
	}
	admin_reqs_clear(v->reqs, count);
}

void admin_view_read(struct admin_view *v, uint64_t deadline_ms)
{
	for (uint32_t i = 0; i < v->nodes_count; i++) {
		admin_view_read_node(v, i, deadline_ms);
		admin_view_read_groups(v, i, deadline_ms);
	}
}

struct admin_problem *admin_problem_add(struct admin_problems *p, enum admin_problem_kind kind,
					uint64_t node, uint64_t group, const char *fmt, ...)
{
	struct admin_problem *item;
	va_list ap;

	if (p->count == p->capacity) {
		uint32_t capacity = p->capacity == 0 ? 16 : p->capacity * 2;
		struct admin_problem *items = realloc(p->items, capacity * sizeof(*items));

		if (items == NULL) {
			p->counts[kind]++; /* Counted, not listed. */
			return NULL;
		}
		p->items = items;
		p->capacity = capacity;
	}
	item = &p->items[p->count++];
	*item = (struct admin_problem){.kind = kind, .node = node, .group = group};
	va_start(ap, fmt);
	vsnprintf(item->text, sizeof(item->text), fmt, ap);
	va_end(ap);
	p->counts[kind]++;
	return item;
}

void admin_problems_free(struct admin_problems *p)
{
	free(p->items);
	*p = (struct admin_problems){0};
}

const char *admin_problem_name(enum admin_problem_kind kind)
{
	static const char *const names[ADMIN_PROBLEM_KINDS] = {
	    "down",      "disk_full", "no_leader", "no_quorum",
	    "repairing", "diverged",  "lagging",   "unchecked"};

	return kind < ADMIN_PROBLEM_KINDS ? names[kind] : "?";
}

bool admin_problem_is_unhealthy(enum admin_problem_kind kind)
{
	return kind != ADMIN_PROBLEM_LAGGING;
}

void admin_problems_print(FILE *out, const struct admin_problems *p, uint32_t per_kind_max)
{
	for (uint32_t kind = 0; kind < ADMIN_PROBLEM_KINDS; kind++) {
		uint32_t shown = 0;

		for (uint32_t i = 0; i < p->count; i++) {
			if (p->items[i].kind != kind)
				continue;
			if (shown++ < per_kind_max)
				fprintf(out, "%s\n", p->items[i].text);
		}
		if (p->counts[kind] > per_kind_max)
			fprintf(out, "... and %u more of kind %s\n", p->counts[kind] - per_kind_max,
				admin_problem_name(kind));
	}
}

void admin_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

void admin_problems_json(FILE *out, const struct admin_problems *p)
{
	fprintf(out, "[");
	for (uint32_t i = 0; i < p->count; i++) {
		const struct admin_problem *it = &p->items[i];

		fprintf(
		    out,
		    "%s{\"kind\":\"%s\",\"unhealthy\":%s,\"node\":%" PRIu64 ",\"group\":%" PRIu64,
		    i > 0 ? "," : "", admin_problem_name(it->kind),
		    admin_problem_is_unhealthy(it->kind) ? "true" : "false", it->node, it->group);
		if (it->kind == ADMIN_PROBLEM_LAGGING)
			fprintf(out, ",\"behind\":%" PRIu64, it->behind);
		fprintf(out, ",\"text\":");
		admin_json_string(out, it->text);
		fprintf(out, "}");
	}
	fprintf(out, "]");
}
