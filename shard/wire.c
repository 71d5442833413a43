/* Encoding and checked decoding of everything that crosses a peer connection.
 *
 * HANDSHAKE: 56 bytes, little-endian, sent once by each side.
 *    0: u32 magic         WIRE_MAGIC
 *    4: u32 version       WIRE_VERSION (2; version 1 had no incarnation)
 *    8: u64 cluster_id
 *   16: u64 node_id
 *   24: u32 shard_index
 *   28: u32 shard_count
 *   32: u32 flags         bit 0: authentication follows (see shard/auth.c);
 *                         bit 1: a probe (dialler); bit 2: refused (acceptor);
 *                         bit 3: with bit 0, frames carry tags (shard/auth.c)
 *   36: u32 reserved      zero
 *   40: u64 incarnation   of the sender's data directory (shard/datadir.c)
 *   48: u64 checksum      xxh3-64 of bytes 0..47
 *
 * FRAME: 16-byte header, then the body.
 *    0: u32 body_size     at most WIRE_FRAME_SIZE_MAX
 *    4: u32 kind          enum wire_frame_kind
 *    8: u64 checksum      xxh3-64 of the body, seeded with body_size | kind << 32
 * When the connection is authenticated (a shared key), a 16-byte tag follows
 * the body (not counted in body_size): see shard/auth.c.
 *
 * RAFT MESSAGE inside a WIRE_FRAME_RAFT body; messages follow back to back.
 *    0: u64 group          8: u64 from          16: u64 to
 *   24: u64 term          32: u64 log_term     40: u64 index
 *   48: u64 commit        56: u64 context      64: u64 hint_index
 *   72: u64 hint_term
 *   80: u8 type, u8 flags, u8 reject, u8 zero
 *   84: u32 entries_count
 *   88: entries, each: u64 term, u32 type, u32 size, payload padded to 8
 *       (entry i has index index + 1 + i)
 *   then, for SNAPSHOT only: u64 index, u64 term, u32 conf_size, u32 zero,
 *       conf bytes (raft_conf_encode) padded to 8.
 *
 * SNAPSHOT CHUNK: the body of a WIRE_FRAME_SNAPSHOT frame.
 *    0: u64 group         8: u64 index        16: u64 term
 *   24: u64 offset       32: u64 size         40: u64 checksum
 *   48: u32 len          bytes of the file this chunk carries, from offset;
 *                        offset + len <= size
 *   52: u32 packed_len   0: the len bytes follow as they are; else they follow
 *                        LZ4-compressed (one block) in packed_len bytes
 *   56: the bytes.
 *
 * HEARTBEATS: the body of a WIRE_FRAME_HEARTBEATS frame is a run of 40-byte
 * beats, the heartbeats and replies of many groups to one peer coalesced
 * (sender and receiver are the connection's two nodes).
 *    0: u64 group         8: u64 term         16: u64 commit
 *   24: u64 context
 *   32: u8 type (HEARTBEAT or HEARTBEAT_RESP), u8 flags, 6 bytes zero
 *
 * Assertions sit on the encoding side only: what we encode comes from our
 * own engine, so a field out of range there is a bug. Each encoder decodes
 * its output back and compares it under DEBUG_ASSERT (debug builds). Decoding
 * bytes from the network never asserts: it returns an error. */
#include "shard/wire.h"

#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/le.h"

#define WIRE_ENTRY_HEADER_SIZE    16
#define WIRE_SNAPSHOT_HEADER_SIZE 24
#define WIRE_CHECK_ENTRIES_MAX    8 /* Entries the encoder's decode-back check compares. */

