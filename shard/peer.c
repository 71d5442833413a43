/* Outgoing peer connections: one per peer node, dialled by the net thread,
 * carrying this shard's frames (messages, coalesced heartbeats, snapshot
 * chunks) with one send per peer per turn. They carry nothing back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/auth.h"
#include "shard/shard_internal.h"

_Static_assert(SHARD_FRAME_TAG_ROOM == AUTH_TAG_SIZE, "room for one tag after each frame");
_Static_assert(SHARD_FRAME_TAG_ROOM == SEAL_TAG_SIZE, "room for one seal tag after each frame");
_Static_assert(sizeof(((struct peer *)0)->auth_key) == AUTH_KEY_SIZE, "a session key");
_Static_assert(sizeof(((struct conn *)0)->auth_key) == AUTH_KEY_SIZE, "a session key");
_Static_assert(sizeof(((struct shard_req *)0)->session_key) == AUTH_KEY_SIZE, "a session key");

#ifdef FLOTILLA_TEST_HOOKS
_Atomic int peer_test_flip_sealed;
#endif

struct peer *peer_find_any(struct shard *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].id == id)
			return &s->peers[i];
	return NULL;
}

struct peer *peer_find(struct shard *s, uint64_t id)
{
	struct peer *p = peer_find_any(s, id);

	return p != NULL && !p->gone ? p : NULL;
}

/* Room for size bytes of messages in the peer's open frame, or NULL when
 * the message is dropped: the peer is not connected or too far behind. */
uint8_t *peer_reserve(struct shard *s, struct peer *p, size_t size)
{
	uint8_t *at;

	if (p->state != PEER_UP || p->out.len + p->flight.len + size > SHARD_OUT_SIZE_MAX) {
		stat_add(&s->stats.msgs_dropped, 1);
		return NULL; /* Raft retransmits what is lost. */
	}
	if (p->frame_start != SIZE_MAX &&
	    p->out.len - p->frame_start - WIRE_FRAME_HEADER_SIZE + size > SHARD_FRAME_BODY_SOFT)
		peer_frame_close(p);
	if (buf_reserve(&p->out, size + WIRE_FRAME_HEADER_SIZE + SHARD_FRAME_TAG_ROOM) != 0) {
		stat_add(&s->stats.msgs_dropped, 1);
		return NULL;
	}
	if (p->frame_start == SIZE_MAX) {
		p->frame_start = p->out.len;
		p->out.len += WIRE_FRAME_HEADER_SIZE;
	}
	at = p->out.data + p->out.len;
	p->out.len += size;
	return at;
}

void peer_queue(struct shard *s, struct peer *p, const struct raft_msg *m)
{
	size_t size;
	uint8_t *at;

	if (wire_msg_is_beat(m)) {
		/* The heartbeats of all groups to this peer leave as one frame of
		 * 40-byte beats per turn (DESIGN: liveness is per host). */
		if (p->state != PEER_UP ||
		    p->out.len + p->flight.len + p->beats.len + WIRE_BEAT_SIZE >
			SHARD_OUT_SIZE_MAX ||
		    buf_reserve(&p->beats, WIRE_BEAT_SIZE) != 0) {
			stat_add(&s->stats.msgs_dropped, 1);
			return;
		}
		wire_beat_encode(m, p->beats.data + p->beats.len);
		p->beats.len += WIRE_BEAT_SIZE;
		return;
	}
	size = wire_msg_size(m);
	at = peer_reserve(s, p, size);
	if (at)
		wire_msg_encode(m, at);
}

/* Queue size bytes of an encoded message to peer, as peer_queue() would: a
 * message to an unknown, down or too slow peer is dropped. */
void peer_queue_encoded(struct shard *s, uint64_t peer, const uint8_t *msg, size_t size)
{
	struct peer *p = peer_find(s, peer);
	uint8_t *at = p ? peer_reserve(s, p, size) : NULL;

	if (at)
		memcpy(at, msg, size);
}

static void peer_close(struct shard *s, struct peer *p, const char *why)
{
	if (p->state != PEER_UP)
		return;
	log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
		  "connection to node %llu lost: %s", (unsigned long long)p->id, why);
	p->state = PEER_CLOSING;
	shutdown(p->fd, SHUT_RDWR); /* Completes the outstanding probe and send. */
}

