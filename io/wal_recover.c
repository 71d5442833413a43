/* Recovery of the WAL on open.
 *
 * Every segment file of the directory is listed and its header checked;
 * the valid ones are scanned in order, each record verified and applied to
 * the index exactly as its append did. A segment's successor records where
 * it ends, so a bad record before that point is corruption; a bad record
 * in the last segment is a torn write of the last batch and is cut off
 * (zeroed and synced), unless a record of the same batch or a later one
 * verifies after it, which only damage explains (wal_record_follows).
 * Files beyond the last valid segment become spares under fresh sequence
 * numbers. At the end each group's live log must run from just after its
 * mark to its last index without a hole.
 *
 * Salvage (config.salvage) steps over bad records instead of refusing the
 * WAL: the group a bad record names (all of them when its header fails
 * too) is damaged, keeps its hard state and drops its log from the damage
 * on, for the caller to repair from its peers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/wal_internal.h"

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

	if (record->type == SEGMENT_RECORD_PAD || record->type == SEGMENT_RECORD_END)
		return 0; /* No group's: filler, and the end of a batch. */
	known = wal_group_find(wal, record->group) != NULL;
	rv = wal_index_group_get(wal, record->group, &g);
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
		rv = wal_index_runs_reserve(g, 1);
		if (rv == 0)
			rv = wal_index_apply_entries(g, &run, record->flags & SEGMENT_ENTRIES_COPY,
						     true);
		if (rv != 0)
			return rv;
		wal->stats.entries += cursor.count;
		break;
	}
	case SEGMENT_RECORD_HARD: {
		struct wal_hard hard;

		segment_hard_get(record->payload, &hard.term, &hard.vote, &hard.commit);
		hard.repairing = (record->flags & SEGMENT_HARD_REPAIRING) != 0;
		wal_index_apply_hard(g, &hard, seq);
		break;
	}
	case SEGMENT_RECORD_MARK:
		if (record->flags & SEGMENT_MARK_RESET) {
			wal_index_apply_reset(g, record->first_index, record->term, seq);
			break;
		}
		if (g->removed)
			wal_index_group_clear(g);
		wal_index_apply_mark(g, record->first_index, record->term,
				     (record->flags & SEGMENT_MARK_KEEP) != 0, seq);
		break;
	case SEGMENT_RECORD_REMOVED:
		wal_index_apply_removed(g, seq);
		break;
	default:
		ASSERT(false); /* segment_record_get() accepts known types only. */
	}
	return 0;
}

/* In the last segment, is a bad record at from damage rather than a torn
 * write? It is when a record that verifies follows it (at any 8-byte
 * offset up to size) and belongs to last_batch, the last batch that
 * verified, or a later one. Batch n + 1 is only written once batch n is
 * durable, so a torn write is of the last batch written, and a crash tears
 * a write as a prefix kept up to a sector boundary: it never leaves a later
 * record of its own batch, or of a later batch, intact. A record verifying
 * there proves that the bad bytes were written whole and changed after.
 * Every batch ends with an END record (segment.c), so this holds for the
 * batch's last entries too; a bad END record alone is cut, losing nothing.
 * The one case still taken for a torn write: a whole sector lost that held
 * both the batch's last records and its END record (and nothing of the
 * batch after it verifies). Segments of format 3 have no END record: there
 * a bad last record of the last batch is cut as torn. */
