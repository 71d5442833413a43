/* One shard: a thread that owns a loop, a WAL, a table of Raft groups and
 * the connections to the same shard index of every peer node.
 *
 * The happy path of one turn is:
 *   1. the loop reaped completions: received frames were decoded and stepped
 *      into their groups; a durable WAL batch released the groups' persisted
 *      positions and the messages that waited for it; sends recycled buffers;
 *   2. drain the inbox: requests of application threads; proposals for the
 *      same group become one raft_propose();
 *   3. tick the groups whose deadline passed (a heap of deadlines: quiet and
 *      quiesced groups cost nothing);
 *   4. take the ready of every dirty group: its hard state and entries go into
 *      the open WAL batch, its messages into the per-peer frame, its
 *      msgs_after behind the WAL position that covers them, its committed
 *      entries to the state machine in one apply call;
 *   5. one WAL write + fdatasync for the whole batch (group commit), one send
 *      per peer, then wait in io_uring_submit_and_wait.
 *
 * Failure modes: a failed fdatasync or write fails the WAL for good (never
 * retried: the kernel may have dropped the pages) and every group of the
 * shard stops with FL_ERR_WAL_FAILED; malformed input from a peer closes that
 * connection; a slow or dead peer has its output dropped past a bound (Raft
 * retransmits).
 *
 * A full file system is not a failure (see shard_space_check()): once the
 * WAL cannot keep a spare segment, the shard stops taking new entries while
 * the WAL's reserve still holds what is in flight. Leaders refuse proposals
 * and membership changes with FL_ERR_NO_SPACE and hand their leadership to a
 * peer; followers drop appends that carry entries and snapshots, as a lossy
 * network would (the leader sends them again); votes, heartbeats and reads
 * go on. Every SHARD_SPACE_RETRY_MS the shard tries the spare again, and
 * writes resume by themselves once it is made. */
#include "shard/shard.h"

#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/le.h"
#include "engine/raft.h"
#include "io/loop.h"
#include "io/loop_sim.h"
#include "io/mem.h"
#include "io/segment.h"
#include "io/wal.h"
#include "shard/inbox.h"
#include "shard/snapshot.h"
#include "shard/wire.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum {
	SHARD_OUT_SIZE_MAX = 64 << 20,   /* Bytes queued to one peer before dropping. */
	SHARD_FRAME_BODY_SOFT = 4 << 20, /* Start a new frame past this. */
	SHARD_RECV_SIZE = 1 << 20,       /* Initial receive buffer per connection. */
	SHARD_CONNS_MAX = 64,            /* Incoming connections per shard. */
	SHARD_REDIAL_MIN_MS = 50,
	SHARD_REDIAL_MAX_MS = 1000,
	SHARD_IDLE_WAKE_MS = 1000, /* Longest sleep of a shard with nothing due. */
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
};

struct buf {
	uint8_t *data;
	size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more)
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

static void buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf){0};
}

struct pending_prop {
	uint64_t index, term;
	fl_done_cb cb;
	void *arg;
};

struct pending_read {
	uint64_t key; /* Read context while confirming; read index while applying. */
	fl_done_cb cb;
	void *arg;
	uint64_t asked_ms; /* While confirming: see reads_abandon(). */
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

struct group {
	uint64_t id;
	struct raft raft;
	struct group *dirty_next;
	bool dirty;
	bool was_leader;
	uint64_t scheduled_ms;         /* Deadline already in the heap. */
	uint64_t hard_term, hard_vote; /* Last written to the WAL. */
	uint64_t last_leader;
	struct pending_prop *props; /* Ring, oldest first. */
	uint32_t props_head, props_count, props_cap;
	struct shard_req *batch_head, *batch_tail; /* Proposals of this turn. */
	uint32_t batch_count;
	bool batched;
	struct group *batch_next;
	struct pending_read *reads, *reads_apply;
	uint32_t reads_count, reads_cap, reads_apply_count, reads_apply_cap;
	struct snapshot_meta received; /* Last snapshot file received, awaiting install. */
	uint64_t snapshot_retry;      /* Applied index before which a failed save is not retried. */
	uint64_t elections_seen;      /* The engine's count, already added to the stats. */
	bool snapshot_wanted;         /* The WAL asked for one (a pinned segment). */
	bool saving;                  /* A frozen view is being written: see group_snapshot(). */
	uint64_t applied_bytes;       /* Entry bytes applied since the last consistent point. */
	struct shard_req *snap_asked; /* fl_group_snapshot() calls for the next snapshot, */
	struct shard_req *snap_saving; /* and those the one being written will answer. */
	/* Consistency checks: see CHECK ENTRY. */
	bool diverged;           /* A check found our state differs: no reads. */
	bool check_hash_known;   /* check_hash covers every entry since the last mark. */
	uint64_t check_hash;     /* Entries applied since the last mark (no sm.digest). */
	uint64_t check_mark;     /* Index of the last mark applied here. */
	uint64_t check_proposed; /* Leader: a periodic mark appended, not yet applied. */
	struct check_record checks[SHARD_CHECKS_MAX]; /* Last marks applied, a ring. */
	uint32_t checks_next;
	struct check_record owed[SHARD_CHECKS_MAX]; /* Leader: results still to append. */
	uint32_t owed_count;
	struct check_wait *check_waits;
	uint32_t check_waits_count, check_waits_cap;
	uint64_t applied_max;  /* Highest index ever applied here. */
	uint64_t replay_until; /* Results up to here are history replayed after a rebuild. */
	/* Storage lost data of this group: it repairs from the leader (see
	 * group_recover_damaged); blocked_logged: said that repair blocks it. */
	bool repairing, blocked_logged;
	/* fl_group_rebuild(): waiting for the leader's snapshot. */
	bool rebuilding;
	fl_done_cb rebuild_cb;
	void *rebuild_arg;
};

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

struct heap_item {
	uint64_t deadline_ms;
	uint64_t group;
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
	bool sending;
	uint32_t ops; /* In flight on fd. */
	uint64_t redial_ms, backoff_ms;
	struct buf out, flight; /* Filling, and being sent. */
	struct buf beats;       /* This turn's heartbeats, coalesced into one frame. */
	size_t frame_start;     /* Offset of the open frame's header in out; SIZE_MAX: none. */
	size_t flight_sent;
	struct loop_op send_op, probe_op;
	uint8_t probe_byte;
};

struct conn {
	struct shard *shard;
	int fd;
	uint64_t peer;
	bool closing;
	bool received; /* Bytes arrived; the turn parses them and posts the next receive. */
	uint32_t ops;
	struct buf in;
	struct loop_op recv_op;
};

struct shard {
	struct shard_config config;
	pthread_t thread;
	struct loop loop;
	struct wal wal;
	struct inbox inbox;
	_Atomic bool sleeping;
	_Atomic bool stopping;
	bool stopped;
	bool wal_failed;
	bool space_low; /* Refusing writes: see shard_space_check(). */
	uint64_t space_retry_ms;
	int wal_error;          /* Reported by the durable callback. */
	uint64_t durable_batch; /* Likewise. */
	uint64_t now_ms;
	struct loop_timer tick;
	bool tick_armed, tick_cancelled;
	uint64_t tick_due_ms;
	/* Groups: open addressing by id. */
	struct group **table;
	uint64_t *table_ids; /* Each slot's group id, so that probes touch no group. */
	uint64_t table_cap, groups_count;
	struct group *dirty_head;
	struct group *batched_head;
	struct heap_item *heap;
	uint32_t heap_count, heap_cap;
	struct persist_item *persist;
	uint64_t persist_head, persist_count, persist_cap;
	struct buf held; /* Messages waiting for a WAL batch: see shard_hold(). */
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
	unsigned arena;
	_Atomic bool arena_ready;
	int snap_dir;
	struct snapshot_refused refused[SHARD_REFUSED_MAX]; /* See transfer_start(). */
	uint32_t refused_count;
	struct transfer transfers[SHARD_TRANSFERS_MAX];
	struct snapshot_recv recvs[SHARD_RECVS_MAX];
	bool recvs_used[SHARD_RECVS_MAX];
	uint64_t reclaim_ms;
	/* Test faults, from the environment at start (see shard_faults_read()). */
	char fault_no_space[4096 + 16]; /* While this file exists, preallocation fails. */
	bool fault_corrupt;             /* Flip a byte of the next chunk sent, once. */
	uint32_t fault_pace_ms;         /* At most one chunk per transfer per this many ms. */
	uint8_t *chunk_buf;             /* SHARD_CHUNK_SIZE: a chunk before LZ4, or after un-LZ4. */
	pthread_mutex_t saved_lock;
	pthread_mutex_t manifest_lock; /* Shared with the snapshot thread: snapshot.h. */
	struct snapshot_job *saved;    /* Written by the snapshot thread: see snapshot_saved(). */
};

static void stat_add(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static void *grow_array(void *p, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t cap_new = *cap ? *cap : 8;
	void *q;

	if (need <= *cap)
		return p;
	while (cap_new < need)
		cap_new *= 2;
	q = realloc(p, (size_t)cap_new * elem);
	ASSERT(q != NULL); /* Scratch arrays grow to the peak of one turn, then stay. */
	*cap = cap_new;
	return q;
}

/* ------------------------------------------------------------ group table */

/* The slot of a group in its shard's table. The node picks the shard from
 * the low bits of the same XXH3 (node_shard_of): take the table's bits from
 * the high half, or every group of a shard would start its probe at an even
 * (with 2 shards) slot, and clusters would grow long. */
static uint64_t group_hash(uint64_t id)
{
	return XXH3_64bits(&id, sizeof(id)) >> 32;
}

static struct group *group_find(struct shard *s, uint64_t id)
{
	uint64_t mask = s->table_cap - 1;

	for (uint64_t i = group_hash(id) & mask;; i = (i + 1) & mask) {
		if (s->table[i] == NULL)
			return NULL;
		if (s->table_ids[i] == id)
			return s->table[i];
	}
}

static void table_put(struct group **table, uint64_t *ids, uint64_t cap, struct group *g)
{
	uint64_t mask = cap - 1, i = group_hash(g->id) & mask;

	while (table[i] != NULL)
		i = (i + 1) & mask;
	table[i] = g;
	ids[i] = g->id;
}

static int group_insert(struct shard *s, struct group *g)
{
	if ((s->groups_count + 1) * 2 > s->table_cap) {
		uint64_t cap = s->table_cap * 2;
		struct group **table = calloc(cap, sizeof(*table));
		uint64_t *ids = malloc(cap * sizeof(*ids));

		if (table == NULL || ids == NULL) {
			free(table);
			free(ids);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < s->table_cap; i++)
			if (s->table[i])
				table_put(table, ids, cap, s->table[i]);
		free(s->table);
		free(s->table_ids);
		s->table = table;
		s->table_ids = ids;
		s->table_cap = cap;
	}
	table_put(s->table, s->table_ids, s->table_cap, g);
	s->groups_count++;
	stat_add(&s->stats.groups, 1);
	return 0;
}

/* Remove by backward shift, so that probes never need tombstones. */
static void group_erase(struct shard *s, struct group *g)
{
	uint64_t mask = s->table_cap - 1, i = group_hash(g->id) & mask;

	while (s->table[i] != g)
		i = (i + 1) & mask;
	s->table[i] = NULL;
	for (uint64_t j = (i + 1) & mask; s->table[j] != NULL; j = (j + 1) & mask) {
		struct group *h = s->table[j];

		s->table[j] = NULL;
		table_put(s->table, s->table_ids, s->table_cap, h);
	}
	s->groups_count--;
	atomic_fetch_sub_explicit(&s->stats.groups, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------ deadlines */

static void heap_push(struct shard *s, uint64_t deadline_ms, uint64_t group)
{
	uint32_t i;

	s->heap = grow_array(s->heap, &s->heap_cap, s->heap_count + 1, sizeof(*s->heap));
	i = s->heap_count++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (s->heap[parent].deadline_ms <= deadline_ms)
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = (struct heap_item){deadline_ms, group};
}

static struct heap_item heap_pop(struct shard *s)
{
	struct heap_item top = s->heap[0], last = s->heap[--s->heap_count];
	uint32_t i = 0;

	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= s->heap_count)
			break;
		if (child + 1 < s->heap_count &&
		    s->heap[child + 1].deadline_ms < s->heap[child].deadline_ms)
			child++;
		if (last.deadline_ms <= s->heap[child].deadline_ms)
			break;
		s->heap[i] = s->heap[child];
		i = child;
	}
	if (s->heap_count > 0)
		s->heap[i] = last;
	return top;
}

/* Keep the heap holding the group's next deadline. Stale items (a deadline
 * that moved) are skipped when popped. */
static void group_schedule(struct shard *s, struct group *g)
{
	uint64_t d = raft_next_deadline(&g->raft);

	if (d == RAFT_DEADLINE_NONE || d == g->scheduled_ms)
		return;
	if (g->scheduled_ms != 0 && g->scheduled_ms <= d && g->scheduled_ms > s->now_ms)
		return; /* An earlier wake-up is already queued; it reschedules. */
	g->scheduled_ms = d;
	heap_push(s, d, g->id);
}

static void group_dirty(struct shard *s, struct group *g)
{
	if (g->dirty)
		return;
	g->dirty = true;
	g->dirty_next = s->dirty_head;
	s->dirty_head = g;
}

/* ---------------------------------------------------------------- peers */

static struct peer *peer_find(struct shard *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].id == id)
			return &s->peers[i];
	return NULL;
}

/* Room for size bytes of messages in the peer's open frame, or NULL when
 * the message is dropped: the peer is not connected or too far behind. */
static uint8_t *peer_reserve(struct shard *s, struct peer *p, size_t size)
{
	uint8_t *at;

	if (p->state != PEER_UP || p->out.len + p->flight.len + size > SHARD_OUT_SIZE_MAX) {
		stat_add(&s->stats.msgs_dropped, 1);
		return NULL; /* Raft retransmits what is lost. */
	}
	if (p->frame_start != SIZE_MAX &&
	    p->out.len - p->frame_start - WIRE_FRAME_HEADER_SIZE + size > SHARD_FRAME_BODY_SOFT) {
		wire_frame_seal(p->out.data + p->frame_start, WIRE_FRAME_RAFT,
				(uint32_t)(p->out.len - p->frame_start - WIRE_FRAME_HEADER_SIZE));
		p->frame_start = SIZE_MAX;
	}
	if (buf_reserve(&p->out, size + WIRE_FRAME_HEADER_SIZE) != 0) {
		stat_add(&s->stats.msgs_dropped, 1);
		return NULL;
	}
	if (p->frame_start == SIZE_MAX) {
		p->frame_start = p->out.len;
		p->out.len += WIRE_FRAME_HEADER_SIZE;
	}
	at = p->out.data + p->out.len;
	p->out.len += size;
	return at;
}

static void peer_queue(struct shard *s, struct peer *p, const struct raft_msg *m)
{
	size_t size;
	uint8_t *at;

	if (wire_msg_is_beat(m)) {
		/* The heartbeats of all groups to this peer leave as one frame of
		 * 40-byte beats per turn (DESIGN: liveness is per host). */
		if (p->state != PEER_UP ||
		    p->out.len + p->flight.len + p->beats.len + WIRE_BEAT_SIZE >
			SHARD_OUT_SIZE_MAX ||
		    buf_reserve(&p->beats, WIRE_BEAT_SIZE) != 0) {
			stat_add(&s->stats.msgs_dropped, 1);
			return;
		}
		wire_beat_encode(m, p->beats.data + p->beats.len);
		p->beats.len += WIRE_BEAT_SIZE;
		return;
	}
	size = wire_msg_size(m);
	at = peer_reserve(s, p, size);
	if (at)
		wire_msg_encode(m, at);
}

static void peer_send(struct shard *s, struct peer *p);

static void peer_close(struct shard *s, struct peer *p, const char *why)
{
	if (p->state != PEER_UP)
		return;
	node_log(s->config.node_id, "shard %u: connection to node %llu lost: %s",
		 s->config.shard_index, (unsigned long long)p->id, why);
	p->state = PEER_CLOSING;
	shutdown(p->fd, SHUT_RDWR); /* Completes the outstanding probe and send. */
}

static void peer_maybe_closed(struct shard *s, struct peer *p)
{
	if (p->state != PEER_CLOSING || p->ops > 0)
		return;
	close(p->fd);
	p->fd = -1;
	p->out.len = p->flight.len = p->beats.len = 0;
	p->frame_start = SIZE_MAX;
	p->sending = false;
	p->state = PEER_DOWN;
	p->backoff_ms = SHARD_REDIAL_MIN_MS;
	p->redial_ms = s->now_ms; /* Redial at once: a refusal proves the process gone. */
}

