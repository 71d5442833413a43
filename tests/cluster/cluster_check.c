/* flotilla-cluster-check: acceptance checks on a running cluster of
 * flotilla-node processes, through the client protocol (tools/client.h).
 *
 *   flotilla-cluster-check scale --nodes SPEC --groups N --proposals P [--batch B]
 *       Issue P PUTs of distinct keys spread over groups 1..N, B in flight at a
 *       time; every one must be acknowledged. Then wait until every node reports
 *       the same DIGEST for every group, and check that no replica saw an index
 *       out of order and that each group applied exactly its acknowledged writes
 *       (plus at most one more per write that was sent more than once).
 *
 *   flotilla-cluster-check write --nodes SPEC --groups N --proposals P --prefix X
 *       Issue P PUTs of distinct keys (named after X, so that runs with
 *       different prefixes write different keys) and require every one to be
 *       acknowledged; no DIGEST check (some replicas may be down).
 *
 *   flotilla-cluster-check converge --nodes SPEC --groups N
 *       Wait until every node reports the same DIGEST for every group, and
 *       no replica saw an index out of order.
 *
 *   flotilla-cluster-check kill --nodes SPEC --groups N --dir D --cluster SCRIPT
 *                              --election-ms E
 *       Under a write load of a background thread: find the node leading the
 *       most groups, SIGKILL it (its PID comes from D's pid file, and is
 *       checked to be a flotilla-node of D), measure until each group it led
 *       has a leader among the survivors (at most 3 E), keep writing, restart it
 *       with "SCRIPT start --dir D --node ID", keep writing; then GET every
 *       acknowledged write (linearizable) and wait until all nodes report the
 *       same DIGEST for every group.
 *
 *   flotilla-cluster-check stop --nodes SPEC --groups N --dir D --election-ms E
 *                              --heartbeat-ms H
 *       With no load for 4 E + 1 s (idle groups quiesce after 3 E), SIGSTOP the
 *       node leading the most groups (PID checked as for kill) and require a
 *       PUT to each group it led to be acknowledged by the survivors within
 *       3 H + 1 s of the stop; SIGCONT it after.
 *
 *   flotilla-cluster-check isolate --nodes SPEC --groups N --fault FAULT
 *                                 --election-ms E --heartbeat-ms H
 *       One write to every group, then no load for 4 E + 1 s; "FAULT cut ID"
 *       cuts the node leading the most groups off the network, and a PUT to
 *       each group it led, sent through the other nodes only, must be
 *       acknowledged within 3 H + 1 s of the cut; then "FAULT heal ID", and a
 *       PUT to every group must be acknowledged within 3 H + 1 s of the heal.
 *       Each group's time (to the end of the round, a router run of at most
 *       100 ms, that got its write acknowledged) is printed, with p50 and
 *       max. Last, every node must report the same DIGEST for every group,
 *       holding every acknowledged write.
 *
 *   flotilla-cluster-check replace --nodes SPEC --groups N --dir D --cluster SCRIPT
 *                                 --admin ADMIN [--voters V] [--parallel P] [--max-gap-ms G]
 *       Under a write load (16 writer threads over disjoint groups, every
 *       acknowledged write recorded), replace each voter i = 1..V in turn by
 *       the spare V + i: "SCRIPT start --dir D --node V+i" (an empty node),
 *       "ADMIN move --from i --to V+i" (P groups at a time), "SCRIPT stop
 *       --dir D --node i" (the first move is run twice: the second must find
 *       every group moved). Acknowledged writes are sampled every 20 ms: the
 *       throughput of each second is printed, and the longest time with none
 *       acknowledged must stay within G ms (5000). Then GET every
 *       acknowledged write and wait until the new nodes report the same
 *       DIGEST for every group. SPEC lists the V voters, then the V spares.
 *
 *   flotilla-cluster-check addnode --nodes SPEC --groups N --dir D --cluster SCRIPT
 *                                 --admin ADMIN --peer-addr HOST:PORT [--voters V]
 *                                 [--parallel P] [--max-gap-ms G]
 *       Under the same write load, add node V + 1 to the running voters
 *       1..V, which do not know it: "SCRIPT start --dir D --node V+1" (a node
 *       new to the cluster, empty), "ADMIN add-node --nodes A --id V+1
 *       --peer-addr HOST:PORT" and "ADMIN move --from 1 --to V+1 --nodes A
 *       --groups N" with A node 1's client address alone (the admin tool
 *       finds the others). The longest time with no write acknowledged must
 *       stay within G ms; then GET every acknowledged write, and nodes 2..V+1
 *       must report the same DIGEST for every group. SPEC lists the V voters,
 *       then the new node.
 *
 * SPEC is "1=127.0.0.1:PORT,2=127.0.0.1:PORT,3=127.0.0.1:PORT". Every loop is
 * bounded in time; exit status 0 when every check passed, 1 when one failed,
 * 2 on bad usage or when the cluster could not be driven at all. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/client.h"

#define CHECK_KEY_SIZE_MAX   32
#define CHECK_VALUE_SIZE     48
#define CHECK_SHOW_MAX       10
#define CHECK_DIGEST_WAIT_MS 60000
#define CHECK_CALL_WAIT_MS   30000
#define CHECK_ACKS_MAX       (2u << 20)

extern char **environ;

struct check {
	const char *command;
	const char *nodes;
	const char *dir;
	const char *cluster;
	const char *admin;
	const char *peer_addr; /* addnode: the new node's peer listener. */
	const char *fault;     /* isolate: "FAULT cut|heal ID" cuts a node off, heals it. */
	const char *prefix;    /* Of the keys scale and write put. */
	uint32_t groups_count;
	uint32_t voters_count;
	uint32_t parallel;
	uint32_t gap_ms_max;
	uint32_t proposals_count;
	uint32_t batch_count;
	uint32_t election_ms;
	uint32_t heartbeat_ms;
	struct client_router router;
};

/* Per group: what the client saw, to compare with what replicas applied. */
struct check_group {
	uint64_t acked;   /* Writes acknowledged. */
	uint64_t resent;  /* Writes sent more than once: each may be applied twice. */
	uint64_t written; /* Distinct keys written, acknowledged or not. */
};

static uint64_t check_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void check_sleep_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* Key and value of write number seq: both unique, so a value proves its write. */
static void check_write_text(const char *prefix, uint64_t seq, char *key, char *value)
{
	snprintf(key, CHECK_KEY_SIZE_MAX, "%s-%llu", prefix, (unsigned long long)seq);
	snprintf(value, CHECK_VALUE_SIZE, "value-%s-%llu-%.*s", prefix, (unsigned long long)seq,
		 (int)(seq % 16), "................");
}

static struct client_request check_put(uint64_t group, const char *key, const char *value)
{
	return (struct client_request){.op = CLIENT_OP_PUT,
				       .group = group,
				       .key = key,
				       .key_size = (uint32_t)strlen(key),
				       .value = value,
				       .value_size = (uint32_t)strlen(value)};
}

/* --- DIGEST of every group on every node. --- */

/* Ask node_index's node for the DIGEST of groups 1..groups_count, pipelined
 * on a connection of its own. Returns 0 or -errno (node unreachable, or it
 * did not answer everything within timeout_ms). */
static int check_fetch_digests(struct check *k, uint32_t node_index, struct client_digest *out,
			       int timeout_ms)
{
	struct client c = {.fd = -1};
	uint64_t deadline = check_now_ms() + (uint64_t)timeout_ms;
	uint32_t answered = 0;
	int rv = client_connect(&c, k->router.nodes[node_index].addr, 1000);

	if (rv != 0)
		return rv;
	for (uint32_t g = 1; g <= k->groups_count && rv == 0; g++) {
		struct client_request req = {.op = CLIENT_OP_DIGEST, .request_id = g, .group = g};

		rv = client_send(&c, &req);
	}
	while (rv == 0 && answered < k->groups_count) {
		struct client_response resp;
		uint64_t now = check_now_ms();

		if (now >= deadline) {
			rv = -ETIMEDOUT;
			break;
		}
		rv = client_wait(&c, &resp, (int)(deadline - now));
		if (rv != 0)
			break;
		if (resp.status != CLIENT_STATUS_OK || resp.request_id == 0 ||
		    resp.request_id > k->groups_count ||
		    client_digest_decode(resp.value, resp.value_size, &out[resp.request_id - 1]) !=
			0) {
			rv = -EBADMSG;
			break;
		}
		answered++;
	}
	client_close(&c);
	return rv;
}

static bool check_digest_equal(const struct client_digest *a, const struct client_digest *b)
{
	return a->applied_count == b->applied_count &&
	       a->last_applied_index == b->last_applied_index && a->digest == b->digest &&
	       a->keys_count == b->keys_count;
}

/* Wait until every node reports the same DIGEST for every group; digests
 * gets nodes_count x groups_count entries (node-major). Returns the count of
 * groups that still differ at the deadline (0: converged), or -1 when a node
 * could not be asked. */
