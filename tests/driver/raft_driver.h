/* One engine driver for the engine's tests: the unit fixture
 * (tests/unit/raft_fixture.c), the simulator (tests/sim/sim.c) and the fuzz
 * target (tests/fuzz/fuzz_raft.c) carry out readies the same way here.
 *
 * Carrying out a ready, as raft.h's durability contract asks: messages in
 * msgs leave at once (deep-copied: the ready's pointers die at the next
 * engine call); entries, hard state, a snapshot and msgs_after form one
 * pending write, made durable in order later (raft_driver_persist) or at
 * once; committed entries are applied, and raft_applied() is told.
 *
 * What stays with each driver: the fixture's cmocka checks and hand-driven
 * network, the simulator's latencies, faults and disk model, the fuzzer's
 * input decoding and checks. An allocation failure here aborts the test. */
#ifndef TESTS_DRIVER_RAFT_DRIVER_H
#define TESTS_DRIVER_RAFT_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/raft.h"

/* A message owned by a driver: entries, payloads and snapshot meta copied.
 * m.entries and m.snapshot are set by raft_driver_msg_view(), so that the
 * message may move in a queue while it waits. */
struct raft_driver_msg {
	struct raft_msg m;
	struct raft_entry *entries;
	uint8_t *payload; /* Every entry's payload, back to back. */
	struct raft_snapshot_meta snap;
	bool has_snap;
};

/* What one ready handed out for persistence, durable all at once. */
struct raft_driver_write {
	struct raft_hard_state hard;
	bool hard_changed, has_entries, has_snap;
	uint64_t first_index, last_index, last_term; /* The log's end once durable. */
	uint64_t *terms;                             /* Of first_index..last_index. */
	struct raft_driver_msg *after;               /* msgs_after, released once durable. */
	uint32_t after_count;
};

/* Called with each message that leaves node id (checks, then queue it). */
typedef void (*raft_driver_send_fn)(void *arg, uint64_t id, const struct raft_msg *m);
/* Called with each write of node id as it becomes durable, before it counts. */
typedef void (*raft_driver_durable_fn)(void *arg, uint64_t id, const struct raft_driver_write *w);
/* Takes one ready of node id: everything but the pending write (see raft_driver_drain). */
typedef void (*raft_driver_take_fn)(void *arg, uint64_t id, const struct raft_ready *rd);

/* A node's pending writes (oldest first) and what its fake storage made durable. */
struct raft_driver_store {
	struct raft_driver_write **writes;
	uint32_t *writes_count, *writes_cap;
	struct raft_hard_state *hard;
	uint64_t *durable_last;
};

struct raft_driver_ops {
	raft_driver_send_fn send;
	raft_driver_durable_fn durable; /* May be NULL. */
	raft_driver_take_fn take;
	void *arg;
};

/* A malloc that aborts the test on failure (size 0 gives one byte). */
void *raft_driver_alloc(size_t size);

/* Deep-copy m into dst. metadata: drop NORMAL payloads (a witness's copy). */
void raft_driver_msg_copy(struct raft_driver_msg *dst, const struct raft_msg *m, bool metadata);
/* Point dm->m at its own entries and snapshot, and return it. */
const struct raft_msg *raft_driver_msg_view(struct raft_driver_msg *dm);
void raft_driver_msg_free(struct raft_driver_msg *dm);

/* Copy an entry with a payload of its own (NULL when empty); metadata as above. */
void raft_driver_entry_copy(struct raft_entry *dst, const struct raft_entry *src, bool metadata);

/* Whether rd hands out anything to persist (then it is one pending write). */
bool raft_driver_ready_writes(const struct raft_ready *rd);
/* Append rd's pending write to store's writes. */
struct raft_driver_write *raft_driver_write_push(const struct raft_driver_store *store,
						 const struct raft_ready *rd);
void raft_driver_write_free(struct raft_driver_write *w);
/* Free store's pending writes and their messages (a crash loses them). */
void raft_driver_writes_drop(const struct raft_driver_store *store);

/* Make every pending write of node id durable, in order: its hard state and
 * log end become the store's, raft_persisted() is told, and its msgs_after
 * leave through ops->send. */
void raft_driver_persist(struct raft *raft, uint64_t id, const struct raft_driver_store *store,
			 const struct raft_driver_ops *ops);

/* Carry out every ready of node id: ops->take, then its write is queued and,
 * unless hold, persisted at once; once *applied_index moved, raft_applied().
 * Returns false when the engine still had a ready after rounds_max. */
bool raft_driver_drain(struct raft *raft, uint64_t id, const struct raft_driver_store *store,
		       bool hold, uint64_t *applied_index, uint32_t rounds_max,
		       const struct raft_driver_ops *ops);

#endif /* TESTS_DRIVER_RAFT_DRIVER_H */
