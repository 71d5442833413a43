/* The client protocol: codec limits, pipelined connections, router set-up. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/le.h"
#include "tools/client.h"

static unsigned char *encode(const struct client_request *req, uint32_t *size)
{
	unsigned char *buf;

	*size = client_request_size(req);
	assert_true(*size > 0);
	buf = malloc(*size);
	assert_non_null(buf);
	client_request_encode(req, buf);
	return buf;
}

static void test_requests_round_trip_for_every_op(void **state)
{
	static const char key[] = "key", expected[] = "old", value[] = "value";
	const struct client_request reqs[] = {
	    {.op = CLIENT_OP_PUT,
	     .request_id = 1,
	     .group = 9,
	     .key = key,
	     .key_size = 3,
	     .value = value,
	     .value_size = 5},
	    {.op = CLIENT_OP_GET, .request_id = 2, .group = 9, .key = key, .key_size = 3},
	    {.op = CLIENT_OP_DELETE, .request_id = 3, .group = 9, .key = key, .key_size = 3},
	    {.op = CLIENT_OP_CAS,
	     .request_id = 4,
	     .group = 9,
	     .key = key,
	     .key_size = 3,
	     .expected = expected,
	     .expected_size = 3,
	     .value = value,
	     .value_size = 5},
	    {.op = CLIENT_OP_CAS,
	     .request_id = 5,
	     .group = 9,
	     .key = key,
	     .key_size = 3,
	     .expected_size = CLIENT_ABSENT,
	     .value = value,
	     .value_size = 5},
	    {.op = CLIENT_OP_LEADER, .request_id = 6, .group = UINT64_MAX},
	    {.op = CLIENT_OP_LOCAL_GET, .request_id = 7, .group = 9, .key = key, .key_size = 3},
	    {.op = CLIENT_OP_JOIN, .request_id = 8, .group = 9},
	    {.op = CLIENT_OP_ADD_LEARNER, .request_id = 9, .group = 9, .member = 4},
	    {.op = CLIENT_OP_PROMOTE, .request_id = 10, .group = 9, .member = 4},
	    {.op = CLIENT_OP_REMOVE_MEMBER, .request_id = 11, .group = 9, .member = 1},
	    {.op = CLIENT_OP_TRANSFER, .request_id = 12, .group = 9, .member = UINT64_MAX},
	    {.op = CLIENT_OP_MEMBERS, .request_id = 13, .group = 9},
	    {.op = CLIENT_OP_DROP, .request_id = 14, .group = 9},
	    {.op = CLIENT_OP_STALE_GET,
	     .request_id = 15,
	     .group = 9,
	     .key = key,
	     .key_size = 3,
	     .behind_max = 7,
	     .age_max_ms = UINT64_MAX},
	    {.op = CLIENT_OP_NODE_STATUS, .request_id = 16, .group = 0},
	    {.op = CLIENT_OP_SNAPSHOT, .request_id = 17, .group = 9},
	    {.op = CLIENT_OP_ADD_WITNESS, .request_id = 18, .group = 9, .member = 4},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		const struct client_request *want = &reqs[i];
		struct client_request got;
		uint32_t size;
		unsigned char *buf = encode(want, &size);

		assert_int_equal(client_request_decode(buf, size, &got), (int)size);
		assert_int_equal(got.op, want->op);
		assert_int_equal(got.request_id, want->request_id);
		assert_int_equal(got.group, want->group);
		assert_int_equal(got.key_size, want->key_size);
		assert_int_equal(got.value_size, want->value_size);
		assert_int_equal(got.member, want->member);
		assert_int_equal(got.behind_max, want->behind_max);
		assert_int_equal(got.age_max_ms, want->age_max_ms);
		if (want->key_size > 0)
			assert_memory_equal(got.key, want->key, want->key_size);
		if (want->value_size > 0)
			assert_memory_equal(got.value, want->value, want->value_size);
		if (want->op == CLIENT_OP_CAS) {
			assert_int_equal(got.expected_size, want->expected_size);
			if (want->expected_size != CLIENT_ABSENT)
				assert_memory_equal(got.expected, want->expected, 3);
		}
		/* Every strict prefix asks for more bytes. */
		for (uint32_t cut = 0; cut < size; cut++)
			assert_int_equal(client_request_decode(buf, cut, &got), 0);
		free(buf);
	}
}

