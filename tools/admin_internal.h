/* What flotilla-admin's files share. Only tools/flotilla-admin.c and the
 * tools/admin_*.c files include this.
 *
 *   flotilla-admin.c  main, the options, move
 *   admin_member.c    membership changes of many groups (move, add-witness):
 *                     the thread pool, calls to the leader, each group
 *                     driven round by round to its end
 *   admin_witness.c   add-witness
 *   admin_view.c      one look at the cluster: NODE_STATUS and MEMBERS of
 *                     every group from every node, pipelined per node
 *   admin_status.c    status and health: what the look shows, as a table or
 *                     JSON, and the reasons the cluster is not healthy
 *   admin_verify.c    verify: CHECK of every group, then who diverged
 *   admin_group.c     transfer and snapshot of one group
 *   admin_recover.c   recover: groups that lost a majority, on a survivor
 *   admin_nodes.c     finding the cluster from one node (PEERS); add-node and
 *                     remove-node (SET_PEER, REMOVE_PEER) */
#ifndef TOOLS_ADMIN_INTERNAL_H
#define TOOLS_ADMIN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/client.h"

#define ADMIN_ERROR_SIZE 160

enum admin_command {
	ADMIN_MOVE,
	ADMIN_STATUS,
	ADMIN_HEALTH,
	ADMIN_VERIFY,
	ADMIN_TRANSFER,
	ADMIN_SNAPSHOT,
	ADMIN_ADD_WITNESS,
	ADMIN_RECOVER,
	ADMIN_GROW,
	ADMIN_ADD_NODE,
	ADMIN_REMOVE_NODE,
};

struct admin_options {
	enum admin_command command;
	const char *nodes;
	uint64_t from, to;
	uint64_t groups_count;
	uint64_t group;   /* transfer, snapshot, recover. */
	uint64_t node;    /* snapshot: only this node (0: every node hosting the group);
			   * recover: the survivor. */
	uint64_t lag_max; /* Entries a replica may be behind its leader and count as caught up. */
	uint32_t timeout_s;
	uint32_t parallel;
	uint32_t group_timeout_s;
	uint32_t voters_min;
	bool verbose;
	bool json;
	uint64_t id;                             /* add-node, remove-node: the node. */
	const char *peer_addr;                   /* add-node: its peer listener. */
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-*; NULL: FLOTILLA_TLS_*. */
	bool force; /* recover: even where a quorum seems reachable; remove-node: even while
		     * the node is a group's member. */
};

uint64_t admin_now_ms(void);
void admin_sleep_ms(uint64_t ms);

/* One request to one node and its answer (admin_batch). */
struct admin_req {
	struct client_request req; /* op, group, member; admin_batch sets request_id. */
	int rv;                    /* 0: answered; else -errno (unreachable, lost, timed out). */
	uint32_t status;
	uint64_t leader_hint;
	void *value; /* malloc()ed; NULL when empty. */
	uint32_t value_size;
};

/* Send count requests to node, at most a window of them at once, and take
 * their answers until deadline_ms. Each request ends answered (rv 0) or
 * failed (rv -errno; the connection is closed and reopened by the next
 * call). Returns the count answered. Frees the values of an earlier run. */
uint32_t admin_batch(struct client_router *r, uint64_t node, struct admin_req *reqs, uint32_t count,
		     uint64_t deadline_ms);
void admin_reqs_clear(struct admin_req *reqs, uint32_t count);

/* The text of an answer that is not OK (or of rv), for a message. */
void admin_req_error(const struct admin_req *rq, char *buf, size_t size);

enum admin_replica_state {
	ADMIN_REPLICA_UNKNOWN, /* The node did not answer. */
	ADMIN_REPLICA_ABSENT,  /* The node does not host the group. */
	ADMIN_REPLICA_HOSTED,
};

/* One group on one node, as that node sees it. */
struct admin_replica {
	enum admin_replica_state state;
	struct client_members m; /* HOSTED: the node's MEMBERS answer. */
};

struct admin_node_view {
	uint64_t id;
	bool up; /* NODE_STATUS answered. */
	char error[ADMIN_ERROR_SIZE];
	struct client_node_status st;
	uint64_t hosted, leads; /* Groups 1..N hosted and led, from MEMBERS. */
	uint64_t witnesses;     /* Groups 1..N it is a witness of, by its own MEMBERS. */
};

