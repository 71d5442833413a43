/* The KV state machine: command codec, apply results, per-group maps. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/kv.h"

struct kv_fixture {
	struct kv kv;
	unsigned char buf[4096];
};

static int kv_fixture_setup(void **state)
{
	struct kv_fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || kv_init(&f->kv) != 0)
		return -1;
	*state = f;
	return 0;
}

static int kv_fixture_teardown(void **state)
{
	struct kv_fixture *f = *state;

	kv_deinit(&f->kv);
	free(f);
	return 0;
}

/* Apply one command to group and return its result. */
static uint64_t apply_cmd(struct kv_fixture *f, uint64_t group, const struct kv_cmd *cmd)
{
	uint32_t size = kv_cmd_size(cmd);
	struct fl_entry entry = {.index = 1, .term = 1, .data = f->buf, .size = size};
	uint64_t result = 99;

	assert_true(size > 0 && size <= sizeof(f->buf));
	kv_cmd_encode(cmd, f->buf);
	kv_apply(&f->kv, group, &entry, 1, &result);
	return result;
}

static uint64_t put(struct kv_fixture *f, uint64_t group, const char *key, const char *value)
{
	struct kv_cmd cmd = {.op = KV_OP_PUT,
			     .key = key,
			     .key_size = (uint32_t)strlen(key),
			     .value = value,
			     .value_size = (uint32_t)strlen(value)};

	return apply_cmd(f, group, &cmd);
}

static uint64_t del(struct kv_fixture *f, uint64_t group, const char *key)
{
	struct kv_cmd cmd = {.op = KV_OP_DELETE, .key = key, .key_size = (uint32_t)strlen(key)};

	return apply_cmd(f, group, &cmd);
}

/* expected NULL: the key must be absent. */
static uint64_t cas(struct kv_fixture *f, uint64_t group, const char *key, const char *expected,
		    const char *value)
{
	struct kv_cmd cmd = {.op = KV_OP_CAS,
			     .key = key,
			     .key_size = (uint32_t)strlen(key),
			     .expected = expected,
			     .expected_size =
				 expected != NULL ? (uint32_t)strlen(expected) : KV_ABSENT,
			     .value = value,
			     .value_size = (uint32_t)strlen(value)};

	return apply_cmd(f, group, &cmd);
}

/* Assert that key holds value in group (value NULL: absent). */
static void assert_kv_value(struct kv_fixture *f, uint64_t group, const char *key,
			    const char *value)
{
	void *got;
	uint32_t got_size;
	int rv = kv_get(&f->kv, group, key, (uint32_t)strlen(key), &got, &got_size);

	if (value == NULL) {
		assert_int_equal(rv, -ENOENT);
		assert_null(got);
		return;
	}
	assert_int_equal(rv, 0);
	assert_int_equal(got_size, strlen(value));
	assert_memory_equal(got, value, got_size);
	free(got);
}

static void test_put_then_get_returns_the_value(void **state)
{
	struct kv_fixture *f = *state;

	assert_int_equal(put(f, 1, "k", "v1"), KV_RESULT_OK);
	assert_kv_value(f, 1, "k", "v1");
	assert_int_equal(put(f, 1, "k", "v2"), KV_RESULT_OK);
	assert_kv_value(f, 1, "k", "v2");
	assert_int_equal(put(f, 1, "", ""), KV_RESULT_OK); /* Empty key and value are values. */
	assert_kv_value(f, 1, "", "");
	assert_int_equal(kv_keys_count(&f->kv, 1), 2);
}

static void test_delete_reports_missing_keys(void **state)
{
	struct kv_fixture *f = *state;

	assert_int_equal(del(f, 1, "k"), KV_RESULT_NOT_FOUND);
	assert_int_equal(put(f, 1, "k", "v"), KV_RESULT_OK);
	assert_int_equal(del(f, 1, "k"), KV_RESULT_OK);
	assert_kv_value(f, 1, "k", NULL);
	assert_int_equal(del(f, 1, "k"), KV_RESULT_NOT_FOUND);
}

