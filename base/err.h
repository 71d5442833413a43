/* Error codes shared by every Flotilla module.
 *
 * An action returns 0 or a negative value: either a negative errno (-ENOMEM,
 * -EIO, -EAGAIN, ...) or one of the project codes below, which sit under the
 * errno range so that the two never collide. err_str() names both kinds. */
#ifndef BASE_ERR_H
#define BASE_ERR_H

enum {
	ERR_BASE = 4096,
	WAL_ERR_CORRUPT = -(ERR_BASE + 1),       /* A record failed its checksum mid-log. */
	RAFT_ERR_NOT_LEADER = -(ERR_BASE + 2),   /* Only the leader may do this. */
	RAFT_ERR_TRANSFER = -(ERR_BASE + 3),     /* A leadership transfer is pending. */
	RAFT_ERR_CONF_PENDING = -(ERR_BASE + 4), /* A membership change is not yet done. */
	RAFT_ERR_CONF_INVALID = -(ERR_BASE + 5), /* The requested membership is not valid. */
	RAFT_ERR_COMPACTED = -(ERR_BASE + 6),    /* The index is below the compacted log. */
	RAFT_ERR_UNAVAILABLE = -(ERR_BASE + 7),  /* The index is past the end of the log. */
	RAFT_ERR_NO_QUORUM = -(ERR_BASE + 8),    /* Not enough members to do this safely. */
	WAL_ERR_FAILED = -(ERR_BASE + 9),        /* The WAL saw a fatal error and refuses work. */
	WAL_ERR_GAP = -(ERR_BASE + 10),          /* A group's indexes have a hole. */
	RAFT_ERR_LAGGING = -(ERR_BASE + 11),     /* The learner to promote has not caught up. */
	RAFT_ERR_REPAIRING = -(ERR_BASE + 12),   /* Lost data is being repaired from peers. */
	/* Codes of the public API (include/flotilla.h mirrors them as FL_ERR_*). */
	ERR_NO_GROUP = -(ERR_BASE + 20),      /* No such group on this node. */
	ERR_STOPPING = -(ERR_BASE + 21),      /* The node or group is shutting down. */
	ERR_DROPPED = -(ERR_BASE + 22),       /* The entry lost its place in the log. */
	ERR_GROUP_EXISTS = -(ERR_BASE + 23),  /* The group is already hosted here. */
	ERR_DIVERGED = -(ERR_BASE + 24),      /* A check found this replica's state differs. */
	ERR_NO_SPACE = -(ERR_BASE + 25),      /* The WAL's file system is full: writes refused. */
	ERR_INDETERMINATE = -(ERR_BASE + 26), /* Whether the entry was applied is not known here. */
	/* The data directory (shard/datadir.h): */
	ERR_DIR_IN_USE = -(ERR_BASE + 27),   /* Its lock is held by another process or node. */
	ERR_DIR_MISMATCH = -(ERR_BASE + 28), /* Made for another node, cluster or shard count. */
	ERR_DIR_FOREIGN = -(ERR_BASE + 29),  /* It holds files Flotilla did not write. */
	ERR_DIR_CORRUPT = -(ERR_BASE + 30),  /* Its manifest fails verification. */
	ERR_STALE = -(ERR_BASE + 31),        /* A stale read's bound is exceeded here. */
	/* The address book (fl_node_set_peer, fl_node_remove_peer): */
	ERR_PEER_UNKNOWN = -(ERR_BASE + 32), /* No such peer in this node's address book. */
	ERR_PEERS_FULL = -(ERR_BASE + 33),   /* The address book holds its limit of peers. */
	/* A forced recovery of a group (fl_group_recover): */
	ERR_QUORUM_REACHABLE = -(ERR_BASE + 34), /* Refused: the group still has a quorum. */
	ERR_NOT_SURVIVOR = -(ERR_BASE + 35),     /* This replica cannot carry the group alone. */
	ERR_WITNESS = -(ERR_BASE + 36),          /* This replica is a witness: it holds no state. */
	ERR_GROUPS_FULL = -(ERR_BASE + 38),      /* The node hosts its most groups already. */
	ERR_TLS = -(ERR_BASE + 40), /* A TLS file is unreadable or unfit (the log says why). */
	ERR_LAST = -(ERR_BASE + 42),
};

/* Text for an error code, project or errno. Never NULL; the string is static. */
const char *err_str(int err);

#endif /* BASE_ERR_H */
