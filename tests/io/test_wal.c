/* The WAL on a real disk: append, group commit, recovery, torn tails,
 * refusal of mid-log corruption and index gaps, overwrites, compaction,
 * segment reuse, rewriting slow groups forward and reading back. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/err.h"
#include "io/segment.h"
#include "io/wal.h"
#include "tests/io/io_test.h"

#define GROUPS_MAX  8
#define INDEX_MAX   20000
#define PAYLOAD_MAX 300

/* What the test expects of each group: the term of every live index. */
struct model {
	uint64_t first, last;
	uint64_t terms[INDEX_MAX + 1];
};

struct found_record {
	uint64_t seq, offset, group, first_index;
	uint16_t type;
};

struct fx {
	struct loop loop;
	struct wal wal;
	struct wal_config config;
	char dir[256];
	uint64_t durable;
	int failed_rv;
	struct model model[GROUPS_MAX];
	struct found_record found[4096];
	uint32_t found_count;
	uint8_t scratch[64 * PAYLOAD_MAX];
};

static void fx_durable(struct wal *wal, uint64_t batch, int rv)
{
	struct fx *fx = (struct fx *)(void *)((char *)wal - offsetof(struct fx, wal));

	fx->durable = batch;
	if (rv != 0)
		fx->failed_rv = rv;
}

static void fx_scan(void *arg, uint64_t seq, uint64_t offset, const struct segment_record *record)
{
	struct fx *fx = arg;

	if (fx->found_count < 4096)
		fx->found[fx->found_count++] = (struct found_record){
		    seq, offset, record->group, record->first_index, record->type};
}

static int fx_open(struct fx *fx)
{
	fx->found_count = 0;
	return wal_init(&fx->wal, &fx->loop, fx->dir, &fx->config);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	io_test_mkdtemp(fx->dir, "test_wal");
	wal_config_default(&fx->config);
	fx->config.segment_size = 256u << 10;
	fx->config.batch_size_max = 16u << 10;
	fx->config.buffers_count = 8;
	fx->config.segments_soft_max = 4;
	fx->config.rewrite_size_max = 8u << 10;
	fx->config.direct_io = getenv("FLOTILLA_WAL_DIRECT") != NULL;
	fx->config.durable_cb = fx_durable;
	fx->config.scan_cb = fx_scan;
	fx->config.scan_arg = fx;
	for (int g = 0; g < GROUPS_MAX; g++)
		fx->model[g].first = 1;
	assert_int_equal(fx_open(fx), 0);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->wal.groups != NULL)
		wal_deinit(&fx->wal);
	loop_deinit(&fx->loop);
	io_test_rmtree(fx->dir);
	free(fx);
	return 0;
}

static void fx_reopen(struct fx *fx)
{
	wal_deinit(&fx->wal);
	if (fx_open(fx) != 0)
		fail_msg("reopen: %s", wal_why(&fx->wal));
}

/* Append count entries of term to group from first, retrying on -EAGAIN. */
static void fx_append(struct fx *fx, uint64_t group, uint64_t first, uint32_t count, uint64_t term)
{
	struct model *m = &fx->model[group];

	while (count > 0) {
		struct wal_entry entries[64];
		uint32_t n = count < 64 ? count : 64;
		uint8_t *p = fx->scratch;
		int rv;

		for (uint32_t i = 0; i < n; i++) {
			entries[i].term = term;
			entries[i].type = (uint32_t)(first + i) % 3;
			entries[i].data = p;
			entries[i].size = io_test_payload(group, first + i, term, PAYLOAD_MAX, p);
			p += entries[i].size;
		}
		for (int tries = 0;
		     (rv = wal_append_entries(&fx->wal, group, first, entries, n)) == -EAGAIN;
		     tries++) {
			assert_true(tries < 1000);
			assert_int_equal(wal_flush(&fx->wal), 0);
			assert_true(loop_run(&fx->loop, 1) >= 0);
		}
		assert_int_equal(rv, 0);
		for (uint32_t i = 0; i < n; i++)
			m->terms[first + i] = term;
		m->last = first + n - 1;
		first += n;
		count -= n;
	}
}

static void fx_sync(struct fx *fx)
{
	assert_int_equal(wal_sync(&fx->wal), 0);
	assert_true(wal_durable(&fx->wal) >= wal_position(&fx->wal));
}

/* Every live entry of group is readable and has the expected bytes. */
static void fx_check_group(struct fx *fx, uint64_t group)
{
	const struct model *m = &fx->model[group];
	const struct wal_group *g = wal_group_find(&fx->wal, group);
	uint8_t expect[PAYLOAD_MAX];
	uint64_t index = m->first;

	assert_non_null(g);
	assert_int_equal(g->first_index, m->first);
	assert_int_equal(g->last_index, m->last);
	while (index <= m->last) {
		struct wal_read read;
		int rv = wal_read_sync(&fx->wal, &read, group, index, m->last, 32u << 10);

		if (rv != 0)
			fail_msg("read group %" PRIu64 " from %" PRIu64 ": %s: %s", group, index,
				 err_str(rv), wal_why(&fx->wal));
		assert_true(read.entries_count > 0);
		for (uint32_t i = 0; i < read.entries_count; i++, index++) {
			const struct wal_entry *e = &read.entries[i];
			uint32_t size =
			    io_test_payload(group, index, m->terms[index], PAYLOAD_MAX, expect);

			assert_int_equal(e->term, m->terms[index]);
			assert_int_equal(e->type, index % 3);
			assert_int_equal(e->size, size);
			assert_memory_equal(e->data, expect, size);
		}
		wal_read_release(&read);
	}
}