static void peer_maybe_closed(struct shard *s, struct peer *p)
{
	if (p->state != PEER_CLOSING || p->ops > 0)
		return;
	close(p->fd);
	p->fd = -1;
	seal_deinit(&p->seal);
	p->out.len = p->flight.len = p->beats.len = 0;
	p->frame_start = SIZE_MAX;
	p->sending = false;
	p->state = PEER_DOWN;
	if (p->gone) {
		p->redial_ms = UINT64_MAX; /* Removed from the address book. */
		return;
	}
	/* A connection that lasted is dialled again at once (a refusal then
	 * proves the process gone). One closed soon after it came up (a peer
	 * accepting while it stops, or dropping us after the handshake) is
	 * dialled again only after the backoff, which doubles: no storm of
	 * connections, nor of these lines. */
	if (s->now_ms >= p->up_ms + SHARD_REDIAL_MAX_MS) {
		p->backoff_ms = SHARD_REDIAL_MIN_MS;
		p->redial_ms = s->now_ms;
	} else {
		p->redial_ms = s->now_ms + p->backoff_ms;
		p->backoff_ms = p->backoff_ms * 2 > SHARD_REDIAL_MAX_MS ? SHARD_REDIAL_MAX_MS
									: p->backoff_ms * 2;
	}
}

static void peer_send_done(struct loop_op *op, int res)
{
	struct peer *p = container_of(op, struct peer, send_op);
	struct shard *s = p->shard;

	ASSERT(p->ops > 0); /* Each completion ends an operation posted on p. */
	p->ops--;
	if (res <= 0) {
		p->sending = false;
		peer_close(s, p, res == 0 ? "send wrote nothing" : strerror(-res));
		peer_maybe_closed(s, p);
		return;
	}
	stat_add(&s->stats.bytes_out, (uint64_t)res);
	p->flight_sent += (size_t)res;
	if (p->flight_sent < p->flight.len && p->state == PEER_UP) {
		/* A short send: the rest goes out next. */
		p->ops++;
		loop_send(&s->loop, &p->send_op, p->fd, p->flight.data + p->flight_sent,
			  (uint32_t)(p->flight.len - p->flight_sent), 0, peer_send_done);
		return;
	}
	p->sending = false;
	buf_trim(&p->flight, p->flight.len);
	p->flight.len = 0;
	peer_maybe_closed(s, p);
}

/* One send per peer per turn: the frames gathered this turn go out together. */
void peer_send(struct shard *s, struct peer *p)
{
	struct buf tmp;

	if (p->state != PEER_UP || p->sending || (p->out.len == 0 && p->beats.len == 0))
		return;
	peer_frame_close(p);
	if (p->beats.len > 0) {
		size_t body = p->beats.len, start = p->out.len;

		if (body > WIRE_FRAME_SIZE_MAX)
			body = WIRE_FRAME_SIZE_MAX / WIRE_BEAT_SIZE * WIRE_BEAT_SIZE;
		if (buf_reserve(&p->out, WIRE_FRAME_HEADER_SIZE + body + SHARD_FRAME_TAG_ROOM) ==
		    0) {
			memcpy(p->out.data + start + WIRE_FRAME_HEADER_SIZE, p->beats.data, body);
			p->out.len += WIRE_FRAME_HEADER_SIZE + body;
			peer_frame_seal(p, start, WIRE_FRAME_HEARTBEATS);
		}
		p->beats.len = 0; /* Any beyond a frame are dropped: the next round comes. */
		buf_trim(&p->beats, body);
	}
	tmp = p->flight;
	p->flight = p->out;
	p->out = tmp;
	p->out.len = 0;
	p->flight_sent = 0;
	p->sending = true;
	p->sent_ms = s->now_ms; /* Liveness: see liveness_ping(). */
	p->ops++;
	loop_send(&s->loop, &p->send_op, p->fd, p->flight.data, (uint32_t)p->flight.len, 0,
		  peer_send_done);
}

/* Our outgoing connections carry no data towards us: a completed receive on
 * one means the peer closed it (or reset it). */
static void peer_probe_done(struct loop_op *op, int res)
{
	struct peer *p = container_of(op, struct peer, probe_op);

	ASSERT(p->ops > 0); /* Each completion ends an operation posted on p. */
	p->ops--;
	peer_close(p->shard, p,
		   res == 0  ? "closed by peer"
		   : res < 0 ? strerror(-res)
			     : "unexpected data");
	peer_maybe_closed(p->shard, p);
}

static void peer_groups_event(struct shard *s, uint64_t node, bool up)
{
	for (uint64_t i = 0; i < s->table_cap; i++) {
		struct group *g = s->table[i];

		if (g == NULL)
			continue;
		if (up)
			raft_peer_up(&g->raft, node);
		else
			raft_peer_down(&g->raft, node, s->now_ms);
		table_dirty(s, g);
	}
}

