/* What the modules of one shard share: struct shard, struct group, the peer
 * and connection structs, and each module's functions. Private to shard/:
 * nothing outside this directory includes it.
 *
 * The modules, lowest layer first; a module calls only modules listed
 * before it (and the engine, the WAL, the loop, the wire codec), never one
 * after it; where a lower one must hand something up it takes a callback
 * (conn_step_cb, conn_chunk_cb, persist_send_cb) or returns a result:
 *   table    the group table, the deadline heap, the dirty and stalled lists
 *   pending  proposals and reads waiting for their answer
 *   peer     outgoing connections and the frames queued on them
 *   conn     incoming connections: frames in, decoded
 *   persist  WAL appends, durable batches, held messages
 *   check    consistency checks
 *   save     saving snapshots and compacting the log
 *   catchup  snapshot transfer to and from peers, and installing
 *   group    group lifecycle, a message stepped in, a ready carried out
 *   recover  every group of the WAL at start
 *   request  requests from the inbox
 *   space    the low-space mode
 *   shard    the turn, start and stop, shard_fail (shard.c) */
#ifndef SHARD_SHARD_INTERNAL_H
#define SHARD_SHARD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/array.h"
#include "base/assert.h"
#include "base/log_limit.h"
#include "engine/raft.h"
#include "io/loop.h"
#include "io/wal.h"
#include "shard/inbox.h"
#include "shard/seal.h"
#include "shard/shard.h"
#include "shard/snapshot.h"
#include "shard/snapshot_policy.h"
#include "shard/wire.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Per-group lines that a mass event repeats for thousands of groups at once:
 * each kind goes through the shard's limiter (base/log_limit.h), which logs
 * SHARD_LOG_ALLOWANCE of them per second and sums up the rest. The names
 * are in shard.c. */
enum shard_log_kind {
	SHARD_LOG_LEADER,      /* "leader is node N, term T" (group.c). */
	SHARD_LOG_REPAIRED,    /* "repaired: ..." (group.c). */
	SHARD_LOG_UNAVAILABLE, /* "unavailable: too many of its members repair ..." */
	SHARD_LOG_INSTALLED,   /* "installed snapshot ..." (catchup.c). */
	SHARD_LOG_RECEIVED,    /* "snapshot N received from node M ..." */
	SHARD_LOG_SENT,        /* "snapshot N queued to node M ..." */
	SHARD_LOG_GROUPS_FULL, /* "JOIN refused: ... groups_max" (group.c). */
	SHARD_LOG_KINDS,
};

enum {
	SHARD_OUT_SIZE_MAX = 64 << 20,      /* Bytes queued to one peer before dropping. */
	SHARD_PEERS_MAX = 2 * FL_PEERS_MAX, /* Peer slots: in force, and removed ones closing. */
	SHARD_FRAME_BODY_SOFT = 4 << 20,    /* Start a new frame past this. */
	SHARD_FRAME_TAG_ROOM = 16, /* Reserved after each frame for its tag (AUTH_TAG_SIZE). */
	SHARD_AUTH_LOG_MS = 1000,  /* At most one failed-tag line per shard this often. */
	SHARD_RECV_SIZE = 1 << 20, /* Initial receive buffer per connection. */
	SHARD_CONNS_MAX = 64,      /* Incoming connections per shard. */
	/* Bytes held in partial frames by a shard's incoming connections: two of
	 * the largest frame a node sends (WIRE_FRAME_SIZE_MAX, asserted in conn.c). */
	SHARD_PARTIAL_MAX = 128 << 20,
	SHARD_REDIAL_MIN_MS = 50,
	SHARD_REDIAL_MAX_MS = 1000,
	SHARD_IDLE_WAKE_MS = 1000, /* Longest sleep of a shard with nothing due. */
	SHARD_LOG_ALLOWANCE = 8,   /* Lines per second per limited kind (log_limit.h). */
	SHARD_SUSPECT_BEATS = 3,   /* Heartbeat intervals of silence before a host is suspected. */
	SHARD_TRANSFERS_MAX = 64,  /* Snapshots being sent at once by one shard. */
	SHARD_RECVS_MAX = 64,      /* Snapshots being received at once. */
	SHARD_REFUSED_MAX = 256,   /* Snapshot sends refused this turn, told to the engine. */
	SHARD_CHUNK_SIZE = 1 << 20,
	SHARD_SNAP_QUEUE_MAX = 4 << 20, /* Chunk bytes queued to a peer: the window. */
	SHARD_RECLAIM_MS = 1000,
	SHARD_BUF_KEEP = 256 << 10,    /* Larger send buffers are freed when mostly unused. */
	SHARD_RECV_IDLE_MS = 10000,    /* A partial snapshot file idle this long may be dropped. */
	SHARD_SAVE_LOG_SIZE = 8 << 20, /* Saves of this many bytes or more are logged. */
	SHARD_CHECKS_MAX = 4,          /* Check marks remembered per group. */
	SHARD_SPACE_RETRY_MS = 500,    /* While the WAL is low on space: try a spare this often. */
	SHARD_CENSUS_MS = 1000,        /* The gauges of shard_stats are counted this often. */
};

