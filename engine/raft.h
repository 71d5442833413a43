/* The Raft core: a pure, deterministic state machine for one Raft group.
 *
 * No I/O, no clock, no threads, no globals. Time enters as an argument, the
 * randomness of election timeouts comes from a PRNG seeded by the config, and
 * messages are values. The caller (a shard, or the simulator) feeds inputs:
 *
 *   raft_step(msg, now)        a message from a peer
 *   raft_tick(now)             time passed; cheap when no deadline is due
 *   raft_propose(bufs)         new entries (leader only)
 *   raft_persisted(index, term) entries up to index (of that term) are durable
 *   raft_applied(index)        the state machine applied up to index
 *   raft_compact(index)        a snapshot covers index: drop the log up to it
 *   raft_peer_down(node)       the transport saw that node's process die
 *   raft_read_index, raft_transfer, raft_change, raft_quiesce
 *
 * and collects the work to do with raft_ready(): hard state and entries to
 * persist, messages to send at once, messages to send only once everything
 * handed out so far is durable, committed entries to apply, a snapshot to
 * install, and confirmed reads. A ready is borrowed until the next call into
 * the engine: the caller copies what it keeps (it serialises entries into the
 * WAL batch and messages into peer buffers anyway).
 *
 * Durability contract (Raft thesis §3.8, §10.2.1): the caller persists ready
 * items in the order readies were taken. msgs may leave at once; msgs_after
 * leave only once everything handed out by this ready and every earlier one
 * is durable. The leader sends AppendEntries before its own write finishes
 * and counts itself toward the quorum only after raft_persisted(). */
#ifndef ENGINE_RAFT_H
#define ENGINE_RAFT_H

#include <stdbool.h>
#include <stdint.h>

#define RAFT_MEMBERS_MAX   16 /* Members (voters, learners, witnesses) of one group. */
#define RAFT_INFLIGHT_MAX  32 /* Compile-time cap of a follower's inflight window. */
#define RAFT_NONE          0  /* No node: node ids start at 1. */
#define RAFT_DEADLINE_NONE UINT64_MAX

enum raft_role {
	RAFT_ROLE_FOLLOWER,
	RAFT_ROLE_PRE_CANDIDATE,
	RAFT_ROLE_CANDIDATE,
	RAFT_ROLE_LEADER,
};

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* An embedder payload. */
	RAFT_ENTRY_NOOP = 1,   /* A new leader's first entry (thesis §6.4). */
	RAFT_ENTRY_CONF = 2,   /* A membership; payload is raft_conf_encode() bytes. */
	RAFT_ENTRY_CHECK = 3,  /* Consistency check: replicated and committed like a
				* normal entry, but never handed to the embedder; the
				* payload belongs to the shard (shard.c, CHECK ENTRY). */
};

/* Member roles within one configuration. */
enum raft_member_role {
	RAFT_MEMBER_NONE = 0,    /* Not in this configuration. */
	RAFT_MEMBER_VOTER = 1,   /* Votes, counts in quorums, may lead. */
	RAFT_MEMBER_LEARNER = 2, /* Receives the log; never votes or counts. */
	RAFT_MEMBER_WITNESS = 3, /* Votes and counts; keeps entry metadata only; never leads. */
};

struct raft_member {
	uint64_t id;
	uint8_t role;     /* enum raft_member_role in the new (or only) configuration. */
	uint8_t role_old; /* In the outgoing configuration while joint; NONE otherwise. */
};

/* A membership. While joint (thesis §4.3), decisions need a majority of the
 * voters of the old and of the new configuration separately. */
struct raft_conf {
	struct raft_member members[RAFT_MEMBERS_MAX];
	uint32_t members_count;
	bool joint;
};

struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint32_t type; /* enum raft_entry_type */
	uint32_t size; /* Payload bytes; 0 for a witness's metadata-only copy. */
	const void *data;
};

struct raft_buf {
	const void *data;
	uint32_t size;
};

struct raft_hard_state {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
};

/* What a snapshot covers. The state machine's bytes travel outside the engine. */
struct raft_snapshot_meta {
	uint64_t index;
	uint64_t term;
	struct raft_conf conf;
};

