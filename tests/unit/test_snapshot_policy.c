/* The snapshot policy (shard/snapshot_policy.h): the floor and the ratio,
 * and what they add up to over a run. A model group applies key-value
 * writes one entry at a time, its state the sum of its items, and takes a
 * snapshot of the whole state whenever the policy says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "shard/snapshot_policy.h"

#define KIB 1024u

/* A group whose state is keys_count items of item_size bytes once every
 * key was written; entries of entry_size bytes write keys in turn. */
struct model {
	struct snapshot_policy policy;
	uint64_t keys_count, keys_written;
	uint32_t entry_size, item_size;
	uint64_t since_entries, since_bytes; /* Since the last snapshot. */
	uint64_t snapshot_size;              /* Of the last one; 0: none. */
	uint64_t snapshots_count, written_bytes, applied_bytes;
	uint64_t log_bytes_max; /* The most bytes the log held past a snapshot. */
};

static void model_init(struct model *m, uint32_t ratio_percent, uint64_t keys_count,
		       uint32_t entry_size)
{
	*m = (struct model){.policy = {.entries = 10000, .ratio_percent = ratio_percent},
			    .keys_count = keys_count,
			    .entry_size = entry_size,
			    .item_size = entry_size + 48}; /* Key and item header. */
}

static uint64_t model_state_size(const struct model *m)
{
	return (m->keys_written < m->keys_count ? m->keys_written : m->keys_count) * m->item_size;
}

/* Every key written once and snapshotted: the state a large group has. */
static void model_preload(struct model *m)
{
	m->keys_written = m->keys_count;
	m->snapshot_size = model_state_size(m);
}

static void model_apply(struct model *m, uint64_t entries_count)
{
	for (uint64_t i = 0; i < entries_count; i++) {
		m->keys_written++;
		m->since_entries++;
		m->since_bytes += m->entry_size;
		m->applied_bytes += m->entry_size;
		if (m->since_bytes > m->log_bytes_max)
			m->log_bytes_max = m->since_bytes;
		if (snapshot_policy_is_due(&m->policy, m->since_entries, m->since_bytes,
					   m->snapshot_size)) {
			m->snapshot_size = model_state_size(m);
			m->written_bytes += m->snapshot_size;
			m->snapshots_count++;
			m->since_entries = 0;
			m->since_bytes = 0;
		}
	}
}

/* 100,000 keys of 4 KiB (about 400 MB) overwritten with 2 GB: a snapshot
 * each time half the state's size was applied, about 2 bytes written per
 * byte applied, where the fixed count wrote one every 10,000 entries. */
static void test_large_state_snapshots_follow_the_ratio(void **state)
{
	struct model m, fixed;
	const uint64_t entries = 500000;
	uint64_t per_snapshot;

	(void)state;
	model_init(&m, 50, 100000, 4 * KIB);
	model_preload(&m);
	model_apply(&m, entries);
	per_snapshot = (m.snapshot_size / 2 + m.entry_size - 1) / m.entry_size;
	assert_int_equal(m.snapshots_count, entries / per_snapshot);
	assert_true(m.written_bytes <= 2 * m.applied_bytes);
	assert_true((m.written_bytes + m.snapshot_size) * 100 >= 199 * m.applied_bytes);

	model_init(&fixed, 0, 100000, 4 * KIB); /* The fixed count, same run. */
	model_preload(&fixed);
	model_apply(&fixed, entries);
	assert_int_equal(fixed.snapshots_count, entries / 10000);
	assert_true(fixed.written_bytes >= 9 * fixed.applied_bytes);
	assert_true(fixed.snapshots_count >= 4 * m.snapshots_count);
}

/* From nothing to 400 MB and on: what snapshots write stays within
 * 100 / ratio times what was applied plus the final state, and the log
 * between snapshots within the ratio of the state (or the floor). */
