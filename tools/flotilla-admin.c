/* flotilla-admin: operator commands against a running cluster of
 * flotilla-node processes, through their client protocol
 * (docs/client-protocol.md: ops 8, 12 to 18, 40, 41, 45 and 46).
 *
 *   flotilla-admin status   --nodes ID=HOST:PORT,... --groups N [--lag-max 1000] [--json]
 *   flotilla-admin health   --nodes ID=HOST:PORT,... --groups N [--lag-max 1000] [--json]
 *   flotilla-admin verify   --nodes ID=HOST:PORT,... --groups N [--json]
 *   flotilla-admin transfer --nodes ID=HOST:PORT,... --group G --to ID [--json]
 *   flotilla-admin snapshot --nodes ID=HOST:PORT,... --group G [--node ID] [--json]
 *   flotilla-admin move --from A --to B --nodes ID=HOST:PORT,... --groups N
 *                       [--parallel 8] [--group-timeout-s 300] [--voters-min 3] [--verbose]
 *                       [--json]
 *   flotilla-admin add-witness --node W --nodes ID=HOST:PORT,... (--group G | --groups N)
 *                       [--parallel 8] [--group-timeout-s 300] [--lag-max 1000] [--json]
 *   flotilla-admin recover --nodes ... --node ID (--group G | --groups N) [--force] [--json]
 *   flotilla-admin grow --to B --nodes ID=HOST:PORT,... --groups N
 *                       [--parallel 8] [--group-timeout-s 300] [--verbose] [--json]
 *   flotilla-admin add-node --nodes ... --id N --peer-addr HOST:PORT [--json]
 *   flotilla-admin remove-node --nodes ... --id N (--groups G | --force) [--json]
 *   (all but move take --timeout-s S, 30 by default: how long they wait for
 *   answers; verify's whole run)
 *
 * status, health (admin_status.c), verify (admin_verify.c), transfer and
 * snapshot (admin_group.c), add-witness (admin_witness.c), recover
 * (admin_recover.c) are in files of their own; this one parses the options
 * and runs move and grow, whose groups are driven by the pool of
 * admin_member.c as add-witness's are.
 *
 * grow is move without a source: it adds node B as a voter to every group
 * 1..N (steps 1 to 3 below), to re-grow groups that recover left with a
 * single voter. It runs move's rounds with no node to remove, so a group
 * where B is a voter already counts as done.
 *
 * move replaces node A by node B in every group 1..N that A is a voter of,
 * so a failed or retired machine can be replaced: B must be running
 * (flotilla-node --join on, with A, B and the others as peers). Groups move
 * --parallel at a time, each by one thread that drives it to the end:
 *
 *   1. JOIN on B                    B hosts the group, empty, and waits;
 *   2. ADD_LEARNER B at the leader  B receives a snapshot or the log;
 *   3. PROMOTE B at the leader      refused (RETRY) until B has caught up;
 *   4. TRANSFER to B if A leads     so removing A costs no election;
 *   5. REMOVE_MEMBER A at the leader;
 *   6. DROP on A                    once the removal committed; best effort.
 *
 * Each round reads the leader's view of the membership (MEMBERS) and takes
 * the step it calls for, so a move is idempotent: running it again after a
 * failure resumes every group where it stands, and groups already moved are
 * counted as such. A step waits while the previous change is not committed;
 * transient answers are retried with a backoff until the group's deadline
 * (admin_member.c); then the group is reported failed with the last error,
 * and the others go on.
 *
 * A group where B is a voter already when the move first looks at it is
 * either a move interrupted after step 3 (A is then removed) or a mistake (B
 * was a member all along: removing A would shrink the group). Only when at
 * least --voters-min voters (3) would remain is A removed there; otherwise
 * the group fails with a message and is left as it is.
 *
 * Output: one line per failed group (and per group with --verbose), then a
 * summary with the counts and the elapsed time; with --json one JSON
 * document with the counts and every group's outcome. Exit status 0 when every
 * group was moved or had nothing to move, 1 when some group failed.
 *
 * Every command exits 2 on bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/admin_internal.h"
#include "tools/client.h"

#define ADMIN_PARALLEL_MAX 256

/* Voters of m's configuration in force. */
static uint32_t admin_voters(const struct client_members *m)
{
	uint32_t voters = 0;

	for (uint32_t i = 0; i < m->members_count; i++)
		voters += m->members[i].role == CLIENT_ROLE_VOTER;
	return voters;
}

