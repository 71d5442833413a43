/* A shard: one thread, one io_uring loop, one WAL, a table of Raft groups and
 * the connections to the same shard of every peer node.
 *
 * Application threads reach a shard only through shard_submit() (a bounded
 * queue plus a wake-up). Everything else happens on the shard thread, without
 * locks: see shard.c for the turn of the loop. */
#ifndef SHARD_SHARD_H
#define SHARD_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/hist.h"
#include "base/log.h"
#include "flotilla.h"

struct shard;
struct snapshot_worker;
struct loop;
struct loop_sim;

enum shard_req_type {
	SHARD_REQ_GROUP_CREATE = 1,
	SHARD_REQ_GROUP_JOIN,
	SHARD_REQ_GROUP_REMOVE,
	SHARD_REQ_PROPOSE,
	SHARD_REQ_PROPOSE_BATCH, /* data: size items, then the payloads. */
	SHARD_REQ_LIST,          /* Fill the shard_list at arg; cb signals. */
	SHARD_REQ_READ,
	SHARD_REQ_TRANSFER,
	SHARD_REQ_CHANGE, /* member + change below */
	SHARD_REQ_LEADER, /* Report the leader through the callback's leader. */
	SHARD_REQ_CONN,   /* The net thread hands over a connected socket. */
	SHARD_REQ_DIAL_FAILED,
	SHARD_REQ_CHECK,       /* fl_group_check(). */
	SHARD_REQ_REBUILD,     /* fl_group_rebuild(). */
	SHARD_REQ_INFO,        /* Fill the struct fl_group_info whose address is in data. */
	SHARD_REQ_SNAPSHOT,    /* fl_group_snapshot(): cb gets the index once current. */
	SHARD_REQ_READ_STALE,  /* fl_read_stale(): data holds the struct fl_stale_read's address. */
	SHARD_REQ_RECOVER,     /* fl_group_recover(): data holds the report's address; change
				* the flags. */
	SHARD_REQ_PEERS,       /* The address book changed: data holds size shard_book_entry. */
	SHARD_REQ_PEER_STATES, /* data holds the address of shard_peer_state[FL_PEERS_MAX];
				* cb's result: how many were filled in. */
};

/* One peer in force, as SHARD_REQ_PEERS carries the whole address book. */
struct shard_book_entry {
	uint64_t id;
	uint32_t epoch; /* Changes when its address does: reconnect. */
};

/* One peer's connections on one shard (SHARD_REQ_PEER_STATES). */
struct shard_peer_state {
	uint64_t id;
	bool out_up; /* Our connection to it is up. */
	bool in_up;  /* A connection from it is open. */
};

enum shard_change {
	SHARD_CHANGE_ADD_VOTER = 1,
	SHARD_CHANGE_ADD_LEARNER,
	SHARD_CHANGE_PROMOTE,
	SHARD_CHANGE_REMOVE,
	SHARD_CHANGE_ADD_WITNESS, /* A node not in the group only: witnesses join anew. */
};

/* One entry of a SHARD_REQ_PROPOSE_BATCH: its payload is at data + offset. */
struct shard_prop_item {
	uint32_t size;
	uint32_t offset;
	void *arg;
};

/* What SHARD_REQ_LIST fills: ids up to max, and how many there are in all. */
struct shard_list {
	uint64_t *groups;
	uint32_t max;
	uint32_t count;
};

/* A request from another thread. Allocated by the caller with its payload
 * behind it; the shard frees it once the callback ran. */
struct shard_req {
	struct shard_req *next; /* Shard-private chaining. */
	uint32_t type;
	uint32_t change;
	uint64_t group;
	uint64_t member;         /* TRANSFER target, CHANGE member, CONN/DIAL peer. */
	int fd;                  /* CONN: the socket; DIAL_FAILED: the errno. */
	bool outgoing;           /* CONN: we dialled it. */
	bool auth;               /* CONN: frames carry tags made with session_key. */
	bool seal;               /* CONN: frames are sealed with session_key (TLS). */
	uint8_t session_key[32]; /* CONN: AUTH_KEY_SIZE; the dialler's frames' key. */
	fl_done_cb cb;
	void *arg;
	uint32_t size;              /* PROPOSE: payload bytes; CREATE: members count. */
	_Alignas(8) uint8_t data[]; /* PROPOSE: payload; CREATE: uint64_t members. */
};

struct shard_config {
	uint64_t node_id;
	struct logger log; /* Where this shard's lines go (its node's logger). */
	uint64_t cluster_id;
	uint32_t shard_index;
	uint32_t shards_count;
	char wal_dir[4096];
	uint32_t tick_ms;
	uint32_t election_timeout_ms;
	uint32_t heartbeat_interval_ms;
	uint32_t entry_size_max;
	uint32_t inbox_max;
	uint32_t wal_segment_size; /* 0: the WAL's default. */
	uint32_t wal_batch_size;   /* 0: the WAL's default; tests set small ones. */
	bool quiesce;
	bool lease_read;
	uint32_t snapshot_entries;
	uint32_t check_entries;
	uint64_t snapshot_bytes;
	uint32_t snapshot_ratio_percent;   /* See shard/snapshot_policy.h. */
	bool snapshot_compress;            /* LZ4 each chunk sent. */
	struct snapshot_worker *snapshots; /* Writes frozen views (sm.freeze set). */
	struct fl_sm_ops sm;
	/* The node's count of hosted groups, shared by its shards, and its bound
	 * (fl_node_config.groups_max): see group_reserve() in group.c. NULL: no
	 * bound (tests/sim runs shards without a node). */
	_Atomic uint64_t *groups_hosted;
	uint64_t groups_max;
	const uint64_t *peers; /* Node ids of every other node at start; then SHARD_REQ_PEERS. */
	uint32_t peers_count;  /* At most FL_PEERS_MAX. */
	/* Ask for a connection from this shard (node, shard_index) to peer:
	 * the answer comes to the shard's inbox as SHARD_REQ_CONN or
	 * SHARD_REQ_DIAL_FAILED (the node's net thread: node_net_dial). Called
	 * on the shard thread; required when peers_count > 0. */
	void (*dial)(void *arg, uint64_t node, uint32_t shard_index, uint64_t peer);
	void *dial_arg;
	/* Tests only (tests/sim/nodesim.c): run the shard on the simulated
	 * loop backend of this world, with no thread of its own: the caller
	 * drives it with shard_sim_turn(). */
	struct loop_sim *sim;
};

