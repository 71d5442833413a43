/* Flotilla: a multi-Raft replication engine on io_uring.
 *
 * This is the public header an embedder includes. A node hosts many Raft
 * groups, spread over shard threads; each group replicates a log of opaque
 * entries to its members on other nodes and hands committed entries, in
 * order, to the embedder's state machine.
 *
 * Errors are 0 or a negative value: a negative errno (-ENOMEM, -EAGAIN, ...)
 * or a Flotilla code below the errno range (FL_ERR_*); fl_strerror() names
 * both.
 *
 * Threads: every function may be called from any thread, except where it
 * says otherwise. Callbacks run on the shard thread that owns the group: they
 * must not block, and must not call the blocking helpers (*_sync). */
#ifndef FLOTILLA_H
#define FLOTILLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOTILLA_VERSION_MAJOR 0
#define FLOTILLA_VERSION_MINOR 1
#define FLOTILLA_VERSION_PATCH 0

enum {
	FL_ERR_BASE = 4096,
	FL_ERR_NOT_LEADER = -(FL_ERR_BASE + 2),   /* The leader hint says where to go. */
	FL_ERR_TRANSFER = -(FL_ERR_BASE + 3),     /* Leadership transfer in progress: retry. */
	FL_ERR_CONF_PENDING = -(FL_ERR_BASE + 4), /* A membership change is not done yet. */
	FL_ERR_CONF_INVALID = -(FL_ERR_BASE + 5),
	FL_ERR_WAL_FAILED = -(FL_ERR_BASE + 9), /* The shard's WAL failed: the group is stopped. */
	FL_ERR_LAGGING = -(FL_ERR_BASE + 11),   /* The learner has not caught up: retry. */
	FL_ERR_REPAIRING = -(FL_ERR_BASE + 12), /* This replica (or too many) repairs data
						 * its storage lost: retry; it lasts while
						 * a majority repairs. */
	FL_ERR_NO_GROUP = -(FL_ERR_BASE + 20),  /* No such group on this node. */
	FL_ERR_STOPPING = -(FL_ERR_BASE + 21),  /* The node or group is shutting down. */
	FL_ERR_DROPPED = -(FL_ERR_BASE + 22),   /* The entry lost its place in the log
						 * (leadership changed before it committed);
						 * it was not applied. */
	FL_ERR_GROUP_EXISTS = -(FL_ERR_BASE + 23),
	FL_ERR_DIVERGED = -(FL_ERR_BASE + 24),      /* This replica's state differs from the
						     * leader's at a consistency check: it
						     * serves no reads of the group until
						     * fl_group_rebuild() repairs it. */
	FL_ERR_NO_SPACE = -(FL_ERR_BASE + 25),      /* The file system of this node's WAL for the
						     * group is full: writes are refused (nothing
						     * was proposed) until space returns; reads
						     * go on. Retry, or write through another
						     * node: leadership moves away by itself. */
	FL_ERR_INDETERMINATE = -(FL_ERR_BASE + 26), /* The proposal's fate is not known
						     * here: this replica, no longer the
						     * leader, caught up by a snapshot past
						     * its index. It may have been applied
						     * (read the state to find out). */
	/* fl_node_start() refusing a data directory; the log says which and why. */
	FL_ERR_DIR_IN_USE = -(FL_ERR_BASE + 27),   /* Another process (or fl_node) holds its
						    * lock; the log names the holder's PID. */
	FL_ERR_DIR_MISMATCH = -(FL_ERR_BASE + 28), /* Made for another node id, cluster id or
						    * shard count; the log names both values. */
	FL_ERR_DIR_FOREIGN = -(FL_ERR_BASE + 29),  /* No manifest, and files Flotilla did not
						    * write: it is not adopted. */
	FL_ERR_DIR_CORRUPT = -(FL_ERR_BASE + 30),  /* Its manifest fails verification. */
	FL_ERR_STALE = -(FL_ERR_BASE + 31),        /* fl_read_stale(): this replica may be
						    * further behind than the caller's bound
						    * allows; the figures say how far. */
	FL_ERR_PEER_UNKNOWN = -(FL_ERR_BASE + 32), /* fl_node_remove_peer(): no such peer. */
	FL_ERR_PEERS_FULL = -(FL_ERR_BASE + 33),   /* fl_node_set_peer(): the address book
						    * holds FL_PEERS_MAX peers already. */
	/* fl_group_recover() refused: the group knows a live leader or hears a
	 * majority of its voters (force it only if the others never return). */
	FL_ERR_QUORUM_REACHABLE = -(FL_ERR_BASE + 34),
	/* fl_group_recover(): this replica cannot carry the group alone (a
	 * witness, which holds no payloads, or not a member). */
	FL_ERR_NOT_SURVIVOR = -(FL_ERR_BASE + 35),
	FL_ERR_WITNESS = -(FL_ERR_BASE + 36),     /* This replica is a witness of the group:
						   * it keeps entry metadata only and no
						   * state, so it serves no reads (fl_read,
						   * fl_read_stale) and has nothing to rebuild.
						   * Read from a voter or a learner. */
	FL_ERR_GROUPS_FULL = -(FL_ERR_BASE + 38), /* fl_group_create/fl_group_join: this
						   * node hosts groups_max groups already
						   * (struct fl_node_config); nothing was
						   * created. */
	FL_ERR_TLS = -(FL_ERR_BASE + 40),         /* A TLS file (tls_ca_file, tls_cert_file,
						   * tls_key_file) is unreadable or unfit:
						   * the log has a line saying which and
						   * why. */
};

#define FL_MEMBERS_MAX          16
#define FL_PEERS_MAX            (4 * FL_MEMBERS_MAX) /* Other nodes one node knows. */
#define FL_ADDR_SIZE_MAX        256 /* Bytes of a peer's "host:port", its NUL included. */
#define FL_CLIENT_ADDR_SIZE_MAX 116 /* Bytes of fl_node_config.client_addr, its NUL included. */

