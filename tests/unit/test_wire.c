/* The wire codec: round trips, and refusal of every kind of malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shard/wire.h"

static uint8_t payload_a[] = "first entry";
static uint8_t payload_b[1000];

static struct raft_msg append_msg(struct raft_entry *entries)
{
	entries[0] = (struct raft_entry){.term = 3,
					 .index = 8,
					 .type = RAFT_ENTRY_NORMAL,
					 .size = sizeof(payload_a),
					 .data = payload_a};
	entries[1] = (struct raft_entry){.term = 4,
					 .index = 9,
					 .type = RAFT_ENTRY_NORMAL,
					 .size = sizeof(payload_b),
					 .data = payload_b};
	entries[2] = (struct raft_entry){.term = 4, .index = 10, .type = RAFT_ENTRY_NOOP};
	return (struct raft_msg){.group = 77,
				 .from = 1,
				 .to = 2,
				 .term = 4,
				 .log_term = 3,
				 .index = 7,
				 .commit = 6,
				 .context = 99,
				 .type = RAFT_MSG_APPEND,
				 .entries_count = 3,
				 .entries = entries};
}

/* An APPEND with entries survives encode and decode field by field. */
static void test_append_round_trips(void **state)
{
	struct raft_entry in[3], out[8];
	struct raft_msg msg = append_msg(in), got;
	struct raft_snapshot_meta snap;
	uint8_t buf[4096];
	size_t size, used = 0;

	(void)state;
	memset(payload_b, 0x5a, sizeof(payload_b));
	size = wire_msg_encode(&msg, buf);
	assert_int_equal(size, wire_msg_size(&msg));
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 8, &snap), 0);
	assert_int_equal(used, size);
	assert_int_equal(got.group, 77);
	assert_int_equal(got.term, 4);
	assert_int_equal(got.log_term, 3);
	assert_int_equal(got.index, 7);
	assert_int_equal(got.commit, 6);
	assert_int_equal(got.context, 99);
	assert_int_equal(got.entries_count, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(got.entries[i].index, in[i].index);
		assert_int_equal(got.entries[i].term, in[i].term);
		assert_int_equal(got.entries[i].size, in[i].size);
		if (in[i].size)
			assert_memory_equal(got.entries[i].data, in[i].data, in[i].size);
	}
}

/* A witness gets entry metadata without NORMAL payloads. */
static void test_metadata_flag_strips_payloads(void **state)
{
	struct raft_entry in[3], out[8];
	struct raft_msg msg = append_msg(in), got;
	uint8_t buf[4096];
	size_t used;

	(void)state;
	msg.flags = RAFT_MSG_FLAG_METADATA;
	assert_true(wire_msg_size(&msg) < 200);
	assert_int_equal(
	    wire_msg_decode(buf, wire_msg_encode(&msg, buf), &used, &got, out, 8, NULL), 0);
	assert_int_equal(got.entries[1].size, 0);
	assert_null(got.entries[1].data);
	assert_int_equal(got.entries[1].term, 4);
}

/* A SNAPSHOT carries its meta and membership. */
static void test_snapshot_round_trips(void **state)
{
	struct raft_snapshot_meta meta = {.index = 500, .term = 9}, got_meta;
	struct raft_msg msg = {.from = 1,
			       .to = 3,
			       .term = 9,
			       .type = RAFT_MSG_SNAPSHOT,
			       .snapshot = &meta},
			got;
	uint8_t buf[1024];
	size_t used;

	(void)state;
	raft_conf_add(&meta.conf, 1, RAFT_MEMBER_VOTER);
	raft_conf_add(&meta.conf, 3, RAFT_MEMBER_LEARNER);
	assert_int_equal(
	    wire_msg_decode(buf, wire_msg_encode(&msg, buf), &used, &got, NULL, 0, &got_meta), 0);
	assert_ptr_equal(got.snapshot, &got_meta);
	assert_int_equal(got_meta.index, 500);
	assert_int_equal(got_meta.conf.members_count, 2);
	assert_int_equal(raft_conf_role(&got_meta.conf, 3), RAFT_MEMBER_LEARNER);
}