static void test_cas_sets_only_when_the_expectation_holds(void **state)
{
	struct kv_fixture *f = *state;

	assert_int_equal(cas(f, 1, "k", "x", "v"), KV_RESULT_NOT_FOUND);
	assert_int_equal(cas(f, 1, "k", NULL, "v1"), KV_RESULT_OK);
	assert_int_equal(cas(f, 1, "k", NULL, "v2"), KV_RESULT_CAS_MISMATCH);
	assert_kv_value(f, 1, "k", "v1");
	assert_int_equal(cas(f, 1, "k", "v0", "v2"), KV_RESULT_CAS_MISMATCH);
	assert_int_equal(cas(f, 1, "k", "v1x", "v2"), KV_RESULT_CAS_MISMATCH);
	assert_kv_value(f, 1, "k", "v1");
	assert_int_equal(cas(f, 1, "k", "v1", "v2"), KV_RESULT_OK);
	assert_kv_value(f, 1, "k", "v2");
}

static void test_groups_have_separate_maps(void **state)
{
	struct kv_fixture *f = *state;

	assert_int_equal(put(f, 1, "k", "one"), KV_RESULT_OK);
	assert_int_equal(put(f, 2, "k", "two"), KV_RESULT_OK);
	assert_kv_value(f, 1, "k", "one");
	assert_kv_value(f, 2, "k", "two");
	assert_kv_value(f, 3, "k", NULL);
	assert_int_equal(del(f, 1, "k"), KV_RESULT_OK);
	assert_kv_value(f, 2, "k", "two");
	/* Enough groups to grow the group table several times. */
	for (uint64_t g = 10; g < 1000; g++)
		assert_int_equal(put(f, g, "k", "v"), KV_RESULT_OK);
	for (uint64_t g = 10; g < 1000; g++)
		assert_kv_value(f, g, "k", "v");
	assert_kv_value(f, 2, "k", "two");
}

static void test_malformed_entries_change_nothing(void **state)
{
	struct kv_fixture *f = *state;
	struct kv_cmd cmd = {
	    .op = KV_OP_PUT, .key = "k", .key_size = 1, .value = "v", .value_size = 1};
	uint32_t size = kv_cmd_size(&cmd);
	struct fl_entry entries[4];
	uint64_t results[4];

	kv_cmd_encode(&cmd, f->buf);
	entries[0] = (struct fl_entry){.data = f->buf, .size = size - 1}; /* Truncated. */
	entries[1] = (struct fl_entry){.data = f->buf, .size = 0};        /* Empty. */
	f->buf[size] = 0;
	entries[2] = (struct fl_entry){.data = f->buf, .size = size + 1}; /* Trailing byte. */
	entries[3] = (struct fl_entry){.data = f->buf, .size = size};     /* Fine. */
	kv_apply(&f->kv, 1, entries, 4, results);
	assert_int_equal(results[0], KV_RESULT_BAD_ENTRY);
	assert_int_equal(results[1], KV_RESULT_BAD_ENTRY);
	assert_int_equal(results[2], KV_RESULT_BAD_ENTRY);
	assert_int_equal(results[3], KV_RESULT_OK);
	assert_int_equal(kv_keys_count(&f->kv, 1), 1);
}

