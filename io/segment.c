/* Encoding and verification of WAL segment files.
 *
 * A segment is a file of fixed size, named "%016x.wal" after its sequence
 * number. It starts with a header and then holds records back to back; what
 * follows the last record is zeros or leftovers of an earlier life of the
 * file, which fail their checksum because the checksum seed is the segment's
 * sequence number. All integers are little-endian.
 *
 * SEGMENT HEADER: 64 bytes at offset 0, written with the first batch.
 *    0: u64 checksum       XXH3-64 (seed 0) of bytes 8..63
 *    8: u64 magic          "FLOTWAL1"
 *   16: u32 version        4; 2 and 3 are read too (version 1 had one 64-bit
 *                          record checksum; it is refused with a clear error).
 *                          The layout of 2, 3 and 4 is the same: 3 says the
 *                          WAL keeps a chain file (io/wal_chain.c), so a WAL
 *                          of version 3 or 4 segments without one has lost
 *                          it, while one of version 2 segments only was
 *                          written before chain files existed and gets one on
 *                          open; 4 says every batch ends with an END record
 *                          (a segment of 2 or 3 simply has none).
 *   20: u32 batch_size_max largest single write into this segment
 *   24: u64 seq            sequence number, as in the file name
 *   32: u64 size           file size in bytes
 *   40: u64 prev_end       where the records of segment seq-1 end; 0 if none
 *   48: u64 first_batch    batch number of the first batch written here
 *   56: u64 prev_seq       the segment prev_end refers to; 0 if none
 *
 * RECORD: 48-byte header, then the payload padded with zeros to 8 bytes.
 *    0: u32 head_check     low 32 bits of XXH3-64, seed = segment seq, of bytes 8..47
 *    4: u32 check          low 32 bits of XXH3-64, seed = segment seq, of bytes 8..48+size
 *    8: u64 group
 *   16: u64 first_index    ENTRIES: index of the first entry; MARK: compacted index
 *   24: u64 term           ENTRIES: term of every entry; MARK: term at first_index;
 *                          HARD: the hard state's term
 *   32: u64 batch          group-commit batch; never decreases along the log
 *   40: u32 size           payload bytes, before padding
 *   44: u16 type           1 ENTRIES, 2 HARD, 3 MARK, 4 REMOVED, 5 PAD, 6 END
 *   46: u16 flags          MARK: bit 0 KEEP (entries after the mark were kept),
 *                          or bit 2 RESET (the group's log is replaced entirely,
 *                          even below an earlier mark: a repair);
 *                          ENTRIES: bit 1 COPY (live entries moved forward by
 *                          compaction: they never truncate the log after them);
 *                          HARD: bit 3 REPAIRING (the group repairs lost data
 *                          from its peers until a HARD record without it);
 *                          zero for every other type
 * A record is valid iff its header is plausible (known type, zero flags,
 * size within the segment) and both checks match. The header has a check of
 * its own so that a record whose payload is damaged can still be attributed
 * to its group and index range (recovery repairs that group from its peers);
 * a record whose header check fails belongs to no one that can be named.
 *
 * ENTRIES payload: entries of one group with contiguous indexes and one term
 * (an append whose entries change term is split into one record per term).
 *    0: u32 count          >= 1
 *    4: u32 reserved       zero
 *    8: count x { u32 size, u32 type }   type is opaque to the WAL
 *    8 + 8 * count: the entries' bytes, back to back
 *
 * HARD payload: u64 term, u64 vote, u64 commit.
 * MARK, REMOVED and PAD have no payload beyond what the header says (a PAD
 * record's payload is zeros).
 *
 * BATCH: one group-commit write. Its records all carry its batch number;
 * the first batch of a segment starts with the segment header. Since
 * version 4 a batch's last record before any PAD is an END record: group,
 * first_index and term zero, no payload (48 bytes). A crash tears a write
 * as a prefix, so a record that verifies after a bad one of the same batch
 * (the END record at the latest) proves the bad bytes were written whole
 * and changed later: damage, not a torn write (io/wal_recover.c).
 *    [segment header] record ... record END [PAD]   batch n
 *    record ... record END [PAD]                    batch n + 1 */
