/* What the pieces of the WAL share; private to io/.
 *
 * The WAL is one module, struct wal, in layers that call downward only:
 *
 *   wal.c          the append/commit core: batches, appends, group commit,
 *                  setup and teardown; it owns the design description
 *   wal_reclaim.c  freeing disk: retiring dead segments, rewriting pinning
 *                  groups forward (through the core's appends)
 *   wal_recover.c  rebuilding every group on open, torn tails, salvage
 *   wal_files.c    recovery's view of the directory: which file is a
 *                  segment in use, a spare, lost or foreign
 *   wal_chain.c    the chain file: the ends of the segments in use
 *   wal_read.c     reading entries back from the batch cache or the files
 *   wal_segments.c segment files: create, preallocate, spares, rotate
 *   wal_index.c    the per-group index: group table, runs of live entries,
 *                  and applying records to it (appends and recovery alike)
 *
 * The core also serves the errors every layer reports (wal_say, wal_fail).
 * Functions here follow the prefix of the file that defines them. */
#ifndef IO_WAL_INTERNAL_H
#define IO_WAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/wal.h"

#define WAL_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum wal_batch_state {
	WAL_BATCH_FREE = 0,
	WAL_BATCH_OPEN,    /* Taking records. */
	WAL_BATCH_QUEUED,  /* Closed, waiting for the batch before it. */
	WAL_BATCH_WRITING, /* Write and fdatasync in flight. */
	WAL_BATCH_DURABLE, /* On disk; the buffer serves reads until reused. */
};

/* wal.c: the core. */

