/* Reclaiming disk in the WAL.
 *
 * A segment is dead once every group moved past it: the oldest segment each
 * group still needs is the lowest of its hard state's, its mark's, its
 * removal's and its first run's. Dead segments are decided on, then retired
 * (recycled as spares or deleted) only once the records that superseded
 * theirs are durable and no read is in flight, and the deletions are made
 * durable before any state relies on them.
 *
 * When more than segments_soft_max segments stay live, the groups pinning
 * the oldest one are relieved: a small group is rewritten forward (mark,
 * hard state, then its entries as COPY records, which never truncate what
 * follows them, so a crash midway loses nothing), a large one is reported
 * for the caller to snapshot. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/wal_internal.h"

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
	if (g->runs_count > 0 && wal_index_run_at(g, 0)->seq < need)
		need = wal_index_run_at(g, 0)->seq;
	return need;
}

/* A removal record only matters while older segments may hold the
 * group's earlier records. Once the oldest segment on disk is the one
 * holding it (older ones are durably gone), it pins nothing. */
static void wal_drop_stale_removals(struct wal *wal)
{
	uint64_t front = wal->segments_count ? wal->segments[0].seq : UINT64_MAX;

	for (uint32_t i = 0; i < wal->groups_count;) {
		struct wal_group *g = &wal->groups[i];

		if (!g->used || g->removed_seq == 0 || g->removed_seq > front) {
			i++;
			continue;
		}
		g->removed_seq = 0;
		if (g->removed) {
			wal_index_group_delete(wal, g); /* May shift another group into slot i. */
			continue;
		}
		i++;
	}
}

static int wal_segment_retire(struct wal *wal)
{
	struct wal_segment front = wal->segments[0];
	char name[SEGMENT_NAME_SIZE], target[SEGMENT_NAME_SIZE];

	ASSERT(wal->segments_count > 1); /* Never the tail. */
	ASSERT(wal->reads_inflight == 0);
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
		rv = wal_segments_open_direct(wal, &spare);
		if (rv != 0) {
			wal_segments_close(&spare);
			return rv;
		}
		wal->spares[wal->spares_count++] = spare;
		wal->stats.segments_recycled++;
	} else {
		if (unlinkat(wal->dir_fd, name, 0) != 0)
			return -errno;
		wal_segments_close(&front);
		wal->stats.segments_deleted++;
	}
	wal->segments_count--;
	memmove(wal->segments, wal->segments + 1, sizeof(*wal->segments) * wal->segments_count);
	return 0;
}

/* Before the oldest segments are retired, the chain file's head moves to
 * the first one that stays (io/wal_chain.c): a crash in between leaves
 * dead segments before the head, not a head that is missing. Never past
 * the chain's tail (a segment whose first batch is not durable yet). Once
 * a segment written after a loss goes, every group has long been started
 * since the loss: the loss is forgotten. */
static int wal_reclaim_move_head(struct wal *wal)
{
	uint64_t head = wal->chain_head;
	int rv;

	for (uint32_t i = 0; i + 1 < wal->segments_count; i++) {
		if (wal->segments[i].seq > wal->reclaim_seq ||
		    wal->segments[i + 1].seq > wal->chain_tail)
			break;
		head = wal->segments[i + 1].seq;
	}
	if (head == wal->chain_head)
		return 0;
	if (wal->chain_loss != 0 && wal->chain_loss < wal->segments[0].seq)
		wal->chain_loss = 0;
	wal->chain_head = head;
	rv = wal_chain_write(wal);
	if (rv != 0)
		wal_say(wal, "writing the WAL's chain file failed: %s", err_str(rv));
	return rv;
}

/* Retire the segments decided on, once what made them dead is durable. */
static int wal_reclaim_execute(struct wal *wal)
{
	bool retired = false;
	int rv = 0;

	if (wal->reclaim_seq == 0 || wal->durable_batch < wal->reclaim_barrier ||
	    wal->reads_inflight > 0)
		return 0;
	rv = wal_reclaim_move_head(wal);
	while (rv == 0 && wal->segments_count > 1 && wal->segments[0].seq <= wal->reclaim_seq &&
	       wal->segments[1].seq <= wal->chain_tail) {
		rv = wal_segment_retire(wal);
		if (rv != 0)
			break;
		retired = true;
	}
	wal->reclaim_seq = 0;
	if (retired) {
		/* The deletions must be durable before any state relies on
		 * the segments being gone (wal_drop_stale_removals). */
		int sync_rv = wal_segments_sync_dir(wal);

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
	need = wal_segments_tail(wal)->seq;
	while ((g = wal_group_next(wal, g)) != NULL) {
		uint64_t n = wal_group_need(g);

		if (n < need)
			need = n;
	}
	for (uint32_t i = 0; i + 1 < wal->segments_count && wal->segments[i].seq < need; i++)
		upto = wal->segments[i].seq;
	ASSERT(upto < wal_segments_tail(wal)->seq); /* The tail is never dead. */
	if (upto > wal->reclaim_seq) {
		wal->reclaim_seq = upto;
		wal->reclaim_barrier = wal->appended_batch;
	}
}

/* The live entries of g, read back (synchronously: bounded by
 * rewrite_size_max, and rare) into *buf, which the caller frees. */
static int wal_collect_entries(struct wal *wal, const struct wal_group *g,
			       struct wal_entry *entries, uint8_t *buf, uint64_t *count)
{
	uint64_t first = g->first_index, at = 0, n = 0;

	for (uint32_t s = 0; s < g->runs_count; s++) {
		const struct wal_run *run = wal_index_run_at(g, s);
		struct segment_record record;
		struct segment_entries cursor;
		const uint8_t *data;
		uint32_t size, type;
		int rv;

		ASSERT(at + run->size <= g->live_size); /* buf holds every live record. */
		rv = wal_read_record(wal, run, buf + at);

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
			ASSERT(index <= g->last_index); /* entries[] holds the live log. */
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

	for (uint32_t i = 0; i < wal->groups_count && *pins_count < pins_max; i++) {
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
			DEBUG_ASSERT(wal_index_is_sane(g));
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
