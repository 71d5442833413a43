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
 * Which segments are in use is recoverable from the segments and one small
 * file: each header names the segment before it, and the chain file
 * (wal_chain.c) names the oldest and the newest in use, written before
 * either end moves (the newest once a segment's first batch is durable,
 * before that batch is reported durable). A segment in use that is missing,
 * zeroed, truncated or replaced is then a lost segment, never a spare;
 * files that fail identification are moved into damaged/, never removed
 * (wal_files.c). Segment format 3 marks a WAL that keeps a chain file; a WAL
 * of format-2 segments only (same layout) gets one on open, and format 1
 * is refused. Format 4 ends every batch with an END record: recovery then
 * tells a record of the last batch damaged after its write from a torn
 * write (wal_recover.c).
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
 * is bad too, or a whole segment was lost) are reported damaged, for the
 * caller to repair from peers. A process that dies with
 * direct writes in flight leaves them to land after its exit: recovery waits for them first (see
 * wal_file_open in wal_recover.c).
 *
 * This file is the append/commit core; the index of each group's records,
 * the segment files, reads, reclaiming and recovery are its neighbours
 * (wal_internal.h lists them). The byte formats are specified in
 * segment.c. */
#include "io/wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/wal_internal.h"

/* Worst-case bytes one entry adds to a record of its own: header, count,
 * meta and padding. */
#define WAL_ENTRY_OVERHEAD                                                                         \
	(SEGMENT_RECORD_HEADER_SIZE + SEGMENT_ENTRIES_FIXED_SIZE + SEGMENT_ENTRY_META_SIZE + 8)

static_assert(SEGMENT_HEADER_SIZE <= WAL_BLOCK_SIZE, "the segment header fits a block");
static_assert(WAL_SEGMENT_SIZE_MAX % WAL_BLOCK_SIZE == 0, "segments are block aligned");
static_assert(WAL_SEGMENT_SIZE_MAX <= UINT32_MAX, "a segment size fits wal_config's u32");
static_assert(WAL_BATCH_SIZE_MIN % WAL_BLOCK_SIZE == 0, "batches are whole blocks");
static_assert(WAL_BLOCK_SIZE % 8 == 0, "a block boundary is a record boundary");
static_assert(SEGMENT_RECORD_HEADER_SIZE < WAL_BLOCK_SIZE, "a PAD record fits in a block");
static_assert(WAL_ENTRY_OVERHEAD < WAL_BATCH_SIZE_MIN / 4, "a quarter batch holds an entry");
static_assert(WAL_BUFFERS_COUNT_MIN >= 3, "buffers: one open, one queued, one in flight");

static void wal_batch_submit(struct wal *wal, struct wal_batch *batch);

/* Errors and failure */

void wal_say(struct wal *wal, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(wal->why, sizeof(wal->why), fmt, ap);
	va_end(ap);
}

/* Stop the WAL: appends fail with rv from now on; if stop, no more I/O.
 * The first failure is kept. */
void wal_fail(struct wal *wal, int rv, bool stop)
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

/* Batches */

/* Bytes a batch keeps free for what closes it: its END record, and its
 * PAD record with direct_io. */
static uint64_t wal_close_reserve(const struct wal *wal)
{
	return SEGMENT_RECORD_HEADER_SIZE +
	       (wal->config.direct_io ? WAL_BLOCK_SIZE + SEGMENT_RECORD_HEADER_SIZE : 0);
}

/* Bytes the tail segment can still take for records. */
static uint64_t wal_segment_room(const struct wal *wal, const struct wal_segment *segment)
{
	uint64_t left = segment->size - segment->end;

	return left > wal_close_reserve(wal) ? left - wal_close_reserve(wal) : 0;
}

static uint32_t wal_batch_room(const struct wal *wal, const struct wal_batch *batch)
{
	const struct wal_segment *tail = wal_segments_tail(wal);
	uint64_t batch_room =
	    wal->config.batch_size_max - wal_close_reserve(wal) - (batch->size - batch->head_size);
	uint64_t segment_room = wal_segment_room(wal, tail);

	ASSERT(tail->seq == batch->seq);
	return (uint32_t)(batch_room < segment_room ? batch_room : segment_room);
}

