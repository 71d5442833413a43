/* The segmented write-ahead log with group commit.
 *
 * The happy path for a group commit is: wal_append_*() encode records into
 * the open batch buffer (the layout of every record is decided at append
 * time: batch n goes to a known segment and offset); wal_flush() submits the
 * oldest pending batch as one write linked to one fdatasync; when both
 * complete, the batch is durable, the durable callback reports its number,
 * and the next pending batch goes out. At most one batch is in flight, so a
 * batch is never durable before the ones laid out before it, and a record in
 * segment n + 1 on disk proves segment n complete.
 *
 * Segment files have a fixed size and are preallocated (and optionally zero
 * filled) before use, and recycled when every group moved past them, so that
 * fdatasync writes data and no file metadata. A batch that starts a segment
 * carries the segment's header, which names the previous segment and where
 * its records end: recovery then knows where every closed segment must end,
 * and a bad record before that point is corruption, not a torn tail.
 *
 * Batch buffers are reused in a ring (batch n uses buffer n % count); the
 * durable ones still in the ring serve reads of recent entries.
 *
 * Failure modes: a failed write or fdatasync stops the WAL for good (never
 * retry a failed fdatasync: the kernel may have dropped the dirty pages and
 * a retry would report success for lost data); so does ENOSPC on a write,
 * which preallocation makes unreachable on a file system that honours
 * fallocate. A full file system is not a failure: the WAL keeps a spare
 * segment beyond its tail, and when the file system refuses to preallocate
 * the next one (ENOSPC, EDQUOT) the WAL is low on space (wal_space_low()):
 * it goes on appending into its tail and last spare, the reserve, and an
 * append that the reserve cannot hold fails with -ENOSPC before writing
 * anything. wal_space_retry() ends the condition once a spare exists again.
 * A short write resubmits the rest. Recovery refuses a WAL with a bad record
 * or an index gap anywhere but at the tail, unless asked to salvage: then
 * the groups the bad records belong to (all of them when a record's header
 * is bad too) are reported damaged, for the caller to repair from peers. A process that dies with
 * direct writes in flight leaves them to land after its exit: recovery waits for them first (see
 * wal_file_open). */
#include "io/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"

#define WAL_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Worst-case bytes one entry adds to a record of its own: header, count,
 * meta and padding. */
#define WAL_ENTRY_OVERHEAD                                                                         \
	(SEGMENT_RECORD_HEADER_SIZE + SEGMENT_ENTRIES_FIXED_SIZE + SEGMENT_ENTRY_META_SIZE + 8)
#define WAL_ZERO_CHUNK (1u << 20)

enum wal_batch_state {
	WAL_BATCH_FREE = 0,
	WAL_BATCH_OPEN,    /* Taking records. */
	WAL_BATCH_QUEUED,  /* Closed, waiting for the batch before it. */
	WAL_BATCH_WRITING, /* Write and fdatasync in flight. */
	WAL_BATCH_DURABLE, /* On disk; the buffer serves reads until reused. */
};

static_assert(SEGMENT_HEADER_SIZE <= WAL_BLOCK_SIZE, "the segment header fits a block");
static_assert(WAL_SEGMENT_SIZE_MAX % WAL_BLOCK_SIZE == 0, "segments are block aligned");

struct wal_read_part {
	struct loop_op op;
	struct wal_read *read;
	int fd;
	uint64_t seq;
	uint64_t offset;       /* Of the record in the segment file. */
	uint32_t size;         /* Record bytes. */
	uint32_t done;         /* Bytes read so far. */
	uint64_t buf_offset;   /* Where the record goes in read->buf. */
	uint64_t record_index; /* The record's first entry. */
	uint64_t first_index;  /* The run: first live index, live count and term. */
	uint32_t count;
	uint64_t term;
};

static void wal_batch_submit(struct wal *wal, struct wal_batch *batch);

/* Errors and failure */

static void wal_say(struct wal *wal, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(wal->why, sizeof(wal->why), fmt, ap);
	va_end(ap);
}

/* Stop the WAL: appends fail with rv from now on; if stop, no more I/O.
 * The first failure is kept. */
static void wal_fail(struct wal *wal, int rv, bool stop)
{
	bool first = wal->failed == 0;

	if (first)
		wal->failed = rv;
	if (stop)
		wal->stopped = true;
	if (first && wal->config.durable_cb != NULL)
		wal->config.durable_cb(wal, wal->durable_batch, rv);
}

static int wal_check_appendable(const struct wal *wal)
{
	if (wal->config.read_only)
		return -EROFS;
	return wal->failed;
}

/* Groups: an open-addressing table keyed by group id, linear probing,
 * deletion by backward shift. */

static uint32_t wal_group_home(const struct wal *wal, uint64_t group)
{
	return (uint32_t)(XXH3_64bits(&group, sizeof(group)) & (wal->groups_cap - 1));
}

static struct wal_group *wal_group_slot(const struct wal *wal, uint64_t group)
{
	uint32_t mask = wal->groups_cap - 1;

	for (uint32_t i = wal_group_home(wal, group);; i = (i + 1) & mask) {
		struct wal_group *g = &wal->groups[i];

		if (!g->used || g->group == group)
			return g;
	}
}

static int wal_groups_grow(struct wal *wal)
{
	struct wal_group *old = wal->groups;
	uint32_t old_cap = wal->groups_cap;
	struct wal_group *groups = calloc((size_t)old_cap * 2, sizeof(*groups));

	if (groups == NULL)
		return -ENOMEM;
	wal->groups = groups;
	wal->groups_cap = old_cap * 2;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (old[i].used)
			*wal_group_slot(wal, old[i].group) = old[i];
	}
	free(old);
	return 0;
}

static void wal_group_clear(struct wal_group *g)
{
	g->runs_head = 0;
	g->runs_count = 0;
	g->live_size = 0;
	g->first_index = 1;
	g->last_index = 0;
	g->mark_index = 0;
	g->mark_term = 0;
	memset(&g->hard, 0, sizeof(g->hard));
	g->has_hard = false;
	g->hard_seq = 0;
	g->mark_seq = 0;
	g->gap_index = 0;
	g->gap_seq = 0;
	g->gap_offset = 0;
	g->damaged = false;
	g->damaged_index = 0;
	g->damaged_term = 0;
	g->damaged_seq = 0;
	g->damaged_offset = 0;
}

/* The group, created if missing. A tombstone stays a tombstone here. */
static int wal_group_get(struct wal *wal, uint64_t group, struct wal_group **out)
{
	struct wal_group *g = wal_group_slot(wal, group);
	int rv;

	if (!g->used) {
		if ((wal->groups_count + 1) * 2 > wal->groups_cap) {
			rv = wal_groups_grow(wal);
			if (rv != 0)
				return rv;
			g = wal_group_slot(wal, group);
		}
		memset(g, 0, sizeof(*g));
		g->used = true;
		g->group = group;
		wal_group_clear(g);
		wal->groups_count++;
	}
	*out = g;
	return 0;
}

static void wal_group_delete(struct wal *wal, struct wal_group *g)
{
	uint32_t mask = wal->groups_cap - 1;
	uint32_t hole = (uint32_t)(g - wal->groups);

	free(g->runs);
	memset(g, 0, sizeof(*g));
	wal->groups_count--;
	/* Backward shift: move later members of the probe chain into the hole
	 * when their home does not lie cyclically in (hole, i]. */
	for (uint32_t i = (hole + 1) & mask; wal->groups[i].used; i = (i + 1) & mask) {
		uint32_t home = wal_group_home(wal, wal->groups[i].group);
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);

		if (stays)
			continue;
		wal->groups[hole] = wal->groups[i];
		memset(&wal->groups[i], 0, sizeof(wal->groups[i]));
		hole = i;
	}
}

/* Runs: a ring per group, in index order, non-overlapping. */

static struct wal_run *wal_run_at(const struct wal_group *g, uint32_t slot)
{
	return &g->runs[(g->runs_head + slot) & (g->runs_cap - 1)];
}

static int wal_runs_reserve(struct wal_group *g, uint32_t more)
{
	uint32_t cap = g->runs_cap ? g->runs_cap : 4;
	struct wal_run *runs;

	if (g->runs_count + more <= g->runs_cap)
		return 0;
	while (cap < g->runs_count + more)
		cap *= 2;
	runs = malloc(sizeof(*runs) * cap);
	if (runs == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < g->runs_count; i++)
		runs[i] = *wal_run_at(g, i);
	free(g->runs);
	g->runs = runs;
	g->runs_cap = cap;
	g->runs_head = 0;
	return 0;
}

static void wal_runs_push(struct wal_group *g, const struct wal_run *run)
{
	ASSERT(g->runs_count < g->runs_cap); /* Reserved beforehand. */
	*wal_run_at(g, g->runs_count) = *run;
	g->runs_count++;
	g->live_size += run->size;
}

static void wal_runs_clear(struct wal_group *g)
{
	g->runs_count = 0;
	g->runs_head = 0;
	g->live_size = 0;
}

/* Drop every entry at index or above (an overwrite starts there). */
static void wal_runs_truncate_from(struct wal_group *g, uint64_t index)
{
	while (g->runs_count > 0) {
		struct wal_run *run = wal_run_at(g, g->runs_count - 1);

		if (run->first_index >= index) {
			g->live_size -= run->size;
			g->runs_count--;
			continue;
		}
		if (run->first_index + run->count > index)
			run->count = (uint32_t)(index - run->first_index);
		break;
	}
}

/* Drop the runs whose entries are all at or below index. */
static void wal_runs_compact_to(struct wal_group *g, uint64_t index)
{
	while (g->runs_count > 0) {
		struct wal_run *run = wal_run_at(g, 0);

		if (run->first_index + run->count - 1 > index)
			break;
		g->live_size -= run->size;
		g->runs_head = (g->runs_head + 1) & (g->runs_cap - 1);
		g->runs_count--;
	}
}

/* The slot of the run holding index, or runs_count. */
static uint32_t wal_runs_find(const struct wal_group *g, uint64_t index)
{
	uint32_t low = 0, high = g->runs_count;

	while (low < high) {
		uint32_t mid = low + (high - low) / 2;
		const struct wal_run *run = wal_run_at(g, mid);

		if (index < run->first_index)
			high = mid;
		else if (index >= run->first_index + run->count)
			low = mid + 1;
		else
			return mid;
	}
	return g->runs_count;
}

static bool wal_group_term_at(const struct wal_group *g, uint64_t index, uint64_t *term)
{
	uint32_t slot;

	if (index == g->mark_index && index + 1 == g->first_index) {
		*term = g->mark_term;
		return true;
	}
	if (index < g->first_index || index > g->last_index)
		return false;
	slot = wal_runs_find(g, index);
	if (slot == g->runs_count)
		return false;
	*term = wal_run_at(g, slot)->term;
	return true;
}

/* Applying records to group state. The same functions serve appends and
 * recovery, so that the state rebuilt on open is exactly the state the
 * appends produced. */

/* Put a copied run in place of the live entries it covers, splitting the
 * runs it overlaps, without touching entries after it. */
