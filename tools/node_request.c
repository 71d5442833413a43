/* flotilla-node's client ops: decode each request a connection received,
 * start it in the library (fl_propose, fl_read, fl_read_stale, the membership calls,
 * fl_group_recover) or
 * answer it at once from this node's store (LOCAL_GET, DIGEST,
 * CHECK_STATUS, NODE_STATUS), and turn each library callback into the answer its client
 * thread sends. Callbacks run on shard threads: they only fill in the
 * struct pending and hand it to worker_complete(). */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/le.h"
#include "tools/kv.h"
#include "tools/node_internal.h"

static struct pending *pending_new(struct conn *c, const struct client_request *req)
{
	bool keep_key =
	    req->op == CLIENT_OP_GET || req->op == CLIENT_OP_STALE_GET || req->op == CLIENT_OP_CAS;
	uint32_t key_size = keep_key ? req->key_size : 0;
	struct pending *p = calloc(1, sizeof(*p) + key_size);

	if (p == NULL)
		return NULL;
	p->conn = c;
	p->server = c->worker->server;
	p->request_id = req->request_id;
	p->group = req->group;
	p->op = req->op;
	p->key_size = key_size;
	if (key_size > 0)
		memcpy(p->key, req->key, key_size);
	return p;
}

/* Give p's value a copy of text. Callbacks use it; failure leaves it empty. */
static void pending_set_text(struct pending *p, const char *text)
{
	size_t size = strlen(text);

	free(p->value);
	p->value = malloc(size + 1);
	p->value_size = 0;
	if (p->value != NULL) {
		memcpy(p->value, text, size + 1);
		p->value_size = (uint32_t)size;
	}
}

/* Answer a failed library call: NOT_LEADER with the hint, or ERROR with its
 * name. A leader handing leadership over refuses writes until the transfer
 * ends (FL_ERR_TRANSFER): nothing was proposed, and the leader is about to
 * change, so that is NOT_LEADER too, with no hint (wait and retry). A leader
 * whose WAL's disk is full (FL_ERR_NO_SPACE) proposed nothing either: its
 * own status, with the error text, so that clients can tell it apart; so
 * has a JOIN past the node's bound on groups (FL_ERR_GROUPS_FULL), which no
 * retry on this node cures. */
static void pending_set_error(struct pending *p, int rv, uint64_t leader)
{
	p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	if (rv == FL_ERR_NOT_LEADER) {
		p->status = CLIENT_STATUS_NOT_LEADER;
		return;
	}
	if (rv == FL_ERR_TRANSFER && p->op != CLIENT_OP_TRANSFER) {
		p->status = CLIENT_STATUS_NOT_LEADER;
		p->leader = 0;
		return;
	}
	if (rv == FL_ERR_GROUPS_FULL) {
		char text[160];

		p->status = CLIENT_STATUS_GROUPS_FULL;
		snprintf(text, sizeof(text),
			 "group %llu refused: this node hosts the most groups it may "
			 "(--groups-max %u)",
			 (unsigned long long)p->group, p->server->opt.groups_max);
		pending_set_text(p, text);
		return;
	}
	p->status = rv == FL_ERR_NO_SPACE  ? CLIENT_STATUS_NO_SPACE
		    : rv == FL_ERR_WITNESS ? CLIENT_STATUS_WITNESS
					   : CLIENT_STATUS_ERROR;
	pending_set_text(p, fl_strerror(rv));
}

/* Read key into p's answer from this node's map. */
static void pending_read_value(struct pending *p, uint32_t status_found)
{
	int rv = p->server->store->ops->get(p->server->store, p->group, p->key, p->key_size,
					    &p->value, &p->value_size);

	if (rv == 0)
		p->status = status_found;
	else if (rv == -ENOENT)
		p->status =
		    status_found == CLIENT_STATUS_OK ? CLIENT_STATUS_NOT_FOUND : status_found;
	else
		pending_set_error(p, rv, p->leader);
}