static int64_t check_converge(struct check *k, struct client_digest *digests)
{
	uint32_t nodes = k->router.nodes_count, groups = k->groups_count;
	uint64_t started = check_now_ms(), deadline = started + CHECK_DIGEST_WAIT_MS;
	int64_t differ = -1;
	uint32_t rounds = 0;

	while (check_now_ms() < deadline) {
		bool reachable = true;

		rounds++;
		for (uint32_t n = 0; n < nodes && reachable; n++)
			reachable = check_fetch_digests(k, n, &digests[(size_t)n * groups],
							CHECK_CALL_WAIT_MS) == 0;
		differ = reachable ? 0 : -1;
		for (uint32_t g = 0; g < groups && reachable; g++)
			for (uint32_t n = 1; n < nodes; n++)
				if (!check_digest_equal(&digests[g],
							&digests[(size_t)n * groups + g])) {
					differ++;
					break;
				}
		if (differ == 0)
			break;
		check_sleep_ms(100);
	}
	printf("digests: %s after %llu ms (%u rounds)\n",
	       differ == 0 ? "all nodes agree on every group" : "no agreement",
	       (unsigned long long)(check_now_ms() - started), rounds);
	return differ;
}

/* Print up to CHECK_SHOW_MAX groups whose replicas differ. */
static void check_show_differences(struct check *k, const struct client_digest *digests)
{
	uint32_t shown = 0, groups = k->groups_count;

	for (uint32_t g = 0; g < groups && shown < CHECK_SHOW_MAX; g++) {
		bool same = true;

		for (uint32_t n = 1; n < k->router.nodes_count; n++)
			same &= check_digest_equal(&digests[g], &digests[(size_t)n * groups + g]);
		if (same)
			continue;
		shown++;
		for (uint32_t n = 0; n < k->router.nodes_count; n++) {
			const struct client_digest *d = &digests[(size_t)n * groups + g];

			printf("  group %u node %llu: applied %llu last index %llu digest %016llx "
			       "keys %llu\n",
			       g + 1, (unsigned long long)k->router.nodes[n].id,
			       (unsigned long long)d->applied_count,
			       (unsigned long long)d->last_applied_index,
			       (unsigned long long)d->digest, (unsigned long long)d->keys_count);
		}
	}
}

/* After convergence: no replica saw an index out of order, and each group
 * holds every acknowledged key, nothing it was never sent, and no entry
 * applied more often than its writes were sent. Returns the failures. */
static uint32_t check_applied(struct check *k, const struct client_digest *digests,
			      const struct check_group *groups, bool all_acked)
{
	uint32_t failures = 0;
	uint64_t applied = 0, acked = 0, violations = 0;

	for (uint32_t n = 0; n < k->router.nodes_count; n++)
		for (uint32_t g = 0; g < k->groups_count; g++)
			violations += digests[(size_t)n * k->groups_count + g].order_violations;
	for (uint32_t g = 0; g < k->groups_count; g++) {
		const struct client_digest *d = &digests[g];
		const struct check_group *cg = &groups[g];
		bool ok = d->keys_count >= cg->acked && d->keys_count <= cg->written &&
			  d->applied_count >= d->keys_count &&
			  d->applied_count - d->keys_count <= cg->resent;

		if (all_acked)
			ok = ok && d->keys_count == cg->acked;
		applied += d->applied_count;
		acked += cg->acked;
		if (ok)
			continue;
		if (failures++ < CHECK_SHOW_MAX)
			printf(
			    "group %u: applied %llu entries, %llu keys; client: %llu acknowledged, "
			    "%llu written, %llu sent more than once\n",
			    g + 1, (unsigned long long)d->applied_count,
			    (unsigned long long)d->keys_count, (unsigned long long)cg->acked,
			    (unsigned long long)cg->written, (unsigned long long)cg->resent);
	}
	printf("applied: %llu entries in %u groups for %llu acknowledged writes (%llu extra); "
	       "%llu index-order violations\n",
	       (unsigned long long)applied, k->groups_count, (unsigned long long)acked,
	       (unsigned long long)(applied - acked), (unsigned long long)violations);
	return failures + (violations > 0);
}

/* Converge, then check. Returns 0 or 1. */
static int check_replicas(struct check *k, const struct check_group *groups, bool all_acked)
{
	struct client_digest *digests =
	    calloc((size_t)k->router.nodes_count * k->groups_count, sizeof(*digests));
	int64_t differ;
	int rv = 1;

	if (digests == NULL)
		return 1;
	differ = check_converge(k, digests);
	if (differ != 0) {
		printf("FAIL: %lld groups differ between replicas\n", (long long)differ);
		if (differ > 0)
			check_show_differences(k, digests);
	} else if (check_applied(k, digests, groups, all_acked) == 0) {
		rv = 0;
	} else {
		printf("FAIL: applied entries do not match the acknowledged writes\n");
	}
	free(digests);
	return rv;
}

/* --- Leaders. --- */

/* Ask for each group's leader (LEADER op), with every call first sent to
 * node via (0: any). leaders[g - 1] gets the hint, 0 when unanswered. */
static void check_leaders(struct client_router *r, uint32_t groups_count, uint64_t via,
			  const bool *wanted, uint64_t *leaders, int timeout_ms)
{
	struct client_call *calls = calloc(groups_count, sizeof(*calls));
	uint32_t count = 0;

	if (calls == NULL)
		return;
	for (uint32_t g = 1; g <= groups_count; g++) {
		if (wanted != NULL && !wanted[g - 1])
			continue;
		calls[count++].req = (struct client_request){.op = CLIENT_OP_LEADER, .group = g};
		if (via != 0)
			client_router_set_leader(r, g, via);
	}
	client_router_run(r, calls, count, false, timeout_ms);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t g = calls[i].req.group;

		leaders[g - 1] = calls[i].rv == 0 && calls[i].status == CLIENT_STATUS_OK
				     ? calls[i].leader_hint
				     : 0;
		client_call_clear(&calls[i]);
	}
	free(calls);
}

/* Prime the router's leader cache, so writes go to the leaders at once. */
static void check_learn_leaders(struct check *k)
{
	uint64_t *leaders = calloc(k->groups_count, sizeof(*leaders));

	uint64_t deadline = check_now_ms() + 20000;
	uint32_t unknown = k->groups_count;

	if (leaders == NULL)
		return;
	/* Right after start, elections may still run: wait for them, bounded. */
	while (unknown > 0 && check_now_ms() < deadline) {
		check_leaders(&k->router, k->groups_count, 0, NULL, leaders, 5000);
		unknown = 0;
		for (uint32_t g = 1; g <= k->groups_count; g++) {
			client_router_set_leader(&k->router, g, leaders[g - 1]);
			unknown += leaders[g - 1] == 0;
		}
		if (unknown > 0)
			check_sleep_ms(100);
	}
	printf("leaders: %u of %u groups have a known leader\n", k->groups_count - unknown,
	       k->groups_count);
	free(leaders);
}

/* --- scale --- */

/* One batch of PUTs: writes first..first+count-1, write i in group 1 + i % N. */
static uint32_t check_scale_batch(struct check *k, struct client_call *calls,
				  char (*keys)[CHECK_KEY_SIZE_MAX],
				  char (*values)[CHECK_VALUE_SIZE], uint64_t first, uint32_t count,
				  struct check_group *groups)
{
	uint32_t failed = 0;

	for (uint32_t i = 0; i < count; i++) {
		uint64_t seq = first + i;
		uint64_t group = 1 + seq % k->groups_count;

		check_write_text(k->prefix, seq, keys[i], values[i]);
		calls[i].req = check_put(group, keys[i], values[i]);
		groups[group - 1].written++;
	}
	/* A PUT of a fresh key with a fixed value is safe to send again. */
	client_router_run(&k->router, calls, count, true, CHECK_CALL_WAIT_MS);
	for (uint32_t i = 0; i < count; i++) {
		struct client_call *call = &calls[i];
		struct check_group *cg = &groups[call->req.group - 1];

		if (call->attempts > 0)
			cg->resent++;
		if (call->rv == 0 && call->status == CLIENT_STATUS_OK)
			cg->acked++;
		else if (failed++ < CHECK_SHOW_MAX)
			printf("put %s (group %llu): rv %d status %u %.*s\n", keys[i],
			       (unsigned long long)call->req.group, call->rv, call->status,
			       (int)call->value_size,
			       call->value != NULL ? (char *)call->value : "");
		client_call_clear(call);
	}
	return failed;
}

