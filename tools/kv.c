/* The key-value state machine: command codec, per-group maps, apply and get.
 *
 * The maps are open-addressing hash tables with linear probing, written here.
 * Debian ships C hash maps (uthash-dev, libck-dev), but uthash is a set of
 * intrusive macros and ck_ht a concurrent table with its own memory hooks;
 * both would add a build dependency for about a hundred lines of code. Keys
 * hash with XXH3-64, which the project already links. A table holds at most
 * 3/4 of its slots and doubles when it would hold more; deletion shifts later
 * entries of the probe run back, so there are no tombstones and lookups stay
 * short after many deletes.
 *
 * Locking: the group table is read-locked to find a group and write-locked
 * only to add one (the first write to a group). Each group's map has its own
 * mutex. Apply runs on the group's shard thread and reads may come from any
 * thread, so the mutex is almost always uncontended. */
#include "tools/kv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/le.h"

#define KV_MAP_SLOTS_MIN    16u
#define KV_GROUPS_SLOTS_MIN 64u

/* One key and its value, allocated together: key bytes, then value bytes. */
struct kv_item {
	uint64_t hash;
	uint32_t key_size;
	uint32_t value_size;
	unsigned char bytes[];
};

struct kv_group {
	uint64_t id;
	pthread_mutex_t lock;
	struct kv_item **slots; /* NULL is empty. */
	uint32_t slots_count;   /* A power of two. */
	uint32_t items_count;
	/* The apply path's record, for kv_digest_get(). */
	uint64_t applied_count;
	uint64_t last_applied_index;
	uint64_t digest;
	uint64_t order_violations;
	uint64_t state_sum; /* Sum of kv_item_digest() over the map (kv_state_digest). */
	/* Frozen views (kv_freeze) share the items of the map: while one is
	 * out, an item replaced or removed is kept in retired, and freed when
	 * the last view is released. Items never change once in the map. */
	uint32_t views;
	uint32_t retired_count, retired_cap;
	struct kv_item **retired;
};

static void kv_oom(void)
{
	/* Skipping a committed command would make this replica diverge. */
	fprintf(stderr, "kv: out of memory while applying a committed entry\n");
	abort();
}

static uint32_t kv_expected_bytes(const struct kv_cmd *cmd)
{
	return cmd->expected_size == KV_ABSENT ? 0 : cmd->expected_size;
}

uint32_t kv_cmd_size(const struct kv_cmd *cmd)
{
	uint64_t size =
	    (uint64_t)KV_CMD_HEADER_SIZE + cmd->key_size + kv_expected_bytes(cmd) + cmd->value_size;

	return size > UINT32_MAX ? 0 : (uint32_t)size;
}

void kv_cmd_encode(const struct kv_cmd *cmd, void *buf)
{
	unsigned char *p = buf;
	uint32_t expected_bytes = kv_expected_bytes(cmd);

	le_put32(p, cmd->op);
	le_put32(p + 4, cmd->key_size);
	le_put32(p + 8, cmd->expected_size);
	le_put32(p + 12, cmd->value_size);
	p += KV_CMD_HEADER_SIZE;
	if (cmd->key_size > 0)
		memcpy(p, cmd->key, cmd->key_size);
	p += cmd->key_size;
	if (expected_bytes > 0)
		memcpy(p, cmd->expected, expected_bytes);
	p += expected_bytes;
	if (cmd->value_size > 0)
		memcpy(p, cmd->value, cmd->value_size);
}

int kv_cmd_decode(const void *buf, uint32_t size, struct kv_cmd *cmd)
{
	const unsigned char *p = buf;
	uint64_t need;

	if (size < KV_CMD_HEADER_SIZE)
		return -EBADMSG;
	cmd->op = le_get32(p);
	cmd->key_size = le_get32(p + 4);
	cmd->expected_size = le_get32(p + 8);
	cmd->value_size = le_get32(p + 12);
	if (cmd->key_size > KV_KEY_SIZE_MAX)
		return -EBADMSG;
	switch (cmd->op) {
	case KV_OP_PUT:
		if (cmd->expected_size != 0)
			return -EBADMSG;
		break;
	case KV_OP_DELETE:
		if (cmd->expected_size != 0 || cmd->value_size != 0)
			return -EBADMSG;
		break;
	case KV_OP_CAS:
		break;
	default:
		return -EBADMSG;
	}
	need =
	    (uint64_t)KV_CMD_HEADER_SIZE + cmd->key_size + kv_expected_bytes(cmd) + cmd->value_size;
	if (need != size)
		return -EBADMSG;
	cmd->key = p + KV_CMD_HEADER_SIZE;
	cmd->expected = p + KV_CMD_HEADER_SIZE + cmd->key_size;
	cmd->value = p + KV_CMD_HEADER_SIZE + cmd->key_size + kv_expected_bytes(cmd);
	return 0;
}