/* Read or write bytes of a segment file behind the WAL's back. */
static void fx_file_io(struct fx *fx, uint64_t seq, uint64_t offset, void *buf, size_t size,
		       bool write)
{
	char path[512], name[SEGMENT_NAME_SIZE];
	int fd;
	ssize_t n;

	segment_name(name, seq);
	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	n = write ? pwrite(fd, buf, size, (off_t)offset) : pread(fd, buf, size, (off_t)offset);
	assert_int_equal(n, (ssize_t)size);
	close(fd);
}

static void fx_flip_bit(struct fx *fx, uint64_t seq, uint64_t offset)
{
	uint8_t byte;

	fx_file_io(fx, seq, offset, &byte, 1, false);
	byte ^= 0x10;
	fx_file_io(fx, seq, offset, &byte, 1, true);
}

static const struct found_record *fx_find(struct fx *fx, uint64_t group, uint64_t first_index)
{
	for (uint32_t i = 0; i < fx->found_count; i++) {
		if (fx->found[i].group == group && fx->found[i].first_index == first_index &&
		    fx->found[i].type == SEGMENT_RECORD_ENTRIES)
			return &fx->found[i];
	}
	return NULL;
}

/* Tests */

/* Entries, hard state and marks of several groups survive a reopen. */
static void test_records_survive_reopen(void **state)
{
	struct fx *fx = *state;
	struct wal_hard hard = {.term = 3, .vote = 2, .commit = 17};
	const struct wal_group *g;

	for (uint64_t group = 1; group < 4; group++)
		fx_append(fx, group, 1, 40, 1);
	assert_int_equal(wal_append_hard(&fx->wal, 2, &hard), 0);
	assert_int_equal(wal_append_mark(&fx->wal, 3, 10, 1), 0);
	fx->model[3].first = 11;
	fx_sync(fx);
	fx_reopen(fx);
	for (uint64_t group = 1; group < 4; group++)
		fx_check_group(fx, group);
	g = wal_group_find(&fx->wal, 2);
	assert_true(g->has_hard);
	assert_int_equal(g->hard.term, 3);
	assert_int_equal(g->hard.vote, 2);
	assert_int_equal(g->hard.commit, 17);
	g = wal_group_find(&fx->wal, 3);
	assert_int_equal(g->mark_index, 10);
	assert_int_equal(g->mark_term, 1);
	assert_false(fx->wal.stats.torn);
}

/* One flush writes the records of every group appended before it as one
 * batch: one write, one fdatasync. */
static void test_group_commit_uses_one_fsync_per_batch(void **state)
{
	struct fx *fx = *state;
	uint64_t fsyncs = fx->wal.stats.fsyncs;

	for (uint64_t group = 1; group < GROUPS_MAX; group++)
		fx_append(fx, group, 1, 2, 1);
	assert_int_equal(wal_position(&fx->wal), 1);
	fx_sync(fx);
	assert_int_equal(fx->wal.stats.fsyncs - fsyncs, 1);
	assert_int_equal(fx->durable, 1);
}

/* An append starting inside the log replaces the suffix from there, and
 * the replacement is what recovery rebuilds. */
static void test_overwrite_replaces_suffix(void **state)
{
	struct fx *fx = *state;
	uint64_t term;

	fx_append(fx, 1, 1, 10, 1);
	fx_sync(fx);
	fx_append(fx, 1, 6, 3, 2);
	fx_sync(fx);
	assert_int_equal(wal_group_find(&fx->wal, 1)->last_index, 8);
	fx_reopen(fx);
	fx_check_group(fx, 1);
	assert_int_equal(wal_term(&fx->wal, 1, 5, &term), 0);
	assert_int_equal(term, 1);
	assert_int_equal(wal_term(&fx->wal, 1, 6, &term), 0);
	assert_int_equal(term, 2);
	assert_int_equal(wal_term(&fx->wal, 1, 9, &term), -ERANGE);
}

/* One append whose entries change term is stored one record per term. */
static void test_entries_of_several_terms_keep_their_terms(void **state)
{
	struct fx *fx = *state;
	struct wal_entry entries[6];
	uint8_t bytes[6][PAYLOAD_MAX];
	uint64_t terms[6] = {1, 1, 2, 2, 2, 5};

	for (int i = 0; i < 6; i++) {
		entries[i] = (struct wal_entry){terms[i], (uint32_t)(i + 1) % 3, 0, bytes[i]};
		entries[i].size =
		    io_test_payload(1, (uint64_t)i + 1, terms[i], PAYLOAD_MAX, bytes[i]);
		fx->model[1].terms[i + 1] = terms[i];
	}
	fx->model[1].last = 6;
	assert_int_equal(wal_append_entries(&fx->wal, 1, 1, entries, 6), 0);
	fx_sync(fx);
	fx_reopen(fx);
	fx_check_group(fx, 1);
	assert_int_equal(wal_group_find(&fx->wal, 1)->runs_count, 3);
}