struct buf {
	uint8_t *data;
	size_t len, cap;
};

static inline int buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

static inline void buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf){0};
}

/* A burst (elections of thousands of groups, a catch-up) may have grown b
 * far past what a turn needs now: free it when used, this turn's bytes,
 * is little of a capacity above SHARD_BUF_KEEP. */
static inline void buf_trim(struct buf *b, size_t used)
{
	if (b->cap > SHARD_BUF_KEEP && used < b->cap / 16)
		buf_free(b);
}

struct pending_prop {
	uint64_t index, term;
	fl_done_cb cb;
	void *arg;
	uint64_t proposed_ns; /* The turn that proposed it: for stats.commit_us. */
};

struct pending_read {
	uint64_t key; /* Read context while confirming; read index while applying. */
	fl_done_cb cb;
	void *arg;
	uint64_t asked_ms; /* While confirming: see pending_reads_abandon(). */
};

/* A replica's digest at a check mark (see CHECK ENTRY). */
struct check_record {
	uint64_t index;  /* The mark's log index; 0: none. */
	uint64_t digest; /* Of the state right after applying index - 1. */
	uint32_t source; /* enum check_source; CHECK_SOURCE_UNKNOWN: not comparable. */
};

/* An fl_group_check() waiting for the leader's digest at its mark. */
struct check_wait {
	uint64_t index;
	fl_done_cb cb;
	void *arg;
};

/* Laid out for the idle case: thousands of quiesced groups cost this
 * struct (and the engine inline in it) each, so what only an active group
 * needs is allocated while it is needed (received, props, reads, deferred,
 * check_waits), and the small fields are packed at the end. */