static uint64_t kv_hash_key(const void *key, uint32_t key_size)
{
	return XXH3_64bits(key, key_size);
}

static uint64_t kv_hash_group(uint64_t group)
{
	return XXH3_64bits(&group, sizeof(group));
}

/* --- One group's map. --- */

static bool kv_item_matches(const struct kv_item *item, uint64_t hash, const void *key,
			    uint32_t key_size)
{
	return item->hash == hash && item->key_size == key_size &&
	       (key_size == 0 || memcmp(item->bytes, key, key_size) == 0);
}

/* Slot of key, or of the empty slot where it would go. The table is never full. */
static uint32_t kv_map_find(const struct kv_group *g, uint64_t hash, const void *key,
			    uint32_t key_size)
{
	uint32_t mask = g->slots_count - 1;
	uint32_t slot = (uint32_t)hash & mask;

	while (g->slots[slot] != NULL && !kv_item_matches(g->slots[slot], hash, key, key_size))
		slot = (slot + 1) & mask;
	return slot;
}

static int kv_map_grow(struct kv_group *g)
{
	uint32_t count = g->slots_count * 2;
	struct kv_item **slots = calloc(count, sizeof(*slots));

	if (slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < g->slots_count; i++) {
		struct kv_item *item = g->slots[i];
		uint32_t slot;

		if (item == NULL)
			continue;
		slot = (uint32_t)item->hash & (count - 1);
		while (slots[slot] != NULL)
			slot = (slot + 1) & (count - 1);
		slots[slot] = item;
	}
	free(g->slots);
	g->slots = slots;
	g->slots_count = count;
	return 0;
}

static struct kv_item *kv_item_new(uint64_t hash, const void *key, uint32_t key_size,
				   const void *value, uint32_t value_size)
{
	struct kv_item *item = malloc(sizeof(*item) + (size_t)key_size + value_size);

	if (item == NULL)
		return NULL;
	item->hash = hash;
	item->key_size = key_size;
	item->value_size = value_size;
	if (key_size > 0)
		memcpy(item->bytes, key, key_size);
	if (value_size > 0)
		memcpy(item->bytes + key_size, value, value_size);
	return item;
}

/* One item's share of the state digest: its key and value. */
static uint64_t kv_item_digest(const struct kv_item *item)
{
	return XXH3_64bits_withSeed(item->bytes, (size_t)item->key_size + item->value_size,
				    item->hash ^ item->key_size);
}

/* An item left g's map: free it, or keep it for the views that may still
 * read it. Caller holds g->lock. */
static void kv_item_retire(struct kv_group *g, struct kv_item *item)
{
	if (g->views == 0) {
		free(item);
		return;
	}
	if (g->retired_count == g->retired_cap) {
		uint32_t cap = g->retired_cap ? g->retired_cap * 2 : 64;
		struct kv_item **grown = realloc(g->retired, cap * sizeof(*grown));

		if (grown == NULL)
			kv_oom();
		g->retired = grown;
		g->retired_cap = cap;
	}
	g->retired[g->retired_count++] = item;
}