enum raft_msg_type {
	RAFT_MSG_APPEND = 1,      /* index/log_term: the entry before entries; commit. */
	RAFT_MSG_APPEND_RESP,     /* index: highest index matched; or reject + hint. */
	RAFT_MSG_VOTE,            /* index/log_term: candidate's last entry. */
	RAFT_MSG_VOTE_RESP,       /* reject */
	RAFT_MSG_PRE_VOTE,        /* term is the term the candidate would take. */
	RAFT_MSG_PRE_VOTE_RESP,   /* reject; term echoes the request when granted. */
	RAFT_MSG_HEARTBEAT,       /* commit; context: heartbeat sequence. */
	RAFT_MSG_HEARTBEAT_RESP,  /* context echoed. */
	RAFT_MSG_SNAPSHOT,        /* snapshot: what to install. */
	RAFT_MSG_TIMEOUT_NOW,     /* Leadership transfer: campaign at once. */
	RAFT_MSG_READ_INDEX,      /* Follower to leader: context identifies the read. */
	RAFT_MSG_READ_INDEX_RESP, /* index: read index; context echoed; reject if refused. */
	RAFT_MSG_SNAPSHOT_WANTED, /* Follower to leader: send me a snapshot at or past index. */
	RAFT_MSG_TYPE_COUNT,
};

enum raft_msg_flags {
	RAFT_MSG_FLAG_TRANSFER = 1u << 0, /* A vote caused by leadership transfer. */
	RAFT_MSG_FLAG_QUIESCE = 1u << 1,  /* Heartbeat: leader is going quiet. */
	RAFT_MSG_FLAG_METADATA = 1u << 2, /* Append to a witness: drop NORMAL payloads. */
	/* From a member repairing data it lost (raft_boot.repair), on its
	 * responses and vote refusals: do not count its acknowledgements. */
	RAFT_MSG_FLAG_REPAIR = 1u << 3,
	/* Leader to a repairing member, on an append: once this append is
	 * accepted, your log holds mine up to the repair mark. Back on the
	 * response: the member has left repair and counts again. */
	RAFT_MSG_FLAG_REPAIRED = 1u << 4,
};

struct raft_msg {
	uint64_t group; /* Stamped by the engine from its config; routing only. */
	uint64_t from;
	uint64_t to;
	uint64_t term;
	uint64_t log_term;
	uint64_t index;
	uint64_t commit;
	uint64_t context;
	uint64_t hint_index; /* Reject of APPEND: follower's conflict hint (§5.3 optimisation). */
	uint64_t hint_term;
	uint32_t type; /* enum raft_msg_type */
	uint32_t flags;
	bool reject;
	uint32_t entries_count;
	const struct raft_entry *entries;          /* Borrowed: valid until the next engine call. */
	const struct raft_snapshot_meta *snapshot; /* SNAPSHOT only; borrowed likewise. */
};

/* A read confirmed linearizable: serve it once applied >= index. index 0
 * means the read was refused (leadership lost or no leader): retry it. */
struct raft_read {
	uint64_t context;
	uint64_t index;
};

struct raft_ready {
	struct raft_hard_state hard;
	bool hard_changed;                         /* Persist hard before msgs_after leave. */
	const struct raft_snapshot_meta *snapshot; /* Install (restore) before applying more. */
	const struct raft_entry *entries;          /* Append to the log; may overwrite a suffix. */
	const struct raft_entry *committed;        /* Apply in order. */
	const struct raft_msg *msgs;               /* Send now. */
	const struct raft_msg *msgs_after;         /* Send once all handed out so far is durable. */
	const struct raft_read *reads;
	uint32_t entries_count;
	uint32_t committed_count;
	uint32_t msgs_count;
	uint32_t msgs_after_count;
	uint32_t reads_count;
};

