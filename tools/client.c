/* Client protocol codec, pipelined connections and the leader-following
 * router. The formats are specified in client.h and docs/client-protocol.md.
 *
 * Failure modes: a malformed frame from the server makes the connection
 * unusable (-EBADMSG; the caller closes it); a connection that fails in the
 * router is closed and its node is left alone for CLIENT_DOWN_MS before the
 * next connect, so a dead node costs one refused connect per interval, not
 * one per request. TLS, the roles and the op table live in client_tls.c. */
#include "tools/client.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/le.h"
#include "base/sock.h"
#include "tools/client_internal.h"

#define CLIENT_BUFFER_SIZE_MIN (64u << 10)
#define CLIENT_DOWN_MS         100
#define CLIENT_CONNECT_MS      1000
#define CLIENT_POLL_MS         20
#define CLIENT_BACKOFF_MS_MAX  200
#define CLIENT_LEADERS_SLOTS   4096
#define CLIENT_READ_MAX        (256u << 10) /* Bytes per read() call. */

static_assert(CLIENT_REQUEST_HEADER_SIZE == 4 + 4 + 8 + 8, "size, op, request_id, group");
static_assert(CLIENT_RESPONSE_HEADER_SIZE == 4 + 4 + 8 + 8 + 4, "size, status, id, hint, value");

/* Cursor forms of engine/le.h's stores: write v at p, return the byte after it. */
static unsigned char *client_store32(unsigned char *p, uint32_t v)
{
	le_put32(p, v);
	return p + 4;
}

static unsigned char *client_store64(unsigned char *p, uint64_t v)
{
	le_put64(p, v);
	return p + 8;
}

static unsigned char *client_store_bytes(unsigned char *p, const void *bytes, uint32_t size)
{
	if (size > 0)
		memcpy(p, bytes, size);
	return p + size;
}

/* --- Codec. --- */

/* Body bytes of req, or UINT64_MAX for an unknown op. */
static uint64_t client_body_size(const struct client_request *req)
{
	uint64_t expected = req->expected_size == CLIENT_ABSENT ? 0 : req->expected_size;

	switch (req->op) {
	case CLIENT_OP_PUT:
	case CLIENT_OP_CORRUPT:
		return 8 + (uint64_t)req->key_size + req->value_size;
	case CLIENT_OP_GET:
	case CLIENT_OP_DELETE:
	case CLIENT_OP_LOCAL_GET:
		return 4 + (uint64_t)req->key_size;
	case CLIENT_OP_STALE_GET:
		return 20 + (uint64_t)req->key_size;
	case CLIENT_OP_CAS:
		return 12 + (uint64_t)req->key_size + expected + req->value_size;
	case CLIENT_OP_LEADER:
	case CLIENT_OP_DIGEST:
	case CLIENT_OP_CHECK:
	case CLIENT_OP_CHECK_STATUS:
	case CLIENT_OP_REBUILD:
	case CLIENT_OP_JOIN:
	case CLIENT_OP_MEMBERS:
	case CLIENT_OP_DROP:
	case CLIENT_OP_NODE_STATUS:
	case CLIENT_OP_SNAPSHOT:
	case CLIENT_OP_PEERS:
		return 0;
	case CLIENT_OP_ADD_LEARNER:
	case CLIENT_OP_PROMOTE:
	case CLIENT_OP_REMOVE_MEMBER:
	case CLIENT_OP_TRANSFER:
	case CLIENT_OP_ADD_WITNESS:
		return 8;
	case CLIENT_OP_RECOVER:
		return 4;
	case CLIENT_OP_REMOVE_PEER:
		return 8;
	case CLIENT_OP_SET_PEER:
		return 12 + (uint64_t)req->key_size;
	default:
		return UINT64_MAX;
	}
}

uint32_t client_request_size(const struct client_request *req)
{
	uint64_t body = client_body_size(req);

	if (body == UINT64_MAX || req->key_size > CLIENT_KEY_SIZE_MAX)
		return 0;
	if (CLIENT_REQUEST_HEADER_SIZE - 4 + body > CLIENT_REQUEST_SIZE_MAX)
		return 0;
	return (uint32_t)(CLIENT_REQUEST_HEADER_SIZE + body);
}

