/* Whole WAL segments lost: deleted, zeroed, truncated at the head, in the
 * middle or at the tail of the segments in use, and foreign files named
 * like segments. A loss is detected and named (the WAL refuses to open
 * without salvage); under salvage every group is damaged, for the node to
 * repair from its peers, instead of starting as if nothing was lost; a
 * reset supersedes the loss at later starts; files that fail
 * identification are moved into damaged/, never removed. */
#include <dirent.h>
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

#include "base/err.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define GROUPS      4
#define PAYLOAD_MAX 200
#define SEGS_MAX    64

struct fx {
	struct loop loop;
	struct wal wal;
	struct wal_config config;
	char dir[256];
	uint64_t seqs[SEGS_MAX]; /* The segments in use when the writer closed. */
	uint32_t seqs_count;
	uint8_t scratch[32 * PAYLOAD_MAX];
};

static int fx_append(struct fx *fx, uint64_t group, uint64_t first, uint32_t count)
{
	struct wal_entry entries[32];
	uint8_t *p = fx->scratch;

	for (uint32_t i = 0; i < count; i++) {
		entries[i] = (struct wal_entry){.term = 1, .data = p};
		entries[i].size = io_test_payload(group, first + i, 1, PAYLOAD_MAX, p);
		p += entries[i].size;
	}
	return wal_append_entries(&fx->wal, group, first, entries, count);
}

/* Write every group's entries round by round until at least segments are
 * in use, then close the WAL, remembering which segments those are. */
static void fx_write(struct fx *fx, uint32_t segments)
{
	uint64_t next = 1;

	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	for (int round = 0; round < 1000 && fx->wal.segments_count < segments; round++) {
		for (uint64_t g = 1; g <= GROUPS; g++) {
			struct wal_hard hard = {.term = 1, .vote = g, .commit = next};

			assert_int_equal(fx_append(fx, g, next, 20), 0);
			assert_int_equal(wal_append_hard(&fx->wal, g, &hard), 0);
		}
		assert_int_equal(wal_sync(&fx->wal), 0);
		next += 20;
	}
	assert_true(fx->wal.segments_count >= segments);
	fx->seqs_count = 0;
	for (uint32_t i = 0; wal_segment_at(&fx->wal, i) != NULL && i < SEGS_MAX; i++)
		fx->seqs[fx->seqs_count++] = wal_segment_at(&fx->wal, i)->seq;
	wal_deinit(&fx->wal);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	io_test_mkdtemp(fx->dir, "test_wal_loss");
	wal_config_default(&fx->config);
	fx->config.segment_size = 128u << 10;
	fx->config.batch_size_max = 16u << 10;
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

static void fx_path(const struct fx *fx, const char *sub, uint64_t seq, char *out)
{
	char name[SEGMENT_NAME_SIZE];

	segment_name(name, seq);
	snprintf(out, 512, "%s/%s%s", fx->dir, sub, name);
}

static bool fx_exists(const struct fx *fx, const char *sub, uint64_t seq)
{
	char path[512];
	struct stat st;

	fx_path(fx, sub, seq, path);
	return stat(path, &st) == 0;
}

static void fx_zero(const struct fx *fx, uint64_t seq)
{
	char path[512];
	struct stat st;
	int fd;

	fx_path(fx, "", seq, path);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(ftruncate(fd, st.st_size), 0); /* Same size, all zeros. */
	close(fd);
}

static void fx_truncate(const struct fx *fx, uint64_t seq)
{
	char path[512];

	fx_path(fx, "", seq, path);
	assert_int_equal(truncate(path, 40u << 10), 0);
}

static void fx_delete(const struct fx *fx, uint64_t seq)
{
	char path[512];

	fx_path(fx, "", seq, path);
	assert_int_equal(unlink(path), 0);
}

/* Without salvage the WAL refuses to open and names the lost segment. */
static void fx_expect_refused(struct fx *fx, uint64_t seq)
{
	char name[SEGMENT_NAME_SIZE];
	struct wal_config config = fx->config;
	int rv;

	config.salvage = false;
	rv = wal_init(&fx->wal, &fx->loop, fx->dir, &config);
	if (rv == 0)
		wal_deinit(&fx->wal);
	assert_int_equal(rv, WAL_ERR_CORRUPT);
	segment_name(name, seq);
	assert_non_null(strstr(wal_why(&fx->wal), name));
}

/* With salvage it opens, and every group is damaged. */
static void fx_expect_all_damaged(struct fx *fx)
{
	struct wal_config config = fx->config;

	config.salvage = true;
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &config), 0);
	assert_true(fx->wal.stats.damaged_unnamed);
	for (uint64_t g = 1; g <= GROUPS; g++) {
		const struct wal_group *wg = wal_group_find(&fx->wal, g);

		if (wg == NULL)
			continue; /* Every record of it was lost: the caller repairs it. */
		assert_true(wg->damaged);
		assert_int_equal(wg->last_index, wg->mark_index); /* No log after the damage. */
	}
}

