/* Fuzz target: the peer wire codec (shard/wire.c), as a shard's connection
 * runs it on received bytes.
 *
 * INPUT: u8 mode, then bytes.
 *   mode % 2 == 0: the first 56 bytes are a handshake (with mode bit 1 set,
 *       its checksum is recomputed first). With mode bit 2 set instead,
 *       the bytes are a peer's DER certificate, read for the node id it
 *       names (shard/tls.c), as the TLS acceptor and dialler do.
 *   mode % 2 == 1: the bytes are a stream of frames, walked like
 *       conn_parse() does. With mode bit 1 set, each frame is resealed
 *       before it is verified (the fuzzer cannot forge an XXH3 checksum,
 *       and what follows the checksum is what needs exploring); otherwise
 *       the checksum must hold as sent. With mode bit 2 set, the stream is
 *       an authenticated connection's: a 16-byte tag follows each body
 *       (shard/auth.c), recomputed when resealing (the fuzzer cannot forge
 *       a tag either) and checked, with the frame counter, before the body
 *       is decoded. With mode bit 3 set (and not bit 2), the stream is a TLS
 *       connection's: each frame is sealed (shard/seal.c, a fixed key), and
 *       opened (checked and decrypted in place) before it is decoded; with
 *       bit 1 the body as given is sealed first, so the decoders see the
 *       fuzzer's plaintext.
 * Checks: no crash, decoders stay within the bytes they were given,
 * anything accepted re-encodes to what was decoded, and the decoded-entries
 * array grows like the shard's does (so a message that would make a node
 * allocate without bound fails under the fuzzer's memory limit). */
#include <errno.h>

#include <xxhash.h>

#include "base/le.h"
#include "shard/auth.h"
#include "shard/seal.h"
#include "shard/tls.h"
#include "shard/wire.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_WIRE_ENTRIES_START 8

static struct raft_entry *fuzz_entries;
static uint32_t fuzz_entries_cap;

static void fuzz_wire_handshake(const uint8_t *input, size_t size, bool reseal)
{
	struct wire_handshake hs, again;
	uint8_t data[WIRE_HANDSHAKE_SIZE], buf[WIRE_HANDSHAKE_SIZE];

	if (size < WIRE_HANDSHAKE_SIZE)
		return;
	memcpy(data, input, WIRE_HANDSHAKE_SIZE);
	if (reseal)
		le_put64(data + 48, XXH3_64bits(data, 48));
	if (wire_handshake_decode(&hs, data) != 0)
		return;
	wire_handshake_encode(&hs, buf);
	FUZZ_CHECK(memcmp(buf, data, WIRE_HANDSHAKE_SIZE) == 0);
	FUZZ_CHECK(wire_handshake_decode(&again, buf) == 0);
	FUZZ_CHECK(memcmp(&again, &hs, sizeof(hs)) == 0);
}

/* Re-encode an accepted message and decode it again: same message. */
static void fuzz_wire_reencode(const struct raft_msg *m, size_t used)
{
	struct raft_entry entries[FUZZ_WIRE_ENTRIES_START];
	struct raft_snapshot_meta snap;
	struct raft_msg again;
	size_t size = wire_msg_size(m), again_used = 0;
	uint8_t *buf;

	if (m->entries_count > FUZZ_WIRE_ENTRIES_START)
		return;
	if (!(m->flags & RAFT_MSG_FLAG_METADATA))
		FUZZ_CHECK(size == used); /* Only padding may differ. */
	buf = malloc(size);
	FUZZ_CHECK(buf != NULL);
	FUZZ_CHECK(wire_msg_encode(m, buf) == size);
	FUZZ_CHECK(wire_msg_decode(buf, size, &again_used, &again, entries, FUZZ_WIRE_ENTRIES_START,
				   &snap) == 0);
	FUZZ_CHECK(again_used == size);
	FUZZ_CHECK(again.group == m->group && again.from == m->from && again.to == m->to);
	FUZZ_CHECK(again.term == m->term && again.index == m->index && again.commit == m->commit);
	FUZZ_CHECK(again.type == m->type && again.flags == m->flags && again.reject == m->reject);
	FUZZ_CHECK(again.entries_count == m->entries_count);
	for (uint32_t i = 0; i < m->entries_count; i++) {
		FUZZ_CHECK(entries[i].index == m->entries[i].index);
		FUZZ_CHECK(entries[i].term == m->entries[i].term);
		FUZZ_CHECK(entries[i].type == m->entries[i].type);
		if (!(m->flags & RAFT_MSG_FLAG_METADATA) ||
		    m->entries[i].type != RAFT_ENTRY_NORMAL) {
			FUZZ_CHECK(entries[i].size == m->entries[i].size);
			FUZZ_CHECK(entries[i].size == 0 ||
				   memcmp(entries[i].data, m->entries[i].data, entries[i].size) ==
				       0);
		}
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		FUZZ_CHECK(snap.index == m->snapshot->index && snap.term == m->snapshot->term);
		FUZZ_CHECK(snap.conf.members_count == m->snapshot->conf.members_count);
	}
	free(buf);
}