/* What one group's move has seen so far. */
struct admin_move_state {
	bool seen;         /* The membership was read once. */
	bool touched;      /* This run changed something. */
	bool to_was_voter; /* B was a voter already at the first look. */
};

/* One round of a move (an admin_round_fn): look at the membership and take
 * the step it calls for. */
static int admin_move_round(struct admin_worker *w, uint64_t group, void *state,
			    enum admin_outcome *outcome)
{
	const struct admin_options *opt = w->pool->opt;
	struct admin_move_state *ag = state;
	struct client_members m;
	struct admin_answer ans;
	uint32_t from_role, to_role;

	if (admin_leader_members(w, group, &m) != 0)
		return -EAGAIN;
	/* grow (no source): as if a voter were to leave, until B is a voter. */
	from_role = opt->from != 0 ? client_members_role(&m, opt->from) : CLIENT_ROLE_VOTER;
	to_role = client_members_role(&m, opt->to);
	if (!ag->seen) {
		ag->seen = true;
		ag->to_was_voter = to_role == CLIENT_ROLE_VOTER;
	}
	if ((m.flags & CLIENT_MEMBERS_JOINT) != 0 || m.conf_index > m.commit_index) {
		snprintf(w->error, sizeof(w->error), "a membership change is not committed yet");
		return -EINPROGRESS;
	}
	if (opt->from == 0 && to_role == CLIENT_ROLE_VOTER) {
		*outcome = ag->touched ? ADMIN_DONE : ADMIN_ALREADY; /* grow: done. */
		return 1;
	}
	if (from_role == CLIENT_ROLE_NONE) {
		if (ag->touched) {
			/* Done: A may drop its copy now that its removal committed. */
			if ((admin_call(w, opt->from, CLIENT_OP_DROP, group, 0, &ans) != 0 ||
			     ans.status != CLIENT_STATUS_OK) &&
			    opt->verbose)
				fprintf(stderr, "flotilla-admin: group %" PRIu64 ": %s (ignored)\n",
					group, w->error);
			*outcome = ADMIN_DONE;
		} else {
			*outcome = to_role == CLIENT_ROLE_VOTER ? ADMIN_ALREADY : ADMIN_ABSENT;
		}
		return 1;
	}
	if (from_role != CLIENT_ROLE_VOTER && to_role == CLIENT_ROLE_NONE) {
		*outcome = ADMIN_ABSENT; /* A learner or witness on A: not ours to move. */
		return 1;
	}
	ag->touched = true;
	switch (to_role) {
	case CLIENT_ROLE_NONE:
		if (admin_call(w, opt->to, CLIENT_OP_JOIN, group, 0, &ans) != 0)
			return -EAGAIN;
		if (ans.status == CLIENT_STATUS_GROUPS_FULL) {
			/* B hosts its --groups-max groups: retries cannot help. */
			*outcome = ADMIN_FAILED;
			return 1;
		}
		if (ans.status != CLIENT_STATUS_OK)
			return -EAGAIN;
		return admin_change(w, CLIENT_OP_ADD_LEARNER, group, opt->to) ? 0 : -EAGAIN;
	case CLIENT_ROLE_LEARNER:
		if (admin_change(w, CLIENT_OP_PROMOTE, group, opt->to))
			return 0;
		/* Not caught up yet. Make sure B hosts the group: a learner that
		 * never joined (B restarted empty) would never catch up. */
		admin_call(w, opt->to, CLIENT_OP_JOIN, group, 0, &ans);
		return -EAGAIN;
	case CLIENT_ROLE_VOTER:
		break;
	default:
		snprintf(w->error, sizeof(w->error), "node %" PRIu64 " is a witness of the group",
			 opt->to);
		return -EAGAIN;
	}
	/* B was a voter before this run began: a move interrupted after the
	 * promotion, or a B that was a member all along. Only the first leaves
	 * enough voters once A goes; refuse to shrink the group otherwise. */
	if (ag->to_was_voter && admin_voters(&m) - 1 < opt->voters_min) {
		snprintf(w->error, sizeof(w->error),
			 "node %" PRIu64 " is already a voter: removing node %" PRIu64
			 " would leave %u voters (--voters-min %u)",
			 opt->to, opt->from, admin_voters(&m) - 1, opt->voters_min);
		*outcome = ADMIN_FAILED;
		return 1;
	}
	if (w->leader == opt->from) {
		/* Hand leadership to B, which is up to date (it was promoted). */
		if (!admin_change(w, CLIENT_OP_TRANSFER, group, opt->to))
			return -EAGAIN;
		w->leader = 0;
		return -EINPROGRESS; /* Give the election a moment. */
	}
	return admin_change(w, CLIENT_OP_REMOVE_MEMBER, group, opt->from) ? 0 : -EAGAIN;
}

