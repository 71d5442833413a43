/* flotilla-kvcheck: drives a running cluster through the client protocol
 * (tools/client.h) and checks what it answers. The cluster test runs it
 * between starting, killing and restarting nodes.
 *
 *   flotilla-kvcheck --nodes SPEC [--groups N] [--timeout-ms T] COMMAND [options]
 *     put --prefix P --keys K --ack FILE   PUT K fresh keys in each group 1..N; append
 *                                          the acknowledged ones to FILE; exit 1 unless all
 *     verify --ack FILE [--via ID]         GET every key of FILE (first asking node ID,
 *                                          then following NOT_LEADER); exit 1 on any
 *                                          missing or different value
 *     local --ack FILE --via ID            LOCAL_GET every key of FILE on node ID until
 *                                          all match or the timeout passes: catch-up
 *     ops [--group G]                      CAS and DELETE semantics on one group
 *     stale --via ID [--group G]           STALE_GET on node ID: a fresh PUT is served
 *                                          with figures that add up, an absent key is
 *                                          NOT_FOUND with figures, a 1 ms bound on the
 *                                          time since the leader was heard is refused
 *                                          (STALE) with figures over it
 *     garbage --via ID                     malformed requests get BAD_REQUEST and a
 *                                          closed connection; the node keeps serving
 *     leaders [--via ID]                   print each group's leader (LEADER op)
 *     lead --group G --via ID              make node ID the leader of group G (TRANSFER
 *                                          at the current leader until ID says it leads)
 *     diverge [--group G] [--via ID] --keys K
 *                                          CORRUPT one follower of group G (node ID, or
 *                                          the first that is not the leader; nodes run
 *                                          with --allow-corrupt-for-tests on), PUT K keys,
 *                                          then require that follower to count a
 *                                          divergence (CHECK_STATUS) and refuse GET,
 *                                          and the leader to serve GET and CHECK; then
 *                                          REBUILD the follower: the corrupt key is
 *                                          gone, GET works, K more keys and no new
 *                                          divergence
 *     absent --group G --key K             no node's copy of group G holds key K
 *                                          (LOCAL_GET on each), and a linearizable GET
 *                                          asking each node in turn answers NOT_FOUND
 *     corrupt --group G --via ID           CORRUPT group G on node ID only, and nothing
 *                                          else: the replica stays diverged until a
 *                                          check finds it (flotilla-admin verify)
 *
 * SPEC is "1=127.0.0.1:PORT,2=127.0.0.1:PORT,...". Keys are "P-g-i" and values
 * "value-P-g-i" followed by padding, so a value proves which write it came from. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/le.h"
#include "tools/client.h"

#define KVCHECK_TEXT_MAX 128
#define KVCHECK_SHOW_MAX 10 /* Failures printed one by one. */

struct kvcheck {
	struct client_router router;
	const char *nodes;
	uint64_t groups_count;
	int timeout_ms;
	const char *prefix;
	uint32_t keys_count;
	const char *ack_path;
	uint64_t via;
	uint64_t group;
	const char *key; /* absent */
};

/* One acknowledged write: group, key and value, as the ack file stores them. */
struct kvcheck_ack {
	uint64_t group;
	char key[KVCHECK_TEXT_MAX];
	char value[KVCHECK_TEXT_MAX];
};

static uint64_t kvcheck_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *kvcheck_status_name(uint32_t status)
{
	static const char *const names[] = {"OK",           "NOT_FOUND", "NOT_LEADER",
					    "CAS_MISMATCH", "ERROR",     "BAD_REQUEST",
					    "RETRY",        "NO_SPACE",  "STALE"};

	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "?";
}

/* Send the first attempt of every group's calls to node via (0: no seed). */
static void kvcheck_seed(struct kvcheck *k, struct client_call *calls, uint32_t count)
{
	if (k->via == 0)
		return;
	for (uint32_t i = 0; i < count; i++)
		client_router_set_leader(&k->router, calls[i].req.group, k->via);
}