/* Appends that would leave a hole, or write below the mark, are refused. */
static void test_append_refuses_holes_and_compacted_indexes(void **state)
{
	struct fx *fx = *state;
	struct wal_entry entry = {.term = 1, .size = 1, .data = "x"};

	fx_append(fx, 1, 1, 5, 1);
	assert_int_equal(wal_append_entries(&fx->wal, 1, 7, &entry, 1), WAL_ERR_GAP);
	assert_int_equal(wal_append_entries(&fx->wal, 2, 2, &entry, 1), WAL_ERR_GAP);
	assert_int_equal(wal_append_mark(&fx->wal, 1, 3, 1), 0);
	assert_int_equal(wal_append_entries(&fx->wal, 1, 3, &entry, 1), -EINVAL);
	assert_int_equal(wal_append_mark(&fx->wal, 1, 2, 1), -EINVAL);
	assert_int_equal(wal_append_entries(&fx->wal, 1, 1, &entry, 0), -EINVAL);
}

/* A snapshot mark whose term differs from the log's drops the whole log
 * (§7); one that matches keeps the entries after it. */
static void test_mark_keeps_or_drops_the_log_by_term(void **state)
{
	struct fx *fx = *state;

	fx_append(fx, 1, 1, 10, 1);
	fx_append(fx, 2, 1, 10, 1);
	assert_int_equal(wal_append_mark(&fx->wal, 1, 4, 1), 0);
	assert_int_equal(wal_append_mark(&fx->wal, 2, 4, 7), 0);
	fx->model[1].first = 5;
	fx->model[2].first = 5;
	fx->model[2].last = 4;
	fx_sync(fx);
	fx_reopen(fx);
	fx_check_group(fx, 1);
	fx_check_group(fx, 2);
	assert_int_equal(wal_group_find(&fx->wal, 2)->mark_term, 7);
	fx_append(fx, 2, 5, 3, 7);
	fx_sync(fx);
	fx_reopen(fx);
	fx_check_group(fx, 2);
}

/* A removed group stays removed across a reopen, and may start over. */
static void test_removed_group_stays_removed(void **state)
{
	struct fx *fx = *state;

	fx_append(fx, 1, 1, 10, 1);
	fx_append(fx, 2, 1, 10, 1);
	assert_int_equal(wal_append_removed(&fx->wal, 1), 0);
	fx_sync(fx);
	fx_reopen(fx);
	assert_true(wal_group_find(&fx->wal, 1)->removed);
	fx_check_group(fx, 2);
	fx->model[1].last = 0;
	fx_append(fx, 1, 1, 3, 4);
	fx_sync(fx);
	fx_reopen(fx);
	assert_false(wal_group_find(&fx->wal, 1)->removed);
	fx_check_group(fx, 1);
}

/* A record cut short at the end of the last segment is a torn write: it is
 * dropped, the rest recovers, and the WAL goes on appending. */
static void test_torn_tail_is_truncated(void **state)
{
	struct fx *fx = *state;
	const struct wal_segment *tail;
	uint64_t seq, end;
	uint8_t junk[40];

	for (int i = 0; i < 5; i++) {
		fx_append(fx, 1, (uint64_t)i * 10 + 1, 10, 1);
		fx_sync(fx);
	}
	fx_append(fx, 2, 1, 1, 1);
	fx_sync(fx);
	fx_reopen(fx);
	tail = wal_segment_at(&fx->wal, fx->wal.segments_count - 1);
	seq = tail->seq;
	assert_non_null(fx_find(fx, 2, 1));
	assert_int_equal(fx_find(fx, 2, 1)->seq, seq);
	end = fx_find(fx, 2, 1)->offset + SEGMENT_RECORD_HEADER_SIZE + 8;
	wal_deinit(&fx->wal);
	/* Scribble over the last entries record, as a torn sector would. */
	memset(junk, 0xa5, sizeof(junk));
	fx_file_io(fx, seq, end, junk, sizeof(junk), true);
	assert_int_equal(fx_open(fx), 0);
	assert_true(fx->wal.stats.torn);
	assert_int_equal(fx->wal.stats.torn_seq, seq);
	assert_null(wal_group_find(&fx->wal, 2));
	fx_check_group(fx, 1);
	fx->model[2].last = 0;
	fx_append(fx, 2, 1, 4, 2);
	fx_sync(fx);
	fx_reopen(fx);
	assert_false(fx->wal.stats.torn);
	fx_check_group(fx, 1);
	fx_check_group(fx, 2);
}

/* Fill several segments. */
static void fx_fill_segments(struct fx *fx, uint32_t segments)
{
	uint64_t next = 1;

	while (fx->wal.segments_count < segments) {
		fx_append(fx, 1, next, 20, 1);
		next += 20;
		fx_sync(fx);
	}
}

/* A bad record in a segment that is not the last is corruption: the WAL
 * refuses to open and names the segment, offset and group. */
static void test_mid_log_corruption_is_refused(void **state)
{
	struct fx *fx = *state;
	char name[SEGMENT_NAME_SIZE];
	uint64_t seq;
	int rv;

	fx_fill_segments(fx, 4);
	seq = fx->wal.segments[1].seq;
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, 50000);
	rv = fx_open(fx);
	assert_int_equal(rv, WAL_ERR_CORRUPT);
	segment_name(name, seq);
	assert_non_null(strstr(wal_why(&fx->wal), name));
	assert_non_null(strstr(wal_why(&fx->wal), "offset"));
	assert_non_null(strstr(wal_why(&fx->wal), "group 1"));
	/* Still refused on a second try: nothing was "repaired". */
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
}

