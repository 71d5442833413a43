/* The WAL segment format: records and headers round-trip, and any damage
 * is detected without reading outside the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "io/segment.h"

#define SEQ 7

/* Encode an ENTRIES record of three entries into buf; returns its size. */
static uint32_t put_entries(uint8_t *buf)
{
	static const char *datas[] = {"alpha", "", "gamma-gamma"};
	uint32_t sizes[] = {5, 0, 11}, data_size = 16;
	struct segment_record record = {.group = 42,
					.first_index = 100,
					.term = 3,
					.batch = 9,
					.type = SEGMENT_RECORD_ENTRIES,
					.size = segment_entries_payload_size(3, data_size)};
	uint8_t *payload = buf + SEGMENT_RECORD_HEADER_SIZE, *data;

	segment_record_put(buf, &record);
	segment_entries_put_count(payload, 3);
	data = payload + SEGMENT_ENTRIES_FIXED_SIZE + 3 * SEGMENT_ENTRY_META_SIZE;
	for (uint32_t i = 0; i < 3; i++) {
		segment_entries_put_meta(payload, i, sizes[i], i + 10);
		memcpy(data, datas[i], sizes[i]);
		data += sizes[i];
	}
	segment_record_seal(buf, SEQ);
	return segment_record_size(record.size);
}

static void test_entries_record_round_trips(void **state)
{
	uint8_t buf[256] = {0};
	uint32_t size = put_entries(buf), entry_size, type;
	struct segment_record record;
	struct segment_entries cursor;
	const uint8_t *data;

	(void)state;
	assert_int_equal(size % 8, 0);
	assert_int_equal(segment_record_get(buf, size, SEQ, &record), 0);
	assert_int_equal(record.group, 42);
	assert_int_equal(record.first_index, 100);
	assert_int_equal(record.term, 3);
	assert_int_equal(record.batch, 9);
	segment_entries_init(&cursor, &record);
	assert_int_equal(cursor.count, 3);
	assert_true(segment_entries_next(&cursor, &entry_size, &type, &data));
	assert_int_equal(entry_size, 5);
	assert_int_equal(type, 10);
	assert_memory_equal(data, "alpha", 5);
	assert_true(segment_entries_next(&cursor, &entry_size, &type, &data));
	assert_int_equal(entry_size, 0);
	assert_true(segment_entries_next(&cursor, &entry_size, &type, &data));
	assert_memory_equal(data, "gamma-gamma", 11);
	assert_false(segment_entries_next(&cursor, &entry_size, &type, &data));
}

static void test_hard_and_mark_records_round_trip(void **state)
{
	uint8_t buf[128] = {0};
	struct segment_record hard = {
	    .group = 1, .type = SEGMENT_RECORD_HARD, .size = SEGMENT_HARD_SIZE, .batch = 2};
	struct segment_record mark = {.group = 1,
				      .first_index = 50,
				      .term = 4,
				      .type = SEGMENT_RECORD_MARK,
				      .flags = SEGMENT_MARK_KEEP};
	struct segment_record out;
	uint64_t term, vote, commit;

	(void)state;
	segment_record_put(buf, &hard);
	segment_hard_put(buf + SEGMENT_RECORD_HEADER_SIZE, 5, 2, 99);
	segment_record_seal(buf, SEQ);
	assert_int_equal(segment_record_get(buf, sizeof(buf), SEQ, &out), 0);
	segment_hard_get(out.payload, &term, &vote, &commit);
	assert_int_equal(term, 5);
	assert_int_equal(vote, 2);
	assert_int_equal(commit, 99);
	segment_record_put(buf, &mark);
	segment_record_seal(buf, SEQ);
	assert_int_equal(segment_record_get(buf, sizeof(buf), SEQ, &out), 0);
	assert_int_equal(out.first_index, 50);
	assert_int_equal(out.flags, SEGMENT_MARK_KEEP);
}

