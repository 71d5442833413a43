/* flotilla-admin: the cluster's nodes (docs/client-protocol.md, ops 42 to 44).
 *
 * Discovery: --nodes may name one node, as ID=HOST:PORT or just HOST:PORT
 * (its client address). Every command first asks each node --nodes names
 * for PEERS: the answer names the node itself and every node in its address
 * book, with the client address each told it when it dialled. The command
 * then runs on all of them (nodes whose client address no answer knows are
 * named on stderr and left out).
 *
 * add-node --id N --peer-addr HOST:PORT: SET_PEER N=HOST:PORT on every
 * node found, then waits (--timeout-s) until every one of them reports node
 * N connected both ways; then, once N's client address is known, tells N
 * the address of every node (SET_PEER on N; nodes it knows already are
 * unchanged). remove-node --id N: refused while N is a member of a group
 * 1..--groups on any node's view (or, when N answers, while it hosts any
 * group), unless --force; then REMOVE_PEER N on every node. Both print a
 * line per node and a summary, or with --json one JSON document with each
 * node's result. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin_internal.h"
#include "tools/client.h"

#define ADMIN_PEERS_CALL_MS 5000
#define ADMIN_ADD_POLL_MS   200
#define ADMIN_SPEC_SIZE     (CLIENT_NODES_MAX * (CLIENT_ADDR_SIZE_MAX + 24))

/* One node as discovery found it. */
struct admin_found {
	uint64_t id;                     /* 0: not known (HOST:PORT only, and it did not answer). */
	char addr[CLIENT_ADDR_SIZE_MAX]; /* Client address. */
	char peer_addr[CLIENT_PEER_ADDR_MAX + 1];
	bool answered;
	uint32_t peers_count;
	struct client_peer *peers; /* Its PEERS answer (the node itself first). */
};

struct admin_cluster {
	struct admin_found nodes[CLIENT_NODES_MAX];
	uint32_t count;
};

/* One request to the node at addr, its answer into *resp_status and value
 * (malloc()ed, *value_size bytes). Returns 0 or -errno. */
static int admin_call_addr(const char *addr, const struct client_request *req, uint32_t *status,
			   void **value, uint32_t *value_size)
{
	struct client c = {.fd = -1};
	struct client_response resp;
	int rv = client_connect(&c, addr, ADMIN_PEERS_CALL_MS);

	*value = NULL;
	*value_size = 0;
	if (rv == 0)
		rv = client_send(&c, req);
	if (rv == 0)
		rv = client_wait(&c, &resp, ADMIN_PEERS_CALL_MS);
	if (rv == 0) {
		*status = resp.status;
		if (resp.value_size > 0 && (*value = malloc(resp.value_size)) != NULL) {
			memcpy(*value, resp.value, resp.value_size);
			*value_size = resp.value_size;
		}
	}
	client_close(&c);
	return rv;
}

/* PEERS of the node at f->addr into f. Returns 0, or -errno / -EBADMSG. */
static int admin_peers_of(struct admin_found *f)
{
	struct client_request req = {.op = CLIENT_OP_PEERS, .request_id = 1};
	uint32_t status = 0, size;
	void *value;
	int rv = admin_call_addr(f->addr, &req, &status, &value, &size);

	free(f->peers);
	f->peers = NULL;
	f->peers_count = 0;
	if (rv == 0 && status == CLIENT_STATUS_FORBIDDEN)
		rv = -EACCES; /* A data certificate: PEERS needs the admin role. */
	else if (rv == 0 && status != CLIENT_STATUS_OK)
		rv = -EOPNOTSUPP; /* An older node: it does not know PEERS. */
	if (rv == 0 && (f->peers = calloc(CLIENT_PEERS_MAX, sizeof(*f->peers))) == NULL)
		rv = -ENOMEM;
	if (rv == 0)
		rv = client_peers_decode(value, size, f->peers, CLIENT_PEERS_MAX, &f->peers_count);
	if (rv == 0 && (f->peers_count == 0 || (f->peers[0].flags & CLIENT_PEER_SELF) == 0))
		rv = -EBADMSG;
	if (rv == 0 && f->peers_count > CLIENT_PEERS_MAX)
		f->peers_count = CLIENT_PEERS_MAX;
	if (rv == 0) {
		f->answered = true;
		f->id = f->peers[0].id;
		snprintf(f->peer_addr, sizeof(f->peer_addr), "%s", f->peers[0].addr);
	}
	free(value);
	return rv;
}