static int kvcheck_put(struct kvcheck *k)
{
	uint32_t count = (uint32_t)k->groups_count * k->keys_count, acked;
	struct kvcheck_ack *acks = calloc(count, sizeof(*acks));
	struct client_call *calls = calloc(count, sizeof(*calls));
	FILE *out;

	if (acks == NULL || calls == NULL || k->prefix == NULL || k->ack_path == NULL)
		return 2;
	for (uint32_t i = 0; i < count; i++) {
		struct kvcheck_ack *a = &acks[i];

		a->group = 1 + i % k->groups_count;
		snprintf(a->key, sizeof(a->key), "%s-%llu-%u", k->prefix,
			 (unsigned long long)a->group, i);
		snprintf(a->value, sizeof(a->value), "value-%s-%.*s", a->key, (int)(i % 40),
			 "........................................");
		calls[i].req = (struct client_request){.op = CLIENT_OP_PUT,
						       .group = a->group,
						       .key = a->key,
						       .key_size = (uint32_t)strlen(a->key),
						       .value = a->value,
						       .value_size = (uint32_t)strlen(a->value)};
	}
	kvcheck_seed(k, calls, count);
	/* A PUT of a fresh key with a fixed value is safe to send again. */
	client_router_run(&k->router, calls, count, true, k->timeout_ms);
	out = fopen(k->ack_path, "a");
	if (out == NULL) {
		perror(k->ack_path);
		return 2;
	}
	acked = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (calls[i].rv == 0 && calls[i].status == CLIENT_STATUS_OK) {
			fprintf(out, "%llu %s %s\n", (unsigned long long)acks[i].group, acks[i].key,
				acks[i].value);
			acked++;
		} else if (i - acked < KVCHECK_SHOW_MAX) {
			fprintf(stderr, "put %s (group %llu): rv %d status %s %.*s\n", acks[i].key,
				(unsigned long long)acks[i].group, calls[i].rv,
				kvcheck_status_name(calls[i].status), (int)calls[i].value_size,
				calls[i].value != NULL ? (const char *)calls[i].value : "");
		}
		client_call_clear(&calls[i]);
	}
	fclose(out);
	printf("put: %u of %u acknowledged\n", acked, count);
	free(calls);
	free(acks);
	return acked == count ? 0 : 1;
}

static struct kvcheck_ack *kvcheck_read_acks(const char *path, uint32_t *count)
{
	FILE *in = fopen(path, "r");
	struct kvcheck_ack *acks = NULL;
	uint32_t size = 0;
	unsigned long long group;
	char key[KVCHECK_TEXT_MAX], value[KVCHECK_TEXT_MAX];

	*count = 0;
	if (in == NULL) {
		perror(path);
		return NULL;
	}
	while (fscanf(in, "%llu %127s %127s", &group, key, value) == 3) {
		if (*count == size) {
			struct kvcheck_ack *grown;

			size = size == 0 ? 1024 : size * 2;
			grown = realloc(acks, size * sizeof(*acks));
			if (grown == NULL)
				break;
			acks = grown;
		}
		acks[*count].group = group;
		strcpy(acks[*count].key, key);
		strcpy(acks[*count].value, value);
		(*count)++;
	}
	fclose(in);
	return acks;
}

/* GET (or LOCAL_GET) every acknowledged key; returns how many differ. */
static uint32_t kvcheck_compare(struct kvcheck *k, const struct kvcheck_ack *acks, uint32_t count,
				uint32_t op, bool quiet)
{
	struct client_call *calls = calloc(count, sizeof(*calls));
	uint32_t wrong = 0;

	if (calls == NULL)
		return count;
	for (uint32_t i = 0; i < count; i++)
		calls[i].req = (struct client_request){.op = op,
						       .group = acks[i].group,
						       .key = acks[i].key,
						       .key_size = (uint32_t)strlen(acks[i].key)};
	kvcheck_seed(k, calls, count);
	client_router_run(&k->router, calls, count, true, k->timeout_ms);
	for (uint32_t i = 0; i < count; i++) {
		const struct client_call *c = &calls[i];
		size_t size = strlen(acks[i].value);
		bool same = c->rv == 0 && c->status == CLIENT_STATUS_OK && c->value_size == size &&
			    memcmp(c->value, acks[i].value, size) == 0;

		if (!same && !quiet && wrong < KVCHECK_SHOW_MAX)
			fprintf(stderr,
				"%s (group %llu) on node %llu: rv %d status %s value '%.*s'\n",
				acks[i].key, (unsigned long long)acks[i].group,
				(unsigned long long)c->node, c->rv, kvcheck_status_name(c->status),
				(int)c->value_size, c->value != NULL ? (const char *)c->value : "");
		wrong += !same;
		client_call_clear(&calls[i]);
	}
	free(calls);
	return wrong;
}

static int kvcheck_verify(struct kvcheck *k)
{
	uint32_t count, wrong;
	struct kvcheck_ack *acks = kvcheck_read_acks(k->ack_path, &count);

	if (acks == NULL)
		return 2;
	wrong = kvcheck_compare(k, acks, count, CLIENT_OP_GET, false);
	printf("verify via node %llu: %u of %u acknowledged writes read back\n",
	       (unsigned long long)k->via, count - wrong, count);
	free(acks);
	return wrong == 0 && count > 0 ? 0 : 1;
}