#include "io/segment.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/le.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the formats are little-endian");
static_assert(SEGMENT_RECORD_HEADER_SIZE % 8 == 0, "payloads start 8-byte aligned");
static_assert(SEGMENT_HEADER_SIZE % 8 == 0, "records start 8-byte aligned");

#define SEGMENT_MAGIC 0x314c4157544f4c46ull /* "FLOTWAL1" read as little-endian. */

static_assert(SEGMENT_RECORD_HEADER_SIZE == 48, "the header check covers bytes 8..47");
static_assert(SEGMENT_HEADER_SIZE == 64, "the segment header's last field is prev_seq at 56");
static_assert(SEGMENT_ENTRIES_FIXED_SIZE == 8, "an ENTRIES payload starts with count, reserved");
static_assert(SEGMENT_ENTRY_META_SIZE == 8, "an entry's meta is size and type, u32 each");
static_assert(SEGMENT_HARD_SIZE == 3 * sizeof(uint64_t), "a HARD payload is term, vote, commit");
static_assert(SEGMENT_NAME_SIZE >= 16 + sizeof(".wal"), "a name is 16 hex digits, .wal, NUL");
static_assert(SEGMENT_RECORD_TYPE_MAX == SEGMENT_RECORD_END, "END is the last record type");
static_assert(SEGMENT_BATCH_MAX < UINT64_MAX, "a batch number has a successor");

uint32_t segment_record_size(uint32_t payload_size)
{
	return SEGMENT_RECORD_HEADER_SIZE + ((payload_size + 7u) & ~7u);
}

uint32_t segment_entries_payload_size(uint32_t count, uint64_t data_size)
{
	return (uint32_t)(SEGMENT_ENTRIES_FIXED_SIZE + (uint64_t)count * SEGMENT_ENTRY_META_SIZE +
			  data_size);
}

#ifndef NDEBUG
static bool segment_header_round_trips(const uint8_t *buf, const struct segment_header *header)
{
	struct segment_header decoded;

	return segment_header_get(buf, &decoded) == 0 && decoded.seq == header->seq &&
	       decoded.size == header->size && decoded.prev_end == header->prev_end &&
	       decoded.prev_seq == header->prev_seq && decoded.first_batch == header->first_batch &&
	       decoded.batch_size_max == header->batch_size_max;
}
#endif

void segment_header_put(uint8_t *out, const struct segment_header *header)
{
	memset(out, 0, SEGMENT_HEADER_SIZE);
	le_put64(out + 8, SEGMENT_MAGIC);
	le_put32(out + 16, SEGMENT_VERSION);
	le_put32(out + 20, header->batch_size_max);
	le_put64(out + 24, header->seq);
	le_put64(out + 32, header->size);
	le_put64(out + 40, header->prev_end);
	le_put64(out + 48, header->first_batch);
	le_put64(out + 56, header->prev_seq);
	le_put64(out, XXH3_64bits(out + 8, SEGMENT_HEADER_SIZE - 8));
	DEBUG_ASSERT(segment_header_round_trips(out, header)); /* Decodes to what was encoded. */
}

int segment_header_version(const uint8_t *buf)
{
	if (le_get64(buf) != XXH3_64bits(buf + 8, SEGMENT_HEADER_SIZE - 8) ||
	    le_get64(buf + 8) != SEGMENT_MAGIC)
		return 0;
	return (int)le_get32(buf + 16);
}

int segment_header_get(const uint8_t *buf, struct segment_header *header)
{
	if (le_get64(buf) != XXH3_64bits(buf + 8, SEGMENT_HEADER_SIZE - 8))
		return WAL_ERR_CORRUPT;
	if (le_get64(buf + 8) != SEGMENT_MAGIC || le_get32(buf + 16) < SEGMENT_VERSION_MIN ||
	    le_get32(buf + 16) > SEGMENT_VERSION)
		return WAL_ERR_CORRUPT;
	header->version = le_get32(buf + 16);
	header->batch_size_max = le_get32(buf + 20);
	header->seq = le_get64(buf + 24);
	header->size = le_get64(buf + 32);
	header->prev_end = le_get64(buf + 40);
	header->first_batch = le_get64(buf + 48);
	header->prev_seq = le_get64(buf + 56);
	return 0;
}

