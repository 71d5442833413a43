/* The deterministic cluster simulator (flotilla-sim): types shared by its files.
 *
 * One struct sim is one run: 3 to 7 engines in one process, a simulated
 * network, a simulated disk per node and a virtual clock, all driven by one
 * PRNG seeded from the run's seed. sim.c drives the cluster and injects
 * faults; sim_check.c holds the history the invariants are checked against. */
#ifndef TESTS_SIM_SIM_H
#define TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/raft.h"
#include "tests/driver/raft_driver.h"

#define SIM_NODES_MAX 7
#define SIM_KEYS      4      /* The state machine is SIM_KEYS registers. */
#define SIM_BP        10000u /* Probabilities are in basis points. */

struct sim_rng {
	uint64_t state;
};

/* Everything one seed decides; printed at the start of a verbose run. */
struct sim_params {
	uint64_t seed;
	uint32_t steps;
	uint32_t step_ms;
	uint32_t nodes;
	uint32_t witness_slots; /* The last ones: nodes that only ever are witnesses. */
	uint32_t voters_initial;
	uint32_t learners_initial;
	uint32_t election_ms, heartbeat_ms, drift_max_ms;
	bool pre_vote, check_quorum, lease_read, quiesce;
	uint32_t quiesce_after_ms;
	uint32_t inflight_count_max, msg_size_max, payload_pad_max;
	uint64_t uncommitted_size_max;
	int32_t clock_rate[SIM_NODES_MAX]; /* Parts per 100000 each clock runs fast or slow. */
	uint32_t net_lat_min_ms, net_lat_max_ms;
	uint32_t drop_bp, dup_bp, delay_bp, delay_max_ms;
	uint32_t disk_lat_min_ms, disk_lat_max_ms;
	uint32_t crash_bp, down_max_ms;
	uint32_t partition_bp, asym_bp, partition_max_ms;
	uint32_t pause_bp, pause_max_ms;
	uint32_t propose_bp, read_bp, transfer_bp, change_bp;
	uint32_t rebuild_bp; /* A follower asks to rebuild from a snapshot (raft_want_snapshot). */
	uint32_t compact_after; /* Entries in a node's log before it compacts. */
	bool peer_down;         /* The transport reports crashed processes. */
	bool remove_leader;     /* Membership changes may remove the leader. */
	bool replace;           /* Changes replace voters by new nodes, step by step. */
	uint32_t liveness_ms;   /* Bound for a leader and a commit after healing. */
	/* Restarts that find the node's log damaged, in percent: it restarts
	 * from its snapshot alone and repairs (raft_boot.repair). */
	uint32_t loss_pct;
};

struct sim_stats {
	uint64_t msgs, drops, dups, delays, partition_drops;
	uint64_t crashes, partitions, asym_cuts, pauses, peer_downs;
	uint64_t proposals, acked, lost, reads, reads_ok, reads_failed, lease_reads;
	uint64_t transfers, changes, compactions, snapshots_sent, snapshots_installed, rebuilds;
	uint64_t elections, leaders, max_term;
	uint64_t liveness_ms;                    /* Time from healing to a committed proposal. */
	uint64_t promotions, promotions_lagging; /* Learners made voters / refused as behind. */
	uint64_t replacements;                   /* Voters replaced by a new node, all steps. */
	uint64_t losses, repairs;                /* Restarts with a damaged log; repairs done. */
};

/* State machine, and the bytes of a snapshot of it. */
struct sim_sm {
	uint64_t index;
	uint64_t digest; /* Chained hash of every entry applied up to index. */
	uint64_t values[SIM_KEYS];
};

/* An entry with an owned payload (disk and network copies). */
struct sim_entry {
	struct raft_entry e;
	uint8_t *data;
};

struct sim_msg {
	struct raft_driver_msg d; /* Owned deep copy (tests/driver/raft_driver.h). */
	struct sim_sm snap_data;  /* Sent out of band with a SNAPSHOT. */
	uint32_t from_incarnation;
};

/* One ready's worth of writes; batches complete in order. */
struct sim_batch {
	uint64_t done_ms;
	bool hard_set, snap_set;
	struct raft_hard_state hard;
	struct raft_snapshot_meta snap;
	struct sim_sm snap_data;
	struct sim_entry *entries;
	uint32_t entries_count;
	struct sim_msg **msgs; /* msgs_after, released when this batch is durable. */
	uint32_t msgs_count;
	bool repairing; /* The repair state as of this batch (shard.c writes it in hard state). */
};

struct sim_disk {
	struct raft_hard_state hard;
	struct raft_snapshot_meta snap;
	struct sim_sm snap_data;
	struct sim_entry *entries; /* snap.index + 1 ...: contiguous. */
	uint32_t entries_count, entries_cap;
	bool repairing; /* Restart in repair: the log was damaged, the repair not done. */
};