static void peer_send_done(struct loop_op *op, int res)
{
	struct peer *p = container_of(op, struct peer, send_op);
	struct shard *s = p->shard;

	p->ops--;
	if (res <= 0) {
		p->sending = false;
		peer_close(s, p, res == 0 ? "send wrote nothing" : strerror(-res));
		peer_maybe_closed(s, p);
		return;
	}
	stat_add(&s->stats.bytes_out, (uint64_t)res);
	p->flight_sent += (size_t)res;
	if (p->flight_sent < p->flight.len && p->state == PEER_UP) {
		/* A short send: the rest goes out next. */
		p->ops++;
		loop_send(&s->loop, &p->send_op, p->fd, p->flight.data + p->flight_sent,
			  (uint32_t)(p->flight.len - p->flight_sent), 0, peer_send_done);
		return;
	}
	p->sending = false;
	/* A burst (elections of thousands of groups, a catch-up) may have grown
	 * the buffer far past what the peer needs now: give it back. */
	if (p->flight.cap > SHARD_BUF_KEEP && p->flight.len < p->flight.cap / 16)
		buf_free(&p->flight);
	p->flight.len = 0;
	peer_maybe_closed(s, p);
}

/* One send per peer per turn: the frames gathered this turn go out together. */
static void peer_send(struct shard *s, struct peer *p)
{
	struct buf tmp;

	if (p->state != PEER_UP || p->sending || (p->out.len == 0 && p->beats.len == 0))
		return;
	if (p->frame_start != SIZE_MAX) {
		wire_frame_seal(p->out.data + p->frame_start, WIRE_FRAME_RAFT,
				(uint32_t)(p->out.len - p->frame_start - WIRE_FRAME_HEADER_SIZE));
		p->frame_start = SIZE_MAX;
	}
	if (p->beats.len > 0) {
		size_t body = p->beats.len;

		if (body > WIRE_FRAME_SIZE_MAX)
			body = WIRE_FRAME_SIZE_MAX / WIRE_BEAT_SIZE * WIRE_BEAT_SIZE;
		if (buf_reserve(&p->out, WIRE_FRAME_HEADER_SIZE + body) == 0) {
			memcpy(p->out.data + p->out.len + WIRE_FRAME_HEADER_SIZE, p->beats.data,
			       body);
			wire_frame_seal(p->out.data + p->out.len, WIRE_FRAME_HEARTBEATS,
					(uint32_t)body);
			p->out.len += WIRE_FRAME_HEADER_SIZE + body;
		}
		p->beats.len = 0; /* Any beyond a frame are dropped: the next round comes. */
	}
	tmp = p->flight;
	p->flight = p->out;
	p->out = tmp;
	p->out.len = 0;
	p->flight_sent = 0;
	p->sending = true;
	p->ops++;
	loop_send(&s->loop, &p->send_op, p->fd, p->flight.data, (uint32_t)p->flight.len, 0,
		  peer_send_done);
}

/* Our outgoing connections carry no data towards us: a completed receive on
 * one means the peer closed it (or reset it). */
static void peer_probe_done(struct loop_op *op, int res)
{
	struct peer *p = container_of(op, struct peer, probe_op);

	p->ops--;
	peer_close(p->shard, p,
		   res == 0  ? "closed by peer"
		   : res < 0 ? strerror(-res)
			     : "unexpected data");
	peer_maybe_closed(p->shard, p);
}

static void groups_peer_event(struct shard *s, uint64_t node, bool up)
{
	for (uint64_t i = 0; i < s->table_cap; i++) {
		struct group *g = s->table[i];

		if (g == NULL)
			continue;
		if (up)
			raft_peer_up(&g->raft, node);
		else
			raft_peer_down(&g->raft, node, s->now_ms);
		group_dirty(s, g);
	}
}

static void peer_connected(struct shard *s, struct peer *p, int fd)
{
	if (p->state == PEER_UP || p->state == PEER_CLOSING) {
		close(fd); /* Lost a race with an older dial; keep the one we have. */
		return;
	}
	p->fd = fd;
	p->state = PEER_UP;
	p->backoff_ms = SHARD_REDIAL_MIN_MS;
	p->frame_start = SIZE_MAX;
	p->ops++;
	loop_recv(&s->loop, &p->probe_op, fd, &p->probe_byte, 1, 0, peer_probe_done);
	if (p->reported_down) {
		p->reported_down = false;
		node_log(s->config.node_id, "shard %u: node %llu is back", s->config.shard_index,
			 (unsigned long long)p->id);
		groups_peer_event(s, p->id, true);
	}
}

static void peer_dial_failed(struct shard *s, struct peer *p, int err)
{
	if (p->state != PEER_DIALING)
		return;
	p->state = PEER_DOWN;
	/* Only a refused connection is evidence that the process is gone: a
	 * timeout may be a slow network, and must not release leader stickiness
	 * (see raft_peer_down). */
	if (err == ECONNREFUSED && !p->reported_down) {
		p->reported_down = true;
		node_log(s->config.node_id, "shard %u: node %llu refuses connections: down",
			 s->config.shard_index, (unsigned long long)p->id);
		groups_peer_event(s, p->id, false);
	}
	p->redial_ms = s->now_ms + p->backoff_ms;
	p->backoff_ms =
	    p->backoff_ms * 2 > SHARD_REDIAL_MAX_MS ? SHARD_REDIAL_MAX_MS : p->backoff_ms * 2;
}

static void peers_dial(struct shard *s)
{
	for (uint32_t i = 0; i < s->peers_count; i++) {
		struct peer *p = &s->peers[i];

		if (p->state != PEER_DOWN || s->now_ms < p->redial_ms)
			continue;
		p->state = PEER_DIALING;
		if (s->config.dial)
			s->config.dial(s->config.dial_arg, s->config.node_id, s->config.shard_index,
				       p->id);
		else
			node_net_dial(s->config.net, s->config.shard_index, p->id);
	}
}

/* ------------------------------------------------------- incoming frames */

static void conn_free(struct shard *s, struct conn *c)
{
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] == c)
			s->conns[i] = NULL;
	close(c->fd);
	buf_free(&c->in);
	free(c);
}

static void conn_refuse(struct shard *s, struct conn *c, const char *why)
{
	node_log(s->config.node_id, "shard %u: closing connection from node %llu: %s",
		 s->config.shard_index, (unsigned long long)c->peer, why);
	stat_add(&s->stats.peers_refused, 1);
	c->closing = true;
}

static bool snapshot_accept(struct shard *s, struct group *g, uint64_t peer,
			    const struct raft_msg *m);
static int snapshot_chunk(struct shard *s, uint64_t peer, const uint8_t *body, size_t size);

static void shard_step(struct shard *s, uint64_t peer, const struct raft_msg *m)
{
	struct group *g;

	if (m->from != peer || m->to != s->config.node_id)
		return; /* A peer speaks only for itself, and only to us. */
	g = group_find(s, m->group);
	if (g == NULL)
		return; /* Not hosted here (yet, or any more). */
	if (s->space_low && ((m->type == RAFT_MSG_APPEND && m->entries_count > 0) ||
			     m->type == RAFT_MSG_SNAPSHOT)) {
		/* No room for them: as if the network lost them. The leader
		 * sends them again once a heartbeat shows this log behind. */
		stat_add(&s->stats.appends_dropped_no_space, 1);
		return;
	}
	if (m->type == RAFT_MSG_SNAPSHOT && !snapshot_accept(s, g, peer, m))
		return; /* Its file is not here: the leader sends it again. */
	raft_step(&g->raft, m, s->now_ms);
	group_dirty(s, g);
}

/* Decode every message of a verified frame body. Returns 0 or -EPROTO. */
static int conn_frame(struct shard *s, struct conn *c, const uint8_t *body, size_t size)
{
	while (size > 0) {
		struct raft_snapshot_meta snap;
		struct raft_msg m;
		size_t used = 0;
		int rv = wire_msg_decode(body, size, &used, &m, s->dec_entries, s->dec_entries_cap,
					 &snap);

		if (rv == -E2BIG) {
			s->dec_entries =
			    grow_array(s->dec_entries, &s->dec_entries_cap,
				       s->dec_entries_cap * 2 + 1024, sizeof(*s->dec_entries));
			continue;
		}
		if (rv != 0)
			return rv;
		shard_step(s, c->peer, &m);
		body += used;
		size -= used;
	}
	return 0;
}

/* The beats of a WIRE_FRAME_HEARTBEATS body. Returns 0 or -EPROTO. */
static int conn_beats(struct shard *s, struct conn *c, const uint8_t *body, size_t size)
{
	if (size % WIRE_BEAT_SIZE != 0)
		return -EPROTO;
	for (size_t off = 0; off < size; off += WIRE_BEAT_SIZE) {
		struct raft_msg m;

		if (wire_beat_decode(body + off, c->peer, s->config.node_id, &m) != 0)
			return -EPROTO;
		shard_step(s, c->peer, &m);
	}
	return 0;
}

static int conn_body(struct shard *s, struct conn *c, uint32_t kind, const uint8_t *body,
		     size_t size)
{
	switch (kind) {
	case WIRE_FRAME_SNAPSHOT:
		return snapshot_chunk(s, c->peer, body, size);
	case WIRE_FRAME_HEARTBEATS:
		return conn_beats(s, c, body, size);
	default:
		return conn_frame(s, c, body, size);
	}
}

static void conn_recv_post(struct shard *s, struct conn *c);

static void conn_recv_done(struct loop_op *op, int res)
{
	struct conn *c = container_of(op, struct conn, recv_op);
	struct shard *s = c->shard;

	c->ops--;
	if (res <= 0 || c->closing || atomic_load(&s->stopping)) {
		conn_free(s, c);
		return;
	}
	stat_add(&s->stats.bytes_in, (uint64_t)res);
	c->in.len += (size_t)res;
	c->received = true; /* Parsed by the turn: see wal_durable_done() for why. */
}

static void conn_parse(struct shard *s, struct conn *c)
{
	size_t off = 0;

	c->received = false;
	while (c->in.len - off >= WIRE_FRAME_HEADER_SIZE) {
		struct wire_frame_header h;
		int rv = wire_frame_header_decode(&h, c->in.data + off);

		if (rv != 0) {
			conn_refuse(s, c, rv == -EMSGSIZE ? "frame too large" : "bad frame kind");
			break;
		}
		if (c->in.len - off < WIRE_FRAME_HEADER_SIZE + h.body_size) {
			if (buf_reserve(&c->in, WIRE_FRAME_HEADER_SIZE + h.body_size) != 0)
				conn_refuse(s, c, "out of memory");
			break;
		}
		if (wire_frame_verify(&h, c->in.data + off + WIRE_FRAME_HEADER_SIZE) != 0) {
			conn_refuse(s, c, "frame checksum mismatch");
			break;
		}
		if (conn_body(s, c, h.kind, c->in.data + off + WIRE_FRAME_HEADER_SIZE,
			      h.body_size) != 0) {
			conn_refuse(s, c, "malformed message");
			break;
		}
		off += WIRE_FRAME_HEADER_SIZE + h.body_size;
	}
	if (c->closing) {
		conn_free(s, c);
		return;
	}
	memmove(c->in.data, c->in.data + off, c->in.len - off);
	c->in.len -= off;
	conn_recv_post(s, c);
}

static void conn_recv_post(struct shard *s, struct conn *c)
{
	if (c->in.cap - c->in.len < 4096 && buf_reserve(&c->in, c->in.cap) != 0) {
		conn_free(s, c);
		return;
	}
	c->ops++;
	loop_recv(&s->loop, &c->recv_op, c->fd, c->in.data + c->in.len,
		  (uint32_t)(c->in.cap - c->in.len), 0, conn_recv_done);
}

static void conn_adopt(struct shard *s, int fd, uint64_t peer)
{
	struct conn *c = calloc(1, sizeof(*c));
	int slot = -1;

	for (int i = 0; i < SHARD_CONNS_MAX && slot < 0; i++)
		if (s->conns[i] == NULL)
			slot = i;
	if (c == NULL || slot < 0 || buf_reserve(&c->in, SHARD_RECV_SIZE) != 0) {
		free(c);
		close(fd);
		return;
	}
	*c = (struct conn){.shard = s, .fd = fd, .peer = peer, .in = c->in};
	s->conns[slot] = c;
	conn_recv_post(s, c);
}

/* ------------------------------------------------------------ durability */

static void persist_push(struct shard *s, struct persist_item item)
{
	if (s->persist_count == s->persist_cap) {
		uint64_t cap = s->persist_cap ? s->persist_cap * 2 : 256;
		struct persist_item *p = malloc(cap * sizeof(*p));

		ASSERT(p != NULL);
		for (uint64_t i = 0; i < s->persist_count; i++)
			p[i] = s->persist[(s->persist_head + i) % s->persist_cap];
		free(s->persist);
		s->persist = p;
		s->persist_cap = cap;
		s->persist_head = 0;
	}
	s->persist[(s->persist_head + s->persist_count++) % s->persist_cap] = item;
}

/* HELD MESSAGE: records in s->held, oldest first, each
 *    0: u64 batch   send once this WAL batch is durable
 *    8: u64 peer
 *   16: u64 size    of the encoded message that follows, padded to 8 */
static void shard_hold(struct shard *s, uint64_t batch, const struct raft_msg *m)
{
	size_t size = wire_msg_size(m);
	uint8_t *p;

	if (buf_reserve(&s->held, 24 + size) != 0) {
		stat_add(&s->stats.msgs_dropped, 1);
		return;
	}
	p = s->held.data + s->held.len;
	memcpy(p, &batch, 8);
	memcpy(p + 8, &m->to, 8);
	memcpy(p + 16, &(uint64_t){size}, 8);
	wire_msg_encode(m, p + 24);
	s->held.len += 24 + size;
}

static void held_release(struct shard *s, uint64_t durable)
{
	while (s->held_off < s->held.len) {
		uint8_t *p = s->held.data + s->held_off;
		uint64_t batch, peer, size;
		struct peer *pe;
		uint8_t *at;

		memcpy(&batch, p, 8);
		if (batch > durable)
			break;
		memcpy(&peer, p + 8, 8);
		memcpy(&size, p + 16, 8);
		pe = peer_find(s, peer);
		at = pe ? peer_reserve(s, pe, size) : NULL;
		if (at)
			memcpy(at, p + 24, size);
		s->held_off += 24 + size;
	}
	if (s->held_off == s->held.len) {
		if (s->held.cap > SHARD_BUF_KEEP && s->held.len < s->held.cap / 16)
			buf_free(&s->held);
		s->held.len = s->held_off = 0;
	}
}

static void groups_fail_all(struct shard *s, int rv);

/* Runs inside loop_run(): only note the news; the turn acts on it, so that no
 * engine is called while a ready of it may be borrowed. */
static void wal_durable_done(struct wal *wal, uint64_t batch, int rv)
{
	struct shard *s = container_of(wal, struct shard, wal);

	if (rv < 0)
		s->wal_error = rv;
	if (batch > s->durable_batch)
		s->durable_batch = batch;
}

static void durable_process(struct shard *s)
{
	uint64_t batch = s->durable_batch;

	if (s->wal_error && !s->wal_failed) {
		node_log(s->config.node_id, "shard %u: WAL failed, stopping its groups: %s",
			 s->config.shard_index, wal_why(&s->wal));
		s->wal_failed = true;
		groups_fail_all(s, WAL_ERR_FAILED);
	}
	while (s->persist_count > 0) {
		struct persist_item *it = &s->persist[s->persist_head];
		struct group *g;

		if (it->batch > batch)
			break;
		g = group_find(s, it->group);
		if (g) {
			raft_persisted(&g->raft, it->index, it->term);
			group_dirty(s, g);
		}
		s->persist_head = (s->persist_head + 1) % s->persist_cap;
		s->persist_count--;
	}
	held_release(s, batch);
}

/* ------------------------------------------------------------ callbacks */

static void done(fl_done_cb cb, void *arg, int rv, uint64_t result, uint64_t leader)
{
	if (cb)
		cb(arg, rv, result, leader);
}