/* Limits of struct fl_node_config, checked by fl_node_start(): the largest
 * entry_size_max; election_timeout_ms is at least this many heartbeat
 * intervals, and at least this many ticks (and heartbeat_interval_ms at
 * least one tick). */
#define FL_ENTRY_SIZE_MAX          (16u << 20)
#define FL_ELECTION_HEARTBEATS_MIN 2
#define FL_ELECTION_TICKS_MIN      5

struct fl_node;

/* One committed entry handed to the state machine. Borrowed for the call. */
struct fl_entry {
	uint64_t index;
	uint64_t term;
	const void *data;
	uint32_t size;
};

/* Streams for snapshots: fl_snapshot_write() appends bytes to a snapshot being
 * saved; fl_snapshot_read() reads the next bytes of one being restored. */
struct fl_snapshot_writer;
struct fl_snapshot_reader;

/* Append size bytes. Returns 0 or a negative errno (-ENOSPC, -EIO). */
int fl_snapshot_write(struct fl_snapshot_writer *w, const void *buf, size_t size);

/* Read up to size bytes. Returns the count (0 at the end) or a negative errno. */
long fl_snapshot_read(struct fl_snapshot_reader *r, void *buf, size_t size);

/* The embedder's state machine, shared by all groups of the node. */
struct fl_sm_ops {
	/* Apply committed entries of group, in log order; write one result per
	 * entry into results (handed to the proposer's callback on the leader).
	 * Runs on the group's shard thread. */
	void (*apply)(void *ctx, uint64_t group, const struct fl_entry *entries, uint32_t count,
		      uint64_t *results);
	/* May be NULL. This node learned that group's leader is now leader
	 * (0: none known) in term. Runs on the group's shard thread. */
	void (*leader_changed)(void *ctx, uint64_t group, uint64_t leader, uint64_t term);
	/* May be NULL together (then logs are never compacted). save writes
	 * group's whole state as of the last entry applied to it; restore
	 * replaces group's state with what save wrote. Both run on the shard
	 * thread, save at a consistent point between applies (the group's
	 * loop turn waits for it: prefer freeze below), restore before any
	 * later entry is applied. restore must leave the group's state as it
	 * was when it fails (build the new state aside, then swap): the bytes
	 * it reads are verified beforehand, so only a resource error (-ENOMEM,
	 * -EIO) can fail it. Return 0 or a negative errno. A failed save is
	 * retried after another interval; a failed restore stops every group
	 * of that shard (its log already moved past the entries the snapshot
	 * replaces), like a WAL failure: the node must be restarted. Never
	 * called for a group this node is a witness of (fl_add_witness), and
	 * not at a restart for an empty snapshot file whose membership does
	 * not name this node (what a witness installs): let a save that writes
	 * nothing mean an empty state. */
	int (*save)(void *ctx, uint64_t group, struct fl_snapshot_writer *w);
	int (*restore)(void *ctx, uint64_t group, struct fl_snapshot_reader *r);
	/* May be NULL. A digest of group's whole state as of the last entry
	 * applied to it, the same on every replica that applied the same
	 * entries (consistency checks, fl_node_config.check_entries). Runs on
	 * the shard thread between applies. When NULL, Flotilla compares a
	 * hash of the entries applied since the previous check instead, which
	 * catches replicas that applied different entries but not a state
	 * machine that went wrong on its own. */
	uint64_t (*digest)(void *ctx, uint64_t group);
	/* May be NULL. This replica's digest of group at check index differs
	 * from the leader's: it stops serving reads of the group
	 * (FL_ERR_DIVERGED) until fl_group_rebuild() (see fl_group_check()).
	 * Runs on the shard thread. */
	void (*diverged)(void *ctx, uint64_t group, uint64_t index, uint64_t local,
			 uint64_t leader);
	/* May be NULL together; when set, snapshots are saved in two steps
	 * and save above is not called (restore still is):
	 *   freeze runs on the shard thread at a consistent point between
	 *   applies, like save. It takes a view of group's state as of the
	 *   last entry applied that later applies cannot change (a copy, or
	 *   copy-on-write), and returns it in *view. Keep it short: it is the
	 *   only part of a save the group's loop turn waits for.
	 *   save_view runs later on the node's snapshot thread, while the
	 *   group goes on applying entries on its shard thread: it writes the
	 *   view's bytes through w and must touch nothing but the view (and
	 *   memory no apply changes).
	 *   release runs on the snapshot thread once the view is written or
	 *   abandoned (failure, node stopping), exactly once per view that
	 *   freeze returned.
	 * The snapshot and its manifest record the index, term and membership
	 * of the consistent point, whatever was applied since. Return 0 or a
	 * negative errno; a failed freeze or save_view is retried like a
	 * failed save. */
	int (*freeze)(void *ctx, uint64_t group, void **view);
	int (*save_view)(void *ctx, uint64_t group, void *view, struct fl_snapshot_writer *w);
	void (*release)(void *ctx, uint64_t group, void *view);
	void *ctx;
};

struct fl_peer {
	uint64_t id;      /* Node id, >= 1. */
	const char *addr; /* "host:port" of its peer listener. */
};

/* Logging. Each node logs its own lines (several nodes may share a
 * process): by default as text on stderr, one write(2) per line so that
 * threads never interleave, at FL_LOG_INFO and more severe:
 *   2026-01-02T03:04:05.678Z INFO node 2: group 17: leader is node 3, term 5
 * FL_LOG_LOGFMT and FL_LOG_JSON write the same fields as key=value pairs
 * or as one JSON object per line (keys ts, level, node, shard, group, msg;
 * shard and group only when the line is about one). Levels: ERROR when
 * something failed (a WAL, a group's state machine, a start), WARN when the
 * node goes on degraded (a lost or refused peer, a full disk), INFO for
 * state changes (leaders, repairs, snapshots installed), DEBUG for detail.
 *
 * Events that a mass failover repeats for every group (a leader change, a
 * repair, a snapshot installed or received, a group unavailable) are
 * limited per shard: the first few of each kind per second are logged one
 * by one, the rest counted, and once that second is over one line sums them
 * up with a dozen examples ("1,203 groups changed leader in the last second
 * (8 logged one by one); 12 examples: group 4: leader is node 2, term 7;
 * ..."); docs/operations.md, "Reading the logs". */