/* Groups 1..3 interleaved until segments segments exist, all durable. */
static void fx_fill_groups(struct fx *fx, uint32_t segments)
{
	while (fx->wal.segments_count < segments) {
		for (uint64_t g = 1; g <= 3; g++)
			fx_append(fx, g, fx->model[g].last + 1, 7, 1);
		fx_sync(fx);
	}
}

/* The first record of type and group in segment seq (0: any), as the last
 * recovery saw it. */
static const struct found_record *fx_find_in(struct fx *fx, uint64_t seq, uint64_t group,
					     uint16_t type)
{
	for (uint32_t i = 0; i < fx->found_count; i++) {
		if ((seq == 0 || fx->found[i].seq == seq) && fx->found[i].group == group &&
		    fx->found[i].type == type)
			return &fx->found[i];
	}
	return NULL;
}

/* Salvage: a bit flipped in the payload of a record in a closed segment
 * damages that record's group alone (its header still verifies), from the
 * record's first index; every other group is intact and nothing of the
 * damaged group is returned. A reset and new entries then win over the
 * damaged record, which stays on disk, on every later recovery. */
static void test_salvage_names_the_group_of_a_bad_payload(void **state)
{
	struct fx *fx = *state;
	const struct found_record *bad;
	const struct wal_group *g;
	struct wal_stats stats;
	uint64_t seq, first;

	fx_fill_groups(fx, 4);
	fx_reopen(fx); /* To learn where records are. */
	seq = fx->wal.segments[1].seq;
	bad = fx_find_in(fx, seq, 2, SEGMENT_RECORD_ENTRIES);
	assert_non_null(bad);
	first = bad->first_index;
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, bad->offset + SEGMENT_RECORD_HEADER_SIZE + 12);
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT); /* Without salvage: refused. */
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	g = wal_group_find(&fx->wal, 2);
	assert_true(g->damaged);
	assert_int_equal(g->damaged_index, first);
	assert_int_equal(g->last_index, g->mark_index); /* No entry of it is served. */
	assert_int_equal(g->first_index, g->mark_index + 1);
	assert_non_null(strstr(wal_why(&fx->wal), "group 2"));
	wal_stats_get(&fx->wal, &stats);
	assert_int_equal(stats.damaged_groups, 1);
	assert_false(stats.damaged_unnamed);
	for (uint64_t other = 1; other <= 3; other += 2) {
		assert_false(wal_group_find(&fx->wal, other)->damaged);
		fx_check_group(fx, other);
	}
	/* Repair: reset to a mark, say the group repairs, and write its log
	 * again; a restart before the repair ends finds it still repairing. */
	assert_int_equal(wal_append_reset(&fx->wal, 2, 0, 0), 0);
	assert_int_equal(wal_append_hard(&fx->wal, 2, &(struct wal_hard){3, 1, 0, true}), 0);
	fx_sync(fx);
	fx_reopen(fx);
	g = wal_group_find(&fx->wal, 2);
	assert_false(g->damaged);
	assert_true(g->has_hard && g->hard.repairing);
	assert_int_equal(g->hard.term, 3);
	fx->model[2].first = 1;
	fx->model[2].last = 0;
	fx_append(fx, 2, 1, 30, 4);
	assert_int_equal(wal_append_hard(&fx->wal, 2, &(struct wal_hard){4, 1, 30, false}), 0);
	fx_sync(fx);
	for (int round = 0; round < 2; round++) {
		fx_reopen(fx);
		assert_false(wal_group_find(&fx->wal, 2)->damaged);
		assert_false(wal_group_find(&fx->wal, 2)->hard.repairing);
		for (uint64_t k = 1; k <= 3; k++)
			fx_check_group(fx, k);
		wal_stats_get(&fx->wal, &stats);
		assert_int_equal(stats.damaged_records, 1); /* Still on disk, superseded. */
		assert_int_equal(stats.damaged_groups, 0);
	}
}

/* Salvage: when the header of a record is damaged too, its group cannot be
 * named: every group is damaged and recovery resumes after it. */
static void test_salvage_damages_every_group_on_a_bad_header(void **state)
{
	struct fx *fx = *state;
	const struct found_record *bad;
	struct wal_stats stats;
	uint64_t seq;

	fx_fill_groups(fx, 4);
	fx_reopen(fx);
	seq = fx->wal.segments[1].seq;
	bad = fx_find_in(fx, seq, 3, SEGMENT_RECORD_ENTRIES);
	assert_non_null(bad);
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, bad->offset + 9); /* The group id. */
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	wal_stats_get(&fx->wal, &stats);
	assert_true(stats.damaged_unnamed);
	assert_int_equal(stats.damaged_groups, 3);
	assert_non_null(strstr(wal_why(&fx->wal), "every group"));
	for (uint64_t k = 1; k <= 3; k++) {
		const struct wal_group *g = wal_group_find(&fx->wal, k);

		assert_true(g->damaged);
		assert_int_equal(g->last_index, g->mark_index);
	}
	/* Appends go on after the damage, and a reset heals each group. */
	for (uint64_t k = 1; k <= 3; k++) {
		assert_int_equal(wal_append_reset(&fx->wal, k, 0, 0), 0);
		fx->model[k].first = 1;
		fx->model[k].last = 0;
		fx_append(fx, k, 1, 5, 7);
	}
	fx_sync(fx);
	fx_reopen(fx);
	for (uint64_t k = 1; k <= 3; k++) {
		assert_false(wal_group_find(&fx->wal, k)->damaged);
		fx_check_group(fx, k);
	}
}