static void group_fail_requests(struct group *g, int rv)
{
	uint64_t leader = raft_leader(&g->raft);

	while (g->props_count > 0) {
		struct pending_prop *p = &g->props[g->props_head];

		done(p->cb, p->arg, rv, 0, leader);
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	for (uint32_t i = 0; i < g->reads_count; i++)
		done(g->reads[i].cb, g->reads[i].arg, rv, 0, leader);
	for (uint32_t i = 0; i < g->reads_apply_count; i++)
		done(g->reads_apply[i].cb, g->reads_apply[i].arg, rv, 0, leader);
	g->reads_count = g->reads_apply_count = 0;
	for (uint32_t i = 0; i < g->check_waits_count; i++)
		done(g->check_waits[i].cb, g->check_waits[i].arg, rv, 0, leader);
	g->check_waits_count = 0;
	if (g->rebuilding) {
		g->rebuilding = false;
		done(g->rebuild_cb, g->rebuild_arg, rv, 0, leader);
	}
}

static void groups_fail_all(struct shard *s, int rv)
{
	for (uint64_t i = 0; i < s->table_cap; i++)
		if (s->table[i])
			group_fail_requests(s->table[i], rv);
}

static void props_push(struct group *g, struct pending_prop p)
{
	if (g->props_count == g->props_cap) {
		uint32_t cap = g->props_cap ? g->props_cap * 2 : 16;
		struct pending_prop *q = malloc(cap * sizeof(*q));

		ASSERT(q != NULL);
		for (uint32_t i = 0; i < g->props_count; i++)
			q[i] = g->props[(g->props_head + i) % g->props_cap];
		free(g->props);
		g->props = q;
		g->props_cap = cap;
		g->props_head = 0;
	}
	g->props[(g->props_head + g->props_count++) % g->props_cap] = p;
}

/* Entry index has been applied with term: settle the proposals up to it. */
/* An entry of term is committed, and the proposals left all lie beyond it:
 * those of an older term can never commit. Every later leader holds the
 * committed entry (§5.4.1), and Log Matching puts only entries of its term
 * or newer after it. Answer them now: a group that goes quiet after losing
 * its leader would never reach their indexes. */
static void props_drop_older(struct group *g, uint64_t term)
{
	while (g->props_count > 0 && g->props[g->props_head].term < term) {
		struct pending_prop *p = &g->props[g->props_head];

		done(p->cb, p->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
}

static void props_settle(struct group *g, uint64_t index, uint64_t term, uint64_t result)
{
	while (g->props_count > 0) {
		struct pending_prop *p = &g->props[g->props_head];

		if (p->index > index)
			break;
		if (p->index == index && p->term == term)
			done(p->cb, p->arg, 0, result, raft_leader(&g->raft));
		else
			done(p->cb, p->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	props_drop_older(g, term);
}

/* The replica jumped to a snapshot at index (term): whether the proposals up
 * to there went into it, it cannot tell. */
static void props_skip(struct group *g, uint64_t index, uint64_t term)
{
	while (g->props_count > 0 && g->props[g->props_head].index <= index) {
		struct pending_prop *p = &g->props[g->props_head];

		done(p->cb, p->arg, ERR_INDETERMINATE, 0, raft_leader(&g->raft));
		g->props_head = (g->props_head + 1) % g->props_cap;
		g->props_count--;
	}
	props_drop_older(g, term);
}

/* No leader because of repair (this replica's, or too many members'): say
 * so rather than "not the leader", which invites a retry elsewhere. */
static int group_error(const struct group *g, int rv)
{
	if (rv == RAFT_ERR_NOT_LEADER && raft_leader(&g->raft) == RAFT_NONE &&
	    (raft_is_repairing(&g->raft) || raft_is_blocked_by_repair(&g->raft)))
		return RAFT_ERR_REPAIRING;
	return rv;
}

/* A diverged replica serves no reads: its state is not the group's. */
static int read_rv(const struct group *g)
{
	return g->diverged ? ERR_DIVERGED : 0;
}

static void reads_settle(struct group *g, uint64_t applied)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->reads_apply_count; i++) {
		struct pending_read *r = &g->reads_apply[i];

		if (r->key <= applied)
			done(r->cb, r->arg, read_rv(g), 0, raft_leader(&g->raft));
		else
			g->reads_apply[kept++] = *r;
	}
	g->reads_apply_count = kept;
}

/* ---------------------------------------------------- consistency checks */

/* CHECK ENTRY: the payload of a RAFT_ENTRY_CHECK, 24 bytes, little-endian.
 *    0: u32 kind     CHECK_MARK: every replica records its digest here;
 *                    CHECK_RESULT: the leader's digest at a mark
 *    4: u32 source   RESULT: enum check_source of the digest; MARK: 0
 *    8: u64 index    RESULT: the mark's log index; MARK: 0
 *   16: u64 digest   RESULT: the leader's digest at that mark; MARK: 0
 *
 * The leader appends a MARK every check_entries log entries, or for
 * fl_group_check(). Every replica, when it applies the MARK at index i,
 * records the digest of its state right after applying entry i - 1 (the
 * apply call is split there): sm.digest() when the embedder supplies one
 * (CHECK_SOURCE_STATE), else the running XXH3 of the NORMAL entries (index,
 * term, payload) it applied since the previous MARK (CHECK_SOURCE_ENTRIES).
 * The leader, once it applied the MARK, appends a RESULT with its digest:
 * the leader is the reference. Every replica compares when it applies the
 * RESULT; one that differs is diverged: a log line, the divergences counter,
 * sm.diverged(), and reads of the group fail with ERR_DIVERGED from then on,
 * until it is rebuilt or a later check finds its whole state (a state
 * digest) equal to its leader's again. A leader whose own state went wrong
 * thus makes every follower report a divergence while it keeps serving:
 * the replicas' reports together say which one is wrong; moving leadership
 * to one of them makes its next check clear it, and the old leader, now a
 * follower, is found diverged and can be rebuilt.
 *
 * Snapshots: a state digest is the same after a restore, so it is always
 * compared. The entry hash is a window between two MARKs; a replica that
 * restored a snapshot (from its leader, or its own at restart) inside a
 * window does not know it and records CHECK_SOURCE_UNKNOWN, which is never
 * compared; the next MARK opens a window it sees whole. Nothing about
 * checks is kept on disk: a restart replays the log, MARKs included.
 *
 * After fl_group_rebuild() the replica applies its log after the snapshot
 * again: RESULTs it had applied before are history (perhaps digests of a
 * leader whose state was the wrong one) and are not compared again.
 *
 * Failure modes: a malformed payload (only a bug or a corrupt log can make
 * one; checksums guard both) is logged and skipped; a RESULT whose MARK
 * this replica did not record (restored past it, or too many marks in
 * flight) is not compared; a leadership change may lose a RESULT, and the
 * next MARK starts over. */
enum check_kind { CHECK_MARK = 1, CHECK_RESULT = 2 };
enum check_source { CHECK_SOURCE_UNKNOWN = 0, CHECK_SOURCE_STATE = 1, CHECK_SOURCE_ENTRIES = 2 };
#define CHECK_PAYLOAD_SIZE 24

struct check_payload {
	uint32_t kind, source;
	uint64_t index, digest;
};

static void check_encode(const struct check_payload *c, uint8_t buf[CHECK_PAYLOAD_SIZE])
{
	le_put32(buf, c->kind);
	le_put32(buf + 4, c->source);
	le_put64(buf + 8, c->index);
	le_put64(buf + 16, c->digest);
}

static bool check_decode(const struct raft_entry *e, struct check_payload *c)
{
	const uint8_t *p = e->data;

	if (e->size != CHECK_PAYLOAD_SIZE || p == NULL)
		return false;
	*c = (struct check_payload){.kind = le_get32(p),
				    .source = le_get32(p + 4),
				    .index = le_get64(p + 8),
				    .digest = le_get64(p + 16)};
	if (c->kind == CHECK_MARK)
		return c->source == 0 && c->index == 0 && c->digest == 0;
	return c->kind == CHECK_RESULT && c->source <= CHECK_SOURCE_ENTRIES && c->index != 0 &&
	       c->index < e->index;
}

/* Fold an applied entry into the window hash (used without sm.digest). */
static void check_hash_entry(struct group *g, const struct fl_entry *e)
{
	static const uint8_t empty[1];
	uint8_t header[16];

	le_put64(header, e->index);
	le_put64(header + 8, e->term);
	g->check_hash = XXH3_64bits_withSeed(header, sizeof(header), g->check_hash);
	g->check_hash = XXH3_64bits_withSeed(e->size ? e->data : empty, e->size, g->check_hash);
}

/* Forget what the state before a restore said: its records and its window. */
static void check_forget(struct group *g)
{
	memset(g->checks, 0, sizeof(g->checks));
	g->check_hash = 0;
	g->check_hash_known = false;
}

/* Settle fl_group_check() callbacks: the one of the mark at index, and any
 * older one whose result will not come. */
static void check_waits_settle(struct group *g, uint64_t index)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->check_waits_count; i++) {
		struct check_wait *w = &g->check_waits[i];

		if (w->index == index)
			done(w->cb, w->arg, read_rv(g), index, raft_leader(&g->raft));
		else if (w->index < index)
			done(w->cb, w->arg, ERR_DROPPED, 0, raft_leader(&g->raft));
		else
			g->check_waits[kept++] = *w;
	}
	g->check_waits_count = kept;
}

static void group_diverge(struct shard *s, struct group *g, uint64_t index, uint64_t local,
			  uint64_t leader)
{
	node_log(s->config.node_id,
		 "group %llu: DIVERGED: at check index %llu this replica's digest is %016llx, "
		 "the leader's %016llx; reads refused until it is rebuilt",
		 (unsigned long long)g->id, (unsigned long long)index, (unsigned long long)local,
		 (unsigned long long)leader);
	if (g->diverged)
		return; /* Counted and reported once until rebuilt. */
	g->diverged = true;
	stat_add(&s->stats.divergences, 1);
	for (uint32_t i = 0; i < g->reads_count; i++)
		done(g->reads[i].cb, g->reads[i].arg, ERR_DIVERGED, 0, raft_leader(&g->raft));
	for (uint32_t i = 0; i < g->reads_apply_count; i++)
		done(g->reads_apply[i].cb, g->reads_apply[i].arg, ERR_DIVERGED, 0,
		     raft_leader(&g->raft));
	g->reads_count = g->reads_apply_count = 0;
	if (s->config.sm.diverged)
		s->config.sm.diverged(s->config.sm.ctx, g->id, index, local, leader);
}

/* A MARK at index is applied: everything before it is. */
static void check_mark_apply(struct shard *s, struct group *g, uint64_t index)
{
	struct check_record *r = &g->checks[g->checks_next++ % SHARD_CHECKS_MAX];

	*r = (struct check_record){.index = index, .source = CHECK_SOURCE_UNKNOWN};
	if (s->config.sm.digest) {
		r->source = CHECK_SOURCE_STATE;
		r->digest = s->config.sm.digest(s->config.sm.ctx, g->id);
	} else if (g->check_hash_known) {
		r->source = CHECK_SOURCE_ENTRIES;
		r->digest = g->check_hash;
	}
	g->check_hash = 0;
	g->check_hash_known = true;
	g->check_mark = index;
	if (g->check_proposed == index)
		g->check_proposed = 0;
	/* The leader's digest is the reference; group_checks_propose() appends it. */
	if (raft_is_leader(&g->raft) && g->owed_count < SHARD_CHECKS_MAX)
		g->owed[g->owed_count++] = *r;
}

static void check_result_apply(struct shard *s, struct group *g, const struct check_payload *c,
			       uint64_t entry_index)
{
	const struct check_record *r = NULL;

	if (entry_index <= g->replay_until) {
		/* Applied again after a rebuild: a leader's digest from before it,
		 * perhaps of the very state the rebuild replaced. Not evidence. */
		check_waits_settle(g, c->index);
		return;
	}
	if (raft_conf_role(raft_conf(&g->raft), s->config.node_id) == RAFT_MEMBER_WITNESS) {
		check_waits_settle(g, c->index);
		return; /* A witness holds no state to compare. */
	}
	for (uint32_t i = 0; i < SHARD_CHECKS_MAX; i++)
		if (g->checks[i].index == c->index)
			r = &g->checks[i];
	if (r != NULL && r->source != CHECK_SOURCE_UNKNOWN && r->source == c->source) {
		stat_add(&s->stats.checks, 1);
		if (r->digest != c->digest) {
			group_diverge(s, g, c->index, r->digest, c->digest);
		} else if (g->diverged && r->source == CHECK_SOURCE_STATE) {
			/* Our whole state equals the leader's now: a divergence found
			 * against an earlier leader (one whose own state was wrong)
			 * no longer holds. An entry hash proves no such thing. */
			g->diverged = false;
			node_log(s->config.node_id,
				 "group %llu: matches its leader again at check index %llu; "
				 "reads served again",
				 (unsigned long long)g->id, (unsigned long long)c->index);
		}
	}
	check_waits_settle(g, c->index);
}

static void check_apply(struct shard *s, struct group *g, const struct raft_entry *e)
{
	struct check_payload c;

	if (!check_decode(e, &c)) {
		node_log(s->config.node_id, "group %llu: malformed check entry %llu skipped",
			 (unsigned long long)g->id, (unsigned long long)e->index);
		return;
	}
	if (c.kind == CHECK_MARK)
		check_mark_apply(s, g, e->index);
	else
		check_result_apply(s, g, &c, e->index);
}

static int check_propose(struct group *g, const struct check_payload *c, uint64_t *index)
{
	uint8_t buf[CHECK_PAYLOAD_SIZE];

	check_encode(c, buf);
	return raft_propose_check(&g->raft, buf, sizeof(buf), index);
}

/* After a group's readies: a leader appends the results it owes and, every
 * check_entries entries, a new mark. A follower owes nothing. */
static void group_checks_propose(struct shard *s, struct group *g)
{
	struct check_payload mark = {.kind = CHECK_MARK};
	uint64_t index;

	if (g->rebuilding && raft_is_leader(&g->raft)) {
		g->rebuilding = false; /* No one to take a snapshot from. */
		done(g->rebuild_cb, g->rebuild_arg, ERR_DROPPED, 0, raft_leader(&g->raft));
	}
	if (!raft_is_leader(&g->raft)) {
		g->owed_count = 0;
		g->check_proposed = 0;
		for (uint32_t i = 0; i < g->check_waits_count; i++)
			done(g->check_waits[i].cb, g->check_waits[i].arg, ERR_DROPPED, 0,
			     raft_leader(&g->raft));
		g->check_waits_count = 0;
		return;
	}
	for (uint32_t i = 0; i < g->owed_count; i++) {
		struct check_payload c = {.kind = CHECK_RESULT,
					  .source = g->owed[i].source,
					  .index = g->owed[i].index,
					  .digest = g->owed[i].digest};

		if (check_propose(g, &c, &index) == 0)
			group_dirty(s, g);
	}
	g->owed_count = 0;
	if (s->config.check_entries == 0 || g->check_proposed != 0 || s->wal_failed ||
	    s->space_low || raft_applied_index(&g->raft) < g->check_mark + s->config.check_entries)
		return;
	if (check_propose(g, &mark, &index) == 0) {
		g->check_proposed = index;
		group_dirty(s, g);
	}
}

/* fl_group_rebuild(): ask the leader for a snapshot; group_install() ends it. */
static int group_rebuild_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg)
{
	int rv;

	if (s->config.sm.save == NULL || s->config.sm.restore == NULL)
		return -ENOTSUP;
	if (g->rebuilding)
		return -EALREADY;
	rv = raft_want_snapshot(&g->raft);
	if (rv != 0)
		return rv;
	node_log(s->config.node_id, "group %llu: rebuilding from a snapshot of leader %llu",
		 (unsigned long long)g->id, (unsigned long long)raft_leader(&g->raft));
	g->rebuilding = true;
	g->rebuild_cb = cb;
	g->rebuild_arg = arg;
	group_dirty(s, g);
	return 0;
}

/* fl_group_check(): append a mark now; cb waits for its result. */
static int group_check_start(struct shard *s, struct group *g, fl_done_cb cb, void *arg)
{
	struct check_payload mark = {.kind = CHECK_MARK};
	uint64_t index;
	int rv = check_propose(g, &mark, &index);

	if (rv != 0)
		return rv;
	g->check_waits = grow_array(g->check_waits, &g->check_waits_cap, g->check_waits_count + 1,
				    sizeof(*g->check_waits));
	g->check_waits[g->check_waits_count++] = (struct check_wait){index, cb, arg};
	group_dirty(s, g);
	return 0;
}

/* ------------------------------------------------------------ snapshots */

/* Append a WAL record, making room when the batch buffers are full. */
static int wal_append_mark_retry(struct shard *s, uint64_t group, uint64_t index, uint64_t term)
{
	int rv = -EAGAIN;

	for (int tries = 0; tries < 100000 && rv == -EAGAIN; tries++) {
		rv = wal_append_mark(&s->wal, group, index, term);
		if (rv == -EAGAIN) {
			wal_flush(&s->wal);
			loop_run(&s->loop, 1);
		}
	}
	return rv;
}

/* Answer the fl_group_snapshot() calls of list. */
static void snapshot_answer(struct shard_req **list, int rv, uint64_t index)
{
	while (*list) {
		struct shard_req *req = *list;

		*list = req->next;
		done(req->cb, req->arg, rv, rv == 0 ? index : 0, 0);
		free(req);
	}
}

/* The snapshot of meta is current (its manifest durable): compact the log
 * there, then write the WAL's mark (after the manifest: on any crash the
 * manifest names a durable file and is at or past the mark), and the hard
 * state again: a group's last hard-state record pins its segment, and a
 * group that never changes term would otherwise pin the oldest segment
 * until the WAL can rewrite it, which it does only for groups with little
 * live data (a group snapshotted off the loop may never qualify). The
 * record's commit is the snapshot's index: committed, and durable. */