static int check_scale(struct check *k)
{
	struct check_group *groups = calloc(k->groups_count, sizeof(*groups));
	struct client_call *calls = calloc(k->batch_count, sizeof(*calls));
	char(*keys)[CHECK_KEY_SIZE_MAX] = calloc(k->batch_count, sizeof(*keys));
	char(*values)[CHECK_VALUE_SIZE] = calloc(k->batch_count, sizeof(*values));
	uint64_t started, elapsed_ms, resent = 0;
	uint32_t failed = 0;
	int rv = 2;

	if (groups == NULL || calls == NULL || keys == NULL || values == NULL)
		goto out;
	check_learn_leaders(k);
	started = check_now_ms();
	for (uint64_t first = 0; first < k->proposals_count; first += k->batch_count) {
		uint32_t count = (uint32_t)(k->proposals_count - first < k->batch_count
						? k->proposals_count - first
						: k->batch_count);

		failed += check_scale_batch(k, calls, keys, values, first, count, groups);
	}
	elapsed_ms = check_now_ms() - started;
	for (uint32_t g = 0; g < k->groups_count; g++)
		resent += groups[g].resent;
	printf("scale: %u PUTs over %u groups in %llu ms (%.0f/s), %u not acknowledged, "
	       "%llu sent more than once\n",
	       k->proposals_count, k->groups_count, (unsigned long long)elapsed_ms,
	       k->proposals_count * 1000.0 / (double)(elapsed_ms > 0 ? elapsed_ms : 1), failed,
	       (unsigned long long)resent);
	rv = strcmp(k->command, "write") == 0 ? 0 : check_replicas(k, groups, true);
	if (failed > 0) {
		printf("FAIL: %u writes were not acknowledged\n", failed);
		rv = 1;
	}
out:
	free(values);
	free(keys);
	free(calls);
	free(groups);
	return rv;
}

/* converge: every replica the same, nothing applied out of order. */
static int check_converge_only(struct check *k)
{
	struct client_digest *digests =
	    calloc((size_t)k->router.nodes_count * k->groups_count, sizeof(*digests));
	uint64_t violations = 0, applied = 0;
	int64_t differ;

	if (digests == NULL)
		return 2;
	differ = check_converge(k, digests);
	if (differ > 0)
		check_show_differences(k, digests);
	for (size_t i = 0; i < (size_t)k->router.nodes_count * k->groups_count; i++)
		violations += digests[i].order_violations;
	for (uint32_t g = 0; g < k->groups_count; g++)
		applied += digests[g].applied_count;
	printf("converge: %llu entries applied over %u groups; %llu index-order violations\n",
	       (unsigned long long)applied, k->groups_count, (unsigned long long)violations);
	free(digests);
	return differ == 0 && violations == 0 ? 0 : 1;
}

/* --- kill --- */

/* The background writer of the kill check: batches of one PUT per group,
 * each write a fresh key, until told to stop. */
struct check_writer {
	struct check *k;
	char prefix[8];       /* Of its keys: writers never share a key. */
	uint32_t first_group; /* It writes to groups first_group.. */
	uint32_t lane_groups; /* ..first_group + lane_groups - 1, one PUT each per batch. */
	struct client_router router;
	pthread_t thread;
	atomic_bool stop;
	atomic_uint_fast64_t acked_total;
	atomic_uint_fast64_t failed_total;
	uint64_t next_seq;
	uint64_t *acked; /* Sequence numbers of acknowledged writes. */
	uint32_t acked_count;
	uint64_t batch_ms_max; /* The longest batch: the stall a client saw. */
	struct check_group *groups;
	struct client_call *calls;
	char (*keys)[CHECK_KEY_SIZE_MAX];
	char (*values)[CHECK_VALUE_SIZE];
};

static void check_writer_batch(struct check_writer *w)
{
	uint32_t count = w->lane_groups;
	uint64_t started = check_now_ms(), took;

	for (uint32_t i = 0; i < count; i++) {
		uint64_t seq = w->next_seq + i;
		uint64_t group = w->first_group + seq % count;

		check_write_text(w->prefix, seq, w->keys[i], w->values[i]);
		w->calls[i].req = check_put(group, w->keys[i], w->values[i]);
		w->groups[group - 1].written++;
	}
	/* Fresh keys with fixed values: safe to send again after a lost connection. */
	client_router_run(&w->router, w->calls, count, true, CHECK_CALL_WAIT_MS);
	for (uint32_t i = 0; i < count; i++) {
		struct client_call *call = &w->calls[i];
		struct check_group *cg = &w->groups[call->req.group - 1];

		if (call->attempts > 0)
			cg->resent++;
		if (call->rv == 0 && call->status == CLIENT_STATUS_OK) {
			cg->acked++;
			w->acked[w->acked_count++] = w->next_seq + i;
			atomic_fetch_add(&w->acked_total, 1);
		} else {
			atomic_fetch_add(&w->failed_total, 1);
		}
		client_call_clear(call);
	}
	w->next_seq += count;
	took = check_now_ms() - started;
	if (took > w->batch_ms_max)
		w->batch_ms_max = took;
}

static void *check_writer_main(void *arg)
{
	struct check_writer *w = arg;

	while (!atomic_load(&w->stop) && w->acked_count + w->lane_groups <= CHECK_ACKS_MAX)
		check_writer_batch(w);
	return NULL;
}

/* Start a writer over groups first_group..first_group + lane_groups - 1.
 * Its counts go to groups (one entry per group of the cluster, shared by
 * writers of disjoint lanes). */
static int check_writer_start_lane(struct check_writer *w, struct check *k, uint32_t lane,
				   uint32_t first_group, uint32_t lane_groups,
				   struct check_group *groups)
{
	memset(w, 0, sizeof(*w));
	w->k = k;
	snprintf(w->prefix, sizeof(w->prefix), lane == 0 ? "w" : "w%u", lane);
	w->first_group = first_group;
	w->lane_groups = lane_groups;
	atomic_init(&w->stop, false);
	w->acked = calloc(CHECK_ACKS_MAX, sizeof(*w->acked));
	w->groups = groups;
	w->calls = calloc(lane_groups, sizeof(*w->calls));
	w->keys = calloc(lane_groups, sizeof(*w->keys));
	w->values = calloc(lane_groups, sizeof(*w->values));
	if (w->acked == NULL || w->groups == NULL || w->calls == NULL || w->keys == NULL ||
	    w->values == NULL || client_router_init(&w->router, k->nodes) != 0)
		return -ENOMEM;
	for (uint32_t g = first_group; g < first_group + lane_groups; g++)
		client_router_set_leader(&w->router, g, client_router_leader(&k->router, g));
	return -pthread_create(&w->thread, NULL, check_writer_main, w);
}

static int check_writer_start(struct check_writer *w, struct check *k)
{
	return check_writer_start_lane(w, k, 0, 1, k->groups_count,
				       calloc(k->groups_count, sizeof(*w->groups)));
}

static void check_writer_free(struct check_writer *w)
{
	client_router_deinit(&w->router);
	free(w->values);
	free(w->keys);
	free(w->calls);
	free(w->acked);
}

/* Let the writer run for ms, and say how it did. */
static void check_writer_run_for(struct check_writer *w, uint32_t ms, const char *phase)
{
	uint64_t acked = atomic_load(&w->acked_total), failed = atomic_load(&w->failed_total);

	check_sleep_ms(ms);
	printf("load %s: %llu writes acknowledged, %llu not, in %u ms\n", phase,
	       (unsigned long long)(atomic_load(&w->acked_total) - acked),
	       (unsigned long long)(atomic_load(&w->failed_total) - failed), ms);
	fflush(stdout);
}

/* The PID of node id from its pid file, if that process is the
 * flotilla-node of this cluster directory (its --data is dir/node-id);
 * else 0. Only such a process is ever signalled. */
static pid_t check_node_pid(const struct check *k, uint64_t id)
{
	char path[4096], data[4096], cmdline[8192];
	long pid = 0;
	size_t size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/node-%llu.pid", k->dir, (unsigned long long)id);
	snprintf(data, sizeof(data), "%s/node-%llu", k->dir, (unsigned long long)id);
	f = fopen(path, "r");
	if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		if (f != NULL)
			fclose(f);
		return 0;
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size = fread(cmdline, 1, sizeof(cmdline) - 1, f);
	fclose(f);
	cmdline[size] = '\0';
	/* Arguments are NUL-separated: look for "--data" followed by data. */
	for (size_t at = 0; at < size; at += strlen(cmdline + at) + 1)
		if (strcmp(cmdline + at, "--data") == 0 && at + 7 < size &&
		    strcmp(cmdline + at + 7, data) == 0)
			return (pid_t)pid;
	return 0;
}

/* The node leading the most groups, with leaders[] filled in. */
static uint64_t check_busiest_leader(struct check *k, uint64_t *leaders, uint32_t *led)
{
	uint32_t counts[CLIENT_NODES_MAX] = {0};
	uint64_t busiest = 0;

	check_leaders(&k->router, k->groups_count, 0, NULL, leaders, 10000);
	for (uint32_t g = 0; g < k->groups_count; g++)
		for (uint32_t n = 0; n < k->router.nodes_count; n++)
			counts[n] += leaders[g] == k->router.nodes[n].id;
	*led = 0;
	for (uint32_t n = 0; n < k->router.nodes_count; n++) {
		printf("node %llu leads %u groups\n", (unsigned long long)k->router.nodes[n].id,
		       counts[n]);
		if (counts[n] > *led) {
			*led = counts[n];
			busiest = k->router.nodes[n].id;
		}
	}
	return busiest;
}