struct raft_config {
	uint64_t id;                   /* This node; >= 1. */
	uint64_t group;                /* Stamped on messages. */
	uint64_t seed;                 /* PRNG seed for election jitter. */
	uint64_t uncommitted_size_max; /* Leader refuses proposals past this (-EAGAIN). */
	uint32_t election_timeout_ms;  /* Base; each timeout is drawn in [base, 2*base). */
	uint32_t heartbeat_interval_ms;
	uint32_t clock_drift_max_ms; /* Lease reads assume clocks drift less than this. */
	uint32_t inflight_count_max; /* Per follower, <= RAFT_INFLIGHT_MAX. */
	uint32_t inflight_size_max;  /* Payload bytes in flight per follower. */
	uint32_t msg_size_max;       /* Payload bytes per APPEND. */
	uint32_t entry_size_max;     /* Largest single proposal. */
	uint32_t reads_max;          /* Pending ReadIndex requests. */
	bool pre_vote;
	bool check_quorum;
	bool lease_read;           /* Serve reads on the leader's lease when valid. */
	bool quiesce;              /* Allow the leader to put the group to sleep. */
	uint32_t quiesce_after_ms; /* Idle time before a leader quiesces. */
	/* A learner becomes a voter only while its log is within this many
	 * entries of the leader's last one (raft_change). */
	uint32_t promote_lag_entries_max;
	/* How long each acknowledgement promises the leader that this voter
	 * helps elect no other once the leader's host is suspected
	 * (raft_peer_suspect): the leader's lease lasts this long less the
	 * drift, and a suspected leader's groups elect when it ends. 0 means
	 * election_timeout_ms; at most election_timeout_ms. */
	uint32_t promise_ms;
};

/* What survived on stable storage, for raft_init(). A brand-new group passes
 * its bootstrap membership as snapshot->conf with index 0 and term 0. A node
 * that joins an existing group passes an empty conf and waits to be contacted. */
struct raft_boot {
	struct raft_hard_state hard;
	struct raft_snapshot_meta snapshot;
	const struct raft_entry *entries; /* snapshot.index + 1 ..., contiguous. */
	uint32_t entries_count;
	uint64_t
	    applied; /* The state machine already holds entries up to here (0: snapshot.index). */
	/* Storage lost records of this group (a damaged WAL or snapshot): the
	 * member may have acknowledged entries it no longer holds. It starts
	 * repairing: see raft_is_repairing(). repair_id must differ from one
	 * start to the next (random, say): leaders tell the answers of this
	 * life from those of an earlier one by it. 0 draws one from the seed
	 * and the clock. */
	bool repair;
	uint64_t repair_id;
};

struct raft_inflight {
	uint64_t last_index;
	uint32_t size;
};

enum raft_progress_state {
	RAFT_PROGRESS_PROBE,     /* One append at a time until the follower's log matches. */
	RAFT_PROGRESS_REPLICATE, /* Pipelined appends within the inflight window. */
	RAFT_PROGRESS_SNAPSHOT,  /* Waiting for the follower to install a snapshot. */
};

/* The leader's view of one member. */
struct raft_progress {
	uint64_t id;
	uint64_t match;
	uint64_t next;
	uint64_t snapshot_index; /* SNAPSHOT: the index sent. */
	uint64_t acked_seq;      /* Highest heartbeat sequence acknowledged. */
	uint64_t state_ms;       /* When the current state (probe or snapshot) was entered. */
	uint8_t state;           /* enum raft_progress_state */
	bool probe_sent;         /* PROBE: an append is outstanding. */
	bool recent_active;      /* CheckQuorum: heard from since the last check. */
	bool snapshot_wanted;    /* It asked for a snapshot at or past snapshot_need. */
	bool repairing;          /* It lost data: its match does not count toward commit */
	uint64_t repair_mark;    /* until it holds our log up to here; */
	uint64_t repair_id;      /* which life of it (raft_repair_flag() in raft_repair.c). */
	uint64_t repair_match;   /* Highest index that life acknowledged (<= match). */
	uint64_t snapshot_need;
	bool down; /* The transport reported the process gone. */
	uint32_t inflight_head, inflight_count, inflight_size;
	/* REPLICATE: the window, a ring of config.inflight_count_max slots,
	 * allocated when the member first replicates and freed when the group
	 * quiesces (raft_trim); NULL until then. */
	struct raft_inflight *inflight;
};

/* Internal state, visible only so that struct raft can be embedded. */
struct raft_chunk;
struct raft_log {
	struct raft_entry *entries; /* Entries first..last at entries[head ..]: contiguous. */
	struct raft_chunk **chunks; /* Chunk holding each entry's payload, parallel. */
	uint64_t cap, head, count;
	uint64_t snapshot_index, snapshot_term;
	uint64_t stable_index; /* Durable (raft_persisted). */
	uint64_t handed_index; /* Handed out in a ready for persistence. */
	struct raft_chunk *chunk_open, *chunk_free;
	uint32_t chunk_free_count;
	uint32_t chunk_next_size; /* Bytes of the next chunk to allocate. */
};

