/* The write-ahead log of one shard: a directory of fixed-size segment files
 * holding the records of every group of the shard, with group commit.
 *
 * The WAL stores bytes for (group, index, term). It knows four kinds of
 * record: entries of one group (which may overwrite a suffix of that group's
 * log), a group's hard state, a snapshot mark (the group's log is compacted
 * up to an index) and the removal of a group. It rebuilds each group's state
 * on open by replaying them in log order.
 *
 * Group commit: wal_append_*() encode records into the open batch, taking
 * records of any number of groups. wal_flush() turns the open batch into one
 * write linked to one fdatasync when no batch is in flight; while it runs,
 * the next batch fills. When a batch is durable the durable callback reports
 * its number, and every record appended while wal_position() was at most
 * that number is durable.
 *
 * Threads: a WAL belongs to the thread of its loop. */
#ifndef IO_WAL_H
#define IO_WAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/hist.h"
#include "io/loop.h"
#include "io/segment.h"

#define WAL_BLOCK_SIZE        4096
#define WAL_SEGMENT_SIZE_MAX  (1u << 30)
#define WAL_BATCH_SIZE_MIN    (16u << 10)
#define WAL_BUFFERS_COUNT_MIN 3

struct wal;
struct wal_read;

/* A batch became durable (rv 0), or the WAL failed (rv < 0: WAL_ERR_FAILED
 * after an I/O error or a failed fdatasync, -ENOSPC when a submitted write
 * found the disk full). batch is the highest durable batch number either
 * way. Running low on space (wal_space_low()) is not a failure: no callback. */
typedef void (*wal_durable_cb)(struct wal *wal, uint64_t batch, int rv);

/* A read finished: rv 0 and the entries are in read->entries, or rv < 0. */
typedef void (*wal_read_cb)(struct wal_read *read, int rv);

/* Recovery saw a valid record (for tools that dump a WAL). */
typedef void (*wal_scan_cb)(void *arg, uint64_t seq, uint64_t offset,
			    const struct segment_record *record);

/* One log entry. Its index is implicit: first_index + slot. */
struct wal_entry {
	uint64_t term;
	uint32_t type; /* Opaque to the WAL, stored and returned as is. */
	uint32_t size;
	const void *data;
};

struct wal_hard {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
	/* The group repairs data its storage lost (the shard restarts it in
	 * repair) until a hard state without it is written. */
	bool repairing;
};

struct wal_config {
	uint32_t segment_size;      /* Bytes per segment file; multiple of WAL_BLOCK_SIZE,
				     * at least 4 * batch_size_max. */
	uint32_t batch_size_max;    /* Bytes of records per group-commit write; a multiple of
				     * WAL_BLOCK_SIZE, at least WAL_BATCH_SIZE_MIN. An entry may
				     * be at most a quarter of it. */
	uint32_t buffers_count;     /* Batch buffers: open, queued, in flight, and the rest
				     * kept as the recent-entries cache. */
	uint32_t spares_max;        /* Preallocated segment files kept for reuse. */
	uint32_t segments_soft_max; /* Past this many live segments, wal_reclaim() relieves
				     * the groups that pin the oldest one. */
	uint32_t rewrite_size_max;  /* A pinning group with at most this many live bytes is
				     * rewritten forward; a larger one is asked to snapshot. */
	bool zero_fill;             /* Write zeros over new segment files so that later
				     * fdatasyncs need no extent conversion. */
	bool direct_io;             /* Write batches with O_DIRECT, each padded to a block;
				     * reads stay buffered. Needs a file system with O_DIRECT. */
	bool read_only;             /* Recover and inspect only: no repair, no appends. */
	bool salvage;               /* Recovery reports damaged groups instead of failing:
				     * see wal_init(). */
	wal_durable_cb durable_cb;  /* May be NULL. */
	wal_scan_cb scan_cb;        /* May be NULL; called during wal_init(). */
	void *scan_arg;
};

/* Where a run of live entries lives: part (or all) of one entries record. */
struct wal_run {
	uint64_t first_index;  /* First live entry of the run. */
	uint64_t record_index; /* First entry of the record; <= first_index. */
	uint64_t term;
	uint64_t seq;    /* Segment. */
	uint64_t offset; /* Of the record in the segment file. */
	uint32_t count;  /* Live entries from first_index; the record may hold more. */
	uint32_t size;   /* Record bytes, padded. */
};

