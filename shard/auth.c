/* Shared-key peer authentication (when fl_node_config.auth_key is set).
 *
 * HANDSHAKE. After the two handshakes (shard/wire.c), each side sends a
 * 32-byte random challenge, then its proof:
 *     HMAC-SHA-512-256(key, label(role) | cluster_id | challenge[dialler] |
 *                      challenge[acceptor] | handshake[dialler] |
 *                      handshake[acceptor])
 * where label is "flotilla/1 proof dialler " or "flotilla/1 proof acceptor"
 * (25 bytes each), cluster_id a little-endian u64, and the handshakes the
 * bytes sent on the wire (they hold each side's node id, shard and
 * incarnation). Everything is in a fixed order, whoever computes it, and the
 * label says which side did: a proof one side computes is never the proof
 * of the other side, so a node cannot be made to answer its own challenge
 * for an attacker (a reflection); and the two fresh challenges tie it to
 * one connection.
 *
 * FRAMES. Then each direction has its own session key:
 *     BLAKE2b-256(key = the cluster key,
 *                 label(sender) | cluster_id | the challenges | the handshakes)
 * with label "flotilla/1 data dialler  " or "flotilla/1 data acceptor ".
 * Frame n (counted from 0 on each direction of each connection) carries a
 * 16-byte tag after its body: the ChaCha20-Poly1305 (IETF) tag of an empty
 * message with the frame's header and body as associated data, the session
 * key, and nonce n (u64 little-endian, then 4 zero bytes). A frame is
 * accepted only with the tag of the next n: a forged, altered, replayed,
 * reordered, dropped or transplanted frame (from another connection or the
 * other direction) fails, and the receiver closes the connection.
 *
 * Session keys never repeat (fresh challenges), so neither do (key, nonce)
 * pairs. Connections are one-way today (shard/net.c): only the dialler's
 * session key is used; the acceptor's is defined for a reply direction. */
#include "shard/auth.h"

#include <sodium.h>
#include <string.h>

#include "base/assert.h"
#include "base/le.h"
#include "shard/wire.h"

#define AUTH_LABEL_SIZE 25

_Static_assert(AUTH_KEY_SIZE == crypto_auth_KEYBYTES, "the cluster key is a crypto_auth key");
_Static_assert(AUTH_PROOF_SIZE == crypto_auth_BYTES, "a proof is one crypto_auth tag");
_Static_assert(AUTH_TAG_SIZE == crypto_aead_chacha20poly1305_ietf_ABYTES, "a Poly1305 tag");
_Static_assert(AUTH_KEY_SIZE == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "session key size");
_Static_assert(AUTH_KEY_SIZE >= crypto_generichash_KEYBYTES_MIN &&
		   AUTH_KEY_SIZE <= crypto_generichash_KEYBYTES_MAX,
	       "the cluster key keys BLAKE2b");

static const char auth_labels[2][2][AUTH_LABEL_SIZE + 1] = {
    {"flotilla/1 proof dialler ", "flotilla/1 proof acceptor"},
    {"flotilla/1 data dialler  ", "flotilla/1 data acceptor "},
};

#define AUTH_MESSAGE_SIZE (AUTH_LABEL_SIZE + 8 + 2 * AUTH_CHALLENGE_SIZE + 2 * WIRE_HANDSHAKE_SIZE)

/* What a proof or a session key is computed over: the label, then the
 * transcript in its fixed order. */
static void auth_message(uint8_t *msg, const char *label, const struct auth_transcript *t)
{
	uint8_t *p = msg + AUTH_LABEL_SIZE + 8;

	memcpy(msg, label, AUTH_LABEL_SIZE);
	le_put64(msg + AUTH_LABEL_SIZE, t->cluster_id);
	for (int side = AUTH_DIALLER; side <= AUTH_ACCEPTOR; side++, p += AUTH_CHALLENGE_SIZE)
		memcpy(p, t->challenge[side], AUTH_CHALLENGE_SIZE);
	for (int side = AUTH_DIALLER; side <= AUTH_ACCEPTOR; side++, p += WIRE_HANDSHAKE_SIZE)
		memcpy(p, t->handshake[side], WIRE_HANDSHAKE_SIZE);
	ASSERT(p == msg + AUTH_MESSAGE_SIZE);
}

void auth_proof(uint8_t *proof, const uint8_t *key, enum auth_role role,
		const struct auth_transcript *t)
{
	uint8_t msg[AUTH_MESSAGE_SIZE];

	ASSERT(role == AUTH_DIALLER || role == AUTH_ACCEPTOR);
	auth_message(msg, auth_labels[0][role], t);
	crypto_auth(proof, msg, sizeof(msg), key);
}

bool auth_proof_check(const uint8_t *got, const uint8_t *key, enum auth_role role,
		      const struct auth_transcript *t)
{
	uint8_t want[AUTH_PROOF_SIZE];

	auth_proof(want, key, role, t);
	return sodium_memcmp(want, got, sizeof(want)) == 0;
}

void auth_session_key(uint8_t *session_key, const uint8_t *key, enum auth_role sender,
		      const struct auth_transcript *t)
{
	uint8_t msg[AUTH_MESSAGE_SIZE];

	ASSERT(sender == AUTH_DIALLER || sender == AUTH_ACCEPTOR);
	auth_message(msg, auth_labels[1][sender], t);
	crypto_generichash(session_key, AUTH_KEY_SIZE, msg, sizeof(msg), key, AUTH_KEY_SIZE);
}

static void auth_nonce(uint8_t *nonce, uint64_t counter)
{
	memset(nonce, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
	le_put64(nonce, counter);
}

void auth_frame_tag(uint8_t *tag, const uint8_t *session_key, uint64_t counter,
		    const uint8_t *frame, size_t size)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], none = 0;
	unsigned long long tag_size = 0;

	auth_nonce(nonce, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(&none, tag, &tag_size, &none, 0, frame,
							   size, NULL, nonce, session_key);
	ASSERT(tag_size == AUTH_TAG_SIZE);
}

bool auth_frame_check(const uint8_t *tag, const uint8_t *session_key, uint64_t counter,
		      const uint8_t *frame, size_t size)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], none = 0;

	auth_nonce(nonce, counter);
	return crypto_aead_chacha20poly1305_ietf_decrypt_detached(&none, NULL, &none, 0, tag, frame,
								  size, nonce, session_key) == 0;
}