/* Insert or replace. Returns 0 or -ENOMEM (then the map is unchanged). */
static int kv_map_put(struct kv_group *g, const void *key, uint32_t key_size, const void *value,
		      uint32_t value_size)
{
	uint64_t hash = kv_hash_key(key, key_size);
	struct kv_item *item = kv_item_new(hash, key, key_size, value, value_size);
	uint32_t slot;

	if (item == NULL)
		return -ENOMEM;
	slot = kv_map_find(g, hash, key, key_size);
	if (g->slots[slot] != NULL) {
		g->state_sum -= kv_item_digest(g->slots[slot]);
		g->state_sum += kv_item_digest(item);
		kv_item_retire(g, g->slots[slot]);
		g->slots[slot] = item;
		return 0;
	}
	/* Keep the load at most 3/4, so probe runs stay short and one slot is free. */
	if ((uint64_t)(g->items_count + 1) * 4 > (uint64_t)g->slots_count * 3) {
		if (kv_map_grow(g) != 0) {
			free(item);
			return -ENOMEM;
		}
		slot = kv_map_find(g, hash, key, key_size);
	}
	g->slots[slot] = item;
	g->items_count++;
	g->state_sum += kv_item_digest(item);
	return 0;
}

/* Remove the item at slot, then move later items of its probe run back into
 * the hole when their home slot allows it (backward-shift deletion). */
static void kv_map_remove_at(struct kv_group *g, uint32_t slot)
{
	uint32_t mask = g->slots_count - 1;
	uint32_t hole = slot;
	uint32_t next = (slot + 1) & mask;

	g->state_sum -= kv_item_digest(g->slots[slot]);
	kv_item_retire(g, g->slots[slot]);
	g->slots[slot] = NULL;
	g->items_count--;
	while (g->slots[next] != NULL) {
		uint32_t home = (uint32_t)g->slots[next]->hash & mask;

		/* The item at next may move to hole iff hole lies on its probe
		 * path, i.e. cyclically in [home, next). */
		if (((next - home) & mask) >= ((next - hole) & mask)) {
			g->slots[hole] = g->slots[next];
			g->slots[next] = NULL;
			hole = next;
		}
		next = (next + 1) & mask;
	}
}

static struct kv_group *kv_group_new(uint64_t id)
{
	struct kv_group *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->slots = calloc(KV_MAP_SLOTS_MIN, sizeof(*g->slots));
	if (g->slots == NULL) {
		free(g);
		return NULL;
	}
	g->id = id;
	g->slots_count = KV_MAP_SLOTS_MIN;
	pthread_mutex_init(&g->lock, NULL);
	return g;
}