static uint8_t *wal_record_begin(struct wal *wal, const struct segment_record *record);
static uint64_t wal_record_end(struct wal *wal, const struct segment_record *record);

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
	wal_record_end(wal, &record);
	ASSERT((batch->offset + batch->size) % WAL_BLOCK_SIZE == 0);
}

/* The END record closes every batch (segment.c): a record of the batch
 * that verifies after a bad one tells damage from a torn write, even when
 * the bad one is the batch's last entries (wal_recover.c). */
static void wal_batch_close(struct wal *wal)
{
	struct segment_record end = {.type = SEGMENT_RECORD_END, .batch = wal->open->number};

	ASSERT(wal->open->state == WAL_BATCH_OPEN);
	wal_record_begin(wal, &end);
	wal_record_end(wal, &end);
	if (wal->config.direct_io)
		wal_batch_pad(wal);
	wal->open->state = WAL_BATCH_QUEUED;
	wal->open = NULL;
}

/* Check, before anything is encoded, that an append of at most upper bytes
 * will find buffers and segment space: an append is all or nothing. */
int wal_reserve(struct wal *wal, uint64_t upper)
{
	uint64_t used = wal->next_batch - 1 - wal->durable_batch;
	uint64_t half = wal->config.batch_size_max / 2;
	const struct wal_segment *tail = wal_segments_tail(wal);
	/* Each new batch takes at least half its size before it closes,
	 * because an entry is at most a quarter of a batch. One buffer may be
	 * in flight at any time, so more than all the others is never free.
	 * Each batch closed on the way adds its END (and PAD) record. */
	uint64_t need = upper / half + 2;
	uint64_t segment_need = upper + need * wal_close_reserve(wal) + SEGMENT_HEADER_SIZE;

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
		int rv = wal_segments_reserve(wal);

		return rv != 0 ? rv : wal_segments_ensure_spare(wal);
	}
	return 0;
}

/* Make the open batch able to take need more bytes, closing it, opening a
 * new one, or moving to the next segment as needed. */