/* A group's state, as replayed from the log. Read-only for callers; valid
 * until the next wal_append_*() or wal_reclaim(). */
struct wal_group {
	uint64_t group;
	uint64_t first_index; /* First live entry. */
	uint64_t last_index;  /* Last entry; first_index - 1 when there is none. */
	uint64_t mark_index;  /* Log compacted up to here (snapshot mark). */
	uint64_t mark_term;
	struct wal_hard hard;
	bool has_hard;
	bool removed; /* A tombstone: the group was removed. */
	/* Salvage: a record of this group (or one no one can be named for)
	 * failed verification, and no later reset (wal_append_reset) or
	 * removal superseded it. Its log is dropped from first_index on; its
	 * hard state holds. damaged_term is the largest term a damaged
	 * record's verified header named (0 if none): a lost HARD record may
	 * have held a vote in it. */
	bool damaged;
	bool used; /* Private, like every field from hard_seq on. */
	uint64_t damaged_index, damaged_term;
	uint64_t damaged_seq, damaged_offset;     /* The first damaged record. */
	uint64_t hard_seq, mark_seq, removed_seq; /* Segments holding the live records. */
	uint64_t gap_index, gap_seq, gap_offset;  /* Recovery: a hole not yet covered. */
	uint64_t live_size;                       /* Bytes of live entries records. */
	struct wal_run *runs;                     /* Ring of runs in index order. */
	uint32_t runs_head, runs_count, runs_cap;
};

/* A segment file in use. */
struct wal_segment {
	uint64_t seq;
	int fd;               /* Buffered: reads, recovery, zeroing. */
	int write_fd;         /* O_DIRECT for batch writes with direct_io; -1 otherwise. */
	uint64_t size;        /* File size. */
	uint64_t end;         /* Bytes laid out (header and records). */
	uint64_t first_batch; /* 0 when no record yet. */
	uint64_t last_batch;
	uint64_t records_count;
	uint64_t prev_seq;       /* For the header: the segment written before this one, */
	uint64_t prev_end;       /* and where its records end. */
	uint32_t batch_size_max; /* Largest write into it, from its header. */
	bool full;               /* No further batch goes here. */
	bool end_known;          /* Recovery knew where its records must end. */
};

struct wal_batch {
	uint8_t *buf; /* SEGMENT_HEADER_SIZE + batch_size_max bytes, block aligned. */
	struct wal *wal;
	uint64_t number;
	uint64_t seq; /* Segment the batch goes to. */
	int fd;
	uint64_t offset;        /* File offset of buf[0]. */
	uint32_t size;          /* Bytes in buf. */
	uint32_t head_size;     /* SEGMENT_HEADER_SIZE when the batch starts its segment, else 0. */
	uint32_t done;          /* Bytes written so far. */
	uint32_t entries_count; /* Entries in its records (for wal_stats.batch_entries). */
	uint64_t submitted_ns;  /* When its write was first submitted (wal_stats.fsync_us). */
	uint8_t state;
	uint8_t pending;
	int write_res;
	int sync_res;
	struct loop_op write_op;
	struct loop_op sync_op;
};

/* What wal_reclaim() did about a group that pins the oldest segment. */
enum wal_pin_action {
	WAL_PIN_REWRITTEN = 1, /* Its live records were appended again; the old copy dies. */
	WAL_PIN_SNAPSHOT = 2,  /* Too much to rewrite: the caller should snapshot it. */
};

struct wal_pin {
	uint64_t group;
	uint64_t seq;       /* The segment it pins. */
	uint64_t live_size; /* Why: its live bytes, against rewrite_size_max. */
	uint8_t action;     /* enum wal_pin_action */
};