/* A membership op carries exactly 8 bytes of member id; the others none. */
/* A STALE_GET answer: the figures lead the value, and a STALE status
 * decodes like any other. */
static void test_stale_answer_round_trips(void **state)
{
	struct client_stale st = {.applied_index = 7,
				  .leader_commit = 19,
				  .entries_behind = 12,
				  .contact_age_ms = UINT64_MAX},
			    got;
	unsigned char value[CLIENT_STALE_SIZE + 2];
	unsigned char buf[CLIENT_RESPONSE_HEADER_SIZE + sizeof(value)];
	struct client_response resp = {.status = CLIENT_STATUS_STALE,
				       .request_id = 3,
				       .value = value,
				       .value_size = sizeof(value)},
			       back;

	(void)state;
	client_stale_encode(&st, value);
	memcpy(value + CLIENT_STALE_SIZE, "ab", 2);
	assert_int_equal(client_stale_decode(value, sizeof(value), &got), 0);
	assert_memory_equal(&got, &st, sizeof(st));
	assert_int_equal(client_stale_decode(value, CLIENT_STALE_SIZE - 1, &got), -EBADMSG);
	assert_int_equal(client_response_size(sizeof(value)), sizeof(buf));
	client_response_encode(&resp, buf);
	assert_int_equal(client_response_decode(buf, sizeof(buf), &back), (int)sizeof(buf));
	assert_int_equal(back.status, CLIENT_STATUS_STALE);
	assert_int_equal(back.value_size, sizeof(value));
}

/* GROUPS_FULL decodes; a status past the last one does not. */
static void test_groups_full_decodes(void **state)
{
	unsigned char buf[CLIENT_RESPONSE_HEADER_SIZE + 4];
	struct client_response resp = {.status = CLIENT_STATUS_GROUPS_FULL,
				       .request_id = 4,
				       .value = "full",
				       .value_size = 4},
			       back;

	(void)state;
	client_response_encode(&resp, buf);
	assert_int_equal(client_response_decode(buf, sizeof(buf), &back), (int)sizeof(buf));
	assert_int_equal(back.status, CLIENT_STATUS_GROUPS_FULL);
	assert_memory_equal(back.value, "full", 4);
	le_put32(buf + 4, CLIENT_STATUS_LAST + 1);
	assert_int_equal(client_response_decode(buf, sizeof(buf), &back), -EBADMSG);
}

static void test_membership_bodies_are_exact(void **state)
{
	struct client_request req = {
	    .op = CLIENT_OP_PROMOTE, .request_id = 5, .group = 2, .member = 0x0102030405060708};
	struct client_request got;
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	assert_int_equal(size, 32);
	assert_int_equal(buf[24], 0x08); /* Little-endian. */
	assert_int_equal(buf[31], 0x01);
	le_put32(buf, 20 + 7); /* A member id one byte short. */
	assert_int_equal(client_request_decode(buf, size - 1, &got), -EBADMSG);
	le_put32(buf, 20 + 8);
	le_put32(buf + 4, CLIENT_OP_MEMBERS); /* MEMBERS takes no body. */
	assert_int_equal(client_request_decode(buf, size, &got), -EBADMSG);
	free(buf);
}