static int group_snapshot_compact(struct shard *s, struct group *g,
				  const struct snapshot_meta *meta)
{
	int rv = raft_compact(&g->raft, meta->index);

	if (rv == 0)
		rv = wal_append_mark_retry(s, g->id, meta->index, meta->term);
	if (rv == 0 && g->hard_term != 0) {
		struct wal_hard hard = {g->hard_term, g->hard_vote, meta->index,
					raft_is_repairing(&g->raft)};

		rv = -EAGAIN;
		for (int tries = 0; tries < 100000 && rv == -EAGAIN; tries++) {
			rv = wal_append_hard(&s->wal, g->id, &hard);
			if (rv == -EAGAIN) {
				wal_flush(&s->wal);
				loop_run(&s->loop, 1);
			}
		}
	}
	if (rv == 0)
		stat_add(&s->stats.snapshots_taken, 1);
	return rv;
}

/* Write meta's manifest (the file is durable). The snapshot thread writes
 * manifests too: see snapshot.h. */
static int shard_manifest_write(struct shard *s, const struct snapshot_meta *meta)
{
	int rv;

	pthread_mutex_lock(&s->manifest_lock);
	rv = snapshot_manifest_write(s->snap_dir, meta);
	pthread_mutex_unlock(&s->manifest_lock);
	return rv;
}

/* The file of meta, saved on the shard thread, is durable: make it current
 * and compact. */
static int group_snapshot_commit(struct shard *s, struct group *g, struct snapshot_meta *meta)
{
	int rv;

	meta->conf = *raft_conf_at(&g->raft, meta->index);
	rv = shard_manifest_write(s, meta);
	if (rv == 0)
		rv = group_snapshot_compact(s, g, meta);
	return rv;
}

static void group_snapshot_failed(struct shard *s, struct group *g, uint64_t index, int rv)
{
	node_log(s->config.node_id, "group %llu: snapshot at %llu failed: %s",
		 (unsigned long long)g->id, (unsigned long long)index, err_str(rv));
	g->snapshot_retry = index + (s->config.snapshot_entries ? s->config.snapshot_entries : 1);
}

/* How long a large save held the shard thread (saving or freezing it, then
 * what follows on the shard: manifest unless the snapshot thread wrote it,
 * compaction, WAL mark), and took in all. */
static void snapshot_log_saved(struct shard *s, const struct snapshot_meta *meta, uint64_t save_ns,
			       uint64_t commit_ns, uint64_t total_ns)
{
	if (meta->size < SHARD_SAVE_LOG_SIZE)
		return;
	node_log(s->config.node_id,
		 "group %llu: snapshot %llu saved: %llu bytes in %.1f ms; the shard thread spent "
		 "%.1f ms %s and %.1f ms after it",
		 (unsigned long long)meta->group, (unsigned long long)meta->index,
		 (unsigned long long)meta->size, (double)total_ns / 1e6, (double)save_ns / 1e6,
		 s->config.sm.freeze ? "freezing it" : "saving it", (double)commit_ns / 1e6);
}

struct save_fill {
	struct shard *shard;
	uint64_t group;
};

static int save_fill(void *arg, struct fl_snapshot_writer *w)
{
	struct save_fill *f = arg;

	return f->shard->config.sm.save(f->shard->config.sm.ctx, f->group, w);
}

/* Snapshot thread: hand a written view back to its shard. */
static void snapshot_job_done(struct snapshot_job *job)
{
	struct shard *s = job->owner;

	pthread_mutex_lock(&s->saved_lock);
	job->next = s->saved;
	s->saved = job;
	pthread_mutex_unlock(&s->saved_lock);
	loop_wake(&s->loop);
}

/* Snapshot group at its applied index. With sm.freeze, the state machine
 * freezes a view here and the node's snapshot thread writes it while the
 * group goes on applying; snapshot_saved() commits it. Without, sm.save
 * writes the file here and the turn waits. */
static void group_snapshot(struct shard *s, struct group *g)
{
	uint64_t index = raft_applied_index(&g->raft);
	struct snapshot_meta meta = {
	    .group = g->id, .index = index, .term = raft_term_at(&g->raft, index)};
	struct snapshot_job *job;
	uint64_t started_ns;
	int rv;

	g->snapshot_wanted = false;
	if (index <= raft_snapshot(&g->raft)->index || meta.term == 0) {
		snapshot_answer(&g->snap_asked, 0, raft_snapshot(&g->raft)->index);
		return; /* Nothing new since the last one. */
	}
	g->applied_bytes = 0;
	started_ns = loop_now_ns(&s->loop);
	if (s->config.sm.freeze == NULL) {
		struct save_fill fill = {s, g->id};

		uint64_t saved_ns;

		rv = snapshot_save(s->snap_dir, &meta, save_fill, &fill);
		saved_ns = loop_now_ns(&s->loop);
		if (rv == 0)
			rv = group_snapshot_commit(s, g, &meta);
		if (rv != 0)
			group_snapshot_failed(s, g, index, rv);
		else
			snapshot_log_saved(s, &meta, saved_ns - started_ns,
					   loop_now_ns(&s->loop) - saved_ns,
					   loop_now_ns(&s->loop) - started_ns);
		snapshot_answer(&g->snap_asked, rv, index);
		return;
	}
	job = calloc(1, sizeof(*job));
	rv = job ? s->config.sm.freeze(s->config.sm.ctx, g->id, &job->view) : -ENOMEM;
	if (rv != 0) {
		free(job);
		group_snapshot_failed(s, g, index, rv);
		snapshot_answer(&g->snap_asked, rv, index);
		return;
	}
	job->dir_fd = s->snap_dir;
	job->meta = meta;
	job->meta.conf = *raft_conf_at(&g->raft, index);
	job->manifest_lock = &s->manifest_lock;
	job->sm = s->config.sm;
	job->done = snapshot_job_done;
	job->owner = s;
	job->started_ns = started_ns;
	job->held_ns = loop_now_ns(&s->loop) - started_ns;
	g->saving = true;
	g->snap_saving = g->snap_asked;
	g->snap_asked = NULL;
	snapshot_worker_submit(s->config.snapshots, job);
}

/* One view the snapshot thread wrote and made current (rv 0): compact the
 * group there. A newer snapshot may have been installed meanwhile (then this
 * one is moot), or the group removed (then its files go). */
static void snapshot_saved(struct shard *s, struct snapshot_job *job)
{
	struct group *g = group_find(s, job->meta.group);
	int rv = job->rv;

	if (g == NULL) {
		if (rv == 0) /* Its manifest was written after the group left. */
			snapshot_remove_group(s->snap_dir, job->meta.group);
		return;
	}
	if (!g->saving)
		return; /* A group of the same id made since: its files are its own. */
	g->saving = false;
	group_dirty(s, g); /* Calls that came meanwhile may want another. */
	if (rv == -ESTALE || (rv == 0 && job->meta.index <= raft_snapshot(&g->raft)->index)) {
		snapshot_answer(&g->snap_saving, 0, raft_snapshot(&g->raft)->index);
		return;
	}
	if (rv == 0) {
		uint64_t compact_ns = loop_now_ns(&s->loop);

		rv = group_snapshot_compact(s, g, &job->meta);
		compact_ns = loop_now_ns(&s->loop) - compact_ns;
		if (rv == 0)
			snapshot_log_saved(s, &job->meta, job->held_ns, compact_ns,
					   loop_now_ns(&s->loop) - job->started_ns);
	}
	if (rv != 0 && rv != -ECANCELED) /* Cancelled: the node is stopping. */
		group_snapshot_failed(s, g, job->meta.index, rv);
	snapshot_answer(&g->snap_saving, rv, job->meta.index);
}

/* Take what the snapshot thread handed back. */
static void snapshots_saved(struct shard *s)
{
	struct snapshot_job *job;

	pthread_mutex_lock(&s->saved_lock);
	job = s->saved;
	s->saved = NULL;
	pthread_mutex_unlock(&s->saved_lock);
	while (job) {
		struct snapshot_job *next = job->next;

		snapshot_saved(s, job);
		free(job);
		job = next;
	}
}

static void group_snapshot_maybe(struct shard *s, struct group *g)
{
	uint64_t applied = raft_applied_index(&g->raft);
	const struct shard_config *c = &s->config;
	bool due;

	if (g->saving)
		return; /* One at a time; snapshots_saved() looks again. */
	if ((c->sm.save == NULL && c->sm.freeze == NULL) || s->wal_failed) {
		snapshot_answer(&g->snap_asked, s->wal_failed ? WAL_ERR_FAILED : -ENOTSUP, 0);
		return;
	}
	if (raft_is_snapshot_wanted(&g->raft))
		return; /* Rebuilding: our state is about to be replaced. */
	if (g->snap_asked || raft_is_snapshot_requested(&g->raft)) {
		/* Asked for (fl_group_snapshot), or a follower rebuilds from our
		 * snapshot (fl_group_rebuild): no retry delay, no threshold.
		 * Compacting offers it to that follower. */
		group_snapshot(s, g);
		if (raft_has_ready(&g->raft))
			group_dirty(s, g);
		return;
	}
	if ((c->snapshot_entries == 0 && c->snapshot_bytes == 0) || applied < g->snapshot_retry)
		return;
	due = g->snapshot_wanted ||
	      (c->snapshot_entries > 0 &&
	       applied >= raft_snapshot(&g->raft)->index + c->snapshot_entries) ||
	      (c->snapshot_bytes > 0 && g->applied_bytes >= c->snapshot_bytes);
	if (due)
		group_snapshot(s, g);
}

/* Follower: restore the snapshot the engine installs, make it current. */
static int group_install(struct shard *s, struct group *g, const struct raft_snapshot_meta *snap)
{
	struct snapshot_meta meta = g->received;
	int rv;

	if (meta.index != snap->index || meta.term != snap->term)
		return -ENOENT; /* snapshot_accept() let no other through. */
	meta.conf = snap->conf;
	rv = s->config.sm.restore
		 ? snapshot_restore(s->snap_dir, &meta, s->config.sm.restore, s->config.sm.ctx)
		 : -ENOTSUP;
	if (rv == 0)
		rv = shard_manifest_write(s, &meta);
	if (rv == 0) {
		check_forget(g);
		props_skip(g, meta.index, meta.term);
		/* Reads waiting for an index the snapshot covers are served by it:
		 * no entry up to there will be applied one by one any more. */
		reads_settle(g, meta.index);
		stat_add(&s->stats.snapshots_received, 1);
		node_log(s->config.node_id, "group %llu: installed snapshot %llu (%llu bytes)",
			 (unsigned long long)g->id, (unsigned long long)meta.index,
			 (unsigned long long)meta.size);
	}
	if (rv == 0 && g->rebuilding) {
		/* The state is the leader's now: whatever a check found is gone. */
		node_log(s->config.node_id,
			 "group %llu: rebuilt from the leader's snapshot at %llu",
			 (unsigned long long)g->id, (unsigned long long)snap->index);
		g->rebuilding = false;
		g->diverged = false;
		g->replay_until = g->applied_max;
		done(g->rebuild_cb, g->rebuild_arg, 0, snap->index, raft_leader(&g->raft));
	}
	return rv;
}

static struct transfer *transfer_find(struct shard *s, uint64_t group, uint64_t peer)
{
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++)
		if (s->transfers[i].used && s->transfers[i].group == group &&
		    s->transfers[i].peer == peer)
			return &s->transfers[i];
	return NULL;
}

/* Leader: instead of the bare SNAPSHOT message, stream its file first. */
static void transfer_start(struct shard *s, const struct raft_msg *m)
{
	struct transfer *t = NULL;
	struct snapshot_meta file;

	if (m->snapshot == NULL || transfer_find(s, m->group, m->to) != NULL)
		return;
	for (int i = 0; i < SHARD_TRANSFERS_MAX && t == NULL; i++)
		if (!s->transfers[i].used)
			t = &s->transfers[i];
	if (t == NULL || snapshot_manifest_read(s->snap_dir, m->group, &file) != 0 ||
	    file.index != m->snapshot->index) {
		/* Busy, or not on disk. The engine is told after this turn's readies
		 * (not now: the ready is still borrowed), so that it probes again at
		 * the next heartbeat rather than after its snapshot timeout. */
		if (s->refused_count < SHARD_REFUSED_MAX)
			s->refused[s->refused_count++] = (struct snapshot_refused){m->group, m->to};
		return;
	}
	*t = (struct transfer){.used = true,
			       .group = m->group,
			       .peer = m->to,
			       .file = file,
			       .meta = *m->snapshot,
			       .msg = *m,
			       .started_ms = s->now_ms};
	t->msg.snapshot = &t->meta;
	t->fd = snapshot_open(s->snap_dir, m->group, file.index);
	if (t->fd < 0)
		t->used = false;
}

static void transfer_end(struct shard *s, struct transfer *t, bool ok)
{
	struct group *g = group_find(s, t->group);

	close(t->fd);
	t->used = false;
	if (g) {
		raft_snapshot_sent(&g->raft, t->peer, ok, s->now_ms);
		group_dirty(s, g);
	}
	if (ok) {
		stat_add(&s->stats.snapshots_sent, 1);
		node_log(s->config.node_id,
			 "group %llu: snapshot %llu queued to node %llu: %llu bytes, %llu on the "
			 "wire, in %llu ms",
			 (unsigned long long)t->group, (unsigned long long)t->file.index,
			 (unsigned long long)t->peer, (unsigned long long)t->file.size,
			 (unsigned long long)t->wire_bytes,
			 (unsigned long long)(s->now_ms - t->started_ms));
	}
}

/* Seal the peer's open message frame so that a chunk frame can follow it. */
static void peer_frame_close(struct peer *p)
{
	if (p->frame_start == SIZE_MAX)
		return;
	wire_frame_seal(p->out.data + p->frame_start, WIRE_FRAME_RAFT,
			(uint32_t)(p->out.len - p->frame_start - WIRE_FRAME_HEADER_SIZE));
	p->frame_start = SIZE_MAX;
}

/* Queue the next chunk of t to p: read from the file, LZ4-compressed when
 * configured and when that makes it smaller. Returns 0, -ENOMEM (try at a
 * later turn) or -EIO (the file cannot be read: the transfer ends). */
static int transfer_chunk(struct shard *s, struct transfer *t, struct peer *p)
{
	bool compress = s->config.snapshot_compress;
	uint32_t len =
	    (uint32_t)(t->file.size - t->offset < SHARD_CHUNK_SIZE ? t->file.size - t->offset
								   : SHARD_CHUNK_SIZE);
	uint32_t bound = compress ? (uint32_t)LZ4_compressBound((int)len) : len;
	struct wire_chunk chunk = {t->group,     t->file.index,    t->file.term, t->offset,
				   t->file.size, t->file.checksum, len,          0};
	uint32_t wire_len = len;
	uint8_t *at, *data, *raw;

	if (buf_reserve(&p->out, WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE +
				     (bound > len ? bound : len)) != 0)
		return -ENOMEM;
	if (compress && s->chunk_buf == NULL && (s->chunk_buf = malloc(SHARD_CHUNK_SIZE)) == NULL)
		return -ENOMEM;
	peer_frame_close(p);
	at = p->out.data + p->out.len;
	data = at + WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE;
	raw = compress ? s->chunk_buf : data;
	if (pread(t->fd, raw, len, (off_t)t->offset) != (ssize_t)len)
		return -EIO;
	if (s->fault_corrupt && len > 0) {
		/* Before the frame checksum: only the file's checksum can catch
		 * it, at the receiver. */
		raw[len / 2] ^= 0x40;
		s->fault_corrupt = false;
		node_log(s->config.node_id, "test fault: corrupted a chunk of group %llu",
			 (unsigned long long)t->group);
	}
	if (compress) {
		int n = LZ4_compress_default((const char *)raw, (char *)data, (int)len, (int)bound);

		if (n > 0 && (uint32_t)n < len)
			chunk.packed_len = wire_len = (uint32_t)n;
		else
			memcpy(data, raw, len);
	}
	wire_chunk_encode(&chunk, at + WIRE_FRAME_HEADER_SIZE);
	wire_frame_seal(at, WIRE_FRAME_SNAPSHOT, WIRE_CHUNK_HEADER_SIZE + wire_len);
	p->out.len += WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE + wire_len;
	t->offset += len;
	t->wire_bytes += wire_len;
	if (s->fault_pace_ms > 0)
		t->next_ms = s->now_ms + s->fault_pace_ms;
	return 0;
}

/* Send the next chunks of every transfer, a window's worth per peer, so a
 * snapshot neither floods the link nor starves other groups' traffic. */