/* Poll node via's own state until it holds every acknowledged write. */
static int kvcheck_local(struct kvcheck *k)
{
	uint64_t deadline = kvcheck_now_ms() + (uint64_t)k->timeout_ms;
	uint32_t count, wrong = 0;
	struct kvcheck_ack *acks = kvcheck_read_acks(k->ack_path, &count);
	int timeout_ms = k->timeout_ms;

	if (acks == NULL || k->via == 0)
		return 2;
	k->timeout_ms = 2000;
	for (int round = 0; round < 1000; round++) {
		bool last = kvcheck_now_ms() >= deadline;

		wrong = kvcheck_compare(k, acks, count, CLIENT_OP_LOCAL_GET, !last);
		if (wrong == 0 || last)
			break;
		usleep(100 * 1000);
	}
	k->timeout_ms = timeout_ms;
	printf("local state of node %llu: %u of %u acknowledged writes present\n",
	       (unsigned long long)k->via, count - wrong, count);
	free(acks);
	return wrong == 0 && count > 0 ? 0 : 1;
}

/* Run one call, not idempotent (a CAS or DELETE must run exactly once). */
static int kvcheck_call(struct kvcheck *k, struct client_call *call, uint32_t want_status,
			const char *want_value, const char *what)
{
	bool ok;

	client_router_run(&k->router, call, 1, false, k->timeout_ms);
	ok = call->rv == 0 && call->status == want_status &&
	     (want_value == NULL || (call->value_size == strlen(want_value) &&
				     memcmp(call->value, want_value, call->value_size) == 0));
	if (!ok)
		fprintf(stderr, "ops: %s: rv %d status %s value '%.*s', expected %s '%s'\n", what,
			call->rv, kvcheck_status_name(call->status), (int)call->value_size,
			call->value != NULL ? (const char *)call->value : "",
			kvcheck_status_name(want_status), want_value != NULL ? want_value : "");
	client_call_clear(call);
	return ok ? 0 : 1;
}

static int kvcheck_ops(struct kvcheck *k)
{
	char key[64];
	struct client_request cas = {.op = CLIENT_OP_CAS, .group = k->group, .key = key};
	struct client_request simple = {.group = k->group, .key = key};
	struct client_call call = {.req = cas};
	int failed = 0;

	snprintf(key, sizeof(key), "ops-%ld-%llu", (long)getpid(),
		 (unsigned long long)kvcheck_now_ms());
	cas.key_size = simple.key_size = (uint32_t)strlen(key);
	/* CAS on an absent key: create once, then mismatch with the value. */
	cas.expected_size = CLIENT_ABSENT;
	cas.value = "one";
	cas.value_size = 3;
	call.req = cas;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_OK, NULL, "CAS absent -> one");
	call.req = cas;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_CAS_MISMATCH, "one", "CAS absent again");
	cas.expected = "two";
	cas.expected_size = 3;
	call.req = cas;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_CAS_MISMATCH, "one", "CAS two -> one");
	cas.expected = "one";
	cas.value = "three";
	cas.value_size = 5;
	call.req = cas;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_OK, NULL, "CAS one -> three");
	simple.op = CLIENT_OP_GET;
	call.req = simple;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_OK, "three", "GET after CAS");
	simple.op = CLIENT_OP_DELETE;
	call.req = simple;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_OK, NULL, "DELETE");
	call.req = simple;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_NOT_FOUND, NULL, "DELETE again");
	simple.op = CLIENT_OP_GET;
	call.req = simple;
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_NOT_FOUND, NULL, "GET after DELETE");
	call.req = cas; /* Expects "one": the key is gone. */
	failed |= kvcheck_call(k, &call, CLIENT_STATUS_NOT_FOUND, NULL, "CAS on a deleted key");
	printf("ops on group %llu: %s\n", (unsigned long long)k->group, failed ? "FAILED" : "ok");
	return failed;
}

/* One STALE_GET of key on node via with these bounds; its figures in *st.
 * Returns the call's status, or UINT32_MAX when it failed or its value does
 * not start with figures that add up (said on stderr). */
static uint32_t kvcheck_stale_get(struct kvcheck *k, const char *key, uint64_t behind_max,
				  uint64_t age_max_ms, struct client_stale *st, char *value,
				  size_t value_max)
{
	struct client_call call = {.req = {.op = CLIENT_OP_STALE_GET,
					   .group = k->group,
					   .key = key,
					   .key_size = (uint32_t)strlen(key),
					   .behind_max = behind_max,
					   .age_max_ms = age_max_ms}};
	uint32_t status = UINT32_MAX;

	value[0] = '\0';
	kvcheck_seed(k, &call, 1);
	/* Not retried elsewhere: the answer must be node via's. */
	client_router_run(&k->router, &call, 1, false, k->timeout_ms);
	if (call.rv == 0 && call.node == k->via &&
	    client_stale_decode(call.value, call.value_size, st) == 0 &&
	    st->entries_behind == st->leader_commit - st->applied_index &&
	    st->applied_index <= st->leader_commit) {
		size_t size = call.value_size - CLIENT_STALE_SIZE;

		status = call.status;
		if (size < value_max) {
			memcpy(value, (const char *)call.value + CLIENT_STALE_SIZE, size);
			value[size] = '\0';
		}
	} else {
		fprintf(stderr, "stale: %s on node %llu: rv %d status %s, value '%.*s'\n", key,
			(unsigned long long)call.node, call.rv, kvcheck_status_name(call.status),
			(int)call.value_size, call.value != NULL ? (const char *)call.value : "");
	}
	client_call_clear(&call);
	return status;
}

