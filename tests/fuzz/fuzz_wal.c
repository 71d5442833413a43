/* Fuzz target: WAL recovery (io/wal_recover.c, io/segment.c) from a directory of
 * segment files built from the input, then read-back of every group.
 *
 * INPUT: u8 flags, then up to FUZZ_WAL_FILES files, each
 *    u8 seq          the file is segment 1 + seq % 6 ("%016x.wal")
 *    u8 fix          bit 0: rewrite the 64-byte header with its checksum
 *                    (fields as given, magic and version made right);
 *                    bit 1: seal every plausible record from offset 64 on
 *                    (checksum seeded with seq); bit 2: make the header's
 *                    seq and size those of the file (size rounded down to 8);
 *                    bit 3: then flip a bit in the first record's payload
 *                    (its header still verifies: a damaged record to salvage)
 *    u16 size        bytes of the file (at most FUZZ_WAL_FILE_SIZE_MAX)
 *    size bytes      (fewer if the input ends)
 * flags bit 0: open read-only. bit 1 (not read-only): after recovery append
 * entries and a hard state to one group, sync, reopen, and compare. bit 2:
 * salvage (damaged groups are reported, not refused; before appending,
 * each damaged group is reset to its mark).
 *
 * The fuzzer cannot forge XXH3 checksums, so the harness seals what it is
 * told to seal; unsealed bytes exercise the corruption paths.
 *
 * Checks: no crash; a refused WAL says why; a recovered WAL reads back
 * every live entry of every group; the term of each live index is known;
 * and what recovery, one append and a reopen give is the same state. */
#include <errno.h>

#include <xxhash.h>

#include "base/err.h"
#include "base/le.h"
#include "io/loop.h"
#include "io/segment.h"
#include "io/wal.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_WAL_FILES         4
#define FUZZ_WAL_FILE_SIZE_MAX 4096
#define FUZZ_WAL_TERMS_MAX     512 /* wal_term() calls per input. */

struct fuzz_wal_group {
	uint64_t group, first_index, last_index, mark_index, mark_term;
	struct wal_hard hard;
	bool has_hard;
	bool damaged;
};

static struct loop fuzz_loop;
static int fuzz_loop_state; /* 0: not tried; 1: up; -1: no io_uring here. */

static struct loop *fuzz_wal_loop(void)
{
	struct loop_config config = {.sq_entries = 64};

	if (fuzz_loop_state == 0)
		fuzz_loop_state = loop_init(&fuzz_loop, &config) == 0 ? 1 : -1;
	return fuzz_loop_state == 1 ? &fuzz_loop : NULL;
}

static void fuzz_wal_fix(uint8_t *buf, size_t *size, uint64_t seq, uint8_t fix)
{
	if (fix & 4) {
		*size &= ~(size_t)7;
		if (*size >= SEGMENT_HEADER_SIZE) {
			le_put64(buf + 24, seq);
			le_put64(buf + 32, *size);
		}
	}
	if ((fix & 1) && *size >= SEGMENT_HEADER_SIZE) {
		struct segment_header h = {.batch_size_max = le_get32(buf + 20),
					   .seq = le_get64(buf + 24),
					   .size = le_get64(buf + 32),
					   .prev_end = le_get64(buf + 40),
					   .first_batch = le_get64(buf + 48),
					   .prev_seq = le_get64(buf + 56)};

		segment_header_put(buf, &h);
	}
	if (fix & 2) {
		size_t off = SEGMENT_HEADER_SIZE;
		struct segment_record r;

		while (off + SEGMENT_RECORD_HEADER_SIZE <= *size &&
		       segment_record_peek(buf + off, *size - off, &r) == 0) {
			uint32_t record_size = segment_record_size(r.size);

			if (record_size > *size - off)
				break;
			segment_record_seal(buf + off, seq);
			off += record_size;
		}
	}
	if ((fix & 8) && *size > SEGMENT_HEADER_SIZE + SEGMENT_RECORD_HEADER_SIZE)
		buf[SEGMENT_HEADER_SIZE + SEGMENT_RECORD_HEADER_SIZE] ^= 1;
}

static bool fuzz_wal_salvage;