static void kv_group_free(struct kv_group *g)
{
	for (uint32_t i = 0; i < g->slots_count; i++)
		free(g->slots[i]);
	free(g->slots);
	for (uint32_t i = 0; i < g->retired_count; i++)
		free(g->retired[i]);
	free(g->retired);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* --- The group table. --- */

/* Caller holds kv->lock (read or write). */
static uint32_t kv_groups_find(const struct kv *kv, uint64_t id)
{
	uint32_t mask = kv->groups_slots - 1;
	uint32_t slot = (uint32_t)kv_hash_group(id) & mask;

	while (kv->groups[slot] != NULL && kv->groups[slot]->id != id)
		slot = (slot + 1) & mask;
	return slot;
}

static struct kv_group *kv_group_lookup(struct kv *kv, uint64_t id)
{
	struct kv_group *g;

	pthread_rwlock_rdlock(&kv->lock);
	g = kv->groups[kv_groups_find(kv, id)];
	pthread_rwlock_unlock(&kv->lock);
	return g;
}

/* Caller holds kv->lock for writing. */
static int kv_groups_grow(struct kv *kv)
{
	uint32_t count = kv->groups_slots * 2;
	struct kv_group **groups = calloc(count, sizeof(*groups));

	if (groups == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < kv->groups_slots; i++) {
		struct kv_group *g = kv->groups[i];
		uint32_t slot;

		if (g == NULL)
			continue;
		slot = (uint32_t)kv_hash_group(g->id) & (count - 1);
		while (groups[slot] != NULL)
			slot = (slot + 1) & (count - 1);
		groups[slot] = g;
	}
	free(kv->groups);
	kv->groups = groups;
	kv->groups_slots = count;
	return 0;
}

/* The map of group id, created if it does not exist yet; NULL when out of memory. */
static struct kv_group *kv_group_get(struct kv *kv, uint64_t id)
{
	struct kv_group *g = kv_group_lookup(kv, id);
	uint32_t slot;

	if (g != NULL)
		return g;
	pthread_rwlock_wrlock(&kv->lock);
	slot = kv_groups_find(kv, id);
	g = kv->groups[slot];
	if (g != NULL)
		goto out; /* Another thread added it between the two locks. */
	if ((uint64_t)(kv->groups_count + 1) * 4 > (uint64_t)kv->groups_slots * 3) {
		if (kv_groups_grow(kv) != 0)
			goto out;
		slot = kv_groups_find(kv, id);
	}
	g = kv_group_new(id);
	if (g == NULL)
		goto out;
	kv->groups[slot] = g;
	kv->groups_count++;
out:
	pthread_rwlock_unlock(&kv->lock);
	return g;
}

int kv_init(struct kv *kv)
{
	memset(kv, 0, sizeof(*kv));
	kv->groups = calloc(KV_GROUPS_SLOTS_MIN, sizeof(*kv->groups));
	if (kv->groups == NULL)
		return -ENOMEM;
	kv->groups_slots = KV_GROUPS_SLOTS_MIN;
	pthread_rwlock_init(&kv->lock, NULL);
	return 0;
}

void kv_deinit(struct kv *kv)
{
	for (uint32_t i = 0; i < kv->groups_slots; i++)
		if (kv->groups[i] != NULL)
			kv_group_free(kv->groups[i]);
	free(kv->groups);
	pthread_rwlock_destroy(&kv->lock);
	memset(kv, 0, sizeof(*kv));
}

/* --- Apply and read. --- */

/* Caller holds g->lock. */
static uint64_t kv_apply_cmd(struct kv_group *g, const struct kv_cmd *cmd)
{
	uint64_t hash = kv_hash_key(cmd->key, cmd->key_size);
	uint32_t slot = kv_map_find(g, hash, cmd->key, cmd->key_size);
	struct kv_item *item = g->slots[slot];

	switch (cmd->op) {
	case KV_OP_PUT:
		break;
	case KV_OP_DELETE:
		if (item == NULL)
			return KV_RESULT_NOT_FOUND;
		kv_map_remove_at(g, slot);
		return KV_RESULT_OK;
	case KV_OP_CAS:
		if (cmd->expected_size == KV_ABSENT) {
			if (item != NULL)
				return KV_RESULT_CAS_MISMATCH;
			break;
		}
		if (item == NULL)
			return KV_RESULT_NOT_FOUND;
		if (item->value_size != cmd->expected_size ||
		    (cmd->expected_size > 0 &&
		     memcmp(item->bytes + item->key_size, cmd->expected, cmd->expected_size) != 0))
			return KV_RESULT_CAS_MISMATCH;
		break;
	default:
		return KV_RESULT_BAD_ENTRY; /* kv_cmd_decode let no other op through. */
	}
	if (kv_map_put(g, cmd->key, cmd->key_size, cmd->value, cmd->value_size) != 0)
		kv_oom();
	return KV_RESULT_OK;
}

/* Fold entry into g's digest (KV_DIGEST in kv.h) and check that indexes
 * strictly increase: the library hands each committed entry to apply once,
 * in log order. A violation is counted and logged, not fatal, so the tests
 * that read it through DIGEST can report every replica's view. Caller holds
 * g->lock. */
static void kv_record_applied(struct kv_group *g, const struct fl_entry *entry)
{
	unsigned char header[16];
	uint64_t seed;

	if (g->applied_count > 0 && entry->index <= g->last_applied_index) {
		g->order_violations++;
		fprintf(stderr, "kv: group %llu applied index %llu after %llu\n",
			(unsigned long long)g->id, (unsigned long long)entry->index,
			(unsigned long long)g->last_applied_index);
	}
	le_put64(header, entry->index);
	le_put64(header + 8, entry->term);
	seed = XXH3_64bits_withSeed(header, sizeof(header), g->digest);
	g->digest = XXH3_64bits_withSeed(entry->data, entry->size, seed);
	g->applied_count++;
	g->last_applied_index = entry->index;
}

void kv_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
	      uint64_t *results)
{
	struct kv *kv = ctx;
	struct kv_group *g;

	if (count == 0)
		return;
	g = kv_group_get(kv, group);
	if (g == NULL)
		kv_oom();
	pthread_mutex_lock(&g->lock);
	for (uint32_t i = 0; i < count; i++) {
		struct kv_cmd cmd;

		kv_record_applied(g, &entries[i]);
		/* A malformed entry is rejected the same way on every replica. */
		if (kv_cmd_decode(entries[i].data, entries[i].size, &cmd) != 0)
			results[i] = KV_RESULT_BAD_ENTRY;
		else
			results[i] = kv_apply_cmd(g, &cmd);
	}
	pthread_mutex_unlock(&g->lock);
}

