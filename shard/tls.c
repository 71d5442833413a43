/* Mutual TLS 1.3 between nodes (when fl_node_config names tls_ca_file,
 * tls_cert_file and tls_key_file).
 *
 * THE CONTEXT. One SSL_CTX per node: TLS 1.3 only, the cluster CA as the
 * only trust anchor, the node's certificate and key, SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT on both sides (each side verifies the
 * other), no session tickets and no session cache (every connection runs a
 * full handshake; nothing of a session outlives it). At start the node's own
 * certificate must name it: OU node and CN node-<its id>, and the key must
 * match. tls_reload() builds a new context from the same files and swaps it
 * in under the lock: a handshake under way keeps the reference it took.
 *
 * ONE CONNECTION (shard/net.c drives it). The socket is non-blocking while
 * it is set up; every wait is a poll() bounded by the set-up's one deadline
 * (not a per-read time limit: a peer sending a byte at a time runs out of
 * time like a silent one). The acceptor first peeks at the first byte: a TLS
 * connection opens with a handshake record (content type 22); anything else
 * is a plaintext peer, refused as such. Then the TLS handshake; the wire
 * handshake (shard/wire.c) travels inside TLS; and both sides export one key
 * from the TLS session (RFC 8446 §7.5 exporter, label
 * "EXPORTER-flotilla-peer-frames", context "dialler to acceptor") with which
 * the dialler seals its frames (shard/seal.c). The TLS session itself is not
 * used after the set-up: it is freed without a close_notify, and from then
 * on the socket carries sealed frames that the shard's io_uring sends and
 * receives as they are, so the data path stays zero-copy with one AEAD pass
 * in place. That is safe because nothing is in flight in TLS when the
 * sides switch: the acceptor's TLS answer is the last TLS record either side
 * sends, the dialler reads it before it sends a frame, and no tickets follow
 * the handshake.
 *
 * THE PEER'S CERTIFICATE must chain to the CA (OpenSSL checks the chain and
 * the dates) and name a node: OU node, CN node-<id> with id a decimal node
 * id. shard/net.c then binds that id: the acceptor to the node id of the
 * handshake, the dialler to the peer it dialled. Failures are classified
 * (enum tls_refusal) so the log says plainly what was wrong. */
#include "shard/tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/assert.h"
#include "base/err.h"

#define TLS_EXPORT_LABEL     "EXPORTER-flotilla-peer-frames"
#define TLS_EXPORT_CONTEXT   "dialler to acceptor"
#define TLS_RECORD_HANDSHAKE 22  /* The content type a TLS connection opens with. */
#define TLS_POLL_SLICE_MS    100 /* How often a wait looks at ch->stop. */

uint64_t tls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* OpenSSL's last error as text (and the queue emptied). */
static void tls_error_text(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, size, "no detail");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
}

/* The node id in "node-<id>": decimal digits, no sign, no leading zero, not
 * 0, within 64 bits. Returns false otherwise. */
static bool tls_cn_node_id(const unsigned char *cn, int size, uint64_t *id)
{
	size_t prefix = strlen(TLS_CN_PREFIX);
	uint64_t v = 0;

	if (size <= (int)prefix || memcmp(cn, TLS_CN_PREFIX, prefix) != 0 || cn[prefix] == '0')
		return false;
	for (int i = (int)prefix; i < size; i++) {
		if (cn[i] < '0' || cn[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(cn[i] - '0');
	}
	*id = v;
	return v != 0;
}

/* The text of the only entry nid of name, or NULL (none, or more than one). */
static const ASN1_STRING *tls_name_entry(const X509_NAME *name, int nid)
{
	int at = X509_NAME_get_index_by_NID(name, nid, -1);

	if (at < 0 || X509_NAME_get_index_by_NID(name, nid, at) >= 0)
		return NULL;
	return X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
}

static int tls_cert_node_id(const X509 *cert, uint64_t *id, char *why, size_t why_size)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	const ASN1_STRING *ou = name ? tls_name_entry(name, NID_organizationalUnitName) : NULL;
	const ASN1_STRING *cn = name ? tls_name_entry(name, NID_commonName) : NULL;
	size_t role = strlen(TLS_ROLE_NODE);

	if (ou == NULL || ASN1_STRING_length(ou) != (int)role ||
	    memcmp(ASN1_STRING_get0_data(ou), TLS_ROLE_NODE, role) != 0) {
		snprintf(why, why_size, "its certificate is not a node certificate (OU is not %s)",
			 TLS_ROLE_NODE);
		return TLS_REFUSAL_NODE_ID;
	}
	if (cn == NULL || !tls_cn_node_id(ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn), id)) {
		snprintf(why, why_size, "its certificate's CN is not %s<node id>", TLS_CN_PREFIX);
		return TLS_REFUSAL_NODE_ID;
	}
	return 0;
}