enum fl_log_level {
	FL_LOG_ERROR = 1,
	FL_LOG_WARN = 2,
	FL_LOG_INFO = 3,
	FL_LOG_DEBUG = 4,
};

enum fl_log_format {
	FL_LOG_TEXT = 0,
	FL_LOG_LOGFMT = 1,
	FL_LOG_JSON = 2,
};

/* One log line, handed to fl_node_config.log_cb. Borrowed for the call. */
struct fl_log_record {
	uint8_t level;    /* enum fl_log_level. */
	uint64_t node_id; /* The node that logs it. */
	int32_t shard;    /* The shard it is about, or -1. */
	uint64_t group;   /* The group it is about, or 0. */
	uint64_t time_ns; /* CLOCK_REALTIME, nanoseconds since the epoch. */
	const char *msg;  /* The text, without the fields above (except that the
			   * text of a line about a group or a shard does not
			   * repeat them), NUL-terminated, at most 1023 bytes. */
};

struct fl_node_config {
	uint64_t node_id;            /* >= 1, unique in the cluster. */
	uint64_t cluster_id;         /* Peers of another cluster are refused. */
	const char *data_dir;        /* One WAL directory per shard below it. */
	const char *listen_addr;     /* "host:port" for peers; port 0 picks one. */
	const struct fl_peer *peers; /* Every other node; may be empty. */
	uint32_t peers_count;
	uint32_t shards_count;          /* 0: the number of CPUs. Same on every node. */
	uint32_t tick_ms;               /* Timer granularity; default 10. */
	uint32_t election_timeout_ms;   /* Default 1000; at least 2 heartbeats and 5 ticks. */
	uint32_t heartbeat_interval_ms; /* Default 100; at least one tick. */
	uint32_t entry_size_max;        /* Default 1 MiB; at most FL_ENTRY_SIZE_MAX (16 MiB). */
	uint32_t inbox_max;             /* Requests queued per shard; default 65536. */
	uint32_t wal_segment_size;      /* Bytes per WAL segment file; 0: 64 MiB. Rounded up
					 * to 4 KiB and to four WAL batches (which grow with
					 * entry_size_max). Disk use per shard stays around
					 * 20 segments with compaction on. */
	bool quiesce;                   /* Idle groups stop ticking; default on. */
	bool lease_read;                /* Serve reads on the leader lease; default off. */
	uint32_t snapshot_entries;      /* Floor of the snapshot rule below, in applied
					 * entries; default 10000; 0: none. */
	uint64_t snapshot_bytes;        /* Likewise in bytes of applied entries; default
					 * 0: none. With both 0, a group snapshots only
					 * when asked (or when its WAL needs it). */
	bool snapshot_compress;         /* Send snapshot chunks LZ4-compressed, each chunk
					 * on its own; default off (on loopback it costs
					 * more CPU than it saves; see docs/snapshots.md).
					 * Receivers take either. */
	uint32_t check_entries;         /* The leader of a group starts a consistency
					 * check after this many log entries; 0: only
					 * on demand (fl_group_check). Default 10000. */
	/* A group snapshots and compacts its log on its own once the floor
	 * (snapshot_entries entries or snapshot_bytes bytes applied since its
	 * last snapshot, whichever is set and reached first) AND the ratio (the
	 * bytes applied since are at least snapshot_ratio_percent% of that
	 * snapshot's size) both hold. The ratio keeps the bytes snapshots write
	 * within 100 / snapshot_ratio_percent times the bytes applied (plus the
	 * state's growth), whatever the state's size; the floor lets a small
	 * state compact often. The log kept is at most the larger of the floor
	 * and snapshot_ratio_percent% of the state. Default 50; 0: the floor
	 * alone (a snapshot every snapshot_entries entries, whatever the
	 * state's size); at most 1000. See docs/snapshots.md. */
	uint32_t snapshot_ratio_percent;
	/* The most groups this node hosts: fl_group_create() and fl_group_join()
	 * of a new group refuse with FL_ERR_GROUPS_FULL once it hosts this many
	 * (groups found at start are all recovered, even past it). Each group
	 * replica costs memory at every start (about 4 KiB idle, more while its
	 * WAL is replayed), so a bound stops a client that may JOIN from making
	 * the node unable to start. Default 100000; at least 1 (0 is refused). */
	uint32_t groups_max;
	/* Shared secret for peer authentication (a challenge answered with a
	 * keyed MAC, libsodium's crypto_auth); NULL: off. Every node of the
	 * cluster must have the same one, at least 16 bytes. */
	const void *auth_key;
	uint32_t auth_key_size;
	/* Mutual TLS 1.3 between nodes: PEM files of the cluster CA, this node's
	 * certificate (subject OU node, CN node-<node_id>) and its key. All
	 * three, or none (NULL: plaintext peers). With them every peer
	 * connection runs a TLS handshake in which each side verifies the
	 * other's certificate against the CA and the node id it names, and
	 * every frame after it is encrypted and authenticated; auth_key is then
	 * unused. Read at start (fl_node_start() fails with FL_ERR_TLS and a log
	 * line for an unreadable file, a key that does not match, or a
	 * certificate of another node) and by fl_node_tls_reload(). */
	const char *tls_ca_file;
	const char *tls_cert_file;
	const char *tls_key_file;
	/* The most time one peer connection's set-up (TCP accept or connect,
	 * TLS and Flotilla handshakes together) may take. 0: 2000 ms. */
	uint32_t peer_handshake_timeout_ms;
	/* Logging (see fl_log_record above). log_level: lines less severe are
	 * dropped; 0: FL_LOG_INFO. log_format: on stderr. log_cb: when set,
	 * every line goes to it instead of stderr, with log_arg; it runs on
	 * the thread that logs (a shard thread, the node's network thread, or
	 * the caller of fl_node_start/fl_node_stop), must not block, and must
	 * not call into Flotilla. */
	uint8_t log_level;
	uint8_t log_format;
	void (*log_cb)(void *arg, const struct fl_log_record *rec);
	void *log_arg;
	struct fl_sm_ops sm;
	/* Text this node tells its peers when it dials them, listed by their
	 * fl_node_peers(): the address its program serves clients on
	 * (flotilla-node sets its --client address). NULL: none. At most
	 * FL_CLIENT_ADDR_SIZE_MAX - 1 printable bytes. */
	const char *client_addr;
};

