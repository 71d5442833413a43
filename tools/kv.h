/* The key-value state machine of flotilla-node: one map of byte-string keys to
 * byte-string values per Raft group.
 *
 * Writes reach it only as committed log entries (kv_apply, the node's
 * fl_sm_ops.apply), so every replica of a group applies the same commands in
 * the same order and ends in the same state. Reads (kv_get) copy a value out
 * under the group's lock. A restarted node rebuilds its maps from its groups'
 * last snapshots (kv_save, kv_restore) and the log entries after them. */
#ifndef TOOLS_KV_H
#define TOOLS_KV_H

#include <pthread.h>
#include <stdint.h>

#include "flotilla.h"

/* KV COMMAND: the payload of one log entry, little-endian.
 *    0: u32 op             KV_OP_*
 *    4: u32 key_size       at most KV_KEY_SIZE_MAX
 *    8: u32 expected_size  CAS only; KV_ABSENT: the key must be absent; else 0
 *   12: u32 value_size     PUT and CAS; else 0
 *   16: key, then expected (unless KV_ABSENT), then value; nothing after. */
#define KV_CMD_HEADER_SIZE 16
#define KV_KEY_SIZE_MAX    (64u << 10)
#define KV_ABSENT          UINT32_MAX

enum {
	KV_OP_PUT = 1,
	KV_OP_DELETE = 3,
	KV_OP_CAS = 4,
};

/* What kv_apply writes into results[], one per entry. The values match the
 * client protocol's status codes where they overlap. */
enum {
	KV_RESULT_OK = 0,
	KV_RESULT_NOT_FOUND = 1,    /* DELETE or CAS of a key that is absent. */
	KV_RESULT_CAS_MISMATCH = 3, /* CAS whose expectation did not hold; nothing changed. */
	KV_RESULT_BAD_ENTRY = 5,    /* The entry is not a valid command; nothing changed. */
};

/* A decoded or to-be-encoded command. Pointers are borrowed from the caller
 * (encode) or point into the decoded buffer (decode). */
struct kv_cmd {
	uint32_t op;
	uint32_t key_size;
	uint32_t expected_size; /* KV_ABSENT: CAS requires the key to be absent. */
	uint32_t value_size;
	const void *key;
	const void *expected;
	const void *value;
};

/* Encoded size of cmd in bytes; 0 if it does not fit in a uint32_t. */
uint32_t kv_cmd_size(const struct kv_cmd *cmd);

/* Write cmd into buf, which holds kv_cmd_size(cmd) bytes. */
void kv_cmd_encode(const struct kv_cmd *cmd, void *buf);

/* Parse buf of size bytes. Returns 0, or -EBADMSG when it is not exactly one
 * valid command. cmd points into buf. */
int kv_cmd_decode(const void *buf, uint32_t size, struct kv_cmd *cmd);

struct kv_group;

/* All groups' maps. Visible so callers can embed it; only kv.c touches fields. */
struct kv {
	pthread_rwlock_t lock;    /* Guards the group table, not the maps. */
	struct kv_group **groups; /* Open addressing by group id; NULL is empty. */
	uint32_t groups_slots;    /* A power of two. */
	uint32_t groups_count;
};

/* Returns 0 or -ENOMEM. */
int kv_init(struct kv *kv);

/* Frees every map. No other call may run concurrently or after. */
void kv_deinit(struct kv *kv);

/* fl_sm_ops.apply for ctx = struct kv *: applies the committed commands of
 * group in order and writes one KV_RESULT_* per entry into results. Runs on
 * the group's shard thread. Running out of memory here aborts the process:
 * a replica that skipped a committed command would silently diverge. */
void kv_apply(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
	      uint64_t *results);

/* Copy the value of key in group into a new buffer *value (free() it) of
 * *value_size bytes. Returns 0, -ENOENT (no such key or group) or -ENOMEM.
 * Any thread. */
int kv_get(struct kv *kv, uint64_t group, const void *key, uint32_t key_size, void **value,
	   uint32_t *value_size);

/* Number of keys in group (0 for an unknown group). Any thread. */
uint64_t kv_keys_count(struct kv *kv, uint64_t group);

/* What group's apply path has seen on this node, for checking that replicas
 * applied the same entries in the same order (the client protocol's DIGEST).
 * All zero for a group that has applied nothing here. */
struct kv_digest {
	uint64_t applied_count;      /* Entries handed to kv_apply. */
	uint64_t last_applied_index; /* Index of the last of them. */
	uint64_t digest;             /* KV_DIGEST chain over every applied entry. */
	uint64_t order_violations;   /* Entries whose index did not exceed the one before. */
	uint64_t keys_count;         /* Keys in the group's map now. */
};

/* KV_DIGEST: starts at 0; for each applied entry e, in apply order,
 *    header = u64 e.index | u64 e.term            (16 bytes, little-endian)
 *    digest = XXH3_64bits_withSeed(payload, size,
 *                                  XXH3_64bits_withSeed(header, 16, digest))
 * so two replicas have the same digest iff they applied the same (index,
 * term, payload) sequence, barring a 64-bit collision. */
void kv_digest_get(struct kv *kv, uint64_t group, struct kv_digest *digest);

/* fl_sm_ops.digest for ctx = struct kv *: a digest of group's map (its
 * keys and values, in no order; the apply record above is not part of it),
 * the same on every replica holding the same map. An unknown group digests
 * like an empty one. Any thread. */
uint64_t kv_state_digest(void *ctx, uint64_t group);

#ifdef FLOTILLA_TEST_HOOKS
/* Test hook (test builds only), for tests of consistency checks: set key to
 * value in this node's copy of group, bypassing the log, so that this
 * replica diverges on purpose. Returns 0, -ENOMEM or -EINVAL (key too long).
 * Any thread. */
int kv_corrupt_local(struct kv *kv, uint64_t group, const void *key, uint32_t key_size,
		     const void *value, uint32_t value_size);
#endif

/* fl_sm_ops.save and .restore for ctx = struct kv *: write group's whole map
 * (and its DIGEST record) to a snapshot, and replace it from one. restore
 * returns -EBADMSG for a malformed snapshot, and then (or on -ENOMEM) leaves
 * the map as it was. Shard thread of the group. */
int kv_save(void *ctx, uint64_t group, struct fl_snapshot_writer *w);
int kv_restore(void *ctx, uint64_t group, struct fl_snapshot_reader *r);

/* fl_sm_ops.freeze, .save_view and .release for ctx = struct kv *: freeze
 * takes, under the group's lock on its shard thread, the DIGEST record and
 * the list of the map's items (pointers: no key or value is copied); the
 * snapshot thread then writes those items while applies go on, since items
 * never change in place and one replaced or removed is kept until the last
 * view is released. Views must all be released before kv_deinit(). */
int kv_freeze(void *ctx, uint64_t group, void **view);
int kv_save_view(void *ctx, uint64_t group, void *view, struct fl_snapshot_writer *w);
void kv_release(void *ctx, uint64_t group, void *view);

#endif /* TOOLS_KV_H */