int kv_get(struct kv *kv, uint64_t group, const void *key, uint32_t key_size, void **value,
	   uint32_t *value_size)
{
	struct kv_group *g = kv_group_lookup(kv, group);
	struct kv_item *item;
	int rv = -ENOENT;

	*value = NULL;
	*value_size = 0;
	if (g == NULL)
		return -ENOENT;
	pthread_mutex_lock(&g->lock);
	item = g->slots[kv_map_find(g, kv_hash_key(key, key_size), key, key_size)];
	if (item == NULL)
		goto out;
	/* malloc(0) may return NULL; one spare byte keeps NULL meaning failure. */
	*value = malloc((size_t)item->value_size + 1);
	if (*value == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	if (item->value_size > 0)
		memcpy(*value, item->bytes + item->key_size, item->value_size);
	*value_size = item->value_size;
	rv = 0;
out:
	pthread_mutex_unlock(&g->lock);
	return rv;
}

uint64_t kv_keys_count(struct kv *kv, uint64_t group)
{
	struct kv_group *g = kv_group_lookup(kv, group);
	uint64_t count;

	if (g == NULL)
		return 0;
	pthread_mutex_lock(&g->lock);
	count = g->items_count;
	pthread_mutex_unlock(&g->lock);
	return count;
}

void kv_digest_get(struct kv *kv, uint64_t group, struct kv_digest *digest)
{
	struct kv_group *g = kv_group_lookup(kv, group);

	memset(digest, 0, sizeof(*digest));
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	digest->applied_count = g->applied_count;
	digest->last_applied_index = g->last_applied_index;
	digest->digest = g->digest;
	digest->order_violations = g->order_violations;
	digest->keys_count = g->items_count;
	pthread_mutex_unlock(&g->lock);
}

uint64_t kv_state_digest(void *ctx, uint64_t group)
{
	struct kv_group *g = kv_group_lookup(ctx, group);
	uint64_t sum = 0, count = 0;

	if (g != NULL) {
		pthread_mutex_lock(&g->lock);
		sum = g->state_sum;
		count = g->items_count;
		pthread_mutex_unlock(&g->lock);
	}
	return XXH3_64bits_withSeed(&count, sizeof(count), sum);
}

#ifdef FLOTILLA_TEST_HOOKS
int kv_corrupt_local(struct kv *kv, uint64_t group, const void *key, uint32_t key_size,
		     const void *value, uint32_t value_size)
{
	struct kv_group *g = kv_group_get(kv, group);
	int rv;

	if (g == NULL)
		return -ENOMEM;
	if (key_size > KV_KEY_SIZE_MAX)
		return -EINVAL;
	pthread_mutex_lock(&g->lock);
	rv = kv_map_put(g, key, key_size, value, value_size);
	pthread_mutex_unlock(&g->lock);
	return rv;
}
#endif

/* KV SNAPSHOT: what kv_save() writes for one group, little-endian.
 *    0: u32 magic            KV_SNAPSHOT_MAGIC
 *    4: u32 zero
 *    8: u64 applied_count   the apply path's record (kv_digest), so that a
 *   16: u64 last_applied_index   replica restored from a snapshot reports the
 *   24: u64 digest               same DIGEST as one that applied every entry
 *   32: u64 order_violations
 *   40: u64 items_count
 *   48: items, each u32 key_size | u32 value_size | key | value. */
#define KV_SNAPSHOT_MAGIC  0x3153564bu /* "KVS1" */
#define KV_SNAPSHOT_HEADER 48
#define KV_RESTORE_STEP    (1u << 20) /* Bytes an item's buffer grows by while read. */

static void kv_snapshot_header(const struct kv_group *g, unsigned char *header)
{
	memset(header, 0, KV_SNAPSHOT_HEADER);
	le_put64(header, KV_SNAPSHOT_MAGIC);
	le_put64(header + 8, g->applied_count);
	le_put64(header + 16, g->last_applied_index);
	le_put64(header + 24, g->digest);
	le_put64(header + 32, g->order_violations);
	le_put64(header + 40, g->items_count);
}

int kv_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w)
{
	struct kv_group *g = kv_group_get(ctx, group);
	unsigned char header[KV_SNAPSHOT_HEADER];
	int rv;

	if (g == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&g->lock);
	kv_snapshot_header(g, header);
	rv = fl_snapshot_write(w, header, sizeof(header));
	for (uint32_t i = 0; i < g->slots_count && rv == 0; i++) {
		const struct kv_item *item = g->slots[i];
		unsigned char sizes[8];

		if (item == NULL)
			continue;
		le_put64(sizes, (uint64_t)item->key_size | (uint64_t)item->value_size << 32);
		rv = fl_snapshot_write(w, sizes, sizeof(sizes));
		if (rv == 0)
			rv = fl_snapshot_write(w, item->bytes,
					       (size_t)item->key_size + item->value_size);
	}
	pthread_mutex_unlock(&g->lock);
	return rv;
}