static int wal_runs_put_copy(struct wal_group *g, const struct wal_run *run)
{
	uint64_t lo = run->first_index, hi = run->first_index + run->count - 1;
	uint32_t cap = 4, n = 0;
	struct wal_run *out;
	bool placed = false;

	while (cap < g->runs_count + 2)
		cap *= 2;
	out = malloc(sizeof(*out) * cap);
	if (out == NULL)
		return -ENOMEM;
	g->live_size = 0;
	for (uint32_t i = 0; i < g->runs_count; i++) {
		struct wal_run r = *wal_run_at(g, i);
		uint64_t r_lo = r.first_index, r_hi = r.first_index + r.count - 1;

		if (r_hi < lo || r_lo > hi) {
			if (!placed && r_lo > hi) {
				out[n++] = *run;
				placed = true;
			}
			out[n++] = r;
			continue;
		}
		if (r_lo < lo) {
			out[n] = r;
			out[n++].count = (uint32_t)(lo - r_lo);
		}
		if (!placed) {
			out[n++] = *run;
			placed = true;
		}
		if (r_hi > hi) {
			out[n] = r;
			out[n].first_index = hi + 1;
			out[n++].count = (uint32_t)(r_hi - hi);
		}
	}
	if (!placed)
		out[n++] = *run;
	for (uint32_t i = 0; i < n; i++)
		g->live_size += out[i].size; /* A split record counts twice: an estimate. */
	free(g->runs);
	g->runs = out;
	g->runs_cap = cap;
	g->runs_head = 0;
	g->runs_count = n;
	return 0;
}

static int wal_apply_entries(struct wal_group *g, const struct wal_run *record_run, bool copy,
			     bool recovering)
{
	struct wal_run run = *record_run;

	g->removed = false;
	if (run.first_index <= g->mark_index) {
		/* Only on recovery (appends refuse it): a record older than the
		 * mark, from a segment whose deletion did not reach the disk. */
		uint64_t dead = g->mark_index + 1 - run.first_index;

		ASSERT(recovering);
		if (dead >= run.count)
			return 0;
		run.first_index += dead;
		run.count -= (uint32_t)dead;
	}
	if (run.first_index > g->last_index + 1) {
		/* A hole. Appends refuse it. On recovery it is corruption unless
		 * later records fill it (copies moved forward by compaction) or
		 * a later snapshot mark covers it: the end of recovery checks
		 * that the live log starts right after the mark. */
		ASSERT(recovering);
		g->gap_index = run.first_index;
		g->gap_seq = run.seq;
		g->gap_offset = run.offset;
		wal_runs_clear(g);
		g->first_index = run.first_index;
	} else if (copy) {
		uint64_t last = run.first_index + run.count - 1;

		if (g->last_index < last)
			g->last_index = last;
		if (run.first_index < g->first_index)
			g->first_index = run.first_index; /* Fills (part of) a hole. */
		return wal_runs_put_copy(g, &run);
	} else {
		/* §5.3: "If an existing entry conflicts with a new one (same index
		 * but different terms), delete the existing entry and all that
		 * follow it." The caller decided; the WAL replaces the suffix. */
		wal_runs_truncate_from(g, run.first_index);
		if (run.first_index < g->first_index)
			g->first_index = run.first_index; /* Recovery: below a hole. */
	}
	wal_runs_push(g, &run);
	g->last_index = run.first_index + run.count - 1;
	return 0;
}

static void wal_apply_mark(struct wal_group *g, uint64_t index, uint64_t term, bool keep,
			   uint64_t seq)
{
	g->removed = false;
	if (index < g->mark_index)
		return; /* Recovery only: a stale mark from an undeleted segment. */
	if (keep) {
		wal_runs_compact_to(g, index);
		if (g->last_index < index)
			g->last_index = index;
		/* Normally first_index becomes index + 1. On recovery a hole
		 * after the mark stays visible: first_index stays above it. */
		if (g->first_index < index + 1)
			g->first_index = index + 1;
	} else {
		/* §7: a snapshot that does not match the log replaces all of it. */
		wal_runs_clear(g);
		g->last_index = index;
		g->first_index = index + 1;
	}
	g->mark_index = index;
	g->mark_term = term;
	g->mark_seq = seq;
}

/* A reset: the log is the mark alone, whatever came before (a repair).
 * The hard state stays: term and vote must never go back. */
static void wal_apply_reset(struct wal_group *g, uint64_t index, uint64_t term, uint64_t seq)
{
	struct wal_hard hard = g->hard;
	bool has_hard = g->has_hard;
	uint64_t hard_seq = g->hard_seq;

	wal_group_clear(g);
	g->removed = false;
	g->hard = hard;
	g->has_hard = has_hard;
	g->hard_seq = hard_seq;
	wal_apply_mark(g, index, term, false, seq);
}

static void wal_apply_hard(struct wal_group *g, const struct wal_hard *hard, uint64_t seq)
{
	g->removed = false;
	g->hard = *hard;
	g->has_hard = true;
	g->hard_seq = seq;
}

static void wal_apply_removed(struct wal_group *g, uint64_t seq)
{
	wal_group_clear(g);
	g->removed = true;
	g->removed_seq = seq;
}

/* Segments and spare files */

static struct wal_segment *wal_tail(const struct wal *wal)
{
	return wal->segments_count ? &wal->segments[wal->segments_count - 1] : NULL;
}

static struct wal_segment *wal_segment_find(const struct wal *wal, uint64_t seq)
{
	uint32_t low = 0, high = wal->segments_count;

	while (low < high) {
		uint32_t mid = low + (high - low) / 2;

		if (wal->segments[mid].seq < seq)
			low = mid + 1;
		else
			high = mid;
	}
	if (low < wal->segments_count && wal->segments[low].seq == seq)
		return &wal->segments[low];
	return NULL;
}

static int wal_segments_push(struct wal *wal, const struct wal_segment *segment)
{
	if (wal->segments_count == wal->segments_cap) {
		uint32_t cap = wal->segments_cap ? wal->segments_cap * 2 : 16;
		struct wal_segment *segments = realloc(wal->segments, sizeof(*segments) * cap);

		if (segments == NULL)
			return -ENOMEM;
		wal->segments = segments;
		wal->segments_cap = cap;
	}
	ASSERT(wal->segments_count == 0 ||
	       wal->segments[wal->segments_count - 1].seq < segment->seq);
	wal->segments[wal->segments_count++] = *segment;
	return 0;
}

static int wal_fsync_dir(struct wal *wal)
{
	return fsync(wal->dir_fd) == 0 ? 0 : -errno;
}

/* With direct_io, batches go through a second descriptor opened O_DIRECT;
 * everything else uses the buffered one. */
