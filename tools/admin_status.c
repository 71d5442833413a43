/* flotilla-admin status and health: one look at the cluster
 * (admin_view.c), then what it shows.
 *
 * Per node: up or down, the groups 1..N it hosts and leads, its repairing
 * replicas, and whether its WAL's file system is full (NODE_STATUS: shards
 * whose WAL refuses writes for lack of space). Per group, from the view of
 * its leader (the node that says it leads, at the highest term):
 *   - no leader: no node says it leads;
 *   - no quorum: fewer than a majority of its voters are caught up: on a
 *     node that answers, not repairing, and at most --lag-max entries
 *     behind the leader's last index (the leader's match of them); while a
 *     membership change is half done, both configurations must have one;
 *   - lagging: a member more than --lag-max entries behind (reported; not
 *     unhealthy while the quorum holds);
 *   - repairing: a replica that repairs data its storage lost, or a group
 *     that too many repairing members block (MEMBERS flags, bit 2);
 *   - diverged: a replica that a consistency check found different from its
 *     leader (MEMBERS flags, bit 3; `verify` runs a check now).
 * health exits 0 when every node answers and nothing but lag is found;
 * otherwise 1, with one line per reason. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tools/admin_internal.h"

#define ADMIN_LINES_PER_KIND 20 /* Text output: lines per kind of problem. */

void admin_check_nodes(const struct admin_view *v, struct admin_problems *p)
{
	for (uint32_t i = 0; i < v->nodes_count; i++) {
		const struct admin_node_view *n = &v->nodes[i];

		if (!n->up) {
			admin_problem_add(p, ADMIN_PROBLEM_DOWN, n->id, 0,
					  "node %" PRIu64 ": down: %s", n->id, n->error);
			continue;
		}
		if (n->st.shards_no_space > 0)
			admin_problem_add(p, ADMIN_PROBLEM_DISK_FULL, n->id, 0,
					  "node %" PRIu64
					  ": disk full: the WAL file system of %u of "
					  "%u shards is full; its writes are refused",
					  n->id, n->st.shards_no_space, n->st.shards_count);
	}
}

/* Whether the member of the leader's view counts as caught up. */
static bool admin_is_caught_up(const struct admin_view *v, uint64_t group, int leader,
			       const struct client_member *mb, uint64_t lag_max)
{
	const struct admin_replica *lr = admin_view_replica(v, group, (uint32_t)leader);
	int slot = admin_view_slot(v, mb->id);

	if (mb->id == v->nodes[leader].id)
		return true;
	if (slot >= 0) {
		const struct admin_replica *rp = admin_view_replica(v, group, (uint32_t)slot);

		if (!v->nodes[slot].up || rp->state != ADMIN_REPLICA_HOSTED ||
		    (rp->m.flags & CLIENT_MEMBERS_REPAIRING) != 0)
			return false;
	}
	return lr->m.last_index <= mb->match || lr->m.last_index - mb->match <= lag_max;
}

/* Caught-up voters (witnesses included) of one configuration (old: the
 * outgoing one while joint). */
static void admin_count_voters(const struct admin_view *v, uint64_t group, int leader, bool old,
			       uint64_t lag_max, uint32_t *voters, uint32_t *caught)
{
	const struct client_members *m = &admin_view_replica(v, group, (uint32_t)leader)->m;

	*voters = *caught = 0;
	for (uint32_t i = 0; i < m->members_count; i++) {
		const struct client_member *mb = &m->members[i];

		uint32_t role = old ? mb->role_old : mb->role;

		if (role != CLIENT_ROLE_VOTER && role != CLIENT_ROLE_WITNESS)
			continue; /* A witness votes and counts toward commits too. */
		(*voters)++;
		*caught += admin_is_caught_up(v, group, leader, mb, lag_max);
	}
}

static void admin_check_leader(const struct admin_view *v, uint64_t group, int leader,
			       uint64_t lag_max, struct admin_problems *p)
{
	const struct client_members *m = &admin_view_replica(v, group, (uint32_t)leader)->m;
	uint64_t id = v->nodes[leader].id;

	for (int old = 0; old <= ((m->flags & CLIENT_MEMBERS_JOINT) != 0); old++) {
		uint32_t voters, caught;

		admin_count_voters(v, group, leader, old, lag_max, &voters, &caught);
		if (caught * 2 <= voters)
			admin_problem_add(p, ADMIN_PROBLEM_NO_QUORUM, 0, group,
					  "group %" PRIu64
					  ": no quorum: %u of %u %svoters caught up "
					  "(leader node %" PRIu64 ")",
					  group, caught, voters, old ? "outgoing " : "", id);
	}
	for (uint32_t i = 0; i < m->members_count; i++) {
		const struct client_member *mb = &m->members[i];
		int slot = admin_view_slot(v, mb->id);

		if (mb->id == id || mb->match >= m->last_index ||
		    m->last_index - mb->match <= lag_max)
			continue;
		if (slot >= 0 && !v->nodes[slot].up)
			continue; /* Reported as down. */
		struct admin_problem *it =
		    admin_problem_add(p, ADMIN_PROBLEM_LAGGING, mb->id, group,
				      "group %" PRIu64 ": replica on node %" PRIu64 " is %" PRIu64
				      " entries behind its leader (node %" PRIu64 ")",
				      group, mb->id, m->last_index - mb->match, id);

		if (it != NULL)
			it->behind = m->last_index - mb->match;
	}
}