void peer_connected(struct shard *s, struct peer *p, int fd, const uint8_t *session_key, bool seal)
{
	if (p->state == PEER_UP || p->state == PEER_CLOSING) {
		close(fd); /* Lost a race with an older dial; keep the one we have. */
		return;
	}
	if (p->gone || p->dial_epoch != p->epoch) {
		/* Removed, or readdressed, while the dial was under way: that
		 * socket goes to an address no longer in the book. */
		close(fd);
		p->state = PEER_DOWN;
		p->redial_ms = p->gone ? UINT64_MAX : s->now_ms;
		return;
	}
	ASSERT(p->out.len == 0 && p->flight.len == 0); /* No frame of the last connection. */
	ASSERT(p->seal.ctx == NULL);                   /* Freed when the last one closed. */
	if (seal && seal_init(&p->seal, session_key, true) != 0) {
		close(fd); /* Out of memory: dialled again later. */
		p->state = PEER_DOWN;
		p->redial_ms = s->now_ms + p->backoff_ms;
		return;
	}
	p->auth = session_key != NULL && !seal;
	if (p->auth)
		memcpy(p->auth_key, session_key, sizeof(p->auth_key));
	p->auth_frames = 0; /* A new connection counts its frames from 0. */
	p->fd = fd;
	p->state = PEER_UP;
	p->up_ms = s->now_ms;
	p->frame_start = SIZE_MAX;
	p->ops++;
	loop_recv(&s->loop, &p->probe_op, fd, &p->probe_byte, 1, 0, peer_probe_done);
	log_shard(&s->config.log, LOG_LEVEL_DEBUG, s->config.shard_index,
		  "connection to node %llu up", (unsigned long long)p->id);
	if (p->reported_down) {
		p->reported_down = false;
		log_shard(&s->config.log, LOG_LEVEL_INFO, s->config.shard_index,
			  "node %llu is back", (unsigned long long)p->id);
		peer_groups_event(s, p->id, true);
	}
}

void peer_dial_failed(struct shard *s, struct peer *p, int err)
{
	if (p->state != PEER_DIALING)
		return;
	p->state = PEER_DOWN;
	/* Only a refused connection is evidence that the process is gone: a
	 * timeout may be a slow network, and must not release leader stickiness
	 * (see raft_peer_down). */
	if (err == ECONNREFUSED && !p->reported_down) {
		p->reported_down = true;
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "node %llu refuses connections: down", (unsigned long long)p->id);
		peer_groups_event(s, p->id, false);
	}
	if (p->gone) {
		p->redial_ms = UINT64_MAX;
		return;
	}
	if (p->dial_epoch != p->epoch) {
		p->redial_ms = s->now_ms; /* The new address, at once. */
		return;
	}
	p->redial_ms = s->now_ms + p->backoff_ms;
	p->backoff_ms =
	    p->backoff_ms * 2 > SHARD_REDIAL_MAX_MS ? SHARD_REDIAL_MAX_MS : p->backoff_ms * 2;
}

void peer_dial_all(struct shard *s)
{
	for (uint32_t i = 0; i < s->peers_count; i++) {
		struct peer *p = &s->peers[i];

		if (p->state != PEER_DOWN || s->now_ms < p->redial_ms)
			continue; /* A removed peer's redial_ms is UINT64_MAX. */
		p->state = PEER_DIALING;
		p->dial_epoch = p->epoch;
		s->config.dial(s->config.dial_arg, s->config.node_id, s->config.shard_index, p->id);
	}
}

/* Seal the peer's open message frame so that a chunk frame can follow it. */
void peer_frame_close(struct peer *p)
{
	size_t start = p->frame_start;

	if (start == SIZE_MAX)
		return;
	p->frame_start = SIZE_MAX;
	peer_frame_seal(p, start, WIRE_FRAME_RAFT);
}

void peer_frame_seal(struct peer *p, size_t start, uint32_t kind)
{
	size_t size = p->out.len - start; /* Header and body. */

	ASSERT(size >= WIRE_FRAME_HEADER_SIZE);
	ASSERT(p->frame_start == SIZE_MAX); /* The frame sealed is the last one. */
	wire_frame_seal(p->out.data + start, kind, (uint32_t)(size - WIRE_FRAME_HEADER_SIZE));
	if (p->seal.ctx != NULL) {
		/* Room was reserved with the frame (SHARD_FRAME_TAG_ROOM). */
		ASSERT(p->out.cap - p->out.len >= SEAL_TAG_SIZE);
		seal_frame(&p->seal, p->out.data + start, kind,
			   (uint32_t)(size - WIRE_FRAME_HEADER_SIZE), p->out.data + p->out.len);
		p->out.len += SEAL_TAG_SIZE;
#ifdef FLOTILLA_TEST_HOOKS
		/* An attacker on the wire: one bit of the body flipped, and the
		 * checksum (unkeyed) made right again; only the seal tells. */
		if (size > WIRE_FRAME_HEADER_SIZE && atomic_load(&peer_test_flip_sealed) > 0 &&
		    atomic_fetch_sub(&peer_test_flip_sealed, 1) > 0) {
			p->out.data[start + WIRE_FRAME_HEADER_SIZE] ^= 1;
			wire_frame_seal(p->out.data + start, kind,
					(uint32_t)(size - WIRE_FRAME_HEADER_SIZE));
		}
#endif
		return;
	}
	if (!p->auth)
		return;
	/* Room was reserved with the frame (SHARD_FRAME_TAG_ROOM). */
	ASSERT(p->out.cap - p->out.len >= AUTH_TAG_SIZE);
	auth_frame_tag(p->out.data + p->out.len, p->auth_key, p->auth_frames++, p->out.data + start,
		       size);
	p->out.len += AUTH_TAG_SIZE;
}

