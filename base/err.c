/* Names for error codes: project codes here, errno codes through strerror. */
#include "base/err.h"

#include <string.h>

const char *err_str(int err)
{
	switch (err) {
	case 0:
		return "success";
	case WAL_ERR_CORRUPT:
		return "WAL record corrupt";
	case RAFT_ERR_NOT_LEADER:
		return "not the leader";
	case RAFT_ERR_TRANSFER:
		return "leadership transfer in progress";
	case RAFT_ERR_CONF_PENDING:
		return "membership change already pending";
	case RAFT_ERR_CONF_INVALID:
		return "invalid membership";
	case RAFT_ERR_COMPACTED:
		return "index compacted";
	case RAFT_ERR_UNAVAILABLE:
		return "index not in log";
	case RAFT_ERR_NO_QUORUM:
		return "no quorum";
	case WAL_ERR_FAILED:
		return "WAL failed; refusing further work";
	case WAL_ERR_GAP:
		return "WAL has a gap in a group's indexes";
	case RAFT_ERR_LAGGING:
		return "the learner has not caught up with the leader's log yet";
	case RAFT_ERR_REPAIRING:
		return "the group is repairing data a replica's storage lost (a majority "
		       "repairing halts the group)";
	case ERR_NO_GROUP:
		return "no such group on this node";
	case ERR_STOPPING:
		return "shutting down";
	case ERR_DROPPED:
		return "entry dropped from the log before it committed";
	case ERR_GROUP_EXISTS:
		return "group already exists on this node";
	case ERR_DIVERGED:
		return "replica diverged from its leader; rebuild it";
	case ERR_NO_SPACE:
		return "no space left on the WAL's file system; writes refused until space returns";
	case ERR_INDETERMINATE:
		return "outcome unknown: this replica skipped the entry's index by a snapshot";
	case ERR_DIR_IN_USE:
		return "the data directory is in use by another process or node (the log names it)";
	case ERR_DIR_MISMATCH:
		return "the data directory belongs to another node, cluster or shard count "
		       "(the log names both)";
	case ERR_DIR_FOREIGN:
		return "the data directory holds files Flotilla did not write (the log names one)";
	case ERR_DIR_CORRUPT:
		return "the data directory's manifest fails verification (the log names it)";
	case ERR_STALE:
		return "this replica may be further behind its leader than the read's bound allows";
	case ERR_WITNESS:
		return "this replica is a witness of the group: it holds no state to read or "
		       "rebuild";
	case ERR_QUORUM_REACHABLE:
		return "the group still has a quorum: recovery refused (force it only if the "
		       "others never return)";
	case ERR_NOT_SURVIVOR:
		return "this replica cannot carry the group alone (a witness without the data, or "
		       "not a member)";
	case ERR_GROUPS_FULL:
		return "this node hosts the most groups it may (groups_max): no group was added";
	case ERR_PEER_UNKNOWN:
		return "no such peer in this node's address book";
	case ERR_PEERS_FULL:
		return "the address book holds its limit of peers (FL_PEERS_MAX)";
	case ERR_TLS:
		return "a TLS certificate, key or CA file is unreadable or unfit (the log says "
		       "why)";
	default:
		break;
	}
	if (err < 0 && err > -ERR_BASE)
		return strerror(-err);
	return "unknown error";
}