int tls_der_node_id(const uint8_t *der, size_t size, uint64_t *id)
{
	const unsigned char *p = der;
	X509 *cert;
	char why[TLS_WHY_SIZE];
	int rv;

	if (size > LONG_MAX)
		return TLS_REFUSAL_NODE_ID;
	cert = d2i_X509(NULL, &p, (long)size);
	if (cert == NULL) {
		ERR_clear_error();
		return TLS_REFUSAL_NODE_ID;
	}
	rv = tls_cert_node_id(cert, id, why, sizeof(why));
	X509_free(cert);
	return rv;
}

int tls_peer_node_id(SSL *ssl, uint64_t *id, char *why, size_t why_size)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);

	if (cert == NULL) {
		snprintf(why, why_size, "no certificate");
		return TLS_REFUSAL_NO_CERT;
	}
	return tls_cert_node_id(cert, id, why, why_size);
}

/* Whether path opens for reading; else why says so, with the errno's text. */
static bool tls_file_readable(const char *what, const char *path, char *why, size_t why_size)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, why_size, "cannot read the %s file %s: %s", what, path,
			 strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/* A new context from the three files, checked against node_id. Returns it,
 * or NULL with why filled in. */
static SSL_CTX *tls_ctx_load(const struct tls *tls, char *serial, size_t serial_size, char *why,
			     size_t why_size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	char detail[TLS_WHY_SIZE];
	uint64_t id = 0;
	X509 *cert;

	if (ctx == NULL) {
		snprintf(why, why_size, "cannot make a TLS context (out of memory)");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (!tls_file_readable("CA", tls->ca_file, why, why_size) ||
	    !tls_file_readable("certificate", tls->cert_file, why, why_size) ||
	    !tls_file_readable("key", tls->key_file, why, why_size))
		goto err;
	if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
		tls_error_text(detail, sizeof(detail));
		snprintf(why, why_size, "cannot read the CA file %s: %s", tls->ca_file, detail);
		goto err;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1) {
		tls_error_text(detail, sizeof(detail));
		snprintf(why, why_size, "cannot read the certificate file %s: %s", tls->cert_file,
			 detail);
		goto err;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(why, why_size, "the key %s does not match the certificate %s",
				 tls->key_file, tls->cert_file);
			goto err;
		}
		tls_error_text(detail, sizeof(detail));
		snprintf(why, why_size, "cannot read the key file %s: %s", tls->key_file, detail);
		goto err;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(why, why_size, "the key %s does not match the certificate %s",
			 tls->key_file, tls->cert_file);
		goto err;
	}
	cert = SSL_CTX_get0_certificate(ctx);
	if (tls_cert_node_id(cert, &id, detail, sizeof(detail)) != 0) {
		snprintf(why, why_size,
			 "the certificate %s is not this node's: %s (it must name OU %s and CN "
			 "%s%llu)",
			 tls->cert_file, detail + strlen("its certificate "), TLS_ROLE_NODE,
			 TLS_CN_PREFIX, (unsigned long long)tls->node_id);
		goto err;
	}
	if (id != tls->node_id) {
		snprintf(why, why_size,
			 "the certificate %s is for node %llu, not this node %llu (its CN must be "
			 "%s%llu)",
			 tls->cert_file, (unsigned long long)id, (unsigned long long)tls->node_id,
			 TLS_CN_PREFIX, (unsigned long long)tls->node_id);
		goto err;
	}
	{
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
		char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

		snprintf(serial, serial_size, "%s", hex != NULL ? hex : "?");
		OPENSSL_free(hex);
		BN_free(bn);
	}
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_init(struct tls *tls, const char *ca_file, const char *cert_file, const char *key_file,
	     uint64_t node_id, char *why, size_t why_size)
{
	*tls = (struct tls){.node_id = node_id};
	if (snprintf(tls->ca_file, sizeof(tls->ca_file), "%s", ca_file) >=
		(int)sizeof(tls->ca_file) ||
	    snprintf(tls->cert_file, sizeof(tls->cert_file), "%s", cert_file) >=
		(int)sizeof(tls->cert_file) ||
	    snprintf(tls->key_file, sizeof(tls->key_file), "%s", key_file) >=
		(int)sizeof(tls->key_file)) {
		snprintf(why, why_size, "a TLS file name is longer than %d bytes",
			 TLS_PATH_SIZE - 1);
		return ERR_TLS;
	}
	tls->ctx = tls_ctx_load(tls, tls->serial, sizeof(tls->serial), why, why_size);
	if (tls->ctx == NULL)
		return ERR_TLS;
	pthread_mutex_init(&tls->lock, NULL);
	return 0;
}