/* The sizes of the format tables above. */
_Static_assert(WIRE_HANDSHAKE_SIZE == 56, "handshake is 56 bytes");
_Static_assert(WIRE_FRAME_HEADER_SIZE == 16, "frame header is 16 bytes");
_Static_assert(WIRE_MSG_HEADER_SIZE == 88, "message header is 88 bytes");
_Static_assert(WIRE_ENTRY_HEADER_SIZE == 16, "entry header is 16 bytes");
_Static_assert(WIRE_SNAPSHOT_HEADER_SIZE == 24, "snapshot header is 24 bytes");
_Static_assert(WIRE_BEAT_SIZE == 40, "a beat is 40 bytes");
_Static_assert(WIRE_CHUNK_HEADER_SIZE == 56, "chunk header is 56 bytes");
_Static_assert(WIRE_MSG_HEADER_SIZE % 8 == 0, "entries start 8-byte aligned");
_Static_assert(WIRE_ENTRY_HEADER_SIZE % 8 == 0, "payloads start 8-byte aligned");
_Static_assert(RAFT_MSG_TYPE_COUNT <= 256, "a message type fits its byte");
_Static_assert(RAFT_ENTRY_CHECK <= UINT32_MAX, "an entry type fits its u32");
_Static_assert(WIRE_FRAME_SIZE_MAX <= UINT32_MAX, "a body size fits its u32");

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static void wire_handshake_check(const struct wire_handshake *hs, const uint8_t *buf);

void wire_handshake_encode(const struct wire_handshake *hs, uint8_t *buf)
{
	ASSERT((hs->flags & ~(uint32_t)WIRE_HANDSHAKE_FLAGS) == 0); /* Only flags we know. */
	le_put32(buf, WIRE_MAGIC);
	le_put32(buf + 4, hs->version);
	le_put64(buf + 8, hs->cluster_id);
	le_put64(buf + 16, hs->node_id);
	le_put32(buf + 24, hs->shard_index);
	le_put32(buf + 28, hs->shard_count);
	le_put32(buf + 32, hs->flags);
	le_put32(buf + 36, 0);
	le_put64(buf + 40, hs->incarnation);
	le_put64(buf + 48, XXH3_64bits(buf, 48));
	wire_handshake_check(hs, buf);
}

int wire_handshake_decode(struct wire_handshake *hs, const uint8_t *buf)
{
	if (le_get32(buf) != WIRE_MAGIC || le_get64(buf + 48) != XXH3_64bits(buf, 48))
		return -EPROTO;
	hs->version = le_get32(buf + 4);
	hs->cluster_id = le_get64(buf + 8);
	hs->node_id = le_get64(buf + 16);
	hs->shard_index = le_get32(buf + 24);
	hs->shard_count = le_get32(buf + 28);
	hs->flags = le_get32(buf + 32);
	hs->incarnation = le_get64(buf + 40);
	if (hs->version != WIRE_VERSION || (hs->flags & ~(uint32_t)WIRE_HANDSHAKE_FLAGS) != 0 ||
	    le_get32(buf + 36) != 0)
		return -EPROTO;
	return 0;
}

void wire_addr_note_encode(const char *text, uint8_t *buf)
{
	size_t len = strnlen(text, WIRE_ADDR_NOTE_TEXT_MAX);

	memset(buf, 0, WIRE_ADDR_NOTE_SIZE);
	le_put32(buf, (uint32_t)len);
	memcpy(buf + 4, text, len);
	le_put64(buf + WIRE_ADDR_NOTE_SIZE - 8, XXH3_64bits(buf, WIRE_ADDR_NOTE_SIZE - 8));
}

int wire_addr_note_decode(const uint8_t *buf, char *text)
{
	uint32_t len = le_get32(buf);

	if (len > WIRE_ADDR_NOTE_TEXT_MAX ||
	    le_get64(buf + WIRE_ADDR_NOTE_SIZE - 8) != XXH3_64bits(buf, WIRE_ADDR_NOTE_SIZE - 8))
		return -EPROTO;
	for (uint32_t i = 0; i < len; i++)
		if (buf[4 + i] < 0x21 || buf[4 + i] > 0x7e)
			return -EPROTO;
	memcpy(text, buf + 4, len);
	text[len] = '\0';
	return 0;
}

/* Paired check: a handshake of our version decodes back to what was encoded. */
static void wire_handshake_check(const struct wire_handshake *hs, const uint8_t *buf)
{
#ifdef NDEBUG
	(void)hs;
	(void)buf;
#else
	struct wire_handshake back;

	if (hs->version != WIRE_VERSION)
		return; /* Tests encode other versions to see them refused. */
	DEBUG_ASSERT(wire_handshake_decode(&back, buf) == 0);
	DEBUG_ASSERT(back.cluster_id == hs->cluster_id);
	DEBUG_ASSERT(back.node_id == hs->node_id);
	DEBUG_ASSERT(back.shard_index == hs->shard_index);
	DEBUG_ASSERT(back.shard_count == hs->shard_count);
	DEBUG_ASSERT(back.flags == hs->flags);
	DEBUG_ASSERT(back.incarnation == hs->incarnation);
#endif
}