static int wal_segment_open_direct(struct wal *wal, struct wal_segment *segment)
{
	char name[SEGMENT_NAME_SIZE];
	int rv;

	if (!wal->config.direct_io || wal->config.read_only || segment->write_fd >= 0)
		return 0;
	segment_name(name, segment->seq);
	segment->write_fd = openat(wal->dir_fd, name, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (segment->write_fd >= 0)
		return 0;
	rv = -errno;
	wal_say(wal, "cannot open segment %s with O_DIRECT (direct_io): %s", name, err_str(rv));
	return rv;
}

static void wal_segment_close(struct wal_segment *segment)
{
	close(segment->fd);
	if (segment->write_fd >= 0)
		close(segment->write_fd);
}

static int wal_zero_fill(int fd, uint64_t from, uint64_t to)
{
	static const uint8_t zeros[WAL_ZERO_CHUNK];

	while (from < to) {
		size_t chunk = to - from < WAL_ZERO_CHUNK ? (size_t)(to - from) : WAL_ZERO_CHUNK;
		ssize_t n = pwrite(fd, zeros, chunk, (off_t)from);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		from += (uint64_t)n;
	}
	return 0;
}

/* Create, preallocate and sync a new spare segment file. Slow (file system
 * metadata and an optional zero fill): it runs when a spare is missing. */
static int wal_spare_create(struct wal *wal)
{
	struct wal_segment spare = {.write_fd = -1};
	char name[SEGMENT_NAME_SIZE];
	int fd, rv;

	ASSERT(wal->spares_count < wal->config.spares_max + 1);
	segment_name(name, wal->next_seq);
	fd = openat(wal->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rv = -errno;
		goto err;
	}
	rv = loop_allocate(wal->loop, fd, wal->config.segment_size);
	if (rv != 0)
		goto err_after_open;
	if (wal->config.zero_fill) {
		rv = wal_zero_fill(fd, 0, wal->config.segment_size);
		if (rv != 0)
			goto err_after_open;
	}
	/* The size and the allocation must be durable before any record in the
	 * file is acknowledged; so must the file's name. */
	if (fsync(fd) != 0) {
		rv = -errno;
		goto err_after_open;
	}
	rv = wal_fsync_dir(wal);
	if (rv != 0)
		goto err_after_open;
	spare.seq = wal->next_seq;
	spare.fd = fd;
	spare.size = wal->config.segment_size;
	rv = wal_segment_open_direct(wal, &spare);
	if (rv != 0)
		goto err_after_open;
	wal->next_seq++;
	wal->spares[wal->spares_count++] = spare;
	wal->stats.segments_created++;
	return 0;

err_after_open:
	close(fd);
	unlinkat(wal->dir_fd, name, 0);
err:
	wal_say(wal, "cannot preallocate segment file %s (%" PRIu32 " bytes): %s", name,
		wal->config.segment_size, err_str(rv));
	return rv;
}

static bool wal_is_space_error(int rv)
{
	return rv == -ENOSPC || rv == -EDQUOT;
}

/* The file system refused a spare for lack of space (wal_spare_create()
 * said which file and how many bytes): appends go on into the reserve. */
static void wal_space_lost(struct wal *wal)
{
	char why[sizeof(wal->why)];

	memcpy(why, wal->why, sizeof(why));
	wal_say(wal,
		"out of space: %s; appends go on into the tail segment until it is full, then "
		"fail with ENOSPC until space returns (records up to batch %" PRIu64
		" are durable and intact)",
		why, wal->durable_batch);
	if (!wal->space_low)
		wal->stats.space_low_count++;
	wal->space_low = true;
}

/* Keep a spare beyond the tail, so that a full file system is noticed
 * while the tail and that spare can still take records. */
static void wal_spare_keep(struct wal *wal)
{
	if (wal->spares_count == 0 && wal_is_space_error(wal_spare_create(wal)))
		wal_space_lost(wal);
}

/* Make sure a spare exists. Without space for one the WAL is low on space
 * and the caller gets -ENOSPC; any other failure refuses appends for good. */
static int wal_spare_ensure(struct wal *wal)
{
	int rv;

	if (wal->spares_count > 0)
		return 0;
	rv = wal_spare_create(wal);
	if (wal_is_space_error(rv)) {
		wal_space_lost(wal);
		return -ENOSPC;
	}
	if (rv != 0) {
		char why[sizeof(wal->why)];

		memcpy(why, wal->why, sizeof(why));
		wal_say(wal,
			"%s; the WAL refuses further appends (records up to batch %" PRIu64
			" are durable and intact)",
			why, wal->durable_batch);
		wal_fail(wal, WAL_ERR_FAILED, false);
	}
	return rv;
}

bool wal_space_low(const struct wal *wal)
{
	return wal->space_low;
}

int wal_space_retry(struct wal *wal)
{
	int rv;

	if (wal->failed != 0)
		return wal->failed;
	if (!wal->space_low)
		return 0;
	rv = wal->spares_count > 0 ? 0 : wal_spare_create(wal);
	if (wal_is_space_error(rv)) {
		wal_space_lost(wal);
		return -ENOSPC;
	}
	if (rv != 0)
		return rv;
	wal->space_low = false;
	return 0;
}

/* Move to the next segment: the first spare becomes the tail. */
static int wal_rotate(struct wal *wal)
{
	struct wal_segment *old = wal_tail(wal);
	struct wal_segment next;
	int rv;

	rv = wal_spare_ensure(wal);
	if (rv != 0)
		return rv;
	next = wal->spares[0];
	next.prev_seq = old ? old->seq : 0;
	next.prev_end = old ? old->end : 0;
	next.end = 0;
	next.batch_size_max = wal->config.batch_size_max;
	rv = wal_segments_push(wal, &next);
	if (rv != 0)
		return rv;
	if (old != NULL)
		wal->segments[wal->segments_count - 2].full = true;
	wal->spares_count--;
	memmove(wal->spares, wal->spares + 1, sizeof(*wal->spares) * wal->spares_count);
	wal_spare_keep(wal);
	return 0;
}

/* Batches */

/* Bytes a batch keeps free for its closing PAD record with direct_io. */
static uint64_t wal_pad_reserve(const struct wal *wal)
{
	return wal->config.direct_io ? WAL_BLOCK_SIZE + SEGMENT_RECORD_HEADER_SIZE : 0;
}

/* Bytes the tail segment can still take for records. */
static uint64_t wal_segment_room(const struct wal *wal, const struct wal_segment *segment)
{
	uint64_t left = segment->size - segment->end;

	return left > wal_pad_reserve(wal) ? left - wal_pad_reserve(wal) : 0;
}

static uint32_t wal_batch_room(const struct wal *wal, const struct wal_batch *batch)
{
	const struct wal_segment *tail = wal_tail(wal);
	uint64_t batch_room =
	    wal->config.batch_size_max - wal_pad_reserve(wal) - (batch->size - batch->head_size);
	uint64_t segment_room = wal_segment_room(wal, tail);

	ASSERT(tail->seq == batch->seq);
	return (uint32_t)(batch_room < segment_room ? batch_room : segment_room);
}

static uint8_t *wal_record_begin(struct wal *wal, const struct segment_record *record);
static uint64_t wal_record_end(struct wal *wal, uint32_t payload_size);

/* With direct_io a write covers whole blocks: a PAD record fills the batch
 * up to the next block boundary, where the next batch starts. */
static void wal_batch_pad(struct wal *wal)
{
	struct wal_batch *batch = wal->open;
	uint64_t end = batch->offset + batch->size;
	uint64_t pad = (WAL_BLOCK_SIZE - end % WAL_BLOCK_SIZE) % WAL_BLOCK_SIZE;
	struct segment_record record = {.type = SEGMENT_RECORD_PAD, .batch = batch->number};
	uint8_t *payload;

	if (pad == 0)
		return;
	if (pad < SEGMENT_RECORD_HEADER_SIZE)
		pad += WAL_BLOCK_SIZE;
	record.size = (uint32_t)(pad - SEGMENT_RECORD_HEADER_SIZE);
	payload = wal_record_begin(wal, &record);
	memset(payload, 0, record.size);
	wal_record_end(wal, record.size);
	ASSERT((batch->offset + batch->size) % WAL_BLOCK_SIZE == 0);
}

static void wal_batch_close(struct wal *wal)
{
	ASSERT(wal->open->state == WAL_BATCH_OPEN);
	if (wal->config.direct_io)
		wal_batch_pad(wal);
	wal->open->state = WAL_BATCH_QUEUED;
	wal->open = NULL;
}

/* Check, before anything is encoded, that an append of at most upper bytes
 * will find buffers and segment space: an append is all or nothing. */
static int wal_reserve(struct wal *wal, uint64_t upper)
{
	uint64_t used = wal->next_batch - 1 - wal->durable_batch;
	uint64_t half = wal->config.batch_size_max / 2;
	const struct wal_segment *tail = wal_tail(wal);
	/* Each new batch takes at least half its size before it closes,
	 * because an entry is at most a quarter of a batch. One buffer may be
	 * in flight at any time, so more than all the others is never free.
	 * With direct_io each batch closed on the way adds its PAD record. */
	uint64_t need = upper / half + 2;
	uint64_t segment_need = upper + need * wal_pad_reserve(wal) + SEGMENT_HEADER_SIZE;

	if (segment_need > wal->config.segment_size / 2 || need > wal->config.buffers_count - 1) {
		wal_say(wal, "append of %" PRIu64 " bytes is larger than the WAL can take at once",
			upper);
		return -EMSGSIZE;
	}
	if (wal->open != NULL && wal_batch_room(wal, wal->open) >= upper)
		return 0;
	if (wal->config.buffers_count - used < need)
		return -EAGAIN;
	if (tail == NULL || tail->full || wal_segment_room(wal, tail) < segment_need) {
		/* This append may move to the next segment: make sure nothing
		 * can fail there (a spare and room to list it). */
		if (wal->segments_count == wal->segments_cap) {
			uint32_t cap = wal->segments_cap ? wal->segments_cap * 2 : 16;
			struct wal_segment *segments =
			    realloc(wal->segments, sizeof(*segments) * cap);

			if (segments == NULL)
				return -ENOMEM;
			wal->segments = segments;
			wal->segments_cap = cap;
		}
		return wal_spare_ensure(wal);
	}
	return 0;
}

/* Make the open batch able to take need more bytes, closing it, opening a
 * new one, or moving to the next segment as needed. */
static int wal_make_room(struct wal *wal, uint32_t need)
{
	struct wal_segment *tail = wal_tail(wal);
	struct wal_batch *batch;
	int rv;

	if (wal->open != NULL && wal_batch_room(wal, wal->open) >= need)
		return 0;
	if (wal->open != NULL)
		wal_batch_close(wal);
	if (tail == NULL || tail->full || wal_segment_room(wal, tail) < need) {
		if (tail != NULL)
			tail->full = true;
		rv = wal_rotate(wal);
		if (rv != 0)
			return rv;
		tail = wal_tail(wal);
	}
	batch = &wal->batches[wal->next_batch % wal->config.buffers_count];
	ASSERT(batch->state == WAL_BATCH_FREE || batch->state == WAL_BATCH_DURABLE);
	batch->number = wal->next_batch++;
	batch->seq = tail->seq;
	batch->fd = tail->write_fd >= 0 ? tail->write_fd : tail->fd;
	batch->offset = tail->end;
	batch->size = 0;
	batch->head_size = 0;
	batch->done = 0;
	batch->state = WAL_BATCH_OPEN;
	if (tail->end == 0) {
		struct segment_header header = {
		    .seq = tail->seq,
		    .size = tail->size,
		    .prev_end = tail->prev_end,
		    .prev_seq = tail->prev_seq,
		    .first_batch = batch->number,
		    .batch_size_max = wal->config.batch_size_max,
		};

		segment_header_put(batch->buf, &header);
		batch->size = batch->head_size = SEGMENT_HEADER_SIZE;
		tail->end = SEGMENT_HEADER_SIZE;
	}
	wal->open = batch;
	ASSERT(wal_batch_room(wal, batch) >= need);
	return 0;
}

/* Start a record in the open batch. Returns where its payload goes. */
static uint8_t *wal_record_begin(struct wal *wal, const struct segment_record *record)
{
	uint8_t *rec = wal->open->buf + wal->open->size;

	segment_record_put(rec, record);
	return rec + SEGMENT_RECORD_HEADER_SIZE;
}

/* Seal the record started at the end of the open batch and account for it.
 * Returns its offset in the segment file. */
static uint64_t wal_record_end(struct wal *wal, uint32_t payload_size)
{
	struct wal_batch *batch = wal->open;
	struct wal_segment *tail = wal_tail(wal);
	uint32_t size = segment_record_size(payload_size);
	uint64_t offset = batch->offset + batch->size;

	segment_record_seal(batch->buf + batch->size, batch->seq);
	batch->size += size;
	tail->end += size;
	if (tail->first_batch == 0)
		tail->first_batch = batch->number;
	tail->last_batch = batch->number;
	tail->records_count++;
	wal->appended_batch = batch->number;
	wal->stats.records++;
	return offset;
}

/* Appends */

/* How many of entries[0..count) fit in one record of at most room bytes,
 * all of the first entry's term. */
static uint32_t wal_entries_fit(const struct wal_entry *entries, uint32_t count, uint32_t room,
				uint64_t *data_size)
{
	uint64_t data = 0;
	uint32_t n = 0;

	while (n < count && entries[n].term == entries[0].term) {
		uint64_t next = data + entries[n].size;

		if (segment_record_size(segment_entries_payload_size(n + 1, next)) > room)
			break;
		data = next;
		n++;
	}
	*data_size = data;
	return n;
}

static int wal_check_entries(struct wal *wal, const struct wal_entry *entries, uint32_t count,
			     uint64_t *upper)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < count; i++) {
		if (entries[i].size + WAL_ENTRY_OVERHEAD > wal->config.batch_size_max / 4) {
			wal_say(wal, "an entry of %" PRIu32 " bytes exceeds a quarter of a batch",
				entries[i].size);
			return -EMSGSIZE;
		}
		total += entries[i].size + WAL_ENTRY_OVERHEAD;
	}
	*upper = total;
	return 0;
}

/* flags: 0, or SEGMENT_ENTRIES_COPY for entries moved forward as they are. */
static int wal_append_entries_flags(struct wal *wal, uint64_t group, uint64_t first_index,
				    const struct wal_entry *entries, uint32_t entries_count,
				    uint16_t flags)
{
	const struct wal_group *found = wal_group_find(wal, group);
	uint64_t last = found && !found->removed ? found->last_index : 0;
	uint64_t mark = found && !found->removed ? found->mark_index : 0;
	struct wal_group *g;
	uint64_t upper;
	int rv;

	rv = wal_check_appendable(wal);
	if (rv != 0)
		return rv;
	/* The index after the last entry must exist (segment_record_get()). A
	 * damaged group's entries would be skipped by recovery: reset it first. */
	if (entries_count == 0 || first_index <= mark || first_index > UINT64_MAX - entries_count ||
	    (found != NULL && found->damaged))
		return -EINVAL;
	if (first_index > last + 1)
		return WAL_ERR_GAP;
	rv = wal_check_entries(wal, entries, entries_count, &upper);
	if (rv != 0)
		return rv;
	rv = wal_reserve(wal, upper);
	if (rv != 0)
		return rv;
	rv = wal_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_runs_reserve(g, entries_count);
	if (rv != 0)
		return rv;
	for (uint32_t i = 0; i < entries_count;) {
		uint32_t room = wal->open ? wal_batch_room(wal, wal->open) : 0;
		uint64_t data_size;
		uint32_t n = wal_entries_fit(entries + i, entries_count - i, room, &data_size);
		struct segment_record record = {
		    .group = group,
		    .first_index = first_index + i,
		    .term = entries[i].term,
		    .type = SEGMENT_RECORD_ENTRIES,
		    .flags = flags,
		};
		struct wal_run run;
		uint8_t *payload, *data;

		if (n == 0) {
			/* Not even one entry fits: a new batch, maybe a new segment. */
			rv = wal_make_room(wal, segment_record_size(segment_entries_payload_size(
						    1, entries[i].size)));
			ASSERT(rv == 0); /* wal_reserve() made sure. */
			continue;
		}
		record.batch = wal->open->number;
		record.size = segment_entries_payload_size(n, data_size);
		payload = wal_record_begin(wal, &record);
		segment_entries_put_count(payload, n);
		data = payload + SEGMENT_ENTRIES_FIXED_SIZE + (uint64_t)n * SEGMENT_ENTRY_META_SIZE;
		for (uint32_t j = 0; j < n; j++) {
			segment_entries_put_meta(payload, j, entries[i + j].size,
						 entries[i + j].type);
			if (entries[i + j].size > 0)
				memcpy(data, entries[i + j].data, entries[i + j].size);
			data += entries[i + j].size;
		}
		run.first_index = record.first_index;
		run.record_index = record.first_index;
		run.term = record.term;
		run.seq = wal->open->seq;
		run.count = n;
		run.size = segment_record_size(record.size);
		run.offset = wal_record_end(wal, record.size);
		/* A copy that finds no memory to re-point its runs leaves them
		 * on the old records, which stay valid and pinned. */
		(void)wal_apply_entries(g, &run, flags & SEGMENT_ENTRIES_COPY, false);
		wal->stats.entries += n;
		i += n;
	}
	return 0;
}

