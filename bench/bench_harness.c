/* Benchmarks of the harness itself, on work every other module also does:
 *
 *   harness/xxh3          XXH3-64 over one buffer of 64 B .. 64 KiB (the checksum
 *                         of every WAL record and wire frame); bytes/s.
 *   harness/place/groups  map N group ids to their shard, xxh3(g) % shards, as a
 *                         node does when it opens its groups; items/s, and how
 *                         uneven the shards are.
 *
 * They need no disk, network or io_uring, so the "bench" test suite runs them
 * as a smoke test of the harness. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "bench/harness.h"

enum {
	HARNESS_BUFFER_SIZE_MAX = 64 * 1024,
	HARNESS_SHARDS_COUNT = 8,
	HARNESS_HASHES_PER_PASS = 16, /* A 64-byte hash takes a few ns: batch them. */
};

static uint8_t harness_buffer[HARNESS_BUFFER_SIZE_MAX];

static void harness_buffer_fill(void)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	for (size_t i = 0; i < sizeof(harness_buffer); i++) {
		x ^= x << 13; /* xorshift64: any fixed, non-constant bytes will do. */
		x ^= x >> 7;
		x ^= x << 17;
		harness_buffer[i] = (uint8_t)x;
	}
}

static void bench_harness_xxh3(struct bench_state *state, void *arg)
{
	const uint8_t *buffer = arg;
	int64_t size = bench_range(state, 0);
	uint64_t hash = 0;

	while (bench_keep_running_batch(state, HARNESS_HASHES_PER_PASS)) {
		for (int i = 0; i < HARNESS_HASHES_PER_PASS; i++)
			hash ^= XXH3_64bits(buffer, (size_t)size) + (uint64_t)i;
		bench_do_not_optimize(&hash);
	}
	bench_set_bytes(state, bench_iterations(state) * size);
}

static void bench_harness_place(struct bench_state *state, void *arg)
{
	int64_t groups_count = bench_range(state, 0);
	uint64_t load[HARNESS_SHARDS_COUNT];
	uint64_t load_max = 0;

	(void)arg;
	while (bench_keep_running(state)) {
		memset(load, 0, sizeof(load));
		for (int64_t g = 1; g <= groups_count; g++) {
			uint64_t group = (uint64_t)g;

			load[XXH3_64bits(&group, sizeof(group)) % HARNESS_SHARDS_COUNT]++;
		}
		bench_do_not_optimize(load);
	}
	for (int i = 0; i < HARNESS_SHARDS_COUNT; i++)
		load_max = load[i] > load_max ? load[i] : load_max;
	bench_set_items(state, bench_iterations(state) * groups_count);
	/* 1.0 is a perfect spread: the fullest shard holds groups / shards. */
	bench_counter(state, "shard_load_max",
		      (double)load_max * HARNESS_SHARDS_COUNT / (double)groups_count, 0);
}

void bench_harness_register(void)
{
	static const int64_t groups_counts[] = {1, 1000, 10000};

	harness_buffer_fill();
	bench_register(&(struct bench_def){
	    .name = "harness/xxh3",
	    .fn = bench_harness_xxh3,
	    .arg = harness_buffer,
	    .range_min = 64,
	    .range_max = HARNESS_BUFFER_SIZE_MAX,
	});
	bench_register(&(struct bench_def){
	    .name = "harness/place",
	    .fn = bench_harness_place,
	    .args = groups_counts,
	    .args_count = sizeof(groups_counts) / sizeof(groups_counts[0]),
	    .arg_name = "groups",
	});
}
