/* The on-disk format of WAL segment files: headers, records, names.
 *
 * segment.c encodes and verifies; it does no I/O. The layouts are specified
 * at the top of segment.c. The WAL (io/wal*.c) writes and recovers segments
 * with these helpers, and flotilla-wal reads them to dump a WAL. */
#ifndef IO_SEGMENT_H
#define IO_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#define SEGMENT_HEADER_SIZE        64
#define SEGMENT_RECORD_HEADER_SIZE 48
#define SEGMENT_ENTRIES_FIXED_SIZE 8  /* count + reserved, before the entry table. */
#define SEGMENT_ENTRY_META_SIZE    8  /* size + type of one entry. */
#define SEGMENT_HARD_SIZE          24 /* Payload of a hard-state record. */
#define SEGMENT_NAME_SIZE          24 /* "%016x.wal" and the NUL. */
#define SEGMENT_VERSION            4  /* 4: every batch ends with an END record. */
#define SEGMENT_VERSION_MIN        2  /* Read still; a WAL of them gets its chain file on open. */
#define SEGMENT_BATCH_MAX          (UINT64_MAX / 2) /* A record's batch number is at most this. */

enum segment_record_type {
	SEGMENT_RECORD_ENTRIES = 1, /* Entries of one group, one term, contiguous indexes. */
	SEGMENT_RECORD_HARD = 2,    /* A group's hard state: term, vote, commit. */
	SEGMENT_RECORD_MARK = 3,    /* A group's log is compacted up to first_index (term). */
	SEGMENT_RECORD_REMOVED = 4, /* The group is gone; its earlier records are dead. */
	SEGMENT_RECORD_PAD = 5,     /* Filler up to an alignment boundary; no meaning. */
	/* The end of a batch: after its last record, before any PAD. Its
	 * verifying tells a record damaged after it was written from a torn
	 * write (io/wal_recover.c). No payload, no group. */
	SEGMENT_RECORD_END = 6,
	SEGMENT_RECORD_TYPE_MAX = 6,
};

enum segment_record_flags {
	/* MARK only: the entries after the mark were kept (the entry at the
	 * mark had the mark's term); without it the whole log was dropped. */
	SEGMENT_MARK_KEEP = 1u << 0,
	/* ENTRIES only: a copy of live entries moved forward by compaction. It
	 * changes where those entries live and never truncates the log after
	 * them, so a copy cut short by a crash loses nothing. */
	SEGMENT_ENTRIES_COPY = 1u << 1,
	/* MARK only: the group's log is replaced entirely by the mark, even
	 * below an earlier mark: written when a group whose records were
	 * damaged restarts from its snapshot to repair from its peers. A
	 * damaged group's records before it are superseded. */
	SEGMENT_MARK_RESET = 1u << 2,
	/* HARD only: the group is repairing (wal_hard.repairing). */
	SEGMENT_HARD_REPAIRING = 1u << 3,
};

struct segment_header {
	uint64_t seq;            /* Segment sequence number, also in the file name. */
	uint64_t size;           /* File size in bytes. */
	uint64_t prev_end;       /* Where the records of segment prev_seq end. */
	uint64_t prev_seq;       /* The segment written before this one; 0 if none. */
	uint64_t first_batch;    /* Batch number of the first batch written here. */
	uint32_t batch_size_max; /* Largest single write; bounds a torn tail. */
	uint32_t version;        /* Decoded only: SEGMENT_VERSION_MIN..SEGMENT_VERSION. */
};

/* A decoded record. payload points into the buffer that was decoded. */
struct segment_record {
	uint64_t group;
	uint64_t first_index;
	uint64_t term;
	uint64_t batch;
	uint32_t size; /* Payload bytes, before padding. */
	uint16_t type; /* enum segment_record_type */
	uint16_t flags;
	const uint8_t *payload;
};