static void admin_usage(FILE *out)
{
	fprintf(out,
		"usage: flotilla-admin COMMAND --nodes ID=HOST:PORT,... [options]\n"
		"  status   --groups N [--lag-max 1000] [--json]\n"
		"           nodes up or down, groups hosted and led per node, groups without a\n"
		"           leader, lagging, repairing and diverged replicas, full disks\n"
		"  health   --groups N [--lag-max 1000] [--json]\n"
		"           exit 0 when every node answers, every group has a leader and a\n"
		"           quorum of voters within --lag-max entries, nothing repairs or\n"
		"           diverged and no disk is full; else exit 1, one line per reason\n"
		"  verify   --groups N [--json]\n"
		"           a consistency check (CHECK) of every group; exit 1 naming each\n"
		"           diverged replica, or what could not be checked\n"
		"  transfer --group G --to ID [--json]\n"
		"           hand group G's leadership to voter ID; exit 0 once it leads\n"
		"  snapshot --group G [--node ID] [--json]\n"
		"           snapshot group G now on every node hosting it (or on node ID)\n"
		"  move     --from A --to B --groups N [--parallel 8] [--group-timeout-s 300]\n"
		"           [--voters-min 3] [--verbose] [--json]\n"
		"           replace node A by node B (running with --join on) in every group\n"
		"           1..N that A is a voter of, --parallel groups at a time\n"
		"  add-witness --node W (--group G | --groups N) [--parallel 8]\n"
		"           [--group-timeout-s 300] [--lag-max 1000] [--verbose] [--json]\n"
		"           make node W (running with --join on) a witness of group G or of\n"
		"           every group 1..N; exit 0 once it is one, caught up, in each\n"
		"  recover  --node ID (--group G | --groups N) [--force] [--json]\n"
		"           after a majority of voters is lost for good: make node ID the\n"
		"           single voter of each group that has no quorum (all with --force);\n"
		"           prints the index range each may have lost; exit 1 if none was\n"
		"           recovered or one failed\n"
		"  grow     --to B --groups N [--parallel 8] [--group-timeout-s 300] [--verbose]\n"
		"           [--json]\n"
		"           add node B (running with --join on) as a voter to every group 1..N\n"
		"  add-node --id N --peer-addr HOST:PORT [--json]\n"
		"           tell every node that node N's peer listener is at HOST:PORT (a new\n"
		"           node, or a new address), wait until each is connected with it both\n"
		"           ways, then tell node N every node's address; exit 1 naming what\n"
		"           failed\n"
		"  remove-node --id N (--groups G | --force) [--json]\n"
		"           make every node forget node N; refused while N is a member of any of\n"
		"           groups 1..G (move them off it first) unless --force\n"
		"--nodes lists client addresses, ID=HOST:PORT or HOST:PORT; one node is enough:\n"
		"every command asks the nodes named for their address books (PEERS) and runs on\n"
		"every node found. --timeout-s S (30) bounds the wait for answers (status,\n"
		"health, transfer, snapshot, remove-node), the whole run (verify) or the wait\n"
		"for connections (add-node). --json prints one JSON document on stdout instead\n"
		"of the text, with the same facts and exit status (docs/operations.md lists\n"
		"them): move, grow and add-witness give \"ok\", the counts and \"groups\" (each\n"
		"group's \"outcome\"); transfer \"ok\", \"leader\" and \"term\"; snapshot,\n"
		"add-node and remove-node \"ok\" and \"nodes\" (each node's result).\n"
		"--tls-ca FILE --tls-cert FILE --tls-key FILE: TLS 1.3 with a client\n"
		"certificate (OU admin for every command); without them FLOTILLA_TLS_CA,\n"
		"FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY; with neither, plaintext.\n"
		"Exit status 2 on bad usage.\n");
}