static struct admin_found *admin_cluster_find(struct admin_cluster *cl, uint64_t id)
{
	for (uint32_t i = 0; i < cl->count; i++)
		if (cl->nodes[i].id == id)
			return &cl->nodes[i];
	return NULL;
}

static void admin_cluster_free(struct admin_cluster *cl)
{
	for (uint32_t i = 0; i < cl->count; i++)
		free(cl->nodes[i].peers);
	cl->count = 0;
}

/* Parse --nodes into cl (ids may be 0: HOST:PORT alone). Returns 0 or -EINVAL. */
static int admin_cluster_parse(struct admin_cluster *cl, const char *spec)
{
	const char *p = spec;

	memset(cl, 0, sizeof(*cl));
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		const char *eq = memchr(p, '=', len);
		struct admin_found *f;
		size_t addr_len = eq != NULL ? len - (size_t)(eq + 1 - p) : len;

		if (cl->count == CLIENT_NODES_MAX || addr_len == 0 ||
		    addr_len >= CLIENT_ADDR_SIZE_MAX)
			return -EINVAL;
		f = &cl->nodes[cl->count++];
		if (eq != NULL) {
			char *end;

			f->id = strtoull(p, &end, 10);
			if (end != eq || f->id == 0)
				return -EINVAL;
		}
		memcpy(f->addr, eq != NULL ? eq + 1 : p, addr_len);
		p += len;
		if (*p == ',')
			p++;
	}
	return cl->count > 0 ? 0 : -EINVAL;
}

/* Ask every node for PEERS and add the nodes they know. Returns 0 when at
 * least one answered or every node of --nodes has an id; else -EHOSTUNREACH. */
static int admin_cluster_discover(struct admin_cluster *cl, bool quiet)
{
	uint32_t answered = 0, unnamed = 0;

	/* Breadth first: nodes found are asked too, so any one node leads to
	 * every node reachable through the address books. */
	for (uint32_t i = 0; i < cl->count; i++) {
		struct admin_found *f = &cl->nodes[i];
		uint64_t given = f->id;
		int rv = admin_peers_of(f);

		if (rv != 0) {
			f->id = given;
			unnamed += given == 0;
			if (!quiet)
				fprintf(stderr, "flotilla-admin: node %s: no PEERS answer (%s)\n",
					f->addr,
					rv == -EOPNOTSUPP ? "it does not know the op"
					: rv == -EACCES
					    ? "forbidden: PEERS needs the admin role, and this "
					      "client's certificate has the data role"
					    : client_error_text(rv));
			continue;
		}
		answered++;
		if (given != 0 && given != f->id)
			fprintf(stderr, "flotilla-admin: %s is node %" PRIu64 ", not %" PRIu64 "\n",
				f->addr, f->id, given);
		for (uint32_t j = 1; j < f->peers_count; j++) {
			const struct client_peer *q = &f->peers[j];
			struct admin_found *n;

			if (admin_cluster_find(cl, q->id) != NULL)
				continue;
			if (q->client_addr[0] == '\0' ||
			    strlen(q->client_addr) >= CLIENT_ADDR_SIZE_MAX) {
				/* Asked later through another node, perhaps. */
				continue;
			}
			if (cl->count == CLIENT_NODES_MAX) {
				fprintf(stderr,
					"flotilla-admin: more than %d nodes: node %" PRIu64
					" left out\n",
					CLIENT_NODES_MAX, q->id);
				continue;
			}
			n = &cl->nodes[cl->count++];
			memset(n, 0, sizeof(*n));
			n->id = q->id;
			snprintf(n->addr, sizeof(n->addr), "%s", q->client_addr);
		}
	}
	/* Nodes some book names but whose client address nobody knows: one
	 * line each. */
	for (uint32_t i = 0, said_count = 0; i < cl->count && !quiet; i++)
		for (uint32_t j = 1; j < cl->nodes[i].peers_count; j++) {
			static uint64_t said[CLIENT_PEERS_MAX];
			uint64_t id = cl->nodes[i].peers[j].id;
			bool before = false;

			for (uint32_t k = 0; k < said_count && !before; k++)
				before = said[k] == id;
			if (before || admin_cluster_find(cl, id) != NULL)
				continue;
			if (said_count < CLIENT_PEERS_MAX)
				said[said_count++] = id;
			fprintf(stderr,
				"flotilla-admin: node %" PRIu64 " is in node %" PRIu64
				"'s address book but its client address is not known (it has "
				"not connected yet): left out\n",
				id, cl->nodes[i].id);
		}
	return answered > 0 || unnamed == 0 ? 0 : -EHOSTUNREACH;
}