/* Forget p: close our connection and theirs; the slot stays until its
 * operations end (they point into it), then may be reused. */
static void peer_forget(struct shard *s, struct peer *p)
{
	p->gone = true;
	p->redial_ms = UINT64_MAX;
	p->suspected = false;
	peer_close(s, p, "removed from the address book");
	peer_maybe_closed(s, p);
	for (int i = 0; i < SHARD_CONNS_MAX; i++) {
		struct conn *c = s->conns[i];

		if (c != NULL && c->peer == p->id && !c->closing) {
			c->closing = true; /* Freed by its receive's end or the next parse. */
			shutdown(c->fd, SHUT_RDWR);
		}
	}
}

/* A slot for a peer new to this shard: a free one, or NULL. */
static struct peer *peer_slot_new(struct shard *s)
{
	struct peer *p = NULL;

	for (uint32_t i = 0; i < s->peers_count && p == NULL; i++)
		if (s->peers[i].gone && s->peers[i].state == PEER_DOWN && s->peers[i].ops == 0)
			p = &s->peers[i];
	if (p == NULL && s->peers_count < SHARD_PEERS_MAX)
		p = &s->peers[s->peers_count++];
	if (p == NULL)
		return NULL;
	buf_free(&p->out);
	buf_free(&p->flight);
	buf_free(&p->beats);
	seal_deinit(&p->seal);
	*p = (struct peer){.shard = s, .fd = -1, .frame_start = SIZE_MAX};
	return p;
}

void peer_book_apply(struct shard *s, const struct shard_book_entry *entries, uint32_t count)
{
	for (uint32_t i = 0; i < s->peers_count; i++) {
		struct peer *p = &s->peers[i];
		bool kept = false;

		for (uint32_t j = 0; j < count && !kept; j++)
			kept = entries[j].id == p->id;
		if (!kept && !p->gone)
			peer_forget(s, p);
	}
	for (uint32_t j = 0; j < count; j++) {
		struct peer *p = peer_find_any(s, entries[j].id);

		if (p != NULL && !p->gone && p->epoch == entries[j].epoch)
			continue; /* Unchanged. */
		if (p == NULL && (p = peer_slot_new(s)) == NULL) {
			log_shard(&s->config.log, LOG_LEVEL_ERROR, s->config.shard_index,
				  "no room for node %llu: %u peer slots in use",
				  (unsigned long long)entries[j].id, (unsigned)SHARD_PEERS_MAX);
			continue;
		}
		if (p->id == 0) { /* New: suspected by nobody until it had time to talk. */
			p->id = entries[j].id;
			p->heard_ms = s->now_ms;
		}
		p->gone = false;
		p->epoch = entries[j].epoch;
		p->backoff_ms = SHARD_REDIAL_MIN_MS;
		/* A connection to the old address closes, then is dialled again
		 * at once (peer_maybe_closed); one being dialled is dropped when
		 * it comes (peer_connected); a peer down is dialled now. */
		if (p->state == PEER_UP)
			peer_close(s, p, "its address changed");
		else if (p->state == PEER_DOWN)
			p->redial_ms = s->now_ms;
	}
}

uint32_t peer_states(struct shard *s, struct shard_peer_state *states)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < s->peers_count && n < FL_PEERS_MAX; i++) {
		struct peer *p = &s->peers[i];

		if (p->gone)
			continue;
		states[n] = (struct shard_peer_state){.id = p->id, .out_up = p->state == PEER_UP};
		for (int c = 0; c < SHARD_CONNS_MAX && !states[n].in_up; c++)
			states[n].in_up = s->conns[c] != NULL && s->conns[c]->peer == p->id &&
					  !s->conns[c]->closing;
		n++;
	}
	return n;
}