static int admin_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text == NULL || *text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int admin_parse_command(struct admin_options *opt, const char *name)
{
	static const char *const names[] = {"move",     "status",   "health",      "verify",
					    "transfer", "snapshot", "add-witness", "recover",
					    "grow",     "add-node", "remove-node"};

	for (uint32_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (name != NULL && strcmp(name, names[i]) == 0) {
			opt->command = (enum admin_command)i;
			return 0;
		}
	return -EINVAL;
}

/* One option with its value (argv[i + 1]). Returns 0 or -EINVAL. */
static int admin_parse_option(struct admin_options *opt, const char *name, const char *value)
{
	uint64_t v = 0;
	int rv = -EINVAL;

	if (strcmp(name, "--nodes") == 0 && value != NULL) {
		opt->nodes = value;
		rv = 0;
	} else if (strcmp(name, "--from") == 0) {
		rv = admin_parse_u64(value, 1, UINT64_MAX, &opt->from);
	} else if (strcmp(name, "--to") == 0) {
		rv = admin_parse_u64(value, 1, UINT64_MAX, &opt->to);
	} else if (strcmp(name, "--groups") == 0) {
		rv = admin_parse_u64(value, 1, UINT32_MAX, &opt->groups_count);
	} else if (strcmp(name, "--group") == 0) {
		rv = admin_parse_u64(value, 1, UINT64_MAX, &opt->group);
	} else if (strcmp(name, "--node") == 0) {
		rv = admin_parse_u64(value, 1, UINT64_MAX, &opt->node);
	} else if (strcmp(name, "--lag-max") == 0) {
		rv = admin_parse_u64(value, 0, UINT64_MAX, &opt->lag_max);
	} else if (strcmp(name, "--timeout-s") == 0) {
		if ((rv = admin_parse_u64(value, 1, 86400, &v)) == 0)
			opt->timeout_s = (uint32_t)v;
	} else if (strcmp(name, "--parallel") == 0) {
		if ((rv = admin_parse_u64(value, 1, ADMIN_PARALLEL_MAX, &v)) == 0)
			opt->parallel = (uint32_t)v;
	} else if (strcmp(name, "--group-timeout-s") == 0) {
		if ((rv = admin_parse_u64(value, 1, 86400, &v)) == 0)
			opt->group_timeout_s = (uint32_t)v;
	} else if (strcmp(name, "--id") == 0) {
		rv = admin_parse_u64(value, 1, UINT64_MAX, &opt->id);
	} else if (strcmp(name, "--peer-addr") == 0 && value != NULL) {
		opt->peer_addr = value;
		rv = 0;
	} else if (strcmp(name, "--tls-ca") == 0 && value != NULL) {
		opt->tls_ca = value;
		rv = 0;
	} else if (strcmp(name, "--tls-cert") == 0 && value != NULL) {
		opt->tls_cert = value;
		rv = 0;
	} else if (strcmp(name, "--tls-key") == 0 && value != NULL) {
		opt->tls_key = value;
		rv = 0;
	} else if (strcmp(name, "--voters-min") == 0) {
		if ((rv = admin_parse_u64(value, 1, CLIENT_MEMBERS_MAX, &v)) == 0)
			opt->voters_min = (uint32_t)v;
	}
	return rv;
}

/* What each command requires. Returns 0 or -EINVAL with a message. */
static int admin_check_options(const struct admin_options *opt)
{
	const char *need = NULL;

	if (opt->nodes == NULL)
		need = "--nodes is required";
	else if (opt->command == ADMIN_MOVE &&
		 (opt->from == 0 || opt->to == 0 || opt->groups_count == 0 || opt->from == opt->to))
		need = "move: --from, --to (another node) and --groups are required";
	else if ((opt->command == ADMIN_STATUS || opt->command == ADMIN_HEALTH ||
		  opt->command == ADMIN_VERIFY) &&
		 opt->groups_count == 0)
		need = "--groups is required";
	else if (opt->command == ADMIN_TRANSFER && (opt->group == 0 || opt->to == 0))
		need = "transfer: --group and --to are required";
	else if (opt->command == ADMIN_SNAPSHOT && opt->group == 0)
		need = "snapshot: --group is required";
	else if (opt->command == ADMIN_ADD_WITNESS &&
		 (opt->node == 0 || (opt->group == 0) == (opt->groups_count == 0)))
		need = "add-witness: --node and one of --group and --groups are required";
	else if (opt->command == ADMIN_RECOVER &&
		 (opt->node == 0 || (opt->group == 0) == (opt->groups_count == 0)))
		need = "recover: --node and one of --group or --groups are required";
	else if (opt->command == ADMIN_GROW && (opt->to == 0 || opt->groups_count == 0))
		need = "grow: --to and --groups are required";
	else if (opt->command == ADMIN_ADD_NODE && (opt->id == 0 || opt->peer_addr == NULL))
		need = "add-node: --id and --peer-addr are required";
	else if (opt->command == ADMIN_REMOVE_NODE &&
		 (opt->id == 0 || (opt->groups_count == 0 && !opt->force)))
		need = "remove-node: --id, and --groups (or --force), are required";
	if (need == NULL)
		return 0;
	fprintf(stderr, "flotilla-admin: %s\n", need);
	return -EINVAL;
}

static int admin_parse_args(struct admin_options *opt, int argc, char **argv)
{
	*opt = (struct admin_options){.parallel = 8,
				      .group_timeout_s = 300,
				      .voters_min = 3,
				      .lag_max = 1000,
				      .timeout_s = 30};
	if (argc < 2 || admin_parse_command(opt, argv[1]) != 0) {
		fprintf(stderr, "flotilla-admin: no command or an unknown one\n");
		return -EINVAL;
	}
	for (int i = 2; i < argc; i++) {
		const char *name = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(name, "--verbose") == 0) {
			opt->verbose = true;
			continue;
		}
		if (strcmp(name, "--json") == 0) {
			opt->json = true;
			continue;
		}
		if (strcmp(name, "--force") == 0) {
			opt->force = true;
			continue;
		}
		if (admin_parse_option(opt, name, value) != 0) {
			fprintf(stderr, "flotilla-admin: bad argument '%s'\n", name);
			return -EINVAL;
		}
		i++;
	}
	return admin_check_options(opt);
}

