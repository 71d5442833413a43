/* TLS for the client protocol, client side, and the two client roles.
 *
 * Settings are process-wide (client_tls_setup): a CA, and a client
 * certificate and key. Flags set them; without flags the environment
 * variables FLOTILLA_TLS_CA, FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY do, read
 * on the first connect; with neither, connections are plaintext.
 *
 * The happy path of client_connect() with TLS: the TCP connect, then a TLS
 * 1.3 handshake (non-blocking, polled, within the same deadline) in which
 * the node's certificate must chain to the CA and carry OU node (no host
 * name check: docs/security.md says why), then a wait for the node's
 * session ticket. In TLS 1.3 the client's side of the handshake ends before
 * the node has checked the client's certificate; the node sends its ticket
 * only once it has, and an alert instead when it refuses. Waiting for the
 * ticket turns a refused certificate into an error of the connect, with its
 * reason, instead of a lost connection at the first request.
 *
 * Then client_tls_write() seals what is queued (records of up to 16 KiB,
 * so a batch of requests costs one record per 16 KiB, not one per request)
 * and client_tls_read() opens what came.
 *
 * Failure modes: each is an -EPROTO from the connect with a sentence in
 * client_error_text() (certificate verify failed, refused by the node,
 * plaintext node, handshake timed out). */
#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/client.h"
#include "tools/client_internal.h"

/* --- Ops and roles. --- */

const char *client_op_name(uint32_t op)
{
	/* Indexed by CLIENT_OP_*, 1 to CLIENT_OP_LAST. */
	static const char *const names[] = {
	    NULL,        "PUT",         "GET",     "DELETE",        "CAS",          "LEADER",
	    "LOCAL_GET", "DIGEST",      "CHECK",   "CORRUPT",       "CHECK_STATUS", "REBUILD",
	    "JOIN",      "ADD_LEARNER", "PROMOTE", "REMOVE_MEMBER", "TRANSFER",     "MEMBERS",
	    "DROP",      "STALE_GET"};

	static_assert(sizeof(names) / sizeof(names[0]) == CLIENT_OP_LAST + 1, "a name per op");
	if (op == CLIENT_OP_NODE_STATUS)
		return "NODE_STATUS";
	if (op == CLIENT_OP_SNAPSHOT)
		return "SNAPSHOT";
	if (op == CLIENT_OP_ADD_WITNESS)
		return "ADD_WITNESS";
	if (op == CLIENT_OP_RECOVER)
		return "RECOVER";
	if (op == CLIENT_OP_PEERS)
		return "PEERS";
	if (op == CLIENT_OP_SET_PEER)
		return "SET_PEER";
	if (op == CLIENT_OP_REMOVE_PEER)
		return "REMOVE_PEER";
	return op < sizeof(names) / sizeof(names[0]) ? names[op] : NULL;
}

const char *client_role_name(uint32_t role)
{
	switch (role) {
	case CLIENT_ACCESS_DATA:
		return "data";
	case CLIENT_ACCESS_ADMIN:
		return "admin";
	case CLIENT_ACCESS_NODE:
		return "node";
	default:
		return "none";
	}
}

/* The one table of which op needs which role. The data role: the data ops
 * and the read-only routing and inspection ops a data client needs. Every
 * other op, and any op this table does not know, needs the admin role. */
uint32_t client_op_role(uint32_t op)
{
	switch (op) {
	case CLIENT_OP_PUT:
	case CLIENT_OP_GET:
	case CLIENT_OP_DELETE:
	case CLIENT_OP_CAS:
	case CLIENT_OP_STALE_GET:
	case CLIENT_OP_LOCAL_GET:
	case CLIENT_OP_LEADER:
	case CLIENT_OP_MEMBERS:
	case CLIENT_OP_DIGEST:
	case CLIENT_OP_NODE_STATUS:
		return CLIENT_ACCESS_DATA;
	default:
		return CLIENT_ACCESS_ADMIN;
	}
}

bool client_role_allows(uint32_t role, uint32_t op)
{
	uint32_t need = client_op_role(op);

	return role == CLIENT_ACCESS_ADMIN ||
	       (role == CLIENT_ACCESS_DATA && need == CLIENT_ACCESS_DATA);
}

void client_forbidden_text(uint32_t op, uint32_t role, char *buf, size_t size)
{
	const char *name = client_op_name(op);

	if (name != NULL)
		snprintf(buf, size,
			 "%s needs the admin role; this connection's certificate has the %s role",
			 name, client_role_name(role));
	else
		snprintf(
		    buf, size,
		    "op %u needs the admin role; this connection's certificate has the %s role", op,
		    client_role_name(role));
}