static bool strip_payload(const struct raft_msg *msg, const struct raft_entry *e)
{
	return (msg->flags & RAFT_MSG_FLAG_METADATA) && e->type == RAFT_ENTRY_NORMAL;
}

size_t wire_msg_size(const struct raft_msg *msg)
{
	size_t size = WIRE_MSG_HEADER_SIZE;

	for (uint32_t i = 0; i < msg->entries_count; i++) {
		const struct raft_entry *e = &msg->entries[i];

		size += WIRE_ENTRY_HEADER_SIZE + (strip_payload(msg, e) ? 0 : pad8(e->size));
	}
	if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot)
		size +=
		    WIRE_SNAPSHOT_HEADER_SIZE + pad8(raft_conf_encoded_size(&msg->snapshot->conf));
	return size;
}

static void wire_msg_check(const struct raft_msg *msg, const uint8_t *buf, size_t size);

size_t wire_msg_encode(const struct raft_msg *msg, uint8_t *buf)
{
	uint8_t *p = buf;

	/* Our own engine's messages: anything the decoder would refuse is a bug. */
	ASSERT(msg->type > 0);
	ASSERT(msg->type < RAFT_MSG_TYPE_COUNT);
	ASSERT(msg->flags <= UINT8_MAX);
	ASSERT(msg->entries_count == 0 || msg->type == RAFT_MSG_APPEND);
	ASSERT(msg->entries_count == 0 || msg->entries != NULL);
	ASSERT(msg->type != RAFT_MSG_SNAPSHOT || msg->snapshot != NULL);
	le_put64(p, msg->group);
	le_put64(p + 8, msg->from);
	le_put64(p + 16, msg->to);
	le_put64(p + 24, msg->term);
	le_put64(p + 32, msg->log_term);
	le_put64(p + 40, msg->index);
	le_put64(p + 48, msg->commit);
	le_put64(p + 56, msg->context);
	le_put64(p + 64, msg->hint_index);
	le_put64(p + 72, msg->hint_term);
	p[80] = (uint8_t)msg->type;
	p[81] = (uint8_t)msg->flags;
	p[82] = msg->reject ? 1 : 0;
	p[83] = 0;
	le_put32(p + 84, msg->entries_count);
	p += WIRE_MSG_HEADER_SIZE;
	for (uint32_t i = 0; i < msg->entries_count; i++) {
		const struct raft_entry *e = &msg->entries[i];
		uint32_t size = strip_payload(msg, e) ? 0 : e->size;

		ASSERT(e->type <= RAFT_ENTRY_CHECK);
		ASSERT(size == 0 || e->data != NULL);
		le_put64(p, e->term);
		le_put32(p + 8, e->type);
		le_put32(p + 12, size);
		p += WIRE_ENTRY_HEADER_SIZE;
		if (size) {
			memcpy(p, e->data, size);
			memset(p + size, 0, pad8(size) - size);
			p += pad8(size);
		}
	}
	if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot) {
		uint32_t conf_size = raft_conf_encoded_size(&msg->snapshot->conf);

		le_put64(p, msg->snapshot->index);
		le_put64(p + 8, msg->snapshot->term);
		le_put32(p + 16, conf_size);
		le_put32(p + 20, 0);
		p += WIRE_SNAPSHOT_HEADER_SIZE;
		raft_conf_encode(&msg->snapshot->conf, p);
		memset(p + conf_size, 0, pad8(conf_size) - conf_size);
		p += pad8(conf_size);
	}
	DEBUG_ASSERT((size_t)(p - buf) == wire_msg_size(msg)); /* What callers reserved. */
	wire_msg_check(msg, buf, (size_t)(p - buf));
	return (size_t)(p - buf);
}

/* Paired check: an encoded message decodes back, field by field, to msg
 * (entries and their payloads when there are at most WIRE_CHECK_ENTRIES_MAX). */