static bool wal_record_follows(const uint8_t *buf, uint64_t from, uint64_t size, uint64_t seq,
			       uint64_t last_batch)
{
	for (uint64_t at = from + 8; at + SEGMENT_RECORD_HEADER_SIZE <= size; at += 8) {
		struct segment_record record;

		/* A PAD record proves as much, but it only follows an END
		 * record, whose loss alone loses nothing: the cut is harmless. */
		if (segment_record_get(buf + at, size - at, seq, &record) == 0 &&
		    record.batch >= last_batch && record.type != SEGMENT_RECORD_PAD)
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
		if (record.type == SEGMENT_RECORD_PAD || record.type == SEGMENT_RECORD_END)
			return 0; /* Filler, or a batch's end: nothing was lost. */
		rv = wal_index_group_get(wal, record.group, &g);
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
	/* An END record has no payload: one whose header alone is bad, with
	 * the next record right after it verifying, cost nothing. */
	if (segment_record_peek(buf + at, limit - at, &record) == 0 &&
	    record.type == SEGMENT_RECORD_END && record.size == 0 &&
	    (at + SEGMENT_RECORD_HEADER_SIZE == limit ||
	     segment_record_get(buf + at + SEGMENT_RECORD_HEADER_SIZE,
				limit - at - SEGMENT_RECORD_HEADER_SIZE, seq, &record) == 0)) {
		*offset = at + SEGMENT_RECORD_HEADER_SIZE;
		return 0;
	}
	first = first || !wal->stats.damaged_unnamed; /* The graver news wins. */
	wal->damage_all = true;
	wal->stats.damaged_unnamed = true;
	for (uint32_t i = 0; i < wal->groups_count; i++) {
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
	rv = wal_read_file(file->fd, buf, file->size, 0);
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
		/* Damage, not a torn tail, when the segment's end is known or a
		 * record of the last batch or a later one follows it (see
		 * wal_record_follows): salvage steps over it. */
		if (!end_known && !(is_last && wal_record_follows(buf, offset, file->size,
								  file->seq, *last_batch)))
			break;
		rv = wal_salvage(wal, file->seq, buf, &offset, limit);
		if (rv != 0)
			return rv;
	}
	ASSERT(offset <= limit); /* Every record taken fitted before limit. */
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

		if (wal_record_follows(buf, offset, file->size, file->seq, *last_batch)) {
			wal_say_corrupt(wal, file->seq, offset, buf + offset, file->size - offset,
					"record fails verification and a record of its batch or a "
					"later batch verifies after it (damaged after it was "
					"written, not a torn write)");
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
	ASSERT(offset >= SEGMENT_HEADER_SIZE);
	ASSERT(offset <= file->size);
	segment.end = offset;
	segment.end_known = end_known;
	segment.batch_size_max = file->header.batch_size_max;
	/* Writing on in the last segment needs the same batch bound, and
	 * with direct_io a block-aligned end. */
	segment.full = !is_last || offset == file->size || file->header_damaged ||
		       file->header.batch_size_max < wal->config.batch_size_max ||
		       (wal->config.direct_io && offset % WAL_BLOCK_SIZE != 0);
	if (!segment.full)
		rv = wal_segments_open_direct(wal, &segment);
	if (rv == 0)
		rv = wal_segments_push(wal, &segment);
	if (rv != 0 && segment.write_fd >= 0)
		close(segment.write_fd);
	return rv;
}

/* Spares (and dead segments, whose reclaim a crash interrupted) get fresh
 * sequence numbers: the seed changes, so whatever is in them can never
 * verify. They were identified as this WAL's (wal_files.c): one of another
 * size, or beyond spares_max, is removed. */
static int wal_recover_spares(struct wal *wal, struct wal_file *files, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		char name[SEGMENT_NAME_SIZE], target[SEGMENT_NAME_SIZE];

		if (!files[i].spare || wal->config.read_only)
			continue;
		segment_name(name, files[i].seq);
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
		int rv = wal_segments_open_direct(wal, &spare);

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
	struct wal_segment *tail = wal_segments_tail(wal);
	int rv;

	if (wal->config.read_only || tail == NULL)
		return 0;
	if (wal->tail_zero_end > tail->end) {
		rv = wal_segments_zero_fill(tail->fd, tail->end, wal->tail_zero_end);
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
		const struct wal_run *run = wal_index_run_at(g, i);

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
	for (uint32_t i = 0; i < wal->groups_count; i++) {
		struct wal_group *g = &wal->groups[i];

		if (!g->used || !g->damaged)
			continue;
		wal_index_runs_clear(g);
		g->first_index = g->mark_index + 1;
		g->last_index = g->mark_index;
		g->gap_index = g->gap_seq = g->gap_offset = 0;
		if (!g->removed)
			wal->stats.damaged_groups++;
	}
}

#ifndef NDEBUG
/* After the gaps are checked, every group's index holds together. */
static bool wal_recover_index_is_sane(const struct wal *wal)
{
	const struct wal_group *g = NULL;

	while ((g = wal_group_next(wal, g)) != NULL) {
		if (!wal_index_is_sane(g))
			return false;
	}
	return true;
}
#endif

/* A segment was lost before seq (offset 0 of it), or at the end (seq 0):
 * the records lost could be anyone's, so every group known so far is
 * damaged, and so is every group first seen later (damage_all) unless a
 * reset of its own comes first. */
static void wal_recover_lost(struct wal *wal, uint64_t seq)
{
	for (uint32_t i = 0; i < wal->groups_count; i++) {
		struct wal_group *g = &wal->groups[i];

		if (g->used)
			wal_damage(wal, g, g->mark_index + 1, 0, seq, 0);
	}
	wal->damage_all = true;
	wal->stats.damaged_unnamed = true;
}

/* Write the chain file as recovery leaves the WAL: the segments in use,
 * and any loss (kept until reclaimed: see wal_chain.c). */
static int wal_recover_chain(struct wal *wal)
{
	if (wal->config.read_only)
		return 0;
	wal->chain_head = wal->segments_count ? wal->segments[0].seq : 0;
	wal->chain_tail = wal->segments_count ? wal_segments_tail(wal)->seq : 0;
	wal_chain_settle_bound(wal);
	return wal_chain_write(wal);
}

int wal_recover(struct wal *wal)
{
	struct wal_file *files = NULL;
	uint32_t count = 0, last_used = 0;
	uint64_t last_batch = 0, size_max = 0;
	bool lost_applied = false;
	uint8_t *buf = NULL;
	int rv;

	rv = wal_files_load(wal, &files, &count);
	if (rv != 0)
		goto out;
	for (uint32_t i = 0; i < count; i++) {
		if (!files[i].used)
			continue;
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
		}
		last_used = i + 1;
		size_max = files[i].size > size_max ? files[i].size : size_max;
	}
	buf = malloc(size_max ? size_max : 1);
	if (buf == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < last_used; i++) {
		const struct segment_header *next = NULL;

		if (!files[i].used)
			continue;
		for (uint32_t j = i + 1; j < last_used && next == NULL; j++)
			next = files[j].used ? &files[j].header : NULL;
		/* Salvage only: without it a loss refused the WAL already. */
		if (wal->chain_loss != 0 && wal->config.salvage && !lost_applied &&
		    files[i].seq > wal->chain_loss) {
			wal_recover_lost(wal, files[i].seq);
			lost_applied = true;
		}
		rv =
		    wal_recover_segment(wal, &files[i], next, i + 1 == last_used, buf, &last_batch);
		if (rv != 0)
			goto out;
		files[i].fd = -1; /* The segment owns it now. */
	}
	if (wal->chain_loss != 0 && wal->config.salvage && !lost_applied)
		wal_recover_lost(wal, 0);
	/* Records written from now on must come after the loss: not in a
	 * segment at or before it. */
	if (wal->chain_loss != 0 && wal->segments_count > 0 &&
	    wal_segments_tail(wal)->seq <= wal->chain_loss)
		wal_segments_tail(wal)->full = true;
	wal_recover_damaged(wal);
	rv = wal_recover_gaps(wal);
	DEBUG_ASSERT(rv != 0 || wal_recover_index_is_sane(wal));
	if (rv == 0)
		rv = wal_files_settle(wal, files, count);
	if (rv == 0)
		rv = wal_recover_spares(wal, files, count);
	if (rv == 0)
		rv = wal_recover_tail(wal);
	if (rv == 0 && !wal->config.read_only)
		rv = wal_segments_sync_dir(wal); /* Earlier unlinks and renames are durable now. */
	if (rv == 0)
		rv = wal_recover_chain(wal);
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