/* fl_propose callback for PUT, DELETE and CAS. */
static void request_write_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	p->leader = leader != 0 ? leader : p->server->opt.id;
	switch (result) {
	case KV_RESULT_OK:
		p->status = CLIENT_STATUS_OK;
		break;
	case KV_RESULT_NOT_FOUND:
		p->status = CLIENT_STATUS_NOT_FOUND;
		break;
	case KV_RESULT_CAS_MISMATCH:
		/* The value as of now: later entries may have changed it since
		 * this one was applied (absent now: an empty value). */
		pending_read_value(p, CLIENT_STATUS_CAS_MISMATCH);
		break;
	default:
		p->status = CLIENT_STATUS_ERROR;
		pending_set_text(p, "the state machine rejected the entry");
		break;
	}
	worker_complete(p);
}

/* fl_read callback for GET: the barrier passed, so the local map is current
 * (on a follower too: its read barrier waits for the leader's commit index). */
static void request_get_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv != 0) {
		pending_set_error(p, rv, leader);
	} else {
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
		pending_read_value(p, CLIENT_STATUS_OK);
	}
	worker_complete(p);
}

/* fl_read_stale callback for STALE_GET: no barrier, so the local map is
 * this replica's as of the applied index in the figures, which lead the
 * answer's value (tools/client.h); the key's value follows them on OK. It
 * runs on the shard thread between two applies: the map is read as of that
 * index. */
static void request_stale_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;
	const struct fl_stale_read *st = p->stale;
	struct client_stale figures = {.applied_index = st->applied_index,
				       .leader_commit = st->leader_commit,
				       .entries_behind = st->entries_behind,
				       .contact_age_ms = st->contact_age_ms};
	unsigned char *value;

	(void)result;
	if (rv != 0 && rv != FL_ERR_STALE) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	if (rv == FL_ERR_STALE)
		p->status = CLIENT_STATUS_STALE;
	else
		pending_read_value(p, CLIENT_STATUS_OK);
	if (p->status != CLIENT_STATUS_OK && p->status != CLIENT_STATUS_NOT_FOUND &&
	    p->status != CLIENT_STATUS_STALE) {
		worker_complete(p); /* The map failed to answer: its error text. */
		return;
	}
	value = malloc((size_t)CLIENT_STALE_SIZE + p->value_size);
	if (value == NULL) {
		pending_set_error(p, -ENOMEM, leader);
		worker_complete(p);
		return;
	}
	client_stale_encode(&figures, value);
	if (p->value_size > 0)
		memcpy(value + CLIENT_STALE_SIZE, p->value, p->value_size);
	free(p->value);
	p->value = value;
	p->value_size += CLIENT_STALE_SIZE;
	worker_complete(p);
}

/* fl_read callback for LEADER. The barrier makes the hint current: it passed
 * through the leader (a follower's read asks the leader for its commit index). */
static void request_leader_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv == 0 || rv == FL_ERR_NOT_LEADER || rv == FL_ERR_WITNESS) {
		/* A witness passes no read barrier, but knows the leader. */
		p->status = CLIENT_STATUS_OK;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	} else {
		pending_set_error(p, rv, leader);
	}
	worker_complete(p);
}

/* A refused REBUILD says what to do next: the library's errno alone
 * ("Invalid argument" for a leader) does not. */
static void pending_set_rebuild_error(struct pending *p, int rv, uint64_t leader)
{
	char text[160];

	pending_set_error(p, rv, leader);
	if (rv == -EINVAL)
		snprintf(text, sizeof(text),
			 "this node leads group %llu: move leadership first (TRANSFER to another "
			 "voter), then REBUILD",
			 (unsigned long long)p->group);
	else if (rv == -EALREADY)
		snprintf(text, sizeof(text), "a rebuild of group %llu is already under way",
			 (unsigned long long)p->group);
	else if (rv == -ENOTSUP)
		snprintf(text, sizeof(text), "this node's store cannot save and restore snapshots");
	else
		return;
	pending_set_text(p, text);
}