static void wire_msg_check(const struct raft_msg *msg, const uint8_t *buf, size_t size)
{
#ifdef NDEBUG
	(void)msg;
	(void)buf;
	(void)size;
#else
	struct raft_entry entries[WIRE_CHECK_ENTRIES_MAX];
	struct raft_snapshot_meta snapshot;
	struct raft_msg back;
	size_t used = 0;
	int rv =
	    wire_msg_decode(buf, size, &used, &back, entries, WIRE_CHECK_ENTRIES_MAX, &snapshot);

	DEBUG_ASSERT(rv == 0 || rv == -E2BIG);
	DEBUG_ASSERT(back.group == msg->group);
	DEBUG_ASSERT(back.from == msg->from);
	DEBUG_ASSERT(back.to == msg->to);
	DEBUG_ASSERT(back.term == msg->term);
	DEBUG_ASSERT(back.log_term == msg->log_term);
	DEBUG_ASSERT(back.index == msg->index);
	DEBUG_ASSERT(back.commit == msg->commit);
	DEBUG_ASSERT(back.context == msg->context);
	DEBUG_ASSERT(back.hint_index == msg->hint_index);
	DEBUG_ASSERT(back.hint_term == msg->hint_term);
	DEBUG_ASSERT(back.type == msg->type);
	DEBUG_ASSERT(back.flags == msg->flags);
	DEBUG_ASSERT(back.reject == msg->reject);
	if (rv == -E2BIG) {
		DEBUG_ASSERT(msg->entries_count > WIRE_CHECK_ENTRIES_MAX);
		return; /* Too many entries to compare here; the header matched. */
	}
	DEBUG_ASSERT(used == size);
	DEBUG_ASSERT(back.entries_count == msg->entries_count);
	for (uint32_t i = 0; i < msg->entries_count; i++) {
		const struct raft_entry *e = &msg->entries[i];
		uint32_t e_size = strip_payload(msg, e) ? 0 : e->size;

		DEBUG_ASSERT(entries[i].term == e->term);
		DEBUG_ASSERT(entries[i].index == e->index); /* Entries are contiguous. */
		DEBUG_ASSERT(entries[i].type == e->type);
		DEBUG_ASSERT(entries[i].size == e_size);
		DEBUG_ASSERT(e_size == 0 || memcmp(entries[i].data, e->data, e_size) == 0);
	}
	if (msg->type == RAFT_MSG_SNAPSHOT) {
		DEBUG_ASSERT(snapshot.index == msg->snapshot->index);
		DEBUG_ASSERT(snapshot.term == msg->snapshot->term);
		DEBUG_ASSERT(snapshot.conf.members_count == msg->snapshot->conf.members_count);
		DEBUG_ASSERT(snapshot.conf.joint == msg->snapshot->conf.joint);
	}
#endif
}

int wire_msg_decode(const uint8_t *buf, size_t size, size_t *used, struct raft_msg *msg,
		    struct raft_entry *entries, uint32_t entries_cap,
		    struct raft_snapshot_meta *snapshot)
{
	const uint8_t *p = buf, *end = buf + size;
	uint32_t count;

