/* Sealed frames (shard/seal.c): what is sealed opens, in order, once; an
 * altered body, header or tag, a replayed, reordered or dropped frame, and
 * another connection's key all fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "shard/seal.h"
#include "shard/wire.h"

#define BODY 100

static const uint8_t key_a[SEAL_KEY_SIZE] = {1, 2, 3};
static const uint8_t key_b[SEAL_KEY_SIZE] = {3, 2, 1};

struct sealed {
	uint8_t frame[WIRE_FRAME_HEADER_SIZE + BODY];
	uint8_t tag[SEAL_TAG_SIZE];
};

static void make(struct seal *s, struct sealed *f, uint8_t fill)
{
	memset(f->frame + WIRE_FRAME_HEADER_SIZE, fill, BODY);
	wire_frame_seal(f->frame, WIRE_FRAME_RAFT, BODY);
	seal_frame(s, f->frame, WIRE_FRAME_RAFT, BODY, f->tag);
}

/* Frames open in the order sealed, back to their plaintext; the body on the
 * wire is not the plaintext, and the header's checksum is of what is sent. */
static void test_seal_frames_open_in_order(void **state)
{
	struct seal tx, rx;
	struct sealed f[3];
	struct wire_frame_header h;
	uint8_t plain[BODY];

	(void)state;
	assert_int_equal(seal_init(&tx, key_a, true), 0);
	assert_int_equal(seal_init(&rx, key_a, false), 0);
	for (int i = 0; i < 3; i++)
		make(&tx, &f[i], (uint8_t)(0x40 + i));
	for (int i = 0; i < 3; i++) {
		memset(plain, 0x40 + i, BODY);
		assert_memory_not_equal(f[i].frame + WIRE_FRAME_HEADER_SIZE, plain, BODY);
		assert_int_equal(wire_frame_header_decode(&h, f[i].frame), 0);
		assert_int_equal(wire_frame_verify(&h, f[i].frame + WIRE_FRAME_HEADER_SIZE), 0);
		assert_true(seal_open(&rx, f[i].frame, BODY, f[i].tag));
		assert_memory_equal(f[i].frame + WIRE_FRAME_HEADER_SIZE, plain, BODY);
	}
	seal_deinit(&tx);
	seal_deinit(&rx);
}

/* Each alteration fails: a body bit, the header's size or kind, the tag. */
static void test_seal_alterations_fail(void **state)
{
	struct seal tx, rx;
	struct sealed f, g;
	size_t spots[] = {WIRE_FRAME_HEADER_SIZE + 7, 0, 4};

	(void)state;
	assert_int_equal(seal_init(&tx, key_a, true), 0);
	make(&tx, &f, 0x55);
	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		g = f;
		g.frame[spots[i]] ^= 1;
		assert_int_equal(seal_init(&rx, key_a, false), 0);
		assert_false(seal_open(&rx, g.frame, BODY, g.tag));
		seal_deinit(&rx);
	}
	g = f;
	g.tag[0] ^= 0x80;
	assert_int_equal(seal_init(&rx, key_a, false), 0);
	assert_false(seal_open(&rx, g.frame, BODY, g.tag));
	seal_deinit(&rx);
	/* The untouched frame still opens (the checks above were of copies). */
	assert_int_equal(seal_init(&rx, key_a, false), 0);
	assert_true(seal_open(&rx, f.frame, BODY, f.tag));
	seal_deinit(&rx);
	seal_deinit(&tx);
}

/* Replayed, reordered or dropped frames fail, as does another key. */
static void test_seal_replay_reorder_and_other_key_fail(void **state)
{
	struct seal tx, rx, other;
	struct sealed f0, f1, copy;

	(void)state;
	assert_int_equal(seal_init(&tx, key_a, true), 0);
	make(&tx, &f0, 1);
	make(&tx, &f1, 2);
	assert_int_equal(seal_init(&other, key_b, false), 0);
	copy = f0;
	assert_false(seal_open(&other, copy.frame, BODY, copy.tag));
	assert_int_equal(seal_init(&rx, key_a, false), 0);
	copy = f1; /* Frame 1 first: reordered (or frame 0 dropped). */
	assert_false(seal_open(&rx, copy.frame, BODY, copy.tag));
	copy = f0;
	assert_true(seal_open(&rx, copy.frame, BODY, copy.tag));
	copy = f0; /* Frame 0 again: a replay. */
	assert_false(seal_open(&rx, copy.frame, BODY, copy.tag));
	copy = f1;
	assert_true(seal_open(&rx, copy.frame, BODY, copy.tag));
	seal_deinit(&rx);
	seal_deinit(&other);
	seal_deinit(&tx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seal_frames_open_in_order),
	    cmocka_unit_test(test_seal_alterations_fail),
	    cmocka_unit_test(test_seal_replay_reorder_and_other_key_fail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