/* The cluster as seen by one look: every node of --nodes, groups 1..N. */
struct admin_view {
	struct client_router router;
	uint32_t nodes_count;
	struct admin_node_view nodes[CLIENT_NODES_MAX];
	uint64_t groups_count;
	struct admin_replica *replicas; /* groups_count x nodes_count, group-major. */
	struct admin_req *reqs;         /* Scratch: one per group. */
};

/* Returns 0, -EINVAL (bad --nodes) or -ENOMEM. */
int admin_view_init(struct admin_view *v, const struct admin_options *opt);
void admin_view_deinit(struct admin_view *v);

/* Look again: NODE_STATUS then MEMBERS of every group from every node, each
 * node's answers until deadline_ms. */
void admin_view_read(struct admin_view *v, uint64_t deadline_ms);

/* Group's replica on the node in slot (0 .. nodes_count - 1). */
struct admin_replica *admin_view_replica(const struct admin_view *v, uint64_t group, uint32_t slot);

/* The slot of the node that leads group (the highest term among those that
 * say they lead), or -1 when none does. */
int admin_view_leader(const struct admin_view *v, uint64_t group);

/* The slot of node id, or -1 when it is not in --nodes. */
int admin_view_slot(const struct admin_view *v, uint64_t id);

/* The reasons flotilla-admin reports, each with its kind and its text. */
enum admin_problem_kind {
	ADMIN_PROBLEM_DOWN,
	ADMIN_PROBLEM_DISK_FULL,
	ADMIN_PROBLEM_NO_LEADER,
	ADMIN_PROBLEM_NO_QUORUM,
	ADMIN_PROBLEM_REPAIRING,
	ADMIN_PROBLEM_DIVERGED,
	ADMIN_PROBLEM_LAGGING,   /* Reported, not unhealthy by itself. */
	ADMIN_PROBLEM_UNCHECKED, /* verify: a group or replica the check did not cover. */
	ADMIN_PROBLEM_KINDS,
};

struct admin_problem {
	enum admin_problem_kind kind;
	uint64_t node;  /* 0: not about one node. */
	uint64_t group; /* 0: not about one group. */
	uint64_t behind;
	char text[ADMIN_ERROR_SIZE + 64];
};

struct admin_problems {
	struct admin_problem *items;
	uint32_t count, capacity;
	uint32_t counts[ADMIN_PROBLEM_KINDS];
};

/* Add a problem; returns it, or NULL when out of memory (then it is
 * counted, not listed). */
__attribute__((format(printf, 5, 6))) struct admin_problem *
admin_problem_add(struct admin_problems *p, enum admin_problem_kind kind, uint64_t node,
		  uint64_t group, const char *fmt, ...);
void admin_problems_free(struct admin_problems *p);

/* The kind's name in JSON ("down", "disk_full", ...). */
const char *admin_problem_name(enum admin_problem_kind kind);

/* Whether a problem of kind makes health (and verify) fail. */
bool admin_problem_is_unhealthy(enum admin_problem_kind kind);

/* Print the problems, one line each, at most per_kind_max of each kind
 * (then a line with how many more). */
void admin_problems_print(FILE *out, const struct admin_problems *p, uint32_t per_kind_max);

/* Print the problems as a JSON array. */
void admin_problems_json(FILE *out, const struct admin_problems *p);

/* Print s as a JSON string, quotes included. */
void admin_json_string(FILE *out, const char *s);

/* admin_status.c: nodes down or with a full disk, into p. */
void admin_check_nodes(const struct admin_view *v, struct admin_problems *p);

/* admin_member.c: membership changes of groups first..last, --parallel at a
 * time (see the top of admin_member.c). */
enum admin_outcome { ADMIN_DONE, ADMIN_ALREADY, ADMIN_ABSENT, ADMIN_FAILED, ADMIN_OUTCOMES };

struct admin_result {
	uint8_t outcome; /* enum admin_outcome. */
	uint64_t ms;
	char error[ADMIN_ERROR_SIZE]; /* ADMIN_FAILED: the last error. */
};