/* A vote lives in one record; if that record's header is damaged, salvage
 * cannot tell whose vote it was. The WAL writes every hard state twice, so
 * the vote survives a flip in either copy's header: a member never forgets a
 * vote and casts it again in the same term. */
static void test_salvage_keeps_a_vote_whose_record_header_is_damaged(void **state)
{
	struct fx *fx = *state;
	const struct found_record *vote;
	const struct wal_group *g;
	uint64_t seq, offset;

	fx_fill_groups(fx, 2);
	assert_int_equal(wal_append_hard(&fx->wal, 2, &(struct wal_hard){9, 3, 0, false}), 0);
	fx_sync(fx);
	fx_fill_groups(fx, 4);
	fx_reopen(fx);
	vote = fx_find_in(fx, 0, 2, SEGMENT_RECORD_HARD); /* The first copy. */
	assert_non_null(vote);
	seq = vote->seq;
	offset = vote->offset;
	assert_int_not_equal(seq, fx->wal.segments[fx->wal.segments_count - 1].seq);
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, offset + 9); /* The group id of the first copy. */
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	g = wal_group_find(&fx->wal, 2);
	assert_true(g->damaged); /* Every group repairs after an unnamed record, */
	assert_true(g->has_hard);
	assert_int_equal(g->hard.term, 9); /* but its vote is still known. */
	assert_int_equal(g->hard.vote, 3);
}

/* A bit flipped in the header of the segment being written must not make
 * it pass for a spare (whose durable records would then vanish without a
 * word): recovery refuses it, and salvage reads it and repairs every group. */
static void test_damaged_tail_header_is_not_a_spare(void **state)
{
	struct fx *fx = *state;
	struct wal_stats stats;
	uint64_t seq;

	fx_fill_groups(fx, 3);
	fx_append(fx, 1, fx->model[1].last + 1, 3, 1);
	fx_sync(fx);
	seq = fx->wal.segments[fx->wal.segments_count - 1].seq;
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, 17); /* In the segment header's size field. */
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
	assert_non_null(strstr(wal_why(&fx->wal), "header fails verification"));
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	wal_stats_get(&fx->wal, &stats);
	assert_true(stats.damaged_unnamed);
	assert_int_equal(stats.damaged_groups, 3);
	assert_non_null(strstr(wal_why(&fx->wal), "every group"));
	/* Repaired groups write on, in a new segment, and stay whole. */
	for (uint64_t k = 1; k <= 3; k++) {
		assert_int_equal(wal_append_reset(&fx->wal, k, 0, 0), 0);
		fx->model[k].first = 1;
		fx->model[k].last = 0;
		fx_append(fx, k, 1, 5, 7);
	}
	fx_sync(fx);
	assert_int_not_equal(fx->wal.segments[fx->wal.segments_count - 1].seq, seq);
	fx_reopen(fx);
	for (uint64_t k = 1; k <= 3; k++) {
		assert_false(wal_group_find(&fx->wal, k)->damaged);
		fx_check_group(fx, k);
	}
}

/* A bad record in the last segment followed by a later batch is not a torn
 * tail: that batch was written after this one was durable. */
static void test_bad_record_before_later_batches_is_refused(void **state)
{
	struct fx *fx = *state;
	uint64_t seq;

	fx_append(fx, 1, 1, 5, 1);
	fx_sync(fx);
	for (int i = 0; i < 3; i++) {
		fx_append(fx, 1, 6 + (uint64_t)i * 5, 5, 1);
		fx_sync(fx);
	}
	seq = fx->wal.segments[fx->wal.segments_count - 1].seq;
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, SEGMENT_HEADER_SIZE + SEGMENT_RECORD_HEADER_SIZE + 20);
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
	assert_non_null(strstr(wal_why(&fx->wal), "later batch"));
}

/* The last batch of the tail segment: three groups' records and its END. */
struct tail_batch {
	uint64_t seq;
	struct found_record records[3]; /* Groups 1, 2, 3 in write order. */
	struct found_record end;
};

/* Write four batches of groups 1..3, all durable and so acknowledged, and
 * find the records of the last one as recovery sees them. */
static void fx_tail_batch(struct fx *fx, struct tail_batch *tail)
{
	for (int round = 0; round < 4; round++) {
		for (uint64_t g = 1; g <= 3; g++)
			fx_append(fx, g, fx->model[g].last + 1, 7, 1);
		fx_sync(fx);
	}
	fx_reopen(fx);
	memset(tail, 0, sizeof(*tail));
	tail->seq = fx->wal.segments[fx->wal.segments_count - 1].seq;
	for (uint32_t i = 0; i < fx->found_count; i++) {
		const struct found_record *r = &fx->found[i];

		if (r->type == SEGMENT_RECORD_ENTRIES && r->group >= 1 && r->group <= 3)
			tail->records[r->group - 1] = *r;
		if (r->type == SEGMENT_RECORD_END)
			tail->end = *r;
	}
	assert_int_equal(tail->end.seq, tail->seq);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(tail->records[k].seq, tail->seq);
		assert_true(tail->records[k].offset < tail->end.offset);
		assert_true(k == 0 || tail->records[k - 1].offset < tail->records[k].offset);
	}
	wal_deinit(&fx->wal);
}