/* Fill config with defaults for node_id; the caller sets dirs, addresses and sm. */
void fl_node_config_default(struct fl_node_config *config, uint64_t node_id);

/* Lock and identify the data directory, open the WALs (recovering every
 * group found in them), start the shard
 * threads and the peer listener. A group whose WAL records or snapshot file
 * fail verification does not stop the node: it starts as a repairing member
 * (no vote, no acknowledgement that counts) and copies what it lost from the
 * group's leader; the log says which groups and when each is repaired.
 *
 * The data directory: data_dir holds a manifest (flotilla.manifest: node
 * id, cluster id, shard count, and a random incarnation id fixed when the
 * directory was made) and a lock file (flotilla.lock) that the node holds,
 * with flock(2), until fl_node_stop(). An empty or absent directory gets a
 * new manifest. A directory with WAL shard directories but no manifest (made
 * by an older Flotilla) is adopted once if it holds nothing else and its
 * shards are exactly 0..shards_count-1. Refused, with a log line naming both
 * values and what to do: FL_ERR_DIR_IN_USE (the lock is held: by another
 * process, whose PID the log names, or by another fl_node of this process),
 * FL_ERR_DIR_MISMATCH (the manifest names another node id, cluster id or
 * shard count: a data directory never changes its shard count),
 * FL_ERR_DIR_FOREIGN (no manifest, and other files), FL_ERR_DIR_CORRUPT (the
 * manifest fails its checksum or has an unknown format version). The
 * incarnation id travels in the peer handshake: peers refuse a second live
 * process that claims this node id from another data directory
 * (docs/operations.md).
 *
 * Returns 0 and *node, or -EINVAL (bad config: the log has one line naming
 * the field, its value and the rule; peer addresses must resolve now),
 * -EADDRINUSE, -ENOSYS/-EPERM (io_uring unavailable; the log says why),
 * FL_ERR_DIR_* above, FL_ERR_* from recovery, or -errno from the file
 * system. */
int fl_node_start(const struct fl_node_config *config, struct fl_node **node);

/* Stop gracefully: refuse new requests, finish what is in flight, make the
 * WALs durable and close them, join the threads, free the node. Requests
 * still queued get FL_ERR_STOPPING. */
void fl_node_stop(struct fl_node *node);

/* Read the TLS files of the node's configuration again (after they were
 * replaced: a renewed certificate, a new key): connections made from then
 * on use them; connections up keep running. Logs one line saying what was
 * loaded, or why not. Returns 0; FL_ERR_TLS when a file is unreadable or
 * unfit (the files loaded before stay in use); -EINVAL when the node runs
 * without TLS. Any thread but a Flotilla callback. */
int fl_node_tls_reload(struct fl_node *node);

/* The port the peer listener is bound to (useful with port 0). */
uint16_t fl_node_port(const struct fl_node *node);

/* THE ADDRESS BOOK: the other nodes this node knows, by id, with the
 * "host:port" of each one's peer listener. It starts as data_dir's
 * flotilla.peers (written by earlier runs) merged with config->peers: an id
 * in only one of them is taken as it is there; for an id in both, the
 * file's address (or its removal) wins unless config names another address
 * than it did at the last start (the operator changed the flag: the flag
 * wins). Every change below is written to flotilla.peers (a temporary file,
 * fsync, rename, fsync of the directory; a checksum verified when read), so
 * a restart keeps it. A node accepts connections only from the nodes in its
 * book and dials only them.
 *
 * fl_node_set_peer() adds node id, or changes its address: every shard
 * dials it (again, at the new address: an established connection to the
 * old one is closed first). fl_node_remove_peer() forgets it: its
 * connections, both ways, are closed and it is not dialled again; groups
 * that still count it as a member simply stop reaching it (remove it from
 * them first). Both return once every shard has taken the change; call
 * them from any thread but a Flotilla callback. Returns 0; -EINVAL (id 0,
 * this node's id, or addr not "host:port" that resolves, or longer than
 * FL_ADDR_SIZE_MAX - 1 bytes; the log has a line saying which);
 * FL_ERR_PEERS_FULL (set: FL_PEERS_MAX peers known already);
 * FL_ERR_PEER_UNKNOWN (remove: not in the book); -errno when the file
 * cannot be written (then nothing changed). Setting a peer to the address
 * it has already changes nothing and returns 0. */
int fl_node_set_peer(struct fl_node *node, uint64_t id, const char *addr);
int fl_node_remove_peer(struct fl_node *node, uint64_t id);

struct fl_peer_info {
	uint64_t id;
	char addr[FL_ADDR_SIZE_MAX]; /* Its peer listener. */
	/* What it told us when it dialled us (its client_addr); "" until then. */
	char client_addr[FL_CLIENT_ADDR_SIZE_MAX];
	bool connected_out; /* Every shard's connection to it is up. */
	bool connected_in;  /* Every shard has a connection from it. */
};

/* The address book now: up to max peers into peers, their number in *count
 * (which may exceed max). Asks every shard for its connections; not from a
 * Flotilla callback. Returns 0 or -ENOMEM. */
int fl_node_peers(struct fl_node *node, struct fl_peer_info *peers, uint32_t max, uint32_t *count);

/* Completion of an asynchronous request. rv is 0 or an error; for a proposal,
 * result is what the state machine's apply returned for the entry. leader is
 * the leader's node id when known (useful with FL_ERR_NOT_LEADER), else 0. */