/* Every single-bit flip anywhere in a record is caught. */
static void test_every_bit_flip_is_detected(void **state)
{
	uint8_t buf[256] = {0};
	uint32_t size = put_entries(buf);
	struct segment_record record;

	(void)state;
	for (uint32_t bit = 0; bit < (SEGMENT_RECORD_HEADER_SIZE + 48) * 8 && bit / 8 < size;
	     bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		/* Padding bytes are not covered; everything before them is. */
		if (bit / 8 < SEGMENT_RECORD_HEADER_SIZE + segment_entries_payload_size(3, 16))
			assert_int_equal(segment_record_get(buf, size, SEQ, &record),
					 WAL_ERR_CORRUPT);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(segment_record_get(buf, size, SEQ, &record), 0);
}

/* A record from another segment (another seed) does not verify: what a
 * recycled file still holds is never taken for a record. */
static void test_record_of_another_segment_is_rejected(void **state)
{
	uint8_t buf[256] = {0};
	uint32_t size = put_entries(buf);
	struct segment_record record;

	(void)state;
	assert_int_equal(segment_record_get(buf, size, SEQ + 1, &record), WAL_ERR_CORRUPT);
}

/* Garbage sizes and truncated buffers are rejected without reading past
 * the buffer (the sanitizer builds check the "without"). */
static void test_implausible_headers_are_rejected(void **state)
{
	uint8_t *buf = malloc(SEGMENT_RECORD_HEADER_SIZE);
	struct segment_record record;
	uint8_t full[256] = {0};
	uint32_t size = put_entries(full), huge = 0xfffffff0u;

	(void)state;
	memcpy(buf, full, SEGMENT_RECORD_HEADER_SIZE);
	assert_int_equal(segment_record_get(buf, SEGMENT_RECORD_HEADER_SIZE, SEQ, &record),
			 WAL_ERR_CORRUPT);
	memcpy(buf + 40, &huge, 4);
	assert_int_equal(segment_record_get(buf, SEGMENT_RECORD_HEADER_SIZE, SEQ, &record),
			 WAL_ERR_CORRUPT);
	assert_int_equal(segment_record_get(full, 10, SEQ, &record), WAL_ERR_CORRUPT);
	assert_int_equal(segment_record_get(full, size - 8, SEQ, &record), WAL_ERR_CORRUPT);
	memset(buf, 0, SEGMENT_RECORD_HEADER_SIZE);
	assert_int_equal(segment_record_get(buf, SEGMENT_RECORD_HEADER_SIZE, SEQ, &record),
			 WAL_ERR_CORRUPT);
	free(buf);
}

/* An ENTRIES payload whose sizes do not add up is rejected even with a
 * valid checksum (a writer bug must not make a reader overrun). */
static void test_inconsistent_entries_payload_is_rejected(void **state)
{
	uint8_t buf[256] = {0};
	uint32_t size = put_entries(buf);
	struct segment_record record;

	(void)state;
	segment_entries_put_meta(buf + SEGMENT_RECORD_HEADER_SIZE, 1, 200, 0);
	segment_record_seal(buf, SEQ);
	assert_int_equal(segment_record_get(buf, size, SEQ, &record), WAL_ERR_CORRUPT);
}

/* A batch's END record has no payload and no group; one claiming a payload
 * is implausible. */
static void test_end_record_round_trips_and_has_no_payload(void **state)
{
	uint8_t buf[64] = {0};
	struct segment_record record = {.type = SEGMENT_RECORD_END, .batch = 7}, out;

	(void)state;
	segment_record_put(buf, &record);
	segment_record_seal(buf, SEQ);
	assert_int_equal(segment_record_size(0), SEGMENT_RECORD_HEADER_SIZE);
	assert_int_equal(segment_record_get(buf, SEGMENT_RECORD_HEADER_SIZE, SEQ, &out), 0);
	assert_int_equal(out.type, SEGMENT_RECORD_END);
	assert_int_equal(out.batch, 7);
	assert_string_equal(segment_record_type_name(out.type), "end");
	record.size = 8;
	segment_record_put(buf, &record);
	segment_record_seal(buf, SEQ);
	assert_int_equal(segment_record_get(buf, sizeof(buf), SEQ, &out), WAL_ERR_CORRUPT);
}

static void test_segment_header_round_trips_and_detects_damage(void **state)
{
	struct segment_header in = {.seq = 12,
				    .size = 1 << 20,
				    .prev_end = 5000,
				    .prev_seq = 11,
				    .first_batch = 77,
				    .batch_size_max = 65536};
	struct segment_header out;
	uint8_t buf[SEGMENT_HEADER_SIZE];

	(void)state;
	segment_header_put(buf, &in);
	assert_int_equal(segment_header_get(buf, &out), 0);
	assert_int_equal(out.seq, in.seq);
	assert_int_equal(out.size, in.size);
	assert_int_equal(out.prev_end, in.prev_end);
	assert_int_equal(out.prev_seq, in.prev_seq);
	assert_int_equal(out.first_batch, in.first_batch);
	assert_int_equal(out.batch_size_max, in.batch_size_max);
	buf[33] ^= 1;
	assert_int_equal(segment_header_get(buf, &out), WAL_ERR_CORRUPT);
}

static void test_segment_names_parse(void **state)
{
	char name[SEGMENT_NAME_SIZE];
	uint64_t seq;

	(void)state;
	segment_name(name, 0xabc);
	assert_string_equal(name, "0000000000000abc.wal");
	assert_true(segment_parse_name(name, &seq));
	assert_int_equal(seq, 0xabc);
	assert_false(segment_parse_name("0000000000000abc.wal.tmp", &seq));
	assert_false(segment_parse_name("000000000000ABC.wal", &seq));
	assert_false(segment_parse_name("0000000000000000.wal", &seq));
	assert_false(segment_parse_name("x", &seq));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entries_record_round_trips),
	    cmocka_unit_test(test_hard_and_mark_records_round_trip),
	    cmocka_unit_test(test_every_bit_flip_is_detected),
	    cmocka_unit_test(test_record_of_another_segment_is_rejected),
	    cmocka_unit_test(test_implausible_headers_are_rejected),
	    cmocka_unit_test(test_inconsistent_entries_payload_is_rejected),
	    cmocka_unit_test(test_end_record_round_trips_and_has_no_payload),
	    cmocka_unit_test(test_segment_header_round_trips_and_detects_damage),
	    cmocka_unit_test(test_segment_names_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