static int kvcheck_stale(struct kvcheck *k)
{
	uint64_t deadline = kvcheck_now_ms() + (uint64_t)k->timeout_ms;
	struct client_request put = {.op = CLIENT_OP_PUT, .group = k->group};
	struct client_call call;
	struct client_stale st;
	char key[64], absent[80], value[64];
	uint32_t status;
	int refused = 0;

	snprintf(key, sizeof(key), "stale-%ld-%llu", (long)getpid(),
		 (unsigned long long)kvcheck_now_ms());
	snprintf(absent, sizeof(absent), "%s-absent", key);
	put.key = key;
	put.key_size = (uint32_t)strlen(key);
	put.value = "fresh";
	put.value_size = 5;
	call = (struct client_call){.req = put};
	if (kvcheck_call(k, &call, CLIENT_STATUS_OK, NULL, "PUT before STALE_GET") != 0)
		return 1;
	/* No bound: served at once, the write once this replica applied it. */
	do {
		status = kvcheck_stale_get(k, key, 0, 0, &st, value, sizeof(value));
		if (status == CLIENT_STATUS_NOT_FOUND)
			usleep(20 * 1000);
	} while (status == CLIENT_STATUS_NOT_FOUND && kvcheck_now_ms() < deadline);
	if (status != CLIENT_STATUS_OK || strcmp(value, "fresh") != 0 || st.applied_index == 0) {
		fprintf(stderr, "stale: the write never showed on node %llu\n",
			(unsigned long long)k->via);
		return 1;
	}
	if (kvcheck_stale_get(k, absent, 0, 0, &st, value, sizeof(value)) !=
	    CLIENT_STATUS_NOT_FOUND) {
		fprintf(stderr, "stale: an absent key is not NOT_FOUND\n");
		return 1;
	}
	/* A 1 ms bound on the contact age: heartbeats come every interval, so
	 * most reads are past it. */
	for (int i = 0; i < 200 && !refused; i++) {
		status = kvcheck_stale_get(k, key, 0, 1, &st, value, sizeof(value));
		if (status == CLIENT_STATUS_STALE && st.contact_age_ms > 1 && value[0] == '\0')
			refused = 1;
		else if (status != CLIENT_STATUS_OK || st.contact_age_ms > 1) {
			fprintf(stderr,
				"stale: a 1 ms bound on node %llu: status %s with %llu ms since "
				"contact\n",
				(unsigned long long)k->via,
				status == UINT32_MAX ? "none" : kvcheck_status_name(status),
				(unsigned long long)st.contact_age_ms);
			return 1;
		}
		usleep(2000);
	}
	printf("stale on node %llu, group %llu: applied %llu, %llu behind, refused past 1 ms: "
	       "%s\n",
	       (unsigned long long)k->via, (unsigned long long)k->group,
	       (unsigned long long)st.applied_index, (unsigned long long)st.entries_behind,
	       refused ? "yes" : "NO");
	return refused ? 0 : 1;
}

/* Send raw bytes on a fresh connection to node via; expect BAD_REQUEST, then
 * the connection closed by the node. Returns 0 when so. */
static int kvcheck_garbage_one(struct kvcheck *k, const void *bytes, size_t size, const char *what)
{
	struct client *c;
	struct client_response resp;
	int rv;

	c = client_router_conn(&k->router, k->via);
	if (c == NULL) {
		fprintf(stderr, "garbage: cannot connect to node %llu\n",
			(unsigned long long)k->via);
		return 1;
	}
	if (client_send_bytes(c, bytes, size) != 0) {
		client_close(c);
		return 1;
	}
	rv = client_wait(c, &resp, 5000);
	if (rv != 0 || resp.status != CLIENT_STATUS_BAD_REQUEST) {
		fprintf(stderr, "garbage: %s: rv %d status %u\n", what, rv, resp.status);
		client_close(c);
		return 1;
	}
	rv = client_wait(c, &resp, 5000);
	client_close(c);
	if (rv != -ECONNRESET) {
		fprintf(stderr, "garbage: %s: connection not closed (%d)\n", what, rv);
		return 1;
	}
	return 0;
}