	if (size < WIRE_MSG_HEADER_SIZE)
		return -EPROTO;
	memset(msg, 0, sizeof(*msg));
	msg->group = le_get64(p);
	msg->from = le_get64(p + 8);
	msg->to = le_get64(p + 16);
	msg->term = le_get64(p + 24);
	msg->log_term = le_get64(p + 32);
	msg->index = le_get64(p + 40);
	msg->commit = le_get64(p + 48);
	msg->context = le_get64(p + 56);
	msg->hint_index = le_get64(p + 64);
	msg->hint_term = le_get64(p + 72);
	msg->type = p[80];
	msg->flags = p[81];
	if (p[82] > 1 || p[83] != 0 || msg->type == 0 || msg->type >= RAFT_MSG_TYPE_COUNT)
		return -EPROTO;
	msg->reject = p[82] == 1;
	count = le_get32(p + 84);
	p += WIRE_MSG_HEADER_SIZE;
	if (count > 0 && msg->type != RAFT_MSG_APPEND)
		return -EPROTO;
	/* Every entry takes at least its header: a count the bytes cannot hold
	 * is malformed, and must not make the caller grow its entries array. */
	if (count > (size_t)(end - p) / WIRE_ENTRY_HEADER_SIZE)
		return -EPROTO;
	if (count > entries_cap)
		return -E2BIG;
	if (msg->index > UINT64_MAX - count)
		return -EPROTO;
	for (uint32_t i = 0; i < count; i++) {
		struct raft_entry *e = &entries[i];

		if ((size_t)(end - p) < WIRE_ENTRY_HEADER_SIZE)
			return -EPROTO;
		e->term = le_get64(p);
		e->type = le_get32(p + 8);
		e->size = le_get32(p + 12);
		e->index = msg->index + 1 + i;
		p += WIRE_ENTRY_HEADER_SIZE;
		if (e->type > RAFT_ENTRY_CHECK || (size_t)(end - p) < pad8(e->size))
			return -EPROTO;
		e->data = e->size ? p : NULL;
		p += pad8(e->size);
	}
	msg->entries_count = count;
	msg->entries = count ? entries : NULL;
	if (msg->type == RAFT_MSG_SNAPSHOT) {
		uint32_t conf_size;

		if ((size_t)(end - p) < WIRE_SNAPSHOT_HEADER_SIZE)
			return -EPROTO;
		snapshot->index = le_get64(p);
		snapshot->term = le_get64(p + 8);
		conf_size = le_get32(p + 16);
		if (le_get32(p + 20) != 0)
			return -EPROTO;
		p += WIRE_SNAPSHOT_HEADER_SIZE;
		if ((size_t)(end - p) < pad8(conf_size) ||
		    raft_conf_decode(&snapshot->conf, p, conf_size) != 0)
			return -EPROTO;
		p += pad8(conf_size);
		msg->snapshot = snapshot;
	}
	*used = (size_t)(p - buf);
	return 0;
}

/* Paired check: a chunk header the decoder accepts carries what was encoded.
 * (Tests encode malformed chunks on purpose to see them refused.) */
static void wire_chunk_check(const struct wire_chunk *c, const uint8_t *buf)
{
#ifdef NDEBUG
	(void)c;
	(void)buf;
#else
	struct wire_chunk back;
	size_t size = WIRE_CHUNK_HEADER_SIZE + (size_t)(c->packed_len ? c->packed_len : c->len);

	if (wire_chunk_decode(&back, buf, size) != 0)
		return;
	DEBUG_ASSERT(back.group == c->group);
	DEBUG_ASSERT(back.index == c->index);
	DEBUG_ASSERT(back.term == c->term);
	DEBUG_ASSERT(back.offset == c->offset);
	DEBUG_ASSERT(back.size == c->size);
	DEBUG_ASSERT(back.checksum == c->checksum);
	DEBUG_ASSERT(back.len == c->len);
	DEBUG_ASSERT(back.packed_len == c->packed_len);
#endif
}

void wire_chunk_encode(const struct wire_chunk *c, uint8_t *buf)
{
	le_put64(buf, c->group);
	le_put64(buf + 8, c->index);
	le_put64(buf + 16, c->term);
	le_put64(buf + 24, c->offset);
	le_put64(buf + 32, c->size);
	le_put64(buf + 40, c->checksum);
	le_put32(buf + 48, c->len);
	le_put32(buf + 52, c->packed_len);
	wire_chunk_check(c, buf);
}

int wire_chunk_decode(struct wire_chunk *c, const uint8_t *body, size_t size)
{
	if (size < WIRE_CHUNK_HEADER_SIZE)
		return -EPROTO;
	c->group = le_get64(body);
	c->index = le_get64(body + 8);
	c->term = le_get64(body + 16);
	c->offset = le_get64(body + 24);
	c->size = le_get64(body + 32);
	c->checksum = le_get64(body + 40);
	c->len = le_get32(body + 48);
	c->packed_len = le_get32(body + 52);
	if ((c->packed_len ? c->packed_len : c->len) != size - WIRE_CHUNK_HEADER_SIZE ||
	    c->offset > c->size || c->len > c->size - c->offset ||
	    (c->packed_len != 0 && c->len == 0))
		return -EPROTO;
	return 0;
}

