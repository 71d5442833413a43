/* Sealed peer frames (TLS mode): each frame's body encrypted in place with
 * AES-256-GCM under the connection's exported key (shard/tls.c), its header
 * authenticated, its 16-byte tag after it. See shard/seal.c. */
#ifndef SHARD_SEAL_H
#define SHARD_SEAL_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_SIZE 32
#define SEAL_TAG_SIZE 16

/* One direction of one connection: the cipher keyed once, and the frames
 * sealed or opened so far (the next frame's nonce). */
struct seal {
	EVP_CIPHER_CTX *ctx;
	uint64_t frames;
};

/* Key seal for sealing (encrypt) or opening frames. Returns 0 or -ENOMEM. */
int seal_init(struct seal *seal, const uint8_t *key, bool encrypt);
void seal_deinit(struct seal *seal);
/* Seal the frame at frame: its WIRE_FRAME_HEADER_SIZE header (already
 * sealed by wire_frame_seal), then body_size bytes of body, encrypted in
 * place; the tag goes to tag (SEAL_TAG_SIZE bytes, room the caller
 * reserved after the body). The header's checksum is then recomputed over
 * the encrypted body. Never allocates. */
void seal_frame(struct seal *seal, uint8_t *frame, uint32_t kind, uint32_t body_size, uint8_t *tag);
/* Check and decrypt in place the next frame received (header, body_size
 * bytes of body, then tag). Returns false when it is not the next frame
 * sealed with this key (forged, altered, replayed, reordered, or from
 * another connection); the body is then garbage. Never allocates. */
bool seal_open(struct seal *seal, uint8_t *frame, uint32_t body_size, const uint8_t *tag);

#endif /* SHARD_SEAL_H */