/* Every truncation of a valid message is refused, never read past. */
static void test_truncated_messages_are_refused(void **state)
{
	struct raft_entry in[3], out[8];
	struct raft_msg msg = append_msg(in), got;
	struct raft_snapshot_meta snap;
	uint8_t buf[4096];
	size_t size, used;

	(void)state;
	size = wire_msg_encode(&msg, buf);
	for (size_t cut = 0; cut < size; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1); /* Exact size: ASan sees overreads. */

		memcpy(copy, buf, cut);
		assert_int_equal(wire_msg_decode(copy, cut, &used, &got, out, 8, &snap), -EPROTO);
		free(copy);
	}
}

/* Bad fields are refused: unknown type, entries on a non-APPEND, too many entries. */
static void test_bad_fields_are_refused(void **state)
{
	struct raft_entry in[3], out[2];
	struct raft_msg msg = append_msg(in), got;
	uint8_t buf[4096];
	size_t size, used;

	(void)state;
	size = wire_msg_encode(&msg, buf);
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 2, NULL), -E2BIG);
	buf[80] = RAFT_MSG_TYPE_COUNT;
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 2, NULL), -EPROTO);
	buf[80] = RAFT_MSG_HEARTBEAT;
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 2, NULL), -EPROTO);
	buf[80] = RAFT_MSG_APPEND;
	buf[82] = 2; /* reject is a boolean */
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 8, NULL), -EPROTO);
}

/* A check entry crosses the wire with its type and payload; an entry type
 * past the known ones is refused. */
static void test_check_entries_travel_and_unknown_types_are_refused(void **state)
{
	static const uint8_t check[24] = {1};
	struct raft_entry in[1] = {{.term = 5,
				    .index = 12,
				    .type = RAFT_ENTRY_CHECK,
				    .size = sizeof(check),
				    .data = check}};
	struct raft_msg msg = {.group = 3,
			       .from = 1,
			       .to = 2,
			       .term = 5,
			       .log_term = 5,
			       .index = 11,
			       .type = RAFT_MSG_APPEND,
			       .entries_count = 1,
			       .entries = in};
	struct raft_entry out[1];
	struct raft_msg got;
	uint8_t buf[512];
	size_t size, used;

	(void)state;
	size = wire_msg_encode(&msg, buf);
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 1, NULL), 0);
	assert_int_equal(got.entries_count, 1);
	assert_int_equal(out[0].type, RAFT_ENTRY_CHECK);
	assert_int_equal(out[0].size, sizeof(check));
	assert_memory_equal(out[0].data, check, sizeof(check));
	buf[88 + 8] = RAFT_ENTRY_CHECK + 1; /* The first entry's type. */
	assert_int_equal(wire_msg_decode(buf, size, &used, &got, out, 1, NULL), -EPROTO);
}