/* The role a subject's single OU names. Two OUs, or one that is not a
 * role's name byte for byte, name none. */
uint32_t client_tls_cert_role(const void *x509)
{
	static const struct {
		const char *name;
		uint32_t role;
	} roles[] = {{"data", CLIENT_ACCESS_DATA},
		     {"admin", CLIENT_ACCESS_ADMIN},
		     {"node", CLIENT_ACCESS_NODE}};
	const X509_NAME *name = X509_get_subject_name(x509);
	const ASN1_STRING *ou;
	int i, size;

	if (name == NULL)
		return CLIENT_ACCESS_NONE;
	i = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, i) >= 0)
		return CLIENT_ACCESS_NONE;
	ou = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	size = ASN1_STRING_length(ou);
	for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++)
		if (size == (int)strlen(roles[r].name) &&
		    memcmp(ASN1_STRING_get0_data(ou), roles[r].name, (size_t)size) == 0)
			return roles[r].role;
	return CLIENT_ACCESS_NONE;
}

uint32_t client_tls_der_role(const void *der, size_t size)
{
	const unsigned char *p = der;
	X509 *cert;
	uint32_t role;

	if (size > INT32_MAX)
		return CLIENT_ACCESS_NONE;
	cert = d2i_X509(NULL, &p, (long)size);
	if (cert == NULL) {
		ERR_clear_error();
		return CLIENT_ACCESS_NONE;
	}
	role = client_tls_cert_role(cert);
	X509_free(cert);
	return role;
}

/* --- Settings. --- */

static pthread_mutex_t client_tls_lock = PTHREAD_MUTEX_INITIALIZER;
static bool client_tls_configured;   /* By client_tls_setup(), or from the environment. */
static SSL_CTX *client_tls_ctx;      /* NULL: plaintext. */
static char client_tls_refusal[320]; /* Set: the settings are broken; connects fail. */

static _Thread_local char client_tls_error[384];
static _Thread_local int client_tls_error_rv;

const char *client_error_text(int rv)
{
	if (rv == -EPROTO && client_tls_error_rv == rv && client_tls_error[0] != '\0')
		return client_tls_error;
	return strerror(rv < 0 ? -rv : rv);
}

static void client_tls_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void client_tls_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(client_tls_error, sizeof(client_tls_error), fmt, ap);
	va_end(ap);
	client_tls_error_rv = -EPROTO;
}

/* The reason of the last OpenSSL error, or "unknown". */
static const char *client_tls_reason(void)
{
	const char *reason = ERR_reason_error_string(ERR_peek_last_error());

	return reason != NULL ? reason : "unknown";
}

/* Verify callback: the chain must check, and the leaf must be a node's. */
static int client_tls_verify(int ok, X509_STORE_CTX *store)
{
	if (!ok || X509_STORE_CTX_get_error_depth(store) != 0)
		return ok;
	if (client_tls_cert_role(X509_STORE_CTX_get_current_cert(store)) == CLIENT_ACCESS_NODE)
		return 1;
	X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* A ticket came: the node accepted the client's certificate. */
static int client_tls_ticket(SSL *ssl, SSL_SESSION *session)
{
	(void)session;
	SSL_set_app_data(ssl, (void *)1);
	return 0; /* Not kept: OpenSSL frees it. */
}

static SSL_CTX *client_tls_make(const char *ca, const char *cert, const char *key, char *err,
				size_t err_size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, err_size, "TLS: %s", client_tls_reason());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* A node that closes without close_notify (after BAD_REQUEST, or a
	 * crash) reads as a closed connection, -ECONNRESET, as in plaintext:
	 * answers carry their own sizes, so a cut is seen in the framing. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, client_tls_verify);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, client_tls_ticket);
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		snprintf(err, err_size, "TLS CA %s: %s", ca, client_tls_reason());
		goto err;
	}
	if (cert != NULL && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, err_size, "TLS certificate %s: %s", cert, client_tls_reason());
		goto err;
	}
	if (key != NULL && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
			    SSL_CTX_check_private_key(ctx) != 1)) {
		snprintf(err, err_size, "TLS key %s: %s", key, client_tls_reason());
		goto err;
	}
	ERR_clear_error();
	return ctx;
err:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static const char *client_tls_or_env(const char *value, const char *name)
{
	if (value != NULL && value[0] != '\0')
		return value;
	value = getenv(name);
	return value != NULL && value[0] != '\0' ? value : NULL;
}