static int kvcheck_garbage(struct kvcheck *k)
{
	static const unsigned char oversized[] = {0xff, 0xff, 0xff, 0x7f};
	static const unsigned char short_frame[] = {3, 0, 0, 0, 1, 2, 3};
	static const unsigned char bad_op[24] = {20, 0, 0, 0, 77, 0, 0, 0, 9};
	static const unsigned char bad_key[28] = {24, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0,   0, 0, 0,
						  0,  0, 1, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0};
	struct client_call call = {.req = {.op = CLIENT_OP_LEADER, .group = 1}};
	int failed = 0;

	failed |= kvcheck_garbage_one(k, oversized, sizeof(oversized), "size over 16 MiB");
	failed |= kvcheck_garbage_one(k, short_frame, sizeof(short_frame), "size under 20");
	failed |= kvcheck_garbage_one(k, bad_op, sizeof(bad_op), "unknown op");
	failed |= kvcheck_garbage_one(k, bad_key, sizeof(bad_key), "key past the body");
	client_router_set_leader(&k->router, 1, k->via);
	client_router_run(&k->router, &call, 1, true, k->timeout_ms);
	if (call.rv != 0 || call.status != CLIENT_STATUS_OK) {
		fprintf(stderr, "garbage: node %llu stopped answering\n",
			(unsigned long long)k->via);
		failed = 1;
	}
	client_call_clear(&call);
	printf("garbage on node %llu: %s\n", (unsigned long long)k->via, failed ? "FAILED" : "ok");
	return failed;
}

static int kvcheck_leaders(struct kvcheck *k)
{
	struct client_call *calls = calloc(k->groups_count, sizeof(*calls));
	int failed = 0;

	if (calls == NULL)
		return 2;
	for (uint64_t g = 0; g < k->groups_count; g++)
		calls[g].req = (struct client_request){.op = CLIENT_OP_LEADER, .group = g + 1};
	kvcheck_seed(k, calls, (uint32_t)k->groups_count);
	client_router_run(&k->router, calls, (uint32_t)k->groups_count, true, k->timeout_ms);
	for (uint64_t g = 0; g < k->groups_count; g++) {
		printf("group %llu: leader %llu (rv %d, asked node %llu)\n",
		       (unsigned long long)g + 1, (unsigned long long)calls[g].leader_hint,
		       calls[g].rv, (unsigned long long)calls[g].node);
		failed |= calls[g].rv != 0;
		client_call_clear(&calls[g]);
	}
	free(calls);
	return failed;
}

/* Run call on node (following nothing but NOT_LEADER), not idempotent. */
static void kvcheck_on(struct kvcheck *k, uint64_t node, struct client_call *call)
{
	client_router_set_leader(&k->router, call->req.group, node);
	client_router_run(&k->router, call, 1, false, k->timeout_ms);
}

/* CHECK_STATUS of node: its divergences counter, or UINT64_MAX on failure. */
static uint64_t kvcheck_divergences(struct kvcheck *k, uint64_t node)
{
	struct client_call call = {.req = {.op = CLIENT_OP_CHECK_STATUS, .group = k->group}};
	uint64_t divergences = UINT64_MAX;

	kvcheck_on(k, node, &call);
	if (call.rv == 0 && call.status == CLIENT_STATUS_OK && call.value_size == 16)
		divergences = le_get64((const unsigned char *)call.value + 8);
	client_call_clear(&call);
	return divergences;
}

/* The leader of k->group, asked until one is known (0 on timeout). */
static uint64_t kvcheck_leader_of(struct kvcheck *k)
{
	uint64_t deadline = kvcheck_now_ms() + (uint64_t)k->timeout_ms;

	while (kvcheck_now_ms() < deadline) {
		struct client_call call = {.req = {.op = CLIENT_OP_LEADER, .group = k->group}};
		uint64_t leader;

		client_router_run(&k->router, &call, 1, true, k->timeout_ms);
		leader = call.rv == 0 ? call.leader_hint : 0;
		client_call_clear(&call);
		if (leader != 0)
			return leader;
		usleep(50 * 1000);
	}
	return 0;
}

/* REBUILD node target of k->group after kvcheck_diverge() set key there:
 * the key must be gone (the state is the leader's), GET served again, and
 * more writes (more checks) must not count another divergence. */
