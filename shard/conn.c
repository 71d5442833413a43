/* Incoming peer connections: receive, verify and decode frames. Decoded
 * messages and snapshot chunks go to the handlers the shard set
 * (shard->conn_step, shard->conn_chunk): this layer calls nothing above it.
 *
 * On an authenticated connection (a shared key) every frame is followed by
 * its tag (shard/auth.c), checked before anything in the frame is believed:
 * a frame whose tag fails (forged, altered, replayed, reordered, or from
 * another connection or direction) closes the connection, and nothing of it
 * or after it reaches a group. On a TLS connection every frame is sealed
 * instead (shard/seal.c): its checksum (over the encrypted body) is checked,
 * then the frame is decrypted in place and its tag checked, with the same
 * outcome on a failure.
 *
 * Memory: a connection's buffer grows as a frame's bytes arrive, never to
 * the size its header announces (a peer could announce 64 MiB and send
 * half). The bytes a shard's connections hold in frames not yet whole are
 * counted (partial_bytes); past SHARD_PARTIAL_MAX, two of the largest frame
 * a node sends, the connection holding the most is closed, counted
 * (peers_over_budget) and logged at most once a second. A live cluster holds
 * far less: a node cuts frames past SHARD_FRAME_BODY_SOFT (4 MiB) and sends
 * snapshots in SHARD_CHUNK_SIZE chunks, so a partial frame of a real peer
 * is a few MiB; a peer whose connection is closed dials again and sends
 * the messages anew (Raft retries). */
#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/auth.h"
#include "shard/shard_internal.h"

static_assert(SHARD_PARTIAL_MAX >= 2 * (uint64_t)WIRE_FRAME_SIZE_MAX,
	      "the largest frame a node sends passes with another one half way");

/* Count held bytes of c's input in the shard's partial_bytes. */
static void conn_hold(struct shard *s, struct conn *c, uint64_t held)
{
	ASSERT(s->partial_bytes >= c->partial); /* Every connection's bytes are in the sum. */
	s->partial_bytes = s->partial_bytes - c->partial + held;
	c->partial = held;
}

void conn_free(struct shard *s, struct conn *c)
{
	conn_hold(s, c, 0);
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] == c)
			s->conns[i] = NULL;
	close(c->fd);
	buf_free(&c->in);
	sodium_memzero(c->auth_key, sizeof(c->auth_key));
	seal_deinit(&c->seal);
	free(c);
}

static void conn_refuse(struct shard *s, struct conn *c, const char *why)
{
	log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
		  "closing connection from node %llu: %s", (unsigned long long)c->peer, why);
	stat_add(&s->stats.peers_refused, 1);
	c->closing = true;
}

/* A frame failed its tag: close, with a line naming the peer at most every
 * SHARD_AUTH_LOG_MS per shard (a flood of forgeries must not flood the log). */
static void conn_refuse_tag(struct shard *s, struct conn *c)
{
	stat_add(&s->stats.peers_refused, 1);
	c->closing = true;
	if (s->auth_logged_ms != 0 && s->now_ms < s->auth_logged_ms + SHARD_AUTH_LOG_MS) {
		s->auth_unlogged++;
		return;
	}
	log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
		  "closing connection from node %llu: frame %llu failed authentication "
		  "(forged, altered, replayed or reordered); %llu more such closes since the last "
		  "line (at most one line every %d ms)",
		  (unsigned long long)c->peer, (unsigned long long)c->auth_frames,
		  (unsigned long long)s->auth_unlogged, SHARD_AUTH_LOG_MS);
	s->auth_logged_ms = s->now_ms;
	s->auth_unlogged = 0;
}

/* Decode every message of a verified frame body. Returns 0 or -EPROTO. */
static int conn_frame(struct shard *s, struct conn *c, const uint8_t *body, size_t size)
{
	while (size > 0) {
		struct raft_snapshot_meta snap;
		struct raft_msg m;
		size_t used = 0;
		int rv = wire_msg_decode(body, size, &used, &m, s->dec_entries, s->dec_entries_cap,
					 &snap);

		if (rv == -E2BIG) {
			struct raft_entry *entries =
			    array_grow(s->dec_entries, &s->dec_entries_cap,
				       s->dec_entries_cap * 2 + 1024, sizeof(*entries), 8);

			if (entries == NULL)
				return -ENOMEM;
			s->dec_entries = entries;
			continue;
		}
		if (rv != 0)
			return rv;
		s->conn_step(s, c->peer, &m);
		body += used;
		size -= used;
	}
	return 0;
}

