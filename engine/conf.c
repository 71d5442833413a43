/* Memberships: lookups, edits and the byte form carried by CONF entries.
 *
 * CONF ENTRY PAYLOAD: little-endian, 8-byte header then 16 bytes per member.
 *    0: u32 members_count  at most RAFT_MEMBERS_MAX
 *    4: u32 flags          bit 0: joint
 *    8 + 16*i: u64 id      nonzero, unique
 *   16 + 16*i: u8 role, u8 role_old, 6 bytes zero
 * Decoding checks every field: a CONF entry comes from the network or the disk. */
#include <errno.h>
#include <string.h>

#include "base/le.h"
#include "engine/raft.h"

#define CONF_HEADER_SIZE 8
#define CONF_MEMBER_SIZE 16
#define CONF_FLAG_JOINT  1u

enum raft_member_role raft_conf_role(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id == id)
			return (enum raft_member_role)conf->members[i].role;
	return RAFT_MEMBER_NONE;
}

bool raft_conf_is_voter(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];

		if (m->id != id)
			continue;
		return m->role == RAFT_MEMBER_VOTER || m->role == RAFT_MEMBER_WITNESS ||
		       m->role_old == RAFT_MEMBER_VOTER || m->role_old == RAFT_MEMBER_WITNESS;
	}
	return false;
}

int raft_conf_add(struct raft_conf *conf, uint64_t id, enum raft_member_role role)
{
	if (id == RAFT_NONE || role == RAFT_MEMBER_NONE || role > RAFT_MEMBER_WITNESS)
		return -EINVAL;
	for (uint32_t i = 0; i < conf->members_count; i++) {
		if (conf->members[i].id == id) {
			conf->members[i].role = (uint8_t)role;
			return 0;
		}
	}
	if (conf->members_count == RAFT_MEMBERS_MAX)
		return -ENOSPC;
	conf->members[conf->members_count++] =
	    (struct raft_member){.id = id, .role = (uint8_t)role, .role_old = RAFT_MEMBER_NONE};
	return 0;
}

uint32_t raft_conf_encoded_size(const struct raft_conf *conf)
{
	return CONF_HEADER_SIZE + CONF_MEMBER_SIZE * conf->members_count;
}

void raft_conf_encode(const struct raft_conf *conf, void *buf)
{
	uint8_t *p = buf;

	le_put32(p, conf->members_count);
	le_put32(p + 4, conf->joint ? CONF_FLAG_JOINT : 0);
	p += CONF_HEADER_SIZE;
	for (uint32_t i = 0; i < conf->members_count; i++, p += CONF_MEMBER_SIZE) {
		memset(p, 0, CONF_MEMBER_SIZE);
		le_put64(p, conf->members[i].id);
		p[8] = conf->members[i].role;
		p[9] = conf->members[i].role_old;
	}
}

int raft_conf_decode(struct raft_conf *conf, const void *buf, uint32_t size)
{
	const uint8_t *p = buf;
	uint32_t count, flags;

	if (size < CONF_HEADER_SIZE)
		return -EINVAL;
	count = le_get32(p);
	flags = le_get32(p + 4);
	if (count > RAFT_MEMBERS_MAX || (flags & ~CONF_FLAG_JOINT) != 0 ||
	    size != CONF_HEADER_SIZE + CONF_MEMBER_SIZE * count)
		return -EINVAL;
	memset(conf, 0, sizeof(*conf));
	conf->joint = (flags & CONF_FLAG_JOINT) != 0;
	p += CONF_HEADER_SIZE;
	for (uint32_t i = 0; i < count; i++, p += CONF_MEMBER_SIZE) {
		struct raft_member m = {.id = le_get64(p), .role = p[8], .role_old = p[9]};

		if (m.id == RAFT_NONE || m.role > RAFT_MEMBER_WITNESS ||
		    m.role_old > RAFT_MEMBER_WITNESS || (!conf->joint && m.role_old != 0) ||
		    (m.role == RAFT_MEMBER_NONE && m.role_old == RAFT_MEMBER_NONE))
			return -EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (conf->members[j].id == m.id)
				return -EINVAL;
		conf->members[i] = m;
	}
	conf->members_count = count;
	return 0;
}