/* After victim died at killed_ms: poll the survivors with LEADER until every
 * group of wanted[] has a leader among them, within bound_ms. Returns the
 * milliseconds until the last one moved, or UINT64_MAX. */
static uint64_t check_failover(struct check *k, uint64_t victim, bool *wanted, uint64_t killed_ms,
			       uint64_t bound_ms)
{
	uint64_t *hints = calloc(k->groups_count, sizeof(*hints));
	uint32_t remaining = 0, rounds = 0;
	uint64_t now = killed_ms;

	if (hints == NULL)
		return UINT64_MAX;
	for (uint32_t g = 0; g < k->groups_count; g++)
		remaining += wanted[g];
	while (remaining > 0 && (now = check_now_ms()) < killed_ms + bound_ms) {
		/* A fresh connection each round: reads left waiting on a dead
		 * leader must not fill the survivors' in-flight bounds. */
		struct client_router r;

		if (client_router_init(&r, k->nodes) != 0)
			break;
		rounds++;
		for (uint32_t n = 0; n < r.nodes_count; n++) {
			uint64_t id = r.nodes[n].id;

			if (id == victim)
				continue;
			memset(hints, 0, k->groups_count * sizeof(*hints));
			check_leaders(&r, k->groups_count, id, wanted, hints, 100);
			for (uint32_t g = 0; g < k->groups_count; g++) {
				if (!wanted[g] || hints[g] == 0 || hints[g] == victim)
					continue;
				wanted[g] = false;
				remaining--;
			}
		}
		client_router_deinit(&r);
		now = check_now_ms();
		if (remaining > 0)
			check_sleep_ms(20);
	}
	free(hints);
	printf("failover: %u rounds, %u groups still without a surviving leader\n", rounds,
	       remaining);
	return remaining == 0 ? now - killed_ms : UINT64_MAX;
}

/* Run "SCRIPT start --dir D --node ID" and wait for it (the script bounds
 * its own wait for the node's ready line). Returns its exit status or -errno. */
static int check_restart(const struct check *k, uint64_t id)
{
	char id_text[24];
	char *argv[] = {(char *)k->cluster, "start", "--dir", (char *)k->dir,
			"--node",           id_text, NULL};
	pid_t pid;
	int status, rv;

	snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)id);
	rv = posix_spawn(&pid, k->cluster, NULL, NULL, argv, environ);
	if (rv != 0)
		return -rv;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* GET every acknowledged write of w (linearizable reads through the
 * leaders) and compare the values. Returns the writes missing or wrong. */
static uint64_t check_read_back(struct check *k, const struct check_writer *w)
{
	uint32_t batch = k->batch_count;
	struct client_call *calls = calloc(batch, sizeof(*calls));
	char(*keys)[CHECK_KEY_SIZE_MAX] = calloc(batch, sizeof(*keys));
	char(*values)[CHECK_VALUE_SIZE] = calloc(batch, sizeof(*values));
	uint64_t bad = 0;

	if (calls == NULL || keys == NULL || values == NULL) {
		bad = UINT64_MAX;
		goto out;
	}
	for (uint32_t first = 0; first < w->acked_count; first += batch) {
		uint32_t count = w->acked_count - first < batch ? w->acked_count - first : batch;

		for (uint32_t i = 0; i < count; i++) {
			uint64_t seq = w->acked[first + i];

			check_write_text(w->prefix, seq, keys[i], values[i]);
			calls[i].req =
			    (struct client_request){.op = CLIENT_OP_GET,
						    .group = w->first_group + seq % w->lane_groups,
						    .key = keys[i],
						    .key_size = (uint32_t)strlen(keys[i])};
		}
		client_router_run(&k->router, calls, count, true, CHECK_CALL_WAIT_MS);
		for (uint32_t i = 0; i < count; i++) {
			struct client_call *call = &calls[i];
			bool same = call->rv == 0 && call->status == CLIENT_STATUS_OK &&
				    call->value_size == strlen(values[i]) &&
				    memcmp(call->value, values[i], call->value_size) == 0;

			if (!same && bad++ < CHECK_SHOW_MAX)
				printf("acknowledged write %s (group %llu) reads back as rv %d "
				       "status %u '%.*s'\n",
				       keys[i], (unsigned long long)call->req.group, call->rv,
				       call->status, (int)call->value_size,
				       call->value != NULL ? (char *)call->value : "");
			client_call_clear(call);
		}
	}
out:
	free(values);
	free(keys);
	free(calls);
	return bad;
}

/* Kill the busiest leader under load, measure the failover, restart it. */
static int check_kill_phase(struct check *k, struct check_writer *w)
{
	uint64_t *leaders = calloc(k->groups_count, sizeof(*leaders));
	bool *wanted = calloc(k->groups_count, sizeof(*wanted));
	uint64_t victim, killed_ms, failover_ms, bound_ms = 3 * (uint64_t)k->election_ms;
	uint32_t led;
	pid_t pid;
	int rv = 2;

	if (leaders == NULL || wanted == NULL)
		goto out;
	victim = check_busiest_leader(k, leaders, &led);
	pid = victim != 0 ? check_node_pid(k, victim) : 0;
	if (pid == 0) {
		printf("FAIL: no leader to kill, or no flotilla-node of this cluster for it\n");
		goto out;
	}
	for (uint32_t g = 0; g < k->groups_count; g++)
		wanted[g] = leaders[g] == victim;
	printf("kill -9 node %llu (pid %ld), leader of %u groups, under load\n",
	       (unsigned long long)victim, (long)pid, led);
	fflush(stdout);
	killed_ms = check_now_ms();
	if (kill(pid, SIGKILL) != 0) {
		perror("kill");
		goto out;
	}
	failover_ms = check_failover(k, victim, wanted, killed_ms, 10 * bound_ms);
	if (failover_ms == UINT64_MAX) {
		printf("FAIL: failover: no new leader within %llu ms\n",
		       (unsigned long long)(10 * bound_ms));
		rv = 1;
		goto out;
	}
	printf("failover: every group node %llu led has a leader on a survivor %llu ms after "
	       "the kill (bound: 3 election timeouts = %llu ms)\n",
	       (unsigned long long)victim, (unsigned long long)failover_ms,
	       (unsigned long long)bound_ms);
	rv = failover_ms <= bound_ms ? 0 : 1;
	if (rv != 0)
		printf("FAIL: failover took longer than 3 election timeouts\n");
	check_writer_run_for(w, 2000, "with node down");
	printf("restart node %llu from its data directory\n", (unsigned long long)victim);
	fflush(stdout);
	if (check_restart(k, victim) != 0) {
		printf("FAIL: restarting node %llu failed\n", (unsigned long long)victim);
		rv = 1;
	}
out:
	free(wanted);
	free(leaders);
	return rv;
}

static int check_kill(struct check *k)
{
	static struct check_writer w;
	uint64_t bad;
	int rv, rv_replicas;

	check_learn_leaders(k);
	if (check_writer_start(&w, k) != 0) {
		printf("cannot start the writer\n");
		free(w.groups);
		check_writer_free(&w);
		return 2;
	}
	check_writer_run_for(&w, 2000, "before the kill");
	rv = check_kill_phase(k, &w);
	check_writer_run_for(&w, 3000, "after the restart");
	atomic_store(&w.stop, true);
	pthread_join(w.thread, NULL);
	printf("writer: %u writes acknowledged, %llu not; longest batch %llu ms\n", w.acked_count,
	       (unsigned long long)atomic_load(&w.failed_total),
	       (unsigned long long)w.batch_ms_max);
	bad = check_read_back(k, &w);
	printf("read back: %llu of %u acknowledged writes missing or wrong\n",
	       (unsigned long long)bad, w.acked_count);
	if (bad != 0)
		rv = 1;
	rv_replicas = check_replicas(k, w.groups, false);
	if (rv == 0)
		rv = rv_replicas;
	free(w.groups);
	check_writer_free(&w);
	return rv;
}

/* --- stop and isolate --- */

/* One round of check_write_each's writes: where they go and what they count. */
struct check_round {
	const char *spec;           /* The nodes to write through (a --nodes SPEC). */
	const char *prefix;         /* Of the keys: "PREFIX-GROUP-ROUND". */
	uint64_t *took_ms;          /* NULL, or per group: ms until its write was acknowledged. */
	struct check_group *groups; /* NULL, or per group: what was written and acknowledged. */
};

/* PUT one write to each wanted group, through a fresh router on round->spec
 * each round whose calls start at a node other than victim (a stopped or
 * cut-off node answers nothing; the survivors' NOT_LEADER hints lead to the
 * new leaders), until every one is acknowledged or bound_ms after from_ms.
 * Returns the milliseconds from from_ms until the last was acknowledged, or
 * UINT64_MAX. */