/* The --nodes spec of cl's nodes with an id. */
static void admin_cluster_spec(const struct admin_cluster *cl, char *spec, size_t size)
{
	size_t n = 0;

	spec[0] = '\0';
	for (uint32_t i = 0; i < cl->count && n < size; i++)
		if (cl->nodes[i].id != 0)
			n += (size_t)snprintf(spec + n, size - n, "%s%" PRIu64 "=%s",
					      n > 0 ? "," : "", cl->nodes[i].id, cl->nodes[i].addr);
}

int admin_discover(struct admin_options *opt)
{
	static char spec[ADMIN_SPEC_SIZE];
	struct admin_cluster cl;
	int rv = admin_cluster_parse(&cl, opt->nodes);

	if (rv != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		return rv;
	}
	rv = admin_cluster_discover(&cl, false);
	if (rv == 0) {
		admin_cluster_spec(&cl, spec, sizeof(spec));
		opt->nodes = spec;
	} else {
		fprintf(stderr, "flotilla-admin: no node of --nodes answered: cannot find the "
				"cluster\n");
	}
	admin_cluster_free(&cl);
	return rv;
}

/* SET_PEER or REMOVE_PEER of id on the node at addr. Returns 0 (done), 1
 * (refused: text in why) or -errno. */
static int admin_peer_change(const char *addr, uint32_t op, uint64_t id, const char *peer_addr,
			     char *why, size_t why_size)
{
	struct client_request req = {.op = op, .request_id = 1, .member = id};
	uint32_t status = 0, size;
	void *value;
	int rv;

	if (peer_addr != NULL) {
		req.key = peer_addr;
		req.key_size = (uint32_t)strlen(peer_addr);
	}
	rv = admin_call_addr(addr, &req, &status, &value, &size);
	if (rv == 0 && status != CLIENT_STATUS_OK) {
		snprintf(why, why_size, "%s (status %u)%s%.*s", client_op_name(op), status,
			 size > 0 ? ": " : "", (int)(size < 200 ? size : 200),
			 value != NULL ? (const char *)value : "");
		rv = status == CLIENT_STATUS_PEER_REFUSED ? 1 : 2;
	}
	free(value);
	return rv;
}

/* The flags node f's PEERS gives peer id (0 when absent). */
static uint32_t admin_peer_flags(const struct admin_found *f, uint64_t id)
{
	for (uint32_t j = 1; j < f->peers_count; j++)
		if (f->peers[j].id == id)
			return f->peers[j].flags | 1u << 31;
	return 0;
}

/* add-node and remove-node: what happened on each node, for --json. */
struct admin_node_result {
	uint64_t id;
	const char *addr;   /* Its client address. */
	const char *result; /* See admin_nodes_json. */
	uint32_t flags;     /* add-node, "not_connected": the PEERS flags of the node added. */
	char error[300];
};