int wal_append_entries(struct wal *wal, uint64_t group, uint64_t first_index,
		       const struct wal_entry *entries, uint32_t entries_count)
{
	return wal_append_entries_flags(wal, group, first_index, entries, entries_count, 0);
}

/* Append a record without entries; returns its segment in *seq. */
static int wal_append_small(struct wal *wal, struct segment_record *record, const uint8_t *payload,
			    uint64_t *seq)
{
	uint32_t size = segment_record_size(record->size);
	uint8_t *out;
	int rv;

	rv = wal_reserve(wal, size);
	if (rv != 0)
		return rv;
	rv = wal_make_room(wal, size);
	ASSERT(rv == 0);
	record->batch = wal->open->number;
	out = wal_record_begin(wal, record);
	if (record->size > 0)
		memcpy(out, payload, record->size);
	*seq = wal->open->seq;
	wal_record_end(wal, record->size);
	return 0;
}

int wal_append_hard(struct wal *wal, uint64_t group, const struct wal_hard *hard)
{
	struct segment_record record = {
	    .group = group, .type = SEGMENT_RECORD_HARD, .size = SEGMENT_HARD_SIZE};
	uint8_t payload[SEGMENT_HARD_SIZE];
	struct wal_group *g;
	uint64_t seq;
	int rv;

	rv = wal_check_appendable(wal);
	if (rv != 0)
		return rv;
	rv = wal_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	record.term = hard->term; /* Salvage learns it from a verified header. */
	record.flags = hard->repairing ? SEGMENT_HARD_REPAIRING : 0;
	segment_hard_put(payload, hard->term, hard->vote, hard->commit);
	/* Twice: a vote forgotten could be cast again in the same term, and a
	 * record whose header is damaged cannot be attributed to its group
	 * (salvage then repairs every group, but cannot give the vote back).
	 * A second copy survives a flip in the first. Both copies go in the
	 * batch when the room reserved together holds; recovery applies both,
	 * which is idempotent, and so is appending them again after an error
	 * between the two. Hard states change on elections, not per entry. */
	rv = wal_reserve(wal, 2 * segment_record_size(record.size));
	if (rv == 0)
		rv = wal_append_small(wal, &record, payload, &seq);
	if (rv != 0)
		return rv;
	wal_apply_hard(g, hard, seq);
	rv = wal_append_small(wal, &record, payload, &seq);
	if (rv != 0)
		return rv;
	wal_apply_hard(g, hard, seq);
	return 0;
}

int wal_append_mark(struct wal *wal, uint64_t group, uint64_t index, uint64_t term)
{
	struct segment_record record = {
	    .group = group, .first_index = index, .term = term, .type = SEGMENT_RECORD_MARK};
	struct wal_group *g;
	uint64_t seq, at_term;
	bool keep;
	int rv;

	rv = wal_check_appendable(wal);
	if (rv != 0)
		return rv;
	if (index == UINT64_MAX)
		return -EINVAL; /* No next index (segment_record_get()). */
	rv = wal_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	if ((!g->removed && index < g->mark_index) || g->damaged)
		return -EINVAL; /* A damaged group takes wal_append_reset() first. */
	keep = !g->removed && wal_group_term_at(g, index, &at_term) && at_term == term;
	record.flags = keep ? SEGMENT_MARK_KEEP : 0;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	if (g->removed)
		wal_group_clear(g);
	wal_apply_mark(g, index, term, keep, seq);
	return 0;
}

int wal_append_reset(struct wal *wal, uint64_t group, uint64_t index, uint64_t term)
{
	struct segment_record record = {.group = group,
					.first_index = index,
					.term = term,
					.type = SEGMENT_RECORD_MARK,
					.flags = SEGMENT_MARK_RESET};
	struct wal_group *g;
	uint64_t seq;
	int rv;

	rv = wal_check_appendable(wal);
	if (rv != 0)
		return rv;
	if (index == UINT64_MAX)
		return -EINVAL; /* No next index (segment_record_get()). */
	rv = wal_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	wal_apply_reset(g, index, term, seq);
	return 0;
}

int wal_append_removed(struct wal *wal, uint64_t group)
{
	struct segment_record record = {.group = group, .type = SEGMENT_RECORD_REMOVED};
	struct wal_group *g;
	uint64_t seq;
	int rv;

	rv = wal_check_appendable(wal);
	if (rv != 0)
		return rv;
	rv = wal_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	wal_apply_removed(g, seq);
	return 0;
}

uint64_t wal_position(const struct wal *wal)
{
	return wal->appended_batch;
}

uint64_t wal_durable(const struct wal *wal)
{
	return wal->durable_batch;
}

/* Group commit: the write and its fdatasync */

static void wal_batch_failed(struct wal *wal, struct wal_batch *batch, int rv, const char *what)
{
	char name[SEGMENT_NAME_SIZE];

	segment_name(name, batch->seq);
	/* The segment was preallocated, so a full disk cannot explain ENOSPC
	 * here: the file system did not keep the reservation. */
	wal_say(wal,
		"%s of batch %" PRIu64 " to segment %s at offset %" PRIu64 " failed: %s%s; the WAL "
		"stops (records up to batch %" PRIu64 " are durable; nothing later is "
		"acknowledged)",
		what, batch->number, name, batch->offset + batch->done, err_str(rv),
		rv == -ENOSPC ? " although the segment was preallocated (a file system that does "
				"not keep fallocate's reservation, such as a copy-on-write one)"
			      : "",
		wal->durable_batch);
	wal->writing_batch = 0;
	wal_fail(wal, rv == -ENOSPC ? -ENOSPC : WAL_ERR_FAILED, true);
}

static void wal_batch_done(struct wal *wal, struct wal_batch *batch)
{
	uint64_t next = batch->number + 1;

	if (batch->write_res < 0) {
		wal_batch_failed(wal, batch, batch->write_res, "write");
		return;
	}
	if (batch->sync_res < 0 && batch->sync_res != -ECANCELED) {
		/* Never retried: after a failed fdatasync the kernel may have
		 * marked the dirty pages clean, and a second fdatasync would
		 * succeed without the data being on disk. */
		wal_batch_failed(wal, batch, batch->sync_res, "fdatasync");
		return;
	}
	if (batch->done < batch->size || batch->sync_res == -ECANCELED) {
		/* A short write broke the link: write the rest, sync again. */
		wal_batch_submit(wal, batch);
		return;
	}
	batch->state = WAL_BATCH_DURABLE;
	wal->durable_batch = batch->number;
	wal->writing_batch = 0;
	wal->stats.batches_written++;
	if (next < wal->next_batch &&
	    wal->batches[next % wal->config.buffers_count].state == WAL_BATCH_QUEUED) {
		/* A full batch is waiting: hand it to the kernel now rather than
		 * at the caller's next turn, so the disk does not idle. */
		wal_batch_submit(wal, &wal->batches[next % wal->config.buffers_count]);
		loop_submit(wal->loop);
	}
	if (wal->config.durable_cb != NULL)
		wal->config.durable_cb(wal, batch->number, 0);
}

static void wal_batch_write_done(struct loop_op *op, int res)
{
	struct wal_batch *batch = WAL_CONTAINER_OF(op, struct wal_batch, write_op);

	if (res < 0)
		batch->write_res = res;
	else if (res == 0 && batch->done < batch->size)
		batch->write_res = -EIO; /* No progress: do not spin. */
	else
		batch->done += (uint32_t)res;
	batch->wal->stats.bytes_written += res > 0 ? (uint64_t)res : 0;
	if (--batch->pending == 0)
		wal_batch_done(batch->wal, batch);
}

static void wal_batch_sync_done(struct loop_op *op, int res)
{
	struct wal_batch *batch = WAL_CONTAINER_OF(op, struct wal_batch, sync_op);

	batch->sync_res = res;
	if (--batch->pending == 0)
		wal_batch_done(batch->wal, batch);
}

static void wal_batch_submit(struct wal *wal, struct wal_batch *batch)
{
	ASSERT(wal->writing_batch == 0 || wal->writing_batch == batch->number);
	ASSERT(batch->number == wal->durable_batch + 1); /* One batch at a time, in order. */
	batch->state = WAL_BATCH_WRITING;
	batch->pending = 2;
	batch->write_res = 0;
	batch->sync_res = 0;
	wal->writing_batch = batch->number;
	/* The link orders the sync after the write and cancels it if the
	 * write fails or comes up short. */
	loop_write(wal->loop, &batch->write_op, batch->fd, batch->buf + batch->done,
		   batch->size - batch->done, batch->offset + batch->done, LOOP_LINK,
		   wal_batch_write_done);
	loop_fsync(wal->loop, &batch->sync_op, batch->fd, 0, wal_batch_sync_done);
	wal->stats.fsyncs++;
}

int wal_flush(struct wal *wal)
{
	struct wal_batch *batch;
	uint64_t number = wal->durable_batch + 1;

	if (wal->stopped)
		return wal->failed;
	if (wal->writing_batch != 0 || number >= wal->next_batch)
		return 0;
	batch = &wal->batches[number % wal->config.buffers_count];
	ASSERT(batch->number == number);
	if (batch->state == WAL_BATCH_OPEN)
		wal_batch_close(wal);
	ASSERT(batch->state == WAL_BATCH_QUEUED);
	wal_batch_submit(wal, batch);
	return 0;
}

int wal_sync(struct wal *wal)
{
	uint64_t target = wal->appended_batch;
	int rv;

	for (;;) {
		if (wal->durable_batch >= target)
			return 0;
		if (wal->stopped)
			return wal->failed;
		rv = wal_flush(wal);
		if (rv != 0)
			return rv;
		rv = loop_run(wal->loop, 1);
		if (rv < 0)
			return rv;
	}
}

/* Lookups */

const struct wal_group *wal_group_find(const struct wal *wal, uint64_t group)
{
	const struct wal_group *g = wal_group_slot(wal, group);

	return g->used ? g : NULL;
}

const struct wal_group *wal_group_next(const struct wal *wal, const struct wal_group *prev)
{
	uint32_t i = prev ? (uint32_t)(prev - wal->groups) + 1 : 0;

	for (; i < wal->groups_cap; i++) {
		if (wal->groups[i].used)
			return &wal->groups[i];
	}
	return NULL;
}

int wal_term(const struct wal *wal, uint64_t group, uint64_t index, uint64_t *term)
{
	const struct wal_group *g = wal_group_find(wal, group);

	if (g == NULL || g->removed)
		return -ENOENT;
	return wal_group_term_at(g, index, term) ? 0 : -ERANGE;
}

void wal_stats_get(const struct wal *wal, struct wal_stats *stats)
{
	*stats = wal->stats;
	stats->segments_live = wal->segments_count;
	stats->segments_spare = wal->spares_count;
	stats->groups = wal->groups_count;
	stats->space_low = wal->space_low;
	stats->disk_size = 0;
	for (uint32_t i = 0; i < wal->segments_count; i++)
		stats->disk_size += wal->segments[i].size;
	for (uint32_t i = 0; i < wal->spares_count; i++)
		stats->disk_size += wal->spares[i].size;
}

const struct wal_segment *wal_segment_at(const struct wal *wal, uint32_t slot)
{
	return slot < wal->segments_count ? &wal->segments[slot] : NULL;
}

const char *wal_why(const struct wal *wal)
{
	return wal->why;
}

/* Reading back */

/* The bytes of a record still in a batch buffer, or NULL. */
static const uint8_t *wal_cache_find(const struct wal *wal, uint64_t seq, uint64_t offset,
				     uint32_t size)
{
	for (uint32_t i = 0; i < wal->config.buffers_count; i++) {
		const struct wal_batch *batch = &wal->batches[i];

		if (batch->state == WAL_BATCH_FREE || batch->seq != seq)
			continue;
		if (offset >= batch->offset && offset + size <= batch->offset + batch->size)
			return batch->buf + (offset - batch->offset);
	}
	return NULL;
}