/* A frame's checksum catches any flipped bit; oversize and unknown kinds are refused. */
static void test_frame_checksum_and_limits(void **state)
{
	uint8_t frame[WIRE_FRAME_HEADER_SIZE + 64];
	struct wire_frame_header header;

	(void)state;
	memset(frame + WIRE_FRAME_HEADER_SIZE, 7, 64);
	wire_frame_seal(frame, WIRE_FRAME_RAFT, 64);
	assert_int_equal(wire_frame_header_decode(&header, frame), 0);
	assert_int_equal(wire_frame_verify(&header, frame + WIRE_FRAME_HEADER_SIZE), 0);
	for (int bit = 0; bit < 64 * 8; bit += 13) {
		frame[WIRE_FRAME_HEADER_SIZE + bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(wire_frame_verify(&header, frame + WIRE_FRAME_HEADER_SIZE),
				 -EBADMSG);
		frame[WIRE_FRAME_HEADER_SIZE + bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	frame[0] = 0xff, frame[1] = 0xff, frame[2] = 0xff, frame[3] = 0xff;
	assert_int_equal(wire_frame_header_decode(&header, frame), -EMSGSIZE);
	wire_frame_seal(frame, 42, 64);
	assert_int_equal(wire_frame_header_decode(&header, frame), -EPROTO);
}

/* Heartbeats and their replies travel as 40-byte beats; other messages never do. */
static void test_beats_round_trip_and_refuse_garbage(void **state)
{
	struct raft_msg hb = {.group = 9,
			      .from = 1,
			      .to = 2,
			      .term = 7,
			      .commit = 5,
			      .context = 123,
			      .type = RAFT_MSG_HEARTBEAT,
			      .flags = RAFT_MSG_FLAG_QUIESCE},
			got;
	struct raft_msg app = {.type = RAFT_MSG_APPEND};
	uint8_t beat[WIRE_BEAT_SIZE];

	(void)state;
	assert_true(wire_msg_is_beat(&hb));
	assert_false(wire_msg_is_beat(&app));
	wire_beat_encode(&hb, beat);
	assert_int_equal(wire_beat_decode(beat, 1, 2, &got), 0);
	assert_int_equal(got.group, 9);
	assert_int_equal(got.term, 7);
	assert_int_equal(got.commit, 5);
	assert_int_equal(got.context, 123);
	assert_int_equal(got.type, RAFT_MSG_HEARTBEAT);
	assert_int_equal(got.flags, RAFT_MSG_FLAG_QUIESCE);
	assert_int_equal(got.from, 1);
	assert_int_equal(got.to, 2);
	beat[32] = RAFT_MSG_APPEND; /* Only heartbeats may be beats. */
	assert_int_equal(wire_beat_decode(beat, 1, 2, &got), -EPROTO);
	beat[32] = RAFT_MSG_HEARTBEAT_RESP;
	beat[39] = 1; /* Padding must be zero. */
	assert_int_equal(wire_beat_decode(beat, 1, 2, &got), -EPROTO);
}

/* A chunk says whether its bytes are raw or LZ4-packed, and its body must
 * hold exactly the bytes it announces. */
static void test_chunk_round_trips_raw_and_packed(void **state)
{
	uint8_t body[WIRE_CHUNK_HEADER_SIZE + 64] = {0};
	struct wire_chunk raw = {7, 100, 3, 4096, 1 << 20, 0xabcdef, 64, 0};
	struct wire_chunk packed = {7, 100, 3, 8192, 1 << 20, 0xabcdef, 1000, 40};
	struct wire_chunk out;

	(void)state;
	wire_chunk_encode(&raw, body);
	assert_int_equal(wire_chunk_decode(&out, body, sizeof(body)), 0);
	assert_int_equal(out.len, 64);
	assert_int_equal(out.packed_len, 0);
	assert_int_equal(out.offset, 4096);
	assert_int_equal(wire_chunk_decode(&out, body, sizeof(body) - 1), -EPROTO);

	wire_chunk_encode(&packed, body);
	assert_int_equal(wire_chunk_decode(&out, body, WIRE_CHUNK_HEADER_SIZE + 40), 0);
	assert_int_equal(out.len, 1000);
	assert_int_equal(out.packed_len, 40);
	assert_int_equal(wire_chunk_decode(&out, body, WIRE_CHUNK_HEADER_SIZE + 64), -EPROTO);

	packed.len = 0; /* Packed bytes of nothing. */
	wire_chunk_encode(&packed, body);
	assert_int_equal(wire_chunk_decode(&out, body, WIRE_CHUNK_HEADER_SIZE + 40), -EPROTO);
	packed.len = 1000;
	packed.offset = (1 << 20) - 10; /* Past the end of the file. */
	wire_chunk_encode(&packed, body);
	assert_int_equal(wire_chunk_decode(&out, body, WIRE_CHUNK_HEADER_SIZE + 40), -EPROTO);
}

/* A handshake round trips, incarnation and flags included; a wrong magic,
 * version or checksum is refused. */
static void test_handshake(void **state)
{
	struct wire_handshake hs = {.version = WIRE_VERSION,
				    .cluster_id = 0xc1,
				    .node_id = 2,
				    .shard_index = 1,
				    .shard_count = 4,
				    .incarnation = 0xfeedfacecafebeefull,
				    .flags = WIRE_HANDSHAKE_REFUSED},
			      got;
	uint8_t buf[WIRE_HANDSHAKE_SIZE];

	(void)state;
	wire_handshake_encode(&hs, buf);
	assert_int_equal(wire_handshake_decode(&got, buf), 0);
	assert_int_equal(got.cluster_id, 0xc1);
	assert_int_equal(got.shard_count, 4);
	assert_int_equal(got.incarnation, 0xfeedfacecafebeefull);
	assert_int_equal(got.flags, WIRE_HANDSHAKE_REFUSED);
	buf[44] ^= 1; /* Incarnation bit: covered by the checksum too. */
	assert_int_equal(wire_handshake_decode(&got, buf), -EPROTO);
	buf[44] ^= 1;
	buf[9] ^= 1; /* Cluster id bit: the checksum catches it. */
	assert_int_equal(wire_handshake_decode(&got, buf), -EPROTO);
	hs.version = WIRE_VERSION + 1;
	wire_handshake_encode(&hs, buf);
	assert_int_equal(wire_handshake_decode(&got, buf), -EPROTO);
}

/* Random bytes never crash the decoder (a bounded in-test fuzz). */
static void test_random_bytes_never_crash(void **state)
{
	struct raft_entry out[16];
	struct raft_snapshot_meta snap;
	struct raft_msg got;
	uint64_t x = 88172645463325252ull;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t size = 1 + (size_t)(round % 300), used;
		uint8_t *buf = malloc(size);

		for (size_t i = 0; i < size; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		if (size >= 88) { /* Make some of them plausible headers. */
			buf[80] = (uint8_t)(1 + round % (RAFT_MSG_TYPE_COUNT - 1));
			buf[82] = buf[83] = 0;
			memset(buf + 85, 0, 3);
		}
		(void)wire_msg_decode(buf, size, &used, &got, out, 16, &snap);
		free(buf);
	}
}

/* Encode every APPEND of rd for node 2, decode it and step it into follower. */
static int deliver_appends(const struct raft_ready *rd, struct raft *follower)
{
	struct raft_entry out[16];
	struct raft_msg got;
	uint8_t buf[4096];
	size_t used;
	int delivered = 0;

	for (uint32_t i = 0; i < rd->msgs_count; i++) {
		if (rd->msgs[i].type != RAFT_MSG_APPEND || rd->msgs[i].to != 2)
			continue;
		assert_int_equal(wire_msg_decode(buf, wire_msg_encode(&rd->msgs[i], buf), &used,
						 &got, out, 16, NULL),
				 0);
		raft_step(follower, &got, 10000);
		delivered++;
	}
	return delivered;
}

/* A leader's real APPEND, through the codec, is accepted by a follower. */
static void test_engine_message_through_codec(void **state)
{
	struct raft leader, follower;
	struct raft_config config;
	struct raft_boot boot = {0};
	struct raft_ready rd;

	(void)state;
	raft_conf_add(&boot.snapshot.conf, 1, RAFT_MEMBER_VOTER);
	raft_conf_add(&boot.snapshot.conf, 2, RAFT_MEMBER_LEARNER);
	raft_config_default(&config, 1, 5);
	assert_int_equal(raft_init(&leader, &config, &boot, 0), 0);
	raft_config_default(&config, 2, 5);
	assert_int_equal(raft_init(&follower, &config, &boot, 0), 0);
	raft_tick(&leader, 10000); /* Sole voter: elects itself. */
	assert_true(raft_is_leader(&leader));
	raft_ready(&leader, &rd);
	assert_int_equal(deliver_appends(&rd, &follower), 1);
	assert_int_equal(raft_leader(&follower), 1);
	assert_int_equal(raft_last_index(&follower), raft_last_index(&leader));
	raft_deinit(&leader);
	raft_deinit(&follower);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_round_trips),
	    cmocka_unit_test(test_metadata_flag_strips_payloads),
	    cmocka_unit_test(test_snapshot_round_trips),
	    cmocka_unit_test(test_truncated_messages_are_refused),
	    cmocka_unit_test(test_bad_fields_are_refused),
	    cmocka_unit_test(test_check_entries_travel_and_unknown_types_are_refused),
	    cmocka_unit_test(test_frame_checksum_and_limits),
	    cmocka_unit_test(test_chunk_round_trips_raw_and_packed),
	    cmocka_unit_test(test_handshake),
	    cmocka_unit_test(test_beats_round_trip_and_refuse_garbage),
	    cmocka_unit_test(test_random_bytes_never_crash),
	    cmocka_unit_test(test_engine_message_through_codec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