static uint64_t check_write_each(struct check *k, uint64_t victim, bool *wanted, uint64_t from_ms,
				 uint64_t bound_ms, const struct check_round *round_of)
{
	struct client_call *calls = calloc(k->groups_count, sizeof(*calls));
	char(*keys)[CHECK_KEY_SIZE_MAX] = calloc(k->groups_count, sizeof(*keys));
	uint32_t remaining = 1, round = 0;
	uint64_t now = from_ms, via = victim == 1 ? 2 : 1;

	if (calls == NULL || keys == NULL)
		goto out;
	remaining = 0;
	for (uint32_t g = 0; g < k->groups_count; g++)
		remaining += wanted[g];
	while (remaining > 0 && (now = check_now_ms()) < from_ms + bound_ms) {
		struct client_router r;
		uint32_t count = 0;

		if (client_router_init(&r, round_of->spec) != 0)
			break;
		round++;
		for (uint32_t g = 0; g < k->groups_count; g++) {
			if (!wanted[g])
				continue;
			snprintf(keys[count], CHECK_KEY_SIZE_MAX, "%s-%u-%u", round_of->prefix,
				 g + 1, round);
			calls[count].req = check_put(g + 1, keys[count], "after-stop");
			client_router_set_leader(&r, g + 1, via);
			if (round_of->groups != NULL)
				round_of->groups[g].written++;
			count++;
		}
		client_router_run(&r, calls, count, true, 100);
		now = check_now_ms();
		for (uint32_t i = 0; i < count; i++) {
			uint64_t g = calls[i].req.group - 1;

			if (round_of->groups != NULL && calls[i].attempts > 0)
				round_of->groups[g].resent++;
			if (calls[i].rv == 0 && calls[i].status == CLIENT_STATUS_OK) {
				wanted[g] = false;
				remaining--;
				if (round_of->groups != NULL)
					round_of->groups[g].acked++;
				if (round_of->took_ms != NULL)
					round_of->took_ms[g] = now - from_ms;
			}
			client_call_clear(&calls[i]);
		}
		client_router_deinit(&r);
		via = via % k->router.nodes_count + 1;
		if (via == victim)
			via = via % k->router.nodes_count + 1;
	}
out:
	free(keys);
	free(calls);
	return remaining == 0 ? now - from_ms : UINT64_MAX;
}

/* Quiesced groups whose leader's host stops: no load for more than the 3
 * election timeouts after which idle groups quiesce; then SIGSTOP the node
 * leading the most groups, and require a write to each group it led to be
 * acknowledged by the survivors within bound_ms: host liveness suspects the
 * node after 3 heartbeat intervals, and a group quiet for longer than an
 * election timeout elects at once. SIGCONT it after, in every case. */
static int check_stop(struct check *k)
{
	uint64_t *leaders = calloc(k->groups_count, sizeof(*leaders));
	bool *wanted = calloc(k->groups_count, sizeof(*wanted));
	uint64_t victim, stopped_ms, moved_ms, bound_ms = 3 * (uint64_t)k->heartbeat_ms + 1000;
	uint32_t led;
	pid_t pid;
	int rv = 2;

	if (leaders == NULL || wanted == NULL)
		goto out;
	check_learn_leaders(k);
	printf("idle for %u ms: every group quiesces\n", 4 * k->election_ms + 1000);
	check_sleep_ms(4 * k->election_ms + 1000);
	victim = check_busiest_leader(k, leaders, &led);
	pid = victim != 0 ? check_node_pid(k, victim) : 0;
	if (pid == 0) {
		printf("FAIL: no leader to stop, or no flotilla-node of this cluster for it\n");
		goto out;
	}
	for (uint32_t g = 0; g < k->groups_count; g++)
		wanted[g] = leaders[g] == victim;
	printf("SIGSTOP node %llu (pid %ld), leader of %u quiesced groups\n",
	       (unsigned long long)victim, (long)pid, led);
	stopped_ms = check_now_ms();
	if (kill(pid, SIGSTOP) != 0) {
		perror("kill");
		goto out;
	}
	moved_ms = check_write_each(k, victim, wanted, stopped_ms, 10 * bound_ms,
				    &(struct check_round){.spec = k->nodes, .prefix = "stop"});
	kill(pid, SIGCONT);
	if (moved_ms == UINT64_MAX) {
		printf("FAIL: some groups of node %llu took no write within %llu ms\n",
		       (unsigned long long)victim, (unsigned long long)(10 * bound_ms));
		rv = 1;
		goto out;
	}
	printf("every group node %llu led took a write on the survivors %llu ms after the stop "
	       "(bound: 3 heartbeat intervals + 1 s = %llu ms)\n",
	       (unsigned long long)victim, (unsigned long long)moved_ms,
	       (unsigned long long)bound_ms);
	rv = moved_ms <= bound_ms ? 0 : 1;
	if (rv != 0)
		printf("FAIL: longer than the bound\n");
out:
	free(wanted);
	free(leaders);
	return rv;
}

/* --- replace --- */

#define CHECK_LANES     16   /* Writers: a group a move stalls holds up only its lane. */
#define CHECK_SECONDS   3600 /* Seconds of throughput samples kept. */
#define CHECK_SAMPLE_MS 20

/* Samples the writers' acknowledged writes: per second, and the longest
 * time in which none was acknowledged. */
struct check_sampler {
	struct check_writer *writers;
	uint32_t writers_count;
	pthread_t thread;
	atomic_bool stop;
	uint64_t started_ms;
	uint64_t per_second[CHECK_SECONDS];
	uint64_t gap_ms_max, gap_end_ms; /* Longest stretch without an ack, and when it ended. */
	pthread_mutex_t lock;            /* Guards the above against the reader. */
};

static uint64_t check_acked_sum(const struct check_sampler *sp)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < sp->writers_count; i++)
		sum += atomic_load(&sp->writers[i].acked_total);
	return sum;
}

static void *check_sampler_main(void *arg)
{
	struct check_sampler *sp = arg;
	uint64_t last = check_acked_sum(sp), last_change_ms = sp->started_ms;

	while (!atomic_load(&sp->stop)) {
		uint64_t now, acked;

		check_sleep_ms(CHECK_SAMPLE_MS);
		now = check_now_ms();
		acked = check_acked_sum(sp);
		pthread_mutex_lock(&sp->lock);
		if (acked != last) {
			uint64_t second = (now - sp->started_ms) / 1000;

			if (second < CHECK_SECONDS)
				sp->per_second[second] += acked - last;
			last = acked;
			last_change_ms = now;
		} else if (now - last_change_ms > sp->gap_ms_max) {
			sp->gap_ms_max = now - last_change_ms;
			sp->gap_end_ms = now - sp->started_ms;
		}
		pthread_mutex_unlock(&sp->lock);
	}
	return NULL;
}

/* Print the throughput of seconds from..to-1 (relative to the start). */
static void check_sampler_report(struct check_sampler *sp, uint64_t from_ms, uint64_t to_ms,
				 const char *phase)
{
	uint64_t from = from_ms / 1000, to = to_ms / 1000, min = UINT64_MAX, sum = 0;
	char line[8192];
	int n = 0;

	pthread_mutex_lock(&sp->lock);
	for (uint64_t s = from; s < to && s < CHECK_SECONDS; s++) {
		sum += sp->per_second[s];
		min = sp->per_second[s] < min ? sp->per_second[s] : min;
		if (n < (int)sizeof(line) - 24)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " %llu",
				      (unsigned long long)sp->per_second[s]);
	}
	pthread_mutex_unlock(&sp->lock);
	if (to <= from) {
		printf("throughput %s: under a second\n", phase);
		return;
	}
	printf("throughput %s: %.0f writes/s on average, %llu in the slowest second; per "
	       "second:%s\n",
	       phase, (double)sum / (double)(to - from), (unsigned long long)min, line);
}

/* Run argv (a program and its arguments) and wait for it. Returns its exit
 * status, 128 when it died of a signal, or -errno. */
static int check_spawn(char **argv)
{
	pid_t pid;
	int status, rv = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);

	if (rv != 0)
		return -rv;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* "SCRIPT start|stop --dir D --node ID". */
static int check_cluster_node(const struct check *k, const char *cmd, uint64_t id)
{
	char id_text[24];
	char *argv[] = {(char *)k->cluster, (char *)cmd, "--dir", (char *)k->dir,
			"--node",           id_text,     NULL};

	snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)id);
	fflush(stdout);
	return check_spawn(argv);
}

