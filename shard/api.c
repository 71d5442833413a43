/* Public entry points of include/flotilla.h that need no running node. */
#include "base/err.h"
#include "flotilla.h"

/* The public codes are the engine's codes under other names. */
_Static_assert((int)FL_ERR_NOT_LEADER == (int)RAFT_ERR_NOT_LEADER, "public error codes match");
_Static_assert((int)FL_ERR_TRANSFER == (int)RAFT_ERR_TRANSFER, "public error codes match");
_Static_assert((int)FL_ERR_CONF_PENDING == (int)RAFT_ERR_CONF_PENDING, "public error codes match");
_Static_assert((int)FL_ERR_CONF_INVALID == (int)RAFT_ERR_CONF_INVALID, "public error codes match");
_Static_assert((int)FL_ERR_WAL_FAILED == (int)WAL_ERR_FAILED, "public error codes match");
_Static_assert((int)FL_ERR_LAGGING == (int)RAFT_ERR_LAGGING, "public error codes match");
_Static_assert((int)FL_ERR_REPAIRING == (int)RAFT_ERR_REPAIRING, "public error codes match");
_Static_assert((int)FL_ERR_NO_GROUP == (int)ERR_NO_GROUP, "public error codes match");
_Static_assert((int)FL_ERR_STOPPING == (int)ERR_STOPPING, "public error codes match");
_Static_assert((int)FL_ERR_DROPPED == (int)ERR_DROPPED, "public error codes match");
_Static_assert((int)FL_ERR_GROUP_EXISTS == (int)ERR_GROUP_EXISTS, "public error codes match");
_Static_assert((int)FL_ERR_DIVERGED == (int)ERR_DIVERGED, "public error codes match");
_Static_assert((int)FL_ERR_NO_SPACE == (int)ERR_NO_SPACE, "public error codes match");
_Static_assert((int)FL_ERR_INDETERMINATE == (int)ERR_INDETERMINATE, "public error codes match");
_Static_assert((int)FL_ERR_DIR_IN_USE == (int)ERR_DIR_IN_USE, "public error codes match");
_Static_assert((int)FL_ERR_DIR_MISMATCH == (int)ERR_DIR_MISMATCH, "public error codes match");
_Static_assert((int)FL_ERR_DIR_FOREIGN == (int)ERR_DIR_FOREIGN, "public error codes match");
_Static_assert((int)FL_ERR_DIR_CORRUPT == (int)ERR_DIR_CORRUPT, "public error codes match");
_Static_assert((int)FL_ERR_STALE == (int)ERR_STALE, "public error codes match");
_Static_assert((int)FL_ERR_PEER_UNKNOWN == (int)ERR_PEER_UNKNOWN, "public error codes match");
_Static_assert((int)FL_ERR_PEERS_FULL == (int)ERR_PEERS_FULL, "public error codes match");
_Static_assert((int)FL_ERR_WITNESS == (int)ERR_WITNESS, "public error codes match");
_Static_assert((int)FL_ERR_QUORUM_REACHABLE == (int)ERR_QUORUM_REACHABLE,
	       "public error codes match");
_Static_assert((int)FL_ERR_NOT_SURVIVOR == (int)ERR_NOT_SURVIVOR, "public error codes match");
_Static_assert((int)FL_ERR_GROUPS_FULL == (int)ERR_GROUPS_FULL, "public error codes match");
_Static_assert((int)FL_ERR_TLS == (int)ERR_TLS, "public error codes match");

#define STR2(x) #x
#define STR(x)  STR2(x)

const char *fl_strerror(int err)
{
	return err_str(err);
}

const char *fl_version(void)
{
	return STR(FLOTILLA_VERSION_MAJOR) "." STR(FLOTILLA_VERSION_MINOR) "." STR(
	    FLOTILLA_VERSION_PATCH);
}
