/* flotilla-node's count of client connections per source address, so that
 * one address cannot take every connection (--client-conns-per-source-max).
 *
 * One table for the node, shared by the client threads under one lock: it
 * is touched once when a connection is accepted and once when it closes,
 * never per request. Open addressing with linear probing, keyed by the
 * address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form); a slot holds an
 * address while it has open connections. The table has at least twice as
 * many slots as connections may be open (--client-conns-max), so it is at
 * most half full and every probe ends at an empty slot. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/assert.h"
#include "tools/node_internal.h"

static uint32_t node_sources_home(const struct node_sources *t, const uint8_t addr[16])
{
	return (uint32_t)XXH3_64bits(addr, 16) & (t->cap - 1);
}

/* The slot holding addr, or the empty slot where it would go. */
static struct node_source_slot *node_sources_probe(struct node_sources *t, const uint8_t addr[16])
{
	uint32_t i = node_sources_home(t, addr);

	for (uint32_t n = 0; n < t->cap; n++, i = (i + 1) & (t->cap - 1)) {
		struct node_source_slot *slot = &t->slots[i];

		if (slot->count == 0 || memcmp(slot->addr, addr, 16) == 0)
			return slot;
	}
	ASSERT(false); /* At most half full: a probe always meets an empty slot. */
	return NULL;
}

int node_sources_init(struct node_sources *t, uint32_t conns_max)
{
	uint32_t cap = 16;

	memset(t, 0, sizeof(*t));
	while (cap < 2 * (uint64_t)conns_max + 2)
		cap *= 2;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (t->slots == NULL)
		return -ENOMEM;
	t->cap = cap;
	t->conns_max = conns_max;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void node_sources_deinit(struct node_sources *t)
{
	if (t->slots == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->slots);
	t->slots = NULL;
}

void node_sources_key(const struct sockaddr_storage *addr, uint8_t key[16])
{
	memset(key, 0, 16);
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

		key[10] = key[11] = 0xff; /* ::ffff:a.b.c.d */
		memcpy(key + 12, &in->sin_addr, 4);
	} else if (addr->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
	}
}

bool node_sources_take(struct node_sources *t, const uint8_t key[16], uint32_t max, uint32_t *open)
{
	struct node_source_slot *slot;
	bool taken = false;

	pthread_mutex_lock(&t->lock);
	ASSERT(t->used < t->conns_max); /* The caller holds a slot of --client-conns-max. */
	slot = node_sources_probe(t, key);
	*open = slot->count;
	if (slot->count < max) {
		if (slot->count == 0) {
			memcpy(slot->addr, key, 16);
			t->used++;
		}
		slot->count++;
		taken = true;
	}
	pthread_mutex_unlock(&t->lock);
	return taken;
}

/* Remove by re-placing the rest of the run, so that probes need no
 * tombstones (as shard/table.c does). */
void node_sources_give(struct node_sources *t, const uint8_t key[16])
{
	struct node_source_slot *slot;
	uint32_t i;

	pthread_mutex_lock(&t->lock);
	slot = node_sources_probe(t, key);
	ASSERT(slot->count > 0); /* Given back once for each take. */
	if (--slot->count > 0)
		goto out;
	t->used--;
	i = (uint32_t)(slot - t->slots);
	for (uint32_t j = (i + 1) & (t->cap - 1); t->slots[j].count != 0;
	     j = (j + 1) & (t->cap - 1)) {
		struct node_source_slot moved = t->slots[j];

		t->slots[j].count = 0;
		*node_sources_probe(t, moved.addr) = moved;
	}
out:
	pthread_mutex_unlock(&t->lock);
}