static void transfers_pump(struct shard *s)
{
	for (uint32_t i = 0; i < s->refused_count; i++) {
		struct group *g = group_find(s, s->refused[i].group);

		if (g) {
			raft_snapshot_sent(&g->raft, s->refused[i].peer, false, s->now_ms);
			group_dirty(s, g);
		}
	}
	s->refused_count = 0;
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++) {
		struct transfer *t = &s->transfers[i];
		struct peer *p = t->used ? peer_find(s, t->peer) : NULL;

		if (!t->used)
			continue;
		if (p == NULL || p->state != PEER_UP || group_find(s, t->group) == NULL) {
			transfer_end(s, t, false);
			continue;
		}
		while (t->offset < t->file.size && s->now_ms >= t->next_ms &&
		       p->out.len + p->flight.len < SHARD_SNAP_QUEUE_MAX) {
			int rv = transfer_chunk(s, t, p);

			if (rv == -EIO)
				transfer_end(s, t, false);
			if (rv != 0)
				break;
		}
		if (t->used && t->offset == t->file.size) {
			peer_queue(s, p, &t->msg); /* After the last chunk, on the same stream. */
			transfer_end(s, t, true);
		}
	}
}

static struct snapshot_recv *recv_find(struct shard *s, uint64_t group, uint64_t index,
				       uint64_t peer, int *slot)
{
	for (int i = 0; i < SHARD_RECVS_MAX; i++) {
		struct snapshot_recv *r = &s->recvs[i];

		if (s->recvs_used[i] && r->group == group && r->index == index && r->peer == peer) {
			*slot = i;
			return r;
		}
	}
	return NULL;
}

/* A chunk of a snapshot file from peer. Returns 0, or -EPROTO to close the
 * connection. Anything unexpected only drops the partial file. */
static int snapshot_chunk(struct shard *s, uint64_t peer, const uint8_t *body, size_t size)
{
	struct wire_chunk c;
	struct snapshot_recv *r;
	const uint8_t *data;
	int slot = -1;

	if (wire_chunk_decode(&c, body, size) != 0)
		return -EPROTO;
	if (group_find(s, c.group) == NULL)
		return 0;
	r = recv_find(s, c.group, c.index, peer, &slot);
	if (r != NULL && (c.offset != r->received || c.size != r->size)) {
		snapshot_recv_abort(s->snap_dir, r); /* A new attempt, or a gap. */
		s->recvs_used[slot] = false;
		r = NULL;
	}
	if (r == NULL) {
		int oldest = 0;

		if (c.offset != 0 || s->space_low)
			return 0; /* Not the start; or no room for the file. */
		/* A new attempt supersedes any partial file of the group, from
		 * whichever sender (a leader that died mid-stream): they would
		 * share a name otherwise. */
		for (int i = 0; i < SHARD_RECVS_MAX; i++)
			if (s->recvs_used[i] && s->recvs[i].group == c.group) {
				snapshot_recv_abort(s->snap_dir, &s->recvs[i]);
				s->recvs_used[i] = false;
			}
		for (int i = 0; i < SHARD_RECVS_MAX && slot < 0; i++) {
			if (!s->recvs_used[i])
				slot = i;
			else if (s->recvs[i].last_ms < s->recvs[oldest].last_ms)
				oldest = i;
		}
		if (slot < 0 && s->now_ms - s->recvs[oldest].last_ms > SHARD_RECV_IDLE_MS) {
			/* A transfer whose sender went away: its slot is needed. */
			snapshot_recv_abort(s->snap_dir, &s->recvs[oldest]);
			s->recvs_used[oldest] = false;
			slot = oldest;
		}
		if (slot < 0)
			return 0; /* Too many at once: the leader retries. */
		r = &s->recvs[slot];
		*r = (struct snapshot_recv){.group = c.group,
					    .index = c.index,
					    .term = c.term,
					    .size = c.size,
					    .checksum = c.checksum,
					    .peer = peer,
					    .started_ms = s->now_ms,
					    .fd = -1};
		if (snapshot_recv_begin(s->snap_dir, r) != 0)
			return 0;
		s->recvs_used[slot] = true;
	}
	r->last_ms = s->now_ms;
	data = body + WIRE_CHUNK_HEADER_SIZE;
	if (c.packed_len != 0) {
		/* Unpacked into at most a chunk; anything else drops the file. */
		if (c.len > SHARD_CHUNK_SIZE ||
		    (s->chunk_buf == NULL && (s->chunk_buf = malloc(SHARD_CHUNK_SIZE)) == NULL) ||
		    LZ4_decompress_safe((const char *)data, (char *)s->chunk_buf, (int)c.packed_len,
					(int)c.len) != (int)c.len) {
			snapshot_recv_abort(s->snap_dir, r);
			s->recvs_used[slot] = false;
			return 0;
		}
		data = s->chunk_buf;
	}
	if (snapshot_recv_write(r, data, c.len) != 0) {
		snapshot_recv_abort(s->snap_dir, r);
		s->recvs_used[slot] = false;
	}
	return 0;
}

/* A SNAPSHOT message may reach the engine only if the engine will not need
 * its file, or the file arrived whole and verified. */
static bool snapshot_accept(struct shard *s, struct group *g, uint64_t peer,
			    const struct raft_msg *m)
{
	const struct raft_snapshot_meta *snap = m->snapshot;
	struct snapshot_recv *r;
	int slot;

	if (snap == NULL)
		return false;
	if (!raft_is_snapshot_wanted(&g->raft) &&
	    (snap->index <= raft_commit_index(&g->raft) ||
	     raft_term_at(&g->raft, snap->index) == snap->term))
		return true; /* Nothing to install: the engine only answers. */
	r = recv_find(s, g->id, snap->index, peer, &slot);
	if (r == NULL || r->term != snap->term)
		return false;
	s->recvs_used[slot] = false;
	if (snapshot_recv_finish(s->snap_dir, r) != 0) {
		snapshot_recv_abort(s->snap_dir, r); /* Idempotent: finish may have closed it. */
		node_log(s->config.node_id, "group %llu: snapshot %llu from node %llu %s",
			 (unsigned long long)g->id, (unsigned long long)snap->index,
			 (unsigned long long)peer, "is incomplete or fails its checksum");
		return false;
	}
	node_log(s->config.node_id,
		 "group %llu: snapshot %llu received from node %llu: %llu bytes in %llu ms",
		 (unsigned long long)g->id, (unsigned long long)r->index, (unsigned long long)peer,
		 (unsigned long long)r->size, (unsigned long long)(s->now_ms - r->started_ms));
	g->received = (struct snapshot_meta){.group = g->id,
					     .index = r->index,
					     .term = r->term,
					     .size = r->size,
					     .checksum = r->checksum};
	return true;
}

/* ------------------------------------------------------------- readies */

/* Hand entries from..to of the apply scratch to the state machine. */
static void apply_run(struct shard *s, struct group *g, uint32_t from, uint32_t to)
{
	if (from == to)
		return;
	if (s->config.sm.apply)
		s->config.sm.apply(s->config.sm.ctx, g->id, s->apply_entries + from, to - from,
				   s->apply_results + from);
	if (s->config.sm.digest == NULL)
		for (uint32_t i = from; i < to; i++)
			check_hash_entry(g, &s->apply_entries[i]);
}

static void group_apply(struct shard *s, struct group *g, const struct raft_ready *rd)
{
	uint32_t n = 0, k = 0, run = 0;
	uint64_t last;

	if (rd->committed_count == 0)
		return;
	if (rd->committed_count > s->apply_cap) {
		uint32_t cap = s->apply_cap;

		s->apply_entries = grow_array(s->apply_entries, &s->apply_cap, rd->committed_count,
					      sizeof(*s->apply_entries));
		s->apply_results = grow_array(s->apply_results, &cap, rd->committed_count,
					      sizeof(*s->apply_results));
	}
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];

		if (e->type == RAFT_ENTRY_NORMAL) {
			s->apply_entries[n++] = (struct fl_entry){
			    .index = e->index, .term = e->term, .data = e->data, .size = e->size};
			g->applied_bytes += e->size;
		} else if (e->type == RAFT_ENTRY_CHECK) {
			/* A check digests the state right after the entry before it:
			 * the apply call is split here. Check entries are the shard's,
			 * never the embedder's. */
			apply_run(s, g, run, n);
			run = n;
			check_apply(s, g, e);
		}
	}
	apply_run(s, g, run, n);
	for (uint32_t i = 0; i < rd->committed_count; i++) {
		const struct raft_entry *e = &rd->committed[i];
		uint64_t result = 0;

		if (e->type == RAFT_ENTRY_NORMAL)
			result = s->config.sm.apply ? s->apply_results[k++] : 0;
		props_settle(g, e->index, e->term, result);
	}
	last = rd->committed[rd->committed_count - 1].index;
	if (last > g->applied_max)
		g->applied_max = last;
	stat_add(&s->stats.applied, rd->committed_count);
	if (g->was_leader)
		stat_add(&s->stats.commits, rd->committed_count);
	raft_applied(&g->raft, last);
	reads_settle(g, last);
}

static void group_reads(struct group *g, const struct raft_ready *rd)
{
	for (uint32_t i = 0; i < rd->reads_count; i++) {
		const struct raft_read *r = &rd->reads[i];

		for (uint32_t j = 0; j < g->reads_count; j++) {
			struct pending_read p = g->reads[j];

			if (p.key != r->context)
				continue;
			g->reads[j] = g->reads[--g->reads_count];
			if (r->index == 0) {
				done(p.cb, p.arg, RAFT_ERR_NOT_LEADER, 0, raft_leader(&g->raft));
			} else if (r->index <= g->raft.applied) {
				done(p.cb, p.arg, read_rv(g), 0, raft_leader(&g->raft));
			} else {
				g->reads_apply =
				    grow_array(g->reads_apply, &g->reads_apply_cap,
					       g->reads_apply_count + 1, sizeof(*g->reads_apply));
				g->reads_apply[g->reads_apply_count++] =
				    (struct pending_read){r->index, p.cb, p.arg, p.asked_ms};
			}
			break;
		}
	}
}

/* Fail the reads still waiting for their read index that were asked before
 * before_ms (UINT64_MAX: all). A follower forwards a read to the leader as
 * one message that nothing retransmits: when the message or its answer is
 * lost (a connection reset, a leader crash), or the leader changes, no
 * answer ever comes. Failing a read is always safe (the caller retries);
 * an answer that comes later finds no context and is ignored. */
static void reads_abandon(struct group *g, uint64_t before_ms)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < g->reads_count; i++) {
		struct pending_read p = g->reads[i];

		if (p.asked_ms < before_ms)
			done(p.cb, p.arg, RAFT_ERR_NOT_LEADER, 0, raft_leader(&g->raft));
		else
			g->reads[kept++] = p;
	}
	g->reads_count = kept;
}

/* Append a ready's entries, in pieces the WAL takes at once: a follower
 * catching up may receive more in one turn than one append may hold
 * (-EMSGSIZE, returned before anything is written). Waits while the batch
 * buffers are full. Each piece starts where the last one ended, so a crash
 * between pieces leaves a prefix of the entries: a shorter log, never a
 * hole. */
static int wal_append_ready_entries(struct shard *s, struct group *g, const struct raft_ready *rd)
{
	uint32_t count = rd->entries_count, done = 0, piece = count;
	int rv = 0;

	s->wal_entries =
	    grow_array(s->wal_entries, &s->wal_entries_cap, count, sizeof(*s->wal_entries));
	for (uint32_t i = 0; i < count; i++)
		s->wal_entries[i] = (struct wal_entry){.term = rd->entries[i].term,
						       .type = rd->entries[i].type,
						       .size = rd->entries[i].size,
						       .data = rd->entries[i].data};
	for (int tries = 0; done < count && tries < 100000; tries++) {
		uint32_t n = piece < count - done ? piece : count - done;

		rv = wal_append_entries(&s->wal, g->id, rd->entries[done].index,
					s->wal_entries + done, n);
		if (rv == -EAGAIN) {
			/* Buffers full: let a batch finish, then try again. */
			wal_flush(&s->wal);
			loop_run(&s->loop, 1);
			continue;
		}
		if (rv == -EMSGSIZE && n > 1) {
			piece = n / 2;
			continue;
		}
		if (rv != 0)
			return rv;
		done += n;
	}
	return done == count ? 0 : rv;
}

/* Append a ready's snapshot mark, entries and hard state to the WAL, in
 * that order, each waiting while the batch buffers are full. */
static int wal_append_ready(struct shard *s, struct group *g, const struct raft_ready *rd)
{
	int rv = 0;

	if (rd->snapshot)
		rv = wal_append_mark_retry(s, g->id, rd->snapshot->index, rd->snapshot->term);
	if (rv == 0 && rd->entries_count > 0)
		rv = wal_append_ready_entries(s, g, rd);
	/* Term and vote must be durable before what depends on them leaves;
	 * commit need not be (a restarted node learns it again from the
	 * leader), so a change of commit alone writes nothing: with many
	 * groups that would be a record per group per turn. */
	if (rv == 0 && rd->hard_changed &&
	    (rd->hard.term != g->hard_term || rd->hard.vote != g->hard_vote)) {
		/* REPAIR: the flag stays on every hard state until the repair
		 * ends, so that a restart resumes it (see groups_recover()). */
		struct wal_hard hard = {rd->hard.term, rd->hard.vote, rd->hard.commit,
					raft_is_repairing(&g->raft)};

		rv = -EAGAIN;
		for (int tries = 0; tries < 100000 && rv == -EAGAIN; tries++) {
			rv = wal_append_hard(&s->wal, g->id, &hard);
			if (rv == -EAGAIN) {
				wal_flush(&s->wal);
				loop_run(&s->loop, 1);
			}
		}
		if (rv == 0) {
			g->hard_term = rd->hard.term;
			g->hard_vote = rd->hard.vote;
		}
	}
	return rv;
}

static void group_ready(struct shard *s, struct group *g)
{
	struct raft_ready rd;
	uint64_t position;
	int rv;

	raft_ready(&g->raft, &rd);
	if (rd.snapshot && (rv = group_install(s, g, rd.snapshot)) != 0) {
		/* The engine moved on to the snapshot; the state machine could not.
		 * Stop here rather than apply entries on top of the wrong state. */
		node_log(s->config.node_id, "group %llu: cannot install snapshot %llu: %s",
			 (unsigned long long)g->id, (unsigned long long)rd.snapshot->index,
			 err_str(rv));
		s->wal_failed = true;
		groups_fail_all(s, WAL_ERR_FAILED);
		return;
	}
	if (rd.snapshot || rd.entries_count > 0 || rd.hard_changed) {
		rv = s->wal_failed ? WAL_ERR_FAILED : wal_append_ready(s, g, &rd);
		if (rv != 0) {
			/* The engine handed these records out: they cannot wait.
			 * -ENOSPC here means the reserve kept for a full disk is
			 * spent, which shard_space_check() is there to prevent. */
			if (!s->wal_failed && rv == -ENOSPC)
				node_log(s->config.node_id,
					 "shard %u: WAL directory %s is out of space and its "
					 "reserve is spent; stopping its groups: %s",
					 s->config.shard_index, s->config.wal_dir,
					 wal_why(&s->wal));
			else if (!s->wal_failed)
				node_log(s->config.node_id, "shard %u: WAL append failed: %s",
					 s->config.shard_index, err_str(rv));
			s->wal_failed = true;
			groups_fail_all(s, WAL_ERR_FAILED);
			return; /* Nothing may leave that depends on this ready. */
		}
		if (rd.entries_count > 0) {
			const struct raft_entry *last = &rd.entries[rd.entries_count - 1];

			persist_push(s, (struct persist_item){wal_position(&s->wal), g->id,
							      last->index, last->term});
		}
	}
	for (uint32_t i = 0; i < rd.msgs_count; i++) {
		struct peer *p = peer_find(s, rd.msgs[i].to);

		if (p == NULL)
			continue;
		if (rd.msgs[i].type == RAFT_MSG_SNAPSHOT)
			transfer_start(s, &rd.msgs[i]);
		else
			peer_queue(s, p, &rd.msgs[i]);
	}
	position = wal_position(&s->wal);
	for (uint32_t i = 0; i < rd.msgs_after_count; i++) {
		struct peer *p = peer_find(s, rd.msgs_after[i].to);

		if (p == NULL)
			continue;
		if (position > wal_durable(&s->wal))
			shard_hold(s, position, &rd.msgs_after[i]);
		else
			peer_queue(s, p, &rd.msgs_after[i]);
	}
	group_reads(g, &rd);
	group_apply(s, g, &rd); /* Last: it calls back into the engine. */
}

static int wal_append_retry(struct shard *s, uint64_t group, const struct wal_hard *hard,
			    uint64_t index, uint64_t term);

/* When a repair ends, write a hard state without the repairing flag (after
 * the entries that ended it: on a crash before it is durable, the group
 * repairs again on restart, which is safe); say so, and say once when
 * repairing members block the group. */