static void fuzz_wal_config(struct wal_config *config, bool read_only)
{
	wal_config_default(config);
	config->segment_size = 64u << 10;
	config->batch_size_max = 16u << 10;
	config->buffers_count = 3;
	config->spares_max = 1;
	config->segments_soft_max = 4;
	config->rewrite_size_max = 4096;
	config->read_only = read_only;
	config->salvage = fuzz_wal_salvage;
}

static uint32_t fuzz_wal_snapshot(const struct wal *wal, struct fuzz_wal_group *out, uint32_t max)
{
	const struct wal_group *g = NULL;
	uint32_t n = 0;

	while ((g = wal_group_next(wal, g)) != NULL && n < max) {
		if (g->removed)
			continue;
		out[n++] = (struct fuzz_wal_group){g->group,      g->first_index, g->last_index,
						   g->mark_index, g->mark_term,   g->hard,
						   g->has_hard,   g->damaged};
	}
	return n;
}

/* Every group's live entries read back, and every live index has a term. */
static void fuzz_wal_read_back(struct wal *wal, struct loop *loop)
{
	const struct wal_group *g = NULL;
	uint32_t terms = 0;

	while ((g = wal_group_next(wal, g)) != NULL) {
		struct wal_read read;
		uint64_t group = g->group, first = g->first_index, last = g->last_index;
		int rv;

		if (g->removed)
			continue;
		FUZZ_CHECK(!g->damaged || last == g->mark_index); /* Nothing damaged is served. */
		FUZZ_CHECK(first >= g->mark_index + 1 || last < first);
		for (uint64_t i = first; i <= last && terms < FUZZ_WAL_TERMS_MAX; i++, terms++) {
			uint64_t term;

			FUZZ_CHECK(wal_term(wal, group, i, &term) == 0);
		}
		if (last < first || loop == NULL)
			continue;
		rv = wal_read_sync(wal, &read, group, first, last, 1u << 20);
		FUZZ_CHECK(rv == 0);
		FUZZ_CHECK(read.first_index == first);
		FUZZ_CHECK(read.entries_count >= 1 && read.entries_count <= last - first + 1);
		for (uint32_t i = 0; i < read.entries_count; i++) {
			uint64_t term;

			FUZZ_CHECK(wal_term(wal, group, first + i, &term) == 0);
			FUZZ_CHECK(read.entries[i].term == term);
			if (read.entries[i].size > 0)
				(void)XXH3_64bits(read.entries[i].data, read.entries[i].size);
		}
		wal_read_release(&read);
		g = wal_group_find(wal, group); /* Reads may move the table. */
	}
}