/* A bit flipped in the payload of group's record in the last batch, after
 * that batch was durable: without salvage the WAL refuses to open, naming
 * the segment and offset; with salvage that group alone is damaged from the
 * record's first index (nothing is cut), and every other group is whole. */
static void fx_tail_flip_is_damage(struct fx *fx, uint64_t group)
{
	char name[SEGMENT_NAME_SIZE], offset[32];
	struct tail_batch tail;
	const struct wal_group *g;
	uint64_t first, at;

	fx_tail_batch(fx, &tail);
	first = tail.records[group - 1].first_index;
	at = tail.records[group - 1].offset;
	fx_flip_bit(fx, tail.seq, at + SEGMENT_RECORD_HEADER_SIZE + 12);
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
	segment_name(name, tail.seq);
	snprintf(offset, sizeof(offset), "offset %" PRIu64, at);
	assert_non_null(strstr(wal_why(&fx->wal), name));
	assert_non_null(strstr(wal_why(&fx->wal), offset));
	assert_non_null(strstr(wal_why(&fx->wal), "not a torn write"));
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	assert_false(fx->wal.stats.torn);
	g = wal_group_find(&fx->wal, group);
	assert_true(g->damaged);
	assert_int_equal(g->damaged_index, first);
	assert_int_equal(g->damaged_seq, tail.seq);
	assert_int_equal(g->damaged_offset, at);
	assert_int_equal(g->last_index, g->mark_index); /* Repaired from peers. */
	for (uint64_t k = 1; k <= 3; k++) {
		if (k == group)
			continue;
		assert_false(wal_group_find(&fx->wal, k)->damaged);
		fx_check_group(fx, k);
	}
}

/* The last entries record of the last batch: only its END record follows. */
static void test_tail_flip_in_last_record_is_damage(void **state)
{
	fx_tail_flip_is_damage(*state, 3);
}

/* A record in the middle of the last batch. */
static void test_tail_flip_in_middle_record_is_damage(void **state)
{
	fx_tail_flip_is_damage(*state, 2);
}

/* A bit flipped in the END record alone loses nothing: it is cut. */
static void test_tail_flip_in_end_record_loses_nothing(void **state)
{
	struct fx *fx = *state;
	struct tail_batch tail;
	struct wal_stats stats;

	fx_tail_batch(fx, &tail);
	fx_flip_bit(fx, tail.seq, tail.end.offset + 20);
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	wal_stats_get(&fx->wal, &stats);
	assert_int_equal(stats.damaged_groups, 0);
	for (uint64_t k = 1; k <= 3; k++)
		fx_check_group(fx, k);
	/* And it writes on and recovers again. */
	fx_append(fx, 1, fx->model[1].last + 1, 3, 1);
	fx_sync(fx);
	fx_reopen(fx);
	for (uint64_t k = 1; k <= 3; k++)
		fx_check_group(fx, k);
}

/* An END record whose header is damaged before later batches: refused
 * without salvage (damage, not a torn write); salvage steps over it and
 * damages no group, since an END record holds nothing. */
static void test_salvage_steps_over_a_bad_end_record(void **state)
{
	struct fx *fx = *state;
	struct tail_batch tail;
	const struct found_record *end = NULL;
	uint64_t offset;
	struct wal_stats stats;

	fx_tail_batch(fx, &tail);
	assert_int_equal(fx_open(fx), 0);
	for (uint32_t i = 0; i < fx->found_count && end == NULL; i++) {
		if (fx->found[i].type == SEGMENT_RECORD_END && fx->found[i].seq == tail.seq)
			end = &fx->found[i];
	}
	assert_non_null(end);
	offset = end->offset;
	assert_true(offset < tail.end.offset); /* Not the last batch's. */
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, tail.seq, offset + 20); /* Its header: no group named. */
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
	fx->config.salvage = true;
	assert_int_equal(fx_open(fx), 0);
	wal_stats_get(&fx->wal, &stats);
	assert_int_equal(stats.damaged_records, 1);
	assert_int_equal(stats.damaged_groups, 0);
	assert_false(stats.damaged_unnamed);
	for (uint64_t k = 1; k <= 3; k++)
		fx_check_group(fx, k);
}

/* A torn last batch (its bytes zero from a sector boundary inside it to
 * its end, END included) is cut as a torn write under salvage: the
 * records before the tear stay, the ones after are gone, no group is
 * damaged. */