static void group_repair_watch(struct shard *s, struct group *g)
{
	bool blocked = raft_is_blocked_by_repair(&g->raft);

	if (g->repairing && !raft_is_repairing(&g->raft) && !s->wal_failed) {
		struct wal_hard hard = {g->hard_term, g->hard_vote, raft_commit_index(&g->raft),
					false};
		int rv = wal_append_retry(s, g->id, &hard, 0, 0);

		if (rv != 0) {
			node_log(s->config.node_id, "shard %u: WAL append failed: %s",
				 s->config.shard_index, err_str(rv));
			s->wal_failed = true;
			groups_fail_all(s, WAL_ERR_FAILED);
			return;
		}
		g->repairing = false;
		node_log(s->config.node_id,
			 "group %llu: repaired: the log holds leader %llu's up to its mark "
			 "(index %llu now); voting and acknowledging again",
			 (unsigned long long)g->id, (unsigned long long)raft_leader(&g->raft),
			 (unsigned long long)raft_last_index(&g->raft));
	}
	if (blocked && !g->blocked_logged)
		node_log(s->config.node_id,
			 "group %llu: unavailable: too many of its members repair data their "
			 "storage lost (%s); waiting, never electing without them",
			 (unsigned long long)g->id,
			 raft_is_leader(&g->raft) ? "too few left to commit" : "votes refused");
	g->blocked_logged = blocked;
}

static void group_process(struct shard *s, struct group *g)
{
	bool leader;

	for (int i = 0; i < 16 && raft_has_ready(&g->raft); i++)
		group_ready(s, g);
	group_checks_propose(s, g);
	raft_trim(&g->raft); /* Frees the ready's buffers once the group is quiesced. */
	group_snapshot_maybe(s, g);
	if (g->raft.elections_started != g->elections_seen) {
		stat_add(&s->stats.elections, g->raft.elections_started - g->elections_seen);
		g->elections_seen = g->raft.elections_started;
	}
	leader = raft_is_leader(&g->raft);
	if (leader != g->was_leader) {
		if (leader) {
			stat_add(&s->stats.leaders, 1);
			stat_add(&s->stats.leaderships, 1);
		} else {
			atomic_fetch_sub_explicit(&s->stats.leaders, 1, memory_order_relaxed);
		}
		g->was_leader = leader;
	}
	group_repair_watch(s, g);
	if (raft_leader(&g->raft) != g->last_leader) {
		g->last_leader = raft_leader(&g->raft);
		reads_abandon(g, UINT64_MAX); /* Asked of another leader. */
		if (s->config.sm.leader_changed)
			s->config.sm.leader_changed(s->config.sm.ctx, g->id, g->last_leader,
						    raft_term(&g->raft));
		if (g->last_leader != RAFT_NONE)
			node_log(s->config.node_id, "group %llu: leader is node %llu, term %llu",
				 (unsigned long long)g->id, (unsigned long long)g->last_leader,
				 (unsigned long long)raft_term(&g->raft));
	}
	group_schedule(s, g);
}

/* -------------------------------------------------------- group lifecycle */

static int group_open(struct shard *s, uint64_t id, const struct raft_boot *boot,
		      struct group **out)
{
	struct group *g = calloc(1, sizeof(*g));
	struct raft_config rc;
	int rv;

	if (g == NULL)
		return -ENOMEM;
	raft_config_default(&rc, s->config.node_id, id);
	rc.seed = XXH3_64bits_withSeed(&id, sizeof(id), s->config.node_id);
	rc.election_timeout_ms = s->config.election_timeout_ms;
	rc.heartbeat_interval_ms = s->config.heartbeat_interval_ms;
	rc.clock_drift_max_ms = s->config.election_timeout_ms / 10;
	rc.entry_size_max = s->config.entry_size_max;
	rc.quiesce = s->config.quiesce;
	rc.quiesce_after_ms = s->config.election_timeout_ms * 3;
	rc.lease_read = s->config.lease_read;
	g->id = id;
	/* A group that starts from a snapshot does not know its check window. */
	g->check_hash_known = boot->snapshot.index == 0;
	g->hard_term = boot->hard.term;
	g->hard_vote = boot->hard.vote;
	rv = raft_init(&g->raft, &rc, boot, s->now_ms);
	if (rv != 0) {
		free(g);
		return rv;
	}
	rv = group_insert(s, g);
	if (rv != 0) {
		raft_deinit(&g->raft);
		free(g);
		return rv;
	}
	group_dirty(s, g);
	*out = g;
	return 0;
}

static void batch_flush(struct shard *s, struct group *g);

/* Take g off the shard's lists of batched and dirty groups, which hold
 * pointers to it, before it is freed: a group removed while this turn's
 * drain batched proposals for it, or after a message made it dirty, would
 * otherwise be processed after the free. Its batch is proposed first, so
 * that group_fail_requests() answers those proposals too. */
static void group_unlink(struct shard *s, struct group *g)
{
	struct group **link;

	if (g->batched) {
		for (link = &s->batched_head; *link != g; link = &(*link)->batch_next)
			ASSERT(*link != NULL); /* A batched group is on the list. */
		*link = g->batch_next;
		batch_flush(s, g);
	}
	if (g->dirty) {
		for (link = &s->dirty_head; *link != g; link = &(*link)->dirty_next)
			ASSERT(*link != NULL); /* A dirty group is on the list. */
		*link = g->dirty_next;
		g->dirty = false;
	}
}

static void group_close(struct shard *s, struct group *g, int rv)
{
	group_unlink(s, g);
	group_fail_requests(g, rv);
	snapshot_answer(&g->snap_asked, rv, 0);
	snapshot_answer(&g->snap_saving, rv, 0); /* Its view is dropped when written. */
	if (g->was_leader)
		atomic_fetch_sub_explicit(&s->stats.leaders, 1, memory_order_relaxed);
	group_erase(s, g);
	raft_deinit(&g->raft);
	free(g->props);
	free(g->reads);
	free(g->reads_apply);
	free(g->check_waits);
	free(g);
}

/* A new group starts from one CONF entry at index 1, term 1, the same on every
 * initial member, so that their logs match from the first entry. */
static int group_create(struct shard *s, uint64_t id, const uint64_t *members, uint32_t count)
{
	struct raft_conf conf = {0};
	uint8_t buf[8 + 16 * RAFT_MEMBERS_MAX];
	struct raft_entry entry = {.term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .data = buf};
	struct raft_boot boot = {
	    .hard = {.term = 1, .commit = 1}, .entries = &entry, .entries_count = 1};
	struct group *g;

	if (group_find(s, id))
		return ERR_GROUP_EXISTS;
	for (uint32_t i = 0; i < count; i++)
		if (raft_conf_add(&conf, members[i], RAFT_MEMBER_VOTER) != 0)
			return RAFT_ERR_CONF_INVALID;
	if (raft_conf_role(&conf, s->config.node_id) != RAFT_MEMBER_VOTER)
		return RAFT_ERR_CONF_INVALID;
	raft_conf_encode(&conf, buf);
	entry.size = raft_conf_encoded_size(&conf);
	/* The engine hands the boot entry out as already durable; it goes to the
	 * WAL here, ahead of anything the group does. */
	{
		struct wal_entry we = {
		    .term = 1, .type = RAFT_ENTRY_CONF, .size = entry.size, .data = buf};
		struct wal_hard hard = {.term = 1, .commit = 1};
		int rv = wal_append_entries(&s->wal, id, 1, &we, 1);

		if (rv == 0)
			rv = wal_append_hard(&s->wal, id, &hard);
		if (rv != 0)
			return rv;
	}
	return group_open(s, id, &boot, &g);
}

static int group_join(struct shard *s, uint64_t id)
{
	struct raft_boot boot = {0};
	struct wal_hard hard = {0};
	struct group *g;
	int rv;

	if (group_find(s, id))
		return ERR_GROUP_EXISTS;
	rv = wal_append_hard(&s->wal, id, &hard); /* So a restart knows the group. */
	if (rv != 0)
		return rv;
	return group_open(s, id, &boot, &g);
}

/* Start group from its current snapshot, if it has one: restore the state
 * machine from the file and begin the log after it. The manifest is written
 * before the WAL's mark, so it is at or past the mark; WAL entries at or
 * below it are skipped, and a WAL entry at its index with another term
 * means the log after it was never this snapshot's (Raft §7): dropped. */
static int group_recover_snapshot(struct shard *s, const struct wal_group *wg,
				  struct raft_boot *boot, uint64_t *next)
{
	struct snapshot_meta meta;
	uint64_t term = 0;
	int rv = snapshot_manifest_read(s->snap_dir, wg->group, &meta);

	if (rv == -ENOENT)
		return wg->mark_index == 0 ? 0 : WAL_ERR_GAP; /* A mark with no snapshot. */
	if (rv != 0)
		return rv;
	if (meta.index < wg->mark_index)
		return WAL_ERR_GAP;
	if (s->config.sm.restore == NULL)
		return -ENOTSUP;
	rv = snapshot_restore(s->snap_dir, &meta, s->config.sm.restore, s->config.sm.ctx);
	if (rv != 0)
		return rv;
	boot->snapshot = (struct raft_snapshot_meta){meta.index, meta.term, meta.conf};
	boot->applied = meta.index;
	*next = meta.index + 1;
	if (wal_term(&s->wal, wg->group, meta.index, &term) == 0 && term != meta.term)
		*next = wg->last_index + 1;
	if (*next < wg->first_index && *next <= wg->last_index)
		return WAL_ERR_GAP;
	return 0;
}

/* Append a WAL record at startup, letting full batch buffers drain. */
static int wal_append_retry(struct shard *s, uint64_t group, const struct wal_hard *hard,
			    uint64_t index, uint64_t term)
{
	int rv = -EAGAIN;

	for (int tries = 0; tries < 100000 && rv == -EAGAIN; tries++) {
		rv = hard ? wal_append_hard(&s->wal, group, hard)
			  : wal_append_reset(&s->wal, group, index, term);
		if (rv == -EAGAIN) {
			wal_flush(&s->wal);
			loop_run(&s->loop, 1);
		}
	}
	return rv;
}

/* A repair id for group (raft_boot.repair_id): differs from one start of
 * the process to the next. */
static uint64_t repair_id_new(uint64_t group)
{
	struct timespec ts;
	uint64_t seed[3];

	clock_gettime(CLOCK_REALTIME, &ts);
	seed[0] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	seed[1] = (uint64_t)getpid();
	seed[2] = group;
	return XXH3_64bits(seed, sizeof(seed)) | 1;
}

/* Start group id, whose storage lost data (a WAL record or its snapshot
 * failed verification; what says which), as a repairing member: from its
 * own snapshot if that verifies, else from nothing, with no log after it
 * (raft_boot.repair; engine/raft.c, REPAIR, says why this is safe). The WAL
 * is reset to that snapshot first, so that the damaged records are
 * superseded and what the repair writes wins on every later recovery; a
 * damaged snapshot's files go once that reset is durable (the WAL's mark
 * then names no snapshot). Term and vote are kept; a damaged record's
 * verified header may raise the term, whose vote is then unknown (and the
 * engine casts none while repairing). Other groups are untouched. */
static int group_recover_damaged(struct shard *s, uint64_t id, const char *what)
{
	const struct wal_group *wg = wal_group_find(&s->wal, id);
	struct wal_hard hard = wg->hard;
	uint64_t damaged_term = wg->damaged_term;
	struct raft_boot boot = {.repair = true, .repair_id = repair_id_new(id)};
	struct snapshot_meta meta;
	bool snapshot_bad = false;
	struct group *g;
	int rv = snapshot_manifest_read(s->snap_dir, id, &meta);

	if (rv == 0)
		rv = s->config.sm.restore ? snapshot_restore(s->snap_dir, &meta,
							     s->config.sm.restore, s->config.sm.ctx)
					  : -ENOTSUP;
	if (rv == 0) {
		boot.snapshot = (struct raft_snapshot_meta){meta.index, meta.term, meta.conf};
		boot.applied = meta.index;
	} else if (rv == -EBADMSG || (rv == -ENOENT && wg->mark_index > 0)) {
		snapshot_bad = rv == -EBADMSG;
	} else if (rv != -ENOENT) {
		return rv;
	}
	if (damaged_term > hard.term) {
		hard.term = damaged_term; /* A vote of that term may be lost: none. */
		hard.vote = RAFT_NONE;
	}
	if (hard.term < boot.snapshot.term)
		hard.term = boot.snapshot.term;
	hard.commit = boot.snapshot.index;
	hard.repairing = true;
	boot.hard = (struct raft_hard_state){hard.term, hard.vote, hard.commit};
	rv = wal_append_retry(s, id, NULL, boot.snapshot.index, boot.snapshot.term);
	if (rv == 0)
		rv = wal_append_retry(s, id, &hard, 0, 0);
	if (rv == 0 && snapshot_bad) {
		rv = wal_sync(&s->wal);
		if (rv == 0)
			snapshot_remove_group(s->snap_dir, id);
	}
	if (rv == 0)
		rv = group_open(s, id, &boot, &g);
	if (rv != 0)
		return rv;
	g->repairing = true;
	node_log(s->config.node_id,
		 "group %llu: %s%s; starting it from %s%llu as a non-voting, non-acknowledging "
		 "member and repairing it from the leader",
		 (unsigned long long)id, what,
		 snapshot_bad && strstr(what, "snapshot") == NULL
		     ? " (its snapshot fails verification too)"
		     : "",
		 boot.snapshot.index ? "its snapshot at index " : "nothing: index ",
		 (unsigned long long)boot.snapshot.index);
	return 0;
}

static int group_damaged_push(uint64_t id, uint64_t **damaged, uint32_t *count, uint32_t *cap)
{
	*damaged = grow_array(*damaged, cap, *count + 1, sizeof(**damaged));
	(*damaged)[(*count)++] = id;
	return 0;
}

/* Start one group from the WAL's state of it, or put it on the damaged list. */
static int group_recover_one(struct shard *s, const struct wal_group *wg, uint64_t **damaged,
			     uint32_t *damaged_count, uint32_t *damaged_cap)
{
	struct raft_boot boot = {0};
	struct wal_read rd = {0};
	struct raft_entry *entries = NULL;
	struct group *g;
	uint64_t next = wg->first_index;
	uint32_t count = 0, cap = 0;
	int rv = 0;

	if (wg->removed)
		return 0;
	if (wg->damaged)
		rv = WAL_ERR_CORRUPT;
	boot.hard = (struct raft_hard_state){wg->hard.term, wg->hard.vote, wg->hard.commit};
	boot.repair = wg->hard.repairing; /* A repair a restart interrupted goes on. */
	boot.repair_id = boot.repair ? repair_id_new(wg->group) : 0;
	boot.snapshot.index = wg->mark_index;
	boot.snapshot.term = wg->mark_term;
	if (rv == 0)
		rv = group_recover_snapshot(s, wg, &boot, &next);
	/* A snapshot that fails verification, or is gone, is damage too. */
	if (rv == -EBADMSG || rv == -ENOENT || rv == WAL_ERR_GAP || rv == WAL_ERR_CORRUPT)
		return group_damaged_push(wg->group, damaged, damaged_count, damaged_cap);
	while (next <= wg->last_index && rv == 0) {
		/* 64 KiB at a time keeps one read's records (one I/O each) within the
		 * loop's queue. */
		rv = wal_read_sync(&s->wal, &rd, wg->group, next, wg->last_index, 64u << 10);
		if (rv == 0) {
			entries =
			    grow_array(entries, &cap, count + rd.entries_count, sizeof(*entries));
			for (uint32_t i = 0; i < rd.entries_count; i++) {
				const struct wal_entry *we = &rd.entries[i];
				void *copy = we->size ? malloc(we->size) : NULL;

				ASSERT(we->size == 0 || copy != NULL);
				if (we->size)
					memcpy(copy, we->data, we->size);
				entries[count++] = (struct raft_entry){.term = we->term,
								       .index = next + i,
								       .type = we->type,
								       .size = we->size,
								       .data = copy};
			}
			next += rd.entries_count;
		}
		wal_read_release(&rd);
	}
	boot.entries = entries;
	boot.entries_count = count;
	if (rv == 0)
		rv = group_open(s, wg->group, &boot, &g);
	if (rv == 0 && boot.repair) {
		g->repairing = true;
		node_log(s->config.node_id,
			 "group %llu: its repair from peers was interrupted; resuming it (no vote, "
			 "no acknowledgement that counts, until it holds the leader's log)",
			 (unsigned long long)wg->group);
	}
	for (uint32_t i = 0; i < count; i++)
		free((void *)entries[i].data);
	free(entries);
	if (rv == WAL_ERR_CORRUPT)
		return group_damaged_push(wg->group, damaged, damaged_count, damaged_cap);
	return rv;
}

