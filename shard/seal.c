/* Sealed peer frames (TLS mode).
 *
 * After the TLS handshake (shard/tls.c) the dialler's frames are sealed
 * with the key both sides exported from it. Frame n (counted from 0 on the
 * connection) is sealed with AES-256-GCM:
 *     nonce  u64 n little-endian, then 4 zero bytes
 *     AAD    the frame header's first 8 bytes (body_size, kind)
 *     text   the body, encrypted in place
 *     tag    16 bytes right after the body (SHARD_FRAME_TAG_ROOM)
 * and the header's checksum (shard/wire.c) is then computed over the
 * encrypted body, so the header says nothing about the plaintext. The
 * receiver checks the checksum, then opens the frame with the next n; any
 * failure closes the connection before a byte of the frame is believed. A
 * forged, altered, replayed, reordered, dropped or transplanted frame fails:
 * keys differ per connection (exported from each TLS session) and the
 * counter per frame, so no (key, nonce) pair repeats. The cipher context is
 * keyed once per connection; a frame costs one AEAD pass and no allocation.
 * The CPU's AES instructions (AES-NI, VAES) make that pass cheap. */
#include "shard/seal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "base/assert.h"
#include "base/le.h"
#include "shard/wire.h"

#define SEAL_NONCE_SIZE 12
#define SEAL_AAD_SIZE   8 /* body_size and kind: the header less its checksum. */

_Static_assert(WIRE_FRAME_HEADER_SIZE >= SEAL_AAD_SIZE, "the header holds the AAD");

int seal_init(struct seal *seal, const uint8_t *key, bool encrypt)
{
	int ok;

	*seal = (struct seal){.ctx = EVP_CIPHER_CTX_new()};
	if (seal->ctx == NULL)
		return -ENOMEM;
	ok = encrypt ? EVP_EncryptInit_ex(seal->ctx, EVP_aes_256_gcm(), NULL, key, NULL)
		     : EVP_DecryptInit_ex(seal->ctx, EVP_aes_256_gcm(), NULL, key, NULL);
	if (ok != 1) {
		EVP_CIPHER_CTX_free(seal->ctx);
		seal->ctx = NULL;
		return -ENOMEM;
	}
	return 0;
}

void seal_deinit(struct seal *seal)
{
	EVP_CIPHER_CTX_free(seal->ctx); /* Clears the key schedule. */
	seal->ctx = NULL;
}

static void seal_nonce(uint8_t *nonce, uint64_t n)
{
	memset(nonce, 0, SEAL_NONCE_SIZE);
	le_put64(nonce, n);
}

void seal_frame(struct seal *seal, uint8_t *frame, uint32_t kind, uint32_t body_size, uint8_t *tag)
{
	uint8_t nonce[SEAL_NONCE_SIZE], *body = frame + WIRE_FRAME_HEADER_SIZE;
	int len = 0, ok;

	ASSERT(body_size <= WIRE_FRAME_SIZE_MAX); /* Fits an int. */
	seal_nonce(nonce, seal->frames++);
	ok = EVP_EncryptInit_ex(seal->ctx, NULL, NULL, NULL, nonce) == 1 &&
	     EVP_EncryptUpdate(seal->ctx, NULL, &len, frame, SEAL_AAD_SIZE) == 1 &&
	     EVP_EncryptUpdate(seal->ctx, body, &len, body, (int)body_size) == 1 &&
	     EVP_EncryptFinal_ex(seal->ctx, body + len, &len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(seal->ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, tag) == 1;
	ASSERT(ok); /* GCM with a keyed context and in-range sizes cannot fail. */
	wire_frame_seal(frame, kind, body_size); /* The checksum of what is sent. */
}

bool seal_open(struct seal *seal, uint8_t *frame, uint32_t body_size, const uint8_t *tag)
{
	uint8_t nonce[SEAL_NONCE_SIZE], *body = frame + WIRE_FRAME_HEADER_SIZE;
	int len = 0;

	if (body_size > WIRE_FRAME_SIZE_MAX)
		return false;
	seal_nonce(nonce, seal->frames);
	if (EVP_DecryptInit_ex(seal->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(seal->ctx, NULL, &len, frame, SEAL_AAD_SIZE) != 1 ||
	    EVP_DecryptUpdate(seal->ctx, body, &len, body, (int)body_size) != 1 ||
	    EVP_CIPHER_CTX_ctrl(seal->ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(seal->ctx, body + len, &len) != 1)
		return false;
	seal->frames++;
	return true;
}
