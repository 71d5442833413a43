/* TLS on flotilla-node's client listener (--tls-ca, --tls-cert, --tls-key):
 * the server context, each connection's handshake, and reads and writes
 * through it. node_conn.c calls these at a few places and keeps its logic.
 *
 * The happy path of a connection: accepted non-blocking; the first byte is
 * peeked (a TLS record starts with 22, a handshake record; anything else is
 * a plaintext client, answered with one plaintext ERROR and closed); then
 * SSL_do_handshake() is stepped on each readiness event, the epoll interest
 * following WANT_READ and WANT_WRITE, until it completes within
 * --client-handshake-ms. TLS 1.3 only. The client must present a
 * certificate that chains to the CA (SSL_VERIFY_FAIL_IF_NO_PEER_CERT) whose
 * subject's OU is a client role, admin or data; a node certificate or any
 * other OU is refused by the verify callback, so the client gets an alert.
 * The role then decides which ops the connection may run (node_request.c).
 * The node sends one session ticket after it checked the certificate: the
 * client waits for it (tools/client_tls.c).
 *
 * Reload (SIGHUP): a new context is built from the three files; new
 * connections use it, open ones keep theirs (each SSL holds a reference).
 * A failed reload keeps the old context. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "tools/node_internal.h"

#define NODE_TLS_RECORD_HANDSHAKE 22 /* The first byte of a ClientHello's record. */

/* The reason of the last OpenSSL error, or "unknown". */
static const char *node_tls_reason(void)
{
	const char *reason = ERR_reason_error_string(ERR_peek_last_error());

	return reason != NULL ? reason : "unknown error";
}

/* Verify callback: at the leaf, note its role on the connection, and refuse
 * any that is not a client role. */
static int node_tls_verify(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	uint32_t role;

	if (!ok || X509_STORE_CTX_get_error_depth(store) != 0 || c == NULL)
		return ok;
	role = client_tls_cert_role(X509_STORE_CTX_get_current_cert(store));
	c->role = (uint8_t)role;
	if (role == CLIENT_ACCESS_ADMIN || role == CLIENT_ACCESS_DATA)
		return 1;
	X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* A server context from the three files, or NULL with why. */
static SSL_CTX *node_tls_make(const struct node_options *opt, char *why, size_t why_size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) * names;

	if (ctx == NULL) {
		snprintf(why, why_size, "%s", node_tls_reason());
		goto err;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, node_tls_verify);
	SSL_CTX_set_num_tickets(ctx, 1); /* The client waits for it: see the top. */
	if (SSL_CTX_load_verify_locations(ctx, opt->tls_ca_file, NULL) != 1) {
		snprintf(why, why_size, "--tls-ca %.200s: %s", opt->tls_ca_file, node_tls_reason());
		goto err;
	}
	names = SSL_load_client_CA_file(opt->tls_ca_file);
	if (names != NULL)
		SSL_CTX_set_client_CA_list(ctx, names);
	if (SSL_CTX_use_certificate_chain_file(ctx, opt->tls_cert_file) != 1) {
		snprintf(why, why_size, "--tls-cert %.200s: %s", opt->tls_cert_file,
			 node_tls_reason());
		goto err;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, opt->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, why_size, "--tls-key %.200s: %s", opt->tls_key_file,
			 node_tls_reason());
		goto err;
	}
	ERR_clear_error();
	return ctx;
err:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* "subject CN, valid until DATE" of ctx's certificate. */
static void node_tls_describe(SSL_CTX *ctx, char *text, size_t size)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	char cn[64] = "?";
	struct tm until;

	if (cert == NULL) {
		snprintf(text, size, "no certificate");
		return;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &until) == 1)
		snprintf(text, size, "CN %s, valid until %04d-%02d-%02d", cn, until.tm_year + 1900,
			 until.tm_mon + 1, until.tm_mday);
	else
		snprintf(text, size, "CN %s", cn);
}

int node_tls_init(struct server *s)
{
	char why[384], what[160];

	pthread_mutex_init(&s->tls_lock, NULL);
	if (!node_tls_enabled(s))
		return 0;
	s->tls_ctx = node_tls_make(&s->opt, why, sizeof(why));
	if (s->tls_ctx == NULL) {
		server_log(LOG_LEVEL_ERROR, "client TLS: %s", why);
		return -EINVAL;
	}
	node_tls_describe(s->tls_ctx, what, sizeof(what));
	server_log(LOG_LEVEL_INFO, "client TLS 1.3 on: CA %s, certificate %s (%s)",
		   s->opt.tls_ca_file, s->opt.tls_cert_file, what);
	return 0;
}

int node_tls_reload(struct server *s)
{
	char why[384], what[160];
	SSL_CTX *ctx, *old;

	if (!node_tls_enabled(s))
		return 0;
	ctx = node_tls_make(&s->opt, why, sizeof(why));
	if (ctx == NULL) {
		server_log(LOG_LEVEL_ERROR,
			   "client TLS reload failed: %s; the certificates loaded before stay",
			   why);
		return -EINVAL;
	}
	node_tls_describe(ctx, what, sizeof(what));
	pthread_mutex_lock(&s->tls_lock);
	old = s->tls_ctx;
	s->tls_ctx = ctx;
	pthread_mutex_unlock(&s->tls_lock);
	SSL_CTX_free(old); /* Open connections hold their own references. */
	server_log(LOG_LEVEL_INFO,
		   "client TLS reloaded: CA %s, certificate %s (%s); new connections use them",
		   s->opt.tls_ca_file, s->opt.tls_cert_file, what);
	return 0;
}

