/* Long run with small segments: many groups append and compact, a few go
 * idle after writing once, one keeps a large uncompacted log. Disk use must
 * stay bounded: idle groups are rewritten forward, the large one is asked
 * for a snapshot (and takes one), and dead segments are recycled. At the
 * end the WAL reopens with every group's state intact.
 *
 * Usage: test_io_wal_longrun [--mb=N]  (bytes of entries to write) */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define GROUPS      200
#define IDLE_GROUPS 4 /* Groups 1..4 write once, then stay idle. */
#define BIG_GROUP   5 /* Never compacts until asked to snapshot. */
#define PAYLOAD_MAX 300
#define TIME_MAX_NS (20ull * 1000000000ull)

struct run {
	struct loop loop;
	struct wal wal;
	struct wal_config config;
	uint64_t rng;
	uint64_t entries_size;
	uint64_t disk_max;
	uint64_t snapshots;
	uint64_t turns;
	uint8_t scratch[16 * PAYLOAD_MAX];
};

static int run_fail(struct run *r, const char *what, int rv)
{
	fprintf(stderr, "FAILED: %s: %s: %s\n", what, err_str(rv), wal_why(&r->wal));
	return 1;
}

static int run_append(struct run *r, uint64_t group, uint32_t count)
{
	const struct wal_group *g = wal_group_find(&r->wal, group);
	uint64_t first = g ? g->last_index + 1 : 1;
	struct wal_entry entries[16];
	uint8_t *p = r->scratch;
	int rv;

	for (uint32_t i = 0; i < count; i++) {
		entries[i] = (struct wal_entry){.term = 1, .data = p};
		entries[i].size = io_test_payload(group, first + i, 1, PAYLOAD_MAX, p);
		r->entries_size += entries[i].size;
		p += entries[i].size;
	}
	for (int tries = 0; tries < 100; tries++) {
		rv = wal_append_entries(&r->wal, group, first, entries, count);
		if (rv != -EAGAIN)
			return rv;
		wal_flush(&r->wal);
		loop_run(&r->loop, 1);
	}
	return rv;
}

/* Compact a group up to index (its entries all have term 1). */
static int run_mark(struct run *r, uint64_t group, uint64_t index)
{
	int rv;

	for (int tries = 0; tries < 100; tries++) {
		rv = wal_append_mark(&r->wal, group, index, 1);
		if (rv != -EAGAIN)
			return rv;
		wal_flush(&r->wal);
		loop_run(&r->loop, 1);
	}
	return rv;
}

static int run_turn(struct run *r)
{
	struct wal_pin pins[32];
	struct wal_stats stats;
	uint32_t pins_count;
	int rv;

	for (int op = 0; op < 40; op++) {
		uint64_t group = BIG_GROUP + io_test_rand(&r->rng) % (GROUPS - BIG_GROUP);
		const struct wal_group *g;

		rv = run_append(r, group, 1 + (uint32_t)(io_test_rand(&r->rng) % 8));
		if (rv != 0)
			return run_fail(r, "append", rv);
		g = wal_group_find(&r->wal, group);
		if (group != BIG_GROUP && g->last_index - g->mark_index > 8) {
			rv = run_mark(r, group, g->last_index - 2);
			if (rv != 0)
				return run_fail(r, "mark", rv);
		}
	}
	/* Every other turn reclaims with a batch still in flight (the moved
	 * groups' records not yet durable hold their old segments back); the
	 * others first make everything durable, so that how far reclaiming
	 * falls behind does not depend on how fast this machine's fdatasync
	 * is: at most one turn, which the bound below allows. */
	if (r->turns++ % 2 == 0) {
		wal_flush(&r->wal);
		loop_run(&r->loop, 1);
	} else if ((rv = wal_sync(&r->wal)) != 0) {
		return run_fail(r, "sync", rv);
	}
	rv = wal_reclaim(&r->wal, pins, 32, &pins_count);
	if (rv != 0)
		return run_fail(r, "reclaim", rv);
	for (uint32_t p = 0; p < pins_count; p++) {
		const struct wal_group *g = wal_group_find(&r->wal, pins[p].group);

		if (pins[p].action != WAL_PIN_SNAPSHOT)
			continue;
		if (pins[p].group != BIG_GROUP) {
			fprintf(stderr,
				"FAILED: group %" PRIu64 " (%" PRIu64 " live bytes, %" PRIu32
				" runs) asked for a snapshot\n",
				pins[p].group, pins[p].live_size, g->runs_count);
			return 1;
		}
		rv = run_mark(r, pins[p].group, g->last_index);
		if (rv != 0)
			return run_fail(r, "snapshot mark", rv);
		r->snapshots++;
	}
	wal_stats_get(&r->wal, &stats);
	if (stats.disk_size > r->disk_max)
		r->disk_max = stats.disk_size;
	return 0;
}