/* A MEMBERS value decodes to what was encoded; a wrong size or count is refused. */
static void test_members_value_round_trips(void **state)
{
	struct client_members m = {.leader = 2,
				   .term = 7,
				   .commit_index = 100,
				   .last_index = 101,
				   .conf_index = 90,
				   .flags = CLIENT_MEMBERS_LEADER | CLIENT_MEMBERS_JOINT,
				   .members_count = 3,
				   .members = {{1, 100, CLIENT_ROLE_NONE, CLIENT_ROLE_VOTER},
					       {2, 101, CLIENT_ROLE_VOTER, CLIENT_ROLE_VOTER},
					       {4, 95, CLIENT_ROLE_VOTER, CLIENT_ROLE_LEARNER}}};
	unsigned char buf[CLIENT_MEMBERS_HEADER_SIZE + CLIENT_MEMBER_SIZE * CLIENT_MEMBERS_MAX];
	struct client_members got;
	uint32_t size = client_members_size(&m);

	(void)state;
	assert_int_equal(size, 48 + 3 * 24);
	client_members_encode(&m, buf);
	assert_int_equal(client_members_decode(buf, size, &got), 0);
	assert_memory_equal(&got, &m, sizeof(m));
	assert_int_equal(client_members_role(&got, 4), CLIENT_ROLE_VOTER);
	assert_int_equal(client_members_role(&got, 1), CLIENT_ROLE_NONE);
	assert_int_equal(client_members_role(&got, 9), CLIENT_ROLE_NONE);
	assert_int_equal(client_members_decode(buf, size - 1, &got), -EBADMSG);
	assert_int_equal(client_members_decode(buf, 47, &got), -EBADMSG);
	le_put32(buf + 44, CLIENT_MEMBERS_MAX + 1);
	assert_int_equal(client_members_decode(buf, sizeof(buf), &got), -EBADMSG);
	assert_int_equal(got.members_count, 0);
}

/* The operator ops (40 and up) take no body and have names; 19 to 39 are
 * not ops. */