struct admin_nodes_report {
	uint32_t count;
	struct admin_node_result nodes[CLIENT_NODES_MAX];
	char error[400]; /* Why the command failed; empty when it did not. */
};

/* Set node f's result (and error, when fmt is not NULL). Returns its
 * entry, or NULL when the report is full. */
__attribute__((format(printf, 4, 5))) static struct admin_node_result *
admin_report_set(struct admin_nodes_report *rep, const struct admin_found *f, const char *result,
		 const char *fmt, ...)
{
	struct admin_node_result *n = NULL;
	va_list ap;

	for (uint32_t i = 0; i < rep->count && n == NULL; i++)
		if (rep->nodes[i].id == f->id)
			n = &rep->nodes[i];
	if (n == NULL) {
		if (rep->count == CLIENT_NODES_MAX)
			return NULL;
		n = &rep->nodes[rep->count++];
		*n = (struct admin_node_result){.id = f->id, .addr = f->addr};
	}
	n->result = result;
	n->error[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(n->error, sizeof(n->error), fmt, ap);
		va_end(ap);
	}
	return n;
}

/* The report as one JSON document's "nodes" and "error" (when failed); the
 * caller opened the document and closes it. */
static void admin_nodes_json(const struct admin_nodes_report *rep)
{
	printf("\"nodes\":[");
	for (uint32_t i = 0; i < rep->count; i++) {
		const struct admin_node_result *n = &rep->nodes[i];

		printf("%s{\"node\":%" PRIu64 ",\"address\":", i > 0 ? "," : "", n->id);
		admin_json_string(stdout, n->addr);
		printf(",\"result\":\"%s\"", n->result);
		if (strcmp(n->result, "not_connected") == 0)
			printf(",\"to_it\":%s,\"from_it\":%s",
			       n->flags & CLIENT_PEER_CONNECTED_OUT ? "true" : "false",
			       n->flags & CLIENT_PEER_CONNECTED_IN ? "true" : "false");
		if (n->error[0] != '\0') {
			printf(",\"error\":");
			admin_json_string(stdout, n->error);
		}
		printf("}");
	}
	printf("]");
	if (rep->error[0] != '\0') {
		printf(",\"error\":");
		admin_json_string(stdout, rep->error);
	}
}

/* Tell node id (at client_addr) the peer address of every other node. */
static int admin_add_teach(const struct admin_options *opt, const struct admin_cluster *cl,
			   uint64_t id, const char *client_addr, struct admin_nodes_report *rep)
{
	int failed = 0;

	for (uint32_t i = 0; i < cl->count; i++) {
		const struct admin_found *f = &cl->nodes[i];
		char why[300];
		int rv;

		if (!f->answered || f->id == id || f->peer_addr[0] == '\0')
			continue;
		rv = admin_peer_change(client_addr, CLIENT_OP_SET_PEER, f->id, f->peer_addr, why,
				       sizeof(why));
		if (rv != 0) {
			if (!opt->json)
				printf("node %" PRIu64 ": SET_PEER %" PRIu64 "=%s failed: %s\n", id,
				       f->id, f->peer_addr, rv > 0 ? why : client_error_text(rv));
			admin_report_set(rep, f, "teach_failed",
					 "node %" PRIu64 ": SET_PEER %" PRIu64 "=%s failed: %s", id,
					 f->id, f->peer_addr, rv > 0 ? why : client_error_text(rv));
			failed = 1;
		}
	}
	return failed;
}

/* add-node's end: its summary line (rep->error when it failed), or its
 * JSON document. Returns the exit status. */