static int kvcheck_rebuild(struct kvcheck *k, uint64_t target, const char *key,
			   uint64_t divergences)
{
	struct client_call call = {.req = {.op = CLIENT_OP_REBUILD, .group = k->group}};
	int failed = 0;

	kvcheck_on(k, target, &call);
	if (call.rv != 0 || call.status != CLIENT_STATUS_OK || call.value_size != 8) {
		fprintf(stderr, "rebuild: node %llu: rv %d status %s '%.*s'\n",
			(unsigned long long)target, call.rv, kvcheck_status_name(call.status),
			(int)call.value_size, call.value ? (const char *)call.value : "");
		client_call_clear(&call);
		return 1;
	}
	printf("rebuild: node %llu restored the leader's snapshot at index %llu\n",
	       (unsigned long long)target, (unsigned long long)le_get64(call.value));
	client_call_clear(&call);
	call.req = (struct client_request){
	    .op = CLIENT_OP_GET, .group = k->group, .key = key, .key_size = (uint32_t)strlen(key)};
	kvcheck_on(k, target, &call);
	if (call.rv != 0 || call.status != CLIENT_STATUS_NOT_FOUND) {
		fprintf(stderr, "rebuild: GET of the corrupt key on node %llu: rv %d status %s\n",
			(unsigned long long)target, call.rv, kvcheck_status_name(call.status));
		failed = 1;
	}
	client_call_clear(&call);
	for (uint32_t i = 0; i < k->keys_count; i++) {
		char put_key[64];

		snprintf(put_key, sizeof(put_key), "rebuilt-%ld-%u", (long)getpid(), i);
		call.req = (struct client_request){.op = CLIENT_OP_PUT,
						   .group = k->group,
						   .key = put_key,
						   .key_size = (uint32_t)strlen(put_key),
						   .value = "w",
						   .value_size = 1};
		client_router_run(&k->router, &call, 1, true, k->timeout_ms);
		failed |= call.rv != 0 || call.status != CLIENT_STATUS_OK;
		client_call_clear(&call);
	}
	call.req = (struct client_request){.op = CLIENT_OP_CHECK, .group = k->group};
	client_router_run(&k->router, &call, 1, true, k->timeout_ms);
	failed |= call.rv != 0 || call.status != CLIENT_STATUS_OK;
	client_call_clear(&call);
	if (kvcheck_divergences(k, target) != divergences) {
		fprintf(stderr, "rebuild: node %llu counted a divergence after its rebuild\n",
			(unsigned long long)target);
		failed = 1;
	}
	printf("rebuild: node %llu: %s\n", (unsigned long long)target, failed ? "FAILED" : "ok");
	return failed;
}