static void test_operator_ops_take_no_body(void **state)
{
	struct client_request req = {.op = CLIENT_OP_SNAPSHOT, .request_id = 3, .group = 2};
	struct client_request got;
	struct client_refusal why;
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	assert_int_equal(size, 24);
	assert_string_equal(client_op_name(CLIENT_OP_NODE_STATUS), "NODE_STATUS");
	assert_string_equal(client_op_name(CLIENT_OP_SNAPSHOT), "SNAPSHOT");
	assert_null(client_op_name(39));
	assert_string_equal(client_op_name(42), "PEERS"); /* The address book's ops, 42 to 44. */
	assert_null(client_op_name(99));
	free(buf);
	buf = calloc(1, 32);
	assert_non_null(buf);
	le_put32(buf, 20 + 8); /* SNAPSHOT with a body of 8 bytes. */
	le_put32(buf + 4, CLIENT_OP_SNAPSHOT);
	assert_int_equal(client_request_decode_why(buf, 32, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "SNAPSHOT takes no body, got 8 bytes");
	le_put32(buf + 4, 39);
	assert_int_equal(client_request_decode(buf, 32, &got), -EBADMSG);
	free(buf);
}

/* ADD_WITNESS (op 46) is a membership op: its body is the member's id,
 * 8 bytes at offset 24, and nothing else. */
static void test_add_witness_takes_a_member(void **state)
{
	struct client_request req = {
	    .op = CLIENT_OP_ADD_WITNESS, .request_id = 5, .group = 2, .member = 7};
	struct client_request got;
	struct client_refusal why;
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	assert_int_equal(CLIENT_OP_ADD_WITNESS, 46);
	assert_int_equal(size, 32);
	assert_int_equal(le_get32(buf + 4), 46);
	assert_int_equal(le_get64(buf + 24), 7);
	assert_string_equal(client_op_name(CLIENT_OP_ADD_WITNESS), "ADD_WITNESS");
	le_put32(buf, 20); /* No body. */
	assert_int_equal(client_request_decode_why(buf, 24, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "ADD_WITNESS takes an 8-byte body (member), got 0 bytes");
	free(buf);
}

/* SET_PEER and REMOVE_PEER round-trip; a SET_PEER whose addr_size
 * disagrees with its body closes, an empty address keeps the connection;
 * a PEERS value round-trips and a truncated one is refused. */
static void test_peer_ops_round_trip(void **state)
{
	struct client_request set = {
	    .op = CLIENT_OP_SET_PEER, .request_id = 5, .member = 4, .key = "h:1", .key_size = 3};
	struct client_request rm = {.op = CLIENT_OP_REMOVE_PEER, .request_id = 6, .member = 4};
	struct client_peer peers[2] = {
	    {.id = 1, .flags = CLIENT_PEER_SELF, .addr = "a:1"},
	    {.id = 4, .flags = CLIENT_PEER_CONNECTED_OUT, .addr = "b:2", .client_addr = "b:3"}};
	struct client_peer back[2];
	struct client_request got;
	struct client_refusal why;
	unsigned char value[CLIENT_PEERS_SIZE_MAX(2)];
	uint32_t size, count;
	unsigned char *buf = encode(&set, &size);

	(void)state;
	assert_int_equal(size, 24 + 12 + 3);
	assert_int_equal(le_get64(buf + 24), 4);
	assert_int_equal(le_get32(buf + 32), 3);
	assert_memory_equal(buf + 36, "h:1", 3);
	assert_int_equal(client_request_decode(buf, size, &got), (int)size);
	assert_int_equal(got.member, 4);
	assert_int_equal(got.key_size, 3);
	assert_memory_equal(got.key, "h:1", 3);
	le_put32(buf + 32, 4); /* addr_size past the body: out of step. */
	assert_int_equal(client_request_decode_why(buf, size, &got, &why), -EBADMSG);
	assert_int_equal(why.skip, 0);
	free(buf);
	set.key_size = 0;
	buf = encode(&set, &size);
	assert_int_equal(client_request_decode_why(buf, size, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "SET_PEER address of 0 bytes: it takes 1 to 255");
	free(buf);
	buf = encode(&rm, &size);
	assert_int_equal(size, 32);
	assert_int_equal(client_request_decode(buf, size, &got), 32);
	assert_int_equal(got.op, CLIENT_OP_REMOVE_PEER);
	assert_int_equal(got.member, 4);
	free(buf);
	size = client_peers_encode(peers, 2, value);
	assert_int_equal(size, 8 + 16 + 3 + 16 + 6);
	assert_int_equal(client_peers_decode(value, size, back, 2, &count), 0);
	assert_int_equal(count, 2);
	assert_memory_equal(back, peers, sizeof(peers));
	assert_int_equal(client_peers_decode(value, size - 1, back, 2, &count), -EBADMSG);
	assert_int_equal(client_peers_decode(value, 7, back, 2, &count), -EBADMSG);
}

/* A NODE_STATUS value decodes to what was encoded, field by field at its
 * offset; a short value is refused, a longer one (a newer node's) is read. */
static void test_node_status_value_round_trips(void **state)
{
	struct client_node_status st = {.node_id = 3,
					.groups = 1000,
					.leaders = 333,
					.leaderless = 2,
					.repairing = 1,
					.checks = 77,
					.divergences = 1,
					.lag_max = 12345,
					.writes_refused_no_space = 9,
					.shards_count = 4,
					.shards_no_space = 1};
	unsigned char buf[CLIENT_NODE_STATUS_SIZE + 8] = {0};
	struct client_node_status got;

	(void)state;
	client_node_status_encode(&st, buf);
	assert_int_equal(le_get64(buf), 3);
	assert_int_equal(le_get64(buf + 56), 12345);
	assert_int_equal(le_get32(buf + 72), 4);
	assert_int_equal(le_get32(buf + 76), 1);
	assert_int_equal(client_node_status_decode(buf, CLIENT_NODE_STATUS_SIZE, &got), 0);
	assert_memory_equal(&got, &st, sizeof(st));
	assert_int_equal(client_node_status_decode(buf, sizeof(buf), &got), 0);
	assert_memory_equal(&got, &st, sizeof(st));
	assert_int_equal(client_node_status_decode(buf, CLIENT_NODE_STATUS_SIZE - 1, &got),
			 -EBADMSG);
	assert_int_equal(got.node_id, 0);
}

static void test_put_layout_is_byte_exact(void **state)
{
	struct client_request req = {.op = CLIENT_OP_PUT,
				     .request_id = 0x0102030405060708,
				     .group = 5,
				     .key = "ab",
				     .key_size = 2,
				     .value = "xyz",
				     .value_size = 3};
	static const unsigned char want[] = {
	    33,  0,   0,   0,                /* size: 4 + 8 + 8 + 4 + 4 + 2 + 3 */
	    1,   0,   0,   0,                /* op PUT */
	    8,   7,   6,   5,   4,  3, 2, 1, /* request_id */
	    5,   0,   0,   0,   0,  0, 0, 0, /* group */
	    2,   0,   0,   0,   3,  0, 0, 0, /* key_size, value_size */
	    'a', 'b', 'x', 'y', 'z'};
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	assert_int_equal(size, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	free(buf);
}

static void test_oversized_requests_fail_from_the_size_field(void **state)
{
	unsigned char buf[4];
	struct client_request got;

	(void)state;
	le_put32(buf, CLIENT_REQUEST_SIZE_MAX + 1);
	assert_int_equal(client_request_decode(buf, sizeof(buf), &got), -EBADMSG);
	le_put32(buf, 19); /* Shorter than op, request_id and group. */
	assert_int_equal(client_request_decode(buf, sizeof(buf), &got), -EBADMSG);
	le_put32(buf, CLIENT_REQUEST_SIZE_MAX);
	assert_int_equal(client_request_decode(buf, sizeof(buf), &got), 0);
}

static void test_malformed_bodies_are_rejected_with_their_id(void **state)
{
	struct client_request req = {
	    .op = CLIENT_OP_GET, .request_id = 77, .group = 1, .key = "key", .key_size = 3};
	struct client_request got;
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	le_put32(buf + 4, 99); /* Unknown op. */
	assert_int_equal(client_request_decode(buf, size, &got), -EBADMSG);
	assert_int_equal(got.request_id, 77);
	le_put32(buf + 4, CLIENT_OP_GET);
	le_put32(buf + 24, 4); /* key_size past the body. */
	assert_int_equal(client_request_decode(buf, size, &got), -EBADMSG);
	le_put32(buf + 24, 2); /* key_size short of the body. */
	assert_int_equal(client_request_decode(buf, size, &got), -EBADMSG);
	le_put32(buf + 24, 3);
	le_put32(buf + 4, CLIENT_OP_LEADER); /* LEADER takes no body. */
	assert_int_equal(client_request_decode(buf, size, &got), -EBADMSG);
	free(buf);
}

static void test_keys_over_the_limit_are_refused(void **state)
{
	static unsigned char key[CLIENT_KEY_SIZE_MAX + 1];
	struct client_request req = {.op = CLIENT_OP_GET, .key = key, .key_size = sizeof(key)};
	uint32_t size;
	unsigned char *buf;
	struct client_request got;

	(void)state;
	assert_int_equal(client_request_size(&req), 0);
	req.key_size = CLIENT_KEY_SIZE_MAX;
	buf = encode(&req, &size);
	assert_int_equal(client_request_decode(buf, size, &got), (int)size);
	free(buf);
	/* A hand-made request with a larger key. */
	buf = calloc(1, CLIENT_REQUEST_HEADER_SIZE + 4 + sizeof(key));
	assert_non_null(buf);
	le_put32(buf, CLIENT_REQUEST_HEADER_SIZE + sizeof(key));
	le_put32(buf + 4, CLIENT_OP_GET);
	le_put32(buf + 24, sizeof(key));
	assert_int_equal(
	    client_request_decode(buf, CLIENT_REQUEST_HEADER_SIZE + 4 + sizeof(key), &got),
	    -EBADMSG);
	free(buf);
}

/* Each refusal names the field and the limit, and says whether the stream
 * can go on: only a well-framed request refused for its content can. */
static void test_refusals_say_why_and_whether_to_close(void **state)
{
	static unsigned char key[CLIENT_KEY_SIZE_MAX + 1];
	struct client_request req = {
	    .op = CLIENT_OP_GET, .request_id = 5, .group = 1, .key = "key", .key_size = 3};
	struct client_request got;
	struct client_refusal why;
	uint32_t size, big = CLIENT_REQUEST_HEADER_SIZE + 4 + sizeof(key);
	unsigned char *buf = encode(&req, &size);
	unsigned char *huge = calloc(1, big);

	(void)state;
	assert_non_null(huge);
	le_put32(buf + 4, 77);
	assert_int_equal(client_request_decode_why(buf, size, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "unknown op 77 (ops are 1 to 19 and 40 to 46)");
	assert_int_equal(why.skip, 0);
	le_put32(buf + 4, CLIENT_OP_GET);
	le_put32(buf + 24, 2);
	assert_int_equal(client_request_decode_why(buf, size, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "GET body of 7 bytes, but key_size 2 makes 6");
	assert_int_equal(why.skip, 0);
	le_put32(buf, CLIENT_REQUEST_SIZE_MAX + 1);
	assert_int_equal(client_request_decode_why(buf, 4, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "request size 16777217 exceeds the 16777216-byte limit");
	assert_int_equal(why.skip, 0);
	le_put32(huge, big - 4);
	le_put32(huge + 4, CLIENT_OP_GET);
	le_put32(huge + 24, sizeof(key));
	assert_int_equal(client_request_decode_why(huge, big, &got, &why), -EBADMSG);
	assert_string_equal(why.text, "key of 65537 bytes exceeds the 65536-byte limit");
	assert_int_equal(why.skip, big);
	free(huge);
	free(buf);
}

static void test_responses_round_trip(void **state)
{
	struct client_response resp = {.status = CLIENT_STATUS_CAS_MISMATCH,
				       .request_id = 12,
				       .leader_hint = 3,
				       .value = "now",
				       .value_size = 3};
	unsigned char buf[64];
	struct client_response got;
	uint32_t size = client_response_size(3);

	(void)state;
	assert_int_equal(size, CLIENT_RESPONSE_HEADER_SIZE + 3);
	client_response_encode(&resp, buf);
	assert_int_equal(client_response_decode(buf, size, &got), (int)size);
	assert_int_equal(got.status, resp.status);
	assert_int_equal(got.request_id, 12);
	assert_int_equal(got.leader_hint, 3);
	assert_int_equal(got.value_size, 3);
	assert_memory_equal(got.value, "now", 3);
	for (uint32_t cut = 0; cut < size; cut++)
		assert_int_equal(client_response_decode(buf, cut, &got), 0);
	le_put32(buf + 24, 4); /* value_size disagrees with size. */
	assert_int_equal(client_response_decode(buf, size, &got), -EBADMSG);
}

/* RECOVER (op 45): a 4-byte flags body, exact; its answer's value round
 * trips; a REFUSED answer decodes. */
static void test_recover_request_and_answer_round_trip(void **state)
{
	struct client_request req = {
	    .op = CLIENT_OP_RECOVER, .request_id = 9, .group = 3, .flags = CLIENT_RECOVER_FORCE};
	struct client_recover rep = {.term_before = 7,
				     .term = 9,
				     .commit_before = 1200,
				     .last_before = 1203,
				     .conf_index = 1204,
				     .dropped_count = 2,
				     .dropped = {2, 3}};
	struct client_response resp = {
	    .status = CLIENT_STATUS_REFUSED, .request_id = 9, .value = "quorum", .value_size = 6};
	unsigned char value[CLIENT_RECOVER_HEADER_SIZE + 8 * CLIENT_MEMBERS_MAX], answer[64];
	struct client_response back;
	struct client_request got;
	struct client_recover got_rep;
	uint32_t size;
	unsigned char *buf = encode(&req, &size);

	(void)state;
	assert_int_equal(size, 28);
	assert_int_equal(client_request_decode(buf, size, &got), (int)size);
	assert_int_equal(got.op, CLIENT_OP_RECOVER);
	assert_int_equal(got.flags, CLIENT_RECOVER_FORCE);
	assert_string_equal(client_op_name(CLIENT_OP_RECOVER), "RECOVER");
	le_put32(buf, 20 + 3); /* Flags one byte short. */
	assert_int_equal(client_request_decode(buf, size - 1, &got), -EBADMSG);
	free(buf);

	assert_int_equal(client_recover_size(&rep), 48 + 2 * 8);
	client_recover_encode(&rep, value);
	assert_int_equal(le_get64(value + 16), 1200); /* commit_before at 16 (28 in the answer). */
	assert_int_equal(client_recover_decode(value, client_recover_size(&rep), &got_rep), 0);
	assert_memory_equal(&got_rep, &rep, sizeof(rep));
	assert_int_equal(client_recover_decode(value, client_recover_size(&rep) - 1, &got_rep),
			 -EBADMSG);
	le_put32(value + 40, CLIENT_MEMBERS_MAX + 1);
	assert_int_equal(client_recover_decode(value, sizeof(value), &got_rep), -EBADMSG);

	client_response_encode(&resp, answer);
	assert_int_equal(client_response_decode(answer, client_response_size(6), &back),
			 (int)client_response_size(6));
	assert_int_equal(back.status, CLIENT_STATUS_REFUSED);
}

/* Random bytes never make the decoder read out of bounds (run under ASan). */
static void test_random_bytes_decode_safely(void **state)
{
	uint64_t seed = 7;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		unsigned char *buf;
		struct client_request req;
		uint32_t size;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		size = (uint32_t)(seed >> 58); /* 0..63 bytes */
		buf = malloc(size + 1);
		assert_non_null(buf);
		for (uint32_t i = 0; i < size; i++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			buf[i] = (unsigned char)(seed >> 56);
		}
		if (size >= 4 && (seed & 1) != 0)
			le_put32(buf, size - 4); /* Often a plausible size field. */
		if (size >= 8 && (seed & 2) != 0)
			le_put32(buf + 4, (uint32_t)(seed >> 8) % 7);
		if (client_request_decode(buf, size, &req) > 0) {
			if (req.key_size > 0)
				assert_true((const unsigned char *)req.key + req.key_size <=
					    buf + size);
			if (req.value_size > 0)
				assert_true((const unsigned char *)req.value + req.value_size <=
					    buf + size);
		}
		free(buf);
	}
}

/* Many requests queued on one connection reach the other end intact; the
 * answers, sent back in reverse, are all matched by id. */
static void test_pipelined_requests_and_out_of_order_answers(void **state)
{
	enum { COUNT = 200 };
	struct client c = {.fd = -1};
	int fds[2];
	unsigned char *server_in = malloc(1 << 20);
	size_t server_in_size = 0;
	bool seen[COUNT] = {false};
	int off = 0;

	(void)state;
	assert_non_null(server_in);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
	c.fd = fds[0];
	for (uint64_t i = 0; i < COUNT; i++) {
		struct client_request req = {.op = CLIENT_OP_PUT,
					     .request_id = i,
					     .group = i % 7,
					     .key = "k",
					     .key_size = 1,
					     .value = &i,
					     .value_size = sizeof(i)};

		assert_int_equal(client_send(&c, &req), 0);
	}
	assert_int_equal(client_flush(&c), 0);
	for (int tries = 0; tries < 1000; tries++) {
		ssize_t n = read(fds[1], server_in + server_in_size, (1 << 20) - server_in_size);

		if (n <= 0)
			break;
		server_in_size += (size_t)n;
	}
	for (int i = 0; i < COUNT; i++) {
		struct client_request req;
		int n = client_request_decode(server_in + off, server_in_size - (size_t)off, &req);

		assert_true(n > 0);
		assert_int_equal(req.request_id, (uint64_t)i);
		assert_memory_equal(req.value, &req.request_id, sizeof(uint64_t));
		off += n;
	}
	assert_int_equal((size_t)off, server_in_size);
	for (int i = COUNT - 1; i >= 0; i--) {
		struct client_response resp = {.status = CLIENT_STATUS_OK,
					       .request_id = (uint64_t)i,
					       .value = &i,
					       .value_size = sizeof(i)};
		unsigned char buf[64];

		client_response_encode(&resp, buf);
		assert_int_equal(write(fds[1], buf, client_response_size(sizeof(i))),
				 (ssize_t)client_response_size(sizeof(i)));
	}
	for (int i = 0; i < COUNT; i++) {
		struct client_response resp;
		int value;

		assert_int_equal(client_wait(&c, &resp, 1000), 0);
		assert_true(resp.request_id < COUNT && !seen[resp.request_id]);
		seen[resp.request_id] = true;
		memcpy(&value, resp.value, sizeof(value));
		assert_int_equal((uint64_t)value, resp.request_id);
	}
	client_close(&c);
	close(fds[1]);
	free(server_in);
}

static void test_router_parses_node_lists(void **state)
{
	struct client_router r;

	(void)state;
	assert_int_equal(client_router_init(&r, "127.0.0.1:7001,127.0.0.1:7003"), 0);
	assert_int_equal(r.nodes_count, 2);
	assert_int_equal(r.nodes[1].id, 2);
	assert_string_equal(r.nodes[1].addr, "127.0.0.1:7003");
	assert_int_equal(client_router_leader(&r, 5), 0);
	client_router_set_leader(&r, 5, 2);
	assert_int_equal(client_router_leader(&r, 5), 2);
	assert_int_equal(client_router_leader(&r, 5 + r.leaders_slots), 0);
	client_router_deinit(&r);
	assert_int_equal(client_router_init(&r, "3=127.0.0.1:1,7=127.0.0.1:2"), 0);
	assert_int_equal(r.nodes[0].id, 3);
	assert_int_equal(r.nodes[1].id, 7);
	client_router_deinit(&r);
	assert_int_equal(client_router_init(&r, ""), -EINVAL);
	assert_int_equal(client_router_init(&r, "1=a:1,1=b:2"), -EINVAL);
	assert_int_equal(client_router_init(&r, "x=a:1"), -EINVAL);
}

/* Nobody listens on the port: connect fails at once, without a crash. */
static void test_connect_to_a_closed_port_fails(void **state)
{
	struct client c;
	struct client_router r;
	struct client_call call = {.req = {.op = CLIENT_OP_LEADER, .group = 1}};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	char text[64];

	(void)state;
	/* Bind a port and never listen on it: connections to it are refused. */
	assert_int_equal(client_parse_addr("127.0.0.1:0", &addr), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
	snprintf(text, sizeof(text), "127.0.0.1:%u", ntohs(addr.sin_port));
	assert_int_equal(client_connect(&c, text, 1000), -ECONNREFUSED);
	assert_int_equal(c.fd, -1);
	assert_int_equal(client_connect(&c, "no-port", 1000), -EINVAL);
	assert_int_equal(client_router_init(&r, text), 0);
	assert_int_equal(client_router_run(&r, &call, 1, true, 100), 0);
	assert_int_equal(call.rv, -ETIMEDOUT);
	client_call_clear(&call);
	client_router_deinit(&r);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_requests_round_trip_for_every_op),
	    cmocka_unit_test(test_membership_bodies_are_exact),
	    cmocka_unit_test(test_members_value_round_trips),
	    cmocka_unit_test(test_stale_answer_round_trips),
	    cmocka_unit_test(test_groups_full_decodes),
	    cmocka_unit_test(test_operator_ops_take_no_body),
	    cmocka_unit_test(test_add_witness_takes_a_member),
	    cmocka_unit_test(test_node_status_value_round_trips),
	    cmocka_unit_test(test_peer_ops_round_trip),
	    cmocka_unit_test(test_put_layout_is_byte_exact),
	    cmocka_unit_test(test_oversized_requests_fail_from_the_size_field),
	    cmocka_unit_test(test_malformed_bodies_are_rejected_with_their_id),
	    cmocka_unit_test(test_keys_over_the_limit_are_refused),
	    cmocka_unit_test(test_refusals_say_why_and_whether_to_close),
	    cmocka_unit_test(test_responses_round_trip),
	    cmocka_unit_test(test_recover_request_and_answer_round_trip),
	    cmocka_unit_test(test_random_bytes_decode_safely),
	    cmocka_unit_test(test_pipelined_requests_and_out_of_order_answers),
	    cmocka_unit_test(test_router_parses_node_lists),
	    cmocka_unit_test(test_connect_to_a_closed_port_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