static int admin_add_end(const struct admin_options *opt, struct admin_cluster *cl,
			 const struct admin_nodes_report *rep, uint64_t started,
			 const char *new_client)
{
	bool ok = rep->error[0] == '\0';

	if (opt->json) {
		printf("{\"command\":\"add-node\",\"id\":%" PRIu64 ",\"peer_addr\":", opt->id);
		admin_json_string(stdout, opt->peer_addr);
		printf(",\"client_addr\":");
		admin_json_string(stdout, new_client);
		printf(",\"ok\":%s,\"elapsed_ms\":%" PRIu64 ",", ok ? "true" : "false",
		       admin_now_ms() - started);
		admin_nodes_json(rep);
		printf("}\n");
	} else if (!ok) {
		printf("add-node %" PRIu64 ": FAILED: %s\n", opt->id, rep->error);
	} else {
		printf("add-node %" PRIu64 ": done: %u nodes know it at %s and are connected with "
		       "it (%.3f s); move groups onto it with `flotilla-admin move`\n",
		       opt->id, rep->count, opt->peer_addr,
		       (double)(admin_now_ms() - started) / 1000.0);
	}
	fflush(stdout);
	admin_cluster_free(cl);
	return ok ? 0 : 1;
}

int admin_add_node(const struct admin_options *opt)
{
	static struct admin_nodes_report rep;
	struct admin_cluster cl;
	uint64_t started = admin_now_ms(), deadline = started + (uint64_t)opt->timeout_s * 1000;
	char new_client[CLIENT_PEER_CLIENT_MAX + 1] = "";
	uint32_t targets = 0, failed = 0, waiting;

	memset(&rep, 0, sizeof(rep));
	if (admin_cluster_parse(&cl, opt->nodes) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		return 2;
	}
	if (admin_cluster_discover(&cl, false) != 0) {
		fprintf(stderr, "flotilla-admin: no node of --nodes answered\n");
		admin_cluster_free(&cl);
		return 1;
	}
	for (uint32_t i = 0; i < cl.count; i++) {
		struct admin_found *f = &cl.nodes[i];
		char why[300];
		int rv;

		if (f->id == opt->id)
			continue; /* The new node itself, already known to some. */
		targets++;
		if (!f->answered) {
			if (!opt->json)
				printf("node %" PRIu64
				       " (%s): not reachable: cannot add node %" PRIu64 " there\n",
				       f->id, f->addr, opt->id);
			admin_report_set(&rep, f, "unreachable", "not reachable");
			failed++;
			continue;
		}
		rv = admin_peer_change(f->addr, CLIENT_OP_SET_PEER, opt->id, opt->peer_addr, why,
				       sizeof(why));
		if (rv != 0) {
			if (!opt->json)
				printf("node %" PRIu64 ": %s\n", f->id,
				       rv > 0 ? why : client_error_text(rv));
			admin_report_set(&rep, f, "failed", "%s",
					 rv > 0 ? why : client_error_text(rv));
			failed++;
		} else {
			if (!opt->json)
				printf("node %" PRIu64 ": knows node %" PRIu64 " at %s\n", f->id,
				       opt->id, opt->peer_addr);
			admin_report_set(&rep, f, "told", NULL);
		}
	}
	if (failed > 0 || targets == 0) {
		snprintf(rep.error, sizeof(rep.error), "%u of %u nodes did not take it%s", failed,
			 targets, targets == 0 ? " (no node to tell)" : "");
		return admin_add_end(opt, &cl, &rep, started, new_client);
	}
	/* Wait until every node is connected with it both ways. */
	do {
		waiting = 0;
		for (uint32_t i = 0; i < cl.count; i++) {
			struct admin_found *f = &cl.nodes[i];
			uint32_t flags;

			if (f->id == opt->id || !f->answered)
				continue;
			flags = admin_peers_of(f) == 0 ? admin_peer_flags(f, opt->id) : 0;
			if ((flags & CLIENT_PEER_CONNECTED_OUT) == 0 ||
			    (flags & CLIENT_PEER_CONNECTED_IN) == 0)
				waiting++;
			for (uint32_t j = 1; j < f->peers_count; j++)
				if (f->peers[j].id == opt->id && f->peers[j].client_addr[0] != '\0')
					snprintf(new_client, sizeof(new_client), "%s",
						 f->peers[j].client_addr);
		}
		if (waiting > 0)
			admin_sleep_ms(ADMIN_ADD_POLL_MS);
	} while (waiting > 0 && admin_now_ms() < deadline);
	for (uint32_t i = 0; i < cl.count; i++) {
		struct admin_found *f = &cl.nodes[i];
		uint32_t flags = admin_peer_flags(f, opt->id);
		struct admin_node_result *n;

		if (f->id == opt->id || !f->answered)
			continue;
		if ((flags & CLIENT_PEER_CONNECTED_OUT) != 0 &&
		    (flags & CLIENT_PEER_CONNECTED_IN) != 0) {
			admin_report_set(&rep, f, "connected", NULL);
			continue;
		}
		if (!opt->json)
			printf("node %" PRIu64 ": not connected with node %" PRIu64
			       " (to it: %s, from it: %s)\n",
			       f->id, opt->id, flags & CLIENT_PEER_CONNECTED_OUT ? "up" : "down",
			       flags & CLIENT_PEER_CONNECTED_IN ? "up" : "down");
		n = admin_report_set(&rep, f, "not_connected", NULL);
		if (n != NULL)
			n->flags = flags;
	}
	if (waiting > 0) {
		snprintf(rep.error, sizeof(rep.error),
			 "%u nodes not connected with it after %u s: is it running at %s, with "
			 "the same --cluster-id, shard count and key, and with at least one of "
			 "them as --peer?",
			 waiting, opt->timeout_s, opt->peer_addr);
		return admin_add_end(opt, &cl, &rep, started, new_client);
	}
	if (new_client[0] != '\0' && admin_add_teach(opt, &cl, opt->id, new_client, &rep) != 0)
		snprintf(rep.error, sizeof(rep.error), "could not tell it every node's address");
	return admin_add_end(opt, &cl, &rep, started, new_client);
}