void tls_deinit(struct tls *tls)
{
	SSL_CTX_free(tls->ctx);
	tls->ctx = NULL;
	pthread_mutex_destroy(&tls->lock);
}

int tls_reload(struct tls *tls, char *what, size_t what_size)
{
	char serial[sizeof(tls->serial)], why[TLS_WHY_SIZE + 3 * TLS_PATH_SIZE];
	SSL_CTX *ctx = tls_ctx_load(tls, serial, sizeof(serial), why, sizeof(why)), *old;

	if (ctx == NULL) {
		snprintf(what, what_size, "%s; the certificate in use stays (serial %s)", why,
			 tls->serial);
		return ERR_TLS;
	}
	pthread_mutex_lock(&tls->lock);
	old = tls->ctx;
	tls->ctx = ctx;
	memcpy(tls->serial, serial, sizeof(serial));
	pthread_mutex_unlock(&tls->lock);
	SSL_CTX_free(old); /* Sessions made from it hold their own references. */
	snprintf(what, what_size, "loaded %s (serial %s) with CA %s for new connections",
		 tls->cert_file, serial, tls->ca_file);
	return 0;
}

SSL *tls_session_new(struct tls *tls, int fd, bool dialler)
{
	SSL *ssl;

	pthread_mutex_lock(&tls->lock);
	ssl = SSL_new(tls->ctx); /* Takes its own reference to the context. */
	pthread_mutex_unlock(&tls->lock);
	if (ssl == NULL)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) { /* A socket BIO that never closes fd. */
		SSL_free(ssl);
		return NULL;
	}
	if (dialler)
		SSL_set_connect_state(ssl);
	else
		SSL_set_accept_state(ssl);
	return ssl;
}

void tls_session_free(SSL *ssl)
{
	SSL_free(ssl);
	ERR_clear_error();
}

/* Wait for events on ch->fd until the deadline. Returns 0, -ETIMEDOUT, or
 * -ECANCELED (ch->stop). */
static int tls_chan_wait(struct tls_chan *ch, short events)
{
	for (;;) {
		struct pollfd pfd = {.fd = ch->fd, .events = events};
		uint64_t now = tls_now_ms();
		int slice, rv;

		if (ch->stop != NULL && atomic_load(ch->stop))
			return -ECANCELED;
		if (now >= ch->deadline_ms)
			return -ETIMEDOUT;
		slice = ch->deadline_ms - now > TLS_POLL_SLICE_MS ? TLS_POLL_SLICE_MS
								  : (int)(ch->deadline_ms - now);
		rv = poll(&pfd, 1, slice);
		if (rv > 0)
			return 0;
		if (rv < 0 && errno != EINTR)
			return -errno;
	}
}