static int wal_pread_all(int fd, uint8_t *buf, uint64_t size, uint64_t offset)
{
	uint64_t done = 0;

	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* The file is shorter than its records. */
		done += (uint64_t)n;
	}
	return 0;
}

/* Verify a record read back against the run that pointed at it: checksum
 * again (it was verified on open or computed on append), then identity. */
static int wal_read_check(struct wal_read *read, const struct wal_read_part *part,
			  struct segment_record *record)
{
	char name[SEGMENT_NAME_SIZE];
	int rv = segment_record_get(read->buf + part->buf_offset, part->size, part->seq, record);

	if (rv == 0 && (record->type != SEGMENT_RECORD_ENTRIES || record->group != read->group ||
			record->first_index != part->record_index || record->term != part->term))
		rv = WAL_ERR_CORRUPT;
	if (rv != 0) {
		segment_name(name, part->seq);
		wal_say(read->wal,
			"segment %s offset %" PRIu64 " group %" PRIu64 ": record read back fails "
			"verification",
			name, part->offset, read->group);
	}
	return rv;
}

/* Decode the parts into read->entries, in index order. */
static int wal_read_decode(struct wal_read *read, uint64_t size_max)
{
	uint64_t payload = 0;

	for (uint32_t p = 0; p < read->parts_count; p++) {
		const struct wal_read_part *part = &read->parts[p];
		struct segment_record record;
		struct segment_entries cursor;
		const uint8_t *data;
		uint32_t size, type;
		int rv = wal_read_check(read, part, &record);

		if (rv != 0)
			return rv;
		segment_entries_init(&cursor, &record);
		for (uint64_t index = record.first_index;
		     segment_entries_next(&cursor, &size, &type, &data); index++) {
			struct wal_entry *entry;

			if (index >= part->first_index + part->count || index > read->last_index)
				break;
			if (index < read->first_index || index < part->first_index)
				continue;
			if (read->entries_count > 0 && payload + size > size_max)
				return 0;
			ASSERT(index == read->first_index + read->entries_count);
			entry = &read->entries[read->entries_count++];
			entry->term = record.term;
			entry->type = type;
			entry->size = size;
			entry->data = data;
			payload += size;
		}
	}
	return 0;
}

static void wal_read_finish(struct wal_read *read)
{
	read->rv = read->rv != 0 ? read->rv : wal_read_decode(read, read->size_max);
	read->cb(read, read->rv);
}

static void wal_read_part_done(struct loop_op *op, int res)
{
	struct wal_read_part *part = WAL_CONTAINER_OF(op, struct wal_read_part, op);
	struct wal_read *read = part->read;

	if (res > 0)
		part->done += (uint32_t)res;
	if (res < 0 && read->rv == 0)
		read->rv = res;
	else if (res == 0 && read->rv == 0)
		read->rv = -EIO;
	if (res > 0 && part->done < part->size) {
		/* Short read: ask for the rest. */
		loop_read(read->wal->loop, &part->op, part->fd,
			  read->buf + part->buf_offset + part->done, part->size - part->done,
			  part->offset + part->done, 0, wal_read_part_done);
		return;
	}
	if (--read->parts_pending > 0)
		return;
	read->wal->reads_inflight--;
	wal_read_finish(read);
}

/* Pick the runs covering first..last, up to size_max record bytes. */
static int wal_read_plan(struct wal_read *read, const struct wal_group *g, uint32_t size_max)
{
	uint32_t slot = wal_runs_find(g, read->first_index);
	uint64_t bytes = 0, entries = 0;
	uint32_t count = 0;

	ASSERT(slot < g->runs_count);
	for (uint32_t s = slot; s < g->runs_count; s++) {
		const struct wal_run *run = wal_run_at(g, s);

		if (run->first_index > read->last_index || (count > 0 && bytes >= size_max))
			break;
		bytes += run->size;
		entries += run->count;
		count++;
	}
	read->parts = calloc(count, sizeof(*read->parts));
	read->buf = malloc(bytes ? bytes : 1);
	read->entries = calloc(entries, sizeof(*read->entries));
	if (read->parts == NULL || read->buf == NULL || read->entries == NULL)
		return -ENOMEM;
	bytes = 0;
	for (uint32_t i = 0; i < count; i++) {
		const struct wal_run *run = wal_run_at(g, slot + i);
		struct wal_read_part *part = &read->parts[i];

		part->read = read;
		part->seq = run->seq;
		part->offset = run->offset;
		part->size = run->size;
		part->buf_offset = bytes;
		part->record_index = run->record_index;
		part->first_index = run->first_index;
		part->count = run->count;
		part->term = run->term;
		bytes += run->size;
	}
	read->parts_count = count;
	return 0;
}

int wal_read(struct wal *wal, struct wal_read *read, uint64_t group, uint64_t first_index,
	     uint64_t last_index, uint32_t size_max, wal_read_cb cb)
{
	const struct wal_group *g = wal_group_find(wal, group);
	int rv;

	memset(read, 0, sizeof(*read));
	read->wal = wal;
	read->cb = cb;
	read->group = group;
	read->first_index = first_index;
	read->size_max = size_max;
	if (g == NULL || g->removed)
		return -ENOENT;
	if (first_index < g->first_index || first_index > g->last_index || last_index < first_index)
		return -ERANGE;
	read->last_index = last_index < g->last_index ? last_index : g->last_index;
	rv = wal_read_plan(read, g, size_max);
	if (rv != 0)
		return rv;
	for (uint32_t i = 0; i < read->parts_count; i++) {
		struct wal_read_part *part = &read->parts[i];
		const uint8_t *cached = wal_cache_find(wal, part->seq, part->offset, part->size);
		const struct wal_segment *segment;

		if (cached != NULL) {
			memcpy(read->buf + part->buf_offset, cached, part->size);
			continue;
		}
		segment = wal_segment_find(wal, part->seq);
		ASSERT(segment != NULL); /* A live run pins its segment. */
		part->fd = segment->fd;
		if (wal->loop == NULL) {
			/* A read-only WAL opened without a loop (tools) reads directly. */
			rv = wal_pread_all(part->fd, read->buf + part->buf_offset, part->size,
					   part->offset);
			if (rv != 0)
				return rv;
			continue;
		}
		read->parts_pending++;
		loop_read(wal->loop, &part->op, part->fd, read->buf + part->buf_offset, part->size,
			  part->offset, 0, wal_read_part_done);
	}
	if (read->parts_pending == 0)
		wal_read_finish(read);
	else
		wal->reads_inflight++; /* Segments stay until the reads are back. */
	return 0;
}

static void wal_read_sync_done(struct wal_read *read, int rv)
{
	(void)rv;
	read->cb = NULL; /* Marks completion for wal_read_sync(). */
}

int wal_read_sync(struct wal *wal, struct wal_read *read, uint64_t group, uint64_t first_index,
		  uint64_t last_index, uint32_t size_max)
{
	int rv = wal_read(wal, read, group, first_index, last_index, size_max, wal_read_sync_done);

	if (rv != 0)
		return rv;
	while (read->cb != NULL) {
		ASSERT(wal->loop != NULL);
		rv = loop_run(wal->loop, 1);
		if (rv < 0)
			return rv;
	}
	return read->rv;
}

void wal_read_release(struct wal_read *read)
{
	free(read->parts);
	free(read->buf);
	free(read->entries);
	read->parts = NULL;
	read->buf = NULL;
	read->entries = NULL;
	read->entries_count = 0;
}

/* Reclaiming disk */

/* The oldest segment a group still needs, or UINT64_MAX. */
static uint64_t wal_group_need(const struct wal_group *g)
{
	uint64_t need = UINT64_MAX;

	if (g->hard_seq != 0 && g->hard_seq < need)
		need = g->hard_seq;
	if (g->mark_seq != 0 && g->mark_seq < need)
		need = g->mark_seq;
	if (g->removed_seq != 0 && g->removed_seq < need)
		need = g->removed_seq;
	if (g->runs_count > 0 && wal_run_at(g, 0)->seq < need)
		need = wal_run_at(g, 0)->seq;
	return need;
}

/* A removal record only matters while older segments may hold the
 * group's earlier records. Once the oldest segment on disk is the one
 * holding it (older ones are durably gone), it pins nothing. */
static void wal_drop_stale_removals(struct wal *wal)
{
	uint64_t front = wal->segments_count ? wal->segments[0].seq : UINT64_MAX;

	for (uint32_t i = 0; i < wal->groups_cap;) {
		struct wal_group *g = &wal->groups[i];

		if (!g->used || g->removed_seq == 0 || g->removed_seq > front) {
			i++;
			continue;
		}
		g->removed_seq = 0;
		if (g->removed) {
			wal_group_delete(wal, g); /* May shift another group into slot i. */
			continue;
		}
		i++;
	}
}

static int wal_segment_retire(struct wal *wal)
{
	struct wal_segment front = wal->segments[0];
	char name[SEGMENT_NAME_SIZE], target[SEGMENT_NAME_SIZE];

	segment_name(name, front.seq);
	if (wal->spares_count < wal->config.spares_max && front.size == wal->config.segment_size) {
		/* Recycle: its blocks are allocated and written, so writing it
		 * again needs no metadata update. The new name is a new
		 * sequence number, which is also the checksum seed: the old
		 * records in it no longer verify. */
		struct wal_segment spare = {.seq = wal->next_seq,
					    .fd = front.fd,
					    .write_fd = front.write_fd,
					    .size = front.size};
		int rv;

		segment_name(target, wal->next_seq);
		if (renameat(wal->dir_fd, name, wal->dir_fd, target) != 0)
			return -errno;
		wal->next_seq++;
		rv = wal_segment_open_direct(wal, &spare);
		if (rv != 0) {
			wal_segment_close(&spare);
			return rv;
		}
		wal->spares[wal->spares_count++] = spare;
		wal->stats.segments_recycled++;
	} else {
		if (unlinkat(wal->dir_fd, name, 0) != 0)
			return -errno;
		wal_segment_close(&front);
		wal->stats.segments_deleted++;
	}
	wal->segments_count--;
	memmove(wal->segments, wal->segments + 1, sizeof(*wal->segments) * wal->segments_count);
	return 0;
}

/* Retire the segments decided on, once what made them dead is durable. */
static int wal_reclaim_execute(struct wal *wal)
{
	bool retired = false;
	int rv = 0;

	if (wal->reclaim_seq == 0 || wal->durable_batch < wal->reclaim_barrier ||
	    wal->reads_inflight > 0)
		return 0;
	while (wal->segments_count > 1 && wal->segments[0].seq <= wal->reclaim_seq) {
		rv = wal_segment_retire(wal);
		if (rv != 0)
			break;
		retired = true;
	}
	wal->reclaim_seq = 0;
	if (retired) {
		/* The deletions must be durable before any state relies on
		 * the segments being gone (wal_drop_stale_removals). */
		int sync_rv = wal_fsync_dir(wal);

		rv = rv != 0 ? rv : sync_rv;
	}
	if (rv != 0)
		wal_say(wal, "retiring a segment failed: %s", err_str(rv));
	return rv;
}

/* Find the segments no group needs; they go once everything appended so
 * far (the records that superseded theirs) is durable. */
static void wal_reclaim_decide(struct wal *wal)
{
	const struct wal_group *g = NULL;
	uint64_t need, upto = 0;

	if (wal->segments_count <= 1)
		return;
	wal_drop_stale_removals(wal);
	need = wal_tail(wal)->seq;
	while ((g = wal_group_next(wal, g)) != NULL) {
		uint64_t n = wal_group_need(g);

		if (n < need)
			need = n;
	}
	for (uint32_t i = 0; i + 1 < wal->segments_count && wal->segments[i].seq < need; i++)
		upto = wal->segments[i].seq;
	if (upto > wal->reclaim_seq) {
		wal->reclaim_seq = upto;
		wal->reclaim_barrier = wal->appended_batch;
	}
}