struct raft_conf_slot {
	uint64_t index; /* Log index of the CONF entry; for the base slot, at or below the snapshot
			 * (or the group's first CONF entry, once committed: raft_confs_settle). */
	struct raft_conf conf;
};

struct raft_pending_read {
	uint64_t context;
	uint64_t index;
	uint64_t seq;  /* Heartbeat sequence a quorum must acknowledge; 0: not yet sent. */
	uint64_t from; /* Node that asked (self or a follower). */
};

/* Laid out for the idle case: a host keeps thousands of quiesced groups, so
 * what only a campaign, a leader or a busy group needs is small or outside
 * (the leader's progress and heartbeat ring, the ready's buffers, pending
 * reads), and the small fields are packed together. */
struct raft {
	struct raft_config config;
	uint64_t term, vote, commit, leader;
	uint64_t applied, applying; /* Applied by the state machine / handed out to apply. */
	uint64_t repair_id;         /* Nonzero once booted in repair: tells this life apart. */
	uint64_t repair_refused_ms; /* A repairing voter last refused us a vote. */
	uint64_t rng;
	uint64_t now_ms;
	uint64_t election_deadline_ms, heartbeat_deadline_ms, check_quorum_deadline_ms;
	uint64_t quiesce_deadline_ms;
	uint64_t leader_heard_ms;      /* Last message from the current leader. */
	uint64_t leader_contact_ms;    /* Likewise, but never set without one (0: none since
					* boot): what stale reads report (raft_staleness). */
	uint64_t leader_commit_seen;   /* The highest commit index a leader's message carried. */
	uint64_t woken_ms;             /* Follower: last woken from quiescence (raft_wake). */
	uint64_t boot_sticky_until_ms; /* Refuse to elect others until then (see raft_in_lease). */
	uint64_t transfer_target, transfer_deadline_ms;
	uint64_t uncommitted_size;
	/* This campaign's answers, ours first: votes_refused has bit i set when
	 * votes[i] refused. Members only, and us (raft_step_vote_resp). */
	uint64_t votes[RAFT_MEMBERS_MAX + 1];
	uint32_t votes_refused;
	uint32_t votes_count;
	struct raft_log log;
	struct raft_snapshot_meta snap; /* Where the log begins; handed out when installed. */
	struct raft_conf_slot *confs;   /* Configuration history; the last is in force. */
	/* Leader only: one per member, self included; one allocation with
	 * hb_sent_ms, the send time of heartbeat sequence s at s % 16 (for the
	 * lease). Both NULL while not leading. */
	struct raft_progress *progress;
	uint64_t *hb_sent_ms;
	uint64_t hb_seq;         /* Last heartbeat sequence sent. */
	uint64_t lease_until_ms; /* Leader: lease reads are safe before this. */
	struct raft_pending_read *reads_pending;
	struct raft_hard_state hard_handed;
	uint64_t walked_ms; /* The whole invariant walk last ran (raft_invariants.c). */
	/* Ready output buffers, reused across readies. */
	struct raft_msg *msgs, *msgs_after;
	struct raft_read *reads_out;
	uint32_t confs_count, confs_cap;
	uint32_t progress_count;
	uint32_t reads_pending_count, reads_pending_cap; /* Grown on demand to reads_max. */
	uint32_t msgs_count, msgs_cap, msgs_after_count, msgs_after_cap;
	uint32_t reads_out_count, reads_out_cap;
	uint8_t role;
	bool quiesced;
	bool leader_down;     /* Our leader's process is gone (raft_peer_down). */
	bool leader_suspect;  /* Our leader's host is silent (raft_peer_suspect). */
	bool snapshot_dirty;  /* snap is to be handed out for installation. */
	bool ready_taken;     /* The output buffers belong to the last ready. */
	bool hb_pending;      /* A heartbeat round is owed to confirm reads. */
	bool lease_revoked;   /* A transfer was started this term: no lease reads. */
	bool takeover;        /* Campaigning (or about to) because our leader's process died. */
	bool snapshot_wanted; /* Follower: install the next snapshot even over our log. */
	bool repairing;       /* raft_boot.repair: see raft_is_repairing(). */
	/* Counters for metrics and tests. */
	uint64_t elections_started;
	uint64_t leaderships_won;
	uint64_t msgs_lost;       /* Messages dropped because an output buffer could not grow. */
	struct raft_msg msg_lost; /* Where such a message is written; never sent. */
};