int client_tls_setup(const char *ca, const char *cert, const char *key, char *err, size_t err_size)
{
	SSL_CTX *ctx = NULL;

	ca = client_tls_or_env(ca, "FLOTILLA_TLS_CA");
	cert = client_tls_or_env(cert, "FLOTILLA_TLS_CERT");
	key = client_tls_or_env(key, "FLOTILLA_TLS_KEY");
	if ((cert == NULL) != (key == NULL) || (ca == NULL && cert != NULL)) {
		snprintf(err, err_size,
			 "TLS needs --tls-ca (FLOTILLA_TLS_CA), and --tls-cert "
			 "(FLOTILLA_TLS_CERT) with --tls-key (FLOTILLA_TLS_KEY) together");
		return -EINVAL;
	}
	if (ca != NULL) {
		ctx = client_tls_make(ca, cert, key, err, err_size);
		if (ctx == NULL)
			return -EINVAL;
		/* OpenSSL writes with write(), not send(MSG_NOSIGNAL): a node
		 * closing its end must be an error of that connection, not the
		 * end of the program. */
		if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
			SSL_CTX_free(ctx);
			snprintf(err, err_size, "TLS: cannot ignore SIGPIPE");
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&client_tls_lock);
	SSL_CTX_free(client_tls_ctx);
	client_tls_ctx = ctx;
	client_tls_configured = true;
	client_tls_refusal[0] = '\0';
	pthread_mutex_unlock(&client_tls_lock);
	return 0;
}

/* The settings, from the environment on first use. Returns 0 with *ctx
 * (NULL: plaintext; a reference the caller frees) or -EPROTO. */
static int client_tls_current(SSL_CTX **ctx)
{
	char err[sizeof(client_tls_refusal)];

	pthread_mutex_lock(&client_tls_lock);
	if (!client_tls_configured) {
		pthread_mutex_unlock(&client_tls_lock);
		if (client_tls_setup(NULL, NULL, NULL, err, sizeof(err)) != 0) {
			pthread_mutex_lock(&client_tls_lock);
			if (!client_tls_configured) {
				snprintf(client_tls_refusal, sizeof(client_tls_refusal), "%s", err);
				client_tls_configured = true;
			}
			pthread_mutex_unlock(&client_tls_lock);
		}
		pthread_mutex_lock(&client_tls_lock);
	}
	if (client_tls_refusal[0] != '\0') {
		client_tls_fail("%s", client_tls_refusal);
		pthread_mutex_unlock(&client_tls_lock);
		return -EPROTO;
	}
	*ctx = client_tls_ctx;
	if (*ctx != NULL)
		SSL_CTX_up_ref(*ctx);
	pthread_mutex_unlock(&client_tls_lock);
	return 0;
}

bool client_tls_enabled(void)
{
	SSL_CTX *ctx = NULL;

	if (client_tls_current(&ctx) != 0)
		return true; /* Configured, and broken. */
	SSL_CTX_free(ctx);
	return ctx != NULL;
}

/* --- One connection. --- */

static uint64_t client_tls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Why the handshake with addr failed, from the SSL error and the state. */
static void client_tls_explain(SSL *ssl, int err, const char *addr)
{
	unsigned long e = ERR_peek_last_error();
	long verify = SSL_get_verify_result(ssl);

	if (err == SSL_ERROR_SSL && verify == X509_V_ERR_APPLICATION_VERIFICATION)
		client_tls_fail("TLS handshake with %s failed: its certificate is not a node "
				"certificate (OU node)",
				addr);
	else if (err == SSL_ERROR_SSL && verify != X509_V_OK)
		client_tls_fail("TLS handshake with %s failed: certificate verify failed: %s", addr,
				X509_verify_cert_error_string(verify));
	else if (err == SSL_ERROR_SSL && (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
					  ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG ||
					  ERR_GET_REASON(e) == SSL_R_RECORD_LENGTH_MISMATCH))
		client_tls_fail("TLS handshake with %s failed: the node answered in plaintext "
				"(a node without --tls-ca, --tls-cert and --tls-key)",
				addr);
	else if (err == SSL_ERROR_SSL && SSL_get_certificate(ssl) == NULL)
		client_tls_fail("TLS handshake with %s failed: %s (the node requires a client "
				"certificate: --tls-cert and --tls-key, or FLOTILLA_TLS_CERT and "
				"FLOTILLA_TLS_KEY)",
				addr, client_tls_reason());
	else if (err == SSL_ERROR_SSL)
		client_tls_fail("TLS handshake with %s failed: %s", addr, client_tls_reason());
	else
		client_tls_fail("the node %s closed the connection during the TLS handshake: "
				"does it require a client certificate, or is it a plaintext node?",
				addr);
	ERR_clear_error();
}