static void test_cmd_decode_rejects_bad_headers(void **state)
{
	struct kv_fixture *f = *state;
	struct kv_cmd cmd = {.op = KV_OP_DELETE, .key = "key", .key_size = 3};
	struct kv_cmd got;
	uint32_t size = kv_cmd_size(&cmd);

	kv_cmd_encode(&cmd, f->buf);
	assert_int_equal(kv_cmd_decode(f->buf, size, &got), 0);
	assert_int_equal(got.op, KV_OP_DELETE);
	assert_memory_equal(got.key, "key", 3);
	for (uint32_t cut = 0; cut < size; cut++)
		assert_int_equal(kv_cmd_decode(f->buf, cut, &got), -EBADMSG);
	f->buf[0] = 2; /* GET is not a command. */
	assert_int_equal(kv_cmd_decode(f->buf, size, &got), -EBADMSG);
	f->buf[0] = KV_OP_DELETE;
	f->buf[12] = 1; /* A DELETE with a value. */
	assert_int_equal(kv_cmd_decode(f->buf, size, &got), -EBADMSG);
	f->buf[12] = 0;
	f->buf[6] = 0x10; /* key_size far over the limit. */
	assert_int_equal(kv_cmd_decode(f->buf, size, &got), -EBADMSG);
}

/* Random puts and deletes on few keys exercise probing and backward-shift
 * deletion; a plain array is the reference. */
static void test_random_ops_match_a_reference(void **state)
{
	struct kv_fixture *f = *state;
	enum { KEYS = 300, OPS = 20000 };
	static int reference[KEYS]; /* -1 absent, else the value. */
	uint64_t seed = 42;

	for (int i = 0; i < KEYS; i++)
		reference[i] = -1;
	for (int op = 0; op < OPS; op++) {
		char key[16], value[16];
		int k;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		k = (int)((seed >> 33) % KEYS);
		snprintf(key, sizeof(key), "key-%d", k);
		snprintf(value, sizeof(value), "%d", op);
		if ((seed >> 20) % 3 == 0) {
			assert_int_equal(del(f, 7, key),
					 reference[k] < 0 ? KV_RESULT_NOT_FOUND : KV_RESULT_OK);
			reference[k] = -1;
		} else {
			assert_int_equal(put(f, 7, key, value), KV_RESULT_OK);
			reference[k] = op;
		}
	}
	for (int k = 0; k < KEYS; k++) {
		char key[16], value[16];

		snprintf(key, sizeof(key), "key-%d", k);
		snprintf(value, sizeof(value), "%d", reference[k]);
		assert_kv_value(f, 7, key, reference[k] < 0 ? NULL : value);
	}
}

/* The state digest depends on the map only: the same keys and values give the
 * same digest in any order of writes, an empty group digests like an unknown
 * one, and a key set behind the log's back changes it. */
static void test_state_digest_follows_the_map(void **state)
{
	struct kv_fixture *f = *state;
	uint64_t empty = kv_state_digest(&f->kv, 1), one;

	assert_int_equal(kv_state_digest(&f->kv, 1), kv_state_digest(&f->kv, 2));
	put(f, 1, "a", "1");
	put(f, 1, "b", "2");
	put(f, 2, "b", "2");
	put(f, 2, "a", "0");
	put(f, 2, "a", "1");
	one = kv_state_digest(&f->kv, 1);
	assert_int_not_equal(one, empty);
	assert_int_equal(kv_state_digest(&f->kv, 2), one);
#ifdef FLOTILLA_TEST_HOOKS /* kv_corrupt_local() is a test hook. */
	assert_int_equal(kv_corrupt_local(&f->kv, 2, "a", 1, "x", 1), 0);
	assert_int_not_equal(kv_state_digest(&f->kv, 2), one);
	assert_int_equal(kv_corrupt_local(&f->kv, 2, "a", 1, "1", 1), 0);
	assert_int_equal(kv_state_digest(&f->kv, 2), one);
#endif
	del(f, 1, "a");
	del(f, 1, "b");
	assert_int_equal(kv_state_digest(&f->kv, 1), empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_put_then_get_returns_the_value, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_delete_reports_missing_keys, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_cas_sets_only_when_the_expectation_holds,
					    kv_fixture_setup, kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_groups_have_separate_maps, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_entries_change_nothing, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_cmd_decode_rejects_bad_headers, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_state_digest_follows_the_map, kv_fixture_setup,
					    kv_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_random_ops_match_a_reference, kv_fixture_setup,
					    kv_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