#define ADMIN_MEMBER_EXAMPLES 5

/* Groups 1..--groups in which node id is a member on any node's view; the
 * first ADMIN_MEMBER_EXAMPLES of them into examples. Returns the count, or
 * -1 when a node did not answer (then nothing can be promised). */
static int64_t admin_member_groups(const struct admin_options *opt, uint64_t id,
				   uint64_t examples[ADMIN_MEMBER_EXAMPLES])
{
	struct admin_view v;
	int64_t count = 0;
	uint32_t down = 0;

	if (admin_view_init(&v, opt) != 0)
		return -1;
	admin_view_read(&v, admin_now_ms() + (uint64_t)opt->timeout_s * 1000);
	for (uint32_t s = 0; s < v.nodes_count; s++)
		down += !v.nodes[s].up && v.nodes[s].id != id;
	for (uint64_t g = 1; g <= v.groups_count; g++) {
		bool member = false;

		for (uint32_t s = 0; s < v.nodes_count && !member; s++) {
			const struct admin_replica *r = admin_view_replica(&v, g, s);

			if (r->state == ADMIN_REPLICA_HOSTED)
				member = client_members_role(&r->m, id) != CLIENT_ROLE_NONE;
			else if (v.nodes[s].id == id && r->state != ADMIN_REPLICA_ABSENT)
				member = v.nodes[s].up; /* It answered and hosts it. */
		}
		if (member && count < ADMIN_MEMBER_EXAMPLES)
			examples[count] = g;
		count += member;
	}
	admin_view_deinit(&v);
	return down > 0 && count == 0 ? -1 : count;
}