/* Set the sentence wal_why() returns. */
void wal_say(struct wal *wal, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stop the WAL: appends fail with rv from now on; if stop, no more I/O.
 * The first failure is kept, and reported through the durable callback. */
void wal_fail(struct wal *wal, int rv, bool stop);

/* Check, before anything is encoded, that an append of at most upper bytes
 * will find buffers and segment space: an append is all or nothing.
 * Returns 0, -EMSGSIZE, -EAGAIN, -ENOMEM, -ENOSPC or the WAL's error. */
int wal_reserve(struct wal *wal, uint64_t upper);

/* Check every entry's size; *upper is the most bytes their records take.
 * Returns 0 or -EMSGSIZE. */
int wal_check_entries(struct wal *wal, const struct wal_entry *entries, uint32_t count,
		      uint64_t *upper);

/* wal_append_entries() with flags: 0, or SEGMENT_ENTRIES_COPY for live
 * entries moved forward by wal_reclaim() as they are. */
int wal_append_entries_flags(struct wal *wal, uint64_t group, uint64_t first_index,
			     const struct wal_entry *entries, uint32_t entries_count,
			     uint16_t flags);

/* wal_index.c: the per-group index. Pointers into the group table are
 * valid until the next wal_index_group_get() or wal_index_group_delete(). */

/* Set up (0 or -ENOMEM) and free the group table. */
int wal_index_init(struct wal *wal);
void wal_index_deinit(struct wal *wal);

/* The group, created (empty) if missing. A tombstone stays a tombstone.
 * Returns 0 or -ENOMEM. */
int wal_index_group_get(struct wal *wal, uint64_t group, struct wal_group **out);

/* Remove g from the table; another group (the last) may move into its place. */
void wal_index_group_delete(struct wal *wal, struct wal_group *g);

/* Empty g's log, mark, hard state and damage; its id and runs stay. */
void wal_index_group_clear(struct wal_group *g);

/* The run at slot (0 is the oldest) of g's ring. */
struct wal_run *wal_index_run_at(const struct wal_group *g, uint32_t slot);

/* Make room for more runs, so that applying them cannot fail. 0 or -ENOMEM. */
int wal_index_runs_reserve(struct wal_group *g, uint32_t more);

/* Drop every run of g. */
void wal_index_runs_clear(struct wal_group *g);

/* Whether g's index holds together: its live log starts right after its
 * mark, its runs are in order, cover the live log without a hole or an
 * overlap and end at its last index, and live_size adds up. O(runs): for
 * DEBUG_ASSERT, after recovery and after a group is rewritten forward. */
bool wal_index_is_sane(const struct wal_group *g);

/* The slot of the run holding index, or runs_count. */
uint32_t wal_index_runs_find(const struct wal_group *g, uint64_t index);

/* The term of entry index of g (the mark's term at the mark); false when
 * index is not in the live log. */
bool wal_index_term_at(const struct wal_group *g, uint64_t index, uint64_t *term);

/* Apply a record to g. The same functions serve appends and recovery
 * (recovering), so the state rebuilt on open is the state appends built.
 * Entries need one run reserved (wal_index_runs_reserve()); a copy may
 * return -ENOMEM and then leaves g as it was. */
int wal_index_apply_entries(struct wal_group *g, const struct wal_run *record_run, bool copy,
			    bool recovering);
void wal_index_apply_mark(struct wal_group *g, uint64_t index, uint64_t term, bool keep,
			  uint64_t seq);
void wal_index_apply_reset(struct wal_group *g, uint64_t index, uint64_t term, uint64_t seq);
void wal_index_apply_hard(struct wal_group *g, const struct wal_hard *hard, uint64_t seq);
void wal_index_apply_removed(struct wal_group *g, uint64_t seq);

/* wal_segments.c: segment files. */

/* The tail segment (the one taking batches), or NULL before the first. */
struct wal_segment *wal_segments_tail(const struct wal *wal);

/* The live segment seq, or NULL. */
struct wal_segment *wal_segments_find(const struct wal *wal, uint64_t seq);

/* Make room to list one more live segment, so that a rotation cannot fail
 * for memory. Returns 0 or -ENOMEM. */
int wal_segments_reserve(struct wal *wal);

/* List segment as the newest live one. Returns 0 or -ENOMEM. */
int wal_segments_push(struct wal *wal, const struct wal_segment *segment);

/* fsync the WAL directory: names created, renamed or removed are durable. */
int wal_segments_sync_dir(struct wal *wal);

/* With direct_io, open segment's O_DIRECT descriptor for batch writes. */
int wal_segments_open_direct(struct wal *wal, struct wal_segment *segment);

/* Close a segment's descriptors. */
void wal_segments_close(struct wal_segment *segment);

/* Write zeros over [from, to) of fd. Returns 0 or -errno. */
int wal_segments_zero_fill(int fd, uint64_t from, uint64_t to);

/* Keep a spare beyond the tail; without space for it the WAL is low on
 * space (wal_space_low()). */
void wal_segments_keep_spare(struct wal *wal);

/* Make sure a spare exists. Returns 0, -ENOSPC (low on space), or another
 * error, which also refuses appends for good. */
int wal_segments_ensure_spare(struct wal *wal);

/* Move to the next segment: the first spare becomes the tail. */
int wal_segments_rotate(struct wal *wal);

/* wal_read.c: reading back. */

/* pread size bytes at offset in full. Returns 0, -errno, or -EIO when the
 * file ends first. */
int wal_read_file(int fd, uint8_t *buf, uint64_t size, uint64_t offset);

/* The bytes of the record run points at, from the batch cache or its
 * segment file, into out[run->size]. Unverified. */
int wal_read_record(const struct wal *wal, const struct wal_run *run, uint8_t *out);

/* wal_chain.c: the chain file. */

#define WAL_CHAIN_NAME "chain"

/* Read the chain file into wal->chain_*; *found says whether it exists.
 * Returns 0, WAL_ERR_CORRUPT (it exists but no slot verifies) or -errno.
 * Unless read-only, its descriptor stays open for wal_chain_write(). */
int wal_chain_read(struct wal *wal, bool *found);

/* Write wal->chain_head, _tail, _loss and _term_bound durably (creating the
 * file if needed). Synchronous: a pwrite and an fdatasync. Returns 0 or
 * -errno. */
int wal_chain_write(struct wal *wal);

/* The term bound moves by this much more than it must (see wal_chain.c). */
#define WAL_CHAIN_BOUND_HEADROOM 1024

/* A batch is durable (the first of segment seq, or seq 0): before it is
 * reported so, move the tail to seq and raise the term bound over
 * wal->hard_term_max, writing the chain file if either moved. Returns 0 or
 * -errno (wal_why says). */
int wal_chain_note_durable(struct wal *wal, uint64_t seq);

/* End of recovery, before the chain file is written: raise the term bound
 * over every term recovered, or set it if none was known and the WAL was
 * found whole. */
void wal_chain_settle_bound(struct wal *wal);

void wal_chain_close(struct wal *wal);

/* wal_files.c: recovery's view of the directory. */

/* A file named like a segment, as recovery found it. */
struct wal_file {
	uint64_t seq;
	int fd;
	uint64_t size;
	bool valid; /* Its header verifies and matches its name and size. */
	/* Its header fails, but its first record verifies as one written to
	 * this segment: the header is damaged, the file is no spare. */
	bool header_damaged;
	bool used;       /* A segment in use: its records are the log. */
	bool spare;      /* Identified as a spare (or a dead segment): recycled. */
	bool foreign;    /* Fails identification: moved aside, never removed. */
	const char *why; /* Why it is no segment (static text). */
	struct segment_header header;
};

/* List and open every file named like a segment, sorted by sequence number,
 * identify each, read the chain file and check the chain: *files[i].used
 * are the segments to scan, in order. Lost segments are named in
 * wal_loss_why() and counted in stats (without salvage they refuse the
 * WAL: WAL_ERR_CORRUPT). Returns 0, -ENOTSUP (a format-1 segment), -errno,
 * or WAL_ERR_CORRUPT. The caller frees *files and closes their fds. */
int wal_files_load(struct wal *wal, struct wal_file **files, uint32_t *count);

/* Unless read-only, move the files that failed identification into the
 * directory's damaged/ subdirectory. Returns 0 or -errno. */
int wal_files_settle(struct wal *wal, struct wal_file *files, uint32_t count);

/* wal_recover.c: recovery. */

/* List, verify and replay every segment of the directory (see wal_init()). */
int wal_recover(struct wal *wal);

#endif /* IO_WAL_INTERNAL_H */
