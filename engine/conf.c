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

#include "base/assert.h"
#include "base/le.h"
#include "engine/raft.h"

#define CONF_HEADER_SIZE 8
#define CONF_MEMBER_SIZE 16
#define CONF_FLAG_JOINT  1u

_Static_assert(RAFT_MEMBERS_MAX <= UINT32_MAX / CONF_MEMBER_SIZE, "encoded sizes fit a u32");
_Static_assert(RAFT_MEMBER_WITNESS <= UINT8_MAX, "roles fit one byte");
_Static_assert(sizeof(((struct raft_member *)0)->role) == 1, "role is one byte on the wire");

static void conf_decode_check(const struct raft_conf *conf, const void *buf);

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
	ASSERT(conf->members_count <= RAFT_MEMBERS_MAX);
	return CONF_HEADER_SIZE + CONF_MEMBER_SIZE * conf->members_count;
}

void raft_conf_encode(const struct raft_conf *conf, void *buf)
{
	uint8_t *p = buf;

	/* Our own membership: anything out of range here is a bug. */
	ASSERT(conf->members_count <= RAFT_MEMBERS_MAX);
	le_put32(p, conf->members_count);
	le_put32(p + 4, conf->joint ? CONF_FLAG_JOINT : 0);
	p += CONF_HEADER_SIZE;
	for (uint32_t i = 0; i < conf->members_count; i++, p += CONF_MEMBER_SIZE) {
		ASSERT(conf->members[i].id != RAFT_NONE);
		ASSERT(conf->members[i].role <= RAFT_MEMBER_WITNESS);
		ASSERT(conf->members[i].role_old <= RAFT_MEMBER_WITNESS);
		memset(p, 0, CONF_MEMBER_SIZE);
		le_put64(p, conf->members[i].id);
		p[8] = conf->members[i].role;
		p[9] = conf->members[i].role_old;
	}
	ASSERT(p == (uint8_t *)buf + raft_conf_encoded_size(conf));
	conf_decode_check(conf, buf);
}

/* Paired check: what was encoded decodes back to the same membership. */
static void conf_decode_check(const struct raft_conf *conf, const void *buf)
{
#ifdef NDEBUG
	(void)conf;
	(void)buf;
#else
	struct raft_conf back;

	DEBUG_ASSERT(raft_conf_decode(&back, buf, raft_conf_encoded_size(conf)) == 0);
	DEBUG_ASSERT(back.members_count == conf->members_count);
	DEBUG_ASSERT(back.joint == conf->joint);
	for (uint32_t i = 0; i < conf->members_count; i++) {
		DEBUG_ASSERT(back.members[i].id == conf->members[i].id);
		DEBUG_ASSERT(back.members[i].role == conf->members[i].role);
		DEBUG_ASSERT(back.members[i].role_old == conf->members[i].role_old);
	}
#endif
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