struct wal_stats {
	uint64_t batches_written;
	uint64_t fsyncs;
	uint64_t records;
	uint64_t entries;
	uint64_t bytes_written;
	uint64_t segments_live;
	uint64_t segments_spare;
	uint64_t segments_created;
	uint64_t segments_recycled;
	uint64_t segments_deleted;
	uint64_t disk_size; /* Bytes of all segment files, live and spare. */
	uint64_t groups;
	uint64_t groups_rewritten;
	uint64_t groups_snapshot_asked;
	uint64_t recovered_records;
	uint64_t recovery_ns;
	uint64_t space_low_count; /* Times the file system refused a spare for lack of space. */
	bool space_low;           /* Right now: see wal_space_low(). */
	uint64_t damaged_records; /* Salvage: records skipped as damaged, */
	uint64_t damaged_groups;  /* and the groups still damaged after recovery. */
	bool damaged_unnamed;     /* A record header failed too: every group is damaged. */
	bool torn;                /* Recovery found (and unless read-only, cut) a torn tail:
				   * a record of the last batches cut short. */
	uint64_t torn_seq;
	uint64_t torn_offset;
	/* Whole segments: files of the chain (see io/wal_chain.c) that are
	 * missing or fail identification (zeroed, truncated, foreign), the
	 * highest lost segment (every group is damaged from there: the
	 * records lost could be anyone's), and files in the directory that
	 * are neither segments nor spares of this WAL (moved aside into
	 * damaged/ unless read-only; never removed). wal_loss_why() names them. */
	uint64_t segments_lost;
	uint64_t lost_seq;
	uint64_t files_foreign;
	bool chain_lost; /* The chain file itself was missing or failed its check. */
	/* Per batch made durable (its owner's thread writes them, anyone may
	 * read: base/hist.h): from the write's submission to its fdatasync's
	 * completion in microseconds, its bytes, and its entries. */
	struct hist fsync_us, batch_bytes, batch_entries;
};

/* Visible so callers can embed it; only io/wal*.c touch fields. */
struct wal {
	struct loop *loop;
	struct wal_config config;
	int dir_fd;
	int failed;                   /* 0, or why the WAL refuses appends. */
	bool stopped;                 /* A write or fdatasync failed: no further I/O at all. */
	bool space_low;               /* No spare beyond the tail: see wal_space_low(). */
	char why[400];                /* A sentence for the last failure. */
	bool damage_all;              /* Recovery: groups first seen from here on are damaged. */
	struct wal_segment *segments; /* Live segments, oldest first; the last is the tail. */
	uint32_t segments_count, segments_cap;
	struct wal_segment *spares;
	uint32_t spares_count;
	uint64_t next_seq;
	struct wal_batch *batches; /* Batch number n uses batches[n % buffers_count]. */
	struct wal_batch *open;    /* Accepting records; NULL until the next append. */
	uint64_t next_batch;       /* Number of the next batch to open. */
	uint64_t appended_batch;   /* Batch of the latest record. */
	uint64_t durable_batch;
	uint64_t writing_batch;   /* In flight; 0 if none. */
	struct wal_group *groups; /* groups_count of them, dense: see wal_index.c. */
	uint32_t groups_cap, groups_count;
	uint32_t *slots; /* Open addressing by group id: index in groups + 1, or 0. */
	uint32_t slots_cap;
	uint64_t reclaim_seq;     /* Segments up to here may go ... */
	uint64_t reclaim_barrier; /* ... once this batch is durable. */
	uint32_t reads_inflight;
	uint64_t tail_zero_end; /* Recovery: zero the tail segment from its end to here. */
	int chain_fd;           /* The chain file (io/wal_chain.c); -1 when read-only. */
	uint64_t chain_gen;     /* Generation of its newest slot. */
	uint64_t chain_head;    /* Oldest segment in use, as the chain file says; 0 if none. */
	uint64_t chain_tail;    /* Newest segment in use whose first batch is durable. */
	uint64_t chain_loss;    /* A segment up to here was lost: groups are damaged from the
				 * first segment after it, at every start, until reclaimed. */
	char loss_why[600];     /* Recovery: the lost segments and foreign files, named. */

	/* The chain file's bound on the terms of hard states (io/wal_chain.c):
	 * none names a later term; 0 when none is known. */
	uint64_t chain_term_bound;
	uint64_t hard_term_max; /* The highest term of a hard state recovered or appended. */
	struct wal_stats stats;
};

