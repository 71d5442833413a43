/* Mutual TLS 1.3 for peer connections (OpenSSL 3): the node's TLS context
 * (the cluster CA, its certificate and key, reloadable), the handshake of
 * one connection driven against a deadline, the node id a certificate
 * names, and the key each connection's frames are sealed with afterwards
 * (shard/seal.c). See shard/tls.c for the design and shard/net.c for where
 * it runs. */
#ifndef SHARD_TLS_H
#define SHARD_TLS_H

#include <openssl/types.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_PATH_SIZE 4096
#define TLS_KEY_SIZE  32  /* The key a connection's frames are sealed with. */
#define TLS_WHY_SIZE  256 /* Room for a refusal's or a failure's reason. */
#define TLS_CN_PREFIX "node-"
#define TLS_ROLE_NODE "node" /* The subject's OU of a node certificate. */

/* The node's TLS context. New connections take a reference to the current
 * SSL_CTX under lock; a reload swaps it, and connections under way keep the
 * one they took. */
struct tls {
	pthread_mutex_t lock;
	SSL_CTX *ctx;
	uint64_t node_id;
	char ca_file[TLS_PATH_SIZE], cert_file[TLS_PATH_SIZE], key_file[TLS_PATH_SIZE];
	char serial[64]; /* Of the certificate in ctx, for the log. */
};

/* Why a handshake or a certificate was refused: one code per cause, so that
 * log lines can be rate-limited per cause and source. */
enum tls_refusal {
	TLS_REFUSAL_NONE = 0,
	TLS_REFUSAL_PLAINTEXT, /* The first bytes are not a TLS record. */
	TLS_REFUSAL_ISSUER,    /* A certificate from another CA, or an unknown issuer. */
	TLS_REFUSAL_EXPIRED,   /* Expired or not yet valid. */
	TLS_REFUSAL_NO_CERT,   /* The peer sent no certificate. */
	TLS_REFUSAL_NODE_ID,   /* Not a node certificate, or for another node id. */
	TLS_REFUSAL_TIMEOUT,   /* The whole handshake took longer than its deadline. */
	TLS_REFUSAL_OTHER,     /* Another TLS failure (the text says which). */
	TLS_REFUSAL_COUNT,
};

/* Load the CA, certificate and key files (copied) for node node_id. Returns
 * 0, or ERR_TLS with why filled in: a file unreadable, a key that does not
 * match the certificate, or a certificate whose subject is not OU node and
 * CN node-<node_id>. */
int tls_init(struct tls *tls, const char *ca_file, const char *cert_file, const char *key_file,
	     uint64_t node_id, char *why, size_t why_size);
void tls_deinit(struct tls *tls);
/* Read the three files again; connections made from then on use them.
 * Returns 0 (what says what was loaded) or ERR_TLS (why in what: the old
 * files stay in use). Any thread. */
int tls_reload(struct tls *tls, char *what, size_t what_size);

/* A TLS session over the non-blocking socket fd, as the dialler (client) or
 * the acceptor (server). NULL when out of memory. Free with tls_session_free. */
SSL *tls_session_new(struct tls *tls, int fd, bool dialler);
/* Frees the session and nothing else: no close_notify, the socket stays open
 * (after the handshake the connection carries sealed frames, not TLS). */
void tls_session_free(SSL *ssl);

/* A channel of one connection's set-up: its socket, its TLS session (NULL:
 * plaintext) and the deadline of the whole set-up (CLOCK_MONOTONIC ms);
 * stop, when set, ends waits early once true. */
struct tls_chan {
	int fd;
	SSL *ssl;
	uint64_t deadline_ms;
	const _Atomic bool *stop;
};

uint64_t tls_now_ms(void);
/* Wait until the acceptor's first byte arrives and say whether it opens a TLS
 * handshake record. Returns 0 (TLS), TLS_REFUSAL_PLAINTEXT, or -errno
 * (-ETIMEDOUT at the deadline, -ECONNRESET when closed). */
int tls_chan_sniff(struct tls_chan *ch);
/* Run the handshake of ch->ssl to its end. Returns 0, or the tls_refusal
 * with why filled in, or -ETIMEDOUT / -ECONNRESET / -errno. */
int tls_chan_handshake(struct tls_chan *ch, char *why, size_t why_size);
/* Read or write exactly size bytes through TLS (or plaintext) by the
 * deadline. Returns 0, -ETIMEDOUT, -ECONNRESET, -EPROTO (a TLS alert or
 * failure: why filled in when not NULL), or -errno. */
int tls_chan_read(struct tls_chan *ch, void *buf, size_t size, char *why, size_t why_size);
int tls_chan_write(struct tls_chan *ch, const void *buf, size_t size);

/* The node id the peer's verified certificate names (OU node, CN
 * node-<id>). Returns 0, or TLS_REFUSAL_NODE_ID with why filled in. */
int tls_peer_node_id(SSL *ssl, uint64_t *id, char *why, size_t why_size);
/* The same from a DER certificate (size bytes, untrusted: the fuzz target
 * feeds it anything). Returns 0 or TLS_REFUSAL_NODE_ID. */
int tls_der_node_id(const uint8_t *der, size_t size, uint64_t *id);

/* The key of the frames the dialler sends on this connection, exported from
 * the finished handshake (RFC 8446 §7.5). Returns 0 or -EPROTO. */
int tls_frame_key(SSL *ssl, uint8_t *key);

#endif /* SHARD_TLS_H */