struct group {
	uint64_t id;
	struct raft raft;
	struct group *dirty_next;
	uint64_t scheduled_ms;         /* Deadline already in the heap. */
	uint64_t hard_term, hard_vote; /* Last written to the WAL (or deferred). */
	/* WAL records deferred while the WAL's buffers were full, oldest first:
	 * no new ready is taken until they are in (see persist.c). */
	struct persist_record *deferred;
	struct group *stalled_next;
	uint64_t last_leader;
	struct pending_prop *props;                /* Ring, oldest first. */
	struct shard_req *batch_head, *batch_tail; /* Proposals of this turn. */
	struct group *batch_next;
	struct pending_read *reads, *reads_apply;
	/* Last snapshot file received, awaiting install: allocated from its
	 * acceptance (catchup_accept) to its install. */
	struct snapshot_meta *received;
	uint64_t snapshot_retry;      /* Applied index before which a failed save is not retried. */
	uint64_t elections_seen;      /* The engine's count, already added to the stats. */
	uint64_t applied_bytes;       /* Entry bytes applied since the last consistent point. */
	uint64_t snapshot_size;       /* Bytes of the current snapshot's file; 0: none. */
	struct shard_req *snap_asked; /* fl_group_snapshot() calls for the next snapshot, */
	struct shard_req *snap_saving; /* and those the one being written will answer. */
	/* Consistency checks: see CHECK ENTRY. */
	uint64_t check_hash;     /* Entries applied since the last mark (no sm.digest). */
	uint64_t check_mark;     /* Index of the last mark applied here. */
	uint64_t check_proposed; /* Leader: a periodic mark appended, not yet applied. */
	struct check_record checks[SHARD_CHECKS_MAX]; /* Last marks applied, a ring. */
	struct check_record owed[SHARD_CHECKS_MAX];   /* Leader: results still to append. */
	struct check_wait *check_waits;
	uint64_t applied_max;  /* Highest index ever applied here. */
	uint64_t replay_until; /* Results up to here are history replayed after a rebuild. */
	fl_done_cb rebuild_cb; /* fl_group_rebuild()'s answer. */
	void *rebuild_arg;
	uint32_t deferred_count, deferred_cap;
	uint32_t props_head, props_count, props_cap;
	uint32_t batch_count;
	uint32_t reads_count, reads_cap, reads_apply_count, reads_apply_cap;
	uint32_t check_waits_count, check_waits_cap;
	uint8_t checks_next; /* Next slot of checks, modulo SHARD_CHECKS_MAX (wraps with it). */
	uint8_t owed_count;
	bool dirty;
	bool was_leader;
	bool stalled; /* On the shard's stalled list: see table_stall(). */
	bool batched;
	bool snapshot_wanted;  /* The WAL asked for one (a pinned segment). */
	bool saving;           /* A frozen view is being written: see save_group(). */
	bool diverged;         /* A check found our state differs: no reads. */
	bool check_hash_known; /* check_hash covers every entry since the last mark. */
	/* Storage lost data of this group: it repairs from the leader (see
	 * recover_damaged); blocked_logged: said that repair blocks it. */
	bool repairing, blocked_logged;
	bool rebuilding; /* fl_group_rebuild(): waiting for the leader's snapshot. */
	/* A leader sent this replica metadata only (an APPEND or SNAPSHOT
	 * with RAFT_MSG_FLAG_METADATA): it is a witness, even before the
	 * entry that made it one reaches it (the leader's first appends to a
	 * new member may end before that entry). Kept until the group is
	 * closed: a witness never becomes anything else. */
	bool metadata_only;
};

/* Is this replica a witness of g, in the latest configuration it knows? A
 * witness votes and counts toward commits but keeps entry metadata only
 * (appends to it carry no NORMAL payloads): its state machine is never
 * called for the group (no apply, save or restore: its snapshots are empty
 * files), it serves no reads (ERR_WITNESS) and compares no checks. The
 * engine never lets it lead nor become a voter or a learner. */
static inline bool group_conf_is_witness(const struct raft_conf *conf, uint64_t id)
{
	for (uint32_t i = 0; i < conf->members_count; i++)
		if (conf->members[i].id == id)
			return conf->members[i].role == RAFT_MEMBER_WITNESS ||
			       (conf->joint && conf->members[i].role_old == RAFT_MEMBER_WITNESS);
	return false;
}

static inline bool group_is_witness(const struct group *g)
{
	return g->metadata_only || group_conf_is_witness(raft_conf(&g->raft), g->raft.config.id);
}

/* A snapshot send that could not start this turn. */
struct snapshot_refused {
	uint64_t group, peer;
};

/* A snapshot being streamed to a follower: chunks, then the SNAPSHOT message. */
struct transfer {
	bool used;
	uint64_t group, peer;
	int fd;
	uint64_t offset;
	uint64_t next_ms; /* Paced (a test fault): no chunk before then. */
	uint64_t started_ms;
	uint64_t wire_bytes; /* Chunk bytes queued, compressed or not. */
	struct snapshot_meta file;
	struct raft_snapshot_meta meta;
	struct raft_msg msg;
};

struct table_deadline {
	uint64_t deadline_ms;
	uint64_t group;
};

enum persist_kind { PERSIST_MARK = 1, PERSIST_ENTRIES, PERSIST_HARD, PERSIST_MSG };

/* A WAL record of a group that the WAL could not take yet, or a message
 * that waits for the records before it: see BACK-PRESSURE in persist.c. */