/* A read of a range of one group's entries. Caller-owned. */
struct wal_read {
	struct wal *wal;
	wal_read_cb cb;
	uint64_t group;
	uint64_t first_index;      /* Index of entries[0]. */
	struct wal_entry *entries; /* Valid until wal_read_release(). */
	uint32_t entries_count;
	int rv;
	/* Private. */
	uint64_t last_index;
	uint32_t size_max;
	uint8_t *buf;
	struct wal_read_part *parts;
	uint32_t parts_count, parts_pending;
};

/* Defaults: 64 MiB segments, 1 MiB batches, 8 buffers, 2 spares. */
void wal_config_default(struct wal_config *config);

/* Open or create the WAL in dir (created if missing) and recover it: verify
 * every record and rebuild every group's state. loop may be NULL when
 * config->read_only is set (inspection needs no io_uring). A bad record at the tail of
 * the last segment is a torn write: it is cut off (unless read-only).
 * Returns 0, -EINVAL (bad config), -errno from the file system, -ENOTSUP
 * (a segment of an older format), WAL_ERR_CORRUPT (a bad record anywhere
 * else) or WAL_ERR_GAP (a hole in a group's indexes); then wal_why() names
 * the segment, offset and group. On failure nothing needs wal_deinit().
 *
 * With config->salvage, a bad record before a segment's known end does not
 * fail recovery. If its header verifies (segment_record_head_get), its group
 * is damaged from the record's first index; if not, recovery resumes at the
 * next record that verifies and every group of the WAL is damaged (the lost
 * bytes could have belonged to any). A damaged group's later records are
 * skipped, except hard state, until a reset or removal supersedes them; its
 * log is then empty past its mark (wal_group->damaged says so, and wal_why()
 * describes the first damage). The caller restarts such a group from its
 * snapshot with wal_append_reset() and repairs it from its peers. */
int wal_init(struct wal *wal, struct loop *loop, const char *dir, const struct wal_config *config);

/* Wait (running the loop) for the WAL's in-flight I/O, then close and free
 * everything. Records not yet durable are dropped. */
void wal_deinit(struct wal *wal);

/* A sentence saying why the last call failed or why the WAL stopped. */
const char *wal_why(const struct wal *wal);

/* After wal_init(): the segments found lost and the files moved aside (or,
 * read-only, that would be), each named with why; "" when none. */
const char *wal_loss_why(const struct wal *wal);

/* Whether some segment of this WAL was lost (now or at an earlier start,
 * until the segments written before the loss are reclaimed): every group
 * recovered is damaged unless reset since, and a group the WAL does not
 * know may have had all its records in the lost segment. The caller starts
 * such a group (wal_group_find() NULL) as a repairing member too. */
bool wal_has_lost_segments(const struct wal *wal);

/* Whether a bound on the terms of every hard state this WAL holds (or held
 * in a segment since lost) is known, in *term: no vote was ever cast through
 * this WAL in a later term. None is known (false) when the chain file
 * predates it, or was lost, or since a start that found the WAL damaged
 * without one, until a start finds it whole (io/wal_chain.c). */
bool wal_term_bound(const struct wal *wal, uint64_t *term);

/* Append entries first_index, first_index + 1, ... of group. A first_index
 * at or below the group's last index overwrites the log from there (a
 * follower dropping conflicting entries). Returns 0, -EINVAL (count 0,
 * first_index at or below the mark, the last index at 2^64-1, or a damaged
 * group: wal_append_reset() it first),
 * WAL_ERR_GAP (first_index > last + 1),
 * -EMSGSIZE (an entry over a quarter of batch_size_max), -EAGAIN (batch
 * buffers full: flush and run the loop), -EROFS, -ENOSPC (the reserve is
 * spent: see wal_space_low(); nothing was appended, the WAL stays usable and
 * the same append may be retried) or WAL_ERR_FAILED. The entries' bytes
 * are copied. */
int wal_append_entries(struct wal *wal, uint64_t group, uint64_t first_index,
		       const struct wal_entry *entries, uint32_t entries_count);

/* Append a group's hard state. Errors as wal_append_entries(). */
int wal_append_hard(struct wal *wal, uint64_t group, const struct wal_hard *hard);

/* Append a snapshot mark: the group's log is compacted up to index, whose
 * term is term. Entries after index are kept if the entry at index has that
 * term, otherwise the whole log is dropped (Raft §7: a snapshot that does
 * not match the log replaces it). -EINVAL if index is below the last mark
 * or is 2^64-1. */
