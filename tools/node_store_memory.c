/* The in-memory store of flotilla-node: every group's map lives in the
 * process (tools/kv.c) and is rebuilt at start from the group's last
 * snapshot and the log after it. Each operation forwards to kv.c, whose
 * header documents it. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "tools/node_store.h"

struct node_store_memory {
	struct node_store store; /* First: the node holds a pointer to it. */
	struct kv kv;
};

static struct kv *node_store_memory_kv(struct node_store *store)
{
	return &((struct node_store_memory *)(void *)store)->kv;
}

static int node_store_memory_open(const char *data_dir, struct node_store **store)
{
	struct node_store_memory *m = calloc(1, sizeof(*m));
	int rv;

	(void)data_dir; /* Nothing on disk: the library's snapshots hold it. */
	if (m == NULL)
		return -ENOMEM;
	rv = kv_init(&m->kv);
	if (rv != 0) {
		free(m);
		return rv;
	}
	m->store.ops = &node_store_memory_ops;
	*store = &m->store;
	return 0;
}

static void node_store_memory_close(struct node_store *store)
{
	kv_deinit(node_store_memory_kv(store));
	free(store);
}

static void node_store_memory_apply(struct node_store *store, uint64_t group,
				    const struct fl_entry *entries, uint32_t count,
				    uint64_t *results)
{
	kv_apply(node_store_memory_kv(store), group, entries, count, results);
}

static int node_store_memory_get(struct node_store *store, uint64_t group, const void *key,
				 uint32_t key_size, void **value, uint32_t *value_size)
{
	return kv_get(node_store_memory_kv(store), group, key, key_size, value, value_size);
}

static void node_store_memory_apply_digest(struct node_store *store, uint64_t group,
					   struct kv_digest *digest)
{
	kv_digest_get(node_store_memory_kv(store), group, digest);
}

static uint64_t node_store_memory_state_digest(struct node_store *store, uint64_t group)
{
	return kv_state_digest(node_store_memory_kv(store), group);
}

static int node_store_memory_save(struct node_store *store, uint64_t group,
				  struct fl_snapshot_writer *w)
{
	return kv_save(node_store_memory_kv(store), group, w);
}

static int node_store_memory_restore(struct node_store *store, uint64_t group,
				     struct fl_snapshot_reader *r)
{
	return kv_restore(node_store_memory_kv(store), group, r);
}

static int node_store_memory_freeze(struct node_store *store, uint64_t group, void **view)
{
	return kv_freeze(node_store_memory_kv(store), group, view);
}

static int node_store_memory_save_view(struct node_store *store, uint64_t group, void *view,
				       struct fl_snapshot_writer *w)
{
	return kv_save_view(node_store_memory_kv(store), group, view, w);
}

static void node_store_memory_release(struct node_store *store, uint64_t group, void *view)
{
	kv_release(node_store_memory_kv(store), group, view);
}

#ifdef FLOTILLA_TEST_HOOKS
static int node_store_memory_corrupt(struct node_store *store, uint64_t group, const void *key,
				     uint32_t key_size, const void *value, uint32_t value_size)
{
	return kv_corrupt_local(node_store_memory_kv(store), group, key, key_size, value,
				value_size);
}
#endif

const struct node_store_ops node_store_memory_ops = {
    .name = "memory",
    .open = node_store_memory_open,
    .close = node_store_memory_close,
    .apply = node_store_memory_apply,
    .get = node_store_memory_get,
    .apply_digest = node_store_memory_apply_digest,
    .state_digest = node_store_memory_state_digest,
    .save = node_store_memory_save,
    .restore = node_store_memory_restore,
    .freeze = node_store_memory_freeze,
    .save_view = node_store_memory_save_view,
    .release = node_store_memory_release,
#ifdef FLOTILLA_TEST_HOOKS
    .corrupt = node_store_memory_corrupt,
#endif
};