typedef void (*fl_done_cb)(void *arg, int rv, uint64_t result, uint64_t leader);

/* Create group on this node with the initial voters members (this node among
 * them). Every initial member must be created with the same list. Returns at
 * once; cb may be NULL. cb gets FL_ERR_GROUP_EXISTS for a group hosted
 * already, and FL_ERR_GROUPS_FULL when the node hosts groups_max groups. */
int fl_group_create(struct fl_node *node, uint64_t group, const uint64_t *members,
		    uint32_t members_count, fl_done_cb cb, void *arg);

/* Host group on this node as a new member: it waits to be contacted by the
 * group's leader after the leader adds it (fl_add_learner / fl_add_voter /
 * fl_add_witness). The same errors as fl_group_create(), FL_ERR_GROUPS_FULL
 * among them. */
int fl_group_join(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

/* Stop and remove group from this node (its WAL records are dropped). */
int fl_group_remove(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

/* The groups hosted here: up to max ids into groups, *count set to how many
 * there are in all (which may exceed max). Blocking: asks every shard. */
int fl_group_list(struct fl_node *node, uint64_t *groups, uint32_t max, uint32_t *count);

/* One entry of fl_propose_batch(). */
struct fl_proposal {
	const void *data;
	uint32_t size;
	void *arg; /* Handed to the callback for this entry. */
};

/* Propose one entry. data is copied before return. cb runs once the entry is
 * applied on this node (rv 0, result from apply) or failed (FL_ERR_NOT_LEADER
 * with a leader hint, FL_ERR_NO_GROUP, FL_ERR_STOPPING, FL_ERR_DROPPED,
 * FL_ERR_NO_SPACE (the leader's WAL file system is full; nothing proposed),
 * FL_ERR_INDETERMINATE, FL_ERR_TRANSFER, -EMSGSIZE, -EAGAIN when the shard's
 * queue or the group's uncommitted log is full), -ENOMEM. Returns 0 (cb will run) or
 * the same errors when they are known at once (cb will not run). */
int fl_propose(struct fl_node *node, uint64_t group, const void *data, uint32_t size, fl_done_cb cb,
	       void *arg);

/* Propose count entries of one group at once, in order, with one queue slot;
 * cb runs once per entry with that entry's arg, with the results of
 * fl_propose(). The payloads are copied. Returns 0 (every callback will run)
 * or an error (none will). */
int fl_propose_batch(struct fl_node *node, uint64_t group, const struct fl_proposal *entries,
		     uint32_t count, fl_done_cb cb);

/* Linearizable read barrier (ReadIndex, or the lease when enabled): cb runs
 * with rv 0 once this node's state machine reflects every write acknowledged
 * before the call; then read the state machine. */
int fl_read(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

/* Stale (bounded-staleness) read: served by this replica alone, whatever
 * its role (leader, follower, learner), with no read barrier and no message
 * to the leader. The caller sets the bounds of *read (0: no bound) and gets
 * the figures below; cb runs on the group's shard thread, where fl_read's
 * does, right after they are taken: until cb returns, the state machine
 * holds exactly the committed log up to applied_index (read it from cb, or
 * copy what you need: a later apply may change it once cb returns).
 *
 * What is guaranteed: the state read is a prefix of the group's committed
 * log (never an entry that did not commit), and the applied index a replica
 * reports never goes backwards while it runs, except across
 * fl_group_rebuild(), which restores a snapshot of the leader's and applies
 * this replica's log after it again (after a restart it starts from what it
 * recovered). Nothing more: two replicas may answer with different
 * prefixes, and an answer may miss a write acknowledged before the call
 * (use fl_read for that).
 *
 * What the figures mean:
 *   leader_commit   a commit index the group's leader had reached: on a
 *                   leader its own; elsewhere the highest one a leader's
 *                   message carried (appends, heartbeats, a snapshot's
 *                   first chunk). Never past the group's true commit
 *                   index, which may have moved on since.
 *   entries_behind  leader_commit - applied_index: entries this replica
 *                   knows it lacks, a lower bound.
 *   contact_age_ms  how long since that was confirmed: on a follower or
 *                   learner, since it last heard from a leader of its
 *                   term; on a leader, since the start of its last
 *                   heartbeat round a quorum acknowledged, or its election
 *                   (under a heartbeat interval plus a round trip while
 *                   healthy), and 0 while its lease holds
 *                   (fl_node_config.lease_read: no other leader can commit
 *                   then). In a quiesced (idle) group, since the leader's
 *                   host (on a leader: a quorum of its voters' hosts) was
 *                   last heard: the leader quiesced it with every replica
 *                   up to date and would have woken it to write.
 *                   FL_STALE_AGE_UNKNOWN when nothing was heard since this
 *                   node started. Measured on this node's monotonic clock,
 *                   good to a message's transit and a loop turn: a caller
 *                   wanting "at most T ms stale" asks for a little under T.
 * So the writes this replica's answer lacks are the entries_behind it knows
 * of plus whatever the group committed in the last contact_age_ms.
 *
 * cb's rv: 0 (result: applied_index); FL_ERR_STALE when entries_behind
 * exceeds behind_max or contact_age_ms exceeds age_max_ms (nonzero ones;
 * the figures are filled in); FL_ERR_DIVERGED (a consistency check found
 * this replica diverged); -EAGAIN in the moment this replica installs a
 * snapshot (retry); FL_ERR_NO_GROUP; FL_ERR_WAL_FAILED; FL_ERR_STOPPING.
 * *read must stay valid until cb runs. */
#define FL_STALE_AGE_UNKNOWN UINT64_MAX

struct fl_stale_read {
	/* In: the caller's bounds; 0: none. */
	uint64_t behind_max; /* Refuse when entries_behind exceeds this. */
	uint64_t age_max_ms; /* Refuse when contact_age_ms exceeds this. */
	/* Out. */
	uint64_t applied_index;
	uint64_t leader_commit;
	uint64_t entries_behind;
	uint64_t contact_age_ms;
	uint64_t leader; /* As this replica knows it; 0: unknown. */
	uint64_t term;
	bool is_leader;
};

int fl_read_stale(struct fl_node *node, uint64_t group, struct fl_stale_read *read, fl_done_cb cb,
		  void *arg);

/* Snapshot group now (if anything was applied since its last snapshot) and
 * compact its log. cb runs once the snapshot is durable and current, with
 * rv 0 and result the index it covers (the last snapshot's when nothing new
 * was applied), or with an error (FL_ERR_NO_GROUP, -ENOTSUP without save or
 * freeze, the save's error, FL_ERR_STOPPING). */
int fl_group_snapshot(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

/* Hand leadership of group to target. cb runs when the request is accepted. */
int fl_transfer(struct fl_node *node, uint64_t group, uint64_t target, fl_done_cb cb, void *arg);

/* Membership, by joint consensus underneath, one change at a time. Leader
 * only. cb runs once the change is proposed and accepted by the leader (rv
 * 0), or refused: FL_ERR_NOT_LEADER (with a hint), FL_ERR_CONF_PENDING (the
 * previous change has not committed yet), FL_ERR_TRANSFER, FL_ERR_CONF_INVALID,
 * FL_ERR_NO_SPACE.
 * The group reaches the new membership when it commits: watch it with
 * fl_group_info() (conf_index <= commit_index and not joint).
 *
 * fl_promote() makes a learner a voter only once it has caught up: its log
 * is replicating within a few hundred entries of the leader's last one.
 * Until then it fails with FL_ERR_LAGGING: retry after a while. (fl_add_voter
 * of a learner is the same change, with the same check.) fl_promote() of a
 * node that is not a learner of the group fails with FL_ERR_CONF_INVALID.
 *
 * A leader that fl_remove_member() removes keeps leading until the change
 * commits, then steps down and hands leadership to an up-to-date voter.
 * Transferring leadership first (fl_transfer) avoids even that short gap.
 *
 * Replacing node A by a new, empty node B in a group, one step at a time,
 * each step waiting until the previous change has committed:
 *   1. on B: fl_group_join();
 *   2. on the leader: fl_add_learner(B); B receives a snapshot or the log;
 *   3. on the leader: fl_promote(B), retried while FL_ERR_LAGGING;
 *   4. if A leads: fl_transfer() to another voter;
 *   5. on the leader: fl_remove_member(A);
 *   6. on A, once the removal committed: fl_group_remove().
 * The group keeps a majority of up-to-date voters at every step.
 * tools/flotilla-admin `move` does this for every group of a node.
 *
 * fl_add_witness() adds member as a witness: it votes and counts toward
 * commits and elections like a voter, but keeps only the metadata of
 * entries (index, term, type; appends to it carry no payloads of the
 * embedder's entries) and no state: fl_sm_ops is never called for the
 * group on that node (no apply, save, restore or digest; its snapshots are
 * empty files and a snapshot sent to it is not kept), and reads there fail
 * with FL_ERR_WITNESS. It never becomes a candidate or the leader (nor the
 * target of fl_transfer), and it can never become a voter or a learner:
 * remove it and add the node anew instead. So a group of two voters and a
 * witness commits, and elects one of the voters, with any one of the three
 * down, for the disk and bandwidth of two full copies; with both voters'
 * copies lost, the group's data is lost. The role is part of the group's
 * membership: it survives restarts. member must not be in the group
 * (FL_ERR_CONF_INVALID otherwise). Like the other changes:
 *   1. on the witness's node: fl_group_join();
 *   2. on the leader: fl_add_witness(); the change commits with a majority
 *      of the old voters and of the new members (the witness among them);
 *   3. the witness has caught up once the leader's fl_group_info() shows it
 *      with role FL_MEMBER_WITNESS and match near last_index (it receives
 *      metadata only, so this is quick).
 * tools/flotilla-admin `add-witness` does this for one group or many. */
int fl_add_witness(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg);
int fl_add_voter(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg);
int fl_add_learner(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg);
int fl_promote(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg);
int fl_remove_member(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb,
		     void *arg);

/* Consistency check of group, on demand (the leader also starts one every
 * check_entries entries). This node must be the group's leader. It appends
 * a check entry at index i; every replica records the digest of its state
 * at i (fl_sm_ops.digest, or the hash of the entries applied since the
 * previous check); once the leader applied i it appends its own digest,
 * which is the reference, and every replica compares when it applies that.
 * A replica that differs logs it, counts it (fl_metrics.divergences),
 * calls fl_sm_ops.diverged, and refuses reads with FL_ERR_DIVERGED.
 * With a state digest (fl_sm_ops.digest), a later check that finds the
 * replica equal to its leader clears the finding. Because the leader is the
 * reference, a leader whose own state went wrong makes every follower
 * report a divergence: when most replicas of a group report one, suspect
 * the leader: move leadership to one of them (its next check clears it),
 * then rebuild the old leader. The finding lives in memory: a restarted
 * replica serves reads again until a check finds it again. A witness
 * compares nothing. cb runs once the
 * leader's digest is applied here, with result i; or with
 * FL_ERR_NOT_LEADER, or FL_ERR_DROPPED when leadership moved first. */
int fl_group_check(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

/* Repair a replica of group, typically one found diverged: restore this
 * node's state of the group from a snapshot of the leader's (its last one
 * when recent enough, else one it takes for this), then apply this node's
 * log after the snapshot again. The node stays a member throughout, with its
 * term, vote and log; only its state machine is replaced (fl_sm_ops.restore).
 * cb runs once the snapshot is restored, with its index as result; reads of
 * the group are served again from then on (after the usual read barrier).
 * Errors: FL_ERR_NO_GROUP; -ENOTSUP (no save/restore in fl_sm_ops);
 * -EINVAL (this node leads the group: transfer leadership first);
 * FL_ERR_NOT_LEADER (no leader known yet: retry); -EALREADY (a rebuild of
 * the group is under way); FL_ERR_DROPPED (this node became the leader
 * before the snapshot came). */
int fl_group_rebuild(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg);

#define FL_RECOVER_FORCE 1u /* fl_group_recover(): even though a quorum seems reachable. */

/* What fl_group_recover() did on this replica. */
struct fl_recover_report {
	uint64_t term_before;   /* This replica's term before the recovery. */
	uint64_t term;          /* Its term after: it leads the group in it. */
	uint64_t commit_before; /* Known committed before: every entry up to here is kept. */
	uint64_t last_before;   /* Its last entry before. Entries commit_before + 1 ..
				 * last_before are kept and become committed, though no
				 * majority may have acknowledged them. Entries the lost
				 * members committed past commit_before that this replica
				 * did not hold are lost: the range possibly lost starts
				 * at commit_before + 1. */
	uint64_t conf_index;    /* Log index of the single-voter configuration. */
	uint32_t dropped_count; /* Members dropped from the configuration. */
	uint64_t dropped[FL_MEMBERS_MAX];
	char refused_why[96]; /* FL_ERR_QUORUM_REACHABLE: what was heard ("2 of its 3
			       * voters are heard from"); else empty. */
};

/* Forced recovery of a group that lost a majority of its voters for good
 * (their disks are gone): make this node's replica the group's single voter,
 * from its own log and state, like etcd's --force-new-cluster. The replica
 * moves to a new term, appends a configuration entry with itself as the only
 * voter (every other member dropped: voters, learners, witnesses), elects
 * itself, and once that is durable commits its whole log. The group then
 * takes writes again, and grows back by the usual changes (fl_add_learner,
 * fl_promote; tools/flotilla-admin `grow`). The entry is in the WAL like any
 * membership change: a restart keeps the recovery.
 *
 * Rule: refused with FL_ERR_QUORUM_REACHABLE while the group seems able to
 * work on its own: this node knows a leader (another node) that it hears
 * from, or hears from a majority of the voters (of each half of a joint
 * configuration), itself included. Hearing is the shard's host liveness: a
 * node is heard until nothing came from it for a few heartbeat intervals.
 * flags FL_RECOVER_FORCE skips the check.
 *
 * Risks, which is why it is an operator's decision and never automatic:
 *   - entries the lost members committed that this replica did not hold are
 *     lost: writes acknowledged to clients may vanish. The report's
 *     commit_before bounds it: everything up to it is kept;
 *   - entries commit_before + 1 .. last_before of this replica become
 *     committed (and applied) though they may never have been acknowledged;
 *   - a dropped member must never come back with its old data: two of them
 *     together are a majority of the old configuration and could elect a
 *     leader of their own, forking the group. Wipe them, or keep them out
 *     (remove them from every node's address book); new nodes join empty.
 *   - forced while a quorum is in fact alive, the group forks at once.
 * A WARN line in the log names the group, the new term and the range
 * possibly lost.
 *
 * *report must stay valid until cb runs. cb runs once the recovery entry
 * is appended and this node leads (rv 0, result the entry's index: it
 * commits once durable; watch with fl_group_info), or with FL_ERR_NO_GROUP,
 * FL_ERR_QUORUM_REACHABLE, FL_ERR_NOT_SURVIVOR (a witness, or not a member),
 * FL_ERR_REPAIRING (this replica repairs data its storage lost: its log may
 * lack acknowledged entries; no recovery from it), FL_ERR_WAL_FAILED,
 * FL_ERR_NO_SPACE, -ENOMEM. */
int fl_group_recover(struct fl_node *node, uint64_t group, uint32_t flags,
		     struct fl_recover_report *report, fl_done_cb cb, void *arg);
enum fl_member_role {
	FL_MEMBER_NONE = 0,
	FL_MEMBER_VOTER = 1,
	FL_MEMBER_LEARNER = 2,
	FL_MEMBER_WITNESS = 3,
};

struct fl_member_info {
	uint64_t id;
	uint64_t match;   /* Leader only: the member's log is known to match up to here. */
	uint8_t role;     /* enum fl_member_role in the new (or only) configuration. */
	uint8_t role_old; /* In the outgoing configuration while joint; NONE otherwise. */
};

/* A group's membership as one node sees it. */
struct fl_group_info {
	uint64_t leader; /* 0 if unknown. */
	uint64_t term;
	uint64_t commit_index;
	uint64_t last_index;
	uint64_t conf_index; /* Log index of the membership in force. */
	bool is_leader;
	bool joint; /* Between the old and the new membership of a change. */
	/* This replica repairs data its storage lost (it neither votes nor
	 * counts toward commits until it holds the leader's log), or too many
	 * members do for the group to elect or commit (FL_ERR_REPAIRING). */
	bool repairing;
	/* A consistency check found this replica's state differs from the
	 * leader's: it serves no reads until fl_group_rebuild() (see
	 * fl_group_check()). */
	bool diverged;
	uint32_t members_count;
	struct fl_member_info members[FL_MEMBERS_MAX];
};

/* Fill *info with group's membership as this node sees it, then run cb (rv
 * 0, or FL_ERR_NO_GROUP and *info untouched). *info must stay valid until
 * cb runs. Members' match indexes are known on the leader only (0 elsewhere). */
int fl_group_info(struct fl_node *node, uint64_t group, struct fl_group_info *info, fl_done_cb cb,
		  void *arg);

/* Blocking helpers: wait for the callback. Not from a callback. */
int fl_propose_sync(struct fl_node *node, uint64_t group, const void *data, uint32_t size,
		    uint64_t *result, uint64_t *leader);
int fl_read_sync(struct fl_node *node, uint64_t group, uint64_t *leader);
/* fl_read_stale(), then wait: returns cb's rv, with *read filled in. */
int fl_read_stale_sync(struct fl_node *node, uint64_t group, struct fl_stale_read *read);

struct fl_metrics {
	uint64_t groups;
	uint64_t leaders;
	uint64_t proposals;
	uint64_t commits; /* Entries committed in groups this node leads. */
	uint64_t applied; /* Entries handed to apply. */
	uint64_t fsyncs;
	uint64_t wal_bytes;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t elections;       /* Elections this node started. */
	uint64_t leaderships;     /* Times this node became a leader. */
	uint64_t snapshots_taken; /* Saved here and made current. */
	uint64_t snapshots_sent;
	uint64_t snapshots_received;
	uint64_t peers_refused;            /* Connections closed for a bad handshake or frame. */
	uint64_t checks;                   /* Consistency checks compared on this node. */
	uint64_t divergences;              /* Groups found diverged from their leader here. */
	uint64_t writes_refused_no_space;  /* Proposals and changes refused: FL_ERR_NO_SPACE. */
	uint64_t appends_dropped_no_space; /* Entries from leaders dropped for lack of room. */
	uint64_t memory_bytes;             /* Allocated by shard threads from their own jemalloc
					    * arenas; 0 when Flotilla runs without jemalloc. */
	uint32_t shards_count;
	uint32_t shards_no_space; /* Shards whose WAL file system is full right now: they
				   * refuse writes until space returns. */
	uint32_t inbox_depth_max; /* Deepest shard queue right now. */
	uint32_t inbox_depth[64]; /* Each shard's queue right now (the first 64 shards). */
	/* Bytes of snapshot files saved here (each written whole): over the
	 * bytes applied, the snapshots' write amplification. */
	uint64_t snapshot_bytes_written;
	uint64_t groups_refused;    /* Creations and joins refused: FL_ERR_GROUPS_FULL. */
	uint64_t peers_over_budget; /* Peer connections closed because a shard's partial
				     * peer frames held more than two of the largest
				     * frame (2 x 64 MiB). */
};

/* A snapshot of the node's counters, summed over its shards. */
void fl_node_metrics(struct fl_node *node, struct fl_metrics *metrics);

/* Histograms: fixed log-2 buckets, the same bounds for every histogram.
 * counts[i] counts the values v with 2^(i-1) < v <= 2^i in the histogram's
 * unit (counts[0]: v <= 1), and the last bucket, FL_HISTOGRAM_BUCKETS - 1,
 * every value above 2^(FL_HISTOGRAM_BUCKETS - 2). Counts are per bucket, not
 * cumulative; the number of values is their total. In microseconds the
 * buckets span 1 us .. 67 s; in bytes, 1 B .. 64 MiB. */
#define FL_HISTOGRAM_BUCKETS 28

struct fl_histogram {
	uint64_t counts[FL_HISTOGRAM_BUCKETS];
	uint64_t sum; /* Of every value counted, in the same unit. */
};

/* One shard's view, kept by its thread without locks: counters since the
 * node started; gauges counted over the shard's groups once a second (so up
 * to a second old); histograms since the node started. Each field is read
 * whole, not all of them at one instant. The struct may grow at its end in
 * later versions; fields keep their meaning. */
struct fl_shard_metrics {
	/* Counters: the fields of struct fl_metrics, for this shard. */
	uint64_t proposals, commits, applied;
	uint64_t fsyncs;    /* WAL batches submitted: one write and one fdatasync each. */
	uint64_t wal_bytes; /* Bytes written to the WAL. */
	uint64_t bytes_in, bytes_out;
	uint64_t elections, leaderships;
	uint64_t snapshots_taken, snapshots_sent, snapshots_received;
	uint64_t peers_refused; /* Counted by shard 0 for the whole node. */
	uint64_t checks, divergences;
	uint64_t writes_refused_no_space, appends_dropped_no_space;
	uint64_t repairs;        /* Groups whose repair of lost data ended here. */
	uint64_t groups_refused; /* Creations and joins refused: FL_ERR_GROUPS_FULL. */
	/* Gauges. */
	uint64_t groups;         /* Hosted here. */
	uint64_t leaders;        /* Groups this node leads (kept at once, not counted). */
	uint64_t followers;      /* Groups where this node is a voter and not the leader. */
	uint64_t learners;       /* Groups where this node is a learner. */
	uint64_t leaderless;     /* Groups whose leader this node does not know. */
	uint64_t repairing;      /* Groups whose replica here repairs lost data. */
	uint64_t lag_max;        /* Led groups: the most entries a member's log is behind
				  * the leader's last index, */
	uint64_t lag_sum;        /* and the sum over every member of every led group. */
	uint64_t wal_disk_bytes; /* Segment files of the shard's WAL, live and spare. */
	uint64_t memory_bytes;   /* As fl_metrics.memory_bytes, for this shard. */
	uint32_t inbox_depth;    /* Requests queued for the shard right now. */
	bool no_space;           /* The WAL's file system is full: writes refused. */
	/* Histograms. */
	struct fl_histogram commit_us;     /* Leader: a proposal taken by the shard until
					    * its entry committed (microseconds). */
	struct fl_histogram fsync_us;      /* A WAL batch's write submitted until its
					    * fdatasync completed (microseconds). */
	struct fl_histogram apply_us;      /* One call of fl_sm_ops.apply (microseconds). */
	struct fl_histogram batch_bytes;   /* Bytes per WAL batch made durable. */
	struct fl_histogram batch_entries; /* Entries per WAL batch made durable. */
	/* Counter: as in struct fl_metrics, for this shard. */
	uint64_t snapshot_bytes_written;
	uint64_t peers_over_budget; /* As in struct fl_metrics, for this shard. */
};

/* Fill *metrics with shard's metrics (0 .. fl_metrics.shards_count - 1).
 * Returns 0, or -EINVAL past the last shard. Any thread; does not block
 * the shard. */
int fl_shard_metrics(struct fl_node *node, uint32_t shard, struct fl_shard_metrics *metrics);

/* Leader of group as this node knows it (0 if unknown), and whether this
 * node is it. Returns 0 or FL_ERR_NO_GROUP. Blocking: asks the shard. */
int fl_group_leader(struct fl_node *node, uint64_t group, uint64_t *leader);

/* Text for an error returned by any Flotilla function. Never NULL. */
const char *fl_strerror(int err);

/* "major.minor.patch" of the linked library. */
const char *fl_version(void);

#endif /* FLOTILLA_H */