static int kvcheck_diverge(struct kvcheck *k)
{
	char key[64], value[64];
	uint64_t leader = kvcheck_leader_of(k), target = k->via, before, after = 0, deadline;
	struct client_call call = {0};
	int failed = 0;

	if (leader == 0) {
		fprintf(stderr, "diverge: group %llu has no leader\n",
			(unsigned long long)k->group);
		return 1;
	}
	for (uint32_t i = 0; i < k->router.nodes_count && (target == 0 || target == leader); i++)
		target = k->router.nodes[i].id;
	if (target == leader) {
		fprintf(stderr, "diverge: node %llu leads group %llu: pick a follower\n",
			(unsigned long long)target, (unsigned long long)k->group);
		return 1;
	}
	before = kvcheck_divergences(k, target);
	snprintf(key, sizeof(key), "diverge-%ld", (long)getpid());
	snprintf(value, sizeof(value), "not-the-group's-%llu",
		 (unsigned long long)kvcheck_now_ms());
	call.req = (struct client_request){.op = CLIENT_OP_CORRUPT,
					   .group = k->group,
					   .key = key,
					   .key_size = (uint32_t)strlen(key),
					   .value = value,
					   .value_size = (uint32_t)strlen(value)};
	kvcheck_on(k, target, &call);
	if (call.rv != 0 || call.status != CLIENT_STATUS_OK) {
		fprintf(stderr, "diverge: CORRUPT on node %llu: rv %d status %s '%.*s'\n",
			(unsigned long long)target, call.rv, kvcheck_status_name(call.status),
			(int)call.value_size, call.value ? (const char *)call.value : "");
		client_call_clear(&call);
		return 1;
	}
	client_call_clear(&call);
	/* One check interval of writes, then nothing more: the check that
	 * catches it is among them. */
	for (uint32_t i = 0; i < k->keys_count; i++) {
		char put_key[64];

		snprintf(put_key, sizeof(put_key), "after-%ld-%u", (long)getpid(), i);
		call.req = (struct client_request){.op = CLIENT_OP_PUT,
						   .group = k->group,
						   .key = put_key,
						   .key_size = (uint32_t)strlen(put_key),
						   .value = "v",
						   .value_size = 1};
		client_router_run(&k->router, &call, 1, true, k->timeout_ms);
		failed |= call.rv != 0 || call.status != CLIENT_STATUS_OK;
		client_call_clear(&call);
	}
	deadline = kvcheck_now_ms() + (uint64_t)k->timeout_ms;
	while (kvcheck_now_ms() < deadline) {
		after = kvcheck_divergences(k, target);
		if (after != UINT64_MAX && before != UINT64_MAX && after > before)
			break;
		usleep(50 * 1000);
	}
	if (after == UINT64_MAX || before == UINT64_MAX || after <= before) {
		fprintf(stderr,
			"diverge: node %llu counted no divergence (%llu before, %llu after)\n",
			(unsigned long long)target, (unsigned long long)before,
			(unsigned long long)after);
		failed = 1;
	}
	call.req = (struct client_request){
	    .op = CLIENT_OP_GET, .group = k->group, .key = key, .key_size = (uint32_t)strlen(key)};
	kvcheck_on(k, target, &call);
	if (call.rv != 0 || call.status != CLIENT_STATUS_ERROR) {
		fprintf(stderr, "diverge: GET on the diverged node: rv %d status %s\n", call.rv,
			kvcheck_status_name(call.status));
		failed = 1;
	} else {
		printf("diverge: GET on node %llu: ERROR '%.*s'\n", (unsigned long long)target,
		       (int)call.value_size, (const char *)call.value);
	}
	client_call_clear(&call);
	kvcheck_on(k, leader, &call);
	if (call.rv != 0 || call.status != CLIENT_STATUS_NOT_FOUND) {
		fprintf(stderr, "diverge: GET on the leader: rv %d status %s\n", call.rv,
			kvcheck_status_name(call.status));
		failed = 1;
	}
	client_call_clear(&call);
	call.req = (struct client_request){.op = CLIENT_OP_CHECK, .group = k->group};
	client_router_run(&k->router, &call, 1, true, k->timeout_ms);
	if (call.rv != 0 || call.status != CLIENT_STATUS_OK || call.value_size != 8) {
		fprintf(stderr, "diverge: CHECK: rv %d status %s\n", call.rv,
			kvcheck_status_name(call.status));
		failed = 1;
	} else {
		printf("diverge: CHECK on node %llu: check at index %llu\n",
		       (unsigned long long)call.node, (unsigned long long)le_get64(call.value));
	}
	client_call_clear(&call);
	failed |= kvcheck_rebuild(k, target, key, after);
	printf("diverge: group %llu, node %llu corrupted, leader %llu: divergences %llu -> %llu: "
	       "%s\n",
	       (unsigned long long)k->group, (unsigned long long)target, (unsigned long long)leader,
	       (unsigned long long)before, (unsigned long long)after, failed ? "FAILED" : "ok");
	return failed;
}

/* CORRUPT k->group on node k->via alone: a key set behind the log's back. */
static int kvcheck_corrupt(struct kvcheck *k)
{
	char key[64];
	struct client_call call = {0};
	int failed;

	snprintf(key, sizeof(key), "corrupt-%ld", (long)getpid());
	call.req = (struct client_request){.op = CLIENT_OP_CORRUPT,
					   .group = k->group,
					   .key = key,
					   .key_size = (uint32_t)strlen(key),
					   .value = "not-the-group's",
					   .value_size = 15};
	kvcheck_on(k, k->via, &call);
	failed = call.rv != 0 || call.status != CLIENT_STATUS_OK;
	printf("corrupt: group %llu on node %llu: %s\n", (unsigned long long)k->group,
	       (unsigned long long)k->via, failed ? kvcheck_status_name(call.status) : "ok");
	client_call_clear(&call);
	return failed;
}

/* Make node via lead k->group: TRANSFER at the current leader, then ask via
 * until it says it leads, within the timeout. */
static int kvcheck_lead(struct kvcheck *k)
{
	uint64_t deadline = kvcheck_now_ms() + (uint64_t)k->timeout_ms;

	while (kvcheck_now_ms() < deadline) {
		struct client_call call = {.req = {.op = CLIENT_OP_LEADER, .group = k->group}};
		uint64_t leader;

		kvcheck_on(k, k->via, &call);
		leader = call.rv == 0 && call.status == CLIENT_STATUS_OK ? call.leader_hint : 0;
		client_call_clear(&call);
		if (leader == k->via) {
			printf("lead: node %llu leads group %llu\n", (unsigned long long)k->via,
			       (unsigned long long)k->group);
			return 0;
		}
		if (leader != 0) {
			call = (struct client_call){
			    .req = {.op = CLIENT_OP_TRANSFER, .group = k->group, .member = k->via}};
			kvcheck_on(k, leader, &call);
			client_call_clear(&call);
		}
		usleep(100000);
	}
	fprintf(stderr, "lead: node %llu did not become the leader of group %llu\n",
		(unsigned long long)k->via, (unsigned long long)k->group);
	return 1;
}