/* Step fn (the handshake, or a peek that takes the ticket) until it is
 * done, fails, or deadline_ms passes. Returns 0 (done), -ETIMEDOUT or the
 * SSL error (SSL_ERROR_*, > 0). */
static int client_tls_poll(SSL *ssl, int fd, bool ticket, uint64_t deadline_ms)
{
	for (;;) {
		unsigned char byte;
		struct pollfd pfd = {.fd = fd};
		uint64_t now;
		int rv, err;

		ERR_clear_error();
		rv = ticket ? SSL_peek(ssl, &byte, 1) : SSL_connect(ssl);
		if (rv > 0 || (ticket && SSL_get_app_data(ssl) != NULL))
			return 0;
		err = SSL_get_error(ssl, rv);
		if (err == SSL_ERROR_WANT_READ)
			pfd.events = POLLIN;
		else if (err == SSL_ERROR_WANT_WRITE)
			pfd.events = POLLOUT;
		else
			return err;
		now = client_tls_now_ms();
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)(deadline_ms - now)) < 0 && errno != EINTR)
			return SSL_ERROR_SYSCALL;
	}
}

int client_tls_connect(struct client *c, const char *addr, int timeout_ms)
{
	uint64_t deadline_ms = client_tls_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	SSL_CTX *ctx = NULL;
	SSL *ssl;
	int rv;

	rv = client_tls_current(&ctx);
	if (rv != 0 || ctx == NULL)
		return rv;
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* The SSL holds its own reference. */
	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		client_tls_fail("TLS with %s: %s", addr, client_tls_reason());
		return -EPROTO;
	}
	SSL_set_connect_state(ssl);
	rv = client_tls_poll(ssl, c->fd, false, deadline_ms);
	if (rv == 0)
		rv = client_tls_poll(ssl, c->fd, true, deadline_ms);
	if (rv == 0) {
		c->tls = ssl;
		return 0;
	}
	if (rv == -ETIMEDOUT)
		client_tls_fail("TLS handshake with %s failed: no answer within %d ms (a "
				"plaintext node, without --tls-ca, --tls-cert and --tls-key, "
				"waits for more bytes and does not answer)",
				addr, timeout_ms);
	else
		client_tls_explain(ssl, rv, addr);
	SSL_free(ssl);
	return -EPROTO;
}

void client_tls_close(struct client *c)
{
	SSL_free(c->tls);
	c->tls = NULL;
}

/* The errno-shaped outcome of a failed SSL_read or SSL_write. */
static int client_tls_errno(SSL *ssl, int rv)
{
	int err = SSL_get_error(ssl, rv);

	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return -EAGAIN;
	if (err == SSL_ERROR_SSL) {
		client_tls_fail("TLS: %s", client_tls_reason());
		ERR_clear_error();
		return -EPROTO;
	}
	ERR_clear_error();
	if (err == SSL_ERROR_SYSCALL && errno != 0)
		return -errno;
	return -ECONNRESET; /* SSL_ERROR_ZERO_RETURN, or the peer closed the socket. */
}

int client_tls_write(struct client *c)
{
	while (c->out_start < c->out_end) {
		size_t n = 0;
		int rv;

		ERR_clear_error();
		rv = SSL_write_ex(c->tls, c->out + c->out_start, c->out_end - c->out_start, &n);
		if (rv != 1)
			return client_tls_errno(c->tls, rv);
		c->out_start += (uint32_t)n;
	}
	c->out_start = c->out_end = 0;
	return 0;
}

/* Read until the socket has nothing, or the buffer is full and the TLS
 * layer holds no more (SSL_pending: bytes epoll cannot see). */
int client_tls_read(struct client *c, uint64_t want, uint32_t capacity_min)
{
	uint64_t total = 0;

	for (;;) {
		size_t n = 0;
		int rv;

		if (c->in_size == c->in_end) {
			if (SSL_pending(c->tls) == 0 && total > 0)
				break;
			rv = client_reserve(&c->in, &c->in_size, &c->in_start, &c->in_end, want,
					    capacity_min);
			if (rv != 0)
				return rv;
		}
		ERR_clear_error();
		rv = SSL_read_ex(c->tls, c->in + c->in_end, c->in_size - c->in_end, &n);
		if (rv != 1) {
			rv = client_tls_errno(c->tls, rv);
			if (total > 0)
				break; /* What came first; a failure shows again on the next read.
					*/
			return rv;
		}
		c->in_end += (uint32_t)n;
		total += n;
	}
	return total > INT32_MAX ? INT32_MAX : (int)total;
}