static int wal_make_room(struct wal *wal, uint32_t need)
{
	struct wal_segment *tail = wal_segments_tail(wal);
	struct wal_batch *batch;
	int rv;

	if (wal->open != NULL && wal_batch_room(wal, wal->open) >= need)
		return 0;
	if (wal->open != NULL)
		wal_batch_close(wal);
	if (tail == NULL || tail->full || wal_segment_room(wal, tail) < need) {
		if (tail != NULL)
			tail->full = true;
		rv = wal_segments_rotate(wal);
		if (rv != 0)
			return rv;
		tail = wal_segments_tail(wal);
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
	batch->entries_count = 0;
	batch->submitted_ns = 0;
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
	uint8_t *rec;

	ASSERT(wal->open != NULL); /* wal_make_room() opened it. */
	ASSERT(wal->open->state == WAL_BATCH_OPEN);
	ASSERT(record->batch == wal->open->number); /* A record carries its batch. */
	ASSERT(wal->open->size % 8 == 0);           /* Records start 8-byte aligned. */
	rec = wal->open->buf + wal->open->size;
	segment_record_put(rec, record);
	return rec + SEGMENT_RECORD_HEADER_SIZE;
}

#ifndef NDEBUG
/* The sealed record at rec decodes (header and its own check) to record. */
static bool wal_record_round_trips(const uint8_t *rec, uint32_t size, uint64_t seq,
				   const struct segment_record *record)
{
	struct segment_record decoded;

	return segment_record_head_get(rec, size, seq, &decoded) == 0 &&
	       decoded.group == record->group && decoded.first_index == record->first_index &&
	       decoded.term == record->term && decoded.batch == record->batch &&
	       decoded.size == record->size && decoded.type == record->type &&
	       decoded.flags == record->flags;
}
#endif

/* Seal the record started at the end of the open batch and account for it.
 * Returns its offset in the segment file. */
static uint64_t wal_record_end(struct wal *wal, const struct segment_record *record)
{
	struct wal_batch *batch = wal->open;
	struct wal_segment *tail = wal_segments_tail(wal);
	uint32_t size = segment_record_size(record->size);
	uint64_t offset = batch->offset + batch->size;

	ASSERT(tail->seq == batch->seq);
	ASSERT(tail->end == offset);               /* The open batch ends where the tail does. */
	ASSERT(tail->last_batch <= batch->number); /* Batches never go back in a segment. */
	segment_record_seal(batch->buf + batch->size, batch->seq);
	/* Paired with the reader: the header decodes to what was encoded. The
	 * batch is checked again after its write (wal_batch_verifies). */
	DEBUG_ASSERT(wal_record_round_trips(batch->buf + batch->size, size, batch->seq, record));
	batch->size += size;
	/* The buffer holds header, records and pad (wal_alloc). */
	ASSERT(batch->size <= wal->config.batch_size_max + WAL_BLOCK_SIZE);
	ASSERT(tail->end + size <= tail->size);
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

int wal_check_entries(struct wal *wal, const struct wal_entry *entries, uint32_t count,
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
int wal_append_entries_flags(struct wal *wal, uint64_t group, uint64_t first_index,
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
	ASSERT(flags == 0 || flags == SEGMENT_ENTRIES_COPY);
	rv = wal_check_entries(wal, entries, entries_count, &upper);
	if (rv != 0)
		return rv;
	rv = wal_reserve(wal, upper);
	if (rv != 0)
		return rv;
	rv = wal_index_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_index_runs_reserve(g, entries_count);
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
		ASSERT(data == payload + record.size); /* The entries fill the size declared. */
		run.first_index = record.first_index;
		run.record_index = record.first_index;
		run.term = record.term;
		run.seq = wal->open->seq;
		run.count = n;
		run.size = segment_record_size(record.size);
		run.offset = wal_record_end(wal, &record);
		/* A copy that finds no memory to re-point its runs leaves them
		 * on the old records, which stay valid and pinned. */
		(void)wal_index_apply_entries(g, &run, flags & SEGMENT_ENTRIES_COPY, false);
		wal->stats.entries += n;
		wal->open->entries_count += n;
		i += n;
	}
	/* Indexes per group: an append ends the log at its last entry (§5.3:
	 * what followed was replaced); a copy leaves the end where it was. */
	ASSERT(flags != 0 || g->last_index == first_index + entries_count - 1);
	ASSERT(g->last_index >= first_index + entries_count - 1);
	ASSERT(g->first_index == g->mark_index + 1); /* The live log starts after the mark. */
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
	wal_record_end(wal, record);
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
	rv = wal_index_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	if (hard->term > wal->hard_term_max)
		wal->hard_term_max = hard->term; /* Bound before durable (wal_chain.c). */
	record.term = hard->term;                /* Salvage learns it from a verified header. */
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
	wal_index_apply_hard(g, hard, seq);
	rv = wal_append_small(wal, &record, payload, &seq);
	if (rv != 0)
		return rv;
	wal_index_apply_hard(g, hard, seq);
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
	rv = wal_index_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	if ((!g->removed && index < g->mark_index) || g->damaged)
		return -EINVAL; /* A damaged group takes wal_append_reset() first. */
	keep = !g->removed && wal_index_term_at(g, index, &at_term) && at_term == term;
	record.flags = keep ? SEGMENT_MARK_KEEP : 0;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	if (g->removed)
		wal_index_group_clear(g);
	wal_index_apply_mark(g, index, term, keep, seq);
	ASSERT(g->mark_index == index);
	ASSERT(g->first_index == index + 1);
	ASSERT(g->last_index >= index);
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
	rv = wal_index_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	wal_index_apply_reset(g, index, term, seq);
	ASSERT(g->mark_index == index);
	ASSERT(g->last_index == index); /* The log is the mark alone. */
	ASSERT(g->runs_count == 0);
	ASSERT(!g->damaged);
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
	rv = wal_index_group_get(wal, group, &g);
	if (rv != 0)
		return rv;
	rv = wal_append_small(wal, &record, NULL, &seq);
	if (rv != 0)
		return rv;
	wal_index_apply_removed(g, seq);
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

#ifndef NDEBUG
/* After the write, the batch still parses as it was laid out: its segment
 * header verifies, and its records follow each other with headers that
 * verify and carry the batch's number, up to its end exactly. Only the
 * headers' own checks are recomputed here (cheap); every payload check is
 * verified again when the record is read back or recovered. */
static bool wal_batch_verifies(const struct wal_batch *batch)
{
	struct segment_header header;
	uint32_t at = batch->head_size;

	if (batch->head_size != 0 &&
	    (segment_header_get(batch->buf, &header) != 0 || header.seq != batch->seq ||
	     header.first_batch != batch->number))
		return false;
	while (at < batch->size) {
		struct segment_record record;

		if (segment_record_head_get(batch->buf + at, batch->size - at, batch->seq,
					    &record) != 0 ||
		    record.batch != batch->number)
			return false;
		at += segment_record_size(record.size);
	}
	return at == batch->size;
}
#endif

static void wal_batch_done(struct wal *wal, struct wal_batch *batch)
{
	uint64_t next = batch->number + 1;

	ASSERT(batch->state == WAL_BATCH_WRITING);
	ASSERT(batch->number == wal->writing_batch);
	ASSERT(batch->done <= batch->size);
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
	DEBUG_ASSERT(wal_batch_verifies(batch));
	ASSERT(batch->number == wal->durable_batch + 1); /* Durable in order, one by one. */
	/* Before anything in the batch is reported durable, the chain file
	 * names a segment's first batch as the tail, and its term bound covers
	 * every hard state appended (io/wal_chain.c). */
	if ((batch->head_size != 0 || wal->hard_term_max > wal->chain_term_bound) &&
	    wal_chain_note_durable(wal, batch->head_size != 0 ? batch->seq : 0) != 0) {
		wal->writing_batch = 0;
		wal_fail(wal, WAL_ERR_FAILED, true);
		return;
	}
	batch->state = WAL_BATCH_DURABLE;
	wal->durable_batch = batch->number;
	wal->writing_batch = 0;
	wal->stats.batches_written++;
	hist_record(&wal->stats.fsync_us, (loop_now_ns(wal->loop) - batch->submitted_ns) / 1000);
	hist_record(&wal->stats.batch_bytes, batch->size);
	hist_record(&wal->stats.batch_entries, batch->entries_count);
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
	ASSERT(batch->state == WAL_BATCH_QUEUED || batch->state == WAL_BATCH_WRITING);
	/* O_DIRECT writes whole blocks: a batch starts and ends on a block
	 * boundary (wal_batch_pad). */
	ASSERT(!wal->config.direct_io || batch->offset % WAL_BLOCK_SIZE == 0);
	ASSERT(!wal->config.direct_io || batch->size % WAL_BLOCK_SIZE == 0);
	if (batch->state == WAL_BATCH_QUEUED)
		batch->submitted_ns = loop_now_ns(wal->loop); /* Not again for the rest of it. */
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
		wal_segments_close(&wal->segments[i]);
	for (uint32_t i = 0; i < wal->spares_count; i++)
		wal_segments_close(&wal->spares[i]);
	wal_index_deinit(wal);
	for (uint32_t i = 0; wal->batches != NULL && i < wal->config.buffers_count; i++)
		free(wal->batches[i].buf);
	free(wal->segments);
	free(wal->spares);
	free(wal->batches);
	wal_chain_close(wal);
	if (wal->dir_fd >= 0)
		close(wal->dir_fd);
	wal->segments = wal->spares = NULL;
	wal->batches = NULL;
	wal->segments_count = wal->spares_count = 0;
	wal->dir_fd = -1;
}

static int wal_alloc(struct wal *wal)
{
	uint32_t count = wal->config.buffers_count;

	wal->spares = calloc(wal->config.spares_max + 1, sizeof(*wal->spares));
	wal->batches = calloc(count, sizeof(*wal->batches));
	if (wal_index_init(wal) != 0 || wal->spares == NULL || wal->batches == NULL)
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
	wal->chain_fd = -1;
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
		wal_segments_keep_spare(wal);
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