void node_tls_deinit(struct server *s)
{
	SSL_CTX_free(s->tls_ctx);
	s->tls_ctx = NULL;
	pthread_mutex_destroy(&s->tls_lock);
}

bool node_tls_enabled(const struct server *s)
{
	return s->opt.tls_ca_file[0] != '\0';
}

int node_tls_accept(struct conn *c)
{
	struct server *s = c->worker->server;
	SSL *ssl;

	pthread_mutex_lock(&s->tls_lock);
	ssl = SSL_new(s->tls_ctx);
	pthread_mutex_unlock(&s->tls_lock);
	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return -ENOMEM;
	}
	SSL_set_app_data(ssl, c);
	SSL_set_accept_state(ssl);
	c->tls = ssl;
	c->tls_state = CONN_TLS_SNIFF;
	c->role = CLIENT_ACCESS_NONE;
	c->tls_events = EPOLLIN;
	return 0;
}

/* Why the handshake of c failed, from err and what the callback saw. */
static void node_tls_explain(struct conn *c, int err, char *why, size_t why_size)
{
	SSL *ssl = c->tls;
	long verify = SSL_get_verify_result(ssl);

	if (err == SSL_ERROR_SSL && verify == X509_V_ERR_APPLICATION_VERIFICATION)
		snprintf(why, why_size,
			 "its certificate is not a client certificate (OU admin or "
			 "data)%s",
			 c->role == CLIENT_ACCESS_NODE ? ": it is a node certificate (OU node)"
						       : "");
	else if (err == SSL_ERROR_SSL && verify != X509_V_OK)
		snprintf(why, why_size, "certificate verify failed: %s",
			 X509_verify_cert_error_string(verify));
	else if (err == SSL_ERROR_SSL &&
		 ERR_GET_REASON(ERR_peek_last_error()) >= SSL_AD_REASON_OFFSET)
		snprintf(why, why_size,
			 "the client ended the handshake: %s (it does not trust "
			 "this node's certificate?)",
			 node_tls_reason());
	else if (err == SSL_ERROR_SSL)
		snprintf(why, why_size, "%s", node_tls_reason());
	else
		snprintf(why, why_size, "the client closed the connection during the handshake");
	ERR_clear_error();
}

int node_tls_handshake(struct conn *c, char *why, size_t why_size)
{
	int rv, err;

	if (c->tls_state == CONN_TLS_SNIFF) {
		unsigned char first;
		ssize_t n = recv(c->fd, &first, 1, MSG_PEEK);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return NODE_TLS_WAIT;
		if (n <= 0) {
			snprintf(why, why_size,
				 "the client closed the connection before the "
				 "handshake");
			return NODE_TLS_FAILED;
		}
		if (first != NODE_TLS_RECORD_HANDSHAKE) {
			snprintf(why, why_size, "it spoke plaintext; this node requires TLS");
			return NODE_TLS_PLAINTEXT;
		}
		c->tls_state = CONN_TLS_HANDSHAKE;
	}
	ERR_clear_error();
	rv = SSL_do_handshake(c->tls);
	if (rv == 1) {
		/* A resumed session skips the callback: read the role again. */
		const X509 *cert = SSL_get0_peer_certificate(c->tls);
		uint32_t role = cert != NULL ? client_tls_cert_role(cert) : CLIENT_ACCESS_NONE;

		if (role != CLIENT_ACCESS_ADMIN && role != CLIENT_ACCESS_DATA) {
			snprintf(why, why_size, "its certificate has role %s, not admin or data",
				 client_role_name(role));
			return NODE_TLS_FAILED;
		}
		c->role = (uint8_t)role;
		c->tls_state = CONN_TLS_ON;
		return NODE_TLS_DONE;
	}
	err = SSL_get_error(c->tls, rv);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		c->tls_events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
		return NODE_TLS_WAIT;
	}
	node_tls_explain(c, err, why, why_size);
	return NODE_TLS_FAILED;
}

/* errno for a failed SSL_read or SSL_write, recv() style: 0 at a clean end. */
static ssize_t node_tls_failed(struct conn *c, int rv)
{
	int err = SSL_get_error(c->tls, rv);

	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	if (err != SSL_ERROR_SYSCALL)
		errno = EPROTO;
	return -1;
}

ssize_t node_tls_recv(struct conn *c, void *buf, size_t size)
{
	size_t n = 0;
	int rv;

	ERR_clear_error();
	rv = SSL_read_ex(c->tls, buf, size, &n);
	return rv == 1 ? (ssize_t)n : node_tls_failed(c, rv);
}

ssize_t node_tls_send(struct conn *c, const void *buf, size_t size)
{
	size_t n = 0;
	int rv;

	ERR_clear_error();
	rv = SSL_write_ex(c->tls, buf, size, &n);
	if (rv == 1)
		return (ssize_t)n;
	rv = (int)node_tls_failed(c, rv);
	if (rv == 0)
		errno = EPIPE;
	return -1;
}

bool node_tls_has_pending(const struct conn *c)
{
	return c->tls != NULL && SSL_pending(c->tls) > 0;
}

void node_tls_close(struct conn *c)
{
	/* close_notify, if the socket takes it now (never waited for): the
	 * client then reads a clean end of the connection. */
	if (c->tls != NULL && SSL_is_init_finished(c->tls)) {
		ERR_clear_error();
		(void)SSL_shutdown(c->tls);
		ERR_clear_error();
	}
	SSL_free(c->tls);
	c->tls = NULL;
}