struct admin_worker;

/* One round of group's change: 1 when done (*outcome set), 0 after a step,
 * -EINPROGRESS to look again shortly, -EAGAIN to back off. state is the
 * group's own, state_size bytes zeroed before its first round. */
typedef int (*admin_round_fn)(struct admin_worker *w, uint64_t group, void *state,
			      enum admin_outcome *outcome);

struct admin_pool {
	const struct admin_options *opt; /* nodes, parallel, group_timeout_s, verbose, json. */
	uint64_t first, last;            /* The groups, first..last. */
	admin_round_fn round;
	size_t state_size;
	const char *outcome_text[ADMIN_OUTCOMES]; /* For --verbose lines. */
	/* Out. */
	struct admin_result *results; /* last - first + 1 of them; the caller frees. */
	atomic_uint_fast64_t counts[ADMIN_OUTCOMES];
	uint64_t started_ms, elapsed_ms;
	/* The pool's. */
	atomic_uint_fast64_t next_group;
	pthread_mutex_t out_lock;
};

/* One thread of the pool: its connections and the group it drives. */
struct admin_worker {
	struct admin_pool *pool;
	pthread_t thread;
	struct client_router router; /* Used for its connections only. */
	uint64_t request_id;
	uint64_t leader; /* Where the current group's leader was last seen. */
	void *state;
	char error[ADMIN_ERROR_SIZE];
};

/* The answer of one call: status, leader hint and up to value_max bytes of
 * value (the rest is dropped). */
struct admin_answer {
	uint32_t status;
	uint64_t leader_hint;
	unsigned char value[CLIENT_MEMBERS_HEADER_SIZE + CLIENT_MEMBER_SIZE * CLIENT_MEMBERS_MAX];
	uint32_t value_size;
};

/* Run the pool over its groups. Returns 0 (see results and counts),
 * -EINVAL (bad --nodes or no groups) or -ENOMEM. */
int admin_pool_run(struct admin_pool *pool);

/* After the pool ran: print its part of a command's JSON document, from
 * "ok" to the end: the count of each outcome named in names (ADMIN_ABSENT's
 * only with with_absent), elapsed_ms, and "groups", each group's outcome,
 * ms and, when it failed, error; then the closing brace and a newline. The
 * caller prints the opening brace and its own fields first. */
void admin_pool_json(const struct admin_pool *pool, const char *const names[ADMIN_OUTCOMES],
		     bool with_absent);

/* Send op for group (with member) to node and wait for its answer. Returns
 * 0 (see ans->status) or -errno (no connection, lost, timed out); the
 * connection is closed on failure and reopened by the next call. Sets
 * w->error on failure and on an answer other than OK. */
int admin_call(struct admin_worker *w, uint64_t node, uint32_t op, uint64_t group, uint64_t member,
	       struct admin_answer *ans);

/* The leader's view of group's membership, following the MEMBERS answers'
 * leader field from node to node; w->leader is set to it. Returns 0, or
 * -EAGAIN when no leader is known right now (w->error says why). */
int admin_leader_members(struct admin_worker *w, uint64_t group, struct client_members *m);

/* A change at the leader: OK moves on; NOT_LEADER points elsewhere; RETRY
 * and errors wait for the next round. Returns true on OK. */
bool admin_change(struct admin_worker *w, uint32_t op, uint64_t group, uint64_t member);

/* admin_status.c, admin_verify.c, admin_group.c, admin_witness.c: the
 * commands; each returns the exit status. */
int admin_add_witness(const struct admin_options *opt);
int admin_status(const struct admin_options *opt);
int admin_verify(const struct admin_options *opt);
int admin_transfer(const struct admin_options *opt);
int admin_snapshot(const struct admin_options *opt);
int admin_recover(const struct admin_options *opt);

/* admin_nodes.c: find every node from those --nodes names (PEERS), and
 * rewrite opt->nodes to name them all. Returns 0 or -errno (said on stderr). */
int admin_discover(struct admin_options *opt);
int admin_add_node(const struct admin_options *opt);
int admin_remove_node(const struct admin_options *opt);

#endif /* TOOLS_ADMIN_INTERNAL_H */