struct sim_proposal {
	uint64_t index, term, write_id;
};

struct sim_read {
	uint64_t context;
	uint64_t index;       /* Read index once confirmed; 0 until then. */
	uint64_t applied_min; /* Linearizability: the least index it may be served at. */
	uint32_t key;
};

struct sim_node {
	uint64_t id;
	bool up, paused, witness_slot, removed;
	uint32_t incarnation;
	uint64_t down_until_ms, paused_until_ms;
	int64_t clock_base;
	struct raft raft;
	struct raft_config config;
	struct sim_sm sm;       /* Applied state. */
	struct sim_sm snap_mem; /* The state at raft.snap.index, for SNAPSHOT messages. */
	struct sim_sm install;  /* Data of the SNAPSHOT being stepped. */
	bool install_set;
	struct sim_disk disk; /* Durable. */
	bool repairing;       /* The repair state last put in a batch. */
	struct sim_batch *batches;
	uint32_t batches_head, batches_count, batches_cap;
	uint64_t disk_done_ms; /* When the last queued batch completes. */
	struct sim_proposal *proposals;
	uint32_t proposals_count, proposals_cap;
	struct sim_read *reads;
	uint32_t reads_count, reads_cap;
	/* Checker state. */
	uint64_t seen_commit;
	uint64_t leader_term;   /* Term in which the last scan saw it lead; 0: not leader. */
	uint64_t handed_term;   /* Term in which it last handed out entries as leader. */
	uint64_t leader_handed; /* Last index handed out while leading handed_term. */
	uint64_t *shadow_terms; /* Leader Append-Only: terms at the last scan. */
	uint64_t shadow_first, shadow_last, shadow_cap;
};

struct sim_event;
struct sim_check;

struct sim {
	struct sim_params p;
	struct sim_stats stats;
	struct sim_rng rng;
	uint64_t now_ms;
	uint32_t step;
	bool healed;
	struct sim_node nodes[SIM_NODES_MAX];
	bool cut[SIM_NODES_MAX][SIM_NODES_MAX]; /* cut[a][b]: a's messages to b are lost. */
	uint64_t partition_until_ms;
	struct sim_event *events;
	uint32_t events_count, events_cap;
	uint64_t event_seq;
	uint64_t next_context;
	uint64_t live_write_id,
	    live_index; /* Liveness: the proposal awaited, its index once acked. */
	uint64_t replace_old, replace_new; /* The replacement under way (0: none). */
	struct sim_check *check;
	bool failed;
	char failure[512];
};

/* Record the first violation; the run stops after the current step. */
void sim_fail(struct sim *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hash of an entry's type and payload (what Log Matching compares). */
uint64_t sim_entry_hash(const struct raft_entry *e);
/* The write id and key a NORMAL payload carries. */
void sim_payload_decode(const struct raft_entry *e, uint64_t *write_id, uint32_t *key);
/* The state machine after applying e to sm; witness payloads are absent. */
void sim_sm_apply(struct sim_sm *sm, const struct raft_entry *e, uint64_t content_hash);

/* Invariants, in sim_check.c. */
int sim_check_init(struct sim *sim);
void sim_check_deinit(struct sim *sim);
/* Election Safety, after every input to node. */
void sim_check_leader(struct sim *sim, struct sim_node *n);
/* Record what node's commit index covers; call before applying its ready. */
void sim_check_commit(struct sim *sim, struct sim_node *n);
/* Leader Append-Only for a ready's entries. */
void sim_check_handed(struct sim *sim, struct sim_node *n, const struct raft_ready *rd);
/* State Machine Safety for one applied entry, before it changes n->sm. */
void sim_check_apply(struct sim *sim, struct sim_node *n, const struct raft_entry *e);
/* State Machine Safety for an installed snapshot. */
void sim_check_install(struct sim *sim, struct sim_node *n, const struct sim_sm *data);
/* A write was proposed / acknowledged to its client. */
uint64_t sim_check_write_new(struct sim *sim, uint32_t key);
void sim_check_write_acked(struct sim *sim, struct sim_node *n, const struct sim_proposal *p);
/* Linearizability: the lower bound for a read invoked now, and a served read. */
uint64_t sim_check_read_bound(const struct sim *sim);
void sim_check_read_served(struct sim *sim, struct sim_node *n, const struct sim_read *rd,
			   uint64_t applied, uint64_t value);
/* The full scan after every step: Log Matching, Leader Append-Only, Leader
 * Completeness, on the engines' in-memory logs. */
void sim_check_step(struct sim *sim);
/* The committed log's length and the configuration in force at its end. */
uint64_t sim_check_committed(const struct sim *sim);

#endif /* TESTS_SIM_SIM_H */