/* Reset every group (what the node does), then a later start finds none
 * damaged: the resets supersede the loss. */
static void fx_reset_and_reopen(struct fx *fx)
{
	struct wal_config config = fx->config;

	for (uint64_t g = 1; g <= GROUPS; g++) {
		struct wal_hard hard = {.term = 2, .repairing = true};

		assert_int_equal(wal_append_reset(&fx->wal, g, 0, 0), 0);
		assert_int_equal(wal_append_hard(&fx->wal, g, &hard), 0);
		assert_int_equal(fx_append(fx, g, 1, 5), 0);
	}
	assert_int_equal(wal_sync(&fx->wal), 0);
	wal_deinit(&fx->wal);
	config.salvage = true;
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &config), 0);
	for (uint64_t g = 1; g <= GROUPS; g++) {
		const struct wal_group *wg = wal_group_find(&fx->wal, g);

		assert_non_null(wg);
		assert_false(wg->damaged);
		assert_int_equal(wg->last_index, 5);
		assert_true(wg->hard.repairing);
	}
	assert_int_equal(fx->wal.stats.segments_lost, 0); /* Known since the last start. */
	wal_deinit(&fx->wal);
	/* Nor is it reported lost again without salvage (flotilla-wal verify). */
	config.salvage = false;
	config.read_only = true;
	assert_int_equal(wal_init(&fx->wal, NULL, fx->dir, &config), 0);
	assert_true(wal_has_lost_segments(&fx->wal));
	wal_deinit(&fx->wal);
}

static void test_zeroed_last_segment_is_a_loss_not_a_spare(void **state)
{
	struct fx *fx = *state;
	uint64_t tail;

	fx_write(fx, 3);
	tail = fx->seqs[fx->seqs_count - 1];
	fx_zero(fx, tail);
	fx_expect_refused(fx, tail);
	fx_expect_all_damaged(fx);
	assert_true(fx_exists(fx, "damaged/", tail)); /* Moved aside, not reused. */
	fx_reset_and_reopen(fx);
}

static void test_deleted_last_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t tail;

	fx_write(fx, 3);
	tail = fx->seqs[fx->seqs_count - 1];
	fx_delete(fx, tail);
	fx_expect_refused(fx, tail);
	fx_expect_all_damaged(fx);
	fx_reset_and_reopen(fx);
}

static void test_truncated_last_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t tail;

	fx_write(fx, 3);
	tail = fx->seqs[fx->seqs_count - 1];
	fx_truncate(fx, tail);
	fx_expect_refused(fx, tail);
	fx_expect_all_damaged(fx);
	assert_true(fx_exists(fx, "damaged/", tail));
	fx_reset_and_reopen(fx);
}

static void test_deleted_middle_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t middle;

	fx_write(fx, 4);
	middle = fx->seqs[1];
	fx_delete(fx, middle);
	fx_expect_refused(fx, middle);
	fx_expect_all_damaged(fx);
	fx_reset_and_reopen(fx);
}

static void test_zeroed_middle_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t middle;

	fx_write(fx, 4);
	middle = fx->seqs[1];
	fx_zero(fx, middle);
	fx_expect_refused(fx, middle);
	fx_expect_all_damaged(fx);
	assert_true(fx_exists(fx, "damaged/", middle));
	fx_reset_and_reopen(fx);
}

static void test_truncated_middle_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t middle;

	fx_write(fx, 4);
	middle = fx->seqs[1];
	fx_truncate(fx, middle);
	fx_expect_refused(fx, middle);
	fx_expect_all_damaged(fx);
	assert_true(fx_exists(fx, "damaged/", middle));
	fx_reset_and_reopen(fx);
}

static void test_deleted_oldest_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;
	uint64_t head;

	fx_write(fx, 3);
	head = fx->seqs[0];
	fx_delete(fx, head);
	fx_expect_refused(fx, head);
	fx_expect_all_damaged(fx);
	fx_reset_and_reopen(fx);
}