void client_request_encode(const struct client_request *req, void *buf)
{
	uint32_t size = client_request_size(req);
	unsigned char *p = buf;

	p = client_store32(p, size - 4);
	p = client_store32(p, req->op);
	p = client_store64(p, req->request_id);
	p = client_store64(p, req->group);
	switch (req->op) {
	case CLIENT_OP_PUT:
	case CLIENT_OP_CORRUPT:
		p = client_store32(p, req->key_size);
		p = client_store32(p, req->value_size);
		p = client_store_bytes(p, req->key, req->key_size);
		client_store_bytes(p, req->value, req->value_size);
		break;
	case CLIENT_OP_GET:
	case CLIENT_OP_DELETE:
	case CLIENT_OP_LOCAL_GET:
		p = client_store32(p, req->key_size);
		client_store_bytes(p, req->key, req->key_size);
		break;
	case CLIENT_OP_STALE_GET:
		p = client_store32(p, req->key_size);
		p = client_store64(p, req->behind_max);
		p = client_store64(p, req->age_max_ms);
		client_store_bytes(p, req->key, req->key_size);
		break;
	case CLIENT_OP_CAS:
		p = client_store32(p, req->key_size);
		p = client_store32(p, req->expected_size);
		p = client_store32(p, req->value_size);
		p = client_store_bytes(p, req->key, req->key_size);
		if (req->expected_size != CLIENT_ABSENT)
			p = client_store_bytes(p, req->expected, req->expected_size);
		client_store_bytes(p, req->value, req->value_size);
		break;
	case CLIENT_OP_ADD_LEARNER:
	case CLIENT_OP_PROMOTE:
	case CLIENT_OP_REMOVE_MEMBER:
	case CLIENT_OP_TRANSFER:
	case CLIENT_OP_ADD_WITNESS:
		client_store64(p, req->member);
		break;
	case CLIENT_OP_RECOVER:
		client_store32(p, req->flags);
		break;
	case CLIENT_OP_REMOVE_PEER:
		client_store64(p, req->member);
		break;
	case CLIENT_OP_SET_PEER:
		p = client_store64(p, req->member);
		p = client_store32(p, req->key_size);
		client_store_bytes(p, req->key, req->key_size);
		break;
	default:
		break;
	}
}

/* The body's fields against its length: a mismatch means the size field
 * cannot be trusted either, so the refusal closes the connection. */
static int client_request_body_mismatch(const struct client_request *req, uint32_t body_size,
					uint64_t need, struct client_refusal *r)
{
	const char *name = client_op_name(req->op);

	if (req->op == CLIENT_OP_PUT || req->op == CLIENT_OP_CORRUPT)
		snprintf(r->text, sizeof(r->text),
			 "%s body of %u bytes, but key_size %u and value_size %u make %llu", name,
			 body_size, req->key_size, req->value_size, (unsigned long long)need);
	else if (req->op == CLIENT_OP_CAS)
		snprintf(r->text, sizeof(r->text),
			 "CAS body of %u bytes, but key_size %u, expected_size %u and value_size "
			 "%u make %llu",
			 body_size, req->key_size, req->expected_size, req->value_size,
			 (unsigned long long)need);
	else
		snprintf(r->text, sizeof(r->text),
			 "%s body of %u bytes, but key_size %u makes %llu", name, body_size,
			 req->key_size, (unsigned long long)need);
	return -EBADMSG;
}

/* Parse the body of req from p, body_size bytes. Returns 0 or -EBADMSG with
 * r filled in (r->skip set by the caller when the refusal keeps the
 * connection). */