int wal_append_mark(struct wal *wal, uint64_t group, uint64_t index, uint64_t term);

/* Append a reset of group: its log is replaced by a mark at index (term),
 * even below an earlier mark, and a damaged group is no longer damaged
 * (the records before this one are superseded). Errors as wal_append_mark(). */
int wal_append_reset(struct wal *wal, uint64_t group, uint64_t index, uint64_t term);

/* Append the removal of a group: its state and records die. */
int wal_append_removed(struct wal *wal, uint64_t group);

/* Whether the file system refused, for lack of space (ENOSPC or EDQUOT), the
 * spare segment the WAL keeps beyond its tail. Appends still go into the
 * tail and any spare left (the reserve) and fail with -ENOSPC, appending
 * nothing, once that is full; wal_why() names the segment file and its size.
 * Callers should stop taking new records while it holds. */
bool wal_space_low(const struct wal *wal);

/* While low on space, try again to preallocate the spare (slow: file system
 * metadata and an fsync; call it every few hundred milliseconds, not per
 * append). Returns 0 when space is back (or was never short), -ENOSPC while
 * it is still short, or another error of the file system or the WAL. */
int wal_space_retry(struct wal *wal);

/* The batch holding the most recent append: it is durable once the durable
 * callback reports a batch number at least this large. */
uint64_t wal_position(const struct wal *wal);

/* The highest durable batch number. */
uint64_t wal_durable(const struct wal *wal);

/* If no batch is in flight, submit the oldest pending one (closing the open
 * batch if it is the oldest) as one write linked to one fdatasync. The
 * caller runs the loop. Returns 0, or the error that stopped the WAL. */
int wal_flush(struct wal *wal);

/* Flush and run the loop until everything appended is durable. Blocking:
 * for tools, tests and shutdown. Returns 0 or the WAL's error. */
int wal_sync(struct wal *wal);

/* The state of group, or NULL if the WAL has no record of it. */
const struct wal_group *wal_group_find(const struct wal *wal, uint64_t group);

/* Iterate groups (tombstones included): start with prev NULL. */
const struct wal_group *wal_group_next(const struct wal *wal, const struct wal_group *prev);

/* The term of entry index of group (mark_index gives mark_term). Returns 0,
 * -ENOENT (no such group) or -ERANGE (not in the live log). */
int wal_term(const struct wal *wal, uint64_t group, uint64_t index, uint64_t *term);

/* Start reading entries first_index..last_index (clamped to the log) of
 * group, stopping once size_max payload bytes are gathered (at least one
 * entry is returned). Records come from the recent-entries cache when
 * there, otherwise from the segment files through the loop; each record's
 * checksum is verified again after the read. cb may run before wal_read()
 * returns when everything was cached. Returns 0, -ENOENT, -ERANGE, -ENOMEM.
 * Call wal_read_release() after cb, whatever rv was. */
int wal_read(struct wal *wal, struct wal_read *read, uint64_t group, uint64_t first_index,
	     uint64_t last_index, uint32_t size_max, wal_read_cb cb);

/* wal_read() and run the loop until it completes. Returns its rv. */
int wal_read_sync(struct wal *wal, struct wal_read *read, uint64_t group, uint64_t first_index,
		  uint64_t last_index, uint32_t size_max);

/* Free what a read holds. */
void wal_read_release(struct wal_read *read);

/* Reclaim disk: delete (or keep as spares) the oldest segments once every
 * group with records in them has moved past them durably. If more than
 * segments_soft_max segments stay live, the groups pinning the oldest one
 * are rewritten forward or reported for a snapshot in pins[] (up to
 * pins_max; *pins_count says how many). Returns 0 or a negative errno. */
int wal_reclaim(struct wal *wal, struct wal_pin *pins, uint32_t pins_max, uint32_t *pins_count);

/* Counters, recovery results and current disk use. */
void wal_stats_get(const struct wal *wal, struct wal_stats *stats);

/* Live segment at slot (oldest first), or NULL past the end. */
const struct wal_segment *wal_segment_at(const struct wal *wal, uint32_t slot);

#endif /* IO_WAL_H */