struct persist_record {
	uint32_t kind;             /* enum persist_kind */
	uint32_t entries_count;    /* ENTRIES */
	uint64_t index, term;      /* MARK; ENTRIES: the index of entries[0]. */
	uint64_t peer;             /* MSG: to whom. */
	struct wal_hard hard;      /* HARD */
	struct wal_entry *entries; /* ENTRIES: copies, in mem. */
	void *mem;                 /* Owned: the entries and their payloads, or the encoded MSG. */
	size_t size;               /* MSG: bytes at mem. */
};

struct persist_item {
	uint64_t batch, group, index, term;
};

enum peer_state { PEER_DOWN, PEER_DIALING, PEER_UP, PEER_CLOSING };

struct peer {
	struct shard *shard;
	uint64_t id;
	int fd;
	uint8_t state;
	bool reported_down; /* Groups were told peer_down. */
	bool suspected;     /* Groups were told peer_suspect: see liveness.c. */
	bool sending;
	bool gone;           /* Removed from the address book: closed, never dialled. */
	uint32_t epoch;      /* Of its address in the book (shard_book_entry). */
	uint32_t dial_epoch; /* Of the address the dial under way went to. */
	uint32_t ops;        /* In flight on fd. */
	uint64_t redial_ms, backoff_ms;
	uint64_t up_ms;         /* When the connection came up. */
	uint64_t heard_ms;      /* Last turn that received bytes from its host. */
	uint64_t sent_ms;       /* Last send posted to it. */
	struct buf out, flight; /* Filling, and being sent. */
	struct buf beats;       /* This turn's heartbeats, coalesced into one frame. */
	size_t frame_start;     /* Offset of the open frame's header in out; SIZE_MAX: none. */
	size_t flight_sent;
	struct loop_op send_op, probe_op;
	uint8_t probe_byte;
	bool auth;            /* Each frame gets a tag (shard/auth.c): */
	uint8_t auth_key[32]; /* the connection's session key (AUTH_KEY_SIZE), */
	uint64_t auth_frames; /* and the frames tagged so far on it. */
	struct seal seal;     /* TLS: each frame sealed (shard/seal.c); ctx NULL: not. */
};

struct conn {
	struct shard *shard;
	int fd;
	uint64_t peer;
	bool closing;
	bool received; /* Bytes arrived; the turn parses them and posts the next receive. */
	uint32_t ops;
	struct buf in;
	uint64_t partial; /* Bytes of in counted in the shard's partial_bytes. */
	struct loop_op recv_op;
	bool auth;            /* Each frame must carry the tag (shard/auth.c) of */
	uint8_t auth_key[32]; /* the connection's session key (AUTH_KEY_SIZE) */
	uint64_t auth_frames; /* and of its number, counted from 0. */
	struct seal seal;     /* TLS: each frame must open (shard/seal.c); ctx NULL: not. */
};

/* Handlers of what an incoming connection decodes (see conn.c): a message,
 * and a chunk of a snapshot file (0, or -EPROTO to close the connection). */
typedef void (*conn_step_cb)(struct shard *s, uint64_t peer, const struct raft_msg *m);
typedef int (*conn_chunk_cb)(struct shard *s, uint64_t peer, const uint8_t *body, size_t size);

/* Where persist_release() sends a held message: size encoded bytes to peer. */
typedef void (*persist_send_cb)(struct shard *s, uint64_t peer, const uint8_t *msg, size_t size);