/* As conn_frame(): every message of a RAFT body. */
static int fuzz_wire_raft_body(const uint8_t *body, size_t size)
{
	while (size > 0) {
		struct raft_snapshot_meta snap;
		struct raft_msg m;
		size_t used = 0;
		int rv =
		    wire_msg_decode(body, size, &used, &m, fuzz_entries, fuzz_entries_cap, &snap);

		if (rv == -E2BIG) {
			/* The shard's policy: grow the scratch array and retry. */
			uint64_t cap = (uint64_t)fuzz_entries_cap * 2 + 1024;

			FUZZ_CHECK(cap <= UINT32_MAX);
			fuzz_entries = realloc(fuzz_entries, cap * sizeof(*fuzz_entries));
			FUZZ_CHECK(fuzz_entries != NULL);
			fuzz_entries_cap = (uint32_t)cap;
			continue;
		}
		if (rv != 0)
			return rv;
		FUZZ_CHECK(used >= WIRE_MSG_HEADER_SIZE && used <= size && used % 8 == 0);
		FUZZ_CHECK(m.type > 0 && m.type < RAFT_MSG_TYPE_COUNT);
		for (uint32_t i = 0; i < m.entries_count; i++) {
			const struct raft_entry *e = &m.entries[i];

			FUZZ_CHECK(e->index == m.index + 1 + i);
			if (e->size > 0)
				FUZZ_CHECK((const uint8_t *)e->data >= body &&
					   (const uint8_t *)e->data + e->size <= body + used);
		}
		fuzz_wire_reencode(&m, used);
		body += used;
		size -= used;
	}
	return 0;
}

static int fuzz_wire_beats(const uint8_t *body, size_t size)
{
	if (size % WIRE_BEAT_SIZE != 0)
		return -EPROTO;
	for (size_t off = 0; off < size; off += WIRE_BEAT_SIZE) {
		struct raft_msg m, again;
		uint8_t buf[WIRE_BEAT_SIZE];

		if (wire_beat_decode(body + off, 7, 9, &m) != 0)
			return -EPROTO;
		FUZZ_CHECK(m.from == 7 && m.to == 9 && wire_msg_is_beat(&m));
		wire_beat_encode(&m, buf);
		FUZZ_CHECK(memcmp(buf, body + off, WIRE_BEAT_SIZE) == 0);
		FUZZ_CHECK(wire_beat_decode(buf, 7, 9, &again) == 0);
	}
	return 0;
}

static int fuzz_wire_chunk(const uint8_t *body, size_t size)
{
	struct wire_chunk c;
	uint8_t buf[WIRE_CHUNK_HEADER_SIZE];

	if (wire_chunk_decode(&c, body, size) != 0)
		return -EPROTO;
	FUZZ_CHECK((uint64_t)(c.packed_len ? c.packed_len : c.len) + WIRE_CHUNK_HEADER_SIZE ==
		   size);
	FUZZ_CHECK(c.offset <= c.size && c.len <= c.size - c.offset);
	wire_chunk_encode(&c, buf);
	FUZZ_CHECK(memcmp(buf, body, WIRE_CHUNK_HEADER_SIZE) == 0);
	return 0;
}

static const uint8_t fuzz_session_key[AUTH_KEY_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8};

/* The TLS mode's sealing contexts, keyed once with a fixed key. */
static struct seal fuzz_sealer, fuzz_opener;

static void fuzz_wire_seal_init(void)
{
	static const uint8_t key[SEAL_KEY_SIZE] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

	if (fuzz_sealer.ctx == NULL) {
		FUZZ_CHECK(seal_init(&fuzz_sealer, key, true) == 0);
		FUZZ_CHECK(seal_init(&fuzz_opener, key, false) == 0);
	}
	fuzz_sealer.frames = fuzz_opener.frames = 0; /* A new connection. */
}