/* Fill config with defaults: 1000 ms election, 100 ms heartbeat, PreVote and
 * CheckQuorum on, lease reads off, 32 inflight, 1 MiB messages. */
void raft_config_default(struct raft_config *config, uint64_t id, uint64_t group);

/* Start the engine from what storage kept. Returns 0, -ENOMEM, -EINVAL. */
int raft_init(struct raft *raft, const struct raft_config *config, const struct raft_boot *boot,
	      uint64_t now_ms);
void raft_deinit(struct raft *raft);

/* A message from a peer. Handles stale and malformed-but-decodable input
 * (unknown sender, old term) by ignoring it; never asserts on peer input. */
void raft_step(struct raft *raft, const struct raft_msg *msg, uint64_t now_ms);

/* Give back the memory kept for the next ready when the group is quiesced and
 * has nothing to hand out: thousands of idle groups then cost only their
 * state. Call it when done with the last ready; a no-op otherwise. */
void raft_trim(struct raft *raft);

/* Advance time: elections, heartbeats, CheckQuorum, transfer timeouts. */
void raft_tick(struct raft *raft, uint64_t now_ms);

/* The time at which raft_tick() next has work, or RAFT_DEADLINE_NONE when
 * quiesced. The shard keeps every group on one timer wheel with this. */
uint64_t raft_next_deadline(const struct raft *raft);

/* Append entries as the leader. *first_index receives the index of the first
 * one; they follow contiguously in the current term. Returns 0,
 * RAFT_ERR_NOT_LEADER, RAFT_ERR_TRANSFER, RAFT_ERR_REPAIRING (too many
 * members repair lost data for anything to commit), -EMSGSIZE (an entry exceeds
 * entry_size_max), -EAGAIN (uncommitted log too large), -EINVAL (count 0). */
int raft_propose(struct raft *raft, const struct raft_buf *bufs, uint32_t count,
		 uint64_t *first_index);

/* Append one RAFT_ENTRY_CHECK entry carrying data (copied) as the leader;
 * *index receives its index. The engine treats it like a normal entry: only
 * its type differs when it is committed. Returns what raft_propose() does. */
int raft_propose_check(struct raft *raft, const void *data, uint32_t size, uint64_t *index);

/* Ask for a linearizable read identified by context (ReadIndex, thesis §6.4;
 * or the lease, §6.4.1, when config.lease_read and the lease holds). The
 * answer comes as a raft_read in a later ready. Returns 0,
 * RAFT_ERR_NOT_LEADER (a follower with no known leader), -EAGAIN (queue full). */
int raft_read_index(struct raft *raft, uint64_t context, uint64_t now_ms);

/* Hand leadership to target (thesis §3.10). Proposals are refused until the
 * transfer ends (target elected, or an election timeout passes). Returns 0,
 * RAFT_ERR_NOT_LEADER, -EINVAL (target not a voter, or self), RAFT_ERR_TRANSFER,
 * RAFT_ERR_REPAIRING (target repairs lost data: it may not lead yet). */
int raft_transfer(struct raft *raft, uint64_t target, uint64_t now_ms);

/* Move to the membership target by joint consensus: the leader appends the
 * joint configuration, and once it commits, the final one. A learner that
 * target makes a voter must have caught up: its progress is in the
 * replicate state and at most config.promote_lag_entries_max entries behind
 * the leader's last one, so adding its vote does not stall commits while it
 * catches up (thesis §4.2.1). Returns 0, RAFT_ERR_NOT_LEADER,
 * RAFT_ERR_CONF_PENDING, RAFT_ERR_CONF_INVALID, RAFT_ERR_LAGGING (retry once
 * the learner caught up). If the change removes the leader, it steps down
 * once the final configuration commits and hands leadership to a voter
 * whose log is complete (TimeoutNow, §3.10), so the group does not wait out
 * an election timeout. */
int raft_change(struct raft *raft, const struct raft_conf *target);

/* What raft_recover() did, for the operator: the figures bound what the
 * recovery may have lost or made up. */