/* Counters, written by the shard thread, read by anyone (relaxed atomics). */
struct shard_stats {
	_Atomic uint64_t groups, leaders, proposals, commits, applied;
	_Atomic uint64_t bytes_in, bytes_out, elections, leaderships, peers_refused;
	_Atomic uint64_t msgs_dropped;
	_Atomic uint64_t snapshots_taken, snapshots_sent, snapshots_received;
	_Atomic uint64_t snapshot_bytes_written; /* Files saved here, whole. */
	_Atomic uint64_t checks, divergences;
	_Atomic uint64_t space_low; /* 1 while the WAL is low on space: writes refused. */
	_Atomic uint64_t writes_refused_no_space, appends_dropped_no_space;
	_Atomic uint64_t repairs;           /* Groups whose repair ended here. */
	_Atomic uint64_t groups_refused;    /* Creations and joins refused: ERR_GROUPS_FULL. */
	_Atomic uint64_t peers_over_budget; /* Closed: partial frames past SHARD_PARTIAL_MAX. */
	/* Gauges the shard thread counts over its groups once a second (see
	 * shard_census()): this node a follower (voter) or a learner, the
	 * leader unknown, repairing; as leader, entries each member's log is
	 * behind the leader's last index (the largest, and the sum); the
	 * bytes of the WAL's segment files, live and spare. */
	_Atomic uint64_t followers, learners, leaderless, repairing;
	_Atomic uint64_t lag_max, lag_sum;
	_Atomic uint64_t wal_disk_size;
	/* Written by the shard thread only (base/hist.h), in microseconds:
	 * leader, a proposal taken from the inbox until its entry committed
	 * and is about to be applied; and each call of the state machine's
	 * apply. */
	struct hist commit_us, apply_us;
};

/* Create the shard: open and recover its WAL (recovering every group in it)
 * and start its thread. Returns 0 or a negative error; *why then says why. */
int shard_start(struct shard **shard, const struct shard_config *config, char *why,
		size_t why_size);

/* Stop the shard's thread; shard_submit() refuses requests from here on. */
void shard_stop(struct shard *shard);

/* After shard_stop() and once the net thread is stopped: finish in-flight
 * work, fail queued requests with FL_ERR_STOPPING, sync and close the WAL,
 * free everything. */
void shard_close(struct shard *shard);

/* Hand a request to the shard. Any thread. Returns 0, -EAGAIN (queue full)
 * or FL_ERR_STOPPING. On success the shard owns req. */
int shard_submit(struct shard *shard, struct shard_req *req);

/* Tests only, for a shard started with config->sim: one turn of the
 * shard's loop, as its thread would run it (completions that are ready, then
 * the turn). Returns true when another turn is due at once (work queued). */
bool shard_sim_turn(struct shard *shard);

/* Tests only: the shard's loop, to connect simulated sockets to it. */
struct loop *shard_sim_loop(struct shard *shard);

/* Tests only: free the shard as a crash leaves it: no last turn, no sync,
 * queued and pending requests fail with FL_ERR_STOPPING. Call
 * loop_sim_crash() first so that nothing in flight reaches a file. */
void shard_crash(struct shard *shard);

/* What a test may check of a group hosted by the shard (shard thread only). */
struct shard_group_state {
	uint64_t term, commit_index, applied_index;
	uint64_t commit_term; /* Term of the entry at commit_index; 0 when compacted. */
	bool leader;
	bool quiesced;
	/* The hard state last appended to the WAL (term and vote), and whether
	 * everything appended to the shard's WAL is durable now: then this
	 * vote is one the node may have granted (for simulation checks). */
	uint64_t vote_term, vote;
	bool vote_durable;
	uint64_t last_index; /* The log's last index (a snapshot's when it has none after). */
	bool repairing;      /* It lost data and repairs from its peers (never votes). */
};

/* Fill *state for group. Returns false when the shard does not host it. */
bool shard_group_state(struct shard *shard, uint64_t group, struct shard_group_state *state);

/* The shard's WAL failed: its groups are stopped until the node restarts. */
bool shard_is_failed(struct shard *shard);

struct shard_stats *shard_stats(struct shard *shard);
uint64_t shard_inbox_depth(struct shard *shard);
uint64_t shard_wal_fsyncs(struct shard *shard);
/* Bytes allocated from the shard thread's own arena (0 without jemalloc). */
uint64_t shard_memory(struct shard *shard);
uint64_t shard_wal_bytes(struct shard *shard);
/* The WAL's stats, written by the shard thread: read only the histograms
 * (base/hist.h) from other threads. */
struct wal_stats;
struct wal_stats *shard_wal_stats(struct shard *shard);

#endif /* SHARD_SHARD_H */