int tls_chan_sniff(struct tls_chan *ch)
{
	for (;;) {
		uint8_t first;
		ssize_t n = recv(ch->fd, &first, 1, MSG_PEEK);
		int rv;

		if (n == 1)
			return first == TLS_RECORD_HANDSHAKE ? 0 : TLS_REFUSAL_PLAINTEXT;
		if (n == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		rv = tls_chan_wait(ch, POLLIN);
		if (rv != 0)
			return rv;
	}
}

/* Classify a failed handshake. */
static int tls_failure(SSL *ssl, char *why, size_t why_size)
{
	long verify = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_last_error();
	char detail[TLS_WHY_SIZE];

	switch (verify) {
	case X509_V_OK:
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(why, why_size, "its certificate %s",
			 verify == X509_V_ERR_CERT_HAS_EXPIRED ? "expired" : "is not valid yet");
		ERR_clear_error();
		return TLS_REFUSAL_EXPIRED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		snprintf(why, why_size, "its certificate is from another CA (unknown issuer: %s)",
			 X509_verify_cert_error_string(verify));
		ERR_clear_error();
		return TLS_REFUSAL_ISSUER;
	default:
		snprintf(why, why_size, "its certificate failed verification: %s",
			 X509_verify_cert_error_string(verify));
		ERR_clear_error();
		return TLS_REFUSAL_OTHER;
	}
	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		snprintf(why, why_size, "no certificate (TLS requires one of each peer)");
		ERR_clear_error();
		return TLS_REFUSAL_NO_CERT;
	}
	tls_error_text(detail, sizeof(detail));
	snprintf(why, why_size, "TLS handshake failed: %s", detail);
	return TLS_REFUSAL_OTHER;
}

/* After an SSL call returned rv: wait as it asks, or end. Returns 1 to call
 * again, 0 when the call is done, or an error as tls_chan_handshake's. */
static int tls_chan_step(struct tls_chan *ch, int rv, char *why, size_t why_size)
{
	int err = SSL_get_error(ch->ssl, rv), wait;

	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		wait = tls_chan_wait(ch, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT);
		return wait == 0 ? 1 : wait;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_last_error() == 0)
			return errno != 0 ? -errno : -ECONNRESET;
		/* Fall through: a protocol failure after all. */
		/* fallthrough */
	default:
		if (why != NULL)
			return tls_failure(ch->ssl, why, why_size);
		ERR_clear_error();
		return -EPROTO;
	}
}

int tls_chan_handshake(struct tls_chan *ch, char *why, size_t why_size)
{
	for (;;) {
		int rv;

		ERR_clear_error();
		errno = 0;
		rv = SSL_do_handshake(ch->ssl);
		if (rv == 1)
			return 0;
		rv = tls_chan_step(ch, rv, why, why_size);
		if (rv != 1)
			return rv == 0 ? -EPROTO : rv;
	}
}

/* Plaintext: recv or send until done or the deadline. */
static int tls_chan_plain(struct tls_chan *ch, void *buf, size_t size, bool writing)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = writing ? send(ch->fd, (char *)buf + done, size - done, MSG_NOSIGNAL)
				    : recv(ch->fd, (char *)buf + done, size - done, 0);
		int rv;

		if (n == 0)
			return -ECONNRESET;
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		rv = tls_chan_wait(ch, writing ? POLLOUT : POLLIN);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int tls_chan_read(struct tls_chan *ch, void *buf, size_t size, char *why, size_t why_size)
{
	size_t done = 0;

	if (ch->ssl == NULL)
		return tls_chan_plain(ch, buf, size, false);
	while (done < size) {
		size_t n = 0;
		int rv;

		ERR_clear_error();
		errno = 0;
		rv = SSL_read_ex(ch->ssl, (char *)buf + done, size - done, &n);
		if (rv == 1) {
			done += n;
			continue;
		}
		rv = tls_chan_step(ch, rv, why, why_size);
		if (rv < 0)
			return rv;
		if (rv == 0)
			return -EPROTO;
	}
	return 0;
}

int tls_chan_write(struct tls_chan *ch, const void *buf, size_t size)
{
	size_t done = 0;

	if (ch->ssl == NULL)
		return tls_chan_plain(ch, (void *)buf, size, true);
	while (done < size) {
		size_t n = 0;
		int rv;

		ERR_clear_error();
		errno = 0;
		rv = SSL_write_ex(ch->ssl, (const char *)buf + done, size - done, &n);
		if (rv == 1) {
			done += n;
			continue;
		}
		rv = tls_chan_step(ch, rv, NULL, 0);
		if (rv < 0)
			return rv;
		if (rv == 0)
			return -EPROTO;
	}
	return 0;
}

int tls_frame_key(SSL *ssl, uint8_t *key)
{
	if (SSL_export_keying_material(
		ssl, key, TLS_KEY_SIZE, TLS_EXPORT_LABEL, strlen(TLS_EXPORT_LABEL),
		(const unsigned char *)TLS_EXPORT_CONTEXT, strlen(TLS_EXPORT_CONTEXT), 1) != 1) {
		ERR_clear_error();
		return -EPROTO;
	}
	return 0;
}