/* "ADMIN move --from A --to B --nodes SPEC --groups N --parallel P". */
static int check_admin_move_at(const struct check *k, const char *nodes, uint64_t from, uint64_t to)
{
	char from_text[24], to_text[24], groups_text[24], parallel_text[24];
	char *argv[] = {(char *)k->admin, "move",        "--from",      from_text,  "--to",
			to_text,          "--nodes",     (char *)nodes, "--groups", groups_text,
			"--parallel",     parallel_text, NULL};

	snprintf(from_text, sizeof(from_text), "%llu", (unsigned long long)from);
	snprintf(to_text, sizeof(to_text), "%llu", (unsigned long long)to);
	snprintf(groups_text, sizeof(groups_text), "%u", k->groups_count);
	snprintf(parallel_text, sizeof(parallel_text), "%u", k->parallel);
	fflush(stdout);
	return check_spawn(argv);
}

static int check_admin_move(const struct check *k, uint64_t from, uint64_t to)
{
	return check_admin_move_at(k, k->nodes, from, to);
}

/* Replace voter old by the empty node new under load: start new, move
 * every replica of old to it, stop old. */
static int check_replace_one(struct check *k, struct check_sampler *sp, uint64_t old_id,
			     uint64_t new_id)
{
	uint64_t t0 = check_now_ms() - sp->started_ms, t1, t2;
	int rv;

	printf("== start node %llu (empty)\n", (unsigned long long)new_id);
	rv = check_cluster_node(k, "start", new_id);
	if (rv != 0) {
		printf("FAIL: starting node %llu: status %d\n", (unsigned long long)new_id, rv);
		return 1;
	}
	printf("== move %llu -> %llu: %u groups, %u at a time\n", (unsigned long long)old_id,
	       (unsigned long long)new_id, k->groups_count, k->parallel);
	t1 = check_now_ms();
	rv = check_admin_move(k, old_id, new_id);
	t2 = check_now_ms();
	printf("move %llu -> %llu: %s in %llu ms (%u groups)\n", (unsigned long long)old_id,
	       (unsigned long long)new_id, rv == 0 ? "done" : "FAILED",
	       (unsigned long long)(t2 - t1), k->groups_count);
	if (rv != 0)
		return 1;
	if (old_id == 1) {
		/* A move run again finds every group moved, and changes nothing. */
		printf("== move %llu -> %llu again\n", (unsigned long long)old_id,
		       (unsigned long long)new_id);
		if (check_admin_move(k, old_id, new_id) != 0) {
			printf("FAIL: a repeated move failed\n");
			return 1;
		}
	}
	printf("== stop node %llu\n", (unsigned long long)old_id);
	rv = check_cluster_node(k, "stop", old_id);
	check_sleep_ms(1000);
	check_sampler_report(sp, t0, check_now_ms() - sp->started_ms, "during this replacement");
	return rv == 0 ? 0 : 1;
}

/* A router spec of the nodes new_first..new_first + count - 1 of k->router. */
static int check_final_spec(const struct check *k, uint64_t new_first, uint32_t count, char *spec,
			    size_t size)
{
	size_t n = 0;

	spec[0] = '\0';
	for (uint32_t i = 0; i < k->router.nodes_count; i++) {
		const struct client_node *node = &k->router.nodes[i];

		if (node->id < new_first || node->id >= new_first + count)
			continue;
		n += (size_t)snprintf(spec + n, size - n, "%s%llu=%s", n > 0 ? "," : "",
				      (unsigned long long)node->id, node->addr);
		if (n >= size)
			return -ENAMETOOLONG;
	}
	return 0;
}

/* Every acked write read back, and the replicas of the new nodes agree. */
static int check_replace_verify(struct check *k, struct check_writer *writers,
				struct check_group *groups)
{
	char spec[CLIENT_NODES_MAX * (CLIENT_ADDR_SIZE_MAX + 24)];
	uint64_t bad = 0, acked = 0;
	int rv = 0;

	for (uint32_t i = 0; i < CHECK_LANES; i++) {
		uint64_t lane_bad = check_read_back(k, &writers[i]);

		bad += lane_bad == UINT64_MAX ? writers[i].acked_count : lane_bad;
		acked += writers[i].acked_count;
	}
	printf("read back: %llu of %llu acknowledged writes missing or wrong\n",
	       (unsigned long long)bad, (unsigned long long)acked);
	if (bad != 0)
		rv = 1;
	if (check_final_spec(k, k->voters_count + 1, k->voters_count, spec, sizeof(spec)) != 0)
		return 1;
	client_router_deinit(&k->router);
	if (client_router_init(&k->router, spec) != 0)
		return 1;
	printf("replicas: comparing nodes %s\n", spec);
	if (check_replicas(k, groups, false) != 0)
		rv = 1;
	return rv;
}

/* Replace every voter in turn by a new, empty node, under a write load of
 * CHECK_LANES writers over disjoint groups. */
static int check_replace(struct check *k)
{
	static struct check_writer writers[CHECK_LANES];
	static struct check_sampler sp = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct check_group *groups = calloc(k->groups_count, sizeof(*groups));
	uint32_t lanes = 0, per_lane = k->groups_count / CHECK_LANES;
	uint64_t total_acked = 0, total_failed = 0;
	int rv = 0;

	if (groups == NULL || per_lane == 0 || k->router.nodes_count < 2 * k->voters_count) {
		printf("replace needs at least %u groups and %u nodes in --nodes (voters, then as "
		       "many spares)\n",
		       CHECK_LANES, 2 * k->voters_count);
		free(groups);
		return 2;
	}
	check_learn_leaders(k);
	for (; lanes < CHECK_LANES; lanes++) {
		uint32_t first = 1 + lanes * per_lane;
		uint32_t count = lanes + 1 == CHECK_LANES ? k->groups_count + 1 - first : per_lane;

		if (check_writer_start_lane(&writers[lanes], k, lanes + 1, first, count, groups) !=
		    0) {
			printf("cannot start writer %u\n", lanes);
			rv = 2;
			break;
		}
	}
	sp.writers = writers;
	sp.writers_count = lanes;
	sp.started_ms = check_now_ms();
	atomic_init(&sp.stop, false);
	if (rv == 0 && pthread_create(&sp.thread, NULL, check_sampler_main, &sp) != 0)
		rv = 2;
	if (rv == 0) {
		check_sleep_ms(2000);
		check_sampler_report(&sp, 0, check_now_ms() - sp.started_ms, "before");
		for (uint32_t i = 1; i <= k->voters_count && rv == 0; i++)
			rv = check_replace_one(k, &sp, i, k->voters_count + i);
		check_sleep_ms(2000);
		atomic_store(&sp.stop, true);
		pthread_join(sp.thread, NULL);
		check_sampler_report(&sp, 0, check_now_ms() - sp.started_ms, "over the whole run");
		printf("commit gap: the longest time with no write acknowledged was %llu ms "
		       "(ending %.1f s into the run; bound %u ms)\n",
		       (unsigned long long)sp.gap_ms_max, (double)sp.gap_end_ms / 1000.0,
		       k->gap_ms_max);
		if (sp.gap_ms_max > k->gap_ms_max) {
			printf("FAIL: the cluster stopped committing for longer than the bound\n");
			rv = 1;
		}
	}
	for (uint32_t i = 0; i < lanes; i++) {
		atomic_store(&writers[i].stop, true);
		pthread_join(writers[i].thread, NULL);
		total_acked += writers[i].acked_count;
		total_failed += atomic_load(&writers[i].failed_total);
	}
	printf("writers: %llu writes acknowledged, %llu not\n", (unsigned long long)total_acked,
	       (unsigned long long)total_failed);
	if (lanes == CHECK_LANES && (rv == 0 || rv == 1) &&
	    check_replace_verify(k, writers, groups) != 0)
		rv = 1;
	for (uint32_t i = 0; i < lanes; i++)
		check_writer_free(&writers[i]);
	free(groups);
	return rv;
}

/* --- addnode --- */

/* Start node 4, new to the cluster; "ADMIN add-node --nodes ADDR --id 4
 * --peer-addr P" and "ADMIN move --from 1 --to 4 --nodes ADDR" with ADDR
 * node 1's client address alone (the admin tool finds the rest). */
static int check_addnode_steps(struct check *k, struct check_sampler *sp)
{
	const struct client_node *first = &k->router.nodes[0];
	uint64_t new_id = k->voters_count + 1, t0 = check_now_ms() - sp->started_ms, t1;
	char id_text[24];
	char *add[] = {
	    (char *)k->admin, "add-node",           "--nodes", (char *)first->addr, "--id", id_text,
	    "--peer-addr",    (char *)k->peer_addr, NULL};
	int rv;

	snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)new_id);
	printf("== start node %llu (new to the cluster, empty)\n", (unsigned long long)new_id);
	rv = check_cluster_node(k, "start", new_id);
	if (rv != 0) {
		printf("FAIL: starting node %llu: status %d\n", (unsigned long long)new_id, rv);
		return 1;
	}
	printf("== add-node %llu at %s, through node %llu alone\n", (unsigned long long)new_id,
	       k->peer_addr, (unsigned long long)first->id);
	fflush(stdout);
	t1 = check_now_ms();
	rv = check_spawn(add);
	printf("add-node: %s in %llu ms\n", rv == 0 ? "done" : "FAILED",
	       (unsigned long long)(check_now_ms() - t1));
	if (rv != 0)
		return 1;
	printf("== move %llu -> %llu: %u groups, %u at a time\n", (unsigned long long)first->id,
	       (unsigned long long)new_id, k->groups_count, k->parallel);
	t1 = check_now_ms();
	rv = check_admin_move_at(k, first->addr, first->id, new_id);
	printf("move %llu -> %llu: %s in %llu ms (%u groups)\n", (unsigned long long)first->id,
	       (unsigned long long)new_id, rv == 0 ? "done" : "FAILED",
	       (unsigned long long)(check_now_ms() - t1), k->groups_count);
	check_sampler_report(sp, t0, check_now_ms() - sp->started_ms, "during add-node and move");
	return rv == 0 ? 0 : 1;
}