/* Every reason of one group, into p. */
static void admin_check_group(const struct admin_view *v, uint64_t group, uint64_t lag_max,
			      struct admin_problems *p)
{
	int leader = admin_view_leader(v, group);
	uint32_t hosts = 0;

	for (uint32_t i = 0; i < v->nodes_count; i++) {
		const struct admin_replica *rp = admin_view_replica(v, group, i);
		uint64_t id = v->nodes[i].id;

		if (rp->state != ADMIN_REPLICA_HOSTED)
			continue;
		hosts++;
		if ((rp->m.flags & CLIENT_MEMBERS_REPAIRING) != 0)
			admin_problem_add(p, ADMIN_PROBLEM_REPAIRING, id, group,
					  "group %" PRIu64 ": replica on node %" PRIu64
					  " is repairing (lost data, or too many members repair)",
					  group, id);
		if ((rp->m.flags & CLIENT_MEMBERS_DIVERGED) != 0)
			admin_problem_add(p, ADMIN_PROBLEM_DIVERGED, id, group,
					  "group %" PRIu64 ": replica on node %" PRIu64
					  " diverged from its leader (node %" PRIu64
					  "): rebuild it (REBUILD)",
					  group, id, rp->m.leader);
	}
	if (leader >= 0)
		admin_check_leader(v, group, leader, lag_max, p);
	else if (hosts == 0)
		admin_problem_add(p, ADMIN_PROBLEM_NO_LEADER, 0, group,
				  "group %" PRIu64 ": no leader: no node that answered hosts it",
				  group);
	else
		admin_problem_add(p, ADMIN_PROBLEM_NO_LEADER, 0, group,
				  "group %" PRIu64 ": no leader: none of its %u reachable replicas "
				  "leads",
				  group, hosts);
}

static void admin_status_text(const struct admin_view *v, const struct admin_options *opt,
			      const struct admin_problems *p)
{
	uint64_t led = 0;

	printf("%-6s %-22s %-5s %8s %8s %9s %9s %s\n", "NODE", "ADDRESS", "STATE", "GROUPS",
	       "LEADS", "WITNESSES", "REPAIRING", "DISK");
	for (uint32_t i = 0; i < v->nodes_count; i++) {
		const struct admin_node_view *n = &v->nodes[i];

		if (!n->up) {
			printf("%-6" PRIu64 " %-22s %-5s %8s %8s %9s %9s %-4s %s\n", n->id,
			       v->router.nodes[i].addr, "down", "-", "-", "-", "-", "-", n->error);
			continue;
		}
		printf("%-6" PRIu64 " %-22s %-5s %8" PRIu64 " %8" PRIu64 " %9" PRIu64 " %9" PRIu64
		       " %s\n",
		       n->id, v->router.nodes[i].addr, "up", n->hosted, n->leads, n->witnesses,
		       n->st.repairing, n->st.shards_no_space > 0 ? "full" : "ok");
	}
	for (uint64_t g = 1; g <= v->groups_count; g++)
		led += admin_view_leader(v, g) >= 0;
	printf("groups: %" PRIu64 ", with a leader %" PRIu64 ", without %" PRIu64 "\n",
	       v->groups_count, led, v->groups_count - led);
	printf("lagging replicas (over %" PRIu64 " entries behind): %u; repairing: %u; "
	       "diverged: %u\n",
	       opt->lag_max, p->counts[ADMIN_PROBLEM_LAGGING], p->counts[ADMIN_PROBLEM_REPAIRING],
	       p->counts[ADMIN_PROBLEM_DIVERGED]);
	admin_problems_print(stdout, p, ADMIN_LINES_PER_KIND);
}