struct shard {
	struct shard_config config;
	conn_step_cb conn_step;   /* group_step(). */
	conn_chunk_cb conn_chunk; /* catchup_chunk(). */
	pthread_t thread;
	struct loop loop;
	struct wal wal;
	struct inbox inbox;
	_Atomic bool sleeping;
	_Atomic bool stopping;
	bool stopped;
	bool wal_failed;
	bool space_low; /* Refusing writes: see space_check(). */
	uint64_t space_retry_ms;
	int wal_error;          /* Reported by the durable callback. */
	uint64_t durable_batch; /* Likewise. */
	uint64_t now_ms;
	uint64_t now_ns;            /* The same instant as now_ms: the turn's start. */
	uint64_t census_ms;         /* The next shard_census() is due then. */
	struct log_limit log_limit; /* Lines of mass events: enum shard_log_kind. */
	uint64_t live_turn_ms;      /* The last turn, for liveness_turn(). */
	struct loop_timer tick;
	bool tick_armed, tick_cancelled;
	uint64_t tick_due_ms;
	/* Groups: open addressing by id. */
	struct group **table;
	uint64_t *table_ids; /* Each slot's group id, so that probes touch no group. */
	uint64_t table_cap, groups_count;
	bool group_reserved; /* A slot of groups_max is held for the group being added. */
	struct group *dirty_head;
	struct group *stalled_head; /* Groups with deferred WAL records: table_stall(). */
	struct group *batched_head;
	struct table_deadline *heap;
	uint32_t heap_count, heap_cap;
	struct persist_item *persist;
	uint64_t persist_head, persist_count, persist_cap;
	struct buf held;     /* Messages waiting for a WAL batch: see persist_hold(). */
	uint64_t held_batch; /* Batch of the newest held message. */
	size_t held_off;
	struct peer *peers;
	uint32_t peers_count;
	struct conn *conns[SHARD_CONNS_MAX];
	uint64_t read_ctx;
	/* Scratch, reused every turn. */
	struct wal_entry *wal_entries;
	uint32_t wal_entries_cap;
	struct raft_entry *dec_entries;
	uint32_t dec_entries_cap;
	struct fl_entry *apply_entries;
	uint64_t *apply_results;
	uint32_t apply_cap;
	struct raft_buf *prop_bufs;
	uint32_t prop_bufs_cap;
	struct shard_stats stats;
	uint64_t auth_logged_ms;    /* The last failed-tag log line (conn.c), */
	uint64_t auth_unlogged;     /* and the failures since, not logged. */
	uint64_t partial_bytes;     /* Held by incoming connections in frames not yet whole, */
	uint64_t partial_logged_ms; /* the last line about closing one past SHARD_PARTIAL_MAX, */
	uint64_t partial_unlogged;  /* and the closes since, not logged. */
	unsigned arena;
	_Atomic bool arena_ready;
	int snap_dir;
	struct snapshot_refused refused[SHARD_REFUSED_MAX]; /* See catchup_start(). */
	uint32_t refused_count;
	struct transfer transfers[SHARD_TRANSFERS_MAX];
	struct snapshot_recv recvs[SHARD_RECVS_MAX];
	bool recvs_used[SHARD_RECVS_MAX];
	uint64_t reclaim_ms;
	bool unbounded_said; /* Logged that the WAL knows no term bound: recover_term(). */
	/* Test faults, from the environment at start (see shard_faults_read());
	 * read and acted on only in test builds (FLOTILLA_TEST_HOOKS). Always
	 * present, so that the struct is the same to every file including it. */
	char fault_no_space[4096 + 16]; /* While this file exists, preallocation fails. */
	bool fault_corrupt;             /* Flip a byte of the next chunk sent, once. */
	uint32_t fault_pace_ms;         /* At most one chunk per transfer per this many ms. */
	uint8_t *chunk_buf;             /* SHARD_CHUNK_SIZE: a chunk before LZ4, or after un-LZ4. */
	pthread_mutex_t saved_lock;
	pthread_mutex_t manifest_lock; /* Shared with the snapshot thread: snapshot.h. */
	struct snapshot_job *saved;    /* Written by the snapshot thread: see save_done(). */
};