bool wire_msg_is_beat(const struct raft_msg *msg)
{
	return (msg->type == RAFT_MSG_HEARTBEAT || msg->type == RAFT_MSG_HEARTBEAT_RESP) &&
	       msg->flags <= 0xff && !msg->reject && msg->entries_count == 0;
}

static void wire_beat_check(const struct raft_msg *msg, const uint8_t *buf);

void wire_beat_encode(const struct raft_msg *msg, uint8_t *buf)
{
	ASSERT(wire_msg_is_beat(msg)); /* Callers ask wire_msg_is_beat() first. */
	le_put64(buf, msg->group);
	le_put64(buf + 8, msg->term);
	le_put64(buf + 16, msg->commit);
	le_put64(buf + 24, msg->context);
	memset(buf + 32, 0, 8);
	buf[32] = (uint8_t)msg->type;
	buf[33] = (uint8_t)msg->flags;
	wire_beat_check(msg, buf);
}

/* Paired check: a beat decodes back to the heartbeat it was made from. */
static void wire_beat_check(const struct raft_msg *msg, const uint8_t *buf)
{
#ifdef NDEBUG
	(void)msg;
	(void)buf;
#else
	struct raft_msg back;

	DEBUG_ASSERT(wire_beat_decode(buf, msg->from, msg->to, &back) == 0);
	DEBUG_ASSERT(back.group == msg->group);
	DEBUG_ASSERT(back.term == msg->term);
	DEBUG_ASSERT(back.commit == msg->commit);
	DEBUG_ASSERT(back.context == msg->context);
	DEBUG_ASSERT(back.type == msg->type);
	DEBUG_ASSERT(back.flags == msg->flags);
#endif
}

int wire_beat_decode(const uint8_t *beat, uint64_t from, uint64_t to, struct raft_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->group = le_get64(beat);
	msg->term = le_get64(beat + 8);
	msg->commit = le_get64(beat + 16);
	msg->context = le_get64(beat + 24);
	msg->type = beat[32];
	msg->flags = beat[33];
	msg->from = from;
	msg->to = to;
	if (msg->type != RAFT_MSG_HEARTBEAT && msg->type != RAFT_MSG_HEARTBEAT_RESP)
		return -EPROTO;
	for (int i = 34; i < 40; i++)
		if (beat[i] != 0)
			return -EPROTO;
	return 0;
}

static uint64_t frame_checksum(uint32_t kind, uint32_t body_size, const uint8_t *body)
{
	return XXH3_64bits_withSeed(body, body_size, (uint64_t)body_size | (uint64_t)kind << 32);
}

void wire_frame_seal(uint8_t *frame, uint32_t kind, uint32_t body_size)
{
	ASSERT(body_size <= WIRE_FRAME_SIZE_MAX); /* Senders cut frames below the limit. */
	le_put32(frame, body_size);
	le_put32(frame + 4, kind);
	le_put64(frame + 8, frame_checksum(kind, body_size, frame + WIRE_FRAME_HEADER_SIZE));
#ifndef NDEBUG
	{
		/* Paired check of the header (the body's checksum is not hashed
		 * twice: frames are large). Tests seal unknown kinds on purpose. */
		struct wire_frame_header back;

		if (wire_frame_header_decode(&back, frame) == 0) {
			DEBUG_ASSERT(back.body_size == body_size);
			DEBUG_ASSERT(back.kind == kind);
		}
	}
#endif
}

int wire_frame_header_decode(struct wire_frame_header *header, const uint8_t *buf)
{
	header->body_size = le_get32(buf);
	header->kind = le_get32(buf + 4);
	header->checksum = le_get64(buf + 8);
	if (header->body_size > WIRE_FRAME_SIZE_MAX)
		return -EMSGSIZE;
	if (header->kind != WIRE_FRAME_RAFT && header->kind != WIRE_FRAME_SNAPSHOT &&
	    header->kind != WIRE_FRAME_HEARTBEATS)
		return -EPROTO;
	return 0;
}

int wire_frame_verify(const struct wire_frame_header *header, const uint8_t *body)
{
	if (frame_checksum(header->kind, header->body_size, body) != header->checksum)
		return -EBADMSG;
	return 0;
}