/* Add a node to a running cluster and move every group of node 1 onto it,
 * under a write load of CHECK_LANES writers over disjoint groups. */
static int check_addnode(struct check *k)
{
	static struct check_writer writers[CHECK_LANES];
	static struct check_sampler sp = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct check_group *groups = calloc(k->groups_count, sizeof(*groups));
	uint32_t lanes = 0, per_lane = k->groups_count / CHECK_LANES;
	char spec[CLIENT_NODES_MAX * (CLIENT_ADDR_SIZE_MAX + 24)];
	uint64_t total_acked = 0, total_failed = 0, bad = 0, acked = 0;
	int rv = 0;

	if (groups == NULL || per_lane == 0 || k->router.nodes_count != k->voters_count + 1) {
		printf("addnode needs at least %u groups and %u nodes in --nodes (voters, then "
		       "the new one)\n",
		       CHECK_LANES, k->voters_count + 1);
		free(groups);
		return 2;
	}
	check_learn_leaders(k);
	for (; lanes < CHECK_LANES; lanes++) {
		uint32_t first = 1 + lanes * per_lane;
		uint32_t count = lanes + 1 == CHECK_LANES ? k->groups_count + 1 - first : per_lane;

		if (check_writer_start_lane(&writers[lanes], k, lanes + 1, first, count, groups) !=
		    0) {
			printf("cannot start writer %u\n", lanes);
			rv = 2;
			break;
		}
	}
	sp.writers = writers;
	sp.writers_count = lanes;
	sp.started_ms = check_now_ms();
	atomic_init(&sp.stop, false);
	if (rv == 0 && pthread_create(&sp.thread, NULL, check_sampler_main, &sp) != 0)
		rv = 2;
	if (rv == 0) {
		check_sleep_ms(2000);
		check_sampler_report(&sp, 0, check_now_ms() - sp.started_ms, "before");
		rv = check_addnode_steps(k, &sp);
		check_sleep_ms(2000);
		atomic_store(&sp.stop, true);
		pthread_join(sp.thread, NULL);
		check_sampler_report(&sp, 0, check_now_ms() - sp.started_ms, "over the whole run");
		printf("commit gap: the longest time with no write acknowledged was %llu ms "
		       "(bound %u ms)\n",
		       (unsigned long long)sp.gap_ms_max, k->gap_ms_max);
		if (sp.gap_ms_max > k->gap_ms_max) {
			printf("FAIL: the cluster stopped committing for longer than the bound\n");
			rv = 1;
		}
	}
	for (uint32_t i = 0; i < lanes; i++) {
		atomic_store(&writers[i].stop, true);
		pthread_join(writers[i].thread, NULL);
		total_acked += writers[i].acked_count;
		total_failed += atomic_load(&writers[i].failed_total);
	}
	printf("writers: %llu writes acknowledged, %llu not\n", (unsigned long long)total_acked,
	       (unsigned long long)total_failed);
	if (lanes == CHECK_LANES && (rv == 0 || rv == 1)) {
		for (uint32_t i = 0; i < CHECK_LANES; i++) {
			uint64_t lane_bad = check_read_back(k, &writers[i]);

			bad += lane_bad == UINT64_MAX ? writers[i].acked_count : lane_bad;
			acked += writers[i].acked_count;
		}
		printf("read back: %llu of %llu acknowledged writes missing or wrong\n",
		       (unsigned long long)bad, (unsigned long long)acked);
		if (bad != 0 || acked == 0)
			rv = 1;
		/* The replicas now: nodes 2 .. voters and the new one. */
		if (check_final_spec(k, 2, k->voters_count, spec, sizeof(spec)) != 0) {
			rv = 1;
		} else {
			client_router_deinit(&k->router);
			if (client_router_init(&k->router, spec) != 0) {
				rv = 1;
			} else {
				printf("replicas: comparing nodes %s\n", spec);
				if (check_replicas(k, groups, false) != 0)
					rv = 1;
			}
		}
	}
	for (uint32_t i = 0; i < lanes; i++)
		check_writer_free(&writers[i]);
	free(groups);
	return rv;
}

/* --- isolate --- */

/* "FAULT cut|heal ID". */
static int check_fault(const struct check *k, const char *cmd, uint64_t id)
{
	char id_text[24];
	char *argv[] = {(char *)k->fault, (char *)cmd, id_text, NULL};

	snprintf(id_text, sizeof(id_text), "%llu", (unsigned long long)id);
	fflush(stdout);
	return check_spawn(argv);
}

static int check_compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Print the time each group in mask took (took_ms), then their p50 and max;
 * returns the max. */
static uint64_t check_show_times(const struct check *k, const char *phase, const uint64_t *took_ms,
				 const bool *mask)
{
	uint64_t *sorted = calloc(k->groups_count, sizeof(*sorted));
	uint32_t count = 0;
	uint64_t max = 0;

	printf("%s, ms per group:", phase);
	for (uint32_t g = 0; g < k->groups_count; g++) {
		if (!mask[g])
			continue;
		printf(" %u:%llu", g + 1, (unsigned long long)took_ms[g]);
		if (sorted != NULL)
			sorted[count] = took_ms[g];
		count++;
		max = took_ms[g] > max ? took_ms[g] : max;
	}
	printf("\n");
	if (sorted != NULL && count > 0) {
		qsort(sorted, count, sizeof(*sorted), check_compare_u64);
		printf("%s: %u groups, p50 %llu ms, max %llu ms\n", phase, count,
		       (unsigned long long)sorted[(count - 1) / 2], (unsigned long long)max);
	}
	free(sorted);
	return max;
}

/* spec without node id's entry, into out (strlen(spec) + 1 bytes). */
static void check_spec_without(const char *spec, uint64_t id, char *out)
{
	char prefix[32];
	const char *p = spec;

	snprintf(prefix, sizeof(prefix), "%llu=", (unsigned long long)id);
	out[0] = '\0';
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t size = end != NULL ? (size_t)(end - p) : strlen(p);

		if (strncmp(p, prefix, strlen(prefix)) != 0) {
			if (out[0] != '\0')
				strcat(out, ",");
			strncat(out, p, size);
		}
		p += size + (end != NULL);
	}
}

/* Quiesced groups whose leader's host is cut off from the network (FAULT
 * cut ID, say its link set down): every group takes a write; no load for
 * more than 3 election timeouts (idle groups quiesce); cut off the node
 * leading the most groups; a write to each group it led, sent through the
 * other nodes only, must be acknowledged within 3 heartbeat intervals + 1 s
 * of the cut. Then FAULT heal ID, and a write to every group must be
 * acknowledged within the same bound of the heal. Last, every node must
 * hold the same replicas, with every acknowledged write. */