static int kvcheck_absent(struct kvcheck *k)
{
	uint32_t found = 0;

	for (uint32_t op = 0; op < 2; op++) {
		for (uint32_t i = 0; i < k->router.nodes_count; i++) {
			uint64_t node = k->router.nodes[i].id;
			struct client_call call = {
			    .req = {.op = op == 0 ? CLIENT_OP_LOCAL_GET : CLIENT_OP_GET,
				    .group = k->group,
				    .key = k->key,
				    .key_size = (uint32_t)strlen(k->key)}};

			kvcheck_on(k, node, &call); /* A GET follows NOT_LEADER from there. */
			printf("absent: %s of %s in group %llu asking node %llu: %s%s%.*s\n",
			       op == 0 ? "LOCAL_GET" : "GET", k->key, (unsigned long long)k->group,
			       (unsigned long long)node,
			       call.rv != 0 ? strerror(-call.rv) : kvcheck_status_name(call.status),
			       call.rv == 0 && call.status == CLIENT_STATUS_OK ? ", value " : "",
			       call.rv == 0 && call.status == CLIENT_STATUS_OK
				   ? (int)call.value_size
				   : 0,
			       call.value != NULL ? (const char *)call.value : "");
			if (call.rv != 0 || call.status != CLIENT_STATUS_NOT_FOUND)
				found++;
			client_call_clear(&call);
		}
	}
	return found == 0 ? 0 : 1;
}

static int kvcheck_usage(void)
{
	fprintf(stderr, "usage: flotilla-kvcheck --nodes SPEC [--groups N] [--timeout-ms T] "
			"put|verify|local|ops|stale|garbage|leaders|lead|diverge|corrupt|absent "
			"[--prefix P] [--keys K] [--ack FILE] [--via ID] [--group G] [--key K]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct kvcheck k = {.groups_count = 1, .timeout_ms = 20000, .keys_count = 10, .group = 1};
	const char *command = NULL;
	int rv;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (strncmp(arg, "--", 2) != 0) {
			command = arg;
			continue;
		}
		if (value == NULL)
			return kvcheck_usage();
		i++;
		if (strcmp(arg, "--nodes") == 0)
			k.nodes = value;
		else if (strcmp(arg, "--groups") == 0)
			k.groups_count = strtoull(value, NULL, 10);
		else if (strcmp(arg, "--timeout-ms") == 0)
			k.timeout_ms = atoi(value);
		else if (strcmp(arg, "--prefix") == 0)
			k.prefix = value;
		else if (strcmp(arg, "--keys") == 0)
			k.keys_count = (uint32_t)strtoul(value, NULL, 10);
		else if (strcmp(arg, "--ack") == 0)
			k.ack_path = value;
		else if (strcmp(arg, "--via") == 0)
			k.via = strtoull(value, NULL, 10);
		else if (strcmp(arg, "--group") == 0)
			k.group = strtoull(value, NULL, 10);
		else if (strcmp(arg, "--key") == 0)
			k.key = value;
		else
			return kvcheck_usage();
	}
	if (command == NULL || k.nodes == NULL || k.groups_count == 0 || k.groups_count > 1000000 ||
	    k.keys_count == 0 || k.timeout_ms <= 0)
		return kvcheck_usage();
	if (client_router_init(&k.router, k.nodes) != 0) {
		fprintf(stderr, "flotilla-kvcheck: bad --nodes '%s'\n", k.nodes);
		return 2;
	}
	if (strcmp(command, "put") == 0)
		rv = kvcheck_put(&k);
	else if (strcmp(command, "verify") == 0 && k.ack_path != NULL)
		rv = kvcheck_verify(&k);
	else if (strcmp(command, "local") == 0 && k.ack_path != NULL)
		rv = kvcheck_local(&k);
	else if (strcmp(command, "ops") == 0)
		rv = kvcheck_ops(&k);
	else if (strcmp(command, "stale") == 0 && k.via != 0)
		rv = kvcheck_stale(&k);
	else if (strcmp(command, "garbage") == 0 && k.via != 0)
		rv = kvcheck_garbage(&k);
	else if (strcmp(command, "leaders") == 0)
		rv = kvcheck_leaders(&k);
	else if (strcmp(command, "lead") == 0 && k.via != 0)
		rv = kvcheck_lead(&k);
	else if (strcmp(command, "diverge") == 0)
		rv = kvcheck_diverge(&k);
	else if (strcmp(command, "corrupt") == 0 && k.via != 0)
		rv = kvcheck_corrupt(&k);
	else if (strcmp(command, "absent") == 0 && k.key != NULL)
		rv = kvcheck_absent(&k);
	else
		rv = kvcheck_usage();
	client_router_deinit(&k.router);
	fflush(stdout);
	return rv;
}
