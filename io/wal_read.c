/* Reading entries back from the WAL.
 *
 * wal_read() plans the records (runs) that hold the range, copies those
 * still in a batch buffer (the recent-entries cache) and reads the others
 * from their segment files through the loop, one read per record, or with
 * pread when a read-only WAL has no loop. Each record is verified again
 * when it is back (its checksum, then that it is the record the index
 * pointed at), and its entries are decoded in index order. Segments are
 * not retired while reads are in flight (wal->reads_inflight). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/wal_internal.h"

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

/* Reading back */

/* The bytes of a record still in a batch buffer, or NULL. */
static const uint8_t *wal_read_cache_find(const struct wal *wal, uint64_t seq, uint64_t offset,
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

int wal_read_file(int fd, uint8_t *buf, uint64_t size, uint64_t offset)
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
	/* A read that succeeds returns at least one entry, and none past the range. */
	ASSERT(read->rv != 0 || read->entries_count >= 1);
	ASSERT(read->entries_count <= read->last_index - read->first_index + 1);
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
	uint32_t slot = wal_index_runs_find(g, read->first_index);
	uint64_t bytes = 0, entries = 0;
	uint32_t count = 0;

	ASSERT(slot < g->runs_count);
	for (uint32_t s = slot; s < g->runs_count; s++) {
		const struct wal_run *run = wal_index_run_at(g, s);

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
		const struct wal_run *run = wal_index_run_at(g, slot + i);
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
		const uint8_t *cached =
		    wal_read_cache_find(wal, part->seq, part->offset, part->size);
		const struct wal_segment *segment;

		if (cached != NULL) {
			memcpy(read->buf + part->buf_offset, cached, part->size);
			continue;
		}
		segment = wal_segments_find(wal, part->seq);
		ASSERT(segment != NULL); /* A live run pins its segment. */
		part->fd = segment->fd;
		if (wal->loop == NULL) {
			/* A read-only WAL opened without a loop (tools) reads directly. */
			rv = wal_read_file(part->fd, read->buf + part->buf_offset, part->size,
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

/* Load the bytes of the record a run points at, from cache or file. */
int wal_read_record(const struct wal *wal, const struct wal_run *run, uint8_t *out)
{
	const uint8_t *cached = wal_read_cache_find(wal, run->seq, run->offset, run->size);
	const struct wal_segment *segment;

	if (cached != NULL) {
		memcpy(out, cached, run->size);
		return 0;
	}
	segment = wal_segments_find(wal, run->seq);
	ASSERT(segment != NULL);
	return wal_read_file(segment->fd, out, run->size, run->offset);
}