/* A frozen view: the snapshot header and the items of the map at the
 * consistent point (shared with the map; see kv_item_retire()). */
struct kv_view {
	struct kv_group *g;
	unsigned char header[KV_SNAPSHOT_HEADER];
	uint32_t count;
	struct kv_item *items[];
};

int kv_freeze(void *ctx, uint64_t group, void **view)
{
	struct kv_group *g = kv_group_get(ctx, group);
	struct kv_view *v;
	uint32_t n = 0;

	if (g == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&g->lock);
	v = malloc(sizeof(*v) + (size_t)g->items_count * sizeof(v->items[0]));
	if (v == NULL) {
		pthread_mutex_unlock(&g->lock);
		return -ENOMEM;
	}
	v->g = g;
	kv_snapshot_header(g, v->header);
	for (uint32_t i = 0; i < g->slots_count; i++)
		if (g->slots[i] != NULL)
			v->items[n++] = g->slots[i];
	v->count = n;
	g->views++;
	pthread_mutex_unlock(&g->lock);
	*view = v;
	return 0;
}

/* Snapshot thread: the items are not freed while the view is out, and never
 * change, so they are read without the group's lock. */
int kv_save_view(void *ctx, uint64_t group, void *view, struct fl_snapshot_writer *w)
{
	const struct kv_view *v = view;
	int rv = fl_snapshot_write(w, v->header, sizeof(v->header));

	(void)ctx;
	(void)group;
	for (uint32_t i = 0; i < v->count && rv == 0; i++) {
		const struct kv_item *item = v->items[i];
		unsigned char sizes[8];

		le_put64(sizes, (uint64_t)item->key_size | (uint64_t)item->value_size << 32);
		rv = fl_snapshot_write(w, sizes, sizeof(sizes));
		if (rv == 0)
			rv = fl_snapshot_write(w, item->bytes,
					       (size_t)item->key_size + item->value_size);
	}
	return rv;
}

void kv_release(void *ctx, uint64_t group, void *view)
{
	struct kv_view *v = view;
	struct kv_group *g = v->g;
	struct kv_item **retired = NULL;
	uint32_t count = 0;

	(void)ctx;
	(void)group;
	pthread_mutex_lock(&g->lock);
	if (--g->views == 0) {
		retired = g->retired;
		count = g->retired_count;
		g->retired = NULL;
		g->retired_count = g->retired_cap = 0;
	}
	pthread_mutex_unlock(&g->lock);
	for (uint32_t i = 0; i < count; i++)
		free(retired[i]);
	free(retired);
	free(v);
}

static int kv_read_exact(struct fl_snapshot_reader *r, void *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		long n = fl_snapshot_read(r, (char *)buf + got, size - got);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EBADMSG;
		got += (size_t)n;
	}
	return 0;
}

/* Read an item of size bytes into *buf, growing it by at most
 * KV_RESTORE_STEP bytes ahead of what has arrived: a size field larger
 * than the snapshot then fails at the snapshot's end (-EBADMSG) instead of
 * allocating what it claims. */
static int kv_read_item(struct fl_snapshot_reader *r, unsigned char **buf, uint64_t size)
{
	uint64_t got = 0;

	do {
		uint64_t step = size - got < KV_RESTORE_STEP ? size - got : KV_RESTORE_STEP;
		unsigned char *grown = realloc(*buf, (size_t)(got + step) + 1);
		int rv;

		if (grown == NULL)
			return -ENOMEM;
		*buf = grown;
		rv = kv_read_exact(r, *buf + got, (size_t)step);
		if (rv != 0)
			return rv;
		got += step;
	} while (got < size);
	return 0;
}

