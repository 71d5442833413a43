/* Values of client answers (tools/client.h): the DIGEST, MEMBERS,
 * STALE_GET, NODE_STATUS and RECOVER figures that travel in a response's value,
 * little-endian as docs/client-protocol.md specifies them. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "base/le.h"
#include "tools/client.h"

void client_digest_encode(const struct client_digest *digest, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, digest->applied_count);
	le_put64(p + 8, digest->last_applied_index);
	le_put64(p + 16, digest->digest);
	le_put64(p + 24, digest->order_violations);
	le_put64(p + 32, digest->keys_count);
}

int client_digest_decode(const void *value, uint32_t size, struct client_digest *digest)
{
	const unsigned char *p = value;

	memset(digest, 0, sizeof(*digest));
	if (size != CLIENT_DIGEST_SIZE)
		return -EBADMSG;
	digest->applied_count = le_get64(p);
	digest->last_applied_index = le_get64(p + 8);
	digest->digest = le_get64(p + 16);
	digest->order_violations = le_get64(p + 24);
	digest->keys_count = le_get64(p + 32);
	return 0;
}

uint32_t client_members_size(const struct client_members *m)
{
	return CLIENT_MEMBERS_HEADER_SIZE + CLIENT_MEMBER_SIZE * m->members_count;
}

void client_members_encode(const struct client_members *m, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, m->leader);
	le_put64(p + 8, m->term);
	le_put64(p + 16, m->commit_index);
	le_put64(p + 24, m->last_index);
	le_put64(p + 32, m->conf_index);
	le_put32(p + 40, m->flags);
	le_put32(p + 44, m->members_count);
	p += CLIENT_MEMBERS_HEADER_SIZE;
	for (uint32_t i = 0; i < m->members_count; i++, p += CLIENT_MEMBER_SIZE) {
		le_put64(p, m->members[i].id);
		le_put64(p + 8, m->members[i].match);
		le_put32(p + 16, m->members[i].role);
		le_put32(p + 20, m->members[i].role_old);
	}
}

int client_members_decode(const void *value, uint32_t size, struct client_members *m)
{
	const unsigned char *p = value;

	memset(m, 0, sizeof(*m));
	if (size < CLIENT_MEMBERS_HEADER_SIZE)
		return -EBADMSG;
	m->members_count = le_get32(p + 44);
	if (m->members_count > CLIENT_MEMBERS_MAX || size != client_members_size(m)) {
		m->members_count = 0;
		return -EBADMSG;
	}
	m->leader = le_get64(p);
	m->term = le_get64(p + 8);
	m->commit_index = le_get64(p + 16);
	m->last_index = le_get64(p + 24);
	m->conf_index = le_get64(p + 32);
	m->flags = le_get32(p + 40);
	p += CLIENT_MEMBERS_HEADER_SIZE;
	for (uint32_t i = 0; i < m->members_count; i++, p += CLIENT_MEMBER_SIZE) {
		m->members[i].id = le_get64(p);
		m->members[i].match = le_get64(p + 8);
		m->members[i].role = le_get32(p + 16);
		m->members[i].role_old = le_get32(p + 20);
	}
	return 0;
}

uint32_t client_members_role(const struct client_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->members_count; i++)
		if (m->members[i].id == id)
			return m->members[i].role;
	return CLIENT_ROLE_NONE;
}

void client_stale_encode(const struct client_stale *st, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, st->applied_index);
	le_put64(p + 8, st->leader_commit);
	le_put64(p + 16, st->entries_behind);
	le_put64(p + 24, st->contact_age_ms);
}

int client_stale_decode(const void *value, uint32_t size, struct client_stale *st)
{
	const unsigned char *p = value;

	memset(st, 0, sizeof(*st));
	if (size < CLIENT_STALE_SIZE)
		return -EBADMSG;
	st->applied_index = le_get64(p);
	st->leader_commit = le_get64(p + 8);
	st->entries_behind = le_get64(p + 16);
	st->contact_age_ms = le_get64(p + 24);
	return 0;
}

static_assert(CLIENT_NODE_STATUS_SIZE == 9 * 8 + 2 * 4, "nine u64 then two u32");

void client_node_status_encode(const struct client_node_status *st, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, st->node_id);
	le_put64(p + 8, st->groups);
	le_put64(p + 16, st->leaders);
	le_put64(p + 24, st->leaderless);
	le_put64(p + 32, st->repairing);
	le_put64(p + 40, st->checks);
	le_put64(p + 48, st->divergences);
	le_put64(p + 56, st->lag_max);
	le_put64(p + 64, st->writes_refused_no_space);
	le_put32(p + 72, st->shards_count);
	le_put32(p + 76, st->shards_no_space);
}

int client_node_status_decode(const void *value, uint32_t size, struct client_node_status *st)
{
	const unsigned char *p = value;

	memset(st, 0, sizeof(*st));
	if (size < CLIENT_NODE_STATUS_SIZE)
		return -EBADMSG;
	st->node_id = le_get64(p);
	st->groups = le_get64(p + 8);
	st->leaders = le_get64(p + 16);
	st->leaderless = le_get64(p + 24);
	st->repairing = le_get64(p + 32);
	st->checks = le_get64(p + 40);
	st->divergences = le_get64(p + 48);
	st->lag_max = le_get64(p + 56);
	st->writes_refused_no_space = le_get64(p + 64);
	st->shards_count = le_get32(p + 72);
	st->shards_no_space = le_get32(p + 76);
	return 0;
}

uint32_t client_recover_size(const struct client_recover *r)
{
	return CLIENT_RECOVER_HEADER_SIZE + 8 * r->dropped_count;
}

void client_recover_encode(const struct client_recover *r, void *buf)
{
	unsigned char *p = buf;

	le_put64(p, r->term_before);
	le_put64(p + 8, r->term);
	le_put64(p + 16, r->commit_before);
	le_put64(p + 24, r->last_before);
	le_put64(p + 32, r->conf_index);
	le_put32(p + 40, r->dropped_count);
	le_put32(p + 44, 0);
	for (uint32_t i = 0; i < r->dropped_count; i++)
		le_put64(p + CLIENT_RECOVER_HEADER_SIZE + 8 * i, r->dropped[i]);
}

int client_recover_decode(const void *value, uint32_t size, struct client_recover *r)
{
	const unsigned char *p = value;

	memset(r, 0, sizeof(*r));
	if (size < CLIENT_RECOVER_HEADER_SIZE)
		return -EBADMSG;
	r->dropped_count = le_get32(p + 40);
	if (r->dropped_count > CLIENT_MEMBERS_MAX || size != client_recover_size(r)) {
		r->dropped_count = 0;
		return -EBADMSG;
	}
	r->term_before = le_get64(p);
	r->term = le_get64(p + 8);
	r->commit_before = le_get64(p + 16);
	r->last_before = le_get64(p + 24);
	r->conf_index = le_get64(p + 32);
	for (uint32_t i = 0; i < r->dropped_count; i++)
		r->dropped[i] = le_get64(p + CLIENT_RECOVER_HEADER_SIZE + 8 * i);
	return 0;
}

uint32_t client_peers_encode(const struct client_peer *peers, uint32_t count, void *buf)
{
	unsigned char *p = buf;
	uint32_t off = CLIENT_PEERS_HEADER_SIZE;

	le_put32(p, count);
	le_put32(p + 4, 0);
	for (uint32_t i = 0; i < count; i++) {
		size_t addr_size = strnlen(peers[i].addr, CLIENT_PEER_ADDR_MAX);
		size_t client_size = strnlen(peers[i].client_addr, CLIENT_PEER_CLIENT_MAX);

		le_put64(p + off, peers[i].id);
		le_put32(p + off + 8, peers[i].flags);
		le_put16(p + off + 12, (uint16_t)addr_size);
		le_put16(p + off + 14, (uint16_t)client_size);
		off += CLIENT_PEER_HEADER_SIZE;
		memcpy(p + off, peers[i].addr, addr_size);
		off += (uint32_t)addr_size;
		memcpy(p + off, peers[i].client_addr, client_size);
		off += (uint32_t)client_size;
	}
	return off;
}

int client_peers_decode(const void *value, uint32_t size, struct client_peer *peers, uint32_t max,
			uint32_t *count)
{
	const unsigned char *p = value;
	uint32_t off = CLIENT_PEERS_HEADER_SIZE, n;

	*count = 0;
	if (size < CLIENT_PEERS_HEADER_SIZE)
		return -EBADMSG;
	n = le_get32(p);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t addr_size, client_size;

		if (size - off < CLIENT_PEER_HEADER_SIZE)
			return -EBADMSG;
		addr_size = le_get16(p + off + 12);
		client_size = le_get16(p + off + 14);
		if (addr_size > CLIENT_PEER_ADDR_MAX || client_size > CLIENT_PEER_CLIENT_MAX ||
		    size - off - CLIENT_PEER_HEADER_SIZE < addr_size + client_size)
			return -EBADMSG;
		if (i < max) {
			struct client_peer *q = &peers[i];

			memset(q, 0, sizeof(*q));
			q->id = le_get64(p + off);
			q->flags = le_get32(p + off + 8);
			memcpy(q->addr, p + off + CLIENT_PEER_HEADER_SIZE, addr_size);
			memcpy(q->client_addr, p + off + CLIENT_PEER_HEADER_SIZE + addr_size,
			       client_size);
		}
		off += CLIENT_PEER_HEADER_SIZE + addr_size + client_size;
	}
	*count = n;
	return 0;
}