void segment_record_put(uint8_t *out, const struct segment_record *record)
{
	le_put64(out + 8, record->group);
	le_put64(out + 16, record->first_index);
	le_put64(out + 24, record->term);
	le_put64(out + 32, record->batch);
	le_put32(out + 40, record->size);
	le_put16(out + 44, record->type);
	le_put16(out + 46, record->flags);
}

void segment_record_seal(uint8_t *rec, uint64_t seq)
{
	uint32_t size = le_get32(rec + 40);
	uint32_t padded = segment_record_size(size);
	uint32_t end = SEGMENT_RECORD_HEADER_SIZE + size;

	memset(rec + end, 0, padded - end);
	le_put32(rec, (uint32_t)XXH3_64bits_withSeed(rec + 8, SEGMENT_RECORD_HEADER_SIZE - 8, seq));
	le_put32(rec + 4, (uint32_t)XXH3_64bits_withSeed(rec + 8, end - 8, seq));
}

/* An ENTRIES payload must hold at least one entry and its sizes must add
 * up exactly: a reader then never walks past the payload. */
static bool segment_entries_are_sane(const struct segment_record *record)
{
	uint64_t data_size = 0;
	uint32_t count;

	if (record->size < SEGMENT_ENTRIES_FIXED_SIZE)
		return false;
	count = le_get32(record->payload);
	if (count == 0 || le_get32(record->payload + 4) != 0)
		return false;
	if ((uint64_t)count * SEGMENT_ENTRY_META_SIZE > record->size - SEGMENT_ENTRIES_FIXED_SIZE)
		return false;
	for (uint32_t i = 0; i < count; i++)
		data_size += le_get32(record->payload + SEGMENT_ENTRIES_FIXED_SIZE +
				      (uint64_t)i * SEGMENT_ENTRY_META_SIZE);
	/* Indexes start at 1, and the one after the last must exist. */
	return segment_entries_payload_size(count, data_size) == record->size &&
	       record->first_index >= 1 && record->first_index <= UINT64_MAX - count;
}

int segment_record_peek(const uint8_t *buf, uint64_t avail, struct segment_record *record)
{
	if (avail < SEGMENT_RECORD_HEADER_SIZE)
		return WAL_ERR_CORRUPT;
	record->group = le_get64(buf + 8);
	record->first_index = le_get64(buf + 16);
	record->term = le_get64(buf + 24);
	record->batch = le_get64(buf + 32);
	record->size = le_get32(buf + 40);
	record->type = le_get16(buf + 44);
	record->flags = le_get16(buf + 46);
	record->payload = buf + SEGMENT_RECORD_HEADER_SIZE;
	/* Plausibility first: a garbage size must not send the checksum past
	 * the buffer. */
	if (record->type == 0 || record->type > SEGMENT_RECORD_TYPE_MAX)
		return WAL_ERR_CORRUPT;
	if (record->flags != 0 &&
	    !(record->type == SEGMENT_RECORD_MARK &&
	      (record->flags == SEGMENT_MARK_KEEP || record->flags == SEGMENT_MARK_RESET)) &&
	    !(record->type == SEGMENT_RECORD_ENTRIES && record->flags == SEGMENT_ENTRIES_COPY) &&
	    !(record->type == SEGMENT_RECORD_HARD && record->flags == SEGMENT_HARD_REPAIRING))
		return WAL_ERR_CORRUPT;
	if (record->size > avail - SEGMENT_RECORD_HEADER_SIZE ||
	    segment_record_size(record->size) > avail)
		return WAL_ERR_CORRUPT;
	if (record->type == SEGMENT_RECORD_HARD && record->size != SEGMENT_HARD_SIZE)
		return WAL_ERR_CORRUPT;
	if (record->type == SEGMENT_RECORD_END && record->size != 0)
		return WAL_ERR_CORRUPT;
	/* Batches count group commits from 1: 2^63 of them is not a real
	 * log, and numbering on from near 2^64 would wrap. */
	if (record->batch > SEGMENT_BATCH_MAX)
		return WAL_ERR_CORRUPT;
	return 0;
}