static inline void stat_add(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* table.c */
/* An empty table of cap slots (a power of 2). Returns 0 or -ENOMEM. */
int table_init(struct shard *s, uint64_t cap);
void table_deinit(struct shard *s);
struct group *table_find(struct shard *s, uint64_t id);
/* Add g (no group of its id is in). Returns 0 or -ENOMEM. */
int table_insert(struct shard *s, struct group *g);
void table_erase(struct shard *s, struct group *g);
/* Queue a deadline of group. Returns 0 or -ENOMEM. */
int table_deadline_push(struct shard *s, uint64_t deadline_ms, uint64_t group);
/* Remove and return the earliest deadline; the heap is not empty. */
struct table_deadline table_deadline_pop(struct shard *s);
void table_dirty(struct shard *s, struct group *g);
void table_stall(struct shard *s, struct group *g);
void table_wake_stalled(struct shard *s);
void table_unlink(struct shard *s, struct group *g);

/* pending.c */
void pending_answer(fl_done_cb cb, void *arg, int rv, uint64_t result, uint64_t leader);
void pending_fail_all(struct group *g, int rv);
/* Make room for count more pending proposals. Returns 0 or -ENOMEM. */
int pending_props_reserve(struct group *g, uint32_t count);
/* Queue p, for which room was reserved; proposals come in log order. */
void pending_prop_push(struct group *g, struct pending_prop p);
/* Answer the proposals up to index, the entry of term applied with result.
 * Returns when the proposal of that entry was proposed (its proposed_ns),
 * or 0 when none of this node's succeeded with it. */
uint64_t pending_props_settle(struct group *g, uint64_t index, uint64_t term, uint64_t result);
void pending_props_skip(struct group *g, uint64_t index, uint64_t term);
int pending_read_rv(const struct group *g);
void pending_reads_settle(struct group *g, uint64_t applied);
void pending_reads_ready(struct group *g, const struct raft_ready *rd);
void pending_reads_abandon(struct group *g, uint64_t before_ms);

/* peer.c */
/* The peer id in force, or NULL (unknown or removed). */
struct peer *peer_find(struct shard *s, uint64_t id);
/* The slot of id, removed or not. */
struct peer *peer_find_any(struct shard *s, uint64_t id);
void peer_book_apply(struct shard *s, const struct shard_book_entry *entries, uint32_t count);
uint32_t peer_states(struct shard *s, struct shard_peer_state *states);
uint8_t *peer_reserve(struct shard *s, struct peer *p, size_t size);
void peer_queue(struct shard *s, struct peer *p, const struct raft_msg *m);
void peer_queue_encoded(struct shard *s, uint64_t peer, const uint8_t *msg, size_t size);
void peer_send(struct shard *s, struct peer *p);
/* session_key: the key of this connection's frame tags (AUTH_KEY_SIZE
 * bytes, copied), or NULL when the node has no shared key; with seal, the
 * key its frames are sealed with instead (TLS, shard/seal.c). */
void peer_connected(struct shard *s, struct peer *p, int fd, const uint8_t *session_key, bool seal);
void peer_dial_failed(struct shard *s, struct peer *p, int err);
void peer_dial_all(struct shard *s);
void peer_frame_close(struct peer *p);
/* Seal the frame at start of p->out, which runs to p->out.len, and append
 * its tag when the connection is authenticated. Frames are sealed in the
 * order they go out; whoever reserves room for a frame reserves
 * SHARD_FRAME_TAG_ROOM bytes more for the tag. */
void peer_frame_seal(struct peer *p, size_t start, uint32_t kind);
#ifdef FLOTILLA_TEST_HOOKS
/* Test hook: while above 0, each sealed frame sent gets one body bit flipped
 * after sealing (and its checksum redone), and the count goes down. */
extern _Atomic int peer_test_flip_sealed;
#endif

/* stale.c */
/* fl_read_stale() of g: fill in the caller's figures and answer at once. */
void stale_read(struct shard *s, struct group *g, struct shard_req *req);

/* liveness.c */
void liveness_turn(struct shard *s);
void liveness_ping(struct shard *s, struct peer *p);
uint64_t liveness_due(const struct shard *s, uint64_t due_ms);
/* Whether g seems able to work without a forced recovery: a leader other
 * than us that we hear from, or a majority of its voters heard from (each
 * half of a joint configuration; ourselves included). why names which. */
bool liveness_group_has_quorum(const struct shard *s, const struct group *g, char *why,
			       size_t why_size);

/* conn.c */
void conn_free(struct shard *s, struct conn *c);
void conn_parse(struct shard *s, struct conn *c);
/* session_key as for peer_connected(). */
void conn_adopt(struct shard *s, int fd, uint64_t peer, const uint8_t *session_key, bool seal);

/* persist.c */
/* Queue item: its group persisted up to item.index once batch item.batch is
 * durable. Batches never go back. Returns 0 or -ENOMEM. */
int persist_push(struct shard *s, struct persist_item item);
/* Take the oldest queued item whose batch is at most durable, if any. */
bool persist_pop(struct shard *s, uint64_t durable, struct persist_item *item);
/* Hold m until batch is durable. Batches never go back. */
void persist_hold(struct shard *s, uint64_t batch, const struct raft_msg *m);
/* Hand every held message whose batch is at most durable to send, oldest first. */
void persist_release(struct shard *s, uint64_t durable, persist_send_cb send);
/* The WAL's durable callback. */
void persist_durable_done(struct wal *wal, uint64_t batch, int rv);
/* Append to g's log in the WAL, or, while the WAL cannot take it (or g has
 * deferred records), defer it behind them (see BACK-PRESSURE). Returns 0
 * or an error that must stop the shard; -EAGAIN never. */
int persist_append_mark(struct shard *s, struct group *g, uint64_t index, uint64_t term);
int persist_append_hard(struct shard *s, struct group *g, const struct wal_hard *hard);
int persist_append_entries(struct shard *s, struct group *g, const struct raft_entry *entries,
			   uint32_t count);
/* A ready's snapshot mark, entries and hard state, in that order. */
int persist_append_ready(struct shard *s, struct group *g, const struct raft_ready *rd);
/* Send m (a msgs_after of g) once what g appended so far is durable. */
void persist_after(struct shard *s, struct group *g, struct peer *p, const struct raft_msg *m);
/* Append g's deferred records while the WAL takes them. Returns 0 (none
 * left), -EAGAIN (some left) or the WAL's error. */
int persist_drain(struct shard *s, struct group *g);
/* Forget g's deferred records (the shard stopped); deinit also frees. */
void persist_drop(struct group *g);
void persist_deinit(struct group *g);

/* check.c */
void check_hash_entry(struct group *g, const struct fl_entry *e);
void check_forget(struct group *g);
void check_apply(struct shard *s, struct group *g, const struct raft_entry *e);
void check_propose_due(struct shard *s, struct group *g);
int check_rebuild_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg);
int check_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg);

