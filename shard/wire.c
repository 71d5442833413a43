/* Encoding and checked decoding of everything that crosses a peer connection.
 *
 * HANDSHAKE: 48 bytes, little-endian, sent once by each side.
 *    0: u32 magic         WIRE_MAGIC
 *    4: u32 version       WIRE_VERSION
 *    8: u64 cluster_id
 *   16: u64 node_id
 *   24: u32 shard_index
 *   28: u32 shard_count
 *   32: u32 flags         bit 0: authentication follows (see shard/net.c)
 *   36: u32 reserved      zero
 *   40: u64 checksum      xxh3-64 of bytes 0..39
 *
 * FRAME: 16-byte header, then the body.
 *    0: u32 body_size     at most WIRE_FRAME_SIZE_MAX
 *    4: u32 kind          enum wire_frame_kind
 *    8: u64 checksum      xxh3-64 of the body, seeded with body_size | kind << 32
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
 *   32: u8 type (HEARTBEAT or HEARTBEAT_RESP), u8 flags, 6 bytes zero */
#include "shard/wire.h"

#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include "base/le.h"

#define WIRE_ENTRY_HEADER_SIZE    16
#define WIRE_SNAPSHOT_HEADER_SIZE 24

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

void wire_handshake_encode(const struct wire_handshake *hs, uint8_t *buf)
{
	le_put32(buf, WIRE_MAGIC);
	le_put32(buf + 4, hs->version);
	le_put64(buf + 8, hs->cluster_id);
	le_put64(buf + 16, hs->node_id);
	le_put32(buf + 24, hs->shard_index);
	le_put32(buf + 28, hs->shard_count);
	le_put32(buf + 32, hs->flags);
	le_put32(buf + 36, 0);
	le_put64(buf + 40, XXH3_64bits(buf, 40));
}

int wire_handshake_decode(struct wire_handshake *hs, const uint8_t *buf)
{
	if (le_get32(buf) != WIRE_MAGIC || le_get64(buf + 40) != XXH3_64bits(buf, 40))
		return -EPROTO;
	hs->version = le_get32(buf + 4);
	hs->cluster_id = le_get64(buf + 8);
	hs->node_id = le_get64(buf + 16);
	hs->shard_index = le_get32(buf + 24);
	hs->shard_count = le_get32(buf + 28);
	hs->flags = le_get32(buf + 32);
	if (hs->version != WIRE_VERSION || (hs->flags & ~(uint32_t)WIRE_HANDSHAKE_AUTH) != 0 ||
	    le_get32(buf + 36) != 0)
		return -EPROTO;
	return 0;
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

size_t wire_msg_encode(const struct raft_msg *msg, uint8_t *buf)
{
	uint8_t *p = buf;

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
	return (size_t)(p - buf);
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

void wire_beat_encode(const struct raft_msg *msg, uint8_t *buf)
{
	le_put64(buf, msg->group);
	le_put64(buf + 8, msg->term);
	le_put64(buf + 16, msg->commit);
	le_put64(buf + 24, msg->context);
	memset(buf + 32, 0, 8);
	buf[32] = (uint8_t)msg->type;
	buf[33] = (uint8_t)msg->flags;
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
	le_put32(frame, body_size);
	le_put32(frame + 4, kind);
	le_put64(frame + 8, frame_checksum(kind, body_size, frame + WIRE_FRAME_HEADER_SIZE));
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