static int client_request_decode_body(const unsigned char *p, uint32_t body_size,
				      struct client_request *req, struct client_refusal *r,
				      bool *framed)
{
	const char *name = client_op_name(req->op);
	uint32_t fixed;
	uint64_t need;

	*framed = false;
	switch (req->op) {
	case CLIENT_OP_LEADER:
	case CLIENT_OP_DIGEST:
	case CLIENT_OP_CHECK:
	case CLIENT_OP_CHECK_STATUS:
	case CLIENT_OP_REBUILD:
	case CLIENT_OP_JOIN:
	case CLIENT_OP_MEMBERS:
	case CLIENT_OP_DROP:
	case CLIENT_OP_NODE_STATUS:
	case CLIENT_OP_SNAPSHOT:
	case CLIENT_OP_PEERS:
		if (body_size == 0)
			return 0;
		snprintf(r->text, sizeof(r->text), "%s takes no body, got %u bytes", name,
			 body_size);
		return -EBADMSG;
	case CLIENT_OP_SET_PEER:
		if (body_size < 12 || body_size - 12 != le_get32(p + 8)) {
			snprintf(r->text, sizeof(r->text),
				 "SET_PEER body of %u bytes, but it takes 12 bytes (id, addr_size) "
				 "and addr_size bytes of address",
				 body_size);
			return -EBADMSG;
		}
		req->member = le_get64(p);
		req->key_size = le_get32(p + 8);
		req->key = p + 12;
		*framed = true;
		if (req->key_size == 0 || req->key_size > CLIENT_PEER_ADDR_MAX) {
			snprintf(r->text, sizeof(r->text),
				 "SET_PEER address of %u bytes: it takes 1 to %u", req->key_size,
				 CLIENT_PEER_ADDR_MAX);
			return -EBADMSG;
		}
		return 0;
	case CLIENT_OP_ADD_LEARNER:
	case CLIENT_OP_PROMOTE:
	case CLIENT_OP_REMOVE_MEMBER:
	case CLIENT_OP_TRANSFER:
	case CLIENT_OP_ADD_WITNESS:
	case CLIENT_OP_REMOVE_PEER:
		if (body_size != 8) {
			snprintf(r->text, sizeof(r->text),
				 "%s takes an 8-byte body (member), got %u bytes", name, body_size);
			return -EBADMSG;
		}
		req->member = le_get64(p);
		return 0;
	case CLIENT_OP_RECOVER:
		if (body_size != 4) {
			snprintf(r->text, sizeof(r->text),
				 "RECOVER takes a 4-byte body (flags), got %u bytes", body_size);
			return -EBADMSG;
		}
		req->flags = le_get32(p);
		return 0;
	case CLIENT_OP_PUT:
	case CLIENT_OP_CORRUPT:
		fixed = 8;
		break;
	case CLIENT_OP_GET:
	case CLIENT_OP_DELETE:
	case CLIENT_OP_LOCAL_GET:
		fixed = 4;
		break;
	case CLIENT_OP_STALE_GET:
		fixed = 20; /* key_size, behind_max, age_max_ms. */
		break;
	case CLIENT_OP_CAS:
		fixed = 12;
		break;
	default:
		/* The body cannot be checked against its fields: a newer client
		 * and a stream out of step look the same, so this one closes. */
		snprintf(r->text, sizeof(r->text), "unknown op %u (ops are 1 to %u and %u to %u)",
			 req->op, (unsigned)CLIENT_OP_LAST, (unsigned)CLIENT_OP_NODE_STATUS,
			 (unsigned)CLIENT_OP_ADD_WITNESS);
		return -EBADMSG;
	}
	if (body_size < fixed) {
		snprintf(r->text, sizeof(r->text),
			 "%s body of %u bytes is shorter than its %u bytes of sizes", name,
			 body_size, fixed);
		return -EBADMSG;
	}
	req->key_size = le_get32(p);
	if (req->op == CLIENT_OP_PUT || req->op == CLIENT_OP_CORRUPT) {
		req->value_size = le_get32(p + 4);
	} else if (req->op == CLIENT_OP_CAS) {
		req->expected_size = le_get32(p + 4);
		req->value_size = le_get32(p + 8);
	} else if (req->op == CLIENT_OP_STALE_GET) {
		req->behind_max = le_get64(p + 4);
		req->age_max_ms = le_get64(p + 12);
	}
	need = client_body_size(req);
	if (need != body_size)
		return client_request_body_mismatch(req, body_size, need, r);
	/* Well framed from here: a refusal leaves the connection open. */
	*framed = true;
	if (req->key_size > CLIENT_KEY_SIZE_MAX) {
		snprintf(r->text, sizeof(r->text), "key of %u bytes exceeds the %u-byte limit",
			 req->key_size, CLIENT_KEY_SIZE_MAX);
		return -EBADMSG;
	}
	p += fixed;
	req->key = p;
	p += req->key_size;
	if (req->op == CLIENT_OP_CAS && req->expected_size != CLIENT_ABSENT) {
		req->expected = p;
		p += req->expected_size;
	}
	if (req->op == CLIENT_OP_PUT || req->op == CLIENT_OP_CAS || req->op == CLIENT_OP_CORRUPT)
		req->value = p;
	return 0;
}