/* save.c */
void save_answer(struct shard_req **list, int rv, uint64_t index);
int save_manifest_write(struct shard *s, const struct snapshot_meta *meta);
/* A witness's snapshot bytes: none (a snapshot_fill_fn). */
int save_fill_none(void *arg, struct fl_snapshot_writer *w);
void save_collect(struct shard *s);
void save_maybe(struct shard *s, struct group *g);

/* catchup.c */
int catchup_install(struct shard *s, struct group *g, const struct raft_snapshot_meta *snap);
void catchup_start(struct shard *s, const struct raft_msg *m);
void catchup_pump(struct shard *s);
int catchup_chunk(struct shard *s, uint64_t peer, const uint8_t *body, size_t size);
bool catchup_accept(struct shard *s, struct group *g, uint64_t peer, const struct raft_msg *m);

/* group.c */
/* Queue g's next deadline. Returns 0 or -ENOMEM. */
int group_schedule(struct shard *s, struct group *g);
void group_step(struct shard *s, uint64_t peer, const struct raft_msg *m);
int group_error(const struct group *g, int rv);
/* Take g's readies and what follows them. Returns 0, or the error that must
 * stop the shard (shard_fail); then call it again to finish g's turn. */
int group_process(struct shard *s, struct group *g);
int group_open(struct shard *s, uint64_t id, const struct raft_boot *boot, struct group **out);
void group_close(struct shard *s, struct group *g, int rv);
int group_create(struct shard *s, uint64_t id, const uint64_t *members, uint32_t count);
int group_join(struct shard *s, uint64_t id);
int group_write_refused(struct shard *s, const struct group *g);
void group_propose_batch(struct shard *s, struct group *g);

/* recover.c */
int recover_groups(struct shard *s, char *why, size_t why_size);

/* Create group id on a shard whose WAL lost a segment
 * (wal_has_lost_segments()): the group may have had every record there,
 * so it starts from nothing as a repairing member (never voting, never
 * counting toward a commit) and learns its configuration, log and term
 * from the leader. A reset goes first, so that later starts, which damage
 * every group from the loss on, find this group's records superseding it. */
int recover_lost_group(struct shard *s, uint64_t id);

/* request.c */
void request_free(struct shard_req *req);
void request_drain(struct shard *s);

/* space.c */
void space_check(struct shard *s);

#endif /* SHARD_SHARD_INTERNAL_H */