static void test_tail_tear_is_cut(void **state)
{
	struct fx *fx = *state;
	struct tail_batch tail;
	uint64_t from, to, size, cut[3];
	uint8_t *zeros;

	fx_tail_batch(fx, &tail);
	/* A sector boundary inside group 2's record, past its header. */
	from = ((tail.records[1].offset + SEGMENT_RECORD_HEADER_SIZE) / 512 + 1) * 512;
	assert_true(from < tail.records[2].offset);
	to = tail.end.offset + SEGMENT_RECORD_HEADER_SIZE + WAL_BLOCK_SIZE; /* Any PAD too. */
	size = fx->config.segment_size;
	to = to < size ? to : size;
	zeros = calloc(1, to - from);
	assert_non_null(zeros);
	fx_file_io(fx, tail.seq, from, zeros, to - from, true);
	free(zeros);
	for (int k = 1; k < 3; k++)
		cut[k] = tail.records[k].first_index;
	fx->config.salvage = true;
	for (int round = 0; round < 2; round++) {
		assert_int_equal(fx_open(fx), 0);
		/* The first open cuts the torn batch for good. */
		assert_int_equal(fx->wal.stats.torn, round == 0);
		assert_true(round == 1 || fx->wal.stats.torn_seq == tail.seq);
		assert_true(round == 1 || fx->wal.stats.torn_offset == tail.records[1].offset);
		for (int k = 1; k < 3; k++)
			fx->model[k + 1].last = cut[k] - 1;
		for (uint64_t k = 1; k <= 3; k++) {
			assert_false(wal_group_find(&fx->wal, k)->damaged);
			fx_check_group(fx, k);
		}
		wal_deinit(&fx->wal);
	}
	assert_int_equal(fx_open(fx), 0);
}

/* A damaged segment header before later segments is corruption too. */
static void test_bad_segment_header_is_refused(void **state)
{
	struct fx *fx = *state;
	uint64_t seq;

	fx_fill_segments(fx, 3);
	seq = fx->wal.segments[0].seq;
	wal_deinit(&fx->wal);
	fx_flip_bit(fx, seq, 30);
	assert_int_equal(fx_open(fx), WAL_ERR_CORRUPT);
}

/* A record whose first index leaves a hole in its group's log (and no mark
 * covers it) is refused as a gap, naming the group. */
static void test_index_gap_is_refused(void **state)
{
	struct fx *fx = *state;
	const struct found_record *found;
	uint8_t rec[SEGMENT_RECORD_HEADER_SIZE + 64 * (PAYLOAD_MAX + 8) + 64];
	struct segment_record record;
	uint64_t seq, offset, first_index = 8;
	uint32_t size;

	fx_append(fx, 5, 1, 5, 1);
	fx_sync(fx);
	fx_append(fx, 5, 6, 5, 1);
	fx_sync(fx);
	fx_reopen(fx);
	found = fx_find(fx, 5, 6);
	assert_non_null(found);
	seq = found->seq;
	offset = found->offset;
	wal_deinit(&fx->wal);
	/* Rewrite the record's first index and checksum it again: it is a
	 * valid record that skips indexes 6 and 7. */
	fx_file_io(fx, seq, offset, rec, SEGMENT_RECORD_HEADER_SIZE, false);
	memcpy(&size, rec + 40, sizeof(size));
	fx_file_io(fx, seq, offset, rec, segment_record_size(size), false);
	memcpy(rec + 16, &first_index, sizeof(first_index));
	segment_record_seal(rec, seq);
	assert_int_equal(segment_record_get(rec, sizeof(rec), seq, &record), 0);
	fx_file_io(fx, seq, offset, rec, segment_record_size(size), true);
	assert_int_equal(fx_open(fx), WAL_ERR_GAP);
	assert_non_null(strstr(wal_why(&fx->wal), "group 5"));
}

/* Read-back crosses segment boundaries and comes from the files once the
 * batches left the cache. */
static void test_read_back_across_segments(void **state)
{
	struct fx *fx = *state;
	uint64_t seq_first, seq_last;

	for (uint64_t i = 0; i < 60; i++) {
		fx_append(fx, 1, i * 50 + 1, 50, 1 + i / 20);
		fx_append(fx, 2, i * 5 + 1, 5, 1);
		fx_sync(fx);
	}
	assert_true(fx->wal.segments_count >= 3);
	seq_first = wal_group_find(&fx->wal, 1)->runs[0].seq;
	seq_last = fx->wal.segments[fx->wal.segments_count - 1].seq;
	assert_true(seq_first < seq_last);
	fx_check_group(fx, 1); /* From files and from the cache. */
	fx_check_group(fx, 2);
	fx_reopen(fx); /* After a reopen the cache is empty: all from files. */
	fx_check_group(fx, 1);
}

/* Segments whose groups all compacted past them are recycled as spares or
 * deleted, and the WAL reuses the recycled files. */
static void test_compaction_recycles_segments(void **state)
{
	struct fx *fx = *state;
	struct wal_pin pins[8];
	uint32_t pins_count;
	uint64_t next = 1, created;

	fx_fill_segments(fx, 5);
	next = fx->model[1].last + 1;
	assert_int_equal(wal_append_mark(&fx->wal, 1, next - 1, 1), 0);
	fx->model[1].first = next;
	assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	fx_sync(fx);
	assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	assert_int_equal(fx->wal.segments_count, 1);
	assert_true(fx->wal.stats.segments_recycled >= 1);
	created = fx->wal.stats.segments_created;
	/* Writing on uses the recycled files before creating any. */
	for (int i = 0; i < 3 * 20; i++) {
		fx_append(fx, 1, next, 20, 1);
		next += 20;
		fx_sync(fx);
		assert_int_equal(wal_append_mark(&fx->wal, 1, next - 1, 1), 0);
		fx->model[1].first = next;
		assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	}
	assert_int_equal(fx->wal.stats.segments_created, created);
	fx_sync(fx);
	fx_reopen(fx);
	fx_check_group(fx, 1);
	/* Recycled files hold old records under an old seed: they never verify
	 * as records of their new name. */
	assert_false(fx->wal.stats.torn);
}