int client_request_decode_why(const void *buf, size_t size, struct client_request *req,
			      struct client_refusal *r)
{
	const unsigned char *p = buf;
	uint32_t frame;
	bool framed;

	memset(req, 0, sizeof(*req));
	r->text[0] = '\0';
	r->skip = 0;
	if (size >= 16)
		req->request_id = le_get64(p + 8);
	if (size < 4)
		return 0;
	frame = le_get32(p);
	if (frame < CLIENT_REQUEST_HEADER_SIZE - 4) {
		snprintf(r->text, sizeof(r->text),
			 "request size %u is below the %u-byte minimum (op, request_id, group)",
			 frame, CLIENT_REQUEST_HEADER_SIZE - 4);
		return -EBADMSG;
	}
	if (frame > CLIENT_REQUEST_SIZE_MAX) {
		snprintf(r->text, sizeof(r->text), "request size %u exceeds the %u-byte limit",
			 frame, CLIENT_REQUEST_SIZE_MAX);
		return -EBADMSG;
	}
	if (size - 4 < frame)
		return 0;
	req->op = le_get32(p + 4);
	req->group = le_get64(p + 16);
	if (client_request_decode_body(p + CLIENT_REQUEST_HEADER_SIZE,
				       frame - (CLIENT_REQUEST_HEADER_SIZE - 4), req, r,
				       &framed) != 0) {
		r->skip = framed ? frame + 4 : 0;
		return -EBADMSG;
	}
	return (int)(frame + 4);
}

int client_request_decode(const void *buf, size_t size, struct client_request *req)
{
	struct client_refusal r;

	return client_request_decode_why(buf, size, req, &r);
}

uint32_t client_response_size(uint32_t value_size)
{
	return CLIENT_RESPONSE_HEADER_SIZE + value_size;
}

void client_response_encode(const struct client_response *resp, void *buf)
{
	unsigned char *p = buf;

	p = client_store32(p, client_response_size(resp->value_size) - 4);
	p = client_store32(p, resp->status);
	p = client_store64(p, resp->request_id);
	p = client_store64(p, resp->leader_hint);
	p = client_store32(p, resp->value_size);
	client_store_bytes(p, resp->value, resp->value_size);
}

int client_response_decode(const void *buf, size_t size, struct client_response *resp)
{
	const unsigned char *p = buf;
	uint32_t frame;

	memset(resp, 0, sizeof(*resp));
	if (size >= 16)
		resp->request_id = le_get64(p + 8);
	if (size < 4)
		return 0;
	frame = le_get32(p);
	if (frame < CLIENT_RESPONSE_HEADER_SIZE - 4 || frame > CLIENT_RESPONSE_SIZE_MAX)
		return -EBADMSG;
	if (size - 4 < frame)
		return 0;
	resp->status = le_get32(p + 4);
	resp->leader_hint = le_get64(p + 16);
	resp->value_size = le_get32(p + 24);
	if (resp->status > CLIENT_STATUS_LAST ||
	    (uint64_t)resp->value_size + CLIENT_RESPONSE_HEADER_SIZE - 4 != frame)
		return -EBADMSG;
	resp->value = p + CLIENT_RESPONSE_HEADER_SIZE;
	return (int)(frame + 4);
}

int client_parse_addr(const char *text, struct sockaddr_in *addr)
{
	char host[CLIENT_ADDR_SIZE_MAX];
	const char *colon = strrchr(text, ':');
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
	struct addrinfo *found;
	char *end;
	unsigned long port;

	if (colon == NULL || colon == text || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || port > 65535)
		return -EINVAL;
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &addr->sin_addr) == 1)
		return 0;
	if (getaddrinfo(host, NULL, &hints, &found) != 0)
		return -EINVAL;
	addr->sin_addr = ((const struct sockaddr_in *)(const void *)found->ai_addr)->sin_addr;
	freeaddrinfo(found);
	return 0;
}

/* --- One connection. --- */

static uint64_t client_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int client_connect(struct client *c, const char *addr, int timeout_ms)
{
	struct sockaddr_in sin;
	struct pollfd pfd;
	int one = 1, err = 0, rv;
	socklen_t len = sizeof(err);

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	rv = client_parse_addr(addr, &sin);
	if (rv != 0)
		return rv;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&sin, sizeof(sin)) == 0)
		goto connected;
	if (errno != EINPROGRESS) {
		rv = -errno;
		goto err;
	}
	pfd = (struct pollfd){.fd = c->fd, .events = POLLOUT};
	rv = poll(&pfd, 1, timeout_ms);
	if (rv <= 0) {
		rv = rv == 0 ? -ETIMEDOUT : -errno;
		goto err;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		rv = err != 0 ? -err : -errno;
		goto err;
	}