/* fl_group_check callback for CHECK (the leader's digest at the check's
 * index is applied here), fl_group_rebuild callback for REBUILD (the
 * leader's snapshot is restored here) and fl_group_snapshot callback for
 * SNAPSHOT (this node's snapshot is durable): the value is that index. */
static void request_index_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	if (rv != 0) {
		if (p->op == CLIENT_OP_REBUILD)
			pending_set_rebuild_error(p, rv, leader);
		else
			pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	p->leader = leader != 0 ? leader : p->server->opt.id;
	p->status = CLIENT_STATUS_OK;
	p->value = malloc(8);
	if (p->value != NULL) {
		le_put64(p->value, result);
		p->value_size = 8;
	}
	worker_complete(p);
}

/* Callback of the membership ops (JOIN, ADD_LEARNER, PROMOTE, REMOVE_MEMBER,
 * TRANSFER, DROP, ADD_WITNESS). What an operator retries later is RETRY, not ERROR: a
 * change not yet committed, a transfer under way, a learner still behind, a
 * full queue. JOIN of a group already here and DROP of one not here are done. */
static void request_admin_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;

	(void)result;
	if (rv == 0 || (p->op == CLIENT_OP_JOIN && rv == FL_ERR_GROUP_EXISTS) ||
	    (p->op == CLIENT_OP_DROP && rv == FL_ERR_NO_GROUP)) {
		p->status = CLIENT_STATUS_OK;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
	} else if (rv == FL_ERR_CONF_PENDING || rv == FL_ERR_TRANSFER || rv == FL_ERR_LAGGING ||
		   rv == -EAGAIN) {
		p->status = CLIENT_STATUS_RETRY;
		p->leader = leader != 0 ? leader : server_leader_hint(p->server, p->group);
		pending_set_text(p, fl_strerror(rv));
	} else {
		pending_set_error(p, rv, leader);
	}
	worker_complete(p);
}

/* fl_group_info callback for MEMBERS: encode what the library filled in. */
static void request_members_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;
	const struct fl_group_info *info = p->info;
	struct client_members m = {0};

	(void)result;
	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	m = (struct client_members){.leader = info->leader,
				    .term = info->term,
				    .commit_index = info->commit_index,
				    .last_index = info->last_index,
				    .conf_index = info->conf_index,
				    .flags = (info->is_leader ? CLIENT_MEMBERS_LEADER : 0) |
					     (info->joint ? CLIENT_MEMBERS_JOINT : 0) |
					     (info->repairing ? CLIENT_MEMBERS_REPAIRING : 0) |
					     (info->diverged ? CLIENT_MEMBERS_DIVERGED : 0),
				    .members_count = info->members_count < CLIENT_MEMBERS_MAX
							 ? info->members_count
							 : CLIENT_MEMBERS_MAX};
	for (uint32_t i = 0; i < m.members_count; i++)
		m.members[i] = (struct client_member){.id = info->members[i].id,
						      .match = info->members[i].match,
						      .role = info->members[i].role,
						      .role_old = info->members[i].role_old};
	p->leader = info->leader;
	p->value = malloc(client_members_size(&m));
	if (p->value == NULL) {
		pending_set_error(p, -ENOMEM, leader);
	} else {
		client_members_encode(&m, p->value);
		p->value_size = client_members_size(&m);
		p->status = CLIENT_STATUS_OK;
	}
	worker_complete(p);
}

/* fl_group_recover callback for RECOVER: the report's figures, or why not
 * (REFUSED: a quorum is reachable, or this replica cannot carry the group). */
