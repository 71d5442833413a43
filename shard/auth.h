/* Shared-key peer authentication: the proofs the two sides of a peer
 * connection exchange in its handshake, the session keys derived from them,
 * and the tag that authenticates every frame afterwards (see shard/auth.c
 * for the protocol and shard/net.c for where it runs). All of it is
 * libsodium: HMAC-SHA-512-256 (crypto_auth) for the proofs, keyed BLAKE2b
 * (crypto_generichash) for the session keys, ChaCha20-Poly1305 (IETF) with
 * the frame as associated data for the tags. */
#ifndef SHARD_AUTH_H
#define SHARD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_SIZE       32 /* The cluster key and each session key. */
#define AUTH_CHALLENGE_SIZE 32
#define AUTH_PROOF_SIZE     32 /* crypto_auth_BYTES */
#define AUTH_TAG_SIZE       16 /* After each frame's body when the key is on. */

/* Who computed a proof, or who sends with a session key. */
enum auth_role {
	AUTH_DIALLER = 0,
	AUTH_ACCEPTOR = 1,
};

/* What both sides of one connection saw of its handshake, indexed by role:
 * the challenges and the handshakes as sent on the wire
 * (WIRE_HANDSHAKE_SIZE bytes each). Borrowed for the call. */
struct auth_transcript {
	uint64_t cluster_id;
	const uint8_t *challenge[2];
	const uint8_t *handshake[2];
};

/* The proof that the side in role holds key, over the whole transcript. A
 * proof of one role never equals one of the other role, nor one of another
 * connection (other challenges or handshakes). */
void auth_proof(uint8_t *proof, const uint8_t *key, enum auth_role role,
		const struct auth_transcript *t);
/* Whether got is the proof role must send (constant time). */
bool auth_proof_check(const uint8_t *got, const uint8_t *key, enum auth_role role,
		      const struct auth_transcript *t);

/* The key that authenticates the frames the side in sender role sends on
 * this connection. */
void auth_session_key(uint8_t *session_key, const uint8_t *key, enum auth_role sender,
		      const struct auth_transcript *t);

/* The tag of the counter-th frame (from 0) sent with session_key: frame is
 * its header and body, size bytes. */
void auth_frame_tag(uint8_t *tag, const uint8_t *session_key, uint64_t counter,
		    const uint8_t *frame, size_t size);
/* Whether tag is that frame's (constant time). */
bool auth_frame_check(const uint8_t *tag, const uint8_t *session_key, uint64_t counter,
		      const uint8_t *frame, size_t size);

#endif /* SHARD_AUTH_H */