struct raft_recover_report {
	uint64_t term_before;   /* Our term before the recovery. */
	uint64_t term;          /* Our term after it (we lead in it, unless out of memory). */
	uint64_t commit_before; /* Known committed before: kept, and safe. */
	uint64_t last_before;   /* Our last entry: (commit_before, last_before] become
				 * committed though perhaps never acknowledged; entries
				 * the group committed past commit_before that we did not
				 * hold (past last_before, or rewritten by a later leader)
				 * are lost. */
	uint64_t conf_index;    /* Index of the single-voter CONF entry. */
	uint32_t dropped_count; /* Members removed from the configuration. */
	uint64_t dropped[RAFT_MEMBERS_MAX];
};

/* Forced recovery of a group that lost a majority of its voters: make this
 * replica the group's single voter from its own log (raft_recover.c): a new
 * term, a CONF entry with only us as voter, then our own election, which
 * wins at once; the whole log commits once our entries are durable. It
 * breaks Raft's safety on purpose: the caller decides that the other
 * members are gone for good (the engine cannot know). Any role may call it.
 * Returns 0 with *report filled; RAFT_ERR_CONF_INVALID (we are a witness,
 * holding no payloads, or not a member); RAFT_ERR_REPAIRING (we repair data
 * our storage lost: our log may lack what we acknowledged); -ENOMEM. */
int raft_recover(struct raft *raft, struct raft_recover_report *report, uint64_t now_ms);

/* Entries up to index, whose term is term, are durable. Stale reports (the
 * entry was since overwritten) are ignored. */
void raft_persisted(struct raft *raft, uint64_t index, uint64_t term);

/* The state machine has applied everything up to index. */
void raft_applied(struct raft *raft, uint64_t index);

/* A snapshot of the state machine at index (<= applied) exists: drop the log
 * up to it. Returns 0, RAFT_ERR_COMPACTED (already), RAFT_ERR_UNAVAILABLE. */
int raft_compact(struct raft *raft, uint64_t index);

/* Follower whose state machine lost the group's state (a replica found
 * diverged): ask the leader for a snapshot, and install the next one that
 * comes at or past our log's start even if the log already holds its index.
 * Then the log is compacted up to the snapshot, entries after it are kept
 * (they may count toward a commit: dropping them could lose one), and the
 * committed ones are handed out again to be applied on top of the restored
 * state. Term, vote and membership are untouched. The request is repeated on
 * every heartbeat until a snapshot is installed. Returns 0,
 * RAFT_ERR_NOT_LEADER (no leader known yet: retry), -EINVAL (we lead). */
int raft_want_snapshot(struct raft *raft);

/* Whether this member repairs data its storage lost (raft_boot.repair). A
 * repairing member never campaigns and never grants a vote; it accepts the
 * leader's log as any follower does, but flags its responses so that no
 * leader counts it toward a commit, takes its commit index only from
 * appends it matched (never from heartbeats), and leaves repair when an
 * append flagged RAFT_MSG_FLAG_REPAIRED matched: its log then holds the
 * leader's up to what the leader had when it learned of the loss. See
 * raft_repair.c (REPAIR) for why that is safe. */
bool raft_is_repairing(const struct raft *raft);

/* Whether the group seems unable to elect a leader because repairing
 * voters refuse their votes: no leader is known and such a refusal came
 * within the last two election timeouts. Leader: whether too few members
 * outside repair remain to commit. For a clear error to callers. */
bool raft_is_blocked_by_repair(const struct raft *raft);

/* Whether raft_want_snapshot() waits for its snapshot. */
bool raft_is_snapshot_wanted(const struct raft *raft);

/* Leader: a follower asked for a snapshot newer than the last one taken;
 * the caller should take one (raft_compact) when it can. */
bool raft_is_snapshot_requested(const struct raft *raft);

/* The transport learned that node's process is gone. A follower whose leader
 * that is starts PreVote at once; a leader drops its lease. See raft_election.c for
 * why this keeps every safety property. */
void raft_peer_down(struct raft *raft, uint64_t node, uint64_t now_ms);

/* The transport reached node again (connection re-established). */
void raft_peer_up(struct raft *raft, uint64_t node);