static void request_recover_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct pending *p = arg;
	const struct fl_recover_report *rep = p->recover;
	struct client_recover r = {0};

	(void)result;
	if (rv == FL_ERR_QUORUM_REACHABLE || rv == FL_ERR_NOT_SURVIVOR || rv == FL_ERR_REPAIRING) {
		char text[256];

		snprintf(text, sizeof(text), "%s%s%s", fl_strerror(rv),
			 rep->refused_why[0] != '\0' ? ": " : "", rep->refused_why);
		p->status = CLIENT_STATUS_REFUSED;
		p->leader = leader;
		pending_set_text(p, text);
		worker_complete(p);
		return;
	}
	if (rv != 0) {
		pending_set_error(p, rv, leader);
		worker_complete(p);
		return;
	}
	r = (struct client_recover){.term_before = rep->term_before,
				    .term = rep->term,
				    .commit_before = rep->commit_before,
				    .last_before = rep->last_before,
				    .conf_index = rep->conf_index,
				    .dropped_count = rep->dropped_count < CLIENT_MEMBERS_MAX
							 ? rep->dropped_count
							 : CLIENT_MEMBERS_MAX};
	for (uint32_t i = 0; i < r.dropped_count; i++)
		r.dropped[i] = rep->dropped[i];
	p->leader = leader;
	p->value = malloc(client_recover_size(&r));
	if (p->value == NULL) {
		pending_set_error(p, -ENOMEM, leader);
	} else {
		client_recover_encode(&r, p->value);
		p->value_size = client_recover_size(&r);
		p->status = CLIENT_STATUS_OK;
	}
	worker_complete(p);
}

/* RECOVER: fl_group_recover with the request's flags; its callback answers. */
static int request_recover_start(struct conn *c, const struct client_request *req,
				 struct pending *p)
{
	uint32_t flags = req->flags & CLIENT_RECOVER_FORCE ? FL_RECOVER_FORCE : 0;

	p->recover = malloc(sizeof(*p->recover));
	if (p->recover == NULL)
		return -ENOMEM;
	return fl_group_recover(c->worker->server->node, req->group, flags, p->recover,
				request_recover_done, p);
}

void pending_free(struct pending *p)
{
	free(p->recover);
	free(p->value);
	free(p->info);
	free(p->stale);
	free(p);
}

static bool request_is_write(uint32_t op)
{
	return op == CLIENT_OP_PUT || op == CLIENT_OP_DELETE || op == CLIENT_OP_CAS;
}

static bool request_is_membership(uint32_t op)
{
	return (op >= CLIENT_OP_JOIN && op <= CLIENT_OP_DROP) || op == CLIENT_OP_ADD_WITNESS;
}

/* Start a membership op; its callback answers. Returns 0 or an error known at once. */
static int request_admin(struct conn *c, const struct client_request *req, struct pending *p)
{
	struct fl_node *node = c->worker->server->node;

	switch (req->op) {
	case CLIENT_OP_JOIN:
		return fl_group_join(node, req->group, request_admin_done, p);
	case CLIENT_OP_ADD_LEARNER:
		return fl_add_learner(node, req->group, req->member, request_admin_done, p);
	case CLIENT_OP_PROMOTE:
		return fl_promote(node, req->group, req->member, request_admin_done, p);
	case CLIENT_OP_ADD_WITNESS:
		return fl_add_witness(node, req->group, req->member, request_admin_done, p);
	case CLIENT_OP_REMOVE_MEMBER:
		return fl_remove_member(node, req->group, req->member, request_admin_done, p);
	case CLIENT_OP_TRANSFER:
		return fl_transfer(node, req->group, req->member, request_admin_done, p);
	case CLIENT_OP_DROP:
		return fl_group_remove(node, req->group, request_admin_done, p);
	case CLIENT_OP_MEMBERS:
		p->info = malloc(sizeof(*p->info));
		if (p->info == NULL)
			return -ENOMEM;
		return fl_group_info(node, req->group, p->info, request_members_done, p);
	default:
		return -EINVAL;
	}
}

/* STALE_GET: fl_read_stale with the request's bounds; its callback answers. */
static int request_stale_start(struct conn *c, const struct client_request *req, struct pending *p)
{
	p->stale = calloc(1, sizeof(*p->stale));
	if (p->stale == NULL)
		return -ENOMEM;
	p->stale->behind_max = req->behind_max;
	p->stale->age_max_ms = req->age_max_ms;
	return fl_read_stale(c->worker->server->node, req->group, p->stale, request_stale_done, p);
}