/* Size fresh's table for items at once. A snapshot lists items in the slot
 * order of the map that saved it, that is by hash: inserted so into a table
 * that starts small and doubles, they pile up in long probe runs (restoring
 * 640,000 items took 15 s); in a table of the final size each lands near
 * its home slot. Returns 0, -EBADMSG (more items than a map holds) or
 * -ENOMEM. */
#define KV_RESERVE_MAX (1u << 22) /* Items a restore sizes its table for at most. */

static int kv_map_reserve(struct kv_group *fresh, uint64_t items)
{
	uint32_t count = KV_MAP_SLOTS_MIN;
	struct kv_item **slots;

	if (items > (1u << 30))
		return -EBADMSG;
	/* The count is the file's word: a damaged one must not size the table
	 * (4 GiB for 2^30 items). Past KV_RESERVE_MAX items the map grows as
	 * they arrive. */
	if (items > KV_RESERVE_MAX)
		items = KV_RESERVE_MAX;
	while ((uint64_t)count * 3 < items * 4)
		count *= 2;
	if (count == fresh->slots_count)
		return 0;
	slots = calloc(count, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	free(fresh->slots); /* Empty. */
	fresh->slots = slots;
	fresh->slots_count = count;
	return 0;
}

/* Load a snapshot's items into fresh, a map no one else sees. */
static int kv_load_items(struct kv_group *fresh, struct fl_snapshot_reader *r, uint64_t items)
{
	unsigned char sizes[8];
	unsigned char *buf = NULL;
	int rv = kv_map_reserve(fresh, items);

	for (uint64_t i = 0; i < items && rv == 0; i++) {
		uint64_t both;
		uint32_t key_size, value_size;

		rv = kv_read_exact(r, sizes, sizeof(sizes));
		if (rv != 0)
			break;
		both = le_get64(sizes);
		key_size = (uint32_t)both;
		value_size = (uint32_t)(both >> 32);
		if (key_size > KV_KEY_SIZE_MAX) {
			rv = -EBADMSG;
			break;
		}
		rv = kv_read_item(r, &buf, (uint64_t)key_size + value_size);
		if (rv == 0)
			rv = kv_map_put(fresh, buf, key_size, buf + key_size, value_size);
	}
	free(buf);
	return rv;
}

/* The whole snapshot is read into a fresh map first and swapped in only
 * once it loaded: a restore that fails leaves the group as it was. */
int kv_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r)
{
	struct kv_group *g = kv_group_get(ctx, group);
	unsigned char header[KV_SNAPSHOT_HEADER];
	struct kv_group *fresh;
	struct kv_item **slots;
	uint32_t slots_count;
	int rv;

	if (g == NULL)
		return -ENOMEM;
	rv = kv_read_exact(r, header, sizeof(header));
	if (rv != 0)
		return rv;
	if (le_get64(header) != KV_SNAPSHOT_MAGIC)
		return -EBADMSG;
	fresh = kv_group_new(group);
	if (fresh == NULL)
		return -ENOMEM;
	rv = kv_load_items(fresh, r, le_get64(header + 40));
	if (rv != 0) {
		kv_group_free(fresh);
		return rv;
	}
	pthread_mutex_lock(&g->lock);
	slots = g->slots;
	slots_count = g->slots_count;
	g->slots = fresh->slots;
	g->slots_count = fresh->slots_count;
	g->items_count = fresh->items_count;
	g->state_sum = fresh->state_sum;
	g->applied_count = le_get64(header + 8);
	g->last_applied_index = le_get64(header + 16);
	g->digest = le_get64(header + 24);
	g->order_violations = le_get64(header + 32);
	for (uint32_t i = 0; i < slots_count; i++)
		if (slots[i] != NULL)
			kv_item_retire(g, slots[i]); /* A view may still read them. */
	pthread_mutex_unlock(&g->lock);
	free(slots);
	fresh->slots = NULL;
	fresh->slots_count = 0;
	kv_group_free(fresh);
	return 0;
}