static void test_growing_state_stays_within_the_bound(void **state)
{
	static const uint32_t ratios[] = {25, 50, 100, 200};

	(void)state;
	for (uint32_t r = 0; r < sizeof(ratios) / sizeof(ratios[0]); r++) {
		struct model m;
		uint64_t floor_bytes = 10000ull * 4 * KIB;
		uint64_t ratio_bytes;

		model_init(&m, ratios[r], 100000, 4 * KIB);
		model_apply(&m, 400000);
		assert_true(m.written_bytes * ratios[r] <=
			    100 * m.applied_bytes + ratios[r] * model_state_size(&m));
		ratio_bytes = model_state_size(&m) * ratios[r] / 100 + m.entry_size;
		assert_true(m.log_bytes_max <=
			    (ratio_bytes > floor_bytes ? ratio_bytes : floor_bytes));
	}
}

/* A state far smaller than the floor's worth of entries compacts at the
 * floor, every snapshot_entries entries, as before. */
static void test_tiny_state_snapshots_at_the_floor(void **state)
{
	struct model m;

	(void)state;
	model_init(&m, 50, 100, 128);
	model_apply(&m, 100000);
	assert_int_equal(m.snapshots_count, 10);
}

/* Ratio 0 is the floor alone: every snapshot_entries entries whatever the
 * state's size. */
static void test_zero_ratio_is_the_floor_alone(void **state)
{
	const struct snapshot_policy p = {.entries = 100, .ratio_percent = 0};

	(void)state;
	assert_false(snapshot_policy_is_due(&p, 99, 1u << 30, 0));
	assert_true(snapshot_policy_is_due(&p, 100, 0, UINT64_C(1) << 40));
}

/* The byte floor counts as the entry floor does; either one reached is the
 * floor; with neither set a group never snapshots on its own. */
static void test_floors_either_and_none(void **state)
{
	const struct snapshot_policy bytes = {.bytes = 1000, .ratio_percent = 50};
	const struct snapshot_policy both = {.entries = 10, .bytes = 1000, .ratio_percent = 50};
	const struct snapshot_policy none = {.ratio_percent = 50};

	(void)state;
	assert_false(snapshot_policy_is_due(&bytes, 1000000, 999, 0));
	assert_true(snapshot_policy_is_due(&bytes, 1, 1000, 0));
	assert_true(snapshot_policy_is_due(&both, 10, 0, 0));
	assert_true(snapshot_policy_is_due(&both, 1, 1000, 0));
	assert_false(snapshot_policy_is_due(&none, UINT64_MAX, UINT64_MAX, 0));
}

/* The ratio is exact at its edge and does not overflow on huge sizes. */
static void test_ratio_edge_and_large_sizes(void **state)
{
	const struct snapshot_policy half = {.entries = 1, .ratio_percent = 50};
	const struct snapshot_policy most = {.entries = 1,
					     .ratio_percent = SNAPSHOT_POLICY_RATIO_PERCENT_MAX};
	const uint64_t huge = UINT64_MAX / SNAPSHOT_POLICY_RATIO_PERCENT_MAX;

	(void)state;
	assert_false(snapshot_policy_is_due(&half, 1, 499, 999));
	assert_true(snapshot_policy_is_due(&half, 1, 500, 1000));
	assert_false(snapshot_policy_is_due(&half, 1, 499, 1000));
	assert_false(snapshot_policy_is_due(&most, 1, huge, huge));
	assert_true(snapshot_policy_is_due(&most, 1, UINT64_MAX, huge));
	assert_true(snapshot_policy_is_due(&most, 1, UINT64_MAX, UINT64_MAX / 11));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_large_state_snapshots_follow_the_ratio),
	    cmocka_unit_test(test_growing_state_stays_within_the_bound),
	    cmocka_unit_test(test_tiny_state_snapshots_at_the_floor),
	    cmocka_unit_test(test_zero_ratio_is_the_floor_alone),
	    cmocka_unit_test(test_floors_either_and_none),
	    cmocka_unit_test(test_ratio_edge_and_large_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