/* The transport has heard nothing from node's host for a few heartbeat
 * intervals: it may be stopped, cut off or only slow. A follower whose
 * leader that is wakes from quiescence and campaigns (PreVote) once the
 * lease it promised that leader has run out, in the group's takeover order;
 * as a voter it keeps refusing other candidates until then. Unlike
 * raft_peer_down() it releases no promise early: see LIVENESS in
 * raft_election.c. Cheap for groups not led by node. */
void raft_peer_suspect(struct raft *raft, uint64_t node, uint64_t now_ms);

/* The transport hears from node's host again: the suspicion is lifted. */
void raft_peer_heard(struct raft *raft, uint64_t node);

/* The leader finished (ok) or gave up sending a snapshot to node. */
void raft_snapshot_sent(struct raft *raft, uint64_t node, bool ok, uint64_t now_ms);

bool raft_has_ready(const struct raft *raft);
/* Take the work to do. Borrowed until the next call into the engine. */
void raft_ready(struct raft *raft, struct raft_ready *ready);

/* Queries. */
enum raft_role raft_role(const struct raft *raft);
bool raft_is_leader(const struct raft *raft);
uint64_t raft_leader(const struct raft *raft);
uint64_t raft_term(const struct raft *raft);
uint64_t raft_commit_index(const struct raft *raft);
uint64_t raft_last_index(const struct raft *raft);
uint64_t raft_first_index(const struct raft *raft);
bool raft_is_quiesced(const struct raft *raft);
const struct raft_conf *raft_conf(const struct raft *raft);
/* Log index of the entry of the configuration in force (at or below the
 * snapshot index for one that came with a snapshot or the boot). */
uint64_t raft_conf_index(const struct raft *raft);
/* The entry at index, or NULL when compacted or past the end. Borrowed. */
const struct raft_entry *raft_entry_at(const struct raft *raft, uint64_t index);
/* The term at index; 0 when unknown. */
uint64_t raft_term_at(const struct raft *raft, uint64_t index);
const struct raft_progress *raft_progress_of(const struct raft *raft, uint64_t node);
/* Where the log begins: the last snapshot taken or installed. Borrowed. */
const struct raft_snapshot_meta *raft_snapshot(const struct raft *raft);
/* The membership in force at index, for a snapshot to be taken there (index
 * at or past raft_snapshot()'s). Borrowed until the next call into raft. */
const struct raft_conf *raft_conf_at(const struct raft *raft, uint64_t index);
/* Entries applied by the state machine (raft_applied). */
uint64_t raft_applied_index(const struct raft *raft);

/* How far behind its group this replica may be, for reads served from its
 * state machine without a barrier (stale reads; shard/stale.c). */
struct raft_staleness {
	uint64_t applied;       /* The state machine holds the committed log up to here. */
	uint64_t leader_commit; /* A commit index some leader reached (at least ours):
				 * our own as leader; else the highest one a message of a
				 * leader carried. Never past the group's true commit. */
	uint64_t contact_ms;    /* When that was last confirmed, on the engine's clock:
				 * a follower's last message from a leader of its term; a
				 * leader's last heartbeat round a quorum acknowledged, or
				 * its election. 0: not since boot. */
	bool leading;           /* A leader whose lease holds (raft_config.lease_read):
				 * no other leader can commit anything right now. */
};
void raft_staleness(const struct raft *raft, struct raft_staleness *out);
/* index is known to be committed in the group, from a leader's message the
 * caller does not step (a snapshot's first chunk, ahead of the snapshot; an
 * append dropped for lack of room): raft_staleness() counts it in
 * leader_commit. */
void raft_note_committed(struct raft *raft, uint64_t index);

/* Membership helpers. */
enum raft_member_role raft_conf_role(const struct raft_conf *conf, uint64_t id);
int raft_conf_add(struct raft_conf *conf, uint64_t id, enum raft_member_role role);
bool raft_conf_is_voter(const struct raft_conf *conf, uint64_t id); /* In either half. */
/* Encoded size of conf; encode writes it to buf (of at least that size). */
uint32_t raft_conf_encoded_size(const struct raft_conf *conf);
void raft_conf_encode(const struct raft_conf *conf, void *buf);
/* Returns 0 or -EINVAL on malformed bytes. */
int raft_conf_decode(struct raft_conf *conf, const void *buf, uint32_t size);

const char *raft_role_name(enum raft_role role);
const char *raft_msg_type_name(uint32_t type);

#endif /* ENGINE_RAFT_H */