/* A group that wrote once and went idle would pin the oldest segment for
 * ever: reclaim rewrites it forward (it is small) and the segment goes. */
static void test_idle_group_is_rewritten_forward(void **state)
{
	struct fx *fx = *state;
	struct wal_hard hard = {.term = 9, .vote = 1, .commit = 2};
	struct wal_pin pins[8];
	uint32_t pins_count;
	bool rewritten = false;
	uint64_t next = 1;

	fx_append(fx, 3, 1, 4, 9);
	assert_int_equal(wal_append_hard(&fx->wal, 3, &hard), 0);
	for (int i = 0; i < 400; i++) {
		fx_append(fx, 1, next, 20, 1);
		next += 20;
		fx_sync(fx);
		assert_int_equal(wal_append_mark(&fx->wal, 1, next - 1, 1), 0);
		fx->model[1].first = next;
		assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
		for (uint32_t p = 0; p < pins_count; p++) {
			assert_int_equal(pins[p].group, 3);
			assert_int_equal(pins[p].action, WAL_PIN_REWRITTEN);
			rewritten = true;
		}
		assert_true(fx->wal.segments_count <= fx->config.segments_soft_max + 2);
	}
	assert_true(rewritten);
	fx_sync(fx);
	fx_reopen(fx);
	fx_check_group(fx, 3);
	fx_check_group(fx, 1);
	assert_int_equal(wal_group_find(&fx->wal, 3)->hard.term, 9);
}

/* A pinning group with too much live data is reported for a snapshot. */
static void test_large_pinning_group_is_asked_to_snapshot(void **state)
{
	struct fx *fx = *state;
	struct wal_pin pins[8];
	uint32_t pins_count;
	bool asked = false;
	uint64_t next = 1;

	fx_append(fx, 3, 1, 100, 1); /* ~15 KiB live, over rewrite_size_max. */
	for (int i = 0; i < 400 && !asked; i++) {
		fx_append(fx, 1, next, 20, 1);
		next += 20;
		fx_sync(fx);
		assert_int_equal(wal_append_mark(&fx->wal, 1, next - 1, 1), 0);
		fx->model[1].first = next;
		assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
		for (uint32_t p = 0; p < pins_count; p++) {
			assert_int_equal(pins[p].group, 3);
			assert_int_equal(pins[p].action, WAL_PIN_SNAPSHOT);
			assert_true(pins[p].live_size > fx->config.rewrite_size_max);
			asked = true;
		}
	}
	assert_true(asked);
	/* The shard snapshots the group: its mark lets the segments go. */
	assert_int_equal(wal_append_mark(&fx->wal, 3, 100, 1), 0);
	fx->model[3].first = 101;
	fx_sync(fx);
	assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	fx_sync(fx);
	assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	assert_true(fx->wal.segments_count <= 2);
	fx_reopen(fx);
	fx_check_group(fx, 3);
}

/* Compaction that deleted the segments holding a group's early entries is
 * not mistaken for a gap on reopen. */
static void test_compacted_prefix_is_not_a_gap(void **state)
{
	struct fx *fx = *state;
	struct wal_pin pins[8];
	uint32_t pins_count;

	fx_fill_segments(fx, 4);
	fx_append(fx, 2, 1, 3, 1);
	assert_int_equal(wal_append_mark(&fx->wal, 1, fx->model[1].last - 10, 1), 0);
	fx->model[1].first = fx->model[1].last - 9;
	fx_sync(fx);
	assert_int_equal(wal_reclaim(&fx->wal, pins, 8, &pins_count), 0);
	assert_true(fx->wal.stats.segments_recycled + fx->wal.stats.segments_deleted >= 2);
	fx_reopen(fx);
	fx_check_group(fx, 1);
	fx_check_group(fx, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_records_survive_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit_uses_one_fsync_per_batch, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_overwrite_replaces_suffix, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_entries_of_several_terms_keep_their_terms,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_append_refuses_holes_and_compacted_indexes,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mark_keeps_or_drops_the_log_by_term, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_removed_group_stays_removed, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail_is_truncated, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mid_log_corruption_is_refused, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_record_before_later_batches_is_refused,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_salvage_names_the_group_of_a_bad_payload, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_salvage_damages_every_group_on_a_bad_header,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(
		test_salvage_keeps_a_vote_whose_record_header_is_damaged, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_tail_header_is_not_a_spare, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tail_flip_in_last_record_is_damage, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tail_flip_in_middle_record_is_damage, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tail_flip_in_end_record_loses_nothing, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tail_tear_is_cut, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_salvage_steps_over_a_bad_end_record, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_segment_header_is_refused, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_index_gap_is_refused, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_read_back_across_segments, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_compaction_recycles_segments, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_idle_group_is_rewritten_forward, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_large_pinning_group_is_asked_to_snapshot, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_compacted_prefix_is_not_a_gap, fx_setup,
					    fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