/* The only segment zeroed: every record gone, which used to look like a
 * WAL with nothing in it. */
static void test_zeroed_only_segment_is_a_loss(void **state)
{
	struct fx *fx = *state;

	fx->config.segment_size = 1u << 20;
	fx_write(fx, 1);
	assert_int_equal(fx->seqs_count, 1);
	fx_zero(fx, fx->seqs[0]);
	fx_expect_refused(fx, fx->seqs[0]);
	fx_expect_all_damaged(fx);
	assert_true(fx_exists(fx, "damaged/", fx->seqs[0]));
	wal_deinit(&fx->wal);
}

/* Files named like segments that are none of this WAL's, beyond the tail,
 * of the segment size and of another: moved aside, never removed; the
 * groups are intact, and spares still work. */
static void test_foreign_files_are_moved_aside_not_deleted(void **state)
{
	struct fx *fx = *state;
	uint64_t tail, seed = 7;
	uint8_t *junk = malloc(fx->config.segment_size);
	char path[512];
	int fd;

	fx_write(fx, 2);
	tail = fx->seqs[fx->seqs_count - 1];
	for (uint32_t i = 0; i < fx->config.segment_size; i++)
		junk[i] = (uint8_t)io_test_rand(&seed);
	for (uint64_t k = 10; k <= 11; k++) {
		fx_path(fx, "", tail + k, path);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, junk, fx->config.segment_size - (k - 10) * 4096),
				 (ssize_t)(fx->config.segment_size - (k - 10) * 4096));
		close(fd);
	}
	free(junk);
	fx->config.salvage = true;
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	for (uint64_t g = 1; g <= GROUPS; g++)
		assert_false(wal_group_find(&fx->wal, g)->damaged);
	assert_true(fx_exists(fx, "damaged/", tail + 10));
	assert_true(fx_exists(fx, "damaged/", tail + 11));
	assert_false(fx_exists(fx, "", tail + 10));
	assert_false(fx_exists(fx, "", tail + 11));
	assert_true(fx->wal.spares_count > 0); /* Its own spares are kept. */
	/* Appending on through the spares works. */
	for (int i = 0; i < 40; i++) {
		assert_int_equal(fx_append(fx, 1, wal_group_find(&fx->wal, 1)->last_index + 1, 20),
				 0);
		assert_int_equal(wal_sync(&fx->wal), 0);
	}
	wal_deinit(&fx->wal);
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	assert_false(wal_group_find(&fx->wal, 1)->damaged);
	wal_deinit(&fx->wal);
}

/* Nothing lost: a WAL closed and opened again, with recycled spares, is
 * not taken for damaged. */
static void test_recycled_spares_are_no_loss(void **state)
{
	struct fx *fx = *state;

	fx_write(fx, 5);
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	for (uint64_t g = 1; g <= GROUPS; g++) {
		assert_int_equal(
		    wal_append_mark(&fx->wal, g, wal_group_find(&fx->wal, g)->last_index, 1), 0);
	}
	assert_int_equal(wal_sync(&fx->wal), 0);
	for (int i = 0; i < 4; i++) {
		uint32_t pins = 0;
		struct wal_pin pin[8];

		assert_int_equal(wal_reclaim(&fx->wal, pin, 8, &pins), 0);
		assert_int_equal(fx_append(fx, 1, wal_group_find(&fx->wal, 1)->last_index + 1, 1),
				 0);
		assert_int_equal(wal_sync(&fx->wal), 0);
	}
	assert_true(fx->wal.stats.segments_recycled > 0 || fx->wal.stats.segments_deleted > 0);
	wal_deinit(&fx->wal);
	assert_int_equal(wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config), 0);
	for (uint64_t g = 1; g <= GROUPS; g++)
		assert_false(wal_group_find(&fx->wal, g)->damaged);
	assert_false(fx->wal.stats.damaged_unnamed);
	wal_deinit(&fx->wal);
	{
		char path[512];
		struct stat st;

		snprintf(path, sizeof(path), "%s/damaged", fx->dir);
		assert_int_not_equal(stat(path, &st), 0); /* Nothing was moved aside. */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_zeroed_last_segment_is_a_loss_not_a_spare,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_deleted_last_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_last_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_deleted_middle_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_zeroed_middle_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_middle_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_deleted_oldest_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_zeroed_only_segment_is_a_loss, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_files_are_moved_aside_not_deleted,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_recycled_spares_are_no_loss, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