/* The beats of a WIRE_FRAME_HEARTBEATS body. Returns 0 or -EPROTO. */
static int conn_beats(struct shard *s, struct conn *c, const uint8_t *body, size_t size)
{
	if (size % WIRE_BEAT_SIZE != 0)
		return -EPROTO;
	for (size_t off = 0; off < size; off += WIRE_BEAT_SIZE) {
		struct raft_msg m;

		if (wire_beat_decode(body + off, c->peer, s->config.node_id, &m) != 0)
			return -EPROTO;
		s->conn_step(s, c->peer, &m);
	}
	return 0;
}

static int conn_body(struct shard *s, struct conn *c, uint32_t kind, const uint8_t *body,
		     size_t size)
{
	switch (kind) {
	case WIRE_FRAME_SNAPSHOT:
		return s->conn_chunk(s, c->peer, body, size);
	case WIRE_FRAME_HEARTBEATS:
		return conn_beats(s, c, body, size);
	default:
		return conn_frame(s, c, body, size);
	}
}

static void conn_recv_post(struct shard *s, struct conn *c);

/* The shard's partial frames hold more than SHARD_PARTIAL_MAX: close the
 * connection holding the most (c, being parsed, or another one), with a
 * line at most every SHARD_AUTH_LOG_MS. Returns whether c was closed. */
static bool conn_shed(struct shard *s, struct conn *c)
{
	struct conn *victim = c;
	uint64_t held;

	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] != NULL && !s->conns[i]->closing &&
		    s->conns[i]->partial > victim->partial)
			victim = s->conns[i];
	held = victim->partial;
	stat_add(&s->stats.peers_over_budget, 1);
	if (s->partial_logged_ms == 0 || s->now_ms >= s->partial_logged_ms + SHARD_AUTH_LOG_MS) {
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "closing connection from node %llu: it holds %llu bytes of a frame not "
			  "yet whole, the most of this shard's peer connections, which hold %llu "
			  "(at most %u); %llu more such closes since the last line",
			  (unsigned long long)victim->peer, (unsigned long long)held,
			  (unsigned long long)s->partial_bytes, (unsigned)SHARD_PARTIAL_MAX,
			  (unsigned long long)s->partial_unlogged);
		s->partial_logged_ms = s->now_ms;
		s->partial_unlogged = 0;
	} else {
		s->partial_unlogged++;
	}
	victim->closing = true;
	if (victim == c) {
		conn_free(s, c); /* Being parsed: no receive in flight. */
		return true;
	}
	/* Its bytes stop counting now; its memory goes when its receive
	 * completes, which shutdown() makes happen at once (or at its parse,
	 * later in this turn, when bytes came and wait for it). */
	conn_hold(s, victim, 0);
	shutdown(victim->fd, SHUT_RDWR);
	return false;
}

static void conn_recv_done(struct loop_op *op, int res)
{
	struct conn *c = container_of(op, struct conn, recv_op);
	struct shard *s = c->shard;

	ASSERT(c->ops > 0); /* Each completion ends an operation posted on c. */
	c->ops--;
	if (res <= 0 || c->closing || atomic_load(&s->stopping)) {
		conn_free(s, c);
		return;
	}
	stat_add(&s->stats.bytes_in, (uint64_t)res);
	c->in.len += (size_t)res;
	c->received = true; /* Parsed by the turn: see persist_durable_done() for why. */
}

