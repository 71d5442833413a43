/* The wire codec between shards of different nodes: handshake, frames, and
 * Raft messages of many groups inside one frame.
 *
 * Encoding writes into caller buffers and never allocates. Decoding checks
 * every length and field against the bytes actually received and returns an
 * error for anything malformed: input from the network must never crash the
 * node. Decoded messages borrow the frame's bytes for entry payloads. */
#ifndef SHARD_WIRE_H
#define SHARD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/raft.h"

#define WIRE_MAGIC             0x414c5446u /* "FTLA" little-endian. */
#define WIRE_VERSION           2
#define WIRE_HANDSHAKE_SIZE    56
#define WIRE_FRAME_HEADER_SIZE 16
#define WIRE_FRAME_SIZE_MAX    (64u << 20) /* Body bytes of one frame. */
#define WIRE_MSG_HEADER_SIZE   88

enum wire_frame_kind {
	WIRE_FRAME_RAFT = 1,       /* A batch of Raft messages of any groups. */
	WIRE_FRAME_SNAPSHOT = 2,   /* One chunk of a snapshot file. */
	WIRE_FRAME_HEARTBEATS = 3, /* The heartbeats (and replies) of many groups. */
};

#define WIRE_BEAT_SIZE 40 /* One heartbeat in a WIRE_FRAME_HEARTBEATS body. */

#define WIRE_CHUNK_HEADER_SIZE 56

/* A chunk of the snapshot file of (group, index); its bytes follow. */
struct wire_chunk {
	uint64_t group;
	uint64_t index;
	uint64_t term;
	uint64_t offset;     /* Of the first byte in the file. */
	uint64_t size;       /* Of the whole file. */
	uint64_t checksum;   /* XXH3-64 of the whole file. */
	uint32_t len;        /* Bytes of the file in this chunk. */
	uint32_t packed_len; /* 0: they follow raw; else LZ4-compressed in this many. */
};

enum wire_handshake_flags {
	WIRE_HANDSHAKE_AUTH = 1u << 0,    /* A challenge-response with the shared key follows. */
	WIRE_HANDSHAKE_PROBE = 1u << 1,   /* Dialler: only asking who answers; close after. */
	WIRE_HANDSHAKE_REFUSED = 1u << 2, /* Acceptor: another process with the dialler's node
					   * id and another incarnation is live; closing. */
	WIRE_HANDSHAKE_AUTH_FRAMES = 1u << 3, /* With AUTH: role-bound proofs, and every frame
					       * carries a tag (shard/auth.c). */
	WIRE_HANDSHAKE_ADDR = 1u << 4, /* Dialler: an address note (WIRE_ADDR_NOTE_SIZE bytes,
					* its client address) follows the handshake. */
	WIRE_HANDSHAKE_FLAGS = WIRE_HANDSHAKE_AUTH | WIRE_HANDSHAKE_PROBE | WIRE_HANDSHAKE_REFUSED |
			       WIRE_HANDSHAKE_AUTH_FRAMES | WIRE_HANDSHAKE_ADDR,
};

struct wire_handshake {
	uint32_t version;
	uint32_t flags; /* enum wire_handshake_flags */
	uint64_t cluster_id;
	uint64_t node_id;
	uint32_t shard_index;
	uint32_t shard_count;
	uint64_t incarnation; /* The sender's data directory's (shard/datadir.h). */
};

struct wire_frame_header {
	uint32_t body_size;
	uint32_t kind;
	uint64_t checksum;
};

/* Write the handshake into buf (WIRE_HANDSHAKE_SIZE bytes). */
void wire_handshake_encode(const struct wire_handshake *hs, uint8_t *buf);
/* Returns 0, or -EPROTO for a bad magic, version or checksum. */
int wire_handshake_decode(struct wire_handshake *hs, const uint8_t *buf);

/* The address note: u32 length | that many bytes of text (printable, at
 * most WIRE_ADDR_NOTE_TEXT_MAX) | zeros | u64 XXH3-64 of the 120 bytes
 * before it. */
#define WIRE_ADDR_NOTE_SIZE     128
#define WIRE_ADDR_NOTE_TEXT_MAX 115

/* Write text (at most WIRE_ADDR_NOTE_TEXT_MAX bytes; longer is cut) into buf. */
void wire_addr_note_encode(const char *text, uint8_t *buf);
/* Decode the note into text (WIRE_ADDR_NOTE_TEXT_MAX + 1 bytes, NUL
 * terminated). Returns 0, or -EPROTO for a bad length, byte or checksum. */
int wire_addr_note_decode(const uint8_t *buf, char *text);

/* Bytes msg takes inside a frame body. */
size_t wire_msg_size(const struct raft_msg *msg);
/* Encode msg at buf (wire_msg_size(msg) bytes). Payloads of NORMAL entries are
 * left out when msg carries RAFT_MSG_FLAG_METADATA (for witnesses). */
size_t wire_msg_encode(const struct raft_msg *msg, uint8_t *buf);

/* Decode one message from buf of size bytes. entries (capacity entries_cap)
 * receives the entries, whose payloads point into buf; snapshot receives the
 * snapshot meta of a SNAPSHOT message. *used gets the bytes consumed.
 * Returns 0, -EPROTO (malformed, or an entries count the bytes cannot hold),
 * -E2BIG (more entries than entries_cap: grow entries and decode again). */
int wire_msg_decode(const uint8_t *buf, size_t size, size_t *used, struct raft_msg *msg,
		    struct raft_entry *entries, uint32_t entries_cap,
		    struct raft_snapshot_meta *snapshot);

/* Write a chunk header (WIRE_CHUNK_HEADER_SIZE bytes); the data goes after it. */
void wire_chunk_encode(const struct wire_chunk *chunk, uint8_t *buf);
/* Decode a chunk frame's body. Returns 0 or -EPROTO. */
int wire_chunk_decode(struct wire_chunk *chunk, const uint8_t *body, size_t size);

/* Whether msg travels as a compact beat rather than a full message. */
bool wire_msg_is_beat(const struct raft_msg *msg);
/* Write a HEARTBEAT or HEARTBEAT_RESP as a WIRE_BEAT_SIZE beat. */
void wire_beat_encode(const struct raft_msg *msg, uint8_t *buf);
/* Decode beat i of a heartbeats body sent by from to to. Returns 0 or -EPROTO. */
int wire_beat_decode(const uint8_t *beat, uint64_t from, uint64_t to, struct raft_msg *msg);

/* Seal a frame whose body (body_size bytes) follows the header at frame. */
void wire_frame_seal(uint8_t *frame, uint32_t kind, uint32_t body_size);
/* Check a frame header (from WIRE_FRAME_HEADER_SIZE bytes). Returns 0, or
 * -EMSGSIZE when the body exceeds WIRE_FRAME_SIZE_MAX, -EPROTO for an
 * unknown kind. */
int wire_frame_header_decode(struct wire_frame_header *header, const uint8_t *buf);
/* Verify the body against the header's checksum. Returns 0 or -EBADMSG. */
int wire_frame_verify(const struct wire_frame_header *header, const uint8_t *body);

#endif /* SHARD_WIRE_H */