/* The idle groups' entries are intact after all the rewriting. */
static int run_check_idle(struct run *r)
{
	uint8_t expect[PAYLOAD_MAX];

	for (uint64_t group = 1; group <= IDLE_GROUPS; group++) {
		struct wal_read read;
		int rv = wal_read_sync(&r->wal, &read, group, 1, 3, 1u << 20);

		if (rv != 0 || read.entries_count != 3)
			return run_fail(r, "read idle group", rv);
		for (uint32_t i = 0; i < 3; i++) {
			uint32_t size = io_test_payload(group, i + 1, 1, PAYLOAD_MAX, expect);

			if (read.entries[i].size != size ||
			    memcmp(read.entries[i].data, expect, size) != 0) {
				fprintf(stderr, "FAILED: idle group %" PRIu64 " entry %u differs\n",
					group, i + 1);
				return 1;
			}
		}
		wal_read_release(&read);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof(*r));
	uint64_t target = 48ull << 20, start, bound;
	struct wal_stats stats;
	char dir[256];
	int rv = 0;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--mb=", 5) == 0)
			target = strtoull(argv[i] + 5, NULL, 10) << 20;
	}
	r->rng = 12345;
	io_test_loop_init(&r->loop);
	io_test_mkdtemp(dir, "test_wal_longrun");
	wal_config_default(&r->config);
	r->config.segment_size = 256u << 10;
	r->config.batch_size_max = 16u << 10;
	r->config.segments_soft_max = 4;
	r->config.spares_max = 2;
	r->config.rewrite_size_max = 32u << 10;
	/* Live segments stay near the soft maximum: a few over it while the
	 * groups moved forward become durable, plus the spares (one more
	 * during a rotation), plus the spare made as soon as a rotation takes
	 * the last one (the reserve that lets a full disk be noticed early). */
	bound = (uint64_t)(r->config.segments_soft_max + 3 + r->config.spares_max + 2) *
		r->config.segment_size;
	rv = wal_init(&r->wal, &r->loop, dir, &r->config);
	if (rv != 0)
		return run_fail(r, "open", rv);
	for (uint64_t group = 1; group <= IDLE_GROUPS && rv == 0; group++)
		rv = run_append(r, group, 3);
	if (rv == 0)
		rv = wal_append_hard(&r->wal, 1,
				     &(struct wal_hard){.term = 7, .vote = 1, .commit = 3});
	if (rv != 0)
		return run_fail(r, "first appends", rv);
	start = loop_now_ns(&r->loop);
	while (rv == 0 && r->entries_size < target && loop_now_ns(&r->loop) - start < TIME_MAX_NS)
		rv = run_turn(r);
	if (rv == 0 && wal_sync(&r->wal) != 0)
		rv = run_fail(r, "sync", r->wal.failed);
	wal_stats_get(&r->wal, &stats);
	printf("wrote %.1f MiB of entries in %.1f s; disk use peaked at %.2f MiB (bound %.2f MiB); "
	       "segments created %" PRIu64 ", recycled %" PRIu64 ", deleted %" PRIu64
	       "; groups rewritten %" PRIu64 ", snapshots asked %" PRIu64 "\n",
	       (double)r->entries_size / (1 << 20), (double)(loop_now_ns(&r->loop) - start) / 1e9,
	       (double)r->disk_max / (1 << 20), (double)bound / (1 << 20), stats.segments_created,
	       stats.segments_recycled, stats.segments_deleted, stats.groups_rewritten,
	       r->snapshots);
	if (rv == 0 && r->disk_max > bound) {
		fprintf(stderr, "FAILED: disk use exceeded its bound\n");
		rv = 1;
	}
	if (rv == 0 && r->entries_size < 4 * bound) {
		fprintf(stderr, "FAILED: wrote too little to show anything\n");
		rv = 1;
	}
	if (rv == 0 && (stats.groups_rewritten == 0 || r->snapshots == 0)) {
		fprintf(stderr, "FAILED: neither rewriting nor snapshots were exercised\n");
		rv = 1;
	}
	wal_deinit(&r->wal);
	if (rv == 0 && (rv = wal_init(&r->wal, &r->loop, dir, &r->config)) != 0)
		rv = run_fail(r, "reopen", rv);
	if (rv == 0) {
		rv = run_check_idle(r);
		if (rv == 0 && wal_group_find(&r->wal, 1)->hard.term != 7)
			rv = run_fail(r, "idle group's hard state", 0);
		wal_deinit(&r->wal);
	}
	loop_deinit(&r->loop);
	if (rv == 0)
		io_test_rmtree(dir);
	free(r);
	return rv == 0 ? 0 : 1;
}
