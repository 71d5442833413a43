/* The WAL's term bound (io/wal_chain.c): no hard state of the WAL names a
 * term above the bound its chain file holds. It is raised and synced before
 * a batch holding a hard state of a later term is reported durable, comes
 * back at every open from either slot of the chain file, and a chain file
 * of version 1 (written before the bound existed) reads as none known. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "base/le.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define SLOT_SIZE   64
#define SLOT_STRIDE 4096
#define GROUPS      3

struct fx {
	struct loop loop;
	struct wal wal;
	struct wal_config config;
	char dir[256];
	uint64_t hard_term;  /* Highest term of a hard state appended. */
	uint64_t checked;    /* Durable reports checked against the chain file. */
	uint64_t bound_seen; /* The chain file's bound at the last report. */
	uint8_t scratch[200];
};

/* One slot of the chain file, as written on disk. */
struct slot {
	bool valid;
	uint32_t version;
	uint64_t gen, term_bound;
};

static void fx_chain_path(const struct fx *fx, char *out)
{
	snprintf(out, 512, "%s/chain", fx->dir);
}

static struct slot fx_slot(const struct fx *fx, uint32_t i)
{
	uint8_t buf[SLOT_SIZE];
	struct slot slot = {0};
	char path[512];
	int fd;

	fx_chain_path(fx, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	if (pread(fd, buf, sizeof(buf), (off_t)i * SLOT_STRIDE) == (ssize_t)sizeof(buf) &&
	    le_get64(buf) == XXH3_64bits(buf + 8, SLOT_SIZE - 8)) {
		slot.valid = true;
		slot.version = le_get32(buf + 16);
		slot.gen = le_get64(buf + 24);
		slot.term_bound = slot.version >= 2 ? le_get64(buf + 56) : 0;
	}
	close(fd);
	return slot;
}

/* The bound of the chain file's newest valid slot, read from disk. */
static uint64_t fx_disk_bound(const struct fx *fx)
{
	struct slot a = fx_slot(fx, 0), b = fx_slot(fx, 1);

	assert_true(a.valid || b.valid);
	if (!b.valid || (a.valid && a.gen > b.gen))
		return a.term_bound;
	return b.term_bound;
}

/* Rewrite slot i of the chain file: as version 1 (no bound), or with
 * another bound, or with a byte flipped so that it fails its check. */
enum slot_edit { SLOT_OLD_FORMAT, SLOT_BOUND, SLOT_DAMAGE };

static void fx_slot_edit(const struct fx *fx, uint32_t i, enum slot_edit edit, uint64_t bound)
{
	uint8_t buf[SLOT_SIZE];
	char path[512];
	int fd;

	fx_chain_path(fx, path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), (off_t)i * SLOT_STRIDE), sizeof(buf));
	if (edit == SLOT_OLD_FORMAT) {
		le_put32(buf + 16, 1);
		le_put64(buf + 56, 0); /* Reserved, zero, in version 1. */
	} else if (edit == SLOT_BOUND) {
		le_put64(buf + 56, bound);
	}
	le_put64(buf, XXH3_64bits(buf + 8, SLOT_SIZE - 8));
	if (edit == SLOT_DAMAGE)
		buf[40] ^= 1;
	assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)i * SLOT_STRIDE), sizeof(buf));
	close(fd);
}

/* Every batch reported durable: the chain file on disk already bounds every
 * hard state appended so far (those of this batch among them). */
static void fx_durable(struct wal *wal, uint64_t batch, int rv)
{
	struct fx *fx = (struct fx *)((char *)wal - offsetof(struct fx, wal));

	(void)batch;
	if (rv != 0)
		return;
	fx->bound_seen = fx_disk_bound(fx);
	assert_true(fx->bound_seen >= fx->hard_term);
	fx->checked++;
}

static void fx_open(struct fx *fx)
{
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
}