/* Cursor over the entries of an ENTRIES record. */
struct segment_entries {
	const uint8_t *meta; /* Next entry's size and type. */
	const uint8_t *data; /* Next entry's bytes. */
	uint32_t count;      /* Entries in the record. */
	uint32_t slot;       /* Entries already returned. */
};

/* Bytes a record with this payload occupies: header + payload padded to 8. */
uint32_t segment_record_size(uint32_t payload_size);

/* Payload bytes of an ENTRIES record holding count entries of data_size bytes in all. */
uint32_t segment_entries_payload_size(uint32_t count, uint64_t data_size);

/* Encode a segment header into out[SEGMENT_HEADER_SIZE]. */
void segment_header_put(uint8_t *out, const struct segment_header *header);

/* Decode and verify a segment header. Returns 0, or WAL_ERR_CORRUPT when the
 * magic, version (SEGMENT_VERSION_MIN..SEGMENT_VERSION) or checksum is wrong. */
int segment_header_get(const uint8_t *buf, struct segment_header *header);

/* The format version of a segment header whose checksum and magic verify,
 * or 0 when they do not: tells an old format from a damaged header. */
int segment_header_version(const uint8_t *buf);

/* Write a record's header fields at out (its payload follows, written by the
 * caller at out + SEGMENT_RECORD_HEADER_SIZE), then segment_record_seal(). */
void segment_record_put(uint8_t *out, const struct segment_record *record);

/* Zero the padding and store the checks of the record at rec, seeded with
 * the segment's sequence number so that a record left over from an earlier
 * life of a recycled file never verifies. */
void segment_record_seal(uint8_t *rec, uint64_t seq);

/* Decode the header at buf and check only that it is plausible (known type
 * and flags, size within avail, batch at most SEGMENT_BATCH_MAX), without
 * the checksum. Returns 0 or WAL_ERR_CORRUPT. */
int segment_record_peek(const uint8_t *buf, uint64_t avail, struct segment_record *record);

/* Decode the header at buf and verify it (plausible, and its own check
 * matches) without the payload: the group, indexes, type and size of a
 * record whose payload is damaged can be trusted. Returns 0 or
 * WAL_ERR_CORRUPT. */
int segment_record_head_get(const uint8_t *buf, uint64_t avail, uint64_t seq,
			    struct segment_record *record);

/* Decode and verify the record at buf, of which avail bytes may belong to
 * it. Returns 0, or WAL_ERR_CORRUPT when the header is implausible, the size
 * overruns avail, the checksum fails, an ENTRIES payload is malformed, or
 * its indexes (or a MARK's) leave no next index below 2^64. */
int segment_record_get(const uint8_t *buf, uint64_t avail, uint64_t seq,
		       struct segment_record *record);

/* Start a cursor over an ENTRIES record that segment_record_get() accepted. */
void segment_entries_init(struct segment_entries *entries, const struct segment_record *record);

/* The next entry of the cursor; false after the last one. */
bool segment_entries_next(struct segment_entries *entries, uint32_t *size, uint32_t *type,
			  const uint8_t **data);

/* Encode the header of an ENTRIES payload and entry slot's size/type at payload. */
void segment_entries_put_count(uint8_t *payload, uint32_t count);
void segment_entries_put_meta(uint8_t *payload, uint32_t slot, uint32_t size, uint32_t type);

/* Encode and decode a HARD payload. */
void segment_hard_put(uint8_t *payload, uint64_t term, uint64_t vote, uint64_t commit);
void segment_hard_get(const uint8_t *payload, uint64_t *term, uint64_t *vote, uint64_t *commit);

/* File name of segment seq: "%016" PRIx64 ".wal". */
void segment_name(char *out, uint64_t seq);

/* The sequence number in a segment file name; false if name is not one. */
bool segment_parse_name(const char *name, uint64_t *seq);

/* Name of a record type, for tools. */
const char *segment_record_type_name(uint16_t type);

#endif /* IO_SEGMENT_H */