static_assert((int)KV_OP_PUT == (int)CLIENT_OP_PUT, "KV commands use the protocol's op codes");
static_assert((int)KV_OP_DELETE == (int)CLIENT_OP_DELETE,
	      "KV commands use the protocol's op codes");
static_assert((int)KV_OP_CAS == (int)CLIENT_OP_CAS, "KV commands use the protocol's op codes");
static_assert(KV_ABSENT == CLIENT_ABSENT, "one marker for an absent key");
static_assert(KV_KEY_SIZE_MAX == CLIENT_KEY_SIZE_MAX, "one key size limit");

/* The log entry a write becomes: key + expected + value + the KV header. */
static uint64_t request_entry_size(const struct client_request *req)
{
	uint64_t expected = req->op == CLIENT_OP_CAS && req->expected_size != CLIENT_ABSENT
				? req->expected_size
				: 0;

	return (uint64_t)KV_CMD_HEADER_SIZE + req->key_size + expected + req->value_size;
}

/* Encode req as a KV command in the worker's scratch buffer and propose it. */
static int request_propose(struct conn *c, const struct client_request *req, struct pending *p)
{
	struct worker *w = c->worker;
	struct kv_cmd cmd = {.op = req->op,
			     .key = req->key,
			     .key_size = req->key_size,
			     .expected = req->expected,
			     .expected_size = req->op == CLIENT_OP_CAS ? req->expected_size : 0,
			     .value = req->value,
			     .value_size = req->value_size};
	uint32_t size = kv_cmd_size(&cmd);

	if (size == 0)
		return -EMSGSIZE;
	if (size > w->scratch_size) {
		unsigned char *grown = realloc(w->scratch, size);

		if (grown == NULL)
			return -ENOMEM;
		w->scratch = grown;
		w->scratch_size = size;
	}
	kv_cmd_encode(&cmd, w->scratch);
	return fl_propose(w->server->node, req->group, w->scratch, size, request_write_done, p);
}

/* LOCAL_GET: this node's map as it is, without a read barrier (debugging). */
static void request_local_get(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	uint64_t hint = server_leader_hint(s, req->group);
	void *value;
	uint32_t value_size;
	int rv =
	    s->store->ops->get(s->store, req->group, req->key, req->key_size, &value, &value_size);

	if (rv == 0)
		conn_respond_op(c, req->op, CLIENT_STATUS_OK, req->request_id, hint, value,
				value_size);
	else if (rv == -ENOENT)
		conn_respond(c, CLIENT_STATUS_NOT_FOUND, req->request_id, hint, NULL, 0);
	else
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint, fl_strerror(rv));
	free(value);
}

/* DIGEST: what this node's state machine applied to the group, without a
 * read barrier (debugging: tests compare it across replicas). */
static void request_digest(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	unsigned char value[CLIENT_DIGEST_SIZE];
	struct kv_digest kd;
	struct client_digest digest;

	s->store->ops->apply_digest(s->store, req->group, &kd);
	digest = (struct client_digest){.applied_count = kd.applied_count,
					.last_applied_index = kd.last_applied_index,
					.digest = kd.digest,
					.order_violations = kd.order_violations,
					.keys_count = kd.keys_count};
	client_digest_encode(&digest, value);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, server_leader_hint(s, req->group), value,
		     sizeof(value));
}

#ifdef FLOTILLA_TEST_HOOKS
/* CORRUPT: set a key in this node's copy only, so that it diverges on
 * purpose; refused unless the node was started to allow it (tests). */
static void request_corrupt(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	uint64_t hint = server_leader_hint(s, req->group);
	int rv;

	if (!s->opt.allow_corrupt || s->store->ops->corrupt == NULL) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint,
				  "CORRUPT refused: start the node with "
				  "--allow-corrupt-for-tests on");
		return;
	}
	rv = s->store->ops->corrupt(s->store, req->group, req->key, req->key_size, req->value,
				    req->value_size);
	if (rv != 0) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, hint, fl_strerror(rv));
		return;
	}
	server_log(LOG_LEVEL_WARN,
		   "group %llu: CORRUPT: a key was set in this replica alone, on request",
		   (unsigned long long)req->group);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, hint, NULL, 0);
}
#else
/* CORRUPT is a test hook: its op number stays reserved, and a node built
 * without FLOTILLA_TEST_HOOKS answers it as an unknown op (BAD_REQUEST; the
 * connection goes on, as for any well-framed request it refuses). */