static void fx_hard(struct fx *fx, uint64_t group, uint64_t term)
{
	struct wal_hard hard = {.term = term, .vote = group, .commit = 0};
	struct wal_entry entry = {.term = term, .data = fx->scratch};
	const struct wal_group *g = wal_group_find(&fx->wal, group);
	uint64_t next = g ? g->last_index + 1 : 1;

	entry.size = io_test_payload(group, next, term, sizeof(fx->scratch), fx->scratch);
	assert_int_equal(wal_append_entries(&fx->wal, group, next, &entry, 1), 0);
	assert_int_equal(wal_append_hard(&fx->wal, group, &hard), 0);
	if (term > fx->hard_term)
		fx->hard_term = term;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	io_test_mkdtemp(fx->dir, "test_wal_bound");
	wal_config_default(&fx->config);
	fx->config.segment_size = 128u << 10;
	fx->config.batch_size_max = 16u << 10;
	fx->config.salvage = true;
	fx->config.durable_cb = fx_durable;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	loop_deinit(&fx->loop);
	io_test_rmtree(fx->dir);
	free(fx);
	return 0;
}

/* Terms rising by ten per batch, past several bounds: each batch is checked
 * against the chain file on disk when it is reported durable; the chain file
 * is written about once per bound's headroom, not per term. */
static void test_bound_is_durable_before_a_later_term_is_reported(void **state)
{
	struct fx *fx = *state;
	uint64_t gen_before;

	fx_open(fx);
	gen_before = fx->wal.chain_gen;
	for (uint64_t term = 1; term <= 3000; term++) {
		fx_hard(fx, 1 + term % GROUPS, term);
		if (term % 10 == 0)
			assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_true(fx->checked >= 300);
	assert_true(fx->bound_seen >= 3000);
	/* A few segments' tails and two raises of the bound, not 300 writes. */
	assert_true(fx->wal.chain_gen - gen_before < 30);
	wal_deinit(&fx->wal);
}

/* A hard state of a term far above the bound: one write raises it past. */
static void test_a_jump_in_term_raises_the_bound_past_it(void **state)
{
	struct fx *fx = *state;
	uint64_t bound;

	fx_open(fx);
	fx_hard(fx, 1, 1000000);
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_true(fx->checked >= 1);
	assert_true(fx_disk_bound(fx) >= 1000000);
	assert_true(wal_term_bound(&fx->wal, &bound));
	assert_true(bound >= 1000000);
	wal_deinit(&fx->wal);
}

/* Reopened, the bound comes back, from either slot of the chain file when
 * the other fails its check. */
static void test_bound_survives_reopen_from_either_slot(void **state)
{
	struct fx *fx = *state;
	char path[512], copy[600];
	uint64_t bound;

	fx_open(fx);
	fx_hard(fx, 1, 5000);
	fx_hard(fx, 2, 7);
	assert_int_equal(wal_sync(&fx->wal), 0);
	wal_deinit(&fx->wal);
	fx_open(fx); /* Its recovery writes the other slot: both hold the bound. */
	wal_deinit(&fx->wal);
	fx_chain_path(fx, path);
	snprintf(copy, sizeof(copy), "%s.copy", path);
	for (uint32_t damaged = 0; damaged < 2; damaged++) {
		char cmd[1300];

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path, copy);
		assert_int_equal(system(cmd), 0);
		fx_slot_edit(fx, damaged, SLOT_DAMAGE, 0);
		assert_false(fx_slot(fx, damaged).valid);
		assert_true(fx_slot(fx, 1 - damaged).valid);
		assert_true(fx_slot(fx, 1 - damaged).term_bound >= 5000);
		fx_open(fx);
		assert_true(wal_term_bound(&fx->wal, &bound));
		assert_true(bound >= 5000);
		assert_false(wal_has_lost_segments(&fx->wal));
		wal_deinit(&fx->wal);
		assert_int_equal(rename(copy, path), 0);
	}
}

/* Write groups' hard states until at least three segments are in use; the
 * middle one is then deleted. */