/* Append to the first live group (or a new one), sync, reopen: same state. */
static void fuzz_wal_append_reopen(struct wal *wal, struct loop *loop, const char *dir)
{
	static struct fuzz_wal_group before[64], after[64];
	const struct wal_group *g = NULL;
	struct wal_config config;
	uint64_t group = 1, next = 1;
	struct wal_entry entries[2] = {{.term = 1, .size = 3, .data = "abc"},
				       {.term = 1, .size = 0, .data = NULL}};
	uint32_t n_before, n_after;
	struct wal_stats stats;
	int rv;

	while ((g = wal_group_next(wal, g)) != NULL) {
		if (g->damaged && wal_append_reset(wal, g->group, g->mark_index, g->mark_term) != 0)
			return;
	}
	while ((g = wal_group_next(wal, g)) != NULL && g->removed)
		;
	if (g != NULL) {
		group = g->group;
		next = g->last_index + 1;
		if (next <= g->mark_index)
			next = g->mark_index + 1;
		entries[0].term = entries[1].term = g->hard.term > 0 ? g->hard.term : 1;
	}
	rv = wal_append_entries(wal, group, next, entries, 2);
	if (rv == 0)
		rv = wal_append_hard(wal, group,
				     &(struct wal_hard){.term = entries[0].term, .vote = 1});
	if (rv == 0)
		rv = wal_sync(wal);
	if (rv != 0)
		return; /* Refused cleanly: nothing more to compare. */
	n_before = fuzz_wal_snapshot(wal, before, 64);
	wal_stats_get(wal, &stats);
	wal_deinit(wal);
	fuzz_wal_config(&config, false);
	rv = wal_init(wal, loop, dir, &config);
	if (rv != 0)
		fprintf(stderr, "reopen: %s\n", wal_why(wal));
	FUZZ_CHECK(rv == 0);
	n_after = fuzz_wal_snapshot(wal, after, 64);
	FUZZ_CHECK(n_after == n_before);
	for (uint32_t i = 0; i < n_before; i++) {
		bool found = false;

		for (uint32_t j = 0; j < n_after && !found; j++) {
			if (after[j].group != before[i].group)
				continue;
			found = true;
			/* After damage no record header names (a bad record header or
			 * segment header), groups first seen past it are damaged again
			 * on every recovery until a reset of theirs supersedes it:
			 * they may have lost records there. They serve nothing
			 * (fuzz_wal_read_back checks), which is all that is asked. */
			if (stats.damaged_unnamed && after[j].damaged && !before[i].damaged)
				continue;
			FUZZ_CHECK(after[j].first_index == before[i].first_index);
			FUZZ_CHECK(after[j].last_index == before[i].last_index);
			FUZZ_CHECK(after[j].mark_index == before[i].mark_index);
			FUZZ_CHECK(after[j].has_hard == before[i].has_hard);
			FUZZ_CHECK(after[j].hard.term == before[i].hard.term &&
				   after[j].hard.vote == before[i].hard.vote &&
				   after[j].hard.commit == before[i].hard.commit &&
				   after[j].hard.repairing == before[i].hard.repairing);
		}
		FUZZ_CHECK(found);
	}
	fuzz_wal_read_back(wal, loop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[FUZZ_WAL_FILE_SIZE_MAX];
	struct fuzz_in in = {data, size};
	struct wal_config config;
	struct loop *loop = fuzz_wal_loop();
	const char *dir = fuzz_dir();
	uint8_t flags = fuzz_u8(&in);
	bool read_only = (flags & 1) || loop == NULL;
	struct wal wal;
	int rv;

	fuzz_wal_salvage = (flags & 4) != 0;
	fuzz_dir_clear(dir);
	for (int i = 0; i < FUZZ_WAL_FILES && fuzz_more(&in); i++) {
		uint64_t seq = 1 + fuzz_u8(&in) % 6;
		uint8_t fix = fuzz_u8(&in);
		size_t want = fuzz_u16(&in) % (FUZZ_WAL_FILE_SIZE_MAX + 1), got;
		const uint8_t *bytes = fuzz_bytes(&in, want, &got);
		char name[SEGMENT_NAME_SIZE];

		memcpy(buf, bytes, got);
		fuzz_wal_fix(buf, &got, seq, fix);
		segment_name(name, seq);
		fuzz_write_file(dir, name, buf, got);
	}
	fuzz_wal_config(&config, read_only);
	rv = wal_init(&wal, loop, dir, &config);
	if (getenv("FUZZ_VERBOSE") != NULL) {
		struct fuzz_wal_group groups[8];
		uint32_t n = rv == 0 ? fuzz_wal_snapshot(&wal, groups, 8) : 0;

		printf("wal_init: %d %s; %u groups\n", rv, rv != 0 ? wal_why(&wal) : "", n);
		for (uint32_t i = 0; i < n; i++)
			printf("  group %llu: entries %llu..%llu, mark %llu\n",
			       (unsigned long long)groups[i].group,
			       (unsigned long long)groups[i].first_index,
			       (unsigned long long)groups[i].last_index,
			       (unsigned long long)groups[i].mark_index);
	}
	if (rv != 0) {
		FUZZ_CHECK(rv == WAL_ERR_CORRUPT || rv == WAL_ERR_GAP || rv == -ENOMEM ||
			   rv == -ENOTSUP);
		FUZZ_CHECK(wal_why(&wal)[0] != '\0');
		return 0;
	}
	fuzz_wal_read_back(&wal, loop);
	if ((flags & 2) && !read_only)
		fuzz_wal_append_reopen(&wal, loop, dir);
	wal_deinit(&wal);
	return 0;
}