static int check_isolate(struct check *k)
{
	struct check_group *groups = calloc(k->groups_count, sizeof(*groups));
	uint64_t *leaders = calloc(k->groups_count, sizeof(*leaders));
	uint64_t *took_ms = calloc(k->groups_count, sizeof(*took_ms));
	bool *wanted = calloc(k->groups_count, sizeof(*wanted));
	bool *mask = calloc(k->groups_count, sizeof(*mask));
	char *survivors = malloc(strlen(k->nodes) + 1);
	uint64_t victim = 0, at_ms, bound_ms = 3 * (uint64_t)k->heartbeat_ms + 1000;
	uint64_t give_up_ms = 15000, max_ms;
	uint32_t led;
	int rv = 2;

	if (groups == NULL || leaders == NULL || took_ms == NULL || wanted == NULL ||
	    mask == NULL || survivors == NULL)
		goto out;
	check_learn_leaders(k);
	for (uint32_t g = 0; g < k->groups_count; g++)
		wanted[g] = true;
	if (check_write_each(
		k, 0, wanted, check_now_ms(), 30000,
		&(struct check_round){.spec = k->nodes, .prefix = "first", .groups = groups}) ==
	    UINT64_MAX) {
		printf("FAIL: some groups took no first write within 30 s\n");
		rv = 1;
		goto out;
	}
	printf("every group took a write; idle for %u ms: every group quiesces\n",
	       4 * k->election_ms + 1000);
	check_sleep_ms(4 * k->election_ms + 1000);
	victim = check_busiest_leader(k, leaders, &led);
	if (victim == 0) {
		printf("FAIL: no leader to cut off\n");
		goto out;
	}
	for (uint32_t g = 0; g < k->groups_count; g++)
		wanted[g] = mask[g] = leaders[g] == victim;
	check_spec_without(k->nodes, victim, survivors);
	printf("cut off node %llu, leader of %u quiesced groups; writing through %s\n",
	       (unsigned long long)victim, led, survivors);
	at_ms = check_now_ms();
	if (check_fault(k, "cut", victim) != 0) {
		printf("FAIL: %s cut %llu failed\n", k->fault, (unsigned long long)victim);
		goto heal;
	}
	if (check_write_each(k, victim, wanted, at_ms, give_up_ms,
			     &(struct check_round){.spec = survivors,
						   .prefix = "cut",
						   .took_ms = took_ms,
						   .groups = groups}) == UINT64_MAX) {
		printf("FAIL: some groups of node %llu took no write within %llu ms of the cut\n",
		       (unsigned long long)victim, (unsigned long long)give_up_ms);
		rv = 1;
		goto heal;
	}
	max_ms = check_show_times(k, "during the cut", took_ms, mask);
	if (max_ms > bound_ms) {
		printf("FAIL: during the cut, longer than the bound (3 heartbeat intervals + 1 s = "
		       "%llu ms)\n",
		       (unsigned long long)bound_ms);
		rv = 1;
		goto heal;
	}
	printf("heal node %llu\n", (unsigned long long)victim);
	at_ms = check_now_ms();
	if (check_fault(k, "heal", victim) != 0) {
		printf("FAIL: %s heal %llu failed\n", k->fault, (unsigned long long)victim);
		goto out;
	}
	for (uint32_t g = 0; g < k->groups_count; g++)
		wanted[g] = mask[g] = true;
	if (check_write_each(k, victim, wanted, at_ms, give_up_ms,
			     &(struct check_round){.spec = k->nodes,
						   .prefix = "heal",
						   .took_ms = took_ms,
						   .groups = groups}) == UINT64_MAX) {
		printf("FAIL: some groups took no write within %llu ms of the heal\n",
		       (unsigned long long)give_up_ms);
		rv = 1;
		goto out;
	}
	max_ms = check_show_times(k, "after the heal", took_ms, mask);
	if (max_ms > bound_ms) {
		printf("FAIL: after the heal, longer than the bound (3 heartbeat intervals + 1 s = "
		       "%llu ms)\n",
		       (unsigned long long)bound_ms);
		rv = 1;
		goto out;
	}
	rv = check_replicas(k, groups, false);
	goto out;
heal:
	check_fault(k, "heal", victim);
out:
	free(survivors);
	free(mask);
	free(wanted);
	free(took_ms);
	free(leaders);
	free(groups);
	return rv;
}

/* --- Arguments. --- */

static void check_usage(void)
{
	fprintf(
	    stderr,
	    "usage: flotilla-cluster-check scale --nodes SPEC --groups N --proposals P "
	    "[--batch B]\n"
	    "       flotilla-cluster-check write --nodes SPEC --groups N --proposals P "
	    "--prefix X\n"
	    "       flotilla-cluster-check converge --nodes SPEC --groups N\n"
	    "       flotilla-cluster-check kill --nodes SPEC --groups N --dir D --cluster "
	    "SCRIPT --election-ms E\n"
	    "       flotilla-cluster-check stop --nodes SPEC --groups N --dir D --election-ms E "
	    "--heartbeat-ms H\n"
	    "       flotilla-cluster-check isolate --nodes SPEC --groups N --fault FAULT "
	    "--election-ms E --heartbeat-ms H\n"
	    "       flotilla-cluster-check replace --nodes SPEC --groups N --dir D --cluster "
	    "SCRIPT --admin ADMIN [--voters 3] [--parallel 8] [--max-gap-ms 5000]\n"
	    "       flotilla-cluster-check addnode --nodes SPEC --groups N --dir D --cluster "
	    "SCRIPT --admin ADMIN --peer-addr HOST:PORT [--voters 3] [--parallel 8] "
	    "[--max-gap-ms 5000]\n");
}

static int check_parse_u32(const char *text, uint32_t min, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || end == text || v < min || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int check_parse(struct check *k, int argc, char **argv)
{
	if (argc < 2)
		return -EINVAL;
	k->command = argv[1];
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *name = argv[i], *value = argv[i + 1];
		int rv = 0;

		if (strcmp(name, "--nodes") == 0)
			k->nodes = value;
		else if (strcmp(name, "--dir") == 0)
			k->dir = value;
		else if (strcmp(name, "--cluster") == 0)
			k->cluster = value;
		else if (strcmp(name, "--prefix") == 0)
			k->prefix = value;
		else if (strcmp(name, "--groups") == 0)
			rv = check_parse_u32(value, 1, &k->groups_count);
		else if (strcmp(name, "--proposals") == 0)
			rv = check_parse_u32(value, 1, &k->proposals_count);
		else if (strcmp(name, "--batch") == 0)
			rv = check_parse_u32(value, 1, &k->batch_count);
		else if (strcmp(name, "--election-ms") == 0)
			rv = check_parse_u32(value, 1, &k->election_ms);
		else if (strcmp(name, "--heartbeat-ms") == 0)
			rv = check_parse_u32(value, 1, &k->heartbeat_ms);
		else if (strcmp(name, "--admin") == 0)
			k->admin = value;
		else if (strcmp(name, "--peer-addr") == 0)
			k->peer_addr = value;
		else if (strcmp(name, "--fault") == 0)
			k->fault = value;
		else if (strcmp(name, "--voters") == 0)
			rv = check_parse_u32(value, 1, &k->voters_count);
		else if (strcmp(name, "--parallel") == 0)
			rv = check_parse_u32(value, 1, &k->parallel);
		else if (strcmp(name, "--max-gap-ms") == 0)
			rv = check_parse_u32(value, 1, &k->gap_ms_max);
		else
			rv = -EINVAL;
		if (rv != 0)
			return rv;
	}
	if (argc % 2 != 0 || k->nodes == NULL || k->groups_count == 0)
		return -EINVAL;
	if (strcmp(k->command, "kill") == 0)
		return k->dir != NULL && k->cluster != NULL && k->election_ms > 0 ? 0 : -EINVAL;
	if (strcmp(k->command, "stop") == 0)
		return k->dir != NULL && k->election_ms > 0 && k->heartbeat_ms > 0 ? 0 : -EINVAL;
	if (strcmp(k->command, "isolate") == 0)
		return k->fault != NULL && k->election_ms > 0 && k->heartbeat_ms > 0 ? 0 : -EINVAL;
	if (strcmp(k->command, "replace") == 0)
		return k->dir != NULL && k->cluster != NULL && k->admin != NULL &&
			       k->groups_count >= CHECK_LANES
			   ? 0
			   : -EINVAL;
	if (strcmp(k->command, "addnode") == 0)
		return k->dir != NULL && k->cluster != NULL && k->admin != NULL &&
			       k->peer_addr != NULL && k->groups_count >= CHECK_LANES
			   ? 0
			   : -EINVAL;
	if (strcmp(k->command, "converge") == 0)
		return 0;
	if (strcmp(k->command, "write") == 0 && (k->prefix == NULL || strlen(k->prefix) > 8))
		return -EINVAL;
	return (strcmp(k->command, "scale") == 0 || strcmp(k->command, "write") == 0) &&
		       k->proposals_count > 0
		   ? 0
		   : -EINVAL;
}

int main(int argc, char **argv)
{
	static struct check k = {.batch_count = 4096,
				 .voters_count = 3,
				 .parallel = 8,
				 .gap_ms_max = 5000,
				 .prefix = "s"};
	uint64_t started = check_now_ms();
	int rv;

	if (check_parse(&k, argc, argv) != 0) {
		check_usage();
		return 2;
	}
	if (client_router_init(&k.router, k.nodes) != 0) {
		fprintf(stderr, "flotilla-cluster-check: bad --nodes '%s'\n", k.nodes);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(k.command, "kill") == 0)
		rv = check_kill(&k);
	else if (strcmp(k.command, "stop") == 0)
		rv = check_stop(&k);
	else if (strcmp(k.command, "isolate") == 0)
		rv = check_isolate(&k);
	else if (strcmp(k.command, "converge") == 0)
		rv = check_converge_only(&k);
	else if (strcmp(k.command, "replace") == 0)
		rv = check_replace(&k);
	else if (strcmp(k.command, "addnode") == 0)
		rv = check_addnode(&k);
	else
		rv = check_scale(&k);
	client_router_deinit(&k.router);
	printf("%s %s in %llu ms\n", k.command, rv == 0 ? "passed" : "FAILED",
	       (unsigned long long)(check_now_ms() - started));
	return rv;
}