/* Load the bytes of the record a run points at, from cache or file. */
static int wal_record_load(const struct wal *wal, const struct wal_run *run, uint8_t *out)
{
	const uint8_t *cached = wal_cache_find(wal, run->seq, run->offset, run->size);
	const struct wal_segment *segment;

	if (cached != NULL) {
		memcpy(out, cached, run->size);
		return 0;
	}
	segment = wal_segment_find(wal, run->seq);
	ASSERT(segment != NULL);
	return wal_pread_all(segment->fd, out, run->size, run->offset);
}

/* The live entries of g, read back (synchronously: bounded by
 * rewrite_size_max, and rare) into *buf, which the caller frees. */
static int wal_collect_entries(struct wal *wal, const struct wal_group *g,
			       struct wal_entry *entries, uint8_t *buf, uint64_t *count)
{
	uint64_t first = g->first_index, at = 0, n = 0;

	for (uint32_t s = 0; s < g->runs_count; s++) {
		const struct wal_run *run = wal_run_at(g, s);
		struct segment_record record;
		struct segment_entries cursor;
		const uint8_t *data;
		uint32_t size, type;
		int rv = wal_record_load(wal, run, buf + at);

		if (rv == 0)
			rv = segment_record_get(buf + at, run->size, run->seq, &record);
		if (rv != 0)
			return rv;
		segment_entries_init(&cursor, &record);
		for (uint64_t index = record.first_index;
		     segment_entries_next(&cursor, &size, &type, &data) &&
		     index < run->first_index + run->count;
		     index++) {
			if (index < first || index < run->first_index)
				continue;
			ASSERT(index == first + n);
			entries[n++] = (struct wal_entry){record.term, type, size, data};
		}
		at += run->size;
	}
	*count = n;
	return n == g->last_index + 1 - first ? 0 : WAL_ERR_CORRUPT;
}

/* Append again what keeps g alive: mark, hard state, then the entries as
 * COPY records. Each record is valid on its own and a copy never truncates
 * what follows it, so a crash midway leaves some entries at their old
 * place (which stays until the copies are durable), never a loss. All or
 * nothing for buffers: -EAGAIN before anything is appended. */
static int wal_rewrite_group(struct wal *wal, struct wal_group *g)
{
	uint64_t group = g->group, first = g->first_index, count = 0, upper = 0;
	uint64_t entries_count = g->last_index + 1 - first;
	struct wal_entry *entries = calloc(entries_count + 1, sizeof(*entries));
	uint8_t *buf = malloc(g->live_size ? g->live_size : 1);
	struct wal_hard hard = g->hard;
	bool has_hard = g->has_hard;
	int rv = -ENOMEM;

	if (entries == NULL || buf == NULL)
		goto out;
	rv = wal_collect_entries(wal, g, entries, buf, &count);
	if (rv == 0 && count > 0)
		rv = wal_check_entries(wal, entries, (uint32_t)count, &upper);
	if (rv != 0)
		goto out;
	/* Room for all of it, and a batch more for the small records. A
	 * rewrite may take at most half the buffers: more could only happen
	 * when the WAL is idle, and a busy WAL would stay pinned. */
	upper +=
	    2 * SEGMENT_RECORD_HEADER_SIZE + SEGMENT_HARD_SIZE + wal->config.batch_size_max / 2;
	if (upper / (wal->config.batch_size_max / 2) + 2 > (wal->config.buffers_count - 1) / 2) {
		rv = -EMSGSIZE;
		goto out;
	}
	rv = wal_reserve(wal, upper);
	if (rv != 0)
		goto out;
	if (g->mark_seq != 0)
		rv = wal_append_mark(wal, group, g->mark_index, g->mark_term);
	if (rv == 0 && has_hard)
		rv = wal_append_hard(wal, group, &hard);
	if (rv == 0 && count > 0)
		rv = wal_append_entries_flags(wal, group, first, entries, (uint32_t)count,
					      SEGMENT_ENTRIES_COPY);
out:
	free(entries);
	free(buf);
	return rv;
}

/* Too many segments: move or report the groups that pin the oldest one. */
static int wal_relieve(struct wal *wal, struct wal_pin *pins, uint32_t pins_max,
		       uint32_t *pins_count)
{
	uint64_t front = wal->segments[0].seq;

	for (uint32_t i = 0; i < wal->groups_cap && *pins_count < pins_max; i++) {
		struct wal_group *g = &wal->groups[i];
		struct wal_pin pin = {.group = g->group, .seq = front};
		int rv;

		if (!g->used || wal_group_need(g) != front)
			continue;
		pin.live_size = g->live_size;
		pin.action = WAL_PIN_SNAPSHOT;
		if (g->live_size <= wal->config.rewrite_size_max) {
			rv = wal_rewrite_group(wal, g);
			if (rv == -EAGAIN)
				break; /* Buffers full: go on next time. */
			if (rv != 0 && rv != -EMSGSIZE)
				return rv;
			if (rv == 0)
				pin.action = WAL_PIN_REWRITTEN;
		}
		if (pin.action == WAL_PIN_REWRITTEN)
			wal->stats.groups_rewritten++;
		else
			wal->stats.groups_snapshot_asked++;
		pins[(*pins_count)++] = pin;
	}
	return 0;
}

int wal_reclaim(struct wal *wal, struct wal_pin *pins, uint32_t pins_max, uint32_t *pins_count)
{
	int rv;

	*pins_count = 0;
	if (wal->config.read_only)
		return -EROFS;
	if (wal->stopped)
		return wal->failed;
	rv = wal_reclaim_execute(wal);
	if (rv != 0)
		return rv;
	wal_reclaim_decide(wal);
	rv = wal_reclaim_execute(wal);
	if (rv != 0)
		return rv;
	/* Rewriting groups forward spends the reserve: not while space is low. */
	if (wal->segments_count > wal->config.segments_soft_max && wal->failed == 0 &&
	    !wal->space_low)
		return wal_relieve(wal, pins, pins_max, pins_count);
	return 0;
}

/* Recovery */

struct wal_file {
	uint64_t seq;
	int fd;
	uint64_t size;
	bool valid; /* Its header verifies and matches its name and size. */
	/* Its header fails, but its first record verifies as one written to
	 * this segment: the header is damaged, the file is no spare. */
	bool header_damaged;
	struct segment_header header;
};

static int wal_file_compare(const void *a, const void *b)
{
	const struct wal_file *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int wal_list(struct wal *wal, struct wal_file **out, uint32_t *count)
{
	struct wal_file *files = NULL;
	uint32_t n = 0, cap = 0;
	struct dirent *e;
	int fd = dup(wal->dir_fd);
	DIR *dir;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return -errno;
	}
	rewinddir(dir);
	while ((e = readdir(dir)) != NULL) {
		uint64_t seq;

		if (!segment_parse_name(e->d_name, &seq))
			continue;
		if (n == cap) {
			struct wal_file *more;

			cap = cap ? cap * 2 : 16;
			more = realloc(files, sizeof(*files) * cap);
			if (more == NULL) {
				free(files);
				closedir(dir);
				return -ENOMEM;
			}
			files = more;
		}
		files[n++] = (struct wal_file){.seq = seq, .fd = -1};
	}
	closedir(dir);
	if (n > 0)
		qsort(files, n, sizeof(*files), wal_file_compare);
	*out = files;
	*count = n;
	return 0;
}

/* A file whose header fails is a spare (never used, or recycled: its old
 * records were written for another segment number) unless its first record
 * verifies as one written to this very segment: then its header is damaged
 * and the records after it are the log. Such a file is never taken for a
 * spare (that would drop durable records without a word): recovery refuses
 * it, or under salvage reads it with a header rebuilt from what is known
 * and repairs every group, since where the previous segment ended is lost
 * with the header. */
static int wal_file_check_records(struct wal *wal, struct wal_file *file)
{
	uint8_t buf[SEGMENT_RECORD_HEADER_SIZE];
	struct segment_record record;
	int rv;

	rv = wal_pread_all(file->fd, buf, sizeof(buf), SEGMENT_HEADER_SIZE);
	if (rv != 0)
		return rv;
	/* Only the record's header is read and checked: avail bounds its size. */
	if (segment_record_head_get(buf, file->size - SEGMENT_HEADER_SIZE, file->seq, &record) != 0)
		return 0;
	file->header_damaged = true;
	file->header = (struct segment_header){.seq = file->seq,
					       .size = file->size,
					       .first_batch = record.batch,
					       .batch_size_max = wal->config.batch_size_max};
	return 0;
}