static void request_corrupt(struct conn *c, const struct client_request *req)
{
	conn_respond_text(c, CLIENT_STATUS_BAD_REQUEST, req->request_id,
			  server_leader_hint(c->worker->server, req->group),
			  "unknown op 9: CORRUPT is a test hook, and this node was built "
			  "without test hooks");
}
#endif

/* CHECK_STATUS: this node's consistency counters, u64 checks | u64 divergences. */
static void request_check_status(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	unsigned char value[16];
	struct fl_metrics m;

	fl_node_metrics(s->node, &m);
	le_put64(value, m.checks);
	le_put64(value + 8, m.divergences);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, server_leader_hint(s, req->group), value,
		     sizeof(value));
}

/* NODE_STATUS: this node as a whole, for flotilla-admin status and health:
 * the node's counters and its shards' gauges summed (lag: the largest). */
static void request_node_status(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	unsigned char value[CLIENT_NODE_STATUS_SIZE];
	struct client_node_status st = {.node_id = s->opt.id};
	struct fl_shard_metrics sm;
	struct fl_metrics m;

	fl_node_metrics(s->node, &m);
	st.groups = m.groups;
	st.leaders = m.leaders;
	st.checks = m.checks;
	st.divergences = m.divergences;
	st.writes_refused_no_space = m.writes_refused_no_space;
	st.shards_count = m.shards_count;
	st.shards_no_space = m.shards_no_space;
	for (uint32_t i = 0; i < m.shards_count; i++) {
		if (fl_shard_metrics(s->node, i, &sm) != 0)
			break;
		st.leaderless += sm.leaderless;
		st.repairing += sm.repairing;
		st.lag_max = sm.lag_max > st.lag_max ? sm.lag_max : st.lag_max;
	}
	client_node_status_encode(&st, value);
	conn_respond(c, CLIENT_STATUS_OK, req->request_id, 0, value, sizeof(value));
}