/* Rebuild every group the WAL knows, from its records. */
static int groups_recover(struct shard *s, char *why, size_t why_size)
{
	const struct wal_group *wg = NULL;
	uint64_t *damaged = NULL;
	uint32_t damaged_count = 0, damaged_cap = 0;
	int rv = 0;

	while (rv == 0 && (wg = wal_group_next(&s->wal, wg)) != NULL) {
		rv = group_recover_one(s, wg, &damaged, &damaged_count, &damaged_cap);
		if (rv != 0)
			snprintf(why, why_size, "group %llu could not be recovered: %s",
				 (unsigned long long)wg->group, err_str(rv));
	}
	/* Damaged groups start last: their WAL records move the table. */
	for (uint32_t i = 0; i < damaged_count && rv == 0; i++) {
		const struct wal_group *d = wal_group_find(&s->wal, damaged[i]);
		char what[96];

		if (d->damaged)
			snprintf(what, sizeof(what),
				 "WAL records damaged from index %llu (first at segment %llu "
				 "offset %llu)",
				 (unsigned long long)d->damaged_index,
				 (unsigned long long)d->damaged_seq,
				 (unsigned long long)d->damaged_offset);
		else
			snprintf(what, sizeof(what), "its snapshot fails verification");
		rv = group_recover_damaged(s, damaged[i], what);
		if (rv != 0)
			snprintf(why, why_size, "group %llu could not start its repair: %s",
				 (unsigned long long)damaged[i], err_str(rv));
	}
	free(damaged);
	return rv;
}

/* ---------------------------------------------------------------- inbox */

static void req_free(struct shard_req *req)
{
	free(req);
}

/* Whether a write (proposal, membership change) of g must be refused now:
 * 0, WAL_ERR_FAILED, or, on a leader whose WAL is low on space, ERR_NO_SPACE
 * (RAFT_ERR_TRANSFER while it hands its leadership over: the client retries
 * and finds the next leader). A follower answers as always: not the leader. */
static int group_write_refused(struct shard *s, const struct group *g)
{
	if (s->wal_failed)
		return WAL_ERR_FAILED;
	if (!s->space_low || !raft_is_leader(&g->raft))
		return 0;
	if (g->raft.transfer_target != RAFT_NONE)
		return RAFT_ERR_TRANSFER;
	return ERR_NO_SPACE;
}

static void req_change(struct shard *s, struct group *g, struct shard_req *req)
{
	struct raft_conf target = *raft_conf(&g->raft);
	int rv = 0;

	/* The target is the current final configuration with one member changed. */
	for (uint32_t i = 0; i < target.members_count; i++)
		target.members[i].role_old = RAFT_MEMBER_NONE;
	switch (req->change) {
	case SHARD_CHANGE_PROMOTE: /* A learner only: a voter joins as a learner first. */
		if (raft_conf_role(&target, req->member) != RAFT_MEMBER_LEARNER) {
			rv = RAFT_ERR_CONF_INVALID;
			break;
		}
		/* Fall through. */
	case SHARD_CHANGE_ADD_VOTER:
		rv = raft_conf_add(&target, req->member, RAFT_MEMBER_VOTER);
		break;
	case SHARD_CHANGE_ADD_LEARNER:
		rv = raft_conf_add(&target, req->member, RAFT_MEMBER_LEARNER);
		break;
	case SHARD_CHANGE_REMOVE: {
		uint32_t k = 0;

		for (uint32_t i = 0; i < target.members_count; i++)
			if (target.members[i].id != req->member)
				target.members[k++] = target.members[i];
		rv = k == target.members_count ? RAFT_ERR_CONF_INVALID : 0;
		target.members_count = k;
		break;
	}
	default:
		rv = -EINVAL;
	}
	/* Drop members that only the old half of a joint configuration had. */
	{
		uint32_t k = 0;

		for (uint32_t i = 0; i < target.members_count; i++)
			if (target.members[i].role != RAFT_MEMBER_NONE)
				target.members[k++] = target.members[i];
		target.members_count = k;
		target.joint = false;
	}
	if (rv == 0)
		rv = group_write_refused(s, g);
	if (rv == 0)
		rv = raft_change(&g->raft, &target);
	if (rv == ERR_NO_SPACE)
		stat_add(&s->stats.writes_refused_no_space, 1);
	done(req->cb, req->arg, rv == -ENOSPC ? RAFT_ERR_CONF_INVALID : rv, 0,
	     raft_leader(&g->raft));
}

/* fl_group_info(): the membership as this node sees it. */
static void req_info(struct group *g, struct shard_req *req)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	struct fl_group_info *info;

	memcpy(&info, req->data, sizeof(info));
	*info = (struct fl_group_info){.leader = raft_leader(&g->raft),
				       .term = raft_term(&g->raft),
				       .commit_index = raft_commit_index(&g->raft),
				       .last_index = raft_last_index(&g->raft),
				       .conf_index = raft_conf_index(&g->raft),
				       .is_leader = raft_is_leader(&g->raft),
				       .joint = conf->joint,
				       .repairing = raft_is_repairing(&g->raft) ||
						    raft_is_blocked_by_repair(&g->raft),
				       .members_count = conf->members_count};
	for (uint32_t i = 0; i < conf->members_count && i < FL_MEMBERS_MAX; i++) {
		const struct raft_progress *pr = raft_progress_of(&g->raft, conf->members[i].id);

		info->members[i] = (struct fl_member_info){.id = conf->members[i].id,
							   .match = pr != NULL ? pr->match : 0,
							   .role = conf->members[i].role,
							   .role_old = conf->members[i].role_old};
	}
	done(req->cb, req->arg, 0, 0, raft_leader(&g->raft));
}

/* Proposals of one drain are gathered per group and appended with one call. */
static void batch_add(struct shard *s, struct group *g, struct shard_req *req)
{
	req->next = NULL;
	if (g->batch_tail)
		g->batch_tail->next = req;
	else
		g->batch_head = req;
	g->batch_tail = req;
	g->batch_count += req->type == SHARD_REQ_PROPOSE ? 1 : req->size;
	if (!g->batched) {
		g->batched = true;
		g->batch_next = s->batched_head;
		s->batched_head = g;
	}
}

static void batch_flush(struct shard *s, struct group *g)
{
	struct shard_req *req;
	uint64_t first = 0, term = raft_term(&g->raft);
	uint32_t n = 0;
	int rv;

	/* batch_count counts entries: a batch request brings several. */
	s->prop_bufs =
	    grow_array(s->prop_bufs, &s->prop_bufs_cap, g->batch_count, sizeof(*s->prop_bufs));
	for (req = g->batch_head; req; req = req->next) {
		if (req->type == SHARD_REQ_PROPOSE) {
			s->prop_bufs[n++] = (struct raft_buf){.data = req->data, .size = req->size};
			continue;
		}
		for (uint32_t k = 0; k < req->size; k++) {
			const struct shard_prop_item *it =
			    (const struct shard_prop_item *)req->data + k;

			s->prop_bufs[n++] =
			    (struct raft_buf){.data = req->data + it->offset, .size = it->size};
		}
	}
	rv = group_write_refused(s, g);
	if (rv == 0)
		rv = group_error(g, raft_propose(&g->raft, s->prop_bufs, n, &first));
	if (rv == 0)
		stat_add(&s->stats.proposals, n);
	if (rv == ERR_NO_SPACE)
		stat_add(&s->stats.writes_refused_no_space, n);
	for (uint64_t index = first; (req = g->batch_head) != NULL;) {
		uint32_t k = 0, entries = req->type == SHARD_REQ_PROPOSE ? 1 : req->size;

		g->batch_head = req->next;
		for (; k < entries; k++) {
			void *arg = req->type == SHARD_REQ_PROPOSE
					? req->arg
					: ((const struct shard_prop_item *)req->data)[k].arg;

			if (rv == 0)
				props_push(g, (struct pending_prop){index++, term, req->cb, arg});
			else
				done(req->cb, arg, rv, 0, raft_leader(&g->raft));
		}
		req_free(req);
	}
	g->batch_tail = NULL;
	g->batch_count = 0;
	g->batched = false;
	group_dirty(s, g);
}

static void req_handle(struct shard *s, struct shard_req *req)
{
	struct group *g = NULL;
	int rv = 0;

	switch (req->type) {
	case SHARD_REQ_CONN:
		if (req->outgoing) {
			struct peer *p = peer_find(s, req->member);

			if (p)
				peer_connected(s, p, req->fd);
			else
				close(req->fd);
		} else {
			conn_adopt(s, req->fd, req->member);
		}
		req_free(req);
		return;
	case SHARD_REQ_DIAL_FAILED: {
		struct peer *p = peer_find(s, req->member);

		if (p)
			peer_dial_failed(s, p, req->fd);
		req_free(req);
		return;
	}
	case SHARD_REQ_GROUP_CREATE:
		rv = s->wal_failed ? WAL_ERR_FAILED
		     : s->space_low
			 ? ERR_NO_SPACE
			 : group_create(s, req->group, (const uint64_t *)req->data, req->size);
		done(req->cb, req->arg, rv, 0, 0);
		req_free(req);
		return;
	case SHARD_REQ_GROUP_JOIN:
		rv = s->wal_failed  ? WAL_ERR_FAILED
		     : s->space_low ? ERR_NO_SPACE
				    : group_join(s, req->group);
		done(req->cb, req->arg, rv, 0, 0);
		req_free(req);
		return;
	case SHARD_REQ_LIST: {
		struct shard_list *list = (struct shard_list *)req->data;

		for (uint64_t i = 0; i < s->table_cap; i++) {
			if (s->table[i] == NULL)
				continue;
			if (list->count < list->max)
				list->groups[list->count] = s->table[i]->id;
			list->count++;
		}
		done(req->cb, req->arg, 0, list->count, 0); /* The count travels as result. */
		req_free(req);
		return;
	}
	default:
		break;
	}
	g = group_find(s, req->group);
	if (g == NULL || s->wal_failed) {
		/* A failed WAL stops every group: nothing it would do is durable. */
		done(req->cb, req->arg, g == NULL ? ERR_NO_GROUP : WAL_ERR_FAILED, 0, 0);
		req_free(req);
		return;
	}
	switch (req->type) {
	case SHARD_REQ_PROPOSE:
	case SHARD_REQ_PROPOSE_BATCH:
		batch_add(s, g, req);
		return; /* Freed by batch_flush(). */
	case SHARD_REQ_READ: {
		uint64_t ctx = ++s->read_ctx;

		rv = g->diverged ? ERR_DIVERGED
				 : group_error(g, raft_read_index(&g->raft, ctx, s->now_ms));
		if (rv == 0) {
			g->reads = grow_array(g->reads, &g->reads_cap, g->reads_count + 1,
					      sizeof(*g->reads));
			g->reads[g->reads_count++] =
			    (struct pending_read){ctx, req->cb, req->arg, s->now_ms};
		} else {
			done(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		}
		break;
	}
	case SHARD_REQ_TRANSFER:
		rv = raft_transfer(&g->raft, req->member, s->now_ms);
		done(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_CHANGE:
		req_change(s, g, req);
		break;
	case SHARD_REQ_SNAPSHOT:
		req->next = g->snap_asked;
		g->snap_asked = req;
		group_dirty(s, g);
		return; /* Answered by snapshot_answer(). */
	case SHARD_REQ_LEADER:
		done(req->cb, req->arg, 0, raft_is_leader(&g->raft), raft_leader(&g->raft));
		break;
	case SHARD_REQ_CHECK:
		rv = group_check_start(s, g, req->cb, req->arg);
		if (rv != 0)
			done(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_REBUILD:
		rv = group_rebuild_start(s, g, req->cb, req->arg);
		if (rv != 0)
			done(req->cb, req->arg, rv, 0, raft_leader(&g->raft));
		break;
	case SHARD_REQ_INFO:
		req_info(g, req);
		break;
	case SHARD_REQ_GROUP_REMOVE:
		if (s->wal_failed || (rv = wal_append_removed(&s->wal, g->id)) != 0) {
			done(req->cb, req->arg, s->wal_failed ? WAL_ERR_FAILED : rv, 0, 0);
			break;
		}
		snapshot_remove_group(s->snap_dir, g->id);
		group_close(s, g, ERR_STOPPING);
		done(req->cb, req->arg, 0, 0, 0);
		req_free(req);
		return;
	default:
		done(req->cb, req->arg, -EINVAL, 0, 0);
		break;
	}
	group_dirty(s, g);
	req_free(req);
}

static void inbox_drain(struct shard *s)
{
	struct shard_req *req;

	for (int i = 0; i < 65536 && (req = inbox_pop(&s->inbox)) != NULL; i++)
		req_handle(s, req);
	while (s->batched_head) {
		struct group *g = s->batched_head;

		s->batched_head = g->batch_next;
		batch_flush(s, g);
	}
}

/* ------------------------------------------------------------------ loop */

static void tick_done(struct loop_op *op, int res)
{
	struct loop_timer *t = container_of(op, struct loop_timer, op);
	struct shard *s = container_of(t, struct shard, tick);

	(void)res;
	s->tick_armed = false;
}

static void groups_tick(struct shard *s)
{
	while (s->heap_count > 0 && s->heap[0].deadline_ms <= s->now_ms) {
		struct heap_item it = heap_pop(s);
		struct group *g = group_find(s, it.group);

		if (g == NULL || g->scheduled_ms != it.deadline_ms)
			continue; /* Removed, or rescheduled since. */
		g->scheduled_ms = 0;
		raft_tick(&g->raft, s->now_ms);
		group_dirty(s, g);
	}
}

/* Free WAL segments that every group has compacted past; groups that pin
 * old segments with too much to rewrite are snapshotted at their next turn. */
static void shard_reclaim(struct shard *s)
{
	struct wal_pin pins[16];
	uint32_t count = 0;
	/* A read unanswered for this long lost its message on the way. */
	uint64_t read_wait_ms = 4 * (uint64_t)s->config.election_timeout_ms > SHARD_RECLAIM_MS
				    ? 4 * (uint64_t)s->config.election_timeout_ms
				    : SHARD_RECLAIM_MS;

	s->reclaim_ms = s->now_ms + SHARD_RECLAIM_MS;
	for (uint64_t i = 0; i < s->table_cap; i++)
		if (s->table[i] && s->table[i]->reads_count > 0)
			reads_abandon(s->table[i],
				      s->now_ms > read_wait_ms ? s->now_ms - read_wait_ms : 0);
	if (s->wal_failed || wal_reclaim(&s->wal, pins, 16, &count) != 0)
		return;
	for (uint32_t i = 0; i < count; i++) {
		struct group *g = group_find(s, pins[i].group);

		if (g && pins[i].action == WAL_PIN_SNAPSHOT) {
			g->snapshot_wanted = true;
			group_dirty(s, g);
		}
	}
}

/* The voter other than this node to hand g's leadership to: a recently
 * active one with the longest log, or RAFT_NONE. */
static uint64_t group_handoff_target(struct shard *s, struct group *g)
{
	const struct raft_conf *conf = raft_conf(&g->raft);
	uint64_t target = RAFT_NONE, best = 0;

	for (uint32_t i = 0; i < conf->members_count; i++) {
		const struct raft_member *m = &conf->members[i];
		const struct raft_progress *pr = raft_progress_of(&g->raft, m->id);
		uint64_t score;

		if (m->id == s->config.node_id || m->role != RAFT_MEMBER_VOTER || pr == NULL)
			continue;
		score = pr->match + 1 + (pr->recent_active ? UINT64_MAX / 2 : 0);
		if (score > best) {
			best = score;
			target = m->id;
		}
	}
	return target;
}

/* Leaders of a shard low on space hand their groups to peers (thesis §3.10),
 * so that clients keep writing through a node that has room. Returns how
 * many transfers started. */
static uint32_t shard_space_handoff(struct shard *s)
{
	uint32_t started = 0;

	for (uint64_t i = 0; i < s->table_cap; i++) {
		struct group *g = s->table[i];
		uint64_t target;

		if (g == NULL || !raft_is_leader(&g->raft) || g->raft.transfer_target != RAFT_NONE)
			continue;
		target = group_handoff_target(s, g);
		if (target != RAFT_NONE && raft_transfer(&g->raft, target, s->now_ms) == 0) {
			started++;
			group_dirty(s, g);
		}
	}
	return started;
}

/* Enter or leave the low-space mode. The WAL turns low when it cannot make
 * the spare it keeps beyond its tail: the tail and what spare is left still
 * take every record already handed out (entries proposed or received
 * before, hard states of votes, a new leader's first entry), but nothing
 * new may come in. Safety does not depend on this: an append that finds no
 * room fails before writing, and group_ready() then stops the shard rather
 * than let a message leave ahead of what it depends on. */
static void shard_space_check(struct shard *s)
{
	uint32_t started;
	int rv;

	if (s->wal_failed)
		return;
	if (!s->space_low && wal_space_low(&s->wal)) {
		s->space_low = true;
		s->space_retry_ms = s->now_ms + SHARD_SPACE_RETRY_MS;
		atomic_store_explicit(&s->stats.space_low, 1, memory_order_relaxed);
		node_log(s->config.node_id,
			 "shard %u: WAL directory %s is out of space (ENOSPC): refusing writes "
			 "until space returns (%s)",
			 s->config.shard_index, s->config.wal_dir, wal_why(&s->wal));
		started = shard_space_handoff(s);
		if (started > 0)
			node_log(s->config.node_id,
				 "shard %u: handing leadership of %u groups to peers with room",
				 s->config.shard_index, started);
		return;
	}
	if (!s->space_low || s->now_ms < s->space_retry_ms)
		return;
	s->space_retry_ms = s->now_ms + SHARD_SPACE_RETRY_MS;
	rv = wal_space_retry(&s->wal);
	if (rv != 0) {
		shard_space_handoff(s); /* Leaders elected meanwhile. */
		return;
	}
	s->space_low = false;
	atomic_store_explicit(&s->stats.space_low, 0, memory_order_relaxed);
	node_log(s->config.node_id, "shard %u: WAL directory %s has space again: accepting writes",
		 s->config.shard_index, s->config.wal_dir);
}

/* One timer per shard, due at the earliest group deadline (or a redial): a
 * shard whose groups are all quiesced sleeps until a message comes. */
static void shard_arm_timer(struct shard *s)
{
	uint64_t due = s->now_ms + SHARD_IDLE_WAKE_MS;

	if (s->heap_count > 0 && s->heap[0].deadline_ms < due)
		due = s->heap[0].deadline_ms;
	if (s->space_low && s->space_retry_ms < due)
		due = s->space_retry_ms;
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].state == PEER_DOWN && s->peers[i].redial_ms < due)
			due = s->peers[i].redial_ms;
	if (due < s->now_ms + s->config.tick_ms)
		due = s->now_ms + s->config.tick_ms; /* The tick is the finest grain. */
	if (s->tick_armed) {
		if (due + s->config.tick_ms < s->tick_due_ms && !s->tick_cancelled) {
			loop_timeout_cancel(&s->loop, &s->tick); /* Re-armed next turn. */
			s->tick_cancelled = true;
		}
		return;
	}
	s->tick_armed = true;
	s->tick_cancelled = false;
	s->tick_due_ms = due;
	loop_timeout(&s->loop, &s->tick, due - s->now_ms, tick_done);
}

static void shard_turn(struct shard *s)
{
	s->now_ms = loop_now_ns(&s->loop) / 1000000;
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i] && s->conns[i]->received)
			conn_parse(s, s->conns[i]);
	durable_process(s);
	snapshots_saved(s);
	inbox_drain(s);
	groups_tick(s);
	if (!atomic_load(&s->stopping))
		peers_dial(s);
	for (int rounds = 0; rounds < 4 && s->dirty_head; rounds++) {
		struct group *list = s->dirty_head;

		s->dirty_head = NULL;
		while (list) {
			struct group *g = list;

			list = g->dirty_next;
			g->dirty = false;
			group_process(s, g);
		}
	}
	shard_space_check(s);
	if (!s->wal_failed && wal_flush(&s->wal) != 0 && !s->wal_failed) {
		s->wal_failed = true;
		groups_fail_all(s, WAL_ERR_FAILED);
	}
	transfers_pump(s);
	for (uint32_t i = 0; i < s->peers_count; i++)
		peer_send(s, &s->peers[i]);
	if (s->now_ms >= s->reclaim_ms)
		shard_reclaim(s);
	shard_arm_timer(s);
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;

	/* This thread's allocations (the engines' logs, buffers, messages) come
	 * from an arena of the shard's own. */
	if (mem_thread_arena(&s->arena) == 0)
		atomic_store(&s->arena_ready, true);

	while (!atomic_load(&s->stopping)) {
		bool idle;

		shard_turn(s);
		/* Sleep only if nothing is queued: producers wake us when they see
		 * sleeping set, and we look at the inbox after setting it. */
		atomic_store(&s->sleeping, true);
		idle = s->dirty_head == NULL && inbox_depth(&s->inbox) == 0 &&
		       !atomic_load(&s->stopping);
		loop_run(&s->loop, idle ? 1 : 0);
		atomic_store(&s->sleeping, false);
	}
	return NULL;
}