static uint64_t fx_fill(struct fx *fx, uint64_t term)
{
	uint64_t seq = 0;

	for (int round = 0; round < 10000 && fx->wal.segments_count < 3; round++) {
		fx_hard(fx, 1 + (uint64_t)round % GROUPS, term);
		if (round % 16 == 0)
			assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_true(fx->wal.segments_count >= 3);
	seq = wal_segment_at(&fx->wal, 1)->seq;
	return seq;
}

static void fx_delete(const struct fx *fx, uint64_t seq)
{
	char name[SEGMENT_NAME_SIZE], path[512];

	segment_name(name, seq);
	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	assert_int_equal(unlink(path), 0);
}

/* A segment lost: the bound still holds, above every term the lost
 * segment's hard states named. */
static void test_bound_is_known_after_a_segment_is_lost(void **state)
{
	struct fx *fx = *state;
	uint64_t bound, lost;

	fx_open(fx);
	lost = fx_fill(fx, 4000);
	wal_deinit(&fx->wal);
	fx_delete(fx, lost);
	fx_open(fx);
	assert_true(wal_has_lost_segments(&fx->wal));
	assert_true(wal_term_bound(&fx->wal, &bound));
	assert_true(bound >= 4000);
	wal_deinit(&fx->wal);
}

/* A chain file of version 1 holds no bound: with a segment lost too, none
 * is known (the lost segment's terms could be anything); a later start
 * that finds the WAL whole sets one above every term it recovered. */
static void test_old_chain_file_reads_as_no_bound(void **state)
{
	struct fx *fx = *state;
	uint64_t bound = 1, lost;

	fx_open(fx);
	lost = fx_fill(fx, 4000);
	wal_deinit(&fx->wal);
	fx_slot_edit(fx, 0, SLOT_OLD_FORMAT, 0);
	fx_slot_edit(fx, 1, SLOT_OLD_FORMAT, 0);
	assert_int_equal(fx_slot(fx, 0).version, 1);
	assert_int_equal(fx_slot(fx, 1).version, 1);
	fx_delete(fx, lost);
	fx->config.durable_cb = NULL; /* No bound to check against now. */
	fx_open(fx);
	assert_true(wal_has_lost_segments(&fx->wal));
	assert_false(wal_term_bound(&fx->wal, &bound));
	assert_int_equal(bound, 0);
	/* Appends go on; still none known, none written. */
	fx_hard(fx, 9, 9000); /* A group of its own: the others are damaged. */
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_false(wal_term_bound(&fx->wal, &bound));
	assert_int_equal(fx_disk_bound(fx), 0);
	wal_deinit(&fx->wal);
}

/* A chain file of version 1 on a whole WAL: the bound is set at open, above
 * every hard state recovered, and written. */
static void test_old_chain_file_on_a_whole_wal_gets_a_bound(void **state)
{
	struct fx *fx = *state;
	uint64_t bound;

	fx_open(fx);
	fx_hard(fx, 1, 3);
	fx_hard(fx, 2, 6000);
	assert_int_equal(wal_sync(&fx->wal), 0);
	wal_deinit(&fx->wal);
	fx_slot_edit(fx, 0, SLOT_OLD_FORMAT, 0);
	fx_slot_edit(fx, 1, SLOT_OLD_FORMAT, 0);
	fx_open(fx);
	assert_true(wal_term_bound(&fx->wal, &bound));
	assert_true(bound >= 6000);
	assert_true(fx_disk_bound(fx) >= 6000);
	wal_deinit(&fx->wal);
}

/* A hard state above the bound on disk (its batch was written, but the
 * process stopped before the chain file was): the open raises the bound
 * over it, since it may be granted again from now on. */
static void test_recovered_term_above_the_bound_raises_it(void **state)
{
	struct fx *fx = *state;
	uint64_t bound;

	fx_open(fx);
	fx_hard(fx, 1, 6000);
	assert_int_equal(wal_sync(&fx->wal), 0);
	wal_deinit(&fx->wal);
	fx_slot_edit(fx, 0, SLOT_BOUND, 10);
	fx_slot_edit(fx, 1, SLOT_BOUND, 10);
	assert_int_equal(fx_disk_bound(fx), 10);
	fx_open(fx);
	assert_true(wal_term_bound(&fx->wal, &bound));
	assert_true(bound >= 6000);
	assert_true(fx_disk_bound(fx) >= 6000);
	wal_deinit(&fx->wal);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bound_is_durable_before_a_later_term_is_reported,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_a_jump_in_term_raises_the_bound_past_it, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bound_survives_reopen_from_either_slot, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bound_is_known_after_a_segment_is_lost, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_old_chain_file_reads_as_no_bound, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_old_chain_file_on_a_whole_wal_gets_a_bound,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_recovered_term_above_the_bound_raises_it, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
