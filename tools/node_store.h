/* The key-value store behind flotilla-node: what the node needs from the
 * state machine that holds each group's keys, so that more than one kind of
 * store can serve the same client protocol (--store NAME picks one).
 *
 * Every store applies the same log: KV commands (tools/kv.h, KV COMMAND)
 * in log order, writing one KV_RESULT_* per entry, so replicas built on
 * different stores agree entry by entry. Its snapshots and its digests are
 * its own: a cluster runs one kind of store on every node.
 *
 * Threads: apply, save, restore, freeze and state_digest run on the group's
 * shard thread (the library's fl_sm_ops contract); save_view and release
 * on the snapshot thread; get, apply_digest and corrupt on any thread. The
 * node wires the fl_sm_ops callbacks to these with ctx = the node, so a
 * store never sees the library's context pointer. */
#ifndef TOOLS_NODE_STORE_H
#define TOOLS_NODE_STORE_H

#include <stdint.h>

#include "flotilla.h"
#include "tools/kv.h"

struct node_store_ops;

/* The head of every store: an implementation embeds it first and recovers
 * itself from it (container_of). */
struct node_store {
	const struct node_store_ops *ops;
};

struct node_store_ops {
	const char *name; /* What --store selects. */

	/* Open the store for the node whose data directory is data_dir (a
	 * store on disk keeps its files under it). Returns 0 and *store, or a
	 * negative errno. close frees it; no other call may run then or after. */
	int (*open)(const char *data_dir, struct node_store **store);
	void (*close)(struct node_store *store);

	/* fl_sm_ops.apply: the committed KV commands of group, in log order;
	 * one KV_RESULT_* per entry into results. A store that cannot apply a
	 * committed entry aborts the process (skipping it would diverge). */
	void (*apply)(struct node_store *store, uint64_t group, const struct fl_entry *entries,
		      uint32_t count, uint64_t *results);

	/* Copy the value of key into a new buffer *value (free() it) of
	 * *value_size bytes. Returns 0, -ENOENT (no such key or group) or
	 * -ENOMEM. */
	int (*get)(struct node_store *store, uint64_t group, const void *key, uint32_t key_size,
		   void **value, uint32_t *value_size);

	/* The record of what group's apply has seen here (the client
	 * protocol's DIGEST; see struct kv_digest). */
	void (*apply_digest)(struct node_store *store, uint64_t group, struct kv_digest *digest);

	/* fl_sm_ops.digest: a digest of group's keys and values, the same on
	 * every replica that holds the same map. */
	uint64_t (*state_digest)(struct node_store *store, uint64_t group);

	/* fl_sm_ops.save and .restore (restore leaves the group as it was when
	 * it fails). */
	int (*save)(struct node_store *store, uint64_t group, struct fl_snapshot_writer *w);
	int (*restore)(struct node_store *store, uint64_t group, struct fl_snapshot_reader *r);

	/* fl_sm_ops.freeze, .save_view and .release: snapshots in two steps.
	 * NULL together when the store saves only in one (then
	 * --snapshot-freeze has no effect). */
	int (*freeze)(struct node_store *store, uint64_t group, void **view);
	int (*save_view)(struct node_store *store, uint64_t group, void *view,
			 struct fl_snapshot_writer *w);
	void (*release)(struct node_store *store, uint64_t group, void *view);

	/* Test hook behind the CORRUPT op (test builds only; may be NULL): set
	 * key to value in this replica alone, bypassing the log. Returns 0,
	 * -ENOMEM or -EINVAL. */
	int (*corrupt)(struct node_store *store, uint64_t group, const void *key, uint32_t key_size,
		       const void *value, uint32_t value_size);
};

/* The store called name, or NULL. */
const struct node_store_ops *node_store_find(const char *name);

/* The in-memory store: tools/kv.c's hash maps (node_store_memory.c). */
extern const struct node_store_ops node_store_memory_ops;

#endif /* TOOLS_NODE_STORE_H */