/* remove-node refused: node id is (or may be) a member of count groups. */
static int admin_remove_refused(const struct admin_options *opt, int64_t count,
				const uint64_t examples[ADMIN_MEMBER_EXAMPLES])
{
	char text[128];
	size_t n = 0;

	text[0] = '\0';
	for (int64_t i = 0; i < count && i < ADMIN_MEMBER_EXAMPLES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%" PRIu64, i > 0 ? ", " : "",
				      examples[i]);
	if (opt->json) {
		printf("{\"command\":\"remove-node\",\"id\":%" PRIu64
		       ",\"ok\":false,\"refused\":true,\"member_of\":%" PRId64 ",\"groups\":[",
		       opt->id, count);
		for (int64_t i = 0; i < count && i < ADMIN_MEMBER_EXAMPLES; i++)
			printf("%s%" PRIu64, i > 0 ? "," : "", examples[i]);
		printf("],\"error\":\"%s\"}\n",
		       count < 0 ? "a node did not answer: whether it is still a member of some "
				   "group cannot be told"
				 : "still a member of groups: move them off it first");
	} else if (count < 0) {
		printf("remove-node %" PRIu64 ": refused: a node did not answer, so whether node "
		       "%" PRIu64 " is still a member of some group cannot be told (--force "
		       "removes it anyway)\n",
		       opt->id, opt->id);
	} else {
		printf("remove-node %" PRIu64 ": refused: node %" PRIu64 " is still a member of "
		       "%" PRId64 " of groups 1..%" PRIu64 " (%s%s): move them off it first "
		       "(flotilla-admin move), or --force\n",
		       opt->id, opt->id, count, opt->groups_count, text,
		       count > ADMIN_MEMBER_EXAMPLES ? ", ..." : "");
	}
	fflush(stdout);
	return 1;
}

int admin_remove_node(const struct admin_options *opt)
{
	static struct admin_nodes_report rep;
	struct admin_cluster cl;
	uint32_t done = 0, failed = 0;

	memset(&rep, 0, sizeof(rep));
	if (admin_cluster_parse(&cl, opt->nodes) != 0) {
		fprintf(stderr, "flotilla-admin: bad --nodes '%s'\n", opt->nodes);
		return 2;
	}
	if (!opt->force) {
		uint64_t examples[ADMIN_MEMBER_EXAMPLES];
		int64_t count = admin_member_groups(opt, opt->id, examples);

		if (count != 0) {
			admin_cluster_free(&cl);
			return admin_remove_refused(opt, count, examples);
		}
	}
	if (admin_cluster_discover(&cl, true) != 0) {
		fprintf(stderr, "flotilla-admin: no node of --nodes answered\n");
		admin_cluster_free(&cl);
		return 1;
	}
	for (uint32_t i = 0; i < cl.count; i++) {
		struct admin_found *f = &cl.nodes[i];
		char why[300];
		int rv;

		if (f->id == opt->id)
			continue;
		if (!f->answered) {
			if (!opt->json)
				printf("node %" PRIu64 " (%s): not reachable: remove node %" PRIu64
				       " there once it is back\n",
				       f->id, f->addr, opt->id);
			admin_report_set(&rep, f, "unreachable", "not reachable");
			failed++;
			continue;
		}
		rv = admin_peer_change(f->addr, CLIENT_OP_REMOVE_PEER, opt->id, NULL, why,
				       sizeof(why));
		if (rv == 1 && admin_peer_flags(f, opt->id) == 0)
			rv = 0; /* Not in its book: nothing to do. */
		if (rv != 0) {
			if (!opt->json)
				printf("node %" PRIu64 ": %s\n", f->id,
				       rv > 0 ? why : client_error_text(rv));
			admin_report_set(&rep, f, "failed", "%s",
					 rv > 0 ? why : client_error_text(rv));
			failed++;
		} else {
			if (!opt->json)
				printf("node %" PRIu64 ": forgot node %" PRIu64 "\n", f->id,
				       opt->id);
			admin_report_set(&rep, f, "forgot", NULL);
			done++;
		}
	}
	if (opt->json) {
		printf("{\"command\":\"remove-node\",\"id\":%" PRIu64
		       ",\"ok\":%s,\"refused\":false,\"forgot\":%u,\"failed\":%u,",
		       opt->id, failed > 0 ? "false" : "true", done, failed);
		admin_nodes_json(&rep);
		printf("}\n");
	} else {
		printf("remove-node %" PRIu64 ": %s: %u nodes forgot it, %u failed\n", opt->id,
		       failed > 0 ? "FAILED" : "done", done, failed);
	}
	fflush(stdout);
	admin_cluster_free(&cl);
	return failed > 0 ? 1 : 0;
}