static void admin_status_json_nodes(const struct admin_view *v)
{
	printf("\"nodes\":[");
	for (uint32_t i = 0; i < v->nodes_count; i++) {
		const struct admin_node_view *n = &v->nodes[i];

		printf("%s{\"id\":%" PRIu64 ",\"address\":", i > 0 ? "," : "", n->id);
		admin_json_string(stdout, v->router.nodes[i].addr);
		printf(",\"up\":%s", n->up ? "true" : "false");
		if (!n->up) {
			printf(",\"error\":");
			admin_json_string(stdout, n->error);
			printf("}");
			continue;
		}
		printf(",\"groups\":%" PRIu64 ",\"leads\":%" PRIu64 ",\"witnesses\":%" PRIu64
		       ",\"groups_all\":%" PRIu64 ",\"leaders_all\":%" PRIu64
		       ",\"leaderless\":%" PRIu64 ",\"repairing\":%" PRIu64 ",\"checks\":%" PRIu64
		       ",\"divergences\":%" PRIu64 ",\"lag_max\":%" PRIu64
		       ",\"shards\":%u,\"shards_no_space\":%u"
		       ",\"disk_full\":%s}",
		       n->hosted, n->leads, n->witnesses, n->st.groups, n->st.leaders,
		       n->st.leaderless, n->st.repairing, n->st.checks, n->st.divergences,
		       n->st.lag_max, n->st.shards_count, n->st.shards_no_space,
		       n->st.shards_no_space > 0 ? "true" : "false");
	}
	printf("]");
}

/* One JSON document: nodes, each group's leader (0: none) and highest term, the
 * problems. */
static void admin_status_json(const struct admin_view *v, const struct admin_options *opt,
			      const struct admin_problems *p, bool healthy)
{
	printf("{\"command\":\"%s\",\"healthy\":%s,\"lag_max\":%" PRIu64 ",",
	       opt->command == ADMIN_HEALTH ? "health" : "status", healthy ? "true" : "false",
	       opt->lag_max);
	admin_status_json_nodes(v);
	printf(",\"groups\":[");
	for (uint64_t g = 1; g <= v->groups_count; g++) {
		int leader = admin_view_leader(v, g);

		const struct client_members *m =
		    leader >= 0 ? &admin_view_replica(v, g, (uint32_t)leader)->m : NULL;
		uint32_t witnesses = 0;
		uint64_t term = 0;

		/* The highest term a replica reports: an election anywhere moves it. */
		for (uint32_t i = 0; i < v->nodes_count; i++) {
			const struct admin_replica *rp = admin_view_replica(v, g, i);

			if (rp->state == ADMIN_REPLICA_HOSTED && rp->m.term > term)
				term = rp->m.term;
		}
		printf("%s{\"group\":%" PRIu64 ",\"leader\":%" PRIu64 ",\"term\":%" PRIu64
		       ",\"witnesses\":[",
		       g > 1 ? "," : "", g, leader >= 0 ? v->nodes[leader].id : 0, term);
		for (uint32_t i = 0; m != NULL && i < m->members_count; i++)
			if (m->members[i].role == CLIENT_ROLE_WITNESS)
				printf("%s%" PRIu64, witnesses++ > 0 ? "," : "", m->members[i].id);
		printf("]}");
	}
	printf("],\"problems\":");
	admin_problems_json(stdout, p);
	printf("}\n");
}

int admin_status(const struct admin_options *opt)
{
	struct admin_problems p = {0};
	struct admin_view v;
	bool healthy = true;
	int rv = admin_view_init(&v, opt);

	if (rv != 0) {
		fprintf(stderr, "flotilla-admin: %s\n",
			rv == -EINVAL ? "bad --nodes" : "out of memory");
		return 2;
	}
	admin_view_read(&v, admin_now_ms() + (uint64_t)opt->timeout_s * 1000);
	admin_check_nodes(&v, &p);
	for (uint64_t g = 1; g <= v.groups_count; g++)
		admin_check_group(&v, g, opt->lag_max, &p);
	for (uint32_t i = 0; i < p.count; i++)
		healthy &= !admin_problem_is_unhealthy(p.items[i].kind);
	if (opt->json) {
		admin_status_json(&v, opt, &p, healthy);
	} else if (opt->command == ADMIN_STATUS) {
		admin_status_text(&v, opt, &p);
	} else if (healthy) {
		printf("healthy: %u nodes up; %" PRIu64 " groups, each with a leader and a quorum "
		       "of caught-up voters; nothing repairing or diverged; no disk full\n",
		       v.nodes_count, v.groups_count);
	} else {
		struct admin_problems bad = {0};

		for (uint32_t i = 0; i < p.count; i++)
			if (admin_problem_is_unhealthy(p.items[i].kind))
				admin_problem_add(&bad, p.items[i].kind, p.items[i].node,
						  p.items[i].group, "%s", p.items[i].text);
		admin_problems_print(stdout, &bad, ADMIN_LINES_PER_KIND);
		printf("unhealthy: %u reason%s\n", bad.count, bad.count == 1 ? "" : "s");
		admin_problems_free(&bad);
	}
	admin_problems_free(&p);
	admin_view_deinit(&v);
	fflush(stdout);
	return opt->command == ADMIN_HEALTH && !healthy ? 1 : 0;
}