int segment_record_head_get(const uint8_t *buf, uint64_t avail, uint64_t seq,
			    struct segment_record *record)
{
	if (segment_record_peek(buf, avail, record) != 0)
		return WAL_ERR_CORRUPT;
	if (le_get32(buf) !=
	    (uint32_t)XXH3_64bits_withSeed(buf + 8, SEGMENT_RECORD_HEADER_SIZE - 8, seq))
		return WAL_ERR_CORRUPT;
	return 0;
}

int segment_record_get(const uint8_t *buf, uint64_t avail, uint64_t seq,
		       struct segment_record *record)
{
	if (segment_record_head_get(buf, avail, seq, record) != 0)
		return WAL_ERR_CORRUPT;
	if (le_get32(buf + 4) != (uint32_t)XXH3_64bits_withSeed(
				     buf + 8, SEGMENT_RECORD_HEADER_SIZE - 8 + record->size, seq))
		return WAL_ERR_CORRUPT;
	if (record->type == SEGMENT_RECORD_ENTRIES && !segment_entries_are_sane(record))
		return WAL_ERR_CORRUPT;
	/* A log compacted up to the last index would have no next index. */
	if (record->type == SEGMENT_RECORD_MARK && record->first_index == UINT64_MAX)
		return WAL_ERR_CORRUPT;
	return 0;
}

void segment_entries_init(struct segment_entries *entries, const struct segment_record *record)
{
	ASSERT(record->type == SEGMENT_RECORD_ENTRIES);
	entries->count = le_get32(record->payload);
	entries->meta = record->payload + SEGMENT_ENTRIES_FIXED_SIZE;
	entries->data = entries->meta + (uint64_t)entries->count * SEGMENT_ENTRY_META_SIZE;
	entries->slot = 0;
}

bool segment_entries_next(struct segment_entries *entries, uint32_t *size, uint32_t *type,
			  const uint8_t **data)
{
	if (entries->slot == entries->count)
		return false;
	*size = le_get32(entries->meta);
	*type = le_get32(entries->meta + 4);
	*data = entries->data;
	entries->meta += SEGMENT_ENTRY_META_SIZE;
	entries->data += *size;
	entries->slot++;
	return true;
}

void segment_entries_put_count(uint8_t *payload, uint32_t count)
{
	le_put32(payload, count);
	le_put32(payload + 4, 0);
}

void segment_entries_put_meta(uint8_t *payload, uint32_t slot, uint32_t size, uint32_t type)
{
	uint8_t *meta =
	    payload + SEGMENT_ENTRIES_FIXED_SIZE + (uint64_t)slot * SEGMENT_ENTRY_META_SIZE;

	le_put32(meta, size);
	le_put32(meta + 4, type);
	DEBUG_ASSERT(slot < le_get32(payload)); /* The count was put first and covers slot. */
}

void segment_hard_put(uint8_t *payload, uint64_t term, uint64_t vote, uint64_t commit)
{
	le_put64(payload, term);
	le_put64(payload + 8, vote);
	le_put64(payload + 16, commit);
	DEBUG_ASSERT(le_get64(payload) == term && le_get64(payload + 8) == vote &&
		     le_get64(payload + 16) == commit);
}

void segment_hard_get(const uint8_t *payload, uint64_t *term, uint64_t *vote, uint64_t *commit)
{
	*term = le_get64(payload);
	*vote = le_get64(payload + 8);
	*commit = le_get64(payload + 16);
}

void segment_name(char *out, uint64_t seq)
{
	snprintf(out, SEGMENT_NAME_SIZE, "%016" PRIx64 ".wal", seq);
}

bool segment_parse_name(const char *name, uint64_t *seq)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	if (strcmp(name + 16, ".wal") != 0 || v == 0)
		return false;
	*seq = v;
	return true;
}

const char *segment_record_type_name(uint16_t type)
{
	switch (type) {
	case SEGMENT_RECORD_ENTRIES:
		return "entries";
	case SEGMENT_RECORD_HARD:
		return "hard";
	case SEGMENT_RECORD_MARK:
		return "mark";
	case SEGMENT_RECORD_REMOVED:
		return "removed";
	case SEGMENT_RECORD_PAD:
		return "pad";
	case SEGMENT_RECORD_END:
		return "end";
	default:
		return "unknown";
	}
}