static int wal_file_open(struct wal *wal, struct wal_file *file)
{
	char name[SEGMENT_NAME_SIZE];
	uint8_t buf[SEGMENT_HEADER_SIZE];
	struct stat st;
	int rv;

	segment_name(name, file->seq);
	file->fd =
	    openat(wal->dir_fd, name, (wal->config.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (file->fd < 0 || fstat(file->fd, &st) != 0) {
		rv = -errno;
		wal_say(wal, "cannot open segment %s: %s", name, err_str(rv));
		return rv;
	}
	file->size = (uint64_t)st.st_size;
	if (file->size < SEGMENT_HEADER_SIZE)
		return 0;
	/* A process that died may still have direct writes in flight to this
	 * file: io_uring does not wait for them at exit. A no-op fallocate
	 * takes the inode lock and waits for in-flight direct I/O (ext4, XFS)
	 * so that what we read is what stays. Best effort elsewhere. */
	if (!wal->config.read_only)
		(void)fallocate(file->fd, FALLOC_FL_KEEP_SIZE, 0, WAL_BLOCK_SIZE);
	rv = wal_pread_all(file->fd, buf, SEGMENT_HEADER_SIZE, 0);
	if (rv != 0) {
		wal_say(wal, "cannot read segment %s: %s", name, err_str(rv));
		return rv;
	}
	if (segment_header_version(buf) != 0 && segment_header_version(buf) != SEGMENT_VERSION) {
		wal_say(wal,
			"segment %s has format version %d; this build reads version %d only "
			"(record headers have their own check since version 2)",
			name, segment_header_version(buf), SEGMENT_VERSION);
		return -ENOTSUP;
	}
	file->valid = segment_header_get(buf, &file->header) == 0 &&
		      file->header.seq == file->seq && file->header.size == file->size &&
		      file->size % 8 == 0 && file->size <= WAL_SEGMENT_SIZE_MAX &&
		      file->header.batch_size_max <= file->size;
	if (!file->valid && file->size >= SEGMENT_HEADER_SIZE + SEGMENT_RECORD_HEADER_SIZE &&
	    file->size % 8 == 0 && file->size <= WAL_SEGMENT_SIZE_MAX)
		return wal_file_check_records(wal, file);
	return 0;
}

static void wal_say_corrupt(struct wal *wal, uint64_t seq, uint64_t offset, const uint8_t *rec,
			    uint64_t avail, const char *what)
{
	char name[SEGMENT_NAME_SIZE];
	uint64_t group = 0;

	if (avail >= 16)
		memcpy(&group, rec + 8, sizeof(group));
	segment_name(name, seq);
	wal_say(wal,
		"segment %s offset %" PRIu64 " group %" PRIu64 " (unverified): %s; refusing to "
		"open: the record may have been acknowledged (inspect with flotilla-wal)",
		name, offset, group, what);
}

/* Salvage: group g is damaged from index on by the record at seq, offset. */
static void wal_damage(struct wal *wal, struct wal_group *g, uint64_t index, uint64_t term,
		       uint64_t seq, uint64_t offset)
{
	if (!g->damaged) {
		g->damaged = true;
		g->damaged_index = index;
		g->damaged_seq = seq;
		g->damaged_offset = offset;
	} else if (index < g->damaged_index) {
		g->damaged_index = index;
	}
	if (term > g->damaged_term)
		g->damaged_term = term;
	(void)wal;
}

/* A damaged group takes only what cannot depend on the lost record: hard
 * state (self-contained; term and vote must not go back), and a reset or a
 * removal, which supersede everything before them. Returns true when the
 * record is to be skipped. */
static bool wal_damaged_skips(struct wal_group *g, const struct segment_record *record)
{
	if (!g->damaged)
		return false;
	if (record->type == SEGMENT_RECORD_HARD || record->type == SEGMENT_RECORD_REMOVED ||
	    (record->type == SEGMENT_RECORD_MARK && (record->flags & SEGMENT_MARK_RESET)))
		return false;
	g->removed = false; /* The group lives on past a removal we may have lost. */
	if (record->term > g->damaged_term)
		g->damaged_term = record->term; /* A later record knows a term at least this. */
	return true;
}

static int wal_recover_record(struct wal *wal, uint64_t seq, uint64_t offset,
			      const struct segment_record *record)
{
	struct wal_group *g;
	bool known;
	int rv;

	if (record->type == SEGMENT_RECORD_PAD)
		return 0;
	known = wal_group_find(wal, record->group) != NULL;
	rv = wal_group_get(wal, record->group, &g);
	if (rv != 0)
		return rv;
	if (!known && wal->damage_all)
		wal_damage(wal, g, 1, 0, seq, offset); /* Its first records may be lost. */
	if (wal_damaged_skips(g, record))
		return 0;
	switch (record->type) {
	case SEGMENT_RECORD_ENTRIES: {
		struct segment_entries cursor;
		struct wal_run run;

		segment_entries_init(&cursor, record);
		run = (struct wal_run){record->first_index,
				       record->first_index,
				       record->term,
				       seq,
				       offset,
				       cursor.count,
				       segment_record_size(record->size)};
		rv = wal_runs_reserve(g, 1);
		if (rv == 0)
			rv = wal_apply_entries(g, &run, record->flags & SEGMENT_ENTRIES_COPY, true);
		if (rv != 0)
			return rv;
		wal->stats.entries += cursor.count;
		break;
	}
	case SEGMENT_RECORD_HARD: {
		struct wal_hard hard;

		segment_hard_get(record->payload, &hard.term, &hard.vote, &hard.commit);
		hard.repairing = (record->flags & SEGMENT_HARD_REPAIRING) != 0;
		wal_apply_hard(g, &hard, seq);
		break;
	}
	case SEGMENT_RECORD_MARK:
		if (record->flags & SEGMENT_MARK_RESET) {
			wal_apply_reset(g, record->first_index, record->term, seq);
			break;
		}
		if (g->removed)
			wal_group_clear(g);
		wal_apply_mark(g, record->first_index, record->term,
			       (record->flags & SEGMENT_MARK_KEEP) != 0, seq);
		break;
	case SEGMENT_RECORD_REMOVED:
		wal_apply_removed(g, seq);
		break;
	default:
		ASSERT(false); /* segment_record_get() accepts known types only. */
	}
	return 0;
}

/* In the last segment, a bad record followed by a valid record of a later
 * batch than the one that could have been torn is corruption: batch n + 1
 * is only written once batch n is durable. */
static bool wal_later_batch_follows(const uint8_t *buf, uint64_t from, uint64_t size, uint64_t seq,
				    uint64_t last_batch)
{
	for (uint64_t at = from + 8; at + SEGMENT_RECORD_HEADER_SIZE <= size; at += 8) {
		struct segment_record record;

		if (segment_record_get(buf + at, size - at, seq, &record) == 0 &&
		    record.batch >= last_batch + 2)
			return true;
	}
	return false;
}

static bool wal_is_zero(const uint8_t *buf, uint64_t size)
{
	for (uint64_t i = 0; i < size; i++) {
		if (buf[i] != 0)
			return false;
	}
	return true;
}

/* Salvage: the record at *offset fails verification before the segment's
 * known end (limit). If its header verifies, its group is damaged and the
 * scan steps over it; otherwise every group is damaged (the lost bytes
 * could be anyone's) and the scan resumes at the next record that verifies,
 * or at limit. A record that verifies in the middle of a damaged one would
 * need an embedder payload that is itself a sealed record of this segment. */
static int wal_salvage(struct wal *wal, uint64_t seq, const uint8_t *buf, uint64_t *offset,
		       uint64_t limit)
{
	char name[SEGMENT_NAME_SIZE];
	struct segment_record record;
	uint64_t at = *offset;
	bool first = wal->stats.damaged_records == 0;
	struct wal_group *g;
	int rv;

	segment_name(name, seq);
	wal->stats.damaged_records++;
	if (segment_record_head_get(buf + at, limit - at, seq, &record) == 0) {
		*offset = at + segment_record_size(record.size);
		if (record.type == SEGMENT_RECORD_PAD)
			return 0; /* Filler: nothing was lost. */
		rv = wal_group_get(wal, record.group, &g);
		if (rv != 0)
			return rv;
		/* Below the damaged record the group's entries are intact; from it
		 * on, its log cannot be trusted (a lost ENTRIES record may have
		 * replaced a suffix). */
		wal_damage(wal, g,
			   record.type == SEGMENT_RECORD_ENTRIES ? record.first_index
								 : g->last_index + 1,
			   record.term, seq, at);
		if (first)
			wal_say(wal,
				"segment %s offset %" PRIu64 ": record (%s) of group %" PRIu64
				" fails verification (its header verifies); the group is damaged "
				"from index %" PRIu64 " and must be repaired from its peers",
				name, at, segment_record_type_name(record.type), record.group,
				g->damaged_index);
		return 0;
	}
	first = first || !wal->stats.damaged_unnamed; /* The graver news wins. */
	wal->damage_all = true;
	wal->stats.damaged_unnamed = true;
	for (uint32_t i = 0; i < wal->groups_cap; i++) {
		g = &wal->groups[i];
		if (g->used)
			wal_damage(wal, g, g->mark_index + 1, 0, seq, at);
	}
	for (at += 8; at + SEGMENT_RECORD_HEADER_SIZE <= limit; at += 8) {
		if (segment_record_get(buf + at, limit - at, seq, &record) == 0)
			break;
	}
	if (at + SEGMENT_RECORD_HEADER_SIZE > limit)
		at = limit;
	if (first)
		wal_say(wal,
			"segment %s offset %" PRIu64 ": a record fails verification and so does "
			"its header (the next record that verifies is at offset %" PRIu64
			"); every group of this WAL is damaged and must be repaired from its peers",
			name, *offset, at);
	*offset = at;
	return 0;
}

/* Scan one segment whose header verified. next is the header of the segment
 * after it on disk, if any. */
static int wal_recover_segment(struct wal *wal, const struct wal_file *file,
			       const struct segment_header *next, bool is_last, uint8_t *buf,
			       uint64_t *last_batch)
{
	struct wal_segment segment = {
	    .seq = file->seq, .fd = file->fd, .write_fd = -1, .size = file->size};
	bool end_known = next != NULL && next->prev_seq == file->seq;
	uint64_t limit = end_known ? next->prev_end : file->size;
	uint64_t offset = SEGMENT_HEADER_SIZE;
	struct segment_record record;
	int rv;

	if (end_known && (limit < SEGMENT_HEADER_SIZE || limit > file->size)) {
		wal_say_corrupt(wal, file->seq, limit, buf, 0,
				"the next segment says this one ends past its size");
		return WAL_ERR_CORRUPT;
	}
	rv = wal_pread_all(file->fd, buf, file->size, 0);
	if (rv != 0)
		return rv;
	for (;;) {
		while (offset < limit &&
		       segment_record_get(buf + offset, limit - offset, file->seq, &record) == 0) {
			if (record.batch < *last_batch) {
				wal_say_corrupt(wal, file->seq, offset, buf + offset,
						limit - offset, "batch numbers go backwards");
				return WAL_ERR_CORRUPT;
			}
			rv = wal_recover_record(wal, file->seq, offset, &record);
			if (rv != 0)
				return rv;
			if (wal->config.scan_cb != NULL)
				wal->config.scan_cb(wal->config.scan_arg, file->seq, offset,
						    &record);
			*last_batch = record.batch;
			if (segment.first_batch == 0)
				segment.first_batch = record.batch;
			segment.last_batch = record.batch;
			segment.records_count++;
			wal->stats.recovered_records++;
			offset += segment_record_size(record.size);
		}
		if (!wal->config.salvage || offset >= limit)
			break;
		/* Corruption, not a torn tail, when the segment's end is known or
		 * a later batch follows (see below): salvage steps over it. */
		if (!end_known && !(is_last && wal_later_batch_follows(buf, offset, file->size,
								       file->seq, *last_batch)))
			break;
		rv = wal_salvage(wal, file->seq, buf, &offset, limit);
		if (rv != 0)
			return rv;
	}
	if (end_known && offset != limit) {
		wal_say_corrupt(
		    wal, file->seq, offset, buf + offset, limit - offset,
		    "record fails verification before the end the next segment records");
		return WAL_ERR_CORRUPT;
	}
	/* A segment whose header was damaged takes no more writes: what fails
	 * in it stays as it is (its first record is how the next recovery
	 * tells it from a spare), and every group repairs anyway. */
	if (is_last && offset < file->size && !file->header_damaged) {
		uint64_t torn_end = offset + file->header.batch_size_max + SEGMENT_HEADER_SIZE;

		if (wal_later_batch_follows(buf, offset, file->size, file->seq, *last_batch)) {
			wal_say_corrupt(wal, file->seq, offset, buf + offset, file->size - offset,
					"record fails verification and records of a later batch "
					"follow it");
			return WAL_ERR_CORRUPT;
		}
		if (torn_end > file->size)
			torn_end = file->size;
		if (!wal_is_zero(buf + offset, torn_end - offset)) {
			/* Whatever is there goes: leftovers of a torn batch could
			 * otherwise verify after a shorter batch written over them.
			 * It is reported as torn when it starts like a record of the
			 * last batches; a recycled file's old records do not. */
			struct segment_record peek;

			wal->tail_zero_end = torn_end;
			if (segment_record_peek(buf + offset, file->size - offset, &peek) == 0 &&
			    peek.batch >= *last_batch && peek.batch <= *last_batch + 1) {
				wal->stats.torn = true;
				wal->stats.torn_seq = file->seq;
				wal->stats.torn_offset = offset;
			}
		}
	}
	segment.end = offset;
	segment.end_known = end_known;
	segment.batch_size_max = file->header.batch_size_max;
	/* Writing on in the last segment needs the same batch bound, and
	 * with direct_io a block-aligned end. */
	segment.full = !is_last || offset == file->size || file->header_damaged ||
		       file->header.batch_size_max < wal->config.batch_size_max ||
		       (wal->config.direct_io && offset % WAL_BLOCK_SIZE != 0);
	if (!segment.full)
		rv = wal_segment_open_direct(wal, &segment);
	if (rv == 0)
		rv = wal_segments_push(wal, &segment);
	if (rv != 0 && segment.write_fd >= 0)
		close(segment.write_fd);
	return rv;
}

/* Files after the last valid segment were prepared but never written (or
 * their first write was torn). Give them fresh sequence numbers: the seed
 * changes, so whatever is in them can never verify. */
static int wal_recover_spares(struct wal *wal, struct wal_file *files, uint32_t from,
			      uint32_t count)
{
	for (uint32_t i = from; i < count; i++) {
		char name[SEGMENT_NAME_SIZE], target[SEGMENT_NAME_SIZE];

		segment_name(name, files[i].seq);
		if (wal->config.read_only)
			continue;
		if (files[i].size != wal->config.segment_size ||
		    wal->spares_count >= wal->config.spares_max) {
			if (unlinkat(wal->dir_fd, name, 0) != 0)
				return -errno;
			continue;
		}
		segment_name(target, wal->next_seq);
		if (renameat(wal->dir_fd, name, wal->dir_fd, target) != 0)
			return -errno;
		struct wal_segment spare = {.seq = wal->next_seq++,
					    .fd = files[i].fd,
					    .write_fd = -1,
					    .size = files[i].size};
		int rv = wal_segment_open_direct(wal, &spare);

		if (rv != 0)
			return rv;
		wal->spares[wal->spares_count++] = spare;
		files[i].fd = -1;
	}
	return 0;
}

/* Cut a torn tail: zero where the torn batch may have left bytes, so no
 * piece of it can verify later, and make the result durable. */
static int wal_recover_tail(struct wal *wal)
{
	struct wal_segment *tail = wal_tail(wal);
	int rv;

	if (wal->config.read_only || tail == NULL)
		return 0;
	if (wal->tail_zero_end > tail->end) {
		rv = wal_zero_fill(tail->fd, tail->end, wal->tail_zero_end);
		if (rv != 0)
			return rv;
	}
	if (fdatasync(tail->fd) != 0)
		return -errno;
	return 0;
}

/* The first index of first_index..last_index that no run holds, or 0 when
 * the runs hold them all; *after is the run that resumes past the hole. A
 * hole that copies filled only in part (the segment holding the rest went
 * away) is found here. */
static uint64_t wal_group_hole(const struct wal_group *g, const struct wal_run **after)
{
	uint64_t covered = g->first_index; /* Every index below is held. */

	*after = NULL;
	for (uint32_t i = 0; i < g->runs_count; i++) {
		const struct wal_run *run = wal_run_at(g, i);

		if (run->first_index > covered) {
			*after = run;
			return covered;
		}
		if (run->first_index + run->count > covered)
			covered = run->first_index + run->count;
	}
	return covered <= g->last_index ? covered : 0;
}

static int wal_recover_gaps(struct wal *wal)
{
	const struct wal_group *g = NULL;

	while ((g = wal_group_next(wal, g)) != NULL) {
		char name[SEGMENT_NAME_SIZE];
		const struct wal_run *after;
		uint64_t hole;

		if (g->removed)
			continue;
		/* The live log must start right after the mark (or at 1). */
		if (g->first_index > g->mark_index + 1) {
			segment_name(name, g->gap_seq);
			wal_say(wal,
				"segment %s offset %" PRIu64 " group %" PRIu64
				": entries resume at index %" PRIu64 " after a hole in the group's "
				"log (it is compacted only up to %" PRIu64
				" and no later record fills the hole); refusing to open",
				name, g->gap_offset, g->group, g->first_index, g->mark_index);
			return WAL_ERR_GAP;
		}
		/* And hold every entry from there to its last. */
		hole = wal_group_hole(g, &after);
		if (hole != 0) {
			segment_name(name, after != NULL ? after->seq : g->gap_seq);
			wal_say(wal,
				"segment %s offset %" PRIu64 " group %" PRIu64
				": no record holds entry %" PRIu64 " of the group's live log "
				"(%" PRIu64 "..%" PRIu64 "); refusing to open",
				name, after != NULL ? after->offset : g->gap_offset, g->group, hole,
				g->first_index, g->last_index);
			return WAL_ERR_GAP;
		}
	}
	return 0;
}

/* Salvage: a group still damaged after the scan keeps no entries (the
 * caller restarts it from its snapshot and repairs the rest from peers). */
static void wal_recover_damaged(struct wal *wal)
{
	for (uint32_t i = 0; i < wal->groups_cap; i++) {
		struct wal_group *g = &wal->groups[i];

		if (!g->used || !g->damaged)
			continue;
		wal_runs_clear(g);
		g->first_index = g->mark_index + 1;
		g->last_index = g->mark_index;
		g->gap_index = g->gap_seq = g->gap_offset = 0;
		if (!g->removed)
			wal->stats.damaged_groups++;
	}
}

static int wal_recover(struct wal *wal)
{
	struct wal_file *files = NULL;
	uint32_t count = 0, valid_end = 0;
	uint64_t last_batch = 0, size_max = 0;
	uint8_t *buf = NULL;
	int rv;

	rv = wal_list(wal, &files, &count);
	if (rv != 0)
		goto out;
	for (uint32_t i = 0; i < count; i++) {
		rv = wal_file_open(wal, &files[i]);
		if (rv != 0)
			goto out;
		if (files[i].header_damaged) {
			char name[SEGMENT_NAME_SIZE];

			segment_name(name, files[i].seq);
			if (!wal->config.salvage) {
				wal_say(wal,
					"segment %s: its header fails verification but it holds "
					"records of this segment",
					name);
				rv = WAL_ERR_CORRUPT;
				goto out;
			}
			wal_say(wal,
				"segment %s: its header fails verification but it holds records "
				"of this segment; every group of this WAL is damaged and must be "
				"repaired from its peers",
				name);
			wal->damage_all = true; /* Before any record: every group. */
			wal->stats.damaged_unnamed = true;
			files[i].valid = true;
		}
		if (files[i].valid) {
			valid_end = i + 1;
			size_max = files[i].size > size_max ? files[i].size : size_max;
		}
		wal->next_seq = files[i].seq + 1;
	}
	for (uint32_t i = 0; i < valid_end; i++) {
		if (!files[i].valid) {
			wal_say_corrupt(
			    wal, files[i].seq, 0, NULL, 0,
			    "segment header is invalid but later segments hold records");
			rv = WAL_ERR_CORRUPT;
			goto out;
		}
	}
	buf = malloc(size_max ? size_max : 1);
	if (buf == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < valid_end; i++) {
		const struct segment_header *next = i + 1 < valid_end ? &files[i + 1].header : NULL;

		rv =
		    wal_recover_segment(wal, &files[i], next, i + 1 == valid_end, buf, &last_batch);
		if (rv != 0)
			goto out;
		files[i].fd = -1; /* The segment owns it now. */
	}
	wal_recover_damaged(wal);
	rv = wal_recover_gaps(wal);
	if (rv == 0)
		rv = wal_recover_spares(wal, files, valid_end, count);
	if (rv == 0)
		rv = wal_recover_tail(wal);
	if (rv == 0 && !wal->config.read_only)
		rv = wal_fsync_dir(wal); /* Earlier unlinks and renames are durable now. */
	wal->next_batch = last_batch + 1;
	wal->durable_batch = last_batch;
	wal->appended_batch = last_batch;
out:
	for (uint32_t i = 0; i < count; i++) {
		if (files[i].fd >= 0)
			close(files[i].fd);
	}
	free(files);
	free(buf);
	return rv;
}

/* Setup and teardown */

void wal_config_default(struct wal_config *config)
{
	memset(config, 0, sizeof(*config));
	config->segment_size = 64u << 20;
	config->batch_size_max = 1u << 20;
	config->buffers_count = 8;
	config->spares_max = 2;
	config->segments_soft_max = 16;
	config->rewrite_size_max = 256u << 10;
}

static int wal_config_check(struct wal *wal, const struct wal_config *config)
{
	const char *bad = NULL;

	if (config->batch_size_max < WAL_BATCH_SIZE_MIN || config->batch_size_max % WAL_BLOCK_SIZE)
		bad = "batch_size_max must be a multiple of 4096 and at least 16 KiB";
	else if (config->segment_size % WAL_BLOCK_SIZE ||
		 config->segment_size > WAL_SEGMENT_SIZE_MAX ||
		 config->segment_size / 4 < config->batch_size_max)
		bad = "segment_size must be a multiple of 4096, at most 1 GiB and at least four "
		      "batches";
	else if (config->buffers_count < WAL_BUFFERS_COUNT_MIN)
		bad = "buffers_count must be at least 3";
	else if (config->spares_max < 1 || config->segments_soft_max < 2)
		bad = "spares_max must be at least 1 and segments_soft_max at least 2";
	if (bad == NULL)
		return 0;
	wal_say(wal, "invalid WAL configuration: %s", bad);
	return -EINVAL;
}

static void wal_free(struct wal *wal)
{
	for (uint32_t i = 0; i < wal->segments_count; i++)
		wal_segment_close(&wal->segments[i]);
	for (uint32_t i = 0; i < wal->spares_count; i++)
		wal_segment_close(&wal->spares[i]);
	for (uint32_t i = 0; i < wal->groups_cap; i++)
		free(wal->groups[i].runs);
	for (uint32_t i = 0; wal->batches != NULL && i < wal->config.buffers_count; i++)
		free(wal->batches[i].buf);
	free(wal->segments);
	free(wal->spares);
	free(wal->groups);
	free(wal->batches);
	if (wal->dir_fd >= 0)
		close(wal->dir_fd);
	wal->segments = wal->spares = NULL;
	wal->groups = NULL;
	wal->batches = NULL;
	wal->segments_count = wal->spares_count = wal->groups_cap = 0;
	wal->dir_fd = -1;
}

static int wal_alloc(struct wal *wal)
{
	uint32_t count = wal->config.buffers_count;

	wal->groups_cap = 64;
	wal->groups = calloc(wal->groups_cap, sizeof(*wal->groups));
	wal->spares = calloc(wal->config.spares_max + 1, sizeof(*wal->spares));
	wal->batches = calloc(count, sizeof(*wal->batches));
	if (wal->groups == NULL || wal->spares == NULL || wal->batches == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		wal->batches[i].wal = wal;
		/* Header, records and pad stay within batch_size_max + a block. */
		wal->batches[i].buf =
		    aligned_alloc(WAL_BLOCK_SIZE, wal->config.batch_size_max + WAL_BLOCK_SIZE);
		if (wal->batches[i].buf == NULL)
			return -ENOMEM;
	}
	return 0;
}

int wal_init(struct wal *wal, struct loop *loop, const char *dir, const struct wal_config *config)
{
	uint64_t start = loop_now_ns(loop);
	int rv;

	memset(wal, 0, sizeof(*wal));
	wal->loop = loop;
	wal->config = *config;
	wal->dir_fd = -1;
	wal->next_batch = 1;
	wal->next_seq = 1;
	rv = wal_config_check(wal, config);
	if (rv != 0)
		goto err;
	ASSERT(loop != NULL || config->read_only);
	if (!config->read_only && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		rv = -errno;
		wal_say(wal, "cannot create WAL directory %s: %s", dir, err_str(rv));
		goto err;
	}
	wal->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (wal->dir_fd < 0) {
		rv = -errno;
		wal_say(wal, "cannot open WAL directory %s: %s", dir, err_str(rv));
		goto err;
	}
	rv = wal_alloc(wal);
	if (rv != 0)
		goto err_after_open;
	rv = wal_recover(wal);
	if (rv != 0)
		goto err_after_open;
	wal->stats.recovery_ns = loop_now_ns(loop) - start;
	/* A WAL that ran out of space comes back without a spare: say so now,
	 * while its tail has room, not when it must rotate. */
	if (!config->read_only && wal->segments_count > 0)
		wal_spare_keep(wal);
	return 0;

err_after_open:
	if (rv == -ENOMEM)
		wal_say(wal, "out of memory opening the WAL");
	wal_free(wal);
err:
	return rv;
}

void wal_deinit(struct wal *wal)
{
	/* The kernel may still write from our buffers or read into reads'
	 * buffers: let it finish before freeing. */
	while (wal->writing_batch != 0 || wal->reads_inflight > 0) {
		if (loop_run(wal->loop, 1) < 0)
			break;
	}
	wal_free(wal);
}
