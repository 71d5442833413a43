/* Recovery's view of the WAL directory: which file named like a segment is
 * a segment in use, a spare, a dead segment, or foreign, and which segments
 * of the chain are lost.
 *
 * Every file named like a segment is opened and identified:
 *   - a segment: its header verifies and matches its name and size (or its
 *     header fails but its first record verifies as one written to it);
 *   - a spare: its header is zeros (created, never written) or a header of
 *     this format for another sequence number (recycled);
 *   - anything else fails identification: foreign, or a segment truncated,
 *     extended or overwritten.
 * The segments in use run from the chain file's head to its tail, each
 * header naming the one before it (io/wal_chain.c). A segment of that run
 * that is missing or fails identification, and a link that skips one, is a
 * lost segment: named in wal_loss_why() and handled as damage of every
 * group from that point (wal_recover.c). Files that fail identification
 * are moved into the directory's damaged/ subdirectory, never removed
 * (read-only: only reported); spares and dead segments (before the head: a
 * crash interrupted their reclaim) are recycled as spares. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#define WAL_DAMAGED_DIR "damaged"

/* Add a sentence to wal_loss_why(). */
static void wal_files_note(struct wal *wal, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void wal_files_note(struct wal *wal, const char *fmt, ...)
{
	size_t used = strlen(wal->loss_why);
	va_list ap;

	if (used + 8 >= sizeof(wal->loss_why))
		return;
	if (used > 0) {
		memcpy(wal->loss_why + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(wal->loss_why + used, sizeof(wal->loss_why) - used, fmt, ap);
	va_end(ap);
}

static int wal_file_compare(const void *a, const void *b)
{
	const struct wal_file *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int wal_files_list(struct wal *wal, struct wal_file **out, uint32_t *count)
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

	rv = wal_read_file(file->fd, buf, sizeof(buf), SEGMENT_HEADER_SIZE);
	if (rv != 0)
		return rv;
	/* Only the record's header is read and checked: avail bounds its size. */
	if (segment_record_head_get(buf, file->size - SEGMENT_HEADER_SIZE, file->seq, &record) != 0)
		return 0;
	file->header_damaged = true;
	file->header = (struct segment_header){.seq = file->seq,
					       .size = file->size,
					       .first_batch = record.batch,
					       .batch_size_max = wal->config.batch_size_max,
					       .version = SEGMENT_VERSION};
	return 0;
}

static bool wal_files_is_zero(const uint8_t *buf, uint64_t size)
{
	for (uint64_t i = 0; i < size; i++) {
		if (buf[i] != 0)
			return false;
	}
	return true;
}

/* Tell a spare from a file that fails identification, and say why. */
static void wal_file_identify(struct wal_file *file, const uint8_t *buf)
{
	struct segment_header other;

	if (file->size == 0) {
		file->spare = true; /* Its creation was cut short before it grew. */
		return;
	}
	if (file->size < SEGMENT_HEADER_SIZE) {
		file->why = "shorter than a segment header";
		return;
	}
	if (segment_header_get(buf, &other) == 0 && other.seq == file->seq) {
		file->why = "its size differs from the one its header records (truncated or "
			    "extended)";
		return;
	}
	if (wal_files_is_zero(buf, SEGMENT_HEADER_SIZE) ||
	    (segment_header_get(buf, &other) == 0 && other.seq < file->seq)) {
		file->spare = true;
		file->why = wal_files_is_zero(buf, SEGMENT_HEADER_SIZE)
				? "its header is zeros"
				: "it holds the header of an earlier segment (recycled)";
		return;
	}
	file->why = "its header is not a segment header of this WAL";
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
	memset(buf, 0, sizeof(buf));
	if (file->size < SEGMENT_HEADER_SIZE) {
		wal_file_identify(file, buf);
		return 0;
	}
	/* A process that died may still have direct writes in flight to this
	 * file: io_uring does not wait for them at exit. A no-op fallocate
	 * takes the inode lock and waits for in-flight direct I/O (ext4, XFS)
	 * so that what we read is what stays. Best effort elsewhere. */
	if (!wal->config.read_only)
		(void)fallocate(file->fd, FALLOC_FL_KEEP_SIZE, 0, WAL_BLOCK_SIZE);
	rv = wal_read_file(file->fd, buf, SEGMENT_HEADER_SIZE, 0);
	if (rv != 0) {
		wal_say(wal, "cannot read segment %s: %s", name, err_str(rv));
		return rv;
	}
	if (segment_header_version(buf) != 0 && segment_header_version(buf) < SEGMENT_VERSION_MIN) {
		wal_say(wal,
			"segment %s has format version %d; this build reads versions %d to %d "
			"only (record headers have their own check since version 2)",
			name, segment_header_version(buf), SEGMENT_VERSION_MIN, SEGMENT_VERSION);
		return -ENOTSUP;
	}
	file->valid = segment_header_get(buf, &file->header) == 0 &&
		      file->header.seq == file->seq && file->header.size == file->size &&
		      file->size % 8 == 0 && file->size <= WAL_SEGMENT_SIZE_MAX &&
		      file->header.batch_size_max <= file->size;
	/* A header that verifies but does not match the file (truncated or
	 * extended) is no damaged header: the file fails identification. */
	if (!file->valid && segment_header_version(buf) == 0 &&
	    file->size >= SEGMENT_HEADER_SIZE + SEGMENT_RECORD_HEADER_SIZE && file->size % 8 == 0 &&
	    file->size <= WAL_SEGMENT_SIZE_MAX) {
		rv = wal_file_check_records(wal, file);
		if (rv != 0)
			return rv;
	}
	if (!file->valid && !file->header_damaged)
		wal_file_identify(file, buf);
	return 0;
}

static bool wal_file_is_segment(const struct wal_file *file)
{
	return file->valid || file->header_damaged;
}

static struct wal_file *wal_files_find(struct wal_file *files, uint32_t count, uint64_t seq)
{
	for (uint32_t i = 0; i < count; i++) {
		if (files[i].seq == seq)
			return &files[i];
	}
	return NULL;
}

/* Segment seq of the chain is lost: name it, and remember the highest. */
static void wal_files_lost(struct wal *wal, struct wal_file *files, uint32_t count, uint64_t seq,
			   const char *where)
{
	const struct wal_file *file = wal_files_find(files, count, seq);
	char name[SEGMENT_NAME_SIZE];

	segment_name(name, seq);
	if (seq <= wal->chain_loss) {
		/* Found and handled at an earlier start: the chain file kept it. */
		wal_files_note(wal, "segment %s was lost at an earlier start", name);
		return;
	}
	wal_files_note(wal, "segment %s (%s) is lost: %s", name, where,
		       file == NULL ? "the file is missing" : file->why);
	wal->stats.segments_lost++;
	if (seq > wal->stats.lost_seq)
		wal->stats.lost_seq = seq;
}

/* Without a chain file: a WAL of format 2 segments predates it (its ends
 * are taken as they are, as before), a WAL of format 3 segments lost it
 * (every group is damaged from its first segment). */
static void wal_files_no_chain(struct wal *wal, struct wal_file *files, uint32_t count, bool bad)
{
	bool newer = false;
	uint32_t first = count, last = 0;

	for (uint32_t i = 0; i < count; i++) {
		if (!files[i].valid)
			continue;
		newer = newer || files[i].header.version >= 3;
		first = first < count ? first : i;
		last = i;
	}
	wal->chain_head = wal->chain_tail = 0;
	if (first == count)
		return; /* Nothing in use: a new WAL. */
	wal->chain_head = files[first].seq;
	wal->chain_tail = files[last].seq;
	if (!newer && !bad)
		return; /* Upgraded: the chain file is written at the end of recovery. */
	wal->stats.chain_lost = true;
	wal->stats.segments_lost++;
	wal_files_note(wal, "the chain file %s: which segments were in use is unknown",
		       bad ? "fails verification" : "is missing");
	/* Every group is damaged from the first segment on (and at later
	 * starts, until reclaimed). */
	wal->chain_loss = wal->chain_head > 1 ? wal->chain_head - 1 : 1;
}

/* The segments in use: from head to tail, linked by their headers. */
static void wal_files_check_chain(struct wal *wal, struct wal_file *files, uint32_t count)
{
	struct wal_file *prev = NULL;

	/* A segment one past the tail that links to it: its first batch was
	 * durable, the chain file not yet written (see wal_chain.c). */
	for (uint32_t i = 0; i < count; i++) {
		if (files[i].seq > wal->chain_tail && files[i].valid &&
		    files[i].header.prev_seq == wal->chain_tail) {
			wal->chain_tail = files[i].seq;
			if (wal->chain_head == 0)
				wal->chain_head = files[i].seq;
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		struct wal_file *f = &files[i];

		if (wal->chain_head == 0 || f->seq < wal->chain_head || f->seq > wal->chain_tail ||
		    !wal_file_is_segment(f))
			continue;
		f->used = true;
		if (prev == NULL && f->seq != wal->chain_head)
			wal_files_lost(wal, files, count, wal->chain_head, "the oldest in use");
		if (prev != NULL && f->valid && f->header.prev_seq != prev->seq)
			wal_files_lost(wal, files, count,
				       f->header.prev_seq > prev->seq && f->header.prev_seq < f->seq
					   ? f->header.prev_seq
					   : prev->seq,
				       "in use between two others");
		prev = f;
	}
	if (wal->chain_tail != 0 && (prev == NULL || prev->seq != wal->chain_tail))
		wal_files_lost(wal, files, count, wal->chain_tail, "the newest in use");
	if (wal->stats.lost_seq > wal->chain_loss)
		wal->chain_loss = wal->stats.lost_seq;
}

/* What is not in use: dead segments and spares are recycled, the rest is
 * moved aside. */
static void wal_files_sort_rest(struct wal *wal, struct wal_file *files, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		struct wal_file *f = &files[i];
		char name[SEGMENT_NAME_SIZE];

		if (f->used)
			continue;
		segment_name(name, f->seq);
		if (f->valid && f->seq < wal->chain_head) {
			f->spare = true; /* Dead: its reclaim was interrupted. */
			continue;
		}
		if (f->spare && f->seq > wal->chain_tail)
			continue;
		f->spare = false;
		f->foreign = true;
		wal->stats.files_foreign++;
		if (f->why == NULL)
			f->why = f->header_damaged ? "its header fails verification"
						   : "it is not part of the segments in use";
		wal_files_note(wal, "file %s is no segment or spare of this WAL (%s)%s", name,
			       f->why,
			       wal->config.read_only ? "" : ": moved into " WAL_DAMAGED_DIR "/");
	}
}

int wal_files_load(struct wal *wal, struct wal_file **out, uint32_t *out_count)
{
	struct wal_file *files = NULL;
	uint32_t count = 0;
	bool found;
	int rv;

	rv = wal_files_list(wal, &files, &count);
	if (rv != 0)
		return rv;
	*out = files;
	*out_count = count;
	for (uint32_t i = 0; i < count; i++) {
		rv = wal_file_open(wal, &files[i]);
		if (rv != 0)
			return rv;
		if (files[i].seq == UINT64_MAX) {
			wal_say(wal, "a file is named with the last segment number there is");
			return WAL_ERR_CORRUPT;
		}
		if (files[i].seq >= wal->next_seq)
			wal->next_seq = files[i].seq + 1;
	}
	rv = wal_chain_read(wal, &found);
	if (rv != 0 && rv != WAL_ERR_CORRUPT)
		return rv;
	if (!found || rv == WAL_ERR_CORRUPT)
		wal_files_no_chain(wal, files, count, rv == WAL_ERR_CORRUPT);
	wal_files_check_chain(wal, files, count);
	wal_files_sort_rest(wal, files, count);
	if (wal->chain_tail == UINT64_MAX || wal->chain_loss == UINT64_MAX) {
		wal_say(wal, "the chain file names the last segment number there is");
		return WAL_ERR_CORRUPT;
	}
	if (wal->chain_tail >= wal->next_seq)
		wal->next_seq = wal->chain_tail + 1;
	if (wal->chain_loss >= wal->next_seq)
		wal->next_seq = wal->chain_loss + 1;
	if (wal->stats.segments_lost > 0 && !wal->config.salvage) {
		wal_say(wal, "%s; refusing to open: records in it may have been acknowledged",
			wal->loss_why);
		return WAL_ERR_CORRUPT;
	}
	return 0;
}

/* Move a file that failed identification into damaged/, under its name or,
 * if taken, its name with a number. */
static int wal_files_move_aside(struct wal *wal, const struct wal_file *file)
{
	char name[SEGMENT_NAME_SIZE], target[SEGMENT_NAME_SIZE + 16];
	int dir, rv = -EEXIST;

	segment_name(name, file->seq);
	if (mkdirat(wal->dir_fd, WAL_DAMAGED_DIR, 0755) != 0 && errno != EEXIST)
		return -errno;
	dir = openat(wal->dir_fd, WAL_DAMAGED_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	for (int i = 0; i < 1000 && rv == -EEXIST; i++) {
		if (i == 0)
			snprintf(target, sizeof(target), "%s", name);
		else
			snprintf(target, sizeof(target), "%s.%d", name, i);
		rv = renameat2(wal->dir_fd, name, dir, target, RENAME_NOREPLACE) == 0 ? 0 : -errno;
	}
	if (rv == 0 && fsync(dir) != 0)
		rv = -errno;
	close(dir);
	return rv;
}

int wal_files_settle(struct wal *wal, struct wal_file *files, uint32_t count)
{
	int rv;

	for (uint32_t i = 0; i < count && !wal->config.read_only; i++) {
		char name[SEGMENT_NAME_SIZE];

		if (!files[i].foreign)
			continue;
		rv = wal_files_move_aside(wal, &files[i]);
		if (rv != 0) {
			segment_name(name, files[i].seq);
			wal_say(wal, "cannot move %s into %s/: %s", name, WAL_DAMAGED_DIR,
				err_str(rv));
			return rv;
		}
	}
	return 0;
}

const char *wal_loss_why(const struct wal *wal)
{
	return wal->loss_why;
}

bool wal_has_lost_segments(const struct wal *wal)
{
	return wal->chain_loss != 0;
}
