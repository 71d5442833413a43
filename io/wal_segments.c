/* The segment files of the WAL: the list of live segments (oldest first; the
 * last is the tail that takes batches), and the spare files beyond it.
 *
 * A new segment file is created, preallocated (and optionally zero filled)
 * and synced, name included, before any record goes in, so that later
 * fdatasyncs write data and no file metadata. Rotation turns the first
 * spare into the tail and tries at once to prepare the next spare: a full
 * file system is then noticed while the tail and a spare still have room,
 * and the WAL goes low on space (wal_space_low()) instead of failing. Any
 * other failure to prepare a spare refuses further appends. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "io/wal_internal.h"

#define WAL_ZERO_CHUNK (1u << 20)

struct wal_segment *wal_segments_tail(const struct wal *wal)
{
	return wal->segments_count ? &wal->segments[wal->segments_count - 1] : NULL;
}

struct wal_segment *wal_segments_find(const struct wal *wal, uint64_t seq)
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

int wal_segments_reserve(struct wal *wal)
{
	uint32_t cap = wal->segments_cap ? wal->segments_cap * 2 : 16;
	struct wal_segment *segments;

	if (wal->segments_count < wal->segments_cap)
		return 0;
	segments = realloc(wal->segments, sizeof(*segments) * cap);
	if (segments == NULL)
		return -ENOMEM;
	wal->segments = segments;
	wal->segments_cap = cap;
	return 0;
}

int wal_segments_push(struct wal *wal, const struct wal_segment *segment)
{
	int rv = wal_segments_reserve(wal);

	if (rv != 0)
		return rv;
	ASSERT(segment->end <= segment->size);
	ASSERT(wal->segments_count == 0 ||
	       wal->segments[wal->segments_count - 1].seq < segment->seq);
	wal->segments[wal->segments_count++] = *segment;
	return 0;
}

int wal_segments_sync_dir(struct wal *wal)
{
	return fsync(wal->dir_fd) == 0 ? 0 : -errno;
}

/* With direct_io, batches go through a second descriptor opened O_DIRECT;
 * everything else uses the buffered one. */
int wal_segments_open_direct(struct wal *wal, struct wal_segment *segment)
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

void wal_segments_close(struct wal_segment *segment)
{
	close(segment->fd);
	if (segment->write_fd >= 0)
		close(segment->write_fd);
}

int wal_segments_zero_fill(int fd, uint64_t from, uint64_t to)
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
		rv = wal_segments_zero_fill(fd, 0, wal->config.segment_size);
		if (rv != 0)
			goto err_after_open;
	}
	/* The size and the allocation must be durable before any record in the
	 * file is acknowledged; so must the file's name. */
	if (fsync(fd) != 0) {
		rv = -errno;
		goto err_after_open;
	}
	rv = wal_segments_sync_dir(wal);
	if (rv != 0)
		goto err_after_open;
	spare.seq = wal->next_seq;
	spare.fd = fd;
	spare.size = wal->config.segment_size;
	rv = wal_segments_open_direct(wal, &spare);
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
void wal_segments_keep_spare(struct wal *wal)
{
	if (wal->spares_count == 0 && wal_is_space_error(wal_spare_create(wal)))
		wal_space_lost(wal);
}

/* Make sure a spare exists. Without space for one the WAL is low on space
 * and the caller gets -ENOSPC; any other failure refuses appends for good. */
int wal_segments_ensure_spare(struct wal *wal)
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
int wal_segments_rotate(struct wal *wal)
{
	struct wal_segment *old = wal_segments_tail(wal);
	struct wal_segment next;
	int rv;

	ASSERT(wal->open == NULL); /* A batch never spans two segments. */
	ASSERT(old == NULL || old->full);
	rv = wal_segments_ensure_spare(wal);
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
	wal_segments_keep_spare(wal);
	return 0;
}