/* As conn_parse() on a sealed frame: the checksum (of the encrypted body),
 * then open. Returns whether the frame may be decoded. */
static bool fuzz_wire_open(uint8_t *frame, struct wire_frame_header *h, bool reseal)
{
	uint8_t *body = frame + WIRE_FRAME_HEADER_SIZE, *tag = body + h->body_size;

	if (reseal) {
		seal_frame(&fuzz_sealer, frame, h->kind, h->body_size, tag);
		FUZZ_CHECK(wire_frame_header_decode(h, frame) == 0);
	}
	if (wire_frame_verify(h, body) != 0) {
		FUZZ_CHECK(!reseal);
		return false;
	}
	if (!seal_open(&fuzz_opener, frame, h->body_size, tag)) {
		FUZZ_CHECK(!reseal); /* What was sealed opens. */
		return false;
	}
	return true;
}

static void fuzz_wire_frames(uint8_t *buf, size_t size, bool reseal, bool tagged, bool sealed)
{
	size_t off = 0, tag_size = tagged ? AUTH_TAG_SIZE : sealed ? SEAL_TAG_SIZE : 0;
	uint64_t counter = 0;

	if (sealed)
		fuzz_wire_seal_init();
	while (size - off >= WIRE_FRAME_HEADER_SIZE) {
		struct wire_frame_header h;
		uint8_t *body = buf + off + WIRE_FRAME_HEADER_SIZE;
		int rv = wire_frame_header_decode(&h, buf + off);

		if (rv != 0) {
			FUZZ_CHECK(rv == -EMSGSIZE || rv == -EPROTO);
			return;
		}
		FUZZ_CHECK(h.body_size <= WIRE_FRAME_SIZE_MAX);
		if (size - off - WIRE_FRAME_HEADER_SIZE < (uint64_t)h.body_size + tag_size)
			return; /* Incomplete: the connection waits for more. */
		if (sealed && !fuzz_wire_open(buf + off, &h, reseal))
			return; /* The shard closes the connection. */
		if (sealed) {
			/* Opened: decoded below. */
		} else if (reseal) {
			wire_frame_seal(buf + off, h.kind, h.body_size);
			FUZZ_CHECK(wire_frame_header_decode(&h, buf + off) == 0);
			FUZZ_CHECK(wire_frame_verify(&h, body) == 0);
			if (tagged)
				auth_frame_tag(body + h.body_size, fuzz_session_key, counter,
					       buf + off, WIRE_FRAME_HEADER_SIZE + h.body_size);
		} else if (wire_frame_verify(&h, body) != 0) {
			return;
		}
		if (tagged) {
			bool good =
			    auth_frame_check(body + h.body_size, fuzz_session_key, counter,
					     buf + off, WIRE_FRAME_HEADER_SIZE + h.body_size);

			FUZZ_CHECK(good || !reseal);
			/* The next frame's tag is never this one's. */
			FUZZ_CHECK(!good || !auth_frame_check(
						body + h.body_size, fuzz_session_key, counter + 1,
						buf + off, WIRE_FRAME_HEADER_SIZE + h.body_size));
			if (!good)
				return; /* The shard closes the connection. */
			counter++;
		}
		if (h.kind == WIRE_FRAME_SNAPSHOT)
			rv = fuzz_wire_chunk(body, h.body_size);
		else if (h.kind == WIRE_FRAME_HEARTBEATS)
			rv = fuzz_wire_beats(body, h.body_size);
		else
			rv = fuzz_wire_raft_body(body, h.body_size);
		if (rv != 0)
			return; /* The shard closes the connection. */
		off += WIRE_FRAME_HEADER_SIZE + h.body_size + tag_size;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t mode, *copy;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if (mode % 2 == 0 && (mode & 4) != 0) {
		uint64_t id = 0;

		if (tls_der_node_id(data, size, &id) == 0)
			FUZZ_CHECK(id != 0);
		return 0;
	}
	if (mode % 2 == 0) {
		fuzz_wire_handshake(data, size, (mode & 2) != 0);
		return 0;
	}
	copy = malloc(size ? size : 1); /* Resealing writes into the frames. */
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	fuzz_wire_frames(copy, size, (mode & 2) != 0, (mode & 4) != 0,
			 (mode & 4) == 0 && (mode & 8) != 0);
	free(copy);
	return 0;
}