connected:
	if (sock_is_self_connected(c->fd)) { /* Nothing listens there: see base/sock.h. */
		rv = -ECONNREFUSED;
		goto err;
	}
	rv = client_tls_connect(c, addr, timeout_ms);
	if (rv != 0)
		goto err;
	return 0;
err:
	client_close(c);
	return rv;
}

void client_close(struct client *c)
{
	client_tls_close(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* Make room for need more bytes after end in a buffer, moving live bytes to
 * the front first. Returns 0 or -ENOMEM. */
int client_reserve(unsigned char **buf, uint32_t *capacity, uint32_t *start, uint32_t *end,
		   uint64_t need, uint32_t capacity_min)
{
	uint64_t live = *end - *start;
	uint64_t capacity_new = *capacity < capacity_min ? capacity_min : *capacity;
	unsigned char *grown;

	if (*capacity - *end >= need)
		return 0;
	if (*start > 0 && live > 0)
		memmove(*buf, *buf + *start, live);
	*start = 0;
	*end = (uint32_t)live;
	if (*capacity - *end >= need)
		return 0;
	while (capacity_new - live < need)
		capacity_new *= 2;
	if (capacity_new > UINT32_MAX)
		return -ENOMEM;
	grown = realloc(*buf, capacity_new);
	if (grown == NULL)
		return -ENOMEM;
	*buf = grown;
	*capacity = (uint32_t)capacity_new;
	return 0;
}

int client_send(struct client *c, const struct client_request *req)
{
	uint32_t size = client_request_size(req);
	int rv;

	if (size == 0)
		return -EINVAL;
	rv = client_reserve(&c->out, &c->out_size, &c->out_start, &c->out_end, size,
			    CLIENT_BUFFER_SIZE_MIN);
	if (rv != 0)
		return rv;
	client_request_encode(req, c->out + c->out_end);
	c->out_end += size;
	return 0;
}

int client_send_bytes(struct client *c, const void *bytes, size_t size)
{
	int rv;

	if (size > CLIENT_REQUEST_SIZE_MAX + CLIENT_REQUEST_HEADER_SIZE)
		return -ENOMEM;
	rv = client_reserve(&c->out, &c->out_size, &c->out_start, &c->out_end, (uint32_t)size,
			    CLIENT_BUFFER_SIZE_MIN);
	if (rv != 0)
		return rv;
	memcpy(c->out + c->out_end, bytes, size);
	c->out_end += (uint32_t)size;
	return 0;
}

bool client_has_output(const struct client *c)
{
	return c->out_end > c->out_start;
}

int client_flush(struct client *c)
{
	if (c->tls != NULL)
		return client_tls_write(c);
	while (c->out_start < c->out_end) {
		ssize_t n =
		    send(c->fd, c->out + c->out_start, c->out_end - c->out_start, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		c->out_start += (uint32_t)n;
	}
	c->out_start = c->out_end = 0;
	return 0;
}

int client_read(struct client *c)
{
	uint64_t want = CLIENT_READ_MAX;
	ssize_t n;
	int rv;

	/* A partial frame announces its size: make room for all of it at once. */
	if (c->in_end - c->in_start >= 4) {
		uint64_t frame = 4 + (uint64_t)le_get32(c->in + c->in_start);

		if (frame <= 4 + (uint64_t)CLIENT_RESPONSE_SIZE_MAX &&
		    frame > c->in_end - c->in_start && frame - (c->in_end - c->in_start) > want)
			want = frame - (c->in_end - c->in_start);
	}
	rv = client_reserve(&c->in, &c->in_size, &c->in_start, &c->in_end, want,
			    CLIENT_BUFFER_SIZE_MIN);
	if (rv != 0)
		return rv;
	if (c->tls != NULL)
		return client_tls_read(c, want, CLIENT_BUFFER_SIZE_MIN);
	do
		n = recv(c->fd, c->in + c->in_end, c->in_size - c->in_end, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
	c->in_end += (uint32_t)n;
	return (int)n;
}

int client_receive(struct client *c, struct client_response *resp)
{
	int n = client_response_decode(c->in + c->in_start, c->in_end - c->in_start, resp);

	if (n <= 0)
		return n;
	c->in_start += (uint32_t)n;
	return 1;
}

int client_wait(struct client *c, struct client_response *resp, int timeout_ms)
{
	uint64_t deadline = client_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int rv;

	for (;;) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		uint64_t now;

		rv = client_receive(c, resp);
		if (rv != 0)
			return rv < 0 ? rv : 0;
		rv = client_flush(c);
		if (rv != 0 && rv != -EAGAIN)
			return rv;
		if (rv == -EAGAIN)
			pfd.events |= POLLOUT;
		now = client_now_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		rv = poll(&pfd, 1, (int)(deadline - now));
		if (rv < 0 && errno != EINTR)
			return -errno;
		if (rv > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
			rv = client_read(c);
			if (rv < 0 && rv != -EAGAIN)
				return rv;
		}
	}
}

/* --- Router. --- */

static int client_router_add(struct client_router *r, uint64_t id, const char *addr,
			     size_t addr_size)
{
	struct client_node *node;

	if (r->nodes_count == CLIENT_NODES_MAX || id == 0 || addr_size == 0 ||
	    addr_size >= CLIENT_ADDR_SIZE_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < r->nodes_count; i++)
		if (r->nodes[i].id == id)
			return -EINVAL;
	node = &r->nodes[r->nodes_count++];
	node->id = id;
	memcpy(node->addr, addr, addr_size);
	node->addr[addr_size] = '\0';
	node->conn.fd = -1;
	return 0;
}

int client_router_init(struct client_router *r, const char *spec)
{
	const char *p = spec;
	int rv;

	memset(r, 0, sizeof(*r));
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		const char *eq;
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		uint64_t id = r->nodes_count + 1;

		eq = memchr(p, '=', len);
		if (eq != NULL) {
			char *id_end;

			id = strtoull(p, &id_end, 10);
			if (id_end != eq)
				goto err_inval;
			len -= (size_t)(eq + 1 - p);
			p = eq + 1;
		}
		rv = client_router_add(r, id, p, len);
		if (rv != 0)
			goto err;
		p += len;
		if (*p == ',')
			p++;
	}
	if (r->nodes_count == 0)
		goto err_inval;
	r->leaders_slots = CLIENT_LEADERS_SLOTS;
	r->leaders = calloc(r->leaders_slots, sizeof(*r->leaders));
	r->leaders_group = calloc(r->leaders_slots, sizeof(*r->leaders_group));
	if (r->leaders == NULL || r->leaders_group == NULL) {
		rv = -ENOMEM;
		goto err;
	}
	return 0;
err_inval:
	rv = -EINVAL;
err:
	client_router_deinit(r);
	return rv;
}

void client_router_deinit(struct client_router *r)
{
	for (uint32_t i = 0; i < r->nodes_count; i++)
		client_close(&r->nodes[i].conn);
	free(r->leaders);
	free(r->leaders_group);
	memset(r, 0, sizeof(*r));
}

uint64_t client_router_leader(const struct client_router *r, uint64_t group)
{
	uint32_t slot = (uint32_t)(group % r->leaders_slots);

	return r->leaders_group[slot] == group ? r->leaders[slot] : 0;
}

void client_router_set_leader(struct client_router *r, uint64_t group, uint64_t node)
{
	uint32_t slot = (uint32_t)(group % r->leaders_slots);

	r->leaders_group[slot] = group;
	r->leaders[slot] = node;
}

static struct client_node *client_router_node(struct client_router *r, uint64_t id)
{
	for (uint32_t i = 0; i < r->nodes_count; i++)
		if (r->nodes[i].id == id)
			return &r->nodes[i];
	return NULL;
}

struct client *client_router_conn(struct client_router *r, uint64_t id)
{
	struct client_node *node = client_router_node(r, id);
	int rv;

	if (node == NULL)
		return NULL;
	if (node->conn.fd >= 0)
		return &node->conn;
	if (client_now_ms() < node->down_until_ms)
		return NULL;
	rv = client_connect(&node->conn, node->addr, CLIENT_CONNECT_MS);
	if (rv != 0) {
		/* A TLS refusal is a set-up error: say it once, not per retry. */
		if (rv == -EPROTO && !node->tls_told)
			fprintf(stderr, "%s\n", client_error_text(rv));
		node->tls_told = node->tls_told || rv == -EPROTO;
		node->down_until_ms = client_now_ms() + CLIENT_DOWN_MS;
		return NULL;
	}
	return &node->conn;
}

void client_call_clear(struct client_call *call)
{
	free(call->value);
	call->value = NULL;
	call->value_size = 0;
	call->rv = 0;
	call->status = 0;
	call->node = 0;
	call->sent_id = 0;
	call->retry_at_ms = 0;
	call->attempts = 0;
	call->done = false;
}

static uint64_t client_backoff_ms(uint32_t attempts)
{
	uint64_t ms = 10 * (uint64_t)attempts;

	return ms > CLIENT_BACKOFF_MS_MAX ? CLIENT_BACKOFF_MS_MAX : ms;
}

static void client_call_finish(struct client_call *call, int rv)
{
	call->done = true;
	call->rv = rv;
	call->sent_id = 0;
}

/* Where call goes next: its group's leader as last heard, else the nodes in
 * turn (a different one at each attempt). */
static uint64_t client_router_target(const struct client_router *r, const struct client_call *call)
{
	uint64_t leader = client_router_leader(r, call->req.group);

	if (leader != 0 && client_router_node((struct client_router *)r, leader) != NULL)
		return leader;
	return r->nodes[(call->req.group + call->attempts) % r->nodes_count].id;
}

/* The connection to node failed: close it and take back the calls in flight
 * there. Their outcome is unknown, so only idempotent calls are sent again. */
static void client_router_drop(struct client_router *r, struct client_node *node,
			       struct client_call *calls, uint32_t count, bool idempotent,
			       uint64_t now)
{
	client_close(&node->conn);
	node->down_until_ms = now + CLIENT_DOWN_MS;
	for (uint32_t i = 0; i < count; i++) {
		struct client_call *call = &calls[i];

		if (call->done || call->sent_id == 0 || call->node != node->id)
			continue;
		if (client_router_leader(r, call->req.group) == node->id)
			client_router_set_leader(r, call->req.group, 0);
		call->sent_id = 0;
		call->attempts++;
		call->retry_at_ms = now + client_backoff_ms(call->attempts);
		if (!idempotent)
			client_call_finish(call, -ECONNRESET);
	}
}

/* Send every call that is due. Returns the count of calls not done. */
static uint32_t client_router_dispatch(struct client_router *r, struct client_call *calls,
				       uint32_t count, uint64_t now)
{
	uint32_t pending = 0;

	for (uint32_t i = 0; i < count; i++) {
		struct client_call *call = &calls[i];
		uint64_t target;
		struct client *conn;

		if (call->done)
			continue;
		pending++;
		if (call->sent_id != 0 || call->retry_at_ms > now)
			continue;
		target = client_router_target(r, call);
		conn = client_router_conn(r, target);
		if (conn == NULL) {
			/* Nothing was sent: trying another node is safe for any call. */
			if (client_router_leader(r, call->req.group) == target)
				client_router_set_leader(r, call->req.group, 0);
			call->attempts++;
			call->retry_at_ms = now + (call->attempts % r->nodes_count == 0 ? 10 : 0);
			continue;
		}
		call->req.request_id =
		    (r->run_seq & 0xffffff) << 40 | (uint64_t)(call->attempts & 0xff) << 32 | i;
		if (client_send(conn, &call->req) != 0) {
			client_call_finish(call, -EINVAL);
			pending--;
			continue;
		}
		call->sent_id = call->req.request_id;
		call->node = target;
	}
	return pending;
}

static void client_router_answer(struct client_router *r, struct client_node *node,
				 struct client_call *calls, uint32_t count, bool idempotent,
				 const struct client_response *resp, uint64_t now)
{
	uint64_t slot = resp->request_id & 0xffffffff;
	struct client_call *call;

	if (resp->request_id >> 40 != (r->run_seq & 0xffffff) || slot >= count)
		return; /* A late answer from an earlier run. */
	call = &calls[slot];
	if (call->done || call->sent_id != resp->request_id || call->node != node->id)
		return;
	call->sent_id = 0;
	call->leader_hint = resp->leader_hint;
	if (resp->status == CLIENT_STATUS_NOT_LEADER || resp->status == CLIENT_STATUS_NO_SPACE ||
	    resp->status == CLIENT_STATUS_WITNESS ||
	    (resp->status == CLIENT_STATUS_ERROR && idempotent)) {
		uint64_t hint = resp->leader_hint;
		/* A witness holds no data: its hint is where to read. */
		bool follow = (resp->status == CLIENT_STATUS_NOT_LEADER ||
			       resp->status == CLIENT_STATUS_WITNESS) &&
			      hint != 0 && hint != node->id && client_router_node(r, hint) != NULL;

		call->attempts++;
		client_router_set_leader(r, call->req.group, follow ? hint : 0);
		/* Two nodes may point at each other for a moment: back off once
		 * every node has been tried. */
		call->retry_at_ms = now;
		if (!follow || call->attempts > r->nodes_count)
			call->retry_at_ms += client_backoff_ms(call->attempts);
		return;
	}
	if (call->req.op != CLIENT_OP_LOCAL_GET && call->req.op != CLIENT_OP_STALE_GET &&
	    call->req.op != CLIENT_OP_LEADER && call->req.op != CLIENT_OP_DIGEST &&
	    call->req.op != CLIENT_OP_CORRUPT && call->req.op != CLIENT_OP_CHECK_STATUS &&
	    call->req.op != CLIENT_OP_REBUILD && call->req.op != CLIENT_OP_JOIN &&
	    call->req.op != CLIENT_OP_MEMBERS && call->req.op != CLIENT_OP_DROP &&
	    resp->status != CLIENT_STATUS_ERROR && resp->status != CLIENT_STATUS_BAD_REQUEST)
		client_router_set_leader(r, call->req.group, node->id);
	call->status = resp->status;
	free(call->value);
	call->value = malloc((size_t)resp->value_size + 1);
	if (call->value == NULL) {
		client_call_finish(call, -ENOMEM);
		return;
	}
	if (resp->value_size > 0)
		memcpy(call->value, resp->value, resp->value_size);
	call->value_size = resp->value_size;
	client_call_finish(call, 0);
}

/* Read what node's connection has and hand each response to its call.
 * Returns 0 or -errno when the connection failed. */
static int client_router_drain(struct client_router *r, struct client_node *node,
			       struct client_call *calls, uint32_t count, bool idempotent,
			       uint64_t now)
{
	struct client_response resp;
	int rv = client_read(&node->conn);

	if (rv < 0 && rv != -EAGAIN)
		return rv;
	while ((rv = client_receive(&node->conn, &resp)) > 0)
		client_router_answer(r, node, calls, count, idempotent, &resp, now);
	return rv;
}

uint32_t client_router_run(struct client_router *r, struct client_call *calls, uint32_t count,
			   bool idempotent, int timeout_ms)
{
	uint64_t deadline = client_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	uint32_t answered = 0;

	r->run_seq++;
	for (uint32_t i = 0; i < count; i++)
		client_call_clear(&calls[i]);
	for (;;) {
		struct pollfd pfds[CLIENT_NODES_MAX];
		struct client_node *polled[CLIENT_NODES_MAX];
		uint64_t now = client_now_ms();
		uint32_t pfds_count = 0;

		if (client_router_dispatch(r, calls, count, now) == 0 || now >= deadline)
			break;
		for (uint32_t i = 0; i < r->nodes_count; i++) {
			struct client_node *node = &r->nodes[i];
			int rv;

			if (node->conn.fd < 0)
				continue;
			rv = client_flush(&node->conn);
			if (rv != 0 && rv != -EAGAIN) {
				client_router_drop(r, node, calls, count, idempotent, now);
				continue;
			}
			pfds[pfds_count] = (struct pollfd){
			    .fd = node->conn.fd, .events = POLLIN | (rv == -EAGAIN ? POLLOUT : 0)};
			polled[pfds_count++] = node;
		}
		uint64_t wait_ms =
		    deadline - now < CLIENT_POLL_MS ? deadline - now : CLIENT_POLL_MS;
		if (poll(pfds, pfds_count, (int)wait_ms) < 0 && errno != EINTR)
			break;
		now = client_now_ms();
		for (uint32_t i = 0; i < pfds_count; i++) {
			if ((pfds[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0)
				continue;
			if (client_router_drain(r, polled[i], calls, count, idempotent, now) != 0)
				client_router_drop(r, polled[i], calls, count, idempotent, now);
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		if (!calls[i].done)
			client_call_finish(&calls[i], -ETIMEDOUT);
		else if (calls[i].rv == 0)
			answered++;
	}
	return answered;
}