int shard_submit(struct shard *s, struct shard_req *req)
{
	int rv;

	if (atomic_load(&s->stopping))
		return ERR_STOPPING;
	rv = inbox_push(&s->inbox, req);
	if (rv != 0)
		return rv;
	if (atomic_load(&s->sleeping))
		loop_wake(&s->loop);
	return 0;
}

static void shard_free(struct shard *s)
{
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i]) {
			close(s->conns[i]->fd);
			buf_free(&s->conns[i]->in);
			free(s->conns[i]);
		}
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++)
		if (s->transfers[i].used)
			close(s->transfers[i].fd);
	for (int i = 0; i < SHARD_RECVS_MAX; i++)
		if (s->recvs_used[i])
			snapshot_recv_abort(s->snap_dir, &s->recvs[i]);
	/* The snapshot thread has stopped, and shard_close() committed what it
	 * wrote; anything left is from a failed start. */
	while (s->saved) {
		struct snapshot_job *job = s->saved;

		s->saved = job->next;
		free(job);
	}
	if (s->snap_dir >= 0)
		close(s->snap_dir);
	for (uint32_t i = 0; i < s->peers_count; i++) {
		if (s->peers[i].fd >= 0)
			close(s->peers[i].fd);
		buf_free(&s->peers[i].out);
		buf_free(&s->peers[i].flight);
		buf_free(&s->peers[i].beats);
	}
	/* group_close() shifts the table under a forward scan: restart it. */
	for (uint64_t i = 0; i < s->table_cap;) {
		if (s->table[i])
			group_close(s, s->table[i], ERR_STOPPING);
		else
			i++;
	}
	free(s->table);
	free(s->table_ids);
	free(s->heap);
	free(s->persist);
	buf_free(&s->held);
	free(s->peers);
	free(s->wal_entries);
	free(s->dec_entries);
	free(s->apply_entries);
	free(s->apply_results);
	free(s->prop_bufs);
	free(s->chunk_buf);
	inbox_deinit(&s->inbox);
	pthread_mutex_destroy(&s->saved_lock);
	pthread_mutex_destroy(&s->manifest_lock);
	free(s);
}

/* Test-only faults for the snapshot transfer tests, off unless set:
 * FLOTILLA_TEST_SNAPSHOT_CORRUPT=1 flips a byte of the first snapshot chunk
 * each shard sends; FLOTILLA_TEST_SNAPSHOT_PACE_MS=N sends at most one chunk
 * per transfer every N ms, so that a test can stop a process mid-stream;
 * FLOTILLA_TEST_NO_SPACE=1 makes every WAL segment preallocation fail with
 * ENOSPC while a file named after the WAL directory plus ".no-space" exists
 * (a full disk that a test can fill and free at will). */
static int shard_fault(void *arg, const struct loop_fault_site *site)
{
	struct shard *s = arg;

	if (site->kind == LOOP_OP_ALLOCATE && access(s->fault_no_space, F_OK) == 0)
		return -ENOSPC;
	return 0;
}

static void shard_faults_read(struct shard *s)
{
	const char *corrupt = getenv("FLOTILLA_TEST_SNAPSHOT_CORRUPT");
	const char *pace = getenv("FLOTILLA_TEST_SNAPSHOT_PACE_MS");
	const char *no_space = getenv("FLOTILLA_TEST_NO_SPACE");

	if (no_space != NULL && strcmp(no_space, "1") == 0) {
		snprintf(s->fault_no_space, sizeof(s->fault_no_space), "%s.no-space",
			 s->config.wal_dir);
		node_log(s->config.node_id,
			 "shard %u: test fault on: no space for WAL segments while %s exists",
			 s->config.shard_index, s->fault_no_space);
	}

	s->fault_corrupt = corrupt != NULL && strcmp(corrupt, "1") == 0;
	if (pace != NULL)
		s->fault_pace_ms = (uint32_t)strtoul(pace, NULL, 10);
	if (s->fault_corrupt || s->fault_pace_ms > 0)
		node_log(s->config.node_id, "shard %u: test faults on (corrupt %d, pace %u ms)",
			 s->config.shard_index, s->fault_corrupt, s->fault_pace_ms);
}

int shard_start(struct shard **out, const struct shard_config *config, char *why, size_t why_size)
{
	struct shard *s = calloc(1, sizeof(*s));
	struct loop_config lc = {.sq_entries = 1024};
	struct wal_config wc;
	char snap_dir[sizeof(config->wal_dir) + 16];
	int rv;

	if (s == NULL)
		return -ENOMEM;
	s->snap_dir = -1;
	s->config = *config;
	pthread_mutex_init(&s->saved_lock, NULL);
	pthread_mutex_init(&s->manifest_lock, NULL);
	shard_faults_read(s);
	s->table_cap = 64;
	s->table = calloc(s->table_cap, sizeof(*s->table));
	s->table_ids = malloc(s->table_cap * sizeof(*s->table_ids));
	s->peers = calloc(config->peers_count ? config->peers_count : 1, sizeof(*s->peers));
	rv = s->table && s->table_ids && s->peers ? inbox_init(&s->inbox, config->inbox_max)
						  : -ENOMEM;
	if (rv != 0)
		goto err;
	for (uint32_t i = 0; i < config->peers_count; i++)
		s->peers[i] = (struct peer){.shard = s,
					    .id = config->peers[i],
					    .fd = -1,
					    .frame_start = SIZE_MAX,
					    .backoff_ms = SHARD_REDIAL_MIN_MS};
	s->peers_count = config->peers_count;
	rv = config->sim ? loop_init_sim(&s->loop, &lc, config->sim, config->node_id)
			 : loop_init(&s->loop, &lc);
	if (rv != 0) {
		snprintf(why, why_size, "%s", loop_why(&s->loop));
		goto err;
	}
	if (s->fault_no_space[0] != '\0')
		loop_set_fault(&s->loop, shard_fault, s);
	wal_config_default(&wc);
	/* The WAL takes entries of up to a quarter of a batch: size batches so
	 * that every entry the engine accepts fits (and segments to hold four). */
	{
		uint64_t batch = ((uint64_t)config->entry_size_max + 4096) * 4;

		if (config->wal_batch_size >= WAL_BATCH_SIZE_MIN)
			wc.batch_size_max = (config->wal_batch_size + WAL_BLOCK_SIZE - 1) /
					    WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;

		batch = (batch + WAL_BLOCK_SIZE - 1) / WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;
		if (batch > wc.batch_size_max)
			wc.batch_size_max = (uint32_t)batch;
		if (config->wal_segment_size > 0 &&
		    config->wal_segment_size <= WAL_SEGMENT_SIZE_MAX)
			wc.segment_size = (config->wal_segment_size + WAL_BLOCK_SIZE - 1) /
					  WAL_BLOCK_SIZE * WAL_BLOCK_SIZE;
		if ((uint64_t)wc.batch_size_max * 4 > wc.segment_size)
			wc.segment_size = wc.batch_size_max * 4;
	}
	/* O_DIRECT batches measured faster here (buffered writes go through
	 * io_uring's worker threads); a file system without it gets buffered. */
	snprintf(snap_dir, sizeof(snap_dir), "%s.snapshots", config->wal_dir);
	s->snap_dir = snapshot_dir_open(snap_dir);
	if (s->snap_dir < 0) {
		rv = s->snap_dir;
		snprintf(why, why_size, "snapshot directory %s: %s", snap_dir, strerror(-rv));
		goto err_after_loop;
	}
	wc.direct_io = true;
	wc.durable_cb = wal_durable_done;
	wc.salvage = true; /* Damaged groups repair from peers: groups_recover(). */
	rv = wal_init(&s->wal, &s->loop, config->wal_dir, &wc);
	if (rv == -EINVAL) {
		node_log(config->node_id, "shard %u: %s; writing the WAL buffered",
			 config->shard_index, wal_why(&s->wal));
		wc.direct_io = false;
		rv = wal_init(&s->wal, &s->loop, config->wal_dir, &wc);
	}
	if (rv != 0) {
		snprintf(why, why_size, "WAL %s: %s", config->wal_dir, wal_why(&s->wal));
		goto err_after_loop;
	}
	s->now_ms = loop_now_ns(&s->loop) / 1000000;
	if (s->wal.stats.damaged_records > 0)
		node_log(config->node_id, "shard %u: WAL %s: %s", config->shard_index,
			 config->wal_dir, wal_why(&s->wal));
	rv = groups_recover(s, why, why_size);
	if (rv != 0)
		goto err_after_wal;
	shard_space_check(s); /* A WAL that was full when the node stopped may still be. */
	if (config->sim) {
		*out = s; /* Driven by shard_sim_turn(): no thread. */
		return 0;
	}
	rv = -pthread_create(&s->thread, NULL, shard_main, s);
	if (rv != 0) {
		snprintf(why, why_size, "cannot start shard thread: %s", strerror(-rv));
		goto err_after_wal;
	}
	*out = s;
	return 0;
err_after_wal:
	wal_deinit(&s->wal);
err_after_loop:
	loop_deinit(&s->loop);
err:
	shard_free(s);
	return rv;
}

void shard_stop(struct shard *s)
{
	atomic_store(&s->stopping, true);
	loop_wake(&s->loop);
	if (s->config.sim == NULL)
		pthread_join(s->thread, NULL);
}

bool shard_sim_turn(struct shard *s)
{
	loop_run(&s->loop, 0);
	shard_turn(s);
	loop_sim_poll(&s->loop);
	return s->dirty_head != NULL || inbox_depth(&s->inbox) > 0 || loop_sim_is_ready(&s->loop);
}

struct loop *shard_sim_loop(struct shard *s)
{
	return &s->loop;
}

void shard_crash(struct shard *s)
{
	struct shard_req *req;

	atomic_store(&s->stopping, true);
	/* The callers' requests end as a dead process ends them for its
	 * clients: unanswered, which a test's clients see as a stop. */
	while ((req = inbox_pop(&s->inbox)) != NULL) {
		done(req->cb, req->arg, ERR_STOPPING, 0, 0);
		req_free(req);
	}
	wal_deinit(&s->wal);
	loop_deinit(&s->loop);
	shard_free(s);
}

bool shard_group_state(struct shard *s, uint64_t group, struct shard_group_state *state)
{
	struct group *g = group_find(s, group);

	if (g == NULL)
		return false;
	*state = (struct shard_group_state){.term = raft_term(&g->raft),
					    .commit_index = raft_commit_index(&g->raft),
					    .applied_index = raft_applied_index(&g->raft),
					    .leader = raft_is_leader(&g->raft)};
	return true;
}

bool shard_is_failed(struct shard *s)
{
	return s->wal_failed;
}

void shard_close(struct shard *s)
{
	struct shard_req *req;

	/* Finish what was asked before the stop (no new dials: the net thread
	 * is gone), then fail the rest. */
	shard_turn(s);
	while ((req = inbox_pop(&s->inbox)) != NULL) {
		done(req->cb, req->arg, ERR_STOPPING, 0, 0);
		req_free(req);
	}
	if (!s->wal_failed)
		wal_sync(&s->wal);
	for (uint32_t i = 0; i < s->peers_count; i++)
		if (s->peers[i].state == PEER_UP)
			shutdown(s->peers[i].fd, SHUT_RDWR);
	for (int i = 0; i < SHARD_CONNS_MAX; i++)
		if (s->conns[i])
			shutdown(s->conns[i]->fd, SHUT_RDWR);
	for (int i = 0; i < 100 && loop_inflight(&s->loop) > 1; i++)
		loop_run(&s->loop, 1); /* Let the closed sockets' operations finish. */
	wal_deinit(&s->wal);
	loop_deinit(&s->loop);
	shard_free(s);
}

struct shard_stats *shard_stats(struct shard *s)
{
	return &s->stats;
}

uint64_t shard_inbox_depth(struct shard *s)
{
	return inbox_depth(&s->inbox);
}

uint64_t shard_memory(struct shard *s)
{
	return atomic_load(&s->arena_ready) ? mem_arena_allocated(s->arena) : 0;
}

uint64_t shard_wal_fsyncs(struct shard *s)
{
	return __atomic_load_n(&s->wal.stats.fsyncs, __ATOMIC_RELAXED);
}

uint64_t shard_wal_bytes(struct shard *s)
{
	return __atomic_load_n(&s->wal.stats.bytes_written, __ATOMIC_RELAXED);
}

static _Atomic bool node_log_muted;

void node_log_mute(bool mute)
{
	atomic_store(&node_log_muted, mute);
}

void node_log(uint64_t node_id, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char line[1024];
	int n;
	va_list ap;

	if (atomic_load(&node_log_muted))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ node %llu: ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, (unsigned long long)node_id);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