void conn_parse(struct shard *s, struct conn *c)
{
	size_t off = 0;

	c->received = false;
	while (c->in.len - off >= WIRE_FRAME_HEADER_SIZE) {
		struct wire_frame_header h;
		size_t tag_size = c->auth ? AUTH_TAG_SIZE : c->seal.ctx != NULL ? SEAL_TAG_SIZE : 0;
		int rv = wire_frame_header_decode(&h, c->in.data + off);

		if (rv != 0) {
			conn_refuse(s, c, rv == -EMSGSIZE ? "frame too large" : "bad frame kind");
			break;
		}
		if (c->in.len - off < WIRE_FRAME_HEADER_SIZE + h.body_size + tag_size)
			break; /* The buffer grows as the rest comes: conn_recv_post(). */
		if (c->auth &&
		    !auth_frame_check(c->in.data + off + WIRE_FRAME_HEADER_SIZE + h.body_size,
				      c->auth_key, c->auth_frames, c->in.data + off,
				      WIRE_FRAME_HEADER_SIZE + h.body_size)) {
			conn_refuse_tag(s, c);
			break;
		}
		c->auth_frames++;
		if (wire_frame_verify(&h, c->in.data + off + WIRE_FRAME_HEADER_SIZE) != 0) {
			conn_refuse(s, c, "frame checksum mismatch");
			break;
		}
		/* Sealed: the checksum was of the encrypted body; open it in place. */
		if (c->seal.ctx != NULL &&
		    !seal_open(&c->seal, c->in.data + off, h.body_size,
			       c->in.data + off + WIRE_FRAME_HEADER_SIZE + h.body_size)) {
			conn_refuse_tag(s, c);
			break;
		}
		rv =
		    conn_body(s, c, h.kind, c->in.data + off + WIRE_FRAME_HEADER_SIZE, h.body_size);
		if (rv != 0) {
			/* Out of memory too: the peer sends it all again. */
			conn_refuse(s, c, rv == -ENOMEM ? "out of memory" : "malformed message");
			break;
		}
		off += WIRE_FRAME_HEADER_SIZE + h.body_size + tag_size;
	}
	if (c->closing) {
		conn_free(s, c);
		return;
	}
	if (off > 0) { /* Not the rest of a large frame onto itself, at each arrival. */
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
	conn_hold(s, c, c->in.len);
	if (s->partial_bytes > SHARD_PARTIAL_MAX && conn_shed(s, c))
		return; /* c itself was closed. */
	/* A burst (elections of thousands of groups, a catch-up) may have grown
	 * the buffer far past what the peer sends now: give the rest back. No
	 * receive is in flight here (the turn parses, then posts the next). */
	if (c->in.cap > SHARD_RECV_SIZE && c->in.len < c->in.cap / 16) {
		size_t cap = c->in.len > SHARD_RECV_SIZE ? c->in.len : SHARD_RECV_SIZE;
		uint8_t *p = realloc(c->in.data, cap);

		if (p != NULL) { /* Else the larger buffer stays. */
			c->in.data = p;
			c->in.cap = cap;
		}
	}
	conn_recv_post(s, c);
}

static void conn_recv_post(struct shard *s, struct conn *c)
{
	if (c->in.cap - c->in.len < 4096 && buf_reserve(&c->in, c->in.cap) != 0) {
		conn_free(s, c);
		return;
	}
	c->ops++;
	loop_recv(&s->loop, &c->recv_op, c->fd, c->in.data + c->in.len,
		  (uint32_t)(c->in.cap - c->in.len), 0, conn_recv_done);
}

void conn_adopt(struct shard *s, int fd, uint64_t peer, const uint8_t *session_key, bool seal)
{
	struct conn *c = calloc(1, sizeof(*c));
	int slot = -1;

	for (int i = 0; i < SHARD_CONNS_MAX && slot < 0; i++)
		if (s->conns[i] == NULL)
			slot = i;
	if (c == NULL || slot < 0 || buf_reserve(&c->in, SHARD_RECV_SIZE) != 0) {
		free(c);
		close(fd);
		return;
	}
	*c = (struct conn){.shard = s, .fd = fd, .peer = peer, .in = c->in};
	if (seal && seal_init(&c->seal, session_key, false) != 0) {
		buf_free(&c->in);
		free(c);
		close(fd); /* Out of memory: the peer dials again. */
		return;
	}
	c->auth = session_key != NULL && !seal;
	if (c->auth)
		memcpy(c->auth_key, session_key, sizeof(c->auth_key));
	s->conns[slot] = c;
	conn_recv_post(s, c);
}