static void request_handle(struct conn *c, const struct client_request *req)
{
	struct server *s = c->worker->server;
	struct pending *p;
	int rv;

	/* Roles first: a data certificate runs data ops only (client_op_role). */
	if (!client_role_allows(c->role, req->op)) {
		char text[160];

		client_forbidden_text(req->op, c->role, text, sizeof(text));
		conn_respond_text(c, CLIENT_STATUS_FORBIDDEN, req->request_id, 0, text);
		return;
	}
	/* Groups are numbered from 1 (any u64 above 0: a node may host groups
	 * beyond its --groups by JOIN); only CHECK_STATUS and NODE_STATUS,
	 * which are about the node, ignore the field. The request was well framed: go on. */
	if (req->group == 0 && req->op != CLIENT_OP_CHECK_STATUS &&
	    req->op != CLIENT_OP_NODE_STATUS && req->op != CLIENT_OP_PEERS &&
	    req->op != CLIENT_OP_SET_PEER && req->op != CLIENT_OP_REMOVE_PEER) {
		conn_respond_text(c, CLIENT_STATUS_BAD_REQUEST, req->request_id, 0,
				  "group 0 is out of range: groups are numbered from 1");
		return;
	}
	if (req->op == CLIENT_OP_LOCAL_GET) {
		request_local_get(c, req);
		return;
	}
	if (req->op == CLIENT_OP_DIGEST) {
		request_digest(c, req);
		return;
	}
	if (req->op == CLIENT_OP_CORRUPT) {
		request_corrupt(c, req);
		return;
	}
	if (req->op == CLIENT_OP_CHECK_STATUS) {
		request_check_status(c, req);
		return;
	}
	if (req->op == CLIENT_OP_NODE_STATUS) {
		request_node_status(c, req);
		return;
	}
	if (req->op == CLIENT_OP_PEERS || req->op == CLIENT_OP_SET_PEER ||
	    req->op == CLIENT_OP_REMOVE_PEER) {
		request_peers(c, req);
		return;
	}
	p = pending_new(c, req);
	if (p == NULL) {
		conn_respond_text(c, CLIENT_STATUS_ERROR, req->request_id, 0, fl_strerror(-ENOMEM));
		return;
	}
	c->outstanding++;
	if (req->op == CLIENT_OP_GET)
		rv = fl_read(s->node, req->group, request_get_done, p);
	else if (req->op == CLIENT_OP_STALE_GET)
		rv = request_stale_start(c, req, p);
	else if (req->op == CLIENT_OP_LEADER)
		rv = fl_read(s->node, req->group, request_leader_done, p);
	else if (req->op == CLIENT_OP_CHECK)
		rv = fl_group_check(s->node, req->group, request_index_done, p);
	else if (req->op == CLIENT_OP_REBUILD)
		rv = fl_group_rebuild(s->node, req->group, request_index_done, p);
	else if (req->op == CLIENT_OP_SNAPSHOT)
		rv = fl_group_snapshot(s->node, req->group, request_index_done, p);
	else if (req->op == CLIENT_OP_RECOVER)
		rv = request_recover_start(c, req, p);
	else if (request_is_membership(req->op))
		rv = request_admin(c, req, p);
	else
		rv = request_propose(c, req, p);
	if (rv == 0)
		return; /* The callback answers. */
	/* Refused at once: the callback will not run. */
	c->outstanding--;
	if (req->op == CLIENT_OP_LEADER && rv == FL_ERR_NOT_LEADER) {
		p->status = CLIENT_STATUS_OK;
		p->leader = server_leader_hint(s, req->group);
	} else if (request_is_membership(req->op) && rv == -EAGAIN) {
		p->status = CLIENT_STATUS_RETRY;
		p->leader = server_leader_hint(s, req->group);
		pending_set_text(p, fl_strerror(rv));
	} else if (request_is_write(req->op) && rv == -EMSGSIZE) {
		char text[160];

		pending_set_error(p, rv, 0);
		snprintf(text, sizeof(text),
			 "write of %llu bytes (key, value and %u bytes of header) exceeds "
			 "--entry-size-max %u",
			 (unsigned long long)request_entry_size(req), KV_CMD_HEADER_SIZE,
			 s->opt.entry_size_max);
		pending_set_text(p, text);
	} else if (req->op == CLIENT_OP_REBUILD) {
		pending_set_rebuild_error(p, rv, 0);
	} else {
		pending_set_error(p, rv, 0);
	}
	conn_respond(c, p->status, p->request_id, p->leader, p->value, p->value_size);
	pending_free(p);
}

/* Decode and start every complete request that the bounds allow. */
void request_process(struct conn *c)
{
	while (!c->closed && conn_can_start(c) && c->in_end > c->in_start) {
		struct client_request req;
		struct client_refusal why;
		int n = client_request_decode_why(c->in + c->in_start, c->in_end - c->in_start,
						  &req, &why);

		if (n == 0)
			break;
		if (n < 0) {
			conn_respond_text(c, CLIENT_STATUS_BAD_REQUEST, req.request_id, 0,
					  why.text);
			if (why.skip > 0) {
				/* Well framed, refused for its content: go on. */
				c->in_start += why.skip;
				c->requests_seen++;
				continue;
			}
			c->closing = true; /* The stream is out of step: close. */
			break;
		}
		c->in_start += (uint32_t)n;
		c->requests_seen++;
		request_handle(c, &req);
	}
	if (!c->closed && c->in_start == c->in_end) {
		c->in_start = c->in_end = 0;
		if (c->in_size > CONN_BUFFER_KEEP) {
			free(c->in);
			c->in = NULL;
			c->in_size = 0;
			node_budget_sync(c);
		}
	}
}