/* Outcome names in --json: "absent" is a group node A is no voter of. */
static const char *const admin_move_outcomes[ADMIN_OUTCOMES] = {"moved", "already", "absent",
								"failed"};
static const char *const admin_grow_outcomes[ADMIN_OUTCOMES] = {"grown", "already", "absent",
								"failed"};

/* move: every group of node A to node B, --parallel at a time. */
static int admin_move(const struct admin_options *opt)
{
	static struct admin_pool pool;
	int rv;

	pool = (struct admin_pool){
	    .opt = opt,
	    .first = 1,
	    .last = opt->groups_count,
	    .round = admin_move_round,
	    .state_size = sizeof(struct admin_move_state),
	    .outcome_text = {"moved", "already moved", "not on the source node", "failed"}};
	if (opt->command == ADMIN_GROW) {
		pool.outcome_text[ADMIN_DONE] = "grown";
		pool.outcome_text[ADMIN_ALREADY] = "already a voter";
	}
	rv = admin_pool_run(&pool);
	if (rv != 0) {
		free(pool.results);
		return rv == -EINVAL ? 2 : 1;
	}
	if (opt->json) {
		if (opt->command == ADMIN_GROW)
			printf("{\"command\":\"grow\",\"to\":%" PRIu64 ",", opt->to);
		else
			printf("{\"command\":\"move\",\"from\":%" PRIu64 ",\"to\":%" PRIu64 ",",
			       opt->from, opt->to);
		admin_pool_json(
		    &pool, opt->command == ADMIN_GROW ? admin_grow_outcomes : admin_move_outcomes,
		    opt->command != ADMIN_GROW);
		fflush(stdout);
	}
	free(pool.results);
	if (opt->json)
		return atomic_load(&pool.counts[ADMIN_FAILED]) > 0 ? 1 : 0;
	if (opt->command == ADMIN_GROW) {
		printf("grow onto %" PRIu64 ": %" PRIu64 " groups grown, %" PRIu64
		       " already had it as a voter, %" PRIu64 " failed, in %.3f s\n",
		       opt->to, (uint64_t)atomic_load(&pool.counts[ADMIN_DONE]),
		       (uint64_t)atomic_load(&pool.counts[ADMIN_ALREADY]),
		       (uint64_t)atomic_load(&pool.counts[ADMIN_FAILED]),
		       (double)pool.elapsed_ms / 1000.0);
		return atomic_load(&pool.counts[ADMIN_FAILED]) > 0 ? 1 : 0;
	}
	printf("move %" PRIu64 " -> %" PRIu64 ": %" PRIu64 " groups moved, %" PRIu64
	       " already moved, %" PRIu64 " not on node %" PRIu64 ", %" PRIu64
	       " failed, in %.3f s\n",
	       opt->from, opt->to, (uint64_t)atomic_load(&pool.counts[ADMIN_DONE]),
	       (uint64_t)atomic_load(&pool.counts[ADMIN_ALREADY]),
	       (uint64_t)atomic_load(&pool.counts[ADMIN_ABSENT]), opt->from,
	       (uint64_t)atomic_load(&pool.counts[ADMIN_FAILED]), (double)pool.elapsed_ms / 1000.0);
	return atomic_load(&pool.counts[ADMIN_FAILED]) > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct admin_options opt;
	char why[512];

	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		admin_usage(stdout);
		return 0;
	}
	if (admin_parse_args(&opt, argc, argv) != 0) {
		admin_usage(stderr);
		return 2;
	}
	if (client_tls_setup(opt.tls_ca, opt.tls_cert, opt.tls_key, why, sizeof(why)) != 0) {
		fprintf(stderr, "flotilla-admin: %s\n", why);
		return 2;
	}
	/* --nodes may name one node: find the others (add-node looks itself). */
	if (opt.command != ADMIN_ADD_NODE && admin_discover(&opt) != 0)
		return 1;
	switch (opt.command) {
	case ADMIN_ADD_NODE:
		return admin_add_node(&opt);
	case ADMIN_REMOVE_NODE:
		return admin_remove_node(&opt);
	case ADMIN_STATUS:
	case ADMIN_HEALTH:
		return admin_status(&opt);
	case ADMIN_VERIFY:
		return admin_verify(&opt);
	case ADMIN_TRANSFER:
		return admin_transfer(&opt);
	case ADMIN_SNAPSHOT:
		return admin_snapshot(&opt);
	case ADMIN_ADD_WITNESS:
		return admin_add_witness(&opt);
	case ADMIN_RECOVER:
		return admin_recover(&opt);
	case ADMIN_GROW:
	case ADMIN_MOVE:
	default:
		return admin_move(&opt);
	}
}
